use super::*;
use crate::transform::Transform;

fn h(s: &str) -> Vec<u8> {
    hex::decode(s.split_whitespace().collect::<String>()).unwrap()
}

/// RFC 7714 §16–17 start from session keys: the KDF is not part of those vectors.
fn gcm_session(profile: Profile, key: &str) -> SrtpSession {
    let salt: [u8; 12] = h(RFC7714_SALT).try_into().unwrap();
    let key = h(key);
    SrtpSession::with_transforms(
        SrtpConfig::new(profile),
        Transform::gcm(&key, salt),
        Transform::gcm(&key, salt),
    )
    .unwrap()
}

const RFC7714_KEY_128: &str = "000102030405060708090a0b0c0d0e0f";
const RFC7714_KEY_256: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
const RFC7714_SALT: &str = "517569642070726f2071756f";
/// §16.1: the RTP packet, SSRC 0x5501a0b2, seq 0xf17b, ROC 0.
const RFC7714_RTP: &str = "8040f17b 8041f8d3 5501a0b2 47616c6c 69612065 7374206f 6d6e6973
                           20646976 69736120 696e2070 61727465 73207472 6573";
/// §17.1: the RTCP packet, SSRC "Mars", SRTCP index 0x5d4.
const RFC7714_RTCP: &str = "81c8000d 4d617273 4e545031 4e545032 52545020 0000042a 0000e930 4c756e61
                            deadbeef deadbeef deadbeef deadbeef deadbeef";

mod rfc7714 {
    use super::*;

    fn protect(s: &mut SrtpSession, plain: &[u8], rtcp: bool) -> Vec<u8> {
        let mut buf = plain.to_vec();
        if rtcp {
            s.protect_rtcp(&mut buf).unwrap()
        } else {
            s.protect_rtp(&mut buf).unwrap()
        }
        buf
    }

    /// §16.1.1 (encryption) and §16.1.2 (decryption), AEAD_AES_128_GCM.
    #[test]
    fn s16_1_srtp_aes_128_gcm() {
        let want = h(
            "8040f17b 8041f8d3 5501a0b2 f24de3a3 fb34de6c acba861c 9d7e4bca be633bd5
                      0d294e6f 42a5f47a 51c7d19b 36de3adf 8833899d 7f27beb1 6a9152cf 765ee439 0cce",
        );
        let mut tx = gcm_session(Profile::AeadAes128Gcm, RFC7714_KEY_128);
        assert_eq!(protect(&mut tx, &h(RFC7714_RTP), false), want);
        let mut rx = gcm_session(Profile::AeadAes128Gcm, RFC7714_KEY_128);
        let mut wire = want.clone();
        rx.unprotect_rtp(&mut wire).unwrap();
        assert_eq!(wire, h(RFC7714_RTP));
        let mut again = want;
        assert_eq!(rx.unprotect_rtp(&mut again), Err(SrtpError::Replayed));
    }

    /// §16.2.1 / §16.2.2, AEAD_AES_256_GCM.
    #[test]
    fn s16_2_srtp_aes_256_gcm() {
        let want = h(
            "8040f17b 8041f8d3 5501a0b2 32b1de78 a822fe12 ef9f78fa 332e33aa b1801238
                      9a58e2f3 b50b2a02 76ffae0f 1ba63799 b87b7aa3 db36dfff d6b0f9bb 7878d7a7 6c13",
        );
        let mut tx = gcm_session(Profile::AeadAes256Gcm, RFC7714_KEY_256);
        assert_eq!(protect(&mut tx, &h(RFC7714_RTP), false), want);
        let mut rx = gcm_session(Profile::AeadAes256Gcm, RFC7714_KEY_256);
        let mut wire = want;
        rx.unprotect_rtp(&mut wire).unwrap();
        assert_eq!(wire, h(RFC7714_RTP));
    }

    /// §17.1: SRTCP AEAD_AES_128_GCM, E = 1, index 0x5d4; and back.
    #[test]
    fn s17_1_srtcp_aes_128_gcm_encrypted() {
        let want = h(
            "81c8000d 4d617273 63e94885 dcdab67c a727d766 2f6b7e99 7ff5c0f7 6c06f32d
                      c676a5f1 730d6fda 4ce09b46 86303ded 0bb9275b c84aa458 96cf4d2f c5abf872
                      45d9eade 800005d4",
        );
        let mut tx = gcm_session(Profile::AeadAes128Gcm, RFC7714_KEY_128);
        tx.add_stream(Ssrc(0x4d61_7273), Roc(0)).unwrap();
        tx.streams[0].srtcp_tx_next = 0x5d4;
        assert_eq!(protect(&mut tx, &h(RFC7714_RTCP), true), want);
        let mut rx = gcm_session(Profile::AeadAes128Gcm, RFC7714_KEY_128);
        let mut wire = want;
        rx.unprotect_rtcp(&mut wire).unwrap();
        assert_eq!(wire, h(RFC7714_RTCP));
    }

