//! What the wallet server needs from a chain beyond [`KeystoreChain`]: raw signed transactions whose
//! hash is known (and recorded) before they are broadcast, the server wallet's next nonce, the fee
//! a transaction must offer now, and whether a recorded transaction was mined.
//!
//! `chaincall-chain`'s `send` signs and broadcasts in one call, so a crash between the two leaves no
//! trace of the hash; funding must not work that way. [`ServerChain`] adds the missing primitives
//! for both backends, and [`sign_transfer`] builds the EIP-1559 transfer whose bytes are stored
//! before broadcast. Rebroadcasting identical signed bytes is always safe: the nonce makes a
//! transaction mine at most once.

use std::future::Future;

use alloy::consensus::TxEip1559;
use alloy::eips::Encodable2718;
use alloy::primitives::{Address, B256, Bytes, TxKind, U256};
use alloy::providers::Provider;
use alloy::transports::{RpcError, TransportError};
use chaincall_chain::{
    ChainError, ClientId, EmbeddedChain, EmbeddedConfig, KeystoreChain, PrivateKeySigner, RpcChain,
    dev_signer,
};
use chaincall_identity::IdentityKey;

/// Fees a new transaction should offer now (EIP-1559).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FeeQuote {
    /// Maximum total fee per gas, in wei: what a sender must be able to pay per unit of gas limit.
    pub max_fee_per_gas: u128,
    /// Priority fee per gas, in wei.
    pub max_priority_fee_per_gas: u128,
}

/// Where a recorded transaction stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxState {
    /// Mined in this block; `success` false means it reverted.
    Mined {
        /// Block number.
        block: u64,
        /// Whether it succeeded.
        success: bool,
    },
    /// Not mined, and its nonce is still free: broadcasting it (again) may mine it.
    NotMined,
    /// Not mined, and another transaction took its nonce: it can never be mined.
    Superseded,
}

/// The chain operations the wallet server adds to [`KeystoreChain`].
pub trait ServerChain: KeystoreChain + 'static {
    /// The next nonce of `address`, counting transactions the node already holds.
    fn next_nonce(&self, address: Address) -> impl Future<Output = Result<u64, ChainError>> + Send;

    /// Current fees for a new transaction.
    fn fee_quote(&self) -> impl Future<Output = Result<FeeQuote, ChainError>> + Send;

    /// Broadcasts signed EIP-2718 bytes. "Already known" is success; other refusals are errors
    /// (the caller then asks [`ServerChain::tx_state`]).
    fn broadcast(&self, raw: Bytes) -> impl Future<Output = Result<(), ChainError>> + Send;

    /// Gas a call from `from` to `to` with `input` would use. A call that would revert fails with
    /// the decoded contract error ([`ChainError::is_contract_error`]).
    fn estimate_gas(
        &self,
        from: Address,
        to: Address,
        input: Bytes,
    ) -> impl Future<Output = Result<u64, ChainError>> + Send;

    /// Where the transaction `hash`, sent by `from` with `nonce`, stands.
    fn tx_state(
        &self,
        hash: B256,
        from: Address,
        nonce: u64,
    ) -> impl Future<Output = Result<TxState, ChainError>> + Send;
}

/// Signs a plain Ether transfer (21,000 gas; `to` must be an account without code).
pub fn sign_transfer(
    from: &PrivateKeySigner,
    chain_id: u64,
    nonce: u64,
    to: Address,
    value: U256,
    fees: FeeQuote,
) -> Result<(B256, Bytes), ChainError> {
    let tx = TxEip1559 {
        value,
        ..call_to(chain_id, nonce, to, 21_000, fees)
    };
    sign(from, tx)
}

/// Signs a contract call with an explicit gas limit (the recorded-raw path of `approveClient`).
pub fn sign_call(
    from: &PrivateKeySigner,
    chain_id: u64,
    nonce: u64,
    to: Address,
    input: Bytes,
    gas_limit: u64,
    fees: FeeQuote,
) -> Result<(B256, Bytes), ChainError> {
    let tx = TxEip1559 {
        input,
        ..call_to(chain_id, nonce, to, gas_limit, fees)
    };
    sign(from, tx)
}

/// What every server transaction shares: a call to `to` at `fees`, carrying no value and no
/// input until the caller sets them.
fn call_to(chain_id: u64, nonce: u64, to: Address, gas_limit: u64, fees: FeeQuote) -> TxEip1559 {
    TxEip1559 {
        chain_id,
        nonce,
        gas_limit,
        max_fee_per_gas: fees.max_fee_per_gas,
        max_priority_fee_per_gas: fees.max_priority_fee_per_gas,
        to: TxKind::Call(to),
        value: U256::ZERO,
        access_list: Default::default(),
        input: Bytes::new(),
    }
}

