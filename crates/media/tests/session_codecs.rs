//! `MediaSession` with the codec abstraction and its receive jitter buffer: an Opus call and a
//! G.711 call over a simulated lossy, jittery network and clock, played out every 20 ms.

use std::time::{Duration, Instant};

mod common;
use common::correlation;

use chaincall_media::codec::AudioCodec;
use chaincall_media::g711::Codec;
use chaincall_media::jitter::{Frame, JitterConfig};
use chaincall_media::sdp::TelephoneEvent;
use chaincall_media::signal::{SplitMix64, speech_like};
use chaincall_media::{MediaConfig, MediaError, MediaEvent, MediaOptions, MediaSession};
use chaincall_srtp::{Profile, SrtpConfig, SrtpSession};

fn srtp() -> SrtpSession {
    let key: Vec<u8> = (0..30u8).map(|i| i.wrapping_mul(7)).collect();
    SrtpSession::from_key_and_salt(SrtpConfig::new(Profile::AesCm128HmacSha1_80), &key).unwrap()
}

struct Outcome {
    alice: MediaSession,
    bob: MediaSession,
    frames: Vec<Frame>,
    /// DTMF digits Bob was told of, in order.
    digits: String,
}

/// Alice sending `source` and Bob sending nothing, both with `options`, from `start`.
fn pair(options: MediaOptions, source: Vec<i16>, start: Instant) -> (MediaSession, MediaSession) {
    let config = |ssrc, name: &str| MediaConfig::new(Codec::Pcmu, ssrc, name);
    let alice = MediaSession::with_options(
        config(1, "alice"),
        options.clone(),
        srtp(),
        srtp(),
        source,
        start,
    );
    let bob =
        MediaSession::with_options(config(2, "bob"), options, srtp(), srtp(), Vec::new(), start);
    (alice, bob)
}

/// Alice sends `ms` of speech with `codec` to Bob over a network with `loss` and up to
/// `jitter_ms` of extra delay (which reorders); Bob plays out every 20 ms.
fn call(codec: AudioCodec, ms: u32, loss: f64, jitter_ms: f64, seed: u64) -> Outcome {
    call_with_dtmf(codec, ms, loss, jitter_ms, seed, None)
}

/// As `call`, with `dtmf` digits sent by Alice one second in, over telephone-event on
/// payload type 101 at 8 kHz (both sides negotiated it).
fn call_with_dtmf(
    codec: AudioCodec,
    ms: u32,
    loss: f64,
    jitter_ms: f64,
    seed: u64,
    dtmf: Option<&str>,
) -> Outcome {
    let start = Instant::now();
    let mut options = MediaOptions {
        audio_codec: Some(codec),
        initial_sequence: Some(65_500),
        ..MediaOptions::default()
    };
    if dtmf.is_some() {
        options.telephone_event = Some(TelephoneEvent {
            payload_type: 101,
            clock_rate: 8000,
            events: vec![0..=16],
        });
    }
    if jitter_ms == 0.0 {
        // A perfect network: start at the smallest delay, so that playout never has to
        // shrink it and every packet is played.
        options.jitter.initial_delay = options.jitter.min_delay;
    }
    let (mut alice, mut bob) = pair(options, speech_like(ms, seed), start);
    let mut rng = SplitMix64(seed);
    let mut in_flight: Vec<(Instant, Vec<u8>)> = Vec::new();
    let mut frames = Vec::new();
    let mut now = start;
    let end = start + Duration::from_millis(u64::from(ms) + 500);
    let mut first = true;
    let mut digits = String::new();
    while now < end {
        if let Some(d) = dtmf.filter(|_| now == start + Duration::from_secs(1)) {
            alice.send_dtmf(d).unwrap();
        }
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
            if let MediaEvent::Dtmf(Some(e)) = bob.handle_input(&datagram, now).unwrap() {
                digits.extend(e.digit);
            }
        }
        frames.push(bob.pop_audio(now));
        now += Duration::from_millis(20);
    }
    Outcome {
        alice,
        bob,
        frames,
        digits,
    }
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

