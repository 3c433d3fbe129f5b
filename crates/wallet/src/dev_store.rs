//! A development app store (`chaincall store …`): a store key pair, and receipts in Google Play's
//! format (purchase JSON + base64 `SHA1withRSA` signature) signed with it, so tests and demos go
//! through the wallet server's real verification path.
//!
//! Secrets stay in files: the private key is written with mode 0600 and never overwritten, and the
//! purchase token (the SIP password derives from it) is read from a 0600 file or made at random,
//! never taken on a command line.

use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use crate::receipt::{Purchase, Receipt, StoreKey, StoreKeyError, random_order_id};

/// Why the development store could not make a key or a receipt.
#[derive(Debug, thiserror::Error)]
pub enum DevStoreError {
    /// The private key file exists already.
    #[error("{} exists; refusing to overwrite a key", .0.display())]
    KeyExists(PathBuf),
    /// A file could not be written.
    #[error("cannot write {}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// A secret file could not be read (or others may read it).
    #[error("cannot read {what}{}", path.display())]
    Read {
        /// What the file is, with a trailing space ("" for the store key, as it is named by path).
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: chaincall_identity::SecretFileError,
    },
    /// The token file's first line is empty.
    #[error("the token file {} is empty", .0.display())]
    EmptyToken(PathBuf),
    /// The store key could not be made, read or used.
    #[error(transparent)]
    Key(#[from] StoreKeyError),
}

/// Makes an RSA-2048 store key: the private key as PKCS#8 PEM at `private_key` (mode 0600; an
/// existing file is refused) and the public key as base64 X.509 SubjectPublicKeyInfo at
/// `public_key` (what the Play console shows; the wallet server's `store.public_key`).
pub fn keygen(private_key: &Path, public_key: &Path) -> Result<(), DevStoreError> {
    if private_key.exists() {
        return Err(DevStoreError::KeyExists(private_key.to_owned()));
    }
    let key = StoreKey::generate()?;
    let pem = key.dangerous_to_pkcs8_pem()?;
    write(
        private_key,
        crate::server::write_secret(private_key, pem.trim_end()),
    )?;
    let public = format!("{}\n", key.public_key_base64()?);
    write(public_key, std::fs::write(public_key, public))
}

/// What a receipt is for.
#[derive(Debug, Clone)]
pub struct ReceiptRequest {
    /// The app's package name.
    pub package: String,
    /// The product id.
    pub product: String,
    /// The order id (default: a random `GPA.` id).
    pub order_id: Option<String>,
    /// Purchase state: 0 purchased, 1 cancelled, 2 pending.
    pub state: i64,
}

/// Signs a receipt for `request`, purchased now, with the store key in the PEM file `store_key`;
/// the purchase token is the first line of `token_file` (mode 0600), or random.
pub fn issue_receipt(
    store_key: &Path,
    token_file: Option<&Path>,
    request: ReceiptRequest,
) -> Result<Receipt, DevStoreError> {
    let read = |what, path: &Path| {
        chaincall_identity::read_secret_file(path).map_err(|source| DevStoreError::Read {
            what,
            path: path.to_owned(),
            source,
        })
    };
    // Refused when group or world readable.
    let pem = read("", store_key)?;
    let token = match token_file {
        Some(path) => {
            let text = read("the token file ", path)?;
            let token = Zeroizing::new(text.lines().next().unwrap_or("").trim().to_owned());
            if token.is_empty() {
                return Err(DevStoreError::EmptyToken(path.to_owned()));
            }
            token
        }
        None => random_token(),
    };
    let key = StoreKey::from_pkcs8_pem(&pem)?;
    let purchase_time = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    Ok(key.issue(&Purchase {
        order_id: request.order_id.unwrap_or_else(random_order_id),
        package_name: request.package,
        product_id: request.product,
        purchase_time,
        purchase_state: request.state,
        purchase_token: token.to_string().into(),
        quantity: 1,
        acknowledged: false,
    }))
}

/// A random purchase token (32 bytes from the OS CSPRNG, hex), as a store would make one.
fn random_token() -> Zeroizing<String> {
    let mut bytes = Zeroizing::new([0u8; 32]);
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut bytes[..]);
    Zeroizing::new(hex::encode(&bytes[..]))
}

fn write(path: &Path, result: std::io::Result<()>) -> Result<(), DevStoreError> {
    result.map_err(|source| DevStoreError::Write {
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    fn request() -> ReceiptRequest {
        ReceiptRequest {
            package: "org.example.app".into(),
            product: "number".into(),
            order_id: Some("GPA.1".into()),
            state: 0,
        }
    }

    #[test]
    fn a_receipt_from_the_dev_store_verifies_with_its_public_key() {
        let dir = tempfile::tempdir().unwrap();
        let (private, public) = (dir.path().join("store.pem"), dir.path().join("store.b64"));
        keygen(&private, &public).unwrap();
        let mode = std::fs::metadata(&private).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let err = keygen(&private, &public).unwrap_err().to_string();
        assert!(
            err.ends_with("exists; refusing to overwrite a key"),
            "{err}"
        );

        let token = dir.path().join("token");
        let refuse = chaincall_identity::Overwrite::Refuse;
        chaincall_identity::write_secret_file(&token, b"tok-123\nrest", refuse).unwrap();
        let receipt = issue_receipt(&private, Some(&token), request()).unwrap();
        let public_b64 = std::fs::read_to_string(&public).unwrap();
        let verifier =
            crate::receipt::ReceiptPolicy::new(public_b64.trim(), "org.example.app", "number")
                .unwrap();
        let purchase = verifier.verify(&receipt).unwrap();
        assert_eq!(purchase.purchase_token, "tok-123");
        assert_eq!(purchase.order_id, "GPA.1");
        let random = issue_receipt(&private, None, request()).unwrap();
        assert_eq!(verifier.verify(&random).unwrap().purchase_token.len(), 64);

        chaincall_identity::write_secret_file(
            &token,
            b"\n",
            chaincall_identity::Overwrite::Replace,
        )
        .unwrap();
        let err = issue_receipt(&private, Some(&token), request()).unwrap_err();
        assert!(matches!(err, DevStoreError::EmptyToken(_)), "{err}");
    }
}
