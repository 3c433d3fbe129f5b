//! The phone's secrets at rest: identity key, wallet key and SIP password in one file, encrypted
//! with a passphrase (Argon2id → AES-256-GCM), written with mode 0600.
//!
//! Key file format (JSON): `{"number":…,"sealed":{"version":1,"kdf":"argon2id","m_kib":…,"t":…,
//! "p":…,"salt":hex,"nonce":hex,"ciphertext":hex}}`; the plaintext is the JSON of [`PhoneSecrets`].
//! The phone number is also the AEAD's associated data, so a file cannot be passed off as another
//! number's. A wrong passphrase and a modified file both fail authentication and say so; nothing is
//! overwritten without `force`.
//!
//! **Backups** ([`PhoneSecrets::export_backup`], [`PhoneSecrets::import_backup`]) are the same
//! sealing under a separate backup passphrase, in a file that says what it is:
//! `{"kind":"chaincall-phone-backup","version":1,"number":…,"sealed":{…}}`. The kind and version
//! are part of the associated data too, so a backup cannot be loaded as a key file (nor a key file
//! imported as a backup) even by editing the clear part; each is refused with a message naming the
//! command that reads it.
//!
//! **Key rotation** keeps the next identity key in the same file as a *pending rotation*
//! ([`PhoneSecrets::begin_rotation`]) before anything is sent on chain, so a crash between writing
//! it and the `rotateKey` transaction leaves both keys on disk: the old one stays in use until the
//! chain shows the new one, then [`PhoneSecrets::finish_rotation`] drops (and zeroizes) the old.

use std::path::Path;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use chaincall_chain::PrivateKeySigner;
use chaincall_identity::{
    Fingerprint, IdentityKey, IdentityName, PhoneNumber, PublicIdentityKey, Randomness,
};
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::error::PhoneError;

/// Argon2id memory cost in KiB (OWASP's second recommended set: 19 MiB, t = 2, p = 1).
const M_KIB: u32 = 19 * 1024;
const T_COST: u32 = 2;
const P_COST: u32 = 1;

/// The `kind` of a backup file.
const BACKUP_KIND: &str = "chaincall-phone-backup";
/// The backup format's version.
const BACKUP_VERSION: u32 = 1;

/// The phone's secrets.
pub struct PhoneSecrets {
    /// The E.164 number this phone is (or will be) registered as.
    pub number: String,
    /// The P-256 identity key whose public half goes on chain.
    pub identity: IdentityKey,
    /// The secp256k1 wallet that sends `addClient`.
    pub wallet: PrivateKeySigner,
    /// The SIP digest password, once onboarding provisioned it.
    pub sip_password: Option<Zeroizing<String>>,
    /// The next identity key while a rotation is under way (stored before `rotateKey` is sent).
    pending_identity: Option<IdentityKey>,
    /// Where new keys, salts and nonces come from (the OS CSPRNG unless a test seeds it).
    randomness: Randomness,
}

impl std::fmt::Debug for PhoneSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PhoneSecrets")
            .field("number", &self.number)
            .field("identity", &self.identity.public().fingerprint())
            .field("wallet", &self.wallet.address())
            .field("sip_password", &self.sip_password.as_ref().map(|_| "<set>"))
            .field(
                "pending_identity",
                &self
                    .pending_identity
                    .as_ref()
                    .map(|k| k.public().fingerprint()),
            )
            .finish()
    }
}

/// The sealed plaintext; its hex copies of the secrets are wiped when it is dropped.
#[derive(Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
struct Plain {
    number: String,
    identity_key: String,
    wallet_key: String,
    sip_password: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pending_identity_key: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct Sealed {
    version: u32,
    kdf: String,
    m_kib: u32,
    t: u32,
    p: u32,
    salt: String,
    nonce: String,
    ciphertext: String,
}

/// A sealed file as written: a key file has no `kind`; a backup names its kind and version.
#[derive(Serialize, Deserialize)]
struct Envelope {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    version: Option<u32>,
    number: String,
    sealed: Sealed,
}

/// Which of the two sealed files a file is meant to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FileKind {
    /// The phone's key file, under the phone's passphrase.
    KeyFile,
    /// An export, under the backup passphrase.
    Backup,
}

