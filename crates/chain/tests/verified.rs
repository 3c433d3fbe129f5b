//! Verified lookups on both backends: every answer is proven against a trusted header, and real
//! proofs from the chain, once tampered with, are refused with the error that names what failed.
//!
//! `backend_tests!` expands each scenario into `embedded::name` and `rpc::name` (anvil on a free
//! loopback port; skipped, or failed under `CHAINCALL_REQUIRE_PEERS=1`, when anvil is missing).

use std::sync::Arc;

use alloy::consensus::Header;
use alloy::primitives::{Address, B256, Bytes, U256};
use alloy::rpc::types::EIP1186AccountProofResponse;
use chaincall_chain::verified::{
    HeaderError, HeaderTrust, LookupError, PinnedLookup, ProofError, QuorumConfigError,
    TrustedHeader, UnconfirmedReason, VerifyError, entry_slot_keys, get_client_verified,
    verify_entry,
};
use chaincall_chain::{
    AnvilProcess, ChainError, ClientEntry, ClientId, EmbeddedChain, HistoryEvent, KeystoreChain,
    PrivateKeySigner, RpcChain, RpcConfig, TxOutcome, dev_signer, receipt_hash,
};
use chaincall_identity::continuity::{ContinuityError, PinUpdate, RecordedChange};
use chaincall_identity::{IdentityKey, IdentityName, KeyStatus, PublicIdentityKey};

struct Setup<'a, K> {
    chain: &'a K,
    contract: Address,
    owner: PrivateKeySigner,
    trust: Arc<HeaderTrust>,
}

/// Deploys a keystore and pins the chain's genesis hash as the checkpoint.
async fn setup<K: KeystoreChain>(chain: &K) -> Setup<'_, K> {
    let owner = dev_signer(0);
    let contract = chain.deploy_keystore(&owner).await.expect("deploy");
    let genesis = chain.block_header(0).await.expect("genesis header");
    Setup {
        chain,
        contract,
        owner,
        trust: Arc::new(HeaderTrust::checkpoint(0, genesis.hash_slow())),
    }
}

/// A checkpoint at the chain's head (an app update pinning a newer block): vouches for every block
/// so far.
async fn checkpoint_at_head<K: KeystoreChain>(chain: &K) -> (u64, HeaderTrust) {
    let head = chain.block_number().await.unwrap();
    let hash = chain.block_header(head).await.unwrap().hash_slow();
    (head, HeaderTrust::checkpoint(head, hash))
}

/// Asserts that a lookup was refused as a key change with no on-chain record.
fn assert_unrecorded(err: &LookupError) {
    assert!(
        matches!(
            err,
            LookupError::Continuity(ContinuityError::UnrecordedKeyChange { .. })
        ),
        "{err}"
    );
}

/// A lookup of `name` through `liar` is refused as an unrecorded key change, and `lookups` keeps
/// `name` pinned to `pinned`.
async fn refused_keeps_pin<K: KeystoreChain>(
    lookups: &mut PinnedLookup,
    liar: &K,
    trust: &HeaderTrust,
    name: &IdentityName,
    pinned: &PublicIdentityKey,
) {
    let err = lookups.lookup(liar, trust, name, None).await.unwrap_err();
    assert_unrecorded(&err);
    assert_eq!(lookups.pins().pinned_key(name), Some(pinned));
}

fn name(text: &str) -> IdentityName {
    IdentityName::parse(text).expect("valid name")
}

impl<K: KeystoreChain> Setup<'_, K> {
    async fn add(&self, from: &PrivateKeySigner, id: ClientId, key: &PublicIdentityKey) {
        self.chain
            .add_client_key(self.contract, from, id, key, receipt_hash(b"receipt"))
            .await
            .expect("add");
    }

    async fn approve(&self, id: ClientId) -> TxOutcome {
        self.chain
            .approve_client(self.contract, &self.owner, id, receipt_hash(b"receipt"))
            .await
            .expect("approve")
    }

    async fn verified(&self, id: ClientId, block: Option<u64>) -> Result<ClientEntry, VerifyError> {
        get_client_verified(self.chain, self.contract, id, &self.trust, block)
            .await
            .map(|v| v.entry)
    }

    /// `wallet` rotates `id` to a fresh key; the key and the rotation's block.
    async fn rotate(&self, wallet: &PrivateKeySigner, id: ClientId) -> (PublicIdentityKey, u64) {
        let new = IdentityKey::generate().public();
        let block = self
            .chain
            .rotate_key(self.contract, wallet, id, new.tag(), &new.to_bytes())
            .await
            .unwrap()
            .block_number;
        (new, block)
    }

    /// `number`'s entry added by `wallet` with a fresh key and approved, and a lookup cache that
    /// pinned it: the start of every continuity scenario.
    async fn pinned(
        &self,
        number: &str,
        wallet: &PrivateKeySigner,
    ) -> (IdentityName, ClientId, PublicIdentityKey, PinnedLookup) {
        let name = name(number);
        let id = ClientId::of(&name);
        let key = IdentityKey::generate().public();
        self.add(wallet, id, &key).await;
        self.approve(id).await;
        let mut lookups = PinnedLookup::new(self.contract);
        lookups
            .lookup(self.chain, &self.trust, &name, None)
            .await
            .unwrap();
        (name, id, key, lookups)
    }

    /// A real proof of `id`'s entry at the latest block, and the header it must verify against.
    async fn real_proof(&self, id: ClientId) -> (TrustedHeader, EIP1186AccountProofResponse) {
        let number = self.chain.block_number().await.unwrap();
        let header = self
            .trust
            .trusted_header(&chaincall_chain::verified::ChainHeaders(self.chain), number)
            .await
            .expect("header chains to the checkpoint");
        let answer = self
            .chain
            .get_proof(self.contract, &entry_slot_keys(&id), number)
            .await
            .unwrap();
        (header, answer)
    }
}

async fn every_status_verifies_and_matches_get_client<K: KeystoreChain>(chain: &K) {
    let s = setup(chain).await;
    let bob = ClientId::of(&name("+15551230001"));
    let key = IdentityKey::generate().public();

    // Unknown: the slots are proven absent.
    let unknown = get_client_verified(chain, s.contract, bob, &s.trust, None)
        .await
        .unwrap();
    assert_eq!(unknown.entry, ClientEntry::unknown(bob));
    assert!(unknown.proof_bytes > 0, "absence is proven by nodes too");

    s.add(&dev_signer(1), bob, &key).await;
    let pending = get_client_verified(chain, s.contract, bob, &s.trust, None)
        .await
        .unwrap();
    assert_eq!(pending.entry.status, KeyStatus::Pending);
    assert_eq!(
        pending.entry,
        chain.get_client(s.contract, bob).await.unwrap()
    );
    let pending_block = pending.block_number;
    assert_eq!(
        pending.block_hash,
        chain.block_header(pending_block).await.unwrap().hash_slow()
    );

    s.approve(bob).await;
    let approved = s.verified(bob, None).await.unwrap();
    assert_eq!(approved, chain.get_client(s.contract, bob).await.unwrap());
    assert_eq!(approved.approved_key(), Some(key.clone()));
    // A past block is proven against its own header: still pending there.
    assert_eq!(
        s.verified(bob, Some(pending_block)).await.unwrap().status,
        KeyStatus::Pending
    );

    chain
        .revoke_client(s.contract, &dev_signer(1), bob)
        .await
        .unwrap();
    let revoked = s.verified(bob, None).await.unwrap();
    assert_eq!(revoked.status, KeyStatus::Revoked);
    assert_eq!(revoked.approved_key(), None);
    assert_eq!(revoked, chain.get_client(s.contract, bob).await.unwrap());
}

