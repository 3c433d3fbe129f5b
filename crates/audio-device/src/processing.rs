//! Echo cancellation and noise suppression for a call on the sound card: what the speaker plays
//! is the far end's voice, which the microphone picks up again and would send back to them
//! (echo); a fan or the street behind the speaker is noise. Both are taken out of the
//! microphone's frames before they are encoded.
//!
//! The work is done by the `aec3` crate, a pure-Rust port of WebRTC's AEC3 echo canceller and
//! its noise suppressor (`docs/audio.md` says why this one): a high-pass filter, AEC3, then
//! noise suppression, on 10 ms frames at 16 to 48 kHz. Its automatic gain control and
//! full-band post filter stay off: the level the microphone gives is the level sent, as it was
//! before. A G.711 call's 8 kHz frames are converted to 48 kHz for it and back
//! ([`StreamResampler`]). The processed voice comes out about 10 ms later than it went in (AEC3's
//! framing; 12 ms at 8 kHz with the conversions): a constant delay, no listener notices it.

use std::collections::VecDeque;
use std::sync::mpsc;
use std::thread::JoinHandle;

use aec3::api::config::EchoCanceller3Config;
use aec3::audio_processing::ns::{NsConfig, SuppressionLevel};
use aec3::graph::NodeControlState;
use aec3::nodes::audio::AudioFormat;
use aec3::pipelines::linear::{self, LinearPipeline};

use crate::resample::StreamResampler;

/// Which clean-ups a call's microphone gets (`echo_cancellation`, `noise_suppression` in the
/// phone file). Both on by default: they are what a person on a sound card needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VoiceProcessing {
    /// Takes the far end's voice, played by the speaker and heard by the microphone, out of
    /// what is sent (`echo_cancellation`).
    pub echo_cancellation: bool,
    /// Lowers steady background noise in what is sent (`noise_suppression`).
    pub noise_suppression: bool,
}

impl Default for VoiceProcessing {
    fn default() -> Self {
        Self {
            echo_cancellation: true,
            noise_suppression: true,
        }
    }
}

impl VoiceProcessing {
    /// Neither: the microphone's frames are sent as captured.
    pub const OFF: Self = Self {
        echo_cancellation: false,
        noise_suppression: false,
    };

    /// True when nothing is to be done.
    pub fn is_off(self) -> bool {
        !self.echo_cancellation && !self.noise_suppression
    }
}

/// Why the echo canceller or noise suppressor could not be set up or failed on a frame.
#[derive(Debug, thiserror::Error)]
#[error("echo cancellation / noise suppression: {0}")]
pub struct ProcessingError(String);

/// The rate the processing runs at for a G.711 call, whose 8 kHz AEC3 does not take.
const WIDE: u32 = 48_000;
/// 8 kHz: converted to [`WIDE`] and back.
const NARROW: u32 = 8_000;
/// The delay, in 8 kHz samples, that processing an 8 kHz stream at 48 kHz adds: 10 ms of
/// whole-chunk buffering plus the two conversions' look-ahead (1 ms each, rounded up).
const NARROW_LATENCY: usize = 80 + 2 * 8;

/// A call's echo canceller and noise suppressor, fed the speaker's frames ([`render`]) and the
/// microphone's ([`capture`]) at the phone's rate, one packet time at a time.
///
/// `aec3`'s pipeline cannot move between threads, and a call's media task does (tokio): it
/// lives on a thread of its own, which this handle talks to. [`capture`] waits for the
/// processed frame, as long as processing it in place would take.
///
/// [`render`]: Self::render
/// [`capture`]: Self::capture
#[derive(Debug)]
pub struct VoiceProcessor {
    to_engine: Option<mpsc::Sender<Job>>,
    from_engine: mpsc::Receiver<Result<Vec<i16>, ProcessingError>>,
    thread: Option<JoinHandle<()>>,
}

/// What the handle asks of the engine.
enum Job {
    Render(Vec<i16>),
    Capture(Vec<i16>),
}

impl VoiceProcessor {
    /// A processor for mono frames at `rate` Hz (8 kHz, or 16 to 48 kHz) doing what
    /// `settings` asks; `Ok(None)` when it asks for nothing.
    pub fn new(rate: u32, settings: VoiceProcessing) -> Result<Option<Self>, ProcessingError> {
        if settings.is_off() {
            return Ok(None);
        }
        let (to_engine, jobs) = mpsc::channel::<Job>();
        let (replies, from_engine) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("chaincall-voice".into())
            .spawn(move || {
                let mut engine = match Engine::new(rate, settings) {
                    Ok(engine) => {
                        let _ = replies.send(Ok(Vec::new()));
                        engine
                    }
                    Err(e) => {
                        let _ = replies.send(Err(e));
                        return;
                    }
                };
                // Ends when the handle is dropped (its sender with it).
                while let Ok(job) = jobs.recv() {
                    match job {
                        // A render failure is told with the next capture's reply.
                        Job::Render(frame) => {
                            if let Err(e) = engine.render(&frame) {
                                let _ = replies.send(Err(e));
                            }
                        }
                        Job::Capture(mut frame) => {
                            let reply = engine.capture(&mut frame).map(|()| frame);
                            if replies.send(reply).is_err() {
                                return;
                            }
                        }
                    }
                }
            })
            .map_err(|e| ProcessingError(format!("cannot start its thread: {e}")))?;
        let processor = Self {
            to_engine: Some(to_engine),
            from_engine,
            thread: Some(thread),
        };
        processor.reply()?;
        Ok(Some(processor))
    }

