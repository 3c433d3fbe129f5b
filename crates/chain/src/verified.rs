//! Verified key lookups: `getClient` answered from `eth_getProof` and checked against a trusted block
//! header, so a phone need not trust its RPC provider (DESIGN.md, "verified lookups"; paper 000
//! §III.B).
//!
//! A lookup is three steps, each replaceable:
//!
//! 1. **Which header to trust** — a [`HeaderTrust`]: a pinned checkpoint hash plus the header chain
//!    from it ([`HeaderTrust::checkpoint`]), agreement of k of n RPC endpoints on the block hash
//!    ([`HeaderTrust::quorum`]), or any [`HeaderOracle`] (the slot for a Helios-style consensus light
//!    client). Verified headers are cached inside the trust, so a phone that looks up at every call
//!    only fetches the headers mined since its last lookup.
//! 2. **Fetch** — the entry's two storage slots ([`layout::entry_slots`]) with
//!    [`KeystoreChain::get_proof`] at that block.
//! 3. **Verify** — [`verify_entry`], sans-IO: the account proof against the header's state root, the
//!    contract's code hash against the committed keystore bytecode, each storage proof against the
//!    account's storage root, then the entry is decoded from the *proven* words. Proofs of absence
//!    (an unknown number) verify too and give [`KeyStatus::Unknown`].
//!
//! [`get_client_verified`] runs the three; any mismatch is a [`VerifyError`] saying what failed, and
//! no entry is returned. [`PinnedLookup`] adds key continuity on top (`chaincall_identity::continuity`):
//! a key seen before is pinned; a rotation moves the pin only once proven by state proofs of the entry
//! before and after it, against headers the trust vouches for (otherwise the user decides: see
//! [`LookupError::UnconfirmedKeyChange`]); a proven revocation is reported, and so is a proven
//! re-registration after one (device recovery); any other key change is refused.
//!
//! What each trust mode does and does not protect against: `docs/verified-lookups.md` and
//! [`chaincall_proof::header`].
//!
//! ```no_run
//! use std::sync::Arc;
//! use chaincall_chain::{ClientId, KeystoreChain, RpcChain, RpcConfig};
//! use chaincall_chain::verified::{HeaderTrust, get_client_verified};
//! use chaincall_identity::IdentityName;
//! # async fn demo(contract: alloy::primitives::Address, checkpoint: alloy::primitives::B256)
//! # -> Result<(), Box<dyn std::error::Error>> {
//! let chain = RpcChain::connect("http://127.0.0.1:8545", RpcConfig::default()).await?;
//! // Pinned in the app: block 0's hash (or any later block's).
//! let trust = Arc::new(HeaderTrust::checkpoint(0, checkpoint));
//! let id = ClientId::of(&IdentityName::parse("+15551234567")?);
//! let found = get_client_verified(&chain, contract, id, &trust, None).await?;
//! println!("{:?} at block {} ({} proof bytes)", found.entry.status, found.block_number, found.proof_bytes);
//! # Ok(()) }
//! ```

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use alloy::consensus::Header;
use alloy::eips::BlockNumberOrTag;
use alloy::primitives::{Address, B256, keccak256};
use alloy::providers::{Provider, RootProvider};
use alloy::rpc::types::EIP1186AccountProofResponse;
use alloy::transports::http::reqwest::Url;
use chaincall_identity::continuity::{
    ContinuityError, Evidence, KeyPins, Observation, Pin as KeyPin, PinUpdate, RecordedChange,
};
use chaincall_identity::{IdentityName, KeyStatus, PublicIdentityKey};
use chaincall_proof::header::{
    quorum_hash, verify_ancestors, verify_checkpoint_chain, verify_descendants, verify_header_hash,
};
use chaincall_proof::{proof_size_bytes, verify_account_proof};

pub use chaincall_proof::header::TrustedHeader;
pub use chaincall_proof::{HeaderError, ProofError};

use crate::layout::{self, LayoutError};
use crate::{ChainError, Change, ClientEntry, ClientId, KeystoreChain};

/// A keystore entry proven against a trusted block header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedEntry {
    /// The entry, decoded from proven storage (unknown when the slots are proven absent).
    pub entry: ClientEntry,
    /// The block whose state it was proven against.
    pub block_number: u64,
    /// That block's hash (trusted through the [`HeaderTrust`]).
    pub block_hash: B256,
    /// Bytes of trie nodes in the proof (account and storage proofs): the lookup's wire cost.
    pub proof_bytes: usize,
}

/// Why a verified lookup failed. No entry may be used from a failed lookup.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// Fetching the proof or a header failed (node down, unknown block, pruned state, ...).
    #[error("chain access failed")]
    Chain(#[from] ChainError),
    /// The block header could not be trusted (does not chain to the checkpoint, no quorum, ...).
    #[error("block header not trusted")]
    Header(#[from] HeaderError),
    /// The state proof was refused (changed value, missing or extra node, wrong root, another slot
    /// or account).
    #[error("state proof refused")]
    Proof(#[from] ProofError),
    /// The proof shows no account at the keystore address at this block.
    #[error("no keystore at {address} in block {block}: the state proves the account absent")]
    NoContract {
        /// The configured keystore address.
        address: Address,
        /// The block.
        block: u64,
    },
    /// The proven account runs other code than the committed keystore, so its storage layout means
    /// nothing to us.
    #[error(
        "{address} runs code with hash {got}, not the keystore's {expected}; refusing to read its storage"
    )]
    WrongCode {
        /// The configured keystore address.
        address: Address,
        /// The proven code hash.
        got: B256,
        /// keccak-256 of the committed runtime bytecode.
        expected: B256,
    },
    /// The proven storage words are not an entry this contract writes.
    #[error("proven storage does not decode to an entry")]
    Layout(#[from] LayoutError),
    /// The header fetched for one block number describes another.
    #[error("asked for the header of block {asked}, got block {got}")]
    WrongHeader {
        /// The number asked for.
        asked: u64,
        /// The number in the header.
        got: u64,
    },
    /// Verifying this block from the nearest trusted header would need too many header fetches;
    /// move the checkpoint closer.
    #[error(
        "block {block} is {distance} headers from the nearest trusted header (limit {limit}); pin a newer checkpoint"
    )]
    TooFar {
        /// The block asked for.
        block: u64,
        /// Headers that would have to be fetched.
        distance: u64,
        /// [`MAX_HEADER_FETCH`].
        limit: u64,
    },
}

