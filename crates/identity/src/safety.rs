//! Safety numbers: one stable, human-comparable number per pair of identities.
//!
//! Two people compare a safety number (read aloud, or side by side on their screens) to check that
//! each holds the other's real on-chain key: if the numbers match, no one has substituted a key on
//! the way. The construction follows Signal's "displayable fingerprint" (`NumericFingerprintGenerator`,
//! version 2).
//!
//! # Construction
//!
//! For one side, with `version` = [`FINGERPRINT_VERSION`] as 2 bytes big-endian, `key` = the on-chain
//! key's type tag followed by its on-chain bytes (33-byte SEC1-compressed for P-256), and `name` = the
//! identity's canonical form ([`IdentityName::canonical`], e.g. `tel:+15551234567`):
//!
//! ```text
//! hash = SHA-512(version ‖ key ‖ name)
//! repeat ITERATIONS - 1 times:  hash = SHA-512(hash ‖ key)        (ITERATIONS = 5200)
//! ```
//!
//! The first 30 bytes of `hash` are read as six 5-byte big-endian integers; each, reduced mod
//! 100 000, gives 5 decimal digits (zero-padded). The six groups make the side's 30-digit
//! [`Fingerprint`]. The pair's [`SafetyNumber`] is the two 30-digit fingerprints sorted (as strings)
//! and concatenated: 60 digits, the same whichever side computes it, shown as 12 groups of 5.
//!
//! # Security level
//!
//! - Each 5-digit group comes from 40 bits reduced mod 10^5; the bias is below 10^5 / 2^40 ≈ 10^-7,
//!   so each side carries log2(10^30) ≈ **99.7 bits** of the hash output.
//! - An attacker who wants a key of their own whose fingerprint matches a victim's (a second
//!   preimage on the displayed digits) must try about 2^99.7 keys, and each try costs 5 200
//!   SHA-512 calls, a work factor of log2(5200) ≈ **2^12.3**: about 2^112 SHA-512 calls in all.
//! - The name is hashed in, so the same key registered for two numbers gives two fingerprints, and a
//!   fingerprint cannot be replayed for another identity.
//! - Comparing the whole 60-digit number checks both keys at once; comparing only part of it
//!   (e.g. the first few groups) gives proportionally less assurance.
//!
//! Only public values go in, so nothing here is secret and nothing needs zeroizing.

use std::fmt;
use std::num::NonZeroUsize;

use lru::LruCache;

use sha2::{Digest, Sha512};

use crate::{IdentityName, PublicIdentityKey};

/// The version prefixed to every fingerprint hash; a change of construction gets a new version.
pub const FINGERPRINT_VERSION: u16 = 0;

/// How many times SHA-512 is applied per side (Signal's value).
pub const ITERATIONS: usize = 5200;

/// Digits per side.
pub const FINGERPRINT_DIGITS: usize = 30;

/// One identity's 30-digit displayable fingerprint (its name and key).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Fingerprint(String);

impl Fingerprint {
    /// Computes the fingerprint of `key` registered for `name`.
    pub fn new(name: &IdentityName, key: &PublicIdentityKey) -> Self {
        let mut key_bytes = Vec::with_capacity(34);
        key_bytes.push(key.tag());
        key_bytes.extend_from_slice(&key.to_bytes());

        let mut hasher = Sha512::new();
        hasher.update(FINGERPRINT_VERSION.to_be_bytes());
        hasher.update(&key_bytes);
        hasher.update(name.canonical().as_bytes());
        let mut hash = hasher.finalize();
        for _ in 1..ITERATIONS {
            let mut hasher = Sha512::new();
            hasher.update(hash);
            hasher.update(&key_bytes);
            hash = hasher.finalize();
        }

        let mut digits = String::with_capacity(FINGERPRINT_DIGITS);
        for chunk in hash[..30].chunks_exact(5) {
            let value = chunk.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
            digits.push_str(&format!("{:05}", value % 100_000));
        }
        Self(digits)
    }
}

digit_display!(Fingerprint, "The 30 digits");

/// The safety number of a pair of identities: 60 digits, the same from either side.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SafetyNumber(String);

