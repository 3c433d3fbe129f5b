//! Shared by the phone's network tests: a keystore on the embedded chain, sipd with a TLS-PSK
//! listener (and UDP for standard phones) on 127.0.0.1, and chaincall phones connected to it.
#![allow(dead_code, unreachable_pub)]

pub mod nat;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use alloy::primitives::Address;
use chaincall_chain::verified::HeaderTrust;
use chaincall_chain::{ClientId, EmbeddedChain, KeystoreChain, dev_signer, receipt_hash};
use chaincall_identity::{IdentityKey, IdentityName, PhoneNumber};
use chaincall_media::g711::Codec;
use chaincall_phone::core::KeyedCall;
use chaincall_phone::{
    KeyLookup, KeyMode, Phone, PhoneConfig, PhoneEvent, PhoneEvents, Signalling,
};
use chaincall_wallet::testing::deploy_test_keystore;

/// sipd's identity name in the keystore.
pub const SERVER: &str = "sip.chaincall.test";

/// The keystore and a running sipd (auth none: these tests are about keys and calls).
pub struct Net {
    pub chain: Arc<EmbeddedChain>,
    pub contract: Address,
    pub trust: Arc<HeaderTrust>,
    pub tls: SocketAddr,
    /// Plain TCP, for a phone that cannot run the TLS-PSK handshake as the number it claims.
    pub tcp: SocketAddr,
    pub udp_port: u16,
    pub metrics: Arc<chaincall_sipd::metrics::Metrics>,
    pub dir: tempfile::TempDir,
    next_wallet: std::sync::atomic::AtomicUsize,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    /// sipd's configuration, with the addresses it got: a restart binds them again.
    sipd: Option<chaincall_sipd::Config>,
    /// The runtime sipd runs in, alone: shutting it down kills sipd outright (every task and
    /// socket dropped at once, no draining), as SIGKILL would a process.
    runtime: Option<tokio::runtime::Runtime>,
    /// Makes that runtime (its threads, and so sipd's sockets, in a test network's namespace
    /// when sipd runs there).
    make_runtime: MakeRuntime,
    /// The address sipd listens on.
    pub host: IpAddr,
}

/// A running sipd: its addresses, metrics, and the runtime it runs in alone (dropping the
/// node kills it outright).
pub struct Node {
    /// Its TLS-PSK listener.
    pub tls: SocketAddr,
    /// Its plain TCP listener.
    pub tcp: SocketAddr,
    /// Every listener it bound.
    pub local: Vec<chaincall_sipd::Listen>,
    /// Its metrics.
    pub metrics: Arc<chaincall_sipd::metrics::Metrics>,
    /// Stops it gracefully when sent or dropped.
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    /// The runtime it runs in.
    runtime: Option<tokio::runtime::Runtime>,
}

impl Node {
    /// Kills it: its runtime shut down at once, every connection and listener dropped, nothing
    /// drained (as SIGKILL would a process).
    pub fn kill(&mut self) {
        self.stop = None;
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        // Not a plain drop: dropping a runtime from async code panics.
        self.kill();
    }
}

/// Makes a runtime for sipd or a phone.
pub type MakeRuntime = Arc<dyn Fn() -> tokio::runtime::Runtime + Send + Sync>;

/// A runtime of one worker thread (its threads stay in the namespace of the thread that built it).
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
}

impl Drop for Net {
    fn drop(&mut self) {
        self.kill();
    }
}

impl Net {
    /// Deploys the keystore, publishes sipd's key, starts sipd with `udp:`, `tls:` and `tcp:`
    /// listeners and no authentication.
    pub async fn start() -> Net {
        Net::start_with(|_| {}).await
    }

    /// [`Net::start`] with `configure` changing sipd's configuration (authentication, policy…)
    /// before sipd starts. The configuration is built in code: nothing is written and read back.
    pub async fn start_with(configure: impl FnOnce(&mut chaincall_sipd::Config)) -> Net {
        Net::start_on([127, 0, 0, 1].into(), Arc::new(runtime), configure).await
    }

