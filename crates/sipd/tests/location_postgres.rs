//! sipd with `[location] backend = "postgres"` end to end, over real sockets: the server loop runs
//! the core's location reads and writes beside itself. A phone registered with one server is
//! callable through a new server on the same database (a restart); a database lost mid-run
//! answers REGISTER 503 with Retry-After while a known phone stays callable, and sipd recovers
//! when the database returns; a database that is unreachable at start stops sipd with an error
//! naming it, its password redacted.

mod common;

use chaincall_sip::header::Method;
use chaincall_sipd::config::LocationBackend;
use chaincall_sipd::{Config, Server};
use chaincall_testkit::postgres::Postgres;
use common::{Ua, base_config, get, start, status_of};

/// A server configuration keeping registrations in `url`, re-reading them on every call (so
/// each call exercises the database or, while it is down, the cache).
fn on_postgres(url: String) -> Config {
    let mut cfg = base_config();
    cfg.location.backend = LocationBackend::Postgres;
    cfg.location.database = url;
    cfg.location.cache = std::time::Duration::ZERO;
    // A database that is down answers after the pool gives up; the loop answers first.
    cfg.auth.lookup_timeout = std::time::Duration::from_millis(500);
    cfg.metrics_listen = Some(([127, 0, 0, 1], 0).into());
    cfg
}

/// Registers `ua` as `user` (Contact: its own address) with the server at `server`; the status.
async fn register(ua: &Ua, server: std::net::SocketAddr, user: &str, cseq: u32) -> Vec<u8> {
    let contact = format!("Contact: <sip:{user}@{}>\n", ua.addr);
    ua.ask_register(
        server,
        user,
        &format!("reg-{user}"),
        cseq,
        &contact,
        "Expires: 600\n",
    )
    .await
}

/// `caller` INVITEs `user` through `server`; true when `callee` gets the INVITE.
async fn reaches(
    server: std::net::SocketAddr,
    caller: &Ua,
    callee: &Ua,
    user: &str,
    n: u32,
) -> bool {
    let invite = format!(
        "INVITE sip:{user}@{server} SIP/2.0\n\
Via: SIP/2.0/UDP {a};branch=z9hG4bKpg{n}\n\
Max-Forwards: 70\n\
From: <sip:caller@{ip}>;tag=c{n}\n\
To: <sip:{user}@{ip}>\n\
Call-ID: pg-call-{n}\n\
CSeq: 1 INVITE\n\
Contact: <sip:caller@{a}>\n\
Content-Length: 0\n\n",
        ip = server.ip(),
        a = caller.addr
    );
    caller.send(server, &invite).await;
    // The callee gets it, or the caller a final answer: whichever comes first decides (earlier
    // calls' retransmissions do not count).
    let call_id = format!("pg-call-{n}");
    let this_call = |m: &chaincall_sip::message::Message<'_>| m.call_id() == Ok(call_id.as_str());
    tokio::select! {
        _ = callee.expect(3000, |m| this_call(m) && m.method() == Some(Method::Invite)) => true,
        _ = caller.expect(3000, |m| this_call(m) && m.status().is_some_and(|s| s >= 300)) => false,
    }
}

#[tokio::test]
async fn registrations_survive_a_restart_and_a_database_outage() {
    let Some(mut pg) = Postgres::start() else {
        return;
    };
    let cfg = on_postgres(pg.url("postgres"));
    let (phone, caller) = (Ua::bind("127.0.0.1").await, Ua::bind("127.0.0.1").await);

    let first = start(cfg.clone()).await;
    assert_eq!(
        status_of(&register(&phone, first.udp, "alice", 1).await),
        200
    );
    first.stop().await;

    // A new sipd (new sockets, nothing in memory) on the same database.
    let second = start(cfg.clone()).await;
    assert!(reaches(second.udp, &caller, &phone, "alice", 1).await);

    // The database goes away: REGISTERs get 503 with Retry-After, alice (known) stays callable.
    pg.stop();
    let bob = Ua::bind("127.0.0.1").await;
    let r = register(&bob, second.udp, "bob", 1).await;
    assert_eq!(status_of(&r), 503, "{}", String::from_utf8_lossy(&r));
    assert!(
        String::from_utf8_lossy(&r).contains("\r\nRetry-After: 5\r\n"),
        "{}",
        String::from_utf8_lossy(&r)
    );
    assert!(reaches(second.udp, &caller, &phone, "alice", 2).await);
    // Not ready, saying why (never the URL: it may hold the password).
    let ready = second.metrics_addr.expect("metrics_listen is set");
    let (head, body) = get(ready, "/readyz").await;
    assert!(head.starts_with("HTTP/1.1 503"), "{head}\n{body}");
    assert_eq!(body, "location: the location database does not answer\n");

    // It comes back: no restart of sipd needed.
    pg.restart();
    assert_eq!(status_of(&register(&bob, second.udp, "bob", 2).await), 200);
    assert!(reaches(second.udp, &caller, &bob, "bob", 3).await);
    assert!(get(ready, "/readyz").await.0.starts_with("HTTP/1.1 200"));
    second.stop().await;
}

#[tokio::test]
async fn an_unreachable_database_at_start_is_named_without_its_password() {
    let port = chaincall_testkit::free_tcp_port();
    let cfg = on_postgres(format!("postgres://sipd:hunter2@127.0.0.1:{port}/sip"));
    let Err(e) = Server::bind(cfg).await else {
        panic!("sipd started without its database");
    };
    let shown = e.to_string();
    assert!(
        shown.contains(&format!("postgres://sipd:***@127.0.0.1:{port}/sip")),
        "{shown}"
    );
    assert!(!format!("{e:?}").contains("hunter2"), "{e:?}");
}
