//! What can go wrong with an audio device, and how a running stream says it broke.

use std::fmt;

/// Capture (microphone) or playback (speaker).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Capture: a microphone.
    Input,
    /// Playback: a speaker or headset.
    Output,
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Direction::Input => "input",
            Direction::Output => "output",
        })
    }
}

/// Why a device could not be listed or opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeviceError {
    /// The platform's audio system (ALSA on Linux) could not be reached at all.
    #[error("no audio system: {0}")]
    NoHost(String),
    /// The system has no default device for this direction (no sound card, nothing configured).
    #[error("no default {0} audio device (no sound card, or none configured)")]
    NoDefaultDevice(Direction),
    /// The configured device name matches no device; `available` lists the names that exist.
    #[error("no {direction} audio device named `{name}`; available: {}", list_or_none(.available))]
    NotFound {
        /// The name asked for.
        name: String,
        /// Capture or playback.
        direction: Direction,
        /// The names the system offers for that direction.
        available: Vec<String>,
    },
    /// The device offers no configuration this crate can use (sample format, rates).
    #[error(
        "{direction} audio device `{device}` offers no usable stream format (needs 16/32-bit integer or 32-bit float PCM)"
    )]
    NoUsableConfig {
        /// The device.
        device: String,
        /// Capture or playback.
        direction: Direction,
    },
    /// The audio system refused an operation on the device.
    #[error("{what} on {direction} audio device `{device}`: {reason}")]
    Backend {
        /// The device.
        device: String,
        /// Capture or playback.
        direction: Direction,
        /// What was being done ("opening the stream", "starting the stream", ...).
        what: &'static str,
        /// The audio system's explanation.
        reason: String,
    },
    /// A WAV source or sink could not be read or written.
    #[error("WAV audio `{path}`: {source}")]
    Wav {
        /// The file.
        path: String,
        /// Why.
        source: chaincall_media::wav::WavError,
    },
    /// The device runs neither at the phone's rate nor at one `chaincall_media::resample`
    /// converts from (8 kHz ↔ 48 kHz).
    #[error(
        "{direction} audio device `{device}` cannot run at {wanted} Hz, nor at the other of 8000/48000 Hz that chaincall converts; it offers {offered} Hz. ALSA's `plughw:` and `default` devices convert any rate"
    )]
    UnsupportedRate {
        /// The device.
        device: String,
        /// Capture or playback.
        direction: Direction,
        /// The phone's rate.
        wanted: u32,
        /// The rate ranges the device offers.
        offered: String,
    },
    /// WAV audio is 8 kHz, served at 8 kHz or 48 kHz; the phone asked for another rate.
    #[error("WAV audio is served at 8000 or 48000 Hz, not {0} Hz")]
    WavRate(u32),
    /// A requested sample rate of zero.
    #[error("sample rate must be non-zero")]
    ZeroRate,
}

fn list_or_none(names: &[String]) -> String {
    if names.is_empty() {
        "none".to_owned()
    } else {
        names.join(", ")
    }
}

/// A running stream stopped working: the device was unplugged, or the audio system failed.
/// Sticky: once a stream reports it, every later read or write reports it again.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{direction} audio device `{device}` failed: {reason}")]
pub struct StreamFailure {
    /// The device.
    pub device: String,
    /// Capture or playback.
    pub direction: Direction,
    /// The audio system's explanation.
    pub reason: String,
}
