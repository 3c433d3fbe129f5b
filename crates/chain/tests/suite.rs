//! The shared suite: every test runs on the embedded chain and on anvil over JSON-RPC.
//!
//! `backend_tests!` expands each scenario into `embedded::name` and `rpc::name`; the rpc variant
//! starts its own anvil on a free loopback port (and skips, or fails under
//! `CHAINCALL_REQUIRE_PEERS=1`, when anvil is missing).

use alloy::primitives::{Address, FixedBytes, U256};
use alloy::sol_types::SolCall;
use chaincall_chain::contract::{IKeystore, runtime_bytecode};
use chaincall_chain::layout::{self, OWNER_SLOT};
use chaincall_chain::{
    AnvilProcess, ChainError, Change, ClientId, EmbeddedChain, KeystoreChain, PrivateKeySigner,
    RpcChain, RpcConfig, dev_signer, receipt_commitment, receipt_hash,
};
use chaincall_identity::{IdentityKey, IdentityName, KeyStatus, PublicIdentityKey};

/// A deployed keystore with an owner and a few funded wallets.
struct Setup<'a, K> {
    chain: &'a K,
    contract: Address,
    owner: PrivateKeySigner,
    phone: PrivateKeySigner,
    other: PrivateKeySigner,
}

async fn setup<K: KeystoreChain>(chain: &K) -> Setup<'_, K> {
    let owner = dev_signer(0);
    Setup {
        chain,
        contract: chain.deploy_keystore(&owner).await.expect("deploy"),
        owner,
        phone: dev_signer(1),
        other: dev_signer(2),
    }
}

fn id_of(name: &str) -> ClientId {
    ClientId::of(&IdentityName::parse(name).expect("valid name"))
}

fn new_key() -> PublicIdentityKey {
    IdentityKey::generate().public()
}

impl<K: KeystoreChain> Setup<'_, K> {
    async fn add(
        &self,
        from: &PrivateKeySigner,
        id: ClientId,
        key: &PublicIdentityKey,
        receipt: &[u8],
    ) -> Result<chaincall_chain::TxOutcome, ChainError> {
        self.chain
            .add_client_key(self.contract, from, id, key, receipt_hash(receipt))
            .await
    }

    async fn approve(&self, id: ClientId, receipt: &[u8]) -> Result<u64, ChainError> {
        self.chain
            .approve_client(self.contract, &self.owner, id, receipt_hash(receipt))
            .await
            .map(|o| o.gas_used)
    }

    async fn register(&self, from: &PrivateKeySigner, id: ClientId, key: &PublicIdentityKey) {
        self.add(from, id, key, b"receipt-ok").await.expect("add");
        self.approve(id, b"receipt-ok").await.expect("approve");
    }

    async fn get(&self, id: ClientId) -> chaincall_chain::ClientEntry {
        self.chain.get_client(self.contract, id).await.expect("get")
    }
}

async fn deploys_the_committed_bytecode<K: KeystoreChain>(chain: &K) {
    let s = setup(chain).await;
    assert_eq!(
        &chain.code_at(s.contract).await.unwrap(),
        runtime_bytecode(),
        "the chain runs exactly the committed runtime bytecode"
    );
    assert_eq!(chain.owner(s.contract).await.unwrap(), s.owner.address());
    let word = chain.storage_at(s.contract, OWNER_SLOT).await.unwrap();
    assert_eq!(layout::decode_address(word), s.owner.address());
}

async fn round_trip_add_approve_get<K: KeystoreChain>(chain: &K) {
    let s = setup(chain).await;
    let id = id_of("+1 555 123 4567");
    let key = new_key();
    assert_eq!(s.get(id).await, chaincall_chain::ClientEntry::unknown(id));

    let added = s.add(&s.phone, id, &key, b"token-1").await.unwrap();
    let pending = s.get(id).await;
    assert_eq!(pending.status, KeyStatus::Pending);
    assert_eq!(pending.wallet, Some(s.phone.address()));
    assert_eq!(pending.public_key().unwrap(), key);
    assert_eq!(pending.approved_key(), None, "a pending key is not usable");

    let approve_gas = s.approve(id, b"token-1").await.unwrap();
    let approved = s.get(id).await;
    assert_eq!(approved.status, KeyStatus::Approved);
    assert_eq!(approved.approved_key(), Some(key));
    assert_eq!(approved.wallet, Some(s.phone.address()));
    assert!(
        added.gas_used + approve_gas <= 150_000,
        "addClient {} + approveClient {} must stay within 150k gas",
        added.gas_used,
        approve_gas
    );
}

