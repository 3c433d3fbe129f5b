//! The user agent core against a scripted proxy: REGISTER with digest (and wrong credentials),
//! INVITE with a 407 challenge, the 2xx ACK, incoming calls, BYE, CANCEL, timeouts and junk.

use std::time::{Duration, Instant};

use chaincall_phone::ua::{TRANSACTION_TIMEOUT, UaConfig, UaEvent, UserAgent};
use chaincall_sip::digest::{Algorithm, Credentials, challenge_value, ha1};
use chaincall_sip::message::{Message, response_to};
use chaincall_sip::{HeaderName, Method};
use zeroize::Zeroizing;

const DOMAIN: &str = "sip.chaincall.test";

/// A user agent and what its `poll_output` yielded but the test has not looked at yet, so a test
/// can take the messages and the events separately.
struct Ua {
    ua: UserAgent,
    sent: Vec<Vec<u8>>,
    events: Vec<UaEvent>,
}

impl Ua {
    /// Drains the UA until `Timeout`, keeping what it yielded; returns the deadline.
    fn pump(&mut self) -> Option<Instant> {
        let out = chaincall_io::drain(|| self.ua.poll_output());
        self.sent
            .extend(out.transmits.into_iter().map(|t| t.contents));
        self.events.extend(out.events);
        out.timeout
    }
}

impl std::ops::Deref for Ua {
    type Target = UserAgent;
    fn deref(&self) -> &UserAgent {
        &self.ua
    }
}

impl std::ops::DerefMut for Ua {
    fn deref_mut(&mut self) -> &mut UserAgent {
        &mut self.ua
    }
}

fn ua(password: &str) -> Ua {
    ua_drawing_from(password, Default::default())
}

/// A user agent whose tags, branches and Call-IDs come from `randomness`.
fn ua_drawing_from(password: &str, randomness: chaincall_identity::Randomness) -> Ua {
    Ua {
        ua: UserAgent::new(UaConfig {
            user: "+15551230001".into(),
            domain: DOMAIN.into(),
            password: Zeroizing::new(password.into()),
            local: "127.0.0.1:40000".parse().unwrap(),
            transport: "TLS",
            user_agent: "test".into(),
            randomness,
        }),
        sent: Vec::new(),
        events: Vec::new(),
    }
}

fn out(ua: &mut Ua) -> Vec<Vec<u8>> {
    ua.pump();
    std::mem::take(&mut ua.sent)
}

fn events(ua: &mut Ua) -> Vec<UaEvent> {
    ua.pump();
    std::mem::take(&mut ua.events)
}

fn reply(req: &[u8], code: u16, reason: &str, extra: &[(&str, String)]) -> Vec<u8> {
    let m = Message::parse(req).unwrap();
    let mut r = response_to(&m, code, reason, Some("srvtag"));
    for (n, v) in extra {
        r.push(n, v.clone());
    }
    r.to_bytes()
}

fn challenge(nonce: &str) -> String {
    challenge_value(DOMAIN, nonce, Algorithm::Sha256, false)
}

/// Answers `req` with a digest challenge carrying `nonce`: 401 from the registrar or 407 from a
/// proxy.
fn challenged(ua: &mut UserAgent, req: &[u8], code: u16, nonce: &str, now: Instant) {
    let (reason, header) = match code {
        401 => ("Unauthorized", "WWW-Authenticate"),
        _ => ("Proxy Authentication Required", "Proxy-Authenticate"),
    };
    ua.handle_input(
        &reply(req, code, reason, &[(header, challenge(nonce))]),
        now,
    )
    .unwrap();
}

