//! Retained secrets across calls (RFC 6189 §4.3, §4.9): a match on the second call, a mismatch
//! reported when one side lost its cache.

mod common;

use std::sync::Arc;

use chaincall_zrtp::{CacheStatus, InMemoryCache, Role, SecretCache, Zid};
use common::{Sim, config_with_cache, rng};

fn call(a: &Arc<InMemoryCache>, b: &Arc<InMemoryCache>, seed: u64) -> Sim {
    let ca = config_with_cache(1, a.clone()).with_randomness(rng(seed));
    let cb = config_with_cache(2, b.clone()).with_randomness(rng(seed + 1));
    let mut sim = Sim::pair(ca, Role::Initiator, cb, Role::Responder);
    sim.run();
    sim
}

#[test]
fn the_second_call_matches_rs1_and_rolls_the_secrets() {
    let (ca, cb) = (
        Arc::new(InMemoryCache::new()),
        Arc::new(InMemoryCache::new()),
    );
    let first = call(&ca, &cb, 10);
    assert_eq!(first.secure(0).cache, CacheStatus::NoSecrets);
    assert_eq!(first.secure(1).cache, CacheStatus::NoSecrets);
    let (a1, b1) = (ca.load(&Zid([2; 12])), cb.load(&Zid([1; 12])));
    assert!(a1.rs1.is_some() && a1.rs2.is_none());
    assert_eq!(a1.rs1, b1.rs1, "both sides retained the same rs1");

    let second = call(&ca, &cb, 20);
    assert_eq!(second.secure(0).cache, CacheStatus::Matched);
    assert_eq!(second.secure(1).cache, CacheStatus::Matched);
    assert_eq!(second.secure(0).sas, second.secure(1).sas);
    let a2 = ca.load(&Zid([2; 12]));
    assert_eq!(a2.rs2, a1.rs1, "the old rs1 became rs2");
    assert_ne!(a2.rs1, a1.rs1, "a new rs1");
    assert_eq!(a2.rs1, cb.load(&Zid([1; 12])).rs1);
}

#[test]
fn a_lost_cache_is_reported_as_a_mismatch_and_held_back_until_the_sas_is_confirmed() {
    let (ca, cb) = (
        Arc::new(InMemoryCache::new()),
        Arc::new(InMemoryCache::new()),
    );
    call(&ca, &cb, 10);
    let before = ca.load(&Zid([2; 12]));

    // Bob lost his cache (or this is Mallory with Bob's ZID): Alice's rs1 matches nothing.
    let fresh = Arc::new(InMemoryCache::new());
    let mut sim = call(&ca, &fresh, 30);
    assert_eq!(sim.secure(0).cache, CacheStatus::Mismatch);
    assert_eq!(sim.secure(1).cache, CacheStatus::NoSecrets);
    assert_eq!(sim.secure(0).sas, sim.secure(1).sas);
    assert_eq!(
        ca.load(&Zid([2; 12])),
        before,
        "not overwritten on a mismatch"
    );

    // The users read the SAS aloud and it matched: now the new secret is kept.
    sim.engines[0].confirm_sas();
    let after = ca.load(&Zid([2; 12]));
    assert_ne!(after.rs1, before.rs1);
    assert_eq!(after.rs1, fresh.load(&Zid([1; 12])).rs1);
    assert!(after.sas_verified);
}

#[test]
fn a_verified_sas_is_announced_with_the_v_flag_on_the_next_call() {
    let (ca, cb) = (
        Arc::new(InMemoryCache::new()),
        Arc::new(InMemoryCache::new()),
    );
    let mut first = call(&ca, &cb, 10);
    assert!(!first.secure(1).peer_sas_verified);
    first.engines[0].confirm_sas();
    first.engines[1].confirm_sas();
    let second = call(&ca, &cb, 40);
    assert_eq!(second.secure(0).cache, CacheStatus::Matched);
    assert!(second.secure(0).peer_sas_verified);
    assert!(second.secure(1).peer_sas_verified);
}
