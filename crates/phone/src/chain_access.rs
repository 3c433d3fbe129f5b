//! The chain the configuration names, and the header its key lookups are proven against: the
//! config's `trust`, or block 0 pinned on first use and written into the config.

use std::sync::Arc;

use alloy::primitives::B256;
use chaincall_chain::verified::HeaderTrust;
use chaincall_chain::{ChainError, KeystoreChain, RpcChain, RpcConfig};

use crate::config_file::{ConfigError, PhoneFileConfig};

/// Why the chain could not be reached, or its trusted header not fixed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ChainAccessError {
    /// The config's `rpc_url` did not answer (or serves another chain id).
    #[error("cannot reach the chain node {url}")]
    Unreachable {
        /// The node's URL.
        url: String,
        /// Why.
        #[source]
        source: ChainError,
    },
    /// Block 0 could not be read to pin it.
    #[error("cannot fetch block 0 to pin it")]
    Genesis(#[source] ChainError),
    /// The pinned block could not be written into the config.
    #[error("cannot add `trust` to the config")]
    Pin(#[source] ConfigError),
}

/// The header key lookups are checked against, and whether it was pinned just now.
#[derive(Debug, Clone)]
pub struct TrustedHeader {
    /// The trusted header.
    pub trust: Arc<HeaderTrust>,
    /// The hash of block 0 when it was pinned by this call (trust on first use): the caller says
    /// so, since whoever controlled the node at that moment decided what the phone trusts.
    pub pinned_now: Option<B256>,
}

impl PhoneFileConfig {
    /// Connects to the config's chain node (`rpc_url`), checking its chain id.
    pub async fn chain(&self) -> Result<Arc<RpcChain>, ChainAccessError> {
        let config = RpcConfig {
            expected_chain_id: self.chain_id,
            ..RpcConfig::default()
        };
        let chain = RpcChain::connect(&self.rpc_url, config)
            .await
            .map_err(|source| ChainAccessError::Unreachable {
                url: self.rpc_url.clone(),
                source,
            })?;
        Ok(Arc::new(chain))
    }

    /// The trusted header: the config's `trust`, or block 0 of `chain` pinned now and written into
    /// the config (trust on first use).
    pub async fn trusted_header<C: KeystoreChain>(
        &mut self,
        chain: &C,
    ) -> Result<TrustedHeader, ChainAccessError> {
        if let Some((number, hash)) = self.trust {
            return Ok(TrustedHeader {
                trust: Arc::new(HeaderTrust::checkpoint(number, hash)),
                pinned_now: None,
            });
        }
        let genesis = chain
            .block_header(0)
            .await
            .map_err(ChainAccessError::Genesis)?
            .hash_slow();
        self.pin_trust(0, genesis).map_err(ChainAccessError::Pin)?;
        Ok(TrustedHeader {
            trust: Arc::new(HeaderTrust::checkpoint(0, genesis)),
            pinned_now: Some(genesis),
        })
    }
}
