//! `chaincall demo` as a library call: start a [`Network`], place one end-to-end encrypted call,
//! check what a user would check (proven lookups, MIKEY bound to the on-chain identities, the
//! exact audio both ways, no rejected SRTP packet, SRTCP both ways) and report the paper's Table I
//! figures with where each millisecond of set-up went.
//!
//! The CLI parses its flags into [`DemoOptions`] and prints the [`DemoReport`] ([`fmt::Display`]
//! for people, [`DemoReport::to_json`] for machines).

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use chaincall_chain::{EmbeddedChain, PrivateKeySigner, RpcChain, RpcConfig};
use chaincall_identity::{IdentityName, PhoneNumber};
use chaincall_phone::CallReport;
use chaincall_phone::negotiation::KeyMode;
use chaincall_relay::capture::SrtpCheck;
use chaincall_relay::ng::CallStats;
use chaincall_wallet::chain::ServerChain;
use serde_json::{Value, json};

use crate::nat::NatNet;
use crate::{ALICE, BOB, Network, NetworkOptions, Timeline};

/// What the demo does: which chain, key mode, how much audio, where files go.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// An Ethereum JSON-RPC node (e.g. anvil) instead of the embedded chain.
    pub rpc: Option<String>,
    /// The call's key mode.
    pub mode: KeyMode,
    /// Seconds of audio each side sends, in (0, 30].
    pub seconds: f64,
    /// A WAV file alice sends instead of the built-in speech-like signal.
    pub audio: Option<PathBuf>,
    /// Where the network's files (and the recorded WAVs) are kept; a temporary folder otherwise.
    pub out: Option<PathBuf>,
    /// Where each SRTP stream's master key is appended (debugging only: it decrypts the call).
    pub keylog: Option<PathBuf>,
    /// Where TLS secrets are appended for Wireshark (the binary's `SSLKEYLOGFILE`).
    pub tls_keylog: Option<PathBuf>,
    /// Both phones behind NAT in a namespace network, the media through rtpengine ([`crate::nat`];
    /// needs root).
    pub nat: bool,
    /// With `nat`: where the capture taken at the relay is written (pcap).
    pub pcap: Option<PathBuf>,
}

impl DemoOptions {
    /// Refuses options the demo cannot run with (seconds outside (0, 30], SDES keying).
    pub fn check(&self) -> Result<()> {
        ensure!(
            self.seconds > 0.0 && self.seconds <= 30.0,
            "--seconds must be in (0, 30]"
        );
        // The demo exists to show keys bound to on-chain identities; SDES sends the SRTP key in
        // the signalling, bound to nobody, so half its checks could never pass.
        ensure!(
            !matches!(self.mode, KeyMode::Sdes),
            "--mode sdes is not a demo mode: SDES carries the SRTP key in the signalling, not bound \
             to an on-chain key, which is what the demo checks; use pke (default) or dh-sign, or \
             zrtp (bound to both on-chain keys in the media path)"
        );
        ensure!(
            self.nat || self.pcap.is_none(),
            "--pcap needs --nat: the capture is taken at the relay, which only --nat runs"
        );
        // The phones' namespaces have no route to a node on this machine's own network.
        ensure!(
            !self.nat || self.rpc.is_none(),
            "--nat runs on the embedded chain: the phones behind NAT cannot reach an --rpc node"
        );
        Ok(())
    }
}

/// The files a demo writes into `--out`, with SQLite's side files: a folder holding only these
/// is a previous demo's.
const DEMO_FILES: &[&str] = &[
    "admin.token",
    "server-wallet.key",
    "sipd-identity.key",
    "wallet-identity.key",
    "sip.db",
    "wallet.db",
    "alice-sent.wav",
    "alice-received.wav",
    "bob-received.wav",
];

/// Whether `name` is one of [`DEMO_FILES`] or a SQLite side file of one.
fn demo_file(name: &str) -> bool {
    let base = ["-wal", "-shm", "-journal"]
        .iter()
        .find_map(|s| name.strip_suffix(s))
        .unwrap_or(name);
    DEMO_FILES.contains(&base)
}

