//! A loopback measurement of the whole set-up, for `chaincall bench handshake` and the criterion
//! bench: TCP connect, the generic handshake, TLS-PSK and a one-byte round trip, client and server in
//! one single-threaded runtime (so one core does both ends' work).
//!
//! Keys: a [`StaticDirectory`] — `chaincall-chain` offered no `KeyDirectory` when this was written;
//! a lookup on the embedded chain costs microseconds and does not change the figures.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chaincall_handshake::{CryptoProvider, HandshakeConfig, Initiator, LocalIdentity, Protocol};
use chaincall_identity::{IdentityKey, IdentityName, StaticDirectory};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::{
    HandshakeService, PskServer, PskStore, TlsPskClient, TlsPskConfig, TlsPskError,
    connect_with_handshake,
};

/// What to measure.
#[derive(Debug, Clone)]
pub struct LoopbackParams {
    /// The handshake protocol.
    pub protocol: Protocol,
    /// TLS settings (restrict the versions to pick TLS 1.2 or 1.3).
    pub tls: TlsPskConfig,
    /// Measured set-ups.
    pub runs: usize,
    /// Unmeasured set-ups first.
    pub warmup: usize,
    /// The handshake's P-256 provider, both ends.
    pub crypto: Arc<dyn CryptoProvider>,
}

/// The figures.
#[derive(Debug, Clone)]
pub struct LoopbackReport {
    /// The handshake protocol.
    pub protocol: Protocol,
    /// The provider's name.
    pub crypto: &'static str,
    /// The TLS version negotiated.
    pub tls_version: &'static str,
    /// Measured set-ups.
    pub runs: usize,
    /// Median wall-clock latency of one set-up.
    pub p50: Duration,
    /// 90th percentile.
    pub p90: Duration,
    /// 99th percentile.
    pub p99: Duration,
    /// CPU time of one set-up, both ends together (from `/proc/thread-self/schedstat`), if readable.
    pub cpu_per_setup: Option<Duration>,
}

impl LoopbackReport {
    /// Set-ups per second one core sustains with both ends on it (1 / CPU time per set-up); a server
    /// doing only its own half sustains about twice this.
    pub fn setups_per_core_second(&self) -> Option<f64> {
        self.cpu_per_setup.map(|c| 1.0 / c.as_secs_f64())
    }
}

/// CPU time of the current thread in nanoseconds (Linux).
fn thread_cpu_ns() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    s.split_whitespace().next()?.parse().ok()
}

fn party(name: &str, crypto: &Arc<dyn CryptoProvider>) -> LocalIdentity {
    // Invariant: the names below are valid.
    LocalIdentity::with_crypto(
        IdentityName::parse(name).expect("valid name"),
        Arc::new(IdentityKey::generate()),
        crypto.clone(),
    )
}

/// Runs the measurement on a fresh single-threaded runtime.
pub fn run_loopback(params: &LoopbackParams) -> Result<LoopbackReport, TlsPskError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(run(params))
}

async fn run(params: &LoopbackParams) -> Result<LoopbackReport, TlsPskError> {
    let (phone, server_id) = (
        party("+15551230001", &params.crypto),
        party("sip.example.org", &params.crypto),
    );
    let mut dir = StaticDirectory::new();
    dir.approve(phone.name().clone(), phone.public().clone());
    dir.approve(server_id.name().clone(), server_id.public().clone());
    let dir = Arc::new(dir);
    let service = HandshakeService::new(HandshakeConfig::default(), server_id.clone(), dir.clone());
    let server = PskServer::new(&params.tls, PskStore::default(), Some(service))?;
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let acceptor = tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let server = server.clone();
            tokio::spawn(async move {
                let _ = tcp.set_nodelay(true);
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
    let client = TlsPskClient::new(&params.tls)?;
    let mut samples = Vec::with_capacity(params.runs);
    let mut version = "";
    let mut cpu_start = None;
    for i in 0..params.warmup + params.runs {
        if i == params.warmup {
            cpu_start = thread_cpu_ns();
        }
        let t = Instant::now();
        let tcp = TcpStream::connect(("127.0.0.1", port)).await?;
        tcp.set_nodelay(true)?;
        let init = Initiator::new(
            HandshakeConfig::default(),
            phone.clone(),
            server_id.name().clone(),
            params.protocol,
            &*dir,
            std::time::Instant::now(),
        )?;
        let (mut s, _) = connect_with_handshake(tcp, init, Duration::from_secs(5), &client).await?;
        s.write_all(b"x").await?;
        let mut b = [0u8; 1];
        s.read_exact(&mut b).await?;
        if i >= params.warmup {
            samples.push(t.elapsed());
        }
        version = s.version();
    }
    let cpu_end = thread_cpu_ns();
    acceptor.abort();
    samples.sort();
    let pct = |p: f64| samples[((samples.len() as f64 - 1.0) * p).round() as usize];
    let runs = samples.len().max(1) as u64;
    Ok(LoopbackReport {
        protocol: params.protocol,
        crypto: params.crypto.name(),
        tls_version: version,
        runs: samples.len(),
        p50: pct(0.5),
        p90: pct(0.9),
        p99: pct(0.99),
        cpu_per_setup: cpu_start
            .zip(cpu_end)
            .map(|(a, b)| Duration::from_nanos(b.saturating_sub(a) / runs)),
    })
}
