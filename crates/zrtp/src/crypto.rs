//! ZRTP's primitives for the suite chaincall speaks: S256 (SHA-256, HMAC-SHA-256), AES1
//! (AES-128 in CFB mode for the Confirm), the §4.5.1 KDF, X255, EC25 and DH3k key agreement with
//! the §4.4.1.1 public-value checks, and the §5.1.6 SAS renderings.

use aes::Aes128;
use aes::cipher::{BlockEncrypt, KeyInit};
use crypto_bigint::modular::runtime_mod::{DynResidue, DynResidueParams};
use crypto_bigint::{Encoding, U256, U3072};
use hmac::{Hmac, Mac};
use p256::elliptic_curve::sec1::{FromEncodedPoint, ToEncodedPoint};
use sha2::{Digest, Sha256};
use zeroize::{Zeroize, Zeroizing};

use chaincall_identity::Randomness;

use crate::config::{KeyAgreement, SasType};
use crate::error::ZrtpError;

/// SHA-256.
pub(crate) fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

/// HMAC-SHA-256 over the concatenation of `parts`.
pub(crate) fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    // HMAC takes keys of any length: `new_from_slice` cannot fail for it.
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC accepts any key length");
    for p in parts {
        m.update(p);
    }
    m.finalize().into_bytes().into()
}

/// HMAC-SHA-256 truncated to 64 bits: the MAC of Hello, Commit, DHPart and Confirm, and the
/// retained-secret IDs (RFC 6189 §4.3.1, §5).
pub(crate) fn mac64(key: &[u8], data: &[u8]) -> [u8; 8] {
    let full = hmac(key, &[data]);
    let mut out = [0u8; 8];
    out.copy_from_slice(&full[..8]);
    out
}

/// KDF(KI, Label, Context, L) = HMAC(KI, i || Label || 0x00 || Context || L), truncated to the
/// leftmost L bits, with i = 1 and L as 32-bit big-endian integers (RFC 6189 §4.5.1). `out`'s
/// length is L/8 and at most 32.
pub(crate) fn kdf(ki: &[u8], label: &[u8], context: &[u8], out: &mut [u8]) {
    let bits = (out.len() as u32) * 8;
    let mut full = hmac(
        ki,
        &[
            &1u32.to_be_bytes(),
            label,
            &[0],
            context,
            &bits.to_be_bytes(),
        ],
    );
    out.copy_from_slice(&full[..out.len()]);
    full.zeroize();
}

/// AES-128 in full-block CFB mode (CFB-128), the AES1 cipher for the Confirm (RFC 6189
/// §5.1.3). Encrypts in place.
pub(crate) fn cfb_encrypt(key: &[u8; 16], iv: &[u8; 16], data: &mut [u8]) {
    cfb(key, iv, data, true);
}

/// AES-128 CFB-128 decryption in place.
pub(crate) fn cfb_decrypt(key: &[u8; 16], iv: &[u8; 16], data: &mut [u8]) {
    cfb(key, iv, data, false);
}

fn cfb(key: &[u8; 16], iv: &[u8; 16], data: &mut [u8], encrypt: bool) {
    let cipher = Aes128::new(&(*key).into());
    let mut feedback: aes::Block = (*iv).into();
    for chunk in data.chunks_mut(16) {
        let mut ks = feedback;
        cipher.encrypt_block(&mut ks);
        for (i, b) in chunk.iter_mut().enumerate() {
            let input = *b;
            *b ^= ks[i];
            // The next block chains on the ciphertext: our output when encrypting, our input
            // when decrypting.
            feedback[i] = if encrypt { *b } else { input };
        }
        ks.zeroize();
    }
}

/// The field prime of Curve25519, little-endian: 2^255 - 19.
const P25519_LE: [u8; 32] = {
    let mut p = [0xFFu8; 32];
    p[0] = 0xED;
    p[31] = 0x7F;
    p
};

/// The field prime of P-256, big-endian.
const P256_BE: [u8; 32] = [
    0xFF, 0xFF, 0xFF, 0xFF, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
];

