//! The media relay (rtpengine) as the core drives it, without I/O: which calls go through it
//! (`[relay] mode`), and the NG commands each needs, yielded as [`Need`]s the shell runs beside its
//! loop (the core never waits for the relay):
//!
//! - an INVITE with an SDP offer that is relayed waits for [`Need::RelayOffer`]; the answer
//!   ([`Core::relay_offered`]) replaces its body and the INVITE goes on, or the call fails with
//!   503 when the relay failed;
//! - a 18x or 2xx with SDP for a relayed call waits for [`Need::RelayAnswer`] the same way
//!   ([`Core::relay_answered`]);
//! - [`Need::RelayDelete`] when the call ends: BYE, CANCEL, a final failure (forwarded or sipd's
//!   own: Timer C, a branch that timed out), a relay failure, and `[relay] max_call_secs` after
//!   the offer for a call whose BYE never came. No relay session is left behind.
//!
//! The relay never sees a key: the shell's [`chaincall_relay::NgClient`] masks the SDP it sends
//! and splices rtpengine's addresses and ports back into the original, so the far side gets the
//! caller's own `a=key-mgmt` / `a=crypto` lines byte for byte (docs/relay.md).

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use chaincall_relay::ng::{Answer, Offer};
use chaincall_sip::header::{HeaderName, Method};
use chaincall_sip::message::Message;
use chaincall_sip::transaction::TxId;
use tracing::{info, warn};
use zeroize::Zeroizing;

use super::proxy::Forward;
use super::{Core, Need};
use crate::config::{Config, RelayMode};

/// Most relay commands waiting for rtpengine at once; an INVITE beyond them gets 503 (a flood
/// of calls cannot queue unbounded work for the relay).
pub const MAX_RELAY_PENDING: usize = 1024;

/// The relay's state: pending offers and answers, and the open relay sessions.
#[derive(Debug)]
pub(super) struct Relay {
    mode: RelayMode,
    max_call: Duration,
    next_ticket: u64,
    /// INVITEs waiting for their `offer`, by ticket.
    offers: HashMap<u64, PendingOffer>,
    /// Responses waiting for their `answer`, by ticket.
    answers: HashMap<u64, PendingAnswer>,
    /// Open relay sessions by Call-ID.
    sessions: HashMap<String, Session>,
    /// The server transaction of each relayed INVITE → its Call-ID, until the transaction ends.
    by_sid: HashMap<TxId, String>,
    /// Sessions' `max_call` deadlines, earliest first.
    expiries: BTreeSet<(Instant, String)>,
}

/// An INVITE, already rewritten for its target, waiting for rtpengine's offer.
#[derive(Debug)]
struct PendingOffer {
    sid: TxId,
    /// The request as received (what the proxy keeps for 408/CANCEL).
    data: Vec<u8>,
    /// The request as it leaves, but for its SDP.
    wire: Vec<u8>,
    dest: SocketAddr,
    reliable: bool,
    call_id: String,
}

/// A response waiting for rtpengine's answer.
#[derive(Debug)]
struct PendingAnswer {
    sid: TxId,
    /// The response as it goes upstream, but for its SDP.
    wire: Vec<u8>,
    code: u16,
    call_id: String,
}

/// One relayed call.
#[derive(Debug)]
struct Session {
    /// Each party's signalling address, and whether it is behind NAT (rtpengine is then told
    /// where its signalling came from: `received from`).
    parties: [(SocketAddr, bool); 2],
    /// When sipd deletes it if no BYE came.
    expires: Instant,
    /// A 2xx went upstream: the INVITE's end no longer ends the session, only a BYE does.
    established: bool,
}

impl Relay {
    pub(super) fn new(cfg: &Config) -> Self {
        Relay {
            mode: cfg.relay.mode,
            max_call: cfg.relay.max_call,
            next_ticket: 1,
            offers: HashMap::new(),
            answers: HashMap::new(),
            sessions: HashMap::new(),
            by_sid: HashMap::new(),
            expiries: BTreeSet::new(),
        }
    }

    /// When the next session reaches `max_call_secs`.
    pub(super) fn next_timeout(&self) -> Option<Instant> {
        self.expiries.first().map(|(at, _)| *at)
    }

    fn ticket(&mut self) -> u64 {
        let t = self.next_ticket;
        self.next_ticket += 1;
        t
    }
}

/// Whether `msg` carries an SDP body.
fn sdp_body(msg: &Message<'_>) -> Option<String> {
    let body = msg.body();
    let sdp = msg.header_value(HeaderName::ContentType).is_some_and(|t| {
        t.split(';')
            .next()
            .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/sdp"))
    });
    if !sdp || body.is_empty() {
        return None;
    }
    String::from_utf8(body.to_vec()).ok()
}