    /// §17.2: SRTCP AEAD_AES_256_GCM verification and decryption.
    #[test]
    fn s17_2_srtcp_aes_256_gcm_decrypt() {
        let mut wire = h(
            "81c8000d 4d617273 d50ae4d1 f5ce5d30 4ba297e4 7d470c28 2c3ece5d bffe0a50
                          a2eaa5c1 110555be 8415f658 c61de047 6f1b6fad 1d1eb30c 4446839f 57ff6f6c
                          b26ac3be 800005d4",
        );
        let mut tx = gcm_session(Profile::AeadAes256Gcm, RFC7714_KEY_256);
        tx.add_stream(Ssrc(0x4d61_7273), Roc(0)).unwrap();
        tx.streams[0].srtcp_tx_next = 0x5d4;
        assert_eq!(protect(&mut tx, &h(RFC7714_RTCP), true), wire);
        let mut rx = gcm_session(Profile::AeadAes256Gcm, RFC7714_KEY_256);
        rx.unprotect_rtcp(&mut wire).unwrap();
        assert_eq!(wire, h(RFC7714_RTCP));
    }

    /// §17.3: SRTCP AEAD_AES_128_GCM with E = 0 (authentication only): we produce the RFC's bytes
    /// and accept them.
    #[test]
    fn s17_3_srtcp_aes_128_gcm_unencrypted() {
        use aes_gcm::KeyInit;
        let want = h(
            "81c8000d 4d617273 4e545031 4e545032 52545020 0000042a 0000e930 4c756e61
                      deadbeef deadbeef deadbeef deadbeef deadbeef 841dd968 3dd78ec9 2ae58790
                      125f62b3 000005d4",
        );
        let aead = crate::transform::GcmAead::Aes128(
            aes_gcm::Aes128Gcm::new_from_slice(&h(RFC7714_KEY_128)).unwrap(),
        );
        let salt: [u8; 12] = h(RFC7714_SALT).try_into().unwrap();
        let plain = h(RFC7714_RTCP);
        let mut buf = plain.clone();
        buf.resize(plain.len() + 20, 0);
        let n = crate::transform::gcm_seal_rtcp_unencrypted(
            &aead,
            &salt,
            &mut buf,
            plain.len(),
            0x4d61_7273,
            0x5d4,
        );
        assert_eq!(buf[..n], want[..]);
        let mut rx = gcm_session(Profile::AeadAes128Gcm, RFC7714_KEY_128);
        let mut wire = want.clone();
        rx.unprotect_rtcp(&mut wire).unwrap();
        assert_eq!(wire, plain);
        // A flipped payload bit (not encrypted, only authenticated) must fail.
        let mut bad = want;
        bad[20] ^= 1;
        let mut rx = gcm_session(Profile::AeadAes128Gcm, RFC7714_KEY_128);
        assert_eq!(rx.unprotect_rtcp(&mut bad), Err(SrtpError::AuthFailed));
    }

    /// §17.4: SRTCP AEAD_AES_256_GCM with E = 0, verification.
    #[test]
    fn s17_4_srtcp_aes_256_gcm_unencrypted_verify() {
        let mut wire = h(
            "81c8000d 4d617273 4e545031 4e545032 52545020 0000042a 0000e930 4c756e61
                          deadbeef deadbeef deadbeef deadbeef deadbeef 91db4afb feee5a97 8fab4393
                          ed2615fe 000005d4",
        );
        let mut rx = gcm_session(Profile::AeadAes256Gcm, RFC7714_KEY_256);
        rx.unprotect_rtcp(&mut wire).unwrap();
        assert_eq!(wire, h(RFC7714_RTCP));
    }

