//! The tokio shell: sockets, clock and tasks around [`Core`].
//!
//! One task owns the core and waits for a message, the next deadline, or shutdown; UDP receive
//! tasks and one task per stream connection feed it through a bounded channel. Subscriber
//! look-ups run in their own tasks and come back through the same channel, so a slow database
//! never holds up the loop (the core parks the requests that wait, see [`crate::core`]). Stream transports
//! accept any `AsyncRead + AsyncWrite` through [`StreamSink::attach`] (TCP) and
//! [`StreamSink::attach_tls`] (the TLS-PSK transport of [`crate::tls`]: accept, handshake, TLS, then
//! attach).

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use chaincall_io::{Output, Transmit};
use chaincall_sip::framing::{Frame, StreamFramer};
use chaincall_sip::message::ParseLimits;
use rand_core::{OsRng, RngCore};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{Semaphore, mpsc};
use tracing::{debug, error, info, warn};

use chaincall_identity::{DirectoryEntry, DirectoryError, IdentityName, KeyDirectory};
use chaincall_relay::{NgClient, NgClientConfig, NgError};
use zeroize::Zeroizing;

use crate::cluster::ClusterKeys;
use crate::config::{AuthMode, Config, ConfigError, Listen, ListenTransport};
use crate::config::{LocationBackend, RelayMode, VerifyMode};
use crate::core::{Core, Need, StreamKind, Transport};
use crate::db::{BoxFuture, CredentialStore, Db, DbError, Subscriber};
use crate::link::{Link, LinkIdentity};
use crate::location::postgres::PgLocation;
use crate::location::{LocationError, LocationStore, RegisterAnswer, StoredBinding};
use crate::metrics::Metrics;

