//! The control socket of a running phone (`chaincall phone call` or `listen`), through which
//! `chaincall phone hangup` ends calls from another terminal.
//!
//! A Unix stream socket beside the config (`control_socket`, default `phone.sock`), mode 0600 so
//! only the phone's own user reaches it; it needs no passphrase because it can only end calls.
//! One request line per connection — `hangup` (every call) or `hangup CALL-ID` — and one answer
//! line, `ok …` or `error …`.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot};

/// Longest request line read; anything longer is refused.
const MAX_REQUEST: u64 = 512;
/// How long a connection may take to send its request and wait for the answer.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the control socket could not be opened, or a hang-up request did not go through.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ControlError {
    /// Another phone process already answers on the socket.
    #[error(
        "another `chaincall phone call` or `listen` runs with this config and answers on {}",
        .0.display()
    )]
    InUse(PathBuf),
    /// The socket file could not be replaced, bound or restricted (`what` says which).
    #[error("cannot {what} {}", path.display())]
    Socket {
        /// What failed: "remove the stale socket", "listen on", "restrict … to its owner".
        what: &'static str,
        /// The socket's path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Nobody listens on the socket: no phone runs with this config.
    #[error(
        "no running `chaincall phone call` or `listen` for this config (cannot reach its control \
         socket {})",
        path.display()
    )]
    NotRunning {
        /// The socket's path.
        path: PathBuf,
        /// Why it could not be reached.
        source: std::io::Error,
    },
    /// The phone took longer than the request timeout to answer.
    #[error("the phone did not answer within {0:?}")]
    NoAnswer(Duration),
    /// The connection failed while asking.
    #[error("the control socket closed")]
    Closed(#[source] std::io::Error),
    /// The phone closed the connection without an answer.
    #[error("the phone closed its control socket without answering (it is stopping)")]
    Stopping,
    /// The phone answered that it could not hang up, and why.
    #[error("{0}")]
    Refused(String),
    /// The answer was not `ok …` or `error …`.
    #[error("unexpected answer from the phone: {0:?}")]
    Unexpected(String),
}

/// A hang-up request from `phone hangup`, answered with [`HangupRequest::answer`].
#[derive(Debug)]
pub struct HangupRequest {
    /// The call to end; `None` ends every call.
    pub call_id: Option<String>,
    answer: oneshot::Sender<Result<String, String>>,
}

impl HangupRequest {
    /// Tells `phone hangup` what happened (`Ok`: done, `Err`: why not).
    pub fn answer(self, outcome: Result<String, String>) {
        let _ = self.answer.send(outcome);
    }
}

/// The listening control socket; its file is removed when it is dropped.
#[derive(Debug)]
pub struct ControlSocket {
    path: PathBuf,
    requests: mpsc::Receiver<HangupRequest>,
    accept: tokio::task::JoinHandle<()>,
}

impl ControlSocket {
    /// Listens at `path`. Fails when another phone process already answers there; a file left by
    /// a process that was killed is replaced.
    pub async fn bind(path: &Path) -> Result<Self, ControlError> {
        let failed = |what| {
            move |source| ControlError::Socket {
                what,
                path: path.to_path_buf(),
                source,
            }
        };
        if path.exists() && UnixStream::connect(path).await.is_ok() {
            return Err(ControlError::InUse(path.to_path_buf()));
        }
        if path.exists() {
            std::fs::remove_file(path).map_err(failed("remove the stale socket"))?;
        }
        let listener = UnixListener::bind(path).map_err(failed("listen on"))?;
        // Only the phone's own user may end its calls.
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(failed("restrict to its owner"))?;
        let (tx, requests) = mpsc::channel(4);
        let accept = tokio::spawn(accept_loop(listener, tx));
        Ok(Self {
            path: path.to_path_buf(),
            requests,
            accept,
        })
    }

    /// [`bind`](Self::bind), or — when that fails — no socket and the warning to show: the phone
    /// works, only `phone hangup` cannot reach it. That is also the case for a second process on
    /// the same config (a `call` beside a running `listen`): the socket stays with the first.
    pub async fn bind_or_warning(path: &Path) -> (Option<Self>, Option<String>) {
        let e = match Self::bind(path).await {
            Ok(s) => return (Some(s), None),
            Err(e) => e,
        };
        // The whole chain of causes, as the CLI prints errors.
        let mut text = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(cause) = source {
            text.push_str(&format!(": {cause}"));
            source = cause.source();
        }
        let warning = format!("{text}; `chaincall phone hangup` cannot reach this process");
        (None, Some(warning))
    }

    /// The next request (never resolves once the socket has stopped).
    pub async fn next(&mut self) -> HangupRequest {
        match self.requests.recv().await {
            Some(r) => r,
            None => std::future::pending().await,
        }
    }
}

