//! The media session: one RTP session with rtcp-mux (RFC 5761), SRTP both ways, G.711 or Opus
//! audio, and a jitter buffer for playout.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use chaincall_io::Output;
use chaincall_srtp::{SrtpError, SrtpSession};
use rand_core::{OsRng, RngCore};

use crate::codec::{AudioCodec, AudioDecoder, AudioEncoder};
use crate::dtmf::{DtmfConfig, DtmfError, DtmfReceiver, DtmfSender, ReceivedEvent};
use crate::g711::Codec;
use crate::jitter::{Frame, JitterBuffer, JitterConfig, JitterStats};
use crate::opus::{OpusConfig, OpusDecoder};
use crate::resample;
use crate::rtcp::{
    self, Bye, ReceiverReport, ReportBlock, RtcpError, RtcpPacket, SdesChunk, SenderInfo,
    SenderReport,
};
use crate::rtp::{RtpError, RtpPacket};
use crate::sdp::TelephoneEvent;

/// Largest datagram `handle_input` accepts (an Ethernet MTU); a 120 ms G.711 frame with SRTP
/// is about 1,000 octets.
pub const MAX_DATAGRAM: usize = 1500;
/// Default bound on recorded payload: 30 minutes of G.711 (14.4 MB).
pub const DEFAULT_MAX_RECORDED_OCTETS: usize = 8000 * 60 * 30;
/// Longest silence `received_payload` inserts for one gap (10 s), whatever the timestamps claim.
pub const MAX_GAP_FILL: usize = 8000 * 10;
/// Seconds from the NTP epoch (1900) to the Unix epoch (1970), RFC 868.
/// Live input frames waiting to be sent at most ([`MediaSession::push_frame`]): 100 ms at 20 ms.
pub const MAX_LIVE_FRAMES: usize = 5;
const NTP_UNIX_OFFSET: u64 = 2_208_988_800;
/// Shortest RTCP interval honoured (a zero interval would send RTCP in a loop).
const MIN_RTCP_INTERVAL: Duration = Duration::from_millis(100);
/// Extended sequence numbers start this many cycles up so reordering before the first packet
/// cannot go below zero.
const EXT_SEQ_ORIGIN: u64 = 1 << 32;

/// Where a [`MediaSession`] packet goes. The session is bound to one peer, so the destination is
/// the channel: the shell maps it to the negotiated RTP or RTCP address (the same one under
/// rtcp-mux, RFC 5761).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MediaChannel {
    /// An SRTP audio packet: to the peer's RTP address.
    Rtp,
    /// An SRTCP compound packet: to the peer's RTCP address.
    Rtcp,
}

/// What [`MediaSession::poll_output`] yields: packets by channel, never an event
/// ([`Infallible`](std::convert::Infallible): events come back from `handle_input`), and the next
/// deadline.
pub type MediaOutput = Output<std::convert::Infallible, MediaChannel>;

/// How a [`MediaSession`] sends: codec, packet time, identity, RTCP interval. Less common
/// settings are in [`MediaOptions`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaConfig {
    /// The negotiated codec (PCMU or PCMA).
    pub codec: Codec,
    /// Audio per packet in milliseconds (SDP `a=ptime`, RFC 4566 §6); 20 is the RFC 3551
    /// default. Clamped to 10..=120.
    pub ptime_ms: u32,
    /// Our SSRC. It must be the SSRC the SRTP keys were set up for (MIKEY carries it).
    pub local_ssrc: u32,
    /// Our RTCP CNAME (RFC 3550 §6.5.1), e.g. `user@host`.
    pub cname: String,
    /// Time between regular RTCP reports (RFC 3550 §6.2 computes ≥ 5 s for real sessions; 1 s
    /// suits a short demo call). At least 100 ms is used.
    pub rtcp_interval: Duration,
}

/// Settings with good defaults: initial RTP values, the NTP clock reference, the recording
/// bound. `MediaOptions::default()` is what [`MediaSession::new`] uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaOptions {
    /// First RTP sequence number; `None` draws it from the OS CSPRNG (RFC 3550 §5.1).
    pub initial_sequence: Option<u16>,
    /// First RTP timestamp; `None` draws it from the OS CSPRNG (RFC 3550 §5.1).
    pub initial_timestamp: Option<u32>,
    /// Wall-clock time at the session's start `Instant`, for SR NTP timestamps; `None` counts
    /// NTP time from zero at the start (round-trip times still work: only differences matter).
    pub wallclock_at_start: Option<SystemTime>,
    /// At most this many payload octets are recorded; later packets are rejected with
    /// [`MediaError::RecordingFull`].
    pub max_recorded_octets: usize,
    /// The codec to send and expect, when it is not [`MediaConfig::codec`]'s G.711: Opus (on
    /// its negotiated payload type) goes here. `None` (the default) uses `MediaConfig::codec`.
    pub audio_codec: Option<AudioCodec>,
    /// How the Opus encoder runs (bitrate, FEC, loss hint, DTX), when the codec is Opus.
    pub opus: OpusConfig,
    /// The receive jitter buffer that [`MediaSession::pop_audio`] plays out from.
    pub jitter: JitterConfig,
    /// The negotiated telephone-event format (RFC 4733), for [`MediaSession::send_dtmf`] and
    /// [`MediaEvent::Dtmf`]; `None` (the default): DTMF packets are refused as an unexpected
    /// payload type.
    pub telephone_event: Option<TelephoneEvent>,
    /// The rate of the `source` PCM: 8,000 (the default) or 48,000 Hz. A source at the other
    /// rate than the codec's is converted once at the start (8 kHz up for Opus, 48 kHz down for
    /// G.711); any other value is taken as the codec's rate.
    pub source_rate: u32,
    /// Whether the peer's RTCP reports of loss set the Opus loss hint (default `true`); `false`
    /// keeps `opus.packet_loss_percent` for the whole call, so that the encoding depends only
    /// on the audio (the demo compares its recording with an offline encoding).
    pub adaptive_loss_hint: bool,
    /// How much of what [`MediaSession::pop_audio`] hands out to keep, with its timing, for
    /// [`MediaSession::playout`]: what a listener heard, for a bench to score and to measure
    /// mouth-to-ear delay on. `Duration::ZERO` (the default) keeps none.
    pub keep_playout: Duration,
}