    /// [`Net::start_with`] with sipd listening on `host`, in a runtime `make_runtime` builds
    /// (inside a test network's namespace, for one).
    pub async fn start_on(
        host: IpAddr,
        make_runtime: MakeRuntime,
        configure: impl FnOnce(&mut chaincall_sipd::Config),
    ) -> Net {
        let dir = tempfile::tempdir().unwrap();
        let chain = Arc::new(EmbeddedChain::default());
        let contract = deploy_test_keystore(&*chain).await.unwrap();
        let genesis = chain.block_header(0).await.unwrap().hash_slow();
        let mut net = Net {
            chain,
            contract,
            trust: Arc::new(HeaderTrust::checkpoint(0, genesis)),
            tls: "0.0.0.0:0".parse().unwrap(),
            tcp: "0.0.0.0:0".parse().unwrap(),
            udp_port: chaincall_testkit::free_udp_port(),
            metrics: Default::default(),
            dir,
            next_wallet: 1.into(),
            stop: None,
            sipd: None,
            runtime: None,
            make_runtime,
            host,
        };
        let sipd_key = IdentityKey::generate();
        net.add(SERVER, &sipd_key, true).await;
        let key_file = net.dir.path().join("sipd.key");
        // Created 0600: sipd refuses a key file that others can read.
        chaincall_identity::write_secret_file(
            &key_file,
            hex::encode(&sipd_key.dangerous_secret_bytes()[..]).as_bytes(),
            chaincall_identity::Overwrite::Refuse,
        )
        .unwrap();
        // sipd proves the phones' keys against the genesis block (the phones' own checkpoint), as
        // an operator's would against a checkpoint of their chain.
        let loopback = |port| SocketAddr::new(host, port);
        let mut cfg = chaincall_sipd::Config {
            listen: vec![
                chaincall_sipd::Listen::udp(loopback(net.udp_port)),
                chaincall_sipd::Listen::tls(loopback(0)),
                chaincall_sipd::Listen::tcp(loopback(0)),
            ],
            tls_psk: Some(chaincall_sipd::TlsPskSettings {
                key_cache: Duration::ZERO,
                checkpoint: Some(chaincall_sipd::Checkpoint {
                    number: 0,
                    hash: genesis,
                }),
                // What `[identity] verify` checks PASSporTs' `info` against.
                chain_id: Some(net.chain.chain_id()),
                // No URL: psk_server_on_chain is handed the chain itself.
                ..chaincall_sipd::TlsPskSettings::new(
                    SERVER.parse().unwrap(),
                    key_file,
                    String::new(),
                    net.contract,
                )
            }),
            ..chaincall_sipd::Config::default()
        };
        cfg.auth.mode = chaincall_sipd::AuthMode::None;
        configure(&mut cfg);
        net.run_sipd(cfg).await;
        net
    }

    /// Binds and runs sipd with `cfg` in a runtime of its own, recording the addresses it got.
    async fn run_sipd(&mut self, mut cfg: chaincall_sipd::Config) {
        let mut node = self.start_sipd(&cfg).await;
        self.tls = node.tls;
        self.tcp = node.tcp;
        cfg.listen = std::mem::take(&mut node.local);
        self.metrics = node.metrics.clone();
        self.stop = node.stop.take();
        self.sipd = Some(cfg);
        self.runtime = node.runtime.take();
    }

    /// Another sipd of the same domain (its key, chain and keystore), as a second node of a
    /// cluster: `configure` changes a copy of this sipd's configuration whose listeners are
    /// new ports on the same host.
    pub async fn another_node(&self, configure: impl FnOnce(&mut chaincall_sipd::Config)) -> Node {
        let mut cfg = self.sipd.clone().expect("sipd was started");
        cfg.listen = vec![
            chaincall_sipd::Listen::udp(SocketAddr::new(self.host, 0)),
            chaincall_sipd::Listen::tls(SocketAddr::new(self.host, 0)),
            chaincall_sipd::Listen::tcp(SocketAddr::new(self.host, 0)),
        ];
        cfg.advertise = None;
        configure(&mut cfg);
        self.start_sipd(&cfg).await
    }

