//! Session keys of one master key and the per-packet cryptographic transforms.
//!
//! Static dispatch over a closed enum: one match per packet, no trait objects, no boxing; the
//! backend (RustCrypto `aes`, `aes-gcm`, `sha1`) was chosen by measurement (see the crate docs).

use aes::Aes128;
use aes::cipher::KeyInit;
use aes::cipher::generic_array::GenericArray;
use aes_gcm::aead::AeadInPlace;
use aes_gcm::{Aes128Gcm, Aes256Gcm, Nonce, Tag};
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, Zeroizing};

use crate::aes_cm;
use crate::error::SrtpError;
use crate::hmac::HmacSha1;
use crate::profile::Profile;

/// RFC 3711 §4.3.2 key derivation labels.
pub(crate) mod label {
    pub(crate) const SRTP_ENCRYPTION: u8 = 0x00;
    pub(crate) const SRTP_AUTH: u8 = 0x01;
    pub(crate) const SRTP_SALT: u8 = 0x02;
    pub(crate) const SRTCP_ENCRYPTION: u8 = 0x03;
    pub(crate) const SRTCP_AUTH: u8 = 0x04;
    pub(crate) const SRTCP_SALT: u8 = 0x05;
}

/// The session keys for SRTP or for SRTCP, keyed and scheduled once.
// Two per session, never moved per packet: size does not matter, a pointer chase per packet would.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Transform {
    /// AES-128-CM + HMAC-SHA1 (RFC 3711 §4.1.1, §4.2.1).
    CmSha1 {
        aes: Aes128,
        salt: [u8; 14],
        mac: HmacSha1,
    },
    /// AEAD_AES_128_GCM or AEAD_AES_256_GCM (RFC 7714).
    Gcm { aead: GcmAead, salt: [u8; 12] },
}

/// The AES-GCM key of either RFC 7714 size: the two differ only in key length, so every GCM
/// transform is written once against this.
// Like `Transform`: two per session, never moved per packet, so no box (and no pointer chase).
#[allow(clippy::large_enum_variant)]
pub(crate) enum GcmAead {
    /// AEAD_AES_128_GCM.
    Aes128(Aes128Gcm),
    /// AEAD_AES_256_GCM.
    Aes256(Aes256Gcm),
}

impl GcmAead {
    /// Encrypts `body` in place, authenticating `aad`; returns the 16-octet tag.
    #[inline]
    fn seal(&self, nonce: &[u8; 12], aad: &[u8], body: &mut [u8]) -> Tag {
        let nonce = Nonce::from_slice(nonce);
        match self {
            GcmAead::Aes128(a) => a.encrypt_in_place_detached(nonce, aad, body),
            GcmAead::Aes256(a) => a.encrypt_in_place_detached(nonce, aad, body),
        }
        // Invariant: SRTP and SRTCP packets are far below GCM's 2^36-octet plaintext limit.
        .expect("GCM input within limits")
    }

    /// Verifies `tag` over `aad` and `body`, then decrypts `body` in place.
    #[inline]
    fn open(
        &self,
        nonce: &[u8; 12],
        aad: &[u8],
        body: &mut [u8],
        tag: &[u8],
    ) -> Result<(), SrtpError> {
        let (nonce, tag) = (Nonce::from_slice(nonce), Tag::from_slice(tag));
        // aes-gcm compares the tag in constant time (subtle) before decrypting.
        match self {
            GcmAead::Aes128(a) => a.decrypt_in_place_detached(nonce, aad, body, tag),
            GcmAead::Aes256(a) => a.decrypt_in_place_detached(nonce, aad, body, tag),
        }
        .map_err(|_| SrtpError::AuthFailed)
    }
}

impl Drop for Transform {
    fn drop(&mut self) {
        // The AES key schedules and HMAC states zeroize themselves (`aes/zeroize`, ZeroizeOnDrop);
        // the session salts are plain arrays.
        match self {
            Transform::CmSha1 { salt, .. } => salt.zeroize(),
            Transform::Gcm { salt, .. } => salt.zeroize(),
        }
    }
}

