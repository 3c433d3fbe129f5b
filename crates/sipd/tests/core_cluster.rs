//! Two nodes of one domain (`[cluster]`, docs/sipd.md "Cluster") driven in simulated time: two
//! cores on one throwaway PostgreSQL `location`, wired by a node link as the shell wires them
//! (a stream connection the core knows as a link to the other node), messages carried between
//! them by the test. A call from a phone on node 1 to a phone whose connection node 2 holds
//! goes over the link and down that phone's own connection; its dialog crosses the link both
//! ways; a NAT'd UDP phone is reached from the node it registered through; a flow node 2 lost
//! answers 430 and node 1 tries the next binding; nobody outside the cluster may send what a
//! node sends.

mod sim;

use std::net::SocketAddr;

use chaincall_sip::message::Message;
use chaincall_sipd::Config;
use chaincall_sipd::cluster::ClusterKeys;
use chaincall_sipd::config::{Listen, RelayMode};
use chaincall_sipd::core::{Need, StreamKind, Transport};
use chaincall_testkit::postgres::Postgres;
use sim::{DOMAIN, Sim, answer, config, config_on, headers, peer, register, with_sdp};

/// Node 1's and node 2's node-link listeners.
fn link_addr(n: u8) -> SocketAddr {
    SocketAddr::from(([198, 51, 100, n], 5070))
}

/// Where each node sees the link from the other: node 1 opened it to node 2's listener, and
/// node 2 sees it coming from node 1's ephemeral port.
const ON_1: fn() -> SocketAddr = || link_addr(2);
const ON_2: fn() -> SocketAddr = || SocketAddr::from(([198, 51, 100, 1], 40_001));

/// The cluster secret of the tests' nodes.
const CLUSTER_SECRET: [u8; 32] = [0x5c; 32];

/// A core for node `n` of a two-node cluster on `pg`, SIP on 203.0.113.`n`:5060, its flow
/// tokens keyed from [`CLUSTER_SECRET`] as `sipd serve` keys them.
fn node(pg: &Postgres, n: u8) -> Sim {
    node_keyed(pg, n, CLUSTER_SECRET)
}

/// [`node`] with its flow tokens keyed from the cluster secret `secret`.
fn node_keyed(pg: &Postgres, n: u8, secret: [u8; 32]) -> Sim {
    let mut sim = Sim::with_store(&node_config(pg, n));
    let keys = ClusterKeys::new(&format!("node-{n}"), secret);
    sim.core.set_flow_token_key(&keys.flow_token_key());
    sim
}

/// The configuration of node `n` of a two-node cluster on `pg`.
fn node_config(pg: &Postgres, n: u8) -> Config {
    let mut cfg = config_on(config(), pg);
    let other = 3 - n;
    cfg.listen = vec![Listen::udp(SocketAddr::from(([203, 0, 113, n], 5060)))];
    cfg.location.node_id = format!("node-{n}");
    // Every request reads the table: what the other node wrote is seen at once.
    cfg.location.cache = std::time::Duration::ZERO;
    cfg.cluster.listen = Some(link_addr(n));
    // The core never reads the secret (the shell's TLS does); the section must name it.
    cfg.cluster.secret_file = Some("cluster.secret".into());
    cfg.cluster
        .nodes
        .insert(format!("node-{other}"), link_addr(other));
    cfg
}

/// Two nodes with the link between them up, alice (a TCP phone at `peer(1)`) registered on
/// node 1 and bob (a TCP phone at `peer(5)`, whose Contact claims `peer(6)`) on node 2.
fn cluster(pg: &Postgres) -> (Sim, Sim) {
    cluster_of(node(pg, 1), node(pg, 2))
}

/// [`cluster`] of the nodes `n1` and `n2`.
fn cluster_of(mut n1: Sim, mut n2: Sim) -> (Sim, Sim) {
    link_up(&mut n1, ON_1(), "node-2");
    link_up(&mut n2, ON_2(), "node-1");
    sim::register_over_tcp(&mut n1, "alice", peer(1), peer(1));
    sim::register_over_tcp(&mut n2, "bob", peer(5), peer(6));
    (n1, n2)
}

/// `s` sees the node link from node `other` come up at `at` (as the shell reports a link whose
/// TLS handshake proved the cluster secret).
fn link_up(s: &mut Sim, at: SocketAddr, other: &str) {
    s.core.set_stream_peer(at, Some(StreamKind::Tls));
    s.core.set_stream_node(at, Some(other.into()));
    s.drain();
}

