//! The SRTP security policy of an SP payload (RFC 3830 §6.10.1), as a typed struct.

use crate::error::MikeyError;
use crate::message::PolicyParam;

/// SRTP policy parameter types (RFC 3830 §6.10.1, Table 6.10.1.a).
pub mod param {
    /// Encryption algorithm (0 NULL, 1 AES-CM, 2 AES-F8).
    pub const ENCR_ALG: u8 = 0;
    /// Session encryption key length (bytes).
    pub const ENCR_KEY_LEN: u8 = 1;
    /// Authentication algorithm (0 NULL, 1 HMAC-SHA-1).
    pub const AUTH_ALG: u8 = 2;
    /// Session authentication key length (bytes).
    pub const AUTH_KEY_LEN: u8 = 3;
    /// Session salt key length (bytes).
    pub const SALT_LEN: u8 = 4;
    /// SRTP pseudo-random function (0 AES-CM).
    pub const PRF: u8 = 5;
    /// Key derivation rate (2^n; 0: derive once).
    pub const KDR: u8 = 6;
    /// SRTP encryption off (0) / on (1).
    pub const SRTP_ENCR: u8 = 7;
    /// SRTCP encryption off (0) / on (1).
    pub const SRTCP_ENCR: u8 = 8;
    /// Sender's FEC order (0 FEC-SRTP).
    pub const FEC: u8 = 9;
    /// SRTP authentication off (0) / on (1).
    pub const SRTP_AUTH: u8 = 10;
    /// Authentication tag length (bytes).
    pub const AUTH_TAG_LEN: u8 = 11;
    /// SRTP prefix length (bytes).
    pub const PREFIX_LEN: u8 = 12;

    /// The RFC's name for a parameter type, if it has one.
    pub fn name(t: u8) -> Option<&'static str> {
        Some(match t {
            ENCR_ALG => "Encryption algorithm",
            ENCR_KEY_LEN => "Session Encr. key length",
            AUTH_ALG => "Authentication algorithm",
            AUTH_KEY_LEN => "Session Auth. key length",
            SALT_LEN => "Session Salt key length",
            PRF => "SRTP Pseudo Random Function",
            KDR => "Key derivation rate",
            SRTP_ENCR => "SRTP encryption",
            SRTCP_ENCR => "SRTCP encryption",
            FEC => "Sender's FEC order",
            SRTP_AUTH => "SRTP authentication",
            AUTH_TAG_LEN => "Authentication tag length",
            PREFIX_LEN => "SRTP prefix length",
            _ => return None,
        })
    }
}

/// SRTP encryption transform of the policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SrtpEncryption {
    /// NULL cipher.
    Null,
    /// AES in counter mode (RFC 3711 §4.1.1).
    AesCm,
}

/// An SRTP policy (RFC 3830 §6.10.1). `Default` is the RFC's default set, which is
/// AES_CM_128_HMAC_SHA1_80 (RFC 4568 naming).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SrtpPolicy {
    /// Encryption transform.
    pub encryption: SrtpEncryption,
    /// Session (and master) encryption key length in bytes: 16 (AES-128) or 32 (AES-256).
    pub encr_key_len: u8,
    /// HMAC-SHA-1 authentication (false: NULL).
    pub hmac_sha1: bool,
    /// Session authentication key length in bytes (20 for HMAC-SHA-1).
    pub auth_key_len: u8,
    /// Session salt (and master salt) length in bytes (14).
    pub salt_len: u8,
    /// Key derivation rate exponent (0: no re-keying).
    pub kdr: u8,
    /// SRTP payload encryption on.
    pub srtp_encryption: bool,
    /// SRTCP encryption on.
    pub srtcp_encryption: bool,
    /// SRTP authentication on.
    pub srtp_auth: bool,
    /// Authentication tag length in bytes (10 for _80, 4 for _32).
    pub auth_tag_len: u8,
}

impl Default for SrtpPolicy {
    /// RFC 3830 §6.10.1 defaults: AES-CM, 128-bit key, HMAC-SHA-1 with 160-bit key, 112-bit salt,
    /// KDR 0, encryption and authentication on, 80-bit tag.
    fn default() -> Self {
        Self {
            encryption: SrtpEncryption::AesCm,
            encr_key_len: 16,
            hmac_sha1: true,
            auth_key_len: 20,
            salt_len: 14,
            kdr: 0,
            srtp_encryption: true,
            srtcp_encryption: true,
            srtp_auth: true,
            auth_tag_len: 10,
        }
    }
}

impl SrtpPolicy {
    /// AES_CM_128_HMAC_SHA1_80.
    pub fn aes_cm_128_hmac_sha1_80() -> Self {
        Self::default()
    }

    /// AES_CM_128_HMAC_SHA1_32.
    pub fn aes_cm_128_hmac_sha1_32() -> Self {
        Self {
            auth_tag_len: 4,
            ..Self::default()
        }
    }