fn tag_of(v: Option<chaincall_sip::header::NameAddr<'_>>) -> String {
    v.and_then(|n| n.tag()).unwrap_or("").to_owned()
}

/// `wire` (a message sipd built) with `body` as its body and Content-Length.
fn replace_body(wire: &[u8], body: &[u8]) -> Option<Vec<u8>> {
    let msg = Message::parse(wire).ok()?;
    let old = msg.body();
    if old.is_empty() {
        return None;
    }
    let body_at = (old.as_ptr() as usize).checked_sub(wire.as_ptr() as usize)?;
    let mut out = Vec::with_capacity(body_at + body.len() + 8);
    match msg
        .headers()
        .iter()
        .find(|h| h.name == HeaderName::ContentLength)
    {
        Some(h) => {
            let at = (h.value.as_ptr() as usize).checked_sub(wire.as_ptr() as usize)?;
            out.extend_from_slice(wire.get(..at)?);
            out.extend_from_slice(body.len().to_string().as_bytes());
            out.extend_from_slice(wire.get(at + h.value.len()..body_at)?);
        }
        None => {
            // A datagram may leave it out; the blank line's CRLF starts at `body_at - 2`.
            let head = body_at.checked_sub(2)?;
            out.extend_from_slice(wire.get(..head)?);
            out.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
        }
    }
    out.extend_from_slice(body);
    Some(out)
}

impl Core {
    /// An INVITE or BYE about to be forwarded as `wire`: a relayed INVITE's offer starts (the
    /// INVITE waits: `None`), a BYE ends its call's relay session. `Some(wire)` goes on as is.
    pub(super) fn relay_request(
        &mut self,
        id: TxId,
        msg: &Message<'_>,
        data: &[u8],
        wire: Vec<u8>,
        fwd: &Forward,
        now: Instant,
    ) -> Option<Vec<u8>> {
        let call_id = msg.call_id().unwrap_or("").to_owned();
        match msg.method() {
            Some(Method::Bye) => {
                if self.relay.sessions.contains_key(&call_id) {
                    self.end_relay_session(&call_id, "BYE");
                }
                return Some(wire);
            }
            Some(Method::Invite) => {}
            _ => return Some(wire),
        }
        let in_dialog = msg.to().ok().and_then(|t| t.tag()).is_some();
        // A call that came over a node link was anchored (or not) by the node it entered, which
        // knew both parties: a second offer would stack a second relay, or clash with the first
        // in a shared rtpengine under the same Call-ID and tag.
        let relayed = self.relay.sessions.contains_key(&call_id)
            || (!in_dialog
                && !self.is_node_link(fwd.src)
                && match self.relay.mode {
                    RelayMode::Never => false,
                    RelayMode::Nat => fwd.src_nat || fwd.dest_nat,
                    RelayMode::Always => true,
                });
        if !relayed {
            return Some(wire);
        }
        let Some(sdp) = sdp_body(msg) else {
            // A late offer (SDP in the 2xx, answer in the ACK) is not relayed: documented.
            info!(%call_id, "INVITE without an SDP offer: not relayed");
            return Some(wire);
        };
        if self.relay.offers.len() + self.relay.answers.len() >= MAX_RELAY_PENDING {
            warn!(%call_id, "too many media relay commands waiting; INVITE answered 503");
            self.metrics.media_relay_errors.inc();
            self.reply(
                id,
                msg,
                503,
                "Service Unavailable (media relay busy)",
                &[("Retry-After", "5".into())],
                now,
            );
            return None;
        }
        let src_nat = match self.relay.sessions.get(&call_id) {
            Some(s) => s.parties.iter().any(|(addr, nat)| *addr == fwd.src && *nat),
            None => {
                let expires = now + self.relay.max_call;
                self.relay.sessions.insert(
                    call_id.clone(),
                    Session {
                        parties: [(fwd.src, fwd.src_nat), (fwd.dest, fwd.dest_nat)],
                        expires,
                        established: false,
                    },
                );
                self.relay.expiries.insert((expires, call_id.clone()));
                self.metrics
                    .media_relay_sessions
                    .set(self.relay.sessions.len() as i64);
                fwd.src_nat
            }
        };
        self.relay.by_sid.insert(id, call_id.clone());
        let ticket = self.relay.ticket();
        let offer = Offer {
            call_id: call_id.clone(),
            from_tag: tag_of(msg.from().ok()),
            sdp,
            received_from: src_nat.then_some(fwd.src.ip()),
        };
        self.relay.offers.insert(
            ticket,
            PendingOffer {
                sid: id,
                data: data.to_vec(),
                wire,
                dest: fwd.dest,
                reliable: fwd.reliable,
                call_id,
            },
        );
        self.metrics.media_relay_offers.inc();
        self.needs.push_back(Need::RelayOffer { ticket, offer });
        None
    }

