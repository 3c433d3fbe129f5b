//! sipd end to end over loopback with hand-written UAs: registrar, digest auth, proxy paths,
//! protection. Every wait is bounded.

mod common;

use std::time::Duration;

use chaincall_sip::digest::{Algorithm, Challenge};
use chaincall_sip::header::{HeaderName, Method};
use chaincall_sip::message::{Message, response_to};
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn contact_line(ua: &Ua, user: &str, params: &str) -> String {
    format!("Contact: <sip:{user}@{}>{params}\n", ua.addr)
}

#[tokio::test]
async fn registrar_bindings_expiry_and_unregister() {
    let s = start(base_config()).await;
    let ua = Ua::bind("127.0.0.1").await;
    // Two contacts, one with its own expires.
    let c = "Contact: <sip:bob@127.0.0.1:7001>;expires=120, <sip:bob@127.0.0.1:7002>\n".to_string();
    let r = ua
        .ask_register(s.udp, "bob", "r1", 1, &c, "Expires: 600\n")
        .await;
    let m = Message::parse(&r).unwrap();
    assert_eq!(m.status(), Some(200));
    let contacts: Vec<_> = m.values(HeaderName::Contact).collect();
    assert_eq!(contacts.len(), 2, "{contacts:?}");
    assert!(
        contacts
            .iter()
            .any(|c| c.contains("7001") && c.contains("expires=120"))
    );
    assert!(
        contacts
            .iter()
            .any(|c| c.contains("7002") && c.contains("expires=600"))
    );
    // Too brief → 423 with Min-Expires (RFC 3261 §10.3 step 7).
    let r = ua
        .ask_register(
            s.udp,
            "bob",
            "r1",
            2,
            "Contact: <sip:bob@127.0.0.1:7003>;expires=5\n",
            "",
        )
        .await;
    let m = Message::parse(&r).unwrap();
    assert_eq!(m.status(), Some(423));
    assert_eq!(m.header_value(HeaderName::MinExpires), Some("60"));
    // Out-of-order CSeq with the same Call-ID fails (§10.3 step 7).
    let r = ua
        .ask_register(
            s.udp,
            "bob",
            "r1",
            1,
            "Contact: <sip:bob@127.0.0.1:7001>\n",
            "",
        )
        .await;
    assert_eq!(status_of(&r), 500);
    // Unregister one.
    let r = ua
        .ask_register(
            s.udp,
            "bob",
            "r1",
            3,
            "Contact: <sip:bob@127.0.0.1:7001>;expires=0\n",
            "",
        )
        .await;
    let m = Message::parse(&r).unwrap();
    assert_eq!(m.values(HeaderName::Contact).count(), 1);
    // A query (no Contact) lists what is left.
    let r = ua.ask_register(s.udp, "bob", "r1", 4, "", "").await;
    assert!(
        Message::parse(&r)
            .unwrap()
            .header_value(HeaderName::Contact)
            .unwrap()
            .contains("7002")
    );
    // "*" needs Expires: 0.
    let r = ua
        .ask_register(s.udp, "bob", "r1", 5, "Contact: *\n", "")
        .await;
    assert_eq!(status_of(&r), 400);
    let r = ua
        .ask_register(s.udp, "bob", "r1", 6, "Contact: *\n", "Expires: 0\n")
        .await;
    let m = Message::parse(&r).unwrap();
    assert_eq!(m.status(), Some(200));
    assert_eq!(m.values(HeaderName::Contact).count(), 0);
    s.stop().await;
}

/// sipd with digest auth against a new SQLite `subscriber` table (Kamailio's columns) holding
/// alice with password `s3cret`; `configure` adjusts the rest. Returns the folder (keep it), the
/// database URL and the running server.
async fn start_with_alice(
    configure: impl FnOnce(&mut chaincall_sipd::Config),
) -> (tempfile::TempDir, String, Running) {
    let dir = tempfile::tempdir().unwrap();
    let url = subscriber_db(dir.path(), &[("alice", "s3cret")]).await;
    let mut cfg = base_config();
    cfg.auth.mode = chaincall_sipd::AuthMode::Digest;
    cfg.auth.database = url.clone();
    configure(&mut cfg);
    let s = start(cfg).await;
    (dir, url, s)
}

/// alice's REGISTER from `ua` (Call-ID `call_id`, CSeq `cseq`) carrying the digest answer
/// `authorization`; returns the response.
async fn as_alice(
    ua: &Ua,
    s: &Running,
    call_id: &str,
    cseq: u32,
    contact: &str,
    authorization: &str,
) -> Vec<u8> {
    let extra = format!("Authorization: {authorization}\n");
    ua.ask_register(s.udp, "alice", call_id, cseq, contact, &extra)
        .await
}

#[tokio::test]
async fn digest_register_against_kamailio_table() {
    let (_dir, _, s) = start_with_alice(|_| {}).await;
    let ua = Ua::bind("127.0.0.1").await;
    let contact = contact_line(&ua, "alice", "");
    let r = ua.ask_register(s.udp, "alice", "d1", 1, &contact, "").await;
    let m = Message::parse(&r).unwrap();
    assert_eq!(m.status(), Some(401));
    let chals: Vec<_> = m.auth_headers(HeaderName::WwwAuthenticate).collect();
    assert_eq!(chals.len(), 2, "SHA-256 then MD5 (RFC 8760 §2.4)");
    assert_eq!(chals[0].param("algorithm"), Some("SHA-256"));
    let ch = Challenge::parse(&chals[0]).unwrap();
    let ruri = format!("sip:{}", s.udp);
    // alice's REGISTER number `cseq` answering with `authorization`: its status and bytes.
    let answer = async |cseq: u32, authorization: &str| {
        let r = as_alice(&ua, &s, "d1", cseq, &contact, authorization).await;
        (status_of(&r), r)
    };
    let good = ch.answer("REGISTER", &ruri, "alice", "s3cret", "c0ffee", 1);
    let (status, r) = answer(2, &good).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&r));
    // The same nonce count again (new transaction): a replay → 401.
    assert_eq!(answer(3, &good).await.0, 401);
    // The next count with MD5 works too (ha1 column).
    let md5 = Challenge::parse(&chals[1]).unwrap();
    let ok2 = md5.answer("REGISTER", &ruri, "alice", "s3cret", "c0ffee", 2);
    assert_eq!(answer(4, &ok2).await.0, 200);
    // Wrong password.
    let bad = ch.answer("REGISTER", &ruri, "alice", "guess", "c0ffee", 9);
    assert_eq!(answer(5, &bad).await.0, 401);
    // Unknown user; and a forged nonce.
    let ghost = ch.answer("REGISTER", &ruri, "mallory", "x", "c", 1);
    ua.send(
        s.udp,
        &register(
            &ua,
            s.udp,
            "mallory",
            "d2",
            1,
            &contact,
            &format!("Authorization: {ghost}\n"),
        ),
    )
    .await;
    let r = ua
        .expect(2000, |m| {
            m.status().is_some() && m.call_id().unwrap() == "d2"
        })
        .await;
    assert_eq!(status_of(&r), 401);
    let forged = good.replace(ch.nonce, &"0".repeat(48));
    assert_eq!(answer(6, &forged).await.0, 401);
    assert!(s.metrics.auth_failures.get() >= 4);
    s.stop().await;
}

