//! Key lookups the phone makes on chain, before a call leaves and when one arrives.
//!
//! Every lookup is timed (the demo's "verified key retrieval") and, when the phone is configured
//! with a [`HeaderTrust`], proven with `eth_getProof` against a trusted block header rather than
//! taken from the RPC provider on trust, and checked for key continuity ([`PinnedLookup`]): the
//! first approved key seen for a number is pinned; a rotation or revocation recorded on chain moves
//! the pin and is logged; a key that changed with no such record is refused. Results feed a
//! [`StaticDirectory`] snapshot that the sans-IO MIKEY and handshake cores read synchronously.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use alloy::primitives::Address;
use chaincall_chain::verified::{
    ChainHeaders, HeaderTrust, LookupError, PinnedLookup, UnconfirmedKeyChange, VerifyError,
};
use chaincall_chain::{ClientEntry, ClientId, KeystoreChain};
use chaincall_identity::continuity::{ContinuityError, PinUpdate, RecordedChange};
use chaincall_identity::{Fingerprint, IdentityName, KeyStatus, StaticDirectory};

use crate::contacts::{
    ChangeKind, Contacts, ContactsError, ContactsLock, ContactsStore, KeyChange, key_changes,
    unix_now,
};
use crate::error::PhoneError;

/// One lookup's answer and what it cost.
#[derive(Debug, Clone)]
pub struct LookedUp {
    /// The entry as read (and, if `verified`, proven).
    pub entry: ClientEntry,
    /// Whether a storage proof against a trusted header backs it.
    pub verified: bool,
    /// The block the answer is proven at (verified lookups).
    pub block: Option<u64>,
    /// Bytes of proof checked.
    pub proof_bytes: usize,
    /// Wall time of the lookup.
    pub elapsed: Duration,
    /// What the lookup did to this identity's pin.
    pub pin: Option<PinUpdate>,
    /// Key changes recorded on chain since this identity's previous lookup, oldest first: what
    /// to tell the user ([`KeyChange::describe`]).
    pub changes: Vec<KeyChange>,
    /// Whether the user compared safety numbers in person for this key (`phone contact verify`;
    /// needs a contacts store).
    pub verified_in_person: bool,
}

impl LookedUp {
    /// Adds this entry, as `name`'s, to a directory snapshot for the sans-IO cores (a malformed
    /// key adds nothing).
    pub fn record(&self, directory: &mut StaticDirectory, name: &IdentityName) {
        if let Ok(key) = self.entry.public_key() {
            directory.insert(name.clone(), self.entry.status, key);
        }
    }
}

/// Looks keys up in the keystore contract, verified when a header trust is configured.
pub struct KeyLookup<C> {
    chain: Arc<C>,
    contract: Address,
    trust: Option<Arc<HeaderTrust>>,
    pins: Arc<tokio::sync::Mutex<PinnedLookup>>,
    contacts: Option<ContactsStore>,
}

impl<C> std::fmt::Debug for KeyLookup<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyLookup")
            .field("contract", &self.contract)
            .field("verified", &self.trust.is_some())
            .field("contacts", &self.contacts.as_ref().map(ContactsStore::path))
            .finish()
    }
}

impl<C> Clone for KeyLookup<C> {
    fn clone(&self) -> Self {
        Self {
            chain: self.chain.clone(),
            contract: self.contract,
            trust: self.trust.clone(),
            pins: self.pins.clone(),
            contacts: self.contacts.clone(),
        }
    }
}

impl<C: KeystoreChain> KeyLookup<C> {
    /// Lookups against `contract`; `trust` makes them verified (recommended; `None` trusts the
    /// node's `eth_call` answers, still checked against the pins and the contract's events).
    /// Pins live in memory only, until [`Self::with_contacts`] gives them a file.
    pub fn new(chain: Arc<C>, contract: Address, trust: Option<Arc<HeaderTrust>>) -> Self {
        Self {
            chain,
            contract,
            trust,
            pins: Arc::new(tokio::sync::Mutex::new(PinnedLookup::new(contract))),
            contacts: None,
        }
    }

    /// Keeps the pins in `store`: every lookup loads them from the file (under its lock) and
    /// writes back what it changed, so they persist across processes.
    pub fn with_contacts(mut self, store: ContactsStore) -> Self {
        self.contacts = Some(store);
        self
    }