    /// §16.1.1 / §17.1 IV formation: (00 00 || SSRC || ROC || SEQ) XOR salt and
    /// (00 00 || SSRC || 00 00 || 0 || SRTCP index) XOR salt.
    #[test]
    fn iv_formation() {
        let salt: [u8; 12] = h(RFC7714_SALT).try_into().unwrap();
        assert_eq!(
            crate::transform::rtp_nonce(&salt, 0x5501_a0b2, 0xf17b).to_vec(),
            h("51753c6580c2726f20718414")
        );
        assert_eq!(
            crate::transform::rtcp_nonce(&salt, 0x4d61_7273, 0x5d4).to_vec(),
            h("517524055203726f207170bb")
        );
    }
}

/// A 172-byte G.711 RTP packet: 12-byte header + 160-byte payload.
fn rtp(ssrc: u32, seq: u16, fill: u8) -> Vec<u8> {
    let mut p = vec![0x80, 0x00];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend((0..160u32).map(|i| fill.wrapping_add(i as u8)));
    p
}

fn rtcp_rr(ssrc: u32) -> Vec<u8> {
    // Receiver report with one block (RFC 3550 §6.4.2): 8 + 24 octets.
    let mut p = vec![0x81, 201, 0, 7];
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(&[0x5a; 24]);
    p
}

fn pair(profile: Profile, mki: &[u8]) -> (SrtpSession, SrtpSession) {
    let key: Vec<u8> = (0..profile.master_key_len() as u8).collect();
    let salt: Vec<u8> = (0..profile.master_salt_len() as u8)
        .map(|b| b ^ 0xa5)
        .collect();
    let config = SrtpConfig::new(profile).with_mki(mki);
    (
        SrtpSession::new(config.clone(), &key, &salt).unwrap(),
        SrtpSession::new(config, &key, &salt).unwrap(),
    )
}

#[test]
fn round_trip_every_profile_with_and_without_mki() {
    for profile in Profile::ALL {
        for mki in [&[][..], &[1, 2, 3, 4][..]] {
            let (mut tx, mut rx) = pair(profile, mki);
            for seq in 0..50u16 {
                let plain = rtp(7, seq, seq as u8);
                let mut p = plain.clone();
                tx.protect_rtp(&mut p).unwrap();
                assert_eq!(p.len(), plain.len() + profile.srtp_tag_len() + mki.len());
                assert_ne!(p[12..172], plain[12..]);
                rx.unprotect_rtp(&mut p).unwrap();
                assert_eq!(p, plain);

                let plain = rtcp_rr(7);
                let mut p = plain.clone();
                tx.protect_rtcp(&mut p).unwrap();
                assert_eq!(
                    p.len(),
                    plain.len() + 4 + profile.srtcp_tag_len() + mki.len()
                );
                rx.unprotect_rtcp(&mut p).unwrap();
                assert_eq!(p, plain);
            }
        }
    }
}

#[test]
fn sha1_32_uses_4_octet_srtp_tag_and_10_octet_srtcp_tag() {
    let (mut tx, _) = pair(Profile::AesCm128HmacSha1_32, &[]);
    let mut p = rtp(1, 1, 0);
    tx.protect_rtp(&mut p).unwrap();
    assert_eq!(p.len(), 172 + 4);
    let mut c = rtcp_rr(1);
    tx.protect_rtcp(&mut c).unwrap();
    assert_eq!(c.len(), 32 + 4 + 10);
}

#[test]
fn rollover_counter_follows_sequence_wrap() {
    for profile in Profile::ALL {
        let (mut tx, mut rx) = pair(profile, &[]);
        let mut wire = Vec::new();
        for k in 0..40u32 {
            let seq = (65520u32 + k) as u16;
            let mut p = rtp(9, seq, 1);
            tx.protect_rtp(&mut p).unwrap();
            wire.push((seq, p));
        }
        assert_eq!(tx.stream_state(Ssrc(9)).unwrap().tx_roc, Some(Roc(1)));
        // Deliver with some reordering across the wrap.
        wire.swap(15, 17);
        for (seq, mut p) in wire {
            rx.unprotect_rtp(&mut p).unwrap();
            assert_eq!(p, rtp(9, seq, 1));
        }
        let st = rx.stream_state(Ssrc(9)).unwrap();
        assert_eq!((st.rx_roc, st.rx_seq), (Some(Roc(1)), Some(SeqNo(23))));
    }
}

