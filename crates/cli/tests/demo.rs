//! `chaincall demo`, the README's first command: the real binary builds the whole network on
//! 127.0.0.1 and places an end-to-end encrypted call; these tests check what it reports and what it
//! writes, on the embedded chain and against anvil.

use std::process::{Command, Output};

use base64::Engine as _;

fn chaincall(args: &[&str]) -> Output {
    chaincall_testkit::run_quiet(env!("CARGO_BIN_EXE_chaincall"), args)
}

fn report(out: &Output) -> serde_json::Value {
    chaincall_testkit::assert_success(out, "demo");
    serde_json::from_slice(&out.stdout).expect("one JSON object on stdout")
}

/// What every passing demo must show, whatever the chain and key mode.
fn assert_call(r: &serde_json::Value, mode: &str) {
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(r["audio_match"], true, "{r}");
    assert_eq!(r["key_mode"], mode);
    assert_eq!(r["key_retrieval_verified"], true);
    for check in r["checks"].as_array().unwrap() {
        assert_eq!(check["ok"], true, "{check}");
    }
    assert!(r["checks"].as_array().unwrap().len() >= 8);
    // 1 s of 20 ms frames each way, all received, none rejected.
    assert!(r["srtp_packets_received"].as_u64().unwrap() >= 100, "{r}");
    assert_eq!(r["srtp_packets_rejected"], 0);
    assert!(r["srtcp_packets_received"].as_u64().unwrap() > 0);
    assert!(r["key_retrieval_ms"].as_f64().unwrap() > 0.0);
    assert!(r["call_setup_ms"].as_f64().unwrap() > 0.0);
    assert!(
        r["proof_bytes"].as_u64().unwrap() > 500,
        "a real proof: {r}"
    );
    assert_eq!(r["alice"]["verified_peer"], "+15550100002");
    assert_eq!(r["bob"]["verified_peer"], "+15550100001");
}

#[test]
fn demo_places_a_verified_encrypted_call_and_writes_keylog_and_recordings() {
    let dir = tempfile::tempdir().unwrap();
    let keylog = dir.path().join("srtp.keylog");
    let out_dir = dir.path().join("out");
    let out = chaincall(&[
        "demo",
        "--json",
        "--seconds",
        "1",
        "--keylog",
        keylog.to_str().unwrap(),
        "--out",
        out_dir.to_str().unwrap(),
    ]);
    let r = report(&out);
    assert_call(&r, "mikey-pke");
    assert_eq!(r["chain"], "embedded");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("warning: writing SRTP master keys"),
        "the key log must come with a warning"
    );

    // One line per SRTP stream: alice's and bob's, each with its real SSRC.
    let text = std::fs::read_to_string(&keylog).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    let mut ssrcs = Vec::new();
    for line in &lines {
        let fields: Vec<&str> = line.split(' ').collect();
        assert_eq!(fields.len(), 3, "{line}");
        let ssrc = fields[0].strip_prefix("ssrc=").expect(line);
        assert_eq!(ssrc.len(), 8);
        assert!(u32::from_str_radix(ssrc, 16).unwrap() != 0, "{line}");
        assert_eq!(fields[1], "profile=AES_CM_128_HMAC_SHA1_80");
        let inline = fields[2].strip_prefix("inline=").expect(line);
        let raw = base64::engine::general_purpose::STANDARD
            .decode(inline)
            .unwrap();
        assert_eq!(raw.len(), 30, "16-byte key + 14-byte salt");
        ssrcs.push(ssrc.to_owned());
    }
    assert_ne!(ssrcs[0], ssrcs[1], "two streams, two SSRCs: {text}");
    assert_ne!(
        lines[0][14..],
        lines[1][14..],
        "each direction has its own key"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&keylog).unwrap().permissions().mode();
        assert_eq!(
            mode & 0o077,
            0,
            "the key log must not be readable by others"
        );
    }

    // Recordings: bob recorded what alice sent, through the call's codec (Opus by default):
    // exactly what a clean loopback of the same audio through that codec records.
    assert_eq!(r["codec"], "opus", "{r}");
    let sent = chaincall_media::wav::read_file(out_dir.join("alice-sent.wav")).unwrap();
    let got = chaincall_media::wav::read_file(out_dir.join("bob-received.wav")).unwrap();
    assert_eq!(sent.len(), 8000);
    assert_eq!(
        got,
        through_codec(chaincall_media::AudioCodec::OPUS, &sent),
        "bob's recording is alice's audio through Opus"
    );
}

/// What a peer records of `audio` sent through `codec` over a clean network: two media sessions
/// in simulated time, the sender's packets handed straight to the receiver.
fn through_codec(codec: chaincall_media::AudioCodec, audio: &[i16]) -> Vec<i16> {
    use chaincall_media::{MediaChannel, MediaConfig, MediaOptions, MediaOutput, MediaSession};
    use chaincall_srtp::{Profile, SrtpConfig, SrtpSession};
    let srtp = || {
        SrtpSession::from_key_and_salt(SrtpConfig::new(Profile::AesCm128HmacSha1_80), &[7; 30])
            .unwrap()
    };
    let options = MediaOptions {
        audio_codec: Some(codec),
        ..MediaOptions::default()
    };
    let config = |ssrc| MediaConfig::new(chaincall_media::Codec::Pcmu, ssrc, "test");
    let mut now = std::time::Instant::now();
    let session = |ssrc, audio: Vec<i16>| {
        MediaSession::with_options(config(ssrc), options.clone(), srtp(), srtp(), audio, now)
    };
    let (mut sender, mut receiver) = (session(1, audio.to_vec()), session(2, Vec::new()));
    while !sender.source_done() {
        while let MediaOutput::Transmit(p) = sender.poll_output(now) {
            if p.destination == MediaChannel::Rtp {
                receiver.handle_input(&p.contents, now).unwrap();
            }
        }
        now += std::time::Duration::from_millis(20);
    }
    receiver.recorded_audio()
}

