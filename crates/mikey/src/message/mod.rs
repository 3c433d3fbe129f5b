//! The RFC 3830 wire format: a common header (§6.1) followed by a chain of payloads (§6.2–§6.15),
//! each naming the type of the one after it.
//!
//! [`Message::decode`] borrows from the input: variable-length fields are `&[u8]` views into it.
//! [`Message::encode`] writes into a caller's `Vec`, [`Message::encode_to_slice`] into a caller's slice.
//! The two are exact inverses: every field is represented (next-payload fields are derived from the
//! payload order, reserved bits must be zero), so `encode(decode(b)) == b` for every accepted `b`, and
//! every length and type is checked, with the byte offset of the first offending field in the error.

use std::fmt;

use crate::error::{DecodeError, DecodeErrorKind, EncodeError};

/// Payload type numbers (RFC 3830 §6, Table 6.1.c; IDR from RFC 6043 §6.6).
pub mod payload_type {
    /// Last payload: ends the chain.
    pub const LAST: u8 = 0;
    /// Key data transport (KEMAC), §6.2.
    pub const KEMAC: u8 = 1;
    /// Envelope data (PKE), §6.3.
    pub const PKE: u8 = 2;
    /// DH data, §6.4.
    pub const DH: u8 = 3;
    /// Signature, §6.5.
    pub const SIGN: u8 = 4;
    /// Timestamp, §6.6.
    pub const T: u8 = 5;
    /// ID, §6.7.
    pub const ID: u8 = 6;
    /// Certificate, §6.7.
    pub const CERT: u8 = 7;
    /// Certificate hash, §6.8.
    pub const CHASH: u8 = 8;
    /// Verification message, §6.9.
    pub const V: u8 = 9;
    /// Security policy, §6.10.
    pub const SP: u8 = 10;
    /// RAND, §6.11.
    pub const RAND: u8 = 11;
    /// Error, §6.12.
    pub const ERR: u8 = 12;
    /// ID with role (RFC 6043 §6.6).
    pub const IDR: u8 = 14;
    /// Key data sub-payload (only inside KEMAC), §6.13.
    pub const KEY_DATA: u8 = 20;
    /// General extension, §6.15.
    pub const GENERAL_EXT: u8 = 21;
}

