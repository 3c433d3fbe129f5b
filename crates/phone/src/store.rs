//! The phone's secrets at rest: identity key, wallet key and SIP password in one file, encrypted
//! with a passphrase (Argon2id → AES-256-GCM), written with mode 0600.
//!
//! File format (JSON): `{"version":1,"kdf":"argon2id","m_kib":…,"t":…,"p":…,"salt":hex,
//! "nonce":hex,"ciphertext":hex}`; the plaintext is the JSON of [`PhoneSecrets`]. The phone
//! number is also the AEAD's associated data, so a file cannot be passed off as another number's.
//! A wrong passphrase and a modified file both fail authentication and say so; nothing is
//! overwritten without `force`.

use std::path::Path;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use chaincall_chain::PrivateKeySigner;
use chaincall_identity::IdentityKey;
use rand_core::{OsRng, RngCore};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::error::PhoneError;

/// Argon2id memory cost in KiB (OWASP's second recommended set: 19 MiB, t = 2, p = 1).
const M_KIB: u32 = 19 * 1024;
const T_COST: u32 = 2;
const P_COST: u32 = 1;

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
}

impl std::fmt::Debug for PhoneSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PhoneSecrets")
            .field("number", &self.number)
            .field("identity", &self.identity.public().fingerprint())
            .field("wallet", &self.wallet.address())
            .field("sip_password", &self.sip_password.as_ref().map(|_| "<set>"))
            .finish()
    }
}

#[derive(Serialize, Deserialize)]
struct Plain {
    number: String,
    identity_key: String,
    wallet_key: String,
    sip_password: Option<String>,
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

impl PhoneSecrets {
    /// Fresh keys for `number` (OS CSPRNG).
    pub fn generate(number: &str) -> Self {
        Self {
            number: number.to_owned(),
            identity: IdentityKey::generate(),
            wallet: PrivateKeySigner::random(),
            sip_password: None,
        }
    }

    /// Encrypts to `path` (mode 0600). Refuses to replace an existing file unless `force`.
    pub fn save(&self, path: &Path, passphrase: &str, force: bool) -> Result<(), PhoneError> {
        if passphrase.len() < 8 {
            return Err(PhoneError::Store(
                "the passphrase must be at least 8 characters".into(),
            ));
        }
        if path.exists() && !force {
            return Err(PhoneError::Store(format!(
                "{} exists; refusing to overwrite a phone's keys",
                path.display()
            )));
        }
        let plain = Zeroizing::new(
            serde_json::to_vec(&Plain {
                number: self.number.clone(),
                identity_key: hex::encode(&self.identity.dangerous_secret_bytes()[..]),
                wallet_key: hex::encode(self.wallet.to_bytes()),
                sip_password: self.sip_password.as_ref().map(|p| p.to_string()),
            })
            .map_err(|e| PhoneError::Store(e.to_string()))?,
        );
        let mut salt = [0u8; 16];
        let mut nonce = [0u8; 12];
        OsRng.fill_bytes(&mut salt);
        OsRng.fill_bytes(&mut nonce);
        let key = derive(passphrase, &salt, M_KIB, T_COST, P_COST)?;
        let cipher = Aes256Gcm::new_from_slice(&key[..]).expect("32-byte key");
        let ciphertext = cipher
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: &plain,
                    aad: self.number.as_bytes(),
                },
            )
            .map_err(|_| PhoneError::Store("encryption failed".into()))?;
        let sealed = Sealed {
            version: 1,
            kdf: "argon2id".into(),
            m_kib: M_KIB,
            t: T_COST,
            p: P_COST,
            salt: hex::encode(salt),
            nonce: hex::encode(nonce),
            ciphertext: hex::encode(ciphertext),
        };
        let mut text =
            serde_json::to_string_pretty(&sealed).map_err(|e| PhoneError::Store(e.to_string()))?;
        // The number in clear too, so `load` can rebuild the associated data.
        text = format!(
            "{{\"number\":{},\"sealed\":{text}}}\n",
            serde_json::Value::String(self.number.clone())
        );
        write_private(path, text.as_bytes())?;
        Ok(())
    }

    /// Decrypts the file at `path`.
    pub fn load(path: &Path, passphrase: &str) -> Result<Self, PhoneError> {
        // Refused when group or world readable (the message says `chmod 600 PATH`).
        let text = chaincall_identity::read_secret_file(path)
            .map_err(|e| PhoneError::Store(e.to_string()))?;
        #[derive(Deserialize)]
        struct File {
            number: String,
            sealed: Sealed,
        }
        let file: File = serde_json::from_str(&text).map_err(|e| {
            PhoneError::Store(format!(
                "{} is not a chaincall key file: {e}",
                path.display()
            ))
        })?;
        let s = file.sealed;
        if s.version != 1 || s.kdf != "argon2id" {
            return Err(PhoneError::Store(format!(
                "unsupported key file version {} / kdf {}",
                s.version, s.kdf
            )));
        }
        // Bound the work an attacker-supplied file can demand.
        if s.m_kib > 1024 * 1024 || s.t > 16 || s.p > 16 {
            return Err(PhoneError::Store(
                "key file asks for excessive KDF cost".into(),
            ));
        }
        let bad = |what: &str| PhoneError::Store(format!("key file: bad {what}"));
        let salt = hex::decode(&s.salt).map_err(|_| bad("salt"))?;
        let nonce = hex::decode(&s.nonce).map_err(|_| bad("nonce"))?;
        let ciphertext = hex::decode(&s.ciphertext).map_err(|_| bad("ciphertext"))?;
        let nonce: [u8; 12] = nonce.try_into().map_err(|_| bad("nonce length"))?;
        let key = derive(passphrase, &salt, s.m_kib, s.t, s.p)?;
        let cipher = Aes256Gcm::new_from_slice(&key[..]).expect("32-byte key");
        let plain = Zeroizing::new(
            cipher
                .decrypt(
                    &Nonce::from(nonce),
                    Payload {
                        msg: &ciphertext,
                        aad: file.number.as_bytes(),
                    },
                )
                .map_err(|_| {
                    PhoneError::Store("wrong passphrase, or the key file was modified".into())
                })?,
        );
        let p: Plain = serde_json::from_slice(&plain).map_err(|_| bad("contents"))?;
        let id_bytes =
            Zeroizing::new(hex::decode(&p.identity_key).map_err(|_| bad("identity key"))?);
        let w_bytes = Zeroizing::new(hex::decode(&p.wallet_key).map_err(|_| bad("wallet key"))?);
        Ok(Self {
            number: p.number,
            identity: IdentityKey::from_secret_bytes(&id_bytes).map_err(|_| bad("identity key"))?,
            wallet: PrivateKeySigner::from_slice(&w_bytes).map_err(|_| bad("wallet key"))?,
            sip_password: p.sip_password.map(Zeroizing::new),
        })
    }
}

/// Writes the key file: created 0600, written beside it and renamed over it.
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), PhoneError> {
    chaincall_identity::write_secret_file(path, bytes, chaincall_identity::Overwrite::Replace)
        .map_err(|e| PhoneError::Store(e.to_string()))
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
}
