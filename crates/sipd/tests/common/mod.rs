//! Shared helpers: an in-process sipd on 127.0.0.1 and a small UDP SIP client.

#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::time::Duration;

use chaincall_sip::message::Message;
use chaincall_sipd::{Config, Listen, ListenTransport, Server};
use tokio::net::UdpSocket;
use tokio::sync::oneshot;

pub struct Running {
    pub udp: SocketAddr,
    pub tcp: Option<SocketAddr>,
    pub metrics: std::sync::Arc<chaincall_sipd::metrics::Metrics>,
    /// `/metrics`, `/healthz` and `/readyz`, when `metrics_listen` is set.
    pub metrics_addr: Option<SocketAddr>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Running {
    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
        }
    }
}

pub fn base_config() -> Config {
    let mut c = Config {
        listen: vec![
            Listen::udp(([127, 0, 0, 1], 0).into()),
            Listen::tcp(([127, 0, 0, 1], 0).into()),
        ],
        ..Config::default()
    };
    c.auth.mode = chaincall_sipd::AuthMode::None;
    c.limits.register_rate = 0.0;
    c
}

/// A new SQLite `subscriber` table in `dir` holding `users` (name, password) in domain 127.0.0.1
/// (the realm of a sipd on 127.0.0.1 without `domain`); returns its URL for `[auth] database`.
pub async fn subscriber_db(dir: &std::path::Path, users: &[(&str, &str)]) -> String {
    let url = format!("sqlite://{}", dir.join("sub.db").display());
    let db = chaincall_sipd::db::Db::connect(&url).await.unwrap();
    db.create_schema().await.unwrap();
    for (user, password) in users {
        db.add_subscriber(user, "127.0.0.1", password)
            .await
            .unwrap();
    }
    url
}

pub async fn start(cfg: Config) -> Running {
    start_server(Server::bind(cfg).await.expect("sipd binds"))
}

/// Like [`start`], reading subscribers from `store` (digest auth).
pub async fn start_with_store(
    cfg: Config,
    store: std::sync::Arc<dyn chaincall_sipd::db::CredentialStore>,
) -> Running {
    let mut server = Server::bind(cfg).await.expect("sipd binds");
    server.set_credential_store(store);
    start_server(server)
}

fn start_server(server: Server) -> Running {
    let of = |kind| {
        server
            .local()
            .iter()
            .find(|l| l.transport == kind)
            .map(|l| l.addr)
    };
    let (udp, tcp) = (of(ListenTransport::Udp), of(ListenTransport::Tcp));
    let metrics = server.metrics();
    let metrics_addr = server.metrics_addr();
    let (tx, rx) = oneshot::channel();
    let task = tokio::spawn(server.run(async {
        let _ = rx.await;
    }));
    Running {
        udp: udp.expect("a UDP listener"),
        tcp,
        metrics,
        metrics_addr,
        stop: Some(tx),
        task: Some(task),
    }
}

/// GET `path`; returns the response head and body.
pub async fn get(addr: SocketAddr, path: &str) -> (String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: sipd\r\nAccept: text/plain\r\n\r\n");
    s.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8(out).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    (head.to_owned(), body.to_owned())
}

pub struct Ua {
    pub sock: UdpSocket,
    pub addr: SocketAddr,
}

impl Ua {
    pub async fn bind(ip: &str) -> Ua {
        let sock = UdpSocket::bind(format!("{ip}:0")).await.unwrap();
        let addr = sock.local_addr().unwrap();
        Ua { sock, addr }
    }

    pub async fn send(&self, to: SocketAddr, msg: &str) {
        let wire = msg.replace("\r\n", "\n").replace('\n', "\r\n");
        self.sock.send_to(wire.as_bytes(), to).await.unwrap();
    }

    pub async fn send_raw(&self, to: SocketAddr, bytes: &[u8]) {
        self.sock.send_to(bytes, to).await.unwrap();
    }

    /// Next datagram within `ms`, or None.
    pub async fn recv(&self, ms: u64) -> Option<Vec<u8>> {
        let mut buf = vec![0u8; 65536];
        match tokio::time::timeout(Duration::from_millis(ms), self.sock.recv_from(&mut buf)).await {
            Ok(Ok((n, _))) => Some(buf[..n].to_vec()),
            _ => None,
        }
    }

    /// Receives until a message satisfying `pred` arrives (bounded by `ms` overall).
    pub async fn expect(&self, ms: u64, pred: impl Fn(&Message<'_>) -> bool) -> Vec<u8> {
        let deadline = tokio::time::Instant::now() + Duration::from_millis(ms);
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let Some(b) = self.recv(left.as_millis() as u64).await else {
                panic!("expected message did not arrive within {ms} ms");
            };
            if let Ok(m) = Message::parse(&b)
                && pred(&m)
            {
                return b;
            }
        }
    }
}

impl Ua {
    /// Sends the request `msg` to `to` and returns the response to it (a response with the same
    /// CSeq number), within 2 s.
    pub async fn ask(&self, to: SocketAddr, msg: &str) -> Vec<u8> {
        let wire = msg.replace("\r\n", "\n").replace('\n', "\r\n");
        let seq = Message::parse(wire.as_bytes())
            .ok()
            .and_then(|m| m.cseq().map(|c| c.seq).ok())
            .expect("ask sends a request with a CSeq");
        self.send(to, msg).await;
        self.expect(2000, |m| {
            m.status().is_some() && m.cseq().is_ok_and(|c| c.seq == seq)
        })
        .await
    }
}

impl Ua {
    /// Sends a [`register`] from this UA to `server` and returns the response to it.
    pub async fn ask_register(
        &self,
        server: SocketAddr,
        user: &str,
        call_id: &str,
        cseq: u32,
        contact: &str,
        extra: &str,
    ) -> Vec<u8> {
        let msg = register(self, server, user, call_id, cseq, contact, extra);
        self.ask(server, &msg).await
    }
}

pub fn status_of(b: &[u8]) -> u16 {
    Message::parse(b).unwrap().status().unwrap()
}

static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

pub fn register(
    ua: &Ua,
    server: SocketAddr,
    user: &str,
    call_id: &str,
    cseq: u32,
    contact: &str,
    extra: &str,
) -> String {
    let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!(
        "REGISTER sip:{server} SIP/2.0\n\
Via: SIP/2.0/UDP {ua};branch=z9hG4bK{call_id}{cseq}x{n}\n\
Max-Forwards: 70\n\
From: <sip:{user}@{ip}>;tag=f{call_id}\n\
To: <sip:{user}@{ip}>\n\
Call-ID: {call_id}\n\
CSeq: {cseq} REGISTER\n\
{contact}{extra}Content-Length: 0\n\n",
        ua = ua.addr,
        ip = server.ip()
    )
}
