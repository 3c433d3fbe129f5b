//! The phone's contacts: key pins that outlive the process, with what the user should know of them.
//!
//! Every `chaincall phone` command is a new process; without a store, each would pin keys afresh
//! and a key changed between two calls would pass unnoticed. The store keeps, per identity, the
//! pin [`PinnedLookup`] decides on (the key or the revocation, and the block), the last accepted
//! lookup (block and wallet), when the contact was first seen and last verified, the history of
//! recorded key changes, and whether the user compared safety numbers in person (for which key).
//!
//! The file (`contacts_file` in the phone's config, default `contacts.json` next to it) is JSON,
//! written atomically (a 0600 temporary file renamed over it) under an advisory lock on a
//! `.lock` file beside it, so a `listen` and a `call` running at once each see the other's updates.
//! A file that does not parse is an error naming it, never replaced: it holds the pins that
//! protect the user, and starting over silently would trust every key anew.
//!
//! Nothing here is secret (public keys, numbers, blocks), but who one calls is private: the file
//! is the user's only (mode 0600), like the key file.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use alloy::primitives::Address;
use chaincall_chain::verified::{PinnedLookup, Seen};
use chaincall_identity::continuity::{Pin, PinUpdate, RecordedChange};
use chaincall_identity::{
    Fingerprint, IdentityName, Overwrite, PublicIdentityKey, SecretFileError, read_secret_file,
    write_secret_file,
};
use serde::{Deserialize, Serialize};

/// The file format's version; a new layout gets a new number.
pub const CONTACTS_VERSION: u32 = 1;

/// Why the contacts store could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ContactsError {
    /// The file (or its lock) could not be opened, read or written.
    #[error("contacts file {}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The file is readable by others, or not text (see [`SecretFileError`]).
    #[error("contacts file")]
    File(#[from] SecretFileError),
    /// The file does not parse: left as it is.
    #[error(
        "contacts file {} is corrupt ({reason}); it was left untouched: fix it, or move it away to \
         start over (every contact's key is then trusted anew on first sight)",
        path.display()
    )]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The file holds pins from another keystore contract.
    #[error(
        "contacts file {} holds keys of the keystore at {stored}, not {configured}; use another \
         `contacts_file` for this keystore",
        path.display()
    )]
    OtherContract {
        /// The file.
        path: PathBuf,
        /// The contract in the file.
        stored: Address,
        /// The contract configured.
        configured: Address,
    },
    /// The contact is not in the store.
    #[error("{0} is not among the contacts; look it up first (`phone contact show`)")]
    UnknownContact(IdentityName),
}

/// How a key change came about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ChangeKind {
    /// A rotation recorded on chain (`rotateKey`), proven.
    Rotation,
    /// A revocation recorded on chain.
    Revocation,
    /// Device recovery: the operator revoked the old key and approved a new one for the same
    /// number, both proven on chain. The operator's word plus a number-ownership check, weaker
    /// than a rotation signed by the contact's own wallet (docs/onboarding.md, "Device recovery").
    Recovery,
    /// The user accepted a change that could not be confirmed automatically, after comparing
    /// safety numbers (`phone contact verify`).
    AcceptedByUser,
}

impl ChangeKind {
    /// The kind as written in the file and JSON output.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Rotation => "rotation",
            Self::Revocation => "revocation",
            Self::Recovery => "recovery",
            Self::AcceptedByUser => "accepted-by-user",
        }
    }
}

/// One recorded key change of a contact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyChange {
    /// What happened.
    pub kind: ChangeKind,
    /// The block of the change (of the acceptance's lookup, for [`ChangeKind::AcceptedByUser`]).
    pub block: u64,
    /// The block's time (unix seconds) where its header could be checked; else `None`.
    pub block_time: Option<u64>,
    /// When this phone saw the change (unix seconds).
    pub seen_at: u64,
    /// Fingerprint (30 digits) of the key before.
    pub old: String,
    /// Fingerprint of the key after (`None` for a revocation).
    pub new: Option<String>,
}

