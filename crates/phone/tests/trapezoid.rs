//! The SIP security trapezoid (issue 20 item 3, docs/trapezoid.md) with real sockets: two sipd
//! domains, `a.example` and `b.example`, on 127.0.0.1, each with its own key in one keystore on
//! the embedded chain, peering over sipd-to-sipd TLS-PSK links whose handshakes prove the
//! domains' keys. alice@a and bob@b call each other over TLS-PSK on all three hops with MIKEY +
//! SRTP end to end; B's sipd marks alice verified (`[identity] verify = "mark"`), bob's phone
//! verifies her PASSporT and MIKEY itself. Attacks: a link proving a key not on chain for the
//! domain it claims, a link of a revoked domain, and a link speaking for the other domain's
//! subscribers are refused; neither sipd's logs nor metrics show a media key. A link lost when
//! the peer's sipd restarts comes back by itself. A link whose peer domain is revoked while it
//! is up is closed within the re-check interval, and calls to that domain are refused. A peer
//! found by DNS SRV (a real dnsmasq on 127.0.0.1) is linked, and a name without records is a
//! clear error.

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use alloy::primitives::{Address, B256};
use chaincall_chain::verified::HeaderTrust;
use chaincall_chain::{ClientId, EmbeddedChain, KeystoreChain, dev_signer, receipt_hash};
use chaincall_identity::{IdentityKey, IdentityName, PhoneNumber};
use chaincall_media::g711::Codec;
use chaincall_phone::caller::Proof;
use chaincall_phone::{
    KeyLookup, KeyMode, Phone, PhoneConfig, PhoneEvent, PhoneEvents, Signalling, Verification,
};
use chaincall_sip::framing::{Frame, StreamFramer};
use chaincall_sip::message::{Message, ParseLimits};
use chaincall_sipd::config::PeerConfig;
use chaincall_sipd::link::{Link, LinkError, LinkIdentity};
use chaincall_sipd::metrics::{HandshakeFailure, Metrics};
use chaincall_sipd::{AuthMode, Checkpoint, Config, Listen, Server, TlsPskSettings, VerifyMode};
use chaincall_wallet::testing::deploy_test_keystore;
use common::{call_ended, wait_for};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const A: &str = "a.example";
const B: &str = "b.example";
const ALICE: &str = "+15550400001";
const BOB: &str = "+15550500002";
/// A second subscriber of b.example, whom a.example's link tries to speak for.
const BEA: &str = "+15550500003";

/// One sipd domain: its configuration and key, and the runtime it runs in, alone (shutting it
/// down kills that sipd outright, every connection dropped, as SIGKILL would).
struct Domain {
    name: &'static str,
    tls: SocketAddr,
    settings: TlsPskSettings,
    cfg: Config,
    key: IdentityKey,
    metrics: Arc<Metrics>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Drop for Domain {
    fn drop(&mut self) {
        self.kill();
    }
}

impl Domain {
    /// Kills the sipd (its registrations and PSKs, held in memory, are gone).
    fn kill(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }

    /// Runs the sipd on `chain`, in a runtime of its own, until killed.
    async fn run(&mut self, chain: &Arc<EmbeddedChain>) {
        let runtime = common::runtime();
        let (started, bound) = tokio::sync::oneshot::channel();
        let (cfg, settings, key, chain) = (
            self.cfg.clone(),
            self.settings.clone(),
            self.key.clone(),
            chain.clone(),
        );
        runtime.spawn(async move {
            let metrics = Arc::new(Metrics::default());
            let psk =
                chaincall_sipd::tls::psk_server_on_chain(&settings, chain.clone(), metrics.clone())
                    .await
                    .unwrap();
            let dir = Arc::new(
                chaincall_sipd::tls::key_directory_on_chain(&settings, chain, metrics.clone())
                    .unwrap(),
            );
            let mut server = Server::bind_with_tls_psk(cfg, psk, metrics.clone())
                .await
                .unwrap();
            server.set_caller_keys(dir.clone());
            server.set_link_identity(LinkIdentity::new(&settings, key, dir).unwrap());
            let _ = started.send(metrics);
            server.run(std::future::pending()).await;
        });
        self.metrics = bound.await.expect("sipd started");
        self.runtime = Some(runtime);
    }
}

/// The keystore and the two domains.
struct Trapezoid {
    chain: Arc<EmbeddedChain>,
    contract: Address,
    genesis: B256,
    dir: tempfile::TempDir,
    wallets: std::sync::atomic::AtomicUsize,
    a: Domain,
    b: Domain,
}

impl Trapezoid {
    /// The keystore with both domains' keys approved, and both sipds running and linked to each
    /// other (a.example serves the numbers under +1555040, b.example those under +1555050).
    async fn start() -> Trapezoid {
        let loopback = |p| SocketAddr::from(([127, 0, 0, 1], p));
        Self::start_with(loopback(chaincall_testkit::free_tcp_port()), None).await
    }

