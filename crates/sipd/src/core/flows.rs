//! Stream connections as RFC 5626 flows: which connection each peer address is on, the flow it
//! is, the identity its TLS-PSK handshake proved, and the flow tokens in our Record-Routes
//! ([`crate::flow`]). A binding or a flow token names a flow, never an address a client asserted.
//!
//! UDP clients behind NAT (RFC 3581, RFC 5626 over UDP): a UDP "flow" is the source address a
//! request arrived from, the NAT's public address and port. A UDP request's top Via gets
//! `received=`/`rport=` ([`annotate_via`]); a client found behind NAT ([`behind_nat`]) or asking
//! for outbound (`;ob`, `reg-id` + `+sip.instance`) is reached at that source, never at the
//! Contact it asserts, and its leg of a dialog carries a UDP flow token in our Record-Route. UDP
//! tokens are stateless (the address under an HMAC, RFC 5626 §5.2), so nothing is kept per source.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};

use chaincall_sip::header::{Contact, Via};
use chaincall_sip::message::{Framing, Message, ParseLimits};
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
    /// The cluster node at the other end of each node link (`[cluster]`), by its address.
    pub(super) nodes: HashMap<SocketAddr, String>,
    /// Peer domains whose on-chain key a link of ours found revoked or changed since its
    /// handshake: no connection proving them is used or listened to until a new handshake of
    /// our link proves their key again.
    pub(super) lost_keys: HashSet<String>,
    /// Live flows (stream connections) → their peer address.
    by_id: HashMap<FlowId, SocketAddr>,
    /// The next flow id (never reused).
    next: u64,
    /// Mints and checks the flow tokens in our Record-Routes.
    tokens: FlowTokens,
    /// Key of the stateless tokens (UDP, link and node tokens): drawn per process, or the
    /// cluster's for this node ([`Core::set_flow_token_key`]); zeroized on drop.
    udp_key: zeroize::Zeroizing<[u8; 32]>,
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
            nodes: HashMap::new(),
            lost_keys: HashSet::new(),
            by_id: HashMap::new(),
            next: 1,
            tokens: FlowTokens::new(flow_key(secret, b"chaincall-sipd flow token key")),
            udp_key: zeroize::Zeroizing::new(flow_key(
                secret,
                b"chaincall-sipd udp flow token key",
            )),
        }
    }

    /// Keys the stateless tokens (UDP, link and node tokens) with `key` from now on.
    pub(super) fn set_stateless_key(&mut self, key: &[u8; 32]) {
        self.udp_key = zeroize::Zeroizing::new(*key);
    }

    /// The stateless flow token of a UDP flow (the NAT binding `addr`): `u`, the address and
    /// port in hex, then an HMAC tag over them, so a client cannot name another address.
    pub(super) fn udp_token(&self, addr: SocketAddr) -> String {
        self.stateless_token(UDP_TOKEN_PREFIX, UDP_TOKEN_LABEL, &udp_flow_bytes(addr))
    }

    /// The address a UDP flow token names, if this process minted it.
    pub(super) fn udp_flow(&self, token: &str) -> Option<SocketAddr> {
        udp_flow_addr(&self.stateless_body(token, UDP_TOKEN_PREFIX, UDP_TOKEN_LABEL)?)
    }

    /// A stateless token: `prefix`, `body` in hex, then an HMAC tag over `body` under `label`.
    fn stateless_token(&self, prefix: &str, label: &[u8], body: &[u8]) -> String {
        let mut s = String::from(prefix);
        s.push_str(&hex::encode(body));
        s.push_str(&hex::encode(stateless_tag(&self.udp_key, label, body)));
        s
    }

    /// The body of a token [`Flows::stateless_token`] minted with `prefix` and `label`, if its
    /// tag verifies (compared in constant time: a forger learns nothing from how long the
    /// refusal took).
    fn stateless_body(&self, token: &str, prefix: &str, label: &[u8]) -> Option<Vec<u8>> {
        let mut bytes = hex::decode(token.strip_prefix(prefix)?).ok()?;
        let split = bytes.len().checked_sub(UDP_TAG_LEN)?;
        let want = stateless_tag(&self.udp_key, label, &bytes[..split]);
        subtle_eq(&want, &bytes[split..]).then(|| {
            bytes.truncate(split);
            bytes
        })
    }

    /// The flow token of our Record-Route facing `peer`: a link token when `peer` is a
    /// sipd-to-sipd link ([`Flows::link_token`]), a node token when it is a link to another
    /// node of our cluster ([`Flows::node_token`]), else its stream connection's, or its UDP
    /// flow's when `udp_flow` (the leg is a NAT'd or outbound UDP client), else none.
    pub(super) fn leg_token(&self, peer: SocketAddr, udp_flow: bool) -> Option<String> {
        self.link_of(peer)
            .map(|domain| self.link_token(domain))
            .or_else(|| self.nodes.get(&peer).map(|node| self.node_token(node)))
            .or_else(|| self.token_of(peer))
            .or_else(|| udp_flow.then(|| self.udp_token(peer)))
    }

    /// The domain a stream connection's handshake proved, if it proved a domain (a sipd-to-sipd
    /// link; a phone proves a number).
    pub(super) fn link_of(&self, peer: SocketAddr) -> Option<&str> {
        self.identities
            .get(&peer)
            .map(String::as_str)
            .filter(|id| !id.starts_with('+'))
    }

    /// The newest live connection whose handshake proved `domain` (a link to it, ours or its);
    /// none while its key is lost.
    pub(super) fn link_to(&self, domain: &str) -> Option<SocketAddr> {
        if self.lost_keys.contains(domain) {
            return None;
        }
        self.identities
            .iter()
            .filter(|(_, id)| id.eq_ignore_ascii_case(domain))
            .filter_map(|(a, _)| self.peers.get(a).map(|(_, f)| (*f, *a)))
            .max()
            .map(|(_, a)| a)
    }

    /// The token of a dialog leg that crosses a sipd-to-sipd link to `domain`: it names the
    /// *domain*, not the connection, so the dialog's in-dialog requests take whichever link to
    /// that domain is up when they come (a link reconnects; a dialog outlives a connection).
    /// Stateless like a UDP token: `p`, the domain in hex, then an HMAC tag over it.
    pub(super) fn link_token(&self, domain: &str) -> String {
        let body = domain.to_ascii_lowercase();
        self.stateless_token(LINK_TOKEN_PREFIX, LINK_TOKEN_LABEL, body.as_bytes())
    }

    /// The domain a link token names, if this process minted it.
    fn link_domain_of(&self, token: &str) -> Option<String> {
        self.stateless_name(token, LINK_TOKEN_PREFIX, LINK_TOKEN_LABEL)
    }

    /// The token of a dialog leg that crosses a link to cluster node `node`: like a link
    /// token it names the node, not the connection, so the dialog outlives a reconnect of the
    /// node link. Stateless: `n`, the node id in hex, then an HMAC tag over it.
    pub(super) fn node_token(&self, node: &str) -> String {
        self.stateless_token(NODE_TOKEN_PREFIX, NODE_TOKEN_LABEL, node.as_bytes())
    }

    /// The node a node token names, if this process minted it.
    fn node_of_token(&self, token: &str) -> Option<String> {
        self.stateless_name(token, NODE_TOKEN_PREFIX, NODE_TOKEN_LABEL)
    }

    /// The name (a domain or a node id) a stateless token of ours carries as its body.
    fn stateless_name(&self, token: &str, prefix: &str, label: &[u8]) -> Option<String> {
        String::from_utf8(self.stateless_body(token, prefix, label)?).ok()
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
        if let Some(r) = &b.remote {
            // Another node's phone: over the newest link to that node, none when it is down.
            return self.node_link(&r.node);
        }
        match b.flow {
            Some(f) => self.by_id.get(&f).copied(),
            None => Some(b.contact_addr.unwrap_or(b.source)),
        }
    }

    /// The flow named by the flow token in our popped Route values, for a request that must go to
    /// it. RFC 5626 §5.3 with one twist for the double Record-Route: the *last* of our Route
    /// values faces the leg the request goes to (the first faces the sender), so its token, if
    /// any, is the destination. Any of our Route values with a user part that is not our token
    /// is a forgery. A link token goes to the link to its domain that is up now, a node token to
    /// the link to its node that is up now (Gone while none is).
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
                // A UDP flow is the NAT binding itself: nothing to look up, nothing that closes.
                Some(t) if t.starts_with(UDP_TOKEN_PREFIX) => {
                    Some(Ok(self.udp_flow(t).ok_or(RouteFlowError::Forged)?))
                }
                Some(t) if t.starts_with(LINK_TOKEN_PREFIX) => {
                    let domain = self.link_domain_of(t).ok_or(RouteFlowError::Forged)?;
                    Some(self.link_to(&domain).ok_or(RouteFlowError::Gone))
                }
                Some(t) if t.starts_with(NODE_TOKEN_PREFIX) => {
                    let node = self.node_of_token(t).ok_or(RouteFlowError::Forged)?;
                    Some(self.node_link(&node).ok_or(RouteFlowError::Gone))
                }
                Some(t) => {
                    let f = self.tokens.verify(t).map_err(|_| RouteFlowError::Forged)?;
                    Some(self.by_id.get(&f).copied().ok_or(RouteFlowError::Gone))
                }
                None => None,
            };
            if i + 1 == ours {
                dest = flow;
            }
        }
        dest.transpose()
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
            flows.nodes.remove(&peer);
        }
    }

    /// Keys this node's stateless flow tokens (a NAT'd UDP phone's, and the link and node
    /// tokens of dialog legs) with `key` instead of the per-process secret. A cluster node's key
    /// comes from the cluster secret and its node id ([`crate::cluster::ClusterKeys`]), so a
    /// restarted node still follows the tokens its earlier process wrote into the location
    /// table and into dialogs' Record-Routes. Call before any traffic.
    pub fn set_flow_token_key(&mut self, key: &[u8; 32]) {
        self.flows.set_stateless_key(key);
    }

    /// Records that the stream connection from `peer` is a link to cluster node `node`, whose
    /// TLS handshake proved the cluster secret (or no longer, `None`).
    pub fn set_stream_node(&mut self, peer: SocketAddr, node: Option<String>) {
        match node {
            Some(n) => {
                self.flows.nodes.insert(peer, n);
            }
            None => {
                self.flows.nodes.remove(&peer);
            }
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

/// A flow-token key, derived from the per-process random secret under `label` (domain-separated
/// from the nonce and tag secrets that also come from it, and from each other).
fn flow_key(secret: &[u8; 32], label: &[u8]) -> [u8; 32] {
    hmac_sha256(secret, &[label])
}

fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    use hmac::{Hmac, Mac};
    let mut m = <Hmac<sha2::Sha256> as Mac>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    for p in parts {
        m.update(p);
    }
    m.finalize().into_bytes().into()
}

/// Whether `token` (from a stored binding or a Route) has the form of a UDP flow token.
pub(super) fn is_udp_token(token: &str) -> bool {
    token.starts_with(UDP_TOKEN_PREFIX)
}

/// What starts a UDP flow token (stream tokens are hex digits only).
const UDP_TOKEN_PREFIX: &str = "u";
/// Bytes of HMAC tag in a UDP flow token (128 bits).
const UDP_TAG_LEN: usize = 16;

/// A UDP flow's address as bytes: the IP (4 or 16 octets), then the port.
fn udp_flow_bytes(addr: SocketAddr) -> Vec<u8> {
    let mut b = match addr.ip() {
        IpAddr::V4(ip) => ip.octets().to_vec(),
        IpAddr::V6(ip) => ip.octets().to_vec(),
    };
    b.extend_from_slice(&addr.port().to_be_bytes());
    b
}

/// The address [`udp_flow_bytes`] wrote, if `b` is one.
fn udp_flow_addr(b: &[u8]) -> Option<SocketAddr> {
    let (ip, port) = b.split_at_checked(b.len().checked_sub(2)?)?;
    let port = u16::from_be_bytes(port.try_into().ok()?);
    let ip = match ip.len() {
        4 => IpAddr::from(<[u8; 4]>::try_from(ip).ok()?),
        16 => IpAddr::from(<[u8; 16]>::try_from(ip).ok()?),
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

/// What a UDP flow token's tag is computed under.
const UDP_TOKEN_LABEL: &[u8] = b"chaincall-sipd udp flow v1";
/// What starts a link token (a dialog leg over a sipd-to-sipd link, [`Flows::link_token`]).
const LINK_TOKEN_PREFIX: &str = "p";
/// What a link token's tag is computed under (domain-separated from UDP tokens').
const LINK_TOKEN_LABEL: &[u8] = b"chaincall-sipd link flow v1";
/// What starts a node token (a dialog leg over a cluster node link, [`Flows::node_token`]).
const NODE_TOKEN_PREFIX: &str = "n";
/// What a node token's tag is computed under (separated from the UDP and link tokens').
const NODE_TOKEN_LABEL: &[u8] = b"chaincall-sipd node flow v1";

/// The tag of a stateless token (UDP, link or node) of `body` under `label`.
fn stateless_tag(key: &[u8; 32], label: &[u8], body: &[u8]) -> [u8; UDP_TAG_LEN] {
    let full = hmac_sha256(key, &[label, body]);
    let mut tag = [0; UDP_TAG_LEN];
    tag.copy_from_slice(&full[..UDP_TAG_LEN]);
    tag
}

fn subtle_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Whether `ip` is an address no packet from the Internet comes from: RFC 1918 private, RFC 6598
/// shared (carrier-grade NAT), link-local, or IPv6 unique-local/link-local. A Contact naming one
/// came from behind a NAT (Kamailio's `nat_uac_test` flag 1).
pub(super) fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            v4.is_private() || v4.is_link_local() || (a == 100 && (64..128).contains(&b))
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            (first & 0xfe00) == 0xfc00 || (first & 0xffc0) == 0xfe80
        }
    }
}

