//! Sliding replay window (RFC 3711 §3.3.2) over packet indices, any size from 64 up.

use crate::error::SrtpError;

/// Smallest window RFC 3711 §3.3.2 allows (its SHOULD); also the default.
pub(crate) const MIN_WINDOW: usize = 64;
/// Largest window we accept (libsrtp's limit too): 32768 indices, 4 KiB of bitmap per stream.
pub(crate) const MAX_WINDOW: usize = 32768;

/// A bitmap ring of `size` indices behind the highest index seen: bit `i mod bits` is set when
/// index `i` was accepted. Allocated once per stream; checking and updating never allocate.
#[derive(Debug, Clone)]
pub(crate) struct ReplayWindow {
    top: Option<u64>,
    size: u64,
    bits: Box<[u64]>,
}

impl ReplayWindow {
    pub(crate) fn new(size: usize) -> Self {
        ReplayWindow {
            top: None,
            size: size as u64,
            bits: vec![0u64; size.div_ceil(64)].into_boxed_slice(),
        }
    }

    fn ring(&self) -> u64 {
        self.bits.len() as u64 * 64
    }

    fn bit(&self, index: u64) -> (usize, u64) {
        let pos = index % self.ring();
        ((pos / 64) as usize, 1u64 << (pos % 64))
    }

    /// The highest accepted index, if any.
    pub(crate) fn top(&self) -> Option<u64> {
        self.top
    }

    /// §3.3.2: an index ahead of the window is new; one behind it is too old; inside it, the
    /// bitmap says whether it was seen. Does not change the window (authenticate first).
    pub(crate) fn check(&self, index: u64) -> Result<(), SrtpError> {
        let Some(top) = self.top else { return Ok(()) };
        if index > top {
            return Ok(());
        }
        if top - index >= self.size {
            return Err(SrtpError::TooOld);
        }
        let (w, m) = self.bit(index);
        if self.bits[w] & m != 0 {
            Err(SrtpError::Replayed)
        } else {
            Ok(())
        }
    }

    /// Records an authenticated index (call only after `check` passed and the tag verified).
    pub(crate) fn update(&mut self, index: u64) {
        match self.top {
            None => {
                self.top = Some(index);
            }
            Some(top) if index > top => {
                let advance = index - top;
                if advance >= self.ring() {
                    self.bits.fill(0);
                } else {
                    // Clear the slots the window slides over: they held indices now too old.
                    for i in top + 1..=index {
                        let (w, m) = self.bit(i);
                        self.bits[w] &= !m;
                    }
                }
                self.top = Some(index);
            }
            Some(_) => {}
        }
        let (w, m) = self.bit(index);
        self.bits[w] |= m;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_of_64_accepts_in_order_rejects_replay_and_old() {
        let mut w = ReplayWindow::new(64);
        for i in 100..200 {
            w.check(i).unwrap();
            w.update(i);
            assert_eq!(w.check(i), Err(SrtpError::Replayed));
        }
        assert_eq!(w.check(199 - 63), Err(SrtpError::Replayed));
        assert_eq!(w.check(199 - 64), Err(SrtpError::TooOld));
        assert_eq!(w.check(200), Ok(()));
    }

    #[test]
    fn out_of_order_inside_window_is_accepted_once() {
        let mut w = ReplayWindow::new(64);
        w.update(1000);
        w.check(950).unwrap();
        w.update(950);
        assert_eq!(w.check(950), Err(SrtpError::Replayed));
        w.check(951).unwrap();
        // A big jump forgets everything behind the new window.
        w.update(1_000_000);
        assert_eq!(w.check(1000), Err(SrtpError::TooOld));
        w.check(1_000_000 - 63).unwrap();
    }

    #[test]
    fn larger_window_keeps_more_history() {
        let mut w = ReplayWindow::new(1024);
        for i in 0..5000u64 {
            if i % 3 != 0 {
                w.update(i);
            }
        }
        for i in (4999 - 1023)..5000 {
            let expect = if i % 3 != 0 {
                Err(SrtpError::Replayed)
            } else {
                Ok(())
            };
            assert_eq!(w.check(i), expect, "index {i}");
        }
        assert_eq!(w.check(4999 - 1024), Err(SrtpError::TooOld));
    }
}
