//! The location service (RFC 3261 §10.3) and per-source rate limits.
//!
//! Two backends, chosen by `[location] backend`: [`Location`] in memory (the default), and the
//! PostgreSQL `location` table of [`postgres`]. They are an enum in the core, not one trait
//! object, because they differ in *when* they answer: the in-memory table answers at once, inside
//! the core, while the database is never awaited by the core — the core yields a
//! [`crate::core::Need`] carrying a [`RegisterWrite`] or an address-of-record, the shell runs it
//! against a [`LocationStore`] beside its loop, and hands the answer back (as credentials are
//! looked up). With PostgreSQL, the core keeps the bindings it read or wrote in a bounded
//! in-memory [`Location`] as a cache, which also carries calls while the database is down.

pub mod postgres;

use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroUsize;
use std::time::Instant;

use lru::LruCache;

use crate::flow::FlowId;

/// One registered contact.
#[derive(Debug, Clone, PartialEq)]
pub struct Binding {
    /// The Contact URI.
    pub uri: String,
    /// When it expires.
    pub expires_at: Instant,
    /// Call-ID of the REGISTER that set it (§10.3 step 7).
    pub call_id: String,
    /// CSeq of that REGISTER.
    pub cseq: u32,
    /// The `q` preference, 0..=1000 (thousandths).
    pub q: u16,
    /// Where the REGISTER came from (used when the Contact host is not an IP literal).
    pub source: SocketAddr,
    /// True when registered over a stream transport.
    pub reliable: bool,
    /// The stream connection that registered it: requests for the binding go over that
    /// connection and no other (RFC 5626), whatever address the Contact names.
    pub flow: Option<FlowId>,
    /// The Contact's socket when its host is an IP literal and the client is not behind NAT
    /// (else requests go to `source` or the flow: a NAT'd client's Contact is never trusted).
    pub contact_addr: Option<SocketAddr>,
    /// The client registered from behind a NAT (or asked for RFC 5626 outbound): `[relay] mode =
    /// "nat"` relays its calls.
    pub nat: bool,
    /// The binding's connection is held by another node of the cluster (`[cluster]`): requests
    /// for it go to that node over a node link, with its flow token (RFC 5626, RFC 3327 Path).
    pub remote: Option<RemoteFlow>,
}

/// A flow on another cluster node: the node that holds the phone's connection (or whose UDP
/// socket a NAT'd UDP phone registered through), and that flow's token as the node minted it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteFlow {
    /// The owning node (`node_id` column).
    pub node: String,
    /// Its flow token (`flow_token` column).
    pub token: String,
}

impl Binding {
    /// The addresses this binding makes "registered" (for the relay policy): where the REGISTER
    /// came from and the Contact's socket, without duplicates.
    fn addresses(&self) -> impl Iterator<Item = SocketAddr> {
        let contact = self.contact_addr.filter(|c| *c != self.source);
        std::iter::once(self.source).chain(contact)
    }
}

/// One Contact of a REGISTER, checked by the registrar (expiry clamped, `q` parsed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContactChange {
    /// The Contact URI.
    pub uri: String,
    /// Seconds it is to live; 0 removes it.
    pub expires: u32,
    /// The `q` preference in thousandths.
    pub q: u16,
}

/// What a REGISTER changes (§10.3 step 6 and 7).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// `Contact: *` with `Expires: 0`: every binding of the address-of-record goes.
    RemoveAll,
    /// These contacts are added, refreshed or (expires 0) removed; none is a query.
    Contacts(Vec<ContactChange>),
}

/// A REGISTER's changes to one address-of-record, for the backend to apply atomically with the
/// §10.3 rules that need the stored bindings (the CSeq order of step 7, `max_contacts`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisterWrite {
    /// Names this write's answer ([`crate::core::Core::register_answered`]).
    pub ticket: u64,
    /// The user part of the address-of-record.
    pub username: String,
    /// Its domain.
    pub domain: String,
    /// The REGISTER's Call-ID.
    pub call_id: String,
    /// Its CSeq number.
    pub cseq: u32,
    /// What changes.
    pub change: Change,
    /// Where the REGISTER came from (`received`).
    pub received: SocketAddr,
    /// The flow token of the stream connection it came over (RFC 5626), if any.
    pub flow_token: Option<String>,
    /// The identity that connection's TLS-PSK handshake proved, if any.
    pub identity: Option<String>,
    /// The User-Agent header.
    pub user_agent: String,
    /// The node that holds the connection (`[location] node_id`).
    pub node_id: String,
    /// Wall-clock seconds now: expiries are stored as wall-clock times.
    pub unix_now: u64,
    /// `[registrar] max_contacts`.
    pub max_contacts: usize,
}

