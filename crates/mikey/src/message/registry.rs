//! The MIKEY registries: payload type numbers and the value tables of RFC 3830 (and RFC 6043),
//! each a closed enum that names unknown wire values in its decode error.

use std::fmt;

use crate::error::{DecodeError, DecodeErrorKind};

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

            pub(super) fn read(value: u8, offset: usize) -> Result<Self, DecodeError> {
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