/// Everything node 1 sent over the link to node 2, delivered there in order.
fn carry_12(n1: &mut Sim, n2: &mut Sim) -> Vec<Vec<u8>> {
    carry(n1, ON_1(), n2, ON_2())
}

/// Everything node 2 sent over the link to node 1, delivered there in order.
fn carry_21(n2: &mut Sim, n1: &mut Sim) -> Vec<Vec<u8>> {
    carry(n2, ON_2(), n1, ON_1())
}

fn carry(from: &mut Sim, out: SocketAddr, to: &mut Sim, arrive: SocketAddr) -> Vec<Vec<u8>> {
    let msgs = from.take_to(out);
    for m in &msgs {
        to.deliver_on(arrive, std::str::from_utf8(m).unwrap(), Transport::Stream);
    }
    msgs
}

/// The one request among `msgs` (the rest are responses).
fn the_request(msgs: Vec<Vec<u8>>) -> Vec<u8> {
    let mut reqs: Vec<Vec<u8>> = msgs
        .into_iter()
        .filter(|m| !m.starts_with(b"SIP/2.0 "))
        .collect();
    assert_eq!(reqs.len(), 1);
    reqs.remove(0)
}

/// The statuses among `msgs`.
fn statuses(msgs: &[Vec<u8>]) -> Vec<u16> {
    msgs.iter()
        .filter(|m| m.starts_with(b"SIP/2.0 "))
        .map(|m| sim::status(m))
        .collect()
}

/// An initial INVITE from `caller` (a TCP phone at `src`) to `callee`.
fn invite(caller: &str, src: SocketAddr, callee: &str, call_id: &str) -> String {
    sim::invite(caller, src, callee, call_id, "").replace("SIP/2.0/UDP", "SIP/2.0/TCP")
}

/// An in-dialog BYE over TCP from `src` with `routes`.
fn bye(
    ruri: &str,
    src: SocketAddr,
    from: &str,
    to: &str,
    call_id: &str,
    routes: &[String],
) -> String {
    let refs: Vec<&String> = routes.iter().collect();
    sim::bye(
        ruri,
        src,
        from,
        to,
        call_id,
        &refs,
        &format!("{call_id}-{from}-bye"),
    )
    .replace("SIP/2.0/UDP", "SIP/2.0/TCP")
}

/// bob's BYE (from his connection at `peer(5)`) of the call `caller` placed as `call_id`, to
/// `ruri`, with the route set `rr` in record order (the callee's, §12.1.2): his tag is
/// `bob-tag`, the caller's `f-CALL_ID`.
fn bye_of_bob(ruri: &str, caller: &str, call_id: &str, rr: &[String]) -> String {
    bye(ruri, peer(5), "bob", caller, call_id, rr)
        .replace(&format!("tag=f-{call_id}"), "tag=bob-tag")
        .replace(&format!("tag={caller}-tag"), &format!("tag=f-{call_id}"))
}

