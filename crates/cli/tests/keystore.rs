//! The `chaincall keystore` commands, end to end: the real binary against a real
//! anvil node (started per test on a free loopback port) or the embedded chain.

use std::path::{Path, PathBuf};
use std::process::Output;

use chaincall_chain::{AnvilProcess, dev_signer};
use chaincall_identity::IdentityKey;

struct Node {
    anvil: AnvilProcess,
    dir: tempfile::TempDir,
}

impl Node {
    fn start() -> Option<Self> {
        let anvil = chaincall_testkit::peer("anvil")?;
        let anvil = AnvilProcess::spawn(&anvil, chaincall_testkit::free_tcp_port(), &[])
            .expect("anvil starts");
        Some(Self {
            anvil,
            dir: tempfile::tempdir().unwrap(),
        })
    }

    fn url(&self) -> String {
        self.anvil.url()
    }

    /// A key file for anvil's dev account `index`, in the `0x…` form anvil prints.
    fn key_file(&self, index: usize) -> PathBuf {
        let path = self.dir.path().join(format!("dev{index}.key"));
        let secret = dev_signer(index).to_bytes();
        write_private(&path, &format!("0x{}\n", hex::encode(secret)));
        path
    }

    fn deploy(&self) -> String {
        let out = chaincall(&[
            "keystore",
            "deploy",
            "--rpc",
            &self.url(),
            "--key-file",
            path(&self.key_file(0)),
        ]);
        assert_success(&out);
        let stdout = String::from_utf8(out.stdout).unwrap();
        let last = stdout.lines().last().expect("deploy prints lines").trim();
        assert!(
            last.starts_with("0x") && last.len() == 42,
            "last line {last:?}"
        );
        last.to_owned()
    }

    fn run(&self, args: &[&str]) -> Output {
        let mut all = args.to_vec();
        let url = self.url();
        all.extend(["--rpc", url.as_str()]);
        chaincall(&all)
    }
}

/// Writes a key file as a careful user would (`chmod 600` after writing it): keystore refuses key
/// files that group or others can read.
fn write_private(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn chaincall(args: &[&str]) -> Output {
    chaincall_testkit::run_quiet(env!("CARGO_BIN_EXE_chaincall"), args)
}

#[track_caller]
fn assert_success(out: &Output) {
    chaincall_testkit::assert_success(out, "chaincall");
}

/// A failure exits non-zero with exactly one line on stderr, which contains `needle`.
fn assert_fails_with(out: &Output, needle: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "expected failure, stdout {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(
        stderr.trim_end().lines().count(),
        1,
        "one line on stderr: {stderr:?}"
    );
    assert!(
        stderr.to_lowercase().contains(&needle.to_lowercase()),
        "stderr {stderr:?} lacks {needle:?}"
    );
}

fn get_json(node: &Node, contract: &str, phone: &str) -> serde_json::Value {
    let out = node.run(&[
        "keystore",
        "get",
        "--contract",
        contract,
        "--phone",
        phone,
        "--json",
    ]);
    assert_success(&out);
    serde_json::from_slice(&out.stdout).expect("get --json prints JSON")
}

/// `chaincall keystore <verb> --contract … --key-file … --phone … <extra…>` on `node`: every
/// keystore write names the contract, the key file that signs, and the entry.
fn write(
    node: &Node,
    verb: &str,
    contract: &str,
    key_file: &Path,
    phone: &str,
    extra: &[&str],
) -> Output {
    let mut args = vec![
        "keystore",
        verb,
        "--contract",
        contract,
        "--key-file",
        path(key_file),
        "--phone",
        phone,
    ];
    args.extend_from_slice(extra);
    node.run(&args)
}

fn add(
    node: &Node,
    contract: &str,
    key_index: usize,
    phone: &str,
    key: &str,
    receipt: &str,
) -> Output {
    let key_file = node.key_file(key_index);
    let extra = ["--public-key", key, "--receipt", receipt];
    write(node, "add", contract, &key_file, phone, &extra)
}

