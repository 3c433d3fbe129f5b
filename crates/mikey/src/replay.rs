//! RFC 3830 §5.4 replay protection: a timestamp window plus a bounded cache of messages seen inside it.

use std::collections::HashMap;

use sha2::{Digest, Sha256};

use crate::error::MikeyError;
use crate::time::NtpTime;

/// Default allowed clock skew, each way. RFC 3830 §5.4 leaves the value to the application and
/// §9.3 asks for it to be small; a minute covers phones without tight NTP sync.
pub const DEFAULT_WINDOW_SECS: u64 = 60;
/// Default cache bound: far above the offers one phone receives in two minutes.
pub const DEFAULT_CAPACITY: usize = 4096;

/// The replay cache (§5.4): remembers authenticated messages until their timestamp leaves the window.
///
/// Bounded: when it is full of entries still inside the window, new messages are refused
/// ([`MikeyError::ReplayCacheFull`]) rather than evicting an entry, which would reopen a replay.
#[derive(Debug, Clone)]
pub struct ReplayCache {
    window_secs: u64,
    capacity: usize,
    /// Message digest -> its timestamp.
    seen: HashMap<[u8; 32], NtpTime>,
}

impl Default for ReplayCache {
    fn default() -> Self {
        Self::new(DEFAULT_WINDOW_SECS, DEFAULT_CAPACITY)
    }
}

impl ReplayCache {
    /// A cache with a clock-skew window (seconds each way) and a size bound.
    pub fn new(window_secs: u64, capacity: usize) -> Self {
        Self {
            window_secs,
            capacity: capacity.max(1),
            seen: HashMap::new(),
        }
    }

    /// The window, in seconds each way.
    pub fn window_secs(&self) -> u64 {
        self.window_secs
    }

    /// Live entries.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }

    /// §5.4 first check, before any expensive work: the timestamp must be within the window of `now`.
    pub fn check_window(&self, ts: NtpTime, now: NtpTime) -> Result<(), MikeyError> {
        let skew_secs = ts.abs_diff_secs(now);
        if skew_secs > self.window_secs {
            return Err(MikeyError::StaleTimestamp {
                window_secs: self.window_secs,
                skew_secs,
            });
        }
        Ok(())
    }

    /// §5.4 second check, after authentication: refuse a message seen before, else remember it.
    ///
    /// `message` is the whole authenticated message; entries whose timestamp has left the window are
    /// dropped first (a replay of one of those fails [`Self::check_window`]).
    pub fn check_and_insert(
        &mut self,
        message: &[u8],
        ts: NtpTime,
        now: NtpTime,
    ) -> Result<(), MikeyError> {
        self.check_window(ts, now)?;
        let digest: [u8; 32] = Sha256::digest(message).into();
        if self.seen.contains_key(&digest) {
            return Err(MikeyError::Replay);
        }
        if self.seen.len() >= self.capacity {
            let window = self.window_secs;
            self.seen.retain(|_, t| t.abs_diff_secs(now) <= window);
            if self.seen.len() >= self.capacity {
                return Err(MikeyError::ReplayCacheFull(self.seen.len()));
            }
        }
        self.seen.insert(digest, ts);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_replays_stale_times_and_overflow() {
        let now = NtpTime::from_unix(1_000_000, 0);
        let mut cache = ReplayCache::new(60, 2);
        cache.check_and_insert(b"a", now, now).unwrap();
        assert_eq!(
            cache.check_and_insert(b"a", now, now),
            Err(MikeyError::Replay)
        );
        assert!(matches!(
            cache.check_and_insert(b"b", NtpTime::from_unix(1_000_061, 0), now),
            Err(MikeyError::StaleTimestamp { skew_secs: 61, .. })
        ));
        cache.check_and_insert(b"b", now, now).unwrap();
        assert_eq!(
            cache.check_and_insert(b"c", now, now),
            Err(MikeyError::ReplayCacheFull(2))
        );
        // Two minutes later the old entries have left the window and make room.
        let later = NtpTime::from_unix(1_000_120, 0);
        cache.check_and_insert(b"c", later, later).unwrap();
        assert_eq!(cache.len(), 1);
    }
}
