//! The payloads of RFC 3830 §6 as borrowed views: every field of the wire format, nothing derived.

use std::fmt;

use super::registry::*;

/// The common header (RFC 3830 §6.1). The next-payload field is derived from the payload list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// What kind of message this is.
    pub data_type: DataType,
    /// V: the initiator asks for a verification message (PSK and PKE; ignored in DH, §6.1).
    pub v: bool,
    /// The PRF for key derivation.
    pub prf: PrfFunc,
    /// Crypto session bundle ID: random, names the exchange.
    pub csb_id: u32,
    /// The crypto sessions and how they map to security-protocol sessions.
    pub cs_map: CsIdMap,
}

/// The CS ID map (RFC 3830 §6.1.1).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CsIdMap {
    /// SRTP-ID map (type 0): one entry per crypto session; CS ID i is entry i (1-based).
    SrtpId(Vec<SrtpIdEntry>),
}

/// One crypto session of an SRTP-ID map (RFC 3830 §6.1.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SrtpIdEntry {
    /// The SP payload (policy number) that applies.
    pub policy_no: u8,
    /// The SRTP stream's SSRC (0: not yet known, RFC 4567 §7.1 / RFC 3830 §6.1.1).
    pub ssrc: u32,
    /// The stream's current rollover counter.
    pub roc: u32,
}

/// One MIKEY payload after the header.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Payload<'a> {
    /// Key data transport, §6.2.
    Kemac(Kemac<'a>),
    /// Envelope data, §6.3.
    Pke(Pke<'a>),
    /// DH data, §6.4.
    Dh(Dh<'a>),
    /// Signature, §6.5 (always last).
    Sign(Sign<'a>),
    /// Timestamp, §6.6.
    T(Timestamp),
    /// Identity, §6.7.
    Id(Id<'a>),
    /// Identity with role, RFC 6043 §6.6.
    IdR(IdR<'a>),
    /// Certificate, §6.7.
    Cert(Cert<'a>),
    /// Certificate hash, §6.8.
    Chash(Chash<'a>),
    /// Verification, §6.9.
    V(Verification<'a>),
    /// Security policy, §6.10.
    Sp(SecurityPolicy<'a>),
    /// Random value, §6.11.
    Rand(&'a [u8]),
    /// Error, §6.12.
    Err(ErrorCode),
    /// General extension, §6.15.
    GeneralExt(GeneralExt<'a>),
}

impl Payload<'_> {
    /// The payload type number of RFC 3830 Table 6.1.c.
    pub fn type_number(&self) -> u8 {
        use payload_type as pt;
        match self {
            Self::Kemac(_) => pt::KEMAC,
            Self::Pke(_) => pt::PKE,
            Self::Dh(_) => pt::DH,
            Self::Sign(_) => pt::SIGN,
            Self::T(_) => pt::T,
            Self::Id(_) => pt::ID,
            Self::IdR(_) => pt::IDR,
            Self::Cert(_) => pt::CERT,
            Self::Chash(_) => pt::CHASH,
            Self::V(_) => pt::V,
            Self::Sp(_) => pt::SP,
            Self::Rand(_) => pt::RAND,
            Self::Err(_) => pt::ERR,
            Self::GeneralExt(_) => pt::GENERAL_EXT,
        }
    }

    /// The payload's name as RFC 3830 writes it.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Kemac(_) => "KEMAC",
            Self::Pke(_) => "PKE",
            Self::Dh(_) => "DH",
            Self::Sign(_) => "SIGN",
            Self::T(_) => "T",
            Self::Id(_) => "ID",
            Self::IdR(_) => "IDR",
            Self::Cert(_) => "CERT",
            Self::Chash(_) => "CHASH",
            Self::V(_) => "V",
            Self::Sp(_) => "SP",
            Self::Rand(_) => "RAND",
            Self::Err(_) => "ERR",
            Self::GeneralExt(_) => "EXT",
        }
    }
}

/// Key data transport payload (RFC 3830 §6.2).
#[derive(Clone, PartialEq, Eq)]
pub struct Kemac<'a> {
    /// How the key data sub-payloads are encrypted.
    pub encr_alg: EncrAlg,
    /// The (encrypted) key data sub-payloads (§6.13); plaintext when `encr_alg` is NULL.
    pub encr_data: &'a [u8],
    /// The MAC algorithm.
    pub mac_alg: MacAlg,
    /// The MAC; its length is implied by `mac_alg`.
    pub mac: &'a [u8],
}

impl fmt::Debug for Kemac<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The key data may be plaintext (NULL encryption): never print it.
        f.debug_struct("Kemac")
            .field("encr_alg", &self.encr_alg)
            .field("encr_data_len", &self.encr_data.len())
            .field("mac_alg", &self.mac_alg)
            .field("mac", &Hex(self.mac))
            .finish()
    }
}

/// Envelope data payload (RFC 3830 §6.3): the envelope key, encrypted to the responder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pke<'a> {
    /// Cache indicator.
    pub cache: PkeCache,
    /// The encrypted envelope key (at most 2^14 - 1 bytes).
    pub data: &'a [u8],
}

/// DH data payload (RFC 3830 §6.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dh<'a> {
    /// The group; it implies the value's length.
    pub group: DhGroup,
    /// The public DH value.
    pub value: &'a [u8],
    /// Key validity of the resulting TGK.
    pub kv: KeyValidity<'a>,
}

/// Signature payload (RFC 3830 §6.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sign<'a> {
    /// The signature algorithm.
    pub s_type: SignType,
    /// The signature (at most 4095 bytes).
    pub signature: &'a [u8],
}

/// Timestamp payload (RFC 3830 §6.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timestamp {
    /// NTP time (64-bit, RFC 1305 format) in UTC.
    NtpUtc(u64),
    /// NTP time (64-bit), time zone unspecified.
    Ntp(u64),
    /// A 32-bit counter.
    Counter(u32),
}

impl Timestamp {
    /// The TS type byte (Table 6.6.a).
    pub fn ts_type(&self) -> u8 {
        match self {
            Self::NtpUtc(_) => 0,
            Self::Ntp(_) => 1,
            Self::Counter(_) => 2,
        }
    }

    /// The TS value as a 64-bit number (a counter is zero-extended), as RFC 3830 §4.2.3 uses it.
    pub fn value64(&self) -> u64 {
        match *self {
            Self::NtpUtc(v) | Self::Ntp(v) => v,
            Self::Counter(c) => u64::from(c),
        }
    }

    pub(super) fn value_bytes(&self) -> Vec<u8> {
        match *self {
            Self::NtpUtc(v) | Self::Ntp(v) => v.to_be_bytes().to_vec(),
            Self::Counter(c) => c.to_be_bytes().to_vec(),
        }
    }
}

/// ID payload (RFC 3830 §6.7).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Id<'a> {
    /// The kind of identity.
    pub id_type: IdType,
    /// The identity (a URI for chaincall: `sip:+15551234567@example.org` or `tel:+15551234567`).
    pub data: &'a [u8],
}

