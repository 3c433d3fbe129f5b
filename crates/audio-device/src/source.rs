//! What the phone reads its microphone frames from and writes its speaker frames to: a device,
//! silence, or WAV files (`audio = "wav"`, for tests and the demo), behind one pair of traits.

use std::path::{Path, PathBuf};

use chaincall_media::resample::{downsample_48k_to_8k, upsample_8k_to_48k};
use chaincall_media::wav;

use crate::error::{DeviceError, StreamFailure};
use crate::stream::{Capture, Playback, StreamOptions, StreamStats};

/// What [`AudioSource::read_frame`] did with the frame it was given.
#[must_use]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameResult {
    /// The frame was filled.
    Ready,
    /// Not enough audio yet; the frame was not touched. Ask again at the next tick.
    Pending,
    /// The source has no more audio (a WAV file ended); the frame was not touched.
    Ended,
    /// The device failed (unplugged, audio system error); every later read says so again.
    Failed(StreamFailure),
}

/// A microphone-like source of mono 16-bit frames at a fixed rate.
pub trait AudioSource: Send {
    /// The rate of the frames, in Hz.
    fn sample_rate(&self) -> u32;
    /// Fills `frame` (any length; the phone uses 20 ms) with the next samples. Never blocks.
    fn read_frame(&mut self, frame: &mut [i16]) -> FrameResult;
}

/// A speaker-like sink of mono 16-bit frames at a fixed rate.
pub trait AudioSink: Send {
    /// The rate of the frames, in Hz.
    fn sample_rate(&self) -> u32;
    /// Takes the next frame. Never blocks; fails once the device has failed.
    fn write_frame(&mut self, frame: &[i16]) -> Result<(), StreamFailure>;
}

/// Endless silence: the microphone when there is none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SilenceSource {
    rate: u32,
}

impl SilenceSource {
    /// Silence at `rate` Hz.
    pub fn new(rate: u32) -> Self {
        Self { rate }
    }
}

impl AudioSource for SilenceSource {
    fn sample_rate(&self) -> u32 {
        self.rate
    }

    fn read_frame(&mut self, frame: &mut [i16]) -> FrameResult {
        frame.fill(0);
        FrameResult::Ready
    }
}

/// Discards everything: the speaker when there is none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NullSink {
    rate: u32,
}

impl NullSink {
    /// A sink at `rate` Hz.
    pub fn new(rate: u32) -> Self {
        Self { rate }
    }
}

impl AudioSink for NullSink {
    fn sample_rate(&self) -> u32 {
        self.rate
    }

    fn write_frame(&mut self, _frame: &[i16]) -> Result<(), StreamFailure> {
        Ok(())
    }
}

fn wav_error(path: &Path, source: wav::WavError) -> DeviceError {
    DeviceError::Wav {
        path: path.display().to_string(),
        source,
    }
}

/// Checks a rate the WAV source and sink can serve: the file's 8 kHz, or 48 kHz through the
/// media resampler.
fn wav_rate(rate: u32) -> Result<u32, DeviceError> {
    match rate {
        8_000 | 48_000 => Ok(rate),
        other => Err(DeviceError::WavRate(other)),
    }
}

/// A WAV file (8 kHz mono, as `chaincall_media::wav` reads it) played as the microphone, at
/// 8 kHz or upsampled to 48 kHz; the last frame is padded with silence.
#[derive(Debug, Clone)]
pub struct WavSource {
    samples: Vec<i16>,
    position: usize,
    rate: u32,
}

impl WavSource {
    /// Reads `path` whole, for frames at `rate` Hz (8000 or 48000).
    pub fn open(path: impl AsRef<Path>, rate: u32) -> Result<Self, DeviceError> {
        let rate = wav_rate(rate)?;
        let path = path.as_ref();
        let samples = wav::read_file(path).map_err(|e| wav_error(path, e))?;
        Ok(Self::from_samples(samples, rate))
    }

