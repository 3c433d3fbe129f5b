//! The server's brain, synchronous: registrar, stateful proxy and digest auth over the
//! transaction [`Endpoint`] of `chaincall-sip`. The tokio shell ([`crate::server`]) feeds it
//! datagrams/frames and the clock, and sends what it queues.
//!
//! Credentials come from the database asynchronously and never hold the loop up: when a request
//! carries credentials for a user not in the cache, [`Core::handle`] first charges the per-source
//! rate limit (so a flood of invented usernames costs at most the limit's worth of look-ups), then
//! parks the request (at most [`MAX_PARKED`] in all and [`MAX_PARKED_PER_USER`] per username; more
//! get 503) and yields [`Need::Credentials`] from [`Core::poll_output`] once per username. The shell runs the look-up beside
//! the loop and hands the answer to [`Core::insert_credentials`] (or [`Core::lookup_failed`]),
//! which handles the parked requests; a request parked longer than `[auth] lookup_timeout_ms` is
//! answered 503. The cache holds at most `[auth] credentials_cache_entries` answers, least
//! recently used dropped first.
//!
//! Stream connections are flows (RFC 5626): a binding made over a connection belongs to that
//! connection, and the Record-Route sipd inserts towards a stream leg carries a flow token
//! ([`crate::flow`]), so in-dialog requests go back over that connection, never to whichever
//! connection last registered the address a Contact names.
//!
//! sipd is no open relay: a request is forwarded only to a registered contact, a flow, the static
//! route, or on behalf of a registered or authenticated local user; anything else is refused with
//! 403 and counted (`sipd_relay_refused_total`).

use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::{Duration, Instant};

use lru::LruCache;

use chaincall_io::{Output, Transmit};
use chaincall_sip::digest::{self, Algorithm, Credentials, NonceCheck, NonceManager};
use chaincall_sip::header::{Contact, HeaderName, Method};
use chaincall_sip::message::{
    Framing, HeaderEdits, Message, MessageBuf, ParseLimits, Rewriter, response_to,
};
use chaincall_sip::transaction::{
    Endpoint, EndpointEvent, Routed, ServerKey, TimerConfig, TxId, build_cancel,
};
use chaincall_sip::uri::SipUri;
use tracing::{debug, info, warn};

use crate::config::{AuthMode, Config, ConfigError, ForeignCallerPolicy, ListenTransport};
use crate::db::Subscriber;
use crate::flow::{FlowId, FlowTokens};
use crate::location::{Binding, Limited, Location, RateLimiter};
use crate::metrics::Metrics;

/// Transport a message arrived on or leaves by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// UDP.
    Udp,
    /// A stream: TCP, or TLS plugged in through the same path.
    Stream,
}

/// What a stream connection carries; decides the Via transport and Record-Route `transport=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StreamKind {
    /// Plain TCP.
    Tcp,
    /// TLS (with the external PSK).
    Tls,
}

/// What [`Core::poll_output`] yields: a datagram or stream write for a peer (the shell sends it
/// over the peer's stream connection if it has one, else over UDP), a [`Need`], or the next
/// deadline.
pub type CoreOutput = Output<Need>;

/// Something the core needs before it can handle a message: the core's one event. It is an
/// `Event` like any other core's because the shell acts on it the same way, between sends, as
/// it drains; the answer comes back through [`Core::insert_credentials`] or
/// [`Core::lookup_failed`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Need {
    /// Look up this subscriber, then feed the message again.
    Credentials {
        /// Username (without domain).
        username: String,
        /// Domain.
        domain: String,
    },
}

/// Requests waiting for subscriber look-ups, at most, in all.
pub const MAX_PARKED: usize = 1024;
/// Requests waiting for one username's look-up, at most.
pub const MAX_PARKED_PER_USER: usize = 8;

/// A request waiting for its subscriber look-up.
struct Parked {
    data: Vec<u8>,
    src: SocketAddr,
    transport: Transport,
    since: Instant,
}

/// A cached subscriber answer and when it was read.
type CachedCredentials = (Option<Subscriber>, Instant);

/// The server state.
pub struct Core {
    ep: Endpoint,
    advertise: SocketAddr,
    locals: Vec<SocketAddr>,
    domain: String,
    limits: ParseLimits,
    location: Location,
    nonces: NonceManager,
    /// Subscriber answers by (username, domain), least recently used evicted first.
    creds: LruCache<(String, String), CachedCredentials>,
    /// How long a `creds` entry is reused (`[auth] credentials_cache_secs`).
    cred_ttl: Duration,
    /// Requests waiting for a look-up, by (username, domain); a key present means a look-up is
    /// in flight.
    parked: HashMap<(String, String), Vec<Parked>>,
    /// Requests in `parked`, in all.
    parked_total: usize,
    /// How long a request may wait for its look-up (`[auth] lookup_timeout_ms`).
    lookup_timeout: Duration,
    /// Set while parked requests are handled again: they paid the rate limit when parked.
    prepaid: bool,
    rate: RateLimiter,
    auth: AuthMode,
    auth_invite: bool,
    /// `[policy] foreign_caller_with_local_number`.
    foreign_caller: ForeignCallerPolicy,
    algorithms: Vec<Algorithm>,
    /// `[auth] md5_only_user_agents`: User-Agent products challenged with MD5 alone.
    md5_only_agents: Vec<String>,
    static_route: Option<SocketAddr>,
    min_expires: u32,
    max_expires: u32,
    default_expires: u32,
    max_contacts: usize,
    /// Server transaction → client transaction it was forwarded on.
    forwards: HashMap<TxId, TxId>,
    /// Client transaction → server transaction.
    back: HashMap<TxId, TxId>,
    /// Original request of each proxied server transaction (for 408/CANCEL).
    server_req: HashMap<TxId, Vec<u8>>,
    /// Stream peers and their flow: responses to them are sent over their connection
    /// (`reliable`).
    stream_peers: HashMap<SocketAddr, (StreamKind, FlowId)>,
    /// The on-chain identity each TLS-PSK connection authenticated as (its handshake peer).
    stream_identities: HashMap<SocketAddr, String>,
    /// Live flows (stream connections) → their peer address. A binding or a flow token names a
    /// flow, never an address a client asserted (RFC 5626).
    flows: HashMap<FlowId, SocketAddr>,
    /// The next flow id (never reused).
    next_flow: u64,
    /// Mints and checks the flow tokens in our Record-Routes.
    flow_tokens: FlowTokens,
    /// Proxy Timer C per forwarded INVITE's server transaction: when it fires, and whether the
    /// branch has answered provisionally (then it gets a CANCEL, §16.8).
    timer_c: HashMap<TxId, (Instant, bool)>,
    /// Timer C's duration (`[timers] c_secs`).
    timer_c_len: Duration,
    /// Sent-by for requests we send over TLS: the first TLS listener (advertised IP).
    tls_advertise: Option<SocketAddr>,
    /// Sent-by for requests we send over TCP: the first TCP listener (advertised IP).
    tcp_advertise: Option<SocketAddr>,
    out: VecDeque<Transmit>,
    needs: VecDeque<Need>,
    /// The transaction layer's next deadline, as its last drain ended.
    ep_deadline: Option<Instant>,
    next_sweep: Instant,
    tag_secret: u64,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Core {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Core")
            .field("advertise", &self.advertise)
            .field("transactions", &self.ep.len())
            .finish()
    }
}

