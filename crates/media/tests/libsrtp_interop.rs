//! Interop with libsrtp 2.7 (PyPI pylibsrtp, driven through the SRTP crate's peer script): every
//! SRTP and SRTCP packet a `MediaSession` sends is unprotected by libsrtp and is the RTP/RTCP we
//! expect; packets libsrtp protects (audio, then SR + SDES + BYE) are accepted and recorded by
//! the session. Required in CI (`CHAINCALL_REQUIRE_PEERS=1`).

use std::process::Command;
use std::time::Instant;

use chaincall_media::g711::Codec;
use chaincall_media::rtcp::{self, Bye, RtcpPacket, SdesChunk, SenderInfo, SenderReport};
use chaincall_media::rtp::RtpPacket;
use chaincall_media::signal::speech_like;
use chaincall_media::{MediaConfig, MediaEvent, MediaOptions, MediaSession};
use chaincall_srtp::{Profile, SrtpConfig, SrtpSession};

const OURS: u32 = 0x0C0F_FEE0;
const THEIRS: u32 = 0x7E11_5000;

/// Runs the peer script over `commands`, one reply line per command.
fn libsrtp(python: &std::path::Path, commands: String) -> Vec<String> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../srtp/tests/libsrtp_peer.py");
    let out = chaincall_testkit::output_with_input(Command::new(python).arg(script), commands);
    chaincall_testkit::assert_success(&out, "libsrtp peer");
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn ok_hex(reply: &str) -> Vec<u8> {
    let (status, hex_out) = reply.split_once(' ').unwrap_or((reply, ""));
    assert_eq!(status, "OK", "libsrtp said {reply}");
    hex::decode(hex_out).unwrap()
}

#[test]
fn media_session_interoperates_with_libsrtp() {
    let Some(python) = chaincall_testkit::python() else {
        return;
    };
    for profile in [Profile::AesCm128HmacSha1_80, Profile::AeadAes128Gcm] {
        let key: Vec<u8> = (0..profile.master_key_len() + profile.master_salt_len())
            .map(|i| (i as u8).wrapping_mul(13).wrapping_add(5))
            .collect();
        let srtp = || SrtpSession::from_key_and_salt(SrtpConfig::new(profile), &key).unwrap();
        let start = Instant::now();
        let config = MediaConfig::new(Codec::Pcmu, OURS, "ours@chaincall.test");
        let options = MediaOptions {
            initial_sequence: Some(65_530), // cross the wrap: ROC 0 -> 1
            ..MediaOptions::default()
        };
        // The peer script uses one key both ways: so do we (different SSRCs, separate streams).
        let mut session = MediaSession::with_options(
            config,
            options,
            srtp(),
            srtp(),
            speech_like(1200, 9),
            start,
        );

        // Everything we send, through a full call: 60 frames, SRs, the final SR + BYE.
        let mut sent = Vec::new();
        let mut now = start;
        while !session.source_done() {
            let out = chaincall_io::drain(|| session.poll_output(now));
            sent.extend(out.transmits.into_iter().map(|p| p.contents));
            now = out.timeout.unwrap();
        }
        session.finish(now);
        let out = chaincall_io::drain(|| session.poll_output(now));
        sent.extend(out.transmits.into_iter().map(|p| p.contents));

        // What libsrtp protects for us: 50 frames of its own audio from THEIRS, then SR + BYE.
        let theirs_audio = speech_like(1000, 10);
        let mut theirs_payload = Vec::new();
        Codec::Pcmu.encode(&theirs_audio, &mut theirs_payload);
        let mut their_plain = Vec::new();
        for (k, frame) in theirs_payload.chunks(160).enumerate() {
            let mut p = Vec::new();
            RtpPacket::new(0, 40_000 + k as u16, 1234 + 160 * k as u32, THEIRS, frame)
                .write(&mut p)
                .unwrap();
            their_plain.push((false, p));
        }
        let mut bye = Vec::new();
        rtcp::write_compound(
            &[
                RtcpPacket::SenderReport(SenderReport {
                    ssrc: THEIRS,
                    info: SenderInfo {
                        ntp_timestamp: 1 << 32,
                        rtp_timestamp: 1234 + 8000,
                        packet_count: 50,
                        octet_count: 8000,
                    },
                    reports: vec![],
                }),
                RtcpPacket::Sdes(vec![SdesChunk::cname(THEIRS, "libsrtp@peer")]),
                RtcpPacket::Bye(Bye {
                    ssrcs: vec![THEIRS],
                    reason: None,
                }),
            ],
            &mut bye,
        )
        .unwrap();
        their_plain.push((true, bye));

        let mut commands = format!("session {} {}\n", profile.rfc_name(), hex::encode(&key));
        for p in &sent {
            let cmd = if rtcp::is_rtcp(p) {
                "rtcp_unprotect"
            } else {
                "rtp_unprotect"
            };
            commands += &format!("{cmd} {}\n", hex::encode(p));
        }
        for (is_rtcp, p) in &their_plain {
            let cmd = if *is_rtcp {
                "rtcp_protect"
            } else {
                "rtp_protect"
            };
            commands += &format!("{cmd} {}\n", hex::encode(p));
        }
        let replies = libsrtp(&python, commands);
        assert_eq!(replies.len(), 1 + sent.len() + their_plain.len());
        assert_eq!(replies[0], "OK");

        // libsrtp decrypted every packet we sent to the RTP/RTCP we meant.
        let mut payload = Vec::new();
        let mut srs = 0;
        let mut byes = 0;
        for (reply, p) in replies[1..=sent.len()].iter().zip(&sent) {
            let plain = ok_hex(reply);
            if rtcp::is_rtcp(p) {
                for packet in rtcp::parse_compound(&plain).unwrap() {
                    match packet {
                        RtcpPacket::SenderReport(sr) => {
                            assert_eq!(sr.ssrc, OURS);
                            srs += 1;
                        }
                        RtcpPacket::Bye(b) => {
                            assert_eq!(b.ssrcs, [OURS]);
                            byes += 1;
                        }
                        _ => {}
                    }
                }
            } else {
                let rtp = RtpPacket::parse(&plain).unwrap();
                assert_eq!((rtp.ssrc, rtp.payload_type), (OURS, 0));
                payload.extend_from_slice(rtp.payload);
            }
        }
        assert_eq!(
            payload,
            session.sent_payload(),
            "{profile}: libsrtp decrypted our audio"
        );
        assert!(srs >= 2 && byes == 1, "{profile}: {srs} SRs, {byes} BYEs");

        // Our session accepts and records what libsrtp protected.
        let mut events = Vec::new();
        for reply in &replies[1 + sent.len()..] {
            events.push(session.handle_input(&ok_hex(reply), now).unwrap());
        }
        assert_eq!(events.last(), Some(&MediaEvent::Bye));
        assert_eq!(session.received_payload(), theirs_payload, "{profile}");
        let stats = session.stats();
        assert_eq!((stats.rtp_received, stats.rtp_rejected), (50, 0));
        assert_eq!(stats.peer_cname.as_deref(), Some("libsrtp@peer"));
        assert_eq!(stats.peer_sender.unwrap().packet_count, 50);
    }
}
