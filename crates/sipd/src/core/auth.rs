//! Digest authentication (RFC 3261 §22, RFC 7616, RFC 8760) and the subscriber look-ups it
//! needs: the credentials cache, the requests parked while a look-up runs (the [`Need`] the core
//! yields), and their timeout.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::time::{Duration, Instant};

use chaincall_sip::digest::{self, Algorithm, Credentials, NonceCheck, NonceManager};
use chaincall_sip::header::{HeaderName, Method};
use chaincall_sip::message::{Framing, Message, response_to};
use chaincall_sip::transaction::TxId;
use chaincall_sip::uri::SipUri;
use lru::LruCache;
use tracing::{debug, info, warn};

use super::{Core, Need, Transport, limited_kind};
use crate::config::{AuthMode, Config};
use crate::db::Subscriber;
use crate::location::Limited;

/// Requests waiting for subscriber look-ups, at most, in all.
pub const MAX_PARKED: usize = 1024;
/// Requests waiting for one username's look-up, at most.
pub const MAX_PARKED_PER_USER: usize = 8;
/// Requests waiting for one address-of-record's bindings, at most: its callers share one
/// look-up, so a popular callee may hold a quarter of the queue while the database answers late.
pub const MAX_PARKED_PER_AOR: usize = MAX_PARKED / 4;

/// What a parked request waits for: one look-up per key is in flight at a time.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) enum ParkKey {
    /// A subscriber row (username, domain).
    Credentials(String, String),
    /// An address-of-record's stored bindings (username, domain).
    Bindings(String, String),
}

impl ParkKey {
    /// The key of the look-up `need` starts, if it is one requests wait for.
    pub(super) fn of(need: &Need) -> Option<ParkKey> {
        match need {
            Need::Credentials { username, domain } => {
                Some(ParkKey::Credentials(username.clone(), domain.clone()))
            }
            Need::Bindings {
                username, domain, ..
            } => Some(ParkKey::Bindings(username.clone(), domain.clone())),
            _ => None,
        }
    }

    /// Requests that may wait on this key's look-up: a user's own requests (its credentials)
    /// few, as a phone sends a handful at once and more is a flood; the callers of one
    /// address-of-record (its bindings) many, as they are as many people.
    fn max_waiting(&self) -> usize {
        match self {
            ParkKey::Credentials(..) => MAX_PARKED_PER_USER,
            ParkKey::Bindings(..) => MAX_PARKED_PER_AOR,
        }
    }
}

/// A request waiting for a look-up.
pub(super) struct Parked {
    data: Vec<u8>,
    src: SocketAddr,
    transport: Transport,
    since: Instant,
    /// Wall-clock seconds at `since` (a request handled again later dates its nonces from it).
    unix: u64,
}

/// A cached subscriber answer and when it was read.
type CachedCredentials = (Option<Subscriber>, Instant);

/// The authentication state.
pub(super) struct Auth {
    /// `[auth] mode`.
    pub(super) mode: AuthMode,
    /// `[auth] invite`: INVITEs of local users are challenged too (407).
    pub(super) invite: bool,
    nonces: NonceManager,
    /// Subscriber answers by (username, domain), least recently used evicted first.
    pub(super) creds: LruCache<(String, String), CachedCredentials>,
    /// How long a `creds` entry is reused (`[auth] credentials_cache_secs`).
    cred_ttl: Duration,
    /// Requests waiting for a look-up, by (username, domain); a key present means a look-up is
    /// in flight.
    parked: HashMap<ParkKey, Vec<Parked>>,
    /// Requests in `parked`, in all.
    parked_total: usize,
    /// How long a request may wait for its look-up (`[auth] lookup_timeout_ms`).
    lookup_timeout: Duration,
    /// Set while parked requests are handled again: they paid the rate limit when parked.
    pub(super) prepaid: bool,
    algorithms: Vec<Algorithm>,
    /// `[auth] md5_only_user_agents`: User-Agent products challenged with MD5 alone.
    md5_only_agents: Vec<String>,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The nonce secret and the cached HA1 values are never printed.
        f.debug_struct("Auth")
            .field("mode", &self.mode)
            .field("cached", &self.creds.len())
            .field("parked", &self.parked_total)
            .finish_non_exhaustive()
    }
}

