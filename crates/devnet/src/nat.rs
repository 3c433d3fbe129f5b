//! The network of `chaincall demo --nat` and `chaincall bench setup --nat`: alice and bob each
//! behind their own home NAT router, sipd and rtpengine on the public segment, in Linux network
//! namespaces ([`chaincall_testkit::netns`]) that exist only while a [`NatNet`] lives.
//!
//! ```text
//!   public segment 203.0.113.0/24:  sipd .10 (TLS-PSK, [relay] mode = "nat")   rtpengine .11
//!   router "a" .100 ── alice 192.168.1.10          router "b" .101 ── bob 192.168.2.10
//! ```
//!
//! sipd and each phone run on a tokio runtime of their own whose threads sit in their node's
//! namespace ([`Placement`]), so every socket they open is there; the keystore chain and the
//! wallet server stay in this process's own network (the chain is in-process, the wallet is only
//! used for onboarding). rtpengine runs in userspace, started here and killed when the
//! [`NatNet`] drops; a raw socket in the relay's namespace captures what it sends and receives.
//! Dropping the [`NatNet`] (also on an error or Ctrl-C) stops the runtimes, rtpengine and the
//! capture and deletes the namespaces.

use std::io::Read;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, anyhow, bail};
use chaincall_relay::capture::{self, KeyLogEntry, SrtpCheck, Unprotect};
use chaincall_relay::daemon::{Rtpengine, RtpengineConfig};
use chaincall_relay::ng::CallStats;
use chaincall_relay::{NgClient, NgClientConfig};
use chaincall_testkit::netns::{Nat, TestNet};

use crate::Placement;

/// rtpengine's NG control port on the relay's address (not the usual 2223: a demo's rtpengine is
/// told apart from the tests' at a glance in `ps`).
pub const NG_PORT: u16 = 2224;
/// The media ports rtpengine may allocate (inclusive): the capture check looks at these. Wide, so
/// a benchmark's calls never reuse a relay port while a router's conntrack still holds the flow of
/// an earlier call to it (with 100 ports, a call after the 25th wrap-around lost all its media
/// towards the caller); below Linux's ephemeral ports (32768 on), which NG clients send from.
pub const MEDIA_PORTS: (u16, u16) = (20000, 29999);
/// The Ethernet frames a capture keeps at most (a demo call is a few hundred packets a second).
const MAX_FRAMES: usize = 200_000;

/// A runtime whose threads are in one namespace, shut down without waiting when dropped (a
/// runtime dropped the ordinary way inside another runtime's task panics).
struct NsRuntime(Option<tokio::runtime::Runtime>);

impl NsRuntime {
    fn handle(&self) -> tokio::runtime::Handle {
        self.0.as_ref().expect("until dropped").handle().clone()
    }
}

impl Drop for NsRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

/// What the relay's raw socket captured: Ethernet frames with their capture time.
type Frames = Arc<std::sync::Mutex<Vec<(Duration, Vec<u8>)>>>;

/// A packet capture on every interface of the relay's namespace (an `AF_PACKET` socket read by a
/// thread), stopped when dropped.
struct Capture {
    frames: Frames,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Capture {
    /// Starts capturing with `socket`, an `AF_PACKET` socket opened in the relay's namespace.
    fn start(socket: socket2::Socket) -> Result<Self> {
        // The reader wakes up this often to see whether it should stop.
        socket.set_read_timeout(Some(Duration::from_millis(50)))?;
        let frames = Frames::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (f, s) = (frames.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut buf = vec![0u8; 65_536];
            while !s.load(Ordering::Relaxed) {
                match (&socket).read(&mut buf) {
                    Ok(n) => {
                        let at = SystemTime::now()
                            .duration_since(UNIX_EPOCH)
                            .unwrap_or_default();
                        let mut frames = f.lock().unwrap_or_else(|e| e.into_inner());
                        if frames.len() < MAX_FRAMES {
                            frames.push((at, buf[..n].to_vec()));
                        }
                    }
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock
                                | std::io::ErrorKind::TimedOut
                                | std::io::ErrorKind::Interrupted
                        ) => {}
                    Err(_) => break,
                }
            }
        });
        Ok(Self {
            frames,
            stop,
            thread: Some(thread),
        })
    }

    /// Stops the capture and returns it as a pcap file (link type Ethernet).
    fn finish(&mut self) -> Vec<u8> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let frames = std::mem::take(&mut *self.frames.lock().unwrap_or_else(|e| e.into_inner()));
        pcap(&frames)
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A classic pcap file (microsecond timestamps, link type 1: Ethernet) of `frames`.
fn pcap(frames: &[(Duration, Vec<u8>)]) -> Vec<u8> {
    // Magic, version 2.4, time zone 0, sigfigs 0, snaplen, link type.
    let mut out = 0xa1b2_c3d4_u32.to_le_bytes().to_vec();
    out.extend_from_slice(&[2, 0, 4, 0]);
    for word in [0u32, 0, 65_536, 1] {
        out.extend_from_slice(&word.to_le_bytes());
    }
    for (at, frame) in frames {
        let len = u32::try_from(frame.len()).unwrap_or(u32::MAX);
        let secs = u32::try_from(at.as_secs()).unwrap_or(u32::MAX);
        for word in [secs, at.subsec_micros(), len, len] {
            out.extend_from_slice(&word.to_le_bytes());
        }
        out.extend_from_slice(frame);
    }
    out
}