/// The `--out` folder, ready for a new demo and made absolute (the network's services get paths
/// inside it and must not resolve a relative one a second time): created when missing; a previous
/// demo's files are deleted, so every run starts afresh; anything else in it is refused and
/// left alone.
pub fn prepare_out(out: &Path) -> Result<PathBuf> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let dir = std::fs::canonicalize(out).with_context(|| format!("opening {}", out.display()))?;
    let listing = || format!("reading {}", dir.display());
    let mut previous = Vec::new();
    for entry in std::fs::read_dir(&dir).with_context(listing)? {
        let entry = entry.with_context(listing)?;
        let name = entry.file_name();
        let ours = name.to_str().is_some_and(demo_file) && entry.file_type()?.is_file();
        ensure!(
            ours,
            "--out {}: it holds {}, which no demo wrote; give an empty folder, a new one, or a \
             previous demo's",
            out.display(),
            entry.path().display()
        );
        previous.push(entry.path());
    }
    for path in previous {
        std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
    }
    Ok(dir)
}

/// Runs the demo on the embedded chain or `options.rpc` with `operator` as the keystore's owner.
/// A failed check is in [`DemoReport::failed`], not an error; an error is a network that could not
/// be built or a call that could not be placed.
pub async fn run(operator: PrivateKeySigner, options: &DemoOptions) -> Result<DemoReport> {
    options.check()?;
    let tmp;
    let dir: PathBuf = match &options.out {
        Some(d) => prepare_out(d)?,
        None => {
            tmp = tempfile::tempdir()?;
            tmp.path().to_path_buf()
        }
    };
    if options.nat {
        use tokio::signal::unix::{SignalKind, signal};
        // Handlers installed before anything is built: Ctrl-C or SIGTERM drops the demo, and with
        // it rtpengine, the capture and the namespaces (a network still being built is dropped
        // when its blocking task ends, which the runtime waits for).
        let (mut int, mut term) = (
            signal(SignalKind::interrupt())?,
            signal(SignalKind::terminate())?,
        );
        let demo = async {
            let mut nat = NatNet::start().await?;
            let chain = Arc::new(EmbeddedChain::default());
            network(chain, "embedded", operator, options, &dir, Some(&mut nat)).await
        };
        return tokio::select! {
            report = demo => report,
            _ = int.recv() => bail!("interrupted: rtpengine stopped and the namespace network deleted"),
            _ = term.recv() => bail!("terminated: rtpengine stopped and the namespace network deleted"),
        };
    }
    match &options.rpc {
        None => {
            let chain = Arc::new(EmbeddedChain::default());
            network(chain, "embedded", operator, options, &dir, None).await
        }
        Some(url) => {
            let chain = RpcChain::connect(url, RpcConfig::default())
                .await
                .with_context(|| format!("connecting to {url}"))?;
            network(Arc::new(chain), "rpc", operator, options, &dir, None).await
        }
    }
}

/// Where the Table I figures the demo compares with come from.
pub const PAPER_TABLE: &str = "Table I of the paper chaincall implements (seed 000, \
     seeds/000_9909620fa780b06d.txt: the Ethereum-keystore VoIP paper): key storage 11.5 s on an \
     Ethereum testnet, key retrieval 507 ms, call set-up 1,218 ms";

/// Why the demo's key storage is no measure of the paper's, by chain.
fn not_a_testnet(chain: &str) -> &'static str {
    if chain == "embedded" {
        "  (here: the embedded chain, in this process, which mines every transaction at once; it is \
         not a testnet: no block time, no network latency, so key storage is not comparable)"
    } else {
        "  (here: the --rpc node; a local one such as anvil mines every transaction at once and is \
         not a testnet: no block time, no network latency, so key storage is not comparable)"
    }
}

