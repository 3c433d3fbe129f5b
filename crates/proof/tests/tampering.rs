//! Real proofs from real tries, then every kind of tampering the issue names: each must be refused.

use alloy::primitives::{Address, B256, Bytes, U256, address, b256, keccak256};
use chaincall_proof::{AccountState, ProofError, WorldState, verify_account_proof};

const KEYSTORE: Address = address!("5fbdb2315678afecb367f032d93f642f64180aa3");
const WALLET: Address = address!("f39fd6e51aad88f6f4ce6ab8827279cfffb92266");

fn slot(n: u64) -> B256 {
    B256::from(U256::from(n))
}

/// A state shaped like a deployed keystore: a contract with many entries, and funded wallets.
fn state() -> WorldState {
    let mut world = WorldState::new();
    let mut storage = std::collections::BTreeMap::new();
    for i in 0..200u64 {
        // Entries live at hashed slots, like a Solidity mapping.
        storage.insert(
            keccak256(U256::from(i).to_be_bytes::<32>()),
            U256::from(i * 7 + 1),
        );
    }
    storage.insert(slot(0), U256::from_be_bytes(WALLET.into_word().0));
    world.insert(
        KEYSTORE,
        AccountState {
            nonce: 1,
            balance: U256::ZERO,
            code_hash: keccak256(b"keystore runtime code"),
            storage,
        },
    );
    for i in 0..50u8 {
        let mut a = [0u8; 20];
        a[0] = i;
        a[19] = 0x42;
        world.insert(
            Address::from(a),
            AccountState {
                nonce: u64::from(i),
                balance: U256::from(10u64.pow(18)) * U256::from(i + 1),
                ..AccountState::default()
            },
        );
    }
    world
}

fn entry_slot(i: u64) -> B256 {
    keccak256(U256::from(i).to_be_bytes::<32>())
}

#[test]
fn honest_proofs_verify_present_and_absent() {
    let world = state();
    let slots = [entry_slot(3), entry_slot(999), slot(0)];
    let (root, answer) = world.prove(KEYSTORE, &slots);
    assert_eq!(root, world.state_root());
    let account = verify_account_proof(root, KEYSTORE, &answer).unwrap();
    assert!(account.exists);
    let values = account.verify_storage(&answer, &slots).unwrap();
    assert_eq!(
        values,
        vec![
            U256::from(22),
            U256::ZERO,
            U256::from_be_bytes(WALLET.into_word().0)
        ]
    );

    // An account that does not exist is proven absent, and its slots are all zero.
    let nobody = address!("00000000000000000000000000000000000000aa");
    let (root, answer) = world.prove(nobody, &[slot(1)]);
    let account = verify_account_proof(root, nobody, &answer).unwrap();
    assert!(!account.exists);
    assert_eq!(
        account.verify_storage(&answer, &[slot(1)]).unwrap(),
        vec![U256::ZERO]
    );
}

#[test]
fn changed_storage_value_is_refused() {
    let world = state();
    let (root, mut answer) = world.prove(KEYSTORE, &[entry_slot(3)]);
    answer.storage_proof[0].value = U256::from(23);
    let account = verify_account_proof(root, KEYSTORE, &answer).unwrap();
    let err = account
        .verify_storage(&answer, &[entry_slot(3)])
        .unwrap_err();
    assert!(matches!(err, ProofError::StorageProof { .. }), "{err}");
}

#[test]
fn claiming_a_present_value_is_absent_is_refused() {
    let world = state();
    let (root, mut answer) = world.prove(KEYSTORE, &[entry_slot(3)]);
    answer.storage_proof[0].value = U256::ZERO;
    let account = verify_account_proof(root, KEYSTORE, &answer).unwrap();
    assert!(account.verify_storage(&answer, &[entry_slot(3)]).is_err());
    // And the other way: a value claimed where the proof shows absence.
    let (root, mut answer) = world.prove(KEYSTORE, &[entry_slot(999)]);
    answer.storage_proof[0].value = U256::from(1);
    let account = verify_account_proof(root, KEYSTORE, &answer).unwrap();
    assert!(account.verify_storage(&answer, &[entry_slot(999)]).is_err());
}

#[test]
fn changed_account_fields_are_refused() {
    let world = state();
    let (root, answer) = world.prove(KEYSTORE, &[]);
    let mut a = answer.clone();
    a.balance = U256::from(1);
    assert!(verify_account_proof(root, KEYSTORE, &a).is_err());
    let mut a = answer.clone();
    a.storage_hash = keccak256(b"another storage");
    assert!(verify_account_proof(root, KEYSTORE, &a).is_err());
    let mut a = answer.clone();
    a.code_hash = keccak256(b"other code");
    assert!(verify_account_proof(root, KEYSTORE, &a).is_err());
    let mut a = answer;
    a.nonce = 2;
    assert!(verify_account_proof(root, KEYSTORE, &a).is_err());
}