/// Signs `tx`: its hash and its EIP-2718 bytes, as recorded before broadcast.
fn sign(from: &PrivateKeySigner, tx: TxEip1559) -> Result<(B256, Bytes), ChainError> {
    let envelope = chaincall_chain::sign_eip1559(from, tx)?;
    Ok((*envelope.tx_hash(), envelope.encoded_2718().into()))
}

/// The EIP-1559 transaction inside signed EIP-2718 bytes (what the server recorded).
pub fn decode_eip1559(raw: &[u8]) -> Option<TxEip1559> {
    use alloy::eips::Decodable2718;
    match alloy::consensus::TxEnvelope::decode_2718(&mut &raw[..]).ok()? {
        alloy::consensus::TxEnvelope::Eip1559(signed) => Some(signed.tx().clone()),
        _ => None,
    }
}

/// Fees for a replacement of a transaction that offered `old`: each of the priority fee and the
/// max fee raised by at least `bump_percent` (rounded up), and never below what the chain asks
/// `now`. The priority fee never exceeds the max fee.
pub fn bumped_fees(old: FeeQuote, now: FeeQuote, bump_percent: u64) -> FeeQuote {
    let up = |v: u128| {
        let p = u128::from(bump_percent);
        // ceil(v × (100 + p) / 100), saturating.
        v.saturating_mul(100 + p).div_ceil(100)
    };
    let max_fee = up(old.max_fee_per_gas).max(now.max_fee_per_gas);
    let tip = up(old.max_priority_fee_per_gas)
        .max(now.max_priority_fee_per_gas)
        .min(max_fee);
    FeeQuote {
        max_fee_per_gas: max_fee,
        max_priority_fee_per_gas: tip,
    }
}

/// Re-signs the transaction in `raw` with the same nonce, recipient, value, data and gas limit but
/// the fees `fees`: a replacement.
pub fn resign_with_fees(
    from: &PrivateKeySigner,
    raw: &[u8],
    fees: FeeQuote,
) -> Result<(B256, Bytes), ChainError> {
    let mut tx = decode_eip1559(raw).ok_or_else(|| ChainError::BadResponse {
        reason: "recorded transaction is not EIP-1559".into(),
    })?;
    tx.max_fee_per_gas = fees.max_fee_per_gas;
    tx.max_priority_fee_per_gas = fees.max_priority_fee_per_gas;
    let envelope = chaincall_chain::sign_eip1559(from, tx)?;
    Ok((*envelope.tx_hash(), envelope.encoded_2718().into()))
}

/// Measures `addClient`'s gas for a P-256 key on the real contract bytecode, in a scratch embedded
/// chain: what a phone's first transaction costs.
pub async fn measure_add_client_gas() -> Result<u64, ChainError> {
    let chain = EmbeddedChain::default();
    let owner = dev_signer(0);
    let phone = dev_signer(1);
    let contract = chain
        .deploy(&owner)
        .await?
        .contract_address
        .ok_or_else(|| ChainError::BadResponse {
            reason: "deployment without a contract address".into(),
        })?;
    let name = chaincall_identity::IdentityName::parse("+15550000000").map_err(|e| {
        ChainError::BadResponse {
            reason: e.to_string(),
        }
    })?;
    let id = ClientId::of(&name);
    let key = IdentityKey::generate().public();
    let commitment = chaincall_chain::receipt_commitment(
        &id,
        phone.address(),
        &chaincall_chain::receipt_hash(b"measure"),
    );
    let out = chain
        .add_client(contract, &phone, id, key.tag(), &key.to_bytes(), commitment)
        .await?;
    Ok(out.gas_used)
}

/// The gas limit the embedded backend reports for calls (see its `estimate_gas`).
const EMBEDDED_CALL_GAS: u64 = 250_000;

impl ServerChain for EmbeddedChain {
    fn next_nonce(&self, address: Address) -> impl Future<Output = Result<u64, ChainError>> + Send {
        std::future::ready(Ok(self.nonce(address)))
    }

    async fn fee_quote(&self) -> Result<FeeQuote, ChainError> {
        let head = self.block_number().await?;
        let base = self
            .header(head)
            .and_then(|h| h.base_fee_per_gas)
            .unwrap_or(1_000_000_000);
        // The embedded chain keeps its base fee fixed; offer what its own signing offers.
        let priority = EmbeddedConfig::default().priority_fee;
        Ok(FeeQuote {
            max_fee_per_gas: u128::from(base) * 2 + priority,
            max_priority_fee_per_gas: priority,
        })
    }

    fn broadcast(&self, raw: Bytes) -> impl Future<Output = Result<(), ChainError>> + Send {
        // The embedded chain mines on submission; a revert would still be mined, but transfers to
        // accounts without code do not revert.
        std::future::ready(self.send_raw_transaction(&raw).map(|_| ()))
    }

    fn estimate_gas(
        &self,
        _from: Address,
        _to: Address,
        _input: Bytes,
    ) -> impl Future<Output = Result<u64, ChainError>> + Send {
        // The embedded chain has no public estimate; it mines on submission and returns a decoded
        // revert then, so a generous fixed limit is enough (approveClient uses about 60k).
        std::future::ready(Ok(EMBEDDED_CALL_GAS))
    }

