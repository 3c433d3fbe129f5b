//! chaincall's audio path, sans-IO: G.711 and Opus, RFC 4733 DTMF, an adaptive jitter buffer with
//! loss concealment, WAV files, RTP/RTCP, and a [`MediaSession`] that sends and records one
//! call's audio over SRTP with rtcp-mux. `docs/audio.md` describes codecs, SDP, the jitter buffer
//! and DTMF as a whole.
//!
//! The phone and `chaincall demo` own the UDP socket and the clock; this crate turns datagrams
//! and `Instant`s into datagrams and events. [`MediaSession::poll_output`] yields the
//! `chaincall_io::Output` every core yields, with a [`MediaChannel`] (RTP or RTCP) as destination:
//!
//! ```
//! use std::time::{Duration, Instant};
//! use chaincall_media::{g711::Codec, signal, MediaChannel, MediaConfig, MediaSession};
//! use chaincall_srtp::{Profile, SrtpConfig, SrtpSession};
//!
//! let key = [7u8; 30]; // master key || salt, as MIKEY or SDES delivered it
//! let srtp = || SrtpSession::from_key_and_salt(SrtpConfig::new(Profile::AesCm128HmacSha1_80), &key).unwrap();
//! let start = Instant::now();
//! let mut alice = MediaSession::new(
//!     MediaConfig::new(Codec::Pcmu, 0xA11CE, "alice@example.org"),
//!     srtp(), srtp(), signal::speech_like(200, 1), start,
//! );
//! let mut bob = MediaSession::new(
//!     MediaConfig::new(Codec::Pcmu, 0xB0B, "bob@example.org"),
//!     srtp(), srtp(), Vec::new(), start,
//! );
//! // The shell's loop, with a simulated clock and a perfect network: drain until `Timeout`,
//! // sending each packet to the address its channel names, then wait for the deadline.
//! let mut now = start;
//! while !alice.source_done() {
//!     let out = chaincall_io::drain(|| alice.poll_output(now));
//!     for packet in out.transmits {
//!         bob.handle_input(&packet.contents, now).unwrap();
//!     }
//!     now = out.timeout.unwrap();
//! }
//! alice.finish(now);
//! for packet in chaincall_io::drain(|| alice.poll_output(now)).transmits {
//!     assert_eq!(packet.destination, MediaChannel::Rtcp);
//!     bob.handle_input(&packet.contents, now).unwrap();
//! }
//! assert_eq!(bob.received_payload(), alice.sent_payload());
//! assert!(bob.stats().bye_received);
//! # let _ = Duration::ZERO;
//! ```
//!
//! | module | what | spec |
//! | --- | --- | --- |
//! | [`g711`] | µ-law / A-law, [`g711::Codec`] | ITU-T G.711, RFC 3551 §4.5.14 |
//! | [`opus`] | Opus encoder/decoder, 48 kHz mono 20 ms, FEC, DTX, PLC (system libopus) | RFC 6716, RFC 7587 |
//! | [`codec`] | [`AudioCodec`] over G.711 and Opus: payload type, clocks, frames; encoder/decoder | RFC 3551, RFC 7587 |
//! | [`sdp`] | audio formats in SDP: rtpmap/fmtp for Opus, G.711, telephone-event; offer/answer choice | RFC 7587 §7, RFC 4733 §7, RFC 3264 |
//! | [`dtmf`] | telephone-event payload, sender pacing, once-per-digit receiver | RFC 4733 |
//! | [`jitter`] | adaptive jitter buffer with concealment, FEC recovery, drift correction, stats | RFC 3550 §A.8 |
//! | [`plc`] | G.711 loss concealment: pitch repetition with attenuation | ITU-T G.711 Appendix I |
//! | [`resample`] | 8 kHz ↔ 48 kHz (windowed-sinc, polyphase) for 8 kHz sources over Opus | — |
//! | [`wav`] | read PCM16 / µ-law / A-law mono 8 kHz, write PCM16 | RIFF WAVE, RFC 2361 |
//! | [`rtp`] | header parse (borrowing) and build | RFC 3550 §5 |
//! | [`rtcp`] | SR, RR, SDES, BYE, compound packets, [`rtcp::is_rtcp`] | RFC 3550 §6, RFC 5761 §4 |
//! | [`signal`] | deterministic speech-like test audio | — |
//! | [`MediaSession`] | one call's audio over SRTP/SRTCP, G.711 or Opus, jitter-buffered playout | RFC 3550, 3551, 3711, 5761, 7587 |
//!
//! Randomness: the initial RTP sequence number and timestamp come from the OS CSPRNG unless
//! [`MediaOptions`] fixes them. This crate logs nothing and never sees key material beyond the
//! SRTP sessions it is handed.

#![forbid(unsafe_code)]

pub mod codec;
pub mod dtmf;
pub mod g711;
pub mod jitter;
pub mod opus;
pub mod plc;
pub mod resample;
pub mod rtcp;
pub mod rtp;
pub mod sdp;
mod session;
pub mod signal;
pub mod wav;

pub use codec::AudioCodec;
pub use g711::Codec;

/// Every error type of the crate in one place.
pub mod error {
    pub use crate::dtmf::DtmfError;
    pub use crate::opus::OpusError;
    pub use crate::rtcp::RtcpError;
    pub use crate::rtp::RtpError;
    pub use crate::session::MediaError;
    pub use crate::wav::WavError;
}
/// Mute and hold: what of a session's audio goes out.
pub use session::AudioGate;
pub use session::{
    DEFAULT_MAX_RECORDED_OCTETS, MAX_DATAGRAM, MAX_GAP_FILL, MAX_LIVE_FRAMES, MediaChannel,
    MediaConfig, MediaError, MediaEvent, MediaOptions, MediaOutput, MediaSession, MediaStats,
    Playout,
};
