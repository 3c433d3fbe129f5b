//! A headless `linphonec` (Debian's `linphone-cli`) for interop tests: started with its own rc
//! file, HOME and log in a directory the test owns, driven over stdin, its stdout read line by
//! line. Killed when dropped, however the test ends.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A running linphonec; killed on drop.
pub struct Linphonec {
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::Receiver<String>,
    /// Every stdout line read so far, for assertion messages.
    pub transcript: Vec<String>,
    dir: PathBuf,
}

impl Drop for Linphonec {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Linphonec {
    /// Starts `bin` with `rc` as its config, `dir` as its HOME and `dir/log` as its log (debug
    /// level 6). Panics when it cannot start: a test has nothing to check without it.
    pub fn spawn(bin: &Path, dir: &Path, rc: &str) -> Self {
        // Without its data folder liblinphone cannot open its database and never finishes
        // starting: no SIP listening point, every call fails with "no channel available".
        std::fs::create_dir_all(dir.join(".local/share/linphone")).expect("data dir");
        let rc_path = dir.join("linphonerc");
        std::fs::write(&rc_path, rc).expect("write linphonerc");
        let mut child = Command::new(bin)
            .arg("-c")
            .arg(&rc_path)
            .args(["-d", "6", "-l"])
            .arg(dir.join("log"))
            .env("HOME", dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start linphonec");
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        // A thread, so waits can time out on a channel rather than block on the pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            child,
            stdin,
            lines,
            transcript: Vec::new(),
            dir: dir.to_owned(),
        }
    }

    /// A file in linphonec's directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Sends one command line.
    pub fn command(&mut self, cmd: &str) {
        writeln!(self.stdin, "{cmd}").expect("linphonec stdin");
        self.stdin.flush().expect("linphonec stdin");
    }

    /// Lines printed since the last read, without waiting.
    pub fn new_lines(&mut self) -> Vec<String> {
        let fresh: Vec<String> = self.lines.try_iter().collect();
        self.transcript.extend(fresh.iter().cloned());
        fresh
    }

    /// Waits for a line containing `needle`; panics with the transcript and the log's tail after
    /// `limit` (a bound on a broken test, not a timing assertion).
    pub fn wait_for(&mut self, needle: &str, limit: Duration) -> String {
        let end = Instant::now() + limit;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.transcript.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(_) => panic!(
                    "linphonec never printed {needle:?}; stdout:\n{}\nlog tail:\n{}",
                    self.transcript.join("\n"),
                    self.log_tail()
                ),
            }
        }
    }

    /// The last 60 lines of linphonec's log.
    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.path("log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(60)..].join("\n")
    }

    /// Asks linphonec to quit and waits (up to 2 s) for it to exit, so files it writes are
    /// complete.
    pub fn quit(&mut self) {
        self.command("quit");
        let end = Instant::now() + Duration::from_secs(2);
        while Instant::now() < end {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The SAS in linphonec's "Call N is fully encrypted and auth token is XXXX." line.
pub fn auth_token(line: &str) -> &str {
    let (_, rest) = line
        .split_once("auth token is ")
        .unwrap_or_else(|| panic!("no auth token in {line:?}"));
    rest.trim_end().trim_end_matches('.')
}
