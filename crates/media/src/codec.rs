//! The audio codecs a call can use, behind one type: G.711 (PCMU, PCMA) and Opus.
//!
//! [`AudioCodec`] names a codec as RTP and SDP see it (payload type, clock rate, frame size);
//! [`AudioEncoder`] and [`AudioDecoder`] run it on PCM at the codec's own sample rate (8 kHz for
//! G.711, 48 kHz for Opus). The decoder also conceals lost frames: G.711 Appendix I style
//! ([`crate::plc`]) or Opus PLC, and recovers from Opus in-band FEC.

use std::fmt;

use crate::g711::Codec;
use crate::opus::{self, OpusConfig, OpusDecoder, OpusEncoder, OpusError};
use crate::plc::G711Concealer;

/// The dynamic payload type chaincall offers Opus on (RFC 3551 §3: 96..=127 are dynamic).
pub const DEFAULT_OPUS_PAYLOAD_TYPE: u8 = 111;

/// A negotiated audio codec: what RTP carries and at which clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AudioCodec {
    /// G.711 µ-law or A-law, static payload type, 8 kHz.
    G711(Codec),
    /// Opus at 48 kHz (RFC 7587) on a dynamic payload type.
    Opus {
        /// The payload type agreed in SDP (the offerer's number, RFC 3264 §6.1).
        payload_type: u8,
    },
}

impl AudioCodec {
    /// Opus on [`DEFAULT_OPUS_PAYLOAD_TYPE`].
    pub const OPUS: AudioCodec = AudioCodec::Opus {
        payload_type: DEFAULT_OPUS_PAYLOAD_TYPE,
    };

    /// The RTP payload type.
    pub fn payload_type(self) -> u8 {
        match self {
            AudioCodec::G711(c) => c.payload_type(),
            AudioCodec::Opus { payload_type } => payload_type,
        }
    }

    /// The RTP timestamp clock in Hz (8,000 for G.711; 48,000 for Opus, RFC 7587 §4.1).
    pub fn clock_rate(self) -> u32 {
        match self {
            AudioCodec::G711(_) => Codec::CLOCK_RATE,
            AudioCodec::Opus { .. } => opus::SAMPLE_RATE,
        }
    }

    /// The PCM sample rate the encoder takes and the decoder yields (equal to the clock rate
    /// for both codecs here).
    pub fn sample_rate(self) -> u32 {
        self.clock_rate()
    }

    /// PCM samples (and RTP timestamp units) in `ptime_ms` of audio.
    pub fn samples_per_frame(self, ptime_ms: u32) -> usize {
        (self.sample_rate() as usize * ptime_ms as usize) / 1000
    }

    /// The encoding name of `a=rtpmap`: `PCMU`, `PCMA` or `opus`.
    pub fn encoding_name(self) -> &'static str {
        match self {
            AudioCodec::G711(c) => c.rtpmap_name(),
            AudioCodec::Opus { .. } => "opus",
        }
    }

    /// The value of `a=rtpmap`: `0 PCMU/8000`, or `111 opus/48000/2` (RFC 7587 §7: always two
    /// channels in SDP, whatever is sent).
    pub fn rtpmap(self) -> String {
        match self {
            AudioCodec::G711(c) => format!("{} {}/8000", c.payload_type(), c.rtpmap_name()),
            AudioCodec::Opus { payload_type } => format!("{payload_type} opus/48000/2"),
        }
    }

    /// True for Opus.
    pub fn is_opus(self) -> bool {
        matches!(self, AudioCodec::Opus { .. })
    }
}

impl From<Codec> for AudioCodec {
    fn from(c: Codec) -> Self {
        AudioCodec::G711(c)
    }
}

impl fmt::Display for AudioCodec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.encoding_name())
    }
}

/// Turns PCM frames at the codec's sample rate into RTP payloads.
#[derive(Debug)]
pub enum AudioEncoder {
    /// G.711: one octet per sample, any frame length.
    G711(Codec),
    /// Opus: 20 ms frames only.
    Opus(Box<OpusEncoder>),
}

