//! Test support shared by chaincall's crates.
//!
//! Tests run against real peers (anvil, solcjs, sipp, baresip, Kamailio, tshark, openssl, libsrtp).
//! `scripts/test.sh` installs them and sets `CHAINCALL_REQUIRE_PEERS=1`; with that variable a test whose
//! peer is missing **fails** with a message naming the peer and the install step. Without it (a developer's
//! quick `cargo test`) such a test prints that it skips and returns.
//!
//! ```no_run
//! # fn demo() {
//! let Some(anvil) = chaincall_testkit::peer("anvil") else { return };
//! # let _ = anvil;
//! # }
//! ```

use std::net::{TcpListener, UdpSocket};
use std::path::{Path, PathBuf};

/// True when `CHAINCALL_REQUIRE_PEERS=1`: missing peers are failures, not skips.
pub fn peers_required() -> bool {
    std::env::var("CHAINCALL_REQUIRE_PEERS").is_ok_and(|v| v == "1")
}

/// The workspace root (the folder holding the top-level `Cargo.toml`).
pub fn workspace_root() -> PathBuf {
    // CARGO_MANIFEST_DIR is crates/testkit at compile time; the root is two levels up.
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("crates/testkit sits two levels below the workspace root")
        .to_path_buf()
}

/// Places the project's install scripts put peers, searched after `PATH`.
fn extra_dirs() -> Vec<PathBuf> {
    let root = workspace_root();
    vec![
        root.join("tools/node_modules/@foundry-rs/anvil-linux-amd64/bin"),
        root.join("tools/node_modules/.bin"),
        root.join(".venv/bin"),
        PathBuf::from("/usr/sbin"),
        PathBuf::from("/usr/bin"),
    ]
}

/// Finds an executable by name in `PATH` and the project's install locations, without the skip rule.
pub fn find_executable(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(extra_dirs())
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Finds a peer executable, applying the skip-or-fail rule.
///
/// Returns `None` (after printing a skip line) when the peer is missing and peers are not required.
///
/// # Panics
/// When the peer is missing and `CHAINCALL_REQUIRE_PEERS=1`: that is the test failing, with the reason.
pub fn peer(name: &str) -> Option<PathBuf> {
    match find_executable(name) {
        Some(path) => Some(path),
        None => missing(name),
    }
}

/// The Python interpreter of the project's venv (with pylibsrtp), applying the skip-or-fail rule.
///
/// `CHAINCALL_PYTHON` overrides; otherwise `.venv/bin/python3` under the workspace root.
pub fn python() -> Option<PathBuf> {
    let candidate = std::env::var_os("CHAINCALL_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join(".venv/bin/python3"));
    if is_executable(&candidate) {
        Some(candidate)
    } else {
        missing("python venv (.venv/bin/python3 with tools/requirements.txt)")
    }
}

/// Reports a missing peer: panics when peers are required, otherwise prints a skip line.
pub fn missing<T>(what: &str) -> Option<T> {
    if peers_required() {
        panic!(
            "required peer `{what}` is missing (CHAINCALL_REQUIRE_PEERS=1); run scripts/test.sh, which installs it"
        );
    }
    eprintln!("SKIPPED: peer `{what}` is not installed; run scripts/test.sh to install every peer");
    None
}

/// A TCP port on 127.0.0.1 that was free a moment ago (bind to port 0 directly where the API allows).
pub fn free_tcp_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("binding 127.0.0.1:0 always succeeds on a working loopback")
}

/// A UDP port on 127.0.0.1 that was free a moment ago.
pub fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("binding 127.0.0.1:0 always succeeds on a working loopback")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_a_standard_executable() {
        assert!(find_executable("sh").is_some());
        assert!(find_executable("no-such-peer-exists-here").is_none());
    }

    #[test]
    fn workspace_root_holds_the_workspace_manifest() {
        let manifest = std::fs::read_to_string(workspace_root().join("Cargo.toml")).unwrap();
        assert!(manifest.contains("[workspace]"));
    }
}
