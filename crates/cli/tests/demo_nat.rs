//! `chaincall demo --nat` (issue 17's "Done when"), the real binary as root: alice and bob each
//! behind their own NAT router in network namespaces, the media through rtpengine. For MIKEY-PKE
//! and DH-SIGN the demo passes its checks, its JSON names the relay and its packets, the capture
//! it writes (taken at the relay's public interface) authenticates packet by packet with libsrtp
//! under the keys of its own key log and under no other run's, and nothing is left behind: no
//! namespace of the demo's process, no rtpengine of it, also after a Ctrl-C.
//!
//! Skips without root or rtpengine unless `CHAINCALL_REQUIRE_PEERS=1`.

use std::path::Path;
use std::process::{Command, Stdio};

use chaincall_libsrtp_ffi::LibSrtp;
use chaincall_relay::capture::{self, KeyLogEntry, SrtpCheck, Unprotect};

/// An environment variable each demo here runs with, tagged with its run: rtpengine inherits it, so
/// this test finds its own demos' rtpengines and not those of other tests running meanwhile
/// (`bench setup --nat` starts the same one).
const TAG: &str = "CHAINCALL_DEMO_NAT_TEST";

/// One demo run's report, capture, key log and process id.
struct Run {
    report: serde_json::Value,
    pcap: Vec<u8>,
    keys: Vec<KeyLogEntry>,
    pid: u32,
}

fn demo_nat(dir: &Path, mode: &str) -> Run {
    let (pcap, keylog) = (
        dir.join(format!("{mode}.pcap")),
        dir.join(format!("{mode}.keylog")),
    );
    let child = Command::new(env!("CARGO_BIN_EXE_chaincall"))
        .env(TAG, tag(mode))
        .args([
            "demo",
            "--nat",
            "--json",
            "--seconds",
            "1",
            "--mode",
            mode,
            "--pcap",
        ])
        .arg(&pcap)
        .arg("--keylog")
        .arg(&keylog)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    chaincall_testkit::assert_success(&out, "demo --nat");
    let keys = KeyLogEntry::parse_log(&std::fs::read_to_string(&keylog).unwrap()).unwrap();
    Run {
        report: serde_json::from_slice(&out.stdout).expect("one JSON object on stdout"),
        pcap: std::fs::read(&pcap).unwrap(),
        keys,
        pid,
    }
}

/// The capture of `pcap` checked with libsrtp under `keys`.
fn check_with_libsrtp(lib: &LibSrtp, pcap: &[u8], keys: &[KeyLogEntry]) -> SrtpCheck {
    let datagrams = capture::udp_datagrams(pcap).unwrap();
    capture::check_srtp(
        &datagrams,
        chaincall_devnet::nat::RELAY_ADDR,
        chaincall_devnet::nat::MEDIA_PORTS.0..=chaincall_devnet::nat::MEDIA_PORTS.1,
        keys,
        &[],
        |key| -> Result<Unprotect<'_>, String> {
            let mut session = lib
                .session(&key.profile, &key.key_and_salt, false, 1024)
                .map_err(|e| e.to_string())?;
            Ok(Box::new(move |packet: &mut Vec<u8>, rtcp: bool| {
                let len = packet.len();
                if rtcp {
                    session.unprotect_rtcp(packet, len).is_ok()
                } else {
                    session.unprotect(packet, len).is_ok()
                }
            }))
        },
    )
    .unwrap()
}

/// The value of [`TAG`] for the run `name`.
fn tag(name: &str) -> String {
    format!("{}-{name}", std::process::id())
}

/// Whether an rtpengine of the run `name` is running.
fn rtpengine_running(name: &str) -> bool {
    let env = format!("{TAG}={}\0", tag(name));
    std::fs::read_dir("/proc").unwrap().flatten().any(|entry| {
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let environ = std::fs::read(entry.path().join("environ")).unwrap_or_default();
        String::from_utf8_lossy(&cmdline).contains("rtpengine")
            && String::from_utf8_lossy(&environ).contains(&env)
    })
}

/// Nothing of the demo process `pid` (run `name`) is left: no namespace named after it, no
/// rtpengine of it.
fn assert_nothing_left(pid: u32, name: &str) {
    let list = chaincall_testkit::run_ok(Command::new("ip").args(["netns", "list"]), "ip netns");
    let list = String::from_utf8_lossy(&list);
    let prefix = format!("ccnet-{pid}-");
    assert!(
        !list.lines().any(|l| l.starts_with(&prefix)),
        "namespaces left behind: {list}"
    );
    assert!(
        !rtpengine_running(name),
        "the demo's rtpengine is still running"
    );
}

