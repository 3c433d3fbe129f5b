//! Opus through the system libopus (round trip of speech-like audio, FEC against PLC) and the
//! SDP side of codec and telephone-event negotiation, parsed with chaincall-sip's SDP parser.

use chaincall_media::codec::{AudioCodec, AudioDecoder, AudioEncoder};
use chaincall_media::g711::Codec;
use chaincall_media::opus::{FRAME_SAMPLES, OpusConfig, OpusDecoder, OpusEncoder};
use chaincall_media::sdp::{self, Format, OpusParams, TelephoneEvent};
use chaincall_media::signal::speech_like;
use chaincall_sip::sdp::{Media, Sdp};

mod common;
use common::correlation;

/// `speech_like` at 48 kHz: the 8 kHz signal upsampled ×6 by linear interpolation (its content
/// stays below 3.4 kHz, so interpolation images are small).
fn speech_48k(ms: u32, seed: u64) -> Vec<i16> {
    let s = speech_like(ms, seed);
    let mut out = Vec::with_capacity(s.len() * 6);
    for (i, &a) in s.iter().enumerate() {
        let b = s.get(i + 1).copied().unwrap_or(a);
        for k in 0..6 {
            out.push((f64::from(a) + (f64::from(b) - f64::from(a)) * f64::from(k) / 6.0) as i16);
        }
    }
    out
}

/// Encodes `pcm` in 20 ms frames; `None` where DTX sent nothing.
fn encode_all(enc: &mut OpusEncoder, pcm: &[i16]) -> Vec<Option<Vec<u8>>> {
    pcm.chunks_exact(FRAME_SAMPLES)
        .map(|f| enc.encode(f).unwrap())
        .collect()
}

/// The lag (0..=max) at which `decoded` best matches `original`, by correlation.
fn best_lag(original: &[i16], decoded: &[i16], max: usize) -> usize {
    // One second of the signal is enough to find the codec delay.
    let n = original
        .len()
        .min(decoded.len())
        .saturating_sub(max)
        .min(48_000);
    (0..=max)
        .max_by(|&a, &b| {
            let c = |lag: usize| -> f64 {
                (0..n)
                    .step_by(2)
                    .map(|i| f64::from(original[i]) * f64::from(decoded[i + lag]))
                    .sum()
            };
            c(a).total_cmp(&c(b))
        })
        .unwrap()
}

fn snr_db(original: &[i16], decoded: &[i16]) -> f64 {
    let (mut sig, mut err) = (0.0f64, 0.0f64);
    for (&o, &d) in original.iter().zip(decoded) {
        sig += f64::from(o).powi(2);
        err += (f64::from(o) - f64::from(d)).powi(2);
    }
    10.0 * (sig / err.max(1.0)).log10()
}

#[test]
fn opus_round_trip_of_speech_keeps_snr_and_correlation() {
    let original = speech_48k(4000, 11);
    let mut enc = OpusEncoder::new(OpusConfig::default()).unwrap();
    let packets = encode_all(&mut enc, &original);
    let sent = packets.iter().flatten().count();
    // DTX: the pauses of the signal send (almost) nothing.
    assert!(sent < packets.len(), "DTX sent all {sent} frames");
    let mut dec = OpusDecoder::new().unwrap();
    let mut decoded = Vec::new();
    for p in &packets {
        match p {
            Some(p) => assert_eq!(dec.decode(p, &mut decoded).unwrap(), FRAME_SAMPLES),
            None => assert_eq!(dec.conceal(&mut decoded).unwrap(), FRAME_SAMPLES),
        }
    }
    let lag = best_lag(&original, &decoded, 600);
    let aligned = &decoded[lag..];
    let snr = snr_db(&original, aligned);
    let corr = correlation(&original, aligned);
    println!(
        "opus 32 kbit/s: {sent}/{} frames sent, lag {lag} samples, SNR {snr:.1} dB, correlation {corr:.3}",
        packets.len()
    );
    assert!(snr > 7.0, "SNR {snr:.1} dB");
    assert!(corr > 0.9, "correlation {corr:.3}");
}

