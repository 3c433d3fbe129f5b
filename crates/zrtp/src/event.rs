//! What the engine reports: the secure session with its SRTP keys and SAS, refused packets, and
//! failure.

use std::fmt;

use chaincall_srtp::{Profile, SrtpConfig, SrtpError, SrtpSession};
use zeroize::Zeroizing;

use crate::config::{AuthTag, KeyAgreement, Role, SasType};
use crate::error::ZrtpError;
use crate::wire::Zid;

/// An engine event (the `E` of [`chaincall_io::Output`]).
#[derive(Debug)]
#[non_exhaustive]
pub enum Event {
    /// The exchange finished: SRTP may start. Yielded once.
    SecureOn(Box<SecureOn>),
    /// A packet was refused and dropped; the exchange goes on (bad CRC, stale, GoClear, a
    /// repeated message with different content, ...).
    Error(ZrtpError),
    /// The exchange failed for good; an Error message went to the peer where the RFC has one.
    Failed(ZrtpError),
}

/// The algorithms the Commit chose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Suite {
    /// The key agreement.
    pub key_agreement: KeyAgreement,
    /// The SRTP auth tag (with AES1, it fixes the SRTP profile).
    pub auth_tag: AuthTag,
    /// The SAS rendering.
    pub sas: SasType,
}

/// The Short Authentication String both users compare (RFC 6189 §4.5.2, §7).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sas {
    /// The rendering the Commit chose.
    pub kind: SasType,
    /// The rendered text: four base-32 characters, or two PGP words joined by `:`.
    pub text: String,
    /// The leftmost 32 bits of sashash.
    pub value: u32,
}

/// How the retained secrets from the cache fared (RFC 6189 §4.3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheStatus {
    /// Neither side had secrets for the other: a first call (the SAS is the only check).
    NoSecrets,
    /// A retained secret matched: the peer is the one of the earlier call(s).
    Matched,
    /// We held secrets for this ZID but none matched: a man in the middle, or the peer lost its
    /// cache. The users must compare the SAS; the cache is not updated until
    /// [`Zrtp::confirm_sas`](crate::Zrtp::confirm_sas).
    Mismatch,
}

/// How the auxiliary secret fared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuxStatus {
    /// None configured here.
    NotConfigured,
    /// Both sides hold the same one; it is mixed into s0.
    Matched,
    /// Soft policy only: it did not match and was left out of s0.
    Mismatch,
}

/// The outcome of a successful exchange.
#[derive(Debug)]
#[non_exhaustive]
pub struct SecureOn {
    /// The role this engine ended up with (contention may change the hint).
    pub role: Role,
    /// The peer's ZID.
    pub peer_zid: Zid,
    /// The chosen algorithms.
    pub suite: Suite,
    /// The SAS.
    pub sas: Sas,
    /// The SRTP master keys and salts for both directions.
    pub srtp: SrtpKeys,
    /// Retained-secret result.
    pub cache: CacheStatus,
    /// Aux-secret result.
    pub aux: AuxStatus,
    /// The peer's V flag: it had verified the SAS with us on an earlier call.
    pub peer_sas_verified: bool,
}

/// One direction's SRTP master key and salt (AES-128: 16 + 14 octets), zeroized on drop.
#[derive(Clone)]
pub struct SrtpMaster {
    key: Zeroizing<[u8; 16]>,
    salt: Zeroizing<[u8; 14]>,
}

impl SrtpMaster {
    pub(crate) fn new(key: &[u8; 16], salt: &[u8; 14]) -> Self {
        Self {
            key: Zeroizing::new(*key),
            salt: Zeroizing::new(*salt),
        }
    }

    /// The master key.
    pub fn dangerous_key(&self) -> &[u8; 16] {
        &self.key
    }

    /// The master salt.
    pub fn dangerous_salt(&self) -> &[u8; 14] {
        &self.salt
    }
}

impl fmt::Debug for SrtpMaster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SrtpMaster(redacted)")
    }
}

/// SRTP keys for `chaincall-srtp`: what this end protects with (`local`) and what it
/// unprotects the peer's packets with (`remote`). The initiator sends with the "Initiator" keys
/// (RFC 6189 §4.5.3).
#[derive(Debug, Clone)]
pub struct SrtpKeys {
    /// The profile AES1 and the chosen auth tag make.
    pub profile: Profile,
    /// Keys for our outgoing SRTP/SRTCP.
    pub local: SrtpMaster,
    /// Keys for the peer's SRTP/SRTCP.
    pub remote: SrtpMaster,
}

impl SrtpKeys {
    /// A session protecting what we send.
    pub fn outbound_session(&self) -> Result<SrtpSession, SrtpError> {
        SrtpSession::new(
            SrtpConfig::new(self.profile),
            &self.local.key[..],
            &self.local.salt[..],
        )
    }

    /// A session unprotecting what the peer sends (its SSRCs are learnt on first packet).
    pub fn inbound_session(&self) -> Result<SrtpSession, SrtpError> {
        SrtpSession::new(
            SrtpConfig::new(self.profile).with_unknown_ssrc(true),
            &self.remote.key[..],
            &self.remote.salt[..],
        )
    }
}
