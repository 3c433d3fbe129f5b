//! Errors: one enum for the wire codec ([`DecodeError`], [`EncodeError`]) and one for the modes
//! ([`MikeyError`]). Peer faults, caller misuse and our own bugs stay apart (STYLE.md §2).

use chaincall_identity::{DirectoryError, IdentityName, KeyStatus};

use crate::message::ErrorCode;

/// Why bytes were refused as a MIKEY message: what was wrong, and at which byte of the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed MIKEY message at byte {offset}: {kind}")]
pub struct DecodeError {
    /// Offset, from the first byte of the message (or of the buffer given to the decoder), of the
    /// field that could not be read or was refused.
    pub offset: usize,
    /// What was wrong there.
    pub kind: DecodeErrorKind,
}

/// What was wrong with a MIKEY message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeErrorKind {
    /// The input ended inside a field.
    #[error("{field} needs {needed} byte(s), only {available} left")]
    Truncated {
        /// The field being read.
        field: &'static str,
        /// Bytes the field needs.
        needed: usize,
        /// Bytes left in the input.
        available: usize,
    },
    /// RFC 3830 §6.1: the version must be 1.
    #[error("unsupported MIKEY version {0} (only 1 exists)")]
    UnsupportedVersion(u8),
    /// A field held a value no registry entry this codec knows has.
    #[error("unknown {field} value {value}")]
    UnknownValue {
        /// The field.
        field: &'static str,
        /// The value found.
        value: u8,
    },
    /// A field that must be zero was not.
    #[error("reserved bits of {field} are not zero")]
    ReservedNotZero {
        /// The field.
        field: &'static str,
    },
    /// A payload type that may not appear where it did (e.g. a key-data sub-payload at message level).
    #[error("payload type {payload} may not appear {place}")]
    MisplacedPayload {
        /// The payload type number.
        payload: u8,
        /// Where it appeared.
        place: &'static str,
    },
    /// Bytes followed the last payload (RFC 3830 §6: "Last payload" ends the message; SIGN is last).
    #[error("{0} byte(s) after the last payload")]
    TrailingBytes(usize),
    /// A length field is inconsistent with its container or its type.
    #[error("{field}: {reason}")]
    BadLength {
        /// The field.
        field: &'static str,
        /// Why the length is refused.
        reason: &'static str,
    },
}

impl DecodeError {
    pub(crate) fn new(offset: usize, kind: DecodeErrorKind) -> Self {
        Self { offset, kind }
    }
}

/// Why a message could not be encoded: a value does not fit its wire field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// A variable-length field is longer than its length field can say.
    #[error("{field} is {len} bytes; its length field allows at most {max}")]
    TooLong {
        /// The field.
        field: &'static str,
        /// Its length.
        len: usize,
        /// The most the wire allows.
        max: usize,
    },
    /// A field whose length the wire implies (from an algorithm or group) has another length.
    #[error("{field} must be {expected} bytes for its algorithm, got {len}")]
    WrongLength {
        /// The field.
        field: &'static str,
        /// The length the algorithm implies.
        expected: usize,
        /// The length given.
        len: usize,
    },
    /// RFC 3830 §6.5: the SIGN payload has no next-payload field, so it can only be last.
    #[error("the SIGN payload must be the last payload")]
    SignNotLast,
    /// A caller's output slice is too small.
    #[error("output buffer too small: {needed} bytes needed")]
    BufferTooSmall {
        /// Bytes the message needs.
        needed: usize,
    },
}

