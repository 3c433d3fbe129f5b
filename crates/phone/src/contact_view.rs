//! What `chaincall phone contact …` shows and records about contacts, and how it reads.
//!
//! [`find_key`] looks a contact's key up exactly as a call does (the [`KeyLookup`] with its
//! contacts store), but hands back a key change the phone could not confirm on its own instead of
//! refusing it: showing it (with the new key's safety number) is how the user gets to decide, and
//! [`KeyLookup::accept_key_change`] records the decision. [`SafetyView`] pairs this phone's identity
//! with the contact's (docs/safety-numbers.md); [`mark_verified_in_person`] records that the user
//! compared the safety number, for the key they compared only. [`ContactShowView`],
//! [`StoredContactView`] and [`CallTrustView`] render them as text ([`fmt::Display`]) and JSON.

use std::fmt;

use chaincall_chain::KeystoreChain;
use chaincall_chain::verified::UnconfirmedKeyChange;
use chaincall_identity::{Fingerprint, IdentityName, PhoneNumber, PublicIdentityKey, SafetyNumber};

use serde_json::{Value, json};

use crate::CallReport;
use crate::contacts::{Contact, Contacts, ContactsError, ContactsStore, KeyChange, utc_time};
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
    /// The user did not accept an unconfirmed key change (`contact verify`).
    #[error("the key change was not accepted; the pin stays on the old key")]
    ChangeNotAccepted,
    /// The user did not confirm the safety number matched (`contact verify`).
    #[error("not marked verified")]
    NotConfirmed,
    /// The question could not be asked or answered.
    #[error("cannot ask at the terminal")]
    Prompt(#[source] std::io::Error),
}

/// What `contact verify` needs from the person at the screen.
pub trait VerifyUi {
    /// Shows `text` (one or more whole lines).
    fn show(&mut self, text: &str);
    /// Asks a yes/no question; only an explicit yes confirms.
    fn confirm(&mut self, question: &str) -> std::io::Result<bool>;
}

/// `contact verify`: looks `contact` up, shows the safety number between this phone (`own`,
/// holding `own_key`) and the contact, and once the person confirms they compared it in person,
/// marks the contact verified for that key. A key change the phone could not confirm on its own
/// is shown first (with the new key's safety number) and accepted only after the same
/// confirmation, which then also counts as the in-person check.
pub async fn verify_in_person<C: KeystoreChain>(
    lookup: &KeyLookup<C>,
    store: &ContactsStore,
    (own, own_key): (&PhoneNumber, &PublicIdentityKey),
    contact: &IdentityName,
    ui: &mut impl VerifyUi,
) -> Result<(), ContactViewError> {
    let who = contact.as_str();
    let found = find_key(lookup, contact).await?;
    let view = SafetyView::new(own, own_key, contact, &found.key);
    let rows = safety_rows(&view.safety);
    if let Some(change) = &found.unconfirmed {
        let fingerprint = &view.fingerprint;
        ui.show(&format!(
            "{change}\nnew fingerprint {fingerprint}; safety number with the new key:\n{rows}"
        ));
        let question = format!(
            "Accept {who}'s new key? Only if you compared this safety number with {who} in person and it matched."
        );
        if !ui.confirm(&question).map_err(ContactViewError::Prompt)? {
            return Err(ContactViewError::ChangeNotAccepted);
        }
        lookup.accept_key_change(change).await?;
        ui.show(&format!("accepted {who}'s new key\n"));
    }
    let fingerprint = &view.fingerprint;
    ui.show(&format!(
        "{who} fingerprint {fingerprint}\nsafety number (compare with the one {who} sees):\n{rows}"
    ));
    let question =
        format!("Did you compare this safety number with {who} in person, and does it match?");
    if !ui.confirm(&question).map_err(ContactViewError::Prompt)? {
        return Err(ContactViewError::NotConfirmed);
    }
    mark_verified_in_person(store, contact, &found.key, crate::contacts::unix_now())?;
    ui.show(&format!(
        "{who} marked verified in person for fingerprint {fingerprint}\n"
    ));
    Ok(())
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

/// A safety number in three rows of four groups, as Signal shows it: one indented line a row.
pub fn safety_rows(safety: &SafetyNumber) -> String {
    let grouped = safety.grouped();
    let groups: Vec<&str> = grouped.split(' ').collect();
    groups
        .chunks(4)
        .map(|row| format!("  {}\n", row.join(" ")))
        .collect()
}

/// One recorded key change as JSON, with the sentence shown to the user.
pub fn key_change_json(name: &IdentityName, change: &KeyChange) -> Value {
    json!({
        "kind": change.kind.as_str(),
        "block": change.block,
        "block_time": change.block_time,
        "seen_at": change.seen_at,
        "old_fingerprint": change.old,
        "new_fingerprint": change.new,
        "message": change.describe(name),
    })
}

/// Every stored contact as `contact list` (and `phone contacts`) shows it, each with the safety
/// number against this phone's own key; text via `Display`, or [`to_json`](Self::to_json).
#[derive(Debug)]
pub struct ContactListView {
    rows: Vec<(IdentityName, Contact, Option<SafetyView>)>,
}

impl ContactListView {
    /// The view of `contacts` for the phone `own` holding `own_key`; a revoked contact has no
    /// safety number.
    pub fn new(contacts: &Contacts, own: &PhoneNumber, own_key: &PublicIdentityKey) -> Self {
        let rows = contacts
            .iter()
            .map(|(name, contact)| {
                let safety = contact
                    .pinned_key()
                    .map(|key| SafetyView::new(own, own_key, &name, &key));
                (name, contact.clone(), safety)
            })
            .collect();
        Self { rows }
    }

    fn views(&self) -> impl Iterator<Item = StoredContactView<'_>> {
        self.rows
            .iter()
            .map(|(name, contact, safety)| StoredContactView {
                name,
                contact,
                safety: safety.clone(),
            })
    }

    /// The JSON view: `{"contacts": [...]}`, one [`StoredContactView::to_json`] a contact.
    pub fn to_json(&self) -> Value {
        let all: Vec<_> = self.views().map(|v| v.to_json()).collect();
        json!({ "contacts": all })
    }
}