fn ip_of_host(host: &str) -> Option<IpAddr> {
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok()
}

/// Whether a Contact naming `contact` cannot be what reaches a client whose packets come from
/// `src`: a private address (behind NAT), or this host's own loopback or an unspecified address
/// from a client that is not on this host (it would point sipd at its own services). Another
/// public host is allowed: RFC 3261 §10.2 third-party registration.
pub(super) fn contact_untrusted(contact: IpAddr, src: IpAddr) -> bool {
    is_private(contact)
        || ((contact.is_loopback() || contact.is_unspecified()) && !src.is_loopback())
}

/// Whether the sender of `msg`, which arrived from `src`, is behind a NAT (RFC 3581 §1, what
/// Kamailio's `nat_uac_test` checks with flags 1, 2 and 16): the top Via's sent-by is not the
/// source address (or, with `rport` over UDP, not its port), or a Contact is
/// [`contact_untrusted`]. Then no Contact it asserts is used to reach it.
pub(super) fn behind_nat(msg: &Message<'_>, src: SocketAddr, udp: bool) -> bool {
    if let Ok(via) = msg.top_via() {
        let sent_by = ip_of_host(via.host);
        if sent_by != Some(src.ip())
            || (udp && via.rport().is_some() && via.port.unwrap_or(5060) != src.port())
        {
            return true;
        }
    }
    msg.contacts().any(|c| {
        let Contact::Addr(a) = c else { return false };
        SipUri::parse(a.uri)
            .ok()
            .and_then(|u| ip_of_host(u.host))
            .is_some_and(|ip| contact_untrusted(ip, src.ip()))
    })
}

