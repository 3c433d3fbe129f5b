//! End to end with the real SIP server: a phone is onboarded through the wallet server over HTTP,
//! the wallet writes its SIP credentials — hashes only — into the `subscriber` table of a SQLite
//! file, a real `chaincall_sipd::Server` reads that same file, and the phone — with the password it
//! fetched by a request its on-chain identity key signed — registers over a real UDP socket with
//! digest auth (401 challenge, then 200) in MD5 and SHA-256. A wrong password is refused; after a
//! rotation the old password is refused and the new one accepted; after the administrator revokes
//! the subscriber the REGISTER fails. A legacy row (clear password) is migrated at start and keeps
//! working.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use alloy::primitives::Address;
use chaincall_chain::{AnvilProcess, EmbeddedChain, RpcChain, RpcConfig};
use chaincall_identity::PhoneNumber;
use chaincall_sip::digest::{Algorithm, Challenge};
use chaincall_sip::header::HeaderName;
use chaincall_sip::message::Message;
use chaincall_wallet::chain::ServerChain;
use chaincall_wallet::credentials::CredentialsRequest;
use chaincall_wallet::subscriber::SubscriberTable;
use chaincall_wallet::testing::deploy_test_keystore;
use common::*;
use tokio::net::UdpSocket;

const SIP_DOMAIN: &str = chaincall_wallet::testing::TEST_SIP_DOMAIN;

/// A running sipd whose subscriber database is the wallet server's SIP database.
struct Sipd {
    udp: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Sipd {
    /// `credentials_cache_secs`: how long it reuses a subscriber row (`[auth]`, default 30).
    async fn start(database_url: &str, credentials_cache_secs: u64) -> Self {
        let mut cfg = chaincall_sipd::Config {
            listen: vec![chaincall_sipd::Listen::udp(([127, 0, 0, 1], 0).into())],
            domain: Some(SIP_DOMAIN.into()),
            ..chaincall_sipd::Config::default()
        };
        cfg.auth.mode = chaincall_sipd::AuthMode::Digest;
        cfg.auth.database = database_url.to_owned();
        cfg.auth.credentials_cache = std::time::Duration::from_secs(credentials_cache_secs);
        cfg.limits.register_rate = 0.0;
        let server = chaincall_sipd::Server::bind(cfg).await.expect("sipd binds");
        let udp = server
            .local()
            .iter()
            .find(|l| l.transport == chaincall_sipd::ListenTransport::Udp)
            .expect("a UDP listener")
            .addr;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(server.run(async {
            let _ = stopped.await;
        }));
        Self {
            udp,
            stop: Some(stop),
            task,
        }
    }

    async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let _ = tokio::time::timeout(Duration::from_secs(5), self.task).await;
    }
}

/// A minimal UDP user agent that registers `user` at [`SIP_DOMAIN`].
struct Ua {
    sock: UdpSocket,
    user: String,
    call_id: String,
    cseq: u32,
    nc: u32,
}

/// How a REGISTER attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Attempt {
    /// Status of the unauthenticated REGISTER (the challenge).
    challenge: u16,
    /// Status of the REGISTER that answered the challenge.
    answer: u16,
    /// The Contact header values of the final response.
    contacts: Vec<String>,
}

impl Ua {
    async fn new(user: &str) -> Self {
        let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let call_id = format!(
            "reg-{}-{}",
            std::process::id(),
            user.trim_start_matches('+')
        );
        Self {
            sock,
            user: user.to_owned(),
            call_id,
            cseq: 0,
            nc: 0,
        }
    }

    fn request(&mut self, extra: &str) -> String {
        self.cseq += 1;
        let me = self.sock.local_addr().unwrap();
        let (user, cseq, call_id) = (&self.user, self.cseq, &self.call_id);
        format!(
            "REGISTER sip:{SIP_DOMAIN} SIP/2.0\r\n\
Via: SIP/2.0/UDP {me};branch=z9hG4bK-{call_id}-{cseq}\r\n\
Max-Forwards: 70\r\n\
From: <sip:{user}@{SIP_DOMAIN}>;tag=t{cseq}\r\n\
To: <sip:{user}@{SIP_DOMAIN}>\r\n\
Call-ID: {call_id}\r\n\
CSeq: {cseq} REGISTER\r\n\
Contact: <sip:{user}@{me}>\r\n\
Expires: 600\r\n\
{extra}Content-Length: 0\r\n\r\n"
        )
    }

