//! AES in counter mode (RFC 3711 §4.1.1) and the AES-CM key derivation PRF (§4.3.3).

use aes::cipher::consts::U16;
use aes::cipher::generic_array::GenericArray;
use aes::cipher::{BlockEncrypt, BlockSizeUser, KeyInit};
use aes::{Aes128, Aes256, Block};

/// Keystream blocks generated per `encrypt_blocks` call: 32 blocks cover a 512-octet packet in
/// one call, so AES-NI's 8-way pipeline stays full without a heap buffer.
const BATCH: usize = 32;

/// XORs the AES-CM keystream starting at counter block `iv` into `data` (RFC 3711 §4.1.1:
/// keystream block j is E(k_e, IV + j mod 2^128)).
pub(crate) fn apply_keystream<C: BlockEncrypt + BlockSizeUser<BlockSize = U16>>(
    cipher: &C,
    iv: &[u8; 16],
    data: &mut [u8],
) {
    let base = u128::from_be_bytes(*iv);
    let mut blocks = [Block::default(); BATCH];
    let mut j: u128 = 0;
    for chunk in data.chunks_mut(BATCH * 16) {
        let n = chunk.len().div_ceil(16);
        for b in blocks[..n].iter_mut() {
            *b = Block::from(base.wrapping_add(j).to_be_bytes());
            j += 1;
        }
        cipher.encrypt_blocks(&mut blocks[..n]);
        for (d, k) in chunk.chunks_mut(16).zip(blocks.iter()) {
            for (x, y) in d.iter_mut().zip(k.iter()) {
                *x ^= y;
            }
        }
    }
}

/// The AES-CM PRF of RFC 3711 §4.3.3 (AES-256 per RFC 6188 §7 when the master key has 32 octets),
/// with key derivation rate 0, writing `out.len()` octets of the session key for `label`.
///
/// `master_salt` is 14 octets (RFC 3711) or 12 (RFC 7714: multiplied by 2^16 to form the 112-bit
/// salt, erratum 4938), i.e. left-aligned and zero-padded.
pub(crate) fn derive(master_key: &[u8], master_salt: &[u8], label: u8, out: &mut [u8]) {
    // §4.3.1: key_id = label || r with r = index DIV kdr = 0 (kdr 0), x = key_id XOR master_salt,
    // right-aligned in 112 bits: the label lands in octet 7.
    let mut iv = [0u8; 16];
    iv[..master_salt.len()].copy_from_slice(master_salt);
    iv[7] ^= label;
    // §4.3.3: PRF_n(k_m, x) is the first n bits of AES-CM keystream with IV = x * 2^16 (octets
    // 14..16 of `iv` stay zero).
    out.fill(0);
    match master_key.len() {
        32 => apply_keystream(&Aes256::new(GenericArray::from_slice(master_key)), &iv, out),
        _ => apply_keystream(&Aes128::new(GenericArray::from_slice(master_key)), &iv, out),
    }
}

/// The SRTP AES-CM IV (RFC 3711 §4.1.1): IV = (k_s * 2^16) XOR (SSRC * 2^64) XOR (i * 2^16),
/// with `index` the 48-bit SRTP packet index or the 31-bit SRTCP index (§3.4).
pub(crate) fn iv(session_salt: &[u8; 14], ssrc: u32, index: u64) -> [u8; 16] {
    let mut iv = [0u8; 16];
    iv[..14].copy_from_slice(session_salt);
    for (x, y) in iv[4..8].iter_mut().zip(ssrc.to_be_bytes()) {
        *x ^= y;
    }
    for (x, y) in iv[8..14].iter_mut().zip(&index.to_be_bytes()[2..]) {
        *x ^= y;
    }
    iv
}

/// RFC 3711 Appendix B.2 (AES-CM keystream) and B.3 (key derivation), RFC 6188 §7.2 (AES-256 PRF).
#[cfg(test)]
mod rfc3711_appendix_b {
    use super::*;