/// The most headers one lookup fetches to link a block to the nearest trusted header.
pub const MAX_HEADER_FETCH: u64 = 100_000;

/// Headers kept in a trust's cache (older ones are dropped and re-linked on demand).
pub const HEADER_CACHE: usize = 4096;

/// A boxed, sendable future (what object-safe traits here return).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Object-safe header fetching: what a [`HeaderOracle`] may ask the chain for.
pub trait HeaderSource: Send + Sync {
    /// The (unverified) header of block `number`.
    fn header(&self, number: u64) -> BoxFuture<'_, Result<Header, ChainError>>;
}

/// A [`KeystoreChain`] seen as a [`HeaderSource`].
#[derive(Debug)]
pub struct ChainHeaders<'a, C: ?Sized>(pub &'a C);

impl<C: KeystoreChain + ?Sized> HeaderSource for ChainHeaders<'_, C> {
    fn header(&self, number: u64) -> BoxFuture<'_, Result<Header, ChainError>> {
        Box::pin(self.0.block_header(number))
    }
}

/// Decides which header of a given height to trust. Implement this to plug in another trust model
/// (a Helios-style consensus light client verifying sync-committee signatures would return the
/// execution header it proved); wrap it with [`HeaderTrust::custom`].
pub trait HeaderOracle: Send + Sync + fmt::Debug {
    /// The trusted header at `number`, fetching headers through `source` as needed. Must only
    /// return a header whose hash it has verified by its own rules.
    fn trusted_header<'a>(
        &'a self,
        source: &'a dyn HeaderSource,
        number: u64,
    ) -> BoxFuture<'a, Result<TrustedHeader, VerifyError>>;

    /// Whether a header this oracle returns for block `number` is vouched for by the trust anchor
    /// itself — a provider cannot have made it up — rather than merely linked to it by parent
    /// hashes. Only state proven against such headers may move a key pin without asking the user
    /// ([`PinnedLookup`]). The default, `false`, is the safe answer for an oracle that cannot tell.
    fn confirms(&self, number: u64) -> bool {
        let _ = number;
        false
    }
}

/// Which block headers a verified lookup trusts. Share it (`Arc<HeaderTrust>`) across lookups: it
/// caches the headers it has verified.
#[derive(Debug)]
pub struct HeaderTrust {
    oracle: Box<dyn HeaderOracle>,
}

impl HeaderTrust {
    /// Trust anchored in a pinned block hash: block `number` must hash to `hash`, and every other
    /// block is linked to it by parent hashes (forwards to newer blocks, backwards to older ones).
    /// Only headers not yet verified are fetched.
    ///
    /// Blocks up to the pinned one are fully protected. Newer blocks are only checked to descend
    /// from it: the newest header, which nothing links to yet, can be forged by the provider (see
    /// `docs/verified-lookups.md`); a forgery shows once an honest descendant is seen. So only
    /// blocks up to the pinned one are [confirmed](Self::confirms): a key change proven after it
    /// never moves a pin without the user.
    pub fn checkpoint(number: u64, hash: B256) -> Self {
        Self::custom(CheckpointOracle {
            number,
            hash,
            cache: Mutex::new(BTreeMap::new()),
        })
    }

    /// Trust by agreement: at least `k` of the `endpoints` (JSON-RPC URLs, independently operated)
    /// must return a header with the same hash for the block.
    ///
    /// Each server counts once: endpoints are compared by host and port (scheme, path, query and
    /// credentials ignored, so one provider under two API keys is one server), and a repeated one
    /// is refused ([`QuorumConfigError::DuplicateEndpoint`]) rather than silently counted twice.
    /// `k` must be a strict majority of the distinct endpoints. Two names for one machine (a
    /// hostname and its address, a proxy, a reseller of another provider's node) cannot be told
    /// apart here: independence is the operator's to check.
    pub fn quorum(endpoints: Vec<String>, k: usize) -> Result<Self, QuorumConfigError> {
        let mut servers: Vec<(String, RootProvider)> = Vec::with_capacity(endpoints.len());
        for (index, text) in endpoints.iter().enumerate() {
            let url: Url = text
                .trim()
                .parse()
                .map_err(|_| QuorumConfigError::BadEndpoint { index })?;
            let server = server_of(&url).ok_or(QuorumConfigError::BadEndpoint { index })?;
            if let Some(first) = servers.iter().position(|(s, _)| *s == server) {
                return Err(QuorumConfigError::DuplicateEndpoint {
                    server,
                    first,
                    index,
                });
            }
            servers.push((server, RootProvider::new_http(url)));
        }
        let n = servers.len();
        if k == 0 || k > n || k * 2 <= n {
            return Err(QuorumConfigError::BadQuorum {
                required: k,
                endpoints: n,
            });
        }
        Ok(Self::custom(QuorumOracle {
            endpoints: servers,
            k,
            cache: Mutex::new(BTreeMap::new()),
        }))
    }

    /// Any other trust model, such as a consensus light client.
    pub fn custom(oracle: impl HeaderOracle + 'static) -> Self {
        Self {
            oracle: Box::new(oracle),
        }
    }

    /// Whether headers at `number` are vouched for by the trust anchor itself
    /// ([`HeaderOracle::confirms`]): in checkpoint mode, blocks at or before the checkpoint; in
    /// quorum mode, every block the quorum agrees on. Key changes are only honoured automatically
    /// when proven against such headers.
    pub fn confirms(&self, number: u64) -> bool {
        self.oracle.confirms(number)
    }