impl MediaConfig {
    /// A 20 ms configuration with 1 s RTCP.
    pub fn new(codec: Codec, local_ssrc: u32, cname: impl Into<String>) -> Self {
        MediaConfig {
            codec,
            ptime_ms: 20,
            local_ssrc,
            cname: cname.into(),
            rtcp_interval: Duration::from_secs(1),
        }
    }
}

impl Default for MediaOptions {
    /// Random initial sequence number and timestamp, NTP time from zero, 30 minutes of
    /// recording at most, `MediaConfig::codec`, default Opus and jitter buffer settings.
    fn default() -> Self {
        MediaOptions {
            initial_sequence: None,
            initial_timestamp: None,
            wallclock_at_start: None,
            max_recorded_octets: DEFAULT_MAX_RECORDED_OCTETS,
            audio_codec: None,
            opus: OpusConfig::default(),
            jitter: JitterConfig::default(),
            telephone_event: None,
            source_rate: resample::NARROW_RATE,
            adaptive_loss_hint: true,
            keep_playout: Duration::ZERO,
        }
    }
}

/// What [`MediaSession::pop_audio`] handed out, kept when [`MediaOptions::keep_playout`] asks:
/// frame after frame at the codec's rate, the first played at `started` and each next one a
/// packet time later (the shell pops once per packet-time slot).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Playout {
    /// The slot of the first frame: the `now` of the first `pop_audio`.
    pub started: Option<Instant>,
    /// The samples' rate, Hz.
    pub rate: u32,
    /// The samples, in playout order.
    pub samples: Vec<i16>,
}

/// Why an incoming packet was rejected. Every rejection is counted in [`MediaStats`]; the
/// session stays usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MediaError {
    /// The datagram is longer than [`MAX_DATAGRAM`].
    #[error("datagram of {len} octets exceeds {MAX_DATAGRAM}")]
    Oversized {
        /// Its length.
        len: usize,
    },
    /// SRTP refused the packet: authentication failure, replay, too old, malformed.
    #[error("SRTP: {0}")]
    Srtp(SrtpError),
    /// SRTCP refused the packet: authentication failure, replay, malformed.
    #[error("SRTCP: {0}")]
    Srtcp(SrtpError),
    /// The decrypted RTP packet does not parse.
    #[error("RTP: {0}")]
    Rtp(RtpError),
    /// The decrypted RTCP packet does not parse.
    #[error("RTCP: {0}")]
    Rtcp(RtcpError),
    /// An RTP payload type other than the negotiated codec's.
    #[error("unexpected RTP payload type {0}")]
    UnexpectedPayloadType(u8),
    /// RTP from a second SSRC (the session locks to the first authenticated one).
    #[error("unexpected SSRC {0:#010x}")]
    UnexpectedSsrc(u32),
    /// A sequence number already recorded.
    #[error("duplicate RTP sequence number {0}")]
    Duplicate(u16),
    /// [`MediaOptions::max_recorded_octets`] reached.
    #[error("recording limit reached")]
    RecordingFull,
    /// An RTP packet without payload (G.711 carries at least one sample).
    #[error("RTP packet without payload")]
    EmptyPayload,
    /// A telephone-event packet that does not parse, or digits that are not DTMF.
    #[error("DTMF: {0}")]
    Dtmf(DtmfError),
    /// [`MediaSession::send_dtmf`] without a negotiated telephone-event format.
    #[error("no telephone-event format was negotiated")]
    NoTelephoneEvent,
}

/// What an accepted packet was.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum MediaEvent {
    /// An RTP audio packet, recorded.
    Rtp {
        /// Its sequence number.
        seq: u16,
        /// Its RTP timestamp.
        timestamp: u32,
        /// Its marker bit (start of a talkspurt).
        marker: bool,
        /// Payload octets (= samples for G.711).
        payload_len: usize,
    },
    /// An RTCP compound packet without BYE.
    Rtcp {
        /// The sender info of an SR in it.
        sender_report: Option<SenderInfo>,
        /// The peer's report block about our SSRC.
        report: Option<ReportBlock>,
    },
    /// An RTCP compound packet with a BYE: the peer left (RFC 3550 §6.6).
    Bye,
    /// A telephone-event packet (RFC 4733): the event the first time one of its packets
    /// arrives, `None` for its updates, end packets and repeats.
    Dtmf(Option<ReceivedEvent>),
}

/// What of a session's audio goes out ([`MediaSession::set_audio_gate`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum AudioGate {
    /// The audio as it comes.
    #[default]
    Open,
    /// Silence in its place: muted.
    Silence,
    /// No audio packets at all: on hold.
    Closed,
}

/// Counters and the peer's view, for the demo's table and for tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MediaStats {
    /// SRTP packets sent.
    pub rtp_sent: u64,
    /// SRTP packets accepted.
    pub rtp_received: u64,
    /// SRTP packets rejected (any [`MediaError`] on a non-RTCP datagram).
    pub rtp_rejected: u64,
    /// SRTCP packets sent.
    pub rtcp_sent: u64,
    /// SRTCP packets accepted.
    pub rtcp_received: u64,
    /// SRTCP packets rejected.
    pub rtcp_rejected: u64,
    /// RTP payload octets sent (the SR octet count).
    pub bytes_sent: u64,
    /// RTP payload octets accepted.
    pub bytes_received: u64,
    /// Datagram octets sent, SRTP and SRTCP, as on the wire.
    pub wire_bytes_sent: u64,
    /// Datagram octets received and accepted.
    pub wire_bytes_received: u64,
    /// Packets lost, from sequence-number gaps (RFC 3550 §A.3: expected − received).
    pub lost: u64,
    /// Interarrival jitter in timestamp units (RFC 3550 §A.8).
    pub jitter: u32,
    /// Packets we failed to protect (key exhausted): dropped, never sent.
    pub transmit_errors: u64,
    /// The peer's SSRC, once an RTP packet authenticated.
    pub peer_ssrc: Option<u32>,
    /// The peer's CNAME, once an SDES arrived.
    pub peer_cname: Option<String>,
    /// The peer's last sender info: what it says it sent.
    pub peer_sender: Option<SenderInfo>,
    /// The peer's last report block about us: what it says it received from us.
    pub peer_report: Option<ReportBlock>,
    /// Round-trip time from the peer's last report (RFC 3550 §6.4.1, LSR/DLSR).
    pub rtt: Option<Duration>,
    /// True once the peer sent BYE.
    pub bye_received: bool,
    /// When the last packet (RTP or RTCP) was accepted: a shell can end a call whose peer went
    /// silent.
    pub last_received_at: Option<Instant>,
}