    /// Sends `msg` and returns the final response to it (the CSeq matches; bounded wait).
    async fn exchange(&self, server: SocketAddr, msg: &str) -> Vec<u8> {
        self.sock.send_to(msg.as_bytes(), server).await.unwrap();
        let mut buf = vec![0u8; 65_536];
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let (n, _) = tokio::time::timeout_at(deadline, self.sock.recv_from(&mut buf))
                .await
                .expect("sipd answers within 5 s")
                .unwrap();
            let Ok(m) = Message::parse(&buf[..n]) else {
                continue;
            };
            let final_for_us =
                m.status().is_some_and(|s| s >= 200) && m.cseq().is_ok_and(|c| c.seq == self.cseq);
            if final_for_us {
                return buf[..n].to_vec();
            }
        }
    }

    /// REGISTER, take the challenge for `algorithm`, answer it with `password`.
    async fn register(
        &mut self,
        server: SocketAddr,
        password: &str,
        algorithm: Algorithm,
    ) -> Attempt {
        let first = self.request("");
        let first = self.exchange(server, &first).await;
        let challenge_msg = Message::parse(&first).unwrap();
        let challenge = challenge_msg.status().unwrap();
        assert_eq!(challenge, 401, "{}", String::from_utf8_lossy(&first));
        let challenges: Vec<_> = challenge_msg
            .auth_headers(HeaderName::WwwAuthenticate)
            .filter_map(|h| Challenge::parse(&h).ok())
            .collect();
        let chosen = challenges
            .iter()
            .find(|c| c.algorithm == algorithm)
            .unwrap_or_else(|| panic!("sipd offers {algorithm:?}: {challenges:?}"));
        assert_eq!(chosen.realm, SIP_DOMAIN);
        self.nc += 1;
        let authorization = chosen.answer(
            "REGISTER",
            &format!("sip:{SIP_DOMAIN}"),
            &self.user,
            password,
            "0a4f113b",
            self.nc,
        );
        let second = self.request(&format!("Authorization: {authorization}\r\n"));
        let second = self.exchange(server, &second).await;
        let m = Message::parse(&second).unwrap();
        Attempt {
            challenge,
            answer: m.status().unwrap(),
            contacts: m.values(HeaderName::Contact).map(str::to_owned).collect(),
        }
    }
}

