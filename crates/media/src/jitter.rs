//! An adaptive jitter buffer with loss concealment, sans-IO: received RTP payloads go in with
//! their arrival time ([`JitterBuffer::push`]), one frame of PCM comes out per packet time
//! ([`JitterBuffer::pop`]), decoded, concealed, recovered from FEC, or silence.
//!
//! # Algorithm
//!
//! *Delay measurement.* For each packet the buffer computes its relative transit
//! `d = arrival − timestamp / clock` (RFC 3550 §6.4.1's transit, offset by an unknown constant).
//! Over a window of recent packets (default 250, five seconds at 20 ms) `d_min` is the fastest
//! packet's transit, and the *delay variation* of each packet is `d − d_min`.
//!
//! *Target delay.* The target is the 95th percentile of the window's delay variation plus a
//! margin (10 ms), clamped to `min_delay..=max_delay` (20..=400 ms); until 50 packets have
//! arrived it is at least `initial_delay` (60 ms). Jitter raises it within a few packets; once
//! the jitter stops, the window forgets it and the target comes back down. The RFC 3550 §A.8
//! interarrival jitter is computed too and reported in [`JitterStats`].
//!
//! *Current delay.* Playout advances one frame of RTP time per `pop`; the playout offset `o` is
//! `now − (RTP time of the next sample to play) / clock`, and the current delay is `o − d_min`:
//! how long the fastest packets wait before they are played.
//!
//! *Adaptation and clock drift.* When the current delay is more than one frame above the
//! target, the buffer drops one frame; when it is more than a quarter frame below, it inserts
//! one.
//! It does so on a quiet frame (the last frame played was below about −44 dBFS: a pause in
//! speech), so the change is not heard, or after one second of waiting for a pause, anyway
//! (a dropped frame then, or one concealment frame inserted); above `max_delay` it drops at once.
//! The same rule corrects clock drift: a sender clock that runs fast makes `d_min` fall and the
//! current delay grow by a frame every few seconds, so frames get dropped in pauses; a slow one
//! makes frames get inserted. No time-scaling (WSOLA) is done: whole 20 ms frames in pauses.
//!
//! *Loss, lateness, reordering.* Packets are kept ordered by (unwrapped) timestamp, so
//! reordering within the delay is undone; sequence numbers and timestamps are unwrapped across
//! their 16- and 32-bit wrap. A packet whose playout time has passed is dropped and counted
//! late; a repeat is counted as a duplicate. A missing slot with a sequence gap is a loss:
//! concealed (G.711 Appendix I style, or Opus PLC) or, for Opus when the next packet is already
//! here, recovered from that packet's in-band FEC. A missing slot without a sequence gap is a
//! silence the sender did not send (DTX): silence, or Opus comfort noise. An empty buffer
//! conceals for up to 60 ms and then plays silence.
//!
//! *Hostile input.* A sequence number more than 1000 away or a timestamp more than 10 s away
//! from the stream's restarts the buffer (a new stream, RFC 3550 §A.1's resynchronisation), the
//! buffer holds at most `max_packets` packets, and an undecodable payload is concealed.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use crate::codec::AudioDecoder;

/// How the jitter buffer adapts. `JitterConfig::default()` suits 20 ms packets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JitterConfig {
    /// Audio per [`pop`](JitterBuffer::pop): the packet time (10..=120 ms; clamped).
    pub ptime: Duration,
    /// The smallest target delay.
    pub min_delay: Duration,
    /// The largest target delay; above it frames are dropped without waiting for a pause.
    pub max_delay: Duration,
    /// The target before enough packets arrived to measure jitter.
    pub initial_delay: Duration,
    /// Added to the 95th percentile of delay variation.
    pub margin: Duration,
    /// Packets in the measuring window.
    pub window: usize,
    /// Most packets held; beyond it the oldest is discarded.
    pub max_packets: usize,
}

impl Default for JitterConfig {
    fn default() -> Self {
        JitterConfig {
            ptime: Duration::from_millis(20),
            min_delay: Duration::from_millis(20),
            max_delay: Duration::from_millis(400),
            initial_delay: Duration::from_millis(60),
            margin: Duration::from_millis(10),
            window: 250,
            max_packets: 500,
        }
    }
}

