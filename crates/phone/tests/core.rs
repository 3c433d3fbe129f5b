//! Two phone cores in simulated time: no sockets, no sleeps, `Instant`s advanced by hand, key
//! look-ups answered from an in-test directory, and a tiny in-test registrar/relay between them
//! (it answers REGISTER, with a digest challenge when asked, and passes everything else from one
//! phone to the other). Registration, calls keyed with MIKEY-PKE and DH-SIGN up to "start media"
//! with both sides holding matching SRTP keys, every way a call ends, and hostile input.

use std::time::Duration;

use chaincall_identity::IdentityName;
use chaincall_phone::caller::Verification;
use chaincall_phone::core::{EndReason, Event, TransportState};
use chaincall_phone::ua::{RING_TIMEOUT, TRANSACTION_TIMEOUT};
use chaincall_phone::{KeyMode, PhoneError};
use chaincall_sip::message::Message;
use chaincall_sip::{HeaderName, Method};
use zeroize::Zeroizing;

#[path = "common/core_net.rs"]
mod core_net;
#[path = "common/srtp.rs"]
mod srtp;

use core_net::*;
use srtp::carries;

/// Alice registered (600 s granted), in a fresh network.
fn alice_registered() -> Net {
    let mut net = Net::new(|_| {});
    let now = net.now;
    net.alice.core.register(600, now);
    net.settle();
    let events = take_events(&mut net.alice);
    assert!(
        matches!(events[..], [Event::Registered { expires: 600 }]),
        "{events:?}"
    );
    net
}

#[test]
fn register_is_granted_and_refreshed_halfway() {
    let mut net = alice_registered();
    let now = net.now;
    // The next deadline is the refresh, at half the granted lifetime (RFC 3261 §10.2.4).
    assert_eq!(net.alice.deadline, Some(now + Duration::from_secs(300)));
    net.advance(Duration::from_secs(299));
    assert_eq!(net.seen("REGISTER").len(), 1, "not refreshed early");
    net.advance(Duration::from_secs(1));
    assert_eq!(net.seen("REGISTER").len(), 2, "refreshed when due");
    assert!(matches!(
        take_events(&mut net.alice)[..],
        [Event::Registered { expires: 600 }]
    ));
}

#[test]
fn register_answers_a_401_challenge_and_fails_with_the_wrong_password() {
    let mut net = Net::new(|_| {});
    net.registrar.challenge = true;
    let now = net.now;
    net.alice.core.register(600, now);
    net.settle();
    assert!(matches!(
        take_events(&mut net.alice)[..],
        [Event::Registered { expires: 600 }]
    ));
    let registers = net.seen("REGISTER");
    assert_eq!(registers.len(), 2, "the challenge is answered once");
    let second = Message::parse(&registers[1]).unwrap();
    assert!(
        second
            .auth_headers(HeaderName::Authorization)
            .next()
            .is_some()
    );

    // A phone with the wrong password is challenged again: its credentials are refused.
    let mut net = Net::new(|cfg| cfg.sip_password = Zeroizing::new("wrong".into()));
    net.registrar.challenge = true;
    net.alice.core.register(600, now);
    net.settle();
    let events = take_events(&mut net.alice);
    assert!(
        matches!(
            events[..],
            [Event::RegistrationFailed {
                error: PhoneError::AuthFailed(401)
            }]
        ),
        "{events:?}"
    );
}

#[test]
fn a_registrar_that_never_answers_fails_the_registration_on_timer_f() {
    let mut net = Net::new(|_| {});
    net.registrar.silent = true;
    let now = net.now;
    net.alice.core.register(600, now);
    net.settle();
    assert!(take_events(&mut net.alice).is_empty());
    assert_eq!(net.alice.deadline, Some(now + TRANSACTION_TIMEOUT));
    net.advance(TRANSACTION_TIMEOUT);
    let events = take_events(&mut net.alice);
    assert!(
        matches!(
            events[..],
            [Event::RegistrationFailed {
                error: PhoneError::Timeout(_)
            }]
        ),
        "{events:?}"
    );
}

