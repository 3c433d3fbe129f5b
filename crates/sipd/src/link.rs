//! The sipd-to-sipd link: one persistent TLS-PSK connection from this sipd to another, whose
//! handshake proves both ends' on-chain keys (docs/trapezoid.md). Today it carries calls between
//! chaincall domains (`[peers]`); it is named for what it is so that a cluster's inter-node link
//! (issue 18) can use it as is.
//!
//! [`Link::connect`] opens one connection: TCP, then TLS with the PSK of the last handshake while
//! that lives (no chain read), else chaincall's STS handshake as initiator — our identity and key
//! from `[tls_psk]`, the peer's key looked up by its name in the keystore, verified as `[tls_psk]
//! trust` says — then TLS with the fresh PSK on the same connection. [`Link::run`] keeps it up:
//! the connection is served like any stream connection (`StreamSink::serve_link` in the server), with
//! RFC 5626 CRLF keep-alives so neither end idles it out, and reopened with back-off when it
//! closes or fails. Nothing here logs key material; refusals name the peer and the reason.
//!
//! While a link is up it re-reads the peer's key on chain every `[peers."DOMAIN"] recheck_secs`
//! and when its PSK expires, off the event loop (the directory blocks). A key revoked or changed
//! since the handshake closes the link at once, with every other connection proving that domain,
//! and cuts the domain off in the core ([`crate::core::Core::peer_key_lost`]); the cached PSK is
//! dropped, so the link only comes back through a handshake that proves the domain's key anew.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chaincall_handshake::{Established, HandshakeConfig, Initiator, LocalIdentity, Protocol};
use chaincall_identity::{
    DirectoryError, DomainName, IdentityKey, IdentityName, KeyDirectory, KeyStatus,
    PublicIdentityKey,
};
use chaincall_tls_psk::{TlsPskClient, TlsPskError, TlsPskStream, connect_with_handshake};
use hickory_resolver::TokioResolver;
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolveHosts, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::RData;
use rand_core::{OsRng, RngCore};
use tokio::net::TcpStream;
use tracing::{info, warn};

use crate::config::TlsPskSettings;
use crate::server::StreamSink;
use crate::tls::TlsSetupError;

/// The first wait before reopening a link that closed or failed; doubled per failure.
pub const MIN_BACKOFF: Duration = Duration::from_millis(200);
/// The longest wait between attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// How often a link that is up re-reads the peer's key on chain, unless `[peers."DOMAIN"]
/// recheck_secs` says otherwise.
pub const RECHECK: Duration = Duration::from_secs(60);
/// How often a link sends a CRLF keep-alive (RFC 5626 §3.5.1), well inside `[limits]
/// tcp_idle_secs`' default of 300 s on either end.
pub const KEEPALIVE: Duration = Duration::from_secs(30);

/// Who this sipd is on its links: its identity and key (`[tls_psk] identity`, `key_file`), where
/// peers' keys are looked up, and the TLS and handshake settings. Cheap to clone.
#[derive(Clone)]
pub struct LinkIdentity {
    local: LocalIdentity,
    directory: Arc<dyn KeyDirectory + Send + Sync>,
    tls: TlsPskClient,
    handshake: HandshakeConfig,
}

impl std::fmt::Debug for LinkIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkIdentity")
            .field("name", self.local.name())
            .finish_non_exhaustive()
    }
}

impl LinkIdentity {
    /// `settings`' identity proven with `key`; peers looked up in `directory` (the same verified
    /// keystore directory phones are looked up in, [`crate::tls::key_directory_on_chain`]).
    pub fn new(
        settings: &TlsPskSettings,
        key: IdentityKey,
        directory: Arc<dyn KeyDirectory + Send + Sync>,
    ) -> Result<Self, TlsSetupError> {
        Ok(LinkIdentity {
            local: LocalIdentity::new(settings.identity_name(), Arc::new(key)),
            directory,
            tls: TlsPskClient::new(&settings.tls_config()?)?,
            handshake: settings.handshake_config(),
        })
    }
}

