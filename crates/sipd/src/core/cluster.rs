//! Several nodes serving one domain (`[cluster]`, docs/sipd.md "Cluster"): a request for a
//! phone whose connection another node holds goes to that node over a node link, carrying
//! the phone's flow token in a Route that names the owning node's link address (RFC 5626 §5.3
//! flow tokens used as RFC 3327 Path: the owner pops its Route and delivers the request down the
//! phone's own connection, or from its own UDP socket to a NAT'd UDP phone's NAT address, the
//! only sender that NAT's pinhole admits). Both nodes record-route, each leg with its flow token,
//! so in-dialog requests cross the same link both ways.
//!
//! A node link is a stream connection whose TLS handshake proved the cluster secret (the shell
//! records it with [`Core::set_stream_node`]). What arrives on one was already checked by the
//! node that forwarded it, so it is not challenged again, but it must name a flow of ours (or
//! follow a Route): a node link never makes us route by the location service, so no request
//! bounces between nodes. A request naming our node-link address from anywhere else is refused.
//!
//! When the owner answers 430 Flow Failed (the phone's connection closed there), the binding
//! leaves our cache and the next binding of the address-of-record is tried on the same server
//! transaction, as a new branch.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::time::Instant;

use chaincall_sip::header::Method;
use chaincall_sip::message::Message;
use chaincall_sip::transaction::TxId;
use chaincall_sip::uri::SipUri;
use tracing::{info, warn};

use super::flows::Flows;
use super::proxy::Forward;
use super::{Core, socket_of};
use crate::config::{Config, LocationBackend};
use crate::location::{Binding, RemoteFlow};

/// This node's place in its cluster.
#[derive(Debug, Default)]
pub(super) struct Cluster {
    /// Our node-link listener (`[cluster] listen`), when clustered.
    pub(super) addr: Option<SocketAddr>,
    /// The other members and their node-link addresses.
    nodes: BTreeMap<String, SocketAddr>,
    /// Forwarded requests that went to another node's flow, by server transaction: what to try
    /// next if that node answers 430.
    tries: HashMap<TxId, ClusterTry>,
}

/// A request forwarded to a binding on another node.
#[derive(Debug)]
pub(super) struct ClusterTry {
    /// The address-of-record it was for.
    pub(super) aor: String,
    /// The binding's Contact URI.
    pub(super) uri: String,
    /// How it was forwarded (reused, retargeted, for the next binding).
    pub(super) fwd: Forward,
}

impl Cluster {
    /// From `[cluster]` (and `[location]`: a cluster shares the PostgreSQL location).
    pub(super) fn new(cfg: &Config) -> Self {
        let on = cfg.cluster.enabled() && cfg.location.backend == LocationBackend::Postgres;
        Cluster {
            addr: cfg.cluster.listen.filter(|_| on),
            nodes: if on {
                cfg.cluster.nodes.clone()
            } else {
                BTreeMap::new()
            },
            tries: HashMap::new(),
        }
    }

    /// Whether `node` is another member of our cluster.
    pub(super) fn is_member(&self, node: &str) -> bool {
        self.nodes.contains_key(node)
    }

    /// The Route that takes a request to `r`'s flow on its node: the node's link address with
    /// the flow token as user part (no transport: it names the node, not a leg).
    fn route(&self, r: &RemoteFlow) -> Option<String> {
        let addr = self.nodes.get(&r.node)?;
        Some(format!("<sip:{}@{addr};lr>", r.token))
    }

    /// Stops tracking server transaction `sid` (it ended).
    pub(super) fn forget(&mut self, sid: TxId) {
        self.tries.remove(&sid);
    }
}

impl Flows {
    /// The newest live link to cluster node `node`.
    pub(super) fn node_link(&self, node: &str) -> Option<SocketAddr> {
        self.nodes
            .iter()
            .filter(|(_, n)| *n == node)
            .filter_map(|(a, _)| self.peers.get(a).map(|(_, f)| (*f, *a)))
            .max()
            .map(|(_, a)| a)
    }
}

/// Where a request for an address-of-record goes: the binding chosen, its destination, and the
/// Route naming another node when the binding is that node's.
pub(super) struct Target {
    /// The binding's Contact URI.
    pub(super) uri: String,
    /// Where the request is sent (`None`: the binding's connection is gone).
    pub(super) dest: Option<SocketAddr>,
    /// Over a stream.
    pub(super) reliable: bool,
    /// Registered from behind NAT.
    pub(super) nat: bool,
    /// The Route for the owning node, for another node's binding.
    pub(super) route: Option<String>,
}

