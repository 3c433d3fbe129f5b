//! Why a PASSporT or Identity header was refused, and the SIP response each refusal maps to.

use std::fmt;

/// A SIP response status: code and reason phrase, as a verifier sends it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SipStatus {
    /// The status code, e.g. 438.
    pub code: u16,
    /// The reason phrase RFC 8224 §6.2.2 recommends for it.
    pub reason: &'static str,
}

impl SipStatus {
    const fn new(code: u16, reason: &'static str) -> Self {
        Self { code, reason }
    }
}

impl fmt::Display for SipStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.code, self.reason)
    }
}

/// RFC 8224 §6.2.2: the request needs an Identity header it did not carry (or carried only
/// ones whose `ppt` the verifier does not support).
pub const USE_IDENTITY_HEADER: SipStatus = SipStatus::new(428, "Use Identity Header");
/// RFC 8224 §6.2.2: the credential named by `info` cannot be acquired.
pub const BAD_IDENTITY_INFO: SipStatus = SipStatus::new(436, "Bad Identity Info");
/// RFC 8224 §6.2.2: the credential was acquired but is not one the verifier accepts (untrusted,
/// not authoritative for the identity, unsupported algorithm).
pub const UNSUPPORTED_CREDENTIAL: SipStatus = SipStatus::new(437, "Unsupported Credential");
/// RFC 8224 §6.2.2: no valid and supported PASSporT (bad signature, malformed, wrong claims).
pub const INVALID_IDENTITY_HEADER: SipStatus = SipStatus::new(438, "Invalid Identity Header");
/// RFC 8224 §6.2.2: `iat` is outside the verifier's freshness window.
pub const STALE_DATE: SipStatus = SipStatus::new(403, "Stale Date");
/// RFC 3261 §21.5.4: the verifier cannot take the request now (its replay cache is full).
pub const SERVICE_UNAVAILABLE: SipStatus = SipStatus::new(503, "Service Unavailable");

/// Why a PASSporT or Identity header was refused (or could not be made).
///
/// [`PassportError::status`] maps each to the SIP response a verifier sends, in this one place.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PassportError {
    /// The request carried no Identity header where policy requires one.
    #[error("no Identity header")]
    Missing,
    /// The header value is longer than [`crate::MAX_IDENTITY_LEN`].
    #[error("Identity header of {len} bytes exceeds the limit of {max}")]
    TooLarge {
        /// Its length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The header, the JWS or a JSON object in it does not parse.
    #[error("malformed Identity header: {0}")]
    Malformed(&'static str),
    /// The compact form (RFC 8225 §7, empty payload) is not accepted: the full form is required.
    #[error("compact-form PASSporT refused: send the full form")]
    CompactForm,
    /// A claim the chaincall PASSporT needs is missing.
    #[error("PASSporT lacks the {0:?} claim")]
    MissingClaim(&'static str),
    /// `alg` (header parameter or JWS header) is not ES256.
    #[error("unsupported signature algorithm (only ES256)")]
    UnsupportedAlgorithm,
    /// A `ppt` extension is named (header parameter or JWS header); chaincall uses the base PASSporT.
    #[error("unsupported PASSporT extension ppt={0:?}")]
    UnsupportedPpt(String),
    /// The JWS header's `typ` is not `passport`.
    #[error("JWS typ is not \"passport\"")]
    WrongType,
    /// The JWS header's `kid` or `x5u` names another key than the `info` parameter.
    #[error("the PASSporT's {0} does not match the info parameter")]
    InfoMismatch(&'static str),
    /// The `info` parameter is missing.
    #[error("the Identity header has no info parameter")]
    MissingInfo,
    /// The `info` URI is not a form this verifier knows (for instance an HTTPS certificate URL).
    #[error("unknown info form: {0}")]
    UnknownInfo(&'static str),
    /// The `info` URI names a chain or keystore this verifier does not read.
    #[error(
        "info names keystore {keystore} on chain {chain_id}, which this verifier does not read"
    )]
    ForeignKeystore {
        /// The chain id named.
        chain_id: u64,
        /// The keystore named, `0x…`.
        keystore: String,
    },
    /// The keystore has no entry for the identity `info` names (reported by the caller's look-up).
    #[error("no key on chain for {0}")]
    KeyNotFound(String),
    /// The identity's on-chain key is not approved (pending or revoked; reported by the caller).
    #[error("the on-chain key of {name} is {status}")]
    KeyNotApproved {
        /// The identity.
        name: String,
        /// Its key's status on chain.
        status: &'static str,
    },
    /// The key named by `info` is not authoritative for the `orig` claim.
    #[error("the key of {info} cannot vouch for orig {orig}")]
    NotAuthoritative {
        /// The identity `info` names.
        info: String,
        /// The `orig` claim.
        orig: String,
    },
    /// `orig` is not the caller the request claims (its From): a token for one caller carried
    /// by a request from another.
    #[error("PASSporT orig {orig} is not the caller the request claims ({claimed})")]
    WrongOrig {
        /// The `orig` claim.
        orig: String,
        /// The caller the request claims.
        claimed: String,
    },
    /// The signature does not verify under the identity's key.
    #[error("PASSporT signature does not verify")]
    BadSignature,
    /// `iat` is older than the freshness window.
    #[error("PASSporT issued at {iat} is stale at {now}")]
    Stale {
        /// The `iat` claim.
        iat: u64,
        /// The verifier's clock.
        now: u64,
    },
    /// `iat` lies further in the future than the allowed clock skew.
    #[error("PASSporT issued at {iat} lies in the future at {now}")]
    FromTheFuture {
        /// The `iat` claim.
        iat: u64,
        /// The verifier's clock.
        now: u64,
    },
    /// `dest` does not name the party this request reached.
    #[error("PASSporT dest does not include {0}")]
    WrongDest(String),
    /// The media-key binding does not match the SDP received.
    #[error("PASSporT media-key binding does not match the SDP")]
    MediaMismatch,
    /// This PASSporT (or a malleated copy of its signature) was already accepted.
    #[error("PASSporT replayed")]
    Replayed,
    /// The replay cache is full of PASSporTs still inside the freshness window.
    #[error("replay cache full ({0} PASSporTs within the freshness window)")]
    ReplayCacheFull(usize),
}

impl PassportError {
    /// The SIP response a verifier answers with (RFC 8224 §6.2.2), the one mapping in the crate.
    pub fn status(&self) -> SipStatus {
        match self {
            // RFC 8224 §6.2.2: a header with an unsupported ppt counts as no header.
            Self::Missing | Self::UnsupportedPpt(_) => USE_IDENTITY_HEADER,
            Self::MissingInfo
            | Self::UnknownInfo(_)
            | Self::ForeignKeystore { .. }
            | Self::KeyNotFound(_) => BAD_IDENTITY_INFO,
            Self::UnsupportedAlgorithm
            | Self::KeyNotApproved { .. }
            | Self::NotAuthoritative { .. } => UNSUPPORTED_CREDENTIAL,
            Self::Stale { .. } | Self::FromTheFuture { .. } => STALE_DATE,
            Self::ReplayCacheFull(_) => SERVICE_UNAVAILABLE,
            Self::TooLarge { .. }
            | Self::Malformed(_)
            | Self::CompactForm
            | Self::MissingClaim(_)
            | Self::WrongType
            | Self::InfoMismatch(_)
            | Self::BadSignature
            | Self::WrongOrig { .. }
            | Self::WrongDest(_)
            | Self::MediaMismatch
            | Self::Replayed => INVALID_IDENTITY_HEADER,
        }
    }
}
