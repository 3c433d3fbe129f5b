//! `chaincall bench setup`: call set-up latency between two onboarded phones on loopback, and the
//! verified key retrieval inside it.
//!
//! The network is the demo's ([`chaincall_devnet::Network`]): keystore, wallet server, sipd over TLS-PSK,
//! alice and bob onboarded and registered. Then alice calls bob `--calls` times; each call carries a
//! short burst of audio both ways and is hung up. Set-up is the paper's measure: from the INVITE
//! leaving alice to both SRTP contexts keyed (bob keys before his 200 OK, alice on receiving it),
//! including alice's verified lookup of bob's key, which precedes the INVITE and is reported
//! separately.
//!
//! `--domains 2` measures the same calls across the SIP security trapezoid too (docs/trapezoid.md):
//! alice at one sipd, bob at a second one, the sipds linked over TLS-PSK between their domains'
//! on-chain keys; both figures come from the same run, one network after the other.
//!
//! `--nat` measures them through the media relay too (needs root): alice and bob each behind
//! their own NAT router in network namespaces, sipd and rtpengine on the public segment, sipd
//! relaying every call (`[relay] mode = "nat"`, [`chaincall_devnet::nat`]); set-up then includes
//! rtpengine's `offer` and `answer` round trips.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use chaincall_chain::{EmbeddedChain, PrivateKeySigner, RpcChain, RpcConfig};
use chaincall_phone::negotiation::KeyMode;
use chaincall_wallet::chain::ServerChain;
use clap::Args;
use serde_json::json;

use chaincall_devnet::nat::NatNet;
use chaincall_devnet::{Domains, Network, NetworkOptions, operator_key};

use crate::{ms, percentile, sort_ms};

/// Arguments of `chaincall bench setup`.
#[derive(Debug, Args)]
pub struct SetupBenchArgs {
    /// Calls to measure (after the first call, which is reported on its own).
    #[arg(long, default_value_t = 50, value_name = "N")]
    calls: usize,
    /// JSON-RPC node (e.g. anvil); without it, the embedded chain.
    #[arg(long, value_name = "URL")]
    rpc: Option<String>,
    /// Hex secp256k1 key of the operator on that node (default: anvil's first dev account).
    #[arg(long)]
    operator_key: Option<String>,
    /// Key mode: `pke` (default) or `dh-sign`.
    #[arg(long, default_value = "pke")]
    mode: KeyMode,
    /// Also measure calls between two sipd domains (`2`), beside the one-domain figure.
    #[arg(long, default_value_t = 1, value_name = "1|2")]
    domains: u8,
    /// Also measure calls with both phones behind NAT and the media through rtpengine, in a
    /// namespace network (needs root), beside the plain figure.
    #[arg(long)]
    nat: bool,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

/// Runs the bench.
pub fn run(args: SetupBenchArgs) -> Result<()> {
    ensure!(
        (1..=10_000).contains(&args.calls),
        "--calls must be 1..=10000"
    );
    ensure!((1..=2).contains(&args.domains), "--domains must be 1 or 2");
    ensure!(
        !args.nat || args.rpc.is_none(),
        "--nat runs on the embedded chain: the phones behind NAT cannot reach an --rpc node"
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let operator = operator_key(args.operator_key.as_deref())?;
        match &args.rpc {
            None => {
                measure(
                    Arc::new(EmbeddedChain::default()),
                    "embedded",
                    operator,
                    &args,
                )
                .await
            }
            Some(url) => {
                let chain = RpcChain::connect(url, RpcConfig::default())
                    .await
                    .with_context(|| format!("connecting to {url}"))?;
                measure(Arc::new(chain), "rpc", operator, &args).await
            }
        }
    })
}

/// Set-up figures of one network's calls, in ms, sorted.
struct Figures {
    /// The first call between the pair, which pays for what later calls find cached (TLS-PSK
    /// sessions, the peers' safety-number fingerprints): kept out of the percentiles.
    first_setup: f64,
    setup: Vec<f64>,
    retrieval: Vec<f64>,
    callee_retrieval: Vec<f64>,
    failed: usize,
}

impl Figures {
    /// The JSON of a network measured beside the plain one (`inter_domain`, `nat`).
    fn summary(&self) -> serde_json::Value {
        json!({
            "failed": self.failed,
            "first_call_setup_ms": self.first_setup,
            "setup_p50_ms": percentile(&self.setup, 50.0),
            "setup_p99_ms": percentile(&self.setup, 99.0),
            "key_retrieval_p50_ms": percentile(&self.retrieval, 50.0),
        })
    }
}