/// Server start-up failures.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// Bad configuration.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A socket could not be bound.
    #[error("cannot listen on {what} {addr}")]
    Bind {
        /// What was to listen there: `udp`, `tcp`, `tls`, `metrics http` or `cluster`.
        what: &'static str,
        /// The address.
        addr: SocketAddr,
        /// The error.
        source: std::io::Error,
    },
    /// The database could not be opened.
    #[error(transparent)]
    Db(#[from] DbError),
    /// The TLS-PSK transport could not be set up.
    #[error("cannot set up TLS-PSK")]
    Tls(#[from] crate::tls::TlsSetupError),
    /// The PostgreSQL location could not be opened (its URL named, password redacted).
    #[error(transparent)]
    Location(#[from] LocationError),
    /// The cluster's node links could not be set up (`[cluster]`).
    #[error(transparent)]
    Cluster(#[from] crate::cluster::ClusterError),
}

enum Ev {
    Msg {
        data: Vec<u8>,
        src: SocketAddr,
        transport: Transport,
    },
    StreamUp {
        peer: SocketAddr,
        kind: StreamKind,
        identity: Option<String>,
        /// The cluster node at the other end of a node link (`[cluster]`).
        node: Option<String>,
        tx: mpsc::Sender<Vec<u8>>,
    },
    StreamDown {
        peer: SocketAddr,
    },
    /// A link found the peer domain's on-chain key revoked or changed: close its connections.
    PeerKeyLost {
        domain: String,
    },
    /// A link's handshake proved the peer domain's key afresh.
    PeerKeyProved {
        domain: String,
    },
    /// A subscriber look-up finished (`None`: it failed or timed out).
    Looked {
        username: String,
        domain: String,
        found: Option<Option<Subscriber>>,
    },
    /// An AOR's stored bindings were read (`None`: the read failed or timed out).
    Bindings {
        username: String,
        domain: String,
        found: Option<Vec<StoredBinding>>,
    },
    /// A REGISTER's write finished (`Err`: the database failed or timed out).
    Registered {
        ticket: u64,
        answer: RegisterAnswer,
    },
    /// A caller's key was looked up (`Err`: the chain could not answer in time).
    CallerKey {
        name: IdentityName,
        found: Result<DirectoryEntry, DirectoryError>,
    },
    /// The media relay answered an `offer` (`Err`: why it failed).
    RelayOffered {
        ticket: u64,
        sdp: Result<Zeroizing<String>, String>,
    },
    /// The media relay answered an `answer`.
    RelayAnswered {
        ticket: u64,
        sdp: Result<Zeroizing<String>, String>,
    },
    /// The media relay answered a `delete`.
    RelayDeleted {
        call_id: String,
        result: Result<(), String>,
    },
}

/// Hands stream connections (TCP, TLS-PSK) to a running server.
#[derive(Clone)]
pub struct StreamSink {
    tx: mpsc::Sender<Ev>,
    limits: ParseLimits,
    idle: Duration,
    slots: Arc<Semaphore>,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for StreamSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamSink")
            .field("idle", &self.idle)
            .finish()
    }
}

impl StreamSink {
    /// Serves SIP over an established stream from `peer` until it closes, errs, or idles out.
    /// Connections beyond the configured maximum are closed at once.
    /// The stream is taken to be plain TCP (Via `SIP/2.0/TCP`); use [`StreamSink::attach_tls`] for
    /// TLS.
    pub fn attach<S>(&self, stream: S, peer: SocketAddr)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        self.attach_kind(stream, peer, StreamKind::Tcp, None);
    }

    /// Like [`StreamSink::attach`] for a TLS stream: requests the server sends over it carry Via
    /// `SIP/2.0/TLS` and a Record-Route with `transport=tls` (RFC 3261 §18.2.1, §26.2).
    pub fn attach_tls<S>(&self, stream: S, peer: SocketAddr)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        self.attach_kind(stream, peer, StreamKind::Tls, None);
    }

    /// Like [`StreamSink::attach_tls`] for a connection whose handshake authenticated `identity`
    /// (its on-chain name): a phone number may then REGISTER only itself over it.
    pub fn attach_tls_as<S>(&self, stream: S, peer: SocketAddr, identity: Option<String>)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        self.attach_kind(stream, peer, StreamKind::Tls, identity);
    }

    /// Serves a sipd-to-sipd link ([`crate::link`]) to `peer`, proven to be `identity` by its
    /// handshake, until it closes, sending a CRLF keep-alive every `keepalive`. Returns at once
    /// when the stream connection limit is reached.
    pub(crate) async fn serve_link<S>(
        &self,
        stream: S,
        peer: SocketAddr,
        identity: String,
        keepalive: Duration,
    ) where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let who = Who {
            identity: Some(identity),
            node: None,
        };
        self.serve_held(stream, peer, who, Some(keepalive)).await;
    }

    /// Serves a peer domain's sipd-to-sipd link accepted on our `tls:` listener, proven to be
    /// `identity` by its handshake, in the caller's task until it closes (the peer pings it).
    /// Returns at once when the stream connection limit is reached.
    pub(crate) async fn serve_accepted_link<S>(&self, stream: S, peer: SocketAddr, identity: String)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let who = Who {
            identity: Some(identity),
            node: None,
        };
        self.serve_held(stream, peer, who, None).await;
    }

    /// Serves a link to cluster node `node` ([`crate::cluster`]) at `peer` until it closes,
    /// sending a CRLF keep-alive every `keepalive` (the end that opened it pings).
    pub(crate) async fn serve_node_link<S>(
        &self,
        stream: S,
        peer: SocketAddr,
        node: String,
        keepalive: Option<Duration>,
    ) where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let who = Who {
            identity: None,
            node: Some(node),
        };
        self.serve_held(stream, peer, who, keepalive).await;
    }

    /// Serves a TLS link to `who` in the caller's task, within the connection limit (returns at
    /// once when it is reached).
    async fn serve_held<S>(
        &self,
        stream: S,
        peer: SocketAddr,
        who: Who,
        keepalive: Option<Duration>,
    ) where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let Ok(_permit) = self.slots.clone().try_acquire_owned() else {
            warn!(%peer, "too many stream connections; link not served");
            return;
        };
        let m = &self.metrics;
        m.connections.set(m.connections.get() + 1);
        serve_stream(stream, peer, StreamKind::Tls, who, keepalive, self).await;
        m.connections.set(m.connections.get() - 1);
    }

    /// The server's metrics (the TLS-PSK listener counts its refusals there).
    pub(crate) fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Tells the server that `domain`'s on-chain key was revoked or changed since a link's
    /// handshake proved it: every connection proving `domain` is closed, and the domain is cut
    /// off until [`StreamSink::peer_key_proved`].
    pub(crate) async fn peer_key_lost(&self, domain: String) {
        let _ = self.tx.send(Ev::PeerKeyLost { domain }).await;
    }

    /// Tells the server that a link's handshake proved `domain`'s on-chain key afresh.
    pub(crate) async fn peer_key_proved(&self, domain: String) {
        let _ = self.tx.send(Ev::PeerKeyProved { domain }).await;
    }

    /// Completes when the server this sink feeds has stopped.
    pub async fn closed(&self) {
        self.tx.closed().await;
    }

    /// The next connection on `listener` (`what` listener, for the log), with Nagle off; an
    /// accept error is logged and retried after 50 ms. `None` once the server has stopped.
    pub(crate) async fn accept(
        &self,
        listener: &TcpListener,
        what: &str,
    ) -> Option<(TcpStream, SocketAddr)> {
        loop {
            tokio::select! {
                r = listener.accept() => match r {
                    Ok((tcp, peer)) => {
                        let _ = tcp.set_nodelay(true);
                        return Some((tcp, peer));
                    }
                    Err(e) => {
                        warn!(error = %e, "{what} accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
                _ = self.closed() => return None,
            }
        }
    }

    fn attach_kind<S>(
        &self,
        stream: S,
        peer: SocketAddr,
        kind: StreamKind,
        identity: Option<String>,
    ) where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let Ok(permit) = self.slots.clone().try_acquire_owned() else {
            warn!(%peer, "too many stream connections; closing");
            return;
        };
        let sink = self.clone();
        tokio::spawn(async move {
            sink.metrics
                .connections
                .set(sink.metrics.connections.get() + 1);
            let who = Who {
                identity,
                node: None,
            };
            serve_stream(stream, peer, kind, who, None, &sink).await;
            sink.metrics
                .connections
                .set(sink.metrics.connections.get() - 1);
            drop(permit);
        });
    }
}

/// Who is at the other end of a stream connection, as its handshake proved.
struct Who {
    /// The on-chain identity (a phone's number, a peer domain).
    identity: Option<String>,
    /// The cluster node of a node link.
    node: Option<String>,
}

async fn serve_stream<S>(
    stream: S,
    peer: SocketAddr,
    kind: StreamKind,
    who: Who,
    keepalive: Option<Duration>,
    sink: &StreamSink,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut rd, mut wr) = tokio::io::split(stream);
    let (otx, mut orx) = mpsc::channel::<Vec<u8>>(256);
    if sink
        .tx
        .send(Ev::StreamUp {
            peer,
            kind,
            identity: who.identity,
            node: who.node,
            tx: otx.clone(),
        })
        .await
        .is_err()
    {
        return;
    }
    let writer = tokio::spawn(async move {
        // A link we opened pings (RFC 5626 §3.5.1) so that neither end idles it out.
        let mut ping =
            keepalive.map(|d| tokio::time::interval_at(tokio::time::Instant::now() + d, d));
        loop {
            let next = match ping.as_mut() {
                Some(p) => tokio::select! {
                    b = orx.recv() => b,
                    _ = p.tick() => Some(b"\r\n\r\n".to_vec()),
                },
                None => orx.recv().await,
            };
            // An empty write is the server closing the connection (`CLOSE`).
            let Some(b) = next.filter(|b| !b.is_empty()) else {
                break;
            };
            if wr.write_all(&b).await.is_err() {
                break;
            }
        }
        let _ = wr.shutdown().await;
    });
    let mut writer = writer;
    let mut writer_done = false;
    let mut framer = StreamFramer::new(sink.limits);
    let mut buf = vec![0u8; 16 * 1024];
    debug!(%peer, ?kind, "stream connection open");
    loop {
        let read = tokio::select! {
            r = tokio::time::timeout(sink.idle, rd.read(&mut buf)) => r,
            // The writer ended (closed by the server, or the peer stopped reading): so does the
            // connection.
            _ = &mut writer => {
                writer_done = true;
                debug!(%peer, "stream writer ended; closing connection");
                break;
            }
        };
        let n = match read {
            Err(_) => {
                info!(%peer, "idle stream connection closed");
                break;
            }
            Ok(Ok(0)) => break,
            Ok(Ok(n)) => n,
            Ok(Err(e)) => {
                debug!(%peer, error = %e, "stream read error");
                break;
            }
        };
        framer.push(&buf[..n]);
        loop {
            match framer.poll_frame() {
                Ok(Some(Frame::Message(data))) => {
                    if sink
                        .tx
                        .send(Ev::Msg {
                            data,
                            src: peer,
                            transport: Transport::Stream,
                        })
                        .await
                        .is_err()
                    {
                        break;
                    }
                }
                // RFC 5626 §3.5.1: answer a CRLFCRLF ping with a CRLF pong.
                Ok(Some(Frame::Ping)) => {
                    let _ = otx.try_send(b"\r\n".to_vec());
                }
                Ok(None) => break,
                Err(e) => {
                    warn!(%peer, error = %chaincall_io::ErrorChain(&e), "unframeable stream; closing connection");
                    let _ = sink.tx.send(Ev::StreamDown { peer }).await;
                    drop(otx);
                    let _ = writer.await;
                    return;
                }
            }
        }
    }
    let _ = sink.tx.send(Ev::StreamDown { peer }).await;
    drop(otx);
    if !writer_done {
        let _ = writer.await;
    }
}