/// What was received, per extended sequence number.
#[derive(Debug, Default)]
struct Receiver {
    packets: BTreeMap<u64, (u32, Vec<u8>)>,
    max_ext: Option<u64>,
    min_ext: u64,
    received: u64,
    stored: usize,
    jitter: f64,
    last_transit: Option<u32>,
    expected_prior: u64,
    received_prior: u64,
    /// Middle 32 bits of the peer's last SR NTP timestamp and when it arrived.
    last_sr: Option<(u32, Instant)>,
}

impl Receiver {
    fn expected(&self) -> u64 {
        self.max_ext.map_or(0, |m| m - self.min_ext + 1)
    }

    fn lost(&self) -> u64 {
        self.expected().saturating_sub(self.received)
    }

    /// RFC 3550 §A.1: the extended sequence number closest to the highest so far.
    fn extend(&self, seq: u16) -> u64 {
        match self.max_ext {
            None => EXT_SEQ_ORIGIN | u64::from(seq),
            Some(max) => {
                let delta = i64::from(seq.wrapping_sub(max as u16) as i16);
                max.wrapping_add_signed(delta)
            }
        }
    }

    /// Widens the received sequence range to `ext`.
    fn note(&mut self, ext: u64) {
        match self.max_ext {
            None => {
                self.max_ext = Some(ext);
                self.min_ext = ext;
            }
            Some(max) => {
                self.max_ext = Some(max.max(ext));
                self.min_ext = self.min_ext.min(ext);
            }
        }
    }
}

/// One RTP session with rtcp-mux and SRTP both ways, G.711 or Opus: sends `source` in ptime
/// frames, with SRTCP reports; records what the peer sends, and plays it out through a jitter
/// buffer for a shell that renders audio ([`pop_audio`](Self::pop_audio)).
///
/// Sans-IO: no socket, no clock. Call order, from the shell's loop:
/// 1. [`handle_input`](Self::handle_input) for every datagram received on the media socket;
/// 2. then [`poll_output`](Self::poll_output) until it yields `Timeout`, sending each packet to
///    the address its [`MediaChannel`] names;
/// 3. sleep until that deadline or the next datagram, and repeat.
///
/// On hangup call [`finish`](Self::finish) and drain `poll_output` once more (SR + BYE). A
/// shell that polls late gets the frames it missed back to back, each still timestamped for
/// its slot.
pub struct MediaSession {
    config: MediaConfig,
    /// The codec in use: `options.audio_codec` or `config.codec`.
    codec: AudioCodec,
    encoder: AudioEncoder,
    /// Receive playout (see [`MediaSession::pop_audio`]), fed from the first `pop_audio` on.
    playout: JitterBuffer,
    playout_active: bool,
    /// What was played, when `options.keep_playout` asks for it.
    played: Playout,
    /// The next RTP sequence number offset: one per packet built (Opus DTX skips frames).
    packets_built: u16,
    /// True when the last frame was not sent (DTX): the next packet starts a talkspurt.
    in_dtx: bool,
    dtmf_tx: Option<DtmfSender>,
    dtmf_rx: DtmfReceiver,
    /// What of the audio goes out ([`MediaSession::set_audio_gate`]): mute and hold.
    gate: AudioGate,
    options: MediaOptions,
    outbound: SrtpSession,
    inbound: SrtpSession,
    source: Vec<i16>,
    /// Live input ([`MediaSession::use_live_input`]): frames a microphone gave, waiting to be
    /// sent; `None` sends `source`.
    live: Option<VecDeque<Vec<i16>>>,
    samples_per_frame: usize,
    frames_total: usize,
    next_frame: usize,
    start: Instant,
    ptime: Duration,
    rtcp_interval: Duration,
    initial_seq: u16,
    initial_ts: u32,
    next_rtcp_at: Instant,
    finish_at: Option<Instant>,
    closed: bool,
    sent_payload: Vec<u8>,
    rx: Receiver,
    stats: MediaStats,
    scratch: Vec<u8>,
    /// `rtp_sent` when the last two RTCP reports went out (for the SR-or-RR rule of §6.4).
    sent_at_reports: [u64; 2],
}

