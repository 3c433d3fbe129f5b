//! The handshake and TLS-PSK together over loopback TCP: both protocols, reconnecting with a stored
//! PSK, expiry, revoked keys, replays and hostile bytes on the wire.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chaincall_handshake::{
    AlertCode, Established, HandshakeConfig, HandshakeError, Initiator, LocalIdentity, Protocol,
};
use chaincall_identity::{
    DirectoryEntry, DirectoryError, IdentityKey, IdentityName, KeyDirectory, KeyStatus,
    StaticDirectory,
};
use chaincall_tls_psk::{
    HandshakeService, PskServer, PskStore, TlsPskClient, TlsPskConfig, TlsPskError, TlsPskStream,
    connect_with_handshake, transport,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

struct Net {
    phone: LocalIdentity,
    server: LocalIdentity,
    dir: StaticDirectory,
}

fn net() -> Net {
    let mk = |s: &str| {
        LocalIdentity::new(
            IdentityName::parse(s).unwrap(),
            Arc::new(IdentityKey::generate()),
        )
    };
    let (phone, server) = (mk("+15551230001"), mk("sip.example.org"));
    let mut dir = StaticDirectory::new();
    dir.approve(phone.name().clone(), phone.key().public());
    dir.approve(server.name().clone(), server.key().public());
    Net { phone, server, dir }
}

/// Serves `n` connections: each echoes one line back upper-cased. Returns the port and a handle
/// yielding each connection's result (peer name or error).
async fn serve(
    server: PskServer,
    n: usize,
) -> (
    u16,
    tokio::task::JoinHandle<Vec<Result<Option<IdentityName>, TlsPskError>>>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let handle = tokio::spawn(async move {
        let mut results = Vec::new();
        for _ in 0..n {
            let (tcp, _) = listener.accept().await.unwrap();
            let r = async {
                let (mut tls, _) = server.accept(tcp).await?;
                let mut buf = [0u8; 64];
                let k = tls.read(&mut buf).await?;
                tls.write_all(&buf[..k].to_ascii_uppercase()).await?;
                tls.flush().await?;
                Ok(tls.peer().cloned())
            }
            .await;
            results.push(r);
        }
        results
    });
    (port, handle)
}

fn service(n: &Net, dir: StaticDirectory, config: HandshakeConfig) -> HandshakeService {
    HandshakeService::new(config, n.server.clone(), Arc::new(dir))
}

/// A handshake-then-TLS server as `n.server` (initiators' keys from `dir`, PSKs kept in `store`)
/// serving `conns` connections; see [`serve`].
async fn start(
    n: &Net,
    dir: StaticDirectory,
    config: HandshakeConfig,
    store: PskStore,
    conns: usize,
) -> (
    u16,
    tokio::task::JoinHandle<Vec<Result<Option<IdentityName>, TlsPskError>>>,
) {
    let server = PskServer::new(
        &TlsPskConfig::default(),
        store,
        Some(service(n, dir, config)),
    )
    .unwrap();
    serve(server, conns).await
}

/// Connects to `port` as the phone: the handshake with protocol `p`, then TLS with its PSK.
async fn dial(
    n: &Net,
    p: Protocol,
    port: u16,
    client: &TlsPskClient,
) -> Result<(TlsPskStream<TcpStream>, Established), TlsPskError> {
    let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let init = initiator(n, p, HandshakeConfig::default());
    connect_with_handshake(tcp, init, Duration::from_secs(5), client).await
}

fn initiator(n: &Net, p: Protocol, config: HandshakeConfig) -> Initiator {
    Initiator::new(
        config,
        n.phone.clone(),
        n.server.name().clone(),
        p,
        &n.dir,
        Instant::now(),
    )
    .unwrap()
}

async fn echo(tls: &mut (impl AsyncReadExt + AsyncWriteExt + Unpin), msg: &[u8]) -> Vec<u8> {
    tls.write_all(msg).await.unwrap();
    tls.flush().await.unwrap();
    let mut buf = vec![0u8; msg.len()];
    tls.read_exact(&mut buf).await.unwrap();
    buf
}

#[tokio::test]
async fn handshake_then_tls_on_one_connection_then_reconnect_with_the_psk() {
    let n = net();
    for p in [Protocol::Sts, Protocol::Nsl] {
        let store = PskStore::default();
        let (port, results) = start(
            &n,
            n.dir.clone(),
            HandshakeConfig::default(),
            store.clone(),
            2,
        )
        .await;
        let client = TlsPskClient::new(&TlsPskConfig::default()).unwrap();
        let (mut tls, est) = dial(&n, p, port, &client).await.unwrap();
        assert_eq!(tls.version(), "TLSv1.3");
        assert!(tls.ephemeral_key_exchange(), "psk_dhe_ke expected");
        assert_eq!(echo(&mut tls, b"register\n").await, b"REGISTER\n");
        assert_eq!(&est.peer, n.server.name());
        // A second connection skips the handshake and goes straight to TLS with the stored PSK.
        let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let mut again = client.connect_established(tcp, &est).await.unwrap();
        assert_eq!(echo(&mut again, b"invite\n").await, b"INVITE\n");
        let results = results.await.unwrap();
        for r in results {
            assert_eq!(
                r.unwrap().as_ref(),
                Some(n.phone.name()),
                "{p}: server sees the phone"
            );
        }
        assert_eq!(store.len(), 1);
    }
}

#[tokio::test]
async fn a_psk_from_an_expired_handshake_is_refused_by_the_tls_server() {
    let n = net();
    let short = HandshakeConfig {
        psk_lifetime: Duration::from_secs(1),
        ..HandshakeConfig::default()
    };
    let (port, results) = start(&n, n.dir.clone(), short.clone(), PskStore::default(), 2).await;
    let client = TlsPskClient::new(&TlsPskConfig::default()).unwrap();
    let (mut tls, est) = dial(&n, Protocol::Sts, port, &client).await.unwrap();
    assert_eq!(
        est.lifetime,
        Duration::from_secs(1),
        "the responder's shorter lifetime wins"
    );
    assert_eq!(echo(&mut tls, b"x").await, b"X");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    // The client refuses locally, before any byte is sent ...
    let (unused, _) = tokio::io::duplex(64);
    assert!(matches!(
        client.connect_established(unused, &est).await,
        Err(TlsPskError::LocalPskExpired)
    ));
    // ... and a client that offers it anyway is refused by the server.
    let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let offered = client
        .connect(
            tcp,
            est.identity.to_hex().as_bytes(),
            est.psk.dangerous_as_bytes(),
        )
        .await;
    assert!(offered.is_err());
    let results = results.await.unwrap();
    assert!(results[0].is_ok());
    assert!(
        matches!(&results[1], Err(TlsPskError::PskExpired(id)) if *id == est.identity.to_hex()),
        "{:?}",
        results[1]
    );
}

#[tokio::test]
async fn a_revoked_phone_gets_no_psk() {
    let n = net();
    let mut revoked = n.dir.clone();
    revoked.revoke(n.phone.name());
    let store = PskStore::default();
    let (port, results) = start(&n, revoked, HandshakeConfig::default(), store.clone(), 1).await;
    let client = TlsPskClient::new(&TlsPskConfig::default()).unwrap();
    let err = dial(&n, Protocol::Sts, port, &client).await.unwrap_err();
    assert!(
        matches!(
            err,
            TlsPskError::Handshake(HandshakeError::PeerAborted(AlertCode::UnknownIdentity))
        ),
        "{err}"
    );
    let results = results.await.unwrap();
    assert!(
        matches!(
            &results[0],
            Err(TlsPskError::Handshake(HandshakeError::Directory(
                DirectoryError::NotApproved {
                    status: KeyStatus::Revoked,
                    ..
                }
            )))
        ),
        "{:?}",
        results[0]
    );
    assert!(store.is_empty());
}

#[tokio::test]
async fn a_replayed_message_1_on_the_wire_is_refused() {
    let n = net();
    let (port, results) = start(
        &n,
        n.dir.clone(),
        HandshakeConfig::default(),
        PskStore::default(),
        2,
    )
    .await;
    let mut init = initiator(&n, Protocol::Nsl, HandshakeConfig::default());
    let msg1 = init.poll_output().into_transmit().unwrap().contents;
    for attempt in 0..2 {
        let mut tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        tcp.write_all(&msg1).await.unwrap();
        let mut buf = Vec::new();
        transport::read_frame(&mut tcp, &mut buf).await.unwrap();
        if attempt == 0 {
            assert_eq!(buf[0], 0x02, "message 2 to the first copy");
        } else {
            assert_eq!(
                buf,
                chaincall_handshake::wire::encode_alert(AlertCode::Replay)
            );
        }
    }
    let results = results.await.unwrap();
    assert!(matches!(
        &results[1],
        Err(TlsPskError::Handshake(HandshakeError::Replay))
    ));
}

#[tokio::test]
async fn hostile_bytes_are_refused_quickly_with_a_clear_error() {
    let n = net();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("oversized", vec![0x11, 1, 0xff, 0xff]),
        ("bad version", vec![0x11, 9, 0, 50]),
        ("not ours", b"GET / HTTP/1.1\r\n\r\n".to_vec()),
        ("truncated", vec![0x11, 1, 0, 100, 2, 3]),
    ];
    let (port, results) = start(
        &n,
        n.dir.clone(),
        HandshakeConfig::default(),
        PskStore::default(),
        cases.len(),
    )
    .await;
    for (_, bytes) in &cases {
        let mut tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        tcp.write_all(bytes).await.unwrap();
        // Close our side, so the truncated frame ends in EOF rather than waiting for the timeout.
        tcp.shutdown().await.unwrap();
        let mut sink = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut sink)).await;
    }
    // "Quickly" is shown by what each ended with (a parse error or EOF, never the handshake
    // timeout), not by a wall-clock bound that a loaded machine could break.
    let results = results.await.unwrap();
    let shown: Vec<String> = results
        .iter()
        .map(|r| chaincall_io::ErrorChain(r.as_ref().unwrap_err()).to_string())
        .collect();
    assert!(shown[0].contains("oversized"), "{}", shown[0]);
    assert!(
        shown[1].contains("unsupported handshake version 9"),
        "{}",
        shown[1]
    );
    assert!(
        shown[2].contains("neither TLS nor a chaincall handshake"),
        "{}",
        shown[2]
    );
    assert!(
        shown[3].contains("closed the connection during the handshake"),
        "{}",
        shown[3]
    );
}

