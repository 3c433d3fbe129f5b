//! Decoding (RFC 3830 §6): a bounds-checked reader, the payload chain, and the KEMAC/PKE key data.

use crate::error::{DecodeError, DecodeErrorKind};

use super::{
    Cert, CertType, Chash, CsIdMap, DataType, Dh, DhGroup, EncrAlg, ErrorCode, GeneralExt,
    HashFunc, Header, Id, IdR, IdRole, IdType, Kemac, KeyData, KeyKind, KeyValidity, MacAlg,
    Message, Payload, Pke, PkeCache, PolicyParam, PrfFunc, ProtType, SecurityPolicy, Sign,
    SignType, Spans, SrtpIdEntry, Timestamp, Verification, payload_type,
};

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    /// Added to positions in errors (key data is decoded from a sub-buffer).
    base: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8], base: usize) -> Self {
        Self { buf, pos: 0, base }
    }

    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn at(&self) -> usize {
        self.base + self.pos
    }

    fn err(&self, kind: DecodeErrorKind) -> DecodeError {
        DecodeError::new(self.at(), kind)
    }

    fn bytes(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], DecodeError> {
        if self.remaining() < n {
            return Err(self.err(DecodeErrorKind::Truncated {
                field,
                needed: n,
                available: self.remaining(),
            }));
        }
        let out = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    fn u8(&mut self, field: &'static str) -> Result<u8, DecodeError> {
        Ok(self.bytes(1, field)?[0])
    }

    fn u16(&mut self, field: &'static str) -> Result<u16, DecodeError> {
        let b = self.bytes(2, field)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self, field: &'static str) -> Result<u32, DecodeError> {
        let b = self.bytes(4, field)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self, field: &'static str) -> Result<u64, DecodeError> {
        let b = self.bytes(8, field)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }
}

impl<'a> Message<'a> {
    /// Decodes a whole message. Every byte must belong to it.
    pub fn decode(buf: &'a [u8]) -> Result<Self, DecodeError> {
        Self::decode_with_spans(buf).map(|(m, _)| m)
    }

    /// Decodes a message and also returns each payload's byte range in `buf` (for tools that show
    /// offsets, and for MAC and signature coverage).
    pub fn decode_with_ranges(
        buf: &'a [u8],
    ) -> Result<(Self, Vec<std::ops::Range<usize>>), DecodeError> {
        Self::decode_with_spans(buf).map(|(m, s)| (m, s.ranges))
    }