async fn headers_hash_to_their_block_hashes<K: KeystoreChain>(chain: &K) {
    let s = setup(chain).await;
    s.add(
        &dev_signer(1),
        ClientId::of(&name("+15551230002")),
        &IdentityKey::generate().public(),
    )
    .await;
    let head = chain.block_number().await.unwrap();
    assert!(head >= 2);
    for n in 1..=head {
        let child = chain.block_header(n).await.unwrap();
        let parent = chain.block_header(n - 1).await.unwrap();
        assert_eq!(child.parent_hash, parent.hash_slow(), "block {n}");
        assert_eq!(child.number, n);
    }
    // The state root is real: it changes when state changes.
    assert_ne!(
        chain.block_header(head).await.unwrap().state_root,
        chain.block_header(head - 1).await.unwrap().state_root
    );
    assert_eq!(
        chain.block_header(head + 100).await.unwrap_err(),
        ChainError::UnknownBlock { number: head + 100 }
    );
}

fn flip(node: &Bytes, at: usize) -> Bytes {
    let mut bytes = node.to_vec();
    bytes[at] ^= 0x01;
    bytes.into()
}

fn storage_err(err: VerifyError) -> ProofError {
    match err {
        VerifyError::Proof(e) => e,
        other => panic!("expected a proof error, got {other:?}"),
    }
}

async fn tampered_real_proofs_are_refused<K: KeystoreChain>(chain: &K) {
    let s = setup(chain).await;
    let bob = ClientId::of(&name("+15551230003"));
    let carol = ClientId::of(&name("+15551230004"));
    s.add(&dev_signer(1), bob, &IdentityKey::generate().public())
        .await;
    s.approve(bob).await;
    s.add(&dev_signer(2), carol, &IdentityKey::generate().public())
        .await;
    let (header, answer) = s.real_proof(bob).await;
    let honest = verify_entry(&header, s.contract, bob, &answer).unwrap();
    assert_eq!(honest.entry.status, KeyStatus::Approved);
    let slots = entry_slot_keys(&bob);

    // A changed value (the status byte of word 0: pending instead of approved).
    let mut a = answer.clone();
    a.storage_proof[0].value ^= U256::from(3u8) << 160;
    assert!(matches!(
        storage_err(verify_entry(&header, s.contract, bob, &a).unwrap_err()),
        ProofError::StorageProof { slot, .. } if slot == slots[0]
    ));

    // A flipped byte in every node of the storage and account proofs.
    for i in 0..answer.storage_proof[1].proof.len() {
        let mut a = answer.clone();
        let node = &a.storage_proof[1].proof[i];
        a.storage_proof[1].proof[i] = flip(node, node.len() / 2);
        assert!(
            matches!(
                storage_err(verify_entry(&header, s.contract, bob, &a).unwrap_err()),
                ProofError::StorageProof { slot, .. } if slot == slots[1]
            ),
            "storage node {i}"
        );
    }
    for i in 0..answer.account_proof.len() {
        let mut a = answer.clone();
        let node = &a.account_proof[i];
        a.account_proof[i] = flip(node, node.len() - 1);
        assert!(
            matches!(
                storage_err(verify_entry(&header, s.contract, bob, &a).unwrap_err()),
                ProofError::AccountProof { address, .. } if address == s.contract
            ),
            "account node {i}"
        );
    }

    // A missing node, and an extra node, in the storage proof.
    let mut a = answer.clone();
    a.storage_proof[0].proof.pop();
    assert!(matches!(
        storage_err(verify_entry(&header, s.contract, bob, &a).unwrap_err()),
        ProofError::StorageProof { .. }
    ));
    let mut a = answer.clone();
    let last = a.storage_proof[0].proof.last().unwrap().clone();
    a.storage_proof[0].proof.push(last);
    assert!(matches!(
        storage_err(verify_entry(&header, s.contract, bob, &a).unwrap_err()),
        ProofError::StorageProof { .. }
    ));
    // An extra node in the account proof.
    let mut a = answer.clone();
    let last = a.account_proof.last().unwrap().clone();
    a.account_proof.push(last);
    assert!(matches!(
        storage_err(verify_entry(&header, s.contract, bob, &a).unwrap_err()),
        ProofError::AccountProof { .. }
    ));

    // Another slot's real proof: carol's entry passed off as bob's, under bob's slot key or its own.
    let carol_answer = s
        .chain
        .get_proof(s.contract, &entry_slot_keys(&carol), header.number)
        .await
        .unwrap();
    let mut a = answer.clone();
    a.storage_proof[0].proof = carol_answer.storage_proof[0].proof.clone();
    a.storage_proof[0].value = carol_answer.storage_proof[0].value;
    assert!(matches!(
        storage_err(verify_entry(&header, s.contract, bob, &a).unwrap_err()),
        ProofError::StorageProof { .. }
    ));
    let mut a = answer.clone();
    a.storage_proof = carol_answer.storage_proof.clone();
    assert_eq!(
        storage_err(verify_entry(&header, s.contract, bob, &a).unwrap_err()),
        ProofError::UnexpectedSlot(entry_slot_keys(&carol)[0])
    );
    // A slot left out.
    let mut a = answer.clone();
    a.storage_proof.pop();
    assert_eq!(
        storage_err(verify_entry(&header, s.contract, bob, &a).unwrap_err()),
        ProofError::MissingSlot(slots[1])
    );

    // Another account's real proof: the owner's wallet, as itself and passed off as the keystore.
    let wallet = s.owner.address();
    let other = s
        .chain
        .get_proof(wallet, &slots, header.number)
        .await
        .unwrap();
    assert_eq!(
        storage_err(verify_entry(&header, s.contract, bob, &other).unwrap_err()),
        ProofError::WrongAccount {
            expected: s.contract,
            got: wallet
        }
    );
    let mut a = other.clone();
    a.address = s.contract;
    assert!(matches!(
        storage_err(verify_entry(&header, s.contract, bob, &a).unwrap_err()),
        ProofError::AccountProof { .. }
    ));
    // The keystore's own proof with another account's fields swapped in.
    let mut a = answer.clone();
    a.account_proof = other.account_proof.clone();
    assert!(matches!(
        storage_err(verify_entry(&header, s.contract, bob, &a).unwrap_err()),
        ProofError::AccountProof { .. }
    ));

    // A wrong state root: the honest proof against the previous block's header.
    let previous = s
        .trust
        .trusted_header(
            &chaincall_chain::verified::ChainHeaders(s.chain),
            header.number - 1,
        )
        .await
        .unwrap();
    assert_ne!(previous.state_root, header.state_root);
    assert!(matches!(
        storage_err(verify_entry(&previous, s.contract, bob, &answer).unwrap_err()),
        ProofError::AccountProof { .. }
    ));
}

