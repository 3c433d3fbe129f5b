//! Real peers: sipp (Debian `sip-tester`) against an in-process sipd on 127.0.0.1.
//! Skips without sipp unless CHAINCALL_REQUIRE_PEERS=1 (then a missing sipp fails).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use chaincall_sipd::Listen;
use common::*;

fn scenario(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/scenarios")
        .join(name)
}

/// Runs sipp to completion (bounded by `-timeout`), returning (exit code, stderr+stdout tail).
async fn run_sipp(sipp: &Path, args: &[String], dir: &Path) -> (i32, String) {
    let sipp = sipp.to_path_buf();
    let args = args.to_vec();
    let dir = dir.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let out = Command::new(&sipp)
            .args(&args)
            .current_dir(&dir)
            .stdin(Stdio::null())
            .output()
            .expect("sipp starts");
        let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&out.stderr));
        let tail: String = text
            .chars()
            .rev()
            .take(3000)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        (out.status.code().unwrap_or(-1), tail)
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sipp_registers_with_digest_auth() {
    let Some(sipp) = chaincall_testkit::peer("sipp") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let url = subscriber_db(dir.path(), &[("alice", "wonderland")]).await;
    let mut cfg = base_config();
    cfg.listen = vec![Listen::udp(([127, 0, 0, 1], 0).into())];
    cfg.auth.mode = chaincall_sipd::AuthMode::Digest;
    cfg.auth.database = url;
    // sipp 3.6 answers MD5 challenges only and merges repeated WWW-Authenticate lines: with the
    // default algorithms (SHA-256, MD5) it is listed as an MD5-only agent (its scenario sends
    // `User-Agent: sipp`), as an operator would list such a client.
    cfg.auth.md5_only_user_agents = vec!["sipp".into()];
    let s = start(cfg).await;
    let port = chaincall_testkit::free_udp_port();
    let args: Vec<String> = [
        "-sf",
        scenario("register_auth.xml").to_str().unwrap(),
        &s.udp.to_string(),
        "-i",
        "127.0.0.1",
        "-p",
        &port.to_string(),
        "-s",
        "alice",
        "-au",
        "alice",
        "-ap",
        "wonderland",
        "-m",
        "20",
        "-r",
        "20",
        "-l",
        "5",
        "-nostdin",
        "-timeout",
        "30s",
        "-timeout_error",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let (code, out) = run_sipp(&sipp, &args, dir.path()).await;
    assert_eq!(code, 0, "sipp registration failed:\n{out}");
    assert_eq!(s.metrics.auth_failures.get(), 0);
    assert!(s.metrics.registrations.get() >= 1);
    // With the wrong password every registration fails (sipp exits non-zero).
    let args: Vec<String> = args
        .iter()
        .map(|a| {
            if a == "wonderland" {
                "looking-glass".to_string()
            } else {
                a.clone()
            }
        })
        .map(|a| if a == "20" { "3".to_string() } else { a })
        .collect();
    let (code, _) = run_sipp(&sipp, &args, dir.path()).await;
    assert_ne!(code, 0, "a wrong password must not register");
    assert!(s.metrics.auth_failures.get() >= 3);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sipp_calls_through_sipd_all_succeed() {
    let Some(sipp) = chaincall_testkit::peer("sipp") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let uas_port = chaincall_testkit::free_udp_port();
    let uac_port = chaincall_testkit::free_udp_port();
    let mut cfg = base_config();
    cfg.listen = vec![Listen::udp(([127, 0, 0, 1], 0).into())];
    cfg.static_route = Some(([127, 0, 0, 1], uas_port).into());
    let s = start(cfg).await;
    // The callee: sipp's built-in uas, killed when the caller is done.
    let mut uas = Command::new(&sipp)
        .args([
            "-sn",
            "uas",
            "-i",
            "127.0.0.1",
            "-p",
            &uas_port.to_string(),
            "-nostdin",
            "-timeout",
            "60s",
        ])
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("sipp uas starts");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let calls = 200;
    let args: Vec<String> = [
        "-sn",
        "uac",
        &s.udp.to_string(),
        "-i",
        "127.0.0.1",
        "-p",
        &uac_port.to_string(),
        "-m",
        &calls.to_string(),
        "-r",
        "100",
        "-l",
        "50",
        "-d",
        "0",
        "-nostdin",
        "-timeout",
        "40s",
        "-timeout_error",
        "-trace_stat",
        "-stf",
        "uac.csv",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let (code, out) = run_sipp(&sipp, &args, dir.path()).await;
    let _ = uas.kill();
    let _ = uas.wait();
    let stats = std::fs::read_to_string(dir.path().join("uac.csv")).unwrap_or_default();
    assert_eq!(code, 0, "sipp uac reported failed calls:\n{out}\n{stats}");
    // Columns of the last line: find SuccessfulCall(C) and FailedCall(C).
    let header: Vec<&str> = stats.lines().next().unwrap_or("").split(';').collect();
    let last: Vec<&str> = stats.lines().last().unwrap_or("").split(';').collect();
    let col = |name: &str| {
        header
            .iter()
            .position(|h| *h == name)
            .and_then(|i| last.get(i))
            .and_then(|v| v.parse::<u64>().ok())
    };
    assert_eq!(col("SuccessfulCall(C)"), Some(calls), "{stats}");
    assert_eq!(col("FailedCall(C)"), Some(0));
    s.stop().await;
}
