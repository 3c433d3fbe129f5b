//! `chaincall demo`: a whole chaincall network on one machine and a real end-to-end encrypted call.
//!
//! On the embedded chain (default) or a node (`--rpc`): deploy the keystore; publish sipd's
//! identity; start the wallet-management server (HTTP), sipd (SIP over TLS-PSK) and two phones as
//! network services on 127.0.0.1; onboard both phones with store-signed receipts (funding,
//! `addClient`, approval, SIP credentials); register both over TLS-PSK with digest auth; alice looks
//! bob's key up with a verified proof, calls him with MIKEY-PKE in the SDP, and both send G.711 audio
//! over SRTP. The demo then checks that each side received exactly what the other sent, and prints
//! the paper's Table I figures with where each millisecond of set-up went. Any failed check exits
//! non-zero.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail, ensure};
use chaincall_chain::{EmbeddedChain, PrivateKeySigner, RpcChain, RpcConfig};
use chaincall_identity::{IdentityName, PhoneNumber};
use chaincall_phone::CallReport;
use chaincall_phone::negotiation::KeyMode;
use chaincall_wallet::chain::ServerChain;
use clap::Args;
use serde_json::json;

use chaincall_devnet::{ALICE, BOB, Network, NetworkOptions, Timeline, operator_key};

/// Run a whole chaincall network on this machine and place one end-to-end encrypted call.
#[derive(Debug, Args)]
pub(crate) struct DemoArgs {
    /// Print the report as one JSON object.
    #[arg(long)]
    json: bool,
    /// Use this Ethereum JSON-RPC node (e.g. anvil) instead of the embedded chain. The operator
    /// key must be funded there (`--operator-key`; default: anvil's first dev account).
    #[arg(long)]
    rpc: Option<String>,
    /// Hex secp256k1 key of the operator (deploys the keystore, funds and approves).
    #[arg(long)]
    operator_key: Option<String>,
    /// Append each SRTP stream's master key to FILE (`ssrc=… profile=… inline=…`, RFC 4568
    /// encoding) so a capture can be decrypted elsewhere. Debugging only: the file decrypts the call.
    #[arg(long, value_name = "FILE")]
    keylog: Option<PathBuf>,
    /// Key mode of the call: `pke` (the paper's, default) or `dh-sign` (forward secrecy).
    #[arg(long, default_value = "pke")]
    mode: KeyMode,
    /// Seconds of audio each side sends.
    #[arg(long, default_value_t = 2.0)]
    seconds: f64,
    /// Alice sends this WAV file (8 kHz, 16-bit mono PCM, or G.711) instead of the built-in
    /// speech-like signal.
    #[arg(long, value_name = "WAV")]
    audio: Option<PathBuf>,
    /// Keep the network's files here (databases, keys, recorded WAVs) instead of a temporary folder.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
}

/// Runs `chaincall demo`.
pub(crate) fn run(args: DemoArgs) -> Result<()> {
    // Multi-thread: sipd's key directory bridges its sync handshake core to async chain reads.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(run_async(args))
}

async fn run_async(args: DemoArgs) -> Result<()> {
    ensure!(
        args.seconds > 0.0 && args.seconds <= 30.0,
        "--seconds must be in (0, 30]"
    );
    let tmp;
    let dir: PathBuf = match &args.out {
        Some(d) => {
            std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
            d.clone()
        }
        None => {
            tmp = tempfile::tempdir()?;
            tmp.path().to_path_buf()
        }
    };
    if let Some(k) = &args.keylog {
        eprintln!(
            "warning: writing SRTP master keys to {}: anyone holding it can decrypt the call",
            k.display()
        );
    }
    let operator = operator_key(args.operator_key.as_deref())?;
    let report = match &args.rpc {
        None => {
            let chain = Arc::new(EmbeddedChain::default());
            network(chain, "embedded", operator, &args, &dir).await?
        }
        Some(url) => {
            let chain = Arc::new(
                RpcChain::connect(url, RpcConfig::default())
                    .await
                    .with_context(|| format!("connecting to {url}"))?,
            );
            network(chain, "rpc", operator, &args, &dir).await?
        }
    };
    report.print(args.json);
    if report.failed.is_empty() {
        Ok(())
    } else {
        bail!(
            "{} check(s) failed: {}",
            report.failed.len(),
            report.failed.join("; ")
        )
    }
}

#[derive(Default)]
struct Report {
    chain: &'static str,
    timeline: Timeline,
    checks: Vec<(String, bool)>,
    failed: Vec<String>,
    caller: Option<CallReport>,
    callee: Option<CallReport>,
    proof_bytes: usize,
    audio_match: bool,
    total: Duration,
}

