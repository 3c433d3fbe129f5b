//! `key_mode = "zrtp"` in two phone cores in simulated time (the `tests/core.rs` harness): the
//! offer and answer carry `RTP/AVP` and `a=zrtp-hash` and no keys, the caller is proven by its
//! PASSporT, and the two engines the cores hand to their media tasks, each bound to the other's
//! on-chain key, agree (same SAS, chain binding held).

use std::time::Instant;

use chaincall_identity::{IdentityKey, IdentityName};
use chaincall_phone::KeyMode;
use chaincall_phone::caller::{Proof, Verification};
use chaincall_phone::core::{EndReason, Event};
use chaincall_phone::negotiation::{MediaKeys, NegotiatedMedia, ZrtpMedia};
use chaincall_sip::message::Message;
use chaincall_zrtp::{AuxStatus, Event as ZrtpEvent, Zrtp, ZrtpError};

#[path = "common/core_net.rs"]
mod core_net;

use core_net::*;

/// The SDP body of the first relayed message with this method or status.
fn sdp(net: &Net, what: &str) -> String {
    let m = net.seen(what).into_iter().next().expect(what);
    String::from_utf8(Message::parse(&m).unwrap().body().to_vec()).unwrap()
}

/// The `a=zrtp-hash` value's digest.
fn zrtp_hash(sdp: &str) -> [u8; 32] {
    let line = sdp
        .lines()
        .find_map(|l| l.strip_prefix("a=zrtp-hash:1.10 "))
        .unwrap_or_else(|| panic!("no a=zrtp-hash:1.10 in {sdp}"));
    let mut h = [0u8; 32];
    hex::decode_to_slice(line.trim(), &mut h).unwrap();
    h
}

fn zrtp_call() -> (Net, String) {
    let mut net = Net::new(|cfg| cfg.key_mode = KeyMode::Zrtp);
    let id = net.alice_calls_bob();
    (net, id)
}

fn engine(media: NegotiatedMedia) -> Box<ZrtpMedia> {
    match media.srtp {
        MediaKeys::Zrtp(z) => z,
        MediaKeys::Srtp { .. } => panic!("keyed in signalling, not by ZRTP"),
    }
}

/// How one engine's exchange ended: its SAS and aux status, or its failure.
type Outcome = Result<(String, AuxStatus), ZrtpError>;

/// Moves one drain of `from` to `to`; how `from`'s exchange ended, once it has.
fn pump(from: &mut Zrtp, to: &mut Zrtp, now: Instant) -> Option<Outcome> {
    let out = chaincall_io::drain(|| from.poll_output());
    for t in out.transmits {
        to.handle_input(&t.contents, now);
    }
    out.events.into_iter().find_map(|e| match e {
        ZrtpEvent::SecureOn(s) => Some(Ok((s.sas.text.clone(), s.aux))),
        ZrtpEvent::Failed(e) => Some(Err(e)),
        _ => None,
    })
}

/// Runs two engines against each other until both ended.
fn run(a: &mut Zrtp, b: &mut Zrtp, now: Instant) -> [Outcome; 2] {
    let (mut x, mut y) = (None, None);
    for _ in 0..50 {
        x = x.or_else(|| pump(a, b, now));
        y = y.or_else(|| pump(b, a, now));
        if let (Some(x), Some(y)) = (&x, &y) {
            return [x.clone(), y.clone()];
        }
    }
    panic!("the exchange did not end");
}

/// Runs two engines against each other until both are secure; their SAS and aux statuses.
fn exchange(a: &mut Zrtp, b: &mut Zrtp, now: Instant) -> [(String, AuxStatus); 2] {
    run(a, b, now).map(|o| o.unwrap_or_else(|e| panic!("ZRTP failed: {e}")))
}

#[test]
fn a_zrtp_call_offers_rtp_avp_with_the_hello_hash_and_no_keys() {
    let (mut net, id) = zrtp_call();
    let (offer, answer) = (sdp(&net, "INVITE"), sdp(&net, "200"));
    for body in [&offer, &answer] {
        let m = body.lines().find(|l| l.starts_with("m=audio")).unwrap();
        assert!(m.contains(" RTP/AVP "), "{body}");
        assert!(
            !body.contains("a=crypto") && !body.contains("key-mgmt"),
            "{body}"
        );
    }
    let alice = net.alice.started.remove(&id).expect("alice's media");
    let bob = net.bob.started.remove(&id).expect("bob's media");
    assert_eq!((alice.mode, bob.mode), (KeyMode::Zrtp, KeyMode::Zrtp));
    // Each side's exchange is bound to the other's on-chain key.
    assert_eq!(alice.verified_peer.as_ref().unwrap().as_str(), BOB);
    assert_eq!(bob.verified_peer.as_ref().unwrap().as_str(), ALICE);
    assert!(
        alice.keys.is_empty() && bob.keys.is_empty(),
        "no SRTP keys in signalling"
    );
    let (mut a, mut b) = (engine(alice), engine(bob));
    // The SDP hashes are the engines' Hellos; the caller learnt the callee's from the answer.
    assert_eq!(zrtp_hash(&offer), a.engine.hello_hash());
    assert_eq!(zrtp_hash(&answer), b.engine.hello_hash());
    assert_eq!(a.peer_hello_hash, Some(b.engine.hello_hash()));
    let now = net.now;
    let hash = a.peer_hello_hash.take().unwrap();
    a.engine.set_peer_hello_hash(hash, now);
    let [(sas_a, aux_a), (sas_b, aux_b)] = exchange(&mut a.engine, &mut b.engine, now);
    assert_eq!(sas_a, sas_b);
    assert_eq!((aux_a, aux_b), (AuxStatus::Matched, AuxStatus::Matched));
}

