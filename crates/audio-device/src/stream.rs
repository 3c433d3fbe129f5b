//! Capture and playback on a cpal device: 20 ms mono `i16` frames at the phone's rate, handed
//! across bounded lock-free rings between the audio callback thread and the phone's task.
//!
//! The callbacks only convert samples (format, channels) and move them through the ring: no
//! locks, no allocation, no waiting, so a slow phone task can never stall the sound card. When a
//! ring is full the newest samples are dropped (an overrun); when playback runs dry it plays
//! silence (an underrun). Both are counted in [`StreamStats`]. Rate conversion, when the device
//! cannot run at the phone's rate, happens on the phone's side of the ring.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use cpal::traits::{DeviceTrait, StreamTrait};
use cpal::{FromSample, Sample, SampleFormat, SizedSample};

use crate::enumerate::{DeviceSelector, find_device, offered_rates};
use crate::error::{DeviceError, Direction, StreamFailure};
use crate::resample::StreamResampler;
use crate::ring::{Consumer, Producer, ring};
use crate::source::{AudioSink, AudioSource, FrameResult};

/// Frame duration the phone works in (RTP packetisation for G.711 and Opus).
pub const FRAME_MS: u32 = 20;

/// Which device to open and at what rate the phone wants its frames.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamOptions {
    /// The device.
    pub device: DeviceSelector,
    /// The phone's rate in Hz: 48000 for Opus, 8000 for G.711.
    pub sample_rate: u32,
    /// How much audio the ring between callback and phone holds, in milliseconds: the most the
    /// phone's task may lag behind the device before samples are dropped.
    pub buffer_ms: u32,
    /// Playback only: how much audio must be queued before the device starts playing it (and
    /// again after it ran dry), in milliseconds; absorbs the phone task's scheduling jitter.
    pub prebuffer_ms: u32,
    /// Run the device at this rate rather than the phone's (8000 or 48000, converted with
    /// `chaincall_media::resample`); `None` picks the phone's rate when the device offers it.
    pub device_rate: Option<u32>,
}

impl StreamOptions {
    /// `device` at `sample_rate` Hz with a 200 ms ring and a 40 ms playback prebuffer.
    pub fn new(device: DeviceSelector, sample_rate: u32) -> Self {
        Self {
            device,
            sample_rate,
            buffer_ms: 200,
            prebuffer_ms: 2 * FRAME_MS,
            device_rate: None,
        }
    }

    /// Samples in one 20 ms frame at the phone's rate.
    pub fn frame_len(&self) -> usize {
        samples_in(self.sample_rate, FRAME_MS)
    }
}

fn samples_in(rate: u32, ms: u32) -> usize {
    (u64::from(rate) * u64::from(ms) / 1000) as usize
}

/// Counters of one stream, for the call report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct StreamStats {
    /// Frames the phone read (capture) or wrote (playback).
    pub frames: u64,
    /// Samples dropped because the ring was full: capture, the phone read too slowly; playback,
    /// it wrote faster than the device plays.
    pub overrun_samples: u64,
    /// Playback only: samples of silence played because, once playing, the phone had not written
    /// the next frame in time (the silence before the prebuffer first fills is not counted).
    pub underrun_samples: u64,
    /// Over- and underruns the audio system itself reported (ALSA xruns).
    pub device_xruns: u64,
}

/// What the callback thread and the error callback tell the phone's side.
#[derive(Debug, Default)]
struct Health {
    overruns: AtomicU64,
    underruns: AtomicU64,
    xruns: AtomicU64,
    failed: AtomicBool,
    /// Only touched by the error callback and after `failed` is seen, never by the data callback.
    failure: Mutex<Option<String>>,
}

impl Health {
    fn report(&self, error: &cpal::Error) {
        match error.kind() {
            cpal::ErrorKind::Xrun => {
                self.xruns.fetch_add(1, Ordering::Relaxed);
            }
            // The stream keeps running in both cases.
            cpal::ErrorKind::DeviceChanged | cpal::ErrorKind::RealtimeDenied => {}
            _ => {
                // A poisoned lock still holds a valid `Option<String>`; the failure must not
                // be lost to an unrelated panic.
                let mut failure = self.failure.lock().unwrap_or_else(|p| p.into_inner());
                failure.get_or_insert_with(|| error.to_string());
                self.failed.store(true, Ordering::Release);
            }
        }
    }

