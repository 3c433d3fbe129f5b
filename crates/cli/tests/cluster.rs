//! Issue 18's "Done when": two `chaincall sipd serve` processes serving one domain (the same key
//! file, `[cluster]` links keyed by a shared secret) on a throwaway PostgreSQL `location`, on a
//! real anvil keystore with the wallet server, and onboarded phones as `chaincall phone`
//! processes. alice is on node 1, bob on node 2: calls both ways with MIKEY and SRTP, every packet
//! there; node 1 SIGKILLed: alice's `phone listen` fails over to node 2, registers there and is
//! called again within 10 s; node 1 restarted: the rows it wrote are still in the table.
//! And under load: two nodes on PostgreSQL alone, 60 phones re-registering over TCP, node 1
//! SIGKILLed mid-load: no row lost or duplicated, node 1's phones on node 2 within 10 s and
//! reached there. And a NAT'd UDP phone on node 1 called through node 2 gets the INVITE from
//! node 1's socket.
//! Without anvil or PostgreSQL a test skips saying why, unless `CHAINCALL_REQUIRE_PEERS=1`.

mod common;

use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use chaincall_sipd::location::postgres::PgLocation;
use chaincall_sipd::location::{LocationStore, StoredBinding};
use chaincall_testkit::postgres::Postgres;
use common::*;
use rand_core::{OsRng, RngCore};

/// Node `n`'s config (`sipd-N.toml` in `dir`): `dir`'s sipd.toml (the network's: its domain
/// key, digest auth on the shared subscriber table) listening on `listen[n]` (`tls:IP:PORT`,
/// `tcp:IP:PORT`), with the PostgreSQL location and the `[cluster]` section naming the other
/// node.
fn write_node(dir: &Path, n: usize, listen: &[String; 2], link: [u16; 2], database: &str) {
    let base = std::fs::read_to_string(dir.join("sipd.toml")).unwrap();
    let first = base.lines().next().unwrap();
    assert!(first.starts_with("listen = "), "{first}");
    let other = 1 - n;
    let text = base.replacen(first, &format!("listen = [\"{}\"]", listen[n]), 1)
        + &format!(
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

/// Two nodes of `dir`'s sipd.toml on `pg`, each listening on a port of its own over
/// `transport` (`tls`, `tcp`), with a new cluster secret: those ports and the running nodes.
fn start_nodes(dir: &Path, pg: &Postgres, transport: &str) -> ([u16; 2], Service, Service) {
    let mut secret = [0u8; 32];
    OsRng.fill_bytes(&mut secret);
    write_private(&dir.join("cluster.secret"), &hex::encode(secret));
    let free = chaincall_testkit::free_udp_tcp_port;
    let (ports, link) = ([free(), free()], [free(), free()]);
    let listen = ports.map(|p| format!("{transport}:127.0.0.1:{p}"));
    for n in 0..2 {
        write_node(dir, n, &listen, link, &pg.url("postgres"));
    }
    // One after the other: the first creates the table.
    let node_1 = node(dir, 1);
    (ports, node_1, node(dir, 2))
}

/// A folder with a sipd.toml for tests that need no chain: no digest (anyone registers), no
/// REGISTER rate limit (every test phone is on 127.0.0.1).
fn plain_sipd() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("sipd.toml"),
        format!(
            "listen = []\ndomain = \"{SIP_DOMAIN}\"\nmetrics_listen = \"\"\n\
             [auth]\nmode = \"none\"\n[limits]\nregister_rate = 0.0\n"
        ),
    )
    .unwrap();
    dir
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
    stored(pg, &[number])
        .remove(0)
        .into_iter()
        .filter(|r| r.node_id == node)
        .map(|r| (r.contact, r.expires_unix, r.cseq))
        .collect()
}

/// Every live `location` row of each of `numbers`, read from the table over one connection.
fn stored(pg: &Postgres, numbers: &[&str]) -> Vec<Vec<StoredBinding>> {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    rt.block_on(async {
        let location = PgLocation::connect(&pg.url("postgres")).await.unwrap();
        let mut all = Vec::new();
        for number in numbers {
            all.push(location.bindings(number, SIP_DOMAIN, now).await.unwrap());
        }
        all
    })
}

