//! Hostile input: garbage, truncated, oversized and mutated frames are refused with a clear error,
//! quickly, and never panic.

mod common;

use std::time::{Duration, Instant};

use chaincall_handshake::wire::{self, MAX_BODY};
use chaincall_handshake::{
    HandshakeConfig, HandshakeError, MessageType, Protocol, ReplayCache, Responder,
};
use common::{initiator, pair, run, world};
use proptest::prelude::*;

#[test]
fn truncated_frames_say_truncated() {
    let w = world();
    let now = Instant::now();
    for p in [Protocol::Nsl, Protocol::Sts] {
        let (_, _, frames) = run(&w, p, &ReplayCache::default(), now).unwrap();
        for len in 0..frames[0].len() {
            let mut bob = Responder::new(HandshakeConfig::default(), w.b.clone(), now);
            let err = bob
                .handle_input(&frames[0][..len], &w.dir, &ReplayCache::default(), now)
                .unwrap_err();
            assert!(
                matches!(err, HandshakeError::Truncated { .. }),
                "{p} msg1 cut to {len}: {err}"
            );
        }
    }
}

#[test]
fn oversized_frames_are_refused_from_the_header_alone() {
    // A header announcing 65535 bytes is refused before any body is read or allocated.
    let w = world();
    let now = Instant::now();
    for ty in [0x01u8, 0x02, 0x03, 0x11, 0x12, 0x13, 0x7f] {
        let header = [ty, 1, 0xff, 0xff];
        let err = wire::check_header(&header).unwrap_err();
        assert!(
            matches!(err, HandshakeError::Oversized { len: 65535, .. }),
            "{err}"
        );
        let mut bob = Responder::new(HandshakeConfig::default(), w.b.clone(), now);
        let mut big = header.to_vec();
        big.resize(4 + 65535, 0);
        let err = bob
            .handle_input(&big, &w.dir, &ReplayCache::default(), now)
            .unwrap_err();
        assert!(matches!(err, HandshakeError::Oversized { .. }), "{err}");
        assert!(err.to_string().contains("oversized"));
    }
    // Even a body just over the type's limit is refused, and MAX_BODY bounds every type.
    let ty = MessageType::StsMsg1;
    let over = (ty.max_body() + 1) as u16;
    assert!(wire::check_header(&[ty.byte(), 1, (over >> 8) as u8, over as u8]).is_err());
    assert!(ty.max_body() <= MAX_BODY);
}

#[test]
fn trailing_bytes_and_unknown_versions_are_refused() {
    let w = world();
    let now = Instant::now();
    let (_, _, frames) = run(&w, Protocol::Sts, &ReplayCache::default(), now).unwrap();
    let mut long = frames[0].clone();
    long.push(0);
    let mut bob = Responder::new(HandshakeConfig::default(), w.b.clone(), now);
    assert_eq!(
        bob.handle_input(&long, &w.dir, &ReplayCache::default(), now),
        Err(HandshakeError::TrailingBytes { extra: 1 })
    );
    let mut v2 = frames[0].clone();
    v2[1] = 2;
    let mut bob = Responder::new(HandshakeConfig::default(), w.b.clone(), now);
    assert_eq!(
        bob.handle_input(&v2, &w.dir, &ReplayCache::default(), now),
        Err(HandshakeError::UnsupportedVersion(2))
    );
}