/// One frame of PCM at the codec's sample rate, and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// Decoded from a received packet.
    Decoded(Vec<i16>),
    /// Made up for a lost or late packet (G.711 Appendix I style or Opus PLC).
    Concealed(Vec<i16>),
    /// A lost packet recovered from the next packet's in-band FEC (Opus).
    FecRecovered(Vec<i16>),
    /// Nothing to play: before playout starts, a DTX pause, a long outage (zeros, or Opus
    /// comfort noise after DTX).
    Silence(Vec<i16>),
}

impl Frame {
    /// The samples.
    pub fn samples(&self) -> &[i16] {
        match self {
            Frame::Decoded(s)
            | Frame::Concealed(s)
            | Frame::FecRecovered(s)
            | Frame::Silence(s) => s,
        }
    }

    /// The samples, owned.
    pub fn into_samples(self) -> Vec<i16> {
        match self {
            Frame::Decoded(s)
            | Frame::Concealed(s)
            | Frame::FecRecovered(s)
            | Frame::Silence(s) => s,
        }
    }
}

/// What [`JitterBuffer::push`] did with a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    /// Buffered for playout.
    Buffered,
    /// Its playout time had passed: dropped (counted in `late`).
    Late,
    /// Already buffered or played: dropped (counted in `duplicates`).
    Duplicate,
    /// An empty payload: dropped (counted in `discarded`).
    Empty,
    /// So far from the stream that the buffer restarted on it (counted in `resets`).
    Restarted,
}

/// Counters for the call report. `received + other + lost` is the number of packets the sender
/// sent between the first and the last one received.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct JitterStats {
    /// Distinct packets pushed (late ones included, duplicates not).
    pub received: u64,
    /// Packets that arrived after their playout time.
    pub late: u64,
    /// Packets pushed twice.
    pub duplicates: u64,
    /// Packets of another payload type in the same stream (telephone-event), told with
    /// [`JitterBuffer::skip`]: not audio, not lost.
    pub other: u64,
    /// Packets never received, from sequence gaps (RFC 3550 §A.3).
    pub lost: u64,
    /// Packets dropped because the buffer was full or their payload was empty.
    pub discarded: u64,
    /// Packets decoded (played, or dropped to shrink the delay).
    pub decoded: u64,
    /// Frames concealed (losses, late packets, undecodable payloads, forced insertions).
    /// Like the other frame counters it counts a frame dropped to shrink the delay too.
    pub concealed: u64,
    /// Frames recovered from FEC.
    pub fec_recovered: u64,
    /// Frames of silence played (before playout, DTX, outages, insertions in pauses).
    pub silence: u64,
    /// Frames inserted to grow the delay (adaptation, slow sender clock).
    pub frames_inserted: u64,
    /// Frames dropped to shrink the delay (adaptation, fast sender clock).
    pub frames_dropped: u64,
    /// Payloads the decoder refused.
    pub decode_errors: u64,
    /// Restarts on a sequence or timestamp jump.
    pub resets: u64,
    /// Current playout delay over the fastest packet's transit, in ms.
    pub current_delay_ms: u32,
    /// Target delay in ms.
    pub target_delay_ms: u32,
    /// RFC 3550 §A.8 interarrival jitter, in ms.
    pub jitter_ms: f64,
}

/// Sequence numbers further than this from the highest seen restart the stream.
const MAX_SEQ_JUMP: i64 = 1000;
/// Timestamps further than this from the highest seen restart the stream.
const MAX_TS_JUMP: Duration = Duration::from_secs(10);
/// Packets in the window before the measured target replaces `initial_delay`.
const WARM_UP: usize = 50;
/// A frame whose RMS is below this (≈ −44 dBFS) counts as a pause.
const QUIET_RMS: f64 = 200.0;
/// Pops spent waiting for a pause before a delay change is forced (1 s at 20 ms).
const FORCE_AFTER: u32 = 50;
/// Concealment frames on an empty buffer before playing silence (60 ms at 20 ms).
const MAX_EMPTY_CONCEAL: u32 = 3;
/// Recently played sequence numbers remembered to tell duplicates from late packets.
const PLAYED_MEMORY: usize = 64;
/// Where unwrapped counters start, so that reordering before the first packet stays positive.
const EXT_ORIGIN: u64 = 1 << 40;

#[derive(Debug)]
struct Slot {
    seq: u64,
    payload: Vec<u8>,
}