impl Core {
    /// The binding of `aor` a new request goes to: the first in preference order that can be
    /// reached, skipping bindings whose connection is gone here or whose node we have no link
    /// to (a phone whose node died registers elsewhere; its stale row, which stays until it
    /// expires, must not hide the new one). None reachable: the first (its 480 says so).
    pub(super) fn target_of(&self, aor: &str, now: Instant) -> Option<Target> {
        let bindings = self.registrar.location.lookup(aor, now);
        let b: &Binding = bindings
            .iter()
            .find(|b| self.flows.binding_dest(b).is_some())
            .or(bindings.first())?;
        Some(Target {
            uri: b.uri.clone(),
            dest: self.flows.binding_dest(b),
            reliable: b.reliable,
            nat: b.nat,
            route: b.remote.as_ref().and_then(|r| self.cluster.route(r)),
        })
    }

    /// Whether `src` is a link to another node of our cluster.
    pub(super) fn is_node_link(&self, src: SocketAddr) -> bool {
        self.flows.nodes.contains_key(&src)
    }

    /// Checks a request against the cluster's rules before it is routed (`Err`: the status and
    /// reason it is refused with): on a node link it must name a flow of ours or follow a Route
    /// (`follows`, which an OPTIONS to us counts as), and never REGISTER; elsewhere it must not
    /// name our node-link address.
    pub(super) fn check_node_request(
        &self,
        msg: &Message<'_>,
        src: SocketAddr,
        pop_routes: usize,
        follows: bool,
    ) -> Result<(), (u16, &'static str)> {
        if self.is_node_link(src) {
            if msg.method() == Some(Method::Register) {
                warn!(%src, "REGISTER on a node link refused");
                return Err((403, "Forbidden (REGISTER on a node link)"));
            }
            if !follows {
                warn!(%src, "request on a node link names no flow: refused");
                return Err((
                    403,
                    "Forbidden (a node link carries requests for flows only)",
                ));
            }
            return Ok(());
        }
        let Some(addr) = self.cluster.addr else {
            return Ok(());
        };
        let names_link = msg.routes().take(pop_routes).any(|r| {
            SipUri::parse(r.uri)
                .ok()
                .and_then(|u| socket_of(&u))
                .is_some_and(|a| {
                    a.port() == addr.port() && (a.ip() == addr.ip() || addr.ip().is_unspecified())
                })
        });
        if names_link {
            warn!(%src, "request for our node-link address from outside the cluster refused");
            return Err((403, "Forbidden (not a cluster node)"));
        }
        Ok(())
    }

    /// Remembers that server transaction `sid` went to another node's binding `uri` of `aor`.
    pub(super) fn track_cluster_try(&mut self, sid: TxId, aor: String, uri: String, fwd: Forward) {
        self.cluster.tries.insert(sid, ClusterTry { aor, uri, fwd });
    }

    /// A 430 Flow Failed from the node holding the binding server transaction `sid` went to:
    /// that binding leaves our cache and the next one is tried. `true` when the 430 was handled
    /// here (retried, or answered 480 for want of another binding); `false` when `sid` did not
    /// go to another node.
    pub(super) fn retry_after_flow_failed(&mut self, sid: TxId, now: Instant) -> bool {
        let Some(tried) = self.cluster.tries.remove(&sid) else {
            return false;
        };
        info!(aor = %tried.aor, contact = %tried.uri, "430 from the owning node: its flow is gone; trying the next binding");
        self.registrar.location.remove(&tried.aor, &tried.uri);
        let Some(data) = self.proxy_request(sid) else {
            return true;
        };
        let Ok(msg) = Message::parse(&data) else {
            return true;
        };
        let next = self.target_of(&tried.aor, now);
        let Some((t, dest)) = next.and_then(|t| t.dest.map(|d| (t, d))) else {
            self.reply(sid, &msg, 480, "Temporarily Unavailable", &[], now);
            return true;
        };
        let fwd = Forward {
            new_ruri: Some(t.uri.clone()),
            dest,
            reliable: t.reliable || self.flows.peers.contains_key(&dest),
            dest_nat: t.nat,
            cluster_route: t.route.clone(),
            attempt: tried.fwd.attempt + 1,
            ..tried.fwd
        };
        if t.route.is_some() {
            self.track_cluster_try(sid, tried.aor.clone(), t.uri, fwd.clone());
        }
        self.send_forward(sid, &msg, &data, fwd, now);
        true
    }
}