/// A REGISTER refused by the rules that need the stored bindings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegisterRefused {
    /// §10.3 step 7: same Call-ID as a stored binding and a CSeq that is not newer (500).
    OutOfOrder,
    /// More than `max_contacts` live bindings would result (503).
    TooManyContacts,
}

/// How a [`RegisterWrite`] ended, as the shell hands it back
/// ([`crate::core::Core::register_answered`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegisterAnswer {
    /// Applied: the address-of-record's live bindings after it.
    Applied(Vec<StoredBinding>),
    /// Refused by a rule that needs the stored bindings.
    Refused(RegisterRefused),
    /// The database failed or did not answer in time: 503 with Retry-After.
    Unavailable,
}

impl From<Result<Vec<StoredBinding>, RegisterRefused>> for RegisterAnswer {
    fn from(outcome: Result<Vec<StoredBinding>, RegisterRefused>) -> Self {
        match outcome {
            Ok(rows) => RegisterAnswer::Applied(rows),
            Err(refused) => RegisterAnswer::Refused(refused),
        }
    }
}

/// A binding as a backend stores it: wall-clock expiry, addresses as text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredBinding {
    /// The Contact URI.
    pub contact: String,
    /// Where the REGISTER came from.
    pub received: SocketAddr,
    /// Wall-clock second it expires.
    pub expires_unix: u64,
    /// `q` in thousandths.
    pub q: u16,
    /// Call-ID of the REGISTER that set it.
    pub call_id: String,
    /// CSeq of that REGISTER.
    pub cseq: u32,
    /// The node holding its connection.
    pub node_id: String,
    /// Its connection's flow token, for a binding made over a stream.
    pub flow_token: Option<String>,
}

/// Failures of a stored location; the core answers 503 with Retry-After and keeps routing known
/// phones from its cache.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LocationError {
    /// The database could not be reached or set up at start; the URL is shown without its
    /// password.
    #[error("cannot open the location database {url}")]
    Open {
        /// The URL, password redacted.
        url: String,
        /// The driver's error.
        source: sqlx::Error,
    },
    /// The schema migration failed.
    #[error("cannot migrate the location database {url}")]
    Migrate {
        /// The URL, password redacted.
        url: String,
        /// The migration error.
        source: sqlx::migrate::MigrateError,
    },
    /// A query failed (database lost, timeout).
    #[error("location database")]
    Query(#[from] sqlx::Error),
    /// A stored row does not read back (an address that is not IP:PORT).
    #[error("location row for {0} unreadable")]
    Row(String),
}

/// Where the shell applies the core's location needs: [`postgres::PgLocation`] in production; a
/// failing or slow store in tests.
pub trait LocationStore: Send + Sync + 'static {
    /// Applies a REGISTER atomically; its live bindings after it, or why it was refused.
    fn register<'a>(
        &'a self,
        w: &'a RegisterWrite,
    ) -> crate::db::BoxFuture<'a, Result<Result<Vec<StoredBinding>, RegisterRefused>, LocationError>>;

    /// The live bindings of `username`@`domain` at wall-clock second `unix_now`.
    fn bindings<'a>(
        &'a self,
        username: &'a str,
        domain: &'a str,
        unix_now: u64,
    ) -> crate::db::BoxFuture<'a, Result<Vec<StoredBinding>, LocationError>>;

    /// Whether the store answers (`/readyz`).
    fn ping(&self) -> crate::db::BoxFuture<'_, Result<(), LocationError>>;
}