/// A bound, not yet running server.
pub struct Server {
    core: Core,
    tx: mpsc::Sender<Ev>,
    rx: mpsc::Receiver<Ev>,
    sink: StreamSink,
    udp: Vec<Arc<UdpSocket>>,
    tcp: Vec<TcpListener>,
    tls: Vec<TcpListener>,
    psk: Option<chaincall_tls_psk::PskServer>,
    metrics_listener: Option<TcpListener>,
    db: Option<Arc<dyn CredentialStore>>,
    /// The stored location (`[location] backend = "postgres"`).
    location: Option<Arc<dyn LocationStore>>,
    /// Callers' keys for `[identity] verify`.
    caller_keys: Option<CallerKeys>,
    /// Who we are on sipd-to-sipd links (`[peers]`).
    links: Option<LinkIdentity>,
    /// The node-link listener, its TLS and our keys (`[cluster]`).
    cluster: Option<(TcpListener, chaincall_tls_psk::TlsPskServer, ClusterKeys)>,
    metrics: Arc<Metrics>,
    /// What `/readyz` checks beside the listeners: the keystore chain, the subscriber store.
    probes: Vec<(&'static str, Probe)>,
    cfg: Config,
    local: Vec<Listen>,
}

/// Where `[identity] verify` looks callers' keys up (a [`crate::keys::ChainKeyDirectory`]).
pub type CallerKeys = Arc<dyn KeyDirectory + Send + Sync>;

/// A dependency check for `/readyz`: `Ok` when it answers, else why not.
pub type Probe = Arc<dyn Fn() -> BoxFuture<'static, Result<(), String>> + Send + Sync>;

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("local", &self.local)
            .finish()
    }
}

