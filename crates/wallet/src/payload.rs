//! The sealed request payloads of `/v1/onboard` and `/v1/approve`.
//!
//! # The channel, and why one-sided encryption is enough here
//!
//! The newcomer has no on-chain key yet, so nothing can authenticate *it*; what must hold is:
//!
//! - **Confidentiality to the server.** The payload (receipt with its purchase token, number,
//!   wallet, declared key) is sealed with [`chaincall_identity::ecies`] to the wallet server's
//!   identity key, which the phone looks up on chain under the server's domain name (approved by
//!   the keystore owner, so no PKI is needed). Only the server can read it; a network attacker sees
//!   an ephemeral P-256 key and ciphertext.
//! - **Integrity.** AES-256-GCM authenticates the whole plaintext under a key only the sender and the
//!   server can derive; a flipped bit fails to open. The HKDF context differs per endpoint
//!   ([`ONBOARD_CONTEXT`], [`APPROVE_CONTEXT`]), so an onboarding payload cannot be replayed as an
//!   approval or the reverse.
//! - **Binding by the receipt.** Who sent the payload does not matter; what it binds does. The store's
//!   RSA signature over the purchase JSON proves that someone paid, and the server records the first
//!   {receipt, number, wallet, key} it sees for that receipt, once ever. Only the buyer holds the
//!   receipt (the store hands it to the app, and it travels only sealed), so only the buyer can bind
//!   it. Approval then requires the chain's pending entry to match the recorded number, wallet and
//!   key, and the contract itself binds the entry to its submitting wallet and receipt commitment.
//! - **The number is not the payload's to choose.** A paid receipt says nothing about which
//!   number its buyer may use; the server's [`crate::number::NumberVerifier`] decides it
//!   (operator-assigned, or proven by a one-time code in `code`) before the receipt is bound.
//! - **Proof of possession.** `/v1/approve` carries `proof`, the identity key's signature over
//!   [`possession_message`] (id, wallet, receipt commitment), so nobody can put on chain a key
//!   they do not hold. See `docs/onboarding.md`.
//! - **Freshness.** The plaintext carries a timestamp and a random nonce; the server refuses
//!   timestamps outside its window and nonces already seen within it, so a captured ciphertext
//!   cannot be replayed (and replays would be idempotent anyway).
//!
//! Responses are not encrypted: they carry only the onboarding state and public transaction hashes.
//! HPKE (RFC 9180) in base mode would give the same properties; the ECIES here is the project's
//! shared primitive (ephemeral-static ECDH + HKDF-SHA-256 + AES-256-GCM, the same building blocks as
//! HPKE's DHKEM(P-256)), so phones need no second construction.

use std::str::FromStr;

use alloy::primitives::{Address, B256, FixedBytes};
use chaincall_chain::ClientId;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chaincall_identity::Randomness;
use chaincall_identity::{IdentityKey, IdentitySignature, PublicIdentityKey, Secret, ecies};
use serde::{Deserialize, Serialize};

use crate::receipt::Receipt;

/// ECIES context of onboarding payloads.
pub const ONBOARD_CONTEXT: &[u8] = b"chaincall wallet v1 onboard";
/// ECIES context of approval payloads.
pub const APPROVE_CONTEXT: &[u8] = b"chaincall wallet v1 approve";
/// ECIES context of one-time-code requests (`/v1/number/code`).
pub const CODE_CONTEXT: &[u8] = b"chaincall wallet v1 number code";
/// ECIES context of device-recovery requests (`/v1/recover`).
pub const RECOVER_CONTEXT: &[u8] = b"chaincall wallet v1 recover";

/// The keystore's receipt commitment (`chaincall_chain::receipt_commitment`).
pub type Commitment = FixedBytes<8>;

/// Domain separation of the proof of possession: no other chaincall signature starts so.
/// (`chaincall_chain::POSSESSION_CONTEXT`: the contract's `addClientWithProof` checks the same
/// message on chain.)
pub const POSSESSION_CONTEXT: &[u8] = chaincall_chain::POSSESSION_CONTEXT;

