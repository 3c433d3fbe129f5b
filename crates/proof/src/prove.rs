//! Real Merkle–Patricia tries over a plain state, answering `eth_getProof` like a node.

use std::collections::BTreeMap;
use std::sync::Arc;

use alloy::primitives::{Address, B256, Bytes, U256, keccak256};
use alloy::rpc::types::{EIP1186AccountProofResponse, EIP1186StorageProof};
use alloy_trie::proof::{ProofNodes, ProofRetainer};
use alloy_trie::{EMPTY_ROOT_HASH, HashBuilder, KECCAK_EMPTY, Nibbles, TrieAccount};

/// One account's state: what the state trie commits to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountState {
    /// Transaction count (or, for contracts, creation count).
    pub nonce: u64,
    /// Balance in wei.
    pub balance: U256,
    /// Hash of the account's code ([`KECCAK_EMPTY`] for none).
    pub code_hash: B256,
    /// Storage slots (32-byte keys, as the EVM addresses them); zero values are not stored.
    pub storage: BTreeMap<B256, U256>,
}

impl Default for AccountState {
    fn default() -> Self {
        Self {
            nonce: 0,
            balance: U256::ZERO,
            code_hash: KECCAK_EMPTY,
            storage: BTreeMap::new(),
        }
    }
}

impl AccountState {
    /// EIP-161: an account with no nonce, balance, code or storage is not in the state trie.
    pub fn is_empty(&self) -> bool {
        self.nonce == 0
            && self.balance.is_zero()
            && self.code_hash == KECCAK_EMPTY
            && self.storage.values().all(U256::is_zero)
    }
}

/// An account with its storage root, computed once when the account is inserted.
#[derive(Debug, PartialEq, Eq)]
struct StoredAccount {
    state: AccountState,
    storage_root: B256,
}

/// A whole world state, with real state and storage tries.
///
/// Each account's storage root is computed once, when the account is inserted; the state root
/// hashes the accounts only. Cloning is cheap (accounts are shared, not copied), so a chain can keep
/// one snapshot per block and answer proofs for past blocks. Proof nodes are rebuilt per request
/// from the plain state (fine for an in-process chain; a node keeps the tries on disk).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorldState {
    accounts: BTreeMap<Address, Arc<StoredAccount>>,
}

impl WorldState {
    /// An empty state.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets an account's state, replacing what was there; computes its storage root (cost linear
    /// in its storage). Inserting an empty account removes it (EIP-161).
    pub fn insert(&mut self, address: Address, account: AccountState) {
        if account.is_empty() {
            self.accounts.remove(&address);
            return;
        }
        let (storage_root, _) = storage_trie(&account.storage, &[]);
        self.accounts.insert(
            address,
            Arc::new(StoredAccount {
                state: account,
                storage_root,
            }),
        );
    }

    /// Removes an account (self-destructed or emptied).
    pub fn remove(&mut self, address: &Address) {
        self.accounts.remove(address);
    }

    /// An account's state, if present.
    pub fn account(&self, address: &Address) -> Option<&AccountState> {
        self.accounts.get(address).map(|a| &a.state)
    }

    /// An account's storage root, if present.
    pub fn storage_root(&self, address: &Address) -> Option<B256> {
        self.accounts.get(address).map(|a| a.storage_root)
    }

    /// The state root (`stateRoot` of a block header holding this state).
    pub fn state_root(&self) -> B256 {
        self.state_trie(None).0
    }

    /// Answers `eth_getProof(address, slots)`: the state root and the EIP-1186 answer proving the
    /// account (or its absence) and each slot (or its absence).
    pub fn prove(&self, address: Address, slots: &[B256]) -> (B256, EIP1186AccountProofResponse) {
        let (state_root, account_nodes) = self.state_trie(Some(address));
        let account_proof = path_nodes(&account_nodes, keccak256(address));
        let empty = AccountState::default();
        let account = self.accounts.get(&address).map_or(&empty, |a| &a.state);
        let (storage_root, storage_nodes) = storage_trie(&account.storage, slots);
        let storage_proof = slots
            .iter()
            .map(|slot| EIP1186StorageProof {
                key: (*slot).into(),
                value: account.storage.get(slot).copied().unwrap_or_default(),
                proof: path_nodes(&storage_nodes, keccak256(slot)),
            })
            .collect();
        let answer = EIP1186AccountProofResponse {
            address,
            balance: account.balance,
            code_hash: account.code_hash,
            nonce: account.nonce,
            storage_hash: storage_root,
            account_proof,
            storage_proof,
        };
        (state_root, answer)
    }

    fn state_trie(&self, target: Option<Address>) -> (B256, ProofNodes) {
        let mut leaves: Vec<(B256, Vec<u8>)> = self
            .accounts
            .iter()
            .map(|(address, stored)| {
                let account = &stored.state;
                let leaf = TrieAccount {
                    nonce: account.nonce,
                    balance: account.balance,
                    storage_root: stored.storage_root,
                    code_hash: account.code_hash,
                };
                (keccak256(address), alloy_rlp::encode(leaf))
            })
            .collect();
        let targets = target.map(keccak256).into_iter().collect::<Vec<_>>();
        build_trie(&mut leaves, &targets)
    }
}

fn storage_trie(storage: &BTreeMap<B256, U256>, targets: &[B256]) -> (B256, ProofNodes) {
    let mut leaves: Vec<(B256, Vec<u8>)> = storage
        .iter()
        .filter(|(_, value)| !value.is_zero())
        .map(|(slot, value)| (keccak256(slot), alloy_rlp::encode(value)))
        .collect();
    let targets: Vec<B256> = targets.iter().map(keccak256).collect();
    build_trie(&mut leaves, &targets)
}

/// Builds a trie from (hashed key, value) leaves, retaining the nodes on the paths to `targets`.
fn build_trie(leaves: &mut [(B256, Vec<u8>)], targets: &[B256]) -> (B256, ProofNodes) {
    if leaves.is_empty() {
        return (EMPTY_ROOT_HASH, ProofNodes::default());
    }
    // The hash builder needs leaves in key order.
    leaves.sort_unstable_by_key(|leaf| leaf.0);
    let retainer = ProofRetainer::new(targets.iter().map(Nibbles::unpack).collect());
    let mut builder = HashBuilder::default().with_proof_retainer(retainer);
    for (key, value) in leaves.iter() {
        builder.add_leaf(Nibbles::unpack(key), value);
    }
    let root = builder.root();
    (root, builder.take_proof_nodes())
}

/// The proof for one hashed key: the retained nodes on its path, root first.
fn path_nodes(nodes: &ProofNodes, hashed_key: B256) -> Vec<Bytes> {
    nodes
        .matching_nodes_sorted(&Nibbles::unpack(hashed_key))
        .into_iter()
        .map(|(_, node)| node)
        .collect()
}