/// Unwraps a wrapping counter against the highest value seen.
#[derive(Debug, Clone, Copy)]
struct Unwrap {
    last: u32,
    ext: u64,
}

impl Unwrap {
    /// The extended value of `v` (`bits` wide) and its distance from the highest.
    fn ext(&self, v: u32, bits: u32) -> (u64, i64) {
        let shift = 32 - bits;
        let d = (((v << shift).wrapping_sub(self.last << shift)) as i32 >> shift) as i64;
        ((self.ext as i64 + d) as u64, d)
    }
}

/// The adaptive jitter buffer; see the [module documentation](self) for the algorithm.
#[derive(Debug)]
pub struct JitterBuffer {
    config: JitterConfig,
    decoder: AudioDecoder,
    clock: u64,
    frame: usize,
    packets: BTreeMap<u64, Slot>,
    seq: Option<Unwrap>,
    ts: Option<Unwrap>,
    seq_min: u64,
    received_segment: u64,
    lost_before: u64,
    /// Playout: the RTP time (unwrapped) of the next sample to decode, once started.
    next_ts: Option<u64>,
    last_seq: Option<u64>,
    played: VecDeque<u64>,
    /// Recent sequence numbers of non-audio packets: a gap made of them is not a loss.
    others: VecDeque<u64>,
    pcm: VecDeque<i16>,
    epoch: Option<(Instant, u64)>,
    window: VecDeque<i64>,
    target_us: i64,
    d_min_us: i64,
    jitter: f64,
    last_transit: Option<i64>,
    last_quiet: bool,
    waiting: u32,
    empty_run: u32,
    stats: JitterStats,
}

impl JitterBuffer {
    /// A buffer that decodes with `decoder` (which fixes the codec, its clock and sample rate).
    pub fn new(decoder: AudioDecoder, clock_rate: u32, config: JitterConfig) -> Self {
        let ptime = config
            .ptime
            .clamp(Duration::from_millis(10), Duration::from_millis(120));
        let config = JitterConfig { ptime, ..config };
        let clock = u64::from(clock_rate.max(1000));
        let frame = (clock as u128 * ptime.as_nanos() / 1_000_000_000) as usize;
        let mut jb = JitterBuffer {
            config,
            decoder,
            clock,
            frame,
            packets: BTreeMap::new(),
            seq: None,
            ts: None,
            seq_min: 0,
            received_segment: 0,
            lost_before: 0,
            next_ts: None,
            last_seq: None,
            played: VecDeque::new(),
            others: VecDeque::new(),
            pcm: VecDeque::new(),
            epoch: None,
            window: VecDeque::new(),
            target_us: 0,
            d_min_us: 0,
            jitter: 0.0,
            last_transit: None,
            last_quiet: true,
            waiting: 0,
            empty_run: 0,
            stats: JitterStats::default(),
        };
        jb.target_us = jb.bounded_target(0);
        jb.stats.target_delay_ms = (jb.target_us / 1000) as u32;
        jb
    }

    /// Samples per [`pop`](Self::pop).
    pub fn frame_samples(&self) -> usize {
        self.frame
    }

    /// The counters so far.
    pub fn stats(&self) -> JitterStats {
        let mut s = self.stats.clone();
        s.lost = self.lost_before + self.segment_lost();
        s
    }

    fn segment_lost(&self) -> u64 {
        self.seq.map_or(0, |u| {
            (u.ext - self.seq_min + 1).saturating_sub(self.received_segment)
        })
    }

    fn us_of_ts(&self, ts_units: i64) -> i64 {
        (i128::from(ts_units) * 1_000_000 / i128::from(self.clock)) as i64
    }

