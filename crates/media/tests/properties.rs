//! Property tests: the parsers never panic on arbitrary or mutated input, builders and parsers
//! round-trip, and a session fed arbitrary datagrams rejects them without panicking.

use std::time::{Duration, Instant};

use chaincall_media::g711::Codec;
use chaincall_media::rtcp::{
    self, Bye, ReceiverReport, ReportBlock, RtcpPacket, SdesChunk, SdesItem, SenderInfo,
    SenderReport,
};
use chaincall_media::rtp::{HeaderExtension, RtpPacket};
use chaincall_media::{MediaConfig, MediaSession, wav};
use chaincall_srtp::{Profile, SrtpConfig, SrtpSession};
use proptest::prelude::*;

fn block() -> impl Strategy<Value = ReportBlock> {
    (
        any::<u32>(),
        any::<u8>(),
        -0x80_0000i32..=0x7F_FFFF,
        any::<u32>(),
        any::<u32>(),
        any::<u32>(),
        any::<u32>(),
    )
        .prop_map(
            |(ssrc, fraction_lost, cumulative_lost, highest_seq, jitter, last_sr, dlsr)| {
                ReportBlock {
                    ssrc,
                    fraction_lost,
                    cumulative_lost,
                    highest_seq,
                    jitter,
                    last_sr,
                    delay_since_last_sr: dlsr,
                }
            },
        )
}

fn rtcp_packet() -> impl Strategy<Value = RtcpPacket> {
    prop_oneof![
        (
            any::<u32>(),
            any::<[u32; 5]>(),
            prop::collection::vec(block(), 0..4)
        )
            .prop_map(|(ssrc, i, reports)| RtcpPacket::SenderReport(SenderReport {
                ssrc,
                info: SenderInfo {
                    ntp_timestamp: u64::from(i[0]) << 32 | u64::from(i[1]),
                    rtp_timestamp: i[2],
                    packet_count: i[3],
                    octet_count: i[4],
                },
                reports,
            })),
        (any::<u32>(), prop::collection::vec(block(), 0..4)).prop_map(|(ssrc, reports)| {
            RtcpPacket::ReceiverReport(ReceiverReport { ssrc, reports })
        }),
        prop::collection::vec(
            (
                any::<u32>(),
                prop::collection::vec((1u8..=8, prop::collection::vec(any::<u8>(), 0..40)), 0..3)
            ),
            0..3
        )
        .prop_map(|chunks| RtcpPacket::Sdes(
            chunks
                .into_iter()
                .map(|(ssrc, items)| SdesChunk {
                    ssrc,
                    items: items
                        .into_iter()
                        .map(|(kind, value)| SdesItem { kind, value })
                        .collect(),
                })
                .collect()
        )),
        (
            prop::collection::vec(any::<u32>(), 0..4),
            prop::option::of(prop::collection::vec(any::<u8>(), 0..30))
        )
            .prop_map(|(ssrcs, reason)| RtcpPacket::Bye(Bye { ssrcs, reason })),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn rtp_parse_never_panics(buf in prop::collection::vec(any::<u8>(), 0..200)) {
        let _ = RtpPacket::parse(&buf);
    }

    #[test]
    fn rtcp_parse_never_panics(buf in prop::collection::vec(any::<u8>(), 0..200)) {
        let _ = rtcp::parse_compound(&buf);
        let _ = rtcp::is_rtcp(&buf);
    }

    #[test]
    fn wav_parse_never_panics(buf in prop::collection::vec(any::<u8>(), 0..200), cut in 0usize..100) {
        let _ = wav::from_bytes(&buf);
        // A valid file, truncated or with one octet changed, never panics either.
        let mut file = wav::to_bytes(&[1, 2, 3, 4, 5]).unwrap();
        let at = cut % file.len();
        file[at] ^= buf.first().copied().unwrap_or(1);
        let _ = wav::from_bytes(&file);
        let _ = wav::from_bytes(&file[..at]);
    }

    #[test]
    fn rtp_round_trip(
        marker in any::<bool>(), pt in 0u8..128, seq in any::<u16>(), ts in any::<u32>(),
        ssrc in any::<u32>(), csrcs in prop::collection::vec(any::<u32>(), 0..16),
        ext in prop::option::of((any::<u16>(), prop::collection::vec(any::<u8>(), 0..5))),
        payload in prop::collection::vec(any::<u8>(), 0..300), padding in any::<u8>(),
    ) {
        let ext_data: Option<(u16, Vec<u8>)> =
            ext.map(|(p, words)| (p, words.iter().flat_map(|w| [*w; 4]).collect()));
        let mut p = RtpPacket::new(pt, seq, ts, ssrc, &payload);
        p.marker = marker;
        p.set_csrcs(&csrcs).unwrap();
        p.extension = ext_data.as_ref().map(|(profile, data)| HeaderExtension { profile: *profile, data });
        p.padding = padding;
        let mut buf = Vec::new();
        prop_assert_eq!(p.write(&mut buf).unwrap(), buf.len());
        prop_assert_eq!(RtpPacket::parse(&buf).unwrap(), p);
        // Every truncation is an error or a shorter valid packet, never a panic.
        for n in 0..buf.len() {
            let _ = RtpPacket::parse(&buf[..n]);
        }
    }

    #[test]
    fn rtcp_round_trip(packets in prop::collection::vec(rtcp_packet(), 1..5)) {
        let mut buf = Vec::new();
        rtcp::write_compound(&packets, &mut buf).unwrap();
        prop_assert_eq!(rtcp::parse_compound(&buf).unwrap(), packets);
        for n in 0..buf.len() {
            let _ = rtcp::parse_compound(&buf[..n]);
        }
    }

    #[test]
    fn session_rejects_arbitrary_datagrams(
        datagrams in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..300), 1..20),
    ) {
        let key = [9u8; 30];
        let srtp = || SrtpSession::from_key_and_salt(SrtpConfig::new(Profile::AesCm128HmacSha1_80), &key).unwrap();
        let start = Instant::now();
        let mut s = MediaSession::new(MediaConfig::new(Codec::Pcmu, 1, "x"), srtp(), srtp(), vec![0; 800], start);
        for (i, d) in datagrams.iter().enumerate() {
            let now = start + Duration::from_millis(i as u64 * 7);
            prop_assert!(s.handle_input(d, now).is_err());
            let _ = chaincall_io::drain(|| s.poll_output(now));
        }
        let st = s.stats();
        prop_assert_eq!(st.rtp_rejected + st.rtcp_rejected, datagrams.len() as u64);
        prop_assert!(s.received_payload().is_empty());
    }
}