#[test]
fn fec_recovers_a_lost_packet_better_than_plc() {
    let original = speech_48k(6000, 5);
    let mut enc = OpusEncoder::new(OpusConfig {
        packet_loss_percent: 20,
        dtx: false,
        ..OpusConfig::default()
    })
    .unwrap();
    let packets: Vec<Vec<u8>> = encode_all(&mut enc, &original)
        .into_iter()
        .map(Option::unwrap)
        .collect();
    // Reference decode (no loss) to find the codec delay.
    let mut reference = Vec::new();
    let mut d = OpusDecoder::new().unwrap();
    for p in &packets {
        d.decode(p, &mut reference).unwrap();
    }
    let lag = best_lag(&original, &reference, 600);
    // Lose every 5th packet in voiced frames; one decoder conceals, the other uses FEC.
    let voiced = |k: usize| {
        let f = &original[k * FRAME_SAMPLES..(k + 1) * FRAME_SAMPLES];
        f.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / FRAME_SAMPLES as f64 > 2.5e5
    };
    let lost: Vec<usize> = (5..packets.len() - 1)
        .filter(|k| k % 5 == 0 && voiced(*k))
        .collect();
    assert!(lost.len() >= 10, "{} voiced losses", lost.len());
    let (mut plc, mut fec) = (OpusDecoder::new().unwrap(), OpusDecoder::new().unwrap());
    let (mut out_plc, mut out_fec) = (Vec::new(), Vec::new());
    for (k, p) in packets.iter().enumerate() {
        if lost.contains(&k) {
            plc.conceal(&mut out_plc).unwrap();
            fec.decode_fec(&packets[k + 1], &mut out_fec).unwrap();
        } else {
            plc.decode(p, &mut out_plc).unwrap();
            fec.decode(p, &mut out_fec).unwrap();
        }
    }
    // Error against the original over the lost frames only (shifted by the codec delay).
    let err = |out: &[i16]| -> f64 {
        lost.iter()
            .flat_map(|&k| k * FRAME_SAMPLES..(k + 1) * FRAME_SAMPLES)
            .map(|i| (f64::from(original[i]) - f64::from(out[i + lag])).powi(2))
            .sum()
    };
    let signal: f64 = lost
        .iter()
        .flat_map(|&k| k * FRAME_SAMPLES..(k + 1) * FRAME_SAMPLES)
        .map(|i| f64::from(original[i]).powi(2))
        .sum();
    let (e_plc, e_fec) = (err(&out_plc), err(&out_fec));
    let snr = |e: f64| 10.0 * (signal / e).log10();
    println!(
        "{} lost voiced frames: SNR over them with PLC {:.1} dB, with FEC {:.1} dB",
        lost.len(),
        snr(e_plc),
        snr(e_fec)
    );
    assert!(
        e_fec < e_plc * 0.8,
        "FEC error {e_fec:.3e} vs PLC {e_plc:.3e}"
    );
}

#[test]
fn codec_abstraction_runs_g711_and_opus() {
    for (codec, rate, frame, pt) in [
        (AudioCodec::G711(Codec::Pcmu), 8000, 160, 0),
        (AudioCodec::G711(Codec::Pcma), 8000, 160, 8),
        (AudioCodec::OPUS, 48_000, 960, 111),
    ] {
        assert_eq!(codec.clock_rate(), rate);
        assert_eq!(codec.sample_rate(), rate);
        assert_eq!(codec.samples_per_frame(20), frame);
        assert_eq!(codec.payload_type(), pt);
        let pcm: Vec<i16> = if codec.is_opus() {
            speech_48k(200, 2)
        } else {
            speech_like(200, 2)
        };
        let mut enc = AudioEncoder::new(codec, OpusConfig::default()).unwrap();
        let mut dec = AudioDecoder::new(codec).unwrap();
        let mut out = Vec::new();
        for f in pcm.chunks_exact(frame) {
            if let Some(p) = enc.encode(f).unwrap() {
                dec.decode(&p, &mut out).unwrap();
            }
        }
        assert_eq!(dec.conceal(frame, &mut out).unwrap(), frame);
        assert_eq!(dec.has_fec(), codec.is_opus());
    }
    assert_eq!(AudioCodec::OPUS.rtpmap(), "111 opus/48000/2");
    assert_eq!(AudioCodec::G711(Codec::Pcma).rtpmap(), "8 PCMA/8000");
}

