//! Protect and unprotect of a 172-byte RTP packet (12-byte header + 160-byte G.711 payload), per
//! profile. `chaincall bench srtp --json` runs the same loops next to native libsrtp.

// criterion_group! generates an undocumented pub fn.
#![allow(missing_docs)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use chaincall_srtp::{Profile, SrtpConfig, SrtpSession};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn packet(seq: u16) -> [u8; 172] {
    let mut p = [0xd5u8; 172];
    p[..12].copy_from_slice(&[0x80, 0, 0, 0, 0, 0, 0, 0, 0x12, 0x34, 0x56, 0x78]);
    p[2..4].copy_from_slice(&seq.to_be_bytes());
    p
}

fn session(profile: Profile) -> SrtpSession {
    let key = vec![0x42; profile.master_key_len()];
    let salt = vec![0x24; profile.master_salt_len()];
    SrtpSession::new(SrtpConfig::new(profile), &key, &salt).expect("lengths match the profile")
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("srtp_172B");
    group.throughput(Throughput::Elements(1));
    for profile in Profile::ALL {
        group.bench_function(format!("protect/{}", profile.rfc_name()), |b| {
            let mut tx = session(profile);
            let mut buf = [0u8; 256];
            let mut seq = 0u16;
            b.iter(|| {
                buf[..172].copy_from_slice(&packet(seq));
                seq = seq.wrapping_add(1);
                black_box(tx.protect_rtp_slice(&mut buf, 172).expect("protect"))
            })
        });
        group.bench_function(format!("unprotect/{}", profile.rfc_name()), |b| {
            b.iter_custom(|iters| {
                // Each index may be accepted once: protect `iters` packets, then time their
                // unprotection by a fresh receiver.
                let mut tx = session(profile);
                let mut rx = session(profile);
                const STRIDE: usize = 192;
                let mut wire = vec![0u8; iters as usize * STRIDE];
                let mut len = 0;
                for (i, slot) in wire.chunks_exact_mut(STRIDE).enumerate() {
                    slot[..172].copy_from_slice(&packet(i as u16));
                    len = tx.protect_rtp_slice(slot, 172).expect("protect");
                }
                let mut buf = [0u8; STRIDE];
                let start = Instant::now();
                for slot in wire.chunks_exact(STRIDE) {
                    buf[..len].copy_from_slice(&slot[..len]);
                    black_box(rx.unprotect_rtp_slice(&mut buf[..len]).expect("unprotect"));
                }
                start.elapsed()
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(2)).warm_up_time(Duration::from_millis(500));
    targets = bench
}
criterion_main!(benches);
