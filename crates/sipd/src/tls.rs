//! The TLS-PSK transport: accept TCP, run chaincall's handshake (or go straight to TLS with a
//! stored PSK), then serve SIP over the TLS stream through [`StreamSink`].
//!
//! Phones are looked up in the keystore contract ([`ChainKeyDirectory`]); a phone whose key is
//! unknown, pending or revoked is refused at the handshake, and a PSK past its lifetime is refused
//! at the TLS handshake. A stored PSK opens a connection only while its peer's entry still
//! approves the key the handshake proved (re-read through the same directory, within its
//! `key_cache_secs`): a revoked, pending, unknown or replaced key refuses the TLS handshake and
//! drops the PSK (WARN, `sipd_tls_psk_failures_total{reason="psk_key_lost"}`). A peer domain's
//! link accepted here (`[peers]`) is re-checked every `recheck_secs` while open, like our own
//! links ([`crate::link`]). Refusals are logged with the peer address and the reason, never with
//! key material.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chaincall_chain::verified::HeaderTrust;
use chaincall_chain::{KeystoreChain, RpcChain, RpcConfig};
use chaincall_handshake::{HandshakeConfig, LocalIdentity};
use chaincall_identity::{IdentityKey, IdentityName, KeyDirectory, KeyStatus};
use chaincall_tls_psk::{
    HandshakeService, PskServer, PskStore, TlsPskConfig, TlsPskError, TlsPskStream,
};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tracing::{debug, info, warn};

use crate::config::{Config, ConfigError, KeyTrustMode, TlsPskSettings};
use crate::keys::ChainKeyDirectory;
use crate::metrics::{HandshakeFailure, Metrics};
use crate::server::{Probe, StreamSink};

/// Handshakes (chaincall handshake + TLS) in progress at once; further connections wait in the
/// kernel's accept queue.
pub const MAX_PENDING_HANDSHAKES: usize = 1024;