fn audio_section(sdp_text: &str) -> Media {
    let sdp = Sdp::parse(sdp_text.as_bytes()).unwrap();
    sdp.media.into_iter().find(|m| m.media == "audio").unwrap()
}

fn session(media_lines: &str) -> String {
    format!(
        "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n{media_lines}"
    )
}

#[test]
fn offer_carries_rfc7587_and_rfc4733_lines_and_parses_back() {
    let mut m = Media::new("audio", 4000, "RTP/SAVP", &[]);
    let ours = [AudioCodec::OPUS, Codec::Pcmu.into(), Codec::Pcma.into()];
    sdp::write_offer(&mut m, &ours, true);
    let mut offer = Sdp::new("-", 1, "192.0.2.1");
    offer.media.push(m);
    let text = offer.to_string_crlf();
    for line in [
        "m=audio 4000 RTP/SAVP 111 0 8 110 101\r\n",
        "a=rtpmap:111 opus/48000/2\r\n",
        "a=fmtp:111 useinbandfec=1;usedtx=1;maxplaybackrate=48000;stereo=0;sprop-stereo=0\r\n",
        "a=rtpmap:0 PCMU/8000\r\n",
        "a=rtpmap:8 PCMA/8000\r\n",
        "a=rtpmap:110 telephone-event/48000\r\n",
        "a=fmtp:110 0-16\r\n",
        "a=rtpmap:101 telephone-event/8000\r\n",
        "a=fmtp:101 0-16\r\n",
        "a=ptime:20\r\n",
    ] {
        assert!(text.contains(line), "{line:?} missing from\n{text}");
    }
    // Another chaincall phone answers: Opus, telephone-event at 48 kHz.
    let media = audio_section(&text);
    let n = sdp::negotiate(&ours, &media, true).unwrap();
    assert_eq!(n.codec, AudioCodec::OPUS);
    let p = n.opus.unwrap();
    assert!(p.useinbandfec && p.usedtx && !p.stereo);
    assert_eq!(p.maxplaybackrate, 48_000);
    let te = n.telephone_event.clone().unwrap();
    assert_eq!((te.payload_type, te.clock_rate), (110, 48_000));
    assert!(te.supports(11) && te.supports(16) && !te.supports(17));
    // The answer names only what was chosen, on the offerer's payload types.
    let mut a = Media::new("audio", 5000, "RTP/SAVP", &[]);
    sdp::write_answer(&mut a, &n);
    assert_eq!(a.formats, ["111", "110"]);
    let back = sdp::negotiate(&ours, &a, true).unwrap();
    assert_eq!(back, n);
}

