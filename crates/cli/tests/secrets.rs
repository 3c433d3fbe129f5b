//! Secrets stay off command lines and out of files others can read: `sipd add-user` takes its
//! password from a file or standard input, `store issue-receipt` its token from a file and writes
//! the receipt 0600, and files holding secrets that group or others can read are refused with the
//! fix (`chmod 600 PATH`).
#![cfg(unix)]

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};

fn chaincall(dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_chaincall"));
    cmd.current_dir(dir)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null());
    cmd
}

fn text(out: &Output) -> String {
    chaincall_testkit::describe(out)
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// `chaincall sipd add-user` against the SQLite database `db` for domain example.org; the caller
/// adds the user and how the password comes.
fn add_user(d: &Path, db: &str) -> Command {
    let mut cmd = chaincall(d);
    cmd.args([
        "sipd",
        "add-user",
        "--database",
        db,
        "--domain",
        "example.org",
    ]);
    cmd
}

#[test]
fn sipd_add_user_reads_the_password_from_a_private_file_or_stdin() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let db = format!("sqlite://{}?mode=rwc", d.join("sipd.db").display());

    // The old form (password as an argument) is gone.
    let out = add_user(d, &db)
        .args(["alice", "hunter2-SENTINEL"])
        .output()
        .unwrap();
    assert!(!out.status.success(), "{}", text(&out));

    // A world-readable password file is refused with the path, the mode and the fix.
    let pw = d.join("alice.password");
    std::fs::write(&pw, "s3cret-SENTINEL\n").unwrap();
    chmod(&pw, 0o644);
    let from_file = || {
        add_user(d, &db)
            .arg("alice")
            .arg("--password-file")
            .arg(&pw)
            .output()
            .unwrap()
    };
    let out = from_file();
    let t = text(&out);
    assert!(!out.status.success(), "{t}");
    assert!(t.contains("mode 0644"), "{t}");
    assert!(t.contains(&format!("chmod 600 {}", pw.display())), "{t}");
    assert!(!t.contains("s3cret-SENTINEL"), "{t}");

    chmod(&pw, 0o600);
    let out = from_file();
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("added alice@example.org"));

    let out = chaincall_testkit::output_with_input(
        add_user(d, &db).args(["bob", "--password-stdin"]),
        "other-SENTINEL\n",
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("added bob@example.org"));
}

#[test]
fn store_receipts_are_written_0600_and_readable_keys_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let out = chaincall(d).args(["store", "keygen"]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let key = d.join("store-private.pem");
    assert_eq!(mode(&key), 0o600, "the store key is created 0600");

    let token = d.join("token");
    std::fs::write(&token, "purchase-token-SENTINEL\n").unwrap();
    chmod(&token, 0o600);
    let receipt = d.join("receipt.json");
    let issue = |extra: &[&str]| {
        chaincall(d)
            .args(["store", "issue-receipt", "--store-key", "store-private.pem"])
            .args(["--package", "org.example.app", "--product", "number"])
            .args(extra)
            .output()
            .unwrap()
    };
    let out = issue(&["--token-file", "token", "--out", "receipt.json"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(!text(&out).contains("SENTINEL"), "the token is not printed");
    assert_eq!(mode(&receipt), 0o600, "the receipt is written 0600");
    let json = std::fs::read_to_string(&receipt).unwrap();
    assert!(json.contains("purchase-token-SENTINEL"), "{json}");

    // An existing receipt is not overwritten.
    let out = issue(&["--token-file", "token", "--out", "receipt.json"]);
    assert!(!out.status.success(), "{}", text(&out));

    // The token may not be given on the command line any more.
    let out = issue(&["--token", "purchase-token-SENTINEL"]);
    assert!(!out.status.success(), "{}", text(&out));

    // A store key or token file that others can read is refused, with the fix.
    for (name, file) in [("store-private.pem", &key), ("token", &token)] {
        chmod(file, 0o644);
        let out = issue(&["--token-file", "token"]);
        let t = text(&out);
        assert!(!out.status.success(), "{t}");
        assert!(t.contains("mode 0644"), "{t}");
        assert!(t.contains(&format!("chmod 600 {name}")), "{t}");
        chmod(file, 0o600);
    }
}
