//! The engine's configuration: identity (ZID, SSRC), the algorithms offered, the retained-secret
//! cache, the auxiliary secret and its policy, randomness and limits.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use chaincall_identity::Randomness;
use chaincall_srtp::Profile;
use zeroize::Zeroizing;

use crate::cache::SecretCache;
use crate::wire::{AlgoId, Zid};

/// Which side this engine means to play. Both ends send Hello; an `Initiator` sends Commit once
/// the Hellos are exchanged, a `Responder` waits for the peer's Commit. When both commit, the
/// higher hvi wins (RFC 6189 §4.2), so two `Initiator`s still agree; two `Responder`s never
/// start and fail at the handshake time limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Sends Commit.
    Initiator,
    /// Waits for Commit.
    Responder,
}

/// Key agreement types (RFC 6189 §5.1.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyAgreement {
    /// X25519 (RFC 7748), `X255`.
    X255,
    /// ECDH over P-256, `EC25`.
    Ec25,
    /// Finite-field DH in the 3072-bit MODP group (RFC 3526 §4), `DH3k`: RFC 6189's mandatory
    /// key agreement, and the only one Debian's libbzrtp 5.1 offers (built without X25519).
    Dh3k,
}

/// SRTP authentication tags (RFC 6189 §5.1.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthTag {
    /// HMAC-SHA1 32-bit tag, `HS32`.
    Hs32,
    /// HMAC-SHA1 80-bit tag, `HS80`.
    Hs80,
}

/// SAS renderings (RFC 6189 §5.1.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SasType {
    /// Four base-32 characters, `B32 `.
    B32,
    /// Two PGP words, `B256`.
    B256,
}

/// The hash, always S256 here.
pub(crate) const HASH_S256: AlgoId = AlgoId(*b"S256");
/// The cipher, always AES1 (AES-128) here.
pub(crate) const CIPHER_AES1: AlgoId = AlgoId(*b"AES1");

impl KeyAgreement {
    /// The wire name.
    pub fn id(self) -> AlgoId {
        AlgoId(match self {
            KeyAgreement::X255 => *b"X255",
            KeyAgreement::Ec25 => *b"EC25",
            KeyAgreement::Dh3k => *b"DH3k",
        })
    }

    /// Octets of the public value in DHPart.
    pub fn pv_len(self) -> usize {
        match self {
            KeyAgreement::X255 => 32,
            KeyAgreement::Ec25 => 64,
            KeyAgreement::Dh3k => 384,
        }
    }
}

impl AuthTag {
    /// The wire name.
    pub fn id(self) -> AlgoId {
        AlgoId(match self {
            AuthTag::Hs32 => *b"HS32",
            AuthTag::Hs80 => *b"HS80",
        })
    }

    /// The SRTP profile this tag and AES1 make (RFC 6189 §5.1.4 with AES-CM-128).
    pub fn srtp_profile(self) -> Profile {
        match self {
            AuthTag::Hs32 => Profile::AesCm128HmacSha1_32,
            AuthTag::Hs80 => Profile::AesCm128HmacSha1_80,
        }
    }
}

impl SasType {
    /// The wire name.
    pub fn id(self) -> AlgoId {
        AlgoId(match self {
            SasType::B32 => *b"B32 ",
            SasType::B256 => *b"B256",
        })
    }
}

/// What to do when the auxiliary secret does not match the peer's (RFC 6189 §4.3: the RFC falls
/// back to a DH without it and leaves the decision to the SAS).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuxPolicy {
    /// The RFC's behaviour: go on without the aux secret and report the mismatch.
    Soft,
    /// Fail the exchange with an Error: for a secret both ends must hold (chaincall's chain
    /// binding), a mismatch means the peer is not who the call was bound to.
    Fatal,
}

/// An auxiliary secret (auxsecret, RFC 6189 §4.3), zeroized on drop and never printed.
#[derive(Clone)]
pub struct AuxSecret(pub(crate) Zeroizing<Vec<u8>>);

impl AuxSecret {
    /// Wraps the secret octets.
    pub fn new(bytes: &[u8]) -> Self {
        Self(Zeroizing::new(bytes.to_vec()))
    }
}

impl fmt::Debug for AuxSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AuxSecret(redacted)")
    }
}

/// What an auxiliary secret can be bound to, known once the peer's Hello arrived (roles are not
/// decided yet: a derivation must not depend on who initiates, e.g. order by ZID).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuxBinding {
    /// Our ZID.
    pub own_zid: Zid,
    /// The peer's ZID, from its Hello.
    pub peer_zid: Zid,
    /// Our H3 (in our Hello).
    pub own_h3: [u8; 32],
    /// The peer's H3 (in its Hello).
    pub peer_h3: [u8; 32],
}

/// Computes the auxiliary secret for one exchange when the peer's Hello arrives: the hook for
/// chaincall's chain binding (a static ECDH between the two on-chain identity keys, bound to the
/// [`AuxBinding`]; see `docs/zrtp.md`). `None`: no aux secret for this peer.
pub trait AuxSecretSource: Send + Sync {
    /// The secret for this exchange.
    fn aux_secret(&self, binding: &AuxBinding) -> Option<AuxSecret>;
}