#[test]
fn register_answers_a_digest_challenge_with_the_right_response() {
    let now = Instant::now();
    let mut ua = ua("s3cret");
    ua.register(600, now);
    let first = out(&mut ua);
    assert_eq!(first.len(), 1);
    let reg = Message::parse(&first[0]).unwrap();
    assert_eq!(reg.method(), Some(Method::Register));
    assert_eq!(reg.request_uri(), Some("sip:sip.chaincall.test"));
    assert!(
        reg.header_value(HeaderName::Contact)
            .unwrap()
            .contains(";transport=tls")
    );
    assert!(
        reg.header_value(HeaderName::Via)
            .unwrap()
            .starts_with("SIP/2.0/TLS 127.0.0.1:40000;branch=z9hG4bK")
    );

    challenged(&mut ua, &first[0], 401, "n1", now);
    let second = out(&mut ua);
    assert_eq!(second.len(), 1);
    let reg2 = Message::parse(&second[0]).unwrap();
    assert_eq!(
        reg2.cseq().unwrap().seq,
        2,
        "a new request gets the next CSeq"
    );
    assert_ne!(
        reg2.top_via().unwrap().branch(),
        reg.top_via().unwrap().branch()
    );
    let auth = reg2.auth_headers(HeaderName::Authorization).next().unwrap();
    let creds = Credentials::parse(&auth).unwrap();
    assert_eq!(creds.username, "+15551230001");
    let h1 = ha1(Algorithm::Sha256, "+15551230001", DOMAIN, "s3cret");
    assert!(
        creds.verify(&h1, "REGISTER"),
        "the server accepts this response"
    );
    let wrong = ha1(Algorithm::Sha256, "+15551230001", DOMAIN, "other");
    assert!(!creds.verify(&wrong, "REGISTER"));

    ua.handle_input(
        &reply(
            &second[0],
            200,
            "OK",
            &[(
                "Contact",
                "<sip:+15551230001@127.0.0.1:40000;transport=tls>;expires=300".into(),
            )],
        ),
        now,
    )
    .unwrap();
    assert_eq!(events(&mut ua), vec![UaEvent::Registered { expires: 300 }]);
}

#[test]
fn a_second_challenge_means_wrong_credentials() {
    let now = Instant::now();
    let mut ua = ua("wrong");
    ua.register(600, now);
    let r1 = out(&mut ua).remove(0);
    challenged(&mut ua, &r1, 401, "n1", now);
    let r2 = out(&mut ua).remove(0);
    challenged(&mut ua, &r2, 401, "n2", now);
    assert!(out(&mut ua).is_empty(), "no third attempt");
    assert!(matches!(
        events(&mut ua)[..],
        [UaEvent::RegistrationFailed { code: 401, .. }]
    ));
}

