//! The signalling link's timing, as small pure types the shell ([`crate::phone`]) drives: the
//! back-off between reconnect attempts ([`Backoff`]), the CRLF keep-alive on the stream
//! ([`KeepAlive`]) and the STUN keep-alive over UDP ([`StunKeepAlive`]), which also finds out when
//! the SIP server stops answering and when it is back.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use chaincall_identity::Randomness;

/// The waits between attempts to reconnect to the SIP server: 0.5 s, 1, 2, 4 … doubling up to
/// 30 s, each shortened by up to a quarter at random, so phones that lost the same server (it
/// restarted) do not all come back in the same instant.
#[derive(Debug, Clone, Default)]
pub struct Backoff {
    attempts: u32,
}

impl Backoff {
    /// The first wait.
    pub const FIRST: Duration = Duration::from_millis(500);
    /// The longest wait.
    pub const CAP: Duration = Duration::from_secs(30);

    /// A back-off that has made no attempt yet.
    pub fn new() -> Backoff {
        Backoff::default()
    }

    /// Attempts made so far (the number of the one about to run, after [`Backoff::next_wait`]).
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// The wait before attempt `attempt` (1-based) without jitter: `FIRST · 2^(attempt-1)`,
    /// at most [`Backoff::CAP`].
    pub fn nominal(attempt: u32) -> Duration {
        // 2^6 · 0.5 s already passes the cap; the shift never overflows.
        let doublings = attempt.saturating_sub(1).min(6);
        (Backoff::FIRST * (1 << doublings)).min(Backoff::CAP)
    }

    /// Counts one more attempt and returns the wait before it: the nominal wait less up to a
    /// quarter of it, drawn from `randomness`.
    pub fn next_wait(&mut self, randomness: &Randomness) -> Duration {
        self.attempts = self.attempts.saturating_add(1);
        let nominal = Backoff::nominal(self.attempts);
        let draw = u16::from_le_bytes(randomness.bytes::<2>());
        // nominal · draw / 2^16 / 4: at most a quarter, never more than the nominal wait.
        let cut = nominal.mul_f64(f64::from(draw) / f64::from(u32::from(u16::MAX) + 1) / 4.0);
        nominal - cut
    }

    /// Connected again: the next loss starts from the first wait.
    pub fn reset(&mut self) {
        self.attempts = 0;
    }
}

/// The keep-alive interval when the configuration names none (`sip.keepalive_secs`).
pub const DEFAULT_KEEPALIVE: Duration = Duration::from_secs(30);

/// What [`KeepAlive::poll`] asks the shell to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeepAliveAction {
    /// Nothing now.
    Wait,
    /// Write a ping ([`KeepAlive::PING`]) to the connection.
    Ping,
    /// No pong came in time: the connection counts as lost.
    Dead,
}

/// RFC 5626 §4.4.1 keep-alives on a stream: a double-CRLF ping every `interval`; when nothing at
/// all arrives within [`KeepAlive::PONG_WITHIN`] of a ping (the CRLF pong, or any message), the
/// connection is dead, even though no error said so (a NAT that forgot the flow, a server gone
/// without a FIN).
#[derive(Debug, Clone)]
pub struct KeepAlive {
    interval: Duration,
    next_ping: Instant,
    /// When the ping still unanswered went out.
    awaiting: Option<Instant>,
}

impl KeepAlive {
    /// The ping (RFC 5626 §3.5.1): a double CRLF; the pong is a single one.
    pub const PING: &'static [u8] = b"\r\n\r\n";
    /// How long after a ping the pong may take (RFC 5626 §4.4.1: 10 s).
    pub const PONG_WITHIN: Duration = Duration::from_secs(10);

    /// Keep-alives every `interval` on a connection that came up at `now`.
    pub fn new(interval: Duration, now: Instant) -> KeepAlive {
        KeepAlive {
            interval,
            next_ping: now + interval,
            awaiting: None,
        }
    }

    /// Something arrived on the connection (a pong or a message): it is alive.
    pub fn heard(&mut self) {
        self.awaiting = None;
    }

