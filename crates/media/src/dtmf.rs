//! DTMF as RTP telephone-events (RFC 4733): the 4-octet payload, a sender that paces one event
//! as RFC 4733 §2.5.1 asks, and a receiver that reports each digit once.
//!
//! Sender timing (sans-IO, driven by [`DtmfSender::poll`] with `now`): an event starts at the RTP
//! timestamp the caller gives for that instant; every 50 ms after the start a packet goes out
//! with the same timestamp and the duration so far, the first with the marker bit (§2.5.1.2);
//! the packet whose duration reaches the tone length is the first of three end packets (E bit,
//! final duration, 50 ms apart: §2.5.1.4). A gap (default 50 ms) separates queued digits.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// The payload octets of one event report (RFC 4733 §2.3).
pub const PAYLOAD_LEN: usize = 4;
/// End packets sent for each event (RFC 4733 §2.5.1.4: "a total of three times").
pub const END_PACKETS: u8 = 3;
/// Time between the packets of one event (RFC 4733 §2.5.1.2: 50 ms is the usual update rate).
pub const UPDATE_INTERVAL: Duration = Duration::from_millis(50);

/// A malformed telephone-event payload or a digit that has no event code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DtmfError {
    /// Fewer than 4 octets.
    #[error("telephone-event payload of {0} octets, at least 4 expected")]
    TooShort(usize),
    /// A character that is not 0–9, *, #, A–D.
    #[error("{0:?} is not a DTMF digit (0-9, *, #, A-D)")]
    NotADigit(char),
}

/// One telephone-event report (RFC 4733 §2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventPayload {
    /// The event code (§3.2: 0–9 digits, 10 `*`, 11 `#`, 12–15 A–D, 16 flash).
    pub event: u8,
    /// E: this report ends the event.
    pub end: bool,
    /// Power level in -dBm0, 0..=63 (§2.3.4; DTMF uses 0..=36).
    pub volume: u8,
    /// Duration so far in RTP timestamp units (§2.3.5).
    pub duration: u16,
}

impl EventPayload {
    /// The 4 octets: event, E|R|volume, duration (network order). R is sent as 0.
    pub fn to_bytes(self) -> [u8; PAYLOAD_LEN] {
        let [d0, d1] = self.duration.to_be_bytes();
        [
            self.event,
            (u8::from(self.end) << 7) | (self.volume & 0x3F),
            d0,
            d1,
        ]
    }

    /// Parses the first report of a payload; the R bit is ignored (§2.3.3) and further reports
    /// (§2.5.1.5, several events in one packet) are not read.
    pub fn parse(payload: &[u8]) -> Result<EventPayload, DtmfError> {
        let &[event, flags, d0, d1, ..] = payload else {
            return Err(DtmfError::TooShort(payload.len()));
        };
        Ok(EventPayload {
            event,
            end: flags & 0x80 != 0,
            volume: flags & 0x3F,
            duration: u16::from_be_bytes([d0, d1]),
        })
    }
}

/// The event code of a DTMF digit (RFC 4733 §3.2, Table 7); letters in either case.
pub fn digit_to_event(digit: char) -> Result<u8, DtmfError> {
    match digit {
        '0'..='9' => Ok(digit as u8 - b'0'),
        '*' => Ok(10),
        '#' => Ok(11),
        'A'..='D' => Ok(digit as u8 - b'A' + 12),
        'a'..='d' => Ok(digit as u8 - b'a' + 12),
        _ => Err(DtmfError::NotADigit(digit)),
    }
}

/// The DTMF digit of an event code, `None` for other events (flash, tones).
pub fn event_to_digit(event: u8) -> Option<char> {
    match event {
        0..=9 => Some(char::from(b'0' + event)),
        10 => Some('*'),
        11 => Some('#'),
        12..=15 => Some(char::from(b'A' + event - 12)),
        _ => None,
    }
}

/// How the sender shapes events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DtmfConfig {
    /// The RTP clock of the telephone-event format (the audio codec's: 8,000 or 48,000).
    pub clock_rate: u32,
    /// How long each tone lasts. At most what one packet's 16-bit duration holds (1.36 s at
    /// 48 kHz); longer values are cut to it (no §2.5.1.3 segments).
    pub tone: Duration,
    /// Pause between queued digits.
    pub gap: Duration,
    /// Volume in -dBm0 (§2.3.4), 0..=63; 10 by default.
    pub volume: u8,
}