impl FileKind {
    /// What the error messages call it.
    fn noun(self) -> &'static str {
        match self {
            Self::KeyFile => "key file",
            Self::Backup => "backup",
        }
    }

    /// The AEAD's associated data: the number, and for a backup its kind and version first, so a
    /// ciphertext moved from one kind of file to the other does not authenticate.
    fn associated_data(self, number: &str) -> Vec<u8> {
        match self {
            Self::KeyFile => number.as_bytes().to_vec(),
            Self::Backup => format!("{BACKUP_KIND}/{BACKUP_VERSION}\0{number}").into_bytes(),
        }
    }

    /// The envelope's clear part for this kind.
    fn envelope(self, number: &str, sealed: Sealed) -> Envelope {
        let (kind, version) = match self {
            Self::KeyFile => (None, None),
            Self::Backup => (Some(BACKUP_KIND.to_owned()), Some(BACKUP_VERSION)),
        };
        Envelope {
            kind,
            version,
            number: number.to_owned(),
            sealed,
        }
    }

    /// Checks that `envelope` is this kind of file, pointing at the right command otherwise.
    fn check(self, envelope: &Envelope, path: &Path) -> Result<(), PhoneError> {
        let p = path.display();
        match (self, envelope.kind.as_deref(), envelope.version) {
            (Self::KeyFile, None, None) => Ok(()),
            (Self::Backup, Some(BACKUP_KIND), Some(BACKUP_VERSION)) => Ok(()),
            (Self::KeyFile, Some(BACKUP_KIND), _) => Err(PhoneError::Store(format!(
                "{p} is a phone backup, not a key file: restore it with `chaincall phone import \
                 --in {p}`"
            ))),
            (Self::Backup, None, None) => Err(PhoneError::Store(format!(
                "{p} is a phone key file, not a backup (backups are made by `chaincall phone \
                 export`)"
            ))),
            (Self::Backup, Some(BACKUP_KIND), version) => Err(PhoneError::Store(format!(
                "{p}: unsupported backup version {version:?} (this chaincall reads version \
                 {BACKUP_VERSION})"
            ))),
            (kind, other, _) => Err(PhoneError::Store(format!(
                "{p} is not a chaincall {} (kind {other:?})",
                kind.noun()
            ))),
        }
    }
}

fn derive(
    passphrase: &str,
    salt: &[u8],
    m: u32,
    t: u32,
    p: u32,
) -> Result<Zeroizing<[u8; 32]>, PhoneError> {
    let params = argon2::Params::new(m, t, p, Some(32))
        .map_err(|e| PhoneError::Store(format!("Argon2 parameters: {e}")))?;
    let a2 = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let mut key = Zeroizing::new([0u8; 32]);
    a2.hash_password_into(passphrase.as_bytes(), salt, &mut key[..])
        .map_err(|e| PhoneError::Store(format!("Argon2: {e}")))?;
    Ok(key)
}

/// Refuses passphrases too short to protect a file that can be attacked offline.
fn check_passphrase(passphrase: &str, what: &str) -> Result<(), PhoneError> {
    if passphrase.len() < 8 {
        return Err(PhoneError::Store(format!(
            "the {what} must be at least 8 characters"
        )));
    }
    Ok(())
}