impl fmt::Display for ContactListView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.rows.is_empty() {
            return writeln!(
                f,
                "no contacts yet: every call and `contact show` adds the peer it looks up"
            );
        }
        self.views().try_for_each(|view| write!(f, "{view}"))
    }
}

/// One stored contact as `contact list` shows it (no chain access): its pin, when it was last
/// proven, whether it was compared in person, the last key change.
#[derive(Debug)]
pub struct StoredContactView<'a> {
    /// The contact's name.
    pub name: &'a IdentityName,
    /// What the store holds.
    pub contact: &'a Contact,
    /// The safety view for the pinned key; none when the contact is revoked.
    pub safety: Option<SafetyView>,
}

impl StoredContactView<'_> {
    /// The JSON view: every stored field, the safety number and the whole change history.
    pub fn to_json(&self) -> Value {
        let (name, contact, safety) = (self.name, self.contact, self.safety.as_ref());
        let verified_in_person = contact.is_verified_in_person(name);
        json!({
            "contact": name.as_str(),
            "revoked": contact.pinned_key().is_none(),
            "public_key": contact.key,
            "fingerprint": safety.map(|s| s.fingerprint.digits().to_owned()),
            "safety_number": safety.map(|s| s.safety.digits().to_owned()),
            "pinned_since": pinned_since(contact),
            "pin_block": contact.pin_block,
            "first_seen": {"block": contact.first_seen.block, "time": contact.first_seen.time},
            "last_verified": contact.last_verified.map(|m| json!({"block": m.block, "time": m.time})),
            "wallet": contact.wallet,
            "verified_in_person": verified_in_person,
            "verified_in_person_at": contact
                .verified_in_person
                .as_ref()
                .filter(|_| verified_in_person)
                .map(|v| v.at),
            "last_change": contact.history.last().map(|c| key_change_json(name, c)),
            "history": contact.history.iter().map(|c| key_change_json(name, c)).collect::<Vec<_>>(),
        })
    }
}

