//! The paper's own set-up (issue 9, item 4): an operator's unmodified Kamailio 5.6 as registrar and
//! proxy, its SQLite `subscriber` table provisioned by chaincall's wallet-management server, two
//! chaincall phones registering through it over TCP with digest auth, and a MIKEY-PKE + SRTP call
//! routed by it.
//!
//! What it shows:
//! - the operator's existing database (created with Kamailio's own `standard-create.sql` and
//!   `auth_db-create.sql`) takes the wallet server's rows as they are: Kamailio's `auth_db`
//!   (`calculate_ha1 = 0`, the `ha1` column) accepts both phones' REGISTERs and alice's INVITE
//!   (`proxy_authorize`), and refuses a wrong password;
//! - the call comes up through Kamailio (Record-Route, `lookup("location")`, loose routing for ACK
//!   and BYE), the callee verifies the caller's MIKEY signature against the chain, and each side
//!   receives exactly the G.711 payload the other sent, with no SRTP packet rejected;
//! - Kamailio never sees a media key: every message it received is in its log (`xlog` of `$mb`),
//!   and none of the SRTP master keys or salts the phones used (their key logs, RFC 4568 `inline`
//!   encoding) appears there in base64, hex or raw bytes, while the MIKEY envelope does, and that
//!   envelope (decoded) holds the keys only encrypted (PKE + KEMAC + SIGN, no key bytes in clear).
//!
//! Needs Debian `kamailio` and `kamailio-sqlite-modules`. Without them the test prints that it
//! skips; with `CHAINCALL_REQUIRE_PEERS=1` it fails naming what is missing.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use alloy::primitives::Address;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use chaincall_chain::verified::HeaderTrust;
use chaincall_chain::{EmbeddedChain, KeystoreChain};
use chaincall_identity::{IdentityName, PhoneNumber};
use chaincall_phone::{
    CallReport, KeyLookup, KeyMode, Phone, PhoneConfig, PhoneError, PhoneEvent, PhoneSecrets,
    Signalling,
};
use chaincall_wallet::receipt::StoreKey;
use chaincall_wallet::testing::{
    TEST_IDENTITY_DOMAIN, TEST_SIP_DOMAIN, TestChain, TestConfig, deploy_test_keystore,
    write_test_config,
};
use zeroize::Zeroizing;

use common::{call_up, wait_for};

/// The SIP domain (Kamailio's realm) and the wallet server's identity: the wallet crate's test
/// configuration ([`write_test_config`]) uses these.
const DOMAIN: &str = TEST_SIP_DOMAIN;
const WALLET_DOMAIN: &str = TEST_IDENTITY_DOMAIN;
const ALICE: &str = "+15550100001";
const BOB: &str = "+15550100002";
/// Seconds of audio each side sends.
const AUDIO_MS: u32 = 1000;

/// Kamailio's module folders on Debian (multiarch) and elsewhere.
const MODULE_DIRS: [&str; 2] = [
    "/usr/lib/x86_64-linux-gnu/kamailio/modules",
    "/usr/lib/kamailio/modules",
];
/// Kamailio's SQLite DDL (`kamdbctl create` runs these).
const KAMAILIO_SQL: &str = "/usr/share/kamailio/db_sqlite";

/// The Kamailio binary, its module folder and its SQL folder, or the skip-or-fail rule.
fn kamailio_peer() -> Option<(PathBuf, PathBuf)> {
    let bin = chaincall_testkit::peer("kamailio")?;
    let Some(modules) = MODULE_DIRS
        .iter()
        .map(PathBuf::from)
        .find(|d| d.join("db_sqlite.so").is_file() && d.join("auth_db.so").is_file())
    else {
        return chaincall_testkit::missing(
            "kamailio-sqlite-modules (db_sqlite.so and auth_db.so beside Kamailio's modules)",
        );
    };
    if !Path::new(KAMAILIO_SQL).join("auth_db-create.sql").is_file() {
        return chaincall_testkit::missing(
            "kamailio-sqlite-modules (/usr/share/kamailio/db_sqlite)",
        );
    }
    Some((bin, modules))
}

/// A running Kamailio in its own process group; dropping it stops the whole group (main process
/// and workers), also when the test panics.
struct Kamailio {
    child: Child,
    addr: SocketAddr,
    log: PathBuf,
}