    /// Buffers one received RTP packet: its sequence number, timestamp, payload and arrival.
    pub fn push(&mut self, seq: u16, timestamp: u32, payload: &[u8], arrival: Instant) -> Pushed {
        if payload.is_empty() {
            self.stats.discarded += 1;
            return Pushed::Empty;
        }
        let mut restarted = false;
        let (seq_ext, ts_ext) = match (self.seq, self.ts) {
            (Some(s), Some(t)) => {
                let (se, sd) = s.ext(u32::from(seq), 16);
                let (te, td) = t.ext(timestamp, 32);
                let max_td = (MAX_TS_JUMP.as_secs() * self.clock) as i64;
                if sd.abs() > MAX_SEQ_JUMP || td.abs() > max_td {
                    self.restart();
                    restarted = true;
                    (
                        EXT_ORIGIN + u64::from(seq),
                        EXT_ORIGIN + u64::from(timestamp),
                    )
                } else {
                    (se, te)
                }
            }
            _ => (
                EXT_ORIGIN + u64::from(seq),
                EXT_ORIGIN + u64::from(timestamp),
            ),
        };
        // Duplicates: buffered, or played lately.
        if self.packets.get(&ts_ext).is_some_and(|s| s.seq == seq_ext)
            || self.played.contains(&seq_ext)
        {
            self.stats.duplicates += 1;
            return Pushed::Duplicate;
        }
        self.count_received(seq, seq_ext, timestamp, ts_ext);
        self.measure(ts_ext, arrival);
        if self
            .next_ts
            .is_some_and(|next| ts_ext + self.frame as u64 <= next)
        {
            self.stats.late += 1;
            return Pushed::Late;
        }
        self.packets.insert(
            ts_ext,
            Slot {
                seq: seq_ext,
                payload: payload.to_vec(),
            },
        );
        if self.packets.len() > self.config.max_packets.max(1) {
            self.packets.pop_first();
            self.stats.discarded += 1;
        }
        if restarted {
            Pushed::Restarted
        } else {
            Pushed::Buffered
        }
    }

    /// Notes a packet of another payload type (telephone-event) in the same RTP stream: its
    /// sequence number is not lost, and a gap in the audio made of such packets is a pause
    /// (silence), not a loss. Its timestamp is not audio time and is not used.
    pub fn skip(&mut self, seq: u16) {
        let seq_ext = match self.seq {
            Some(s) => {
                let (se, sd) = s.ext(u32::from(seq), 16);
                if sd.abs() > MAX_SEQ_JUMP {
                    // Not this stream's: ignored rather than restarting on a non-audio packet.
                    return;
                }
                se
            }
            None => EXT_ORIGIN + u64::from(seq),
        };
        if self.others.contains(&seq_ext) || self.played.contains(&seq_ext) {
            return;
        }
        if self.others.len() == PLAYED_MEMORY {
            self.others.pop_front();
        }
        self.others.push_back(seq_ext);
        self.count_seq(seq, seq_ext);
        self.stats.other += 1;
    }

    fn count_seq(&mut self, seq: u16, seq_ext: u64) {
        match self.seq {
            None => {
                self.seq = Some(Unwrap {
                    last: u32::from(seq),
                    ext: seq_ext,
                });
                self.seq_min = seq_ext;
            }
            Some(u) if seq_ext > u.ext => {
                self.seq = Some(Unwrap {
                    last: u32::from(seq),
                    ext: seq_ext,
                });
            }
            Some(_) => self.seq_min = self.seq_min.min(seq_ext),
        }
        self.received_segment += 1;
    }

    fn count_received(&mut self, seq: u16, seq_ext: u64, timestamp: u32, ts_ext: u64) {
        self.count_seq(seq, seq_ext);
        match self.ts {
            Some(u) if ts_ext <= u.ext => {}
            _ => {
                self.ts = Some(Unwrap {
                    last: timestamp,
                    ext: ts_ext,
                })
            }
        }
        self.stats.received += 1;
    }

    /// Updates the transit window, the target delay and the RFC 3550 jitter.
    fn measure(&mut self, ts_ext: u64, arrival: Instant) {
        let (epoch, ts0) = *self.epoch.get_or_insert((arrival, ts_ext));
        let arrival_us = signed_micros(epoch, arrival);
        let d = arrival_us - self.us_of_ts(ts_ext as i64 - ts0 as i64);
        // RFC 3550 §A.8, in µs here, reported in ms.
        if let Some(last) = self.last_transit {
            let diff = (d - last).unsigned_abs() as f64;
            self.jitter += (diff - self.jitter) / 16.0;
        }
        self.last_transit = Some(d);
        self.stats.jitter_ms = self.jitter / 1000.0;
        self.window.push_back(d);
        while self.window.len() > self.config.window.max(1) {
            self.window.pop_front();
        }
        let mut sorted: Vec<i64> = self.window.iter().copied().collect();
        sorted.sort_unstable();
        self.d_min_us = sorted[0];
        let p95 = sorted[(sorted.len() - 1) * 95 / 100] - self.d_min_us;
        self.target_us = self.bounded_target(p95);
        self.stats.target_delay_ms = (self.target_us / 1000) as u32;
    }

