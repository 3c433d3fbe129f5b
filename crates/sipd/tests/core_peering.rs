//! Calls between chaincall domains (`[peers]`, docs/trapezoid.md) driven in simulated time: the
//! core serves `example.test` and peers with `b.example`, whose sipd-to-sipd link is a TLS
//! stream connection whose handshake proved `b.example` (as the shell records it). Egress: a
//! request for the peer's domain, or for a number under its prefix, goes over the link, and the
//! dialog's in-dialog requests cross the same link both ways; nobody but our users gets there.
//! Ingress: the link's requests are delivered without digest, but only for its own domain's
//! users, only to ours, and only from a domain we peer with.

mod sim;

use std::net::SocketAddr;

use alloy::primitives::Address;
use chaincall_sip::message::Message;
use chaincall_sipd::config::{PeerConfig, TlsPskSettings};
use chaincall_sipd::core::{StreamKind, Transport};
use chaincall_sipd::{AuthMode, Config, KeyTrustMode};
use sim::{DOMAIN, Sim, answer, config, headers, peer};

const PEER: &str = "b.example";
const ALICE: &str = "+15550400001";
const BOB: &str = "+15550500002";

/// `config()` peering with `b.example`, which serves the numbers under `+1555050` (and the
/// `[tls_psk]` section a link's handshake needs).
fn peering() -> Config {
    let mut cfg = config();
    let mut tls = TlsPskSettings::new(
        "example.test".parse().unwrap(),
        "unused.key".into(),
        "http://127.0.0.1:1".into(),
        Address::ZERO,
    );
    tls.trust = KeyTrustMode::Provider;
    cfg.tls_psk = Some(tls);
    cfg.peers.insert(
        PEER.into(),
        PeerConfig {
            numbers: vec!["+1555050".into()],
            ..PeerConfig::new("192.0.2.9:5061")
        },
    );
    cfg
}

/// A TLS-PSK connection from `addr` whose handshake proved `identity` (a number or a domain).
fn connect_as(s: &mut Sim, addr: SocketAddr, identity: &str) {
    s.core.set_stream_peer(addr, Some(StreamKind::Tls));
    s.core.set_stream_identity(addr, Some(identity.into()));
    s.drain();
}

/// A request over TLS from `src`: `method` to `ruri`, From `from`, To `to` (with `to_tag` if
/// any), `routes` as Route lines.
fn request(
    method: &str,
    ruri: &str,
    src: SocketAddr,
    (from, to, to_tag): (&str, &str, Option<&str>),
    call_id: &str,
    cseq: u32,
    routes: &[&str],
) -> String {
    let routes: String = routes.iter().map(|r| format!("Route: {r}\r\n")).collect();
    let to_tag = to_tag.map(|t| format!(";tag={t}")).unwrap_or_default();
    format!(
        "{method} {ruri} SIP/2.0\r\n\
         Via: SIP/2.0/TLS {src};branch=z9hG4bK-{call_id}-{cseq}\r\n\
         Max-Forwards: 70\r\n\
         {routes}From: <{from}>;tag=f-{call_id}\r\n\
         To: <{to}>{to_tag}\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: {cseq} {method}\r\n\
         Contact: <sip:x@{src};transport=tls>\r\n\
         Content-Length: 0\r\n\r\n"
    )
}

/// An initial INVITE from `from` to `ruri` over TLS from `src`.
fn invite(ruri: &str, src: SocketAddr, from: &str, call_id: &str) -> String {
    request("INVITE", ruri, src, (from, ruri, None), call_id, 1, &[])
}

fn alice_uri() -> String {
    format!("sip:{ALICE}@{DOMAIN}")
}

fn bob_uri() -> String {
    format!("sip:{BOB}@{PEER}")
}

/// The statuses of every response sent to `to`.
fn statuses(s: &mut Sim, to: SocketAddr) -> Vec<u16> {
    s.take_to(to).iter().map(|b| sim::status(b)).collect()
}

/// alice (a TLS-PSK phone at `alice`) calls bob at b.example with the link at `link` up; returns
/// the INVITE as it went over the link.
fn call_to_bob(s: &mut Sim, alice: SocketAddr, link: SocketAddr, call_id: &str) -> Vec<u8> {
    connect_as(s, alice, ALICE);
    connect_as(s, link, PEER);
    s.deliver_on(
        alice,
        &invite(&bob_uri(), alice, &alice_uri(), call_id),
        Transport::Stream,
    );
    s.one_to(link)
}