/// Why a link could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LinkError {
    /// `addr` did not resolve to any address.
    #[error("cannot resolve {0}")]
    Resolve(String),
    /// The TCP connection failed.
    #[error("cannot connect to {addr}")]
    Connect {
        /// The address tried.
        addr: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The peer's key could not be looked up, or is not approved.
    #[error("the peer's key")]
    Key(#[source] chaincall_handshake::HandshakeError),
    /// The handshake or TLS failed (the peer refused our key, or its own proof failed).
    #[error("TLS-PSK")]
    Tls(#[from] TlsPskError),
}

/// Where a peer's listener is found by DNS SRV (RFC 3263 §4.2): the resolver (built once, so
/// its cache keeps each answer for its TTL) and the name server it asks, for messages.
#[derive(Clone)]
struct Srv {
    resolver: TokioResolver,
    server: String,
}

impl std::fmt::Debug for Srv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Srv").field("server", &self.server).finish()
    }
}

/// The SRV services tried for a link, in order: TLS first (the link is TLS-PSK), then any SIP
/// over TCP (RFC 3263 §4.2).
const SRV_SERVICES: [&str; 2] = ["_sips._tcp", "_sip._tcp"];

/// One link to the sipd that proves `peer`, at `addr` (or found by DNS SRV).
#[derive(Debug)]
pub struct Link {
    peer: IdentityName,
    addr: String,
    /// Set: `addr` is unused, the listener is looked up by SRV.
    srv: Option<Srv>,
    me: LinkIdentity,
    /// The last handshake's result, reused for reconnects while its PSK lives.
    cached: Option<Established>,
    /// How often the peer's key is re-read while the link is up.
    recheck: Duration,
}

impl Link {
    /// A link to `peer` (checked against its on-chain key) at `addr` (`HOST:PORT`).
    pub fn new(peer: DomainName, addr: String, me: LinkIdentity) -> Self {
        Link {
            peer: peer.into(),
            addr,
            me,
            cached: None,
            recheck: RECHECK,
            srv: None,
        }
    }

    /// Finds the peer's listener by DNS SRV under its domain name instead of `addr`
    /// (`[peers."DOMAIN"] srv = true`), asking `server` (`IP:PORT`), or the system's name servers
    /// (`/etc/resolv.conf`) when `None`.
    pub fn by_srv(mut self, server: Option<SocketAddr>) -> Result<Self, LinkError> {
        let failed = |e: hickory_resolver::net::NetError| {
            LinkError::Resolve(format!("DNS resolver for {}: {e}", self.peer))
        };
        let builder = match server {
            Some(at) => {
                let connection = |mut c: ConnectionConfig| {
                    c.port = at.port();
                    c
                };
                let ns = NameServerConfig::new(
                    at.ip(),
                    true,
                    vec![
                        connection(ConnectionConfig::udp()),
                        connection(ConnectionConfig::tcp()),
                    ],
                );
                let mut b = TokioResolver::builder_with_config(
                    ResolverConfig::from_name_servers(vec![ns]),
                    TokioRuntimeProvider::default(),
                );
                // Only that server answers: not this host's /etc/hosts either.
                b.options_mut().use_hosts_file = ResolveHosts::Never;
                b
            }
            None => TokioResolver::builder_tokio().map_err(failed)?,
        };
        let resolver = builder.build().map_err(failed)?;
        let server = server.map_or_else(|| "the system's name servers".into(), |s| s.to_string());
        self.srv = Some(Srv { resolver, server });
        Ok(self)
    }

    /// Re-reads the peer's key every `every` (at least 1 s) while the link is up, instead of
    /// [`RECHECK`].
    pub fn recheck_every(mut self, every: Duration) -> Self {
        self.recheck = every.max(Duration::from_secs(1));
        self
    }

    /// The peer's name.
    pub fn peer(&self) -> &IdentityName {
        &self.peer
    }