/// Encrypts `plain` under `passphrase` (fresh salt and nonce from `randomness`) with `aad` as
/// associated data.
fn seal(
    plain: &[u8],
    passphrase: &str,
    aad: &[u8],
    randomness: &Randomness,
) -> Result<Sealed, PhoneError> {
    let salt: [u8; 16] = randomness.bytes();
    let nonce: [u8; 12] = randomness.bytes();
    let key = derive(passphrase, &salt, M_KIB, T_COST, P_COST)?;
    // Invariant: `derive` returns exactly 32 bytes, AES-256's key length.
    let cipher = Aes256Gcm::new_from_slice(&key[..]).expect("32-byte key");
    let ciphertext = cipher
        .encrypt(&Nonce::from(nonce), Payload { msg: plain, aad })
        .map_err(|_| PhoneError::Store("encryption failed".into()))?;
    Ok(Sealed {
        version: 1,
        kdf: "argon2id".into(),
        m_kib: M_KIB,
        t: T_COST,
        p: P_COST,
        salt: hex::encode(salt),
        nonce: hex::encode(nonce),
        ciphertext: hex::encode(ciphertext),
    })
}

/// Decrypts `s`; a wrong passphrase and a modified file are the same failure (AEAD tag).
fn open(
    s: &Sealed,
    passphrase: &str,
    aad: &[u8],
    kind: FileKind,
) -> Result<Zeroizing<Vec<u8>>, PhoneError> {
    let noun = kind.noun();
    if s.version != 1 || s.kdf != "argon2id" {
        return Err(PhoneError::Store(format!(
            "unsupported {noun} version {} / kdf {}",
            s.version, s.kdf
        )));
    }
    // Bound the work an attacker-supplied file can demand.
    if s.m_kib > 1024 * 1024 || s.t > 16 || s.p > 16 {
        return Err(PhoneError::Store(format!(
            "{noun} asks for excessive KDF cost"
        )));
    }
    let bad = |what: &str| PhoneError::Store(format!("{noun}: bad {what}"));
    let salt = hex::decode(&s.salt).map_err(|_| bad("salt"))?;
    let nonce = hex::decode(&s.nonce).map_err(|_| bad("nonce"))?;
    let ciphertext = hex::decode(&s.ciphertext).map_err(|_| bad("ciphertext"))?;
    let nonce: [u8; 12] = nonce.try_into().map_err(|_| bad("nonce length"))?;
    let key = derive(passphrase, &salt, s.m_kib, s.t, s.p)?;
    // Invariant: `derive` returns exactly 32 bytes, AES-256's key length.
    let cipher = Aes256Gcm::new_from_slice(&key[..]).expect("32-byte key");
    let plain = cipher
        .decrypt(
            &Nonce::from(nonce),
            Payload {
                msg: &ciphertext,
                aad,
            },
        )
        .map_err(|_| {
            PhoneError::Store(match kind {
                FileKind::KeyFile => "wrong passphrase, or the key file was modified".into(),
                FileKind::Backup => {
                    "wrong backup passphrase, or the backup was modified".to_owned()
                }
            })
        })?;
    Ok(Zeroizing::new(plain))
}

impl PhoneSecrets {
    /// Fresh keys for `number` (OS CSPRNG).
    pub fn generate(number: &str) -> Self {
        Self::generate_with(number, Randomness::os())
    }

    /// Fresh keys for `number` drawn from `randomness`, which also supplies later rotation keys
    /// and the salts and nonces of saved files (seeded in tests, so a run can be replayed).
    pub fn generate_with(number: &str, randomness: Randomness) -> Self {
        let identity = randomness.with(IdentityKey::generate_from);
        let wallet = loop {
            // A uniform 32-byte string is a valid secp256k1 key but with probability ~2^-128.
            let bytes = Zeroizing::new(randomness.bytes::<32>());
            if let Ok(wallet) = PrivateKeySigner::from_slice(bytes.as_ref()) {
                break wallet;
            }
        };
        Self {
            number: number.to_owned(),
            identity,
            wallet,
            sip_password: None,
            pending_identity: None,
            randomness,
        }
    }

    /// This phone's identity as the user compares it: the 30-digit fingerprint of `number` with
    /// our identity key (docs/safety-numbers.md), or the key's short fingerprint before the phone
    /// has a number.
    pub fn own_fingerprint(&self, number: Option<&PhoneNumber>) -> String {
        match number {
            Some(n) => Fingerprint::new(&IdentityName::Phone(n.clone()), &self.identity.public())
                .to_string(),
            None => self.identity.public().fingerprint(),
        }
    }