/// What the demo measured and checked.
#[derive(Debug, Default)]
pub struct DemoReport {
    chain: &'static str,
    timeline: Timeline,
    checks: Vec<(String, bool)>,
    /// The checks that failed (empty when the demo passed).
    pub failed: Vec<String>,
    caller: Option<CallReport>,
    callee: Option<CallReport>,
    proof_bytes: usize,
    audio_match: bool,
    total: Duration,
    relay: Option<RelayReport>,
}

/// What the relay saw of a `--nat` call.
#[derive(Debug, Default)]
struct RelayReport {
    /// RTP and RTCP packets rtpengine counted for the call by the hang-up.
    packets: u64,
    /// What the capture at the relay holds.
    capture: SrtpCheck,
    /// Whether the capture was checked against keylog keys (else for plaintext only).
    keyed: bool,
}

impl DemoReport {
    fn check(&mut self, name: &str, ok: bool) {
        if !ok {
            self.failed.push(name.to_owned());
        }
        self.checks.push((name.to_owned(), ok));
    }

    /// The JSON view: Table I figures, the set-up breakdown, media counters and every check.
    pub fn to_json(&self) -> Value {
        let (Some(a), Some(b)) = (&self.caller, &self.callee) else {
            return json!({"ok": false, "failed": self.failed, "chain": self.chain});
        };
        let received = a.stats.rtp_received + b.stats.rtp_received;
        let mut out = json!({
            "ok": self.failed.is_empty(),
            "chain": self.chain,
            "key_mode": a.mode.name(),
            "codec": a.codec.encoding_name(),
            "key_storage_ms": self.timeline.key_storage.iter().map(|d| ms(*d)).collect::<Vec<_>>(),
            "key_retrieval_ms": ms(a.timings.key_retrieval),
            "key_retrieval_verified": a.lookup_verified,
            "callee_key_retrieval_ms": ms(b.timings.key_retrieval),
            "proof_bytes": self.proof_bytes,
            "call_setup_ms": ms(a.timings.call_setup),
            "setup_breakdown_ms": {
                "caller_key_retrieval": ms(a.timings.key_retrieval),
                "caller_mikey": ms(a.timings.mikey),
                "invite_to_200": ms(a.timings.signalling),
                "callee_key_retrieval": ms(b.timings.key_retrieval),
                "callee_mikey_and_answer": ms(b.timings.mikey),
                // With ZRTP the "mikey" figures are the offer's and answer's Hello hashes; the
                // keys come from this exchange in the media path.
                "zrtp_exchange": a.zrtp.as_ref().map(|z| ms(z.exchange)),
            },
            "tls_psk_connect_ms": self.timeline.connect.iter().map(|d| ms(*d)).collect::<Vec<_>>(),
            "register_ms": self.timeline.register.iter().map(|d| ms(*d)).collect::<Vec<_>>(),
            "audio_match": self.audio_match,
            "srtp_packets_sent": a.stats.rtp_sent + b.stats.rtp_sent,
            "srtp_packets_received": received,
            "srtp_packets_rejected": a.stats.rtp_rejected + b.stats.rtp_rejected,
            "srtcp_packets_received": a.stats.rtcp_received + b.stats.rtcp_received,
            "alice": stats_json(a),
            "bob": stats_json(b),
            "checks": self.checks.iter().map(|(n, ok)| json!({"check": n, "ok": ok})).collect::<Vec<_>>(),
            "total_ms": ms(self.total),
            "paper": {
                "source": "seeds/000_9909620fa780b06d.txt (seed 000), Table I",
                "network": "Ethereum testnet",
                "key_storage_ms": 11_500,
                "key_retrieval_ms": 507,
                "call_setup_ms": 1_218,
                "note": not_a_testnet(self.chain).trim().trim_matches(['(', ')']),
            },
        });
        // Only a --nat demo has a relay.
        if let Some(r) = &self.relay {
            out["relay"] = json!("rtpengine");
            out["relay_packets"] = json!(r.packets);
            out["relay_capture"] = json!({
                "rtp": r.capture.rtp,
                "rtcp": r.capture.rtcp,
                "authenticated": r.capture.authenticated,
                "not_authenticated": r.capture.failed,
                "plaintext": r.capture.plaintext,
                "keylog_checked": r.keyed,
            });
        }
        out
    }
}