impl Transform {
    /// Derives the session keys for SRTP (`rtcp == false`) or SRTCP from the master key and salt
    /// (RFC 3711 §4.3, kdr 0; RFC 7714 §11 for GCM).
    pub(crate) fn derive(
        profile: Profile,
        master_key: &[u8],
        master_salt: &[u8],
        rtcp: bool,
    ) -> Self {
        let (l_enc, l_auth, l_salt) = if rtcp {
            (
                label::SRTCP_ENCRYPTION,
                label::SRTCP_AUTH,
                label::SRTCP_SALT,
            )
        } else {
            (label::SRTP_ENCRYPTION, label::SRTP_AUTH, label::SRTP_SALT)
        };
        let mut ke = Zeroizing::new([0u8; 32]);
        let ke = &mut ke[..profile.master_key_len()];
        aes_cm::derive(master_key, master_salt, l_enc, ke);
        if profile.is_aead() {
            let mut salt = [0u8; 12];
            aes_cm::derive(master_key, master_salt, l_salt, &mut salt);
            Self::gcm(ke, salt)
        } else {
            // §8.2: n_a = 160 bits of auth key, n_s = 112 bits of salt.
            let mut ka = Zeroizing::new([0u8; 20]);
            aes_cm::derive(master_key, master_salt, l_auth, &mut ka[..]);
            let mut salt = [0u8; 14];
            aes_cm::derive(master_key, master_salt, l_salt, &mut salt);
            Transform::CmSha1 {
                aes: Aes128::new(GenericArray::from_slice(ke)),
                salt,
                mac: HmacSha1::new(&ka[..]),
            }
        }
    }

    /// A GCM transform from session key and salt directly (RFC 7714 vectors start here).
    pub(crate) fn gcm(key: &[u8], salt: [u8; 12]) -> Self {
        let aead = match key.len() {
            32 => GcmAead::Aes256(Aes256Gcm::new(GenericArray::from_slice(key))),
            _ => GcmAead::Aes128(Aes128Gcm::new(GenericArray::from_slice(key))),
        };
        Transform::Gcm { aead, salt }
    }

    /// Protects an RTP packet in place (RFC 3711 §3.3; RFC 7714 §8). `buf[..len]` is the RTP
    /// packet, `hdr` its header length; the tag (and MKI) go after it. Returns the SRTP length.
    #[allow(clippy::too_many_arguments)] // one flat call per packet; a struct would only be rebuilt
    #[inline]
    pub(crate) fn protect_rtp(
        &self,
        buf: &mut [u8],
        len: usize,
        hdr: usize,
        ssrc: u32,
        index: u64,
        tag_len: usize,
        mki: &[u8],
    ) -> usize {
        match self {
            Transform::CmSha1 { aes, salt, mac } => {
                // §3.3 step 4: encrypt the payload with the keystream for (SSRC, index).
                aes_cm::apply_keystream(aes, &aes_cm::iv(salt, ssrc, index), &mut buf[hdr..len]);
                // §4.2: M = authenticated portion || ROC; the MKI is not authenticated (§3.1).
                let roc = ((index >> 16) as u32).to_be_bytes();
                let tag = mac.mac(&buf[..len], &roc);
                buf[len..len + mki.len()].copy_from_slice(mki);
                buf[len + mki.len()..len + mki.len() + tag_len].copy_from_slice(&tag[..tag_len]);
                len + mki.len() + tag_len
            }
            Transform::Gcm { aead, salt } => {
                gcm_seal_rtp(aead, salt, buf, len, hdr, ssrc, index, mki)
            }
        }
    }

    /// Verifies and decrypts an SRTP packet in place. `body` is the length without MKI and tag,
    /// `tag` the received tag. On success `buf[..body]` is the RTP packet.
    #[allow(clippy::too_many_arguments)] // one flat call per packet
    #[inline]
    pub(crate) fn unprotect_rtp(
        &self,
        buf: &mut [u8],
        body: usize,
        hdr: usize,
        ssrc: u32,
        index: u64,
        tag: &[u8],
    ) -> Result<(), SrtpError> {
        match self {
            Transform::CmSha1 { aes, salt, mac } => {
                let roc = ((index >> 16) as u32).to_be_bytes();
                // §3.3 step 5.
                check_tag(&mac.mac(&buf[..body], &roc), tag)?;
                aes_cm::apply_keystream(aes, &aes_cm::iv(salt, ssrc, index), &mut buf[hdr..body]);
                Ok(())
            }
            Transform::Gcm { aead, salt } => {
                // §8.2: the RTP header is the AAD, the payload the ciphertext.
                let (aad, rest) = buf.split_at_mut(hdr);
                aead.open(
                    &rtp_nonce(salt, ssrc, index),
                    aad,
                    &mut rest[..body - hdr],
                    tag,
                )
            }
        }
    }

