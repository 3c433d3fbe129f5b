//! RFC 3830 §5.4 replay protection: a timestamp window plus a bounded cache of the exchanges
//! accepted inside it.
//!
//! An entry names the exchange — mode, authenticated initiator, CSB ID, T and RAND — never the
//! message bytes: anything an attacker can vary without the keys (a malleated or second signature,
//! another encoding) would otherwise make a replay look new. Entries leave when their timestamp
//! leaves the window (a replay of them then fails the window check), through an expiry index whose
//! cost per entry does not grow with the number of entries. Each initiator has a quota inside the
//! bound, so one signer flooding offers fills only its own share.

use std::collections::{BTreeMap, HashMap};

use chaincall_identity::IdentityName;
use sha2::{Digest, Sha256};

use crate::error::MikeyError;
use crate::session::Mode;
use crate::time::NtpTime;

/// Default allowed clock skew, each way. RFC 3830 §5.4 leaves the value to the application and
/// §9.3 asks for it to be small; a minute covers phones without tight NTP sync.
pub const DEFAULT_WINDOW_SECS: u64 = 60;
/// Default cache bound: far above the offers one phone receives in two minutes.
pub const DEFAULT_CAPACITY: usize = 4096;
/// Default share of the cache one initiator may hold: far above the calls one caller places to one
/// phone in two minutes, and 1/128 of [`DEFAULT_CAPACITY`].
pub const DEFAULT_PER_INITIATOR: usize = 32;

/// What names one exchange in the replay cache (RFC 3830 §5.4).
///
/// Every field is authenticated by the time the cache sees it (signed in PKE and DH-SIGN, MACed in
/// PSK), and none depends on how the message was encoded or signed.
#[derive(Debug, Clone, Copy)]
pub struct ExchangeId<'a> {
    /// The mode (an offer in one mode is never a replay of one in another).
    pub mode: Mode,
    /// The authenticated initiator (the identity IDi resolved to, not its URI bytes).
    pub initiator: &'a IdentityName,
    /// The CSB ID from the header.
    pub csb_id: u32,
    /// The initiator's timestamp (T).
    pub t: NtpTime,
    /// The initiator's RAND.
    pub rand: &'a [u8],
}

impl ExchangeId<'_> {
    /// SHA-256 over a label and the length-prefixed fields: a fixed-size key however long RAND is.
    fn digest(&self) -> [u8; 32] {
        let mode: u8 = match self.mode {
            Mode::Psk => 0,
            Mode::Pke => 1,
            Mode::DhSign => 2,
        };
        let name = self.initiator.canonical();
        let mut h = Sha256::new();
        h.update(b"chaincall mikey replay v1");
        h.update([mode]);
        // Invariant: canonical names and RANDs are far shorter than 4 GiB (a payload is < 64 KiB).
        h.update((name.len() as u32).to_be_bytes());
        h.update(name.as_bytes());
        h.update(self.csb_id.to_be_bytes());
        h.update(self.t.0.to_be_bytes());
        h.update((self.rand.len() as u32).to_be_bytes());
        h.update(self.rand);
        h.finalize().into()
    }
}

#[derive(Debug, Clone)]
struct Entry {
    /// The NTP second from which the entry may go ([`ReplayCache::expiry_second`]).
    expires: u64,
    initiator: IdentityName,
}

/// The replay cache (§5.4): remembers accepted exchanges until their timestamp leaves the window.
///
/// Bounded twice: in total (`capacity`) and per initiator (`per_initiator`). When a bound is
/// reached by entries still inside the window, the new exchange is refused
/// ([`MikeyError::ReplayCacheFull`], [`MikeyError::ReplayQuotaFull`]) rather than evicting an
/// entry, which would reopen a replay. The clock may step back: timestamps older than the window
/// around the latest `now` seen stay refused, so an entry is never dropped while its replay could
/// still pass the window check.
#[derive(Debug, Clone)]
pub struct ReplayCache {
    window_secs: u64,
    capacity: usize,
    per_initiator: usize,
    /// Exchange digest -> entry.
    seen: HashMap<[u8; 32], Entry>,
    /// Live entries per initiator.
    counts: HashMap<IdentityName, usize>,
    /// Expiry second -> the digests expiring then. At most 2 × window + 2 keys are live at once,
    /// so each entry costs O(log window) to index and O(1) amortised to drop.
    expiry: BTreeMap<u64, Vec<[u8; 32]>>,
    /// The latest `now` passed in.
    high_water: NtpTime,
}

impl Default for ReplayCache {
    fn default() -> Self {
        Self::new(DEFAULT_WINDOW_SECS, DEFAULT_CAPACITY, DEFAULT_PER_INITIATOR)
    }
}

