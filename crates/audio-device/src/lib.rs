//! Microphone and speaker for chaincall phones, through `cpal` (ALSA on Linux).
//!
//! - [`list_devices`]: every capture and playback device with its rates, channels and formats;
//!   serialisable for `chaincall phone devices --json`, a table through `Display`.
//! - [`Capture`] and [`Playback`]: the default or a named device at the phone's rate (48 kHz for
//!   Opus, 8 kHz for G.711), converting 8 kHz ↔ 48 kHz with `chaincall_media::resample` when the
//!   device runs at the other one. Mono `i16` frames of 20 ms cross a bounded lock-free ring
//!   between cpal's callback thread and the phone's task; nothing ever blocks the callback.
//! - [`VoiceProcessor`]: echo cancellation and noise suppression of the microphone's frames
//!   (WebRTC's AEC3 and noise suppressor, through the pure-Rust `aec3` crate).
//! - [`Source`] and [`Sink`]: a device, silence ([`SilenceSource`], [`NullSink`]) or WAV files
//!   ([`WavSource`], [`WavSink`]) behind [`AudioSource`]/[`AudioSink`];
//!   [`Source::open_or_silence`] keeps a call going without a microphone.
//!
//! The shell's side, once per call and then every 20 ms on the phone's clock:
//!
//! ```no_run
//! use chaincall_audio_device::{
//!     AudioSink, AudioSource, DeviceSelector, FrameResult, SilenceSource, Sink, Source,
//!     StreamOptions,
//! };
//!
//! println!("{}", chaincall_audio_device::list_devices()?); // `chaincall phone devices`
//! let options = StreamOptions::new(DeviceSelector::Default, 48_000); // Opus
//! let (mut mic, warning) = Source::open_or_silence(&options);
//! if let Some(warning) = warning {
//!     eprintln!("{warning}"); // the shell logs it; the call goes on with silence
//! }
//! let (mut speaker, _) = Sink::open_or_null(&options);
//! let mut frame = vec![0i16; options.frame_len()];
//! // Each tick:
//! match mic.read_frame(&mut frame) {
//!     FrameResult::Ready => { /* encode `frame` and send it */ }
//!     FrameResult::Pending | FrameResult::Ended => { /* nothing to send this tick */ }
//!     FrameResult::Failed(failure) => {
//!         eprintln!("{failure}"); // unplugged: carry on without a microphone
//!         mic = Source::Silence(SilenceSource::new(options.sample_rate));
//!     }
//! }
//! let decoded = vec![0i16; options.frame_len()]; // from the jitter buffer
//! speaker.write_frame(&decoded)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! `docs/audio-devices.md` describes device selection, errors and fallbacks, and the ALSA
//! configuration the tests (and a headless box) use instead of a sound card.

#![forbid(unsafe_code)]

mod enumerate;
mod error;
mod processing;
mod resample;
mod ring;
mod source;
mod stream;

pub use enumerate::{
    Capabilities, DeviceInfo, DeviceList, DeviceSelector, RateRange, list_devices,
};
pub use error::{DeviceError, Direction, StreamFailure};
pub use processing::{ProcessingError, VoiceProcessing, VoiceProcessor};
pub use source::{
    AudioSink, AudioSource, FrameResult, NullSink, SilenceSource, Sink, Source, WavSink, WavSource,
};
pub use stream::{Capture, FRAME_MS, Playback, StreamOptions, StreamStats};
