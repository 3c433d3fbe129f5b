//! The PostgreSQL location backend driven through the core in simulated time: registrations
//! that outlive the core, two cores (two nodes) on one database where the newest CSeq wins
//! (RFC 3261 §10.3 step 7, enforced in SQL), and a database lost and back: REGISTERs get 503
//! with Retry-After, calls to phones already known keep routing from the cache, and everything
//! recovers without a restart. Each test runs its own throwaway PostgreSQL server; the core never
//! waits on it (its needs are answered by the test, as the shell answers them).

mod sim;

use std::time::Duration;

use chaincall_sipd::core::Need;
use chaincall_sipd::location::postgres::PgLocation;
use chaincall_sipd::location::{LocationError, LocationStore, RegisterWrite};
use chaincall_testkit::postgres::Postgres;
use sim::{DOMAIN, Sim, config, config_on, headers, invite, peer, register};

/// A core on `pg`'s database.
fn node(pg: &Postgres, node_id: &str) -> Sim {
    let mut cfg = config_on(config(), pg);
    cfg.location.node_id = node_id.into();
    Sim::with_store(&cfg)
}

/// The (Contact, CSeq, node) rows of `user` in the `location` table, as an operator reads them.
fn rows(s: &Sim, user: &str) -> Vec<(String, i32, String)> {
    let store = s.store.as_ref().expect("a PostgreSQL sim");
    store
        .rt
        .block_on(
            sqlx::query_as(
                "SELECT contact, cseq, node_id FROM location WHERE username = $1 ORDER BY contact",
            )
            .bind(user)
            .fetch_all(store.location.pool()),
        )
        .expect("the table reads")
}

/// A core on `pg` where alice (at `peer(1)`) registered 10 s ago, and whose database answers
/// no look-up until the test does (`Sim::answer_location`).
fn stalled_after_alice_registered(pg: &Postgres) -> (Sim, std::net::SocketAddr) {
    let mut s = node(pg, "node-1");
    let alice = peer(1);
    register_ok(&mut s, "alice", alice, "reg-alice", 1);
    s.store.as_mut().expect("a PostgreSQL sim").auto = false;
    s.advance(Duration::from_secs(10));
    s.sent.clear();
    (s, alice)
}

/// Registers `user` from `src` (Contact at `src`) for 600 s and checks the 200.
fn register_ok(s: &mut Sim, user: &str, src: std::net::SocketAddr, call_id: &str, cseq: u32) {
    s.deliver(
        src,
        &register(
            user,
            src,
            call_id,
            cseq,
            &[&format!("<sip:{user}@{src}>")],
            "Expires: 600\r\n",
        ),
    );
    assert_eq!(s.status_to(src), 200, "{user} registers");
}

/// Where an INVITE from `caller` to `callee` is forwarded (`Err` with the status when the caller
/// got a final answer instead). What the core sent before (retransmissions of earlier calls) is
/// dropped first.
fn route(
    s: &mut Sim,
    caller: std::net::SocketAddr,
    callee: &str,
    call_id: &str,
) -> Result<std::net::SocketAddr, u16> {
    s.sent.clear();
    s.deliver(caller, &invite("bob", caller, callee, call_id, ""));
    let back: Vec<Vec<u8>> = s.take_to(caller);
    if let Some(last) = back.iter().map(|b| sim::status(b)).rfind(|c| *c >= 200) {
        return Err(last);
    }
    let (to, msg) = s.sent.pop_front().expect("the INVITE is forwarded");
    assert!(
        msg.starts_with(b"INVITE "),
        "{}",
        String::from_utf8_lossy(&msg)
    );
    s.sent.clear();
    Ok(to)
}

#[test]
fn a_new_core_on_the_same_database_finds_the_registrations() {
    let Some(pg) = Postgres::start() else { return };
    let alice = peer(1);
    let mut first = node(&pg, "node-1");
    register_ok(&mut first, "alice", alice, "reg-r", 1);
    assert_eq!(
        rows(&first, "alice"),
        [(format!("sip:alice@{alice}"), 1, "node-1".to_owned())],
        "one row, in Kamailio's columns plus the owning node"
    );
    // bob registers over a TCP connection: his row names that connection's flow token.
    let (conn, claimed) = (peer(5), peer(6));
    sim::register_over_tcp(&mut first, "bob", conn, claimed);
    drop(first);

    // A restarted sipd: a new core with nothing in memory.
    let mut second = node(&pg, "node-1");
    assert_eq!(route(&mut second, peer(2), "alice", "call-r"), Ok(alice));
    // bob's connection died with the old process: unavailable (RFC 5626 §5.3), never the
    // address his Contact names, and never a new connection from the same address.
    second.connect(conn);
    assert_eq!(route(&mut second, peer(2), "bob", "call-rb"), Err(480));
    assert!(second.take_to(claimed).is_empty() && second.take_to(conn).is_empty());
    assert_eq!(route(&mut second, peer(2), "carol", "call-c"), Err(480));
}