impl Report {
    fn check(&mut self, name: &str, ok: bool) {
        if !ok {
            self.failed.push(name.to_owned());
        }
        self.checks.push((name.to_owned(), ok));
    }

    fn ms(d: Duration) -> f64 {
        (d.as_secs_f64() * 1e6).round() / 1e3
    }

    fn print(&self, as_json: bool) {
        let (Some(a), Some(b)) = (&self.caller, &self.callee) else {
            if as_json {
                println!(
                    "{}",
                    json!({"ok": false, "failed": self.failed, "chain": self.chain})
                );
            } else {
                for f in &self.failed {
                    println!("FAILED: {f}");
                }
            }
            return;
        };
        let received = a.stats.rtp_received + b.stats.rtp_received;
        if as_json {
            let obj = json!({
                "ok": self.failed.is_empty(),
                "chain": self.chain,
                "key_mode": a.mode.name(),
                "key_storage_ms": self.timeline.key_storage.iter().map(|d| Self::ms(*d)).collect::<Vec<_>>(),
                "key_retrieval_ms": Self::ms(a.timings.key_retrieval),
                "key_retrieval_verified": a.lookup_verified,
                "callee_key_retrieval_ms": Self::ms(b.timings.key_retrieval),
                "proof_bytes": self.proof_bytes,
                "call_setup_ms": Self::ms(a.timings.call_setup),
                "setup_breakdown_ms": {
                    "caller_key_retrieval": Self::ms(a.timings.key_retrieval),
                    "caller_mikey": Self::ms(a.timings.mikey),
                    "invite_to_200": Self::ms(a.timings.signalling),
                    "callee_key_retrieval": Self::ms(b.timings.key_retrieval),
                    "callee_mikey_and_answer": Self::ms(b.timings.mikey),
                },
                "tls_psk_connect_ms": self.timeline.connect.iter().map(|d| Self::ms(*d)).collect::<Vec<_>>(),
                "register_ms": self.timeline.register.iter().map(|d| Self::ms(*d)).collect::<Vec<_>>(),
                "audio_match": self.audio_match,
                "srtp_packets_sent": a.stats.rtp_sent + b.stats.rtp_sent,
                "srtp_packets_received": received,
                "srtp_packets_rejected": a.stats.rtp_rejected + b.stats.rtp_rejected,
                "srtcp_packets_received": a.stats.rtcp_received + b.stats.rtcp_received,
                "alice": stats_json(a),
                "bob": stats_json(b),
                "checks": self.checks.iter().map(|(n, ok)| json!({"check": n, "ok": ok})).collect::<Vec<_>>(),
                "total_ms": Self::ms(self.total),
            });
            println!("{obj}");
            return;
        }
        println!(
            "chaincall demo — {} chain, one end-to-end encrypted call\n",
            self.chain
        );
        for (name, d, note) in &self.timeline.steps {
            println!("  {:<44} {:>9.1} ms  {}", name, Self::ms(*d), note);
        }
        println!(
            "\nTable I (paper: key storage 11.5 s, key retrieval 507 ms, call set-up 1,218 ms)"
        );
        for (i, d) in self.timeline.key_storage.iter().enumerate() {
            println!(
                "  key storage ({}): receipt → approved + provisioned  {:>9.1} ms",
                ["alice", "bob"][i.min(1)],
                Self::ms(*d)
            );
        }
        println!(
            "  key retrieval (bob's key, {}, {} proof bytes)  {:>9.3} ms",
            if a.lookup_verified {
                "verified"
            } else {
                "NOT verified"
            },
            self.proof_bytes,
            Self::ms(a.timings.key_retrieval)
        );
        println!(
            "  call set-up (INVITE → both SRTP contexts keyed)        {:>9.3} ms",
            Self::ms(a.timings.call_setup)
        );
        println!(
            "    where it went: alice's MIKEY {:.3} ms; INVITE → 200 OK {:.3} ms, of which bob's lookup of alice {:.3} ms and bob's MIKEY + answer {:.3} ms",
            Self::ms(a.timings.mikey),
            Self::ms(a.timings.signalling),
            Self::ms(b.timings.key_retrieval),
            Self::ms(b.timings.mikey)
        );
        println!(
            "\nMedia ({}, AES_CM_128_HMAC_SHA1_80, {})",
            a.codec.rtpmap_name(),
            a.mode.name()
        );
        for (who, r) in [("alice", a), ("bob", b)] {
            println!(
                "  {who:<5}: SRTP sent {} received {} rejected {}; SRTCP sent {} received {}",
                r.stats.rtp_sent,
                r.stats.rtp_received,
                r.stats.rtp_rejected,
                r.stats.rtcp_sent,
                r.stats.rtcp_received
            );
        }
        println!("\nChecks");
        for (name, ok) in &self.checks {
            println!("  [{}] {name}", if *ok { "ok" } else { "FAILED" });
        }
        println!("\ntotal {:.1} ms", Self::ms(self.total));
    }
}