    fn failure(&self, device: &str, direction: Direction) -> Option<StreamFailure> {
        if !self.failed.load(Ordering::Acquire) {
            return None;
        }
        let reason = self
            .failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .unwrap_or_default();
        Some(StreamFailure {
            device: device.to_owned(),
            direction,
            reason,
        })
    }

    fn stats(&self, frames: u64) -> StreamStats {
        StreamStats {
            frames,
            overrun_samples: self.overruns.load(Ordering::Relaxed),
            underrun_samples: self.underruns.load(Ordering::Relaxed),
            device_xruns: self.xruns.load(Ordering::Relaxed),
        }
    }
}

/// The device configuration a stream runs with.
struct Chosen {
    config: cpal::StreamConfig,
    format: SampleFormat,
}

/// Preference among the sample formats the callbacks convert, best first.
const FORMATS: [SampleFormat; 5] = [
    SampleFormat::I16,
    SampleFormat::F32,
    SampleFormat::I32,
    SampleFormat::U16,
    SampleFormat::U8,
];

/// Picks the device configuration: the phone's rate if the device has it, else one the media
/// resampler converts from; then the best format, mono if offered, else the fewest channels.
fn choose(
    device: &cpal::Device,
    name: &str,
    direction: Direction,
    wanted: u32,
    forced: Option<u32>,
) -> Result<Chosen, DeviceError> {
    let ranges = match direction {
        Direction::Input => device.supported_input_configs().map(Iterator::collect),
        Direction::Output => device.supported_output_configs().map(Iterator::collect),
    }
    .map_err(|e| DeviceError::Backend {
        device: name.to_owned(),
        direction,
        what: "asking for its stream formats",
        reason: e.to_string(),
    })?;
    choose_among(ranges, name, direction, wanted, forced)
}

/// [`choose`] over the configurations a device offers.
fn choose_among(
    ranges: Vec<cpal::SupportedStreamConfigRange>,
    name: &str,
    direction: Direction,
    wanted: u32,
    forced: Option<u32>,
) -> Result<Chosen, DeviceError> {
    let ranges: Vec<_> = ranges
        .into_iter()
        .filter(|r| FORMATS.contains(&r.sample_format()) && r.channels() > 0)
        .collect();
    if ranges.is_empty() {
        return Err(DeviceError::NoUsableConfig {
            device: name.to_owned(),
            direction,
        });
    }
    let rank = |r: &cpal::SupportedStreamConfigRange| {
        let format = FORMATS.iter().position(|f| *f == r.sample_format());
        (
            format.unwrap_or(usize::MAX),
            r.channels() != 1,
            r.channels(),
        )
    };
    let candidates = forced
        .map_or(vec![wanted, 48_000, 8_000], |rate| vec![rate])
        .into_iter()
        .filter(|&rate| StreamResampler::supports(rate, wanted));
    for rate in candidates {
        if let Some(range) = ranges
            .iter()
            .filter(|r| (r.min_sample_rate()..=r.max_sample_rate()).contains(&rate))
            .min_by_key(|r| rank(r))
        {
            return Ok(Chosen {
                config: cpal::StreamConfig {
                    channels: range.channels(),
                    sample_rate: rate,
                    buffer_size: cpal::BufferSize::Default,
                },
                format: range.sample_format(),
            });
        }
    }
    Err(DeviceError::UnsupportedRate {
        device: name.to_owned(),
        direction,
        wanted,
        offered: offered_rates(&ranges),
    })
}

