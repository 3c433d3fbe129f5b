//! sipd verifying PASSporTs on ingress (issue 20 item 2, `[identity] verify = "enforce"`), with
//! real sockets and real phones: alice's call reaches bob marked
//! `verstat=TN-Validation-Passed` and bob's phone verifies it again; a phone claiming alice's
//! number with carol's key is refused by sipd with 438 and never reaches bob. The keystore on
//! the embedded chain, sipd's look-ups proven against its genesis like the phones'.

mod common;

use chaincall_identity::{IdentityKey, IdentityName, PhoneNumber};
use chaincall_phone::caller::Proof;
use chaincall_phone::{KeyMode, PhoneEvent, Signalling, Verification};
use common::*;

const ALICE: &str = "+15550400001";
const BOB: &str = "+15550400002";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sipd_in_enforce_passes_a_verified_caller_marked_and_refuses_a_spoof_with_438() {
    let mut net =
        Net::start_with(|c| c.identity.verify = chaincall_sipd::VerifyMode::Enforce).await;
    let (alice_key, bob_key, carol_key) = (
        IdentityKey::generate(),
        IdentityKey::generate(),
        IdentityKey::generate(),
    );
    net.add(ALICE, &alice_key, true).await;
    net.add(BOB, &bob_key, true).await;
    let (bob, mut bob_ev) = net.phone(BOB, bob_key, KeyMode::MikeyPke, 400).await;
    bob.register(600).await.unwrap();

    // Claiming alice's number with carol's key (plain TCP: the TLS-PSK handshake would need
    // alice's key): its PASSporT names alice's entry but does not verify under her key.
    let tcp = net.tcp;
    let (mallory, mut mallory_ev) = net
        .phone_with(ALICE, carol_key, KeyMode::Sdes, 400, |c| {
            c.signalling = Signalling::Tcp { addr: tcp }
        })
        .await;
    mallory
        .call(&PhoneNumber::parse(BOB).unwrap())
        .await
        .unwrap();
    let refusal = match wait_for(&mut mallory_ev, |e| matches!(e, PhoneEvent::Refused { .. })).await
    {
        PhoneEvent::Refused { reason, .. } => reason,
        _ => unreachable!(),
    };
    assert!(refusal.contains("438"), "{refusal}");
    mallory.shutdown().await;

    let (alice, mut alice_ev) = net.phone(ALICE, alice_key, KeyMode::Sdes, 400).await;
    let call = alice.call(&PhoneNumber::parse(BOB).unwrap()).await.unwrap();
    // bob's first incoming call is alice's: the spoof never reached him.
    let caller = match wait_for(&mut bob_ev, |e| matches!(e, PhoneEvent::Incoming { .. })).await {
        PhoneEvent::Incoming { caller, .. } => caller,
        _ => unreachable!(),
    };
    assert!(
        caller
            .uri
            .contains(&format!("{ALICE};verstat=TN-Validation-Passed@")),
        "{}",
        caller.uri
    );
    assert!(
        matches!(
            &caller.verification,
            Verification::Verified { identity, proof: Proof::Passport, .. }
                if *identity == IdentityName::parse(ALICE).unwrap()
        ),
        "{caller:?}"
    );
    wait_for(&mut alice_ev, |e| matches!(e, PhoneEvent::CallUp { .. })).await;
    wait_for(&mut bob_ev, |e| matches!(e, PhoneEvent::CallUp { .. })).await;
    alice.hangup(&call).await.unwrap();
    call_ended(&mut bob_ev).await;
    for p in [alice, bob] {
        p.shutdown().await;
    }
    net.stop();
}
