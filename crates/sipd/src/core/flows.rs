//! Stream connections as RFC 5626 flows: which connection each peer address is on, the flow it
//! is, the identity its TLS-PSK handshake proved, and the flow tokens in our Record-Routes
//! ([`crate::flow`]). A binding or a flow token names a flow, never an address a client asserted.

use std::collections::HashMap;
use std::net::SocketAddr;

use chaincall_sip::message::Message;
use chaincall_sip::uri::SipUri;

use super::{Core, StreamKind};
use crate::flow::{FlowId, FlowTokens};
use crate::location::Binding;

/// A flow id no connection ever has (ids start at 1): a stream binding whose connection is not
/// on this node, or belonged to an earlier process. Requests for it get 480, never another
/// connection.
pub(super) const DEAD_FLOW: FlowId = FlowId(0);

/// The live stream connections.
#[derive(Debug)]
pub(super) struct Flows {
    /// Stream peers and their flow: responses to them are sent over their connection
    /// (`reliable`).
    pub(super) peers: HashMap<SocketAddr, (StreamKind, FlowId)>,
    /// The on-chain identity each TLS-PSK connection authenticated as (its handshake peer).
    pub(super) identities: HashMap<SocketAddr, String>,
    /// Live flows (stream connections) → their peer address.
    by_id: HashMap<FlowId, SocketAddr>,
    /// The next flow id (never reused).
    next: u64,
    /// Mints and checks the flow tokens in our Record-Routes.
    tokens: FlowTokens,
}

/// Why our Route's flow token cannot be followed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum RouteFlowError {
    /// Not a token we minted (403).
    Forged,
    /// The connection it names has closed (430 Flow Failed).
    Gone,
}

impl Flows {
    /// No connections yet; tokens keyed from the per-process `secret`.
    pub(super) fn new(secret: &[u8; 32]) -> Self {
        Flows {
            peers: HashMap::new(),
            identities: HashMap::new(),
            by_id: HashMap::new(),
            next: 1,
            tokens: FlowTokens::new(flow_key(secret)),
        }
    }

    /// The flow of the stream connection from `peer`, if one is up.
    pub(super) fn flow_of(&self, peer: SocketAddr) -> Option<FlowId> {
        self.peers.get(&peer).map(|(_, f)| *f)
    }

    /// The flow token for the connection from `peer`, if it is a stream peer.
    pub(super) fn token_of(&self, peer: SocketAddr) -> Option<String> {
        self.flow_of(peer).map(|f| self.tokens.token(f))
    }

    /// The flow a token stored with a binding names: its flow if this process minted it (the
    /// connection may have closed since), else [`DEAD_FLOW`].
    pub(super) fn flow_by_token(&self, token: &str) -> FlowId {
        self.tokens.verify(token).unwrap_or(DEAD_FLOW)
    }

    /// Where a request for `b` goes: the connection that registered it (none when it closed: RFC
    /// 5626 §5.3, no delivery and never another connection), else the Contact's socket or the
    /// REGISTER's source.
    pub(super) fn binding_dest(&self, b: &Binding) -> Option<SocketAddr> {
        match b.flow {
            Some(f) => self.by_id.get(&f).copied(),
            None => Some(b.contact_addr.unwrap_or(b.source)),
        }
    }

    /// The flow named by the flow token in our popped Route values, for a request that must go to
    /// it. RFC 5626 §5.3 with one twist for the double Record-Route: the *last* of our Route
    /// values faces the leg the request goes to (the first faces the sender), so its token, if
    /// any, is the destination. Any of our Route values with a user part that is not our token
    /// is a forgery.
    pub(super) fn route_flow(
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
                Some(t) => Some(self.tokens.verify(t).map_err(|_| RouteFlowError::Forged)?),
                None => None,
            };
            if i + 1 == ours {
                dest = flow;
            }
        }
        match dest {
            None => Ok(None),
            Some(f) => self
                .by_id
                .get(&f)
                .copied()
                .map(Some)
                .ok_or(RouteFlowError::Gone),
        }
    }
}

impl Core {
    /// Records that `peer` is reached over a new stream connection of `kind` (or no longer,
    /// `None`). Each connection is a new flow: bindings and flow tokens of an earlier connection
    /// from the same address do not carry over.
    pub fn set_stream_peer(&mut self, peer: SocketAddr, kind: Option<StreamKind>) {
        let flows = &mut self.flows;
        if let Some((_, old)) = flows.peers.remove(&peer) {
            flows.by_id.remove(&old);
        }
        if let Some(kind) = kind {
            let id = FlowId(flows.next);
            flows.next += 1;
            flows.peers.insert(peer, (kind, id));
            flows.by_id.insert(id, peer);
        } else {
            flows.identities.remove(&peer);
        }
    }

    /// The flow of the stream connection from `peer`, if one is up.
    pub fn flow_of(&self, peer: SocketAddr) -> Option<FlowId> {
        self.flows.flow_of(peer)
    }

    /// Records the identity a TLS-PSK connection authenticated as in the handshake (a phone number
    /// or a domain). A phone may then REGISTER only its own number over that connection.
    pub fn set_stream_identity(&mut self, peer: SocketAddr, identity: Option<String>) {
        match identity {
            Some(id) => {
                self.flows.identities.insert(peer, id);
            }
            None => {
                self.flows.identities.remove(&peer);
            }
        }
    }

    /// True if `dest` should be reached over its stream connection.
    pub fn is_stream_peer(&self, dest: &SocketAddr) -> bool {
        self.flows.peers.contains_key(dest)
    }
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
