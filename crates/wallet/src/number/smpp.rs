//! A sans-IO codec for the SMPP 3.4 PDUs an SMS-sending ESME needs (SMPP v3.4 Issue 1.2,
//! 12-Oct-1999): `bind_transmitter`, `submit_sm`, `enquire_link`, `unbind`, their responses and
//! `generic_nack`. Bytes in, [`Pdu`]s out, and back; the socket lives in
//! [`super::smpp_client`].
//!
//! Field layouts follow the spec's tables to the letter: the 16-octet header of §3.2, C-Octet
//! Strings (NUL-terminated, the stated maximum *including* the NUL, §3.1), and the mandatory
//! parameters in the order of §4.1.1, §4.1.2, §4.4.1 and §4.4.2. Optional TLV parameters that
//! follow a response's mandatory ones (§3.2.4; e.g. `sc_interface_version` after
//! `bind_transmitter_resp`) are skipped.

use chaincall_identity::Secret;

use crate::error::SmppError;

/// Length of the PDU header (§3.2): command_length, command_id, command_status, sequence_number.
pub const HEADER_LEN: usize = 16;

/// Largest PDU this codec accepts; a `submit_sm` carries at most 254 octets of message (§4.4.1),
/// so anything far above is a peer fault, refused before buffering it.
pub const MAX_PDU_LEN: usize = 4096;

/// `interface_version` 0x34: SMPP 3.4 (§5.2.4).
pub const INTERFACE_VERSION_34: u8 = 0x34;

/// Command ids (§5.1.2.1).
pub mod command {
    /// generic_nack
    pub const GENERIC_NACK: u32 = 0x8000_0000;
    /// bind_transmitter
    pub const BIND_TRANSMITTER: u32 = 0x0000_0002;
    /// bind_transmitter_resp
    pub const BIND_TRANSMITTER_RESP: u32 = 0x8000_0002;
    /// submit_sm
    pub const SUBMIT_SM: u32 = 0x0000_0004;
    /// submit_sm_resp
    pub const SUBMIT_SM_RESP: u32 = 0x8000_0004;
    /// unbind
    pub const UNBIND: u32 = 0x0000_0006;
    /// unbind_resp
    pub const UNBIND_RESP: u32 = 0x8000_0006;
    /// enquire_link
    pub const ENQUIRE_LINK: u32 = 0x0000_0015;
    /// enquire_link_resp
    pub const ENQUIRE_LINK_RESP: u32 = 0x8000_0015;
}

/// `command_status` ESME_ROK (§5.1.3).
pub const ESME_ROK: u32 = 0;
/// `command_status` ESME_RINVCMDID: invalid command id (§5.1.3).
pub const ESME_RINVCMDID: u32 = 0x0000_0003;

/// Type of number (§5.2.5): international.
pub const TON_INTERNATIONAL: u8 = 0x01;
/// Type of number (§5.2.5): alphanumeric.
pub const TON_ALPHANUMERIC: u8 = 0x05;
/// Numbering plan indicator (§5.2.6): ISDN (E.163/E.164).
pub const NPI_ISDN: u8 = 0x01;
/// Numbering plan indicator (§5.2.6): unknown.
pub const NPI_UNKNOWN: u8 = 0x00;

/// The PDU header (§3.2), without its length (the codec computes it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// command_id.
    pub command_id: u32,
    /// command_status (zero in requests).
    pub status: u32,
    /// sequence_number, echoed in the response (§3.2: 0x00000001 to 0x7FFFFFFF).
    pub sequence: u32,
}

/// `bind_transmitter` (§4.1.1). The password is `<redacted>` in `Debug`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindTransmitter {
    /// system_id, max 16 octets with the NUL.
    pub system_id: String,
    /// password, max 9 octets with the NUL.
    pub password: Secret<String>,
    /// system_type, max 13 octets with the NUL.
    pub system_type: String,
    /// interface_version (0x34).
    pub interface_version: u8,
    /// addr_ton.
    pub addr_ton: u8,
    /// addr_npi.
    pub addr_npi: u8,
    /// address_range, max 41 octets with the NUL.
    pub address_range: String,
}

