//! Chain access for chaincall: the keystore contract's bindings and one trait, [`KeystoreChain`],
//! with two backends that pass one shared test suite.
//!
//! | backend | what it is | when |
//! | --- | --- | --- |
//! | [`EmbeddedChain`] | revm in process running the committed contract bytecode: signed EIP-1559 transactions, nonces, balances and gas charged, one block per transaction | the default: demo, most tests, gas measurement, benchmarks |
//! | [`RpcChain`] | an alloy HTTP provider to any Ethereum JSON-RPC node (anvil, geth, reth, a provider) | real networks; CI runs it against anvil |
//!
//! Both backends share the contract-facing logic (call encoding, return decoding, revert decoding,
//! event decoding): the trait's provided methods implement it on top of five primitives each backend
//! supplies (`send`, `call`, `logs`, `storage_at`, `balance`). Where an entry sits in storage is
//! computed in one place, [`layout`], which verified lookups build on.
//!
//! **Verified lookups** ([`verified`]): both backends also answer `eth_getProof`
//! ([`KeystoreChain::get_proof`]) and block headers ([`KeystoreChain::block_header`]); the embedded
//! chain keeps a real Merkle-Patricia state trie, so its headers carry real state roots.
//! [`verified::get_client_verified`] proves an entry against a header a [`verified::HeaderTrust`]
//! accepts (pinned checkpoint, k-of-n quorum, or a plug-in), and [`verified::PinnedLookup`] adds key
//! pinning. What each trust mode does and does not protect against: `docs/verified-lookups.md`.
//!
//! Identities are [`ClientId`]s, `keccak256` of a canonical name from `chaincall-identity`
//! (`tel:+15551234567`, `dns:sip.example.org`). Senders are [`PrivateKeySigner`]s, whose `Debug`
//! output shows the address only; this crate never logs key material.
//!
//! ```no_run
//! use chaincall_chain::{ClientId, EmbeddedChain, KeystoreChain, receipt_hash};
//! use chaincall_identity::{IdentityKey, IdentityName};
//! # async fn demo() -> Result<(), chaincall_chain::ChainError> {
//! let chain = EmbeddedChain::default();
//! let owner = chaincall_chain::dev_signer(0);
//! let phone = chaincall_chain::dev_signer(1);
//! let contract = chain.deploy_keystore(&owner).await?;
//! let id = ClientId::of(&IdentityName::parse("+1 555 123 4567").unwrap());
//! let key = IdentityKey::generate().public();
//! let receipt = receipt_hash(b"purchase token");
//! chain.add_client_key(contract, &phone, id, &key, receipt).await?;
//! chain.approve_client(contract, &owner, id, receipt).await?;
//! assert_eq!(chain.get_client(contract, id).await?.approved_key(), Some(key));
//! # Ok(()) }
//! ```

#![forbid(unsafe_code)]

use std::future::Future;

use alloy::consensus::Header;
use alloy::primitives::{Address, B256, Bytes, FixedBytes, U256};
use alloy::rpc::types::EIP1186AccountProofResponse;
use alloy::sol_types::SolCall;

pub mod admin;
mod anvil;
pub mod contract;
mod embedded;
mod error;
pub mod layout;
mod rpc;
mod types;
pub mod verified;

pub use alloy::signers::local::PrivateKeySigner;
pub use anvil::AnvilProcess;
pub use embedded::{EmbeddedChain, EmbeddedConfig, dev_signer};
pub use error::ChainError;
pub use rpc::{RpcChain, RpcConfig};
pub use types::{
    Change, ClientEntry, ClientId, HistoryEvent, POSSESSION_CONTEXT, TxOutcome,
    entry_event_signatures, possession_message, receipt_commitment, receipt_hash,
};

use contract::IKeystore;

/// Result alias for this crate.
pub type Result<T, E = ChainError> = std::result::Result<T, E>;

/// Signs an EIP-1559 transaction with `from`, as every backend and the wallet server send them.
///
/// The one place a signing failure becomes [`ChainError::Rejected`].
pub fn sign_eip1559(
    from: &PrivateKeySigner,
    mut tx: alloy::consensus::TxEip1559,
) -> Result<alloy::consensus::TxEnvelope> {
    use alloy::consensus::SignableTransaction;
    use alloy::network::TxSignerSync;
    let signature = from
        .sign_transaction_sync(&mut tx)
        .map_err(|e| ChainError::Rejected {
            reason: format!("signing failed: {e}"),
        })?;
    Ok(alloy::consensus::TxEnvelope::Eip1559(
        tx.into_signed(signature),
    ))
}