/// The message the identity key signs to prove the registrant holds it: [`POSSESSION_CONTEXT`]
/// ‖ keystore id (32 bytes) ‖ wallet (20 bytes) ‖ receipt commitment (8 bytes, as `addClient`
/// takes it) — exactly what
/// `addClient` puts on chain beside the key, so the proof cannot be replayed for another number,
/// wallet or purchase. One definition with the chain crate's, so a phone's proof also passes the
/// contract's `addClientWithProof`.
pub fn possession_message(id: &ClientId, wallet: Address, commitment: &Commitment) -> Vec<u8> {
    chaincall_chain::possession_message(id, wallet, commitment)
}

/// The proof of possession for `key` over [`possession_message`].
pub fn prove_possession(
    key: &IdentityKey,
    id: &ClientId,
    wallet: Address,
    commitment: &Commitment,
) -> String {
    hex::encode(
        key.sign(&possession_message(id, wallet, commitment))
            .to_bytes(),
    )
}

/// Checks a proof of possession by `key`; false for anything but a valid low-S signature.
pub fn verify_possession(
    key: &PublicIdentityKey,
    id: &ClientId,
    wallet: Address,
    commitment: &Commitment,
    proof: &str,
) -> bool {
    verify_signature_hex(key, &possession_message(id, wallet, commitment), proof)
}

/// Checks a hex signature (optionally `0x`-prefixed) by `key` over `message`; false for anything
/// but a valid low-S signature. Shared by every proof the server checks (possession here, the
/// credentials request in [`crate::credentials`]).
pub fn verify_signature_hex(key: &PublicIdentityKey, message: &[u8], signature: &str) -> bool {
    let Ok(bytes) = hex::decode(signature.trim_start_matches("0x")) else {
        return false;
    };
    let Ok(signature) = IdentitySignature::from_slice(&bytes) else {
        return false;
    };
    key.verify(message, &signature).is_ok()
}

/// The plaintext of both requests. The one-time code and the proof of possession are
/// `<redacted>` in `Debug` (and the receipt's token, see [`Receipt`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OnboardPayload {
    /// The phone's new Ethereum wallet (`0x…`).
    pub wallet: String,
    /// The store receipt, verbatim.
    pub receipt: Receipt,
    /// The subscriber's E.164 number; with operator-assigned numbers, the number asked for, or
    /// empty for the next free one (the server decides either way).
    pub phone: String,
    /// The identity key the phone will put on chain: type tag.
    pub key_type: u8,
    /// The identity key the phone will put on chain: bytes, hex.
    pub public_key: String,
    /// Unix time in seconds when sealed.
    pub timestamp: u64,
    /// 16 random bytes, hex: unique per request.
    pub nonce: String,
    /// The one-time code sent to `phone` (the `sms_code` verifier). Never logged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<Secret<String>>,
    /// Proof of possession of the identity key ([`prove_possession`], hex): required by
    /// `/v1/approve`, where the number is known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proof: Option<Secret<String>>,
    /// Device recovery (`/v1/number/code`: the code is for recovering the number this receipt
    /// provisioned, not for a new onboarding).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub recover: bool,
}

/// The HTTP body of `/v1/onboard` and `/v1/approve`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SealedRequest {
    /// Base64 of the ECIES ciphertext of the JSON [`OnboardPayload`].
    pub sealed: String,
}

impl OnboardPayload {
    /// A payload stamped with the current time and a fresh nonce drawn from `randomness`.
    pub fn new(
        wallet: Address,
        receipt: Receipt,
        phone: &str,
        key: &PublicIdentityKey,
        randomness: &Randomness,
    ) -> Self {
        let nonce: [u8; 16] = randomness.bytes();
        Self {
            wallet: wallet.to_checksum(None),
            receipt,
            phone: phone.to_owned(),
            key_type: key.tag(),
            public_key: hex::encode(key.to_bytes()),
            timestamp: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            nonce: hex::encode(nonce),
            code: None,
            proof: None,
            recover: false,
        }
    }

    /// Marks the payload as a device recovery (`/v1/recover`, or a code request for recovering
    /// the number at `/v1/number/code`).
    pub fn recovering(mut self) -> Self {
        self.recover = true;
        self
    }

    /// Adds the one-time code.
    pub fn with_code(mut self, code: &str) -> Self {
        self.code = Some(code.trim().into());
        self
    }

