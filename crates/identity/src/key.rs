//! Identity key pairs: the public half lives on chain, tagged with its algorithm.

use std::fmt;

use p256::ecdsa::signature::{Signer, Verifier};
use p256::elliptic_curve::sec1::ToEncodedPoint;
use rand_core::{CryptoRngCore, OsRng};
use zeroize::Zeroizing;

use crate::KeyError;

/// The algorithm of an identity key, stored on chain as a one-byte tag beside the key bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
#[repr(u8)]
pub enum KeyType {
    /// NIST P-256 (secp256r1), the public key SEC1-compressed in 33 bytes; ECDSA with SHA-256.
    P256 = 1,
}

impl KeyType {
    /// The on-chain tag.
    pub fn tag(self) -> u8 {
        self as u8
    }

    /// The type for an on-chain tag.
    pub fn from_tag(tag: u8) -> Result<Self, KeyError> {
        match tag {
            1 => Ok(Self::P256),
            other => Err(KeyError::UnknownKeyType(other)),
        }
    }

    /// A short name for messages and JSON (`"p256"`).
    pub fn name(self) -> &'static str {
        match self {
            Self::P256 => "p256",
        }
    }
}

/// The public half of an identity key, as published in the keystore.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicIdentityKey(p256::PublicKey);

impl PublicIdentityKey {
    /// Decodes a key from its on-chain form: type tag and key bytes.
    ///
    /// P-256 keys are accepted SEC1-compressed (33 bytes) or uncompressed (65 bytes) and must be a
    /// valid point on the curve (not the identity).
    pub fn from_tagged(tag: u8, bytes: &[u8]) -> Result<Self, KeyError> {
        match KeyType::from_tag(tag)? {
            KeyType::P256 => Self::from_p256_sec1(bytes),
        }
    }

    /// Decodes a SEC1-encoded P-256 public key.
    pub fn from_p256_sec1(bytes: &[u8]) -> Result<Self, KeyError> {
        if bytes.len() != 33 && bytes.len() != 65 {
            return Err(KeyError::MalformedPublicKey {
                key_type: "p256",
                len: bytes.len(),
            });
        }
        p256::PublicKey::from_sec1_bytes(bytes)
            .map(Self)
            .map_err(|_| KeyError::MalformedPublicKey {
                key_type: "p256",
                len: bytes.len(),
            })
    }

    /// The algorithm.
    pub fn key_type(&self) -> KeyType {
        KeyType::P256
    }

    /// The on-chain tag of the algorithm.
    pub fn tag(&self) -> u8 {
        self.key_type().tag()
    }

    /// The on-chain key bytes: SEC1-compressed, 33 bytes for P-256.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.0.to_encoded_point(true).as_bytes().to_vec()
    }

    /// The uncompressed SEC1 encoding (65 bytes for P-256), as some wire formats want it.
    pub fn to_uncompressed_bytes(&self) -> Vec<u8> {
        self.0.to_encoded_point(false).as_bytes().to_vec()
    }

    /// Verifies an ECDSA P-256 / SHA-256 signature over `message`.
    ///
    /// Only canonical (low-S) signatures exist as [`IdentitySignature`] values (see
    /// [`IdentitySignature::from_slice`]), so a signature verifies in exactly one encoding.
    pub fn verify(&self, message: &[u8], signature: &IdentitySignature) -> Result<(), KeyError> {
        let vk = p256::ecdsa::VerifyingKey::from(&self.0);
        let sig = p256::ecdsa::Signature::from_slice(&signature.0)
            .map_err(|_| KeyError::MalformedSignature { len: 64 })?;
        vk.verify(message, &sig).map_err(|_| KeyError::BadSignature)
    }

    /// The underlying P-256 key, for protocols that need the curve arithmetic (ECDH, ECIES).
    pub fn as_p256(&self) -> &p256::PublicKey {
        &self.0
    }

    /// A short fingerprint for logs and user display: the first 8 bytes of SHA-256 of the key bytes.
    pub fn fingerprint(&self) -> String {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(self.to_bytes());
        hex::encode(&digest[..8])
    }
}

impl From<p256::PublicKey> for PublicIdentityKey {
    fn from(key: p256::PublicKey) -> Self {
        Self(key)
    }
}

impl fmt::Debug for PublicIdentityKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "PublicIdentityKey(p256:{})",
            hex::encode(self.to_bytes())
        )
    }
}