    /// The trusted header at `number`, fetched through `source` where needed.
    pub async fn trusted_header(
        &self,
        source: &dyn HeaderSource,
        number: u64,
    ) -> Result<TrustedHeader, VerifyError> {
        let header = self.oracle.trusted_header(source, number).await?;
        if header.number != number {
            return Err(VerifyError::WrongHeader {
                asked: number,
                got: header.number,
            });
        }
        Ok(header)
    }
}

type HeaderCache = Mutex<BTreeMap<u64, TrustedHeader>>;

fn lock(cache: &HeaderCache) -> MutexGuard<'_, BTreeMap<u64, TrustedHeader>> {
    // The cache holds only verified headers and is updated in one insert per header, so a panic
    // elsewhere cannot leave it inconsistent.
    cache
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn remember(cache: &HeaderCache, headers: &[TrustedHeader]) {
    let mut cache = lock(cache);
    for header in headers {
        cache.insert(header.number, *header);
    }
    while cache.len() > HEADER_CACHE {
        cache.pop_first();
    }
}

async fn fetch(source: &dyn HeaderSource, number: u64) -> Result<Header, VerifyError> {
    let header = source.header(number).await?;
    if header.number != number {
        return Err(VerifyError::WrongHeader {
            asked: number,
            got: header.number,
        });
    }
    Ok(header)
}

/// [`HeaderTrust::checkpoint`].
#[derive(Debug)]
struct CheckpointOracle {
    number: u64,
    hash: B256,
    cache: HeaderCache,
}

impl CheckpointOracle {
    async fn resolve(
        &self,
        source: &dyn HeaderSource,
        number: u64,
    ) -> Result<TrustedHeader, VerifyError> {
        let (hit, below, above) = {
            let cache = lock(&self.cache);
            (
                cache.get(&number).copied(),
                cache.range(..number).next_back().map(|(_, h)| *h),
                cache.range(number..).next().map(|(_, h)| *h),
            )
        };
        if let Some(header) = hit {
            return Ok(header);
        }
        let (below, above) = if below.is_none() && above.is_none() {
            // Nothing verified yet: the pinned block itself comes first.
            let pinned = verify_checkpoint_chain(self.hash, &[fetch(source, self.number).await?])?;
            remember(&self.cache, &[pinned]);
            if pinned.number == number {
                return Ok(pinned);
            }
            if pinned.number < number {
                (Some(pinned), None)
            } else {
                (None, Some(pinned))
            }
        } else {
            (below, above)
        };
        // Link from the nearest trusted header: forwards from below (the common case, new blocks),
        // otherwise backwards from above.
        let forward = below.map(|b| (number - b.number, b));
        let backward = above.map(|a| (a.number - number, a));
        let use_forward = match (forward, backward) {
            (Some((f, _)), Some((b, _))) => f <= b,
            (Some(_), None) => true,
            _ => false,
        };
        if use_forward {
            let (distance, anchor) = forward.ok_or(HeaderError::Empty)?;
            check_distance(number, distance)?;
            let mut headers = Vec::with_capacity(usize::try_from(distance).unwrap_or(0));
            for n in anchor.number + 1..=number {
                headers.push(fetch(source, n).await?);
            }
            let trusted = verify_descendants(&anchor, &headers)?;
            remember(&self.cache, &trusted);
            trusted.last().copied().ok_or(HeaderError::Empty.into())
        } else {
            let (distance, anchor) = backward.ok_or(HeaderError::Empty)?;
            check_distance(number, distance)?;
            let mut headers = Vec::with_capacity(usize::try_from(distance).unwrap_or(0));
            for n in (number..anchor.number).rev() {
                headers.push(fetch(source, n).await?);
            }
            let trusted = verify_ancestors(&anchor, &headers)?;
            remember(&self.cache, &trusted);
            trusted.last().copied().ok_or(HeaderError::Empty.into())
        }
    }
}

fn check_distance(block: u64, distance: u64) -> Result<(), VerifyError> {
    if distance > MAX_HEADER_FETCH {
        return Err(VerifyError::TooFar {
            block,
            distance,
            limit: MAX_HEADER_FETCH,
        });
    }
    Ok(())
}

impl HeaderOracle for CheckpointOracle {
    fn trusted_header<'a>(
        &'a self,
        source: &'a dyn HeaderSource,
        number: u64,
    ) -> BoxFuture<'a, Result<TrustedHeader, VerifyError>> {
        Box::pin(self.resolve(source, number))
    }

    fn confirms(&self, number: u64) -> bool {
        // The pinned hash commits to its block and, through parent hashes, to every ancestor;
        // newer headers are only linked to it, and the newest can be forged at no cost.
        number <= self.number
    }
}

/// Why a quorum configuration is refused ([`HeaderTrust::quorum`]). Endpoints are named by their
/// position and server only: URLs may carry API keys.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum QuorumConfigError {
    /// The endpoint is not an `http` or `https` URL with a host.
    #[error("quorum endpoint #{index} is not an http(s) URL with a host")]
    BadEndpoint {
        /// Position in the list (from 0).
        index: usize,
    },
    /// Two endpoints name the same server: counted twice, one node could make a majority alone.
    #[error(
        "quorum endpoints #{first} and #{index} are the same server ({server}); list each server once"
    )]
    DuplicateEndpoint {
        /// The server both name (`host:port`).
        server: String,
        /// Position of the first.
        first: usize,
        /// Position of the repeat.
        index: usize,
    },
    /// `required` is not a strict majority of the distinct endpoints (or exceeds them).
    #[error(
        "quorum of {required} among {endpoints} endpoints: need a strict majority and at most all of them"
    )]
    BadQuorum {
        /// Agreement asked for.
        required: usize,
        /// Distinct endpoints configured.
        endpoints: usize,
    },
}

/// The server an endpoint URL names, as compared for duplicates: lower-case host and port
/// (default port filled in), `None` for anything but http(s) with a host.
fn server_of(url: &Url) -> Option<String> {
    if !matches!(url.scheme(), "http" | "https") {
        return None;
    }
    // The URL parser already lower-cases domain names and canonicalises IP literals.
    let host = url.host_str()?.trim_end_matches('.').to_ascii_lowercase();
    let port = url.port_or_known_default()?;
    Some(format!("{host}:{port}"))
}

