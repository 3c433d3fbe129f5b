//! The namespace test network: NAT, isolation, loss and teardown, checked with real datagrams.

use std::collections::BTreeSet;
use std::net::{SocketAddr, UdpSocket};
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

use chaincall_testkit::netns::{Nat, TestNet};

/// How long a receiver waits before it decides nothing more is coming: an absence check, never a
/// measured duration.
const QUIET: Duration = Duration::from_millis(1500);

fn bind(net: &TestNet, node: &str, port: u16) -> UdpSocket {
    let socket = net.run(node, || UdpSocket::bind(("0.0.0.0", port)).unwrap());
    socket.set_read_timeout(Some(QUIET)).unwrap();
    socket
}

fn recv(socket: &UdpSocket) -> Option<(Vec<u8>, SocketAddr)> {
    let mut buf = [0u8; 2048];
    match socket.recv_from(&mut buf) {
        Ok((n, from)) => Some((buf[..n].to_vec(), from)),
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            None
        }
        Err(e) => panic!("recv: {e}"),
    }
}

fn netns_list() -> String {
    String::from_utf8(chaincall_testkit::run_ok(
        Command::new("ip").args(["netns", "list"]),
        "ip netns list",
    ))
    .unwrap()
}

#[test]
fn a_datagram_from_home_reaches_the_public_host_from_the_router_and_the_reply_comes_back() {
    let Some(net) = TestNet::builder()
        .public_host("sipd")
        .home("a", Nat::PortPreserving, &["phone"])
        .build()
    else {
        return;
    };
    let server = bind(&net, "sipd", 5060);
    let phone = bind(&net, "phone", 0);
    let phone_port = phone.local_addr().unwrap().port();
    phone
        .send_to(b"REGISTER", (net.addr("sipd"), 5060))
        .unwrap();

    let (data, seen) = recv(&server).expect("the public host received the datagram");
    assert_eq!(data, b"REGISTER");
    assert_eq!(
        seen.ip(),
        net.public_addr("phone"),
        "the router's address, not the phone's"
    );
    assert_eq!(net.public_addr("phone"), net.addr("a"));
    assert_ne!(seen.ip(), net.addr("phone"));
    assert!(net.addr("phone").is_private() && !net.addr("sipd").is_private());
    assert_eq!(
        seen.port(),
        phone_port,
        "port-preserving NAT keeps the source port"
    );

    server.send_to(b"200 OK", seen).unwrap();
    let (reply, from) = recv(&phone).expect("the reply came back through the NAT");
    assert_eq!(reply, b"200 OK");
    assert_eq!(from, SocketAddr::from((net.addr("sipd"), 5060)));

    // A process in a namespace sees the same network.
    let out = chaincall_testkit::run_ok(
        net.command("phone", "ip")
            .args(["-4", "-o", "addr", "show", "dev", "eth0"]),
        "ip addr in the phone's namespace",
    );
    let out = String::from_utf8(out).unwrap();
    assert!(out.contains(&net.addr("phone").to_string()), "{out}");
}

/// The public ports at which `phone` (one socket) appears to four destinations on two hosts.
fn mapped_ports(nat: Nat) -> Option<(u16, BTreeSet<u16>)> {
    let net = TestNet::builder()
        .public_host("p1")
        .public_host("p2")
        .home("h", nat, &["phone"])
        .build()?;
    let phone = bind(&net, "phone", 0);
    let local = phone.local_addr().unwrap().port();
    let mut ports = BTreeSet::new();
    for host in ["p1", "p2"] {
        for port in [4000, 4001] {
            let server = bind(&net, host, port);
            phone.send_to(b"probe", (net.addr(host), port)).unwrap();
            let (_, seen) = recv(&server).expect("probe arrived");
            assert_eq!(seen.ip(), net.addr("h"));
            ports.insert(seen.port());
        }
    }
    Some((local, ports))
}

#[test]
fn symmetric_nat_maps_each_destination_to_another_port_port_preserving_to_one() {
    let Some((local, ports)) = mapped_ports(Nat::PortPreserving) else {
        return;
    };
    assert_eq!(
        ports,
        BTreeSet::from([local]),
        "one mapping, the local port"
    );
    let Some((_, ports)) = mapped_ports(Nat::Symmetric) else {
        return;
    };
    // Random ports for four flows: all four equal would be a 1 in 2^48 coincidence.
    assert!(ports.len() > 1, "symmetric NAT reused one port: {ports:?}");
}