#[test]
fn demo_with_dh_sign_writes_tls_secrets_to_sslkeylogfile() {
    let dir = tempfile::tempdir().unwrap();
    let tls_keys = dir.path().join("tls.keys");
    let out = Command::new(env!("CARGO_BIN_EXE_chaincall"))
        .args(["demo", "--json", "--seconds", "1", "--mode", "dh-sign"])
        .env("RUST_LOG", "warn")
        .env("SSLKEYLOGFILE", &tls_keys)
        .output()
        .unwrap();
    assert_call(&report(&out), "mikey-dh-sign");
    // NSS key log format, TLS 1.3: each phone and sipd log both connections' secrets.
    let text = std::fs::read_to_string(&tls_keys).unwrap();
    for label in [
        "CLIENT_HANDSHAKE_TRAFFIC_SECRET ",
        "SERVER_HANDSHAKE_TRAFFIC_SECRET ",
        "CLIENT_TRAFFIC_SECRET_0 ",
        "SERVER_TRAFFIC_SECRET_0 ",
    ] {
        let n = text.lines().filter(|l| l.starts_with(label)).count();
        assert!(n >= 2, "{label}: {n} lines in\n{text}");
    }
    for line in text.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        assert_eq!(f.len(), 3, "{line}");
        assert_eq!(f[1].len(), 64, "client random: {line}");
    }
}

#[test]
fn demo_against_anvil() {
    let Some(anvil) = chaincall_testkit::peer("anvil") else {
        return;
    };
    let node =
        chaincall_chain::AnvilProcess::spawn(&anvil, chaincall_testkit::free_tcp_port(), &[])
            .expect("anvil starts");
    let r = report(&chaincall(&[
        "demo",
        "--json",
        "--seconds",
        "1",
        "--rpc",
        &node.url(),
    ]));
    assert_call(&r, "mikey-pke");
    assert_eq!(r["chain"], "rpc");
}

#[test]
fn demo_with_a_relative_out_folder_runs_twice_in_it_and_refuses_a_foreign_one() {
    let dir = tempfile::tempdir().unwrap();
    let demo = |out: &str| {
        Command::new(env!("CARGO_BIN_EXE_chaincall"))
            .current_dir(dir.path())
            .args(["demo", "--json", "--seconds", "1", "--out", out])
            .env("RUST_LOG", "warn")
            .output()
            .unwrap()
    };
    // A relative path, as a user types it; then the same folder again: a fresh demo each time.
    for _ in 0..2 {
        assert_call(&report(&demo("demo-out")), "mikey-pke");
        let sent = dir.path().join("demo-out/alice-sent.wav");
        assert_eq!(chaincall_media::wav::read_file(sent).unwrap().len(), 8000);
    }
    // A folder holding something no demo wrote is refused and left as it was.
    let mine = dir.path().join("mine");
    std::fs::create_dir(&mine).unwrap();
    std::fs::write(mine.join("thesis.txt"), "not a demo's").unwrap();
    let out = demo("mine");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("thesis.txt, which no demo wrote"), "{err}");
    let left: Vec<_> = std::fs::read_dir(&mine).unwrap().collect();
    assert_eq!(left.len(), 1);
}

#[test]
fn demo_refuses_sdes_with_a_reason_and_names_the_paper() {
    let out = chaincall(&["demo", "--mode", "sdes"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--mode sdes is not a demo mode"), "{err}");
    assert!(err.contains("use pke (default) or dh-sign"), "{err}");
    // The human report names the paper behind Table I and says the chain is not a testnet.
    let out = chaincall(&["demo", "--seconds", "1"]);
    chaincall_testkit::assert_success(&out, "demo");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("Table I of the paper chaincall implements (seed 000"),
        "{text}"
    );
    assert!(text.contains("mines every transaction at once"), "{text}");
    assert!(text.contains("not a testnet"), "{text}");
}

/// `--mode zrtp`: the keys come from a ZRTP exchange in the media path bound to both on-chain
/// keys, and the report says where the set-up time went in ZRTP's terms, not MIKEY's.
#[test]
fn demo_with_zrtp_binds_the_exchange_to_both_on_chain_keys_and_times_it() {
    let out = chaincall(&["demo", "--json", "--seconds", "1", "--mode", "zrtp"]);
    let r = report(&out);
    assert_call(&r, "zrtp");
    let checks = r["checks"].as_array().unwrap();
    assert!(
        checks.iter().any(|c| c["check"]
            .as_str()
            .unwrap_or_default()
            .contains("ZRTP exchange was bound to both on-chain keys")),
        "{r}"
    );
    let exchange = r["setup_breakdown_ms"]["zrtp_exchange"].as_f64().unwrap();
    assert!(exchange > 0.0, "{r}");
    let out = chaincall(&["demo", "--seconds", "1", "--mode", "zrtp"]);
    chaincall_testkit::assert_success(&out, "demo");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("then the ZRTP exchange in the media path"),
        "{text}"
    );
    assert!(!text.contains("alice's MIKEY"), "{text}");
}
