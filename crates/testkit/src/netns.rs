//! A test network of Linux network namespaces: a public segment and home networks behind NAT.
//!
//! ```text
//!                 public segment 203.0.113.0/24 (RFC 5737 TEST-NET-3), a bridge in the hub namespace
//!      ┌──────────────┬──────────────┬─────────────────────┬─────────────────────┐
//!   sipd .10      relay .11     chain .12        router "a" .100          router "b" .101
//!                                               MASQUERADE                MASQUERADE --random-fully
//!                                               192.168.1.1               192.168.2.1
//!                                                   │                         │
//!                                             phone-a .10               phone-b .10
//! ```
//!
//! Every node (public host, home host, router, the hub) is its own namespace, named
//! `ccnet-<pid>-<n>-<node>`; interface names are local to their namespace (`eth0` in hosts, `wan`
//! and `lan` in routers), so they never collide with the machine's or another test's. No namespace
//! has a route or a link to anything outside the test network: nothing a test sends can leave it.
//!
//! Routers behave like home routers: they masquerade what leaves through `wan` (port-preserving by
//! default, [`Nat::Symmetric`] randomises the port per destination with `--random-fully`) and drop
//! what arrives on `wan` unless conntrack knows the flow. This kernel has no `netem` qdisc, so loss
//! comes from the iptables `statistic` match ([`TestNetBuilder::loss`], [`TestNet::set_loss`]); a
//! test that needs delay or jitter puts the userspace hop of [`crate::impair`] in the path.
//!
//! Dropping the [`TestNet`] (also while unwinding from a panic) kills what still runs inside its
//! namespaces and deletes them, which deletes their veths. Creating one first sweeps namespaces left
//! by test processes that died without unwinding (SIGKILL).
//!
//! Building a network needs root, `ip` (iproute2) and `iptables`. Without them [`TestNetBuilder::build`]
//! returns `None` after printing why, or panics when `CHAINCALL_REQUIRE_PEERS=1` (see [`crate::missing`]).
//!
//! ```no_run
//! use chaincall_testkit::netns::{Nat, TestNet};
//! # fn demo() {
//! let Some(net) = TestNet::builder()
//!     .public_host("sipd")
//!     .home("a", Nat::PortPreserving, &["phone"])
//!     .build()
//! else {
//!     return;
//! };
//! // A socket bound inside the phone's namespace, usable from any thread afterwards.
//! let socket = net.run("phone", || std::net::UdpSocket::bind("0.0.0.0:0").unwrap());
//! socket.send_to(b"hello", (net.addr("sipd"), 5060)).unwrap();
//! // A process in the sipd host's namespace.
//! let status = net.command("sipd", "true").status().unwrap();
//! # let _ = status;
//! # }
//! ```

use std::collections::BTreeMap;
use std::fs::File;
use std::net::Ipv4Addr;
use std::os::fd::AsFd;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

/// Prefix of every namespace this module creates; the sweep only ever touches names with it.
const PREFIX: &str = "ccnet-";
/// Longest node name: keeps namespace names short and readable in `ip netns list`.
const MAX_NAME: usize = 12;
/// Networks built by this process so far: the `<n>` in the namespace names.
static COUNTER: AtomicU32 = AtomicU32::new(0);

/// How a home router translates its hosts' source addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Nat {
    /// MASQUERADE keeping the source port where it can: one public port per local socket, whatever
    /// the destination (endpoint-independent mapping, what most home routers do).
    PortPreserving,
    /// MASQUERADE `--random-fully`: a random public port for every new flow, so each destination
    /// sees another port (a symmetric NAT, as carrier-grade NAT often is).
    Symmetric,
}

#[derive(Clone, Debug)]
struct HomeSpec {
    name: String,
    nat: Nat,
    hosts: Vec<String>,
}