impl fmt::Display for DemoReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (Some(a), Some(b)) = (&self.caller, &self.callee) else {
            for failed in &self.failed {
                writeln!(f, "FAILED: {failed}")?;
            }
            return Ok(());
        };
        writeln!(
            f,
            "chaincall demo — {} chain, one end-to-end encrypted call\n",
            self.chain
        )?;
        for (name, d, note) in &self.timeline.steps {
            writeln!(f, "  {:<44} {:>9.1} ms  {}", name, ms(*d), note)?;
        }
        writeln!(f, "\n{PAPER_TABLE}\n{}", not_a_testnet(self.chain))?;
        for (i, d) in self.timeline.key_storage.iter().enumerate() {
            writeln!(
                f,
                "  key storage ({}): receipt → approved + provisioned  {:>9.1} ms",
                ["alice", "bob"][i.min(1)],
                ms(*d)
            )?;
        }
        writeln!(
            f,
            "  key retrieval (bob's key, {}, {} proof bytes)  {:>9.3} ms",
            if a.lookup_verified {
                "verified"
            } else {
                "NOT verified"
            },
            self.proof_bytes,
            ms(a.timings.key_retrieval)
        )?;
        writeln!(
            f,
            "  call set-up (INVITE → both SRTP contexts keyed)        {:>9.3} ms",
            ms(a.timings.call_setup)
        )?;
        match &a.zrtp {
            // ZRTP keys in the media path after the answer: the offer holds only its Hello hash.
            Some(z) => writeln!(
                f,
                "    where it went: alice's offer (ZRTP Hello hash) {:.3} ms; INVITE → 200 OK {:.3} ms, of which bob's lookup of alice {:.3} ms; then the ZRTP exchange in the media path {:.3} ms",
                ms(a.timings.mikey),
                ms(a.timings.signalling),
                ms(b.timings.key_retrieval),
                ms(z.exchange)
            )?,
            None => writeln!(
                f,
                "    where it went: alice's MIKEY {:.3} ms; INVITE → 200 OK {:.3} ms, of which bob's lookup of alice {:.3} ms and bob's MIKEY + answer {:.3} ms",
                ms(a.timings.mikey),
                ms(a.timings.signalling),
                ms(b.timings.key_retrieval),
                ms(b.timings.mikey)
            )?,
        }
        writeln!(
            f,
            "\nMedia ({}, AES_CM_128_HMAC_SHA1_80, {})",
            a.codec.encoding_name(),
            a.mode.name()
        )?;
        for (who, r) in [("alice", a), ("bob", b)] {
            writeln!(
                f,
                "  {who:<5}: SRTP sent {} received {} rejected {}; SRTCP sent {} received {}",
                r.stats.rtp_sent,
                r.stats.rtp_received,
                r.stats.rtp_rejected,
                r.stats.rtcp_sent,
                r.stats.rtcp_received
            )?;
        }
        if let Some(r) = &self.relay {
            writeln!(
                f,
                "  relay: rtpengine counted {} packets; the capture at its public interface holds \
                 {} SRTP and {} SRTCP packets, {} authenticated with the keylog keys, {} plaintext",
                r.packets,
                r.capture.rtp,
                r.capture.rtcp,
                r.capture.authenticated,
                r.capture.plaintext
            )?;
        }
        writeln!(f, "\nChecks")?;
        for (name, ok) in &self.checks {
            writeln!(f, "  [{}] {name}", if *ok { "ok" } else { "FAILED" })?;
        }
        writeln!(f, "\ntotal {:.1} ms", ms(self.total))
    }
}

/// Milliseconds to the microsecond.
fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
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