#[test]
fn a_home_cannot_reach_another_homes_private_address() {
    let Some(net) = TestNet::builder()
        .public_host("pub")
        .home("a", Nat::PortPreserving, &["alice"])
        .home("b", Nat::PortPreserving, &["bob"])
        .build()
    else {
        return;
    };
    let bob = bind(&net, "bob", 6000);
    let alice = bind(&net, "alice", 0);
    // Sending may fail at once (no route in alice's router); either way nothing may arrive.
    let _ = alice.send_to(b"hi bob", (net.addr("bob"), 6000));
    assert!(recv(&bob).is_none(), "bob's private address was reachable");
    // Nor through bob's router: it forwards inward only answers to flows bob started.
    let _ = alice.send_to(b"hi bob", (net.addr("b"), 6000));
    assert!(
        recv(&bob).is_none(),
        "bob's router forwarded an unsolicited datagram"
    );
    // The same path works once bob has sent first (the control: the rules drop, not the setup).
    let public = bind(&net, "pub", 6001);
    bob.send_to(b"from bob", (net.addr("pub"), 6001)).unwrap();
    assert!(recv(&public).is_some());
}

#[test]
fn loss_of_twenty_percent_drops_about_a_fifth_of_500_datagrams() {
    let Some(net) = TestNet::builder()
        .public_host("pub")
        .home("a", Nat::PortPreserving, &["phone"])
        .loss("pub", 0.2)
        .build()
    else {
        return;
    };
    let server = bind(&net, "pub", 7000);
    let phone = bind(&net, "phone", 0);
    // Warm-up until one datagram gets through, so neighbour discovery (which queues only a few
    // packets) is done before the count starts.
    while {
        phone.send_to(b"warm-up", (net.addr("pub"), 7000)).unwrap();
        recv(&server).is_none()
    } {}
    let count = |n: u32| {
        // Received on another thread while sending, so the socket buffer never overflows.
        std::thread::scope(|scope| {
            let receiver = scope.spawn(|| {
                let mut received = 0;
                while let Some((data, _)) = recv(&server) {
                    if data != b"warm-up" {
                        received += 1;
                    }
                }
                received
            });
            for i in 0..n {
                phone
                    .send_to(&i.to_be_bytes(), (net.addr("pub"), 7000))
                    .unwrap();
                // Paced: an unpaced burst outruns the receiver and overflows its socket buffer
                // (about 256 small datagrams), which would count as loss.
                std::thread::sleep(Duration::from_micros(200));
            }
            receiver.join().unwrap()
        })
    };
    let received = count(500);
    // Expected 400, standard deviation about 9: these bounds are over 8 deviations wide.
    assert!((320..=480).contains(&received), "{received} of 500 arrived");

    net.set_loss("pub", 0.0);
    assert_eq!(count(50), 50, "without loss everything arrives");
}

#[test]
fn teardown_leaves_no_namespace_behind_also_after_a_panic() {
    let Some(net) = TestNet::builder()
        .public_host("pub")
        .home("a", Nat::Symmetric, &["phone"])
        .build()
    else {
        return;
    };
    let prefix = net.prefix().to_owned();
    assert_eq!(net.namespaces().len(), 4);
    assert!(netns_list().contains(&prefix));
    drop(net);
    assert!(!netns_list().contains(&prefix), "{}", netns_list());

    let seen = Mutex::new(String::new());
    let result = std::panic::catch_unwind(|| {
        let net = TestNet::builder().public_host("pub").build().unwrap();
        *seen.lock().unwrap() = net.prefix().to_owned();
        net.run("pub", || panic!("a test failing inside the namespace"));
    });
    assert!(result.is_err());
    let prefix = seen.into_inner().unwrap();
    assert!(!prefix.is_empty());
    assert!(!netns_list().contains(&prefix), "{}", netns_list());
}

#[test]
fn namespaces_of_a_dead_test_process_are_swept_at_creation() {
    if TestNet::builder().build().is_none() {
        return;
    }
    let mut child = Command::new("true").spawn().unwrap();
    let dead = child.id();
    child.wait().unwrap();
    let stale = format!("ccnet-{dead}-0-hub");
    chaincall_testkit::run_ok(
        Command::new("ip").args(["netns", "add", &stale]),
        "ip netns add",
    );
    let net = TestNet::builder().public_host("pub").build().unwrap();
    let list = netns_list();
    // Delete by hand if the sweep failed, so the failure does not leak.
    let _ = Command::new("ip").args(["netns", "del", &stale]).status();
    assert!(!list.contains(&stale), "{list}");
    assert!(list.contains(net.prefix()));
}