#[test]
fn a_call_to_a_peer_domain_goes_over_its_link_and_its_dialog_crosses_the_same_link_both_ways() {
    let mut s = Sim::new(&peering());
    let (alice, link) = (peer(1), peer(9));
    let fwd = call_to_bob(&mut s, alice, link, "call-p1");
    let m = Message::parse(&fwd).unwrap();
    assert_eq!(m.request_uri(), Some(bob_uri().as_str()));
    assert!(m.top_via().unwrap().transport.eq_ignore_ascii_case("TLS"));
    // Both legs are flows: each Record-Route carries a token, so in-dialog requests come back
    // over a link to b.example (the one facing it names the domain: a link token) and over
    // alice's connection.
    let rr = headers(&fwd, "Record-Route");
    assert_eq!(rr.len(), 2, "{rr:?}");
    assert!(rr[0].contains("<sip:p"), "{rr:?}");
    assert!(
        rr.iter()
            .all(|r| r.contains('@') && r.contains("transport=tls")),
        "{rr:?}"
    );

    // b.example answers over the link; the 200 reaches alice.
    s.deliver_on(link, &answer(&fwd, 200, "OK", "bob-tag"), Transport::Stream);
    assert_eq!(statuses(&mut s, alice), [100, 200]);

    // alice's BYE (route set reversed, §12.1.2) goes over the link...
    let bye = request(
        "BYE",
        &format!("sip:{BOB}@192.0.2.77:5061;transport=tls"),
        alice,
        (&alice_uri(), &bob_uri(), Some("bob-tag")),
        "call-p1",
        2,
        &[&rr[1], &rr[0]],
    );
    s.deliver_on(alice, &bye, Transport::Stream);
    assert!(s.one_to(link).starts_with(b"BYE "));
    // ...and bob's, arriving on the link with the route set in record order, reaches alice.
    let bye_back = request(
        "BYE",
        &format!("sip:x@{alice};transport=tls"),
        link,
        (&bob_uri(), &alice_uri(), Some("f-call-p1")),
        "call-p1b",
        3,
        &[&rr[0], &rr[1]],
    );
    s.deliver_on(link, &bye_back, Transport::Stream);
    assert!(s.one_to(alice).starts_with(b"BYE "));
}

#[test]
fn a_dialog_over_a_link_survives_the_link_reconnecting() {
    let mut s = Sim::new(&peering());
    let (alice, link) = (peer(1), peer(9));
    let fwd = call_to_bob(&mut s, alice, link, "call-r1");
    s.deliver_on(link, &answer(&fwd, 200, "OK", "bob-tag"), Transport::Stream);
    assert_eq!(statuses(&mut s, alice), [100, 200]);
    let rr = headers(&fwd, "Record-Route");
    let bye = |cseq| {
        request(
            "BYE",
            &format!("sip:{BOB}@192.0.2.77:5061;transport=tls"),
            alice,
            (&alice_uri(), &bob_uri(), Some("bob-tag")),
            "call-r1",
            cseq,
            &[&rr[1], &rr[0]],
        )
    };

    // The link's connection drops: while no link to b.example is up, alice's BYE has no flow to
    // take (430, RFC 5626 §5.3).
    s.core.set_stream_peer(link, None);
    s.drain();
    s.deliver_on(alice, &bye(2), Transport::Stream);
    assert_eq!(statuses(&mut s, alice), [430]);

    // The link comes back as a new connection (another port, another flow): the dialog's
    // Record-Route named the peer domain, so alice's BYE takes the new link and its 200 comes
    // back to her.
    let relinked = peer(10);
    connect_as(&mut s, relinked, PEER);
    s.deliver_on(alice, &bye(3), Transport::Stream);
    let fwd_bye = s.one_to(relinked);
    assert!(fwd_bye.starts_with(b"BYE "));
    assert!(s.take_to(link).is_empty(), "never the dead connection");
    s.deliver_on(
        relinked,
        &answer(&fwd_bye, 200, "OK", "bob-tag"),
        Transport::Stream,
    );
    assert_eq!(statuses(&mut s, alice), [200]);
    // And bob's BYE, arriving on the new link with the route set in record order, reaches
    // alice.
    let bye_back = request(
        "BYE",
        &format!("sip:x@{alice};transport=tls"),
        relinked,
        (&bob_uri(), &alice_uri(), Some("f-call-r1")),
        "call-r1",
        4,
        &[&rr[0], &rr[1]],
    );
    s.deliver_on(relinked, &bye_back, Transport::Stream);
    assert!(s.one_to(alice).starts_with(b"BYE "));

    // The link token names b.example under this sipd's key: another domain's name in its place
    // is a forgery (403), not a route to that domain.
    let forged = rr[0].replacen("@", "00@", 1);
    s.deliver_on(
        alice,
        &request(
            "BYE",
            &format!("sip:{BOB}@192.0.2.77:5061;transport=tls"),
            alice,
            (&alice_uri(), &bob_uri(), Some("bob-tag")),
            "call-r1",
            5,
            &[&rr[1], &forged],
        ),
        Transport::Stream,
    );
    assert_eq!(statuses(&mut s, alice), [403]);
}

