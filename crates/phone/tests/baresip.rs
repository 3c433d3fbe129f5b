//! A standard phone as the peer: chaincall's phone (signalling over TLS-PSK to sipd) and a real
//! baresip 1.0 (Debian `baresip-core`, registered to the same sipd over UDP) call each other with
//! SDES-SRTP (RFC 4568), in G.711 and in Opus (baresip's `opus` module). Each side must decrypt the
//! other's SRTP, and the phone must report the call as encrypted but *not* verified on chain.
//! Skips without baresip unless CHAINCALL_REQUIRE_PEERS=1.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use chaincall_identity::{IdentityKey, PhoneNumber};
use chaincall_phone::core::KeyedCall;
use chaincall_phone::{DEFAULT_CODECS, KeyMode, Phone, PhoneConfig, PhoneEvent, PhoneEvents};
use common::*;

const ALICE: &str = "+15550100001";
const BOB: &str = "+15550100002";

/// Two seconds of a 440 Hz tone as a 16-bit PCM WAV at `rate` with `channels` (baresip's aufile
/// takes only the format of the codec in use: 8 kHz mono for G.711, 48 kHz stereo for Opus).
fn tone(path: &Path, rate: u32, channels: u16) {
    let mut data = Vec::new();
    for i in 0..rate * 2 {
        let t = f64::from(i) / f64::from(rate);
        let v = (8000.0 * (t * 440.0 * 2.0 * std::f64::consts::PI).sin()) as i16;
        for _ in 0..channels {
            data.extend_from_slice(&v.to_le_bytes());
        }
    }
    let block = channels * 2;
    let mut wav = Vec::new();
    wav.extend_from_slice(b"RIFF");
    wav.extend_from_slice(&(36 + data.len() as u32).to_le_bytes());
    wav.extend_from_slice(b"WAVEfmt ");
    wav.extend_from_slice(&16u32.to_le_bytes());
    wav.extend_from_slice(&1u16.to_le_bytes());
    wav.extend_from_slice(&channels.to_le_bytes());
    wav.extend_from_slice(&rate.to_le_bytes());
    wav.extend_from_slice(&(rate * u32::from(block)).to_le_bytes());
    wav.extend_from_slice(&block.to_le_bytes());
    wav.extend_from_slice(&16u16.to_le_bytes());
    wav.extend_from_slice(b"data");
    wav.extend_from_slice(&(data.len() as u32).to_le_bytes());
    wav.extend_from_slice(&data);
    std::fs::write(path, wav).unwrap();
}

fn rms(samples: &[i16]) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    (samples.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / samples.len() as f64).sqrt()
}

struct Baresip(Child);

