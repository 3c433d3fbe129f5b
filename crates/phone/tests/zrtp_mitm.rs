//! A man in the middle between two chaincall phones on real sockets, who controls alice's
//! signalling (plaintext UDP) and the media path, as a hostile access network or relay would.
//! Mallory rewrites the SDP so both phones send their media to him, terminates ZRTP on each leg
//! with his own ZIDs and DH values, gives alice his own Hello hash in bob's answer (the answer is
//! not signed), and swallows bob's BYE so alice stays in the call.
//!
//! What must happen (issue 21): bob's phone finds Mallory's Hello does not match the
//! `a=zrtp-hash` of the INVITE (which alice's PASSporT signs, so Mallory cannot change it); alice's
//! phone, whose hash check Mallory did defeat, is saved by the chain binding alone: the auxiliary
//! secret from the two on-chain keys does not match, fatally, without anyone reading the SAS. Both
//! phones hang up by themselves, saying why, and no SRTP packet is ever accepted. The same path
//! with Mallory only forwarding carries a normal chain-bound call, so the harness is not what
//! breaks the call.

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chaincall_identity::{IdentityKey, PhoneNumber};
use chaincall_io::Output;
use chaincall_phone::{CallReport, KeyMode, Phone, PhoneEvent, PhoneEvents, Signalling};
use chaincall_zrtp::{Event, InMemoryCache, Role, Zid, Zrtp, ZrtpConfig, ZrtpError};
use common::*;
use tokio::net::UdpSocket;

const ALICE: &str = "+15550400001";
const BOB: &str = "+15550400002";

/// What Mallory does on alice's signalling path.
#[derive(Clone, Copy, PartialEq)]
enum Mallory {
    /// Forward every datagram unchanged.
    Forward,
    /// Put himself in the media path and terminate ZRTP on both legs.
    Attack,
}

/// What Mallory saw and did.
#[derive(Default)]
struct Seen {
    /// Where each victim's media goes, from the SDP he rewrote: alice's, bob's.
    alice_media: Option<SocketAddr>,
    bob_media: Option<SocketAddr>,
    /// BYEs from bob that he answered himself instead of passing to alice.
    byes_swallowed: usize,
    /// The Reason header of every BYE alice sent.
    alice_bye_reasons: Vec<String>,
    /// How each of his legs ended: the one facing alice, the one facing bob.
    legs: [Option<Result<String, ZrtpError>>; 2],
}

/// The body of a SIP message and the index where it starts.
fn split(msg: &str) -> Option<(&str, &str)> {
    msg.split_once("\r\n\r\n")
}

/// The media address an SDP names (`c=` and the audio `m=` port).
fn media_addr(sdp: &str) -> Option<SocketAddr> {
    let ip = sdp.lines().find_map(|l| l.strip_prefix("c=IN IP4 "))?;
    let port = sdp
        .lines()
        .find_map(|l| l.strip_prefix("m=audio "))?
        .split(' ')
        .next()?;
    format!("{}:{}", ip.trim(), port).parse().ok()
}

/// `msg` with its SDP pointing at `to` and, when given, another `a=zrtp-hash`; Content-Length
/// follows the new body.
fn rewrite_sdp(msg: &str, to: SocketAddr, zrtp_hash: Option<&str>) -> String {
    let (head, body) = split(msg).expect("a message with a body");
    let mut sdp = String::new();
    for line in body.split_inclusive("\r\n") {
        let bare = line.trim_end_matches("\r\n");
        if bare.starts_with("c=IN IP4 ") {
            sdp.push_str(&format!("c=IN IP4 {}\r\n", to.ip()));
        } else if let Some(rest) = bare.strip_prefix("m=audio ") {
            let (_, formats) = rest.split_once(' ').unwrap();
            sdp.push_str(&format!("m=audio {} {formats}\r\n", to.port()));
        } else if let (Some(hash), true) = (zrtp_hash, bare.starts_with("a=zrtp-hash:")) {
            sdp.push_str(&format!("a=zrtp-hash:{hash}\r\n"));
        } else {
            sdp.push_str(line);
        }
    }
    let head: Vec<String> = head
        .split("\r\n")
        .map(|h| {
            let lower = h.to_ascii_lowercase();
            if lower.starts_with("content-length:") || lower.starts_with("l:") {
                format!("Content-Length: {}", sdp.len())
            } else {
                h.to_owned()
            }
        })
        .collect();
    format!("{}\r\n\r\n{sdp}", head.join("\r\n"))
}