#[tokio::test]
async fn a_silent_peer_times_out() {
    let n = net();
    let config = HandshakeConfig {
        handshake_timeout: Duration::from_millis(300),
        ..HandshakeConfig::default()
    };
    let svc = service(&n, n.dir.clone(), config);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let h = tokio::spawn(async move {
        let (mut tcp, _) = listener.accept().await.unwrap();
        svc.respond(&mut tcp).await
    });
    let _silent = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let r = tokio::time::timeout(Duration::from_secs(5), h)
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(r, Err(TlsPskError::Timeout("handshake"))), "{r:?}");
}

#[tokio::test]
async fn providers_interoperate_on_the_wire() {
    // One suite, every backend: a RustCrypto phone against an OpenSSL server and the other way round.
    use chaincall_handshake::{CryptoProvider, RustCrypto};
    use chaincall_tls_psk::OpensslCrypto;
    let providers: [Arc<dyn CryptoProvider>; 2] =
        [Arc::new(RustCrypto), Arc::new(OpensslCrypto::new())];
    for (client_crypto, server_crypto) in [(0, 1), (1, 0), (1, 1)] {
        let base = net();
        let n = Net {
            phone: LocalIdentity::with_crypto(
                base.phone.name().clone(),
                Arc::new(base.phone.key().clone()),
                providers[client_crypto].clone(),
            ),
            server: LocalIdentity::with_crypto(
                base.server.name().clone(),
                Arc::new(base.server.key().clone()),
                providers[server_crypto].clone(),
            ),
            dir: base.dir,
        };
        for p in [Protocol::Sts, Protocol::Nsl] {
            let (port, results) = start(
                &n,
                n.dir.clone(),
                HandshakeConfig::default(),
                PskStore::default(),
                1,
            )
            .await;
            let client = TlsPskClient::new(&TlsPskConfig::default()).unwrap();
            let (mut tls, _) = dial(&n, p, port, &client)
                .await
                .unwrap_or_else(|e| panic!("{p} {client_crypto}->{server_crypto}: {e}"));
            assert_eq!(echo(&mut tls, b"ok").await, b"OK");
            assert!(results.await.unwrap()[0].is_ok());
        }
    }
}