macro_rules! wire_enum {
    (
        $(#[$meta:meta])*
        $name:ident, $field:literal {
            $( $(#[$vmeta:meta])* $variant:ident = $value:literal => $text:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $( $(#[$vmeta])* $variant = $value, )+
        }

        impl $name {
            /// Every value this codec knows, in wire order.
            pub const ALL: &'static [Self] = &[$(Self::$variant),+];

            /// The wire value.
            pub fn to_u8(self) -> u8 {
                self as u8
            }

            /// The value for a wire byte, if the registry has it.
            pub fn from_u8(value: u8) -> Option<Self> {
                match value {
                    $( $value => Some(Self::$variant), )+
                    _ => None,
                }
            }

            /// The registry's name for the value.
            pub fn name(self) -> &'static str {
                match self {
                    $( Self::$variant => $text, )+
                }
            }

            fn read(value: u8, offset: usize) -> Result<Self, DecodeError> {
                Self::from_u8(value).ok_or(DecodeError::new(
                    offset,
                    DecodeErrorKind::UnknownValue { field: $field, value },
                ))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.name())
            }
        }
    };
}

wire_enum! {
    /// HDR data type (RFC 3830 §6.1, Table 6.1.a; RFC 4650 and RFC 4738 add 7–10).
    DataType, "data type" {
        /// I_MESSAGE of the pre-shared-key method.
        PskInit = 0 => "Pre-shared",
        /// Verification message of the pre-shared-key method.
        PskResp = 1 => "PSK ver msg",
        /// I_MESSAGE of the public-key method.
        PkInit = 2 => "Public key",
        /// Verification message of the public-key method.
        PkResp = 3 => "PK ver msg",
        /// I_MESSAGE of the Diffie-Hellman method.
        DhInit = 4 => "D-H init",
        /// R_MESSAGE of the Diffie-Hellman method.
        DhResp = 5 => "D-H resp",
        /// Error message.
        Error = 6 => "Error",
        /// DHHMAC I_MESSAGE (RFC 4650).
        DhHmacInit = 7 => "DHHMAC init",
        /// DHHMAC R_MESSAGE (RFC 4650).
        DhHmacResp = 8 => "DHHMAC resp",
        /// RSA-R I_MESSAGE (RFC 4738).
        RsaRInit = 9 => "RSA-R I_MSG",
        /// RSA-R R_MESSAGE (RFC 4738).
        RsaRResp = 10 => "RSA-R R_MSG",
    }
}

wire_enum! {
    /// HDR PRF function (RFC 3830 §6.1, Table 6.1.b; RFC 6043 adds PRF-HMAC-SHA-256).
    PrfFunc, "PRF func" {
        /// MIKEY-1: the PRF of RFC 3830 §4.1.2 (HMAC-SHA-1 P-function).
        Mikey1 = 0 => "MIKEY-1",
        /// PRF-HMAC-SHA-256 (RFC 6043 §6.1); decoded, not used by the modes.
        HmacSha256 = 1 => "PRF-HMAC-SHA-256",
    }
}

wire_enum! {
    /// KEMAC encryption algorithm (RFC 3830 §6.2, Table 6.2.a).
    EncrAlg, "KEMAC encr alg" {
        /// No encryption.
        Null = 0 => "NULL",
        /// AES in counter mode, 128-bit key (§4.2.3).
        AesCm128 = 1 => "AES-CM-128",
        /// AES key wrap, 128-bit key (§4.2.4); decoded, not used by the modes.
        AesKw128 = 2 => "AES-KW-128",
    }
}

wire_enum! {
    /// KEMAC and V MAC algorithm (RFC 3830 §6.2, Table 6.2.b).
    MacAlg, "MAC alg" {
        /// No MAC.
        Null = 0 => "NULL",
        /// HMAC-SHA-1 with 160-bit output (§4.2.1).
        HmacSha1_160 = 1 => "HMAC-SHA-1-160",
    }
}

impl MacAlg {
    /// The MAC length the algorithm implies (RFC 3830 §6.2).
    pub fn mac_len(self) -> usize {
        match self {
            Self::Null => 0,
            Self::HmacSha1_160 => 20,
        }
    }
}

wire_enum! {
    /// PKE cache indicator C (RFC 3830 §6.3, Table 6.3.a).
    PkeCache, "PKE C" {
        /// The envelope key must not be cached.
        NoCache = 0 => "No cache",
        /// The envelope key should be cached.
        Cache = 1 => "Cache",
        /// The envelope key should be cached for this CSB only.
        CacheForCsb = 2 => "Cache for CSB",
    }
}

wire_enum! {
    /// DH group (RFC 3830 §6.4, Table 6.4.a), plus chaincall's P-256 value.
    ///
    /// IANA's registry holds only the three MODP groups. draft-ietf-msec-mikey-ecc (expired 2007)
    /// proposed ECC groups but its values were never registered; chaincall uses value 3 for NIST P-256
    /// with the DH value as a SEC1 uncompressed point (65 bytes). See the crate docs, "Departures".
    DhGroup, "DH-Group" {
        /// OAKLEY 5 (1536-bit MODP).
        Oakley5 = 0 => "OAKLEY 5",
        /// OAKLEY 1 (768-bit MODP).
        Oakley1 = 1 => "OAKLEY 1",
        /// OAKLEY 2 (1024-bit MODP).
        Oakley2 = 2 => "OAKLEY 2",
        /// NIST P-256, SEC1 uncompressed point (chaincall; unregistered at IANA).
        P256 = 3 => "P-256 (ECDH, unregistered)",
    }
}

impl DhGroup {
    /// The DH value length the group implies: RFC 3830 §6.4 carries no length field.
    pub fn value_len(self) -> usize {
        match self {
            Self::Oakley5 => 1536 / 8,
            Self::Oakley1 => 768 / 8,
            Self::Oakley2 => 1024 / 8,
            Self::P256 => 65,
        }
    }
}

wire_enum! {
    /// SIGN signature type S (RFC 3830 §6.5, Table 6.5.a; RFC 6509 adds ECCSI), plus chaincall's ECDSA.
    ///
    /// IANA has 0 and 1 (RFC 3830) and 2 = ECCSI (RFC 6509); draft-ietf-msec-mikey-ecc's ECDSA value
    /// was never registered. chaincall uses 3 for ECDSA over P-256 with SHA-256, signature `r || s`.
    SignType, "SIGN S type" {
        /// RSA with PKCS#1 v1.5 padding.
        RsaPkcs1 = 0 => "RSA/PKCS#1/1.5",
        /// RSA-PSS.
        RsaPss = 1 => "RSA/PSS",
        /// ECCSI (RFC 6509).
        Eccsi = 2 => "ECCSI",
        /// ECDSA P-256 SHA-256, 64-byte `r || s` (chaincall; unregistered at IANA).
        EcdsaP256Sha256 = 3 => "ECDSA-P256-SHA256 (unregistered)",
    }
}

wire_enum! {
    /// ID type (RFC 3830 §6.7, Table 6.7.a; RFC 6043 adds byte string).
    IdType, "ID type" {
        /// Network access identifier.
        Nai = 0 => "NAI",
        /// URI (e.g. `sip:+15551234567@example.org`, `tel:+15551234567`).
        Uri = 1 => "URI",
        /// Byte string (RFC 6043).
        ByteString = 2 => "Byte string",
    }
}

wire_enum! {
    /// ID role of an IDR payload (RFC 6043 §6.6).
    IdRole, "ID role" {
        /// Initiator (IDRi).
        Initiator = 1 => "Initiator (IDRi)",
        /// Responder (IDRr).
        Responder = 2 => "Responder (IDRr)",
        /// Key management server (IDRkms).
        Kms = 3 => "KMS (IDRkms)",
        /// Pre-shared key (IDRpsk).
        Psk = 4 => "Pre-Shared Key (IDRpsk)",
        /// Application (IDRapp).
        App = 5 => "Application (IDRapp)",
        /// Initiator's KMS (IDRkmsi).
        KmsI = 6 => "Initiator's KMS (IDRkmsi)",
        /// Responder's KMS (IDRkmsr).
        KmsR = 7 => "Responder's KMS (IDRkmsr)",
    }
}

wire_enum! {
    /// Certificate type (RFC 3830 §6.7, Table 6.7.b).
    CertType, "cert type" {
        /// X.509v3 certificate.
        X509v3 = 0 => "X.509v3",
        /// X.509v3 URL.
        X509v3Url = 1 => "X.509v3 URL",
        /// X.509v3 signature certificate.
        X509v3Sign = 2 => "X.509v3 Sign",
        /// X.509v3 encryption certificate.
        X509v3Encr = 3 => "X.509v3 Encr",
    }
}

wire_enum! {
    /// CHASH hash function (RFC 3830 §6.8, Table 6.8.a).
    HashFunc, "CHASH hash func" {
        /// SHA-1 (20 bytes).
        Sha1 = 0 => "SHA-1",
        /// MD5 (16 bytes).
        Md5 = 1 => "MD5",
    }
}

impl HashFunc {
    /// The hash length the function implies.
    pub fn hash_len(self) -> usize {
        match self {
            Self::Sha1 => 20,
            Self::Md5 => 16,
        }
    }
}

wire_enum! {
    /// SP protocol type (RFC 3830 §6.10, Table 6.10.a).
    ProtType, "SP prot type" {
        /// SRTP (policy parameters of §6.10.1).
        Srtp = 0 => "SRTP",
    }
}

wire_enum! {
    /// ERR error number (RFC 3830 §6.12, Table 6.12.a).
    ErrorCode, "error no" {
        /// Authentication failure.
        AuthFailure = 0 => "Authentication failure",
        /// Invalid timestamp.
        InvalidTs = 1 => "Invalid timestamp",
        /// PRF function not supported.
        InvalidPrf = 2 => "PRF function not supported",
        /// MAC algorithm not supported.
        InvalidMac = 3 => "MAC algorithm not supported",
        /// Encryption algorithm not supported.
        InvalidEa = 4 => "Encryption algorithm not supported",
        /// Hash function not supported.
        InvalidHa = 5 => "Hash function not supported",
        /// DH group not supported.
        InvalidDh = 6 => "DH group not supported",
        /// ID not supported.
        InvalidId = 7 => "ID not supported",
        /// Certificate not supported.
        InvalidCert = 8 => "Certificate not supported",
        /// SP type not supported.
        InvalidSp = 9 => "SP type not supported",
        /// SP parameters not supported.
        InvalidSpPar = 10 => "SP parameters not supported",
        /// Data type not supported.
        InvalidDt = 11 => "Data type not supported",
        /// Unspecified error.
        Unspecified = 12 => "Unspecified error",
    }
}

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

    fn value_bytes(&self) -> Vec<u8> {
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
    fn kv_type(&self) -> u8 {
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

/// A whole MIKEY message: header and payloads in wire order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message<'a> {
    /// The common header.
    pub header: Header,
    /// The payloads, in order; a SIGN payload can only be last.
    pub payloads: Vec<Payload<'a>>,
}

/// Where each payload sits in the encoded message (byte ranges), for MAC and signature coverage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Spans {
    /// `payloads[i]` occupies `ranges[i]`.
    pub(crate) ranges: Vec<std::ops::Range<usize>>,
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

// ---------------------------------------------------------------------------------------------
// Decoding
// ---------------------------------------------------------------------------------------------

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    /// Added to positions in errors (key data is decoded from a sub-buffer).
    base: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8], base: usize) -> Self {
        Self { buf, pos: 0, base }
    }

    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn at(&self) -> usize {
        self.base + self.pos
    }

    fn err(&self, kind: DecodeErrorKind) -> DecodeError {
        DecodeError::new(self.at(), kind)
    }

    fn bytes(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], DecodeError> {
        if self.remaining() < n {
            return Err(self.err(DecodeErrorKind::Truncated {
                field,
                needed: n,
                available: self.remaining(),
            }));
        }
        let out = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    fn u8(&mut self, field: &'static str) -> Result<u8, DecodeError> {
        Ok(self.bytes(1, field)?[0])
    }

    fn u16(&mut self, field: &'static str) -> Result<u16, DecodeError> {
        let b = self.bytes(2, field)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self, field: &'static str) -> Result<u32, DecodeError> {
        let b = self.bytes(4, field)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self, field: &'static str) -> Result<u64, DecodeError> {
        let b = self.bytes(8, field)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }
}