#[test]
fn dtmf_digits_cross_a_lossy_call_once_each_and_pause_the_audio() {
    for (codec, seed) in [(AudioCodec::G711(Codec::Pcmu), 21), (AudioCodec::OPUS, 22)] {
        let o = call_with_dtmf(codec, 3000, 0.10, 20.0, seed, Some("123#"));
        assert_eq!(o.digits, "123#", "{codec}");
        let j = o.bob.jitter_stats();
        let sent = o.alice.stats().rtp_sent;
        // Four events of four packets each went out in the audio's sequence numbers; they are
        // neither audio nor lost.
        assert!(j.other >= 12 && j.other <= 16, "{j:?}");
        assert!(j.received + j.other + j.lost <= sent, "{j:?} of {sent}");
        assert!(j.received + j.other + j.lost + 5 >= sent, "{j:?} of {sent}");
        assert_eq!(o.bob.stats().rtp_received, j.received + j.other);
    }
    // Without a negotiated telephone-event there is nothing to send DTMF with, and a peer's
    // telephone-event packets are an unexpected payload type.
    let mut plain = call(Codec::Pcmu.into(), 100, 0.0, 0.0, 1);
    assert_eq!(
        plain.alice.send_dtmf("1"),
        Err(MediaError::NoTelephoneEvent)
    );
    let with = call_with_dtmf(Codec::Pcmu.into(), 100, 0.0, 0.0, 1, Some(""));
    let mut alice = with.alice;
    assert_eq!(
        alice.send_dtmf("12x"),
        Err(MediaError::Dtmf(
            chaincall_media::dtmf::DtmfError::NotADigit('x')
        ))
    );
    alice.send_dtmf("5").unwrap();
    // The event's packets come 50 ms apart: drain for a quarter second.
    let start = Instant::now() + Duration::from_secs(5);
    let transmits: Vec<_> = (0..6)
        .flat_map(|i| {
            let now = start + Duration::from_millis(50 * i);
            chaincall_io::drain(|| alice.poll_output(now)).transmits
        })
        .collect();
    let rejected = transmits
        .iter()
        .map(|p| plain.bob.handle_input(&p.contents, start))
        .filter(|r| matches!(r, Err(MediaError::UnexpectedPayloadType(101))))
        .count();
    assert_eq!(rejected, 4, "{} packets", transmits.len());
}

#[test]
fn a_hostile_opus_peer_cannot_inflate_the_recording() {
    let start = Instant::now();
    let options = MediaOptions {
        audio_codec: Some(AudioCodec::OPUS),
        max_recorded_octets: 100,
        ..MediaOptions::default()
    };
    let mut bob = MediaSession::with_options(
        MediaConfig::new(Codec::Pcmu, 2, "bob"),
        options,
        srtp(),
        srtp(),
        Vec::new(),
        start,
    );
    // One-octet Opus packets (a TOC byte: 20 ms each) with large sequence and timestamp jumps.
    let mut peer = srtp();
    for k in 0..100u16 {
        let payload = [0xFC];
        let p = chaincall_media::rtp::RtpPacket::new(
            111,
            k.wrapping_mul(300),
            u32::from(k) * 400_000,
            7,
            &payload,
        );
        let mut buf = Vec::new();
        p.write(&mut buf).unwrap();
        peer.protect_rtp(&mut buf).unwrap();
        let _ = bob.handle_input(&buf, start);
    }
    let recorded = bob.recorded_audio();
    // 100 octets of G.711 would be 100 samples plus as much fill: the same bound applies.
    assert!(recorded.len() <= 200, "{} samples", recorded.len());
}

