//! Two engines in simulated time: key agreement, contention, loss and reordering.

mod common;

use std::time::Duration;

use chaincall_zrtp::{AuthTag, CacheStatus, ErrorCode, KeyAgreement, Role, SasType, ZrtpError};
use common::{Sim, config, type_of};

fn agree(ka: KeyAgreement) {
    let sim = common::finished_pair(ka);
    let (a, b) = (sim.secure(0), sim.secure(1));
    assert_eq!(a.suite.key_agreement, ka);
    assert_eq!((a.role, b.role), (Role::Initiator, Role::Responder));
    assert_eq!(a.sas, b.sas, "both users read the same SAS");
    assert_eq!(a.sas.text.len(), 4, "B32 is preferred: four characters");
    // Each side's outbound keys are the other's inbound keys, and the directions differ.
    assert_eq!(a.srtp.local.dangerous_key(), b.srtp.remote.dangerous_key());
    assert_eq!(
        a.srtp.local.dangerous_salt(),
        b.srtp.remote.dangerous_salt()
    );
    assert_eq!(a.srtp.remote.dangerous_key(), b.srtp.local.dangerous_key());
    assert_ne!(a.srtp.local.dangerous_key(), a.srtp.remote.dangerous_key());
    assert_eq!(a.srtp.profile, chaincall_srtp::Profile::AesCm128HmacSha1_80);
    assert_eq!(
        (a.cache, b.cache),
        (CacheStatus::NoSecrets, CacheStatus::NoSecrets)
    );
    assert_eq!(a.peer_zid, chaincall_zrtp::Zid([2; 12]));
    for o in &sim.outcomes {
        assert!(o.refused.is_empty(), "clean run refused {:?}", o.refused);
        assert_eq!(o.secure_count, 1);
    }
    // Hello, HelloACK, Commit, DHPart1, DHPart2, Confirm1, Confirm2, Conf2ACK went on the wire.
    let types: Vec<&[u8]> = sim.sent[0]
        .iter()
        .chain(&sim.sent[1])
        .map(|p| type_of(p))
        .collect();
    for t in [
        "Hello   ", "HelloACK", "Commit  ", "DHPart1 ", "DHPart2 ", "Confirm1", "Confirm2",
        "Conf2ACK",
    ] {
        assert!(types.contains(&t.as_bytes()), "{t} missing");
    }
    assert!(sim.engines.iter().all(|z| z.is_secure()));
}

#[test]
fn x255_both_agree_on_srtp_keys_and_sas() {
    agree(KeyAgreement::X255);
}

#[test]
fn ec25_both_agree_on_srtp_keys_and_sas() {
    agree(KeyAgreement::Ec25);
}

#[test]
fn b256_hs32_suite_renders_pgp_words_and_short_tags() {
    let a = config(1)
        .with_sas_types(&[SasType::B256])
        .with_auth_tags(&[AuthTag::Hs32]);
    let mut sim = Sim::pair(a, Role::Initiator, config(2), Role::Responder);
    sim.run();
    let (a, b) = (sim.secure(0), sim.secure(1));
    assert_eq!(a.sas, b.sas);
    assert_eq!(a.sas.kind, SasType::B256);
    let words: Vec<&str> = a.sas.text.split(':').collect();
    assert_eq!(words.len(), 2, "two PGP words: {}", a.sas.text);
    assert_eq!(a.srtp.profile, chaincall_srtp::Profile::AesCm128HmacSha1_32);
}

#[test]
fn commit_contention_the_higher_hvi_wins() {
    // Both want to initiate: both send Commit; §4.2 makes exactly one the initiator.
    let mut sim = Sim::pair(config(1), Role::Initiator, config(2), Role::Initiator);
    sim.run();
    let (a, b) = (sim.secure(0), sim.secure(1));
    assert_ne!(a.role, b.role, "one initiator, one responder");
    assert_eq!(a.sas, b.sas);
    assert_eq!(a.srtp.local.dangerous_key(), b.srtp.remote.dangerous_key());
    let commits = |i: usize| {
        sim.sent[i]
            .iter()
            .filter(|p| type_of(p) == b"Commit  ")
            .count()
    };
    assert!(commits(0) >= 1 && commits(1) >= 1, "both committed");
    // The winner is the one whose Commit carries the higher hvi (octets 24+64..24+96).
    let hvi = |i: usize| {
        let c = sim.sent[i]
            .iter()
            .find(|p| type_of(p) == b"Commit  ")
            .unwrap();
        c[24 + 64..24 + 96].to_vec()
    };
    let winner = if hvi(0) > hvi(1) { 0 } else { 1 };
    assert_eq!(sim.secure(winner).role, Role::Initiator);
}

#[test]
fn two_responders_never_start_and_fail_at_the_limit() {
    let a = config(1).with_handshake_timeout(Duration::from_secs(5));
    let mut sim = Sim::pair(a, Role::Responder, config(2), Role::Responder);
    sim.run();
    assert_eq!(sim.outcomes[0].failed, Some(ZrtpError::HandshakeTimeout));
}

