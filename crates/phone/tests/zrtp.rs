//! Two chaincall phones with `key_mode = "zrtp"` call through sipd over TLS-PSK: the SDP carries
//! `a=zrtp-hash` and no keys, the exchange runs on each call's media socket, both sides show the
//! same SAS with the chain binding held (each bound to the other's on-chain key), each receives
//! exactly the audio packets the other sent, and the ZRTP cache files (0600) keep the ZID, the
//! retained secret and the ZID ↔ identity pin, so the next call finds the cached secret.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chaincall_identity::{IdentityKey, PhoneNumber, Randomness};
use chaincall_phone::core::KeyedCall;
use chaincall_phone::report::CallReportJson;
use chaincall_phone::zrtp_media::ZrtpStatus;
use chaincall_phone::zrtp_store::{ZidPin, ZrtpStore};
use chaincall_phone::{CallReport, KeyMode, Phone, PhoneEvent, PhoneEvents};
use chaincall_zrtp::CacheStatus;
use common::*;

const ALICE: &str = "+15550400001";
const BOB: &str = "+15550400002";

/// The ZRTP outcome of the next `CallUp`.
async fn zrtp_up(events: &mut PhoneEvents) -> ZrtpStatus {
    match wait_for(events, |e| matches!(e, PhoneEvent::CallUp { .. })).await {
        PhoneEvent::CallUp {
            call:
                KeyedCall {
                    mode,
                    verified_peer,
                    ..
                },
            zrtp,
            ..
        } => {
            assert_eq!(mode, KeyMode::Zrtp);
            assert!(verified_peer.is_some());
            zrtp.expect("a ZRTP call up carries the exchange's outcome")
        }
        other => unreachable!("{other:?}"),
    }
}