/// Address-of-record → bindings, with a count of bindings per address (which addresses are
/// registered contacts or sources, answered in O(1)) and the bindings in expiry order (the next
/// expiry is the registrar's deadline; nothing sweeps the table on a clock).
#[derive(Debug, Default)]
pub struct Location {
    map: HashMap<String, Vec<Binding>>,
    addresses: HashMap<SocketAddr, u32>,
    /// (expiry, AOR, Contact URI) of every binding.
    expiries: BTreeSet<(Instant, String, String)>,
    /// Bindings in all.
    len: usize,
}

impl Location {
    /// Live bindings of an AOR, best first (highest q, then most recent).
    pub fn lookup(&self, aor: &str, now: Instant) -> Vec<&Binding> {
        let mut v: Vec<&Binding> = self
            .map
            .get(aor)
            .map(|b| b.iter().filter(|b| b.expires_at > now).collect())
            .unwrap_or_default();
        v.sort_by(|a, b| b.q.cmp(&a.q).then(b.expires_at.cmp(&a.expires_at)));
        v
    }

    /// All bindings of an AOR (expired ones not yet swept included).
    pub fn bindings(&self, aor: &str) -> &[Binding] {
        self.map.get(aor).map_or(&[], Vec::as_slice)
    }

    /// Adds a binding (the caller removed any binding of the same URI first).
    pub fn insert(&mut self, aor: &str, b: Binding) {
        for a in b.addresses() {
            *self.addresses.entry(a).or_default() += 1;
        }
        self.expiries
            .insert((b.expires_at, aor.to_owned(), b.uri.clone()));
        self.len += 1;
        self.map.entry(aor.to_owned()).or_default().push(b);
    }

    /// Bindings held (expired ones whose deadline has not been handled yet included).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no binding is held.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// When the next binding expires, if any is held.
    pub fn next_expiry(&self) -> Option<Instant> {
        self.expiries.first().map(|(at, _, _)| *at)
    }

    /// Removes the binding of `uri` under `aor`, if any.
    pub fn remove(&mut self, aor: &str, uri: &str) {
        if let Some(v) = self.map.get_mut(aor) {
            let (gone, kept): (Vec<Binding>, Vec<Binding>) =
                std::mem::take(v).into_iter().partition(|b| b.uri == uri);
            *v = kept;
            let empty = v.is_empty();
            for b in &gone {
                self.forget(aor, b);
            }
            if empty {
                self.map.remove(aor);
            }
        }
    }

    /// Replaces the bindings of `aor` with `bindings`.
    pub fn replace(&mut self, aor: &str, bindings: Vec<Binding>) {
        self.clear(aor);
        for b in bindings {
            self.insert(aor, b);
        }
    }

    /// Removes every binding of `aor`.
    pub fn clear(&mut self, aor: &str) {
        if let Some(v) = self.map.remove(aor) {
            for b in &v {
                self.forget(aor, b);
            }
        }
    }

    /// Drops `b` (of `aor`, already out of `map`) from the indexes.
    fn forget(&mut self, aor: &str, b: &Binding) {
        self.expiries
            .remove(&(b.expires_at, aor.to_owned(), b.uri.clone()));
        self.len -= 1;
        for a in b.addresses() {
            if let Some(n) = self.addresses.get_mut(&a) {
                *n -= 1;
                if *n == 0 {
                    self.addresses.remove(&a);
                }
            }
        }
    }

    /// Whether `addr` is the source or the Contact socket of a binding (an expired one counts
    /// until its expiry is handled by [`Location::expire`], which the core does at that deadline).
    pub fn knows_address(&self, addr: SocketAddr) -> bool {
        self.addresses.contains_key(&addr)
    }

    /// Removes the bindings that expired by `now` (and AORs left empty), in expiry order, touching
    /// no other binding; returns how many went.
    pub fn expire(&mut self, now: Instant) -> usize {
        let mut gone = 0;
        while self.expiries.first().is_some_and(|(at, _, _)| *at <= now) {
            // Popped first, so the loop ends even if no binding matched the entry.
            let Some((_, aor, uri)) = self.expiries.pop_first() else {
                break;
            };
            let before = self.len;
            self.remove(&aor, &uri);
            gone += before - self.len;
        }
        gone
    }
}

