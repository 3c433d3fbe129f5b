//! The crypto provider the handshake runs on, and its ECIES and randomness glue.
//!
//! The provider traits live in [`chaincall_identity::provider`] (MIKEY and ECIES use them too) and are
//! re-exported here, so handshake users and providers (e.g. `chaincall-tls-psk`'s OpenSSL one) keep
//! naming `chaincall_handshake::crypto::…`. ECIES is [`chaincall_identity::ecies`] over the
//! [`LocalIdentity`]'s provider; randomness (nonces, ephemeral keys) is the identity's
//! [`Randomness`](chaincall_identity::Randomness).

use chaincall_identity::ecies;
use chaincall_identity::{IdentityKey, PublicIdentityKey};
use zeroize::Zeroizing;

pub use chaincall_identity::provider::{
    CryptoProvider, EphemeralSecret, IdentitySecret, InvalidInput, Point, RustCrypto,
};

use crate::LocalIdentity;

/// A fresh ephemeral key from `local`'s provider and randomness.
pub(crate) fn generate_ephemeral(local: &LocalIdentity) -> Box<dyn EphemeralSecret> {
    local
        .randomness()
        .with(|rng| local.crypto().generate_ephemeral(rng))
}

/// Seals `plaintext` to `recipient` with `local`'s provider and randomness.
pub(crate) fn seal(
    local: &LocalIdentity,
    recipient: &PublicIdentityKey,
    context: &[u8],
    plaintext: &[u8],
) -> Vec<u8> {
    local
        .randomness()
        .with(|rng| ecies::seal_with(local.crypto(), rng, recipient, context, plaintext))
}

/// Opens an ECIES ciphertext sealed to `local`'s identity key.
pub(crate) fn open(
    local: &LocalIdentity,
    context: &[u8],
    sealed: &[u8],
) -> Option<Zeroizing<Vec<u8>>> {
    ecies::open_with(local.secret(), local.public(), context, sealed).ok()
}

/// A test helper for provider implementations: checks one against the identity crate's own
/// signatures and ECIES, byte for byte where deterministic. Panics on a mismatch.
pub fn check_provider(crypto: &dyn CryptoProvider) {
    let key = IdentityKey::generate();
    let public = key.public();
    let loaded = crypto.load_identity(&key);
    let mut os = rand_core::OsRng;
    // Signatures: ours verify with the identity crate, and the identity crate's with ours.
    let sig = loaded.sign(b"transcript");
    public
        .verify(b"transcript", &sig)
        .expect("provider signature verifies");
    assert!(crypto.verify(&public, b"transcript", &key.sign(b"transcript")));
    assert!(!crypto.verify(&public, b"transcript!", &sig));
    // ECDH agrees across providers.
    let a = crypto.generate_ephemeral(&mut os);
    let b = RustCrypto.generate_ephemeral(&mut os);
    assert_eq!(
        *a.diffie_hellman(&b.public()).unwrap(),
        *b.diffie_hellman(&a.public()).unwrap()
    );
    let mut bad = a.public();
    bad[0] = 4;
    assert!(b.diffie_hellman(&bad).is_err() && a.diffie_hellman(&bad).is_err());
    // ECIES over this provider interoperates with ECIES over RustCrypto both ways.
    let ct = ecies::seal_with(crypto, &mut os, &public, b"ctx", b"nonce");
    assert_eq!(ecies::open(&key, b"ctx", &ct).unwrap().as_slice(), b"nonce");
    let ct = ecies::seal(&public, b"ctx", b"nonce");
    assert_eq!(
        ecies::open_with(&*loaded, &public, b"ctx", &ct)
            .unwrap()
            .as_slice(),
        b"nonce"
    );
    assert!(ecies::open_with(&*loaded, &public, b"other", &ct).is_err());
}

#[cfg(test)]
mod tests {
    #[test]
    fn rustcrypto_matches_the_identity_crate() {
        super::check_provider(&super::RustCrypto);
    }
}