async fn storage_layout_matches_get_client<K: KeystoreChain>(chain: &K) {
    let s = setup(chain).await;
    let id = id_of("sip.example.org");
    let key = new_key();
    s.add(&s.phone, id, &key, b"server receipt").await.unwrap();
    for approve in [false, true] {
        if approve {
            s.approve(id, b"server receipt").await.unwrap();
        }
        let slots = layout::entry_slots(&id);
        let mut words = [U256::ZERO; layout::ENTRY_SLOTS];
        for (word, slot) in words.iter_mut().zip(slots) {
            *word = chain.storage_at(s.contract, slot).await.unwrap();
        }
        let stored = layout::decode_entry(id, words).unwrap();
        assert_eq!(stored.entry, s.get(id).await);
        assert_eq!(
            stored.commitment,
            receipt_commitment(&id, s.phone.address(), &receipt_hash(b"server receipt"))
        );
    }
    // An id never written decodes to unknown from all-zero slots.
    let nobody = id_of("+15550000000");
    let words = [
        chain
            .storage_at(s.contract, layout::entry_slots(&nobody)[0])
            .await
            .unwrap(),
        chain
            .storage_at(s.contract, layout::entry_slots(&nobody)[1])
            .await
            .unwrap(),
    ];
    assert_eq!(
        layout::decode_entry(nobody, words).unwrap().entry.status,
        KeyStatus::Unknown
    );
}

async fn contract_commitment_matches_rust<K: KeystoreChain>(chain: &K) {
    let s = setup(chain).await;
    let id = id_of("+44 20 7946 0958");
    let rh = receipt_hash(b"some receipt");
    let input = IKeystore::receiptCommitmentCall {
        id: *id.as_b256(),
        wallet: s.phone.address(),
        receiptHash: rh,
    }
    .abi_encode();
    let out = chain.call(s.contract, input.into()).await.unwrap();
    let on_chain = IKeystore::receiptCommitmentCall::abi_decode_returns(&out).unwrap();
    assert_eq!(on_chain, receipt_commitment(&id, s.phone.address(), &rh));
}

async fn approve_from_non_owner_fails<K: KeystoreChain>(chain: &K) {
    let s = setup(chain).await;
    let id = id_of("+15551230001");
    s.add(&s.phone, id, &new_key(), b"r").await.unwrap();
    let err = chain
        .approve_client(s.contract, &s.other, id, receipt_hash(b"r"))
        .await
        .unwrap_err();
    assert_eq!(
        err,
        ChainError::NotOwner {
            caller: s.other.address()
        }
    );
    assert!(err.to_string().contains("not the keystore owner"), "{err}");
    assert_eq!(s.get(id).await.status, KeyStatus::Pending);
}

async fn wrong_receipt_is_refused<K: KeystoreChain>(chain: &K) {
    let s = setup(chain).await;
    let id = id_of("+15551230002");
    s.add(&s.phone, id, &new_key(), b"the real receipt")
        .await
        .unwrap();
    assert_eq!(
        s.approve(id, b"another receipt").await.unwrap_err(),
        ChainError::ReceiptMismatch { id }
    );
    assert_eq!(s.get(id).await.status, KeyStatus::Pending);
    let unknown = id_of("+15551239999");
    assert_eq!(
        s.approve(unknown, b"x").await.unwrap_err(),
        ChainError::UnknownId { id: unknown }
    );
}

async fn mempool_copy_is_worthless<K: KeystoreChain>(chain: &K) {
    let s = setup(chain).await;
    let id = id_of("+15551230003");
    let phone_key = new_key();
    let receipt = b"receipt sold to the phone";
    // The attacker front-runs with a verbatim copy of the phone's addClient (its commitment was made
    // for the phone's wallet) but from its own wallet and with its own key.
    let copied = receipt_commitment(&id, s.phone.address(), &receipt_hash(receipt));
    let attacker_key = new_key();
    chain
        .add_client(
            s.contract,
            &s.other,
            id,
            1,
            &attacker_key.to_bytes(),
            copied,
        )
        .await
        .unwrap();
    // The phone's own submission cannot replace another wallet's pending entry...
    assert_eq!(
        s.add(&s.phone, id, &phone_key, receipt).await.unwrap_err(),
        ChainError::AlreadyPending {
            id,
            wallet: s.other.address()
        }
    );
    // ...and the owner's approval with the real receipt does not approve the copy.
    assert_eq!(
        s.approve(id, receipt).await.unwrap_err(),
        ChainError::ReceiptMismatch { id }
    );
    // The owner clears the bogus entry; the phone registers.
    chain.revoke_client(s.contract, &s.owner, id).await.unwrap();
    s.add(&s.phone, id, &phone_key, receipt).await.unwrap();
    s.approve(id, receipt).await.unwrap();
    let entry = s.get(id).await;
    assert_eq!(entry.wallet, Some(s.phone.address()));
    assert_eq!(entry.approved_key(), Some(phone_key));
}

