//! 8 kHz ↔ 48 kHz conversion for sending 8 kHz sources (WAV files, the test signal) over Opus
//! and recording Opus calls to 8 kHz WAV: a 97-tap Hann-windowed sinc low-pass at 3.9 kHz,
//! applied polyphase (factor 6). Whole buffers, delay compensated: sample `i` at 8 kHz lines up
//! with sample `6·i` at 48 kHz.

/// The rate ratio.
pub const FACTOR: usize = 6;
/// The narrow rate converted from and to, Hz (G.711).
pub const NARROW_RATE: u32 = 8_000;
/// The wide rate, Hz (Opus).
pub const WIDE_RATE: u32 = NARROW_RATE * FACTOR as u32;
const TAPS: usize = 97;
/// The filter's group delay in 48 kHz samples ((TAPS − 1) / 2).
const DELAY: usize = (TAPS - 1) / 2;

fn filter() -> [f64; TAPS] {
    let fc = 3900.0 / 48_000.0;
    let mut h = [0.0; TAPS];
    for (n, tap) in h.iter_mut().enumerate() {
        let x = n as f64 - DELAY as f64;
        let sinc = if x == 0.0 {
            2.0 * fc
        } else {
            (2.0 * std::f64::consts::PI * fc * x).sin() / (std::f64::consts::PI * x)
        };
        let hann = 0.5 - 0.5 * (2.0 * std::f64::consts::PI * n as f64 / (TAPS - 1) as f64).cos();
        *tap = sinc * hann;
    }
    // Unity gain at DC.
    let sum: f64 = h.iter().sum();
    h.map(|t| t / sum)
}

fn clamp(v: f64) -> i16 {
    v.round().clamp(f64::from(i16::MIN), f64::from(i16::MAX)) as i16
}

/// 8 kHz PCM to 48 kHz (six samples out per sample in).
pub fn upsample_8k_to_48k(input: &[i16]) -> Vec<i16> {
    let h = filter();
    (0..input.len() * FACTOR)
        .map(|m| {
            // y[m] = 6 · Σ x[k] h[m + DELAY − 6k]: zero-stuffed input through the low-pass.
            let centre = m + DELAY;
            let k_hi = (centre / FACTOR).min(input.len().saturating_sub(1));
            let k_lo = centre.saturating_sub(TAPS - 1).div_ceil(FACTOR);
            let acc: f64 = (k_lo..=k_hi)
                .map(|k| f64::from(input[k]) * h[centre - FACTOR * k])
                .sum();
            clamp(acc * FACTOR as f64)
        })
        .collect()
}

/// 48 kHz PCM to 8 kHz (one sample out per six in; a trailing partial group is dropped).
pub fn downsample_48k_to_8k(input: &[i16]) -> Vec<i16> {
    let h = filter();
    (0..input.len() / FACTOR)
        .map(|k| {
            let centre = FACTOR * k + DELAY;
            let acc: f64 = h
                .iter()
                .enumerate()
                .filter_map(|(n, t)| {
                    let i = centre.checked_sub(n)?;
                    input.get(i).map(|&x| f64::from(x) * t)
                })
                .sum();
            clamp(acc)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tone_survives_the_round_trip_and_nothing_panics_on_edges() {
        let tone: Vec<i16> = (0..800)
            .map(|i| {
                (8000.0 * (2.0 * std::f64::consts::PI * 440.0 * i as f64 / 8000.0).sin()) as i16
            })
            .collect();
        let up = upsample_8k_to_48k(&tone);
        assert_eq!(up.len(), 4800);
        // Aligned: every sixth sample is close to the input (away from the edges).
        for i in 20..780 {
            assert!(
                (i32::from(up[6 * i]) - i32::from(tone[i])).abs() < 200,
                "{i}"
            );
        }
        let back = downsample_48k_to_8k(&up);
        assert_eq!(back.len(), 800);
        for i in 20..780 {
            assert!((i32::from(back[i]) - i32::from(tone[i])).abs() < 200, "{i}");
        }
        assert!(upsample_8k_to_48k(&[]).is_empty());
        assert_eq!(upsample_8k_to_48k(&[i16::MAX]).len(), 6);
        assert!(downsample_48k_to_8k(&[1, 2, 3]).is_empty());
    }
}