/// The 3072-bit MODP prime of RFC 3526 §4 (DH3k, RFC 6189 §5.1.5; generator 2), big-endian hex.
pub(crate) const DH3K_PRIME_HEX: &str = concat!(
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74",
    "020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F1437",
    "4FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED",
    "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF05",
    "98DA48361C55D39A69163FA8FD24CF5F83655D23DCA3AD961C62F356208552BB",
    "9ED529077096966D670C354E4ABC9804F1746C08CA18217C32905E462E36CE3B",
    "E39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF695581718",
    "3995497CEA956AE515D2261898FA051015728E5A8AAAC42DAD33170D04507A33",
    "A85521ABDF1CBA64ECFB850458DBEF0A8AEA71575D060C7DB3970F85A6E1E4C7",
    "ABF5AE8CDB0933D71E8C94E04A25619DCEE3D2261AD2EE6BF12FFA06D98A0864",
    "D87602733EC86A64521F2B18177B200CBBE117577A615D6C770988C0BAD946E2",
    "08E24FA074E5AB3143DB5BFCE0FD108E4B82D120A93AD2CAFFFFFFFFFFFFFFFF",
);

/// Octets of a DH3k public value and DHResult.
const DH3K_LEN: usize = 384;

fn dh3k_params() -> DynResidueParams<{ U3072::LIMBS }> {
    DynResidueParams::new(&U3072::from_be_hex(DH3K_PRIME_HEX))
}

/// `base`^`exponent` mod the DH3k prime, as 384 big-endian octets. The result and its copies
/// are zeroized here (a shared secret when `base` is the peer's value); crypto-bigint's own
/// temporaries inside `pow` are out of reach.
fn dh3k_pow(base: &U3072, exponent: &U256) -> Zeroizing<Vec<u8>> {
    let mut power = DynResidue::new(base, dh3k_params()).pow(exponent);
    let mut r = power.retrieve();
    power.zeroize();
    let mut bytes = r.to_be_bytes();
    r.zeroize();
    let out = Zeroizing::new(bytes.to_vec());
    bytes.zeroize();
    out
}

/// Our ephemeral key pair for the exchange.
pub(crate) enum DhSecret {
    /// X25519 scalar.
    X255(x25519_dalek::StaticSecret),
    /// P-256 scalar.
    Ec25(p256::NonZeroScalar),
    /// A 256-bit exponent for the 3072-bit MODP group: twice the 128-bit strength of AES1
    /// (RFC 6189 §5.1.5 asks for at least that).
    Dh3k(Zeroizing<[u8; 32]>),
}

impl DhSecret {
    /// A fresh key pair from `rng`.
    pub(crate) fn generate(ka: KeyAgreement, rng: &Randomness) -> Self {
        match ka {
            KeyAgreement::X255 => {
                let mut bytes = Zeroizing::new([0u8; 32]);
                rng.fill(&mut bytes[..]);
                DhSecret::X255(x25519_dalek::StaticSecret::from(*bytes))
            }
            KeyAgreement::Ec25 => {
                DhSecret::Ec25(rng.with(|mut r| p256::NonZeroScalar::random(&mut r)))
            }
            KeyAgreement::Dh3k => {
                let mut bytes = Zeroizing::new([0u8; 32]);
                rng.fill(&mut bytes[..]);
                DhSecret::Dh3k(bytes)
            }
        }
    }

    /// The public value as DHPart carries it: X255 the 32-octet u-coordinate (RFC 7748), EC25
    /// x || y, 64 octets, DH3k 2^x mod p, 384 octets (RFC 6189 §5.4).
    pub(crate) fn public_value(&self) -> Vec<u8> {
        match self {
            DhSecret::X255(s) => x25519_dalek::PublicKey::from(s).as_bytes().to_vec(),
            DhSecret::Ec25(s) => {
                let p = p256::PublicKey::from_secret_scalar(s).to_encoded_point(false);
                p.as_bytes()[1..].to_vec()
            }
            DhSecret::Dh3k(x) => {
                let mut e = U256::from_be_slice(&x[..]);
                let pv = dh3k_pow(&U3072::from_u8(2), &e);
                e.zeroize();
                pv.to_vec()
            }
        }
    }