async fn approved_id_cannot_be_taken<K: KeystoreChain>(chain: &K) {
    let s = setup(chain).await;
    let id = id_of("+15551230004");
    let key = new_key();
    s.register(&s.phone, id, &key).await;
    assert_eq!(
        s.add(&s.other, id, &new_key(), b"receipt-ok")
            .await
            .unwrap_err(),
        ChainError::AlreadyTaken {
            id,
            wallet: s.phone.address()
        }
    );
    // Not even its own wallet re-adds over an approved entry (rotation is the way).
    assert!(matches!(
        s.add(&s.phone, id, &new_key(), b"r2").await.unwrap_err(),
        ChainError::AlreadyTaken { .. }
    ));
    assert_eq!(s.get(id).await.approved_key(), Some(key));
}

async fn own_pending_entry_can_be_resubmitted<K: KeystoreChain>(chain: &K) {
    let s = setup(chain).await;
    let id = id_of("+15551230005");
    s.add(&s.phone, id, &new_key(), b"first").await.unwrap();
    let key2 = new_key();
    s.add(&s.phone, id, &key2, b"second").await.unwrap();
    assert_eq!(
        s.approve(id, b"first").await.unwrap_err(),
        ChainError::ReceiptMismatch { id }
    );
    s.approve(id, b"second").await.unwrap();
    assert_eq!(s.get(id).await.approved_key(), Some(key2));
    // Approving twice is a status error, not a silent success.
    assert_eq!(
        s.approve(id, b"second").await.unwrap_err(),
        ChainError::WrongStatus {
            id,
            status: KeyStatus::Approved
        }
    );
}

async fn rotate_and_revoke<K: KeystoreChain>(chain: &K) {
    let s = setup(chain).await;
    let id = id_of("+15551230006");
    let key1 = new_key();
    s.add(&s.phone, id, &key1, b"receipt-ok").await.unwrap();
    // Rotation needs an approved entry.
    assert_eq!(
        chain
            .rotate_key(s.contract, &s.phone, id, 1, &new_key().to_bytes())
            .await
            .unwrap_err(),
        ChainError::WrongStatus {
            id,
            status: KeyStatus::Pending
        }
    );
    s.approve(id, b"receipt-ok").await.unwrap();
    let key2 = new_key();
    assert_eq!(
        chain
            .rotate_key(s.contract, &s.other, id, 1, &key2.to_bytes())
            .await
            .unwrap_err(),
        ChainError::NotEntryWallet {
            id,
            caller: s.other.address()
        }
    );
    chain
        .rotate_key(s.contract, &s.phone, id, 1, &key2.to_bytes())
        .await
        .unwrap();
    assert_eq!(s.get(id).await.approved_key(), Some(key2.clone()));

    assert_eq!(
        chain
            .revoke_client(s.contract, &s.other, id)
            .await
            .unwrap_err(),
        ChainError::NotEntryWallet {
            id,
            caller: s.other.address()
        }
    );
    chain.revoke_client(s.contract, &s.phone, id).await.unwrap();
    let revoked = s.get(id).await;
    assert_eq!(revoked.status, KeyStatus::Revoked);
    assert_eq!(revoked.approved_key(), None);
    assert_eq!(
        chain
            .revoke_client(s.contract, &s.phone, id)
            .await
            .unwrap_err(),
        ChainError::WrongStatus {
            id,
            status: KeyStatus::Revoked
        }
    );

    // History tells the whole story, in order.
    let history = chain.history(s.contract, id).await.unwrap();
    let names: Vec<_> = history.iter().map(|e| e.change.name()).collect();
    assert_eq!(names, ["added", "approved", "rotated", "revoked"]);
    assert!(
        history
            .windows(2)
            .all(|w| w[0].block_number < w[1].block_number)
    );
    match &history[0].change {
        Change::Added { wallet, key, .. } => {
            assert_eq!(*wallet, s.phone.address());
            assert_eq!(key.as_ref(), key1.to_bytes().as_slice());
        }
        other => panic!("expected added, got {other:?}"),
    }
    match &history[1].change {
        Change::Approved {
            receipt_hash: rh, ..
        } => assert_eq!(*rh, receipt_hash(b"receipt-ok")),
        other => panic!("expected approved, got {other:?}"),
    }
    match &history[2].change {
        Change::Rotated { key, .. } => assert_eq!(key.as_ref(), key2.to_bytes().as_slice()),
        other => panic!("expected rotated, got {other:?}"),
    }
    assert_eq!(
        history[3].change,
        Change::Revoked {
            wallet: s.phone.address(),
            by: s.phone.address()
        }
    );

    // A revoked id can be registered again, by another wallet, with a fresh approval.
    let key3 = new_key();
    s.register(&s.other, id, &key3).await;
    let entry = s.get(id).await;
    assert_eq!(entry.wallet, Some(s.other.address()));
    assert_eq!(entry.approved_key(), Some(key3));
}

