//! Human- and machine-readable views of a MIKEY message, for operators (`chaincall mikey inspect`).
//!
//! [`Inspection`] decodes a message as it arrives in SDP (base64, or a whole `a=key-mgmt:mikey …`
//! line) and keeps each payload's byte range, so the text view ([`std::fmt::Display`]) and the JSON
//! view ([`Inspection::to_json`]) can name the offset of every payload. Key material is never shown:
//! a NULL-encrypted KEMAC lists its key kinds and lengths only.

use std::fmt;
use std::ops::Range;

use serde_json::{Value, json};

use crate::message::{
    CsIdMap, EncrAlg, KeyValidity, Payload, SrtpIdEntry, Timestamp, decode_key_data,
};
use crate::policy::param;
use crate::{Message, NtpTime, sdp};

/// A decoded MIKEY message with the byte range of each payload.
#[derive(Debug)]
pub struct Inspection<'a> {
    msg: Message<'a>,
    ranges: Vec<Range<usize>>,
    len: usize,
}

impl<'a> Inspection<'a> {
    /// Decodes `bytes`; the error names the byte offset at fault.
    pub fn decode(bytes: &'a [u8]) -> Result<Self, crate::DecodeError> {
        let (msg, ranges) = Message::decode_with_ranges(bytes)?;
        Ok(Self {
            msg,
            ranges,
            len: bytes.len(),
        })
    }

    /// The JSON view: the header with its crypto sessions, then every payload with its offset.
    pub fn to_json(&self) -> Value {
        to_json(&self.msg, &self.ranges, self.len)
    }
}

impl fmt::Display for Inspection<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&to_text(&self.msg, &self.ranges, self.len))
    }
}

/// The message bytes of an operator's input: base64 (white space ignored) or an SDP
/// `a=key-mgmt:mikey <base64>` line. The error is one line naming the base64 character at fault.
pub fn input_bytes(text: &str) -> Result<Vec<u8>, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("no input: give the message in base64 as an argument or on stdin".into());
    }
    if text.starts_with("a=key-mgmt:") || text.starts_with("key-mgmt:") {
        return match sdp::parse_attribute(text) {
            Ok(Some(bytes)) => Ok(bytes),
            Ok(None) => Err("the key-mgmt attribute is not for MIKEY".into()),
            Err(e) => Err(e.to_string()),
        };
    }
    let compact: String = text.split_whitespace().collect();
    sdp::decode_base64(&compact).map_err(|e| e.to_string())
}

/// Unix seconds as an RFC 3339 UTC time, with `millis` if given (no date crate: civil-from-days,
/// H. Hinnant's algorithm).
pub fn rfc3339(secs: i64, millis: Option<u64>) -> String {
    let days = secs.div_euclid(86_400);
    let tod = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let fraction = millis.map_or(String::new(), |ms| format!(".{ms:03}"));
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}{fraction}Z",
        tod / 3600,
        tod % 3600 / 60,
        tod % 60,
    )
}

