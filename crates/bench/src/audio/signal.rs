//! Audio arithmetic for the quality bench: any-rate PCM WAV files, a windowed-sinc resampler, and
//! the cross-correlation that finds how late a recording carries the reference.

use std::f64::consts::PI;
use std::path::Path;

use anyhow::{Context, Result, bail, ensure};

/// 16-bit PCM read from a WAV file, channels mixed down to mono.
#[derive(Debug, Clone)]
pub struct Pcm {
    /// Samples per second.
    pub rate: u32,
    /// Mono samples.
    pub samples: Vec<i16>,
}

/// Reads a 16-bit PCM WAV file of any rate and channel count, mixing the channels down. A `data`
/// chunk whose size field is 0 or too large (a writer killed before it closed the file) runs to
/// the end of the file.
pub fn read_wav(path: &Path) -> Result<Pcm> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    parse_wav(&bytes).with_context(|| format!("{} is no 16-bit PCM WAV file", path.display()))
}

fn parse_wav(b: &[u8]) -> Result<Pcm> {
    ensure!(
        b.len() >= 12 && &b[..4] == b"RIFF" && &b[8..12] == b"WAVE",
        "no RIFF/WAVE header"
    );
    let le16 = |at: usize| u16::from_le_bytes([b[at], b[at + 1]]);
    let le32 = |at: usize| u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
    let mut at = 12;
    let mut format = None;
    while at + 8 <= b.len() {
        let (id, size) = (&b[at..at + 4], le32(at + 4) as usize);
        let body = at + 8;
        if id == b"fmt " {
            ensure!(body + 16 <= b.len(), "short fmt chunk");
            let (tag, channels, rate, bits) =
                (le16(body), le16(body + 2), le32(body + 4), le16(body + 14));
            ensure!(
                (tag == 1 || tag == 0xFFFE) && bits == 16 && channels > 0 && rate > 0,
                "format tag {tag}, {bits} bits, {channels} channels: only 16-bit PCM"
            );
            format = Some((usize::from(channels), rate));
        } else if id == b"data" {
            let Some((channels, rate)) = format else {
                bail!("data before fmt");
            };
            let end = if size == 0 || body + size > b.len() {
                b.len()
            } else {
                body + size
            };
            let samples = b[body..end]
                .chunks_exact(2 * channels)
                .map(|frame| {
                    let sum: i32 = frame
                        .chunks_exact(2)
                        .map(|s| i32::from(i16::from_le_bytes([s[0], s[1]])))
                        .sum();
                    (sum / channels as i32) as i16
                })
                .collect();
            return Ok(Pcm { rate, samples });
        }
        at = body + size + (size & 1);
    }
    bail!("no data chunk")
}

/// Writes `samples` as a 16-bit PCM WAV file at `rate` with `channels` identical channels.
pub fn write_wav(path: &Path, rate: u32, channels: u16, samples: &[i16]) -> Result<()> {
    let data = samples.len() * 2 * usize::from(channels);
    let data = u32::try_from(data).context("too much audio for a WAV file")?;
    let block = 2 * channels;
    let mut out = Vec::with_capacity(44 + data as usize);
    for part in [
        &b"RIFF"[..],
        &(36 + data).to_le_bytes(),
        b"WAVEfmt ",
        &16u32.to_le_bytes(),
        &1u16.to_le_bytes(),
        &channels.to_le_bytes(),
        &rate.to_le_bytes(),
        &(rate * u32::from(block)).to_le_bytes(),
        &block.to_le_bytes(),
        &16u16.to_le_bytes(),
        b"data",
        &data.to_le_bytes(),
    ] {
        out.extend_from_slice(part);
    }
    for s in samples {
        for _ in 0..channels {
            out.extend_from_slice(&s.to_le_bytes());
        }
    }
    std::fs::write(path, out).with_context(|| format!("writing {}", path.display()))
}

/// Resamples `x` from `from` to `to` Hz with a Blackman-windowed sinc (16 zero crossings each
/// side, cut-off just under the lower Nyquist frequency): good enough that the bench's own
/// conversions stay far below what the codecs and the network do to the audio.
pub fn resample(x: &[i16], from: u32, to: u32) -> Vec<i16> {
    if from == to || x.is_empty() {
        return x.to_vec();
    }
    const ZEROS: f64 = 16.0;
    let ratio = f64::from(to) / f64::from(from);
    // Cut-off relative to the input rate, 0.95 of the lower Nyquist.
    let cutoff = 0.95 * ratio.min(1.0);
    let half = ZEROS / cutoff;
    let out_len = (x.len() as f64 * ratio).floor() as usize;
    (0..out_len)
        .map(|n| {
            let t = n as f64 / ratio;
            let lo = (t - half).ceil().max(0.0) as usize;
            let hi = ((t + half).floor() as usize).min(x.len() - 1);
            let mut acc = 0.0;
            for (k, &s) in x.iter().enumerate().take(hi + 1).skip(lo) {
                let d = k as f64 - t;
                let arg = PI * cutoff * d;
                let sinc = if arg.abs() < 1e-9 {
                    1.0
                } else {
                    arg.sin() / arg
                };
                let w = 0.42 + 0.5 * (PI * d / half).cos() + 0.08 * (2.0 * PI * d / half).cos();
                acc += f64::from(s) * cutoff * sinc * w;
            }
            acc.round().clamp(-32768.0, 32767.0) as i16
        })
        .collect()
}

