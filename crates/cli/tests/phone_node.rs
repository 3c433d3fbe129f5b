//! `chaincall phone` against a node that misbehaves. A real anvil node whose chain is reset (the
//! node restarted with another genesis on the same port), as a developer's node is: the phone's
//! lookups then fail naming `chaincall phone trust`, which shows the pin against what the node now
//! says, and re-pinning is refused over the changed history unless forced. A frozen node (a TCP
//! listener that accepts and never answers): `phone onboard` says what it waits for and gives up
//! after the config's `onboard_timeout_secs`, saying that rerunning is safe; so does a frozen wallet
//! server behind a working node.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;

use chaincall_chain::AnvilProcess;
use common::genesis;

const PASSPHRASE: &str = "correct horse battery";

/// `chaincall phone` in `home`, passphrase from the environment.
fn phone(home: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_chaincall"));
    cmd.current_dir(home)
        .env("CHAINCALL_PASSPHRASE", PASSPHRASE)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .args(["phone", "--config", "phone.toml"]);
    cmd
}

fn run(cmd: &mut Command) -> (Output, String, String) {
    let out = cmd.output().expect("chaincall starts");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out, stdout, stderr)
}

/// Succeeds; its stdout and stderr.
fn ok(cmd: &mut Command) -> (String, String) {
    let (out, stdout, stderr) = run(cmd);
    assert!(out.status.success(), "{cmd:?}\n{stdout}\n{stderr}");
    (stdout, stderr)
}

/// Fails; its stderr.
fn fails(cmd: &mut Command) -> String {
    let (out, stdout, stderr) = run(cmd);
    assert!(
        !out.status.success(),
        "{cmd:?} succeeded\n{stdout}\n{stderr}"
    );
    stderr
}

/// A phone's config in `home` on the node at `url`, with `extra` top-level keys.
fn write_config(home: &Path, url: &str, extra: &str) {
    std::fs::write(
        home.join("phone.toml"),
        format!(
            "# alice's phone\nkey_file = \"phone.key\"\nrpc_url = \"{url}\"\n\
             contract = \"0x5FbDB2315678afecb367f032d93F642f64180aa3\"\n{extra}\
             [sip]\naddr = \"127.0.0.1:5061\"\ndomain = \"sip.chaincall.test\"\n"
        ),
    )
    .unwrap();
}

#[test]
fn after_a_chain_reset_trust_shows_the_change_and_repin_needs_force() {
    let Some(anvil) = chaincall_testkit::peer("anvil") else {
        return;
    };
    let port = chaincall_testkit::free_tcp_port();
    let node = AnvilProcess::spawn(&anvil, port, &["--timestamp", "1700000000"]).unwrap();
    let url = node.url();
    let old = genesis(&url);
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    write_config(home, &url, "");

    // No pin yet: `trust` says so and changes nothing; `init` pins block 0 (trust on first use).
    let (shown, _) = ok(phone(home).arg("trust"));
    assert!(shown.contains("none pinned"), "{shown}");
    ok(phone(home).args(["init", "--number", "+15550100001"]));
    let config = std::fs::read_to_string(home.join("phone.toml")).unwrap();
    assert!(config.contains(&format!("trust = \"0:{old}\"")), "{config}");
    let (shown, _) = ok(phone(home).arg("trust"));
    assert!(shown.contains(&format!("trust: 0:{old}")), "{shown}");
    assert!(shown.contains("same hash"), "{shown}");

    // The node restarts with another genesis on the same port: the chain was reset.
    drop(node);
    let node = AnvilProcess::spawn(&anvil, port, &["--timestamp", "1800000000"]).unwrap();
    let new = genesis(&node.url());
    assert_ne!(old, new);

    // A lookup fails and says where to look.
    let err = fails(phone(home).args(["contact", "show", "+15550100002"]));
    assert!(err.contains("block header not trusted"), "{err}");
    assert!(err.contains("`chaincall phone trust`"), "{err}");
    let err = fails(phone(home).arg("rotate"));
    assert!(
        err.contains("`chaincall phone trust` shows the pin"),
        "{err}"
    );

    // `trust` shows the pin against what the node now says.
    let (shown, _) = ok(phone(home).arg("trust"));
    assert!(shown.contains(&format!("trust: 0:{old}")), "{shown}");
    assert!(
        shown.contains(&format!("block 0 is now {new}, not the pinned {old}")),
        "{shown}"
    );
    assert!(shown.contains("trust repin --force"), "{shown}");

    // Re-pinning over the changed history is refused, and the file is left as it was.
    let err = fails(phone(home).args(["trust", "repin"]));
    assert!(err.contains("not re-pinned"), "{err}");
    assert!(err.contains("--force"), "{err}");
    assert_eq!(
        std::fs::read_to_string(home.join("phone.toml")).unwrap(),
        config
    );
    // A block the node has not mined is refused, forced or not.
    let err = fails(phone(home).args(["trust", "repin", "--force", "--block", "99"]));
    assert!(err.contains("has no block 99"), "{err}");

    // Forced: a warning saying what it means, the new pin, the comments kept.
    let (done, warning) = ok(phone(home).args(["trust", "repin", "--force"]));
    assert!(
        done.contains(&format!("trust: 0:{new} (was 0:{old})")),
        "{done}"
    );
    assert!(
        warning.contains("warning: re-pinned over a changed history"),
        "{warning}"
    );
    let config = std::fs::read_to_string(home.join("phone.toml")).unwrap();
    assert!(config.contains(&format!("trust = \"0:{new}\"")), "{config}");
    assert!(config.contains("# alice's phone\n"), "{config}");
    assert!(
        config.contains("# Re-pinned by `chaincall phone trust repin`.\ntrust = "),
        "{config}"
    );
    assert!(!config.contains(&old), "{config}");
    let (shown, _) = ok(phone(home).arg("trust"));
    assert!(shown.contains("same hash"), "{shown}");
    // Over an unchanged history, re-pinning needs no force and warns of nothing.
    let (_, warning) = ok(phone(home).args(["trust", "repin"]));
    assert!(!warning.contains("warning"), "{warning}");
}

