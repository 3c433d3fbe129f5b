//! The JSON-RPC backend: any Ethereum node over HTTP, through an alloy provider.
//!
//! Transactions are built and signed here (EIP-1559, nonce from the pending block, gas from
//! `eth_estimateGas` plus headroom, fees from `eth_feeHistory`) and sent raw, so the node needs no
//! unlocked accounts. Receipts are polled and then awaited for the configured number of
//! confirmations. Reverts, from estimation or from a mined transaction replayed as a call, are
//! decoded into the contract's custom errors.

use std::time::{Duration, Instant};

use alloy::consensus::{Header, TxEip1559};
use alloy::eips::{BlockNumberOrTag, Encodable2718};
use alloy::primitives::{Address, B256, Bytes, TxKind, U256};
use alloy::providers::{Provider, RootProvider};
use alloy::rpc::types::{EIP1186AccountProofResponse, Filter, TransactionRequest};
use alloy::signers::local::PrivateKeySigner;
use alloy::transports::{RpcError, TransportError};

use crate::types::{Change, HistoryEvent, TxOutcome, entry_event_signatures};
use crate::{ChainError, ClientId, KeystoreChain, Result};

/// Settings of an [`RpcChain`].
#[derive(Debug, Clone)]
pub struct RpcConfig {
    /// The chain id the node must report; `None` accepts whatever it reports.
    pub expected_chain_id: Option<u64>,
    /// Blocks a receipt needs (1 = mined) before a write counts as done.
    pub confirmations: u64,
    /// How long to wait for a receipt and its confirmations.
    pub receipt_timeout: Duration,
    /// How often to poll for receipts and new blocks.
    pub poll_interval: Duration,
    /// First block searched for history events (the keystore's deployment block saves work on long
    /// chains).
    pub history_from_block: u64,
}

impl Default for RpcConfig {
    fn default() -> Self {
        Self {
            expected_chain_id: None,
            confirmations: 1,
            receipt_timeout: Duration::from_secs(60),
            // Loopback nodes answer in well under a millisecond; remote ones are polled gently.
            poll_interval: Duration::from_millis(20),
            history_from_block: 0,
        }
    }
}

/// A keystore reached through an Ethereum JSON-RPC node.
#[derive(Debug, Clone)]
pub struct RpcChain {
    provider: RootProvider,
    url: String,
    chain_id: u64,
    config: RpcConfig,
}

impl RpcChain {
    /// Connects to `url` (http or https), reads the node's chain id and checks it against
    /// `config.expected_chain_id`.
    pub async fn connect(url: &str, config: RpcConfig) -> Result<Self> {
        let parsed = url.parse().map_err(|e| ChainError::NodeDown {
            url: url.to_owned(),
            reason: format!("not a valid URL: {e}"),
        })?;
        let provider = RootProvider::new_http(parsed);
        let mut chain = Self {
            provider,
            url: url.to_owned(),
            chain_id: 0,
            config,
        };
        let actual = chain
            .provider
            .get_chain_id()
            .await
            .map_err(|e| chain.rpc_error(e, None))?;
        if let Some(expected) = chain.config.expected_chain_id
            && expected != actual
        {
            return Err(ChainError::WrongChainId { expected, actual });
        }
        chain.chain_id = actual;
        Ok(chain)
    }

    /// The endpoint URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The underlying alloy provider (for calls this crate does not wrap, such as `eth_getProof`).
    pub fn provider(&self) -> &RootProvider {
        &self.provider
    }

    /// Maps a transport error: revert data is decoded, unreachable nodes are `NodeDown`.
    fn rpc_error(&self, err: TransportError, sender: Option<Address>) -> ChainError {
        match err {
            RpcError::ErrorResp(payload) => {
                if let Some(data) = payload.as_revert_data() {
                    return ChainError::from_revert_data(&data);
                }
                let message = payload.message.to_string();
                if message.to_ascii_lowercase().contains("insufficient funds") {
                    return ChainError::InsufficientFunds {
                        address: sender.unwrap_or_default(),
                        balance: U256::ZERO,
                        needed: None,
                    };
                }
                if message.contains("revert") {
                    return ChainError::Reverted { reason: message };
                }
                ChainError::Rejected { reason: message }
            }
            RpcError::Transport(kind) => ChainError::NodeDown {
                url: self.url.clone(),
                reason: kind.to_string(),
            },
            other => ChainError::BadResponse {
                reason: other.to_string(),
            },
        }
    }

