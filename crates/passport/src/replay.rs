//! The replay cache: each PASSporT is accepted once while it is fresh.

use std::collections::{BTreeSet, HashMap};

use crate::PassportId;

/// Why a replay cache refused a PASSporT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReplayError {
    /// Already accepted, and not yet expired.
    Replayed,
    /// No room: every entry is still inside the freshness window (the cache refuses rather than
    /// forget one, which would let that one be replayed).
    Full {
        /// The cache's capacity.
        capacity: usize,
    },
}

/// Remembers accepted PASSporTs until they are too old to pass the freshness check anyway.
pub trait ReplayCache {
    /// Accepts `id` if unseen (remembering it until `expires_at`, Unix seconds), or refuses it.
    /// Called last, after every other check passed, so only valid PASSporTs take room.
    fn check_and_insert(
        &mut self,
        id: PassportId,
        expires_at: u64,
        now: u64,
    ) -> Result<(), ReplayError>;
}

/// A bounded in-memory [`ReplayCache`]; entries leave when they expire.
#[derive(Debug, Clone)]
pub struct MemoryReplayCache {
    capacity: usize,
    expiry: HashMap<PassportId, u64>,
    /// The same entries ordered by expiry, so expired ones are dropped oldest first.
    by_expiry: BTreeSet<(u64, PassportId)>,
}

impl MemoryReplayCache {
    /// Room for 65,536 PASSporTs: with the 60 s window, over 1,000 verified calls a second.
    pub const DEFAULT_CAPACITY: usize = 65_536;

    /// A cache holding at most `capacity` fresh PASSporTs.
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            expiry: HashMap::new(),
            by_expiry: BTreeSet::new(),
        }
    }

    /// How many PASSporTs it remembers now.
    pub fn len(&self) -> usize {
        self.expiry.len()
    }

    /// Whether it remembers none.
    pub fn is_empty(&self) -> bool {
        self.expiry.is_empty()
    }

    fn prune(&mut self, now: u64) {
        while let Some(&(at, id)) = self.by_expiry.first() {
            if at > now {
                break;
            }
            self.by_expiry.pop_first();
            self.expiry.remove(&id);
        }
    }
}

impl Default for MemoryReplayCache {
    fn default() -> Self {
        Self::new(Self::DEFAULT_CAPACITY)
    }
}

impl ReplayCache for MemoryReplayCache {
    fn check_and_insert(
        &mut self,
        id: PassportId,
        expires_at: u64,
        now: u64,
    ) -> Result<(), ReplayError> {
        self.prune(now);
        if self.expiry.contains_key(&id) {
            return Err(ReplayError::Replayed);
        }
        if self.expiry.len() >= self.capacity {
            return Err(ReplayError::Full {
                capacity: self.capacity,
            });
        }
        self.expiry.insert(id, expires_at);
        self.by_expiry.insert((expires_at, id));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_until_expiry_and_stays_bounded() {
        let mut cache = MemoryReplayCache::new(2);
        let (a, b, c) = (
            PassportId([1; 32]),
            PassportId([2; 32]),
            PassportId([3; 32]),
        );
        cache.check_and_insert(a, 100, 10).unwrap();
        assert_eq!(
            cache.check_and_insert(a, 100, 50),
            Err(ReplayError::Replayed)
        );
        cache.check_and_insert(b, 120, 50).unwrap();
        assert_eq!(
            cache.check_and_insert(c, 130, 60),
            Err(ReplayError::Full { capacity: 2 })
        );
        // At 100 the first expired: room again, and it may come back (freshness refuses it then).
        cache.check_and_insert(c, 160, 100).unwrap();
        assert_eq!(cache.len(), 2);
        cache.check_and_insert(a, 170, 121).unwrap();
        assert_eq!(cache.len(), 2);
    }
}
