//! The embedded backend: a one-node Ethereum chain inside the process, on revm.
//!
//! It behaves like a dev node with instant mining: every transaction arrives as signed EIP-2718
//! bytes, is decoded, its signer recovered and its chain id, nonce, balance and gas checked by revm,
//! and it is mined alone in a new block with a timestamp, a base fee and a beneficiary. Gas is charged
//! at `base_fee + priority_fee` per unit. Reads run against the latest state, like `eth_call`.
//!
//! State lives in a revm `CacheDB` (accounts, code, storage) for execution, mirrored after every
//! block into a real Merkle-Patricia world state (`chaincall_proof::WorldState`): only the accounts
//! the block touched are re-hashed, and the resulting state root goes into the block header. Blocks
//! keep their header, receipts (with logs) for history queries, and — for the last
//! [`EmbeddedConfig::state_history`] blocks — a snapshot of the world state (cheap: unchanged
//! accounts are shared), so `eth_getProof` is answered with real proofs for recent blocks, exactly
//! as a pruning node answers it. Reads (`getClient`) never touch the trie.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use alloy::consensus::{EMPTY_OMMER_ROOT_HASH, Header, Transaction as _, TxEip1559, TxEnvelope};
use alloy::eips::{Decodable2718, Encodable2718, Typed2718};
use alloy::primitives::{Address, B256, Bytes, Log, TxKind, U256, keccak256};
use alloy::rpc::types::EIP1186AccountProofResponse;
use alloy::signers::local::PrivateKeySigner;
use chaincall_proof::{AccountState as TrieAccountState, WorldState};
use revm::context::result::{EVMError, ExecutionResult, InvalidTransaction};
use revm::context::{BlockEnv, Context, TxEnv};
use revm::database::{AccountState as DbAccountState, CacheDB, EmptyDB};
use revm::database_interface::DatabaseRef;
use revm::state::AccountInfo;
use revm::{DatabaseCommit, ExecuteEvm, MainBuilder, MainContext};

use crate::types::{Change, HistoryEvent, TxOutcome};
use crate::{ChainError, ClientId, KeystoreChain, Result};

/// The private keys anvil derives from its default mnemonic (`test test ... junk`), accounts 0 to 9.
/// Public knowledge: they exist so that dev chains and tests share well-known, funded accounts.
const DEV_KEYS: [&str; 10] = [
    "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
    "59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
    "5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a",
    "7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6",
    "47e179ec197488593b187f80a00eb0da91f1b9d0b13f8733639f19c30a34926a",
    "8b3a350cf5c34c9194ca85829a2df0ec3153be0318b5e2d3348e872092edffba",
    "92db14e403b83dfe3df233f83dfa3a0d7096f21ca9b0d6d6b8d88b2b4ec1564e",
    "4bbbf85ce3377467afe5d46f804f221813b2bb87f24d81f60f1fcdbf7cbf4356",
    "dbda1821b80551c9d65939329250298aa3472ba22feea921c0cf5d620ea67b97",
    "2a871d0798f97d79848a013d4936a73bf4cc922c825d33c1cf7073dff6d409c6",
];

/// Anvil's well-known dev account `index` (0 to 9): funded on anvil and, by default, on
/// [`EmbeddedChain`]. Never use these on a real network.
///
/// # Panics
/// If `index > 9`.
pub fn dev_signer(index: usize) -> PrivateKeySigner {
    DEV_KEYS[index]
        .parse()
        // The constants above are valid secp256k1 scalars (a test checks them against anvil).
        .expect("dev keys are valid secp256k1 private keys")
}

/// Gas a call may use on the embedded chain (reads and estimates).
const CALL_GAS: u64 = 10_000_000;

/// Settings of an [`EmbeddedChain`].
#[derive(Debug, Clone)]
pub struct EmbeddedConfig {
    /// Chain id transactions must be signed for (default 31337, like anvil).
    pub chain_id: u64,
    /// Base fee per gas of every block, in wei (default 1 gwei); fixed, not adjusted per EIP-1559.
    pub base_fee: u64,
    /// Priority fee per gas the backend's own signing offers (default 1 gwei).
    pub priority_fee: u128,
    /// Gas limit of every block (default 30M).
    pub block_gas_limit: u64,
    /// Balances at genesis (default: anvil's ten dev accounts with 10,000 ether each).
    pub genesis_balances: Vec<(Address, U256)>,
    /// How many recent blocks keep a state snapshot for `eth_getProof` (default 256; older blocks
    /// keep their header and logs only, like a pruning node). At least 1: the head always has one.
    pub state_history: u64,
}