fn stats_json(r: &CallReport) -> serde_json::Value {
    json!({
        "srtp_sent": r.stats.rtp_sent,
        "srtp_received": r.stats.rtp_received,
        "srtp_rejected": r.stats.rtp_rejected,
        "srtcp_sent": r.stats.rtcp_sent,
        "srtcp_received": r.stats.rtcp_received,
        "verified_peer": r.verified_peer.as_ref().map(|p| p.to_string()),
    })
}

async fn network<C: ServerChain>(
    chain: Arc<C>,
    chain_name: &'static str,
    operator: PrivateKeySigner,
    args: &DemoArgs,
    dir: &std::path::Path,
) -> Result<Report> {
    let total = std::time::Instant::now();
    let mut audio_a = match &args.audio {
        Some(p) => {
            chaincall_media::wav::read_file(p).map_err(|e| anyhow!("{}: {e}", p.display()))?
        }
        None => chaincall_media::signal::speech_like((args.seconds * 1000.0) as u32, 1),
    };
    audio_a.truncate((args.seconds * 8000.0) as usize);
    let audio_b = chaincall_media::signal::speech_like((args.seconds * 1000.0) as u32, 2);
    let mut net = Network::start(
        chain,
        operator,
        NetworkOptions {
            dir: dir.to_path_buf(),
            mode: args.mode,
            keylog: args.keylog.clone(),
            tls_keylog: crate::ssl_keylog_file(),
            audio_a: audio_a.clone(),
            audio_b,
        },
    )
    .await?;
    // Both sides send the whole signal (plus time for the last packets to land); then alice hangs up.
    let t = std::time::Instant::now();
    let play = Duration::from_secs_f64(args.seconds) + Duration::from_millis(400);
    let (a, b) = net.call(play).await?;
    net.timeline.steps.push((
        "call: INVITE, SRTP both ways, BYE".into(),
        t.elapsed(),
        format!("{}, {:.1} s of audio each way", a.mode.name(), args.seconds),
    ));
    let mut report = Report {
        chain: chain_name,
        proof_bytes: a.proof_bytes,
        ..Report::default()
    };

    let bob = IdentityName::Phone(PhoneNumber::parse(BOB)?);
    let alice = IdentityName::Phone(PhoneNumber::parse(ALICE)?);
    report.check(
        "alice's lookup of bob's key was proven against a trusted header",
        a.lookup_verified,
    );
    report.check(
        "bob's lookup of alice's key was proven against a trusted header",
        b.lookup_verified,
    );
    report.check(
        "alice's keys are bound to bob's on-chain identity (MIKEY)",
        a.verified_peer.as_ref() == Some(&bob),
    );
    report.check(
        "bob verified alice's MIKEY signature against her on-chain key",
        b.verified_peer.as_ref() == Some(&alice),
    );
    let a_to_b = !a.sent_payload.is_empty() && b.received_payload == a.sent_payload;
    let b_to_a = !b.sent_payload.is_empty() && a.received_payload == b.sent_payload;
    report.check("bob received exactly the audio alice sent", a_to_b);
    report.check("alice received exactly the audio bob sent", b_to_a);
    report.check(
        "no SRTP packet was rejected",
        a.stats.rtp_rejected == 0 && b.stats.rtp_rejected == 0,
    );
    report.check(
        "SRTCP reports flowed both ways",
        a.stats.rtcp_received > 0 && b.stats.rtcp_received > 0,
    );
    report.audio_match = a_to_b && b_to_a;
    if let Some(out) = &args.out {
        for (name, samples) in [
            ("alice-sent.wav", &audio_a),
            ("bob-received.wav", &b.recorded),
            ("alice-received.wav", &a.recorded),
        ] {
            chaincall_media::wav::write_file(out.join(name), samples)
                .map_err(|e| anyhow!("{name}: {e}"))?;
        }
    }
    report.caller = Some(a);
    report.callee = Some(b);
    report.timeline = std::mem::take(&mut net.timeline);
    net.stop().await;
    report.total = total.elapsed();
    Ok(report)
}
