//! The server's brain, synchronous: registrar, stateful proxy and digest auth over the
//! transaction [`Endpoint`] of `chaincall-sip`. The tokio shell ([`crate::server`]) feeds it
//! datagrams/frames and the clock, and sends what it queues.
//!
//! Credentials come from the database asynchronously and never hold the loop up: when a request
//! carries credentials for a user not in the cache, [`Core::handle`] first charges the per-source
//! rate limit (so a flood of invented usernames costs at most the limit's worth of look-ups), then
//! parks the request (at most [`MAX_PARKED`] in all, [`MAX_PARKED_PER_USER`] per username and
//! [`MAX_PARKED_PER_AOR`] per callee whose bindings are read; more
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

use std::collections::VecDeque;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chaincall_io::{Output, Transmit};
use chaincall_sip::header::{HeaderName, Method};
use chaincall_sip::message::{Framing, Message, MessageBuf, ParseLimits, response_to};
use chaincall_sip::transaction::{Endpoint, Routed, TimerConfig, TxId};
use chaincall_sip::uri::SipUri;
use tracing::{debug, info, warn};

use crate::config::{AuthMode, Config, ConfigError, ListenTransport};
use crate::location::{Limited, RateLimiter, RegisterWrite};
use crate::metrics::Metrics;

mod auth;
mod cluster;
mod flows;
mod identity;
mod peering;
mod proxy;
mod registrar;
mod relay;
#[cfg(test)]
mod tests;

use auth::Auth;
pub use auth::{MAX_PARKED, MAX_PARKED_PER_AOR, MAX_PARKED_PER_USER};
use cluster::Cluster;
use flows::{Flows, RouteFlowError};
use identity::CallerCheck;
use peering::Peering;
use proxy::{Proxy, Routing};
use registrar::Registrar;
pub use relay::MAX_RELAY_PENDING;
use relay::Relay;

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
#[non_exhaustive]
pub enum Need {
    /// Look up this subscriber, then answer with [`Core::insert_credentials`] or
    /// [`Core::lookup_failed`].
    Credentials {
        /// Username (without domain).
        username: String,
        /// Domain.
        domain: String,
    },
    /// Read the stored bindings of `username`@`domain` (PostgreSQL location) as of wall-clock
    /// second `unix_now`, then answer with [`Core::insert_bindings`] or
    /// [`Core::bindings_failed`].
    Bindings {
        /// User part of the address-of-record.
        username: String,
        /// Its domain.
        domain: String,
        /// Wall-clock seconds now (rows expired by then are not live).
        unix_now: u64,
    },
    /// Apply a REGISTER to the stored location (PostgreSQL), then answer with
    /// [`Core::register_answered`] and the write's ticket.
    Register(RegisterWrite),
    /// Look up the on-chain key of the caller an INVITE claims (`[identity] verify`), verified
    /// as `[tls_psk] trust` says, then answer with [`Core::insert_caller_key`].
    CallerKey {
        /// The identity: the From's E.164 number.
        name: chaincall_identity::IdentityName,
    },
    /// Send this `offer` to the media relay (`[relay]`), then answer with
    /// [`Core::relay_offered`] and the ticket.
    RelayOffer {
        /// Names the INVITE that waits.
        ticket: u64,
        /// The caller's SDP (the NG client masks it for the relay).
        offer: chaincall_relay::ng::Offer,
    },
    /// Send this `answer` to the media relay, then answer with [`Core::relay_answered`].
    RelayAnswer {
        /// Names the response that waits.
        ticket: u64,
        /// The callee's SDP.
        answer: chaincall_relay::ng::Answer,
    },
    /// Delete this call at the media relay, then report with [`Core::relay_deleted`].
    RelayDelete {
        /// The call's Call-ID.
        call_id: String,
    },
}

