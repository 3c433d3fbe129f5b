//! Errors of identity names and keys.

/// Why a phone number or domain name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NameError {
    /// The input was empty (after trimming).
    #[error("empty identity name")]
    Empty,
    /// A number did not start with `+` and a country code.
    #[error(
        "phone number {input:?} must be in E.164 form: '+', country code, number (e.g. +15551234567)"
    )]
    MissingPlus {
        /// The input as given.
        input: String,
    },
    /// A number held a character other than digits and the usual separators (space, `-`, `.`, `(`, `)`).
    #[error("phone number {input:?} has an invalid character {found:?} at offset {offset}")]
    InvalidPhoneChar {
        /// The input as given.
        input: String,
        /// The offending character.
        found: char,
        /// Its byte offset in the input.
        offset: usize,
    },
    /// E.164 numbers have at most 15 digits; fewer than 7 is no real subscriber number.
    #[error("phone number {input:?} has {digits} digits; E.164 allows 7 to 15")]
    PhoneLength {
        /// The input as given.
        input: String,
        /// How many digits it had.
        digits: usize,
    },
    /// Country codes never start with 0.
    #[error("phone number {input:?}: a country code never starts with 0")]
    LeadingZero {
        /// The input as given.
        input: String,
    },
    /// A domain name broke the DNS hostname rules (RFC 1123 §2.1).
    #[error("domain name {input:?} is invalid: {reason}")]
    InvalidDomain {
        /// The input as given.
        input: String,
        /// Which rule it broke.
        reason: &'static str,
    },
}

/// Why a key, signature or ciphertext was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The key-type tag is not one this build knows.
    #[error("unknown identity key type tag {0}")]
    UnknownKeyType(u8),
    /// The bytes are not a valid public key of the tagged type (wrong length, not on the curve).
    #[error("malformed {key_type} public key ({len} bytes)")]
    MalformedPublicKey {
        /// The tagged type's name.
        key_type: &'static str,
        /// How many bytes were given.
        len: usize,
    },
    /// The bytes are not a valid secret key (wrong length, zero, or not below the group order).
    #[error("malformed secret key")]
    MalformedSecretKey,
    /// A signature was not 64 bytes or not a valid encoding.
    #[error("malformed signature ({len} bytes, expected 64)")]
    MalformedSignature {
        /// How many bytes were given.
        len: usize,
    },
    /// A high-S signature: the malleated twin of a canonical one, refused so that each signed
    /// message has exactly one valid encoding.
    #[error("non-canonical (high-S) signature refused")]
    HighS,
    /// The signature does not verify under the key.
    #[error("signature does not verify under the identity key")]
    BadSignature,
    /// An ECIES ciphertext was too short, of an unknown version, or failed authentication.
    #[error("ciphertext cannot be opened: {0}")]
    Decrypt(&'static str),
}
