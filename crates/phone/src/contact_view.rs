//! What `chaincall phone contact …` shows and records about one contact, without the rendering.
//!
//! [`find_key`] looks a contact's key up exactly as a call does (the [`KeyLookup`] with its
//! contacts store), but hands back a key change the phone could not confirm on its own instead of
//! refusing it: showing it (with the new key's safety number) is how the user gets to decide, and
//! [`KeyLookup::accept_key_change`] records the decision. [`SafetyView`] pairs this phone's identity
//! with the contact's (docs/safety-numbers.md); [`mark_verified_in_person`] records that the user
//! compared the safety number, for the key they compared only.

use chaincall_chain::KeystoreChain;
use chaincall_chain::verified::UnconfirmedKeyChange;
use chaincall_identity::{Fingerprint, IdentityName, PhoneNumber, PublicIdentityKey, SafetyNumber};

use crate::contacts::{Contact, ContactsError, ContactsStore};
use crate::error::PhoneError;
use crate::keys::{KeyLookup, LookedUp};

/// Why a contact could not be shown or marked verified.
#[derive(Debug, thiserror::Error)]
pub enum ContactViewError {
    /// The lookup found no approved key (e.g. a revoked entry without a successor).
    #[error("{0} has no approved key")]
    NoApprovedKey(String),
    /// The pin moved between showing the safety number and the user's answer (a `listen`
    /// running beside): the key the user compared is no longer the one pinned.
    #[error("{0}'s pinned key changed while you compared; run `contact verify` again")]
    PinMoved(String),
    /// The lookup itself failed.
    #[error(transparent)]
    Phone(#[from] PhoneError),
    /// The contacts store could not be read or written.
    #[error(transparent)]
    Contacts(#[from] ContactsError),
}

/// A contact's current key as a lookup found it: proven and pinned, or an unconfirmed change.
#[derive(Debug)]
pub struct ContactKey {
    /// The lookup's answer, when the key is pinned (no unconfirmed change).
    pub found: Option<LookedUp>,
    /// A key change the phone could not confirm on its own; `key` is then its new key.
    pub unconfirmed: Option<Box<UnconfirmedKeyChange>>,
    /// The key to show: the approved one, or the unconfirmed change's new key.
    pub key: PublicIdentityKey,
}

impl ContactKey {
    /// The block the key was proven at, if any.
    pub fn block(&self) -> Option<u64> {
        self.found
            .as_ref()
            .and_then(|f| f.block)
            .or(self.unconfirmed.as_ref().map(|c| c.block))
    }
}

/// Looks `contact` up as a call does, but returns an unconfirmed key change instead of failing on
/// it, so the user can compare its safety number and accept it.
pub async fn find_key<C: KeystoreChain>(
    lookup: &KeyLookup<C>,
    contact: &IdentityName,
) -> Result<ContactKey, ContactViewError> {
    match lookup.approved(contact).await {
        Ok(found) => {
            let key = found
                .entry
                .approved_key()
                .ok_or_else(|| ContactViewError::NoApprovedKey(contact.as_str().to_owned()))?;
            Ok(ContactKey {
                found: Some(found),
                unconfirmed: None,
                key,
            })
        }
        Err(PhoneError::UnconfirmedKeyChange(change)) => Ok(ContactKey {
            found: None,
            key: change.seen.clone(),
            unconfirmed: Some(change),
        }),
        Err(e) => Err(e.into()),
    }
}

/// This phone's identity and a contact's side by side: both fingerprints and their safety number.
#[derive(Debug, Clone)]
pub struct SafetyView {
    /// This phone's identity name.
    pub own_name: IdentityName,
    /// This phone's fingerprint.
    pub own_fingerprint: Fingerprint,
    /// The contact's fingerprint for the key shown.
    pub fingerprint: Fingerprint,
    /// The 60-digit safety number between the two.
    pub safety: SafetyNumber,
}

impl SafetyView {
    /// The view between our `own` number and public key and `contact`'s `key`.
    pub fn new(
        own: &PhoneNumber,
        own_key: &PublicIdentityKey,
        contact: &IdentityName,
        key: &PublicIdentityKey,
    ) -> Self {
        let own_name = IdentityName::Phone(own.clone());
        let own_fingerprint = Fingerprint::new(&own_name, own_key);
        let fingerprint = Fingerprint::new(contact, key);
        let safety = SafetyNumber::from_fingerprints(&own_fingerprint, &fingerprint);
        Self {
            own_name,
            own_fingerprint,
            fingerprint,
            safety,
        }
    }
}

/// When the contact's current pin was set: the last change's time, or the first sight.
pub fn pinned_since(contact: &Contact) -> u64 {
    contact
        .history
        .last()
        .map_or(contact.first_seen.time, |c| c.seen_at)
}

/// Records in `store` that the user compared the safety number for `contact`'s `key` in person,
/// at `now` (unix seconds); refuses if the pin is no longer `key`.
pub fn mark_verified_in_person(
    store: &ContactsStore,
    contact: &IdentityName,
    key: &PublicIdentityKey,
    now: u64,
) -> Result<(), ContactViewError> {
    let lock = store.lock()?;
    let mut contacts = lock.read()?;
    // Under the store's lock, so no lookup can move the pin between this check and the write.
    if contacts.get(contact).and_then(Contact::pinned_key).as_ref() != Some(key) {
        return Err(ContactViewError::PinMoved(contact.as_str().to_owned()));
    }
    contacts.mark_verified_in_person(contact, now)?;
    lock.write(&contacts)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy::primitives::Address;
    use chaincall_identity::IdentityKey;

    /// Pins `name` to `key` at `block` in the store, as a proven lookup would.
    fn pin(store: &ContactsStore, name: &IdentityName, key: &PublicIdentityKey, block: u64) {
        let lock = store.lock().unwrap();
        let mut contacts = lock.read().unwrap();
        crate::contacts::tests::pin(&mut contacts, name, key, block);
        lock.write(&contacts).unwrap();
    }

    #[test]
    fn marks_only_the_key_the_user_compared() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContactsStore::new(dir.path().join("contacts.json"), Address::repeat_byte(7));
        let bob: IdentityName = "+15550100002".parse().unwrap();
        let compared = IdentityKey::generate().public();
        pin(&store, &bob, &compared, 10);

        // The pin moves (a rotation seen by a `listen` beside) before the user answers.
        let rotated = IdentityKey::generate().public();
        pin(&store, &bob, &rotated, 11);
        let err = mark_verified_in_person(&store, &bob, &compared, 2_000).unwrap_err();
        assert_eq!(
            err.to_string(),
            "+15550100002's pinned key changed while you compared; run `contact verify` again"
        );
        assert!(
            !store
                .read()
                .unwrap()
                .get(&bob)
                .unwrap()
                .is_verified_in_person(&bob)
        );

        mark_verified_in_person(&store, &bob, &rotated, 2_000).unwrap();
        let contacts = store.read().unwrap();
        let stored = contacts.get(&bob).unwrap();
        assert!(stored.is_verified_in_person(&bob));
        assert_eq!(pinned_since(stored), stored.first_seen.time);
    }

    #[test]
    fn safety_view_is_the_same_number_from_both_sides() {
        let alice: PhoneNumber = "+15550100001".parse().unwrap();
        let bob: PhoneNumber = "+15550100002".parse().unwrap();
        let (a, b) = (
            IdentityKey::generate().public(),
            IdentityKey::generate().public(),
        );
        let from_alice = SafetyView::new(&alice, &a, &IdentityName::Phone(bob.clone()), &b);
        let from_bob = SafetyView::new(&bob, &b, &IdentityName::Phone(alice.clone()), &a);
        assert_eq!(from_alice.safety.digits(), from_bob.safety.digits());
        assert_eq!(
            from_alice.fingerprint.digits(),
            from_bob.own_fingerprint.digits()
        );
    }
}