/// The engine's configuration. Build with [`ZrtpConfig::new`] and the `with_*` methods.
#[derive(Clone)]
pub struct ZrtpConfig {
    /// Our ZID.
    pub zid: Zid,
    /// The SSRC put in ZRTP packet headers (the media stream's).
    pub ssrc: u32,
    /// The Hello's client identifier (16 octets, space padded).
    pub client_id: [u8; 16],
    /// Key agreements offered, preferred first (1 to 7).
    pub key_agreements: Vec<KeyAgreement>,
    /// SRTP auth tags offered, preferred first (1 to 7).
    pub auth_tags: Vec<AuthTag>,
    /// SAS types offered, preferred first (1 to 7).
    pub sas_types: Vec<SasType>,
    /// The retained-secret cache.
    pub cache: Arc<dyn SecretCache>,
    /// A fixed auxiliary secret, if any.
    pub aux_secret: Option<AuxSecret>,
    /// A per-exchange auxiliary secret, computed when the peer's Hello arrives; replaces
    /// `aux_secret` when it returns one.
    pub aux_source: Option<Arc<dyn AuxSecretSource>>,
    /// What a mismatching auxiliary secret does.
    pub aux_policy: AuxPolicy,
    /// A PBX secret (RFC 6189 §7.3.1), if any.
    pub pbx_secret: Option<AuxSecret>,
    /// The peer's Hello hash from signalling (`a=zrtp-hash`, §8.1): a Hello that does not hash
    /// to it is refused.
    pub peer_hello_hash: Option<[u8; 32]>,
    /// Where H0, IVs, DH keys and IDs come from.
    pub randomness: Randomness,
    /// The limit for the whole exchange, from `new` to secure.
    pub handshake_timeout: Duration,
}

impl fmt::Debug for ZrtpConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ZrtpConfig")
            .field("zid", &self.zid)
            .field("ssrc", &self.ssrc)
            .field("key_agreements", &self.key_agreements)
            .field("auth_tags", &self.auth_tags)
            .field("sas_types", &self.sas_types)
            .field("aux_secret", &self.aux_secret.is_some())
            .field("aux_source", &self.aux_source.is_some())
            .field("aux_policy", &self.aux_policy)
            .finish_non_exhaustive()
    }
}

impl ZrtpConfig {
    /// Defaults: X255 then EC25, HS80 then HS32, B32 then B256, no aux secret (policy soft),
    /// OS randomness, 30 s for the handshake.
    pub fn new(zid: Zid, ssrc: u32, cache: Arc<dyn SecretCache>) -> Self {
        Self {
            zid,
            ssrc,
            client_id: *b"chaincall       ",
            key_agreements: vec![KeyAgreement::X255, KeyAgreement::Ec25],
            auth_tags: vec![AuthTag::Hs80, AuthTag::Hs32],
            sas_types: vec![SasType::B32, SasType::B256],
            cache,
            aux_secret: None,
            aux_source: None,
            aux_policy: AuxPolicy::Soft,
            pbx_secret: None,
            peer_hello_hash: None,
            randomness: Randomness::os(),
            handshake_timeout: Duration::from_secs(30),
        }
    }

    /// Offers only these key agreements, in this order.
    pub fn with_key_agreements(mut self, kas: &[KeyAgreement]) -> Self {
        self.key_agreements = kas.to_vec();
        self
    }

    /// Offers only these SRTP auth tags, in this order.
    pub fn with_auth_tags(mut self, tags: &[AuthTag]) -> Self {
        self.auth_tags = tags.to_vec();
        self
    }

    /// Offers only these SAS types, in this order.
    pub fn with_sas_types(mut self, types: &[SasType]) -> Self {
        self.sas_types = types.to_vec();
        self
    }

    /// Mixes in an auxiliary secret, with the given mismatch policy.
    pub fn with_aux_secret(mut self, secret: AuxSecret, policy: AuxPolicy) -> Self {
        self.aux_secret = Some(secret);
        self.aux_policy = policy;
        self
    }

    /// Computes the auxiliary secret per exchange from `source`, with the given mismatch policy.
    pub fn with_aux_source(mut self, source: Arc<dyn AuxSecretSource>, policy: AuxPolicy) -> Self {
        self.aux_source = Some(source);
        self.aux_policy = policy;
        self
    }

    /// Checks the peer's Hello against the hash signalling carried.
    pub fn with_peer_hello_hash(mut self, hash: [u8; 32]) -> Self {
        self.peer_hello_hash = Some(hash);
        self
    }

    /// Draws randomness from `rng` (seeded in tests).
    pub fn with_randomness(mut self, rng: Randomness) -> Self {
        self.randomness = rng;
        self
    }

    /// Sets the handshake time limit.
    pub fn with_handshake_timeout(mut self, limit: Duration) -> Self {
        self.handshake_timeout = limit;
        self
    }

    pub(crate) fn validate(&self) -> Result<(), crate::ZrtpError> {
        let ok = |n: usize| (1..=7).contains(&n);
        if !ok(self.key_agreements.len()) || !ok(self.auth_tags.len()) || !ok(self.sas_types.len())
        {
            return Err(crate::ZrtpError::InvalidConfig(
                "each algorithm list needs 1 to 7 entries",
            ));
        }
        if self.aux_policy == AuxPolicy::Fatal
            && self.aux_secret.is_none()
            && self.aux_source.is_none()
        {
            return Err(crate::ZrtpError::InvalidConfig(
                "a fatal aux-secret policy needs an aux secret",
            ));
        }
        Ok(())
    }
}
