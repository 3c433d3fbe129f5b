//! Calls on sound cards (`audio = "device"`), through real ALSA without one: each test re-runs
//! itself in a child process whose `ALSA_CONFIG_PATH` names a configuration written here, in
//! which every phone has its own microphone (ALSA's `file` plugin reading a raw file the test
//! wrote) and speaker (the same plugin writing one), over the `null` plugin in place of a card.
//! Each phone opens its own two PCMs by name (`input_device`/`output_device`), so the two phones
//! of a call are as apart as two machines' sound cards.
//!
//! `null` has no clock: the microphone file is in the capture ring at once (the phone still
//! takes one frame per packet time, on its own clock), and the speaker plays only at the end of
//! the call, when the phone flushes it: the rings and the prebuffer are sized to hold the whole
//! call (`device_buffer_ms`, `device_prebuffer_ms`), so nothing is dropped and no underrun
//! splits what was heard.

mod common;

use std::path::Path;
use std::time::Duration;

use chaincall_audio_device::DeviceSelector;
use chaincall_media::AudioCodec;
use chaincall_media::g711::Codec;
use chaincall_media::resample::{downsample_48k_to_8k, upsample_8k_to_48k};
use chaincall_media::signal::{correlation, speech_like};
use chaincall_phone::{CallReport, DEFAULT_CODECS, DeviceAudio, PhoneConfig, VoiceProcessing};
use common::*;

const ALICE: &str = "+15550700001";
const BOB: &str = "+15550700002";

/// Set in the child: the directory holding the configuration and the audio files.
const DIR_VAR: &str = "CHAINCALL_PHONE_ALSA_DIR";

/// How long each microphone speaks, ms.
const SPEECH_MS: u32 = 2000;

/// What each phone's microphone says (8 kHz; the device runs at the codec's rate).
fn speech(phone: &str) -> Vec<i16> {
    speech_like(SPEECH_MS, if phone == "alice" { 21 } else { 22 })
}

/// The parent: writes the configuration and the microphone files at `rate`, runs `test` in a
/// child under it, and returns the directory with the speaker files. `None` in the child.
fn in_alsa_child(test: &str, rate: u32) -> Option<tempfile::TempDir> {
    if std::env::var_os(DIR_VAR).is_some() {
        return None;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let conf = dir.path().join("asound.conf");
    let config = chaincall_testkit::alsa_file_config(dir.path(), &["alice", "bob"]);
    std::fs::write(&conf, config).expect("write the ALSA config");
    for phone in ["alice", "bob"] {
        // Silence after the speech, longer than the call: once `infile` is exhausted the `file`
        // plugin repeats what is left in its buffer, which is no one's speech.
        let mut said = speech(phone);
        said.resize(said.len() + 8 * 5000, 0);
        let mic = match rate {
            48_000 => upsample_8k_to_48k(&said),
            _ => said,
        };
        chaincall_testkit::write_raw_pcm(&dir.path().join(format!("{phone}_mic.raw")), &mic);
    }
    chaincall_testkit::rerun_in_child(
        test,
        &[
            ("ALSA_CONFIG_PATH", conf.as_os_str()),
            (DIR_VAR, dir.path().as_os_str()),
        ],
    );
    Some(dir)
}

/// In the child: whether ALSA or its `file`/`null` plugins are missing (then the test skips, or
/// fails with `CHAINCALL_REQUIRE_PEERS=1`).
fn alsa_missing() -> bool {
    let problem = match chaincall_audio_device::list_devices() {
        Err(e) => Some(e.to_string()),
        Ok(list) if !list.outputs().any(|d| d.name == "alice_speaker") => {
            Some("the `file`/`null` PCM plugins cannot be opened".to_owned())
        }
        Ok(_) => None,
    };
    problem.is_some_and(|p| {
        chaincall_testkit::missing::<()>(&format!("ALSA (Debian libasound2): {p}"));
        true
    })
}

/// `phone`'s devices: its own microphone (or `mic`, when given) and speaker, with rings that
/// hold the whole call; echo cancellation and noise suppression as `processing` says.
fn devices(
    phone: &str,
    mic: Option<&str>,
    codecs: &[AudioCodec],
    processing: VoiceProcessing,
) -> impl FnOnce(&mut PhoneConfig) {
    let devices = DeviceAudio {
        input: DeviceSelector::Named(mic.map_or_else(|| format!("{phone}_mic"), str::to_owned)),
        output: DeviceSelector::Named(format!("{phone}_speaker")),
        buffer_ms: Some(10_000),
        prebuffer_ms: Some(10_000),
        processing,
    };
    let codecs = codecs.to_vec();
    move |c: &mut PhoneConfig| {
        c.codecs = codecs;
        c.audio = Default::default();
        c.devices = Some(devices);
    }
}

/// In the child: alice calls bob, both talking on their devices, for a little longer than the
/// microphone files last; returns both reports. Echo cancellation and noise suppression are
/// alice's `processing`, and off for bob: their waveforms are not the microphone's (they have
/// tests of their own in chaincall-audio-device), and here, where the clock-less `null` card's
/// callback threads spin, they would compete for the CPU with the phones themselves.
fn call_on_devices(
    codecs: &[AudioCodec],
    alice_mic: Option<&str>,
    processing: VoiceProcessing,
) -> (CallReport, CallReport) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut net = Net::start().await;
        let Talking {
            caller: (alice, mut alice_ev),
            callee: (bob, mut bob_ev),
            call,
        } = net
            .call_up_between(
                (ALICE, devices("alice", alice_mic, codecs, processing)),
                (BOB, devices("bob", None, codecs, VoiceProcessing::OFF)),
                0,
            )
            .await;
        // Talk for the length of the microphone files and a little more (a wait: the call's
        // length, not a timed assertion).
        tokio::time::sleep(Duration::from_millis(u64::from(SPEECH_MS) + 700)).await;
        alice.hangup(&call).await.unwrap();
        let a = call_ended(&mut alice_ev).await;
        let b = call_ended(&mut bob_ev).await;
        for p in [alice, bob] {
            p.shutdown().await;
        }
        net.stop();
        (a, b)
    })
}