/// `[auth] algorithms` is enforced: with only SHA-256 configured, sipd offers only SHA-256 and an
/// MD5 answer with the right password (on a nonce sipd issued) is refused; the SHA-256 answer
/// with the same password registers (issue 13 item 8).
#[tokio::test]
async fn an_md5_answer_is_refused_when_only_sha256_is_configured() {
    let (_dir, _, s) = start_with_alice(|cfg| {
        cfg.auth.algorithms = vec![chaincall_sip::digest::Algorithm::Sha256]
    })
    .await;
    let ua = Ua::bind("127.0.0.1").await;
    let contact = contact_line(&ua, "alice", "");
    let r = ua
        .ask_register(s.udp, "alice", "alg", 1, &contact, "")
        .await;
    let m = Message::parse(&r).unwrap();
    assert_eq!(m.status(), Some(401));
    let chals: Vec<_> = m.auth_headers(HeaderName::WwwAuthenticate).collect();
    assert_eq!(chals.len(), 1, "only the configured algorithm is offered");
    let sha = Challenge::parse(&chals[0]).unwrap();
    assert_eq!(sha.algorithm, Algorithm::Sha256);
    let ruri = format!("sip:{}", s.udp);
    // The client downgrades on its own: same nonce, right password, MD5.
    let mut md5 = sha.clone();
    md5.algorithm = Algorithm::Md5;
    let downgraded = md5.answer("REGISTER", &ruri, "alice", "s3cret", "c0ffee", 1);
    assert!(downgraded.contains("algorithm=MD5"), "{downgraded}");
    let r = as_alice(&ua, &s, "alg", 2, &contact, &downgraded).await;
    assert_eq!(status_of(&r), 401, "{}", String::from_utf8_lossy(&r));
    let failures = s.metrics.auth_failures.get();
    assert!(failures >= 1, "the refused MD5 answer counts as a failure");
    let good = sha.answer("REGISTER", &ruri, "alice", "s3cret", "c0ffee", 2);
    let r = as_alice(&ua, &s, "alg", 3, &contact, &good).await;
    assert_eq!(status_of(&r), 200, "{}", String::from_utf8_lossy(&r));
    s.stop().await;
}

/// Issue 16 item 5, over the wire at the default `[auth]` settings: a REGISTER with chaincall's
/// own phone's User-Agent is challenged SHA-256 first, then MD5, and registers with the first (the
/// one the phone answers); one whose User-Agent is baresip's gets the MD5 challenge alone and
/// registers with it. No answer is refused.
#[tokio::test]
async fn the_phone_keeps_sha256_and_a_baresip_user_agent_gets_md5_only() {
    let (_dir, _, s) = start_with_alice(|_| {}).await;
    let ua = Ua::bind("127.0.0.1").await;
    let contact = contact_line(&ua, "alice", "");
    let ruri = format!("sip:{}", s.udp);
    let phone = format!("chaincall/{}", env!("CARGO_PKG_VERSION"));
    let cases = [
        (phone.as_str(), vec![Algorithm::Sha256, Algorithm::Md5]),
        ("baresip v1.0.0 (x86_64/linux)", vec![Algorithm::Md5]),
    ];
    for (n, (agent, offered)) in cases.into_iter().enumerate() {
        let call_id = format!("agent{n}");
        let agent_line = format!("User-Agent: {agent}\n");
        let r = ua
            .ask_register(s.udp, "alice", &call_id, 1, &contact, &agent_line)
            .await;
        let m = Message::parse(&r).unwrap();
        assert_eq!(m.status(), Some(401));
        let algorithms: Vec<Algorithm> = m
            .auth_headers(HeaderName::WwwAuthenticate)
            .map(|h| Challenge::parse(&h).unwrap().algorithm)
            .collect();
        assert_eq!(algorithms, offered, "{agent}");
        let first = m.auth_headers(HeaderName::WwwAuthenticate).next().unwrap();
        let ch = Challenge::parse(&first).unwrap();
        let answer = ch.answer("REGISTER", &ruri, "alice", "s3cret", "c0ffee", 1);
        let extra = format!("{agent_line}Authorization: {answer}\n");
        let r = ua
            .ask_register(s.udp, "alice", &call_id, 2, &contact, &extra)
            .await;
        assert_eq!(status_of(&r), 200, "{}", String::from_utf8_lossy(&r));
        assert!(answer.contains(&format!("algorithm={}", offered[0].as_str())));
    }
    assert_eq!(s.metrics.auth_failures.get(), 0);
    s.stop().await;
}

/// A subscriber row deleted from the database (the wallet server's revoke) stops a REGISTER after
/// at most `credentials_cache_secs`: with the default (30 s) the cached row still answers the next
/// REGISTER; with 0 it is refused at once.
#[tokio::test]
async fn a_deleted_subscriber_is_refused_within_the_credentials_cache_lifetime() {
    for (cache_secs, after_delete) in [(30, 200), (0, 401)] {
        let (_dir, url, s) =
            start_with_alice(|cfg| cfg.auth.credentials_cache = Duration::from_secs(cache_secs))
                .await;
        let ua = Ua::bind("127.0.0.1").await;
        let contact = contact_line(&ua, "alice", "");
        let r = ua
            .ask_register(s.udp, "alice", "del", 1, &contact, "")
            .await;
        let m = Message::parse(&r).unwrap();
        let ch =
            Challenge::parse(&m.auth_headers(HeaderName::WwwAuthenticate).next().unwrap()).unwrap();
        let ruri = format!("sip:{}", s.udp);
        let registered = |cseq: u32| {
            let answer = ch.answer("REGISTER", &ruri, "alice", "s3cret", "c0ffee", cseq);
            register(
                &ua,
                s.udp,
                "alice",
                "del",
                cseq + 1,
                &contact,
                &format!("Authorization: {answer}\n"),
            )
        };
        let r = ua.ask(s.udp, &registered(1)).await;
        assert_eq!(
            status_of(&r),
            200,
            "cache {cache_secs} s: before the delete"
        );

        let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
        sqlx::query("DELETE FROM subscriber WHERE username = 'alice'")
            .execute(&pool)
            .await
            .unwrap();
        let r = ua.ask(s.udp, &registered(2)).await;
        assert_eq!(
            status_of(&r),
            after_delete,
            "cache {cache_secs} s: right after the delete"
        );
        s.stop().await;
    }
}

/// `caller` INVITEs `user` through sipd and `callee` answers 180 Ringing with To-tag `tag`; returns
/// the INVITE as the callee got it, once the caller has seen the 180.
async fn ring(
    s: &Running,
    caller: &Ua,
    callee: &Ua,
    user: &str,
    call_id: &str,
    tag: &str,
) -> Vec<u8> {
    caller
        .send(s.udp, &invite(caller, s.udp, user, call_id, ""))
        .await;
    let inv = callee
        .expect(2000, |m| m.method() == Some(Method::Invite))
        .await;
    let im = Message::parse(&inv).unwrap();
    callee
        .send_raw(
            s.udp,
            &response_to(&im, 180, "Ringing", Some(tag)).to_bytes(),
        )
        .await;
    caller.expect(2000, |m| m.status() == Some(180)).await;
    inv
}

