//! Interop with OpenSSL's own tools, both ways, TLS 1.3 and TLS 1.2, with real application data:
//! our client ↔ `openssl s_server -psk`, and `openssl s_client -psk` ↔ our server.
//! Required in CI (`CHAINCALL_REQUIRE_PEERS=1`): a missing `openssl` binary fails these tests.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use chaincall_handshake::Psk;
use chaincall_tls_psk::{
    PskEntry, PskStore, TlsPskClient, TlsPskConfig, TlsPskError, TlsPskServer,
};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, Command};

const KEY: [u8; 32] = [
    0x1f, 0x2e, 0x3d, 0x4c, 0x5b, 0x6a, 0x79, 0x88, 0x97, 0xa6, 0xb5, 0xc4, 0xd3, 0xe2, 0xf1, 0x00,
    0x0f, 0x1e, 0x2d, 0x3c, 0x4b, 0x5a, 0x69, 0x78, 0x87, 0x96, 0xa5, 0xb4, 0xc3, 0xd2, 0xe1, 0xf0,
];
const ID: &str = "chaincall-interop";

fn openssl() -> Option<PathBuf> {
    chaincall_testkit::peer("openssl")
}

/// Starts `openssl s_server -rev` (echoes each line reversed) and waits until it listens.
async fn s_server(openssl: &Path, port: u16, extra: &[&str]) -> Child {
    let mut child = Command::new(openssl)
        .args(["s_server", "-accept"])
        .arg(format!("127.0.0.1:{port}"))
        .args(["-nocert", "-psk", &hex::encode(KEY), "-psk_identity", ID])
        .args(["-rev", "-naccept", "1"])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn openssl s_server");
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let ready = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.contains("ACCEPT") {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(ready, Ok(true), "s_server did not start listening");
    // Keep draining its output so it never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    child
}

async fn our_client_against_s_server(config: TlsPskConfig, extra: &[&str], expect_version: &str) {
    let Some(openssl) = openssl() else { return };
    let port = chaincall_testkit::free_tcp_port();
    let _server = s_server(&openssl, port, extra).await;
    let client = TlsPskClient::new(&config).unwrap();
    let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let mut tls = client.connect(tcp, ID.as_bytes(), &KEY).await.unwrap();
    assert_eq!(tls.version(), expect_version);
    tls.write_all(b"chaincall over TLS-PSK\n").await.unwrap();
    tls.flush().await.unwrap();
    let mut reply = vec![0u8; 23];
    tokio::time::timeout(Duration::from_secs(10), tls.read_exact(&mut reply))
        .await
        .expect("s_server answers")
        .unwrap();
    assert_eq!(&reply, b"KSP-SLT revo llacniahc\n");
    // psk_dhe_ke / ECDHE-PSK: an ephemeral key exchange was made on top of the PSK.
    assert!(
        tls.ephemeral_key_exchange(),
        "{expect_version}: no (EC)DHE on top of the PSK"
    );
}

#[tokio::test]
async fn our_client_to_s_server_tls13() {
    our_client_against_s_server(TlsPskConfig::default(), &["-tls1_3"], "TLSv1.3").await;
}

#[tokio::test]
async fn our_client_to_s_server_tls12_ecdhe_psk() {
    our_client_against_s_server(
        TlsPskConfig::default(),
        &["-tls1_2", "-cipher", "ECDHE-PSK-CHACHA20-POLY1305"],
        "TLSv1.2",
    )
    .await;
}

#[tokio::test]
async fn our_tls12_only_client_to_s_server_plain_psk_suite() {
    // RFC 4279 PSK-AES128-GCM-SHA256: no ephemeral exchange, so check the cipher instead.
    let Some(openssl) = openssl() else { return };
    let port = chaincall_testkit::free_tcp_port();
    let _server = s_server(
        &openssl,
        port,
        &["-tls1_2", "-cipher", "PSK-AES128-GCM-SHA256"],
    )
    .await;
    let client = TlsPskClient::new(&TlsPskConfig::tls12_only()).unwrap();
    let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let mut tls = client.connect(tcp, ID.as_bytes(), &KEY).await.unwrap();
    assert_eq!(tls.version(), "TLSv1.2");
    assert_eq!(tls.cipher(), Some("PSK-AES128-GCM-SHA256"));
    tls.write_all(b"abc\n").await.unwrap();
    let mut reply = [0u8; 4];
    tls.read_exact(&mut reply).await.unwrap();
    assert_eq!(&reply, b"cba\n");
}

#[tokio::test]
async fn a_wrong_key_fails_against_s_server() {
    let Some(openssl) = openssl() else { return };
    let port = chaincall_testkit::free_tcp_port();
    let _server = s_server(&openssl, port, &["-tls1_3"]).await;
    let client = TlsPskClient::new(&TlsPskConfig::default()).unwrap();
    let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let mut wrong = KEY;
    wrong[0] ^= 1;
    assert!(client.connect(tcp, ID.as_bytes(), &wrong).await.is_err());
}

/// Runs `openssl s_client -psk` against our server, sending one line; returns (client stdout, server
/// result, server-received line).
async fn s_client_against_our_server(
    store: PskStore,
    config: TlsPskConfig,
    identity: &str,
    extra: &[&str],
) -> (String, Result<(String, String), TlsPskError>) {
    let openssl = openssl().expect("checked by caller");
    let server = TlsPskServer::new(&config, store).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let serve = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut tls = server.accept(tcp).await?;
        let mut line = Vec::new();
        let mut byte = [0u8; 1];
        while byte[0] != b'\n' && line.len() < 200 {
            tls.read_exact(&mut byte).await?;
            line.push(byte[0]);
        }
        tls.write_all(b"200 OK from chaincall\n").await?;
        tls.shutdown().await.ok();
        Ok::<_, TlsPskError>((
            String::from_utf8_lossy(&line).into_owned(),
            tls.version().to_string(),
        ))
    });
    let mut child = Command::new(&openssl)
        .args(["s_client", "-connect"])
        .arg(format!("127.0.0.1:{port}"))
        .args([
            "-psk",
            &hex::encode(KEY),
            "-psk_identity",
            identity,
            "-quiet",
        ])
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn openssl s_client");
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(b"REGISTER sip:example.org\n")
        .await
        .unwrap();
    let out = tokio::time::timeout(Duration::from_secs(15), child.wait_with_output())
        .await
        .expect("s_client finishes")
        .unwrap();
    drop(stdin);
    let served = tokio::time::timeout(Duration::from_secs(15), serve)
        .await
        .expect("server finishes")
        .unwrap();
    (String::from_utf8_lossy(&out.stdout).into_owned(), served)
}

