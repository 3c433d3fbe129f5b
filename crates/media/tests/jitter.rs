//! The adaptive jitter buffer in simulated time, under a deterministic seeded network model:
//! loss, jitter (which reorders), sender clock drift, sequence wrap, Opus FEC, and arbitrary
//! push/pop sequences. No sockets, no sleeps: `Instant`s are computed.

use std::time::{Duration, Instant};

use chaincall_media::codec::{AudioCodec, AudioDecoder, AudioEncoder};
use chaincall_media::g711::Codec;
use chaincall_media::jitter::{Frame, JitterBuffer, JitterConfig, JitterStats, Pushed};
use chaincall_media::opus::OpusConfig;
use chaincall_media::signal::{SplitMix64, speech_like};
use proptest::prelude::*;

/// One phase of the network: how long, how lossy, how jittery.
#[derive(Clone, Copy)]
struct Phase {
    seconds: u32,
    loss: f64,
    /// Extra one-way delay, uniform in 0..jitter_ms (more than 20 ms reorders packets).
    jitter_ms: f64,
}

struct Run {
    sent: u64,
    stats: JitterStats,
    /// (seconds since start, stats) once a second.
    timeline: Vec<(u32, JitterStats)>,
    frames: Vec<Frame>,
    max_current_ms: u32,
}

/// Sends `phases` of 20 ms packets of `codec` from a sender whose clock runs `drift` fast
/// (0.001 = 0.1 %), 30 ms base delay, and plays them out every 20 ms of receiver time.
fn simulate(codec: AudioCodec, phases: &[Phase], drift: f64, seed: u64, keep_frames: bool) -> Run {
    let mut rng = SplitMix64(seed);
    let t0 = Instant::now();
    let frame = codec.samples_per_frame(20);
    // Ten seconds of speech, looped: the payload does not matter much, pauses do.
    let speech = if codec.is_opus() {
        speech_like(10_000, seed)
            .iter()
            .flat_map(|&s| std::iter::repeat_n(s, 6))
            .collect::<Vec<_>>()
    } else {
        speech_like(10_000, seed)
    };
    let mut enc = AudioEncoder::new(
        codec,
        OpusConfig {
            dtx: false,
            ..OpusConfig::default()
        },
    )
    .unwrap();
    let (seq0, ts0) = (65_000u16, u32::MAX - 100_000);
    let total: u32 = phases.iter().map(|p| p.seconds * 50).sum();
    let mut arrivals: Vec<(Duration, u16, u32, Vec<u8>)> = Vec::new();
    let mut k = 0u32;
    for phase in phases {
        for _ in 0..phase.seconds * 50 {
            let pcm_at = (k as usize * frame) % (speech.len() - frame);
            let payload = enc
                .encode(&speech[pcm_at..pcm_at + frame])
                .unwrap()
                .unwrap();
            // The sender's 20 ms are 20 / (1 + drift) ms of the receiver's.
            let sent_at = 0.020 * f64::from(k) / (1.0 + drift);
            let first_or_last = k == 0 || k + 1 == total;
            if first_or_last || rng.range(0.0, 1.0) >= phase.loss {
                let delay = 0.030 + rng.range(0.0, 1.0) * phase.jitter_ms / 1000.0;
                arrivals.push((
                    Duration::from_secs_f64(sent_at + delay),
                    seq0.wrapping_add(k as u16),
                    ts0.wrapping_add(k * frame as u32),
                    payload,
                ));
            }
            k += 1;
        }
    }
    arrivals.sort_by_key(|a| a.0);
    let mut jb = JitterBuffer::new(
        AudioDecoder::new(codec).unwrap(),
        codec.clock_rate(),
        JitterConfig::default(),
    );
    let end = arrivals.last().unwrap().0 + Duration::from_secs(1);
    let mut next = arrivals.iter().peekable();
    let mut now = Duration::ZERO;
    let (mut timeline, mut frames, mut max_current_ms) = (Vec::new(), Vec::new(), 0);
    let mut pops = 0u32;
    while now < end {
        while let Some((at, seq, ts, payload)) = next.next_if(|a| a.0 <= now) {
            jb.push(*seq, *ts, payload, t0 + *at);
        }
        let f = jb.pop(t0 + now);
        assert_eq!(f.samples().len(), frame);
        let s = jb.stats();
        max_current_ms = max_current_ms.max(s.current_delay_ms);
        if keep_frames {
            frames.push(f);
        }
        pops += 1;
        if pops.is_multiple_of(50) {
            timeline.push((pops / 50, s));
        }
        now += Duration::from_millis(20);
    }
    Run {
        sent: u64::from(total),
        stats: jb.stats(),
        timeline,
        frames,
        max_current_ms,
    }
}