/// How many samples later than `reference` the same audio starts in `recording` (both at one
/// rate), searched from `-max_early` to `max_late` samples: the lag with the largest
/// cross-correlation, found coarsely on a copy at an eighth of the rate, then exactly around it.
pub fn lag(reference: &[i16], recording: &[i16], max_early: usize, max_late: usize) -> i64 {
    let coarse = |x: &[i16]| -> Vec<f64> {
        x.chunks(8)
            .map(|c| c.iter().map(|&s| f64::from(s)).sum::<f64>() / c.len() as f64)
            .collect()
    };
    let (r8, d8) = (coarse(reference), coarse(recording));
    let best = |r: &[f64], d: &[f64], lags: std::ops::RangeInclusive<i64>| -> i64 {
        lags.max_by(|&a, &b| correlation(r, d, a).total_cmp(&correlation(r, d, b)))
            .unwrap_or(0)
    };
    let rough = best(&r8, &d8, -((max_early / 8) as i64)..=(max_late / 8) as i64) * 8;
    let (r, d): (Vec<f64>, Vec<f64>) = (
        reference.iter().map(|&s| f64::from(s)).collect(),
        recording.iter().map(|&s| f64::from(s)).collect(),
    );
    best(&r, &d, rough - 12..=rough + 12)
}

/// Σ r[i]·d[i + lag] over the overlap.
fn correlation(r: &[f64], d: &[f64], lag: i64) -> f64 {
    r.iter()
        .enumerate()
        .filter_map(|(i, &x)| {
            let j = i as i64 + lag;
            (0..d.len() as i64).contains(&j).then(|| x * d[j as usize])
        })
        .sum()
}

/// `recording` cut to start `lag` samples in (zeros before its start) and to `len` samples (zeros
/// after its end): aligned with the reference for scoring.
pub fn aligned(recording: &[i16], lag: i64, len: usize) -> Vec<i16> {
    (0..len as i64)
        .map(|i| {
            usize::try_from(i + lag)
                .ok()
                .and_then(|j| recording.get(j).copied())
                .unwrap_or(0)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chirp(rate: u32, ms: u32) -> Vec<i16> {
        (0..rate * ms / 1000)
            .map(|i| {
                let t = f64::from(i) / f64::from(rate);
                (8000.0 * (2.0 * PI * (200.0 + 600.0 * t) * t).sin()) as i16
            })
            .collect()
    }

    #[test]
    fn the_lag_of_a_delayed_copy_is_found_exactly() {
        let x = chirp(8000, 1000);
        let mut late = vec![0i16; 333];
        late.extend_from_slice(&x);
        assert_eq!(lag(&x, &late, 800, 4000), 333);
        assert_eq!(lag(&late, &x, 800, 4000), -333);
        assert_eq!(aligned(&late, 333, x.len()), x);
    }

    #[test]
    fn resampling_keeps_a_tone_and_the_length() {
        let x = chirp(8000, 500);
        let up = resample(&x, 8000, 48_000);
        assert_eq!(up.len(), x.len() * 6);
        let back = resample(&up, 48_000, 8000);
        let err: f64 = x[100..3900]
            .iter()
            .zip(&back[100..3900])
            .map(|(a, b)| (f64::from(*a) - f64::from(*b)).powi(2))
            .sum::<f64>()
            / 3800.0;
        assert!(err.sqrt() < 200.0, "rms error {}", err.sqrt());
    }

    #[test]
    fn wav_files_round_trip_and_stereo_is_mixed_down() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.wav");
        write_wav(&path, 48_000, 2, &[1, -2, 300]).unwrap();
        let pcm = read_wav(&path).unwrap();
        assert_eq!((pcm.rate, pcm.samples), (48_000, vec![1, -2, 300]));
        std::fs::write(&path, b"RIFF\0\0\0\0WAVEjunk").unwrap();
        assert!(read_wav(&path).is_err());
    }
}
