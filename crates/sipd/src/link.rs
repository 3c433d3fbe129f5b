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

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chaincall_handshake::{Established, HandshakeConfig, Initiator, LocalIdentity, Protocol};
use chaincall_identity::{DomainName, IdentityKey, IdentityName, KeyDirectory};
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
}

impl Link {
    /// A link to `peer` (checked against its on-chain key) at `addr` (`HOST:PORT`).
    pub fn new(peer: DomainName, addr: String, me: LinkIdentity) -> Self {
        Link {
            peer: peer.into(),
            addr,
            me,
            cached: None,
        }
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
        loop {
            let attempt = tokio::select! {
                r = self.connect() => r,
                _ = sink.closed() => return,
            };
            match attempt {
                Ok((tls, remote)) => {
                    backoff = MIN_BACKOFF;
                    info!(peer = %self.peer, %remote, "sipd-to-sipd link up");
                    sink.serve_link(tls, remote, self.peer.to_string(), KEEPALIVE)
                        .await;
                    info!(peer = %self.peer, %remote, "sipd-to-sipd link closed; reconnecting");
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
