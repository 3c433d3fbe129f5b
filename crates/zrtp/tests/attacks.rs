//! Tampering, replay, bad DH values and a man in the middle: each refused with a clear error.

mod common;

use std::time::{Duration, Instant};

use chaincall_zrtp::{
    AuxPolicy, AuxSecret, AuxStatus, ErrorCode, KeyAgreement, MessageType, Role, Zrtp, ZrtpError,
};
use common::{Sim, config, fix_crc, only, rng, type_of};

/// A filter that edits every packet of type `ty` from endpoint `from` with `edit`.
fn edit_all(
    from: usize,
    ty: &'static [u8; 8],
    edit: impl Fn(&mut Vec<u8>) + 'static,
) -> impl FnMut(usize, usize, &[u8]) -> Vec<Vec<u8>> {
    move |f, _, p| {
        let mut p = p.to_vec();
        if f == from && type_of(&p) == ty {
            edit(&mut p);
            fix_crc(&mut p);
        }
        vec![p]
    }
}

fn assert_refused(sim: &Sim, victim: usize, err: ZrtpError, code: ErrorCode) {
    assert_eq!(sim.outcomes[victim].failed, Some(err));
    let other = 1 - victim;
    assert_eq!(sim.outcomes[other].failed, Some(ZrtpError::PeerError(code)));
    assert!(
        sim.outcomes.iter().all(|o| o.secure.is_none()),
        "nobody went secure"
    );
    assert!(
        sim.sent[victim].iter().any(|p| type_of(p) == b"Error   "),
        "the victim told the peer"
    );
    assert!(
        sim.sent[other].iter().any(|p| type_of(p) == b"ErrorACK"),
        "and the peer acknowledged"
    );
}

#[test]
fn a_tampered_hello_fails_its_mac_when_h2_arrives() {
    // Alice's Hello reaches Bob with another client identifier (CRC recomputed, as an attacker
    // would). Bob learns H2 from Alice's Commit and finds the Hello's MAC wrong.
    let sim = Sim::pair(config(1), Role::Initiator, config(2), Role::Responder).filter(edit_all(
        0,
        b"Hello   ",
        |p| p[28] ^= 0x20,
    ));
    let mut sim = sim;
    sim.run();
    assert_refused(
        &sim,
        1,
        ZrtpError::BadMac(MessageType::Hello),
        ErrorCode::AUTH,
    );
}

#[test]
fn a_broken_hash_chain_link_is_refused() {
    // Bob's DHPart1 carries an H1 that does not hash to his Hello's H3.
    let mut sim = Sim::pair(config(1), Role::Initiator, config(2), Role::Responder)
        .filter(edit_all(1, b"DHPart1 ", |p| p[24] ^= 1));
    sim.run();
    assert_refused(
        &sim,
        0,
        ZrtpError::HashChain(MessageType::DhPart1),
        ErrorCode::AUTH,
    );
}

#[test]
fn a_substituted_public_value_fails_the_confirm() {
    // A valid X25519 value of the attacker's in Bob's DHPart1: Alice derives other keys than
    // Bob, and Bob's Confirm1 does not verify.
    let attacker = x25519_dalek::PublicKey::from(&x25519_dalek::StaticSecret::from([9u8; 32]));
    let mut sim = Sim::pair(
        only(config(1), KeyAgreement::X255),
        Role::Initiator,
        only(config(2), KeyAgreement::X255),
        Role::Responder,
    )
    .filter(edit_all(1, b"DHPart1 ", move |p| {
        p[24 + 64..24 + 96].copy_from_slice(attacker.as_bytes())
    }));
    sim.run();
    assert_refused(
        &sim,
        0,
        ZrtpError::BadConfirmMac(MessageType::Confirm1),
        ErrorCode::AUTH,
    );
}

fn bad_value(ka: KeyAgreement, value: Vec<u8>) {
    let mut sim = Sim::pair(
        only(config(1), ka),
        Role::Initiator,
        only(config(2), ka),
        Role::Responder,
    )
    .filter(edit_all(1, b"DHPart1 ", move |p| {
        p[24 + 64..24 + 64 + value.len()].copy_from_slice(&value)
    }));
    sim.run();
    assert!(
        matches!(sim.outcomes[0].failed, Some(ZrtpError::BadDhValue(_))),
        "{ka:?}: {:?}",
        sim.outcomes[0].failed
    );
    assert_eq!(
        sim.outcomes[1].failed,
        Some(ZrtpError::PeerError(ErrorCode::BAD_DH_VALUE))
    );
}

