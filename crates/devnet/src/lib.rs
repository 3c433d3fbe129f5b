//! A whole chaincall network on 127.0.0.1, in one process: the keystore (embedded chain or a
//! node), the wallet-management server (HTTP), sipd (SIP over TLS-PSK) and two onboarded,
//! registered phones, alice and bob — or, with [`Domains::Two`], two sipd domains peering over a
//! sipd-to-sipd TLS-PSK link, bob at the second (docs/trapezoid.md). `chaincall demo` places one
//! call on it and checks it;
//! `chaincall bench setup` places many and measures them; tests may start one too.
//!
//! Every component is built from its typed configuration struct (`WalletConfig`, sipd's `Config`
//! and `TlsPskSettings`, `PhoneConfig`): nothing is formatted as TOML, written and read back.
//! Key files are still written to [`NetworkOptions::dir`] (mode 0600), as the servers read them.

pub mod demo;
pub mod init;
pub mod nat;

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use alloy::primitives::Address;
use anyhow::{Context, Result, anyhow, bail, ensure};
use chaincall_chain::PrivateKeySigner;
use chaincall_chain::verified::HeaderTrust;
use chaincall_identity::{DomainName, IdentityKey, IdentityName, PhoneNumber};
use chaincall_phone::negotiation::KeyMode;
use chaincall_phone::{
    CallReport, KeyLookup, Phone, PhoneConfig, PhoneEvent, PhoneEvents, PhoneSecrets, Signalling,
};
use chaincall_wallet::chain::ServerChain;
use chaincall_wallet::receipt::StoreKey;
use chaincall_wallet::testing::{TEST_PACKAGE, TEST_PRODUCT, dev_receipt};
use rand_core::{OsRng, RngCore};

/// sipd's domain: SIP domain, digest realm, and its identity name in the keystore.
pub const SIP_DOMAIN: &str = "sip.chaincall.test";
/// bob's domain when the network runs two ([`Domains::Two`], docs/trapezoid.md): a second
/// sipd with its own identity, peering with [`SIP_DOMAIN`]'s.
pub const PEER_DOMAIN: &str = "peer.chaincall.test";
/// The wallet server's identity name in the keystore.
pub const WALLET_DOMAIN: &str = "wallet.chaincall.test";
/// The caller.
pub const ALICE: &str = "+15550100001";
/// The callee.
pub const BOB: &str = "+15550100002";

/// The operator's wallet: `--operator-key HEX`, or anvil's first dev account (also the embedded
/// chain's funded account).
pub fn operator_key(hex_key: Option<&str>) -> Result<PrivateKeySigner> {
    match hex_key {
        Some(k) => k
            .trim()
            .trim_start_matches("0x")
            .parse::<PrivateKeySigner>()
            .map_err(|e| anyhow!("--operator-key: {e}")),
        None => Ok(chaincall_chain::dev_signer(0)),
    }
}

/// What the network's phones do, and where its files go.
#[derive(Debug)]
pub struct NetworkOptions {
    /// Where databases and key files go.
    pub dir: PathBuf,
    /// Key mode of alice's calls.
    pub mode: KeyMode,
    /// SRTP key log file.
    pub keylog: Option<PathBuf>,
    /// TLS key log file (NSS format) for sipd and both phones; none when `None`.
    pub tls_keylog: Option<PathBuf>,
    /// What alice sends.
    pub audio_a: Vec<i16>,
    /// What bob sends.
    pub audio_b: Vec<i16>,
    /// `audio_a`/`audio_b` are 48 kHz and the call reports record at the codec's rate
    /// ([`PhoneConfig::wideband`]); `false`: 8 kHz.
    pub wideband: bool,
    /// The phones keep what they play in their call reports ([`PhoneConfig::keep_playout`]).
    pub keep_playout: bool,
    /// The phones' Opus loss hint follows RTCP ([`PhoneConfig::adaptive_loss_hint`]); the demo
    /// turns it off to compare its recording with an offline encoding.
    pub adaptive_loss_hint: bool,
    /// MIKEY offers one caller may have in the other phone's replay cache
    /// ([`PhoneConfig::mikey_replay_quota`]): a load test placing more calls than the default
    /// within two minutes raises it.
    pub mikey_replay_quota: usize,
    /// Where sipd and the phones run (a namespace network, [`nat::NatNet`]); `None`: everything in
    /// the current runtime on 127.0.0.1.
    pub placement: Option<Placement>,
}

