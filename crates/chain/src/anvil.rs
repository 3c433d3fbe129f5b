//! A local anvil node as a child process: for tests, and for trying the CLI against a real node.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// An anvil process on 127.0.0.1, killed (and reaped) on drop.
#[derive(Debug)]
pub struct AnvilProcess {
    child: Child,
    port: u16,
}

impl AnvilProcess {
    /// Starts `anvil --host 127.0.0.1 --port PORT` plus `extra_args` and waits (up to 20 s) until it
    /// answers JSON-RPC.
    pub fn spawn(anvil: &Path, port: u16, extra_args: &[&str]) -> std::io::Result<Self> {
        let child = Command::new(anvil)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(extra_args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let mut node = Self { child, port };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if node.answers() {
                return Ok(node);
            }
            if let Some(status) = node.child.try_wait()? {
                return Err(std::io::Error::other(format!(
                    "anvil exited early ({status}); is port {port} taken?"
                )));
            }
            if Instant::now() >= deadline {
                return Err(std::io::Error::other(
                    "anvil did not answer within 20 s".to_owned(),
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The HTTP JSON-RPC endpoint.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// True once `eth_chainId` gets an HTTP 200 answer.
    fn answers(&self) -> bool {
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
            return false;
        };
        let body = r#"{"jsonrpc":"2.0","id":1,"method":"eth_chainId","params":[]}"#;
        let request = format!(
            "POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
        if stream.write_all(request.as_bytes()).is_err() {
            return false;
        }
        let mut reply = String::new();
        let _ = stream.read_to_string(&mut reply);
        reply.starts_with("HTTP/1.1 200") && reply.contains("result")
    }
}

impl Drop for AnvilProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
