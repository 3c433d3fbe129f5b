//! Phones behind NAT call each other through sipd with `[relay] mode = "nat"`, on the namespace
//! test network (issue 17 items 2 and 3): sipd and rtpengine (started here, userspace) on the
//! public segment, alice behind a symmetric NAT, bob behind a port-preserving one, both over UDP
//! with MIKEY. They register, call, and the audio arrives through the relay unaltered both ways
//! (alice → bob complete; bob → alice from alice's first packet on, as her symmetric NAT allows);
//! rtpengine holds the call while it lasts and nothing after the BYE; a CANCELled call leaves
//! nothing either. The SDP bob receives carries alice's `a=key-mgmt` byte for byte and the
//! relay's address, not hers.
//!
//! Needs root for the namespaces (the test skips without, unless `CHAINCALL_REQUIRE_PEERS=1`).

#[path = "../../phone/tests/common/mod.rs"]
mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chaincall_identity::PhoneNumber;
use chaincall_phone::{KeyMode, PhoneEvent, Signalling};
use chaincall_testkit::netns::TestNet;
use common::nat::{self, assert_heard, phone_inside};
use common::wait_for;
use tokio::net::UdpSocket;

const ALICE: &str = "+15550410001";
const BOB: &str = "+15550410002";
const AUDIO_MS: u32 = 1000;

/// Datagrams a [`tap`] passed from sipd to its phone.
type Seen = Arc<Mutex<Vec<Vec<u8>>>>;

/// A UDP hop in `node`'s namespace between a phone there and sipd: the phone's signalling goes
/// through it unchanged (from behind the same NAT), and the test reads what sipd sent the phone
/// and what the phone sent sipd. Returns the address to point the phone at.
fn tap(tn: &TestNet, node: &str, sipd: SocketAddr) -> (SocketAddr, Seen, Seen) {
    let socket = tn.run(node, || {
        std::net::UdpSocket::bind((tn.addr(node), 0)).unwrap()
    });
    socket.set_nonblocking(true).unwrap();
    let addr = socket.local_addr().unwrap();
    let (to_phone, from_phone) = (Seen::default(), Seen::default());
    let (down, up) = (to_phone.clone(), from_phone.clone());
    // The socket stays in `node`'s namespace whichever runtime drives it.
    tokio::spawn(async move {
        let socket = UdpSocket::from_std(socket).unwrap();
        let mut phone = None;
        let mut buf = vec![0u8; 65_536];
        while let Ok((n, from)) = socket.recv_from(&mut buf).await {
            let data = buf[..n].to_vec();
            if from == sipd {
                down.lock().unwrap().push(data.clone());
                if let Some(p) = phone {
                    let _ = socket.send_to(&data, p).await;
                }
            } else {
                phone = Some(from);
                up.lock().unwrap().push(data.clone());
                let _ = socket.send_to(&data, sipd).await;
            }
        }
    });
    (addr, to_phone, from_phone)
}

/// The first INVITE among `datagrams`.
fn first_invite(datagrams: &Seen) -> String {
    datagrams
        .lock()
        .unwrap()
        .iter()
        .map(|d| String::from_utf8_lossy(d).into_owned())
        .find(|t| t.starts_with("INVITE "))
        .expect("an INVITE went through the tap")
}

/// The SDP line of `sdp` starting with `prefix`.
fn line<'a>(sdp: &'a str, prefix: &str) -> &'a str {
    sdp.split("\r\n")
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no {prefix} line in {sdp}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn natd_phones_call_through_rtpengine_driven_by_sipd_and_leave_no_session() {
    let Some((tn, relay, net)) = nat::relay_network(&[]).await else {
        return;
    };
    let sipd = SocketAddr::new(net.host, net.udp_port);

    let mut phones = Vec::new();
    let mut taps = Vec::new();
    for (number, node) in [(ALICE, "alice"), (BOB, "bob")] {
        let (via, to_phone, from_phone) = tap(&tn, node, sipd);
        let (phone, events, rt) =
            phone_inside(&net, &tn, node, number, KeyMode::MikeyPke, AUDIO_MS, |c| {
                c.signalling = Signalling::Udp { addr: via };
                // bob answers by hand: the second call is CANCELled while it rings.
                c.auto_answer = node == "alice";
            })
            .await;
        assert_eq!(phone.register(600).await.unwrap(), 600);
        phones.push((phone, events, rt));
        taps.push((to_phone, from_phone));
    }
    let (bob, mut bob_ev, _bob_rt) = phones.pop().unwrap();
    let (alice, mut alice_ev, _alice_rt) = phones.pop().unwrap();
    assert_eq!(
        net.metrics.nat_registrations.get(),
        2,
        "both seen behind NAT"
    );

    // A call through the relay, both ways.
    let call = alice.call(&PhoneNumber::parse(BOB).unwrap()).await.unwrap();
    let incoming = wait_for(&mut bob_ev, |e| matches!(e, PhoneEvent::Incoming { .. })).await;
    let PhoneEvent::Incoming { call_id, .. } = incoming else {
        unreachable!()
    };
    assert_eq!(call_id, call);
    bob.answer(&call, true).await.unwrap();
    common::call_up(&mut alice_ev).await;
    common::call_up(&mut bob_ev).await;
    assert_eq!(
        relay.calls(),
        std::slice::from_ref(&call),
        "rtpengine holds the call"
    );

    // What bob got is alice's SDP with the relay's address and port, her key line untouched.
    let sent = first_invite(&taps[0].1);
    let got = first_invite(&taps[1].0);
    let (sent_sdp, got_sdp) = (
        sent.split_once("\r\n\r\n").unwrap().1,
        got.split_once("\r\n\r\n").unwrap().1,
    );
    assert_eq!(
        line(got_sdp, "a=key-mgmt:mikey "),
        line(sent_sdp, "a=key-mgmt:mikey "),
        "alice's MIKEY message, byte for byte"
    );
    assert_eq!(
        line(sent_sdp, "c="),
        format!("c=IN IP4 {}", tn.addr("alice"))
    );
    assert_eq!(line(got_sdp, "c="), format!("c=IN IP4 {}", relay.ip));

    tokio::time::sleep(Duration::from_millis(u64::from(AUDIO_MS) + 500)).await;
    alice.hangup(&call).await.unwrap();
    let (a, b) = (
        common::call_ended(&mut alice_ev).await,
        common::call_ended(&mut bob_ev).await,
    );
    // alice → bob complete; bob → alice from alice's first packet on, as her symmetric NAT
    // allows.
    assert_heard(&a, &b, AUDIO_MS, 0);
    assert_heard(&b, &a, AUDIO_MS, 25);
    relay.wait_until_no_calls("the BYE");

    // A call CANCELled while bob's phone rings leaves no relay session either.
    let call = alice.call(&PhoneNumber::parse(BOB).unwrap()).await.unwrap();
    wait_for(&mut bob_ev, |e| matches!(e, PhoneEvent::Incoming { .. })).await;
    assert_eq!(relay.calls(), std::slice::from_ref(&call));
    alice.hangup(&call).await.unwrap();
    relay.wait_until_no_calls("the CANCEL");
    assert!(
        taps[1]
            .0
            .lock()
            .unwrap()
            .iter()
            .any(|d| d.starts_with(b"CANCEL ")),
        "bob's phone got the CANCEL"
    );
    let m = &net.metrics;
    assert_eq!(m.media_relay_offers.get(), 2);
    assert_eq!(m.media_relay_errors.get(), 0);
    assert_eq!(m.media_relay_sessions.get(), 0);

    for p in [alice, bob] {
        p.shutdown().await;
    }
}
