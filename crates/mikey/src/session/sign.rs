//! The SIGN payload (RFC 3830 §6.5) and the approved keys that check it.

use chaincall_identity::provider::IdentitySecret;
use chaincall_identity::{
    CryptoProvider, IdentityName, IdentitySignature, KeyDirectory, PublicIdentityKey,
};

use crate::error::MikeyError;
use crate::message::{Payload, Sign, SignType};

use super::SIG_LEN;

/// A SIGN payload with a zero signature, encoded last and then filled in by [`sign_in_place`].
pub(super) fn sign_placeholder() -> Payload<'static> {
    Payload::Sign(Sign {
        s_type: SignType::EcdsaP256Sha256,
        signature: &[0; SIG_LEN],
    })
}

/// Signs `bytes[..len - 64]` and writes the signature into the last 64 bytes (the SIGN payload,
/// encoded last with a zero placeholder). RFC 3830 §5.2: the signature covers the whole message
/// except the signature field itself.
pub(super) fn sign_in_place(bytes: &mut [u8], key: &dyn IdentitySecret) {
    let split = bytes.len() - SIG_LEN;
    let sig = key.sign(&bytes[..split]);
    bytes[split..].copy_from_slice(sig.as_bytes());
}

pub(super) fn verify_sign(
    crypto: &dyn CryptoProvider,
    bytes: &[u8],
    sign: &Sign<'_>,
    key: &PublicIdentityKey,
    who: &IdentityName,
) -> Result<(), MikeyError> {
    if sign.s_type != SignType::EcdsaP256Sha256 {
        return Err(MikeyError::Unsupported(
            "signature type (only ECDSA P-256 SHA-256)",
        ));
    }
    let sig = IdentitySignature::from_slice(sign.signature)
        .map_err(|_| MikeyError::BadSignature(who.clone()))?;
    // The SIGN payload is last (the codec enforces it): the signed part is all but the signature.
    let covered = &bytes[..bytes.len() - sign.signature.len()];
    if crypto.verify(key, covered, &sig) {
        Ok(())
    } else {
        Err(MikeyError::BadSignature(who.clone()))
    }
}

pub(super) fn approved(
    dir: &dyn KeyDirectory,
    name: &IdentityName,
) -> Result<PublicIdentityKey, MikeyError> {
    dir.approved_key(name).map_err(MikeyError::from_directory)
}
