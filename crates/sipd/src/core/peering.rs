//! Calls between chaincall domains (`[peers]`, docs/trapezoid.md): which requests go to another
//! domain over its sipd-to-sipd link, and what a request arriving on such a link may do.
//!
//! A link is a stream connection whose TLS-PSK handshake proved a *domain's* on-chain key (the
//! shell's [`crate::link`] opens ours; a peer's arrives on our `tls:` listener). The core knows
//! it by the identity the handshake recorded ([`Core::set_stream_identity`]): a domain name, where
//! a phone's is a number. So the link is a flow like any other: responses go back over it. Our
//! Record-Route facing it carries a *link token* naming the peer domain, not the connection
//! (`Flows::link_token`), so a dialog's in-dialog requests take whichever link to that domain is
//! up when they come: a dialog outlives a link that drops and reconnects.
//!
//! Egress: an initial request for a peer's domain, or for a number under a peer's `numbers`
//! prefixes at ours, from one of our users with a From in our domain, goes over the newest live
//! link to that peer (503 while none is up). Ingress: a link may only speak for its own domain's
//! users, only to ours, and only if its domain is one we peer with (403 otherwise).
//!
//! A peer whose on-chain key our link found revoked or changed while it was up
//! ([`Core::peer_key_lost`], the shell's link re-checks it) is cut off: its connections are
//! closed, nothing is routed to it (503) and nothing it sends is taken (403), until our link's
//! next handshake proves its key again ([`Core::peer_key_proved`]).

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use chaincall_sip::header::Method;
use chaincall_sip::message::Message;
use chaincall_sip::uri::SipUri;
use tracing::{info, warn};

use super::Core;
use crate::config::{Config, ConfigError};

/// The peers we route to: domain → the E.164 prefixes it serves.
#[derive(Debug, Default)]
pub(super) struct Peering {
    peers: BTreeMap<String, Vec<String>>,
}

impl Peering {
    /// From `[peers]`; a peer named like our own `domain` is a configuration error.
    pub(super) fn new(cfg: &Config, domain: &str) -> Result<Self, ConfigError> {
        if cfg.peers.contains_key(domain) {
            return Err(ConfigError::Invalid(format!(
                "peers: {domain:?} is this sipd's own domain"
            )));
        }
        Ok(Peering {
            peers: cfg
                .peers
                .iter()
                .map(|(d, p)| (d.clone(), p.numbers.clone()))
                .collect(),
        })
    }

    /// The peer serving `number` (its longest matching prefix).
    fn by_number(&self, number: &str) -> Option<&str> {
        self.peers
            .iter()
            .flat_map(|(d, prefixes)| prefixes.iter().map(move |p| (d, p)))
            .filter(|(_, p)| number.starts_with(p.as_str()))
            .max_by_key(|(_, p)| p.len())
            .map(|(d, _)| d.as_str())
    }
}

/// Where [`Core::route_to_peer`] sends an initial request.
#[derive(Debug)]
pub(super) enum PeerRoute {
    /// Not for a peer: routed as before.
    NotPeer,
    /// Over the link at `dest`, with the Request-URI rewritten to `ruri` when it named a number
    /// at our domain.
    Link {
        /// The link's stream peer address.
        dest: SocketAddr,
        /// The Request-URI for the peer, if it changes.
        ruri: Option<String>,
    },
    /// Refused with this status and reason (and Retry-After when the link is down).
    Refuse(u16, &'static str),
}

impl Core {
    /// The peer `domain`'s on-chain key was revoked or changed since our link's handshake proved
    /// it: its requests are refused and nothing goes to it from now on. Returns the connections
    /// that proved `domain`, for the shell to close.
    pub fn peer_key_lost(&mut self, domain: &str) -> Vec<SocketAddr> {
        let domain = domain.to_ascii_lowercase();
        let conns = self
            .flows
            .identities
            .iter()
            .filter(|(_, id)| id.eq_ignore_ascii_case(&domain))
            .map(|(a, _)| *a)
            .collect();
        self.flows.lost_keys.insert(domain);
        conns
    }

    /// Our link's handshake proved `domain`'s on-chain key afresh: it is a peer like before.
    pub fn peer_key_proved(&mut self, domain: &str) {
        self.flows.lost_keys.remove(&domain.to_ascii_lowercase());
    }