impl Kamailio {
    fn start(bin: &Path, modules: &Path, dir: &Path, db: &Path) -> Self {
        Self::start_with(bin, modules, dir, db, |cfg| cfg)
    }

    /// As [`Kamailio::start`], with `edit` applied to the configuration `chaincall init` writes
    /// (`chaincall_devnet::init::kamailio_cfg`, the one operators get).
    fn start_with(
        bin: &Path,
        modules: &Path,
        dir: &Path,
        db: &Path,
        edit: impl FnOnce(String) -> String,
    ) -> Self {
        use std::os::unix::process::CommandExt;
        let port = chaincall_testkit::free_tcp_port();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let cfg = edit(chaincall_devnet::init::kamailio_cfg(
            DOMAIN, addr, db, modules,
        ));
        let cfg_path = dir.join("kamailio.cfg");
        std::fs::write(&cfg_path, cfg).unwrap();
        let log = dir.join("kamailio.log");
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(bin)
            // LOG_MESSAGES: every message in full in the log, which the test reads.
            .args([
                "-DD",
                "-E",
                "-m",
                "512",
                "-M",
                "16",
                "-A",
                "LOG_MESSAGES",
                "-f",
            ])
            .arg(&cfg_path)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .process_group(0)
            .spawn()
            .expect("starting kamailio");
        let mut k = Kamailio { child, addr, log };
        k.wait_ready(Duration::from_secs(15));
        k
    }

    /// Polls the TCP listener until it accepts; panics with Kamailio's log if it exits or never
    /// listens.
    fn wait_ready(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "kamailio exited ({status}) before listening:\n{}",
                    self.log_text()
                );
            }
            if std::net::TcpStream::connect_timeout(&self.addr, Duration::from_millis(200)).is_ok()
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "kamailio did not listen on {} within {timeout:?}:\n{}",
                self.addr,
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn log_text(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.log).unwrap_or_default()).into_owned()
    }

    /// Signals the process group (Kamailio's workers share it).
    fn signal(&self, sig: &str) {
        let _ = Command::new("kill")
            .args([sig, "--", &format!("-{}", self.child.id())])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }

    /// Stops Kamailio: SIGTERM, a bounded wait, then SIGKILL. Idempotent.
    fn stop(&mut self) {
        if self.child.try_wait().ok().flatten().is_some() {
            return;
        }
        self.signal("-TERM");
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if self.child.try_wait().ok().flatten().is_some() {
                // The workers exit with the main process; make sure of it.
                self.signal("-KILL");
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.signal("-KILL");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Kamailio {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The operator's existing Kamailio database, as `kamdbctl create` would make it (the tables
/// `auth_db` needs), before chaincall's wallet server ever touches it.
async fn create_kamailio_db(path: &Path) {
    use sqlx::ConnectOptions as _;
    let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .connect()
        .await
        .unwrap();
    for file in ["standard-create.sql", "auth_db-create.sql"] {
        let sql = std::fs::read_to_string(Path::new(KAMAILIO_SQL).join(file)).unwrap();
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&mut conn)
            .await
            .unwrap();
    }
    use sqlx::Connection as _;
    conn.close().await.unwrap();
}

/// The subscriber row Kamailio will authenticate against: (password, ha1, ha1b).
async fn subscriber_row(db: &Path, user: &str) -> Option<(String, String, String)> {
    use sqlx::{ConnectOptions as _, Row as _};
    let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(db)
        .read_only(true)
        .connect()
        .await
        .unwrap();
    let row =
        sqlx::query("SELECT password, ha1, ha1b FROM subscriber WHERE username = ? AND domain = ?")
            .bind(user)
            .bind(DOMAIN)
            .fetch_optional(&mut conn)
            .await
            .unwrap()?;
    Some((row.get(0), row.get(1), row.get(2)))
}

/// Starts the wallet-management server (as `chaincall demo` does) from the wallet crate's test
/// configuration, whose SIP database is `dir/sip.db`: here, Kamailio's own database. Returns its
/// URL and a stop handle.
async fn start_wallet(
    chain: Arc<EmbeddedChain>,
    contract: Address,
    dir: &Path,
    store: &StoreKey,
) -> (String, tokio::sync::oneshot::Sender<()>) {
    let path = write_test_config(
        dir,
        &TestConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            chain: TestChain::Embedded,
            store,
            admin_token: None,
            extra: "",
        },
    )
    .unwrap();
    let cfg = chaincall_wallet::WalletConfig::load(&path).unwrap();
    let service = chaincall_wallet::server::build_service(&cfg, chain, contract)
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let _ = chaincall_wallet::server::serve(listener, service, &cfg, async {
            let _ = stopped.await;
        })
        .await;
    });
    (url, stop)
}

