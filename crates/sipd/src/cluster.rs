//! Several sipd nodes serving one domain (`[cluster]`, docs/sipd.md "Cluster"): the links
//! between them. Every node holds the domain's key, so phones authenticate the *domain* as
//! with one node; nodes authenticate *each other* with a cluster secret file.
//!
//! A node link is TLS with an external PSK (RFC 4279 / RFC 8446 §2.2) derived from the cluster
//! secret and both node ids, in the order initiator then responder:
//! `HMAC-SHA-256(secret, "chaincall-sipd cluster link v1" ‖ 0 ‖ initiator ‖ 0 ‖ responder)`. The
//! PSK identity the initiator sends is [`PSK_IDENTITY_PREFIX`] followed by its node id; the
//! responder keeps one PSK per member of its `[cluster] nodes`, none for itself, so a connection
//! without the secret, from a node id it does not list, or reflected back at its sender fails
//! the TLS handshake. Nothing here reads the chain: nodes keep forwarding to each other while
//! the keystore's RPC is down.
//!
//! Like the sipd-to-sipd link of `[peers]` ([`crate::link`], whose back-off and keep-alive
//! constants are reused), each node keeps one connection open to every other member (and
//! accepts theirs); both are served as stream connections that the core knows as node links
//! ([`crate::core::Core::set_stream_node`]).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chaincall_handshake::Psk;
use chaincall_tls_psk::{PskEntry, PskStore, TlsPskClient, TlsPskConfig, TlsPskServer};
use serde::Deserialize;
use tokio::net::{TcpListener, TcpStream};
use tracing::{info, warn};
use zeroize::Zeroizing;

use crate::config::ConfigError;
use crate::link::{KEEPALIVE, MAX_BACKOFF, MIN_BACKOFF};
use crate::metrics::HandshakeFailure;
use crate::server::StreamSink;

/// What a node's PSK identity starts with; its node id follows.
pub const PSK_IDENTITY_PREFIX: &str = "chaincall-cluster v1 ";

/// `[cluster]`: this node's place among the nodes of its domain. Off when `nodes` is empty.
/// This node's own id is `[location] node_id` (one source of truth: the id its bindings are
/// stored under is the id other nodes reach it by).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// Where this node accepts the other nodes' links, `IP:PORT`.
    pub listen: Option<SocketAddr>,
    /// The cluster secret: 32 random bytes as 64 hex digits, mode 0600, the same file on every
    /// node (`openssl rand -hex 32`).
    pub secret_file: Option<PathBuf>,
    /// The other nodes: node id → its `listen` address (`IP:PORT`; the Route of a request
    /// forwarded to a node names it, and the node knows its own address by it).
    pub nodes: BTreeMap<String, SocketAddr>,
}

impl ClusterConfig {
    /// Whether this sipd is one node of a cluster.
    pub fn enabled(&self) -> bool {
        !self.nodes.is_empty()
    }

    /// Checks the section against this node's id (`[location] node_id`) and backend: a
    /// cluster needs the shared PostgreSQL location, a listener and the secret, and lists every
    /// node but this one.
    pub fn check(&self, me: &str, postgres: bool) -> Result<(), ConfigError> {
        if !self.enabled() {
            return Ok(());
        }
        let bad = |what: String| Err(ConfigError::Invalid(format!("cluster: {what}")));
        if !postgres {
            return bad(
                "nodes share their registrations in PostgreSQL: set [location] backend = \"postgres\""
                    .into(),
            );
        }
        if self.listen.is_none() || self.secret_file.is_none() {
            return bad("a cluster needs listen = \"IP:PORT\" and secret_file".into());
        }
        if self.nodes.contains_key(me) {
            return bad(format!(
                "nodes lists this node's own id {me:?} ([location] node_id)"
            ));
        }
        for (id, addr) in &self.nodes {
            if !crate::config::valid_node_id(id) {
                return bad(format!(
                    "node id {id:?} must be 1 to 64 letters, digits, '.', '_' or '-'"
                ));
            }
            if addr.port() == 0 || addr.ip().is_unspecified() {
                return bad(format!(
                    "nodes.{id:?} = \"{addr}\" is not an address to connect to"
                ));
            }
        }
        Ok(())
    }
}

/// Why the cluster's links cannot be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClusterError {
    /// The secret file is missing, readable by others, or not 64 hex digits.
    #[error("cluster secret file {path}: {reason}")]
    SecretFile {
        /// The file.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The TLS context could not be built.
    #[error("cluster TLS")]
    Tls(#[from] chaincall_tls_psk::TlsPskError),
    /// The node-link listener could not be bound.
    #[error("cannot listen for node links on {addr}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
}

/// The cluster secret and this node's id: the PSK of each ordered pair of nodes. The secret is
/// zeroized on drop and never printed.
#[derive(Clone)]
pub struct ClusterKeys {
    me: String,
    secret: Arc<Zeroizing<[u8; 32]>>,
}

impl std::fmt::Debug for ClusterKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterKeys")
            .field("me", &self.me)
            .finish_non_exhaustive()
    }
}

