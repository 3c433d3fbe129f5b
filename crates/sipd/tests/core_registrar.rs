//! The registrar (RFC 3261 §10.3) driven directly in simulated time: bindings, refresh, expiry
//! as time passes, unregistering, `*`, stale CSeqs and `q` order, read from what the core sends.
//! One suite, both location backends: every test runs on the in-memory table and on a
//! PostgreSQL `location` table (a throwaway server per test).

#[macro_use]
mod sim;

use std::time::Duration;

use sim::{Backend, Sim, config, headers, invite, peer, register};

on_both_backends!(
    a_binding_is_made_refreshed_and_expires_when_its_time_has_passed,
    the_next_deadline_is_the_next_binding_expiry,
    unregistering_one_contact_and_all_with_a_star,
    a_stale_cseq_for_the_same_call_id_is_refused_and_changes_nothing,
    calls_go_to_the_binding_with_the_highest_q,
);

/// The Contact values of the one response the core sent to `to` (a 200 to a REGISTER).
fn bindings_in_200(s: &mut Sim, to: std::net::SocketAddr) -> Vec<String> {
    let b = s.one_to(to);
    assert_eq!(sim::status(&b), 200, "{}", String::from_utf8_lossy(&b));
    headers(&b, "Contact")
}

/// A query REGISTER (no Contact): the 200 lists the live bindings (§10.3 step 8).
fn query(s: &mut Sim, user: &str, call_id: &str, cseq: u32) -> Vec<String> {
    let from = peer(99);
    s.deliver(from, &register(user, from, call_id, cseq, &[], ""));
    bindings_in_200(s, from)
}

fn a_binding_is_made_refreshed_and_expires_when_its_time_has_passed(backend: Backend) {
    let Some(mut s) = Sim::on(backend, &config()) else {
        return;
    };
    assert_eq!(s.deadline, None, "a new core has nothing due");
    let alice = peer(1);
    let contact = format!("<sip:alice@{alice}>");
    s.deliver(
        alice,
        &register("alice", alice, "reg-a", 1, &[&contact], "Expires: 60\r\n"),
    );
    assert_eq!(
        bindings_in_200(&mut s, alice),
        [format!("{contact};expires=60")]
    );
    assert_eq!(s.metrics.registrations.get(), 1);

    // Refreshed after 40 s: the binding now lives 60 s from then.
    s.advance(Duration::from_secs(40));
    s.deliver(
        alice,
        &register("alice", alice, "reg-a", 2, &[&contact], "Expires: 60\r\n"),
    );
    assert_eq!(
        bindings_in_200(&mut s, alice),
        [format!("{contact};expires=60")]
    );
    s.advance(Duration::from_secs(59));
    assert_eq!(
        query(&mut s, "alice", "q1", 1),
        [format!("{contact};expires=1")]
    );
    // Past the refreshed expiry: gone, without any request to notice it.
    s.advance(Duration::from_secs(1));
    assert_eq!(s.metrics.registrations.get(), 0, "expired at its deadline");
    assert!(query(&mut s, "alice", "q2", 1).is_empty());
    let bob = peer(2);
    s.deliver(bob, &invite("bob", bob, "alice", "call-1", ""));
    let got = s.take_to(bob);
    assert_eq!(
        sim::status(got.last().expect("an answer")),
        480,
        "no binding left"
    );
    // Once the transactions are over, an idle core with no bindings has no deadline at all.
    s.advance(Duration::from_secs(120));
    s.take_to(bob);
    assert_eq!(s.deadline, None);
}

fn the_next_deadline_is_the_next_binding_expiry(backend: Backend) {
    let Some(mut s) = Sim::on(backend, &config()) else {
        return;
    };
    let alice = peer(1);
    let start = s.now;
    s.deliver(
        alice,
        &register(
            "alice",
            alice,
            "reg-b",
            1,
            &[&format!("<sip:alice@{alice}>")],
            "Expires: 3600\r\n",
        ),
    );
    s.take_to(alice);
    // Let the REGISTER transaction end (Timer J, 64·T1 over UDP): then the binding's expiry is
    // all that is left.
    s.advance(Duration::from_secs(40));
    assert_eq!(s.deadline, Some(start + Duration::from_secs(3600)));
}