/// The operator's side: the chain with the keystore, a store key, and the wallet-management server
/// writing into `dir/sip.db`.
struct Operator {
    chain: Arc<EmbeddedChain>,
    contract: Address,
    client: chaincall_wallet::WalletClient,
    server_key: chaincall_identity::PublicIdentityKey,
    store: StoreKey,
    wallet_stop: tokio::sync::oneshot::Sender<()>,
}

impl Operator {
    async fn start(dir: &Path) -> Self {
        let chain = Arc::new(EmbeddedChain::default());
        let contract = deploy_test_keystore(&*chain).await.unwrap();
        let store = StoreKey::generate().unwrap();
        let (wallet_url, wallet_stop) = start_wallet(chain.clone(), contract, dir, &store).await;
        let server_key = chaincall_wallet::server_identity_key(&*chain, contract, WALLET_DOMAIN)
            .await
            .unwrap();
        Self {
            chain,
            contract,
            client: chaincall_wallet::WalletClient::new(wallet_url),
            server_key,
            store,
            wallet_stop,
        }
    }

    /// Onboards `number` as the demo network does ([`chaincall_devnet::onboard_phone`]).
    async fn onboard(&self, number: &str) -> PhoneSecrets {
        chaincall_devnet::onboard_phone(
            &self.chain,
            self.contract,
            &self.client,
            &self.server_key,
            &self.store,
            number,
        )
        .await
        .unwrap_or_else(|e| panic!("{e:#}"))
    }
}

fn phone_config(
    secrets: &PhoneSecrets,
    password: Zeroizing<String>,
    kamailio: SocketAddr,
    keylog: Option<PathBuf>,
    audio: Vec<i16>,
) -> PhoneConfig {
    PhoneConfig {
        number: PhoneNumber::parse(&secrets.number).unwrap(),
        identity: Arc::new(secrets.identity.clone()),
        sip_password: password,
        sip_domain: DOMAIN.into(),
        signalling: Signalling::Tcp { addr: kamailio },
        failover: Vec::new(),
        media_ip: "127.0.0.1".parse().unwrap(),
        codecs: vec![
            chaincall_media::g711::Codec::Pcmu.into(),
            chaincall_media::g711::Codec::Pcma.into(),
        ],
        key_mode: KeyMode::MikeyPke,
        zrtp: None,
        keylog,
        tls_keylog: None,
        auto_answer: true,
        accept_unverified: None,
        audio: Arc::new(audio),
        wideband: false,
        keep_playout: false,
        adaptive_loss_hint: true,
        devices: None,
        register_expires: 600,
        keepalive: Some(chaincall_phone::link::DEFAULT_KEEPALIVE),
        mikey_replay_quota: chaincall_phone::DEFAULT_MIKEY_REPLAY_QUOTA,
        randomness: Default::default(),
    }
}

fn ended(e: PhoneEvent) -> CallReport {
    match e {
        PhoneEvent::CallEnded(r) => *r,
        other => panic!("expected CallEnded, got {other:?}"),
    }
}

/// The SRTP master keys and salts of a key log file (`ssrc=… profile=… inline=<base64>`).
fn keylog_entries(path: &Path) -> Vec<(String, Vec<u8>)> {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("key log {}: {e}", path.display()));
    text.lines()
        .map(|line| {
            let inline = line
                .split_whitespace()
                .find_map(|f| f.strip_prefix("inline="))
                .unwrap_or_else(|| panic!("key log line without inline=: {line}"));
            (inline.to_owned(), B64.decode(inline).unwrap())
        })
        .collect()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// The MIKEY messages in the SDP bodies Kamailio logged (`a=key-mgmt:mikey <base64>`).
