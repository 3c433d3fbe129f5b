//! A deterministic, speech-like 8 kHz test signal for calls without a microphone.
//!
//! Voiced "syllables" of 120–280 ms: a glottal-like harmonic series on a gliding pitch
//! (90–220 Hz), shaped by two formant resonances that change per syllable (F1 300–850 Hz,
//! F2 900–2400 Hz), under a raised-cosine envelope at syllable rate (≈ 4 Hz); after every 2–5
//! syllables a pause of 150–450 ms of near-silence. Same `seed`, same samples, on every platform
//! we build for (only `f64` arithmetic and `sin`/`exp`, rounded to `i16`).

use std::f64::consts::PI;

/// Samples per second.
pub const SAMPLE_RATE: u32 = 8000;

/// SplitMix64 (Steele, Lea, Flood 2014): a tiny, seedable, portable generator. Public so that
/// tests can drive seeded network models (loss, jitter) with the same generator; not for
/// anything secret.
#[derive(Debug, Clone)]
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    /// The next 64 random bits.
    #[allow(clippy::should_implement_trait)] // an infinite generator, not an `Iterator`
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [lo, hi).
    pub fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * ((self.next() >> 11) as f64 / (1u64 << 53) as f64)
    }
}

/// Gain of a formant resonance at `freq` (a Gaussian bump, bandwidth `bw`).
fn formant(freq: f64, centre: f64, bw: f64) -> f64 {
    let x = (freq - centre) / bw;
    (-0.5 * x * x).exp()
}

/// `duration_ms` milliseconds of speech-like audio at 8 kHz, determined by `seed`.
///
/// Peak amplitude stays below about half of full scale, so G.711 neither clips nor saturates.
pub fn speech_like(duration_ms: u32, seed: u64) -> Vec<i16> {
    let total = (u64::from(duration_ms) * u64::from(SAMPLE_RATE) / 1000) as usize;
    let mut out = Vec::with_capacity(total);
    let mut rng = SplitMix64(seed ^ 0x5EED_5EED_C0FF_EE00);
    let fs = f64::from(SAMPLE_RATE);
    let mut phase = 0.0f64; // of the fundamental, in radians
    let mut until_pause = 2 + rng.next() % 4;
    while out.len() < total {
        // One syllable.
        let len = (rng.range(0.12, 0.28) * fs) as usize;
        let f0_start = rng.range(90.0, 220.0);
        let f0_end = f0_start * rng.range(0.8, 1.2);
        let f1 = rng.range(300.0, 850.0);
        let f2 = rng.range(900.0, 2400.0);
        let loudness = rng.range(0.5, 1.0);
        for n in 0..len {
            if out.len() >= total {
                break;
            }
            let t = n as f64 / len as f64;
            let f0 = f0_start + (f0_end - f0_start) * t;
            phase = (phase + 2.0 * PI * f0 / fs) % (2.0 * PI * 1024.0);
            let envelope = 0.5 * (1.0 - (2.0 * PI * t).cos());
            let mut v = 0.0;
            let mut k = 1.0;
            while k * f0 < 3400.0 {
                let f = k * f0;
                // Glottal source falls about 12 dB per octave; formants shape it.
                let gain = (1.0 / k) * (0.15 + formant(f, f1, 90.0) + 0.6 * formant(f, f2, 140.0));
                v += gain * (k * phase).sin();
                k += 1.0;
            }
            out.push(
                (v * envelope * loudness * 5500.0)
                    .round()
                    .clamp(-16000.0, 16000.0) as i16,
            );
        }
        until_pause -= 1;
        if until_pause == 0 {
            until_pause = 2 + rng.next() % 4;
            let pause = (rng.range(0.15, 0.45) * fs) as usize;
            for _ in 0..pause {
                if out.len() >= total {
                    break;
                }
                // Faint noise, as a real line has: ±8 LSB.
                out.push((rng.next() % 17) as i16 - 8);
            }
        }
    }
    out
}

/// Normalised correlation of two signals over their common length (1.0: the same shape, 0: none
/// in common): how tests tell that audio which went through a codec is the audio that was sent.
pub fn correlation(a: &[i16], b: &[i16]) -> f64 {
    let (mut ab, mut aa, mut bb) = (0.0f64, 0.0f64, 0.0f64);
    for (&x, &y) in a.iter().zip(b) {
        let (x, y) = (f64::from(x), f64::from(y));
        ab += x * y;
        aa += x * x;
        bb += y * y;
    }
    ab / (aa.sqrt() * bb.sqrt()).max(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_length_and_level() {
        let a = speech_like(3000, 7);
        assert_eq!(a.len(), 24_000);
        assert_eq!(a, speech_like(3000, 7));
        assert_ne!(a, speech_like(3000, 8));
        let peak = a.iter().map(|s| s.unsigned_abs()).max().unwrap();
        assert!(peak > 3000 && peak <= 16000, "peak {peak}");
        // Pauses: some 20 ms frames are near-silent, most are not.
        let quiet = a
            .chunks(160)
            .filter(|f| f.iter().all(|s| s.unsigned_abs() < 64))
            .count();
        assert!(quiet > 5 && quiet < 75, "{quiet} quiet frames of 150");
    }
}
