//! `[relay]` driven in simulated time: what waits for the media relay and when its sessions are
//! deleted. The core yields `Need::RelayOffer`/`RelayAnswer`/`RelayDelete`; the test answers them
//! as the shell would, in every order that matters: BYE, CANCEL before and after the offer, a
//! final failure, Timer C, a relay failure (503), `max_call_secs`, and `mode = "nat"`.

mod sim;

use std::net::SocketAddr;
use std::time::Duration;

use chaincall_sipd::Config;
use chaincall_sipd::config::RelayMode;
use chaincall_sipd::core::Need;
use sim::{Sim, answer, config, headers, invite, peer, register, with_sdp};
use zeroize::Zeroizing;

/// The caller's SDP: a MIKEY key line the relay must never see or change.
const OFFER: &str = "v=0\r\no=alice 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\na=key-mgmt:mikey AQAFgM0XEkcBAAAA\r\nm=audio 4000 RTP/SAVP 0\r\n";
/// What the relay's NG client gives back: the same with the relay's address and port.
const RELAYED_OFFER: &str = "v=0\r\no=alice 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 203.0.113.11\r\nt=0 0\r\na=key-mgmt:mikey AQAFgM0XEkcBAAAA\r\nm=audio 30000 RTP/SAVP 0\r\n";
const ANSWER: &str = "v=0\r\no=bob 1 1 IN IP4 192.0.2.2\r\ns=-\r\nc=IN IP4 192.0.2.2\r\nt=0 0\r\na=key-mgmt:mikey AQAFgM0XEkcBAAAB\r\nm=audio 5000 RTP/SAVP 0\r\n";
const RELAYED_ANSWER: &str = "v=0\r\no=bob 1 1 IN IP4 192.0.2.2\r\ns=-\r\nc=IN IP4 203.0.113.11\r\nt=0 0\r\na=key-mgmt:mikey AQAFgM0XEkcBAAAB\r\nm=audio 30002 RTP/SAVP 0\r\n";

fn relay_config(mode: RelayMode) -> Config {
    let mut cfg = config();
    cfg.relay.mode = mode;
    cfg.relay.rtpengine = Some("203.0.113.11:2223".parse().unwrap());
    cfg
}

/// A core relaying as `mode` says, with bob registered at `peer(2)`.
fn relayed(mode: RelayMode) -> Sim {
    relayed_with(&relay_config(mode))
}

fn relayed_with(cfg: &Config) -> Sim {
    let mut s = Sim::new(cfg);
    let bob = peer(2);
    s.deliver(
        bob,
        &register("bob", bob, "reg-bob", 1, &[&format!("<sip:bob@{bob}>")], ""),
    );
    assert_eq!(s.status_to(bob), 200);
    s
}

fn body(b: &[u8]) -> String {
    let t = String::from_utf8_lossy(b);
    t.split_once("\r\n\r\n").unwrap().1.to_owned()
}

/// Takes the relay needs the core yielded.
/// The relay's SDP for the `offer` of `ticket`, handed to the core as the shell would.
fn give_offer(s: &mut Sim, ticket: u64, sdp: &str) {
    let now = s.now;
    s.core
        .relay_offered(ticket, Ok(Zeroizing::new(sdp.into())), now);
    s.drain();
}

/// The relay's SDP for the `answer` of `ticket`.
fn give_answer(s: &mut Sim, ticket: u64, sdp: &str) {
    let now = s.now;
    s.core
        .relay_answered(ticket, Ok(Zeroizing::new(sdp.into())), now);
    s.drain();
}

/// The one `answer` waiting: its ticket and what it carries.
fn the_answer(s: &mut Sim) -> (u64, chaincall_relay::ng::Answer) {
    match relay_needs(s).as_slice() {
        [Need::RelayAnswer { ticket, answer }] => (*ticket, answer.clone()),
        other => panic!("expected one answer, got {other:?}"),
    }
}

fn relay_needs(s: &mut Sim) -> Vec<Need> {
    let (relay, rest) = std::mem::take(&mut s.needs).into_iter().partition(|n| {
        matches!(
            n,
            Need::RelayOffer { .. } | Need::RelayAnswer { .. } | Need::RelayDelete { .. }
        )
    });
    s.needs = rest;
    relay
}

