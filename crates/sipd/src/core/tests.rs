//! Unit tests of the core's parts that need its private state.

use super::*;
use chaincall_sip::digest::{self, Algorithm};

/// alice's REGISTER from `src` with Call-ID `call_id` (also naming its branch and tag) and
/// the header lines `extra`.
fn alice_register(domain: &str, src: SocketAddr, call_id: &str, extra: &str) -> String {
    format!(
        "REGISTER sip:{domain} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {src};branch=z9hG4bK{call_id}\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:alice@{domain}>;tag={call_id}\r\n\
         To: <sip:alice@{domain}>\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: 1 REGISTER\r\n\
         Contact: <sip:alice@{src}>\r\n\
         {extra}Content-Length: 0\r\n\r\n"
    )
}

/// Issue 13 item 6: the credentials cache never holds more than
/// `[auth] credentials_cache_entries`, however many usernames are looked up, and keeps the
/// most recent answers.
#[test]
fn the_credentials_cache_stays_within_its_bound() {
    let mut cfg = Config::default();
    cfg.auth.credentials_cache_entries = 100;
    let now = Instant::now();
    let mut core = Core::new(&cfg, [9; 32], Arc::new(Metrics::default()), now).unwrap();
    for i in 0..10_000 {
        core.insert_credentials(&format!("u{i}"), "d", None, now, 0);
        assert!(core.credentials_cached() <= 100);
    }
    assert_eq!(core.credentials_cached(), 100);
    assert!(
        core.auth
            .creds
            .contains(&("u9999".to_owned(), "d".to_owned()))
    );
    assert!(!core.auth.creds.contains(&("u0".to_owned(), "d".to_owned())));
}

/// The core's one event: REGISTERs answering a challenge for a subscriber not in the cache
/// are parked and `poll_output` yields `Need::Credentials` once for both, then `Timeout`;
/// when the look-up fails each gets its 503 as a `Transmit` to its sender.
#[test]
fn an_uncached_subscriber_is_one_event_and_the_answers_are_transmits() {
    let mut cfg = Config::default();
    cfg.auth.mode = AuthMode::Digest;
    let now = Instant::now();
    let mut core = Core::new(&cfg, [9; 32], Arc::new(Metrics::default()), now).unwrap();
    let domain = core.domain().to_owned();
    let src: SocketAddr = "192.0.2.7:5060".parse().unwrap();
    let response = "0".repeat(64);
    for n in 1..=2 {
        let register = alice_register(
            &domain,
            src,
            &format!("core-{n}"),
            &format!(
                "Authorization: Digest username=\"alice\", realm=\"{domain}\", \
                 nonce=\"00\", uri=\"sip:{domain}\", response=\"{response}\", \
                 algorithm=SHA-256\r\n"
            ),
        );
        core.handle(register.as_bytes(), src, Transport::Udp, now, 0);
    }
    let out = chaincall_io::drain(|| core.poll_output());
    let need = Need::Credentials {
        username: "alice".into(),
        domain: domain.clone(),
    };
    assert_eq!(out.events, [need]);
    assert!(
        out.transmits.is_empty(),
        "nothing is answered before the look-up"
    );
    assert!(out.timeout.is_some());
    core.lookup_failed("alice", &domain, now);
    let out = chaincall_io::drain(|| core.poll_output());
    assert!(out.events.is_empty());
    assert_eq!(out.transmits.len(), 2);
    for t in &out.transmits {
        assert_eq!(t.destination, src);
        assert!(t.contents.starts_with(b"SIP/2.0 503 "), "{t:?}");
    }
}

/// The algorithms of the challenges a REGISTER without credentials and with this User-Agent
/// (none when `None`) gets from `core`, in order.
fn challenged_with(core: &mut Core, user_agent: Option<&str>, n: usize) -> Vec<Algorithm> {
    let domain = core.domain().to_owned();
    let src: SocketAddr = "192.0.2.8:5060".parse().unwrap();
    let ua = user_agent.map_or(String::new(), |u| format!("User-Agent: {u}\r\n"));
    let register = alice_register(&domain, src, &format!("ua-{n}"), &ua);
    let now = Instant::now();
    core.handle(register.as_bytes(), src, Transport::Udp, now, 0);
    let out = chaincall_io::drain(|| core.poll_output());
    assert_eq!(out.transmits.len(), 1, "{user_agent:?}");
    let m = Message::parse(&out.transmits[0].contents).unwrap();
    assert_eq!(m.status(), Some(401));
    m.auth_headers(HeaderName::WwwAuthenticate)
        .map(|h| digest::Challenge::parse(&h).unwrap().algorithm)
        .collect()
}

/// Issue 16 item 5: at the default settings a client whose User-Agent product is listed in
/// `[auth] md5_only_user_agents` (baresip, which gives up on any SHA-256 challenge) is
/// challenged with MD5 alone; every other client, chaincall's own phone included, still gets
/// SHA-256 first, then MD5 (RFC 8760 §2.4).
#[test]
fn listed_user_agents_get_md5_only_and_the_rest_sha256_first() {
    let mut cfg = Config::default();
    cfg.auth.mode = AuthMode::Digest;
    let mut core = Core::new(&cfg, [9; 32], Arc::new(Metrics::default()), Instant::now()).unwrap();
    let both = [Algorithm::Sha256, Algorithm::Md5];
    let cases: [(Option<&str>, &[Algorithm]); 8] = [
        (Some("baresip v1.0.0 (x86_64/linux)"), &[Algorithm::Md5]),
        (Some("BareSIP/2.0"), &[Algorithm::Md5]),
        (Some("chaincall/0.1.0"), &both),
        (None, &both),
        (Some(""), &both),
        // A longer product or one named later is another client.
        (Some("baresip-fork/1.0"), &both),
        (Some("Linphone/5.2 (baresip)"), &both),
        (Some("notbaresip 1.0"), &both),
    ];
    for (n, (ua, want)) in cases.into_iter().enumerate() {
        assert_eq!(challenged_with(&mut core, ua, n), want, "{ua:?}");
    }
    // MD5 is never added: without it in `algorithms` a listed client gets the configured list.
    cfg.auth.algorithms = vec![Algorithm::Sha256];
    let mut core = Core::new(&cfg, [9; 32], Arc::new(Metrics::default()), Instant::now()).unwrap();
    let got = challenged_with(&mut core, Some("baresip v1.0.0"), 99);
    assert_eq!(got, [Algorithm::Sha256]);
    // An empty list turns the policy off.
    cfg.auth.algorithms = both.to_vec();
    cfg.auth.md5_only_user_agents.clear();
    let mut core = Core::new(&cfg, [9; 32], Arc::new(Metrics::default()), Instant::now()).unwrap();
    let got = challenged_with(&mut core, Some("baresip v1.0.0"), 100);
    assert_eq!(got, both);
}