    /// What to do at `now`; after [`KeepAliveAction::Ping`] the ping counts as written.
    pub fn poll(&mut self, now: Instant) -> KeepAliveAction {
        if let Some(sent) = self.awaiting
            && now >= sent + KeepAlive::PONG_WITHIN
        {
            return KeepAliveAction::Dead;
        }
        if now >= self.next_ping {
            self.next_ping = now + self.interval;
            // A ping while one is unanswered keeps the first one's deadline.
            self.awaiting.get_or_insert(now);
            return KeepAliveAction::Ping;
        }
        KeepAliveAction::Wait
    }

    /// When [`KeepAlive::poll`] next has something to do.
    pub fn deadline(&self) -> Instant {
        match self.awaiting {
            Some(sent) => self.next_ping.min(sent + KeepAlive::PONG_WITHIN),
            None => self.next_ping,
        }
    }
}

/// STUN's magic cookie (RFC 5389 §6).
const STUN_COOKIE: [u8; 4] = [0x21, 0x12, 0xa4, 0x42];

/// A STUN Binding request (RFC 5389 §6) with transaction id `txid` and no attributes: what a UDP
/// phone sends its SIP server as keep-alive (RFC 5626 §4.4.2).
pub fn stun_binding_request(txid: [u8; 12]) -> [u8; 20] {
    let mut out = [0u8; 20];
    out[..2].copy_from_slice(&[0x00, 0x01]);
    out[4..8].copy_from_slice(&STUN_COOKIE);
    out[8..].copy_from_slice(&txid);
    out
}

/// A STUN Binding success response (RFC 5389 §7.3): its transaction id and, when it carries a
/// well-formed XOR-MAPPED-ADDRESS, the address the server saw us come from (after any NAT).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StunAnswer {
    /// The transaction id of the request it answers.
    pub txid: [u8; 12],
    /// Our public address as the server saw it.
    pub mapped: Option<SocketAddr>,
}

impl StunAnswer {
    /// Reads `data` as a Binding success response; `None` for anything else (a SIP message, a
    /// malformed or truncated datagram, another STUN message). Never panics on what arrives.
    pub fn parse(data: &[u8]) -> Option<StunAnswer> {
        let header = data.get(..20)?;
        let length = usize::from(u16::from_be_bytes([header[2], header[3]]));
        if header[..2] != [0x01, 0x01] || header[4..8] != STUN_COOKIE || length != data.len() - 20 {
            return None;
        }
        let txid: [u8; 12] = header[8..20].try_into().ok()?;
        let mut mapped = None;
        let mut rest = &data[20..];
        // Attributes: type, length, value padded to four bytes (RFC 5389 §15).
        while let Some(head) = rest.get(..4) {
            let kind = u16::from_be_bytes([head[0], head[1]]);
            let len = usize::from(u16::from_be_bytes([head[2], head[3]]));
            let Some(value) = rest.get(4..4 + len) else {
                break;
            };
            if kind == 0x0020 {
                mapped = xor_mapped(value, &txid);
            }
            rest = rest.get(4 + len.next_multiple_of(4)..).unwrap_or(&[]);
        }
        Some(StunAnswer { txid, mapped })
    }
}

/// An XOR-MAPPED-ADDRESS value (RFC 5389 §15.2).
fn xor_mapped(value: &[u8], txid: &[u8; 12]) -> Option<SocketAddr> {
    let port = u16::from_be_bytes([*value.get(2)?, *value.get(3)?]) ^ 0x2112;
    let mask = STUN_COOKIE.iter().chain(txid);
    let ip = match (value.get(1)?, value.get(4..)?) {
        (0x01, addr) if addr.len() == 4 => {
            let octets: Vec<u8> = addr.iter().zip(mask).map(|(a, k)| a ^ k).collect();
            IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(octets).ok()?))
        }
        (0x02, addr) if addr.len() == 16 => {
            let octets: Vec<u8> = addr.iter().zip(mask).map(|(a, k)| a ^ k).collect();
            IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(octets).ok()?))
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