/// The one `offer` waiting: its ticket, after checking what it carries.
fn the_offer(s: &mut Sim, call_id: &str, received_from: Option<&str>) -> u64 {
    match relay_needs(s).as_slice() {
        [Need::RelayOffer { ticket, offer }] => {
            assert_eq!(offer.call_id, call_id);
            assert_eq!(offer.from_tag, format!("f-{call_id}"));
            assert_eq!(
                offer.sdp, OFFER,
                "the caller's SDP as sent, key line included"
            );
            assert_eq!(
                offer.received_from,
                received_from.map(|a| a.parse().unwrap())
            );
            *ticket
        }
        other => panic!("expected one offer, got {other:?}"),
    }
}

fn assert_deleted(s: &mut Sim, call_id: &str) {
    match relay_needs(s).as_slice() {
        [Need::RelayDelete { call_id: c }] => assert_eq!(c, call_id),
        other => panic!("expected the delete of {call_id}, got {other:?}"),
    }
    assert_eq!(s.metrics.media_relay_sessions.get(), 0);
}

/// alice calls bob with an SDP offer; the relay's offer is given back: the INVITE bob gets.
fn offered_call(s: &mut Sim, call_id: &str) -> Vec<u8> {
    let (alice, bob) = (peer(1), peer(2));
    s.deliver(
        alice,
        &with_sdp(&invite("alice", alice, "bob", call_id, ""), OFFER),
    );
    assert!(s.take_to(bob).is_empty(), "the INVITE waits for the relay");
    assert_eq!(s.metrics.media_relay_sessions.get(), 1);
    let ticket = the_offer(s, call_id, None);
    give_offer(s, ticket, RELAYED_OFFER);
    let fwd = s.one_to(bob);
    assert_eq!(body(&fwd), RELAYED_OFFER);
    assert_eq!(
        headers(&fwd, "Content-Length"),
        [RELAYED_OFFER.len().to_string()]
    );
    fwd
}

#[test]
fn a_relayed_call_waits_for_offer_and_answer_and_its_session_goes_with_the_bye() {
    let mut s = relayed(RelayMode::Always);
    let (alice, bob) = (peer(1), peer(2));
    let fwd = offered_call(&mut s, "call-r1");
    // A ringing without SDP goes straight on.
    s.deliver(bob, &answer(&fwd, 180, "Ringing", "bob-tag"));
    assert_eq!(s.statuses_to(alice), [100, 180]);
    assert!(relay_needs(&mut s).is_empty());
    // The 200's SDP waits for the relay's answer.
    s.deliver(bob, &with_sdp(&answer(&fwd, 200, "OK", "bob-tag"), ANSWER));
    assert!(s.take_to(alice).is_empty());
    let (ticket, answer) = the_answer(&mut s);
    assert_eq!(
        (answer.call_id.as_str(), answer.from_tag.as_str()),
        ("call-r1", "f-call-r1")
    );
    assert_eq!(answer.to_tag, "bob-tag");
    assert_eq!(answer.sdp, ANSWER);
    give_answer(&mut s, ticket, RELAYED_ANSWER);
    let ok = s.one_to(alice);
    assert_eq!(sim::status(&ok), 200);
    assert_eq!(body(&ok), RELAYED_ANSWER);
    // The call is up: its INVITE transaction ending does not end the session...
    s.advance(Duration::from_secs(40));
    assert!(relay_needs(&mut s).is_empty());
    assert_eq!(s.metrics.media_relay_sessions.get(), 1);
    // ... the BYE does.
    let rr = headers(&fwd, "Record-Route");
    let routes: Vec<&String> = rr.iter().rev().collect();
    s.deliver(
        alice,
        &sim::bye(
            &format!("sip:bob@{bob}"),
            alice,
            "alice",
            "bob",
            "call-r1",
            &routes,
            "bye-r1",
        ),
    );
    assert!(s.one_to(bob).starts_with(b"BYE "));
    assert_deleted(&mut s, "call-r1");
    assert_eq!(
        (
            s.metrics.media_relay_offers.get(),
            s.metrics.media_relay_answers.get(),
            s.metrics.media_relay_deletes.get()
        ),
        (1, 1, 1)
    );
}

