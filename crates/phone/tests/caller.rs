//! Who is calling, decided before the phone rings (issue 14 item 1, issue 20 items 1 and 4): a
//! MIKEY caller is shown verified on chain by both its MIKEY signature and its PASSporT before
//! anyone answers; an SDES caller by its PASSporT alone (the Identity header passes sipd
//! untouched); a call whose proofs name another key is a likely spoof, refused with RFC 8224's
//! 438. Real sockets through sipd; the keystore on the embedded chain. (An SDES call with no
//! PASSporT at all is `spoof.rs`: sipp from a foreign domain.)

mod common;

use chaincall_identity::{IdentityKey, IdentityName, PhoneNumber};
use chaincall_phone::caller::Proof;
use chaincall_phone::core::KeyedCall;
use chaincall_phone::{KeyMode, PhoneEvent, PhoneEvents, Signalling, Verification};
use common::*;

const ALICE: &str = "+15550300001";
const BOB: &str = "+15550300002";
const CAROL: &str = "+15550300003";

fn n(s: &str) -> PhoneNumber {
    PhoneNumber::parse(s).unwrap()
}

fn name(s: &str) -> IdentityName {
    IdentityName::parse(s).unwrap()
}

/// The next `Incoming` event's caller and whether the phone waits for a decision.
async fn incoming(events: &mut PhoneEvents) -> (String, chaincall_phone::CallerId, bool) {
    match wait_for(events, |e| matches!(e, PhoneEvent::Incoming { .. })).await {
        PhoneEvent::Incoming {
            call_id,
            caller,
            awaiting_answer,
        } => (call_id, caller, awaiting_answer),
        _ => unreachable!(),
    }
}