/// Why the TLS-PSK transport could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsSetupError {
    /// A setting is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The identity key file is missing or unreadable.
    #[error("identity key file {path}: {reason}")]
    KeyFile {
        /// The file.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The identity key file does not exist yet: the server has no identity to prove.
    #[error(
        "identity key file {path} does not exist: create it and approve its key on chain with \
         `chaincall keystore publish-server --rpc {rpc_url} --contract {contract} --domain {identity} \
         --identity-key-file {path} --key-file WALLET_KEY_FILE`"
    )]
    KeyFileMissing {
        /// The file (`tls_psk.key_file`).
        path: String,
        /// The server's identity (`tls_psk.identity`).
        identity: String,
        /// The keystore node (`tls_psk.rpc_url`).
        rpc_url: String,
        /// The keystore contract (`tls_psk.contract`).
        contract: String,
    },
    /// The chain could not be reached or read.
    #[error("cannot read the keystore")]
    Chain(#[from] chaincall_chain::ChainError),
    /// OpenSSL refused the TLS settings.
    #[error(transparent)]
    Tls(#[from] chaincall_tls_psk::TlsPskError),
}

/// The peer domains (`[peers]`, lower-case) whose links this sipd accepts, each with how often
/// an accepted link's key is re-read on chain (`recheck_secs`).
pub type PeerRechecks = Arc<BTreeMap<String, Duration>>;

/// `cfg`'s `[peers]` as [`serve_tls_psk`] watches them.
pub fn peer_rechecks(cfg: &Config) -> PeerRechecks {
    Arc::new(
        cfg.peers
            .iter()
            .map(|(domain, peer)| (domain.to_ascii_lowercase(), peer.recheck))
            .collect(),
    )
}

/// Serves TLS-PSK connections from `listener` until the server behind `sink` stops.
///
/// For each connection: [`PskServer::accept`] (the handshake when the client starts with one, then
/// TLS with the PSK) within the handshake and TLS timeouts, then [`StreamSink::attach_tls`]. Refused
/// connections are logged by peer and reason and closed; nothing here panics on network input.
/// A connection proving one of `peers`' domains is that peer's link: its key is re-read every
/// `recheck_secs` while it is open.
/// Needs tokio's multi-thread runtime when `psk` looks keys up through a [`ChainKeyDirectory`].
pub async fn serve_tls_psk(
    listener: TcpListener,
    psk: PskServer,
    sink: StreamSink,
    peers: PeerRechecks,
) {
    let pending = Arc::new(Semaphore::new(MAX_PENDING_HANDSHAKES));
    // PskServer applies its own handshake and TLS timeouts; this outer bound also covers a client
    // that stalls between the two.
    let timeout = Duration::from_secs(30);
    let local = listener.local_addr().ok();
    info!(?local, "TLS-PSK listener running");
    loop {
        let permit = tokio::select! {
            p = pending.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return, // the semaphore is never closed
            },
            _ = sink.closed() => return,
        };
        let Some((tcp, peer)) = sink.accept(&listener, "TLS-PSK").await else {
            return;
        };
        let psk = psk.clone();
        let sink = sink.clone();
        let peers = peers.clone();
        tokio::spawn(async move {
            let result = tokio::time::timeout(timeout, psk.accept(tcp)).await;
            drop(permit);
            match result {
                Ok(Ok((tls, established))) => {
                    let who = tls.peer().map(ToString::to_string).unwrap_or_default();
                    match &established {
                        Some(e) => {
                            info!(%peer, identity = %who, protocol = %e.protocol, version = tls.version(), "TLS-PSK connection after handshake")
                        }
                        None => {
                            debug!(%peer, identity = %who, version = tls.version(), "TLS-PSK connection with a stored PSK")
                        }
                    }
                    let every = tls
                        .peer()
                        .and_then(|name| peers.get(&name.to_string().to_ascii_lowercase()));
                    match (every, psk.directory()) {
                        (Some(every), Some(dir)) => {
                            serve_watched_link(tls, peer, dir.clone(), *every, psk.store(), &sink)
                                .await
                        }
                        _ => {
                            let identity = tls.peer().map(ToString::to_string);
                            sink.attach_tls_as(tls, peer, identity);
                        }
                    }
                }
                Ok(Err(e @ TlsPskError::PskKeyLost { .. })) => {
                    sink.metrics()
                        .count_handshake_failure(HandshakeFailure::PskKeyLost);
                    warn!(%peer, reason = %e, "TLS-PSK connection refused: the stored PSK's on-chain key is gone")
                }
                Ok(Err(e)) => {
                    sink.metrics()
                        .count_handshake_failure(HandshakeFailure::of(&e));
                    info!(%peer, reason = %chaincall_io::ErrorChain(&e), "TLS-PSK connection refused")
                }
                Err(_) => {
                    sink.metrics()
                        .count_handshake_failure(HandshakeFailure::Timeout);
                    info!(%peer, reason = "timed out", "TLS-PSK connection refused")
                }
            }
        });
    }
}

/// Serves a peer domain's link accepted on our listener until it closes, re-reading the domain's
/// key every `every` ([`crate::link::key_lost`], as our own link to it does): a key revoked or
/// replaced since the link's handshake drops the domain's stored PSKs and closes every connection
/// proving the domain, which is cut off until a link handshake proves its key again
/// ([`crate::core::Core::peer_key_lost`]). A chain that does not answer keeps the link.
async fn serve_watched_link(
    tls: TlsPskStream<TcpStream>,
    remote: SocketAddr,
    directory: Arc<dyn KeyDirectory + Send + Sync>,
    every: Duration,
    store: &PskStore,
    sink: &StreamSink,
) {
    let (Some(name), Some(proved)) = (tls.peer().cloned(), tls.peer_key().cloned()) else {
        // Only a handshake's PSK names a peer and its key; callers pass no other.
        let identity = tls.peer().map(ToString::to_string);
        sink.attach_tls_as(tls, remote, identity);
        return;
    };
    let serve = sink.serve_accepted_link(tls, remote, name.to_string());
    tokio::pin!(serve);
    let watch = crate::link::key_lost(directory, name.clone(), proved, None, every);
    tokio::select! {
        _ = &mut serve => {}
        why = watch => {
            warn!(peer = %name, %remote, why, "the peer domain's on-chain key is no longer the one its link proved: closing its connections");
            sink.metrics().peer_links_in_key_lost.inc();
            store.remove_peer(&name);
            sink.peer_key_lost(name.to_string()).await;
            serve.await;
        }
    }
}