/// 100 ms at 8 kHz: the pieces `heard` is compared in.
const WINDOW: usize = 800;

/// Whether a 100 ms window has sound in it (the test signal's pauses hold a faint noise).
fn voiced(w: &[i16]) -> bool {
    w.iter().any(|&s| s.unsigned_abs() >= 100)
}

/// How much of `heard` is `said`, piece by piece: for each 100 ms window of `heard` with sound
/// in it, the best correlation with any 100 ms of `said`. Piecewise because the jitter buffer
/// legitimately drops or conceals a frame now and then (adapting its delay), which shifts all
/// that follows. Returns the share of windows that match (correlation at least `min`), and how
/// many matched for each voiced window of `said` (1.0: all of the speech was heard).
fn matched(said: &[i16], heard: &[i16], min: f64) -> (f64, f64) {
    let (mut windows, mut matching) = (0usize, 0usize);
    for w in heard.chunks_exact(WINDOW).filter(|w| voiced(w)) {
        windows += 1;
        let best = (0..said.len().saturating_sub(WINDOW))
            .step_by(2)
            .map(|at| correlation(&said[at..at + WINDOW], w))
            .fold(f64::MIN, f64::max);
        matching += usize::from(best >= min);
    }
    let said_windows = said.chunks_exact(WINDOW).filter(|w| voiced(w)).count();
    let share = |n: usize, of: usize| n as f64 / of.max(1) as f64;
    (share(matching, windows), share(matching, said_windows))
}

/// `received` is what was `sent`, but for the packets still in flight at the hang-up (a live
/// microphone sends until then): at most five.
fn assert_prefix(sent: &[u8], received: &[u8]) {
    assert!(sent.starts_with(received), "received what was not sent");
    let missing = sent.len() - received.len();
    assert!(missing <= 5 * 160, "{missing} octets sent never arrived");
    assert!(received.len() > 10 * 160, "almost nothing arrived");
}