impl Core {
    /// Builds the core from a validated configuration; `secret` seeds nonces and tags.
    pub fn new(
        cfg: &Config,
        secret: [u8; 32],
        metrics: Arc<Metrics>,
        now: Instant,
    ) -> Result<Core, ConfigError> {
        cfg.validate()?;
        let first = cfg.listen[0].addr;
        let advertise = cfg.advertise.unwrap_or(first);
        let domain = match &cfg.domain {
            Some(d) => d.to_ascii_lowercase(),
            None => advertise.ip().to_string(),
        };
        let algorithms = cfg.auth.algorithms.clone();
        Ok(Core {
            ep: Endpoint::new(
                TimerConfig {
                    t1: cfg.timers.t1,
                    t2: cfg.timers.t2,
                    t4: cfg.timers.t4,
                    // §17.1.1.2: at least 32 s for unreliable transports, whatever T1 is.
                    timer_d: Duration::from_secs(32).max(64 * cfg.timers.t1),
                },
                cfg.limits.max_transactions,
            ),
            advertise,
            locals: cfg
                .listen
                .iter()
                .map(|l| l.addr())
                .chain([advertise])
                .collect(),
            domain,
            limits: ParseLimits {
                max_message_size: cfg.limits.max_message_size,
                max_headers: cfg.limits.max_headers,
            },
            location: Location::default(),
            nonces: NonceManager::new(secret, cfg.auth.nonce_lifetime.as_secs(), 100_000),
            creds: LruCache::new(
                NonZeroUsize::new(cfg.auth.credentials_cache_entries).unwrap_or(NonZeroUsize::MIN),
            ),
            cred_ttl: cfg.auth.credentials_cache,
            parked: HashMap::new(),
            parked_total: 0,
            lookup_timeout: cfg.auth.lookup_timeout,
            prepaid: false,
            rate: RateLimiter::new(
                cfg.limits.register_rate,
                cfg.limits.invite_rate,
                cfg.limits.burst,
            ),
            auth: cfg.auth.mode,
            auth_invite: cfg.auth.invite,
            foreign_caller: cfg.policy.foreign_caller_with_local_number,
            algorithms,
            md5_only_agents: cfg.auth.md5_only_user_agents.clone(),
            static_route: cfg.static_route,
            min_expires: cfg.registrar.min_expires,
            max_expires: cfg.registrar.max_expires,
            default_expires: cfg.registrar.default_expires,
            max_contacts: cfg.registrar.max_contacts,
            forwards: HashMap::new(),
            back: HashMap::new(),
            server_req: HashMap::new(),
            stream_peers: HashMap::new(),
            stream_identities: HashMap::new(),
            flows: HashMap::new(),
            next_flow: 1,
            flow_tokens: FlowTokens::new(flow_key(&secret)),
            timer_c: HashMap::new(),
            timer_c_len: cfg.timers.timer_c,
            tls_advertise: first_listener(cfg, advertise, ListenTransport::Tls),
            tcp_advertise: first_listener(cfg, advertise, ListenTransport::Tcp),
            out: VecDeque::new(),
            needs: VecDeque::new(),
            ep_deadline: None,
            next_sweep: now + Duration::from_secs(1),
            tag_secret: u64::from_le_bytes(secret[..8].try_into().unwrap_or([0; 8])),
            metrics,
        })
    }

    /// The domain served.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// Parse limits for the stream framer.
    pub fn limits(&self) -> ParseLimits {
        self.limits
    }

    /// Records that `peer` is reached over a new stream connection of `kind` (or no longer,
    /// `None`). Each connection is a new flow: bindings and flow tokens of an earlier connection
    /// from the same address do not carry over.
    pub fn set_stream_peer(&mut self, peer: SocketAddr, kind: Option<StreamKind>) {
        if let Some((_, old)) = self.stream_peers.remove(&peer) {
            self.flows.remove(&old);
        }
        if let Some(kind) = kind {
            let id = FlowId(self.next_flow);
            self.next_flow += 1;
            self.stream_peers.insert(peer, (kind, id));
            self.flows.insert(id, peer);
        } else {
            self.stream_identities.remove(&peer);
        }
    }

    /// The flow of the stream connection from `peer`, if one is up.
    pub fn flow_of(&self, peer: SocketAddr) -> Option<FlowId> {
        self.stream_peers.get(&peer).map(|(_, f)| *f)
    }
    /// Records the identity a TLS-PSK connection authenticated as in the handshake (a phone number
    /// or a domain). A phone may then REGISTER only its own number over that connection.
    pub fn set_stream_identity(&mut self, peer: SocketAddr, identity: Option<String>) {
        match identity {
            Some(id) => {
                self.stream_identities.insert(peer, id);
            }
            None => {
                self.stream_identities.remove(&peer);
            }
        }
    }

    /// Our sent-by (Via, Record-Route) for a request to `dest`, and the Via transport token.
    fn sent_by(&self, dest: SocketAddr, reliable: bool) -> (SocketAddr, &'static str) {
        match self.stream_peers.get(&dest).map(|(k, _)| k) {
            Some(StreamKind::Tls) => (self.tls_advertise.unwrap_or(self.advertise), "TLS"),
            Some(StreamKind::Tcp) => (self.tcp_advertise.unwrap_or(self.advertise), "TCP"),
            None if reliable => (self.tcp_advertise.unwrap_or(self.advertise), "TCP"),
            None => (self.advertise, "UDP"),
        }
    }

    /// Whether a Via sent-by is one of ours.
    fn is_our_sent_by(&self, host: &str, port: Option<u16>) -> bool {
        let Ok(ip) = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
        else {
            return false;
        };
        let a = SocketAddr::new(ip, port.unwrap_or(5060));
        a == self.advertise || Some(a) == self.tls_advertise || Some(a) == self.tcp_advertise
    }

