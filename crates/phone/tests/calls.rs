//! Calls between chaincall phones through sipd over TLS-PSK, and every way a call is refused: the
//! subscriber sees a clear reason for an unknown, pending, revoked, offline or busy callee, and a
//! callee refuses a caller whose key was revoked.

mod common;

use std::time::Duration;

use chaincall_identity::{IdentityKey, PhoneNumber};
use chaincall_phone::{KeyMode, PhoneEvent};
use common::*;

const ALICE: &str = "+15550200001";
const BOB: &str = "+15550200002";
const CAROL: &str = "+15550200003";
const DAVE: &str = "+15550200004";
const ERIN: &str = "+15550200005";
const FRANK: &str = "+15550200006";

fn n(s: &str) -> PhoneNumber {
    PhoneNumber::parse(s).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_and_every_refusal_say_what_happened() {
    let mut net = Net::start().await;
    let keys: Vec<IdentityKey> = (0..6).map(|_| IdentityKey::generate()).collect();
    for (number, key, approve) in [
        (ALICE, &keys[0], true),
        (BOB, &keys[1], true),
        (CAROL, &keys[2], true),
        (DAVE, &keys[3], false),
        (ERIN, &keys[4], true),
        (FRANK, &keys[5], true),
    ] {
        net.add(number, key, approve).await;
    }
    net.revoke(ERIN).await;

    let (alice, mut alice_ev) = net
        .phone(ALICE, keys[0].clone(), KeyMode::MikeyPke, 1000)
        .await;
    let (bob, mut bob_ev) = net
        .phone(BOB, keys[1].clone(), KeyMode::MikeyPke, 1000)
        .await;
    let (carol, mut carol_ev) = net
        .phone(CAROL, keys[2].clone(), KeyMode::MikeyDhSign, 1000)
        .await;
    for p in [&alice, &bob, &carol] {
        assert_eq!(p.register(600).await.unwrap(), 600);
    }

    // alice → bob, and while they talk carol finds bob busy.
    let call = alice.call(&n(BOB)).await.unwrap();
    wait_for(&mut alice_ev, |e| matches!(e, PhoneEvent::CallUp { .. })).await;
    wait_for(&mut bob_ev, |e| matches!(e, PhoneEvent::CallUp { .. })).await;
    carol.call(&n(BOB)).await.unwrap();
    let busy = wait_for(&mut carol_ev, |e| matches!(e, PhoneEvent::Refused { .. })).await;
    assert!(format!("{busy:?}").contains("is busy"), "{busy:?}");
    tokio::time::sleep(Duration::from_millis(1300)).await;
    alice.hangup(&call).await.unwrap();
    let PhoneEvent::CallEnded(a) =
        wait_for(&mut alice_ev, |e| matches!(e, PhoneEvent::CallEnded(_))).await
    else {
        unreachable!()
    };
    let PhoneEvent::CallEnded(b) =
        wait_for(&mut bob_ev, |e| matches!(e, PhoneEvent::CallEnded(_))).await
    else {
        unreachable!()
    };
    assert_eq!(b.received_payload, a.sent_payload);
    assert_eq!(a.received_payload, b.sent_payload);
    assert_eq!(a.stats.rtp_rejected + b.stats.rtp_rejected, 0);

    // Refused before anything leaves the phone: the callee's key is not usable.
    let err = alice
        .call(&n("+15550209999"))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("+15550209999 is not a chaincall subscriber"),
        "{err}"
    );
    let err = alice.call(&n(DAVE)).await.unwrap_err().to_string();
    assert!(err.contains(DAVE) && err.contains("pending"), "{err}");
    let err = alice.call(&n(ERIN)).await.unwrap_err().to_string();
    assert!(err.contains(ERIN) && err.contains("revoked"), "{err}");

    // Approved but not registered anywhere: the INVITE goes, the answer says offline.
    alice.call(&n(FRANK)).await.unwrap();
    let offline = wait_for(&mut alice_ev, |e| matches!(e, PhoneEvent::Refused { .. })).await;
    assert!(format!("{offline:?}").contains("offline"), "{offline:?}");

    // carol's key is revoked while she is connected: bob checks the chain on every call and
    // refuses her, and says why.
    net.revoke(CAROL).await;
    carol.call(&n(BOB)).await.unwrap();
    let refused = wait_for(&mut carol_ev, |e| matches!(e, PhoneEvent::Refused { .. })).await;
    assert!(format!("{refused:?}").contains("403"), "{refused:?}");
    let at_bob = wait_for(&mut bob_ev, |e| matches!(e, PhoneEvent::Refused { .. })).await;
    assert!(format!("{at_bob:?}").contains("revoked"), "{at_bob:?}");

    for p in [alice, bob, carol] {
        p.shutdown().await;
    }
    net.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_the_caller_cancels_while_it_rings_ends_with_a_report() {
    let mut net = Net::start().await;
    let (alice_key, bob_key) = (IdentityKey::generate(), IdentityKey::generate());
    net.add(ALICE, &alice_key, true).await;
    net.add(BOB, &bob_key, true).await;
    let (alice, _alice_ev) = net.phone(ALICE, alice_key, KeyMode::MikeyPke, 1000).await;
    let (bob, mut bob_ev) = net
        .phone_with(BOB, bob_key, KeyMode::MikeyPke, 1000, |c| {
            c.auto_answer = false
        })
        .await;
    for p in [&alice, &bob] {
        p.register(600).await.unwrap();
    }
    let call = alice.call(&n(BOB)).await.unwrap();
    let ringing = wait_for(&mut bob_ev, |e| {
        matches!(
            e,
            PhoneEvent::Incoming {
                awaiting_answer: true,
                ..
            }
        )
    })
    .await;
    assert!(matches!(ringing, PhoneEvent::Incoming { call_id, .. } if call_id == call));
    alice.hangup(&call).await.unwrap();
    let PhoneEvent::CallEnded(r) =
        wait_for(&mut bob_ev, |e| matches!(e, PhoneEvent::CallEnded(_))).await
    else {
        unreachable!()
    };
    assert_eq!(r.call_id, call);
    assert!(!r.outgoing);
    assert_eq!(r.ended.describe(), "cancelled by caller");
    assert_eq!(
        (r.stats.rtp_sent, r.stats.rtp_received),
        (0, 0),
        "no media ran"
    );
    assert!(r.recorded.is_empty());
    for p in [alice, bob] {
        p.shutdown().await;
    }
    net.stop();
}
