//! The namespace test network's share of the phone tests (crates/testkit's `netns`): runtimes
//! whose sockets live in a node's namespace, phones connected from inside their host, rtpengine
//! started on the relay host and asked for its calls, and the audio check for a call through the
//! relay with a party behind a symmetric NAT. Used by `tests/nat_tls.rs`, `tests/udp.rs` and
//! sipd's `tests/nat_relay.rs`.
#![allow(dead_code, unreachable_pub)]

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use chaincall_identity::IdentityKey;
use chaincall_phone::{CallReport, KeyMode, Phone, PhoneConfig, PhoneEvents};
use chaincall_relay::daemon::{Rtpengine, RtpengineConfig};
use chaincall_relay::ng::CallStats;
use chaincall_relay::{NgClient, NgClientConfig};
use chaincall_testkit::netns::{Nat, TestNet};

use super::{MakeRuntime, Net, runtime};

/// A runtime whose threads (and so every socket its tasks bind) are in `node`'s namespace.
pub fn inside(tn: &Arc<TestNet>, node: &'static str) -> MakeRuntime {
    let tn = tn.clone();
    Arc::new(move || tn.run(node, runtime))
}

/// A runtime made by [`inside`], shut down without waiting when dropped: a test's async code
/// may not block on a runtime's shutdown, also not while unwinding from a failed assertion.
pub struct NodeRuntime(Option<tokio::runtime::Runtime>);

impl Drop for NodeRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

/// A phone on node `node` of the test network: a fresh key for `number` approved on chain, its
/// signalling and media sockets bound inside `node`'s namespace (media on the node's own
/// address), connected as [`Net::phone_config`] with `adjust` says, not registered. Keep the
/// runtime as long as the phone.
pub async fn phone_inside(
    net: &Net,
    tn: &Arc<TestNet>,
    node: &'static str,
    number: &str,
    mode: KeyMode,
    audio_ms: u32,
    adjust: impl FnOnce(&mut PhoneConfig),
) -> (Phone, PhoneEvents, NodeRuntime) {
    let key = IdentityKey::generate();
    net.add(number, &key, true).await;
    let (cfg, lookup) = net.phone_config(number, key, mode, audio_ms, |c| {
        c.media_ip = tn.addr(node).into();
        adjust(c);
    });
    let rt = inside(tn, node)();
    let (phone, events, _) = rt
        .spawn(Phone::connect(cfg, lookup))
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("{number} on {node} connects: {e}"));
    (phone, events, NodeRuntime(Some(rt)))
}

/// rtpengine (userspace) on a public host of the test network, asked over NG from another.
pub struct Relay {
    /// The relay host's address, where the media goes.
    pub ip: Ipv4Addr,
    /// Its NG control address (for sipd's `[relay] rtpengine`).
    pub ng: SocketAddr,
    client: NgClient,
    tn: Arc<TestNet>,
    /// The node the NG requests are sent from: the address exists only inside the network.
    asker: &'static str,
    _daemon: Rtpengine,
}

impl Relay {
    /// Starts rtpengine on node `node` (media ports 30000–30099, NG on port 2223); the test asks
    /// it from `asker`'s namespace. `None` (after saying why) when rtpengine is not installed.
    pub fn start(tn: &Arc<TestNet>, node: &'static str, asker: &'static str) -> Option<Relay> {
        let binary = chaincall_testkit::peer("rtpengine")?;
        let ip = tn.addr(node);
        let config = RtpengineConfig {
            binary,
            interface: ip.into(),
            ng: (ip, 2223).into(),
            ports: (30000, 30099),
        };
        // Spawned from a thread in the relay's namespace, so the daemon runs there.
        let daemon = tn
            .run(node, || {
                runtime().block_on(Rtpengine::spawn(
                    config.command(),
                    config.ng,
                    Duration::from_secs(20),
                ))
            })
            .unwrap_or_else(|e| panic!("{e}"));
        Some(Relay {
            ip,
            ng: config.ng,
            client: NgClient::new(config.ng, NgClientConfig::default()),
            tn: tn.clone(),
            asker,
            _daemon: daemon,
        })
    }

    /// `[relay] mode = "nat"` through this rtpengine, on sipd's configuration.
    fn for_natd_calls(&self, sipd: &mut chaincall_sipd::Config) {
        sipd.relay.mode = chaincall_sipd::config::RelayMode::Nat;
        sipd.relay.rtpengine = Some(self.ng);
    }