    /// How many leading Route values name us (at most two: RFC 5658's double Record-Route).
    fn our_routes(&self, msg: &Message<'_>) -> usize {
        msg.routes()
            .take(2)
            .take_while(|r| SipUri::parse(r.uri).is_ok_and(|u| self.is_us(&u)))
            .count()
    }

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
        self.creds.put(key.clone(), (sub, now));
        let waiting = self.unpark(&key);
        for p in waiting {
            // Already charged to the rate limit when parked.
            self.prepaid = true;
            let again = self.handle_message(&p.data, p.src, p.transport, now, unix_secs);
            self.prepaid = false;
            if again.is_some() {
                // Only when the answer is already stale (a zero TTL and a later `now`); refuse
                // rather than loop.
                self.answer_parked(&p, "Service Unavailable (credentials expired)");
            }
        }
        self.drain(now);
    }

    /// A look-up failed: the requests that waited for it get 503 (the client retries).
    pub fn lookup_failed(&mut self, username: &str, domain: &str, now: Instant) {
        let key = (username.to_owned(), domain.to_owned());
        for p in self.unpark(&key) {
            self.answer_parked(&p, "Service Unavailable (subscriber look-up failed)");
        }
        self.drain(now);
    }

    /// Subscriber answers in the cache.
    pub fn credentials_cached(&self) -> usize {
        self.creds.len()
    }

    /// Requests waiting for a look-up.
    pub fn lookups_pending(&self) -> usize {
        self.parked_total
    }

    fn unpark(&mut self, key: &(String, String)) -> Vec<Parked> {
        let waiting = self.parked.remove(key).unwrap_or_default();
        self.parked_total -= waiting.len();
        self.metrics.lookups_pending.set(self.parked_total as i64);
        waiting
    }

    /// Answers a parked request 503 statelessly (no transaction exists for it yet).
    fn answer_parked(&mut self, p: &Parked, reason: &str) {
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
    fn park(
        &mut self,
        msg: &Message<'_>,
        data: &[u8],
        src: SocketAddr,
        transport: Transport,
        need: Need,
        now: Instant,
    ) -> Option<Need> {
        // Rate limit first (issue 13 item 6): a look-up is work an outsider can cause. Requests
        // outside the REGISTER and INVITE limits (a re-INVITE with credentials) are charged to
        // the REGISTER bucket, so no method gets look-ups for free.
        let kind = limited_kind(msg).unwrap_or(Limited::Register);
        if let Err(retry) = self.rate.check(src.ip(), kind, now) {
            self.metrics.rate_limited.inc();
            debug!(%src, ?kind, "rate limited before the subscriber look-up");
            // Refused here, so never handled again: count it as received now.
            self.metrics.requests.inc();
            let mut r = response_to(msg, 503, "Service Unavailable", Some(&self.to_tag(msg)));
            r.push("Retry-After", retry.to_string());
            self.send_stateless(src, r);
            return None;
        }
        let Need::Credentials { username, domain } = &need;
        let key = (username.clone(), domain.clone());
        let queued = self.parked.get(&key).map_or(0, Vec::len);
        // Look-ups in flight are bounded too (a key stays while its look-up runs, even once its
        // requests timed out).
        let new_key = queued == 0 && !self.parked.contains_key(&key);
        if self.parked_total >= MAX_PARKED
            || queued >= MAX_PARKED_PER_USER
            || (new_key && self.parked.len() >= MAX_PARKED)
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
        self.parked.entry(key).or_default().push(Parked {
            data: data.to_vec(),
            src,
            transport,
            since: now,
        });
        self.parked_total += 1;
        self.metrics.lookups_pending.set(self.parked_total as i64);
        if in_flight {
            None
        } else {
            self.metrics.credential_lookups.inc();
            Some(need)
        }
    }

    /// Answers 503 to requests parked longer than the look-up timeout (their look-up may still
    /// complete and fill the cache).
    fn expire_parked(&mut self, now: Instant) {
        if self.parked_total == 0 {
            return;
        }
        let timeout = self.lookup_timeout;
        let mut late = Vec::new();
        for v in self.parked.values_mut() {
            let (old, young): (Vec<Parked>, Vec<Parked>) = std::mem::take(v)
                .into_iter()
                .partition(|p| now.saturating_duration_since(p.since) >= timeout);
            *v = young;
            late.extend(old);
        }
        // Keys stay (possibly empty) while their look-up is in flight, so it is not started twice.
        self.parked_total -= late.len();
        self.metrics.lookups_pending.set(self.parked_total as i64);
        for p in &late {
            info!(src = %p.src, "subscriber look-up timed out; 503");
            self.answer_parked(p, "Service Unavailable (subscriber look-up timed out)");
        }
    }

    /// Handles one message. `unix_secs` dates nonces. A request from a subscriber whose
    /// credentials are not cached is parked, and [`Core::poll_output`] yields the [`Need`] once
    /// per username.
    pub fn handle(
        &mut self,
        data: &[u8],
        src: SocketAddr,
        transport: Transport,
        now: Instant,
        unix_secs: u64,
    ) {
        if let Some(need) = self.handle_message(data, src, transport, now, unix_secs) {
            self.needs.push_back(need);
        }
    }

    /// [`Core::handle`], returning the look-up a parked request waits for.
    fn handle_message(
        &mut self,
        data: &[u8],
        src: SocketAddr,
        transport: Transport,
        now: Instant,
        unix_secs: u64,
    ) -> Option<Need> {
        let framing = match transport {
            Transport::Udp => Framing::Datagram,
            Transport::Stream => Framing::Stream,
        };
        let msg = match Message::parse_with(data, framing, &self.limits) {
            Ok(m) => m,
            Err(e) => {
                self.metrics.parse_errors.inc();
                // RFC 3261 §16.3 / §21.4.1: answer malformed requests with 400 (or 505/513) when we
                // can address the answer; drop malformed responses (§18.1.2).
                if let Some(resp) = raw_error_response(data, e.status_code(), &e.to_string()) {
                    info!(%src, error = %e, "malformed request answered with {}", e.status_code());
                    self.metrics.count_response(e.status_code());
                    self.send(src, resp);
                } else {
                    debug!(%src, error = %e, "malformed message dropped");
                }
                return None;
            }
        };
        if let Some(method) = msg.method() {
            // Credentials must be cached before any state changes (see module docs); the message
            // comes back once they are, and is counted then.
            if self.auth == AuthMode::Digest
                && let Some(need) = self.credentials_needed(&msg, now)
            {
                let start = self.park(&msg, data, src, transport, need, now);
                self.drain(now);
                return start;
            }
            self.metrics.requests.inc();
            match self
                .ep
                .handle_message(&msg, src, transport == Transport::Stream, now)
            {
                Routed::NewRequest(id) => {
                    self.metrics.transactions_started.inc();
                    if method == Method::Invite {
                        // The transaction layer answered 100 Trying (§17.2.1).
                        self.metrics.count_response(100);
                    }
                    self.on_request(id, &msg, data, src, now, unix_secs)
                }
                Routed::Ack => self.forward_ack(&msg, src, now),
                Routed::Absorbed => {}
                Routed::Unmatched => {
                    warn!(%src, %method, "transaction table full; request refused with 503");
                    let mut r = response_to(&msg, 503, "Service Unavailable", None);
                    r.push("Retry-After", "5");
                    self.send_stateless(src, r);
                }
                Routed::Response(_) | Routed::StrayResponse => {}
            }
        } else {
            self.metrics.responses_in.inc();
            match self
                .ep
                .handle_message(&msg, src, transport == Transport::Stream, now)
            {
                Routed::Response(cid) => self.on_response(cid, &msg, now),
                Routed::StrayResponse => self.forward_stray_response(&msg),
                _ => {}
            }
        }
        self.drain(now);
        None
    }

    fn credentials_needed(&self, msg: &Message<'_>, now: Instant) -> Option<Need> {
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
        if !self.algorithms.contains(&c.algorithm) {
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
        match self.creds.peek(&(username.clone(), domain.clone())) {
            // `<=`: an entry read for this very message (same `now`) is fresh even with TTL 0.
            Some((_, at)) if now.duration_since(*at) <= self.cred_ttl => None,
            _ => Some(Need::Credentials { username, domain }),
        }
    }

    /// The user an initial INVITE's From claims when the From names another domain (than ours,
    /// by name: our IP address in a From proves nothing either): its user part without
    /// parameters, the form subscriber rows are keyed by. Only with digest auth: without the
    /// subscriber table nothing says who is local.
    fn foreign_claim(&self, msg: &Message<'_>) -> Option<String> {
        if self.auth != AuthMode::Digest
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

    fn is_us(&self, uri: &SipUri<'_>) -> bool {
        let host = uri.host.trim_start_matches('[').trim_end_matches(']');
        if host.eq_ignore_ascii_case(&self.domain) && host.parse::<IpAddr>().is_err() {
            return true;
        }
        let Ok(ip) = host.parse::<IpAddr>() else {
            return false;
        };
        let port = uri.port.unwrap_or(5060);
        self.locals
            .iter()
            .any(|l| l.port() == port && (l.ip() == ip || l.ip().is_unspecified()))
    }

    fn to_tag(&self, msg: &Message<'_>) -> String {
        let mut h = DefaultHasher::new();
        self.tag_secret.hash(&mut h);
        msg.call_id().unwrap_or("").hash(&mut h);
        msg.from()
            .ok()
            .and_then(|f| f.tag())
            .unwrap_or("")
            .hash(&mut h);
        format!("{:016x}", h.finish())
    }

    fn reply(
        &mut self,
        id: TxId,
        msg: &Message<'_>,
        code: u16,
        reason: &str,
        extra: &[(&str, String)],
        now: Instant,
    ) {
        let tag = self.to_tag(msg);
        let mut r = response_to(msg, code, reason, Some(&tag));
        for (n, v) in extra {
            r.push(n, v.clone());
        }
        r.push("Server", "chaincall-sipd");
        self.metrics.count_response(code);
        if let Err(e) = self.ep.respond(id, &r, now) {
            debug!(error = %e, code, "response not sent");
        }
    }

    fn send_stateless(&mut self, dest: SocketAddr, r: MessageBuf) {
        if let chaincall_sip::message::OwnedStart::Response { code, .. } = r.start {
            self.metrics.count_response(code);
        }
        self.send(dest, r.to_bytes());
    }

    fn on_request(
        &mut self,
        id: TxId,
        msg: &Message<'_>,
        data: &[u8],
        src: SocketAddr,
        now: Instant,
        unix: u64,
    ) {
        let Some(method) = msg.method() else { return };
        // Per-source rate limits (503 + Retry-After, RFC 3261 §21.5.4); a request that waited for
        // a look-up paid when it was parked.
        if !self.prepaid
            && let Some(kind) = limited_kind(msg)
            && let Err(retry) = self.rate.check(src.ip(), kind, now)
        {
            self.metrics.rate_limited.inc();
            debug!(%src, ?kind, "rate limited");
            self.reply(
                id,
                msg,
                503,
                "Service Unavailable",
                &[("Retry-After", retry.to_string())],
                now,
            );
            return;
        }
        let ruri = msg.request_uri().unwrap_or("");
        let parsed = SipUri::parse(ruri);
        if method == Method::Cancel {
            self.on_cancel(id, msg, now);
            return;
        }
        let uri = match parsed {
            Ok(u) => u,
            Err(chaincall_sip::uri::UriError::Scheme) => {
                // §8.2.2.1: unsupported URI scheme.
                self.reply(id, msg, 416, "Unsupported URI Scheme", &[], now);
                return;
            }
            Err(_) => {
                self.reply(id, msg, 400, "Bad Request-URI", &[], now);
                return;
            }
        };
        // Loose routing (§16.4): the top Route values naming us are removed.
        let pop_routes = self.our_routes(msg);
        let next_route = msg.routes().nth(pop_routes).map(|r| r.uri);
        // RFC 5626 §5.3: our Route's flow token says which connection the request goes to.
        let token_flow = match self.route_flow(msg, pop_routes) {
            Ok(f) => f,
            Err(RouteFlowError::Forged) => {
                warn!(%src, %method, "Route with a forged flow token refused");
                return self.reply(id, msg, 403, "Forbidden (invalid flow token)", &[], now);
            }
            Err(RouteFlowError::Gone) => {
                info!(%src, %method, "flow of the Route's token is closed");
                return self.reply(id, msg, 430, "Flow Failed", &[], now);
            }
        };
        if next_route.is_none() && self.is_us(&uri) {
            match method {
                Method::Register => return self.on_register(id, msg, src, now, unix),
                Method::Options if uri.user.is_none() => {
                    return self.reply(
                        id,
                        msg,
                        200,
                        "OK",
                        &[(
                            "Allow",
                            "INVITE, ACK, CANCEL, BYE, OPTIONS, REGISTER".into(),
                        )],
                        now,
                    );
                }
                _ => {}
            }
        }
        // §16.3 step 3: Max-Forwards.
        let mf = msg.max_forwards().unwrap_or(70);
        if mf == 0 {
            return self.reply(id, msg, 483, "Too Many Hops", &[], now);
        }
        // A caller outside our domain claiming one of our subscribers' numbers (issue 14): refused,
        // or marked so that the callee's phone shows it as a likely spoof. The row was looked up
        // before the request got here (`credentials_needed`).
        let mut marked_from = None;
        if let Some(user) = self.foreign_claim(msg)
            && self
                .creds
                .peek(&(user.clone(), self.domain.clone()))
                .is_some_and(|(s, _)| s.is_some())
        {
            self.metrics.foreign_local_number.inc();
            // Debug-formatted in the logs: the caller wrote it (no forged log lines).
            let from = msg.from().map(|f| f.uri).unwrap_or_default();
            match self.foreign_caller {
                ForeignCallerPolicy::Refuse => {
                    warn!(%src, ?from, ?user, "INVITE from another domain claims a local subscriber's number: refused");
                    return self.reply(
                        id,
                        msg,
                        403,
                        "Forbidden (foreign domain claims a local number)",
                        &[],
                        now,
                    );
                }
                ForeignCallerPolicy::Mark => {
                    info!(%src, ?from, ?user, "INVITE from another domain claims a local subscriber's number: marked verstat=TN-Validation-Failed");
                    marked_from = msg.from().ok().map(|f| mark_from(&f));
                }
            }
        }
        // Proxy authentication of calls from our users (§22.3).
        let mut authenticated = false;
        if method == Method::Invite
            && self.auth == AuthMode::Digest
            && self.auth_invite
            && msg.to().ok().and_then(|t| t.tag()).is_none()
            && msg
                .from()
                .ok()
                .and_then(|f| SipUri::parse(f.uri).ok())
                .is_some_and(|u| u.host.eq_ignore_ascii_case(&self.domain))
        {
            let from_user = msg
                .from()
                .ok()
                .and_then(|f| SipUri::parse(f.uri).ok())
                .and_then(|u| u.user)
                .map(str::to_owned);
            if !self.authenticate(id, msg, true, from_user.as_deref(), now, unix) {
                return;
            }
            authenticated = true;
        }
        // §16.5: determine the target. `vetted`: the target is one we route to for anyone (a
        // registered binding, a flow, the static route); other targets need the relay check.
        let (new_ruri, dest, reliable, vetted) = if let Some(peer) = token_flow {
            (None, peer, true, true)
        } else if let Some(route) = next_route {
            match SipUri::parse(route).ok().and_then(|u| socket_of(&u)) {
                Some(d) => (None, d, false, false),
                None => return self.reply(id, msg, 404, "Not Found", &[], now),
            }
        } else if self.is_us(&uri)
            || (uri.host.eq_ignore_ascii_case(&self.domain) && uri.host.parse::<IpAddr>().is_err())
        {
            let aor = format!("{}@{}", uri.user.unwrap_or(""), self.domain);
            let target = self.location.lookup(&aor, now).first().map(|b| {
                // A binding made over a stream belongs to that connection (its flow): no
                // connection, no delivery (RFC 5626 §5.3), and never another connection.
                let dest = match b.flow {
                    Some(f) => self.flows.get(&f).copied(),
                    None => Some(b.contact_addr.unwrap_or(b.source)),
                };
                (b.uri.clone(), dest, b.reliable)
            });
            match (target, self.static_route) {
                (Some((u, None, _)), _) => {
                    info!(%aor, contact = %u, "registered over a connection that is gone");
                    return self.reply(id, msg, 480, "Temporarily Unavailable", &[], now);
                }
                (Some((u, Some(d), r)), _) => (Some(u), d, r, true),
                (None, Some(d)) => (None, d, false, true),
                (None, None) => {
                    let known = self
                        .creds
                        .peek(&(uri.user.unwrap_or("").to_owned(), self.domain.clone()))
                        .is_some_and(|(s, _)| s.is_some());
                    let (code, reason) = if known || self.auth == AuthMode::None {
                        (480, "Temporarily Unavailable")
                    } else {
                        (404, "Not Found")
                    };
                    info!(%aor, code, "no registered contact");
                    return self.reply(id, msg, code, reason, &[], now);
                }
            }
        } else {
            match (socket_of(&uri), self.static_route) {
                (Some(d), _) => (None, d, false, false),
                (None, Some(d)) => (None, d, false, true),
                (None, None) => return self.reply(id, msg, 404, "Not Found", &[], now),
            }
        };
        if !vetted && !authenticated && !self.may_relay(src, dest) {
            // A user of our domain may still send there once authenticated (407 first).
            let local_user = msg
                .from()
                .ok()
                .and_then(|f| SipUri::parse(f.uri).ok())
                .filter(|u| u.host.eq_ignore_ascii_case(&self.domain))
                .and_then(|u| u.user.map(str::to_owned));
            match local_user {
                Some(user) if self.auth == AuthMode::Digest => {
                    if !self.authenticate(id, msg, true, Some(&user), now, unix) {
                        return;
                    }
                    authenticated = true;
                }
                _ => {
                    self.metrics.relay_refused.inc();
                    warn!(%src, %method, %dest, "relay to an unvetted target refused");
                    return self.reply(id, msg, 403, "Forbidden (relaying denied)", &[], now);
                }
            }
        }
        let reliable = reliable || self.stream_peers.contains_key(&dest);
        // §16.3 step 4 / §16.6 step 8: loop detection by recomputing our branch.
        let branch = self.branch_for(msg);
        if msg
            .vias()
            .any(|v| v.branch() == Some(branch.as_str()) && self.is_our_sent_by(v.host, v.port))
        {
            return self.reply(id, msg, 482, "Loop Detected", &[], now);
        }
        let (me, proto) = self.sent_by(dest, reliable);
        let via = format!("SIP/2.0/{proto} {me};branch={branch}");
        // §16.6 step 4 / RFC 3261 §26.2: a Record-Route names the transport of the leg it faces.
        // When the request leaves on another transport or address than it came in on, RFC 5658
        // §3.2: two of them, the callee's side on top, so each side's route set starts with the
        // address it can reach.
        let record_routes = if matches!(method, Method::Invite | Method::Subscribe | Method::Refer)
            && msg.to().ok().and_then(|t| t.tag()).is_none()
        {
            let (in_me, in_proto) = self.sent_by(src, false);
            // Each leg on a stream gets its flow's token, so its in-dialog requests come back over
            // that connection (RFC 5626 §5.3); then the two values differ and both are inserted.
            let token = |peer: SocketAddr| self.flow_of(peer).map(|f| self.flow_tokens.token(f));
            let rr_out = record_route(me, proto, token(dest).as_deref());
            let rr_in = record_route(in_me, in_proto, token(src).as_deref());
            if rr_in == rr_out {
                vec![rr_out]
            } else {
                vec![rr_out, rr_in]
            }
        } else {
            Vec::new()
        };
        let mut prepend = vec![("Via", via.as_str())];
        prepend.extend(record_routes.iter().map(|rr| ("Record-Route", rr.as_str())));
        let mut wire = Vec::with_capacity(data.len() + 200);
        // RFC 3325 §5: an asserted identity counts only from a trusted source, and we assert
        // nothing for a request we did not authenticate, so no phone takes it for a local one.
        let remove: &[&str] = if authenticated {
            &[]
        } else {
            &["P-Asserted-Identity", "P-Preferred-Identity"]
        };
        Rewriter {
            request_uri: new_ruri.as_deref(),
            prepend,
            pop_via: false,
            pop_routes,
            max_forwards: Some(mf - 1),
        }
        .write_with(
            msg,
            &mut wire,
            HeaderEdits {
                remove,
                from: marked_from.as_deref(),
            },
        );
        match self.ep.send_request_wire(wire, dest, reliable, now) {
            Ok(cid) => {
                self.metrics.transactions_started.inc();
                self.forwards.insert(id, cid);
                self.back.insert(cid, id);
                self.server_req.insert(id, data.to_vec());
                if method == Method::Invite {
                    self.timer_c.insert(id, (now + self.timer_c_len, false));
                }
                debug!(%method, %dest, "forwarded");
            }
            Err(e) => {
                warn!(error = %e, "cannot forward");
                self.reply(id, msg, 500, "Server Internal Error", &[], now);
            }
        }
    }

    /// A branch that is a function of the request (§16.6 step 8, §16.11), so retransmissions and
    /// loops map to the same value.
    fn branch_for(&self, msg: &Message<'_>) -> String {
        let mut h = DefaultHasher::new();
        self.tag_secret.hash(&mut h);
        if let Ok(v) = msg.top_via() {
            v.branch().unwrap_or("").hash(&mut h);
            v.host.hash(&mut h);
            v.port.hash(&mut h);
        }
        msg.call_id().unwrap_or("").hash(&mut h);
        msg.cseq().map(|c| c.seq).unwrap_or(0).hash(&mut h);
        msg.request_uri().unwrap_or("").hash(&mut h);
        msg.from().ok().and_then(|f| f.tag()).hash(&mut h);
        msg.to().ok().and_then(|f| f.tag()).hash(&mut h);
        format!("z9hG4bKcc{:016x}", h.finish())
    }

    fn on_cancel(&mut self, id: TxId, msg: &Message<'_>, now: Instant) {
        // §16.10: find the INVITE's server transaction; answer the CANCEL ourselves.
        let Some(inv) = ServerKey::of(msg).and_then(|k| self.ep.find_server(&k.invite_of_cancel()))
        else {
            return self.reply(id, msg, 481, "Call/Transaction Does Not Exist", &[], now);
        };
        self.reply(id, msg, 200, "OK", &[], now);
        if self.ep.is_answered(inv) == Some(true) {
            return;
        }
        if let Some(&cid) = self.forwards.get(&inv) {
            self.cancel_branch(cid, now);
        }
    }

    /// Sends a CANCEL for the INVITE forwarded on client transaction `cid` (§9.1, §16.10).
    fn cancel_branch(&mut self, cid: TxId, now: Instant) {
        let (Some(wire), Some(dest)) = (
            self.ep.client_request(cid).map(<[u8]>::to_vec),
            self.ep.remote(cid),
        ) else {
            return;
        };
        if let Ok(fwd) = Message::parse(&wire) {
            let cancel = build_cancel(&fwd);
            let reliable = self.stream_peers.contains_key(&dest);
            if let Err(e) = self.ep.send_request(&cancel, dest, reliable, now) {
                debug!(error = %e, "CANCEL not forwarded");
            }
        }
    }

    fn on_response(&mut self, cid: TxId, msg: &Message<'_>, now: Instant) {
        let Some(code) = msg.status() else { return };
        let Some(&sid) = self.back.get(&cid) else {
            return; // our own CANCEL's answer
        };
        if code == 100 {
            return; // §16.7 step 5: 100 is not forwarded.
        }
        if let Some(c) = self.timer_c.get_mut(&sid) {
            if code < 200 {
                // §16.7 step 2: a provisional response restarts Timer C.
                *c = (now + self.timer_c_len, true);
            } else {
                self.timer_c.remove(&sid);
            }
        }
        let mut wire = Vec::with_capacity(msg.wire_len());
        Rewriter {
            pop_via: true,
            ..Default::default()
        }
        .write(msg, &mut wire);
        self.metrics.count_response(code);
        if self.ep.is_answered(sid) == Some(true) {
            // A 2xx retransmission (RFC 6026 §8.2): forwarded statelessly upstream. Anything else
            // after our final answer (the 487 to Timer C's CANCEL) ends here.
            if (200..300).contains(&code)
                && let Some(dest) = self.ep.remote(sid)
            {
                self.send(dest, wire);
            }
            return;
        }
        if let Err(e) = self.ep.respond_wire(sid, wire, code, now) {
            debug!(error = %e, "response not forwarded");
        }
    }

    fn forward_stray_response(&mut self, msg: &Message<'_>) {
        // §16.7 / §18.1.2: responses with no transaction whose top Via is ours go to the next Via.
        let mut vias = msg.vias();
        let Some(top) = vias.next() else { return };
        if !self.is_our_sent_by(top.host, top.port) {
            return;
        }
        let Some(next) = vias.next() else { return };
        let Some(dest) = via_dest(&next) else { return };
        let mut wire = Vec::new();
        Rewriter {
            pop_via: true,
            ..Default::default()
        }
        .write(msg, &mut wire);
        self.send(dest, wire);
    }

    fn forward_ack(&mut self, msg: &Message<'_>, src: SocketAddr, now: Instant) {
        // The ACK for a 2xx travels end to end (§13.2.2.4, §16.6): forward it statelessly by flow
        // token, Route or Request-URI, under the same relay policy as any request.
        let pop_routes = self.our_routes(msg);
        let next = msg.routes().nth(pop_routes).map(|r| r.uri);
        let uri = msg.request_uri().and_then(|u| SipUri::parse(u).ok());
        let token_flow = match self.route_flow(msg, pop_routes) {
            Ok(f) => f,
            Err(e) => {
                info!(%src, reason = ?e, "ACK with a forged or dead flow token dropped");
                return;
            }
        };
        let target = match (token_flow, next, uri) {
            (Some(peer), _, _) => Some((peer, true)),
            (None, Some(r), _) => SipUri::parse(r)
                .ok()
                .and_then(|u| socket_of(&u))
                .map(|d| (d, false)),
            (None, None, Some(u)) if !self.is_us(&u) => socket_of(&u)
                .map(|d| (d, false))
                .or(self.static_route.map(|d| (d, true))),
            (None, None, Some(u)) => {
                let aor = format!("{}@{}", u.user.unwrap_or(""), self.domain);
                self.location
                    .lookup(&aor, now)
                    .first()
                    .and_then(|b| match b.flow {
                        Some(f) => self.flows.get(&f).copied(),
                        None => Some(b.contact_addr.unwrap_or(b.source)),
                    })
                    .or(self.static_route)
                    .map(|d| (d, true))
            }
            _ => None,
        };
        let Some((dest, vetted)) = target else {
            debug!("ACK with no destination dropped");
            return;
        };
        if !vetted && !self.may_relay(src, dest) {
            self.metrics.relay_refused.inc();
            info!(%src, %dest, "ACK to an unvetted target dropped (relaying denied)");
            return;
        }
        let mf = msg.max_forwards().unwrap_or(70);
        if mf == 0 {
            return;
        }
        let (me, proto) = self.sent_by(dest, false);
        let via = format!("SIP/2.0/{proto} {me};branch={}", self.branch_for(msg));
        let mut wire = Vec::new();
        Rewriter {
            prepend: vec![("Via", via.as_str())],
            pop_routes,
            max_forwards: Some(mf - 1),
            ..Default::default()
        }
        .write(msg, &mut wire);
        self.send(dest, wire);
    }

    /// Digest authentication (RFC 7616 through RFC 3261 §22). Returns true when the request may
    /// proceed; otherwise a response was sent.
    fn authenticate(
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
            Some(c) if !self.algorithms.contains(&c.algorithm) => {
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
                .creds
                .get(&(user.to_owned(), realm.clone()))
                .and_then(|(s, _)| s.clone());
            let check = self.nonces.check(c.nonce, &realm, c.nc, unix);
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
        let nonce = self.nonces.issue(&realm, unix);
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
        let md5_only = self.algorithms.contains(&Algorithm::Md5)
            && msg
                .header_value(HeaderName::UserAgent)
                .and_then(product_token)
                .is_some_and(|p| {
                    self.md5_only_agents
                        .iter()
                        .any(|a| a.eq_ignore_ascii_case(p))
                });
        if md5_only {
            &[Algorithm::Md5]
        } else {
            &self.algorithms
        }
    }

    /// RFC 3261 §10.3 step 7: a REGISTER whose Call-ID matches a binding's but whose CSeq is not
    /// newer is refused, so a delayed copy never overrides a later registration.
    fn refuse_out_of_order(&mut self, id: TxId, msg: &Message<'_>, now: Instant) {
        self.reply(
            id,
            msg,
            500,
            "Server Internal Error (CSeq out of order)",
            &[],
            now,
        );
    }

    fn on_register(
        &mut self,
        id: TxId,
        msg: &Message<'_>,
        src: SocketAddr,
        now: Instant,
        unix: u64,
    ) {
        // §10.3 step 5: the address-of-record from To.
        let Ok(to) = msg.to() else { return };
        let Ok(to_uri) = SipUri::parse(to.uri) else {
            return self.reply(id, msg, 404, "Not Found", &[], now);
        };
        let user = to_uri.user.unwrap_or("").to_owned();
        // A connection keyed by a phone's on-chain identity registers that number only: the
        // handshake proved who is on the line, digest credentials alone must not move them.
        if let Some(bound) = self.stream_identities.get(&src)
            && bound.starts_with('+')
            && *bound != user
        {
            warn!(%src, identity = %bound, aor = %user, "REGISTER for another number over a TLS-PSK connection refused");
            return self.reply(
                id,
                msg,
                403,
                "Forbidden (the AOR is not this connection's identity)",
                &[],
                now,
            );
        }
        if self.auth == AuthMode::Digest
            && !self.authenticate(id, msg, false, Some(&user), now, unix)
        {
            return;
        }
        let aor = format!("{user}@{}", self.domain);
        let call_id = msg.call_id().unwrap_or("").to_owned();
        let cseq = msg.cseq().map(|c| c.seq).unwrap_or(0);
        let header_expires = msg.expires();
        let contacts: Vec<Contact<'_>> = msg.contacts().collect();
        // §10.3 step 6: "*" only alone and with Expires: 0.
        if contacts.iter().any(|c| matches!(c, Contact::Star)) {
            if contacts.len() != 1 || header_expires != Some(0) {
                return self.reply(
                    id,
                    msg,
                    400,
                    "Bad Request (Contact: * needs Expires: 0)",
                    &[],
                    now,
                );
            }
            if self
                .location
                .bindings(&aor)
                .iter()
                .any(|b| b.call_id == call_id && b.cseq >= cseq)
            {
                return self.refuse_out_of_order(id, msg, now);
            }
            self.location.clear(&aor);
            info!(%aor, "all contacts removed");
            self.metrics.registers_ok.inc();
            return self.reply(id, msg, 200, "OK", &[], now);
        }
        // §10.3 step 7: validate every contact before changing anything.
        let mut updates = Vec::new();
        for c in &contacts {
            let Contact::Addr(a) = c else { continue };
            let exp = a
                .expires()
                .or(header_expires)
                .unwrap_or(self.default_expires);
            if exp != 0 && exp < self.min_expires {
                return self.reply(
                    id,
                    msg,
                    423,
                    "Interval Too Brief",
                    &[("Min-Expires", self.min_expires.to_string())],
                    now,
                );
            }
            let q = a
                .params
                .value("q")
                .and_then(|q| q.parse::<f32>().ok())
                .filter(|q| (0.0..=1.0).contains(q))
                .map_or(1000, |q| (q * 1000.0) as u16);
            updates.push((a.uri.to_owned(), exp.min(self.max_expires), q));
        }
        let flow = self.flow_of(src);
        let reliable = flow.is_some();
        let bindings = self.location.bindings(&aor);
        for (uri, _, _) in &updates {
            if let Some(b) = bindings.iter().find(|b| &b.uri == uri)
                && b.call_id == call_id
                && b.cseq >= cseq
            {
                return self.refuse_out_of_order(id, msg, now);
            }
        }
        let new_count = updates
            .iter()
            .filter(|(u, e, _)| *e > 0 && !bindings.iter().any(|b| &b.uri == u))
            .count();
        let live = bindings.iter().filter(|b| b.expires_at > now).count();
        if live + new_count > self.max_contacts {
            return self.reply(
                id,
                msg,
                503,
                "Too Many Registered Contacts",
                &[("Retry-After", "60".into())],
                now,
            );
        }
        for (uri, exp, q) in updates {
            self.location.remove(&aor, &uri);
            if exp == 0 {
                info!(%aor, contact = %uri, "unregistered");
                continue;
            }
            info!(%aor, contact = %uri, expires = exp, %src, "registered");
            // Over a stream the Contact's address is never used (nor vouched for by the relay
            // policy): the binding's connection is.
            let contact_addr = match flow {
                Some(_) => None,
                None => SipUri::parse(&uri).ok().and_then(|u| socket_of(&u)),
            };
            self.location.insert(
                &aor,
                Binding {
                    uri,
                    expires_at: now + Duration::from_secs(u64::from(exp)),
                    call_id: call_id.clone(),
                    cseq,
                    q,
                    source: src,
                    reliable,
                    // Over a stream the binding is the connection's, whatever the Contact says.
                    flow,
                    contact_addr,
                },
            );
        }
        self.metrics.registers_ok.inc();
        // §10.3 step 8: answer with all current bindings.
        let current: Vec<(&str, String)> = self
            .location
            .lookup(&aor, now)
            .into_iter()
            .map(|b| {
                (
                    "Contact",
                    format!(
                        "<{}>;expires={}",
                        b.uri,
                        b.expires_at.saturating_duration_since(now).as_secs()
                    ),
                )
            })
            .collect();
        self.reply(id, msg, 200, "OK", &current, now);
    }

    /// Fires timers due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.ep.handle_timeout(now);
        if now >= self.next_sweep {
            self.next_sweep = now + Duration::from_secs(1);
            self.metrics
                .registrations
                .set(self.location.sweep(now) as i64);
            self.fire_timer_c(now);
        }
        self.expire_parked(now);
        self.drain(now);
    }

    /// §16.8: a branch that has rung for Timer C gets a CANCEL (if it answered provisionally; a
    /// silent one is Timer B's) and the caller a 408.
    fn fire_timer_c(&mut self, now: Instant) {
        let due: Vec<(TxId, bool)> = self
            .timer_c
            .iter()
            .filter(|(_, (at, _))| *at <= now)
            .map(|(&sid, &(_, provisional))| (sid, provisional))
            .collect();
        for (sid, provisional) in due {
            self.timer_c.remove(&sid);
            if self.ep.is_answered(sid) != Some(false) {
                continue;
            }
            if provisional && let Some(&cid) = self.forwards.get(&sid) {
                self.cancel_branch(cid, now);
            }
            if let Some(req) = self.server_req.get(&sid).cloned()
                && let Ok(m) = Message::parse(&req)
            {
                info!(
                    call_id = m.call_id().unwrap_or(""),
                    "Timer C: rang too long; CANCEL and 408"
                );
                self.reply(sid, &m, 408, "Request Timeout", &[], now);
            }
        }
    }

    fn drain(&mut self, now: Instant) {
        // Events first, then every transaction transmit (those the events cause too): what the
        // events send directly goes out ahead of the transaction layer's queue.
        let mut transmits = Vec::new();
        loop {
            let out = chaincall_io::drain(|| self.ep.poll_output());
            transmits.extend(out.transmits);
            self.ep_deadline = out.timeout;
            if out.events.is_empty() {
                break;
            }
            for ev in out.events {
                self.on_endpoint_event(ev, now);
            }
        }
        self.out.extend(transmits);
        self.metrics.transactions.set(self.ep.len() as i64);
        self.metrics
            .invites_in_progress
            .set(self.timer_c.len() as i64);
    }

    fn on_endpoint_event(&mut self, ev: EndpointEvent, now: Instant) {
        match ev {
            EndpointEvent::ClientTimeout(cid) => {
                // §16.8: a timed-out branch counts as 408.
                if let Some(&sid) = self.back.get(&cid)
                    && self.ep.is_answered(sid) == Some(false)
                    && let Some(req) = self.server_req.get(&sid).cloned()
                    && let Ok(m) = Message::parse(&req)
                {
                    info!("no answer downstream: 408");
                    self.reply(sid, &m, 408, "Request Timeout", &[], now);
                }
            }
            EndpointEvent::ServerTimeout(_) => {}
            EndpointEvent::Terminated(id) => {
                self.timer_c.remove(&id);
                if let Some(cid) = self.forwards.remove(&id) {
                    self.back.remove(&cid);
                }
                if let Some(sid) = self.back.remove(&id) {
                    self.forwards.remove(&sid);
                }
                self.server_req.remove(&id);
            }
        }
    }

    /// Queues `contents` for `destination`.
    fn send(&mut self, destination: SocketAddr, contents: Vec<u8>) {
        self.out.push_back(Transmit {
            destination,
            contents,
        });
    }

    /// The next output: a datagram or stream write, a [`Need`], or the next deadline (the
    /// earliest of the transactions' timers, the once-a-second sweep and the oldest parked
    /// look-up's timeout). Drain until `Timeout` after every call; the shell sends a transmit over
    /// the destination's stream connection if it has one (see [`Core::is_stream_peer`]).
    pub fn poll_output(&mut self) -> CoreOutput {
        if let Some(t) = self.out.pop_front() {
            return Output::Transmit(t);
        }
        if let Some(need) = self.needs.pop_front() {
            return Output::Event(need);
        }
        let mut next = self
            .ep_deadline
            .map_or(self.next_sweep, |t| t.min(self.next_sweep));
        if let Some(oldest) = self.parked.values().flatten().map(|p| p.since).min() {
            next = next.min(oldest + self.lookup_timeout);
        }
        Output::Timeout(Some(next))
    }

    /// True if `dest` should be reached over its stream connection.
    pub fn is_stream_peer(&self, dest: &SocketAddr) -> bool {
        self.stream_peers.contains_key(dest)
    }

    /// The flow named by the flow token in our popped Route values, for a request that must go to
    /// it. RFC 5626 §5.3 with one twist for the double Record-Route: the *last* of our Route
    /// values faces the leg the request goes to (the first faces the sender), so its token, if
    /// any, is the destination. Any of our Route values with a user part that is not our token
    /// is a forgery.
    fn route_flow(
        &self,
        msg: &Message<'_>,
        ours: usize,
    ) -> Result<Option<SocketAddr>, RouteFlowError> {
        let mut dest = None;
        for (i, r) in msg.routes().take(ours).enumerate() {
            let Ok(u) = SipUri::parse(r.uri) else {
                continue;
            };
            let flow = match u.user {
                Some(t) => Some(
                    self.flow_tokens
                        .verify(t)
                        .map_err(|_| RouteFlowError::Forged)?,
                ),
                None => None,
            };
            if i + 1 == ours {
                dest = flow;
            }
        }
        match dest {
            None => Ok(None),
            Some(f) => self
                .flows
                .get(&f)
                .copied()
                .map(Some)
                .ok_or(RouteFlowError::Gone),
        }
    }

    /// Whether a request from `src` may go to `dest`, a target the request named itself (Request-URI
    /// or Route) rather than one we chose: `dest` is a registered contact or source, or a stream
    /// peer (a connection to us), or `src` is a local user (registered, or a TLS-PSK connection
    /// whose handshake proved an on-chain identity). Outsiders cannot use sipd to reach arbitrary
    /// addresses (issue 13 item 7).
    fn may_relay(&self, src: SocketAddr, dest: SocketAddr) -> bool {
        Some(dest) == self.static_route
            || self.location.knows_address(dest)
            || self.stream_peers.contains_key(&dest)
            || Some(src) == self.static_route
            || self.location.knows_address(src)
            || self.stream_identities.contains_key(&src)
    }
}

/// Why our Route's flow token cannot be followed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RouteFlowError {
    /// Not a token we minted (403).
    Forged,
    /// The connection it names has closed (430 Flow Failed).
    Gone,
}

/// The rate limit a request falls under: REGISTERs, and INVITEs that start a dialog.
fn limited_kind(msg: &Message<'_>) -> Option<Limited> {
    match msg.method()? {
        Method::Register => Some(Limited::Register),
        Method::Invite if msg.to().ok().and_then(|t| t.tag()).is_none() => Some(Limited::Invite),
        _ => None,
    }
}

/// A From value with `;verstat=TN-Validation-Failed` in its URI's user part (3GPP TS 24.229
/// §7.2A.20, ATIS-1000074): the number was not validated. A `verstat` the caller wrote itself is
/// dropped first, so a caller cannot pre-empt the mark with `TN-Validation-Passed`.
fn mark_from(from: &chaincall_sip::header::NameAddr<'_>) -> String {
    let uri = from.uri;
    let (scheme, rest) = uri.split_once(':').unwrap_or(("sip", uri));
    // `foreign_claim` found a user part, so the URI has an '@' (the last one, as SipUri reads).
    let (userinfo, host) = rest.rsplit_once('@').unwrap_or(("", rest));
    let (user, password) = match userinfo.split_once(':') {
        Some((u, p)) => (u, Some(p)),
        None => (userinfo, None),
    };
    let mut marked: Vec<&str> = user
        .split(';')
        .filter(|p| {
            !p.split_once('=')
                .is_some_and(|(k, _)| k.eq_ignore_ascii_case("verstat"))
        })
        .collect();
    marked.push("verstat=TN-Validation-Failed");
    let password = password.map(|p| format!(":{p}")).unwrap_or_default();
    let display = from
        .display
        .map(|d| format!("\"{d}\" "))
        .unwrap_or_default();
    format!(
        "{display}<{scheme}:{}{password}@{host}>{}",
        marked.join(";"),
        from.params.raw()
    )
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

/// The flow-token key, derived from the per-process random secret (domain-separated from the
/// nonce and tag secrets that also come from it).
fn flow_key(secret: &[u8; 32]) -> [u8; 32] {
    use hmac::{Hmac, Mac};
    let mut m = <Hmac<sha2::Sha256> as Mac>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    m.update(b"chaincall-sipd flow token key");
    m.finalize().into_bytes().into()
}

/// Our Record-Route value for a leg of transport `proto` (`UDP`, `TCP`, `TLS`) at `me`, with the
/// leg's flow token as the user part when the leg is a stream connection (RFC 5626 §5.3).
fn record_route(me: SocketAddr, proto: &str, flow_token: Option<&str>) -> String {
    let transport = match proto {
        "TLS" => ";transport=tls",
        "TCP" => ";transport=tcp",
        _ => "",
    };
    let user = flow_token.map(|t| format!("{t}@")).unwrap_or_default();
    format!("<sip:{user}{me};lr{transport}>")
}

/// The first listener of `kind`, with the advertised IP when it listens on all addresses.
fn first_listener(
    cfg: &Config,
    advertise: SocketAddr,
    kind: ListenTransport,
) -> Option<SocketAddr> {
    cfg.listen.iter().find(|l| l.transport == kind).map(|l| {
        if l.addr.ip().is_unspecified() {
            SocketAddr::new(advertise.ip(), l.addr.port())
        } else {
            l.addr
        }
    })
}

/// The socket of a SIP URI whose host is an IP literal (sipd does no DNS, RFC 3263 is out of scope).
fn socket_of(u: &SipUri<'_>) -> Option<SocketAddr> {
    let host = u.maddr().unwrap_or(u.host);
    let ip: IpAddr = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok()?;
    Some(SocketAddr::new(ip, u.port.unwrap_or(5060)))
}

/// Where a response goes by a Via (§18.2.2, RFC 3581): received/rport, else sent-by.
fn via_dest(v: &chaincall_sip::header::Via<'_>) -> Option<SocketAddr> {
    let host = v.received().unwrap_or(v.host);
    let ip: IpAddr = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok()?;
    let port = v.rport().flatten().or(v.port).unwrap_or(5060);
    Some(SocketAddr::new(ip, port))
}

/// Builds an error response for a request that failed to parse, copying Via, From, To, Call-ID and
/// CSeq lines textually (§8.2.6.2). `None` when the input is not a request or lacks them.
pub fn raw_error_response(data: &[u8], code: u16, reason: &str) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(data).ok()?;
    let mut lines = text.split("\r\n");
    let first = lines.next()?;
    if first.starts_with("SIP/") || !first.contains(" sip") && !first.contains(" SIP/") {
        return None;
    }
    let mut out = format!("SIP/2.0 {code} {}\r\n", reason.replace(['\r', '\n'], " "));
    let mut found = [false; 5];
    for line in lines {
        if line.is_empty() {
            break;
        }
        let Some((name, _)) = line.split_once(':') else {
            continue;
        };
        let idx = match HeaderName::parse(name.trim()) {
            HeaderName::Via => 0,
            HeaderName::From => 1,
            HeaderName::To => 2,
            HeaderName::CallId => 3,
            HeaderName::CSeq => 4,
            _ => continue,
        };
        found[idx] = true;
        out.push_str(line);
        out.push_str("\r\n");
    }
    if !found.iter().all(|f| *f) {
        return None;
    }
    out.push_str("Content-Length: 0\r\n\r\n");
    Some(out.into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// alice's REGISTER from `src` with Call-ID `call_id` (also naming its branch and tag) and
    /// the header lines `extra`.
    fn alice_register(domain: &str, src: SocketAddr, call_id: &str, extra: &str) -> String {
        format!(
            "REGISTER sip:{domain} SIP/2.0\r\n\
             Via: SIP/2.0/UDP {src};branch=z9hG4bK{call_id}\r\n\
             Max-Forwards: 70\r\n\
             From: <sip:alice@{domain}>;tag={call_id}\r\n\
             To: <sip:alice@{domain}>\r\n\
             Call-ID: {call_id}\r\n\
             CSeq: 1 REGISTER\r\n\
             Contact: <sip:alice@{src}>\r\n\
             {extra}Content-Length: 0\r\n\r\n"
        )
    }

    /// Issue 13 item 6: the credentials cache never holds more than
    /// `[auth] credentials_cache_entries`, however many usernames are looked up, and keeps the
    /// most recent answers.
    #[test]
    fn the_credentials_cache_stays_within_its_bound() {
        let mut cfg = Config::default();
        cfg.auth.credentials_cache_entries = 100;
        let now = Instant::now();
        let mut core = Core::new(&cfg, [9; 32], Arc::new(Metrics::default()), now).unwrap();
        for i in 0..10_000 {
            core.insert_credentials(&format!("u{i}"), "d", None, now, 0);
            assert!(core.credentials_cached() <= 100);
        }
        assert_eq!(core.credentials_cached(), 100);
        assert!(core.creds.contains(&("u9999".to_owned(), "d".to_owned())));
        assert!(!core.creds.contains(&("u0".to_owned(), "d".to_owned())));
    }

    /// The core's one event: REGISTERs answering a challenge for a subscriber not in the cache
    /// are parked and `poll_output` yields `Need::Credentials` once for both, then `Timeout`;
    /// when the look-up fails each gets its 503 as a `Transmit` to its sender.
    #[test]
    fn an_uncached_subscriber_is_one_event_and_the_answers_are_transmits() {
        let mut cfg = Config::default();
        cfg.auth.mode = AuthMode::Digest;
        let now = Instant::now();
        let mut core = Core::new(&cfg, [9; 32], Arc::new(Metrics::default()), now).unwrap();
        let domain = core.domain().to_owned();
        let src: SocketAddr = "192.0.2.7:5060".parse().unwrap();
        let response = "0".repeat(64);
        for n in 1..=2 {
            let register = alice_register(
                &domain,
                src,
                &format!("core-{n}"),
                &format!(
                    "Authorization: Digest username=\"alice\", realm=\"{domain}\", \
                     nonce=\"00\", uri=\"sip:{domain}\", response=\"{response}\", \
                     algorithm=SHA-256\r\n"
                ),
            );
            core.handle(register.as_bytes(), src, Transport::Udp, now, 0);
        }
        let out = chaincall_io::drain(|| core.poll_output());
        let need = Need::Credentials {
            username: "alice".into(),
            domain: domain.clone(),
        };
        assert_eq!(out.events, [need]);
        assert!(
            out.transmits.is_empty(),
            "nothing is answered before the look-up"
        );
        assert!(out.timeout.is_some());
        core.lookup_failed("alice", &domain, now);
        let out = chaincall_io::drain(|| core.poll_output());
        assert!(out.events.is_empty());
        assert_eq!(out.transmits.len(), 2);
        for t in &out.transmits {
            assert_eq!(t.destination, src);
            assert!(t.contents.starts_with(b"SIP/2.0 503 "), "{t:?}");
        }
    }

    /// The algorithms of the challenges a REGISTER without credentials and with this User-Agent
    /// (none when `None`) gets from `core`, in order.
    fn challenged_with(core: &mut Core, user_agent: Option<&str>, n: usize) -> Vec<Algorithm> {
        let domain = core.domain().to_owned();
        let src: SocketAddr = "192.0.2.8:5060".parse().unwrap();
        let ua = user_agent.map_or(String::new(), |u| format!("User-Agent: {u}\r\n"));
        let register = alice_register(&domain, src, &format!("ua-{n}"), &ua);
        let now = Instant::now();
        core.handle(register.as_bytes(), src, Transport::Udp, now, 0);
        let out = chaincall_io::drain(|| core.poll_output());
        assert_eq!(out.transmits.len(), 1, "{user_agent:?}");
        let m = Message::parse(&out.transmits[0].contents).unwrap();
        assert_eq!(m.status(), Some(401));
        m.auth_headers(HeaderName::WwwAuthenticate)
            .map(|h| digest::Challenge::parse(&h).unwrap().algorithm)
            .collect()
    }

    /// Issue 16 item 5: at the default settings a client whose User-Agent product is listed in
    /// `[auth] md5_only_user_agents` (baresip, which gives up on any SHA-256 challenge) is
    /// challenged with MD5 alone; every other client, chaincall's own phone included, still gets
    /// SHA-256 first, then MD5 (RFC 8760 §2.4).
    #[test]
    fn listed_user_agents_get_md5_only_and_the_rest_sha256_first() {
        let mut cfg = Config::default();
        cfg.auth.mode = AuthMode::Digest;
        let mut core =
            Core::new(&cfg, [9; 32], Arc::new(Metrics::default()), Instant::now()).unwrap();
        let both = [Algorithm::Sha256, Algorithm::Md5];
        let cases: [(Option<&str>, &[Algorithm]); 8] = [
            (Some("baresip v1.0.0 (x86_64/linux)"), &[Algorithm::Md5]),
            (Some("BareSIP/2.0"), &[Algorithm::Md5]),
            (Some("chaincall/0.1.0"), &both),
            (None, &both),
            (Some(""), &both),
            // A longer product or one named later is another client.
            (Some("baresip-fork/1.0"), &both),
            (Some("Linphone/5.2 (baresip)"), &both),
            (Some("notbaresip 1.0"), &both),
        ];
        for (n, (ua, want)) in cases.into_iter().enumerate() {
            assert_eq!(challenged_with(&mut core, ua, n), want, "{ua:?}");
        }
        // MD5 is never added: without it in `algorithms` a listed client gets the configured list.
        cfg.auth.algorithms = vec![Algorithm::Sha256];
        let mut core =
            Core::new(&cfg, [9; 32], Arc::new(Metrics::default()), Instant::now()).unwrap();
        let got = challenged_with(&mut core, Some("baresip v1.0.0"), 99);
        assert_eq!(got, [Algorithm::Sha256]);
        // An empty list turns the policy off.
        cfg.auth.algorithms = both.to_vec();
        cfg.auth.md5_only_user_agents.clear();
        let mut core =
            Core::new(&cfg, [9; 32], Arc::new(Metrics::default()), Instant::now()).unwrap();
        let got = challenged_with(&mut core, Some("baresip v1.0.0"), 100);
        assert_eq!(got, both);
    }
}