/// Describes a test network; [`TestNetBuilder::build`] creates it.
#[derive(Clone, Debug, Default)]
#[must_use]
pub struct TestNetBuilder {
    public: Vec<String>,
    homes: Vec<HomeSpec>,
    loss: Vec<(String, f64)>,
}

impl TestNetBuilder {
    /// Adds a host on the public segment (203.0.113.10, .11, … in the order added).
    pub fn public_host(mut self, name: &str) -> Self {
        self.public.push(name.to_owned());
        self
    }

    /// Adds a home network `name` (its router is the node `name`, on the public segment at
    /// 203.0.113.100, .101, …) with `hosts` behind it (`192.168.k.10`, `.11`, … for the k-th home).
    pub fn home(mut self, name: &str, nat: Nat, hosts: &[&str]) -> Self {
        self.homes.push(HomeSpec {
            name: name.to_owned(),
            nat,
            hosts: hosts.iter().map(|h| (*h).to_owned()).collect(),
        });
        self
    }

    /// Drops each packet entering node `node` (a host or a router) with `probability`, in both
    /// directions for a router (see [`TestNet::set_loss`]).
    pub fn loss(mut self, node: &str, probability: f64) -> Self {
        self.loss.push((node.to_owned(), probability));
        self
    }

    /// Creates the namespaces, links, addresses, routes and NAT rules.
    ///
    /// Returns `None` (after printing why) when this machine cannot build it and peers are not
    /// required.
    ///
    /// # Panics
    /// On an invalid description (a duplicate or malformed name, more than 99 homes or public
    /// hosts, a probability outside 0..=1), when a command fails (with its stderr), and, with
    /// `CHAINCALL_REQUIRE_PEERS=1`, when root, `ip` or `iptables` is missing. Whatever was created
    /// before the failure is deleted.
    pub fn build(self) -> Option<TestNet> {
        if !rustix::process::geteuid().is_root() {
            return crate::missing("root (network namespaces need CAP_SYS_ADMIN)");
        }
        let ip = crate::peer("ip")?;
        let iptables = crate::peer("iptables")?;
        self.validate();
        sweep_stale(&ip);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let mut net = TestNet {
            prefix: format!("{PREFIX}{}-{n}-", std::process::id()),
            ip,
            iptables,
            namespaces: Vec::new(),
            nodes: BTreeMap::new(),
        };
        net.create(&self);
        for (node, probability) in &self.loss {
            net.set_loss(node, *probability);
        }
        Some(net)
    }

    fn validate(&self) {
        let mut names: Vec<&str> = self.public.iter().map(String::as_str).collect();
        for home in &self.homes {
            names.push(&home.name);
            names.extend(home.hosts.iter().map(String::as_str));
        }
        for (i, name) in names.iter().enumerate() {
            let valid = !name.is_empty()
                && name.len() <= MAX_NAME
                && name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && *name != "hub";
            assert!(
                valid,
                "node name {name:?}: use 1 to {MAX_NAME} of a-z, 0-9 and '-', not \"hub\""
            );
            assert!(
                !names[..i].contains(name),
                "node name {name:?} is used twice"
            );
        }
        assert!(
            self.public.len() < 90 && self.homes.len() < 100,
            "at most 89 public hosts and 99 homes"
        );
        for home in &self.homes {
            assert!(
                home.hosts.len() < 240,
                "home {:?}: at most 239 hosts",
                home.name
            );
        }
        for (node, p) in &self.loss {
            assert!(
                names.contains(&node.as_str()),
                "loss on unknown node {node:?}"
            );
            assert!((0.0..=1.0).contains(p), "loss probability {p} not in 0..=1");
        }
    }
}

/// What the network knows about one node.
#[derive(Clone, Debug)]
struct Node {
    namespace: String,
    /// The address on its own segment (public for public hosts and routers, private in homes).
    addr: Ipv4Addr,
    /// The address the public segment sees it as: its own, or its router's.
    public: Ipv4Addr,
}