/// The namespace network with rtpengine running, ready for [`crate::Network::start`] with
/// [`NatNet::placement`]. Dropping it tears everything down.
pub struct NatNet {
    // Dropped in this order: the runtimes (sipd and phones stop), the capture, rtpengine, and
    // last the namespaces.
    runtimes: Vec<NsRuntime>,
    capture: Option<Capture>,
    rtpengine: Option<Rtpengine>,
    net: TestNet,
}

/// The relay's address on the public segment: the second public host ([`TestNet`]'s numbering).
pub const RELAY_ADDR: std::net::Ipv4Addr = std::net::Ipv4Addr::new(203, 0, 113, 11);

/// Node names in the namespace network.
const SIPD: &str = "sipd";
const RELAY: &str = "relay";
const ALICE: &str = "alice";
const BOB: &str = "bob";

impl NatNet {
    /// Builds the namespaces, starts rtpengine in userspace on the relay's address and the
    /// capture at the relay.
    ///
    /// # Errors
    /// Without root, without `ip`, `iptables` or `rtpengine`, or when one of them fails; the
    /// message says how to run it.
    pub async fn start() -> Result<Self> {
        // Namespace commands block: off the async threads.
        let mut nat = tokio::task::spawn_blocking(Self::build)
            .await
            .context("building the namespace network")??;
        let relay_ip = nat.net.addr(RELAY);
        let config = RtpengineConfig {
            binary: need(
                "rtpengine",
                "Debian's rtpengine-daemon (userspace; no kernel module)",
            )?,
            interface: relay_ip.into(),
            ng: (relay_ip, NG_PORT).into(),
            ports: MEDIA_PORTS,
        };
        // Spawned from the relay's runtime, whose threads are in its namespace: so is rtpengine.
        let relay = nat.runtimes[0].handle();
        let daemon = relay
            .spawn(Rtpengine::spawn(
                config.command(),
                config.ng,
                Duration::from_secs(20),
            ))
            .await
            .context("the relay's runtime stopped")?
            .context("starting rtpengine in the relay's namespace")?;
        nat.rtpengine = Some(daemon);
        Ok(nat)
    }

    fn build() -> Result<Self> {
        if !rustix::process::geteuid().is_root() {
            bail!(
                "--nat needs root: it builds network namespaces, veth links and NAT rules (Linux \
                 CAP_SYS_ADMIN and CAP_NET_ADMIN); run it as root, e.g. `sudo chaincall demo --nat`"
            );
        }
        need("ip", "iproute2")?;
        need("iptables", "iptables")?;
        // The builder panics on a failing command (it is the tests' too): turned into an error here.
        let built = std::panic::catch_unwind(|| {
            TestNet::builder()
                .public_host(SIPD)
                .public_host(RELAY)
                .home("a", Nat::PortPreserving, &[ALICE])
                .home("b", Nat::PortPreserving, &[BOB])
                .build()
        })
        .map_err(|panic| {
            let why = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("a command failed");
            anyhow!("building the namespace network: {why}")
        })?;
        let net = built.ok_or_else(|| anyhow!("the namespace network cannot be built here"))?;
        anyhow::ensure!(
            net.addr(RELAY) == RELAY_ADDR,
            "the relay is at {}, not {RELAY_ADDR}",
            net.addr(RELAY)
        );
        let mut runtimes = Vec::new();
        for node in [RELAY, SIPD, ALICE, BOB] {
            let rt = net.run(node, || {
                tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .thread_name(format!("ns-{node}"))
                    .enable_all()
                    .build()
            });
            runtimes.push(NsRuntime(Some(
                rt.with_context(|| format!("{node}'s runtime"))?,
            )));
        }
        // ETH_P_ALL in network byte order: every frame, both directions.
        let socket = net.run(RELAY, || {
            socket2::Socket::new(
                socket2::Domain::PACKET,
                socket2::Type::RAW,
                Some(socket2::Protocol::from(i32::from(0x0003u16.to_be()))),
            )
        });
        let capture = Capture::start(socket.context("a packet socket in the relay's namespace")?)?;
        Ok(Self {
            runtimes,
            capture: Some(capture),
            rtpengine: None,
            net,
        })
    }