/// How long a quorum endpoint may take to send a header before it counts as no answer.
const QUORUM_ENDPOINT_TIMEOUT: Duration = Duration::from_secs(5);

/// [`HeaderTrust::quorum`].
struct QuorumOracle {
    /// Each configured server (`host:port`, distinct), with its provider.
    endpoints: Vec<(String, RootProvider)>,
    k: usize,
    cache: HeaderCache,
}

impl fmt::Debug for QuorumOracle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QuorumOracle")
            .field(
                "endpoints",
                &self.endpoints.iter().map(|(u, _)| u).collect::<Vec<_>>(),
            )
            .field("k", &self.k)
            .finish_non_exhaustive()
    }
}

/// One endpoint's header for `number`, or `None` if it fails, lacks the block, or sends a header
/// that does not hash to the block hash it names.
async fn endpoint_header(provider: RootProvider, number: u64) -> Option<Header> {
    let block = provider
        .get_block_by_number(BlockNumberOrTag::Number(number))
        .await
        .ok()??;
    let header = block.header;
    (header.inner.number == number && header.inner.hash_slow() == header.hash)
        .then_some(header.inner)
}

impl QuorumOracle {
    async fn resolve(&self, number: u64) -> Result<TrustedHeader, VerifyError> {
        if let Some(header) = lock(&self.cache).get(&number) {
            return Ok(*header);
        }
        // Ask every endpoint at once. The answer is settled as soon as k agree (k is a strict
        // majority, so no later answers can outvote them); an endpoint that hangs counts as no
        // answer after QUORUM_ENDPOINT_TIMEOUT instead of stalling the lookup.
        let mut tasks = tokio::task::JoinSet::new();
        for (index, (_, provider)) in self.endpoints.iter().enumerate() {
            let provider = provider.clone();
            tasks.spawn(async move {
                let header = tokio::time::timeout(
                    QUORUM_ENDPOINT_TIMEOUT,
                    endpoint_header(provider, number),
                )
                .await
                .ok()
                .flatten();
                (index, header)
            });
        }
        let mut headers: Vec<Option<Header>> = vec![None; self.endpoints.len()];
        let mut hashes: Vec<Option<B256>> = vec![None; self.endpoints.len()];
        while let Some(joined) = tasks.join_next().await {
            if let Ok((index, header)) = joined {
                hashes[index] = header.as_ref().map(Header::hash_slow);
                headers[index] = header;
                if quorum_hash(number, &hashes, self.k).is_ok() {
                    break;
                }
            }
        }
        // Dropping the set cancels the endpoints still being asked.
        drop(tasks);
        let agreed = quorum_hash(number, &hashes, self.k)?;
        let header = headers
            .iter()
            .flatten()
            .find(|h| h.hash_slow() == agreed)
            .ok_or(HeaderError::Empty)?;
        let trusted = verify_header_hash(header, agreed)?;
        remember(&self.cache, &[trusted]);
        Ok(trusted)
    }
}

impl HeaderOracle for QuorumOracle {
    fn trusted_header<'a>(
        &'a self,
        _source: &'a dyn HeaderSource,
        number: u64,
    ) -> BoxFuture<'a, Result<TrustedHeader, VerifyError>> {
        Box::pin(self.resolve(number))
    }

    fn confirms(&self, _number: u64) -> bool {
        // Every header this oracle returns carries a strict majority's agreement.
        true
    }
}

/// keccak-256 of the committed keystore runtime bytecode: the code hash a genuine keystore account
/// proves.
pub fn keystore_code_hash() -> B256 {
    static HASH: OnceLock<B256> = OnceLock::new();
    *HASH.get_or_init(|| keccak256(crate::contract::runtime_bytecode()))
}

/// The storage keys of `id`'s entry, as `eth_getProof` takes them.
pub fn entry_slot_keys(id: &ClientId) -> [B256; layout::ENTRY_SLOTS] {
    layout::entry_slots(id).map(B256::from)
}

/// Verifies an `eth_getProof` answer for `id`'s entry slots in `contract` against a trusted header
/// and decodes the entry from the proven values. Sans-IO: the check behind [`get_client_verified`].
///
/// Refused: an answer for another account, an account proof or storage proof that does not lead
/// from the trusted roots to the claimed values (changed value, missing or extra node, wrong root),
/// proofs for other slots or missing ones, an absent contract or one running other code.
pub fn verify_entry(
    header: &TrustedHeader,
    contract: Address,
    id: ClientId,
    answer: &EIP1186AccountProofResponse,
) -> Result<VerifiedEntry, VerifyError> {
    let account = verify_account_proof(header.state_root, contract, answer)?;
    if !account.exists {
        return Err(VerifyError::NoContract {
            address: contract,
            block: header.number,
        });
    }
    if account.code_hash != keystore_code_hash() {
        return Err(VerifyError::WrongCode {
            address: contract,
            got: account.code_hash,
            expected: keystore_code_hash(),
        });
    }
    let values = account.verify_storage(answer, &entry_slot_keys(&id))?;
    let words = [values[0], values[1]];
    let stored = layout::decode_entry(id, words)?;
    Ok(VerifiedEntry {
        entry: stored.entry,
        block_number: header.number,
        block_hash: header.hash,
        proof_bytes: proof_size_bytes(answer),
    })
}

/// `getClient` with proof: the entry for `id` at `block` (`None` = the chain's latest block), proven
/// against a header `trust` accepts. The header and the proof are fetched concurrently.
pub async fn get_client_verified<C: KeystoreChain + ?Sized>(
    chain: &C,
    contract: Address,
    id: ClientId,
    trust: &HeaderTrust,
    block: Option<u64>,
) -> Result<VerifiedEntry, VerifyError> {
    let number = match block {
        Some(number) => number,
        None => chain.block_number().await?,
    };
    let slots = entry_slot_keys(&id);
    let source = ChainHeaders(chain);
    let (header, answer) = tokio::join!(
        trust.trusted_header(&source, number),
        chain.get_proof(contract, &slots, number)
    );
    verify_entry(&header?, contract, id, &answer?)
}