/// What [`StunKeepAlive::poll`] asks the shell to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StunAction {
    /// Nothing now.
    Wait,
    /// Send this datagram to the server (a Binding request or its retransmission; a CRLF when
    /// the server answers no STUN).
    Send(Vec<u8>),
    /// The server no longer answers: the flow has failed (RFC 5626 §4.4.2). Probing goes on.
    Dead,
    /// Send this Binding request: attempt `attempt` to reach the server again, after `waited`.
    Probe {
        /// The request.
        request: Vec<u8>,
        /// Which probe since the flow failed, from 1.
        attempt: u32,
        /// The back-off wait before it.
        waited: Duration,
    },
    /// The server never answered a Binding request: it does not do STUN. Keep-alives go on
    /// as CRLFs (they keep the NAT mapping open), and the server's loss goes unnoticed.
    NoStun,
}

/// What an answer to a Binding request tells ([`StunKeepAlive::answered`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StunHeard {
    /// Not the answer to our outstanding request (late, or someone else's): ignored.
    Stale,
    /// The server answers, the mapping as before.
    Alive,
    /// The server answers again after the flow had failed, at probe `attempt`: register again.
    Back {
        /// The probe that got through.
        attempt: u32,
    },
    /// Our public address changed (the NAT rebound the flow): register again, so the server
    /// sends to the new one.
    MappingChanged {
        /// The address before.
        from: SocketAddr,
        /// The address now.
        to: SocketAddr,
    },
}

/// The outstanding Binding request.
#[derive(Debug, Clone)]
struct Outstanding {
    txid: [u8; 12],
    /// When the transaction started (its first send).
    started: Instant,
    /// When to send it again, and the wait after that.
    retransmit_at: Instant,
    rto: Duration,
}

/// RFC 5626 §4.4.2 keep-alives over UDP: a STUN Binding request to the SIP server every
/// `interval` (at most [`StunKeepAlive::UDP_MAX`]: NATs commonly forget a UDP mapping after
/// 30 s), retransmitted as RFC 5389 §7.2.1 says (0.5 s, doubling) until answered. A transaction
/// unanswered within [`KeepAlive::PONG_WITHIN`] means the flow has failed (the server stopped,
/// restarted or is unreachable): the phone then probes with a new request after each
/// [`Backoff`] wait, and the first answer brings it back (and registers it again: a restarted
/// server has forgotten the registration). An answer showing another public address than
/// before means the NAT rebound the flow: register again too. A server that left the first
/// [`StunKeepAlive::NO_STUN_AFTER`] transactions unanswered, none ever answered, does no STUN:
/// then the keep-alives are CRLFs, as a SIP server over UDP absorbs them (RFC 5626 §4.4.1), and
/// its loss shows only as transaction timeouts.
#[derive(Debug, Clone)]
pub struct StunKeepAlive {
    interval: Duration,
    next_send: Instant,
    outstanding: Option<Outstanding>,
    /// Since the flow failed: the back-off between probes and the wait before the last one.
    lost: Option<(Backoff, Duration)>,
    /// The public address the last answer showed.
    mapped: Option<SocketAddr>,
    /// Whether the server answered any request yet; `false` after [`StunAction::NoStun`].
    stun: Option<bool>,
    /// Requests left unanswered before the server ever answered one.
    unanswered: u32,
}

impl StunKeepAlive {
    /// The longest interval over UDP: NATs commonly forget a UDP mapping after 30 s.
    pub const UDP_MAX: Duration = Duration::from_secs(25);
    /// The first retransmission wait (RFC 5389 §7.2.1's RTO).
    pub const RTO: Duration = Duration::from_millis(500);
    /// Transactions unanswered in a row, none ever answered, that mean the server does no STUN.
    pub const NO_STUN_AFTER: u32 = 3;