impl SafetyNumber {
    /// Computes the safety number between two identities (name and key each); the order of the two
    /// does not matter.
    pub fn new(
        a_name: &IdentityName,
        a_key: &PublicIdentityKey,
        b_name: &IdentityName,
        b_key: &PublicIdentityKey,
    ) -> Self {
        Self::from_fingerprints(
            &Fingerprint::new(a_name, a_key),
            &Fingerprint::new(b_name, b_key),
        )
    }

    /// Combines two sides' fingerprints (sorted, then concatenated).
    pub fn from_fingerprints(a: &Fingerprint, b: &Fingerprint) -> Self {
        let (first, second) = if a.0 <= b.0 { (a, b) } else { (b, a) };
        Self(format!("{}{}", first.0, second.0))
    }
}

digit_display!(SafetyNumber, "The 60 digits");

/// Fingerprints already computed, by identity and key. Each costs [`ITERATIONS`] SHA-512 calls
/// (about 2 ms on one core), and a phone shows the same few peers' numbers call after call: on the
/// call path that cost came twice per side per call. Only public values are kept, so nothing
/// needs zeroizing. Bounded; the least recently used entry leaves first.
#[derive(Debug)]
pub struct FingerprintCache {
    entries: LruCache<(String, Vec<u8>), Fingerprint>,
}

impl Default for FingerprintCache {
    fn default() -> Self {
        Self::new(Self::DEFAULT_CAPACITY)
    }
}

impl FingerprintCache {
    /// Entries kept by [`Default`]: far more peers than a phone talks to between restarts.
    pub const DEFAULT_CAPACITY: usize = 256;

    /// An empty cache holding at most `capacity` fingerprints (at least one).
    pub fn new(capacity: usize) -> Self {
        Self {
            entries: LruCache::new(NonZeroUsize::new(capacity).unwrap_or(NonZeroUsize::MIN)),
        }
    }

    /// The fingerprint of `key` registered for `name`, computed once.
    pub fn fingerprint(&mut self, name: &IdentityName, key: &PublicIdentityKey) -> Fingerprint {
        // The exact inputs of the construction: a cached value is the one `new` would give.
        let mut key_bytes = vec![key.tag()];
        key_bytes.extend_from_slice(&key.to_bytes());
        self.entries
            .get_or_insert((name.canonical(), key_bytes), || {
                Fingerprint::new(name, key)
            })
            .clone()
    }

    /// The safety number between two identities, from cached fingerprints.
    pub fn safety_number(
        &mut self,
        a_name: &IdentityName,
        a_key: &PublicIdentityKey,
        b_name: &IdentityName,
        b_key: &PublicIdentityKey,
    ) -> SafetyNumber {
        SafetyNumber::from_fingerprints(
            &self.fingerprint(a_name, a_key),
            &self.fingerprint(b_name, b_key),
        )
    }