impl Auth {
    /// From `[auth]`; `secret` keys the nonces.
    pub(super) fn new(cfg: &Config, secret: [u8; 32]) -> Self {
        Auth {
            mode: cfg.auth.mode,
            invite: cfg.auth.invite,
            nonces: NonceManager::new(secret, cfg.auth.nonce_lifetime.as_secs(), 100_000),
            creds: LruCache::new(
                NonZeroUsize::new(cfg.auth.credentials_cache_entries).unwrap_or(NonZeroUsize::MIN),
            ),
            cred_ttl: cfg.auth.credentials_cache,
            parked: HashMap::new(),
            parked_total: 0,
            lookup_timeout: cfg.auth.lookup_timeout,
            prepaid: false,
            algorithms: cfg.auth.algorithms.clone(),
            md5_only_agents: cfg.auth.md5_only_user_agents.clone(),
        }
    }

    /// When the oldest parked request times out, if any waits.
    pub(super) fn next_timeout(&self) -> Option<Instant> {
        let oldest = self.parked.values().flatten().map(|p| p.since).min()?;
        Some(oldest + self.lookup_timeout)
    }

    /// Whether the cache knows `user` of `domain` as a subscriber (answered and found).
    pub(super) fn is_known(&self, user: &str, domain: &str) -> bool {
        self.creds
            .peek(&(user.to_owned(), domain.to_owned()))
            .is_some_and(|(s, _)| s.is_some())
    }
}

impl Core {
    /// Caches a subscriber look-up (None: no such user) and handles the requests that waited for
    /// it. `unix_secs` dates nonces, as in [`Core::handle`].
    pub fn insert_credentials(
        &mut self,
        username: &str,
        domain: &str,
        sub: Option<Subscriber>,
        now: Instant,
        unix_secs: u64,
    ) {
        let key = (username.to_owned(), domain.to_owned());
        // O(1): the least recently used answer goes when the cache is full.
        self.auth.creds.put(key.clone(), (sub, now));
        self.resume(ParkKey::Credentials(key.0, key.1), now, unix_secs);
    }

    /// Handles again the requests that waited for the look-up `key`, now answered.
    pub(super) fn resume(&mut self, key: ParkKey, now: Instant, unix_secs: u64) {
        for p in self.unpark(&key) {
            self.rehandle(&key, p, now, unix_secs);
        }
        self.drain(now);
    }

    /// Handles a parked request again once what it waited for (`key`) is known.
    fn rehandle(&mut self, key: &ParkKey, p: Parked, now: Instant, unix_secs: u64) {
        // Already charged to the rate limit when parked.
        self.auth.prepaid = true;
        let again = self.handle_message(&p.data, p.src, p.transport, now, unix_secs);
        self.auth.prepaid = false;
        match again {
            // Only when the answer is already stale (a zero TTL and a later `now`); refuse
            // rather than loop.
            Some(need) if ParkKey::of(&need).as_ref() == Some(key) => {
                self.answer_parked(&p, "Service Unavailable (look-up expired)");
            }
            // The next look-up the request needs (its AOR's bindings after its credentials).
            Some(need) => self.needs.push_back(need),
            None => {}
        }
    }

    /// A look-up failed: the requests that waited for it get 503 (the client retries).
    pub fn lookup_failed(&mut self, username: &str, domain: &str, now: Instant) {
        let key = ParkKey::Credentials(username.to_owned(), domain.to_owned());
        for p in self.unpark(&key) {
            self.answer_parked(&p, "Service Unavailable (subscriber look-up failed)");
        }
        self.drain(now);
    }

    /// Subscriber answers in the cache.
    pub fn credentials_cached(&self) -> usize {
        self.auth.creds.len()
    }

    /// Requests waiting for a look-up.
    pub fn lookups_pending(&self) -> usize {
        self.auth.parked_total
    }

    pub(super) fn unpark(&mut self, key: &ParkKey) -> Vec<Parked> {
        let waiting = self.auth.parked.remove(key).unwrap_or_default();
        self.auth.parked_total -= waiting.len();
        self.metrics
            .lookups_pending
            .set(self.auth.parked_total as i64);
        waiting
    }

