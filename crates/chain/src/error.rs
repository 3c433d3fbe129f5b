//! The chain crate's error type.

use alloy::primitives::{Address, U256};
use alloy::sol_types::{SolInterface, decode_revert_reason};
use chaincall_identity::KeyStatus;

use crate::contract::IKeystore;
use crate::types::ClientId;

/// Everything that can go wrong talking to the keystore, on either backend.
///
/// Contract reverts are decoded into the variant that names the contract's custom error; anything
/// else the contract or node refused ends up in [`ChainError::Reverted`] or [`ChainError::Rejected`]
/// with the reason text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChainError {
    /// `NotOwner`: the call is reserved to the contract owner.
    #[error("not the keystore owner: {caller} may not do this (NotOwner)")]
    NotOwner {
        /// The caller.
        caller: Address,
    },
    /// `NotPendingOwner`: only the nominated new owner may accept ownership.
    #[error("{caller} is not the pending owner (NotPendingOwner)")]
    NotPendingOwner {
        /// The caller.
        caller: Address,
    },
    /// `NotEntryWallet`: the entry is bound to another wallet.
    #[error("{caller} is not the wallet bound to {id} (NotEntryWallet)")]
    NotEntryWallet {
        /// The entry.
        id: ClientId,
        /// The caller.
        caller: Address,
    },
    /// `UnknownId`: no entry exists.
    #[error("unknown id {id}: no entry in the keystore (UnknownId)")]
    UnknownId {
        /// The id.
        id: ClientId,
    },
    /// `WrongStatus`: the entry's status does not allow the call (e.g. approving an approved entry).
    #[error("entry {id} is {status}, which does not allow this (WrongStatus)")]
    WrongStatus {
        /// The entry.
        id: ClientId,
        /// Its status.
        status: KeyStatus,
    },
    /// `AlreadyTaken`: an approved entry exists, bound to `wallet`.
    #[error("id {id} is already taken by wallet {wallet} (AlreadyTaken)")]
    AlreadyTaken {
        /// The entry.
        id: ClientId,
        /// The wallet it is bound to.
        wallet: Address,
    },
    /// `AlreadyPending`: another wallet's entry awaits approval.
    #[error("id {id} has a pending entry from wallet {wallet} (AlreadyPending)")]
    AlreadyPending {
        /// The entry.
        id: ClientId,
        /// The wallet that submitted it.
        wallet: Address,
    },
    /// `MalformedKey`: unsupported key type or wrong key bytes.
    #[error("malformed key: type {key_type} with {length} bytes (MalformedKey)")]
    MalformedKey {
        /// The type tag given.
        key_type: u8,
        /// The key length given.
        length: usize,
    },
    /// `ReceiptMismatch`: the receipt does not match the pending entry (wrong receipt, or the entry
    /// was submitted by a wallet the receipt was not issued to).
    #[error("receipt does not match the pending entry for {id} (ReceiptMismatch)")]
    ReceiptMismatch {
        /// The entry.
        id: ClientId,
    },
    /// The node could not be reached.
    #[error("node down: {url}: {reason}")]
    NodeDown {
        /// The endpoint.
        url: String,
        /// The transport's reason.
        reason: String,
    },
    /// The node serves another chain than the one configured.
    #[error("wrong chain id: expected {expected}, node reports {actual}")]
    WrongChainId {
        /// The configured chain id.
        expected: u64,
        /// The node's chain id.
        actual: u64,
    },
    /// The sender cannot pay for gas (and value).
    #[error("insufficient funds: {address} has {balance} wei{}", needed.map(|n| format!(", needs {n}")).unwrap_or_default())]
    InsufficientFunds {
        /// The sender.
        address: Address,
        /// Its balance, in wei.
        balance: U256,
        /// What the transaction needs, when known.
        needed: Option<U256>,
    },
    /// No contract code at the address.
    #[error("no contract at {address}")]
    NoContract {
        /// The address.
        address: Address,
    },
    /// `Reserved`: the owner reserved the id for another wallet, which alone may submit it.
    #[error("{id} is reserved for wallet {wallet} (Reserved)")]
    Reserved {
        /// The entry.
        id: ClientId,
        /// The wallet it is reserved for.
        wallet: Address,
    },
    /// `BadProof`: the proof of possession of `addClientWithProof` does not verify (wrong key,
    /// wallet or commitment, or no P-256 precompile on this chain).
    #[error("proof of possession for {id} refused (BadProof)")]
    BadProof {
        /// The entry.
        id: ClientId,
    },
    /// `ZeroWallet`: a reservation must name a wallet.
    #[error("a reservation must name a wallet, not the zero address (ZeroWallet)")]
    ZeroWallet,
    /// The contract reverted for a reason that is not one of its custom errors.
    #[error("transaction reverted: {reason}")]
    Reverted {
        /// The decoded reason (or the raw data in hex).
        reason: String,
    },
    /// The node or the embedded chain refused the transaction (bad nonce, gas, signature, ...).
    #[error("transaction rejected: {reason}")]
    Rejected {
        /// Why.
        reason: String,
    },
    /// The node answered with something that is not a valid reply.
    #[error("unexpected answer from the node: {reason}")]
    BadResponse {
        /// What was wrong.
        reason: String,
    },
    /// The node has no block with this number (not mined yet).
    #[error("no block {number} on the chain")]
    UnknownBlock {
        /// The block number asked for.
        number: u64,
    },
    /// The node no longer keeps the state of this block (pruned), so it cannot prove against it.
    #[error("state of block {number} is pruned (only the last {kept} blocks keep state)")]
    StatePruned {
        /// The block number asked for.
        number: u64,
        /// How many recent blocks keep state.
        kept: u64,
    },
    /// A transaction was sent but its receipt did not arrive in time.
    #[error("transaction {tx_hash} not confirmed: {reason}")]
    NotConfirmed {
        /// The transaction.
        tx_hash: alloy::primitives::B256,
        /// Why.
        reason: String,
    },
}

