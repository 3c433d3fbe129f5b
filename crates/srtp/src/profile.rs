//! Protection profiles (RFC 3711 §5, RFC 4568 §6.2, RFC 7714 §14) and their lengths.

use core::fmt;
use core::str::FromStr;

use crate::error::SrtpError;

/// An SRTP protection profile: cipher, authentication and the lengths that follow from them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Profile {
    /// AES-128 counter mode, HMAC-SHA1 with an 80-bit tag (RFC 3711 §4.1.1, §4.2.1; RFC 4568).
    AesCm128HmacSha1_80,
    /// AES-128 counter mode, HMAC-SHA1 with a 32-bit SRTP tag; SRTCP keeps 80 bits (RFC 4568 §6.2.2).
    AesCm128HmacSha1_32,
    /// AES-128 GCM with a 16-octet tag (RFC 7714 §14.2).
    AeadAes128Gcm,
    /// AES-256 GCM with a 16-octet tag (RFC 7714 §14.2).
    AeadAes256Gcm,
}

impl Profile {
    /// Every profile, in the order the benches and tests report them.
    pub const ALL: [Profile; 4] = [
        Profile::AesCm128HmacSha1_80,
        Profile::AesCm128HmacSha1_32,
        Profile::AeadAes128Gcm,
        Profile::AeadAes256Gcm,
    ];

    /// The name the RFCs and SDP (`a=crypto`) use.
    pub fn rfc_name(self) -> &'static str {
        match self {
            Profile::AesCm128HmacSha1_80 => "AES_CM_128_HMAC_SHA1_80",
            Profile::AesCm128HmacSha1_32 => "AES_CM_128_HMAC_SHA1_32",
            Profile::AeadAes128Gcm => "AEAD_AES_128_GCM",
            Profile::AeadAes256Gcm => "AEAD_AES_256_GCM",
        }
    }

    /// Master key length in octets.
    pub fn master_key_len(self) -> usize {
        match self {
            Profile::AeadAes256Gcm => 32,
            _ => 16,
        }
    }

    /// Master salt length in octets: 112 bits for AES-CM (RFC 3711 §8.2), 96 for GCM (RFC 7714 §14.2).
    pub fn master_salt_len(self) -> usize {
        if self.is_aead() { 12 } else { 14 }
    }

    /// True for the AEAD (GCM) profiles.
    pub fn is_aead(self) -> bool {
        matches!(self, Profile::AeadAes128Gcm | Profile::AeadAes256Gcm)
    }

    /// SRTP authentication tag length in octets.
    pub fn srtp_tag_len(self) -> usize {
        match self {
            Profile::AesCm128HmacSha1_80 => 10,
            Profile::AesCm128HmacSha1_32 => 4,
            Profile::AeadAes128Gcm | Profile::AeadAes256Gcm => 16,
        }
    }

    /// SRTCP authentication tag length in octets (80 bits for both SHA1 profiles: RFC 4568 §6.2.2).
    pub fn srtcp_tag_len(self) -> usize {
        match self {
            Profile::AesCm128HmacSha1_80 | Profile::AesCm128HmacSha1_32 => 10,
            Profile::AeadAes128Gcm | Profile::AeadAes256Gcm => 16,
        }
    }

    /// Octets `protect_rtp` appends to an RTP packet with an MKI of `mki_len` octets.
    pub fn srtp_overhead(self, mki_len: usize) -> usize {
        self.srtp_tag_len() + mki_len
    }

    /// Octets `protect_rtcp` appends to an RTCP packet (E flag and SRTCP index, MKI, tag).
    pub fn srtcp_overhead(self, mki_len: usize) -> usize {
        4 + self.srtcp_tag_len() + mki_len
    }
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.rfc_name())
    }
}

impl FromStr for Profile {
    type Err = SrtpError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Profile::ALL
            .into_iter()
            .find(|p| p.rfc_name() == s)
            .ok_or(SrtpError::InvalidConfig("unknown SRTP profile name"))
    }
}
