//! Errors of the ZRTP core: the codec's [`DecodeError`], the engine's [`ZrtpError`], and the
//! RFC 6189 §5.9 [`ErrorCode`] each maps to on the wire.

use std::fmt;

use crate::wire::MessageType;

/// An Error message's code (RFC 6189 §5.9). Unknown codes from a peer are kept as they came.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ErrorCode(pub u32);

impl ErrorCode {
    /// Malformed packet (CRC OK, but wrong structure).
    pub const MALFORMED: Self = Self(0x10);
    /// Critical software error.
    pub const SOFTWARE: Self = Self(0x20);
    /// Unsupported ZRTP version.
    pub const VERSION: Self = Self(0x30);
    /// Hello components mismatch.
    pub const HELLO_MISMATCH: Self = Self(0x40);
    /// Hash type not supported.
    pub const HASH: Self = Self(0x51);
    /// Cipher type not supported.
    pub const CIPHER: Self = Self(0x52);
    /// Public key exchange not supported.
    pub const KEY_AGREEMENT: Self = Self(0x53);
    /// SRTP auth tag not supported.
    pub const AUTH_TAG: Self = Self(0x54);
    /// SAS rendering scheme not supported.
    pub const SAS: Self = Self(0x55);
    /// No shared secret available, DH mode required.
    pub const NO_SHARED_SECRET: Self = Self(0x56);
    /// DH error: bad pvi or pvr (== 1, 0 or p-1; or not on the curve).
    pub const BAD_DH_VALUE: Self = Self(0x61);
    /// DH error: hvi != hashed data.
    pub const BAD_HVI: Self = Self(0x62);
    /// Received relayed SAS from untrusted MiTM.
    pub const UNTRUSTED_MITM: Self = Self(0x63);
    /// Auth error: bad Confirm packet MAC. chaincall also sends it for a broken hash-chain link,
    /// a bad message MAC and a fatal auxiliary-secret mismatch: each is a failed authentication
    /// of the exchange, and §5.9 has no closer code.
    pub const AUTH: Self = Self(0x70);
    /// Nonce reuse.
    pub const NONCE_REUSE: Self = Self(0x80);
    /// Equal ZIDs in Hello.
    pub const EQUAL_ZID: Self = Self(0x90);
    /// SSRC collision.
    pub const SSRC_COLLISION: Self = Self(0x91);
    /// Service unavailable.
    pub const UNAVAILABLE: Self = Self(0xA0);
    /// Protocol timeout error.
    pub const TIMEOUT: Self = Self(0xB0);
    /// GoClear message received, but not allowed.
    pub const GOCLEAR_NOT_ALLOWED: Self = Self(0x100);

    /// The RFC's wording for this code.
    pub fn description(self) -> &'static str {
        match self.0 {
            0x10 => "malformed packet",
            0x20 => "critical software error",
            0x30 => "unsupported ZRTP version",
            0x40 => "Hello components mismatch",
            0x51 => "hash type not supported",
            0x52 => "cipher type not supported",
            0x53 => "public key exchange not supported",
            0x54 => "SRTP auth tag not supported",
            0x55 => "SAS rendering scheme not supported",
            0x56 => "no shared secret available, DH mode required",
            0x61 => "DH error: bad pvi or pvr",
            0x62 => "DH error: hvi != hashed data",
            0x63 => "received relayed SAS from untrusted MiTM",
            0x70 => "auth error",
            0x80 => "nonce reuse",
            0x90 => "equal ZIDs in Hello",
            0x91 => "SSRC collision",
            0xA0 => "service unavailable",
            0xB0 => "protocol timeout error",
            0x100 => "GoClear received but not allowed",
            _ => "unknown error code",
        }
    }
}

impl fmt::Debug for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ErrorCode(0x{:x})", self.0)
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0x{:x} ({})", self.0, self.description())
    }
}

/// Why a datagram is not a well-formed ZRTP packet. Decoding never panics; every failure is one
/// of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// Shorter than the smallest ZRTP packet (header, 12-octet message, CRC).
    #[error("truncated ZRTP packet: {0} octets")]
    Truncated(usize),
    /// Longer than this implementation accepts.
    #[error("oversized ZRTP packet: {len} octets, at most {max}")]
    Oversized {
        /// The datagram's length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Not a ZRTP packet: the first octet is not 0x10 or the magic cookie is missing.
    #[error("not a ZRTP packet (header or magic cookie)")]
    NotZrtp,
    /// A fragmented ZRTP packet (first octet 0x11); none of our messages needs fragments.
    #[error("fragmented ZRTP packets are not accepted")]
    Fragmented,
    /// The CRC-32C trailer does not match.
    #[error("bad ZRTP packet CRC")]
    BadCrc,
    /// The message does not start with the 0x505a preamble.
    #[error("bad ZRTP message preamble")]
    BadPreamble,
    /// The message's length field disagrees with the datagram.
    #[error("ZRTP message length {announced} octets, packet carries {actual}")]
    LengthMismatch {
        /// Octets the length field announces.
        announced: usize,
        /// Octets between the packet header and the CRC.
        actual: usize,
    },
    /// An unknown message type block.
    #[error("unknown ZRTP message type {0:?}")]
    UnknownType([u8; 8]),
    /// A known message whose body does not parse.
    #[error("malformed {ty}: {reason}")]
    Malformed {
        /// The message type.
        ty: MessageType,
        /// What is wrong.
        reason: &'static str,
    },
}