#[test]
fn invite_with_proxy_challenge_then_answered_sends_acks() {
    let now = Instant::now();
    let mut ua = ua("s3cret");
    let call = ua.invite("+15551230002", "v=0\r\n", now);
    let inv = out(&mut ua).remove(0);
    let m = Message::parse(&inv).unwrap();
    assert_eq!(m.request_uri(), Some("sip:+15551230002@sip.chaincall.test"));
    assert_eq!(m.content_type(), Some("application/sdp"));

    challenged(&mut ua, &inv, 407, "n9", now);
    let sent = out(&mut ua);
    assert_eq!(
        sent.len(),
        2,
        "ACK for the 407, then the authenticated INVITE"
    );
    let ack = Message::parse(&sent[0]).unwrap();
    assert_eq!(ack.method(), Some(Method::Ack));
    assert_eq!(
        ack.top_via().unwrap().branch(),
        m.top_via().unwrap().branch(),
        "same transaction"
    );
    let inv2 = Message::parse(&sent[1]).unwrap();
    assert_eq!(inv2.method(), Some(Method::Invite));
    assert!(
        inv2.auth_headers(HeaderName::ProxyAuthorization)
            .next()
            .is_some()
    );
    assert_eq!(inv2.call_id().unwrap(), call);

    ua.handle_input(&reply(&sent[1], 180, "Ringing", &[]), now)
        .unwrap();
    ua.handle_input(
        &{
            let m2 = Message::parse(&sent[1]).unwrap();
            let mut r = response_to(&m2, 200, "OK", Some("bobtag"));
            r.push(
                "Contact",
                "<sip:+15551230002@127.0.0.1:40001;transport=tls>",
            );
            r.set_body("application/sdp", b"v=0\r\n".to_vec());
            r.to_bytes()
        },
        now,
    )
    .unwrap();
    let acks = out(&mut ua);
    assert_eq!(acks.len(), 1);
    let ack2 = Message::parse(&acks[0]).unwrap();
    assert_eq!(ack2.method(), Some(Method::Ack));
    assert_eq!(
        ack2.request_uri(),
        Some("sip:+15551230002@127.0.0.1:40001;transport=tls"),
        "2xx ACK goes to the remote target"
    );
    assert_eq!(ack2.cseq().unwrap().seq, inv2.cseq().unwrap().seq);
    let ev = events(&mut ua);
    assert!(matches!(&ev[0], UaEvent::Ringing { code: 180, .. }));
    assert!(matches!(&ev[1], UaEvent::Answered { sdp, .. } if sdp == b"v=0\r\n"));
    assert!(ua.is_up(&call));

    ua.hangup(&call, now);
    let bye = out(&mut ua).remove(0);
    let b = Message::parse(&bye).unwrap();
    assert_eq!(b.method(), Some(Method::Bye));
    assert!(
        b.header_value(HeaderName::To)
            .unwrap()
            .contains("tag=bobtag")
    );
    ua.handle_input(&reply(&bye, 200, "OK", &[]), now).unwrap();
    assert_eq!(
        events(&mut ua),
        vec![UaEvent::Ended {
            call_id: call,
            by_peer: false
        }]
    );
}

fn incoming_invite() -> Vec<u8> {
    b"INVITE sip:+15551230001@127.0.0.1:40000;transport=tls SIP/2.0\r\n\
Via: SIP/2.0/TLS 127.0.0.1:5061;branch=z9hG4bKproxy\r\n\
Via: SIP/2.0/TLS 127.0.0.1:40002;branch=z9hG4bKcaller;rport\r\n\
Record-Route: <sip:127.0.0.1:5061;transport=tls;lr>\r\n\
From: \"Bob \\\"B\\\" Caller\" <sip:+15551230002@sip.chaincall.test>;tag=callertag\r\n\
To: <sip:+15551230001@sip.chaincall.test>\r\n\
Call-ID: in-1@127.0.0.1\r\nCSeq: 1 INVITE\r\n\
Contact: <sip:+15551230002@127.0.0.1:40002;transport=tls>\r\nMax-Forwards: 69\r\n\
Content-Type: application/sdp\r\nContent-Length: 5\r\n\r\nv=0\r\n"
        .to_vec()
}

