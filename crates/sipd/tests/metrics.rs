//! The Prometheus endpoint after a REGISTER / INVITE exchange: scraped over HTTP like Prometheus
//! does, every counter checked against the messages the test sent. `/healthz` and `/readyz` on the
//! same listener; with TLS-PSK on a real anvil node, refused handshakes counted by reason, chain
//! look-ups as latency samples and errors, and readiness following the chain.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chaincall_chain::{AnvilProcess, KeystoreChain, RpcChain, RpcConfig, dev_signer};
use chaincall_handshake::{HandshakeConfig, Initiator, LocalIdentity, Protocol};
use chaincall_identity::{IdentityKey, IdentityName, StaticDirectory};

use chaincall_sip::digest::Challenge;
use chaincall_sip::header::HeaderName;
use chaincall_sip::message::{Message, response_to};
use chaincall_sipd::db::Db;
use chaincall_sipd::{AuthMode, KeyTrustMode, Listen, Server, TlsPskSettings};
use chaincall_tls_psk::{TlsPskClient, TlsPskConfig, connect_with_handshake};
use common::*;
use tokio::io::AsyncWriteExt;

/// GET /metrics; returns the samples by name (with labels) and the content type.
async fn scrape(addr: SocketAddr) -> (HashMap<String, f64>, String) {
    let (head, body) = get(addr, "/metrics").await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let ctype = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Type: "))
        .unwrap_or("")
        .to_owned();
    let samples = body
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (k, v) = l.rsplit_once(' ').unwrap();
            (k.to_owned(), v.parse::<f64>().unwrap())
        })
        .collect();
    (samples, ctype)
}