    fn bounded_target(&self, variation_us: i64) -> i64 {
        let c = &self.config;
        let mut t = variation_us + c.margin.as_micros() as i64;
        if self.window.len() < WARM_UP {
            t = t.max(c.initial_delay.as_micros() as i64);
        }
        let (lo, hi) = (
            c.min_delay.as_micros() as i64,
            c.max_delay.as_micros() as i64,
        );
        t.clamp(lo, hi.max(lo))
    }

    /// Starts over on a new stream: nothing buffered, nothing measured; counters kept.
    fn restart(&mut self) {
        self.lost_before += self.segment_lost();
        self.stats.resets += 1;
        self.packets.clear();
        self.pcm.clear();
        self.played.clear();
        self.others.clear();
        self.seq = None;
        self.ts = None;
        self.received_segment = 0;
        self.next_ts = None;
        self.last_seq = None;
        self.epoch = None;
        self.window.clear();
        self.last_transit = None;
        self.waiting = 0;
        self.empty_run = 0;
        self.target_us = self.bounded_target(0);
    }

    /// The next frame to play at `now`; call once per packet time.
    pub fn pop(&mut self, now: Instant) -> Frame {
        let n = self.frame;
        let Some(next) = self.start_or_next(now) else {
            self.stats.silence += 1;
            return Frame::Silence(vec![0; n]);
        };
        // Current delay: playout offset minus the fastest transit.
        let (epoch, ts0) = self.epoch.unwrap_or((now, next));
        let playing_ts = next as i64 - self.pcm.len() as i64 - ts0 as i64;
        let offset = signed_micros(epoch, now) - self.us_of_ts(playing_ts);
        let current = offset - self.d_min_us;
        self.stats.current_delay_ms = (current.max(0) / 1000) as u32;
        let frame_us = self.us_of_ts(n as i64);
        let max_us = self.config.max_delay.as_micros() as i64;
        let shrink = current > self.target_us + frame_us;
        // Hysteresis: the band from target − ¼ frame to target + 1 frame is wider than the
        // frame a change moves the delay by, so a change never calls for its undoing.
        let grow = current + frame_us / 4 < self.target_us;
        if shrink || grow {
            self.waiting += 1;
        } else {
            self.waiting = 0;
        }
        let now_or_never = self.last_quiet || self.waiting >= FORCE_AFTER;
        if grow && now_or_never {
            self.waiting = 0;
            self.stats.frames_inserted += 1;
            if self.last_quiet {
                self.stats.silence += 1;
                return Frame::Silence(vec![0; n]);
            }
            let mut out = Vec::with_capacity(n);
            if self.decoder.conceal(n, &mut out).is_err() {
                out.clear();
            }
            out.resize(n, 0);
            self.stats.concealed += 1;
            return Frame::Concealed(out);
        }
        if shrink && (now_or_never || current > max_us) {
            self.waiting = 0;
            self.stats.frames_dropped += 1;
            self.fill(n);
            self.pcm.drain(..n.min(self.pcm.len()));
        }
        let kind = self.fill(n);
        let samples: Vec<i16> = self.pcm.drain(..n).collect();
        self.last_quiet = rms(&samples) < QUIET_RMS;
        match kind {
            Kind::Decoded => Frame::Decoded(samples),
            Kind::Concealed => Frame::Concealed(samples),
            Kind::Fec => Frame::FecRecovered(samples),
            Kind::Silence => Frame::Silence(samples),
        }
    }

    /// The playout position, starting playout when the first packet has waited the target.
    fn start_or_next(&mut self, now: Instant) -> Option<u64> {
        if let Some(next) = self.next_ts {
            return Some(next);
        }
        let (&ts, _) = self.packets.first_key_value()?;
        let (epoch, ts0) = self.epoch?;
        // The first packet plays when the fastest packet would have waited the target.
        let due_us = self.d_min_us + self.us_of_ts(ts as i64 - ts0 as i64) + self.target_us;
        if signed_micros(epoch, now) < due_us {
            return None;
        }
        self.next_ts = Some(ts);
        Some(ts)
    }

