//! The signalling link's timing, as small pure types the shell ([`crate::phone`]) drives: the
//! back-off between reconnect attempts ([`Backoff`]) and the CRLF keep-alive on the stream
//! ([`KeepAlive`]).

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
    /// Whether a pong is expected (streams); over UDP the ping only keeps NAT bindings open.
    expects_pong: bool,
}

impl KeepAlive {
    /// The ping (RFC 5626 §3.5.1): a double CRLF; the pong is a single one.
    pub const PING: &'static [u8] = b"\r\n\r\n";
    /// How long after a ping the pong may take (RFC 5626 §4.4.1: 10 s).
    pub const PONG_WITHIN: Duration = Duration::from_secs(10);

    /// The longest interval over UDP: NATs commonly forget a UDP binding after 30 s.
    pub const UDP_MAX: Duration = Duration::from_secs(25);

    /// Keep-alives every `interval` on a connection that came up at `now`.
    pub fn new(interval: Duration, now: Instant) -> KeepAlive {
        KeepAlive {
            interval,
            next_ping: now + interval,
            awaiting: None,
            expects_pong: true,
        }
    }

    /// Keep-alives over UDP: the same CRLF ping every `interval` (at most [`KeepAlive::UDP_MAX`])
    /// to keep NAT bindings open, no pong expected (a SIP server over UDP need not answer one;
    /// lost signalling shows as transaction timeouts instead).
    pub fn datagram(interval: Duration, now: Instant) -> KeepAlive {
        let interval = interval.min(KeepAlive::UDP_MAX);
        KeepAlive {
            expects_pong: false,
            ..KeepAlive::new(interval, now)
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
            if self.expects_pong {
                // A ping while one is unanswered keeps the first one's deadline.
                self.awaiting.get_or_insert(now);
            }
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
    fn over_udp_pings_go_at_most_every_25_seconds_and_expect_no_pong() {
        let t0 = Instant::now();
        let mut k = KeepAlive::datagram(Duration::from_secs(30), t0);
        let t1 = t0 + Duration::from_secs(25);
        assert_eq!(k.poll(t1 - Duration::from_millis(1)), KeepAliveAction::Wait);
        assert_eq!(k.poll(t1), KeepAliveAction::Ping);
        assert_eq!(k.deadline(), t1 + Duration::from_secs(25));
        assert_eq!(k.poll(t1 + KeepAlive::PONG_WITHIN), KeepAliveAction::Wait);
        assert_eq!(k.poll(t1 + Duration::from_secs(25)), KeepAliveAction::Ping);
        let mut k = KeepAlive::datagram(Duration::from_secs(5), t0);
        assert_eq!(k.poll(t0 + Duration::from_secs(5)), KeepAliveAction::Ping);
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
}
