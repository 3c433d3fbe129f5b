//! The phone's ZRTP state (RFC 6189 §4.9): its ZID, generated once, and per peer ZID the retained
//! secrets rs1/rs2, the SAS-verified flag and the on-chain identity the chain binding proved for
//! that ZID (the ZID ↔ identity pin). Kept in a small JSON file next to the contacts store
//! (`zrtp_cache` in the phone file), mode 0600, replaced atomically on every update.
//!
//! The retained secrets are key material: they never reach logs, and the file's text is zeroized
//! once written or read.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use chaincall_identity::{
    IdentityName, Overwrite, Randomness, SecretFileError, read_secret_file, write_secret_file,
};
use chaincall_zrtp::{CacheEntry, RetainedSecret, SecretCache, Zid};
use serde::{Deserialize, Serialize};
use tracing::warn;
use zeroize::{Zeroize, Zeroizing};

/// One peer's entry in the file.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct PeerEntry {
    /// rs1, hex. Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    rs1: Option<String>,
    /// rs2, hex. Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    rs2: Option<String>,
    #[serde(default)]
    sas_verified: bool,
    /// The identity whose on-chain key the chain binding proved for this ZID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    identity: Option<String>,
}

impl Drop for PeerEntry {
    fn drop(&mut self) {
        self.rs1.zeroize();
        self.rs2.zeroize();
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct CacheFile {
    /// Our ZID, hex.
    zid: String,
    /// Peers by ZID (hex).
    #[serde(default)]
    peers: BTreeMap<String, PeerEntry>,
}

/// The ZID ↔ identity pin after a chain-bound call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ZidPin {
    /// First chain-bound call with this ZID: pinned now.
    New,
    /// The ZID was pinned to this identity already.
    Same,
    /// The ZID was pinned to another identity (shown to the user); now re-pinned.
    Changed {
        /// The identity it was pinned to.
        previous: String,
    },
}

impl ZidPin {
    /// `new`, `same` or `changed`, as reports name it.
    pub fn name(&self) -> &'static str {
        match self {
            ZidPin::New => "new",
            ZidPin::Same => "same",
            ZidPin::Changed { .. } => "changed",
        }
    }

    /// How the phone words the pin of `peer_zid` (hex) to `identity`: a changed one says what
    /// it was, since the same ZRTP installation now speaks for another identity.
    pub fn describe(&self, peer_zid: &str, identity: &str) -> String {
        let zid = peer_zid.get(..8).unwrap_or(peer_zid);
        match self {
            ZidPin::New => format!("ZID {zid}… now pinned to {identity}"),
            ZidPin::Same => format!("ZID {zid}… pinned to {identity}"),
            ZidPin::Changed { previous } => {
                format!("ZID {zid}… was pinned to {previous}, now to {identity}: ask the peer why")
            }
        }
    }
}

/// ZRTP's persistent state: a [`SecretCache`] over a JSON file, or in memory.
pub struct ZrtpStore {
    zid: Zid,
    path: Option<PathBuf>,
    file: Mutex<CacheFile>,
}

impl std::fmt::Debug for ZrtpStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZrtpStore")
            .field("zid", &self.zid)
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// A ZRTP cache file that cannot be read or written.
#[derive(Debug, thiserror::Error)]
pub enum ZrtpStoreError {
    /// Reading or writing it failed.
    #[error(transparent)]
    File(#[from] SecretFileError),
    /// It is not a ZRTP cache.
    #[error("{path}: not a chaincall ZRTP cache: {reason}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

fn hex_zid(zid: &Zid) -> String {
    hex::encode(zid.0)
}

fn secret_hex(s: &RetainedSecret) -> String {
    hex::encode(s.dangerous_bytes())
}

fn secret_of(text: &str) -> Option<RetainedSecret> {
    let bytes = Zeroizing::new(hex::decode(text).ok()?);
    let arr: [u8; 32] = bytes.as_slice().try_into().ok()?;
    Some(RetainedSecret::new(arr))
}

impl ZrtpStore {
    /// A store in memory with a fresh ZID: lost when the process ends (tests, phones without a
    /// cache file).
    pub fn in_memory(randomness: &Randomness) -> Self {
        let zid = Zid(randomness.bytes());
        Self {
            zid,
            path: None,
            file: Mutex::new(CacheFile {
                zid: hex_zid(&zid),
                peers: BTreeMap::new(),
            }),
        }
    }

    /// Opens the cache file at `path`, creating it (with a new ZID from `randomness`) if it does
    /// not exist yet.
    pub fn open(path: &Path, randomness: &Randomness) -> Result<Self, ZrtpStoreError> {
        let format = |reason: String| ZrtpStoreError::Format {
            path: path.to_owned(),
            reason,
        };
        if !path.exists() {
            let store = Self::in_memory(randomness);
            let store = Self {
                path: Some(path.to_owned()),
                ..store
            };
            store.save()?;
            return Ok(store);
        }
        let text = read_secret_file(path)?;
        let file: CacheFile = serde_json::from_str(&text).map_err(|e| format(e.to_string()))?;
        let zid: [u8; 12] = hex::decode(&file.zid)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| format("zid is not 12 octets of hex".into()))?;
        Ok(Self {
            zid: Zid(zid),
            path: Some(path.to_owned()),
            file: Mutex::new(file),
        })
    }

    /// Our ZID.
    pub fn zid(&self) -> Zid {
        self.zid
    }

    /// The file, if the store has one.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// The identity pinned to `peer`, if a chain-bound call pinned one.
    pub fn pinned(&self, peer: &Zid) -> Option<String> {
        let file = self.file.lock().unwrap_or_else(PoisonError::into_inner);
        file.peers.get(&hex_zid(peer))?.identity.clone()
    }

    /// Pins `peer` to `identity` after a call whose chain binding held, and saves.
    pub fn pin(&self, peer: &Zid, identity: &IdentityName) -> ZidPin {
        let name = identity.canonical();
        let pin = {
            let mut file = self.file.lock().unwrap_or_else(PoisonError::into_inner);
            let entry = file.peers.entry(hex_zid(peer)).or_default();
            match entry.identity.replace(name.clone()) {
                None => ZidPin::New,
                Some(p) if p == name => ZidPin::Same,
                Some(previous) => ZidPin::Changed { previous },
            }
        };
        self.save_logged();
        pin
    }

    fn save(&self) -> Result<(), ZrtpStoreError> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let text = {
            let file = self.file.lock().unwrap_or_else(PoisonError::into_inner);
            Zeroizing::new(serde_json::to_string_pretty(&*file).map_err(|e| {
                ZrtpStoreError::Format {
                    path: path.clone(),
                    reason: e.to_string(),
                }
            })?)
        };
        write_secret_file(path, text.as_bytes(), Overwrite::Replace)?;
        Ok(())
    }