    /// Decodes, conceals or recovers until at least `n` samples are waiting; the kind of the
    /// first step.
    fn fill(&mut self, n: usize) -> Kind {
        let mut first = None;
        while self.pcm.len() < n {
            let kind = self.fill_one();
            first.get_or_insert(kind);
        }
        first.unwrap_or(Kind::Decoded)
    }

    fn fill_one(&mut self) -> Kind {
        let n = self.frame;
        let Some(next) = self.next_ts else {
            self.pcm.extend(std::iter::repeat_n(0, n));
            return Kind::Silence;
        };
        let mut out = Vec::with_capacity(n);
        let (kind, advance) = match self.packets.first_key_value() {
            Some((&ts, _)) if ts <= next => {
                let Some((ts, slot)) = self.packets.pop_first() else {
                    unreachable!("first_key_value just returned it")
                };
                self.empty_run = 0;
                self.last_seq = Some(slot.seq);
                if self.played.len() == PLAYED_MEMORY {
                    self.played.pop_front();
                }
                self.played.push_back(slot.seq);
                match self.decoder.decode(&slot.payload, &mut out) {
                    Ok(_) if !out.is_empty() => {
                        self.stats.decoded += 1;
                        // Playout continues after this packet's audio.
                        let len = out.len() as u64;
                        self.next_ts = Some(ts + len);
                        self.pcm.extend(out);
                        return Kind::Decoded;
                    }
                    _ => {
                        self.stats.decode_errors += 1;
                        out.clear();
                        self.conceal_into(&mut out);
                        self.next_ts = Some(ts);
                        (Kind::Concealed, out.len())
                    }
                }
            }
            Some((&ts, slot)) => {
                let gap = (ts - next) as usize;
                // No audio packet missing in between: the sequence numbers between the last
                // played and this one (if any) were all non-audio packets.
                let contiguous = self.last_seq.is_some_and(|l| {
                    slot.seq > l
                        && slot.seq - l <= PLAYED_MEMORY as u64
                        && (l + 1..slot.seq).all(|s| self.others.contains(&s))
                });
                self.empty_run = 0;
                if contiguous {
                    // The sender sent nothing for this time (DTX): silence, up to the packet.
                    out.resize(gap.min(n), 0);
                    self.stats.silence += 1;
                    (Kind::Silence, out.len())
                } else if gap <= n && self.decoder.has_fec() {
                    let payload = slot.payload.clone();
                    match self.decoder.recover(&payload, &mut out) {
                        Some(Ok(_)) if !out.is_empty() => {
                            self.stats.fec_recovered += 1;
                            (Kind::Fec, out.len())
                        }
                        _ => {
                            out.clear();
                            self.conceal_into(&mut out);
                            (Kind::Concealed, out.len())
                        }
                    }
                } else {
                    self.conceal_into(&mut out);
                    (Kind::Concealed, out.len())
                }
            }
            None => {
                self.empty_run += 1;
                if self.empty_run <= MAX_EMPTY_CONCEAL {
                    self.conceal_into(&mut out);
                    (Kind::Concealed, out.len())
                } else {
                    out.resize(n, 0);
                    self.stats.silence += 1;
                    (Kind::Silence, n)
                }
            }
        };
        if out.is_empty() {
            out.resize(n, 0);
        }
        self.next_ts = self.next_ts.map(|t| t + advance.max(1) as u64);
        self.pcm.extend(out);
        kind
    }

    fn conceal_into(&mut self, out: &mut Vec<i16>) {
        if self.decoder.conceal(self.frame, out).is_err() {
            out.clear();
            out.resize(self.frame, 0);
        }
        self.stats.concealed += 1;
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Decoded,
    Concealed,
    Fec,
    Silence,
}

fn rms(samples: &[i16]) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    let sum: f64 = samples.iter().map(|&s| f64::from(s) * f64::from(s)).sum();
    (sum / samples.len() as f64).sqrt()
}

/// `t − epoch` in µs, negative when `t` is earlier.
fn signed_micros(epoch: Instant, t: Instant) -> i64 {
    match t.checked_duration_since(epoch) {
        Some(d) => d.as_micros().min(i64::MAX as u128) as i64,
        None => -(epoch.duration_since(t).as_micros().min(i64::MAX as u128) as i64),
    }
}