    /// Protects an RTCP packet in place with the E flag set (RFC 3711 §3.4; RFC 7714 §9).
    /// Returns the SRTCP length.
    #[inline]
    pub(crate) fn protect_rtcp(
        &self,
        buf: &mut [u8],
        len: usize,
        ssrc: u32,
        index: u32,
        tag_len: usize,
        mki: &[u8],
    ) -> usize {
        let e_index = (0x8000_0000 | index).to_be_bytes();
        match self {
            Transform::CmSha1 { aes, salt, mac } => {
                // §3.4: everything after the first 8 octets is encrypted, with i = SRTCP index.
                aes_cm::apply_keystream(
                    aes,
                    &aes_cm::iv(salt, ssrc, u64::from(index)),
                    &mut buf[8..len],
                );
                // Trailer: E || SRTCP index (authenticated), MKI, tag (Figure 2).
                buf[len..len + 4].copy_from_slice(&e_index);
                let tag = mac.mac(&buf[..len + 4], &[]);
                buf[len + 4..len + 4 + mki.len()].copy_from_slice(mki);
                let at = len + 4 + mki.len();
                buf[at..at + tag_len].copy_from_slice(&tag[..tag_len]);
                at + tag_len
            }
            Transform::Gcm { aead, salt } => gcm_seal_rtcp(aead, salt, buf, len, ssrc, index, mki),
        }
    }

    /// Verifies (and, with the E flag, decrypts) an SRTCP packet in place. `body` ends the RTCP
    /// part, `e_index` is the received E || SRTCP index word. For AES-CM the authenticated
    /// portion is `buf[..body + 4]` (the index word sits right after the body).
    #[allow(clippy::too_many_arguments)] // one flat call per packet
    #[inline]
    pub(crate) fn unprotect_rtcp(
        &self,
        buf: &mut [u8],
        body: usize,
        ssrc: u32,
        e_index: u32,
        tag: &[u8],
        index_at: usize,
    ) -> Result<(), SrtpError> {
        let encrypted = e_index & 0x8000_0000 != 0;
        let index = e_index & 0x7FFF_FFFF;
        match self {
            Transform::CmSha1 { aes, salt, mac } => {
                debug_assert_eq!(index_at, body);
                check_tag(&mac.mac(&buf[..body + 4], &[]), tag)?;
                if encrypted {
                    aes_cm::apply_keystream(
                        aes,
                        &aes_cm::iv(salt, ssrc, u64::from(index)),
                        &mut buf[8..body],
                    );
                }
                Ok(())
            }
            Transform::Gcm { aead, salt } => {
                gcm_open_rtcp(aead, salt, buf, body, ssrc, e_index, tag, index_at)
            }
        }
    }
}

/// RFC 7714 §8.1: IV = (00 00 || SSRC || ROC || SEQ) XOR salt; ROC || SEQ is the 48-bit index.
pub(crate) fn rtp_nonce(salt: &[u8; 12], ssrc: u32, index: u64) -> [u8; 12] {
    let mut iv = [0u8; 12];
    iv[2..6].copy_from_slice(&ssrc.to_be_bytes());
    iv[6..12].copy_from_slice(&index.to_be_bytes()[2..]);
    iv.iter_mut().zip(salt).for_each(|(x, y)| *x ^= y);
    iv
}

/// RFC 7714 §9.1: IV = (00 00 || SSRC || 00 00 || 0 || SRTCP index) XOR salt.
pub(crate) fn rtcp_nonce(salt: &[u8; 12], ssrc: u32, index: u32) -> [u8; 12] {
    let mut iv = [0u8; 12];
    iv[2..6].copy_from_slice(&ssrc.to_be_bytes());
    iv[8..12].copy_from_slice(&(index & 0x7FFF_FFFF).to_be_bytes());
    iv.iter_mut().zip(salt).for_each(|(x, y)| *x ^= y);
    iv
}

