//! The device path through real ALSA without a sound card. This machine has no ALSA kernel
//! drivers at all (no `/proc/asound`, so no `snd-aloop` loopback either); alsa-lib's own
//! plugins stand in. Each test re-runs itself in a child process whose `ALSA_CONFIG_PATH` names
//! a configuration written here: the microphone is the `file` plugin reading a raw file the test
//! wrote (`infile`), the speaker the same plugin writing into another, both over the `null`
//! plugin in place of the card. alsa-lib reads its configuration once per process, and setting
//! the variable in-process would race other tests, hence the child.
//!
//! `null` has no clock: it runs as fast as the callback thread goes. So the microphone file is
//! delivered from the first captured sample on, and the speaker file starts with however much
//! silence played before the first frame was queued.

use std::path::Path;

use chaincall_audio_device::*;
use chaincall_media::resample::{downsample_48k_to_8k, upsample_8k_to_48k};

/// Set in the child: the directory holding the configuration and the audio files.
const DIR_VAR: &str = "CHAINCALL_ALSA_TEST_DIR";

/// The test configuration: `default` is the file-backed microphone and speaker.
fn file_config(dir: &Path) -> String {
    chaincall_testkit::alsa_file_config(dir, &["chaincall"])
}

/// Runs `body` in a child process under the ALSA configuration `config` makes for a fresh
/// directory, after `prepare` put the child's input files there. Returns the directory in the
/// parent (for the files the child wrote), `None` in the child.
fn in_alsa_child(
    test: &str,
    config: fn(&Path) -> String,
    prepare: impl FnOnce(&Path),
    body: impl FnOnce(&Path),
) -> Option<tempfile::TempDir> {
    if let Some(dir) = std::env::var_os(DIR_VAR) {
        if alsa_missing(Path::new(&dir)) {
            return None;
        }
        body(Path::new(&dir));
        return None;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let conf = dir.path().join("asound.conf");
    std::fs::write(&conf, config(dir.path())).expect("write ALSA config");
    prepare(dir.path());
    chaincall_testkit::rerun_in_child(
        test,
        &[
            ("ALSA_CONFIG_PATH", conf.as_os_str()),
            (DIR_VAR, dir.path().as_os_str()),
        ],
    );
    Some(dir)
}

/// In the child: whether ALSA, or the `file` and `null` plugins the configuration uses, are
/// missing (then the test skips, or fails with `CHAINCALL_REQUIRE_PEERS=1`).
fn alsa_missing(dir: &Path) -> bool {
    let uses_plugins = std::fs::read_to_string(dir.join("asound.conf"))
        .expect("read the ALSA config")
        .contains("type file");
    let problem = match list_devices() {
        Err(e) => Some(e.to_string()),
        // Listing opens each PCM: without the plugins the speaker shows no playback support.
        Ok(list) if uses_plugins && !list.outputs().any(|d| d.name == "chaincall_speaker") => {
            Some("the `file`/`null` PCM plugins cannot be opened".to_owned())
        }
        Ok(_) => None,
    };
    problem.is_some_and(|p| {
        chaincall_testkit::missing::<()>(&format!("ALSA (Debian libasound2): {p}"));
        true
    })
}

/// One second of the deterministic speech-like test signal at 8 kHz.
fn speech(seed: u64) -> Vec<i16> {
    chaincall_media::signal::speech_like(1000, seed)
}

fn named(name: &str, rate: u32) -> StreamOptions {
    let mut options = StreamOptions::new(DeviceSelector::Named(name.to_owned()), rate);
    // `null` runs unpaced, faster than the test reads or writes: the whole one-second test
    // signal fits in the ring, and the prebuffer is longer than it, so playback starts only at
    // `flush` with everything queued: nothing is dropped and no underrun splits it.
    options.buffer_ms = 3_000;
    options.prebuffer_ms = 1_500;
    options
}

/// Reads frames until `n` samples arrived (the `null` clock-less device delivers quickly).
fn capture_samples(capture: &mut Capture, frame_len: usize, n: usize) -> Vec<i16> {
    let mut got = Vec::with_capacity(n + frame_len);
    let mut frame = vec![0i16; frame_len];
    while got.len() < n {
        match capture.read_frame(&mut frame) {
            FrameResult::Ready => got.extend_from_slice(&frame),
            FrameResult::Pending => std::thread::yield_now(),
            other => panic!("capture stopped: {other:?}"),
        }
    }
    got
}

/// Writes `samples` in 20 ms frames, flushes, and waits until the callback took them all.
fn play(playback: &mut Playback, frame_len: usize, samples: &[i16]) {
    for frame in samples.chunks(frame_len) {
        playback.write_frame(frame).expect("write a frame");
    }
    playback.flush();
    while playback.queued() > 0 {
        std::thread::yield_now();
    }
    let stats = playback.stats();
    assert_eq!(stats.overrun_samples, 0, "nothing dropped");
    assert_eq!(
        stats.underrun_samples, 0,
        "running dry after flush is no underrun"
    );
    assert_eq!(
        playback.stats().frames,
        samples.len().div_ceil(frame_len) as u64
    );
}

/// `played` is leading silence, then exactly `expected`, then silence.
fn assert_played(played: &[i16], expected: &[i16]) {
    let lead = expected.iter().position(|&s| s != 0).expect("a signal");
    let start = played
        .iter()
        .position(|&s| s != 0)
        .expect("something reached the speaker file")
        - lead;
    assert!(
        played.len() >= start + expected.len(),
        "the speaker file holds {} samples after {start} of silence, {} were played",
        played.len() - start,
        expected.len()
    );
    assert_eq!(played[start..start + expected.len()], expected[..]);
    assert!(played[start + expected.len()..].iter().all(|&s| s == 0));
}

#[test]
fn enumeration_lists_the_test_pcms_with_their_direction() {
    in_alsa_child(
        "enumeration_lists_the_test_pcms_with_their_direction",
        file_config,
        |dir| chaincall_testkit::write_raw_pcm(&dir.join("chaincall_mic.raw"), &[]),
        |_| {
            let list = list_devices().expect("list the devices");
            let find = |name: &str| {
                list.devices
                    .iter()
                    .find(|d| d.name == name)
                    .unwrap_or_else(|| panic!("no {name} in\n{list}"))
            };
            let mic = find("chaincall_mic");
            assert_eq!(mic.description, "chaincall test microphone");
            let caps = mic.input.as_ref().expect("the microphone captures");
            assert!(caps.formats.iter().any(|f| f == "i16"), "{caps:?}");
            assert!(mic.output.is_none(), "a capture-only PCM is no speaker");
            let speaker = find("chaincall_speaker");
            assert!(speaker.output.is_some() && speaker.input.is_none());
            let default = find("default");
            assert!(default.default_input && default.default_output);
            assert_eq!(list.devices[0].name, "default", "the default comes first");
            assert!(list.inputs().any(|d| d.name == "chaincall_mic"));
            assert!(!list.outputs().any(|d| d.name == "chaincall_mic"));
            let table = list.to_string();
            assert!(
                table
                    .lines()
                    .any(|l| l.starts_with("chaincall_speaker")
                        && l.ends_with("chaincall test speaker")),
                "{table}"
            );
            let json = serde_json::to_value(&list).expect("serialise");
            assert_eq!(json["host"], "ALSA");
            assert!(
                json["devices"]
                    .as_array()
                    .expect("devices")
                    .iter()
                    .any(|d| d["name"] == "chaincall_mic" && d["output"].is_null())
            );
        },
    );
}

#[test]
fn capture_delivers_the_microphone_file_sample_for_sample() {
    in_alsa_child(
        "capture_delivers_the_microphone_file_sample_for_sample",
        file_config,
        |dir| chaincall_testkit::write_raw_pcm(&dir.join("chaincall_mic.raw"), &speech(11)),
        |_| {
            let options = named("chaincall_mic", 8_000);
            let mut capture = Capture::open(&options).expect("open the microphone");
            assert_eq!(capture.device_name(), "chaincall_mic");
            assert_eq!(capture.device_rate(), 8_000);
            let mic = speech(11);
            let got = capture_samples(&mut capture, options.frame_len(), mic.len() + 800);
            assert_eq!(got[..mic.len()], mic[..], "the file, from the first sample");
        },
    );
}

#[test]
fn capture_at_8k_from_a_48k_device_is_the_resampled_microphone_file() {
    in_alsa_child(
        "capture_at_8k_from_a_48k_device_is_the_resampled_microphone_file",
        file_config,
        |dir| {
            chaincall_testkit::write_raw_pcm(
                &dir.join("chaincall_mic.raw"),
                &upsample_8k_to_48k(&speech(13)),
            )
        },
        |_| {
            let mut options = named("chaincall_mic", 8_000);
            options.device_rate = Some(48_000);
            let mut capture = Capture::open(&options).expect("open the microphone");
            assert_eq!(capture.device_rate(), 48_000);
            let mic = upsample_8k_to_48k(&speech(13));
            let expected = downsample_48k_to_8k(&mic);
            let got = capture_samples(&mut capture, options.frame_len(), expected.len());
            assert_eq!(got[..expected.len()], expected[..]);
        },
    );
}

#[test]
fn playback_lands_in_the_speaker_file_sample_for_sample() {
    let dir = in_alsa_child(
        "playback_lands_in_the_speaker_file_sample_for_sample",
        file_config,
        |_| {},
        |_| {
            let options = named("chaincall_speaker", 8_000);
            let mut playback = Playback::open(&options).expect("open the speaker");
            play(&mut playback, options.frame_len(), &speech(12));
        },
    );
    if let Some(dir) = dir {
        assert_played(
            &chaincall_testkit::read_raw_pcm(&dir.path().join("chaincall_speaker.raw")),
            &speech(12),
        );
    }
}

#[test]
fn playback_of_48k_opus_frames_on_an_8k_device_is_downsampled() {
    let dir = in_alsa_child(
        "playback_of_48k_opus_frames_on_an_8k_device_is_downsampled",
        file_config,
        |_| {},
        |_| {
            let mut options = named("default", 48_000);
            options.device_rate = Some(8_000);
            let (mut sink, warning) = Sink::open_or_null(&options);
            assert_eq!(warning, None);
            let Sink::Device(playback) = &mut sink else {
                panic!("the default speaker opened")
            };
            assert_eq!(playback.device_rate(), 8_000);
            play(
                playback,
                options.frame_len(),
                &upsample_8k_to_48k(&speech(14)),
            );
        },
    );
    if let Some(dir) = dir {
        let expected = downsample_48k_to_8k(&upsample_8k_to_48k(&speech(14)));
        assert_played(
            &chaincall_testkit::read_raw_pcm(&dir.path().join("chaincall_speaker.raw")),
            &expected,
        );
    }
}

#[test]
fn an_unknown_device_name_is_a_clear_error_and_falls_back_to_silence() {
    in_alsa_child(
        "an_unknown_device_name_is_a_clear_error_and_falls_back_to_silence",
        file_config,
        |dir| chaincall_testkit::write_raw_pcm(&dir.join("chaincall_mic.raw"), &[]),
        |_| {
            let options = named("usb_headset", 8_000);
            let err = Capture::open(&options).expect_err("no such device");
            assert!(
                matches!(&err, DeviceError::NotFound { name, available, .. }
                    if name == "usb_headset" && available.iter().any(|a| a == "chaincall_mic")),
                "{err:?}"
            );
            let message = err.to_string();
            assert!(
                message.contains("no input audio device named `usb_headset`")
                    && message.contains("chaincall_mic")
                    && !message.contains("chaincall_speaker"),
                "{message}"
            );
            let (mut source, warning) = Source::open_or_silence(&options);
            let warning = warning.expect("a warning for the shell to log");
            assert!(warning.contains("sending silence") && warning.contains("usb_headset"));
            let mut frame = [1i16; 160];
            assert_eq!(source.read_frame(&mut frame), FrameResult::Ready);
            assert!(frame.iter().all(|&s| s == 0));
            let (mut sink, warning) = Sink::open_or_null(&named("usb_headset", 8_000));
            assert!(warning.is_some_and(|w| w.contains("no output audio device named")));
            assert!(sink.write_frame(&frame).is_ok());
        },
    );
}

/// No PCM at all: what a box without sound card or ALSA configuration looks like.
fn empty_config(_: &Path) -> String {
    String::new()
}

#[test]
fn without_any_device_opening_fails_clearly_and_calls_fall_back_to_silence() {
    in_alsa_child(
        "without_any_device_opening_fails_clearly_and_calls_fall_back_to_silence",
        empty_config,
        |_| {},
        |_| {
            let options = StreamOptions::new(DeviceSelector::Default, 48_000);
            let err = Capture::open(&options).expect_err("nothing to open");
            let message = err.to_string();
            assert_eq!(
                message,
                "no default input audio device (no sound card, or none configured)"
            );
            let (source, warning) = Source::open_or_silence(&options);
            assert!(matches!(source, Source::Silence(_)));
            assert!(warning.is_some_and(|w| w.contains(&message)));
            let err = Playback::open(&options).expect_err("nothing to open");
            assert!(
                matches!(err, DeviceError::NoDefaultDevice(Direction::Output)),
                "{err}"
            );
        },
    );
}
