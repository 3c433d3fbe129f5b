//! `bench audio` end to end: real calls (chaincall phones over sipd with MIKEY, and baresip to
//! baresip) through the impairment hop, scored by PESQ. Needs root, iptables, espeak-ng, baresip,
//! jackd and the venv's `pesq` and `jack`; skips without them unless CHAINCALL_REQUIRE_PEERS=1.

use chaincall_bench::audio::{Condition, measure, to_json};

#[test]
fn clean_calls_score_higher_than_calls_losing_a_tenth_on_both_sides() {
    for peer in ["espeak-ng", "baresip", "jackd", "iptables"] {
        if chaincall_testkit::peer(peer).is_none() {
            return;
        }
    }
    if !rustix_free_root_check() {
        chaincall_testkit::missing::<()>("root (the bench's network namespace)");
        return;
    }
    let conditions: Vec<Condition> = ["clean", "loss10jit40"]
        .iter()
        .map(|c| c.parse().unwrap())
        .collect();
    let keep = std::env::var_os("CHAINCALL_BENCH_KEEP").map(std::path::PathBuf::from);
    let results = measure(&conditions, keep.as_deref()).expect("the bench runs");
    eprintln!("{:#}", to_json(&results));
    for r in &results {
        for (side, s) in [("chaincall", &r.chaincall), ("baresip", &r.baresip)] {
            for mos in [s.mos_wb, s.mos_nb, s.decoder_mos.0, s.decoder_mos.1] {
                assert!(
                    (1.0..=4.64).contains(&mos),
                    "{side} under {}: MOS {mos} outside PESQ's range",
                    r.condition.name
                );
            }
            assert!(s.hop.seen > 100, "{side}: the hop saw {:?}", s.hop);
        }
    }
    let (clean, lossy) = (&results[0], &results[1]);
    for (side, c, l) in [
        ("chaincall", &clean.chaincall, &lossy.chaincall),
        ("baresip", &clean.baresip, &lossy.baresip),
    ] {
        assert_eq!(c.hop.dropped, 0, "{side}: the clean call lost datagrams");
        // Mouth to ear: at least a packet time (capture) plus the codec's look-ahead, at most
        // what a jitter buffer holds under 40 ± 40 ms of jitter.
        for (call, s) in [("clean", c), ("lossy", l)] {
            assert!(
                (20.0..600.0).contains(&s.mouth_to_ear_ms),
                "{side} {call}: mouth-to-ear {} ms",
                s.mouth_to_ear_ms
            );
        }
        assert!(l.loss > 0.05, "{side}: the lossy call lost only {}", l.loss);
        assert!(
            c.mos_wb > l.mos_wb,
            "{side}: clean {} not above 10 % loss {}",
            c.mos_wb,
            l.mos_wb
        );
    }
}

/// Root, read from /proc (the bench needs it for its namespace and raw sockets).
fn rustix_free_root_check() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false)
}
