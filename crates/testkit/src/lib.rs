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

pub mod impair;
pub mod linphonec;
pub mod netns;

use std::ffi::OsStr;
use std::io::Write;
use std::net::{TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

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

/// The Python interpreter of the project's venv, which must import pylibsrtp (the libsrtp peer),
/// applying the skip-or-fail rule.
///
/// `CHAINCALL_PYTHON` overrides; otherwise `.venv/bin/python3` under the workspace root.
pub fn python() -> Option<PathBuf> {
    let candidate = std::env::var_os("CHAINCALL_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join(".venv/bin/python3"));
    if is_executable(&candidate) {
        python_with(
            candidate,
            "pylibsrtp",
            "pylibsrtp in the venv (tools/requirements.txt)",
        )
    } else {
        missing("python venv (.venv/bin/python3 with tools/requirements.txt)")
    }
}

/// `python` when it can import `module`, applying the skip-or-fail rule otherwise, with `what`
/// (the missing piece and where it comes from) in the message.
///
/// # Panics
/// When `python` cannot be run at all, or (with `CHAINCALL_REQUIRE_PEERS=1`) lacks the module.
pub fn python_with(python: PathBuf, module: &str, what: &str) -> Option<PathBuf> {
    let imports = Command::new(&python)
        .args(["-W", "ignore", "-c", &format!("import {module}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", python.display()));
    if imports.success() {
        Some(python)
    } else {
        missing(what)
    }
}

/// Whether this process runs as root; otherwise `what` (a test needing root) is reported
/// missing by the skip-or-fail rule of [`missing`].
pub fn root(what: &str) -> bool {
    rustix::process::geteuid().is_root() || missing::<()>(what).is_some()
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

/// A finished process's exit status, stdout and stderr, for assertion messages.
pub fn describe(out: &Output) -> String {
    format!(
        "status {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Asserts that the process behind `out` exited successfully.
///
/// # Panics
/// When it did not: the message names `what` and carries its stdout and stderr, which say why.
#[track_caller]
pub fn assert_success(out: &Output, what: &str) {
    assert!(out.status.success(), "{what} failed: {}", describe(out));
}

/// Runs the test `test` of the running test binary again, alone, in a child process with `env`
/// set, and asserts that it ran and passed. For settings a library reads once per process
/// (ALSA's `ALSA_CONFIG_PATH`), which setting in-process would race the other tests.
///
/// # Panics
/// When the child fails or ran no test of that name.
#[track_caller]
pub fn rerun_in_child(test: &str, env: &[(&str, &OsStr)]) {
    let exe = std::env::current_exe().expect("the test binary");
    let out = Command::new(exe)
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .envs(env.iter().copied())
        .output()
        .expect("run the test binary again");
    assert_success(&out, test);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&format!("test {test} ... ok")),
        "the child ran no test named {test}: {}",
        describe(&out)
    );
}

/// An ALSA configuration (for `ALSA_CONFIG_PATH`) that needs no sound card: for each name `P` in
/// `names`, a microphone `P_mic` reading `dir/P_mic.raw` and a speaker `P_speaker` writing
/// `dir/P_speaker.raw` (ALSA's `file` plugin, raw samples in the format the stream opened, over
/// the `null` plugin in place of a card), listed with their direction; `default` is the first
/// pair. `null` has no clock: streams run as fast as their callback thread goes.
pub fn alsa_file_config(dir: &Path, names: &[&str]) -> String {
    let d = dir.display();
    let mut conf = String::new();
    if let Some(first) = names.first() {
        conf.push_str(&format!(
            "pcm.!default {{\n    type asym\n    capture.pcm \"{first}_mic\"\n    \
             playback.pcm \"{first}_speaker\"\n}}\n"
        ));
    }
    // Hints from a pcm's own `hint` section carry no direction (alsa-lib derives one only for
    // sound cards); these do: NAME|DESC|IOID.
    let mut hints = String::from("namehint.pcm {\n");
    for p in names {
        conf.push_str(&format!(
            "pcm.{p}_mic {{\n    type file\n    slave.pcm {{ type null }}\n    \
             file \"/dev/null\"\n    infile \"{d}/{p}_mic.raw\"\n    format \"raw\"\n}}\n\
             pcm.{p}_speaker {{\n    type file\n    slave.pcm {{ type null }}\n    \
             file \"{d}/{p}_speaker.raw\"\n    format \"raw\"\n}}\n"
        ));
        hints.push_str(&format!(
            "    {p}_mic \"{p}_mic|{p} test microphone|IOIDInput\"\n    \
             {p}_speaker \"{p}_speaker|{p} test speaker|IOIDOutput\"\n"
        ));
    }
    conf + &hints + "}\n"
}

/// Writes 16-bit little-endian mono samples, headerless (ALSA's `file` plugin's `raw` format).
pub fn write_raw_pcm(path: &Path, samples: &[i16]) {
    let bytes: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
    std::fs::write(path, bytes).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// Reads what [`write_raw_pcm`] writes (or ALSA's `file` plugin recorded).
pub fn read_raw_pcm(path: &Path) -> Vec<i16> {
    std::fs::read(path)
        .unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect()
}

/// Runs `cmd` to completion and returns its stdout.
///
/// # Panics
/// When it cannot start or exits unsuccessfully (see [`assert_success`]).
#[track_caller]
pub fn run_ok(cmd: &mut Command, what: &str) -> Vec<u8> {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    assert_success(&out, what);
    out.stdout
}

/// Runs `program args…` with `RUST_LOG=warn`, so that its output holds what a user sees and no
/// informational log lines.
///
/// # Panics
/// When it cannot start.
pub fn run_quiet(program: impl AsRef<OsStr>, args: &[&str]) -> Output {
    let program = program.as_ref();
    Command::new(program)
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.to_string_lossy()))
}

/// Runs `cmd` to completion with `input` on its stdin, capturing stdout and stderr.
///
/// The input is written from another thread: a peer that answers while still reading would
/// otherwise fill its stdout pipe and deadlock with us.
///
/// # Panics
/// When it cannot start or its stdin cannot be written.
pub fn output_with_input(cmd: &mut Command, input: impl Into<Vec<u8>>) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {:?}: {e}", cmd.get_program()));
    // Invariant: stdin was set to piped just above.
    let mut stdin = child.stdin.take().expect("piped stdin");
    let input = input.into();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let out = child.wait_with_output().expect("wait for the child");
    // The writer ends when the child closes its stdin; a child that exits without reading all
    // of it is its own failure, reported by its status, so a broken pipe here is not ours.
    match writer.join().expect("stdin writer thread") {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => panic!("writing stdin: {e}"),
        _ => out,
    }
}

/// The string `field` of every object in the JSON array `list` (what a test compares a `--json`
/// listing with).
///
/// # Panics
/// When `list` is not an array or an element's `field` is not a string, naming what it found.
#[track_caller]
pub fn json_strings<'a>(list: &'a serde_json::Value, field: &str) -> Vec<&'a str> {
    let items = list
        .as_array()
        .unwrap_or_else(|| panic!("not a JSON array: {list}"));
    items
        .iter()
        .map(|item| {
            item[field]
                .as_str()
                .unwrap_or_else(|| panic!("no string `{field}` in {item}"))
        })
        .collect()
}

