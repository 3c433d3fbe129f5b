//! Values the keystore trait takes and returns.

use std::fmt;

use alloy::primitives::{Address, B256, Bytes, FixedBytes, keccak256};
use alloy::sol_types::{SolEvent, SolEventInterface, SolValue};
use chaincall_identity::{IdentityName, KeyError, KeyStatus, PublicIdentityKey};

use crate::contract::IKeystore;

/// An identity's on-chain id: `keccak256(canonical name)`, e.g. of `tel:+15551234567` or
/// `dns:sip.example.org` (the prefixes keep numbers and names from colliding).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientId(B256);

impl ClientId {
    /// The id of a validated identity name.
    pub fn of(name: &IdentityName) -> Self {
        Self(keccak256(name.canonical().as_bytes()))
    }

    /// Wraps a raw 32-byte id (as found in events or storage).
    pub const fn from_b256(id: B256) -> Self {
        Self(id)
    }

    /// The id as 32 bytes.
    pub const fn as_b256(&self) -> &B256 {
        &self.0
    }
}

impl fmt::Debug for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ClientId({})", self.0)
    }
}

impl fmt::Display for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl From<&IdentityName> for ClientId {
    fn from(name: &IdentityName) -> Self {
        Self::of(name)
    }
}

/// `keccak256(receipt)`: what the owner passes to `approveClient` (the receipt itself stays off chain).
pub fn receipt_hash(receipt: &[u8]) -> B256 {
    keccak256(receipt)
}

/// The 8-byte commitment a phone passes to `addClient`:
/// `bytes8(keccak256(abi.encode(id, wallet, receiptHash)))`, binding id, submitting wallet and receipt
/// (the contract's `receiptCommitment` computes the same; a test checks they agree).
pub fn receipt_commitment(id: &ClientId, wallet: Address, receipt_hash: &B256) -> FixedBytes<8> {
    let encoded = (id.0, wallet, *receipt_hash).abi_encode();
    FixedBytes::<8>::from_slice(&keccak256(encoded)[..8])
}

/// Domain-separation prefix of the proof of possession (the wallet server's and the contract's).
pub const POSSESSION_CONTEXT: &[u8] = b"chaincall wallet v1 proof of possession\0";

/// The message an identity key signs to prove its registrant holds it: [`POSSESSION_CONTEXT`]
/// ‖ id (32 bytes) ‖ wallet (20) ‖ receipt commitment (8). The wallet server checks it off chain
/// (`chaincall_wallet::payload::possession_message`, the same bytes) and `addClientWithProof`
/// checks its SHA-256 on chain.
pub fn possession_message(id: &ClientId, wallet: Address, commitment: &FixedBytes<8>) -> Vec<u8> {
    let mut m = Vec::with_capacity(POSSESSION_CONTEXT.len() + 60);
    m.extend_from_slice(POSSESSION_CONTEXT);
    m.extend_from_slice(id.0.as_slice());
    m.extend_from_slice(wallet.as_slice());
    m.extend_from_slice(commitment.as_slice());
    m
}

/// An entry as `getClient` returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientEntry {
    /// The id asked about.
    pub id: ClientId,
    /// Unknown, pending, approved or revoked. Only an approved key may be used.
    pub status: KeyStatus,
    /// The wallet the entry is bound to (`None` when unknown).
    pub wallet: Option<Address>,
    /// The key's type tag (1 = P-256 compressed; 0 when unknown).
    pub key_type: u8,
    /// The key bytes as stored (empty when unknown).
    pub key: Bytes,
}

impl ClientEntry {
    /// The answer for an id that was never submitted.
    pub fn unknown(id: ClientId) -> Self {
        Self {
            id,
            status: KeyStatus::Unknown,
            wallet: None,
            key_type: 0,
            key: Bytes::new(),
        }
    }