/// A call in `mode` from `caller` to the other side, answered by itself: both sides start media
/// with keys that carry SRTP both ways, both see the other verified, with the same safety number.
fn keyed_call(mode: KeyMode, alice_calls: bool) -> (Net, String) {
    let mut net = Net::new(|cfg| cfg.key_mode = mode);
    let (caller, callee) = (alice_calls, !alice_calls);
    let target = net.side(callee).number.clone();
    let now = net.now;
    let id = net.side(caller).core.call(&target, now);
    net.settle();

    let caller_events = take_events(net.side(caller));
    let callee_events = take_events(net.side(callee));
    assert!(
        matches!(&caller_events[0], Event::Dialing { call_id } if *call_id == id),
        "{caller_events:?}"
    );
    let incoming = callee_events
        .iter()
        .find_map(|e| match e {
            Event::Incoming {
                caller,
                awaiting_answer,
                ..
            } => Some((caller, *awaiting_answer)),
            _ => None,
        })
        .expect("the callee is told who calls");
    let caller_name = IdentityName::Phone(net.side(caller).number.clone());
    assert!(
        matches!(&incoming.0.verification, Verification::Verified { identity, lookup_verified: true, .. } if *identity == caller_name),
        "{:?}",
        incoming.0
    );
    assert!(!incoming.1, "a verified caller is answered at once");

    let safety = |events: &[Event]| {
        events
            .iter()
            .find_map(|e| match e {
                Event::Keyed(up) if up.mode == mode && up.verified_peer.is_some() => {
                    up.safety_number.clone()
                }
                _ => None,
            })
            .expect("keyed with a verified peer")
    };
    assert_eq!(
        safety(&caller_events),
        safety(&callee_events),
        "both phones show the same safety number"
    );

    let mut a = net.side(caller).started.remove(&id).expect("caller media");
    let mut b = net.side(callee).started.remove(&id).expect("callee media");
    assert!(carries(&mut a, &mut b), "caller to callee");
    assert!(carries(&mut b, &mut a), "callee to caller");
    assert_eq!(a.keys[0].key_and_salt[..], b.keys[1].key_and_salt[..]);
    assert_eq!(a.keys[1].key_and_salt[..], b.keys[0].key_and_salt[..]);
    assert_eq!(a.remote.port(), if alice_calls { 5000 } else { 4000 });
    assert!(net.alice.stopped.is_empty() && net.bob.stopped.is_empty());
    (net, id)
}

/// Alice's BYE ended the call on both sides.
fn alice_hung_up_on_bob(net: &mut Net, id: &str) {
    assert_eq!(
        ended(&take_events(&mut net.alice), id),
        Some(EndReason::HungUp)
    );
    assert_eq!(
        ended(&take_events(&mut net.bob), id),
        Some(EndReason::HungUpByPeer)
    );
}

#[test]
fn a_mikey_pke_call_keys_both_sides_and_the_callers_bye_ends_it() {
    let (mut net, id) = keyed_call(KeyMode::MikeyPke, true);
    let now = net.now;
    net.alice.core.hangup(&id, now);
    net.settle();
    assert_eq!(net.seen("BYE").len(), 1);
    alice_hung_up_on_bob(&mut net, &id);
    assert_eq!(net.alice.stopped, std::slice::from_ref(&id));
    assert_eq!(net.bob.stopped, [id]);
}