#[test]
fn a_re_invite_of_a_relayed_call_is_relayed_and_its_refusal_keeps_the_call() {
    let mut s = relayed(RelayMode::Always);
    let (alice, bob) = (peer(1), peer(2));
    let fwd = offered_call(&mut s, "call-re");
    s.deliver(bob, &with_sdp(&answer(&fwd, 200, "OK", "bob-tag"), ANSWER));
    let (ticket, _) = the_answer(&mut s);
    give_answer(&mut s, ticket, RELAYED_ANSWER);
    s.take_to(alice);
    // bob puts the call on hold: his re-INVITE goes through the relay too, and so does alice's
    // answer (rtpengine is told bob's side offers now).
    let rr = headers(&fwd, "Record-Route");
    let reinvite = |cseq: u32| {
        let routes: String = rr.iter().map(|r| format!("Route: {r}\r\n")).collect();
        with_sdp(
            &format!(
                "INVITE sip:alice@{alice} SIP/2.0\r\n\
                 Via: SIP/2.0/UDP {bob};branch=z9hG4bK-re-{cseq}\r\n\
                 Max-Forwards: 70\r\n\
                 {routes}From: <sip:bob@example.test>;tag=bob-tag\r\n\
                 To: <sip:alice@example.test>;tag=f-call-re\r\n\
                 Call-ID: call-re\r\n\
                 CSeq: {cseq} INVITE\r\n\
                 Contact: <sip:bob@{bob}>\r\n\
                 Content-Length: 0\r\n\r\n"
            ),
            ANSWER,
        )
    };
    s.deliver(bob, &reinvite(2));
    let ticket = match relay_needs(&mut s).as_slice() {
        [Need::RelayOffer { ticket, offer }] => {
            assert_eq!(offer.from_tag, "bob-tag");
            assert_eq!(offer.sdp, ANSWER);
            *ticket
        }
        other => panic!("expected the re-INVITE's offer, got {other:?}"),
    };
    give_offer(&mut s, ticket, RELAYED_ANSWER);
    let re = s.one_to(alice);
    assert_eq!(body(&re), RELAYED_ANSWER);
    s.deliver(
        alice,
        &with_sdp(&answer(&re, 200, "OK", "f-call-re"), OFFER),
    );
    the_answer(&mut s);
    // A second re-INVITE refused (491) leaves the call and its relay session alone.
    s.deliver(bob, &reinvite(3));
    let ticket = match relay_needs(&mut s).as_slice() {
        [Need::RelayOffer { ticket, .. }] => *ticket,
        other => panic!("expected an offer, got {other:?}"),
    };
    give_offer(&mut s, ticket, RELAYED_ANSWER);
    let re = s.take_to(alice).pop().unwrap();
    s.deliver(alice, &answer(&re, 491, "Request Pending", "f-call-re"));
    s.advance(Duration::from_secs(40));
    assert!(relay_needs(&mut s).is_empty(), "no delete");
    assert_eq!(s.metrics.media_relay_sessions.get(), 1);
}

#[test]
fn a_cancel_while_the_offer_is_out_answers_487_and_deletes_also_after_a_late_offer() {
    let mut s = relayed(RelayMode::Always);
    let (alice, bob) = (peer(1), peer(2));
    let inv = with_sdp(&invite("alice", alice, "bob", "call-r2", ""), OFFER);
    s.deliver(alice, &inv);
    let ticket = the_offer(&mut s, "call-r2", None);
    s.deliver(alice, &cancel_of(&inv));
    let mut codes = s.statuses_to(alice);
    codes.sort();
    assert_eq!(codes, [100, 200, 487]);
    assert_deleted(&mut s, "call-r2");
    // The offer's reply comes after all: the session it made goes too, bob never hears of it.
    give_offer(&mut s, ticket, RELAYED_OFFER);
    assert_deleted(&mut s, "call-r2");
    assert!(s.take_to(bob).is_empty());
}

#[test]
fn a_cancel_after_the_invite_went_on_deletes_on_the_487() {
    let mut s = relayed(RelayMode::Always);
    let (alice, bob) = (peer(1), peer(2));
    let inv = with_sdp(&invite("alice", alice, "bob", "call-r3", ""), OFFER);
    let fwd = offered_call(&mut s, "call-r3");
    s.deliver(bob, &answer(&fwd, 180, "Ringing", "bob-tag"));
    s.take_to(alice);
    s.deliver(alice, &cancel_of(&inv));
    assert!(s.one_to(bob).starts_with(b"CANCEL "));
    assert!(relay_needs(&mut s).is_empty(), "not before the INVITE ends");
    s.deliver(bob, &answer(&fwd, 487, "Request Terminated", "bob-tag"));
    assert_deleted(&mut s, "call-r3");
}

