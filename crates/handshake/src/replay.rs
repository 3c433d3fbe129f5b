//! The responder's replay cache for message 1.

use std::collections::{HashMap, VecDeque};
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
/// One cache serves all of a responder's handshakes (share it behind a mutex in a threaded shell).
#[derive(Debug)]
pub struct ReplayCache {
    seen: HashMap<[u8; 32], Instant>,
    order: VecDeque<([u8; 32], Instant)>,
    capacity: usize,
    retention: Duration,
}

impl ReplayCache {
    /// Default capacity: 65 536 entries (about 5 MB).
    pub const DEFAULT_CAPACITY: usize = 65_536;

    /// A cache keeping up to `capacity` entries for `retention` each. Use at least the handshake
    /// timeout as retention; the PSK lifetime is the conservative choice.
    pub fn new(capacity: usize, retention: Duration) -> Self {
        Self {
            seen: HashMap::new(),
            order: VecDeque::new(),
            capacity: capacity.max(1),
            retention,
        }
    }

    /// Entries held now.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }

    /// Records `token` at `now`, or refuses it if seen within the retention.
    pub fn check_and_insert(
        &mut self,
        token: [u8; 32],
        now: Instant,
    ) -> Result<(), HandshakeError> {
        self.expire(now);
        if self.seen.contains_key(&token) {
            return Err(HandshakeError::Replay);
        }
        while self.seen.len() >= self.capacity {
            match self.order.pop_front() {
                Some((old, _)) => {
                    self.seen.remove(&old);
                }
                None => break,
            }
        }
        self.seen.insert(token, now);
        self.order.push_back((token, now));
        Ok(())
    }

    fn expire(&mut self, now: Instant) {
        while let Some(&(token, at)) = self.order.front() {
            if now.saturating_duration_since(at) < self.retention {
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
        let mut cache = ReplayCache::new(3, Duration::from_secs(10));
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
