//! Store purchase receipts in Google Play's format, verified exactly as Play's sample
//! `Security.verifyPurchase` does, plus the signing side for development and tests.
//!
//! A Play purchase arrives as two strings: the purchase JSON exactly as the store signed it
//! (`Purchase.getOriginalJson()`, formerly `INAPP_PURCHASE_DATA`) and a base64 signature over its
//! bytes (`Purchase.getSignature()`, formerly `INAPP_DATA_SIGNATURE`). The signature is
//! `SHA1withRSA` — RSASSA-PKCS1-v1_5 with SHA-1 (RFC 8017 §8.2) — by the app's license key, whose
//! public half the developer console shows as base64 of an X.509 `SubjectPublicKeyInfo`.
//!
//! Verification follows Play's sample code step by step:
//! 1. empty purchase data, key or signature → refused;
//! 2. the key is decoded from base64 DER `SubjectPublicKeyInfo` (`X509EncodedKeySpec`);
//! 3. the signature is decoded with Android's lenient `Base64.DEFAULT` (whitespace ignored, padding
//!    optional) — a decoding failure is a refusal, not a crash;
//! 4. `Signature.getInstance("SHA1withRSA").verify` over the purchase JSON's UTF-8 bytes, exactly as
//!    received: the JSON is never re-serialised before checking.
//!
//! Only after the signature holds is the JSON parsed, and the package, product and purchase state
//! checked against the configuration ([`ReceiptPolicy`]).
//!
//! [`StoreKey`] is the store's side (a 2048-bit RSA key) that `chaincall store` uses to issue test
//! receipts through the same path.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use chaincall_identity::Secret;
use rsa::pkcs1v15::{Signature, SigningKey, VerifyingKey};
use rsa::pkcs8::{
    DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey, LineEnding,
};
use rsa::signature::{SignatureEncoding, Signer, Verifier};
use rsa::{RsaPrivateKey, RsaPublicKey};
use serde::{Deserialize, Serialize};
use sha1::Sha1;
use sha2::{Digest, Sha256};

/// Why a receipt was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReceiptError {
    /// The purchase data or signature is empty (Play's first check).
    #[error("receipt is empty: {what}")]
    Empty {
        /// Which part.
        what: &'static str,
    },
    /// The signature is not valid base64.
    #[error("receipt signature is not base64")]
    SignatureEncoding,
    /// The signature does not verify against the store key: forged or altered.
    #[error("receipt signature does not verify against the store key")]
    BadSignature,
    /// The signed data is not the purchase JSON Play produces.
    #[error("purchase data is not valid purchase JSON: {reason}")]
    Malformed {
        /// What is wrong.
        reason: String,
    },
    /// The purchase is for another app.
    #[error("receipt is for package {actual:?}, not {expected:?}")]
    WrongPackage {
        /// Configured package.
        expected: String,
        /// Package in the receipt.
        actual: String,
    },
    /// The purchase is for another product.
    #[error("receipt is for product {actual:?}, not {expected:?}")]
    WrongProduct {
        /// Configured product.
        expected: String,
        /// Product in the receipt.
        actual: String,
    },
    /// The purchase is not completed (cancelled or pending).
    #[error("purchase state is {state} (0 = purchased is required)")]
    NotPurchased {
        /// `purchaseState` from the receipt.
        state: i64,
    },
}

/// Why a store key could not be loaded or made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreKeyError {
    /// The public key is not base64 of a DER `SubjectPublicKeyInfo` holding an RSA key.
    #[error("store public key is not base64 DER SubjectPublicKeyInfo of an RSA key")]
    PublicKey,
    /// The private key is not a PKCS#8 PEM RSA key.
    #[error("store private key is not a PKCS#8 PEM RSA key")]
    PrivateKey,
    /// Key generation or signing failed.
    #[error("RSA operation failed: {0}")]
    Rsa(String),
}

/// A receipt as the phone passes it on: the signed purchase JSON and its signature, verbatim. The
/// JSON carries the purchase token, a secret, and the two together are a bearer credential for the
/// purchase: both are `<redacted>` in `Debug`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    /// The purchase JSON exactly as signed (`Purchase.getOriginalJson()`).
    pub original_json: Secret<String>,
    /// Base64 `SHA1withRSA` signature over `original_json` (`Purchase.getSignature()`).
    pub signature: Secret<String>,
}

impl Receipt {
    /// The purchase JSON, parsed without checking the signature: for the phone, which holds its own
    /// receipt straight from the store. Servers use [`ReceiptPolicy::verify`] instead.
    pub fn purchase(&self) -> Result<Purchase, ReceiptError> {
        let purchase: Purchase =
            serde_json::from_str(&self.original_json).map_err(|e| ReceiptError::Malformed {
                reason: e.to_string(),
            })?;
        if purchase.purchase_token.is_empty() {
            return Err(ReceiptError::Malformed {
                reason: "purchaseToken must not be empty".into(),
            });
        }
        Ok(purchase)
    }
}