#[test]
fn two_sipd_nodes_carry_calls_both_ways_and_a_phone_fails_over_when_its_node_dies() {
    let Some(pg) = Postgres::start() else { return };
    let Some(net) = network() else { return };
    let d = net.dir.path();
    let (tls, mut node_1, _node_2) = start_nodes(d, &pg, "tls");

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

/// Phones in the load test, every other one on node 1.
const LOAD_PHONES: usize = 60;

/// What one load phone has seen, shared with the test.
#[derive(Debug, Default, Clone)]
struct LoadState {
    /// The node (0 or 1) it talks to now.
    node: usize,
    /// The CSeq of the last REGISTER it sent.
    sent: u32,
    /// The CSeq of the last REGISTER answered 200, and the node that answered it.
    ok: Option<(u32, usize)>,
    /// 200s received, in all.
    oks: usize,
    /// 200s received from node 2 after it left node 1.
    oks_after_failover: usize,
    /// When its connection to node 1 dropped, and when node 2 first answered 200 after that.
    failover: Option<(Instant, Option<Instant>)>,
    /// Answers other than 200 (none expected).
    refused: Vec<String>,
    /// Requests for the phone it answered (the test's calls).
    requests: usize,
}

/// The load phones' states, with a signal for each change.
type Shared = std::sync::Arc<(std::sync::Mutex<Vec<LoadState>>, std::sync::Condvar)>;

/// Phone `i`'s number, and its Contact (the same on either node: a phone with one stable
/// Contact, as an RFC 5626 instance has).
fn load_phone(i: usize) -> (String, String) {
    let number = format!("+1555020{i:04}");
    let contact = format!("<sip:{number}@127.0.0.1:{};transport=tcp>", 20_000 + i);
    (number, contact)
}

/// Reads one SIP message from `r` (leading CRLF keep-alives skipped): its start line and
/// header lines (the body is read and dropped).
fn read_message(r: &mut impl std::io::BufRead) -> std::io::Result<(String, Vec<String>)> {
    let (mut start, mut headers) = (String::new(), Vec::new());
    let mut length = 0;
    loop {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let line = line.trim_end();
        if line.is_empty() {
            if start.is_empty() {
                continue;
            }
            break;
        }
        if start.is_empty() {
            start = line.to_owned();
            continue;
        }
        if let Some((name, value)) = line.split_once(':')
            && (name.eq_ignore_ascii_case("content-length") || name == "l")
        {
            length = value.trim().parse().unwrap_or(0);
        }
        headers.push(line.to_owned());
    }
    let mut body = vec![0; length];
    r.read_exact(&mut body)?;
    Ok((start, headers))
}

/// Reads until a response arrives on a phone's connection and returns its status line; a
/// request that comes first (a call for the phone) is answered 200 on `w`, `answering` called
/// just before.
fn await_response(
    r: &mut impl std::io::BufRead,
    w: &mut impl std::io::Write,
    answering: &dyn Fn(),
) -> std::io::Result<String> {
    loop {
        let (start, headers) = read_message(r)?;
        if start.starts_with("SIP/2.0 ") {
            return Ok(start);
        }
        // RFC 3261 §8.2.6.2: the response copies Via, From, To (tagged), Call-ID and CSeq.
        let mut ok = String::from("SIP/2.0 200 OK\r\n");
        for h in &headers {
            let name = h
                .split(':')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            if ["via", "v", "from", "f", "call-id", "i", "cseq"].contains(&name.as_str()) {
                ok.push_str(&format!("{h}\r\n"));
            } else if name == "to" || name == "t" {
                ok.push_str(&format!("{h};tag=load\r\n"));
            }
        }
        ok.push_str("Content-Length: 0\r\n\r\n");
        answering();
        w.write_all(ok.as_bytes())?;
    }
}

/// Load phone `i`: registers over TCP with node `ports[state.node]` again and again (one Call-ID,
/// CSeq one up each time, RFC 3261 §10.2.4) until `stop`; when its connection drops it goes to
/// the other node and goes on there, as a chaincall phone fails over.
fn run_load_phone(i: usize, ports: [u16; 2], shared: Shared, stop: &std::sync::atomic::AtomicBool) {
    use std::io::Write;
    use std::sync::atomic::Ordering;
    let (number, contact) = load_phone(i);
    let (lock, signal) = &*shared;
    let update = |f: &dyn Fn(&mut LoadState)| {
        f(&mut lock.lock().unwrap()[i]);
        signal.notify_all();
    };
    while !stop.load(Ordering::Relaxed) {
        let node = lock.lock().unwrap()[i].node;
        let Ok(conn) = std::net::TcpStream::connect(("127.0.0.1", ports[node])) else {
            // Nobody there (a dead node): the other one, after a pause as a phone's back-off.
            std::thread::sleep(Duration::from_millis(100));
            update(&|s| s.node = 1 - s.node);
            continue;
        };
        conn.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let local = conn.local_addr().unwrap();
        let mut reader = std::io::BufReader::new(conn.try_clone().unwrap());
        let mut conn = conn;
        while !stop.load(Ordering::Relaxed) {
            let cseq = {
                let mut all = lock.lock().unwrap();
                all[i].sent += 1;
                all[i].sent
            };
            let register = format!(
                "REGISTER sip:{SIP_DOMAIN} SIP/2.0\r\n\
                 Via: SIP/2.0/TCP {local};branch=z9hG4bK-load-{i}-{cseq}\r\n\
                 Max-Forwards: 70\r\nFrom: <sip:{number}@{SIP_DOMAIN}>;tag=load-{i}\r\n\
                 To: <sip:{number}@{SIP_DOMAIN}>\r\nCall-ID: load-{i}\r\n\
                 CSeq: {cseq} REGISTER\r\nContact: {contact}\r\nExpires: 600\r\n\
                 Content-Length: 0\r\n\r\n"
            );
            let answering = || update(&|s| s.requests += 1);
            let answered = conn
                .write_all(register.as_bytes())
                .and_then(|()| await_response(&mut reader, &mut conn, &answering));
            match answered {
                Ok(status) if status.starts_with("SIP/2.0 200") => update(&|s| {
                    s.ok = Some((cseq, node));
                    s.oks += 1;
                    if let Some((_, back)) = &mut s.failover {
                        back.get_or_insert_with(Instant::now);
                        s.oks_after_failover += 1;
                    }
                }),
                Ok(status) => update(&|s| s.refused.push(format!("CSeq {cseq}: {status}"))),
                Err(_) => {
                    update(&|s| {
                        if s.node == 0 && s.failover.is_none() {
                            s.failover = Some((Instant::now(), None));
                        }
                        s.node = 1 - s.node;
                    });
                    break;
                }
            }
            // A phone's pace: a REGISTER every 5 ms or so, more than two debug-build nodes
            // answer, so a REGISTER is under way on every node at any moment.
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// Sets its flag when dropped.
struct StopOnDrop<'a>(&'a std::sync::atomic::AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Waits (at most `timeout`) until `done` holds of the load phones' states.
fn wait_until(shared: &Shared, timeout: Duration, what: &str, done: impl Fn(&[LoadState]) -> bool) {
    let (lock, signal) = &**shared;
    let (all, waited) = signal
        .wait_timeout_while(lock.lock().unwrap(), timeout, |all| !done(all))
        .unwrap();
    assert!(!waited.timed_out(), "{what} within {timeout:?}: {all:#?}");
}

/// Issue 18, "a node SIGKILLed under load: no registration row lost or duplicated; phones fail
/// over": 60 phones re-register over TCP as fast as two debug-build nodes on one PostgreSQL
/// answer, half on each node; node 1 is SIGKILLed in the middle of it. Every REGISTER a phone
/// got 200 for is in the table (at that CSeq or a later one), each phone has exactly one row for
/// its one Contact, and node 1's phones register again on node 2 within 10 s of the kill (their
/// row then names node 2) and are reached there (each answers a request sent to node 2). Needs PostgreSQL only (no chain: digest and TLS-PSK are not what is
/// tested; the REGISTER rate limit is off, every phone being on 127.0.0.1).
#[test]
fn a_node_killed_under_register_load_loses_no_row_and_its_phones_fail_over() {
    use std::io::Write;
    let Some(pg) = Postgres::start() else { return };
    let dir = plain_sipd();
    let (ports, mut node_1, _node_2) = start_nodes(dir.path(), &pg, "tcp");

    let shared: Shared = Default::default();
    *shared.0.lock().unwrap() = (0..LOAD_PHONES)
        .map(|i| LoadState {
            node: i % 2,
            ..Default::default()
        })
        .collect();
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        for i in 0..LOAD_PHONES {
            let (shared, stop) = (shared.clone(), &stop);
            scope.spawn(move || run_load_phone(i, ports, shared, stop));
        }
        // The phones stop when this ends, a failed assertion included (the scope joins them).
        let _stop = StopOnDrop(&stop);
        // Under way: every phone registered a few times. Then node 1 dies mid-load.
        let started = Instant::now();
        wait_until(
            &shared,
            Duration::from_secs(30),
            "20 REGISTERs each",
            |all| all.iter().all(|s| s.oks >= 20),
        );
        let before: Vec<LoadState> = shared.0.lock().unwrap().clone();
        let pending = before
            .iter()
            .step_by(2)
            .filter(|s| s.ok.is_some_and(|(c, _)| c < s.sent))
            .count();
        eprintln!(
            "{} REGISTERs answered 200 in {:?} before the kill; {pending} of node 1's phones \
             waiting for an answer just before it",
            before.iter().map(|s| s.oks).sum::<usize>(),
            started.elapsed()
        );
        node_1.child.kill().unwrap();
        node_1.child.wait().unwrap();
        let killed = Instant::now();
        // Nothing node 1 answered 200 is lost with it.
        let at_kill: Vec<LoadState> = shared.0.lock().unwrap().clone();
        let numbers: Vec<String> = (0..LOAD_PHONES).map(|i| load_phone(i).0).collect();
        let refs: Vec<&str> = numbers.iter().map(String::as_str).collect();
        for (i, rows) in stored(&pg, &refs).iter().enumerate() {
            let (cseq, _) = at_kill[i].ok.unwrap();
            assert!(
                rows.len() == 1 && rows[0].cseq >= cseq,
                "phone {i} had 200 for CSeq {cseq}: {rows:#?}"
            );
        }
        // Node 1's phones are on node 2 within 10 s, and go on registering there.
        wait_until(
            &shared,
            Duration::from_secs(10),
            "node 1's phones on node 2",
            |all| all.iter().step_by(2).all(|s| s.oks_after_failover >= 1),
        );
        let mut slowest = Duration::ZERO;
        for (i, s) in shared.0.lock().unwrap().iter().enumerate().step_by(2) {
            let (lost, back) = s.failover.unwrap();
            let back = back.unwrap();
            assert!(lost >= killed - Duration::from_secs(1), "phone {i}: {s:?}");
            assert!(back - killed < Duration::from_secs(10), "phone {i}: {s:?}");
            slowest = slowest.max(back - killed);
        }
        eprintln!("node 1's phones registered on node 2 at most {slowest:?} after the kill");
        // And they are reachable there: a request for each, sent to node 2, is answered by the
        // phone down its new connection.
        let mut caller = std::net::TcpStream::connect(("127.0.0.1", ports[1])).unwrap();
        caller
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut from_node = std::io::BufReader::new(caller.try_clone().unwrap());
        let at = caller.local_addr().unwrap();
        for i in (0..LOAD_PHONES).step_by(2) {
            let number = load_phone(i).0;
            let options = format!(
                "OPTIONS sip:{number}@{SIP_DOMAIN} SIP/2.0\r\n\
                 Via: SIP/2.0/TCP {at};branch=z9hG4bK-probe-{i}\r\nMax-Forwards: 70\r\n\
                 From: <sip:probe@{SIP_DOMAIN}>;tag=probe\r\nTo: <sip:{number}@{SIP_DOMAIN}>\r\n\
                 Call-ID: probe-{i}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
            );
            caller.write_all(options.as_bytes()).unwrap();
            let (status, _) = read_message(&mut from_node).unwrap();
            assert!(status.starts_with("SIP/2.0 200"), "phone {i}: {status}");
        }
        for (i, s) in shared.0.lock().unwrap().iter().enumerate().step_by(2) {
            assert_eq!(s.requests, 1, "phone {i} answered its call: {s:?}");
        }
        wait_until(
            &shared,
            Duration::from_secs(30),
            "10 more REGISTERs",
            |all| {
                all.iter().enumerate().all(|(i, s)| {
                    s.oks >= at_kill[i].oks + 10 && (i % 2 == 1 || s.oks_after_failover >= 10)
                })
            },
        );
    });

    // Every phone stopped after an answer: its one row holds exactly the CSeq of its last 200,
    // written by node 2 (node 1's phones' rows moved there with them).
    let states = shared.0.lock().unwrap().clone();
    let numbers: Vec<String> = (0..LOAD_PHONES).map(|i| load_phone(i).0).collect();
    let refs: Vec<&str> = numbers.iter().map(String::as_str).collect();
    let mut total = 0;
    for (i, rows) in stored(&pg, &refs).iter().enumerate() {
        let s = &states[i];
        assert!(s.refused.is_empty(), "phone {i}: {s:?}");
        let (cseq, answered_by) = s.ok.unwrap();
        assert_eq!((cseq, answered_by), (s.sent, 1), "phone {i}: {s:?}");
        assert_eq!(
            rows.len(),
            1,
            "phone {i}: one row for its one Contact: {rows:#?}"
        );
        let r = &rows[0];
        let want = (load_phone(i).1, format!("load-{i}"), cseq, "node-2");
        let got = (
            format!("<{}>", r.contact),
            r.call_id.clone(),
            r.cseq,
            r.node_id.as_str(),
        );
        assert_eq!(got, (want.0.clone(), want.1, want.2, want.3), "phone {i}");
        total += s.oks;
    }
    eprintln!("{total} REGISTERs answered 200 by two nodes, node 1 killed halfway");
}

/// Issue 18's NAT gap over real sockets: carol registers over UDP on node 1 from behind a NAT
/// (her Contact names a private address; a plain UDP socket plays her NAT's public side), and a
/// call for her reaches node 2. A restricted NAT admits only the node carol sent to, so the
/// INVITE must come from node 1's socket: node 2 forwards it over the node link.
#[test]
fn a_nat_udp_phone_on_node_1_gets_a_call_placed_on_node_2_from_node_1() {
    use std::net::UdpSocket;
    let Some(pg) = Postgres::start() else { return };
    let dir = plain_sipd();
    let (ports, mut node_1, _node_2) = start_nodes(dir.path(), &pg, "udp");
    // Node 1 started alone; its link to node 2 comes up on its back-off.
    node_1.wait_for("node link up", Duration::from_secs(15));
    let node_addr = ports.map(|p| std::net::SocketAddr::from(([127, 0, 0, 1], p)));
    let bind = || {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s
    };
    // The next datagram on `s` that starts with `start`, and where it came from.
    let next = |s: &UdpSocket, start: &str| loop {
        let mut buf = [0u8; 4096];
        let (n, from) = s.recv_from(&mut buf).expect("a datagram within 10 s");
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        if text.starts_with(start) {
            return (text, from);
        }
    };
    let carol = bind();
    let register = format!(
        "REGISTER sip:{SIP_DOMAIN} SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.5:5060;rport;branch=z9hG4bK-r1\r\n\
         Max-Forwards: 70\r\nFrom: <sip:carol@{SIP_DOMAIN}>;tag=c1\r\nTo: <sip:carol@{SIP_DOMAIN}>\r\n\
         Call-ID: nat-carol\r\nCSeq: 1 REGISTER\r\nContact: <sip:carol@10.0.0.5:5060>\r\n\
         Expires: 600\r\nContent-Length: 0\r\n\r\n"
    );
    carol.send_to(register.as_bytes(), node_addr[0]).unwrap();
    let (ok, _) = next(&carol, "SIP/2.0 ");
    assert!(ok.starts_with("SIP/2.0 200"), "{ok}");

    let bob = bind();
    let invite = format!(
        "INVITE sip:carol@{SIP_DOMAIN} SIP/2.0\r\nVia: SIP/2.0/UDP {};branch=z9hG4bK-i1\r\n\
         Max-Forwards: 70\r\nFrom: <sip:bob@{SIP_DOMAIN}>;tag=b1\r\nTo: <sip:carol@{SIP_DOMAIN}>\r\n\
         Call-ID: nat-call\r\nCSeq: 1 INVITE\r\nContact: <sip:bob@{}>\r\nContent-Length: 0\r\n\r\n",
        bob.local_addr().unwrap(),
        bob.local_addr().unwrap(),
    );
    bob.send_to(invite.as_bytes(), node_addr[1]).unwrap();
    let (at_carol, from) = next(&carol, "INVITE ");
    assert_eq!(
        from, node_addr[0],
        "the INVITE leaves node 1's socket:\n{at_carol}"
    );
    assert!(
        at_carol.starts_with("INVITE sip:carol@10.0.0.5:5060 "),
        "{at_carol}"
    );
}