impl Drop for ControlSocket {
    fn drop(&mut self) {
        self.accept.abort();
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The next request of an optional socket (never resolves without one).
pub async fn next_request(socket: &mut Option<ControlSocket>) -> HangupRequest {
    match socket {
        Some(s) => s.next().await,
        None => std::future::pending().await,
    }
}

async fn accept_loop(listener: UnixListener, tx: mpsc::Sender<HangupRequest>) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let tx = tx.clone();
                tokio::spawn(async move {
                    let _ = tokio::time::timeout(REQUEST_TIMEOUT, serve(stream, tx)).await;
                });
            }
            // Out of file descriptors and the like: back off instead of spinning.
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

async fn serve(stream: UnixStream, tx: mpsc::Sender<HangupRequest>) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    BufReader::new(read.take(MAX_REQUEST))
        .read_line(&mut line)
        .await?;
    let outcome = match parse_request(&line) {
        Err(e) => Err(e),
        Ok(call_id) => {
            let (answer, answered) = oneshot::channel();
            if tx.send(HangupRequest { call_id, answer }).await.is_err() {
                Err("the phone is stopping".to_owned())
            } else {
                answered
                    .await
                    .unwrap_or_else(|_| Err("the phone is stopping".to_owned()))
            }
        }
    };
    let text = match outcome {
        Ok(m) => format!("ok {m}\n"),
        Err(m) => format!("error {m}\n"),
    };
    write.write_all(text.as_bytes()).await
}

/// `hangup` or `hangup CALL-ID`; the call id if one is named.
fn parse_request(line: &str) -> Result<Option<String>, String> {
    let mut words = line.split_whitespace();
    match (words.next(), words.next(), words.next()) {
        (Some("hangup"), None, None) => Ok(None),
        (Some("hangup"), Some(id), None) => Ok(Some(id.to_owned())),
        _ => Err(format!(
            "unknown request {:?}: expected `hangup [CALL-ID]`",
            line.trim()
        )),
    }
}

/// `phone hangup`: asks the phone process listening at `path` to hang up; returns its answer.
pub async fn request_hangup(path: &Path, call_id: Option<&str>) -> Result<String, ControlError> {
    let stream = UnixStream::connect(path)
        .await
        .map_err(|source| ControlError::NotRunning {
            path: path.to_path_buf(),
            source,
        })?;
    let (read, mut write) = stream.into_split();
    let request = match call_id {
        Some(id) => format!("hangup {id}\n"),
        None => "hangup\n".to_owned(),
    };
    let mut line = String::new();
    tokio::time::timeout(REQUEST_TIMEOUT, async {
        write.write_all(request.as_bytes()).await?;
        BufReader::new(read.take(4096)).read_line(&mut line).await
    })
    .await
    .map_err(|_| ControlError::NoAnswer(REQUEST_TIMEOUT))?
    .map_err(ControlError::Closed)?;
    let line = line.trim_end();
    if line.is_empty() {
        return Err(ControlError::Stopping);
    }
    if let Some(done) = line.strip_prefix("ok ") {
        Ok(done.to_owned())
    } else if let Some(why) = line.strip_prefix("error ") {
        Err(ControlError::Refused(why.to_owned()))
    } else {
        Err(ControlError::Unexpected(line.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_parse() {
        assert_eq!(parse_request("hangup\n"), Ok(None));
        assert_eq!(
            parse_request("hangup abc@host\n"),
            Ok(Some("abc@host".to_owned()))
        );
        assert!(parse_request("hangup a b\n").is_err());
        assert!(parse_request("reboot\n").is_err());
        assert!(parse_request("").is_err());
    }

    #[tokio::test]
    async fn a_request_reaches_the_phone_and_its_answer_comes_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("phone.sock");
        let mut socket = ControlSocket::bind(&path).await.unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);

        // A second process on the same config is refused.
        let err = ControlSocket::bind(&path).await.unwrap_err();
        assert!(err.to_string().contains("another"), "{err}");

        let phone = tokio::spawn(async move {
            let r = socket.next().await;
            assert_eq!(r.call_id.as_deref(), Some("c1"));
            r.answer(Ok("hung up c1".into()));
            let r = socket.next().await;
            assert_eq!(r.call_id, None);
            r.answer(Err("no call in progress".into()));
            socket
        });
        assert_eq!(
            request_hangup(&path, Some("c1")).await.unwrap(),
            "hung up c1"
        );
        let err = request_hangup(&path, None).await.unwrap_err();
        assert_eq!(err.to_string(), "no call in progress");

        // Dropping the socket removes its file; then nobody answers.
        drop(phone.await.unwrap());
        assert!(!path.exists());
        let err = request_hangup(&path, None).await.unwrap_err();
        assert!(err.to_string().contains("no running"), "{err}");
    }

    #[tokio::test]
    async fn a_stale_socket_file_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("phone.sock");
        // A killed process leaves its socket file behind, with nobody listening.
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        assert!(path.exists());
        let _socket = ControlSocket::bind(&path).await.unwrap();
        let mut s = UnixStream::connect(&path).await.unwrap();
        s.write_all(b"nonsense\n").await.unwrap();
        let mut answer = String::new();
        s.read_to_string(&mut answer).await.unwrap();
        assert!(answer.starts_with("error unknown request"), "{answer}");
    }
}