fn report(name: &str, r: &Run) {
    let s = &r.stats;
    println!(
        "{name}: sent {} received {} lost {} late {} concealed {} fec {} decoded {} dropped {} \
         inserted {} target {} ms max current {} ms jitter {:.1} ms",
        r.sent,
        s.received,
        s.lost,
        s.late,
        s.concealed,
        s.fec_recovered,
        s.decoded,
        s.frames_dropped,
        s.frames_inserted,
        s.target_delay_ms,
        r.max_current_ms,
        s.jitter_ms
    );
}

#[test]
fn ten_minutes_of_loss_jitter_reordering_and_drift_stay_bounded() {
    let pcmu = AudioCodec::G711(Codec::Pcmu);
    // A fast sender clock (+0.1 %) with 3 % loss, a slow one (−0.1 %) with 10 % loss.
    for (loss, drift, seed) in [(0.03, 0.001, 1), (0.10, -0.001, 2)] {
        let phases = [Phase {
            seconds: 600,
            loss,
            jitter_ms: 40.0,
        }];
        let r = simulate(pcmu, &phases, drift, seed, false);
        report(&format!("loss {loss} drift {drift}"), &r);
        let s = &r.stats;
        assert_eq!(
            s.received + s.lost,
            r.sent,
            "every packet is received or lost"
        );
        let lost_frac = s.lost as f64 / r.sent as f64;
        assert!((lost_frac - loss).abs() < 0.01, "lost {lost_frac}");
        // Reordering happened (40 ms of jitter on 20 ms packets) and was absorbed.
        assert!(
            s.late as f64 / (s.received as f64) < 0.005,
            "late {}",
            s.late
        );
        assert_eq!(s.decoded + s.late + s.duplicates, s.received);
        // 0.1 % of 10 minutes is 600 ms: about 30 frames to drop or insert.
        let (adjusted, wrong_way) = if drift > 0.0 {
            (s.frames_dropped, s.frames_inserted)
        } else {
            (s.frames_inserted, s.frames_dropped)
        };
        assert!((25..=60).contains(&adjusted), "{adjusted} frames adjusted");
        assert!(wrong_way < adjusted, "{wrong_way} the other way");
        // The delay stays bounded all along and near the target at the end.
        assert!(r.max_current_ms <= 150, "max delay {} ms", r.max_current_ms);
        assert!(
            (40..=70).contains(&s.target_delay_ms),
            "target {} ms",
            s.target_delay_ms
        );
    }
}

#[test]
fn target_delay_rises_under_jitter_and_comes_back_down() {
    let phases = [
        Phase {
            seconds: 20,
            loss: 0.0,
            jitter_ms: 2.0,
        },
        Phase {
            seconds: 20,
            loss: 0.03,
            jitter_ms: 40.0,
        },
        Phase {
            seconds: 30,
            loss: 0.0,
            jitter_ms: 2.0,
        },
    ];
    let r = simulate(AudioCodec::G711(Codec::Pcma), &phases, 0.0, 7, false);
    report("calm, jitter, calm", &r);
    let at = |sec: u32| &r.timeline[sec as usize - 1].1;
    let (calm, jittery, calm_again) = (at(18), at(38), at(68));
    println!(
        "target/current ms: calm {}/{}, jitter {}/{}, calm again {}/{}",
        calm.target_delay_ms,
        calm.current_delay_ms,
        jittery.target_delay_ms,
        jittery.current_delay_ms,
        calm_again.target_delay_ms,
        calm_again.current_delay_ms
    );
    assert!(calm.target_delay_ms <= 25, "{calm:?}");
    assert!(jittery.target_delay_ms >= 40, "{jittery:?}");
    assert!(jittery.current_delay_ms >= 30, "{jittery:?}");
    assert!(calm_again.target_delay_ms <= 25, "{calm_again:?}");
    assert!(calm_again.current_delay_ms <= 45, "{calm_again:?}");
    assert_eq!(r.stats.received + r.stats.lost, r.sent);
}

#[test]
fn opus_losses_are_recovered_from_fec() {
    let phases = [Phase {
        seconds: 20,
        loss: 0.10,
        jitter_ms: 10.0,
    }];
    let r = simulate(AudioCodec::OPUS, &phases, 0.0, 3, true);
    report("opus 10 % loss", &r);
    let s = &r.stats;
    assert_eq!(s.received + s.lost, r.sent);
    // A lone loss is recovered from the next packet; a burst conceals the first ones.
    assert!(s.fec_recovered as f64 >= 0.6 * s.lost as f64, "{s:?}");
    let fec_frames = r
        .frames
        .iter()
        .filter(|f| matches!(f, Frame::FecRecovered(_)))
        .count() as u64;
    assert_eq!(fec_frames, s.fec_recovered);
}