    /// The calls rtpengine holds (NG `list`).
    pub fn calls(&self) -> Vec<String> {
        self.tn
            .run(self.asker, || runtime().block_on(self.client.list(100)))
            .unwrap()
    }

    /// rtpengine's statistics of `call` (NG `query`).
    pub fn stats(&self, call: &str) -> CallStats {
        self.tn
            .run(self.asker, || runtime().block_on(self.client.query(call)))
            .unwrap()
    }

    /// Waits until rtpengine counted at least `packets` from each of `call`'s two parties (on
    /// the port that receives from it: their audio has gone through the relay); returns the
    /// statistics then. A bound on a broken test, not a timing assertion.
    pub fn wait_for_relayed(&self, call: &str, packets: u64) -> CallStats {
        // Per party, not per stream kind: rtpengine flags every stream of an RTP/RTCP pair
        // "RTCP"-capable, so the busy port of each party is what counts.
        let relayed = |s: &CallStats| {
            let mut tags: Vec<&str> = s
                .streams
                .iter()
                .filter(|s| s.counters.packets >= packets)
                .map(|s| s.tag.as_str())
                .collect();
            tags.sort_unstable();
            tags.dedup();
            tags.len()
        };
        for _ in 0..100 {
            let stats = self.stats(call);
            if relayed(&stats) >= 2 {
                return stats;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "rtpengine did not relay {packets} packets each way: {:?}",
            self.stats(call)
        );
    }

    /// Waits until rtpengine holds no call (sipd's delete runs beside its loop, so it lands a
    /// moment after the BYE's answer). A bound on a broken test, not a timing assertion.
    pub fn wait_until_no_calls(&self, after: &str) {
        for _ in 0..100 {
            if self.calls().is_empty() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("rtpengine still holds {:?} after {after}", self.calls());
    }
}

/// The network of the relay tests: sipd, rtpengine and `public` more hosts on the public
/// segment, alice behind a symmetric NAT (home "a"), bob behind a port-preserving one (home "b");
/// rtpengine started on "relay" and sipd on "sipd" with `[relay] mode = "nat"` through it.
/// `None` (after saying why) when root or rtpengine is missing.
pub async fn relay_network(public: &[&str]) -> Option<(Arc<TestNet>, Relay, Net)> {
    let mut builder = TestNet::builder().public_host("sipd").public_host("relay");
    for host in public {
        builder = builder.public_host(host);
    }
    let tn = Arc::new(
        builder
            .home("a", Nat::Symmetric, &["alice"])
            .home("b", Nat::PortPreserving, &["bob"])
            .build()?,
    );
    let relay = Relay::start(&tn, "relay", "sipd")?;
    let net = Net::start_on(tn.addr("sipd").into(), inside(&tn, "sipd"), |cfg| {
        relay.for_natd_calls(cfg)
    })
    .await;
    Some((tn, relay, net))
}

/// One direction of a finished call through the relay: `to` heard `from`'s audio unaltered,
/// but for at most `max_lost` whole packets at its start. A phone behind NAT hears nothing until
/// its own first packet has opened its router to the relay: its router drops what comes in before
/// (a home router forwards inward only flows started inside), and behind a symmetric NAT the relay
/// does not even know the port yet: rtpengine is told the router's address, but the router maps
/// the phone's media to a port of its own choosing, which rtpengine learns from that first packet
/// (docs/sipd.md, "Media relay"). A phone on the public segment misses nothing (`max_lost` 0).
pub fn assert_heard(from: &CallReport, to: &CallReport, audio_ms: u32, max_lost: usize) {
    let whole = (audio_ms * 8) as usize; // G.711 at 8 kHz: one byte a sample
    // Lengths, not the payloads, in the messages: a second of audio is 8,000 numbers.
    let lengths = format!(
        "sent {}, heard {}",
        from.sent_payload.len(),
        to.received_payload.len()
    );
    assert_eq!(from.sent_payload.len(), whole, "{lengths}");
    assert!(
        from.sent_payload.ends_with(&to.received_payload),
        "what was heard is the sender's audio, unaltered, from some packet on: {lengths}"
    );
    let lost_packets = (from.sent_payload.len() - to.received_payload.len()) / 160;
    assert!(
        lost_packets <= max_lost
            && to.stats.rtp_received + lost_packets as u64 == from.stats.rtp_sent,
        "only first packets went missing, at most {max_lost}: {lost_packets} of {} ({lengths})",
        from.stats.rtp_sent
    );
}