/// The values of every header named `name` (case-insensitive, full names only).
fn headers<'a>(msg: &'a str, name: &str) -> Vec<&'a str> {
    let head = split(msg).map_or(msg, |(h, _)| h);
    head.split("\r\n")
        .filter_map(|h| {
            let (n, v) = h.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
        .collect()
}

/// The 200 a UAS would send to `bye`: its Via, From, To, Call-ID and CSeq, no body.
fn ok_to(bye: &str) -> String {
    let mut out = String::from("SIP/2.0 200 OK\r\n");
    for name in ["Via", "From", "To", "Call-ID", "CSeq"] {
        for v in headers(bye, name) {
            out.push_str(&format!("{name}: {v}\r\n"));
        }
    }
    out.push_str("Content-Length: 0\r\n\r\n");
    out
}

/// One ZRTP leg of Mallory's: his own engine on `sock`, talking to whichever victim `peer`
/// names once the SDP has shown it. Ends when the engine is secure or failed.
async fn leg(
    sock: Arc<UdpSocket>,
    mut engine: Zrtp,
    which: usize,
    seen: Arc<Mutex<Seen>>,
) -> Result<String, ZrtpError> {
    let mut buf = vec![0u8; 2048];
    loop {
        let peer = {
            let s = seen.lock().unwrap();
            if which == 0 {
                s.alice_media
            } else {
                s.bob_media
            }
        };
        let deadline = loop {
            match engine.poll_output() {
                Output::Transmit(t) => {
                    // Before the SDP showed the victim's address, Hellos go nowhere; the
                    // engine sends them again.
                    if let Some(p) = peer {
                        let _ = sock.send_to(&t.contents, p).await;
                    }
                }
                Output::Event(Event::SecureOn(s)) => return Ok(s.sas.text.clone()),
                Output::Event(Event::Failed(e)) => return Err(e),
                Output::Event(_) => {}
                Output::Timeout(at) => break at,
            }
        };
        let wait = deadline.map_or(Duration::from_millis(50), |d| {
            d.saturating_duration_since(Instant::now())
        });
        match tokio::time::timeout(
            wait.min(Duration::from_millis(50)),
            sock.recv_from(&mut buf),
        )
        .await
        {
            Ok(Ok((n, _))) if chaincall_zrtp::wire::is_zrtp(&buf[..n]) => {
                engine.handle_input(&buf[..n], Instant::now())
            }
            _ => engine.handle_timeout(Instant::now()),
        }
    }
}

/// Mallory between alice's phone and sipd's UDP listener: returns the address alice's phone
/// must use as its sipd, and what he sees.
async fn mallory(sipd: SocketAddr, mode: Mallory) -> (SocketAddr, Arc<Mutex<Seen>>) {
    let front = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let back = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let seen = Arc::new(Mutex::new(Seen::default()));
    let front_addr = front.local_addr().unwrap();

    // His media legs: one facing alice (pretending to be bob), one facing bob (alice).
    let mut hash_for_alice = None;
    let mut to_alice_media = None;
    let mut to_bob_media = None;
    if mode == Mallory::Attack {
        let now = Instant::now();
        let engine = |n: u8, role| {
            let cfg = ZrtpConfig::new(Zid([n; 12]), 0x6d61_6c00 | u32::from(n), {
                Arc::new(InMemoryCache::new())
            });
            Zrtp::new(cfg, role, now).unwrap()
        };
        let (facing_alice, facing_bob) =
            (engine(0xa1, Role::Responder), engine(0xb0, Role::Initiator));
        hash_for_alice = Some(facing_alice.zrtp_hash_attribute());
        // He runs bob's leg first and alice's once bob's has ended, so that bob has given up
        // (and his BYE been swallowed) before alice's exchange decides: the order a test can
        // assert; each victim's check is the same in either order.
        let (bob_leg_done, bob_leg_ended) = tokio::sync::oneshot::channel::<()>();
        let mut bob_leg_ended = Some(bob_leg_ended);
        let mut bob_leg_done = Some(bob_leg_done);
        for (which, e) in [(0, facing_alice), (1, facing_bob)] {
            let sock = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
            let addr = sock.local_addr().unwrap();
            let (wait, done) = if which == 0 {
                to_alice_media = Some(addr);
                (bob_leg_ended.take(), None)
            } else {
                to_bob_media = Some(addr);
                (None, bob_leg_done.take())
            };
            let seen = seen.clone();
            tokio::spawn(async move {
                if let Some(w) = wait {
                    let _ = w.await;
                }
                let outcome = leg(sock, e, which, seen.clone()).await;
                seen.lock().unwrap().legs[which] = Some(outcome);
                if let Some(d) = done {
                    let _ = d.send(());
                }
            });
        }
    }

    // alice → sipd.
    let alice = Arc::new(Mutex::new(None::<SocketAddr>));
    {
        let (front, back, seen, alice_w) =
            (front.clone(), back.clone(), seen.clone(), alice.clone());
        tokio::spawn(async move {
            let mut buf = vec![0u8; 65536];
            while let Ok((n, from)) = front.recv_from(&mut buf).await {
                *alice_w.lock().unwrap() = Some(from);
                let mut msg = buf[..n].to_vec();
                if let Ok(text) = std::str::from_utf8(&msg) {
                    if text.starts_with("BYE ") {
                        let mut s = seen.lock().unwrap();
                        s.alice_bye_reasons
                            .extend(headers(text, "Reason").into_iter().map(str::to_owned));
                    }
                    let offer = text.starts_with("INVITE ");
                    let body = split(text)
                        .map(|(_, b)| b)
                        .filter(|b| offer && !b.is_empty());
                    if let (Some(to), Some(body)) = (to_bob_media, body) {
                        seen.lock().unwrap().alice_media = media_addr(body);
                        msg = rewrite_sdp(text, to, None).into_bytes();
                    }
                }
                let _ = back.send_to(&msg, sipd).await;
            }
        });
    }
    // sipd → alice.
    {
        let seen = seen.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 65536];
            while let Ok((n, _)) = back.recv_from(&mut buf).await {
                let mut msg = buf[..n].to_vec();
                if let (Mallory::Attack, Ok(text)) = (mode, std::str::from_utf8(&msg)) {
                    if text.starts_with("BYE ") {
                        // Alice must not learn that bob gave up: answer for her.
                        seen.lock().unwrap().byes_swallowed += 1;
                        let _ = back.send_to(ok_to(text).as_bytes(), sipd).await;
                        continue;
                    }
                    let answer = text.starts_with("SIP/2.0 200")
                        && headers(text, "CSeq").iter().any(|c| c.ends_with("INVITE"));
                    if let Some((_, body)) = split(text).filter(|(_, b)| answer && !b.is_empty()) {
                        seen.lock().unwrap().bob_media = media_addr(body);
                        let hash = hash_for_alice.as_deref().map(|a| {
                            a.strip_prefix("a=zrtp-hash:")
                                .unwrap_or(a)
                                .trim()
                                .to_owned()
                        });
                        msg = rewrite_sdp(text, to_alice_media.unwrap(), hash.as_deref())
                            .into_bytes();
                    }
                }
                let to = *alice.lock().unwrap();
                if let Some(to) = to {
                    let _ = front.send_to(&msg, to).await;
                }
            }
        });
    }
    (front_addr, seen)
}

