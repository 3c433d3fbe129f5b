//! Two `MediaSession`s back to back over a simulated network and clock, for both SRTP families:
//! exact payload delivery both ways, statistics, SR contents, BYE, wrong keys, replays,
//! reordering and loss, and hostile datagrams.

use std::time::{Duration, Instant};

use chaincall_io::Output;
use chaincall_media::g711::Codec;
use chaincall_media::rtcp;
use chaincall_media::rtp::RtpPacket;
use chaincall_media::signal::speech_like;
use chaincall_media::{
    MediaChannel, MediaConfig, MediaError, MediaEvent, MediaOptions, MediaSession,
};
use chaincall_srtp::{Profile, SrtpConfig, SrtpError, SrtpSession};

const A_SSRC: u32 = 0xA11C_E000;
const B_SSRC: u32 = 0x0000_0B0B;

fn key(profile: Profile, seed: u8) -> Vec<u8> {
    (0..profile.master_key_len() + profile.master_salt_len())
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

fn srtp(profile: Profile, key: &[u8]) -> SrtpSession {
    SrtpSession::from_key_and_salt(SrtpConfig::new(profile), key).unwrap()
}

struct Call {
    a: MediaSession,
    b: MediaSession,
    start: Instant,
}

/// Alice sends `a_ms` of speech, Bob `b_ms`; Alice's sequence numbers start just below the wrap.
fn call(profile: Profile, codec: Codec, a_ms: u32, b_ms: u32) -> Call {
    call_with_keys(profile, codec, a_ms, b_ms, key(profile, 1), key(profile, 1))
}

/// As `call`, but Bob unprotects Alice's packets with `b_inbound_key` (Alice uses `a_key`).
fn call_with_keys(
    profile: Profile,
    codec: Codec,
    a_ms: u32,
    b_ms: u32,
    a_key: Vec<u8>,
    b_inbound_key: Vec<u8>,
) -> Call {
    let start = Instant::now();
    let back = key(profile, 2);
    let ca = MediaConfig::new(codec, A_SSRC, "alice@chaincall.test");
    let options = MediaOptions {
        initial_sequence: Some(65_500),
        initial_timestamp: Some(u32::MAX - 1000),
        ..MediaOptions::default()
    };
    let cb = MediaConfig::new(codec, B_SSRC, "bob@chaincall.test");
    let a = MediaSession::with_options(
        ca,
        options,
        srtp(profile, &a_key),
        srtp(profile, &back),
        speech_like(a_ms, 1),
        start,
    );
    let b = MediaSession::new(
        cb,
        srtp(profile, &back),
        srtp(profile, &b_inbound_key),
        speech_like(b_ms, 2),
        start,
    );
    Call { a, b, start }
}

/// What happened to one delivered datagram.
struct Delivery {
    to_b: bool,
    rtcp: bool,
    result: Result<MediaEvent, MediaError>,
    /// Receiver's RTP count and payload octets right after (for SR checks).
    received_after: (u64, u64),
}

type Hook<'a> = &'a mut dyn FnMut(bool, Vec<u8>) -> Vec<Vec<u8>>;

fn pump(
    from: &mut MediaSession,
    to: &mut MediaSession,
    from_a: bool,
    now: Instant,
    hook: Hook<'_>,
    log: &mut Vec<Delivery>,
) -> Option<Instant> {
    let out = chaincall_io::drain(|| from.poll_output(now));
    for p in out.transmits {
        // The channel the session names is the one the packet's own header says.
        let to_rtcp = p.destination == MediaChannel::Rtcp;
        assert_eq!(to_rtcp, rtcp::is_rtcp(&p.contents));
        for q in hook(from_a, p.contents) {
            let result = to.handle_input(&q, now);
            let s = to.stats();
            log.push(Delivery {
                to_b: from_a,
                rtcp: rtcp::is_rtcp(&q),
                result,
                received_after: (s.rtp_received, s.bytes_received),
            });
        }
    }
    out.timeout
}

/// Runs the call to the end: both sides send their source, then both finish (SR + BYE).
fn run(c: &mut Call, hook: Hook<'_>) -> Vec<Delivery> {
    let mut log = Vec::new();
    let mut now = c.start;
    let mut finished = false;
    for _ in 0..100_000 {
        let next_a = pump(&mut c.a, &mut c.b, true, now, hook, &mut log);
        let next_b = pump(&mut c.b, &mut c.a, false, now, hook, &mut log);
        if !finished && c.a.source_done() && c.b.source_done() {
            // A little after the last frame, as a user hanging up would.
            now += Duration::from_millis(40);
            c.a.finish(now);
            c.b.finish(now);
            finished = true;
            continue;
        }
        let next = match (next_a, next_b) {
            (Some(x), Some(y)) => x.min(y),
            (Some(x), None) | (None, Some(x)) => x,
            (None, None) => return log,
        };
        now = now.max(next);
    }
    panic!("call did not end");
}

fn deliver_all() -> impl FnMut(bool, Vec<u8>) -> Vec<Vec<u8>> {
    |_, p| vec![p]
}

#[test]
fn back_to_back_delivers_exact_payload_both_ways_every_profile() {
    for (profile, codec) in [
        (Profile::AesCm128HmacSha1_80, Codec::Pcmu),
        (Profile::AeadAes128Gcm, Codec::Pcma),
        (Profile::AesCm128HmacSha1_32, Codec::Pcmu),
        (Profile::AeadAes256Gcm, Codec::Pcma),
    ] {
        let mut c = call(profile, codec, 3000, 2000);
        let log = run(&mut c, &mut deliver_all());
        assert!(
            log.iter().all(|d| d.result.is_ok()),
            "{profile}: a packet was rejected"
        );

        // Exactly what was sent arrived, both ways, through the sequence-number wrap.
        assert_eq!(c.a.sent_payload().len(), 150 * 160, "{profile}");
        assert_eq!(c.b.sent_payload().len(), 100 * 160, "{profile}");
        assert_eq!(c.b.received_payload(), c.a.sent_payload(), "{profile} A→B");
        assert_eq!(c.a.received_payload(), c.b.sent_payload(), "{profile} B→A");
        let mut encoded = Vec::new();
        codec.encode(&speech_like(3000, 1), &mut encoded);
        assert_eq!(
            c.a.sent_payload(),
            &encoded[..],
            "{profile}: G.711 of the source"
        );
        let mut decoded = Vec::new();
        codec.decode(c.a.sent_payload(), &mut decoded);
        assert_eq!(c.b.recorded_audio(), decoded, "{profile}: recorded audio");

        let (sa, sb) = (c.a.stats(), c.b.stats());
        assert_eq!(
            (sa.rtp_sent, sb.rtp_received, sb.rtp_rejected),
            (150, 150, 0)
        );
        assert_eq!(
            (sb.rtp_sent, sa.rtp_received, sa.rtp_rejected),
            (100, 100, 0)
        );
        assert_eq!(sa.bytes_sent, 150 * 160);
        assert_eq!(sb.bytes_received, 150 * 160);
        assert_eq!((sa.lost, sb.lost), (0, 0));
        // RTCP every second plus the final one; every report accepted.
        assert!(sa.rtcp_sent >= 3, "{profile}: {} RTCP sent", sa.rtcp_sent);
        assert_eq!(sa.rtcp_sent, sb.rtcp_received);
        assert_eq!(sb.rtcp_sent, sa.rtcp_received);
        assert_eq!((sa.rtcp_rejected, sb.rtcp_rejected), (0, 0));
        // The final SR counts every packet and octet; the peer's report about us agrees.
        let sender = sb.peer_sender.expect("SR from A");
        assert_eq!((sender.packet_count, sender.octet_count), (150, 150 * 160));
        let report = sa.peer_report.expect("B reports about A");
        assert_eq!(report.ssrc, A_SSRC);
        assert_eq!(report.cumulative_lost, 0);
        // Extended highest sequence number: 150 packets from 65500 cross into cycle 1.
        assert_eq!(
            report.highest_seq,
            (1 << 16) | u32::from(65_500u16.wrapping_add(149))
        );
        assert_eq!(sb.peer_ssrc, Some(A_SSRC));
        assert_eq!(sb.peer_cname.as_deref(), Some("alice@chaincall.test"));
        assert_eq!(sa.peer_cname.as_deref(), Some("bob@chaincall.test"));
        assert!(sa.rtt.is_some(), "{profile}: RTT from LSR/DLSR");
        assert!(sa.bye_received && sb.bye_received);
        assert!(c.a.is_closed() && c.b.is_closed());
        assert_eq!(c.a.poll_output(c.start), Output::Timeout(None));
    }
}

#[test]
fn every_sender_report_counts_what_was_sent_before_it() {
    let mut c = call(Profile::AeadAes128Gcm, Codec::Pcmu, 4000, 1000);
    let log = run(&mut c, &mut deliver_all());
    let mut srs = 0;
    for d in log.iter().filter(|d| d.to_b && d.rtcp) {
        let info = match &d.result {
            Ok(MediaEvent::Rtcp { sender_report, .. }) => sender_report.expect("A sends SRs"),
            Ok(MediaEvent::Bye) => c.b.stats().peer_sender.unwrap(),
            other => panic!("unexpected {other:?}"),
        };
        // Lossless, in order: B had received exactly what the SR says A had sent.
        assert_eq!(u64::from(info.packet_count), d.received_after.0);
        assert_eq!(u64::from(info.octet_count), d.received_after.1);
        srs += 1;
    }
    assert!(srs >= 4, "{srs} SRs");
}

#[test]
fn finish_stops_audio_and_sends_sr_sdes_bye() {
    let mut c = call(Profile::AesCm128HmacSha1_80, Codec::Pcmu, 2000, 0);
    let mut now = c.start;
    // Send 10 frames, then hang up with most of the source unsent.
    while c.a.stats().rtp_sent < 10 {
        let out = chaincall_io::drain(|| c.a.poll_output(now));
        for p in out.transmits {
            c.b.handle_input(&p.contents, now).unwrap();
        }
        now = out.timeout.unwrap();
    }
    c.a.finish(now);
    c.a.finish(now); // idempotent
    // The final report is due at once: polling at the hang-up instant yields it.
    let last = c.a.poll_output(now).into_transmit().expect("final RTCP");
    assert_eq!(last.destination, MediaChannel::Rtcp);
    assert!(rtcp::is_rtcp(&last.contents));
    assert_eq!(c.b.handle_input(&last.contents, now), Ok(MediaEvent::Bye));
    // Closed: nothing more, and no deadline.
    assert_eq!(
        c.a.poll_output(now + Duration::from_secs(5)),
        Output::Timeout(None)
    );
    assert!(!c.a.source_done());
    assert_eq!(c.a.stats().rtp_sent, 10);
    assert_eq!(c.b.stats().peer_sender.unwrap().packet_count, 10);
    assert!(c.b.stats().bye_received);

    // The final packet really is SR + SDES(CNAME) + BYE: decrypt it with A's key.
    let mut rx = srtp(
        Profile::AesCm128HmacSha1_80,
        &key(Profile::AesCm128HmacSha1_80, 1),
    );
    let mut plain = last.contents.clone();
    rx.unprotect_rtcp(&mut plain).unwrap();
    let packets = rtcp::parse_compound(&plain).unwrap();
    assert!(matches!(&packets[0], rtcp::RtcpPacket::SenderReport(sr) if sr.ssrc == A_SSRC));
    assert!(matches!(&packets[1], rtcp::RtcpPacket::Sdes(ch)
        if ch[0].cname_value() == Some(&b"alice@chaincall.test"[..])));
    assert!(matches!(&packets[2], rtcp::RtcpPacket::Bye(b) if b.ssrcs == [A_SSRC]));
}

#[test]
fn wrong_key_rejects_and_counts_every_packet() {
    for profile in [Profile::AesCm128HmacSha1_80, Profile::AeadAes128Gcm] {
        let mut c = call_with_keys(
            profile,
            Codec::Pcmu,
            1000,
            1000,
            key(profile, 1),
            key(profile, 99),
        );
        let log = run(&mut c, &mut deliver_all());
        for d in log.iter().filter(|d| d.to_b) {
            let want = if d.rtcp {
                MediaError::Srtcp(SrtpError::AuthFailed)
            } else {
                MediaError::Srtp(SrtpError::AuthFailed)
            };
            assert_eq!(d.result.as_ref().unwrap_err(), &want, "{profile}");
        }
        let (sa, sb) = (c.a.stats(), c.b.stats());
        assert_eq!(sb.rtp_received, 0);
        assert_eq!(sb.rtp_rejected, sa.rtp_sent);
        assert_eq!(sb.rtcp_received, 0);
        assert_eq!(sb.rtcp_rejected, sa.rtcp_sent);
        assert!(c.b.received_payload().is_empty());
        assert!(!sb.bye_received);
        // The other direction had the right key.
        assert_eq!(c.a.received_payload(), c.b.sent_payload());
    }
}

#[test]
fn replayed_packets_are_rejected_and_change_nothing() {
    let mut c = call(Profile::AesCm128HmacSha1_80, Codec::Pcma, 1000, 0);
    let now = c.start + Duration::from_millis(60);
    let p1 = c.a.poll_output(now).into_transmit().unwrap().contents;
    let p2 = c.a.poll_output(now).into_transmit().unwrap().contents;
    c.b.handle_input(&p1, now).unwrap();
    c.b.handle_input(&p2, now).unwrap();
    let before = c.b.received_payload();
    assert_eq!(
        c.b.handle_input(&p1, now),
        Err(MediaError::Srtp(SrtpError::Replayed))
    );
    assert_eq!(
        c.b.handle_input(&p2, now),
        Err(MediaError::Srtp(SrtpError::Replayed))
    );
    assert_eq!(c.b.received_payload(), before);
    let s = c.b.stats();
    assert_eq!((s.rtp_received, s.rtp_rejected), (2, 2));

    // SRTCP replay.
    let later = c.start + Duration::from_millis(1000);
    let mut rtcp_packet = None;
    for p in chaincall_io::drain(|| c.a.poll_output(later)).transmits {
        if rtcp::is_rtcp(&p.contents) {
            rtcp_packet = Some(p.contents.clone());
        }
        c.b.handle_input(&p.contents, later).unwrap();
    }
    let rtcp_packet = rtcp_packet.expect("an SR at 1 s");
    assert_eq!(
        c.b.handle_input(&rtcp_packet, later),
        Err(MediaError::Srtcp(SrtpError::Replayed))
    );
    assert_eq!(c.b.stats().rtcp_rejected, 1);
}

#[test]
fn reordered_and_lost_packets_reassemble_in_sequence_order() {
    let mut c = call(Profile::AeadAes128Gcm, Codec::Pcmu, 4000, 1000);
    // A→B RTP: swap every pair and drop every 13th packet; RTCP and B→A pass untouched.
    let mut held: Option<Vec<u8>> = None;
    let mut index = 0usize;
    let mut dropped = Vec::new();
    let mut hook = |from_a: bool, p: Vec<u8>| -> Vec<Vec<u8>> {
        if !from_a || rtcp::is_rtcp(&p) {
            return vec![p];
        }
        let i = index;
        index += 1;
        if i % 13 == 12 {
            dropped.push(i);
            return Vec::new();
        }
        match held.take() {
            None => {
                held = Some(p);
                Vec::new()
            }
            Some(h) => vec![p, h],
        }
    };
    let log = run(&mut c, &mut hook);
    assert!(log.iter().all(|d| d.result.is_ok()));
    assert_eq!(index, 200);
    // 200 packets, 15 dropped, 185 delivered in swapped pairs (185 is odd: the last is held).
    let held_back = 1;
    let sent = c.a.sent_payload();
    let got = c.b.received_payload();
    let s = c.b.stats();
    assert_eq!(s.rtp_received, 200 - dropped.len() as u64 - held_back);
    assert_eq!(s.lost, dropped.len() as u64, "gaps counted as loss");
    // Same length up to the held-back last frame; lost frames are G.711 silence, the rest exact.
    assert_eq!(got.len(), sent.len() - 160);
    for (i, (g, w)) in got.chunks(160).zip(sent.chunks(160)).enumerate() {
        if dropped.contains(&i) {
            assert!(g.iter().all(|&b| b == Codec::Pcmu.silence()), "frame {i}");
        } else {
            assert_eq!(g, w, "frame {i}");
        }
    }
    assert_eq!(c.a.stats().peer_report.unwrap().cumulative_lost, 15);
}

#[test]
fn hostile_datagrams_are_rejected_counted_and_harmless() {
    let mut c = call(Profile::AesCm128HmacSha1_80, Codec::Pcmu, 1000, 0);
    let now = c.start;
    let good = c.a.poll_output(now).into_transmit().unwrap().contents;

    // Garbage of every short length, an oversized datagram, a bit-flipped packet.
    for len in 0..40 {
        let junk: Vec<u8> = (0..len).map(|i| (i * 37 + 200) as u8).collect();
        assert!(c.b.handle_input(&junk, now).is_err());
    }
    assert!(matches!(
        c.b.handle_input(&vec![0x80; 4000], now),
        Err(MediaError::Oversized { len: 4000 })
    ));
    let mut flipped = good.clone();
    flipped[20] ^= 1;
    assert_eq!(
        c.b.handle_input(&flipped, now),
        Err(MediaError::Srtp(SrtpError::AuthFailed))
    );

    // Authenticated but wrong payload type (PCMA on a PCMU session), and a second SSRC.
    let k = key(Profile::AesCm128HmacSha1_80, 1);
    let mut forger = srtp(Profile::AesCm128HmacSha1_80, &k);
    let mut forge = |pt: u8, seq: u16, ssrc: u32| {
        let mut p = Vec::new();
        RtpPacket::new(pt, seq, 0, ssrc, &[0xD5; 160])
            .write(&mut p)
            .unwrap();
        forger.protect_rtp(&mut p).unwrap();
        p
    };
    assert_eq!(
        c.b.handle_input(&good, now),
        Ok(MediaEvent::Rtp {
            seq: 65_500,
            timestamp: u32::MAX - 1000,
            marker: true,
            payload_len: 160
        })
    );
    assert_eq!(
        c.b.handle_input(&forge(8, 65_501, A_SSRC), now),
        Err(MediaError::UnexpectedPayloadType(8))
    );
    assert_eq!(
        c.b.handle_input(&forge(0, 9, 0x5EC0_0D00), now),
        Err(MediaError::UnexpectedSsrc(0x5EC0_0D00))
    );
    // An authenticated packet without payload.
    let mut empty = Vec::new();
    RtpPacket::new(0, 65_502, 0, A_SSRC, &[])
        .write(&mut empty)
        .unwrap();
    forger.protect_rtp(&mut empty).unwrap();
    assert_eq!(c.b.handle_input(&empty, now), Err(MediaError::EmptyPayload));
    let s = c.b.stats();
    assert_eq!(s.rtp_received, 1);
    assert_eq!(s.rtp_rejected + s.rtcp_rejected, 40 + 1 + 1 + 1 + 1 + 1);
    assert_eq!(s.last_received_at, Some(now));
    assert_eq!(c.b.received_payload().len(), 160);
}

/// Live input (a microphone): nothing is sent until the shell pushes a frame; each pushed
/// frame goes out once, in order, on consecutive RTP timestamps, and arrives as pushed; a shell
/// that pushes without polling keeps only the newest `MAX_LIVE_FRAMES`.
#[test]
fn live_input_sends_each_pushed_frame_once_in_order() {
    let profile = Profile::AesCm128HmacSha1_80;
    let mut c = call(profile, Codec::Pcmu, 0, 0);
    c.a.use_live_input();
    assert!(!c.a.source_done(), "live input never runs out");
    let spf = c.a.samples_per_frame();
    assert_eq!(spf, 160);
    let speech = speech_like(400, 7);
    let mut log = Vec::new();
    let mut now = c.start;
    // No frame pushed: no audio, however long the shell waits.
    now += Duration::from_millis(100);
    pump(&mut c.a, &mut c.b, true, now, &mut deliver_all(), &mut log);
    assert_eq!(c.a.stats().rtp_sent, 0);
    // One frame per packet time, as the phone's media task pushes them.
    for frame in speech.chunks(spf) {
        c.a.push_frame(frame);
        pump(&mut c.a, &mut c.b, true, now, &mut deliver_all(), &mut log);
        now += Duration::from_millis(20);
    }
    assert!(log.iter().all(|d| d.result.is_ok()));
    assert_eq!(c.a.stats().rtp_sent, 20);
    let mut encoded = Vec::new();
    Codec::Pcmu.encode(&speech, &mut encoded);
    assert_eq!(c.a.sent_payload(), &encoded[..]);
    // Consecutive timestamps: no gap filled in on the receiving side.
    assert_eq!(c.b.received_payload(), encoded);
    // Seven frames pushed without a poll: the newest five are sent, the oldest two dropped.
    for k in 0..7i16 {
        c.a.push_frame(&vec![k * 100; spf]);
    }
    let out = chaincall_io::drain(|| c.a.poll_output(now));
    let rtp: Vec<_> = out
        .transmits
        .iter()
        .filter(|p| p.destination == MediaChannel::Rtp)
        .collect();
    assert_eq!(rtp.len(), chaincall_media::MAX_LIVE_FRAMES);
    let mut first = Vec::new();
    Codec::Pcmu.encode(&vec![200; spf], &mut first);
    let sent = c.a.sent_payload();
    assert_eq!(sent[encoded.len()..encoded.len() + spf], first[..]);
    // After finish, pushed frames are ignored.
    c.a.finish(now);
    c.a.push_frame(&speech[..spf]);
    let out = chaincall_io::drain(|| c.a.poll_output(now));
    assert!(
        out.transmits
            .iter()
            .all(|p| p.destination == MediaChannel::Rtcp)
    );
}