/// The purchase JSON's fields (Play Billing's `Purchase`); unknown fields are ignored. The token is
/// `<redacted>` in `Debug`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Purchase {
    /// Google's order id, e.g. `GPA.1234-5678-9012-34567`.
    pub order_id: String,
    /// The app's package name.
    pub package_name: String,
    /// The in-app product id.
    pub product_id: String,
    /// Milliseconds since the Unix epoch.
    pub purchase_time: i64,
    /// 0 purchased, 1 cancelled, 2 pending.
    pub purchase_state: i64,
    /// The opaque token identifying the purchase: a secret (it binds the purchase once ever).
    pub purchase_token: Secret<String>,
    /// Units bought.
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub quantity: i64,
    /// Whether the purchase was acknowledged.
    #[serde(default)]
    pub acknowledged: bool,
}

fn one() -> i64 {
    1
}

fn is_one(q: &i64) -> bool {
    *q == 1
}

impl Purchase {
    /// Hex SHA-256 of the purchase token: the database's once-ever key for the receipt. (Older
    /// servers also used it as the SIP password; passwords are now [`crate::credentials`]'s.)
    pub fn token_sha256_hex(&self) -> String {
        hex::encode(self.token_sha256())
    }

    /// SHA-256 of the purchase token: what binds a receipt once ever (the onboarding row's
    /// `token_sha256`).
    pub fn token_sha256(&self) -> alloy::primitives::B256 {
        alloy::primitives::B256::from(<[u8; 32]>::from(Sha256::digest(
            self.purchase_token.as_bytes(),
        )))
    }

    /// The receipt's hash as the keystore contract sees it: `keccak256(purchaseToken)`, what the
    /// phone commits to in `addClient` and the server passes to `approveClient`.
    pub fn chain_receipt_hash(&self) -> alloy::primitives::B256 {
        chaincall_chain::receipt_hash(self.purchase_token.as_bytes())
    }
}

/// What a receipt must be for to be accepted (nothing secret: the store's public key).
#[derive(Debug, Clone)]
pub struct ReceiptPolicy {
    key: VerifyingKey<Sha1>,
    /// The app's package name.
    pub package_name: String,
    /// The product that buys onboarding.
    pub product_id: String,
}

/// Decodes like Android's `Base64.decode(s, Base64.DEFAULT)`: whitespace ignored, padding optional.
fn lenient_base64(input: &str) -> Option<Vec<u8>> {
    let compact: String = input.chars().filter(|c| !c.is_whitespace()).collect();
    let trimmed = compact.trim_end_matches('=');
    STANDARD_NO_PAD.decode(trimmed).ok()
}

impl ReceiptPolicy {
    /// A policy from the developer console's base64 public key (X.509 `SubjectPublicKeyInfo`).
    pub fn new(
        base64_public_key: &str,
        package_name: impl Into<String>,
        product_id: impl Into<String>,
    ) -> Result<Self, StoreKeyError> {
        let der = lenient_base64(base64_public_key)
            .filter(|d| !d.is_empty())
            .ok_or(StoreKeyError::PublicKey)?;
        let key = RsaPublicKey::from_public_key_der(&der).map_err(|_| StoreKeyError::PublicKey)?;
        Ok(Self {
            key: VerifyingKey::<Sha1>::new(key),
            package_name: package_name.into(),
            product_id: product_id.into(),
        })
    }

    /// Verifies the signature (Play's `Security.verifyPurchase`), then the package, product and
    /// purchase state. Returns the parsed purchase.
    pub fn verify(&self, receipt: &Receipt) -> Result<Purchase, ReceiptError> {
        if receipt.original_json.is_empty() {
            return Err(ReceiptError::Empty {
                what: "purchase data",
            });
        }
        if receipt.signature.trim().is_empty() {
            return Err(ReceiptError::Empty { what: "signature" });
        }
        let sig_bytes =
            lenient_base64(&receipt.signature).ok_or(ReceiptError::SignatureEncoding)?;
        let signature =
            Signature::try_from(sig_bytes.as_slice()).map_err(|_| ReceiptError::BadSignature)?;
        self.key
            .verify(receipt.original_json.as_bytes(), &signature)
            .map_err(|_| ReceiptError::BadSignature)?;
        let purchase: Purchase =
            serde_json::from_str(&receipt.original_json).map_err(|e| ReceiptError::Malformed {
                // serde's message names the field, never the token's value for string fields.
                reason: e.to_string(),
            })?;
        if purchase.order_id.is_empty() || purchase.purchase_token.is_empty() {
            return Err(ReceiptError::Malformed {
                reason: "orderId and purchaseToken must not be empty".into(),
            });
        }
        if purchase.package_name != self.package_name {
            return Err(ReceiptError::WrongPackage {
                expected: self.package_name.clone(),
                actual: purchase.package_name,
            });
        }
        if purchase.product_id != self.product_id {
            return Err(ReceiptError::WrongProduct {
                expected: self.product_id.clone(),
                actual: purchase.product_id,
            });
        }
        if purchase.purchase_state != 0 {
            return Err(ReceiptError::NotPurchased {
                state: purchase.purchase_state,
            });
        }
        Ok(purchase)
    }
}