/// The phone's whole story against sipd, on any chain backend.
async fn register_after_onboarding<C: ServerChain>(s: &Server<C>) {
    let phone = Phone::new();
    let (_, receipt) = receipt();
    let done = s.onboard(&phone, receipt.clone()).await;
    assert_eq!(done.state, "provisioned");

    // What the phone knows: its number and identity key; the password comes from the wallet
    // server, sealed to that key. Nothing read from the server's databases.
    let number = PhoneNumber::parse(&phone.number).unwrap();
    let password = s
        .client
        .sip_password(&phone.identity, &number)
        .await
        .unwrap();
    assert_eq!(password.len(), 40);

    let sipd = Sipd::start(&s.config.sip.database_url, 2).await;
    let mut ua = Ua::new(&phone.number).await;
    for algorithm in [Algorithm::Sha256, Algorithm::Md5] {
        let ok = ua.register(sipd.udp, &password, algorithm).await;
        assert_eq!(ok.answer, 200, "{algorithm:?}: {ok:?}");
        assert!(
            ok.contacts
                .iter()
                .any(|c| c.contains(&ua.sock.local_addr().unwrap().to_string())),
            "the binding is returned: {ok:?}"
        );
    }

    // A wrong password, and the old scheme's password (the hash of the purchase token), are
    // refused.
    let wrong = ua
        .register(sipd.udp, "not-the-password", Algorithm::Sha256)
        .await;
    assert!(matches!(wrong.answer, 401 | 403), "{wrong:?}");
    let token_hash = receipt.purchase().unwrap().token_sha256_hex();
    let wrong = ua.register(sipd.udp, &token_hash, Algorithm::Md5).await;
    assert!(matches!(wrong.answer, 401 | 403), "{wrong:?}");

    // A second subscriber's password is unrelated, and does not open the first account.
    let other = Phone::new();
    let (_, other_receipt) = common::receipt();
    assert_eq!(s.onboard(&other, other_receipt).await.state, "provisioned");
    let other_number = PhoneNumber::parse(&other.number).unwrap();
    let other_password = s
        .client
        .sip_password(&other.identity, &other_number)
        .await
        .unwrap();
    assert_ne!(*other_password, *password);
    let wrong = ua.register(sipd.udp, &other_password, Algorithm::Md5).await;
    assert!(matches!(wrong.answer, 401 | 403), "{wrong:?}");

    // The credentials endpoint answers only a request signed by the number's on-chain key: the
    // other subscriber's key, or a fresh one, is refused for this number.
    for stranger in [
        other.identity.clone(),
        chaincall_identity::IdentityKey::generate(),
    ] {
        let refused = s.client.sip_password(&stranger, &number).await.unwrap_err();
        assert_eq!(code(&refused), "bad_proof_of_possession", "{refused}");
    }
    // A request signed long ago (a captured one) is refused too.
    let mut stale = CredentialsRequest::new(
        &phone.identity,
        &number,
        &chaincall_identity::Randomness::os(),
    );
    stale.timestamp -= 3600;
    stale.signature = hex::encode(phone.identity.sign(&stale.message().unwrap()).to_bytes());
    let (status, body) = s
        .post_raw("/v1/credentials", serde_json::to_value(&stale).unwrap())
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("payload_expired")),
        "{body}"
    );

    // Rotation: the administrator bumps the generation; at a sipd reading the row for every
    // request the old password is refused at once and the newly fetched one accepted.
    let uncached = Sipd::start(&s.config.sip.database_url, 0).await;
    let mut ua_now = Ua::new(&phone.number).await;
    let rotate = format!("/v1/admin/subscribers/{}/credentials/rotate", phone.number);
    let (status, _) = s.admin("POST", &rotate, None).await;
    assert_eq!(status, 401, "rotation needs the admin token");
    let (status, out) = s.admin("POST", &rotate, Some(ADMIN_TOKEN)).await;
    assert_eq!(status, 200, "{out}");
    assert_eq!(out["generation"], 2, "{out}");
    for algorithm in [Algorithm::Sha256, Algorithm::Md5] {
        let old = ua_now.register(uncached.udp, &password, algorithm).await;
        assert!(matches!(old.answer, 401 | 403), "{algorithm:?}: {old:?}");
    }
    let rotated = s
        .client
        .sip_password(&phone.identity, &number)
        .await
        .unwrap();
    assert_ne!(*rotated, *password);
    for algorithm in [Algorithm::Sha256, Algorithm::Md5] {
        let ok = ua_now.register(uncached.udp, &rotated, algorithm).await;
        assert_eq!(ok.answer, 200, "{algorithm:?}: {ok:?}");
    }
    // The other subscriber is untouched by this rotation.
    let mut ua_other = Ua::new(&other.number).await;
    let ok = ua_other
        .register(uncached.udp, &other_password, Algorithm::Sha256)
        .await;
    assert_eq!(ok.answer, 200, "{ok:?}");
    uncached.stop().await;
    let password = rotated;

    // The administrator revokes the subscriber: chain revoke + SIP row deleted.
    let (status, out) = s
        .admin(
            "POST",
            &format!("/v1/admin/subscribers/{}/revoke", phone.number),
            Some(ADMIN_TOKEN),
        )
        .await;
    assert_eq!(status, 200, "{out}");
    assert_eq!(out["sip_row_deleted"], true, "{out}");

    // A sipd (re)started now refuses the revoked subscriber at once.
    let fresh = Sipd::start(&s.config.sip.database_url, 30).await;
    let mut ua2 = Ua::new(&phone.number).await;
    let refused = ua2.register(fresh.udp, &password, Algorithm::Sha256).await;
    assert!(matches!(refused.answer, 401 | 403), "{refused:?}");
    fresh.stop().await;

    // The sipd that was running all along refuses it too once its credential cache (set to 2 s
    // here; `[auth] credentials_cache_secs`) has let go of the row: poll, bounded.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let attempt = ua.register(sipd.udp, &password, Algorithm::Sha256).await;
        if matches!(attempt.answer, 401 | 403) {
            break;
        }
        assert_eq!(attempt.answer, 200, "{attempt:?}");
        assert!(
            tokio::time::Instant::now() < deadline,
            "the running sipd still accepts a revoked subscriber 30 s after the revoke"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    sipd.stop().await;
}

