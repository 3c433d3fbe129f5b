//! A userspace impairment hop for UDP on a test namespace's loopback: loss, delay and jitter.
//!
//! This kernel has no `sch_netem`, so `tc qdisc … netem delay 40ms 40ms` is not available; loss
//! alone could come from the iptables `statistic` match ([`crate::netns::TestNet::set_loss`]), delay
//! and jitter cannot. [`ImpairedLoopback`] does all three in userspace, transparently: the endpoints
//! keep sending to each other's real address and port and see each other's real source address
//! (the chaincall phone drops media from any other source), so it serves chaincall's SRTP and a
//! standard phone's RTP alike, in both directions, without touching their signalling.
//!
//! How, inside one namespace node of a [`TestNet`] (never the machine's own namespace):
//! 1. a `nat OUTPUT` rule DNATs each original UDP datagram to an impaired address (port range
//!    `ports`) onto a *shadow* address `127.254.0.<k>` and a port shifted into a range nothing
//!    binds (a socket bound to 0.0.0.0 would otherwise take the unimpaired original too);
//! 2. a raw `IPPROTO_UDP` socket receives a copy of every datagram delivered locally, so the hop
//!    sees the shadowed ones (the kernel's own port-unreachable answer is dropped by a filter rule);
//! 3. the hop drops a packet with probability `loss`, else holds it for `delay ± jitter` (uniform,
//!    from a seeded generator; packets overtake each other when jitter exceeds their spacing, as
//!    with netem) in a bounded queue;
//! 4. at its time it re-sends the original datagram through an `IPPROTO_RAW` socket with the
//!    original destination, TTL 1 and no UDP checksum; a `raw OUTPUT` rule leaves datagrams with
//!    TTL 1 untracked, so they skip the DNAT and reach the real socket.
//!
//! Needs root (raw sockets, iptables), as [`TestNet`] does.

use std::collections::BinaryHeap;
use std::io::Read;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::ops::RangeInclusive;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use crate::netns::TestNet;

/// Datagrams held at most; more are dropped and counted as `overflow` (a router's queue is finite).
pub const QUEUE_LIMIT: usize = 4096;
/// The TTL re-sent datagrams carry: the mark that exempts them from the DNAT.
const MARK_TTL: u8 = 1;
/// `IPPROTO_RAW`: a send-only raw socket whose datagrams carry their own IP header.
const IPPROTO_RAW: i32 = 255;

/// What the hop does to each datagram.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Impairment {
    /// Probability (0..=1) that a datagram is dropped.
    pub loss: f64,
    /// Mean one-way delay added.
    pub delay: Duration,
    /// Each datagram's delay is drawn uniformly from `delay - jitter ..= delay + jitter` (floored at
    /// zero), netem's default distribution.
    pub jitter: Duration,
    /// Seed of the generator: the same seed gives the same sequence of drops and delays.
    pub seed: u64,
}

impl Impairment {
    /// No loss, no delay: the hop only forwards.
    pub const CLEAN: Impairment = Impairment {
        loss: 0.0,
        delay: Duration::ZERO,
        jitter: Duration::ZERO,
        seed: 1,
    };
}

/// What the hop did since it started or since [`ImpairedLoopback::take_stats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ImpairStats {
    /// Datagrams that reached the hop.
    pub seen: u64,
    /// Dropped on purpose (`loss`).
    pub dropped: u64,
    /// Dropped because the queue was full.
    pub overflow: u64,
    /// Re-sent to their destination.
    pub forwarded: u64,
    /// Re-sent before one that had reached the hop earlier (reordered by jitter).
    pub reordered: u64,
}

struct Shared {
    impairment: Impairment,
    rng: SplitMix64,
    stats: ImpairStats,
}

/// A running impairment hop; dropping it stops the hop and removes its iptables rules.
pub struct ImpairedLoopback {
    shared: Arc<Mutex<Shared>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    /// For removing the rules: the network's namespace command and the node.
    cleanup: Vec<std::process::Command>,
}

impl std::fmt::Debug for ImpairedLoopback {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImpairedLoopback").finish_non_exhaustive()
    }
}