    /// The call is already secure when the cache is written: a failure is logged, not fatal.
    fn save_logged(&self) {
        if let Err(e) = self.save() {
            warn!(error = %e, "ZRTP cache not saved");
        }
    }
}

impl SecretCache for ZrtpStore {
    fn load(&self, peer: &Zid) -> CacheEntry {
        let file = self.file.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(e) = file.peers.get(&hex_zid(peer)) else {
            return CacheEntry::default();
        };
        CacheEntry {
            rs1: e.rs1.as_deref().and_then(secret_of),
            rs2: e.rs2.as_deref().and_then(secret_of),
            sas_verified: e.sas_verified,
        }
    }

    fn store(&self, peer: &Zid, entry: CacheEntry) {
        {
            let mut file = self.file.lock().unwrap_or_else(PoisonError::into_inner);
            let e = file.peers.entry(hex_zid(peer)).or_default();
            // The old secrets' text is wiped, not just dropped.
            e.rs1.zeroize();
            e.rs2.zeroize();
            e.rs1 = entry.rs1.as_ref().map(secret_hex);
            e.rs2 = entry.rs2.as_ref().map(secret_hex);
            e.sas_verified = entry.sas_verified;
        }
        self.save_logged();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn number(n: &str) -> IdentityName {
        IdentityName::Phone(n.parse().unwrap())
    }

    #[test]
    fn secrets_and_pins_survive_a_reopen_and_a_changed_pin_is_told() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("zrtp-cache.json");
        let store = ZrtpStore::open(&path, &Randomness::os()).unwrap();
        let peer = Zid([7; 12]);
        let entry = CacheEntry {
            rs1: Some(RetainedSecret::new([1; 32])),
            rs2: Some(RetainedSecret::new([2; 32])),
            sas_verified: true,
        };
        store.store(&peer, entry.clone());
        assert_eq!(store.pin(&peer, &number("+15550100001")), ZidPin::New);
        assert_eq!(store.pin(&peer, &number("+15550100001")), ZidPin::Same);

        let again = ZrtpStore::open(&path, &Randomness::os()).unwrap();
        assert_eq!(again.zid(), store.zid());
        assert_eq!(again.load(&peer), entry);
        assert_eq!(again.load(&Zid([8; 12])), CacheEntry::default());
        assert_eq!(
            again.pin(&peer, &number("+15550100002")),
            ZidPin::Changed {
                previous: "tel:+15550100001".into()
            }
        );
        assert_eq!(again.pinned(&peer).as_deref(), Some("tel:+15550100002"));
    }

    #[test]
    fn a_changed_pin_is_worded_with_the_identity_it_had() {
        let zid = "0707070707070707070707070707";
        let changed = ZidPin::Changed {
            previous: "tel:+15550100001".into(),
        };
        let text = changed.describe(zid, "+15550100002");
        assert_eq!(
            text,
            "ZID 07070707… was pinned to tel:+15550100001, now to +15550100002: ask the peer why"
        );
        assert_eq!(
            (ZidPin::New.name(), ZidPin::Same.name(), changed.name()),
            ("new", "same", "changed")
        );
        assert!(
            ZidPin::Same
                .describe("07", "+1")
                .contains("ZID 07… pinned to +1")
        );
    }

    #[test]
    fn a_file_that_is_not_a_cache_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("zrtp-cache.json");
        write_secret_file(&path, b"{\"zid\": \"00\"}", Overwrite::Refuse).unwrap();
        let e = ZrtpStore::open(&path, &Randomness::os())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("zrtp-cache.json: not a chaincall ZRTP cache"),
            "{e}"
        );
        assert!(e.contains("zid is not 12 octets"), "{e}");
    }
}
