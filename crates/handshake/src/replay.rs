//! The responder's replay cache for message 1.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::HandshakeError;

/// Remembers the fresh value of every message 1 a responder accepted (NSL: the nonce `Na`; STS: the
/// ephemeral `gx`), for `retention`, and refuses a message 1 that carries one again.
///
/// Bounded: at most `capacity` entries. When full, expired entries go first, then the oldest. Evicting
/// a live entry is safe: a replayed message 1 never yields a session (the responder's fresh nonce or
/// ephemeral must be answered in message 3, which only the real initiator can do), so the cache is
/// defence in depth and a cheap early refusal, not the only protection; failing closed when full would
/// let a flood of message 1s lock out every honest initiator.
///
/// One cache serves all of a responder's handshakes, shared by reference (`&ReplayCache`, e.g. in an
/// `Arc`) across threads. It locks itself, and only for the check-and-insert: never while a handshake
/// waits on the key directory (a chain read), so one slow look-up cannot hold up other initiators.
#[derive(Debug)]
pub struct ReplayCache {
    inner: Mutex<Entries>,
    capacity: usize,
    retention: Duration,
}

/// The tokens, by value and in arrival order (for expiry and eviction, both O(1) per token).
#[derive(Debug, Default)]
struct Entries {
    seen: HashMap<[u8; 32], Instant>,
    order: VecDeque<([u8; 32], Instant)>,
}

impl ReplayCache {
    /// Default capacity: 65 536 entries (about 5 MB).
    pub const DEFAULT_CAPACITY: usize = 65_536;

    /// A cache keeping up to `capacity` entries for `retention` each. Use at least the handshake
    /// timeout as retention; the PSK lifetime is the conservative choice.
    pub fn new(capacity: usize, retention: Duration) -> Self {
        Self {
            inner: Mutex::new(Entries::default()),
            capacity: capacity.max(1),
            retention,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Entries> {
        // Every critical section leaves the two collections consistent before anything can panic,
        // so a poisoned lock still guards a usable cache.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Entries held now.
    pub fn len(&self) -> usize {
        self.lock().seen.len()
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Records `token` at `now`, or refuses it if seen within the retention. Takes the cache's lock
    /// for this call only.
    pub fn check_and_insert(&self, token: [u8; 32], now: Instant) -> Result<(), HandshakeError> {
        let mut entries = self.lock();
        entries.expire(now, self.retention);
        if entries.seen.contains_key(&token) {
            return Err(HandshakeError::Replay);
        }
        while entries.seen.len() >= self.capacity {
            match entries.order.pop_front() {
                Some((old, _)) => {
                    entries.seen.remove(&old);
                }
                None => break,
            }
        }
        entries.seen.insert(token, now);
        entries.order.push_back((token, now));
        Ok(())
    }
}

impl Entries {
    fn expire(&mut self, now: Instant, retention: Duration) {
        while let Some(&(token, at)) = self.order.front() {
            if now.saturating_duration_since(at) < retention {
                break;
            }
            self.order.pop_front();
            self.seen.remove(&token);
        }
    }
}

impl Default for ReplayCache {
    fn default() -> Self {
        Self::new(Self::DEFAULT_CAPACITY, Duration::from_secs(3600))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_within_retention_forgets_after_and_stays_bounded() {
        let t0 = Instant::now();
        let cache = ReplayCache::new(3, Duration::from_secs(10));
        cache.check_and_insert([1; 32], t0).unwrap();
        assert_eq!(
            cache.check_and_insert([1; 32], t0 + Duration::from_secs(9)),
            Err(HandshakeError::Replay)
        );
        cache
            .check_and_insert([1; 32], t0 + Duration::from_secs(10))
            .unwrap();
        for i in 2..10u8 {
            cache
                .check_and_insert([i; 32], t0 + Duration::from_secs(11))
                .unwrap();
            assert!(cache.len() <= 3);
        }
        assert_eq!(
            cache.check_and_insert([9; 32], t0 + Duration::from_secs(12)),
            Err(HandshakeError::Replay)
        );
    }
}
