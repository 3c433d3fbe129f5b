//! What a responder spends per offer (`handle_offer`, PKE and DH-SIGN, fresh offer each time), and
//! what the replay cache spends per accepted exchange when it is nearly full (~3,850 live entries).

// criterion_group! generates an undocumented pub fn.
#![allow(missing_docs)]

use std::hint::black_box;

use chaincall_identity::{IdentityKey, IdentityName, StaticDirectory};
use chaincall_mikey::replay::ExchangeId;
use chaincall_mikey::{
    Initiator, Mode, NtpTime, OfferConfig, ReplayCache, Responder, ResponderConfig,
};
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};

fn bench(c: &mut Criterion) {
    let alice: IdentityName = "+15551230001".parse().expect("valid number");
    let bob: IdentityName = "+15551230002".parse().expect("valid number");
    let (alice_key, bob_key) = (IdentityKey::generate(), IdentityKey::generate());
    let mut dir = StaticDirectory::new();
    dir.approve(alice.clone(), alice_key.public());
    dir.approve(bob.clone(), bob_key.public());
    let now = NtpTime::from_unix(1_790_000_000, 0);
    let cfg = OfferConfig::new(alice.clone(), bob.clone());

    let mut group = c.benchmark_group("responder_handle_offer");
    for mode in [Mode::Pke, Mode::DhSign] {
        group.bench_function(mode.name(), |b| {
            b.iter_batched(
                || {
                    let offer = match mode {
                        Mode::DhSign => Initiator::dh_sign(cfg.clone(), &alice_key, now),
                        _ => Initiator::pke(cfg.clone(), &alice_key, &dir, now),
                    }
                    .expect("offer");
                    let responder =
                        Responder::new(ResponderConfig::new(bob.clone()), bob_key.clone());
                    (offer.offer().to_vec(), responder)
                },
                |(offer, mut responder)| {
                    black_box(responder.handle_offer(&offer, &dir, now).expect("accepted"))
                },
                BatchSize::SmallInput,
            );
        });
    }
    group.finish();

    // Steady state: one exchange every 16 ms from 200 rotating initiators keeps about 3,850 of the
    // 4,096 entries live (each lives 61-62 s), every initiator under its quota of 32.
    let names: Vec<IdentityName> = (0..200)
        .map(|i| format!("+1555100{i:04}").parse().expect("valid number"))
        .collect();
    let mut cache = ReplayCache::default();
    let mut n: u64 = 0;
    let insert = |cache: &mut ReplayCache, n: &mut u64| {
        *n += 1;
        let t = NtpTime(now.0 + ((*n * 16) << 32) / 1000);
        let rand = n.to_be_bytes();
        let who = &names[(*n % 200) as usize];
        cache
            .check_and_insert(
                &ExchangeId {
                    mode: Mode::Pke,
                    initiator: who,
                    csb_id: *n as u32,
                    t,
                    rand: &rand,
                },
                t,
            )
            .expect("under every bound");
    };
    for _ in 0..8_000 {
        insert(&mut cache, &mut n);
    }
    assert!(cache.len() > 3_800, "steady state holds ~3,850 entries");
    c.bench_function("replay_cache_insert_near_full", |b| {
        b.iter(|| insert(&mut cache, &mut n))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
