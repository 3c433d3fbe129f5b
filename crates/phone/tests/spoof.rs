//! Issue 14's spoof, end to end: a standard SIP caller (sipp, Debian `sip-tester`) from a foreign
//! domain, with SDES keys and no credentials, claims alice's number — which has a key on chain —
//! and calls bob's chaincall phone through sipd's UDP port. sipd (digest auth, policy `mark`) lets
//! it through marked `verstat=TN-Validation-Failed`; bob's phone shows the whole From and "likely
//! spoof" before answering, and under the default policy refuses it: sipp sees 403.
//!
//! Issue 20's half: the same caller against sipd's `[identity] verify` (auth none, so only the
//! PASSporT check stands between it and bob). `enforce` answers 428 to it without an Identity
//! header and 438 to it with a PASSporT signed by a key that is not alice's on-chain key, and bob's
//! phone never sees either; `mark` forwards it marked `TN-Validation-Failed` and bob's phone flags
//! it. Skips without sipp unless CHAINCALL_REQUIRE_PEERS=1.

mod common;

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

use chaincall_chain::KeystoreChain;
use chaincall_identity::{IdentityKey, IdentityName, PhoneNumber};
use chaincall_passport::{
    Claims, Dest, IdentityHeader, KeyLocator, KeystoreAddress, MediaBinding, Party, new_origid,
};
use chaincall_phone::{KeyMode, Phone, PhoneEvent, PhoneEvents, Verification};
use chaincall_sipd::VerifyMode;
use chaincall_sipd::db::Db;
use chaincall_sipd::metrics::IdentityCheck;
use common::*;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

const ALICE: &str = "+15550100001";
const BOB: &str = "+15550100002";
const BOB_PASSWORD: &str = "bob's sip password";

/// The SDES offer's key line: the only SDP line a PASSporT's media binding covers.
const CRYPTO: &str =
    "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0e";

