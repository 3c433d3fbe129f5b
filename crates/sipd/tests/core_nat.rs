//! Phones behind NAT over UDP, driven in simulated time (RFC 3581, RFC 5626 flows over UDP): the
//! Via gets `received`/`rport`, answers go to the source, a NAT'd registration is reached at the
//! NAT's address and its dialogs by the UDP flow token in our Record-Route, never at a Contact
//! the phone asserts. Both location backends.

#[macro_use]
mod sim;

use std::net::SocketAddr;

use chaincall_sip::message::Message;
use chaincall_sipd::core::Transport;
use sim::{Backend, DOMAIN, Sim, answer, config, headers, invite, peer, register};

on_both_backends!(
    a_natd_phone_is_answered_and_called_at_its_nat_address_and_in_dialog_by_its_flow_token,
    a_contact_naming_another_host_never_gets_a_natd_aors_invite,
    outbound_registrations_are_bound_to_their_flow_and_answered_with_require_outbound,
    a_natd_ipv6_phone_registers_and_is_called_at_its_nat_address,
);

/// The NAT router's public address and port for alice's phone.
fn nat() -> SocketAddr {
    "203.0.113.100:40001".parse().unwrap()
}

/// Alice's phone inside her home network.
fn home() -> SocketAddr {
    "10.0.1.2:5060".parse().unwrap()
}

/// A REGISTER as a phone behind NAT writes it: its own (private) address in Via, with `rport`,
/// and `contact` as Contact.
fn natd_register(user: &str, call_id: &str, contact: &str, extra: &str) -> String {
    register(user, home(), call_id, 1, &[contact], extra).replacen(";branch", ";rport;branch", 1)
}

fn a_natd_phone_is_answered_and_called_at_its_nat_address_and_in_dialog_by_its_flow_token(
    backend: Backend,
) {
    let Some(mut s) = Sim::on(backend, &config()) else {
        return;
    };
    s.deliver(
        nat(),
        &natd_register(
            "alice",
            "reg-nat-1",
            &format!("<sip:alice@{}>", home()),
            "Expires: 600\r\n",
        ),
    );
    // The answer goes to the NAT's address (RFC 3581 §4), its Via telling the phone what it is.
    assert!(s.take_to(home()).is_empty());
    let ok = s.one_to(nat());
    assert_eq!(sim::status(&ok), 200, "{}", String::from_utf8_lossy(&ok));
    let via = &headers(&ok, "Via")[0];
    assert!(
        via.contains(";received=203.0.113.100") && via.contains(";rport=40001"),
        "{via}"
    );
    assert!(
        !via.contains(";rport;"),
        "rport filled, not repeated: {via}"
    );
    assert_eq!(s.metrics.nat_registrations.get(), 1);

    // bob (public) calls alice: the INVITE goes to the NAT, the Request-URI stays her Contact,
    // and her leg of the Record-Route carries a UDP flow token.
    let bob = peer(3);
    s.deliver(bob, &invite("bob", bob, "alice", "call-nat-1", ""));
    assert!(s.take_to(home()).is_empty(), "never the private Contact");
    let fwd = s.one_to(nat());
    assert!(
        fwd.starts_with(format!("INVITE sip:alice@{} ", home()).as_bytes()),
        "{}",
        String::from_utf8_lossy(&fwd)
    );
    let rr = headers(&fwd, "Record-Route");
    assert_eq!(rr.len(), 2, "{rr:?}");
    assert!(rr[0].starts_with("<sip:u"), "alice's leg: {rr:?}");
    assert!(!rr[1].contains('@'), "bob's leg is not behind NAT: {rr:?}");
    // bob's own Via (he is public, no rport) is left as he wrote it.
    let fm = Message::parse(&fwd).unwrap();
    let bob_via = fm.vias().nth(1).unwrap();
    assert_eq!(bob_via.received(), None);

    // alice answers from behind her NAT; bob gets the 200.
    s.deliver(nat(), &answer(&fwd, 200, "OK", "alice-tag"));
    assert_eq!(s.statuses_to(bob), [100, 200]);
    // bob's BYE names alice's private Contact; the route set's token sends it to the NAT.
    let bye = |routes: &[&String], branch: &str| {
        let ruri = format!("sip:alice@{}", home());
        sim::bye(&ruri, bob, "bob", "alice", "call-nat-1", routes, branch)
    };
    s.deliver(bob, &bye(&[&rr[1], &rr[0]], "bye-nat-1"));
    let b = s.one_to(nat());
    assert!(b.starts_with(b"BYE "), "{}", String::from_utf8_lossy(&b));
    assert!(s.take_to(home()).is_empty());

    // A UDP token naming another address, or with its tag altered, is refused.
    let at = rr[0].find('@').unwrap();
    let flipped = if &rr[0][at - 1..at] == "0" { "1" } else { "0" };
    let forged = format!("{}{flipped}{}", &rr[0][..at - 1], &rr[0][at..]);
    s.deliver(bob, &bye(&[&rr[1], &forged], "bye-nat-2"));
    assert_eq!(s.status_to(bob), 403);
    assert!(s.take_to(nat()).is_empty() && s.take_to(home()).is_empty());
}

