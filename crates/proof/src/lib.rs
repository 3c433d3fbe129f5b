//! Verified key lookups: Ethereum state proofs checked against a trusted block header.
//!
//! A phone that takes a callee's key from an RPC provider on trust has only moved the certificate
//! authority to the provider. This crate removes that trust, sans-IO (no sockets, no clock):
//!
//! - [`verify_account_proof`] and [`VerifiedAccount::verify_storage`] check an `eth_getProof` answer
//!   (EIP-1186) against a block's `stateRoot`: the account proof against the state trie, each storage
//!   proof against the account's `storageRoot` (Merkle–Patricia, via `alloy-trie`). Absent slots and
//!   absent accounts are proven too. Any mismatch is a [`ProofError`] that says what failed.
//! - [`WorldState`] builds the same tries from a plain state (accounts, balances, code hashes, storage)
//!   and answers `eth_getProof` with real proofs, so an in-process chain has real state roots and the
//!   same verifier runs against it as against a node.
//! - [`header`] decides which header, hence which state root, to trust: a pinned checkpoint plus the
//!   header chain from it, or agreement of k of n RPC endpoints. See its docs for what each protects
//!   against and what it does not.
#![forbid(unsafe_code)]

mod error;
pub mod header;
mod prove;
mod verify;

pub use error::{HeaderError, ProofError};
pub use prove::{AccountState, WorldState};
pub use verify::{VerifiedAccount, proof_size_bytes, verify_account_proof};

/// Re-exported proof types, so callers need not name alloy's crates.
pub use alloy::rpc::types::{EIP1186AccountProofResponse, EIP1186StorageProof};