/// The `--nat` checks: rtpengine's own statistics show both phones' media, and the capture at the
/// relay's public interface holds SRTP only (written to `--pcap`). `stats` is rtpengine's answer
/// to the `query` made before the hang-up.
fn relay_checks(
    report: &mut DemoReport,
    nat: &mut NatNet,
    stats: Result<CallStats>,
    args: &DemoOptions,
    a: &CallReport,
    b: &CallReport,
) -> Result<RelayReport> {
    const THROUGH: &str =
        "media went through the relay: rtpengine counted packets from both phones";
    let packets = match stats {
        Ok(stats) => {
            // By the party (SIP tag) each relay port receives from; with rtcp-mux rtpengine flags
            // every stream RTCP, so RTP and RTCP ports are not told apart here.
            let parties: std::collections::BTreeSet<&str> = stats
                .streams
                .iter()
                .filter(|s| s.counters.packets > 0)
                .map(|s| s.tag.as_str())
                .collect();
            report.check(THROUGH, parties.len() >= 2);
            stats.rtp.packets + stats.rtcp.packets
        }
        Err(e) => {
            report.check(&format!("{THROUGH} ({e:#})"), false);
            0
        }
    };
    let pcap = nat.finish_capture();
    if let Some(path) = &args.pcap {
        std::fs::write(path, &pcap).with_context(|| format!("writing {}", path.display()))?;
    }
    let keylog = match &args.keylog {
        Some(p) => {
            std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?
        }
        None => String::new(),
    };
    let capture = crate::nat::check_capture(&pcap, &keylog, &[&a.sent_payload, &b.sent_payload])?;
    // ZRTP's keys never reach the key log; without one, the capture is checked for plaintext only.
    let keyed = args.keylog.is_some() && a.mode != KeyMode::Zrtp;
    if keyed {
        report.check(
            "the relay carried only SRTP: every packet in the capture at its public interface \
             authenticated with the keylog keys, none held plaintext audio",
            capture.only_srtp(),
        );
    } else {
        report.check(
            "the relay carried no plaintext audio (with --keylog and MIKEY, every packet is also authenticated)",
            // ZRTP's own messages share the media ports: not RTP, and not audio.
            capture.rtp > 0 && capture.plaintext == 0,
        );
    }
    Ok(RelayReport {
        packets,
        capture,
        keyed,
    })
}

