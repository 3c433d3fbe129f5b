//! Calls on the sound card (`audio = "device"`): a call's microphone and speaker from
//! `chaincall_audio_device`, driven by the media task once per packet time.
//!
//! The media task plays each frame the jitter buffer gives to the speaker and sends what the
//! microphone captured (`CallAudio::exchange`, the one place the microphone is read). A device
//! that cannot be opened, or that fails mid-call (unplugged), is replaced by silence (microphone)
//! or a sink that discards (speaker): the call goes on, and the warning is logged and kept for
//! the call report. The microphone's frames go through echo cancellation and noise suppression
//! (`chaincall_audio_device::VoiceProcessor`, both on unless the phone file turns them off)
//! before they are sent; should it fail, the frames go out unprocessed, with a warning.

use std::time::Duration;

use chaincall_audio_device::{
    AudioSink, AudioSource, DeviceSelector, FrameResult, NullSink, SilenceSource, Sink, Source,
    StreamOptions, VoiceProcessing, VoiceProcessor,
};
pub use chaincall_audio_device::{DeviceList, list_devices};
use tracing::warn;

/// Where a phone's calls take their audio from and play it to (`audio` in the phone file).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum AudioMode {
    /// `audio = "wav"`: send `audio_in` (or a built-in signal); received audio is only recorded.
    /// For tests and the demo; a file without the key keeps it.
    #[default]
    Wav,
    /// `audio = "device"`: the microphone and speaker.
    Device(DeviceAudio),
}

/// The devices a phone talks on, and how their streams are buffered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceAudio {
    /// The microphone (`input_device`; absent or `"default"`: the system default).
    pub input: DeviceSelector,
    /// The speaker (`output_device`; absent or `"default"`: the system default).
    pub output: DeviceSelector,
    /// The ring between the audio callback and the phone, ms (`device_buffer_ms`); `None`:
    /// `chaincall_audio_device`'s 200 ms.
    pub buffer_ms: Option<u32>,
    /// Audio queued before the speaker starts, ms (`device_prebuffer_ms`); `None`: 40 ms.
    pub prebuffer_ms: Option<u32>,
    /// Echo cancellation and noise suppression of the microphone (`echo_cancellation`,
    /// `noise_suppression`; both on by default).
    pub processing: VoiceProcessing,
}

impl DeviceAudio {
    /// A device by its configured name: `"default"` (or nothing) is the system default.
    pub fn selector(name: Option<String>) -> DeviceSelector {
        DeviceSelector::from(name.filter(|n| n != "default"))
    }

    fn options(&self, device: &DeviceSelector, rate: u32) -> StreamOptions {
        let mut options = StreamOptions::new(device.clone(), rate);
        if let Some(ms) = self.buffer_ms {
            options.buffer_ms = ms;
        }
        if let Some(ms) = self.prebuffer_ms {
            options.prebuffer_ms = ms;
        }
        options
    }
}

/// The longest a call's end waits for the speaker to play what is queued, beyond its length.
const DRAIN_SLACK: Duration = Duration::from_millis(500);

/// One call's microphone and speaker, at the codec's rate.
pub(crate) struct CallAudio {
    mic: Source,
    speaker: Sink,
    /// The frame the microphone fills, one packet's samples.
    frame: Vec<i16>,
    /// Echo cancellation and noise suppression; `None` when both are off (or failed).
    processor: Option<VoiceProcessor>,
    rate: u32,
    call_id: String,
    /// What went wrong with the devices, for the call report.
    warnings: Vec<String>,
}

impl CallAudio {
    /// Opens the configured devices for frames of `frame_len` samples at `rate` Hz; a device
    /// that cannot be opened is silence (microphone) or nothing (speaker), with a warning.
    pub(crate) fn open(devices: &DeviceAudio, rate: u32, frame_len: usize, call_id: &str) -> Self {
        let (mic, mic_warning) = Source::open_or_silence(&devices.options(&devices.input, rate));
        let (speaker, speaker_warning) =
            Sink::open_or_null(&devices.options(&devices.output, rate));
        // No microphone, nothing to clean: its silence goes out as silence.
        let processing = match mic {
            Source::Silence(_) => VoiceProcessing::OFF,
            _ => devices.processing,
        };
        let (processor, processing_warning) = match VoiceProcessor::new(rate, processing) {
            Ok(p) => (p, None),
            Err(e) => (
                None,
                Some(format!("{e}; sending the microphone unprocessed")),
            ),
        };
        let mut audio = Self {
            mic,
            speaker,
            frame: vec![0; frame_len],
            processor,
            rate,
            call_id: call_id.to_owned(),
            warnings: Vec::new(),
        };
        for w in [mic_warning, speaker_warning, processing_warning]
            .into_iter()
            .flatten()
        {
            audio.warn(w);
        }
        audio
    }

    fn warn(&mut self, warning: String) {
        warn!(call = %self.call_id, "{warning}");
        self.warnings.push(warning);
    }

    /// One packet time: `heard` (the jitter buffer's frame) goes to the speaker; returns the
    /// microphone's frame to send (silence while it has not captured a whole frame yet), with
    /// the echo of what the speaker played and steady noise taken out.
    pub(crate) fn exchange(&mut self, heard: &[i16]) -> &[i16] {
        if let Err(failure) = self.speaker.write_frame(heard) {
            self.warn(format!("speaker failed, playing nothing: {failure}"));
            self.speaker = Sink::Null(NullSink::new(self.rate));
        }
        let rendered = self.processor.as_mut().map(|p| p.render(heard));
        match self.mic.read_frame(&mut self.frame) {
            FrameResult::Ready => {}
            FrameResult::Pending | FrameResult::Ended => self.frame.fill(0),
            FrameResult::Failed(failure) => {
                self.warn(format!("microphone failed, sending silence: {failure}"));
                self.mic = Source::Silence(SilenceSource::new(self.rate));
                self.processor = None;
                self.frame.fill(0);
            }
        }
        // Every packet time, silence too: the canceller follows the speaker and the microphone
        // in step.
        let processed = self.processor.as_mut().map(|p| p.capture(&mut self.frame));
        if let Some(e) = [rendered, processed]
            .into_iter()
            .flatten()
            .find_map(Result::err)
        {
            self.warn(format!(
                "{e}; sending the microphone unprocessed from now on"
            ));
            self.processor = None;
        }
        &self.frame
    }

    /// The end of the call: lets the speaker play what is queued (the last words), then closes
    /// both devices. Returns the warnings for the call report.
    pub(crate) async fn close(mut self) -> Vec<String> {
        if let Sink::Device(playback) = &mut self.speaker {
            playback.flush();
            let queued = playback.queued() as u64 * 1000 / u64::from(playback.device_rate());
            let until = tokio::time::Instant::now() + Duration::from_millis(queued) + DRAIN_SLACK;
            while playback.queued() > 0 && tokio::time::Instant::now() < until {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        self.warnings
    }
}