impl ImpairedLoopback {
    /// Impairs UDP datagrams sent inside node `node` of `net` to one of `addrs` (loopback
    /// addresses of that namespace) with a destination port in `ports`; others pass untouched.
    /// The hop parks datagrams on the ports from `shadow_ports` on (as many as `ports` holds):
    /// nothing in the namespace may bind those, not even on 0.0.0.0. The hop owns the node's
    /// `OUTPUT` chains of the raw, nat and filter tables: dropping it flushes them.
    ///
    /// # Panics
    /// When iptables or a raw socket fails (not root, no iptables), on more than 250 addresses,
    /// when the shadow ports overlap `ports` or pass 65535, or when `impairment` is invalid (see
    /// [`Self::set`]).
    pub fn start(
        net: &TestNet,
        node: &str,
        addrs: &[Ipv4Addr],
        ports: RangeInclusive<u16>,
        shadow_ports: u16,
        impairment: Impairment,
    ) -> ImpairedLoopback {
        validate(&impairment);
        assert!(
            !addrs.is_empty() && addrs.len() <= 250,
            "1 to 250 addresses"
        );
        let span = u32::from(*ports.end()).saturating_sub(u32::from(*ports.start()));
        let shadow_end = u32::from(shadow_ports) + span;
        assert!(
            !ports.is_empty()
                && shadow_end <= 65_535
                && (shadow_end < u32::from(*ports.start()) || shadow_ports > *ports.end()),
            "shadow ports {shadow_ports}..={shadow_end} must fit below 65536 and miss {ports:?}"
        );
        let map = PortMap {
            real: *ports.start(),
            shadow: shadow_ports,
            len: span + 1,
        };
        let iptables = crate::peer("iptables").expect("iptables (the hop's rules need it)");
        let shadows: Vec<(Ipv4Addr, Ipv4Addr)> = addrs
            .iter()
            .enumerate()
            .map(|(k, a)| (shadow(k), *a))
            .collect();
        let rule = |args: &[&str]| {
            crate::run_ok(
                net.command(node, &iptables).args(args),
                &format!("iptables {}", args.join(" ")),
            );
        };
        let ttl = MARK_TTL.to_string();
        rule(&[
            "-t",
            "raw",
            "-A",
            "OUTPUT",
            "-p",
            "udp",
            "-m",
            "ttl",
            "--ttl-eq",
            &ttl,
            "-j",
            "CT",
            "--notrack",
        ]);
        let port_range = format!("{}:{}", ports.start(), ports.end());
        // Shifted mapping: real port p goes to shadow_ports + (p - ports.start()).
        let to =
            |shadow: &Ipv4Addr| format!("{shadow}:{shadow_ports}-{shadow_end}/{}", ports.start());
        for (shadow, addr) in &shadows {
            rule(&[
                "-t",
                "nat",
                "-A",
                "OUTPUT",
                "-p",
                "udp",
                "-d",
                &addr.to_string(),
                "--dport",
                &port_range,
                "-m",
                "ttl",
                "!",
                "--ttl-eq",
                &ttl,
                "-j",
                "DNAT",
                "--to-destination",
                &to(shadow),
            ]);
        }
        // Nothing listens on a shadow address: the kernel's port-unreachable answers go nowhere.
        rule(&[
            "-A",
            "OUTPUT",
            "-p",
            "icmp",
            "--icmp-type",
            "port-unreachable",
            "-j",
            "DROP",
        ]);
        let cleanup = [
            &["-t", "raw", "-F", "OUTPUT"][..],
            &["-t", "nat", "-F", "OUTPUT"][..],
            &["-F", "OUTPUT"][..],
        ]
        .iter()
        .map(|args| {
            let mut cmd = net.command(node, &iptables);
            cmd.args(*args);
            cmd
        })
        .collect();
        let (rx, tx) = net.run(node, || {
            let rx = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::UDP))
                .expect("raw UDP socket (root needed)");
            let tx = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::from(IPPROTO_RAW)))
                .expect("raw IP socket (root needed)");
            (rx, tx)
        });
        let shared = Arc::new(Mutex::new(Shared {
            impairment,
            rng: SplitMix64(impairment.seed),
            stats: ImpairStats::default(),
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (shared, stop) = (shared.clone(), stop.clone());
            std::thread::Builder::new()
                .name("impair".into())
                .spawn(move || forward(&rx, &tx, (&shadows, map), &shared, &stop))
                .expect("spawning the impairment thread")
        };
        ImpairedLoopback {
            shared,
            stop,
            thread: Some(thread),
            cleanup,
        }
    }

    /// Applies `impairment` from now on (and reseeds), for datagrams reaching the hop later.
    ///
    /// # Panics
    /// When `loss` is not in 0..=1.
    pub fn set(&self, impairment: Impairment) {
        validate(&impairment);
        let mut shared = self.shared.lock().expect("impairment state");
        shared.impairment = impairment;
        shared.rng = SplitMix64(impairment.seed);
    }

    /// What the hop did since the last call (or its start), and starts counting anew.
    pub fn take_stats(&self) -> ImpairStats {
        std::mem::take(&mut self.shared.lock().expect("impairment state").stats)
    }
}

impl Drop for ImpairedLoopback {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        for cmd in &mut self.cleanup {
            // The namespace may already be gone; nothing to undo then.
            let _ = cmd.output();
        }
    }
}

fn validate(impairment: &Impairment) {
    assert!(
        (0.0..=1.0).contains(&impairment.loss),
        "loss {} not in 0..=1",
        impairment.loss
    );
}

