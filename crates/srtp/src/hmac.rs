//! HMAC-SHA1 (RFC 2104) over the raw SHA-1 block function, for RFC 3711 §4.2.1.
//!
//! Why not the `hmac` crate: its state routes every byte through a block buffer, and its keyed
//! state cannot be zeroized. Here the two keyed states (after the ipad and opad blocks) are
//! computed once per session key, copied per packet (40 octets), zeroized on drop, and the packet
//! is compressed straight from the caller's buffer.

use sha1::digest::generic_array::GenericArray;
use zeroize::{Zeroize, ZeroizeOnDrop};

const H0: [u32; 5] = [
    0x6745_2301,
    0xEFCD_AB89,
    0x98BA_DCFE,
    0x1032_5476,
    0xC3D2_E1F0,
];

/// HMAC-SHA1 keyed once: the chaining values after the key's ipad and opad blocks.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub(crate) struct HmacSha1 {
    inner: [u32; 5],
    outer: [u32; 5],
}

fn compress(state: &mut [u32; 5], block: &[u8]) {
    sha1::compress(
        state,
        core::slice::from_ref(GenericArray::from_slice(block)),
    );
}

impl HmacSha1 {
    /// Keys HMAC-SHA1; `key` is at most one block (SRTP auth keys are 20 octets).
    pub(crate) fn new(key: &[u8]) -> Self {
        debug_assert!(key.len() <= 64);
        let mut pad = [0u8; 64];
        pad[..key.len()].copy_from_slice(key);
        let mut inner = H0;
        let mut outer = H0;
        pad.iter_mut().for_each(|b| *b ^= 0x36);
        compress(&mut inner, &pad);
        pad.iter_mut().for_each(|b| *b ^= 0x36 ^ 0x5c);
        compress(&mut outer, &pad);
        pad.zeroize();
        HmacSha1 { inner, outer }
    }

    /// HMAC-SHA1(key, msg || suffix), with `suffix` at most 16 octets (the ROC, RFC 3711 §4.2).
    pub(crate) fn mac(&self, msg: &[u8], suffix: &[u8]) -> [u8; 20] {
        debug_assert!(suffix.len() <= 16);
        let mut st = self.inner;
        let full = msg.len() / 64 * 64;
        for block in msg[..full].chunks_exact(64) {
            compress(&mut st, block);
        }
        // Tail: the rest of msg, the suffix, 0x80, zeros, and the bit length of ipad || message.
        let rest = &msg[full..];
        let mut tail = [0u8; 128 + 64];
        tail[..rest.len()].copy_from_slice(rest);
        tail[rest.len()..rest.len() + suffix.len()].copy_from_slice(suffix);
        let used = rest.len() + suffix.len();
        tail[used] = 0x80;
        let tail_len = (used + 9).div_ceil(64) * 64;
        let bits = ((64 + msg.len() + suffix.len()) as u64) * 8;
        tail[tail_len - 8..tail_len].copy_from_slice(&bits.to_be_bytes());
        for block in tail[..tail_len].chunks_exact(64) {
            compress(&mut st, block);
        }
        let mut ob = [0u8; 64];
        for (chunk, word) in ob.chunks_exact_mut(4).zip(st) {
            chunk.copy_from_slice(&word.to_be_bytes());
        }
        ob[20] = 0x80;
        ob[56..].copy_from_slice(&((64u64 + 20) * 8).to_be_bytes());
        let mut out_st = self.outer;
        compress(&mut out_st, &ob);
        let mut out = [0u8; 20];
        for (chunk, word) in out.chunks_exact_mut(4).zip(out_st) {
            chunk.copy_from_slice(&word.to_be_bytes());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::HmacSha1;
    use hmac::{Hmac, Mac};

    /// RFC 2202 §3 test case 2 ("Jefe").
    #[test]
    fn rfc2202_case_2() {
        let m = HmacSha1::new(b"Jefe").mac(b"what do ya want ", b"for nothing?");
        assert_eq!(hex::encode(m), "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79");
    }

    /// Agrees with the `hmac` crate on every message length around the block boundaries.
    #[test]
    fn agrees_with_hmac_crate() {
        let key = [0x0bu8; 20];
        let data: Vec<u8> = (0..300u32).map(|i| (i * 7 + 3) as u8).collect();
        for len in 0..300 {
            for split in [0usize, 4] {
                let split = split.min(len);
                let ours = HmacSha1::new(&key).mac(&data[..len - split], &data[len - split..len]);
                let mut theirs = Hmac::<sha1::Sha1>::new_from_slice(&key).unwrap();
                theirs.update(&data[..len]);
                assert_eq!(
                    ours.to_vec(),
                    theirs.finalize().into_bytes().to_vec(),
                    "len {len}"
                );
            }
        }
    }
}
