//! The crypto provider: the P-256 operations a handshake needs, behind traits, so a shell can plug in
//! a faster backend without the core naming one.
//!
//! [`RustCrypto`] (the `p256` crate) is the default. `chaincall-tls-psk` offers an OpenSSL provider:
//! on the reference machine OpenSSL's P-256 is about ten times faster (assembly, precomputed tables),
//! which is what brings a whole handshake within the latency target. Both produce the same wire bytes
//! formats: compressed points, `r ‖ s` low-S signatures, and [`chaincall_identity::ecies`] ciphertexts
//! (re-implemented here over the provider's ECDH, byte-compatible and tested against it).

use std::fmt;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use chaincall_identity::{IdentityKey, IdentitySignature, PublicIdentityKey};
use hkdf::Hkdf;
use p256::elliptic_curve::sec1::ToEncodedPoint;
use rand_core::OsRng;
use sha2::Sha256;
use zeroize::Zeroizing;

/// A compressed SEC1 P-256 point.
pub type Point = [u8; 33];

/// Why a provider operation failed: the peer's point or signature is invalid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidInput;

/// An ephemeral P-256 secret, used for one key agreement. Implementations zeroize on drop.
pub trait EphemeralSecret: Send {
    /// The public point, compressed.
    fn public(&self) -> Point;
    /// ECDH with a peer's compressed point: the shared x-coordinate. Refuses points not on the curve.
    fn diffie_hellman(&self, peer: &Point) -> Result<Zeroizing<[u8; 32]>, InvalidInput>;
}

/// The operations on our identity's secret key, prepared once per [`LocalIdentity`](crate::LocalIdentity).
pub trait IdentitySecret: Send + Sync {
    /// ECDSA P-256/SHA-256 over `message`, `r ‖ s`, low-S.
    fn sign(&self, message: &[u8]) -> IdentitySignature;
    /// ECDH with a peer's compressed point (for ECIES): the shared x-coordinate.
    fn diffie_hellman(&self, peer: &Point) -> Result<Zeroizing<[u8; 32]>, InvalidInput>;
}

/// A P-256 backend.
pub trait CryptoProvider: Send + Sync {
    /// A short name for logs (`"rustcrypto"`, `"openssl"`).
    fn name(&self) -> &'static str;
    /// A fresh ephemeral key from the OS CSPRNG.
    fn generate_ephemeral(&self) -> Box<dyn EphemeralSecret>;
    /// Prepares our identity key for signing and ECDH.
    fn load_identity(&self, key: &IdentityKey) -> Box<dyn IdentitySecret>;
    /// Verifies an ECDSA P-256/SHA-256 signature (`r ‖ s`, either S accepted).
    fn verify(
        &self,
        key: &PublicIdentityKey,
        message: &[u8],
        signature: &IdentitySignature,
    ) -> bool;
}

impl fmt::Debug for dyn CryptoProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CryptoProvider({})", self.name())
    }
}

/// The pure-Rust provider (RustCrypto `p256`).
#[derive(Debug, Clone, Copy, Default)]
pub struct RustCrypto;

struct RcEphemeral(p256::ecdh::EphemeralSecret);

fn rc_point(peer: &Point) -> Result<p256::PublicKey, InvalidInput> {
    p256::PublicKey::from_sec1_bytes(peer).map_err(|_| InvalidInput)
}

fn compress(point: &p256::PublicKey) -> Point {
    let mut out = [0u8; 33];
    out.copy_from_slice(point.to_encoded_point(true).as_bytes());
    out
}

impl EphemeralSecret for RcEphemeral {
    fn public(&self) -> Point {
        compress(&self.0.public_key())
    }
    fn diffie_hellman(&self, peer: &Point) -> Result<Zeroizing<[u8; 32]>, InvalidInput> {
        let shared = self.0.diffie_hellman(&rc_point(peer)?);
        Ok(Zeroizing::new((*shared.raw_secret_bytes()).into()))
    }
}

struct RcIdentity {
    // Both zeroized on drop by their crates.
    secret: p256::SecretKey,
    signer: p256::ecdsa::SigningKey,
}

impl IdentitySecret for RcIdentity {
    fn sign(&self, message: &[u8]) -> IdentitySignature {
        use p256::ecdsa::signature::Signer;
        let sig: p256::ecdsa::Signature = self.signer.sign(message);
        let sig = sig.normalize_s().unwrap_or(sig);
        // Invariant: a P-256 signature encodes to exactly 64 bytes.
        IdentitySignature::from_slice(&sig.to_bytes()).expect("64-byte r || s")
    }
    fn diffie_hellman(&self, peer: &Point) -> Result<Zeroizing<[u8; 32]>, InvalidInput> {
        let peer = rc_point(peer)?;
        let shared = p256::ecdh::diffie_hellman(self.secret.to_nonzero_scalar(), peer.as_affine());
        Ok(Zeroizing::new((*shared.raw_secret_bytes()).into()))
    }
}

impl CryptoProvider for RustCrypto {
    fn name(&self) -> &'static str {
        "rustcrypto"
    }
    fn generate_ephemeral(&self) -> Box<dyn EphemeralSecret> {
        Box::new(RcEphemeral(p256::ecdh::EphemeralSecret::random(&mut OsRng)))
    }
    fn load_identity(&self, key: &IdentityKey) -> Box<dyn IdentitySecret> {
        Box::new(RcIdentity {
            secret: key.as_p256().clone(),
            signer: p256::ecdsa::SigningKey::from(key.as_p256()),
        })
    }
    fn verify(
        &self,
        key: &PublicIdentityKey,
        message: &[u8],
        signature: &IdentitySignature,
    ) -> bool {
        key.verify(message, signature).is_ok()
    }
}

