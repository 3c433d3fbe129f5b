//! `chaincall mikey`: operator tools for MIKEY (RFC 3830) messages as carried in SDP (RFC 4567).
//!
//! `inspect` decodes a message given as base64 (or a whole `a=key-mgmt:mikey ...` line), from the
//! argument or from stdin, and prints every payload; `--json` prints the same for machines. Bad
//! input exits non-zero with one line naming the byte offset (or base64 character) at fault.
//! Key material is never printed: a NULL-encrypted KEMAC shows its key kinds and lengths only.

use std::io::Read as _;
use std::ops::Range;

use anyhow::{Context as _, bail};
use chaincall_mikey::Message;
use chaincall_mikey::message::{
    CsIdMap, EncrAlg, KeyValidity, Payload, SrtpIdEntry, Timestamp, decode_key_data,
};
use chaincall_mikey::policy::param;
use chaincall_mikey::sdp;
use clap::{Args, Subcommand};
use serde_json::{Value, json};

/// Arguments of `chaincall mikey`.
#[derive(Debug, Args)]
pub(crate) struct MikeyArgs {
    #[command(subcommand)]
    command: MikeyCommand,
}

#[derive(Debug, Subcommand)]
enum MikeyCommand {
    /// Decode a MIKEY message and print every payload.
    Inspect(InspectArgs),
}

#[derive(Debug, Args)]
struct InspectArgs {
    /// The message in base64, or an `a=key-mgmt:mikey <base64>` line; `-` or nothing reads stdin.
    input: Option<String>,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(args: MikeyArgs) -> anyhow::Result<()> {
    match args.command {
        MikeyCommand::Inspect(a) => inspect(a),
    }
}

fn read_input(arg: Option<String>) -> anyhow::Result<Vec<u8>> {
    let text = match arg.as_deref() {
        None | Some("-") => {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .context("reading stdin")?;
            s
        }
        Some(s) => s.to_owned(),
    };
    let text = text.trim();
    if text.is_empty() {
        bail!("no input: give the message in base64 as an argument or on stdin");
    }
    if text.starts_with("a=key-mgmt:") || text.starts_with("key-mgmt:") {
        return match sdp::parse_attribute(text) {
            Ok(Some(bytes)) => Ok(bytes),
            Ok(None) => bail!("the key-mgmt attribute is not for MIKEY"),
            Err(e) => bail!("{e}"),
        };
    }
    let compact: String = text.split_whitespace().collect();
    sdp::decode_base64(&compact).map_err(|e| anyhow::anyhow!("{e}"))
}

fn inspect(args: InspectArgs) -> anyhow::Result<()> {
    let bytes = read_input(args.input)?;
    let (msg, ranges) = Message::decode_with_ranges(&bytes).map_err(|e| anyhow::anyhow!("{e}"))?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&to_json(&msg, &ranges, bytes.len()))?
        );
    } else {
        print!("{}", to_text(&msg, &ranges, bytes.len()));
    }
    Ok(())
}

fn srtp_entries(map: &CsIdMap) -> &[SrtpIdEntry] {
    match map {
        CsIdMap::SrtpId(entries) => entries,
        _ => &[],
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// An NTP timestamp as RFC 3339 UTC (no date crate: civil-from-days, H. Hinnant's algorithm).
fn ntp_to_rfc3339(ntp: u64) -> String {
    let secs = (ntp >> 32) as i64 - 2_208_988_800;
    let nanos = ((ntp & 0xffff_ffff) * 1_000_000_000) >> 32;
    let tod = secs.rem_euclid(86_400);
    let (y, m, d) = chaincall_phone::keys::civil_from_days(secs.div_euclid(86_400));
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        tod / 3600,
        tod % 3600 / 60,
        tod % 60,
        nanos / 1_000_000
    )
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
        _ => json!({}),
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
            _ => String::new(),
        };
        let _ = writeln!(o, "{head} {body}");
    }
    o
}