    /// The next identity key while a rotation is under way: stored, but not yet on chain.
    pub fn pending_rotation(&self) -> Option<&IdentityKey> {
        self.pending_identity.as_ref()
    }

    /// Starts a rotation: makes the next identity key (from the phone's randomness), or keeps the
    /// one already pending so a retried rotation sends the same key. Save the file before sending
    /// `rotateKey`.
    pub fn begin_rotation(&mut self) -> &IdentityKey {
        let randomness = &self.randomness;
        self.pending_identity
            .get_or_insert_with(|| randomness.with(IdentityKey::generate_from))
    }

    /// Ends a rotation the chain has recorded: the pending key becomes the identity key and the
    /// old key is dropped (its secret zeroized). Returns the old public key; `None` (nothing
    /// changed) when no rotation was pending.
    pub fn finish_rotation(&mut self) -> Option<PublicIdentityKey> {
        let next = self.pending_identity.take()?;
        let old = std::mem::replace(&mut self.identity, next);
        Some(old.public())
    }

    /// Drops a pending rotation that never reached the chain (its secret zeroized). Returns its
    /// public key, `None` when none was pending.
    pub fn discard_rotation(&mut self) -> Option<PublicIdentityKey> {
        self.pending_identity.take().map(|k| k.public())
    }

    /// The plaintext that is sealed, as JSON.
    fn plain_bytes(&self) -> Result<Zeroizing<Vec<u8>>, PhoneError> {
        let hex_key = |k: &IdentityKey| hex::encode(&k.dangerous_secret_bytes()[..]);
        let plain = Plain {
            number: self.number.clone(),
            identity_key: hex_key(&self.identity),
            wallet_key: hex::encode(self.wallet.to_bytes()),
            sip_password: self.sip_password.as_ref().map(|p| p.to_string()),
            pending_identity_key: self.pending_identity.as_ref().map(hex_key),
        };
        serde_json::to_vec(&plain)
            .map(Zeroizing::new)
            .map_err(|e| PhoneError::Store(e.to_string()))
    }

    /// Rebuilds the secrets from a decrypted plaintext.
    fn from_plain(bytes: &[u8], kind: FileKind) -> Result<Self, PhoneError> {
        let bad = |what: &str| PhoneError::Store(format!("{}: bad {what}", kind.noun()));
        let mut p: Plain = serde_json::from_slice(bytes).map_err(|_| bad("contents"))?;
        let identity = |hex_key: &str, what: &str| {
            let bytes = Zeroizing::new(hex::decode(hex_key).map_err(|_| bad(what))?);
            IdentityKey::from_secret_bytes(&bytes).map_err(|_| bad(what))
        };
        let w_bytes = Zeroizing::new(hex::decode(&p.wallet_key).map_err(|_| bad("wallet key"))?);
        Ok(Self {
            number: p.number.clone(),
            identity: identity(&p.identity_key, "identity key")?,
            wallet: PrivateKeySigner::from_slice(&w_bytes).map_err(|_| bad("wallet key"))?,
            sip_password: p.sip_password.take().map(Zeroizing::new),
            pending_identity: p
                .pending_identity_key
                .as_deref()
                .map(|k| identity(k, "pending identity key"))
                .transpose()?,
            randomness: Randomness::os(),
        })
    }