#[test]
fn x255_values_0_1_and_p_minus_1_are_refused() {
    let mut one = [0u8; 32];
    one[0] = 1;
    let mut p_minus_1 = [0xFFu8; 32];
    p_minus_1[0] = 0xEC;
    p_minus_1[31] = 0x7F;
    // A point of order 8 (RFC 7748 §6.1 says to check for the all-zero result it gives).
    let low_order =
        hex::decode("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800").unwrap();
    for v in [vec![0u8; 32], one.to_vec(), p_minus_1.to_vec(), low_order] {
        bad_value(KeyAgreement::X255, v);
    }
}

#[test]
fn ec25_values_0_1_p_minus_1_and_off_curve_are_refused() {
    let p =
        hex::decode("ffffffff00000001000000000000000000000000ffffffffffffffffffffffff").unwrap();
    let mut p_minus_1 = p.clone();
    p_minus_1[31] -= 1;
    let mut one = vec![0u8; 32];
    one[31] = 1;
    let pair = |x: &[u8], y: &[u8]| [x, y].concat();
    let mut off_curve = vec![0u8; 64];
    off_curve[31] = 5;
    off_curve[63] = 7;
    for v in [
        vec![0u8; 64],
        pair(&one, &one),
        pair(&p_minus_1, &p_minus_1),
        off_curve,
    ] {
        bad_value(KeyAgreement::Ec25, v);
    }
}

/// Runs Alice and Bob to where Bob waits for Confirm2 (Alice's Confirm2 is lost), with the
/// given randomness seed for Alice.
fn stop_before_confirm2(seed: u64) -> Sim {
    let a = config(1).with_randomness(rng(seed));
    let mut sim = Sim::pair(
        a,
        Role::Initiator,
        config(2).with_randomness(rng(seed + 1)),
        Role::Responder,
    )
    .filter(|from, _, p| {
        if from == 0 && type_of(p) == b"Confirm2" {
            vec![]
        } else {
            vec![p.to_vec()]
        }
    });
    sim.run_for(Duration::ZERO);
    sim
}

fn reseq(packet: &[u8], seq: u16) -> Vec<u8> {
    let mut p = packet.to_vec();
    p[2..4].copy_from_slice(&seq.to_be_bytes());
    fix_crc(&mut p);
    p
}

#[test]
fn a_confirm2_replayed_from_another_exchange_is_refused() {
    // An attacker recorded Alice's Confirm2 of an earlier call and plays it to Bob in a new one,
    // with a fresh sequence number: it does not verify under this exchange's keys.
    let mut old = Sim::pair(config(1), Role::Initiator, config(2), Role::Responder);
    old.run();
    let recorded = old.sent[0]
        .iter()
        .find(|p| type_of(p) == b"Confirm2")
        .unwrap()
        .clone();

    let mut sim = stop_before_confirm2(1000);
    assert!(!sim.engines[1].is_secure());
    let seq = common::fresh_seq(&sim, 0);
    sim.inject(1, &reseq(&recorded, seq));
    assert_eq!(
        sim.outcomes[1].failed,
        Some(ZrtpError::BadConfirmMac(MessageType::Confirm2))
    );
    assert!(sim.outcomes[1].secure.is_none());
}

#[test]
fn a_replayed_confirm2_after_secure_only_gets_another_conf2ack() {
    let mut old = Sim::pair(config(1), Role::Initiator, config(2), Role::Responder);
    old.run();
    let foreign = old.sent[0]
        .iter()
        .find(|p| type_of(p) == b"Confirm2")
        .unwrap()
        .clone();

    let mut sim = Sim::pair(
        config(1).with_randomness(rng(5)),
        Role::Initiator,
        config(2).with_randomness(rng(6)),
        Role::Responder,
    );
    sim.run();
    assert!(sim.engines[1].is_secure());
    // The same exchange's Confirm2 again (our Conf2ACK was lost, say): answered, nothing else.
    let own = sim.sent[0]
        .iter()
        .find(|p| type_of(p) == b"Confirm2")
        .unwrap()
        .clone();
    let seq = common::fresh_seq(&sim, 0);
    sim.inject(1, &reseq(&own, seq));
    assert_eq!(type_of(sim.sent[1].last().unwrap()), b"Conf2ACK");
    // Another exchange's Confirm2: dropped as an altered repeat.
    sim.inject(1, &reseq(&foreign, seq + 1));
    assert_eq!(
        sim.outcomes[1].refused,
        vec![ZrtpError::AlteredRepeat(MessageType::Confirm2)]
    );
    assert_eq!(sim.outcomes[1].secure_count, 1, "no second SecureOn");
    assert!(sim.engines[1].is_secure());
}