async fn network<C: ServerChain>(
    chain: Arc<C>,
    chain_name: &'static str,
    operator: PrivateKeySigner,
    args: &DemoOptions,
    dir: &Path,
    nat: Option<&mut NatNet>,
) -> Result<DemoReport> {
    let total = Instant::now();
    let mut audio_a = match &args.audio {
        Some(p) => chaincall_media::wav::read_file(p).with_context(|| p.display().to_string())?,
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
            tls_keylog: args.tls_keylog.clone(),
            audio_a: audio_a.clone(),
            audio_b,
            wideband: false,
            keep_playout: false,
            adaptive_loss_hint: false,
            mikey_replay_quota: chaincall_phone::DEFAULT_MIKEY_REPLAY_QUOTA,
            placement: nat.as_ref().map(|n| n.placement()),
        },
    )
    .await?;
    // Both sides send the whole signal (plus time for the last packets to land); then alice hangs up.
    let t = Instant::now();
    let play = Duration::from_secs_f64(args.seconds) + Duration::from_millis(400);
    // rtpengine deletes the session on the BYE: its statistics are asked for before the hang-up.
    let relay = nat.as_deref();
    let ((a, b), stats) = net
        .call_observed(play, |id| async move {
            match relay {
                Some(n) => Some(n.query(&id).await),
                None => None,
            }
        })
        .await?;
    net.timeline.steps.push((
        "call: INVITE, SRTP both ways, BYE".into(),
        t.elapsed(),
        format!("{}, {:.1} s of audio each way", a.mode.name(), args.seconds),
    ));
    let mut report = DemoReport {
        chain: chain_name,
        proof_bytes: a.proof_bytes,
        ..DemoReport::default()
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
    // ZRTP binds the keys to both on-chain keys in the media path (the aux secret); MIKEY by
    // its signature in the offer.
    let zrtp = a.mode == KeyMode::Zrtp;
    report.check(
        if zrtp {
            "alice's keys are bound to bob's on-chain identity (ZRTP chain binding)"
        } else {
            "alice's keys are bound to bob's on-chain identity (MIKEY)"
        },
        a.verified_peer.as_ref() == Some(&bob),
    );
    report.check(
        if zrtp {
            "bob's keys are bound to alice's on-chain identity (ZRTP chain binding)"
        } else {
            "bob verified alice's MIKEY signature against her on-chain key"
        },
        b.verified_peer.as_ref() == Some(&alice),
    );
    if zrtp {
        let (za, zb) = (a.zrtp.as_ref(), b.zrtp.as_ref());
        report.check(
            "the ZRTP exchange was bound to both on-chain keys (same SAS, chain binding held)",
            za.zip(zb)
                .is_some_and(|(x, y)| x.chain_bound && y.chain_bound && x.sas == y.sas),
        );
    }
    report.check(
        "bob verified alice's PASSporT (Identity header) against her on-chain key before ringing",
        b.caller.as_ref().is_some_and(|c| {
            matches!(
                c.verification,
                chaincall_phone::Verification::Verified {
                    proof: chaincall_phone::caller::Proof::PassportAndMikey
                        | chaincall_phone::caller::Proof::Passport,
                    ..
                }
            )
        }),
    );
    let a_to_b = !a.sent_payload.is_empty() && b.received_payload == a.sent_payload;
    let b_to_a = !b.sent_payload.is_empty() && a.received_payload == b.sent_payload;
    report.check("bob received exactly the audio alice sent", a_to_b);
    let b_heard = if nat.is_some() && !b_to_a {
        // bob, answering, sends first; alice's router drops what arrives before her own first
        // packet opened its mapping towards the relay (docs/relay.md): the rest must be exact.
        let lost = b.stats.rtp_sent.saturating_sub(a.stats.rtp_received);
        let ok = !a.received_payload.is_empty()
            && b.sent_payload.ends_with(&a.received_payload)
            && lost < b.stats.rtp_sent / 2;
        report.check(
            &format!(
                "alice received exactly the audio bob sent from her first packet on (her NAT \
                 dropped the {lost} packets bob sent before it)"
            ),
            ok,
        );
        ok
    } else {
        report.check("alice received exactly the audio bob sent", b_to_a);
        b_to_a
    };
    report.check(
        "no SRTP packet was rejected",
        a.stats.rtp_rejected == 0 && b.stats.rtp_rejected == 0,
    );
    report.check(
        "SRTCP reports flowed both ways",
        a.stats.rtcp_received > 0 && b.stats.rtcp_received > 0,
    );
    report.audio_match = a_to_b && b_heard;
    if let (Some(n), Some(stats)) = (nat, stats) {
        report.relay = Some(relay_checks(&mut report, n, stats, args, &a, &b)?);
    }
    if args.out.is_some() {
        for (name, samples) in [
            ("alice-sent.wav", &audio_a),
            ("bob-received.wav", &b.recorded),
            ("alice-received.wav", &a.recorded),
        ] {
            chaincall_media::wav::write_file(dir.join(name), samples)
                .with_context(|| name.to_string())?;
        }
    }
    report.caller = Some(a);
    report.callee = Some(b);
    report.timeline = std::mem::take(&mut net.timeline);
    net.stop().await;
    report.total = total.elapsed();
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(seconds: f64) -> DemoOptions {
        DemoOptions {
            rpc: None,
            mode: KeyMode::MikeyPke,
            seconds,
            audio: None,
            out: None,
            keylog: None,
            tls_keylog: None,
            nat: false,
            pcap: None,
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_demo_call_passes_every_check_and_reports_table_one() {
        let report = run(crate::operator_key(None).unwrap(), &options(0.5))
            .await
            .unwrap();
        assert!(report.failed.is_empty(), "{:?}", report.failed);
        let json = report.to_json();
        assert_eq!(json["ok"], true);
        assert_eq!(json["chain"], "embedded");
        assert_eq!(json["key_retrieval_verified"], true);
        assert_eq!(json["audio_match"], true);
        assert_eq!(json["srtp_packets_rejected"], 0);
        let text = report.to_string();
        assert!(
            text.starts_with("chaincall demo — embedded chain"),
            "{text}"
        );
        assert!(
            text.contains("  [ok] bob received exactly the audio alice sent"),
            "{text}"
        );
        assert!(!text.contains("FAILED"), "{text}");
        assert!(
            text.contains("(seed 000, seeds/000_9909620fa780b06d.txt"),
            "{text}"
        );
        assert!(
            text.contains("the embedded chain, in this process"),
            "{text}"
        );
        assert_eq!(json["paper"]["call_setup_ms"], 1218);
        assert!(json.get("relay").is_none(), "no relay without --nat");
    }

    #[test]
    fn out_is_made_absolute_and_only_a_previous_demos_files_are_cleared() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("a/b");
        assert_eq!(prepare_out(&out).unwrap(), out.canonicalize().unwrap());
        for name in [
            "wallet.db",
            "wallet.db-wal",
            "alice-sent.wav",
            "admin.token",
        ] {
            std::fs::write(out.join(name), "x").unwrap();
        }
        prepare_out(&out).unwrap();
        assert_eq!(std::fs::read_dir(&out).unwrap().count(), 0);
        // A foreign file, or a folder, stops it before anything is deleted.
        for foreign in ["notes.txt", "wallet.dbx"] {
            std::fs::write(out.join("sip.db"), "x").unwrap();
            std::fs::write(out.join(foreign), "x").unwrap();
            let err = prepare_out(&out).unwrap_err().to_string();
            assert!(err.contains("which no demo wrote"), "{err}");
            assert!(out.join("sip.db").exists());
            std::fs::remove_file(out.join(foreign)).unwrap();
        }
        std::fs::create_dir(out.join("admin.token-wal")).unwrap();
        assert!(prepare_out(&out).is_err());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_zrtp_demo_call_is_bound_to_both_on_chain_keys() {
        let options = DemoOptions {
            mode: KeyMode::Zrtp,
            ..options(0.5)
        };
        let report = run(crate::operator_key(None).unwrap(), &options)
            .await
            .unwrap();
        assert!(report.failed.is_empty(), "{:?}", report.failed);
        assert!(
            report
                .checks
                .iter()
                .any(|(name, ok)| *ok && name.starts_with("the ZRTP exchange was bound")),
            "{:?}",
            report.checks
        );
        assert_eq!(report.to_json()["key_mode"], "zrtp");
    }

    #[tokio::test]
    async fn sdes_is_refused_before_anything_starts() {
        let options = DemoOptions {
            mode: KeyMode::Sdes,
            ..options(1.0)
        };
        let err = run(crate::operator_key(None).unwrap(), &options)
            .await
            .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("--mode sdes is not a demo mode")
        );
    }

    #[test]
    fn pcap_needs_nat_and_nat_runs_on_the_embedded_chain() {
        let pcap = DemoOptions {
            pcap: Some("c.pcap".into()),
            ..options(1.0)
        };
        let err = pcap.check().unwrap_err().to_string();
        assert!(err.starts_with("--pcap needs --nat"), "{err}");
        let rpc = DemoOptions {
            nat: true,
            rpc: Some("http://127.0.0.1:8545".into()),
            ..options(1.0)
        };
        let err = rpc.check().unwrap_err().to_string();
        assert!(err.starts_with("--nat runs on the embedded chain"), "{err}");
    }

    #[tokio::test]
    async fn seconds_out_of_range_are_refused_before_anything_starts() {
        for seconds in [0.0, -1.0, 31.0] {
            let err = run(crate::operator_key(None).unwrap(), &options(seconds))
                .await
                .unwrap_err();
            assert_eq!(err.to_string(), "--seconds must be in (0, 30]");
        }
    }
}