/// Why the engine refused a packet or failed. Refused packets surface as
/// [`Event::Error`](crate::Event::Error) and the handshake goes on; fatal ones as
/// [`Event::Failed`](crate::Event::Failed), after which the engine is finished (sticky).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ZrtpError {
    /// The datagram is not a well-formed ZRTP packet (dropped).
    #[error("undecodable ZRTP packet: {0}")]
    Decode(#[from] DecodeError),
    /// A message that does not fit the current state (dropped).
    #[error("unexpected {got} in state {state}")]
    Unexpected {
        /// What arrived.
        got: MessageType,
        /// The engine's state.
        state: &'static str,
    },
    /// A packet whose sequence number is not above the last accepted one (dropped).
    #[error("stale ZRTP packet (sequence {seq}, last accepted {last})")]
    Stale {
        /// Its sequence number.
        seq: u16,
        /// The last accepted one.
        last: u16,
    },
    /// A retransmitted message that differs from the first copy, e.g. a Confirm2 replayed from
    /// another session after this one went secure (dropped, RFC 6189 §4.6).
    #[error("{0} repeated with different content: dropped")]
    AlteredRepeat(MessageType),
    /// A GoClear: chaincall never falls back to clear media (answered with Error 0x100).
    #[error("GoClear refused: media stays encrypted")]
    GoClearRefused,
    /// A hash image that does not hash to the one committed earlier (RFC 6189 §9).
    #[error("{0} breaks the hash chain")]
    HashChain(MessageType),
    /// A message MAC that does not verify under the hash image revealed later (§9).
    #[error("{0} MAC does not verify under the revealed hash image")]
    BadMac(MessageType),
    /// A Confirm whose confirm_mac does not verify: the peers derived different keys.
    #[error("{0} confirm_mac does not verify (different keys: tampering or a man in the middle)")]
    BadConfirmMac(MessageType),
    /// hvi in the Commit does not hash the DHPart2 and our Hello (§4.4.1.1).
    #[error("Commit hvi does not match DHPart2")]
    HviMismatch,
    /// A DH public value of 0, 1, p-1 or a point not on the curve (§4.4.1.1).
    #[error("bad DH public value: {0}")]
    BadDhValue(&'static str),
    /// The peer's ZID equals ours (§4.2): a loop or a reflection.
    #[error("peer ZID equals ours")]
    EqualZid,
    /// The peer offers no algorithm we accept in one of the five categories.
    #[error("no common {0}")]
    NoCommonAlgorithm(&'static str),
    /// A Commit that chose an algorithm our Hello did not offer.
    #[error("Commit chose a {0} we did not offer")]
    UnofferedAlgorithm(&'static str),
    /// The peer's Hello does not hash to the `a=zrtp-hash` signalling carried (§8.1).
    #[error("peer Hello does not match the signalled zrtp-hash")]
    HelloHashMismatch,
    /// The peer's Hello speaks another protocol version.
    #[error("unsupported ZRTP version {0:?}")]
    UnsupportedVersion([u8; 4]),
    /// The auxiliary secret did not match and the configuration makes that fatal.
    #[error(
        "auxiliary secret mismatch (configured fatal): the peer is not the one bound to this call"
    )]
    AuxSecretMismatch,
    /// The peer sent an Error message.
    #[error("peer reported ZRTP error {0}")]
    PeerError(ErrorCode),
    /// The peer never answered our Hello: no ZRTP endpoint there.
    #[error("no answer to Hello after {0} retransmissions: peer does not speak ZRTP")]
    NoPeer(u32),
    /// A message went unanswered through all its retransmissions.
    #[error("{message} unanswered after {retransmissions} retransmissions")]
    Timeout {
        /// The message that was retransmitted.
        message: MessageType,
        /// How many times.
        retransmissions: u32,
    },
    /// The whole handshake took longer than the configured limit.
    #[error("ZRTP handshake not finished within its time limit")]
    HandshakeTimeout,
    /// The configuration cannot run (caller misuse).
    #[error("invalid ZRTP configuration: {0}")]
    InvalidConfig(&'static str),
}

impl ZrtpError {
    /// The Error message to send for this failure, if one is sent (RFC 6189 §5.9). Dropped
    /// packets and failures the peer reported get none.
    pub fn wire_code(&self) -> Option<ErrorCode> {
        Some(match self {
            ZrtpError::HashChain(_)
            | ZrtpError::BadMac(_)
            | ZrtpError::BadConfirmMac(_)
            | ZrtpError::AuxSecretMismatch => ErrorCode::AUTH,
            ZrtpError::HviMismatch => ErrorCode::BAD_HVI,
            ZrtpError::BadDhValue(_) => ErrorCode::BAD_DH_VALUE,
            ZrtpError::EqualZid => ErrorCode::EQUAL_ZID,
            ZrtpError::NoCommonAlgorithm(what) | ZrtpError::UnofferedAlgorithm(what) => match *what
            {
                "hash" => ErrorCode::HASH,
                "cipher" => ErrorCode::CIPHER,
                "auth tag" => ErrorCode::AUTH_TAG,
                "SAS type" => ErrorCode::SAS,
                _ => ErrorCode::KEY_AGREEMENT,
            },
            ZrtpError::HelloHashMismatch => ErrorCode::HELLO_MISMATCH,
            ZrtpError::UnsupportedVersion(_) => ErrorCode::VERSION,
            ZrtpError::GoClearRefused => ErrorCode::GOCLEAR_NOT_ALLOWED,
            ZrtpError::Timeout { .. } | ZrtpError::HandshakeTimeout => ErrorCode::TIMEOUT,
            _ => return None,
        })
    }
}