/// Why a pinned lookup refused an answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LookupError {
    /// The lookup itself could not be verified.
    #[error(transparent)]
    Verify(#[from] VerifyError),
    /// The answer is proven but breaks key continuity (unrecorded key change, stale, revoked).
    #[error(transparent)]
    Continuity(#[from] ContinuityError),
    /// The chain's history of the entry could not be read.
    #[error("cannot read the entry's history: {0}")]
    History(ChainError),
    /// The key differs from the pin and the rotation is consistent with proven state, but not
    /// proven against headers the trust vouches for (checkpoint mode after the checkpoint, or the
    /// provider no longer has the state). The pin did not move; the user may accept the change
    /// with [`PinnedLookup::accept_key_change`] after checking it another way.
    #[error("{0}")]
    UnconfirmedKeyChange(Box<UnconfirmedKeyChange>),
    /// [`PinnedLookup::accept_key_change`] was given a change from a pin that has moved since.
    #[error(
        "{name}: the key change to accept starts from a key that is no longer pinned; look it up again"
    )]
    KeyChangeOutdated {
        /// The identity.
        name: IdentityName,
    },
}

/// Why a key change could not be confirmed automatically.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum UnconfirmedReason {
    /// The rotation's block is only linked to the trust anchor by parent hashes: in checkpoint
    /// mode, a block after the checkpoint, which a lying provider can forge with any state.
    OnlyLinked {
        /// The first block of the rotation proof the trust does not vouch for.
        block: u64,
    },
    /// The provider no longer holds the state of the rotation's block (a pruning node).
    StateUnavailable {
        /// The block whose state is gone.
        block: u64,
    },
    /// More rotations since the last lookup than one lookup proves ([`MAX_PROVEN_ROTATIONS`]).
    TooManyRotations,
}

impl fmt::Display for UnconfirmedReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::OnlyLinked { block } => write!(
                f,
                "block {block} is only linked to the trust anchor, not vouched for by it"
            ),
            Self::StateUnavailable { block } => {
                write!(f, "the provider no longer has the state of block {block}")
            }
            Self::TooManyRotations => write!(
                f,
                "more than {MAX_PROVEN_ROTATIONS} rotations since the last lookup"
            ),
        }
    }
}

/// A key change a pinned lookup will not honour on its own: what to show the user, and what
/// [`PinnedLookup::accept_key_change`] takes if they accept it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnconfirmedKeyChange {
    /// The identity.
    pub name: IdentityName,
    /// The pinned key (still pinned).
    pub pinned: PublicIdentityKey,
    /// The key the lookup proved, against a header the trust does not fully vouch for.
    pub seen: PublicIdentityKey,
    /// The block `seen` was proven at.
    pub block: u64,
    /// The wallet bound to the entry there.
    pub wallet: Option<Address>,
    /// The rotations the provider's events claim (oldest first), each consistent with state proofs
    /// of the entry before and after it, though not against vouched-for headers.
    pub claimed: Vec<RecordedChange>,
    /// Why it is not confirmed.
    pub reason: UnconfirmedReason,
}

impl fmt::Display for UnconfirmedKeyChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}'s key changed from {} to {} (block {}), but the change is not confirmed: {}; the pin stays until the user accepts it",
            self.name,
            self.pinned.fingerprint(),
            self.seen.fingerprint(),
            self.block,
            self.reason
        )
    }
}

/// The most rotations one pinned lookup proves (two state proofs each) before leaving the change
/// to the user.
pub const MAX_PROVEN_ROTATIONS: usize = 16;

/// A verified lookup that passed the key-continuity check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinnedEntry {
    /// The proven entry.
    pub verified: VerifiedEntry,
    /// What happened to the pin: first pinned, unchanged, moved by a rotation, revoked, not pinned.
    pub update: PinUpdate,
    /// Key changes since this identity's previous lookup (empty on the first lookup and whenever
    /// the pinned key is proven unchanged), oldest first: what to report to the user. Rotations
    /// are listed only once proven (state proofs before and after, against vouched-for headers);
    /// revocations come from the contract's events, the revoked status itself being proven.
    pub changes: Vec<RecordedChange>,
}

impl PinnedEntry {
    /// The key a caller may encrypt to: approved, proven, and continuous with what was seen before.
    pub fn usable_key(&self) -> Option<PublicIdentityKey> {
        self.verified.entry.approved_key()
    }
}

/// What the last accepted lookup of an identity proved (persisted with the pin:
/// [`PinnedLookup::seen`], [`PinnedLookup::restore`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    /// The block it was proven at.
    pub block: u64,
    /// The wallet bound to the entry there.
    pub wallet: Option<Address>,
}

/// The phone's lookup cache: verified lookups plus key pinning (`KeyPins`).
///
/// Every lookup is proven ([`get_client_verified`]). The first approved key seen is pinned. A later
/// key must equal the pin, or be reached from it by rotations that are **proven**: for each, the
/// entry one block before (approved, the previous key, the same wallet) and at the rotation's block
/// (approved, the new key, the same wallet), both against headers the trust vouches for
/// ([`HeaderTrust::confirms`]). The contract's events (`eth_getLogs`, unproven) only say where to
/// look. A rotation consistent with the proofs but not against vouched-for headers — in checkpoint
/// mode, anything after the checkpoint, where a provider can forge the newest header and its
/// state — does not move the pin: the lookup fails with [`LookupError::UnconfirmedKeyChange`] and
/// the user decides ([`PinnedLookup::accept_key_change`]). A number revoked after the pin and
/// approved again for another key (the operator's device recovery) moves the pin as
/// [`PinUpdate::Reregistered`] once proven the same way: the entry not approved at the
/// revocation's block and approved with the key proven now at the approval's block. A proven key
/// change the proofs contradict or no event claims (another chain or fork, a re-registration whose
/// revocation is hidden) is refused with [`ContinuityError::UnrecordedKeyChange`]; an answer older
/// than one already seen is stale; a revocation proven on chain makes the pin refuse the identity
/// until a proven re-registration.
#[derive(Debug, Clone)]
pub struct PinnedLookup {
    contract: Address,
    pins: KeyPins,
    /// Each identity's last accepted lookup.
    seen: HashMap<IdentityName, Seen>,
}

