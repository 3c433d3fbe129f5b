//! Echo cancellation and noise suppression (`VoiceProcessor`) on a simulated room: the far end's
//! speech is "played" (rendered) and comes back into the "microphone" delayed, attenuated and
//! smeared by a short room response; the near end's speech and steady noise are added to it.
//! What is asserted is what the far end would hear in what we send: its own voice much quieter
//! than it came in (ERLE), our voice still there, the hiss lower, our voice kept.

use chaincall_audio_device::{VoiceProcessing, VoiceProcessor};
use chaincall_media::resample::upsample_8k_to_48k;
use chaincall_media::signal::{SplitMix64, correlation, speech_like};

/// How long each scenario runs, ms: time for AEC3 to converge, then as long again to measure.
const LENGTH_MS: u32 = 12_000;

/// Speech at `rate` (8 or 48 kHz), `seed` picking the talker's syllables.
fn speech(rate: u32, seed: u64) -> Vec<i16> {
    let narrow = speech_like(LENGTH_MS, seed);
    match rate {
        48_000 => upsample_8k_to_48k(&narrow),
        _ => narrow,
    }
}

/// What the microphone picks up of the speaker playing `far`: 60 ms later (the device buffers
/// and the air), 6 dB down, through a three-tap room response; `gain` 0 is a headset.
fn echo_of(far: &[i16], rate: u32, gain: f64) -> Vec<f64> {
    let delay = rate as usize * 60 / 1000;
    let tap = rate as usize / 1000; // 1 ms apart
    (0..far.len())
        .map(|n| {
            let at = |k: usize| n.checked_sub(k).map_or(0.0, |i| f64::from(far[i]));
            gain * (0.5 * at(delay) + 0.2 * at(delay + tap) + 0.1 * at(delay + 3 * tap))
        })
        .collect()
}

/// Runs the processor over a call of 20 ms frames: `far` rendered, `mic` captured; returns what
/// would be sent.
fn run(rate: u32, settings: VoiceProcessing, far: &[i16], mic: &[f64]) -> Vec<i16> {
    let mut p = VoiceProcessor::new(rate, settings)
        .expect("processor")
        .expect("something to do");
    let frame = rate as usize / 50;
    let mut sent = Vec::with_capacity(mic.len());
    for (far, mic) in far.chunks(frame).zip(mic.chunks(frame)) {
        p.render(far).expect("render");
        let mut captured: Vec<i16> = mic
            .iter()
            .map(|&s| s.round().clamp(-32768.0, 32767.0) as i16)
            .collect();
        p.capture(&mut captured).expect("capture");
        sent.extend_from_slice(&captured);
    }
    sent
}

/// Energy of `x` in dB (relative to one LSB², per sample).
fn energy_db(x: &[i16]) -> f64 {
    let e: f64 = x.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / x.len().max(1) as f64;
    10.0 * e.max(1e-9).log10()
}

/// The second half: after convergence.
fn settled<T>(x: &[T]) -> &[T] {
    &x[x.len() / 2..]
}

/// `x` shifted `by` samples later (for an 8 kHz processor, whose output is that late).
fn delayed(x: &[i16], by: usize) -> Vec<i16> {
    let mut out = vec![0; by];
    out.extend_from_slice(&x[..x.len() - by]);
    out
}

/// The lag (at most 30 ms) at which `sent` best matches `near`, and the correlation there
/// (settled parts): processing delays the voice by a few ms, which no listener notices.
fn aligned(sent: &[i16], near: &[i16], rate: u32) -> (usize, f64) {
    let at = |lag: usize| correlation(settled(sent), settled(&delayed(near, lag)));
    let ms = rate as usize / 1000;
    // Coarse in 1 ms steps, then sample by sample around the best.
    let coarse = (0..=30)
        .map(|k| k * ms)
        .max_by(|&a, &b| at(a).total_cmp(&at(b)));
    let coarse = coarse.expect("lags");
    let fine = (coarse.saturating_sub(ms)..=coarse + ms).max_by(|&a, &b| at(a).total_cmp(&at(b)));
    let lag = fine.expect("lags");
    (lag, at(lag))
}

fn pcm(x: &[f64]) -> Vec<i16> {
    x.iter().map(|&s| s.round() as i16).collect()
}

