//! The packaging in `packaging/` runs what it says: each systemd unit passes `systemd-analyze
//! verify`, and each unit's `ExecStart` and the Dockerfile's `ENTRYPOINT` + `CMD`, run exactly
//! (the real binary standing in for the installed one, from the network folder standing in for
//! `WorkingDirectory`/`WORKDIR`) against a network `chaincall init` wrote, starts and stops on
//! SIGTERM with exit 0; the image's HEALTHCHECK command passes against that sipd. The image
//! itself is not built here (CI has no Docker).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{Service, chaincall};

/// Where the units and the image install the binary.
const INSTALLED: &str = "/usr/local/bin/chaincall";
/// The folder the units and the image run from: the network `chaincall init` wrote.
const NETWORK_DIR: &str = "/var/lib/chaincall";
/// A generous bound on a clean stop: a hang fails instead of blocking the suite.
const STOP_WITHIN: Duration = Duration::from_secs(30);

fn packaging() -> PathBuf {
    chaincall_testkit::workspace_root().join("packaging")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The value of `key=` in a unit file; exactly one such line.
fn unit_value(unit: &str, key: &str) -> String {
    let prefix = format!("{key}=");
    let values: Vec<&str> = unit
        .lines()
        .filter_map(|l| l.trim().strip_prefix(prefix.as_str()))
        .collect();
    assert_eq!(values.len(), 1, "one {key}= line in:\n{unit}");
    values[0].trim().to_owned()
}

/// The JSON array (exec form) of a Dockerfile instruction; exactly one such line.
fn docker_exec_form(dockerfile: &str, instruction: &str) -> Vec<String> {
    let prefix = format!("{instruction} ");
    let values: Vec<&str> = dockerfile
        .lines()
        .filter_map(|l| l.strip_prefix(prefix.as_str()))
        .collect();
    assert_eq!(values.len(), 1, "one {instruction} line");
    serde_json::from_str(values[0].trim())
        .unwrap_or_else(|e| panic!("{instruction} is not in exec form: {e}"))
}

/// The `.service` files under packaging/systemd.
fn units() -> Vec<PathBuf> {
    let mut units: Vec<PathBuf> = std::fs::read_dir(packaging().join("systemd"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "service"))
        .collect();
    units.sort();
    units
}

#[test]
fn systemd_analyze_verifies_the_units() {
    // scripts/test.sh does not install systemd, so this is a skip even under
    // CHAINCALL_REQUIRE_PEERS.
    let Some(tool) = chaincall_testkit::find_executable("systemd-analyze") else {
        eprintln!("SKIPPED: systemd-analyze is not installed (systemd is not a test peer)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let units = units();
    assert_eq!(units.len(), 2, "{units:?}");
    for unit in units {
        // `verify` requires ExecStart's binary to exist: the one under test takes the installed
        // path's place, nothing else changes.
        let text = read(&unit).replace(INSTALLED, env!("CARGO_BIN_EXE_chaincall"));
        let name = unit.file_name().unwrap().to_str().unwrap();
        let copy = dir.path().join(name);
        std::fs::write(&copy, text).unwrap();
        let out = Command::new(&tool)
            .arg("verify")
            .arg(&copy)
            .output()
            .unwrap();
        chaincall_testkit::assert_success(&out, &format!("systemd-analyze verify {name}"));
        // Unknown keys and bad values are warnings with exit 0: none may name this unit.
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains(name), "{name}:\n{stderr}");
    }
}

#[test]
fn each_units_and_the_images_command_starts_and_stops_on_sigterm() {
    let Some(init) = common::init_network() else {
        return;
    };
    let home = init.home.path();
    let net = home.join("net");
    // The README's steps 1 and 2, as it prints them: the wallet server publishes its identity at
    // start, and sipd's is on chain as a real network's is.
    let readme = read(&net.join("README.md"));
    let keystore: Vec<String> = common::readme_commands(&readme)
        .into_iter()
        .filter(|l| l.starts_with("chaincall keystore "))
        .collect();
    assert_eq!(keystore.len(), 2, "deploy and publish-server: {keystore:?}");
    for line in keystore {
        common::ok(
            chaincall()
                .current_dir(&net)
                .args(line.split_whitespace().skip(1)),
        );
    }

    let mut commands = Vec::new();
    for unit in units() {
        let text = read(&unit);
        assert_eq!(unit_value(&text, "WorkingDirectory"), NETWORK_DIR);
        assert_eq!(unit_value(&text, "KillSignal"), "SIGTERM");
        let exec: Vec<String> = unit_value(&text, "ExecStart")
            .split_whitespace()
            .map(str::to_owned)
            .collect();
        assert_eq!(exec[0], INSTALLED, "{}", unit.display());
        commands.push((unit.display().to_string(), exec[1..].to_vec()));
    }
    let dockerfile = read(&packaging().join("Dockerfile"));
    assert!(dockerfile.contains(&format!("\nWORKDIR {NETWORK_DIR}\n")));
    let entrypoint = docker_exec_form(&dockerfile, "ENTRYPOINT");
    assert_eq!(entrypoint, ["chaincall"]);
    commands.push((
        "the Dockerfile's CMD".to_owned(),
        docker_exec_form(&dockerfile, "CMD"),
    ));

    let mut ran = Vec::new();
    for (what, args) in commands {
        let (ready, stopped) = match args.first().map(String::as_str) {
            Some("wallet") => ("listening http://", "wallet stopped"),
            Some("sipd") => ("sipd running", "sipd stopped"),
            other => panic!("{what} runs {other:?}"),
        };
        let mut service = Service::spawn(
            chaincall()
                .env("RUST_LOG", "info")
                .current_dir(&net)
                .args(&args),
        );
        service.wait_for(ready, Duration::from_secs(60));
        if args[0] == "sipd" && what.contains("Dockerfile") {
            healthcheck_passes(&dockerfile, init.metrics_port);
        }
        let lines = service.stop("TERM", STOP_WITHIN);
        assert!(
            lines.iter().any(|l| l.contains(stopped)),
            "{what}: no {stopped:?} in:\n{}",
            lines.join("\n")
        );
        ran.push(args[0].clone());
    }
    assert_eq!(ran, ["sipd", "wallet", "sipd"]);
}

/// Runs the Dockerfile's HEALTHCHECK command against the sipd running on `metrics_port` (the
/// image assumes init's default, 9060) and asserts it reports healthy.
fn healthcheck_passes(dockerfile: &str, metrics_port: u16) {
    let line = dockerfile
        .lines()
        .find(|l| l.trim_start().starts_with("CMD [\"bash\""))
        .expect("a HEALTHCHECK CMD in exec form");
    let argv: Vec<String> = serde_json::from_str(line.trim_start().strip_prefix("CMD ").unwrap())
        .expect("HEALTHCHECK CMD is a JSON array");
    let argv: Vec<String> = argv
        .iter()
        .map(|a| a.replace("/9060", &format!("/{metrics_port}")))
        .collect();
    let out = Command::new(&argv[0]).args(&argv[1..]).output().unwrap();
    chaincall_testkit::assert_success(&out, "the image's HEALTHCHECK command");
}
