//! The signalling link's timing, as small pure types the shell ([`crate::phone`]) drives: the
//! back-off between reconnect attempts ([`Backoff`]).

use std::time::Duration;

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
}