#[test]
fn a_dh_sign_call_the_other_way_keys_both_sides_and_the_callees_bye_ends_it() {
    let (mut net, id) = keyed_call(KeyMode::MikeyDhSign, false);
    // Alice is the callee here; she hangs up.
    let now = net.now;
    net.alice.core.hangup(&id, now);
    net.settle();
    let alice = take_events(&mut net.alice);
    let bob = take_events(&mut net.bob);
    assert_eq!(ended(&alice, &id), Some(EndReason::HungUp));
    assert_eq!(ended(&bob, &id), Some(EndReason::HungUpByPeer));
    let summary = bob
        .iter()
        .find_map(|e| match e {
            Event::Ended { summary, .. } => Some(summary),
            _ => None,
        })
        .unwrap();
    assert!(summary.outgoing && summary.keyed);
    assert_eq!(summary.mode, KeyMode::MikeyDhSign);
    assert_eq!(summary.lookup.as_ref().map(|l| l.proof_bytes), Some(1234));
}

#[test]
fn a_caller_whose_key_cannot_be_looked_up_is_shown_unverified_and_refused() {
    let mut net = Net::new(|_| {});
    net.bob.answer_lookups = false;
    let id = net.alice_calls_bob();
    let alice = IdentityName::Phone(net.alice.number.clone());
    assert_eq!(
        net.bob.lookups,
        std::slice::from_ref(&alice),
        "Bob asks who calls"
    );
    assert!(
        take_events(&mut net.bob).is_empty(),
        "nothing rings before the answer"
    );
    let now = net.now;
    net.bob.core.provide_key(
        &alice,
        Err(PhoneError::Lookup {
            name: alice.clone(),
            reason: "the node did not answer".into(),
        }),
        now,
    );
    net.settle();
    let bob = take_events(&mut net.bob);
    match &bob[..] {
        [
            Event::Incoming {
                caller,
                awaiting_answer: false,
                ..
            },
            Event::Refused { reason, .. },
        ] => {
            assert!(
                matches!(&caller.verification, Verification::Unverified { reason } if reason.contains("the node did not answer")),
                "{caller:?}"
            );
            assert!(reason.contains("caller not verified"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    let alice_events = take_events(&mut net.alice);
    assert!(
        matches!(
            failure(&alice_events, &id),
            Some(PhoneError::Refused { code: 403, .. })
        ),
        "{alice_events:?}"
    );
    assert_eq!(
        net.alice.stopped,
        [id],
        "the caller's media socket is released"
    );
}

#[test]
fn the_callee_declines_or_is_busy() {
    let mut net = Net::new(|cfg| cfg.auto_answer = false);
    let id = net.alice_calls_bob();
    let bob = take_events(&mut net.bob);
    assert!(
        matches!(
            &bob[..],
            [Event::Incoming {
                awaiting_answer: true,
                ..
            }]
        ),
        "{bob:?}"
    );
    assert!(
        take_events(&mut net.alice)
            .iter()
            .any(|e| matches!(e, Event::Ringing { code: 180, .. }))
    );

    // A second call to Bob while he rings: 486 Busy Here.
    let invite = net.seen("INVITE").remove(0);
    let second = String::from_utf8(invite)
        .unwrap()
        .replace(&id, "second@192.0.2.9");
    let now = net.now;
    net.bob.core.handle_signalling(second.as_bytes(), now);
    net.drain(false);
    let busy = Message::parse(net.bob.wire.last().unwrap())
        .unwrap()
        .status();
    assert_eq!(busy, Some(486));
    net.bob.wire.clear();
    assert!(net.bob.core.has_call(&id), "the first call still rings");

    net.bob.core.answer(&id, false, now);
    net.settle();
    let alice = take_events(&mut net.alice);
    assert!(
        matches!(
            failure(&alice, &id),
            Some(PhoneError::Refused { code: 603, .. })
        ),
        "{alice:?}"
    );
    assert!(!net.bob.core.has_call(&id));
}

#[test]
fn the_caller_hangs_up_before_the_answer_with_cancel() {
    let mut net = Net::new(|cfg| cfg.auto_answer = false);
    let id = net.alice_calls_bob();
    let now = net.now;
    net.alice.core.hangup(&id, now);
    net.settle();
    assert_eq!(net.seen("CANCEL").len(), 1);
    assert_eq!(net.seen("487").len(), 1, "Bob ends the INVITE with 487");
    assert_eq!(
        ended(&take_events(&mut net.alice), &id),
        Some(EndReason::HungUp)
    );
    assert_eq!(
        ended(&take_events(&mut net.bob), &id),
        Some(EndReason::CancelledByPeer)
    );
    assert_eq!(net.alice.stopped, [id]);
    assert!(net.bob.stopped.is_empty(), "Bob never bound media for it");
}

#[test]
fn a_call_left_ringing_without_a_cancel_ends_with_408() {
    // No CANCEL arrives (the caller's phone crashed or lost its connection, or the path loses
    // it): the callee must not ring for ever.
    let mut net = Net::new(|cfg| cfg.auto_answer = false);
    net.drop = Some(|m| m.method() == Some(Method::Cancel));
    let id = net.alice_calls_bob();
    let bob = take_events(&mut net.bob);
    assert!(
        bob.iter().any(|e| matches!(
            e,
            Event::Incoming {
                awaiting_answer: true,
                ..
            }
        )),
        "{bob:?}"
    );
    net.advance(RING_TIMEOUT - Duration::from_millis(1));
    assert_eq!(
        ended(&take_events(&mut net.bob), &id),
        None,
        "still ringing"
    );
    assert!(net.bob.core.has_call(&id));
    net.advance(Duration::from_millis(1));
    assert_eq!(net.seen("408").len(), 1, "Bob ends the INVITE with 408");
    assert_eq!(
        ended(&take_events(&mut net.bob), &id),
        Some(EndReason::NotAnswered)
    );
    assert!(!net.bob.core.has_call(&id));
    assert_eq!(
        EndReason::NotAnswered.describe(),
        "not answered in time (408 Request Timeout)"
    );
    assert_eq!(EndReason::CancelledByPeer.describe(), "cancelled by caller");
}

#[test]
fn a_call_rung_for_64_t1_unanswered_fails_and_is_cancelled() {
    let mut net = Net::new(|cfg| cfg.auto_answer = false);
    let id = net.alice_calls_bob();
    take_events(&mut net.alice);
    take_events(&mut net.bob);
    net.advance(TRANSACTION_TIMEOUT - Duration::from_millis(1));
    assert!(failure(&take_events(&mut net.alice), &id).is_none());
    assert!(net.seen("CANCEL").is_empty());
    net.advance(Duration::from_millis(1));
    let alice = take_events(&mut net.alice);
    assert!(
        matches!(failure(&alice, &id), Some(PhoneError::Timeout(_))),
        "{alice:?}"
    );
    assert_eq!(net.alice.stopped, std::slice::from_ref(&id));
    // RFC 3261 §9.1: Bob's phone was ringing; giving up cancels it, so it stops ringing now
    // and not at its own ring limit; his 487 is ACKed.
    net.settle();
    assert_eq!(net.seen("CANCEL").len(), 1, "Alice cancels the INVITE");
    assert_eq!(
        ended(&take_events(&mut net.bob), &id),
        Some(EndReason::CancelledByPeer)
    );
    assert_eq!(net.seen("487").len(), 1);
    assert_eq!(net.seen("ACK").len(), 1, "the 487 is ACKed");
    assert!(!net.bob.core.has_call(&id));
}

#[test]
fn a_re_invite_keeps_the_media_and_answers_with_the_same_description() {
    let (mut net, id) = keyed_call(KeyMode::MikeyPke, true);
    let invite = net.seen("INVITE").remove(0);
    let ok = net
        .seen("200")
        .into_iter()
        .find(|b| Message::parse(b).unwrap().cseq().unwrap().method == Method::Invite)
        .unwrap();
    let ok = Message::parse(&ok).unwrap();
    let bob_tag = ok.to().unwrap().tag().unwrap().to_owned();
    let answer = ok.body().to_vec();
    let invite = Message::parse(&invite).unwrap();
    let from = invite.header_value(HeaderName::From).unwrap().to_owned();
    let reinvite = format!(
        "INVITE sip:{BOB}@127.0.0.1:40002;transport=tcp SIP/2.0\r\n\
Via: SIP/2.0/TCP 127.0.0.1:40001;branch=z9hG4bKre\r\n\
From: {from}\r\nTo: <sip:{BOB}@{DOMAIN}>;tag={bob_tag}\r\n\
Call-ID: {id}\r\nCSeq: 2 INVITE\r\nMax-Forwards: 70\r\n\
Contact: <sip:{ALICE}@127.0.0.1:40001;transport=tcp>\r\nContent-Length: 0\r\n\r\n"
    );
    let now = net.now;
    net.bob.core.handle_signalling(reinvite.as_bytes(), now);
    net.drain(false);
    let reply = Message::parse(&net.bob.wire[0]).unwrap();
    assert_eq!(reply.status(), Some(200));
    assert_eq!(reply.body(), &answer[..], "the same session description");
    assert!(
        take_events(&mut net.bob).is_empty(),
        "a refresh is no new call"
    );
    assert!(net.bob.stopped.is_empty(), "the media keeps running");
}

#[test]
fn a_look_up_answer_after_the_call_ended_is_ignored() {
    // The callee's look-up of the caller returns after the caller cancelled.
    let mut net = Net::new(|_| {});
    net.bob.answer_lookups = false;
    let id = net.alice_calls_bob();
    let now = net.now;
    net.alice.core.hangup(&id, now);
    net.settle();
    assert_eq!(
        ended(&take_events(&mut net.bob), &id),
        Some(EndReason::CancelledByPeer)
    );
    let alice = IdentityName::Phone(net.alice.number.clone());
    let found = net.look_up(&alice);
    net.bob.core.provide_key(&alice, found, now);
    net.settle();
    assert!(take_events(&mut net.bob).is_empty());
    assert!(net.bob.wire.is_empty() && net.bob.started.is_empty());

    // The caller's look-up of the callee returns after the caller hung up.
    net.alice.answer_lookups = false;
    let id = net.alice_calls_bob();
    net.alice.core.hangup(&id, now);
    net.settle();
    assert!(
        matches!(
            failure(&take_events(&mut net.alice), &id),
            Some(PhoneError::Refused { code: 487, .. })
        ),
        "nothing left the phone; the call says so"
    );
    let bob = IdentityName::Phone(net.bob.number.clone());
    let found = net.look_up(&bob);
    net.alice.core.provide_key(&bob, found, now);
    let before = net.seen.len();
    net.settle();
    assert!(take_events(&mut net.alice).is_empty());
    assert_eq!(net.seen.len(), before, "no INVITE for a call hung up");
}

#[test]
fn malformed_signalling_is_an_error_event_and_never_a_panic() {
    let (mut net, id) = keyed_call(KeyMode::MikeyPke, true);
    let now = net.now;
    net.bob
        .core
        .handle_signalling(b"\x00\xffnot SIP at all\r\n\r\n", now);
    net.drain(false);
    let events = take_events(&mut net.bob);
    assert!(
        matches!(&events[..], [Event::SignallingError { .. }]),
        "{events:?}"
    );
    assert!(net.bob.wire.is_empty(), "nothing answered");
    // Every truncation and a bit flip at every offset of a real INVITE and its answer.
    let samples: Vec<Vec<u8>> = net.seen.clone();
    for bytes in samples.iter().take(6) {
        for cut in 0..bytes.len() {
            net.bob.core.handle_signalling(&bytes[..cut], now);
            let mut flipped = bytes.clone();
            flipped[cut] ^= 0x20;
            net.bob.core.handle_signalling(&flipped, now);
            net.alice.core.handle_signalling(&flipped, now);
        }
    }
    net.settle();
    let _ = (take_events(&mut net.alice), take_events(&mut net.bob));
    // The call survived: it still ends cleanly.
    let now = net.now;
    net.alice.core.hangup(&id, now);
    net.settle();
    assert!(!net.alice.core.has_call(&id));
}

#[test]
fn a_lost_connection_keeps_the_media_and_the_call_can_still_end() {
    let (mut net, id) = keyed_call(KeyMode::MikeyPke, true);
    let now = net.now;
    net.alice.lost = true;
    net.alice.core.handle_transport(TransportState::Lost, now);
    net.settle();
    assert!(net.alice.stopped.is_empty(), "the media keeps running");
    assert!(take_events(&mut net.alice).is_empty());

    // Bob hangs up: his BYE never arrives; Timer F ends the call on his side.
    net.bob.core.hangup(&id, now);
    net.settle();
    net.advance(TRANSACTION_TIMEOUT);
    assert_eq!(
        ended(&take_events(&mut net.bob), &id),
        Some(EndReason::HungUp)
    );
    assert_eq!(net.bob.stopped, std::slice::from_ref(&id));

    // Alice hangs up with no connection: the call ends here, nothing is written.
    net.alice.core.hangup(&id, net.now);
    net.drain(true);
    assert!(net.alice.wire.is_empty());
    assert_eq!(
        ended(&take_events(&mut net.alice), &id),
        Some(EndReason::SignallingLost)
    );
    assert_eq!(net.alice.stopped, [id]);
}

#[test]
fn a_wanted_registration_is_renewed_after_a_reconnect_and_calls_fail_at_once_while_down() {
    let mut net = alice_registered();

    // The connection drops: no refresh goes out while it is down, however long that lasts.
    net.alice.lost = true;
    net.alice
        .core
        .handle_transport(TransportState::Lost, net.now);
    net.settle();
    net.advance(Duration::from_secs(400));
    assert_eq!(net.seen("REGISTER").len(), 1, "nothing sent while down");

    // A call placed meanwhile fails at once, saying why.
    let bob = net.bob.number.clone();
    let id = net.alice.core.call(&bob, net.now);
    net.settle();
    let events = take_events(&mut net.alice);
    let error = failure(&events, &id).expect("the call failed at once");
    assert!(
        matches!(error, PhoneError::Signalling(reason) if reason.contains("not connected")),
        "{error}"
    );
    assert!(net.alice.started.is_empty() && net.seen("INVITE").is_empty());

    // The connection is back (on a new local port): the core registers again by itself, with
    // the new address as its contact, and refreshes from then on.
    net.alice.lost = false;
    net.alice
        .core
        .set_local_addr("127.0.0.1:40011".parse().unwrap());
    net.alice
        .core
        .handle_transport(TransportState::Connected, net.now);
    net.settle();
    let registers = net.seen("REGISTER");
    assert_eq!(registers.len(), 2, "registered again after the reconnect");
    let again = String::from_utf8_lossy(&registers[1]);
    assert!(
        again.contains("Contact: <sip:+15551230001@127.0.0.1:40011;"),
        "{again}"
    );
    assert!(matches!(
        take_events(&mut net.alice)[..],
        [Event::Registered { expires: 600 }]
    ));
    net.advance(Duration::from_secs(300));
    assert_eq!(net.seen("REGISTER").len(), 3, "refreshed again");

    // Bob never registered: his reconnect sends nothing. Alice unregistered: neither does hers.
    net.bob.core.handle_transport(TransportState::Lost, net.now);
    net.bob
        .core
        .handle_transport(TransportState::Connected, net.now);
    net.alice.core.register(0, net.now);
    net.settle();
    assert_eq!(net.seen("REGISTER").len(), 4, "only alice's unregistration");
    net.alice
        .core
        .handle_transport(TransportState::Lost, net.now);
    net.alice
        .core
        .handle_transport(TransportState::Connected, net.now);
    net.settle();
    assert_eq!(
        net.seen("REGISTER").len(),
        4,
        "an unregistered phone stays so"
    );
}

#[test]
fn a_call_in_progress_when_the_connection_drops_says_so_when_it_ends() {
    let (mut net, id) = keyed_call(KeyMode::MikeyPke, true);
    net.alice.lost = true;
    net.alice
        .core
        .handle_transport(TransportState::Lost, net.now);
    net.alice
        .core
        .handle_transport(TransportState::Connected, net.now);
    net.alice.lost = false;
    net.settle();
    // Back up: the hang-up goes out as a BYE over the new connection.
    net.alice.core.hangup(&id, net.now);
    net.settle();
    assert_eq!(net.seen("BYE").len(), 1);
    let events = take_events(&mut net.alice);
    let lost = events.iter().find_map(|e| match e {
        Event::Ended {
            call_id, summary, ..
        } if *call_id == id => Some(summary.signalling_lost),
        _ => None,
    });
    assert_eq!(lost, Some(true), "{events:?}");
    // Bob's side never lost its connection.
    let events = take_events(&mut net.bob);
    let lost = events.iter().find_map(|e| match e {
        Event::Ended { summary, .. } => Some(summary.signalling_lost),
        _ => None,
    });
    assert_eq!(lost, Some(false), "{events:?}");
}

#[test]
fn over_udp_register_invite_and_bye_complete_through_retransmissions_when_first_copies_are_lost() {
    let mut net = Net::over("UDP", |_| {});
    // Every message, request or response, ACK included, loses its first copy.
    net.lose_first = 1;
    let run = |net: &mut Net| {
        // T1 is 500 ms: 20 s of simulated time in 100 ms steps covers many retransmissions.
        for _ in 0..200 {
            net.advance(Duration::from_millis(100));
        }
    };
    let now = net.now;
    net.alice.core.register(600, now);
    net.bob.core.register(600, now);
    net.settle();
    run(&mut net);
    for side in [&mut net.alice, &mut net.bob] {
        let events = take_events(side);
        assert!(
            matches!(events[..], [Event::Registered { expires: 600 }]),
            "{events:?}"
        );
    }
    // Each REGISTER: lost; sent again on Timer E (its 200 lost); sent again, answered.
    assert_eq!(net.seen("REGISTER").len(), 6);

    let id = net.alice_calls_bob();
    run(&mut net);
    assert!(net.alice.started.contains_key(&id) && net.bob.started.contains_key(&id));
    assert!(
        net.seen("INVITE").len() >= 2,
        "the INVITE was retransmitted"
    );
    assert!(net.seen("ACK").len() >= 2, "the lost ACK was sent again");
    let bob = take_events(&mut net.bob);
    let incoming = bob
        .iter()
        .filter(|e| matches!(e, Event::Incoming { .. }))
        .count();
    assert_eq!(incoming, 1, "a retransmitted INVITE rings once: {bob:?}");
    take_events(&mut net.alice);

    let now = net.now;
    net.alice.core.hangup(&id, now);
    net.settle();
    run(&mut net);
    alice_hung_up_on_bob(&mut net, &id);
    assert!(net.seen("BYE").len() >= 2, "the BYE was retransmitted");
    // Nothing left running: every transaction ended, nothing is re-sent any more.
    let before = net.seen.len();
    for _ in 0..40 {
        net.advance(Duration::from_secs(1));
    }
    assert_eq!(net.seen.len(), before, "quiet once done");
}

/// Each MIKEY offer stays in the callee's replay cache for its ±60 s window, and one caller may
/// hold only `mikey_replay_quota` of them: within the window, the next is refused with 488 (and
/// the same phone configured with a larger quota takes it).
#[test]
fn offers_beyond_the_callers_replay_quota_are_refused_until_configured_higher() {
    for (quota, third_refused) in [(2, true), (3, false)] {
        let mut net = Net::new(|cfg| cfg.mikey_replay_quota = quota);
        for n in 1..=3 {
            let id = net.alice_calls_bob();
            let events = take_events(&mut net.alice);
            let refused = failure(&events, &id).map(|e| e.to_string());
            if n == 3 && third_refused {
                let refused = refused.expect("the third offer is refused");
                assert!(refused.contains("488"), "{refused}");
            } else {
                assert_eq!(refused, None, "call {n} with quota {quota}");
                let now = net.now;
                net.alice.core.hangup(&id, now);
                net.settle();
            }
            take_events(&mut net.bob);
            net.advance(Duration::from_secs(1));
        }
    }
}

/// RFC 3261 §13.3.1.4: over UDP the callee re-sends its 200 OK until the caller's ACK; when no
/// ACK comes within 64·T1 (32 s) the session SHOULD end, with a BYE. Here every ACK is lost on
/// the way: Bob's phone hangs up by itself and its report says why; Alice's call ends by his BYE.
#[test]
fn over_udp_a_callee_whose_200_is_never_acked_hangs_up_with_a_bye_and_says_why() {
    let mut net = Net::over("UDP", |_| {});
    net.drop = Some(|m| m.method() == Some(Method::Ack));
    let now = net.now;
    net.alice.core.register(600, now);
    net.bob.core.register(600, now);
    net.settle();
    let id = net.alice_calls_bob();
    take_events(&mut net.alice);
    take_events(&mut net.bob);
    // 31.9 s in 100 ms steps: the 200 is re-sent, each copy ACKed by Alice (and lost), and the
    // call still stands.
    for _ in 0..319 {
        net.advance(Duration::from_millis(100));
    }
    assert!(
        net.seen("200").len() >= 8,
        "the 200 was re-sent until T2 spacing"
    );
    assert!(net.seen("ACK").len() >= 8, "every copy was ACKed, and lost");
    assert!(net.seen("BYE").is_empty());
    assert_eq!(ended(&take_events(&mut net.bob), &id), None);

    // At 64·T1 Bob gives up waiting and hangs up; Alice's BYE's answer goes back to him.
    for _ in 0..2 {
        net.advance(Duration::from_millis(100));
    }
    let byes = net.seen("BYE");
    assert_eq!(byes.len(), 1, "one BYE, from Bob");
    let bye = Message::parse(&byes[0]).unwrap();
    assert!(
        bye.header_value(HeaderName::From).unwrap().contains(BOB),
        "the callee hangs up"
    );
    let reason = bye.headers().iter().find(|h| h.raw_name == "Reason");
    assert!(
        reason.is_some_and(|r| r
            .value
            .starts_with("SIP ;cause=408 ;text=\"the caller never acknowledged")),
        "{}",
        String::from_utf8_lossy(&byes[0])
    );
    let events = take_events(&mut net.bob);
    let summary = events.iter().find_map(|e| match e {
        Event::Ended {
            call_id,
            reason,
            summary,
        } if *call_id == id => Some((*reason, summary.failure.clone())),
        _ => None,
    });
    let (reason, failure) = summary.expect("Bob's call ended");
    assert_eq!(reason, EndReason::NoAck);
    assert_eq!(
        reason.describe(),
        "our answer was never acknowledged (no ACK): hung up"
    );
    assert!(
        failure
            .as_deref()
            .is_some_and(|f| f.contains("no ACK within 64·T1 (32 s)")),
        "{failure:?}"
    );
    assert_eq!(
        ended(&take_events(&mut net.alice), &id),
        Some(EndReason::HungUpByPeer)
    );
    assert_eq!(net.bob.stopped, std::slice::from_ref(&id));
    assert_eq!(net.alice.stopped, [id]);
}