/// A chain that serves real answers, tampered on the way (a lying RPC provider): each edit sees
/// the real answer and may rewrite it; everything else is the real chain's.
struct Tampered<'a, K> {
    inner: &'a K,
    /// Rewrites `eth_getProof` answers (given the block asked about).
    proof: EditProof<'a>,
    header: Box<dyn Fn(&mut Header) + Send + Sync + 'a>,
    /// Rewrites the entry's events (`eth_getLogs`).
    logs: EditLogs<'a>,
}

/// How a [`Tampered`] chain rewrites a proof of the state at a block.
type EditProof<'a> = Box<dyn Fn(u64, &mut EIP1186AccountProofResponse) + Send + Sync + 'a>;
/// How a [`Tampered`] chain rewrites the entry's events.
type EditLogs<'a> = Box<dyn Fn(&mut Vec<HistoryEvent>) + Send + Sync + 'a>;

impl<'a, K> Tampered<'a, K> {
    /// Serves `inner`'s answers unchanged until an edit is set.
    fn new(inner: &'a K) -> Self {
        Self {
            inner,
            proof: Box::new(|_, _| {}),
            header: Box::new(|_| {}),
            logs: Box::new(|_| {}),
        }
    }

    fn proofs(self, edit: impl Fn(&mut EIP1186AccountProofResponse) + Send + Sync + 'a) -> Self {
        Self {
            proof: Box::new(move |_, answer| edit(answer)),
            ..self
        }
    }

    fn headers(self, edit: impl Fn(&mut Header) + Send + Sync + 'a) -> Self {
        Self {
            header: Box::new(edit),
            ..self
        }
    }

    fn events(self, edit: impl Fn(&mut Vec<HistoryEvent>) + Send + Sync + 'a) -> Self {
        Self {
            logs: Box::new(edit),
            ..self
        }
    }

    /// Forges block `tip`: its header carries `root`, and proofs at it are `answer`.
    fn forging(self, tip: u64, root: B256, answer: EIP1186AccountProofResponse) -> Self {
        Self {
            proof: Box::new(move |block, served| {
                if block == tip {
                    *served = answer.clone();
                }
            }),
            header: Box::new(move |h| {
                if h.number == tip {
                    h.state_root = root;
                }
            }),
            ..self
        }
    }
}

impl<K: KeystoreChain> KeystoreChain for Tampered<'_, K> {
    fn chain_id(&self) -> u64 {
        self.inner.chain_id()
    }
    fn block_number(&self) -> impl Future<Output = chaincall_chain::Result<u64>> + Send {
        self.inner.block_number()
    }
    fn send(
        &self,
        from: &PrivateKeySigner,
        to: Option<Address>,
        input: Bytes,
        value: U256,
    ) -> impl Future<Output = chaincall_chain::Result<TxOutcome>> + Send {
        self.inner.send(from, to, input, value)
    }
    fn call(
        &self,
        to: Address,
        input: Bytes,
    ) -> impl Future<Output = chaincall_chain::Result<Bytes>> + Send {
        self.inner.call(to, input)
    }
    async fn logs(
        &self,
        contract: Address,
        id: ClientId,
    ) -> chaincall_chain::Result<Vec<HistoryEvent>> {
        let mut events = self.inner.logs(contract, id).await?;
        (self.logs)(&mut events);
        Ok(events)
    }
    fn storage_at(
        &self,
        address: Address,
        slot: U256,
    ) -> impl Future<Output = chaincall_chain::Result<U256>> + Send {
        self.inner.storage_at(address, slot)
    }
    fn balance(
        &self,
        address: Address,
    ) -> impl Future<Output = chaincall_chain::Result<U256>> + Send {
        self.inner.balance(address)
    }
    fn code_at(
        &self,
        address: Address,
    ) -> impl Future<Output = chaincall_chain::Result<Bytes>> + Send {
        self.inner.code_at(address)
    }
    async fn get_proof(
        &self,
        address: Address,
        slots: &[B256],
        block: u64,
    ) -> chaincall_chain::Result<EIP1186AccountProofResponse> {
        let mut answer = self.inner.get_proof(address, slots, block).await?;
        (self.proof)(block, &mut answer);
        Ok(answer)
    }
    async fn block_header(&self, number: u64) -> chaincall_chain::Result<Header> {
        let mut header = self.inner.block_header(number).await?;
        (self.header)(&mut header);
        Ok(header)
    }
}

async fn a_lying_provider_is_caught_end_to_end<K: KeystoreChain>(chain: &K) {
    let s = setup(chain).await;
    let bob = ClientId::of(&name("+15551230005"));
    s.add(&dev_signer(1), bob, &IdentityKey::generate().public())
        .await;
    s.approve(bob).await;

    // The provider flips the status byte of the proven word: refused, no entry.
    let liar = Tampered::new(chain).proofs(|a| a.storage_proof[0].value ^= U256::from(1u8) << 160);
    let err = get_client_verified(&liar, s.contract, bob, &s.trust, None)
        .await
        .unwrap_err();
    assert!(
        matches!(err, VerifyError::Proof(ProofError::StorageProof { .. })),
        "{err}"
    );

    // The provider rewrites block 1's state root: block 2 no longer chains to the checkpoint.
    let liar = Tampered::new(chain).headers(|h| {
        if h.number == 1 {
            h.state_root = B256::repeat_byte(0x77);
        }
    });
    let fresh = HeaderTrust::checkpoint(0, chain.block_header(0).await.unwrap().hash_slow());
    let err = get_client_verified(&liar, s.contract, bob, &fresh, None)
        .await
        .unwrap_err();
    assert_eq!(
        err,
        VerifyError::Header(HeaderError::BrokenChain {
            number: 2,
            previous: 1
        })
    );

    // A checkpoint hash that is not the chain's.
    let wrong = HeaderTrust::checkpoint(0, B256::repeat_byte(0x55));
    assert!(matches!(
        get_client_verified(chain, s.contract, bob, &wrong, None).await,
        Err(VerifyError::Header(HeaderError::CheckpointMismatch {
            number: 0,
            ..
        }))
    ));
    // A contract address with no keystore: proven absent, refused rather than "unknown".
    let nowhere = Address::repeat_byte(0x42);
    assert!(matches!(
        get_client_verified(chain, nowhere, bob, &s.trust, None).await,
        Err(VerifyError::NoContract { .. })
    ));
    // An account with code that is not the keystore's... the owner's wallet has none: absent code.
    assert!(matches!(
        get_client_verified(chain, s.owner.address(), bob, &s.trust, None).await,
        Err(VerifyError::WrongCode { .. })
    ));
}