/// The server state: the transaction layer and what every part shares (addresses, domain,
/// output queues, rate limits, metrics), with each part's own state in its module.
pub struct Core {
    ep: Endpoint,
    advertise: SocketAddr,
    locals: Vec<SocketAddr>,
    domain: String,
    limits: ParseLimits,
    rate: RateLimiter,
    /// Digest authentication and the subscriber look-ups ([`auth`]).
    auth: Auth,
    /// Bindings and the REGISTER policy ([`registrar`]).
    registrar: Registrar,
    /// Forwarded transactions and Timer C ([`proxy`]).
    proxy: Proxy,
    /// Stream connections, their flows and identities ([`flows`]).
    flows: Flows,
    /// Callers' PASSporTs and the INVITEs waiting for their keys ([`identity`]).
    callers: CallerCheck,
    /// Media relay sessions and the messages waiting for the relay ([`relay`]).
    relay: Relay,
    /// The peer domains of `[peers]` and their links ([`peering`]).
    peering: Peering,
    /// The other nodes of the domain and the requests sent to them ([`cluster`]).
    cluster: Cluster,
    /// Sent-by for requests we send over TLS: the first TLS listener (advertised IP).
    tls_advertise: Option<SocketAddr>,
    /// Sent-by for requests we send over TCP: the first TCP listener (advertised IP).
    tcp_advertise: Option<SocketAddr>,
    out: VecDeque<Transmit>,
    needs: VecDeque<Need>,
    /// The transaction layer's next deadline, as its last drain ended.
    ep_deadline: Option<Instant>,
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
    /// Builds the core from a validated configuration; `secret` seeds nonces, tags and flow
    /// tokens. `now` is the core's start; it reads no clock of its own.
    pub fn new(
        cfg: &Config,
        secret: [u8; 32],
        metrics: Arc<Metrics>,
        now: Instant,
    ) -> Result<Core, ConfigError> {
        cfg.validate()?;
        // Nothing is due at start: every timer is armed by the traffic that needs it.
        let _ = now;
        let first = cfg.listen[0].addr;
        let advertise = cfg.advertise.unwrap_or(first);
        let domain = match &cfg.domain {
            Some(d) => d.to_ascii_lowercase(),
            None => advertise.ip().to_string(),
        };
        let peering = Peering::new(cfg, &domain)?;
        let cluster = Cluster::new(cfg);
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
                // A request forwarded by another node names our node-link address.
                .chain(cluster.addr)
                .collect(),
            domain,
            limits: ParseLimits {
                max_message_size: cfg.limits.max_message_size,
                max_headers: cfg.limits.max_headers,
            },
            rate: RateLimiter::new(
                cfg.limits.register_rate,
                cfg.limits.invite_rate,
                cfg.limits.burst,
            ),
            auth: Auth::new(cfg, secret),
            registrar: Registrar::new(cfg),
            proxy: Proxy::new(cfg),
            flows: Flows::new(&secret),
            callers: CallerCheck::new(cfg)?,
            relay: Relay::new(cfg),
            peering,
            cluster,
            tls_advertise: first_listener(cfg, advertise, ListenTransport::Tls),
            tcp_advertise: first_listener(cfg, advertise, ListenTransport::Tcp),
            out: VecDeque::new(),
            needs: VecDeque::new(),
            ep_deadline: None,
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

    /// Our sent-by (Via, Record-Route) for a request to `dest`, and the Via transport token.
    fn sent_by(&self, dest: SocketAddr, reliable: bool) -> (SocketAddr, &'static str) {
        match self.flows.peers.get(&dest).map(|(k, _)| k) {
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
        // Keep-alives of phones behind NAT are not SIP: absorbed or answered (STUN), uncounted.
        if transport == Transport::Udp
            && let Some(reply) = flows::udp_keepalive(data, src)
        {
            if let Some(r) = reply {
                self.send(src, r);
            }
            return None;
        }
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
        // RFC 3581: a UDP request's top Via records where it really came from, before anything
        // (the transaction layer's 100 Trying included) copies that Via.
        let edited;
        let (msg, data) = match (transport, msg.method()) {
            (Transport::Udp, Some(_)) => match flows::annotate_via(data, &msg, src, &self.limits) {
                Some(e) => {
                    edited = e;
                    (
                        Message::parse_with(&edited, framing, &self.limits).ok()?,
                        &edited[..],
                    )
                }
                None => (msg, data),
            },
            _ => (msg, data),
        };
        if let Some(method) = msg.method() {
            // What arrives on a node link was checked by the node that forwarded it, and names a
            // flow: no look-up of its own.
            let from_node = self.is_node_link(src);
            // Credentials must be cached before any state changes (see module docs); the message
            // comes back once they are, and is counted then.
            if !from_node
                && self.auth.mode == AuthMode::Digest
                && let Some(need) = self.credentials_needed(&msg, now)
            {
                let start = self.park(&msg, data, src, transport, need, now, unix_secs);
                self.drain(now);
                return start;
            }
            // With the PostgreSQL location, the target's bindings are read before routing, the
            // same way: the request waits, the loop does not.
            if let Some(username) = self.bindings_needed(&msg, now).filter(|_| !from_node) {
                let need = Need::Bindings {
                    username,
                    domain: self.domain.clone(),
                    unix_now: unix_secs,
                };
                let start = self.park(&msg, data, src, transport, need, now, unix_secs);
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

    /// A new server transaction: the parts every request shares (rate limit, Request-URI, loose
    /// routing, flow tokens), then the registrar, an OPTIONS answer, or the proxy.
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
        if !self.auth.prepaid
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
        let token_flow = match self.flows.route_flow(msg, pop_routes) {
            Ok(f) => f,
            // On a node link, a token this process did not mint comes from a row an earlier
            // process of this node wrote (the other node checked the sender, the cluster
            // secret the link): that flow is gone, so 430, and the other node tries the next
            // binding. From anyone else it is a forgery.
            Err(RouteFlowError::Forged) if self.is_node_link(src) => {
                info!(%src, %method, "node link names a flow token of an earlier process");
                return self.reply(id, msg, 430, "Flow Failed", &[], now);
            }
            Err(RouteFlowError::Forged) => {
                warn!(%src, %method, "Route with a forged flow token refused");
                return self.reply(id, msg, 403, "Forbidden (invalid flow token)", &[], now);
            }
            Err(RouteFlowError::Gone) => {
                info!(%src, %method, "flow of the Route's token is closed");
                return self.reply(id, msg, 430, "Flow Failed", &[], now);
            }
        };
        // A peer domain's link speaks for its own users, to ours only (docs/trapezoid.md); a
        // node link for flows only, and nobody else for a node.
        if let Err((code, reason)) = self
            .check_link_request(msg, src, &uri, next_route, token_flow.is_some())
            .and_then(|()| {
                // Our own Record-Route (a dialog we routed, its leg towards a UDP phone carrying
                // no token) counts; a node's OPTIONS to us (a health check) is answered too.
                let follows = token_flow.is_some()
                    || next_route.is_some()
                    || pop_routes > 0
                    || (method == Method::Options && uri.user.is_none() && self.is_us(&uri));
                self.check_node_request(msg, src, pop_routes, follows)
            })
        {
            return self.reply(id, msg, code, reason, &[], now);
        }
        if next_route.is_none() && self.is_us(&uri) {
            match method {
                Method::Register => return self.on_register(id, msg, data, src, now, unix),
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
        self.forward_request(
            id,
            msg,
            data,
            Routing {
                src,
                uri,
                pop_routes,
                next_route,
                token_flow,
            },
            now,
            unix,
        );
    }

    /// Fires the timers due at `now` (the core's timer table); early or repeated calls are harmless.
    pub fn handle_timeout(&mut self, now: Instant) {
        for timer in Timer::ALL {
            if self.deadline(timer).is_none_or(|at| at > now) {
                continue;
            }
            match timer {
                Timer::Transactions => self.ep.handle_timeout(now),
                Timer::TimerC => self.fire_timer_c(now),
                Timer::BindingExpiry => self.expire_bindings(now),
                Timer::Lookup => self.expire_parked(now),
                Timer::CallerKey => self.expire_callers(now),
                Timer::RelaySessions => self.expire_relay_sessions(now),
            }
        }
        self.drain(now);
    }

    /// When `timer` is next due, if it runs.
    fn deadline(&self, timer: Timer) -> Option<Instant> {
        match timer {
            Timer::Transactions => self.ep_deadline,
            Timer::TimerC => self.proxy.next_timeout(),
            Timer::BindingExpiry => self.registrar.location.next_expiry(),
            Timer::Lookup => self.auth.next_timeout(),
            Timer::CallerKey => self.callers.next_timeout(),
            Timer::RelaySessions => self.relay.next_timeout(),
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
            .set(self.proxy.invites_in_progress() as i64);
    }

    /// Queues `contents` for `destination`.
    fn send(&mut self, destination: SocketAddr, contents: Vec<u8>) {
        self.out.push_back(Transmit {
            destination,
            contents,
        });
    }

    /// The next output: a datagram or stream write, a [`Need`], or the next deadline: the
    /// earliest of the timer table's entries, `None` when nothing is due ever (an idle server with no
    /// transactions, bindings or look-ups). Drain until `Timeout` after every call; the shell sends
    /// a transmit over the destination's stream connection if it has one (see
    /// [`Core::is_stream_peer`]).
    pub fn poll_output(&mut self) -> CoreOutput {
        if let Some(t) = self.out.pop_front() {
            return Output::Transmit(t);
        }
        if let Some(need) = self.needs.pop_front() {
            return Output::Event(need);
        }
        Output::Timeout(
            Timer::ALL
                .into_iter()
                .filter_map(|t| self.deadline(t))
                .min(),
        )
    }
}

/// The core's timer table: one entry per kind, each due at the earliest deadline its part holds
/// (quinn-proto's `TimerTable`). Nothing runs on a period: an entry with no deadline never fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Timer {
    /// The transaction layer's timers (RFC 3261 §17: A to K).
    Transactions,
    /// Proxy Timer C of the earliest forwarded INVITE still ringing (§16.8).
    TimerC,
    /// The next binding to expire (§10.3).
    BindingExpiry,
    /// The oldest parked request's look-up timeout (`[auth] lookup_timeout_ms`).
    Lookup,
    /// The oldest INVITE waiting for its caller's key: its look-up timeout (the same setting).
    CallerKey,
    /// The relay session that first reaches `[relay] max_call_secs`.
    RelaySessions,
}

impl Timer {
    const ALL: [Timer; 6] = [
        Timer::Transactions,
        Timer::TimerC,
        Timer::BindingExpiry,
        Timer::Lookup,
        Timer::CallerKey,
        Timer::RelaySessions,
    ];
}

/// The rate limit a request falls under: REGISTERs, and INVITEs that start a dialog.
fn limited_kind(msg: &Message<'_>) -> Option<Limited> {
    match msg.method()? {
        Method::Register => Some(Limited::Register),
        Method::Invite if msg.to().ok().and_then(|t| t.tag()).is_none() => Some(Limited::Invite),
        _ => None,
    }
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
