//! The phone on a signalling link that breaks: sipd killed mid-call (its runtime shut down at
//! once, every connection dropped, nothing drained) and started again on the same addresses.
//! The call's media runs to the end on both phones, both reconnect (TLS-PSK handshake again) and
//! register again by themselves, and the next call works.

mod common;

use std::time::Duration;

use chaincall_identity::{IdentityKey, PhoneNumber};
use chaincall_phone::{KeyMode, PhoneEvent, PhoneEvents};
use common::*;

const ALICE: &str = "+15550300001";
const BOB: &str = "+15550300002";
/// Audio each phone sends, milliseconds.
const AUDIO_MS: u32 = 1500;

fn n(s: &str) -> PhoneNumber {
    PhoneNumber::parse(s).unwrap()
}

/// Waits for the reconnect (after however many failed attempts: the waits are 0.5 s, 1 s,
/// 2 s…, well inside `wait_for`'s bound) and the registration the phone renews after it.
async fn registered_again(events: &mut PhoneEvents) {
    wait_for(events, |e| matches!(e, PhoneEvent::Reconnected { .. })).await;
    wait_for(events, |e| matches!(e, PhoneEvent::Registered { .. })).await;
}

/// sipd, and Alice's and Bob's keys approved on chain.
async fn alice_and_bob() -> (Net, IdentityKey, IdentityKey) {
    let net = Net::start().await;
    let (ka, kb) = (IdentityKey::generate(), IdentityKey::generate());
    net.add(ALICE, &ka, true).await;
    net.add(BOB, &kb, true).await;
    (net, ka, kb)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn phones_keep_their_media_and_register_again_by_themselves_when_sipd_is_killed_and_back() {
    let (mut net, ka, kb) = alice_and_bob().await;
    let (alice, mut alice_ev) = net.phone(ALICE, ka, KeyMode::MikeyPke, AUDIO_MS).await;
    let (bob, mut bob_ev) = net.phone(BOB, kb, KeyMode::MikeyPke, AUDIO_MS).await;
    for p in [&alice, &bob] {
        assert_eq!(p.register(600).await.unwrap(), 600);
    }
    let call = alice.call(&n(BOB)).await.unwrap();
    call_up(&mut alice_ev).await;
    call_up(&mut bob_ev).await;

    // sipd dies as the call starts: both phones see their connection go.
    net.kill();
    for events in [&mut alice_ev, &mut bob_ev] {
        wait_for(events, |e| matches!(e, PhoneEvent::SignallingLost { .. })).await;
    }
    // While it is down a new call fails at once, saying why; the call in progress keeps its
    // media to the end.
    call_outlives_sipd(
        (&alice, &mut alice_ev),
        (&bob, &mut bob_ev, BOB),
        &call,
        AUDIO_MS,
    )
    .await;

    // sipd is back on the same addresses: both phones reconnect and register again, nobody
    // doing anything.
    net.restart().await;
    registered_again(&mut alice_ev).await;
    registered_again(&mut bob_ev).await;

    // And the next call works, both ways of ending it included.
    quick_call((&bob, &mut bob_ev), (ALICE, &mut alice_ev)).await;

    for p in [alice, bob] {
        p.shutdown().await;
    }
}

/// sipd answers the RFC 5626 double-CRLF ping with a CRLF pong on its stream listeners, which is
/// what the phone's keep-alive counts on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sipd_answers_a_crlf_ping_with_a_pong() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let net = Net::start().await;
    let mut tcp = tokio::net::TcpStream::connect(net.tcp).await.unwrap();
    tcp.write_all(chaincall_phone::link::KeepAlive::PING)
        .await
        .unwrap();
    let mut pong = [0u8; 2];
    tokio::time::timeout(Duration::from_secs(10), tcp.read_exact(&mut pong))
        .await
        .expect("a pong")
        .unwrap();
    assert_eq!(&pong, b"\r\n");
}

/// A server that accepts the connection and then never says anything (a half-dead flow, a NAT
/// that forgot it) is found out by the keep-alive: the phone gives the connection up and
/// reconnects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unanswered_keep_alive_counts_as_a_lost_connection() {
    let net = Net::start().await;
    let key = IdentityKey::generate();
    net.add(ALICE, &key, true).await;
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = silent.local_addr().unwrap();
    let accepted = tokio::spawn(async move {
        let mut held = Vec::new();
        // Holds every connection open and reads nothing back: no pong ever comes.
        while let Ok((stream, _)) = silent.accept().await {
            held.push(stream);
        }
    });
    let (alice, mut events) = net
        .phone_with(ALICE, key, KeyMode::MikeyPke, 100, |cfg| {
            cfg.signalling = chaincall_phone::Signalling::Tcp { addr };
            cfg.keepalive = Some(Duration::from_secs(1));
        })
        .await;
    // The first ping at 1 s, unanswered for 10 s (inside wait_for's bound).
    let lost = wait_for(&mut events, |e| {
        matches!(e, PhoneEvent::SignallingLost { .. })
    })
    .await;
    let PhoneEvent::SignallingLost { reason } = lost else {
        unreachable!()
    };
    assert_eq!(reason, "no keep-alive pong within 10 s");
    wait_for(&mut events, |e| matches!(e, PhoneEvent::Reconnected { .. })).await;
    alice.shutdown().await;
    accepted.abort();
}

