//! Assembling and running the server: configuration → chain, databases, keys → [`Service`] →
//! HTTP with graceful shutdown, plus the background worker that retries queued onboardings.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use alloy::primitives::Address;
use chaincall_chain::{
    ChainError, EmbeddedChain, KeystoreChain, PrivateKeySigner, RpcChain, RpcConfig,
};
use chaincall_identity::IdentityKey;
use tokio::net::TcpListener;

use crate::api::{AppState, RateLimiter, router};
use crate::chain::{ServerChain, measure_add_client_gas};
use crate::config::{Backend, ConfigError, WalletConfig};
use crate::db::{Db, DbError};
use crate::receipt::{ReceiptPolicy, StoreKeyError};
use crate::service::{Service, ServiceParts, ServiceSettings, publish_identity};
use crate::subscriber::{SubscriberError, SubscriberTable};

/// Why the server could not start or stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// Configuration.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A key file is missing or malformed.
    #[error("key file {path}: {reason}")]
    KeyFile {
        /// The file.
        path: String,
        /// Why (never the key).
        reason: String,
    },
    /// The store key.
    #[error(transparent)]
    StoreKey(#[from] StoreKeyError),
    /// State database.
    #[error(transparent)]
    Db(#[from] DbError),
    /// SIP database.
    #[error(transparent)]
    Sip(#[from] SubscriberError),
    /// Chain.
    #[error(transparent)]
    Chain(#[from] ChainError),
    /// The server's wallet does not own the keystore: it could fund phones but never approve
    /// them, so it refuses to start rather than consume receipts it cannot complete.
    #[error(
        "the server's wallet {server} does not own the keystore {contract} (its owner is {owner}): \
         set chain.wallet_key_file to the owner's key, or transfer the ownership to {server}"
    )]
    NotOwner {
        /// The server's wallet.
        server: Address,
        /// The keystore contract.
        contract: Address,
        /// The keystore's owner.
        owner: Address,
    },
    /// The listen address (`listen` in the file) could not be bound.
    #[error("cannot listen on http {addr}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The error.
        source: std::io::Error,
    },
    /// Serving HTTP failed.
    #[error("serving HTTP")]
    Io(#[from] std::io::Error),
}

/// Reads a hex secp256k1 key file (as anvil prints keys; `0x` optional); a file that group or others
/// can read is refused.
pub fn load_wallet_key(path: &Path) -> Result<PrivateKeySigner, ServerError> {
    let bad = |reason: &str| ServerError::KeyFile {
        path: path.display().to_string(),
        reason: reason.to_owned(),
    };
    let text = read_secret(path).map_err(|e| bad(&e))?;
    text.trim()
        .trim_start_matches("0x")
        .parse::<PrivateKeySigner>()
        .map_err(|_| bad("not a hex secp256k1 private key"))
}

/// Reads the server's P-256 identity key (hex scalar), creating it with mode 0600 if missing; a file
/// that group or others can read is refused.
pub fn load_or_create_identity(path: &Path) -> Result<IdentityKey, ServerError> {
    let bad = |reason: &str| ServerError::KeyFile {
        path: path.display().to_string(),
        reason: reason.to_owned(),
    };
    if !path.exists() {
        let key = IdentityKey::generate();
        write_secret(path, &hex::encode(&*key.dangerous_secret_bytes()))
            .map_err(|e| bad(&e.to_string()))?;
        tracing::info!(path = %path.display(), "created the server identity key");
        return Ok(key);
    }
    let text = read_secret(path).map_err(|e| bad(&e))?;
    let bytes = zeroize::Zeroizing::new(
        hex::decode(text.trim().trim_start_matches("0x")).map_err(|_| bad("not hex"))?,
    );
    IdentityKey::from_secret_bytes(&bytes).map_err(|_| bad("not a P-256 secret key"))
}

/// Reads a secret file, refusing one that group or others can read; the error is the reason only
/// (callers name the path).
fn read_secret(path: &Path) -> Result<zeroize::Zeroizing<String>, String> {
    chaincall_identity::read_secret_file(path).map_err(|e| match e {
        chaincall_identity::SecretFileError::Io { source, .. } => source.to_string(),
        other => other.to_string(),
    })
}

/// Writes a secret file readable by its owner only (created with mode 0600; an existing file is
/// never overwritten).
pub fn write_secret(path: &Path, contents: &str) -> std::io::Result<()> {
    let mut text = zeroize::Zeroizing::new(String::with_capacity(contents.len() + 1));
    text.push_str(contents);
    text.push('\n');
    chaincall_identity::write_secret_file(
        path,
        text.as_bytes(),
        chaincall_identity::Overwrite::Refuse,
    )
    .map_err(|e| match e {
        chaincall_identity::SecretFileError::Io { source, .. } => source,
        other => std::io::Error::other(other.to_string()),
    })
}

/// Builds the service for `chain` and `contract` from the configuration: databases (migrated),
/// keys, receipt policy, measured gas, identity published, signer task started, and queued work
/// from before a restart resumed once.
pub async fn build_service<C: ServerChain>(
    config: &WalletConfig,
    chain: Arc<C>,
    contract: Address,
) -> Result<Arc<Service<C>>, ServerError> {
    let wallet = load_wallet_key(&config.chain.wallet_key_file)?;
    let identity = load_or_create_identity(&config.identity.key_file)?;
    let policy = ReceiptPolicy::new(
        &config.store_public_key()?,
        &config.store.package_name,
        &config.store.product_id,
    )?;
    let db = Db::open(crate::db::connect(&config.database.url).await?).await?;
    let sip = SubscriberTable::new(crate::db::connect(&config.sip.database_url).await?);
    if config.sip.create_table {
        sip.ensure_schema().await?;
    } else {
        sip.ensure_columns().await?;
    }
    // Old databases held the SIP password in clear: hashed and blanked before serving.
    let migrated = sip
        .migrate_clear_passwords(&config.sip.domain, config.realm())
        .await?;
    if migrated > 0 {
        tracing::info!(
            rows = migrated,
            "SIP database: clear-text passwords replaced by their HA1 hashes"
        );
    }
    let add_client_gas = measure_add_client_gas().await?;
    let owner = chain.owner(contract).await?;
    if owner != wallet.address() {
        return Err(ServerError::NotOwner {
            server: wallet.address(),
            contract,
            owner,
        });
    }
    if config.identity.publish_on_start {
        let domain = config.identity.domain.clone();
        publish_identity(&*chain, contract, &wallet, &domain, &identity.public()).await?;
        tracing::info!(domain = domain.as_str(), key = %identity.public().fingerprint(), "server identity approved on chain");
    }
    let numbers = config.numbers.build(&db, &identity, &config.randomness)?;
    let settings = ServiceSettings {
        contract,
        policy,
        sip_domain: config.sip.domain.clone(),
        realm: config.realm().to_owned(),
        add_client_gas,
        safety_margin_percent: config.funding.safety_margin_percent,
        max_fund_wei: config.funding.max_wei,
        max_clock_skew: config.limits.max_clock_skew,
        request_wait: config.limits.request_wait,
        admin_token: config.admin_token()?,
        replace_after: config.fees.replace_after,
        bump_percent: config.fees.bump_percent,
    };
    let service = Service::start(ServiceParts {
        chain,
        db,
        identity,
        wallet,
        sip,
        numbers,
        settings,
    });
    tracing::info!(server_wallet = %service.server_address(), %contract, add_client_gas, numbers = service.numbers().kind(), "wallet service ready");
    Ok(service)
}

/// Serves the API on `listener` until `shutdown` resolves, then drains requests (up to 10 s) and
/// stops the worker.
pub async fn serve<C: ServerChain>(
    listener: TcpListener,
    service: Arc<Service<C>>,
    config: &WalletConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let worker = tokio::spawn(service.clone().run_worker(config.worker_interval, stop_rx));
    let state = Arc::new(AppState {
        service,
        limiter: RateLimiter::new(config.limits.requests_per_second, config.limits.burst),
    });
    let app = router(state, config.limits.max_body_bytes);
    let (drained_tx, drained_rx) = tokio::sync::oneshot::channel::<()>();
    let graceful = async move {
        shutdown.await;
        tracing::info!("shutting down: draining requests");
        let _ = drained_tx.send(());
    };
    let server = axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(graceful);
    let server = tokio::spawn(async move { server.await });
    // Bound the drain: requests waiting on the chain must not hold shutdown forever.
    let result = tokio::select! {
        r = server => r.map_err(|e| std::io::Error::other(e.to_string()))?,
        _ = async { let _ = drained_rx.await; tokio::time::sleep(Duration::from_secs(10)).await } => Ok(()),
    };
    let _ = stop_tx.send(true);
    let _ = worker.await;
    tracing::info!("wallet stopped");
    result.map_err(ServerError::Io)
}

/// `chaincall wallet serve`: builds the chain backend the configuration names, the service, and
/// serves until `shutdown` resolves.
pub async fn run(
    config: WalletConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| ServerError::Bind {
            addr: config.listen,
            source,
        })?;
    match config.chain.backend {
        Backend::Embedded => {
            let chain = Arc::new(EmbeddedChain::default());
            let wallet = load_wallet_key(&config.chain.wallet_key_file)?;
            let contract = chain
                .deploy(&wallet)
                .await?
                .contract_address
                .ok_or_else(|| ChainError::BadResponse {
                    reason: "deployment without an address".into(),
                })?;
            tracing::info!(%contract, "keystore deployed on the embedded chain");
            let service = build_service(&config, chain, contract).await?;
            announce(&listener)?;
            serve(listener, service, &config, shutdown).await
        }
        Backend::Rpc => {
            // validate() guarantees both are present for the rpc backend.
            let url = config.chain.rpc_url.clone().unwrap_or_default();
            let contract = config.chain.contract.unwrap_or_default();
            let rpc = RpcConfig {
                expected_chain_id: config.chain.chain_id,
                confirmations: config.chain.confirmations,
                ..RpcConfig::default()
            };
            let chain = Arc::new(connect_with_retry(&url, rpc).await?);
            let service = build_service(&config, chain, contract).await?;
            announce(&listener)?;
            serve(listener, service, &config, shutdown).await
        }
    }
}

