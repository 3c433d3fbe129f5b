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

/// `--location postgres` with sipd: its location in a PostgreSQL the bench starts, read on every
/// call (no static route) and written by every REGISTER. A short run completes and the rows are
/// there: the callee the bench provisioned and the bench user's contact.
#[test]
fn bench_sipd_on_postgres_routes_by_the_database_and_writes_registrations_there() {
    let Some(sipp) = chaincall_testkit::peer("sipp") else {
        return;
    };
    if !chaincall_testkit::postgres::installed() {
        return;
    }
    let base_port = chaincall_testkit::free_udp_port()
        .min(u16::MAX - 8)
        .to_string();
    let v = bench_json(
        &[
            "bench",
            "sipd",
            "--json",
            "--location",
            "postgres",
            "--servers",
            "sipd",
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
        ],
        &[],
    );
    assert_eq!(v["location"], "postgres", "{v}");
    for kind in ["calls", "registers"] {
        let step = v[kind]
            .as_array()
            .and_then(|steps| steps.iter().find(|s| s["server"] == "sipd"))
            .unwrap_or_else(|| panic!("no {kind} step of sipd in {v}"));
        assert_eq!(step["planned"], 20, "{step}");
        // Calls found the callee through the location table, REGISTERs were written to it.
        assert!(step["ok"].as_u64().is_some_and(|ok| ok > 0), "{step}");
        assert!(step["db_cpu_s"].as_f64().is_some(), "{step}");
    }
    assert_eq!(v["sipd_db"]["location_rows"]["service"], 1, "{v}");
    assert_eq!(v["sipd_db"]["location_rows"]["bench"], 1, "{v}");
    assert!(v.get("kamailio_db").is_none(), "{v}");
}

/// `--nodes 2 --location postgres`: two processes of each server share one PostgreSQL location,
/// the load split over them. Calls to the callee provisioned once reach it through either node,
/// and both sipd nodes' REGISTERs land in the one table under their own `node_id`.
#[test]
fn bench_sipd_with_two_nodes_shares_one_postgres_location_between_them() {
    let (Some(sipp), Some(kamailio)) = (
        chaincall_testkit::peer("sipp"),
        chaincall_testkit::peer("kamailio"),
    ) else {
        return;
    };
    if !chaincall_testkit::postgres::installed() {
        return;
    }
    // base .. base+7, then 4 ports for the second node.
    let base_port = chaincall_testkit::free_udp_port()
        .min(u16::MAX - 12)
        .to_string();
    let v = bench_json(
        &[
            "bench",
            "sipd",
            "--json",
            "--nodes",
            "2",
            "--location",
            "postgres",
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
    assert_eq!(v["nodes"], 2, "{v}");
    for kind in ["calls", "registers"] {
        for server in ["sipd", "kamailio"] {
            let step = v[kind]
                .as_array()
                .and_then(|steps| steps.iter().find(|s| s["server"] == server))
                .unwrap_or_else(|| panic!("no {kind} step of {server} in {v}"));
            // 20 in all, split over the two nodes' clients.
            assert_eq!(step["planned"], 20, "{step}");
            assert!(step["ok"].as_u64().is_some_and(|ok| ok > 10), "{step}");
        }
    }
    assert_eq!(v["sipd_db"]["location_rows"]["service"], 1, "{v}");
    assert_eq!(
        v["sipd_db"]["registering_nodes"],
        serde_json::json!(["bench", "bench-2"]),
        "{v}"
    );
}

/// `--nodes` beyond 1 without the shared database is refused, saying why.
#[test]
fn bench_sipd_refuses_nodes_without_a_shared_location() {
    let Some(sipp) = chaincall_testkit::peer("sipp") else {
        return;
    };
    let out = Command::new(env!("CARGO_BIN_EXE_chaincall"))
        .args([
            "bench",
            "sipd",
            "--nodes",
            "2",
            "--servers",
            "sipd",
            "--sipp",
        ])
        .arg(&sipp)
        .output()
        .expect("runs");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--nodes 2 needs --location postgres"), "{err}");
}

/// `chaincall bench setup --nat` (as root): set-up p50/p99 of calls through rtpengine with both
/// phones behind NAT, beside the plain figure; every call passed its media check.
#[test]
fn bench_setup_nat_reports_setup_through_the_relay_beside_the_plain_figure() {
    if !chaincall_testkit::root("root (bench setup --nat builds network namespaces)") {
        return;
    }
    if chaincall_testkit::peer("rtpengine").is_none() {
        return;
    }
    let r = bench_json(&["bench", "setup", "--nat", "--calls", "3", "--json"], &[]);
    assert_eq!(r["failed"], 0, "{r}");
    assert!(r["setup_p50_ms"].as_f64().unwrap() > 0.0, "{r}");
    let nat = &r["nat"];
    assert_eq!(nat["relay"], "rtpengine", "{r}");
    assert_eq!(nat["failed"], 0, "{r}");
    let (p50, p99) = (
        nat["setup_p50_ms"].as_f64().unwrap(),
        nat["setup_p99_ms"].as_f64().unwrap(),
    );
    assert!(p50 > 0.0 && p99 >= p50, "{r}");
}
