//! The registrar (RFC 3261 §10.3): REGISTER checked step by step, bindings kept in the location
//! service, and their expiry as one deadline (the next binding to expire), not a sweep.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::time::{Duration, Instant};

use chaincall_sip::header::{Contact, HeaderName, Method};
use chaincall_sip::message::Message;
use chaincall_sip::transaction::TxId;
use chaincall_sip::uri::SipUri;
use lru::LruCache;
use tracing::{info, warn};

use super::auth::ParkKey;
use super::flows::{DEAD_FLOW, behind_nat, contact_untrusted, wants_outbound};
use super::{Core, Need, socket_of};
use crate::config::{AuthMode, Config, LocationBackend};
use crate::location::{
    Binding, Change, ContactChange, Location, RegisterAnswer, RegisterRefused, RegisterWrite,
    RemoteFlow, StoredBinding,
};

/// The registrar's state: the bindings and the `[registrar]` policy.
#[derive(Debug)]
pub(super) struct Registrar {
    /// Address-of-record → bindings: all of them with the in-memory backend, the cache of what
    /// was read or written with PostgreSQL.
    pub(super) location: Location,
    /// The PostgreSQL backend's state; `None` for the in-memory one.
    store: Option<Stored>,
    min_expires: u32,
    max_expires: u32,
    default_expires: u32,
    max_contacts: usize,
}

/// What the registrar keeps for the PostgreSQL backend.
#[derive(Debug)]
struct Stored {
    /// `[location] node_id`.
    node_id: String,
    /// When each cached AOR was last read or written, least recently used evicted first (its
    /// bindings leave the cache with it).
    fetched: LruCache<String, Instant>,
    /// `[location] cache_secs`.
    ttl: Duration,
    /// REGISTERs whose write is under way, by ticket.
    pending: HashMap<u64, PendingRegister>,
    next_ticket: u64,
}

/// A REGISTER waiting for its database write.
#[derive(Debug)]
struct PendingRegister {
    id: TxId,
    data: Vec<u8>,
    aor: String,
}

impl Registrar {
    /// From `[registrar]` and `[location]`, with no bindings.
    pub(super) fn new(cfg: &Config) -> Self {
        let store = (cfg.location.backend == LocationBackend::Postgres).then(|| Stored {
            node_id: cfg.location.node_id.clone(),
            fetched: LruCache::new(
                NonZeroUsize::new(cfg.location.cache_entries).unwrap_or(NonZeroUsize::MIN),
            ),
            ttl: cfg.location.cache,
            pending: HashMap::new(),
            next_ticket: 1,
        });
        Registrar {
            location: Location::default(),
            store,
            min_expires: cfg.registrar.min_expires,
            max_expires: cfg.registrar.max_expires,
            default_expires: cfg.registrar.default_expires,
            max_contacts: cfg.registrar.max_contacts,
        }
    }
}

impl Core {
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