fn approve(node: &Node, contract: &str, key_index: usize, phone: &str, receipt: &str) -> Output {
    let key_file = node.key_file(key_index);
    write(
        node,
        "approve",
        contract,
        &key_file,
        phone,
        &["--receipt", receipt],
    )
}

fn new_key_hex() -> String {
    hex::encode(IdentityKey::generate().public().to_bytes())
}

#[test]
fn deploy_add_approve_get_round_trip() {
    let Some(node) = Node::start() else { return };
    let contract = node.deploy();
    let phone = "+15551234567";
    let key = new_key_hex();
    let unknown = get_json(&node, &contract, phone);
    assert_eq!(unknown["status"], "unknown");
    assert_success(&add(&node, &contract, 1, phone, &key, "receipt-123"));
    let pending = get_json(&node, &contract, phone);
    assert_eq!(pending["status"], "pending");
    assert_eq!(pending["public_key"], key.as_str());
    assert_success(&approve(&node, &contract, 0, phone, "receipt-123"));
    let approved = get_json(&node, &contract, "+1 555 123 4567");
    assert_eq!(approved["status"], "approved");
    assert_eq!(approved["public_key"], key.as_str());
    assert_eq!(approved["canonical"], "tel:+15551234567");
    assert_eq!(
        approved["wallet"].as_str().unwrap().to_lowercase(),
        dev_signer(1).address().to_string().to_lowercase()
    );
}

#[test]
fn approve_from_a_non_owner_fails_clearly() {
    let Some(node) = Node::start() else { return };
    let contract = node.deploy();
    let phone = "+15551230001";
    assert_success(&add(&node, &contract, 1, phone, &new_key_hex(), "r"));
    assert_fails_with(
        &approve(&node, &contract, 2, phone, "r"),
        "not the keystore owner",
    );
    assert_eq!(get_json(&node, &contract, phone)["status"], "pending");
    // Wrong receipt, and a number nobody submitted.
    assert_fails_with(
        &approve(&node, &contract, 0, phone, "wrong"),
        "receipt does not match",
    );
    assert_fails_with(
        &approve(&node, &contract, 0, "+15559999999", "r"),
        "unknown +15559999999",
    );
}

#[test]
fn a_second_wallet_cannot_take_an_approved_number() {
    let Some(node) = Node::start() else { return };
    let contract = node.deploy();
    let phone = "+15551230002";
    let key = new_key_hex();
    assert_success(&add(&node, &contract, 1, phone, &key, "r"));
    assert_success(&approve(&node, &contract, 0, phone, "r"));
    assert_fails_with(
        &add(&node, &contract, 2, phone, &new_key_hex(), "r"),
        "already taken",
    );
    let entry = get_json(&node, &contract, phone);
    assert_eq!(entry["status"], "approved");
    assert_eq!(entry["public_key"], key.as_str());
}

#[test]
fn rotate_and_revoke_show_in_get_and_history() {
    let Some(node) = Node::start() else { return };
    let contract = node.deploy();
    let phone = "+15551230003";
    assert_success(&add(&node, &contract, 1, phone, &new_key_hex(), "r"));
    assert_success(&approve(&node, &contract, 0, phone, "r"));
    let key2 = new_key_hex();
    let wallet = node.key_file(1);
    // Only the bound wallet rotates.
    assert_fails_with(
        &write(
            &node,
            "rotate",
            &contract,
            &node.key_file(2),
            phone,
            &["--public-key", &key2],
        ),
        "not the wallet bound",
    );
    assert_success(&write(
        &node,
        "rotate",
        &contract,
        &wallet,
        phone,
        &["--public-key", &key2],
    ));
    let rotated = get_json(&node, &contract, phone);
    assert_eq!(rotated["status"], "approved");
    assert_eq!(rotated["public_key"], key2.as_str());
    assert_success(&write(&node, "revoke", &contract, &wallet, phone, &[]));
    assert_eq!(get_json(&node, &contract, phone)["status"], "revoked");

    let out = node.run(&[
        "keystore",
        "history",
        "--contract",
        &contract,
        "--phone",
        phone,
        "--json",
    ]);
    assert_success(&out);
    let history: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let events = chaincall_testkit::json_strings(&history["events"], "event");
    assert_eq!(events, ["added", "approved", "rotated", "revoked"]);
    assert_eq!(history["events"][2]["public_key"], key2.as_str());
    let text = node.run(&[
        "keystore",
        "history",
        "--contract",
        &contract,
        "--phone",
        phone,
    ]);
    assert_success(&text);
    assert_eq!(String::from_utf8_lossy(&text.stdout).lines().count(), 4);
}

