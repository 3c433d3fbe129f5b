//! TLS secrets reach a key log only when the configuration names one (issue 15 item 2): the
//! library reads no `SSLKEYLOGFILE`, as rustls writes a key log only with a `KeyLogFile` configured.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use chaincall_handshake::Psk;
use chaincall_tls_psk::{PskEntry, PskStore, TlsPskClient, TlsPskConfig, TlsPskServer};

/// One TLS-PSK connection over an in-memory pipe, both ends with `config`.
async fn connect_once(config: &TlsPskConfig) {
    let store = PskStore::default();
    let key = [7u8; 32];
    store.insert(
        b"phone".to_vec(),
        PskEntry {
            psk: Psk::from_bytes(key),
            peer: None,
            peer_key: None,
            expires_at: Instant::now() + Duration::from_secs(60),
        },
    );
    let server = TlsPskServer::new(config, store).unwrap();
    let client = TlsPskClient::new(config).unwrap();
    let (c, s) = tokio::io::duplex(64 * 1024);
    let (accepted, connected) = tokio::join!(server.accept(s), client.connect(c, b"phone", &key));
    accepted.unwrap();
    connected.unwrap();
}

/// The labels of a TLS 1.3 connection's secrets in `path`, one per line.
fn labels(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| l.split(' ').next().unwrap_or("").to_owned())
        .collect()
}

/// Run in a child process with `SSLKEYLOGFILE` set (a test must not change its own environment
/// while other tests' threads read it): the default configuration writes nothing there, a
/// configured file gets both ends' secrets.
#[test]
fn key_logging_is_off_unless_configured_whatever_sslkeylogfile_says() {
    const CHILD: &str = "CHAINCALL_KEYLOG_TEST_CHILD";
    let Some(dir) = std::env::var_os(CHILD) else {
        let dir = tempfile::tempdir().unwrap();
        let env_file = dir.path().join("from-env.keys");
        let status = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "key_logging_is_off_unless_configured_whatever_sslkeylogfile_says",
            ])
            .env(CHILD, dir.path())
            .env("SSLKEYLOGFILE", &env_file)
            .status()
            .unwrap();
        assert!(status.success(), "the child run failed");
        assert!(
            !env_file.exists(),
            "a library default read SSLKEYLOGFILE and wrote TLS secrets"
        );
        let configured = labels(&dir.path().join("configured.keys"));
        for label in ["CLIENT_TRAFFIC_SECRET_0", "SERVER_TRAFFIC_SECRET_0"] {
            let n = configured.iter().filter(|l| *l == label).count();
            assert_eq!(n, 2, "{label}: client and server each log it once");
        }
        return;
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        connect_once(&TlsPskConfig::default()).await;
        let configured = Path::new(&dir).join("configured.keys");
        connect_once(&TlsPskConfig {
            keylog_file: Some(configured),
            ..TlsPskConfig::default()
        })
        .await;
    });
}
