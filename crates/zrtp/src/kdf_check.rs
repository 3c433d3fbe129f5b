//! Every step of the key schedule recomputed independently of the crate's own `crypto` and
//! `keys` modules: plain SHA-256, HMAC-SHA-256, X25519/P-256 and AES calls written out from the
//! RFC 6189 text (§4.4.1.1 hvi, §4.4.1.4 total_hash and s0, §4.5.1 KDF, §4.5.2-3 keys, §5.1.6
//! SAS, §9 MACs over the hash chain), compared with what two engines derived and exported.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use aes::cipher::{BlockEncrypt, KeyInit};
use hmac::{Hmac, Mac};
use p256::elliptic_curve::point::AffineCoordinates;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use sha2::{Digest, Sha256};

use super::Zrtp;
use crate::crypto::DhSecret;
use crate::{
    AuxPolicy, AuxSecret, Event, InMemoryCache, KeyAgreement, Role, SecretCache, SecureOn, Zid,
    ZrtpConfig,
};
use chaincall_identity::Randomness;

fn h(parts: &[&[u8]]) -> [u8; 32] {
    let mut d = Sha256::new();
    for p in parts {
        d.update(p);
    }
    d.finalize().into()
}

fn hm(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap();
    for p in parts {
        m.update(p);
    }
    m.finalize().into_bytes().into()
}

/// §4.5.1: KDF(KI, Label, Context, L) = HMAC(KI, i || Label || 0x00 || Context || L).
fn rfc_kdf(s0: &[u8], label: &str, ctx: &[u8], bits: u32) -> Vec<u8> {
    let full = hm(
        s0,
        &[
            &[0, 0, 0, 1],
            label.as_bytes(),
            &[0],
            ctx,
            &bits.to_be_bytes(),
        ],
    );
    full[..(bits / 8) as usize].to_vec()
}

/// AES-128-CFB decryption written out block by block.
fn cfb_decrypt(key: &[u8], iv: &[u8], data: &[u8]) -> Vec<u8> {
    let aes = aes::Aes128::new_from_slice(key).unwrap();
    let mut prev: [u8; 16] = iv.try_into().unwrap();
    let mut out = Vec::new();
    for chunk in data.chunks(16) {
        let mut block = aes::Block::from(prev);
        aes.encrypt_block(&mut block);
        out.extend(chunk.iter().zip(block.iter()).map(|(c, k)| c ^ k));
        prev[..chunk.len()].copy_from_slice(chunk);
    }
    out
}

/// What an engine held in its key schedule, copied out while the exchange ran (the engine
/// drops it once secure).
struct Snapshot {
    s0: Vec<u8>,
    ctx: Vec<u8>,
    mackeyi: Vec<u8>,
    mackeyr: Vec<u8>,
    zrtpkeyi: Vec<u8>,
    zrtpkeyr: Vec<u8>,
    sashash: Vec<u8>,
    new_rs1: Vec<u8>,
}

fn snapshot(z: &Zrtp) -> Snapshot {
    let k = z.keys.as_ref().unwrap();
    Snapshot {
        s0: k.s0.to_vec(),
        ctx: k.kdf_context.clone(),
        mackeyi: k.mackeyi.to_vec(),
        mackeyr: k.mackeyr.to_vec(),
        zrtpkeyi: k.zrtpkeyi.to_vec(),
        zrtpkeyr: k.zrtpkeyr.to_vec(),
        sashash: k.sashash.to_vec(),
        new_rs1: k.new_rs1.to_vec(),
    }
}

struct Run {
    alice: Zrtp,
    bob: Zrtp,
    keys: Vec<Snapshot>,
    /// Raw messages (preamble to MAC) by (sender, type block).
    msgs: HashMap<(usize, [u8; 8]), Vec<u8>>,
    dh_result: Vec<u8>,
    secure: [Option<Box<SecureOn>>; 2],
}

fn seeded(seed: u64) -> Randomness {
    Randomness::seeded(ChaCha20Rng::seed_from_u64(seed))
}