/// Reads a hex 32-byte P-256 identity secret (as written by the wallet server and the CLI); a file
/// that group or others can read is refused.
pub fn load_identity_key(path: &Path) -> Result<IdentityKey, TlsSetupError> {
    let bad = |reason: &str| TlsSetupError::KeyFile {
        path: path.display().to_string(),
        reason: reason.to_owned(),
    };
    // Refused when group or world readable (the message says `chmod 600 PATH`).
    let text = chaincall_identity::read_secret_file(path).map_err(|e| match e {
        chaincall_identity::SecretFileError::Io { source, .. } => bad(&source.to_string()),
        other => bad(&other.to_string()),
    })?;
    let bytes = zeroize::Zeroizing::new(
        hex::decode(text.trim().trim_start_matches("0x")).map_err(|_| bad("not hex"))?,
    );
    IdentityKey::from_secret_bytes(&bytes).map_err(|_| bad("not a P-256 secret key"))
}

/// The identity key in `path`, or a new one written there (mode 0600) when the file does not
/// exist yet; `true` when it was made now. `keystore publish-server` uses it, so a fresh server
/// gets its key and its on-chain entry in one step.
pub fn load_or_create_identity_key(path: &Path) -> Result<(IdentityKey, bool), TlsSetupError> {
    if path.exists() {
        return Ok((load_identity_key(path)?, false));
    }
    let key = IdentityKey::generate();
    let mut text = zeroize::Zeroizing::new(hex::encode(&key.dangerous_secret_bytes()[..]));
    text.push('\n');
    chaincall_identity::write_secret_file(
        path,
        text.as_bytes(),
        chaincall_identity::Overwrite::Refuse,
    )
    .map_err(|e| TlsSetupError::KeyFile {
        path: path.display().to_string(),
        // The path is told by KeyFile itself: the reason is the OS's (or the refusal's) only.
        reason: match e {
            chaincall_identity::SecretFileError::Io { source, .. } => source.to_string(),
            other => other.to_string(),
        },
    })?;
    Ok((key, true))
}

impl TlsPskSettings {
    /// The TLS settings (versions; cipher suites and timeouts from the defaults and this section).
    pub fn tls_config(&self) -> Result<TlsPskConfig, ConfigError> {
        Ok(TlsPskConfig {
            min_version: self.min_version,
            max_version: self.max_version,
            handshake_timeout: self.handshake_timeout.max(Duration::from_secs(1)),
            keylog_file: self.keylog_file.clone(),
            ..TlsPskConfig::default()
        })
    }

    /// The handshake responder's settings.
    pub fn handshake_config(&self) -> HandshakeConfig {
        HandshakeConfig {
            psk_lifetime: self.psk_lifetime.max(Duration::from_secs(1)),
            handshake_timeout: self.handshake_timeout.max(Duration::from_secs(1)),
            accept_nsl: self.accept_nsl,
            ..HandshakeConfig::default()
        }
    }

    /// The server's identity name.
    pub fn identity_name(&self) -> IdentityName {
        IdentityName::from(self.identity.clone())
    }
}

/// Builds the PSK server for `settings` with `key` as the server's identity key and phones looked
/// up in `directory`.
pub fn psk_server(
    settings: &TlsPskSettings,
    key: IdentityKey,
    directory: Arc<dyn KeyDirectory + Send + Sync>,
) -> Result<PskServer, TlsSetupError> {
    let local = LocalIdentity::new(settings.identity_name(), Arc::new(key));
    let service = HandshakeService::new(settings.handshake_config(), local, directory);
    Ok(PskServer::new(
        &settings.tls_config()?,
        PskStore::default(),
        Some(service),
    )?)
}

