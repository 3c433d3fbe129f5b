//! Hostile input: random datagrams and mutated valid packets never panic the codec or the
//! engine, and a valid packet re-encodes to itself.

mod common;

use std::sync::OnceLock;
use std::time::Instant;

use chaincall_zrtp::{Event, KeyAgreement, Role, Zrtp, wire};
use common::{config, fix_crc};
use proptest::prelude::*;

/// Every packet of a clean X255 and a clean EC25 exchange, both directions.
fn corpus() -> &'static Vec<Vec<u8>> {
    static CORPUS: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    CORPUS.get_or_init(|| {
        let mut all = Vec::new();
        for ka in [KeyAgreement::X255, KeyAgreement::Ec25] {
            let sim = common::finished_pair(ka);
            all.extend(sim.sent.concat());
        }
        all
    })
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Truncate(usize),
    Extend(Vec<u8>),
    Set(usize, u8),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 1u8..=255).prop_map(|(i, b)| Mutation::Flip(i, b)),
        any::<usize>().prop_map(Mutation::Truncate),
        proptest::collection::vec(any::<u8>(), 1..64).prop_map(Mutation::Extend),
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Set(i, b)),
    ]
}

fn mutate(p: &[u8], ms: &[Mutation], fix: bool) -> Vec<u8> {
    let mut p = p.to_vec();
    for m in ms {
        match m {
            Mutation::Flip(i, b) if !p.is_empty() => {
                let n = p.len();
                p[i % n] ^= b
            }
            Mutation::Set(i, b) if !p.is_empty() => {
                let n = p.len();
                p[i % n] = *b
            }
            Mutation::Truncate(i) => p.truncate(i % (p.len() + 1)),
            Mutation::Extend(tail) => p.extend_from_slice(tail),
            _ => {}
        }
    }
    if fix && p.len() >= 4 {
        fix_crc(&mut p);
    }
    p
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn random_bytes_never_panic_the_codec(bytes in proptest::collection::vec(any::<u8>(), 0..1200)) {
        let _ = wire::decode(&bytes);
        let _ = wire::is_zrtp(&bytes);
    }

    #[test]
    fn random_bytes_behind_a_valid_header_never_panic_the_codec(
        body in proptest::collection::vec(any::<u8>(), 0..600),
        words in any::<u16>(),
    ) {
        // A plausible header and preamble, so the fuzzing reaches the message parsers.
        let mut m = vec![0x50, 0x5a];
        m.extend_from_slice(&words.to_be_bytes());
        m.extend_from_slice(&body);
        let p = wire::frame(1, 2, &m);
        let _ = wire::decode(&p);
    }

    #[test]
    fn mutated_valid_packets_never_panic_the_codec(
        pick in any::<usize>(),
        ms in proptest::collection::vec(mutation(), 1..4),
        fix in any::<bool>(),
    ) {
        let c = corpus();
        let p = mutate(&c[pick % c.len()], &ms, fix);
        if let Ok(d) = wire::decode(&p) {
            // Whatever decodes re-frames to the same octets.
            prop_assert_eq!(wire::frame(d.seq, d.ssrc, d.raw), p);
        }
    }

    #[test]
    fn mutated_packets_never_panic_the_engines(
        script in proptest::collection::vec((any::<usize>(), proptest::collection::vec(mutation(), 0..3), any::<bool>()), 1..24),
    ) {
        // Two fresh engines receive a mix of genuine and mutated packets from earlier runs.
        let now = Instant::now();
        let mut engines = [
            Zrtp::new(config(1), Role::Initiator, now).unwrap(),
            Zrtp::new(config(2), Role::Responder, now).unwrap(),
        ];
        let c = corpus();
        for (k, (pick, ms, fix)) in script.iter().enumerate() {
            let p = mutate(&c[pick % c.len()], ms, *fix);
            let z = &mut engines[k % 2];
            z.handle_input(&p, now + std::time::Duration::from_millis(k as u64 * 10));
            z.handle_timeout(now + std::time::Duration::from_millis(k as u64 * 10));
            let out = chaincall_io::drain(|| z.poll_output());
            let secure = out.events.iter().filter(|e| matches!(e, Event::SecureOn(_))).count();
            prop_assert!(secure <= 1);
        }
    }
}

#[test]
fn every_corpus_packet_decodes_and_reframes_to_itself() {
    let c = corpus();
    assert!(c.len() >= 16);
    for p in c {
        let d = wire::decode(p).expect("a packet we sent decodes");
        assert_eq!(&wire::frame(d.seq, d.ssrc, d.raw), p);
    }
}
