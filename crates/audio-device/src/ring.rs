//! A bounded single-producer single-consumer ring of `i16` samples between the audio callback
//! thread and the phone's task.
//!
//! Std only and without `unsafe`: each slot is an `AtomicI16`, and two monotonically increasing
//! counters say how many samples were ever written and read. The producer publishes its counter
//! with `Release` after storing the slots, the consumer reads it with `Acquire` before loading them
//! (and the other way round for freeing slots), so neither side ever waits for the other: a full
//! ring drops the newest samples, an empty one yields fewer than asked. The callers count both.

use std::sync::Arc;
use std::sync::atomic::{AtomicI16, AtomicUsize, Ordering};

struct Shared {
    slots: Box<[AtomicI16]>,
    /// Samples ever written (only the producer stores it).
    written: AtomicUsize,
    /// Samples ever read (only the consumer stores it).
    read: AtomicUsize,
}

/// The writing half; lives on one thread.
pub(crate) struct Producer {
    shared: Arc<Shared>,
}

/// The reading half; lives on one thread.
pub(crate) struct Consumer {
    shared: Arc<Shared>,
}

/// A ring holding up to `capacity` samples (at least one), split into its two halves.
pub(crate) fn ring(capacity: usize) -> (Producer, Consumer) {
    let capacity = capacity.max(1);
    let shared = Arc::new(Shared {
        slots: (0..capacity).map(|_| AtomicI16::new(0)).collect(),
        written: AtomicUsize::new(0),
        read: AtomicUsize::new(0),
    });
    (
        Producer {
            shared: shared.clone(),
        },
        Consumer { shared },
    )
}

impl Producer {
    /// Appends as many of `samples` as fit and returns how many did; never blocks. Takes an
    /// iterator so the audio callback converts straight into the ring, without a buffer.
    pub(crate) fn push(&self, samples: impl IntoIterator<Item = i16>) -> usize {
        let s = &*self.shared;
        let cap = s.slots.len();
        let written = s.written.load(Ordering::Relaxed);
        let read = s.read.load(Ordering::Acquire);
        let free = cap - written.wrapping_sub(read);
        let mut n = 0;
        for sample in samples.into_iter().take(free) {
            s.slots[written.wrapping_add(n) % cap].store(sample, Ordering::Relaxed);
            n += 1;
        }
        s.written.store(written.wrapping_add(n), Ordering::Release);
        n
    }
}

impl Consumer {
    /// Samples ready to be read.
    pub(crate) fn available(&self) -> usize {
        let s = &*self.shared;
        s.written
            .load(Ordering::Acquire)
            .wrapping_sub(s.read.load(Ordering::Relaxed))
    }

    /// Moves up to `out.len()` samples into `out` and returns how many; never blocks.
    pub(crate) fn pop(&self, out: &mut [i16]) -> usize {
        let mut slots = out.iter_mut();
        self.pop_each(slots.len(), |sample| {
            if let Some(slot) = slots.next() {
                *slot = sample;
            }
        })
    }

    /// Hands up to `max` samples, oldest first, to `each` and returns how many; never blocks.
    pub(crate) fn pop_each(&self, max: usize, mut each: impl FnMut(i16)) -> usize {
        let s = &*self.shared;
        let cap = s.slots.len();
        let read = s.read.load(Ordering::Relaxed);
        let n = self.available().min(max);
        for i in 0..n {
            each(s.slots[read.wrapping_add(i) % cap].load(Ordering::Relaxed));
        }
        s.read.store(read.wrapping_add(n), Ordering::Release);
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_ring_keeps_the_oldest_samples_and_reports_what_it_took() {
        let (tx, rx) = ring(4);
        assert_eq!(tx.push([1, 2, 3]), 3);
        assert_eq!(tx.push([4, 5, 6]), 1, "only one slot was free");
        let mut out = [0i16; 8];
        assert_eq!(rx.pop(&mut out), 4);
        assert_eq!(&out[..4], &[1, 2, 3, 4]);
        assert_eq!(rx.pop(&mut out), 0, "empty ring yields nothing");
    }

    #[test]
    fn samples_cross_threads_in_order_across_wrap_arounds() {
        let (tx, rx) = ring(7);
        let total = 10_000i32;
        let writer = std::thread::spawn(move || {
            let mut next = 0i32;
            while next < total {
                let chunk: Vec<i16> = (next..(next + 5).min(total)).map(|v| v as i16).collect();
                next += tx.push(chunk) as i32;
                std::thread::yield_now();
            }
        });
        let mut got = Vec::new();
        let mut buf = [0i16; 3];
        while got.len() < total as usize {
            let n = rx.pop(&mut buf);
            got.extend_from_slice(&buf[..n]);
            std::thread::yield_now();
        }
        writer.join().expect("writer thread");
        let want: Vec<i16> = (0..total).map(|v| v as i16).collect();
        assert_eq!(got, want);
    }
}
