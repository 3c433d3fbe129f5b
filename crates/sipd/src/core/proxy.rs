//! The stateful proxy (RFC 3261 §16): request targets, the relay policy, Via and Record-Route
//! (RFC 5658 double Record-Route, RFC 5626 flow tokens), CANCEL (§16.10), responses back
//! upstream (§16.7), the end-to-end ACK, and proxy Timer C (§16.8) as one entry per forwarded
//! INVITE in a deadline-ordered set, so nothing sweeps on a clock.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeSet, HashMap};
use std::hash::{Hash, Hasher};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use chaincall_sip::header::Method;
use chaincall_sip::message::{HeaderEdits, Message, Rewriter};
use chaincall_sip::transaction::{EndpointEvent, ServerKey, TxId, build_cancel};
use chaincall_sip::uri::SipUri;
use tracing::{debug, info, warn};

use super::flows::{behind_nat, wants_outbound};
use super::peering::PeerRoute;
use super::{Core, socket_of, via_dest};
use crate::config::{AuthMode, Config, ForeignCallerPolicy};

/// The proxy's state: which client transaction each forwarded server transaction went out on,
/// and Timer C.
#[derive(Debug)]
pub(super) struct Proxy {
    /// Server transaction → client transaction it was forwarded on.
    forwards: HashMap<TxId, TxId>,
    /// Client transaction → server transaction.
    back: HashMap<TxId, TxId>,
    /// Original request of each proxied server transaction (for 408/CANCEL).
    server_req: HashMap<TxId, Vec<u8>>,
    /// Proxy Timer C per forwarded INVITE's server transaction: when it fires, and whether the
    /// branch has answered provisionally (then it gets a CANCEL, §16.8).
    timer_c: HashMap<TxId, (Instant, bool)>,
    /// The same deadlines in time order: the earliest is the proxy's next timeout.
    timer_c_due: BTreeSet<(Instant, TxId)>,
    /// Timer C's duration (`[timers] c_secs`).
    timer_c_len: Duration,
    /// `static_route`: where requests for no registered contact go.
    pub(super) static_route: Option<SocketAddr>,
    /// `[policy] foreign_caller_with_local_number`.
    foreign_caller: ForeignCallerPolicy,
}

/// Where a new request came from and what its Request-URI and Route say (the part of routing
/// [`Core`] does before handing the request to the proxy).
pub(super) struct Routing<'a> {
    /// The sender.
    pub(super) src: SocketAddr,
    /// The parsed Request-URI.
    pub(super) uri: SipUri<'a>,
    /// How many leading Route values name us (removed when forwarding, §16.4).
    pub(super) pop_routes: usize,
    /// The first Route value that is not ours: the next hop (loose routing).
    pub(super) next_route: Option<&'a str>,
    /// The connection our Route's flow token names (RFC 5626 §5.3).
    pub(super) token_flow: Option<SocketAddr>,
}

/// A request's forwarding, decided (target, transport, edits); owned, so a request that waits for
/// its caller's key ([`Core::await_caller_key`]) keeps it until [`Core::send_forward`].
#[derive(Debug, Clone)]
pub(super) struct Forward {
    /// The sender.
    pub(super) src: SocketAddr,
    /// The new Request-URI (a registered contact), if it changes.
    pub(super) new_ruri: Option<String>,
    /// Where it goes.
    pub(super) dest: SocketAddr,
    /// Over a stream.
    pub(super) reliable: bool,
    /// Its sender proved to be a local user (digest).
    pub(super) authenticated: bool,
    /// What the From's user part says of the number.
    pub(super) verstat: Verstat,
    /// How many leading Route values name us.
    pub(super) pop_routes: usize,
    /// The Max-Forwards it leaves with.
    pub(super) max_forwards: u8,
    /// The sender is a UDP client behind NAT (or asking for outbound): its leg of the dialog
    /// gets a UDP flow token.
    pub(super) src_nat: bool,
    /// The target is a binding made from behind NAT (reached at its flow).
    pub(super) dest_nat: bool,
    /// The Route naming the cluster node that holds the target's flow, when another node does
    /// (`[cluster]`).
    pub(super) cluster_route: Option<String>,
    /// How many branches went before this one (a retry after 430 Flow Failed): each gets a
    /// branch of its own.
    pub(super) attempt: u8,
}