impl<'a> Message<'a> {
    /// Decodes a whole message. Every byte must belong to it.
    pub fn decode(buf: &'a [u8]) -> Result<Self, DecodeError> {
        Self::decode_with_spans(buf).map(|(m, _)| m)
    }

    /// Decodes a message and also returns each payload's byte range in `buf` (for tools that show
    /// offsets, and for MAC and signature coverage).
    pub fn decode_with_ranges(
        buf: &'a [u8],
    ) -> Result<(Self, Vec<std::ops::Range<usize>>), DecodeError> {
        Self::decode_with_spans(buf).map(|(m, s)| (m, s.ranges))
    }

    pub(crate) fn decode_with_spans(buf: &'a [u8]) -> Result<(Self, Spans), DecodeError> {
        use payload_type as pt;
        let mut r = Reader::new(buf, 0);
        // §6.1 common header.
        let version = r.u8("HDR version")?;
        if version != 1 {
            return Err(DecodeError::new(
                0,
                DecodeErrorKind::UnsupportedVersion(version),
            ));
        }
        let at = r.at();
        let data_type = DataType::read(r.u8("HDR data type")?, at)?;
        let mut next_at = r.at();
        let mut next = r.u8("HDR next payload")?;
        let at = r.at();
        let v_prf = r.u8("HDR V/PRF func")?;
        let prf = PrfFunc::read(v_prf & 0x7f, at)?;
        let csb_id = r.u32("HDR CSB ID")?;
        let ncs = r.u8("HDR #CS")?;
        let at = r.at();
        let map_type = r.u8("HDR CS ID map type")?;
        let cs_map = match map_type {
            0 => {
                let mut entries = Vec::with_capacity(usize::from(ncs));
                for _ in 0..ncs {
                    entries.push(SrtpIdEntry {
                        policy_no: r.u8("SRTP-ID policy no")?,
                        ssrc: r.u32("SRTP-ID SSRC")?,
                        roc: r.u32("SRTP-ID ROC")?,
                    });
                }
                CsIdMap::SrtpId(entries)
            }
            value => {
                return Err(DecodeError::new(
                    at,
                    DecodeErrorKind::UnknownValue {
                        field: "CS ID map type",
                        value,
                    },
                ));
            }
        };
        let header = Header {
            data_type,
            v: v_prf & 0x80 != 0,
            prf,
            csb_id,
            cs_map,
        };

        let mut payloads = Vec::new();
        let mut ranges = Vec::new();
        loop {
            let start = r.at();
            match next {
                pt::LAST => {
                    if r.remaining() > 0 {
                        return Err(r.err(DecodeErrorKind::TrailingBytes(r.remaining())));
                    }
                    break;
                }
                pt::SIGN => {
                    // §6.5: no next-payload field; SIGN ends the message.
                    let at = r.at();
                    let b = r.u16("SIGN S type/length")?;
                    let s_type = SignType::read((b >> 12) as u8, at)?;
                    let len = usize::from(b & 0x0fff);
                    let signature = r.bytes(len, "SIGN signature")?;
                    payloads.push(Payload::Sign(Sign { s_type, signature }));
                    ranges.push(start..r.at());
                    if r.remaining() > 0 {
                        return Err(r.err(DecodeErrorKind::TrailingBytes(r.remaining())));
                    }
                    break;
                }
                pt::KEY_DATA => {
                    return Err(DecodeError::new(
                        next_at,
                        DecodeErrorKind::MisplacedPayload {
                            payload: next,
                            place: "at message level (only inside KEMAC)",
                        },
                    ));
                }
                pt::KEMAC
                | pt::PKE
                | pt::DH
                | pt::T
                | pt::ID
                | pt::CERT
                | pt::CHASH
                | pt::V
                | pt::SP
                | pt::RAND
                | pt::ERR
                | pt::IDR
                | pt::GENERAL_EXT => {
                    let this = next;
                    next_at = r.at();
                    next = r.u8("next payload")?;
                    let payload = decode_body(this, &mut r)?;
                    payloads.push(payload);
                    ranges.push(start..r.at());
                }
                value => {
                    return Err(DecodeError::new(
                        next_at,
                        DecodeErrorKind::UnknownValue {
                            field: "next payload",
                            value,
                        },
                    ));
                }
            }
        }
        Ok((Self { header, payloads }, Spans { ranges }))
    }
}