/// Sends `call` to the keystore at `contract`, signed by `from`, with no value: how every contract
/// write of [`KeystoreChain`] goes out.
fn transact<K: KeystoreChain + ?Sized, C: SolCall>(
    chain: &K,
    contract: Address,
    from: &PrivateKeySigner,
    call: C,
) -> impl Future<Output = Result<TxOutcome>> + Send {
    chain.send(from, Some(contract), call.abi_encode().into(), U256::ZERO)
}

/// The keystore on a chain: deploy, add, approve, get, rotate, revoke, reserve, history.
///
/// Implementors supply the five primitives (`send`, `call`, `logs`, `storage_at`, `balance`) plus
/// chain facts; everything contract-specific is provided on top of them, identically for every
/// backend. Writes are estimated first (a call that would revert fails with the decoded contract
/// error and sends nothing), then signed by `from`, sent and awaited.
pub trait KeystoreChain: Send + Sync {
    /// The chain id transactions are signed for.
    fn chain_id(&self) -> u64;

    /// The latest block number.
    fn block_number(&self) -> impl Future<Output = Result<u64>> + Send;

    /// Signs and sends a transaction from `from` (`to = None` creates a contract) and waits for its
    /// receipt. A transaction that would revert is not sent: its decoded revert is the error.
    fn send(
        &self,
        from: &PrivateKeySigner,
        to: Option<Address>,
        input: Bytes,
        value: U256,
    ) -> impl Future<Output = Result<TxOutcome>> + Send;

    /// Runs a read-only call against the latest state and returns its output.
    fn call(&self, to: Address, input: Bytes) -> impl Future<Output = Result<Bytes>> + Send;

    /// The contract's entry events for `id` (topic 1), oldest first, with their positions.
    fn logs(
        &self,
        contract: Address,
        id: ClientId,
    ) -> impl Future<Output = Result<Vec<HistoryEvent>>> + Send;

    /// One storage word of an account at the latest block.
    fn storage_at(&self, address: Address, slot: U256)
    -> impl Future<Output = Result<U256>> + Send;

    /// An account's balance in wei at the latest block.
    fn balance(&self, address: Address) -> impl Future<Output = Result<U256>> + Send;

    /// `eth_getProof` (EIP-1186): the account `address` and its storage `slots` at block `block`,
    /// with Merkle-Patricia proofs against that block's state root. Unverified: check the answer
    /// with [`verified`] (or `chaincall_proof`) against a trusted header before using any value.
    fn get_proof(
        &self,
        address: Address,
        slots: &[B256],
        block: u64,
    ) -> impl Future<Output = Result<EIP1186AccountProofResponse>> + Send;

    /// The header of block `number` ([`ChainError::UnknownBlock`] if not mined). Its block hash is
    /// `keccak256(rlp(header))` ([`Header::hash_slow`]); backends make sure of that, so a header
    /// can be checked against a pinned or agreed hash.
    fn block_header(&self, number: u64) -> impl Future<Output = Result<Header>> + Send;

    /// The runtime code at an address (empty for accounts without code).
    fn code_at(&self, address: Address) -> impl Future<Output = Result<Bytes>> + Send;

    /// Sends `value` wei from `from` to `to` (e.g. the wallet server funding a new phone wallet).
    fn transfer(
        &self,
        from: &PrivateKeySigner,
        to: Address,
        value: U256,
    ) -> impl Future<Output = Result<TxOutcome>> + Send {
        self.send(from, Some(to), Bytes::new(), value)
    }

    /// Deploys the committed keystore bytecode; `from` becomes the owner. The outcome's
    /// `contract_address` is the keystore's address.
    fn deploy(&self, from: &PrivateKeySigner) -> impl Future<Output = Result<TxOutcome>> + Send {
        self.send(
            from,
            None,
            contract::creation_bytecode().clone(),
            U256::ZERO,
        )
    }

    /// [`deploy`](Self::deploy) for callers that only need the new keystore's address.
    fn deploy_keystore(
        &self,
        from: &PrivateKeySigner,
    ) -> impl Future<Output = Result<Address>> + Send {
        async move {
            self.deploy(from)
                .await?
                .contract_address
                .ok_or_else(|| ChainError::BadResponse {
                    reason: "the deployment's receipt names no contract address".into(),
                })
        }
    }

