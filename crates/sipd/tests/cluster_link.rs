//! The link between two nodes of a cluster (`[cluster]`, docs/sipd.md "Cluster") over real
//! sockets: a sipd node accepts a link from a member holding the cluster secret and serves SIP
//! over it; a connection without the secret, from a node id it does not list, or posing as
//! itself (a reflected link) fails the TLS handshake and carries nothing.

use std::net::SocketAddr;
use std::time::Duration;

use chaincall_sipd::cluster::ClusterKeys;
use chaincall_sipd::config::{Listen, LocationBackend};
use chaincall_sipd::{AuthMode, Config, Server};
use chaincall_testkit::postgres::Postgres;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const SECRET: [u8; 32] = [7; 32];

/// Node 1 of a two-node cluster on `pg`, its secret in `dir`.
fn node_1(pg: &Postgres, dir: &std::path::Path) -> Config {
    let secret = dir.join("cluster.secret");
    chaincall_identity::write_secret_file(
        &secret,
        hex::encode(SECRET).as_bytes(),
        chaincall_identity::Overwrite::Refuse,
    )
    .expect("the secret file is written");
    let mut cfg = Config {
        listen: vec![Listen::udp(([127, 0, 0, 1], 0).into())],
        ..Config::default()
    };
    cfg.auth.mode = AuthMode::None;
    cfg.location.backend = LocationBackend::Postgres;
    cfg.location.database = pg.url("postgres");
    cfg.location.node_id = "node-1".into();
    cfg.cluster.listen = Some(([127, 0, 0, 1], 0).into());
    cfg.cluster.secret_file = Some(secret);
    // Node 2 is not running: node 1's own link to it keeps retrying, which does not matter here.
    cfg.cluster
        .nodes
        .insert("node-2".into(), ([127, 0, 0, 1], 9).into());
    cfg
}

/// Node 1 running on `pg` (its secret in `dir`): its node-link address, its metrics, and its
/// stop switch and task.
async fn run_node_1(
    pg: &Postgres,
    dir: &std::path::Path,
) -> (
    SocketAddr,
    std::sync::Arc<chaincall_sipd::metrics::Metrics>,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    let server = Server::bind(node_1(pg, dir)).await.expect("node 1 binds");
    let at = server.cluster_addr().expect("a node-link listener");
    let metrics = server.metrics();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server.run(async {
        let _ = stopped.await;
    }));
    (at, metrics, stop, task)
}

/// Opens a link to `at` as node `me` with `secret`, and asks `OPTIONS` over it: the status, or
/// why the link failed.
async fn options_over_link(at: SocketAddr, me: &str, secret: [u8; 32]) -> Result<u16, String> {
    let tcp = TcpStream::connect(at).await.map_err(|e| e.to_string())?;
    let mut tls = ClusterKeys::new(me, secret)
        .connect(tcp, "node-1")
        .await
        .map_err(|e| chaincall_io::ErrorChain(&e).to_string())?;
    let options = format!(
        "OPTIONS sip:{at} SIP/2.0\r\nVia: SIP/2.0/TLS 127.0.0.1:1;branch=z9hG4bK-link-{me}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:{me}@{at}>;tag=l\r\nTo: <sip:{at}>\r\nCall-ID: link-{me}\r\n\
         CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    );
    tls.write_all(options.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut buf = vec![0; 4096];
    let n = tokio::time::timeout(Duration::from_secs(10), tls.read(&mut buf))
        .await
        .map_err(|_| "no answer".to_owned())?
        .map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&buf[..n]);
    text.split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or(format!("not a response: {text}"))
}

#[tokio::test]
async fn only_a_member_holding_the_cluster_secret_opens_a_node_link() {
    let Some(pg) = Postgres::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (at, _, stop, task) = run_node_1(&pg, dir.path()).await;

    assert_eq!(
        options_over_link(at, "node-2", SECRET).await,
        Ok(200),
        "a member's link carries SIP"
    );
    let mut wrong = SECRET;
    wrong[0] ^= 1;
    for (who, secret, why) in [
        ("node-2", wrong, "another secret"),
        ("node-9", SECRET, "a node id node 1 does not list"),
        ("node-1", SECRET, "node 1's own id (a reflected link)"),
    ] {
        let got = options_over_link(at, who, secret).await;
        assert!(got.is_err(), "{why}: refused, got {got:?}");
    }
    let _ = stop.send(());
    task.await.unwrap();
}

/// Polls `check` every 20 ms for up to 10 s.
async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    for _ in 0..500 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("not within 10 s: {what}");
}

#[tokio::test]
async fn node_links_and_failed_attempts_show_in_the_metrics_by_node() {
    let Some(pg) = Postgres::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (at, metrics, stop, task) = run_node_1(&pg, dir.path()).await;
    let failures = |m: &chaincall_sipd::metrics::Metrics| {
        m.render()
            .lines()
            .find_map(|l| l.strip_prefix("sipd_node_link_failures_total{node=\"node-2\"} "))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // Node 1 dials node 2, where nothing listens: counted, and node 2 shows with no link.
    eventually("a failed attempt counted", || failures(&metrics) >= 1).await;
    assert!(
        metrics
            .render()
            .contains("sipd_node_links{node=\"node-2\"} 0"),
        "{}",
        metrics.render()
    );
    // Node 2 dials node 1: one link open while it lasts.
    let tcp = TcpStream::connect(at).await.unwrap();
    let link = ClusterKeys::new("node-2", SECRET)
        .connect(tcp, "node-1")
        .await
        .expect("a member's link opens");
    eventually("the link counted open", || {
        metrics.node_links.open("node-2") == 1
    })
    .await;
    drop(link);
    eventually("the link counted closed", || {
        metrics.node_links.open("node-2") == 0
    })
    .await;
    let _ = stop.send(());
    task.await.unwrap();
}