/// What `phone`'s speaker played, at 8 kHz, from its first sound on: the clock-less `null`
/// card plays silence as fast as it can until the phone's flush at the end of the call starts
/// the speaker.
fn heard(dir: &Path, phone: &str, rate: u32) -> Vec<i16> {
    let mut played = chaincall_testkit::read_raw_pcm(&dir.join(format!("{phone}_speaker.raw")));
    let sound = played.iter().position(|&s| s != 0).unwrap_or(played.len());
    played.drain(..sound);
    match rate {
        48_000 => downsample_48k_to_8k(&played),
        _ => played,
    }
}

/// Two phones talk Opus on their own devices: what each speaker played is what the other's
/// microphone said (Opus-coded: correlation, as the demo compares), and not its own.
#[test]
fn two_phones_talk_opus_on_their_alsa_devices() {
    const TEST: &str = "two_phones_talk_opus_on_their_alsa_devices";
    let Some(dir) = in_alsa_child(TEST, 48_000) else {
        if !alsa_missing() {
            let (a, b) = call_on_devices(&DEFAULT_CODECS, None, VoiceProcessing::OFF);
            for r in [&a, &b] {
                assert_eq!(r.codec, AudioCodec::OPUS);
                assert!(r.audio_warnings.is_empty(), "{:?}", r.audio_warnings);
                assert_eq!(r.stats.rtp_rejected, 0, "{:?}", r.stats);
            }
            assert_prefix(&a.sent_payload, &b.received_payload);
            assert_prefix(&b.sent_payload, &a.received_payload);
        }
        return;
    };
    for (speaker, mic) in [("bob", "alice"), ("alice", "bob")] {
        let heard = heard(dir.path(), speaker, 48_000);
        // Opus keeps the waveform only roughly (the media tests' whole-signal figure is 0.85).
        let (share, coverage) = matched(&speech(mic), &heard, 0.7);
        let (own, _) = matched(&speech(speaker), &heard, 0.7);
        println!(
            "{speaker} heard {mic}: {:.0} % of the windows match, {:.0} % of the speech heard \
             (own microphone: {:.0} %)",
            share * 100.0,
            coverage * 100.0,
            own * 100.0
        );
        // A window holding a frame the jitter buffer dropped or concealed does not match; there
        // are more of them on a loaded machine (the clock-less `null` card spins its callback
        // threads). Most windows must match; before devices were wired, none did.
        assert!(
            share >= 0.7 && coverage >= 0.6,
            "{speaker}'s speaker vs {mic}'s microphone"
        );
        assert!(own * 3.0 < share, "{speaker} heard their own microphone");
    }
}

/// G.711 on 8 kHz devices, with alice's microphone missing: her call goes through sending
/// silence, her report and log say which device and why, bob hears silence (her echo
/// cancellation and noise suppression, on as by default, do not turn it into noise), and she
/// still hears bob.
#[test]
fn a_missing_microphone_sends_silence_and_the_report_says_so() {
    const TEST: &str = "a_missing_microphone_sends_silence_and_the_report_says_so";
    let Some(dir) = in_alsa_child(TEST, 8_000) else {
        if !alsa_missing() {
            let pcmu = [AudioCodec::G711(Codec::Pcmu)];
            let (a, b) = call_on_devices(&pcmu, Some("usb_headset"), VoiceProcessing::default());
            let warning = a.audio_warnings.join("\n");
            assert!(
                warning.contains("microphone unavailable, sending silence")
                    && warning.contains("usb_headset")
                    && warning.contains("alice_mic"),
                "{warning}"
            );
            assert!(b.audio_warnings.is_empty(), "{:?}", b.audio_warnings);
            assert_prefix(&a.sent_payload, &b.received_payload);
        }
        return;
    };
    let alice_heard = heard(dir.path(), "alice", 8_000);
    let (share, coverage) = matched(&speech("bob"), &alice_heard, 0.9);
    println!(
        "alice heard bob: {:.0} % of the windows match, {:.0} % of the speech heard",
        share * 100.0,
        coverage * 100.0
    );
    assert!(
        share >= 0.7 && coverage >= 0.6,
        "alice's speaker vs bob's microphone"
    );
    let bob_heard = chaincall_testkit::read_raw_pcm(&dir.path().join("bob_speaker.raw"));
    // µ-law silence decodes to zero: bob's speaker played nothing but silence.
    assert!(!bob_heard.is_empty() && bob_heard.iter().all(|&s| s == 0));
}