async fn owner_can_revoke<K: KeystoreChain>(chain: &K) {
    let s = setup(chain).await;
    let id = id_of("+15551230007");
    s.register(&s.phone, id, &new_key()).await;
    chain.revoke_client(s.contract, &s.owner, id).await.unwrap();
    assert_eq!(s.get(id).await.status, KeyStatus::Revoked);
    let history = chain.history(s.contract, id).await.unwrap();
    assert_eq!(
        history.last().unwrap().change,
        Change::Revoked {
            wallet: s.phone.address(),
            by: s.owner.address()
        }
    );
}

/// Issue 13 (likely item): revoking a squatter's pending entry let the squatter (or anyone) submit
/// again at once, so a number could be blocked for good. The owner now reserves the id for the
/// wallet it verified: the pending entry is replaced, nobody else may submit, and the reserved
/// wallet registers as usual. (On the old contract `reserveClient` does not exist.)
async fn reservation_keeps_a_squatted_number_for_the_verified_wallet<K: KeystoreChain>(chain: &K) {
    let s = setup(chain).await;
    let id = id_of("+15551230100");
    let squatter = &s.other;
    let rightful = &s.phone;
    s.add(squatter, id, &new_key(), b"no receipt")
        .await
        .unwrap();
    // Revoking alone is not enough: the squatter is back in the next block.
    chain.revoke_client(s.contract, &s.owner, id).await.unwrap();
    s.add(squatter, id, &new_key(), b"no receipt")
        .await
        .unwrap();
    assert_eq!(s.get(id).await.status, KeyStatus::Pending);

    // Only the owner reserves, and only for a real wallet.
    assert_eq!(
        chain
            .reserve_client(s.contract, squatter, id, squatter.address())
            .await
            .unwrap_err(),
        ChainError::NotOwner {
            caller: squatter.address()
        }
    );
    assert_eq!(
        chain
            .reserve_client(s.contract, &s.owner, id, Address::ZERO)
            .await
            .unwrap_err(),
        ChainError::ZeroWallet
    );
    chain
        .reserve_client(s.contract, &s.owner, id, rightful.address())
        .await
        .unwrap();
    // The squatter's entry is gone (revoked, on record), the reservation holds no key.
    assert_eq!(s.get(id).await, chaincall_chain::ClientEntry::unknown(id));
    assert_eq!(
        chain.reserved_for(s.contract, id).await.unwrap(),
        Some(rightful.address())
    );
    let history = chain.history(s.contract, id).await.unwrap();
    assert_eq!(
        history.last().unwrap().change,
        Change::Revoked {
            wallet: squatter.address(),
            by: s.owner.address()
        }
    );
    // Storage: a reserved entry decodes as unknown, with the reserved wallet.
    let slots = layout::entry_slots(&id);
    let words = [
        chain.storage_at(s.contract, slots[0]).await.unwrap(),
        chain.storage_at(s.contract, slots[1]).await.unwrap(),
    ];
    let stored = layout::decode_entry(id, words).unwrap();
    assert_eq!(stored.entry, chaincall_chain::ClientEntry::unknown(id));
    assert_eq!(stored.reserved_for, Some(rightful.address()));

    // Nobody else may submit, not even with a valid-looking entry.
    assert_eq!(
        s.add(squatter, id, &new_key(), b"no receipt")
            .await
            .unwrap_err(),
        ChainError::Reserved {
            id,
            wallet: rightful.address()
        }
    );
    // The reserved wallet registers as usual; its submission ends the reservation.
    let key = new_key();
    s.add(rightful, id, &key, b"receipt-ok").await.unwrap();
    assert_eq!(chain.reserved_for(s.contract, id).await.unwrap(), None);
    s.approve(id, b"receipt-ok").await.unwrap();
    assert_eq!(s.get(id).await.approved_key(), Some(key));
    // An approved id cannot be reserved away from its holder.
    assert_eq!(
        chain
            .reserve_client(s.contract, &s.owner, id, squatter.address())
            .await
            .unwrap_err(),
        ChainError::AlreadyTaken {
            id,
            wallet: rightful.address()
        }
    );

    // The owner releases a reservation with revokeClient; the id is then open to anyone.
    let other_id = id_of("+15551230101");
    chain
        .reserve_client(s.contract, &s.owner, other_id, rightful.address())
        .await
        .unwrap();
    chain
        .revoke_client(s.contract, &s.owner, other_id)
        .await
        .unwrap();
    assert_eq!(
        chain.reserved_for(s.contract, other_id).await.unwrap(),
        None
    );
    s.add(squatter, other_id, &new_key(), b"r").await.unwrap();
}