impl KeyChange {
    /// The sentence shown to the user, e.g. "+15550100002's key changed on 2026-12-07 01:51:49 UTC
    /// (block 42) by a rotation recorded on chain".
    pub fn describe(&self, name: &IdentityName) -> String {
        let when = utc_time(self.block_time.unwrap_or(self.seen_at));
        let block = self.block;
        match self.kind {
            ChangeKind::Rotation => format!(
                "{name}'s key changed on {when} (block {block}) by a rotation recorded on chain"
            ),
            ChangeKind::Revocation => {
                format!("{name}'s key was revoked on {when} (block {block}), recorded on chain")
            }
            ChangeKind::Recovery => format!(
                "{name}'s key was replaced on {when} (block {block}) after the operator revoked \
                 the old key (device recovery): compare safety numbers again"
            ),
            ChangeKind::AcceptedByUser => format!(
                "{name}'s key change (seen at block {block}) was accepted by you on {when} after \
                 comparing safety numbers"
            ),
        }
    }
}

/// A block and a time (unix seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Moment {
    /// The block.
    pub block: u64,
    /// Unix seconds.
    pub time: u64,
}

/// The user compared safety numbers with the contact in person.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InPerson {
    /// The fingerprint (30 digits) of the contact's key they compared.
    pub fingerprint: String,
    /// When (unix seconds).
    pub at: u64,
}

/// What the phone knows about one contact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Contact {
    /// The pinned key, tagged hex (type tag, then the key bytes); `None` once revoked.
    pub key: Option<String>,
    /// The block the pin describes (of the revocation, once revoked).
    pub pin_block: u64,
    /// The first lookup that pinned it.
    pub first_seen: Moment,
    /// The last proven lookup that matched the pin.
    pub last_verified: Option<Moment>,
    /// The wallet bound to the entry at the last proven lookup (`0x…`).
    pub wallet: Option<String>,
    /// Recorded key changes, oldest first.
    #[serde(default)]
    pub history: Vec<KeyChange>,
    /// Compared in person, for the key whose fingerprint it names; cleared when the key changes.
    pub verified_in_person: Option<InPerson>,
}

impl Contact {
    /// The pinned key, if the contact is not revoked and its key parses.
    pub fn pinned_key(&self) -> Option<PublicIdentityKey> {
        parse_tagged(self.key.as_deref()?).ok()
    }

    /// Whether the user compared safety numbers in person for the key pinned now.
    pub fn is_verified_in_person(&self, name: &IdentityName) -> bool {
        match (&self.verified_in_person, self.pinned_key()) {
            (Some(v), Some(key)) => v.fingerprint == Fingerprint::new(name, &key).digits(),
            _ => false,
        }
    }
}

/// The store's contents, as read under the lock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Contacts {
    version: u32,
    contract: Address,
    contacts: BTreeMap<String, Contact>,
}

impl Contacts {
    /// No contacts yet, for the keystore at `contract`.
    pub fn new(contract: Address) -> Self {
        Self {
            version: CONTACTS_VERSION,
            contract,
            contacts: BTreeMap::new(),
        }
    }

    /// One contact.
    pub fn get(&self, name: &IdentityName) -> Option<&Contact> {
        self.contacts.get(name.as_str())
    }

    /// Every contact whose name parses, in the order of their names.
    pub fn iter(&self) -> impl Iterator<Item = (IdentityName, &Contact)> {
        self.contacts
            .iter()
            .filter_map(|(n, c)| IdentityName::parse(n).ok().map(|n| (n, c)))
    }

    /// A [`PinnedLookup`] holding every stored pin, to look up with.
    pub fn pinned_lookup(&self) -> PinnedLookup {
        let mut lookup = PinnedLookup::new(self.contract);
        for (name, contact) in self.iter() {
            let pin = match contact.pinned_key() {
                Some(key) => Pin::Key {
                    key,
                    block: contact.pin_block,
                },
                None => Pin::Revoked {
                    block: contact.pin_block,
                },
            };
            let seen = contact.last_verified.map(|m| Seen {
                block: m.block,
                wallet: contact.wallet.as_deref().and_then(|w| w.parse().ok()),
            });
            lookup.restore(&name, pin, seen);
        }
        lookup
    }