    /// A REGISTER for us (§10.3): identity and digest checks, then the bindings, answered with
    /// all current ones.
    pub(super) fn on_register(
        &mut self,
        id: TxId,
        msg: &Message<'_>,
        data: &[u8],
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
        if let Some(bound) = self.flows.identities.get(&src)
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
        if self.auth.mode == AuthMode::Digest
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
        let change = if contacts.iter().any(|c| matches!(c, Contact::Star)) {
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
            Change::RemoveAll
        } else {
            // §10.3 step 7: validate every contact before changing anything.
            let mut updates = Vec::new();
            for c in &contacts {
                let Contact::Addr(a) = c else { continue };
                let exp = a
                    .expires()
                    .or(header_expires)
                    .unwrap_or(self.registrar.default_expires);
                if exp != 0 && exp < self.registrar.min_expires {
                    return self.reply(
                        id,
                        msg,
                        423,
                        "Interval Too Brief",
                        &[("Min-Expires", self.registrar.min_expires.to_string())],
                        now,
                    );
                }
                let q = a
                    .params
                    .value("q")
                    .and_then(|q| q.parse::<f32>().ok())
                    .filter(|q| (0.0..=1.0).contains(q))
                    .map_or(1000, |q| (q * 1000.0) as u16);
                updates.push(ContactChange {
                    uri: a.uri.to_owned(),
                    expires: exp.min(self.registrar.max_expires),
                    q,
                });
            }
            Change::Contacts(updates)
        };
        // Behind NAT, or asking for outbound (RFC 5626 §6): the binding is the flow the REGISTER
        // came over (the connection, or over UDP its source address), never the Contact.
        let udp = self.flows.flow_of(src).is_none();
        let nat = behind_nat(msg, src, udp) || wants_outbound(msg);
        if nat {
            self.metrics.nat_registrations.inc();
        }
        let write = RegisterWrite {
            ticket: 0,
            username: user,
            domain: self.domain.clone(),
            call_id,
            cseq,
            change,
            received: src,
            // What only a stored row needs is filled in below, for the PostgreSQL backend: the
            // in-memory REGISTER path stays as cheap as before.
            flow_token: None,
            identity: None,
            user_agent: String::new(),
            node_id: String::new(),
            unix_now: unix,
            max_contacts: self.registrar.max_contacts,
        };
        match &mut self.registrar.store {
            None => {
                let outcome = self.apply_in_memory(&aor, &write, src, nat, now);
                self.finish_register(id, msg, &aor, outcome, now);
            }
            Some(store) => {
                // The database answers through the shell; the transaction waits (its
                // retransmissions are absorbed meanwhile).
                let ticket = store.next_ticket;
                store.next_ticket += 1;
                store.pending.insert(
                    ticket,
                    PendingRegister {
                        id,
                        data: data.to_vec(),
                        aor,
                    },
                );
                let write = RegisterWrite {
                    ticket,
                    node_id: store.node_id.clone(),
                    // A NAT'd UDP binding stores its UDP flow token: the row then says "reach
                    // it at `received`", not at the Contact.
                    flow_token: self.flows.leg_token(src, udp && nat),
                    identity: self.flows.identities.get(&src).cloned(),
                    user_agent: msg
                        .header_value(HeaderName::UserAgent)
                        .unwrap_or("")
                        .to_owned(),
                    ..write
                };
                self.needs.push_back(Need::Register(write));
            }
        }
    }

    /// The in-memory backend: §10.3 step 7's CSeq order and `max_contacts` against the stored
    /// bindings, then the change.
    fn apply_in_memory(
        &mut self,
        aor: &str,
        w: &RegisterWrite,
        src: SocketAddr,
        nat: bool,
        now: Instant,
    ) -> Result<(), RegisterRefused> {
        let stale = |b: &Binding| b.call_id == w.call_id && b.cseq >= w.cseq;
        let location = &mut self.registrar.location;
        let updates = match &w.change {
            Change::RemoveAll => {
                if location.bindings(aor).iter().any(stale) {
                    return Err(RegisterRefused::OutOfOrder);
                }
                location.clear(aor);
                info!(%aor, "all contacts removed");
                return Ok(());
            }
            Change::Contacts(updates) => updates,
        };
        let bindings = location.bindings(aor);
        for c in updates {
            if bindings.iter().find(|b| b.uri == c.uri).is_some_and(stale) {
                return Err(RegisterRefused::OutOfOrder);
            }
        }
        let new_count = updates
            .iter()
            .filter(|c| c.expires > 0 && !bindings.iter().any(|b| b.uri == c.uri))
            .count();
        let live = bindings.iter().filter(|b| b.expires_at > now).count();
        if live + new_count > w.max_contacts {
            return Err(RegisterRefused::TooManyContacts);
        }
        let flow = self.flows.flow_of(src);
        for c in updates {
            location.remove(aor, &c.uri);
            if c.expires == 0 {
                info!(%aor, contact = %c.uri, "unregistered");
                continue;
            }
            info!(%aor, contact = %c.uri, expires = c.expires, %src, "registered");
            // Over a stream the Contact's address is never used (nor vouched for by the relay
            // policy): the binding is the connection's, whatever the Contact says. Behind NAT
            // over UDP likewise: the binding is the source address (the NAT's), RFC 3581.
            let contact_addr = match (flow, nat) {
                (Some(_), _) | (None, true) => None,
                (None, false) => SipUri::parse(&c.uri).ok().and_then(|u| socket_of(&u)),
            };
            location.insert(
                aor,
                Binding {
                    uri: c.uri.clone(),
                    expires_at: now + Duration::from_secs(u64::from(c.expires)),
                    call_id: w.call_id.clone(),
                    cseq: w.cseq,
                    q: c.q,
                    source: src,
                    reliable: flow.is_some(),
                    flow,
                    contact_addr,
                    nat,
                    remote: None,
                },
            );
        }
        Ok(())
    }