impl DtmfConfig {
    /// 100 ms tones, 50 ms gaps, volume 10, at `clock_rate`.
    pub fn new(clock_rate: u32) -> Self {
        DtmfConfig {
            clock_rate,
            tone: Duration::from_millis(100),
            gap: Duration::from_millis(50),
            volume: 10,
        }
    }

    fn units(&self, d: Duration) -> u16 {
        (d.as_nanos() * u128::from(self.clock_rate) / 1_000_000_000).min(u128::from(u16::MAX))
            as u16
    }
}

/// A telephone-event packet to send: the RTP header fields the sender decides and the payload.
/// The caller puts it in an RTP packet on the negotiated payload type with its own sequence
/// number and SSRC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DtmfPacket {
    /// RTP marker: set on the first packet of an event.
    pub marker: bool,
    /// RTP timestamp: the event's start, the same in all its packets.
    pub timestamp: u32,
    /// The payload.
    pub payload: EventPayload,
}

#[derive(Debug, Clone, Copy)]
struct Active {
    event: u8,
    timestamp: u32,
    started: Instant,
    /// Packets sent so far (updates and ends).
    sent: u32,
    ends_sent: u8,
}

/// Sends queued DTMF events, paced by `now` (sans-IO). While [`is_sending`](Self::is_sending)
/// the caller should not send audio packets (RFC 4733 §2.5.1.2 lets events replace audio).
#[derive(Debug, Clone)]
pub struct DtmfSender {
    config: DtmfConfig,
    queue: VecDeque<u8>,
    active: Option<Active>,
    idle_from: Option<Instant>,
}

impl DtmfSender {
    /// A sender with nothing queued.
    pub fn new(config: DtmfConfig) -> Self {
        DtmfSender {
            config,
            queue: VecDeque::new(),
            active: None,
            idle_from: None,
        }
    }

    /// Queues every digit of `digits` (0–9, *, #, A–D); nothing is queued if one is invalid.
    pub fn queue_digits(&mut self, digits: &str) -> Result<(), DtmfError> {
        let events = digits
            .chars()
            .map(digit_to_event)
            .collect::<Result<Vec<_>, _>>()?;
        self.queue.extend(events);
        Ok(())
    }

    /// Queues one event code (any of the 256; telephone-event fmtp says which the peer takes).
    pub fn queue_event(&mut self, event: u8) {
        self.queue.push_back(event);
    }

    /// True while an event is being sent.
    pub fn is_sending(&self) -> bool {
        self.active.is_some()
    }

    /// True when nothing is being sent or waiting.
    pub fn is_idle(&self) -> bool {
        self.active.is_none() && self.queue.is_empty()
    }

    /// When the next packet is due (`now` when a queued event can start at once), `None` when
    /// idle.
    pub fn next_due(&self, now: Instant) -> Option<Instant> {
        match &self.active {
            Some(a) => Some(a.started + UPDATE_INTERVAL * (a.sent + 1)),
            None if !self.queue.is_empty() => Some(self.idle_from.map_or(now, |t| t.max(now))),
            None => None,
        }
    }

    /// The next packet due at `now`, if any. `rtp_timestamp` is the RTP clock at `now` on the
    /// audio stream (same SSRC and clock): a new event takes it as its timestamp. Call until
    /// `None` after every wake-up.
    pub fn poll(&mut self, now: Instant, rtp_timestamp: u32) -> Option<DtmfPacket> {
        if self.active.is_none() {
            if self.idle_from.is_some_and(|t| now < t) {
                return None;
            }
            let event = self.queue.pop_front()?;
            self.active = Some(Active {
                event,
                timestamp: rtp_timestamp,
                started: now,
                sent: 0,
                ends_sent: 0,
            });
        }
        let a = self.active.as_mut()?;
        let due = a.started + UPDATE_INTERVAL * (a.sent + 1);
        if now < due {
            return None;
        }
        a.sent += 1;
        let tone = self.config.units(self.config.tone);
        let so_far = self.config.units(UPDATE_INTERVAL * a.sent);
        let end = so_far >= tone || a.ends_sent > 0;
        let packet = DtmfPacket {
            marker: a.sent == 1,
            timestamp: a.timestamp,
            payload: EventPayload {
                event: a.event,
                end,
                volume: self.config.volume.min(63),
                duration: so_far.min(tone),
            },
        };
        if end {
            a.ends_sent += 1;
            if a.ends_sent >= END_PACKETS {
                // The gap counts from the last end packet.
                self.idle_from = Some(due + self.config.gap);
                self.active = None;
            }
        }
        Some(packet)
    }
}