    /// `addClient`: submits a pending entry bound to `from`. `commitment` is
    /// [`receipt_commitment`]`(id, from, receipt_hash)`.
    fn add_client(
        &self,
        contract: Address,
        from: &PrivateKeySigner,
        id: ClientId,
        key_type: u8,
        key: &[u8],
        commitment: FixedBytes<8>,
    ) -> impl Future<Output = Result<TxOutcome>> + Send {
        transact(
            self,
            contract,
            from,
            IKeystore::addClientCall {
                id: *id.as_b256(),
                keyType: key_type,
                key: Bytes::copy_from_slice(key),
                commitment,
            },
        )
    }

    /// [`add_client`](Self::add_client) for an identity key, committed to `receipt_hash` the way
    /// [`approve_client`](Self::approve_client) with the same hash expects: the commitment is
    /// [`receipt_commitment`] of `id`, `from`'s address and the hash.
    fn add_client_key(
        &self,
        contract: Address,
        from: &PrivateKeySigner,
        id: ClientId,
        key: &chaincall_identity::PublicIdentityKey,
        receipt_hash: B256,
    ) -> impl Future<Output = Result<TxOutcome>> + Send {
        let commitment = receipt_commitment(&id, from.address(), &receipt_hash);
        // The key's bytes live in the future: `add_client`'s future borrows them.
        async move {
            self.add_client(contract, from, id, key.tag(), &key.to_bytes(), commitment)
                .await
        }
    }

    /// `addClientWithProof`: [`add_client`](Self::add_client) with an on-chain proof that the
    /// sender holds the key. `identity` signs [`possession_message`]`(id, from, commitment)`; the
    /// contract checks the signature with the P-256 precompile (EIP-7951, address 0x100) and
    /// refuses with [`ChainError::BadProof`] — also on a chain without the precompile.
    fn add_client_with_proof(
        &self,
        contract: Address,
        from: &PrivateKeySigner,
        id: ClientId,
        identity: &chaincall_identity::IdentityKey,
        commitment: FixedBytes<8>,
    ) -> impl Future<Output = Result<TxOutcome>> + Send {
        let public = identity.public();
        let point = public.to_uncompressed_bytes();
        let signature = identity
            .sign(&possession_message(&id, from.address(), &commitment))
            .to_bytes();
        transact(
            self,
            contract,
            from,
            IKeystore::addClientWithProofCall {
                id: *id.as_b256(),
                keyType: public.tag(),
                key: public.to_bytes().into(),
                commitment,
                // 0x04 ‖ x ‖ y: y is the last 32 bytes.
                keyY: B256::from_slice(&point[point.len() - 32..]),
                r: B256::from_slice(&signature[..32]),
                s: B256::from_slice(&signature[32..]),
            },
        )
    }

    /// `approveClient` (owner only): approves the pending entry if `receipt_hash` matches it.
    fn approve_client(
        &self,
        contract: Address,
        from: &PrivateKeySigner,
        id: ClientId,
        receipt_hash: B256,
    ) -> impl Future<Output = Result<TxOutcome>> + Send {
        transact(
            self,
            contract,
            from,
            IKeystore::approveClientCall {
                id: *id.as_b256(),
                receiptHash: receipt_hash,
            },
        )
    }

    /// `getClient`: the entry's status, bound wallet and key.
    fn get_client(
        &self,
        contract: Address,
        id: ClientId,
    ) -> impl Future<Output = Result<ClientEntry>> + Send {
        async move {
            let input = IKeystore::getClientCall { id: *id.as_b256() }.abi_encode();
            let output = self.call(contract, input.into()).await?;
            let ret = decode_return::<IKeystore::getClientCall, _>(self, contract, &output).await?;
            let status = match ret.status {
                // The contract reports a reservation as unknown; treat a raw one the same way.
                IKeystore::Status::Unknown | IKeystore::Status::Reserved => {
                    return Ok(ClientEntry::unknown(id));
                }
                IKeystore::Status::Pending => chaincall_identity::KeyStatus::Pending,
                IKeystore::Status::Approved => chaincall_identity::KeyStatus::Approved,
                IKeystore::Status::Revoked => chaincall_identity::KeyStatus::Revoked,
                _ => {
                    return Err(ChainError::BadResponse {
                        reason: "getClient returned a status outside the contract's enum".into(),
                    });
                }
            };
            Ok(ClientEntry {
                id,
                status,
                wallet: Some(ret.wallet),
                key_type: ret.keyType,
                key: ret.key,
            })
        }
    }

