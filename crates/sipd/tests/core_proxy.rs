//! The stateful proxy driven directly in simulated time: an INVITE to a registered callee and
//! its dialog (ACK, BYE along the Record-Route), 404/480 for unknown and unregistered callees,
//! CANCEL, and Timer C (§16.8) firing at its own instant: CANCEL downstream, 408 upstream.

mod sim;

use std::net::SocketAddr;
use std::time::Duration;

use chaincall_sip::message::Message;
use chaincall_sipd::AuthMode;
use sim::{DOMAIN, Sim, answer, config, headers, invite, peer, register, subscriber};

/// bob registered at `bob` (a UDP Contact at that address).
fn with_bob(s: &mut Sim, bob: SocketAddr) {
    s.deliver(
        bob,
        &register(
            "bob",
            bob,
            "reg-bob",
            1,
            &[&format!("<sip:bob@{bob}>")],
            "Expires: 3600\r\n",
        ),
    );
    assert_eq!(s.status_to(bob), 200);
}

/// Statuses of the responses sent to `to` since the last take.
fn statuses_to(s: &mut Sim, to: SocketAddr) -> Vec<u16> {
    s.take_to(to).iter().map(|b| sim::status(b)).collect()
}

/// A request `method` inside the dialog of `call_id`, from `src` to `target` along `routes`.
fn in_dialog(
    method: &str,
    src: SocketAddr,
    target: &str,
    routes: &[String],
    call_id: &str,
    to_tag: &str,
) -> String {
    let routes: String = routes.iter().map(|r| format!("Route: {r}\r\n")).collect();
    format!(
        "{method} {target} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {src};branch=z9hG4bK-{call_id}-{method}\r\n\
         Max-Forwards: 70\r\n\
         {routes}From: <sip:alice@{DOMAIN}>;tag=f-{call_id}\r\n\
         To: <sip:bob@{DOMAIN}>;tag={to_tag}\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: 2 {method}\r\n\
         Content-Length: 0\r\n\r\n"
    )
}

#[test]
fn an_invite_reaches_the_registered_callee_and_the_bye_follows_the_record_route() {
    let mut s = Sim::new(&config());
    let (alice, bob) = (peer(1), peer(2));
    with_bob(&mut s, bob);
    s.deliver(alice, &invite("alice", alice, "bob", "call-1", ""));
    assert_eq!(statuses_to(&mut s, alice), [100]);
    let fwd = s.one_to(bob);
    let fm = Message::parse(&fwd).unwrap();
    assert_eq!(fm.request_uri(), Some(format!("sip:bob@{bob}").as_str()));
    assert_eq!(fm.vias().count(), 2, "our Via on top of alice's");
    assert_eq!(fm.max_forwards(), Some(69));
    let rr = headers(&fwd, "Record-Route");
    assert_eq!(rr.len(), 1, "one leg, one transport: one Record-Route");

    // bob rings, then answers: both reach alice, with our Via gone.
    s.deliver(bob, &answer(&fwd, 180, "Ringing", "bob-tag"));
    s.deliver(bob, &answer(&fwd, 200, "OK", "bob-tag"));
    let to_alice = s.take_to(alice);
    assert_eq!(
        to_alice.iter().map(|b| sim::status(b)).collect::<Vec<_>>(),
        [180, 200]
    );
    let ok = Message::parse(&to_alice[1]).unwrap();
    assert_eq!(ok.vias().count(), 1);
    assert_eq!(headers(&to_alice[1], "Record-Route"), rr);

    // The ACK and the BYE go along the route set to bob's Contact.
    let target = format!("sip:bob@{bob}");
    s.deliver(
        alice,
        &in_dialog("ACK", alice, &target, &rr, "call-1", "bob-tag").replace("CSeq: 2", "CSeq: 1"),
    );
    let ack = s.one_to(bob);
    assert!(ack.starts_with(format!("ACK {target} ").as_bytes()));
    assert!(
        headers(&ack, "Route").is_empty(),
        "our Route value is popped"
    );
    s.deliver(
        alice,
        &in_dialog("BYE", alice, &target, &rr, "call-1", "bob-tag"),
    );
    let bye = s.one_to(bob);
    assert!(bye.starts_with(format!("BYE {target} ").as_bytes()));
    s.deliver(bob, &answer(&bye, 200, "OK", "bob-tag"));
    assert_eq!(statuses_to(&mut s, alice), [200]);
}