    /// Checks a request arriving on a link before anything else handles it (`Err`: the status
    /// and reason it is refused with). Not from a link: `Ok`. `follows_us`: its route is our own
    /// Record-Route (a flow token of ours), i.e. an in-dialog request we routed.
    pub(super) fn check_link_request(
        &self,
        msg: &Message<'_>,
        src: SocketAddr,
        uri: &SipUri<'_>,
        next_route: Option<&str>,
        follows_us: bool,
    ) -> Result<(), (u16, &'static str)> {
        let Some(domain) = self.flows.link_of(src) else {
            return Ok(());
        };
        let method = msg.method();
        let from_host = msg
            .from()
            .ok()
            .and_then(|f| SipUri::parse(f.uri).ok())
            .map(|u| u.host.to_ascii_lowercase());
        let refuse = |why: &str, status: (u16, &'static str)| {
            // The From is the peer's text: Debug-formatted, no forged log lines.
            warn!(%src, peer = %domain, ?method, from = ?from_host, why, "request on a sipd-to-sipd link refused");
            Err(status)
        };
        if !self.peering.peers.contains_key(domain) {
            return refuse("not a peer domain", (403, "Forbidden (not a peer domain)"));
        }
        if self.flows.lost_keys.contains(domain) {
            return refuse(
                "the domain's on-chain key was revoked or changed",
                (403, "Forbidden (peer domain key revoked)"),
            );
        }
        if method == Some(Method::Register) {
            return refuse(
                "a domain registers nobody here",
                (403, "Forbidden (REGISTER on a peer link)"),
            );
        }
        if from_host.as_deref() != Some(domain) {
            return refuse(
                "From not in the link's domain",
                (403, "Forbidden (a domain may only assert its own users)"),
            );
        }
        let ours = self.is_us(uri)
            || (uri.host.eq_ignore_ascii_case(&self.domain) && uri.host.parse::<IpAddr>().is_err());
        if follows_us || (next_route.is_none() && ours) {
            Ok(())
        } else {
            self.metrics.relay_refused.inc();
            refuse(
                "target not in our domain",
                (403, "Forbidden (relaying denied)"),
            )
        }
    }

    /// Whether an initial request goes to a peer domain, and over which link. `in_dialog`: it
    /// follows a Route or flow token (never re-routed here). `authenticated`: its sender proved
    /// to be a local user by digest.
    pub(super) fn route_to_peer(
        &self,
        msg: &Message<'_>,
        src: SocketAddr,
        uri: &SipUri<'_>,
        authenticated: bool,
        in_dialog: bool,
    ) -> PeerRoute {
        if in_dialog || self.peering.peers.is_empty() {
            return PeerRoute::NotPeer;
        }
        let host = uri.host.to_ascii_lowercase();
        let number = uri.user.and_then(|u| u.split(';').next()).unwrap_or("");
        let (domain, ruri) = if self.peering.peers.contains_key(&host) {
            (host.as_str(), None)
        } else if host == self.domain
            && number.starts_with('+')
            && let Some(d) = self.peering.by_number(number)
        {
            let scheme = if uri.secure { "sips" } else { "sip" };
            (d, Some(format!("{scheme}:{number}@{d}")))
        } else {
            return PeerRoute::NotPeer;
        };
        // Only our own users' requests, and only with a From of ours: the peer refuses any other
        // (a domain may only assert its own users), and nobody else may use us to reach it.
        let local_user = authenticated
            || self
                .flows
                .identities
                .get(&src)
                .is_some_and(|id| id.starts_with('+'))
            || self.registrar.location.knows_address(src);
        let from_ours = msg
            .from()
            .ok()
            .and_then(|f| SipUri::parse(f.uri).ok())
            .is_some_and(|u| u.host.eq_ignore_ascii_case(&self.domain));
        if !local_user || !from_ours {
            self.metrics.relay_refused.inc();
            warn!(%src, peer = %domain, local_user, from_ours, "request for a peer domain not from one of our users: refused");
            return PeerRoute::Refuse(403, "Forbidden (relaying denied)");
        }
        if self.flows.lost_keys.contains(domain) {
            info!(peer = %domain, "the peer domain's on-chain key was revoked or changed: 503");
            return PeerRoute::Refuse(503, "Service Unavailable (peer domain key revoked)");
        }
        match self.flows.link_to(domain) {
            Some(dest) => PeerRoute::Link { dest, ruri },
            None => {
                info!(peer = %domain, "no link to the peer domain is up: 503");
                PeerRoute::Refuse(503, "Service Unavailable (peer link down)")
            }
        }
    }
}