fn a_contact_naming_another_host_never_gets_a_natd_aors_invite(backend: Backend) {
    let Some(mut s) = Sim::on(backend, &config()) else {
        return;
    };
    // The victim: a service on sipd's own host.
    let victim: SocketAddr = "127.0.0.1:6379".parse().unwrap();
    s.deliver(
        nat(),
        &natd_register(
            "alice",
            "reg-nat-2",
            &format!("<sip:alice@{victim}>"),
            "Expires: 600\r\n",
        ),
    );
    assert_eq!(s.status_to(nat()), 200);
    // A public client (Via matches its source) naming sipd's loopback is treated the same.
    let carol = peer(7);
    s.deliver(
        carol,
        &register(
            "carol",
            carol,
            "reg-nat-3",
            1,
            &[&format!("<sip:carol@{victim}>")],
            "Expires: 600\r\n",
        ),
    );
    assert_eq!(s.status_to(carol), 200);
    let bob = peer(3);
    s.deliver(bob, &invite("bob", bob, "alice", "call-nat-2", ""));
    let fwd = s.one_to(nat());
    assert!(fwd.starts_with(b"INVITE "));
    s.deliver(bob, &invite("bob", bob, "carol", "call-nat-3", ""));
    let fwd = s.one_to(carol);
    assert!(fwd.starts_with(b"INVITE "));
    assert!(
        s.take_to(victim).is_empty(),
        "nothing ever goes to the victim"
    );
    s.take_to(bob);
    // Nor may anyone aim a request at it directly: the asserted address is not "registered".
    s.deliver(
        bob,
        &invite("bob", bob, "alice", "call-nat-4", "").replacen(
            &format!("sip:alice@{DOMAIN}"),
            &format!("sip:x@{victim}"),
            1,
        ),
    );
    assert_eq!(s.statuses_to(bob), [100, 403]);
    assert!(s.take_to(victim).is_empty());
}

fn outbound_registrations_are_bound_to_their_flow_and_answered_with_require_outbound(
    backend: Backend,
) {
    let Some(mut s) = Sim::on(backend, &config()) else {
        return;
    };
    // A public phone asking for outbound (RFC 5626 §4.2): its Contact names another public
    // address, which a plain registration would be reached at (third-party registration).
    let (phone, elsewhere) = (peer(20), peer(21));
    let contact = format!(
        "<sip:dave@{elsewhere};ob>;reg-id=1;+sip.instance=\"<urn:uuid:00000000-0000-1000-8000-000a95a0e128>\""
    );
    s.deliver(
        phone,
        &register(
            "dave",
            phone,
            "reg-ob-1",
            1,
            &[&contact],
            "Supported: outbound\r\nExpires: 600\r\n",
        ),
    );
    let ok = s.one_to(phone);
    assert_eq!(sim::status(&ok), 200);
    assert_eq!(headers(&ok, "Require"), ["outbound"]);
    let bob = peer(3);
    s.deliver(bob, &invite("bob", bob, "dave", "call-ob-1", ""));
    let fwd = s.one_to(phone);
    assert!(fwd.starts_with(b"INVITE "));
    assert!(s.take_to(elsewhere).is_empty());
    s.take_to(bob);
    // A plain registration is answered without it.
    s.deliver(
        bob,
        &register(
            "bob",
            bob,
            "reg-ob-2",
            1,
            &[&format!("<sip:bob@{bob}>")],
            "",
        ),
    );
    let ok = s.one_to(bob);
    assert!(headers(&ok, "Require").is_empty());
}

