//! The registrar (RFC 3261 §10.3): REGISTER checked step by step, bindings kept in the location
//! service, and their expiry as one deadline (the next binding to expire), not a sweep.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use chaincall_sip::header::Contact;
use chaincall_sip::message::Message;
use chaincall_sip::transaction::TxId;
use chaincall_sip::uri::SipUri;
use tracing::{info, warn};

use super::{Core, socket_of};
use crate::config::{AuthMode, Config};
use crate::location::{Binding, Location};

/// The registrar's state: the bindings and the `[registrar]` policy.
#[derive(Debug)]
pub(super) struct Registrar {
    /// Address-of-record → bindings.
    pub(super) location: Location,
    min_expires: u32,
    max_expires: u32,
    default_expires: u32,
    max_contacts: usize,
}

impl Registrar {
    /// From `[registrar]`, with no bindings.
    pub(super) fn new(cfg: &Config) -> Self {
        Registrar {
            location: Location::default(),
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
                .registrar
                .location
                .bindings(&aor)
                .iter()
                .any(|b| b.call_id == call_id && b.cseq >= cseq)
            {
                return self.refuse_out_of_order(id, msg, now);
            }
            self.registrar.location.clear(&aor);
            self.metrics
                .registrations
                .set(self.registrar.location.len() as i64);
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
            updates.push((a.uri.to_owned(), exp.min(self.registrar.max_expires), q));
        }
        let flow = self.flow_of(src);
        let reliable = flow.is_some();
        let bindings = self.registrar.location.bindings(&aor);
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
        if live + new_count > self.registrar.max_contacts {
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
            self.registrar.location.remove(&aor, &uri);
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
            self.registrar.location.insert(
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
        self.metrics
            .registrations
            .set(self.registrar.location.len() as i64);
        // §10.3 step 8: answer with all current bindings.
        let current: Vec<(&str, String)> = self
            .registrar
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