/// `addClientWithProof` with hand-made parts, to send proofs the Rust helper would never make.
#[allow(clippy::too_many_arguments)]
async fn add_with_raw_proof<K: KeystoreChain>(
    s: &Setup<'_, K>,
    from: &PrivateKeySigner,
    id: ClientId,
    key: &PublicIdentityKey,
    signer: &IdentityKey,
    signed_wallet: Address,
    y: alloy::primitives::B256,
) -> Result<chaincall_chain::TxOutcome, ChainError> {
    let commitment = receipt_commitment(&id, from.address(), &receipt_hash(b"r"));
    let signature = signer
        .sign(&chaincall_chain::possession_message(
            &id,
            signed_wallet,
            &commitment,
        ))
        .to_bytes();
    let input = IKeystore::addClientWithProofCall {
        id: *id.as_b256(),
        keyType: key.tag(),
        key: key.to_bytes().into(),
        commitment,
        keyY: y,
        r: alloy::primitives::B256::from_slice(&signature[..32]),
        s: alloy::primitives::B256::from_slice(&signature[32..]),
    }
    .abi_encode();
    s.chain
        .send(from, Some(s.contract), input.into(), U256::ZERO)
        .await
}

fn y_of(key: &PublicIdentityKey) -> alloy::primitives::B256 {
    let point = key.to_uncompressed_bytes();
    alloy::primitives::B256::from_slice(&point[33..65])
}

/// Issue 13 (likely item, optional): `addClientWithProof` checks on chain, with the P-256
/// precompile (EIP-7951), that the sender holds the key it registers — over the same message the
/// wallet server checks. A key the sender does not hold, a proof made for another wallet, or a y
/// coordinate that does not match the compressed key is refused.
async fn proof_of_possession_is_checked_on_chain<K: KeystoreChain>(chain: &K) {
    let s = setup(chain).await;
    let id = id_of("+15551230300");
    let identity = IdentityKey::generate();
    let public = identity.public();
    let commitment = receipt_commitment(&id, s.phone.address(), &receipt_hash(b"r"));
    // Somebody else's key, signed by a key the sender holds: refused.
    let victim = new_key();
    assert_eq!(
        add_with_raw_proof(
            &s,
            &s.phone,
            id,
            &victim,
            &identity,
            s.phone.address(),
            y_of(&victim)
        )
        .await
        .unwrap_err(),
        ChainError::BadProof { id }
    );
    // A genuine signature, but over another wallet (a proof copied from someone's submission).
    assert_eq!(
        add_with_raw_proof(
            &s,
            &s.other,
            id,
            &public,
            &identity,
            s.phone.address(),
            y_of(&public)
        )
        .await
        .unwrap_err(),
        ChainError::BadProof { id }
    );
    // The other point with the same x (y negated): parity does not match the prefix.
    let mut wrong_y = y_of(&public);
    wrong_y.0[31] ^= 1;
    assert_eq!(
        add_with_raw_proof(
            &s,
            &s.phone,
            id,
            &public,
            &identity,
            s.phone.address(),
            wrong_y
        )
        .await
        .unwrap_err(),
        ChainError::BadProof { id }
    );
    assert_eq!(s.get(id).await, chaincall_chain::ClientEntry::unknown(id));
    // The holder's own proof: a pending entry like addClient's, approvable as usual.
    chain
        .add_client_with_proof(s.contract, &s.phone, id, &identity, commitment)
        .await
        .unwrap();
    let pending = s.get(id).await;
    assert_eq!(pending.status, KeyStatus::Pending);
    assert_eq!(pending.wallet, Some(s.phone.address()));
    assert_eq!(pending.public_key().unwrap(), public);
    s.approve(id, b"r").await.unwrap();
    assert_eq!(s.get(id).await.approved_key(), Some(public));
}

async fn malformed_keys_are_refused<K: KeystoreChain>(chain: &K) {
    let s = setup(chain).await;
    let id = id_of("+15551230008");
    let good = new_key().to_bytes();
    let c = FixedBytes::<8>::ZERO;
    let cases: Vec<(u8, Vec<u8>)> = vec![
        (2, good.clone()),                              // unknown type tag
        (1, good[..32].to_vec()),                       // too short
        (1, [good.clone(), vec![0]].concat()),          // too long
        (1, [vec![0x04], good[1..].to_vec()].concat()), // not a compressed point prefix
        (1, Vec::new()),                                // empty
    ];
    for (tag, bytes) in cases {
        let err = chain
            .add_client(s.contract, &s.phone, id, tag, &bytes, c)
            .await
            .unwrap_err();
        assert_eq!(
            err,
            ChainError::MalformedKey {
                key_type: tag,
                length: bytes.len()
            }
        );
    }
    assert_eq!(s.get(id).await.status, KeyStatus::Unknown);
}

async fn names_and_numbers_do_not_collide<K: KeystoreChain>(chain: &K) {
    let s = setup(chain).await;
    let phone_id = id_of("+15551230009");
    let server_id = id_of("sip.example.org");
    assert_ne!(phone_id, server_id);
    let server_key = new_key();
    s.register(&s.other, server_id, &server_key).await;
    assert_eq!(s.get(phone_id).await.status, KeyStatus::Unknown);
    assert_eq!(s.get(server_id).await.approved_key(), Some(server_key));
}

