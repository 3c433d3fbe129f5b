//! Digest authentication driven directly in simulated time: the 401 challenge, good and bad
//! answers, the credentials `Need` and the parked request completing when the answer comes, a
//! failed or timed-out look-up answered 503.

mod sim;

use std::net::SocketAddr;
use std::time::Duration;

use chaincall_sip::digest::Challenge;
use chaincall_sip::header::HeaderName;
use chaincall_sip::message::Message;
use chaincall_sipd::AuthMode;
use chaincall_sipd::core::Need;
use sim::{DOMAIN, Sim, config, headers, peer, register, subscriber};

/// A core with digest authentication on.
fn digest_sim() -> Sim {
    let mut cfg = config();
    cfg.auth.mode = AuthMode::Digest;
    Sim::new(&cfg)
}

/// alice's REGISTER from `src` (CSeq `cseq`) answering `challenge` with `password`.
fn answered_register(src: SocketAddr, challenge: &[u8], cseq: u32, password: &str) -> String {
    let m = Message::parse(challenge).expect("a 401");
    let header = m
        .auth_headers(HeaderName::WwwAuthenticate)
        .next()
        .expect("a challenge");
    let ch = Challenge::parse(&header).expect("a digest challenge");
    let auth = ch.answer(
        "REGISTER",
        &format!("sip:{DOMAIN}"),
        "alice",
        password,
        "c0ffee",
        1,
    );
    register(
        "alice",
        src,
        "auth-1",
        cseq,
        &[&format!("<sip:alice@{src}>")],
        &format!("Authorization: {auth}\r\n"),
    )
}

/// alice's REGISTER without credentials at CSeq `cseq`, and the 401 it gets (no look-up).
fn challenged(s: &mut Sim, src: SocketAddr, cseq: u32) -> Vec<u8> {
    s.deliver(
        src,
        &register(
            "alice",
            src,
            "auth-1",
            cseq,
            &[&format!("<sip:alice@{src}>")],
            "",
        ),
    );
    let r = s.one_to(src);
    assert_eq!(sim::status(&r), 401);
    assert!(
        s.needs.is_empty(),
        "no look-up for a request without credentials"
    );
    r
}

/// A digest core where alice (at `peer(1)`) answered her challenge with `password` and waits for
/// her row: the core asked for it and sent nothing yet.
fn parked(password: &str) -> (Sim, SocketAddr) {
    let mut s = digest_sim();
    let alice = peer(1);
    let chal = challenged(&mut s, alice, 1);
    s.deliver(alice, &answered_register(alice, &chal, 2, password));
    assert_eq!(s.needs, [alice_need()], "the core asks for alice's row");
    assert!(s.take_to(alice).is_empty(), "parked until the row comes");
    assert_eq!(s.core.lookups_pending(), 1);
    (s, alice)
}

fn alice_need() -> Need {
    Need::Credentials {
        username: "alice".into(),
        domain: DOMAIN.into(),
    }
}

#[test]
fn the_challenge_offers_sha256_then_md5() {
    let mut s = digest_sim();
    let chal = challenged(&mut s, peer(1), 1);
    let algorithms: Vec<String> = headers(&chal, "WWW-Authenticate")
        .iter()
        .filter_map(|h| {
            h.split("algorithm=")
                .nth(1)?
                .split(',')
                .next()
                .map(str::to_owned)
        })
        .collect();
    assert_eq!(
        algorithms,
        ["SHA-256", "MD5"],
        "RFC 8760: one challenge each"
    );
}

#[test]
fn a_good_answer_waits_for_the_lookup_then_registers() {
    let (mut s, alice) = parked("alice-pw");
    // The look-up's timeout is a deadline of its own.
    assert_eq!(
        s.deadline.map(|d| d <= s.now + Duration::from_secs(2)),
        Some(true)
    );

    s.answer_lookup("alice", Some(subscriber("alice-pw")));
    assert_eq!(s.status_to(alice), 200);
    assert_eq!(s.core.lookups_pending(), 0);
    assert_eq!(s.metrics.registrations.get(), 1);
    assert_eq!(s.metrics.auth_failures.get(), 0);

    // The row is cached: the next answered REGISTER needs no look-up.
    let chal = challenged(&mut s, alice, 3);
    s.deliver(alice, &answered_register(alice, &chal, 4, "alice-pw"));
    assert!(s.needs.is_empty());
    assert_eq!(s.status_to(alice), 200);
}

#[test]
fn a_wrong_password_is_challenged_again_and_counted() {
    let (mut s, alice) = parked("guess");
    s.answer_lookup("alice", Some(subscriber("alice-pw")));
    assert_eq!(s.status_to(alice), 401);
    assert_eq!(s.metrics.auth_failures.get(), 1);
    assert_eq!(s.metrics.registrations.get(), 0);
}

#[test]
fn a_failed_lookup_is_answered_503_with_retry_after() {
    let (mut s, alice) = parked("alice-pw");
    s.fail_lookup("alice");
    let r = s.one_to(alice);
    assert_eq!(sim::status(&r), 503);
    assert_eq!(headers(&r, "Retry-After"), ["5"]);
    assert_eq!(s.core.lookups_pending(), 0);
}

#[test]
fn a_lookup_that_never_answers_times_out_into_503() {
    let (mut s, alice) = parked("alice-pw");
    // Just before `[auth] lookup_timeout_ms` (2 s) nothing; at it, 503.
    s.advance(Duration::from_millis(1_999));
    assert!(s.take_to(alice).is_empty());
    s.advance(Duration::from_millis(1));
    assert_eq!(s.status_to(alice), 503);
    assert_eq!(s.core.lookups_pending(), 0);
    // The late answer still fills the cache; the phone's retry then needs no look-up.
    s.answer_lookup("alice", Some(subscriber("alice-pw")));
    assert!(s.take_to(alice).is_empty(), "nothing waits for it any more");
    assert_eq!(s.core.credentials_cached(), 1);
}

#[test]
fn an_unknown_subscriber_is_challenged_again() {
    let (mut s, alice) = parked("alice-pw");
    s.answer_lookup("alice", None);
    assert_eq!(s.status_to(alice), 401);
    assert_eq!(s.metrics.auth_failures.get(), 1);
}