#[test]
fn a_peer_whose_key_was_lost_is_cut_off_until_its_key_is_proved_again() {
    let mut s = Sim::new(&peering());
    let (alice, link) = (peer(1), peer(9));
    connect_as(&mut s, alice, ALICE);
    connect_as(&mut s, link, PEER);
    // The shell's link found b.example's key revoked: the core names the connections to close.
    assert_eq!(s.core.peer_key_lost(PEER), [link]);
    // Until they are closed, nothing goes to b.example and nothing it sends is taken.
    s.deliver_on(
        alice,
        &invite(&bob_uri(), alice, &alice_uri(), "call-k1"),
        Transport::Stream,
    );
    let got = s.take_to(alice);
    let last = got.last().unwrap();
    assert_eq!(sim::status(last), 503);
    assert!(
        String::from_utf8_lossy(last).contains("peer domain key revoked"),
        "{}",
        String::from_utf8_lossy(last)
    );
    s.deliver_on(
        link,
        &invite(&alice_uri(), link, &bob_uri(), "call-k2"),
        Transport::Stream,
    );
    let got = s.take_to(link);
    assert_eq!(sim::status(got.last().unwrap()), 403);
    assert!(String::from_utf8_lossy(got.last().unwrap()).contains("peer domain key revoked"));
    assert!(s.take_to(alice).is_empty(), "alice's phone never rang");

    // A new handshake of our link proved b.example's key: calls go to it again.
    s.core.peer_key_proved(PEER);
    s.deliver_on(
        alice,
        &invite(&bob_uri(), alice, &alice_uri(), "call-k3"),
        Transport::Stream,
    );
    assert!(s.one_to(link).starts_with(b"INVITE "));
}

#[test]
fn a_number_under_a_peer_prefix_goes_to_the_peer_with_its_domain_in_the_request_uri() {
    let mut s = Sim::new(&peering());
    let (alice, link) = (peer(1), peer(9));
    connect_as(&mut s, alice, ALICE);
    connect_as(&mut s, link, PEER);
    let dialled = format!("sip:{BOB}@{DOMAIN}");
    s.deliver_on(
        alice,
        &invite(&dialled, alice, &alice_uri(), "call-p2"),
        Transport::Stream,
    );
    let fwd = s.one_to(link);
    assert_eq!(
        Message::parse(&fwd).unwrap().request_uri(),
        Some(bob_uri().as_str()),
        "the peer sees a request for its own domain"
    );
    // A number under no prefix stays ours (nobody registered: 480).
    s.deliver_on(
        alice,
        &invite(
            &format!("sip:+15550600003@{DOMAIN}"),
            alice,
            &alice_uri(),
            "call-p3",
        ),
        Transport::Stream,
    );
    assert_eq!(statuses(&mut s, alice), [100, 100, 480]);
    assert!(s.take_to(link).is_empty());
}

#[test]
fn a_domain_not_in_peers_is_refused_and_a_peer_without_a_link_gets_503() {
    let mut s = Sim::new(&peering());
    let alice = peer(1);
    connect_as(&mut s, alice, ALICE);
    // No link up yet: 503 with Retry-After, nothing sent anywhere else.
    s.deliver_on(
        alice,
        &invite(&bob_uri(), alice, &alice_uri(), "call-p4"),
        Transport::Stream,
    );
    let got = s.take_to(alice);
    let last = got.last().unwrap();
    assert_eq!(sim::status(last), 503);
    assert_eq!(headers(last, "Retry-After"), ["5"]);
    assert!(s.sent.is_empty(), "{:?}", s.sent);

    // A link authenticated as b.example does not carry calls for c.example: no route (404),
    // never the link.
    let link = peer(9);
    connect_as(&mut s, link, PEER);
    s.deliver_on(
        alice,
        &invite("sip:carol@c.example", alice, &alice_uri(), "call-p5"),
        Transport::Stream,
    );
    assert_eq!(statuses(&mut s, alice), [100, 404]);
    assert!(s.take_to(link).is_empty());
}