async fn pins_follow_recorded_rotations_and_revocations<K: KeystoreChain>(chain: &K) {
    let s = setup(chain).await;
    let bob_name = name("+15551230006");
    let bob = ClientId::of(&bob_name);
    let wallet = dev_signer(1);
    let mut lookups = PinnedLookup::new(s.contract);

    s.add(&wallet, bob, &IdentityKey::generate().public()).await;
    let pending = lookups
        .lookup(chain, &s.trust, &bob_name, None)
        .await
        .unwrap();
    assert_eq!(pending.update, PinUpdate::NotPinned);
    assert_eq!(pending.usable_key(), None);

    s.approve(bob).await;
    let first = lookups
        .lookup(chain, &s.trust, &bob_name, None)
        .await
        .unwrap();
    assert_eq!(first.update, PinUpdate::Pinned);
    let old = first.usable_key().unwrap();
    let again = lookups
        .lookup(chain, &s.trust, &bob_name, None)
        .await
        .unwrap();
    assert_eq!(again.update, PinUpdate::Unchanged);
    assert!(again.changes.is_empty());

    // A rotation on chain moves the pin and is reported with its block.
    let (new, rotated_in) = s.rotate(&wallet, bob).await;
    // The trust pins genesis, so the rotation's blocks are only linked to it: a provider could
    // have forged them. The pin stays and the change is left to the user.
    let err = lookups
        .lookup(chain, &s.trust, &bob_name, None)
        .await
        .unwrap_err();
    let LookupError::UnconfirmedKeyChange(change) = err else {
        panic!("expected an unconfirmed key change, got {err}");
    };
    assert_eq!(
        change.reason,
        UnconfirmedReason::OnlyLinked {
            block: rotated_in - 1
        }
    );
    assert_eq!(
        change.claimed,
        vec![RecordedChange::Rotated {
            block: rotated_in,
            new_key: new.clone()
        }]
    );
    assert_eq!((&change.pinned, &change.seen), (&old, &new));
    assert_eq!(lookups.pins().pinned_key(&bob_name), Some(&old));

    // A checkpoint at or after the rotation (an app update pinning a newer block) vouches for the
    // state proofs before and after it: the pin moves.
    let (_, newer) = checkpoint_at_head(chain).await;
    let after = lookups
        .lookup(chain, &newer, &bob_name, None)
        .await
        .unwrap();
    assert_eq!(after.update, PinUpdate::Rotated { old });
    assert_eq!(after.usable_key(), Some(new.clone()));
    assert_eq!(
        after.changes,
        vec![RecordedChange::Rotated {
            block: rotated_in,
            new_key: new.clone()
        }]
    );
    assert_eq!(lookups.pins().pinned_key(&bob_name), Some(&new));

    // An answer older than one already accepted is stale (a provider replaying the old key).
    let err = lookups
        .lookup(chain, &s.trust, &bob_name, Some(rotated_in - 1))
        .await
        .unwrap_err();
    assert!(
        matches!(err, LookupError::Continuity(ContinuityError::Stale { .. })),
        "{err}"
    );

    // A revocation on chain is reported, and the identity is refused from then on.
    let revoked_in = chain
        .revoke_client(s.contract, &wallet, bob)
        .await
        .unwrap()
        .block_number;
    let revoked = lookups
        .lookup(chain, &s.trust, &bob_name, None)
        .await
        .unwrap();
    assert_eq!(revoked.update, PinUpdate::Revoked);
    assert_eq!(revoked.usable_key(), None);
    assert_eq!(
        revoked.changes,
        vec![RecordedChange::Revoked { block: revoked_in }]
    );
    assert!(matches!(
        lookups.lookup(chain, &s.trust, &bob_name, None).await,
        Err(LookupError::Continuity(ContinuityError::Revoked { .. }))
    ));
    assert_eq!(lookups.pins().pinned_key(&bob_name), None);
}

/// Device recovery (issue 14 item 4): the owner revokes the lost entry, reserves the number for
/// the new wallet, which adds its key and is approved. A contact that pinned the old key sees a
/// re-registration: left to the user while the proofs are only linked to the checkpoint, then,
/// with a checkpoint that vouches for the revocation and the approval, reported as such and the pin
/// moves. A contact that saw the revocation gets the same answer, not "revoked forever".
async fn a_recovered_number_is_reported_as_re_registered<K: KeystoreChain>(chain: &K) {
    let s = setup(chain).await;
    let alice_name = name("+15551230016");
    let alice = ClientId::of(&alice_name);
    let (old_wallet, new_wallet) = (dev_signer(1), dev_signer(2));
    let old = IdentityKey::generate().public();
    s.add(&old_wallet, alice, &old).await;
    s.approve(alice).await;
    let mut bob = PinnedLookup::new(s.contract);
    let mut carol = PinnedLookup::new(s.contract);
    for contact in [&mut bob, &mut carol] {
        let first = contact
            .lookup(chain, &s.trust, &alice_name, None)
            .await
            .unwrap();
        assert_eq!(first.update, PinUpdate::Pinned);
    }

    let revoked_in = chain
        .revoke_client(s.contract, &s.owner, alice)
        .await
        .unwrap()
        .block_number;
    // Carol looks alice up while she is revoked: her pin records the revocation.
    let seen = carol
        .lookup(chain, &s.trust, &alice_name, None)
        .await
        .unwrap();
    assert_eq!(seen.update, PinUpdate::Revoked);
    let carol_revoked = seen.verified.block_number;
    chain
        .reserve_client(s.contract, &s.owner, alice, new_wallet.address())
        .await
        .unwrap();
    let new = IdentityKey::generate().public();
    s.add(&new_wallet, alice, &new).await;
    let approved_in = s.approve(alice).await.block_number;

    // Checkpoint at genesis: the proofs are only linked to it, so bob's pin stays and the change
    // is left to the user; carol still refuses alice.
    let err = bob
        .lookup(chain, &s.trust, &alice_name, None)
        .await
        .unwrap_err();
    let LookupError::UnconfirmedKeyChange(change) = err else {
        panic!("expected an unconfirmed key change, got {err}");
    };
    let reregistered = RecordedChange::Reregistered {
        revoked: revoked_in,
        block: approved_in,
        new_key: new.clone(),
    };
    assert_eq!(change.claimed, vec![reregistered.clone()]);
    assert_eq!(bob.pins().pinned_key(&alice_name), Some(&old));
    assert!(matches!(
        carol.lookup(chain, &s.trust, &alice_name, None).await,
        Err(LookupError::Continuity(ContinuityError::Revoked { .. }))
    ));

    // A checkpoint vouching for both blocks: recorded re-registration, the pin moves.
    let (_, newer) = checkpoint_at_head(chain).await;
    let after = bob.lookup(chain, &newer, &alice_name, None).await.unwrap();
    assert_eq!(
        after.update,
        PinUpdate::Reregistered {
            old: Some(old.clone()),
            revoked: revoked_in,
            block: approved_in
        }
    );
    assert_eq!(after.usable_key(), Some(new.clone()));
    assert_eq!(
        after.changes,
        vec![RecordedChange::Revoked { block: revoked_in }, reregistered]
    );
    let carol_after = carol
        .lookup(chain, &newer, &alice_name, None)
        .await
        .unwrap();
    assert_eq!(
        carol_after.update,
        PinUpdate::Reregistered {
            old: None,
            revoked: carol_revoked,
            block: approved_in
        }
    );
    assert_eq!(carol.pins().pinned_key(&alice_name), Some(&new));
    // The old key stays refused: an answer from before the recovery is stale.
    assert!(
        bob.lookup(chain, &newer, &alice_name, Some(approved_in - 1))
            .await
            .is_err()
    );
}