/// Runs the exchange by hand. When both ends hold keys, computes DHResult from each end's own
/// secret and the other's public value, independently, and checks both agree.
fn run(a: ZrtpConfig, b: ZrtpConfig) -> Run {
    let now = Instant::now();
    let mut r = Run {
        alice: Zrtp::new(a, Role::Initiator, now).unwrap(),
        bob: Zrtp::new(b, Role::Responder, now).unwrap(),
        msgs: HashMap::new(),
        dh_result: Vec::new(),
        keys: Vec::new(),
        secure: [None, None],
    };
    for _ in 0..50 {
        for from in 0..2 {
            let (src, dst) = if from == 0 {
                (&mut r.alice, &mut r.bob)
            } else {
                (&mut r.bob, &mut r.alice)
            };
            let out = chaincall_io::drain(|| src.poll_output());
            for e in out.events {
                if let Event::SecureOn(s) = e {
                    r.secure[from] = Some(s);
                }
            }
            for t in out.transmits {
                let p = t.contents;
                let mut ty = [0u8; 8];
                ty.copy_from_slice(&p[16..24]);
                r.msgs.insert((from, ty), p[12..p.len() - 4].to_vec());
                dst.handle_input(&p, now);
            }
            if r.dh_result.is_empty() && r.alice.keys.is_some() && r.bob.keys.is_some() {
                let pv_of = |m: &[u8]| m[12 + 64..m.len() - 8].to_vec();
                let pv_a = pv_of(&r.msgs[&(0, *b"DHPart2 ")]);
                let pv_b = pv_of(&r.msgs[&(1, *b"DHPart1 ")]);
                let dh = |z: &Zrtp, peer: &[u8]| match &z.dh.as_ref().unwrap().1 {
                    DhSecret::X255(s) => {
                        x25519_dalek::x25519(s.to_bytes(), peer.try_into().unwrap()).to_vec()
                    }
                    DhSecret::Ec25(s) => {
                        let sec1 = [&[4u8][..], peer].concat();
                        let p = p256::PublicKey::from_sec1_bytes(&sec1).unwrap();
                        let shared = (p.to_projective() * **s).to_affine();
                        shared.x().to_vec()
                    }
                    DhSecret::Dh3k(x) => {
                        // num-bigint, not the crate's crypto-bigint; left-padded to 384 octets.
                        // (The prime itself is checked in crypto.rs and against Linphone.)
                        use num_bigint::BigUint;
                        let hex = crate::crypto::DH3K_PRIME_HEX.as_bytes();
                        let p = BigUint::parse_bytes(hex, 16).unwrap();
                        let v = BigUint::from_bytes_be(peer)
                            .modpow(&BigUint::from_bytes_be(&x[..]), &p)
                            .to_bytes_be();
                        [vec![0u8; 384 - v.len()], v].concat()
                    }
                };
                r.dh_result = dh(&r.alice, &pv_b);
                r.keys = vec![snapshot(&r.alice), snapshot(&r.bob)];
                assert_eq!(r.dh_result, dh(&r.bob, &pv_a), "both ends' DHResult");
            }
        }
        if r.secure.iter().all(Option::is_some) {
            return r;
        }
    }
    panic!("exchange did not finish");
}

