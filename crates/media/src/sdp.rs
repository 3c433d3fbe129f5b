//! Audio formats in an SDP media section: Opus (RFC 7587), G.711 (RFC 3551) and
//! telephone-event (RFC 4733 §7), written into offers and answers and chosen by offer/answer
//! (RFC 3264). Pure functions over `chaincall_sip`'s [`Media`]; the SDP parser is that crate's.
//!
//! Offer, as chaincall writes it (Opus first, then G.711, DTMF at both clocks):
//!
//! ```text
//! m=audio 4000 RTP/SAVP 111 0 8 110 101
//! a=rtpmap:111 opus/48000/2
//! a=fmtp:111 useinbandfec=1;usedtx=1;maxplaybackrate=48000;stereo=0;sprop-stereo=0
//! a=rtpmap:0 PCMU/8000
//! a=rtpmap:8 PCMA/8000
//! a=rtpmap:110 telephone-event/48000
//! a=fmtp:110 0-16
//! a=rtpmap:101 telephone-event/8000
//! a=fmtp:101 0-16
//! a=ptime:20
//! ```

use std::ops::RangeInclusive;

use chaincall_sip::sdp::{Media, RtpMap};

use crate::codec::AudioCodec;
use crate::g711::Codec;

/// The payload type chaincall offers telephone-event at 8 kHz on (the common choice).
pub const TELEPHONE_EVENT_PT_8000: u8 = 101;
/// The payload type chaincall offers telephone-event at 48 kHz on (beside Opus).
pub const TELEPHONE_EVENT_PT_48000: u8 = 110;
/// The `a=fmtp` chaincall writes for Opus (RFC 7587 §6.1): FEC and DTX on, mono, full band.
pub const OPUS_FMTP: &str = "useinbandfec=1;usedtx=1;maxplaybackrate=48000;stereo=0;sprop-stereo=0";
/// The events chaincall sends and accepts: DTMF 0–9, *, #, A–D and flash (RFC 4733 §3.2).
pub const TELEPHONE_EVENTS: &str = "0-16";

/// The Opus parameters of an `a=fmtp` line (RFC 7587 §6.1), defaults where absent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpusParams {
    /// `useinbandfec`: the receiver can use in-band FEC (default false).
    pub useinbandfec: bool,
    /// `usedtx`: the receiver prefers the sender to use DTX (default false).
    pub usedtx: bool,
    /// `maxplaybackrate`: the highest rate the receiver renders (default 48,000).
    pub maxplaybackrate: u32,
    /// `stereo`: the receiver prefers stereo (default false).
    pub stereo: bool,
    /// `maxaveragebitrate`: the most the receiver wants on average, bit/s.
    pub maxaveragebitrate: Option<u32>,
}

impl Default for OpusParams {
    fn default() -> Self {
        OpusParams {
            useinbandfec: false,
            usedtx: false,
            maxplaybackrate: 48_000,
            stereo: false,
            maxaveragebitrate: None,
        }
    }
}

impl OpusParams {
    /// Parses an `a=fmtp` parameter list (`key=value;key=value`); unknown keys and values that
    /// do not parse keep their defaults.
    pub fn parse(params: &str) -> OpusParams {
        let mut p = OpusParams::default();
        for (key, value) in fmtp_pairs(params) {
            let flag = value == "1";
            match key.to_ascii_lowercase().as_str() {
                "useinbandfec" => p.useinbandfec = flag,
                "usedtx" => p.usedtx = flag,
                "stereo" => p.stereo = flag,
                "maxplaybackrate" => {
                    if let Ok(r) = value.parse() {
                        p.maxplaybackrate = r;
                    }
                }
                "maxaveragebitrate" => p.maxaveragebitrate = value.parse().ok(),
                _ => {}
            }
        }
        p
    }
}

fn fmtp_pairs(params: &str) -> impl Iterator<Item = (&str, &str)> {
    params
        .split(';')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.trim(), v.trim()))
}