/// The k-th shadow address: 127.254.0.1, .2, …
fn shadow(k: usize) -> Ipv4Addr {
    Ipv4Addr::new(
        127,
        254,
        0,
        u8::try_from(k + 1).expect("at most 250 addresses"),
    )
}

/// A datagram waiting for its time; the heap pops the earliest (then the first received).
struct Held {
    at: Instant,
    seq: u64,
    to: SocketAddrV4,
    packet: Vec<u8>,
}

impl PartialEq for Held {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Held {}
impl PartialOrd for Held {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Held {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        // Reversed: BinaryHeap is a max-heap.
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

/// The hop's loop: receive, decide, hold, re-send at the time; until `stop`.
fn forward(
    rx: &Socket,
    tx: &Socket,
    shadows: (&[(Ipv4Addr, Ipv4Addr)], PortMap),
    shared: &Mutex<Shared>,
    stop: &AtomicBool,
) {
    let mut queue = BinaryHeap::new();
    let mut buf = vec![0u8; 65_536];
    let (mut next_seq, mut last_sent) = (0u64, None::<u64>);
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        while queue.peek().is_some_and(|h: &Held| h.at <= now) {
            let held = queue.pop().expect("peeked");
            if tx.send_to(&held.packet, &SockAddr::from(held.to)).is_ok() {
                let mut shared = shared.lock().expect("impairment state");
                shared.stats.forwarded += 1;
                if last_sent.is_some_and(|last| held.seq < last) {
                    shared.stats.reordered += 1;
                }
            }
            last_sent = Some(last_sent.map_or(held.seq, |l| l.max(held.seq)));
        }
        let wait = queue.peek().map_or(Duration::from_millis(20), |h| {
            h.at.saturating_duration_since(now)
                .clamp(Duration::from_micros(200), Duration::from_millis(20))
        });
        let _ = rx.set_read_timeout(Some(wait));
        // `Read` for `&Socket` is recv(2) into initialised bytes: no `MaybeUninit` to handle.
        let Ok(n) = (&*rx).read(&mut buf) else {
            continue;
        };
        let Some((to, packet)) = restore(&buf[..n], shadows) else {
            continue;
        };
        let mut shared = shared.lock().expect("impairment state");
        shared.stats.seen += 1;
        let imp = shared.impairment;
        if shared.rng.unit() < imp.loss {
            shared.stats.dropped += 1;
            continue;
        }
        if queue.len() >= QUEUE_LIMIT {
            shared.stats.overflow += 1;
            continue;
        }
        let spread = imp.jitter.as_secs_f64() * (2.0 * shared.rng.unit() - 1.0);
        let delay = Duration::from_secs_f64((imp.delay.as_secs_f64() + spread).max(0.0));
        queue.push(Held {
            at: Instant::now() + delay,
            seq: next_seq,
            to,
            packet,
        });
        next_seq += 1;
    }
}

/// Where the DNAT parks ports: `real + i` on `shadow + i`, for i below `len`.
#[derive(Clone, Copy, Debug)]
struct PortMap {
    real: u16,
    shadow: u16,
    len: u32,
}

/// The original datagram of a shadowed one: its real destination and the packet to re-send
/// (destination restored, TTL the mark, UDP checksum off). `None` for anything else.
fn restore(
    datagram: &[u8],
    (shadows, map): (&[(Ipv4Addr, Ipv4Addr)], PortMap),
) -> Option<(SocketAddrV4, Vec<u8>)> {
    if datagram.len() < 20 || datagram[0] >> 4 != 4 || datagram[9] != 17 {
        return None;
    }
    let ihl = usize::from(datagram[0] & 0x0f) * 4;
    if ihl < 20 || datagram.len() < ihl + 8 {
        return None;
    }
    let dst = Ipv4Addr::new(datagram[16], datagram[17], datagram[18], datagram[19]);
    let (_, real) = shadows.iter().find(|(s, _)| *s == dst)?;
    let parked = u16::from_be_bytes([datagram[ihl + 2], datagram[ihl + 3]]);
    let offset = parked.checked_sub(map.shadow)?;
    if u32::from(offset) >= map.len {
        return None;
    }
    let port = map.real + offset;
    let mut packet = datagram.to_vec();
    packet[16..20].copy_from_slice(&real.octets());
    packet[ihl + 2..ihl + 4].copy_from_slice(&port.to_be_bytes());
    packet[8] = MARK_TTL;
    // The kernel fills in the IP header checksum of a raw datagram; zero means "none" for UDP.
    packet[10..12].fill(0);
    packet[ihl + 6..ihl + 8].fill(0);
    Some((SocketAddrV4::new(*real, port), packet))
}

/// A small seeded generator (SplitMix64): reproducible drops and delays without a dependency.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}