/// The store's signing key (RSA-2048), for development stores and tests.
pub struct StoreKey(SigningKey<Sha1>, RsaPrivateKey);

impl fmt::Debug for StoreKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StoreKey(<secret>)")
    }
}

impl StoreKey {
    /// A fresh 2048-bit key from the OS CSPRNG (takes about a second in debug builds).
    pub fn generate() -> Result<Self, StoreKeyError> {
        let key = RsaPrivateKey::new(&mut rand_core::OsRng, 2048)
            .map_err(|e| StoreKeyError::Rsa(e.to_string()))?;
        Ok(Self(SigningKey::<Sha1>::new(key.clone()), key))
    }

    /// Loads a PKCS#8 PEM private key (`-----BEGIN PRIVATE KEY-----`).
    pub fn from_pkcs8_pem(pem: &str) -> Result<Self, StoreKeyError> {
        let key = RsaPrivateKey::from_pkcs8_pem(pem).map_err(|_| StoreKeyError::PrivateKey)?;
        Ok(Self(SigningKey::<Sha1>::new(key.clone()), key))
    }

    /// The private key as PKCS#8 PEM; store it with 0600 permissions.
    pub fn dangerous_to_pkcs8_pem(&self) -> Result<zeroize::Zeroizing<String>, StoreKeyError> {
        self.1
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|e| StoreKeyError::Rsa(e.to_string()))
    }

    /// The public key as the developer console shows it: base64 of DER `SubjectPublicKeyInfo`.
    pub fn public_key_base64(&self) -> Result<String, StoreKeyError> {
        let der = RsaPublicKey::from(&self.1)
            .to_public_key_der()
            .map_err(|e| StoreKeyError::Rsa(e.to_string()))?;
        Ok(STANDARD.encode(der.as_bytes()))
    }

    /// Signs purchase JSON the way Play does: `SHA1withRSA`, base64 signature.
    pub fn sign(&self, original_json: &str) -> Receipt {
        let signature: Signature = self.0.sign(original_json.as_bytes());
        Receipt {
            original_json: original_json.into(),
            signature: STANDARD.encode(signature.to_bytes()).into(),
        }
    }

    /// Issues a receipt for a completed purchase: builds Play's purchase JSON and signs it.
    pub fn issue(&self, purchase: &Purchase) -> Receipt {
        // Serialising a struct of strings and integers cannot fail.
        let json = serde_json::to_string(purchase).expect("purchase JSON serialises");
        self.sign(&json)
    }
}

