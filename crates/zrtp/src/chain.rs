//! chaincall's chain binding (`docs/zrtp.md`, "The chain binding"): an auxiliary secret only the
//! two holders of the parties' on-chain identity keys can compute, bound to one exchange.

use chaincall_identity::{IdentityKey, PublicIdentityKey};
use hmac::Mac;

use crate::config::{AuxBinding, AuxSecret, AuxSecretSource};

/// The label that versions the derivation.
const LABEL: &[u8] = b"chaincall zrtp aux v1";

/// The aux secret between our identity key and the peer's on-chain key:
///
/// ```text
/// Z   = ECDH(own identity key, peer's on-chain identity key)   (static-static, x-coordinate)
/// aux = HMAC-SHA-256(Z, "chaincall zrtp aux v1" ‖ ZIDlo ‖ ZIDhi ‖ H3lo ‖ H3hi)
/// ```
///
/// with both ZIDs and H3s in ascending ZID order: the roles are not decided when the peer's
/// Hello arrives (Commit contention may still swap them), so neither side may depend on them.
/// Use it with [`crate::AuxPolicy::Fatal`]: a peer without the key cannot compute it.
#[derive(Clone)]
pub struct ChainBinding {
    /// Zeroized on drop by `p256`.
    own: p256::SecretKey,
    peer: p256::PublicKey,
}

impl ChainBinding {
    /// The binding between `own` (our identity key) and `peer` (the peer's approved key, as
    /// looked up on chain).
    pub fn new(own: &IdentityKey, peer: &PublicIdentityKey) -> Self {
        Self {
            own: own.as_p256().clone(),
            peer: *peer.as_p256(),
        }
    }

    /// The binding from raw P-256 keys (tests).
    pub fn from_p256(own: &p256::SecretKey, peer: &p256::PublicKey) -> Self {
        Self {
            own: own.clone(),
            peer: *peer,
        }
    }
}

impl std::fmt::Debug for ChainBinding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ChainBinding(redacted)")
    }
}

impl AuxSecretSource for ChainBinding {
    fn aux_secret(&self, b: &AuxBinding) -> Option<AuxSecret> {
        let z = p256::ecdh::diffie_hellman(self.own.to_nonzero_scalar(), self.peer.as_affine());
        let (lo, hi) = if b.own_zid < b.peer_zid {
            ((b.own_zid, b.own_h3), (b.peer_zid, b.peer_h3))
        } else {
            ((b.peer_zid, b.peer_h3), (b.own_zid, b.own_h3))
        };
        let mut m = <hmac::Hmac<sha2::Sha256> as Mac>::new_from_slice(z.raw_secret_bytes()).ok()?;
        for part in [LABEL, &lo.0.0, &hi.0.0, &lo.1, &hi.1] {
            m.update(part);
        }
        Some(AuxSecret::new(&m.finalize().into_bytes()))
    }
}