#[test]
fn incoming_call_answered_then_ended_by_the_peer() {
    let now = Instant::now();
    let mut ua = ua("x");
    ua.handle_input(&incoming_invite(), now).unwrap();
    let trying = out(&mut ua);
    assert!(trying[0].starts_with(b"SIP/2.0 100 Trying"));
    let ev = events(&mut ua);
    // The whole From, domain included, and the display name as a user reads it.
    assert!(
        matches!(&ev[..], [UaEvent::IncomingCall { from_uri, from_display, sdp, .. }]
            if from_uri == "sip:+15551230002@sip.chaincall.test"
                && from_display.as_deref() == Some("Bob \"B\" Caller")
                && sdp == b"v=0\r\n"),
        "{ev:?}"
    );

    // A retransmitted INVITE does not ring twice.
    ua.handle_input(&incoming_invite(), now).unwrap();
    assert!(events(&mut ua).is_empty());
    let _ = out(&mut ua);

    ua.answer("in-1@127.0.0.1", 200, "OK", Some("v=0\r\n"));
    let ok = out(&mut ua).remove(0);
    let r = Message::parse(&ok).unwrap();
    assert_eq!(r.status(), Some(200));
    assert_eq!(r.vias().count(), 2, "both Vias echoed");
    assert!(r.to().unwrap().tag().is_some());
    assert!(r.header_value(HeaderName::RecordRoute).is_some());
    assert!(r.header_value(HeaderName::Contact).is_some());
    assert_eq!(r.body(), b"v=0\r\n");
    assert!(ua.is_up("in-1@127.0.0.1"));

    let bye = b"BYE sip:+15551230001@127.0.0.1:40000;transport=tls SIP/2.0\r\n\
Via: SIP/2.0/TLS 127.0.0.1:40002;branch=z9hG4bKbye\r\n\
From: <sip:+15551230002@sip.chaincall.test>;tag=callertag\r\n\
To: <sip:+15551230001@sip.chaincall.test>;tag=x\r\n\
Call-ID: in-1@127.0.0.1\r\nCSeq: 2 BYE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n";
    ua.handle_input(bye, now).unwrap();
    assert!(out(&mut ua)[0].starts_with(b"SIP/2.0 200 OK"));
    assert!(events(&mut ua).contains(&UaEvent::Ended {
        call_id: "in-1@127.0.0.1".into(),
        by_peer: true
    }));

    // A BYE for a call we do not have: 481.
    ua.handle_input(bye, now).unwrap();
    assert!(out(&mut ua)[0].starts_with(b"SIP/2.0 481"));
}

#[test]
fn cancel_of_a_ringing_call() {
    let now = Instant::now();
    let mut ua = ua("x");
    ua.handle_input(&incoming_invite(), now).unwrap();
    let _ = (out(&mut ua), events(&mut ua));
    let cancel = b"CANCEL sip:+15551230001@127.0.0.1:40000;transport=tls SIP/2.0\r\n\
Via: SIP/2.0/TLS 127.0.0.1:5061;branch=z9hG4bKproxy\r\n\
From: <sip:+15551230002@sip.chaincall.test>;tag=callertag\r\n\
To: <sip:+15551230001@sip.chaincall.test>\r\n\
Call-ID: in-1@127.0.0.1\r\nCSeq: 1 CANCEL\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n";
    ua.handle_input(cancel, now).unwrap();
    let sent = out(&mut ua);
    assert!(sent[0].starts_with(b"SIP/2.0 200 OK"));
    assert!(sent[1].starts_with(b"SIP/2.0 487"));
    assert!(events(&mut ua).contains(&UaEvent::Ended {
        call_id: "in-1@127.0.0.1".into(),
        by_peer: true
    }));
}

#[test]
fn unanswered_requests_time_out() {
    let now = Instant::now();
    let mut ua = ua("x");
    ua.register(600, now);
    let call = ua.invite("+15551230002", "v=0\r\n", now);
    assert_eq!(ua.pump(), Some(now + TRANSACTION_TIMEOUT));
    ua.handle_timeout(now + TRANSACTION_TIMEOUT - Duration::from_millis(1));
    assert!(events(&mut ua).is_empty(), "early timeouts are harmless");
    ua.handle_timeout(now + TRANSACTION_TIMEOUT);
    let ev = events(&mut ua);
    assert!(ev.contains(&UaEvent::RegistrationFailed {
        code: 0,
        reason: "no answer from the registrar".into()
    }));
    assert!(
        ev.iter()
            .any(|e| matches!(e, UaEvent::CallFailed { call_id, code: 0, .. } if *call_id == call))
    );
    assert_eq!(ua.pump(), None);
}

#[test]
fn junk_is_an_error_and_changes_nothing() {
    let now = Instant::now();
    let mut ua = ua("x");
    for junk in [
        &b""[..],
        b"\x00\x01",
        b"SIP/2.0 200\r\n\r\n",
        b"INVITE\r\n\r\n",
    ] {
        assert!(ua.handle_input(junk, now).is_err(), "{junk:?}");
    }
    assert!(out(&mut ua).is_empty());
    assert!(events(&mut ua).is_empty());
    // A stray response is ignored.
    let stray = b"SIP/2.0 200 OK\r\nVia: SIP/2.0/TLS 127.0.0.1:40000;branch=z9hG4bKx\r\n\
From: <sip:a@b>;tag=1\r\nTo: <sip:c@d>;tag=2\r\nCall-ID: nope\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n";
    ua.handle_input(stray, now).unwrap();
    assert!(out(&mut ua).is_empty() && events(&mut ua).is_empty());
}

