//! Lowe's 1995 man-in-the-middle attack on Needham–Schroeder, run against our NSL and against a
//! test-only build of the original (unfixed) message 2.
//!
//! The intruder I is an ordinary subscriber with an approved key. A starts a run with I; I re-encrypts
//! A's message 1 to B, so B believes A is talking to it. B's message 2 is encrypted to A, so I cannot
//! read it, but it can pass it to A as its own. In the original protocol message 2 is `{Na, Nb}pkA`:
//! A cannot tell it came from B's run, answers `{Nb}pkI`, and I learns Nb, finishes B's run as A, and
//! holds every secret B's session key is made of. With Lowe's fix message 2 is `{Na, Nb, B}pkA`, and A
//! sees B where it expected I and aborts.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chaincall_identity::{IdentityKey, IdentityName, StaticDirectory, ecies};

use crate::kdf::{self, Transcript};
use crate::wire::{self, MessageType, Reader};
use crate::{
    HandshakeConfig, HandshakeError, Initiator, LocalIdentity, Protocol, ReplayCache, Responder,
};

struct World {
    a: LocalIdentity,
    b: LocalIdentity,
    i: LocalIdentity,
    dir: StaticDirectory,
}

fn world() -> World {
    let mk = |s: &str| {
        LocalIdentity::new(
            IdentityName::parse(s).unwrap(),
            Arc::new(IdentityKey::generate()),
        )
    };
    let (a, b, i) = (mk("+15551230001"), mk("+15551230002"), mk("+15559990666"));
    let mut dir = StaticDirectory::new();
    for p in [&a, &b, &i] {
        dir.approve(p.name().clone(), p.key().public());
    }
    World { a, b, i, dir }
}

fn config(unfixed: bool) -> HandshakeConfig {
    HandshakeConfig {
        insecure_unfixed_ns: unfixed,
        ..HandshakeConfig::default()
    }
}

/// I opens an NSL frame sealed to it and reseals the same plaintext to `to` (what the intruder does
/// with message 1 and message 3).
fn reseal(
    i: &LocalIdentity,
    to: &LocalIdentity,
    ty: MessageType,
    ctx: &[u8],
    frame: &[u8],
) -> (Vec<u8>, Vec<u8>) {
    let parsed = wire::parse_frame(frame).unwrap();
    assert_eq!(parsed.ty, ty);
    let pt = ecies::open(i.key(), ctx, parsed.body).expect("sealed to I, so I can read it");
    let ct = ecies::seal(&to.key().public(), ctx, &pt);
    (wire::encode_frame(ty, &ct), pt.to_vec())
}

/// The attack's opening, the same with and without Lowe's fix: honest A starts an NSL run with I;
/// I re-encrypts A's message 1 to B, "from A"; B answers with message 2 (sealed to A).
struct Opening {
    alice: Initiator,
    bob: Responder,
    /// Message 1 as I sent it to B.
    msg1_ib: Vec<u8>,
    /// Its plaintext (Na || A), which I read.
    pt1: Vec<u8>,
    /// B's message 2.
    msg2: Vec<u8>,
}

fn opening(w: &World, unfixed: bool, replay: &ReplayCache, now: Instant) -> Opening {
    let mut alice = Initiator::new(
        config(unfixed),
        w.a.clone(),
        w.i.name().clone(),
        Protocol::Nsl,
        &w.dir,
        now,
    )
    .unwrap();
    let msg1_ai = alice.poll_output().into_transmit().unwrap().contents;
    let (msg1_ib, pt1) = reseal(
        &w.i,
        &w.b,
        MessageType::NslMsg1,
        kdf::CTX_NSL_MSG1,
        &msg1_ai,
    );
    let mut bob = Responder::new(config(unfixed), w.b.clone(), now);
    bob.handle_input(&msg1_ib, &w.dir, replay, now).unwrap();
    let msg2 = bob.poll_output().into_transmit().unwrap().contents;
    Opening {
        alice,
        bob,
        msg1_ib,
        pt1,
        msg2,
    }
}

#[test]
fn lowe_attack_is_detected_by_the_responder_name_in_message_2() {
    let w = world();
    let now = Instant::now();
    let replay = ReplayCache::default();
    // A, honest, starts a run with I, which I turns into a message 1 to B, "from A".
    let Opening {
        mut alice,
        mut bob,
        msg2,
        ..
    } = opening(&w, false, &replay, now);
    assert_eq!(bob.peer(), Some(w.a.name()));
    // I cannot read message 2 (it is sealed to A) ...
    assert!(ecies::open(w.i.key(), kdf::CTX_NSL_MSG2, &msg2[wire::HEADER_LEN..]).is_err());
    // ... so it passes it to A as its own answer. A finds B's name inside and aborts.
    let err = alice.handle_input(&msg2, now).unwrap_err();
    assert_eq!(
        err,
        HandshakeError::PeerMismatch {
            expected: w.i.name().clone(),
            got: w.b.name().clone()
        }
    );
    // A sends no message 3, only an alert; the error is sticky.
    let out = alice.poll_output().into_transmit().unwrap().contents;
    assert_eq!(out[0], MessageType::Alert.byte());
    assert!(alice.poll_output().into_transmit().is_none());
    assert!(
        chaincall_io::drain(|| alice.poll_output())
            .events
            .is_empty()
    );
    assert_eq!(alice.handle_input(&msg2, now).unwrap_err(), err);
    // B never gets message 3 and its run dies at the deadline.
    let later = now + Duration::from_secs(11);
    bob.handle_timeout(later);
    assert_eq!(bob.error(), Some(&HandshakeError::Timeout));
    assert!(chaincall_io::drain(|| bob.poll_output()).events.is_empty());
}