    /// Binds and runs sipd with `cfg` over this network's chain, in a runtime of its own.
    async fn start_sipd(&self, cfg: &chaincall_sipd::Config) -> Node {
        let runtime = (self.make_runtime)();
        let (started, bound) = tokio::sync::oneshot::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (settings, chain) = (cfg.clone(), self.chain.clone());
        runtime.spawn(async move {
            let metrics = Arc::new(chaincall_sipd::metrics::Metrics::default());
            let psk = chaincall_sipd::tls::psk_server_on_chain(
                settings.tls_psk.as_ref().unwrap(),
                chain.clone(),
                metrics.clone(),
            )
            .await
            .unwrap();
            // `[identity] verify` reads callers' keys from the same chain, as `Server::bind` does.
            let caller_keys =
                (settings.identity.verify != chaincall_sipd::VerifyMode::Off).then(|| {
                    chaincall_sipd::tls::key_directory_on_chain(
                        settings.tls_psk.as_ref().unwrap(),
                        chain.clone(),
                        metrics.clone(),
                    )
                    .unwrap()
                });
            let mut server = chaincall_sipd::Server::bind_with_tls_psk(settings, psk, metrics)
                .await
                .unwrap();
            if let Some(keys) = caller_keys {
                server.set_caller_keys(Arc::new(keys));
            }
            let _ = started.send((server.local().to_vec(), server.metrics()));
            server
                .run(async {
                    let _ = stopped.await;
                })
                .await;
        });
        let (local, metrics) = bound.await.expect("sipd started");
        let of = |kind| {
            local
                .iter()
                .find(|l: &&chaincall_sipd::Listen| l.transport == kind)
                .map(|l| l.addr)
        };
        Node {
            tls: of(chaincall_sipd::ListenTransport::Tls).unwrap_or(self.tls),
            tcp: of(chaincall_sipd::ListenTransport::Tcp).unwrap_or(self.tcp),
            local,
            metrics,
            stop: Some(stop),
            runtime: Some(runtime),
        }
    }

    /// Kills sipd: its runtime is shut down, dropping every connection and listener at once
    /// (clients see their connections reset or closed, nothing is drained). Its registrations,
    /// held in memory, are gone.
    pub fn kill(&mut self) {
        self.stop = None;
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }

    /// Starts sipd again, after [`Net::kill`], on the same addresses with the same
    /// configuration and chain.
    pub async fn restart(&mut self) {
        let cfg = self.sipd.take().expect("sipd was started before");
        self.run_sipd(cfg).await;
    }

    /// The SIP domain phones use (sipd's UDP address, so standard phones can use it as is).
    pub fn domain(&self) -> String {
        format!("{}:{}", self.host, self.udp_port)
    }

    /// `addClient` for `name` from a fresh dev wallet; `approve` also has the owner approve it.
    pub async fn add(&self, name: &str, key: &IdentityKey, approve: bool) {
        let id = ClientId::of(&IdentityName::parse(name).unwrap());
        let wallet = self
            .next_wallet
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let from = dev_signer(wallet);
        let receipt = receipt_hash(format!("receipt {name}").as_bytes());
        self.chain
            .add_client_key(self.contract, &from, id, &key.public(), receipt)
            .await
            .unwrap();
        if approve {
            self.chain
                .approve_client(self.contract, &dev_signer(0), id, receipt)
                .await
                .unwrap();
        }
    }

    /// The owner revokes `name`.
    pub async fn revoke(&self, name: &str) {
        let id = ClientId::of(&IdentityName::parse(name).unwrap());
        self.chain
            .revoke_client(self.contract, &dev_signer(0), id)
            .await
            .unwrap();
    }

    /// A phone for `number` with `key` (already on chain), connected over TLS-PSK, not registered.
    pub async fn phone(
        &self,
        number: &str,
        key: IdentityKey,
        mode: KeyMode,
        audio_ms: u32,
    ) -> (Phone, PhoneEvents) {
        self.phone_with(number, key, mode, audio_ms, |_| {}).await
    }

    /// [`Net::phone`] with the configuration adjusted by `adjust` first.
    pub async fn phone_with(
        &self,
        number: &str,
        key: IdentityKey,
        mode: KeyMode,
        audio_ms: u32,
        adjust: impl FnOnce(&mut PhoneConfig),
    ) -> (Phone, PhoneEvents) {
        let (cfg, lookup) = self.phone_config(number, key, mode, audio_ms, adjust);
        let (phone, events, _) = Phone::connect(cfg, lookup).await.unwrap();
        (phone, events)
    }