/// Events until the call's report: the report, and whether `CallUp` came first, and every
/// `Refused` reason.
async fn until_ended(events: &mut PhoneEvents) -> (CallReport, bool, Vec<String>) {
    let (mut up, mut refused) = (false, Vec::new());
    loop {
        let Ok(e) = tokio::time::timeout(Duration::from_secs(20), events.recv()).await else {
            panic!("no report within 20 s; the call came up: {up}, refused: {refused:?}");
        };
        let e = e.expect("the phone runs");
        match e {
            PhoneEvent::CallUp { .. } => up = true,
            PhoneEvent::Refused { reason, .. } => refused.push(reason),
            PhoneEvent::CallEnded(r) => return (*r, up, refused),
            _ => {}
        }
    }
}

/// sipd with digest over UDP, alice behind Mallory, bob direct; both ZRTP phones on chain.
async fn phones(net: &Net, mode: Mallory) -> ([(Phone, PhoneEvents); 2], Arc<Mutex<Seen>>) {
    let sipd = SocketAddr::from(([127, 0, 0, 1], net.udp_port));
    let (via_mallory, seen) = mallory(sipd, mode).await;
    let mut out = Vec::new();
    for (number, addr) in [(ALICE, via_mallory), (BOB, sipd)] {
        let key = IdentityKey::generate();
        net.add(number, &key, true).await;
        let (phone, events) = net
            .phone_with(number, key, KeyMode::Zrtp, 1000, |c| {
                c.signalling = Signalling::Udp { addr };
                c.sip_password = zeroize::Zeroizing::new(format!("{number}'s password"));
            })
            .await;
        assert_eq!(phone.register(600).await.unwrap(), 600);
        out.push((phone, events));
    }
    (out.try_into().ok().unwrap(), seen)
}

