//! RIFF WAVE files for the phone's audio: read PCM 16-bit (and G.711 µ-law/A-law, decoded) mono
//! 8 kHz; write PCM 16-bit mono 8 kHz.
//!
//! Layout: Microsoft/IBM "Multimedia Programming Interface and Data Specifications 1.0" (1991),
//! RIFF chunks with even padding; format tags from RFC 2361 (`WAVE_FORMAT_PCM` 1,
//! `WAVE_FORMAT_ALAW` 6, `WAVE_FORMAT_MULAW` 7, `WAVE_FORMAT_EXTENSIBLE` 0xFFFE with its
//! sub-format GUID). Anything else is refused with an error naming what is wrong, never guessed.

use std::path::Path;

use crate::g711::{alaw_decode, ulaw_decode};

/// The only sampling rate this crate reads and writes (G.711's, RFC 3551 Table 4).
pub const SAMPLE_RATE: u32 = 8000;

/// `WAVE_FORMAT_PCM` (RFC 2361).
pub const FORMAT_PCM: u16 = 1;
/// `WAVE_FORMAT_ALAW` (RFC 2361).
pub const FORMAT_ALAW: u16 = 6;
/// `WAVE_FORMAT_MULAW` (RFC 2361).
pub const FORMAT_MULAW: u16 = 7;
/// `WAVE_FORMAT_EXTENSIBLE`: the real tag is the first two octets of the sub-format GUID.
pub const FORMAT_EXTENSIBLE: u16 = 0xFFFE;