#[test]
fn a_call_to_a_phone_on_the_other_node_goes_down_its_connection_and_the_dialog_crosses_back() {
    let Some(pg) = Postgres::start() else { return };
    let (mut n1, mut n2) = cluster(&pg);
    let (alice, bob, bob_claims) = (peer(1), peer(5), peer(6));

    n1.deliver_on(
        alice,
        &invite("alice", alice, "bob", "x1"),
        Transport::Stream,
    );
    let fwd = the_request(carry_12(&mut n1, &mut n2));
    // Node 1 names node 2's link address with bob's flow token, as node 2 minted it.
    let route = headers(&fwd, "Route");
    assert_eq!(route.len(), 1, "{route:?}");
    assert!(
        route[0].contains(&format!("@{};lr", link_addr(2))),
        "{route:?}"
    );
    // Node 2 delivers it down bob's own connection (never to the address his Contact names),
    // with its Route popped.
    let at_bob = n2.one_to(bob);
    assert!(n2.take_to(bob_claims).is_empty());
    let m = Message::parse(&at_bob).unwrap();
    assert_eq!(m.method().map(|m| m.as_str()), Some("INVITE"));
    assert!(headers(&at_bob, "Route").is_empty());
    // Both nodes record-routed both of their legs, each with its flow token.
    let rr = headers(&at_bob, "Record-Route");
    assert_eq!(rr.len(), 4, "{rr:?}");
    assert!(rr.iter().all(|r| r.contains('@')), "{rr:?}");

    // bob answers; the 200 goes back over the link to alice.
    n2.deliver_on(
        bob,
        &answer(&at_bob, 200, "OK", "bob-tag"),
        Transport::Stream,
    );
    assert_eq!(statuses(&carry_21(&mut n2, &mut n1)), [100, 200]);
    assert_eq!(n1.statuses_to(alice), [100, 200]);

    // bob hangs up (route set in record order): node 2 → the link → node 1 → alice's connection.
    let bob_bye = bye_of_bob(
        &format!("sip:alice@{alice};transport=tcp"),
        "alice",
        "x1",
        &rr,
    );
    n2.deliver_on(bob, &bob_bye, Transport::Stream);
    carry_21(&mut n2, &mut n1);
    let at_alice = n1.one_to(alice);
    assert!(
        at_alice.starts_with(b"BYE "),
        "{}",
        String::from_utf8_lossy(&at_alice)
    );
    // alice's 200 to the BYE goes back the same way to bob.
    n1.deliver_on(alice, &answer(&at_alice, 200, "OK", "x"), Transport::Stream);
    assert_eq!(statuses(&carry_12(&mut n1, &mut n2)), [200]);
    assert_eq!(n2.statuses_to(bob), [200]);

    // alice's BYE of a second call (route set reversed, §12.1.2) crosses the other way.
    let reversed: Vec<String> = rr.iter().rev().cloned().collect();
    let alice_bye = bye(
        &format!("sip:bob@{bob_claims};transport=tcp"),
        alice,
        "alice",
        "bob",
        "x1",
        &reversed,
    );
    n1.deliver_on(alice, &alice_bye, Transport::Stream);
    carry_12(&mut n1, &mut n2);
    assert!(n2.one_to(bob).starts_with(b"BYE "));
}

#[test]
fn a_dialog_across_the_node_link_survives_the_link_reconnecting() {
    let Some(pg) = Postgres::start() else { return };
    let (mut n1, mut n2) = cluster(&pg);
    let (alice, bob, bob_claims) = (peer(1), peer(5), peer(6));
    n1.deliver_on(
        alice,
        &invite("alice", alice, "bob", "x5"),
        Transport::Stream,
    );
    the_request(carry_12(&mut n1, &mut n2));
    let at_bob = n2.one_to(bob);
    let rr = headers(&at_bob, "Record-Route");
    assert_eq!(rr.len(), 4, "{rr:?}");
    n2.deliver_on(
        bob,
        &answer(&at_bob, 200, "OK", "bob-tag"),
        Transport::Stream,
    );
    carry_21(&mut n2, &mut n1);
    assert_eq!(n1.statuses_to(alice), [100, 200]);

    // The node link drops on both ends: while none is up, alice's BYE has nowhere to go (430).
    n1.core.set_stream_peer(ON_1(), None);
    n2.core.set_stream_peer(ON_2(), None);
    n1.drain();
    n2.drain();
    let reversed: Vec<String> = rr.iter().rev().cloned().collect();
    // alice's BYE with the route set `routes`, as a new transaction `branch`.
    let alice_bye = |routes: &[String], branch: &str| {
        let refs: Vec<&String> = routes.iter().collect();
        sim::bye(
            &format!("sip:bob@{bob_claims};transport=tcp"),
            alice,
            "alice",
            "bob",
            "x5",
            &refs,
            branch,
        )
        .replace("SIP/2.0/UDP", "SIP/2.0/TCP")
    };
    n1.deliver_on(alice, &alice_bye(&reversed, "x5-bye-1"), Transport::Stream);
    assert_eq!(n1.statuses_to(alice), [430]);

    // The link comes back as new connections (node 2 sees another ephemeral port): the
    // dialog's Record-Route named the node, not the connection, so the BYE takes the new link
    // and goes down bob's connection.
    let on_2_again = SocketAddr::from(([198, 51, 100, 1], 40_002));
    link_up(&mut n1, ON_1(), "node-2");
    link_up(&mut n2, on_2_again, "node-1");
    n1.deliver_on(alice, &alice_bye(&reversed, "x5-bye-2"), Transport::Stream);
    carry(&mut n1, ON_1(), &mut n2, on_2_again);
    assert!(n2.one_to(bob).starts_with(b"BYE "));

    // A node token under another node's name is a forgery (403), not a route to that node.
    let forged: Vec<String> = reversed
        .iter()
        .map(|r| r.replacen("<sip:n", "<sip:n00", 1))
        .collect();
    n1.deliver_on(alice, &alice_bye(&forged, "x5-bye-3"), Transport::Stream);
    assert_eq!(n1.statuses_to(alice), [403]);
}