macro_rules! backend_tests {
    ($($name:ident),* $(,)?) => {
        mod embedded {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
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
                    let Some(node) = start_anvil() else { return };
                    let chain = connect(&node).await;
                    super::$name(&chain).await;
                }
            )*
        }
    };
}

fn start_anvil() -> Option<AnvilProcess> {
    let anvil = chaincall_testkit::peer("anvil")?;
    Some(
        AnvilProcess::spawn(&anvil, chaincall_testkit::free_tcp_port(), &[])
            .expect("anvil starts and answers"),
    )
}

async fn connect(node: &AnvilProcess) -> RpcChain {
    RpcChain::connect(
        &node.url(),
        RpcConfig {
            expected_chain_id: Some(31337),
            ..RpcConfig::default()
        },
    )
    .await
    .expect("connect to anvil")
}

backend_tests!(
    every_status_verifies_and_matches_get_client,
    headers_hash_to_their_block_hashes,
    tampered_real_proofs_are_refused,
    a_lying_provider_is_caught_end_to_end,
    pins_follow_recorded_rotations_and_revocations,
    a_recovered_number_is_reported_as_re_registered,
);

/// A proven key that differs from the pin with no rotation on record: the trust anchor now points
/// at another chain (here: a second chain where the same number was registered with another key).
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_key_change_without_a_record_is_refused() {
    let home = EmbeddedChain::default();
    let fork = EmbeddedChain::default();
    let bob_name = name("+15551230007");
    let bob = ClientId::of(&bob_name);
    let h = setup(&home).await;
    let f = setup(&fork).await;
    assert_eq!(
        h.contract, f.contract,
        "same deployer, same nonce, same address"
    );
    h.add(&dev_signer(1), bob, &IdentityKey::generate().public())
        .await;
    h.approve(bob).await;
    f.add(&dev_signer(1), bob, &IdentityKey::generate().public())
        .await;
    f.approve(bob).await;
    // The fork is longer, so its answer is not merely stale.
    f.add(
        &dev_signer(2),
        ClientId::of(&name("+15551230008")),
        &IdentityKey::generate().public(),
    )
    .await;

    let mut lookups = PinnedLookup::new(h.contract);
    let pinned = lookups
        .lookup(&home, &h.trust, &bob_name, None)
        .await
        .unwrap();
    assert_eq!(pinned.update, PinUpdate::Pinned);
    let err = lookups
        .lookup(&fork, &f.trust, &bob_name, None)
        .await
        .unwrap_err();
    assert_unrecorded(&err);
    assert_eq!(
        lookups.pins().pinned_key(&bob_name),
        pinned.usable_key().as_ref()
    );
}

/// Checkpoint mode fetches only the headers it has not verified yet.
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn checkpoint_trust_caches_verified_headers() {
    use chaincall_chain::verified::{BoxFuture, HeaderSource};
    use std::sync::atomic::{AtomicUsize, Ordering};
    struct Counting<'a>(&'a EmbeddedChain, AtomicUsize);
    impl HeaderSource for Counting<'_> {
        fn header(&self, number: u64) -> BoxFuture<'_, Result<Header, ChainError>> {
            self.1.fetch_add(1, Ordering::SeqCst);
            Box::pin(self.0.block_header(number))
        }
    }
    let chain = EmbeddedChain::default();
    let s = setup(&chain).await;
    s.add(
        &dev_signer(1),
        ClientId::of(&name("+15551230009")),
        &IdentityKey::generate().public(),
    )
    .await;
    let source = Counting(&chain, AtomicUsize::new(0));
    let head = chain.block_number().await.unwrap();
    s.trust.trusted_header(&source, head).await.unwrap();
    assert_eq!(
        source.1.load(Ordering::SeqCst) as u64,
        head + 1,
        "genesis and every block since"
    );
    s.trust.trusted_header(&source, head).await.unwrap();
    s.trust.trusted_header(&source, head - 1).await.unwrap();
    assert_eq!(source.1.load(Ordering::SeqCst) as u64, head + 1, "cached");
    s.approve(ClientId::of(&name("+15551230009"))).await;
    s.trust.trusted_header(&source, head + 1).await.unwrap();
    assert_eq!(
        source.1.load(Ordering::SeqCst) as u64,
        head + 2,
        "only the new header"
    );
}

/// Quorum mode on anvil: agreement gives a trusted header; disagreement or too few answers do not.
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn quorum_trust_needs_k_agreeing_endpoints() {
    let Some(a) = start_anvil() else { return };
    let Some(b) = start_anvil() else { return };
    let chain = connect(&a).await;
    let other = connect(&b).await;
    let s = setup(&chain).await;
    // Another chain: its block 1 holds another transaction.
    other
        .transfer(&dev_signer(3), Address::repeat_byte(9), U256::from(1u8))
        .await
        .unwrap();
    let bob = ClientId::of(&name("+15551230010"));
    s.add(&dev_signer(1), bob, &IdentityKey::generate().public())
        .await;
    s.approve(bob).await;
    let dead = format!("http://127.0.0.1:{}", chaincall_testkit::free_tcp_port());
    // A second endpoint for node a: a relay on another port (what the de-duplication cannot see
    // through, like a reseller of one node; here it stands for an honest second node).
    let a_again = relay(&a.url()).await;

    let agree = HeaderTrust::quorum(vec![a.url(), a_again.clone(), dead.clone()], 2).unwrap();
    let found = get_client_verified(&chain, s.contract, bob, &agree, None)
        .await
        .unwrap();
    assert_eq!(found.entry.status, KeyStatus::Approved);

    let head = chain.block_number().await.unwrap();
    let split = HeaderTrust::quorum(vec![a.url(), b.url(), dead], 2).unwrap();
    let err = get_client_verified(&chain, s.contract, bob, &split, Some(1))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            VerifyError::Header(HeaderError::NoQuorum {
                agreeing: 1,
                asked: 3,
                required: 2,
                ..
            })
        ),
        "{err} (head {head})"
    );
    // An endpoint that accepts connections and never answers neither stalls the lookup nor
    // counts as agreement: two honest answers settle it, and with one it fails after the
    // endpoint timeout instead of hanging.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let hang = format!("http://{}", silent.local_addr().unwrap());
    let silent_too = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let hang_too = format!("http://{}", silent_too.local_addr().unwrap());
    let patient = HeaderTrust::quorum(vec![hang.clone(), a.url(), a_again], 2).unwrap();
    let found = get_client_verified(&chain, s.contract, bob, &patient, None)
        .await
        .unwrap();
    assert_eq!(found.entry.status, KeyStatus::Approved);
    let stuck = HeaderTrust::quorum(vec![a.url(), hang, hang_too], 2).unwrap();
    let err = get_client_verified(&chain, s.contract, bob, &stuck, None)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            VerifyError::Header(HeaderError::NoQuorum { agreeing: 1, .. })
        ),
        "{err}"
    );

    assert_eq!(
        HeaderTrust::quorum(vec![a.url(), b.url()], 1).unwrap_err(),
        QuorumConfigError::BadQuorum {
            required: 1,
            endpoints: 2
        }
    );

    // A provider forging the proof is caught against the agreed header.
    let liar = Tampered::new(&chain).proofs(|a| a.storage_proof[1].value ^= U256::from(1u8));
    assert!(matches!(
        get_client_verified(&liar, s.contract, bob, &agree, None).await,
        Err(VerifyError::Proof(_))
    ));
}