    /// What [`Net::phone_with`] connects with: the phone's configuration and its look-ups.
    pub fn phone_config(
        &self,
        number: &str,
        key: IdentityKey,
        mode: KeyMode,
        audio_ms: u32,
        adjust: impl FnOnce(&mut PhoneConfig),
    ) -> (PhoneConfig, KeyLookup<EmbeddedChain>) {
        let mut cfg = PhoneConfig {
            number: PhoneNumber::parse(number).unwrap(),
            identity: Arc::new(key),
            sip_password: zeroize::Zeroizing::new(String::new()),
            sip_domain: self.domain(),
            signalling: Signalling::TlsPsk {
                addr: self.tls,
                server: IdentityName::parse(SERVER).unwrap(),
            },
            failover: Vec::new(),
            media_ip: "127.0.0.1".parse().unwrap(),
            codecs: vec![Codec::Pcmu.into(), Codec::Pcma.into()],
            key_mode: mode,
            zrtp: None,
            keylog: None,
            tls_keylog: None,
            auto_answer: true,
            accept_unverified: None,
            audio: Arc::new(chaincall_media::signal::speech_like(audio_ms, 7)),
            wideband: false,
            keep_playout: false,
            adaptive_loss_hint: true,
            devices: None,
            register_expires: 600,
            keepalive: Some(chaincall_phone::link::DEFAULT_KEEPALIVE),
            mikey_replay_quota: chaincall_phone::DEFAULT_MIKEY_REPLAY_QUOTA,
            randomness: Default::default(),
        };
        adjust(&mut cfg);
        let lookup = KeyLookup::new(self.chain.clone(), self.contract, Some(self.trust.clone()));
        (cfg, lookup)
    }

    /// Two phones with fresh keys approved on chain (MIKEY-PKE, `audio_ms` of the test signal,
    /// then `adjust_a` / `adjust_b`), registered; `a` calls `b` and both see the call up.
    pub async fn call_up_between(
        &self,
        (a, adjust_a): (&str, impl FnOnce(&mut PhoneConfig)),
        (b, adjust_b): (&str, impl FnOnce(&mut PhoneConfig)),
        audio_ms: u32,
    ) -> Talking {
        let (a_key, b_key) = (IdentityKey::generate(), IdentityKey::generate());
        self.add(a, &a_key, true).await;
        self.add(b, &b_key, true).await;
        let mode = KeyMode::MikeyPke;
        let (caller, mut caller_ev) = self.phone_with(a, a_key, mode, audio_ms, adjust_a).await;
        let (callee, mut callee_ev) = self.phone_with(b, b_key, mode, audio_ms, adjust_b).await;
        for p in [&caller, &callee] {
            p.register(600).await.unwrap();
        }
        let call = caller.call(&PhoneNumber::parse(b).unwrap()).await.unwrap();
        call_up(&mut caller_ev).await;
        call_up(&mut callee_ev).await;
        Talking {
            caller: (caller, caller_ev),
            callee: (callee, callee_ev),
            call,
        }
    }