#[test]
fn a_flow_the_owner_lost_answers_430_and_the_next_binding_is_tried() {
    let Some(pg) = Postgres::start() else { return };
    let (mut n1, mut n2) = cluster(&pg);
    let (alice, bob, bob_udp) = (peer(1), peer(5), peer(7));
    // bob's second device, over UDP, less preferred.
    n1.deliver(
        bob_udp,
        &register(
            "bob",
            bob_udp,
            "reg-bob-udp",
            1,
            &[&format!("<sip:bob@{bob_udp}>;q=0.5")],
            "Expires: 600\r\n",
        ),
    );
    assert_eq!(n1.status_to(bob_udp), 200);
    // bob's connection to node 2 drops; his row stays until he registers again or it expires.
    n2.disconnect(bob);

    n1.deliver_on(
        alice,
        &invite("alice", alice, "bob", "x2"),
        Transport::Stream,
    );
    carry_12(&mut n1, &mut n2);
    assert!(n2.take_to(bob).is_empty());
    assert_eq!(statuses(&carry_21(&mut n2, &mut n1)), [100, 430]);
    // Node 1 tries bob's other binding: alice sees no 430.
    let at_udp = n1.one_to(bob_udp);
    assert!(
        at_udp.starts_with(b"INVITE "),
        "{}",
        String::from_utf8_lossy(&at_udp)
    );
    assert!(headers(&at_udp, "Route").is_empty());
    assert_eq!(n1.statuses_to(alice), [100]);
    n1.deliver(bob_udp, &answer(&at_udp, 200, "OK", "bob-udp-tag"));
    assert_eq!(n1.statuses_to(alice), [200]);
}

#[test]
fn what_a_node_sends_is_refused_from_anyone_else_and_a_node_link_reaches_flows_only() {
    let Some(pg) = Postgres::start() else { return };
    let (mut n1, mut n2) = cluster(&pg);
    let (alice, bob, mallory) = (peer(1), peer(5), peer(9));
    n1.deliver_on(
        alice,
        &invite("alice", alice, "bob", "x3"),
        Transport::Stream,
    );
    let fwd = n1.one_to(ON_1());

    // The very request node 1 forwarded, token and all, from a connection that is no node link.
    n2.connect(mallory);
    let forged = String::from_utf8(fwd.clone()).unwrap();
    n2.deliver_on(mallory, &forged, Transport::Stream);
    let refused = n2.take_to(mallory);
    assert_eq!(sim::status(refused.last().unwrap()), 403);
    assert!(
        headers(refused.last().unwrap(), "Server").len() == 1
            && String::from_utf8_lossy(refused.last().unwrap()).contains("not a cluster node")
    );
    assert!(n2.take_to(bob).is_empty(), "nothing reaches bob");

    // Nor may anyone use node 1 to reach node 2's link address: that link carries only what
    // node 1 routes there itself.
    let (mallory_1, foreign) = (peer(10), "sip:m@elsewhere.example");
    let via_link = format!(
        "OPTIONS sip:bob@{at} SIP/2.0\r\nVia: SIP/2.0/UDP {mallory_1};branch=z9hG4bK-m1\r\n\
         Max-Forwards: 70\r\nRoute: <sip:{at};lr>\r\nFrom: <{foreign}>;tag=m\r\n\
         To: <sip:bob@{DOMAIN}>\r\nCall-ID: m1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
        at = link_addr(2)
    );
    n1.deliver(mallory_1, &via_link);
    assert_eq!(n1.statuses_to(mallory_1), [403]);
    assert!(n1.take_to(ON_1()).is_empty(), "nothing crosses the link");

    // On the link itself, a request naming no flow (node 2 would route it by the location and
    // could bounce it back) and a REGISTER are refused.
    let no_flow = sim::invite("alice", ON_2(), "bob", "x4", "");
    n2.deliver_on(ON_2(), &no_flow, Transport::Stream);
    let reg = register(
        "mallory",
        ON_2(),
        "reg-m",
        1,
        &[&format!("<sip:m@{}>", ON_2())],
        "",
    );
    n2.deliver_on(ON_2(), &reg, Transport::Stream);
    let got: Vec<u16> = n2.take_to(ON_2()).iter().map(|b| sim::status(b)).collect();
    assert_eq!(
        got.iter()
            .filter(|c| **c >= 200)
            .copied()
            .collect::<Vec<_>>(),
        [403, 403]
    );
    assert!(n2.take_to(bob).is_empty());
}