/// One INVITE from `<sip:ALICE@evil.example>` with an SDES offer (and `identity` as its Identity
/// header, if any); the call passes when the final answer is `status` (then ACKed on the INVITE's
/// branch: `[branch-3]`, three elements back).
fn scenario(domain: &str, status: u16, identity: Option<&str>) -> String {
    let identity = identity.map_or(String::new(), |v| format!("\n      Identity: {v}"));
    format!(
        r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="spoofed SDES call claiming a local number">
  <send retrans="500">
    <![CDATA[

      INVITE sip:{BOB}@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: "Alice" <sip:{ALICE}@evil.example>;tag=[pid]SIPpTag[call_number]
      To: <sip:{BOB}@{domain}>
      Call-ID: [call_id]
      CSeq: 1 INVITE
      Contact: <sip:{ALICE}@[local_ip]:[local_port]>
      Max-Forwards: 70{identity}
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=- 1 1 IN IP4 [local_ip]
      s=-
      c=IN IP4 [local_ip]
      t=0 0
      m=audio [media_port] RTP/SAVP 0
      a=rtpmap:0 PCMU/8000
      {CRYPTO}
      a=sendrecv

    ]]>
  </send>

  <recv response="100" optional="true">
  </recv>

  <recv response="{status}">
  </recv>

  <send>
    <![CDATA[

      ACK sip:{BOB}@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch-3]
      From: "Alice" <sip:{ALICE}@evil.example>;tag=[pid]SIPpTag[call_number]
      To: <sip:{BOB}@{domain}>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 1 ACK
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
</scenario>
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_sdes_caller_claiming_alices_number_is_shown_as_a_likely_spoof_and_refused() {
    let Some(sipp) = chaincall_testkit::peer("sipp") else {
        return;
    };
    // sipd's subscriber table: alice and bob are local (sipd's domain is its listen IP).
    let db_dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", db_dir.path().join("sub.db").display());
    let db = Db::connect(&url).await.unwrap();
    db.create_schema().await.unwrap();
    for (user, password) in [(ALICE, "alice's sip password"), (BOB, BOB_PASSWORD)] {
        db.add_subscriber(user, "127.0.0.1", password)
            .await
            .unwrap();
    }
    let mut net = Net::start_with(|sipd| {
        sipd.auth.mode = chaincall_sipd::AuthMode::Digest;
        sipd.auth.database = url.clone();
        sipd.policy.foreign_caller_with_local_number =
            chaincall_sipd::config::ForeignCallerPolicy::Mark;
    })
    .await;
    // alice's number has a key on chain; bob's phone checks callers against it.
    net.add(ALICE, &IdentityKey::generate(), true).await;
    let bob_key = IdentityKey::generate();
    net.add(BOB, &bob_key, true).await;
    let (bob, mut bob_ev) = net
        .phone_with(BOB, bob_key, KeyMode::MikeyPke, 400, |c| {
            c.sip_password = zeroize::Zeroizing::new(BOB_PASSWORD.to_owned())
        })
        .await;
    bob.register(600).await.unwrap();

    let sipp_run = start_sipp(sipp, net.udp_port, scenario("127.0.0.1", 403, None));

    // Before anyone answers: the whole From, and what it proves.
    let PhoneEvent::Incoming {
        caller,
        awaiting_answer,
        ..
    } = wait_for(&mut bob_ev, |e| matches!(e, PhoneEvent::Incoming { .. })).await
    else {
        unreachable!()
    };
    assert_eq!(
        caller.uri,
        format!("sip:{ALICE};verstat=TN-Validation-Failed@evil.example")
    );
    assert_eq!(caller.display_name.as_deref(), Some("Alice"));
    assert_eq!(caller.claimed.as_ref().map(|c| c.as_str()), Some(ALICE));
    assert!(
        matches!(&caller.verification, Verification::LikelySpoof { .. }),
        "{caller:?}"
    );
    assert!(!awaiting_answer, "refused under the default policy");
    let PhoneEvent::Refused { reason, .. } =
        wait_for(&mut bob_ev, |e| matches!(e, PhoneEvent::Refused { .. })).await
    else {
        unreachable!()
    };
    assert!(reason.contains("caller not verified"), "{reason}");

    assert_sipp_passed(sipp_run.await.unwrap(), 403);
    assert_eq!(net.metrics.foreign_local_number.get(), 1);
    bob.shutdown().await;
    net.stop();
}

/// Runs sipp once with `scenario` against sipd's UDP port `udp_port`, in a thread (sipp blocks).
fn start_sipp(sipp: PathBuf, udp_port: u16, scenario: String) -> tokio::task::JoinHandle<Output> {
    tokio::task::spawn_blocking(move || {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("spoof.xml");
        std::fs::write(&file, scenario).unwrap();
        let sipd_udp = format!("127.0.0.1:{udp_port}");
        let port = chaincall_testkit::free_udp_port().to_string();
        Command::new(sipp)
            .args([
                "-sf",
                file.to_str().unwrap(),
                &sipd_udp,
                "-i",
                "127.0.0.1",
                "-p",
                &port,
                "-m",
                "1",
                "-nostdin",
                "-timeout",
                "30s",
                "-timeout_error",
            ])
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .output()
            .expect("sipp starts")
    })
}

/// sipp's exit status 0: its one call got `status` as the final answer, and nothing else.
fn assert_sipp_passed(out: Output, status: u16) {
    assert_eq!(
        out.status.code(),
        Some(0),
        "sipp did not get its {status}:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// sipd with `[identity] verify = mode` (auth none: no subscriber table, so the foreign-caller
/// policy of issue 14 never applies and only the PASSporT check stands in the way), alice's and
/// bob's numbers with keys on chain, bob's phone registered.
async fn verifying_net(mode: VerifyMode) -> (Net, Phone, PhoneEvents) {
    let net = Net::start_with(|c| c.identity.verify = mode).await;
    net.add(ALICE, &IdentityKey::generate(), true).await;
    let bob_key = IdentityKey::generate();
    net.add(BOB, &bob_key, true).await;
    let (bob, bob_ev) = net.phone(BOB, bob_key, KeyMode::MikeyPke, 400).await;
    bob.register(600).await.unwrap();
    (net, bob, bob_ev)
}

/// sipd's `sipd_identity_checks_total{result}`.
fn identity_checks(net: &Net, result: IdentityCheck) -> u64 {
    net.metrics.identity_checks[result as usize].get()
}

/// After sipp got sipd's refusal: sipd answered instead of forwarding, so bob's phone has had no
/// INVITE and no event of one is queued.
fn assert_no_incoming(bob_ev: &mut PhoneEvents) {
    while let Ok(e) = bob_ev.try_recv() {
        assert!(
            !matches!(e, PhoneEvent::Incoming { .. } | PhoneEvent::Refused { .. }),
            "the spoofed INVITE reached bob: {e:?}"
        );
    }
}

/// An Identity header for sipp's INVITE that is right in every claim — `orig` alice, `dest` bob,
/// fresh `iat`, the SDES line's media binding, `info` naming alice's entry in this keystore — but
/// signed by a fresh key that is not alice's on-chain key.
fn forged_identity(net: &Net) -> String {
    let alice = PhoneNumber::parse(ALICE).unwrap();
    let locator = KeyLocator::new(
        net.chain.chain_id(),
        KeystoreAddress(net.contract.into_array()),
        IdentityName::Phone(alice.clone()),
    );
    let claims = Claims {
        orig: Party::Tn(alice),
        dest: Dest::single(Party::Tn(PhoneNumber::parse(BOB).unwrap())),
        iat: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs(),
        // Any UUID: sipd's replay cache is fresh.
        origid: new_origid(&mut ChaCha20Rng::seed_from_u64(20)),
        media: MediaBinding::from_sdp(CRYPTO),
    };
    IdentityHeader::sign(&IdentityKey::generate(), &locator, &claims)
        .unwrap()
        .to_string()
}

/// sipp's spoofed call (with `identity`'s Identity header, made once sipd runs, if any) against
/// sipd in `enforce`: sipd answers `status` itself, bob's phone never sees the INVITE, and
/// `sipd_identity_checks_total{result="failed"}` counts it.
async fn enforce_refuses(status: u16, identity: fn(&Net) -> Option<String>) {
    let Some(sipp) = chaincall_testkit::peer("sipp") else {
        return;
    };
    let (mut net, bob, mut bob_ev) = verifying_net(VerifyMode::Enforce).await;
    let identity = identity(&net);
    let call = scenario("127.0.0.1", status, identity.as_deref());
    assert_sipp_passed(start_sipp(sipp, net.udp_port, call).await.unwrap(), status);
    assert_no_incoming(&mut bob_ev);
    assert_eq!(identity_checks(&net, IdentityCheck::Failed), 1);
    assert_eq!(identity_checks(&net, IdentityCheck::Passed), 0);
    bob.shutdown().await;
    net.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sipd_in_enforce_answers_428_to_the_foreign_caller_claiming_alices_number_unsigned() {
    // A sipd that does not verify forwards the INVITE, bob's phone refuses it with 403, and the
    // test fails at `assert_sipp_passed` in `enforce_refuses`: sipp expected 428.
    enforce_refuses(428, |_| None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sipd_in_enforce_answers_438_to_a_passport_signed_by_a_key_not_alices() {
    // A sipd that does not verify forwards the INVITE and bob's phone, which checks the PASSporT
    // itself, answers 438 too — so sipp alone cannot tell — and the test fails at
    // `assert_no_incoming` in `enforce_refuses`: bob's phone saw the call.
    enforce_refuses(438, |net| Some(forged_identity(net))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sipd_in_mark_forwards_the_foreign_caller_marked_failed_and_bobs_phone_flags_it() {
    let Some(sipp) = chaincall_testkit::peer("sipp") else {
        return;
    };
    let (mut net, bob, mut bob_ev) = verifying_net(VerifyMode::Mark).await;
    let sipp_run = start_sipp(sipp, net.udp_port, scenario("127.0.0.1", 403, None));
    let PhoneEvent::Incoming { caller, .. } =
        wait_for(&mut bob_ev, |e| matches!(e, PhoneEvent::Incoming { .. })).await
    else {
        unreachable!()
    };
    // A sipd that does not verify forwards the From as sipp wrote it, with no verstat, and the
    // test fails here.
    assert_eq!(
        caller.uri,
        format!("sip:{ALICE};verstat=TN-Validation-Failed@evil.example")
    );
    assert!(
        matches!(&caller.verification, Verification::LikelySpoof { .. }),
        "{caller:?}"
    );
    // Refused under bob's default policy: sipp's call ends with bob's 403.
    wait_for(&mut bob_ev, |e| matches!(e, PhoneEvent::Refused { .. })).await;
    assert_sipp_passed(sipp_run.await.unwrap(), 403);
    assert_eq!(identity_checks(&net, IdentityCheck::Failed), 1);
    // The issue-14 policy had no part in it: no subscriber table.
    assert_eq!(net.metrics.foreign_local_number.get(), 0);
    bob.shutdown().await;
    net.stop();
}