/// A UA bound on loopback and registered at `s` as `user` (no auth) with its own address as
/// contact.
async fn registered_callee(s: &Running, user: &str, call_id: &str) -> Ua {
    let callee = Ua::bind("127.0.0.1").await;
    let contact = contact_line(&callee, user, "");
    callee
        .send(
            s.udp,
            &register(&callee, s.udp, user, call_id, 1, &contact, ""),
        )
        .await;
    assert_eq!(
        status_of(&callee.expect(2000, |m| m.status().is_some()).await),
        200
    );
    callee
}

fn invite(
    from: &Ua,
    server: std::net::SocketAddr,
    to_user: &str,
    branch: &str,
    extra: &str,
) -> String {
    format!(
        "INVITE sip:{to_user}@{server} SIP/2.0\n\
Via: SIP/2.0/UDP {a};branch=z9hG4bK{branch}\n\
Max-Forwards: 70\n\
From: <sip:caller@{ip}>;tag=c{branch}\n\
To: <sip:{to_user}@{ip}>\n\
Call-ID: call-{branch}\n\
CSeq: 1 INVITE\n\
Contact: <sip:caller@{a}>\n\
{extra}Content-Length: 0\n\n",
        ip = server.ip(),
        a = from.addr
    )
}

#[tokio::test]
async fn proxy_invite_busy_and_cancel_paths() {
    let s = start(base_config()).await;
    let callee = registered_callee(&s, "bob", "reg").await;
    let caller = Ua::bind("127.0.0.1").await;

    // Unregistered user: 480 (no static route).
    caller
        .send(s.udp, &invite(&caller, s.udp, "nobody", "x0", ""))
        .await;
    let r = caller
        .expect(2000, |m| m.status().is_some_and(|c| c >= 200))
        .await;
    assert_eq!(status_of(&r), 480);
    // Max-Forwards 0 → 483.
    caller
        .send(
            s.udp,
            &invite(&caller, s.udp, "bob", "x1", "").replace("Max-Forwards: 70", "Max-Forwards: 0"),
        )
        .await;
    let r = caller
        .expect(2000, |m| m.status().is_some_and(|c| c >= 200))
        .await;
    assert_eq!(status_of(&r), 483);

    // Busy: 100 Trying upstream, INVITE downstream with our Via, Record-Route, Max-Forwards 69.
    caller
        .send(s.udp, &invite(&caller, s.udp, "bob", "x2", ""))
        .await;
    let trying = caller.expect(2000, |m| m.status().is_some()).await;
    assert_eq!(status_of(&trying), 100);
    let inv = callee
        .expect(2000, |m| m.method() == Some(Method::Invite))
        .await;
    let im = Message::parse(&inv).unwrap();
    assert_eq!(im.vias().count(), 2);
    assert_eq!(im.max_forwards(), Some(69));
    assert_eq!(
        im.request_uri(),
        Some(format!("sip:bob@{}", callee.addr).as_str()),
        "R-URI from the location service"
    );
    assert!(im.record_routes().next().unwrap().uri.contains(";lr"));
    let busy = response_to(&im, 486, "Busy Here", Some("callee1")).to_bytes();
    callee.send_raw(s.udp, &busy).await;
    let r = caller.expect(2000, |m| m.status() == Some(486)).await;
    assert_eq!(
        Message::parse(&r).unwrap().vias().count(),
        1,
        "proxy Via removed"
    );
    // The proxy ACKs the 486 hop by hop (§17.1.1.3).
    let ack = callee
        .expect(2000, |m| m.method() == Some(Method::Ack))
        .await;
    assert_eq!(
        Message::parse(&ack).unwrap().top_via().unwrap().branch(),
        im.top_via().unwrap().branch()
    );

    // CANCEL: forwarded with the INVITE's branch; the 487 flows back.
    let inv = ring(&s, &caller, &callee, "bob", "x3", "callee2").await;
    let im = Message::parse(&inv).unwrap();
    let cancel = invite(&caller, s.udp, "bob", "x3", "")
        .replace("INVITE sip", "CANCEL sip")
        .replace("1 INVITE", "1 CANCEL");
    caller.send(s.udp, &cancel).await;
    let ok = caller
        .expect(2000, |m| m.cseq().is_ok_and(|c| c.method == Method::Cancel))
        .await;
    assert_eq!(status_of(&ok), 200);
    let c = callee
        .expect(2000, |m| m.method() == Some(Method::Cancel))
        .await;
    let cm = Message::parse(&c).unwrap();
    assert_eq!(
        cm.top_via().unwrap().branch(),
        im.top_via().unwrap().branch(),
        "§16.10"
    );
    callee
        .send_raw(
            s.udp,
            &response_to(&cm, 200, "OK", Some("callee2")).to_bytes(),
        )
        .await;
    callee
        .send_raw(
            s.udp,
            &response_to(&im, 487, "Request Terminated", Some("callee2")).to_bytes(),
        )
        .await;
    caller.expect(2000, |m| m.status() == Some(487)).await;

    // CANCEL for nothing → 481.
    let stray = invite(&caller, s.udp, "bob", "x9", "")
        .replace("INVITE sip", "CANCEL sip")
        .replace("1 INVITE", "1 CANCEL");
    caller.send(s.udp, &stray).await;
    assert_eq!(
        status_of(&caller.expect(2000, |m| m.status().is_some()).await),
        481
    );
    s.stop().await;
}

#[tokio::test]
async fn malformed_input_gets_400_or_silence_and_server_survives() {
    let s = start(base_config()).await;
    let ua = Ua::bind("127.0.0.1").await;
    // A request whose CSeq method mismatches (RFC 4475 mismatch01): 400 with the headers copied.
    ua.send(s.udp, "OPTIONS sip:x@127.0.0.1 SIP/2.0\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKm1\nFrom: <sip:a@b>;tag=1\nTo: <sip:x@127.0.0.1>\nCall-ID: m1\nCSeq: 1 INVITE\nMax-Forwards: 70\nContent-Length: 0\n\n").await;
    let r = ua.expect(2000, |m| m.status().is_some()).await;
    assert_eq!(status_of(&r), 400);
    // Unknown version → 505.
    ua.send(s.udp, "OPTIONS sip:x@127.0.0.1 SIP/3.0\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKm2\nFrom: <sip:a@b>;tag=1\nTo: <sip:x@127.0.0.1>\nCall-ID: m2\nCSeq: 1 OPTIONS\nContent-Length: 0\n\n").await;
    assert_eq!(
        status_of(&ua.expect(2000, |m| m.status().is_some()).await),
        505
    );
    // Garbage and a malformed response: silence.
    for junk in [
        &b"\x00\x01\x02garbage"[..],
        b"SIP/2.0 999999 x\r\n\r\n",
        &[0xffu8; 3000],
    ] {
        ua.send_raw(s.udp, junk).await;
    }
    assert!(ua.recv(300).await.is_none());
    // Still alive.
    ua.send(s.udp, &format!("OPTIONS sip:{} SIP/2.0\nVia: SIP/2.0/UDP {};branch=z9hG4bKm3\nFrom: <sip:a@b>;tag=1\nTo: <sip:{}>\nCall-ID: m3\nCSeq: 1 OPTIONS\nMax-Forwards: 70\nContent-Length: 0\n\n", s.udp, ua.addr, s.udp)).await;
    assert_eq!(
        status_of(&ua.expect(2000, |m| m.status().is_some()).await),
        200
    );
    assert!(s.metrics.parse_errors.get() >= 4);
    s.stop().await;
}