#[test]
fn the_zrtp_caller_is_proven_by_its_passport() {
    let (mut net, _) = zrtp_call();
    let bob = take_events(&mut net.bob);
    let caller = bob
        .iter()
        .find_map(|e| match e {
            Event::Incoming { caller, .. } => Some(caller),
            _ => None,
        })
        .expect("an incoming call");
    match &caller.verification {
        Verification::Verified {
            identity, proof, ..
        } => {
            assert_eq!(identity.as_str(), ALICE);
            assert_eq!(*proof, Proof::Passport);
        }
        other => panic!("not verified: {other:?}"),
    }
}

#[test]
fn a_callee_without_the_on_chain_key_fails_the_chain_binding_on_both_sides() {
    // The chain names another key for Bob's number than the one his phone holds: whoever answers
    // there is not the key holder (a man in the middle answering for Bob). Alice's engine is
    // bound to the on-chain key, Bob's to Alice's: the aux secrets differ and both fail.
    let mut net = Net::new(|cfg| cfg.key_mode = KeyMode::Zrtp);
    let bob = IdentityName::Phone(BOB.parse().unwrap());
    net.keys.insert(bob, IdentityKey::generate());
    let id = net.alice_calls_bob();
    let mut a = engine(net.alice.started.remove(&id).expect("alice's media"));
    let mut b = engine(net.bob.started.remove(&id).expect("bob's media"));
    let now = net.now;
    let hash = a.peer_hello_hash.take().unwrap();
    a.engine.set_peer_hello_hash(hash, now);
    let [alice, bob] = run(&mut a.engine, &mut b.engine, now);
    // The initiator sees the mismatch at DHPart1 and fails; its Error ends the responder's.
    assert_eq!(alice, Err(ZrtpError::AuxSecretMismatch));
    assert!(bob.is_err(), "{bob:?}");

    // Alice's media task reports the failure: her phone hangs up by itself, saying why.
    let why = format!("ZRTP failed: {:?} \"quoted\"", ZrtpError::AuxSecretMismatch);
    net.alice.core.media_failed(&id, &why, now);
    net.settle();
    let bye = net.seen("BYE");
    assert_eq!(bye.len(), 1, "one BYE");
    let bye = Message::parse(&bye[0]).unwrap();
    let reason = bye
        .header_value(chaincall_sip::HeaderName::Other("Reason"))
        .unwrap();
    assert!(
        reason.starts_with("SIP ;cause=488 ;text=\"ZRTP failed: AuxSecretMismatch quoted\""),
        "{reason}"
    );
    let ended = take_events(&mut net.alice)
        .into_iter()
        .find_map(|e| match e {
            Event::Ended {
                reason, summary, ..
            } => Some((reason, summary)),
            _ => None,
        })
        .expect("alice's call ended");
    assert_eq!(ended.0, EndReason::MediaFailed);
    assert_eq!(ended.1.failure.as_deref(), Some(why.as_str()));
    assert!(!net.alice.core.has_call(&id) && !net.bob.core.has_call(&id));
}

/// The INVITE without its Identity header.
fn strip_identity(bytes: Vec<u8>) -> Vec<u8> {
    let text = String::from_utf8(bytes).unwrap();
    text.split_inclusive("\r\n")
        .filter(|l| !l.to_ascii_lowercase().starts_with("identity:"))
        .collect::<String>()
        .into_bytes()
}

#[test]
fn a_zrtp_call_without_a_passport_from_a_number_with_a_key_is_refused() {
    let mut net = Net::new(|cfg| cfg.key_mode = KeyMode::Zrtp);
    net.rewrite = Some(strip_identity);
    net.alice_calls_bob();
    assert!(net.bob.started.is_empty());
    let bob = take_events(&mut net.bob);
    let why = refusal(&bob).expect("bob refuses");
    assert!(why.contains("proves nothing (ZRTP keys"), "{why}");
}

/// Why the phone refused a call, if it did.
fn refusal(events: &[Event]) -> Option<String> {
    events.iter().find_map(|e| match e {
        Event::Refused { reason, .. } => Some(reason.clone()),
        _ => None,
    })
}
