//! WAV reading and writing, cross-checked with Python's `wave` module (and µ-law/A-law files
//! written by hand), plus the malformed files that must be refused.

use std::process::Command;

use chaincall_media::g711::{alaw_decode, alaw_encode, ulaw_decode, ulaw_encode};
use chaincall_media::signal::speech_like;
use chaincall_media::wav::{self, SampleFormat, WavError};

fn python() -> Option<std::path::PathBuf> {
    chaincall_testkit::peer("python3")
}

/// A WAVE file with the given `fmt ` fields and raw data (no extra chunks).
fn wave(tag: u16, channels: u16, rate: u32, bits: u16, data: &[u8]) -> Vec<u8> {
    let block = channels * bits / 8;
    let mut f = Vec::new();
    f.extend_from_slice(b"RIFF");
    f.extend_from_slice(&(36 + data.len() as u32 + (data.len() as u32 & 1)).to_le_bytes());
    f.extend_from_slice(b"WAVE");
    f.extend_from_slice(b"fmt ");
    f.extend_from_slice(&16u32.to_le_bytes());
    f.extend_from_slice(&tag.to_le_bytes());
    f.extend_from_slice(&channels.to_le_bytes());
    f.extend_from_slice(&rate.to_le_bytes());
    f.extend_from_slice(&(rate * u32::from(block)).to_le_bytes());
    f.extend_from_slice(&block.to_le_bytes());
    f.extend_from_slice(&bits.to_le_bytes());
    f.extend_from_slice(b"data");
    f.extend_from_slice(&(data.len() as u32).to_le_bytes());
    f.extend_from_slice(data);
    if data.len() % 2 == 1 {
        f.push(0);
    }
    f
}

#[test]
fn round_trip_in_memory_and_on_disk() {
    let samples = speech_like(1500, 3);
    let bytes = wav::to_bytes(&samples).unwrap();
    assert_eq!(bytes.len(), 44 + 2 * samples.len());
    assert_eq!(wav::from_bytes(&bytes).unwrap(), samples);
    let dir = tempdir();
    let path = dir.join("rt.wav");
    wav::write_file(&path, &samples).unwrap();
    assert_eq!(wav::read_file(&path).unwrap(), samples);
    let missing = wav::read_file(dir.join("missing.wav")).unwrap_err();
    assert!(matches!(missing, WavError::Io(_)));
    // The I/O error comes from source() only: the chain tells the OS reason once.
    let os = std::error::Error::source(&missing).unwrap().to_string();
    let told = chaincall_io::ErrorChain(&missing).to_string();
    assert!(told.starts_with("WAV file I/O: "), "{told}");
    assert_eq!(told.matches(os.as_str()).count(), 1, "{told}");
    std::fs::remove_dir_all(&dir).ok();
    // Empty audio is a valid file.
    assert_eq!(
        wav::from_bytes(&wav::to_bytes(&[]).unwrap()).unwrap(),
        Vec::<i16>::new()
    );
}

fn tempdir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "chaincall-media-wav-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn g711_tagged_files_are_decoded() {
    let samples = speech_like(300, 4);
    let mu: Vec<u8> = samples.iter().map(|&s| ulaw_encode(s)).collect();
    let a: Vec<u8> = samples.iter().map(|&s| alaw_encode(s)).collect();
    let w = wav::parse(&wave(7, 1, 8000, 8, &mu)).unwrap();
    assert_eq!(w.format, SampleFormat::Mulaw);
    assert_eq!(
        w.samples,
        mu.iter().map(|&c| ulaw_decode(c)).collect::<Vec<_>>()
    );
    let w = wav::parse(&wave(6, 1, 8000, 8, &a)).unwrap();
    assert_eq!(w.format, SampleFormat::Alaw);
    assert_eq!(
        w.samples,
        a.iter().map(|&c| alaw_decode(c)).collect::<Vec<_>>()
    );
    // Odd data length: the RIFF pad octet follows.
    assert_eq!(
        wav::from_bytes(&wave(7, 1, 8000, 8, &mu[..301]))
            .unwrap()
            .len(),
        301
    );
}

#[test]
fn wave_format_extensible_is_read_by_its_sub_format() {
    // A 40-octet `fmt ` chunk: WAVE_FORMAT_EXTENSIBLE, sub-format GUID starting with the tag.
    let pcm: Vec<u8> = [5i16, -6].iter().flat_map(|s| s.to_le_bytes()).collect();
    let mut fmt = Vec::new();
    fmt.extend_from_slice(&0xFFFEu16.to_le_bytes());
    fmt.extend_from_slice(&1u16.to_le_bytes());
    fmt.extend_from_slice(&8000u32.to_le_bytes());
    fmt.extend_from_slice(&16000u32.to_le_bytes());
    fmt.extend_from_slice(&2u16.to_le_bytes());
    fmt.extend_from_slice(&16u16.to_le_bytes());
    fmt.extend_from_slice(&22u16.to_le_bytes()); // cbSize
    fmt.extend_from_slice(&16u16.to_le_bytes()); // valid bits
    fmt.extend_from_slice(&4u32.to_le_bytes()); // channel mask: front centre
    fmt.extend_from_slice(&[
        1, 0, 0, 0, 0, 0, 0x10, 0, 0x80, 0, 0, 0xAA, 0, 0x38, 0x9B, 0x71,
    ]);
    let mut f = Vec::new();
    f.extend_from_slice(b"RIFF");
    f.extend_from_slice(&((4 + 8 + fmt.len() + 8 + pcm.len()) as u32).to_le_bytes());
    f.extend_from_slice(b"WAVE");
    f.extend_from_slice(b"fmt ");
    f.extend_from_slice(&(fmt.len() as u32).to_le_bytes());
    f.extend_from_slice(&fmt);
    // An unknown chunk with an odd size and its pad octet is skipped.
    f.extend_from_slice(b"junk");
    f.extend_from_slice(&3u32.to_le_bytes());
    f.extend_from_slice(&[1, 2, 3, 0]);
    f.extend_from_slice(b"data");
    f.extend_from_slice(&(pcm.len() as u32).to_le_bytes());
    f.extend_from_slice(&pcm);
    let riff = (f.len() - 8) as u32;
    f[4..8].copy_from_slice(&riff.to_le_bytes());
    assert_eq!(wav::from_bytes(&f).unwrap(), vec![5, -6]);
    // The same with an IEEE-float sub-format (3) is refused by name.
    let at = f.len() - pcm.len() - 8 - 12 - 16;
    f[at] = 3;
    assert!(matches!(
        wav::from_bytes(&f),
        Err(WavError::UnsupportedFormat(3))
    ));
}