/// Builds the PSK server over the keystore on `chain`: loads the identity key file, checks that
/// the server's own key is the approved one on chain (warns otherwise: phones would refuse us), and
/// looks phones up through a [`ChainKeyDirectory`] that counts its chain reads in `metrics` (the
/// server's: pass [`crate::Server::bind_with_tls_psk`] the same). Call inside a multi-thread tokio
/// runtime.
pub async fn psk_server_on_chain<C: KeystoreChain + 'static>(
    settings: &TlsPskSettings,
    chain: Arc<C>,
    metrics: Arc<Metrics>,
) -> Result<PskServer, TlsSetupError> {
    if !settings.key_file.exists() {
        return Err(TlsSetupError::KeyFileMissing {
            path: settings.key_file.display().to_string(),
            identity: settings.identity.to_string(),
            rpc_url: settings.rpc_url.clone(),
            contract: settings.contract.to_string(),
        });
    }
    let key = load_identity_key(&settings.key_file)?;
    let contract = settings.contract;
    let name = settings.identity_name();
    let entry = chain
        .get_client(contract, chaincall_chain::ClientId::of(&name))
        .await?;
    match entry.approved_key() {
        Some(k) if k == key.public() => {
            info!(identity = %name, "server identity approved on chain")
        }
        Some(_) => {
            warn!(identity = %name, "the approved on-chain key differs from tls_psk.key_file: phones will refuse this server")
        }
        None if entry.status == KeyStatus::Unknown => {
            warn!(identity = %name, "server identity not in the keystore: phones will refuse this server")
        }
        None => {
            warn!(identity = %name, status = %entry.status, "server identity not approved: phones will refuse this server")
        }
    }
    let dir = key_directory_on_chain(settings, chain, metrics)?;
    psk_server(settings, key, Arc::new(dir))
}

/// Phones' keys in the keystore `[tls_psk]` names, on `chain`: cached `key_cache_secs`, proven as
/// `trust` says, each chain read counted in `metrics`. The TLS-PSK handshake and `[identity]
/// verify` look keys up through it.
pub fn key_directory_on_chain<C: KeystoreChain + 'static>(
    settings: &TlsPskSettings,
    chain: Arc<C>,
    metrics: Arc<Metrics>,
) -> Result<ChainKeyDirectory<C>, ConfigError> {
    let dir = ChainKeyDirectory::new(chain, settings.contract)
        .with_ttl(settings.key_cache)
        .with_read_timeout(settings.handshake_timeout.max(Duration::from_secs(1)))
        .with_metrics(metrics);
    Ok(match header_trust(settings)? {
        Some(trust) => {
            info!(trust = ?settings.trust, "phones' keys are proven against trusted headers");
            dir.with_header_trust(trust)
        }
        None => {
            warn!(
                "tls_psk.trust = \"provider\": phones' keys are believed from rpc_url without proof"
            );
            dir
        }
    })
}

/// The header trust `[tls_psk] trust` asks for (`None` for `provider`).
pub fn header_trust(settings: &TlsPskSettings) -> Result<Option<Arc<HeaderTrust>>, ConfigError> {
    Ok(match settings.trust {
        KeyTrustMode::Checkpoint => {
            let c = settings.checkpoint.ok_or_else(|| {
                ConfigError::Invalid("tls_psk: trust = \"checkpoint\" needs checkpoint".into())
            })?;
            Some(Arc::new(HeaderTrust::checkpoint(c.number, c.hash)))
        }
        KeyTrustMode::Quorum => Some(Arc::new(
            HeaderTrust::quorum(settings.quorum_urls.clone(), settings.quorum_k)
                .map_err(|e| ConfigError::Invalid(format!("tls_psk: {e}")))?,
        )),
        KeyTrustMode::Provider => None,
    })
}