    /// How many fingerprints are held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is held yet.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

fn group(digits: &str) -> String {
    // The strings are built above from ASCII digits only, so byte chunks are whole characters.
    digits
        .as_bytes()
        .chunks(5)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// `digits`, `grouped`, `Display` and `Debug` for a newtype over a string of ASCII digits: the
/// two numbers people compare are shown the same way.
macro_rules! digit_display {
    ($name:ident, $what:literal) => {
        impl $name {
            #[doc = concat!($what, ", without spaces.")]
            pub fn digits(&self) -> &str {
                &self.0
            }

            #[doc = concat!($what, " in groups of five separated by single spaces (`12345 67890 …`).")]
            pub fn grouped(&self) -> String {
                group(&self.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.grouped())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({})"), self.grouped())
            }
        }
    };
}
use digit_display;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::IdentityKey;

    fn name(s: &str) -> IdentityName {
        IdentityName::parse(s).expect("valid name")
    }

    /// A fixed key from a fixed secret scalar, so the test vector below is reproducible.
    fn fixed_key(byte: u8) -> PublicIdentityKey {
        IdentityKey::from_secret_bytes(&[byte; 32])
            .expect("valid scalar")
            .public()
    }

    #[test]
    fn same_number_from_either_side() {
        let (a, b) = (name("+15550100001"), name("+15550100002"));
        let (ka, kb) = (
            IdentityKey::generate().public(),
            IdentityKey::generate().public(),
        );
        assert_eq!(
            SafetyNumber::new(&a, &ka, &b, &kb),
            SafetyNumber::new(&b, &kb, &a, &ka)
        );
    }

    #[test]
    fn changes_when_either_key_or_name_changes() {
        let (a, b) = (name("+15550100001"), name("+15550100002"));
        let (ka, kb) = (fixed_key(1), fixed_key(2));
        let base = SafetyNumber::new(&a, &ka, &b, &kb);
        let other = fixed_key(3);
        assert_ne!(base, SafetyNumber::new(&a, &other, &b, &kb));
        assert_ne!(base, SafetyNumber::new(&a, &ka, &b, &other));
        let c = name("+15550100003");
        assert_ne!(base, SafetyNumber::new(&c, &ka, &b, &kb));
        assert_ne!(base, SafetyNumber::new(&a, &ka, &c, &kb));
        // The same key under another name is another fingerprint.
        assert_ne!(Fingerprint::new(&a, &ka), Fingerprint::new(&c, &ka));
        // A domain name and a number never share a fingerprint for the same key.
        assert_ne!(
            Fingerprint::new(&name("sip.example.org"), &ka),
            Fingerprint::new(&a, &ka)
        );
    }

    #[test]
    fn display_format() {
        let a = Fingerprint::new(&name("+15550100001"), &fixed_key(1));
        assert_eq!(a.digits().len(), 30);
        assert!(a.digits().bytes().all(|b| b.is_ascii_digit()));
        let shown = a.to_string();
        let groups: Vec<&str> = shown.split(' ').collect();
        assert_eq!(groups.len(), 6);
        assert!(groups.iter().all(|g| g.len() == 5));

        let n = SafetyNumber::new(
            &name("+15550100001"),
            &fixed_key(1),
            &name("+15550100002"),
            &fixed_key(2),
        );
        assert_eq!(n.digits().len(), 60);
        let shown = n.to_string();
        let groups: Vec<&str> = shown.split(' ').collect();
        assert_eq!(groups.len(), 12);
        assert!(
            groups
                .iter()
                .all(|g| g.len() == 5 && g.bytes().all(|b| b.is_ascii_digit()))
        );
        assert_eq!(shown.replace(' ', ""), n.digits());
    }

    #[test]
    fn safety_number_is_both_fingerprints_sorted() {
        let fa = Fingerprint::new(&name("+15550100001"), &fixed_key(1));
        let fb = Fingerprint::new(&name("+15550100002"), &fixed_key(2));
        let n = SafetyNumber::from_fingerprints(&fa, &fb);
        let (lo, hi) = if fa.digits() <= fb.digits() {
            (&fa, &fb)
        } else {
            (&fb, &fa)
        };
        assert_eq!(n.digits(), format!("{}{}", lo.digits(), hi.digits()));
    }

    /// Pinned once (and checked against an independent Python implementation of the construction
    /// above); if this fails the construction has drifted and every user's numbers changed.
    #[test]
    fn fixed_test_vector() {
        let fa = Fingerprint::new(&name("+15550100001"), &fixed_key(1));
        let fb = Fingerprint::new(&name("+15550100002"), &fixed_key(2));
        let n = SafetyNumber::from_fingerprints(&fa, &fb);
        assert_eq!(fa.digits(), "274716005650179729012931535113");
        assert_eq!(fb.digits(), "115274668229057220899331233220");
        assert_eq!(
            n.grouped(),
            "11527 46682 29057 22089 93312 33220 27471 60056 50179 72901 29315 35113"
        );
    }

    #[test]
    fn the_cache_gives_what_new_gives_and_stays_bounded() {
        let (a, b, c) = (
            name("+15550100001"),
            name("+15550100002"),
            name("+15550100003"),
        );
        let (ka, kb) = (fixed_key(1), fixed_key(2));
        let mut cache = FingerprintCache::new(2);
        assert_eq!(cache.fingerprint(&a, &ka), Fingerprint::new(&a, &ka));
        assert_eq!(
            cache.safety_number(&a, &ka, &b, &kb),
            SafetyNumber::new(&a, &ka, &b, &kb)
        );
        assert_eq!(cache.len(), 2);
        // Another key for the same name, and the same key for another name, are other entries.
        assert_eq!(cache.fingerprint(&a, &kb), Fingerprint::new(&a, &kb));
        assert_eq!(cache.fingerprint(&c, &ka), Fingerprint::new(&c, &ka));
        assert_eq!(cache.len(), 2, "the least recently used entries left");
        assert_eq!(cache.fingerprint(&a, &ka), Fingerprint::new(&a, &ka));
    }
}
