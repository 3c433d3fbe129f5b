//! The server's PSK store: identity → key, with expiry, a per-peer cap and LRU eviction.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use chaincall_handshake::{Established, Psk};
use chaincall_identity::{IdentityName, PublicIdentityKey};
use lru::LruCache;

/// One stored PSK.
#[derive(Clone, Debug)]
pub struct PskEntry {
    /// The key (redacted in `Debug`).
    pub psk: Psk,
    /// Who it was agreed with, when it came from a handshake.
    pub peer: Option<IdentityName>,
    /// The peer's on-chain key the handshake proved. A server that re-checks keys
    /// ([`PskServer`](crate::PskServer) with a handshake service) accepts the PSK only while the
    /// directory still lists this key as `peer`'s approved one; `None` with a `peer`: while `peer`
    /// has any approved key.
    pub peer_key: Option<PublicIdentityKey>,
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
/// Bounded twice, each in O(1) per insert:
/// - **per peer**: at most `per_peer` PSKs agreed with one identity (default
///   [`PskStore::DEFAULT_PER_PEER`]); a peer's next handshake drops that peer's oldest PSK, so one
///   approved subscriber running handshakes in a loop only ever replaces its own PSKs;
/// - **overall**: at most `capacity` PSKs; when full, the least recently used one (inserted or
///   used to open a TLS connection longest ago) goes. Pushing other phones' PSKs out this way takes
///   `capacity / per_peer` distinct approved identities.
///
/// PSKs stored without a peer (provisioned out of band) count only toward the overall bound.
/// Identities are the raw bytes the TLS client sends (for handshake PSKs, the 32-character hex of
/// the [`PskIdentity`](chaincall_handshake::PskIdentity)).
#[derive(Clone, Debug)]
pub struct PskStore {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Debug)]
struct Inner {
    /// Every PSK, least recently used last.
    entries: LruCache<Vec<u8>, PskEntry>,
    /// Each peer's PSK identities, oldest first; never longer than `per_peer`, never empty.
    by_peer: HashMap<IdentityName, VecDeque<Vec<u8>>>,
    capacity: usize,
    per_peer: usize,
    /// Entries removed to make room, over the store's life (evidence that an insert does O(1) work).
    evictions: u64,
}

impl Inner {
    /// Removes `identity` (if held) from the entries and from its peer's list.
    fn take(&mut self, identity: &[u8]) -> Option<PskEntry> {
        let entry = self.entries.pop(identity)?;
        if let Some(peer) = &entry.peer {
            self.forget(peer, identity);
        }
        Some(entry)
    }

    /// Drops `identity` from `peer`'s list: a scan of at most `per_peer` identities.
    fn forget(&mut self, peer: &IdentityName, identity: &[u8]) {
        if let Some(list) = self.by_peer.get_mut(peer) {
            list.retain(|id| id.as_slice() != identity);
            if list.is_empty() {
                self.by_peer.remove(peer);
            }
        }
    }

    fn insert(&mut self, identity: Vec<u8>, entry: PskEntry) {
        // A re-used identity replaces its entry (and its place in a peer's list).
        self.take(&identity);
        if let Some(peer) = &entry.peer {
            let per_peer = self.per_peer;
            let list = self.by_peer.entry(peer.clone()).or_default();
            let mut dropped = Vec::new();
            while list.len() >= per_peer {
                match list.pop_front() {
                    Some(old) => dropped.push(old),
                    None => break,
                }
            }
            list.push_back(identity.clone());
            for old in dropped {
                self.entries.pop(&old);
                self.evictions += 1;
            }
        }
        while self.entries.len() >= self.capacity {
            let Some((old, evicted)) = self.entries.pop_lru() else {
                break;
            };
            if let Some(peer) = &evicted.peer {
                self.forget(peer, &old);
            }
            self.evictions += 1;
        }
        self.entries.push(identity, entry);
    }
}

impl PskStore {
    /// Default capacity: 100 000 PSKs.
    pub const DEFAULT_CAPACITY: usize = 100_000;
    /// Default PSKs kept per peer: a phone needs one; a few cover several devices sharing an
    /// identity and reconnects racing a fresh handshake.
    pub const DEFAULT_PER_PEER: usize = 4;

    /// An empty store holding at most `capacity` PSKs, [`PskStore::DEFAULT_PER_PEER`] per peer.
    pub fn new(capacity: usize) -> Self {
        Self::with_limits(capacity, Self::DEFAULT_PER_PEER)
    }