#[test]
fn a_re_invite_refreshes_the_session_with_the_same_description() {
    let now = Instant::now();
    let mut ua = ua("x");
    ua.handle_input(&incoming_invite(), now).unwrap();
    let _ = (out(&mut ua), events(&mut ua));
    ua.answer("in-1@127.0.0.1", 200, "OK", Some("v=0\r\no=ours\r\n"));
    let ok = out(&mut ua).remove(0);
    let tag = Message::parse(&ok)
        .unwrap()
        .to()
        .unwrap()
        .tag()
        .unwrap()
        .to_owned();
    let reinvite = format!(
        "INVITE sip:+15551230001@127.0.0.1:40000;transport=tls SIP/2.0\r\n\
Via: SIP/2.0/TLS 127.0.0.1:40002;branch=z9hG4bKre\r\n\
From: <sip:+15551230002@sip.chaincall.test>;tag=callertag\r\n\
To: <sip:+15551230001@sip.chaincall.test>;tag={tag}\r\n\
Call-ID: in-1@127.0.0.1\r\nCSeq: 2 INVITE\r\nMax-Forwards: 70\r\n\
Contact: <sip:+15551230002@127.0.0.1:40002;transport=tls>\r\nContent-Length: 0\r\n\r\n"
    );
    ua.handle_input(reinvite.as_bytes(), now).unwrap();
    let r = out(&mut ua).remove(0);
    let m = Message::parse(&r).unwrap();
    assert_eq!(m.status(), Some(200));
    assert_eq!(m.body(), b"v=0\r\no=ours\r\n");
    assert!(ua.is_up("in-1@127.0.0.1"));
    assert!(events(&mut ua).is_empty(), "a refresh is not a new call");
    // The same CSeq again is out of order: 500 (RFC 3261 §14.2).
    ua.handle_input(reinvite.as_bytes(), now).unwrap();
    assert!(out(&mut ua)[0].starts_with(b"SIP/2.0 500"));
}

#[test]
fn tags_branches_and_call_ids_come_from_the_configured_randomness() {
    use rand_chacha::rand_core::SeedableRng as _;
    let seeded = |seed| {
        let rng = rand_chacha::ChaCha20Rng::seed_from_u64(seed);
        ua_drawing_from("pw", chaincall_identity::Randomness::seeded(rng))
    };
    let now = Instant::now();
    let first_request = |mut ua: Ua| {
        ua.register(600, now);
        ua.invite("+15551230002", "v=0\r\n", now);
        out(&mut ua)
    };
    // One seed replays byte for byte; another seed, or the OS generator, gives other values.
    let a = first_request(seeded(7));
    assert_eq!(a, first_request(seeded(7)));
    assert_ne!(a, first_request(seeded(8)));
    assert_ne!(a, first_request(ua("pw")));
}

