//! Opus (RFC 6716) as RFC 7587 carries it: 48 kHz mono, 20 ms frames, in-band FEC and DTX on.
//!
//! A thin, safe layer over the system libopus (through the `opus` crate, which holds the FFI):
//! [`OpusEncoder`] turns 960-sample frames into packets (or nothing during DTX), [`OpusDecoder`]
//! turns packets back into PCM, conceals a lost packet (libopus PLC) and recovers one from the
//! in-band FEC data of the packet after it.

use std::fmt;

/// Opus's internal and RTP clock rate (RFC 7587 §4.1: always 48,000 in SDP and RTP).
pub const SAMPLE_RATE: u32 = 48_000;
/// Samples in one 20 ms frame at 48 kHz.
pub const FRAME_SAMPLES: usize = 960;
/// Most samples one Opus packet can decode to (120 ms at 48 kHz, RFC 6716 §3.2.5).
pub const MAX_PACKET_SAMPLES: usize = 5760;
/// Largest packet the encoder writes (RFC 6716 §3.4, R5: 1275 octets per frame).
pub const MAX_PACKET_LEN: usize = 1275;

/// A libopus failure, with the call that failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("opus {call}: {reason}")]
pub struct OpusError {
    /// Which operation failed (`encode`, `decode`, `set_bitrate`, ...).
    pub call: &'static str,
    /// libopus's description (e.g. "corrupted stream").
    pub reason: String,
}

impl OpusError {
    fn wrap(call: &'static str) -> impl Fn(::opus::Error) -> OpusError {
        move |e| OpusError {
            call,
            reason: e.description().to_owned(),
        }
    }

    fn frame(call: &'static str, len: usize) -> OpusError {
        OpusError {
            call,
            reason: format!("a frame is {FRAME_SAMPLES} samples, got {len}"),
        }
    }
}

/// How the encoder runs. The defaults suit a voice call over a lossy network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpusConfig {
    /// Target bitrate in bits per second (6,000..=510,000; clamped). Default 96,000: what
    /// baresip's default lets libopus choose (about as much), and where full-band speech scores
    /// as well (PESQ, `chaincall bench audio`); lower it for thin links.
    pub bitrate: u32,
    /// In-band forward error correction (RFC 7587 `useinbandfec=1`): each packet carries a
    /// low-rate copy of the one before. Default on.
    pub inband_fec: bool,
    /// Expected packet loss in percent (0..=100), the hint libopus sizes FEC by. Default 10.
    /// In a [`MediaSession`](crate::MediaSession) only the start: from the peer's first RTCP
    /// report on, the hint follows the loss it reports.
    pub packet_loss_percent: u8,
    /// Discontinuous transmission (RFC 7587 `usedtx=1`): silence sends (almost) nothing.
    /// Default on.
    pub dtx: bool,
    /// Encoder complexity 0..=10 (clamped). Default 9.
    pub complexity: u8,
}

impl Default for OpusConfig {
    fn default() -> Self {
        OpusConfig {
            bitrate: 96_000,
            inband_fec: true,
            packet_loss_percent: 10,
            dtx: true,
            complexity: 9,
        }
    }
}

impl OpusConfig {
    /// This configuration as the peer asked to receive (its `a=fmtp`, RFC 7587 §6.1): the
    /// bitrate capped at its `maxaveragebitrate` (§7.1: the sender should not exceed it), in-band
    /// FEC only if its decoder can use it (`useinbandfec`), DTX only if it prefers it (`usedtx`).
    /// Nothing is raised above what `self` asks.
    pub fn toward(self, peer: &crate::sdp::OpusParams) -> OpusConfig {
        OpusConfig {
            bitrate: peer
                .maxaveragebitrate
                .map_or(self.bitrate, |max| self.bitrate.min(max.max(6_000))),
            inband_fec: self.inband_fec && peer.useinbandfec,
            dtx: self.dtx && peer.usedtx,
            ..self
        }
    }
}

/// Opus encoder for 48 kHz mono 20 ms frames (the VoIP application mode).
pub struct OpusEncoder {
    inner: ::opus::Encoder,
    config: OpusConfig,
    out: Vec<u8>,
}

impl fmt::Debug for OpusEncoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpusEncoder")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl OpusEncoder {
    /// An encoder with `config` applied.
    pub fn new(config: OpusConfig) -> Result<Self, OpusError> {
        let inner = ::opus::Encoder::new(
            SAMPLE_RATE,
            ::opus::Channels::Mono,
            ::opus::Application::Voip,
        )
        .map_err(OpusError::wrap("encoder_create"))?;
        let mut enc = OpusEncoder {
            inner,
            config,
            out: vec![0; MAX_PACKET_LEN],
        };
        enc.set_bitrate(config.bitrate)?;
        enc.inner
            .set_inband_fec(config.inband_fec)
            .map_err(OpusError::wrap("set_inband_fec"))?;
        enc.set_packet_loss_percent(config.packet_loss_percent)?;
        enc.inner
            .set_dtx(config.dtx)
            .map_err(OpusError::wrap("set_dtx"))?;
        enc.inner
            .set_complexity(i32::from(config.complexity.min(10)))
            .map_err(OpusError::wrap("set_complexity"))?;
        Ok(enc)
    }

    /// The configuration in force.
    pub fn config(&self) -> OpusConfig {
        self.config
    }

    /// Changes the target bitrate (clamped to 6,000..=510,000 bit/s).
    pub fn set_bitrate(&mut self, bits_per_second: u32) -> Result<(), OpusError> {
        let b = bits_per_second.clamp(6_000, 510_000);
        self.inner
            .set_bitrate(::opus::Bitrate::Bits(b as i32))
            .map_err(OpusError::wrap("set_bitrate"))?;
        self.config.bitrate = b;
        Ok(())
    }

    /// Changes the expected-loss hint (clamped to 0..=100), e.g. from RTCP's fraction lost.
    pub fn set_packet_loss_percent(&mut self, percent: u8) -> Result<(), OpusError> {
        let p = percent.min(100);
        self.inner
            .set_packet_loss_perc(i32::from(p))
            .map_err(OpusError::wrap("set_packet_loss_perc"))?;
        self.config.packet_loss_percent = p;
        Ok(())
    }

    /// Encodes one 20 ms frame ([`FRAME_SAMPLES`] samples). `None` when DTX says the packet need
    /// not be sent (libopus returns 2 octets or fewer then: `opus_encode` documentation).
    pub fn encode(&mut self, frame: &[i16]) -> Result<Option<Vec<u8>>, OpusError> {
        if frame.len() != FRAME_SAMPLES {
            return Err(OpusError::frame("encode", frame.len()));
        }
        let n = self
            .inner
            .encode(frame, &mut self.out)
            .map_err(OpusError::wrap("encode"))?;
        if n <= 2 && self.config.dtx {
            return Ok(None);
        }
        Ok(Some(self.out[..n].to_vec()))
    }
}

