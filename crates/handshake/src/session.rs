//! What a finished handshake yields: a PSK, its identity and its lifetime.

use std::fmt;
use std::time::{Duration, Instant};

use chaincall_identity::{IdentityName, PublicIdentityKey, Secret};

use crate::Protocol;

/// A 32-byte pre-shared key. Zeroized on drop, never printed.
#[derive(Clone, Debug)]
pub struct Psk(Secret<[u8; 32]>);

impl Psk {
    /// Length in bytes.
    pub const LEN: usize = 32;

    /// Wraps key bytes (e.g. read back from a store).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(Secret::new(bytes))
    }

    /// The key bytes, for handing to TLS. Never log them.
    pub fn dangerous_as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl PartialEq for Psk {
    fn eq(&self, other: &Self) -> bool {
        use subtle::ConstantTimeEq;
        self.0.ct_eq(&*other.0).into()
    }
}

impl Eq for Psk {}

/// The opaque name of a PSK: 16 bytes derived from the handshake (not secret; sent in the clear in
/// TLS). On the TLS wire it is the 32-character lower-case hex string ([`PskIdentity::to_hex`]).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PskIdentity([u8; 16]);

impl PskIdentity {
    /// Length in bytes.
    pub const LEN: usize = 16;

    /// Wraps identity bytes.
    pub fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(bytes)
    }

    /// The identity bytes.
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// The form used as a TLS PSK identity: 32 lower-case hex characters.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses the TLS form (exactly 32 hex characters, either case).
    pub fn from_hex(s: &[u8]) -> Option<Self> {
        if s.len() != 32 {
            return None;
        }
        let mut out = [0u8; 16];
        hex::decode_to_slice(s, &mut out).ok()?;
        Some(Self(out))
    }
}

impl fmt::Display for PskIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for PskIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PskIdentity({})", self.to_hex())
    }
}

/// A finished handshake: both parties hold the same [`Psk`] under the same [`PskIdentity`].
#[derive(Clone, PartialEq, Eq)]
pub struct Established {
    /// The pre-shared key.
    pub psk: Psk,
    /// Its identity.
    pub identity: PskIdentity,
    /// The authenticated peer.
    pub peer: IdentityName,
    /// The peer's approved on-chain key, as used in this handshake.
    pub peer_key: PublicIdentityKey,
    /// The protocol that produced the key.
    pub protocol: Protocol,
    /// How long the PSK may open new connections, from `established_at`.
    pub lifetime: Duration,
    /// When the handshake finished (the `now` of the last call).
    pub established_at: Instant,
}

impl Established {
    /// When the PSK stops opening new connections.
    pub fn expires_at(&self) -> Instant {
        self.established_at + self.lifetime
    }

    /// Whether the PSK has expired at `now`.
    pub fn is_expired(&self, now: Instant) -> bool {
        now >= self.expires_at()
    }
}

impl fmt::Debug for Established {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Established")
            .field("identity", &self.identity)
            .field("peer", &self.peer)
            .field("protocol", &self.protocol)
            .field("lifetime", &self.lifetime)
            .finish_non_exhaustive()
    }
}