#[test]
fn wrong_roc_guess_fails_authentication() {
    // A receiver that believes ROC 0 cannot accept a packet sent with ROC 1: the ROC is
    // authenticated (HMAC input) or part of the GCM nonce.
    for profile in Profile::ALL {
        let (mut tx, mut rx) = pair(profile, &[]);
        tx.add_stream(Ssrc(5), Roc(1)).unwrap();
        let mut p = rtp(5, 100, 0);
        tx.protect_rtp(&mut p).unwrap();
        assert_eq!(rx.unprotect_rtp(&mut p.clone()), Err(SrtpError::AuthFailed));
        rx.add_stream(Ssrc(5), Roc(1)).unwrap();
        rx.unprotect_rtp(&mut p).unwrap();
    }
}

#[test]
fn replay_and_too_old_are_rejected_and_window_is_configurable() {
    for window in [64usize, 1024] {
        let config = SrtpConfig::new(Profile::AesCm128HmacSha1_80).with_replay_window(window);
        let (k, s) = ([3u8; 16], [4u8; 14]);
        let mut tx = SrtpSession::new(config.clone(), &k, &s).unwrap();
        let mut rx = SrtpSession::new(config, &k, &s).unwrap();
        let mut wire = Vec::new();
        for seq in 0..2000u16 {
            let mut p = rtp(1, seq, 0);
            tx.protect_rtp(&mut p).unwrap();
            wire.push(p);
        }
        // Deliver the newest first: everything within the window behind it is still accepted.
        let newest = wire.len() - 1;
        rx.unprotect_rtp(&mut wire[newest].clone()).unwrap();
        assert_eq!(
            rx.unprotect_rtp(&mut wire[newest].clone()),
            Err(SrtpError::Replayed)
        );
        rx.unprotect_rtp(&mut wire[newest - (window - 1)].clone())
            .unwrap();
        assert_eq!(
            rx.unprotect_rtp(&mut wire[newest - window].clone()),
            Err(SrtpError::TooOld)
        );
        // SRTCP too.
        let mut c = rtcp_rr(1);
        tx.protect_rtcp(&mut c).unwrap();
        rx.unprotect_rtcp(&mut c.clone()).unwrap();
        assert_eq!(rx.unprotect_rtcp(&mut c), Err(SrtpError::Replayed));
    }
    let bad = SrtpConfig::new(Profile::AesCm128HmacSha1_80).with_replay_window(32);
    assert!(matches!(
        SrtpSession::new(bad, &[0; 16], &[0; 14]),
        Err(SrtpError::InvalidConfig(_))
    ));
}

#[test]
fn sender_refuses_to_reuse_an_index() {
    let (mut tx, _) = pair(Profile::AeadAes128Gcm, &[]);
    tx.protect_rtp(&mut rtp(1, 10, 0)).unwrap();
    assert_eq!(
        tx.protect_rtp(&mut rtp(1, 10, 0)),
        Err(SrtpError::IndexReuse)
    );
    tx.protect_rtp(&mut rtp(1, 11, 0)).unwrap();
    // An older, never sent index inside the window is fine (reordered sending).
    tx.protect_rtp(&mut rtp(1, 9, 0)).unwrap();
}

#[test]
fn tampering_wrong_key_mki_and_truncation() {
    for profile in Profile::ALL {
        let (mut tx, mut rx) = pair(profile, &[9, 9]);
        let mut p = rtp(2, 1, 0);
        tx.protect_rtp(&mut p).unwrap();
        let mut bad = p.clone();
        bad[20] ^= 0x40;
        assert_eq!(rx.unprotect_rtp(&mut bad), Err(SrtpError::AuthFailed));
        let mut bad = p.clone();
        let mki_at = if profile.is_aead() {
            p.len() - 2
        } else {
            p.len() - profile.srtp_tag_len() - 2
        };
        bad[mki_at] = 8;
        assert_eq!(rx.unprotect_rtp(&mut bad), Err(SrtpError::UnknownMki));
        assert_eq!(
            rx.unprotect_rtp(&mut p[..10].to_vec()),
            Err(SrtpError::TooShort)
        );
        // A rejected packet changed nothing: the original still goes through.
        rx.unprotect_rtp(&mut p).unwrap();

        let (mut other, _) = {
            let config = SrtpConfig::new(profile).with_mki(&[9, 9]);
            let key = vec![0xee; profile.master_key_len()];
            let salt = vec![0xdd; profile.master_salt_len()];
            (SrtpSession::new(config.clone(), &key, &salt).unwrap(), ())
        };
        let mut q = rtp(2, 2, 0);
        other.protect_rtp(&mut q).unwrap();
        assert_eq!(rx.unprotect_rtp(&mut q), Err(SrtpError::AuthFailed));
        assert_eq!(rx.stream_state(Ssrc(2)).unwrap().rx_seq, Some(SeqNo(1)));
    }
}

