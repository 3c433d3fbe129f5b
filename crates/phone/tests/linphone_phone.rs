//! Interop of the chaincall phone with a real Linphone: Debian's `linphonec` (liblinphone 5.1,
//! libbzrtp 5.1) registered with sipd over UDP with digest, the phone (`key_mode = "zrtp"`) as
//! another subscriber. linphonec calls the phone, which auto-answers it as an unverified caller;
//! both go secure by ZRTP with the same SAS (read from linphonec's output), the phone says the
//! chain binding does not apply (linphone has no on-chain key), and SRTP flows both ways.
//!
//! linphonec runs headless (`soundcard use files`) with its own HOME and rc file in a temp dir
//! (docs/zrtp.md, "Interop with Linphone"), and is killed when the test ends however it ends.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chaincall_identity::{IdentityKey, PhoneNumber};
use chaincall_phone::core::KeyedCall;
use chaincall_phone::report::{CallReportJson, TextReport};
use chaincall_phone::zrtp_media::ZrtpStatus;
use chaincall_phone::{AcceptUnverified, KeyMode, Phone, PhoneEvent, PhoneEvents, Signalling};
use chaincall_testkit::linphonec::{Linphonec, auth_token};
use common::*;

/// linphonec's subscriber and the phone's.
const LINPHONE: &str = "+15550600001";
const PHONE: &str = "+15550600002";

/// The 8 kHz WAV linphonec plays into the call.
const LINPHONE_SOUND: &str = "/usr/share/sounds/linphone/hello8000.wav";

/// Starts linphonec in `dir` registering `user` (digest `password`) with the registrar at
/// `sipd`, ZRTP mandatory, playing [`LINPHONE_SOUND`]; waits until the registration succeeded.
fn start_linphonec(
    bin: &Path,
    dir: &Path,
    sipd: SocketAddr,
    user: &str,
    password: &str,
) -> Linphonec {
    let sip_port = chaincall_testkit::free_udp_port();
    let rtp_port = chaincall_testkit::free_udp_port();
    let host = sipd.ip();
    // The domain is sipd's address with its port (sipd is not on 5060): a Request-URI without
    // the port names another domain, which sipd would proxy to rather than serve.
    // The password is in the rc file in a private (0700) temp dir, not on a command line.
    let rc = format!(
        "[sip]\nsip_port={sip_port}\nsip_tcp_port=0\nsip_tls_port=0\nguess_hostname=0\n\
         bind_address={host}\nmedia_encryption=zrtp\nmedia_encryption_mandatory=1\n\
         register_only_when_network_is_up=0\ninc_timeout=60\ndefault_proxy=0\n\
         [proxy_0]\nreg_proxy=<sip:{sipd};transport=udp>\nreg_identity=sip:{user}@{sipd}\n\
         reg_expires=600\nreg_sendregister=1\npublish=0\ndial_escape_plus=0\n\
         [auth_info_0]\nusername={user}\npasswd={password}\nrealm={host}\n\
         [rtp]\naudio_rtp_port={rtp_port}\n\
         [net]\nfirewall_policy=0\n\
         [sound]\nechocancellation=0\n"
    );
    let mut lp = Linphonec::spawn(bin, dir, &rc);
    wait_registered(&mut lp);
    lp.command("soundcard use files");
    // With no file to play, linphonec sends no RTP at all: it plays the greeting its own
    // package ships (liblinphone-common, installed with linphone-cli).
    let play = Path::new(LINPHONE_SOUND);
    assert!(
        play.exists(),
        "{} is missing (liblinphone-common)",
        play.display()
    );
    lp.command(&format!("play {}", play.display()));
    lp
}