impl AudioEncoder {
    /// An encoder for `codec`; `opus` configures Opus and is ignored for G.711.
    pub fn new(codec: AudioCodec, opus: OpusConfig) -> Result<Self, OpusError> {
        Ok(match codec {
            AudioCodec::G711(c) => AudioEncoder::G711(c),
            AudioCodec::Opus { .. } => AudioEncoder::Opus(Box::new(OpusEncoder::new(opus)?)),
        })
    }

    /// Encodes one frame. `None` when there is nothing to send (Opus DTX during silence).
    pub fn encode(&mut self, frame: &[i16]) -> Result<Option<Vec<u8>>, OpusError> {
        match self {
            AudioEncoder::G711(c) => {
                let mut out = Vec::with_capacity(frame.len());
                c.encode(frame, &mut out);
                Ok(Some(out))
            }
            AudioEncoder::Opus(e) => e.encode(frame),
        }
    }

    /// The Opus encoder's expected-loss hint in percent (what libopus sizes in-band FEC by);
    /// `None` for G.711.
    pub fn packet_loss_percent(&self) -> Option<u8> {
        match self {
            AudioEncoder::G711(_) => None,
            AudioEncoder::Opus(e) => Some(e.config().packet_loss_percent),
        }
    }

    /// Sets the Opus encoder's expected-loss hint (clamped to 100); nothing for G.711.
    pub fn set_packet_loss_percent(&mut self, percent: u8) -> Result<(), OpusError> {
        match self {
            AudioEncoder::G711(_) => Ok(()),
            AudioEncoder::Opus(e) => e.set_packet_loss_percent(percent),
        }
    }
}

/// Turns RTP payloads into PCM at the codec's sample rate, and conceals what was lost.
#[derive(Debug)]
pub enum AudioDecoder {
    /// G.711 with Appendix I style concealment.
    G711(Codec, Box<G711Concealer>),
    /// Opus with its own PLC and FEC.
    Opus(Box<OpusDecoder>),
}

impl AudioDecoder {
    /// A decoder for `codec`.
    pub fn new(codec: AudioCodec) -> Result<Self, OpusError> {
        Ok(match codec {
            AudioCodec::G711(c) => {
                AudioDecoder::G711(c, Box::new(G711Concealer::new(Codec::CLOCK_RATE)))
            }
            AudioCodec::Opus { .. } => AudioDecoder::Opus(Box::new(OpusDecoder::new()?)),
        })
    }

    /// Decodes a payload, appending its samples to `out`; returns how many. An undecodable
    /// payload is an error and appends nothing.
    pub fn decode(&mut self, payload: &[u8], out: &mut Vec<i16>) -> Result<usize, OpusError> {
        match self {
            AudioDecoder::G711(c, plc) => {
                let start = out.len();
                c.decode(payload, out);
                plc.good(&mut out[start..]);
                Ok(payload.len())
            }
            AudioDecoder::Opus(d) => d.decode(payload, out),
        }
    }

    /// Appends `samples` of concealment for lost audio (Opus conceals in whole 20 ms frames).
    pub fn conceal(&mut self, samples: usize, out: &mut Vec<i16>) -> Result<usize, OpusError> {
        match self {
            AudioDecoder::G711(_, plc) => {
                plc.conceal(samples, out);
                Ok(samples)
            }
            AudioDecoder::Opus(d) => d.conceal(out),
        }
    }

    /// Recovers the frame lost just before `next_payload` from its in-band FEC, when the codec
    /// has FEC (Opus); `None` when it has not (G.711).
    pub fn recover(
        &mut self,
        next_payload: &[u8],
        out: &mut Vec<i16>,
    ) -> Option<Result<usize, OpusError>> {
        match self {
            AudioDecoder::G711(..) => None,
            AudioDecoder::Opus(d) => Some(d.decode_fec(next_payload, out)),
        }
    }

    /// True when the codec can recover a lost frame from the next packet.
    pub fn has_fec(&self) -> bool {
        matches!(self, AudioDecoder::Opus(_))
    }
}
