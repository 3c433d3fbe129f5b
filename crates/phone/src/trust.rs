//! `chaincall phone trust`: the config's trusted block (`trust`, NUMBER:HASH) beside what the node
//! now says for that block number, and re-pinning it ([`repin`]).
//!
//! Every verified key lookup links the block it is proven against back to the pinned block by
//! parent hashes. When the node's history changes under the pin (a development chain restarted, a
//! node on another chain, a node that lies), every lookup fails with "block header not trusted";
//! this is where the user looks, and where the pin moves — only with `--force` over a changed
//! history, since re-pinning then trusts whatever this node says from now on.

use std::fmt;

use alloy::primitives::B256;
use chaincall_chain::{ChainError, KeystoreChain};

use crate::chain_access::ChainAccessError;
use crate::config_file::{ConfigError, PhoneFileConfig};

/// What the node says for the pinned block number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeSays {
    /// The same hash: the node's history still leads to the pin.
    Same,
    /// Another hash: the node's history for that block changed.
    Different(B256),
    /// The node has no such block: its chain is shorter than the pin (a reset chain).
    Missing,
}

/// Why the trusted block could not be shown or re-pinned.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TrustError {
    /// The node did not answer for the block.
    #[error("cannot read block {number} from {url}")]
    Chain {
        /// The block.
        number: u64,
        /// The node.
        url: String,
        /// Why.
        #[source]
        source: ChainError,
    },
    /// `--block N` names a block the node does not have.
    #[error("{url} has no block {number} yet: pin a block it has mined")]
    NoSuchBlock {
        /// The block asked for.
        number: u64,
        /// The node.
        url: String,
    },
    /// The node's history for the pinned block changed and `force` was not given.
    #[error(
        "not re-pinned: {change}. Either the chain was reset (a development node restarted: re-pin \
         with `chaincall phone trust repin --force`) or {url} serves another chain or lies (check \
         `rpc_url`); re-pinning trusts whatever this node says from now on"
    )]
    HistoryChanged {
        /// What changed, as [`Change`] says it.
        change: Change,
        /// The node.
        url: String,
    },
    /// The config could not be written.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The node could not be reached.
    #[error(transparent)]
    Access(#[from] ChainAccessError),
}

/// A pin and what the node says for its block number, said in words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Change {
    /// The pinned block number.
    pub number: u64,
    /// The pinned hash.
    pub pinned: B256,
    /// What the node now says for that number.
    pub now: NodeSays,
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Change {
            number,
            pinned,
            now,
        } = self;
        match now {
            NodeSays::Same => write!(f, "the node's block {number} is the pinned {pinned}"),
            NodeSays::Different(h) => write!(
                f,
                "the node's block {number} is now {h}, not the pinned {pinned}: its history changed"
            ),
            NodeSays::Missing => write!(
                f,
                "the node has no block {number} (pinned {pinned}): its chain is shorter than the pin"
            ),
        }
    }
}

/// The config's `trust` and what the node now says for that block.
#[derive(Debug, Clone)]
pub struct TrustStatus {
    /// The node asked (`rpc_url`).
    pub url: String,
    /// The pin and the node's answer; `None` when the config has no `trust` yet.
    pub pin: Option<Change>,
}

impl fmt::Display for TrustStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Some(change) = &self.pin else {
            return write!(
                f,
                "trust: none pinned; the next phone command pins {}'s block 0 (trust on first \
                 use), or run `chaincall phone trust repin`",
                self.url
            );
        };
        writeln!(f, "trust: {}:{}", change.number, change.pinned)?;
        let verdict = match change.now {
            NodeSays::Same => "same hash: key lookups can be proven against the pin",
            NodeSays::Different(_) | NodeSays::Missing => {
                "key lookups fail (\"block header not trusted\"). If the chain was reset, re-pin \
                 with `chaincall phone trust repin --force`; otherwise check `rpc_url`"
            }
        };
        write!(f, "{}: {change}\n{verdict}", self.url)
    }
}