#[test]
fn unsupported_and_malformed_files_are_errors() {
    let pcm: Vec<u8> = [1i16, -2, 3, -4]
        .iter()
        .flat_map(|s| s.to_le_bytes())
        .collect();
    let good = wave(1, 1, 8000, 16, &pcm);
    assert_eq!(wav::from_bytes(&good).unwrap(), vec![1, -2, 3, -4]);

    let err = |b: &[u8]| wav::from_bytes(b).unwrap_err();
    assert!(matches!(
        err(&wave(1, 2, 8000, 16, &pcm)),
        WavError::UnsupportedChannels(2)
    ));
    assert!(matches!(
        err(&wave(1, 1, 16000, 16, &pcm)),
        WavError::UnsupportedSampleRate(16000)
    ));
    assert!(matches!(
        err(&wave(1, 1, 8000, 8, &pcm)),
        WavError::UnsupportedBitsPerSample { bits: 8, .. }
    ));
    assert!(matches!(
        err(&wave(3, 1, 8000, 32, &pcm)),
        WavError::UnsupportedFormat(3)
    ));
    // Truncated: cut inside the data chunk, inside the header.
    assert!(matches!(
        err(&good[..good.len() - 1]),
        WavError::Truncated(_)
    ));
    assert!(matches!(err(&good[..10]), WavError::Truncated(_)));
    // Data chunk claims more than the file holds (RIFF size fixed up to match the file).
    let mut long = good.clone();
    long[40..44].copy_from_slice(&100u32.to_le_bytes());
    assert!(matches!(err(&long), WavError::Truncated(_)));
    // Odd-sized PCM16 data.
    let odd = wave(1, 1, 8000, 16, &pcm[..7]);
    assert!(matches!(err(&odd), WavError::BadChunkSize(_)));
    // `fmt ` chunk too short.
    let mut short_fmt = good.clone();
    short_fmt[16..20].copy_from_slice(&12u32.to_le_bytes());
    assert!(wav::from_bytes(&short_fmt).is_err());
    // Not RIFF, not WAVE, no data chunk.
    let mut not_riff = good.clone();
    not_riff[0] = b'X';
    assert!(matches!(err(&not_riff), WavError::NotWave(_)));
    let mut not_wave = good.clone();
    not_wave[8] = b'X';
    assert!(matches!(err(&not_wave), WavError::NotWave(_)));
    let mut no_data = good[..36].to_vec();
    no_data[4..8].copy_from_slice(&28u32.to_le_bytes());
    assert!(matches!(err(&no_data), WavError::MissingChunk("data")));
}

#[test]
fn python_wave_reads_ours_and_we_read_pythons() {
    let Some(python) = python() else { return };
    let dir = tempdir();
    let ours = dir.join("ours.wav");
    let theirs = dir.join("theirs.wav");
    let samples = speech_like(800, 5);
    wav::write_file(&ours, &samples).unwrap();
    // Python reads our file, checks the parameters, and writes the same frames back with a LIST
    // chunk-free header of its own; it also prints a checksum of what it read.
    let script = r#"
import sys, wave, struct
src, dst = sys.argv[1], sys.argv[2]
with wave.open(src, "rb") as r:
    assert r.getnchannels() == 1, r.getnchannels()
    assert r.getsampwidth() == 2, r.getsampwidth()
    assert r.getframerate() == 8000, r.getframerate()
    n = r.getnframes()
    frames = r.readframes(n)
samples = struct.unpack("<%dh" % n, frames)
print(n, sum(samples))
# Write a different signal so the read-back proves we parse Python's file, not ours.
with wave.open(dst, "wb") as w:
    w.setnchannels(1); w.setsampwidth(2); w.setframerate(8000)
    w.writeframes(struct.pack("<%dh" % n, *[(-s) // 2 for s in samples]))
"#;
    let stdout = chaincall_testkit::run_ok(
        Command::new(&python)
            .args(["-c", script])
            .arg(&ours)
            .arg(&theirs),
        "python wave",
    );
    let sum: i64 = samples.iter().map(|&s| i64::from(s)).sum();
    assert_eq!(
        String::from_utf8(stdout).unwrap().trim(),
        format!("{} {}", samples.len(), sum)
    );
    let back = wav::read_file(&theirs).unwrap();
    let want: Vec<i16> = samples
        .iter()
        .map(|&s| (-i32::from(s)).div_euclid(2) as i16)
        .collect();
    assert_eq!(back, want);
    std::fs::remove_dir_all(&dir).ok();
}
