//! The key file the configuration names (`key_file`): opened only when it holds the keys of the
//! config's number, written fresh without replacing another phone's keys, and restored from a
//! backup only over the same identity unless forced. The sealing itself is [`crate::store`]'s.

use std::path::{Path, PathBuf};

use chaincall_identity::PhoneNumber;

use crate::config_file::{ConfigError, PhoneFileConfig};
use crate::error::PhoneError;
use crate::store::PhoneSecrets;

/// Why the key file could not be opened, written or replaced.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyFileError {
    /// There is no key file yet.
    #[error("no key file at {}: run `chaincall phone init` first", .0.display())]
    Missing(PathBuf),
    /// The key file exists where a new one was to be made.
    #[error("{} exists; refusing to overwrite a phone's keys (move it away first)", .0.display())]
    Exists(PathBuf),
    /// The key file could not be opened (wrong passphrase, damaged file).
    #[error("cannot open the phone's keys in {}", path.display())]
    Open {
        /// The key file.
        path: PathBuf,
        /// Why.
        #[source]
        source: PhoneError,
    },
    /// The keys (in the key file or a backup) belong to another number than the config's.
    #[error("{} holds the keys of {holds:?}, but the config's number is {config}", path.display())]
    OtherNumber {
        /// The key file or backup.
        path: PathBuf,
        /// The number the keys are sealed to.
        holds: String,
        /// The config's number, and for a backup the config file in brackets.
        config: String,
    },
    /// The key file holds another identity than the backup being restored.
    #[error(
        "{} holds another identity (key {existing_key}, wallet {existing_wallet}) than the backup \
         (key {backup_key}, wallet {backup_wallet}): refusing to overwrite it; move it away or \
         give --force", path.display()
    )]
    OtherIdentity {
        /// The key file.
        path: PathBuf,
        /// Its key's short fingerprint.
        existing_key: String,
        /// Its wallet.
        existing_wallet: String,
        /// The backup's key's short fingerprint.
        backup_key: String,
        /// The backup's wallet.
        backup_wallet: String,
    },
    /// The key file to be replaced cannot be opened with the phone's passphrase.
    #[error(
        "{} exists and cannot be opened with the phone's passphrase: refusing to \
         overwrite it; move it away or give --force", path.display()
    )]
    Unopenable {
        /// The key file.
        path: PathBuf,
        /// Why it did not open.
        source: PhoneError,
    },
    /// The key file's folder could not be made.
    #[error("cannot create {}", path.display())]
    CreateDir {
        /// The folder.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The key file could not be written.
    #[error("cannot write {}", path.display())]
    Write {
        /// The key file.
        path: PathBuf,
        /// Why.
        #[source]
        source: PhoneError,
    },
    /// The config could not be updated with the restored number.
    #[error(transparent)]
    Config(#[from] ConfigError),
}

impl PhoneFileConfig {
    /// Opens the key file with `pass`; refused when it holds another number's keys.
    pub fn load_secrets(&self, pass: &str) -> Result<PhoneSecrets, KeyFileError> {
        let path = &self.key_file;
        if !path.exists() {
            return Err(KeyFileError::Missing(path.clone()));
        }
        let secrets = PhoneSecrets::load(path, pass).map_err(|source| KeyFileError::Open {
            path: path.clone(),
            source,
        })?;
        if secrets.number != self.number_text() {
            return Err(KeyFileError::OtherNumber {
                path: path.clone(),
                holds: secrets.number.clone(),
                config: format!("{:?}", self.number_text()),
            });
        }
        Ok(secrets)
    }

    /// Writes `secrets` into the key file (creating its folder), replacing a file that is there
    /// only when `replace`.
    pub fn write_secrets(
        &self,
        secrets: &PhoneSecrets,
        pass: &str,
        replace: bool,
    ) -> Result<(), KeyFileError> {
        let path = &self.key_file;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| KeyFileError::CreateDir {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        secrets
            .save(path, pass, replace)
            .map_err(|source| KeyFileError::Write {
                path: path.clone(),
                source,
            })
    }

    /// Refuses to make a key file where one exists: it would lose that phone's keys.
    pub fn ensure_no_key_file(&self) -> Result<(), KeyFileError> {
        if self.key_file.exists() {
            return Err(KeyFileError::Exists(self.key_file.clone()));
        }
        Ok(())
    }

    /// Restores `restored` (read from the backup at `backup`) into the key file, sealed under
    /// `pass`. Refused when the backup is another number's, or when the key file holds another
    /// identity (or does not open) and not `force`. A config without a number takes the backup's.
    pub fn import_secrets(
        &mut self,
        backup: &Path,
        restored: &PhoneSecrets,
        pass: &str,
        force: bool,
    ) -> Result<(), KeyFileError> {
        if self.number.is_some() && restored.number != self.number_text() {
            return Err(KeyFileError::OtherNumber {
                path: backup.to_path_buf(),
                holds: restored.number.clone(),
                config: format!("{} ({})", self.number_text(), self.path.display()),
            });
        }
        let path = &self.key_file;
        let replacing = path.exists();
        if replacing && !force {
            // Replacing the very same identity (say, to undo a broken edit) is harmless; replacing
            // another would lose its keys, so it needs `force`.
            match PhoneSecrets::load(path, pass) {
                Ok(existing)
                    if existing.identity.public() == restored.identity.public()
                        && existing.wallet.address() == restored.wallet.address() => {}
                Ok(existing) => {
                    return Err(KeyFileError::OtherIdentity {
                        path: path.clone(),
                        existing_key: existing.identity.public().fingerprint(),
                        existing_wallet: existing.wallet.address().to_string(),
                        backup_key: restored.identity.public().fingerprint(),
                        backup_wallet: restored.wallet.address().to_string(),
                    });
                }
                Err(source) => {
                    return Err(KeyFileError::Unopenable {
                        path: path.clone(),
                        source,
                    });
                }
            }
        }
        self.write_secrets(restored, pass, replacing)?;
        if self.number.is_none()
            && let Ok(n) = PhoneNumber::parse(&restored.number)
        {
            self.store_number(n)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A config in `dir` for `+15550100001` whose key file is `phone.key` there.
    fn config(dir: &Path) -> PhoneFileConfig {
        let text = "number = \"+15550100001\"\nrpc_url = \"http://127.0.0.1:8545\"\ncontract = \
                    \"0x5FbDB2315678afecb367f032d93F642f64180aa3\"\n[sip]\naddr = \"127.0.0.1:5061\"\n\
                    domain = \"sip.example.org\"\n";
        let path = dir.join("phone.toml");
        std::fs::write(&path, text).unwrap();
        PhoneFileConfig::load(&path).unwrap()
    }

    #[test]
    fn a_backup_of_another_identity_never_replaces_the_key_file_unless_forced() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = config(dir.path());
        let pass = "correct horse battery";
        let e = cfg.load_secrets(pass).unwrap_err().to_string();
        assert!(e.contains("no key file") && e.contains("phone init"), "{e}");
        let mine = PhoneSecrets::generate("+15550100001");
        cfg.write_secrets(&mine, pass, false).unwrap();
        assert!(cfg.ensure_no_key_file().is_err());
        let before = std::fs::read(&cfg.key_file).unwrap();

        let backup = dir.path().join("backup");
        let other = PhoneSecrets::generate("+15550100001");
        let e = cfg
            .import_secrets(&backup, &other, pass, false)
            .unwrap_err();
        assert!(e.to_string().contains("holds another identity"), "{e}");
        let wrong = cfg.import_secrets(&backup, &mine, "another passphrase", false);
        assert!(
            matches!(wrong, Err(KeyFileError::Unopenable { .. })),
            "{wrong:?}"
        );
        let foreign = PhoneSecrets::generate("+15550100002");
        let e = cfg
            .import_secrets(&backup, &foreign, pass, true)
            .unwrap_err();
        assert!(
            e.to_string().contains("holds the keys of \"+15550100002\""),
            "{e}"
        );
        assert_eq!(std::fs::read(&cfg.key_file).unwrap(), before);

        // The same identity may be restored over itself; another only with `force`.
        cfg.import_secrets(&backup, &mine, pass, false).unwrap();
        cfg.import_secrets(&backup, &other, pass, true).unwrap();
        let now = cfg.load_secrets(pass).unwrap();
        assert_eq!(now.identity.public(), other.identity.public());
    }
}
