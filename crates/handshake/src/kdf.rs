//! Transcripts and key derivation (HKDF-SHA-256, HMAC-SHA-256).

use chaincall_identity::{IdentityName, PublicIdentityKey};
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::wire::{VERSION, put_name};
use crate::{Protocol, Psk, PskIdentity};

/// Labels: every derived value and every signature has its own, all carrying the version.
pub(crate) const LABEL_TRANSCRIPT: &[u8] = b"chaincall-hs v1 transcript";
pub(crate) const LABEL_PSK: &[u8] = b"chaincall-hs v1 psk";
pub(crate) const LABEL_PSK_ID: &[u8] = b"chaincall-hs v1 psk identity";
pub(crate) const LABEL_STS_SALT: &[u8] = b"chaincall-hs v1 sts";
pub(crate) const LABEL_STS_RESP_MAC: &[u8] = b"chaincall-hs v1 sts responder mac";
pub(crate) const LABEL_STS_INIT_MAC: &[u8] = b"chaincall-hs v1 sts initiator mac";
pub(crate) const LABEL_STS_RESP_SIG: &[u8] = b"chaincall-hs v1 sts responder signature";
pub(crate) const LABEL_STS_INIT_SIG: &[u8] = b"chaincall-hs v1 sts initiator signature";
pub(crate) const CTX_NSL_MSG1: &[u8] = b"chaincall-hs v1 nsl msg1";
pub(crate) const CTX_NSL_MSG2: &[u8] = b"chaincall-hs v1 nsl msg2";
pub(crate) const CTX_NSL_MSG3: &[u8] = b"chaincall-hs v1 nsl msg3";

/// A running hash of everything both parties must agree on: version, protocol, both identities and
/// both approved keys (in initiator, responder order), then every frame exactly as sent.
#[derive(Clone)]
pub(crate) struct Transcript(Sha256);

impl Transcript {
    pub(crate) fn new(
        protocol: Protocol,
        initiator: &IdentityName,
        initiator_key: &PublicIdentityKey,
        responder: &IdentityName,
        responder_key: &PublicIdentityKey,
    ) -> Self {
        let mut h = Sha256::new();
        h.update(LABEL_TRANSCRIPT);
        h.update([VERSION, protocol.id()]);
        let mut names = Vec::with_capacity(2 * 257);
        put_name(&mut names, initiator);
        put_name(&mut names, responder);
        h.update(&names);
        h.update(initiator_key.to_bytes());
        h.update(responder_key.to_bytes());
        Self(h)
    }

    pub(crate) fn absorb(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    pub(crate) fn hash(&self) -> [u8; 32] {
        self.0.clone().finalize().into()
    }
}

/// The PSK and its identity: HKDF with the final transcript hash as salt over the shared secret.
pub(crate) fn derive_psk(ikm: &[u8], transcript_hash: &[u8; 32]) -> (Psk, PskIdentity) {
    let hk = Hkdf::<Sha256>::new(Some(transcript_hash), ikm);
    let mut psk = Zeroizing::new([0u8; 32]);
    // Invariant: 32 and 16 bytes are far below HKDF-SHA-256's 8160-byte limit.
    hk.expand(LABEL_PSK, psk.as_mut()).expect("32 <= 8160");
    let mut id = [0u8; 16];
    hk.expand(LABEL_PSK_ID, &mut id).expect("16 <= 8160");
    (Psk::from_bytes(*psk), PskIdentity::from_bytes(id))
}

/// STS MAC keys: HKDF-Extract over the ECDH secret, expanded once per direction.
pub(crate) struct StsKeys {
    pub(crate) responder_mac: Zeroizing<[u8; 32]>,
    pub(crate) initiator_mac: Zeroizing<[u8; 32]>,
}

pub(crate) fn sts_keys(shared: &[u8]) -> StsKeys {
    let hk = Hkdf::<Sha256>::new(Some(LABEL_STS_SALT), shared);
    let mut responder_mac = Zeroizing::new([0u8; 32]);
    let mut initiator_mac = Zeroizing::new([0u8; 32]);
    hk.expand(LABEL_STS_RESP_MAC, responder_mac.as_mut())
        .expect("32 <= 8160");
    hk.expand(LABEL_STS_INIT_MAC, initiator_mac.as_mut())
        .expect("32 <= 8160");
    StsKeys {
        responder_mac,
        initiator_mac,
    }
}

pub(crate) fn mac(key: &[u8; 32], data: &[&[u8]]) -> [u8; 32] {
    // Invariant: HMAC accepts keys of any length.
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("any key length");
    for d in data {
        m.update(d);
    }
    m.finalize().into_bytes().into()
}

/// Constant-time MAC check.
pub(crate) fn mac_verify(key: &[u8; 32], data: &[&[u8]], tag: &[u8]) -> bool {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("any key length");
    for d in data {
        m.update(d);
    }
    m.verify_slice(tag).is_ok()
}

/// What a party signs in STS: its role's label and the transcript hash at that point.
pub(crate) fn signed_content(label: &[u8], transcript_hash: &[u8; 32]) -> Vec<u8> {
    [label, transcript_hash.as_slice()].concat()
}

/// The freshness token a responder's replay cache keys on.
pub(crate) fn replay_token(protocol: Protocol, fresh: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"chaincall-hs v1 replay");
    h.update([protocol.id()]);
    h.update(fresh);
    h.finalize().into()
}