/// Which limit a request falls under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Limited {
    /// REGISTER.
    Register,
    /// INVITE.
    Invite,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

/// Token buckets per (source IP, kind).
#[derive(Debug)]
pub struct RateLimiter {
    register_rate: f64,
    invite_rate: f64,
    burst: f64,
    /// Least recently used sources are forgotten first when full (O(1); a forgotten source starts
    /// again with a full bucket, which only an attacker with more than `max_entries` addresses
    /// can arrange).
    buckets: LruCache<(IpAddr, Limited), Bucket>,
}

impl RateLimiter {
    /// Sources (IP and kind) tracked at most.
    pub const MAX_SOURCES: NonZeroUsize = NonZeroUsize::new(100_000).unwrap();

    /// Sources currently tracked.
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    /// Whether no source is tracked.
    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }

    /// Rates in requests per second (0 disables), shared burst size.
    pub fn new(register_rate: f64, invite_rate: f64, burst: f64) -> Self {
        RateLimiter {
            register_rate,
            invite_rate,
            burst: burst.max(1.0),
            buckets: LruCache::new(Self::MAX_SOURCES),
        }
    }

    /// Takes a token; `Err(retry_after_secs)` when the source is over its limit.
    pub fn check(&mut self, ip: IpAddr, kind: Limited, now: Instant) -> Result<(), u32> {
        let rate = match kind {
            Limited::Register => self.register_rate,
            Limited::Invite => self.invite_rate,
        };
        if rate <= 0.0 {
            return Ok(());
        }
        let burst = self.burst;
        let b = self.buckets.get_or_insert_mut((ip, kind), || Bucket {
            tokens: burst,
            last: now,
        });
        let elapsed = now.saturating_duration_since(b.last).as_secs_f64();
        b.tokens = (b.tokens + elapsed * rate).min(burst);
        b.last = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - b.tokens) / rate).ceil().max(1.0) as u32)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn bucket_limits_one_source_only() {
        let mut r = RateLimiter::new(10.0, 0.0, 5.0);
        let t = Instant::now();
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        for _ in 0..5 {
            assert!(r.check(a, Limited::Register, t).is_ok());
        }
        assert_eq!(r.check(a, Limited::Register, t), Err(1));
        assert!(r.check(b, Limited::Register, t).is_ok());
        assert!(
            r.check(a, Limited::Invite, t).is_ok(),
            "invite limit disabled"
        );
        assert!(
            r.check(a, Limited::Register, t + Duration::from_millis(100))
                .is_ok()
        );
    }

    #[test]
    fn location_orders_and_expires() {
        let mut l = Location::default();
        let t = Instant::now();
        let src: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let mk = |uri: &str, secs, q| Binding {
            uri: uri.into(),
            expires_at: t + Duration::from_secs(secs),
            call_id: "c".into(),
            cseq: 1,
            q,
            source: src,
            reliable: false,
            flow: None,
            contact_addr: Some("127.0.0.1:2".parse().unwrap()),
            nat: false,
            remote: None,
        };
        l.insert("a@d", mk("sip:1", 10, 500));
        l.insert("a@d", mk("sip:2", 20, 1000));
        assert_eq!(l.lookup("a@d", t)[0].uri, "sip:2");
        assert!(l.knows_address(src) && l.knows_address("127.0.0.1:2".parse().unwrap()));
        assert_eq!(l.lookup("a@d", t + Duration::from_secs(15)).len(), 1);
        l.remove("a@d", "sip:2");
        assert_eq!(l.bindings("a@d").len(), 1);
        assert!(l.knows_address(src), "sip:1 still names it");
        assert_eq!(l.next_expiry(), Some(t + Duration::from_secs(10)));
        assert_eq!(l.expire(t + Duration::from_secs(9)), 0);
        assert_eq!(l.expire(t + Duration::from_secs(30)), 1);
        assert_eq!((l.len(), l.next_expiry()), (0, None));
        assert!(
            !l.knows_address(src) && !l.knows_address("127.0.0.1:2".parse().unwrap()),
            "expired bindings leave the address index"
        );
        l.insert("b@d", mk("sip:3", 10, 500));
        l.clear("b@d");
        assert!(!l.knows_address(src));
    }
}