impl ClusterKeys {
    /// Keys for node `me` from the secret itself.
    pub fn new(me: &str, secret: [u8; 32]) -> Self {
        ClusterKeys {
            me: me.to_owned(),
            secret: Arc::new(Zeroizing::new(secret)),
        }
    }

    /// Reads the secret file (refused when group or others may read it).
    pub fn load(me: &str, path: &Path) -> Result<Self, ClusterError> {
        let bad = |reason: String| ClusterError::SecretFile {
            path: path.display().to_string(),
            reason,
        };
        let text = chaincall_identity::read_secret_file(path).map_err(|e| match e {
            chaincall_identity::SecretFileError::Io { source, .. } => bad(source.to_string()),
            other => bad(other.to_string()),
        })?;
        let bytes = Zeroizing::new(hex::decode(text.trim()).map_err(|_| bad("not hex".into()))?);
        let secret: [u8; 32] = bytes[..].try_into().map_err(|_| {
            bad("not 32 bytes (64 hex digits): write it with `openssl rand -hex 32`".into())
        })?;
        Ok(Self::new(me, secret))
    }

    /// This node's id.
    pub fn node_id(&self) -> &str {
        &self.me
    }

    /// The PSK of a link opened by `initiator` to `responder`.
    fn psk(&self, initiator: &str, responder: &str) -> Psk {
        Psk::from_bytes(self.derive(&[
            b"chaincall-sipd cluster link v1",
            initiator.as_bytes(),
            responder.as_bytes(),
        ]))
    }

    /// The key of this node's stateless flow tokens ([`crate::core::Core::set_flow_token_key`]): a
    /// node keeps it across restarts, so the tokens in the location table and in dialogs'
    /// Record-Routes still name their flows after one. Only this node's own tokens verify
    /// under it (the node id is in the derivation).
    pub fn flow_token_key(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.derive(&[b"chaincall-sipd cluster flow tokens v1", self.me.as_bytes()]))
    }

    /// HMAC-SHA256 under the cluster secret of `parts` joined by zero octets (node ids hold
    /// none, so the parts cannot run into each other).
    fn derive(&self, parts: &[&[u8]]) -> [u8; 32] {
        use hmac::{Hmac, Mac};
        let mut m = <Hmac<sha2::Sha256> as Mac>::new_from_slice(&self.secret[..])
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        for (i, part) in parts.iter().enumerate() {
            if i > 0 {
                m.update(&[0]);
            }
            m.update(part);
        }
        m.finalize().into_bytes().into()
    }

    /// The TLS server for links from `members`: one PSK per member, as the responder.
    pub fn server<'a>(
        &self,
        members: impl IntoIterator<Item = &'a String>,
    ) -> Result<TlsPskServer, ClusterError> {
        let store = PskStore::new(1024);
        // Cluster PSKs do not expire: they change when the operator changes the secret file.
        let never = Instant::now()
            .checked_add(Duration::from_secs(100 * 365 * 86_400))
            .unwrap_or_else(Instant::now);
        for id in members.into_iter().filter(|id| **id != self.me) {
            store.insert(
                format!("{PSK_IDENTITY_PREFIX}{id}").into_bytes(),
                PskEntry {
                    psk: self.psk(id, &self.me),
                    peer: None,
                    peer_key: None,
                    expires_at: never,
                },
            );
        }
        Ok(TlsPskServer::new(&TlsPskConfig::tls13_only(), store)?)
    }

    /// Opens TLS to node `to` over `tcp`, as the initiator.
    pub async fn connect(
        &self,
        tcp: TcpStream,
        to: &str,
    ) -> Result<chaincall_tls_psk::TlsPskStream<TcpStream>, ClusterError> {
        let client = TlsPskClient::new(&TlsPskConfig::tls13_only())?;
        let identity = format!("{PSK_IDENTITY_PREFIX}{}", self.me);
        let psk = self.psk(&self.me, to);
        Ok(client
            .connect(tcp, identity.as_bytes(), psk.dangerous_as_bytes())
            .await?)
    }
}

/// The node id a PSK identity names, if it is a node's.
pub fn node_of_identity(identity: &[u8]) -> Option<&str> {
    std::str::from_utf8(identity)
        .ok()?
        .strip_prefix(PSK_IDENTITY_PREFIX)
}

/// Binds the node-link listener.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, ClusterError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ClusterError::Bind { addr, source })
}