/// Why a MIKEY exchange failed. Each variant names one cause; [`MikeyError::error_code`] maps it to
/// the RFC 3830 §6.12 error number a responder may send back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MikeyError {
    /// The bytes are not a MIKEY message.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// A message could not be built.
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// The message is well formed but not what this step expects (wrong data type, payload missing
    /// or repeated, wrong order).
    #[error("unexpected MIKEY message: {0}")]
    Unexpected(&'static str),
    /// The message uses an algorithm, group, map type or policy this implementation refuses.
    #[error("unsupported: {0}")]
    Unsupported(&'static str),
    /// RFC 3830 §5.4: the timestamp is outside the allowed clock-skew window.
    #[error("timestamp outside the {window_secs} s window (off by {skew_secs} s)")]
    StaleTimestamp {
        /// The configured window.
        window_secs: u64,
        /// How far the message's time is from now (seconds, rounded down).
        skew_secs: u64,
    },
    /// RFC 3830 §5.4: this message was seen before.
    #[error("replayed MIKEY message (already in the replay cache)")]
    Replay,
    /// The replay cache is full of messages still inside the window; refusing is the only safe answer.
    #[error("replay cache full ({0} live entries); refusing new messages until entries expire")]
    ReplayCacheFull(usize),
    /// This initiator already holds its whole share of the replay cache with exchanges still inside
    /// the window; its new offers wait until those expire, other initiators' are unaffected.
    #[error(
        "{initiator} holds {live} live replay-cache entries, its quota; refusing its offers until they expire"
    )]
    ReplayQuotaFull {
        /// The authenticated initiator.
        initiator: IdentityName,
        /// Its live entries.
        live: usize,
    },
    /// An identity payload could not be turned into a chaincall identity.
    #[error("cannot resolve MIKEY identity {uri:?}: {reason}")]
    UnresolvableIdentity {
        /// The ID data as received (lossy UTF-8).
        uri: String,
        /// Why.
        reason: &'static str,
    },
    /// The peer's identity is not approved in the keystore: unknown, pending or revoked.
    #[error("{name} is {status} in the keystore: refusing it")]
    NotApproved {
        /// The identity.
        name: IdentityName,
        /// Its status.
        status: KeyStatus,
    },
    /// The key directory could not answer.
    #[error("key directory unavailable: {0}")]
    DirectoryUnavailable(String),
    /// The message names a different peer from the one expected.
    #[error("message names {found}, expected {expected}")]
    WrongPeer {
        /// The identity expected.
        expected: IdentityName,
        /// The identity in the message.
        found: IdentityName,
    },
    /// The SIGN payload does not verify under the peer's approved key.
    #[error("signature does not verify under {0}'s approved key")]
    BadSignature(IdentityName),
    /// The KEMAC or V MAC does not verify.
    #[error("MAC does not verify ({0})")]
    BadMac(&'static str),
    /// The envelope key could not be opened with our identity key (not for us, or tampered).
    #[error("envelope (PKE) cannot be opened: {0}")]
    Envelope(&'static str),
    /// The peer's ephemeral DH value is not a valid point.
    #[error("invalid DH value: {0}")]
    InvalidDhValue(&'static str),
    /// The responder answered with an error message (RFC 3830 §5.1.2).
    #[error("peer reported MIKEY error: {}", .0.name())]
    PeerError(ErrorCode),
    /// The caller used the API out of order or with inconsistent arguments.
    #[error("API misuse: {0}")]
    Misuse(&'static str),
}

impl MikeyError {
    /// The RFC 3830 §6.12 error number that describes this failure to the peer, if one fits.
    pub fn error_code(&self) -> Option<ErrorCode> {
        Some(match self {
            Self::StaleTimestamp { .. } | Self::Replay => ErrorCode::InvalidTs,
            Self::BadSignature(_) | Self::BadMac(_) | Self::Envelope(_) => ErrorCode::AuthFailure,
            Self::NotApproved { .. }
            | Self::UnresolvableIdentity { .. }
            | Self::WrongPeer { .. } => ErrorCode::InvalidId,
            Self::InvalidDhValue(_) => ErrorCode::InvalidDh,
            Self::Unsupported(_) => ErrorCode::InvalidSpPar,
            Self::Decode(_) | Self::Unexpected(_) => ErrorCode::InvalidDt,
            Self::ReplayCacheFull(_)
            | Self::ReplayQuotaFull { .. }
            | Self::DirectoryUnavailable(_) => ErrorCode::Unspecified,
            Self::Encode(_) | Self::PeerError(_) | Self::Misuse(_) => return None,
        })
    }

    pub(crate) fn from_directory(err: DirectoryError) -> Self {
        match err {
            DirectoryError::NotApproved { name, status } => Self::NotApproved { name, status },
            DirectoryError::Unavailable(msg) => Self::DirectoryUnavailable(msg),
            other => Self::DirectoryUnavailable(other.to_string()),
        }
    }
}
