//! RFC 5626 flow tokens: which stream connection a dialog's leg lives on, carried in the
//! Record-Route sipd inserts, so in-dialog requests reach the connection that owns the binding.
//!
//! A flow is one accepted stream connection (TCP or TLS), named by a [`FlowId`] the core assigns
//! when the connection comes up and never reuses. The token is the flow id and an HMAC-SHA-256 tag
//! over it under a key drawn at random for each process, so a client cannot name another client's
//! connection: a token that does not verify is refused (403), and one naming a closed connection
//! gets 430 Flow Failed (RFC 5626 §5.3). Tokens do not survive a restart, as connections do not.
//!
//! Before this, requests were steered by the Contact *address* a client registered, which any
//! subscriber could set to another phone's address and so capture that phone's BYE, re-INVITE and
//! ACK (issue 13 item 4).

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// One stream connection, for as long as it lives; ids are never reused within a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlowId(pub u64);

/// Bytes of HMAC tag kept in a token (128 bits: forging one is guessing this).
const TAG_LEN: usize = 16;

/// Mints and checks flow tokens under one per-process key (zeroized on drop).
#[derive(Clone, zeroize::ZeroizeOnDrop)]
pub struct FlowTokens {
    key: [u8; 32],
}

impl std::fmt::Debug for FlowTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key is a secret: never printed.
        f.debug_struct("FlowTokens").finish_non_exhaustive()
    }
}

/// A Route's user part that is not a token sipd minted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("flow token not issued by this server")]
pub struct ForgedToken;

impl FlowTokens {
    /// Tokens under `key` (random per process; see the module docs).
    pub fn new(key: [u8; 32]) -> Self {
        FlowTokens { key }
    }

    fn mac(&self, id: FlowId) -> Hmac<Sha256> {
        let mut m = <Hmac<Sha256> as Mac>::new_from_slice(&self.key)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        m.update(b"chaincall-sipd flow token v1");
        m.update(&id.0.to_be_bytes());
        m
    }

    /// The token for `id`: 48 lowercase hex digits (id, then the tag), valid as a SIP URI user.
    pub fn token(&self, id: FlowId) -> String {
        let tag = self.mac(id).finalize().into_bytes();
        let mut s = hex::encode(id.0.to_be_bytes());
        s.push_str(&hex::encode(&tag[..TAG_LEN]));
        s
    }

    /// The flow a token names, if this process minted it (tag compared in constant time).
    pub fn verify(&self, token: &str) -> Result<FlowId, ForgedToken> {
        if token.len() != 2 * (8 + TAG_LEN) {
            return Err(ForgedToken);
        }
        let bytes = hex::decode(token).map_err(|_| ForgedToken)?;
        let (id, tag) = bytes.split_at(8);
        let id = FlowId(u64::from_be_bytes(id.try_into().map_err(|_| ForgedToken)?));
        self.mac(id)
            .verify_truncated_left(tag)
            .map_err(|_| ForgedToken)?;
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_verify_only_under_their_key_and_unaltered() {
        let t = FlowTokens::new([7; 32]);
        let tok = t.token(FlowId(42));
        assert_eq!(t.verify(&tok), Ok(FlowId(42)));
        assert_eq!(FlowTokens::new([8; 32]).verify(&tok), Err(ForgedToken));
        // Another flow id with the old tag.
        let mut other = hex::encode(43u64.to_be_bytes());
        other.push_str(&tok[16..]);
        assert_eq!(t.verify(&other), Err(ForgedToken));
        assert_eq!(t.verify("alice"), Err(ForgedToken));
        assert_eq!(t.verify(&tok[..46]), Err(ForgedToken));
        assert_eq!(t.verify(&"zz".repeat(24)), Err(ForgedToken));
    }
}