/// A Play-like order id (`GPA.dddd-dddd-dddd-ddddd`) from the OS CSPRNG.
pub fn random_order_id() -> String {
    use rand_core::RngCore;
    let mut rng = rand_core::OsRng;
    let mut digits = |n: usize| -> String {
        (0..n)
            .map(|_| char::from(b'0' + (rng.next_u32() % 10) as u8))
            .collect()
    };
    format!(
        "GPA.{}-{}-{}-{}",
        digits(4),
        digits(4),
        digits(4),
        digits(5)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::OnceLock;

    fn store() -> &'static StoreKey {
        static KEY: OnceLock<StoreKey> = OnceLock::new();
        KEY.get_or_init(|| StoreKey::generate().unwrap())
    }

    fn purchase() -> Purchase {
        Purchase {
            order_id: "GPA.1234-5678-9012-34567".into(),
            package_name: "org.chaincall.phone".into(),
            product_id: "onboarding".into(),
            purchase_time: 1_700_000_000_000,
            purchase_state: 0,
            purchase_token: "tok-abc".into(),
            quantity: 1,
            acknowledged: false,
        }
    }

    fn policy() -> ReceiptPolicy {
        ReceiptPolicy::new(
            &store().public_key_base64().unwrap(),
            "org.chaincall.phone",
            "onboarding",
        )
        .unwrap()
    }

    #[test]
    fn issued_receipt_verifies() {
        let r = store().issue(&purchase());
        assert_eq!(policy().verify(&r).unwrap(), purchase());
    }

    #[test]
    fn verification_is_over_the_exact_bytes() {
        let r = store().issue(&purchase());
        // Same JSON meaning, different bytes: Play signs bytes, so this must fail.
        let reformatted = Receipt {
            original_json: r.original_json.replace(",", ", ").into(),
            signature: r.signature.clone(),
        };
        assert_eq!(
            policy().verify(&reformatted),
            Err(ReceiptError::BadSignature)
        );
    }

    #[test]
    fn lenient_base64_like_android() {
        let r = store().issue(&purchase());
        let wrapped: String = r
            .signature
            .trim_end_matches('=')
            .as_bytes()
            .chunks(76)
            .map(|c| format!("{}\n", std::str::from_utf8(c).unwrap()))
            .collect();
        let r2 = Receipt {
            signature: wrapped.into(),
            ..r
        };
        assert!(policy().verify(&r2).is_ok());
        let r3 = Receipt {
            signature: "not base64 !!".into(),
            ..r2
        };
        assert_eq!(policy().verify(&r3), Err(ReceiptError::SignatureEncoding));
    }

    #[test]
    fn forged_and_wrong_receipts_are_refused() {
        let other = StoreKey::generate().unwrap();
        assert_eq!(
            policy().verify(&other.issue(&purchase())),
            Err(ReceiptError::BadSignature)
        );
        let mut p = purchase();
        p.product_id = "coins".into();
        assert!(matches!(
            policy().verify(&store().issue(&p)),
            Err(ReceiptError::WrongProduct { .. })
        ));
        let mut p = purchase();
        p.package_name = "com.other".into();
        assert!(matches!(
            policy().verify(&store().issue(&p)),
            Err(ReceiptError::WrongPackage { .. })
        ));
        let mut p = purchase();
        p.purchase_state = 2;
        assert_eq!(
            policy().verify(&store().issue(&p)),
            Err(ReceiptError::NotPurchased { state: 2 })
        );
        let empty = Receipt {
            original_json: String::new().into(),
            signature: "AAAA".into(),
        };
        assert!(matches!(
            policy().verify(&empty),
            Err(ReceiptError::Empty { .. })
        ));
    }

    #[test]
    fn pem_round_trip_and_debug_hides_secrets() {
        let pem = store().dangerous_to_pkcs8_pem().unwrap();
        let again = StoreKey::from_pkcs8_pem(&pem).unwrap();
        assert_eq!(
            again.public_key_base64().unwrap(),
            store().public_key_base64().unwrap()
        );
        let r = store().issue(&purchase());
        assert!(!format!("{r:?}").contains("tok-abc"));
        assert!(!format!("{:?}", purchase()).contains("tok-abc"));
    }

    /// The token is a `Secret` now; the JSON the phone sends and the store signs is what it was,
    /// byte for byte.
    #[test]
    fn receipt_and_purchase_json_are_unchanged_by_the_secret_fields() {
        let json = r#"{"original_json":"{\"purchaseToken\":\"tok-abc\"}","signature":"c2ln"}"#;
        let receipt: Receipt = serde_json::from_str(json).unwrap();
        assert_eq!(serde_json::to_string(&receipt).unwrap(), json);
        let p = purchase();
        let again: Purchase = serde_json::from_str(&serde_json::to_string(&p).unwrap()).unwrap();
        assert_eq!(again, p);
        assert!(
            serde_json::to_string(&p)
                .unwrap()
                .contains(r#""purchaseToken":"tok-abc""#)
        );
        assert!(!format!("{receipt:?}").contains("tok-abc"));
    }

    /// An independent check of the wire format: OpenSSL verifies our signature as
    /// `sha1WithRSAEncryption` over the exact JSON with the SubjectPublicKeyInfo key.
    #[test]
    fn openssl_agrees() {
        let Some(openssl) = chaincall_testkit::find_executable("openssl") else {
            eprintln!("SKIPPED: openssl not installed");
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let r = store().issue(&purchase());
        let pubder = STANDARD
            .decode(store().public_key_base64().unwrap())
            .unwrap();
        std::fs::write(dir.path().join("pub.der"), pubder).unwrap();
        std::fs::write(dir.path().join("data"), r.original_json.as_bytes()).unwrap();
        std::fs::write(
            dir.path().join("sig"),
            STANDARD.decode(r.signature.as_bytes()).unwrap(),
        )
        .unwrap();
        let out = std::process::Command::new(openssl)
            .current_dir(dir.path())
            .args([
                "dgst",
                "-sha1",
                "-verify",
                "pub.der",
                "-keyform",
                "DER",
                "-signature",
                "sig",
                "data",
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
}