#[test]
fn a_flood_of_garbage_is_refused_quickly() {
    let w = world();
    let now = Instant::now();
    let started = std::time::Instant::now();
    let cache = ReplayCache::default();
    let mut x: u64 = 0x9e3779b97f4a7c15;
    for i in 0..20_000u32 {
        // xorshift: deterministic junk, some of it with valid-looking headers.
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let len = (x % 200) as usize;
        let mut junk: Vec<u8> = (0..len).map(|k| (x >> (k % 56)) as u8).collect();
        if i % 2 == 0 && junk.len() >= 4 {
            junk[0] = [0x01, 0x11, 0x03][i as usize % 3];
            junk[1] = 1;
            let body = (junk.len() - 4) as u16;
            junk[2..4].copy_from_slice(&body.to_be_bytes());
        }
        let mut bob = Responder::new(HandshakeConfig::default(), w.b.clone(), now);
        assert!(bob.handle_input(&junk, &w.dir, &cache, now).is_err());
    }
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "garbage must be cheap to refuse: {:?}",
        started.elapsed()
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic_either_role(bytes in proptest::collection::vec(any::<u8>(), 0..1200)) {
        let w = world();
        let now = Instant::now();
        let mut bob = Responder::new(HandshakeConfig::default(), w.b.clone(), now);
        prop_assert!(bob.handle_input(&bytes, &w.dir, &ReplayCache::default(), now).is_err());
        for p in [Protocol::Nsl, Protocol::Sts] {
            let mut alice = initiator(&w, p, &w.dir, now);
            prop_assert!(alice.handle_input(&bytes, now).is_err());
        }
    }

    #[test]
    fn framed_junk_of_every_type_never_panics(ty in prop::sample::select(vec![0x01u8, 0x02, 0x03, 0x11, 0x12, 0x13, 0x7f]),
                                               body in proptest::collection::vec(any::<u8>(), 0..600)) {
        let w = world();
        let now = Instant::now();
        let mut frame = vec![ty, 1];
        frame.extend_from_slice(&(body.len() as u16).to_be_bytes());
        frame.extend_from_slice(&body);
        let mut bob = Responder::new(HandshakeConfig::default(), w.b.clone(), now);
        prop_assert!(bob.handle_input(&frame, &w.dir, &ReplayCache::default(), now).is_err());
        for p in [Protocol::Nsl, Protocol::Sts] {
            let mut alice = initiator(&w, p, &w.dir, now);
            prop_assert!(alice.handle_input(&frame, now).is_err());
        }
    }

    #[test]
    fn mutated_honest_messages_never_panic_and_never_succeed_wrongly(
        p in prop::sample::select(vec![Protocol::Nsl, Protocol::Sts]),
        which in 0usize..3, pos in any::<prop::sample::Index>(), xor in 1u8..=255, cut in any::<prop::sample::Index>(),
        truncate in any::<bool>(),
    ) {
        let w = world();
        let now = Instant::now();
        let (mut alice, mut bob) = pair(&w, p, &w.dir, now);
        let cache = ReplayCache::default();
        let mutate = |mut f: Vec<u8>| {
            if truncate { f.truncate(cut.index(f.len())); } else { let i = pos.index(f.len()); f[i] ^= xor; }
            f
        };
        let mut m1 = alice.poll_output().into_transmit().unwrap().contents;
        if which == 0 { m1 = mutate(m1); }
        // A mutated STS message 1 can still parse (it is unauthenticated); then message 2, signed over
        // what B saw, must fail at A. Whatever is mutated, B never finishes, and A only if the
        // mutation came after its last check.
        if bob.handle_input(&m1, &w.dir, &cache, now).is_ok() {
            let mut m2 = bob.poll_output().into_transmit().unwrap().contents;
            if which == 1 { m2 = mutate(m2); }
            if alice.handle_input(&m2, now).is_ok() {
                prop_assert_eq!(which, 2, "a mutated message 1 or 2 was accepted by A");
                let m3 = mutate(alice.poll_output().into_transmit().unwrap().contents);
                prop_assert!(bob.handle_input(&m3, &w.dir, &cache, now).is_err());
            }
        }
        prop_assert!(chaincall_io::drain(|| bob.poll_output()).events.is_empty());
        if which < 2 { prop_assert!(chaincall_io::drain(|| alice.poll_output()).events.is_empty()); }
    }
}

/// ECDSA malleability: `(r, n - s)` verifies wherever `(r, s)` does. STS message 3 with its
/// signature swapped for that twin must be refused as a signature, before any MAC is checked, so no
/// second encoding of a signed message is ever accepted as signed.
#[test]
fn sts_refuses_the_high_s_twin_of_a_valid_signature() {
    let w = world();
    let now = Instant::now();
    let (mut alice, mut bob) = pair(&w, Protocol::Sts, &w.dir, now);
    let cache = ReplayCache::default();
    let m1 = alice.poll_output().into_transmit().unwrap().contents;
    bob.handle_input(&m1, &w.dir, &cache, now).unwrap();
    let m2 = bob.poll_output().into_transmit().unwrap().contents;
    alice.handle_input(&m2, now).unwrap();
    let mut m3 = alice.poll_output().into_transmit().unwrap().contents;
    // Message 3's body: signature (64 bytes) then MAC, after the 4-byte frame header.
    let sig = p256::ecdsa::Signature::from_slice(&m3[4..68]).unwrap();
    let (r, s) = sig.split_scalars();
    let twin = p256::ecdsa::Signature::from_scalars(r, -*s).unwrap();
    m3[4..68].copy_from_slice(&twin.to_bytes());
    assert_eq!(
        bob.handle_input(&m3, &w.dir, &cache, now),
        Err(HandshakeError::BadSignature)
    );
    assert!(chaincall_io::drain(|| bob.poll_output()).events.is_empty());
}