impl PinnedLookup {
    /// A lookup cache for the keystore at `contract`, with no pins yet.
    pub fn new(contract: Address) -> Self {
        Self::with_pins(contract, KeyPins::new())
    }

    /// A lookup cache starting from pins the phone persisted.
    pub fn with_pins(contract: Address, pins: KeyPins) -> Self {
        Self {
            contract,
            pins,
            seen: HashMap::new(),
        }
    }

    /// The pins (to persist them).
    pub fn pins(&self) -> &KeyPins {
        &self.pins
    }

    /// What the last accepted lookup of `name` proved (to persist it with [`KeyPins::pin`]).
    pub fn seen(&self, name: &IdentityName) -> Option<Seen> {
        self.seen.get(name).copied()
    }

    /// Restores one identity as the phone persisted it: its pin and its last accepted lookup.
    pub fn restore(&mut self, name: &IdentityName, pin: KeyPin, seen: Option<Seen>) {
        self.pins.restore(name.clone(), pin);
        match seen {
            Some(seen) => self.seen.insert(name.clone(), seen),
            None => self.seen.remove(name),
        };
    }

    /// Checks an answer taken on the provider's word (`entry`, read at or after `block`, with no
    /// proof) against the pin, with the contract's events as the only record of a change: a
    /// different key is accepted only when a rotation event after the pin names it. Unproven
    /// answers never move the pin's block ([`KeyPins::observe`]). Returns the pin's update and the
    /// recorded changes after the pin, oldest first.
    pub async fn check_unproven<C: KeystoreChain + ?Sized>(
        &mut self,
        chain: &C,
        name: &IdentityName,
        entry: &ClientEntry,
        block: u64,
    ) -> Result<(PinUpdate, Vec<RecordedChange>), LookupError> {
        let key = entry.public_key().ok();
        let pinned = self.pins.pin(name).cloned();
        let needs_history = match (&pinned, entry.status) {
            (None, _) => false,
            (Some(KeyPin::Key { key: pinned, .. }), KeyStatus::Approved) => {
                key.as_ref() != Some(pinned)
            }
            (Some(_), _) => true,
        };
        let pin_block = match pinned {
            Some(KeyPin::Key { block, .. } | KeyPin::Revoked { block }) => Some(block),
            None => None,
        };
        let mut changes = Vec::new();
        if needs_history {
            let history = chain
                .history(self.contract, ClientId::of(name))
                .await
                .map_err(LookupError::History)?;
            changes = history
                .iter()
                .filter(|e| pin_block.is_none_or(|p| e.block_number > p) && e.block_number <= block)
                .filter_map(|e| match &e.change {
                    Change::Rotated { key_type, key, .. } => {
                        PublicIdentityKey::from_tagged(*key_type, key)
                            .ok()
                            .map(|new_key| RecordedChange::Rotated {
                                block: e.block_number,
                                new_key,
                            })
                    }
                    Change::Revoked { .. } => Some(RecordedChange::Revoked {
                        block: e.block_number,
                    }),
                    _ => None,
                })
                .collect();
            changes.sort_by_key(recorded_block);
        }
        let observation = Observation {
            status: entry.status,
            key,
            block,
            evidence: Evidence::Unproven,
        };
        let update = self.pins.observe(name, &observation, &changes)?;
        Ok((update, changes))
    }

    /// Looks `name` up at `block` (`None` = latest), verified against `trust`, and checks it against
    /// the pin. On success the pin reflects the answer; on error the pin is unchanged and the key
    /// must not be used.
    pub async fn lookup<C: KeystoreChain + ?Sized>(
        &mut self,
        chain: &C,
        trust: &HeaderTrust,
        name: &IdentityName,
        block: Option<u64>,
    ) -> Result<PinnedEntry, LookupError> {
        let id = ClientId::of(name);
        let verified = get_client_verified(chain, self.contract, id, trust, block).await?;
        let at = verified.block_number;
        // The history (an `eth_getLogs` scan) only matters when something changed since the pin:
        // a different key must be reached by rotations, and changes are reported. The common
        // case, the pinned key proven again, skips it; a first lookup pins without reporting
        // earlier changes.
        let key = verified.entry.public_key().ok();
        let pinned = self.pins.pinned_key(name).cloned();
        let revoked_pin = self.pins.revoked_at(name);
        let needs_history = match (&pinned, verified.entry.status) {
            // Revoked and approved again: only a proven re-registration brings it back.
            (None, KeyStatus::Approved) => revoked_pin.is_some(),
            (None, _) => false,
            (Some(pinned), KeyStatus::Approved) => key.as_ref() != Some(pinned),
            (Some(_), _) => true,
        };
        let history = if needs_history {
            chain
                .history(self.contract, id)
                .await
                .map_err(LookupError::History)?
        } else {
            Vec::new()
        };
        let since = self.seen.get(name).copied();
        let in_window = |block: u64| block <= at && since.is_none_or(|s| block > s.block);
        // The provider's events: where to look for proofs, never evidence on their own.
        let claimed: Vec<(u64, PublicIdentityKey)> = history
            .iter()
            .filter(|e| in_window(e.block_number))
            .filter_map(|e| match &e.change {
                Change::Rotated { key_type, key, .. } => {
                    PublicIdentityKey::from_tagged(*key_type, key)
                        .ok()
                        .map(|new_key| (e.block_number, new_key))
                }
                _ => None,
            })
            .collect();
        let revocations = history
            .iter()
            .filter(|e| in_window(e.block_number))
            .filter(|e| matches!(e.change, Change::Revoked { .. }))
            .map(|e| RecordedChange::Revoked {
                block: e.block_number,
            });
        // A proof shows what the chain holds, not how it got there: a changed key must be reached
        // from the pin by proven rotations since the last lookup. (An answer older than the last
        // one is left to the pins, which refuse it as stale.)
        let mut rotations = Vec::new();
        if (pinned.is_some() || revoked_pin.is_some())
            && since.is_none_or(|s| at >= s.block)
            && verified.entry.status == KeyStatus::Approved
            && key.is_some()
            && key != pinned
        {
            // A revocation and a later approval on record mean device recovery, not a rotation.
            let reregistration = self
                .prove_reregistration(
                    chain,
                    trust,
                    name,
                    pinned.as_ref(),
                    revoked_pin,
                    &verified,
                    &history,
                    in_window,
                )
                .await?;
            rotations = match (reregistration, &pinned) {
                (Some(change), _) => vec![change],
                (None, Some(pinned)) => {
                    self.prove_rotations(chain, trust, name, pinned, &verified, since, &claimed)
                        .await?
                }
                // Revoked pin, nothing proven: the pins refuse it.
                (None, None) => Vec::new(),
            };
        }
        let mut changes: Vec<RecordedChange> = rotations.into_iter().chain(revocations).collect();
        changes.sort_by_key(recorded_block);
        let observation = Observation {
            status: verified.entry.status,
            key,
            block: at,
            evidence: Evidence::Proven,
        };
        let update = self.pins.observe(name, &observation, &changes)?;
        self.seen.insert(
            name.clone(),
            Seen {
                block: at,
                wallet: verified.entry.wallet,
            },
        );
        Ok(PinnedEntry {
            verified,
            update,
            changes,
        })
    }