    /// Records what a lookup of `name` did: the pin and last lookup as `lookup` now holds them,
    /// `changes` (with their block times) in the history, and the times. `proven` says whether the
    /// lookup was proven at `block` (only then is it "last verified"). A changed key clears
    /// "verified in person".
    #[allow(clippy::too_many_arguments)]
    pub fn record(
        &mut self,
        name: &IdentityName,
        lookup: &PinnedLookup,
        update: &PinUpdate,
        changes: &[KeyChange],
        block: u64,
        proven: bool,
        now: u64,
    ) {
        let Some(pin) = lookup.pins().pin(name) else {
            return;
        };
        let (key, pin_block) = match pin {
            Pin::Key { key, block } => (Some(tagged_hex(key)), *block),
            Pin::Revoked { block } => (None, *block),
        };
        let seen = lookup.seen(name);
        let contact = self
            .contacts
            .entry(name.as_str().to_owned())
            .or_insert_with(|| Contact {
                key: key.clone(),
                pin_block,
                first_seen: Moment { block, time: now },
                last_verified: None,
                wallet: None,
                history: Vec::new(),
                verified_in_person: None,
            });
        if contact.key != key {
            contact.verified_in_person = None;
        }
        contact.key = key;
        contact.pin_block = pin_block;
        if proven
            && matches!(
                update,
                PinUpdate::Pinned
                    | PinUpdate::Unchanged
                    | PinUpdate::Rotated { .. }
                    | PinUpdate::Reregistered { .. }
            )
        {
            contact.last_verified = Some(Moment { block, time: now });
        }
        if let Some(seen) = seen {
            contact.wallet = seen.wallet.map(|w| w.to_string());
        }
        contact.history.extend(changes.iter().cloned());
    }

    /// Marks `name` verified in person for its pinned key, at `now`.
    pub fn mark_verified_in_person(
        &mut self,
        name: &IdentityName,
        now: u64,
    ) -> Result<&Contact, ContactsError> {
        let contact = self
            .contacts
            .get_mut(name.as_str())
            .ok_or_else(|| ContactsError::UnknownContact(name.clone()))?;
        let key = contact
            .pinned_key()
            .ok_or_else(|| ContactsError::UnknownContact(name.clone()))?;
        contact.verified_in_person = Some(InPerson {
            fingerprint: Fingerprint::new(name, &key).digits().to_owned(),
            at: now,
        });
        Ok(contact)
    }
}

/// The history entries for what a lookup reported: `changes` as [`PinnedLookup`] returned them
/// (oldest first), starting from the key pinned before (`old`); `block_time` gives a block's time
/// where known.
pub fn key_changes(
    name: &IdentityName,
    old: Option<&PublicIdentityKey>,
    changes: &[RecordedChange],
    block_time: impl Fn(u64) -> Option<u64>,
    now: u64,
) -> Vec<KeyChange> {
    // Every lookup comes through here, nearly always with nothing changed: a fingerprint costs
    // 5,200 SHA-512 calls, so none is computed for an empty history.
    if changes.is_empty() {
        return Vec::new();
    }
    let mut previous = old.map(|k| Fingerprint::new(name, k).digits().to_owned());
    let mut out = Vec::with_capacity(changes.len());
    for change in changes {
        let (kind, block, new) = match change {
            RecordedChange::Rotated { block, new_key } => (
                ChangeKind::Rotation,
                *block,
                Some(Fingerprint::new(name, new_key).digits().to_owned()),
            ),
            RecordedChange::Revoked { block } => (ChangeKind::Revocation, *block, None),
            RecordedChange::Reregistered { block, new_key, .. } => (
                ChangeKind::Recovery,
                *block,
                Some(Fingerprint::new(name, new_key).digits().to_owned()),
            ),
        };
        out.push(KeyChange {
            kind,
            block,
            block_time: block_time(block),
            seen_at: now,
            old: previous.clone().unwrap_or_default(),
            new: new.clone(),
        });
        previous = new;
    }
    out
}