fn decode_body<'a>(ty: u8, r: &mut Reader<'a>) -> Result<Payload<'a>, DecodeError> {
    use payload_type as pt;
    Ok(match ty {
        pt::KEMAC => {
            // §6.2
            let at = r.at();
            let encr_alg = EncrAlg::read(r.u8("KEMAC encr alg")?, at)?;
            let len = usize::from(r.u16("KEMAC encr data len")?);
            let encr_data = r.bytes(len, "KEMAC encr data")?;
            let at = r.at();
            let mac_alg = MacAlg::read(r.u8("KEMAC mac alg")?, at)?;
            let mac = r.bytes(mac_alg.mac_len(), "KEMAC MAC")?;
            Payload::Kemac(Kemac {
                encr_alg,
                encr_data,
                mac_alg,
                mac,
            })
        }
        pt::PKE => {
            // §6.3: C (2 bits) | Data len (14 bits)
            let at = r.at();
            let b = r.u16("PKE C/data len")?;
            let cache = PkeCache::read((b >> 14) as u8, at)?;
            let data = r.bytes(usize::from(b & 0x3fff), "PKE data")?;
            Payload::Pke(Pke { cache, data })
        }
        pt::DH => {
            // §6.4: DH-Group | DH-value (length implied) | Reserv (4) | KV (4) | KV data
            let at = r.at();
            let group = DhGroup::read(r.u8("DH-Group")?, at)?;
            let value = r.bytes(group.value_len(), "DH-value")?;
            let kv = decode_kv_byte_and_data(r, "DH Reserv")?;
            Payload::Dh(Dh { group, value, kv })
        }
        pt::T => {
            // §6.6
            let at = r.at();
            Payload::T(match r.u8("TS type")? {
                0 => Timestamp::NtpUtc(r.u64("TS value (NTP-UTC)")?),
                1 => Timestamp::Ntp(r.u64("TS value (NTP)")?),
                2 => Timestamp::Counter(r.u32("TS value (COUNTER)")?),
                value => {
                    return Err(DecodeError::new(
                        at,
                        DecodeErrorKind::UnknownValue {
                            field: "TS type",
                            value,
                        },
                    ));
                }
            })
        }
        pt::ID => {
            // §6.7
            let at = r.at();
            let id_type = IdType::read(r.u8("ID type")?, at)?;
            let len = usize::from(r.u16("ID len")?);
            Payload::Id(Id {
                id_type,
                data: r.bytes(len, "ID data")?,
            })
        }
        pt::IDR => {
            // RFC 6043 §6.6
            let at = r.at();
            let role = IdRole::read(r.u8("ID role")?, at)?;
            let at = r.at();
            let id_type = IdType::read(r.u8("ID type")?, at)?;
            let len = usize::from(r.u16("ID len")?);
            Payload::IdR(IdR {
                role,
                id_type,
                data: r.bytes(len, "ID data")?,
            })
        }
        pt::CERT => {
            let at = r.at();
            let cert_type = CertType::read(r.u8("cert type")?, at)?;
            let len = usize::from(r.u16("cert len")?);
            Payload::Cert(Cert {
                cert_type,
                data: r.bytes(len, "certificate")?,
            })
        }
        pt::CHASH => {
            let at = r.at();
            let hash_func = HashFunc::read(r.u8("CHASH hash func")?, at)?;
            Payload::Chash(Chash {
                hash_func,
                hash: r.bytes(hash_func.hash_len(), "CHASH hash")?,
            })
        }
        pt::V => {
            // §6.9
            let at = r.at();
            let auth_alg = MacAlg::read(r.u8("V auth alg")?, at)?;
            Payload::V(Verification {
                auth_alg,
                ver_data: r.bytes(auth_alg.mac_len(), "V ver data")?,
            })
        }
        pt::SP => {
            // §6.10
            let policy_no = r.u8("SP policy no")?;
            let at = r.at();
            let prot_type = ProtType::read(r.u8("SP prot type")?, at)?;
            let len = usize::from(r.u16("SP policy param length")?);
            let base = r.at();
            let body = r.bytes(len, "SP policy params")?;
            let mut pr = Reader::new(body, base);
            let mut params = Vec::new();
            while pr.remaining() > 0 {
                let param_type = pr.u8("SP param type")?;
                let plen = usize::from(pr.u8("SP param length")?);
                let value = pr.bytes(plen, "SP param value")?;
                params.push(PolicyParam { param_type, value });
            }
            Payload::Sp(SecurityPolicy {
                policy_no,
                prot_type,
                params,
            })
        }
        pt::RAND => {
            // §6.11
            let len = usize::from(r.u8("RAND len")?);
            Payload::Rand(r.bytes(len, "RAND")?)
        }
        pt::ERR => {
            // §6.12: Error no | Reserved (16 bits, zero)
            let at = r.at();
            let code = ErrorCode::read(r.u8("error no")?, at)?;
            let at = r.at();
            if r.u16("ERR reserved")? != 0 {
                return Err(DecodeError::new(
                    at,
                    DecodeErrorKind::ReservedNotZero {
                        field: "ERR reserved",
                    },
                ));
            }
            Payload::Err(code)
        }
        pt::GENERAL_EXT => {
            // §6.15
            let ext_type = r.u8("EXT type")?;
            let len = usize::from(r.u16("EXT length")?);
            Payload::GeneralExt(GeneralExt {
                ext_type,
                data: r.bytes(len, "EXT data")?,
            })
        }
        // Invariant: the caller dispatches only the types listed above.
        _ => unreachable!("decode_body called for payload type {ty}"),
    })
}