/// `submit_sm` (§4.4.1) with the fields an OTP sender sets; the rest are encoded as their
/// defaults (empty C-Octet Strings and zero integers). The message may hold a one-time code:
/// `<redacted>` in `Debug`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubmitSm {
    /// service_type, max 6 octets with the NUL (empty: SMSC default).
    pub service_type: String,
    /// source_addr_ton.
    pub source_addr_ton: u8,
    /// source_addr_npi.
    pub source_addr_npi: u8,
    /// source_addr, max 21 octets with the NUL.
    pub source_addr: String,
    /// dest_addr_ton.
    pub dest_addr_ton: u8,
    /// dest_addr_npi.
    pub dest_addr_npi: u8,
    /// destination_addr, max 21 octets with the NUL.
    pub destination_addr: String,
    /// registered_delivery (0: no delivery receipt).
    pub registered_delivery: u8,
    /// data_coding (0: SMSC default alphabet).
    pub data_coding: u8,
    /// short_message, 0 to 254 octets (sm_length is derived).
    pub short_message: Secret<Vec<u8>>,
}

/// The PDUs this codec knows.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Pdu {
    /// §4.1.1
    BindTransmitter(BindTransmitter),
    /// §4.1.2: system_id of the SMSC (absent when the bind failed, §3.3).
    BindTransmitterResp {
        /// The SMSC's system_id.
        system_id: String,
    },
    /// §4.4.1
    SubmitSm(Box<SubmitSm>),
    /// §4.4.2: the SMSC's message_id (absent when the submit failed).
    SubmitSmResp {
        /// The SMSC's id for the message, max 65 octets with the NUL.
        message_id: String,
    },
    /// §4.11.1
    EnquireLink,
    /// §4.11.2
    EnquireLinkResp,
    /// §4.2.1
    Unbind,
    /// §4.2.2
    UnbindResp,
    /// §4.3.1
    GenericNack,
    /// A PDU this codec does not decode (its body is skipped).
    Other,
}

impl Pdu {
    /// The command_id of this PDU (`None` for [`Pdu::Other`]).
    pub fn command_id(&self) -> Option<u32> {
        Some(match self {
            Self::BindTransmitter(_) => command::BIND_TRANSMITTER,
            Self::BindTransmitterResp { .. } => command::BIND_TRANSMITTER_RESP,
            Self::SubmitSm(_) => command::SUBMIT_SM,
            Self::SubmitSmResp { .. } => command::SUBMIT_SM_RESP,
            Self::EnquireLink => command::ENQUIRE_LINK,
            Self::EnquireLinkResp => command::ENQUIRE_LINK_RESP,
            Self::Unbind => command::UNBIND,
            Self::UnbindResp => command::UNBIND_RESP,
            Self::GenericNack => command::GENERIC_NACK,
            Self::Other => return None,
        })
    }
}

/// §3.1 C-Octet String: ASCII without NUL, at most `max - 1` characters plus the NUL.
fn put_cstr(out: &mut Vec<u8>, s: &str, max: usize, field: &'static str) -> Result<(), SmppError> {
    if s.len() >= max || s.bytes().any(|b| b == 0 || !b.is_ascii()) {
        return Err(SmppError::FieldTooLong { field, max });
    }
    out.extend_from_slice(s.as_bytes());
    out.push(0);
    Ok(())
}

/// Encodes `pdu` with `status` and `sequence` onto `out`; returns the PDU's length.
pub fn encode(
    pdu: &Pdu,
    status: u32,
    sequence: u32,
    out: &mut Vec<u8>,
) -> Result<usize, SmppError> {
    let command_id = pdu.command_id().ok_or(SmppError::Unsupported)?;
    let start = out.len();
    out.extend_from_slice(&[0; 4]); // command_length, patched below
    out.extend_from_slice(&command_id.to_be_bytes());
    out.extend_from_slice(&status.to_be_bytes());
    out.extend_from_slice(&sequence.to_be_bytes());
    match pdu {
        Pdu::BindTransmitter(b) => {
            put_cstr(out, &b.system_id, 16, "system_id")?;
            put_cstr(out, &b.password, 9, "password")?;
            put_cstr(out, &b.system_type, 13, "system_type")?;
            out.extend_from_slice(&[b.interface_version, b.addr_ton, b.addr_npi]);
            put_cstr(out, &b.address_range, 41, "address_range")?;
        }
        Pdu::BindTransmitterResp { system_id } => put_cstr(out, system_id, 16, "system_id")?,
        Pdu::SubmitSm(s) => {
            put_cstr(out, &s.service_type, 6, "service_type")?;
            out.extend_from_slice(&[s.source_addr_ton, s.source_addr_npi]);
            put_cstr(out, &s.source_addr, 21, "source_addr")?;
            out.extend_from_slice(&[s.dest_addr_ton, s.dest_addr_npi]);
            put_cstr(out, &s.destination_addr, 21, "destination_addr")?;
            // esm_class, protocol_id, priority_flag
            out.extend_from_slice(&[0, 0, 0]);
            // schedule_delivery_time, validity_period: NULL (immediate, SMSC default)
            out.extend_from_slice(&[0, 0]);
            // registered_delivery, replace_if_present_flag, data_coding, sm_default_msg_id
            out.extend_from_slice(&[s.registered_delivery, 0, s.data_coding, 0]);
            let len = u8::try_from(s.short_message.len())
                .ok()
                .filter(|&l| l <= 254)
                .ok_or(SmppError::FieldTooLong {
                    field: "short_message",
                    max: 254,
                })?;
            out.push(len);
            out.extend_from_slice(&s.short_message);
        }
        Pdu::SubmitSmResp { message_id } => put_cstr(out, message_id, 65, "message_id")?,
        Pdu::EnquireLink
        | Pdu::EnquireLinkResp
        | Pdu::Unbind
        | Pdu::UnbindResp
        | Pdu::GenericNack
        | Pdu::Other => {}
    }
    let len = out.len() - start;
    let len32 = u32::try_from(len).map_err(|_| SmppError::TooLong { length: len })?;
    out[start..start + 4].copy_from_slice(&len32.to_be_bytes());
    Ok(len)
}

