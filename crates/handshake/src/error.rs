//! Errors of the handshake core.

use chaincall_identity::{DirectoryError, IdentityName};

use crate::wire::{AlertCode, MessageType};

/// Why a handshake failed. Every variant is fatal and sticky: once a handshake has failed, every later
/// call on it returns the same error.
///
/// Variants are grouped as in rustls: faults of the peer (malformed or unauthentic messages), policy
/// refusals (keys not approved, replays, timeouts), and misuse by the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HandshakeError {
    /// Fewer bytes than the frame header or the header's length announce.
    #[error("truncated handshake message: {got} bytes, {needed} needed")]
    Truncated {
        /// Bytes needed for a complete frame (or header).
        needed: usize,
        /// Bytes given.
        got: usize,
    },
    /// A frame whose announced body exceeds the limit for its type.
    #[error("oversized handshake message: {len}-byte body, at most {max} allowed for {ty}")]
    Oversized {
        /// The announced body length.
        len: usize,
        /// The limit for this message type.
        max: usize,
        /// The message type.
        ty: MessageType,
    },
    /// Bytes after the end of the frame the header announced.
    #[error("{extra} trailing bytes after a handshake message")]
    TrailingBytes {
        /// How many.
        extra: usize,
    },
    /// An unknown message-type byte.
    #[error("unknown handshake message type 0x{0:02x}")]
    UnknownType(u8),
    /// A protocol version this build does not speak.
    #[error("unsupported handshake version {0} (this build speaks version 1)")]
    UnsupportedVersion(u8),
    /// A well-framed message whose body does not parse.
    #[error("malformed {ty} body: {reason}")]
    Malformed {
        /// The message type.
        ty: MessageType,
        /// What is wrong.
        reason: &'static str,
    },
    /// A message of the wrong type for the current state.
    #[error("unexpected {got} (expected {expected})")]
    Unexpected {
        /// What the state machine waited for.
        expected: &'static str,
        /// What arrived.
        got: MessageType,
    },
    /// The initiator asked for a protocol this responder does not accept.
    #[error("protocol {0} is not accepted by this responder")]
    ProtocolNotAccepted(&'static str),
    /// A ciphertext did not open under our identity key (wrong key, tampering, or wrong step).
    #[error("{ty} does not decrypt under our identity key")]
    Decrypt {
        /// The message type.
        ty: MessageType,
    },
    /// A nonce returned by the peer is not the one we sent.
    #[error("{ty} returns a nonce we did not send")]
    NonceMismatch {
        /// The message type.
        ty: MessageType,
    },
    /// Lowe's check: message 2 names a responder other than the one we started the run with. This is
    /// what a man-in-the-middle relaying our run with him to a third party looks like.
    #[error(
        "message 2 comes from {got}, but this run was started with {expected}: man-in-the-middle"
    )]
    PeerMismatch {
        /// The peer this run was started with.
        expected: IdentityName,
        /// The identity named inside message 2.
        got: IdentityName,
    },
    /// STS message 1 names a responder other than us.
    #[error("message 1 is addressed to {0}, not to us")]
    NotForUs(IdentityName),
    /// A signature does not verify under the peer's approved on-chain key.
    #[error("the peer's signature does not verify under its approved on-chain key")]
    BadSignature,
    /// Key confirmation failed: the peer's MAC does not match the key we derived.
    #[error("key confirmation failed: the peer's MAC does not match")]
    BadMac,
    /// The key directory refused or could not give a peer's key (unknown, pending, revoked, unavailable).
    #[error("key directory")]
    Directory(#[from] DirectoryError),
    /// A message 1 seen before within the replay window.
    #[error("replayed message 1 refused")]
    Replay,
    /// The handshake did not finish before its deadline.
    #[error("handshake timed out")]
    Timeout,
    /// The peer aborted and told us why (the alert is unauthenticated: a hint, not proof).
    #[error("the peer aborted the handshake: {0}")]
    PeerAborted(AlertCode),
    /// The caller used the API out of order (e.g. input after completion).
    #[error("API misuse: {0}")]
    ApiMisuse(&'static str),
}

impl HandshakeError {
    /// The alert to send the peer for this error, if any (one mapping for the whole crate).
    ///
    /// Peer-caused and policy errors get an alert; a received alert, a timeout and caller misuse do not.
    pub fn alert(&self) -> Option<AlertCode> {
        match self {
            Self::Truncated { .. }
            | Self::Oversized { .. }
            | Self::TrailingBytes { .. }
            | Self::UnknownType(_)
            | Self::Malformed { .. }
            | Self::Unexpected { .. } => Some(AlertCode::DecodeError),
            Self::UnsupportedVersion(_) | Self::ProtocolNotAccepted(_) => {
                Some(AlertCode::Unsupported)
            }
            Self::Decrypt { .. }
            | Self::NonceMismatch { .. }
            | Self::PeerMismatch { .. }
            | Self::BadSignature
            | Self::BadMac => Some(AlertCode::AuthenticationFailed),
            Self::NotForUs(_) | Self::Directory(_) => Some(AlertCode::UnknownIdentity),
            Self::Replay => Some(AlertCode::Replay),
            Self::Timeout | Self::PeerAborted(_) | Self::ApiMisuse(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The directory's refusal comes from `source()` only: the chain (what the phone and sipd
    /// log) tells it once, after the handshake's own part.
    #[test]
    fn directory_refusal_is_told_once() {
        let refusal = DirectoryError::Unavailable("node down".into());
        let err = HandshakeError::Directory(refusal.clone());
        let told = chaincall_io::ErrorChain(&err).to_string();
        assert_eq!(told, format!("key directory: {refusal}"));
        assert_eq!(told.matches("node down").count(), 1, "{told}");
    }
}
