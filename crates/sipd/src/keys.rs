//! Phones' keys from the keystore contract: a [`KeyDirectory`] over any [`KeystoreChain`], for the
//! handshake responder in front of the TLS-PSK listener.
//!
//! [`KeyDirectory::lookup`] is synchronous (the handshake cores are sans-IO) but is called from the
//! async accept path, while chain reads are async. [`ChainKeyDirectory`] bridges the two with
//! [`tokio::task::block_in_place`] plus [`Handle::block_on`]: the worker thread running the handshake
//! hands its other tasks to the runtime's remaining workers and blocks on the chain read. That
//! **requires tokio's multi-thread runtime** (`chaincall sipd serve` builds one; tests use
//! `#[tokio::test(flavor = "multi_thread")]`). On a current-thread runtime `block_in_place` would
//! panic, so the lookup refuses instead with [`DirectoryError::Unavailable`]; called outside any
//! runtime it blocks on the handle captured at construction.
//!
//! With a [`HeaderTrust`] ([`ChainKeyDirectory::with_header_trust`], what `chaincall sipd serve`
//! builds from `[tls_psk] trust`), every read is a verified look-up: the entry is proven with
//! `eth_getProof` against a block header the trust accepts ([`get_client_verified`]), so a lying
//! or compromised RPC provider cannot hand sipd a key that is not the one on chain. A proof that
//! does not verify is an error, never a key. Without one, the provider's `getClient` answer is
//! believed as is (`trust = "provider"`, for a node the operator runs).
//!
//! A chain read that has not answered within the read timeout
//! ([`ChainKeyDirectory::DEFAULT_READ_TIMEOUT`]; sipd uses `[tls_psk] handshake_timeout_secs`) is
//! [`DirectoryError::Unavailable`]: the thread blocked on it is freed, and a node that hangs
//! neither holds a handshake nor a stored PSK's re-check (which takes the PSK, as for any
//! unanswered read) for ever.
//!
//! Answers are cached for a short TTL ([`ChainKeyDirectory::DEFAULT_TTL`], 5 s) so a burst of
//! reconnects costs one chain read, while a revocation on chain is honoured within the TTL. Failed
//! reads are never cached, and a handshake that fails to prove the cached key drops it
//! ([`KeyDirectory::forget`]), so a phone that has just rotated its key gets in at its next try.

use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use alloy::primitives::Address;
use chaincall_chain::verified::{HeaderTrust, get_client_verified};
use chaincall_chain::{ClientId, KeystoreChain};
use chaincall_identity::{DirectoryEntry, DirectoryError, IdentityName, KeyDirectory, KeyStatus};
use lru::LruCache;
use tokio::runtime::{Handle, RuntimeFlavor};

use crate::metrics::Metrics;

/// A [`KeyDirectory`] answering from the keystore contract on `C`, with a short-TTL cache.
pub struct ChainKeyDirectory<C> {
    chain: Arc<C>,
    contract: Address,
    handle: Handle,
    ttl: Duration,
    /// How long one chain read may take before it counts as unavailable.
    read_timeout: Duration,
    /// Verified look-ups against headers this trust accepts; `None`: the provider is believed.
    trust: Option<Arc<HeaderTrust>>,
    /// Answers by name, least recently used dropped first (names come from unauthenticated
    /// handshake messages, so the cache must stay bounded and O(1)).
    cache: Mutex<LruCache<IdentityName, (DirectoryEntry, Instant)>>,
    /// Where each chain read's latency and failure is counted, if anywhere.
    metrics: Option<Arc<Metrics>>,
}

impl<C> std::fmt::Debug for ChainKeyDirectory<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChainKeyDirectory")
            .field("contract", &self.contract)
            .field("ttl", &self.ttl)
            .field("verified", &self.trust.is_some())
            .finish()
    }
}