impl fmt::Display for StoredContactView<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (name, c) = (self.name, self.contact);
        writeln!(f, "{}", name.as_str())?;
        match &self.safety {
            Some(view) => {
                writeln!(f, "  fingerprint        {}", view.fingerprint)?;
                writeln!(f, "  safety number      {}", view.safety.grouped())?;
            }
            None => writeln!(f, "  revoked            at block {}", c.pin_block)?,
        }
        writeln!(f, "  pinned since       {}", utc_time(pinned_since(c)))?;
        match c.last_verified {
            Some(m) => writeln!(
                f,
                "  last verified      {} (block {})",
                utc_time(m.time),
                m.block
            )?,
            None => writeln!(f, "  last verified      never (proven)")?,
        }
        let in_person = if c.is_verified_in_person(name) {
            "yes"
        } else {
            "no"
        };
        writeln!(f, "  verified in person {in_person}")?;
        if let Some(change) = c.history.last() {
            writeln!(f, "  last change        {}", change.describe(name))?;
        }
        Ok(())
    }
}

/// What `contact show` shows: the contact's key as just looked up, the safety number with this
/// phone, and what the store holds about the contact.
#[derive(Debug)]
pub struct ContactShowView<'a> {
    /// The contact's name.
    pub contact: &'a IdentityName,
    /// The key the lookup found (or an unconfirmed change's new key).
    pub found: &'a ContactKey,
    /// This phone and the contact side by side.
    pub safety: &'a SafetyView,
    /// The stored contact, if the store holds one.
    pub stored: Option<&'a Contact>,
}

impl ContactShowView<'_> {
    /// The JSON view (`status`, `public_key`, `fingerprint`, `safety_number`, `pinned`, …).
    pub fn to_json(&self) -> Value {
        let (contact, key, found) = (self.contact, &self.found.key, self.found.found.as_ref());
        let unconfirmed = self.found.unconfirmed.as_ref();
        json!({
            "contact": contact.as_str(),
            "canonical": contact.canonical(),
            "status": found.map_or("approved", |f| f.entry.status.as_str()),
            "key_type": key.tag(),
            "public_key": hex::encode(key.to_bytes()),
            "fingerprint": self.safety.fingerprint.digits(),
            "verified": found.is_some_and(|f| f.verified),
            "block": self.found.block(),
            "own": {
                "number": self.safety.own_name.as_str(),
                "fingerprint": self.safety.own_fingerprint.digits(),
            },
            "safety_number": self.safety.safety.digits(),
            "pinned": unconfirmed.is_none(),
            "unconfirmed_key_change": unconfirmed.map(|c| c.to_string()),
            "verified_in_person": self.stored.is_some_and(|c| c.is_verified_in_person(contact)),
            "history": self.stored.map_or_else(Vec::new, |c| {
                c.history.iter().map(|h| key_change_json(contact, h)).collect()
            }),
        })
    }
}

impl fmt::Display for ContactShowView<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (contact, key, found) = (self.contact, &self.found.key, self.found.found.as_ref());
        let status = found.map_or("approved".to_owned(), |f| f.entry.status.to_string());
        let who = contact.as_str();
        writeln!(f, "contact       {who} ({}): {status}", contact.canonical())?;
        match (found, &self.found.unconfirmed) {
            (Some(found), _) => match found.block {
                Some(block) => writeln!(
                    f,
                    "verified      block {block}, {} proof bytes",
                    found.proof_bytes
                )?,
                None => writeln!(f, "verified      no (the node's word)")?,
            },
            (None, Some(change)) => writeln!(f, "KEY CHANGED   {change}")?,
            (None, None) => {}
        }
        let SafetyView {
            own_name,
            own_fingerprint,
            fingerprint,
            safety,
        } = self.safety;
        writeln!(f, "public key    {}", hex::encode(key.to_bytes()))?;
        writeln!(f, "fingerprint   {fingerprint}")?;
        writeln!(f, "you           {} {own_fingerprint}", own_name.as_str())?;
        writeln!(f, "safety number (compare with the one {who} sees):")?;
        f.write_str(&safety_rows(safety))?;
        let Some(c) = self.stored else {
            return Ok(());
        };
        let in_person = if c.is_verified_in_person(contact) {
            "verified"
        } else {
            "not verified (`chaincall phone contact verify NUMBER` once compared)"
        };
        writeln!(f, "in person     {in_person}")?;
        if c.history.is_empty() {
            return writeln!(f, "history       no key change since first seen");
        }
        writeln!(f, "history")?;
        for change in &c.history {
            let new = change.new.as_deref().unwrap_or("revoked");
            writeln!(f, "  {} ({} → {new})", change.describe(contact), change.old)?;
        }
        Ok(())
    }
}