impl std::fmt::Debug for MediaSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A summary: the audio buffers are large, and the SRTP sessions print no keys anyway.
        f.debug_struct("MediaSession")
            .field("config", &self.config)
            .field("frames_sent", &self.next_frame)
            .field("frames_total", &self.frames_total)
            .field("finishing", &self.finish_at.is_some())
            .field("closed", &self.closed)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl MediaSession {
    /// Starts a session at `now`: `outbound` protects what we send, `inbound` unprotects what
    /// the peer sends; `source` is 8 kHz PCM to send (the last frame is padded with silence;
    /// converted to 48 kHz for Opus).
    /// The first frame is due at `now`, the first RTCP report one interval later. Uses
    /// [`MediaOptions::default`].
    pub fn new(
        config: MediaConfig,
        outbound: SrtpSession,
        inbound: SrtpSession,
        source: Vec<i16>,
        now: Instant,
    ) -> Self {
        Self::with_options(
            config,
            MediaOptions::default(),
            outbound,
            inbound,
            source,
            now,
        )
    }

    /// As [`new`](Self::new), with explicit [`MediaOptions`] (fixed initial RTP values for
    /// reproducible tests, a wall-clock reference for SR timestamps, a recording bound, Opus,
    /// jitter buffer settings). Opus always uses 20 ms packets (`ptime_ms` is set to 20).
    pub fn with_options(
        mut config: MediaConfig,
        options: MediaOptions,
        outbound: SrtpSession,
        inbound: SrtpSession,
        source: Vec<i16>,
        now: Instant,
    ) -> Self {
        config.ptime_ms = config.ptime_ms.clamp(10, 120);
        let codec = options.audio_codec.unwrap_or(config.codec.into());
        if codec.is_opus() {
            config.ptime_ms = 20;
        }
        // Converted only when the source is not at the codec's rate already.
        let source = match (codec.clock_rate(), options.source_rate) {
            (resample::WIDE_RATE, resample::NARROW_RATE) => resample::upsample_8k_to_48k(&source),
            (resample::NARROW_RATE, resample::WIDE_RATE) => resample::downsample_48k_to_8k(&source),
            _ => source,
        };
        let samples_per_frame = codec.samples_per_frame(config.ptime_ms);
        // Invariant: creating a 48 kHz mono Opus encoder or decoder with in-range settings
        // fails only when libopus cannot allocate, which the allocator treats as fatal anyway.
        let encoder = AudioEncoder::new(codec, options.opus).expect("libopus encoder");
        let decoder = AudioDecoder::new(codec).expect("libopus decoder");
        let mut jitter = JitterConfig {
            ptime: Duration::from_millis(u64::from(config.ptime_ms)),
            ..options.jitter
        };
        if codec.is_opus() {
            // A packet more than G.711 needs: the packet after a lost one is then usually in by
            // the lost one's turn, and its in-band FEC (RFC 7587 §3.3) replaces the loss, not PLC.
            jitter.min_delay = jitter.min_delay.max(2 * jitter.ptime);
        }
        let playout = JitterBuffer::new(decoder, codec.clock_rate(), jitter);
        let frames_total = source.len().div_ceil(samples_per_frame);
        let rtcp_interval = config.rtcp_interval.max(MIN_RTCP_INTERVAL);
        let initial_seq = options
            .initial_sequence
            .unwrap_or_else(|| OsRng.next_u32() as u16);
        let initial_ts = options
            .initial_timestamp
            .unwrap_or_else(|| OsRng.next_u32());
        MediaSession {
            ptime: Duration::from_millis(u64::from(config.ptime_ms)),
            config,
            codec,
            encoder,
            playout,
            playout_active: false,
            played: Playout {
                rate: codec.clock_rate(),
                ..Playout::default()
            },
            packets_built: 0,
            in_dtx: false,
            dtmf_tx: options
                .telephone_event
                .as_ref()
                .map(|t| DtmfSender::new(DtmfConfig::new(t.clock_rate))),
            dtmf_rx: DtmfReceiver::new(),
            gate: AudioGate::Open,
            options,
            outbound,
            inbound,
            source,
            live: None,
            samples_per_frame,
            frames_total,
            next_frame: 0,
            start: now,
            rtcp_interval,
            initial_seq,
            initial_ts,
            next_rtcp_at: now + rtcp_interval,
            finish_at: None,
            closed: false,
            sent_payload: Vec::new(),
            rx: Receiver::default(),
            stats: MediaStats::default(),
            scratch: Vec::with_capacity(MAX_DATAGRAM),
            sent_at_reports: [0; 2],
        }
    }

    /// The configuration (with `ptime_ms` as clamped).
    pub fn config(&self) -> &MediaConfig {
        &self.config
    }

    /// The first RTP sequence number we send.
    pub fn initial_sequence(&self) -> u16 {
        self.initial_seq
    }

    /// The first RTP timestamp we send.
    pub fn initial_timestamp(&self) -> u32 {
        self.initial_ts
    }

    /// Takes one datagram from the media socket: SRTCP when RFC 5761 says RTCP, else SRTP;
    /// unprotects, parses and records it. A rejected packet returns the reason and is counted
    /// in [`stats`](Self::stats); nothing else changes, except that a packet which
    /// authenticated but is refused afterwards (wrong payload type or SSRC, duplicate, no
    /// payload, recording full) stays in the SRTP replay window, so it cannot be replayed.
    pub fn handle_input(&mut self, packet: &[u8], now: Instant) -> Result<MediaEvent, MediaError> {
        let is_rtcp = rtcp::is_rtcp(packet);
        let result = if packet.len() > MAX_DATAGRAM {
            Err(MediaError::Oversized { len: packet.len() })
        } else if is_rtcp {
            self.handle_srtcp(packet, now)
        } else {
            self.handle_srtp(packet, now)
        };
        match (&result, is_rtcp) {
            (Ok(_), true) => {
                self.stats.last_received_at = Some(now);
                self.stats.rtcp_received += 1;
                self.stats.wire_bytes_received += packet.len() as u64;
            }
            (Ok(_), false) => {
                self.stats.last_received_at = Some(now);
                self.stats.rtp_received += 1;
                self.stats.wire_bytes_received += packet.len() as u64;
            }
            (Err(_), true) => self.stats.rtcp_rejected += 1,
            (Err(_), false) => self.stats.rtp_rejected += 1,
        }
        result
    }

    fn handle_srtp(&mut self, packet: &[u8], now: Instant) -> Result<MediaEvent, MediaError> {
        let mut buf = std::mem::take(&mut self.scratch);
        buf.clear();
        buf.extend_from_slice(packet);
        let result = self
            .inbound
            .unprotect_rtp(&mut buf)
            .map_err(MediaError::Srtp)
            .and_then(|()| self.record_rtp(&buf, now));
        self.scratch = buf;
        result
    }

    fn record_rtp(&mut self, buf: &[u8], now: Instant) -> Result<MediaEvent, MediaError> {
        let p = RtpPacket::parse(buf).map_err(MediaError::Rtp)?;
        let events_pt = self
            .options
            .telephone_event
            .as_ref()
            .map(|t| t.payload_type);
        if p.payload_type != self.codec.payload_type() && Some(p.payload_type) != events_pt {
            return Err(MediaError::UnexpectedPayloadType(p.payload_type));
        }
        match self.stats.peer_ssrc {
            Some(s) if s != p.ssrc => return Err(MediaError::UnexpectedSsrc(p.ssrc)),
            _ => {}
        }
        if Some(p.payload_type) == events_pt {
            return self.record_event(&p);
        }
        let ext = self.rx.extend(p.sequence);
        if self.rx.packets.contains_key(&ext) {
            return Err(MediaError::Duplicate(p.sequence));
        }
        if p.payload.is_empty() {
            // Also bounds the number of stored packets by the octet limit.
            return Err(MediaError::EmptyPayload);
        }
        if self.rx.stored + p.payload.len() > self.options.max_recorded_octets {
            return Err(MediaError::RecordingFull);
        }
        // Accepted from here on.
        self.stats.peer_ssrc = Some(p.ssrc);
        self.rx.stored += p.payload.len();
        self.rx
            .packets
            .insert(ext, (p.timestamp, p.payload.to_vec()));
        self.rx.note(ext);
        self.rx.received += 1;
        self.stats.bytes_received += p.payload.len() as u64;
        if self.playout_active {
            self.playout.push(p.sequence, p.timestamp, p.payload, now);
        }
        // RFC 3550 §A.8: interarrival jitter, in timestamp units.
        let arrival = self.rtp_clock(now);
        let transit = arrival.wrapping_sub(p.timestamp);
        if let Some(last) = self.rx.last_transit {
            let d = f64::from((transit.wrapping_sub(last) as i32).unsigned_abs());
            self.rx.jitter += (d - self.rx.jitter) / 16.0;
        }
        self.rx.last_transit = Some(transit);
        self.stats.jitter = self.rx.jitter as u32;
        self.stats.lost = self.rx.lost();
        Ok(MediaEvent::Rtp {
            seq: p.sequence,
            timestamp: p.timestamp,
            marker: p.marker,
            payload_len: p.payload.len(),
        })
    }

    /// A telephone-event packet: reported once per event; counted in the RTP statistics (it
    /// uses the stream's sequence numbers) but not recorded as audio.
    fn record_event(&mut self, p: &RtpPacket<'_>) -> Result<MediaEvent, MediaError> {
        let event = self
            .dtmf_rx
            .handle(p.timestamp, p.payload)
            .map_err(MediaError::Dtmf)?;
        self.stats.peer_ssrc = Some(p.ssrc);
        let ext = self.rx.extend(p.sequence);
        self.rx.note(ext);
        self.rx.received += 1;
        self.stats.bytes_received += p.payload.len() as u64;
        self.stats.lost = self.rx.lost();
        if self.playout_active {
            self.playout.skip(p.sequence);
        }
        Ok(MediaEvent::Dtmf(event))
    }

    /// Queues DTMF digits (0–9, *, #, A–D) to send as RFC 4733 telephone-events: each 100 ms,
    /// 50 ms apart, audio paused meanwhile. Drain [`poll_output`](Self::poll_output) afterwards.
    pub fn send_dtmf(&mut self, digits: &str) -> Result<(), MediaError> {
        self.dtmf_tx
            .as_mut()
            .ok_or(MediaError::NoTelephoneEvent)?
            .queue_digits(digits)
            .map_err(MediaError::Dtmf)
    }

    /// Sets what of the audio goes out from the next frame on: all of it, silence in its place
    /// (mute: G.711 sends silence, Opus with DTX soon nothing), or nothing (hold: RFC 3264 §8.4,
    /// the held side sends no media). RTCP and DTMF go on; the RTP clock runs on, so audio
    /// resumes on the right timestamps, as a new talkspurt.
    pub fn set_audio_gate(&mut self, gate: AudioGate) {
        self.gate = gate;
    }

    fn handle_srtcp(&mut self, packet: &[u8], now: Instant) -> Result<MediaEvent, MediaError> {
        let mut buf = std::mem::take(&mut self.scratch);
        buf.clear();
        buf.extend_from_slice(packet);
        let result = self
            .inbound
            .unprotect_rtcp(&mut buf)
            .map_err(MediaError::Srtcp)
            .and_then(|()| rtcp::parse_compound(&buf).map_err(MediaError::Rtcp));
        self.scratch = buf;
        let packets = result?;
        let mut sender_report = None;
        let mut report = None;
        let mut bye = false;
        let local = self.config.local_ssrc;
        for p in packets {
            match p {
                RtcpPacket::SenderReport(sr) => {
                    sender_report = Some(sr.info);
                    self.stats.peer_sender = Some(sr.info);
                    // LSR: the middle 32 bits of the NTP timestamp (§6.4.1).
                    self.rx.last_sr = Some(((sr.info.ntp_timestamp >> 16) as u32, now));
                    report = sr.reports.into_iter().find(|b| b.ssrc == local).or(report);
                }
                RtcpPacket::ReceiverReport(rr) => {
                    report = rr.reports.into_iter().find(|b| b.ssrc == local).or(report);
                }
                RtcpPacket::Sdes(chunks) => {
                    if let Some(name) = chunks.iter().find_map(|c| c.cname_value()) {
                        self.stats.peer_cname = Some(String::from_utf8_lossy(name).into_owned());
                    }
                }
                RtcpPacket::Bye(_) => bye = true,
                _ => {}
            }
        }
        if let Some(block) = report {
            self.stats.peer_report = Some(block);
            self.follow_reported_loss(block.fraction_lost);
            // §6.4.1: RTT = A − LSR − DLSR, in 1/65536 s, when the peer has seen an SR of ours.
            if block.last_sr != 0 {
                let a = (self.ntp(now) >> 16) as u32;
                let rtt = a
                    .wrapping_sub(block.last_sr)
                    .wrapping_sub(block.delay_since_last_sr);
                if rtt < 1 << 31 {
                    self.stats.rtt =
                        Some(Duration::from_nanos(u64::from(rtt) * 1_000_000_000 / 65536));
                }
            }
        }
        if bye {
            self.stats.bye_received = true;
            return Ok(MediaEvent::Bye);
        }
        Ok(MediaEvent::Rtcp {
            sender_report,
            report,
        })
    }

    /// The next output at `now`: a protected packet that is due, or, when nothing is, the time
    /// something next will be (`Timeout(None)` once the final BYE went out). Due packets are an
    /// SRTP audio frame per ptime from the source ([`MediaChannel::Rtp`]), an SRTCP SR with SDES
    /// every RTCP interval (an RR when no audio went out since the report before last, RFC 3550
    /// §6.4), and after [`finish`](Self::finish) a final SR (or RR) + SDES + BYE (all
    /// [`MediaChannel::Rtcp`]). Drain until `Timeout` after every `handle_input` and at every
    /// deadline; polling early or twice is harmless.
    ///
    /// It never yields an `Event`: what a received packet means answers that packet, so
    /// [`handle_input`](Self::handle_input) returns it, as a per-packet transform does.
    pub fn poll_output(&mut self, now: Instant) -> MediaOutput {
        loop {
            if self.closed {
                return Output::Timeout(None);
            }
            let event_ts = self
                .initial_ts
                .wrapping_add((self.next_frame * self.samples_per_frame) as u32);
            let event = match (&mut self.dtmf_tx, self.finish_at) {
                (Some(tx), None) => tx.poll(now, event_ts),
                _ => None,
            };
            let (channel, packet) = if let Some(e) = event {
                (MediaChannel::Rtp, self.next_event(e))
            } else if self.finish_at.is_none() && self.audio_due(now) {
                (MediaChannel::Rtp, self.next_rtp())
            } else if self.finish_at.is_some() {
                self.closed = true;
                (MediaChannel::Rtcp, self.next_rtcp(now, true))
            } else if now >= self.next_rtcp_at {
                self.next_rtcp_at += self.rtcp_interval;
                if self.next_rtcp_at <= now {
                    // The shell fell behind by more than an interval: one report, not a burst.
                    self.next_rtcp_at = now + self.rtcp_interval;
                }
                (MediaChannel::Rtcp, self.next_rtcp(now, false))
            } else {
                return Output::Timeout(Some(self.next_due(now)));
            };
            match packet {
                Some(p) => {
                    self.stats.wire_bytes_sent += p.len() as u64;
                    return Output::transmit(channel, p);
                }
                // Protect failed (counted): try whatever is due next.
                None => continue,
            }
        }
    }

    /// When something is next due while the session is open: the final report after `finish`,
    /// else the earlier of the next audio frame and the next RTCP report.
    fn next_due(&self, now: Instant) -> Instant {
        if let Some(at) = self.finish_at {
            return at;
        }
        let mut t = self.next_rtcp_at;
        if let Some(at) = self.dtmf_tx.as_ref().and_then(|tx| tx.next_due(now)) {
            t = t.min(at);
        }
        if self.live.is_none() && self.next_frame < self.frames_total {
            t = t.min(self.frame_at(self.next_frame));
        }
        t
    }

    /// Whether an audio frame is due: the source's next one at its slot, or (live input) any
    /// frame pushed and not yet sent.
    fn audio_due(&self, now: Instant) -> bool {
        match &self.live {
            Some(queue) => !queue.is_empty(),
            None => self.next_frame < self.frames_total && now >= self.frame_at(self.next_frame),
        }
    }

    /// Switches what is sent from the `source` given at the start to live input: from now on
    /// each frame [`push_frame`](Self::push_frame) queues goes out at the next
    /// [`poll_output`](Self::poll_output), on the RTP clock of the frames sent (one frame's
    /// samples later each). For a microphone, read by the shell once per packet time; the
    /// shell's timer paces it.
    pub fn use_live_input(&mut self) {
        self.live.get_or_insert_with(VecDeque::new);
        self.frames_total = usize::MAX;
    }

    /// Queues one frame of live input, at the codec's rate: [`samples_per_frame`] samples
    /// (a shorter frame is padded with silence, a longer one cut). At most
    /// [`MAX_LIVE_FRAMES`] wait; beyond that the oldest is dropped, so a shell that pushes
    /// without polling never builds up delay. Ignored without
    /// [`use_live_input`](Self::use_live_input) or after [`finish`](Self::finish).
    ///
    /// [`samples_per_frame`]: Self::samples_per_frame
    pub fn push_frame(&mut self, frame: &[i16]) {
        let spf = self.samples_per_frame;
        let Some(queue) = self.live.as_mut().filter(|_| self.finish_at.is_none()) else {
            return;
        };
        if queue.len() >= MAX_LIVE_FRAMES {
            queue.pop_front();
        }
        let mut frame = frame[..frame.len().min(spf)].to_vec();
        frame.resize(spf, 0);
        queue.push_back(frame);
    }

    /// Samples in one packet's frame at the codec's rate (160 for G.711 at 20 ms, 960 for
    /// Opus): the frame size [`push_frame`](Self::push_frame) takes and
    /// [`pop_audio`](Self::pop_audio) gives.
    pub fn samples_per_frame(&self) -> usize {
        self.samples_per_frame
    }

    /// Stops sending audio and queues the final RTCP compound packet (SR + SDES + BYE), due at
    /// `now`. Calling it again changes nothing.
    pub fn finish(&mut self, now: Instant) {
        if self.finish_at.is_none() && !self.closed {
            self.finish_at = Some(now);
        }
    }

    /// True once every source frame was sent (never with live input).
    pub fn source_done(&self) -> bool {
        self.live.is_none() && self.next_frame >= self.frames_total
    }

    /// True once the final BYE was sent: the session has nothing more to send.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Counters, loss, jitter and what the peer reports.
    pub fn stats(&self) -> MediaStats {
        self.stats.clone()
    }

    /// Every payload octet sent, in order (G.711 octets; for Opus the packets back to back).
    pub fn sent_payload(&self) -> &[u8] {
        &self.sent_payload
    }

    /// The received G.711 payload in RTP sequence order: reordering undone, duplicates refused
    /// on arrival; a gap of lost packets (counted in `stats().lost`) and a timestamp jump
    /// without lost packets (silence suppression) are filled with the codec's silence octet,
    /// as long as the timestamps say (at most [`MAX_GAP_FILL`] per gap, and in total no more
    /// than the recording bound). Packets lost before the first or after the last received
    /// one cannot be seen: the reassembly starts and ends with what arrived. For Opus the
    /// received packets back to back, in sequence order, without fill.
    pub fn received_payload(&self) -> Vec<u8> {
        let AudioCodec::G711(codec) = self.codec else {
            return self
                .rx
                .packets
                .values()
                .flat_map(|(_, p)| p.clone())
                .collect();
        };
        let silence = codec.silence();
        let mut out = Vec::with_capacity(self.rx.stored);
        // Silence inserted in total is bounded too: at most as much as the recording limit.
        let mut fill_budget = self.options.max_recorded_octets;
        let mut prev: Option<(u64, u32, usize)> = None;
        for (&ext, (ts, payload)) in &self.rx.packets {
            if let Some((pext, pts, plen)) = prev {
                let missing = (ext - pext - 1) as usize;
                let by_ts = ts.wrapping_sub(pts.wrapping_add(plen as u32)) as usize;
                let fill = if by_ts <= MAX_GAP_FILL {
                    by_ts
                } else if missing > 0 {
                    // Timestamps make no sense: assume the lost packets were like the last.
                    (missing * plen).min(MAX_GAP_FILL)
                } else {
                    0
                };
                let fill = fill.min(fill_budget);
                fill_budget -= fill;
                out.extend(std::iter::repeat_n(silence, fill));
            }
            out.extend_from_slice(payload);
            prev = Some((ext, *ts, payload.len()));
        }
        out
    }

    /// The received audio decoded to 8 kHz PCM: what the phone writes to its WAV file. For
    /// Opus each packet is decoded in sequence order, a lost packet concealed (libopus PLC),
    /// a timestamp jump without loss (DTX) filled with silence as for G.711, and the result
    /// converted from 48 kHz.
    pub fn recorded_audio(&self) -> Vec<i16> {
        let mut out = Vec::new();
        match self.codec {
            AudioCodec::G711(codec) => codec.decode(&self.received_payload(), &mut out),
            AudioCodec::Opus { .. } => {
                if let Ok(decoder) = OpusDecoder::new() {
                    out = resample::downsample_48k_to_8k(&self.decode_opus(decoder));
                }
            }
        }
        out
    }

    /// The received audio decoded at the codec's rate, for a shell that keeps wide-band audio:
    /// 48 kHz for Opus (what [`recorded_audio`](Self::recorded_audio) converts down, nothing
    /// above 4 kHz lost), 8 kHz for G.711 (the same as `recorded_audio`).
    pub fn recorded_audio_at_codec_rate(&self) -> Vec<i16> {
        match self.codec {
            AudioCodec::G711(_) => self.recorded_audio(),
            AudioCodec::Opus { .. } => OpusDecoder::new()
                .map(|d| self.decode_opus(d))
                .unwrap_or_default(),
        }
    }

    fn decode_opus(&self, mut decoder: OpusDecoder) -> Vec<i16> {
        let mut pcm = Vec::new();
        // Bounded like G.711's fill: at most MAX_GAP_FILL (in 8 kHz samples) per gap; and in
        // total as long as G.711 could be (recording bound plus as much fill), at 48 kHz, since
        // a hostile peer's tiny packets could each claim up to 120 ms.
        let max_gap = MAX_GAP_FILL * resample::FACTOR;
        let cap = self
            .options
            .max_recorded_octets
            .saturating_mul(2 * resample::FACTOR);
        let mut prev: Option<(u64, u32, usize)> = None;
        for (&ext, (ts, payload)) in &self.rx.packets {
            if pcm.len() >= cap {
                break;
            }
            if let Some((pext, pts, plen)) = prev {
                let missing = (ext - pext - 1) as usize;
                for _ in 0..missing.min(max_gap / crate::opus::FRAME_SAMPLES) {
                    let _ = decoder.conceal(&mut pcm);
                }
                let by_ts = ts.wrapping_sub(pts.wrapping_add(plen as u32)) as usize;
                let silence = by_ts.saturating_sub(missing * crate::opus::FRAME_SAMPLES);
                if by_ts <= max_gap {
                    pcm.extend(std::iter::repeat_n(
                        0,
                        silence.min(cap.saturating_sub(pcm.len())),
                    ));
                }
            }
            let start = pcm.len();
            if decoder.decode(payload, &mut pcm).is_err() {
                let _ = decoder.conceal(&mut pcm);
            }
            prev = Some((ext, *ts, pcm.len() - start));
        }
        pcm.truncate(cap);
        pcm
    }

    /// The next frame of received audio to play at `now`, at the codec's sample rate (8 kHz
    /// G.711, 48 kHz Opus), from the jitter buffer: decoded, concealed, FEC-recovered or
    /// silence. A shell that renders audio calls it once per `config().ptime_ms`, from the
    /// start of the call: packets go into the buffer from the first call on, so a shell that
    /// only records (and never calls it) spends nothing on playout.
    pub fn pop_audio(&mut self, now: Instant) -> Frame {
        self.playout_active = true;
        let frame = self.playout.pop(now);
        let keep = self.options.keep_playout;
        if !keep.is_zero() {
            let played = &mut self.played;
            played.started.get_or_insert(now);
            let cap = (keep.as_secs_f64() * f64::from(played.rate)) as usize;
            let room = cap.saturating_sub(played.samples.len());
            let samples = frame.samples();
            played
                .samples
                .extend_from_slice(&samples[..samples.len().min(room)]);
        }
        frame
    }

    /// What [`pop_audio`](Self::pop_audio) handed out, as [`MediaOptions::keep_playout`] kept it
    /// (empty when it keeps none).
    pub fn playout(&self) -> &Playout {
        &self.played
    }

    /// When the source's first frame is due (each next one a packet time later): with a
    /// microphone, the moment that frame's capture ended.
    pub fn source_started(&self) -> Instant {
        self.start
    }

    /// The jitter buffer's counters (late, lost, concealed, delays) for the call report.
    pub fn jitter_stats(&self) -> JitterStats {
        self.playout.stats()
    }

    /// The Opus encoder's expected-loss hint now, in percent: `OpusConfig::packet_loss_percent`
    /// until the peer's first RTCP report, then what the reports say. `None` for G.711.
    pub fn opus_loss_hint(&self) -> Option<u8> {
        self.encoder.packet_loss_percent()
    }

    /// Sets the Opus loss hint from a report's fraction lost (RFC 3550 §6.4.1, in 1/256), so
    /// that libopus spends bits on in-band FEC (RFC 7587 §3.3) as the network needs: none on a
    /// clean one, where the FEC copy would only cost quality, more as loss grows. Rounded up to
    /// a whole percent; it rises at once and falls by at most a quarter per report, since one
    /// interval without loss (25 packets at the phone's 500 ms) says little about the next.
    fn follow_reported_loss(&mut self, fraction_lost: u8) {
        let Some(current) = self.encoder.packet_loss_percent() else {
            return;
        };
        if !self.options.adaptive_loss_hint {
            return;
        }
        let measured = (u32::from(fraction_lost) * 100).div_ceil(256) as u8;
        let hint = measured.max(current - current.div_ceil(4));
        if hint != current {
            // Only an out-of-range value fails, and `hint` is at most 100.
            let _ = self.encoder.set_packet_loss_percent(hint);
        }
    }

    /// The codec in use.
    pub fn codec(&self) -> AudioCodec {
        self.codec
    }

    fn frame_at(&self, k: usize) -> Instant {
        self.start + self.ptime * k as u32
    }

    /// `now` on the RTP clock, without the random offset.
    fn rtp_clock(&self, now: Instant) -> u32 {
        let ns = now.saturating_duration_since(self.start).as_nanos();
        (ns * u128::from(self.codec.clock_rate()) / 1_000_000_000) as u32
    }

    /// `now` as a 32.32 NTP timestamp.
    fn ntp(&self, now: Instant) -> u64 {
        let base = self
            .options
            .wallclock_at_start
            .and_then(|w| w.duration_since(UNIX_EPOCH).ok())
            .map_or(Duration::ZERO, |d| d + Duration::from_secs(NTP_UNIX_OFFSET));
        let t = base + now.saturating_duration_since(self.start);
        let frac = (u64::from(t.subsec_nanos()) << 32) / 1_000_000_000;
        (t.as_secs() << 32) | frac
    }

    fn next_rtp(&mut self) -> Option<Vec<u8>> {
        let k = self.next_frame;
        self.next_frame += 1;
        let spf = self.samples_per_frame;
        let mut frame = match self.live.as_mut() {
            // audio_due saw a frame queued; an empty one would be sent as silence.
            Some(queue) => queue.pop_front().unwrap_or_default(),
            None => {
                let from = k * spf;
                let to = (from + spf).min(self.source.len());
                self.source[from..to].to_vec()
            }
        };
        if self.dtmf_tx.as_ref().is_some_and(DtmfSender::is_sending) {
            // RFC 4733 §2.5.1.2: the events replace the audio; it resumes as a new talkspurt.
            self.in_dtx = true;
            return None;
        }
        // The last frame is padded with silence (G.711: the silence octet, as before).
        frame.resize(spf, 0);
        match self.gate {
            AudioGate::Open => {}
            AudioGate::Silence => frame.fill(0),
            AudioGate::Closed => {
                self.in_dtx = true;
                return None;
            }
        }
        let payload = match self.encoder.encode(&frame) {
            Ok(Some(p)) => p,
            Ok(None) => {
                // DTX: nothing to send for this frame; the next packet starts a talkspurt.
                self.in_dtx = true;
                return None;
            }
            Err(_) => {
                self.stats.transmit_errors += 1;
                return None;
            }
        };
        // RFC 3551 §4.1: the marker flags the first packet of a talkspurt.
        let marker = k == 0 || std::mem::take(&mut self.in_dtx);
        let ts = self.initial_ts.wrapping_add((k * spf) as u32);
        let packet = self.build_rtp(self.codec.payload_type(), marker, ts, &payload)?;
        // Live input never ends: what is kept of it for the report is bounded like a recording.
        if self.live.is_none()
            || self.sent_payload.len() + payload.len() <= self.options.max_recorded_octets
        {
            self.sent_payload.extend_from_slice(&payload);
        }
        Some(packet)
    }

    fn next_event(&mut self, e: crate::dtmf::DtmfPacket) -> Option<Vec<u8>> {
        let pt = self.options.telephone_event.as_ref()?.payload_type;
        self.build_rtp(pt, e.marker, e.timestamp, &e.payload.to_bytes())
    }

    /// Builds and protects the next RTP packet on our sequence numbers, counting it.
    fn build_rtp(&mut self, pt: u8, marker: bool, ts: u32, payload: &[u8]) -> Option<Vec<u8>> {
        let seq = self.initial_seq.wrapping_add(self.packets_built);
        self.packets_built = self.packets_built.wrapping_add(1);
        let mut header = RtpPacket::new(pt, seq, ts, self.config.local_ssrc, payload);
        header.marker = marker;
        let mut packet = Vec::with_capacity(header.len() + self.outbound.srtp_overhead());
        // Fails only for a payload type above 127 (a misconfigured dynamic number).
        if header.write(&mut packet).is_err() || self.outbound.protect_rtp(&mut packet).is_err() {
            self.stats.transmit_errors += 1;
            return None;
        }
        self.stats.rtp_sent += 1;
        self.stats.bytes_sent += payload.len() as u64;
        Some(packet)
    }

    fn report_blocks(&mut self, now: Instant) -> Vec<ReportBlock> {
        let (Some(peer), Some(max)) = (self.stats.peer_ssrc, self.rx.max_ext) else {
            return Vec::new();
        };
        // §A.3: fraction lost over the interval since the last report.
        let expected = self.rx.expected();
        let expected_interval = expected - self.rx.expected_prior;
        let received_interval = self.rx.received - self.rx.received_prior;
        self.rx.expected_prior = expected;
        self.rx.received_prior = self.rx.received;
        let lost_interval = expected_interval.saturating_sub(received_interval);
        let fraction_lost = (lost_interval << 8)
            .checked_div(expected_interval)
            .map_or(0, |f| f.min(255) as u8);
        let (last_sr, delay_since_last_sr) = match self.rx.last_sr {
            Some((lsr, at)) => {
                let d = now.saturating_duration_since(at);
                (lsr, (d.as_nanos() * 65536 / 1_000_000_000) as u32)
            }
            None => (0, 0),
        };
        vec![ReportBlock {
            ssrc: peer,
            fraction_lost,
            cumulative_lost: self.rx.lost().min(0x7F_FFFF) as i32,
            // Cycles counted from the first packet, as RFC 3550 §A.1 does.
            highest_seq: (max - (self.rx.min_ext & !0xFFFF)) as u32,
            jitter: self.rx.jitter as u32,
            last_sr,
            delay_since_last_sr,
        }]
    }

    fn next_rtcp(&mut self, now: Instant, bye: bool) -> Option<Vec<u8>> {
        let ssrc = self.config.local_ssrc;
        let reports = self.report_blocks(now);
        let mut packets = Vec::with_capacity(3);
        // §6.4: an SR when we sent RTP since the report before last, else an RR.
        let sent_lately = self.stats.rtp_sent > self.sent_at_reports[0];
        self.sent_at_reports = [self.sent_at_reports[1], self.stats.rtp_sent];
        if sent_lately {
            packets.push(RtcpPacket::SenderReport(SenderReport {
                ssrc,
                info: SenderInfo {
                    ntp_timestamp: self.ntp(now),
                    rtp_timestamp: self.initial_ts.wrapping_add(self.rtp_clock(now)),
                    packet_count: self.stats.rtp_sent as u32,
                    octet_count: self.stats.bytes_sent as u32,
                },
                reports,
            }));
        } else {
            packets.push(RtcpPacket::ReceiverReport(ReceiverReport { ssrc, reports }));
        }
        // §6.1: every compound packet carries the CNAME.
        let mut end = self.config.cname.len().min(255);
        while !self.config.cname.is_char_boundary(end) {
            end -= 1;
        }
        packets.push(RtcpPacket::Sdes(vec![SdesChunk::cname(
            ssrc,
            &self.config.cname[..end],
        )]));
        if bye {
            packets.push(RtcpPacket::Bye(Bye {
                ssrcs: vec![ssrc],
                reason: None,
            }));
        }
        let mut packet = Vec::with_capacity(128);
        if rtcp::write_compound(&packets, &mut packet).is_err()
            || self.outbound.protect_rtcp(&mut packet).is_err()
        {
            self.stats.transmit_errors += 1;
            return None;
        }
        self.stats.rtcp_sent += 1;
        Some(packet)
    }
}