    /// Fills in the real balance of an `InsufficientFunds` error (the node's message lacks it).
    async fn with_balance(&self, err: ChainError) -> ChainError {
        match err {
            ChainError::InsufficientFunds {
                address, needed, ..
            } => ChainError::InsufficientFunds {
                address,
                balance: self.provider.get_balance(address).await.unwrap_or_default(),
                needed,
            },
            other => other,
        }
    }

    async fn send_async(
        &self,
        from: &PrivateKeySigner,
        to: Option<Address>,
        input: Bytes,
        value: U256,
    ) -> Result<TxOutcome> {
        let sender = from.address();
        let kind = to.map_or(TxKind::Create, TxKind::Call);
        let request = TransactionRequest {
            from: Some(sender),
            to: Some(kind),
            value: Some(value),
            input: input.clone().into(),
            ..Default::default()
        };
        let fail = |e| self.rpc_error(e, Some(sender));
        let estimate = match self.provider.estimate_gas(request.clone()).await {
            Ok(gas) => gas,
            Err(e) => return Err(self.with_balance(fail(e)).await),
        };
        let nonce = self
            .provider
            .get_transaction_count(sender)
            .pending()
            .await
            .map_err(fail)?;
        let fees = self.provider.estimate_eip1559_fees().await.map_err(fail)?;
        let tx = TxEip1559 {
            chain_id: self.chain_id,
            nonce,
            // Headroom: estimates are tight, and state may move between estimate and inclusion.
            gas_limit: estimate + estimate / 5,
            max_fee_per_gas: fees.max_fee_per_gas,
            max_priority_fee_per_gas: fees.max_priority_fee_per_gas,
            to: kind,
            value,
            access_list: Default::default(),
            input,
        };
        let envelope = crate::sign_eip1559(from, tx)?;
        let tx_hash = *envelope.tx_hash();
        if let Err(e) = self
            .provider
            .send_raw_transaction(&envelope.encoded_2718())
            .await
        {
            return Err(self.with_balance(fail(e)).await);
        }
        let receipt = self.await_receipt(tx_hash).await?;
        let block_number = receipt
            .block_number
            .ok_or_else(|| ChainError::BadResponse {
                reason: "receipt without a block number".into(),
            })?;
        if !receipt.status() {
            // Replay as a call at the parent block's state to recover the revert reason.
            let replay = self
                .provider
                .call(request)
                .block(block_number.saturating_sub(1).into())
                .await;
            return Err(match replay {
                Err(e) => fail(e),
                Ok(_) => ChainError::Reverted {
                    reason: format!("transaction {tx_hash} reverted (status 0)"),
                },
            });
        }
        Ok(TxOutcome {
            tx_hash,
            block_number,
            gas_used: receipt.gas_used,
            effective_gas_price: receipt.effective_gas_price,
            contract_address: receipt.contract_address,
        })
    }

    async fn await_receipt(
        &self,
        tx_hash: alloy::primitives::B256,
    ) -> Result<alloy::rpc::types::TransactionReceipt> {
        let deadline = Instant::now() + self.config.receipt_timeout;
        let not_confirmed = |reason: String| ChainError::NotConfirmed { tx_hash, reason };
        loop {
            let receipt = self
                .provider
                .get_transaction_receipt(tx_hash)
                .await
                .map_err(|e| self.rpc_error(e, None))?;
            if let Some(receipt) = receipt {
                let mined_in = receipt.block_number.unwrap_or_default();
                // Confirmations count the block that holds the transaction as the first.
                let head = self
                    .provider
                    .get_block_number()
                    .await
                    .map_err(|e| self.rpc_error(e, None))?;
                if head + 1 >= mined_in + self.config.confirmations.max(1) {
                    return Ok(receipt);
                }
            }
            if Instant::now() >= deadline {
                return Err(not_confirmed(format!(
                    "no receipt with {} confirmation(s) after {:?}",
                    self.config.confirmations, self.config.receipt_timeout
                )));
            }
            tokio::time::sleep(self.config.poll_interval).await;
        }
    }
}