async fn start_server<C: ServerChain>(
    chain: Arc<C>,
    contract: Address,
    dir: &std::path::Path,
    backend: &str,
    rpc: Option<&str>,
) -> Server<C> {
    let config = write_config(
        dir,
        "[limits]\nrequests_per_second = 1000.0\nburst = 1000.0\n",
        backend,
        rpc.map(|url| (url, contract)),
    );
    Server::start(chain, contract, config).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn onboarded_phone_registers_at_sipd_embedded() {
    let dir = tempfile::tempdir().unwrap();
    let chain = Arc::new(EmbeddedChain::default());
    let contract = deploy_test_keystore(&*chain).await.unwrap();
    let s = start_server(chain, contract, dir.path(), "embedded", None).await;
    register_after_onboarding(&s).await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn onboarded_phone_registers_at_sipd_anvil() {
    let Some(path) = chaincall_testkit::peer("anvil") else {
        return;
    };
    let node = AnvilProcess::spawn(&path, chaincall_testkit::free_tcp_port(), &[]).expect("anvil");
    let chain = Arc::new(
        RpcChain::connect(&node.url(), RpcConfig::default())
            .await
            .unwrap(),
    );
    let contract = deploy_test_keystore(&*chain).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let s = start_server(chain, contract, dir.path(), "rpc", Some(&node.url())).await;
    register_after_onboarding(&s).await;
    s.stop().await;
}

/// An old database: the subscriber row holds its password in clear (the hash of the purchase
/// token, as older servers wrote it). The wallet server, starting, hashes and blanks it (and logs
/// so); sipd then authenticates that subscriber, in MD5 and SHA-256, from the stored hashes alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_clear_password_is_migrated_and_keeps_working() {
    let dir = tempfile::tempdir().unwrap();
    let chain = Arc::new(EmbeddedChain::default());
    let contract = deploy_test_keystore(&*chain).await.unwrap();
    let config = write_config(dir.path(), "", "embedded", None);
    let legacy = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    let user = "+15550109999";
    {
        let sip = SubscriberTable::new(
            chaincall_wallet::db::connect(&config.sip.database_url)
                .await
                .unwrap(),
        );
        sip.ensure_schema().await.unwrap();
        sqlx::query("INSERT INTO subscriber (username, domain, password, ha1, ha1b) VALUES ($1, $2, $3, '', '')")
            .bind(user)
            .bind(SIP_DOMAIN)
            .bind(legacy)
            .execute(sip.pool())
            .await
            .unwrap();
    }
    let s = Server::start(chain, contract, config).await;
    let (clear, sha256): (String, String) =
        sqlx::query_as("SELECT password, ha1_sha256 FROM subscriber WHERE username = $1")
            .bind(user)
            .fetch_one(s.sip.pool())
            .await
            .unwrap();
    assert_eq!(clear, "", "the clear password is gone");
    assert_eq!(
        sha256,
        chaincall_wallet::subscriber::ha1_sha256(user, SIP_DOMAIN, legacy)
    );
    let sipd = Sipd::start(&s.config.sip.database_url, 0).await;
    let mut ua = Ua::new(user).await;
    for algorithm in [Algorithm::Sha256, Algorithm::Md5] {
        let ok = ua.register(sipd.udp, legacy, algorithm).await;
        assert_eq!(ok.answer, 200, "{algorithm:?}: {ok:?}");
    }
    let wrong = ua.register(sipd.udp, "guess", Algorithm::Sha256).await;
    assert!(matches!(wrong.answer, 401 | 403), "{wrong:?}");
    sipd.stop().await;
    s.stop().await;
}
