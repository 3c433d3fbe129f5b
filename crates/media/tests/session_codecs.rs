//! `MediaSession` with the codec abstraction and its receive jitter buffer: an Opus call and a
//! G.711 call over a simulated lossy, jittery network and clock, played out every 20 ms.

use std::time::{Duration, Instant};

mod common;
use common::correlation;

use chaincall_media::codec::AudioCodec;
use chaincall_media::g711::Codec;
use chaincall_media::jitter::Frame;
use chaincall_media::signal::{SplitMix64, speech_like};
use chaincall_media::{MediaConfig, MediaOptions, MediaSession};
use chaincall_srtp::{Profile, SrtpConfig, SrtpSession};

fn srtp() -> SrtpSession {
    let key: Vec<u8> = (0..30u8).map(|i| i.wrapping_mul(7)).collect();
    SrtpSession::from_key_and_salt(SrtpConfig::new(Profile::AesCm128HmacSha1_80), &key).unwrap()
}

struct Outcome {
    alice: MediaSession,
    bob: MediaSession,
    frames: Vec<Frame>,
}

/// Alice sends `ms` of speech with `codec` to Bob over a network with `loss` and up to
/// `jitter_ms` of extra delay (which reorders); Bob plays out every 20 ms.
fn call(codec: AudioCodec, ms: u32, loss: f64, jitter_ms: f64, seed: u64) -> Outcome {
    let start = Instant::now();
    let mut options = MediaOptions {
        audio_codec: Some(codec),
        initial_sequence: Some(65_500),
        ..MediaOptions::default()
    };
    if jitter_ms == 0.0 {
        // A perfect network: start at the smallest delay, so that playout never has to
        // shrink it and every packet is played.
        options.jitter.initial_delay = options.jitter.min_delay;
    }
    let config = |ssrc, name: &str| MediaConfig::new(Codec::Pcmu, ssrc, name);
    let mut alice = MediaSession::with_options(
        config(1, "alice"),
        options.clone(),
        srtp(),
        srtp(),
        speech_like(ms, seed),
        start,
    );
    let mut bob =
        MediaSession::with_options(config(2, "bob"), options, srtp(), srtp(), Vec::new(), start);
    let mut rng = SplitMix64(seed);
    let mut in_flight: Vec<(Instant, Vec<u8>)> = Vec::new();
    let mut frames = Vec::new();
    let mut now = start;
    let end = start + Duration::from_millis(u64::from(ms) + 500);
    let mut first = true;
    while now < end {
        for p in chaincall_io::drain(|| alice.poll_output(now)).transmits {
            // The first packet always arrives (the jitter buffer's loss count starts there).
            if first || rng.range(0.0, 1.0) >= loss {
                let delay = 30.0 + rng.range(0.0, jitter_ms);
                in_flight.push((now + Duration::from_secs_f64(delay / 1000.0), p.contents));
            }
            first = false;
        }
        in_flight.sort_by_key(|(at, _)| *at);
        while in_flight.first().is_some_and(|(at, _)| *at <= now) {
            let (_, datagram) = in_flight.remove(0);
            bob.handle_input(&datagram, now).unwrap();
        }
        frames.push(bob.pop_audio(now));
        now += Duration::from_millis(20);
    }
    Outcome { alice, bob, frames }
}

/// The best correlation of `recorded` with `original` over lags 0..=max.
fn best_correlation(original: &[i16], recorded: &[i16], max: usize) -> (usize, f64) {
    (0..=max)
        .map(|lag| {
            (
                lag,
                correlation(original, recorded.get(lag..).unwrap_or(&[])),
            )
        })
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .unwrap()
}

#[test]
fn opus_call_records_and_plays_out_speech() {
    let original = speech_like(3000, 4);
    let o = call(AudioCodec::Opus { payload_type: 96 }, 3000, 0.0, 0.0, 4);
    let sent = o.alice.stats().rtp_sent;
    assert!(sent > 100, "{sent} packets");
    assert_eq!(o.bob.received_payload(), o.alice.sent_payload());
    // Recorded at 8 kHz, like the G.711 recording.
    let recorded = o.bob.recorded_audio();
    let (lag, corr) = best_correlation(&original, &recorded, 200);
    println!(
        "opus recording: {} samples, lag {lag}, correlation {corr:.3}",
        recorded.len()
    );
    assert!(corr > 0.85, "correlation {corr:.3}");
    // Played out at 48 kHz, 960 samples a frame.
    assert!(o.frames.iter().all(|f| f.samples().len() == 960));
    let decoded = o
        .frames
        .iter()
        .filter(|f| matches!(f, Frame::Decoded(_)))
        .count() as u64;
    assert_eq!(decoded, sent);
    assert_eq!(o.bob.codec(), AudioCodec::Opus { payload_type: 96 });
}

#[test]
fn opus_call_over_loss_and_jitter_uses_fec_and_counts_everything() {
    let o = call(AudioCodec::OPUS, 6000, 0.10, 40.0, 9);
    let sent = o.alice.stats().rtp_sent;
    let j = o.bob.jitter_stats();
    println!("{j:?}");
    // The last packets may be lost unseen; everything between first and last adds up.
    assert!(
        j.received + j.lost <= sent && j.received + j.lost + 5 >= sent,
        "{j:?}"
    );
    assert_eq!(j.received, o.bob.stats().rtp_received);
    assert!(j.fec_recovered > 0, "{j:?}");
    let fec_frames = o
        .frames
        .iter()
        .filter(|f| matches!(f, Frame::FecRecovered(_)))
        .count() as u64;
    assert_eq!(fec_frames, j.fec_recovered);
    assert!(j.target_delay_ms >= 40, "{j:?}");
}

#[test]
fn g711_playout_is_the_decoded_stream_when_nothing_is_lost() {
    let original = speech_like(2000, 6);
    let o = call(Codec::Pcma.into(), 2000, 0.0, 0.0, 6);
    let played: Vec<i16> = o
        .frames
        .iter()
        .skip_while(|f| matches!(f, Frame::Silence(_)))
        .take_while(|f| matches!(f, Frame::Decoded(_)))
        .flat_map(|f| f.samples().to_vec())
        .collect();
    assert_eq!(played.len(), original.len());
    let mut expected = Vec::new();
    let mut encoded = Vec::new();
    Codec::Pcma.encode(&original, &mut encoded);
    Codec::Pcma.decode(&encoded, &mut expected);
    assert_eq!(played, expected);
    assert_eq!(o.bob.recorded_audio(), expected);
}