/// Two nodes get REGISTERs for one address-of-record (same phone, same Call-ID: its retry went
/// to the other node); whichever write runs last, the binding ends with the newest CSeq, in one
/// row, and a REGISTER older than the stored one is refused (500).
#[test]
fn two_nodes_registering_one_aor_keep_the_newest_cseq() {
    let Some(pg) = Postgres::start() else { return };
    let alice = peer(1);
    let contact = format!("<sip:alice@{alice}>");
    // The table holds the bare URI, as Kamailio's does.
    let stored = format!("sip:alice@{alice}");
    let (mut n1, mut n2) = (node(&pg, "node-1"), node(&pg, "node-2"));
    for n in [&mut n1, &mut n2] {
        n.store.as_mut().expect("a PostgreSQL sim").auto = false;
    }
    let reg = |cseq| {
        register(
            "alice",
            alice,
            "reg-2n",
            cseq,
            &[&contact],
            "Expires: 600\r\n",
        )
    };

    // Both writes in flight at once, on two database connections (one shell's pool runs both:
    // a pool is tied to the runtime that made it).
    n1.deliver(alice, &reg(7));
    n2.deliver(alice, &reg(8));
    let (w1, w2) = (take_write(&mut n1), take_write(&mut n2));
    let store = n1.store.take().expect("a PostgreSQL sim");
    let (a1, a2) = store.rt.block_on(async {
        tokio::join!(store.location.register(&w1), store.location.register(&w2))
    });
    let (now, unix) = (n1.now, n1.unix());
    n1.core
        .register_answered(w1.ticket, a1.expect("the write runs").into(), now, unix);
    n2.core
        .register_answered(w2.ticket, a2.expect("the write runs").into(), now, unix);
    n1.store = Some(store);
    n1.drain();
    n2.drain();
    assert_eq!(n2.status_to(alice), 200, "the newest REGISTER is applied");
    // The older one is 200 if it ran first (then overwritten), 500 if it ran second.
    assert!(matches!(n1.status_to(alice), 200 | 500));
    assert_eq!(
        rows(&n1, "alice"),
        [(stored.clone(), 8, "node-2".to_owned())],
        "one row, the newest CSeq's"
    );

    // A delayed copy of an older REGISTER reaching node-1 after node-2 stored CSeq 8: refused,
    // and the row keeps CSeq 8 and its node.
    n1.deliver(alice, &reg(6));
    n1.answer_location();
    assert_eq!(n1.status_to(alice), 500);
    assert_eq!(
        rows(&n1, "alice"),
        [(stored.clone(), 8, "node-2".to_owned())]
    );
    // A newer one on node-1 takes it over.
    n1.deliver(alice, &reg(9));
    n1.answer_location();
    assert_eq!(n1.status_to(alice), 200);
    assert_eq!(rows(&n1, "alice"), [(stored, 9, "node-1".to_owned())]);
}

/// The REGISTER write waiting in `s`'s needs (the test answers it itself).
fn take_write(s: &mut Sim) -> RegisterWrite {
    let i = s
        .needs
        .iter()
        .position(|n| matches!(n, Need::Register(_)))
        .expect("the REGISTER waits for its write");
    match s.needs.remove(i) {
        Need::Register(w) => w,
        _ => unreachable!("found by position"),
    }
}

#[test]
fn a_lost_database_answers_registers_503_keeps_known_phones_callable_and_recovers() {
    let Some(mut pg) = Postgres::start() else {
        return;
    };
    let mut cfg = config_on(config(), &pg);
    cfg.location.cache = Duration::from_secs(5);
    let mut s = Sim::with_store(&cfg);
    let (alice, bob) = (peer(1), peer(2));
    register_ok(&mut s, "alice", alice, "reg-l", 1);

    pg.stop();
    // Past the cache's freshness: the core asks the database again, which is gone.
    s.advance(Duration::from_secs(10));
    s.deliver(
        bob,
        &register(
            "bob",
            bob,
            "reg-lb",
            1,
            &[&format!("<sip:bob@{bob}>")],
            "Expires: 600\r\n",
        ),
    );
    let r = s.one_to(bob);
    assert_eq!(sim::status(&r), 503, "{}", String::from_utf8_lossy(&r));
    assert_eq!(
        headers(&r, "Retry-After"),
        ["5"],
        "the phone is told when to retry"
    );
    // alice was known before the loss: calls to her still route, from the cache.
    assert_eq!(route(&mut s, peer(3), "alice", "call-l1"), Ok(alice));
    // carol never was: 503 (the database might know her), not 404.
    assert_eq!(route(&mut s, peer(3), "carol", "call-l2"), Err(503));

    pg.restart();
    s.advance(Duration::from_secs(10));
    // Back without restarting sipd: bob registers and is callable.
    register_ok(&mut s, "bob", bob, "reg-lb", 2);
    assert_eq!(route(&mut s, peer(3), "bob", "call-l3"), Ok(bob));
    assert_eq!(rows(&s, "bob").len(), 1);
}