    pub(crate) fn decode_with_spans(buf: &'a [u8]) -> Result<(Self, Spans), DecodeError> {
        use payload_type as pt;
        let mut r = Reader::new(buf, 0);
        // §6.1 common header.
        let version = r.u8("HDR version")?;
        if version != 1 {
            return Err(DecodeError::new(
                0,
                DecodeErrorKind::UnsupportedVersion(version),
            ));
        }
        let at = r.at();
        let data_type = DataType::read(r.u8("HDR data type")?, at)?;
        let mut next_at = r.at();
        let mut next = r.u8("HDR next payload")?;
        let at = r.at();
        let v_prf = r.u8("HDR V/PRF func")?;
        let prf = PrfFunc::read(v_prf & 0x7f, at)?;
        let csb_id = r.u32("HDR CSB ID")?;
        let ncs = r.u8("HDR #CS")?;
        let at = r.at();
        let map_type = r.u8("HDR CS ID map type")?;
        let cs_map = match map_type {
            0 => {
                let mut entries = Vec::with_capacity(usize::from(ncs));
                for _ in 0..ncs {
                    entries.push(SrtpIdEntry {
                        policy_no: r.u8("SRTP-ID policy no")?,
                        ssrc: r.u32("SRTP-ID SSRC")?,
                        roc: r.u32("SRTP-ID ROC")?,
                    });
                }
                CsIdMap::SrtpId(entries)
            }
            value => {
                return Err(DecodeError::new(
                    at,
                    DecodeErrorKind::UnknownValue {
                        field: "CS ID map type",
                        value,
                    },
                ));
            }
        };
        let header = Header {
            data_type,
            v: v_prf & 0x80 != 0,
            prf,
            csb_id,
            cs_map,
        };

        let mut payloads = Vec::new();
        let mut ranges = Vec::new();
        loop {
            let start = r.at();
            match next {
                pt::LAST => {
                    if r.remaining() > 0 {
                        return Err(r.err(DecodeErrorKind::TrailingBytes(r.remaining())));
                    }
                    break;
                }
                pt::SIGN => {
                    // §6.5: no next-payload field; SIGN ends the message.
                    let at = r.at();
                    let b = r.u16("SIGN S type/length")?;
                    let s_type = SignType::read((b >> 12) as u8, at)?;
                    let len = usize::from(b & 0x0fff);
                    let signature = r.bytes(len, "SIGN signature")?;
                    payloads.push(Payload::Sign(Sign { s_type, signature }));
                    ranges.push(start..r.at());
                    if r.remaining() > 0 {
                        return Err(r.err(DecodeErrorKind::TrailingBytes(r.remaining())));
                    }
                    break;
                }
                pt::KEY_DATA => {
                    return Err(DecodeError::new(
                        next_at,
                        DecodeErrorKind::MisplacedPayload {
                            payload: next,
                            place: "at message level (only inside KEMAC)",
                        },
                    ));
                }
                pt::KEMAC
                | pt::PKE
                | pt::DH
                | pt::T
                | pt::ID
                | pt::CERT
                | pt::CHASH
                | pt::V
                | pt::SP
                | pt::RAND
                | pt::ERR
                | pt::IDR
                | pt::GENERAL_EXT => {
                    let this = next;
                    next_at = r.at();
                    next = r.u8("next payload")?;
                    let payload = decode_body(this, &mut r)?;
                    payloads.push(payload);
                    ranges.push(start..r.at());
                }
                value => {
                    return Err(DecodeError::new(
                        next_at,
                        DecodeErrorKind::UnknownValue {
                            field: "next payload",
                            value,
                        },
                    ));
                }
            }
        }
        Ok((Self { header, payloads }, Spans { ranges }))
    }
}