impl Default for EmbeddedConfig {
    fn default() -> Self {
        let ten_thousand_ether = U256::from(10_000u64) * U256::from(10u64).pow(U256::from(18u64));
        Self {
            chain_id: 31337,
            base_fee: 1_000_000_000,
            priority_fee: 1_000_000_000,
            block_gas_limit: 30_000_000,
            genesis_balances: (0..DEV_KEYS.len())
                .map(|i| (dev_signer(i).address(), ten_thousand_ether))
                .collect(),
            state_history: 256,
        }
    }
}

/// A transaction's receipt as the embedded chain keeps it.
#[derive(Debug, Clone)]
struct ReceiptRecord {
    tx_hash: B256,
    success: bool,
    gas_used: u64,
    logs: Vec<Log>,
}

/// A mined block.
#[derive(Debug, Clone)]
struct BlockRecord {
    header: Header,
    hash: B256,
    receipts: Vec<ReceiptRecord>,
    /// The world state after this block; `None` once pruned.
    state: Option<WorldState>,
}

/// Everything the chain holds; behind one lock, since blocks are mined one transaction at a time.
#[derive(Debug)]
struct ChainState {
    config: EmbeddedConfig,
    db: CacheDB<EmptyDB>,
    /// The trie view of `db`, updated per block for the accounts each block touched.
    world: WorldState,
    blocks: Vec<BlockRecord>,
}

/// An in-process Ethereum chain (revm) with instant mining: see the module docs.
#[derive(Debug)]
pub struct EmbeddedChain {
    state: Mutex<ChainState>,
}

