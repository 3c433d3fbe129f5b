//! A PSK identity is whatever bytes the TLS client sends: when the server logs it, or puts it in
//! an error that its caller logs, control characters must not reach the log raw (a CR/LF forges
//! log lines, an ESC drives the operator's terminal).

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chaincall_handshake::Psk;
use chaincall_tls_psk::{
    PskEntry, PskStore, TlsPskClient, TlsPskConfig, TlsPskError, TlsPskServer,
};

/// The log as written, shared with the subscriber's writer.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// An identity that, logged raw, would end the line, forge an ERROR line and clear the screen.
const HOSTILE: &[u8] = b"x\r\n2026-01-01T00:00:00Z ERROR forged: admin logged in\x1b[2J\xff";

fn assert_no_raw_controls(log: &str) {
    assert!(!log.contains('\r'), "raw CR in the log: {log:?}");
    assert!(!log.contains('\x1b'), "raw ESC in the log: {log:?}");
    assert!(
        !log.lines()
            .any(|l| l.starts_with("2026-01-01T00:00:00Z ERROR forged")),
        "a forged log line: {log:?}"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn a_hostile_psk_identity_is_escaped_in_logs_and_errors() {
    let log = Captured::default();
    let writer = log.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::DEBUG)
        .finish();
    // The test runs on one thread, so the server's events all reach this subscriber.
    let _guard = tracing::subscriber::set_default(subscriber);

    let config = TlsPskConfig::default();
    let store = PskStore::default();
    let key = [9u8; 32];
    store.insert(
        HOSTILE.to_vec(),
        PskEntry {
            psk: Psk::from_bytes(key),
            peer: None,
            peer_key: None,
            expires_at: Instant::now() + Duration::from_secs(60),
        },
    );
    let server = TlsPskServer::new(&config, store).unwrap();
    let client = TlsPskClient::new(&config).unwrap();

    // Accepted: the server logs the identity (debug).
    let (c, s) = tokio::io::duplex(64 * 1024);
    let (accepted, connected) = tokio::join!(server.accept(s), client.connect(c, HOSTILE, &key));
    connected.unwrap();
    assert_eq!(accepted.unwrap().psk_identity(), HOSTILE);
    let text = log.text();
    let line = text
        .lines()
        .find(|l| l.contains("TLS-PSK accepted"))
        .unwrap_or_else(|| panic!("no accept line in {text:?}"));
    assert!(
        line.contains("admin logged in"),
        "the identity stays on its line: {line:?}"
    );
    assert_no_raw_controls(&text);

    // Unknown: the identity travels in the error, which a server logs as sipd does.
    let unknown = [HOSTILE, b"-unknown"].concat();
    let (c, s) = tokio::io::duplex(64 * 1024);
    let (refused, _) = tokio::join!(server.accept(s), client.connect(c, &unknown, &key));
    let err = refused.unwrap_err();
    assert!(matches!(err, TlsPskError::UnknownPskIdentity(_)), "{err:?}");
    let shown = err.to_string();
    assert!(!shown.chars().any(char::is_control), "{shown:?}");
    tracing::warn!(error = %err, "TLS-PSK connection refused");
    assert_no_raw_controls(&log.text());
}