/// Waits until linphonec's registration succeeded (`status register` says `registered,`).
fn wait_registered(lp: &mut Linphonec) {
    let end = Instant::now() + Duration::from_secs(10);
    while Instant::now() < end {
        lp.command("status register");
        if lp
            .wait_for("registered", Duration::from_secs(2))
            .starts_with("registered,")
        {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!(
        "linphonec did not register; stdout:\n{}\nlog tail:\n{}",
        lp.transcript.join("\n"),
        lp.log_tail()
    );
}

fn linphonec() -> Option<PathBuf> {
    chaincall_testkit::peer("linphonec")
}

/// The Call-ID and ZRTP outcome of the next `CallUp`, which must name no chain-verified peer.
async fn zrtp_up(events: &mut PhoneEvents) -> (String, ZrtpStatus) {
    match wait_for(events, |e| matches!(e, PhoneEvent::CallUp { .. })).await {
        PhoneEvent::CallUp {
            call:
                KeyedCall {
                    call_id,
                    mode,
                    verified_peer,
                    ..
                },
            zrtp,
            ..
        } => {
            assert_eq!(mode, KeyMode::Zrtp);
            assert_eq!(verified_peer, None, "linphone has no on-chain key");
            let zrtp = zrtp.expect("a ZRTP call up carries the exchange's outcome");
            (call_id, zrtp)
        }
        other => unreachable!("{other:?}"),
    }
}

/// sipd (UDP, digest) with both subscribers, the phone registered and linphonec registered.
struct Setup {
    _net: Net,
    _db_dir: tempfile::TempDir,
    /// sipd's UDP address, also the SIP domain.
    udp: SocketAddr,
    phone: Phone,
    events: PhoneEvents,
    lp: Linphonec,
    /// linphonec's HOME; declared after `lp`, so linphonec is killed before it goes.
    _lp_dir: tempfile::TempDir,
}

async fn setup(bin: &Path) -> Setup {
    let password = |user: &str| format!("pw-{}", &user[1..]);
    let (lp_password, phone_password) = (password(LINPHONE), password(PHONE));
    let (db_dir, url, _) =
        subscriber_db(&[(LINPHONE, &lp_password), (PHONE, &phone_password)]).await;
    let net = Net::start_with(|sipd| {
        sipd.auth.mode = chaincall_sipd::AuthMode::Digest;
        sipd.auth.database = url.clone();
    })
    .await;
    let udp = SocketAddr::from(([127, 0, 0, 1], net.udp_port));

    let key = IdentityKey::generate();
    net.add(PHONE, &key, true).await;
    let (phone, events) = net
        .phone_with(PHONE, key, KeyMode::Zrtp, 1000, |c| {
            c.signalling = Signalling::Udp { addr: udp };
            c.sip_password = zeroize::Zeroizing::new(phone_password);
            // linphone's caller ID is not verified on chain: answer it anyway.
            c.accept_unverified = Some(AcceptUnverified::Always);
        })
        .await;
    assert_eq!(phone.register(600).await.unwrap(), 600);
    let lp_dir = tempfile::tempdir().unwrap();
    let lp = tokio::task::block_in_place(|| {
        start_linphonec(bin, lp_dir.path(), udp, LINPHONE, &lp_password)
    });
    Setup {
        _net: net,
        _db_dir: db_dir,
        udp,
        phone,
        events,
        lp,
        _lp_dir: lp_dir,
    }
}

/// The call from `CallUp` to the report, whoever placed it: the same SAS on both sides, no chain
/// binding and the phone saying so, SRTP both ways without rejects; the phone hangs up.
async fn check_call(s: &mut Setup) {
    let (call_id, z) = zrtp_up(&mut s.events).await;
    let lp = &mut s.lp;
    let sas_line =
        tokio::task::block_in_place(|| lp.wait_for("auth token is", Duration::from_secs(15)));
    assert!(sas_line.contains("fully encrypted"), "{sas_line}");
    assert_eq!(
        z.sas,
        auth_token(&sas_line),
        "linphonec printed {sas_line:?}"
    );
    // No on-chain key on linphone's side: the binding does not hold, and the phone says so.
    assert!(!z.chain_bound, "{z:?}");
    assert_eq!(
        z.pin, None,
        "no ZID ↔ identity pin without the chain binding"
    );

    // Lets the phone's 1 s source and linphonec's audio flow (a wait, not a timed assertion).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    s.phone.hangup(&call_id).await.unwrap();
    let report = call_ended(&mut s.events).await;
    tokio::task::block_in_place(|| lp.wait_for("ended", Duration::from_secs(5)));

    assert_eq!(report.mode, KeyMode::Zrtp);
    let rz = report.zrtp.as_ref().expect("the report has ZRTP's outcome");
    assert_eq!(rz.sas, z.sas);
    assert!(!rz.chain_bound);
    // linphonec's SRTP decrypted and authenticated with ZRTP's keys (1.5 s of 20 ms packets).
    assert!(report.stats.rtp_received >= 10, "{:?}", report.stats);
    assert!(report.stats.rtp_sent > 0, "{:?}", report.stats);
    assert_eq!(report.stats.rtp_rejected, 0, "{:?}", report.stats);
    let text = TextReport {
        report: &report,
        recording: None,
    }
    .to_string();
    assert!(
        text.contains(&format!("SAS {} (NOT chain-bound: compare the SAS", z.sas)),
        "{text}"
    );
    let json = serde_json::to_value(CallReportJson::new(PHONE, &report, None)).unwrap();
    assert_eq!(json["zrtp"]["chain_bound"], false, "{json}");
    assert_eq!(json["zrtp"]["sas"], z.sas.as_str(), "{json}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn linphonec_calls_the_phone_through_sipd_and_both_show_the_same_zrtp_sas() {
    let Some(bin) = linphonec() else { return };
    let mut s = setup(&bin).await;
    let call = format!("call sip:{PHONE}@{}", s.udp);
    tokio::task::block_in_place(|| s.lp.command(&call));
    check_call(&mut s).await;
    s.phone.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_phone_calls_linphonec_through_sipd_and_both_show_the_same_zrtp_sas() {
    let Some(bin) = linphonec() else { return };
    let mut s = setup(&bin).await;
    tokio::task::block_in_place(|| s.lp.command("autoanswer enable"));
    s.phone
        .call(&PhoneNumber::parse(LINPHONE).unwrap())
        .await
        .unwrap();
    check_call(&mut s).await;
    s.phone.shutdown().await;
}