#[test]
fn answerer_prefers_opus_and_falls_back_to_g711() {
    let ours = [AudioCodec::OPUS, Codec::Pcmu.into(), Codec::Pcma.into()];
    // A baresip-style offer: Opus on 96 with stereo, PCMA before PCMU, telephone-event/8000.
    let media = audio_section(&session(
        "m=audio 10000 RTP/AVP 8 0 96 101\r\n\
         a=rtpmap:96 opus/48000/2\r\n\
         a=fmtp:96 stereo=1;sprop-stereo=1;useinbandfec=1\r\n\
         a=rtpmap:101 telephone-event/8000\r\n\
         a=fmtp:101 0-15\r\n",
    ));
    let n = sdp::negotiate(&ours, &media, true).unwrap();
    assert_eq!(n.codec, AudioCodec::Opus { payload_type: 96 });
    assert!(n.opus.unwrap().stereo);
    // Only telephone-event/8000 is offered: taken, and it says its clock.
    assert_eq!(n.telephone_event.as_ref().unwrap().clock_rate, 8000);
    assert!(
        sdp::negotiate(&ours, &media, false)
            .unwrap()
            .telephone_event
            .is_none()
    );

    // A G.711-only phone with static payload types and no rtpmap at all (RFC 3551).
    let media = audio_section(&session("m=audio 10000 RTP/AVP 8 0\r\n"));
    let n = sdp::negotiate(&ours, &media, true).unwrap();
    assert_eq!(
        n.codec,
        AudioCodec::G711(Codec::Pcmu),
        "our order, not theirs"
    );
    assert!(n.telephone_event.is_none());
    let only_pcma = [AudioCodec::G711(Codec::Pcma)];
    assert_eq!(
        sdp::negotiate(&only_pcma, &media, true).unwrap().codec,
        AudioCodec::G711(Codec::Pcma)
    );
    // Nothing in common: none.
    let media = audio_section(&session(
        "m=audio 10000 RTP/AVP 9 18\r\na=rtpmap:9 G722/8000\r\na=rtpmap:18 G729/8000\r\n",
    ));
    assert_eq!(sdp::negotiate(&ours, &media, true), None);
    assert_eq!(sdp::formats(&media), [Format::Other(9), Format::Other(18)]);
}

#[test]
fn format_parsing_is_lenient_where_rfcs_say_so() {
    // Opus's rtpmap at 48 kHz only (RFC 7587 §7); case-insensitive names (RFC 4855 §3);
    // a PCMU name on a dynamic number is not G.711 here; telephone-event without fmtp is 0-15.
    let media = audio_section(&session(
        "m=audio 1 RTP/AVP 100 101 102 103\r\n\
         a=rtpmap:100 OPUS/48000/2\r\n\
         a=rtpmap:101 opus/16000\r\n\
         a=rtpmap:102 PCMU/8000\r\n\
         a=rtpmap:103 Telephone-Event/48000\r\n",
    ));
    assert_eq!(
        sdp::formats(&media),
        [
            Format::Audio(
                AudioCodec::Opus { payload_type: 100 },
                Some(OpusParams::default())
            ),
            Format::Other(101),
            Format::Other(102),
            Format::TelephoneEvent(TelephoneEvent {
                payload_type: 103,
                clock_rate: 48_000,
                events: vec![0..=15],
            }),
        ]
    );
    assert_eq!(
        TelephoneEvent::parse_events("0-15, 66,70-71,9-3,x"),
        vec![0..=15, 66..=66, 70..=71]
    );
    let p = OpusParams::parse("maxaveragebitrate=20000; usedtx=1;maxplaybackrate=bad");
    assert_eq!(p.maxaveragebitrate, Some(20_000));
    assert!(p.usedtx && !p.useinbandfec);
    assert_eq!(p.maxplaybackrate, 48_000);
}

#[test]
fn the_encoder_follows_how_the_peer_asked_to_receive() {
    let ours = OpusConfig::default();
    // A peer that asks for FEC and DTX and caps nothing gets what we would send anyway.
    let chaincall = OpusParams::parse(sdp::OPUS_FMTP);
    assert_eq!(ours.toward(&chaincall), ours);
    // RFC 7587 §7.1: no more than its maxaveragebitrate; no FEC its decoder cannot use, no DTX
    // it did not ask for (both default to 0 when absent).
    let capped = OpusParams::parse("maxaveragebitrate=24000; stereo=1");
    let toward = ours.toward(&capped);
    assert_eq!(toward.bitrate, 24_000);
    assert!(!toward.inband_fec && !toward.dtx);
    assert_eq!(toward.complexity, ours.complexity);
    // A cap above ours raises nothing; an absurd one is held at libopus' floor.
    let generous = OpusParams::parse("maxaveragebitrate=510000;useinbandfec=1;usedtx=1");
    assert_eq!(ours.toward(&generous).bitrate, ours.bitrate);
    let tiny = OpusParams::parse("maxaveragebitrate=10;useinbandfec=1");
    assert_eq!(ours.toward(&tiny).bitrate, 6_000);
    assert!(ours.toward(&tiny).inband_fec);
}
