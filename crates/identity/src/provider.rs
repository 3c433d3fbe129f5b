//! The crypto provider: the P-256 operations the protocol cores need (ECDH, ECDSA, ephemeral keys),
//! behind traits, so a shell can plug in a faster backend without the cores naming one.
//!
//! [`RustCrypto`] (the `p256` crate) is the default. `chaincall-tls-psk` offers an OpenSSL provider:
//! on the reference machine OpenSSL's P-256 is about ten times faster (assembly, precomputed tables).
//! Every provider produces the same wire formats: compressed points, `r ‖ s` low-S signatures, and
//! [`ecies`](crate::ecies) ciphertexts (one implementation over whichever provider's ECDH).
//!
//! Ephemeral keys are drawn from a randomness source the caller passes in (the OS CSPRNG in
//! production, a seeded generator in tests; see [`Randomness`](crate::Randomness)).

use std::fmt;

use p256::elliptic_curve::sec1::ToEncodedPoint;
use rand_core::CryptoRngCore;
use zeroize::Zeroizing;

use crate::{IdentityKey, IdentitySignature, PublicIdentityKey};

/// A compressed SEC1 P-256 point.
pub type Point = [u8; 33];

/// Why a provider operation failed: the peer's point or signature is invalid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidInput;

/// An ephemeral P-256 secret, used for one key agreement. Implementations zeroize on drop.
pub trait EphemeralSecret: Send + Sync {
    /// The public point, compressed.
    fn public(&self) -> Point;
    /// ECDH with a peer's compressed point: the shared x-coordinate. Refuses points not on the curve.
    fn diffie_hellman(&self, peer: &Point) -> Result<Zeroizing<[u8; 32]>, InvalidInput>;
}

/// The operations on our identity's secret key, prepared once (per process or per session).
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
    /// A fresh ephemeral key whose scalar is drawn from `rng`.
    fn generate_ephemeral(&self, rng: &mut dyn CryptoRngCore) -> Box<dyn EphemeralSecret>;
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

/// A `p256` ephemeral key (zeroized on drop by its crate).
struct RcEphemeral(p256::ecdh::EphemeralSecret);

fn rc_point(peer: &Point) -> Result<p256::PublicKey, InvalidInput> {
    p256::PublicKey::from_sec1_bytes(peer).map_err(|_| InvalidInput)
}

/// The compressed SEC1 encoding of a point.
pub fn compress(point: &p256::PublicKey) -> Point {
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

/// The identity key itself serves as its RustCrypto-prepared secret (the signing key is already
/// prepared inside it), so ECIES can open with a plain [`IdentityKey`].
impl IdentitySecret for IdentityKey {
    fn sign(&self, message: &[u8]) -> IdentitySignature {
        IdentityKey::sign(self, message)
    }
    fn diffie_hellman(&self, peer: &Point) -> Result<Zeroizing<[u8; 32]>, InvalidInput> {
        let peer = rc_point(peer)?;
        let shared =
            p256::ecdh::diffie_hellman(self.as_p256().to_nonzero_scalar(), peer.as_affine());
        Ok(Zeroizing::new((*shared.raw_secret_bytes()).into()))
    }
}

impl CryptoProvider for RustCrypto {
    fn name(&self) -> &'static str {
        "rustcrypto"
    }
    fn generate_ephemeral(&self, mut rng: &mut dyn CryptoRngCore) -> Box<dyn EphemeralSecret> {
        Box::new(RcEphemeral(p256::ecdh::EphemeralSecret::random(&mut rng)))
    }
    fn load_identity(&self, key: &IdentityKey) -> Box<dyn IdentitySecret> {
        Box::new(key.clone())
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