/// Alice ↔ Mallory(A side) and Mallory(B side) ↔ Bob: Mallory terminates ZRTP on both legs
/// with its own ZIDs and DH values, as a relaying man in the middle must.
fn mitm(alice_aux: Option<AuxPolicy>, bob_aux: Option<AuxPolicy>) -> Sim {
    let now = Instant::now();
    let aux = AuxSecret::new(b"static ECDH of the two on-chain keys");
    let with_aux = |cfg: chaincall_zrtp::ZrtpConfig, policy: Option<AuxPolicy>| match policy {
        Some(p) => cfg.with_aux_secret(aux.clone(), p),
        None => cfg,
    };
    let engines = vec![
        Zrtp::new(with_aux(config(1), alice_aux), Role::Initiator, now).unwrap(),
        Zrtp::new(config(66), Role::Responder, now).unwrap(),
        Zrtp::new(config(67), Role::Initiator, now).unwrap(),
        Zrtp::new(with_aux(config(2), bob_aux), Role::Responder, now).unwrap(),
    ];
    let mut sim = Sim::with(engines, vec![1, 0, 3, 2], now);
    sim.run();
    sim
}

#[test]
fn a_man_in_the_middle_shows_different_sas_on_the_two_sides() {
    let sim = mitm(None, None);
    let (alice, bob) = (sim.secure(0), sim.secure(3));
    // Each victim agrees with Mallory's leg, not with the other victim.
    assert_eq!(alice.sas, sim.secure(1).sas);
    assert_eq!(bob.sas, sim.secure(2).sas);
    assert_ne!(
        alice.sas.text, bob.sas.text,
        "reading the SAS aloud exposes Mallory"
    );
    assert_ne!(
        alice.srtp.local.dangerous_key(),
        bob.srtp.remote.dangerous_key()
    );
}

#[test]
fn a_man_in_the_middle_is_caught_by_a_fatal_aux_secret_without_reading_the_sas() {
    let sim = mitm(Some(AuxPolicy::Fatal), Some(AuxPolicy::Fatal));
    assert_eq!(sim.outcomes[0].failed, Some(ZrtpError::AuxSecretMismatch));
    assert_eq!(sim.outcomes[3].failed, Some(ZrtpError::AuxSecretMismatch));
    assert!(sim.outcomes[0].secure.is_none() && sim.outcomes[3].secure.is_none());
    // Mallory's legs are told (Error 0x70) and fail too.
    assert_eq!(
        sim.outcomes[1].failed,
        Some(ZrtpError::PeerError(ErrorCode::AUTH))
    );
    assert_eq!(
        sim.outcomes[2].failed,
        Some(ZrtpError::PeerError(ErrorCode::AUTH))
    );
}

#[test]
fn a_man_in_the_middle_passes_a_soft_aux_secret_with_a_warning_only() {
    // The RFC's soft fallback: the exchange completes without the aux secret; only the status
    // (and the SAS) tell.
    let sim = mitm(Some(AuxPolicy::Soft), Some(AuxPolicy::Soft));
    assert_eq!(sim.secure(0).aux, AuxStatus::Mismatch);
    assert_eq!(sim.secure(3).aux, AuxStatus::Mismatch);
}