/// The contacts file of one phone, for one keystore contract.
#[derive(Debug, Clone)]
pub struct ContactsStore {
    path: PathBuf,
    contract: Address,
}

impl ContactsStore {
    /// The store at `path` for the keystore at `contract` (the file need not exist yet).
    pub fn new(path: PathBuf, contract: Address) -> Self {
        Self { path, contract }
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Takes the advisory lock (blocking until another process releases it) for a
    /// read-modify-write; the lock is released when the guard drops. Blocking: async callers run
    /// it on a blocking thread.
    pub fn lock(&self) -> Result<ContactsLock, ContactsError> {
        let mut lock_path = self.path.as_os_str().to_owned();
        lock_path.push(".lock");
        let lock_path = PathBuf::from(lock_path);
        let io = |source| ContactsError::Io {
            path: lock_path.clone(),
            source,
        };
        let mut opts = std::fs::OpenOptions::new();
        opts.read(true).write(true).create(true).truncate(false);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let file = opts.open(&lock_path).map_err(io)?;
        // The lock is on a separate file: the contacts file itself is replaced by a rename on
        // every write, and a lock on the old inode would not exclude the next reader.
        file.lock().map_err(io)?;
        Ok(ContactsLock {
            _file: file,
            store: self.clone(),
        })
    }

    /// Reads the contacts (without the lock: for display only; updates go through [`Self::lock`]).
    pub fn read(&self) -> Result<Contacts, ContactsError> {
        let text = match read_secret_file(&self.path) {
            Ok(text) => text,
            Err(SecretFileError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                return Ok(Contacts::new(self.contract));
            }
            Err(e) => return Err(e.into()),
        };
        let corrupt = |reason: String| ContactsError::Corrupt {
            path: self.path.clone(),
            reason,
        };
        let contacts: Contacts = serde_json::from_str(&text).map_err(|e| corrupt(e.to_string()))?;
        if contacts.version != CONTACTS_VERSION {
            return Err(corrupt(format!(
                "version {} (this phone reads version {CONTACTS_VERSION})",
                contacts.version
            )));
        }
        if let Some((name, _)) = contacts.contacts.iter().find(|(n, c)| {
            IdentityName::parse(n).is_err()
                || c.key.as_deref().is_some_and(|k| parse_tagged(k).is_err())
        }) {
            return Err(corrupt(format!("contact {name:?} has a bad name or key")));
        }
        if contacts.contract != self.contract {
            return Err(ContactsError::OtherContract {
                path: self.path.clone(),
                stored: contacts.contract,
                configured: self.contract,
            });
        }
        Ok(contacts)
    }
}

/// The store, locked for a read-modify-write.
#[derive(Debug)]
pub struct ContactsLock {
    _file: File,
    store: ContactsStore,
}

impl ContactsLock {
    /// Reads the contacts (an empty store if the file does not exist yet).
    pub fn read(&self) -> Result<Contacts, ContactsError> {
        self.store.read()
    }