    /// DHResult with the peer's public value, after the §4.4.1.1 checks: X255 refuses 0, 1 and
    /// p-1 and an all-zero result (low-order points); EC25 refuses coordinates 0, 1, p-1 and
    /// anything not on the curve; DH3k refuses anything outside 2..=p-2 (which rules out 0, 1 and
    /// p-1). EC25's DHResult is the x-coordinate (§4.4.1.4); DH3k's the full 384 octets.
    pub(crate) fn agree(&self, peer_pv: &[u8]) -> Result<Zeroizing<Vec<u8>>, ZrtpError> {
        match self {
            DhSecret::X255(s) => {
                let pv: [u8; 32] = peer_pv
                    .try_into()
                    .map_err(|_| ZrtpError::BadDhValue("X255 value is not 32 octets"))?;
                let mut one = [0u8; 32];
                one[0] = 1;
                let mut pm1 = P25519_LE;
                pm1[0] -= 1;
                if pv == [0u8; 32] || pv == one || pv == pm1 {
                    return Err(ZrtpError::BadDhValue("X255 value is 0, 1 or p-1"));
                }
                let shared = s.diffie_hellman(&x25519_dalek::PublicKey::from(pv));
                if !shared.was_contributory() {
                    return Err(ZrtpError::BadDhValue("X255 value of low order"));
                }
                Ok(Zeroizing::new(shared.as_bytes().to_vec()))
            }
            DhSecret::Ec25(s) => {
                if peer_pv.len() != 64 {
                    return Err(ZrtpError::BadDhValue("EC25 value is not 64 octets"));
                }
                let mut one = [0u8; 32];
                one[31] = 1;
                let mut pm1 = P256_BE;
                pm1[31] -= 1;
                for coord in [&peer_pv[..32], &peer_pv[32..]] {
                    if coord == [0u8; 32] || coord == one || coord == pm1 {
                        return Err(ZrtpError::BadDhValue("EC25 coordinate is 0, 1 or p-1"));
                    }
                }
                let point = p256::EncodedPoint::from_affine_coordinates(
                    peer_pv[..32].into(),
                    peer_pv[32..].into(),
                    false,
                );
                let peer =
                    Option::<p256::PublicKey>::from(p256::PublicKey::from_encoded_point(&point))
                        .ok_or(ZrtpError::BadDhValue("EC25 point not on the curve"))?;
                let shared = p256::ecdh::diffie_hellman(s, peer.as_affine());
                Ok(Zeroizing::new(shared.raw_secret_bytes().to_vec()))
            }
            DhSecret::Dh3k(x) => {
                if peer_pv.len() != DH3K_LEN {
                    return Err(ZrtpError::BadDhValue("DH3k value is not 384 octets"));
                }
                let pv = U3072::from_be_slice(peer_pv);
                let p = U3072::from_be_hex(DH3K_PRIME_HEX);
                // 2 <= pv <= p-2, i.e. 1 < pv < p-1 (§4.4.1.1).
                if pv <= U3072::ONE || pv >= p.wrapping_sub(&U3072::ONE) {
                    return Err(ZrtpError::BadDhValue(
                        "DH3k value is 0, 1, p-1 or out of range",
                    ));
                }
                let mut e = U256::from_be_slice(&x[..]);
                let shared = dh3k_pow(&pv, &e);
                e.zeroize();
                Ok(shared)
            }
        }
    }
}

/// The RFC 6189 §5.1.6 base-32 alphabet (z-base-32 order).
const B32_ALPHABET: &[u8; 32] = b"ybndrfg8ejkmcpqxot1uwisza345h769";

/// The PGP word list: line n holds the even word and the odd word for octet n.
const PGP_WORDS: &str = include_str!("pgp_words.txt");