impl Server {
    /// Binds every listener (port 0 picks a free port; the first bound address is advertised unless
    /// the config says otherwise) and opens the database. A `tls:` listener needs the `[tls_psk]`
    /// section: the PSK server is built from it (keystore over JSON-RPC; see
    /// [`crate::tls::connect_chain`] and [`crate::tls::psk_server_on_chain`]), and `/readyz`
    /// checks that chain. Needs tokio's multi-thread runtime when TLS-PSK is on.
    pub async fn bind(cfg: Config) -> Result<Server, ServeError> {
        let wants_tls = cfg
            .listen
            .iter()
            .any(|l| l.transport == ListenTransport::Tls);
        // `[identity] verify` without the chain it reads is refused here, before any connection.
        cfg.validate()?;
        let verify = cfg.identity.verify != VerifyMode::Off;
        let metrics = Arc::new(Metrics::default());
        let (psk, chain, caller_keys) = match (&cfg.tls_psk, wants_tls || verify) {
            (_, false) => (None, None, None),
            (Some(t), true) => {
                let chain = Arc::new(crate::tls::connect_chain(t).await?);
                let psk = match wants_tls {
                    true => Some(
                        crate::tls::psk_server_on_chain(t, chain.clone(), metrics.clone()).await?,
                    ),
                    false => None,
                };
                let keys = match verify {
                    true => Some(Arc::new(crate::tls::key_directory_on_chain(
                        t,
                        chain.clone(),
                        metrics.clone(),
                    )?) as CallerKeys),
                    false => None,
                };
                (psk, Some(crate::tls::chain_probe(chain)), keys)
            }
            (None, true) => {
                return Err(ConfigError::Invalid(
                    "a tls: listener needs the [tls_psk] section".into(),
                )
                .into());
            }
        };
        // Who we are on the `[peers]` links: our domain key; peers' keys read from the keystore
        // as phones' are.
        let links = match &cfg.tls_psk {
            Some(t) if !cfg.peers.is_empty() => {
                let chain = Arc::new(crate::tls::connect_chain(t).await?);
                let key = crate::tls::load_identity_key(&t.key_file)?;
                let dir = crate::tls::key_directory_on_chain(t, chain, metrics.clone())?;
                Some(LinkIdentity::new(t, key, Arc::new(dir))?)
            }
            _ => None,
        };
        let mut server = Self::bind_inner(cfg, psk, metrics).await?;
        server.caller_keys = caller_keys;
        server.links = links;
        if let Some(probe) = chain {
            server.add_readiness_probe("chain", probe);
        }
        Ok(server)
    }

    /// Like [`Server::bind`], with a PSK server built by the caller (e.g. over an embedded chain, see
    /// [`crate::tls::psk_server_on_chain`], given the same `metrics`) for the `tls:` listeners;
    /// `[tls_psk]` is not read, and `/readyz` checks no chain unless
    /// [`Server::add_readiness_probe`] adds one.
    pub async fn bind_with_tls_psk(
        cfg: Config,
        psk: chaincall_tls_psk::PskServer,
        metrics: Arc<Metrics>,
    ) -> Result<Server, ServeError> {
        Self::bind_inner(cfg, Some(psk), metrics).await
    }

    async fn bind_inner(
        mut cfg: Config,
        psk: Option<chaincall_tls_psk::PskServer>,
        metrics: Arc<Metrics>,
    ) -> Result<Server, ServeError> {
        cfg.validate()?;
        let mut udp = Vec::new();
        let mut tcp = Vec::new();
        let mut tls = Vec::new();
        let mut local = Vec::new();
        for l in cfg.listen.clone() {
            let a = l.addr;
            match l.transport {
                ListenTransport::Udp => {
                    let bind = |source| ServeError::Bind {
                        what: "udp",
                        addr: a,
                        source,
                    };
                    let s = UdpSocket::bind(a).await.map_err(bind)?;
                    let bound = s.local_addr().map_err(bind)?;
                    local.push(Listen::udp(bound));
                    udp.push(Arc::new(s));
                }
                ListenTransport::Tcp => {
                    let (s, bound) = bind_stream_listener("tcp", a).await?;
                    local.push(Listen::tcp(bound));
                    tcp.push(s);
                }
                ListenTransport::Tls => {
                    let (s, bound) = bind_stream_listener("tls", a).await?;
                    local.push(Listen::tls(bound));
                    tls.push(s);
                }
            }
        }
        cfg.advertise.get_or_insert(local[0].addr);
        // The other nodes' links (`[cluster]`); the core takes the bound address for one of its
        // own, as the forwarded requests' Route names it.
        let cluster = match (&cfg.cluster.listen, &cfg.cluster.secret_file) {
            (Some(addr), Some(secret)) if cfg.cluster.enabled() => {
                let keys = ClusterKeys::load(&cfg.location.node_id, secret)?;
                let tls = keys.server(cfg.cluster.nodes.keys())?;
                let l = crate::cluster::bind(*addr).await?;
                let bound = l.local_addr().map_err(|source| ServeError::Bind {
                    what: "cluster",
                    addr: *addr,
                    source,
                })?;
                cfg.cluster.listen = Some(bound);
                Some((l, tls, keys))
            }
            _ => None,
        };
        // The core recognizes requests addressed to any bound listener (ports chosen by the OS).
        cfg.listen = local.clone();
        let metrics_listener = match cfg.metrics_listen {
            None => None,
            Some(a) => Some(
                TcpListener::bind(a)
                    .await
                    .map_err(|source| ServeError::Bind {
                        what: "metrics http",
                        addr: a,
                        source,
                    })?,
            ),
        };
        let db = if cfg.auth.mode == AuthMode::Digest {
            let db = Db::connect(&cfg.auth.database).await?;
            if cfg.auth.create_schema {
                db.create_schema().await?;
            }
            Some(Arc::new(db) as Arc<dyn CredentialStore>)
        } else {
            None
        };
        let location = match cfg.location.backend {
            LocationBackend::Memory => None,
            LocationBackend::Postgres => {
                Some(Arc::new(PgLocation::connect(&cfg.location.database).await?)
                    as Arc<dyn LocationStore>)
            }
        };
        let mut secret = [0u8; 32];
        OsRng.fill_bytes(&mut secret);
        let mut core = Core::new(&cfg, secret, metrics.clone(), Instant::now())?;
        if let Some((_, _, keys)) = &cluster {
            core.set_flow_token_key(&keys.flow_token_key());
        }
        let (tx, rx) = mpsc::channel::<Ev>(16_384);
        let sink = StreamSink {
            tx: tx.clone(),
            limits: core.limits(),
            idle: cfg.limits.tcp_idle.max(Duration::from_secs(1)),
            slots: Arc::new(Semaphore::new(cfg.limits.max_tcp_connections.max(1))),
            metrics: metrics.clone(),
        };
        Ok(Server {
            core,
            tx,
            rx,
            sink,
            udp,
            tcp,
            tls,
            psk,
            metrics_listener,
            db,
            location,
            caller_keys: None,
            links: None,
            cluster,
            metrics,
            probes: Vec::new(),
            cfg,
            local,
        })
    }