/// Whether `msg` asks for RFC 5626 outbound: a REGISTER Contact with `reg-id` and
/// `+sip.instance`, or a dialog-forming request's Contact URI with `;ob`.
pub(super) fn wants_outbound(msg: &Message<'_>) -> bool {
    msg.contacts().any(|c| {
        let Contact::Addr(a) = c else { return false };
        (a.params.get("reg-id").is_some() && a.params.get("+sip.instance").is_some())
            || SipUri::parse(a.uri).is_ok_and(|u| u.params.get("ob").is_some())
    })
}

/// STUN's magic cookie (RFC 5389 §6).
const STUN_COOKIE: [u8; 4] = [0x21, 0x12, 0xa4, 0x42];

/// A UDP keep-alive a phone behind NAT sends to keep its router's mapping open (RFC 5626 §4.4.1,
/// §8.4): a datagram of CRLFs (absorbed: `Some(None)`), or a STUN Binding request on the SIP port,
/// answered with a Binding success response carrying the source as XOR-MAPPED-ADDRESS (RFC 5389
/// §7.3, §15.2) so the phone sees its public mapping (`Some(Some(response))`). `None`: not a
/// keep-alive (it goes to the SIP parser).
pub(super) fn udp_keepalive(data: &[u8], src: SocketAddr) -> Option<Option<Vec<u8>>> {
    if !data.is_empty() && data.iter().all(|b| matches!(b, b'\r' | b'\n')) {
        return Some(None);
    }
    // A Binding request: type 0x0001, the cookie, a length that is what follows the header.
    let header = data.get(..20)?;
    let length = usize::from(u16::from_be_bytes([header[2], header[3]]));
    if header[..2] != [0x00, 0x01] || header[4..8] != STUN_COOKIE || length != data.len() - 20 {
        return None;
    }
    let txid = &header[8..20];
    let port = src.port() ^ 0x2112;
    let (family, addr): (u8, Vec<u8>) = match src.ip() {
        IpAddr::V4(ip) => (
            0x01,
            ip.octets()
                .iter()
                .zip(STUN_COOKIE)
                .map(|(a, k)| a ^ k)
                .collect(),
        ),
        IpAddr::V6(ip) => (
            0x02,
            ip.octets()
                .iter()
                .zip(STUN_COOKIE.iter().chain(txid))
                .map(|(a, k)| a ^ k)
                .collect(),
        ),
    };
    let value_len = 4 + addr.len();
    let mut out = Vec::with_capacity(24 + value_len);
    out.extend_from_slice(&[0x01, 0x01]);
    out.extend_from_slice(&((4 + value_len) as u16).to_be_bytes());
    out.extend_from_slice(&STUN_COOKIE);
    out.extend_from_slice(txid);
    out.extend_from_slice(&[0x00, 0x20]);
    out.extend_from_slice(&(value_len as u16).to_be_bytes());
    out.extend_from_slice(&[0x00, family]);
    out.extend_from_slice(&port.to_be_bytes());
    out.extend_from_slice(&addr);
    Some(Some(out))
}