/// A location database that does not answer (a stall, not an error) costs only the requests
/// waiting for it, and only until `[auth] lookup_timeout_ms`: then a call to a phone in the cache
/// is routed from it, and one to a phone that is not gets 503.
#[test]
fn a_stalled_database_routes_known_phones_from_the_cache_at_the_lookup_timeout() {
    let Some(pg) = Postgres::start() else { return };
    let (mut s, alice) = stalled_after_alice_registered(&pg);
    let caller = peer(3);
    s.deliver(caller, &invite("bob", caller, "alice", "call-s1", ""));
    s.deliver(caller, &invite("bob", caller, "carol", "call-s2", ""));
    assert!(s.sent.is_empty(), "both wait for their look-ups");
    assert_eq!(s.needs.len(), 2, "{:?}", s.needs);
    // Other traffic is not held up meanwhile: an OPTIONS to the server is answered at once.
    let ping = format!(
        "OPTIONS sip:{DOMAIN} SIP/2.0\r\nVia: SIP/2.0/UDP {caller};branch=z9hG4bK-ping\r\n\
         Max-Forwards: 70\r\nFrom: <sip:bob@{DOMAIN}>;tag=p\r\nTo: <sip:{DOMAIN}>\r\n\
         Call-ID: ping\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    );
    s.deliver(caller, &ping);
    assert_eq!(s.status_to(caller), 200);
    // No answer from the database by the look-up timeout (2 s by default).
    s.advance(Duration::from_secs(2));
    let forwarded = s.take_to(alice);
    assert_eq!(forwarded.len(), 1, "alice's INVITE, routed from the cache");
    assert!(forwarded[0].starts_with(b"INVITE sip:alice@"));
    let answers: Vec<u16> = s.take_to(caller).iter().map(|b| sim::status(b)).collect();
    assert!(answers.contains(&503), "carol is not known: {answers:?}");
}

/// A popular callee: while its bindings are read, every caller's INVITE waits on that one
/// look-up (shared, so waiting costs the database nothing). A database that answers late must
/// not turn the ninth caller and later into `503 (busy)`, as the bound on one user's own
/// credential look-ups would (`bench sipd --nodes 2` sent all its calls to one callee and lost a
/// few per thousand that way).
#[test]
fn callers_of_one_callee_share_its_lookup_when_the_database_is_slow() {
    let Some(pg) = Postgres::start() else { return };
    let (mut s, alice) = stalled_after_alice_registered(&pg);
    let callers: Vec<_> = (0..30).map(|i| peer(100 + i)).collect();
    for (i, caller) in callers.iter().enumerate() {
        s.deliver(
            *caller,
            &invite("bob", *caller, "alice", &format!("call-p{i}"), ""),
        );
    }
    assert_eq!(s.needs.len(), 1, "one look-up for all: {:?}", s.needs);
    for caller in &callers {
        let answers: Vec<u16> = s.take_to(*caller).iter().map(|b| sim::status(b)).collect();
        assert!(answers.iter().all(|c| *c < 200), "{caller}: {answers:?}");
    }
    s.answer_location();
    assert_eq!(
        s.take_to(alice).len(),
        callers.len(),
        "every call reaches alice"
    );
}

/// The cache that carries calls through an outage holds at most `[location] cache_entries`
/// addresses-of-record, least recently used dropped first.
#[test]
fn the_outage_cache_is_bounded() {
    let Some(mut pg) = Postgres::start() else {
        return;
    };
    let mut cfg = config_on(config(), &pg);
    cfg.location.cache_entries = 2;
    let mut s = Sim::with_store(&cfg);
    let phones = [("alice", peer(1)), ("bob", peer(2)), ("dave", peer(4))];
    for (n, (user, src)) in phones.iter().enumerate() {
        register_ok(&mut s, user, *src, &format!("reg-{user}"), n as u32 + 1);
    }
    pg.stop();
    s.advance(Duration::from_secs(10));
    // alice was the least recently used of three with room for two: no longer known.
    assert_eq!(route(&mut s, peer(3), "alice", "call-b1"), Err(503));
    assert_eq!(route(&mut s, peer(3), "dave", "call-b2"), Ok(peer(4)));
    assert_eq!(route(&mut s, peer(3), "bob", "call-b3"), Ok(peer(2)));
}

/// A database that cannot be reached at start is named in the error, without its password.
#[test]
fn an_unreachable_database_is_named_without_its_password() {
    let port = chaincall_testkit::free_tcp_port();
    let url = format!("postgres://sipd:hunter2@127.0.0.1:{port}/sip");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let err = rt
        .block_on(PgLocation::connect(&url))
        .expect_err("nothing listens there");
    assert!(matches!(err, LocationError::Open { .. }), "{err:?}");
    let shown = err.to_string();
    assert!(
        shown.contains(&format!("postgres://sipd:***@127.0.0.1:{port}/sip")),
        "{shown}"
    );
    let mut chain = format!("{err:?}");
    let mut source = std::error::Error::source(&err);
    while let Some(e) = source {
        chain.push_str(&e.to_string());
        source = e.source();
    }
    assert!(!chain.contains("hunter2"), "{chain}");
}