    /// Answers a parked request 503 statelessly (no transaction exists for it yet).
    pub(super) fn answer_parked(&mut self, p: &Parked, reason: &str) {
        let framing = match p.transport {
            Transport::Udp => Framing::Datagram,
            Transport::Stream => Framing::Stream,
        };
        if let Ok(msg) = Message::parse_with(&p.data, framing, &self.limits) {
            let mut r = response_to(&msg, 503, reason, Some(&self.to_tag(&msg)));
            r.push("Retry-After", "5".to_string());
            self.send_stateless(p.src, r);
        }
    }

    /// Parks `msg` until its look-up is answered, after charging the rate limit; returns the
    /// look-up to start (none when one is in flight or the request was refused).
    // The request as `handle_message` got it (bytes, parse, source, transport, both clocks) plus
    // the look-up: bundling them would only rename the same arguments.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn park(
        &mut self,
        msg: &Message<'_>,
        data: &[u8],
        src: SocketAddr,
        transport: Transport,
        need: Need,
        now: Instant,
        unix: u64,
    ) -> Option<Need> {
        // Rate limit first (issue 13 item 6): a look-up is work an outsider can cause. Requests
        // outside the REGISTER and INVITE limits (a re-INVITE with credentials) are charged to
        // the REGISTER bucket, so no method gets look-ups for free.
        // A request handled again after one look-up paid already.
        let kind = limited_kind(msg).unwrap_or(Limited::Register);
        if !self.auth.prepaid
            && let Err(retry) = self.rate.check(src.ip(), kind, now)
        {
            self.metrics.rate_limited.inc();
            debug!(%src, ?kind, "rate limited before the subscriber look-up");
            // Refused here, so never handled again: count it as received now.
            self.metrics.requests.inc();
            let mut r = response_to(msg, 503, "Service Unavailable", Some(&self.to_tag(msg)));
            r.push("Retry-After", retry.to_string());
            self.send_stateless(src, r);
            return None;
        }
        let key = ParkKey::of(&need)?;
        let queued = self.auth.parked.get(&key).map_or(0, Vec::len);
        // Look-ups in flight are bounded too (a key stays while its look-up runs, even once its
        // requests timed out).
        let new_key = queued == 0 && !self.auth.parked.contains_key(&key);
        if self.auth.parked_total >= MAX_PARKED
            || queued >= key.max_waiting()
            || (new_key && self.auth.parked.len() >= MAX_PARKED)
        {
            debug!(%src, "subscriber look-up queue full; 503");
            self.metrics.requests.inc();
            let mut r = response_to(
                msg,
                503,
                "Service Unavailable (busy)",
                Some(&self.to_tag(msg)),
            );
            r.push("Retry-After", "5".to_string());
            self.send_stateless(src, r);
            return None;
        }
        let in_flight = !new_key;
        self.auth.parked.entry(key).or_default().push(Parked {
            data: data.to_vec(),
            src,
            transport,
            since: now,
            unix,
        });
        self.auth.parked_total += 1;
        self.metrics
            .lookups_pending
            .set(self.auth.parked_total as i64);
        if in_flight {
            None
        } else {
            if matches!(need, Need::Credentials { .. }) {
                self.metrics.credential_lookups.inc();
            }
            Some(need)
        }
    }

    /// Answers 503 to requests parked longer than the look-up timeout (their look-up may still
    /// complete and fill the cache). A request waiting for the stored bindings of a phone already
    /// in the cache is routed from it instead: a slow or lost location database must not make
    /// known phones unreachable.
    pub(super) fn expire_parked(&mut self, now: Instant) {
        if self.auth.parked_total == 0 {
            return;
        }
        let late = take_late(&mut self.auth.parked, now, self.auth.lookup_timeout, |p| {
            p.since
        });
        // Keys stay (possibly empty) while their look-up is in flight, so it is not started twice.
        self.auth.parked_total -= late.len();
        self.metrics
            .lookups_pending
            .set(self.auth.parked_total as i64);
        for (key, p) in late {
            if let ParkKey::Bindings(username, domain) = &key
                && self.route_from_cache(username, domain, now)
            {
                let unix = p.unix + now.saturating_duration_since(p.since).as_secs();
                self.rehandle(&key, p, now, unix);
                continue;
            }
            let reason = match key {
                ParkKey::Credentials(..) => "Service Unavailable (subscriber look-up timed out)",
                ParkKey::Bindings(..) => "Service Unavailable (location look-up timed out)",
            };
            info!(src = %p.src, reason, "look-up timed out");
            self.answer_parked(&p, reason);
        }
    }

    pub(super) fn credentials_needed(&self, msg: &Message<'_>, now: Instant) -> Option<Need> {
        // An INVITE from another domain: whether its From names one of our subscribers decides
        // how it is handled (`on_request`), and is all its row is needed for (a foreign caller's
        // credentials are never checked).
        if let Some(user) = self.foreign_claim(msg) {
            return self.lookup_needed(user, now);
        }
        let name = match msg.method()? {
            Method::Register => HeaderName::Authorization,
            // ACK and CANCEL cannot be challenged (§22.1); the rest may be, as proxy requests of
            // local users (INVITE, and requests relayed to targets they name, see `may_relay`).
            Method::Ack | Method::Cancel => return None,
            _ => HeaderName::ProxyAuthorization,
        };
        // Only an answer `authenticate` would check needs the row: our realm, an algorithm we
        // offer. Anything else is challenged without a look-up.
        let c = msg
            .auth_headers(name)
            .filter_map(|h| Credentials::parse(&h).ok())
            .find(|c| c.realm == self.domain)?;
        if !self.auth.algorithms.contains(&c.algorithm) {
            return None;
        }
        let username = c
            .username
            .split('@')
            .next()
            .unwrap_or(c.username)
            .to_owned();
        self.lookup_needed(username, now)
    }

    /// The look-up of `username` in our domain, unless a fresh answer is cached.
    fn lookup_needed(&self, username: String, now: Instant) -> Option<Need> {
        let domain = self.domain.clone();
        match self.auth.creds.peek(&(username.clone(), domain.clone())) {
            // `<=`: an entry read for this very message (same `now`) is fresh even with TTL 0.
            Some((_, at)) if now.duration_since(*at) <= self.auth.cred_ttl => None,
            _ => Some(Need::Credentials { username, domain }),
        }
    }

    /// The user an initial INVITE's From claims when the From names another domain (than ours,
    /// by name: our IP address in a From proves nothing either): its user part without
    /// parameters, the form subscriber rows are keyed by. Only with digest auth: without the
    /// subscriber table nothing says who is local.
    pub(super) fn foreign_claim(&self, msg: &Message<'_>) -> Option<String> {
        if self.auth.mode != AuthMode::Digest
            || msg.method()? != Method::Invite
            || msg.to().ok()?.tag().is_some()
        {
            return None;
        }
        let from = msg.from().ok()?;
        let uri = SipUri::parse(from.uri).ok()?;
        if uri.host.eq_ignore_ascii_case(&self.domain) {
            return None;
        }
        let user = uri.user?.split(';').next()?;
        (!user.is_empty()).then(|| user.to_owned())
    }

    /// Digest authentication (RFC 7616 through RFC 3261 §22). Returns true when the request may
    /// proceed; otherwise a response was sent.
    pub(super) fn authenticate(
        &mut self,
        id: TxId,
        msg: &Message<'_>,
        proxy: bool,
        expect_user: Option<&str>,
        now: Instant,
        unix: u64,
    ) -> bool {
        let (hname, code, reason, chal_name) = if proxy {
            (
                HeaderName::ProxyAuthorization,
                407,
                "Proxy Authentication Required",
                "Proxy-Authenticate",
            )
        } else {
            (
                HeaderName::Authorization,
                401,
                "Unauthorized",
                "WWW-Authenticate",
            )
        };
        let realm = self.domain.clone();
        let method = msg.method().map(|m| m.as_str()).unwrap_or("");
        let mut stale = false;
        let creds = msg
            .auth_headers(hname)
            .filter_map(|h| Credentials::parse(&h).ok())
            .find(|c| c.realm == realm);
        // `[auth] algorithms` decides what is accepted: an answer in an algorithm not configured
        // (MD5 when only SHA-256 is) is refused like a wrong password, so a downgrade to a weaker
        // hash cannot be forced by the client (`md5_only_user_agents` narrows only the offer).
        let creds = match creds {
            Some(c) if !self.auth.algorithms.contains(&c.algorithm) => {
                self.metrics.auth_failures.inc();
                warn!(
                    user = c.username,
                    algorithm = c.algorithm.as_str(),
                    "digest answer in an algorithm not configured; refused"
                );
                None
            }
            other => other,
        };
        if let Some(c) = creds {
            let user = c.username.split('@').next().unwrap_or(c.username);
            let sub = self
                .auth
                .creds
                .get(&(user.to_owned(), realm.clone()))
                .and_then(|(s, _)| s.clone());
            let check = self.auth.nonces.check(c.nonce, &realm, c.nc, unix);
            let uri_ok = msg.request_uri() == Some(c.uri);
            match (check, sub) {
                (NonceCheck::Valid, Some(sub)) => {
                    let ok = sub
                        .ha1_for(c.algorithm, c.username, &realm)
                        .is_some_and(|h| c.verify(&h, method));
                    if ok && !uri_ok {
                        self.metrics.auth_failures.inc();
                        warn!(user, "digest uri differs from Request-URI");
                        self.reply(id, msg, 400, "Bad Request (digest uri mismatch)", &[], now);
                        return false;
                    }
                    if ok && expect_user.is_some_and(|e| e != user) {
                        self.metrics.auth_failures.inc();
                        warn!(user, "credentials do not match the identity claimed");
                        self.reply(id, msg, 403, "Forbidden", &[], now);
                        return false;
                    }
                    if ok {
                        return true;
                    }
                    self.metrics.auth_failures.inc();
                    warn!(user, realm = %realm, "digest authentication failed: wrong password");
                }
                (NonceCheck::Stale, _) => stale = true,
                (NonceCheck::Replay, _) => {
                    self.metrics.auth_failures.inc();
                    warn!(user, "digest nonce count replayed");
                }
                (NonceCheck::Invalid, _) => {
                    self.metrics.auth_failures.inc();
                    warn!(user, "digest nonce not issued by us");
                }
                (NonceCheck::Valid, None) => {
                    self.metrics.auth_failures.inc();
                    warn!(user, realm = %realm, "digest authentication failed: no such subscriber");
                }
            }
        }
        let nonce = self.auth.nonces.issue(&realm, unix);
        let chals: Vec<(&str, String)> = self
            .offered(msg)
            .iter()
            .map(|a| {
                (
                    chal_name,
                    digest::challenge_value(&realm, &nonce, *a, stale),
                )
            })
            .collect();
        self.reply(id, msg, code, reason, &chals, now);
        false
    }

    /// The algorithms `msg` is challenged with, one challenge each: `[auth] algorithms`, or MD5
    /// alone when the User-Agent's product is in `[auth] md5_only_user_agents` and MD5 is
    /// configured (baresip 1.0 gives up on the whole 401 when any challenge names SHA-256). That
    /// gives the client nothing it could not take anyway: with MD5 configured every client is
    /// offered it, and any configured algorithm is accepted in the answer, whatever was offered.
    fn offered(&self, msg: &Message<'_>) -> &[Algorithm] {
        let md5_only = self.auth.algorithms.contains(&Algorithm::Md5)
            && msg
                .header_value(HeaderName::UserAgent)
                .and_then(product_token)
                .is_some_and(|p| {
                    self.auth
                        .md5_only_agents
                        .iter()
                        .any(|a| a.eq_ignore_ascii_case(p))
                });
        if md5_only {
            &[Algorithm::Md5]
        } else {
            &self.auth.algorithms
        }
    }
}

/// Takes out of `waiting` every entry that has waited `timeout` by `now` (`since` says from
/// when), with its key. Keys stay, emptied, while their look-up is in flight.
pub(super) fn take_late<K: Clone, T>(
    waiting: &mut HashMap<K, Vec<T>>,
    now: Instant,
    timeout: Duration,
    since: impl Fn(&T) -> Instant,
) -> Vec<(K, T)> {
    let mut late = Vec::new();
    for (key, v) in waiting.iter_mut() {
        let (old, young): (Vec<T>, Vec<T>) = std::mem::take(v)
            .into_iter()
            .partition(|p| now.saturating_duration_since(since(p)) >= timeout);
        *v = young;
        late.extend(old.into_iter().map(|p| (key.clone(), p)));
    }
    late
}

/// The first product token of a User-Agent value (RFC 3261 §20.41: `product [/ version]`, then
/// more products or comments): `baresip` in `baresip v1.0.0 (x86_64/linux)`.
fn product_token(user_agent: &str) -> Option<&str> {
    user_agent
        .trim_start()
        .split(|c: char| c.is_whitespace() || c == '/' || c == '(')
        .next()
        .filter(|t| !t.is_empty())
}