#[test]
fn without_lowes_fix_the_intruder_impersonates_a_to_b_and_learns_the_key() {
    let w = world();
    let now = Instant::now();
    let replay = ReplayCache::default();
    let Opening {
        mut alice,
        mut bob,
        msg1_ib,
        pt1,
        msg2,
    } = opening(&w, true, &replay, now);
    let na = pt1[..32].to_vec();
    // A accepts B's message 2 as I's: nothing in it says who made it.
    alice.handle_input(&msg2, now).unwrap();
    let msg3_ai = alice.poll_output().into_transmit().unwrap().contents;
    let with_i = alice.poll_output().into_event().unwrap();
    assert_eq!(&with_i.peer, w.i.name());
    // A's message 3 is sealed to I: I learns Nb and finishes B's run as A.
    let (msg3_ib, pt3) = reseal(
        &w.i,
        &w.b,
        MessageType::NslMsg3,
        kdf::CTX_NSL_MSG3,
        &msg3_ai,
    );
    let mut r = Reader::new(MessageType::NslMsg3, &pt3);
    let nb: [u8; 32] = r.array().unwrap();
    bob.handle_input(&msg3_ib, &w.dir, &replay, now).unwrap();
    let at_b = bob.poll_output().into_event().unwrap();
    // B believes it shares a key with A ...
    assert_eq!(&at_b.peer, w.a.name());
    // ... but I knows Na, Nb and B's whole transcript, so it computes B's PSK.
    let mut t = Transcript::new(
        Protocol::Nsl,
        w.a.name(),
        &w.a.key().public(),
        w.b.name(),
        &w.b.key().public(),
    );
    t.absorb(&msg1_ib);
    t.absorb(&msg2);
    t.absorb(&msg3_ib);
    let ikm = [na.as_slice(), nb.as_slice()].concat();
    let (psk, identity) = kdf::derive_psk(&ikm, &t.hash());
    assert_eq!(
        psk, at_b.psk,
        "the intruder holds the key B thinks it shares with A"
    );
    assert_eq!(identity, at_b.identity);
}

/// An honest NSL run between A and B, the variant with or without Lowe's fix.
fn honest_run(w: &World, unfixed: bool, now: Instant) -> crate::InMemoryRun {
    let mut alice = Initiator::new(
        config(unfixed),
        w.a.clone(),
        w.b.name().clone(),
        Protocol::Nsl,
        &w.dir,
        now,
    )
    .unwrap();
    let mut bob = Responder::new(config(unfixed), w.b.clone(), now);
    let replay = ReplayCache::default();
    crate::run_in_memory(&mut alice, &mut bob, &w.dir, &replay, now).unwrap()
}

#[test]
fn the_unfixed_variant_still_completes_honest_runs() {
    // So the attack test above fails because of the attack, not because the variant is broken.
    let run = honest_run(&world(), true, Instant::now());
    assert_eq!(run.initiator.psk, run.responder.psk);
}

#[test]
fn nsl_has_no_forward_secrecy_one_stolen_key_recovers_a_recorded_psk() {
    // Documented limitation (docs/handshake.md): record an honest run, steal B's key later, and the
    // PSK falls out — which is why STS exists and NSL can be switched off.
    let w = world();
    let run = honest_run(&w, false, Instant::now());
    let [m1, m2, m3] = &run.frames[..] else {
        panic!("NSL has three messages")
    };
    let real = run.responder;
    // The eavesdropper, holding only skB afterwards:
    let na = ecies::open(w.b.key(), kdf::CTX_NSL_MSG1, &m1[wire::HEADER_LEN..]).unwrap();
    let nb = ecies::open(w.b.key(), kdf::CTX_NSL_MSG3, &m3[wire::HEADER_LEN..]).unwrap();
    let mut t = Transcript::new(
        Protocol::Nsl,
        w.a.name(),
        w.a.public(),
        w.b.name(),
        w.b.public(),
    );
    for m in [m1, m2, m3] {
        t.absorb(m);
    }
    let ikm = [&na[..32], &nb[..]].concat();
    assert_eq!(kdf::derive_psk(&ikm, &t.hash()).0, real.psk);
}