fn pcmu_buffer() -> JitterBuffer {
    let decoder = AudioDecoder::new(AudioCodec::G711(Codec::Pcmu)).unwrap();
    JitterBuffer::new(decoder, 8000, JitterConfig::default())
}

#[test]
fn sequence_and_timestamp_wrap_lose_nothing() {
    let t0 = Instant::now();
    let mut jb = pcmu_buffer();
    let (seq0, ts0) = (65_400u16, u32::MAX - 160 * 50);
    let mut kinds = Vec::new();
    for k in 0..400u32 {
        let at = t0 + Duration::from_millis(20 * u64::from(k));
        // Pairs swap: packet 2n+1 arrives before 2n, each within its 20 ms.
        let order = if k % 2 == 0 {
            [k + 1, k]
        } else {
            [u32::MAX; 2]
        };
        for j in order.into_iter().filter(|j| *j < 400) {
            let r = jb.push(
                seq0.wrapping_add(j as u16),
                ts0.wrapping_add(j * 160),
                &[0x55; 160],
                at,
            );
            assert_eq!(r, Pushed::Buffered);
        }
        kinds.push(jb.pop(at + Duration::from_millis(10)));
    }
    // A replay of an old packet is a duplicate, not a new one.
    assert_eq!(
        jb.push(
            seq0.wrapping_add(398),
            ts0.wrapping_add(398 * 160),
            &[1; 160],
            t0
        ),
        Pushed::Duplicate
    );
    let s = jb.stats();
    assert_eq!(
        (s.received, s.lost, s.late, s.resets),
        (400, 0, 0, 0),
        "{s:?}"
    );
    let decoded = kinds
        .iter()
        .filter(|f| matches!(f, Frame::Decoded(_)))
        .count();
    assert!(decoded >= 395, "{decoded} decoded");
    assert_eq!(s.concealed, 0);
}

#[test]
fn hostile_jumps_restart_and_late_packets_are_counted() {
    let t0 = Instant::now();
    let mut jb = pcmu_buffer();
    for k in 0..100u32 {
        let at = t0 + Duration::from_millis(20 * u64::from(k));
        jb.push(k as u16, k * 160, &[0xFF; 160], at);
        jb.pop(at);
    }
    // Packet 10 again, long after its time: a duplicate of a played one is forgotten after
    // 64 packets, so it is late.
    let late_at = t0 + Duration::from_secs(2);
    assert_eq!(jb.push(10, 1600, &[0xFF; 160], late_at), Pushed::Late);
    assert_eq!(jb.push(100, 16_000, &[], late_at), Pushed::Empty);
    // A jump of 30 000 sequence numbers: a new stream.
    assert_eq!(
        jb.push(30_100, 16_160, &[0xFF; 160], late_at),
        Pushed::Restarted
    );
    let s = jb.stats();
    assert_eq!((s.late, s.discarded, s.resets), (1, 1, 1));
    assert_eq!(jb.pop(late_at).samples().len(), 160);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Arbitrary pushes (any sequence number, timestamp, payload) and pops at arbitrary times
    /// never panic, every frame has the frame size, and the counters stay consistent.
    #[test]
    fn random_push_pop_sequences_never_panic(
        opus in any::<bool>(),
        ops in prop::collection::vec(
            (any::<bool>(), any::<u16>(), any::<u32>(), prop::collection::vec(any::<u8>(), 0..200), 0u64..5000, any::<bool>()),
            1..200,
        ),
    ) {
        let codec = if opus { AudioCodec::OPUS } else { AudioCodec::G711(Codec::Pcma) };
        let t0 = Instant::now() + Duration::from_secs(100);
        let mut jb = JitterBuffer::new(
            AudioDecoder::new(codec).unwrap(),
            codec.clock_rate(),
            JitterConfig::default(),
        );
        let mut now = t0;
        let (mut seq, mut ts) = (0u16, 0u32);
        for (is_push, s, t, payload, dt_us, near) in ops {
            if is_push {
                // Half the pushes continue the stream, half are anywhere.
                if near {
                    seq = seq.wrapping_add(s % 4);
                    ts = ts.wrapping_add(t % 3000);
                } else {
                    (seq, ts) = (s, t);
                }
                // Arrival times may even go backwards.
                let arrival = if dt_us % 7 == 0 { now - Duration::from_millis(dt_us) } else { now };
                if payload.len() == 4 {
                    // A telephone-event packet in the same sequence space.
                    jb.skip(seq);
                } else {
                    jb.push(seq, ts, &payload, arrival);
                }
            } else {
                now += Duration::from_micros(dt_us * 10);
                let f = jb.pop(now);
                prop_assert_eq!(f.samples().len(), jb.frame_samples());
            }
        }
        let s = jb.stats();
        prop_assert!(s.late + s.decoded <= s.received + s.decode_errors);
    }
}