fn store_with(identity: &str, expires_in: Duration) -> PskStore {
    let store = PskStore::default();
    store.insert(
        identity.as_bytes().to_vec(),
        PskEntry {
            psk: Psk::from_bytes(KEY),
            peer: None,
            peer_key: None,
            expires_at: Instant::now() + expires_in,
        },
    );
    store
}

#[tokio::test]
async fn s_client_to_our_server_tls13_and_tls12() {
    if openssl().is_none() {
        return;
    }
    for (flags, version) in [
        (vec!["-tls1_3"], "TLSv1.3"),
        (vec!["-tls1_2"], "TLSv1.2"),
        (
            vec!["-tls1_2", "-cipher", "PSK-AES128-GCM-SHA256"],
            "TLSv1.2",
        ),
    ] {
        let store = store_with(ID, Duration::from_secs(60));
        let (stdout, served) =
            s_client_against_our_server(store, TlsPskConfig::default(), ID, &flags).await;
        let (line, got_version) = served.unwrap_or_else(|e| panic!("{flags:?}: {e}"));
        assert_eq!(line, "REGISTER sip:example.org\n");
        assert_eq!(got_version, version);
        assert!(
            stdout.contains("200 OK from chaincall"),
            "{flags:?}: s_client got {stdout:?}"
        );
    }
}

#[tokio::test]
async fn our_server_refuses_an_expired_or_unknown_psk_from_s_client() {
    if openssl().is_none() {
        return;
    }
    let store = store_with(ID, Duration::from_millis(200));
    tokio::time::sleep(Duration::from_millis(300)).await;
    for flags in [vec!["-tls1_3"], vec!["-tls1_2"]] {
        let store = if flags[0] == "-tls1_3" {
            store.clone()
        } else {
            store_with(ID, Duration::ZERO)
        };
        let (stdout, served) =
            s_client_against_our_server(store, TlsPskConfig::default(), ID, &flags).await;
        match served {
            Err(TlsPskError::PskExpired(id)) => assert_eq!(id, ID),
            other => panic!("{flags:?}: expired PSK not refused: {other:?}"),
        }
        assert!(!stdout.contains("200 OK"));
    }
    let (_, served) = s_client_against_our_server(
        store_with(ID, Duration::from_secs(60)),
        TlsPskConfig::default(),
        "someone-else",
        &["-tls1_3"],
    )
    .await;
    assert!(matches!(served, Err(TlsPskError::UnknownPskIdentity(id)) if id == "someone-else"));
}

#[tokio::test]
async fn keylog_lines_match_openssl_s_client() {
    // SSLKEYLOGFILE support: our server writes the NSS key log, and its secrets are the very ones
    // s_client logs for the same connection (so tshark can decrypt SIP over TLS-PSK).
    if openssl().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let ours = dir.path().join("server.keys");
    let theirs = dir.path().join("client.keys");
    let config = TlsPskConfig {
        keylog_file: Some(ours.clone()),
        ..TlsPskConfig::default()
    };
    let theirs_s = theirs.to_string_lossy().into_owned();
    let (_, served) = s_client_against_our_server(
        store_with(ID, Duration::from_secs(60)),
        config,
        ID,
        &["-tls1_3", "-keylogfile", &theirs_s],
    )
    .await;
    served.unwrap();
    let ours = std::fs::read_to_string(ours).unwrap();
    let theirs = std::fs::read_to_string(theirs).unwrap();
    let secret_lines = |s: &str| {
        let mut v: Vec<String> = s
            .lines()
            .filter(|l| l.contains("TRAFFIC_SECRET"))
            .map(str::to_owned)
            .collect();
        v.sort();
        v
    };
    assert_eq!(secret_lines(&ours).len(), 4, "{ours}");
    assert_eq!(secret_lines(&ours), secret_lines(&theirs));
}