/// Opus decoder to 48 kHz mono, with packet-loss concealment and FEC recovery.
pub struct OpusDecoder {
    inner: ::opus::Decoder,
}

impl fmt::Debug for OpusDecoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpusDecoder").finish_non_exhaustive()
    }
}

impl OpusDecoder {
    /// A decoder at 48 kHz mono.
    pub fn new() -> Result<Self, OpusError> {
        let inner = ::opus::Decoder::new(SAMPLE_RATE, ::opus::Channels::Mono)
            .map_err(OpusError::wrap("decoder_create"))?;
        Ok(OpusDecoder { inner })
    }

    /// Decodes one packet, appending its samples (10 to 120 ms) to `out`; returns how many. A
    /// malformed packet is an error and appends nothing.
    pub fn decode(&mut self, packet: &[u8], out: &mut Vec<i16>) -> Result<usize, OpusError> {
        if packet.is_empty() {
            // An empty packet means "lost" to libopus; a caller that has nothing says so with
            // `conceal`, so an empty payload from the wire is refused instead.
            return Err(OpusError {
                call: "decode",
                reason: "empty packet".into(),
            });
        }
        self.run(packet, MAX_PACKET_SAMPLES, false, out, "decode")
    }

    /// Conceals one lost 20 ms frame (libopus PLC: `opus_decode` with no packet), appending
    /// [`FRAME_SAMPLES`] samples to `out`. After a DTX pause this is also how libopus produces
    /// comfort noise.
    pub fn conceal(&mut self, out: &mut Vec<i16>) -> Result<usize, OpusError> {
        self.run(&[], FRAME_SAMPLES, false, out, "conceal")
    }

    /// Recovers the lost 20 ms frame *before* `next_packet` from the in-band FEC data in
    /// `next_packet` (`opus_decode` with `decode_fec = 1`), appending [`FRAME_SAMPLES`] samples.
    /// When `next_packet` carries no FEC data libopus falls back to PLC. Decode `next_packet`
    /// itself normally afterwards.
    pub fn decode_fec(
        &mut self,
        next_packet: &[u8],
        out: &mut Vec<i16>,
    ) -> Result<usize, OpusError> {
        if next_packet.is_empty() {
            return self.conceal(out);
        }
        self.run(next_packet, FRAME_SAMPLES, true, out, "decode_fec")
    }

    fn run(
        &mut self,
        packet: &[u8],
        max: usize,
        fec: bool,
        out: &mut Vec<i16>,
        call: &'static str,
    ) -> Result<usize, OpusError> {
        let start = out.len();
        out.resize(start + max, 0);
        match self.inner.decode(packet, &mut out[start..], fec) {
            Ok(n) => {
                out.truncate(start + n.min(max));
                Ok(n.min(max))
            }
            Err(e) => {
                out.truncate(start);
                Err(OpusError::wrap(call)(e))
            }
        }
    }
}

/// The libopus version string, e.g. `"libopus 1.3.1"`.
pub fn libopus_version() -> &'static str {
    ::opus::version()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoder_applies_config_and_refuses_wrong_frames() {
        let mut enc = OpusEncoder::new(OpusConfig::default()).unwrap();
        assert!(enc.inner.get_inband_fec().unwrap());
        assert!(enc.inner.get_dtx().unwrap());
        assert_eq!(enc.inner.get_packet_loss_perc().unwrap(), 10);
        let err = enc.encode(&[0; 160]).unwrap_err();
        assert!(err.to_string().contains("960"), "{err}");
        enc.set_bitrate(1).unwrap();
        assert_eq!(enc.config().bitrate, 6_000);
        assert!(libopus_version().contains("libopus"));
    }

    #[test]
    fn decoder_refuses_garbage_without_panicking() {
        let mut dec = OpusDecoder::new().unwrap();
        let mut out = Vec::new();
        assert!(dec.decode(&[], &mut out).is_err());
        // A code-3 TOC announcing 63 frames with no data is invalid (RFC 6716 §3.2.5).
        let _ = dec.decode(&[0x03 | 0xF8, 0xFF], &mut out);
        for junk in [&[0xFFu8; 1500][..], &[0x0B, 0xFF, 0xFF][..]] {
            let before = out.len();
            if dec.decode(junk, &mut out).is_err() {
                assert_eq!(out.len(), before);
            }
        }
        assert_eq!(dec.conceal(&mut out).unwrap(), FRAME_SAMPLES);
    }
}