    /// The RFC 4568 suite name, if the policy is one.
    pub fn suite_name(&self) -> Option<&'static str> {
        let base = Self {
            auth_tag_len: self.auth_tag_len,
            ..Self::default()
        };
        if *self != base {
            return None;
        }
        match self.auth_tag_len {
            10 => Some("AES_CM_128_HMAC_SHA1_80"),
            4 => Some("AES_CM_128_HMAC_SHA1_32"),
            _ => None,
        }
    }

    /// The SP parameter list, as (type, one-byte value) pairs, in type order.
    pub fn to_params(&self) -> Vec<(u8, [u8; 1])> {
        use param::*;
        vec![
            (
                ENCR_ALG,
                [u8::from(self.encryption == SrtpEncryption::AesCm)],
            ),
            (ENCR_KEY_LEN, [self.encr_key_len]),
            (AUTH_ALG, [u8::from(self.hmac_sha1)]),
            (AUTH_KEY_LEN, [self.auth_key_len]),
            (SALT_LEN, [self.salt_len]),
            (PRF, [0]),
            (KDR, [self.kdr]),
            (SRTP_ENCR, [u8::from(self.srtp_encryption)]),
            (SRTCP_ENCR, [u8::from(self.srtcp_encryption)]),
            (FEC, [0]),
            (SRTP_AUTH, [u8::from(self.srtp_auth)]),
            (AUTH_TAG_LEN, [self.auth_tag_len]),
            (PREFIX_LEN, [0]),
        ]
    }

    /// Reads an SP payload's SRTP parameters onto the RFC defaults, refusing what chaincall's SRTP
    /// cannot do (AES-F8, other PRFs, FEC orders, prefixes, odd key sizes).
    pub fn from_params(params: &[PolicyParam<'_>]) -> Result<Self, MikeyError> {
        use param::*;
        let mut p = Self::default();
        for prm in params {
            let [v] = prm.value else {
                return Err(MikeyError::Unsupported(
                    "SRTP policy parameter not 1 byte long",
                ));
            };
            let flag = |v: u8| match v {
                0 => Ok(false),
                1 => Ok(true),
                _ => Err(MikeyError::Unsupported("SRTP on/off parameter not 0 or 1")),
            };
            match prm.param_type {
                ENCR_ALG => {
                    p.encryption = match v {
                        0 => SrtpEncryption::Null,
                        1 => SrtpEncryption::AesCm,
                        _ => {
                            return Err(MikeyError::Unsupported(
                                "SRTP encryption algorithm (only NULL and AES-CM)",
                            ));
                        }
                    }
                }
                ENCR_KEY_LEN => p.encr_key_len = *v,
                AUTH_ALG => {
                    p.hmac_sha1 = flag(*v).map_err(|_| {
                        MikeyError::Unsupported(
                            "SRTP authentication algorithm (only NULL and HMAC-SHA-1)",
                        )
                    })?
                }
                AUTH_KEY_LEN => p.auth_key_len = *v,
                SALT_LEN => p.salt_len = *v,
                PRF if *v == 0 => {}
                PRF => return Err(MikeyError::Unsupported("SRTP PRF (only AES-CM)")),
                KDR => p.kdr = *v,
                SRTP_ENCR => p.srtp_encryption = flag(*v)?,
                SRTCP_ENCR => p.srtcp_encryption = flag(*v)?,
                FEC if *v == 0 => {}
                FEC => return Err(MikeyError::Unsupported("SRTP FEC order (only FEC-SRTP)")),
                SRTP_AUTH => p.srtp_auth = flag(*v)?,
                AUTH_TAG_LEN => p.auth_tag_len = *v,
                PREFIX_LEN if *v == 0 => {}
                PREFIX_LEN => return Err(MikeyError::Unsupported("SRTP prefix length (only 0)")),
                _ => {
                    return Err(MikeyError::Unsupported(
                        "unknown SRTP policy parameter type",
                    ));
                }
            }
        }
        p.validate()?;
        Ok(p)
    }

    /// Checks the combination is one SRTP can run.
    pub fn validate(&self) -> Result<(), MikeyError> {
        if self.encryption == SrtpEncryption::AesCm && !matches!(self.encr_key_len, 16 | 32) {
            return Err(MikeyError::Unsupported(
                "AES-CM key length (only 16 or 32 bytes)",
            ));
        }
        if self.salt_len != 14 {
            return Err(MikeyError::Unsupported("SRTP salt length (only 14 bytes)"));
        }
        if self.hmac_sha1 && (self.auth_key_len != 20 || !matches!(self.auth_tag_len, 4 | 10)) {
            return Err(MikeyError::Unsupported(
                "HMAC-SHA-1 key (20 bytes) or tag (4 or 10 bytes)",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_round_trip_and_defaults() {
        let p = SrtpPolicy::aes_cm_128_hmac_sha1_32();
        let raw = p.to_params();
        let params: Vec<PolicyParam<'_>> = raw
            .iter()
            .map(|(t, v)| PolicyParam {
                param_type: *t,
                value: v,
            })
            .collect();
        assert_eq!(SrtpPolicy::from_params(&params).unwrap(), p);
        assert_eq!(
            SrtpPolicy::from_params(&[]).unwrap().suite_name(),
            Some("AES_CM_128_HMAC_SHA1_80")
        );
        let f8 = [PolicyParam {
            param_type: 0,
            value: &[2],
        }];
        assert!(SrtpPolicy::from_params(&f8).is_err());
    }
}