    /// Keep-alives every `interval` (at most [`Self::UDP_MAX`]) on a flow opened at `now`; the
    /// first request goes at once, so a flow is known to work (and the server to do STUN) from
    /// the start.
    pub fn new(interval: Duration, now: Instant) -> StunKeepAlive {
        StunKeepAlive {
            interval: interval.min(StunKeepAlive::UDP_MAX),
            next_send: now,
            outstanding: None,
            lost: None,
            mapped: None,
            stun: None,
            unanswered: 0,
        }
    }

    /// Whether the flow has failed and the server is being probed.
    pub fn is_lost(&self) -> bool {
        self.lost.is_some()
    }

    /// What to do at `now`; new transaction ids are drawn from `randomness`.
    pub fn poll(&mut self, now: Instant, randomness: &Randomness) -> StunAction {
        if self.stun == Some(false) {
            if now >= self.next_send {
                self.next_send = now + self.interval;
                return StunAction::Send(KeepAlive::PING.to_vec());
            }
            return StunAction::Wait;
        }
        if let Some(o) = &mut self.outstanding {
            if now >= o.started + KeepAlive::PONG_WITHIN {
                self.outstanding = None;
                if self.stun.is_none() {
                    // Never answered: a lossy start, or a server without STUN. Only a few whole
                    // transactions lost in a row say which.
                    self.unanswered += 1;
                    self.next_send = now + self.interval;
                    if self.unanswered < StunKeepAlive::NO_STUN_AFTER {
                        return StunAction::Wait;
                    }
                    self.stun = Some(false);
                    return StunAction::NoStun;
                }
                let newly = self.lost.is_none();
                let (backoff, waited) = self
                    .lost
                    .get_or_insert_with(|| (Backoff::new(), Duration::ZERO));
                *waited = backoff.next_wait(randomness);
                self.next_send = now + *waited;
                return if newly {
                    StunAction::Dead
                } else {
                    StunAction::Wait
                };
            }
            if now >= o.retransmit_at {
                o.rto *= 2;
                o.retransmit_at = now + o.rto;
                return StunAction::Send(stun_binding_request(o.txid).to_vec());
            }
            return StunAction::Wait;
        }
        if now < self.next_send {
            return StunAction::Wait;
        }
        let txid = randomness.bytes::<12>();
        self.outstanding = Some(Outstanding {
            txid,
            started: now,
            retransmit_at: now + StunKeepAlive::RTO,
            rto: StunKeepAlive::RTO,
        });
        let request = stun_binding_request(txid).to_vec();
        match &self.lost {
            Some((backoff, waited)) => StunAction::Probe {
                request,
                attempt: backoff.attempts(),
                waited: *waited,
            },
            None => StunAction::Send(request),
        }
    }

    /// A Binding success response arrived at `now`.
    pub fn answered(&mut self, answer: &StunAnswer, now: Instant) -> StunHeard {
        if self.outstanding.as_ref().map(|o| o.txid) != Some(answer.txid) {
            return StunHeard::Stale;
        }
        self.outstanding = None;
        self.stun = Some(true);
        self.next_send = now + self.interval;
        let before = self.mapped;
        self.mapped = answer.mapped.or(before);
        if let Some((backoff, _)) = self.lost.take() {
            return StunHeard::Back {
                attempt: backoff.attempts(),
            };
        }
        match (before, self.mapped) {
            (Some(from), Some(to)) if from != to => StunHeard::MappingChanged { from, to },
            _ => StunHeard::Alive,
        }
    }