    /// Replaces the file with `contacts`, atomically and with mode 0600.
    pub fn write(&self, contacts: &Contacts) -> Result<(), ContactsError> {
        let mut text = serde_json::to_string_pretty(contacts).map_err(|e| ContactsError::Io {
            path: self.store.path.clone(),
            source: std::io::Error::other(e),
        })?;
        text.push('\n');
        write_secret_file(&self.store.path, text.as_bytes(), Overwrite::Replace)?;
        Ok(())
    }
}

/// A key as tagged hex: its type tag, then its bytes.
pub fn tagged_hex(key: &PublicIdentityKey) -> String {
    let mut bytes = vec![key.tag()];
    bytes.extend(key.to_bytes());
    hex::encode(bytes)
}

fn parse_tagged(text: &str) -> Result<PublicIdentityKey, String> {
    let bytes = hex::decode(text).map_err(|e| e.to_string())?;
    let (tag, key) = bytes.split_first().ok_or("empty key")?;
    PublicIdentityKey::from_tagged(*tag, key).map_err(|e| e.to_string())
}

/// Now, in unix seconds (0 if the clock is before 1970).
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Unix seconds as an RFC 3339 UTC time (one formatter for the phone and `mikey inspect`).
pub use chaincall_mikey::inspect::rfc3339;

/// Unix seconds as the user reads them: "2026-12-07 01:51:49 UTC".
pub fn utc_time(secs: u64) -> String {
    let text = rfc3339(i64::try_from(secs).unwrap_or(i64::MAX / 2), None);
    format!("{} UTC", text.trim_end_matches('Z').replacen('T', " ", 1))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use chaincall_identity::IdentityKey;

    fn name(i: u32) -> IdentityName {
        format!("+1555010{i:04}").parse().unwrap()
    }

    fn contract() -> Address {
        Address::repeat_byte(7)
    }

    /// Records a first sight of `name` with `key` at `block`, as a proven lookup would (also
    /// used by `contact_view`'s tests).
    pub(crate) fn pin(
        contacts: &mut Contacts,
        name: &IdentityName,
        key: &PublicIdentityKey,
        block: u64,
    ) {
        let mut lookup = contacts.pinned_lookup();
        let seen = Seen {
            block,
            wallet: Some(Address::repeat_byte(1)),
        };
        let update = if contacts.get(name).is_some() {
            PinUpdate::Unchanged
        } else {
            PinUpdate::Pinned
        };
        lookup.restore(
            name,
            Pin::Key {
                key: key.clone(),
                block,
            },
            Some(seen),
        );
        contacts.record(name, &lookup, &update, &[], block, true, 1_000 + block);
    }

    #[test]
    fn pins_round_trip_through_the_file_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("contacts.json");
        let store = ContactsStore::new(path.clone(), contract());
        let key = IdentityKey::generate().public();
        let lock = store.lock().unwrap();
        let mut contacts = lock.read().unwrap();
        assert!(contacts.get(&name(1)).is_none());
        pin(&mut contacts, &name(1), &key, 10);
        lock.write(&contacts).unwrap();
        drop(lock);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        let back = store.read().unwrap();
        assert_eq!(back, contacts);
        let c = back.get(&name(1)).unwrap();
        assert_eq!(c.pinned_key(), Some(key.clone()));
        assert_eq!(
            c.first_seen,
            Moment {
                block: 10,
                time: 1_010
            }
        );
        let lookup = back.pinned_lookup();
        assert_eq!(lookup.pins().pinned_key(&name(1)), Some(&key));
        assert_eq!(lookup.seen(&name(1)).map(|s| s.block), Some(10));
        // Another keystore's phone cannot use these pins.
        let other = ContactsStore::new(path, Address::repeat_byte(8));
        assert!(matches!(
            other.read(),
            Err(ContactsError::OtherContract { .. })
        ));
    }

    #[test]
    fn verified_in_person_names_the_key_and_clears_when_it_changes() {
        let mut contacts = Contacts::new(contract());
        let old = IdentityKey::generate().public();
        pin(&mut contacts, &name(2), &old, 10);
        assert!(
            !contacts
                .get(&name(2))
                .unwrap()
                .is_verified_in_person(&name(2))
        );
        contacts.mark_verified_in_person(&name(2), 2_000).unwrap();
        assert!(
            contacts
                .get(&name(2))
                .unwrap()
                .is_verified_in_person(&name(2))
        );
        let new = IdentityKey::generate().public();
        let mut lookup = contacts.pinned_lookup();
        lookup.restore(
            &name(2),
            Pin::Key {
                key: new.clone(),
                block: 20,
            },
            None,
        );
        let changes = key_changes(
            &name(2),
            Some(&old),
            &[RecordedChange::Rotated {
                block: 20,
                new_key: new.clone(),
            }],
            |_| Some(1_765_000_000),
            3_000,
        );
        contacts.record(
            &name(2),
            &lookup,
            &PinUpdate::Rotated { old: old.clone() },
            &changes,
            20,
            true,
            3_000,
        );
        let c = contacts.get(&name(2)).unwrap();
        assert!(c.verified_in_person.is_none());
        assert!(!c.is_verified_in_person(&name(2)));
        assert_eq!(c.history.len(), 1);
        assert_eq!(c.history[0].kind, ChangeKind::Rotation);
        assert_eq!(c.history[0].old, Fingerprint::new(&name(2), &old).digits());
        assert_eq!(
            c.history[0].describe(&name(2)),
            "+15550100002's key changed on 2025-12-06 05:46:40 UTC (block 20) by a rotation \
             recorded on chain"
        );
        assert!(matches!(
            contacts.mark_verified_in_person(&name(9), 1),
            Err(ContactsError::UnknownContact(_))
        ));
    }