/// One call from alice to bob (alice confirming the SAS when `confirm`); both sides' outcome at
/// call up and their reports.
async fn call(
    alice: &Phone,
    alice_ev: &mut PhoneEvents,
    bob_ev: &mut PhoneEvents,
    confirm: bool,
) -> ([ZrtpStatus; 2], [CallReport; 2]) {
    let id = alice.call(&PhoneNumber::parse(BOB).unwrap()).await.unwrap();
    let a = zrtp_up(alice_ev).await;
    let b = zrtp_up(bob_ev).await;
    if confirm {
        alice.confirm_sas(&id).await.unwrap();
    }
    // Lets the 1 s sources go out (a wait, not a timed assertion).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    alice.hangup(&id).await.unwrap();
    let ra = call_ended(alice_ev).await;
    let rb = call_ended(bob_ev).await;
    ([a, b], [ra, rb])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_phones_agree_by_zrtp_bound_to_their_on_chain_keys() {
    let mut net = Net::start().await;
    let (alice_key, bob_key) = (IdentityKey::generate(), IdentityKey::generate());
    net.add(ALICE, &alice_key, true).await;
    net.add(BOB, &bob_key, true).await;
    let cache_of = |who: &str| net.dir.path().join(format!("{who}-zrtp-cache.json"));
    let (alice_cache, bob_cache) = (cache_of("alice"), cache_of("bob"));
    let store = |path: &Path| Arc::new(ZrtpStore::open(path, &Randomness::os()).unwrap());
    let (alice_store, bob_store) = (store(&alice_cache), store(&bob_cache));
    let keylog_of = |who: &str| net.dir.path().join(format!("{who}-srtp-keys.log"));
    let (alice_keylog, bob_keylog) = (keylog_of("alice"), keylog_of("bob"));
    let (alice, mut alice_ev) = net
        .phone_with(ALICE, alice_key, KeyMode::Zrtp, 1000, |c| {
            c.zrtp = Some(alice_store.clone());
            c.keylog = Some(alice_keylog.clone());
        })
        .await;
    let (bob, mut bob_ev) = net
        .phone_with(BOB, bob_key, KeyMode::Zrtp, 1000, |c| {
            c.zrtp = Some(bob_store.clone());
            c.keylog = Some(bob_keylog.clone());
        })
        .await;
    for p in [&alice, &bob] {
        p.register(600).await.unwrap();
    }

    let ([a, b], [ra, rb]) = call(&alice, &mut alice_ev, &mut bob_ev, true).await;
    assert!(
        !a.sas_verified && !b.sas_verified,
        "nobody confirmed it before"
    );
    assert_eq!(a.sas, b.sas, "both sides show the same SAS");
    assert!(a.chain_bound && b.chain_bound, "{a:?} {b:?}");
    assert_eq!(
        (a.cache, b.cache),
        (CacheStatus::NoSecrets, CacheStatus::NoSecrets)
    );
    assert_eq!(a.peer_zid, hex::encode(bob_store.zid().0));
    assert_eq!(b.peer_zid, hex::encode(alice_store.zid().0));
    // The set-up time runs to SRTP keyed: through the exchange in the media path.
    assert!(ra.timings.call_setup >= ra.timings.signalling + a.exchange);
    for r in [&ra, &rb] {
        assert_eq!(r.mode, KeyMode::Zrtp);
        assert_eq!(r.stats.rtp_rejected, 0, "{:?}", r.stats);
        assert!(r.stats.rtp_received >= 20, "{:?}", r.stats);
        let json =
            serde_json::to_value(CallReportJson::new("+1", r, Some(Path::new("x.wav")))).unwrap();
        assert_eq!(json["key_mode"], "zrtp", "{json}");
        assert_eq!(json["zrtp"]["sas"], a.sas.as_str(), "{json}");
        assert_eq!(json["zrtp"]["chain_bound"], true, "{json}");
        // The first chain-bound call pins the peer's ZID to its on-chain identity.
        assert_eq!(json["zrtp"]["pin"], "new", "{json}");
        let text = chaincall_phone::report::TextReport {
            report: r,
            recording: None,
        }
        .to_string();
        assert!(text.contains("now pinned to"), "{text}");
    }
    // Alice confirmed the SAS during the call: her report says so, Bob's does not.
    assert!(ra.zrtp.as_ref().unwrap().sas_verified);
    assert!(!rb.zrtp.as_ref().unwrap().sas_verified);
    // Exactly the packets the other side sent, both ways: nothing before SecureOn was lost to a
    // missing key, nothing was sent in the clear.
    assert!(!ra.sent_payload.is_empty());
    assert_eq!(rb.received_payload, ra.sent_payload);
    assert_eq!(ra.received_payload, rb.sent_payload);

    // The cache files: 0600, the pin of each peer's ZID to its number, and a retained secret.
    for (path, peer_zid, peer) in [
        (&alice_cache, &a.peer_zid, BOB),
        (&bob_cache, &b.peer_zid, ALICE),
    ] {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", path.display());
        let file: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let entry = &file["peers"][peer_zid.as_str()];
        assert_eq!(entry["identity"], format!("tel:{peer}"), "{file}");
        assert_eq!(entry["rs1"].as_str().map(str::len), Some(64), "{file}");
        // RFC 6189 §4.6.1.1's flag: Alice's cache has it for Bob's ZID, Bob's not for hers.
        assert_eq!(entry["sas_verified"], path == &alice_cache, "{file}");
    }
    // `--keylog` has ZRTP's SRTP master keys in the MIKEY calls' format: each side's file names
    // both streams by their real SSRCs, and the two files agree on every stream's key.
    let lines = |path: &Path| -> Vec<String> {
        let text = std::fs::read_to_string(path).unwrap();
        let mut l: Vec<String> = text.lines().map(str::to_owned).collect();
        l.sort();
        l
    };
    let (alice_lines, bob_lines) = (lines(&alice_keylog), lines(&bob_keylog));
    assert_eq!(alice_lines.len(), 2, "{alice_lines:?}");
    assert_eq!(alice_lines, bob_lines, "both sides log the same two keys");
    for ssrc in [ra.stats.peer_ssrc.unwrap(), rb.stats.peer_ssrc.unwrap()] {
        let line = alice_lines
            .iter()
            .find(|l| l.starts_with(&format!("ssrc={ssrc:08x} ")))
            .unwrap_or_else(|| panic!("no key for {ssrc:08x}: {alice_lines:?}"));
        let fields: Vec<&str> = line.split(' ').collect();
        assert!(
            fields[1].starts_with("profile=AES_CM_128_HMAC_SHA1_"),
            "{line}"
        );
        assert_eq!(
            fields[2].strip_prefix("inline=").map(str::len),
            Some(40),
            "{line}"
        );
    }
    // A phone started again reads the same ZID back.
    assert_eq!(store(&alice_cache).zid(), alice_store.zid());

    // The second call finds the retained secret on both sides.
    let ([a2, b2], _) = call(&alice, &mut alice_ev, &mut bob_ev, false).await;
    assert_eq!(
        (a2.cache, b2.cache),
        (CacheStatus::Matched, CacheStatus::Matched)
    );
    assert!(a2.chain_bound && b2.chain_bound);
    // The same ZIDs, the same identities: the pins hold.
    assert_eq!(
        (&a2.pin, &b2.pin),
        (&Some(ZidPin::Same), &Some(ZidPin::Same))
    );
    // The next call shows the confirmation: on Alice's side from her cache, on Bob's from the
    // V flag in her Confirm.
    assert!(a2.sas_verified && !a2.peer_sas_verified, "{a2:?}");
    assert!(!b2.sas_verified && b2.peer_sas_verified, "{b2:?}");
    assert_eq!(a2.sas, b2.sas);

    for p in [alice, bob] {
        p.shutdown().await;
    }
    net.stop();
}
