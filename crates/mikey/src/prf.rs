//! RFC 3830 §4.1: the MIKEY-1 PRF and the key derivations built on it, and the KEMAC transforms of
//! §4.2 (AES-CM-128 encryption, HMAC-SHA-1-160 MAC).

use aes::Aes128;
use ctr::cipher::{KeyIvInit, StreamCipher};
use hmac::{Hmac, Mac};
use sha1::Sha1;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

type HmacSha1 = Hmac<Sha1>;

/// §4.1.3 constant for TEK derivation.
pub const CONST_TEK: u32 = 0x2AD0_1C64;
/// §4.1.3 constant for (SRTP) authentication-key derivation from a TGK.
pub const CONST_TEK_AUTH: u32 = 0x1B5C_7973;
/// §4.1.3 constant for (SRTP) encryption-key derivation from a TGK.
pub const CONST_TEK_ENCR: u32 = 0x1579_8CEF;
/// §4.1.3 constant for salting-key derivation from a TGK.
pub const CONST_TEK_SALT: u32 = 0x39A2_C14B;
/// §4.1.4 constant for encr_key derivation from the PSK or envelope key.
pub const CONST_ENCR: u32 = 0x1505_33E1;
/// §4.1.4 constant for auth_key derivation from the PSK or envelope key.
pub const CONST_AUTH: u32 = 0x2D22_AC75;
/// §4.1.4 constant for salt_key derivation from the PSK or envelope key.
pub const CONST_SALT: u32 = 0x29B8_8916;

/// HMAC-SHA-1 output: 160 bits (§4.1.2).
const HASH_LEN: usize = 20;
/// The inkey is cut into 256-bit pieces (§4.1.2).
const CHUNK_LEN: usize = 32;