    /// Makes `/readyz` check `probe` too (named `name` in its answer).
    pub fn add_readiness_probe(&mut self, name: &'static str, probe: Probe) {
        self.probes.push((name, probe));
    }

    /// The bound listeners.
    pub fn local(&self) -> &[Listen] {
        &self.local
    }

    /// The bound node-link listener (`[cluster] listen`), in a cluster.
    pub fn cluster_addr(&self) -> Option<SocketAddr> {
        self.cluster
            .as_ref()
            .and_then(|(l, _, _)| l.local_addr().ok())
    }

    /// The bound address of the Prometheus endpoint, if `metrics_listen` is set.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listener
            .as_ref()
            .and_then(|l| l.local_addr().ok())
    }

    /// The metrics.
    pub fn metrics(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    /// Reads subscribers from `store` instead of the `[auth] database` (used with digest auth).
    pub fn set_credential_store(&mut self, store: Arc<dyn CredentialStore>) {
        self.db = Some(store);
    }

    /// Keeps registrations in `store` instead of the `[location] database` (used with
    /// `backend = "postgres"`; a failing or slow store in tests).
    pub fn set_location_store(&mut self, store: Arc<dyn LocationStore>) {
        self.location = Some(store);
    }

    /// Looks callers' keys up in `keys` for `[identity] verify` (what [`Server::bind`] builds
    /// from `[tls_psk]`; a directory over an embedded chain in tests).
    pub fn set_caller_keys(&mut self, keys: CallerKeys) {
        self.caller_keys = Some(keys);
    }

    /// Opens the `[peers]` links as `identity` (what [`Server::bind`] builds from `[tls_psk]`;
    /// one over an embedded chain in tests).
    pub fn set_link_identity(&mut self, identity: LinkIdentity) {
        self.links = Some(identity);
    }

    /// Runs until `shutdown` completes.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let Server {
            mut core,
            tx,
            mut rx,
            sink,
            udp,
            tcp,
            tls,
            psk,
            metrics_listener,
            db,
            location,
            caller_keys,
            links,
            cluster,
            metrics,
            mut probes,
            cfg,
            local,
        } = self;
        let mut tasks = Vec::new();
        for s in &udp {
            let s = s.clone();
            let tx = tx.clone();
            let max = cfg.limits.max_message_size;
            tasks.push(tokio::spawn(async move {
                let mut buf = vec![0u8; 65_536];
                loop {
                    match s.recv_from(&mut buf).await {
                        Ok((n, src)) => {
                            if n > max {
                                debug!(%src, n, "oversized datagram dropped");
                                continue;
                            }
                            let ev = Ev::Msg {
                                data: buf[..n].to_vec(),
                                src,
                                transport: Transport::Udp,
                            };
                            if tx.try_send(ev).is_err() {
                                debug!(%src, "overloaded: datagram dropped");
                            }
                        }
                        Err(e) => debug!(error = %e, "udp receive error"),
                    }
                }
            }));
        }
        for l in tcp {
            let sink = sink.clone();
            tasks.push(tokio::spawn(async move {
                while let Some((stream, peer)) = sink.accept(&l, "TCP").await {
                    sink.attach(stream, peer);
                }
            }));
        }
        if let Some(psk) = psk {
            for l in tls {
                tasks.push(tokio::spawn(crate::tls::serve_tls_psk(
                    l,
                    psk.clone(),
                    sink.clone(),
                    crate::tls::peer_rechecks(&cfg),
                )));
            }
        }
        // One persistent link per peer domain (docs/trapezoid.md).
        for (domain, peer) in &cfg.peers {
            match (&links, domain.parse()) {
                (Some(me), Ok(name)) => {
                    let link =
                        Link::new(name, peer.addr.clone(), me.clone()).recheck_every(peer.recheck);
                    let link = match peer.srv {
                        true => link.by_srv(peer.dns_server),
                        false => Ok(link),
                    };
                    match link {
                        Ok(link) => tasks.push(tokio::spawn(link.run(sink.clone()))),
                        Err(e) => {
                            error!(peer = %domain, reason = %chaincall_io::ErrorChain(&e), "the peer is not linked")
                        }
                    }
                }
                _ => warn!(peer = %domain, "no link identity: the peer is not linked"),
            }
        }
        // The other nodes of the domain (`[cluster]`): their links in, ours out to each.
        if let Some((l, tls, keys)) = cluster {
            tasks.push(tokio::spawn(crate::cluster::accept_links(
                l,
                tls,
                sink.clone(),
            )));
            for (node, addr) in &cfg.cluster.nodes {
                let link =
                    crate::cluster::run_link(keys.clone(), node.clone(), *addr, sink.clone());
                tasks.push(tokio::spawn(link));
            }
        }
        if let Some(db) = &db {
            let db = db.clone();
            probes.push((
                "database",
                Arc::new(move || {
                    let db = db.clone();
                    // Not the driver's error: it may quote the database URL and its password.
                    let down = |_| "the subscriber database does not answer".into();
                    Box::pin(async move { db.ping().await.map_err(down) })
                }),
            ));
        }
        if let Some(location) = &location {
            let location = location.clone();
            probes.push((
                "location",
                Arc::new(move || {
                    let location = location.clone();
                    // Not the driver's error: it may quote the database URL and its password.
                    let down = |_| "the location database does not answer".into();
                    Box::pin(async move { location.ping().await.map_err(down) })
                }),
            ));
        }
        let relay = media_relay(&cfg, &mut probes);
        // Every listener is bound (bind did that) and served from here on; the tasks end with
        // `run`, and so does `/readyz`.
        if let Some(l) = metrics_listener {
            let m = metrics.clone();
            tasks.push(tokio::spawn(serve_metrics(l, m, Arc::new(probes))));
        }
        // Look-up tasks report back through a weak sender: the loop still ends when every
        // listener's sender is gone.
        let lookup_tx = tx.downgrade();
        let lookup_timeout = cfg.auth.lookup_timeout.max(Duration::from_millis(1));
        drop(tx);
        drop(sink);
        info!(listen = ?local, domain = core.domain(), auth = ?cfg.auth.mode, "sipd running");
        let mut streams: HashMap<SocketAddr, mpsc::Sender<Vec<u8>>> = HashMap::new();
        let udp0 = udp.first().cloned();
        tokio::pin!(shutdown);
        loop {
            // Drain the core: send each transmit, start each look-up it needs, until `Timeout`.
            let deadline = loop {
                match core.poll_output() {
                    Output::Transmit(o) => send(&streams, udp0.as_ref(), o).await,
                    Output::Event(Need::Credentials { username, domain }) => {
                        match (&db, lookup_tx.upgrade()) {
                            (Some(db), Some(tx)) => {
                                let db = db.clone();
                                spawn_beside(tx, async move {
                                    let call = db.subscriber(&username, &domain);
                                    let found = bounded("subscriber look-up", lookup_timeout, call);
                                    let found = found.await;
                                    Ev::Looked {
                                        username,
                                        domain,
                                        found,
                                    }
                                })
                            }
                            _ => core.lookup_failed(&username, &domain, Instant::now()),
                        }
                    }
                    Output::Event(Need::Bindings {
                        username,
                        domain,
                        unix_now: at,
                    }) => match (&location, lookup_tx.upgrade()) {
                        (Some(l), Some(tx)) => {
                            let l = l.clone();
                            spawn_beside(tx, async move {
                                let call = l.bindings(&username, &domain, at);
                                let found = bounded("location read", lookup_timeout, call).await;
                                Ev::Bindings {
                                    username,
                                    domain,
                                    found,
                                }
                            })
                        }
                        _ => core.bindings_failed(&username, &domain, Instant::now(), unix_now()),
                    },
                    Output::Event(Need::Register(w)) => match (&location, lookup_tx.upgrade()) {
                        (Some(l), Some(tx)) => {
                            let l = l.clone();
                            spawn_beside(tx, async move {
                                let call = l.register(&w);
                                let answer = bounded("location write", lookup_timeout, call).await;
                                let answer = answer
                                    .map_or(RegisterAnswer::Unavailable, RegisterAnswer::from);
                                Ev::Registered {
                                    ticket: w.ticket,
                                    answer,
                                }
                            })
                        }
                        _ => core.register_answered(
                            w.ticket,
                            RegisterAnswer::Unavailable,
                            Instant::now(),
                            unix_now(),
                        ),
                    },
                    Output::Event(Need::CallerKey { name }) => {
                        match (&caller_keys, lookup_tx.upgrade()) {
                            (Some(keys), Some(tx)) => {
                                let keys = keys.clone();
                                spawn_beside(tx, async move {
                                    let found = caller_key(keys, name.clone(), lookup_timeout);
                                    Ev::CallerKey {
                                        name,
                                        found: found.await,
                                    }
                                })
                            }
                            _ => core.insert_caller_key(
                                &name,
                                Err(DirectoryError::Unavailable("no key directory".into())),
                                Instant::now(),
                            ),
                        }
                    }
                    Output::Event(Need::RelayOffer { ticket, offer }) => {
                        match (&relay, lookup_tx.upgrade()) {
                            (Some(r), Some(tx)) => {
                                let r = r.clone();
                                spawn_beside(tx, async move {
                                    let sdp = r.offer(offer).await.map_err(relay_error);
                                    Ev::RelayOffered { ticket, sdp }
                                })
                            }
                            _ => core.relay_offered(ticket, Err(NO_RELAY.into()), Instant::now()),
                        }
                    }
                    Output::Event(Need::RelayAnswer { ticket, answer }) => {
                        match (&relay, lookup_tx.upgrade()) {
                            (Some(r), Some(tx)) => {
                                let r = r.clone();
                                spawn_beside(tx, async move {
                                    let sdp = r.answer(answer).await.map_err(relay_error);
                                    Ev::RelayAnswered { ticket, sdp }
                                })
                            }
                            _ => core.relay_answered(ticket, Err(NO_RELAY.into()), Instant::now()),
                        }
                    }
                    Output::Event(Need::RelayDelete { call_id }) => {
                        match (&relay, lookup_tx.upgrade()) {
                            (Some(r), Some(tx)) => {
                                let r = r.clone();
                                spawn_beside(tx, async move {
                                    let result =
                                        r.delete(&call_id).await.map(drop).map_err(relay_error);
                                    Ev::RelayDeleted { call_id, result }
                                })
                            }
                            _ => core.relay_deleted(&call_id, Err(NO_RELAY.into())),
                        }
                    }
                    Output::Timeout(at) => break at,
                }
            };
            // No deadline: the core has nothing due (no transactions, bindings or look-ups), so
            // the loop sleeps until a message or shutdown instead of waking on a period.
            let sleep = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = &mut shutdown => break,
                _ = sleep => core.handle_timeout(Instant::now()),
                ev = rx.recv() => match ev {
                    None => break,
                    Some(Ev::StreamUp { peer, kind, identity, node, tx }) => {
                        core.set_stream_peer(peer, Some(kind));
                        core.set_stream_identity(peer, identity);
                        core.set_stream_node(peer, node);
                        streams.insert(peer, tx);
                    }
                    Some(Ev::StreamDown { peer }) => {
                        core.set_stream_peer(peer, None);
                        streams.remove(&peer);
                    }
                    Some(Ev::PeerKeyLost { domain }) => {
                        for conn in core.peer_key_lost(&domain) {
                            if let Some(s) = streams.get(&conn) {
                                let _ = s.try_send(CLOSE);
                            }
                        }
                    }
                    Some(Ev::PeerKeyProved { domain }) => core.peer_key_proved(&domain),
                    Some(Ev::Msg { data, src, transport }) => {
                        core.handle(&data, src, transport, Instant::now(), unix_now());
                    }
                    Some(Ev::Looked { username, domain, found }) => {
                        let (now, unix) = (Instant::now(), unix_now());
                        match found {
                            Some(sub) => core.insert_credentials(&username, &domain, sub, now, unix),
                            None => core.lookup_failed(&username, &domain, now),
                        }
                    }
                    Some(Ev::Bindings { username, domain, found }) => {
                        let (now, unix) = (Instant::now(), unix_now());
                        match found {
                            Some(rows) => core.insert_bindings(&username, &domain, rows, now, unix),
                            None => core.bindings_failed(&username, &domain, now, unix),
                        }
                    }
                    Some(Ev::Registered { ticket, answer }) => {
                        core.register_answered(ticket, answer, Instant::now(), unix_now());
                    }
                    Some(Ev::CallerKey { name, found }) => {
                        core.insert_caller_key(&name, found, Instant::now());
                    }
                    Some(Ev::RelayOffered { ticket, sdp }) => {
                        core.relay_offered(ticket, sdp, Instant::now());
                    }
                    Some(Ev::RelayAnswered { ticket, sdp }) => {
                        core.relay_answered(ticket, sdp, Instant::now());
                    }
                    Some(Ev::RelayDeleted { call_id, result }) => {
                        core.relay_deleted(&call_id, result);
                    }
                },
            }
        }
        // Drain: stop taking messages, then send what the core still has queued (the answers to
        // requests already handled), so no peer waits for a retransmission from a stopped server.
        for t in tasks {
            t.abort();
        }
        loop {
            match core.poll_output() {
                Output::Transmit(o) => send(&streams, udp0.as_ref(), o).await,
                // No look-up starts any more: its answer would have nowhere to go.
                Output::Event(_) => {}
                Output::Timeout(_) => break,
            }
        }
        info!("sipd stopped");
    }

    /// A handle to attach stream connections from outside, e.g. the TLS-PSK transport: accept
    /// TCP, run the handshake, then [`StreamSink::attach`] the TLS stream. Attached streams are
    /// served once [`Server::run`] runs and until it returns.
    pub fn stream_sink(&self) -> StreamSink {
        self.sink.clone()
    }
}

