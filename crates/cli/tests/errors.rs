//! What an operator reads on stderr when `chaincall sipd serve` or `chaincall wallet serve` cannot
//! start: each error once, naming the address, file and line, or the command that fixes it; and the
//! log lines themselves (no colour escapes into a pipe, `--log-format json` one object a line).

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::Path;
use std::process::{Command, Output};

/// Runs `chaincall args…` in `dir` with `RUST_LOG` (stderr piped), expecting it to fail.
fn failing(dir: &Path, rust_log: &str, args: &[&str]) -> String {
    let out: Output = Command::new(env!("CARGO_BIN_EXE_chaincall"))
        .current_dir(dir)
        .args(args)
        .env("RUST_LOG", rust_log)
        .output()
        .expect("chaincall runs");
    assert!(
        !out.status.success(),
        "chaincall {args:?} should fail:\n{}",
        chaincall_testkit::describe(&out)
    );
    String::from_utf8(out.stderr).expect("UTF-8 stderr")
}

/// The `error: …` line: exactly one, the last thing on stderr.
fn error_line(stderr: &str) -> &str {
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("error: "))
        .collect();
    assert_eq!(errors.len(), 1, "one error line:\n{stderr}");
    errors[0]
}

/// Asserts `needle` appears exactly once in `line`.
fn once(line: &str, needle: &str) {
    assert_eq!(
        line.matches(needle).count(),
        1,
        "{needle:?} once in: {line}"
    );
}

/// A sipd config whose `tls:` listener needs a key file and a keystore node at `rpc_url`.
fn tls_config(dir: &Path, rpc_url: &str) -> String {
    let port = chaincall_testkit::free_tcp_port();
    let text = format!(
        "listen = [\"tls:127.0.0.1:{port}\"]\ndomain = \"example.com\"\n\n[tls_psk]\n\
         identity = \"sip.example.org\"\nkey_file = \"sipd-identity.key\"\n\
         rpc_url = \"{rpc_url}\"\n\
         contract = \"0x5FbDB2315678afecb367f032d93F642f64180aa3\"\ntrust = \"provider\"\n"
    );
    std::fs::write(dir.join("sipd.toml"), text).unwrap();
    "sipd.toml".into()
}

#[test]
fn sipd_on_a_taken_udp_port_says_so_once_with_the_address() {
    let dir = tempfile::tempdir().unwrap();
    let taken = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let stderr = failing(
        dir.path(),
        "info",
        &[
            "sipd",
            "serve",
            "--auth",
            "none",
            "--listen",
            &format!("udp:{addr}"),
        ],
    );
    let line = error_line(&stderr);
    once(line, &format!("cannot listen on udp {addr}"));
    once(line, "Address already in use");
}

#[test]
fn wallet_on_a_taken_port_says_so_once_with_the_address() {
    let dir = tempfile::tempdir().unwrap();
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr: SocketAddr = taken.local_addr().unwrap();
    let example = chaincall_testkit::workspace_root().join("crates/wallet/wallet.example.toml");
    let text = std::fs::read_to_string(example).unwrap();
    let text = text.replacen(
        "listen = \"127.0.0.1:8547\"",
        &format!("listen = \"{addr}\""),
        1,
    );
    assert!(
        text.contains(&addr.to_string()),
        "the example has a listen line"
    );
    std::fs::write(dir.path().join("wallet.toml"), text).unwrap();
    let stderr = failing(
        dir.path(),
        "info",
        &["wallet", "serve", "--config", "wallet.toml"],
    );
    let line = error_line(&stderr);
    once(line, &format!("cannot listen on http {addr}"));
    once(line, "Address already in use");
}

#[test]
fn sipd_without_its_identity_key_names_the_command_that_makes_it() {
    let Some(anvil) = chaincall_testkit::peer("anvil") else {
        return;
    };
    let node =
        chaincall_chain::AnvilProcess::spawn(&anvil, chaincall_testkit::free_tcp_port(), &[])
            .expect("anvil starts");
    let dir = tempfile::tempdir().unwrap();
    let config = tls_config(dir.path(), &node.url());
    let stderr = failing(dir.path(), "info", &["sipd", "serve", "--config", &config]);
    let line = error_line(&stderr);
    once(line, "identity key file sipd-identity.key does not exist");
    once(line, "chaincall keystore publish-server --rpc ");
    once(
        line,
        "--domain sip.example.org --identity-key-file sipd-identity.key",
    );
}

#[test]
fn sipd_bad_toml_is_placed_once_by_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("sipd.toml"),
        "domain = \"example.com\"\nlisten = [\"udp:127.0.0.1:0\"]\n[limits]\nburst = \"many\"\n",
    )
    .unwrap();
    let stderr = failing(
        dir.path(),
        "info",
        &["sipd", "serve", "--config", "sipd.toml"],
    );
    let line = error_line(&stderr);
    once(line, "sipd.toml:4:");
    once(line, "limits.burst");
    once(line, "invalid type");
}

#[test]
fn a_missing_config_file_is_named_once_with_the_reason_once() {
    let dir = tempfile::tempdir().unwrap();
    for part in ["sipd", "wallet"] {
        let stderr = failing(
            dir.path(),
            "info",
            &[part, "serve", "--config", "missing.toml"],
        );
        let line = error_line(&stderr);
        once(line, "cannot read missing.toml");
        once(line, "No such file or directory");
    }
}

/// Debug lines of a start that fails on an unreachable keystore node: something to look at.
fn debug_logs_of_a_failed_start(format: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let down = format!("http://127.0.0.1:{}", chaincall_testkit::free_tcp_port());
    let config = tls_config(dir.path(), &down);
    let stderr = failing(
        dir.path(),
        "debug",
        &["--log-format", format, "sipd", "serve", "--config", &config],
    );
    once(error_line(&stderr), &format!("node down: {down}"));
    stderr
}

#[test]
fn logs_into_a_pipe_carry_no_colour_escapes() {
    let stderr = debug_logs_of_a_failed_start("text");
    assert!(stderr.lines().count() > 1, "some log lines:\n{stderr}");
    assert!(stderr.contains("DEBUG"), "{stderr}");
    assert!(!stderr.contains('\u{1b}'), "no ANSI escape:\n{stderr:?}");
}

#[test]
fn json_logs_are_one_object_a_line_with_level_target_and_fields() {
    let stderr = debug_logs_of_a_failed_start("json");
    let logs: Vec<&str> = stderr
        .lines()
        .filter(|l| !l.starts_with("error: "))
        .collect();
    assert!(!logs.is_empty(), "some log lines:\n{stderr}");
    for line in logs {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: not JSON: {line}"));
        assert!(v["level"].is_string(), "{line}");
        assert!(v["target"].is_string(), "{line}");
        assert!(v["fields"].is_object(), "{line}");
    }
}