    /// A contact's device recovery reads as such, with its date and block, after the revocation.
    #[test]
    fn a_device_recovery_is_told_with_its_date_and_block() {
        let old = IdentityKey::generate().public();
        let new = IdentityKey::generate().public();
        let changes = key_changes(
            &name(2),
            Some(&old),
            &[
                RecordedChange::Revoked { block: 30 },
                RecordedChange::Reregistered {
                    revoked: 30,
                    block: 34,
                    new_key: new.clone(),
                },
            ],
            |b| (b == 34).then_some(1_765_000_000),
            3_000,
        );
        assert_eq!(changes.len(), 2);
        assert_eq!(changes[1].kind, ChangeKind::Recovery);
        assert_eq!(
            changes[1].new.as_deref(),
            Some(Fingerprint::new(&name(2), &new).digits())
        );
        assert_eq!(
            changes[1].describe(&name(2)),
            "+15550100002's key was replaced on 2025-12-06 05:46:40 UTC (block 34) after the \
             operator revoked the old key (device recovery): compare safety numbers again"
        );
    }

    /// Two stores on one file (a `listen` and a `call`), each adding contacts under the lock from
    /// its own thread: none is lost.
    #[test]
    fn concurrent_updates_from_two_stores_both_persist() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("contacts.json");
        let key = IdentityKey::generate().public();
        let workers: Vec<_> = (0..2u32)
            .map(|w| {
                let store = ContactsStore::new(path.clone(), contract());
                let key = key.clone();
                std::thread::spawn(move || {
                    for i in 0..20 {
                        let lock = store.lock().unwrap();
                        let mut contacts = lock.read().unwrap();
                        pin(&mut contacts, &name(w * 100 + i), &key, u64::from(i));
                        // Widen the window between read and write.
                        std::thread::yield_now();
                        lock.write(&contacts).unwrap();
                    }
                })
            })
            .collect();
        for w in workers {
            w.join().unwrap();
        }
        let contacts = ContactsStore::new(path, contract()).read().unwrap();
        assert_eq!(contacts.iter().count(), 40);
    }

    #[test]
    fn a_corrupt_file_is_an_error_naming_it_and_is_left_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("contacts.json");
        let store = ContactsStore::new(path.clone(), contract());
        for bad in [
            "{ not json",
            "{\"version\":99,\"contract\":\"0x0707070707070707070707070707070707070707\",\"contacts\":{}}",
            "{\"version\":1,\"contract\":\"0x0707070707070707070707070707070707070707\",\"contacts\":{\"+15550100001\":{\"key\":\"zz\",\"pin_block\":1,\"first_seen\":{\"block\":1,\"time\":1},\"last_verified\":null,\"wallet\":null,\"verified_in_person\":null}}}",
        ] {
            write_secret_file(&path, bad.as_bytes(), Overwrite::Replace).unwrap();
            let err = store.lock().unwrap().read().unwrap_err();
            let text = err.to_string();
            assert!(matches!(err, ContactsError::Corrupt { .. }), "{text}");
            assert!(text.contains(&path.display().to_string()), "{text}");
            assert_eq!(std::fs::read_to_string(&path).unwrap(), bad);
        }
    }

    #[test]
    fn times_read_as_utc() {
        assert_eq!(rfc3339(0, Some(5)), "1970-01-01T00:00:00.005Z");
        assert_eq!(utc_time(951_782_400), "2000-02-29 00:00:00 UTC");
    }
}
