//! Starting rtpengine in the foreground for tests and the demo: userspace forwarding only, no
//! configuration file, its log kept in memory, killed on drop.

use std::io::Read;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::client::{NgClient, NgClientConfig};

/// How much of rtpengine's log is kept (the end of it).
const LOG_KEEP: usize = 64 * 1024;

/// How to run rtpengine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RtpengineConfig {
    /// The `rtpengine` executable.
    pub binary: PathBuf,
    /// The address it relays media on (`--interface`) and puts in the SDP.
    pub interface: IpAddr,
    /// Its NG control address (`--listen-ng`, UDP).
    pub ng: SocketAddr,
    /// The media ports it may allocate, inclusive (`--port-min`, `--port-max`).
    pub ports: (u16, u16),
}

impl RtpengineConfig {
    /// The command line, without the executable.
    ///
    /// `--config-file=none` keeps the Debian package's `/etc/rtpengine/rtpengine.conf` (kernel
    /// table 0, HTTP and CLI listeners) out; `--table=-1` is userspace forwarding without the kernel
    /// module; `--delete-delay=0` makes a deleted call vanish at once, so `list` shows what is live.
    pub fn args(&self) -> Vec<String> {
        vec![
            "--config-file=none".into(),
            "--foreground".into(),
            "--table=-1".into(),
            format!("--interface={}", self.interface),
            format!("--listen-ng={}", self.ng),
            format!("--port-min={}", self.ports.0),
            format!("--port-max={}", self.ports.1),
            "--delete-delay=0".into(),
            "--log-stderr".into(),
            "--log-level=6".into(),
        ]
    }

    /// A command running rtpengine with [`Self::args`] (wrap it to run it elsewhere, e.g. in a
    /// network namespace, and pass that to [`Rtpengine::spawn`]).
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(&self.binary);
        cmd.args(self.args());
        cmd
    }
}

/// Why rtpengine could not be started.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The process did not start.
    #[error("cannot start rtpengine")]
    Spawn(#[source] std::io::Error),
    /// It exited before answering a ping.
    #[error("rtpengine exited before it was ready ({status}); its log:\n{log}")]
    Exited {
        /// Its exit status.
        status: std::process::ExitStatus,
        /// The end of its log.
        log: String,
    },
    /// It did not answer a ping in time.
    #[error("rtpengine did not answer a ping on {ng} within {waited:?}; its log:\n{log}")]
    NotReady {
        /// The NG address pinged.
        ng: SocketAddr,
        /// How long we tried.
        waited: Duration,
        /// The end of its log.
        log: String,
    },
}

/// A running rtpengine, killed (and reaped) on drop.
#[derive(Debug)]
pub struct Rtpengine {
    child: Child,
    ng: SocketAddr,
    log: Arc<Mutex<Vec<u8>>>,
}

impl Rtpengine {
    /// Spawns `cmd` (rtpengine as [`RtpengineConfig::command`] builds it) and waits up to `ready`
    /// for it to answer a ping on `ng`.
    ///
    /// # Errors
    /// When it cannot start, exits, or does not answer in time (with its log).
    pub async fn spawn(
        mut cmd: Command,
        ng: SocketAddr,
        ready: Duration,
    ) -> Result<Self, DaemonError> {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(DaemonError::Spawn)?;
        let log = Arc::new(Mutex::new(Vec::new()));
        if let Some(mut stderr) = child.stderr.take() {
            let log = Arc::clone(&log);
            // A reader thread: the pipe must be drained or rtpengine blocks on a full one.
            std::thread::spawn(move || {
                let mut chunk = [0u8; 4096];
                while let Ok(n @ 1..) = stderr.read(&mut chunk) {
                    let mut log = log.lock().unwrap_or_else(|e| e.into_inner());
                    log.extend_from_slice(&chunk[..n]);
                    let excess = log.len().saturating_sub(LOG_KEEP);
                    log.drain(..excess);
                }
            });
        }
        let mut daemon = Self { child, ng, log };
        let probe = NgClient::new(
            ng,
            NgClientConfig {
                timeout: Duration::from_millis(200),
                ..NgClientConfig::default()
            },
        );
        let deadline = tokio::time::Instant::now() + ready;
        loop {
            if let Ok(Some(status)) = daemon.child.try_wait() {
                return Err(DaemonError::Exited {
                    status,
                    log: daemon.log(),
                });
            }
            if probe.ping().await.is_ok() {
                return Ok(daemon);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(DaemonError::NotReady {
                    ng,
                    waited: ready,
                    log: daemon.log(),
                });
            }
        }
    }

    /// Its NG control address.
    pub fn ng(&self) -> SocketAddr {
        self.ng
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The end of its log so far (for failure messages).
    pub fn log(&self) -> String {
        let log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        String::from_utf8_lossy(&log).into_owned()
    }
}

impl Drop for Rtpengine {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
