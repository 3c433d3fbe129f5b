//! Property: for any state, every proof the prover makes verifies and yields the stored values.

use std::collections::BTreeMap;

use alloy::primitives::{Address, B256, U256};
use chaincall_proof::{AccountState, WorldState, verify_account_proof};
use proptest::prelude::*;

fn account() -> impl Strategy<Value = AccountState> {
    (
        0u64..5,
        0u64..1000,
        any::<bool>(),
        prop::collection::btree_map(0u64..64, 0u64..4, 0..40),
    )
        .prop_map(|(nonce, balance, has_code, slots)| AccountState {
            nonce,
            balance: U256::from(balance),
            code_hash: if has_code {
                B256::repeat_byte(7)
            } else {
                alloy_trie::KECCAK_EMPTY
            },
            storage: slots
                .into_iter()
                .map(|(k, v)| (B256::from(U256::from(k)), U256::from(v)))
                .collect::<BTreeMap<_, _>>(),
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn proofs_of_any_state_verify(accounts in prop::collection::vec(account(), 0..12), probe in 0usize..14, asked in prop::collection::vec(0u64..70, 1..6)) {
        let mut world = WorldState::new();
        for (i, account) in accounts.iter().enumerate() {
            world.insert(Address::with_last_byte(i as u8), account.clone());
        }
        let address = Address::with_last_byte(probe as u8);
        let mut slots: Vec<B256> = asked.iter().map(|k| B256::from(U256::from(*k))).collect();
        slots.sort();
        slots.dedup();
        let (root, answer) = world.prove(address, &slots);
        prop_assert_eq!(root, world.state_root());
        let verified = verify_account_proof(root, address, &answer).unwrap();
        let values = verified.verify_storage(&answer, &slots).unwrap();
        let stored = world.account(&address).filter(|a| !a.is_empty());
        prop_assert_eq!(verified.exists, stored.is_some());
        for (slot, value) in slots.iter().zip(values) {
            let expected = stored.and_then(|a| a.storage.get(slot)).copied().unwrap_or_default();
            prop_assert_eq!(value, expected);
        }
    }
}