    /// The contacts store, if any.
    pub fn contacts(&self) -> Option<&ContactsStore> {
        self.contacts.as_ref()
    }

    /// The chain.
    pub fn chain(&self) -> &Arc<C> {
        &self.chain
    }

    /// The keystore contract.
    pub fn contract(&self) -> Address {
        self.contract
    }

    /// The keystore these look-ups read, as PASSporTs name it: the chain's id and the contract,
    /// with RFC 8224's freshness window.
    pub fn passport_keystore(&self) -> chaincall_passport::VerifierConfig
    where
        C: KeystoreChain,
    {
        chaincall_passport::VerifierConfig::new(
            self.chain.chain_id(),
            chaincall_passport::KeystoreAddress(self.contract.into_array()),
        )
    }

    /// Whether lookups are proven.
    pub fn is_verified(&self) -> bool {
        self.trust.is_some()
    }

    /// Takes the contacts store's lock (on a blocking thread) and loads its pins into `pins`.
    async fn load_contacts(
        &self,
        pins: &mut PinnedLookup,
    ) -> Result<Option<(ContactsLock, Contacts)>, PhoneError> {
        let Some(store) = self.contacts.clone() else {
            return Ok(None);
        };
        let path = store.path().to_owned();
        // A join error is a panic in `lock`, a bug: reported, not propagated as a panic.
        let lock = tokio::task::spawn_blocking(move || store.lock())
            .await
            .map_err(|e| ContactsError::Io {
                path,
                source: std::io::Error::other(e),
            })??;
        let contacts = lock.read()?;
        *pins = contacts.pinned_lookup();
        Ok(Some((lock, contacts)))
    }

    /// Looks `name` up and checks it against the pin (persisted when a contacts store is set).
    /// A refused key change leaves the pin where it was.
    pub async fn lookup(&self, name: &IdentityName) -> Result<LookedUp, PhoneError> {
        let started = Instant::now();
        let id = ClientId::of(name);
        let fail = |reason: String| PhoneError::Lookup {
            name: name.clone(),
            reason,
        };
        let mut pins = self.pins.lock().await;
        let store = self.load_contacts(&mut pins).await?;
        let old = pins.pins().pinned_key(name).cloned();
        let (entry, block, proof_bytes, update, changes) = match &self.trust {
            Some(trust) => {
                let found = pins
                    .lookup(&*self.chain, trust, name, None)
                    .await
                    .map_err(|e| refusal(name, e))?;
                let v = found.verified;
                (
                    v.entry,
                    Some(v.block_number),
                    v.proof_bytes,
                    found.update,
                    found.changes,
                )
            }
            None => {
                // The block first: the answer describes it or a later one, never an older one.
                let block = self
                    .chain
                    .block_number()
                    .await
                    .map_err(|e| fail(e.to_string()))?;
                let entry = self
                    .chain
                    .get_client(self.contract, id)
                    .await
                    .map_err(|e| fail(e.to_string()))?;
                let (update, changes) = pins
                    .check_unproven(&*self.chain, name, &entry, block)
                    .await
                    .map_err(|e| refusal(name, e))?;
                (entry, None, 0, update, changes)
            }
        };
        match &update {
            PinUpdate::Revoked => {
                tracing::warn!(%name, "key revoked on chain: refusing it from now on")
            }
            PinUpdate::Pinned => tracing::debug!(%name, "key pinned"),
            _ => {}
        }
        let now = unix_now();
        let notes = self
            .describe_changes(name, old.as_ref(), &changes, now)
            .await;
        for note in &notes {
            tracing::warn!(%name, "{}", note.describe(name));
        }
        let mut verified_in_person = false;
        if let Some((lock, mut contacts)) = store {
            let at = block.unwrap_or_else(|| pins.seen(name).map_or(0, |s| s.block));
            contacts.record(name, &pins, &update, &notes, at, block.is_some(), now);
            lock.write(&contacts)?;
            verified_in_person = contacts
                .get(name)
                .is_some_and(|c| c.is_verified_in_person(name));
        }
        Ok(LookedUp {
            entry,
            verified: block.is_some(),
            block,
            proof_bytes,
            elapsed: started.elapsed(),
            pin: Some(update),
            changes: notes,
            verified_in_person,
        })
    }