/// A telephone-event format (RFC 4733 §7.1): its payload type, clock and the events it covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TelephoneEvent {
    /// The payload type.
    pub payload_type: u8,
    /// The RTP clock, which must be the audio codec's (RFC 4733 §2.3).
    pub clock_rate: u32,
    /// Event ranges from `a=fmtp` (RFC 4733 §7.1.1: `0-15` when absent).
    pub events: Vec<RangeInclusive<u8>>,
}

impl TelephoneEvent {
    /// True when `event` is among the announced ones.
    pub fn supports(&self, event: u8) -> bool {
        self.events.iter().any(|r| r.contains(&event))
    }

    /// Parses an event list such as `0-15,66,70-71`; bad items are skipped.
    pub fn parse_events(list: &str) -> Vec<RangeInclusive<u8>> {
        list.split(',')
            .filter_map(|item| {
                let item = item.trim();
                match item.split_once('-') {
                    Some((a, b)) => {
                        let (a, b) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
                        (a <= b).then_some(a..=b)
                    }
                    None => item.parse().ok().map(|e| e..=e),
                }
            })
            .collect()
    }
}

/// One format of a media section, understood.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Format {
    /// An audio codec we can run, with the Opus `a=fmtp` parameters when it is Opus.
    Audio(AudioCodec, Option<OpusParams>),
    /// telephone-event.
    TelephoneEvent(TelephoneEvent),
    /// Anything else, by payload type.
    Other(u8),
}

/// The formats of `media` in its `m=` order. A payload type without `a=rtpmap` is taken from
/// RFC 3551's static table (0 PCMU, 8 PCMA); a format that is not a payload type is skipped.
pub fn formats(media: &Media) -> Vec<Format> {
    let maps: Vec<RtpMap<'_>> = media.rtpmaps().collect();
    let fmtp = |pt: u8| {
        media.attribute("fmtp").flatten().find_map(|v| {
            let (p, rest) = v.split_once(' ')?;
            (p.parse::<u8>().ok()? == pt).then(|| rest.trim())
        })
    };
    media
        .formats
        .iter()
        .filter_map(|f| f.parse::<u8>().ok().filter(|pt| *pt < 128))
        .map(|pt| match maps.iter().find(|m| m.payload_type == pt) {
            Some(m) if m.encoding.eq_ignore_ascii_case("opus") && m.clock_rate == 48_000 => {
                Format::Audio(
                    AudioCodec::Opus { payload_type: pt },
                    Some(fmtp(pt).map(OpusParams::parse).unwrap_or_default()),
                )
            }
            Some(m) if m.encoding.eq_ignore_ascii_case("telephone-event") => {
                Format::TelephoneEvent(TelephoneEvent {
                    payload_type: pt,
                    clock_rate: m.clock_rate,
                    events: TelephoneEvent::parse_events(fmtp(pt).unwrap_or("0-15")),
                })
            }
            Some(m) => match Codec::from_rtpmap_name(m.encoding) {
                // A G.711 name on its static number at 8 kHz; re-mapped numbers are not taken.
                Some(c) if m.clock_rate == Codec::CLOCK_RATE && c.payload_type() == pt => {
                    Format::Audio(c.into(), None)
                }
                _ => Format::Other(pt),
            },
            None => match Codec::from_payload_type(pt) {
                Some(c) => Format::Audio(c.into(), None),
                None => Format::Other(pt),
            },
        })
        .collect()
}

/// What offer/answer settled on for the audio stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    /// The codec, with the offerer's payload type.
    pub codec: AudioCodec,
    /// The peer's Opus parameters (how it wants to receive), for Opus.
    pub opus: Option<OpusParams>,
    /// telephone-event, when both sides have it (at the codec's clock when the peer offers that).
    pub telephone_event: Option<TelephoneEvent>,
}