#[test]
fn unknown_callees_get_404_and_unregistered_subscribers_480() {
    let mut cfg = config();
    cfg.auth.mode = AuthMode::Digest;
    // Calls from local users are not challenged here: the routing answers are the point.
    cfg.auth.invite = false;
    let mut s = Sim::new(&cfg);
    let alice = peer(1);
    // bob is a subscriber (his row is cached), but not registered; nobody is called carol.
    let (now, unix) = (s.now, s.unix());
    s.core
        .insert_credentials("bob", DOMAIN, Some(subscriber("bob-pw")), now, unix);
    s.deliver(alice, &invite("alice", alice, "carol", "call-2", ""));
    assert_eq!(statuses_to(&mut s, alice), [100, 404]);
    s.deliver(alice, &invite("alice", alice, "bob", "call-3", ""));
    assert_eq!(statuses_to(&mut s, alice), [100, 480]);
    assert!(s.sent.is_empty(), "nothing was forwarded");
}

#[test]
fn a_cancel_is_answered_and_forwarded_and_the_487_reaches_the_caller() {
    let mut s = Sim::new(&config());
    let (alice, bob) = (peer(1), peer(2));
    with_bob(&mut s, bob);
    let inv = invite("alice", alice, "bob", "call-4", "");
    s.deliver(alice, &inv);
    let fwd = s.one_to(bob);
    s.deliver(bob, &answer(&fwd, 180, "Ringing", "bob-tag"));
    assert_eq!(statuses_to(&mut s, alice), [100, 180]);

    let cancel = inv
        .replacen("INVITE sip:", "CANCEL sip:", 1)
        .replace("CSeq: 1 INVITE", "CSeq: 1 CANCEL")
        .replace(&format!("Contact: <sip:alice@{alice}>\r\n"), "");
    s.deliver(alice, &cancel);
    assert_eq!(
        statuses_to(&mut s, alice),
        [200],
        "the CANCEL is ours to answer"
    );
    let down = s.one_to(bob);
    let dm = Message::parse(&down).unwrap();
    assert_eq!(dm.method().map(|m| m.as_str()), Some("CANCEL"));
    let fm = Message::parse(&fwd).unwrap();
    assert_eq!(
        dm.top_via().unwrap().branch(),
        fm.top_via().unwrap().branch(),
        "the CANCEL matches the forwarded INVITE (§9.1)"
    );
    s.deliver(bob, &answer(&down, 200, "OK", "bob-tag"));
    s.deliver(bob, &answer(&fwd, 487, "Request Terminated", "bob-tag"));
    assert_eq!(statuses_to(&mut s, alice), [487]);
}

/// Replaces the Timer C test that slept in real time (tests/server.rs): a callee that answers
/// 180 and then nothing is CANCELled exactly when Timer C runs out, the caller gets 408, and the
/// callee's late 487 does not reach the caller a second time.
#[test]
fn a_callee_that_rings_forever_is_cancelled_at_timer_c() {
    let mut cfg = config();
    cfg.timers.timer_c = Duration::from_secs(181);
    let mut s = Sim::new(&cfg);
    let (alice, bob) = (peer(1), peer(2));
    with_bob(&mut s, bob);
    s.deliver(alice, &invite("alice", alice, "bob", "call-5", ""));
    let fwd = s.one_to(bob);
    s.advance(Duration::from_secs(10));
    // Silence for 10 s: the INVITE is retransmitted (Timer A, §17.1.1.2).
    assert!(s.take_to(bob).iter().all(|b| *b == fwd));
    // The 180 restarts Timer C (§16.7 step 2): it now runs out 181 s from here.
    s.deliver(bob, &answer(&fwd, 180, "Ringing", "bob-tag"));
    assert_eq!(statuses_to(&mut s, alice), [100, 180]);
    let rang = s.now;
    assert!(
        s.deadline
            .is_some_and(|d| d <= rang + Duration::from_secs(181)),
        "Timer C is in the deadline"
    );

    s.advance(Duration::from_millis(181_000 - 1));
    assert!(s.take_to(bob).is_empty(), "not a moment early");
    assert!(s.take_to(alice).is_empty());
    s.advance(Duration::from_millis(1));
    let cancel = s.one_to(bob);
    let cm = Message::parse(&cancel).unwrap();
    assert_eq!(cm.method().map(|m| m.as_str()), Some("CANCEL"));
    let fm = Message::parse(&fwd).unwrap();
    assert_eq!(
        cm.top_via().unwrap().branch(),
        fm.top_via().unwrap().branch(),
        "the CANCEL matches the forwarded INVITE (§9.1)"
    );
    assert_eq!(statuses_to(&mut s, alice), [408]);
    assert_eq!(s.metrics.invites_in_progress.get(), 0);

    // The callee answers the CANCEL and its INVITE (487): sipd absorbs the 487.
    s.deliver(bob, &answer(&cancel, 200, "OK", "bob-tag"));
    s.deliver(bob, &answer(&fwd, 487, "Request Terminated", "bob-tag"));
    s.advance(Duration::from_secs(5));
    assert!(
        statuses_to(&mut s, alice).iter().all(|c| *c == 408),
        "only the 408 (or its retransmission) reaches the caller"
    );
}
