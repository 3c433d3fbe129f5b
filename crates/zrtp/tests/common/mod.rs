//! Engines talking through a simulated network in simulated time: no sockets, no sleeps.
#![allow(dead_code, unreachable_pub)] // each test file uses a different part

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chaincall_identity::Randomness;
use chaincall_zrtp::{
    Event, InMemoryCache, KeyAgreement, Role, SecretCache, SecureOn, Zid, Zrtp, ZrtpConfig,
    ZrtpError,
};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

/// A seeded generator, so every run is the same.
pub fn rng(seed: u64) -> Randomness {
    Randomness::seeded(ChaCha20Rng::seed_from_u64(seed))
}

/// A config for endpoint `n` (ZID n…, SSRC n) with its own cache and seeded randomness.
pub fn config(n: u8) -> ZrtpConfig {
    config_with_cache(n, Arc::new(InMemoryCache::new()))
}

/// Like [`config`], with the given cache.
pub fn config_with_cache(n: u8, cache: Arc<dyn SecretCache>) -> ZrtpConfig {
    ZrtpConfig::new(Zid([n; 12]), u32::from(n) * 0x0101_0101, cache)
        .with_randomness(rng(u64::from(n) * 7919))
}

/// Offers only `ka`.
pub fn only(cfg: ZrtpConfig, ka: KeyAgreement) -> ZrtpConfig {
    cfg.with_key_agreements(&[ka])
}

/// Endpoint 1 (initiator) and endpoint 2 (responder) offering only `ka`, run to the end.
pub fn finished_pair(ka: KeyAgreement) -> Sim {
    let mut sim = Sim::pair(
        only(config(1), ka),
        Role::Initiator,
        only(config(2), ka),
        Role::Responder,
    );
    sim.run();
    sim
}

/// What one endpoint reported.
#[derive(Debug, Default)]
pub struct Outcome {
    /// The SecureOn, if it went secure.
    pub secure: Option<Box<SecureOn>>,
    /// Packets refused along the way.
    pub refused: Vec<ZrtpError>,
    /// The failure, if it failed.
    pub failed: Option<ZrtpError>,
    /// How many SecureOn events (must never exceed one).
    pub secure_count: usize,
}

/// What the network does with a packet from endpoint `from` (its `index`-th packet): the
/// packets to deliver (none: dropped; two: duplicated or a held one released).
pub type Filter = Box<dyn FnMut(usize, usize, &[u8]) -> Vec<Vec<u8>>>;

/// Endpoints, who talks to whom, a clock and the packets in flight.
pub struct Sim {
    pub engines: Vec<Zrtp>,
    pub peer_of: Vec<usize>,
    pub now: Instant,
    pub start: Instant,
    pub outcomes: Vec<Outcome>,
    /// Every packet each endpoint sent, in order (before the filter).
    pub sent: Vec<Vec<Vec<u8>>>,
    pub filter: Filter,
    deadlines: Vec<Option<Instant>>,
    in_flight: VecDeque<(usize, Vec<u8>)>,
}

impl Sim {
    /// Two endpoints talking to each other.
    pub fn pair(a: ZrtpConfig, ra: Role, b: ZrtpConfig, rb: Role) -> Self {
        let now = Instant::now();
        let engines = vec![
            Zrtp::new(a, ra, now).expect("valid config"),
            Zrtp::new(b, rb, now).expect("valid config"),
        ];
        Self::with(engines, vec![1, 0], now)
    }

    /// Any endpoints; `peer_of[i]` receives what `i` sends.
    pub fn with(engines: Vec<Zrtp>, peer_of: Vec<usize>, now: Instant) -> Self {
        let n = engines.len();
        Self {
            engines,
            peer_of,
            now,
            start: now,
            outcomes: (0..n).map(|_| Outcome::default()).collect(),
            sent: vec![Vec::new(); n],
            filter: Box::new(|_, _, p| vec![p.to_vec()]),
            deadlines: vec![None; n],
            in_flight: VecDeque::new(),
        }
    }

    /// Sets the network's behaviour.
    pub fn filter(mut self, f: impl FnMut(usize, usize, &[u8]) -> Vec<Vec<u8>> + 'static) -> Self {
        self.filter = Box::new(f);
        self
    }

    fn drain(&mut self, i: usize) {
        let out = chaincall_io::drain(|| self.engines[i].poll_output());
        self.deadlines[i] = out.timeout;
        for t in out.transmits {
            let index = self.sent[i].len();
            self.sent[i].push(t.contents.clone());
            for p in (self.filter)(i, index, &t.contents) {
                self.in_flight.push_back((self.peer_of[i], p));
            }
        }
        for e in out.events {
            let o = &mut self.outcomes[i];
            match e {
                Event::SecureOn(s) => {
                    o.secure_count += 1;
                    o.secure = Some(s);
                }
                Event::Error(e) => o.refused.push(e),
                Event::Failed(e) => o.failed = Some(e),
                _ => {}
            }
        }
    }

    /// Delivers a packet to endpoint `to` now (an attacker's injection).
    pub fn inject(&mut self, to: usize, packet: &[u8]) {
        self.engines[to].handle_input(packet, self.now);
        self.drain(to);
    }

    /// Runs until nothing is in flight and no timer runs, or `limit` of simulated time passed.
    /// Returns the simulated time taken.
    pub fn run_for(&mut self, limit: Duration) -> Duration {
        for _ in 0..100_000 {
            for i in 0..self.engines.len() {
                self.drain(i);
            }
            if let Some((to, p)) = self.in_flight.pop_front() {
                self.engines[to].handle_input(&p, self.now);
                continue;
            }
            let Some(next) = self.deadlines.iter().flatten().min().copied() else {
                break;
            };
            if next - self.start > limit {
                break;
            }
            self.now = self.now.max(next);
            for z in &mut self.engines {
                z.handle_timeout(self.now);
            }
        }
        self.now - self.start
    }

    /// Runs with a generous limit (the handshake limit is 30 s).
    pub fn run(&mut self) -> Duration {
        self.run_for(Duration::from_secs(120))
    }

    /// The SecureOn of endpoint `i`, panicking with its failure otherwise.
    pub fn secure(&self, i: usize) -> &SecureOn {
        let o = &self.outcomes[i];
        o.secure.as_deref().unwrap_or_else(|| {
            panic!(
                "endpoint {i} not secure: failed {:?}, refused {:?}",
                o.failed, o.refused
            )
        })
    }
}

/// The message type block of a packet (octets 16..24).
pub fn type_of(packet: &[u8]) -> &[u8] {
    &packet[16..24]
}

/// Recomputes the CRC trailer after a test edited a packet.
pub fn fix_crc(packet: &mut [u8]) {
    let n = packet.len();
    let crc = chaincall_zrtp::crc::trailer(&packet[..n - 4]);
    packet[n - 4..].copy_from_slice(&crc);
}

/// A sequence number above anything endpoint `from` has sent (for injected packets that must
/// not be dropped as stale).
pub fn fresh_seq(sim: &Sim, from: usize) -> u16 {
    let last = sim.sent[from]
        .last()
        .map(|p| u16::from_be_bytes([p[2], p[3]]))
        .unwrap_or(0);
    last.wrapping_add(100)
}