impl<C: KeystoreChain + 'static> ChainKeyDirectory<C> {
    /// How long an answer is reused.
    pub const DEFAULT_TTL: Duration = Duration::from_secs(5);
    /// How long one chain read may take, unless [`ChainKeyDirectory::with_read_timeout`] says.
    pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(10);
    /// Most identities cached.
    pub const DEFAULT_CAPACITY: NonZeroUsize = NonZeroUsize::new(10_000).unwrap();

    /// A directory over the keystore at `contract`, with the default TTL. Must be called inside a
    /// tokio runtime (it keeps that runtime's handle for lookups made outside one).
    pub fn new(chain: Arc<C>, contract: Address) -> Self {
        Self::with_handle(chain, contract, Handle::current())
    }

    /// Like [`ChainKeyDirectory::new`], with an explicit runtime handle.
    pub fn with_handle(chain: Arc<C>, contract: Address, handle: Handle) -> Self {
        Self {
            chain,
            contract,
            handle,
            ttl: Self::DEFAULT_TTL,
            read_timeout: Self::DEFAULT_READ_TIMEOUT,
            trust: None,
            cache: Mutex::new(LruCache::new(Self::DEFAULT_CAPACITY)),
            metrics: None,
        }
    }

    /// Proves every answer against a header `trust` accepts (see the module docs).
    pub fn with_header_trust(mut self, trust: Arc<HeaderTrust>) -> Self {
        self.trust = Some(trust);
        self
    }

    /// Counts every chain read in `metrics` (`sipd_key_lookup_seconds`,
    /// `sipd_key_lookup_errors_total`).
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Sets how long one chain read may take before it is [`DirectoryError::Unavailable`].
    pub fn with_read_timeout(mut self, timeout: Duration) -> Self {
        self.read_timeout = timeout;
        self
    }

    /// Sets the cache TTL (zero disables caching).
    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// Drops every cached answer (e.g. after a revocation event was seen).
    pub fn clear_cache(&self) {
        self.lock().clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LruCache<IdentityName, (DirectoryEntry, Instant)>> {
        // Each critical section is one map operation: a poisoned map is still consistent.
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn read(&self, name: &IdentityName) -> Result<DirectoryEntry, DirectoryError> {
        let id = ClientId::of(name);
        let entry = match &self.trust {
            Some(trust) => {
                get_client_verified(&*self.chain, self.contract, id, trust, None)
                    .await
                    .map_err(|e| {
                        DirectoryError::Unavailable(format!(
                            "keystore answer not proven: {}",
                            chaincall_io::ErrorChain(&e)
                        ))
                    })?
                    .entry
            }
            None => self
                .chain
                .get_client(self.contract, id)
                .await
                .map_err(|e| DirectoryError::Unavailable(format!("keystore read failed: {e}")))?,
        };
        if entry.status == KeyStatus::Unknown {
            return Ok(DirectoryEntry {
                status: KeyStatus::Unknown,
                key: None,
            });
        }
        match entry.public_key() {
            Ok(key) => Ok(DirectoryEntry {
                status: entry.status,
                key: Some(key),
            }),
            // An approved entry whose key we cannot read must not look usable.
            Err(e) if entry.status == KeyStatus::Approved => Err(DirectoryError::Unavailable(
                format!("approved key of {name} is unreadable: {e}"),
            )),
            Err(_) => Ok(DirectoryEntry {
                status: entry.status,
                key: None,
            }),
        }
    }

    /// [`ChainKeyDirectory::read`] within the read timeout.
    async fn read_within(&self, name: &IdentityName) -> Result<DirectoryEntry, DirectoryError> {
        match tokio::time::timeout(self.read_timeout, self.read(name)).await {
            Ok(answer) => answer,
            Err(_) => Err(DirectoryError::Unavailable(format!(
                "keystore read timed out after {:?}",
                self.read_timeout
            ))),
        }
    }

    fn block_on_read(&self, name: &IdentityName) -> Result<DirectoryEntry, DirectoryError> {
        match Handle::try_current() {
            Ok(h) if h.runtime_flavor() == RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(|| h.block_on(self.read_within(name)))
            }
            Ok(_) => Err(DirectoryError::Unavailable(
                "ChainKeyDirectory needs tokio's multi-thread runtime".into(),
            )),
            Err(_) => self.handle.block_on(self.read_within(name)),
        }
    }
}

impl<C: KeystoreChain + 'static> KeyDirectory for ChainKeyDirectory<C> {
    fn lookup(&self, name: &IdentityName) -> Result<DirectoryEntry, DirectoryError> {
        let now = Instant::now();
        if let Some((entry, at)) = self.lock().get(name)
            && now.duration_since(*at) < self.ttl
        {
            return Ok(entry.clone());
        }
        let entry = self.block_on_read(name);
        if let Some(m) = &self.metrics {
            m.key_lookups.observe(now.elapsed());
            if entry.is_err() {
                m.key_lookup_errors.inc();
            }
        }
        let entry = entry?;
        if !self.ttl.is_zero() {
            self.lock().put(name.clone(), (entry.clone(), now));
        }
        tracing::debug!(%name, status = %entry.status, "keystore lookup");
        Ok(entry)
    }

    /// A phone failed to prove the cached key (it may have just rotated): the next handshake
    /// reads the chain again instead of refusing the new key for the rest of the TTL. Costs an
    /// attacker no less than naming an uncached identity does.
    fn forget(&self, name: &IdentityName) {
        self.lock().pop(name);
    }
}