#[test]
fn the_same_aux_secret_on_both_ends_is_mixed_into_the_keys() {
    let aux = AuxSecret::new(b"shared");
    let run = |aux: Option<AuxSecret>| {
        let (mut a, mut b) = (config(1), config(2));
        if let Some(s) = aux {
            a = a.with_aux_secret(s.clone(), AuxPolicy::Fatal);
            b = b.with_aux_secret(s, AuxPolicy::Fatal);
        }
        let mut sim = Sim::pair(a, Role::Initiator, b, Role::Responder);
        sim.run();
        sim
    };
    let with = run(Some(aux));
    let without = run(None);
    assert_eq!(with.secure(0).aux, AuxStatus::Matched);
    assert_eq!(with.secure(1).aux, AuxStatus::Matched);
    assert_eq!(with.secure(0).sas, with.secure(1).sas);
    // Same randomness, same transcript apart from the aux IDs: s0 differs through s2.
    assert_ne!(with.secure(0).sas, without.secure(0).sas);
    assert_eq!(without.secure(0).aux, AuxStatus::NotConfigured);
}

#[test]
fn different_aux_secrets_are_fatal_when_configured_so() {
    let a = config(1).with_aux_secret(AuxSecret::new(b"one"), AuxPolicy::Fatal);
    let b = config(2).with_aux_secret(AuxSecret::new(b"two"), AuxPolicy::Fatal);
    let mut sim = Sim::pair(a, Role::Initiator, b, Role::Responder);
    sim.run();
    // The initiator sees the responder's aux ID first.
    assert_refused(&sim, 0, ZrtpError::AuxSecretMismatch, ErrorCode::AUTH);
}

fn key(seed: u8) -> p256::SecretKey {
    p256::SecretKey::from_bytes(&[seed; 32].into()).unwrap()
}

fn bound_with(
    n: u8,
    own: &p256::SecretKey,
    peer: &p256::SecretKey,
    policy: AuxPolicy,
) -> chaincall_zrtp::ZrtpConfig {
    let source = chaincall_zrtp::ChainBinding::from_p256(own, &peer.public_key());
    config(n).with_aux_source(std::sync::Arc::new(source), policy)
}

fn bound(n: u8, own: &p256::SecretKey, peer: &p256::SecretKey) -> chaincall_zrtp::ZrtpConfig {
    bound_with(n, own, peer, AuxPolicy::Fatal)
}

#[test]
fn a_chain_bound_aux_secret_holds_between_the_right_keys() {
    let (ka, kb) = (key(0xA1), key(0xB2));
    let mut sim = Sim::pair(
        bound(1, &ka, &kb),
        Role::Initiator,
        bound(2, &kb, &ka),
        Role::Responder,
    );
    sim.run();
    assert_eq!(sim.secure(0).aux, AuxStatus::Matched);
    assert_eq!(sim.secure(1).aux, AuxStatus::Matched);
    assert_eq!(sim.secure(0).sas, sim.secure(1).sas);
}

#[test]
fn a_man_in_the_middle_without_the_identity_keys_fails_the_chain_binding() {
    // Mallory binds both legs with her own key (she cannot compute Alice's or Bob's secret) and
    // carries on past mismatches, as an attacker would.
    let (ka, kb, km) = (key(0xA1), key(0xB2), key(0x66));
    let now = Instant::now();
    let engines = vec![
        Zrtp::new(bound(1, &ka, &kb), Role::Initiator, now).unwrap(),
        Zrtp::new(
            bound_with(66, &km, &ka, AuxPolicy::Soft),
            Role::Responder,
            now,
        )
        .unwrap(),
        Zrtp::new(
            bound_with(67, &km, &kb, AuxPolicy::Soft),
            Role::Initiator,
            now,
        )
        .unwrap(),
        Zrtp::new(bound(2, &kb, &ka), Role::Responder, now).unwrap(),
    ];
    let mut sim = Sim::with(engines, vec![1, 0, 3, 2], now);
    sim.run();
    for victim in [0, 3] {
        assert_eq!(
            sim.outcomes[victim].failed,
            Some(ZrtpError::AuxSecretMismatch)
        );
        assert!(sim.outcomes[victim].secure.is_none());
    }
}

struct Unknown;

impl chaincall_zrtp::AuxSecretSource for Unknown {
    fn aux_secret(&self, _: &chaincall_zrtp::AuxBinding) -> Option<AuxSecret> {
        None // e.g. the peer's key is not on chain
    }
}

#[test]
fn a_fatal_binding_without_a_secret_for_this_peer_fails_at_its_hello() {
    let a = config(1).with_aux_source(std::sync::Arc::new(Unknown), AuxPolicy::Fatal);
    let mut sim = Sim::pair(a, Role::Initiator, config(2), Role::Responder);
    sim.run();
    assert_refused(&sim, 0, ZrtpError::AuxSecretMismatch, ErrorCode::AUTH);
}