    /// [`Trapezoid::start`] with b.example's sipd on `b_addr`, and a.example finding it by DNS
    /// SRV asking `srv` (`[peers."b.example"] srv = true, dns_server`) when set.
    async fn start_with(b_addr: SocketAddr, srv: Option<SocketAddr>) -> Trapezoid {
        let chain = Arc::new(EmbeddedChain::default());
        let contract = deploy_test_keystore(&*chain).await.unwrap();
        let genesis = chain.block_header(0).await.unwrap().hash_slow();
        let mut t = Trapezoid {
            chain,
            contract,
            genesis,
            dir: tempfile::tempdir().unwrap(),
            wallets: 1.into(),
            a: unstarted(),
            b: unstarted(),
        };
        let a_addr = SocketAddr::from(([127, 0, 0, 1], chaincall_testkit::free_tcp_port()));
        t.a = t.domain(A, a_addr, (B, b_addr, "+1555050"), srv).await;
        t.b = t.domain(B, b_addr, (A, a_addr, "+1555040"), None).await;
        // Both links up (each sipd: its own link out and the other's in) before any phone.
        t.links_up(2).await;
        t
    }

    /// Waits until each sipd holds at least `n` connections (a bound on a broken test).
    async fn links_up(&self, n: i64) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        while self.a.metrics.connections.get() < n || self.b.metrics.connections.get() < n {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the sipd-to-sipd links did not come up"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// `addClient` for `name` with `key` from a fresh dev wallet, approved by the owner.
    async fn add(&self, name: &str, key: &IdentityKey) {
        let id = ClientId::of(&IdentityName::parse(name).unwrap());
        let wallet = self
            .wallets
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let receipt = receipt_hash(format!("receipt {name}").as_bytes());
        self.chain
            .add_client_key(
                self.contract,
                &dev_signer(wallet),
                id,
                &key.public(),
                receipt,
            )
            .await
            .unwrap();
        self.chain
            .approve_client(self.contract, &dev_signer(0), id, receipt)
            .await
            .unwrap();
    }

    /// The `[tls_psk]` section of the sipd proving `name` with the key in `key_file`.
    fn settings(&self, name: &str, key_file: std::path::PathBuf) -> TlsPskSettings {
        TlsPskSettings {
            // Every look-up reads the chain: a revocation counts at once.
            key_cache: Duration::ZERO,
            checkpoint: Some(Checkpoint {
                number: 0,
                hash: self.genesis,
            }),
            chain_id: Some(self.chain.chain_id()),
            ..TlsPskSettings::new(
                name.parse().unwrap(),
                key_file,
                String::new(),
                self.contract,
            )
        }
    }

    /// Publishes `name`'s key and runs its sipd on `addr`, peering with `peer` (its domain,
    /// address and number prefix; found by DNS SRV asking `srv` instead of the address when set).
    /// b.example verifies callers' PASSporTs (`mark`).
    async fn domain(
        &self,
        name: &'static str,
        addr: SocketAddr,
        (peer, peer_addr, prefix): (&str, SocketAddr, &str),
        srv: Option<SocketAddr>,
    ) -> Domain {
        let key = IdentityKey::generate();
        self.add(name, &key).await;
        let key_file = self.dir.path().join(format!("{name}.key"));
        chaincall_identity::write_secret_file(
            &key_file,
            hex::encode(&key.dangerous_secret_bytes()[..]).as_bytes(),
            chaincall_identity::Overwrite::Refuse,
        )
        .unwrap();
        let settings = self.settings(name, key_file);
        let mut cfg = Config {
            listen: vec![Listen::tls(addr)],
            domain: Some(name.into()),
            tls_psk: Some(settings.clone()),
            ..Config::default()
        };
        cfg.auth.mode = AuthMode::None;
        if name == B {
            cfg.identity.verify = VerifyMode::Mark;
        }
        cfg.peers.insert(
            peer.into(),
            PeerConfig {
                numbers: vec![prefix.into()],
                // The peer's key re-read every second while the link is up (default 60 s).
                recheck: Duration::from_secs(1),
                srv: srv.is_some(),
                dns_server: srv,
                ..PeerConfig::new(match srv {
                    Some(_) => String::new(),
                    None => peer_addr.to_string(),
                })
            },
        );
        let mut domain = Domain {
            name,
            tls: addr,
            settings,
            cfg,
            key,
            metrics: Arc::default(),
            runtime: None,
        };
        domain.run(&self.chain).await;
        domain
    }

    /// A chaincall phone for `number` with `key` (published here), a subscriber of `domain`
    /// connected to its sipd over TLS-PSK and registered; SRTP keys logged to `keylog`.
    async fn phone(
        &self,
        domain: &Domain,
        number: &str,
        keylog: &std::path::Path,
    ) -> (Phone, PhoneEvents) {
        let key = IdentityKey::generate();
        self.add(number, &key).await;
        let cfg = PhoneConfig {
            number: PhoneNumber::parse(number).unwrap(),
            identity: Arc::new(key),
            sip_password: zeroize::Zeroizing::new(String::new()),
            sip_domain: domain.name.into(),
            signalling: Signalling::TlsPsk {
                addr: domain.tls,
                server: IdentityName::parse(domain.name).unwrap(),
            },
            failover: Vec::new(),
            media_ip: "127.0.0.1".parse().unwrap(),
            codecs: vec![Codec::Pcmu.into()],
            key_mode: KeyMode::MikeyPke,
            zrtp: None,
            keylog: Some(keylog.to_owned()),
            tls_keylog: None,
            auto_answer: true,
            accept_unverified: None,
            audio: Arc::new(chaincall_media::signal::speech_like(600, 7)),
            wideband: false,
            keep_playout: false,
            adaptive_loss_hint: true,
            register_expires: 600,
            keepalive: Some(chaincall_phone::link::DEFAULT_KEEPALIVE),
            mikey_replay_quota: chaincall_phone::DEFAULT_MIKEY_REPLAY_QUOTA,
            devices: None,
            randomness: Default::default(),
        };
        let trust = Arc::new(HeaderTrust::checkpoint(0, self.genesis));
        let lookup = KeyLookup::new(self.chain.clone(), self.contract, Some(trust));
        let (phone, events, _) = Phone::connect(cfg, lookup).await.unwrap();
        assert_eq!(phone.register(600).await.unwrap(), 600);
        (phone, events)
    }

    /// A link to b.example's sipd claiming `a.example`, proven with `key`.
    fn link_as_a(&self, key: IdentityKey) -> Link {
        let settings = self.a.settings.clone();
        let dir = chaincall_sipd::tls::key_directory_on_chain(
            &settings,
            self.chain.clone(),
            Arc::new(Metrics::default()),
        )
        .unwrap();
        let me = LinkIdentity::new(&settings, key, Arc::new(dir)).unwrap();
        Link::new(B.parse().unwrap(), self.b.tls.to_string(), me)
    }

    /// a.example's own key (from its key file).
    fn a_key(&self) -> IdentityKey {
        chaincall_sipd::tls::load_identity_key(&self.a.settings.key_file).unwrap()
    }
}

/// A placeholder until the domain starts.
fn unstarted() -> Domain {
    Domain {
        name: "",
        tls: SocketAddr::from(([127, 0, 0, 1], 0)),
        settings: TlsPskSettings::new(
            "unstarted.example".parse().unwrap(),
            "/nonexistent".into(),
            String::new(),
            Address::ZERO,
        ),
        cfg: Config::default(),
        key: IdentityKey::generate(),
        metrics: Arc::default(),
        runtime: None,
    }
}

/// Everything chaincall's crates log, at every level, kept for the test to read.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    /// Captures sipd's logs (and the SIP stack's and TLS-PSK's under it) at TRACE from now on.
    fn capture() -> Logs {
        let logs = Logs::default();
        let writer = logs.clone();
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(
                "chaincall_sipd=trace,chaincall_sip=trace,chaincall_tls_psk=trace",
            ))
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .init();
        logs
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// Waits for an incoming call; returns the caller as shown.
async fn incoming(events: &mut PhoneEvents) -> chaincall_phone::CallerId {
    match wait_for(events, |e| matches!(e, PhoneEvent::Incoming { .. })).await {
        PhoneEvent::Incoming { caller, .. } => caller,
        _ => unreachable!(),
    }
}

/// One call from `caller` to the number `to` (whose phone's events are `callee_ev`), audio
/// compared exactly both ways; returns the caller as the callee's phone showed it.
async fn call(
    (caller, caller_ev): (&Phone, &mut PhoneEvents),
    callee_ev: &mut PhoneEvents,
    to: &str,
) -> chaincall_phone::CallerId {
    let id = caller.call(&PhoneNumber::parse(to).unwrap()).await.unwrap();
    let shown = incoming(callee_ev).await;
    wait_for(caller_ev, |e| matches!(e, PhoneEvent::CallUp { .. })).await;
    wait_for(callee_ev, |e| matches!(e, PhoneEvent::CallUp { .. })).await;
    // The audio (600 ms) plays out before the hang-up; a bound on a broken test, not a timing.
    tokio::time::sleep(Duration::from_millis(900)).await;
    caller.hangup(&id).await.unwrap();
    let (out, inc) = (call_ended(caller_ev).await, call_ended(callee_ev).await);
    assert_eq!((out.mode, inc.mode), (KeyMode::MikeyPke, KeyMode::MikeyPke));
    assert!(!out.sent_payload.is_empty());
    assert_eq!(inc.received_payload, out.sent_payload, "caller → callee");
    assert_eq!(out.received_payload, inc.sent_payload, "callee → caller");
    assert_eq!(out.stats.rtp_rejected + inc.stats.rtp_rejected, 0);
    shown
}

/// The callee's phone showed `number`@`domain` marked `TN-Validation-Passed` by b.example's
/// sipd, and verified it itself: PASSporT and MIKEY, against a proven look-up.
fn marked_and_verified(shown: &chaincall_phone::CallerId, number: &str, domain: &str) {
    assert_eq!(
        shown.uri,
        format!("sip:{number};verstat=TN-Validation-Passed@{domain}")
    );
    assert!(
        matches!(
            &shown.verification,
            Verification::Verified { identity, proof: Proof::PassportAndMikey, lookup_verified: true, .. }
                if *identity == IdentityName::parse(number).unwrap()
        ),
        "{shown:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alice_at_a_and_bob_at_b_call_each_other_verified_end_to_end_over_three_tls_psk_hops() {
    let logs = Logs::capture();
    let t = Trapezoid::start().await;
    let keylog = t.dir.path().join("srtp.keylog");
    let (alice, mut alice_ev) = t.phone(&t.a, ALICE, &keylog).await;
    let (bob, mut bob_ev) = t.phone(&t.b, BOB, &keylog).await;

    // alice dials bob's number at her own domain; a.example routes it over the link to b.example,
    // which verifies her PASSporT and marks her, and bob's phone verifies it again.
    let shown = call((&alice, &mut alice_ev), &mut bob_ev, BOB).await;
    marked_and_verified(&shown, ALICE, A);
    let b_metrics = t.b.metrics.render();
    assert!(
        b_metrics
            .lines()
            .any(|l| l.contains("passed") && l.ends_with(" 1")),
        "b.example verified one caller:\n{b_metrics}"
    );

    // And back: bob dials alice's number. b.example verifies every INVITE it takes in, its own
    // subscriber's too, so the mark crosses the link; alice's phone verifies it again.
    let shown = call((&bob, &mut bob_ev), &mut alice_ev, ALICE).await;
    marked_and_verified(&shown, BOB, B);

    // Two calls, four SRTP streams keyed at the phones; none of their keys ever reached either
    // sipd's logs or metrics.
    // (Each phone logs both its streams: every key twice.)
    let keys: std::collections::BTreeSet<String> = std::fs::read_to_string(&keylog)
        .unwrap()
        .lines()
        .filter_map(|l| l.split("inline=").nth(1).map(str::to_owned))
        .collect();
    assert_eq!(keys.len(), 4, "{keys:?}");
    let seen = format!(
        "{}\n{}\n{}",
        logs.text(),
        t.a.metrics.render(),
        t.b.metrics.render()
    );
    assert!(
        seen.contains("sipd-to-sipd link up"),
        "the logs were captured"
    );
    for k in &keys {
        use base64::Engine as _;
        let raw = base64::engine::general_purpose::STANDARD.decode(k).unwrap();
        assert!(!seen.contains(k.as_str()), "an SRTP key in sipd's output");
        assert!(
            !seen.contains(&hex::encode(&raw)),
            "an SRTP key in sipd's output"
        );
    }
    for p in [alice, bob] {
        p.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_proving_a_key_not_on_chain_or_revoked_is_refused() {
    let t = Trapezoid::start().await;
    // Claiming a.example with a key that is not a.example's on-chain key: b.example refuses the
    // handshake.
    let err = t
        .link_as_a(IdentityKey::generate())
        .connect()
        .await
        .unwrap_err();
    assert!(matches!(err, LinkError::Tls(_)), "{err:?}");
    // b.example's message 2 binds a.example's on-chain key, which this one is not: the claimant
    // finds the proofs do not match and ends the handshake, or b.example does.
    refused_by_b(
        &t,
        &[HandshakeFailure::Unauthentic, HandshakeFailure::Closed],
    )
    .await;
    // With a.example's real key it opens...
    let mut good = t.link_as_a(t.a_key());
    good.connect().await.unwrap();
    // ...until the keystore's owner revokes a.example: b.example reads the chain at each
    // handshake and refuses a new one (a link up is closed by its next key re-check).
    t.chain
        .revoke_client(
            t.contract,
            &dev_signer(0),
            ClientId::of(&IdentityName::parse(A).unwrap()),
        )
        .await
        .unwrap();
    let err = t.link_as_a(t.a_key()).connect().await.unwrap_err();
    assert!(matches!(err, LinkError::Tls(_)), "{err:?}");
    refused_by_b(&t, &[HandshakeFailure::KeyNotApproved]).await;
}

/// Waits until b.example's sipd has counted a TLS-PSK refusal for one of `reasons` (it counts
/// once its side of the handshake ends, which may be after the client saw the refusal).
async fn refused_by_b(t: &Trapezoid, reasons: &[HandshakeFailure]) {
    let count = || {
        HandshakeFailure::ALL
            .iter()
            .zip(&t.b.metrics.tls_psk_failures)
            .filter(|(r, _)| reasons.contains(r))
            .map(|(_, c)| c.get())
            .sum::<u64>()
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while count() == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "b.example counted no {reasons:?} refusal:\n{}",
            t.b.metrics.render()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_speaking_for_the_other_domains_subscriber_is_refused() {
    let t = Trapezoid::start().await;
    let keylog = t.dir.path().join("srtp.keylog");
    let (bob, mut bob_ev) = t.phone(&t.b, BOB, &keylog).await;
    let (mut tls, _) = t.link_as_a(t.a_key()).connect().await.unwrap();
    let local = tls.get_ref().local_addr().unwrap();
    // a.example's link claims bea, a subscriber of b.example, calling bob.
    let invite = format!(
        "INVITE sip:{BOB}@{B} SIP/2.0\r\n\
         Via: SIP/2.0/TLS {local};branch=z9hG4bK-spoof-1\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:{BEA}@{B}>;tag=spoof\r\n\
         To: <sip:{BOB}@{B}>\r\n\
         Call-ID: spoof-1\r\n\
         CSeq: 1 INVITE\r\n\
         Contact: <sip:{BEA}@{local};transport=tls>\r\n\
         Content-Length: 0\r\n\r\n"
    );
    tls.write_all(invite.as_bytes()).await.unwrap();
    tls.flush().await.unwrap();
    let mut framer = StreamFramer::new(ParseLimits::default());
    let mut buf = [0u8; 4096];
    let refusal = loop {
        match framer.poll_frame().unwrap() {
            Some(Frame::Message(m)) => {
                let text = String::from_utf8(m).unwrap();
                if Message::parse(text.as_bytes()).unwrap().status() != Some(100) {
                    break text;
                }
                continue;
            }
            Some(Frame::Ping) => continue,
            None => {}
        }
        let n = tokio::time::timeout(Duration::from_secs(10), tls.read(&mut buf))
            .await
            .expect("an answer within 10 s")
            .unwrap();
        assert!(n > 0, "b.example closed the link");
        framer.push(&buf[..n]);
    };
    assert!(
        refusal.starts_with("SIP/2.0 403 Forbidden (a domain may only assert its own users)"),
        "{refusal}"
    );
    // bob's phone never rang: his next event is the call a.example routes for alice.
    let (alice, mut alice_ev) = t.phone(&t.a, ALICE, &keylog).await;
    let shown = call((&alice, &mut alice_ev), &mut bob_ev, BOB).await;
    assert!(shown.uri.contains(ALICE), "{}", shown.uri);
    for p in [alice, bob] {
        p.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_link_comes_back_after_the_peer_sipd_restarts_and_calls_cross_it_again() {
    let logs = Logs::capture();
    let mut t = Trapezoid::start().await;
    let keylog = t.dir.path().join("srtp.keylog");
    let (alice, mut alice_ev) = t.phone(&t.a, ALICE, &keylog).await;
    let (bob, mut bob_ev) = t.phone(&t.b, BOB, &keylog).await;
    call((&alice, &mut alice_ev), &mut bob_ev, BOB).await;

    // b.example's sipd dies and comes back on the same address, its PSKs and registrations gone:
    // a.example's link reopens by itself (the cached PSK refused, a new handshake), and bob's
    // phone registers again.
    t.b.kill();
    // The killed runtime's sockets close as its threads wind down.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while std::net::TcpListener::bind(t.b.tls).is_err() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "b.example's port stays taken"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    t.b.run(&t.chain).await;
    wait_for(&mut bob_ev, |e| matches!(e, PhoneEvent::Reconnected { .. })).await;
    wait_for(&mut bob_ev, |e| matches!(e, PhoneEvent::Registered { .. })).await;
    // Each sipd: its phone, its own link out, the other's in.
    t.links_up(3).await;
    call((&alice, &mut alice_ev), &mut bob_ev, BOB).await;
    assert!(
        logs.text()
            .contains("cached PSK refused; running the handshake"),
        "the link tried its cached PSK first"
    );
    for p in [alice, bob] {
        p.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_whose_peer_domain_is_revoked_while_up_is_closed_and_calls_to_it_refused() {
    let logs = Logs::capture();
    let t = Trapezoid::start().await;
    let keylog = t.dir.path().join("srtp.keylog");
    let (alice, mut alice_ev) = t.phone(&t.a, ALICE, &keylog).await;
    let (bob, mut bob_ev) = t.phone(&t.b, BOB, &keylog).await;
    call((&alice, &mut alice_ev), &mut bob_ev, BOB).await;

    // The keystore's owner revokes b.example while a.example's link to it is up (its TLS
    // session would live on: the chain is read at the handshake). a.example re-reads the key
    // every second (`recheck_secs`) and closes the link.
    t.chain
        .revoke_client(
            t.contract,
            &dev_signer(0),
            ClientId::of(&IdentityName::parse(B).unwrap()),
        )
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while t.a.metrics.peer_links_key_lost.get() == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "a.example kept its link to the revoked b.example:\n{}",
            t.a.metrics.render()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        t.a.metrics
            .render()
            .contains("sipd_peer_links_key_lost_total 1"),
        "{}",
        t.a.metrics.render()
    );
    let warned = logs.text();
    assert!(
        warned.lines().any(|l| l.contains("WARN")
            && l.contains("peer=b.example")
            && l.contains("closing the link")),
        "no WARN naming b.example:\n{warned}"
    );

    // A new call to bob is refused by a.example, saying why (it never left a.example).
    alice.call(&PhoneNumber::parse(BOB).unwrap()).await.unwrap();
    let PhoneEvent::Refused { reason: err, .. } =
        wait_for(&mut alice_ev, |e| matches!(e, PhoneEvent::Refused { .. })).await
    else {
        unreachable!()
    };
    assert!(
        err.contains("503") && err.contains("peer domain key revoked"),
        "{err}"
    );
    for p in [alice, bob] {
        p.shutdown().await;
    }
}

/// dnsmasq on 127.0.0.1 answering only what its `records` options say (no upstream, no hosts
/// file), until dropped.
struct Dnsmasq {
    child: std::process::Child,
    addr: SocketAddr,
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts [`Dnsmasq`] once it takes connections; `None` (skipped) without dnsmasq.
async fn dnsmasq(records: &[String]) -> Option<Dnsmasq> {
    let bin = chaincall_testkit::peer("dnsmasq")?;
    let port = chaincall_testkit::free_udp_tcp_port();
    let child = std::process::Command::new(bin)
        .args([
            "--no-daemon",
            "--conf-file=/dev/null",
            "--no-resolv",
            "--no-hosts",
            "--bind-interfaces",
            "--listen-address=127.0.0.1",
        ])
        .arg(format!("--port={port}"))
        .args(records)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("dnsmasq starts");
    let dns = Dnsmasq {
        child,
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
    };
    // It serves TCP on the same port once it is ready (a bound on a broken start).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(dns.addr).await.is_err() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "dnsmasq did not start"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Some(dns)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_found_by_dns_srv_is_linked_and_a_name_without_records_is_a_clear_error() {
    let logs = Logs::capture();
    // b.example's listener is published only in DNS: `_sips._tcp.b.example` names its host and
    // port, an A record the host's address.
    let b_addr = SocketAddr::from(([127, 0, 0, 1], chaincall_testkit::free_tcp_port()));
    let Some(dns) = dnsmasq(&[
        format!("--srv-host=_sips._tcp.{B},sipd.{B},{},0,10", b_addr.port()),
        format!("--host-record=sipd.{B},{}", b_addr.ip()),
    ])
    .await
    else {
        return;
    };
    // a.example's entry for b.example has no address: its own link out is found by SRV (each
    // sipd then holds two links, its own and the other's, which `start` waits for).
    let t = Trapezoid::start_with(b_addr, Some(dns.addr)).await;
    let seen = logs.text();
    assert!(
        seen.lines().any(|l| l.contains("found by DNS SRV")
            && l.contains(&format!("_sips._tcp.{B}."))
            && l.contains(&b_addr.to_string())),
        "{seen}"
    );
    let keylog = t.dir.path().join("srtp.keylog");
    let (alice, mut alice_ev) = t.phone(&t.a, ALICE, &keylog).await;
    let (bob, mut bob_ev) = t.phone(&t.b, BOB, &keylog).await;
    call((&alice, &mut alice_ev), &mut bob_ev, BOB).await;

    // b.example looking a.example up the same way finds no record: the link is not opened, and
    // the error names what was asked of which server.
    let dir = chaincall_sipd::tls::key_directory_on_chain(
        &t.b.settings,
        t.chain.clone(),
        Arc::new(Metrics::default()),
    )
    .unwrap();
    let me = LinkIdentity::new(&t.b.settings, t.b.key.clone(), Arc::new(dir)).unwrap();
    let err = Link::new(A.parse().unwrap(), String::new(), me)
        .by_srv(Some(dns.addr))
        .unwrap()
        .connect()
        .await
        .unwrap_err();
    let said = err.to_string();
    assert!(matches!(err, LinkError::Resolve(_)), "{said}");
    for asked in [
        format!("_sips._tcp.{A}."),
        format!("_sip._tcp.{A}."),
        dns.addr.to_string(),
    ] {
        assert!(said.contains(&asked), "{said}");
    }
    for p in [alice, bob] {
        p.shutdown().await;
    }
}