    /// Plays `samples` (8 kHz) at `rate` Hz (8000 or 48000; any other rate keeps 8 kHz).
    fn from_samples(samples: Vec<i16>, rate: u32) -> Self {
        let (samples, rate) = if rate == 48_000 {
            (upsample_8k_to_48k(&samples), rate)
        } else {
            (samples, 8_000)
        };
        Self {
            samples,
            position: 0,
            rate,
        }
    }
}

impl AudioSource for WavSource {
    fn sample_rate(&self) -> u32 {
        self.rate
    }

    fn read_frame(&mut self, frame: &mut [i16]) -> FrameResult {
        let rest = &self.samples[self.position..];
        if rest.is_empty() && !frame.is_empty() {
            return FrameResult::Ended;
        }
        let n = rest.len().min(frame.len());
        frame[..n].copy_from_slice(&rest[..n]);
        frame[n..].fill(0);
        self.position += n;
        FrameResult::Ready
    }
}

/// Records what the phone plays into a WAV file (8 kHz mono PCM; 48 kHz frames are downsampled),
/// written by [`WavSink::finish`].
#[derive(Debug, Clone)]
pub struct WavSink {
    path: PathBuf,
    samples: Vec<i16>,
    rate: u32,
}

impl WavSink {
    /// A recorder into `path` taking frames at `rate` Hz (8000 or 48000).
    pub fn new(path: impl Into<PathBuf>, rate: u32) -> Result<Self, DeviceError> {
        Ok(Self {
            path: path.into(),
            samples: Vec::new(),
            rate: wav_rate(rate)?,
        })
    }

    /// Writes the file and returns the samples it holds (8 kHz).
    pub fn finish(self) -> Result<Vec<i16>, DeviceError> {
        let samples = if self.rate == 48_000 {
            downsample_48k_to_8k(&self.samples)
        } else {
            self.samples
        };
        wav::write_file(&self.path, &samples).map_err(|e| wav_error(&self.path, e))?;
        Ok(samples)
    }
}

impl AudioSink for WavSink {
    fn sample_rate(&self) -> u32 {
        self.rate
    }

    fn write_frame(&mut self, frame: &[i16]) -> Result<(), StreamFailure> {
        self.samples.extend_from_slice(frame);
        Ok(())
    }
}

/// The phone's microphone, whichever kind it is.
#[derive(Debug)]
pub enum Source {
    /// A capture device.
    Device(Capture),
    /// Silence (no device, or it failed).
    Silence(SilenceSource),
    /// A WAV file.
    Wav(WavSource),
}

impl Source {
    /// The capture device `options` names, or — when it cannot be opened — silence and the
    /// warning the shell logs (naming the device and why), so a call still goes through.
    pub fn open_or_silence(options: &StreamOptions) -> (Self, Option<String>) {
        match Capture::open(options) {
            Ok(capture) => (Source::Device(capture), None),
            Err(e) => (
                Source::Silence(SilenceSource::new(options.sample_rate)),
                Some(format!("microphone unavailable, sending silence: {e}")),
            ),
        }
    }

    /// The device's counters, when it is one.
    pub fn stats(&self) -> Option<StreamStats> {
        match self {
            Source::Device(capture) => Some(capture.stats()),
            _ => None,
        }
    }

    fn inner(&mut self) -> &mut dyn AudioSource {
        match self {
            Source::Device(s) => s,
            Source::Silence(s) => s,
            Source::Wav(s) => s,
        }
    }
}

impl AudioSource for Source {
    fn sample_rate(&self) -> u32 {
        match self {
            Source::Device(s) => s.sample_rate(),
            Source::Silence(s) => s.sample_rate(),
            Source::Wav(s) => s.sample_rate(),
        }
    }

    fn read_frame(&mut self, frame: &mut [i16]) -> FrameResult {
        self.inner().read_frame(frame)
    }
}

/// The phone's speaker, whichever kind it is.
#[derive(Debug)]
pub enum Sink {
    /// A playback device.
    Device(Playback),
    /// Nothing (no device, or it failed).
    Null(NullSink),
    /// A WAV recording.
    Wav(WavSink),
}

