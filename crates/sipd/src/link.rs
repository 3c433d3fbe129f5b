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

/// One link to the sipd that proves `peer`, at `addr`.
#[derive(Debug)]
pub struct Link {
    peer: IdentityName,
    addr: String,
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
        }
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

    /// A TCP connection to `addr` (its first address that answers).
    async fn tcp(&self) -> Result<(TcpStream, SocketAddr), LinkError> {
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host(&self.addr)
            .await
            .map_err(|_| LinkError::Resolve(self.addr.clone()))?
            .collect();
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
                        proved.expires_at(),
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
/// when the PSK expires (`psk_expires`), on a blocking thread, past the directory's cache. A
/// directory that cannot answer (node down) keeps the link: an outage is not a revocation.
async fn key_lost(
    directory: Arc<dyn KeyDirectory + Send + Sync>,
    peer: IdentityName,
    proved: PublicIdentityKey,
    psk_expires: Instant,
    every: Duration,
) -> &'static str {
    let mut renewal = Some(psk_expires);
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
