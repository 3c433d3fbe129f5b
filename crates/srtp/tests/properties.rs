//! Property tests: round trips, single-bit flips rejected, no panics on arbitrary input.

use chaincall_srtp::{Profile, SrtpConfig, SrtpError, SrtpSession};
use proptest::prelude::*;

fn profile() -> impl Strategy<Value = Profile> {
    prop::sample::select(Profile::ALL.to_vec())
}

fn sessions(profile: Profile, mki: &[u8]) -> (SrtpSession, SrtpSession) {
    let key = vec![0x3c; profile.master_key_len()];
    let salt = vec![0xc3; profile.master_salt_len()];
    let config = SrtpConfig::new(profile).with_mki(mki);
    (
        SrtpSession::new(config.clone(), &key, &salt).unwrap(),
        SrtpSession::new(config, &key, &salt).unwrap(),
    )
}

/// A valid RTP packet: version 2, random flags, CSRCs, optional extension, payload.
fn rtp_packet() -> impl Strategy<Value = Vec<u8>> {
    (
        any::<u8>(),
        0usize..4,
        any::<bool>(),
        0usize..3,
        any::<u16>(),
        any::<u32>(),
        prop::collection::vec(any::<u8>(), 0..400),
    )
        .prop_map(|(m_pt, cc, ext, ext_words, seq, ssrc, payload)| {
            let mut p = vec![0x80 | if ext { 0x10 } else { 0 } | cc as u8, m_pt];
            p.extend_from_slice(&seq.to_be_bytes());
            p.extend_from_slice(&[0, 0, 0, 0]);
            p.extend_from_slice(&ssrc.to_be_bytes());
            p.extend(std::iter::repeat_n(0xcc, 4 * cc));
            if ext {
                p.extend_from_slice(&[0xbe, 0xde, 0, ext_words as u8]);
                p.extend(std::iter::repeat_n(0xee, 4 * ext_words));
            }
            p.extend_from_slice(&payload);
            p
        })
}

fn rtcp_packet() -> impl Strategy<Value = Vec<u8>> {
    (any::<u32>(), prop::collection::vec(any::<u8>(), 0..300)).prop_map(|(ssrc, body)| {
        let mut p = vec![0x80, 200, 0, 0];
        p.extend_from_slice(&ssrc.to_be_bytes());
        p.extend_from_slice(&body);
        p
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn rtp_round_trip(profile in profile(), pkt in rtp_packet(), mki in prop::collection::vec(any::<u8>(), 0..5)) {
        let (mut tx, mut rx) = sessions(profile, &mki);
        let mut p = pkt.clone();
        tx.protect_rtp(&mut p).unwrap();
        prop_assert_eq!(p.len(), pkt.len() + tx.srtp_overhead());
        rx.unprotect_rtp(&mut p).unwrap();
        prop_assert_eq!(p, pkt);
    }

    #[test]
    fn rtcp_round_trip(profile in profile(), pkt in rtcp_packet(), mki in prop::collection::vec(any::<u8>(), 0..5)) {
        let (mut tx, mut rx) = sessions(profile, &mki);
        let mut p = pkt.clone();
        tx.protect_rtcp(&mut p).unwrap();
        rx.unprotect_rtcp(&mut p).unwrap();
        prop_assert_eq!(p, pkt);
    }

    /// Every single-bit flip anywhere in an SRTP packet is rejected (the MKI is not
    /// authenticated by RFC 3711, but a flipped MKI no longer names this key).
    #[test]
    fn rtp_any_bit_flip_rejected(profile in profile(), pkt in rtp_packet(), bit in any::<prop::sample::Index>(), with_mki in any::<bool>()) {
        let mki: &[u8] = if with_mki { &[7, 7] } else { &[] };
        let (mut tx, mut rx) = sessions(profile, mki);
        let mut p = pkt;
        tx.protect_rtp(&mut p).unwrap();
        let b = bit.index(p.len() * 8);
        p[b / 8] ^= 1 << (b % 8);
        prop_assert!(rx.unprotect_rtp(&mut p).is_err());
        prop_assert_eq!(rx.stream_count(), 0, "a rejected packet creates no stream");
    }

    #[test]
    fn rtcp_any_bit_flip_rejected(profile in profile(), pkt in rtcp_packet(), bit in any::<prop::sample::Index>()) {
        let (mut tx, mut rx) = sessions(profile, &[]);
        let mut p = pkt;
        tx.protect_rtcp(&mut p).unwrap();
        let b = bit.index(p.len() * 8);
        p[b / 8] ^= 1 << (b % 8);
        prop_assert!(rx.unprotect_rtcp(&mut p).is_err());
    }

    /// Arbitrary bytes never panic, and never authenticate.
    #[test]
    fn unprotect_arbitrary_bytes_never_panics(profile in profile(), bytes in prop::collection::vec(any::<u8>(), 0..600), mki in any::<bool>()) {
        let (_, mut rx) = sessions(profile, if mki { &[1] } else { &[] });
        let mut a = bytes.clone();
        let r = rx.unprotect_rtp(&mut a);
        prop_assert!(r.is_err());
        let mut b = bytes;
        let r = rx.unprotect_rtcp(&mut b);
        prop_assert!(r.is_err());
    }

    /// Arbitrary bytes as a packet to protect: an error or a packet that round-trips.
    #[test]
    fn protect_arbitrary_bytes_never_panics(profile in profile(), bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let (mut tx, mut rx) = sessions(profile, &[]);
        let mut p = bytes.clone();
        if tx.protect_rtp(&mut p).is_ok() {
            rx.unprotect_rtp(&mut p).unwrap();
            prop_assert_eq!(&p, &bytes);
        } else {
            prop_assert_eq!(&p, &bytes, "a refused packet is left as it was");
        }
        let mut q = bytes.clone();
        match tx.protect_rtcp(&mut q) {
            Ok(()) => { rx.unprotect_rtcp(&mut q).unwrap(); prop_assert_eq!(q, bytes); }
            Err(e) => prop_assert!(matches!(e, SrtpError::TooShort | SrtpError::Malformed(_))),
        }
    }
}
