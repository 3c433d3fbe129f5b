//! `chaincall phone devices [--json]` through real ALSA without a sound card: the command runs
//! with `ALSA_CONFIG_PATH` naming a configuration written here (a microphone and a speaker from
//! ALSA's `file` plugin over `null`, and `default` routed to them), as on a headless box
//! (docs/audio-devices.md). It needs neither a config file nor a passphrase.

mod common;

use common::*;

#[test]
fn phone_devices_lists_the_microphones_and_speakers_alsa_offers() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("asound.conf");
    std::fs::write(
        &conf,
        chaincall_testkit::alsa_file_config(dir.path(), &["desk"]),
    )
    .unwrap();
    std::fs::write(dir.path().join("desk_mic.raw"), []).unwrap();
    let command = |args: &[&str]| {
        let mut cmd = chaincall();
        cmd.current_dir(dir.path())
            .env("ALSA_CONFIG_PATH", &conf)
            .args(["phone", "devices"])
            .args(args);
        cmd
    };
    let out = command(&["--json"]).output().expect("chaincall starts");
    if !out.status.success() {
        let why = String::from_utf8_lossy(&out.stderr).into_owned();
        return chaincall_testkit::missing::<()>(&format!("ALSA (Debian libasound2): {why}"))
            .unwrap_or_default();
    }
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    let devices = list["devices"].as_array().expect("a device list");
    let find = |name: &str| {
        devices
            .iter()
            .find(|d| d["name"] == name)
            .unwrap_or_else(|| panic!("no {name} in {list}"))
    };
    if devices
        .iter()
        .all(|d| d["input"].is_null() && d["output"].is_null())
    {
        // alsa-lib without its `file`/`null` plugins opens none of them.
        return chaincall_testkit::missing("ALSA's file and null PCM plugins").unwrap_or_default();
    }
    // `default` first, the default both ways; each test PCM in its direction only.
    assert_eq!(devices[0]["name"], "default", "{list}");
    assert_eq!(devices[0]["default_input"], true);
    assert_eq!(devices[0]["default_output"], true);
    let mic = find("desk_mic");
    assert_eq!(mic["description"], "desk test microphone");
    assert!(!mic["input"].is_null() && mic["output"].is_null(), "{mic}");
    let speaker = find("desk_speaker");
    assert!(
        speaker["input"].is_null() && !speaker["output"].is_null(),
        "{speaker}"
    );
    // Rates the phone can use: 8 kHz (G.711) and 48 kHz (Opus) within what the mic offers.
    let ranges = mic["input"]["sample_rates"]
        .as_array()
        .expect("rate ranges");
    for rate in [8_000, 48_000] {
        let offered = ranges.iter().any(|r| {
            r["min"].as_u64().is_some_and(|min| min <= rate)
                && r["max"].as_u64().is_some_and(|max| max >= rate)
        });
        assert!(offered, "{rate} Hz not in {ranges:?}");
    }

    // The table a person reads: a title, a header and one row per device.
    let table = ok(&mut command(&[]));
    let header = table.lines().find(|l| l.starts_with("NAME"));
    assert!(header.is_some_and(|h| h.contains("DESCRIPTION")), "{table}");
    for name in ["default", "desk_mic", "desk_speaker"] {
        assert!(table.lines().any(|l| l.starts_with(name)), "{table}");
    }
    // `--help` tells which keys name the devices.
    let help = ok(&mut command(&["--help"]));
    assert!(
        help.contains("input_device") && help.contains("audio = \"device\""),
        "{help}"
    );
}