/// Checks every derivation of one exchange; `s1`, `s2` are the shared secrets expected in s0.
fn check(r: &Run, s1: Option<&[u8]>, s2: Option<&[u8]>) {
    let m = |from: usize, ty: &[u8; 8]| r.msgs[&(from, *ty)].clone();
    let (hello_a, hello_b) = (m(0, b"Hello   "), m(1, b"Hello   "));
    let (commit, dh1, dh2) = (m(0, b"Commit  "), m(1, b"DHPart1 "), m(0, b"DHPart2 "));
    let (confirm1, confirm2) = (m(1, b"Confirm1"), m(0, b"Confirm2"));
    let body = |msg: &[u8], at: usize, len: usize| msg[12 + at..12 + at + len].to_vec();

    // §4.4.1.1: hvi = hash(initiator's DHPart2 || responder's Hello).
    assert_eq!(body(&commit, 64, 32), h(&[&dh2, &hello_b]));

    // §4.4.1.4: total_hash, KDF_Context, s0.
    let total_hash = h(&[&hello_b, &commit, &dh1, &dh2]);
    let (zidi, zidr) = (body(&hello_a, 52, 12), body(&hello_b, 52, 12));
    let ctx = [&zidi[..], &zidr, &total_hash].concat();
    let len = |s: Option<&[u8]>| (s.map_or(0, <[u8]>::len) as u32).to_be_bytes();
    let s0 = h(&[
        &[0, 0, 0, 1],
        &r.dh_result,
        b"ZRTP-HMAC-KDF",
        &zidi,
        &zidr,
        &total_hash,
        &len(s1),
        s1.unwrap_or(&[]),
        &len(s2),
        s2.unwrap_or(&[]),
        &len(None),
    ]);
    for keys in &r.keys {
        assert_eq!(keys.ctx, ctx);
        assert_eq!(keys.s0, s0);
        // §4.5.2-3, each label with its length in bits.
        assert_eq!(keys.mackeyi, rfc_kdf(&s0, "Initiator HMAC key", &ctx, 256));
        assert_eq!(keys.mackeyr, rfc_kdf(&s0, "Responder HMAC key", &ctx, 256));
        assert_eq!(keys.zrtpkeyi, rfc_kdf(&s0, "Initiator ZRTP key", &ctx, 128));
        assert_eq!(keys.zrtpkeyr, rfc_kdf(&s0, "Responder ZRTP key", &ctx, 128));
        assert_eq!(keys.sashash, rfc_kdf(&s0, "SAS", &ctx, 256));
        assert_eq!(keys.new_rs1, rfc_kdf(&s0, "retained secret", &ctx, 256));
    }
    let srtpkeyi = rfc_kdf(&s0, "Initiator SRTP master key", &ctx, 128);
    let srtpsalti = rfc_kdf(&s0, "Initiator SRTP master salt", &ctx, 112);
    let srtpkeyr = rfc_kdf(&s0, "Responder SRTP master key", &ctx, 128);
    let srtpsaltr = rfc_kdf(&s0, "Responder SRTP master salt", &ctx, 112);
    let (a, b) = (r.secure[0].as_ref().unwrap(), r.secure[1].as_ref().unwrap());
    assert_eq!(&a.srtp.local.dangerous_key()[..], srtpkeyi);
    assert_eq!(&a.srtp.local.dangerous_salt()[..], srtpsalti);
    assert_eq!(&a.srtp.remote.dangerous_key()[..], srtpkeyr);
    assert_eq!(&a.srtp.remote.dangerous_salt()[..], srtpsaltr);
    assert_eq!(&b.srtp.local.dangerous_key()[..], srtpkeyr);
    assert_eq!(&b.srtp.remote.dangerous_key()[..], srtpkeyi);

    // §5.1.6: the SAS from the leftmost 32 bits of sashash; B32 renders the leftmost 20.
    let sashash = rfc_kdf(&s0, "SAS", &ctx, 256);
    let value = u32::from_be_bytes(sashash[..4].try_into().unwrap());
    assert_eq!((a.sas.value, b.sas.value), (value, value));
    let alphabet = b"ybndrfg8ejkmcpqxot1uwisza345h769";
    let b32: String = (0..4)
        .map(|i| char::from(alphabet[((value >> (27 - 5 * i)) & 31) as usize]))
        .collect();
    assert_eq!(a.sas.text, b32);

    // §5.7: Confirm1 is MACed under mackeyr and encrypted under zrtpkeyr; Confirm2 under the
    // initiator's keys. The plaintext starts with H0.
    let open = |confirm: &[u8], mackey: &[u8], zrtpkey: &[u8]| {
        let enc = &confirm[12 + 24..];
        assert_eq!(body(confirm, 0, 8), hm(mackey, &[enc])[..8], "confirm_mac");
        let plain = cfb_decrypt(zrtpkey, &body(confirm, 8, 16), enc);
        assert_eq!(plain.len(), 40);
        assert_eq!(&plain[36..40], &[0xFF; 4], "cache expiration: never");
        plain[..32].to_vec()
    };
    let h0_b = open(
        &confirm1,
        &rfc_kdf(&s0, "Responder HMAC key", &ctx, 256),
        &rfc_kdf(&s0, "Responder ZRTP key", &ctx, 128),
    );
    let h0_a = open(
        &confirm2,
        &rfc_kdf(&s0, "Initiator HMAC key", &ctx, 256),
        &rfc_kdf(&s0, "Initiator ZRTP key", &ctx, 128),
    );

    // §9: the hash chain and the MAC of each message under the next preimage.
    let mac = |key: &[u8], msg: &[u8]| hm(key, &[&msg[..msg.len() - 8]])[..8].to_vec();
    let tail = |msg: &[u8]| msg[msg.len() - 8..].to_vec();
    for (h0, hello, dh, first) in [
        (&h0_a, &hello_a, &dh2, Some(&commit)),
        (&h0_b, &hello_b, &dh1, None),
    ] {
        let h1 = h(&[h0]);
        let h2 = h(&[&h1]);
        assert_eq!(body(dh, 0, 32), h1, "DHPart carries H1");
        assert_eq!(body(hello, 20, 32), h(&[&h2]), "Hello carries H3");
        assert_eq!(tail(dh), mac(h0, dh), "DHPart MAC keyed by H0");
        assert_eq!(tail(hello), mac(&h2, hello), "Hello MAC keyed by H2");
        if let Some(commit) = first {
            assert_eq!(body(commit, 0, 32), h2, "Commit carries H2");
            assert_eq!(tail(commit), mac(&h1, commit), "Commit MAC keyed by H1");
        }
    }
}

