//! Checking `eth_getProof` answers (EIP-1186) against a trusted state root.

use alloy::primitives::{Address, B256, U256, keccak256};
use alloy::rpc::types::EIP1186AccountProofResponse;
use alloy_trie::{EMPTY_ROOT_HASH, KECCAK_EMPTY, Nibbles, TrieAccount, proof::verify_proof};

use crate::ProofError;

/// An account whose fields were proven against a state root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerifiedAccount {
    /// The account.
    pub address: Address,
    /// The state root it was proven against.
    pub state_root: B256,
    /// False when the proof shows the account absent from the state (EIP-161 empty).
    pub exists: bool,
    /// Proven nonce.
    pub nonce: u64,
    /// Proven balance in wei.
    pub balance: U256,
    /// Proven hash of the account's code.
    pub code_hash: B256,
    /// Proven root of the account's storage trie; storage proofs are checked against it.
    pub storage_root: B256,
}

/// Verifies the account part of an `eth_getProof` answer for `address` against `state_root`.
///
/// An account the node reports as empty (nonce 0, balance 0, no code, no storage) must come with a
/// proof of absence; any other account with a proof of its exact RLP encoding
/// `[nonce, balance, storageRoot, codeHash]` at `keccak256(address)`.
pub fn verify_account_proof(
    state_root: B256,
    address: Address,
    answer: &EIP1186AccountProofResponse,
) -> Result<VerifiedAccount, ProofError> {
    if answer.address != address {
        return Err(ProofError::WrongAccount {
            expected: address,
            got: answer.address,
        });
    }
    // Nodes differ in how they fill the hashes of an absent account: empty-trie/empty-code hashes
    // (geth, anvil) or zeros. Both mean "absent", which must then be proven.
    let no_code = answer.code_hash == KECCAK_EMPTY || answer.code_hash.is_zero();
    let no_storage = answer.storage_hash == EMPTY_ROOT_HASH || answer.storage_hash.is_zero();
    let empty = answer.nonce == 0 && answer.balance.is_zero() && no_code && no_storage;
    let storage_root = if no_storage {
        EMPTY_ROOT_HASH
    } else {
        answer.storage_hash
    };
    let code_hash = if no_code {
        KECCAK_EMPTY
    } else {
        answer.code_hash
    };
    let expected = (!empty).then(|| {
        alloy_rlp::encode(TrieAccount {
            nonce: answer.nonce,
            balance: answer.balance,
            storage_root,
            code_hash,
        })
    });
    verify_proof(
        state_root,
        Nibbles::unpack(keccak256(address)),
        expected,
        &answer.account_proof,
    )
    .map_err(|e| ProofError::account(address, state_root, e))?;
    Ok(VerifiedAccount {
        address,
        state_root,
        exists: !empty,
        nonce: answer.nonce,
        balance: answer.balance,
        code_hash,
        storage_root,
    })
}

impl VerifiedAccount {
    /// Verifies the answer's storage proofs for exactly `slots`, returning their proven values in
    /// the same order (zero for a slot proven absent).
    ///
    /// The answer must hold one proof per requested slot and nothing else: a proof for another slot,
    /// a duplicate, or a missing slot is refused rather than ignored.
    pub fn verify_storage(
        &self,
        answer: &EIP1186AccountProofResponse,
        slots: &[B256],
    ) -> Result<Vec<U256>, ProofError> {
        let mut seen = vec![false; slots.len()];
        let mut by_slot: Vec<Option<usize>> = vec![None; slots.len()];
        for (index, proof) in answer.storage_proof.iter().enumerate() {
            let slot = proof.key.as_b256();
            match slots.iter().position(|s| *s == slot) {
                Some(i) if !seen[i] => {
                    seen[i] = true;
                    by_slot[i] = Some(index);
                }
                _ => return Err(ProofError::UnexpectedSlot(slot)),
            }
        }
        slots
            .iter()
            .zip(by_slot)
            .map(|(slot, index)| {
                let index = index.ok_or(ProofError::MissingSlot(*slot))?;
                let proof = &answer.storage_proof[index];
                // A zero value is not stored in the trie: it must be proven absent.
                let expected = (!proof.value.is_zero()).then(|| alloy_rlp::encode(proof.value));
                verify_proof(
                    self.storage_root,
                    Nibbles::unpack(keccak256(slot)),
                    expected,
                    &proof.proof,
                )
                .map_err(|e| ProofError::storage(*slot, self.storage_root, e))?;
                Ok(proof.value)
            })
            .collect()
    }
}

/// Total bytes of trie nodes in an answer (account and storage proofs): what a lookup costs on the wire.
pub fn proof_size_bytes(answer: &EIP1186AccountProofResponse) -> usize {
    answer.account_proof.iter().map(|n| n.len()).sum::<usize>()
        + answer
            .storage_proof
            .iter()
            .flat_map(|p| p.proof.iter())
            .map(|n| n.len())
            .sum::<usize>()
}