#[test]
fn unknown_ssrc_and_stream_bound() {
    let config = SrtpConfig::new(Profile::AesCm128HmacSha1_80).with_unknown_ssrc(false);
    let (k, s) = ([1u8; 16], [2u8; 14]);
    let mut strict = SrtpSession::new(config, &k, &s).unwrap();
    assert_eq!(
        strict.protect_rtp(&mut rtp(77, 0, 0)),
        Err(SrtpError::UnknownSsrc(Ssrc(77)))
    );
    strict.add_stream(Ssrc(77), Roc(0)).unwrap();
    let mut p = rtp(77, 0, 0);
    strict.protect_rtp(&mut p).unwrap();

    let bounded = SrtpConfig::new(Profile::AesCm128HmacSha1_80).with_max_streams(2);
    let mut tx = SrtpSession::new(SrtpConfig::new(Profile::AesCm128HmacSha1_80), &k, &s).unwrap();
    let mut rx = SrtpSession::new(bounded, &k, &s).unwrap();
    for ssrc in [1, 2, 3] {
        let mut p = rtp(ssrc, 0, 0);
        tx.protect_rtp(&mut p).unwrap();
        let r = rx.unprotect_rtp(&mut p);
        if ssrc < 3 {
            r.unwrap()
        } else {
            assert_eq!(r, Err(SrtpError::StreamLimit(2)))
        }
    }
    // A forged packet for a new SSRC does not create a stream.
    assert!(rx.remove_stream(Ssrc(2)));
    let mut forged = rtp(4, 0, 0);
    forged.extend_from_slice(&[0; 10]);
    assert_eq!(rx.unprotect_rtp(&mut forged), Err(SrtpError::AuthFailed));
    assert_eq!(rx.stream_count(), 1);
}

#[test]
fn key_limits_signal_and_stop() {
    let (mut tx, _) = pair(Profile::AesCm128HmacSha1_80, &[]);
    assert_eq!(tx.key_status(), KeyStatus::Fresh);
    tx.srtp_packets = SRTP_PACKET_LIMIT - REKEY_MARGIN;
    assert_eq!(tx.key_status(), KeyStatus::RekeySoon);
    tx.srtp_packets = SRTP_PACKET_LIMIT - 1;
    tx.protect_rtp(&mut rtp(1, 0, 0)).unwrap();
    assert_eq!(tx.key_status(), KeyStatus::Exhausted);
    assert_eq!(
        tx.protect_rtp(&mut rtp(1, 1, 0)),
        Err(SrtpError::KeyLimitReached)
    );

    let (mut tx, _) = pair(Profile::AeadAes128Gcm, &[]);
    tx.srtcp_packets = SRTCP_PACKET_LIMIT - 1;
    tx.protect_rtcp(&mut rtcp_rr(1)).unwrap();
    assert_eq!(
        tx.protect_rtcp(&mut rtcp_rr(1)),
        Err(SrtpError::KeyLimitReached)
    );

    // The per-stream 31-bit SRTCP index must not wrap either.
    let (mut tx, _) = pair(Profile::AeadAes128Gcm, &[]);
    tx.add_stream(Ssrc(1), Roc(0)).unwrap();
    tx.streams[0].srtcp_tx_next = 0x7FFF_FFFF;
    tx.protect_rtcp(&mut rtcp_rr(1)).unwrap();
    assert_eq!(
        tx.protect_rtcp(&mut rtcp_rr(1)),
        Err(SrtpError::KeyLimitReached)
    );

    // And the 48-bit index: ROC 2^32 - 1 at seq 65535 is the last one.
    let (mut tx, _) = pair(Profile::AesCm128HmacSha1_80, &[]);
    tx.add_stream(Ssrc(1), Roc(u32::MAX)).unwrap();
    tx.protect_rtp(&mut rtp(1, 65535, 0)).unwrap();
    assert_eq!(
        tx.protect_rtp(&mut rtp(1, 0, 0)),
        Err(SrtpError::KeyLimitReached)
    );
}

