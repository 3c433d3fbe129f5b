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

/// Alice's and Bob's phones (MIKEY-PKE, keys approved on chain) on sipd's `udp:` listener, the
/// configuration adjusted by `adjust`, registered for 600 s.
async fn alice_and_bob_on_udp(
    net: &Net,
    adjust: impl Fn(&str, &mut chaincall_phone::PhoneConfig),
) -> [(chaincall_phone::Phone, chaincall_phone::PhoneEvents); 2] {
    let udp = SocketAddr::from(([127, 0, 0, 1], net.udp_port));
    let mut phones = Vec::new();
    for number in [ALICE, BOB] {
        let key = IdentityKey::generate();
        net.add(number, &key, true).await;
        let phone = net
            .phone_with(number, key, KeyMode::MikeyPke, AUDIO_MS, |c| {
                c.signalling = Signalling::Udp { addr: udp };
                adjust(number, c);
            })
            .await;
        assert_eq!(phone.0.register(600).await.unwrap(), 600);
        phones.push(phone);
    }
    phones.try_into().unwrap_or_else(|_| unreachable!())
}

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
    let [(alice, mut alice_ev), (bob, mut bob_ev)] = alice_and_bob_on_udp(&net, |number, c| {
        c.sip_password = zeroize::Zeroizing::new(format!("{number}'s password"));
    })
    .await;

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
    assert_whole_audio_both_ways(&a, &b, AUDIO_MS);
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

/// sipd killed mid-call (every socket gone at once, its registrations with it) and started
/// again: phones on UDP have no connection to see drop, so their STUN keep-alive (RFC 5626
/// §4.4.2) finds it out: unanswered, the flow counts as failed (the call's media runs to its
/// end all the same), the phone probes with back-off, and the first answer has it register
/// again at once, long before its refresh (at half of 600 s), nobody doing anything. The next
/// call works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_phones_register_again_by_themselves_when_sipd_is_killed_mid_call_and_back() {
    use chaincall_phone::PhoneEvent;
    let mut net = Net::start().await;
    let [(alice, mut alice_ev), (bob, mut bob_ev)] = alice_and_bob_on_udp(&net, |_, c| {
        c.keepalive = Some(Duration::from_secs(1));
    })
    .await;
    let call = alice.call(&PhoneNumber::parse(BOB).unwrap()).await.unwrap();
    call_up(&mut alice_ev).await;
    call_up(&mut bob_ev).await;

    // Bounds on a broken test, not timing assertions: the loss shows within a keep-alive
    // interval and the 10 s a STUN transaction may take; the registration is back within a
    // probe's back-off once sipd answers.
    const BOUND: Duration = Duration::from_secs(30);
    net.kill();
    for events in [&mut alice_ev, &mut bob_ev] {
        let lost = wait_within(BOUND, events, |e| {
            matches!(e, PhoneEvent::SignallingLost { .. })
        })
        .await;
        let PhoneEvent::SignallingLost { reason } = lost else {
            unreachable!()
        };
        assert_eq!(reason, "no answer to the UDP keep-alive (STUN) within 10 s");
    }
    // A new call fails at once; the call in progress keeps its media to the end.
    call_outlives_sipd(
        (&alice, &mut alice_ev),
        (&bob, &mut bob_ev, BOB),
        &call,
        AUDIO_MS,
    )
    .await;

    net.restart().await;
    for events in [&mut alice_ev, &mut bob_ev] {
        wait_within(BOUND, events, |e| {
            matches!(e, PhoneEvent::Reconnected { .. })
        })
        .await;
        let registered = wait_within(BOUND, events, |e| {
            matches!(e, PhoneEvent::Registered { .. })
        })
        .await;
        assert!(matches!(
            registered,
            PhoneEvent::Registered { expires: 600 }
        ));
    }

    // sipd knows both again: bob's call reaches alice and comes up.
    quick_call((&bob, &mut bob_ev), (ALICE, &mut alice_ev)).await;
    for p in [alice, bob] {
        p.shutdown().await;
    }
}