/// What capture and playback share: the running cpal stream and the phone side's bookkeeping.
struct Running {
    /// Keeps the device running; dropping it stops the callback.
    _stream: cpal::Stream,
    health: Arc<Health>,
    /// Converts between the phone's rate and the device's, in the stream's direction.
    resampler: StreamResampler,
    /// Device-rate samples on their way to or from the ring, reused between frames.
    scratch: Vec<i16>,
    device: String,
    direction: Direction,
    rate: u32,
    device_rate: u32,
    frames: u64,
}

impl std::fmt::Debug for Running {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stream")
            .field("device", &self.device)
            .field("direction", &self.direction)
            .field("rate", &self.rate)
            .field("device_rate", &self.device_rate)
            .finish_non_exhaustive()
    }
}

impl Running {
    fn failure(&self) -> Option<StreamFailure> {
        self.health.failure(&self.device, self.direction)
    }

    fn stats(&self) -> StreamStats {
        self.health.stats(self.frames)
    }
}

/// Opens a stream: finds the device, chooses its configuration, builds and starts the cpal
/// stream with the callback `build` makes for the chosen sample format and ring size.
fn open(
    options: &StreamOptions,
    direction: Direction,
    build: impl FnOnce(&cpal::Device, &Chosen, usize, Arc<Health>) -> Result<cpal::Stream, cpal::Error>,
) -> Result<Running, DeviceError> {
    if options.sample_rate == 0 {
        return Err(DeviceError::ZeroRate);
    }
    let (device, name) = find_device(&options.device, direction)?;
    let chosen = choose(
        &device,
        &name,
        direction,
        options.sample_rate,
        options.device_rate,
    )?;
    let device_rate = chosen.config.sample_rate;
    let health = Arc::new(Health::default());
    let backend = |what, e: cpal::Error| DeviceError::Backend {
        device: name.clone(),
        direction,
        what,
        reason: e.to_string(),
    };
    let capacity = samples_in(device_rate, options.buffer_ms).max(1);
    let stream = build(&device, &chosen, capacity, health.clone())
        .map_err(|e| backend("opening the stream", e))?;
    stream
        .play()
        .map_err(|e| backend("starting the stream", e))?;
    let (from, to) = match direction {
        Direction::Input => (device_rate, options.sample_rate),
        Direction::Output => (options.sample_rate, device_rate),
    };
    Ok(Running {
        _stream: stream,
        health,
        resampler: StreamResampler::new(from, to)
            .expect("choose() only picks rates the resampler converts"),
        scratch: Vec::new(),
        device: name,
        direction,
        rate: options.sample_rate,
        device_rate,
        frames: 0,
    })
}

/// A microphone: the phone reads 20 ms frames from it.
pub struct Capture {
    running: Running,
    rx: Consumer,
    /// Phone-rate samples not yet handed out.
    pending: Vec<i16>,
}

impl std::fmt::Debug for Capture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.running.fmt(f)
    }
}

fn build_capture<T>(
    device: &cpal::Device,
    config: &cpal::StreamConfig,
    tx: Producer,
    health: Arc<Health>,
) -> Result<cpal::Stream, cpal::Error>
where
    T: SizedSample + Send + 'static,
    i16: FromSample<T>,
{
    let channels = usize::from(config.channels);
    let errors = health.clone();
    device.build_input_stream::<T, _, _>(
        *config,
        move |data: &[T], _| {
            // Mono: the mean of the channels.
            let frames = data.chunks_exact(channels).map(|frame| {
                let sum: i32 = frame.iter().map(|s| i32::from(i16::from_sample(*s))).sum();
                (sum / channels as i32) as i16
            });
            let offered = data.len() / channels;
            let taken = tx.push(frames);
            if taken < offered {
                health
                    .overruns
                    .fetch_add((offered - taken) as u64, Ordering::Relaxed);
            }
        },
        move |error| errors.report(&error),
        None,
    )
}