#[test]
fn echo_of_the_far_end_is_cancelled_by_at_least_15_db_at_48_and_8_khz() {
    for rate in [48_000, 8_000] {
        let far = speech(rate, 31);
        let echo = echo_of(&far, rate, 1.0);
        let sent = run(
            rate,
            VoiceProcessing {
                noise_suppression: false,
                ..VoiceProcessing::default()
            },
            &far,
            &echo,
        );
        let erle = energy_db(settled(&pcm(&echo))) - energy_db(settled(&sent));
        eprintln!("{rate} Hz: ERLE {erle:.1} dB");
        assert!(erle >= 15.0, "{rate} Hz: echo only {erle:.1} dB down");
    }
}

/// Double talk, on a loudspeaker (echo) and on a headset (none: nothing for the canceller to
/// find, which must not make it cut our voice whenever the far end talks).
#[test]
fn near_end_speech_survives_while_the_far_end_talks_too() {
    for (rate, gain) in [(48_000, 1.0), (8_000, 1.0), (48_000, 0.0), (8_000, 0.0)] {
        let far = speech(rate, 41);
        let near = speech(rate, 42);
        let echo = echo_of(&far, rate, gain);
        let mic: Vec<f64> = echo
            .iter()
            .zip(&near)
            .map(|(e, &n)| e + f64::from(n))
            .collect();
        let sent = run(rate, VoiceProcessing::default(), &far, &mic);
        let unprocessed = correlation(settled(&pcm(&mic)), settled(&near));
        let (_, kept) = aligned(&sent, &near, rate);
        let level = energy_db(settled(&sent)) - energy_db(settled(&near));
        eprintln!(
            "{rate} Hz, echo gain {gain}: correlation with the near end {kept:.3} (unprocessed \
             {unprocessed:.3}), level {level:+.1} dB"
        );
        assert!(
            kept >= 0.85,
            "{rate} Hz, echo {gain}: near-end speech damaged: {kept:.3}"
        );
        assert!(
            level > -3.0,
            "{rate} Hz, echo {gain}: near-end speech cut by {level:.1} dB"
        );
    }
}

#[test]
fn steady_noise_is_lowered_by_at_least_10_db_and_speech_is_kept() {
    for rate in [48_000, 8_000] {
        let near = speech(rate, 51);
        // White noise at about −40 dBFS: a fan, a hiss. No far end: nothing to cancel.
        let mut rng = SplitMix64(52);
        let noise: Vec<f64> = (0..near.len()).map(|_| rng.range(-570.0, 570.0)).collect();
        let mic: Vec<f64> = near
            .iter()
            .zip(&noise)
            .map(|(&s, n)| f64::from(s) + n)
            .collect();
        let silence = vec![0; near.len()];
        let sent = run(rate, VoiceProcessing::default(), &silence, &mic);
        let (lag, kept) = aligned(&sent, &near, rate);
        let near = delayed(&near, lag);
        // Noise alone: the pauses between the speech, frame by frame.
        let frame = rate as usize / 50;
        let (mut noise_in, mut noise_out) = (Vec::new(), Vec::new());
        let mic = delayed(&pcm(&mic), lag);
        for ((clean, sent), mic) in settled(&near)
            .chunks(frame)
            .zip(settled(&sent).chunks(frame))
            .zip(settled(&mic).chunks(frame))
        {
            if clean.iter().all(|s| s.unsigned_abs() < 16) {
                noise_in.extend_from_slice(mic);
                noise_out.extend_from_slice(sent);
            }
        }
        assert!(noise_in.len() > 10 * frame, "{rate} Hz: too few pauses");
        let lowered = energy_db(&noise_in) - energy_db(&noise_out);
        eprintln!("{rate} Hz: noise {lowered:.1} dB down, speech correlation {kept:.3}");
        assert!(
            lowered >= 10.0,
            "{rate} Hz: noise only {lowered:.1} dB down"
        );
        assert!(kept >= 0.9, "{rate} Hz: speech damaged: {kept:.3}");
    }
}

#[test]
fn nothing_to_do_and_unsupported_rates_are_told() {
    assert!(
        VoiceProcessor::new(48_000, VoiceProcessing::OFF)
            .unwrap()
            .is_none()
    );
    let e = VoiceProcessor::new(11_025, VoiceProcessing::default()).unwrap_err();
    assert!(e.to_string().contains("11025 Hz is not supported"), "{e}");
}