fn reg_with_auth(ua: &Ua, server: SocketAddr, user: &str, cseq: u32, auth: &str) -> String {
    let contact = format!("Contact: <sip:{user}@{}>\nExpires: 600\n", ua.addr);
    register(ua, server, user, &format!("m-{user}"), cseq, &contact, auth)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_counters_follow_a_register_and_invite_exchange() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("sub.db").display());
    let db = Db::connect(&url).await.unwrap();
    db.create_schema().await.unwrap();
    db.add_subscriber("alice", "127.0.0.1", "pa").await.unwrap();
    db.add_subscriber("bob", "127.0.0.1", "pb").await.unwrap();
    let mut cfg = base_config();
    cfg.listen = vec![Listen::udp(([127, 0, 0, 1], 0).into())];
    cfg.metrics_listen = Some(([127, 0, 0, 1], 0).into());
    cfg.auth.mode = AuthMode::Digest;
    cfg.auth.database = url;
    cfg.auth.invite = false;
    let server = Server::bind(cfg).await.unwrap();
    let sip = server.local()[0].addr;
    let metrics_addr = server.metrics_addr().expect("metrics endpoint bound");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server.run(async {
        let _ = stopped.await;
    }));

    let (before, ctype) = scrape(metrics_addr).await;
    assert!(ctype.starts_with("text/plain; version=0.0.4"), "{ctype}");
    assert_eq!(before["sipd_requests_total"], 0.0);
    let build = format!(
        "sipd_build_info{{version=\"{}\"}}",
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(before[&build], 1.0);
    let (head, body) = get(metrics_addr, "/healthz").await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}\n{body}");
    let (head, body) = get(metrics_addr, "/readyz").await;
    assert!(
        head.starts_with("HTTP/1.1 200"),
        "the database answers: {head}\n{body}"
    );
    assert!(
        get(metrics_addr, "/nothing")
            .await
            .0
            .starts_with("HTTP/1.1 404")
    );

    let alice = Ua::bind("127.0.0.1").await;
    let bob = Ua::bind("127.0.0.1").await;
    let ruri = format!("sip:{sip}");
    // Alice: challenge, wrong password, right password. Bob: challenge, right password.
    let mut sent_requests = 0;
    for (ua, user, password) in [(&alice, "alice", "pa"), (&bob, "bob", "pb")] {
        ua.send(sip, &reg_with_auth(ua, sip, user, 1, "")).await;
        sent_requests += 1;
        let r = ua.expect(2000, |m| m.status().is_some()).await;
        let m = Message::parse(&r).unwrap();
        assert_eq!(m.status(), Some(401));
        let ch =
            Challenge::parse(&m.auth_headers(HeaderName::WwwAuthenticate).next().unwrap()).unwrap();
        let mut cseq = 2;
        if user == "alice" {
            let bad = ch.answer("REGISTER", &ruri, user, "wrong", "c0", 1);
            let r = ua
                .ask(
                    sip,
                    &reg_with_auth(ua, sip, user, cseq, &format!("Authorization: {bad}\n")),
                )
                .await;
            sent_requests += 1;
            assert_eq!(status_of(&r), 401);
            cseq += 1;
        }
        let good = ch.answer("REGISTER", &ruri, user, password, "c1", 2);
        let r = ua
            .ask(
                sip,
                &reg_with_auth(ua, sip, user, cseq, &format!("Authorization: {good}\n")),
            )
            .await;
        sent_requests += 1;
        assert_eq!(status_of(&r), 200, "{}", String::from_utf8_lossy(&r));
    }

    // Alice calls bob: INVITE (100 from sipd), bob answers 486 Busy Here, alice ACKs.
    let invite = format!(
        "INVITE sip:bob@{sip} SIP/2.0\n\
Via: SIP/2.0/UDP {a};branch=z9hG4bKmetrics1\n\
Max-Forwards: 70\n\
From: <sip:alice@127.0.0.1>;tag=am\n\
To: <sip:bob@127.0.0.1>\n\
Call-ID: metrics-call\n\
CSeq: 1 INVITE\n\
Contact: <sip:alice@{a}>\n\
Content-Length: 0\n\n",
        a = alice.addr
    );
    alice.send(sip, &invite).await;
    sent_requests += 1;
    let fwd = bob.expect(2000, |m| m.method().is_some()).await;
    let ringing = scrape(metrics_addr).await.0;
    assert_eq!(
        ringing["sipd_invites_in_progress"], 1.0,
        "forwarded, not answered"
    );
    let m = Message::parse(&fwd).unwrap();
    let busy = response_to(&m, 486, "Busy Here", Some("bm"))
        .with("Content-Length", "0")
        .to_bytes();
    bob.send_raw(sip, &busy).await;
    let r = alice
        .expect(2000, |m| m.status().is_some_and(|s| s >= 200))
        .await;
    assert_eq!(status_of(&r), 486);
    let to = Message::parse(&r)
        .unwrap()
        .header_value(HeaderName::To)
        .unwrap()
        .to_owned();
    alice
        .send(
            sip,
            &format!(
                "ACK sip:bob@{sip} SIP/2.0\n\
Via: SIP/2.0/UDP {a};branch=z9hG4bKmetrics1\n\
Max-Forwards: 70\n\
From: <sip:alice@127.0.0.1>;tag=am\n\
To: {to}\n\
Call-ID: metrics-call\n\
CSeq: 1 ACK\n\
Content-Length: 0\n\n",
                a = alice.addr
            ),
        )
        .await;
    sent_requests += 1;
    // bob's side: sipd ACKs the 486 hop by hop (§17.1.1.3); wait for it so everything is counted.
    bob.expect(2000, |m| m.method().is_some_and(|m| m.as_str() == "ACK"))
        .await;

    // The registrations gauge follows every REGISTER; wait until the server loop handled both,
    // and alice's ACK (sipd's own ACK to bob left when the 486 came, maybe before it).
    let mut after = scrape(metrics_addr).await.0;
    for _ in 0..30 {
        if after["sipd_registrations"] == 2.0
            && after["sipd_requests_total"] == f64::from(sent_requests)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        after = scrape(metrics_addr).await.0;
    }
    let class = |c: &str| after[&format!("sipd_responses_total{{class=\"{c}\"}}")];
    assert_eq!(after["sipd_requests_total"], f64::from(sent_requests));
    assert_eq!(after["sipd_responses_received_total"], 1.0, "bob's 486");
    assert_eq!(class("1xx"), 1.0, "100 Trying for the INVITE");
    assert_eq!(class("2xx"), 2.0, "two REGISTERs accepted");
    assert_eq!(class("4xx"), 4.0, "three 401s and the forwarded 486");
    assert_eq!(class("5xx"), 0.0);
    assert_eq!(
        after["sipd_auth_failures_total"], 1.0,
        "alice's wrong password"
    );
    assert_eq!(after["sipd_registers_ok_total"], 2.0);
    assert_eq!(after["sipd_registrations"], 2.0);
    // Five REGISTER and one INVITE server transactions (the ACK for the 486 belongs to the
    // INVITE's), and one client transaction for the forwarded INVITE.
    assert_eq!(after["sipd_transactions_started_total"], 7.0);
    assert!(
        after["sipd_transactions"] >= 1.0,
        "the INVITE transactions linger (Timer D / K)"
    );
    assert_eq!(after["sipd_parse_errors_total"], 0.0);
    assert_eq!(after["sipd_rate_limited_total"], 0.0);
    assert_eq!(after["sipd_invites_in_progress"], 0.0, "answered 486");
    let _ = stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
}

/// A phone's view of the keystore: it knows sipd's key (the test publishes nothing on chain for
/// the phones, so sipd's look-up of them is what is measured).
fn knowing(name: &IdentityName, key: &IdentityKey) -> StaticDirectory {
    let mut d = StaticDirectory::new();
    d.approve(name.clone(), key.public());
    d
}