fn hmac_sha1(key: &[u8], parts: &[&[u8]]) -> [u8; HASH_LEN] {
    // Invariant: HMAC takes keys of any length.
    let mut mac = HmacSha1::new_from_slice(key).expect("HMAC accepts any key length");
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

/// RFC 3830 §4.1.2 P-function: `P(s, label, m) = HMAC(s, A_1 || label) || ... || HMAC(s, A_m || label)`
/// with `A_0 = label`, `A_i = HMAC(s, A_{i-1})`; XORed into `out` (truncated to its length).
fn p_xor_into(s: &[u8], label: &[u8], out: &mut [u8]) {
    let mut a = Zeroizing::new(hmac_sha1(s, &[label])); // A_1
    for block in out.chunks_mut(HASH_LEN) {
        let h = Zeroizing::new(hmac_sha1(s, &[a.as_slice(), label]));
        for (o, x) in block.iter_mut().zip(h.iter()) {
            *o ^= x;
        }
        *a = hmac_sha1(s, &[a.as_slice()]);
    }
}

/// RFC 3830 §4.1.2 `PRF(inkey, label)`, filling `out` (its length is `outkey_len`).
///
/// The inkey is split into `n = ceil(inkey_len / 256)` pieces `s_1 .. s_n` (the last may be shorter),
/// `m = ceil(outkey_len / 160)`, and `PRF = P(s_1, label, m) XOR ... XOR P(s_n, label, m)` truncated to
/// `outkey_len`. An empty inkey (n = 0, which the RFC leaves undefined) is taken as one empty piece
/// rather than yielding all zeros; the modes never derive from an empty key.
pub fn prf(inkey: &[u8], label: &[u8], out: &mut [u8]) {
    out.fill(0);
    if inkey.is_empty() {
        p_xor_into(&[], label, out);
        return;
    }
    for s in inkey.chunks(CHUNK_LEN) {
        p_xor_into(s, label, out);
    }
}

/// The label of §4.1.3 (keys from a TGK): `constant || cs_id || csb_id || RAND`.
pub fn label_tgk(constant: u32, cs_id: u8, csb_id: u32, rand: &[u8]) -> Vec<u8> {
    let mut label = Vec::with_capacity(9 + rand.len());
    label.extend_from_slice(&constant.to_be_bytes());
    label.push(cs_id);
    label.extend_from_slice(&csb_id.to_be_bytes());
    label.extend_from_slice(rand);
    label
}

/// The label of §4.1.4 (keys from the PSK or envelope key): `constant || 0xFF || csb_id || RAND`.
pub fn label_transport(constant: u32, csb_id: u32, rand: &[u8]) -> Vec<u8> {
    label_tgk(constant, 0xFF, csb_id, rand)
}

/// The keys that protect a MIKEY message itself (§4.1.4), derived from the PSK or envelope key.
pub struct TransportKeys {
    /// AES-CM-128 key for the KEMAC's key data (128 bits).
    pub encr_key: Zeroizing<[u8; 16]>,
    /// HMAC-SHA-1 key for the KEMAC and V MACs (160 bits, §4.2.1).
    pub auth_key: Zeroizing<[u8; 20]>,
    /// Salt for the AES-CM IV (112 bits, §4.2.3).
    pub salt_key: Zeroizing<[u8; 14]>,
}

impl TransportKeys {
    /// §4.1.4: `encr_key`, `auth_key` and `salt_key` from `inkey` (PSK or env_key), CSB ID and RAND.
    pub fn derive(inkey: &[u8], csb_id: u32, rand: &[u8]) -> Self {
        let mut keys = Self {
            encr_key: Zeroizing::new([0; 16]),
            auth_key: Zeroizing::new([0; 20]),
            salt_key: Zeroizing::new([0; 14]),
        };
        prf(
            inkey,
            &label_transport(CONST_ENCR, csb_id, rand),
            keys.encr_key.as_mut(),
        );
        prf(
            inkey,
            &label_transport(CONST_AUTH, csb_id, rand),
            keys.auth_key.as_mut(),
        );
        prf(
            inkey,
            &label_transport(CONST_SALT, csb_id, rand),
            keys.salt_key.as_mut(),
        );
        keys
    }

    /// §4.2.3 AES-CM-128 over the key data: IV = `(S XOR (0x0000 || CSB ID || T)) || 0x0000`, S the
    /// 112-bit salt_key, T the 64-bit timestamp of the message. Encrypts and decrypts (in place).
    pub fn aes_cm(&self, csb_id: u32, t: u64, data: &mut [u8]) {
        let mut iv = [0u8; 16];
        iv[..14].copy_from_slice(self.salt_key.as_ref());
        let mut mask = [0u8; 14];
        mask[2..6].copy_from_slice(&csb_id.to_be_bytes());
        mask[6..14].copy_from_slice(&t.to_be_bytes());
        for (v, m) in iv.iter_mut().zip(mask) {
            *v ^= m;
        }
        let mut cipher = ctr::Ctr128BE::<Aes128>::new(self.encr_key.as_ref().into(), &iv.into());
        cipher.apply_keystream(data);
    }

    /// §4.2.1 HMAC-SHA-1-160 under auth_key over the concatenated `parts`.
    pub fn mac(&self, parts: &[&[u8]]) -> [u8; 20] {
        hmac_sha1(self.auth_key.as_ref(), parts)
    }

    /// Checks a MAC in constant time.
    pub fn verify_mac(&self, parts: &[&[u8]], tag: &[u8]) -> bool {
        bool::from(self.mac(parts).as_slice().ct_eq(tag))
    }
}

/// §4.1.3: the SRTP master key (TEK) and master salt of crypto session `cs_id` from the TGK.
pub fn derive_srtp(
    tgk: &[u8],
    cs_id: u8,
    csb_id: u32,
    rand: &[u8],
    key_len: usize,
    salt_len: usize,
) -> (Zeroizing<Vec<u8>>, Zeroizing<Vec<u8>>) {
    let mut key = Zeroizing::new(vec![0u8; key_len]);
    let mut salt = Zeroizing::new(vec![0u8; salt_len]);
    prf(tgk, &label_tgk(CONST_TEK, cs_id, csb_id, rand), &mut key);
    prf(
        tgk,
        &label_tgk(CONST_TEK_SALT, cs_id, csb_id, rand),
        &mut salt,
    );
    (key, salt)
}

#[cfg(test)]
mod rfc3830_tests {
    use super::*;

    /// A second, naive transcription of §4.1.2, sharing nothing with `prf` but HMAC.
    fn reference_prf(inkey: &[u8], label: &[u8], outlen: usize) -> Vec<u8> {
        let n = inkey.len().div_ceil(32);
        let m = outlen.div_ceil(20);
        let mut acc = vec![0u8; m * 20];
        for i in 0..n {
            let s = &inkey[i * 32..usize::min((i + 1) * 32, inkey.len())];
            let mut a_prev = label.to_vec();
            let mut p = Vec::new();
            for _ in 0..m {
                let a = hmac_sha1(s, &[&a_prev]).to_vec();
                let mut input = a.clone();
                input.extend_from_slice(label);
                p.extend_from_slice(&hmac_sha1(s, &[&input]));
                a_prev = a;
            }
            for (x, y) in acc.iter_mut().zip(p) {
                *x ^= y;
            }
        }
        acc.truncate(outlen);
        acc
    }

    #[test]
    fn prf_matches_the_rfc_text_for_short_and_long_keys() {
        for inlen in [1usize, 16, 31, 32, 33, 64, 65, 100] {
            let inkey: Vec<u8> = (0..inlen as u8).map(|b| b.wrapping_mul(7) ^ 0x5a).collect();
            for outlen in [1usize, 14, 16, 20, 21, 40, 46, 64] {
                let mut out = vec![0u8; outlen];
                prf(&inkey, b"label", &mut out);
                assert_eq!(
                    out,
                    reference_prf(&inkey, b"label", outlen),
                    "{inlen}/{outlen}"
                );
            }
        }
    }

    #[test]
    fn long_keys_mix_every_chunk() {
        let mut a = [0u8; 20];
        let mut b = [0u8; 20];
        let key = [7u8; 40];
        let mut key2 = key;
        key2[39] ^= 1;
        prf(&key, b"x", &mut a);
        prf(&key2, b"x", &mut b);
        assert_ne!(a, b, "bytes beyond the first 256 bits must matter");
    }

    /// Known answer computed independently (Python `hmac`, from the §4.1.2 text) for
    /// inkey = 00..1f (32 bytes), label = §4.1.3 TEK label with cs_id 1, CSB ID 0x01020304 and
    /// RAND = 16 x 0xAA, 16 output bytes.
    #[test]
    fn tek_label_layout_and_known_answer() {
        let rand = [0xAAu8; 16];
        let label = label_tgk(CONST_TEK, 1, 0x0102_0304, &rand);
        assert_eq!(&label[..9], &[0x2A, 0xD0, 0x1C, 0x64, 1, 1, 2, 3, 4]);
        assert_eq!(
            label_transport(CONST_AUTH, 0x0102_0304, &rand)[..9],
            [0x2D, 0x22, 0xAC, 0x75, 0xFF, 1, 2, 3, 4]
        );
        let inkey: Vec<u8> = (0u8..32).collect();
        let mut out = [0u8; 16];
        prf(&inkey, &label, &mut out);
        assert_eq!(hex::encode(out), KAT_TEK);
    }

    const KAT_TEK: &str = "95c68966d5a5f467a6d32ec860654549";

    #[test]
    fn aes_cm_round_trips_and_depends_on_t_and_csb() {
        let keys = TransportKeys::derive(b"0123456789abcdef", 1, &[1; 16]);
        let mut data = *b"key data sub-payloads";
        keys.aes_cm(1, 42, &mut data);
        assert_ne!(&data, b"key data sub-payloads");
        let mut other = *b"key data sub-payloads";
        keys.aes_cm(1, 43, &mut other);
        assert_ne!(data, other);
        keys.aes_cm(1, 42, &mut data);
        assert_eq!(&data, b"key data sub-payloads");
    }
}
