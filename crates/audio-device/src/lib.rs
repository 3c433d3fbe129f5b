//! Microphone and speaker for chaincall phones, through `cpal` (ALSA on Linux).
//!
//! - [`list_devices`]: every capture and playback device with its rates, channels and formats;
//!   serialisable for `chaincall phone devices --json`, a table through `Display`.
//! - [`Capture`] and [`Playback`]: the default or a named device at the phone's rate (48 kHz for
//!   Opus, 8 kHz for G.711), converting 8 kHz ↔ 48 kHz with `chaincall_media::resample` when the
//!   device runs at the other one. Mono `i16` frames of 20 ms cross a bounded lock-free ring
//!   between cpal's callback thread and the phone's task; nothing ever blocks the callback.
//! - [`Source`] and [`Sink`]: a device, silence ([`SilenceSource`], [`NullSink`]) or WAV files
//!   ([`WavSource`], [`WavSink`]) behind [`AudioSource`]/[`AudioSink`];
//!   [`Source::open_or_silence`] keeps a call going without a microphone.
//!
//! `docs/audio-devices.md` describes device selection, errors and fallbacks, and the ALSA
//! configuration the tests (and a headless box) use instead of a sound card.

mod enumerate;
mod error;
mod resample;
mod ring;
mod source;
mod stream;

pub use enumerate::{
    Capabilities, DeviceInfo, DeviceList, DeviceSelector, RateRange, list_devices,
};
pub use error::{DeviceError, Direction, StreamFailure};
pub use source::{
    AudioSink, AudioSource, FrameResult, NullSink, SilenceSource, Sink, Source, WavSink, WavSource,
};
pub use stream::{Capture, FRAME_MS, Playback, StreamOptions, StreamStats};
