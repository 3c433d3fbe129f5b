//! The one error enum of the SRTP core.

use crate::types::Ssrc;

/// Why a packet could not be protected or unprotected, or a session not built.
///
/// Peer faults (a packet from the wire is bad), caller misuse (a buffer too small, a repeated
/// sequence number on send) and key exhaustion are separate variants so a shell can count and
/// react to each: drop the packet, fix the caller, or re-key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SrtpError {
    /// Peer fault: the packet is shorter than its header plus the SRTP/SRTCP trailer.
    #[error("packet too short")]
    TooShort,
    /// Peer fault: the packet is not RTP/RTCP version 2 or its header lengths do not fit.
    #[error("malformed packet: {0}")]
    Malformed(&'static str),
    /// Peer fault: the authentication tag does not match (RFC 3711 §3.3, step 5; RFC 7714 §8–9).
    #[error("authentication failed")]
    AuthFailed,
    /// Peer fault: this packet index was already accepted (RFC 3711 §3.3.2).
    #[error("replayed packet")]
    Replayed,
    /// Peer fault: the packet index lies behind the replay window (RFC 3711 §3.3.2).
    #[error("packet index too old for the replay window")]
    TooOld,
    /// Peer fault: the MKI in the packet is not this session's (RFC 3711 §3.1).
    #[error("unknown MKI")]
    UnknownMki,
    /// The SSRC has no stream and the session does not create streams on demand.
    #[error("unknown SSRC {0}")]
    UnknownSsrc(Ssrc),
    /// The session already holds its configured maximum number of streams.
    #[error("stream limit of {0} SSRCs reached")]
    StreamLimit(usize),
    /// The master key may not protect more packets (RFC 3711 §9.2: 2^48 SRTP, 2^31 SRTCP
    /// packets; also a 48-bit index or 31-bit SRTCP index about to wrap): re-key.
    #[error("master key exhausted: re-key required")]
    KeyLimitReached,
    /// Caller misuse: protecting this index would reuse a keystream (a sequence number already
    /// sent, or one older than the window).
    #[error("packet index already used for sending")]
    IndexReuse,
    /// Caller misuse: the buffer has no room for the trailer; `needed` is the total size.
    #[error("buffer too small: {needed} bytes needed")]
    BufferTooSmall {
        /// Total buffer length the operation needs.
        needed: usize,
    },
    /// Caller misuse: a key, salt, MKI or window size of the wrong length.
    #[error("invalid configuration: {0}")]
    InvalidConfig(&'static str),
}
