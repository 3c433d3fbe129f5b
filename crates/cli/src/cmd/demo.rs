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

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use alloy::primitives::Address;
use anyhow::{Context, Result, anyhow, bail, ensure};
use chaincall_chain::verified::HeaderTrust;
use chaincall_chain::{EmbeddedChain, PrivateKeySigner, RpcChain, RpcConfig, dev_signer};
use chaincall_identity::{DomainName, IdentityKey, IdentityName, PhoneNumber};
use chaincall_phone::negotiation::KeyMode;
use chaincall_phone::{
    CallReport, KeyLookup, Phone, PhoneConfig, PhoneEvent, PhoneEvents, PhoneSecrets, Signalling,
};
use chaincall_wallet::chain::ServerChain;
use chaincall_wallet::receipt::{Purchase, StoreKey, random_order_id, sip_password};
use clap::Args;
use rand_core::{OsRng, RngCore};
use serde_json::json;

const SIP_DOMAIN: &str = "sip.chaincall.test";
const WALLET_DOMAIN: &str = "wallet.chaincall.test";
const PACKAGE: &str = "org.chaincall.phone";
const PRODUCT: &str = "onboarding";
const ALICE: &str = "+15550100001";
const BOB: &str = "+15550100002";

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
    let operator = match &args.operator_key {
        Some(k) => k
            .trim()
            .trim_start_matches("0x")
            .parse::<PrivateKeySigner>()
            .map_err(|e| anyhow!("--operator-key: {e}"))?,
        None => dev_signer(0),
    };
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
    steps: Vec<(String, Duration, String)>,
    checks: Vec<(String, bool)>,
    failed: Vec<String>,
    key_storage: Vec<Duration>,
    caller: Option<CallReport>,
    callee: Option<CallReport>,
    proof_bytes: usize,
    connect: Vec<Duration>,
    register: Vec<Duration>,
    audio_match: bool,
    total: Duration,
}