    /// An empty store holding at most `capacity` PSKs and `per_peer` per peer (each at least one).
    pub fn with_limits(capacity: usize, per_peer: usize) -> Self {
        Self {
            inner: Arc::new(Mutex::new(Inner {
                entries: LruCache::unbounded(),
                by_peer: HashMap::new(),
                capacity: capacity.max(1),
                per_peer: per_peer.max(1),
                evictions: 0,
            })),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding this lock leaves the maps consistent: no step below can panic
        // between updating the entries and the peer lists.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Stores the PSK of a finished handshake under its identity's TLS form (hex).
    pub fn insert_established(&self, established: &Established) {
        self.insert(
            established.identity.to_hex().into_bytes(),
            PskEntry {
                psk: established.psk.clone(),
                peer: Some(established.peer.clone()),
                peer_key: Some(established.peer_key.clone()),
                expires_at: established.expires_at(),
            },
        );
    }

    /// Stores a PSK under any identity (e.g. one provisioned out of band), dropping the peer's
    /// oldest PSK past the per-peer cap, then the least recently used PSK past the capacity.
    pub fn insert(&self, identity: Vec<u8>, entry: PskEntry) {
        self.lock().insert(identity, entry);
    }

    /// Removes a PSK (e.g. when its peer's key is revoked).
    pub fn remove(&self, identity: &[u8]) -> bool {
        self.lock().take(identity).is_some()
    }

    /// Removes every PSK agreed with `peer` (e.g. when its on-chain key was revoked or replaced);
    /// returns how many.
    pub fn remove_peer(&self, peer: &IdentityName) -> usize {
        let mut inner = self.lock();
        let Some(list) = inner.by_peer.remove(peer) else {
            return 0;
        };
        for identity in &list {
            inner.entries.pop(identity);
        }
        list.len()
    }

    /// Drops every PSK expired at `now`; returns how many. Scans the whole store: call it from a
    /// periodic task, not per connection.
    pub fn purge_expired(&self, now: Instant) -> usize {
        let mut inner = self.lock();
        let expired: Vec<Vec<u8>> = inner
            .entries
            .iter()
            .filter(|(_, e)| e.expires_at <= now)
            .map(|(k, _)| k.clone())
            .collect();
        for identity in &expired {
            inner.take(identity);
        }
        expired.len()
    }

    /// PSKs held.
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    /// Whether the store is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The live PSK for `identity` at `now` (which makes it the most recently used); an expired one
    /// is removed and refused.
    pub fn get(&self, identity: &[u8], now: Instant) -> Option<PskEntry> {
        match self.lookup(identity, now) {
            Lookup::Found(e) => Some(e),
            _ => None,
        }
    }

    pub(crate) fn lookup(&self, identity: &[u8], now: Instant) -> Lookup {
        let mut inner = self.lock();
        match inner.entries.get(identity) {
            None => return Lookup::Unknown,
            Some(e) if now < e.expires_at => return Lookup::Found(e.clone()),
            Some(_) => {}
        }
        inner.take(identity);
        Lookup::Expired
    }

    /// Entries removed to make room so far (by the per-peer cap or the capacity).
    #[cfg(test)]
    fn evictions(&self) -> u64 {
        self.lock().evictions
    }

    /// How many PSKs are held for `peer`.
    #[cfg(test)]
    fn held_for(&self, peer: &IdentityName) -> usize {
        self.lock().by_peer.get(peer).map_or(0, VecDeque::len)
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
            peer_key: None,
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
    fn each_insert_evicts_at_most_two_entries_and_the_maps_stay_bounded() {
        let now = Instant::now();
        let later = now + Duration::from_secs(3600);
        let store = PskStore::with_limits(1_000, 4);
        let busy: IdentityName = "+15559999999".parse().unwrap();
        let mut before = 0;
        for i in 0..20_000u32 {
            let peer = if i % 2 == 0 {
                busy.clone()
            } else {
                format!("+1555{:07}", i).parse().unwrap()
            };
            store.insert(
                i.to_be_bytes().to_vec(),
                PskEntry {
                    peer: Some(peer),
                    ..entry(later)
                },
            );
            let after = store.evictions();
            // The work per insert: one per-peer eviction and one LRU eviction at most.
            assert!(after - before <= 2, "insert {i} evicted {}", after - before);
            before = after;
            assert!(store.len() <= 1_000);
            assert!(store.held_for(&busy) <= 4);
        }
        let inner = store.lock();
        let listed: usize = inner.by_peer.values().map(VecDeque::len).sum();
        assert_eq!(listed, inner.entries.len(), "every entry listed once");
        assert!(inner.by_peer.len() <= inner.entries.len());
    }

    #[test]
    fn removing_and_expiring_keep_the_peer_lists_in_step() {
        let now = Instant::now();
        let store = PskStore::with_limits(10, 2);
        let peer: IdentityName = "+15551230001".parse().unwrap();
        let mine = |at| PskEntry {
            peer: Some(peer.clone()),
            ..entry(at)
        };
        store.insert(b"a".to_vec(), mine(now + Duration::from_secs(5)));
        store.insert(b"b".to_vec(), mine(now + Duration::from_secs(50)));
        assert!(store.remove(b"b"));
        assert_eq!(store.held_for(&peer), 1);
        assert!(store.get(b"a", now + Duration::from_secs(6)).is_none());
        assert_eq!(store.held_for(&peer), 0);
        store.insert(b"c".to_vec(), mine(now + Duration::from_secs(5)));
        store.insert(b"d".to_vec(), mine(now + Duration::from_secs(50)));
        assert_eq!(store.purge_expired(now + Duration::from_secs(6)), 1);
        assert_eq!(store.held_for(&peer), 1);
        // Re-inserting the same identity replaces it rather than using a second slot.
        store.insert(b"d".to_vec(), mine(now + Duration::from_secs(60)));
        store.insert(b"d".to_vec(), mine(now + Duration::from_secs(70)));
        assert_eq!((store.len(), store.held_for(&peer)), (1, 1));
        // A peer's PSKs all go at once; others' stay.
        store.insert(b"e".to_vec(), mine(now + Duration::from_secs(60)));
        store.insert(b"f".to_vec(), entry(now + Duration::from_secs(60)));
        assert_eq!(store.remove_peer(&peer), 2);
        assert_eq!((store.len(), store.held_for(&peer)), (1, 0));
        assert_eq!(store.remove_peer(&peer), 0);
    }
}