#[test]
fn g711_codec_round_trip_is_close() {
    // Decode(encode(x)) is within G.711's quantisation step of x.
    for codec in [Codec::Pcmu, Codec::Pcma] {
        for x in (i16::MIN..=i16::MAX).step_by(7) {
            let y = codec.decode_sample(codec.encode_sample(x));
            let err = (i32::from(x) - i32::from(y)).abs();
            let bound = (i32::from(x).abs() / 16).max(16) + 8;
            assert!(err <= bound, "{codec}: {x} -> {y}");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Whatever a network does within the replay window — drop, duplicate, reorder — the
    /// receiver reassembles exactly the frames it got, in order, with silence where frames were
    /// lost, counts the loss, and rejects the duplicates.
    #[test]
    fn any_network_within_the_window_reassembles_exactly(
        fates in prop::collection::vec((0u8..10, 0u8..10, 0usize..8), 50),
        seq in any::<u16>(),
    ) {
        let key = [3u8; 28];
        let profile = Profile::AeadAes128Gcm;
        let srtp = || SrtpSession::from_key_and_salt(SrtpConfig::new(profile), &key).unwrap();
        let start = Instant::now();
        let options = chaincall_media::MediaOptions {
            initial_sequence: Some(seq),
            ..Default::default()
        };
        let mut a = MediaSession::with_options(
            MediaConfig::new(Codec::Pcma, 1, "a"), options, srtp(), srtp(),
            chaincall_media::signal::speech_like(1000, u64::from(seq)), start,
        );
        let mut b = MediaSession::new(MediaConfig::new(Codec::Pcma, 2, "b"), srtp(), srtp(), Vec::new(), start);
        let mut frames = Vec::new();
        let mut now = start;
        while !a.source_done() {
            let out = chaincall_io::drain(|| a.poll_output(now));
            for p in out.transmits {
                if !rtcp::is_rtcp(&p.contents) {
                    frames.push(p.contents);
                }
            }
            now = out.timeout.unwrap();
        }
        prop_assert_eq!(frames.len(), 50);
        // Each frame: dropped (1 in 10), duplicated (1 in 10), delayed by up to 7 slots.
        let mut schedule: Vec<(usize, usize, usize)> = Vec::new(); // (slot, tiebreak, frame)
        let mut kept = std::collections::BTreeSet::new();
        let mut dups = 0u64;
        for (k, &(drop, dup, delay)) in fates.iter().enumerate() {
            if drop == 0 {
                continue;
            }
            kept.insert(k);
            schedule.push((k + delay, schedule.len(), k));
            if dup == 0 {
                dups += 1;
                schedule.push((k + delay + 1, schedule.len(), k));
            }
        }
        schedule.sort();
        for (i, &(_, _, k)) in schedule.iter().enumerate() {
            let r = b.handle_input(&frames[k], start + Duration::from_millis(20 * i as u64));
            prop_assert!(r.is_ok() || r == Err(chaincall_media::MediaError::Srtp(chaincall_srtp::SrtpError::Replayed)));
        }
        let sent = a.sent_payload();
        let mut want = Vec::new();
        if let (Some(&lo), Some(&hi)) = (kept.first(), kept.last()) {
            for k in lo..=hi {
                if kept.contains(&k) {
                    want.extend_from_slice(&sent[160 * k..160 * (k + 1)]);
                } else {
                    want.extend(std::iter::repeat_n(Codec::Pcma.silence(), 160));
                }
            }
            prop_assert_eq!(b.stats().lost, (hi - lo + 1 - kept.len()) as u64);
        }
        prop_assert_eq!(b.received_payload(), want);
        let s = b.stats();
        prop_assert_eq!(s.rtp_received, kept.len() as u64);
        prop_assert_eq!(s.rtp_rejected, dups);
    }
}