    /// Stops sipd.
    pub fn stop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

/// A call [`Net::call_up_between`] set up: both phones with their events, and the Call-ID.
pub struct Talking {
    pub caller: (Phone, PhoneEvents),
    pub callee: (Phone, PhoneEvents),
    pub call: String,
}

/// `caller` calls `callee` (who answers by itself), both see the call up, `caller` hangs up
/// at once and both see it end with their signalling intact: the network knows both.
pub async fn quick_call(
    (caller, caller_ev): (&Phone, &mut PhoneEvents),
    (callee, callee_ev): (&str, &mut PhoneEvents),
) {
    let call = caller
        .call(&PhoneNumber::parse(callee).unwrap())
        .await
        .unwrap();
    call_up(caller_ev).await;
    call_up(callee_ev).await;
    caller.hangup(&call).await.unwrap();
    let (a, b) = (call_ended(caller_ev).await, call_ended(callee_ev).await);
    assert!(!a.signalling_lost && !b.signalling_lost);
    assert_eq!(
        (a.call_id.as_str(), b.call_id.as_str()),
        (call.as_str(), call.as_str())
    );
}

/// Both ends of a call sent their whole `audio_ms` of audio and each received the other's
/// exactly (a direct path, nothing lost).
pub fn assert_whole_audio_both_ways(
    a: &chaincall_phone::CallReport,
    b: &chaincall_phone::CallReport,
    audio_ms: u32,
) {
    let whole = (audio_ms * 8) as usize; // G.711 at 8 kHz: one byte a sample
    assert_eq!(a.sent_payload.len(), whole);
    assert_eq!(b.sent_payload.len(), whole);
    assert!(b.received_payload == a.sent_payload, "b heard all of a");
    assert!(a.received_payload == b.sent_payload, "a heard all of b");
}

/// sipd is down and both phones know it: a new call from `a` to `b_number` fails at once,
/// saying why, and `call` goes on (its media never went through sipd). Once its `audio_ms` of
/// audio is out both hang up (locally: no BYE can leave); each received all of the other's
/// audio, and the reports say the signalling was lost.
pub async fn call_outlives_sipd(
    (a, a_ev): (&Phone, &mut PhoneEvents),
    (b, b_ev, b_number): (&Phone, &mut PhoneEvents, &str),
    call: &str,
    audio_ms: u32,
) {
    let err = a
        .call(&PhoneNumber::parse(b_number).unwrap())
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("not connected to the SIP server"), "{err}");
    tokio::time::sleep(Duration::from_millis(u64::from(audio_ms) + 300)).await;
    a.hangup(call).await.unwrap();
    b.hangup(call).await.unwrap();
    let (ra, rb) = (call_ended(a_ev).await, call_ended(b_ev).await);
    assert_whole_audio_both_ways(&ra, &rb, audio_ms);
    assert!(
        ra.signalling_lost && rb.signalling_lost,
        "the reports say so"
    );
}

/// The next event matching `want` within 15 s (panics on a `Refused` unless `want` takes it).
pub async fn wait_for(events: &mut PhoneEvents, want: impl Fn(&PhoneEvent) -> bool) -> PhoneEvent {
    // A bound on a broken test, not a timing assertion: every awaited event comes within a second
    // or two.
    wait_within(Duration::from_secs(15), events, want).await
}

/// [`wait_for`] with another bound (retransmissions over a lossy path take longer).
pub async fn wait_within(
    bound: Duration,
    events: &mut PhoneEvents,
    want: impl Fn(&PhoneEvent) -> bool,
) -> PhoneEvent {
    let deadline = tokio::time::Instant::now() + bound;
    loop {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Err(_) => panic!("no such event within {bound:?}"),
            Ok(None) => panic!("the phone stopped"),
            Ok(Some(e)) if want(&e) => return e,
            Ok(Some(PhoneEvent::Refused { reason, .. })) => panic!("call refused: {reason}"),
            Ok(Some(_)) => {}
        }
    }
}

/// Waits for a call to end; returns its report.
pub async fn call_ended(events: &mut PhoneEvents) -> chaincall_phone::CallReport {
    match wait_for(events, |e| matches!(e, PhoneEvent::CallEnded(_))).await {
        PhoneEvent::CallEnded(r) => *r,
        other => unreachable!("wait_for returned {other:?}"),
    }
}

/// Waits for the call to come up; returns how it was keyed and the identity the keys are bound to.
pub async fn call_up(events: &mut PhoneEvents) -> (KeyMode, Option<IdentityName>) {
    match wait_for(events, |e| matches!(e, PhoneEvent::CallUp { .. })).await {
        PhoneEvent::CallUp {
            call:
                KeyedCall {
                    mode,
                    verified_peer,
                    ..
                },
            ..
        } => (mode, verified_peer),
        other => unreachable!("wait_for returned {other:?}"),
    }
}

/// sipd's subscriber table in a temp SQLite file, with `subscribers` (number, password) in the
/// domain 127.0.0.1 (sipd's domain is its listen IP): the dir (keep it alive), the URL for
/// `[auth] database`, and the table for more rows.
pub async fn subscriber_db(
    subscribers: &[(&str, &str)],
) -> (tempfile::TempDir, String, chaincall_sipd::db::Db) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("sub.db").display());
    let db = chaincall_sipd::db::Db::connect(&url).await.unwrap();
    db.create_schema().await.unwrap();
    for (user, password) in subscribers {
        db.add_subscriber(user, "127.0.0.1", password)
            .await
            .unwrap();
    }
    (dir, url, db)
}
