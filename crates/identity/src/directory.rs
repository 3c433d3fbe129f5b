//! The key directory: how protocol cores learn an identity's approved key without chain code.
//!
//! The chain crate implements [`KeyDirectory`] over the keystore contract (with verified lookups where
//! configured); [`StaticDirectory`] is an in-memory implementation for tests and pinned configurations.
//! The trait is synchronous because cores are: a shell that reads the chain asynchronously looks the
//! identities up first, or serves them from its verified cache.

use std::collections::HashMap;
use std::fmt;

use crate::{IdentityName, PublicIdentityKey};

/// Where an identity stands in the keystore.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum KeyStatus {
    /// No entry for this identity.
    Unknown,
    /// Submitted by its wallet, not yet approved by the keystore's owner: not to be trusted.
    Pending,
    /// Approved: the key may be used.
    Approved,
    /// Revoked by its wallet or the owner: never to be trusted again.
    Revoked,
}

impl KeyStatus {
    /// The lower-case name used in JSON and messages (`"approved"`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unknown => "unknown",
            Self::Pending => "pending",
            Self::Approved => "approved",
            Self::Revoked => "revoked",
        }
    }
}

impl fmt::Display for KeyStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A directory's answer for one identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectoryEntry {
    /// Where the identity stands.
    pub status: KeyStatus,
    /// The key on record (for pending and revoked entries too, so callers can explain), if any.
    pub key: Option<PublicIdentityKey>,
}

/// Why a directory could not give an approved key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DirectoryError {
    /// The identity exists but is not approved (unknown, pending or revoked): refuse to use it.
    #[error("{name} is {status} in the keystore")]
    NotApproved {
        /// The identity asked about.
        name: IdentityName,
        /// Its status.
        status: KeyStatus,
    },
    /// The directory could not answer (node down, proof failed, ...).
    #[error("key directory unavailable: {0}")]
    Unavailable(String),
}

/// Answers "what key does this identity have on chain, and may it be used?"
pub trait KeyDirectory {
    /// Looks up an identity's entry.
    fn lookup(&self, name: &IdentityName) -> Result<DirectoryEntry, DirectoryError>;

    /// The identity's key if, and only if, it is approved.
    fn approved_key(&self, name: &IdentityName) -> Result<PublicIdentityKey, DirectoryError> {
        let entry = self.lookup(name)?;
        match (entry.status, entry.key) {
            (KeyStatus::Approved, Some(key)) => Ok(key),
            (status, _) => Err(DirectoryError::NotApproved {
                name: name.clone(),
                status,
            }),
        }
    }

    /// Drops whatever the directory remembers about `name`, so the next lookup asks the chain.
    /// Called when a peer failed to prove the key the directory gave (it may have rotated since
    /// the answer was cached). Directories without a cache ignore it.
    fn forget(&self, _name: &IdentityName) {}
}

impl<T: KeyDirectory + ?Sized> KeyDirectory for &T {
    fn lookup(&self, name: &IdentityName) -> Result<DirectoryEntry, DirectoryError> {
        (**self).lookup(name)
    }

    fn forget(&self, name: &IdentityName) {
        (**self).forget(name)
    }
}

impl<T: KeyDirectory + ?Sized> KeyDirectory for std::sync::Arc<T> {
    fn lookup(&self, name: &IdentityName) -> Result<DirectoryEntry, DirectoryError> {
        (**self).lookup(name)
    }

    fn forget(&self, name: &IdentityName) {
        (**self).forget(name)
    }
}

/// An in-memory directory: for tests, and for keys pinned in configuration.
#[derive(Debug, Clone, Default)]
pub struct StaticDirectory {
    entries: HashMap<IdentityName, DirectoryEntry>,
}

impl StaticDirectory {
    /// An empty directory (every identity unknown).
    pub fn new() -> Self {
        Self::default()
    }

    /// Records an identity with a status and key, replacing any earlier record.
    pub fn insert(&mut self, name: IdentityName, status: KeyStatus, key: PublicIdentityKey) {
        self.entries.insert(
            name,
            DirectoryEntry {
                status,
                key: Some(key),
            },
        );
    }

    /// Records an approved identity.
    pub fn approve(&mut self, name: IdentityName, key: PublicIdentityKey) {
        self.insert(name, KeyStatus::Approved, key);
    }

    /// Marks an identity revoked, keeping its key on record.
    pub fn revoke(&mut self, name: &IdentityName) {
        if let Some(entry) = self.entries.get_mut(name) {
            entry.status = KeyStatus::Revoked;
        }
    }
}

impl KeyDirectory for StaticDirectory {
    fn lookup(&self, name: &IdentityName) -> Result<DirectoryEntry, DirectoryError> {
        Ok(self.entries.get(name).cloned().unwrap_or(DirectoryEntry {
            status: KeyStatus::Unknown,
            key: None,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::IdentityKey;

    #[test]
    fn only_approved_keys_are_handed_out() {
        let alice: IdentityName = "+15551230001".parse().unwrap();
        let bob: IdentityName = "+15551230002".parse().unwrap();
        let carol: IdentityName = "+15551230003".parse().unwrap();
        let mut dir = StaticDirectory::new();
        let key = IdentityKey::generate().public();
        dir.approve(alice.clone(), key.clone());
        dir.insert(bob.clone(), KeyStatus::Pending, key.clone());
        assert_eq!(dir.approved_key(&alice).unwrap(), key);
        assert!(matches!(
            dir.approved_key(&bob),
            Err(DirectoryError::NotApproved {
                status: KeyStatus::Pending,
                ..
            })
        ));
        assert!(matches!(
            dir.approved_key(&carol),
            Err(DirectoryError::NotApproved {
                status: KeyStatus::Unknown,
                ..
            })
        ));
        dir.revoke(&alice);
        let err = dir.approved_key(&alice).unwrap_err();
        assert_eq!(err.to_string(), "+15551230001 is revoked in the keystore");
    }
}