/// A directory whose one answer (for whoever is asked) the test changes between connections; it
/// counts the look-ups.
struct Switchable(
    std::sync::Mutex<Result<DirectoryEntry, DirectoryError>>,
    std::sync::atomic::AtomicUsize,
);

impl Switchable {
    fn set(&self, answer: Result<DirectoryEntry, DirectoryError>) {
        *self.0.lock().unwrap() = answer;
    }

    fn lookups(&self) -> usize {
        self.1.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl KeyDirectory for Switchable {
    fn lookup(&self, _: &IdentityName) -> Result<DirectoryEntry, DirectoryError> {
        self.1.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.0.lock().unwrap().clone()
    }
}

fn entry(status: KeyStatus, key: &IdentityKey) -> Result<DirectoryEntry, DirectoryError> {
    Ok(DirectoryEntry {
        status,
        key: Some(key.public()),
    })
}

/// A stored PSK opens TLS only while the directory still approves the key its handshake proved:
/// a replaced or revoked key refuses it (and drops it), a directory that cannot answer does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_psk_opens_tls_only_while_its_proved_key_is_approved() {
    let n = net();
    let phone_key = n.phone.key();
    let dir = Arc::new(Switchable(
        std::sync::Mutex::new(entry(KeyStatus::Approved, phone_key)),
        Default::default(),
    ));
    let store = PskStore::default();
    let service = HandshakeService::new(HandshakeConfig::default(), n.server.clone(), dir.clone());
    let server = PskServer::new(&TlsPskConfig::default(), store.clone(), Some(service)).unwrap();
    let (port, results) = serve(server, 8).await;
    let client = TlsPskClient::new(&TlsPskConfig::default()).unwrap();
    let resume = |est: Established| {
        let client = client.clone();
        async move {
            let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
            let mut tls = client.connect_established(tcp, &est).await?;
            Ok::<_, TlsPskError>(echo(&mut tls, b"again").await)
        }
    };

    let (mut tls, est) = dial(&n, Protocol::Sts, port, &client).await.unwrap();
    assert_eq!(echo(&mut tls, b"hi").await, b"HI");
    // The handshake read the key once; TLS right after it on the same connection does not again.
    assert_eq!(dir.lookups(), 1);
    // Still the approved key: resumed, no handshake, one re-read.
    assert_eq!(resume(est.clone()).await.unwrap(), b"AGAIN");
    assert_eq!(dir.lookups(), 2, "one re-read per resumption");
    // The key was replaced on chain: refused, and the PSK is gone.
    dir.set(entry(KeyStatus::Approved, &IdentityKey::generate()));
    assert!(resume(est.clone()).await.is_err());
    assert!(store.is_empty(), "the PSK of a replaced key is dropped");
    // A fresh handshake, then the key is revoked: refused.
    dir.set(entry(KeyStatus::Approved, phone_key));
    let (mut tls, est) = dial(&n, Protocol::Sts, port, &client).await.unwrap();
    assert_eq!(echo(&mut tls, b"hi").await, b"HI");
    dir.set(entry(KeyStatus::Revoked, phone_key));
    assert!(resume(est).await.is_err());
    // A fresh handshake, then the chain stops answering: the proved PSK stays usable (an outage
    // is not a revocation), and for a moment its resumptions do not ask again.
    dir.set(entry(KeyStatus::Approved, phone_key));
    let (mut tls, est) = dial(&n, Protocol::Sts, port, &client).await.unwrap();
    assert_eq!(echo(&mut tls, b"hi").await, b"HI");
    dir.set(Err(DirectoryError::Unavailable("node down".into())));
    let asked = dir.lookups();
    assert_eq!(resume(est.clone()).await.unwrap(), b"AGAIN");
    assert_eq!(resume(est.clone()).await.unwrap(), b"AGAIN");
    assert_eq!(dir.lookups(), asked + 1, "one failed read, then a pause");

    let results = results.await.unwrap();
    let reasons: Vec<_> = results
        .iter()
        .map(|r| match r {
            Ok(peer) => Ok(peer.clone()),
            Err(TlsPskError::PskKeyLost { peer, reason, .. }) => {
                assert_eq!(peer, n.phone.name());
                Err(*reason)
            }
            Err(other) => panic!("unexpected refusal: {other}"),
        })
        .collect();
    let phone = Some(n.phone.name().clone());
    assert_eq!(
        reasons,
        [
            Ok(phone.clone()),
            Ok(phone.clone()),
            Err("its on-chain key was replaced"),
            Ok(phone.clone()),
            Err("its on-chain key was revoked"),
            Ok(phone.clone()),
            Ok(phone.clone()),
            Ok(phone),
        ]
    );
}