/// The keystore node `[tls_psk] rpc_url` names, checked to be the chain `chain_id` expects.
pub async fn connect_chain(settings: &TlsPskSettings) -> Result<RpcChain, TlsSetupError> {
    let config = RpcConfig {
        expected_chain_id: settings.chain_id,
        ..RpcConfig::default()
    };
    Ok(RpcChain::connect(&settings.rpc_url, config).await?)
}

/// `/readyz`'s check of the keystore chain: it answers with its latest block number. The error
/// says no more than that: transport errors quote the node's URL, which may carry an API key, and
/// `/readyz` is unauthenticated.
pub fn chain_probe<C: KeystoreChain + 'static>(chain: Arc<C>) -> Probe {
    Arc::new(move || {
        let chain = chain.clone();
        Box::pin(async move {
            let answer = chain.block_number().await;
            answer
                .map(drop)
                .map_err(|_| "the keystore node does not answer".into())
        })
    })
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// A key file that cannot be created names the file once and tells the OS's reason (the
    /// secret-file error's Display is the path only; its reason comes from source()).
    #[test]
    fn an_uncreatable_key_file_is_named_once_with_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("no-such-dir").join("sipd.key");
        let err = load_or_create_identity_key(&path).unwrap_err().to_string();
        let shown = path.display().to_string();
        assert_eq!(err.matches(&shown).count(), 1, "{err}");
        let os = std::io::Error::from_raw_os_error(2).to_string();
        assert!(err.ends_with(&os), "{err}");
    }

    #[test]
    fn a_key_file_readable_by_others_is_refused_with_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sipd.key");
        let key = IdentityKey::generate();
        chaincall_identity::write_secret_file(
            &path,
            hex::encode(&*key.dangerous_secret_bytes()).as_bytes(),
            chaincall_identity::Overwrite::Refuse,
        )
        .unwrap();
        assert_eq!(load_identity_key(&path).unwrap().public(), key.public());
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = load_identity_key(&path).unwrap_err().to_string();
        assert!(err.contains("mode 0644"), "{err}");
        assert!(
            err.contains(&format!("chmod 600 {}", path.display())),
            "{err}"
        );
    }

    #[test]
    fn a_missing_key_file_is_made_private_once_then_loaded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sipd.key");
        let (made, created) = load_or_create_identity_key(&path).unwrap();
        assert!(created);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "others must not read a server's key");
        let (loaded, created) = load_or_create_identity_key(&path).unwrap();
        assert!(!created, "an existing key is never replaced");
        assert_eq!(loaded.public(), made.public());
        // What exists but is no key is an error, never silently replaced.
        std::fs::write(&path, "not hex").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(load_or_create_identity_key(&path).is_err());
    }

    /// Each layer's Display says its own part only: `{err:#}` (anyhow in main) joins the chain
    /// from `source()`, and a layer that also printed its source would say it twice.
    #[test]
    fn setup_errors_say_their_own_part_once() {
        let chain = chaincall_chain::ChainError::NodeDown {
            url: "http://127.0.0.1:1".into(),
            reason: "connection refused".into(),
        };
        let err = crate::ServeError::Tls(TlsSetupError::Chain(chain));
        let mut chain_text = err.to_string();
        let mut cause: Option<&dyn std::error::Error> = std::error::Error::source(&err);
        while let Some(c) = cause {
            chain_text = format!("{chain_text}: {c}");
            cause = c.source();
        }
        assert_eq!(
            chain_text,
            "cannot set up TLS-PSK: cannot read the keystore: node down: http://127.0.0.1:1: \
             connection refused"
        );
        let bind = crate::ServeError::Bind {
            what: "udp",
            addr: "127.0.0.1:5060".parse().unwrap(),
            source: std::io::Error::from(std::io::ErrorKind::AddrInUse),
        };
        assert_eq!(bind.to_string(), "cannot listen on udp 127.0.0.1:5060");
        assert!(std::error::Error::source(&bind).is_some());
    }
}