fn decode_body<'a>(ty: u8, r: &mut Reader<'a>) -> Result<Payload<'a>, DecodeError> {
    use payload_type as pt;
    Ok(match ty {
        pt::KEMAC => {
            // §6.2
            let at = r.at();
            let encr_alg = EncrAlg::read(r.u8("KEMAC encr alg")?, at)?;
            let len = usize::from(r.u16("KEMAC encr data len")?);
            let encr_data = r.bytes(len, "KEMAC encr data")?;
            let at = r.at();
            let mac_alg = MacAlg::read(r.u8("KEMAC mac alg")?, at)?;
            let mac = r.bytes(mac_alg.mac_len(), "KEMAC MAC")?;
            Payload::Kemac(Kemac {
                encr_alg,
                encr_data,
                mac_alg,
                mac,
            })
        }
        pt::PKE => {
            // §6.3: C (2 bits) | Data len (14 bits)
            let at = r.at();
            let b = r.u16("PKE C/data len")?;
            let cache = PkeCache::read((b >> 14) as u8, at)?;
            let data = r.bytes(usize::from(b & 0x3fff), "PKE data")?;
            Payload::Pke(Pke { cache, data })
        }
        pt::DH => {
            // §6.4: DH-Group | DH-value (length implied) | Reserv (4) | KV (4) | KV data
            let at = r.at();
            let group = DhGroup::read(r.u8("DH-Group")?, at)?;
            let value = r.bytes(group.value_len(), "DH-value")?;
            let kv = decode_kv_byte_and_data(r, "DH Reserv")?;
            Payload::Dh(Dh { group, value, kv })
        }
        pt::T => {
            // §6.6
            let at = r.at();
            Payload::T(match r.u8("TS type")? {
                0 => Timestamp::NtpUtc(r.u64("TS value (NTP-UTC)")?),
                1 => Timestamp::Ntp(r.u64("TS value (NTP)")?),
                2 => Timestamp::Counter(r.u32("TS value (COUNTER)")?),
                value => {
                    return Err(DecodeError::new(
                        at,
                        DecodeErrorKind::UnknownValue {
                            field: "TS type",
                            value,
                        },
                    ));
                }
            })
        }
        pt::ID => {
            // §6.7
            let at = r.at();
            let id_type = IdType::read(r.u8("ID type")?, at)?;
            let len = usize::from(r.u16("ID len")?);
            Payload::Id(Id {
                id_type,
                data: r.bytes(len, "ID data")?,
            })
        }
        pt::IDR => {
            // RFC 6043 §6.6
            let at = r.at();
            let role = IdRole::read(r.u8("ID role")?, at)?;
            let at = r.at();
            let id_type = IdType::read(r.u8("ID type")?, at)?;
            let len = usize::from(r.u16("ID len")?);
            Payload::IdR(IdR {
                role,
                id_type,
                data: r.bytes(len, "ID data")?,
            })
        }
        pt::CERT => {
            let at = r.at();
            let cert_type = CertType::read(r.u8("cert type")?, at)?;
            let len = usize::from(r.u16("cert len")?);
            Payload::Cert(Cert {
                cert_type,
                data: r.bytes(len, "certificate")?,
            })
        }
        pt::CHASH => {
            let at = r.at();
            let hash_func = HashFunc::read(r.u8("CHASH hash func")?, at)?;
            Payload::Chash(Chash {
                hash_func,
                hash: r.bytes(hash_func.hash_len(), "CHASH hash")?,
            })
        }
        pt::V => {
            // §6.9
            let at = r.at();
            let auth_alg = MacAlg::read(r.u8("V auth alg")?, at)?;
            Payload::V(Verification {
                auth_alg,
                ver_data: r.bytes(auth_alg.mac_len(), "V ver data")?,
            })
        }
        pt::SP => {
            // §6.10
            let policy_no = r.u8("SP policy no")?;
            let at = r.at();
            let prot_type = ProtType::read(r.u8("SP prot type")?, at)?;
            let len = usize::from(r.u16("SP policy param length")?);
            let base = r.at();
            let body = r.bytes(len, "SP policy params")?;
            let mut pr = Reader::new(body, base);
            let mut params = Vec::new();
            while pr.remaining() > 0 {
                let param_type = pr.u8("SP param type")?;
                let plen = usize::from(pr.u8("SP param length")?);
                let value = pr.bytes(plen, "SP param value")?;
                params.push(PolicyParam { param_type, value });
            }
            Payload::Sp(SecurityPolicy {
                policy_no,
                prot_type,
                params,
            })
        }
        pt::RAND => {
            // §6.11
            let len = usize::from(r.u8("RAND len")?);
            Payload::Rand(r.bytes(len, "RAND")?)
        }
        pt::ERR => {
            // §6.12: Error no | Reserved (16 bits, zero)
            let at = r.at();
            let code = ErrorCode::read(r.u8("error no")?, at)?;
            let at = r.at();
            if r.u16("ERR reserved")? != 0 {
                return Err(DecodeError::new(
                    at,
                    DecodeErrorKind::ReservedNotZero {
                        field: "ERR reserved",
                    },
                ));
            }
            Payload::Err(code)
        }
        pt::GENERAL_EXT => {
            // §6.15
            let ext_type = r.u8("EXT type")?;
            let len = usize::from(r.u16("EXT length")?);
            Payload::GeneralExt(GeneralExt {
                ext_type,
                data: r.bytes(len, "EXT data")?,
            })
        }
        // Invariant: the caller dispatches only the types listed above.
        _ => unreachable!("decode_body called for payload type {ty}"),
    })
}

/// Reads a `Reserv (4) | KV type (4)` byte followed by KV data (§6.4, §6.13, §6.14).
fn decode_kv_byte_and_data<'a>(
    r: &mut Reader<'a>,
    reserved_field: &'static str,
) -> Result<KeyValidity<'a>, DecodeError> {
    let at = r.at();
    let b = r.u8("KV type")?;
    if b & 0xf0 != 0 {
        return Err(DecodeError::new(
            at,
            DecodeErrorKind::ReservedNotZero {
                field: reserved_field,
            },
        ));
    }
    decode_kv_data(r, b & 0x0f, at)
}

