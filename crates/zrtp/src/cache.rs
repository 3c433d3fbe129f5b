//! Retained secrets (RFC 6189 §4.9): rs1 and rs2 per peer ZID, kept by the shell between calls.
//!
//! The engine reads a peer's entry once it knows the peer's ZID (from its Hello) and writes the
//! new rs1 after the exchange went secure. [`InMemoryCache`] serves tests and short-lived
//! processes; a phone implements [`SecretCache`] over its own storage.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Mutex, PoisonError};

use zeroize::Zeroizing;

use crate::wire::Zid;

/// A 256-bit retained secret, zeroized on drop and never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct RetainedSecret(Zeroizing<[u8; 32]>);

impl RetainedSecret {
    /// Wraps 32 octets.
    pub fn new(bytes: [u8; 32]) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// The secret octets (for a cache's storage only).
    pub fn dangerous_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for RetainedSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RetainedSecret(redacted)")
    }
}

/// What the cache holds for one peer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CacheEntry {
    /// The newest retained secret.
    pub rs1: Option<RetainedSecret>,
    /// The one before it (kept so that one lost update does not break the chain).
    pub rs2: Option<RetainedSecret>,
    /// The users compared the SAS on a call that produced these secrets (RFC 6189 §7.1).
    pub sas_verified: bool,
}

/// Storage of retained secrets keyed by the peer's ZID. Implementations must be safe to share
/// between calls; a failure to store is the shell's to log (the call itself is already secure).
pub trait SecretCache: Send + Sync {
    /// The entry for `peer`, empty if none.
    fn load(&self, peer: &Zid) -> CacheEntry;
    /// Replaces the entry for `peer`.
    fn store(&self, peer: &Zid, entry: CacheEntry);
}

/// A [`SecretCache`] in memory (tests, demos): lost when the process ends.
#[derive(Debug, Default)]
pub struct InMemoryCache(Mutex<HashMap<Zid, CacheEntry>>);

impl InMemoryCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }
}

impl SecretCache for InMemoryCache {
    fn load(&self, peer: &Zid) -> CacheEntry {
        // A panic while holding the lock cannot leave a half-written entry: inserts are atomic.
        let map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        map.get(peer).cloned().unwrap_or_default()
    }

    fn store(&self, peer: &Zid, entry: CacheEntry) {
        let mut map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        map.insert(*peer, entry);
    }
}