    /// Where sipd and the phones run, for [`crate::NetworkOptions::placement`].
    pub fn placement(&self) -> Placement {
        let at =
            |i: usize, node: &str| (self.runtimes[i].handle(), IpAddr::from(self.net.addr(node)));
        Placement {
            sipd: at(1, SIPD),
            rtpengine: self.ng(),
            phones: [at(2, ALICE), at(3, BOB)],
        }
    }

    /// rtpengine's NG address.
    pub fn ng(&self) -> SocketAddr {
        (self.net.addr(RELAY), NG_PORT).into()
    }

    /// The prefix of the network's namespace names (`ccnet-<pid>-<n>-`).
    pub fn prefix(&self) -> &str {
        self.net.prefix()
    }

    /// rtpengine's statistics of the call `call_id` (asked from the relay's namespace).
    ///
    /// # Errors
    /// When rtpengine does not answer or knows no such call.
    pub async fn query(&self, call_id: &str) -> Result<CallStats> {
        let client = NgClient::new(self.ng(), NgClientConfig::default());
        let id = call_id.to_owned();
        self.runtimes[0]
            .handle()
            .spawn(async move { client.query(&id).await })
            .await
            .context("the relay's runtime stopped")?
            .context("rtpengine's statistics of the call")
    }

    /// The calls rtpengine holds.
    ///
    /// # Errors
    /// When rtpengine does not answer.
    pub async fn calls(&self) -> Result<Vec<String>> {
        let client = NgClient::new(self.ng(), NgClientConfig::default());
        self.runtimes[0]
            .handle()
            .spawn(async move { client.list(100).await })
            .await
            .context("the relay's runtime stopped")?
            .context("rtpengine's calls")
    }

    /// Stops the capture and returns it as a pcap file (empty after the first call).
    pub fn finish_capture(&mut self) -> Vec<u8> {
        self.capture
            .as_mut()
            .map(Capture::finish)
            .unwrap_or_default()
    }
}

/// An executable on `PATH` (or the project's install locations), or an error naming its package.
fn need(name: &str, package: &str) -> Result<PathBuf> {
    chaincall_testkit::find_executable(name)
        .ok_or_else(|| anyhow!("--nat needs `{name}` on PATH: install {package}"))
}

/// Checks the pcap file `pcap` taken at the relay: every RTP and RTCP packet on rtpengine's media
/// ports authenticates with the key `keylog` gives its SSRC, and none carries a piece of
/// `plaintext` (the encoded audio each phone sent), with chaincall's own SRTP (the tests check
/// the same capture with libsrtp).
///
/// # Errors
/// When the capture or the key log cannot be read.
pub fn check_capture(pcap: &[u8], keylog: &str, plaintext: &[&[u8]]) -> Result<SrtpCheck> {
    let datagrams = capture::udp_datagrams(pcap)?;
    let keys = KeyLogEntry::parse_log(keylog)?;
    capture::check_srtp(
        &datagrams,
        RELAY_ADDR,
        MEDIA_PORTS.0..=MEDIA_PORTS.1,
        &keys,
        plaintext,
        |key| -> Result<Unprotect<'_>, String> {
            use chaincall_srtp::{Profile, SrtpConfig, SrtpSession};
            let profile = Profile::ALL
                .into_iter()
                .find(|p| p.rfc_name() == key.profile)
                .ok_or_else(|| format!("unknown SRTP profile {}", key.profile))?;
            let mut session =
                SrtpSession::from_key_and_salt(SrtpConfig::new(profile), &key.key_and_salt)
                    .map_err(|e| e.to_string())?;
            Ok(Box::new(move |packet: &mut Vec<u8>, rtcp: bool| {
                if rtcp {
                    session.unprotect_rtcp(packet).is_ok()
                } else {
                    session.unprotect_rtp(packet).is_ok()
                }
            }))
        },
    )
    .map_err(|e| anyhow!(e))
}