/// Accepts the other nodes' links on `listener` until the server behind `sink` stops; a
/// connection whose TLS handshake fails (no secret, a node not listed) is closed and logged.
pub async fn accept_links(listener: TcpListener, tls: TlsPskServer, sink: StreamSink) {
    while let Some((tcp, peer)) = sink.accept(&listener, "node-link").await {
        let (tls, sink) = (tls.clone(), sink.clone());
        tokio::spawn(async move {
            match tls.accept(tcp).await {
                Ok(stream) => {
                    // The store holds node identities only: anything accepted names a node.
                    let Some(node) = node_of_identity(stream.psk_identity()).map(str::to_owned)
                    else {
                        return;
                    };
                    info!(%peer, %node, "node link accepted");
                    let links = &sink.metrics().node_links;
                    links.opened(&node);
                    sink.serve_node_link(stream, peer, node.clone(), None).await;
                    links.closed(&node);
                    info!(%peer, %node, "node link (accepted) closed");
                }
                Err(e) => {
                    sink.metrics()
                        .count_handshake_failure(HandshakeFailure::of(&e));
                    warn!(%peer, reason = %chaincall_io::ErrorChain(&e), "node link refused (not a cluster member)");
                }
            }
        });
    }
}

/// Keeps a link to node `to` at `addr` up until the server behind `sink` stops: connect, serve,
/// and on loss or failure wait ([`MIN_BACKOFF`] doubling to [`MAX_BACKOFF`]) and connect again.
pub async fn run_link(keys: ClusterKeys, to: String, addr: SocketAddr, sink: StreamSink) {
    let metrics = sink.metrics();
    metrics.node_links.expect(&to);
    let mut backoff = MIN_BACKOFF;
    loop {
        let attempt = async {
            let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
            let _ = tcp.set_nodelay(true);
            let remote = tcp.peer_addr().map_err(|e| e.to_string())?;
            let tls = keys
                .connect(tcp, &to)
                .await
                .map_err(|e| chaincall_io::ErrorChain(&e).to_string())?;
            Ok::<_, String>((tls, remote))
        };
        let attempt = tokio::select! {
            r = attempt => r,
            _ = sink.closed() => return,
        };
        match attempt {
            Ok((tls, remote)) => {
                backoff = MIN_BACKOFF;
                info!(node = %to, %remote, "node link up");
                metrics.node_links.opened(&to);
                sink.serve_node_link(tls, remote, to.clone(), Some(KEEPALIVE))
                    .await;
                metrics.node_links.closed(&to);
                info!(node = %to, %remote, "node link closed; reconnecting");
            }
            Err(reason) => {
                metrics.node_links.failed(&to);
                warn!(node = %to, %addr, %reason, "node link not opened");
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = sink.closed() => return,
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        let c = Config::parse_named("sipd.toml", text)?;
        c.validate()?;
        Ok(c)
    }

    const PG: &str = "[location]\nbackend = \"postgres\"\ndatabase = \"postgres://db/sip\"\n\
                      node_id = \"node-1\"\n";

    #[test]
    fn the_section_is_typed_and_checked_against_this_node() {
        assert!(!parse("").unwrap().cluster.enabled());
        let ok = format!(
            "{PG}[cluster]\nlisten = \"10.0.0.1:5070\"\nsecret_file = \"c.secret\"\n\
             nodes = {{ \"node-2\" = \"10.0.0.2:5070\" }}\n"
        );
        let c = parse(&ok).unwrap();
        assert_eq!(c.cluster.nodes["node-2"], "10.0.0.2:5070".parse().unwrap());
        for (text, why) in [
            (ok.replace("node-2", "node-1"), "own id"),
            (ok.replace(PG, ""), "backend = \"postgres\""),
            (
                ok.replace("secret_file = \"c.secret\"\n", ""),
                "secret_file",
            ),
            (
                ok.replace("10.0.0.2:5070", "0.0.0.0:5070"),
                "not an address",
            ),
        ] {
            let e = parse(&text).unwrap_err().to_string();
            assert!(e.contains(why), "{why}: {e}");
        }
        let e = parse(&ok.replace("\"10.0.0.2:5070\"", "\"node2.example:5070\""))
            .unwrap_err()
            .to_string();
        assert!(e.contains("sipd.toml"), "{e}");
    }

    #[test]
    fn the_secret_file_must_be_private_and_32_bytes() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.secret");
        let write = |text: &str, mode| {
            std::fs::write(&path, text).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        };
        write(&hex::encode([1u8; 32]), 0o600);
        let keys = ClusterKeys::load("node-1", &path).unwrap();
        assert!(!format!("{keys:?}").contains(&hex::encode([1u8; 32])[..8]));
        // Each direction of each pair has a key of its own.
        let ab = keys.psk("node-1", "node-2");
        assert_ne!(
            ab.dangerous_as_bytes(),
            keys.psk("node-2", "node-1").dangerous_as_bytes()
        );
        for (text, mode, why) in [
            (hex::encode([1u8; 32]), 0o644, "chmod"),
            (hex::encode([1u8; 16]), 0o600, "32 bytes"),
            ("zz".repeat(32), 0o600, "not hex"),
        ] {
            write(&text, mode);
            let e = ClusterKeys::load("node-1", &path).unwrap_err().to_string();
            assert!(e.contains(why) && e.contains("c.secret"), "{why}: {e}");
        }
    }
}