    /// Seals the secrets as `kind` under `passphrase` and writes them to `path` (mode 0600).
    fn write_sealed(
        &self,
        path: &Path,
        passphrase: &str,
        force: bool,
        kind: FileKind,
    ) -> Result<(), PhoneError> {
        if path.exists() && !force {
            return Err(PhoneError::Store(match kind {
                FileKind::KeyFile => format!(
                    "{} exists; refusing to overwrite a phone's keys",
                    path.display()
                ),
                FileKind::Backup => format!(
                    "{} exists; refusing to overwrite it (give --force to replace it)",
                    path.display()
                ),
            }));
        }
        let sealed = seal(
            &self.plain_bytes()?,
            passphrase,
            &kind.associated_data(&self.number),
            &self.randomness,
        )?;
        let envelope = kind.envelope(&self.number, sealed);
        let text = serde_json::to_string_pretty(&envelope)
            .map_err(|e| PhoneError::Store(e.to_string()))?;
        let overwrite = if force {
            chaincall_identity::Overwrite::Replace
        } else {
            // Created exclusively: a file that appeared since the check above is not replaced.
            chaincall_identity::Overwrite::Refuse
        };
        chaincall_identity::write_secret_file(path, format!("{text}\n").as_bytes(), overwrite)
            .map_err(|e| PhoneError::Store(chaincall_io::ErrorChain(&e).to_string()))
    }

    /// Reads and decrypts the file at `path`, which must be a `kind` file.
    fn read_sealed(path: &Path, passphrase: &str, kind: FileKind) -> Result<Self, PhoneError> {
        // Refused when group or world readable (the message says `chmod 600 PATH`).
        let text = chaincall_identity::read_secret_file(path)
            .map_err(|e| PhoneError::Store(chaincall_io::ErrorChain(&e).to_string()))?;
        let envelope: Envelope = serde_json::from_str(&text).map_err(|e| {
            PhoneError::Store(format!(
                "{} is not a chaincall {}: {e}",
                path.display(),
                kind.noun()
            ))
        })?;
        kind.check(&envelope, path)?;
        let plain = open(
            &envelope.sealed,
            passphrase,
            &kind.associated_data(&envelope.number),
            kind,
        )?;
        Self::from_plain(&plain, kind)
    }

    /// Encrypts to `path` (mode 0600). Refuses to replace an existing file unless `force`.
    pub fn save(&self, path: &Path, passphrase: &str, force: bool) -> Result<(), PhoneError> {
        check_passphrase(passphrase, "passphrase")?;
        self.write_sealed(path, passphrase, force, FileKind::KeyFile)
    }

    /// Decrypts the key file at `path`.
    pub fn load(path: &Path, passphrase: &str) -> Result<Self, PhoneError> {
        Self::read_sealed(path, passphrase, FileKind::KeyFile)
    }

    /// Writes an encrypted backup of every secret (identity, wallet, SIP password, a pending
    /// rotation) to `path`, sealed under `backup_passphrase`, mode 0600. Refuses to replace an
    /// existing file unless `force`.
    pub fn export_backup(
        &self,
        path: &Path,
        backup_passphrase: &str,
        force: bool,
    ) -> Result<(), PhoneError> {
        check_passphrase(backup_passphrase, "backup passphrase")?;
        self.write_sealed(path, backup_passphrase, force, FileKind::Backup)
    }

    /// Reads a backup written by [`export_backup`](Self::export_backup). A wrong backup passphrase
    /// and a modified file both fail; a key file given as a backup is refused.
    pub fn import_backup(path: &Path, backup_passphrase: &str) -> Result<Self, PhoneError> {
        Self::read_sealed(path, backup_passphrase, FileKind::Backup)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn a_world_readable_key_file_is_refused_with_the_fix() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("phone.key");
        PhoneSecrets::generate("+15551230002")
            .save(&path, "correct horse", false)
            .unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = PhoneSecrets::load(&path, "correct horse")
            .unwrap_err()
            .to_string();
        assert!(err.contains("mode 0644"), "{err}");
        assert!(
            err.contains(&format!("chmod 600 {}", path.display())),
            "{err}"
        );
        // Saving again (with --force) replaces it with a private file.
        PhoneSecrets::generate("+15551230002")
            .save(&path, "correct horse", true)
            .unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        PhoneSecrets::load(&path, "correct horse").unwrap();
    }