#[test]
fn failures_are_one_clear_line() {
    let Some(node) = Node::start() else { return };
    let contract = node.deploy();
    // Malformed number and key, checked before anything is sent.
    assert_fails_with(
        &add(&node, &contract, 1, "5551234", &new_key_hex(), "r"),
        "invalid --phone",
    );
    assert_fails_with(
        &add(&node, &contract, 1, "+15551234567", "02abcd", "r"),
        "malformed key",
    );
    // A wallet without funds.
    let poor = node.dir.path().join("poor.key");
    write_private(
        &poor,
        &hex::encode(chaincall_chain::PrivateKeySigner::random().to_bytes()),
    );
    assert_fails_with(
        &write(
            &node,
            "add",
            &contract,
            &poor,
            "+15551234567",
            &["--public-key", &new_key_hex(), "--receipt", "r"],
        ),
        "insufficient funds",
    );
    // A key file that is not a key; its content must not be echoed.
    let junk = node.dir.path().join("junk.key");
    write_private(&junk, "not-a-secret-key-SENTINEL");
    let out = node.run(&["keystore", "deploy", "--key-file", path(&junk)]);
    assert_fails_with(&out, "does not hold a hex secp256k1 private key");
    assert!(!String::from_utf8_lossy(&out.stderr).contains("SENTINEL"));
    // A real key in a file others can read: refused with the fix, before anything is sent.
    let open = node.key_file(1);
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let out = node.run(&["keystore", "deploy", "--key-file", path(&open)]);
    assert_fails_with(&out, &format!("chmod 600 {}", open.display()));
    assert_fails_with(&out, "mode 0644");
    let secret = hex::encode(dev_signer(1).to_bytes());
    assert!(!String::from_utf8_lossy(&out.stderr).contains(&secret));
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("0x"),
        "nothing deployed"
    );
    // Wrong chain id.
    let out = node.run(&[
        "keystore",
        "get",
        "--contract",
        &contract,
        "--phone",
        "+15551234567",
        "--chain-id",
        "1",
    ]);
    assert_fails_with(&out, "wrong chain id");
    // Revoking an unknown number.
    assert_fails_with(
        &write(
            &node,
            "revoke",
            &contract,
            &node.key_file(1),
            "+15550000001",
            &[],
        ),
        "unknown +15550000001",
    );
}

#[test]
fn node_down_is_one_clear_line() {
    let port = chaincall_testkit::free_tcp_port();
    let out = chaincall(&[
        "keystore",
        "get",
        "--rpc",
        &format!("http://127.0.0.1:{port}"),
        "--contract",
        "0x5FbDB2315678afecb367f032d93F642f64180aa3",
        "--phone",
        "+15551234567",
    ]);
    assert_fails_with(&out, "node down");
}

#[test]
fn gas_json_reports_every_function_within_budget() {
    let out = chaincall(&["keystore", "gas", "--json"]);
    assert_success(&out);
    let gas: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let add = gas["addClient"].as_u64().unwrap();
    let approve = gas["approveClient"].as_u64().unwrap();
    assert!(add > 21_000 && approve > 21_000);
    assert!(add + approve <= 150_000, "{gas}");
    for f in [
        "deploy",
        "rotateKey",
        "revokeClient",
        "transferOwnership",
        "acceptOwnership",
        "reserveClient(over a pending entry)",
        "addClientWithProof",
    ] {
        assert!(gas[f].as_u64().unwrap() > 21_000, "{f}: {gas}");
    }
}
