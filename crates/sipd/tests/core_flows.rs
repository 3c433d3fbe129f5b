//! RFC 5626 flows driven directly: a binding made over a stream connection is reached over that
//! connection only, whatever address its Contact names; once the connection closes the callee
//! is unavailable; in-dialog requests follow the flow token in our Record-Route, and a forged
//! token is refused.

mod sim;

use chaincall_sip::message::Message;
use chaincall_sipd::core::Transport;
use sim::{Backend, Sim, answer, config, headers, invite, peer};

#[test]
fn requests_for_a_stream_binding_go_over_its_flow_only() {
    over_its_flow_only(Backend::Memory);
}

/// The same with the binding in a PostgreSQL `location` row (its flow token stored with it).
#[test]
fn requests_for_a_stored_stream_binding_go_over_its_flow_only() {
    over_its_flow_only(Backend::Postgres);
}

fn over_its_flow_only(backend: Backend) {
    let Some(mut s) = Sim::on(backend, &config()) else {
        return;
    };
    let (alice, conn, claimed) = (peer(1), peer(2), peer(3));
    sim::register_over_tcp(&mut s, "bob", conn, claimed);
    s.deliver(alice, &invite("alice", alice, "bob", "call-f1", ""));
    let fwd = s.one_to(conn);
    assert!(s.take_to(claimed).is_empty(), "never the Contact's address");
    assert!(
        s.core.is_stream_peer(&conn),
        "the shell sends it over the connection"
    );
    let fm = Message::parse(&fwd).unwrap();
    assert!(
        fm.top_via().unwrap().transport.eq_ignore_ascii_case("TCP"),
        "{}",
        String::from_utf8_lossy(&fwd)
    );
    // UDP caller, TCP callee: two Record-Routes (RFC 5658), the callee's with our flow token.
    let rr = headers(&fwd, "Record-Route");
    assert_eq!(rr.len(), 2, "{rr:?}");
    assert!(
        rr[0].contains("@") && rr[0].contains("transport=tcp"),
        "{rr:?}"
    );
    assert!(!rr[1].contains("@"), "the UDP leg needs no token: {rr:?}");

    // bob answers over his connection; alice's BYE follows the route set (reversed, RFC 3261
    // §12.1.2) to the flow, even with a Request-URI naming another address.
    s.deliver_on(conn, &answer(&fwd, 200, "OK", "bob-tag"), Transport::Stream);
    assert_eq!(
        s.take_to(alice)
            .iter()
            .map(|b| sim::status(b))
            .collect::<Vec<_>>(),
        [100, 200]
    );
    let bye = |routes: &[&String], branch: &str| {
        let ruri = format!("sip:bob@{claimed};transport=tcp");
        sim::bye(&ruri, alice, "alice", "bob", "call-f1", routes, branch)
    };
    s.deliver(alice, &bye(&[&rr[1], &rr[0]], "bye-1"));
    let b = s.one_to(conn);
    assert!(b.starts_with(b"BYE "));
    assert!(s.take_to(claimed).is_empty());

    // A token that is not ours: 403, nothing forwarded.
    // The token's last hex digit (just before the '@') changed.
    let at = rr[0].find('@').unwrap();
    let flipped = if &rr[0][at - 1..at] == "0" { "1" } else { "0" };
    let forged = format!("{}{flipped}{}", &rr[0][..at - 1], &rr[0][at..]);
    s.deliver(alice, &bye(&[&rr[1], &forged], "bye-2"));
    assert_eq!(s.status_to(alice), 403);
    assert!(s.take_to(conn).is_empty());

    // The connection closes: the dialog's flow is gone (430), and new calls find bob unavailable
    // rather than trying the address his Contact names.
    s.disconnect(conn);
    s.deliver(alice, &bye(&[&rr[1], &rr[0]], "bye-3"));
    assert_eq!(s.status_to(alice), 430);
    s.deliver(alice, &invite("alice", alice, "bob", "call-f2", ""));
    assert_eq!(
        s.take_to(alice)
            .iter()
            .map(|b| sim::status(b))
            .collect::<Vec<_>>(),
        [100, 480]
    );
    assert!(s.take_to(claimed).is_empty() && s.take_to(conn).is_empty());
}