    /// When [`Self::poll`] next has something to do.
    pub fn deadline(&self) -> Instant {
        match &self.outstanding {
            Some(o) if self.stun != Some(false) => {
                o.retransmit_at.min(o.started + KeepAlive::PONG_WITHIN)
            }
            _ => self.next_send,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::rand_core::SeedableRng as _;

    fn seeded(seed: u64) -> Randomness {
        Randomness::seeded(rand_chacha::ChaCha20Rng::seed_from_u64(seed))
    }

    #[test]
    fn the_waits_double_from_half_a_second_up_to_thirty() {
        let secs: Vec<f64> = (1..=9).map(|n| Backoff::nominal(n).as_secs_f64()).collect();
        assert_eq!(secs, [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]);
        assert_eq!(Backoff::nominal(u32::MAX), Backoff::CAP);
    }

    #[test]
    fn each_wait_is_its_nominal_less_at_most_a_quarter_and_reset_starts_over() {
        let rng = seeded(7);
        let mut b = Backoff::new();
        let mut waits = Vec::new();
        for n in 1..=40 {
            let w = b.next_wait(&rng);
            assert_eq!(b.attempts(), n);
            let nominal = Backoff::nominal(n);
            assert!(w <= nominal && w >= nominal.mul_f64(0.75), "{n}: {w:?}");
            waits.push(w);
        }
        // Jitter: the capped waits are not all the same.
        assert!(waits[10..].windows(2).any(|p| p[0] != p[1]), "{waits:?}");
        b.reset();
        assert_eq!(b.attempts(), 0);
        assert!(b.next_wait(&rng) <= Backoff::FIRST);
    }

    #[test]
    fn phones_with_different_randomness_wait_differently() {
        let (mut a, mut b) = (Backoff::new(), Backoff::new());
        let (ra, rb) = (seeded(1), seeded(2));
        let wa: Vec<_> = (0..8).map(|_| a.next_wait(&ra)).collect();
        let wb: Vec<_> = (0..8).map(|_| b.next_wait(&rb)).collect();
        assert_ne!(wa, wb);
    }

    #[test]
    fn a_ping_goes_every_interval_and_an_answer_keeps_the_connection() {
        let t0 = Instant::now();
        let mut k = KeepAlive::new(Duration::from_secs(30), t0);
        assert_eq!(k.deadline(), t0 + Duration::from_secs(30));
        assert_eq!(k.poll(t0 + Duration::from_secs(29)), KeepAliveAction::Wait);
        let t1 = t0 + Duration::from_secs(30);
        assert_eq!(k.poll(t1), KeepAliveAction::Ping);
        // Waiting for the pong: the deadline is its limit.
        assert_eq!(k.deadline(), t1 + KeepAlive::PONG_WITHIN);
        assert_eq!(k.poll(t1), KeepAliveAction::Wait, "one ping per interval");
        k.heard();
        assert_eq!(k.poll(t1 + Duration::from_secs(20)), KeepAliveAction::Wait);
        assert_eq!(k.deadline(), t1 + Duration::from_secs(30));
        assert_eq!(k.poll(t1 + Duration::from_secs(30)), KeepAliveAction::Ping);
    }

    #[test]
    fn no_pong_within_ten_seconds_is_a_dead_connection() {
        let t0 = Instant::now();
        let mut k = KeepAlive::new(Duration::from_secs(30), t0);
        let t1 = t0 + Duration::from_secs(30);
        assert_eq!(k.poll(t1), KeepAliveAction::Ping);
        assert_eq!(
            k.poll(t1 + Duration::from_millis(9_999)),
            KeepAliveAction::Wait
        );
        assert_eq!(k.poll(t1 + KeepAlive::PONG_WITHIN), KeepAliveAction::Dead);

        // With pings more often than the pong limit, the first unanswered one still counts.
        let mut k = KeepAlive::new(Duration::from_secs(4), t0);
        let t1 = t0 + Duration::from_secs(4);
        assert_eq!(k.poll(t1), KeepAliveAction::Ping);
        assert_eq!(k.poll(t1 + Duration::from_secs(4)), KeepAliveAction::Ping);
        assert_eq!(k.deadline(), t1 + Duration::from_secs(8));
        assert_eq!(k.poll(t1 + Duration::from_secs(8)), KeepAliveAction::Ping);
        assert_eq!(k.deadline(), t1 + KeepAlive::PONG_WITHIN);
        assert_eq!(k.poll(t1 + KeepAlive::PONG_WITHIN), KeepAliveAction::Dead);
    }
    /// sipd's answer to `request` from `from` (as crates/sipd's `udp_keepalive` builds it).
    fn binding_response(request: &[u8], from: SocketAddr) -> Vec<u8> {
        let SocketAddr::V4(v4) = from else {
            unreachable!("IPv4 in these tests")
        };
        let mut out = vec![0x01, 0x01, 0x00, 0x0c];
        out.extend_from_slice(&STUN_COOKIE);
        out.extend_from_slice(&request[8..20]);
        out.extend_from_slice(&[0x00, 0x20, 0x00, 0x08, 0x00, 0x01]);
        out.extend_from_slice(&(v4.port() ^ 0x2112).to_be_bytes());
        out.extend(v4.ip().octets().iter().zip(STUN_COOKIE).map(|(a, k)| a ^ k));
        out
    }

    fn request_of(action: StunAction) -> Vec<u8> {
        match action {
            StunAction::Send(r) | StunAction::Probe { request: r, .. } => r,
            other => panic!("not a request: {other:?}"),
        }
    }

    #[test]
    fn a_binding_response_gives_the_mapped_address_and_hostile_bytes_give_none() {
        let request = stun_binding_request([7; 12]);
        let from: SocketAddr = "203.0.113.100:40123".parse().unwrap();
        let response = binding_response(&request, from);
        let answer = StunAnswer::parse(&response).unwrap();
        assert_eq!(answer.txid, [7; 12]);
        assert_eq!(answer.mapped, Some(from));
        // Every truncation, and every single-byte change, parses or not without panicking.
        for n in 0..response.len() {
            assert_eq!(StunAnswer::parse(&response[..n]), None, "{n} bytes");
        }
        for i in 0..response.len() {
            let mut bad = response.clone();
            bad[i] ^= 0xff;
            let _ = StunAnswer::parse(&bad);
        }
        // A request, a SIP message, an attribute longer than the message: not an address.
        assert_eq!(StunAnswer::parse(&request), None);
        assert_eq!(StunAnswer::parse(b"SIP/2.0 200 OK\r\n\r\n"), None);
        let mut long = response.clone();
        long[22..24].copy_from_slice(&[0x00, 0x40]);
        assert_eq!(StunAnswer::parse(&long).unwrap().mapped, None);
    }

    #[test]
    fn an_unanswered_keep_alive_fails_the_flow_and_the_first_answered_probe_brings_it_back() {
        let rng = seeded(3);
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let from: SocketAddr = "203.0.113.100:40123".parse().unwrap();
        let mut k = StunKeepAlive::new(Duration::from_secs(60), t0);
        // The first request at once; the interval is capped at 25 s.
        let first = request_of(k.poll(t0, &rng));
        assert_eq!(k.poll(t0, &rng), StunAction::Wait);
        let heard = k.answered(
            &StunAnswer::parse(&binding_response(&first, from)).unwrap(),
            at(10),
        );
        assert_eq!(heard, StunHeard::Alive);
        assert_eq!(k.deadline(), at(25_010));

        // The next one goes unanswered: sent again 0.5, 1.5, 3.5 and 7.5 s after, same id.
        let t1 = 25_010;
        let request = request_of(k.poll(at(t1), &rng));
        for ms in [500, 1_500, 3_500, 7_500] {
            assert_eq!(k.deadline(), at(t1 + ms));
            assert_eq!(k.poll(at(t1 + ms - 1), &rng), StunAction::Wait);
            assert_eq!(request_of(k.poll(at(t1 + ms), &rng)), request);
        }
        assert!(!k.is_lost());
        assert_eq!(k.deadline(), at(t1 + 10_000));
        assert_eq!(k.poll(at(t1 + 10_000), &rng), StunAction::Dead);
        assert!(k.is_lost());

        // Probes after each back-off wait, each a new transaction; a late answer to an old one
        // is stale.
        let late = StunAnswer::parse(&binding_response(&request, from)).unwrap();
        assert_eq!(k.answered(&late, at(t1 + 10_001)), StunHeard::Stale);
        let mut now = at(t1 + 10_000);
        let mut probes = Vec::new();
        for attempt in 1..=2 {
            let wait = k.deadline() - now;
            assert!(wait <= Backoff::nominal(attempt), "{wait:?}");
            now += wait;
            let StunAction::Probe {
                request,
                attempt: n,
                waited,
            } = k.poll(now, &rng)
            else {
                panic!("a probe")
            };
            assert_eq!((n, waited), (attempt, wait));
            probes.push(request);
            if attempt == 1 {
                // Unanswered too: the next probe comes after the next back-off wait.
                now += KeepAlive::PONG_WITHIN;
                assert_eq!(k.poll(now, &rng), StunAction::Wait);
            }
        }
        assert_ne!(probes[0], probes[1]);
        let answer = StunAnswer::parse(&binding_response(&probes[1], from)).unwrap();
        assert_eq!(k.answered(&answer, now), StunHeard::Back { attempt: 2 });
        assert!(!k.is_lost());
        assert_eq!(k.deadline(), now + StunKeepAlive::UDP_MAX);
    }

    #[test]
    fn another_mapped_address_is_a_rebound_flow() {
        let rng = seeded(4);
        let t0 = Instant::now();
        let mut k = StunKeepAlive::new(Duration::from_secs(5), t0);
        let a: SocketAddr = "203.0.113.100:40123".parse().unwrap();
        let b: SocketAddr = "203.0.113.100:51000".parse().unwrap();
        let r = request_of(k.poll(t0, &rng));
        assert_eq!(
            k.answered(&StunAnswer::parse(&binding_response(&r, a)).unwrap(), t0),
            StunHeard::Alive
        );
        let t1 = t0 + Duration::from_secs(5);
        let r = request_of(k.poll(t1, &rng));
        assert_eq!(
            k.answered(&StunAnswer::parse(&binding_response(&r, b)).unwrap(), t1),
            StunHeard::MappingChanged { from: a, to: b }
        );
    }

    #[test]
    fn a_server_that_never_answers_stun_gets_crlf_keep_alives_and_is_never_declared_lost() {
        let rng = seeded(5);
        let t0 = Instant::now();
        let mut k = StunKeepAlive::new(Duration::from_secs(20), t0);
        request_of(k.poll(t0, &rng));
        let (now, action) = loop {
            let now = k.deadline();
            match k.poll(now, &rng) {
                StunAction::Send(_) | StunAction::Wait => {}
                other => break (now, other),
            }
        };
        assert_eq!(action, StunAction::NoStun);
        // Three whole transactions, the interval between them.
        let interval = Duration::from_secs(20);
        assert_eq!(now, t0 + KeepAlive::PONG_WITHIN * 3 + interval * 2);
        for n in 1..=3 {
            assert_eq!(k.deadline(), now + interval * n);
            assert_eq!(
                k.poll(k.deadline(), &rng),
                StunAction::Send(KeepAlive::PING.to_vec())
            );
        }
        assert!(!k.is_lost());
    }

    #[test]
    fn a_first_request_lost_on_the_way_does_not_turn_stun_off() {
        let rng = seeded(6);
        let t0 = Instant::now();
        let from: SocketAddr = "203.0.113.100:40123".parse().unwrap();
        let interval = Duration::from_secs(5);
        let mut k = StunKeepAlive::new(interval, t0);
        request_of(k.poll(t0, &rng));
        // The whole first transaction lost: nothing said, the next one after the interval.
        let t1 = t0 + KeepAlive::PONG_WITHIN;
        assert_eq!(k.poll(t1, &rng), StunAction::Wait);
        assert!(!k.is_lost());
        let second = request_of(k.poll(t1 + interval, &rng));
        let answer = StunAnswer::parse(&binding_response(&second, from)).unwrap();
        assert_eq!(k.answered(&answer, t1 + interval), StunHeard::Alive);
        // From now on the server is known to answer: silence is a failed flow.
        let t2 = t1 + interval * 2;
        request_of(k.poll(t2, &rng));
        let dead = loop {
            match k.poll(k.deadline(), &rng) {
                StunAction::Send(_) => {}
                other => break other,
            }
        };
        assert_eq!(dead, StunAction::Dead);
    }
}