fn logged_mikey(log: &str) -> Vec<Vec<u8>> {
    log.lines()
        .filter_map(|l| {
            let at = l.find("a=key-mgmt:")?;
            chaincall_mikey::sdp::parse_attribute(&l[at..])
                .ok()
                .flatten()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wallet_provisions_kamailio_and_a_mikey_call_goes_through_it() {
    let Some((bin, modules)) = kamailio_peer() else {
        return;
    };
    let started = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();

    // The operator's existing Kamailio: its own schema, its own config, running before any
    // chaincall subscriber exists.
    // Kamailio's database, where the wallet's test configuration puts its SIP database.
    let sip_db = dir.join("sip.db");
    create_kamailio_db(&sip_db).await;
    let mut kamailio = Kamailio::start(&bin, &modules, dir, &sip_db);

    // The chain, the keystore, the wallet-management server writing into Kamailio's database.
    let op = Operator::start(dir).await;
    let alice = op.onboard(ALICE).await;
    let bob = op.onboard(BOB).await;

    // The rows Kamailio authenticates against are the wallet server's (HA1 = MD5(user:realm:pw)),
    // with no clear password: Kamailio needs none with `calculate_ha1 0`.
    for s in [&alice, &bob] {
        let password = s.sip_password.as_ref().unwrap();
        let (clear, ha1, ha1b) = subscriber_row(&sip_db, &s.number)
            .await
            .unwrap_or_else(|| panic!("{}: no subscriber row in Kamailio's table", s.number));
        assert_eq!(clear, "", "{}: only hashes are stored", s.number);
        assert_eq!(
            ha1,
            chaincall_wallet::subscriber::ha1(&s.number, DOMAIN, password)
        );
        assert_eq!(
            ha1b,
            chaincall_wallet::subscriber::ha1b(&s.number, DOMAIN, DOMAIN, password)
        );
    }

    let genesis = op.chain.block_header(0).await.unwrap().hash_slow();
    let trust = Arc::new(HeaderTrust::checkpoint(0, genesis));
    let lookup = || KeyLookup::new(op.chain.clone(), op.contract, Some(trust.clone()));

    // Kamailio really checks the digest: the wrong password is refused.
    let (impostor, _impostor_events, _) = Phone::connect(
        phone_config(
            &alice,
            Zeroizing::new("not-the-receipt-password".into()),
            kamailio.addr,
            None,
            Vec::new(),
        ),
        lookup(),
    )
    .await
    .unwrap();
    match impostor.register(600).await {
        Err(PhoneError::AuthFailed(401)) => {}
        other => {
            panic!("REGISTER with a wrong password: expected 401 from Kamailio, got {other:?}")
        }
    }
    impostor.shutdown().await;

    // Both phones register through Kamailio over TCP with digest auth.
    let audio_a = chaincall_media::signal::speech_like(AUDIO_MS, 1);
    let audio_b = chaincall_media::signal::speech_like(AUDIO_MS, 2);
    let keylog_a = dir.join("alice.keylog");
    let keylog_b = dir.join("bob.keylog");
    let mut phones = Vec::new();
    for (secrets, audio, keylog) in [
        (&alice, audio_a, keylog_a.clone()),
        (&bob, audio_b, keylog_b.clone()),
    ] {
        let cfg = phone_config(
            secrets,
            secrets.sip_password.clone().unwrap(),
            kamailio.addr,
            Some(keylog),
            audio,
        );
        let (phone, events, _) = Phone::connect(cfg, lookup()).await.unwrap();
        let expires = phone
            .register(600)
            .await
            .unwrap_or_else(|e| panic!("{}: REGISTER through Kamailio: {e}", secrets.number));
        assert!(
            expires > 0 && expires <= 600,
            "{}: granted {expires} s",
            secrets.number
        );
        phones.push((phone, events));
    }
    let (bob_phone, mut bob_events) = phones.pop().unwrap();
    let (alice_phone, mut alice_events) = phones.pop().unwrap();

    // Alice calls bob through Kamailio; both send a second of speech-like audio; alice hangs up.
    let bob_number = PhoneNumber::parse(BOB).unwrap();
    let call_id = alice_phone.call(&bob_number).await.unwrap();
    let (mode, verified_peer) = call_up(&mut alice_events).await;
    assert_eq!(mode, KeyMode::MikeyPke);
    assert_eq!(verified_peer, Some(IdentityName::Phone(bob_number.clone())));
    tokio::time::sleep(Duration::from_millis(u64::from(AUDIO_MS) + 400)).await;
    alice_phone.hangup(&call_id).await.unwrap();
    let a = ended(wait_for(&mut alice_events, |e| matches!(e, PhoneEvent::CallEnded(_))).await);
    let b = ended(wait_for(&mut bob_events, |e| matches!(e, PhoneEvent::CallEnded(_))).await);
    alice_phone.shutdown().await;
    bob_phone.shutdown().await;
    let _ = op.wallet_stop.send(());
    kamailio.stop();
    let log = std::fs::read(&kamailio.log).unwrap();
    let log_text = String::from_utf8_lossy(&log);

    // The call.
    assert_eq!(a.call_id, b.call_id, "one dialog through the proxy");
    assert!(
        a.lookup_verified && b.lookup_verified,
        "both key lookups proven"
    );
    assert_eq!(
        b.verified_peer,
        Some(IdentityName::Phone(PhoneNumber::parse(ALICE).unwrap())),
        "bob verified alice's MIKEY signature against her on-chain key"
    );
    assert!(!a.sent_payload.is_empty() && !b.sent_payload.is_empty());
    assert!(
        b.received_payload == a.sent_payload,
        "bob received {} of the {} payload bytes alice sent, or different ones",
        b.received_payload.len(),
        a.sent_payload.len()
    );
    assert!(
        a.received_payload == b.sent_payload,
        "alice received {} of the {} payload bytes bob sent, or different ones",
        a.received_payload.len(),
        b.sent_payload.len()
    );
    assert_eq!(
        (a.stats.rtp_rejected, b.stats.rtp_rejected),
        (0, 0),
        "SRTP packets rejected (alice, bob)"
    );

    // Kamailio authenticated and routed all of it.
    for needle in [
        format!("AUTH-OK REGISTER {ALICE}@{DOMAIN}"),
        format!("AUTH-OK REGISTER {BOB}@{DOMAIN}"),
        format!("AUTH-OK INVITE {ALICE}@{DOMAIN} to {BOB}"),
        // Record-Routed, so ACK and BYE come back through Kamailio (loose routing).
        format!("Record-Route: <sip:{};transport=tcp;lr", kamailio.addr),
        "SIP-IN reply 200 OK".to_owned(),
        "SIP-IN request ACK".to_owned(),
        "SIP-IN request BYE".to_owned(),
    ] {
        assert!(
            log_text.contains(&needle),
            "Kamailio's log lacks {needle:?}:\n{log_text}"
        );
    }

    // Kamailio saw the MIKEY envelope (in the INVITE, before and after the proxy challenge) and
    // the answer's verification message (MIKEY-PKE's key confirmation, requested by default), and
    // only encrypted keys in either.
    let envelopes = logged_mikey(&log_text);
    use chaincall_mikey::message::{DataType, Payload};
    let messages: Vec<_> = envelopes
        .iter()
        .map(|env| chaincall_mikey::Message::decode(env).expect("a MIKEY message"))
        .collect();
    let offers: Vec<_> = messages
        .iter()
        .filter(|m| m.header.data_type == DataType::PkInit)
        .collect();
    assert!(
        !offers.is_empty(),
        "Kamailio's log shows no MIKEY offer:\n{log_text}"
    );
    for offer in &offers {
        let has = |f: fn(&Payload<'_>) -> bool| offer.payloads.iter().any(f);
        assert!(
            offer.header.v
                && has(|p| matches!(p, Payload::Pke(_)))
                && has(|p| matches!(p, Payload::Kemac(_)))
                && has(|p| matches!(p, Payload::Sign(_))),
            "the INVITE's MIKEY is PKE-enveloped, signed and asks for key confirmation: {offer:?}"
        );
    }
    let answers: Vec<_> = messages
        .iter()
        .filter(|m| m.header.data_type == DataType::PkResp)
        .collect();
    assert!(
        !answers.is_empty(),
        "the 200 OK carries MIKEY-PKE's verification message:\n{log_text}"
    );
    for answer in &answers {
        assert!(
            answer
                .payloads
                .iter()
                .all(|p| matches!(p, Payload::T(_) | Payload::Id(_) | Payload::V(_))),
            "the answer's verification message carries a MAC, no key: {answer:?}"
        );
    }
    assert_eq!(
        messages.len(),
        offers.len() + answers.len(),
        "only PKE offers and their verification messages cross Kamailio"
    );

    // ...and no SRTP key: not in the log, not in clear inside the envelope.
    let keys_a = keylog_entries(&keylog_a);
    let keys_b = keylog_entries(&keylog_b);
    assert!(
        keys_a.len() >= 2,
        "alice's key log: one line per stream, both directions"
    );
    let mut sorted_a: Vec<_> = keys_a.iter().map(|(s, _)| s.clone()).collect();
    let mut sorted_b: Vec<_> = keys_b.iter().map(|(s, _)| s.clone()).collect();
    sorted_a.sort();
    sorted_b.sort();
    assert_eq!(sorted_a, sorted_b, "both phones keyed the same streams");
    for (inline, key_and_salt) in &keys_a {
        assert_eq!(
            key_and_salt.len(),
            30,
            "AES_CM_128 master key (16) + salt (14)"
        );
        let (key, salt) = key_and_salt.split_at(16);
        let forms: Vec<(&str, Vec<u8>)> = vec![
            ("inline base64", inline.as_bytes().to_vec()),
            (
                "base64 of the key alone (its first 15 bytes)",
                B64.encode(key).as_bytes()[..20].to_vec(),
            ),
            ("hex of the key", hex::encode(key).into_bytes()),
            ("HEX of the key", hex::encode_upper(key).into_bytes()),
            ("hex of the salt", hex::encode(salt).into_bytes()),
            ("raw key", key.to_vec()),
            ("raw salt", salt.to_vec()),
        ];
        for (what, bytes) in &forms {
            assert!(
                !contains(&log, bytes),
                "an SRTP master key appears in Kamailio's log ({what})"
            );
        }
        for env in &envelopes {
            assert!(
                !contains(env, key) && !contains(env, salt),
                "an SRTP master key or salt is in clear in the MIKEY envelope"
            );
        }
    }
    assert!(
        !log_text.contains("a=crypto:"),
        "no SDES key line may cross the proxy"
    );
    eprintln!(
        "kamailio set-up: 2 REGISTERs + MIKEY-PKE call through Kamailio; {} SRTP packets each way; {} bytes of Kamailio log checked; {:.1} s",
        a.stats.rtp_received,
        log.len(),
        started.elapsed().as_secs_f64()
    );
}

/// RFC 7616 SHA-256 digest at Kamailio from the wallet server's `ha1_sha256` column: Kamailio's
/// `auth` module with `algorithm "SHA-256"` and `auth_db` reading that column as its HA1
/// (`calculate_ha1 0`, no clear password anywhere). Kamailio would compute an MD5 response from a
/// SHA-256 HA1 if either setting were ignored, so a 200 shows both took effect; a wrong password
/// gets 401.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kamailio_authenticates_sha256_digest_from_the_ha1_sha256_column() {
    let Some((bin, modules)) = kamailio_peer() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let sip_db = dir.join("sip.db");
    create_kamailio_db(&sip_db).await;
    let op = Operator::start(dir).await;
    let alice = op.onboard(ALICE).await;

    let md5_column = r#"modparam("auth_db", "password_column", "ha1")"#;
    let mut kamailio = Kamailio::start_with(&bin, &modules, dir, &sip_db, |cfg| {
        assert!(cfg.contains(md5_column));
        cfg.replace(
            md5_column,
            r#"modparam("auth_db", "password_column", "ha1_sha256")
modparam("auth", "algorithm", "SHA-256")"#,
        )
    });
    let genesis = op.chain.block_header(0).await.unwrap().hash_slow();
    let trust = Arc::new(HeaderTrust::checkpoint(0, genesis));
    let register = |password: Zeroizing<String>| {
        let cfg = phone_config(&alice, password, kamailio.addr, None, Vec::new());
        let lookup = KeyLookup::new(op.chain.clone(), op.contract, Some(trust.clone()));
        async move {
            let (phone, _events, _) = Phone::connect(cfg, lookup).await.unwrap();
            let answer = phone.register(600).await;
            phone.shutdown().await;
            answer
        }
    };
    match register(Zeroizing::new("not-the-password".into())).await {
        Err(PhoneError::AuthFailed(401)) => {}
        other => panic!("SHA-256 REGISTER with a wrong password: expected 401, got {other:?}"),
    }
    let expires = register(alice.sip_password.clone().unwrap())
        .await
        .unwrap_or_else(|e| panic!("SHA-256 REGISTER refused: {e}\n{}", kamailio.log_text()));
    assert!(expires > 0);
    let _ = op.wallet_stop.send(());
    kamailio.stop();
}
