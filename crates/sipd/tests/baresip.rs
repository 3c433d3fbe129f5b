//! Real peers: two baresip 1.0 instances (Debian `baresip-core`) register to an in-process sipd at
//! its default digest settings (issue 16 item 5) and complete an SDES-SRTP (RFC 4568,
//! `mediaenc=srtp-mand`) call through it, audio from a WAV file. Skips without baresip unless
//! CHAINCALL_REQUIRE_PEERS=1.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;

/// One second of a 440 Hz tone, 8 kHz mono 16-bit PCM WAV.
fn write_wav(path: &Path) {
    let n = 8000u32;
    let mut d = Vec::with_capacity(44 + 2 * n as usize);
    d.extend_from_slice(b"RIFF");
    d.extend_from_slice(&(36 + 2 * n).to_le_bytes());
    d.extend_from_slice(b"WAVEfmt ");
    d.extend_from_slice(&16u32.to_le_bytes());
    d.extend_from_slice(&1u16.to_le_bytes());
    d.extend_from_slice(&1u16.to_le_bytes());
    d.extend_from_slice(&8000u32.to_le_bytes());
    d.extend_from_slice(&16000u32.to_le_bytes());
    d.extend_from_slice(&2u16.to_le_bytes());
    d.extend_from_slice(&16u16.to_le_bytes());
    d.extend_from_slice(b"data");
    d.extend_from_slice(&(2 * n).to_le_bytes());
    for i in 0..n {
        let v = (8000.0 * (i as f64 * 440.0 * 2.0 * std::f64::consts::PI / 8000.0).sin()) as i16;
        d.extend_from_slice(&v.to_le_bytes());
    }
    std::fs::write(path, d).unwrap();
}

/// baresip's folder for `user` (digest password `password`) on `port`, registering at `sipd`.
fn conf(dir: &Path, user: &str, password: &str, port: u16, sipd: std::net::SocketAddr, wav: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let out = dir.join("out.wav");
    std::fs::write(
        dir.join("config"),
        format!(
            "poll_method\t\tepoll\n\
sip_listen\t\t127.0.0.1:{port}\n\
audio_player\t\taufile,{out}\n\
audio_source\t\taufile,{wav}\n\
audio_alert\t\taufile,{out}\n\
module_path\t\t/usr/lib/baresip/modules\n\
module\t\t\tg711.so\n\
module\t\t\taufile.so\n\
module\t\t\tsrtp.so\n\
module_app\t\taccount.so\n\
module_app\t\tmenu.so\n",
            out = out.display(),
            wav = wav.display()
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("accounts"),
        format!(
            "<sip:{user}@{sipd}>;auth_pass={password};regint=60;mediaenc=srtp-mand;answermode=auto;audio_codecs=PCMU\n"
        ),
    )
    .unwrap();
}

fn spawn(baresip: &Path, dir: &Path, extra: &[&str], log: &str) -> Child {
    let log = std::fs::File::create(dir.join(log)).unwrap();
    Command::new(baresip)
        .arg("-n")
        .arg("127.0.0.1")
        .arg("-s")
        .arg("-f")
        .arg(dir)
        .args(extra)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("baresip starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_baresips_call_with_sdes_srtp_through_sipd() {
    let Some(baresip) = chaincall_testkit::peer("baresip") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    // Digest auth with the default `[auth]` settings (SHA-256 and MD5 offered, baresip listed as
    // MD5-only): REGISTERs get 401 and alice's INVITE 407 (`invite = true`).
    let url = subscriber_db(tmp.path(), &[("alice", "alice-pw"), ("bob", "bob-pw")]).await;
    let mut cfg = base_config();
    cfg.listen = vec![chaincall_sipd::Listen::udp(([127, 0, 0, 1], 0).into())];
    cfg.auth = chaincall_sipd::config::AuthConfig {
        database: url,
        ..Default::default()
    };
    let s = start(cfg).await;
    let wav = tmp.path().join("tone.wav");
    write_wav(&wav);
    let bob_dir = tmp.path().join("bob");
    let alice_dir = tmp.path().join("alice");
    let bob_port = chaincall_testkit::free_udp_tcp_port();
    let alice_port = chaincall_testkit::free_udp_tcp_port();
    conf(&bob_dir, "bob", "bob-pw", bob_port, s.udp, &wav);
    conf(&alice_dir, "alice", "alice-pw", alice_port, s.udp, &wav);
    // Bob runs until alice's call is over (he is killed then); -t only bounds a stuck test.
    let mut bob = spawn(&baresip, &bob_dir, &["-t", "40"], "log.txt");
    // Wait (bounded: 20 s, baresip starts slowly on a loaded 2-core machine) until bob is registered.
    for _ in 0..100 {
        if s.metrics.registrations.get() >= 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        s.metrics.registrations.get() >= 1,
        "bob did not register:\n{}",
        std::fs::read_to_string(bob_dir.join("log.txt")).unwrap_or_default()
    );
    let dial = format!("/dial sip:bob@{}", s.udp);
    let mut alice = spawn(&baresip, &alice_dir, &["-e", &dial, "-t", "8"], "log.txt");
    let wait = |c: &mut Child| {
        for _ in 0..100 {
            if let Ok(Some(_)) = c.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        let _ = c.kill();
        let _ = c.wait();
    };
    tokio::task::block_in_place(|| {
        wait(&mut alice);
        let _ = bob.kill();
        let _ = bob.wait();
    });
    let alice_log = std::fs::read_to_string(alice_dir.join("log.txt")).unwrap_or_default();
    let bob_log = std::fs::read_to_string(bob_dir.join("log.txt")).unwrap_or_default();
    let both = format!("--- alice ---\n{alice_log}\n--- bob ---\n{bob_log}");
    // The offer crossed sipd with SDES keys (RTP/SAVP + a=crypto), and both ends established the call.
    assert!(
        bob_log.contains("RTP/SAVP") && bob_log.contains("a=crypto:"),
        "no SDES offer at bob:\n{both}"
    );
    assert!(
        alice_log.contains("Call established") && bob_log.contains("Call established"),
        "call not established:\n{both}"
    );
    assert!(
        bob_log.contains("Record-Route"),
        "the INVITE went through the proxy:\n{both}"
    );
    // Both registered (each saw its 200 with its binding; the gauge is not read here: alice
    // unregisters as she exits, and the gauge follows at once) and alice's INVITE was
    // authenticated (MD5, the only challenge baresip got).
    for log in [&alice_log, &bob_log] {
        assert!(
            log.contains("200 OK (chaincall-sipd) [1 binding]"),
            "{both}"
        );
    }
    assert!(
        alice_log.contains("Proxy-Authorization: Digest") && !alice_log.contains("SHA-256"),
        "alice answered the INVITE's MD5 challenge:\n{both}"
    );
    assert_eq!(s.metrics.auth_failures.get(), 0, "{both}");
    s.stop().await;
}
