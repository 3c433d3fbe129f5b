//! The audio files the configuration names: what the phone sends (`audio_in`, or a built-in
//! signal) and where each call's received audio is recorded (`record_dir`).

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use chaincall_media::wav::WavError;

use crate::config_file::PhoneFileConfig;
use crate::phone::CallReport;

/// Why an audio file could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AudioFileError {
    /// `audio_in` is not a usable WAV.
    #[error("audio_in {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: WavError,
    },
    /// The recordings folder could not be made.
    #[error("cannot create {}", path.display())]
    CreateDir {
        /// The folder.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A recording could not be written.
    #[error("cannot write {}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: WavError,
    },
}

impl PhoneFileConfig {
    /// The audio to send (8 kHz PCM): `audio_in`, or the built-in signal made from `seed`, cut
    /// to `max_ms`; none with `audio = "device"` (the microphone speaks).
    pub fn outgoing_audio(&self, max_ms: u32, seed: u64) -> Result<Vec<i16>, AudioFileError> {
        if let crate::AudioMode::Device(_) = self.audio {
            return Ok(Vec::new());
        }
        let mut audio = match &self.audio_in {
            Some(p) => {
                chaincall_media::wav::read_file(p).map_err(|source| AudioFileError::Read {
                    path: p.clone(),
                    source,
                })?
            }
            None => chaincall_media::signal::speech_like(max_ms, seed),
        };
        audio.truncate((u64::from(max_ms) * 8) as usize);
        Ok(audio)
    }

    /// Writes the call's received audio to `record_dir` as
    /// `MILLIS-{to,from}-PEER.wav` (the peer's letters and digits only); the file's path, or
    /// `None` when the phone records nothing.
    pub fn save_recording(&self, report: &CallReport) -> Result<Option<PathBuf>, AudioFileError> {
        let Some(dir) = &self.record_dir else {
            return Ok(None);
        };
        std::fs::create_dir_all(dir).map_err(|source| AudioFileError::CreateDir {
            path: dir.clone(),
            source,
        })?;
        let ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        // Only letters and digits: a peer's name never steers the path.
        let peer: String = report
            .peer
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .collect();
        let way = if report.outgoing { "to" } else { "from" };
        let path = dir.join(format!("{ms}-{way}-{peer}.wav"));
        let (samples, rate) = (&report.recorded, report.recorded_rate);
        chaincall_media::wav::write_file_at_rate(&path, samples, rate).map_err(|source| {
            AudioFileError::Write {
                path: path.clone(),
                source,
            }
        })?;
        Ok(Some(path))
    }
}