/// Why a WAVE file could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WavError {
    /// The file could not be opened, read or written.
    #[error("WAV file I/O")]
    Io(#[from] std::io::Error),
    /// Not a RIFF/WAVE file at all.
    #[error("not a RIFF WAVE file: {0}")]
    NotWave(&'static str),
    /// The file ends before a header or chunk it announces.
    #[error("truncated WAV file: {0}")]
    Truncated(&'static str),
    /// A chunk size is inconsistent (odd-sized audio data, a `fmt ` chunk too short, ...).
    #[error("bad chunk size: {0}")]
    BadChunkSize(&'static str),
    /// A required chunk is missing.
    #[error("missing `{0}` chunk")]
    MissingChunk(&'static str),
    /// A format tag other than PCM, µ-law or A-law.
    #[error("unsupported WAV format tag {0:#06x} (only PCM 1, A-law 6, µ-law 7)")]
    UnsupportedFormat(u16),
    /// More or fewer than one channel.
    #[error("{0} channels: only mono is supported")]
    UnsupportedChannels(u16),
    /// A sampling rate other than 8000 Hz.
    #[error("sample rate {0} Hz: only 8000 Hz is supported")]
    UnsupportedSampleRate(u32),
    /// A sample width that does not fit the format (PCM must be 16-bit, G.711 8-bit).
    #[error("{bits}-bit samples are not supported for format tag {format:#06x}")]
    UnsupportedBitsPerSample {
        /// The format tag.
        format: u16,
        /// Bits per sample in the file.
        bits: u16,
    },
    /// The file is larger than a RIFF size field can describe.
    #[error("too much audio for one WAV file")]
    TooLarge,
}

/// What a file's `fmt ` chunk says its samples are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SampleFormat {
    /// Linear PCM, 16-bit little-endian.
    Pcm16,
    /// G.711 µ-law, one octet per sample.
    Mulaw,
    /// G.711 A-law, one octet per sample.
    Alaw,
}

/// Decoded audio and the format it was stored in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wav {
    /// The samples as 16-bit linear PCM, 8 kHz mono.
    pub samples: Vec<i16>,
    /// How the file stored them.
    pub format: SampleFormat,
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Parses a whole WAVE file held in memory, returning format and decoded samples.
pub fn parse(bytes: &[u8]) -> Result<Wav, WavError> {
    if bytes.len() < 12 {
        return Err(WavError::Truncated("shorter than the 12-octet RIFF header"));
    }
    if &bytes[0..4] != b"RIFF" {
        return Err(WavError::NotWave("no RIFF signature"));
    }
    if &bytes[8..12] != b"WAVE" {
        return Err(WavError::NotWave("RIFF form type is not WAVE"));
    }
    let riff_size = u32_at(bytes, 4) as usize;
    if riff_size < 4 {
        return Err(WavError::BadChunkSize(
            "RIFF size smaller than the form type",
        ));
    }
    let end = 8usize
        .checked_add(riff_size)
        .ok_or(WavError::BadChunkSize("RIFF size overflows"))?;
    if end > bytes.len() {
        return Err(WavError::Truncated(
            "file shorter than its RIFF size field says",
        ));
    }
    // Octets after the RIFF chunk (some tools append metadata) are ignored.
    let body = &bytes[..end];
    let mut at = 12;
    let mut format: Option<(SampleFormat, usize)> = None;
    let mut data: Option<&[u8]> = None;
    while at < body.len() {
        if body.len() - at < 8 {
            return Err(WavError::Truncated("chunk header cut short"));
        }
        let id = &body[at..at + 4];
        let size = u32_at(body, at + 4) as usize;
        let start = at + 8;
        let stop = start
            .checked_add(size)
            .filter(|&s| s <= body.len())
            .ok_or(WavError::Truncated("chunk longer than the file"))?;
        let chunk = &body[start..stop];
        match id {
            b"fmt " => {
                if format.is_some() {
                    return Err(WavError::BadChunkSize("two `fmt ` chunks"));
                }
                format = Some(parse_fmt(chunk)?);
            }
            b"data" => {
                if format.is_none() {
                    return Err(WavError::MissingChunk("fmt "));
                }
                if data.is_none() {
                    data = Some(chunk);
                }
            }
            _ => {} // LIST, fact, cue, ...: not needed for mono G.711/PCM.
        }
        // RIFF pads every chunk to an even length; a missing final pad octet is tolerated.
        at = (stop + (size & 1)).min(body.len());
    }
    let (format, block) = format.ok_or(WavError::MissingChunk("fmt "))?;
    let data = data.ok_or(WavError::MissingChunk("data"))?;
    if data.len() % block != 0 {
        return Err(WavError::BadChunkSize(
            "data size is not a multiple of the block size",
        ));
    }
    let samples = match format {
        SampleFormat::Pcm16 => data
            .chunks_exact(2)
            .map(|s| i16::from_le_bytes([s[0], s[1]]))
            .collect(),
        SampleFormat::Mulaw => data.iter().map(|&c| ulaw_decode(c)).collect(),
        SampleFormat::Alaw => data.iter().map(|&c| alaw_decode(c)).collect(),
    };
    Ok(Wav { samples, format })
}

/// Reads the `fmt ` chunk: format, channels, rate, block alignment, bits per sample.
fn parse_fmt(chunk: &[u8]) -> Result<(SampleFormat, usize), WavError> {
    if chunk.len() < 16 {
        return Err(WavError::BadChunkSize(
            "`fmt ` chunk shorter than 16 octets",
        ));
    }
    let mut tag = u16_at(chunk, 0);
    let channels = u16_at(chunk, 2);
    let rate = u32_at(chunk, 4);
    let block_align = u16_at(chunk, 12);
    let bits = u16_at(chunk, 14);
    if tag == FORMAT_EXTENSIBLE {
        // cbSize (2) + valid bits (2) + channel mask (4) + sub-format GUID (16).
        if chunk.len() < 40 {
            return Err(WavError::BadChunkSize(
                "WAVE_FORMAT_EXTENSIBLE `fmt ` chunk shorter than 40 octets",
            ));
        }
        tag = u16_at(chunk, 24);
    }
    let format = match tag {
        FORMAT_PCM => SampleFormat::Pcm16,
        FORMAT_MULAW => SampleFormat::Mulaw,
        FORMAT_ALAW => SampleFormat::Alaw,
        other => return Err(WavError::UnsupportedFormat(other)),
    };
    if channels != 1 {
        return Err(WavError::UnsupportedChannels(channels));
    }
    if rate != SAMPLE_RATE {
        return Err(WavError::UnsupportedSampleRate(rate));
    }
    let want_bits = if format == SampleFormat::Pcm16 { 16 } else { 8 };
    if bits != want_bits {
        return Err(WavError::UnsupportedBitsPerSample { format: tag, bits });
    }
    if usize::from(block_align) != usize::from(want_bits / 8) {
        return Err(WavError::BadChunkSize(
            "block alignment does not match the sample width",
        ));
    }
    Ok((format, usize::from(block_align)))
}

/// Decodes a whole WAVE file held in memory to 16-bit PCM samples (8 kHz mono).
pub fn from_bytes(bytes: &[u8]) -> Result<Vec<i16>, WavError> {
    parse(bytes).map(|w| w.samples)
}

/// Encodes `samples` as a PCM 16-bit mono 8 kHz WAVE file (44-octet canonical header).
pub fn to_bytes(samples: &[i16]) -> Result<Vec<u8>, WavError> {
    to_bytes_at_rate(samples, SAMPLE_RATE)
}

/// Encodes `samples` as a PCM 16-bit mono WAVE file at `rate` Hz (a recording of an Opus call at
/// 48 kHz; [`parse`] reads 8 kHz files only).
pub fn to_bytes_at_rate(samples: &[i16], rate: u32) -> Result<Vec<u8>, WavError> {
    let data_len = samples
        .len()
        .checked_mul(2)
        .filter(|&n| n <= (u32::MAX - 36) as usize)
        .ok_or(WavError::TooLarge)?;
    let mut out = Vec::with_capacity(44 + data_len);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data_len as u32).to_le_bytes());
    out.extend_from_slice(b"WAVE");
    out.extend_from_slice(b"fmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&FORMAT_PCM.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes()); // mono
    out.extend_from_slice(&rate.to_le_bytes());
    out.extend_from_slice(&rate.saturating_mul(2).to_le_bytes()); // byte rate
    out.extend_from_slice(&2u16.to_le_bytes()); // block align
    out.extend_from_slice(&16u16.to_le_bytes()); // bits per sample
    out.extend_from_slice(b"data");
    out.extend_from_slice(&(data_len as u32).to_le_bytes());
    for s in samples {
        out.extend_from_slice(&s.to_le_bytes());
    }
    Ok(out)
}

/// Reads and decodes a WAVE file (see [`from_bytes`]).
pub fn read_file(path: impl AsRef<Path>) -> Result<Vec<i16>, WavError> {
    from_bytes(&std::fs::read(path)?)
}

/// Writes `samples` as a PCM 16-bit mono 8 kHz WAVE file (see [`to_bytes`]).
pub fn write_file(path: impl AsRef<Path>, samples: &[i16]) -> Result<(), WavError> {
    write_file_at_rate(path, samples, SAMPLE_RATE)
}

/// Writes `samples` as a PCM 16-bit mono WAVE file at `rate` Hz (see [`to_bytes_at_rate`]).
pub fn write_file_at_rate(
    path: impl AsRef<Path>,
    samples: &[i16],
    rate: u32,
) -> Result<(), WavError> {
    std::fs::write(path, to_bytes_at_rate(samples, rate)?)?;
    Ok(())
}