/// RFC 3261 §18.2.1 and RFC 3581 §4 for a request that came over UDP from `src`: its top Via
/// gets `received=` (the source IP, when it differs from sent-by or `rport` was asked for) and a
/// filled `rport=` (when asked for), so responses and the proxy's stray-response path go back
/// through the NAT. `None` when nothing changes (or the edit would not parse: then the request
/// goes on as received).
pub(super) fn annotate_via(
    data: &[u8],
    msg: &Message<'_>,
    src: SocketAddr,
    limits: &ParseLimits,
) -> Option<Vec<u8>> {
    let via: Via<'_> = msg.top_via().ok()?;
    let rport = via.rport().is_some();
    if !rport && ip_of_host(via.host) == Some(src.ip()) {
        return None;
    }
    // The params text is a slice of `data`: its span is what gets replaced.
    let raw = via.params.raw();
    let start = (raw.as_ptr() as usize).checked_sub(data.as_ptr() as usize)?;
    let end = start + raw.len();
    if end > data.len() {
        return None;
    }
    let mut params = String::with_capacity(raw.len() + 40);
    for (name, value) in via.params.iter() {
        if name.eq_ignore_ascii_case("received") || name.eq_ignore_ascii_case("rport") {
            continue;
        }
        params.push(';');
        params.push_str(name);
        if let Some(v) = value {
            params.push('=');
            params.push_str(v);
        }
    }
    params.push_str(&format!(";received={}", src.ip()));
    if rport {
        params.push_str(&format!(";rport={}", src.port()));
    }
    let mut out = Vec::with_capacity(data.len() + 40);
    out.extend_from_slice(&data[..start]);
    out.extend_from_slice(params.as_bytes());
    out.extend_from_slice(&data[end..]);
    Message::parse_with(&out, Framing::Datagram, limits)
        .is_ok()
        .then_some(out)
}
