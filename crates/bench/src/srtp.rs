//! `chaincall bench srtp`: chaincall-srtp against native libsrtp 2.7 (+ OpenSSL) on one core, same
//! packets, same run: a 172-byte RTP packet (12-byte header + 160-byte G.711 payload).
//!
//! Protect: copy the plaintext into a buffer, set the sequence number, protect (both sides pay the
//! same copy). Unprotect: one set of packets protected by chaincall-srtp (spanning sequence
//! wraps), unprotected by a fresh receiver of each implementation. Best of `--rounds`, with the
//! implementations alternating so load on a shared machine hits both alike.

use std::hint::black_box;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use chaincall_libsrtp_ffi::{LibSrtp, MAX_TRAILER};
use chaincall_srtp::{Profile, SrtpConfig, SrtpSession};
use clap::Args;

/// Arguments of `chaincall bench srtp`.
#[derive(Debug, Args)]
pub struct SrtpBenchArgs {
    /// Print a JSON list, one object per profile.
    #[arg(long)]
    json: bool,
    /// Packets per measurement.
    #[arg(long, default_value_t = 200_000)]
    packets: usize,
    /// Measurements per implementation and direction; the best counts.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Python of the venv holding pylibsrtp (asked where its libsrtp is), unless CHAINCALL_LIBSRTP
    /// names the library.
    #[arg(long, env = "CHAINCALL_PYTHON", default_value = ".venv/bin/python3")]
    python: PathBuf,
}

const PKT: usize = 172;
const STRIDE: usize = 256;

fn rtp(seq: u16) -> [u8; PKT] {
    let mut p = [0xd5u8; PKT];
    p[..12].copy_from_slice(&[0x80, 0, 0, 0, 0, 0, 0, 0, 0x0b, 0xad, 0xca, 0xfe]);
    p[2..4].copy_from_slice(&seq.to_be_bytes());
    p[4..8].copy_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    p
}

fn pps(packets: usize, secs: f64) -> f64 {
    (packets as f64 / secs).round()
}

struct Row {
    profile: Profile,
    ours_protect: f64,
    ours_unprotect: f64,
    lib_protect: Option<f64>,
    lib_unprotect: Option<f64>,
}

fn measure(profile: Profile, args: &SrtpBenchArgs, lib: Option<&LibSrtp>) -> anyhow::Result<Row> {
    let n = args.packets;
    let key: Vec<u8> = (0..profile.master_key_len() + profile.master_salt_len())
        .map(|i| (i as u8).wrapping_mul(37).wrapping_add(11))
        .collect();
    let (mk, ms) = key.split_at(profile.master_key_len());
    let config = SrtpConfig::new(profile).with_replay_window(128);
    let ours = |c: &SrtpConfig| SrtpSession::new(c.clone(), mk, ms).context("building our session");

    // The packets both receivers unprotect, protected once by us (interop is tested elsewhere;
    // a mismatch here fails loudly below).
    let mut wire = vec![0u8; n * STRIDE];
    let mut wire_len = 0;
    {
        let mut tx = ours(&config)?;
        for (i, slot) in wire.chunks_exact_mut(STRIDE).enumerate() {
            slot[..PKT].copy_from_slice(&rtp(i as u16));
            wire_len = tx.protect_rtp_slice(slot, PKT)?;
        }
    }
    let mut row = Row {
        profile,
        ours_protect: 0.0,
        ours_unprotect: 0.0,
        lib_protect: lib.map(|_| 0.0),
        lib_unprotect: lib.map(|_| 0.0),
    };
    let mut buf = [0u8; STRIDE + MAX_TRAILER];
    for _ in 0..args.rounds {
        // Ours, protect.
        let mut tx = ours(&config)?;
        let t = Instant::now();
        for i in 0..n {
            buf[..PKT].copy_from_slice(&rtp(i as u16));
            black_box(tx.protect_rtp_slice(&mut buf, PKT)?);
        }
        row.ours_protect = row.ours_protect.max(pps(n, t.elapsed().as_secs_f64()));
        // Ours, unprotect.
        let mut rx = ours(&config)?;
        let t = Instant::now();
        for slot in wire.chunks_exact(STRIDE) {
            buf[..wire_len].copy_from_slice(&slot[..wire_len]);
            black_box(rx.unprotect_rtp_slice(&mut buf[..wire_len])?);
        }
        row.ours_unprotect = row.ours_unprotect.max(pps(n, t.elapsed().as_secs_f64()));

        let Some(lib) = lib else { continue };
        let name = profile.rfc_name();
        let mut tx = lib.session(name, &key, true, 128)?;
        let t = Instant::now();
        for i in 0..n {
            buf[..PKT].copy_from_slice(&rtp(i as u16));
            black_box(tx.protect(&mut buf, PKT)?);
        }
        let p = pps(n, t.elapsed().as_secs_f64());
        row.lib_protect = row.lib_protect.map(|b| b.max(p));
        drop(tx);
        let mut rx = lib.session(name, &key, false, 128)?;
        let t = Instant::now();
        for slot in wire.chunks_exact(STRIDE) {
            buf[..wire_len].copy_from_slice(&slot[..wire_len]);
            let out = rx
                .unprotect(&mut buf, wire_len)
                .context("libsrtp unprotecting our packet")?;
            black_box(out);
        }
        let p = pps(n, t.elapsed().as_secs_f64());
        row.lib_unprotect = row.lib_unprotect.map(|b| b.max(p));
    }
    Ok(row)
}

/// Runs the bench and prints the table or the JSON list.
pub fn run(args: SrtpBenchArgs) -> anyhow::Result<()> {
    let lib = match LibSrtp::from_env_or_python(Some(&args.python)) {
        Ok(lib) => Some(lib),
        Err(e) => {
            tracing::warn!("native libsrtp unavailable, measuring chaincall-srtp alone: {e}");
            None
        }
    };
    let mut rows = Vec::new();
    for profile in Profile::ALL {
        rows.push(measure(profile, &args, lib.as_ref())?);
    }
    if args.json {
        let list: Vec<_> = rows
            .iter()
            .map(|r| {
                serde_json::json!({
                    "profile": r.profile.rfc_name(),
                    "ours_protect_pps": r.ours_protect,
                    "ours_unprotect_pps": r.ours_unprotect,
                    "libsrtp_protect_pps": r.lib_protect,
                    "libsrtp_unprotect_pps": r.lib_unprotect,
                    "protect_ratio": r.lib_protect.map(|l| (r.ours_protect / l * 100.0).round() / 100.0),
                    "unprotect_ratio": r.lib_unprotect.map(|l| (r.ours_unprotect / l * 100.0).round() / 100.0),
                    "packet_bytes": PKT,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&list)?);
    } else {
        println!(
            "{:<26} {:>14} {:>14} {:>14} {:>14}",
            "profile", "ours prot/s", "ours unprot/s", "libsrtp prot/s", "libsrtp unp/s"
        );
        for r in &rows {
            let f = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.0}"));
            println!(
                "{:<26} {:>14.0} {:>14.0} {:>14} {:>14}",
                r.profile.rfc_name(),
                r.ours_protect,
                r.ours_unprotect,
                f(r.lib_protect),
                f(r.lib_unprotect)
            );
        }
    }
    Ok(())
}