fn decode_kv_data<'a>(
    r: &mut Reader<'a>,
    kv_type: u8,
    at: usize,
) -> Result<KeyValidity<'a>, DecodeError> {
    Ok(match kv_type {
        0 => KeyValidity::Null,
        1 => {
            let len = usize::from(r.u8("SPI length")?);
            KeyValidity::Spi(r.bytes(len, "SPI/MKI")?)
        }
        2 => {
            let len = usize::from(r.u8("VF length")?);
            let from = r.bytes(len, "valid from")?;
            let len = usize::from(r.u8("VT length")?);
            let to = r.bytes(len, "valid to")?;
            KeyValidity::Interval { from, to }
        }
        value => {
            return Err(DecodeError::new(
                at,
                DecodeErrorKind::UnknownValue {
                    field: "KV type",
                    value,
                },
            ));
        }
    })
}

/// Decodes the key data sub-payloads of a KEMAC's (decrypted) data (RFC 3830 §6.13).
///
/// `base` is added to offsets in errors (pass the encr data's offset in the message, or 0).
pub fn decode_key_data(buf: &[u8], base: usize) -> Result<Vec<KeyData<'_>>, DecodeError> {
    let mut r = Reader::new(buf, base);
    let mut out = Vec::new();
    while r.remaining() > 0 {
        let next_at = r.at();
        let next = r.u8("key data next payload")?;
        if next != payload_type::KEY_DATA && next != payload_type::LAST {
            return Err(DecodeError::new(
                next_at,
                DecodeErrorKind::MisplacedPayload {
                    payload: next,
                    place: "after a key data sub-payload (only key data or last)",
                },
            ));
        }
        let at = r.at();
        let b = r.u8("key data type/KV")?;
        let (kind, salted) = match b >> 4 {
            0 => (KeyKind::Tgk, false),
            1 => (KeyKind::Tgk, true),
            2 => (KeyKind::Tek, false),
            3 => (KeyKind::Tek, true),
            value => {
                return Err(DecodeError::new(
                    at,
                    DecodeErrorKind::UnknownValue {
                        field: "key data type",
                        value,
                    },
                ));
            }
        };
        let len = usize::from(r.u16("key data len")?);
        let key = r.bytes(len, "key data")?;
        let salt = if salted {
            let len = usize::from(r.u16("salt len")?);
            Some(r.bytes(len, "salt data")?)
        } else {
            None
        };
        let kv = decode_kv_data(&mut r, b & 0x0f, at)?;
        out.push(KeyData {
            kind,
            key,
            salt,
            kv,
        });
        let last = next == payload_type::LAST;
        if last && r.remaining() > 0 {
            return Err(r.err(DecodeErrorKind::TrailingBytes(r.remaining())));
        }
        if !last && r.remaining() == 0 {
            return Err(r.err(DecodeErrorKind::Truncated {
                field: "next key data sub-payload",
                needed: 4,
                available: 0,
            }));
        }
    }
    Ok(out)
}

/// Decodes the plaintext of a PKE KEMAC, `IDi || {TGK}` (RFC 3830 §3.2): the initiator's ID
/// sub-payload (§6.7 layout; its next-payload field must announce key data) and the key data
/// sub-payloads after it (§6.13).
///
/// `base` is added to offsets in errors, as for [`decode_key_data`].
pub fn decode_pke_key_data(
    buf: &[u8],
    base: usize,
) -> Result<(Id<'_>, Vec<KeyData<'_>>), DecodeError> {
    let mut r = Reader::new(buf, base);
    let next_at = r.at();
    let next = r.u8("IDi next payload")?;
    if next != payload_type::KEY_DATA {
        return Err(DecodeError::new(
            next_at,
            DecodeErrorKind::MisplacedPayload {
                payload: next,
                place: "after the IDi of a PKE KEMAC (only key data)",
            },
        ));
    }
    let at = r.at();
    let id_type = IdType::read(r.u8("ID type")?, at)?;
    let len = usize::from(r.u16("ID len")?);
    let data = r.bytes(len, "ID data")?;
    let used = 4 + len;
    let keys = decode_key_data(&buf[used..], base + used)?;
    if keys.is_empty() {
        return Err(DecodeError::new(
            base + used,
            DecodeErrorKind::Truncated {
                field: "key data after the IDi of a PKE KEMAC",
                needed: 4,
                available: 0,
            },
        ));
    }
    Ok((Id { id_type, data }, keys))
}