#[tokio::test]
async fn register_flood_from_one_source_is_throttled_not_others() {
    let mut cfg = base_config();
    cfg.limits.register_rate = 5.0;
    cfg.limits.burst = 5.0;
    let s = start(cfg).await;
    let flood = Ua::bind("127.0.0.1").await;
    for i in 0..40 {
        let c = contact_line(&flood, "f", "");
        flood
            .send(
                s.udp,
                &register(&flood, s.udp, "f", &format!("fl{i}"), 1, &c, ""),
            )
            .await;
    }
    let mut ok = 0;
    let mut limited = 0;
    while let Some(b) = flood.recv(500).await {
        let m = Message::parse(&b).unwrap();
        match m.status() {
            Some(200) => ok += 1,
            Some(503) => {
                assert!(
                    m.header_value(HeaderName::RetryAfter).is_some(),
                    "503 carries Retry-After"
                );
                limited += 1;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(limited >= 30, "flood throttled: ok={ok} limited={limited}");
    assert!((5..10).contains(&ok), "burst let through: {ok}");
    // Another source registers fine meanwhile.
    let other = Ua::bind("127.0.0.2").await;
    let c = contact_line(&other, "g", "");
    other
        .send(s.udp, &register(&other, s.udp, "g", "other1", 1, &c, ""))
        .await;
    assert_eq!(
        status_of(&other.expect(2000, |m| m.status().is_some()).await),
        200
    );
    s.stop().await;
}

#[tokio::test]
async fn tcp_framing_limits_and_idle_close() {
    let mut cfg = base_config();
    cfg.limits.tcp_idle = Duration::from_secs(1);
    let s = start(cfg).await;
    let tcp = s.tcp.unwrap();
    let mut c = tokio::net::TcpStream::connect(tcp).await.unwrap();
    let local = c.local_addr().unwrap();
    // Two REGISTERs in one write, split oddly: both answered in order.
    let one = |cseq: u32| {
        format!(
            "REGISTER sip:{tcp} SIP/2.0\r\nVia: SIP/2.0/TCP {local};branch=z9hG4bKt{cseq}\r\nMax-Forwards: 70\r\nFrom: <sip:t@127.0.0.1>;tag=t\r\nTo: <sip:t@127.0.0.1>\r\nCall-ID: tcp1\r\nCSeq: {cseq} REGISTER\r\nContact: <sip:t@{local};transport=tcp>\r\nContent-Length: 0\r\n\r\n"
        )
    };
    let both = format!("{}{}", one(1), one(2));
    let (a, b) = both.as_bytes().split_at(101);
    c.write_all(a).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    c.write_all(b).await.unwrap();
    let mut got = Vec::new();
    let mut buf = vec![0u8; 8192];
    while got.windows(4).filter(|w| w == b"\r\n\r\n").count() < 2 {
        let n = tokio::time::timeout(Duration::from_secs(3), c.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0);
        got.extend_from_slice(&buf[..n]);
    }
    assert_eq!(
        got.windows(15).filter(|w| w == b"SIP/2.0 200 OK\r").count(),
        2
    );
    // Idle: closed after ~1 s.
    let n = tokio::time::timeout(Duration::from_secs(4), c.read(&mut buf))
        .await
        .expect("closed in time")
        .unwrap();
    assert_eq!(n, 0);
    // An oversized Content-Length closes the connection.
    let mut c = tokio::net::TcpStream::connect(tcp).await.unwrap();
    c.write_all(b"MESSAGE sip:a@b SIP/2.0\r\nContent-Length: 99999999\r\n\r\n")
        .await
        .unwrap();
    let n = tokio::time::timeout(Duration::from_secs(3), c.read(&mut buf))
        .await
        .expect("closed")
        .unwrap_or(0);
    assert_eq!(n, 0);
    s.stop().await;
}

/// A SIP client on one TCP connection: writes messages, reads them framed by Content-Length.
struct TcpUa {
    conn: tokio::net::TcpStream,
    addr: std::net::SocketAddr,
    buf: Vec<u8>,
}

impl TcpUa {
    async fn connect(server: std::net::SocketAddr) -> TcpUa {
        let conn = tokio::net::TcpStream::connect(server).await.unwrap();
        let addr = conn.local_addr().unwrap();
        TcpUa {
            conn,
            addr,
            buf: Vec::new(),
        }
    }

    async fn send(&mut self, msg: &str) {
        let wire = msg.replace("\r\n", "\n").replace('\n', "\r\n");
        self.conn.write_all(wire.as_bytes()).await.unwrap();
    }

    /// The next message within `ms`, or None (bodies are empty here).
    async fn try_next(&mut self, ms: u64) -> Option<Vec<u8>> {
        let deadline = tokio::time::Instant::now() + Duration::from_millis(ms);
        loop {
            if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                return Some(self.buf.drain(..end + 4).collect());
            }
            let mut chunk = [0u8; 4096];
            let n = tokio::time::timeout_at(deadline, self.conn.read(&mut chunk))
                .await
                .ok()?
                .ok()?;
            if n == 0 {
                return None;
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// The next message (bodies are empty here: each ends at the blank line).
    async fn next(&mut self) -> Vec<u8> {
        loop {
            if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                return self.buf.drain(..end + 4).collect();
            }
            let mut chunk = [0u8; 4096];
            let n = tokio::time::timeout(Duration::from_secs(3), self.conn.read(&mut chunk))
                .await
                .expect("a message within 3 s")
                .unwrap();
            assert!(n > 0, "sipd closed the connection");
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

/// A UDP phone calls a phone registered over TCP: the legs differ, so sipd record-routes twice
/// (RFC 5658 §3.2), the TCP side on top; each side's in-dialog requests then carry both Route
/// values, and sipd pops both and delivers over the other side's transport.
#[tokio::test]
async fn calls_between_udp_and_tcp_are_double_record_routed() {
    let s = start(base_config()).await;
    let tcp = s.tcp.unwrap();
    let mut bob = TcpUa::connect(tcp).await;
    let bob_contact = format!("sip:bob@{};transport=tcp", bob.addr);
    bob.send(&format!(
        "REGISTER sip:{tcp} SIP/2.0\n\
Via: SIP/2.0/TCP {b};branch=z9hG4bKdrr1\n\
Max-Forwards: 70\n\
From: <sip:bob@127.0.0.1>;tag=b1\n\
To: <sip:bob@127.0.0.1>\n\
Call-ID: drr-reg\n\
CSeq: 1 REGISTER\n\
Contact: <{bob_contact}>\n\
Content-Length: 0\n\n",
        b = bob.addr
    ))
    .await;
    assert_eq!(status_of(&bob.next().await), 200);

    let alice = Ua::bind("127.0.0.1").await;
    alice
        .send(s.udp, &invite(&alice, s.udp, "bob", "drr", ""))
        .await;
    let inv = loop {
        let m = bob.next().await;
        if Message::parse(&m).unwrap().method() == Some(Method::Invite) {
            break m;
        }
    };
    let im = Message::parse(&inv).unwrap();
    let rr: Vec<_> = im.record_routes().map(|r| r.uri.to_owned()).collect();
    assert_eq!(rr.len(), 2, "{rr:?}");
    // The TCP leg's value carries bob's flow token as its user part (RFC 5626 §5.3).
    let (token, tcp_rr) = rr[0]
        .strip_prefix("sip:")
        .and_then(|r| r.split_once('@'))
        .expect("a flow token in the TCP leg's Record-Route");
    assert_eq!(token.len(), 48, "{token}");
    assert_eq!(
        [tcp_rr.to_owned(), rr[1].clone()],
        [
            format!("{tcp};lr;transport=tcp"),
            format!("sip:{};lr", s.udp)
        ],
        "the leg towards bob (TCP) on top, alice's (UDP) below"
    );
    assert_eq!(im.top_via().unwrap().transport, "TCP");
    assert_eq!(
        format!(
            "{}:{}",
            im.top_via().unwrap().host,
            im.top_via().unwrap().port.unwrap()
        ),
        tcp.to_string(),
        "the TCP leg's sent-by is the TCP listener"
    );
    let mut ok = response_to(&im, 200, "OK", Some("bob1"));
    for r in &rr {
        ok.push("Record-Route", format!("<{r}>"));
    }
    ok.push("Contact", format!("<{bob_contact}>"));
    ok.push("Content-Length", "0");
    bob.send(&String::from_utf8(ok.to_bytes()).unwrap()).await;
    let r = alice.expect(2000, |m| m.status() == Some(200)).await;
    let to = Message::parse(&r)
        .unwrap()
        .header_value(HeaderName::To)
        .unwrap()
        .to_owned();

    // Alice's route set is the Record-Route list reversed (§12.1.2): her side first.
    let bye = format!(
        "BYE {bob_contact} SIP/2.0\n\
Via: SIP/2.0/UDP {a};branch=z9hG4bKdrrbye\n\
Max-Forwards: 70\n\
Route: <{r1}>, <{r0}>\n\
From: <sip:caller@127.0.0.1>;tag=cdrr\n\
To: {to}\n\
Call-ID: call-drr\n\
CSeq: 2 BYE\n\
Content-Length: 0\n\n",
        a = alice.addr,
        r1 = rr[1],
        r0 = rr[0]
    );
    alice.send(s.udp, &bye).await;
    let got = loop {
        let m = bob.next().await;
        if Message::parse(&m).unwrap().method() == Some(Method::Bye) {
            break m;
        }
    };
    let bm = Message::parse(&got).unwrap();
    assert_eq!(
        bm.routes().count(),
        0,
        "sipd popped both of its Route values"
    );
    assert_eq!(bm.request_uri(), Some(bob_contact.as_str()));

    // Bob's side: the Record-Route list in order (§12.1.1), then to alice over UDP.
    let mut bye_ok = response_to(&bm, 200, "OK", None);
    bye_ok.push("Content-Length", "0");
    bob.send(&String::from_utf8(bye_ok.to_bytes()).unwrap())
        .await;
    alice
        .expect(2000, |m| {
            m.status() == Some(200) && m.cseq().is_ok_and(|c| c.method == Method::Bye)
        })
        .await;
    s.stop().await;
}

/// REGISTER over a TCP connection `ua` for `user` with Contact `contact`.
async fn register_over_tcp(
    ua: &mut TcpUa,
    server: std::net::SocketAddr,
    user: &str,
    contact: &str,
) {
    ua.send(&format!(
        "REGISTER sip:{server} SIP/2.0\n\
Via: SIP/2.0/TCP {a};branch=z9hG4bKreg{user}\n\
Max-Forwards: 70\n\
From: <sip:{user}@127.0.0.1>;tag=r{user}\n\
To: <sip:{user}@127.0.0.1>\n\
Call-ID: reg-{user}\n\
CSeq: 1 REGISTER\n\
Contact: <{contact}>\n\
Content-Length: 0\n\n",
        a = ua.addr
    ))
    .await;
    assert_eq!(status_of(&ua.next().await), 200);
}

/// Issue 13 item 4: Mallory, a subscriber, registers her own AOR with a Contact naming Alice's
/// contact address (a NATed phone's private address both could claim). Alice's in-dialog BYE
/// (and the ACK before it) still reach Alice's connection: flows are keyed by the connection that
/// registered, and the Record-Route carries Alice's flow token. A forged token is refused with
/// 403, and once Alice's connection is gone her dialog's requests get 430 Flow Failed instead of
/// going anywhere else.
#[tokio::test]
async fn a_registered_contact_address_does_not_capture_another_phones_dialog() {
    let s = start(base_config()).await;
    let tcp = s.tcp.unwrap();
    // Both claim the same private contact address.
    let shared = "10.0.0.7:5060";
    let alice_contact = format!("sip:alice@{shared};transport=tcp");
    let mut alice = TcpUa::connect(tcp).await;
    register_over_tcp(&mut alice, tcp, "alice", &alice_contact).await;
    let mut mallory = TcpUa::connect(tcp).await;
    register_over_tcp(
        &mut mallory,
        tcp,
        "mallory",
        &format!("sip:mallory@{shared};transport=tcp"),
    )
    .await;

    let bob = Ua::bind("127.0.0.1").await;
    bob.send(s.udp, &invite(&bob, s.udp, "alice", "hij", ""))
        .await;
    let inv = loop {
        let m = alice.next().await;
        if Message::parse(&m).unwrap().method() == Some(Method::Invite) {
            break m;
        }
    };
    let im = Message::parse(&inv).unwrap();
    assert_eq!(im.record_routes().count(), 2, "one Record-Route per leg");
    // response_to copies the Record-Route values (§12.1.1).
    let mut ok = response_to(&im, 200, "OK", Some("al1"));
    ok.push("Contact", format!("<{alice_contact}>"));
    ok.push("Content-Length", "0");
    alice.send(&String::from_utf8(ok.to_bytes()).unwrap()).await;
    let r = bob.expect(2000, |m| m.status() == Some(200)).await;
    let m200 = Message::parse(&r).unwrap();
    let to = m200.header_value(HeaderName::To).unwrap().to_owned();
    // Bob's route set: the Record-Route list reversed (§12.1.2).
    let mut routes: Vec<String> = m200
        .record_routes()
        .map(|r| format!("<{}>", r.uri))
        .collect();
    assert_eq!(routes.len(), 2, "{routes:?}");
    routes.reverse();
    let bye = |cseq: u32, route: &str| {
        format!(
            "BYE {alice_contact} SIP/2.0\n\
Via: SIP/2.0/UDP {b};branch=z9hG4bKhijbye{cseq}\n\
Max-Forwards: 70\n\
Route: {route}\n\
From: <sip:caller@127.0.0.1>;tag=chij\n\
To: {to}\n\
Call-ID: call-hij\n\
CSeq: {cseq} BYE\n\
Content-Length: 0\n\n",
            b = bob.addr
        )
    };
    // The ACK for the 2xx (forwarded statelessly) takes the same way.
    let ack = bye(1, &routes.join(", ")).replace("BYE", "ACK");
    bob.send(s.udp, &ack).await;
    let got = alice.next().await;
    assert_eq!(
        Message::parse(&got).unwrap().method(),
        Some(Method::Ack),
        "alice got the ACK"
    );
    bob.send(s.udp, &bye(2, &routes.join(", "))).await;
    let got = loop {
        let m = alice.next().await;
        if Message::parse(&m).unwrap().method() == Some(Method::Bye) {
            break m;
        }
    };
    let bm = Message::parse(&got).unwrap();
    assert_eq!(bm.cseq().unwrap().seq, 2, "alice got her BYE");
    assert!(
        mallory.try_next(300).await.is_none(),
        "nothing of alice's dialog reached mallory's connection"
    );
    let mut bye_ok = response_to(&bm, 200, "OK", None);
    bye_ok.push("Content-Length", "0");
    alice
        .send(&String::from_utf8(bye_ok.to_bytes()).unwrap())
        .await;
    bob.expect(2000, |m| {
        m.status() == Some(200) && m.cseq().is_ok_and(|c| c.seq == 2)
    })
    .await;

    // A forged token (one digit of the tag changed): 403, delivered nowhere.
    let token_route = routes.last().unwrap().clone();
    let at = token_route.find('@').unwrap();
    let mut forged = token_route.clone().into_bytes();
    forged[at - 1] = if forged[at - 1] == b'0' { b'1' } else { b'0' };
    let forged = String::from_utf8(forged).unwrap();
    let mut forged_routes = routes.clone();
    *forged_routes.last_mut().unwrap() = forged;
    bob.send(s.udp, &bye(3, &forged_routes.join(", "))).await;
    let r = bob
        .expect(2000, |m| {
            m.status().is_some() && m.cseq().is_ok_and(|c| c.seq == 3)
        })
        .await;
    assert_eq!(status_of(&r), 403, "{}", String::from_utf8_lossy(&r));

    // Alice's connection closes: her flow is gone, and so is the dialog's way to her. The
    // connection gauge drops after sipd's loop was told, so a BYE sent then is handled after.
    drop(alice);
    for _ in 0..200 {
        if s.metrics.connections.get() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        s.metrics.connections.get(),
        1,
        "only mallory's connection is left"
    );
    bob.send(s.udp, &bye(4, &routes.join(", "))).await;
    let r = bob
        .expect(2000, |m| {
            m.status().is_some_and(|c| c >= 200) && m.cseq().is_ok_and(|c| c.seq == 4)
        })
        .await;
    assert_eq!(
        status_of(&r),
        430,
        "Flow Failed once alice's connection is closed"
    );
    assert!(
        mallory.try_next(300).await.is_none(),
        "still nothing for mallory"
    );
    s.stop().await;
}

#[tokio::test]
async fn unanswered_invite_is_retransmitted_then_408() {
    let mut cfg = base_config();
    cfg.timers.t1 = Duration::from_millis(20); // Timer B = 64·T1 = 1.28 s
    cfg.timers.t2 = Duration::from_millis(80);
    let s = start(cfg).await;
    let callee = registered_callee(&s, "dead", "rd").await;
    let caller = Ua::bind("127.0.0.1").await;
    caller
        .send(s.udp, &invite(&caller, s.udp, "dead", "t1", ""))
        .await;
    let mut invites = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_millis(1000);
    while tokio::time::Instant::now() < deadline {
        if let Some(b) = callee.recv(100).await
            && Message::parse(&b).is_ok_and(|m| m.method() == Some(Method::Invite))
        {
            invites += 1;
        }
    }
    assert!(invites >= 4, "Timer A retransmissions: {invites}");
    let r = caller
        .expect(3000, |m| m.status().is_some_and(|c| c >= 200))
        .await;
    assert_eq!(status_of(&r), 408);
    s.stop().await;
}

/// A subscriber store that counts its look-ups, answers "no such user" at once, and holds the
/// look-up of `slow` until the test adds a permit to `gate`.
struct CountingStore {
    lookups: std::sync::atomic::AtomicUsize,
    gate: tokio::sync::Semaphore,
}

impl Default for CountingStore {
    fn default() -> Self {
        CountingStore {
            lookups: std::sync::atomic::AtomicUsize::new(0),
            gate: tokio::sync::Semaphore::new(0),
        }
    }
}

impl CountingStore {
    fn lookups(&self) -> usize {
        self.lookups.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl chaincall_sipd::db::CredentialStore for CountingStore {
    fn subscriber<'a>(
        &'a self,
        username: &'a str,
        _domain: &'a str,
    ) -> chaincall_sipd::db::BoxFuture<
        'a,
        Result<Option<chaincall_sipd::db::Subscriber>, chaincall_sipd::db::DbError>,
    > {
        Box::pin(async move {
            self.lookups
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            if username == "slow" {
                let _ = self.gate.acquire().await;
            }
            Ok(None)
        })
    }
}

/// Digest auth over `store`, a throw-away SQLite file for `[auth] database` (not read).
async fn start_counting(
    configure: impl FnOnce(&mut chaincall_sipd::Config),
) -> (tempfile::TempDir, std::sync::Arc<CountingStore>, Running) {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = base_config();
    cfg.auth.mode = chaincall_sipd::AuthMode::Digest;
    cfg.auth.database = format!("sqlite://{}", dir.path().join("unused.db").display());
    configure(&mut cfg);
    let store = std::sync::Arc::new(CountingStore::default());
    let s = start_with_store(cfg, store.clone()).await;
    (dir, store, s)
}

/// A REGISTER carrying SHA-256 digest credentials for `user` (a made-up nonce: the look-up comes
/// first, the check after).
fn register_with_credentials(
    ua: &Ua,
    server: std::net::SocketAddr,
    user: &str,
    call_id: &str,
) -> String {
    let auth = format!(
        "Authorization: Digest username=\"{user}\", realm=\"{ip}\", nonce=\"{nonce}\", uri=\"sip:{server}\", response=\"{resp}\", algorithm=SHA-256\n",
        ip = server.ip(),
        nonce = "0".repeat(48),
        resp = "0".repeat(64),
    );
    let contact = contact_line(ua, user, "");
    register(ua, server, user, call_id, 1, &contact, &auth)
}

/// Issue 13 item 6: a flood of REGISTERs with distinct usernames from one source causes only as
/// many subscriber look-ups as the per-source rate limit lets through (its burst, here 10); the
/// rest are answered 503 before any look-up.
#[tokio::test]
async fn a_username_flood_costs_only_the_rate_limits_worth_of_lookups() {
    let (_dir, store, s) = start_counting(|cfg| {
        cfg.limits.register_rate = 0.001; // no refill within the test
        cfg.limits.burst = 10.0;
    })
    .await;
    let ua = Ua::bind("127.0.0.1").await;
    let total = 300;
    let (mut got, mut unavailable) = (0, 0);
    for chunk in 0..(total / 50) {
        for i in 0..50 {
            let n = chunk * 50 + i;
            ua.send(
                s.udp,
                &register_with_credentials(&ua, s.udp, &format!("u{n}"), &format!("fl{n}")),
            )
            .await;
        }
        // Drain this chunk's answers (bounded).
        while got < (chunk + 1) * 50 {
            let Some(b) = ua.recv(2000).await else { break };
            if let Ok(m) = Message::parse(&b)
                && let Some(code) = m.status()
            {
                got += 1;
                if code == 503 {
                    unavailable += 1;
                }
            }
        }
    }
    assert!(got >= total - 10, "answers arrived: {got} of {total}");
    assert!(
        store.lookups() <= 10,
        "{} look-ups for {total} REGISTERs; the burst is 10",
        store.lookups()
    );
    assert!(
        unavailable >= got - 10,
        "{unavailable} of {got} answered 503"
    );
    assert_eq!(s.metrics.credential_lookups.get() as usize, store.lookups());
    // In-dialog INVITEs (To-tag: outside the INVITE limit) with proxy credentials for new users
    // get no look-up either once the source's bucket is empty.
    let before = store.lookups();
    for n in 0..50 {
        let reinvite = invite(&ua, s.udp, "bob", &format!("ri{n}"), &format!(
            "Proxy-Authorization: Digest username=\"r{n}\", realm=\"127.0.0.1\", nonce=\"{}\", uri=\"sip:bob@{}\", response=\"{}\", algorithm=SHA-256\n",
            "0".repeat(48),
            s.udp,
            "0".repeat(64)
        ))
        .replace("To: <sip:bob@127.0.0.1>", "To: <sip:bob@127.0.0.1>;tag=dlg");
        ua.send(s.udp, &reinvite).await;
    }
    let mut reinvite_answers = 0;
    while reinvite_answers < 50 {
        let Some(b) = ua.recv(2000).await else { break };
        if Message::parse(&b).is_ok_and(|m| m.status() == Some(503)) {
            reinvite_answers += 1;
        }
    }
    assert!(
        reinvite_answers >= 40,
        "{reinvite_answers} re-INVITEs answered 503"
    );
    assert_eq!(
        store.lookups(),
        before,
        "no look-up for rate-limited re-INVITEs"
    );
    // Each answered request was counted once: refused ones too, parked ones when handled.
    let counted = s.metrics.requests.get();
    let (answered, sent) = ((got + reinvite_answers) as u64, total as u64 + 50);
    assert!(
        (answered..=sent).contains(&counted),
        "sipd_requests_total {counted}, answers {answered}, sent {sent}"
    );
    s.stop().await;
}

/// Issue 13 item 6: a look-up that hangs does not stall the server. While `slow`'s look-up is
/// held: OPTIONS is answered, another user's REGISTER gets its 401, further requests for `slow`
/// share the one look-up (at most 8 wait; the rest get 503 at once), and the waiting requests get
/// 503 when `lookup_timeout_ms` has passed.
#[tokio::test]
async fn a_slow_lookup_is_parked_and_other_traffic_proceeds() {
    let (_dir, store, s) =
        start_counting(|cfg| cfg.auth.lookup_timeout = Duration::from_millis(1500)).await;
    let ua = Ua::bind("127.0.0.1").await;
    for i in 0..10 {
        ua.send(
            s.udp,
            &register_with_credentials(&ua, s.udp, "slow", &format!("slow{i}")),
        )
        .await;
    }
    for _ in 0..100 {
        if store.lookups() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(store.lookups(), 1, "one look-up for the ten REGISTERs");
    // The two beyond the per-user queue of 8 are refused at once.
    for _ in 0..2 {
        let r = ua
            .expect(2000, |m| {
                m.status().is_some() && m.call_id().is_ok_and(|c| c.starts_with("slow"))
            })
            .await;
        assert_eq!(status_of(&r), 503);
    }
    assert_eq!(s.metrics.lookups_pending.get(), 8);
    ua.send(s.udp, &format!("OPTIONS sip:{} SIP/2.0\nVia: SIP/2.0/UDP {};branch=z9hG4bKslowopt\nFrom: <sip:a@b>;tag=1\nTo: <sip:{}>\nCall-ID: slow-opt\nCSeq: 1 OPTIONS\nMax-Forwards: 70\nContent-Length: 0\n\n", s.udp, ua.addr, s.udp)).await;
    let r = ua
        .expect(2000, |m| m.call_id().is_ok_and(|c| c == "slow-opt"))
        .await;
    assert_eq!(
        status_of(&r),
        200,
        "OPTIONS answered while the look-up hangs"
    );
    ua.send(
        s.udp,
        &register_with_credentials(&ua, s.udp, "fast", "fast1"),
    )
    .await;
    let r = ua
        .expect(2000, |m| m.call_id().is_ok_and(|c| c == "fast1"))
        .await;
    assert_eq!(
        status_of(&r),
        401,
        "another user's REGISTER is handled meanwhile"
    );
    // The parked eight time out with 503.
    let mut timed_out = 0;
    while timed_out < 8 {
        let r = ua
            .expect(5000, |m| m.call_id().is_ok_and(|c| c.starts_with("slow")))
            .await;
        assert_eq!(status_of(&r), 503);
        timed_out += 1;
    }
    assert_eq!(s.metrics.lookups_pending.get(), 0);
    store.gate.add_permits(100);
    s.stop().await;
}

/// Issue 13 item 7: sipd is no open relay. An outsider's `MESSAGE sip:x@127.0.0.1:<port>` is
/// refused with 403 and counted, and nothing reaches the listener on that port; a registered
/// user may still send there.
#[tokio::test]
async fn an_outsider_cannot_relay_to_an_ip_literal() {
    let s = start(base_config()).await;
    let listener = Ua::bind("127.0.0.1").await;
    let message = |from: &Ua, id: &str| {
        format!(
            "MESSAGE sip:x@{l} SIP/2.0\n\
Via: SIP/2.0/UDP {a};branch=z9hG4bKrelay{id}\n\
Max-Forwards: 70\n\
From: <sip:outsider@198.51.100.1>;tag=o{id}\n\
To: <sip:x@{l}>\n\
Call-ID: relay-{id}\n\
CSeq: 1 MESSAGE\n\
Content-Length: 0\n\n",
            l = listener.addr,
            a = from.addr
        )
    };
    let outsider = Ua::bind("127.0.0.1").await;
    let r = outsider.ask(s.udp, &message(&outsider, "1")).await;
    assert_eq!(status_of(&r), 403, "{}", String::from_utf8_lossy(&r));
    assert!(
        listener.recv(300).await.is_none(),
        "nothing reached the listener"
    );
    assert_eq!(s.metrics.relay_refused.get(), 1);
    let text = s.metrics.render();
    assert!(text.contains("sipd_relay_refused_total 1"), "{text}");

    // A registered user is a local user: its request goes through.
    let local = registered_callee(&s, "carol", "relay-reg").await;
    local.send(s.udp, &message(&local, "2")).await;
    let got = listener.expect(2000, |m| m.method().is_some()).await;
    assert_eq!(Message::parse(&got).unwrap().call_id().unwrap(), "relay-2");
    assert_eq!(s.metrics.relay_refused.get(), 1);
    s.stop().await;
}

/// With digest auth, a user of our domain who is not registered may still send to a target the
/// request names (here an IP literal) once proxy-authenticated: 407, then the answer goes
/// through; a wrong password does not.
#[tokio::test]
async fn an_authenticated_local_user_may_send_to_an_ip_literal() {
    let (_dir, _, s) = start_with_alice(|_| {}).await;
    let listener = Ua::bind("127.0.0.1").await;
    let alice = Ua::bind("127.0.0.1").await;
    let ruri = format!("sip:x@{}", listener.addr);
    let message = |cseq: u32, auth: &str| {
        format!(
            "MESSAGE {ruri} SIP/2.0\n\
Via: SIP/2.0/UDP {a};branch=z9hG4bKlocal{cseq}\n\
Max-Forwards: 70\n\
From: <sip:alice@127.0.0.1>;tag=al\n\
To: <sip:x@{l}>\n\
Call-ID: local-relay\n\
CSeq: {cseq} MESSAGE\n\
{auth}Content-Length: 0\n\n",
            l = listener.addr,
            a = alice.addr
        )
    };
    let r = alice.ask(s.udp, &message(1, "")).await;
    let m = Message::parse(&r).unwrap();
    assert_eq!(m.status(), Some(407), "{}", String::from_utf8_lossy(&r));
    let ch = Challenge::parse(
        &m.auth_headers(HeaderName::ProxyAuthenticate)
            .next()
            .unwrap(),
    )
    .unwrap();
    let wrong = ch.answer("MESSAGE", &ruri, "alice", "guess", "c1", 1);
    alice
        .send(
            s.udp,
            &message(2, &format!("Proxy-Authorization: {wrong}\n")),
        )
        .await;
    let r = alice
        .expect(2000, |m| {
            m.status().is_some() && m.cseq().is_ok_and(|c| c.seq == 2)
        })
        .await;
    assert_eq!(status_of(&r), 407);
    assert!(
        listener.recv(300).await.is_none(),
        "nothing relayed on a wrong password"
    );
    let good = ch.answer("MESSAGE", &ruri, "alice", "s3cret", "c1", 2);
    alice
        .send(
            s.udp,
            &message(3, &format!("Proxy-Authorization: {good}\n")),
        )
        .await;
    let got = listener.expect(2000, |m| m.method().is_some()).await;
    assert_eq!(Message::parse(&got).unwrap().cseq().unwrap().seq, 3);
    assert_eq!(s.metrics.relay_refused.get(), 0);
    s.stop().await;
}

/// Issue 14: an INVITE from another domain whose From claims one of our subscribers (alice) is
/// refused with 403 and never reaches the callee under the default policy; under `mark` it is
/// forwarded with `verstat=TN-Validation-Failed` in the From user part (replacing any verstat the
/// caller wrote). A foreign caller that is not a subscriber is routed as before. Neither keeps a
/// P-Asserted-Identity: sipd authenticated none of them.
#[tokio::test]
async fn a_foreign_domain_claiming_a_local_number_is_refused_or_marked() {
    let callee = Ua::bind("127.0.0.1").await;
    let route = callee.addr;
    let foreign = |caller: &Ua, s: &Running, from: &str, branch: &str| {
        invite(caller, s.udp, "bob", branch, "").replace(
            &format!("From: <sip:caller@{}>;tag=c{branch}", s.udp.ip()),
            &format!(
                "From: \"Alice\" <{from}>;tag=c{branch}\nP-Asserted-Identity: <sip:alice@{}>",
                s.udp.ip()
            ),
        )
    };
    let final_status = |r: Vec<u8>| status_of(&r);

    let (_dir, _, s) = start_with_alice(|c| c.static_route = Some(route)).await;
    let caller = Ua::bind("127.0.0.1").await;
    caller
        .send(s.udp, &foreign(&caller, &s, "sip:alice@evil.example", "f1"))
        .await;
    let r = caller
        .expect(2000, |m| m.status().is_some_and(|c| c >= 200))
        .await;
    assert_eq!(final_status(r.clone()), 403);
    assert!(
        String::from_utf8_lossy(&r).contains("foreign domain claims a local number"),
        "{}",
        String::from_utf8_lossy(&r)
    );
    assert!(callee.recv(300).await.is_none(), "nothing reached bob");
    assert_eq!(s.metrics.foreign_local_number.get(), 1);
    assert!(
        s.metrics
            .render()
            .contains("sipd_foreign_local_number_total 1")
    );
    // Not one of ours: routed as before, without the identity it asserted.
    caller
        .send(
            s.udp,
            &foreign(&caller, &s, "sip:mallory@evil.example", "f2"),
        )
        .await;
    let got = callee
        .expect(2000, |m| m.method() == Some(Method::Invite))
        .await;
    let m = Message::parse(&got).unwrap();
    assert_eq!(m.from().unwrap().uri, "sip:mallory@evil.example");
    assert!(
        !String::from_utf8_lossy(&got).contains("P-Asserted-Identity"),
        "{}",
        String::from_utf8_lossy(&got)
    );
    assert_eq!(s.metrics.foreign_local_number.get(), 1);
    s.stop().await;

    let (_dir, _, s) = start_with_alice(|c| {
        c.static_route = Some(route);
        c.policy.foreign_caller_with_local_number =
            chaincall_sipd::config::ForeignCallerPolicy::Mark;
    })
    .await;
    caller
        .send(
            s.udp,
            &foreign(
                &caller,
                &s,
                "sip:alice;verstat=TN-Validation-Passed@evil.example",
                "f3",
            ),
        )
        .await;
    let got = callee
        .expect(2000, |m| m.method() == Some(Method::Invite))
        .await;
    let m = Message::parse(&got).unwrap();
    let from = m.from().unwrap();
    assert_eq!(
        from.uri,
        "sip:alice;verstat=TN-Validation-Failed@evil.example"
    );
    assert_eq!((from.display, from.tag()), (Some("Alice"), Some("cf3")));
    assert!(!String::from_utf8_lossy(&got).contains("P-Asserted-Identity"));
    assert_eq!(s.metrics.foreign_local_number.get(), 1);
    s.stop().await;
}
