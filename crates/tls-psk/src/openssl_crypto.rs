//! The handshake's crypto provider over OpenSSL's P-256 (assembly, precomputed tables): about ten
//! times faster than the pure-Rust provider on the reference machine, same wire bytes.

use chaincall_handshake::crypto::{
    CryptoProvider, EphemeralSecret, IdentitySecret, InvalidInput, Point,
};
use chaincall_identity::{IdentityKey, IdentitySignature, PublicIdentityKey};
use openssl::bn::{BigNum, BigNumContext};
use openssl::ec::{EcGroup, EcKey, EcPoint, PointConversionForm};
use openssl::ecdsa::EcdsaSig;
use openssl::nid::Nid;
use openssl::pkey::{Private, Public};
use rand_core::CryptoRngCore;
use zeroize::Zeroizing;

/// The OpenSSL P-256 provider for [`chaincall_handshake`]. Install it with
/// [`LocalIdentity::with_crypto`](chaincall_handshake::LocalIdentity::with_crypto).
pub struct OpensslCrypto {
    group: EcGroup,
    half_order: BigNum,
}

impl std::fmt::Debug for OpensslCrypto {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OpensslCrypto(P-256)")
    }
}

impl OpensslCrypto {
    /// The provider.
    ///
    /// # Panics
    /// If OpenSSL lacks P-256 (no supported build does).
    pub fn new() -> Self {
        // Invariant: every OpenSSL build this crate links supports prime256v1.
        let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).expect("OpenSSL has P-256");
        let mut ctx = BigNumContext::new().expect("BN_CTX");
        let mut order = BigNum::new().expect("BIGNUM");
        group.order(&mut order, &mut ctx).expect("group order");
        let mut half_order = BigNum::new().expect("BIGNUM");
        half_order.rshift1(&order).expect("shift");
        Self { group, half_order }
    }
}

impl Default for OpensslCrypto {
    fn default() -> Self {
        Self::new()
    }
}

/// Decodes a compressed point. The square root of decompression is done by `p256` (an addition
/// chain, far cheaper than OpenSSL's generic `BN_mod_sqrt`); OpenSSL then gets the uncompressed
/// form and still checks the point is on the curve (`EC_POINT_oct2point`).
fn point(group: &EcGroup, ctx: &mut BigNumContext, bytes: &[u8]) -> Result<EcPoint, InvalidInput> {
    use p256::elliptic_curve::sec1::ToEncodedPoint;
    let decoded = p256::PublicKey::from_sec1_bytes(bytes).map_err(|_| InvalidInput)?;
    let full = decoded.to_encoded_point(false);
    EcPoint::from_bytes(group, full.as_bytes(), ctx).map_err(|_| InvalidInput)
}

fn point_key(group: &EcGroup, bytes: &[u8]) -> Result<EcKey<Public>, InvalidInput> {
    let mut ctx = BigNumContext::new().map_err(|_| InvalidInput)?;
    let p = point(group, &mut ctx, bytes)?;
    EcKey::from_public_key(group, &p).map_err(|_| InvalidInput)
}

/// ECDH as `ECDH_compute_key` does it (`EC_POINT_mul` of the peer point by our scalar, the shared
/// secret being the x-coordinate), without the EVP layer's per-call key conversions. P-256 has
/// cofactor 1, and `point` refused anything off the curve.
fn derive(
    secret: &BigNum,
    group: &EcGroup,
    peer: &Point,
) -> Result<Zeroizing<[u8; 32]>, InvalidInput> {
    let mut ctx = BigNumContext::new().map_err(|_| InvalidInput)?;
    let q = point(group, &mut ctx, peer)?;
    let mut shared = EcPoint::new(group).map_err(|_| InvalidInput)?;
    shared
        .mul2(group, &q, secret, &mut ctx)
        .map_err(|_| InvalidInput)?;
    let mut x = BigNum::new().map_err(|_| InvalidInput)?;
    let mut y = BigNum::new().map_err(|_| InvalidInput)?;
    shared
        .affine_coordinates(group, &mut x, &mut y, &mut ctx)
        .map_err(|_| InvalidInput)?;
    let bytes = Zeroizing::new(x.to_vec_padded(32).map_err(|_| InvalidInput)?);
    x.clear();
    y.clear();
    let mut out = Zeroizing::new([0u8; 32]);
    out.copy_from_slice(&bytes);
    Ok(out)
}

struct OsslEphemeral {
    // Cleared on drop (below).
    key: BigNum,
    public: Point,
    group: EcGroup,
}

impl Drop for OsslEphemeral {
    fn drop(&mut self) {
        self.key.clear();
    }
}

impl EphemeralSecret for OsslEphemeral {
    fn public(&self) -> Point {
        self.public
    }
    fn diffie_hellman(&self, peer: &Point) -> Result<Zeroizing<[u8; 32]>, InvalidInput> {
        derive(&self.key, &self.group, peer)
    }
}