fn status_of(status: IKeystore::Status) -> KeyStatus {
    match status {
        IKeystore::Status::Unknown => KeyStatus::Unknown,
        IKeystore::Status::Pending => KeyStatus::Pending,
        IKeystore::Status::Approved => KeyStatus::Approved,
        IKeystore::Status::Revoked => KeyStatus::Revoked,
        // A reservation holds no key: to key users it is an unknown entry.
        IKeystore::Status::Reserved => KeyStatus::Unknown,
        // sol! adds a catch-all for out-of-range enum values; the contract never returns one.
        _ => KeyStatus::Unknown,
    }
}

impl ChainError {
    /// Decodes revert data into the contract's custom error, a `require` reason or a panic code.
    pub fn from_revert_data(data: &[u8]) -> Self {
        use IKeystore::IKeystoreErrors as E;
        match E::abi_decode(data) {
            Ok(E::NotOwner(e)) => Self::NotOwner { caller: e.caller },
            Ok(E::NotPendingOwner(e)) => Self::NotPendingOwner { caller: e.caller },
            Ok(E::NotEntryWallet(e)) => Self::NotEntryWallet {
                id: ClientId::from_b256(e.id),
                caller: e.caller,
            },
            Ok(E::UnknownId(e)) => Self::UnknownId {
                id: ClientId::from_b256(e.id),
            },
            Ok(E::WrongStatus(e)) => Self::WrongStatus {
                id: ClientId::from_b256(e.id),
                status: status_of(e.status),
            },
            Ok(E::AlreadyTaken(e)) => Self::AlreadyTaken {
                id: ClientId::from_b256(e.id),
                wallet: e.wallet,
            },
            Ok(E::AlreadyPending(e)) => Self::AlreadyPending {
                id: ClientId::from_b256(e.id),
                wallet: e.wallet,
            },
            Ok(E::MalformedKey(e)) => Self::MalformedKey {
                key_type: e.keyType,
                length: e.length.saturating_to(),
            },
            Ok(E::ReceiptMismatch(e)) => Self::ReceiptMismatch {
                id: ClientId::from_b256(e.id),
            },
            Ok(E::Reserved(e)) => Self::Reserved {
                id: ClientId::from_b256(e.id),
                wallet: e.wallet,
            },
            Ok(E::ZeroWallet(_)) => Self::ZeroWallet,
            Ok(E::BadProof(e)) => Self::BadProof {
                id: ClientId::from_b256(e.id),
            },
            Err(_) => Self::Reverted {
                reason: decode_revert_reason(data).unwrap_or_else(|| {
                    if data.is_empty() {
                        "no reason given".to_owned()
                    } else {
                        format!("0x{}", hex::encode(data))
                    }
                }),
            },
        }
    }

    /// True for the errors that are the contract's own verdict (a custom error or revert reason),
    /// as opposed to transport, funding or node trouble.
    pub fn is_contract_error(&self) -> bool {
        matches!(
            self,
            Self::NotOwner { .. }
                | Self::NotPendingOwner { .. }
                | Self::NotEntryWallet { .. }
                | Self::UnknownId { .. }
                | Self::WrongStatus { .. }
                | Self::AlreadyTaken { .. }
                | Self::AlreadyPending { .. }
                | Self::MalformedKey { .. }
                | Self::ReceiptMismatch { .. }
                | Self::Reserved { .. }
                | Self::ZeroWallet
                | Self::BadProof { .. }
                | Self::Reverted { .. }
        )
    }
}
