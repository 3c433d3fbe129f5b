//! The three key-transport methods, each as an initiator and a responder (RFC 3830 §3, §5):
//!
//! | mode | I_MESSAGE (offer, in the INVITE) | R_MESSAGE (answer, in the 200 OK) |
//! | --- | --- | --- |
//! | PKE (§3.2) | HDR, T, RAND, IDi, IDr, SP, KEMAC, PKE, SIGNi | only if V: HDR, T, IDr, V |
//! | DH-SIGN (§3.3) | HDR, T, RAND, IDi, IDr, SP, DHi, SIGNi | HDR, T, IDr, IDi, DHr, DHi, SIGNr |
//! | PSK (§3.1) | HDR, T, RAND, IDi, IDr, SP, KEMAC | only if V: HDR, T, IDr, V |
//!
//! Identities are URIs of chaincall names; their keys come from a [`KeyDirectory`], and only
//! approved keys are used. Each accepted exchange yields one [`SrtpKeys`] per crypto session.
//!
//! Split by concern: `initiator` and `responder` hold the two state machines, `parts` the checks
//! on a decoded message, `keys` the crypto sessions and their key derivation, `sign` the SIGN
//! payload, `dh` the ECDH values, `pke` the envelope's ECIES context.

use std::sync::Arc;

use chaincall_identity::{CryptoProvider, IdentityName, Randomness, RustCrypto, Secret};

use crate::policy::SrtpPolicy;

/// ECIES context label for the PKE envelope: a ciphertext made for MIKEY opens nowhere else. The
/// exchange's identities, CSB ID and RAND follow it ([`pke::pke_context`]).
const PKE_CONTEXT_LABEL: &[u8] = b"chaincall mikey pke env_key v2";
/// RAND length: RFC 3830 §6.11 asks for at least 128 bits.
const RAND_LEN: usize = 16;
/// TGK length (PKE, PSK). The TGK only feeds the PRF; 256 bits is one PRF chunk.
const TGK_LEN: usize = 32;
/// Envelope key length (PKE).
const ENV_KEY_LEN: usize = 32;
/// Shortest PSK accepted (RFC 3830 §9.1 warns about guessable keys).
const MIN_PSK_LEN: usize = 16;
/// ECDSA P-256 `r || s`.
const SIG_LEN: usize = 64;

/// The key-transport method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    /// Pre-shared key (§3.1).
    Psk,
    /// Public-key envelope to the responder's on-chain key, signed by the initiator (§3.2).
    Pke,
    /// Signed ephemeral ECDH, Station-to-Station (§3.3): forward secrecy.
    DhSign,
}

impl Mode {
    /// The mode's name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Psk => "PSK",
            Self::Pke => "PKE",
            Self::DhSign => "DH-SIGN",
        }
    }
}

/// One SRTP stream the offer keys: its SSRC (0 when not yet known) and rollover counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stream {
    /// The sender's SSRC.
    pub ssrc: u32,
    /// The current rollover counter (0 for a new stream).
    pub roc: u32,
}

/// What an initiator offers.
#[derive(Debug, Clone)]
pub struct OfferConfig {
    /// Our identity (IDi).
    pub initiator: IdentityName,
    /// The callee (IDr); its key is looked up in the directory.
    pub responder: IdentityName,
    /// SIP domain for `sip:+NUMBER@domain` IDs; `None` writes `tel:` URIs.
    pub sip_domain: Option<String>,
    /// One crypto session per stream (CS ID = position + 1), at most 255.
    pub streams: Vec<Stream>,
    /// The SRTP policy for every stream.
    pub policy: SrtpPolicy,
    /// PSK/PKE: ask for a verification message (V flag, RFC 3830 §3.1-3.2). On by default: the
    /// V MAC proves the responder derived this exchange's transport keys (it holds the PSK, or
    /// opened the envelope sealed to its on-chain key), which is the only key confirmation and
    /// responder authentication these modes have. DH always has a signed answer.
    pub request_verification: bool,
    /// The P-256 backend for signing, ECIES and ECDH ([`RustCrypto`] by default).
    pub crypto: Arc<dyn CryptoProvider>,
    /// Where CSB IDs, RANDs, keys and ephemeral keys come from (the OS CSPRNG by default; seeded
    /// in tests, so an offer can be replayed byte for byte).
    pub randomness: Randomness,
}

impl OfferConfig {
    /// One stream with unknown SSRC, the default policy, verification requested.
    pub fn new(initiator: IdentityName, responder: IdentityName) -> Self {
        Self {
            initiator,
            responder,
            sip_domain: None,
            streams: vec![Stream::default()],
            policy: SrtpPolicy::default(),
            request_verification: true,
            crypto: Arc::new(RustCrypto),
            randomness: Randomness::os(),
        }
    }
}

/// The SRTP master key and salt of one crypto session (RFC 3830 §4.1.3), with the stream it keys.
#[derive(Clone, Debug)]
pub struct SrtpKeys {
    /// The crypto session ID (1-based position in the CS ID map).
    pub cs_id: u8,
    /// The SSRC from the CS ID map.
    pub ssrc: u32,
    /// The ROC from the CS ID map.
    pub roc: u32,
    /// The policy for this session.
    pub policy: SrtpPolicy,
    master_key: Secret<Vec<u8>>,
    master_salt: Secret<Vec<u8>>,
}

impl SrtpKeys {
    /// The SRTP master key (TEK). Secret: hand it to SRTP, never log it.
    pub fn dangerous_master_key(&self) -> &[u8] {
        &self.master_key
    }

    /// The SRTP master salt. Secret.
    pub fn dangerous_master_salt(&self) -> &[u8] {
        &self.master_salt
    }
}

mod dh;
mod initiator;
mod keys;
mod parts;
mod pke;
mod responder;
mod sign;

pub use initiator::Initiator;
pub use responder::{Accepted, OfferSigner, Responder, ResponderConfig};
