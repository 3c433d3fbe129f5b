//! DH-SIGN's ECDH values: P-256 points as the DH payload carries them, and the TGK (§3.3).

use chaincall_identity::provider::{EphemeralSecret, Point};
use p256::elliptic_curve::sec1::ToEncodedPoint;
use zeroize::Zeroizing;

use crate::error::MikeyError;

/// MIKEY's DH payload carries the uncompressed point (65 bytes); the provider speaks compressed.
pub(super) fn encode_point(public: &Point) -> Vec<u8> {
    // Invariant: a provider's public point is on the curve.
    let point = p256::PublicKey::from_sec1_bytes(public).expect("provider point on P-256");
    point.to_encoded_point(false).as_bytes().to_vec()
}

pub(super) fn parse_point(value: &[u8]) -> Result<Point, MikeyError> {
    if value.first() != Some(&0x04) {
        return Err(MikeyError::InvalidDhValue("not an uncompressed SEC1 point"));
    }
    p256::PublicKey::from_sec1_bytes(value)
        .map(|point| chaincall_identity::provider::compress(&point))
        .map_err(|_| MikeyError::InvalidDhValue("not a point on P-256"))
}

/// ECDH with a point [`parse_point`] accepted: the shared x-coordinate, MIKEY's TGK (§3.3).
pub(super) fn dh_tgk(
    secret: &dyn EphemeralSecret,
    peer: &Point,
) -> Result<Zeroizing<Vec<u8>>, MikeyError> {
    let shared = secret
        .diffie_hellman(peer)
        .map_err(|_| MikeyError::InvalidDhValue("not a point on P-256"))?;
    Ok(Zeroizing::new(shared.to_vec()))
}