/// alice's node loses her connection and she registers on the other node (a new Contact: her
/// phone reconnected from a new port): a call to her through her old node goes to her new one,
/// not to the stale binding, which stays in the table until it expires.
#[test]
fn a_phone_that_moved_to_the_other_node_is_reached_there_from_its_old_one() {
    let Some(pg) = Postgres::start() else { return };
    let (mut n1, mut n2) = cluster(&pg);
    let (alice, bob, alice_again) = (peer(1), peer(5), peer(11));
    n1.disconnect(alice);
    sim::register_over_tcp(&mut n2, "alice", alice_again, alice_again);
    assert_eq!(sim_rows(&n1, "alice"), ["node-1", "node-2"]);

    // bob moves to node 1 too, and calls alice there (a second later: node 1 read alice's
    // bindings when she registered, and reads them again once that is older than cache_secs).
    sim::register_over_tcp(&mut n1, "bob", bob, bob);
    n1.advance(std::time::Duration::from_secs(1));
    n1.deliver_on(bob, &invite("bob", bob, "alice", "x5"), Transport::Stream);
    carry_12(&mut n1, &mut n2);
    let at_alice = n2.one_to(alice_again);
    assert!(at_alice.starts_with(b"INVITE "));
    assert_eq!(n1.statuses_to(bob), [100]);
}

/// The `node_id` of each of `user`'s rows, in order.
fn sim_rows(s: &Sim, user: &str) -> Vec<String> {
    let store = s.store.as_ref().expect("a PostgreSQL sim");
    store
        .rt
        .block_on(
            sqlx::query_scalar("SELECT node_id FROM location WHERE username = $1 ORDER BY node_id")
                .bind(user)
                .fetch_all(store.location.pool()),
        )
        .expect("the table reads")
}

/// alice calls over UDP (her leg of the dialog carries no flow token): bob's BYE still crosses
/// back over the link and reaches her.
#[test]
fn a_dialog_with_a_udp_phone_crosses_back_by_its_record_route() {
    let Some(pg) = Postgres::start() else { return };
    let (mut n1, mut n2) = cluster(&pg);
    let (carol, bob) = (peer(3), peer(5));
    n1.deliver(carol, &sim::invite("carol", carol, "bob", "x6", ""));
    carry_12(&mut n1, &mut n2);
    let at_bob = n2.one_to(bob);
    let rr = headers(&at_bob, "Record-Route");
    n2.deliver_on(
        bob,
        &answer(&at_bob, 200, "OK", "bob-tag"),
        Transport::Stream,
    );
    carry_21(&mut n2, &mut n1);
    assert_eq!(n1.statuses_to(carol), [100, 200]);
    let bob_bye = bye_of_bob(&format!("sip:carol@{carol}"), "carol", "x6", &rr);
    n2.deliver_on(bob, &bob_bye, Transport::Stream);
    carry_21(&mut n2, &mut n1);
    assert!(n1.one_to(carol).starts_with(b"BYE "));
}