#[test]
fn the_signalled_zrtp_hash_admits_the_peer_and_refuses_a_substitute() {
    // §8.1: Bob's `a=zrtp-hash` reached Alice in (authenticated) signalling.
    let now = Instant::now();
    let bob = Zrtp::new(config(2), Role::Responder, now).unwrap();
    let attribute = bob.zrtp_hash_attribute();
    assert!(attribute.starts_with("1.10 ") && attribute.len() == 5 + 64);
    let alice_cfg = || config(1).with_peer_hello_hash(bob.hello_hash());

    let alice = Zrtp::new(alice_cfg(), Role::Initiator, now).unwrap();
    let mut sim = Sim::with(vec![alice, bob], vec![1, 0], now);
    sim.run();
    assert_eq!(sim.secure(0).sas, sim.secure(1).sas);

    // Mallory answers in Bob's place with her own Hello: refused before any DH.
    let bob = Zrtp::new(config(2), Role::Responder, now).unwrap();
    let alice = Zrtp::new(
        config(1).with_peer_hello_hash(bob.hello_hash()),
        Role::Initiator,
        now,
    )
    .unwrap();
    let mallory = Zrtp::new(config(66), Role::Responder, now).unwrap();
    let mut sim = Sim::with(vec![alice, mallory], vec![1, 0], now);
    sim.run();
    assert_refused(
        &sim,
        0,
        ZrtpError::HelloHashMismatch,
        ErrorCode::HELLO_MISMATCH,
    );
}

#[test]
fn a_zrtp_hash_learnt_from_the_answer_is_checked_against_a_hello_that_came_first() {
    // The offerer built its Hello (and SDP) before the answer carried the peer's hash, and the
    // peer's Hello can beat the answer to the media socket.
    let now = Instant::now();
    let hello_of = |z: &mut Zrtp| {
        chaincall_io::drain(|| z.poll_output()).transmits[0]
            .contents
            .clone()
    };
    let mut bob = Zrtp::new(config(2), Role::Responder, now).unwrap();
    let bobs_hello = hello_of(&mut bob);
    let mallory = Zrtp::new(config(66), Role::Responder, now).unwrap();

    // The answer names another Hello than the one that came: fatal, with Error 0x40.
    let mut alice = Zrtp::new(config(1), Role::Initiator, now).unwrap();
    let _ = hello_of(&mut alice);
    alice.handle_input(&bobs_hello, now);
    let _ = chaincall_io::drain(|| alice.poll_output());
    alice.set_peer_hello_hash(mallory.hello_hash(), now);
    let out = chaincall_io::drain(|| alice.poll_output());
    assert!(out.events.iter().any(|e| matches!(
        e,
        chaincall_zrtp::Event::Failed(ZrtpError::HelloHashMismatch)
    )));
    assert!(
        out.transmits
            .iter()
            .any(|t| type_of(&t.contents) == b"Error   ")
    );

    // The right hash after the Hello changes nothing; the exchange finishes (the packets
    // drained above are lost, and retransmitted).
    let mut alice = Zrtp::new(config(1), Role::Initiator, now).unwrap();
    let _ = hello_of(&mut alice);
    alice.handle_input(&bobs_hello, now);
    let _ = chaincall_io::drain(|| alice.poll_output());
    alice.set_peer_hello_hash(bob.hello_hash(), now);
    assert!(alice.error().is_none());
    let mut sim = Sim::with(vec![alice, bob], vec![1, 0], now);
    sim.run();
    assert_eq!(sim.secure(0).sas, sim.secure(1).sas);

    // Learnt before the Hello, a wrong hash refuses it on arrival, as a configured one does.
    let bob = Zrtp::new(config(2), Role::Responder, now).unwrap();
    let mut alice = Zrtp::new(config(1), Role::Initiator, now).unwrap();
    alice.set_peer_hello_hash(mallory.hello_hash(), now);
    let mut sim = Sim::with(vec![alice, bob], vec![1, 0], now);
    sim.run();
    assert_refused(
        &sim,
        0,
        ZrtpError::HelloHashMismatch,
        ErrorCode::HELLO_MISMATCH,
    );
}
