//! `chaincall bench … --json` (a build with `--features bench`): what a script reading the JSON
//! relies on. The benches live in crates/bench; these run them through the real binary.

use std::process::Command;

/// `chaincall` with `args` (RUST_LOG=warn), which must succeed and print JSON on stdout.
fn bench_json(args: &[&str], envs: &[(&str, &std::ffi::OsStr)]) -> serde_json::Value {
    let out = chaincall_testkit::run_ok(
        Command::new(env!("CARGO_BIN_EXE_chaincall"))
            .args(args)
            .env("RUST_LOG", "warn")
            .envs(envs.iter().copied()),
        "chaincall bench",
    );
    serde_json::from_slice(&out).expect("JSON on stdout")
}

/// `chaincall bench srtp --json`: one object per profile with our and libsrtp's packets/s.
#[test]
fn bench_srtp_json_lists_every_profile_with_libsrtp() {
    let Some(python) = chaincall_testkit::python() else {
        return;
    };
    let list = bench_json(
        &[
            "bench",
            "srtp",
            "--json",
            "--packets",
            "3000",
            "--rounds",
            "1",
        ],
        &[("CHAINCALL_PYTHON", python.as_os_str())],
    );
    let list = list.as_array().expect("a JSON list");
    let names: Vec<&str> = list
        .iter()
        .map(|o| o["profile"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "AES_CM_128_HMAC_SHA1_80",
            "AES_CM_128_HMAC_SHA1_32",
            "AEAD_AES_128_GCM",
            "AEAD_AES_256_GCM"
        ]
    );
    for o in list {
        for field in [
            "ours_protect_pps",
            "ours_unprotect_pps",
            "libsrtp_protect_pps",
            "libsrtp_unprotect_pps",
        ] {
            assert!(o[field].as_f64().is_some_and(|v| v > 0.0), "{field} in {o}");
        }
    }
}

/// sipp drives calls and digest REGISTERs through sipd (the binary's own `sipd serve`) and Kamailio
/// in one run, and the JSON reports both servers.
#[test]
fn bench_sipd_json_reports_sipd_and_kamailio() {
    let (Some(sipp), Some(kamailio)) = (
        chaincall_testkit::peer("sipp"),
        chaincall_testkit::peer("kamailio"),
    ) else {
        return;
    };
    // The bench uses UDP ports base .. base+7; an ephemeral port a moment ago free starts a range
    // no other test picks on purpose.
    let base_port = chaincall_testkit::free_udp_port()
        .min(u16::MAX - 8)
        .to_string();
    let v = bench_json(
        &[
            "bench",
            "sipd",
            "--json",
            "--secs",
            "1",
            "--rates",
            "20",
            "--register-rates",
            "20",
            "--max-failures",
            "1",
            "--base-port",
            &base_port,
            "--sipp",
            sipp.to_str().expect("UTF-8 path"),
            "--kamailio",
            kamailio.to_str().expect("UTF-8 path"),
        ],
        &[],
    );
    for kind in ["calls", "registers"] {
        let steps = v[kind]
            .as_array()
            .unwrap_or_else(|| panic!("{kind} in {v}"));
        for server in ["sipd", "kamailio"] {
            let step = steps
                .iter()
                .find(|s| s["server"] == server)
                .unwrap_or_else(|| panic!("no {kind} step of {server} in {v}"));
            assert_eq!(step["planned"], 20, "{step}");
            // Some of the calls or REGISTERs went through this server (whether the step passed
            // the 99.9 % bar depends on the machine's load, not on the bench).
            assert!(step["ok"].as_u64().is_some_and(|ok| ok > 0), "{step}");
        }
    }
    assert!(v["summary"]["sipd"].is_object(), "{v}");
    assert!(v["summary"]["kamailio"].is_object(), "{v}");
}