fn srtp_entries(map: &CsIdMap) -> &[SrtpIdEntry] {
    let CsIdMap::SrtpId(entries) = map;
    entries
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// An NTP timestamp as RFC 3339 UTC, to the millisecond.
fn ntp_to_rfc3339(ntp: u64) -> String {
    let millis = ((ntp & 0xffff_ffff) * 1_000) >> 32;
    rfc3339(NtpTime(ntp).unix_secs(), Some(millis))
}

fn ts_json(t: &Timestamp) -> Value {
    match t {
        Timestamp::NtpUtc(v) => {
            json!({"type": "NTP-UTC", "value": format!("0x{v:016x}"), "utc": ntp_to_rfc3339(*v)})
        }
        Timestamp::Ntp(v) => {
            json!({"type": "NTP", "value": format!("0x{v:016x}"), "time": ntp_to_rfc3339(*v)})
        }
        Timestamp::Counter(c) => json!({"type": "COUNTER", "value": c}),
    }
}

fn kv_json(kv: &KeyValidity<'_>) -> Value {
    match kv {
        KeyValidity::Null => json!({"type": "Null"}),
        KeyValidity::Spi(s) => json!({"type": "SPI/MKI", "spi": hex(s)}),
        KeyValidity::Interval { from, to } => {
            json!({"type": "Interval", "from": hex(from), "to": hex(to)})
        }
    }
}

fn payload_json(p: &Payload<'_>, range: &Range<usize>) -> Value {
    let mut v = match p {
        Payload::Kemac(k) => {
            let mut o = json!({
                "encr_alg": k.encr_alg.name(),
                "encr_data_len": k.encr_data.len(),
                "mac_alg": k.mac_alg.name(),
                "mac": hex(k.mac),
            });
            if k.encr_alg == EncrAlg::Null {
                o["key_data"] = match decode_key_data(k.encr_data, 0) {
                    Ok(items) => Value::Array(
                        items
                            .iter()
                            .map(|i| {
                                json!({
                                    "type": i.type_value(),
                                    "kind": format!("{:?}", i.kind),
                                    "key_len": i.key.len(),
                                    "salt_len": i.salt.map(<[u8]>::len),
                                    "kv": kv_json(&i.kv),
                                    "note": "key material not shown",
                                })
                            })
                            .collect(),
                    ),
                    Err(e) => json!({"error": e.to_string()}),
                };
            } else {
                o["encr_data"] = json!(hex(k.encr_data));
            }
            o
        }
        Payload::Pke(pke) => {
            json!({"cache": pke.cache.name(), "data_len": pke.data.len(), "data": hex(pke.data)})
        }
        Payload::Dh(dh) => {
            json!({"group": dh.group.to_u8(), "group_name": dh.group.name(), "value": hex(dh.value), "kv": kv_json(&dh.kv)})
        }
        Payload::Sign(s) => {
            json!({"s_type": s.s_type.to_u8(), "s_type_name": s.s_type.name(), "len": s.signature.len(), "signature": hex(s.signature)})
        }
        Payload::T(t) => ts_json(t),
        Payload::Id(id) => {
            json!({"id_type": id.id_type.name(), "len": id.data.len(), "id": String::from_utf8_lossy(id.data)})
        }
        Payload::IdR(id) => {
            json!({"role": id.role.name(), "id_type": id.id_type.name(), "len": id.data.len(), "id": String::from_utf8_lossy(id.data)})
        }
        Payload::Cert(c) => {
            json!({"cert_type": c.cert_type.name(), "len": c.data.len(), "data": hex(c.data)})
        }
        Payload::Chash(c) => json!({"hash_func": c.hash_func.name(), "hash": hex(c.hash)}),
        Payload::V(v) => json!({"auth_alg": v.auth_alg.name(), "ver_data": hex(v.ver_data)}),
        Payload::Sp(sp) => json!({
            "policy_no": sp.policy_no,
            "prot_type": sp.prot_type.name(),
            "params": sp.params.iter().map(|prm| json!({
                "type": prm.param_type,
                "name": param::name(prm.param_type),
                "value": hex(prm.value),
            })).collect::<Vec<_>>(),
        }),
        Payload::Rand(r) => json!({"len": r.len(), "rand": hex(r)}),
        Payload::Err(code) => json!({"error_no": code.to_u8(), "error": code.name()}),
        Payload::GeneralExt(e) => {
            json!({"ext_type": e.ext_type, "len": e.data.len(), "data": hex(e.data)})
        }
    };
    v["payload"] = json!(p.name());
    v["type_number"] = json!(p.type_number());
    v["offset"] = json!(range.start);
    v["length"] = json!(range.len());
    v
}

fn to_json(msg: &Message<'_>, ranges: &[Range<usize>], len: usize) -> Value {
    let h = &msg.header;
    let entries = srtp_entries(&h.cs_map);
    json!({
        "length": len,
        "header": {
            "version": 1,
            "data_type": h.data_type.to_u8(),
            "data_type_name": h.data_type.name(),
            "v": h.v,
            "prf": h.prf.name(),
            "csb_id": format!("0x{:08x}", h.csb_id),
            "cs_id_map_type": "SRTP-ID",
            "crypto_sessions": entries.iter().enumerate().map(|(i, e)| json!({
                "cs_id": i + 1, "policy_no": e.policy_no,
                "ssrc": format!("0x{:08x}", e.ssrc), "roc": e.roc,
            })).collect::<Vec<_>>(),
        },
        "payloads": msg.payloads.iter().zip(ranges).map(|(p, r)| payload_json(p, r)).collect::<Vec<_>>(),
    })
}

fn to_text(msg: &Message<'_>, ranges: &[Range<usize>], len: usize) -> String {
    use std::fmt::Write as _;
    let mut o = String::new();
    let h = &msg.header;
    let entries = srtp_entries(&h.cs_map);
    let _ = writeln!(o, "MIKEY message, {len} bytes");
    let _ = writeln!(
        o,
        "@0    HDR    version 1, data type {} ({}), V {}, PRF {}, CSB ID 0x{:08x}",
        h.data_type.to_u8(),
        h.data_type.name(),
        u8::from(h.v),
        h.prf.name(),
        h.csb_id
    );
    let _ = writeln!(
        o,
        "             CS ID map SRTP-ID, {} crypto session(s)",
        entries.len()
    );
    for (i, e) in entries.iter().enumerate() {
        let _ = writeln!(
            o,
            "               CS {}: policy {}, SSRC 0x{:08x}, ROC {}",
            i + 1,
            e.policy_no,
            e.ssrc,
            e.roc
        );
    }
    for (p, r) in msg.payloads.iter().zip(ranges) {
        let head = format!("@{:<4} {:<6}", r.start, p.name());
        let body = match p {
            Payload::Kemac(k) => {
                let mut s = format!(
                    "encr {}, {} bytes of key data, MAC {} {}",
                    k.encr_alg.name(),
                    k.encr_data.len(),
                    k.mac_alg.name(),
                    hex(k.mac)
                );
                if k.encr_alg == EncrAlg::Null {
                    match decode_key_data(k.encr_data, 0) {
                        Ok(items) => {
                            for i in items {
                                let _ = write!(
                                    s,
                                    "\n               key data: {:?}, key {} bytes, salt {} (not shown)",
                                    i.kind,
                                    i.key.len(),
                                    i.salt.map_or("none".to_owned(), |x| format!(
                                        "{} bytes",
                                        x.len()
                                    ))
                                );
                            }
                        }
                        Err(e) => {
                            let _ = write!(s, "\n               key data does not decode: {e}");
                        }
                    }
                }
                s
            }
            Payload::Pke(pke) => format!(
                "C {}, {} bytes: {}",
                pke.cache.name(),
                pke.data.len(),
                hex(pke.data)
            ),
            Payload::Dh(dh) => format!(
                "group {} ({}), value {}, KV {:?}",
                dh.group.to_u8(),
                dh.group.name(),
                hex(dh.value),
                dh.kv
            ),
            Payload::Sign(s) => format!(
                "S type {} ({}), {} bytes: {}",
                s.s_type.to_u8(),
                s.s_type.name(),
                s.signature.len(),
                hex(s.signature)
            ),
            Payload::T(t) => match t {
                Timestamp::NtpUtc(v) => format!("NTP-UTC {} (0x{v:016x})", ntp_to_rfc3339(*v)),
                Timestamp::Ntp(v) => format!("NTP {} (0x{v:016x})", ntp_to_rfc3339(*v)),
                Timestamp::Counter(c) => format!("COUNTER {c}"),
            },
            Payload::Id(id) => {
                format!("{} {}", id.id_type.name(), String::from_utf8_lossy(id.data))
            }
            Payload::IdR(id) => format!(
                "{}, {} {}",
                id.role.name(),
                id.id_type.name(),
                String::from_utf8_lossy(id.data)
            ),
            Payload::Cert(c) => format!("{}, {} bytes", c.cert_type.name(), c.data.len()),
            Payload::Chash(c) => format!("{} {}", c.hash_func.name(), hex(c.hash)),
            Payload::V(v) => format!("{} {}", v.auth_alg.name(), hex(v.ver_data)),
            Payload::Sp(sp) => {
                let mut s = format!("policy {}, {}", sp.policy_no, sp.prot_type.name());
                for prm in &sp.params {
                    let _ = write!(
                        s,
                        "\n               {:>2} {}: {}",
                        prm.param_type,
                        param::name(prm.param_type).unwrap_or("unknown"),
                        match prm.value {
                            [b] => b.to_string(),
                            v => format!("0x{}", hex(v)),
                        }
                    );
                }
                s
            }
            Payload::Rand(r) => format!("{} bytes {}", r.len(), hex(r)),
            Payload::Err(code) => format!("{} ({})", code.to_u8(), code.name()),
            Payload::GeneralExt(e) => format!(
                "type {}, {} bytes {}",
                e.ext_type,
                e.data.len(),
                hex(e.data)
            ),
        };
        let _ = writeln!(o, "{head} {body}");
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Initiator, OfferConfig};

    fn psk_offer() -> Vec<u8> {
        let cfg = OfferConfig::new(
            "+15551230001".parse().unwrap(),
            "+15551230002".parse().unwrap(),
        );
        let now = NtpTime::from_unix(1_795_372_800, 250_000_000);
        Initiator::psk(cfg, &[7; 32], now).unwrap().offer().to_vec()
    }

    #[test]
    fn text_and_json_name_every_payload_without_key_material() {
        let offer = psk_offer();
        let line = crate::sdp::attribute_line(&offer);
        let bytes = input_bytes(&line).unwrap();
        assert_eq!(bytes, offer);
        let view = Inspection::decode(&bytes).unwrap();
        let text = view.to_string();
        assert!(text.starts_with(&format!("MIKEY message, {} bytes\n", offer.len())));
        assert!(
            text.contains("T      NTP-UTC 2026-11-22T18:40:00.250Z"),
            "{text}"
        );
        assert!(text.contains("ID     URI tel:+15551230001"), "{text}");
        assert!(text.contains("KEMAC  encr AES-CM-128"), "{text}");
        let json = view.to_json();
        assert_eq!(json["payloads"][0]["payload"], "T");
        assert_eq!(json["payloads"][5]["payload"], "KEMAC", "{json}");
        assert_eq!(json["length"], offer.len());
        assert_eq!(json["payloads"][0]["offset"], 19);
    }

    #[test]
    fn bad_input_is_one_line_naming_where() {
        assert!(input_bytes("  \n").unwrap_err().starts_with("no input"));
        assert_eq!(
            input_bytes("a=key-mgmt:other AAAA").unwrap_err(),
            "the key-mgmt attribute is not for MIKEY"
        );
        let err = input_bytes("AQID*AAA").unwrap_err();
        assert!(err.contains('4'), "{err}");
        let truncated = &psk_offer()[..30];
        assert!(Inspection::decode(truncated).is_err());
    }

    #[test]
    fn rfc3339_matches_known_dates() {
        assert_eq!(rfc3339(0, Some(5)), "1970-01-01T00:00:00.005Z");
        assert_eq!(rfc3339(951_782_400, None), "2000-02-29T00:00:00Z");
        assert_eq!(
            ntp_to_rfc3339(NtpTime::from_unix(86_399, 999_500_000).0),
            "1970-01-01T23:59:59.999Z"
        );
    }
}