// ECIES, byte-compatible with chaincall_identity::ecies (same version byte, salt, info and AAD).
const ECIES_VERSION: u8 = chaincall_identity::ecies::VERSION;
const ECIES_LABEL: &[u8] = b"chaincall ecies p256 v1 ";

fn ecies_cipher(
    shared_x: &[u8],
    eph: &Point,
    recipient: &Point,
    context: &[u8],
) -> (Aes256Gcm, [u8; 12]) {
    let mut salt = [0u8; 66];
    salt[..33].copy_from_slice(eph);
    salt[33..].copy_from_slice(recipient);
    let hk = Hkdf::<Sha256>::new(Some(&salt), shared_x);
    let mut okm = Zeroizing::new([0u8; 44]);
    let info = [ECIES_LABEL, context].concat();
    // Invariant: 44 bytes is far below HKDF-SHA-256's limit; 32 bytes is an AES-256 key.
    hk.expand(&info, okm.as_mut()).expect("44 <= 8160");
    let cipher = Aes256Gcm::new_from_slice(&okm[..32]).expect("32-byte key");
    let mut nonce = [0u8; 12];
    nonce.copy_from_slice(&okm[32..]);
    (cipher, nonce)
}

/// Seals `plaintext` to `recipient` (ECIES as in [`chaincall_identity::ecies::seal`]).
pub(crate) fn seal(
    crypto: &dyn CryptoProvider,
    recipient: &PublicIdentityKey,
    context: &[u8],
    plaintext: &[u8],
) -> Vec<u8> {
    let eph = crypto.generate_ephemeral();
    let eph_pub = eph.public();
    let mut rcpt = [0u8; 33];
    rcpt.copy_from_slice(&recipient.to_bytes());
    // Invariant: the recipient key is a valid point (PublicIdentityKey checks on construction).
    let shared = eph.diffie_hellman(&rcpt).expect("valid recipient key");
    let (cipher, nonce) = ecies_cipher(shared.as_ref(), &eph_pub, &rcpt, context);
    let mut out = Vec::with_capacity(chaincall_identity::ecies::OVERHEAD + plaintext.len());
    out.push(ECIES_VERSION);
    out.extend_from_slice(&eph_pub);
    // Invariant: AES-GCM fails only beyond 2^36 bytes of plaintext.
    let ct = cipher
        .encrypt(
            &Nonce::from(nonce),
            Payload {
                msg: plaintext,
                aad: &out[..34],
            },
        )
        .expect("small plaintext");
    out.extend_from_slice(&ct);
    out
}

/// Opens an ECIES ciphertext sealed to our identity key.
pub(crate) fn open(
    secret: &dyn IdentitySecret,
    our_public: &PublicIdentityKey,
    context: &[u8],
    sealed: &[u8],
) -> Option<Zeroizing<Vec<u8>>> {
    if sealed.len() < chaincall_identity::ecies::OVERHEAD || sealed[0] != ECIES_VERSION {
        return None;
    }
    let mut eph = [0u8; 33];
    eph.copy_from_slice(&sealed[1..34]);
    let shared = secret.diffie_hellman(&eph).ok()?;
    let mut me = [0u8; 33];
    me.copy_from_slice(&our_public.to_bytes());
    let (cipher, nonce) = ecies_cipher(shared.as_ref(), &eph, &me, context);
    cipher
        .decrypt(
            &Nonce::from(nonce),
            Payload {
                msg: &sealed[34..],
                aad: &sealed[..34],
            },
        )
        .ok()
        .map(Zeroizing::new)
}

/// A test helper for provider implementations: checks one against the identity crate's own
/// signatures and ECIES, byte for byte where deterministic. Panics on a mismatch.
pub fn check_provider(crypto: &dyn CryptoProvider) {
    let key = IdentityKey::generate();
    let public = key.public();
    let loaded = crypto.load_identity(&key);
    // Signatures: ours verify with the identity crate, and the identity crate's with ours.
    let sig = loaded.sign(b"transcript");
    public
        .verify(b"transcript", &sig)
        .expect("provider signature verifies");
    assert!(crypto.verify(&public, b"transcript", &key.sign(b"transcript")));
    assert!(!crypto.verify(&public, b"transcript!", &sig));
    // ECDH agrees across providers.
    let a = crypto.generate_ephemeral();
    let b = RustCrypto.generate_ephemeral();
    assert_eq!(
        *a.diffie_hellman(&b.public()).unwrap(),
        *b.diffie_hellman(&a.public()).unwrap()
    );
    let mut bad = a.public();
    bad[0] = 4;
    assert!(b.diffie_hellman(&bad).is_err() && a.diffie_hellman(&bad).is_err());
    // ECIES interoperates with chaincall_identity::ecies both ways.
    let ct = seal(crypto, &public, b"ctx", b"nonce");
    assert_eq!(
        chaincall_identity::ecies::open(&key, b"ctx", &ct)
            .unwrap()
            .as_slice(),
        b"nonce"
    );
    let ct = chaincall_identity::ecies::seal(&public, b"ctx", b"nonce");
    assert_eq!(
        open(&*loaded, &public, b"ctx", &ct).unwrap().as_slice(),
        b"nonce"
    );
    assert!(open(&*loaded, &public, b"other", &ct).is_none());
}

#[cfg(test)]
mod tests {
    #[test]
    fn rustcrypto_matches_the_identity_crate() {
        super::check_provider(&super::RustCrypto);
    }
}