/// Where the network's sipd and phones bind and run, and the relay sipd drives: the runtimes' threads
/// sit in network namespaces, so every socket a task there opens is in that namespace.
#[derive(Debug, Clone)]
pub struct Placement {
    /// sipd's runtime and the address it listens on (TLS-PSK, port chosen by the system).
    pub sipd: (tokio::runtime::Handle, IpAddr),
    /// rtpengine's NG address; sipd relays calls with a party behind NAT (`[relay] mode = "nat"`).
    pub rtpengine: SocketAddr,
    /// alice's and bob's runtimes and media addresses, in that order.
    pub phones: [(tokio::runtime::Handle, IpAddr); 2],
}

/// How many sipd domains the network runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Domains {
    /// One sipd: alice and bob are both its subscribers.
    #[default]
    One,
    /// The trapezoid (docs/trapezoid.md): alice at [`SIP_DOMAIN`]'s sipd, bob at
    /// [`PEER_DOMAIN`]'s, the two sipds linked over TLS-PSK between their on-chain keys; alice's
    /// calls to bob cross three TLS-PSK hops.
    Two,
}

/// Named, timed steps of the set-up, in order.
#[derive(Debug, Default)]
pub struct Timeline {
    /// `(step, duration, note)`.
    pub steps: Vec<(String, Duration, String)>,
    /// Onboarding (receipt → provisioned) per phone.
    pub key_storage: Vec<Duration>,
    /// Handshake + TLS-PSK per phone.
    pub connect: Vec<Duration>,
    /// REGISTER per phone.
    pub register: Vec<Duration>,
}

impl Timeline {
    fn step(&mut self, name: &str, started: Instant, note: impl Into<String>) {
        self.steps
            .push((name.to_owned(), started.elapsed(), note.into()));
    }
}