/// An identity key pair. The secret is zeroized on drop and never printed.
///
/// The ECDSA signing key (secret scalar plus its public point) is prepared once, so signing does not
/// recompute the public point each time.
#[derive(Clone)]
pub struct IdentityKey {
    secret: p256::SecretKey,
    signing: p256::ecdsa::SigningKey,
}

impl IdentityKey {
    /// A fresh key from the OS CSPRNG.
    pub fn generate() -> Self {
        Self::generate_from(&mut OsRng)
    }

    /// A fresh key drawn from `rng` (seeded in tests, so a run's keys can be replayed).
    pub fn generate_from(mut rng: &mut dyn CryptoRngCore) -> Self {
        Self::from_secret(p256::SecretKey::random(&mut rng))
    }

    fn from_secret(secret: p256::SecretKey) -> Self {
        let signing = p256::ecdsa::SigningKey::from(&secret);
        Self { secret, signing }
    }

    /// Loads a key from its 32-byte big-endian scalar.
    pub fn from_secret_bytes(bytes: &[u8]) -> Result<Self, KeyError> {
        // p256 would left-pad shorter slices; a stored key of the wrong length is corruption.
        if bytes.len() != 32 {
            return Err(KeyError::MalformedSecretKey);
        }
        p256::SecretKey::from_slice(bytes)
            .map(Self::from_secret)
            .map_err(|_| KeyError::MalformedSecretKey)
    }

    /// The 32-byte secret scalar, for storing the key encrypted at rest. Handle with care.
    pub fn dangerous_secret_bytes(&self) -> Zeroizing<Vec<u8>> {
        Zeroizing::new(self.secret.to_bytes().to_vec())
    }

    /// The public half, as published on chain.
    pub fn public(&self) -> PublicIdentityKey {
        PublicIdentityKey(p256::PublicKey::from(self.signing.verifying_key()))
    }

    /// Signs `message` with ECDSA P-256 / SHA-256 (RFC 6979 deterministic nonces, low-S).
    pub fn sign(&self, message: &[u8]) -> IdentitySignature {
        let sig: p256::ecdsa::Signature = self.signing.sign(message);
        let sig = sig.normalize_s().unwrap_or(sig);
        let mut out = [0u8; 64];
        out.copy_from_slice(&sig.to_bytes());
        IdentitySignature(out)
    }

    /// The underlying P-256 secret, for protocols that need the curve arithmetic (ECDH, ECIES).
    pub fn as_p256(&self) -> &p256::SecretKey {
        &self.secret
    }
}

impl fmt::Debug for IdentityKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "IdentityKey(public {:?}, secret redacted)",
            self.public()
        )
    }
}

/// An ECDSA signature by an identity key: `r || s`, 32 bytes each, big-endian.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct IdentitySignature([u8; 64]);

impl IdentitySignature {
    /// Length of the encoding.
    pub const LEN: usize = 64;

    /// Decodes `r || s`, refusing anything but the canonical form: `r` and `s` in `[1, n-1]`
    /// and `s <= n/2` (low-S).
    ///
    /// ECDSA is malleable: `(r, n - s)` verifies wherever `(r, s)` does. Accepting both would give
    /// every signed message a second byte encoding that an attacker can make without the key,
    /// which defeats any replay cache or de-duplication keyed on the bytes. [`IdentityKey::sign`]
    /// always produces low-S, so honest peers are unaffected.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, KeyError> {
        let arr: [u8; 64] = bytes
            .try_into()
            .map_err(|_| KeyError::MalformedSignature { len: bytes.len() })?;
        let parsed = p256::ecdsa::Signature::from_slice(&arr)
            .map_err(|_| KeyError::MalformedSignature { len: 64 })?;
        if parsed.normalize_s().is_some() {
            return Err(KeyError::HighS);
        }
        Ok(Self(arr))
    }

    /// The `r || s` encoding.
    pub fn to_bytes(&self) -> [u8; 64] {
        self.0
    }

    /// The `r || s` encoding, borrowed.
    pub fn as_bytes(&self) -> &[u8; 64] {
        &self.0
    }
}