    /// Adds the proof of possession of `key` for this payload's number and wallet and the
    /// receipt commitment of `receipt_hash` (the purchase's chain receipt hash).
    pub fn with_proof(mut self, key: &IdentityKey, id: &ClientId, receipt_hash: &B256) -> Self {
        let wallet = Address::from_str(&self.wallet).unwrap_or(Address::ZERO);
        let commitment = chaincall_chain::receipt_commitment(id, wallet, receipt_hash);
        self.proof = Some(prove_possession(key, id, wallet, &commitment).into());
        self
    }

    /// Seals the payload to the server's identity key for `context`.
    pub fn seal(&self, server: &PublicIdentityKey, context: &[u8]) -> SealedRequest {
        // A struct of strings and integers always serialises.
        let json = zeroize::Zeroizing::new(serde_json::to_vec(self).expect("payload serialises"));
        SealedRequest {
            sealed: STANDARD.encode(ecies::seal(server, context, &json)),
        }
    }

    /// Opens a sealed request with the server's identity key; `None` if it does not decrypt or is
    /// not a payload (the caller answers `payload_undecryptable` without saying which).
    pub fn open(key: &IdentityKey, context: &[u8], sealed: &SealedRequest) -> Option<Self> {
        let bytes = STANDARD.decode(sealed.sealed.trim()).ok()?;
        let plain = ecies::open(key, context, &bytes).ok()?;
        serde_json::from_slice(&plain).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The one-time code and the proof never reach a log line through `Debug`.
    #[test]
    fn debug_hides_code_receipt_and_proof() {
        let receipt = Receipt {
            original_json: "{\"purchaseToken\":\"tok-secret\"}".into(),
            signature: "sig".into(),
        };
        let key = IdentityKey::generate();
        let id = ClientId::of(&chaincall_identity::IdentityName::parse("+15550100001").unwrap());
        let p = OnboardPayload::new(
            Address::repeat_byte(1),
            receipt,
            "+15550100001",
            &key.public(),
            &Randomness::os(),
        )
        .with_code("123456")
        .with_proof(&key, &id, &B256::ZERO)
        .recovering();
        let shown = format!("{p:?}");
        for secret in ["123456", "tok-secret", p.proof.as_deref().unwrap()] {
            assert!(!shown.contains(secret), "{shown}");
        }
    }

    #[test]
    fn the_nonce_comes_from_the_given_randomness() {
        use rand_chacha::ChaCha20Rng;
        use rand_core::SeedableRng;
        let key = IdentityKey::generate().public();
        let payload = |randomness: &Randomness| {
            let receipt = Receipt {
                original_json: "{}".into(),
                signature: "sig".into(),
            };
            OnboardPayload::new(Address::ZERO, receipt, "+15550100001", &key, randomness).nonce
        };
        let seeded = || Randomness::seeded(ChaCha20Rng::from_seed([3; 32]));
        assert_eq!(
            payload(&seeded()),
            payload(&seeded()),
            "a seed replays the nonce"
        );
        assert_eq!(payload(&seeded()).len(), 32);
        assert_ne!(payload(&Randomness::os()), payload(&Randomness::os()));
    }

    #[test]
    fn possession_proof_binds_id_wallet_and_commitment() {
        let key = IdentityKey::generate();
        let id = ClientId::of(&chaincall_identity::IdentityName::parse("+15550100001").unwrap());
        let other = ClientId::of(&chaincall_identity::IdentityName::parse("+15550100002").unwrap());
        let (w, c) = (Address::repeat_byte(1), Commitment::repeat_byte(2));
        let proof = prove_possession(&key, &id, w, &c);
        assert!(verify_possession(&key.public(), &id, w, &c, &proof));
        assert!(!verify_possession(&key.public(), &other, w, &c, &proof));
        assert!(!verify_possession(
            &key.public(),
            &id,
            Address::repeat_byte(3),
            &c,
            &proof
        ));
        assert!(!verify_possession(
            &key.public(),
            &id,
            w,
            &Commitment::repeat_byte(4),
            &proof
        ));
        let stranger = IdentityKey::generate().public();
        assert!(!verify_possession(&stranger, &id, w, &c, &proof));
        assert!(!verify_possession(&key.public(), &id, w, &c, "zz"));
    }
}