    /// Opens one connection: TLS with the cached PSK while it lives, else (or when the peer no
    /// longer knows that PSK) a new handshake first. Returns the stream and the peer's address.
    pub async fn connect(&mut self) -> Result<(TlsPskStream<TcpStream>, SocketAddr), LinkError> {
        if let Some(e) = self.cached.take().filter(|e| !e.is_expired(Instant::now())) {
            let (tcp, remote) = match self.tcp().await {
                Ok(c) => c,
                Err(err) => {
                    // The peer is unreachable, not refusing the PSK: keep it for the next try.
                    self.cached = Some(e);
                    return Err(err);
                }
            };
            match self.me.tls.connect_established(tcp, &e).await {
                Ok(tls) => {
                    self.cached = Some(e);
                    return Ok((tls, remote));
                }
                // The peer may have restarted (its PSK store is in memory): handshake afresh.
                Err(err) => {
                    info!(peer = %self.peer, reason = %chaincall_io::ErrorChain(&err), "cached PSK refused; running the handshake")
                }
            }
        }
        let (me, peer) = (self.me.clone(), self.peer.clone());
        // The directory reads the chain and blocks: off the runtime's workers.
        let initiator = tokio::task::spawn_blocking(move || {
            Initiator::new(
                me.handshake.clone(),
                me.local.clone(),
                peer,
                Protocol::Sts,
                &*me.directory,
                Instant::now(),
            )
        })
        .await
        .map_err(|e| LinkError::Resolve(format!("key look-up task: {e}")))?
        .map_err(|e| {
            // Not cached for `key_cache_secs`: a peer published (or approved) after we started
            // links at the next attempt, not an hour later.
            self.me.directory.forget(&self.peer);
            LinkError::Key(e)
        })?;
        let (tcp, remote) = self.tcp().await?;
        let timeout = self.me.handshake.handshake_timeout;
        match connect_with_handshake(tcp, initiator, timeout, &self.me.tls).await {
            Ok((tls, established)) => {
                info!(peer = %self.peer, %remote, identity = %established.identity, "sipd-to-sipd link: handshake done");
                self.cached = Some(established);
                Ok((tls, remote))
            }
            Err(e) => {
                // A failed proof may come from a key rotated since we cached it: read it afresh
                // next time.
                self.me.directory.forget(&self.peer);
                Err(e.into())
            }
        }
    }

    /// A TCP connection to `addr`, or to the SRV targets (its first address that answers).
    async fn tcp(&self) -> Result<(TcpStream, SocketAddr), LinkError> {
        let addrs: Vec<SocketAddr> = match &self.srv {
            Some(srv) => srv_targets(srv, &self.peer.to_string()).await?,
            None => tokio::net::lookup_host(&self.addr)
                .await
                .map_err(|_| LinkError::Resolve(self.addr.clone()))?
                .collect(),
        };
        let mut last = None;
        for a in addrs {
            match TcpStream::connect(a).await {
                Ok(s) => {
                    let _ = s.set_nodelay(true);
                    return Ok((s, a));
                }
                Err(e) => last = Some(e),
            }
        }
        Err(match last {
            Some(source) => LinkError::Connect {
                addr: self.addr.clone(),
                source,
            },
            None => LinkError::Resolve(self.addr.clone()),
        })
    }

