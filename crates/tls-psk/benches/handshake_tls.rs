//! Full set-up cost on loopback: TCP connect + generic handshake (STS or NSL) + TLS 1.3 PSK
//! (psk_dhe_ke) + one application-data round trip; and the sans-IO handshake alone, in memory.
//!
//! The handshake uses the OpenSSL P-256 provider on the wire (and both providers in memory).
//! Keys come from a `StaticDirectory` (an in-memory `KeyDirectory`): `chaincall-chain` offered no
//! `KeyDirectory` when this bench was written. A directory lookup on the embedded chain costs a few
//! microseconds and would not move these figures.
//!
//! Run: `cargo bench -p chaincall-tls-psk --bench handshake_tls`

// criterion_group! defines an undocumented pub fn.
#![allow(missing_docs)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use chaincall_handshake::{
    CryptoProvider, HandshakeConfig, Initiator, LocalIdentity, Protocol, ReplayCache, Responder,
    RustCrypto, run_in_memory,
};
use chaincall_identity::{IdentityKey, IdentityName, StaticDirectory};
use chaincall_tls_psk::{
    HandshakeService, OpensslCrypto, PskServer, PskStore, TlsPskClient, TlsPskConfig,
    connect_with_handshake,
};
use criterion::{Criterion, criterion_group, criterion_main};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

struct Parties {
    phone: LocalIdentity,
    server: LocalIdentity,
    dir: Arc<StaticDirectory>,
}

fn parties(crypto: Arc<dyn CryptoProvider>) -> Parties {
    let mk = |s: &str| {
        LocalIdentity::with_crypto(
            IdentityName::parse(s).unwrap(),
            Arc::new(IdentityKey::generate()),
            crypto.clone(),
        )
    };
    let (phone, server) = (mk("+15551230001"), mk("sip.example.org"));
    let mut dir = StaticDirectory::new();
    dir.approve(phone.name().clone(), phone.key().public());
    dir.approve(server.name().clone(), server.key().public());
    Parties {
        phone,
        server,
        dir: Arc::new(dir),
    }
}

fn in_memory(c: &mut Criterion) {
    let providers: [Arc<dyn CryptoProvider>; 2] =
        [Arc::new(OpensslCrypto::new()), Arc::new(RustCrypto)];
    for (p, protocol) in providers
        .iter()
        .flat_map(|c| [Protocol::Sts, Protocol::Nsl].map(|p| (parties(c.clone()), p)))
    {
        let replay = ReplayCache::default();
        let name = p.phone.crypto().name();
        c.bench_function(
            &format!("handshake core {protocol} [{name}] (both sides, in memory)"),
            |b| {
                b.iter(|| {
                    let now = Instant::now();
                    let mut a = Initiator::new(
                        HandshakeConfig::default(),
                        p.phone.clone(),
                        p.server.name().clone(),
                        protocol,
                        &*p.dir,
                        now,
                    )
                    .unwrap();
                    let mut r = Responder::new(HandshakeConfig::default(), p.server.clone(), now);
                    run_in_memory(&mut a, &mut r, &*p.dir, &replay, now).unwrap()
                })
            },
        );
    }
}

fn loopback(c: &mut Criterion) {
    let p = parties(Arc::new(OpensslCrypto::new()));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let tls = TlsPskConfig {
        keylog_file: None,
        ..TlsPskConfig::default()
    };
    let service =
        HandshakeService::new(HandshakeConfig::default(), p.server.clone(), p.dir.clone());
    let server = PskServer::new(&tls, PskStore::default(), Some(service)).unwrap();
    let listener = rt.block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
    let port = listener.local_addr().unwrap().port();
    rt.spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                break;
            };
            let server = server.clone();
            tokio::spawn(async move {
                let Ok((mut s, _)) = server.accept(tcp).await else {
                    return;
                };
                let mut b = [0u8; 1];
                if s.read_exact(&mut b).await.is_ok() {
                    let _ = s.write_all(&b).await;
                }
            });
        }
    });
    let client = TlsPskClient::new(&tls).unwrap();
    let mut group = c.benchmark_group("loopback");
    group.measurement_time(Duration::from_secs(8));
    for protocol in [Protocol::Sts, Protocol::Nsl] {
        group.bench_function(
            format!("TCP + {protocol} handshake + TLS 1.3 PSK + 1 round trip"),
            |b| {
                b.iter(|| {
                    rt.block_on(async {
                        let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
                        tcp.set_nodelay(true).unwrap();
                        let init = Initiator::new(
                            HandshakeConfig::default(),
                            p.phone.clone(),
                            p.server.name().clone(),
                            protocol,
                            &*p.dir,
                            Instant::now(),
                        )
                        .unwrap();
                        let (mut s, _) =
                            connect_with_handshake(tcp, init, Duration::from_secs(5), &client)
                                .await
                                .unwrap();
                        s.write_all(b"x").await.unwrap();
                        let mut b = [0u8; 1];
                        s.read_exact(&mut b).await.unwrap();
                    })
                })
            },
        );
    }
    group.finish();
}

criterion_group!(benches, in_memory, loopback);
criterion_main!(benches);
