//! Issue 17's "Done when" on the namespace test network: phones behind NAT register with sipd over
//! TLS-PSK (the phone's default transport, the chain-keyed handshake through their routers) and
//! call each other both ways, MIKEY-PKE one way and DH-SIGN the other, the media through
//! rtpengine (`[relay] mode = "nat"`): the audio matches, rtpengine's statistics count the
//! relayed packets while the call lasts, and it holds nothing after the BYE. A caller behind a
//! symmetric NAT reaches a callee on the public segment the same way.
//!
//! Needs root for the namespaces (the test skips without, unless `CHAINCALL_REQUIRE_PEERS=1`).

mod common;

use std::time::Duration;

use chaincall_identity::PhoneNumber;
use chaincall_phone::core::KeyedCall;
use chaincall_phone::{KeyMode, Phone, PhoneEvent, PhoneEvents, Signalling};
use common::nat::{Relay, assert_heard, phone_inside, relay_network};
use common::{call_ended, wait_for};

/// alice's, bob's and carol's numbers.
const NUMBERS: [&str; 3] = ["+15550420001", "+15550420002", "+15550420003"];
/// Their hosts: alice behind a symmetric NAT, bob behind a port-preserving one, carol public.
const NODES: [&str; 3] = ["alice", "bob", "carol"];
const AUDIO_MS: u32 = 1000;
/// G.711 packets of 20 ms in [`AUDIO_MS`].
const PACKETS: u64 = AUDIO_MS as u64 / 20;
/// The packets a phone behind NAT may miss before its own first packet has opened its router to
/// the relay (as `nat_relay.rs` allows; `common::nat::assert_heard` says why).
const MAX_LOST: usize = 25;

/// `caller` calls `callee` (who answers by itself); the call comes up keyed with `mode`,
/// rtpengine relays both parties' audio, and after the BYE it holds nothing. Returns the
/// caller's and the callee's reports.
async fn call_through_relay(
    relay: &Relay,
    (caller, caller_ev): (&Phone, &mut PhoneEvents),
    (callee, callee_ev): (&PhoneNumber, &mut PhoneEvents),
    mode: KeyMode,
) -> (chaincall_phone::CallReport, chaincall_phone::CallReport) {
    let call = caller.call(callee).await.unwrap();
    for events in [&mut *caller_ev, &mut *callee_ev] {
        let up = wait_for(events, |e| matches!(e, PhoneEvent::CallUp { .. })).await;
        let PhoneEvent::CallUp {
            call:
                KeyedCall {
                    call_id,
                    mode: keyed,
                    verified_peer,
                    ..
                },
            ..
        } = up
        else {
            unreachable!()
        };
        assert_eq!(call_id, call);
        assert_eq!(keyed, mode, "keyed as the caller offered");
        assert!(verified_peer.is_some(), "the peer's key verified on chain");
    }
    assert_eq!(
        relay.calls(),
        std::slice::from_ref(&call),
        "rtpengine holds the call"
    );
    // The audio plays out (as nat_relay.rs waits: hanging up earlier would cut its last packets
    // off on the way); during the call, rtpengine counts each party's whole audio on its ports.
    tokio::time::sleep(Duration::from_millis(u64::from(AUDIO_MS) + 500)).await;
    let stats = relay.wait_for_relayed(&call, PACKETS);
    assert!(stats.rtp.packets >= 2 * PACKETS, "{stats:?}");
    caller.hangup(&call).await.unwrap();
    let (a, b) = (call_ended(caller_ev).await, call_ended(callee_ev).await);
    assert!(!a.signalling_lost && !b.signalling_lost);
    relay.wait_until_no_calls("the BYE");
    (a, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn natd_phones_on_tls_psk_call_each_other_both_ways_through_rtpengine() {
    let Some((tn, relay, net)) = relay_network(&["carol"]).await else {
        return;
    };

    // Each phone keys its own calls its own way: alice's offers MIKEY-PKE, bob's and carol's
    // DH-SIGN. The signalling is the default: TLS-PSK to sipd's tls listener.
    let mut phones = Vec::new();
    let modes = [
        KeyMode::MikeyPke,
        KeyMode::MikeyDhSign,
        KeyMode::MikeyDhSign,
    ];
    for ((number, node), mode) in NUMBERS.into_iter().zip(NODES).zip(modes) {
        let (phone, events, rt) = phone_inside(&net, &tn, node, number, mode, AUDIO_MS, |c| {
            assert!(matches!(c.signalling, Signalling::TlsPsk { .. }));
        })
        .await;
        assert_eq!(
            phone.register(600).await.unwrap(),
            600,
            "{number} registered"
        );
        phones.push((phone, events, rt));
    }
    assert_eq!(
        net.metrics.nat_registrations.get(),
        2,
        "alice and bob seen behind NAT, carol not"
    );
    let n = |s| PhoneNumber::parse(s).unwrap();
    let (alice, bob, carol) = (0, 1, 2);
    // (caller, callee, how the caller keys, packets the callee and the caller may miss at the
    // start): both ways between the NAT'd phones, and the symmetric-NAT caller to carol on the
    // public segment (relayed too, alice being NAT'd), who misses nothing.
    for (from, to, mode, to_misses, from_misses) in [
        (alice, bob, KeyMode::MikeyPke, MAX_LOST, MAX_LOST),
        (bob, alice, KeyMode::MikeyDhSign, MAX_LOST, MAX_LOST),
        (alice, carol, KeyMode::MikeyPke, 0, MAX_LOST),
    ] {
        let [caller, callee] = phones.get_disjoint_mut([from, to]).unwrap();
        let (a, b) = call_through_relay(
            &relay,
            (&caller.0, &mut caller.1),
            (&n(NUMBERS[to]), &mut callee.1),
            mode,
        )
        .await;
        assert_heard(&a, &b, AUDIO_MS, to_misses);
        assert_heard(&b, &a, AUDIO_MS, from_misses);
    }

    let m = &net.metrics;
    assert_eq!(m.media_relay_offers.get(), 3);
    assert_eq!(m.media_relay_errors.get(), 0);
    assert_eq!(m.media_relay_sessions.get(), 0);
    for (phone, _, _) in &phones {
        phone.shutdown().await;
    }
}