/// Where test servers' ports are drawn from: below Linux's ephemeral range (32768–60999), so an
/// outgoing connection of another test cannot take the port between the check and the server's
/// bind (what port 0 would hand out is exactly that range).
const TEST_PORTS: std::ops::Range<u16> = 20_000..32_000;

/// A port on 127.0.0.1 that `free` says is free, drawn at random from [`TEST_PORTS`].
fn free_port(free: impl Fn(u16) -> bool) -> u16 {
    use std::hash::{BuildHasher, Hasher};
    // Random per call without a dependency: the standard library's randomly keyed hasher.
    let state = std::collections::hash_map::RandomState::new();
    let span = u64::from(TEST_PORTS.end - TEST_PORTS.start);
    for attempt in 0u64..10_000 {
        let mut h = state.build_hasher();
        h.write_u64(attempt);
        h.write_u32(std::process::id());
        // Invariant: the remainder is below `span`, which fits in u16.
        let port = TEST_PORTS.start + u16::try_from(h.finish() % span).expect("below the span");
        if free(port) {
            return port;
        }
    }
    panic!("no free port in {TEST_PORTS:?} on 127.0.0.1");
}

fn tcp_free(port: u16) -> bool {
    TcpListener::bind(("127.0.0.1", port)).is_ok()
}