/// Relays TCP connections from a new loopback port to the `http://host:port` of `target`, and
/// returns the relay's URL: a second endpoint for one node.
async fn relay(target: &str) -> String {
    let target = target
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            let target = target.clone();
            tokio::spawn(async move {
                if let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
    url
}

/// One node listed several times — verbatim or spelt differently — is refused instead of counting
/// as several agreeing endpoints, and the quorum is a strict majority of distinct servers.
/// (Before the fix, `[a, a, a]` with k = 2 was "two of three agree" on a single node's word.)
#[test]
fn quorum_counts_each_server_once() {
    let a = "http://127.0.0.1:8545";
    let same_server = [
        a,
        "http://127.0.0.1:8545/",
        "HTTP://127.0.0.1:8545",
        "http://user:secret@127.0.0.1:8545/v3/another-key?x=1",
        " http://127.0.0.1:8545 ",
        "https://127.0.0.1:8545",
    ];
    for other in same_server {
        let err = HeaderTrust::quorum(
            vec![a.into(), "http://127.0.0.1:8546".into(), other.into()],
            2,
        )
        .unwrap_err();
        assert_eq!(
            err,
            QuorumConfigError::DuplicateEndpoint {
                server: "127.0.0.1:8545".into(),
                first: 0,
                index: 2
            },
            "{other}"
        );
        assert!(!err.to_string().contains("secret") && !err.to_string().contains("key"));
    }
    // Host names compare case-insensitively; default ports are filled in.
    assert!(matches!(
        HeaderTrust::quorum(
            vec![
                "https://RPC.Example.org".into(),
                "https://rpc.example.org:443/".into(),
                "https://other.example.org".into()
            ],
            2
        ),
        Err(QuorumConfigError::DuplicateEndpoint {
            first: 0,
            index: 1,
            ..
        })
    ));
    assert_eq!(
        HeaderTrust::quorum(vec![a.into(), "not a url".into()], 2).unwrap_err(),
        QuorumConfigError::BadEndpoint { index: 1 }
    );
    assert_eq!(
        HeaderTrust::quorum(vec![a.into(), "ws://127.0.0.1:8547".into()], 2).unwrap_err(),
        QuorumConfigError::BadEndpoint { index: 1 }
    );
    // Two distinct servers: k = 2 is the only strict majority.
    let two = || vec![a.into(), "http://127.0.0.1:8546".into()];
    assert!(HeaderTrust::quorum(two(), 2).is_ok());
    assert!(HeaderTrust::quorum(two(), 1).is_err());
    assert!(HeaderTrust::quorum(two(), 3).is_err());
    assert!(HeaderTrust::quorum(Vec::new(), 0).is_err());
}

/// The known limit of checkpoint mode (docs/verified-lookups.md): nothing commits to the newest
/// header yet, so a provider can forge it — any state root, correct parent hash — with a matching
/// proof of its own making, and the lookup passes. What the chain links still give: the forged header
/// is now cached, so the next honest block no longer descends from it and the forgery shows.
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn checkpoint_mode_accepts_a_forged_newest_header_until_the_chain_moves_on() {
    use chaincall_chain::verified::keystore_code_hash;
    use chaincall_proof::{AccountState, WorldState};
    let chain = EmbeddedChain::default();
    let s = setup(&chain).await;
    let bob = ClientId::of(&name("+15551230011"));
    let genuine = IdentityKey::generate().public();
    s.add(&dev_signer(1), bob, &genuine).await;
    s.approve(bob).await;
    let tip = chain.block_number().await.unwrap();

    // The provider's own state: bob's entry with the attacker's key, in a trie it built itself.
    let attacker = IdentityKey::generate().public();
    let slots = entry_slot_keys(&bob);
    let word0 = chain.storage_at(s.contract, slots[0].into()).await.unwrap();
    let key = attacker.to_bytes();
    let mut w0 = word0.to_be_bytes::<32>();
    w0[0] = key[0];
    let mut w1 = [0u8; 32];
    w1.copy_from_slice(&key[1..33]);
    let mut world = WorldState::new();
    world.insert(
        s.contract,
        AccountState {
            nonce: 1,
            balance: U256::ZERO,
            code_hash: keystore_code_hash(),
            storage: [
                (slots[0], U256::from_be_bytes(w0)),
                (slots[1], U256::from_be_bytes(w1)),
            ]
            .into(),
        },
    );
    let (forged_root, forged_answer) = world.prove(s.contract, &slots);
    let liar = Tampered::new(&chain)
        .proofs(move |a| *a = forged_answer.clone())
        .headers(move |h| {
            if h.number == tip {
                h.state_root = forged_root;
            }
        });
    let trust = HeaderTrust::checkpoint(0, chain.block_header(0).await.unwrap().hash_slow());
    let fooled = get_client_verified(&liar, s.contract, bob, &trust, None)
        .await
        .expect("checkpoint mode cannot tell a forged newest header");
    assert_eq!(fooled.entry.approved_key(), Some(attacker));

    // One honest block later, the same trust sees that the chain does not descend from the forgery.
    chain
        .transfer(&dev_signer(3), Address::repeat_byte(9), U256::from(1u8))
        .await
        .unwrap();
    assert_eq!(
        get_client_verified(&chain, s.contract, bob, &trust, None)
            .await
            .unwrap_err(),
        VerifyError::Header(HeaderError::BrokenChain {
            number: tip + 1,
            previous: tip
        })
    );
    // A fresh trust, fed honestly, sees the genuine key.
    let honest = HeaderTrust::checkpoint(0, chain.block_header(0).await.unwrap().hash_slow());
    assert_eq!(
        get_client_verified(&chain, s.contract, bob, &honest, None)
            .await
            .unwrap()
            .entry
            .approved_key(),
        Some(genuine)
    );
}

/// The embedded chain keeps state (and so proofs) for its last `state_history` blocks, like a
/// pruning node; older blocks keep their headers.
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn embedded_proves_recent_blocks_and_says_when_state_is_pruned() {
    let chain = EmbeddedChain::new(chaincall_chain::EmbeddedConfig {
        state_history: 2,
        ..Default::default()
    });
    let s = setup(&chain).await;
    let bob = ClientId::of(&name("+15551230012"));
    s.add(&dev_signer(1), bob, &IdentityKey::generate().public())
        .await;
    s.approve(bob).await;
    assert_eq!(chain.block_number().await.unwrap(), 3);
    assert_eq!(
        s.verified(bob, Some(2)).await.unwrap().status,
        KeyStatus::Pending
    );
    assert_eq!(
        s.verified(bob, Some(3)).await.unwrap().status,
        KeyStatus::Approved
    );
    assert_eq!(
        s.verified(bob, Some(1)).await.unwrap_err(),
        VerifyError::Chain(ChainError::StatePruned { number: 1, kept: 2 })
    );
    // The trust itself is shareable across tasks.
    fn shareable<T: Send + Sync>(_: &T) {}
    shareable(&s.trust);
}

/// A state of the keystore in which `id`'s entry (otherwise as at the latest block) holds `key`,
/// in a trie built by the provider: the forged state root and the proof of the entry's slots.
async fn forge_entry_key(
    chain: &EmbeddedChain,
    contract: Address,
    id: ClientId,
    key: &PublicIdentityKey,
) -> (B256, EIP1186AccountProofResponse) {
    use chaincall_chain::verified::keystore_code_hash;
    use chaincall_proof::{AccountState, WorldState};
    let slots = entry_slot_keys(&id);
    let word0 = chain.storage_at(contract, slots[0].into()).await.unwrap();
    let key = key.to_bytes();
    let mut w0 = word0.to_be_bytes::<32>();
    w0[0] = key[0];
    let mut w1 = [0u8; 32];
    w1.copy_from_slice(&key[1..33]);
    let mut world = WorldState::new();
    world.insert(
        contract,
        AccountState {
            nonce: 1,
            balance: U256::ZERO,
            code_hash: keystore_code_hash(),
            storage: [
                (slots[0], U256::from_be_bytes(w0)),
                (slots[1], U256::from_be_bytes(w1)),
            ]
            .into(),
        },
    );
    world.prove(contract, &slots)
}

fn fake_rotation(block: u64, wallet: Address, key: &PublicIdentityKey) -> HistoryEvent {
    HistoryEvent {
        block_number: block,
        tx_hash: B256::repeat_byte(0xee),
        log_index: 0,
        change: chaincall_chain::Change::Rotated {
            wallet,
            key_type: key.tag(),
            key: key.to_bytes().into(),
        },
    }
}

/// Issue 13 item 5: in checkpoint mode a provider forges the newest header (its own state root,
/// where bob's entry holds the attacker's key under bob's wallet) and a `KeyRotated` event to that
/// key. The state proofs before and after the "rotation" are consistent, but the forged block is
/// only linked to the checkpoint, so the pin must not move: the lookup reports an unconfirmed key
/// change and the attacker's key is not usable. (Before the fix the pin moved to the attacker.)
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_forged_tip_with_a_fake_rotation_event_does_not_move_the_pin() {
    let chain = EmbeddedChain::default();
    let s = setup(&chain).await;
    let wallet = dev_signer(1);
    let (bob_name, bob, genuine, mut lookups) = s.pinned("+15551230013", &wallet).await;
    assert_eq!(lookups.pins().pinned_key(&bob_name), Some(&genuine));
    // Some unrelated block, which the provider replaces with its own.
    chain
        .transfer(&dev_signer(3), Address::repeat_byte(9), U256::from(1u8))
        .await
        .unwrap();
    let tip = chain.block_number().await.unwrap();

    let attacker = IdentityKey::generate().public();
    let (forged_root, forged_answer) = forge_entry_key(&chain, s.contract, bob, &attacker).await;
    let fake = fake_rotation(tip, wallet.address(), &attacker);
    let liar = Tampered::new(&chain)
        .forging(tip, forged_root, forged_answer)
        .events(move |events| events.push(fake.clone()));
    let err = lookups
        .lookup(&liar, &s.trust, &bob_name, None)
        .await
        .unwrap_err();
    let LookupError::UnconfirmedKeyChange(change) = err else {
        panic!("expected an unconfirmed key change, got {err}");
    };
    assert_eq!(change.seen, attacker);
    assert_eq!(change.pinned, genuine);
    assert_eq!(
        change.reason,
        UnconfirmedReason::OnlyLinked { block: tip - 1 }
    );
    assert_eq!(lookups.pins().pinned_key(&bob_name), Some(&genuine));
    // The pin still holds the genuine key for the next lookup the provider answers.
    assert!(
        lookups
            .lookup(&liar, &s.trust, &bob_name, None)
            .await
            .is_err()
    );
    assert_eq!(lookups.pins().pinned_key(&bob_name), Some(&genuine));
}

/// With trusted headers, the events still only say where to look: a number revoked and registered
/// again by another wallet, with the provider hiding those events and claiming a rotation instead,
/// is refused — the proof before the "rotation" shows the new wallet's pending entry, not the
/// pinned key. (Before the fix the claimed rotation moved the pin.)
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_fake_rotation_over_a_re_registered_number_is_refused_even_with_trusted_headers() {
    let chain = EmbeddedChain::default();
    let s = setup(&chain).await;
    let new_wallet = dev_signer(2);
    let (bob_name, bob, old, mut lookups) = s.pinned("+15551230014", &dev_signer(1)).await;

    chain
        .revoke_client(s.contract, &s.owner, bob)
        .await
        .unwrap();
    let new = IdentityKey::generate().public();
    s.add(&new_wallet, bob, &new).await;
    let approved_in = s.approve(bob).await.block_number;

    let (_, trusted) = checkpoint_at_head(&chain).await;
    assert!(trusted.confirms(approved_in - 1) && trusted.confirms(approved_in));
    let fake = fake_rotation(approved_in, new_wallet.address(), &new);
    let liar = Tampered::new(&chain).events(move |events| {
        events.retain(|e| e.block_number < approved_in - 2);
        events.push(fake.clone());
    });
    refused_keeps_pin(&mut lookups, &liar, &trusted, &bob_name, &old).await;
}

/// An unconfirmed key change moves the pin only when the user accepts it, and an accepted change
/// cannot be replayed onto a pin that has moved since.
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn the_user_accepts_an_unconfirmed_key_change_explicitly() {
    let chain = EmbeddedChain::default();
    let s = setup(&chain).await;
    let wallet = dev_signer(1);
    let (bob_name, bob, old, mut lookups) = s.pinned("+15551230015", &wallet).await;
    let new = IdentityKey::generate().public();
    chain
        .rotate_key(s.contract, &wallet, bob, new.tag(), &new.to_bytes())
        .await
        .unwrap();
    let LookupError::UnconfirmedKeyChange(change) = lookups
        .lookup(&chain, &s.trust, &bob_name, None)
        .await
        .unwrap_err()
    else {
        panic!("expected an unconfirmed key change");
    };
    assert_eq!(lookups.pins().pinned_key(&bob_name), Some(&old));

    assert_eq!(
        lookups.accept_key_change(&change).unwrap(),
        PinUpdate::Rotated { old: old.clone() }
    );
    assert_eq!(lookups.pins().pinned_key(&bob_name), Some(&new));
    let again = lookups
        .lookup(&chain, &s.trust, &bob_name, None)
        .await
        .unwrap();
    assert_eq!(again.update, PinUpdate::Unchanged);
    assert_eq!(again.usable_key(), Some(new));
    assert!(matches!(
        lookups.accept_key_change(&change),
        Err(LookupError::KeyChangeOutdated { .. })
    ));
}

/// A rotation older than the provider's state history cannot be proven with storage proofs: even
/// with trusted headers the pin does not move on its own, and the user is asked.
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_rotation_whose_state_is_pruned_is_left_to_the_user() {
    let chain = EmbeddedChain::new(chaincall_chain::EmbeddedConfig {
        state_history: 2,
        ..Default::default()
    });
    let s = setup(&chain).await;
    let wallet = dev_signer(1);
    let (bob_name, bob, old, mut lookups) = s.pinned("+15551230016", &wallet).await;
    let (_, rotated_in) = s.rotate(&wallet, bob).await;
    for _ in 0..3 {
        chain
            .transfer(&dev_signer(3), Address::repeat_byte(9), U256::from(1u8))
            .await
            .unwrap();
    }
    let (_, trusted) = checkpoint_at_head(&chain).await;
    let err = lookups
        .lookup(&chain, &trusted, &bob_name, None)
        .await
        .unwrap_err();
    let LookupError::UnconfirmedKeyChange(change) = err else {
        panic!("expected an unconfirmed key change, got {err}");
    };
    assert!(
        matches!(change.reason, UnconfirmedReason::StateUnavailable { block } if block == rotated_in - 1 || block == rotated_in),
        "{:?}",
        change.reason
    );
    assert_eq!(lookups.pins().pinned_key(&bob_name), Some(&old));
}

/// A phone without a header trust still checks the node's word against its pins: a rotation the
/// contract's events record moves the pin; a different key with no event (a node lying about
/// state) is refused and the pin stays. And pins exported (`pins().pin`, `seen`) and restored into
/// a fresh lookup (a new process) keep their decisions.
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn unproven_answers_are_checked_against_restored_pins_and_the_events() {
    let chain = EmbeddedChain::default();
    let s = setup(&chain).await;
    let wallet = dev_signer(1);
    let (bob_name, bob, old, first) = s.pinned("+15551230017", &wallet).await;

    // A new process: the pin and the last lookup restored from what the first one exported.
    let mut lookups = PinnedLookup::new(s.contract);
    lookups.restore(
        &bob_name,
        first.pins().pin(&bob_name).unwrap().clone(),
        first.seen(&bob_name),
    );
    assert_eq!(lookups.pins().pinned_key(&bob_name), Some(&old));
    let (new, rotated_in) = s.rotate(&wallet, bob).await;
    let entry = chain.get_client(s.contract, bob).await.unwrap();
    let tip = chain.block_number().await.unwrap();
    let (update, changes) = lookups
        .check_unproven(&chain, &bob_name, &entry, tip)
        .await
        .unwrap();
    assert_eq!(update, PinUpdate::Rotated { old: old.clone() });
    assert_eq!(
        changes,
        vec![RecordedChange::Rotated {
            block: rotated_in,
            new_key: new.clone(),
        }]
    );
    assert_eq!(lookups.pins().pinned_key(&bob_name), Some(&new));

    // The node shows yet another key, with no event: refused, the pin stays.
    let attacker = IdentityKey::generate().public();
    let lie = ClientEntry {
        key: attacker.to_bytes().into(),
        ..entry
    };
    let err = lookups
        .check_unproven(&chain, &bob_name, &lie, tip)
        .await
        .unwrap_err();
    assert_unrecorded(&err);
    assert_eq!(lookups.pins().pinned_key(&bob_name), Some(&new));
}

fn event(block: u64, change: chaincall_chain::Change) -> HistoryEvent {
    HistoryEvent {
        block_number: block,
        tx_hash: B256::repeat_byte(0xee),
        log_index: 1,
        change,
    }
}

/// A re-registration the proofs do not show is refused even against trusted headers: a provider
/// dresses a rotation by the same wallet as a revocation and re-approval, and hides the revocation
/// of a real recovery so that the new key appears with no revocation on record.
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn an_unproven_re_registration_is_refused() {
    let chain = EmbeddedChain::default();
    let s = setup(&chain).await;
    let (wallet, new_wallet) = (dev_signer(1), dev_signer(2));
    let (alice_name, alice, old, mut bob) = s.pinned("+15551230017", &wallet).await;
    let rotated = IdentityKey::generate().public();
    let rotated_in = chain
        .rotate_key(
            s.contract,
            &wallet,
            alice,
            rotated.tag(),
            &rotated.to_bytes(),
        )
        .await
        .unwrap()
        .block_number;
    // Another number's entry, so that there is a block after the rotation to claim.
    s.add(&new_wallet, ClientId::of(&name("+15551230019")), &old)
        .await;
    let (head, trusted) = checkpoint_at_head(&chain).await;
    // The entry was approved at the claimed "revocation": the claim is refused.
    let liar = Tampered::new(&chain).events(move |events| {
        events.push(event(
            rotated_in,
            chaincall_chain::Change::Revoked {
                wallet: Address::repeat_byte(1),
                by: Address::repeat_byte(2),
            },
        ));
        events.push(event(
            head,
            chaincall_chain::Change::Approved {
                wallet: Address::repeat_byte(1),
                receipt_hash: B256::ZERO,
            },
        ));
    });
    refused_keeps_pin(&mut bob, &liar, &trusted, &alice_name, &old).await;

    // A real recovery of another number, its revocation hidden: no record, refused.
    let dave_name = name("+15551230018");
    let dave = ClientId::of(&dave_name);
    s.add(&wallet, dave, &old).await;
    s.approve(dave).await;
    bob.lookup(&chain, &s.trust, &dave_name, None)
        .await
        .unwrap();
    let revoked_in = chain
        .revoke_client(s.contract, &s.owner, dave)
        .await
        .unwrap()
        .block_number;
    let new = IdentityKey::generate().public();
    s.add(&new_wallet, dave, &new).await;
    s.approve(dave).await;
    let (_, trusted) = checkpoint_at_head(&chain).await;
    let liar =
        Tampered::new(&chain).events(move |events| events.retain(|e| e.block_number != revoked_in));
    refused_keeps_pin(&mut bob, &liar, &trusted, &dave_name, &old).await;
}