#[test]
fn only_our_own_users_reach_a_peer() {
    let mut s = Sim::new(&peering());
    let link = peer(9);
    connect_as(&mut s, link, PEER);
    // An unknown UDP sender (not registered, no handshake) cannot use us to reach the peer.
    let stranger = peer(5);
    s.deliver(
        stranger,
        &invite(&bob_uri(), stranger, &alice_uri(), "call-p6").replace("/TLS", "/UDP"),
    );
    assert_eq!(statuses(&mut s, stranger), [100, 403]);
    // Nor can one of our phones speak for another domain's user.
    let alice = peer(1);
    connect_as(&mut s, alice, ALICE);
    s.deliver_on(
        alice,
        &invite(&bob_uri(), alice, "sip:+15550700001@c.example", "call-p7"),
        Transport::Stream,
    );
    assert_eq!(statuses(&mut s, alice), [100, 403]);
    assert!(s.take_to(link).is_empty());
    assert_eq!(s.metrics.relay_refused.get(), 2);
}

#[test]
fn a_request_from_a_peer_link_is_delivered_without_a_digest_challenge() {
    let mut cfg = peering();
    cfg.auth.mode = AuthMode::Digest;
    cfg.static_route = Some(peer(2));
    let mut s = Sim::new(&cfg);
    let link = peer(9);
    connect_as(&mut s, link, PEER);
    let to_alice = format!("sip:{ALICE}@{DOMAIN}");
    s.deliver_on(
        link,
        &invite(&to_alice, link, &bob_uri(), "call-p8"),
        Transport::Stream,
    );
    // Whether bob's number is one of ours decides nothing here, but is looked up (issue 14).
    s.answer_lookup(BOB, None);
    let fwd = s.one_to(peer(2));
    assert!(
        fwd.starts_with(b"INVITE "),
        "no 407: the link is a peer, not a subscriber"
    );
    assert_eq!(statuses(&mut s, link), [100]);
}

#[test]
fn a_link_may_only_assert_its_own_users_only_to_our_domain() {
    let mut cfg = peering();
    cfg.static_route = Some(peer(2));
    let mut s = Sim::new(&cfg);
    let link = peer(9);
    connect_as(&mut s, link, PEER);
    let to_alice = format!("sip:{ALICE}@{DOMAIN}");
    // b.example claiming one of our users, or a third domain's: 403.
    for (i, from) in [
        format!("sip:+15550400002@{DOMAIN}"),
        "sip:+15550700001@c.example".to_owned(),
    ]
    .iter()
    .enumerate()
    {
        s.deliver_on(
            link,
            &invite(&to_alice, link, from, &format!("call-p9-{i}")),
            Transport::Stream,
        );
        let got = s.take_to(link);
        let last = got.last().unwrap();
        assert_eq!(sim::status(last), 403, "{from}");
        assert!(
            String::from_utf8_lossy(last).contains("may only assert its own users"),
            "{}",
            String::from_utf8_lossy(last)
        );
    }
    // No transit: a target outside our domain is refused.
    s.deliver_on(
        link,
        &invite("sip:carol@198.51.100.1", link, &bob_uri(), "call-p10"),
        Transport::Stream,
    );
    assert_eq!(statuses(&mut s, link), [100, 403]);
    // A domain registers nobody.
    let reg = request(
        "REGISTER",
        &format!("sip:{DOMAIN}"),
        link,
        (&bob_uri(), &bob_uri(), None),
        "reg-p11",
        1,
        &[],
    );
    s.deliver_on(link, &reg, Transport::Stream);
    assert_eq!(statuses(&mut s, link), [403]);
    assert!(s.take_to(peer(2)).is_empty(), "nothing went on");
}

#[test]
fn a_link_from_a_domain_we_do_not_peer_with_is_refused() {
    let mut cfg = peering();
    cfg.static_route = Some(peer(2));
    let mut s = Sim::new(&cfg);
    let stranger = peer(8);
    connect_as(&mut s, stranger, "c.example");
    s.deliver_on(
        stranger,
        &invite(
            &format!("sip:{ALICE}@{DOMAIN}"),
            stranger,
            "sip:+15550700001@c.example",
            "call-p12",
        ),
        Transport::Stream,
    );
    let got = s.take_to(stranger);
    assert_eq!(sim::status(got.last().unwrap()), 403);
    assert!(String::from_utf8_lossy(got.last().unwrap()).contains("not a peer domain"));
    assert!(s.take_to(peer(2)).is_empty());
}

#[test]
fn a_peer_named_like_our_own_domain_is_a_configuration_error() {
    let mut cfg = peering();
    cfg.peers
        .insert(DOMAIN.into(), PeerConfig::new("192.0.2.10:5061"));
    let metrics = std::sync::Arc::new(chaincall_sipd::metrics::Metrics::default());
    let err = chaincall_sipd::core::Core::new(&cfg, [1; 32], metrics, std::time::Instant::now())
        .unwrap_err();
    assert!(err.to_string().contains("own domain"), "{err}");
}