/// Compares the received HMAC tag with the first `tag.len()` octets of `expect` in constant time:
/// a timing oracle on the tag would be a forgery oracle (RFC 3711 §3.3 step 5, §3.4).
#[inline]
fn check_tag(expect: &[u8], tag: &[u8]) -> Result<(), SrtpError> {
    if bool::from(expect[..tag.len()].ct_eq(tag)) {
        Ok(())
    } else {
        Err(SrtpError::AuthFailed)
    }
}

/// RFC 7714 §9.2: the SRTCP AAD with E = 1 is the first 8 octets of the RTCP packet, then the
/// E || SRTCP index word.
fn rtcp_aad(buf: &[u8], word: [u8; 4]) -> [u8; 12] {
    let mut aad = [0u8; 12];
    aad[..8].copy_from_slice(&buf[..8]);
    aad[8..].copy_from_slice(&word);
    aad
}

#[allow(clippy::too_many_arguments)] // one flat call per packet
fn gcm_seal_rtp(
    aead: &GcmAead,
    salt: &[u8; 12],
    buf: &mut [u8],
    len: usize,
    hdr: usize,
    ssrc: u32,
    index: u64,
    mki: &[u8],
) -> usize {
    // §8.2: the AAD is the RTP header (with CSRCs and extension); the payload is encrypted.
    let (aad, rest) = buf.split_at_mut(hdr);
    let tag = aead.seal(&rtp_nonce(salt, ssrc, index), aad, &mut rest[..len - hdr]);
    // §6 / Figure 1: the tag follows the ciphertext, the optional MKI follows the tag.
    buf[len..len + 16].copy_from_slice(&tag);
    buf[len + 16..len + 16 + mki.len()].copy_from_slice(mki);
    len + 16 + mki.len()
}

fn gcm_seal_rtcp(
    aead: &GcmAead,
    salt: &[u8; 12],
    buf: &mut [u8],
    len: usize,
    ssrc: u32,
    index: u32,
    mki: &[u8],
) -> usize {
    let e_index = (0x8000_0000 | index).to_be_bytes();
    let aad = rtcp_aad(buf, e_index);
    let tag = aead.seal(&rtcp_nonce(salt, ssrc, index), &aad, &mut buf[8..len]);
    // Figure 3: ciphertext || tag || E || SRTCP index || MKI.
    buf[len..len + 16].copy_from_slice(&tag);
    buf[len + 16..len + 20].copy_from_slice(&e_index);
    buf[len + 20..len + 20 + mki.len()].copy_from_slice(mki);
    len + 20 + mki.len()
}

#[allow(clippy::too_many_arguments)] // one flat call per packet
fn gcm_open_rtcp(
    aead: &GcmAead,
    salt: &[u8; 12],
    buf: &mut [u8],
    body: usize,
    ssrc: u32,
    e_index: u32,
    tag: &[u8],
    index_at: usize,
) -> Result<(), SrtpError> {
    let nonce = rtcp_nonce(salt, ssrc, e_index);
    let word = e_index.to_be_bytes();
    if e_index & 0x8000_0000 != 0 {
        let aad = rtcp_aad(buf, word);
        aead.open(&nonce, &aad, &mut buf[8..body], tag)
    } else {
        // §9.2 with E = 0: the whole RTCP packet and the index word are AAD, nothing is
        // encrypted. Move the index word next to the body (over the tag, already copied out) so
        // the AAD is one contiguous slice; no scratch buffer.
        debug_assert!(index_at >= body + 4);
        buf[body..body + 4].copy_from_slice(&word);
        aead.open(&nonce, &buf[..body + 4], &mut [], tag)
    }
}

/// Test aid for RFC 7714 §17.3: seals an RTCP packet with E = 0 (authenticated, not encrypted).
#[cfg(test)]
pub(crate) fn gcm_seal_rtcp_unencrypted(
    aead: &GcmAead,
    salt: &[u8; 12],
    buf: &mut [u8],
    len: usize,
    ssrc: u32,
    index: u32,
) -> usize {
    let nonce = rtcp_nonce(salt, ssrc, index);
    buf[len..len + 4].copy_from_slice(&index.to_be_bytes());
    let tag = aead.seal(&nonce, &buf[..len + 4], &mut []);
    buf[len..len + 16].copy_from_slice(&tag);
    buf[len + 16..len + 20].copy_from_slice(&index.to_be_bytes());
    len + 20
}
