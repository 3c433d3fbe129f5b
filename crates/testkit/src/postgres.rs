//! A throwaway PostgreSQL server for tests: Debian's binaries, `initdb` into a temporary
//! directory, its own port on 127.0.0.1, trust authentication, run as the `postgres` user when
//! the tests run as root. Stopped and deleted when the guard drops; never assumed running.
//!
//! ```no_run
//! # fn demo() {
//! let Some(pg) = chaincall_testkit::postgres::Postgres::start() else { return };
//! let url = pg.url("postgres"); // postgres://postgres@127.0.0.1:PORT/postgres
//! # let _ = url;
//! # }
//! ```

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A running throwaway server; stopped (and its data deleted) on drop.
#[derive(Debug)]
pub struct Postgres {
    child: Option<Child>,
    dir: PathBuf,
    port: u16,
    server: PathBuf,
    root: bool,
}

/// How long the server may take to accept connections after it is started.
const START_WITHIN: Duration = Duration::from_secs(30);

impl Postgres {
    /// Starts a server, applying the skip-or-fail rule of [`crate::peer`]: `None` (with a skip
    /// line) when PostgreSQL is not installed; with `CHAINCALL_REQUIRE_PEERS=1` that panics, as
    /// does a server that is installed but does not start.
    pub fn start() -> Option<Postgres> {
        let (Some(initdb), Some(server)) = (pg_bin("initdb"), pg_bin("postgres")) else {
            return crate::missing("postgresql (initdb, postgres)");
        };
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "chaincall-pg-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let root = is_root();
        let fail = |what: &str| -> Option<Postgres> {
            panic!(
                "PostgreSQL is installed but {what} (data in {})",
                dir.display()
            )
        };
        if std::fs::create_dir_all(&dir).is_err() {
            return fail("its temporary directory cannot be made");
        }
        if root
            && !Command::new("chown")
                .arg("postgres:")
                .arg(&dir)
                .status()
                .is_ok_and(|s| s.success())
        {
            return fail("the temporary directory cannot be given to the postgres user");
        }
        let ok = as_user(root, &initdb)
            .args(["-A", "trust", "-U", "postgres", "-D"])
            .arg(dir.join("data"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            return fail("initdb failed");
        }
        let mut pg = Postgres {
            child: None,
            dir,
            port: crate::free_tcp_port(),
            server,
            root,
        };
        assert!(
            pg.run(),
            "PostgreSQL is installed but the server did not accept connections (data in {})",
            pg.dir.display()
        );
        Some(pg)
    }

    /// Starts the server process on the data directory and port; true once it accepts
    /// connections.
    fn run(&mut self) -> bool {
        let child = as_user(self.root, &self.server)
            .arg("-D")
            .arg(self.dir.join("data"))
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-k"])
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let Ok(child) = child else { return false };
        self.child = Some(child);
        let deadline = Instant::now() + START_WITHIN;
        // Accepting TCP is not enough: the server refuses sessions while it starts up, so wait
        // until a startup message gets an authentication answer ('R').
        while !answers(self.port) {
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        true
    }

    /// The port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL of `database` as the `postgres` superuser (no password: trust authentication).
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// Stops the server (fast shutdown), keeping its data: connections fail until
    /// [`Postgres::restart`].
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        // SIGINT is PostgreSQL's fast shutdown (SIGKILL would leave its shared memory and
        // children). It goes to the postmaster named in its pid file: our child may be
        // `runuser`, which does not pass SIGINT on.
        let pid = std::fs::read_to_string(self.dir.join("data/postmaster.pid"))
            .ok()
            .and_then(|s| s.lines().next().map(|l| l.trim().to_owned()))
            .filter(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
        let signalled = pid.is_some_and(|pid| {
            Command::new("kill")
                .args(["-INT", &pid])
                .status()
                .is_ok_and(|s| s.success())
        });
        if !signalled {
            // Not started far enough to write its pid file: nothing to shut down cleanly.
            let _ = child.kill();
        }
        let _ = child.wait();
    }

    /// Starts the stopped server again on the same data and port.
    ///
    /// # Panics
    /// When it does not come back.
    pub fn restart(&mut self) {
        self.stop();
        assert!(
            self.run(),
            "PostgreSQL did not restart on port {}",
            self.port
        );
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Whether a PostgreSQL server on `port` answers a startup message.
fn answers(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    // Protocol 3.0 startup: user=postgres, database=postgres.
    let mut body = Vec::new();
    body.extend_from_slice(&196_608u32.to_be_bytes());
    for kv in ["user", "postgres", "database", "postgres"] {
        body.extend_from_slice(kv.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut msg = ((body.len() + 4) as u32).to_be_bytes().to_vec();
    msg.extend_from_slice(&body);
    let mut first = [0u8; 1];
    s.write_all(&msg).is_ok() && s.read_exact(&mut first).is_ok() && first[0] == b'R'
}

/// A PostgreSQL server binary: Debian keeps them under /usr/lib/postgresql/VERSION/bin.
/// Whether Debian's PostgreSQL server (`initdb`, `postgres`) is installed, for tests that have
/// another program start one (`chaincall bench sipd --location postgres`); when it is not, says
/// so as a missing peer does (a failure with `CHAINCALL_REQUIRE_PEERS=1`).
pub fn installed() -> bool {
    if pg_bin("initdb").is_some() && pg_bin("postgres").is_some() {
        return true;
    }
    crate::missing::<()>("postgresql (initdb, postgres)");
    false
}

fn pg_bin(name: &str) -> Option<PathBuf> {
    let versions = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .map(|e| e.path().join("bin").join(name));
    versions
        .chain(crate::find_executable(name))
        .find(|p| p.exists())
}

/// `program`, run as the `postgres` user when we are root (PostgreSQL refuses to run as root).
fn as_user(root: bool, program: &Path) -> Command {
    if root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

fn is_root() -> bool {
    // No libc: ask `id -u`.
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The guard's life cycle as tests use it: answers once started, not while stopped, again on
    /// the same port after a restart, and leaves nothing behind when dropped.
    #[test]
    fn a_server_starts_stops_restarts_and_is_removed_on_drop() {
        let Some(mut pg) = Postgres::start() else {
            return;
        };
        let (port, dir) = (pg.port(), pg.dir.clone());
        assert!(answers(port));
        assert_eq!(
            pg.url("db"),
            format!("postgres://postgres@127.0.0.1:{port}/db")
        );
        pg.stop();
        assert!(!answers(port), "stopped");
        pg.restart();
        assert!(answers(port), "back on its port");
        drop(pg);
        assert!(!answers(port), "stopped on drop");
        assert!(!dir.exists(), "its data deleted");
    }
}