/// The next `Refused` event's reason.
async fn refused(events: &mut PhoneEvents) -> String {
    match wait_for(events, |e| matches!(e, PhoneEvent::Refused { .. })).await {
        PhoneEvent::Refused { reason, .. } => reason,
        _ => unreachable!(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mikey_caller_is_shown_verified_before_answering() {
    let mut net = Net::start().await;
    let (alice_key, bob_key) = (IdentityKey::generate(), IdentityKey::generate());
    net.add(ALICE, &alice_key, true).await;
    net.add(BOB, &bob_key, true).await;
    let (alice, mut alice_ev) = net
        .phone(ALICE, alice_key.clone(), KeyMode::MikeyPke, 400)
        .await;
    // bob asks before answering: the verdict must be there while the phone rings.
    let (bob, mut bob_ev) = net
        .phone_with(BOB, bob_key, KeyMode::MikeyPke, 400, |c| {
            c.auto_answer = false
        })
        .await;
    bob.register(600).await.unwrap();

    alice.call(&n(BOB)).await.unwrap();
    let (call, caller, awaiting) = incoming(&mut bob_ev).await;
    assert!(awaiting, "bob decides");
    assert_eq!(caller.uri, format!("sip:{ALICE}@{}", net.domain()));
    assert_eq!(caller.claimed, Some(name(ALICE)));
    assert_eq!(
        caller.verification,
        Verification::Verified {
            identity: name(ALICE),
            proof: Proof::PassportAndMikey,
            lookup_verified: true,
            fingerprint: chaincall_identity::safety::Fingerprint::new(
                &name(ALICE),
                &alice_key.public()
            )
            .grouped(),
        }
    );
    // Checking before ringing kept the offer acceptable: answering keys the call.
    bob.answer(&call, true).await.unwrap();
    let up = wait_for(&mut bob_ev, |e| matches!(e, PhoneEvent::CallUp { .. })).await;
    let PhoneEvent::CallUp {
        call:
            KeyedCall {
                caller: Some(up_caller),
                verified_peer,
                ..
            },
        ..
    } = up
    else {
        panic!("{up:?}")
    };
    assert!(up_caller.is_verified());
    assert_eq!(verified_peer, Some(name(ALICE)));
    wait_for(&mut alice_ev, |e| matches!(e, PhoneEvent::CallUp { .. })).await;
    alice.hangup(&call).await.unwrap();
    let PhoneEvent::CallEnded(report) =
        wait_for(&mut bob_ev, |e| matches!(e, PhoneEvent::CallEnded(_))).await
    else {
        unreachable!()
    };
    assert!(report.caller.as_ref().is_some_and(|c| c.is_verified()));
    for p in [alice, bob] {
        p.shutdown().await;
    }
    net.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sdes_caller_is_verified_by_its_passport_through_sipd() {
    let mut net = Net::start().await;
    let (bob_key, carol_key) = (IdentityKey::generate(), IdentityKey::generate());
    net.add(BOB, &bob_key, true).await;
    net.add(CAROL, &carol_key, true).await;
    // SDES keys prove nothing about who sent them; the INVITE's PASSporT, signed by carol's
    // on-chain key and bound to those keys, does. Without it this was a likely spoof.
    let (carol, mut carol_ev) = net
        .phone(CAROL, carol_key.clone(), KeyMode::Sdes, 400)
        .await;
    let (bob, mut bob_ev) = net
        .phone(BOB, bob_key.clone(), KeyMode::MikeyPke, 400)
        .await;
    bob.register(600).await.unwrap();
    let call = carol.call(&n(BOB)).await.unwrap();
    let (_, caller, awaiting) = incoming(&mut bob_ev).await;
    assert!(!awaiting, "a verified caller is answered at once");
    assert!(
        matches!(
            &caller.verification,
            Verification::Verified { identity, proof: Proof::Passport, lookup_verified: true, .. }
                if *identity == name(CAROL)
        ),
        "{caller:?}"
    );
    wait_for(&mut carol_ev, |e| matches!(e, PhoneEvent::CallUp { .. })).await;
    wait_for(&mut bob_ev, |e| matches!(e, PhoneEvent::CallUp { .. })).await;
    carol.hangup(&call).await.unwrap();
    let PhoneEvent::CallEnded(report) =
        wait_for(&mut bob_ev, |e| matches!(e, PhoneEvent::CallEnded(_))).await
    else {
        unreachable!()
    };
    assert_eq!(report.mode, KeyMode::Sdes);
    assert_eq!(
        report.caller.as_ref().map(|c| c.verification.name()),
        Some("verified")
    );
    for p in [carol, bob] {
        p.shutdown().await;
    }
    net.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mikey_offer_signed_with_carols_key_claiming_alice_is_refused() {
    let mut net = Net::start().await;
    let keys: Vec<IdentityKey> = (0..3).map(|_| IdentityKey::generate()).collect();
    for (number, key) in [(ALICE, &keys[0]), (BOB, &keys[1]), (CAROL, &keys[2])] {
        net.add(number, key, true).await;
    }
    // carol's phone calls as alice (plain TCP: the TLS-PSK handshake would need alice's key);
    // its MIKEY offer names alice but is signed with carol's key.
    let tcp = net.tcp;
    let (mallory, mut mallory_ev) = net
        .phone_with(ALICE, keys[2].clone(), KeyMode::MikeyPke, 400, |c| {
            c.signalling = Signalling::Tcp { addr: tcp }
        })
        .await;
    let (bob, mut bob_ev) = net
        .phone(BOB, keys[1].clone(), KeyMode::MikeyPke, 400)
        .await;
    bob.register(600).await.unwrap();
    mallory.call(&n(BOB)).await.unwrap();
    let (_, caller, _) = incoming(&mut bob_ev).await;
    let Verification::LikelySpoof { reason } = &caller.verification else {
        panic!("{caller:?}")
    };
    assert!(
        reason.contains(ALICE) && reason.contains("signature"),
        "{reason}"
    );
    refused(&mut bob_ev).await;
    // Its PASSporT, signed with carol's key for alice's entry, fails first: RFC 8224's status.
    let at_mallory = refused(&mut mallory_ev).await;
    assert!(at_mallory.contains("438"), "{at_mallory}");
    for p in [mallory, bob] {
        p.shutdown().await;
    }
    net.stop();
}