#[test]
fn missing_and_extra_nodes_are_refused() {
    let world = state();
    let slots = [entry_slot(5)];
    let (root, answer) = world.prove(KEYSTORE, &slots);
    assert!(answer.account_proof.len() >= 2 && answer.storage_proof[0].proof.len() >= 2);

    for i in 0..answer.account_proof.len() {
        let mut a = answer.clone();
        a.account_proof.remove(i);
        assert!(
            verify_account_proof(root, KEYSTORE, &a).is_err(),
            "account node {i} removed"
        );
    }
    let account = verify_account_proof(root, KEYSTORE, &answer).unwrap();
    for i in 0..answer.storage_proof[0].proof.len() {
        let mut a = answer.clone();
        a.storage_proof[0].proof.remove(i);
        assert!(
            account.verify_storage(&a, &slots).is_err(),
            "storage node {i} removed"
        );
    }
    let mut a = answer.clone();
    a.account_proof.push(Bytes::from_static(&[0xc0]));
    assert!(
        verify_account_proof(root, KEYSTORE, &a).is_err(),
        "extra account node"
    );
    let mut a = answer.clone();
    let last = a.storage_proof[0].proof.last().unwrap().clone();
    a.storage_proof[0].proof.push(last);
    assert!(
        account.verify_storage(&a, &slots).is_err(),
        "extra storage node"
    );
}

#[test]
fn every_single_bit_flip_in_every_node_is_refused() {
    let world = state();
    let slots = [entry_slot(9)];
    let (root, answer) = world.prove(KEYSTORE, &slots);
    let account = verify_account_proof(root, KEYSTORE, &answer).unwrap();
    for n in 0..answer.account_proof.len() {
        for bit in 0..answer.account_proof[n].len() * 8 {
            let mut a = answer.clone();
            let mut node = a.account_proof[n].to_vec();
            node[bit / 8] ^= 1 << (bit % 8);
            a.account_proof[n] = node.into();
            assert!(
                verify_account_proof(root, KEYSTORE, &a).is_err(),
                "account node {n} bit {bit}"
            );
        }
    }
    for n in 0..answer.storage_proof[0].proof.len() {
        for bit in 0..answer.storage_proof[0].proof[n].len() * 8 {
            let mut a = answer.clone();
            let mut node = a.storage_proof[0].proof[n].to_vec();
            node[bit / 8] ^= 1 << (bit % 8);
            a.storage_proof[0].proof[n] = node.into();
            assert!(
                account.verify_storage(&a, &slots).is_err(),
                "storage node {n} bit {bit}"
            );
        }
    }
}

#[test]
fn wrong_root_is_refused() {
    let world = state();
    let (root, answer) = world.prove(KEYSTORE, &[]);
    let mut other = root;
    other.0[31] ^= 1;
    assert!(matches!(
        verify_account_proof(other, KEYSTORE, &answer),
        Err(ProofError::AccountProof { .. })
    ));
    // A root from an earlier state: the proof of today's state does not verify against it.
    let mut earlier = world.clone();
    earlier.insert(
        WALLET,
        AccountState {
            nonce: 9,
            ..AccountState::default()
        },
    );
    assert!(verify_account_proof(earlier.state_root(), KEYSTORE, &answer).is_err());
}

#[test]
fn proof_for_another_slot_or_account_is_refused() {
    let world = state();
    let asked = entry_slot(3);
    // The provider answers with a genuine proof, but for another slot.
    let (root, answer) = world.prove(KEYSTORE, &[entry_slot(4)]);
    let account = verify_account_proof(root, KEYSTORE, &answer).unwrap();
    assert!(matches!(
        account.verify_storage(&answer, &[asked]),
        Err(ProofError::UnexpectedSlot(_))
    ));
    // ... or relabels another slot's genuine proof with the asked slot's key.
    let mut relabelled = answer.clone();
    relabelled.storage_proof[0].key = asked.into();
    assert!(matches!(
        account.verify_storage(&relabelled, &[asked]),
        Err(ProofError::StorageProof { .. })
    ));
    // A slot asked about but left out.
    let (root, answer) = world.prove(KEYSTORE, &[asked]);
    let account = verify_account_proof(root, KEYSTORE, &answer).unwrap();
    assert_eq!(
        account.verify_storage(&answer, &[asked, entry_slot(4)]),
        Err(ProofError::MissingSlot(entry_slot(4)))
    );
    // Duplicates are refused rather than picked from.
    let mut dup = answer.clone();
    dup.storage_proof.push(dup.storage_proof[0].clone());
    assert!(account.verify_storage(&dup, &[asked]).is_err());

    // A genuine proof of another account.
    let mut a = [0u8; 20];
    a[0] = 3;
    a[19] = 0x42;
    let other = Address::from(a);
    let (root, answer) = world.prove(other, &[]);
    assert!(matches!(
        verify_account_proof(root, KEYSTORE, &answer),
        Err(ProofError::WrongAccount { .. })
    ));
    let mut relabelled = answer;
    relabelled.address = KEYSTORE;
    assert!(verify_account_proof(root, KEYSTORE, &relabelled).is_err());
}

#[test]
fn an_existing_account_cannot_be_passed_off_as_absent() {
    let world = state();
    let (root, mut answer) = world.prove(KEYSTORE, &[]);
    answer.nonce = 0;
    answer.balance = U256::ZERO;
    answer.code_hash = B256::ZERO;
    answer.storage_hash = B256::ZERO;
    assert!(verify_account_proof(root, KEYSTORE, &answer).is_err());
}

#[test]
fn known_empty_trie_root() {
    assert_eq!(
        WorldState::new().state_root(),
        b256!("56e81f171bcc55a6ff8345e692c0f86e5b48e01b996cadc001622fb5e363b421")
    );
}
