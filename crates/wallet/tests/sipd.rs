//! End to end with the real SIP server: a phone is onboarded through the wallet server over HTTP,
//! the wallet writes its SIP credentials into the `subscriber` table of a SQLite file, a real
//! `chaincall_sipd::Server` reads that same file, and the phone — knowing only its number and its
//! receipt — registers over a real UDP socket with digest auth (401 challenge, then 200). A wrong
//! password is refused, and after the administrator revokes the subscriber the REGISTER fails.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use alloy::primitives::Address;
use chaincall_chain::{AnvilProcess, EmbeddedChain, RpcChain, RpcConfig};
use chaincall_sip::digest::{Algorithm, Challenge};
use chaincall_sip::header::HeaderName;
use chaincall_sip::message::Message;
use chaincall_wallet::chain::ServerChain;
use chaincall_wallet::receipt::Receipt;
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
            listen: vec!["udp:127.0.0.1:0".into()],
            domain: SIP_DOMAIN.into(),
            ..chaincall_sipd::Config::default()
        };
        cfg.auth.mode = chaincall_sipd::AuthMode::Digest;
        cfg.auth.database = database_url.to_owned();
        cfg.auth.credentials_cache_secs = credentials_cache_secs;
        cfg.limits.register_rate = 0.0;
        let server = chaincall_sipd::Server::bind(cfg).await.expect("sipd binds");
        let udp = server
            .local()
            .iter()
            .find_map(|l| match l {
                chaincall_sipd::Listen::Udp(a) => Some(*a),
                _ => None,
            })
            .expect("a UDP listener");
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

    // What the phone knows: its number and its receipt. Nothing read from the server's databases.
    let password = chaincall_wallet::sip_password(&receipt).unwrap();
    assert_eq!(password.len(), 64);

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

    // A wrong password, and another receipt's password, are refused.
    let wrong = ua
        .register(sipd.udp, "not-the-password", Algorithm::Sha256)
        .await;
    assert!(matches!(wrong.answer, 401 | 403), "{wrong:?}");
    let (_, other) = common::receipt();
    let other_password = chaincall_wallet::sip_password(&other).unwrap();
    let wrong = ua.register(sipd.udp, &other_password, Algorithm::Md5).await;
    assert!(matches!(wrong.answer, 401 | 403), "{wrong:?}");

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

/// The phone's derivation agrees with what the wallet server stores, for a receipt alone.
#[test]
fn sip_password_is_the_documented_hash_of_the_purchase_token() {
    use sha2::{Digest, Sha256};
    let (purchase, receipt) = receipt();
    let password = chaincall_wallet::sip_password(&receipt).unwrap();
    assert_eq!(
        *password,
        hex::encode(Sha256::digest(purchase.purchase_token.as_bytes()))
    );
    let broken = Receipt {
        original_json: "{not json".into(),
        signature: receipt.signature.clone(),
    };
    assert!(chaincall_wallet::sip_password(&broken).is_err());
}