impl Proxy {
    pub(super) fn new(cfg: &Config) -> Self {
        Proxy {
            forwards: HashMap::new(),
            back: HashMap::new(),
            server_req: HashMap::new(),
            timer_c: HashMap::new(),
            timer_c_due: BTreeSet::new(),
            timer_c_len: cfg.timers.timer_c,
            static_route: cfg.static_route,
            foreign_caller: cfg.policy.foreign_caller_with_local_number,
        }
    }

    /// (Re)arms Timer C of `sid` to fire at `at`.
    fn arm_timer_c(&mut self, sid: TxId, at: Instant, provisional: bool) {
        if let Some((old, _)) = self.timer_c.insert(sid, (at, provisional)) {
            self.timer_c_due.remove(&(old, sid));
        }
        self.timer_c_due.insert((at, sid));
    }

    /// Stops Timer C of `sid`, if it runs.
    fn disarm_timer_c(&mut self, sid: TxId) {
        if let Some((at, _)) = self.timer_c.remove(&sid) {
            self.timer_c_due.remove(&(at, sid));
        }
    }

    /// When the next Timer C fires, if any runs.
    pub(super) fn next_timeout(&self) -> Option<Instant> {
        self.timer_c_due.first().map(|(at, _)| *at)
    }

    /// INVITEs forwarded and not yet answered finally (Timer C running).
    pub(super) fn invites_in_progress(&self) -> usize {
        self.timer_c.len()
    }
}