    /// The engine's next reply.
    fn reply(&self) -> Result<Vec<i16>, ProcessingError> {
        self.from_engine
            .recv()
            .map_err(|_| ProcessingError("its thread ended".into()))?
    }

    fn send(&self, job: Job) -> Result<(), ProcessingError> {
        let to_engine = self.to_engine.as_ref();
        to_engine
            .and_then(|t| t.send(job).ok())
            .ok_or_else(|| ProcessingError("its thread ended".into()))
    }

    /// What the speaker is given to play (the far end's voice): the reference the echo is
    /// recognised by. Call it for every frame played, before [`capture`](Self::capture) of
    /// the same packet time.
    pub fn render(&mut self, frame: &[i16]) -> Result<(), ProcessingError> {
        self.send(Job::Render(frame.to_vec()))
    }

    /// Replaces the microphone's `frame` with its processed version: echo of what was
    /// rendered and steady noise taken out, a constant few ms later (the module's doc says how
    /// much).
    pub fn capture(&mut self, frame: &mut [i16]) -> Result<(), ProcessingError> {
        self.send(Job::Capture(frame.to_vec()))?;
        // Replies come in order: a render failure before this capture's frame.
        let processed = self.reply()?;
        frame.copy_from_slice(&processed[..frame.len()]);
        Ok(())
    }
}

impl Drop for VoiceProcessor {
    fn drop(&mut self) {
        // Closing the channel ends the thread's loop.
        self.to_engine = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The processing itself, on the processor's thread (`aec3`'s pipeline is not `Send`).
struct Engine {
    pipeline: LinearPipeline,
    /// Samples in one 10 ms chunk at the processing rate.
    chunk: usize,
    /// Conversions to and from the processing rate, for an 8 kHz call.
    narrow: Option<Narrow>,
    /// Speaker samples at the processing rate not yet a whole chunk.
    render_pending: Vec<f32>,
    /// Microphone samples at the processing rate not yet a whole chunk.
    capture_pending: Vec<f32>,
    /// Processed microphone samples at the phone's rate, not yet handed back.
    ready: VecDeque<i16>,
    /// One processed chunk.
    processed: Vec<f32>,
}

/// An 8 kHz call's conversions: speaker and microphone up to 48 kHz, the result back down.
struct Narrow {
    render_up: StreamResampler,
    capture_up: StreamResampler,
    capture_down: StreamResampler,
    /// Conversion scratch.
    scratch: Vec<i16>,
}

impl Engine {
    /// The engine for mono frames at `rate` Hz doing what `settings` asks (not nothing).
    fn new(rate: u32, settings: VoiceProcessing) -> Result<Self, ProcessingError> {
        let (inner, narrow) = match rate {
            NARROW => {
                let conv = |from, to| StreamResampler::new(from, to).expect("8 kHz <-> 48 kHz");
                let narrow = Narrow {
                    render_up: conv(NARROW, WIDE),
                    capture_up: conv(NARROW, WIDE),
                    capture_down: conv(WIDE, NARROW),
                    scratch: Vec::new(),
                };
                (WIDE, Some(narrow))
            }
            16_000..=48_000 if rate.is_multiple_of(100) => (rate, None),
            _ => {
                return Err(ProcessingError(format!(
                    "{rate} Hz is not supported (8 kHz, or 16 to 48 kHz in steps of 100 Hz)"
                )));
            }
        };
        let format = AudioFormat::ten_ms(inner, 1);
        let mut echo = EchoCanceller3Config::default();
        // The echo path's gain assumed until the filter has found the real one. At the default
        // (1.0) a headset, which has no echo path to find, gets its wearer's voice cut by
        // about 8 dB whenever the far end talks too, for the whole call; at 0.1 the voice
        // stays, and a loudspeaker's echo is still cancelled as far once the filter converged
        // (tests/processing.rs measures both).
        echo.ep_strength.default_gain = 0.1;
        let mut pipeline = linear::builder(format, format)
            .aec3_config(echo)
            .enable_noise_suppression(settings.noise_suppression)
            // WebRTC's "high" level: 12 dB (the crate's default) leaves a fan audible.
            .noise_suppression_config(NsConfig {
                target_level: SuppressionLevel::K18dB,
                ..NsConfig::default()
            })
            // The level stays the microphone's: no automatic gain, no extra full-band filter.
            .enable_gain_controller2(false)
            .enable_post_filter(false)
            .build()
            .map_err(|e| ProcessingError(e.to_string()))?;
        if !settings.echo_cancellation {
            let aec = pipeline.handles().aec3.node_id();
            pipeline
                .set_node_state(aec, NodeControlState::Bypassed)
                .map_err(|e| ProcessingError(e.to_string()))?;
        }
        let chunk = format.sample_count();
        // An 8 kHz stream comes out `NARROW_LATENCY` samples late: start with that much
        // silence, so every capture call can hand back a whole frame.
        let ready = match narrow {
            Some(_) => VecDeque::from(vec![0; NARROW_LATENCY]),
            None => VecDeque::new(),
        };
        Ok(Self {
            pipeline,
            chunk,
            narrow,
            render_pending: Vec::with_capacity(2 * chunk),
            capture_pending: Vec::with_capacity(2 * chunk),
            ready,
            processed: vec![0.0; chunk],
        })
    }

