//! Phones over UDP through sipd's `udp:` listener: digest authentication (REGISTER 401, INVITE
//! 407), a MIKEY call up and down, the audio intact both ways. The user agent runs RFC 3261
//! transactions (retransmissions are exercised in simulated time in `tests/core.rs`).

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use chaincall_identity::{IdentityKey, PhoneNumber};
use chaincall_phone::{KeyMode, Signalling};
use common::*;

const ALICE: &str = "+15550400001";
const BOB: &str = "+15550400002";
const AUDIO_MS: u32 = 1000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn phones_register_with_digest_and_call_each_other_over_udp() {
    let passwords = [ALICE, BOB].map(|user| format!("{user}'s password"));
    let (_db_dir, url, db) = subscriber_db(&[(ALICE, &passwords[0]), (BOB, &passwords[1])]).await;
    let net = Net::start_with(|sipd| {
        sipd.auth.mode = chaincall_sipd::AuthMode::Digest;
        sipd.auth.database = url.clone();
    })
    .await;
    let udp = SocketAddr::from(([127, 0, 0, 1], net.udp_port));
    let mut phones = Vec::new();
    for number in [ALICE, BOB] {
        let key = IdentityKey::generate();
        net.add(number, &key, true).await;
        let phone = net
            .phone_with(number, key, KeyMode::MikeyPke, AUDIO_MS, |c| {
                c.signalling = Signalling::Udp { addr: udp };
                c.sip_password = zeroize::Zeroizing::new(format!("{number}'s password"));
            })
            .await;
        assert_eq!(phone.0.register(600).await.unwrap(), 600);
        phones.push(phone);
    }
    let (bob, mut bob_ev) = phones.pop().unwrap();
    let (alice, mut alice_ev) = phones.pop().unwrap();

    // The INVITE is challenged (407) and sent again with credentials.
    let call = alice.call(&PhoneNumber::parse(BOB).unwrap()).await.unwrap();
    call_up(&mut alice_ev).await;
    call_up(&mut bob_ev).await;
    tokio::time::sleep(Duration::from_millis(u64::from(AUDIO_MS) + 300)).await;
    alice.hangup(&call).await.unwrap();
    let (a, b) = (
        call_ended(&mut alice_ev).await,
        call_ended(&mut bob_ev).await,
    );
    assert_eq!(a.sent_payload.len(), (AUDIO_MS * 8) as usize);
    assert_eq!(b.received_payload, a.sent_payload);
    assert_eq!(a.received_payload, b.sent_payload);
    assert!(!a.signalling_lost && !b.signalling_lost);

    // A wrong password is refused, clearly.
    let key = IdentityKey::generate();
    net.add("+15550400003", &key, true).await;
    db.add_subscriber("+15550400003", "127.0.0.1", "the right one")
        .await
        .unwrap();
    let (carol, _carol_ev) = net
        .phone_with("+15550400003", key, KeyMode::MikeyPke, 100, |c| {
            c.signalling = Signalling::Udp { addr: udp };
            c.sip_password = zeroize::Zeroizing::new("a wrong one".into());
        })
        .await;
    let err = carol.register(600).await.unwrap_err().to_string();
    assert!(err.contains("refused our credentials"), "{err}");

    for p in [alice, bob, carol] {
        p.shutdown().await;
    }
}

/// The fault case: UDP signalling under 20 % packet loss (iptables `statistic` in a test
/// network's namespaces; this kernel has no netem). sipd and both phones each lose a fifth of
/// the packets that reach them; REGISTER, INVITE and BYE complete through retransmissions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_invite_and_bye_complete_over_udp_under_20_percent_loss() {
    use chaincall_testkit::netns::TestNet;
    use std::sync::Arc;

    let Some(tn) = TestNet::builder()
        .public_host("sipd")
        .public_host("alice")
        .public_host("bob")
        .loss("sipd", 0.2)
        .loss("alice", 0.2)
        .loss("bob", 0.2)
        .build()
    else {
        return;
    };
    let tn = Arc::new(tn);
    let net = Net::start_on(tn.addr("sipd").into(), nat::inside(&tn, "sipd"), |_| {}).await;
    let sipd = SocketAddr::new(net.host, net.udp_port);
    // Retransmissions over a lossy path: far longer than a clean one, well inside Timer B.
    const BOUND: Duration = Duration::from_secs(60);
    let mut phones = Vec::new();
    let mut runtimes = Vec::new();
    for (number, node) in [(ALICE, "alice"), (BOB, "bob")] {
        let (phone, events, rt) =
            nat::phone_inside(&net, &tn, node, number, KeyMode::MikeyPke, 500, |c| {
                c.signalling = Signalling::Udp { addr: sipd };
            })
            .await;
        assert_eq!(
            phone.register(600).await.unwrap(),
            600,
            "REGISTER completed"
        );
        phones.push((phone, events));
        runtimes.push(rt);
    }
    let (bob, mut bob_ev) = phones.pop().unwrap();
    let (alice, mut alice_ev) = phones.pop().unwrap();

    let call = alice.call(&PhoneNumber::parse(BOB).unwrap()).await.unwrap();
    let up =
        |e: &chaincall_phone::PhoneEvent| matches!(e, chaincall_phone::PhoneEvent::CallUp { .. });
    wait_within(BOUND, &mut alice_ev, up).await;
    wait_within(BOUND, &mut bob_ev, up).await;
    alice.hangup(&call).await.unwrap();
    let ended =
        |e: &chaincall_phone::PhoneEvent| matches!(e, chaincall_phone::PhoneEvent::CallEnded(_));
    // Bob hangs up nothing himself: his call ends only when Alice's BYE reaches him.
    wait_within(BOUND, &mut bob_ev, ended).await;
    wait_within(BOUND, &mut alice_ev, ended).await;

    // The loss was real: the statistic rules dropped packets on the way.
    let dropped: u64 = ["sipd", "alice", "bob"]
        .iter()
        .map(|node| {
            let out = tn
                .command(node, "iptables")
                .args(["-t", "raw", "-L", "PREROUTING", "-v", "-n", "-x"])
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            text.lines()
                .filter(|l| l.contains("statistic"))
                .filter_map(|l| l.split_whitespace().next()?.parse::<u64>().ok())
                .sum::<u64>()
        })
        .sum();
    assert!(dropped > 0, "no packet was dropped");

    for p in [alice, bob] {
        p.shutdown().await;
    }
}