impl ReplayCache {
    /// A cache with a clock-skew window (seconds each way), a size bound and a per-initiator bound
    /// (both at least 1; the per-initiator bound at most the size bound).
    pub fn new(window_secs: u64, capacity: usize, per_initiator: usize) -> Self {
        let capacity = capacity.max(1);
        Self {
            window_secs,
            capacity,
            per_initiator: per_initiator.clamp(1, capacity),
            seen: HashMap::new(),
            counts: HashMap::new(),
            expiry: BTreeMap::new(),
            high_water: NtpTime(0),
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

    /// Live entries of one initiator.
    pub fn len_of(&self, initiator: &IdentityName) -> usize {
        self.counts.get(initiator).copied().unwrap_or(0)
    }

    /// §5.4 first check, before any expensive work: the timestamp must be within the window of
    /// `now`, and not older than the window around the latest `now` this cache has seen (entries
    /// that old are gone, so their replays must fail here).
    pub fn check_window(&self, ts: NtpTime, now: NtpTime) -> Result<(), MikeyError> {
        let skew_secs = ts.abs_diff_secs(now);
        let behind_secs = if ts < self.high_water {
            ts.abs_diff_secs(self.high_water)
        } else {
            0
        };
        let skew_secs = skew_secs.max(behind_secs);
        if skew_secs > self.window_secs {
            return Err(MikeyError::StaleTimestamp {
                window_secs: self.window_secs,
                skew_secs,
            });
        }
        Ok(())
    }

    /// §5.4 second check, after authentication: refuse an exchange seen before, else remember it.
    ///
    /// Entries whose timestamp has left the window are dropped first (a replay of one of those
    /// fails [`Self::check_window`]).
    pub fn check_and_insert(
        &mut self,
        exchange: &ExchangeId<'_>,
        now: NtpTime,
    ) -> Result<(), MikeyError> {
        self.high_water = self.high_water.max(now);
        self.expire();
        self.check_window(exchange.t, now)?;
        let digest = exchange.digest();
        if self.seen.contains_key(&digest) {
            return Err(MikeyError::Replay);
        }
        let held = self.len_of(exchange.initiator);
        if held >= self.per_initiator {
            return Err(MikeyError::ReplayQuotaFull {
                initiator: exchange.initiator.clone(),
                live: held,
            });
        }
        if self.seen.len() >= self.capacity {
            return Err(MikeyError::ReplayCacheFull(self.seen.len()));
        }
        let expires = self.expiry_second(exchange.t);
        self.expiry.entry(expires).or_default().push(digest);
        *self.counts.entry(exchange.initiator.clone()).or_default() += 1;
        self.seen.insert(
            digest,
            Entry {
                expires,
                initiator: exchange.initiator.clone(),
            },
        );
        Ok(())
    }

    /// The first whole NTP second at which an entry with timestamp `ts` fails the window check
    /// against the high-water mark: `ts + window + 1 s`, rounded up.
    fn expiry_second(&self, ts: NtpTime) -> u64 {
        let end =
            ts.0.saturating_add((self.window_secs.saturating_add(1)) << 32);
        (end >> 32) + u64::from(end & 0xffff_ffff != 0)
    }

    /// Drops every entry whose expiry second has come (by the high-water mark).
    fn expire(&mut self) {
        let now_second = self.high_water.0 >> 32;
        while let Some(entry) = self.expiry.first_entry() {
            if *entry.key() > now_second {
                break;
            }
            for digest in entry.remove() {
                let Some(gone) = self.seen.remove(&digest) else {
                    continue;
                };
                debug_assert!(gone.expires <= now_second);
                if let Some(n) = self.counts.get_mut(&gone.initiator) {
                    *n -= 1;
                    if *n == 0 {
                        self.counts.remove(&gone.initiator);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(n: &str) -> IdentityName {
        n.parse().unwrap()
    }

    fn ex<'a>(who: &'a IdentityName, rand: &'a [u8], t: NtpTime) -> ExchangeId<'a> {
        ExchangeId {
            mode: Mode::Pke,
            initiator: who,
            csb_id: 7,
            t,
            rand,
        }
    }

    #[test]
    fn refuses_replays_stale_times_and_overflow() {
        let now = NtpTime::from_unix(1_000_000, 0);
        let (a, b) = (name("+15551230001"), name("+15551230002"));
        let mut cache = ReplayCache::new(60, 2, 2);
        cache.check_and_insert(&ex(&a, b"a", now), now).unwrap();
        assert_eq!(
            cache.check_and_insert(&ex(&a, b"a", now), now),
            Err(MikeyError::Replay)
        );
        // Another mode, initiator, CSB ID, T or RAND is another exchange.
        let mut other = ex(&a, b"a", now);
        other.mode = Mode::DhSign;
        assert_ne!(other.digest(), ex(&a, b"a", now).digest());
        other = ex(&a, b"a", now);
        other.csb_id = 8;
        assert_ne!(other.digest(), ex(&a, b"a", now).digest());
        assert_ne!(ex(&b, b"a", now).digest(), ex(&a, b"a", now).digest());
        assert_ne!(
            ex(&a, b"a", NtpTime(now.0 + 1)).digest(),
            ex(&a, b"a", now).digest()
        );
        assert!(matches!(
            cache.check_and_insert(&ex(&b, b"b", NtpTime::from_unix(1_000_061, 0)), now),
            Err(MikeyError::StaleTimestamp { skew_secs: 61, .. })
        ));
        cache.check_and_insert(&ex(&b, b"b", now), now).unwrap();
        assert_eq!(
            cache.check_and_insert(&ex(&b, b"c", now), now),
            Err(MikeyError::ReplayCacheFull(2))
        );
        // Two minutes later the old entries have left the window and make room.
        let later = NtpTime::from_unix(1_000_120, 0);
        cache.check_and_insert(&ex(&b, b"c", later), later).unwrap();
        assert_eq!((cache.len(), cache.len_of(&a), cache.len_of(&b)), (1, 0, 1));
    }

    #[test]
    fn each_initiator_is_held_to_its_quota() {
        let now = NtpTime::from_unix(1_000_000, 0);
        let (m, a) = (name("+15551230666"), name("+15551230001"));
        let mut cache = ReplayCache::new(60, 10, 3);
        for r in [b"1", b"2", b"3"] {
            cache.check_and_insert(&ex(&m, r, now), now).unwrap();
        }
        assert_eq!(
            cache.check_and_insert(&ex(&m, b"4", now), now),
            Err(MikeyError::ReplayQuotaFull {
                initiator: m.clone(),
                live: 3
            })
        );
        cache.check_and_insert(&ex(&a, b"1", now), now).unwrap();
        // A replay is still a replay at the quota.
        assert_eq!(
            cache.check_and_insert(&ex(&m, b"1", now), now),
            Err(MikeyError::Replay)
        );
    }

    /// Entries go when their timestamp leaves the window, not before: inside the window a replay
    /// is caught by the cache, outside by the window check, and the entry is gone within a second.
    #[test]
    fn entries_expire_with_the_window_and_never_earlier() {
        let t = NtpTime::from_unix(1_000_000, 500_000_000);
        let a = name("+15551230001");
        let has = |c: &ReplayCache, r: &[u8], ts| c.seen.contains_key(&ex(&a, r, ts).digest());
        let secs = |n: u64| NtpTime(t.0 + (n << 32));
        let mut cache = ReplayCache::new(60, 10, 10);
        cache.check_and_insert(&ex(&a, b"x", t), t).unwrap();
        // A future-dated timestamp (t + 60 s, accepted at t) lives until t + 121 s.
        cache.check_and_insert(&ex(&a, b"y", secs(60)), t).unwrap();
        let edge = NtpTime(secs(60).0 + (1u64 << 31));
        assert_eq!(
            cache.check_and_insert(&ex(&a, b"x", t), edge),
            Err(MikeyError::Replay)
        );
        assert!(matches!(
            cache.check_and_insert(&ex(&a, b"x", t), secs(61)),
            Err(MikeyError::StaleTimestamp { skew_secs: 61, .. })
        ));
        cache
            .check_and_insert(&ex(&a, b"w", secs(62)), secs(62))
            .unwrap();
        assert!(!has(&cache, b"x", t) && has(&cache, b"y", secs(60)));
        assert_eq!(cache.len_of(&a), 2);
        assert!(cache.check_window(secs(60), secs(121)).is_err());
        cache
            .check_and_insert(&ex(&a, b"z", secs(122)), secs(122))
            .unwrap();
        assert!(!has(&cache, b"y", secs(60)));
        assert_eq!(cache.len_of(&a), 2);
    }

    /// A clock that steps back must not revive a timestamp whose entry is already gone.
    #[test]
    fn a_clock_stepping_back_does_not_reopen_expired_replays() {
        let t = NtpTime::from_unix(1_000_000, 0);
        let a = name("+15551230001");
        let mut cache = ReplayCache::new(60, 10, 10);
        cache.check_and_insert(&ex(&a, b"x", t), t).unwrap();
        let later = NtpTime(t.0 + (90u64 << 32));
        cache.check_and_insert(&ex(&a, b"y", later), later).unwrap();
        assert_eq!(cache.len(), 1);
        // Back to t + 30 s: x's timestamp is within 60 s of this `now`, but x's entry is gone.
        let back = NtpTime(t.0 + (30u64 << 32));
        assert!(matches!(
            cache.check_and_insert(&ex(&a, b"x", t), back),
            Err(MikeyError::StaleTimestamp { skew_secs: 90, .. })
        ));
    }
}