#[test]
fn a_final_failure_and_timer_c_delete_the_session() {
    let mut s = relayed(RelayMode::Always);
    let (alice, bob) = (peer(1), peer(2));
    let fwd = offered_call(&mut s, "call-r4");
    s.deliver(bob, &answer(&fwd, 486, "Busy Here", "bob-tag"));
    assert!(s.take_to(alice).iter().any(|b| sim::status(b) == 486));
    assert_deleted(&mut s, "call-r4");
    assert!(
        s.one_to(bob).starts_with(b"ACK "),
        "the 486's hop-by-hop ACK"
    );

    let fwd = offered_call(&mut s, "call-r5");
    s.deliver(bob, &answer(&fwd, 180, "Ringing", "bob-tag"));
    s.take_to(alice);
    s.advance(Duration::from_secs(182));
    assert!(s.take_to(alice).iter().any(|b| sim::status(b) == 408));
    assert_deleted(&mut s, "call-r5");
}

#[test]
fn a_relay_failure_fails_the_call_with_503_and_deletes() {
    let mut s = relayed(RelayMode::Always);
    let (alice, bob) = (peer(1), peer(2));
    s.deliver(
        alice,
        &with_sdp(&invite("alice", alice, "bob", "call-r6", ""), OFFER),
    );
    let ticket = the_offer(&mut s, "call-r6", None);
    let now = s.now;
    s.core.relay_offered(
        ticket,
        Err("rtpengine at 203.0.113.11:2223 did not answer offer within 2s".into()),
        now,
    );
    s.drain();
    let codes = s.statuses_to(alice);
    assert_eq!(codes, [100, 503]);
    assert!(s.take_to(bob).is_empty());
    assert_deleted(&mut s, "call-r6");
    assert_eq!(s.metrics.media_relay_errors.get(), 1);
}

#[test]
fn a_call_whose_bye_never_comes_is_deleted_after_max_call_secs() {
    let mut cfg = relay_config(RelayMode::Always);
    cfg.relay.max_call = Duration::from_secs(600);
    let mut s = relayed_with(&cfg);
    let bob = peer(2);
    let fwd = offered_call(&mut s, "call-r7");
    s.deliver(bob, &answer(&fwd, 200, "OK", "bob-tag"));
    s.take_to(peer(1));
    s.advance(Duration::from_secs(599));
    assert!(relay_needs(&mut s).is_empty());
    s.advance(Duration::from_secs(1));
    assert_deleted(&mut s, "call-r7");
}

#[test]
fn nat_mode_relays_only_calls_with_a_party_behind_nat() {
    let mut s = relayed(RelayMode::Nat);
    let (alice, bob) = (peer(1), peer(2));
    // Both public: straight through, no relay.
    s.deliver(
        alice,
        &with_sdp(&invite("alice", alice, "bob", "call-n1", ""), OFFER),
    );
    assert_eq!(body(&s.one_to(bob)), OFFER);
    assert!(relay_needs(&mut s).is_empty());
    // carol behind NAT: relayed, rtpengine told where her signalling came from.
    let (nat, home): (SocketAddr, SocketAddr) = (
        "203.0.113.100:40001".parse().unwrap(),
        "10.0.1.2:5060".parse().unwrap(),
    );
    let inv = invite("carol", home, "bob", "call-n2", "").replacen(";branch", ";rport;branch", 1);
    s.deliver(nat, &with_sdp(&inv, OFFER));
    assert!(s.take_to(bob).is_empty());
    the_offer(&mut s, "call-n2", Some("203.0.113.100"));
}

/// The CANCEL for `inv` (§9.1: same Request-URI, Via, From, To, Call-ID; CSeq method CANCEL).
fn cancel_of(inv: &str) -> String {
    let head = inv.split_once("\r\n\r\n").unwrap().0;
    let mut out = String::new();
    for (i, line) in head.split("\r\n").enumerate() {
        if i == 0 {
            out.push_str(&line.replacen("INVITE", "CANCEL", 1));
        } else if line.starts_with("CSeq:") {
            out.push_str("CSeq: 1 CANCEL");
        } else if line.starts_with("Content-") || line.starts_with("Contact:") {
            continue;
        } else {
            out.push_str(line);
        }
        out.push_str("\r\n");
    }
    out.push_str("Content-Length: 0\r\n\r\n");
    out
}