    /// Answers a REGISTER once its backend has applied it (or refused it): 200 with every current
    /// binding (§10.3 step 8).
    fn finish_register(
        &mut self,
        id: TxId,
        msg: &Message<'_>,
        aor: &str,
        outcome: Result<(), RegisterRefused>,
        now: Instant,
    ) {
        match outcome {
            Err(RegisterRefused::OutOfOrder) => return self.refuse_out_of_order(id, msg, now),
            Err(RegisterRefused::TooManyContacts) => {
                return self.reply(
                    id,
                    msg,
                    503,
                    "Too Many Registered Contacts",
                    &[("Retry-After", "60".into())],
                    now,
                );
            }
            Ok(()) => {}
        }
        self.metrics.registers_ok.inc();
        self.metrics
            .registrations
            .set(self.registrar.location.len() as i64);
        let current: Vec<(&str, String)> = self
            .registrar
            .location
            .lookup(aor, now)
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
        let mut extra = current;
        if wants_outbound(msg) {
            // RFC 5626 §6: the registrar (here also the edge proxy, so no Path) keeps the flow.
            extra.push(("Require", "outbound".into()));
        }
        self.reply(id, msg, 200, "OK", &extra, now);
    }

    /// The answer to a [`Need::Register`]: the AOR's live bindings after the write, why it was
    /// refused, or `Err(())` when the database failed (503 with Retry-After: the phone retries,
    /// and calls keep routing from the cache meanwhile).
    pub fn register_answered(
        &mut self,
        ticket: u64,
        answer: RegisterAnswer,
        now: Instant,
        unix: u64,
    ) {
        let Some(p) = self
            .registrar
            .store
            .as_mut()
            .and_then(|s| s.pending.remove(&ticket))
        else {
            return;
        };
        let Ok(msg) = Message::parse(&p.data) else {
            return;
        };
        match answer {
            RegisterAnswer::Applied(rows) => {
                self.cache_bindings(&p.aor, &rows, now, unix);
                self.finish_register(p.id, &msg, &p.aor, Ok(()), now);
            }
            RegisterAnswer::Refused(refused) => {
                self.finish_register(p.id, &msg, &p.aor, Err(refused), now)
            }
            RegisterAnswer::Unavailable => {
                warn!(aor = %p.aor, "location database unavailable; REGISTER answered 503");
                self.reply(
                    p.id,
                    &msg,
                    503,
                    "Service Unavailable (location database)",
                    &[("Retry-After", "5".into())],
                    now,
                );
            }
        }
        self.drain(now);
    }

    /// The answer to a [`Need::Bindings`]: the AOR's stored bindings go into the cache, and the
    /// requests that waited are handled again.
    pub fn insert_bindings(
        &mut self,
        username: &str,
        domain: &str,
        rows: Vec<StoredBinding>,
        now: Instant,
        unix: u64,
    ) {
        let aor = format!("{username}@{domain}");
        self.cache_bindings(&aor, &rows, now, unix);
        self.resume(
            ParkKey::Bindings(username.to_owned(), domain.to_owned()),
            now,
            unix,
        );
    }

    /// A [`Need::Bindings`] failed (database lost): requests for a phone known from before are
    /// routed from the cache, which is kept meanwhile; the others get 503 with Retry-After.
    pub fn bindings_failed(&mut self, username: &str, domain: &str, now: Instant, unix: u64) {
        let key = ParkKey::Bindings(username.to_owned(), domain.to_owned());
        if self.route_from_cache(username, domain, now) {
            self.resume(key, now, unix);
        } else {
            for p in self.unpark(&key) {
                self.answer_parked(&p, "Service Unavailable (location database)");
            }
            self.drain(now);
        }
    }

    /// Whether `username`@`domain` is in the cache; if so its cached bindings count as current
    /// for `[location] cache_secs` more (the database did not answer: routing from the cache
    /// beats refusing a call to a phone known a moment ago).
    pub(super) fn route_from_cache(&mut self, username: &str, domain: &str, now: Instant) -> bool {
        let aor = format!("{username}@{domain}");
        let known = self
            .registrar
            .store
            .as_mut()
            .is_some_and(|s| s.fetched.get(&aor).is_some());
        if known {
            warn!(%aor, "location database unavailable; routing from the cache");
            self.mark_fetched(&aor, now);
        }
        known
    }