impl Report {
    fn step(&mut self, name: &str, started: Instant, note: impl Into<String>) {
        self.steps
            .push((name.to_owned(), started.elapsed(), note.into()));
    }

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
                "key_storage_ms": self.key_storage.iter().map(|d| Self::ms(*d)).collect::<Vec<_>>(),
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
                "tls_psk_connect_ms": self.connect.iter().map(|d| Self::ms(*d)).collect::<Vec<_>>(),
                "register_ms": self.register.iter().map(|d| Self::ms(*d)).collect::<Vec<_>>(),
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
        for (name, d, note) in &self.steps {
            println!("  {:<44} {:>9.1} ms  {}", name, Self::ms(*d), note);
        }
        println!(
            "\nTable I (paper: key storage 11.5 s, key retrieval 507 ms, call set-up 1,218 ms)"
        );
        for (i, d) in self.key_storage.iter().enumerate() {
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

struct Onboarded {
    secrets: PhoneSecrets,
    elapsed: Duration,
}

#[allow(clippy::too_many_arguments)]
async fn onboard<C: ServerChain>(
    chain: &Arc<C>,
    contract: Address,
    client: &chaincall_wallet::WalletClient,
    server_key: &chaincall_identity::PublicIdentityKey,
    store: &StoreKey,
    number: &str,
) -> Result<Onboarded> {
    let mut secrets = PhoneSecrets::generate(number);
    let mut token = [0u8; 24];
    OsRng.fill_bytes(&mut token);
    let purchase = Purchase {
        order_id: random_order_id(),
        package_name: PACKAGE.into(),
        product_id: PRODUCT.into(),
        purchase_time: 1_700_000_000_000,
        purchase_state: 0,
        purchase_token: hex::encode(token),
        quantity: 1,
        acknowledged: false,
    };
    let receipt = store.issue(&purchase);
    let t = Instant::now();
    let status = chaincall_wallet::onboard_phone(
        client,
        &**chain,
        contract,
        server_key,
        &secrets.wallet,
        &secrets.identity.public(),
        number,
        receipt.clone(),
        Duration::from_secs(30),
    )
    .await
    .with_context(|| format!("onboarding {number}"))?;
    ensure!(
        status.state == "provisioned",
        "{number}: onboarding ended in state {}",
        status.state
    );
    secrets.sip_password = Some(sip_password(&receipt)?);
    Ok(Onboarded {
        secrets,
        elapsed: t.elapsed(),
    })
}

fn write_file(path: &Path, text: &str) -> Result<()> {
    chaincall_wallet::server::write_secret(path, text)
        .with_context(|| format!("writing {}", path.display()))
}

async fn network<C: ServerChain>(
    chain: Arc<C>,
    chain_name: &'static str,
    operator: PrivateKeySigner,
    args: &DemoArgs,
    dir: &Path,
) -> Result<Report> {
    let total = Instant::now();
    let mut report = Report {
        chain: chain_name,
        ..Report::default()
    };

    // 1. The keystore.
    let t = Instant::now();
    let deployed = chain
        .deploy(&operator)
        .await
        .context("deploying the keystore")?;
    let contract = deployed
        .contract_address
        .ok_or_else(|| anyhow!("deployment has no contract address"))?;
    report.step(
        "deploy keystore",
        t,
        format!("{contract}, {} gas", deployed.gas_used),
    );

    // 2. sipd's identity on chain (the operator vouches for its servers: no PKI).
    let t = Instant::now();
    let sipd_key = IdentityKey::generate();
    let sip_name = DomainName::parse(SIP_DOMAIN)?;
    chaincall_wallet::service::publish_identity(
        &*chain,
        contract,
        &operator,
        &sip_name,
        &sipd_key.public(),
    )
    .await
    .context("publishing sipd's identity")?;
    report.step("publish sipd identity", t, SIP_DOMAIN);

    // 3. The wallet-management server.
    let t = Instant::now();
    let store = StoreKey::generate().context("store key")?;
    write_file(
        &dir.join("server-wallet.key"),
        &hex::encode(operator.to_bytes()),
    )?;
    write_file(&dir.join("store-public.b64"), &store.public_key_base64()?)?;
    let mut admin = [0u8; 16];
    OsRng.fill_bytes(&mut admin);
    write_file(&dir.join("admin.token"), &hex::encode(admin))?;
    let sip_db = dir.join("sip.db");
    let d = dir.display();
    let wallet_toml = format!(
        r#"listen = "127.0.0.1:0"
worker_interval_ms = 100
[chain]
backend = "embedded"
wallet_key_file = "{d}/server-wallet.key"
[identity]
domain = "{WALLET_DOMAIN}"
key_file = "{d}/wallet-identity.key"
[store]
package_name = "{PACKAGE}"
product_id = "{PRODUCT}"
public_key_file = "{d}/store-public.b64"
[database]
url = "sqlite://{d}/wallet.db?mode=rwc"
[sip]
database_url = "sqlite://{}?mode=rwc"
domain = "{SIP_DOMAIN}"
[admin]
token_file = "{d}/admin.token"
"#,
        sip_db.display()
    );
    std::fs::write(dir.join("wallet.toml"), &wallet_toml)?;
    let wallet_cfg = chaincall_wallet::WalletConfig::load(&dir.join("wallet.toml"))
        .map_err(|e| anyhow!("wallet config: {e}"))?;
    let service = chaincall_wallet::server::build_service(&wallet_cfg, chain.clone(), contract)
        .await
        .map_err(|e| anyhow!("wallet server: {e}"))?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let wallet_url = format!("http://{}", listener.local_addr()?);
    let (wallet_stop, wallet_stopped) = tokio::sync::oneshot::channel::<()>();
    {
        let (svc, cfg) = (service.clone(), wallet_cfg.clone());
        tokio::spawn(async move {
            let _ = chaincall_wallet::server::serve(listener, svc, &cfg, async {
                let _ = wallet_stopped.await;
            })
            .await;
        });
    }
    report.step("start wallet server", t, wallet_url.clone());

    // 4. sipd with TLS-PSK, reading the subscriber table the wallet server writes.
    let t = Instant::now();
    let sipd_key_file = dir.join("sipd-identity.key");
    write_file(
        &sipd_key_file,
        &hex::encode(&sipd_key.dangerous_secret_bytes()[..]),
    )?;
    let sipd_toml = format!(
        r#"listen = ["tls:127.0.0.1:0"]
domain = "{SIP_DOMAIN}"
[auth]
mode = "digest"
database = "sqlite://{}"
create_schema = true
invite = true
[tls_psk]
identity = "{SIP_DOMAIN}"
key_file = "{}"
rpc_url = "in-process"
contract = "{contract}"
"#,
        sip_db.display(),
        sipd_key_file.display()
    );
    std::fs::write(dir.join("sipd.toml"), &sipd_toml)?;
    let sipd_cfg = chaincall_sipd::Config::load(&dir.join("sipd.toml"))
        .map_err(|e| anyhow!("sipd config: {e}"))?;
    let settings = sipd_cfg
        .tls_psk
        .clone()
        .ok_or_else(|| anyhow!("sipd config without [tls_psk]"))?;
    let psk = chaincall_sipd::tls::psk_server_on_chain(&settings, chain.clone())
        .await
        .map_err(|e| anyhow!("sipd TLS-PSK: {e}"))?;
    let sipd = chaincall_sipd::Server::bind_with_tls_psk(sipd_cfg, psk)
        .await
        .map_err(|e| anyhow!("sipd: {e}"))?;
    let sipd_addr: SocketAddr = sipd
        .local()
        .iter()
        .find_map(|l| match l {
            chaincall_sipd::Listen::Tls(a) => Some(*a),
            _ => None,
        })
        .ok_or_else(|| anyhow!("sipd has no TLS listener"))?;
    let (sipd_stop, sipd_stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(sipd.run(async {
        let _ = sipd_stopped.await;
    }));
    report.step("start sipd (TLS-PSK)", t, sipd_addr.to_string());

    // 5. Onboarding, the paper's Fig. 2, for both phones.
    let client = chaincall_wallet::WalletClient::new(wallet_url.clone());
    let server_key = chaincall_wallet::server_identity_key(&*chain, contract, WALLET_DOMAIN)
        .await
        .context("the wallet server's key on chain")?;
    let mut phones = Vec::new();
    for number in [ALICE, BOB] {
        let t = Instant::now();
        let o = onboard(&chain, contract, &client, &server_key, &store, number).await?;
        report.key_storage.push(o.elapsed);
        report.step(
            &format!("onboard {number}"),
            t,
            "receipt → funded → addClient → approved → SIP credentials",
        );
        phones.push(o.secrets);
    }

    // 6. Phones: verified lookups pinned to the genesis block, TLS-PSK to sipd, REGISTER.
    let genesis = chain
        .block_header(0)
        .await
        .context("genesis header")?
        .hash_slow();
    let trust = Arc::new(HeaderTrust::checkpoint(0, genesis));
    let mut audio_a = match &args.audio {
        Some(p) => {
            chaincall_media::wav::read_file(p).map_err(|e| anyhow!("{}: {e}", p.display()))?
        }
        None => chaincall_media::signal::speech_like((args.seconds * 1000.0) as u32, 1),
    };
    audio_a.truncate((args.seconds * 8000.0) as usize);
    let audio_b = chaincall_media::signal::speech_like((args.seconds * 1000.0) as u32, 2);
    let mut handles: Vec<(Phone, PhoneEvents)> = Vec::new();
    for (secrets, audio) in phones.iter().zip([audio_a.clone(), audio_b.clone()]) {
        let number = PhoneNumber::parse(&secrets.number)?;
        let cfg = PhoneConfig {
            number: number.clone(),
            identity: Arc::new(secrets.identity.clone()),
            sip_password: secrets
                .sip_password
                .clone()
                .ok_or_else(|| anyhow!("no SIP password"))?,
            sip_domain: SIP_DOMAIN.into(),
            signalling: Signalling::TlsPsk {
                addr: sipd_addr,
                server: IdentityName::Domain(sip_name.clone()),
            },
            media_ip: "127.0.0.1".parse()?,
            codecs: vec![
                chaincall_media::g711::Codec::Pcmu,
                chaincall_media::g711::Codec::Pcma,
            ],
            key_mode: args.mode,
            keylog: args.keylog.clone(),
            auto_answer: true,
            audio: Arc::new(audio),
            register_expires: 600,
        };
        let lookup = KeyLookup::new(chain.clone(), contract, Some(trust.clone()));
        let t = Instant::now();
        let (phone, events, connect) = Phone::connect(cfg, lookup)
            .await
            .with_context(|| format!("{number}: connecting to sipd"))?;
        report.connect.push(connect);
        report.step(
            &format!("{number}: handshake + TLS-PSK"),
            t,
            "STS with sipd's on-chain key",
        );
        let t = Instant::now();
        let expires = phone
            .register(600)
            .await
            .with_context(|| format!("{number}: REGISTER"))?;
        report.register.push(t.elapsed());
        report.step(
            &format!("{number}: REGISTER (digest)"),
            t,
            format!("expires {expires}"),
        );
        handles.push((phone, events));
    }
    let (bob, mut bob_events) = handles.pop().expect("two phones");
    let (alice, mut alice_events) = handles.pop().expect("two phones");

    // 7. The call.
    let t = Instant::now();
    let bob_number = PhoneNumber::parse(BOB)?;
    let call_id = alice.call(&bob_number).await.context("alice calls bob")?;
    let up = wait_for(&mut alice_events, Duration::from_secs(10), |e| {
        matches!(e, PhoneEvent::CallUp { .. })
    })
    .await
    .context("alice's call did not come up")?;
    let note = match &up {
        PhoneEvent::CallUp {
            mode,
            verified_peer,
            ..
        } => format!(
            "{}, keys bound to {}",
            mode.name(),
            verified_peer
                .as_ref()
                .map_or("nobody (not verified)".to_owned(), |p| p.to_string())
        ),
        _ => String::new(),
    };
    report.step("alice calls bob: INVITE → SRTP keyed", t, note);
    // Both sides send the whole signal; then alice hangs up.
    let play = Duration::from_secs_f64(args.seconds) + Duration::from_millis(400);
    tokio::time::sleep(play).await;
    let t = Instant::now();
    alice.hangup(&call_id).await?;
    let a_end = wait_for(&mut alice_events, Duration::from_secs(10), |e| {
        matches!(e, PhoneEvent::CallEnded(_))
    })
    .await
    .context("alice's call report")?;
    let b_end = wait_for(&mut bob_events, Duration::from_secs(10), |e| {
        matches!(e, PhoneEvent::CallEnded(_))
    })
    .await
    .context("bob's call report")?;
    report.step("BYE and reports", t, "");
    let (PhoneEvent::CallEnded(a), PhoneEvent::CallEnded(b)) = (a_end, b_end) else {
        bail!("unexpected events");
    };

    // 8. Checks.
    let proof = KeyLookup::new(chain.clone(), contract, Some(trust.clone()))
        .lookup(&IdentityName::Phone(bob_number.clone()))
        .await?;
    report.proof_bytes = proof.proof_bytes;
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
        a.verified_peer.as_ref().map(|p| p.to_string())
            == Some(IdentityName::Phone(bob_number.clone()).to_string()),
    );
    report.check(
        "bob verified alice's MIKEY signature against her on-chain key",
        b.verified_peer.as_ref().map(|p| p.to_string())
            == Some(IdentityName::Phone(PhoneNumber::parse(ALICE)?).to_string()),
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
        chaincall_media::wav::write_file(out.join("alice-sent.wav"), &audio_a)
            .map_err(|e| anyhow!("{e}"))?;
        chaincall_media::wav::write_file(out.join("bob-received.wav"), &b.recorded)
            .map_err(|e| anyhow!("{e}"))?;
        chaincall_media::wav::write_file(out.join("alice-received.wav"), &a.recorded)
            .map_err(|e| anyhow!("{e}"))?;
    }
    report.caller = Some(*a);
    report.callee = Some(*b);

    alice.shutdown().await;
    bob.shutdown().await;
    let _ = sipd_stop.send(());
    let _ = wallet_stop.send(());
    report.total = total.elapsed();
    Ok(report)
}

async fn wait_for(
    events: &mut PhoneEvents,
    timeout: Duration,
    want: impl Fn(&PhoneEvent) -> bool,
) -> Result<PhoneEvent> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Err(_) => bail!("timed out"),
            Ok(None) => bail!("the phone stopped"),
            Ok(Some(PhoneEvent::Refused { reason, .. })) => bail!("call refused: {reason}"),
            Ok(Some(e)) if want(&e) => return Ok(e),
            Ok(Some(_)) => {}
        }
    }
}