/// A digit (or other event) the receiver recognised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReceivedEvent {
    /// The event code.
    pub event: u8,
    /// Its DTMF digit, when it is one.
    pub digit: Option<char>,
    /// The event's RTP timestamp (its start).
    pub timestamp: u32,
}

/// How many recent event timestamps the receiver remembers to drop repeats.
const REMEMBERED: usize = 16;

/// Reports each telephone-event once, from whichever of its packets arrives first: a lost
/// first packet or lost end packets do not lose the digit, repeats (updates, the three end
/// packets, network duplicates) do not repeat it. Events are told apart by RTP timestamp
/// (RFC 4733 §2.5.2.1: a new timestamp is a new event).
#[derive(Debug, Clone, Default)]
pub struct DtmfReceiver {
    seen: VecDeque<(u32, u8)>,
}

impl DtmfReceiver {
    /// A receiver that has seen nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// Handles one telephone-event packet's RTP timestamp and payload; `Ok(Some(_))` the first
    /// time its event is seen.
    pub fn handle(
        &mut self,
        timestamp: u32,
        payload: &[u8],
    ) -> Result<Option<ReceivedEvent>, DtmfError> {
        let p = EventPayload::parse(payload)?;
        if self.seen.contains(&(timestamp, p.event)) {
            return Ok(None);
        }
        if self.seen.len() == REMEMBERED {
            self.seen.pop_front();
        }
        self.seen.push_back((timestamp, p.event));
        Ok(Some(ReceivedEvent {
            event: p.event,
            digit: event_to_digit(p.event),
            timestamp,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_layout_of_rfc4733_section_2_3() {
        // Event 5, E set, volume 10, duration 800 (100 ms at 8 kHz).
        let p = EventPayload {
            event: 5,
            end: true,
            volume: 10,
            duration: 800,
        };
        assert_eq!(p.to_bytes(), [0x05, 0x8A, 0x03, 0x20]);
        assert_eq!(EventPayload::parse(&p.to_bytes()).unwrap(), p);
        // R bit set by a sender is ignored; trailing reports are not read.
        let r = EventPayload::parse(&[11, 0x40 | 7, 0, 160, 1, 2, 3, 4]).unwrap();
        assert_eq!((r.event, r.end, r.volume, r.duration), (11, false, 7, 160));
        assert_eq!(EventPayload::parse(&[1, 2, 3]), Err(DtmfError::TooShort(3)));
    }

    #[test]
    fn digits_map_to_table_7() {
        let all = "0123456789*#ABCD";
        for (code, d) in all.chars().enumerate() {
            assert_eq!(digit_to_event(d).unwrap(), code as u8);
            assert_eq!(event_to_digit(code as u8), Some(d));
        }
        assert_eq!(digit_to_event('b').unwrap(), 13);
        assert_eq!(event_to_digit(16), None);
        assert_eq!(digit_to_event('x'), Err(DtmfError::NotADigit('x')));
        let mut s = DtmfSender::new(DtmfConfig::new(8000));
        assert!(s.queue_digits("12x").is_err());
        assert!(s.is_idle(), "an invalid string queues nothing");
    }

    #[test]
    fn sender_follows_section_2_5_1() {
        let t0 = Instant::now();
        let mut s = DtmfSender::new(DtmfConfig::new(8000));
        s.queue_digits("1").unwrap();
        let mut packets = Vec::new();
        let mut now = t0;
        while !s.is_idle() {
            while let Some(p) = s.poll(now, 1000 + 8 * (now - t0).as_millis() as u32) {
                packets.push((now - t0, p));
            }
            now += Duration::from_millis(10);
        }
        let summary: Vec<_> = packets
            .iter()
            .map(|(t, p)| {
                (
                    t.as_millis(),
                    p.marker,
                    p.timestamp,
                    p.payload.end,
                    p.payload.duration,
                )
            })
            .collect();
        // Updates every 50 ms with one timestamp and a growing duration, the marker on the
        // first; three end packets with the final duration.
        assert_eq!(
            summary,
            vec![
                (50, true, 1000, false, 400),
                (100, false, 1000, true, 800),
                (150, false, 1000, true, 800),
                (200, false, 1000, true, 800),
            ]
        );
        assert!(packets.iter().all(|(_, p)| p.payload.event == 1));
    }
}