/// The peer a call report names: the verified one, else the one it dialled or heard from.
fn call_peer(r: &CallReport) -> Option<IdentityName> {
    r.verified_peer
        .clone()
        .or_else(|| IdentityName::parse(&r.peer).ok())
}

/// Adds a call report's trust fields to its JSON object: the safety number with the verified peer,
/// whether it was compared in person, and the key changes the call's lookup found.
pub fn add_call_trust(report: &mut Value, r: &CallReport) {
    let changes: Vec<Value> = match call_peer(r) {
        Some(name) => r
            .key_changes
            .iter()
            .map(|c| key_change_json(&name, c))
            .collect(),
        None => Vec::new(),
    };
    if let Some(object) = report.as_object_mut() {
        object.insert(
            "safety_number".into(),
            json!(r.safety_number.as_ref().map(|s| s.digits().to_owned())),
        );
        object.insert("verified_in_person".into(), json!(r.verified_in_person));
        object.insert("key_changes".into(), json!(changes));
    }
}

/// A call report's trust lines for the text report: the safety number and any key change.
#[derive(Debug)]
pub struct CallTrustView<'a>(pub &'a CallReport);

impl fmt::Display for CallTrustView<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = self.0;
        if let Some(safety) = &r.safety_number {
            let how = if r.verified_in_person {
                "verified in person"
            } else {
                "not verified in person: `chaincall phone contact verify`"
            };
            writeln!(f, "  safety number  {} ({how})", safety.grouped())?;
        }
        if let Some(name) = call_peer(r) {
            for change in &r.key_changes {
                writeln!(f, "  key change     {}", change.describe(&name))?;
            }
        }
        Ok(())
    }
}

/// The part of a "call up" line that names the safety number.
pub fn up_note(safety: Option<&SafetyNumber>, verified_in_person: bool) -> String {
    match safety {
        Some(s) if verified_in_person => {
            format!("; safety number {} verified in person", s.grouped())
        }
        Some(s) => format!("; safety number {}", s.grouped()),
        None => String::new(),
    }
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

    #[test]
    fn a_stored_contact_reads_as_list_text_and_json() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContactsStore::new(dir.path().join("contacts.json"), Address::repeat_byte(7));
        let alice: PhoneNumber = "+15550100001".parse().unwrap();
        let bob: IdentityName = "+15550100002".parse().unwrap();
        let (own, key) = (
            IdentityKey::generate().public(),
            IdentityKey::generate().public(),
        );
        pin(&store, &bob, &key, 10);
        let contacts = store.read().unwrap();
        let contact = contacts.get(&bob).unwrap();
        let safety = SafetyView::new(&alice, &own, &bob, &key);
        let grouped = safety.safety.grouped();
        let view = StoredContactView {
            name: &bob,
            contact,
            safety: Some(safety),
        };
        let text = view.to_string();
        assert!(
            text.starts_with("+15550100002\n  fingerprint        "),
            "{text}"
        );
        assert!(
            text.contains(&format!("  safety number      {grouped}\n")),
            "{text}"
        );
        assert!(text.contains("  verified in person no\n"), "{text}");
        let json = view.to_json();
        assert_eq!(json["contact"], "+15550100002");
        assert_eq!(json["revoked"], false);
        assert_eq!(json["pin_block"], 10);
        assert_eq!(json["safety_number"].as_str().map(str::len), Some(60));
        // Three rows of four five-digit groups.
        let rows = safety_rows(&SafetyView::new(&alice, &own, &bob, &key).safety);
        assert_eq!(rows.lines().count(), 3);
        assert!(
            rows.lines()
                .all(|row| row.starts_with("  ") && row.split(' ').count() == 6)
        );
    }
}