fn announce(listener: &TcpListener) -> Result<(), ServerError> {
    let addr = listener.local_addr()?;
    tracing::info!(%addr, "wallet server listening");
    // One machine-readable line on stdout for scripts and tests.
    println!("listening http://{addr}");
    Ok(())
}

/// Connects to the node, retrying with back-off while it is down (up to about a minute).
async fn connect_with_retry(url: &str, config: RpcConfig) -> Result<RpcChain, ChainError> {
    let mut delay = Duration::from_millis(200);
    let mut last = None;
    for _ in 0..10 {
        match RpcChain::connect(url, config.clone()).await {
            Ok(c) => return Ok(c),
            Err(e @ ChainError::NodeDown { .. }) => {
                tracing::warn!(error = %e, "node down; retrying");
                last = Some(e);
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(10));
            }
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or(ChainError::NodeDown {
        url: url.to_owned(),
        reason: "unreachable".into(),
    }))
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn chmod(path: &Path, mode: u32) {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn key_files_readable_by_others_are_refused_with_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        // The funding wallet's key, as an operator would paste it from anvil.
        let wallet = dir.path().join("wallet.key");
        write_secret(
            &wallet,
            "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
        )
        .unwrap();
        load_wallet_key(&wallet).unwrap();
        chmod(&wallet, 0o644);
        let err = load_wallet_key(&wallet).unwrap_err().to_string();
        assert!(err.contains("mode 0644"), "{err}");
        assert!(
            err.contains(&format!("chmod 600 {}", wallet.display())),
            "{err}"
        );

        // The server's identity key: created 0600, refused once opened up.
        let identity = dir.path().join("identity.key");
        let key = load_or_create_identity(&identity).unwrap();
        let mode = std::fs::metadata(&identity).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(
            load_or_create_identity(&identity).unwrap().public(),
            key.public()
        );
        chmod(&identity, 0o640);
        let err = load_or_create_identity(&identity).unwrap_err().to_string();
        assert!(err.contains("mode 0640"), "{err}");
        assert!(
            err.contains(&format!("chmod 600 {}", identity.display())),
            "{err}"
        );
    }

    /// The bind error names the address and leaves the OS reason to `source()`, so `{err:#}`
    /// says "Address already in use" once.
    #[test]
    fn bind_error_names_the_address_and_not_its_source() {
        let err = ServerError::Bind {
            addr: "127.0.0.1:8547".parse().unwrap(),
            source: std::io::Error::from(std::io::ErrorKind::AddrInUse),
        };
        assert_eq!(err.to_string(), "cannot listen on http 127.0.0.1:8547");
        let source = std::error::Error::source(&err).map(ToString::to_string);
        assert_eq!(source.as_deref(), Some("address in use"));
    }
}