fn udp_free(port: u16) -> bool {
    UdpSocket::bind(("127.0.0.1", port)).is_ok()
}

/// A TCP port on 127.0.0.1 that was free a moment ago (bind to port 0 directly where the API allows).
pub fn free_tcp_port() -> u16 {
    free_port(tcp_free)
}

/// A UDP port on 127.0.0.1 that was free a moment ago.
pub fn free_udp_port() -> u16 {
    free_port(udp_free)
}

/// A port on 127.0.0.1 free for both UDP and TCP a moment ago: for peers such as baresip that
/// listen on both with one `sip_listen`.
pub fn free_udp_tcp_port() -> u16 {
    free_port(|p| udp_free(p) && tcp_free(p))
}

pub mod postgres;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_a_standard_executable() {
        assert!(find_executable("sh").is_some());
        assert!(find_executable("no-such-peer-exists-here").is_none());
    }

    #[test]
    fn free_ports_are_below_the_ephemeral_range_and_bindable() {
        for _ in 0..20 {
            let port = free_udp_tcp_port();
            assert!(TEST_PORTS.contains(&port), "{port}");
            let _tcp = TcpListener::bind(("127.0.0.1", port)).unwrap();
            let _udp = UdpSocket::bind(("127.0.0.1", port)).unwrap();
        }
        assert!(TEST_PORTS.contains(&free_tcp_port()));
        assert!(TEST_PORTS.contains(&free_udp_port()));
    }

    #[test]
    fn output_with_input_feeds_more_than_a_pipe_holds() {
        // 1 MiB through `cat`: more than both pipe buffers, so a writer on the same thread would
        // deadlock.
        let input = vec![b'x'; 1 << 20];
        let out = output_with_input(&mut Command::new("cat"), input.clone());
        assert_success(&out, "cat");
        assert_eq!(out.stdout, input);
    }

    #[test]
    fn run_ok_returns_stdout_and_fails_with_stderr() {
        assert_eq!(
            run_ok(Command::new("sh").args(["-c", "echo hi"]), "sh"),
            b"hi\n"
        );
        let failed = std::panic::catch_unwind(|| {
            run_ok(
                Command::new("sh").args(["-c", "echo why >&2; exit 3"]),
                "sh",
            )
        })
        .unwrap_err();
        let message = failed.downcast_ref::<String>().unwrap();
        assert!(message.contains("sh failed"), "{message}");
        assert!(message.contains("why"), "{message}");
    }

    #[test]
    fn json_strings_lists_one_field_of_each_element() {
        let list = serde_json::json!([{"name": "a", "n": 1}, {"name": "b"}]);
        assert_eq!(json_strings(&list, "name"), ["a", "b"]);
        assert!(std::panic::catch_unwind(|| json_strings(&list, "n")).is_err());
        assert!(std::panic::catch_unwind(|| json_strings(&list["name"], "n")).is_err());
    }

    #[test]
    fn workspace_root_holds_the_workspace_manifest() {
        let manifest = std::fs::read_to_string(workspace_root().join("Cargo.toml")).unwrap();
        assert!(manifest.contains("[workspace]"));
    }
}