#[test]
fn x255_first_call_every_kdf_step_matches_an_independent_computation() {
    let a = ZrtpConfig::new(Zid([1; 12]), 1, Arc::new(InMemoryCache::new()))
        .with_key_agreements(&[KeyAgreement::X255])
        .with_randomness(seeded(1));
    let b =
        ZrtpConfig::new(Zid([2; 12]), 2, Arc::new(InMemoryCache::new())).with_randomness(seeded(2));
    let r = run(a.clone(), b);
    check(&r, None, None);
    // The cache keeps the new rs1 = KDF(s0, "retained secret", ...).
    let rs1 = a.cache.load(&Zid([2; 12])).rs1.unwrap();
    let keys = &r.keys[0];
    assert_eq!(
        &rs1.dangerous_bytes()[..],
        rfc_kdf(&keys.s0, "retained secret", &keys.ctx, 256)
    );
}

#[test]
fn dh3k_first_call_every_kdf_step_matches_an_independent_computation() {
    // DH3k is what Debian's Linphone offers; its DHResult is 384 octets in s0.
    let cfg = |zid: u8, seed: u64| {
        ZrtpConfig::new(
            Zid([zid; 12]),
            u32::from(zid),
            Arc::new(InMemoryCache::new()),
        )
        .with_key_agreements(&[KeyAgreement::Dh3k])
        .with_randomness(seeded(seed))
    };
    let r = run(cfg(1, 30), cfg(2, 31));
    assert_eq!(r.dh_result.len(), 384);
    check(&r, None, None);
}

#[test]
fn ec25_second_call_mixes_rs1_and_the_aux_secret_into_s0() {
    let (ca, cb) = (
        Arc::new(InMemoryCache::new()),
        Arc::new(InMemoryCache::new()),
    );
    let cfg = |zid: u8, cache: &Arc<InMemoryCache>, seed: u64| {
        ZrtpConfig::new(Zid([zid; 12]), u32::from(zid), cache.clone())
            .with_key_agreements(&[KeyAgreement::Ec25])
            .with_randomness(seeded(seed))
    };
    let first = run(cfg(1, &ca, 10), cfg(2, &cb, 11));
    check(&first, None, None);
    let rs1 = ca.load(&Zid([2; 12])).rs1.unwrap();
    let keys = &first.keys[0];
    assert_eq!(
        &rs1.dangerous_bytes()[..],
        rfc_kdf(&keys.s0, "retained secret", &keys.ctx, 256)
    );
    let aux = AuxSecret::new(b"chain binding");
    let second = run(
        cfg(1, &ca, 20).with_aux_secret(aux.clone(), AuxPolicy::Fatal),
        cfg(2, &cb, 21).with_aux_secret(aux, AuxPolicy::Fatal),
    );
    check(
        &second,
        Some(&rs1.dangerous_bytes()[..]),
        Some(b"chain binding"),
    );
    // §4.3.1: rs1IDi = MAC(rs1, "Initiator"), auxsecretIDi = MAC(auxsecret, H3 of the sender).
    let dh2 = &second.msgs[&(0, *b"DHPart2 ")];
    let hello_a = &second.msgs[&(0, *b"Hello   ")];
    assert_eq!(
        dh2[12 + 32..12 + 40],
        hm(&rs1.dangerous_bytes()[..], &[b"Initiator"])[..8]
    );
    assert_eq!(
        dh2[12 + 48..12 + 56],
        hm(b"chain binding", &[&hello_a[12 + 20..12 + 52]])[..8]
    );
    let dh1 = &second.msgs[&(1, *b"DHPart1 ")];
    assert_eq!(
        dh1[12 + 32..12 + 40],
        hm(&rs1.dangerous_bytes()[..], &[b"Responder"])[..8]
    );
}