impl Drop for Baresip {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A running baresip for `number`: its folder (config, `log.txt`, `heard.wav`) and the process.
struct Peer {
    dir: PathBuf,
    _process: Baresip,
}

impl Peer {
    /// Starts baresip as `number` at sipd: SDES mandatory, auto-answer, `codecs` (baresip's
    /// `audio_codecs`), sending a 440 Hz tone; `extra` goes on its command line (`-e /dial …`).
    /// Returns once it registered (bounded: 20 s, baresip starts slowly on a loaded machine).
    async fn start(net: &Net, baresip: &Path, number: &str, codecs: &str, extra: &[&str]) -> Peer {
        let dir = net.dir.path().join(number.trim_start_matches('+'));
        std::fs::create_dir_all(&dir).unwrap();
        let wav = dir.join("tone.wav");
        let heard = dir.join("heard.wav");
        let (rate, channels) = if codecs.starts_with("opus") {
            (48_000, 2)
        } else {
            (8000, 1)
        };
        tone(&wav, rate, channels);
        let port = chaincall_testkit::free_udp_tcp_port();
        std::fs::write(
            dir.join("config"),
            format!(
                "poll_method\t\tepoll\nsip_listen\t\t127.0.0.1:{port}\n\
                 audio_player\t\taufile,{heard}\naudio_source\t\taufile,{wav}\naudio_alert\t\taufile,{heard}\n\
                 module_path\t\t/usr/lib/baresip/modules\nmodule\t\t\tg711.so\nmodule\t\t\topus.so\n\
                 module\t\t\taufile.so\nmodule\t\t\tsrtp.so\nmodule_app\t\taccount.so\nmodule_app\t\tmenu.so\n",
                heard = heard.display(),
                wav = wav.display()
            ),
        )
        .unwrap();
        std::fs::write(
            dir.join("accounts"),
            format!(
                "<sip:{number}@{}>;regint=60;mediaenc=srtp-mand;answermode=auto;audio_codecs={codecs}\n",
                net.domain()
            ),
        )
        .unwrap();
        let registered = net.metrics.registrations.get();
        let log = std::fs::File::create(dir.join("log.txt")).unwrap();
        let process = Baresip(
            Command::new(baresip)
                .args(["-n", "127.0.0.1", "-s", "-f"])
                .arg(&dir)
                .args(["-t", "20"])
                .args(extra)
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .expect("baresip starts"),
        );
        let peer = Peer {
            dir,
            _process: process,
        };
        for _ in 0..200 {
            if net.metrics.registrations.get() > registered {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(
            net.metrics.registrations.get() > registered,
            "baresip did not register:\n{}",
            peer.log()
        );
        peer
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("log.txt")).unwrap_or_default()
    }

    /// baresip's log shows it took our SRTP: media flowed in, SDES was on, nothing failed to
    /// decrypt. (baresip 1.0's aufile module cannot record, so its log is the evidence.)
    fn assert_took_our_srtp(&self) {
        let log = self.log();
        assert!(log.contains("Call established"), "no call:\n{log}");
        assert!(log.contains("a=crypto:"), "no SDES at baresip:\n{log}");
        assert!(
            log.contains("incoming rtp for 'audio' established"),
            "{log}"
        );
        assert!(log.contains("SRTP is Enabled"), "{log}");
        let lower = log.to_ascii_lowercase();
        assert!(
            !lower.contains("unprotect") && !lower.contains("authentication fail"),
            "baresip failed to decrypt our SRTP:\n{log}"
        );
        // We offered rtcp-mux; baresip declined, so our RTCP went to its RTCP port.
        assert!(
            !log.contains("drop incoming RTCP packet on RTP port"),
            "{log}"
        );
    }
}

/// We decrypted baresip's SRTP and decoded the tone: packets authenticated, none refused, loud.
fn assert_heard_the_tone(report: &chaincall_phone::CallReport, log: &str) {
    assert!(report.stats.rtp_received >= 40, "{:?}\n{log}", report.stats);
    assert_eq!(report.stats.rtp_rejected, 0, "{:?}", report.stats);
    let got = rms(&report.recorded);
    assert!(got > 3000.0, "the tone should be loud, rms {got}");
    assert!(report.stats.rtp_sent >= 70);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaincall_phone_calls_baresip_with_sdes_srtp() {
    let Some(baresip) = chaincall_testkit::peer("baresip") else {
        return;
    };
    let mut net = Net::start().await;
    let alice_key = IdentityKey::generate();
    net.add(ALICE, &alice_key, true).await;
    // bob: baresip, G.711 µ-law only.
    let bob = Peer::start(&net, &baresip, BOB, "PCMU", &[]).await;

    // alice: the chaincall phone over TLS-PSK, SDES for a standard callee.
    let (alice, mut events) = net.phone(ALICE, alice_key, KeyMode::Sdes, 1500).await;
    alice.register(600).await.unwrap();
    let call = alice.call(&PhoneNumber::parse(BOB).unwrap()).await.unwrap();
    let (mode, verified_peer) = call_up(&mut events).await;
    assert_eq!(mode, KeyMode::Sdes);
    assert!(
        verified_peer.is_none(),
        "SDES keys are not bound to an on-chain identity"
    );
    tokio::time::sleep(Duration::from_millis(1800)).await;
    alice.hangup(&call).await.unwrap();
    let report = call_ended(&mut events).await;
    assert_eq!(report.codec, chaincall_media::Codec::Pcmu.into());
    assert_heard_the_tone(&report, &bob.log());
    bob.assert_took_our_srtp();
    alice.shutdown().await;
    net.stop();
}

/// alice: the chaincall phone with its default codecs (Opus first), SDES, registered; `adjust`
/// changes its configuration first.
async fn opus_alice(net: &Net, adjust: impl FnOnce(&mut PhoneConfig)) -> (Phone, PhoneEvents) {
    let key = IdentityKey::generate();
    net.add(ALICE, &key, true).await;
    let (alice, events) = net
        .phone_with(ALICE, key, KeyMode::Sdes, 1500, |c| {
            c.codecs = DEFAULT_CODECS.to_vec();
            adjust(c);
        })
        .await;
    alice.register(600).await.unwrap();
    (alice, events)
}

/// Lets the call run while both tones play, hangs up and checks the Opus call on both sides: our
/// report says Opus and decoded baresip's tone, baresip's log names Opus as its encoder and
/// decoder, and it took our SRTP.
async fn talk_opus_and_hang_up(alice: &Phone, events: &mut PhoneEvents, call: &str, bob: &Peer) {
    tokio::time::sleep(Duration::from_millis(1800)).await;
    alice.hangup(call).await.unwrap();
    let report = call_ended(events).await;
    let log = bob.log();
    assert!(report.codec.is_opus(), "{:?}", report.codec);
    assert!(report.jitter.decoded >= 40, "{:?}", report.jitter);
    assert_heard_the_tone(&report, &log);
    for way in ["encoder", "decoder"] {
        assert!(
            log.contains(&format!("audio: Set audio {way}: opus 48000Hz")),
            "baresip's {way} is not Opus:\n{log}"
        );
    }
    bob.assert_took_our_srtp();
}

/// The chaincall phone calls baresip offering Opus first: both talk Opus over SDES-SRTP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaincall_phone_calls_baresip_with_opus() {
    let Some(baresip) = chaincall_testkit::peer("baresip") else {
        return;
    };
    let mut net = Net::start().await;
    let bob = Peer::start(&net, &baresip, BOB, "opus/48000/2,PCMU", &[]).await;
    let (alice, mut events) = opus_alice(&net, |_| {}).await;
    let call = alice.call(&PhoneNumber::parse(BOB).unwrap()).await.unwrap();
    assert_eq!(call_up(&mut events).await, (KeyMode::Sdes, None));
    talk_opus_and_hang_up(&alice, &mut events, &call, &bob).await;
    alice.shutdown().await;
    net.stop();
}

/// baresip calls the chaincall phone offering Opus (the phone answers an SDES caller, unverified,
/// under `accept_unverified = always`): both talk Opus over SDES-SRTP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn baresip_calls_the_chaincall_phone_with_opus() {
    let Some(baresip) = chaincall_testkit::peer("baresip") else {
        return;
    };
    let mut net = Net::start().await;
    let (alice, mut events) = opus_alice(&net, |c| {
        c.accept_unverified = Some(chaincall_phone::AcceptUnverified::Always);
    })
    .await;
    let dial = format!("/dial sip:{ALICE}@{}", net.domain());
    let bob = Peer::start(&net, &baresip, BOB, "opus/48000/2,PCMU", &["-e", &dial]).await;
    let call = match wait_for(&mut events, |e| matches!(e, PhoneEvent::CallUp { .. })).await {
        PhoneEvent::CallUp {
            call:
                KeyedCall {
                    call_id,
                    mode,
                    verified_peer,
                    caller,
                    ..
                },
            ..
        } => {
            assert_eq!((mode, verified_peer), (KeyMode::Sdes, None));
            assert!(
                caller.is_some_and(|c| c.uri.contains(BOB)),
                "the caller is baresip"
            );
            call_id
        }
        other => unreachable!("{other:?}"),
    };
    talk_opus_and_hang_up(&alice, &mut events, &call, &bob).await;
    alice.shutdown().await;
    net.stop();
}