/// `phone listen`'s loop ([`Running::listen`]) across a sipd restart: it says the link was lost,
/// that it is back and registered again, and answers the next call, without any action.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listen_keeps_listening_across_a_sipd_restart() {
    listen_across_a_sipd_restart(false).await;
}

/// The same with `phone listen` on UDP (`transport = "udp"`), where no connection drops: its
/// STUN keep-alive finds sipd gone and back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listen_on_udp_keeps_listening_across_a_sipd_restart() {
    listen_across_a_sipd_restart(true).await;
}

async fn listen_across_a_sipd_restart(udp: bool) {
    use chaincall_phone::calls::{ListenEvent, ListenPolicy, Running};
    use chaincall_phone::{PhoneFileConfig, Signalling};

    let (mut net, ka, kb) = alice_and_bob().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("phone.toml");
    let udp_addr = std::net::SocketAddr::from(([127, 0, 0, 1], net.udp_port));
    // Over UDP a keep-alive a second: sipd's loss shows within a second and a STUN transaction.
    let sip = if udp {
        format!("addr = \"{udp_addr}\"\ntransport = \"udp\"\nkeepalive_secs = 1\n")
    } else {
        format!("addr = \"{}\"\n", net.tls)
    };
    let file = format!(
        "number = \"{BOB}\"\nrpc_url = \"http://127.0.0.1:1\"\ncontract = \"{}\"\n\
         [sip]\n{sip}domain = \"{}\"\nidentity = \"{SERVER}\"\n",
        net.contract,
        net.domain()
    );
    std::fs::write(&path, file).unwrap();
    let cfg = PhoneFileConfig::load(&path).unwrap();
    let (bob, bob_ev) = net
        .phone_with(BOB, kb, KeyMode::MikeyPke, 300, |c| {
            if udp {
                c.signalling = Signalling::Udp { addr: udp_addr };
                c.keepalive = Some(Duration::from_secs(1));
            }
        })
        .await;
    let running = Running {
        phone: bob,
        events: bob_ev,
        control: None,
    };
    // What listen shows, as words.
    let (shown, mut seen) = tokio::sync::mpsc::unbounded_channel::<&'static str>();
    let on_registered = shown.clone();
    let listening = tokio::spawn(async move {
        let policy = ListenPolicy {
            count: Some(2),
            reject: false,
        };
        let show = move |e: ListenEvent<'_>| {
            let word = match e {
                ListenEvent::Up(_) => "up",
                ListenEvent::Ended { .. } => "ended",
                ListenEvent::SignallingLost { .. } => "lost",
                ListenEvent::Reconnected { .. } => "reconnected",
                ListenEvent::Reregistered { .. } => "registered",
                _ => "other",
            };
            let _ = shown.send(word);
        };
        let registered = move |_| {
            let _ = on_registered.send("registered");
        };
        running
            .listen(&cfg, policy, std::future::pending(), registered, show)
            .await
    });
    // The next thing listen showed, the incoming-call lines before "up" passed over.
    let next = async |seen: &mut tokio::sync::mpsc::UnboundedReceiver<&'static str>| loop {
        // A bound on a broken test: over UDP the loss takes up to a keep-alive interval and
        // a 10 s STUN transaction to show.
        let word = tokio::time::timeout(Duration::from_secs(30), seen.recv())
            .await
            .expect("listen showed something within 30 s")
            .expect("listen is running");
        if word != "other" {
            return word;
        }
    };
    assert_eq!(next(&mut seen).await, "registered");

    let (alice, mut alice_ev) = net.phone(ALICE, ka, KeyMode::MikeyPke, 300).await;
    alice.register(600).await.unwrap();
    let call = alice.call(&n(BOB)).await.unwrap();
    assert_eq!(next(&mut seen).await, "up");
    call_up(&mut alice_ev).await;
    alice.hangup(&call).await.unwrap();
    assert_eq!(next(&mut seen).await, "ended");

    net.kill();
    assert_eq!(next(&mut seen).await, "lost");
    net.restart().await;
    assert_eq!(next(&mut seen).await, "reconnected");
    assert_eq!(next(&mut seen).await, "registered");
    registered_again(&mut alice_ev).await;

    let call = alice.call(&n(BOB)).await.unwrap();
    assert_eq!(next(&mut seen).await, "up");
    call_up(&mut alice_ev).await;
    alice.hangup(&call).await.unwrap();
    assert_eq!(next(&mut seen).await, "ended");
    // Two calls handled: listen returns, by itself, without error.
    listening.await.unwrap().unwrap();
    alice.shutdown().await;
}