/// The running network.
pub struct Network {
    alice: (Phone, PhoneEvents),
    bob: (Phone, PhoneEvents),
    /// How the set-up went.
    pub timeline: Timeline,
    sipd_stop: Vec<tokio::sync::oneshot::Sender<()>>,
    wallet_stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Network {
    /// Deploys the keystore, publishes sipd's identity, starts the wallet server and sipd, onboards
    /// alice and bob, connects both phones over TLS-PSK and registers them.
    pub async fn start<C: ServerChain>(
        chain: Arc<C>,
        operator: PrivateKeySigner,
        opts: NetworkOptions,
    ) -> Result<Self> {
        Self::start_domains(chain, operator, opts, Domains::One).await
    }

    /// [`Network::start`] with `domains` sipd domains: with [`Domains::Two`], a second sipd for
    /// [`PEER_DOMAIN`] (its identity published too) where bob connects and registers (by his
    /// TLS-PSK identity: the wallet server provisions SIP passwords for [`SIP_DOMAIN`] only),
    /// and both sipds peer, each link up before the phones connect.
    pub async fn start_domains<C: ServerChain>(
        chain: Arc<C>,
        operator: PrivateKeySigner,
        opts: NetworkOptions,
        domains: Domains,
    ) -> Result<Self> {
        let dir = opts.dir.as_path();
        let mut report = Timeline::default();
        ensure!(
            domains == Domains::One || opts.placement.is_none(),
            "two domains run on 127.0.0.1 only, not in a namespace network"
        );

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
        let sipd_key = publish_sipd(&chain, contract, &operator, SIP_DOMAIN).await?;
        report.step("publish sipd identity", t, SIP_DOMAIN);
        let peer_key = match domains {
            Domains::One => None,
            Domains::Two => {
                let t = Instant::now();
                let key = publish_sipd(&chain, contract, &operator, PEER_DOMAIN).await?;
                report.step("publish peer sipd identity", t, PEER_DOMAIN);
                Some(key)
            }
        };

        // 3. The wallet-management server.
        let t = Instant::now();
        let store = StoreKey::generate().context("store key")?;
        write_file(
            &dir.join("server-wallet.key"),
            &hex::encode(operator.to_bytes()),
        )?;
        let mut admin = [0u8; 16];
        OsRng.fill_bytes(&mut admin);
        write_file(&dir.join("admin.token"), &hex::encode(admin))?;
        let sip_db = dir.join("sip.db");
        // Built in code: no TOML written and read back.
        let wallet_cfg = wallet_config(dir, &sip_db, store.public_key_base64()?)?;
        wallet_cfg
            .validate()
            .map_err(|e| anyhow!("wallet config: {e}"))?;
        let service = chaincall_wallet::server::build_service(&wallet_cfg, chain.clone(), contract)
            .await
            .context("wallet server")?;
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

        // 4. sipd with TLS-PSK, reading the subscriber table the wallet server writes (and with
        // two domains, bob's sipd, the two peering).
        let t = Instant::now();
        let sipd_key_file = dir.join("sipd-identity.key");
        write_file(
            &sipd_key_file,
            &hex::encode(&sipd_key.dangerous_secret_bytes()[..]),
        )?;
        let sipd_addr;
        let mut bob_sipd = None;
        let mut sipd_stop = Vec::new();
        let mut sipds = Vec::new();
        match &peer_key {
            None => {
                let mut one =
                    Sipd::start(&chain, contract, SIP_DOMAIN, &sipd_key_file, &opts)?.auth(&sip_db);
                if let Some(p) = &opts.placement {
                    one = one.on(SocketAddr::new(p.sipd.1, 0)).relay(p.rtpengine);
                }
                let one = one.run(opts.placement.as_ref().map(|p| &p.sipd.0)).await?;
                sipd_addr = one.addr;
                sipd_stop.push(one.stop);
            }
            Some(peer_key) => {
                let peer_key_file = dir.join("peer-sipd-identity.key");
                write_file(
                    &peer_key_file,
                    &hex::encode(&peer_key.dangerous_secret_bytes()[..]),
                )?;
                // Each sipd's entry for the other names its address before either is bound.
                let (a_addr, b_addr) = (free_loopback_port()?, free_loopback_port()?);
                let a = Sipd::start(&chain, contract, SIP_DOMAIN, &sipd_key_file, &opts)?
                    .auth(&sip_db)
                    .on(a_addr)
                    .peer(PEER_DOMAIN, b_addr, BOB)
                    .run(None)
                    .await?;
                let b = Sipd::start(&chain, contract, PEER_DOMAIN, &peer_key_file, &opts)?
                    .on(b_addr)
                    .peer(SIP_DOMAIN, a_addr, ALICE)
                    .run(None)
                    .await?;
                sipd_addr = a.addr;
                bob_sipd = Some(b.addr);
                sipds = vec![a.metrics.clone(), b.metrics.clone()];
                sipd_stop.extend([a.stop, b.stop]);
            }
        }
        report.step("start sipd (TLS-PSK)", t, sipd_addr.to_string());
        if !sipds.is_empty() {
            // Each sipd holds its own link out and the other's in.
            let t = Instant::now();
            let deadline = Instant::now() + Duration::from_secs(10);
            while sipds.iter().any(|m| m.connections.get() < 2) {
                ensure!(
                    Instant::now() < deadline,
                    "the sipd-to-sipd links did not come up"
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            report.step(
                "sipd-to-sipd links up",
                t,
                "STS between the two domains' on-chain keys",
            );
        }

        // 5. Onboarding, the paper's Fig. 2, for both phones.
        let client = chaincall_wallet::WalletClient::new(wallet_url.clone());
        let server_key = chaincall_wallet::server_identity_key(&*chain, contract, WALLET_DOMAIN)
            .await
            .context("the wallet server's key on chain")?;
        let mut phones = Vec::new();
        for number in [ALICE, BOB] {
            let t = Instant::now();
            let secrets =
                onboard_phone(&chain, contract, &client, &server_key, &store, number).await?;
            report.key_storage.push(t.elapsed());
            report.step(
                &format!("onboard {number}"),
                t,
                "receipt → funded → addClient → approved → SIP credentials",
            );
            phones.push(secrets);
        }

        // 6. Phones: verified lookups pinned to the genesis block, TLS-PSK to sipd, REGISTER.
        let genesis = chain
            .block_header(0)
            .await
            .context("genesis header")?
            .hash_slow();
        let trust = Arc::new(HeaderTrust::checkpoint(0, genesis));
        let mut handles: Vec<(Phone, PhoneEvents)> = Vec::new();
        for (i, (secrets, audio)) in phones
            .iter()
            .zip([opts.audio_a.clone(), opts.audio_b.clone()])
            .enumerate()
        {
            let placed = opts.placement.as_ref().map(|p| p.phones[i].clone());
            let number = PhoneNumber::parse(&secrets.number)?;
            // bob's sipd, with two domains.
            let (home, home_addr) = match bob_sipd {
                Some(b) if secrets.number == BOB => (PEER_DOMAIN, b),
                _ => (SIP_DOMAIN, sipd_addr),
            };
            let cfg = PhoneConfig {
                number: number.clone(),
                identity: Arc::new(secrets.identity.clone()),
                sip_password: secrets
                    .sip_password
                    .clone()
                    .ok_or_else(|| anyhow!("no SIP password"))?,
                sip_domain: home.into(),
                signalling: Signalling::TlsPsk {
                    addr: home_addr,
                    server: IdentityName::parse(home)?,
                },
                failover: Vec::new(),
                media_ip: placed
                    .as_ref()
                    .map_or(IpAddr::from([127, 0, 0, 1]), |p| p.1),
                codecs: chaincall_phone::DEFAULT_CODECS.to_vec(),
                key_mode: opts.mode,
                zrtp: None,
                // Alice logs both streams of her calls (hers when keyed, bob's with its SSRC when the
                // call ends): one line per SRTP stream.
                keylog: (secrets.number == ALICE)
                    .then(|| opts.keylog.clone())
                    .flatten(),
                tls_keylog: opts.tls_keylog.clone(),
                auto_answer: true,
                accept_unverified: None,
                audio: Arc::new(audio),
                wideband: opts.wideband,
                keep_playout: opts.keep_playout,
                adaptive_loss_hint: opts.adaptive_loss_hint,
                devices: None,
                register_expires: 600,
                keepalive: Some(chaincall_phone::link::DEFAULT_KEEPALIVE),
                mikey_replay_quota: opts.mikey_replay_quota,
                randomness: Default::default(),
            };
            let lookup = KeyLookup::new(chain.clone(), contract, Some(trust.clone()));
            let t = Instant::now();
            // In its namespace, the phone's task binds its signalling and media sockets there.
            let connected = match &placed {
                Some((rt, _)) => rt
                    .spawn(Phone::connect(cfg, lookup))
                    .await
                    .context("the phone's runtime stopped")?,
                None => Phone::connect(cfg, lookup).await,
            };
            let (phone, events, connect) =
                connected.with_context(|| format!("{number}: connecting to sipd"))?;
            report.connect.push(connect);
            report.step(
                &format!("{number}: handshake + TLS-PSK"),
                t,
                format!("STS with {home}'s on-chain key"),
            );
            let t = Instant::now();
            let expires = phone
                .register(600)
                .await
                .with_context(|| format!("{number}: REGISTER"))?;
            report.register.push(t.elapsed());
            let how = if home == SIP_DOMAIN {
                "digest"
            } else {
                "TLS-PSK identity"
            };
            report.step(
                &format!("{number}: REGISTER ({how}) at {home}"),
                t,
                format!("expires {expires}"),
            );
            handles.push((phone, events));
        }
        let bob = handles.pop().expect("two phones");
        let alice = handles.pop().expect("two phones");
        Ok(Network {
            alice,
            bob,
            timeline: report,
            sipd_stop,
            wallet_stop: Some(wallet_stop),
        })
    }

    /// Alice calls bob; both send their audio for `play`, then alice hangs up. Returns the call-up
    /// event's note and both reports (alice's first).
    pub async fn call(&mut self, play: Duration) -> Result<(CallReport, CallReport)> {
        let ((a, b), ()) = self.call_observed(play, |_| async {}).await?;
        Ok((a, b))
    }

    /// [`Network::call`], running `observe` with the call's Call-ID after the audio and before
    /// the hang-up (while the call, and any relay session of it, is still up).
    pub async fn call_observed<T, F: Future<Output = T>>(
        &mut self,
        play: Duration,
        observe: impl FnOnce(String) -> F,
    ) -> Result<((CallReport, CallReport), T)> {
        let bob_number = PhoneNumber::parse(BOB)?;
        let (alice, alice_events) = &mut self.alice;
        let (_, bob_events) = &mut self.bob;
        let call_id = alice.call(&bob_number).await.context("alice calls bob")?;
        wait_for(alice_events, Duration::from_secs(10), |e| {
            matches!(e, PhoneEvent::CallUp { .. })
        })
        .await
        .context("alice's call did not come up")?;
        tokio::time::sleep(play).await;
        let observed = observe(call_id.to_string()).await;
        alice.hangup(&call_id).await?;
        let a_end = wait_for(alice_events, Duration::from_secs(10), |e| {
            matches!(e, PhoneEvent::CallEnded(_))
        })
        .await
        .context("alice's call report")?;
        let b_end = wait_for(bob_events, Duration::from_secs(10), |e| {
            matches!(e, PhoneEvent::CallEnded(_))
        })
        .await
        .context("bob's call report")?;
        let (PhoneEvent::CallEnded(a), PhoneEvent::CallEnded(b)) = (a_end, b_end) else {
            bail!("unexpected events");
        };
        Ok(((*a, *b), observed))
    }

    /// Stops the phones and servers.
    pub async fn stop(mut self) {
        self.alice.0.shutdown().await;
        self.bob.0.shutdown().await;
        for s in self.sipd_stop.drain(..) {
            let _ = s.send(());
        }
        if let Some(s) = self.wallet_stop.take() {
            let _ = s.send(());
        }
    }
}

/// The paper's Fig. 2 for one phone: a store-signed test receipt (from `store`), funding,
/// `addClient`, approval by the wallet server at `client` (whose on-chain key is `server_key`),
/// and the SIP password the server then hands out, fetched with a request the phone's identity
/// key signs. Returns the phone's secrets, ready to register.
pub async fn onboard_phone<C: ServerChain>(
    chain: &Arc<C>,
    contract: Address,
    client: &chaincall_wallet::WalletClient,
    server_key: &chaincall_identity::PublicIdentityKey,
    store: &StoreKey,
    number: &str,
) -> Result<PhoneSecrets> {
    let mut secrets = PhoneSecrets::generate(number);
    let status = chaincall_wallet::onboard_phone(
        client,
        &**chain,
        contract,
        server_key,
        &secrets.wallet,
        &secrets.identity,
        &chaincall_wallet::NumberRequest::named(number),
        dev_receipt(store),
        Duration::from_secs(30),
    )
    .await
    .with_context(|| format!("onboarding {number}"))?;
    ensure!(
        status.state == "provisioned",
        "{number}: onboarding ended in state {}",
        status.state
    );
    let number = PhoneNumber::parse(number)?;
    secrets.sip_password = Some(
        client
            .sip_password(&secrets.identity, &number)
            .await
            .with_context(|| format!("the SIP password of {number}"))?,
    );
    Ok(secrets)
}

/// The wallet server's configuration: the embedded backend (the chain is handed over), files in
/// `dir`, operator-assigned numbers for alice and bob.
fn wallet_config(
    dir: &Path,
    sip_db: &Path,
    store_public_key: String,
) -> Result<chaincall_wallet::WalletConfig> {
    use chaincall_wallet::config::{
        AdminConfig, Backend, ChainConfig, DatabaseConfig, IdentityConfig, SipConfig, StoreConfig,
    };
    use chaincall_wallet::number::{AssignedConfig, NumbersConfig, RangeConfig};
    Ok(chaincall_wallet::WalletConfig {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        allow_non_loopback: false,
        chain: ChainConfig {
            backend: Backend::Embedded,
            rpc_url: None,
            chain_id: None,
            contract: None,
            wallet_key_file: dir.join("server-wallet.key"),
            confirmations: 1,
        },
        identity: IdentityConfig {
            domain: DomainName::parse(WALLET_DOMAIN)?,
            key_file: dir.join("wallet-identity.key"),
            publish_on_start: true,
        },
        store: StoreConfig {
            package_name: TEST_PACKAGE.into(),
            product_id: TEST_PRODUCT.into(),
            public_key: Some(store_public_key),
            public_key_file: None,
        },
        database: DatabaseConfig {
            url: format!("sqlite://{}?mode=rwc", dir.join("wallet.db").display()),
        },
        sip: SipConfig {
            database_url: format!("sqlite://{}?mode=rwc", sip_db.display()),
            domain: SIP_DOMAIN.into(),
            realm: None,
            create_table: true,
        },
        // Operator-assigned numbers: the phones ask for theirs by name and the server grants them.
        numbers: NumbersConfig::Assigned(AssignedConfig {
            ranges: vec![RangeConfig {
                first: ALICE.into(),
                last: BOB.into(),
            }],
        }),
        funding: Default::default(),
        fees: Default::default(),
        limits: Default::default(),
        admin: AdminConfig {
            token_file: Some(dir.join("admin.token")),
            ..AdminConfig::default()
        },
        worker_interval: Duration::from_millis(100),
        randomness: Default::default(),
    })
}

/// One of the network's sipds, built in code: TLS-PSK on 127.0.0.1 for `name` with the key in
/// `key_file`; the keystore chain runs in this process, so there is nothing between sipd and it
/// to distrust (trust = provider).
struct Sipd<'a, C> {
    chain: &'a Arc<C>,
    cfg: chaincall_sipd::Config,
    settings: chaincall_sipd::TlsPskSettings,
}

/// A running sipd: its TLS address, its stop, its metrics.
struct RunningSipd {
    addr: SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    metrics: Arc<chaincall_sipd::metrics::Metrics>,
}

impl<'a, C: ServerChain> Sipd<'a, C> {
    fn start(
        chain: &'a Arc<C>,
        contract: Address,
        name: &str,
        key_file: &Path,
        opts: &NetworkOptions,
    ) -> Result<Self> {
        let mut cfg = chaincall_sipd::Config {
            listen: vec![chaincall_sipd::Listen::tls(SocketAddr::from((
                [127, 0, 0, 1],
                0,
            )))],
            domain: Some(name.into()),
            ..chaincall_sipd::Config::default()
        };
        // A sipd without the subscriber table ([`Sipd::auth`]) registers phones by the identity
        // their TLS-PSK handshake proved.
        cfg.auth.mode = chaincall_sipd::AuthMode::None;
        let settings = chaincall_sipd::TlsPskSettings {
            trust: chaincall_sipd::KeyTrustMode::Provider,
            keylog_file: opts.tls_keylog.clone(),
            ..chaincall_sipd::TlsPskSettings::new(
                name.parse()?,
                key_file.to_path_buf(),
                // No URL: psk_server_on_chain is handed the chain itself.
                String::new(),
                contract,
            )
        };
        cfg.tls_psk = Some(settings.clone());
        Ok(Sipd {
            chain,
            cfg,
            settings,
        })
    }

    /// Digest authentication against the subscriber table the wallet server writes.
    fn auth(mut self, sip_db: &Path) -> Self {
        self.cfg.auth.mode = chaincall_sipd::AuthMode::Digest;
        self.cfg.auth.database = format!("sqlite://{}", sip_db.display());
        self
    }

    /// Listens on `addr`.
    fn on(mut self, addr: SocketAddr) -> Self {
        self.cfg.listen = vec![chaincall_sipd::Listen::tls(addr)];
        self
    }

    /// Relays calls with a party behind NAT through rtpengine at `ng` (`[relay] mode = "nat"`).
    fn relay(mut self, ng: SocketAddr) -> Self {
        self.cfg.relay.mode = chaincall_sipd::config::RelayMode::Nat;
        self.cfg.relay.rtpengine = Some(ng);
        self
    }

    /// Peers with `domain` at `addr`, which serves `number`.
    fn peer(mut self, domain: &str, addr: SocketAddr, number: &str) -> Self {
        self.cfg.peers.insert(
            domain.into(),
            chaincall_sipd::config::PeerConfig {
                numbers: vec![number.into()],
                ..chaincall_sipd::config::PeerConfig::new(addr.to_string())
            },
        );
        self
    }

    /// Binds and runs sipd on `on` (a runtime in a namespace network), or the current runtime.
    async fn run(self, on: Option<&tokio::runtime::Handle>) -> Result<RunningSipd> {
        let Sipd {
            chain,
            cfg,
            settings,
        } = self;
        let chain = chain.clone();
        let start = async move { Self::bind_and_spawn(chain, cfg, settings).await };
        match on {
            Some(rt) => rt.spawn(start).await.context("sipd's runtime stopped")?,
            None => start.await,
        }
    }

    async fn bind_and_spawn(
        chain: Arc<C>,
        cfg: chaincall_sipd::Config,
        settings: chaincall_sipd::TlsPskSettings,
    ) -> Result<RunningSipd> {
        let name = settings.identity.to_string();
        let metrics = Arc::new(chaincall_sipd::metrics::Metrics::default());
        let psk =
            chaincall_sipd::tls::psk_server_on_chain(&settings, chain.clone(), metrics.clone())
                .await
                .with_context(|| format!("{name}: sipd TLS-PSK"))?;
        let links = match cfg.peers.is_empty() {
            true => None,
            false => {
                let key = chaincall_sipd::tls::load_identity_key(&settings.key_file)?;
                let dir = chaincall_sipd::tls::key_directory_on_chain(
                    &settings,
                    chain.clone(),
                    metrics.clone(),
                )?;
                Some(chaincall_sipd::link::LinkIdentity::new(
                    &settings,
                    key,
                    Arc::new(dir),
                )?)
            }
        };
        let mut sipd = chaincall_sipd::Server::bind_with_tls_psk(cfg, psk, metrics.clone())
            .await
            .with_context(|| format!("{name}: sipd"))?;
        if let Some(links) = links {
            sipd.set_link_identity(links);
        }
        let addr: SocketAddr = sipd
            .local()
            .iter()
            .find(|l| l.transport == chaincall_sipd::ListenTransport::Tls)
            .map(|l| l.addr)
            .ok_or_else(|| anyhow!("sipd has no TLS listener"))?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(sipd.run(async {
            let _ = stopped.await;
        }));
        Ok(RunningSipd {
            addr,
            stop,
            metrics,
        })
    }
}

/// A new identity key for the sipd of `name`, published on chain by `operator`.
async fn publish_sipd<C: ServerChain>(
    chain: &Arc<C>,
    contract: Address,
    operator: &PrivateKeySigner,
    name: &str,
) -> Result<IdentityKey> {
    let key = IdentityKey::generate();
    chaincall_wallet::service::publish_identity(
        &**chain,
        contract,
        operator,
        &DomainName::parse(name)?,
        &key.public(),
    )
    .await
    .with_context(|| format!("publishing {name}'s identity"))?;
    Ok(key)
}

/// A TCP port free on 127.0.0.1 now (for a listener whose address must be known before it binds).
fn free_loopback_port() -> Result<SocketAddr> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(l.local_addr()?)
}

fn write_file(path: &Path, text: &str) -> Result<()> {
    chaincall_wallet::server::write_secret(path, text)
        .with_context(|| format!("writing {}", path.display()))
}

/// The next event of `events` that `want` accepts, within `timeout`; a refused call or a stopped
/// phone ends the wait with an error.
pub async fn wait_for(
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