/// What [`repin`] did.
#[derive(Debug, Clone)]
pub struct Repinned {
    /// The pin before, and what the node said for it.
    pub before: Option<Change>,
    /// The new pin.
    pub number: u64,
    /// Its hash.
    pub hash: B256,
}

impl Repinned {
    /// The warning for a pin forced over a changed history.
    pub fn warning(&self) -> Option<String> {
        let before = self.before.filter(|c| c.now != NodeSays::Same)?;
        Some(format!(
            "re-pinned over a changed history ({before}): the phone now trusts what this node says; \
             this is right only if you know the chain was reset"
        ))
    }
}

impl fmt::Display for Repinned {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "trust: {}:{}", self.number, self.hash)?;
        if let Some(b) = self.before {
            write!(f, " (was {}:{})", b.number, b.pinned)?;
        }
        Ok(())
    }
}

/// The hash of block `number` on `chain`, `None` when the node has no such block.
async fn hash_of<C: KeystoreChain>(
    cfg: &PhoneFileConfig,
    chain: &C,
    number: u64,
) -> Result<Option<B256>, TrustError> {
    match chain.block_header(number).await {
        Ok(h) => Ok(Some(h.hash_slow())),
        Err(ChainError::UnknownBlock { .. }) => Ok(None),
        Err(source) => Err(TrustError::Chain {
            number,
            url: cfg.rpc_url.clone(),
            source,
        }),
    }
}

/// The config's `trust` beside what `chain` now says for that block.
pub async fn status<C: KeystoreChain>(
    cfg: &PhoneFileConfig,
    chain: &C,
) -> Result<TrustStatus, TrustError> {
    let pin = match cfg.trust {
        None => None,
        Some((number, pinned)) => {
            let now = match hash_of(cfg, chain, number).await? {
                Some(h) if h == pinned => NodeSays::Same,
                Some(h) => NodeSays::Different(h),
                None => NodeSays::Missing,
            };
            Some(Change {
                number,
                pinned,
                now,
            })
        }
    };
    Ok(TrustStatus {
        url: cfg.rpc_url.clone(),
        pin,
    })
}

/// Pins the node's block `block` (default 0) as `trust`, keeping the file's comments. Refuses
/// when the node's history for the current pin changed, unless `force`.
pub async fn repin<C: KeystoreChain>(
    cfg: &mut PhoneFileConfig,
    chain: &C,
    block: Option<u64>,
    force: bool,
) -> Result<Repinned, TrustError> {
    let before = status(cfg, chain).await?.pin;
    if let Some(change) = before.filter(|c| c.now != NodeSays::Same && !force) {
        return Err(TrustError::HistoryChanged {
            change,
            url: cfg.rpc_url.clone(),
        });
    }
    let number = block.unwrap_or(0);
    let hash = hash_of(cfg, chain, number)
        .await?
        .ok_or_else(|| TrustError::NoSuchBlock {
            number,
            url: cfg.rpc_url.clone(),
        })?;
    cfg.pin_trust(number, hash)?;
    Ok(Repinned {
        before,
        number,
        hash,
    })
}

/// `chaincall phone trust`: connects to the config's node and shows the pin ([`status`]), or
/// re-pins it when `repin` is `Some((block, force))` ([`repin`]). Returns the report for stdout
/// and a warning for stderr (a pin forced over a changed history).
pub async fn run(
    cfg: &mut PhoneFileConfig,
    repin_to: Option<(Option<u64>, bool)>,
) -> Result<(String, Option<String>), TrustError> {
    let chain = cfg.chain().await?;
    Ok(match repin_to {
        None => (status(cfg, &*chain).await?.to_string(), None),
        Some((block, force)) => {
            let done = repin(cfg, &*chain, block, force).await?;
            (done.to_string(), done.warning())
        }
    })
}