/// Runs the STS handshake as `me` against sipd's TLS-PSK listener at `addr`; sipd must refuse it.
async fn refused_handshake(addr: SocketAddr, me: &LocalIdentity, sipd: &StaticDirectory) {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let server = IdentityName::parse(TLS_DOMAIN).unwrap();
    let initiator = Initiator::new(
        HandshakeConfig::default(),
        me.clone(),
        server,
        Protocol::Sts,
        sipd,
        Instant::now(),
    )
    .unwrap();
    let client = TlsPskClient::new(&TlsPskConfig::default()).unwrap();
    let r = connect_with_handshake(tcp, initiator, Duration::from_secs(5), &client).await;
    assert!(r.is_err(), "{} got in", me.name());
}

/// Scrapes until `name` reaches `want` (the listener counts after the connection closed); the
/// bound is generous, the assertion is on the value.
async fn until(addr: SocketAddr, name: &str, want: f64) -> HashMap<String, f64> {
    let mut last = scrape(addr).await.0;
    for _ in 0..100 {
        if last.get(name) == Some(&want) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        last = scrape(addr).await.0;
    }
    assert_eq!(last.get(name), Some(&want), "{name}");
    last
}

const TLS_DOMAIN: &str = "sip.metrics.test";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_psk_refusals_key_lookups_and_readiness_follow_the_chain() {
    let Some(anvil) = chaincall_testkit::peer("anvil") else {
        return;
    };
    let node = AnvilProcess::spawn(&anvil, chaincall_testkit::free_tcp_port(), &[]).unwrap();
    let chain = RpcChain::connect(&node.url(), RpcConfig::default())
        .await
        .unwrap();
    let contract = chain
        .deploy(&dev_signer(0))
        .await
        .unwrap()
        .contract_address
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("sipd.key");
    let (key, _) = chaincall_sipd::tls::load_or_create_identity_key(&key_file).unwrap();
    let mut cfg = base_config();
    cfg.listen = vec![Listen::tls(([127, 0, 0, 1], 0).into())];
    cfg.metrics_listen = Some(([127, 0, 0, 1], 0).into());
    cfg.auth.mode = AuthMode::None;
    cfg.tls_psk = Some(TlsPskSettings {
        trust: KeyTrustMode::Provider,
        // Every handshake reads the chain: each is one latency sample.
        key_cache: Duration::ZERO,
        ..TlsPskSettings::new(TLS_DOMAIN.parse().unwrap(), key_file, node.url(), contract)
    });
    let server = Server::bind(cfg).await.unwrap();
    let tls = server.local()[0].addr;
    let metrics_addr = server.metrics_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server.run(async {
        let _ = stopped.await;
    }));
    let (head, body) = get(metrics_addr, "/readyz").await;
    assert!(
        head.starts_with("HTTP/1.1 200"),
        "the chain answers: {head}\n{body}"
    );
    let reason = |r: &str| format!("sipd_tls_psk_failures_total{{reason=\"{r}\"}}");
    let before = scrape(metrics_addr).await.0;
    assert_eq!(before["sipd_key_lookup_seconds_count"], 0.0);
    assert_eq!(before[&reason("malformed")], 0.0);

    // Neither a handshake frame nor a TLS record.
    let mut junk = tokio::net::TcpStream::connect(tls).await.unwrap();
    junk.write_all(b"\0\0\0\0").await.unwrap();
    until(metrics_addr, &reason("malformed"), 1.0).await;

    // A phone whose key is not on chain: sipd reads the chain, finds nothing, refuses.
    let sipd = knowing(&TLS_DOMAIN.parse().unwrap(), &key);
    let dave = LocalIdentity::new(
        IdentityName::parse("+15550100004").unwrap(),
        Arc::new(IdentityKey::generate()),
    );
    refused_handshake(tls, &dave, &sipd).await;
    let after = until(metrics_addr, &reason("key_not_approved"), 1.0).await;
    assert_eq!(after["sipd_key_lookup_seconds_count"], 1.0);
    assert_eq!(after["sipd_key_lookup_seconds_bucket{le=\"+Inf\"}"], 1.0);
    assert_eq!(after["sipd_key_lookup_errors_total"], 0.0);

    // The node goes away: sipd is not ready (saying why, but not the node's URL, which may hold
    // an API key), and a look-up is an error, refused as such.
    drop(node);
    let (head, body) = get(metrics_addr, "/readyz").await;
    assert!(head.starts_with("HTTP/1.1 503"), "{head}\n{body}");
    assert_eq!(body, "chain: the keystore node does not answer\n");
    assert!(
        get(metrics_addr, "/healthz")
            .await
            .0
            .starts_with("HTTP/1.1 200")
    );
    refused_handshake(tls, &dave, &sipd).await;
    let down = until(metrics_addr, &reason("keystore_unavailable"), 1.0).await;
    assert_eq!(down["sipd_key_lookup_seconds_count"], 2.0);
    assert_eq!(down["sipd_key_lookup_errors_total"], 1.0);
    let _ = stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
}
