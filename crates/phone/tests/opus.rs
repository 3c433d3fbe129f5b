//! Two chaincall phones with their default codecs call through sipd over TLS-PSK: they talk Opus,
//! each receives exactly the packets the other sent, the call reports (and their `--json`) say
//! `opus` and carry the jitter buffer's statistics, and DTMF digits pressed on one phone arrive
//! at the other as events, in order, once each.

mod common;

use std::time::Duration;

use chaincall_media::AudioCodec;
use chaincall_phone::report::CallReportJson;
use chaincall_phone::{DEFAULT_CODECS, PhoneEvent, PhoneEvents};
use common::*;

const ALICE: &str = "+15550300001";
const BOB: &str = "+15550300002";

/// The next `n` digits `events` tells of, in order.
async fn digits(events: &mut PhoneEvents, n: usize) -> String {
    let mut got = String::new();
    while got.len() < n {
        if let PhoneEvent::Dtmf { digit, .. } =
            wait_for(events, |e| matches!(e, PhoneEvent::Dtmf { .. })).await
        {
            got.push(digit);
        }
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_phones_talk_opus_and_send_each_other_dtmf() {
    let mut net = Net::start().await;
    let default = |c: &mut chaincall_phone::PhoneConfig| c.codecs = DEFAULT_CODECS.to_vec();
    let Talking {
        caller: (alice, mut alice_ev),
        callee: (bob, mut bob_ev),
        call,
    } = net
        .call_up_between((ALICE, default), (BOB, default), 2000)
        .await;
    alice.send_dtmf(&call, "159#").await.unwrap();
    assert_eq!(digits(&mut bob_ev, 4).await, "159#");
    bob.send_dtmf(&call, "*0").await.unwrap();
    assert_eq!(digits(&mut alice_ev, 2).await, "*0");
    // Refused by the core with a reason, nothing sent.
    let err = alice.send_dtmf(&call, "9?").await.unwrap_err();
    assert!(err.to_string().contains("'?' is not a DTMF digit"), "{err}");

    // Each digit replaces about 250 ms of audio (RFC 4733 §2.5.1.2); the rest of both 2 s
    // sources is sent by the time of the hang-up (a wait, not a timed assertion).
    tokio::time::sleep(Duration::from_millis(1300)).await;
    alice.hangup(&call).await.unwrap();
    let a = call_ended(&mut alice_ev).await;
    let b = call_ended(&mut bob_ev).await;

    for r in [&a, &b] {
        assert_eq!(r.codec, AudioCodec::OPUS);
        assert_eq!(r.stats.rtp_rejected, 0, "{:?}", r.stats);
        // Every packet accepted went through the jitter buffer: audio decoded, events skipped.
        let j = &r.jitter;
        assert_eq!(j.received + j.other, r.stats.rtp_received, "{j:?}");
        assert!(j.received >= 20 && j.decoded == j.received, "{j:?}");
        let json = serde_json::to_value(CallReportJson::new(
            "+1",
            r,
            Some(std::path::Path::new("x.wav")),
        ))
        .unwrap();
        assert_eq!(json["codec"], "opus", "{json}");
        assert_eq!(json["jitter"]["received"], j.received, "{json}");
        assert!(json["jitter"]["target_delay_ms"].as_u64().unwrap() >= 20);
    }
    // Exactly the Opus packets the other side sent; the digits were telephone-events, not audio.
    assert!(!a.sent_payload.is_empty() && !b.sent_payload.is_empty());
    assert_eq!(b.received_payload, a.sent_payload);
    assert_eq!(a.received_payload, b.sent_payload);
    assert!(
        b.jitter.other >= 4 && a.jitter.other >= 2,
        "one packet or more per digit"
    );
    // The recordings are the decoded speech at 8 kHz, about the second that was sent.
    assert!(b.recorded.len() >= 6000, "{}", b.recorded.len());

    for p in [alice, bob] {
        p.shutdown().await;
    }
    net.stop();
}