async fn measure<C: ServerChain>(
    chain: Arc<C>,
    chain_name: &str,
    operator: PrivateKeySigner,
    args: &SetupBenchArgs,
) -> Result<()> {
    let one = calls(chain.clone(), operator.clone(), args, Domains::One, None).await?;
    let two = match args.domains {
        2 => Some(calls(chain.clone(), operator.clone(), args, Domains::Two, None).await?),
        _ => None,
    };
    let nat = match args.nat {
        true => {
            let nat = NatNet::start().await?;
            Some(calls(chain, operator, args, Domains::One, Some(&nat)).await?)
        }
        false => None,
    };
    let Figures {
        first_setup,
        setup,
        retrieval,
        callee_retrieval,
        failed,
    } = &one;
    let mut out = json!({
        "chain": chain_name,
        "key_mode": args.mode.name(),
        "calls": args.calls,
        "failed": failed,
        "first_call_setup_ms": first_setup,
        "setup_p50_ms": percentile(setup, 50.0),
        "setup_p99_ms": percentile(setup, 99.0),
        "key_retrieval_p50_ms": percentile(retrieval, 50.0),
        "key_retrieval_p99_ms": percentile(retrieval, 99.0),
        "callee_key_retrieval_p50_ms": percentile(callee_retrieval, 50.0),
        "paper_setup_ms": 1218.0,
        "paper_key_retrieval_ms": 507.0,
    });
    if let Some(two) = &two {
        out["inter_domain"] = two.summary();
    }
    if let Some(nat) = &nat {
        out["nat"] = nat.summary();
        out["nat"]["relay"] = json!("rtpengine");
    }
    if args.json {
        println!("{out}");
    } else {
        println!(
            "call set-up over {} calls ({chain_name} chain, {}): p50 {:.3} ms, p99 {:.3} ms (paper: 1,218 ms)",
            setup.len(),
            args.mode.name(),
            percentile(setup, 50.0),
            percentile(setup, 99.0)
        );
        println!("the first call between the two phones: {first_setup:.3} ms");
        println!(
            "verified key retrieval: p50 {:.3} ms, p99 {:.3} ms (paper: 507 ms); callee's lookup p50 {:.3} ms",
            percentile(retrieval, 50.0),
            percentile(retrieval, 99.0),
            percentile(callee_retrieval, 50.0)
        );
        for (what, f) in [
            ("across two domains (three TLS-PSK hops, two sipds)", &two),
            ("both phones behind NAT, media through rtpengine,", &nat),
        ] {
            if let Some(f) = f {
                println!(
                    "{what} over {} calls: p50 {:.3} ms, p99 {:.3} ms",
                    f.setup.len(),
                    percentile(&f.setup, 50.0),
                    percentile(&f.setup, 99.0)
                );
            }
        }
    }
    let failed =
        failed + two.as_ref().map_or(0, |t| t.failed) + nat.as_ref().map_or(0, |t| t.failed);
    if failed > 0 && !args.json {
        println!("{failed} call(s) failed");
    }
    ensure!(failed == 0, "{failed} call(s) failed");
    Ok(())
}

/// `--calls` calls (after the first) on a fresh network of `domains`, in `nat`'s namespace
/// network when given.
async fn calls<C: ServerChain>(
    chain: Arc<C>,
    operator: PrivateKeySigner,
    args: &SetupBenchArgs,
    domains: Domains,
    nat: Option<&NatNet>,
) -> Result<Figures> {
    let dir = tempfile::tempdir()?;
    // Behind NAT the callee's first packets are dropped until the caller's router has seen her
    // own (docs/relay.md): longer audio, so each side still receives some.
    let audio_ms = if nat.is_some() { 400 } else { 60 };
    // 60 ms of audio each way: enough to prove the media path, short enough to keep calls quick.
    let mut net = Network::start_domains(
        chain,
        operator,
        NetworkOptions {
            dir: dir.path().to_path_buf(),
            mode: args.mode,
            keylog: None,
            tls_keylog: None,
            audio_a: chaincall_media::signal::speech_like(audio_ms, 1),
            audio_b: chaincall_media::signal::speech_like(audio_ms, 2),
            wideband: false,
            keep_playout: false,
            adaptive_loss_hint: true,
            // Every call here is one caller's MIKEY offer to one phone, within seconds: the
            // default quota (32 per two minutes, far above a person's dialling) would refuse
            // the 33rd with 488. The bound stays: the calls plus the first.
            mikey_replay_quota: chaincall_phone::DEFAULT_MIKEY_REPLAY_QUOTA.max(args.calls + 1),
            placement: nat.map(NatNet::placement),
        },
        domains,
    )
    .await?;
    let play = Duration::from_millis(u64::from(audio_ms) + 60);
    // The first call proves the relay is in the path: rtpengine counted its packets.
    let ((first, _), relayed) = net
        .call_observed(play, |id| async move {
            match nat {
                Some(n) => Some(n.query(&id).await),
                None => None,
            }
        })
        .await
        .context("first call")?;
    if let Some(stats) = relayed {
        let stats = stats?;
        ensure!(
            stats.rtp.packets > 0,
            "the first call's media did not go through rtpengine"
        );
    }
    let mut setup = Vec::with_capacity(args.calls);
    let mut retrieval = Vec::with_capacity(args.calls);
    let mut callee_retrieval = Vec::with_capacity(args.calls);
    let mut failed = 0usize;
    for i in 0..args.calls {
        match net.call(play).await {
            Ok((a, b)) => {
                let ok = a.stats.rtp_received > 0
                    && b.stats.rtp_received > 0
                    && a.stats.rtp_rejected == 0
                    && b.stats.rtp_rejected == 0
                    && a.lookup_verified;
                if !ok {
                    tracing::warn!(
                        call = i,
                        caller_received = a.stats.rtp_received,
                        callee_received = b.stats.rtp_received,
                        caller_rejected = a.stats.rtp_rejected,
                        callee_rejected = b.stats.rtp_rejected,
                        caller_sent = a.stats.rtp_sent,
                        callee_sent = b.stats.rtp_sent,
                        verified = a.lookup_verified,
                        "call failed the media check"
                    );
                    failed += 1;
                    continue;
                }
                setup.push(ms(a.timings.call_setup));
                retrieval.push(ms(a.timings.key_retrieval));
                callee_retrieval.push(ms(b.timings.key_retrieval));
            }
            Err(e) => {
                tracing::warn!(call = i, error = %format!("{e:#}"), "call failed");
                failed += 1;
            }
        }
    }
    net.stop().await;
    for v in [&mut setup, &mut retrieval, &mut callee_retrieval] {
        sort_ms(v);
    }
    Ok(Figures {
        first_setup: ms(first.timings.call_setup),
        setup,
        retrieval,
        callee_retrieval,
        failed,
    })
}
