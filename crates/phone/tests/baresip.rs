//! A standard phone as the peer: chaincall's phone (signalling over TLS-PSK to sipd) calls a real
//! baresip 1.0 (Debian `baresip-core`, registered to the same sipd over UDP) with SDES-SRTP
//! (RFC 4568). Each side must decrypt the other's SRTP, and the phone must report the call as
//! encrypted but *not* verified on chain. Skips without baresip unless CHAINCALL_REQUIRE_PEERS=1.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use chaincall_identity::{IdentityKey, PhoneNumber};
use chaincall_phone::{KeyMode, PhoneEvent};
use common::*;

const ALICE: &str = "+15550100001";
const BOB: &str = "+15550100002";

fn tone(path: &Path) {
    let samples: Vec<i16> = (0..16_000)
        .map(|i| (8000.0 * (i as f64 * 440.0 * 2.0 * std::f64::consts::PI / 8000.0).sin()) as i16)
        .collect();
    chaincall_media::wav::write_file(path, &samples).unwrap();
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaincall_phone_calls_baresip_with_sdes_srtp() {
    let Some(baresip) = chaincall_testkit::peer("baresip") else {
        return;
    };
    let mut net = Net::start().await;
    let alice_key = IdentityKey::generate();
    net.add(ALICE, &alice_key, true).await;
    let domain = net.domain();
    let metrics = net.metrics.clone();

    // bob: baresip, SDES mandatory, auto-answer, sends a 440 Hz tone, records what it hears.
    let bob_dir = net.dir.path().join("bob");
    std::fs::create_dir_all(&bob_dir).unwrap();
    let wav = bob_dir.join("tone.wav");
    let heard = bob_dir.join("heard.wav");
    tone(&wav);
    let bob_port = chaincall_testkit::free_udp_tcp_port();
    std::fs::write(
        bob_dir.join("config"),
        format!(
            "poll_method\t\tepoll\nsip_listen\t\t127.0.0.1:{bob_port}\n\
             audio_player\t\taufile,{heard}\naudio_source\t\taufile,{wav}\naudio_alert\t\taufile,{heard}\n\
             module_path\t\t/usr/lib/baresip/modules\nmodule\t\t\tg711.so\nmodule\t\t\taufile.so\n\
             module\t\t\tsrtp.so\nmodule_app\t\taccount.so\nmodule_app\t\tmenu.so\n",
            heard = heard.display(),
            wav = wav.display()
        ),
    )
    .unwrap();
    std::fs::write(
        bob_dir.join("accounts"),
        format!(
            "<sip:{BOB}@{domain}>;regint=60;mediaenc=srtp-mand;answermode=auto;audio_codecs=PCMU\n"
        ),
    )
    .unwrap();
    let log = std::fs::File::create(bob_dir.join("log.txt")).unwrap();
    let bob = Baresip(
        Command::new(&baresip)
            .args(["-n", "127.0.0.1", "-s", "-f"])
            .arg(&bob_dir)
            .args(["-t", "20"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("baresip starts"),
    );
    // Up to 20 s: baresip starts slowly on a loaded 2-core machine (CI runs builds beside it).
    for _ in 0..200 {
        if metrics.registrations.get() >= 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let bob_log = || std::fs::read_to_string(bob_dir.join("log.txt")).unwrap_or_default();
    assert!(
        metrics.registrations.get() >= 1,
        "baresip did not register:\n{}",
        bob_log()
    );

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
    let PhoneEvent::CallEnded(report) =
        wait_for(&mut events, |e| matches!(e, PhoneEvent::CallEnded(_))).await
    else {
        unreachable!()
    };
    let log = bob_log();
    assert!(
        log.contains("Call established"),
        "baresip did not answer:\n{log}"
    );
    assert!(log.contains("a=crypto:"), "no SDES at baresip:\n{log}");

    // We decrypted baresip's SRTP: packets authenticated and the tone came through.
    assert!(report.stats.rtp_received >= 40, "{:?}\n{log}", report.stats);
    assert_eq!(report.stats.rtp_rejected, 0, "{:?}", report.stats);
    let got = rms(&report.recorded);
    assert!(got > 3000.0, "the tone should be loud, rms {got}");
    assert!(report.stats.rtp_sent >= 70);

    // baresip took our SRTP: it saw the media flow and reported no SRTP failure. (baresip 1.0's
    // aufile module cannot record, so its log is the evidence.)
    drop(bob);
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
    // We offered rtcp-mux; baresip declined, so our RTCP went to its RTCP port, not its RTP port.
    assert!(
        !log.contains("drop incoming RTCP packet on RTP port"),
        "{log}"
    );

    alice.shutdown().await;
    net.stop();
}