impl KeystoreChain for RpcChain {
    fn chain_id(&self) -> u64 {
        self.chain_id
    }

    async fn block_number(&self) -> Result<u64> {
        self.provider
            .get_block_number()
            .await
            .map_err(|e| self.rpc_error(e, None))
    }

    fn send(
        &self,
        from: &PrivateKeySigner,
        to: Option<Address>,
        input: Bytes,
        value: U256,
    ) -> impl Future<Output = Result<TxOutcome>> + Send {
        self.send_async(from, to, input, value)
    }

    async fn call(&self, to: Address, input: Bytes) -> Result<Bytes> {
        let request = TransactionRequest {
            to: Some(TxKind::Call(to)),
            input: input.into(),
            ..Default::default()
        };
        // Pin `latest`: without a block tag a node may answer from its pending state, and an
        // unmined addClient must never look like a pending entry the wallet server can approve.
        self.provider
            .call(request)
            .block(alloy::eips::BlockId::Number(BlockNumberOrTag::Latest))
            .await
            .map_err(|e| self.rpc_error(e, None))
    }

    async fn logs(&self, contract: Address, id: ClientId) -> Result<Vec<HistoryEvent>> {
        let filter = Filter::new()
            .address(contract)
            .event_signature(entry_event_signatures().to_vec())
            .topic1(*id.as_b256())
            .from_block(BlockNumberOrTag::Number(self.config.history_from_block))
            .to_block(BlockNumberOrTag::Latest);
        let logs = self
            .provider
            .get_logs(&filter)
            .await
            .map_err(|e| self.rpc_error(e, None))?;
        let mut events = Vec::with_capacity(logs.len());
        for log in logs {
            let missing = |what: &str| ChainError::BadResponse {
                reason: format!("log without {what}"),
            };
            let change = Change::from_log(log.topics(), &log.data().data).ok_or_else(|| {
                ChainError::BadResponse {
                    reason: "undecodable keystore event".into(),
                }
            })?;
            events.push(HistoryEvent {
                block_number: log.block_number.ok_or_else(|| missing("a block number"))?,
                tx_hash: log
                    .transaction_hash
                    .ok_or_else(|| missing("a transaction hash"))?,
                log_index: log.log_index.ok_or_else(|| missing("a log index"))?,
                change,
            });
        }
        events.sort_by_key(|e| (e.block_number, e.log_index));
        Ok(events)
    }

    async fn storage_at(&self, address: Address, slot: U256) -> Result<U256> {
        self.provider
            .get_storage_at(address, slot)
            .await
            .map_err(|e| self.rpc_error(e, None))
    }

    async fn balance(&self, address: Address) -> Result<U256> {
        self.provider
            .get_balance(address)
            .await
            .map_err(|e| self.rpc_error(e, None))
    }

    async fn get_proof(
        &self,
        address: Address,
        slots: &[B256],
        block: u64,
    ) -> Result<EIP1186AccountProofResponse> {
        self.provider
            .get_proof(address, slots.to_vec())
            .number(block)
            .await
            .map_err(|e| self.rpc_error(e, None))
    }

    async fn block_header(&self, number: u64) -> Result<Header> {
        let block = self
            .provider
            .get_block_by_number(BlockNumberOrTag::Number(number))
            .await
            .map_err(|e| self.rpc_error(e, None))?
            .ok_or(ChainError::UnknownBlock { number })?;
        let header = block.header;
        // The consensus header must reproduce the node's block hash; if it does not, the node sent
        // fields this client does not know (a newer fork), and no hash check downstream could work.
        let hash = header.inner.hash_slow();
        if hash != header.hash || header.inner.number != number {
            return Err(ChainError::BadResponse {
                reason: format!(
                    "block {number}: header fields hash to {hash}, but the node names block {} with hash {} \
                     (unknown header fields?)",
                    header.inner.number, header.hash
                ),
            });
        }
        Ok(header.inner)
    }

    async fn code_at(&self, address: Address) -> Result<Bytes> {
        self.provider
            .get_code_at(address)
            .await
            .map_err(|e| self.rpc_error(e, None))
    }
}