    fn tx_state(
        &self,
        _hash: B256,
        from: Address,
        nonce: u64,
    ) -> impl Future<Output = Result<TxState, ChainError>> + Send {
        // The embedded chain has no lookup by hash. Every transaction of the server wallet is
        // recorded before broadcast and sent by the one signer task, so the nonce having moved past
        // `nonce` means this transaction was mined (the embedded chain mines on submission).
        let state = if self.nonce(from) > nonce {
            TxState::Mined {
                block: 0,
                success: true,
            }
        } else {
            TxState::NotMined
        };
        std::future::ready(Ok(state))
    }
}

fn rpc_error(chain: &RpcChain, err: TransportError) -> ChainError {
    match err {
        RpcError::Transport(kind) => ChainError::NodeDown {
            url: chain.url().to_owned(),
            reason: kind.to_string(),
        },
        RpcError::ErrorResp(payload) => ChainError::Rejected {
            reason: payload.message.to_string(),
        },
        other => ChainError::BadResponse {
            reason: other.to_string(),
        },
    }
}

impl ServerChain for RpcChain {
    async fn next_nonce(&self, address: Address) -> Result<u64, ChainError> {
        self.provider()
            .get_transaction_count(address)
            .pending()
            .await
            .map_err(|e| rpc_error(self, e))
    }

    async fn fee_quote(&self) -> Result<FeeQuote, ChainError> {
        let fees = self
            .provider()
            .estimate_eip1559_fees()
            .await
            .map_err(|e| rpc_error(self, e))?;
        Ok(FeeQuote {
            max_fee_per_gas: fees.max_fee_per_gas,
            max_priority_fee_per_gas: fees.max_priority_fee_per_gas,
        })
    }

    async fn broadcast(&self, raw: Bytes) -> Result<(), ChainError> {
        match self.provider().send_raw_transaction(&raw).await {
            Ok(_) => Ok(()),
            Err(e) => match rpc_error(self, e) {
                ChainError::Rejected { reason }
                    if reason.to_ascii_lowercase().contains("already known")
                        || reason.to_ascii_lowercase().contains("already imported") =>
                {
                    Ok(())
                }
                other => Err(other),
            },
        }
    }

    async fn estimate_gas(
        &self,
        from: Address,
        to: Address,
        input: Bytes,
    ) -> Result<u64, ChainError> {
        let request = alloy::rpc::types::TransactionRequest {
            from: Some(from),
            to: Some(TxKind::Call(to)),
            input: input.into(),
            ..Default::default()
        };
        match self.provider().estimate_gas(request).await {
            Ok(gas) => Ok(gas),
            Err(RpcError::ErrorResp(payload)) if payload.as_revert_data().is_some() => {
                let data = payload.as_revert_data().unwrap_or_default();
                Err(ChainError::from_revert_data(&data))
            }
            Err(e) => Err(rpc_error(self, e)),
        }
    }

    async fn tx_state(&self, hash: B256, from: Address, nonce: u64) -> Result<TxState, ChainError> {
        let receipt = self
            .provider()
            .get_transaction_receipt(hash)
            .await
            .map_err(|e| rpc_error(self, e))?;
        if let Some(r) = receipt {
            return Ok(TxState::Mined {
                block: r.block_number.unwrap_or_default(),
                success: r.status(),
            });
        }
        let mined_nonce = self
            .provider()
            .get_transaction_count(from)
            .latest()
            .await
            .map_err(|e| rpc_error(self, e))?;
        Ok(if mined_nonce > nonce {
            // A receipt can lag a block behind the nonce on some nodes; ask once more.
            match self
                .provider()
                .get_transaction_receipt(hash)
                .await
                .map_err(|e| rpc_error(self, e))?
            {
                Some(r) => TxState::Mined {
                    block: r.block_number.unwrap_or_default(),
                    success: r.status(),
                },
                None => TxState::Superseded,
            }
        } else {
            TxState::NotMined
        })
    }
}

/// Sends `value` wei from `from` to `to` through the recorded-raw path without a database (for
/// tools and tests): sign, broadcast, wait until mined.
pub async fn transfer_and_wait<C: ServerChain>(
    chain: &C,
    from: &PrivateKeySigner,
    to: Address,
    value: U256,
) -> Result<B256, ChainError> {
    let nonce = chain.next_nonce(from.address()).await?;
    let fees = chain.fee_quote().await?;
    let (hash, raw) = sign_transfer(from, chain.chain_id(), nonce, to, value, fees)?;
    chain.broadcast(raw).await?;
    for _ in 0..600 {
        if let TxState::Mined { .. } = chain.tx_state(hash, from.address(), nonce).await? {
            return Ok(hash);
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    Err(ChainError::NotConfirmed {
        tx_hash: hash,
        reason: "not mined within 30 s".into(),
    })
}