impl Capture {
    /// Opens and starts the device. Errors name the device and say what failed.
    pub fn open(options: &StreamOptions) -> Result<Self, DeviceError> {
        let mut rx = None;
        let running = open(options, Direction::Input, |d, c, capacity, h| {
            let (tx, consumer) = ring(capacity);
            rx = Some(consumer);
            match c.format {
                SampleFormat::I16 => build_capture::<i16>(d, &c.config, tx, h),
                SampleFormat::F32 => build_capture::<f32>(d, &c.config, tx, h),
                SampleFormat::I32 => build_capture::<i32>(d, &c.config, tx, h),
                SampleFormat::U16 => build_capture::<u16>(d, &c.config, tx, h),
                _ => build_capture::<u8>(d, &c.config, tx, h),
            }
        })?;
        Ok(Self {
            running,
            rx: rx.expect("the build closure ran, since the stream was built"),
            pending: Vec::new(),
        })
    }

    /// The device's name (as [`crate::list_devices`] shows it).
    pub fn device_name(&self) -> &str {
        &self.running.device
    }

    /// The rate the device runs at; differs from the phone's when frames are resampled.
    pub fn device_rate(&self) -> u32 {
        self.running.device_rate
    }

    /// The stream's counters.
    pub fn stats(&self) -> StreamStats {
        self.running.stats()
    }
}

impl AudioSource for Capture {
    fn sample_rate(&self) -> u32 {
        self.running.rate
    }

    /// Fills `frame` when enough audio has been captured ([`FrameResult::Ready`]); otherwise
    /// leaves it alone and says [`FrameResult::Pending`]. Never blocks.
    fn read_frame(&mut self, frame: &mut [i16]) -> FrameResult {
        let r = &mut self.running;
        if let Some(failure) = r.failure() {
            return FrameResult::Failed(failure);
        }
        // Take only what this frame needs, so the bounded ring (not `pending`) absorbs a slow
        // reader and its overruns are counted.
        while self.pending.len() < frame.len() {
            let missing = frame.len() - self.pending.len();
            let want =
                (missing as u64 * u64::from(r.device_rate)).div_ceil(u64::from(r.rate)) as usize;
            r.scratch.resize(want.max(1), 0);
            let got = self.rx.pop(&mut r.scratch);
            if got == 0 {
                return FrameResult::Pending;
            }
            r.resampler.process(&r.scratch[..got], &mut self.pending);
        }
        frame.copy_from_slice(&self.pending[..frame.len()]);
        self.pending.drain(..frame.len());
        r.frames += 1;
        FrameResult::Ready
    }
}

/// A speaker: the phone writes 20 ms frames to it.
pub struct Playback {
    running: Running,
    tx: Producer,
    /// Samples still in the ring, as the callback sees them (shared with it).
    queued: Arc<Consumer>,
    /// Set by [`Playback::flush`]: play what is queued even below the prebuffer threshold.
    flushing: Arc<AtomicBool>,
}

impl std::fmt::Debug for Playback {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.running.fmt(f)
    }
}

/// What the playback callback owns besides the device configuration.
struct PlaybackCallback {
    rx: Arc<Consumer>,
    health: Arc<Health>,
    flushing: Arc<AtomicBool>,
    /// Samples queued before playing starts (the prebuffer).
    prime: usize,
    /// The ring's size.
    capacity: usize,
}

fn build_playback<T>(
    device: &cpal::Device,
    config: &cpal::StreamConfig,
    callback: PlaybackCallback,
) -> Result<cpal::Stream, cpal::Error>
where
    T: SizedSample + FromSample<i16> + Send + 'static,
{
    let PlaybackCallback {
        rx,
        health,
        flushing,
        prime,
        capacity,
    } = callback;
    let channels = usize::from(config.channels);
    let errors = health.clone();
    // Play silence until `prime` samples — and at least one device period — are queued (at the
    // start and after running dry), so a phone writing one frame per tick does not underrun on
    // every period; never more than the ring holds, or playback would never start.
    let mut primed = false;
    device.build_output_stream::<T, _, _>(
        *config,
        move |data: &mut [T], _| {
            let wanted = data.len() / channels;
            if !primed {
                let queued = rx.available();
                primed = queued >= prime.max(wanted).min(capacity)
                    || (queued > 0 && flushing.load(Ordering::Relaxed));
            }
            let mut frames = data.chunks_exact_mut(channels);
            let played = if primed {
                rx.pop_each(wanted, |sample| {
                    if let Some(frame) = frames.next() {
                        frame.fill(T::from_sample(sample));
                    }
                })
            } else {
                0
            };
            for frame in frames {
                frame.fill(T::EQUILIBRIUM);
            }
            if primed && played < wanted {
                // Running dry after `flush` is the end of the call, not an underrun.
                if !flushing.load(Ordering::Relaxed) {
                    health
                        .underruns
                        .fetch_add((wanted - played) as u64, Ordering::Relaxed);
                }
                primed = false;
            }
        },
        move |error| errors.report(&error),
        None,
    )
}