/// Alice sends Opus speech to Bob for `ms` over a path losing `loss` of her packets; Bob's
/// RTCP reports come back without loss. Returns Alice's loss hint after each of them.
fn loss_hints_over(loss: f64, ms: u32, seed: u64, adaptive: bool) -> Vec<Option<u8>> {
    let start = Instant::now();
    let options = MediaOptions {
        audio_codec: Some(AudioCodec::OPUS),
        adaptive_loss_hint: adaptive,
        ..MediaOptions::default()
    };
    let (mut alice, mut bob) = pair(options, speech_like(ms, seed), start);
    assert_eq!(
        alice.opus_loss_hint(),
        Some(10),
        "OpusConfig's default to start with"
    );
    let mut rng = SplitMix64(seed);
    let mut hints = Vec::new();
    let mut now = start;
    while now < start + Duration::from_millis(u64::from(ms)) {
        for p in chaincall_io::drain(|| alice.poll_output(now)).transmits {
            if rng.range(0.0, 1.0) >= loss {
                bob.handle_input(&p.contents, now).unwrap();
            }
        }
        for p in chaincall_io::drain(|| bob.poll_output(now)).transmits {
            alice.handle_input(&p.contents, now).unwrap();
            hints.push(alice.opus_loss_hint());
        }
        now += Duration::from_millis(20);
    }
    hints
}

/// The Opus loss hint follows the loss Bob reports over RTCP: down to 0 on a clean path, where
/// the FEC copy would only cost quality (crates/bench/BENCH-audio.md), and about the loss on a
/// lossy one, where FEC pays.
#[test]
fn opus_loss_hint_follows_the_loss_the_peer_reports() {
    let clean = loss_hints_over(0.0, 8000, 61, true);
    assert!(clean.len() >= 6, "{} reports", clean.len());
    assert_eq!(clean.last(), Some(&Some(0)), "{clean:?}");
    let lossy = loss_hints_over(0.2, 8000, 62, true);
    let settled: Vec<u8> = lossy[lossy.len() / 2..].iter().flatten().copied().collect();
    println!("20 % loss: hints {lossy:?}");
    assert!(
        settled.iter().all(|&h| (10..=45).contains(&h)),
        "20 % loss: {lossy:?}"
    );
    // `adaptive_loss_hint: false` (the demo's phones) keeps the configured hint.
    let fixed = loss_hints_over(0.2, 3000, 63, false);
    assert!(fixed.iter().all(|&h| h == Some(10)), "{fixed:?}");
}