    /// Puts an AOR's stored bindings in the cache, replacing what it held.
    fn cache_bindings(&mut self, aor: &str, rows: &[StoredBinding], now: Instant, unix: u64) {
        let node = self
            .registrar
            .store
            .as_ref()
            .map(|s| s.node_id.clone())
            .unwrap_or_default();
        let bindings = rows
            .iter()
            .filter(|r| r.expires_unix > unix)
            .map(|r| {
                // A stream binding is reachable over its flow only, and only on the node that
                // holds it: another node's or an earlier process's token names no flow here.
                // A UDP flow token marks a NAT'd UDP binding: reached at the row's `received`
                // (whichever process minted the token; the address is the row's, not the token's).
                let udp_flow = r
                    .flow_token
                    .as_deref()
                    .is_some_and(super::flows::is_udp_token);
                let stream_token = r.flow_token.as_deref().filter(|_| !udp_flow);
                // In a cluster, another member's flow is reached through that member (its flow
                // token travels with the request): a stream's connection is there, and a NAT'd
                // UDP phone's pinhole admits only the node it registered through. Outside one,
                // a stream binding is unreachable here and a UDP one is tried at `received`.
                let remote = r
                    .flow_token
                    .as_deref()
                    .filter(|_| r.node_id != node && self.cluster.is_member(&r.node_id))
                    .map(|t| RemoteFlow {
                        node: r.node_id.clone(),
                        token: t.to_owned(),
                    });
                let flow = stream_token.filter(|_| remote.is_none()).map(|t| {
                    if r.node_id == node {
                        self.flows.flow_by_token(t)
                    } else {
                        DEAD_FLOW
                    }
                });
                let contact_ip = SipUri::parse(&r.contact)
                    .ok()
                    .and_then(|u| socket_of(&u))
                    .map(|a| a.ip());
                let nat =
                    udp_flow || contact_ip.is_some_and(|ip| contact_untrusted(ip, r.received.ip()));
                Binding {
                    uri: r.contact.clone(),
                    expires_at: now + Duration::from_secs(r.expires_unix - unix),
                    call_id: r.call_id.clone(),
                    cseq: r.cseq,
                    q: r.q,
                    source: r.received,
                    reliable: flow.is_some() || remote.is_some(),
                    flow,
                    contact_addr: match flow {
                        Some(_) => None,
                        None if udp_flow || remote.is_some() => None,
                        None => SipUri::parse(&r.contact).ok().and_then(|u| socket_of(&u)),
                    },
                    nat,
                    remote,
                }
            })
            .collect();
        self.registrar.location.replace(aor, bindings);
        self.mark_fetched(aor, now);
        self.metrics
            .registrations
            .set(self.registrar.location.len() as i64);
    }

    /// Records that `aor`'s cached bindings are current as of `now`; the least recently used AOR
    /// leaves the cache when it is full.
    fn mark_fetched(&mut self, aor: &str, now: Instant) {
        let Some(store) = self.registrar.store.as_mut() else {
            return;
        };
        if let Some((old, _)) = store.fetched.push(aor.to_owned(), now)
            && old != aor
        {
            self.registrar.location.clear(&old);
        }
    }

    /// The user part of a request's target AOR when routing it needs that AOR's bindings from the
    /// database first (PostgreSQL backend, not cached or cached longer than `cache_secs`).
    pub(super) fn bindings_needed(&self, msg: &Message<'_>, now: Instant) -> Option<String> {
        let store = self.registrar.store.as_ref()?;
        let method = msg.method()?;
        if matches!(method, Method::Register | Method::Ack | Method::Cancel)
            || msg.to().ok()?.tag().is_some()
        {
            return None;
        }
        let uri = SipUri::parse(msg.request_uri()?).ok()?;
        let ours = self.our_routes(msg);
        if msg.routes().nth(ours).is_some() {
            return None;
        }
        let local = self.is_us(&uri)
            || (uri.host.eq_ignore_ascii_case(&self.domain)
                && uri.host.parse::<std::net::IpAddr>().is_err());
        let user = uri.user?;
        if !local {
            return None;
        }
        let aor = format!("{user}@{}", self.domain);
        let fresh = store
            .fetched
            .peek(&aor)
            // `<=`: an answer read for this very message (same `now`) is fresh even with TTL 0.
            .is_some_and(|at| now.saturating_duration_since(*at) <= store.ttl);
        (!fresh).then(|| user.to_owned())
    }
}

impl Core {
    /// Drops the bindings whose expiry has come (only those: the location keeps them in expiry
    /// order).
    pub(super) fn expire_bindings(&mut self, now: Instant) {
        if self.registrar.location.expire(now) > 0 {
            self.metrics
                .registrations
                .set(self.registrar.location.len() as i64);
        }
    }
}