/// Reads a `Reserv (4) | KV type (4)` byte followed by KV data (§6.4, §6.13, §6.14).
fn decode_kv_byte_and_data<'a>(
    r: &mut Reader<'a>,
    reserved_field: &'static str,
) -> Result<KeyValidity<'a>, DecodeError> {
    let at = r.at();
    let b = r.u8("KV type")?;
    if b & 0xf0 != 0 {
        return Err(DecodeError::new(
            at,
            DecodeErrorKind::ReservedNotZero {
                field: reserved_field,
            },
        ));
    }
    decode_kv_data(r, b & 0x0f, at)
}

fn decode_kv_data<'a>(
    r: &mut Reader<'a>,
    kv_type: u8,
    at: usize,
) -> Result<KeyValidity<'a>, DecodeError> {
    Ok(match kv_type {
        0 => KeyValidity::Null,
        1 => {
            let len = usize::from(r.u8("SPI length")?);
            KeyValidity::Spi(r.bytes(len, "SPI/MKI")?)
        }
        2 => {
            let len = usize::from(r.u8("VF length")?);
            let from = r.bytes(len, "valid from")?;
            let len = usize::from(r.u8("VT length")?);
            let to = r.bytes(len, "valid to")?;
            KeyValidity::Interval { from, to }
        }
        value => {
            return Err(DecodeError::new(
                at,
                DecodeErrorKind::UnknownValue {
                    field: "KV type",
                    value,
                },
            ));
        }
    })
}