#[test]
fn roc_estimation_rfc3711_3_3_1() {
    // s_l < 2^15: a much larger SEQ belongs to the previous ROC.
    assert_eq!(
        estimate_index(Some(5 << 16 | 100), 0, 65000),
        Ok(4 << 16 | 65000)
    );
    assert_eq!(
        estimate_index(Some(5 << 16 | 100), 0, 200),
        Ok(5 << 16 | 200)
    );
    // s_l >= 2^15: a much smaller SEQ belongs to the next ROC.
    assert_eq!(
        estimate_index(Some(5 << 16 | 65000), 0, 10),
        Ok(6 << 16 | 10)
    );
    assert_eq!(
        estimate_index(Some(5 << 16 | 65000), 0, 40000),
        Ok(5 << 16 | 40000)
    );
    assert_eq!(estimate_index(Some(100), 0, 65000), Err(SrtpError::TooOld));
    assert_eq!(estimate_index(None, 7, 3), Ok(7 << 16 | 3));
}

#[test]
fn buffers_are_checked_and_vec_capacity_is_reused() {
    let (mut tx, mut rx) = pair(Profile::AesCm128HmacSha1_80, &[]);
    let mut buf = [0u8; 180];
    buf[..172].copy_from_slice(&rtp(1, 0, 0));
    assert_eq!(
        tx.protect_rtp_slice(&mut buf[..175], 172),
        Err(SrtpError::BufferTooSmall { needed: 182 })
    );
    let mut big = [0u8; 200];
    big[..172].copy_from_slice(&rtp(1, 0, 0));
    let n = tx.protect_rtp_slice(&mut big, 172).unwrap();
    assert_eq!(n, 182);
    assert_eq!(rx.unprotect_rtp_slice(&mut big[..n]).unwrap(), 172);
    assert_eq!(big[..172], rtp(1, 0, 0)[..]);

    let mut v = Vec::with_capacity(256);
    v.extend_from_slice(&rtp(1, 1, 0));
    let ptr = v.as_ptr();
    tx.protect_rtp(&mut v).unwrap();
    rx.unprotect_rtp(&mut v).unwrap();
    assert_eq!(v.as_ptr(), ptr, "no reallocation when capacity suffices");
}

#[test]
fn debug_shows_no_key_material() {
    let key = [0xabu8; 16];
    let s = SrtpSession::new(
        SrtpConfig::new(Profile::AesCm128HmacSha1_80),
        &key,
        &[0xcd; 14],
    )
    .unwrap();
    let d = format!("{s:?}").to_lowercase();
    assert!(
        !d.contains("ab, ab") && !d.contains("171") && !d.contains("abab"),
        "{d}"
    );
}

#[test]
fn header_with_csrcs_and_extension_stays_clear() {
    for profile in Profile::ALL {
        let (mut tx, mut rx) = pair(profile, &[]);
        // V=2, X=1, CC=2; two CSRCs; extension 0xBEDE with 1 word; then payload.
        let mut p = vec![0x92, 0x00, 0x00, 0x05, 0, 0, 0, 0, 0, 0, 0, 1];
        p.extend_from_slice(&[0xc1; 8]);
        p.extend_from_slice(&[0xbe, 0xde, 0x00, 0x01, 0x10, 0xaa, 0, 0]);
        p.extend_from_slice(&[0x77; 40]);
        let plain = p.clone();
        tx.protect_rtp(&mut p).unwrap();
        assert_eq!(
            p[..28],
            plain[..28],
            "header, CSRCs and extension are not encrypted"
        );
        assert_ne!(p[28..68], plain[28..]);
        rx.unprotect_rtp(&mut p).unwrap();
        assert_eq!(p, plain);
    }
}

#[test]
fn srtcp_with_e_flag_clear_is_authenticated_not_decrypted() {
    // RFC 3711 §3.4: E = 0 means the RTCP payload travels in the clear but is still authenticated.
    let (tx, mut rx) = pair(Profile::AesCm128HmacSha1_80, &[]);
    let Transform::CmSha1 { mac, .. } = &tx.rtcp else {
        unreachable!()
    };
    let mut p = rtcp_rr(3);
    p.extend_from_slice(&5u32.to_be_bytes());
    let tag = mac.mac(&p, &[]);
    p.extend_from_slice(&tag[..10]);
    let mut forged = p.clone();
    forged[12] ^= 1;
    assert_eq!(rx.unprotect_rtcp(&mut forged), Err(SrtpError::AuthFailed));
    rx.unprotect_rtcp(&mut p).unwrap();
    assert_eq!(p, rtcp_rr(3));
}