#[test]
fn lost_packets_are_recovered_by_retransmission() {
    // The network drops the first copy of every message type from both sides.
    let mut seen = std::collections::HashSet::new();
    let mut sim = Sim::pair(config(1), Role::Initiator, config(2), Role::Responder).filter(
        move |from, _, p| {
            if seen.insert((from, type_of(p).to_vec())) {
                vec![]
            } else {
                vec![p.to_vec()]
            }
        },
    );
    let took = sim.run();
    let (a, b) = (sim.secure(0), sim.secure(1));
    assert_eq!(a.sas, b.sas);
    assert_eq!(a.srtp.local.dangerous_key(), b.srtp.remote.dangerous_key());
    assert!(took >= Duration::from_millis(50), "it took retransmissions");
    for o in &sim.outcomes {
        assert_eq!(o.secure_count, 1, "a repeat never yields a second SecureOn");
    }
}

#[test]
fn reordered_packets_are_recovered_by_retransmission() {
    // Each side's packets 1 and 2 arrive swapped; the stale one is refused, the retransmission
    // carries on.
    let mut held: [Option<Vec<u8>>; 2] = [None, None];
    let mut sim = Sim::pair(config(1), Role::Initiator, config(2), Role::Responder).filter(
        move |from, index, p| match index {
            1 => {
                held[from] = Some(p.to_vec());
                vec![]
            }
            2 => {
                let mut out = vec![p.to_vec()];
                out.extend(held[from].take());
                out
            }
            _ => vec![p.to_vec()],
        },
    );
    sim.run();
    assert_eq!(sim.secure(0).sas, sim.secure(1).sas);
    let stale = sim
        .outcomes
        .iter()
        .flat_map(|o| &o.refused)
        .filter(|e| matches!(e, ZrtpError::Stale { .. }))
        .count();
    assert!(stale >= 1, "a reordered packet was refused as stale");
}

#[test]
fn a_silent_peer_is_given_up_after_the_t1_schedule() {
    // Nobody answers: Hello goes out 1 + 20 times (T1: 50 ms doubling to 200 ms).
    let now = std::time::Instant::now();
    let lone = chaincall_zrtp::Zrtp::new(config(1), Role::Initiator, now).unwrap();
    let mut sim = Sim::with(vec![lone], vec![0], now).filter(|_, _, _| vec![]);
    let took = sim.run();
    assert_eq!(sim.outcomes[0].failed, Some(ZrtpError::NoPeer(20)));
    assert_eq!(sim.sent[0].len(), 21);
    assert!(sim.sent[0].iter().all(|p| type_of(p) == b"Hello   "));
    // Retransmissions at 50, 150, 350, ... 3750 ms (50 + 100 + 18 * 200); the 20th waits its
    // 200 ms for an answer, then the engine gives up.
    assert_eq!(took, Duration::from_millis(3950));
}

#[test]
fn goclear_is_refused_and_media_stays_secure() {
    let mut sim = Sim::pair(config(1), Role::Initiator, config(2), Role::Responder);
    sim.run();
    assert!(sim.engines[1].is_secure());
    let goclear =
        chaincall_zrtp::wire::frame(0x7FFF, 1, &chaincall_zrtp::wire::encode_goclear(&[0; 8]));
    sim.inject(1, &goclear);
    assert_eq!(sim.outcomes[1].refused, vec![ZrtpError::GoClearRefused]);
    assert!(sim.engines[1].is_secure(), "still secure");
    let reply = sim.sent[1].last().unwrap();
    let reply = chaincall_zrtp::wire::decode(reply).unwrap();
    assert_eq!(
        reply.message,
        chaincall_zrtp::wire::Message::Error(ErrorCode::GOCLEAR_NOT_ALLOWED)
    );
}

#[test]
fn a_peer_error_fails_the_exchange_and_is_acknowledged() {
    // Bob's DHPart1 is lost, so Alice still waits for it when Bob's Error comes.
    let mut sim =
        Sim::pair(config(1), Role::Initiator, config(2), Role::Responder).filter(|from, _, p| {
            if from == 1 && type_of(p) == b"DHPart1 " {
                vec![]
            } else {
                vec![p.to_vec()]
            }
        });
    sim.run_for(Duration::ZERO);
    assert!(!sim.engines[0].is_secure());
    let error = chaincall_zrtp::wire::frame(
        common::fresh_seq(&sim, 1),
        2,
        &chaincall_zrtp::wire::encode_error(ErrorCode::UNAVAILABLE),
    );
    sim.inject(0, &error);
    assert_eq!(
        sim.outcomes[0].failed,
        Some(ZrtpError::PeerError(ErrorCode::UNAVAILABLE))
    );
    assert_eq!(type_of(sim.sent[0].last().unwrap()), b"ErrorACK");
}

#[test]
fn an_unauthenticated_error_after_secure_is_reported_but_keeps_the_session() {
    let mut sim = Sim::pair(config(1), Role::Initiator, config(2), Role::Responder);
    sim.run();
    let error = chaincall_zrtp::wire::frame(
        common::fresh_seq(&sim, 1),
        2,
        &chaincall_zrtp::wire::encode_error(ErrorCode::SOFTWARE),
    );
    sim.inject(0, &error);
    assert!(sim.engines[0].is_secure());
    assert_eq!(
        sim.outcomes[0].refused,
        vec![ZrtpError::PeerError(ErrorCode::SOFTWARE)]
    );
    assert_eq!(sim.outcomes[0].failed, None);
    assert_eq!(type_of(sim.sent[0].last().unwrap()), b"ErrorACK");
}