impl Playback {
    /// Opens and starts the device. Errors name the device and say what failed.
    pub fn open(options: &StreamOptions) -> Result<Self, DeviceError> {
        let mut tx = None;
        let mut queued = None;
        let flushing = Arc::new(AtomicBool::new(false));
        let running = open(options, Direction::Output, |d, c, capacity, h| {
            let (producer, consumer) = ring(capacity);
            let consumer = Arc::new(consumer);
            tx = Some(producer);
            queued = Some(consumer.clone());
            let callback = PlaybackCallback {
                rx: consumer,
                health: h,
                flushing: flushing.clone(),
                prime: samples_in(c.config.sample_rate, options.prebuffer_ms),
                capacity,
            };
            match c.format {
                SampleFormat::I16 => build_playback::<i16>(d, &c.config, callback),
                SampleFormat::F32 => build_playback::<f32>(d, &c.config, callback),
                SampleFormat::I32 => build_playback::<i32>(d, &c.config, callback),
                SampleFormat::U16 => build_playback::<u16>(d, &c.config, callback),
                _ => build_playback::<u8>(d, &c.config, callback),
            }
        })?;
        Ok(Self {
            running,
            tx: tx.expect("the build closure ran, since the stream was built"),
            queued: queued.expect("the build closure ran, since the stream was built"),
            flushing,
        })
    }

    /// The device's name (as [`crate::list_devices`] shows it).
    pub fn device_name(&self) -> &str {
        &self.running.device
    }

    /// The rate the device runs at; differs from the phone's when frames are resampled.
    pub fn device_rate(&self) -> u32 {
        self.running.device_rate
    }

    /// Samples (at the device's rate) written but not yet handed to the device. At the end of a
    /// call the shell calls [`Playback::flush`] and waits for zero before closing, so the last
    /// words are heard.
    pub fn queued(&self) -> usize {
        self.queued.available()
    }

    /// The end of a call: plays whatever is queued, even less than the prebuffer the callback
    /// otherwise waits for, including the last millisecond the rate converter holds back.
    pub fn flush(&mut self) {
        let r = &mut self.running;
        r.scratch.clear();
        r.resampler.flush(&mut r.scratch);
        self.push_scratch();
        self.flushing.store(true, Ordering::Relaxed);
    }

    /// Queues the device-rate samples in `scratch`, counting what does not fit.
    fn push_scratch(&mut self) {
        let r = &self.running;
        let taken = self.tx.push(r.scratch.iter().copied());
        if taken < r.scratch.len() {
            r.health
                .overruns
                .fetch_add((r.scratch.len() - taken) as u64, Ordering::Relaxed);
        }
    }

    /// The stream's counters.
    pub fn stats(&self) -> StreamStats {
        self.running.stats()
    }
}

impl AudioSink for Playback {
    fn sample_rate(&self) -> u32 {
        self.running.rate
    }

