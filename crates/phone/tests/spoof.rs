//! Issue 14's spoof, end to end: a standard SIP caller (sipp, Debian `sip-tester`) from a foreign
//! domain, with SDES keys and no credentials, claims alice's number — which has a key on chain —
//! and calls bob's chaincall phone through sipd's UDP port. sipd (digest auth, policy `mark`) lets
//! it through marked `verstat=TN-Validation-Failed`; bob's phone shows the whole From and "likely
//! spoof" before answering, and under the default policy refuses it: sipp sees 403. Skips without
//! sipp unless CHAINCALL_REQUIRE_PEERS=1.

mod common;

use std::process::{Command, Stdio};

use chaincall_identity::IdentityKey;
use chaincall_phone::{KeyMode, PhoneEvent, Verification};
use chaincall_sipd::db::Db;
use common::*;

const ALICE: &str = "+15550100001";
const BOB: &str = "+15550100002";
const BOB_PASSWORD: &str = "bob's sip password";

/// One INVITE from `<sip:ALICE@evil.example>` with an SDES offer; the call passes when the final
/// answer is 403 (then ACKed on the INVITE's branch: `[branch-3]`, three elements back).
fn scenario(domain: &str) -> String {
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
      Max-Forwards: 70
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=- 1 1 IN IP4 [local_ip]
      s=-
      c=IN IP4 [local_ip]
      t=0 0
      m=audio [media_port] RTP/SAVP 0
      a=rtpmap:0 PCMU/8000
      a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0e
      a=sendrecv

    ]]>
  </send>

  <recv response="100" optional="true">
  </recv>

  <recv response="403">
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

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("spoof.xml");
    std::fs::write(&file, scenario("127.0.0.1")).unwrap();
    let sipd_udp = format!("127.0.0.1:{}", net.udp_port);
    let port = chaincall_testkit::free_udp_port().to_string();
    let args = [
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
    ]
    .map(str::to_owned);
    let work = dir.path().to_path_buf();
    let sipp_run = tokio::task::spawn_blocking(move || {
        Command::new(sipp)
            .args(args)
            .current_dir(work)
            .stdin(Stdio::null())
            .output()
            .expect("sipp starts")
    });

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

    let out = sipp_run.await.unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "sipp did not get its 403:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(net.metrics.foreign_local_number.get(), 1);
    bob.shutdown().await;
    net.stop();
}