    fn h(s: &str) -> Vec<u8> {
        hex::decode(s.split_whitespace().collect::<String>()).unwrap()
    }

    /// B.2: session key 2B7E..., salt F0F1...FCFD, SSRC 0, index 0: the IV is the salt * 2^16.
    #[test]
    fn b2_aes_cm_keystream() {
        let key = h("2B7E151628AED2A6ABF7158809CF4F3C");
        let aes = Aes128::new(GenericArray::from_slice(&key));
        let salt: [u8; 14] = h("F0F1F2F3F4F5F6F7F8F9FAFBFCFD").try_into().unwrap();
        let iv = iv(&salt, 0, 0);
        assert_eq!(iv.to_vec(), h("F0F1F2F3F4F5F6F7F8F9FAFBFCFD0000"));
        let mut ks = vec![0u8; 0xFF02 * 16];
        apply_keystream(&aes, &iv, &mut ks);
        let block = |j: usize| ks[j * 16..(j + 1) * 16].to_vec();
        assert_eq!(block(0), h("E03EAD0935C95E80E166B16DD92B4EB4"));
        assert_eq!(block(1), h("D23513162B02D0F72A43A2FE4A5F97AB"));
        assert_eq!(block(2), h("41E95B3BB0A2E8DD477901E4FCA894C0"));
        assert_eq!(block(0xFEFF), h("EC8CDF7398607CB0F2D21675EA9EA1E4"));
        assert_eq!(block(0xFF00), h("362B7C3C6773516318A077D7FC5073AE"));
        assert_eq!(block(0xFF01), h("6A2CC3787889374FBEB4C81B17BA6C44"));
    }

    /// B.3: master key E1F9..., master salt 0EC6...: cipher key, cipher salt, auth key.
    #[test]
    fn b3_key_derivation() {
        let mk = h("E1F97A0D3E018BE0D64FA32C06DE4139");
        let ms = h("0EC675AD498AFEEBB6960B3AABE6");
        let mut ke = [0u8; 16];
        derive(&mk, &ms, 0x00, &mut ke);
        assert_eq!(ke.to_vec(), h("C61E7A93744F39EE10734AFE3FF7A087"));
        let mut ks = [0u8; 14];
        derive(&mk, &ms, 0x02, &mut ks);
        assert_eq!(ks.to_vec(), h("30CBBC08863D8C85D49DB34A9AE1"));
        // The RFC lists 94 octets of auth key; SRTP uses the first 20 (§8.2, n_a = 160).
        let mut ka = [0u8; 94];
        derive(&mk, &ms, 0x01, &mut ka);
        assert_eq!(
            ka.to_vec(),
            h(
                "CEBE321F6FF7716B6FD4AB49AF256A156D38BAA48F0A0ACF3C34E2359E6CDBCE
               E049646C43D9327AD175578EF72270986371C10C9A369AC2F94A8C5FBCDDDC25
               6D6E919A48B610EF17C2041E474035766B68642C59BBFC2F34DB60DBDFB2"
            )
        );
    }

    /// RFC 6188 §7.2: the AES-256 PRF that AEAD_AES_256_GCM uses for its key derivation.
    #[test]
    fn rfc6188_aes256_prf() {
        let mk = h("F0F04914B513F2763A1B1FA130F10E2998F6F6E43E4309D1E622A0E332B9F1B6");
        let ms = h("3B04803DE51EE7C96423AB5B78D2");
        let mut ke = [0u8; 32];
        derive(&mk, &ms, 0x00, &mut ke);
        assert_eq!(
            ke.to_vec(),
            h("5BA1064E30EC51613CAD926C5A28EF731EC7FB397F70A960653CAF06554CD8C4")
        );
        let mut ks = [0u8; 14];
        derive(&mk, &ms, 0x02, &mut ks);
        assert_eq!(ks.to_vec(), h("FA31791685CA444A9E07C6C64E93"));
    }
}