/// What the server writes to a stream connection's writer to close the connection (no message
/// is empty).
const CLOSE: Vec<u8> = Vec::new();

/// Sends one transmit of the core: over the destination's stream connection if it has one, else
/// over the first UDP socket. A full stream writer or a failed send drops the message (SIP
/// retransmits what matters), logged at debug.
async fn send(
    streams: &HashMap<SocketAddr, mpsc::Sender<Vec<u8>>>,
    udp: Option<&Arc<UdpSocket>>,
    o: Transmit,
) {
    if let Some(s) = streams.get(&o.destination) {
        if s.try_send(o.contents).is_err() {
            debug!(dest = %o.destination, "stream writer full; message dropped");
        }
    } else if let Some(u) = udp {
        match u.try_send_to(&o.contents, o.destination) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                let _ = u.send_to(&o.contents, o.destination).await;
            }
            Err(e) => debug!(dest = %o.destination, error = %e, "udp send failed"),
        }
    } else {
        debug!(dest = %o.destination, "no UDP socket and no stream to destination");
    }
}

/// A TCP listener (for a `tcp:` or `tls:` listen address) and the address it got.
async fn bind_stream_listener(
    what: &'static str,
    a: SocketAddr,
) -> Result<(TcpListener, SocketAddr), ServeError> {
    let bind = |source| ServeError::Bind {
        what,
        addr: a,
        source,
    };
    let s = TcpListener::bind(a).await.map_err(bind)?;
    let bound = s.local_addr().map_err(bind)?;
    Ok((s, bound))
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Awaits one database call run beside the loop: `None` when it failed (logged; the driver's
/// error never reaches a client) or took longer than `timeout`, so a stuck database cannot keep
/// requests parked.
async fn bounded<T, E>(
    what: &'static str,
    timeout: Duration,
    call: impl Future<Output = Result<T, E>>,
) -> Option<T>
where
    E: std::error::Error + 'static,
{
    match tokio::time::timeout(timeout, call).await {
        Ok(Ok(v)) => Some(v),
        Ok(Err(e)) => {
            error!(
                error = &e as &dyn std::error::Error,
                what, "database call failed; the requests waiting for it get 503"
            );
            None
        }
        Err(_) => {
            warn!(
                what,
                "database call timed out; the requests waiting for it get 503"
            );
            None
        }
    }
}

/// Why a relay command could not be sent at all.
const NO_RELAY: &str = "no media relay configured";

/// The NG client of `[relay] rtpengine` when calls are relayed (also checked by `/readyz`).
fn media_relay(cfg: &Config, probes: &mut Vec<(&'static str, Probe)>) -> Option<NgClient> {
    let addr = cfg
        .relay
        .rtpengine
        .filter(|_| cfg.relay.mode != RelayMode::Never)?;
    let client = NgClient::new(
        addr,
        NgClientConfig {
            timeout: cfg.relay.timeout,
            ..NgClientConfig::default()
        },
    );
    let probe = client.clone();
    probes.push((
        "media relay",
        Arc::new(move || {
            let probe = probe.clone();
            Box::pin(async move { probe.ping().await.map_err(relay_error) })
        }),
    ));
    info!(rtpengine = %addr, mode = ?cfg.relay.mode, "media relay");
    Some(client)
}

/// A relay failure as one line with its causes (it names rtpengine's address, never an SDP).
fn relay_error(e: NgError) -> String {
    chaincall_io::ErrorChain(&e).to_string()
}

/// Looks `name` up in `keys` on a blocking thread (a chain directory blocks on its read), within
/// `timeout`.
async fn caller_key(
    keys: CallerKeys,
    name: IdentityName,
    timeout: Duration,
) -> Result<DirectoryEntry, DirectoryError> {
    let read = tokio::task::spawn_blocking(move || keys.lookup(&name));
    match tokio::time::timeout(timeout, read).await {
        Ok(Ok(found)) => found,
        Ok(Err(e)) => Err(DirectoryError::Unavailable(format!(
            "key look-up task: {e}"
        ))),
        Err(_) => Err(DirectoryError::Unavailable("key look-up timed out".into())),
    }
}

/// Runs `job` (a database call, bounded by [`bounded`]) beside the loop and hands the event it
/// ends with back to the loop.
fn spawn_beside(tx: mpsc::Sender<Ev>, job: impl Future<Output = Ev> + Send + 'static) {
    tokio::spawn(async move {
        let _ = tx.send(job.await).await;
    });
}

/// How long `/readyz` waits for a dependency before calling it down.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Serves `GET /metrics` (Prometheus text), `/healthz` (liveness: the server loop answers) and
/// `/readyz` (readiness: listeners bound and every probe answering; 503 naming what is not).
async fn serve_metrics(l: TcpListener, m: Arc<Metrics>, probes: Arc<Vec<(&'static str, Probe)>>) {
    loop {
        let Ok((mut s, _)) = l.accept().await else {
            continue;
        };
        let m = m.clone();
        let probes = probes.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 1024];
            let n = tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf))
                .await
                .map_or(0, |r| r.unwrap_or(0));
            let path = std::str::from_utf8(&buf[..n])
                .ok()
                .and_then(|t| t.split_whitespace().nth(1))
                .unwrap_or("/metrics");
            let (status, ctype, body) = match path {
                "/healthz" => ("200 OK", "text/plain", "ok\n".to_owned()),
                "/readyz" => readiness(&probes).await,
                "/metrics" | "/" => ("200 OK", "text/plain; version=0.0.4", m.render()),
                _ => ("404 Not Found", "text/plain", "not found\n".to_owned()),
            };
            let head = format!(
                "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = s.write_all(head.as_bytes()).await;
            let _ = s.write_all(body.as_bytes()).await;
        });
    }
}

/// `/readyz`: runs every probe (each within [`PROBE_TIMEOUT`]); 200 when all answer, else 503
/// with one line per dependency that does not.
async fn readiness(probes: &[(&'static str, Probe)]) -> (&'static str, &'static str, String) {
    let mut down = String::new();
    for (name, probe) in probes {
        let why = match tokio::time::timeout(PROBE_TIMEOUT, probe()).await {
            Ok(Ok(())) => continue,
            Ok(Err(e)) => e,
            Err(_) => "no answer in time".to_owned(),
        };
        down.push_str(&format!("{name}: {why}\n"));
    }
    if down.is_empty() {
        ("200 OK", "text/plain", "ready\n".to_owned())
    } else {
        warn!(%down, "not ready");
        ("503 Service Unavailable", "text/plain", down)
    }
}
