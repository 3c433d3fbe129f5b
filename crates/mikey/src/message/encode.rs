//! Encoding (RFC 3830 §6): validation of every length and value, then one write pass into a
//! `Vec` or a caller's slice.

use crate::error::EncodeError;

use super::{CsIdMap, Id, KeyData, KeyValidity, Message, Payload, payload_type};

trait Out {
    fn put(&mut self, bytes: &[u8]);
    fn put_u8(&mut self, b: u8) {
        self.put(&[b]);
    }
    fn put_u16(&mut self, v: u16) {
        self.put(&v.to_be_bytes());
    }
    fn put_u32(&mut self, v: u32) {
        self.put(&v.to_be_bytes());
    }
}

impl Out for Vec<u8> {
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

/// Writes into a slice while it fits, and counts every byte (so a short slice learns the size).
struct SliceOut<'b> {
    buf: &'b mut [u8],
    len: usize,
}

impl Out for SliceOut<'_> {
    fn put(&mut self, bytes: &[u8]) {
        let end = self.len + bytes.len();
        if end <= self.buf.len() {
            self.buf[self.len..end].copy_from_slice(bytes);
        }
        self.len = end;
    }
}

fn check_len(field: &'static str, len: usize, max: usize) -> Result<(), EncodeError> {
    if len > max {
        Err(EncodeError::TooLong { field, len, max })
    } else {
        Ok(())
    }
}

fn check_exact(field: &'static str, len: usize, expected: usize) -> Result<(), EncodeError> {
    if len != expected {
        Err(EncodeError::WrongLength {
            field,
            expected,
            len,
        })
    } else {
        Ok(())
    }
}

impl Message<'_> {
    /// Appends the encoded message to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        self.validate()?;
        self.write(out);
        Ok(())
    }

    /// The encoded message as a new `Vec`.
    pub fn to_vec(&self) -> Result<Vec<u8>, EncodeError> {
        let mut out = Vec::with_capacity(256);
        self.encode(&mut out)?;
        Ok(out)
    }

    /// Encodes into a caller's slice and returns the length written; a slice too small gets
    /// [`EncodeError::BufferTooSmall`] with the size needed, and its contents are unspecified.
    pub fn encode_to_slice(&self, buf: &mut [u8]) -> Result<usize, EncodeError> {
        self.validate()?;
        let mut out = SliceOut { buf, len: 0 };
        self.write(&mut out);
        if out.len > out.buf.len() {
            return Err(EncodeError::BufferTooSmall { needed: out.len });
        }
        Ok(out.len)
    }

    /// Checks every length and the SIGN-last rule, so that writing cannot fail.
    fn validate(&self) -> Result<(), EncodeError> {
        let CsIdMap::SrtpId(entries) = &self.header.cs_map;
        check_len("CS ID map (#CS)", entries.len(), 255)?;
        for (i, p) in self.payloads.iter().enumerate() {
            if matches!(p, Payload::Sign(_)) && i + 1 != self.payloads.len() {
                return Err(EncodeError::SignNotLast);
            }
            match p {
                Payload::Kemac(k) => {
                    check_len("KEMAC encr data", k.encr_data.len(), 0xffff)?;
                    check_exact("KEMAC MAC", k.mac.len(), k.mac_alg.mac_len())?;
                }
                Payload::Pke(pke) => check_len("PKE data", pke.data.len(), 0x3fff)?,
                Payload::Dh(dh) => {
                    check_exact("DH-value", dh.value.len(), dh.group.value_len())?;
                    check_kv(&dh.kv)?;
                }
                Payload::Sign(s) => check_len("SIGN signature", s.signature.len(), 0x0fff)?,
                Payload::T(_) | Payload::Err(_) => {}
                Payload::Id(id) => check_len("ID data", id.data.len(), 0xffff)?,
                Payload::IdR(id) => check_len("ID data", id.data.len(), 0xffff)?,
                Payload::Cert(c) => check_len("certificate", c.data.len(), 0xffff)?,
                Payload::Chash(c) => {
                    check_exact("CHASH hash", c.hash.len(), c.hash_func.hash_len())?
                }
                Payload::V(v) => check_exact("V ver data", v.ver_data.len(), v.auth_alg.mac_len())?,
                Payload::Sp(sp) => {
                    let mut total = 0usize;
                    for param in &sp.params {
                        check_len("SP param value", param.value.len(), 0xff)?;
                        total += 2 + param.value.len();
                    }
                    check_len("SP policy params", total, 0xffff)?;
                }
                Payload::Rand(r) => check_len("RAND", r.len(), 0xff)?,
                Payload::GeneralExt(e) => check_len("EXT data", e.data.len(), 0xffff)?,
            }
        }
        Ok(())
    }

    fn write(&self, out: &mut impl Out) {
        let h = &self.header;
        out.put_u8(1); // §6.1: version 1
        out.put_u8(h.data_type.to_u8());
        out.put_u8(self.payloads.first().map_or(0, Payload::type_number));
        out.put_u8(u8::from(h.v) << 7 | h.prf.to_u8());
        out.put_u32(h.csb_id);
        let CsIdMap::SrtpId(entries) = &h.cs_map;
        // Invariant: validate() checked entries.len() <= 255.
        out.put_u8(entries.len() as u8);
        out.put_u8(0); // SRTP-ID
        for e in entries {
            out.put_u8(e.policy_no);
            out.put_u32(e.ssrc);
            out.put_u32(e.roc);
        }
        for (i, p) in self.payloads.iter().enumerate() {
            let next = self.payloads.get(i + 1).map_or(0, Payload::type_number);
            write_payload(p, next, out);
        }
    }
}

