//! Errors of proof verification and header trust.

use alloy::primitives::{Address, B256};
use alloy_trie::proof::ProofVerificationError;

/// Why a state proof was refused. No value from a refused proof may be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProofError {
    /// The answer is for another account than the one asked about.
    #[error("proof is for account {got}, expected {expected}")]
    WrongAccount {
        /// The account asked about.
        expected: Address,
        /// The account the answer names.
        got: Address,
    },
    /// The account proof does not lead from the state root to the claimed account.
    #[error(
        "account proof for {address} does not verify against state root {state_root}: {reason}"
    )]
    AccountProof {
        /// The account.
        address: Address,
        /// The trusted state root.
        state_root: B256,
        /// What the trie walk found.
        reason: String,
    },
    /// A slot asked about has no proof in the answer.
    #[error("no storage proof for slot {0}")]
    MissingSlot(B256),
    /// The answer holds a proof for a slot that was not asked about, or the same slot twice.
    #[error("unexpected or duplicate storage proof for slot {0}")]
    UnexpectedSlot(B256),
    /// A storage proof does not lead from the account's storage root to the claimed value.
    #[error(
        "storage proof for slot {slot} does not verify against storage root {storage_root}: {reason}"
    )]
    StorageProof {
        /// The slot.
        slot: B256,
        /// The proven account's storage root.
        storage_root: B256,
        /// What the trie walk found.
        reason: String,
    },
}

impl ProofError {
    pub(crate) fn account(address: Address, state_root: B256, err: ProofVerificationError) -> Self {
        Self::AccountProof {
            address,
            state_root,
            reason: describe(err),
        }
    }

    pub(crate) fn storage(slot: B256, storage_root: B256, err: ProofVerificationError) -> Self {
        Self::StorageProof {
            slot,
            storage_root,
            reason: describe(err),
        }
    }
}

fn describe(err: ProofVerificationError) -> String {
    match err {
        ProofVerificationError::RootMismatch { got, expected } => {
            format!("proof is for root {got}, not {expected}")
        }
        ProofVerificationError::ValueMismatch { got, expected, .. } => match (got, expected) {
            (Some(_), None) => "the proof shows a value where the answer claims none".into(),
            (None, Some(_)) => {
                "the proof shows no value where the answer claims one (missing node or absent key)"
                    .into()
            }
            _ => "a node or value in the proof does not match (changed, missing or extra node)"
                .into(),
        },
        ProofVerificationError::Rlp(e) => format!("malformed trie node: {e}"),
        other => other.to_string(),
    }
}

/// Why a block header could not be trusted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HeaderError {
    /// No headers were given.
    #[error("no headers to verify")]
    Empty,
    /// The first header does not hash to the pinned checkpoint.
    #[error("header {number} hashes to {got}, not the pinned checkpoint {expected}")]
    CheckpointMismatch {
        /// The header's number.
        number: u64,
        /// Its hash.
        got: B256,
        /// The pinned hash.
        expected: B256,
    },
    /// A header does not name its predecessor's hash, or skips a number.
    #[error("header {number} does not follow header {previous} (parent hash or number mismatch)")]
    BrokenChain {
        /// The header that broke the chain.
        number: u64,
        /// The header it should follow.
        previous: u64,
    },
    /// A header's contents do not hash to the hash it was fetched under.
    #[error("header {number} hashes to {got}, not the agreed {expected}")]
    HashMismatch {
        /// The header's number.
        number: u64,
        /// Its hash.
        got: B256,
        /// The hash it should have.
        expected: B256,
    },
    /// Too few endpoints agreed on the block hash.
    #[error(
        "only {agreeing} of {asked} endpoints agree on block {number}'s hash; {required} required"
    )]
    NoQuorum {
        /// The block number.
        number: u64,
        /// Endpoints with the most common answer.
        agreeing: usize,
        /// Endpoints asked.
        asked: usize,
        /// Agreement required.
        required: usize,
    },
    /// k of n was configured impossibly (k = 0, k > n, or k not a strict majority).
    #[error(
        "invalid quorum {required} of {asked}: need a strict majority and at most all endpoints"
    )]
    BadQuorum {
        /// Agreement required.
        required: usize,
        /// Endpoints configured.
        asked: usize,
    },
}