    fn render(&mut self, frame: &[i16]) -> Result<(), ProcessingError> {
        let narrow = self
            .narrow
            .as_mut()
            .map(|n| (&mut n.render_up, &mut n.scratch));
        take_in(narrow, frame, &mut self.render_pending);
        let mut start = 0;
        while self.render_pending.len() - start >= self.chunk {
            self.pipeline
                .handle_render_frame(&self.render_pending[start..start + self.chunk])
                .map_err(|e| ProcessingError(e.to_string()))?;
            start += self.chunk;
        }
        self.render_pending.drain(..start);
        Ok(())
    }

    fn capture(&mut self, frame: &mut [i16]) -> Result<(), ProcessingError> {
        let narrow = self
            .narrow
            .as_mut()
            .map(|n| (&mut n.capture_up, &mut n.scratch));
        take_in(narrow, frame, &mut self.capture_pending);
        let mut start = 0;
        while self.capture_pending.len() - start >= self.chunk {
            let produced = self
                .pipeline
                .process_capture_frame(
                    &self.capture_pending[start..start + self.chunk],
                    &mut self.processed,
                )
                .map_err(|e| ProcessingError(e.to_string()))?;
            start += self.chunk;
            if produced {
                let pcm: Vec<i16> = self.processed.iter().map(|&s| to_i16(s)).collect();
                self.output(&pcm);
            }
            // The pipeline may hold a chunk back and hand out two later: take all it has, so
            // the delay stays what it was at the start.
            while let Some(more) = self
                .pipeline
                .try_pull_output()
                .map_err(|e| ProcessingError(e.to_string()))?
            {
                let pcm: Vec<i16> = more
                    .payload()
                    .samples()
                    .iter()
                    .map(|&s| to_i16(s))
                    .collect();
                self.output(&pcm);
            }
        }
        self.capture_pending.drain(..start);
        for sample in frame.iter_mut() {
            // Short only at the start (the pipeline's own delay): silence stands for it, and
            // from then on the output is that much later.
            *sample = self.ready.pop_front().unwrap_or(0);
        }
        Ok(())
    }

    /// Queues processed samples at the processing rate, converted back to the phone's.
    fn output(&mut self, pcm: &[i16]) {
        match self.narrow.as_mut() {
            Some(n) => {
                n.scratch.clear();
                n.capture_down.process(pcm, &mut n.scratch);
                self.ready.extend(n.scratch.iter().copied());
            }
            None => self.ready.extend(pcm.iter().copied()),
        }
    }
}

/// Appends `frame` to `pending` at the processing rate: through `narrow`'s converter (with its
/// scratch buffer) for an 8 kHz call, as it is otherwise.
fn take_in(
    narrow: Option<(&mut StreamResampler, &mut Vec<i16>)>,
    frame: &[i16],
    pending: &mut Vec<f32>,
) {
    match narrow {
        Some((up, scratch)) => {
            scratch.clear();
            up.process(frame, scratch);
            extend_f32(pending, scratch);
        }
        None => extend_f32(pending, frame),
    }
}

/// Appends `pcm` scaled to the ±1.0 floats AEC3 works on.
fn extend_f32(out: &mut Vec<f32>, pcm: &[i16]) {
    out.extend(pcm.iter().map(|&s| f32::from(s) / 32768.0));
}

/// A ±1.0 float back to 16-bit PCM, clipped.
fn to_i16(sample: f32) -> i16 {
    (sample * 32768.0).round().clamp(-32768.0, 32767.0) as i16
}
