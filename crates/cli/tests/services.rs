//! The long-running commands stop as a service manager expects: `chaincall sipd serve`,
//! `chaincall wallet serve` and `chaincall phone listen`, each the real binary, exit with status 0
//! on SIGTERM (what `systemctl stop`, `docker stop` and `kill` send) or SIGINT (Ctrl-C), after a
//! drain, with a final INFO line saying so; and they let go of their ports.

mod common;

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::time::Duration;

use chaincall_wallet::receipt::StoreKey;
use chaincall_wallet::testing::{TestChain, TestConfig, write_test_config};
use common::*;

/// A generous bound on a clean stop: a hang fails instead of blocking the suite.
const STOP_WITHIN: Duration = Duration::from_secs(30);

/// Asserts one of `lines` contains `needle`.
fn logged(lines: &[String], needle: &str) {
    assert!(
        lines.iter().any(|l| l.contains(needle)),
        "no line containing {needle:?} in:\n{}",
        lines.join("\n")
    );
}

#[test]
fn sipd_serve_stops_on_sigterm_and_frees_its_ports() {
    let dir = tempfile::tempdir().unwrap();
    let port = chaincall_testkit::free_udp_tcp_port();
    std::fs::write(
        dir.path().join("sipd.toml"),
        format!(
            "listen = [\"udp:127.0.0.1:{port}\", \"tcp:127.0.0.1:{port}\"]\n\
             domain = \"sip.chaincall.test\"\nmetrics_listen = \"\"\n[auth]\nmode = \"none\"\n"
        ),
    )
    .unwrap();
    let sipd = Service::serve(dir.path(), "sipd", "sipd running");
    let lines = sipd.stop("TERM", STOP_WITHIN);
    logged(&lines, "sipd stopped");
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    UdpSocket::bind(addr).expect("the UDP port is free again");
    TcpListener::bind(addr).expect("the TCP port is free again");
}

#[test]
fn wallet_serve_stops_on_sigint() {
    let dir = tempfile::tempdir().unwrap();
    let port = chaincall_testkit::free_tcp_port();
    let store = StoreKey::generate().unwrap();
    write_test_config(
        dir.path(),
        &TestConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], port)),
            chain: TestChain::Embedded,
            store: &store,
            admin_token: None,
            extra: "",
        },
    )
    .unwrap();
    let wallet = Service::serve(dir.path(), "wallet", "listening http://");
    let lines = wallet.stop("INT", STOP_WITHIN);
    logged(&lines, "draining requests");
    logged(&lines, "wallet stopped");
    TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port))).expect("the port is free again");
}

#[test]
fn phone_listen_stops_on_sigterm() {
    let Some(net) = network() else { return };
    let bob = net.onboarded_phone("bob", BOB);
    let mut listener = Service::spawn(
        chaincall()
            .current_dir(&bob)
            .env("RUST_LOG", "info")
            .env("CHAINCALL_PASSPHRASE", PASSPHRASE)
            .args(["phone", "--config", "phone.toml", "listen"]),
    );
    listener.wait_for("listening", Duration::from_secs(60));
    let lines = listener.stop("TERM", STOP_WITHIN);
    logged(&lines, "phone stopped");
}