async fn ownership_transfers_in_two_steps<K: KeystoreChain>(chain: &K) {
    let s = setup(chain).await;
    let new_owner = dev_signer(3);
    chain
        .transfer_ownership(s.contract, &s.owner, new_owner.address())
        .await
        .unwrap();
    // Nothing changes until the nominee accepts.
    assert_eq!(chain.owner(s.contract).await.unwrap(), s.owner.address());
    assert_eq!(
        chain
            .accept_ownership(s.contract, &s.other)
            .await
            .unwrap_err(),
        ChainError::NotPendingOwner {
            caller: s.other.address()
        }
    );
    chain
        .accept_ownership(s.contract, &new_owner)
        .await
        .unwrap();
    assert_eq!(chain.owner(s.contract).await.unwrap(), new_owner.address());
    let id = id_of("+15551230010");
    s.add(&s.phone, id, &new_key(), b"r").await.unwrap();
    assert_eq!(
        s.approve(id, b"r").await.unwrap_err(),
        ChainError::NotOwner {
            caller: s.owner.address()
        }
    );
    chain
        .approve_client(s.contract, &new_owner, id, receipt_hash(b"r"))
        .await
        .unwrap();
    assert_eq!(s.get(id).await.status, KeyStatus::Approved);
}

async fn gas_is_charged_to_the_sender<K: KeystoreChain>(chain: &K) {
    let s = setup(chain).await;
    let before = chain.balance(s.phone.address()).await.unwrap();
    let nonce_probe = chain.block_number().await.unwrap();
    let out = s
        .add(&s.phone, id_of("+15551230011"), &new_key(), b"r")
        .await
        .unwrap();
    let after = chain.balance(s.phone.address()).await.unwrap();
    assert!(out.effective_gas_price > 0);
    assert_eq!(
        before - after,
        U256::from(out.gas_used) * U256::from(out.effective_gas_price)
    );
    assert!(
        out.block_number > nonce_probe,
        "a new block per transaction"
    );
}

async fn unfunded_wallet_gets_insufficient_funds<K: KeystoreChain>(chain: &K) {
    let s = setup(chain).await;
    let poor = PrivateKeySigner::random();
    let err = s
        .add(&poor, id_of("+15551230012"), &new_key(), b"r")
        .await
        .unwrap_err();
    assert!(
        matches!(err, ChainError::InsufficientFunds { address, .. } if address == poor.address()),
        "{err:?}"
    );
    // Funding the wallet (as the wallet server does) fixes it.
    chain
        .transfer(
            &s.owner,
            poor.address(),
            U256::from(10u64).pow(U256::from(17u64)),
        )
        .await
        .unwrap();
    s.add(&poor, id_of("+15551230012"), &new_key(), b"r")
        .await
        .unwrap();
}

async fn calls_to_an_address_without_code_fail_clearly<K: KeystoreChain>(chain: &K) {
    let nowhere = Address::repeat_byte(0x42);
    assert_eq!(
        chain
            .get_client(nowhere, id_of("+15551230013"))
            .await
            .unwrap_err(),
        ChainError::NoContract { address: nowhere }
    );
}

macro_rules! backend_tests {
    ($($name:ident),* $(,)?) => {
        mod embedded {
            use super::*;
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(&EmbeddedChain::default()).await;
                }
            )*
        }
        mod rpc {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
                async fn $name() {
                    let Some(node) = start_anvil(&[]) else { return };
                    let chain = RpcChain::connect(&node.url(), RpcConfig {
                        expected_chain_id: Some(31337),
                        ..RpcConfig::default()
                    })
                    .await
                    .expect("connect to anvil");
                    super::$name(&chain).await;
                }
            )*
        }
    };
}

fn start_anvil(extra: &[&str]) -> Option<AnvilProcess> {
    let anvil = chaincall_testkit::peer("anvil")?;
    Some(
        AnvilProcess::spawn(&anvil, chaincall_testkit::free_tcp_port(), extra)
            .expect("anvil starts and answers"),
    )
}

backend_tests!(
    deploys_the_committed_bytecode,
    round_trip_add_approve_get,
    storage_layout_matches_get_client,
    contract_commitment_matches_rust,
    approve_from_non_owner_fails,
    wrong_receipt_is_refused,
    mempool_copy_is_worthless,
    approved_id_cannot_be_taken,
    own_pending_entry_can_be_resubmitted,
    rotate_and_revoke,
    owner_can_revoke,
    reservation_keeps_a_squatted_number_for_the_verified_wallet,
    proof_of_possession_is_checked_on_chain,
    malformed_keys_are_refused,
    names_and_numbers_do_not_collide,
    ownership_transfers_in_two_steps,
    gas_is_charged_to_the_sender,
    unfunded_wallet_gets_insufficient_funds,
    calls_to_an_address_without_code_fail_clearly,
);