    /// Keeps the link up until the server behind `sink` stops: connect, serve, and on loss or
    /// failure wait ([`MIN_BACKOFF`] doubling to [`MAX_BACKOFF`]) and connect again.
    pub async fn run(mut self, sink: StreamSink) {
        let mut backoff = MIN_BACKOFF;
        // The peer's key was found revoked or changed, and no handshake has proved it since.
        let mut cut_off = false;
        loop {
            let attempt = tokio::select! {
                r = self.connect() => r,
                _ = sink.closed() => return,
            };
            match attempt {
                Ok((tls, remote)) => {
                    backoff = MIN_BACKOFF;
                    info!(peer = %self.peer, %remote, "sipd-to-sipd link up");
                    if cut_off {
                        // No cached PSK since: this connection's handshake read the key anew.
                        cut_off = false;
                        sink.peer_key_proved(self.peer.to_string()).await;
                    }
                    let Some(proved) = self.cached.as_ref() else {
                        continue;
                    };
                    let watch = key_lost(
                        self.me.directory.clone(),
                        self.peer.clone(),
                        proved.peer_key.clone(),
                        Some(proved.expires_at()),
                        self.recheck,
                    );
                    let serve = sink.serve_link(tls, remote, self.peer.to_string(), KEEPALIVE);
                    tokio::pin!(serve);
                    let lost = tokio::select! {
                        _ = &mut serve => None,
                        why = watch => Some(why),
                    };
                    match lost {
                        None => {
                            info!(peer = %self.peer, %remote, "sipd-to-sipd link closed; reconnecting")
                        }
                        Some(why) => {
                            warn!(peer = %self.peer, %remote, why, "the peer domain's on-chain key is no longer the one the link proved: closing the link");
                            sink.metrics().peer_links_key_lost.inc();
                            // Only a new handshake, which reads the key again, reopens it.
                            self.cached = None;
                            cut_off = true;
                            sink.peer_key_lost(self.peer.to_string()).await;
                            serve.await;
                        }
                    }
                }
                Err(e) => {
                    warn!(peer = %self.peer, addr = %self.addr, reason = %chaincall_io::ErrorChain(&e), "sipd-to-sipd link not opened");
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = sink.closed() => return,
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }
}

/// Waits until `peer`'s key on chain is no longer `proved` and says how: read every `every` and
/// when the PSK expires (`psk_expires`, if given), on a blocking thread, past the directory's
/// cache. A directory that cannot answer (node down) keeps the link: an outage is not a
/// revocation. The accepting side watches a peer's link with it too ([`crate::tls`]).
pub(crate) async fn key_lost(
    directory: Arc<dyn KeyDirectory + Send + Sync>,
    peer: IdentityName,
    proved: PublicIdentityKey,
    psk_expires: Option<Instant>,
    every: Duration,
) -> &'static str {
    let mut renewal = psk_expires;
    loop {
        let tick = Instant::now() + every;
        // The PSK's expiry, when it comes first, is a re-check of its own: the PSK is renewed
        // (the key read again by a handshake) only when the link reconnects.
        let at = match renewal.take() {
            Some(r) if r < tick => r,
            r => {
                renewal = r;
                tick
            }
        };
        tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await;
        let (dir, name) = (directory.clone(), peer.clone());
        let read = tokio::task::spawn_blocking(move || {
            dir.forget(&name);
            dir.lookup(&name)
        })
        .await;
        let entry = match read {
            Ok(Ok(entry)) => entry,
            Ok(Err(DirectoryError::NotApproved { .. })) => return "not approved in the keystore",
            Ok(Err(e)) => {
                warn!(%peer, reason = %chaincall_io::ErrorChain(&e), "cannot re-check the peer domain's key; the link stays up");
                continue;
            }
            Err(e) => {
                warn!(%peer, error = %e, "key re-check task failed; the link stays up");
                continue;
            }
        };
        match (entry.status, entry.key) {
            (KeyStatus::Approved, Some(key)) if key == proved => {}
            (KeyStatus::Approved, _) => return "its key changed on chain",
            (KeyStatus::Revoked, _) => return "its key was revoked on chain",
            _ => return "not approved in the keystore",
        }
    }
}

/// The addresses of `domain`'s SIP listener by DNS SRV (RFC 3263 §4.2): the first of
/// [`SRV_SERVICES`] with records, its targets in RFC 2782 order, each target's A and AAAA
/// addresses. The resolver keeps each answer for its TTL. None: a [`LinkError::Resolve`] naming
/// what was asked and what came back.
async fn srv_targets(srv: &Srv, domain: &str) -> Result<Vec<SocketAddr>, LinkError> {
    let mut tried = Vec::new();
    for service in SRV_SERVICES {
        let name = format!("{service}.{domain}.");
        let lookup = match srv.resolver.srv_lookup(name.as_str()).await {
            Ok(l) => l,
            Err(e) => {
                tried.push(format!("{name}: {e}"));
                continue;
            }
        };
        let records: Vec<(u16, u16, (String, u16))> = lookup
            .answers()
            .iter()
            .filter_map(|r| match &r.data {
                RData::SRV(s) => Some((s.priority, s.weight, (s.target.to_ascii(), s.port))),
                _ => None,
            })
            .collect();
        // RFC 2782: a lone target "." says the service is decidedly not offered there.
        if let [(_, _, (target, _))] = records.as_slice()
            && target == "."
        {
            tried.push(format!("{name}: the service is not offered (target \".\")"));
            continue;
        }
        let mut addrs = Vec::new();
        for (target, port) in rfc2782_order(records, |n| OsRng.next_u32() % n) {
            match srv.resolver.lookup_ip(target.as_str()).await {
                Ok(ips) => addrs.extend(ips.iter().map(|ip| SocketAddr::new(ip, port))),
                Err(e) => tried.push(format!("{target}: {e}")),
            }
        }
        if !addrs.is_empty() {
            info!(peer = %domain, srv = %name, ?addrs, "sipd-to-sipd link: found by DNS SRV");
            return Ok(addrs);
        }
    }
    Err(LinkError::Resolve(format!(
        "{domain} by DNS SRV (asking {}): {}",
        srv.server,
        tried.join("; ")
    )))
}

/// RFC 2782's order of SRV targets `(priority, weight, target)`: lowest priority first; within a
/// priority, each next one drawn with a chance proportional to its weight (zero-weight ones only
/// when nothing else is left to draw, as the RFC's "weight 0 first, running sums" selection
/// gives them). `below(n)` draws uniformly from `0..n` (`n` ≥ 1).
fn rfc2782_order<T>(mut records: Vec<(u16, u16, T)>, mut below: impl FnMut(u32) -> u32) -> Vec<T> {
    records.sort_by_key(|(priority, _, _)| *priority);
    let mut out = Vec::with_capacity(records.len());
    while !records.is_empty() {
        let priority = records[0].0;
        let same = records.iter().take_while(|r| r.0 == priority).count();
        let mut group: Vec<(u16, u16, T)> = records.drain(..same).collect();
        // Zero weights at the front, so a draw of 0 picks them (RFC 2782's selection).
        group.sort_by_key(|(_, weight, _)| *weight != 0);
        while !group.is_empty() {
            let total: u32 = group.iter().map(|(_, w, _)| u32::from(*w)).sum();
            let pick = below(total + 1);
            let mut sum = 0;
            let i = group
                .iter()
                .position(|(_, w, _)| {
                    sum += u32::from(*w);
                    sum >= pick
                })
                .unwrap_or(0);
            out.push(group.remove(i).2);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::rfc2782_order;

    #[test]
    fn srv_targets_go_by_priority_then_by_weight() {
        let records = vec![
            (20, 0, "backup"),
            (10, 60, "a"),
            (10, 40, "b"),
            (10, 0, "z"),
        ];
        // Draws at the top of their range: the last by running sums wins each round.
        assert_eq!(
            rfc2782_order(records.clone(), |n| n - 1),
            ["b", "a", "z", "backup"]
        );
        // Draws of 0: the zero-weight one, then the first of the rest, each round.
        assert_eq!(rfc2782_order(records, |_| 0), ["z", "a", "b", "backup"]);
        // Weights split the draws: of 101 draws (0..=100) for the first place, those up to 60
        // pick a, the rest b (z only at 0).
        let firsts: Vec<&str> = (0..=100)
            .map(|d| rfc2782_order(vec![(1, 0, "z"), (1, 60, "a"), (1, 40, "b")], |_| d)[0])
            .collect();
        assert_eq!(firsts.iter().filter(|f| **f == "z").count(), 1);
        assert_eq!(firsts.iter().filter(|f| **f == "a").count(), 60);
        assert_eq!(firsts.iter().filter(|f| **f == "b").count(), 40);
    }
}