/// Decodes the key data sub-payloads of a KEMAC's (decrypted) data (RFC 3830 §6.13).
///
/// `base` is added to offsets in errors (pass the encr data's offset in the message, or 0).
pub fn decode_key_data(buf: &[u8], base: usize) -> Result<Vec<KeyData<'_>>, DecodeError> {
    let mut r = Reader::new(buf, base);
    let mut out = Vec::new();
    while r.remaining() > 0 {
        let next_at = r.at();
        let next = r.u8("key data next payload")?;
        if next != payload_type::KEY_DATA && next != payload_type::LAST {
            return Err(DecodeError::new(
                next_at,
                DecodeErrorKind::MisplacedPayload {
                    payload: next,
                    place: "after a key data sub-payload (only key data or last)",
                },
            ));
        }
        let at = r.at();
        let b = r.u8("key data type/KV")?;
        let (kind, salted) = match b >> 4 {
            0 => (KeyKind::Tgk, false),
            1 => (KeyKind::Tgk, true),
            2 => (KeyKind::Tek, false),
            3 => (KeyKind::Tek, true),
            value => {
                return Err(DecodeError::new(
                    at,
                    DecodeErrorKind::UnknownValue {
                        field: "key data type",
                        value,
                    },
                ));
            }
        };
        let len = usize::from(r.u16("key data len")?);
        let key = r.bytes(len, "key data")?;
        let salt = if salted {
            let len = usize::from(r.u16("salt len")?);
            Some(r.bytes(len, "salt data")?)
        } else {
            None
        };
        let kv = decode_kv_data(&mut r, b & 0x0f, at)?;
        out.push(KeyData {
            kind,
            key,
            salt,
            kv,
        });
        let last = next == payload_type::LAST;
        if last && r.remaining() > 0 {
            return Err(r.err(DecodeErrorKind::TrailingBytes(r.remaining())));
        }
        if !last && r.remaining() == 0 {
            return Err(r.err(DecodeErrorKind::Truncated {
                field: "next key data sub-payload",
                needed: 4,
                available: 0,
            }));
        }
    }
    Ok(out)
}

/// Decodes the plaintext of a PKE KEMAC, `IDi || {TGK}` (RFC 3830 §3.2): the initiator's ID
/// sub-payload (§6.7 layout; its next-payload field must announce key data) and the key data
/// sub-payloads after it (§6.13).
///
/// `base` is added to offsets in errors, as for [`decode_key_data`].
pub fn decode_pke_key_data(
    buf: &[u8],
    base: usize,
) -> Result<(Id<'_>, Vec<KeyData<'_>>), DecodeError> {
    let mut r = Reader::new(buf, base);
    let next_at = r.at();
    let next = r.u8("IDi next payload")?;
    if next != payload_type::KEY_DATA {
        return Err(DecodeError::new(
            next_at,
            DecodeErrorKind::MisplacedPayload {
                payload: next,
                place: "after the IDi of a PKE KEMAC (only key data)",
            },
        ));
    }
    let at = r.at();
    let id_type = IdType::read(r.u8("ID type")?, at)?;
    let len = usize::from(r.u16("ID len")?);
    let data = r.bytes(len, "ID data")?;
    let used = 4 + len;
    let keys = decode_key_data(&buf[used..], base + used)?;
    if keys.is_empty() {
        return Err(DecodeError::new(
            base + used,
            DecodeErrorKind::Truncated {
                field: "key data after the IDi of a PKE KEMAC",
                needed: 4,
                available: 0,
            },
        ));
    }
    Ok((Id { id_type, data }, keys))
}

// ---------------------------------------------------------------------------------------------
// Encoding
// ---------------------------------------------------------------------------------------------

trait Out {
    fn put(&mut self, bytes: &[u8]);
    fn put_u8(&mut self, b: u8) {
        self.put(&[b]);
    }
    fn put_u16(&mut self, v: u16) {
        self.put(&v.to_be_bytes());
    }
    fn put_u32(&mut self, v: u32) {
        self.put(&v.to_be_bytes());
    }
}

impl Out for Vec<u8> {
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

/// Writes into a slice while it fits, and counts every byte (so a short slice learns the size).
struct SliceOut<'b> {
    buf: &'b mut [u8],
    len: usize,
}

impl Out for SliceOut<'_> {
    fn put(&mut self, bytes: &[u8]) {
        let end = self.len + bytes.len();
        if end <= self.buf.len() {
            self.buf[self.len..end].copy_from_slice(bytes);
        }
        self.len = end;
    }
}