impl Sink {
    /// The playback device `options` names, or — when it cannot be opened — a sink that
    /// discards, and the warning the shell logs (naming the device and why).
    pub fn open_or_null(options: &StreamOptions) -> (Self, Option<String>) {
        match Playback::open(options) {
            Ok(playback) => (Sink::Device(playback), None),
            Err(e) => (
                Sink::Null(NullSink::new(options.sample_rate)),
                Some(format!("speaker unavailable, playing nothing: {e}")),
            ),
        }
    }

    /// The device's counters, when it is one.
    pub fn stats(&self) -> Option<StreamStats> {
        match self {
            Sink::Device(playback) => Some(playback.stats()),
            _ => None,
        }
    }

    fn inner(&mut self) -> &mut dyn AudioSink {
        match self {
            Sink::Device(s) => s,
            Sink::Null(s) => s,
            Sink::Wav(s) => s,
        }
    }
}

impl AudioSink for Sink {
    fn sample_rate(&self) -> u32 {
        match self {
            Sink::Device(s) => s.sample_rate(),
            Sink::Null(s) => s.sample_rate(),
            Sink::Wav(s) => s.sample_rate(),
        }
    }

    fn write_frame(&mut self, frame: &[i16]) -> Result<(), StreamFailure> {
        self.inner().write_frame(frame)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wav_source_plays_the_file_in_frames_then_ends_and_the_sink_records_it() {
        let dir = tempfile::tempdir().expect("temp dir");
        let input = dir.path().join("in.wav");
        let speech = chaincall_media::signal::speech_like(70, 5);
        wav::write_file(&input, &speech).expect("write wav");
        let output = dir.path().join("out.wav");
        for rate in [8_000, 48_000] {
            let mut source = Source::Wav(WavSource::open(&input, rate).expect("open wav"));
            let mut sink = WavSink::new(&output, rate).expect("sink");
            let mut frame = vec![0i16; rate as usize / 50];
            let mut frames = 0;
            while source.read_frame(&mut frame) == FrameResult::Ready {
                sink.write_frame(&frame).expect("write");
                frames += 1;
            }
            assert_eq!(frames, 4, "70 ms is three whole frames and a padded one");
            assert_eq!(source.read_frame(&mut frame), FrameResult::Ended);
            let recorded = sink.finish().expect("finish");
            assert_eq!(wav::read_file(&output).expect("read back"), recorded);
            if rate == 8_000 {
                assert_eq!(recorded[..speech.len()], speech[..]);
                assert!(recorded[speech.len()..].iter().all(|&s| s == 0));
            } else {
                // Through the 48 kHz round trip: the media resampler's accuracy.
                let err = speech
                    .iter()
                    .zip(&recorded)
                    .skip(20)
                    .take(speech.len() - 40)
                    .map(|(a, b)| (i32::from(*a) - i32::from(*b)).abs())
                    .max();
                assert!(err.is_some_and(|e| e < 600), "max error {err:?}");
            }
        }
    }

    #[test]
    fn wav_audio_refuses_other_rates_and_missing_files_clearly() {
        let err = WavSource::open("/nonexistent/mic.wav", 8_000).expect_err("missing file");
        assert!(err.to_string().contains("/nonexistent/mic.wav"), "{err}");
        let err = WavSink::new("/tmp/x.wav", 16_000).expect_err("16 kHz");
        assert!(err.to_string().contains("16000"), "{err}");
    }

    #[test]
    fn silence_and_null_take_any_frame() {
        let mut frame = [7i16; 160];
        let mut silence = Source::Silence(SilenceSource::new(8_000));
        assert_eq!(silence.read_frame(&mut frame), FrameResult::Ready);
        assert!(frame.iter().all(|&s| s == 0));
        let mut null = Sink::Null(NullSink::new(8_000));
        assert!(null.write_frame(&frame).is_ok());
        assert_eq!(null.sample_rate(), 8_000);
    }
}
