//! The phone's errors: one enum for a call's keys and SDP, one for the phone as a whole.

use chaincall_chain::verified::UnconfirmedKeyChange;
use chaincall_identity::{IdentityName, KeyStatus};

use crate::contacts::ContactsError;

/// Why a call's media could not be negotiated or keyed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CallError {
    /// The SDP is malformed or has nothing we can use.
    #[error("SDP: {0}")]
    Sdp(String),
    /// MIKEY refused the exchange (signature, unknown/pending/revoked key, replay, clock skew…).
    #[error("MIKEY")]
    Mikey(#[from] chaincall_mikey::MikeyError),
    /// Keys are missing or unusable.
    #[error("keys: {0}")]
    Keys(String),
    /// A bug in the caller of this module.
    #[error("misuse: {0}")]
    Misuse(&'static str),
}

/// Why a phone operation failed; each variant is a message a subscriber can act on.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PhoneError {
    /// The callee has no entry in the keystore.
    #[error("{0} is not a chaincall subscriber (no keystore entry)")]
    UnknownCallee(IdentityName),
    /// The callee's key is not approved (pending or revoked).
    #[error("{name} cannot be called securely: its key is {status} in the keystore")]
    CalleeNotApproved {
        /// The callee.
        name: IdentityName,
        /// Its status.
        status: KeyStatus,
    },
    /// A lookup failed verification or the chain could not be reached.
    #[error("key lookup for {name}: {reason}")]
    Lookup {
        /// Whose key.
        name: IdentityName,
        /// What failed.
        reason: String,
    },
    /// The key differs from the pinned one and the chain records no change to it (a lying node,
    /// another chain): refused, the pin stays.
    #[error(
        "{name}'s key changed without an on-chain record (pinned key {pinned}, the node now shows \
         {seen}): refusing the new key, the pin stays on the old one; a node that shows a key the \
         chain never recorded is lying or on another chain (check `rpc_url`)"
    )]
    KeyChangedWithoutRecord {
        /// Whose key.
        name: IdentityName,
        /// Short fingerprint of the pinned key.
        pinned: String,
        /// Short fingerprint of the key the node showed.
        seen: String,
    },
    /// The key changed by a rotation that could not be confirmed against vouched-for headers; the
    /// user may accept it ([`crate::KeyLookup::accept_key_change`]) after comparing safety numbers.
    #[error(
        "{0}. Compare the safety number with {name} in person (`chaincall phone contact show \
         {name}`), then accept the new key with `chaincall phone contact verify {name}`",
        name = .0.name
    )]
    UnconfirmedKeyChange(Box<UnconfirmedKeyChange>),
    /// The contacts store (persisted key pins).
    #[error(transparent)]
    Contacts(#[from] ContactsError),
    /// The callee is registered nowhere (SIP 480/404).
    #[error("{0} is offline (not registered)")]
    Offline(String),
    /// The callee is busy (SIP 486/600).
    #[error("{0} is busy")]
    Busy(String),
    /// The call was refused with another SIP status.
    #[error("call refused: {code} {reason}")]
    Refused {
        /// SIP status code.
        code: u16,
        /// Reason phrase.
        reason: String,
    },
    /// Digest authentication failed (wrong credentials).
    #[error("the SIP server refused our credentials ({0})")]
    AuthFailed(u16),
    /// No answer in time.
    #[error("timed out waiting for {0}")]
    Timeout(&'static str),
    /// The signalling connection closed or failed.
    #[error("signalling: {0}")]
    Signalling(String),
    /// The call's keys or SDP.
    #[error(transparent)]
    Call(#[from] CallError),
    /// Our PASSporT (the INVITE's Identity header) could not be made.
    #[error("cannot sign the caller's PASSporT")]
    Identity(#[source] chaincall_passport::PassportError),
    /// The key store file.
    #[error("key store: {0}")]
    Store(String),
    /// The configuration.
    #[error("configuration: {0}")]
    Config(String),
    /// DTMF could not be sent (no such call, not up, no telephone-event, not a digit).
    #[error("DTMF: {0}")]
    Dtmf(String),
    /// Hold, resume or mute refused: the call is unknown or not up, or a re-INVITE is already
    /// in progress.
    #[error("call control: {0}")]
    CallControl(String),
    /// A socket or file.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}