    /// Moves the pin as the user decided after a [`LookupError::UnconfirmedKeyChange`]: from
    /// `change.pinned` to `change.seen`. Refused ([`LookupError::KeyChangeOutdated`]) if the pin
    /// is no longer `change.pinned`, so an old decision cannot move a newer pin.
    pub fn accept_key_change(
        &mut self,
        change: &UnconfirmedKeyChange,
    ) -> Result<PinUpdate, LookupError> {
        if self.pins.pinned_key(&change.name) != Some(&change.pinned) {
            return Err(LookupError::KeyChangeOutdated {
                name: change.name.clone(),
            });
        }
        // The user's word stands in for the on-chain record: observed as proven, the pins accept
        // the new key.
        let observation = Observation {
            status: KeyStatus::Approved,
            key: Some(change.seen.clone()),
            block: change.block,
            evidence: Evidence::Proven,
        };
        // The claimed changes tell a re-registration from a rotation; a proven observation needs
        // nothing more to move a key pin.
        let update = self
            .pins
            .observe(&change.name, &observation, &change.claimed)?;
        self.seen.insert(
            change.name.clone(),
            Seen {
                block: change.block,
                wallet: change.wallet,
            },
        );
        Ok(update)
    }

    /// Proves a re-registration (owner-assisted device recovery): the entry revoked after the pin
    /// and the key of `now` approved after that. The events only say where to look: the latest
    /// revocation in the window (or the revocation the pin already recorded, `revoked_pin`) and
    /// the latest approval after it; state proofs must show the entry not approved at the
    /// revocation's block and approved with `now`'s key and wallet at the approval's block, both
    /// against headers the trust vouches for. `Ok(None)` when the events claim no re-registration
    /// (the caller then tries rotations); a claim the proofs contradict is an unrecorded change.
    #[allow(clippy::too_many_arguments)]
    async fn prove_reregistration<C: KeystoreChain + ?Sized>(
        &self,
        chain: &C,
        trust: &HeaderTrust,
        name: &IdentityName,
        pinned: Option<&PublicIdentityKey>,
        revoked_pin: Option<u64>,
        now: &VerifiedEntry,
        history: &[crate::HistoryEvent],
        in_window: impl Fn(u64) -> bool,
    ) -> Result<Option<RecordedChange>, LookupError> {
        let id = ClientId::of(name);
        let Some(seen) = now.entry.approved_key() else {
            return Ok(None);
        };
        let claimed_revocation = history
            .iter()
            .filter(|e| in_window(e.block_number))
            .filter(|e| matches!(e.change, Change::Revoked { .. }))
            .map(|e| e.block_number)
            .max();
        // A revoked pin is itself the record of the revocation; a key pin needs one proven now.
        let Some(revoked) = revoked_pin.or(claimed_revocation) else {
            return Ok(None);
        };
        let Some(approved) = history
            .iter()
            .filter(|e| e.block_number > revoked && e.block_number <= now.block_number)
            .filter(|e| matches!(e.change, Change::Approved { .. }))
            .map(|e| e.block_number)
            .max()
        else {
            return Ok(None);
        };
        let refused = || match pinned {
            Some(pinned) => LookupError::from(ContinuityError::UnrecordedKeyChange {
                name: name.clone(),
                pinned: pinned.fingerprint(),
                seen: seen.fingerprint(),
            }),
            None => LookupError::from(ContinuityError::Revoked {
                name: name.clone(),
                revoked_at: revoked,
            }),
        };
        let change = RecordedChange::Reregistered {
            revoked,
            block: approved,
            new_key: seen.clone(),
        };
        let unconfirmed = |reason| match pinned {
            Some(pinned) => LookupError::UnconfirmedKeyChange(Box::new(UnconfirmedKeyChange {
                name: name.clone(),
                pinned: pinned.clone(),
                seen: seen.clone(),
                block: now.block_number,
                wallet: now.entry.wallet,
                claimed: vec![change.clone()],
                reason,
            })),
            // No key pin to keep: the identity stays refused until the change can be proven.
            None => refused(),
        };
        let mut blocks = vec![approved];
        if revoked_pin.is_none() {
            blocks.push(revoked);
        }
        let mut proven = Vec::with_capacity(blocks.len());
        for block in &blocks {
            match get_client_verified(chain, self.contract, id, trust, Some(*block)).await {
                Ok(found) => proven.push(found.entry),
                Err(VerifyError::Chain(ChainError::StatePruned { number, .. })) => {
                    return Err(unconfirmed(UnconfirmedReason::StateUnavailable {
                        block: number,
                    }));
                }
                Err(e) => return Err(e.into()),
            }
        }
        let approved_entry = &proven[0];
        let shows_approval = approved_entry.approved_key().as_ref() == Some(&seen)
            && approved_entry.wallet == now.entry.wallet;
        let shows_revocation = proven
            .get(1)
            .is_none_or(|e| e.status != KeyStatus::Approved);
        if !(shows_approval && shows_revocation) {
            return Err(refused());
        }
        if let Some(block) = blocks.iter().copied().find(|b| !trust.confirms(*b)) {
            return Err(unconfirmed(UnconfirmedReason::OnlyLinked { block }));
        }
        Ok(Some(change))
    }