fn check_len(field: &'static str, len: usize, max: usize) -> Result<(), EncodeError> {
    if len > max {
        Err(EncodeError::TooLong { field, len, max })
    } else {
        Ok(())
    }
}

fn check_exact(field: &'static str, len: usize, expected: usize) -> Result<(), EncodeError> {
    if len != expected {
        Err(EncodeError::WrongLength {
            field,
            expected,
            len,
        })
    } else {
        Ok(())
    }
}

impl Message<'_> {
    /// Appends the encoded message to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        self.validate()?;
        self.write(out);
        Ok(())
    }

    /// The encoded message as a new `Vec`.
    pub fn to_vec(&self) -> Result<Vec<u8>, EncodeError> {
        let mut out = Vec::with_capacity(256);
        self.encode(&mut out)?;
        Ok(out)
    }

    /// Encodes into a caller's slice and returns the length written; a slice too small gets
    /// [`EncodeError::BufferTooSmall`] with the size needed, and its contents are unspecified.
    pub fn encode_to_slice(&self, buf: &mut [u8]) -> Result<usize, EncodeError> {
        self.validate()?;
        let mut out = SliceOut { buf, len: 0 };
        self.write(&mut out);
        if out.len > out.buf.len() {
            return Err(EncodeError::BufferTooSmall { needed: out.len });
        }
        Ok(out.len)
    }

    /// Checks every length and the SIGN-last rule, so that writing cannot fail.
    fn validate(&self) -> Result<(), EncodeError> {
        let CsIdMap::SrtpId(entries) = &self.header.cs_map;
        check_len("CS ID map (#CS)", entries.len(), 255)?;
        for (i, p) in self.payloads.iter().enumerate() {
            if matches!(p, Payload::Sign(_)) && i + 1 != self.payloads.len() {
                return Err(EncodeError::SignNotLast);
            }
            match p {
                Payload::Kemac(k) => {
                    check_len("KEMAC encr data", k.encr_data.len(), 0xffff)?;
                    check_exact("KEMAC MAC", k.mac.len(), k.mac_alg.mac_len())?;
                }
                Payload::Pke(pke) => check_len("PKE data", pke.data.len(), 0x3fff)?,
                Payload::Dh(dh) => {
                    check_exact("DH-value", dh.value.len(), dh.group.value_len())?;
                    check_kv(&dh.kv)?;
                }
                Payload::Sign(s) => check_len("SIGN signature", s.signature.len(), 0x0fff)?,
                Payload::T(_) | Payload::Err(_) => {}
                Payload::Id(id) => check_len("ID data", id.data.len(), 0xffff)?,
                Payload::IdR(id) => check_len("ID data", id.data.len(), 0xffff)?,
                Payload::Cert(c) => check_len("certificate", c.data.len(), 0xffff)?,
                Payload::Chash(c) => {
                    check_exact("CHASH hash", c.hash.len(), c.hash_func.hash_len())?
                }
                Payload::V(v) => check_exact("V ver data", v.ver_data.len(), v.auth_alg.mac_len())?,
                Payload::Sp(sp) => {
                    let mut total = 0usize;
                    for param in &sp.params {
                        check_len("SP param value", param.value.len(), 0xff)?;
                        total += 2 + param.value.len();
                    }
                    check_len("SP policy params", total, 0xffff)?;
                }
                Payload::Rand(r) => check_len("RAND", r.len(), 0xff)?,
                Payload::GeneralExt(e) => check_len("EXT data", e.data.len(), 0xffff)?,
            }
        }
        Ok(())
    }

    fn write(&self, out: &mut impl Out) {
        let h = &self.header;
        out.put_u8(1); // §6.1: version 1
        out.put_u8(h.data_type.to_u8());
        out.put_u8(self.payloads.first().map_or(0, Payload::type_number));
        out.put_u8(u8::from(h.v) << 7 | h.prf.to_u8());
        out.put_u32(h.csb_id);
        let CsIdMap::SrtpId(entries) = &h.cs_map;
        // Invariant: validate() checked entries.len() <= 255.
        out.put_u8(entries.len() as u8);
        out.put_u8(0); // SRTP-ID
        for e in entries {
            out.put_u8(e.policy_no);
            out.put_u32(e.ssrc);
            out.put_u32(e.roc);
        }
        for (i, p) in self.payloads.iter().enumerate() {
            let next = self.payloads.get(i + 1).map_or(0, Payload::type_number);
            write_payload(p, next, out);
        }
    }
}

fn check_kv(kv: &KeyValidity<'_>) -> Result<(), EncodeError> {
    match kv {
        KeyValidity::Null => Ok(()),
        KeyValidity::Spi(s) => check_len("SPI/MKI", s.len(), 0xff),
        KeyValidity::Interval { from, to } => {
            check_len("valid from", from.len(), 0xff)?;
            check_len("valid to", to.len(), 0xff)
        }
    }
}