    #[test]
    fn round_trip_wrong_passphrase_and_tampering() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("phone.key");
        let mut s = PhoneSecrets::generate("+15551230001");
        s.sip_password = Some(Zeroizing::new("pw".into()));
        s.save(&path, "correct horse", false).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains(&hex::encode(&s.identity.dangerous_secret_bytes()[..])));
        let back = PhoneSecrets::load(&path, "correct horse").unwrap();
        assert_eq!(back.identity.public(), s.identity.public());
        assert_eq!(back.wallet.address(), s.wallet.address());
        assert_eq!(back.sip_password.as_deref().map(String::as_str), Some("pw"));

        let err = PhoneSecrets::load(&path, "wrong horse").unwrap_err();
        assert!(err.to_string().contains("wrong passphrase"), "{err}");
        assert!(
            s.save(&path, "correct horse", false).is_err(),
            "overwrote keys"
        );

        // Another number in the clear part: the associated data no longer matches.
        let swapped = text.replacen("+15551230001", "+15551230002", 1);
        std::fs::write(&path, swapped).unwrap();
        assert!(PhoneSecrets::load(&path, "correct horse").is_err());
    }

    /// Keys, rotation keys, salts and nonces all come from the phone's source: with one seed, two
    /// phones save the very same file; with another seed, other keys and another file.
    #[test]
    fn a_seeded_phone_saves_the_same_file_twice() {
        use rand_chacha::ChaCha20Rng;
        use rand_core::SeedableRng;
        let dir = tempfile::tempdir().unwrap();
        let save = |seed: u8, name: &str| {
            let randomness = Randomness::seeded(ChaCha20Rng::from_seed([seed; 32]));
            let mut s = PhoneSecrets::generate_with("+15551230004", randomness);
            s.begin_rotation();
            let path = dir.path().join(name);
            s.save(&path, "correct horse", false).unwrap();
            let back = PhoneSecrets::load(&path, "correct horse").unwrap();
            assert_eq!(back.identity.public(), s.identity.public());
            (std::fs::read(&path).unwrap(), s.wallet.address())
        };
        let (file, wallet) = save(5, "a.key");
        assert_eq!((file.clone(), wallet), save(5, "b.key"));
        let (other, other_wallet) = save(6, "c.key");
        assert_ne!(file, other);
        assert_ne!(wallet, other_wallet);
    }

    /// A phone with every secret set, a pending rotation included.
    fn full_phone() -> PhoneSecrets {
        let mut s = PhoneSecrets::generate("+15551230003");
        s.sip_password = Some(Zeroizing::new("sip secret".into()));
        s.begin_rotation();
        s
    }

    fn assert_same(a: &PhoneSecrets, b: &PhoneSecrets) {
        assert_eq!(a.number, b.number);
        assert_eq!(a.identity.public(), b.identity.public());
        assert_eq!(a.wallet.address(), b.wallet.address());
        assert_eq!(
            a.sip_password.as_deref().map(String::as_str),
            b.sip_password.as_deref().map(String::as_str)
        );
        assert_eq!(
            a.pending_rotation().map(IdentityKey::public),
            b.pending_rotation().map(IdentityKey::public)
        );
    }

    #[test]
    fn a_backup_round_trips_under_its_own_passphrase_and_is_not_a_key_file() {
        let dir = tempfile::tempdir().unwrap();
        let backup = dir.path().join("phone.backup");
        let s = full_phone();
        s.export_backup(&backup, "backup passphrase", false)
            .unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&backup).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let text = std::fs::read_to_string(&backup).unwrap();
        assert!(
            text.contains("\"kind\": \"chaincall-phone-backup\""),
            "{text}"
        );
        assert!(!text.contains(&hex::encode(s.wallet.to_bytes())));
        assert_same(
            &PhoneSecrets::import_backup(&backup, "backup passphrase").unwrap(),
            &s,
        );

        // Never overwritten without force; with force, replaced.
        let err = s
            .export_backup(&backup, "backup passphrase", false)
            .unwrap_err();
        assert!(err.to_string().contains("--force"), "{err}");
        assert_eq!(std::fs::read_to_string(&backup).unwrap(), text);
        s.export_backup(&backup, "backup passphrase", true).unwrap();
        assert_ne!(
            std::fs::read_to_string(&backup).unwrap(),
            text,
            "fresh salt"
        );

        // Short backup passphrases are refused before anything is written.
        let other = dir.path().join("short.backup");
        assert!(s.export_backup(&other, "short", false).is_err());
        assert!(!other.exists());

        // A backup is not a key file, and a key file is not a backup: each names the right command.
        let err = PhoneSecrets::load(&backup, "backup passphrase").unwrap_err();
        assert!(err.to_string().contains("phone import"), "{err}");
        let key_file = dir.path().join("phone.key");
        s.save(&key_file, "backup passphrase", false).unwrap();
        let err = PhoneSecrets::import_backup(&key_file, "backup passphrase").unwrap_err();
        assert!(err.to_string().contains("not a backup"), "{err}");
        // Relabelling the clear part does not help: the kind is in the associated data.
        let relabelled = std::fs::read_to_string(&backup)
            .unwrap()
            .replace("\"kind\": \"chaincall-phone-backup\",", "")
            .replacen("\"version\": 1,", "", 1);
        std::fs::write(&key_file, relabelled).unwrap();
        let err = PhoneSecrets::load(&key_file, "backup passphrase").unwrap_err();
        assert!(err.to_string().contains("wrong passphrase"), "{err}");
    }

    #[test]
    fn a_wrong_backup_passphrase_or_a_flipped_byte_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let backup = dir.path().join("phone.backup");
        full_phone()
            .export_backup(&backup, "backup passphrase", false)
            .unwrap();
        let err = PhoneSecrets::import_backup(&backup, "another passphrase").unwrap_err();
        assert!(err.to_string().contains("wrong backup passphrase"), "{err}");
        let text = std::fs::read_to_string(&backup).unwrap();
        let at = text.find("\"ciphertext\": \"").unwrap() + 20;
        let mut bytes = text.into_bytes();
        bytes[at] = if bytes[at] == b'0' { b'1' } else { b'0' };
        std::fs::write(&backup, &bytes).unwrap();
        let err = PhoneSecrets::import_backup(&backup, "backup passphrase").unwrap_err();
        assert!(err.to_string().contains("backup was modified"), "{err}");
        // Hostile clear parts are errors, not panics.
        for junk in ["", "{}", "[1]", "{\"kind\":7}", "\u{0}"] {
            std::fs::write(&backup, junk).unwrap();
            assert!(PhoneSecrets::import_backup(&backup, "backup passphrase").is_err());
        }
    }

    #[test]
    fn a_pending_rotation_is_stored_until_finished_or_discarded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("phone.key");
        let mut s = PhoneSecrets::generate("+15551230004");
        let old = s.identity.public();
        assert!(s.finish_rotation().is_none(), "nothing pending");
        let next = s.begin_rotation().public();
        assert_ne!(next, old);
        // Beginning again keeps the same next key, so a retry sends what was stored.
        assert_eq!(s.begin_rotation().public(), next);
        s.save(&path, "correct horse", false).unwrap();

        let mut back = PhoneSecrets::load(&path, "correct horse").unwrap();
        assert_eq!(back.identity.public(), old, "the old key stays in use");
        assert_eq!(
            back.pending_rotation().map(IdentityKey::public),
            Some(next.clone())
        );
        assert_eq!(back.finish_rotation(), Some(old.clone()));
        assert_eq!(back.identity.public(), next);
        assert!(back.pending_rotation().is_none());

        let mut again = PhoneSecrets::load(&path, "correct horse").unwrap();
        assert_eq!(again.discard_rotation(), Some(next.clone()));
        assert_eq!(again.identity.public(), old);
        again.save(&path, "correct horse", true).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains("pending"), "{text}");
        assert!(
            PhoneSecrets::load(&path, "correct horse")
                .unwrap()
                .pending_rotation()
                .is_none()
        );
    }
}