struct OsslIdentity {
    // OpenSSL clears an EC_KEY's private scalar when it frees it.
    ec: EcKey<Private>,
    scalar: BigNum,
    group: EcGroup,
    half_order: BigNum,
}

impl Drop for OsslIdentity {
    fn drop(&mut self) {
        self.scalar.clear();
    }
}

impl IdentitySecret for OsslIdentity {
    fn sign(&self, message: &[u8]) -> IdentitySignature {
        let digest = openssl::sha::sha256(message);
        // Invariant: signing with a valid P-256 key fails only on allocation failure.
        let sig = EcdsaSig::sign(&digest, &self.ec).expect("ECDSA sign");
        let r = sig.r().to_vec_padded(32).expect("r < n fits 32 bytes");
        let s = if sig.s() > &*self.half_order {
            // Low-S, like the identity crate: s' = n - s.
            let mut ctx = BigNumContext::new().expect("BN_CTX");
            let mut order = BigNum::new().expect("BIGNUM");
            self.group.order(&mut order, &mut ctx).expect("order");
            let mut low = BigNum::new().expect("BIGNUM");
            low.checked_sub(&order, sig.s()).expect("n - s");
            low.to_vec_padded(32).expect("fits 32 bytes")
        } else {
            sig.s().to_vec_padded(32).expect("fits 32 bytes")
        };
        let mut out = [0u8; 64];
        out[..32].copy_from_slice(&r);
        out[32..].copy_from_slice(&s);
        IdentitySignature::from_slice(&out).expect("64 bytes")
    }

    fn diffie_hellman(&self, peer: &Point) -> Result<Zeroizing<[u8; 32]>, InvalidInput> {
        derive(&self.scalar, &self.group, peer)
    }
}

impl CryptoProvider for OpensslCrypto {
    fn name(&self) -> &'static str {
        "openssl"
    }

    fn generate_ephemeral(&self, mut rng: &mut dyn CryptoRngCore) -> Box<dyn EphemeralSecret> {
        // The scalar comes from the caller's randomness (seedable in tests); OpenSSL does the
        // fixed-base multiplication, the costly part, with its precomputed tables.
        let scalar: Zeroizing<[u8; 32]> =
            Zeroizing::new(p256::NonZeroScalar::random(&mut rng).to_bytes().into());
        // Invariant: these fail only on allocation failure, which we cannot survive.
        let key = BigNum::from_slice(scalar.as_ref()).expect("BIGNUM");
        let mut ctx = BigNumContext::new().expect("BN_CTX");
        let mut point = EcPoint::new(&self.group).expect("EC_POINT");
        point
            .mul_generator2(&self.group, &key, &mut ctx)
            .expect("scalar multiplication");
        let bytes = point
            .to_bytes(&self.group, PointConversionForm::COMPRESSED, &mut ctx)
            .expect("encode point");
        let mut public = [0u8; 33];
        public.copy_from_slice(&bytes);
        Box::new(OsslEphemeral {
            key,
            public,
            group: self.group_clone(),
        })
    }

    fn load_identity(&self, key: &IdentityKey) -> Box<dyn IdentitySecret> {
        let secret = key.dangerous_secret_bytes();
        let mut ctx = BigNumContext::new().expect("BN_CTX");
        // Invariant: an IdentityKey is a valid P-256 key pair.
        let d = BigNum::from_slice(&secret).expect("BIGNUM");
        let q =
            EcPoint::from_bytes(&self.group, &key.public().to_bytes(), &mut ctx).expect("point");
        let ec = EcKey::from_private_components(&self.group, &d, &q).expect("valid key pair");
        let d = ec.private_key().to_owned().expect("BIGNUM");
        Box::new(OsslIdentity {
            ec,
            scalar: d,
            group: self.group_clone(),
            half_order: self.half_order.to_owned().expect("BIGNUM"),
        })
    }

    fn verify(
        &self,
        key: &PublicIdentityKey,
        message: &[u8],
        signature: &IdentitySignature,
    ) -> bool {
        let Ok(ec) = point_key(&self.group, &key.to_bytes()) else {
            return false;
        };
        let bytes = signature.as_bytes();
        let (Ok(r), Ok(s)) = (
            BigNum::from_slice(&bytes[..32]),
            BigNum::from_slice(&bytes[32..]),
        ) else {
            return false;
        };
        let Ok(sig) = EcdsaSig::from_private_components(r, s) else {
            return false;
        };
        sig.verify(&openssl::sha::sha256(message), &ec)
            .unwrap_or(false)
    }
}

impl OpensslCrypto {
    fn group_clone(&self) -> EcGroup {
        // Invariant: as in new().
        EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).expect("OpenSSL has P-256")
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn openssl_matches_the_identity_crate() {
        for _ in 0..20 {
            chaincall_handshake::crypto::check_provider(&super::OpensslCrypto::new());
        }
    }
}