    /// Queues `frame` for the device; never blocks. What does not fit is dropped and counted.
    fn write_frame(&mut self, frame: &[i16]) -> Result<(), StreamFailure> {
        let r = &mut self.running;
        if let Some(failure) = r.failure() {
            return Err(failure);
        }
        r.scratch.clear();
        r.resampler.process(frame, &mut r.scratch);
        r.frames += 1;
        self.push_scratch();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(
        channels: u16,
        min: u32,
        max: u32,
        format: SampleFormat,
    ) -> cpal::SupportedStreamConfigRange {
        cpal::SupportedStreamConfigRange::new(
            channels,
            min,
            max,
            cpal::SupportedBufferSize::Unknown,
            format,
        )
    }

    fn chosen(
        ranges: Vec<cpal::SupportedStreamConfigRange>,
        wanted: u32,
        forced: Option<u32>,
    ) -> Result<(u32, u16, SampleFormat), DeviceError> {
        choose_among(ranges, "hw:0", Direction::Output, wanted, forced)
            .map(|c| (c.config.sample_rate, c.config.channels, c.format))
    }

    #[test]
    fn the_phone_rate_mono_and_i16_are_preferred_and_8k_falls_back_to_48k() {
        use SampleFormat::*;
        let card = || {
            vec![
                range(2, 44_100, 48_000, F32),
                range(2, 8_000, 48_000, I32),
                range(1, 8_000, 48_000, I32),
                range(2, 8_000, 48_000, I16),
            ]
        };
        // i16 beats mono: the format costs more to convert than the channels.
        assert_eq!(chosen(card(), 8_000, None).unwrap(), (8_000, 2, I16));
        let fixed = vec![range(2, 48_000, 48_000, I32), range(1, 48_000, 48_000, I32)];
        assert_eq!(
            chosen(fixed.clone(), 48_000, None).unwrap(),
            (48_000, 1, I32)
        );
        // G.711 on a 48 kHz-only card: opened at 48 kHz, resampled.
        assert_eq!(
            chosen(fixed.clone(), 8_000, None).unwrap(),
            (48_000, 1, I32)
        );
        assert_eq!(
            chosen(card(), 8_000, Some(48_000)).unwrap(),
            (48_000, 2, I16)
        );
        let err = chosen(fixed, 8_000, Some(8_000)).unwrap_err();
        assert!(
            matches!(err, DeviceError::UnsupportedRate { wanted: 8_000, .. }),
            "{err}"
        );
    }

    #[test]
    fn devices_without_a_usable_rate_or_format_are_refused_clearly() {
        use SampleFormat::*;
        let cd = vec![range(2, 44_100, 44_100, I16), range(2, 22_050, 44_100, I16)];
        let err = chosen(cd, 48_000, None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "output audio device `hw:0` cannot run at 48000 Hz, nor at the other of 8000/48000 Hz \
             that chaincall converts; it offers 22050-44100,44100 Hz. ALSA's `plughw:` and `default` \
             devices convert any rate"
        );
        let err = chosen(
            vec![range(2, 8_000, 48_000, I24), range(0, 8_000, 48_000, I16)],
            8_000,
            None,
        )
        .unwrap_err();
        assert!(matches!(err, DeviceError::NoUsableConfig { .. }), "{err}");
        // A rate the media resampler does not convert is refused even when forced.
        assert!(chosen(vec![range(1, 8_000, 48_000, I16)], 8_000, Some(16_000)).is_err());
    }

    #[test]
    fn device_errors_fail_the_stream_for_good_and_xruns_only_count() {
        let health = Health::default();
        health.report(&cpal::Error::new(cpal::ErrorKind::Xrun));
        assert_eq!(health.failure("hw:1", Direction::Input), None);
        assert_eq!(health.stats(3).device_xruns, 1);
        // What cpal's error callback reports when a USB headset is pulled mid-call.
        health.report(&cpal::Error::with_message(
            cpal::ErrorKind::DeviceNotAvailable,
            "device unplugged",
        ));
        health.report(&cpal::Error::new(cpal::ErrorKind::StreamInvalidated));
        let failure = health
            .failure("hw:1", Direction::Input)
            .expect("the stream failed");
        assert_eq!(failure.device, "hw:1");
        let message = failure.to_string();
        assert!(
            message.starts_with("input audio device `hw:1` failed: ")
                && message.contains("device unplugged"),
            "{message}"
        );
        assert_eq!(
            health.failure("hw:1", Direction::Input),
            Some(failure),
            "sticky, and the first cause is kept"
        );
    }
}