/// The embedded chain charges exactly the gas a real node charges, function by function.
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn embedded_gas_equals_anvil_gas() {
    let Some(node) = start_anvil(&[]) else { return };
    let rpc = RpcChain::connect(&node.url(), RpcConfig::default())
        .await
        .unwrap();
    let embedded = EmbeddedChain::default();
    let key = new_key();
    let key2 = new_key();
    let id = id_of("+15551230099");
    let mut gas = Vec::new();
    for chain in [&embedded as &dyn GasProbe, &rpc as &dyn GasProbe] {
        gas.push(chain.probe(id, &key, &key2).await);
    }
    assert_eq!(gas[0], gas[1], "embedded vs anvil gas per function");
}

/// Object-safe wrapper so both backends run the same sequence in one loop.
trait GasProbe {
    fn probe<'a>(
        &'a self,
        id: ClientId,
        key: &'a PublicIdentityKey,
        key2: &'a PublicIdentityKey,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Vec<u64>> + Send + 'a>>;
}

impl<K: KeystoreChain> GasProbe for K {
    fn probe<'a>(
        &'a self,
        id: ClientId,
        key: &'a PublicIdentityKey,
        key2: &'a PublicIdentityKey,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Vec<u64>> + Send + 'a>> {
        Box::pin(async move {
            let s = setup(self).await;
            let add = s.add(&s.phone, id, key, b"r").await.unwrap().gas_used;
            let approve = s.approve(id, b"r").await.unwrap();
            let rotate = self
                .rotate_key(s.contract, &s.phone, id, 1, &key2.to_bytes())
                .await
                .unwrap()
                .gas_used;
            let revoke = self
                .revoke_client(s.contract, &s.phone, id)
                .await
                .unwrap()
                .gas_used;
            vec![add, approve, rotate, revoke]
        })
    }
}