fn check_kv(kv: &KeyValidity<'_>) -> Result<(), EncodeError> {
    match kv {
        KeyValidity::Null => Ok(()),
        KeyValidity::Spi(s) => check_len("SPI/MKI", s.len(), 0xff),
        KeyValidity::Interval { from, to } => {
            check_len("valid from", from.len(), 0xff)?;
            check_len("valid to", to.len(), 0xff)
        }
    }
}

fn write_kv_data(kv: &KeyValidity<'_>, out: &mut impl Out) {
    // Invariant (all casts): check_kv() bounded the lengths by 255.
    match kv {
        KeyValidity::Null => {}
        KeyValidity::Spi(s) => {
            out.put_u8(s.len() as u8);
            out.put(s);
        }
        KeyValidity::Interval { from, to } => {
            out.put_u8(from.len() as u8);
            out.put(from);
            out.put_u8(to.len() as u8);
            out.put(to);
        }
    }
}

// Invariant for every `as` cast below: Message::validate() bounded the length by its field width.
fn write_payload(p: &Payload<'_>, next: u8, out: &mut impl Out) {
    if !matches!(p, Payload::Sign(_)) {
        out.put_u8(next);
    }
    match p {
        Payload::Kemac(k) => {
            out.put_u8(k.encr_alg.to_u8());
            out.put_u16(k.encr_data.len() as u16);
            out.put(k.encr_data);
            out.put_u8(k.mac_alg.to_u8());
            out.put(k.mac);
        }
        Payload::Pke(pke) => {
            out.put_u16(u16::from(pke.cache.to_u8()) << 14 | pke.data.len() as u16);
            out.put(pke.data);
        }
        Payload::Dh(dh) => {
            out.put_u8(dh.group.to_u8());
            out.put(dh.value);
            out.put_u8(dh.kv.kv_type());
            write_kv_data(&dh.kv, out);
        }
        Payload::Sign(s) => {
            out.put_u16(u16::from(s.s_type.to_u8()) << 12 | s.signature.len() as u16);
            out.put(s.signature);
        }
        Payload::T(t) => {
            out.put_u8(t.ts_type());
            out.put(&t.value_bytes());
        }
        Payload::Id(id) => {
            out.put_u8(id.id_type.to_u8());
            out.put_u16(id.data.len() as u16);
            out.put(id.data);
        }
        Payload::IdR(id) => {
            out.put_u8(id.role.to_u8());
            out.put_u8(id.id_type.to_u8());
            out.put_u16(id.data.len() as u16);
            out.put(id.data);
        }
        Payload::Cert(c) => {
            out.put_u8(c.cert_type.to_u8());
            out.put_u16(c.data.len() as u16);
            out.put(c.data);
        }
        Payload::Chash(c) => {
            out.put_u8(c.hash_func.to_u8());
            out.put(c.hash);
        }
        Payload::V(v) => {
            out.put_u8(v.auth_alg.to_u8());
            out.put(v.ver_data);
        }
        Payload::Sp(sp) => {
            out.put_u8(sp.policy_no);
            out.put_u8(sp.prot_type.to_u8());
            let total: usize = sp.params.iter().map(|p| 2 + p.value.len()).sum();
            out.put_u16(total as u16);
            for param in &sp.params {
                out.put_u8(param.param_type);
                out.put_u8(param.value.len() as u8);
                out.put(param.value);
            }
        }
        Payload::Rand(r) => {
            out.put_u8(r.len() as u8);
            out.put(r);
        }
        Payload::Err(code) => {
            out.put_u8(code.to_u8());
            out.put_u16(0);
        }
        Payload::GeneralExt(e) => {
            out.put_u8(e.ext_type);
            out.put_u16(e.data.len() as u16);
            out.put(e.data);
        }
    }
}

/// Encodes key data sub-payloads (RFC 3830 §6.13) for a KEMAC's data field, appending to `out`.
pub fn encode_key_data(items: &[KeyData<'_>], out: &mut Vec<u8>) -> Result<(), EncodeError> {
    for item in items {
        check_len("key data", item.key.len(), 0xffff)?;
        if let Some(salt) = item.salt {
            check_len("salt data", salt.len(), 0xffff)?;
        }
        check_kv(&item.kv)?;
    }
    for (i, item) in items.iter().enumerate() {
        let last = i + 1 == items.len();
        out.put_u8(if last {
            payload_type::LAST
        } else {
            payload_type::KEY_DATA
        });
        out.put_u8(item.type_value() << 4 | item.kv.kv_type());
        // Invariant: lengths checked above.
        out.put_u16(item.key.len() as u16);
        out.put(item.key);
        if let Some(salt) = item.salt {
            out.put_u16(salt.len() as u16);
            out.put(salt);
        }
        write_kv_data(&item.kv, out);
    }
    Ok(())
}

/// Encodes the plaintext of a PKE KEMAC, `IDi || {TGK}` (RFC 3830 §3.2): the initiator's ID
/// sub-payload, then the key data sub-payloads ([`encode_key_data`]), appending to `out`.
pub fn encode_pke_key_data(
    idi: &Id<'_>,
    items: &[KeyData<'_>],
    out: &mut Vec<u8>,
) -> Result<(), EncodeError> {
    check_len("ID data", idi.data.len(), 0xffff)?;
    if items.is_empty() {
        return Err(EncodeError::WrongLength {
            field: "PKE KEMAC key data items",
            expected: 1,
            len: 0,
        });
    }
    out.put_u8(payload_type::KEY_DATA);
    out.put_u8(idi.id_type.to_u8());
    // Invariant: length checked above.
    out.put_u16(idi.data.len() as u16);
    out.put(idi.data);
    encode_key_data(items, out)
}