    /// The stored key parsed as an identity key (fails for unknown entries and malformed bytes).
    pub fn public_key(&self) -> Result<PublicIdentityKey, KeyError> {
        PublicIdentityKey::from_tagged(self.key_type, &self.key)
    }

    /// The key, only if the entry is approved and the key parses: what a caller may encrypt to.
    pub fn approved_key(&self) -> Option<PublicIdentityKey> {
        (self.status == KeyStatus::Approved)
            .then(|| self.public_key().ok())
            .flatten()
    }
}

/// What a mined transaction did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxOutcome {
    /// The transaction's hash.
    pub tx_hash: B256,
    /// The block that holds it.
    pub block_number: u64,
    /// Gas used, as in the receipt.
    pub gas_used: u64,
    /// Wei paid per unit of gas (base fee plus priority fee).
    pub effective_gas_price: u128,
    /// The created contract, for deployments.
    pub contract_address: Option<Address>,
}

/// One change to an entry, decoded from the contract's events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryEvent {
    /// Block of the change.
    pub block_number: u64,
    /// Transaction that made it.
    pub tx_hash: B256,
    /// Position of the log in its block.
    pub log_index: u64,
    /// What changed.
    pub change: Change,
}

/// The kinds of change an entry goes through.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Change {
    /// `addClient`: submitted (or re-submitted by its wallet), pending.
    Added {
        /// Submitting wallet.
        wallet: Address,
        /// Key type tag.
        key_type: u8,
        /// Key bytes.
        key: Bytes,
        /// Receipt commitment.
        commitment: FixedBytes<8>,
    },
    /// `approveClient`: approved by the owner for a receipt.
    Approved {
        /// The bound wallet.
        wallet: Address,
        /// `keccak256(receipt)`.
        receipt_hash: B256,
    },
    /// `rotateKey`: the bound wallet replaced its key.
    Rotated {
        /// The bound wallet.
        wallet: Address,
        /// New key type tag.
        key_type: u8,
        /// New key bytes.
        key: Bytes,
    },
    /// `revokeClient`.
    Revoked {
        /// The wallet the entry was bound to.
        wallet: Address,
        /// Who revoked: the wallet itself or the owner.
        by: Address,
    },
}

impl Change {
    /// A short lower-case name (`added`, `approved`, `rotated`, `revoked`).
    pub fn name(&self) -> &'static str {
        match self {
            Self::Added { .. } => "added",
            Self::Approved { .. } => "approved",
            Self::Rotated { .. } => "rotated",
            Self::Revoked { .. } => "revoked",
        }
    }

    /// Decodes a keystore log into a change, if it is one of the entry events (ownership events and
    /// foreign logs give `None`).
    pub fn from_log(topics: &[B256], data: &[u8]) -> Option<Self> {
        use IKeystore::IKeystoreEvents as E;
        // Dispatches on topic 0 and decodes with that event's ABI; an undecodable log is no change.
        Some(match E::decode_raw_log(topics, data).ok()? {
            E::ClientAdded(e) => Self::Added {
                wallet: e.wallet,
                key_type: e.keyType,
                key: e.key,
                commitment: e.commitment,
            },
            E::ClientApproved(e) => Self::Approved {
                wallet: e.wallet,
                receipt_hash: e.receiptHash,
            },
            E::KeyRotated(e) => Self::Rotated {
                wallet: e.wallet,
                key_type: e.keyType,
                key: e.key,
            },
            E::ClientRevoked(e) => Self::Revoked {
                wallet: e.wallet,
                by: e.by,
            },
            _ => return None,
        })
    }
}

/// Topic 0 values of the entry events, for log filters.
pub fn entry_event_signatures() -> [B256; 4] {
    [
        IKeystore::ClientAdded::SIGNATURE_HASH,
        IKeystore::ClientApproved::SIGNATURE_HASH,
        IKeystore::KeyRotated::SIGNATURE_HASH,
        IKeystore::ClientRevoked::SIGNATURE_HASH,
    ]
}