#[test]
fn demo_nat_relays_only_srtp_that_decrypts_with_its_keylog_and_leaves_nothing_behind_even_on_ctrl_c()
 {
    if !chaincall_testkit::root("root (demo --nat builds network namespaces)") {
        return;
    }
    let (Some(_), Some(python)) = (
        chaincall_testkit::peer("rtpengine"),
        chaincall_testkit::python(),
    ) else {
        return;
    };
    let lib = LibSrtp::from_env_or_python(Some(&python)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let runs: Vec<Run> = ["pke", "dh-sign"]
        .into_iter()
        .map(|mode| demo_nat(dir.path(), mode))
        .collect();
    for (run, mode) in runs.iter().zip(["mikey-pke", "mikey-dh-sign"]) {
        let r = &run.report;
        assert_eq!(r["ok"], true, "{r}");
        assert_eq!(r["key_mode"], mode, "{r}");
        for check in r["checks"].as_array().unwrap() {
            assert_eq!(check["ok"], true, "{check}");
        }
        assert_eq!(r["relay"], "rtpengine", "{r}");
        assert!(r["relay_packets"].as_u64().unwrap() > 0, "{r}");
        assert_eq!(r["relay_capture"]["plaintext"], 0, "{r}");
        assert_eq!(run.keys.len(), 2, "alice logs both streams");

        // Every RTP and RTCP packet at the relay authenticates with libsrtp under the keylog keys.
        let check = check_with_libsrtp(&lib, &run.pcap, &run.keys);
        assert!(check.rtp >= 100, "both phones' media, each way: {check:?}");
        assert!(check.only_srtp(), "{check:?}");
        assert_eq!(check.authenticated, check.rtp + check.rtcp);
        assert_nothing_left(run.pid, mode);
    }

    // The other run's keys, given this run's SSRCs: not one packet authenticates.
    let (a, b) = (&runs[0], &runs[1]);
    let wrong: Vec<KeyLogEntry> = a
        .keys
        .iter()
        .zip(&b.keys)
        .map(|(ours, theirs)| KeyLogEntry {
            ssrc: ours.ssrc,
            ..theirs.clone()
        })
        .collect();
    let check = check_with_libsrtp(&lib, &a.pcap, &wrong);
    assert!(check.rtp >= 100, "{check:?}");
    assert_eq!(check.authenticated, 0, "{check:?}");
    assert_eq!(check.failed, check.rtp + check.rtcp, "{check:?}");

    // Ctrl-C once rtpengine runs: the demo says so and leaves nothing behind either.
    interrupted_leaves_nothing_behind();
}

fn interrupted_leaves_nothing_behind() {
    let child = Command::new(env!("CARGO_BIN_EXE_chaincall"))
        .env(TAG, tag("interrupted"))
        .args(["demo", "--nat", "--seconds", "30"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    // A bound on a broken demo, not a timing assertion.
    for _ in 0..600 {
        if rtpengine_running("interrupted") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(
        rtpengine_running("interrupted"),
        "the demo started no rtpengine"
    );
    let sent = chaincall_testkit::run_quiet("kill", &["-INT", &pid.to_string()]);
    assert!(sent.status.success());
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("error: interrupted: rtpengine stopped"),
        "{err}"
    );
    assert_nothing_left(pid, "interrupted");
}

#[test]
fn demo_nat_without_root_says_it_needs_root_and_how_to_run_it() {
    let demo = env!("CARGO_BIN_EXE_chaincall");
    let args = ["demo", "--nat", "--seconds", "1"];
    let root = chaincall_testkit::run_quiet("id", &["-u"])
        .stdout
        .starts_with(b"0\n");
    // As root, the demo runs as nobody (setpriv drops every privilege).
    let out = if root {
        let Some(setpriv) = chaincall_testkit::peer("setpriv") else {
            return;
        };
        let mut all = vec!["--reuid=65534", "--regid=65534", "--clear-groups", demo];
        all.extend(args);
        chaincall_testkit::run_quiet(setpriv, &all)
    } else {
        chaincall_testkit::run_quiet(demo, &args)
    };
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--nat needs root") && err.contains("sudo chaincall demo --nat"),
        "{err}"
    );
}