/// A URL whose listener accepts every connection and never answers; the connections are held open
/// until the test ends.
fn frozen_url() -> (String, mpsc::Receiver<std::net::TcpStream>) {
    let frozen = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", frozen.local_addr().unwrap());
    let (held, keep) = mpsc::channel::<std::net::TcpStream>();
    std::thread::spawn(move || {
        for stream in frozen.incoming().flatten() {
            if held.send(stream).is_err() {
                break;
            }
        }
    });
    (url, keep)
}

/// `phone onboard` in `home` fails after its timeout, having waited for `peer`.
fn onboard_gives_up_waiting_for(home: &Path, peer: &str) {
    chaincall_identity::write_secret_file(
        &home.join("receipt.json"),
        br#"{"original_json": "{}", "signature": "AA=="}"#,
        chaincall_identity::Overwrite::Replace,
    )
    .unwrap();
    let err = fails(phone(home).args(["onboard", "--receipt", "receipt.json"]));
    assert!(
        err.contains(&format!("waiting for {peer}: no answer for 3 s")),
        "{err}"
    );
    assert!(
        err.contains(&format!("gave up after 4 s: {peer} did not answer")),
        "{err}"
    );
    assert!(
        err.contains("rerunning `chaincall phone onboard` is safe"),
        "{err}"
    );
    assert!(err.contains("`onboard_timeout_secs`"), "{err}");
}

#[test]
fn onboard_against_a_frozen_wallet_server_gives_up_naming_it() {
    let Some(anvil) = chaincall_testkit::peer("anvil") else {
        return;
    };
    let node = AnvilProcess::spawn(&anvil, chaincall_testkit::free_tcp_port(), &[]).unwrap();
    let url = node.url();
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    // A keystore with the wallet server's key published, as the phone reads it first.
    chaincall_identity::write_secret_file(
        &home.join("operator.key"),
        hex::encode(chaincall_chain::dev_signer(0).to_bytes()).as_bytes(),
        chaincall_identity::Overwrite::Replace,
    )
    .unwrap();
    let chaincall = || {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_chaincall"));
        cmd.current_dir(home).env("RUST_LOG", "warn");
        cmd
    };
    let (out, _) = ok(chaincall().args([
        "keystore",
        "deploy",
        "--rpc",
        &url,
        "--key-file",
        "operator.key",
    ]));
    let contract = out.lines().next_back().unwrap().trim().to_owned();
    ok(chaincall()
        .args([
            "keystore",
            "publish-server",
            "--rpc",
            &url,
            "--contract",
            &contract,
        ])
        .args([
            "--domain",
            "wallet.chaincall.test",
            "--identity-key-file",
            "wallet-identity.key",
        ])
        .args(["--key-file", "operator.key"]));
    let (wallet, _held) = frozen_url();
    let config = format!(
        "# alice's phone\nkey_file = \"phone.key\"\nrpc_url = \"{url}\"\ncontract = \"{contract}\"\n\
         wallet_url = \"{wallet}\"\nwallet_domain = \"wallet.chaincall.test\"\n\
         onboard_timeout_secs = 4\n[sip]\naddr = \"127.0.0.1:5061\"\ndomain = \"sip.chaincall.test\"\n"
    );
    std::fs::write(home.join("phone.toml"), config).unwrap();
    ok(phone(home).args(["init", "--number", "+15550100001"]));
    onboard_gives_up_waiting_for(home, &format!("the wallet server {wallet}"));
}

#[test]
fn onboard_against_a_frozen_node_reports_progress_and_gives_up_saying_rerun_is_safe() {
    let Some(anvil) = chaincall_testkit::peer("anvil") else {
        return;
    };
    // The keys are made against a working node; then the node freezes.
    let node = AnvilProcess::spawn(&anvil, chaincall_testkit::free_tcp_port(), &[]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    write_config(home, &node.url(), "");
    ok(phone(home).args(["init", "--number", "+15550100001"]));
    let pinned = std::fs::read_to_string(home.join("phone.toml")).unwrap();
    let trust = pinned.lines().find(|l| l.starts_with("trust = ")).unwrap();

    let (frozen_url, _held) = frozen_url();
    write_config(
        home,
        &frozen_url,
        &format!(
            "number = \"+15550100001\"\n{trust}\nwallet_url = \"http://127.0.0.1:9\"\n\
             wallet_domain = \"wallet.chaincall.test\"\nonboard_timeout_secs = 4\n"
        ),
    );
    onboard_gives_up_waiting_for(home, &format!("the chain node {frozen_url}"));
}