/// A running test network; dropping it deletes every namespace it made.
#[derive(Debug)]
pub struct TestNet {
    prefix: String,
    ip: std::path::PathBuf,
    iptables: std::path::PathBuf,
    /// In creation order, deleted in reverse.
    namespaces: Vec<String>,
    nodes: BTreeMap<String, Node>,
}

impl TestNet {
    /// Starts describing a network.
    pub fn builder() -> TestNetBuilder {
        TestNetBuilder::default()
    }

    /// The prefix of this network's namespace names (`ccnet-<pid>-<n>-`).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The names of every namespace of this network, the hub included.
    pub fn namespaces(&self) -> &[String] {
        &self.namespaces
    }

    fn node(&self, name: &str) -> &Node {
        self.nodes
            .get(name)
            .unwrap_or_else(|| panic!("no node {name:?} in this test network"))
    }

    /// The namespace of node `name` (for `ip netns exec` by hand or [`Self::command`]).
    ///
    /// # Panics
    /// When there is no such node (as every accessor here).
    pub fn namespace(&self, name: &str) -> &str {
        &self.node(name).namespace
    }

    /// Node `name`'s address on its own segment: a public host's or router's public address, a home
    /// host's private one.
    pub fn addr(&self, name: &str) -> Ipv4Addr {
        self.node(name).addr
    }

    /// The address hosts on the public segment see node `name`'s packets come from: its router's
    /// public address for a home host, its own address otherwise.
    pub fn public_addr(&self, name: &str) -> Ipv4Addr {
        self.node(name).public
    }

    /// A command that runs `program` inside node `name`'s namespace (`ip netns exec`); add
    /// arguments and spawn it as usual (`tokio::process::Command::from` turns it into a tokio one).
    ///
    /// Kill what you spawn; whatever still runs when the network drops is killed then.
    pub fn command(&self, name: &str, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new(&self.ip);
        cmd.args(["netns", "exec", self.namespace(name)])
            .arg(program);
        cmd
    }