fn write_kv_data(kv: &KeyValidity<'_>, out: &mut impl Out) {
    // Invariant (all casts): check_kv() bounded the lengths by 255.
    match kv {
        KeyValidity::Null => {}
        KeyValidity::Spi(s) => {
            out.put_u8(s.len() as u8);
            out.put(s);
        }
        KeyValidity::Interval { from, to } => {
            out.put_u8(from.len() as u8);
            out.put(from);
            out.put_u8(to.len() as u8);
            out.put(to);
        }
    }
}

// Invariant for every `as` cast below: Message::validate() bounded the length by its field width.
fn write_payload(p: &Payload<'_>, next: u8, out: &mut impl Out) {
    if !matches!(p, Payload::Sign(_)) {
        out.put_u8(next);
    }
    match p {
        Payload::Kemac(k) => {
            out.put_u8(k.encr_alg.to_u8());
            out.put_u16(k.encr_data.len() as u16);
            out.put(k.encr_data);
            out.put_u8(k.mac_alg.to_u8());
            out.put(k.mac);
        }
        Payload::Pke(pke) => {
            out.put_u16(u16::from(pke.cache.to_u8()) << 14 | pke.data.len() as u16);
            out.put(pke.data);
        }
        Payload::Dh(dh) => {
            out.put_u8(dh.group.to_u8());
            out.put(dh.value);
            out.put_u8(dh.kv.kv_type());
            write_kv_data(&dh.kv, out);
        }
        Payload::Sign(s) => {
            out.put_u16(u16::from(s.s_type.to_u8()) << 12 | s.signature.len() as u16);
            out.put(s.signature);
        }
        Payload::T(t) => {
            out.put_u8(t.ts_type());
            out.put(&t.value_bytes());
        }
        Payload::Id(id) => {
            out.put_u8(id.id_type.to_u8());
            out.put_u16(id.data.len() as u16);
            out.put(id.data);
        }
        Payload::IdR(id) => {
            out.put_u8(id.role.to_u8());
            out.put_u8(id.id_type.to_u8());
            out.put_u16(id.data.len() as u16);
            out.put(id.data);
        }
        Payload::Cert(c) => {
            out.put_u8(c.cert_type.to_u8());
            out.put_u16(c.data.len() as u16);
            out.put(c.data);
        }
        Payload::Chash(c) => {
            out.put_u8(c.hash_func.to_u8());
            out.put(c.hash);
        }
        Payload::V(v) => {
            out.put_u8(v.auth_alg.to_u8());
            out.put(v.ver_data);
        }
        Payload::Sp(sp) => {
            out.put_u8(sp.policy_no);
            out.put_u8(sp.prot_type.to_u8());
            let total: usize = sp.params.iter().map(|p| 2 + p.value.len()).sum();
            out.put_u16(total as u16);
            for param in &sp.params {
                out.put_u8(param.param_type);
                out.put_u8(param.value.len() as u8);
                out.put(param.value);
            }
        }
        Payload::Rand(r) => {
            out.put_u8(r.len() as u8);
            out.put(r);
        }
        Payload::Err(code) => {
            out.put_u8(code.to_u8());
            out.put_u16(0);
        }
        Payload::GeneralExt(e) => {
            out.put_u8(e.ext_type);
            out.put_u16(e.data.len() as u16);
            out.put(e.data);
        }
    }
}

/// Encodes key data sub-payloads (RFC 3830 §6.13) for a KEMAC's data field, appending to `out`.
pub fn encode_key_data(items: &[KeyData<'_>], out: &mut Vec<u8>) -> Result<(), EncodeError> {
    for item in items {
        check_len("key data", item.key.len(), 0xffff)?;
        if let Some(salt) = item.salt {
            check_len("salt data", salt.len(), 0xffff)?;
        }
        check_kv(&item.kv)?;
    }
    for (i, item) in items.iter().enumerate() {
        let last = i + 1 == items.len();
        out.put_u8(if last {
            payload_type::LAST
        } else {
            payload_type::KEY_DATA
        });
        out.put_u8(item.type_value() << 4 | item.kv.kv_type());
        // Invariant: lengths checked above.
        out.put_u16(item.key.len() as u16);
        out.put(item.key);
        if let Some(salt) = item.salt {
            out.put_u16(salt.len() as u16);
            out.put(salt);
        }
        write_kv_data(&item.kv, out);
    }
    Ok(())
}

/// Encodes the plaintext of a PKE KEMAC, `IDi || {TGK}` (RFC 3830 §3.2): the initiator's ID
/// sub-payload, then the key data sub-payloads ([`encode_key_data`]), appending to `out`.
pub fn encode_pke_key_data(
    idi: &Id<'_>,
    items: &[KeyData<'_>],
    out: &mut Vec<u8>,
) -> Result<(), EncodeError> {
    check_len("ID data", idi.data.len(), 0xffff)?;
    if items.is_empty() {
        return Err(EncodeError::WrongLength {
            field: "PKE KEMAC key data items",
            expected: 1,
            len: 0,
        });
    }
    out.put_u8(payload_type::KEY_DATA);
    out.put_u8(idi.id_type.to_u8());
    // Invariant: length checked above.
    out.put_u16(idi.data.len() as u16);
    out.put(idi.data);
    encode_key_data(items, out)
}