/// A cursor over a PDU body.
struct Body<'a> {
    bytes: &'a [u8],
}

impl<'a> Body<'a> {
    fn u8(&mut self, field: &'static str) -> Result<u8, SmppError> {
        let (&b, rest) = self
            .bytes
            .split_first()
            .ok_or(SmppError::Truncated { field })?;
        self.bytes = rest;
        Ok(b)
    }

    fn cstr(&mut self, max: usize, field: &'static str) -> Result<String, SmppError> {
        let nul = self
            .bytes
            .iter()
            .take(max)
            .position(|&b| b == 0)
            .ok_or(SmppError::Truncated { field })?;
        let (s, rest) = self.bytes.split_at(nul);
        self.bytes = &rest[1..];
        if !s.is_ascii() {
            return Err(SmppError::NotAscii { field });
        }
        // ASCII is UTF-8.
        Ok(String::from_utf8_lossy(s).into_owned())
    }

    fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], SmppError> {
        if self.bytes.len() < n {
            return Err(SmppError::Truncated { field });
        }
        let (s, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(s)
    }
}

/// Decodes one PDU from the front of `buf`: `Ok(None)` when more bytes are needed, else the
/// header, the PDU and how many bytes it took. A length below the header or above
/// [`MAX_PDU_LEN`] is an error (the stream cannot be resynchronised).
pub fn decode(buf: &[u8]) -> Result<Option<(Header, Pdu, usize)>, SmppError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let length = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    if !(HEADER_LEN..=MAX_PDU_LEN).contains(&length) {
        return Err(SmppError::TooLong { length });
    }
    if buf.len() < length {
        return Ok(None);
    }
    let word = |i: usize| u32::from_be_bytes([buf[i], buf[i + 1], buf[i + 2], buf[i + 3]]);
    let header = Header {
        command_id: word(4),
        status: word(8),
        sequence: word(12),
    };
    let mut body = Body {
        bytes: &buf[HEADER_LEN..length],
    };
    // §3.3: a response with a non-zero status may omit its body.
    let empty = body.bytes.is_empty();
    let pdu = match header.command_id {
        command::BIND_TRANSMITTER => {
            let system_id = body.cstr(16, "system_id")?;
            let password = Secret::new(body.cstr(9, "password")?);
            let system_type = body.cstr(13, "system_type")?;
            Pdu::BindTransmitter(BindTransmitter {
                system_id,
                password,
                system_type,
                interface_version: body.u8("interface_version")?,
                addr_ton: body.u8("addr_ton")?,
                addr_npi: body.u8("addr_npi")?,
                address_range: body.cstr(41, "address_range")?,
            })
        }
        command::BIND_TRANSMITTER_RESP if empty => Pdu::BindTransmitterResp {
            system_id: String::new(),
        },
        command::BIND_TRANSMITTER_RESP => Pdu::BindTransmitterResp {
            system_id: body.cstr(16, "system_id")?,
        },
        command::SUBMIT_SM => {
            let service_type = body.cstr(6, "service_type")?;
            let source_addr_ton = body.u8("source_addr_ton")?;
            let source_addr_npi = body.u8("source_addr_npi")?;
            let source_addr = body.cstr(21, "source_addr")?;
            let dest_addr_ton = body.u8("dest_addr_ton")?;
            let dest_addr_npi = body.u8("dest_addr_npi")?;
            let destination_addr = body.cstr(21, "destination_addr")?;
            body.take(3, "esm_class")?;
            body.cstr(17, "schedule_delivery_time")?;
            body.cstr(17, "validity_period")?;
            let registered_delivery = body.u8("registered_delivery")?;
            body.u8("replace_if_present_flag")?;
            let data_coding = body.u8("data_coding")?;
            body.u8("sm_default_msg_id")?;
            let len = body.u8("sm_length")?;
            let short_message = body.take(usize::from(len), "short_message")?.to_vec();
            Pdu::SubmitSm(Box::new(SubmitSm {
                service_type,
                source_addr_ton,
                source_addr_npi,
                source_addr,
                dest_addr_ton,
                dest_addr_npi,
                destination_addr,
                registered_delivery,
                data_coding,
                short_message: short_message.into(),
            }))
        }
        command::SUBMIT_SM_RESP if empty => Pdu::SubmitSmResp {
            message_id: String::new(),
        },
        command::SUBMIT_SM_RESP => Pdu::SubmitSmResp {
            message_id: body.cstr(65, "message_id")?,
        },
        command::ENQUIRE_LINK => Pdu::EnquireLink,
        command::ENQUIRE_LINK_RESP => Pdu::EnquireLinkResp,
        command::UNBIND => Pdu::Unbind,
        command::UNBIND_RESP => Pdu::UnbindResp,
        command::GENERIC_NACK => Pdu::GenericNack,
        _ => Pdu::Other,
    };
    Ok(Some((header, pdu, length)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bind() -> Pdu {
        Pdu::BindTransmitter(BindTransmitter {
            system_id: "chaincall".into(),
            password: Secret::new("secret".into()),
            system_type: "OTP".into(),
            interface_version: INTERFACE_VERSION_34,
            addr_ton: 0,
            addr_npi: 0,
            address_range: String::new(),
        })
    }

    /// A one-time code's message to +1 555 123 4567.
    fn submit_sm() -> SubmitSm {
        SubmitSm {
            service_type: String::new(),
            source_addr_ton: TON_ALPHANUMERIC,
            source_addr_npi: NPI_UNKNOWN,
            source_addr: "chaincall".into(),
            dest_addr_ton: TON_INTERNATIONAL,
            dest_addr_npi: NPI_ISDN,
            destination_addr: "15551234567".into(),
            registered_delivery: 0,
            data_coding: 0,
            short_message: b"code 123456".to_vec().into(),
        }
    }

    /// §4.1.1 byte for byte: header, then system_id\0 password\0 system_type\0, version, ton,
    /// npi, address_range\0.
    #[test]
    fn bind_transmitter_layout_matches_section_4_1_1() {
        let mut out = Vec::new();
        let n = encode(&bind(), 0, 1, &mut out).unwrap();
        let mut want = Vec::new();
        want.extend_from_slice(&(n as u32).to_be_bytes());
        want.extend_from_slice(&[0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 1]);
        want.extend_from_slice(b"chaincall\0secret\0OTP\0");
        want.extend_from_slice(&[0x34, 0, 0, 0]);
        assert_eq!(out, want);
        assert_eq!(n, 16 + 10 + 7 + 4 + 3 + 1);
        let (h, pdu, used) = decode(&out).unwrap().unwrap();
        assert_eq!((h.command_id, h.sequence, used), (2, 1, n));
        assert_eq!(pdu, bind());
    }

    /// The derived `Debug` names the account and the recipient, never the password or the message
    /// (which holds the one-time code).
    #[test]
    fn debug_shows_neither_the_password_nor_the_code() {
        let shown = format!("{:?}", bind());
        assert!(
            shown.contains("chaincall") && !shown.contains("secret"),
            "{shown}"
        );
        let sm = submit_sm();
        let shown = format!("{sm:?}");
        assert!(
            shown.contains("15551234567")
                && !shown.contains("123456,")
                && !shown.contains("99, 111"),
            "{shown}"
        );
    }

    /// §4.4.1 field order: service_type, source ton/npi/addr, dest ton/npi/addr, esm_class,
    /// protocol_id, priority_flag, schedule_delivery_time, validity_period, registered_delivery,
    /// replace_if_present_flag, data_coding, sm_default_msg_id, sm_length, short_message.
    #[test]
    fn submit_sm_layout_matches_section_4_4_1() {
        let sm = submit_sm();
        let mut out = Vec::new();
        encode(&Pdu::SubmitSm(Box::new(sm.clone())), 0, 7, &mut out).unwrap();
        let body = &out[HEADER_LEN..];
        let mut want = vec![0u8, 5, 0];
        want.extend_from_slice(b"chaincall\0");
        want.extend_from_slice(&[1, 1]);
        want.extend_from_slice(b"15551234567\0");
        want.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 11]);
        want.extend_from_slice(b"code 123456");
        assert_eq!(body, &want[..]);
        let (_, pdu, _) = decode(&out).unwrap().unwrap();
        assert_eq!(pdu, Pdu::SubmitSm(Box::new(sm)));
    }

    /// §4.4.2 and §3.2.4: a response's message_id, then optional TLVs that are skipped; a
    /// failed response without a body decodes too (§3.3).
    #[test]
    fn responses_decode_with_tlvs_and_without_body() {
        let mut out = Vec::new();
        encode(
            &Pdu::SubmitSmResp {
                message_id: "msg1".into(),
            },
            0,
            9,
            &mut out,
        )
        .unwrap();
        let (h, pdu, _) = decode(&out).unwrap().unwrap();
        assert_eq!(
            (h.command_id, h.status, h.sequence),
            (command::SUBMIT_SM_RESP, 0, 9)
        );
        assert_eq!(
            pdu,
            Pdu::SubmitSmResp {
                message_id: "msg1".into()
            }
        );
        // bind_transmitter_resp with sc_interface_version TLV (tag 0x0210, length 1, 0x34).
        let mut b = vec![0, 0, 0, 0, 0x80, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 3];
        b.extend_from_slice(b"SMSC\0");
        b.extend_from_slice(&[0x02, 0x10, 0, 1, 0x34]);
        let len = b.len() as u32;
        b[..4].copy_from_slice(&len.to_be_bytes());
        let (_, pdu, used) = decode(&b).unwrap().unwrap();
        assert_eq!(
            pdu,
            Pdu::BindTransmitterResp {
                system_id: "SMSC".into()
            }
        );
        assert_eq!(used, b.len());
        // ESME_RINVPASWD (0x0E) with no body.
        let nack = [0, 0, 0, 16, 0x80, 0, 0, 2, 0, 0, 0, 0x0e, 0, 0, 0, 3];
        let (h, _, _) = decode(&nack).unwrap().unwrap();
        assert_eq!(h.status, 0x0e);
    }

    #[test]
    fn partial_input_waits_and_bad_lengths_are_refused() {
        let mut out = Vec::new();
        encode(&Pdu::EnquireLink, 0, 5, &mut out).unwrap();
        assert_eq!(out, [0, 0, 0, 16, 0, 0, 0, 0x15, 0, 0, 0, 0, 0, 0, 0, 5]);
        for cut in 0..out.len() {
            assert_eq!(decode(&out[..cut]).unwrap(), None, "cut at {cut}");
        }
        assert!(decode(&[0, 0, 0, 15, 0, 0, 0, 0]).is_err());
        assert!(
            decode(&[0, 1, 0, 0]).is_err(),
            "65,536-byte PDU refused before buffering"
        );
        // A truncated mandatory field inside a complete PDU is an error, not a panic.
        let bad = [
            0, 0, 0, 18, 0x80, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, 1, b'x', b'y',
        ];
        assert!(decode(&bad).is_err());
    }

    proptest::proptest! {
        /// Hostile bytes: decoding never panics, and whatever decodes re-encodes to a PDU that
        /// decodes to the same thing.
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            if let Ok(Some((h, pdu, used))) = decode(&bytes) {
                proptest::prop_assert!(used <= bytes.len());
                let mut out = Vec::new();
                if encode(&pdu, h.status, h.sequence, &mut out).is_ok() {
                    let again = decode(&out).unwrap().unwrap();
                    proptest::prop_assert_eq!(again.1, pdu);
                }
            }
        }

        /// Valid headers with random bodies (the interesting command ids).
        #[test]
        fn decode_random_bodies(id in proptest::sample::select(vec![2u32, 0x8000_0002, 4, 0x8000_0004, 0x15, 6]),
                                body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)) {
            let mut b = Vec::new();
            b.extend_from_slice(&((16 + body.len()) as u32).to_be_bytes());
            b.extend_from_slice(&id.to_be_bytes());
            b.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 1]);
            b.extend_from_slice(&body);
            let _ = decode(&b);
        }
    }

    #[test]
    fn oversized_fields_are_refused() {
        let mut b = bind();
        if let Pdu::BindTransmitter(ref mut bt) = b {
            bt.password = Secret::new("123456789".into());
        }
        assert!(
            encode(&b, 0, 1, &mut Vec::new()).is_err(),
            "9 octets + NUL > 9"
        );
    }
}