    /// Runs `f` on a new thread that has entered node `name`'s network namespace, and returns its
    /// result. Sockets `f` creates stay in that namespace wherever they are used later, so this is
    /// how Rust test code binds inside the network (convert to tokio with `from_std` after
    /// `set_nonblocking(true)`).
    ///
    /// # Panics
    /// When the namespace cannot be entered, and with `f`'s own panic, re-raised on this thread.
    pub fn run<T: Send>(&self, name: &str, f: impl FnOnce() -> T + Send) -> T {
        let path = format!("/run/netns/{}", self.namespace(name));
        std::thread::scope(|scope| {
            let worker = scope.spawn(move || {
                let file = File::open(&path).unwrap_or_else(|e| panic!("cannot open {path}: {e}"));
                // The namespace is per thread: only this short-lived thread moves, the caller stays.
                rustix::thread::move_into_link_name_space(
                    file.as_fd(),
                    Some(rustix::thread::LinkNameSpaceType::Network),
                )
                .unwrap_or_else(|e| panic!("cannot enter {path}: {e}"));
                f()
            });
            worker
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }

    /// Drops each packet entering node `name` with `probability` (0 removes the loss), from now on.
    ///
    /// The rule sits in the `raw` table's PREROUTING chain of the node's namespace, so it takes
    /// packets to the node and, for a router, packets it forwards in either direction.
    ///
    /// # Panics
    /// When `probability` is not in 0..=1 or iptables fails.
    pub fn set_loss(&self, name: &str, probability: f64) {
        assert!(
            (0.0..=1.0).contains(&probability),
            "loss probability {probability} not in 0..=1"
        );
        let ns = self.namespace(name).to_owned();
        self.iptables(&ns, &["-t", "raw", "-F", "PREROUTING"]);
        if probability > 0.0 {
            let p = format!("{probability:.6}");
            self.iptables(
                &ns,
                &[
                    "-t",
                    "raw",
                    "-A",
                    "PREROUTING",
                    "-m",
                    "statistic",
                    "--mode",
                    "random",
                    "--probability",
                    &p,
                    "-j",
                    "DROP",
                ],
            );
        }
    }

    fn create(&mut self, spec: &TestNetBuilder) {
        let hub = self.add_namespace("hub");
        self.ip(&["-n", &hub, "link", "add", "br0", "type", "bridge"]);
        self.ip(&["-n", &hub, "link", "set", "br0", "up"]);
        for (i, name) in spec.public.iter().enumerate() {
            let addr = Ipv4Addr::new(203, 0, 113, 10 + octet(i));
            let ns = self.add_namespace(name);
            self.link_to_bridge((&hub, "br0"), &format!("p{i}"), &ns, "eth0");
            self.address(&ns, "eth0", addr);
            self.nodes.insert(
                name.clone(),
                Node {
                    namespace: ns,
                    addr,
                    public: addr,
                },
            );
        }
        for (k, home) in spec.homes.iter().enumerate() {
            let wan = Ipv4Addr::new(203, 0, 113, 100 + octet(k));
            let gateway = Ipv4Addr::new(192, 168, 1 + octet(k), 1);
            let router = self.add_namespace(&home.name);
            self.link_to_bridge((&hub, "br0"), &format!("r{k}"), &router, "wan");
            self.address(&router, "wan", wan);
            self.ip(&["-n", &router, "link", "add", "lan", "type", "bridge"]);
            self.address(&router, "lan", gateway);
            self.sysctl(&router, "net.ipv4.ip_forward=1");
            let mut masquerade = vec![
                "-t",
                "nat",
                "-A",
                "POSTROUTING",
                "-o",
                "wan",
                "-j",
                "MASQUERADE",
            ];
            if home.nat == Nat::Symmetric {
                masquerade.push("--random-fully");
            }
            self.iptables(&router, &masquerade);
            // A home router forwards inward only what answers a flow started inside.
            self.iptables(
                &router,
                &[
                    "-A",
                    "FORWARD",
                    "-i",
                    "wan",
                    "-m",
                    "conntrack",
                    "--ctstate",
                    "ESTABLISHED,RELATED",
                    "-j",
                    "ACCEPT",
                ],
            );
            self.iptables(&router, &["-A", "FORWARD", "-i", "wan", "-j", "DROP"]);
            self.nodes.insert(
                home.name.clone(),
                Node {
                    namespace: router.clone(),
                    addr: wan,
                    public: wan,
                },
            );
            for (j, host) in home.hosts.iter().enumerate() {
                let addr = Ipv4Addr::new(192, 168, 1 + octet(k), 10 + octet(j));
                let ns = self.add_namespace(host);
                self.link_to_bridge((&router, "lan"), &format!("h{j}"), &ns, "eth0");
                self.address(&ns, "eth0", addr);
                self.ip(&[
                    "-n",
                    &ns,
                    "route",
                    "add",
                    "default",
                    "via",
                    &gateway.to_string(),
                ]);
                self.nodes.insert(
                    host.clone(),
                    Node {
                        namespace: ns,
                        addr,
                        public: wan,
                    },
                );
            }
        }
    }

    /// Creates namespace `<prefix><node>` with its loopback up (rtpengine and friends bind there).
    fn add_namespace(&mut self, node: &str) -> String {
        let ns = format!("{}{node}", self.prefix);
        self.ip(&["netns", "add", &ns]);
        // Recorded at once, so a failure below still deletes it.
        self.namespaces.push(ns.clone());
        self.ip(&["-n", &ns, "link", "set", "lo", "up"]);
        ns
    }

    /// A veth pair: `bridge_side` enslaved to `bridge` in `br_ns`, `far` in `far_ns`.
    fn link_to_bridge(
        &self,
        (br_ns, bridge): (&str, &str),
        bridge_side: &str,
        far_ns: &str,
        far: &str,
    ) {
        self.ip(&[
            "-n",
            br_ns,
            "link",
            "add",
            bridge_side,
            "type",
            "veth",
            "peer",
            "name",
            far,
            "netns",
            far_ns,
        ]);
        self.ip(&["-n", br_ns, "link", "set", bridge_side, "master", bridge]);
        self.ip(&["-n", br_ns, "link", "set", bridge_side, "up"]);
    }

    fn address(&self, ns: &str, dev: &str, addr: Ipv4Addr) {
        self.ip(&["-n", ns, "addr", "add", &format!("{addr}/24"), "dev", dev]);
        self.ip(&["-n", ns, "link", "set", dev, "up"]);
    }

    fn sysctl(&self, ns: &str, setting: &str) {
        self.ip(&["netns", "exec", ns, "sysctl", "-q", "-w", setting]);
    }

    fn ip(&self, args: &[&str]) {
        crate::run_ok(
            Command::new(&self.ip).args(args),
            &format!("ip {}", args.join(" ")),
        );
    }

    fn iptables(&self, ns: &str, args: &[&str]) {
        crate::run_ok(
            Command::new(&self.ip)
                .args(["netns", "exec", ns])
                .arg(&self.iptables)
                .args(args),
            &format!("iptables {} (in {ns})", args.join(" ")),
        );
    }
}

impl Drop for TestNet {
    fn drop(&mut self) {
        for ns in self.namespaces.iter().rev() {
            delete_namespace(&self.ip, ns);
        }
    }
}

/// `i` as the last octet offset; callers bounded `i` in `validate`.
fn octet(i: usize) -> u8 {
    u8::try_from(i).expect("validated: fewer than 240 nodes per segment")
}

/// Kills whatever still runs in `ns` (only processes a test started there) and deletes it.
/// Errors are ignored: teardown must go on, and a namespace already gone is the goal.
fn delete_namespace(ip: &std::path::Path, ns: &str) {
    if let Ok(out) = Command::new(ip).args(["netns", "pids", ns]).output() {
        for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            let _ = Command::new("kill")
                .args(["-KILL", pid])
                .stderr(Stdio::null())
                .status();
        }
    }
    let _ = Command::new(ip)
        .args(["netns", "del", ns])
        .stderr(Stdio::null())
        .status();
}

/// Deletes namespaces named `ccnet-<pid>-…` whose process is gone (killed without unwinding).
fn sweep_stale(ip: &std::path::Path) {
    let Ok(out) = Command::new(ip).args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        // `ip netns list` prints "name" or "name (id: N)".
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        let Some(pid) = stale_owner(name) else {
            continue;
        };
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            delete_namespace(ip, name);
        }
    }
}

/// The pid in a namespace name this module made, or `None` for any other name.
fn stale_owner(name: &str) -> Option<u32> {
    let rest = name.strip_prefix(PREFIX)?;
    rest.split('-').next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_our_names_have_an_owner() {
        assert_eq!(stale_owner("ccnet-123-0-hub"), Some(123));
        assert_eq!(stale_owner("ccnet-x-0-hub"), None);
        assert_eq!(stale_owner("other-123-0-hub"), None);
    }

    #[test]
    fn invalid_descriptions_are_refused() {
        for builder in [
            TestNet::builder().public_host("a").public_host("a"),
            TestNet::builder().public_host("Upper"),
            TestNet::builder().public_host("much-too-long-name"),
            TestNet::builder().public_host("hub"),
            TestNet::builder().public_host("a").loss("a", 1.5),
            TestNet::builder().loss("nobody", 0.1),
        ] {
            assert!(std::panic::catch_unwind(|| builder.validate()).is_err());
        }
        TestNet::builder()
            .public_host("sipd")
            .home("a", Nat::Symmetric, &["phone-a"])
            .loss("a", 0.2)
            .validate();
    }
}