fn unregistering_one_contact_and_all_with_a_star(backend: Backend) {
    let Some(mut s) = Sim::on(backend, &config()) else {
        return;
    };
    let alice = peer(1);
    let (c1, c2) = ("<sip:alice@192.0.2.1:5060>", "<sip:alice@192.0.2.1:5070>");
    s.deliver(
        alice,
        &register("alice", alice, "reg-c", 1, &[c1, c2], "Expires: 600\r\n"),
    );
    assert_eq!(bindings_in_200(&mut s, alice).len(), 2);
    // `expires=0` on one Contact removes that binding only.
    s.deliver(
        alice,
        &register(
            "alice",
            alice,
            "reg-c",
            2,
            &[&format!("{c1};expires=0")],
            "",
        ),
    );
    assert_eq!(
        bindings_in_200(&mut s, alice),
        [format!("{c2};expires=600")]
    );
    // `*` needs `Expires: 0` (§10.3 step 6).
    s.deliver(alice, &register("alice", alice, "reg-c", 3, &["*"], ""));
    assert_eq!(s.status_to(alice), 400);
    s.deliver(
        alice,
        &register("alice", alice, "reg-c", 4, &["*"], "Expires: 0\r\n"),
    );
    assert!(bindings_in_200(&mut s, alice).is_empty());
    assert!(query(&mut s, "alice", "q3", 1).is_empty());
    assert_eq!(s.metrics.registrations.get(), 0);
}

fn a_stale_cseq_for_the_same_call_id_is_refused_and_changes_nothing(backend: Backend) {
    let Some(mut s) = Sim::on(backend, &config()) else {
        return;
    };
    let alice = peer(1);
    let c = "<sip:alice@192.0.2.1:5060>";
    s.deliver(
        alice,
        &register("alice", alice, "reg-d", 5, &[c], "Expires: 600\r\n"),
    );
    bindings_in_200(&mut s, alice);
    // A delayed copy (same Call-ID, older CSeq) trying to remove the binding: refused (§10.3
    // step 7), the binding stays.
    s.deliver(
        alice,
        &register("alice", alice, "reg-d", 4, &[&format!("{c};expires=0")], ""),
    );
    assert_eq!(s.status_to(alice), 500);
    // The same CSeq again is not newer either (a `*` too).
    s.deliver(
        alice,
        &register("alice", alice, "reg-d", 5, &["*"], "Expires: 0\r\n"),
    );
    assert_eq!(s.status_to(alice), 500);
    assert_eq!(
        query(&mut s, "alice", "q4", 1),
        [format!("{c};expires=600")]
    );
    // Another Call-ID (a rebooted phone) starts its own CSeq space: accepted.
    s.deliver(
        alice,
        &register("alice", alice, "reg-e", 1, &[&format!("{c};expires=0")], ""),
    );
    assert!(bindings_in_200(&mut s, alice).is_empty());
}

fn calls_go_to_the_binding_with_the_highest_q(backend: Backend) {
    let Some(mut s) = Sim::on(backend, &config()) else {
        return;
    };
    let (desk, mobile) = (peer(1), peer(2));
    s.deliver(
        desk,
        &register(
            "alice",
            desk,
            "reg-f",
            1,
            &[
                &format!("<sip:alice@{desk}>;q=0.5"),
                &format!("<sip:alice@{mobile}>;q=0.9"),
            ],
            "Expires: 600\r\n",
        ),
    );
    assert_eq!(bindings_in_200(&mut s, desk).len(), 2);
    let bob = peer(3);
    s.deliver(bob, &invite("bob", bob, "alice", "call-q", ""));
    let fwd = s.one_to(mobile);
    assert!(
        fwd.starts_with(format!("INVITE sip:alice@{mobile} ").as_bytes()),
        "{}",
        String::from_utf8_lossy(&fwd)
    );
    assert!(s.take_to(desk).is_empty(), "the q=0.5 binding is not tried");
    // An interval under `min_expires` is refused with the minimum (423, §10.3 step 7).
    s.deliver(
        desk,
        &register(
            "alice",
            desk,
            "reg-g",
            1,
            &[&format!("<sip:alice@{desk}>")],
            "Expires: 5\r\n",
        ),
    );
    let r = s.one_to(desk);
    assert_eq!(sim::status(&r), 423);
    assert_eq!(headers(&r, "Min-Expires"), ["60"]);
}
