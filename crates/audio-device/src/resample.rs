//! Streaming use of `chaincall_media::resample` (8 kHz ↔ 48 kHz), whose functions convert whole
//! buffers: a device running at 48 kHz serves a G.711 phone at 8 kHz, and the other way round.
//!
//! The media filter is a symmetric FIR, so each output sample depends on a fixed number of input
//! samples either side of it. Feeding it overlapping windows — every window starting `CONTEXT`
//! input samples before the first output it is used for and ending `CONTEXT` after the last —
//! gives exactly the samples the whole-buffer call would give, whatever the chunking; the price is
//! `CONTEXT` input samples of latency (1 ms).

use chaincall_media::resample::{FACTOR, downsample_48k_to_8k, upsample_8k_to_48k};

/// The rate the media resampler converts from and to at 8 kHz.
const NARROW: u32 = 8_000;
/// Its wide rate.
const WIDE: u32 = NARROW * FACTOR as u32;
/// Half the media filter's length, in 48 kHz samples: what each output needs either side.
const HALF_TAPS_WIDE: usize = 48;

/// How one stream's samples are converted between the phone's rate and the device's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    /// Same rate: copied through.
    Copy,
    /// 8 kHz to 48 kHz.
    Up,
    /// 48 kHz to 8 kHz.
    Down,
}

/// Converts a stream of mono samples chunk by chunk; the output does not depend on the chunking.
#[derive(Debug, Clone)]
pub(crate) struct StreamResampler {
    direction: Direction,
    /// Input not yet converted, starting with the left context of the next output.
    pending: Vec<i16>,
}

impl StreamResampler {
    /// A converter from `from` Hz to `to` Hz, or `None` when the pair is not one the media
    /// resampler handles (equal rates, or 8 kHz and 48 kHz either way).
    pub(crate) fn new(from: u32, to: u32) -> Option<Self> {
        let direction = match (from, to) {
            _ if from == to => Direction::Copy,
            (NARROW, WIDE) => Direction::Up,
            (WIDE, NARROW) => Direction::Down,
            _ => return None,
        };
        // Zeros stand for the silence before the stream, as the whole-buffer functions assume.
        let context = Self::context(direction);
        Some(Self {
            direction,
            pending: vec![0; context],
        })
    }

    /// Whether `from` Hz can be converted to `to` Hz.
    pub(crate) fn supports(from: u32, to: u32) -> bool {
        Self::new(from, to).is_some()
    }

    /// Input samples each output needs on either side.
    fn context(direction: Direction) -> usize {
        match direction {
            Direction::Copy => 0,
            Direction::Up => HALF_TAPS_WIDE.div_ceil(FACTOR),
            Direction::Down => HALF_TAPS_WIDE,
        }
    }

    /// Converts `input` and appends what can be output so far to `out`.
    pub(crate) fn process(&mut self, input: &[i16], out: &mut Vec<i16>) {
        // Input samples consumed per step, and output samples each step yields.
        let (step_in, step_out) = match self.direction {
            Direction::Copy => {
                out.extend_from_slice(input);
                return;
            }
            Direction::Up => (1, FACTOR),
            Direction::Down => (FACTOR, 1),
        };
        let context = Self::context(self.direction);
        self.pending.extend_from_slice(input);
        let steps = self.pending.len().saturating_sub(2 * context) / step_in;
        if steps == 0 {
            return;
        }
        let window = &self.pending[..2 * context + steps * step_in];
        let converted = match self.direction {
            Direction::Up => upsample_8k_to_48k(window),
            _ => downsample_48k_to_8k(window),
        };
        // Output `j` of the window is aligned with window input `j · step_in / step_out`; the
        // first `context` inputs are only left context.
        let first = context / step_in * step_out;
        out.extend_from_slice(&converted[first..first + steps * step_out]);
        self.pending.drain(..steps * step_in);
    }
}

impl StreamResampler {
    /// Outputs what `process` still holds back for lack of right context, as if the stream
    /// went on in silence: the end of a call.
    pub(crate) fn flush(&mut self, out: &mut Vec<i16>) {
        let silence = vec![0; Self::context(self.direction)];
        self.process(&silence, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn speech(n: usize) -> Vec<i16> {
        chaincall_media::signal::speech_like(n.div_ceil(160) as u32 * 20, 3)[..n].to_vec()
    }

    #[test]
    fn chunked_conversion_gives_the_whole_buffer_conversion_in_both_directions() {
        let narrow = speech(1600);
        let wide = upsample_8k_to_48k(&narrow);
        for (from, to, input, whole) in [
            (NARROW, WIDE, &narrow, upsample_8k_to_48k(&narrow)),
            (WIDE, NARROW, &wide, downsample_48k_to_8k(&wide)),
        ] {
            // Odd chunk sizes, so chunks cut through the downsampler's groups of six.
            for chunk in [1, 7, 160, 961] {
                let mut r = StreamResampler::new(from, to).expect("supported pair");
                let mut out = Vec::new();
                for piece in input.chunks(chunk) {
                    r.process(piece, &mut out);
                }
                assert!(out.len() < whole.len(), "{from}->{to}: the tail waits");
                assert_eq!(out, whole[..out.len()], "{from}->{to} by {chunk}");
                r.flush(&mut out);
                assert_eq!(out, whole, "{from}->{to} by {chunk}, flushed");
            }
        }
    }

    #[test]
    fn equal_rates_copy_and_other_pairs_are_refused() {
        let mut r = StreamResampler::new(16_000, 16_000).expect("copy");
        let mut out = Vec::new();
        r.process(&[1, 2, 3], &mut out);
        assert_eq!(out, [1, 2, 3]);
        assert!(!StreamResampler::supports(44_100, 48_000));
        assert!(StreamResampler::supports(48_000, 8_000));
    }
}