    /// Proves that the key of `now` was reached from `pinned` by rotations: walking back from the
    /// newest, each claimed rotation (block `b`, new key) must show in state proofs as the same
    /// wallet's approved entry holding the previous key at `b - 1` and the new key at `b`, until
    /// the previous key is the pinned one. Returns the rotations, oldest first, if every proof is
    /// against a header the trust vouches for.
    #[allow(clippy::too_many_arguments)]
    async fn prove_rotations<C: KeystoreChain + ?Sized>(
        &self,
        chain: &C,
        trust: &HeaderTrust,
        name: &IdentityName,
        pinned: &PublicIdentityKey,
        now: &VerifiedEntry,
        since: Option<Seen>,
        claimed: &[(u64, PublicIdentityKey)],
    ) -> Result<Vec<RecordedChange>, LookupError> {
        let id = ClientId::of(name);
        let wallet = now.entry.wallet;
        let Some(seen) = now.entry.approved_key() else {
            return Ok(Vec::new());
        };
        let unrecorded = || {
            LookupError::from(ContinuityError::UnrecordedKeyChange {
                name: name.clone(),
                pinned: pinned.fingerprint(),
                seen: seen.fingerprint(),
            })
        };
        let unconfirmed = |claimed: Vec<RecordedChange>, reason| {
            LookupError::UnconfirmedKeyChange(Box::new(UnconfirmedKeyChange {
                name: name.clone(),
                pinned: pinned.clone(),
                seen: seen.clone(),
                block: now.block_number,
                wallet,
                claimed,
                reason,
            }))
        };
        let floor = since.map_or(0, |s| s.block);
        let mut expected = seen.clone();
        let mut upper = now.block_number;
        let mut proven = Vec::new();
        let mut not_vouched: Option<u64> = None;
        for _ in 0..MAX_PROVEN_ROTATIONS {
            let Some(block) = claimed
                .iter()
                .rev()
                .find(|(b, k)| *b <= upper && *b > floor && *k == expected)
                .map(|(b, _)| *b)
            else {
                return Err(unrecorded());
            };
            // `block > floor >= 0`, so there is a block before it.
            let before_block = block - 1;
            let (before, after) = tokio::join!(
                get_client_verified(chain, self.contract, id, trust, Some(before_block)),
                get_client_verified(chain, self.contract, id, trust, Some(block)),
            );
            let (before, after) = match (before, after) {
                (Ok(before), Ok(after)) => (before.entry, after.entry),
                (Err(VerifyError::Chain(ChainError::StatePruned { number, .. })), _)
                | (_, Err(VerifyError::Chain(ChainError::StatePruned { number, .. }))) => {
                    proven.reverse();
                    return Err(unconfirmed(
                        proven,
                        UnconfirmedReason::StateUnavailable { block: number },
                    ));
                }
                (Err(e), _) | (_, Err(e)) => return Err(e.into()),
            };
            let previous = before.approved_key();
            let is_rotation = after.approved_key().as_ref() == Some(&expected)
                && after.wallet == wallet
                && before.wallet == wallet
                && previous.as_ref().is_some_and(|p| *p != expected);
            let Some(previous) = previous.filter(|_| is_rotation) else {
                // The event claims a rotation the proven state does not show.
                return Err(unrecorded());
            };
            proven.push(RecordedChange::Rotated {
                block,
                new_key: expected,
            });
            if not_vouched.is_none() {
                not_vouched = [before_block, block]
                    .into_iter()
                    .find(|b| !trust.confirms(*b));
            }
            if previous == *pinned {
                // The pinned key was this wallet's at the last lookup too, or the number changed
                // hands in between (revoked and registered again by another wallet).
                if since.is_some_and(|s| s.wallet != wallet) {
                    return Err(unrecorded());
                }
                proven.reverse();
                return match not_vouched {
                    None => Ok(proven),
                    Some(block) => {
                        Err(unconfirmed(proven, UnconfirmedReason::OnlyLinked { block }))
                    }
                };
            }
            expected = previous;
            upper = before_block;
        }
        proven.reverse();
        Err(unconfirmed(proven, UnconfirmedReason::TooManyRotations))
    }
}

fn recorded_block(change: &RecordedChange) -> u64 {
    match change {
        RecordedChange::Rotated { block, .. }
        | RecordedChange::Revoked { block }
        | RecordedChange::Reregistered { block, .. } => *block,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each wrapper says its own part; the cause comes from `source()` only, so the chain
    /// (what sipd, the phone and the CLI print) tells it once.
    #[test]
    fn wrapped_causes_are_told_once() {
        let layout = LayoutError::BadStatus(7);
        let cause = layout.to_string();
        let err = VerifyError::Layout(layout);
        let told = chaincall_io::ErrorChain(&err).to_string();
        assert_eq!(
            told,
            format!("proven storage does not decode to an entry: {cause}")
        );
        let header = HeaderError::Empty;
        let err = LookupError::Verify(VerifyError::Header(header));
        let told = chaincall_io::ErrorChain(&err).to_string();
        assert_eq!(told, "block header not trusted: no headers to verify");
    }
}