impl Default for EmbeddedChain {
    fn default() -> Self {
        Self::new(EmbeddedConfig::default())
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl EmbeddedChain {
    /// A fresh chain: genesis block 0 with the configured balances.
    pub fn new(config: EmbeddedConfig) -> Self {
        let mut db = CacheDB::new(EmptyDB::default());
        for (address, balance) in &config.genesis_balances {
            db.insert_account_info(
                *address,
                AccountInfo {
                    balance: *balance,
                    ..Default::default()
                },
            );
        }
        let genesis_accounts: Vec<Address> = db.cache.accounts.keys().copied().collect();
        let mut state = ChainState {
            config,
            db,
            world: WorldState::new(),
            blocks: Vec::new(),
        };
        state.update_world(genesis_accounts);
        let genesis = state.next_header(now_secs(), 0);
        state.push_block(genesis, Vec::new());
        Self {
            state: Mutex::new(state),
        }
    }

    fn lock(&self) -> MutexGuard<'_, ChainState> {
        // A panic while holding the lock would be a bug in this module; the state is still
        // consistent because every mutation happens after all fallible steps.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Accepts a signed EIP-2718 transaction (as `eth_sendRawTransaction` would), mines it in a new
    /// block and returns its outcome. A mined transaction that reverted returns its decoded revert.
    pub fn send_raw_transaction(&self, raw: &[u8]) -> Result<TxOutcome> {
        self.lock().submit(raw)
    }

    /// The header of block `number`, if mined (also [`KeystoreChain::block_header`]).
    pub fn header(&self, number: u64) -> Option<Header> {
        let state = self.lock();
        usize::try_from(number)
            .ok()
            .and_then(|n| state.blocks.get(n))
            .map(|b| b.header.clone())
    }

    /// The account nonce (transactions sent so far).
    pub fn nonce(&self, address: Address) -> u64 {
        self.lock().nonce(address)
    }

    fn send_sync(
        &self,
        from: &PrivateKeySigner,
        to: Option<Address>,
        input: Bytes,
        value: U256,
    ) -> Result<TxOutcome> {
        let mut state = self.lock();
        let kind = to.map_or(TxKind::Create, TxKind::Call);
        // Estimate like eth_estimateGas: a call that would revert fails here and is not sent.
        let estimate = state.estimate(from.address(), kind, &input, value)?;
        let tx = TxEip1559 {
            chain_id: state.config.chain_id,
            nonce: state.nonce(from.address()),
            // Headroom over the measured gas: SSTORE needs more than 2300 gas left, and refunds are
            // paid back only at the end.
            gas_limit: (estimate + estimate / 5).min(state.config.block_gas_limit),
            max_fee_per_gas: u128::from(state.config.base_fee) * 2 + state.config.priority_fee,
            max_priority_fee_per_gas: state.config.priority_fee,
            to: kind,
            value,
            access_list: Default::default(),
            input,
        };
        let envelope = crate::sign_eip1559(from, tx)?;
        state.submit(&envelope.encoded_2718())
    }
}

impl ChainState {
    fn head(&self) -> &BlockRecord {
        // Genesis is pushed in `EmbeddedChain::new`, so there is always a head.
        self.blocks
            .last()
            .expect("the chain always has a genesis block")
    }

    fn nonce(&self, address: Address) -> u64 {
        self.db
            .basic_ref(address)
            .ok()
            .flatten()
            .map_or(0, |a| a.nonce)
    }

    fn balance(&self, address: Address) -> U256 {
        self.db
            .basic_ref(address)
            .ok()
            .flatten()
            .map_or(U256::ZERO, |a| a.balance)
    }

    /// The header of the next block, before its transactions are known.
    fn next_header(&self, timestamp: u64, number: u64) -> Header {
        let parent = self.blocks.last();
        Header {
            parent_hash: parent.map_or(B256::ZERO, |b| b.hash),
            ommers_hash: EMPTY_OMMER_ROOT_HASH,
            beneficiary: Address::with_last_byte(0xcb),
            number,
            // Strictly increasing, as consensus demands, even when blocks come faster than seconds.
            timestamp: parent.map_or(timestamp, |b| timestamp.max(b.header.timestamp + 1)),
            gas_limit: self.config.block_gas_limit,
            base_fee_per_gas: Some(self.config.base_fee),
            mix_hash: keccak256(number.to_be_bytes()),
            ..Default::default()
        }
    }

    fn block_env(header: &Header) -> BlockEnv {
        BlockEnv {
            number: U256::from(header.number),
            beneficiary: header.beneficiary,
            timestamp: U256::from(header.timestamp),
            gas_limit: header.gas_limit,
            basefee: header.base_fee_per_gas.unwrap_or_default(),
            difficulty: U256::ZERO,
            prevrandao: Some(header.mix_hash),
            ..Default::default()
        }
    }

    /// Re-hashes the given accounts from `self.db` into the world state (cost linear in their
    /// storage; untouched accounts keep their cached storage roots).
    fn update_world(&mut self, touched: impl IntoIterator<Item = Address>) {
        for address in touched {
            match self.db.cache.accounts.get(&address) {
                Some(account) if account.account_state != DbAccountState::NotExisting => {
                    let storage: BTreeMap<B256, U256> = account
                        .storage
                        .iter()
                        .filter(|(_, value)| !value.is_zero())
                        .map(|(slot, value)| (B256::from(*slot), *value))
                        .collect();
                    self.world.insert(
                        address,
                        TrieAccountState {
                            nonce: account.info.nonce,
                            balance: account.info.balance,
                            code_hash: account.info.code_hash,
                            storage,
                        },
                    );
                }
                _ => self.world.remove(&address),
            }
        }
    }

    /// Seals a block: the real state root of the current world state goes into the header, the
    /// block keeps a snapshot of that state, and snapshots older than `state_history` are dropped.
    fn push_block(&mut self, mut header: Header, receipts: Vec<ReceiptRecord>) {
        header.state_root = self.world.state_root();
        header.gas_used = receipts.iter().map(|r| r.gas_used).sum();
        let hash = header.hash_slow();
        let keep = usize::try_from(self.config.state_history.max(1)).unwrap_or(usize::MAX);
        if let Some(pruned) = self.blocks.len().checked_sub(keep) {
            self.blocks[pruned].state = None;
        }
        self.blocks.push(BlockRecord {
            header,
            hash,
            receipts,
            state: Some(self.world.clone()),
        });
    }

    fn block(&self, number: u64) -> Result<&BlockRecord> {
        usize::try_from(number)
            .ok()
            .and_then(|n| self.blocks.get(n))
            .ok_or(ChainError::UnknownBlock { number })
    }

    /// `eth_getProof` at a mined block, from that block's state snapshot.
    fn proof(
        &self,
        address: Address,
        slots: &[B256],
        number: u64,
    ) -> Result<EIP1186AccountProofResponse> {
        let block = self.block(number)?;
        let world = block.state.as_ref().ok_or(ChainError::StatePruned {
            number,
            kept: self.config.state_history.max(1),
        })?;
        let (root, answer) = world.prove(address, slots);
        // The snapshot is the state the header's root was computed from.
        debug_assert_eq!(root, block.header.state_root);
        Ok(answer)
    }

    /// Runs a read-only transaction against the latest state, the way nodes run `eth_call`: base
    /// fee and gas price zero (so no fee is charged), nonce unchecked.
    fn simulate(
        &self,
        caller: Address,
        kind: TxKind,
        input: &Bytes,
        value: U256,
    ) -> Result<ExecutionResult> {
        let mut header = self.next_header(now_secs(), self.head().header.number + 1);
        header.base_fee_per_gas = Some(0);
        let tx = TxEnv::builder()
            .caller(caller)
            .kind(kind)
            .data(input.clone())
            .value(value)
            .gas_limit(CALL_GAS)
            .chain_id(Some(self.config.chain_id))
            .build_fill();
        let mut evm = Context::mainnet()
            .with_ref_db(&self.db)
            .modify_cfg_chained(|cfg| {
                cfg.chain_id = self.config.chain_id;
                cfg.disable_nonce_check = true;
            })
            .with_block(Self::block_env(&header))
            .build_mainnet();
        evm.transact(tx)
            .map(|r| r.result)
            .map_err(|e| ChainError::Rejected {
                reason: e.to_string(),
            })
    }

    fn call(&self, to: Address, input: &Bytes) -> Result<Bytes> {
        match self.simulate(Address::ZERO, TxKind::Call(to), input, U256::ZERO)? {
            ExecutionResult::Success { output, .. } => Ok(output.into_data()),
            ExecutionResult::Revert { output, .. } => Err(ChainError::from_revert_data(&output)),
            ExecutionResult::Halt { reason, .. } => Err(ChainError::Reverted {
                reason: format!("halted: {reason:?}"),
            }),
        }
    }

    /// Gas the transaction needs before refunds (what the gas limit must cover).
    fn estimate(&self, caller: Address, kind: TxKind, input: &Bytes, value: U256) -> Result<u64> {
        // Value transfers need funds the simulation does not check; fail the way a node does.
        if self.balance(caller) < value {
            return Err(ChainError::InsufficientFunds {
                address: caller,
                balance: self.balance(caller),
                needed: Some(value),
            });
        }
        match self.simulate(caller, kind, input, value)? {
            ExecutionResult::Success { gas, .. } => Ok(gas.total_gas_spent().max(gas.floor_gas())),
            ExecutionResult::Revert { output, .. } => Err(ChainError::from_revert_data(&output)),
            ExecutionResult::Halt { reason, .. } => Err(ChainError::Reverted {
                reason: format!("halted: {reason:?}"),
            }),
        }
    }

    /// Decodes, checks and executes a signed transaction, mining it in a new block.
    fn submit(&mut self, raw: &[u8]) -> Result<TxOutcome> {
        let envelope =
            TxEnvelope::decode_2718(&mut &raw[..]).map_err(|e| ChainError::Rejected {
                reason: format!("undecodable transaction: {e}"),
            })?;
        let TxEnvelope::Eip1559(signed) = &envelope else {
            return Err(ChainError::Rejected {
                reason: format!(
                    "transaction type {} not accepted (EIP-1559 only)",
                    envelope.ty()
                ),
            });
        };
        // The sender is whoever signed: recovered from the signature, never taken on trust.
        let caller = signed
            .signature()
            .recover_address_from_prehash(&signed.signature_hash())
            .map_err(|e| ChainError::Rejected {
                reason: format!("bad signature: {e}"),
            })?;
        let tx_hash = *envelope.tx_hash();
        let tx = TxEnv::builder()
            .tx_type(Some(envelope.ty()))
            .caller(caller)
            .gas_limit(envelope.gas_limit())
            .max_fee_per_gas(envelope.max_fee_per_gas())
            .gas_priority_fee(envelope.max_priority_fee_per_gas())
            .kind(envelope.kind())
            .value(envelope.value())
            .data(envelope.input().clone())
            .nonce(envelope.nonce())
            .chain_id(envelope.chain_id())
            .build_fill();
        let header = self.next_header(now_secs(), self.head().header.number + 1);
        let chain_id = self.config.chain_id;
        let mut evm = Context::mainnet()
            .with_ref_db(&self.db)
            .modify_cfg_chained(|cfg| cfg.chain_id = chain_id)
            .with_block(Self::block_env(&header))
            .build_mainnet();
        let outcome = evm.transact(tx).map_err(|e| match e {
            EVMError::Transaction(InvalidTransaction::LackOfFundForMaxFee { fee, balance }) => {
                ChainError::InsufficientFunds {
                    address: caller,
                    balance: *balance,
                    needed: Some(*fee),
                }
            }
            EVMError::Transaction(InvalidTransaction::InvalidChainId) => ChainError::WrongChainId {
                expected: chain_id,
                actual: envelope.chain_id().unwrap_or_default(),
            },
            other => ChainError::Rejected {
                reason: other.to_string(),
            },
        })?;
        drop(evm);
        let touched: Vec<Address> = outcome.state.keys().copied().collect();
        self.db.commit(outcome.state);
        self.update_world(touched);

        let (success, gas_used, logs, revert) = match outcome.result {
            ExecutionResult::Success { gas, logs, .. } => (true, gas.tx_gas_used(), logs, None),
            ExecutionResult::Revert { gas, logs, output } => (
                false,
                gas.tx_gas_used(),
                logs,
                Some(ChainError::from_revert_data(&output)),
            ),
            ExecutionResult::Halt { gas, logs, reason } => (
                false,
                gas.tx_gas_used(),
                logs,
                Some(ChainError::Reverted {
                    reason: format!("halted: {reason:?}"),
                }),
            ),
        };
        let contract_address =
            (success && envelope.kind().is_create()).then(|| caller.create(envelope.nonce()));
        let block_number = header.number;
        let base_fee = u128::from(header.base_fee_per_gas.unwrap_or_default());
        let effective_gas_price = envelope
            .max_fee_per_gas()
            .min(base_fee + envelope.max_priority_fee_per_gas().unwrap_or_default());
        self.push_block(
            header,
            vec![ReceiptRecord {
                tx_hash,
                success,
                gas_used,
                logs,
            }],
        );
        if let Some(err) = revert {
            return Err(err);
        }
        Ok(TxOutcome {
            tx_hash,
            block_number,
            gas_used,
            effective_gas_price,
            contract_address,
        })
    }

    fn logs(&self, contract: Address, id: ClientId) -> Vec<HistoryEvent> {
        let mut events = Vec::new();
        for block in &self.blocks {
            let mut log_index = 0u64;
            for receipt in block.receipts.iter().filter(|r| r.success) {
                for log in &receipt.logs {
                    let topics = log.data.topics();
                    if log.address == contract
                        && topics.get(1) == Some(id.as_b256())
                        && let Some(change) = Change::from_log(topics, &log.data.data)
                    {
                        events.push(HistoryEvent {
                            block_number: block.header.number,
                            tx_hash: receipt.tx_hash,
                            log_index,
                            change,
                        });
                    }
                    log_index += 1;
                }
            }
        }
        events
    }
}

impl KeystoreChain for EmbeddedChain {
    fn chain_id(&self) -> u64 {
        self.lock().config.chain_id
    }

    fn block_number(&self) -> impl Future<Output = Result<u64>> + Send {
        std::future::ready(Ok(self.lock().head().header.number))
    }

    fn send(
        &self,
        from: &PrivateKeySigner,
        to: Option<Address>,
        input: Bytes,
        value: U256,
    ) -> impl Future<Output = Result<TxOutcome>> + Send {
        std::future::ready(self.send_sync(from, to, input, value))
    }

    fn call(&self, to: Address, input: Bytes) -> impl Future<Output = Result<Bytes>> + Send {
        std::future::ready(self.lock().call(to, &input))
    }

    fn logs(
        &self,
        contract: Address,
        id: ClientId,
    ) -> impl Future<Output = Result<Vec<HistoryEvent>>> + Send {
        std::future::ready(Ok(self.lock().logs(contract, id)))
    }

    fn storage_at(
        &self,
        address: Address,
        slot: U256,
    ) -> impl Future<Output = Result<U256>> + Send {
        let value = self
            .lock()
            .db
            .storage_ref(address, slot)
            .unwrap_or(U256::ZERO);
        std::future::ready(Ok(value))
    }

    fn balance(&self, address: Address) -> impl Future<Output = Result<U256>> + Send {
        std::future::ready(Ok(self.lock().balance(address)))
    }

    fn get_proof(
        &self,
        address: Address,
        slots: &[B256],
        block: u64,
    ) -> impl Future<Output = Result<EIP1186AccountProofResponse>> + Send {
        std::future::ready(self.lock().proof(address, slots, block))
    }

    fn block_header(&self, number: u64) -> impl Future<Output = Result<Header>> + Send {
        std::future::ready(self.lock().block(number).map(|b| b.header.clone()))
    }

    fn code_at(&self, address: Address) -> impl Future<Output = Result<Bytes>> + Send {
        let state = self.lock();
        // Committed accounts may carry only the code hash; the code itself sits in the contracts map.
        let code = state
            .db
            .basic_ref(address)
            .ok()
            .flatten()
            .and_then(|a| match a.code {
                Some(code) => Some(code),
                None => state.db.code_by_hash_ref(a.code_hash).ok(),
            })
            .map(|c| c.original_bytes())
            .unwrap_or_default();
        std::future::ready(Ok(code))
    }
}