    /// The answer to a [`Need::RelayOffer`]: the SDP for the callee (the caller's own with the
    /// relay's addresses and ports), or why the relay failed (503 to the caller, session deleted).
    pub fn relay_offered(
        &mut self,
        ticket: u64,
        sdp: Result<Zeroizing<String>, String>,
        now: Instant,
    ) {
        let Some(p) = self.relay.offers.remove(&ticket) else {
            return;
        };
        let waiting = self.ep.is_answered(p.sid) == Some(false);
        match sdp {
            Ok(sdp) if waiting => match replace_body(&p.wire, sdp.as_bytes()) {
                Some(wire) => self.start_forward(p.sid, &p.data, wire, p.dest, p.reliable, now),
                None => self.relay_failed(p.sid, &p.data, &p.call_id, "unusable SDP", now),
            },
            // CANCELled (or answered) meanwhile: the session rtpengine made goes, unless it is an
            // established call's (a re-INVITE's offer).
            Ok(_) if !self.relay_call_up(&p.call_id) => {
                self.end_relay_session(&p.call_id, "call ended during offer")
            }
            Ok(_) => {}
            Err(e) => self.relay_failed(p.sid, &p.data, &p.call_id, &e, now),
        }
        self.drain(now);
    }

    /// Whether the relayed call `call_id` is up (a 2xx went upstream).
    fn relay_call_up(&self, call_id: &str) -> bool {
        self.relay
            .sessions
            .get(call_id)
            .is_some_and(|s| s.established)
    }

    /// A relay command for the INVITE of server transaction `sid` failed: 503 to the caller (if
    /// still unanswered) and the session deleted, unless the call is up (a failed re-INVITE
    /// leaves its media as they were).
    fn relay_failed(&mut self, sid: TxId, data: &[u8], call_id: &str, why: &str, now: Instant) {
        self.metrics.media_relay_errors.inc();
        warn!(%call_id, error = %why, "media relay failed; the call fails with 503");
        if self.ep.is_answered(sid) == Some(false)
            && let Ok(m) = Message::parse(data)
        {
            self.reply(sid, &m, 503, "Service Unavailable (media relay)", &[], now);
        }
        if !self.relay_call_up(call_id) {
            self.end_relay_session(call_id, "relay failure");
        }
    }

    /// A response from `from` to a forwarded INVITE, about to go upstream as `wire`: one with SDP
    /// for a relayed call waits for its `answer` (`None`); a final failure of a call not yet up
    /// ends the session (a refused re-INVITE leaves the call as it was).
    pub(super) fn relay_response(
        &mut self,
        sid: TxId,
        from: Option<SocketAddr>,
        msg: &Message<'_>,
        code: u16,
        wire: Vec<u8>,
    ) -> Option<Vec<u8>> {
        let Some(call_id) = self.relay.by_sid.get(&sid).cloned() else {
            return Some(wire);
        };
        if code >= 300 {
            if self.ep.is_answered(sid) == Some(false) {
                self.relay_invite_ended(sid, "final failure");
            }
            return Some(wire);
        }
        if code >= 200
            && let Some(s) = self.relay.sessions.get_mut(&call_id)
        {
            // The call is up (with or without an answer in this 2xx): only a BYE ends it now.
            s.established = true;
        }
        let Some(sdp) = sdp_body(msg) else {
            return Some(wire);
        };
        let Some(session) = self.relay.sessions.get(&call_id) else {
            return Some(wire);
        };
        // The answering party: the callee, or the caller for a re-INVITE the callee sent.
        let nat = session
            .parties
            .iter()
            .any(|(addr, nat)| Some(*addr) == from && *nat);
        let ticket = self.relay.ticket();
        let answer = Answer {
            call_id: call_id.clone(),
            from_tag: tag_of(msg.from().ok()),
            to_tag: tag_of(msg.to().ok()),
            sdp,
            received_from: from.filter(|_| nat).map(|a| a.ip()),
        };
        self.relay.answers.insert(
            ticket,
            PendingAnswer {
                sid,
                wire,
                code,
                call_id,
            },
        );
        self.metrics.media_relay_answers.inc();
        self.needs.push_back(Need::RelayAnswer { ticket, answer });
        None
    }