/// carol registers on node 1 over UDP from behind a NAT (her Contact names a private address):
/// her NAT's pinhole admits node 1 only, so a call from bob on node 2 crosses the node link with
/// her UDP flow token and leaves node 1's socket for her NAT's address, never node 2's; the
/// dialog crosses back both ways.
#[test]
fn a_nat_udp_phone_on_the_other_node_is_reached_from_that_node() {
    let Some(pg) = Postgres::start() else { return };
    let (mut n1, mut n2) = cluster(&pg);
    let (carol, bob, bob_claims) = (nat_phone(&mut n1), peer(5), peer(6));

    n2.deliver_on(bob, &invite("bob", bob, "carol", "x7"), Transport::Stream);
    assert!(n2.take_to(carol).is_empty(), "node 2 never sends to carol");
    let fwd = the_request(carry_21(&mut n2, &mut n1));
    let route = headers(&fwd, "Route");
    assert_eq!(route.len(), 1, "{route:?}");
    assert!(
        route[0].starts_with("<sip:u") && route[0].contains(&format!("@{};lr", link_addr(1))),
        "node 1's link address with carol's UDP flow token: {route:?}"
    );
    let at_carol = n1.one_to(carol);
    assert!(at_carol.starts_with(b"INVITE sip:carol@10.0.0.5"));
    assert!(headers(&at_carol, "Route").is_empty());
    // Both nodes record-routed both legs; node 1's leg towards carol carries her UDP token.
    let rr = headers(&at_carol, "Record-Route");
    assert_eq!(rr.len(), 4, "{rr:?}");
    assert!(rr[0].starts_with("<sip:u"), "{rr:?}");

    n1.deliver(carol, &answer(&at_carol, 200, "OK", "carol-tag"));
    assert_eq!(statuses(&carry_12(&mut n1, &mut n2)), [100, 200]);
    assert_eq!(n2.statuses_to(bob), [100, 200]);

    // bob hangs up (his route set reversed): node 2 → the link → node 1 → carol's NAT.
    let reversed: Vec<String> = rr.iter().rev().cloned().collect();
    let bob_bye = bye(
        "sip:carol@10.0.0.5:5060",
        bob,
        "bob",
        "carol",
        "x7",
        &reversed,
    );
    n2.deliver_on(bob, &bob_bye, Transport::Stream);
    assert!(n2.take_to(carol).is_empty());
    carry_21(&mut n2, &mut n1);
    assert!(n1.one_to(carol).starts_with(b"BYE "));

    // carol's BYE of the same dialog (her route set in record order) reaches bob's connection.
    let refs: Vec<&String> = rr.iter().collect();
    let carol_bye = sim::bye(
        &format!("sip:bob@{bob_claims};transport=tcp"),
        carol,
        "carol",
        "bob",
        "x7",
        &refs,
        "x7-carol-bye",
    )
    .replace("tag=f-x7", "tag=carol-tag")
    .replace("tag=bob-tag", "tag=f-x7");
    n1.deliver(carol, &carol_bye);
    carry_12(&mut n1, &mut n2);
    assert!(n2.one_to(bob).starts_with(b"BYE "));
}

/// Node 1 restarted (a new process) while carol's row holds the UDP token its earlier process
/// wrote: the token is keyed from the cluster secret and node 1's id, not from the process, so
/// node 1 still follows it and the call reaches carol from node 1, without waiting for her next
/// REGISTER.
#[test]
fn a_restarted_node_still_follows_the_udp_tokens_it_wrote() {
    let Some(pg) = Postgres::start() else { return };
    let (mut n1, mut n2, carol, _) = restarted_node_1_called_for_carol(&pg, CLUSTER_SECRET);
    assert!(n1.one_to(carol).starts_with(b"INVITE "));
    assert_eq!(statuses(&carry_12(&mut n1, &mut n2)), [100]);
}

/// A UDP token node 1 cannot vouch for (written under another key: before the cluster's secret
/// changed, or by a process outside the cluster) is a failed flow: node 1 answers node 2 430 and
/// bob gets 480 (carol's next REGISTER writes a token node 1 can follow), never a 403 and never
/// a datagram to an address node 1 did not mint a token for.
#[test]
fn a_udp_token_under_another_key_is_a_failed_flow() {
    let Some(pg) = Postgres::start() else { return };
    let (mut n1, mut n2, carol, bob) = restarted_node_1_called_for_carol(&pg, [0x5d; 32]);
    assert!(n1.take_to(carol).is_empty());
    assert_eq!(statuses(&carry_12(&mut n1, &mut n2)), [100, 430]);
    assert_eq!(n2.statuses_to(bob), [100, 480]);
    assert!(n2.take_to(carol).is_empty());
}