#[test]
fn a_call_hung_up_before_any_provisional_answer_is_cancelled_once_one_comes() {
    let now = Instant::now();
    let mut ua = ua("s3cret");
    let call = ua.invite("+15551230002", "v=0\r\n", now);
    let inv = out(&mut ua).remove(0);
    ua.hangup(&call, now);
    // RFC 3261 §9.1: no CANCEL before a provisional response.
    assert!(out(&mut ua).is_empty(), "a CANCEL went before any 1xx");
    assert_eq!(
        events(&mut ua),
        vec![UaEvent::Ended {
            call_id: call,
            by_peer: false
        }]
    );
    ua.handle_input(&reply(&inv, 100, "Trying", &[]), now)
        .unwrap();
    let sent = out(&mut ua);
    assert_eq!(sent.len(), 1, "{sent:?}");
    let cancel = Message::parse(&sent[0]).unwrap();
    assert_eq!(cancel.method(), Some(Method::Cancel));
    let invite = Message::parse(&inv).unwrap();
    assert_eq!(
        cancel.top_via().unwrap().branch(),
        invite.top_via().unwrap().branch(),
        "the CANCEL names the INVITE's transaction"
    );
    // A second provisional sends nothing more; the 487 that ends the INVITE is ACKed.
    ua.handle_input(&reply(&inv, 180, "Ringing", &[]), now)
        .unwrap();
    assert!(out(&mut ua).is_empty());
    ua.handle_input(&reply(&sent[0], 200, "OK", &[]), now)
        .unwrap();
    ua.handle_input(&reply(&inv, 487, "Request Terminated", &[]), now)
        .unwrap();
    let acks = out(&mut ua);
    assert_eq!(acks.len(), 1);
    assert_eq!(
        Message::parse(&acks[0]).unwrap().method(),
        Some(Method::Ack)
    );
}

#[test]
fn a_hung_up_call_answered_with_a_final_response_first_is_never_cancelled() {
    let now = Instant::now();
    let mut ua = ua("s3cret");
    let call = ua.invite("+15551230002", "v=0\r\n", now);
    let inv = out(&mut ua).remove(0);
    ua.hangup(&call, now);
    ua.handle_input(&reply(&inv, 486, "Busy Here", &[]), now)
        .unwrap();
    let sent = out(&mut ua);
    assert_eq!(sent.len(), 1, "only the ACK of the 486: {sent:?}");
    assert_eq!(
        Message::parse(&sent[0]).unwrap().method(),
        Some(Method::Ack)
    );
}

#[test]
fn an_answer_that_crosses_our_cancel_is_acked_and_ended_with_a_bye() {
    let now = Instant::now();
    let mut ua = ua("s3cret");
    let call = ua.invite("+15551230002", "v=0\r\n", now);
    let inv = out(&mut ua).remove(0);
    ua.handle_input(&reply(&inv, 180, "Ringing", &[]), now)
        .unwrap();
    ua.hangup(&call, now);
    let cancel = out(&mut ua).remove(0);
    assert_eq!(
        Message::parse(&cancel).unwrap().method(),
        Some(Method::Cancel)
    );
    events(&mut ua);
    // The callee answered before our CANCEL reached it (RFC 3261 §15: the call is up after all).
    let ok = {
        let m = Message::parse(&inv).unwrap();
        let mut r = response_to(&m, 200, "OK", Some("bobtag"));
        r.push(
            "Contact",
            "<sip:+15551230002@127.0.0.1:40001;transport=tls>",
        );
        r.set_body("application/sdp", b"v=0\r\n".to_vec());
        r.to_bytes()
    };
    ua.handle_input(&ok, now).unwrap();
    let sent = out(&mut ua);
    let methods: Vec<_> = sent
        .iter()
        .map(|b| Message::parse(b).unwrap().method())
        .collect();
    assert_eq!(methods, [Some(Method::Ack), Some(Method::Bye)], "{sent:?}");
    let bye = Message::parse(&sent[1]).unwrap();
    assert!(
        bye.header_value(HeaderName::To)
            .unwrap()
            .contains("tag=bobtag"),
        "the BYE ends the dialog the 2xx made"
    );
    assert_eq!(
        bye.request_uri(),
        Some("sip:+15551230002@127.0.0.1:40001;transport=tls")
    );
    ua.handle_input(&reply(&sent[1], 200, "OK", &[]), now)
        .unwrap();
    assert!(out(&mut ua).is_empty());
    assert!(
        events(&mut ua).is_empty(),
        "the call had already ended for the user"
    );
    assert!(!ua.is_up(&call));
}