async fn sipd() -> (Net, tempfile::TempDir) {
    let passwords = [ALICE, BOB].map(|u| format!("{u}'s password"));
    let (dir, url, _db) = subscriber_db(&[(ALICE, &passwords[0]), (BOB, &passwords[1])]).await;
    let net = Net::start_with(|sipd| {
        sipd.auth.mode = chaincall_sipd::AuthMode::Digest;
        sipd.auth.database = url.clone();
    })
    .await;
    (net, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_a_forwarding_mallory_the_zrtp_call_is_chain_bound() {
    let (mut net, _db) = sipd().await;
    let ([(alice, mut alice_ev), (bob, mut bob_ev)], _) = phones(&net, Mallory::Forward).await;
    let id = alice.call(&PhoneNumber::parse(BOB).unwrap()).await.unwrap();
    let sas = |e: PhoneEvent| match e {
        PhoneEvent::CallUp { zrtp, .. } => zrtp.expect("keyed by ZRTP"),
        other => unreachable!("{other:?}"),
    };
    let up = |e: &PhoneEvent| matches!(e, PhoneEvent::CallUp { .. });
    let a = sas(wait_for(&mut alice_ev, up).await);
    let b = sas(wait_for(&mut bob_ev, up).await);
    assert!(a.chain_bound && b.chain_bound, "{a:?} {b:?}");
    assert_eq!(a.sas, b.sas);
    tokio::time::sleep(Duration::from_millis(1300)).await;
    alice.hangup(&id).await.unwrap();
    let (ra, rb) = (
        call_ended(&mut alice_ev).await,
        call_ended(&mut bob_ev).await,
    );
    assert_eq!(rb.received_payload, ra.sent_payload);
    assert_eq!(ra.received_payload, rb.sent_payload);
    for p in [alice, bob] {
        p.shutdown().await;
    }
    net.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_man_in_the_middle_with_his_own_dh_values_is_caught_by_the_chain_binding_on_real_sockets()
{
    let (mut net, _db) = sipd().await;
    let ([(alice, mut alice_ev), (bob, mut bob_ev)], seen) = phones(&net, Mallory::Attack).await;
    alice.call(&PhoneNumber::parse(BOB).unwrap()).await.unwrap();
    let (ra, a_up, a_refused) = until_ended(&mut alice_ev).await;
    let (rb, b_up, b_refused) = until_ended(&mut bob_ev).await;

    // Mallory was in both paths: he rewrote both SDPs and answered bob's BYE for alice.
    {
        let s = seen.lock().unwrap();
        assert!(s.alice_media.is_some() && s.bob_media.is_some());
        assert!(
            s.byes_swallowed >= 1,
            "bob hung up, and alice never heard it"
        );
    }
    // Alice's hash check passed (Mallory gave her his own Hello hash); the chain binding alone
    // caught him, without anyone reading the SAS.
    let chain = ZrtpError::AuxSecretMismatch.to_string();
    let a_failure = ra.failure.clone().unwrap_or_default();
    assert!(a_failure.contains(&chain), "alice: {a_failure:?}");
    assert!(
        a_refused.iter().any(|r| r.contains(&chain)),
        "{a_refused:?}"
    );
    // Bob's INVITE carried alice's signed a=zrtp-hash: Mallory's Hello does not match it.
    let hash = ZrtpError::HelloHashMismatch.to_string();
    let b_failure = rb.failure.clone().unwrap_or_default();
    assert!(b_failure.contains(&hash), "bob: {b_failure:?}");
    // Neither call came up, and no SRTP packet was accepted by either phone.
    assert!(!a_up && !b_up, "no call came up");
    // Alice ended her call herself (she never heard bob's BYE); bob failed first, though
    // alice's BYE may cross his.
    use chaincall_phone::core::EndReason;
    assert_eq!(ra.ended, EndReason::MediaFailed);
    assert!(
        matches!(rb.ended, EndReason::MediaFailed | EndReason::HungUpByPeer),
        "{:?}",
        rb.ended
    );
    for r in [&ra, &rb] {
        assert_eq!(r.stats.rtp_received, 0, "{:?}", r.stats);
        assert!(r.received_payload.is_empty());
    }
    // Alice's phone hung up by itself and said why (RFC 3326 Reason).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let reasons = seen.lock().unwrap().alice_bye_reasons.clone();
        if reasons
            .iter()
            .any(|r| r.contains("ZRTP failed") && r.contains("auxiliary secret"))
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "alice's BYE: {reasons:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Mallory holds no key either victim used: neither of his legs went secure.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let legs = seen.lock().unwrap().legs.clone();
        if legs.iter().all(Option::is_some) {
            assert!(legs.iter().all(|l| matches!(l, Some(Err(_)))), "{legs:?}");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{legs:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = b_refused;
    for p in [alice, bob] {
        p.shutdown().await;
    }
    net.stop();
}