    /// The answer to a [`Need::RelayAnswer`]: the SDP for the caller, or why the relay failed
    /// (the response is not forwarded; the call fails with 503 and its session is deleted).
    pub fn relay_answered(
        &mut self,
        ticket: u64,
        sdp: Result<Zeroizing<String>, String>,
        now: Instant,
    ) {
        let Some(p) = self.relay.answers.remove(&ticket) else {
            return;
        };
        let wire = match sdp {
            Ok(sdp) => replace_body(&p.wire, sdp.as_bytes()).ok_or("unusable SDP".to_owned()),
            Err(e) => Err(e),
        };
        match wire {
            Ok(wire) => self.forward_response(p.sid, p.code, wire, now),
            Err(e) => {
                let data = self.proxy_request(p.sid).unwrap_or_default();
                self.relay_failed(p.sid, &data, &p.call_id, &e, now);
            }
        }
        self.drain(now);
    }

    /// The answer to a [`Need::RelayDelete`]: only counted (and logged) when it failed; rtpengine
    /// drops a call without media after its own timeout in any case.
    pub fn relay_deleted(&mut self, call_id: &str, result: Result<(), String>) {
        if let Err(e) = result {
            self.metrics.media_relay_errors.inc();
            warn!(%call_id, error = %e, "media relay delete failed");
        }
    }

    /// The INVITE of server transaction `sid` ended without a 2xx (Timer C, a timed-out branch,
    /// CANCEL, its transaction gone): its relay session goes, if it has one.
    pub(super) fn relay_invite_ended(&mut self, sid: TxId, why: &str) {
        if let Some(call_id) = self.relay.by_sid.get(&sid).cloned()
            && self.relay.sessions.contains_key(&call_id)
            && !self.relay_call_up(&call_id)
        {
            self.end_relay_session(&call_id, why);
        }
    }

    /// The server transaction `sid` is gone: forget it (its session stays if the call is up).
    pub(super) fn relay_transaction_gone(&mut self, sid: TxId) {
        self.relay_invite_ended(sid, "INVITE transaction ended");
        self.relay.by_sid.remove(&sid);
    }

    /// An INVITE waiting for its offer is CANCELled: 487, and its session goes. False when `sid`
    /// is not waiting for an offer.
    pub(super) fn cancel_waiting_offer(&mut self, sid: TxId, now: Instant) -> bool {
        let Some(ticket) = self
            .relay
            .offers
            .iter()
            .find_map(|(t, p)| (p.sid == sid).then_some(*t))
        else {
            return false;
        };
        // The entry stays until the offer's reply: rtpengine may act on the offer after our
        // delete, and the reply (to an INVITE answered by then) deletes again.
        let Some((data, call_id)) = self
            .relay
            .offers
            .get(&ticket)
            .map(|p| (p.data.clone(), p.call_id.clone()))
        else {
            return false;
        };
        if let Ok(m) = Message::parse(&data) {
            self.reply(sid, &m, 487, "Request Terminated", &[], now);
        }
        self.end_relay_session(&call_id, "CANCEL");
        true
    }

    /// Deletes the relay sessions that reached `max_call_secs` by `now`.
    pub(super) fn expire_relay_sessions(&mut self, now: Instant) {
        while let Some((at, call_id)) = self.relay.expiries.first().cloned()
            && at <= now
        {
            self.relay.expiries.pop_first();
            if self
                .relay
                .sessions
                .get(&call_id)
                .is_some_and(|s| s.expires == at)
            {
                self.end_relay_session(&call_id, "max_call_secs reached");
            }
        }
    }

    /// Forgets the session of `call_id` and deletes it at the relay.
    fn end_relay_session(&mut self, call_id: &str, why: &str) {
        if let Some(s) = self.relay.sessions.remove(call_id) {
            self.relay.expiries.remove(&(s.expires, call_id.to_owned()));
        }
        self.relay.by_sid.retain(|_, c| c != call_id);
        info!(%call_id, why, "media relay session deleted");
        self.metrics
            .media_relay_sessions
            .set(self.relay.sessions.len() as i64);
        self.metrics.media_relay_deletes.inc();
        self.needs.push_back(Need::RelayDelete {
            call_id: call_id.to_owned(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_replaced_with_their_length() {
        let head = "INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP 1.2.3.4;branch=z9hG4bKx\r\nFrom: <sip:c@d>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContent-Type: application/sdp\r\n";
        let wire = format!("{head}Content-Length: 3\r\n\r\nabc");
        let out = replace_body(wire.as_bytes(), b"hello").unwrap();
        assert!(out.ends_with(b"Content-Length: 5\r\n\r\nhello"));
        // Without Content-Length (a datagram may leave it out) one is written.
        let wire = format!("{head}\r\nabc");
        let out = replace_body(wire.as_bytes(), b"hello").unwrap();
        assert!(
            out.ends_with(b"application/sdp\r\nContent-Length: 5\r\n\r\nhello"),
            "{}",
            String::from_utf8_lossy(&out)
        );
        assert_eq!(replace_body(b"garbage", b"x"), None);
    }
}