impl Core {
    /// Forwards a request we do not answer ourselves (§16.3 to §16.6): checks, target, relay
    /// policy, then Via and Record-Route, over a new client transaction.
    pub(super) fn forward_request(
        &mut self,
        id: TxId,
        msg: &Message<'_>,
        data: &[u8],
        routing: Routing<'_>,
        now: Instant,
        unix: u64,
    ) {
        let Routing {
            src,
            uri,
            pop_routes,
            next_route,
            token_flow,
        } = routing;
        let Some(method) = msg.method() else { return };
        // §16.3 step 3: Max-Forwards.
        let mf = msg.max_forwards().unwrap_or(70);
        if mf == 0 {
            return self.reply(id, msg, 483, "Too Many Hops", &[], now);
        }
        // A caller outside our domain claiming one of our subscribers' numbers (issue 14): refused,
        // or marked so that the callee's phone shows it as a likely spoof. The row was looked up
        // before the request got here (`credentials_needed`).
        let mut verstat = Verstat::Keep;
        if let Some(user) = self.foreign_claim(msg)
            && self.auth.is_known(&user, &self.domain)
        {
            self.metrics.foreign_local_number.inc();
            // Debug-formatted in the logs: the caller wrote it (no forged log lines).
            let from = msg.from().map(|f| f.uri).unwrap_or_default();
            match self.proxy.foreign_caller {
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
                    verstat = Verstat::Failed;
                }
            }
        }
        // Proxy authentication of calls from our users (§22.3). A request on a node link was
        // authenticated by the node that forwarded it.
        let mut authenticated = self.is_node_link(src);
        if !authenticated
            && method == Method::Invite
            && self.auth.mode == AuthMode::Digest
            && self.auth.invite
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
        // Another chaincall domain's target goes over its sipd-to-sipd link (docs/trapezoid.md).
        let in_dialog = token_flow.is_some() || next_route.is_some();
        let to_peer = match self.route_to_peer(msg, src, &uri, authenticated, in_dialog) {
            PeerRoute::NotPeer => None,
            PeerRoute::Link { dest, ruri } => Some((ruri, dest)),
            PeerRoute::Refuse(code, reason) => {
                let retry: &[(&str, String)] = match code {
                    503 => &[("Retry-After", "5".into())],
                    _ => &[],
                };
                return self.reply(id, msg, code, reason, retry, now);
            }
        };
        // §16.5: determine the target. `vetted`: the target is one we route to for anyone (a
        // registered binding, a flow, the static route, a peer's link); other targets need the
        // relay check.
        let mut dest_nat = false;
        let mut cluster_route = None;
        let mut cluster_aor = None;
        let (new_ruri, dest, reliable, vetted) = if let Some(peer) = token_flow {
            // A stream flow or a NAT'd UDP client's flow (RFC 5626 §5.3): `reliable` is settled
            // below by whether it is a connection. A UDP flow is a NAT binding, so an initial
            // request to it (another node's call for our phone) record-routes with its token.
            dest_nat = !self.flows.peers.contains_key(&peer);
            (None, peer, false, true)
        } else if let Some((ruri, link)) = to_peer {
            (ruri, link, true, true)
        } else if let Some(route) = next_route {
            match SipUri::parse(route).ok().and_then(|u| socket_of(&u)) {
                Some(d) => (None, d, false, false),
                None => return self.reply(id, msg, 404, "Not Found", &[], now),
            }
        } else if self.is_us(&uri)
            || (uri.host.eq_ignore_ascii_case(&self.domain) && uri.host.parse::<IpAddr>().is_err())
        {
            let aor = format!("{}@{}", uri.user.unwrap_or(""), self.domain);
            // A binding made over a stream belongs to that connection (its flow), on this node
            // or, in a cluster, on the node holding it.
            let target = self.target_of(&aor, now).map(|t| {
                dest_nat = t.nat;
                if t.route.is_some() {
                    cluster_aor = Some((aor.clone(), t.uri.clone()));
                }
                cluster_route = t.route;
                (t.uri, t.dest, t.reliable)
            });
            match (target, self.proxy.static_route) {
                (Some((u, None, _)), _) => {
                    info!(%aor, contact = %u, "registered over a connection that is gone");
                    return self.reply(id, msg, 480, "Temporarily Unavailable", &[], now);
                }
                (Some((u, Some(d), r)), _) => (Some(u), d, r, true),
                (None, Some(d)) => (None, d, false, true),
                (None, None) => {
                    let known = self.auth.is_known(uri.user.unwrap_or(""), &self.domain);
                    let (code, reason) = if known || self.auth.mode == AuthMode::None {
                        (480, "Temporarily Unavailable")
                    } else {
                        (404, "Not Found")
                    };
                    info!(%aor, code, "no registered contact");
                    return self.reply(id, msg, code, reason, &[], now);
                }
            }
        } else {
            match (socket_of(&uri), self.proxy.static_route) {
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
                Some(user) if self.auth.mode == AuthMode::Digest => {
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
        let reliable = reliable || self.flows.peers.contains_key(&dest);
        let src_udp = !self.flows.peers.contains_key(&src);
        let src_nat = behind_nat(msg, src, src_udp) || wants_outbound(msg);
        // §16.3 step 4 / §16.6 step 8: loop detection by recomputing our branch.
        let branch = self.branch_for(msg);
        if msg
            .vias()
            .any(|v| v.branch() == Some(branch.as_str()) && self.is_our_sent_by(v.host, v.port))
        {
            return self.reply(id, msg, 482, "Loop Detected", &[], now);
        }
        let fwd = Forward {
            src,
            new_ruri,
            dest,
            reliable,
            authenticated,
            verstat,
            pop_routes,
            max_forwards: mf - 1,
            src_nat,
            dest_nat,
            cluster_route,
            attempt: 0,
        };
        if let Some((aor, contact)) = cluster_aor {
            self.track_cluster_try(id, aor, contact, fwd.clone());
        }
        // Last, once nothing else refuses it: the caller's PASSporT (`[identity] verify`), so a
        // token is spent in the replay cache only by the request that goes on.
        if let Some(name) = self.caller_claim(msg) {
            return self.await_caller_key(id, data, fwd, name, now, unix);
        }
        self.send_forward(id, msg, data, fwd, now);
    }

    /// Sends `msg` on as `fwd` decided (§16.6): Via, Record-Route, the routing edits, over a new
    /// client transaction of server transaction `id`.
    pub(super) fn send_forward(
        &mut self,
        id: TxId,
        msg: &Message<'_>,
        data: &[u8],
        fwd: Forward,
        now: Instant,
    ) {
        let (src, dest, reliable) = (fwd.src, fwd.dest, fwd.reliable);
        let Some(method) = msg.method() else { return };
        let mut branch = self.branch_for(msg);
        if fwd.attempt > 0 {
            branch.push_str(&format!(".{}", fwd.attempt));
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
            // A NAT'd UDP leg gets a UDP flow token: its Contact names a private address, so
            // in-dialog requests for it must follow the token to the NAT's address.
            let rr_out = record_route(
                me,
                proto,
                self.flows.leg_token(dest, fwd.dest_nat).as_deref(),
            );
            let rr_in = record_route(
                in_me,
                in_proto,
                self.flows.leg_token(src, fwd.src_nat).as_deref(),
            );
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
        // To another node's phone: its Route first, so that node delivers it down the flow.
        prepend.extend(fwd.cluster_route.as_deref().map(|r| ("Route", r)));
        let mut wire = Vec::with_capacity(data.len() + 200);
        // RFC 3325 §5: an asserted identity counts only from a trusted source, and we assert
        // nothing for a request we did not authenticate, so no phone takes it for a local one.
        let remove: &[&str] = if fwd.authenticated {
            &[]
        } else {
            &["P-Asserted-Identity", "P-Preferred-Identity"]
        };
        let marked_from = msg.from().ok().and_then(|f| mark_from(&f, fwd.verstat));
        Rewriter {
            request_uri: fwd.new_ruri.as_deref(),
            prepend,
            pop_via: false,
            pop_routes: fwd.pop_routes,
            max_forwards: Some(fwd.max_forwards),
        }
        .write_with(
            msg,
            &mut wire,
            HeaderEdits {
                remove,
                from: marked_from.as_deref(),
            },
        );
        // A relayed INVITE waits for the relay's offer here (`[relay]`).
        let Some(wire) = self.relay_request(id, msg, data, wire, &fwd, now) else {
            return;
        };
        self.start_forward(id, data, wire, dest, reliable, now);
    }

    /// Sends `wire`, the request `data` of server transaction `id` as it leaves, over a new
    /// client transaction to `dest`, and arms Timer C for an INVITE.
    pub(super) fn start_forward(
        &mut self,
        id: TxId,
        data: &[u8],
        wire: Vec<u8>,
        dest: SocketAddr,
        reliable: bool,
        now: Instant,
    ) {
        let Ok(msg) = Message::parse(data) else {
            return;
        };
        let Some(method) = msg.method() else { return };
        match self.ep.send_request_wire(wire, dest, reliable, now) {
            Ok(cid) => {
                self.metrics.transactions_started.inc();
                self.proxy.forwards.insert(id, cid);
                self.proxy.back.insert(cid, id);
                self.proxy.server_req.insert(id, data.to_vec());
                if method == Method::Invite {
                    let at = now + self.proxy.timer_c_len;
                    self.proxy.arm_timer_c(id, at, false);
                }
                debug!(%method, %dest, "forwarded");
            }
            Err(e) => {
                warn!(error = %e, "cannot forward");
                self.reply(id, &msg, 500, "Server Internal Error", &[], now);
            }
        }
    }

    /// The request server transaction `sid` forwarded, as received.
    pub(super) fn proxy_request(&self, sid: TxId) -> Option<Vec<u8>> {
        self.proxy.server_req.get(&sid).cloned()
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

    pub(super) fn on_cancel(&mut self, id: TxId, msg: &Message<'_>, now: Instant) {
        // §16.10: find the INVITE's server transaction; answer the CANCEL ourselves.
        let Some(inv) = ServerKey::of(msg).and_then(|k| self.ep.find_server(&k.invite_of_cancel()))
        else {
            return self.reply(id, msg, 481, "Call/Transaction Does Not Exist", &[], now);
        };
        self.reply(id, msg, 200, "OK", &[], now);
        if self.ep.is_answered(inv) == Some(true)
            || self.cancel_waiting_caller(inv, now)
            || self.cancel_waiting_offer(inv, now)
        {
            return;
        }
        if let Some(&cid) = self.proxy.forwards.get(&inv) {
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
            let reliable = self.flows.peers.contains_key(&dest);
            if let Err(e) = self.ep.send_request(&cancel, dest, reliable, now) {
                debug!(error = %e, "CANCEL not forwarded");
            }
        }
    }

    pub(super) fn on_response(&mut self, cid: TxId, msg: &Message<'_>, now: Instant) {
        let Some(code) = msg.status() else { return };
        let Some(&sid) = self.proxy.back.get(&cid) else {
            return; // our own CANCEL's answer
        };
        if code == 100 {
            return; // §16.7 step 5: 100 is not forwarded.
        }
        // RFC 5626 §5.3: the node holding the binding lost its flow; another binding may do.
        if code == 430 && self.retry_after_flow_failed(sid, now) {
            return;
        }
        if self.proxy.timer_c.contains_key(&sid) {
            if code < 200 {
                // §16.7 step 2: a provisional response restarts Timer C.
                let at = now + self.proxy.timer_c_len;
                self.proxy.arm_timer_c(sid, at, true);
            } else {
                self.proxy.disarm_timer_c(sid);
            }
        }
        let mut wire = Vec::with_capacity(msg.wire_len());
        Rewriter {
            pop_via: true,
            ..Default::default()
        }
        .write(msg, &mut wire);
        // A relayed call's SDP waits for the relay's answer (`[relay]`).
        let from = self.ep.remote(cid);
        let Some(wire) = self.relay_response(sid, from, msg, code, wire) else {
            return;
        };
        self.forward_response(sid, code, wire, now);
    }

    /// Sends `wire`, a response with status `code`, upstream on server transaction `sid`.
    pub(super) fn forward_response(&mut self, sid: TxId, code: u16, wire: Vec<u8>, now: Instant) {
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

    pub(super) fn forward_stray_response(&mut self, msg: &Message<'_>) {
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

    pub(super) fn forward_ack(&mut self, msg: &Message<'_>, src: SocketAddr, now: Instant) {
        // The ACK for a 2xx travels end to end (§13.2.2.4, §16.6): forward it statelessly by flow
        // token, Route or Request-URI, under the same relay policy as any request.
        let pop_routes = self.our_routes(msg);
        let next = msg.routes().nth(pop_routes).map(|r| r.uri);
        let uri = msg.request_uri().and_then(|u| SipUri::parse(u).ok());
        let token_flow = match self.flows.route_flow(msg, pop_routes) {
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
                .or(self.proxy.static_route.map(|d| (d, true))),
            (None, None, Some(u)) => {
                let aor = format!("{}@{}", u.user.unwrap_or(""), self.domain);
                self.registrar
                    .location
                    .lookup(&aor, now)
                    .first()
                    .and_then(|b| self.flows.binding_dest(b))
                    .or(self.proxy.static_route)
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

    /// §16.8: a branch that has rung for Timer C gets a CANCEL (if it answered provisionally; a
    /// silent one is Timer B's) and the caller a 408. Only the entries due at `now` are touched.
    pub(super) fn fire_timer_c(&mut self, now: Instant) {
        while let Some(&(at, sid)) = self.proxy.timer_c_due.first()
            && at <= now
        {
            let provisional = self.proxy.timer_c.get(&sid).is_some_and(|(_, p)| *p);
            self.proxy.disarm_timer_c(sid);
            if self.ep.is_answered(sid) != Some(false) {
                continue;
            }
            if provisional && let Some(&cid) = self.proxy.forwards.get(&sid) {
                self.cancel_branch(cid, now);
            }
            if let Some(req) = self.proxy.server_req.get(&sid).cloned()
                && let Ok(m) = Message::parse(&req)
            {
                info!(
                    call_id = m.call_id().unwrap_or(""),
                    "Timer C: rang too long; CANCEL and 408"
                );
                self.reply(sid, &m, 408, "Request Timeout", &[], now);
                self.relay_invite_ended(sid, "Timer C");
            }
        }
    }

    /// What the transaction layer reports: a branch that timed out (408 upstream), and
    /// transactions that ended (their proxy state goes).
    pub(super) fn on_endpoint_event(&mut self, ev: EndpointEvent, now: Instant) {
        match ev {
            EndpointEvent::ClientTimeout(cid) => {
                // §16.8: a timed-out branch counts as 408.
                if let Some(&sid) = self.proxy.back.get(&cid)
                    && self.ep.is_answered(sid) == Some(false)
                    && let Some(req) = self.proxy.server_req.get(&sid).cloned()
                    && let Ok(m) = Message::parse(&req)
                {
                    info!("no answer downstream: 408");
                    self.reply(sid, &m, 408, "Request Timeout", &[], now);
                    self.relay_invite_ended(sid, "no answer downstream");
                }
            }
            EndpointEvent::ServerTimeout(_) => {}
            EndpointEvent::Terminated(id) => {
                self.relay_transaction_gone(id);
                self.proxy.disarm_timer_c(id);
                if let Some(cid) = self.proxy.forwards.remove(&id) {
                    self.proxy.back.remove(&cid);
                }
                // A branch that ended after a retry replaced it leaves the retry's mapping.
                if let Some(sid) = self.proxy.back.remove(&id)
                    && self.proxy.forwards.get(&sid) == Some(&id)
                {
                    self.proxy.forwards.remove(&sid);
                }
                self.proxy.server_req.remove(&id);
                self.cluster.forget(id);
            }
        }
    }
}

impl Core {
    /// Whether a request from `src` may go to `dest`, a target the request named itself
    /// (Request-URI or Route) rather than one we chose: `dest` is a registered contact or source,
    /// or a stream peer (a connection to us), or `src` is a local user (registered, or a TLS-PSK
    /// connection whose handshake proved an on-chain identity). Outsiders cannot use sipd to
    /// reach arbitrary addresses (issue 13 item 7).
    fn may_relay(&self, src: SocketAddr, dest: SocketAddr) -> bool {
        // A node link carries only what we route there ourselves (another node's binding, a
        // flow token): the node at the other end trusts it without a challenge.
        if self.is_node_link(dest) {
            return false;
        }
        Some(dest) == self.proxy.static_route
            || self.registrar.location.knows_address(dest)
            || self.flows.peers.contains_key(&dest)
            || Some(src) == self.proxy.static_route
            || self.registrar.location.knows_address(src)
            || self.flows.identities.contains_key(&src)
    }
}

/// What sipd says of the number in a forwarded request's From (3GPP TS 24.229 §7.2A.20,
/// ATIS-1000074 `verstat`), written into the From URI's user part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Verstat {
    /// Nothing: the From goes on as received.
    Keep,
    /// Nothing validated, so no `verstat` at all: one the caller wrote itself is removed.
    Strip,
    /// `TN-Validation-Passed`: a valid PASSporT signed by the number's on-chain key.
    Passed,
    /// `TN-Validation-Failed`: the number was not validated (chaincall phones show a likely spoof).
    Failed,
}

impl Verstat {
    /// The parameter's value, if one is written.
    fn value(self) -> Option<&'static str> {
        match self {
            Verstat::Keep | Verstat::Strip => None,
            Verstat::Passed => Some("TN-Validation-Passed"),
            Verstat::Failed => Some("TN-Validation-Failed"),
        }
    }

    /// `self` once a verification said `other`: a failure stands (a foreign domain claiming a
    /// local number stays marked even with a valid token).
    pub(super) fn and(self, other: Verstat) -> Verstat {
        if self == Verstat::Failed {
            Verstat::Failed
        } else {
            other
        }
    }
}

/// The From value with `verstat` applied to its URI's user part, or `None` when it goes on as
/// received: `Keep`, or `Strip` of a From that carries no `verstat`. A `verstat` the caller
/// wrote itself is always dropped first, so a caller cannot pre-empt the mark with
/// `TN-Validation-Passed`.
fn mark_from(from: &chaincall_sip::header::NameAddr<'_>, verstat: Verstat) -> Option<String> {
    let uri = from.uri;
    let (scheme, rest) = uri.split_once(':').unwrap_or(("sip", uri));
    // A user part needs an '@' (the last one, as SipUri reads); without one there is nothing to
    // mark.
    let (userinfo, host) = rest.rsplit_once('@')?;
    let (user, password) = match userinfo.split_once(':') {
        Some((u, p)) => (u, Some(p)),
        None => (userinfo, None),
    };
    let is_verstat = |p: &&str| {
        p.split_once('=')
            .is_some_and(|(k, _)| k.eq_ignore_ascii_case("verstat"))
    };
    let had_verstat = user.split(';').any(|p| is_verstat(&p));
    if verstat == Verstat::Keep || (verstat == Verstat::Strip && !had_verstat) {
        return None;
    }
    let mut marked: Vec<&str> = user.split(';').filter(|p| !is_verstat(p)).collect();
    let value = verstat.value().map(|v| format!("verstat={v}"));
    marked.extend(value.as_deref());
    let password = password.map(|p| format!(":{p}")).unwrap_or_default();
    let display = from
        .display
        .map(|d| format!("\"{d}\" "))
        .unwrap_or_default();
    Some(format!(
        "{display}<{scheme}:{}{password}@{host}>{}",
        marked.join(";"),
        from.params.raw()
    ))
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
