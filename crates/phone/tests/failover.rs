//! A phone given several addresses of its server (the nodes of one sipd domain): when its node
//! is killed it reconnects to the next, runs the TLS-PSK handshake with the domain's key again,
//! registers there by itself and is callable; a first address that does not answer at start is
//! passed over the same way.

mod common;

use chaincall_identity::{IdentityKey, PhoneNumber};
use chaincall_phone::{KeyMode, PhoneEvent};
use common::*;

const ALICE: &str = "+15550310001";

/// Both nodes serve the domain by its name (the test network's default, its UDP address, is one
/// node's own).
async fn by_name() -> Net {
    Net::start_with(|cfg| cfg.domain = Some(SERVER.into())).await
}

/// A phone of `SERVER`'s domain.
fn of_domain(cfg: &mut chaincall_phone::PhoneConfig) {
    cfg.sip_domain = SERVER.into();
}
const BOB: &str = "+15550310002";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_phone_whose_node_is_killed_registers_on_the_next_and_is_callable_there() {
    let mut net = by_name().await;
    let (ka, kb) = (IdentityKey::generate(), IdentityKey::generate());
    net.add(ALICE, &ka, true).await;
    net.add(BOB, &kb, true).await;
    // Node 2: the same domain and key, other ports.
    let node_2 = net.another_node(|_| {}).await;
    let (alice, mut alice_ev) = net
        .phone_with(ALICE, ka, KeyMode::MikeyPke, 300, |cfg| {
            of_domain(cfg);
            cfg.failover = vec![node_2.tls];
        })
        .await;
    assert_eq!(alice.register(600).await.unwrap(), 600);
    assert_eq!(net.metrics.registrations.get(), 1, "alice is on node 1");
    assert_eq!(node_2.metrics.registrations.get(), 0);

    net.kill();
    wait_for(&mut alice_ev, |e| {
        matches!(e, PhoneEvent::SignallingLost { .. })
    })
    .await;
    wait_for(&mut alice_ev, |e| {
        matches!(e, PhoneEvent::Reconnected { .. })
    })
    .await;
    wait_for(&mut alice_ev, |e| {
        matches!(e, PhoneEvent::Registered { .. })
    })
    .await;
    assert_eq!(node_2.metrics.registrations.get(), 1, "alice is on node 2");

    // bob, connected to node 2 only, calls her there.
    let (bob, mut bob_ev) = net
        .phone_with(BOB, kb, KeyMode::MikeyPke, 300, |cfg| {
            of_domain(cfg);
            cfg.signalling = cfg.signalling.with_addr(node_2.tls);
        })
        .await;
    assert_eq!(bob.register(600).await.unwrap(), 600);
    let call = bob.call(&PhoneNumber::parse(ALICE).unwrap()).await.unwrap();
    call_up(&mut alice_ev).await;
    call_up(&mut bob_ev).await;
    // Once the audio is out (as tests/reconnect.rs waits), bob hangs up.
    tokio::time::sleep(std::time::Duration::from_millis(300 + 300)).await;
    bob.hangup(&call).await.unwrap();
    let (a, b) = (
        call_ended(&mut alice_ev).await,
        call_ended(&mut bob_ev).await,
    );
    assert_eq!(a.call_id, call);
    assert_eq!(
        a.received_payload, b.sent_payload,
        "bob's audio reached alice intact"
    );
    for p in [alice, bob] {
        p.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_address_that_does_not_answer_is_passed_over_at_start() {
    let net = Net::start().await;
    let key = IdentityKey::generate();
    net.add(ALICE, &key, true).await;
    // A port nobody listens on (bound, then closed).
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let tls = net.tls;
    let (alice, _events) = net
        .phone_with(ALICE, key, KeyMode::MikeyPke, 100, |cfg| {
            cfg.signalling = cfg.signalling.with_addr(dead);
            cfg.failover = vec![tls];
        })
        .await;
    assert_eq!(alice.register(600).await.unwrap(), 600);
    assert_eq!(net.metrics.registrations.get(), 1);
    alice.shutdown().await;
}