/// Energy of `x` at `freq` Hz (Goertzel), per sample.
fn tone_energy(x: &[i16], freq: f64, rate: f64) -> f64 {
    let w = 2.0 * std::f64::consts::PI * freq / rate;
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for &v in x {
        let s0 = f64::from(v) + 2.0 * w.cos() * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    (s1 * s1 + s2 * s2 - 2.0 * w.cos() * s1 * s2) / x.len().max(1) as f64
}

/// A 48 kHz source (`MediaOptions::source_rate`) crosses an Opus call as it is, and the
/// recording at the codec's rate keeps what lies above 4 kHz (a 6 kHz tone under the speech),
/// which the 8 kHz recording, and an 8 kHz source, cannot carry.
#[test]
fn a_48_khz_source_and_recording_keep_the_band_above_4_khz() {
    let start = Instant::now();
    let speech = chaincall_media::resample::upsample_8k_to_48k(&speech_like(3000, 71));
    let source: Vec<i16> = speech
        .iter()
        .enumerate()
        .map(|(n, &s)| {
            let tone = 3000.0 * (2.0 * std::f64::consts::PI * 6000.0 * n as f64 / 48_000.0).sin();
            (f64::from(s) + tone).round() as i16
        })
        .collect();
    let options = MediaOptions {
        audio_codec: Some(AudioCodec::OPUS),
        source_rate: 48_000,
        ..MediaOptions::default()
    };
    let (mut alice, mut bob) = pair(options, source.clone(), start);
    let mut now = start;
    while !alice.source_done() {
        for p in chaincall_io::drain(|| alice.poll_output(now)).transmits {
            bob.handle_input(&p.contents, now).unwrap();
        }
        now += Duration::from_millis(20);
    }
    let wide = bob.recorded_audio_at_codec_rate();
    let narrow = bob.recorded_audio();
    assert_eq!(
        wide.len(),
        6 * narrow.len(),
        "48 kHz and 8 kHz of the same audio"
    );
    let tone_in = tone_energy(&source, 6000.0, 48_000.0);
    let tone_out = tone_energy(&wide, 6000.0, 48_000.0);
    let ratio_db = 10.0 * (tone_out / tone_in).log10();
    println!("6 kHz tone: {ratio_db:.1} dB through the call");
    assert!(ratio_db > -6.0, "the 6 kHz tone lost: {ratio_db:.1} dB");
    let (_, c) = best_correlation(&source, &wide, 2000);
    assert!(c > 0.8, "correlation with the 48 kHz source {c:.3}");
}

#[test]
fn opus_losses_on_a_steady_network_are_recovered_from_fec() {
    // Constant transit, no jitter, and each packet lands just after the slot it is played in
    // (a shell's playout timer fires before the socket is read): a one-packet playout delay
    // would play a lost packet's slot before the next packet, whose FEC recovers it, arrived.
    let start = Instant::now();
    let options = MediaOptions {
        audio_codec: Some(AudioCodec::OPUS),
        jitter: JitterConfig {
            initial_delay: Duration::from_millis(20),
            ..JitterConfig::default()
        },
        ..MediaOptions::default()
    };
    let (mut alice, mut bob) = pair(options, speech_like(6000, 21), start);
    let mut rng = SplitMix64(21);
    let mut in_flight: Vec<(Instant, Vec<u8>)> = Vec::new();
    let ptime = Duration::from_millis(20);
    let mut now = start;
    while now < start + Duration::from_millis(6500) {
        bob.pop_audio(now);
        in_flight.retain(|(at, datagram)| {
            let due = *at <= now;
            if due {
                bob.handle_input(datagram, now).unwrap();
            }
            !due
        });
        for (k, p) in chaincall_io::drain(|| alice.poll_output(now))
            .transmits
            .into_iter()
            .enumerate()
        {
            if alice.stats().rtp_sent < 3 || k > 0 || rng.range(0.0, 1.0) >= 0.05 {
                in_flight.push((now + 3 * ptime, p.contents));
            }
        }
        now += ptime;
    }
    let j = bob.jitter_stats();
    println!("{j:?}");
    assert!(j.lost >= 8, "{j:?}");
    assert!(
        j.fec_recovered * 10 >= j.lost * 8,
        "only {} of {} lost packets recovered from FEC: {j:?}",
        j.fec_recovered,
        j.lost
    );
}

#[test]
fn kept_playout_is_what_pop_audio_handed_out_from_its_first_slot() {
    let start = Instant::now();
    let options = MediaOptions {
        audio_codec: Some(AudioCodec::OPUS),
        keep_playout: Duration::from_millis(100),
        ..MediaOptions::default()
    };
    let (alice, mut bob) = pair(options, speech_like(200, 3), start);
    assert!(bob.playout().samples.is_empty() && bob.playout().started.is_none());
    assert_eq!(alice.source_started(), start);
    let first = start + Duration::from_millis(7);
    let mut handed = Vec::new();
    for k in 0..8u32 {
        handed.extend_from_slice(
            bob.pop_audio(first + k * Duration::from_millis(20))
                .samples(),
        );
    }
    let kept = bob.playout();
    assert_eq!(kept.started, Some(first));
    assert_eq!(kept.rate, 48_000);
    // Bounded at 100 ms: the first five frames.
    assert_eq!(kept.samples, handed[..4800]);
    // Nothing is kept unless asked.
    let (_, mut quiet) = pair(MediaOptions::default(), Vec::new(), start);
    quiet.pop_audio(first);
    assert!(quiet.playout().samples.is_empty() && quiet.playout().started.is_none());
}