/// Chooses the audio codec from the peer's media section: the first of `ours` (our preference
/// order, e.g. Opus, PCMU, PCMA) that the peer lists, on the peer's payload type; and, if `dtmf`,
/// the peer's telephone-event at that codec's clock, else its first telephone-event at another
/// clock (its [`TelephoneEvent::clock_rate`] says which the durations count in). `None` when no codec
/// is common. Used by the answerer on the offer and by the offerer on the answer alike.
pub fn negotiate(ours: &[AudioCodec], theirs: &Media, dtmf: bool) -> Option<Negotiated> {
    let offered = formats(theirs);
    let (codec, opus) = ours.iter().find_map(|want| {
        offered.iter().find_map(|f| match f {
            Format::Audio(c, params) if same_codec(*c, *want) => Some((*c, *params)),
            _ => None,
        })
    })?;
    let events: Vec<&TelephoneEvent> = offered
        .iter()
        .filter_map(|f| match f {
            Format::TelephoneEvent(t) => Some(t),
            _ => None,
        })
        .collect();
    // RFC 4733 §2.1 wants the audio clock; some phones (baresip among them) offer only
    // telephone-event/8000 beside Opus, so that is taken when there is nothing better.
    let telephone_event = dtmf
        .then(|| {
            events
                .iter()
                .find(|t| t.clock_rate == codec.clock_rate())
                .or(events.first())
                .map(|t| (*t).clone())
        })
        .flatten();
    Some(Negotiated {
        codec,
        opus,
        telephone_event,
    })
}

fn same_codec(a: AudioCodec, b: AudioCodec) -> bool {
    match (a, b) {
        (AudioCodec::G711(x), AudioCodec::G711(y)) => x == y,
        (AudioCodec::Opus { .. }, AudioCodec::Opus { .. }) => true,
        _ => false,
    }
}

/// Writes an offer's audio formats into `media` (whose format list should be empty): each codec
/// in preference order with `a=rtpmap` (and `a=fmtp` [`OPUS_FMTP`] for Opus), telephone-event at
/// each distinct codec clock when `dtmf` ([`TELEPHONE_EVENT_PT_48000`],
/// [`TELEPHONE_EVENT_PT_8000`], events [`TELEPHONE_EVENTS`]), then `a=ptime:20`.
pub fn write_offer(media: &mut Media, codecs: &[AudioCodec], dtmf: bool) {
    for c in codecs {
        push_codec(media, *c);
    }
    if dtmf {
        let mut clocks: Vec<u32> = codecs.iter().map(|c| c.clock_rate()).collect();
        clocks.sort_unstable_by(|a, b| b.cmp(a));
        clocks.dedup();
        for clock in clocks {
            let pt = if clock == 8000 {
                TELEPHONE_EVENT_PT_8000
            } else {
                TELEPHONE_EVENT_PT_48000
            };
            push_telephone_event(media, pt, clock);
        }
    }
    media.push_attr("ptime", Some("20"));
}

/// Writes an answer's audio formats into `media`: the negotiated codec on its payload type and,
/// when negotiated, telephone-event on the offerer's payload type, then `a=ptime:20`.
pub fn write_answer(media: &mut Media, negotiated: &Negotiated) {
    push_codec(media, negotiated.codec);
    if let Some(t) = &negotiated.telephone_event {
        push_telephone_event(media, t.payload_type, t.clock_rate);
    }
    media.push_attr("ptime", Some("20"));
}

fn push_codec(media: &mut Media, c: AudioCodec) {
    let pt = c.payload_type().to_string();
    media.formats.push(pt.clone());
    media.push_attr("rtpmap", Some(&c.rtpmap()));
    if c.is_opus() {
        media.push_attr("fmtp", Some(&format!("{pt} {OPUS_FMTP}")));
    }
}

fn push_telephone_event(media: &mut Media, pt: u8, clock: u32) {
    media.formats.push(pt.to_string());
    media.push_attr("rtpmap", Some(&format!("{pt} telephone-event/{clock}")));
    media.push_attr("fmtp", Some(&format!("{pt} {TELEPHONE_EVENTS}")));
}