/// Renders the SAS from the leftmost 32 bits of sashash (RFC 6189 §5.1.6): B32 the leftmost 20
/// bits as four base-32 characters; B256 the leftmost 16 bits as an even and an odd PGP word.
pub fn render_sas(kind: SasType, sas_value: u32) -> String {
    match kind {
        SasType::B32 => (0..4)
            .map(|i| char::from(B32_ALPHABET[((sas_value >> (27 - 5 * i)) & 31) as usize]))
            .collect(),
        SasType::B256 => {
            let word = |octet: u32, odd: bool| {
                let line = PGP_WORDS.lines().nth(octet as usize).unwrap_or("? ?");
                let mut it = line.split(' ');
                let even = it.next().unwrap_or("?");
                if odd { it.next().unwrap_or("?") } else { even }
            };
            format!(
                "{}:{}",
                word(sas_value >> 24, false),
                word((sas_value >> 16) & 0xFF, true)
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// DH3k against num-bigint (an independent bignum): the public value is 2^x mod p, the
    /// result pv^x mod p in 384 octets, and both ends agree.
    #[test]
    fn dh3k_matches_an_independent_modpow_and_both_ends_agree() {
        use num_bigint::BigUint;
        use rand_core::SeedableRng;
        let p = BigUint::parse_bytes(DH3K_PRIME_HEX.as_bytes(), 16).unwrap();
        // A typo in the constant would almost surely break this: p is a safe prime (RFC 3526),
        // so 2^(p-1) = 1 mod p and 2^(q-1) = 1 mod q for q = (p-1)/2 (Fermat).
        let one = BigUint::from(1u8);
        let two = BigUint::from(2u8);
        assert_eq!(two.modpow(&(&p - &one), &p), one);
        let q = (&p - &one) >> 1;
        assert_eq!(two.modpow(&(&q - &one), &q), one);

        let rng = |seed: u8| Randomness::seeded(rand_chacha::ChaCha20Rng::from_seed([seed; 32]));
        let (a, b) = (
            DhSecret::generate(KeyAgreement::Dh3k, &rng(1)),
            DhSecret::generate(KeyAgreement::Dh3k, &rng(2)),
        );
        let exponent = |s: &DhSecret| match s {
            DhSecret::Dh3k(x) => BigUint::from_bytes_be(&x[..]),
            _ => unreachable!(),
        };
        let (pa, pb) = (a.public_value(), b.public_value());
        assert_eq!(pa.len(), 384);
        assert_eq!(BigUint::from_bytes_be(&pa), two.modpow(&exponent(&a), &p));
        let shared = a.agree(&pb).unwrap();
        assert_eq!(shared.len(), 384);
        let expected = BigUint::from_bytes_be(&pb).modpow(&exponent(&a), &p);
        let mut expected_be = expected.to_bytes_be();
        while expected_be.len() < 384 {
            expected_be.insert(0, 0); // DHResult keeps the prime's length (RFC 6189 §4.4.1.4)
        }
        assert_eq!(shared.to_vec(), expected_be);
        assert_eq!(*shared, *b.agree(&pa).unwrap());
    }

    #[test]
    fn dh3k_refuses_0_1_p_minus_1_p_and_wrong_lengths() {
        let me = DhSecret::generate(KeyAgreement::Dh3k, &Randomness::os());
        let p = hex::decode(DH3K_PRIME_HEX).unwrap();
        let mut pm1 = p.clone();
        pm1[383] -= 1; // p ends in 0xFF
        let mut one = vec![0u8; 384];
        one[383] = 1;
        for bad in [vec![0u8; 384], one, pm1, p.clone(), vec![0xFF; 384]] {
            assert!(matches!(me.agree(&bad), Err(ZrtpError::BadDhValue(_))));
        }
        assert!(matches!(me.agree(&p[..383]), Err(ZrtpError::BadDhValue(_))));
        let mut two = vec![0u8; 384];
        two[383] = 2;
        assert!(me.agree(&two).is_ok());
    }

    #[test]
    fn cfb128_matches_nist_sp800_38a_f_3_13() {
        let key: [u8; 16] = hex::decode("2b7e151628aed2a6abf7158809cf4f3c")
            .unwrap()
            .try_into()
            .unwrap();
        let iv: [u8; 16] = hex::decode("000102030405060708090a0b0c0d0e0f")
            .unwrap()
            .try_into()
            .unwrap();
        let plain = hex::decode("6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e51")
            .unwrap();
        let mut data = plain.clone();
        cfb_encrypt(&key, &iv, &mut data);
        assert_eq!(
            hex::encode(&data),
            "3b3fd92eb72dad20333449f8e83cfb4ac8a64537a0b3a93fcde3cdad9f1ce58b"
        );
        cfb_decrypt(&key, &iv, &mut data);
        assert_eq!(data, plain);
        // A partial last block (the Confirm's encrypted part is 40 octets).
        let mut short = plain[..20].to_vec();
        cfb_encrypt(&key, &iv, &mut short);
        cfb_decrypt(&key, &iv, &mut short);
        assert_eq!(short, plain[..20]);
    }

    #[test]
    fn sas_renderings() {
        // B32: leftmost 20 bits, five at a time, in the RFC's alphabet.
        assert_eq!(render_sas(SasType::B32, 0), "yyyy");
        assert_eq!(render_sas(SasType::B32, 0xFFFF_FFFF), "9999");
        assert_eq!(render_sas(SasType::B32, 0x0842_1000), "bbbb");
        // B256: even word for the first octet, odd word for the second.
        assert_eq!(
            render_sas(SasType::B256, 0x0000_0000),
            "aardvark:adroitness"
        );
        assert_eq!(render_sas(SasType::B256, 0xFFFE_0000), "Zulu:yesteryear");
        assert_eq!(render_sas(SasType::B256, 0x0102_0000), "absurd:aftermath");
        assert_eq!(PGP_WORDS.lines().count(), 256);
    }
}