    /// Moves `change.name`'s pin to the key the user accepted after comparing safety numbers
    /// (the change a lookup refused with [`PhoneError::UnconfirmedKeyChange`]), and records the
    /// acceptance in the contacts store.
    pub async fn accept_key_change(
        &self,
        change: &UnconfirmedKeyChange,
    ) -> Result<PinUpdate, PhoneError> {
        let name = &change.name;
        let mut pins = self.pins.lock().await;
        let store = self.load_contacts(&mut pins).await?;
        let update = pins
            .accept_key_change(change)
            .map_err(|e| refusal(name, e))?;
        if let Some((lock, mut contacts)) = store {
            let now = unix_now();
            let note = KeyChange {
                kind: ChangeKind::AcceptedByUser,
                block: change.block,
                block_time: None,
                seen_at: now,
                old: Fingerprint::new(name, &change.pinned).digits().to_owned(),
                new: Some(Fingerprint::new(name, &change.seen).digits().to_owned()),
            };
            contacts.record(name, &pins, &update, &[note], change.block, true, now);
            lock.write(&contacts)?;
        }
        tracing::warn!(%name, block = change.block, "key change accepted by the user");
        Ok(update)
    }

    /// The history entries for `changes`, each with its block's time when the header checks out.
    async fn describe_changes(
        &self,
        name: &IdentityName,
        old: Option<&chaincall_identity::PublicIdentityKey>,
        changes: &[RecordedChange],
        now: u64,
    ) -> Vec<KeyChange> {
        let mut times = HashMap::new();
        for change in changes {
            let block = match change {
                RecordedChange::Rotated { block, .. }
                | RecordedChange::Revoked { block }
                | RecordedChange::Reregistered { block, .. } => *block,
            };
            if let Some(time) = self.block_time(block).await {
                times.insert(block, time);
            }
        }
        key_changes(name, old, changes, |b| times.get(&b).copied(), now)
    }

    /// A block's timestamp: from its header, checked against the trusted header when lookups are
    /// verified (a time the provider could forge is left out rather than shown).
    async fn block_time(&self, block: u64) -> Option<u64> {
        let header = self.chain.block_header(block).await.ok()?;
        if let Some(trust) = &self.trust {
            let trusted = trust
                .trusted_header(&ChainHeaders(&*self.chain), block)
                .await
                .ok()?;
            if header.hash_slow() != trusted.hash {
                return None;
            }
        }
        Some(header.timestamp)
    }

    /// Looks `name` up and insists on an approved key, with a message for each other status.
    pub async fn approved(&self, name: &IdentityName) -> Result<LookedUp, PhoneError> {
        let found = self.lookup(name).await?;
        match found.entry.status {
            KeyStatus::Approved if found.entry.approved_key().is_some() => Ok(found),
            KeyStatus::Unknown => Err(PhoneError::UnknownCallee(name.clone())),
            status => Err(PhoneError::CalleeNotApproved {
                name: name.clone(),
                status,
            }),
        }
    }

    /// Adds a looked-up entry to a directory snapshot for the sans-IO cores.
    pub fn record(directory: &mut StaticDirectory, name: &IdentityName, found: &LookedUp) {
        found.record(directory, name);
    }
}

/// What a header the pin does not vouch for tells the user: where to look.
pub const TRUST_HINT: &str = "the node's history does not lead to the config's `trust` block (a \
     reset chain?): `chaincall phone trust` shows the pin and what the node now says";

/// A refused lookup as the user reads it: an unrecorded key change and an unconfirmed one get
/// their own errors (the second says how to accept it).
fn refusal(name: &IdentityName, e: LookupError) -> PhoneError {
    match e {
        LookupError::Continuity(ContinuityError::UnrecordedKeyChange { pinned, seen, .. }) => {
            PhoneError::KeyChangedWithoutRecord {
                name: name.clone(),
                pinned,
                seen,
            }
        }
        LookupError::UnconfirmedKeyChange(change) => PhoneError::UnconfirmedKeyChange(change),
        e @ LookupError::Verify(VerifyError::Header(_)) => PhoneError::Lookup {
            name: name.clone(),
            reason: format!("{}; {TRUST_HINT}", chaincall_io::ErrorChain(&e)),
        },
        e => PhoneError::Lookup {
            name: name.clone(),
            reason: chaincall_io::ErrorChain(&e).to_string(),
        },
    }
}