#[tokio::test]
async fn rpc_reports_a_node_that_is_down() {
    let port = chaincall_testkit::free_tcp_port();
    let url = format!("http://127.0.0.1:{port}");
    let err = RpcChain::connect(&url, RpcConfig::default())
        .await
        .unwrap_err();
    assert!(matches!(err, ChainError::NodeDown { .. }), "{err:?}");
    assert!(err.to_string().starts_with("node down"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn rpc_checks_the_chain_id() {
    let Some(node) = start_anvil(&[]) else { return };
    let err = RpcChain::connect(
        &node.url(),
        RpcConfig {
            expected_chain_id: Some(1),
            ..RpcConfig::default()
        },
    )
    .await
    .unwrap_err();
    assert_eq!(
        err,
        ChainError::WrongChainId {
            expected: 1,
            actual: 31337
        }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn rpc_waits_for_confirmations() {
    // Interval mining (one block a second) so that confirmations need real new blocks.
    let Some(node) = start_anvil(&["--block-time", "1"]) else {
        return;
    };
    let chain = RpcChain::connect(
        &node.url(),
        RpcConfig {
            confirmations: 2,
            ..RpcConfig::default()
        },
    )
    .await
    .unwrap();
    let out = chain.deploy(&dev_signer(0)).await.unwrap();
    assert!(chain.block_number().await.unwrap() > out.block_number);
}

#[test]
fn dev_signers_are_anvils_accounts() {
    // The first account is the one every Ethereum tutorial prints.
    assert_eq!(
        dev_signer(0).address(),
        "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
            .parse::<Address>()
            .unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn dev_signers_match_anvil_accounts() {
    use alloy::providers::Provider;
    let Some(node) = start_anvil(&[]) else { return };
    let chain = RpcChain::connect(&node.url(), RpcConfig::default())
        .await
        .unwrap();
    let accounts = chain.provider().get_accounts().await.unwrap();
    let ours: Vec<Address> = (0..10).map(|i| dev_signer(i).address()).collect();
    assert_eq!(accounts, ours);
}

#[test]
fn embedded_rejects_a_replayed_transaction() {
    // A signed transaction mined once cannot be mined again: its nonce is spent.
    use alloy::consensus::{SignableTransaction, TxEip1559, TxEnvelope};
    use alloy::eips::Encodable2718;
    use alloy::network::TxSignerSync;
    use alloy::primitives::TxKind;
    let chain = EmbeddedChain::default();
    let from = dev_signer(4);
    let mut tx = TxEip1559 {
        chain_id: 31337,
        nonce: 0,
        gas_limit: 21_000,
        max_fee_per_gas: 3_000_000_000,
        max_priority_fee_per_gas: 1_000_000_000,
        to: TxKind::Call(Address::repeat_byte(7)),
        value: U256::from(1u64),
        ..Default::default()
    };
    let sig = from.sign_transaction_sync(&mut tx).unwrap();
    let raw = TxEnvelope::Eip1559(tx.clone().into_signed(sig)).encoded_2718();
    chain.send_raw_transaction(&raw).unwrap();
    assert_eq!(chain.nonce(from.address()), 1);
    let err = chain.send_raw_transaction(&raw).unwrap_err();
    assert!(
        matches!(&err, ChainError::Rejected { reason } if reason.contains("nonce")),
        "{err:?}"
    );
    // A transaction signed for another chain is refused.
    let mut other_chain = TxEip1559 {
        chain_id: 1,
        nonce: 1,
        ..tx
    };
    let sig = from.sign_transaction_sync(&mut other_chain).unwrap();
    let raw = TxEnvelope::Eip1559(other_chain.into_signed(sig)).encoded_2718();
    assert!(matches!(
        chain.send_raw_transaction(&raw).unwrap_err(),
        ChainError::WrongChainId { .. }
    ));
}

/// A fixed key (the P-256 generator): calldata gas depends on the key's zero bytes, so random keys
/// would make the numbers wander by a few dozen gas.
fn fixed_key() -> PublicIdentityKey {
    let g = alloy::primitives::hex!(
        "036b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296"
    );
    PublicIdentityKey::from_tagged(1, &g).expect("the generator is a valid point")
}

/// Gas of a registration on the embedded chain (equal to anvil's, see
/// `embedded_gas_equals_anvil_gas`), printed for docs/keystore.md:
/// `cargo nextest run -p chaincall-chain --test suite registration_gas --no-capture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn registration_gas() {
    let chain = EmbeddedChain::default();
    let s = setup(&chain).await;
    let id = id_of("+15551230200");
    let add = s
        .add(&s.phone, id, &fixed_key(), b"r")
        .await
        .unwrap()
        .gas_used;
    let approve = s.approve(id, b"r").await.unwrap();
    println!(
        "addClient {add} + approveClient {approve} = {}",
        add + approve
    );
    // A squatted number: the owner reserves it (replacing the squatter's pending entry), then the
    // verified wallet registers.
    let squatted = id_of("+15551230201");
    s.add(&s.other, squatted, &fixed_key(), b"x").await.unwrap();
    if let Ok(reserve) = chain
        .reserve_client(s.contract, &s.owner, squatted, s.phone.address())
        .await
    {
        let add = s
            .add(&s.phone, squatted, &fixed_key(), b"r")
            .await
            .unwrap()
            .gas_used;
        let approve = s.approve(squatted, b"r").await.unwrap();
        println!(
            "reserveClient over a pending entry {} + addClient {add} + approveClient {approve}",
            reserve.gas_used
        );
    }
    // The same registration with the proof of possession checked on chain (P-256 precompile).
    let proven = id_of("+15551230203");
    let identity = IdentityKey::from_secret_bytes(&[0x11; 32]).expect("a valid scalar");
    let commitment = receipt_commitment(&proven, s.phone.address(), &receipt_hash(b"r"));
    if let Ok(add) = chain
        .add_client_with_proof(s.contract, &s.phone, proven, &identity, commitment)
        .await
    {
        let approve = s.approve(proven, b"r").await.unwrap();
        println!(
            "addClientWithProof {} + approveClient {approve} = {}",
            add.gas_used,
            add.gas_used + approve
        );
    }
    let fresh = id_of("+15551230202");
    if let Ok(reserve) = chain
        .reserve_client(s.contract, &s.owner, fresh, s.phone.address())
        .await
    {
        let add = s
            .add(&s.phone, fresh, &fixed_key(), b"r")
            .await
            .unwrap()
            .gas_used;
        println!(
            "reserveClient of a fresh id {} + addClient {add}",
            reserve.gas_used
        );
    }
}

/// On a chain without the P-256 precompile (anvil at Prague, before EIP-7951) the call to 0x100
/// returns nothing, and `addClientWithProof` refuses instead of accepting an unchecked proof.
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn proof_without_the_precompile_is_refused() {
    let Some(node) = start_anvil(&["--hardfork", "prague"]) else {
        return;
    };
    let chain = RpcChain::connect(&node.url(), RpcConfig::default())
        .await
        .unwrap();
    let s = setup(&chain).await;
    let id = id_of("+15551230301");
    let identity = IdentityKey::generate();
    let commitment = receipt_commitment(&id, s.phone.address(), &receipt_hash(b"r"));
    assert_eq!(
        chain
            .add_client_with_proof(s.contract, &s.phone, id, &identity, commitment)
            .await
            .unwrap_err(),
        ChainError::BadProof { id }
    );
    // Plain addClient still works there.
    s.add(&s.phone, id, &identity.public(), b"r").await.unwrap();
}