/// carol registers on node 1 over UDP behind NAT; node 1 restarts with its flow tokens keyed
/// from the cluster secret `secret`, its link to node 2 comes back up, and bob (on node 2) calls
/// carol: the request is over the link at node 1. Returns the nodes, carol's and bob's address.
fn restarted_node_1_called_for_carol(
    pg: &Postgres,
    secret: [u8; 32],
) -> (Sim, Sim, SocketAddr, SocketAddr) {
    let (mut n1, mut n2) = cluster(pg);
    let (carol, bob) = (nat_phone(&mut n1), peer(5));
    drop(n1);
    let mut n1 = node_keyed(pg, 1, secret);
    link_up(&mut n1, ON_1(), "node-2");
    n2.deliver_on(bob, &invite("bob", bob, "carol", "x8"), Transport::Stream);
    carry_21(&mut n2, &mut n1);
    (n1, n2, carol, bob)
}

/// carol registers on `s` over UDP from her NAT's public address (her Contact names her private
/// one, so she is found behind NAT and her row holds a UDP flow token); returns that address.
fn nat_phone(s: &mut Sim) -> SocketAddr {
    let carol = SocketAddr::from(([192, 0, 2, 30], 40_000));
    let reg = register(
        "carol",
        carol,
        "reg-carol",
        1,
        &["<sip:carol@10.0.0.5:5060>"],
        "Expires: 600\r\n",
    );
    s.deliver(carol, &reg);
    assert_eq!(s.status_to(carol), 200);
    carol
}

/// With `[relay] mode = "nat"` on both nodes, a call across the node link is anchored once, by
/// the node it entered (which knows both parties: the caller it received, the callee's binding),
/// never again by the node delivering it: two offers for one call would stack two relays, or
/// clash in a shared rtpengine under one Call-ID. Both ways: bob on node 2 calls carol (NAT'd,
/// on node 1), and carol calls bob.
#[test]
fn a_call_across_the_node_link_is_relayed_once_by_the_node_it_entered() {
    let Some(pg) = Postgres::start() else { return };
    let relaying = |n| {
        let mut cfg = node_config(&pg, n);
        cfg.relay.mode = RelayMode::Nat;
        cfg.relay.rtpengine = Some("198.51.100.200:2223".parse().unwrap());
        Sim::with_store(&cfg)
    };
    let (mut n1, mut n2) = cluster_of(relaying(1), relaying(2));
    let (carol, bob) = (nat_phone(&mut n1), peer(5));
    let sdp = "v=0\r\no=x 1 1 IN IP4 192.0.2.9\r\ns=-\r\nc=IN IP4 192.0.2.9\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n";
    let relayed = sdp.replace("c=IN IP4 192.0.2.9", "c=IN IP4 198.51.100.200");
    // The one relay offer `s` asks for, answered with `relayed`.
    let offer_once = |s: &mut Sim, call_id: &str| {
        let offers: Vec<u64> = std::mem::take(&mut s.needs)
            .into_iter()
            .filter_map(|n| match n {
                Need::RelayOffer { ticket, offer } if offer.call_id == call_id => Some(ticket),
                _ => None,
            })
            .collect();
        assert_eq!(offers.len(), 1, "one offer for {call_id}");
        let now = s.now;
        s.core
            .relay_offered(offers[0], Ok(zeroize::Zeroizing::new(relayed.clone())), now);
        s.drain();
    };
    let no_relay = |s: &Sim| {
        let asked: Vec<&Need> = s
            .needs
            .iter()
            .filter(|n| matches!(n, Need::RelayOffer { .. }))
            .collect();
        assert!(asked.is_empty(), "{asked:?}");
    };

    let to_carol = with_sdp(&invite("bob", bob, "carol", "x9"), sdp);
    n2.deliver_on(bob, &to_carol, Transport::Stream);
    offer_once(&mut n2, "x9");
    the_request(carry_21(&mut n2, &mut n1));
    no_relay(&n1);
    let at_carol = n1.one_to(carol);
    assert!(String::from_utf8_lossy(&at_carol).ends_with(&relayed));

    // carol's INVITE as her phone writes it: her private address in Via and Contact.
    let home: SocketAddr = "10.0.0.5:5060".parse().unwrap();
    let to_bob = with_sdp(&sim::invite("carol", home, "bob", "x10", ""), sdp);
    n1.deliver(carol, &to_bob);
    offer_once(&mut n1, "x10");
    the_request(carry_12(&mut n1, &mut n2));
    no_relay(&n2);
    // (bob also has node 2's 100 to his own INVITE.)
    let at_bob = the_request(n2.take_to(bob));
    assert!(String::from_utf8_lossy(&at_bob).ends_with(&relayed));
}