/// IDR payload: an ID with a role (RFC 6043 §6.6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdR<'a> {
    /// Whose identity this is.
    pub role: IdRole,
    /// The kind of identity.
    pub id_type: IdType,
    /// The identity.
    pub data: &'a [u8],
}

/// Certificate payload (RFC 3830 §6.7).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cert<'a> {
    /// The certificate type.
    pub cert_type: CertType,
    /// The certificate (DER) or URL.
    pub data: &'a [u8],
}

/// Certificate hash payload (RFC 3830 §6.8).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chash<'a> {
    /// The hash function; it implies the length.
    pub hash_func: HashFunc,
    /// The hash.
    pub hash: &'a [u8],
}

/// Verification payload (RFC 3830 §6.9).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verification<'a> {
    /// The MAC algorithm; it implies the length.
    pub auth_alg: MacAlg,
    /// The MAC.
    pub ver_data: &'a [u8],
}

/// Security policy payload (RFC 3830 §6.10).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecurityPolicy<'a> {
    /// The policy number that CS ID map entries refer to.
    pub policy_no: u8,
    /// The security protocol.
    pub prot_type: ProtType,
    /// The parameters, type-length-value (at most 65535 bytes in all).
    pub params: Vec<PolicyParam<'a>>,
}

/// One security-policy parameter (RFC 3830 §6.10; SRTP types in §6.10.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PolicyParam<'a> {
    /// The parameter type.
    pub param_type: u8,
    /// The value (at most 255 bytes).
    pub value: &'a [u8],
}

/// General extension payload (RFC 3830 §6.15).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneralExt<'a> {
    /// The extension type (0 vendor ID, 1 SDP IDs, ...).
    pub ext_type: u8,
    /// The extension data.
    pub data: &'a [u8],
}

/// Key validity data (RFC 3830 §6.13/§6.14).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyValidity<'a> {
    /// No validity restriction (KV type 0).
    Null,
    /// The key is bound to this SPI or SRTP MKI (KV type 1).
    Spi(&'a [u8]),
    /// The key is valid for SRTP indexes from `from` to `to` (KV type 2).
    Interval {
        /// Valid from (e.g. a 48-bit SRTP index).
        from: &'a [u8],
        /// Valid to.
        to: &'a [u8],
    },
}

impl KeyValidity<'_> {
    pub(super) fn kv_type(&self) -> u8 {
        match self {
            Self::Null => 0,
            Self::Spi(_) => 1,
            Self::Interval { .. } => 2,
        }
    }
}

/// The kind of key in a key data sub-payload (RFC 3830 §6.13, Table 6.13.a).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyKind {
    /// TEK generation key: TEKs are derived from it (§4.1.3).
    Tgk,
    /// Traffic encryption key: used directly.
    Tek,
}

/// Key data sub-payload (RFC 3830 §6.13), carried inside KEMAC's encrypted data.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyData<'a> {
    /// TGK or TEK.
    pub kind: KeyKind,
    /// The key.
    pub key: &'a [u8],
    /// The salt; present makes the wire type TGK+SALT / TEK+SALT.
    pub salt: Option<&'a [u8]>,
    /// Key validity.
    pub kv: KeyValidity<'a>,
}

impl KeyData<'_> {
    /// The wire type value (Table 6.13.a).
    pub fn type_value(&self) -> u8 {
        match (self.kind, self.salt.is_some()) {
            (KeyKind::Tgk, false) => 0,
            (KeyKind::Tgk, true) => 1,
            (KeyKind::Tek, false) => 2,
            (KeyKind::Tek, true) => 3,
        }
    }
}

impl fmt::Debug for KeyData<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyData")
            .field("kind", &self.kind)
            .field("key", &format_args!("<{} bytes redacted>", self.key.len()))
            .field(
                "salt",
                &self.salt.map(|s| format!("<{} bytes redacted>", s.len())),
            )
            .field("kv", &self.kv)
            .finish()
    }
}

struct Hex<'a>(&'a [u8]);

impl fmt::Debug for Hex<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}