impl fmt::Debug for IdentitySignature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IdentitySignature({})", hex::encode(self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tagged_round_trip_and_compressed_form() {
        let key = IdentityKey::generate();
        let public = key.public();
        let bytes = public.to_bytes();
        assert_eq!(bytes.len(), 33);
        assert!(bytes[0] == 2 || bytes[0] == 3);
        let back = PublicIdentityKey::from_tagged(public.tag(), &bytes).unwrap();
        assert_eq!(back, public);
        let uncompressed = public.to_uncompressed_bytes();
        assert_eq!(
            PublicIdentityKey::from_tagged(1, &uncompressed).unwrap(),
            public
        );
    }

    #[test]
    fn refuses_bad_keys() {
        assert_eq!(
            PublicIdentityKey::from_tagged(9, &[2; 33]),
            Err(KeyError::UnknownKeyType(9))
        );
        assert!(PublicIdentityKey::from_tagged(1, &[2; 32]).is_err());
        // x = 2^256 - 1 is not a field element (it exceeds p), so no point has it.
        let mut off_curve = [0xffu8; 33];
        off_curve[0] = 2;
        assert!(PublicIdentityKey::from_tagged(1, &off_curve).is_err());
        assert!(IdentityKey::from_secret_bytes(&[0u8; 32]).is_err());
        assert!(IdentityKey::from_secret_bytes(&[1u8; 31]).is_err());
    }

    #[test]
    fn signatures_verify_and_reject_tampering() {
        let key = IdentityKey::generate();
        let sig = key.sign(b"INVITE sip:+15551234567@sip.example.org");
        key.public()
            .verify(b"INVITE sip:+15551234567@sip.example.org", &sig)
            .unwrap();
        assert_eq!(
            key.public()
                .verify(b"INVITE sip:+15551234568@sip.example.org", &sig),
            Err(KeyError::BadSignature)
        );
        let mut bytes = sig.to_bytes();
        bytes[10] ^= 1;
        let flipped = IdentitySignature::from_slice(&bytes).unwrap();
        assert!(
            key.public()
                .verify(b"INVITE sip:+15551234567@sip.example.org", &flipped)
                .is_err()
        );
        let other = IdentityKey::generate();
        assert!(
            other
                .public()
                .verify(b"INVITE sip:+15551234567@sip.example.org", &sig)
                .is_err()
        );
    }

    /// The malleated twin `(r, n - s)` of a valid signature verifies under plain ECDSA; it must be
    /// refused at decoding, so no verifier anywhere (RustCrypto or OpenSSL) ever sees it.
    #[test]
    fn high_s_twin_is_refused() {
        let key = IdentityKey::generate();
        let message = b"MIKEY offer";
        let sig = key.sign(message);
        let parsed = p256::ecdsa::Signature::from_slice(sig.as_bytes()).unwrap();
        let (r, s) = parsed.split_scalars();
        let twin = p256::ecdsa::Signature::from_scalars(r, -*s).unwrap();
        // The twin is a valid ECDSA signature: the attack is real without the low-S rule.
        let vk = p256::ecdsa::VerifyingKey::from(key.public().as_p256());
        vk.verify(message, &twin).unwrap();
        assert_eq!(
            IdentitySignature::from_slice(&twin.to_bytes()),
            Err(KeyError::HighS)
        );
        // r = 0 or s = 0 is no signature at all.
        let mut zero_s = sig.to_bytes();
        zero_s[32..].fill(0);
        assert!(IdentitySignature::from_slice(&zero_s).is_err());
        assert_eq!(IdentitySignature::from_slice(sig.as_bytes()), Ok(sig));
    }

    #[test]
    fn secrets_stay_out_of_debug() {
        let key = IdentityKey::generate();
        let secret_hex = hex::encode(key.dangerous_secret_bytes().as_slice());
        let shown = format!("{key:?}");
        assert!(!shown.contains(&secret_hex));
        assert!(shown.contains("redacted"));
        let reloaded = IdentityKey::from_secret_bytes(&key.dangerous_secret_bytes()).unwrap();
        assert_eq!(reloaded.public(), key.public());
    }

    #[test]
    fn a_seeded_source_gives_the_same_key_and_another_seed_another() {
        use rand_chacha::ChaCha20Rng;
        use rand_core::SeedableRng;
        let key = |seed| IdentityKey::generate_from(&mut ChaCha20Rng::from_seed([seed; 32]));
        assert_eq!(key(1).public(), key(1).public());
        assert_ne!(key(1).public(), key(2).public());
    }
}