    /// `rotateKey`: the bound wallet replaces the key of its approved entry.
    fn rotate_key(
        &self,
        contract: Address,
        from: &PrivateKeySigner,
        id: ClientId,
        key_type: u8,
        key: &[u8],
    ) -> impl Future<Output = Result<TxOutcome>> + Send {
        transact(
            self,
            contract,
            from,
            IKeystore::rotateKeyCall {
                id: *id.as_b256(),
                keyType: key_type,
                key: Bytes::copy_from_slice(key),
            },
        )
    }

    /// `revokeClient`: the bound wallet or the owner revokes a pending or approved entry.
    fn revoke_client(
        &self,
        contract: Address,
        from: &PrivateKeySigner,
        id: ClientId,
    ) -> impl Future<Output = Result<TxOutcome>> + Send {
        transact(
            self,
            contract,
            from,
            IKeystore::revokeClientCall { id: *id.as_b256() },
        )
    }

    /// `reserveClient` (owner only): reserves `id` for `wallet`, whose claim to the identity the
    /// owner has verified. Any pending entry is replaced (and revoked); until `wallet` submits its
    /// own entry, `addClient` from any other wallet fails with [`ChainError::Reserved`]. Refused
    /// for an approved id ([`ChainError::AlreadyTaken`]).
    fn reserve_client(
        &self,
        contract: Address,
        from: &PrivateKeySigner,
        id: ClientId,
        wallet: Address,
    ) -> impl Future<Output = Result<TxOutcome>> + Send {
        transact(
            self,
            contract,
            from,
            IKeystore::reserveClientCall {
                id: *id.as_b256(),
                wallet,
            },
        )
    }

    /// `reservedFor`: the wallet `id` is reserved for, `None` when it is not reserved.
    fn reserved_for(
        &self,
        contract: Address,
        id: ClientId,
    ) -> impl Future<Output = Result<Option<Address>>> + Send {
        async move {
            let input = IKeystore::reservedForCall { id: *id.as_b256() }.abi_encode();
            let output = self.call(contract, input.into()).await?;
            let wallet =
                decode_return::<IKeystore::reservedForCall, _>(self, contract, &output).await?;
            Ok((wallet != Address::ZERO).then_some(wallet))
        }
    }

    /// `transferOwnership` (owner only): nominates `new_owner`; zero cancels.
    fn transfer_ownership(
        &self,
        contract: Address,
        from: &PrivateKeySigner,
        new_owner: Address,
    ) -> impl Future<Output = Result<TxOutcome>> + Send {
        transact(
            self,
            contract,
            from,
            IKeystore::transferOwnershipCall {
                newOwner: new_owner,
            },
        )
    }

    /// `acceptOwnership`: the nominated owner takes over.
    fn accept_ownership(
        &self,
        contract: Address,
        from: &PrivateKeySigner,
    ) -> impl Future<Output = Result<TxOutcome>> + Send {
        transact(self, contract, from, IKeystore::acceptOwnershipCall {})
    }

    /// The contract's current owner.
    fn owner(&self, contract: Address) -> impl Future<Output = Result<Address>> + Send {
        async move {
            let output = self
                .call(contract, IKeystore::ownerCall {}.abi_encode().into())
                .await?;
            decode_return::<IKeystore::ownerCall, _>(self, contract, &output).await
        }
    }

    /// The entry's whole history from the contract's events, oldest first.
    fn history(
        &self,
        contract: Address,
        id: ClientId,
    ) -> impl Future<Output = Result<Vec<HistoryEvent>>> + Send {
        self.logs(contract, id)
    }
}

/// Decodes a call's return data; empty output from an address without code becomes `NoContract`.
async fn decode_return<C: SolCall, K: KeystoreChain + ?Sized>(
    chain: &K,
    contract: Address,
    output: &[u8],
) -> Result<C::Return> {
    match C::abi_decode_returns(output) {
        Ok(ret) => Ok(ret),
        Err(err) => {
            if output.is_empty() && chain.code_at(contract).await?.is_empty() {
                return Err(ChainError::NoContract { address: contract });
            }
            Err(ChainError::BadResponse {
                reason: format!("cannot decode {} output: {err}", C::SIGNATURE),
            })
        }
    }
}
