//! Issue 18's "Done when": two `chaincall sipd serve` processes serving one domain (the same key
//! file, `[cluster]` links keyed by a shared secret) on a throwaway PostgreSQL `location`, on a
//! real anvil keystore with the wallet server, and onboarded phones as `chaincall phone`
//! processes. alice is on node 1, bob on node 2: calls both ways with MIKEY and SRTP, every packet
//! there; node 1 SIGKILLed: alice's `phone listen` fails over to node 2, registers there and is
//! called again within 10 s; node 1 restarted: the rows it wrote are still in the table.
//! Without anvil or PostgreSQL the test skips saying why, unless `CHAINCALL_REQUIRE_PEERS=1`.

mod common;

use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use chaincall_sipd::location::LocationStore;
use chaincall_sipd::location::postgres::PgLocation;
use chaincall_testkit::postgres::Postgres;
use common::*;
use rand_core::{OsRng, RngCore};

/// Node `n`'s config (`sipd-N.toml` in `dir`): the network's sipd.toml (its domain key, digest
/// auth on the shared subscriber table) with its own TLS-PSK port, the PostgreSQL location and
/// the `[cluster]` section naming the other node.
fn write_node(dir: &Path, n: usize, tls: [u16; 2], link: [u16; 2], database: &str) {
    let base = std::fs::read_to_string(dir.join("sipd.toml")).unwrap();
    let listen = base.lines().next().unwrap();
    assert!(listen.starts_with("listen = "), "{listen}");
    let other = 1 - n;
    let text = base.replacen(
        listen,
        &format!("listen = [\"tls:127.0.0.1:{}\"]", tls[n]),
        1,
    ) + &format!(
        "\n[location]\nbackend = \"postgres\"\ndatabase = \"{database}\"\nnode_id = \"node-{}\"\n\
         \n[cluster]\nlisten = \"127.0.0.1:{}\"\nsecret_file = \"cluster.secret\"\n\
         nodes = {{ \"node-{}\" = \"127.0.0.1:{}\" }}\n",
        n + 1,
        link[n],
        other + 1,
        link[other]
    );
    std::fs::write(dir.join(format!("sipd-{}.toml", n + 1)), text).unwrap();
}

/// `chaincall sipd serve` for node `n` (1 or 2), once it runs.
fn node(dir: &Path, n: usize) -> Service {
    let config = format!("sipd-{n}.toml");
    let mut s = Service::spawn(
        chaincall()
            .env("RUST_LOG", "info")
            .current_dir(dir)
            .args(["sipd", "serve", "--config", &config]),
    );
    s.wait_for("sipd running", Duration::from_secs(60));
    s
}

/// Points the phone at `home` to the nodes' TLS-PSK listeners, in this order.
fn use_nodes(home: &Path, first: u16, then: u16, was: u16) {
    let path = home.join("phone.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let one = format!("addr = \"127.0.0.1:{was}\"");
    assert!(text.contains(&one), "{text}");
    let list = format!("addr = [\"127.0.0.1:{first}\", \"127.0.0.1:{then}\"]");
    std::fs::write(&path, text.replace(&one, &list)).unwrap();
}

/// The JSON line on stdout describing a call.
fn report(lines: &[String]) -> serde_json::Value {
    let line = lines
        .iter()
        .rfind(|l| l.contains("\"direction\""))
        .unwrap_or_else(|| panic!("a call report in {lines:#?}"));
    serde_json::from_str(line).unwrap()
}

/// `caller` calls `callee` for one second; its report and the callee's, each checked: MIKEY and
/// SRTP, the peer verified, every one of the 50 packets of the second received and none refused.
fn call(caller: &Path, callee: &mut Service, number: &str) {
    let out = ok(phone(caller).args(["call", number, "--seconds", "1", "--json"]));
    let a = report(&out.lines().map(str::to_owned).collect::<Vec<_>>());
    assert_eq!(a["verified_peer"], number, "{a}");
    let b = report(&callee.wait_for("\"direction\":\"incoming\"", Duration::from_secs(30)));
    for (r, side) in [(&a, "caller"), (&b, "callee")] {
        assert_eq!(r["key_mode"], "mikey-pke", "{side}: {r}");
        assert_eq!(r["srtp_packets_rejected"], 0, "{side}: {r}");
    }
    assert_eq!(b["srtp_packets_received"], 50, "{b}");
}

/// The `location` rows of `number` that `node` holds, as (Contact, expiry, CSeq).
fn rows_of(pg: &Postgres, number: &str, node: &str) -> Vec<(String, u64, u32)> {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    rt.block_on(async {
        let location = PgLocation::connect(&pg.url("postgres")).await.unwrap();
        let rows = location.bindings(number, SIP_DOMAIN, now).await.unwrap();
        rows.into_iter()
            .filter(|r| r.node_id == node)
            .map(|r| (r.contact, r.expires_unix, r.cseq))
            .collect()
    })
}

#[test]
fn two_sipd_nodes_carry_calls_both_ways_and_a_phone_fails_over_when_its_node_dies() {
    let Some(pg) = Postgres::start() else { return };
    let Some(net) = network() else { return };
    let d = net.dir.path();
    let mut secret = [0u8; 32];
    OsRng.fill_bytes(&mut secret);
    write_private(&d.join("cluster.secret"), &hex::encode(secret));
    let free = chaincall_testkit::free_tcp_port;
    let (tls, link) = ([free(), free()], [free(), free()]);
    for n in 0..2 {
        write_node(d, n, tls, link, &pg.url("postgres"));
    }
    // One after the other: the first creates the table.
    let mut node_1 = node(d, 1);
    let _node_2 = node(d, 2);

    let alice = net.onboarded_phone("alice", ALICE);
    let bob = net.onboarded_phone("bob", BOB);
    use_nodes(&alice, tls[0], tls[1], net.sipd_port);
    use_nodes(&bob, tls[1], tls[0], net.sipd_port);

    // bob listens on node 2; alice calls him through node 1.
    let mut bob_listens = listening(&bob, &["--count", "1"], "listening");
    assert_eq!(rows_of(&pg, BOB, "node-2").len(), 1, "bob is on node 2");
    call(&alice, &mut bob_listens, BOB);
    bob_listens.finish(Duration::from_secs(30));

    // alice listens on node 1; bob calls her through node 2.
    let mut alice_listens = listening(&alice, &["--count", "2"], "listening");
    let on_node_1 = rows_of(&pg, ALICE, "node-1");
    assert_eq!(on_node_1.len(), 1, "alice is on node 1");
    call(&bob, &mut alice_listens, ALICE);

    // Node 1 dies: alice's phone reconnects to node 2 and registers there by itself.
    node_1.child.kill().unwrap();
    node_1.child.wait().unwrap();
    let killed = Instant::now();
    alice_listens.wait_for("\"signalling\":\"lost\"", Duration::from_secs(10));
    let left = Duration::from_secs(10).saturating_sub(killed.elapsed());
    alice_listens.wait_for("\"signalling\":\"registered\"", left);
    assert_eq!(rows_of(&pg, ALICE, "node-2").len(), 1, "alice is on node 2");
    call(&bob, &mut alice_listens, ALICE);
    alice_listens.finish(Duration::from_secs(30));

    // Node 1 comes back: what it wrote is still there, untouched.
    drop(node_1);
    let _node_1 = node(d, 1);
    assert_eq!(rows_of(&pg, ALICE, "node-1"), on_node_1);
}