#[test]
fn udp_keepalives_are_absorbed_and_stun_binding_requests_answered_with_the_mapping() {
    let mut s = Sim::new(&config());
    // CRLF keep-alives: nothing sent back, not counted as malformed.
    s.core
        .handle(b"\r\n\r\n", nat(), Transport::Udp, s.now, s.unix());
    s.core
        .handle(b"\r\n", nat(), Transport::Udp, s.now, s.unix());
    s.drain();
    assert!(s.take_to(nat()).is_empty());
    assert_eq!(s.metrics.parse_errors.get(), 0);
    // A STUN Binding request (RFC 5389): the answer tells the phone its router's address and port.
    let txid = [7u8; 12];
    let mut req = vec![0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42];
    req.extend_from_slice(&txid);
    s.core.handle(&req, nat(), Transport::Udp, s.now, s.unix());
    s.drain();
    let resp = s.one_to(nat());
    assert_eq!(&resp[..2], &[0x01, 0x01], "Binding success");
    assert_eq!(&resp[8..20], &txid);
    assert_eq!(
        &resp[20..24],
        &[0x00, 0x20, 0x00, 0x08],
        "XOR-MAPPED-ADDRESS"
    );
    let port = u16::from_be_bytes([resp[26], resp[27]]) ^ 0x2112;
    let ip: Vec<u8> = resp[28..32]
        .iter()
        .zip([0x21, 0x12, 0xa4, 0x42])
        .map(|(a, k)| a ^ k)
        .collect();
    assert_eq!((ip.as_slice(), port), (&[203, 0, 113, 100][..], 40001));
    // Neither kind is mistaken for SIP.
    assert_eq!(s.metrics.parse_errors.get(), 0);
    assert_eq!(s.metrics.requests.get(), 0);
}

/// The same over IPv6 (a NAT66 or a firewall's pinhole): the UDP flow token carries a 16-byte
/// address, so it is longer than an IPv4 one, and the PostgreSQL row must hold it.
fn a_natd_ipv6_phone_registers_and_is_called_at_its_nat_address(backend: Backend) {
    let Some(mut s) = Sim::on(backend, &config()) else {
        return;
    };
    let (nat6, home6): (SocketAddr, SocketAddr) = (
        "[2001:db8:ffff:ffff:ffff:ffff:ffff:100]:40001"
            .parse()
            .unwrap(),
        "[fd00::2]:5060".parse().unwrap(),
    );
    let reg = register(
        "alice",
        home6,
        "reg-nat6",
        1,
        &[&format!("<sip:alice@{home6}>")],
        "Expires: 600\r\n",
    )
    .replacen(";branch", ";rport;branch", 1);
    s.deliver(nat6, &reg);
    assert_eq!(s.status_to(nat6), 200);
    let bob = peer(3);
    s.deliver(bob, &invite("bob", bob, "alice", "call-nat6", ""));
    assert!(s.take_to(home6).is_empty(), "never the private Contact");
    let fwd = s.one_to(nat6);
    assert!(fwd.starts_with(format!("INVITE sip:alice@{home6} ").as_bytes()));
    assert!(headers(&fwd, "Record-Route")[0].starts_with("<sip:u"));
}
