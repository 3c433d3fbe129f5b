//! The server's PSK store: identity → key, with expiry.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use chaincall_handshake::{Established, Psk};
use chaincall_identity::IdentityName;

/// One stored PSK.
#[derive(Clone, Debug)]
pub struct PskEntry {
    /// The key (redacted in `Debug`).
    pub psk: Psk,
    /// Who it was agreed with, when it came from a handshake.
    pub peer: Option<IdentityName>,
    /// After this instant the PSK opens no new connection.
    pub expires_at: Instant,
}

/// What a lookup found.
#[derive(Debug)]
pub(crate) enum Lookup {
    Found(PskEntry),
    Expired,
    Unknown,
}

/// PSK identity → key, shared by all connections of a server (cheap to clone: one `Arc`).
///
/// Bounded at `capacity` entries: when full, expired entries are dropped, then the one expiring
/// soonest. Identities are the raw bytes the TLS client sends (for handshake PSKs, the 32-character
/// hex of the [`PskIdentity`](chaincall_handshake::PskIdentity)).
#[derive(Clone, Debug)]
pub struct PskStore {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Debug)]
struct Inner {
    entries: HashMap<Vec<u8>, PskEntry>,
    capacity: usize,
}

impl PskStore {
    /// Default capacity: 100 000 PSKs.
    pub const DEFAULT_CAPACITY: usize = 100_000;

    /// An empty store holding at most `capacity` PSKs.
    pub fn new(capacity: usize) -> Self {
        Self {
            inner: Arc::new(Mutex::new(Inner {
                entries: HashMap::new(),
                capacity: capacity.max(1),
            })),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding this lock leaves the map consistent (every mutation is one call).
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Stores the PSK of a finished handshake under its identity's TLS form (hex).
    pub fn insert_established(&self, established: &Established) {
        self.insert(
            established.identity.to_hex().into_bytes(),
            PskEntry {
                psk: established.psk.clone(),
                peer: Some(established.peer.clone()),
                expires_at: established.expires_at(),
            },
        );
    }

    /// Stores a PSK under any identity (e.g. one provisioned out of band).
    pub fn insert(&self, identity: Vec<u8>, entry: PskEntry) {
        let mut inner = self.lock();
        if !inner.entries.contains_key(&identity) && inner.entries.len() >= inner.capacity {
            let now = Instant::now();
            inner.entries.retain(|_, e| e.expires_at > now);
            if inner.entries.len() >= inner.capacity {
                let soonest = inner
                    .entries
                    .iter()
                    .min_by_key(|(_, e)| e.expires_at)
                    .map(|(k, _)| k.clone());
                if let Some(k) = soonest {
                    inner.entries.remove(&k);
                }
            }
        }
        inner.entries.insert(identity, entry);
    }

    /// Removes a PSK (e.g. when its peer's key is revoked).
    pub fn remove(&self, identity: &[u8]) -> bool {
        self.lock().entries.remove(identity).is_some()
    }

    /// Drops every PSK expired at `now`; returns how many.
    pub fn purge_expired(&self, now: Instant) -> usize {
        let mut inner = self.lock();
        let before = inner.entries.len();
        inner.entries.retain(|_, e| e.expires_at > now);
        before - inner.entries.len()
    }

    /// PSKs held.
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    /// Whether the store is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The live PSK for `identity` at `now`; an expired one is removed and refused.
    pub fn get(&self, identity: &[u8], now: Instant) -> Option<PskEntry> {
        match self.lookup(identity, now) {
            Lookup::Found(e) => Some(e),
            _ => None,
        }
    }

    pub(crate) fn lookup(&self, identity: &[u8], now: Instant) -> Lookup {
        let mut inner = self.lock();
        match inner.entries.get(identity) {
            None => Lookup::Unknown,
            Some(e) if now >= e.expires_at => {
                inner.entries.remove(identity);
                Lookup::Expired
            }
            Some(e) => Lookup::Found(e.clone()),
        }
    }
}

impl Default for PskStore {
    fn default() -> Self {
        Self::new(Self::DEFAULT_CAPACITY)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn entry(expires_at: Instant) -> PskEntry {
        PskEntry {
            psk: Psk::from_bytes([7; 32]),
            peer: None,
            expires_at,
        }
    }

    #[test]
    fn expired_psks_are_refused_and_dropped() {
        let now = Instant::now();
        let store = PskStore::new(10);
        store.insert(b"a".to_vec(), entry(now + Duration::from_secs(5)));
        assert!(store.get(b"a", now).is_some());
        assert!(matches!(
            store.lookup(b"a", now + Duration::from_secs(5)),
            Lookup::Expired
        ));
        assert!(store.is_empty());
        assert!(matches!(store.lookup(b"b", now), Lookup::Unknown));
    }

    #[test]
    fn bounded_evicting_the_soonest_to_expire() {
        let now = Instant::now();
        let store = PskStore::new(2);
        store.insert(b"late".to_vec(), entry(now + Duration::from_secs(100)));
        store.insert(b"soon".to_vec(), entry(now + Duration::from_secs(10)));
        store.insert(b"new".to_vec(), entry(now + Duration::from_secs(50)));
        assert_eq!(store.len(), 2);
        assert!(store.get(b"soon", now).is_none());
        assert!(store.get(b"late", now).is_some() && store.get(b"new", now).is_some());
    }
}
