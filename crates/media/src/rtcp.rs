//! RTCP (RFC 3550 §6.4–6.6): sender and receiver reports, SDES, BYE; compound packets; the
//! RFC 5761 §4 RTP/RTCP demultiplexing rule.

/// Packet type SR (RFC 3550 §12.1).
pub const PT_SR: u8 = 200;
/// Packet type RR.
pub const PT_RR: u8 = 201;
/// Packet type SDES.
pub const PT_SDES: u8 = 202;
/// Packet type BYE.
pub const PT_BYE: u8 = 203;
/// SDES item type CNAME (RFC 3550 §6.5.1).
pub const SDES_CNAME: u8 = 1;

/// Why an RTCP packet could not be parsed or built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RtcpError {
    /// Shorter than a 4-octet RTCP header, or empty.
    #[error("RTCP packet too short")]
    TooShort,
    /// The version field is not 2.
    #[error("RTCP version {0}, expected 2")]
    BadVersion(u8),
    /// A length field points past the end of the compound packet.
    #[error("RTCP length field exceeds the packet")]
    BadLength,
    /// The body of a packet is inconsistent with its count or type.
    #[error("malformed RTCP packet: {0}")]
    Malformed(&'static str),
    /// Padding in a packet other than the last, or a bad padding count (RFC 3550 §6.4.1).
    #[error("bad RTCP padding")]
    BadPadding,
    /// Builder misuse: more than 31 report blocks, SDES chunks or BYE sources, or an item over
    /// 255 octets.
    #[error("too many items for one RTCP packet: {0}")]
    TooMany(&'static str),
}

/// The sender information of an SR (RFC 3550 §6.4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SenderInfo {
    /// NTP timestamp, 32.32 fixed point seconds since 1900.
    pub ntp_timestamp: u64,
    /// The same instant in RTP timestamp units.
    pub rtp_timestamp: u32,
    /// Packets sent since the start of transmission.
    pub packet_count: u32,
    /// Payload octets sent since the start of transmission.
    pub octet_count: u32,
}

/// A reception report block (RFC 3550 §6.4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReportBlock {
    /// The source this block reports about.
    pub ssrc: u32,
    /// Fraction lost since the last report, in 1/256.
    pub fraction_lost: u8,
    /// Cumulative packets lost (24-bit signed: duplicates can make it negative).
    pub cumulative_lost: i32,
    /// Extended highest sequence number received (cycles << 16 | seq).
    pub highest_seq: u32,
    /// Interarrival jitter, in timestamp units (§6.4.1, §A.8).
    pub jitter: u32,
    /// Middle 32 bits of the last SR's NTP timestamp (LSR), 0 when none.
    pub last_sr: u32,
    /// Delay since that SR, in 1/65536 s (DLSR).
    pub delay_since_last_sr: u32,
}

/// An SR: the sender's info and report blocks about the sources it receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SenderReport {
    /// The sender's SSRC.
    pub ssrc: u32,
    /// What it sent.
    pub info: SenderInfo,
    /// What it received.
    pub reports: Vec<ReportBlock>,
}

/// An RR: report blocks from a participant that has not sent RTP lately.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiverReport {
    /// The reporter's SSRC.
    pub ssrc: u32,
    /// What it received.
    pub reports: Vec<ReportBlock>,
}

/// One SDES item (RFC 3550 §6.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SdesItem {
    /// Item type: 1 CNAME, 2 NAME, ... 8 PRIV.
    pub kind: u8,
    /// Item text (UTF-8 by the RFC, kept as octets).
    pub value: Vec<u8>,
}

/// One SDES chunk: a source and its items.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SdesChunk {
    /// The source described.
    pub ssrc: u32,
    /// Its items.
    pub items: Vec<SdesItem>,
}

impl SdesChunk {
    /// A chunk carrying only a CNAME.
    pub fn cname(ssrc: u32, cname: &str) -> Self {
        SdesChunk {
            ssrc,
            items: vec![SdesItem {
                kind: SDES_CNAME,
                value: cname.as_bytes().to_vec(),
            }],
        }
    }

    /// The chunk's CNAME, when it has one.
    pub fn cname_value(&self) -> Option<&[u8]> {
        self.items
            .iter()
            .find(|i| i.kind == SDES_CNAME)
            .map(|i| i.value.as_slice())
    }
}

/// A BYE: sources leaving, and an optional reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bye {
    /// The sources leaving.
    pub ssrcs: Vec<u32>,
    /// Reason for leaving, when given.
    pub reason: Option<Vec<u8>>,
}

/// One RTCP packet of a compound packet.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RtcpPacket {
    /// SR (PT 200).
    SenderReport(SenderReport),
    /// RR (PT 201).
    ReceiverReport(ReceiverReport),
    /// SDES (PT 202).
    Sdes(Vec<SdesChunk>),
    /// BYE (PT 203).
    Bye(Bye),
    /// Any other type (APP, RTPFB, PSFB, XR, ...), kept raw.
    Other {
        /// Packet type.
        packet_type: u8,
        /// The 5-bit count/format field.
        count: u8,
        /// The body after the 4-octet header, padding removed.
        body: Vec<u8>,
    },
}

/// RFC 5761 §4: with RTP and RTCP on one port, a packet whose second octet (RTP marker bit +
/// payload type) is 192–223 is RTCP (RFC 5761 makes RTP payload types 64–95 unusable then).
/// Also requires version 2 and at least a 4-octet header; anything else counts as not RTCP.
pub fn is_rtcp(packet: &[u8]) -> bool {
    packet.len() >= 4 && packet[0] >> 6 == 2 && (192..=223).contains(&packet[1])
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn parse_blocks(body: &[u8], count: u8) -> Result<Vec<ReportBlock>, RtcpError> {
    let need = 24 * usize::from(count);
    if body.len() < need {
        return Err(RtcpError::Malformed("report blocks longer than the packet"));
    }
    // Octets after the blocks are profile-specific extensions (§6.4.1): ignored.
    Ok(body[..need]
        .chunks_exact(24)
        .map(|b| {
            let lost = be32(b, 4);
            // 24-bit two's complement, sign-extended.
            let cumulative = ((lost << 8) as i32) >> 8;
            ReportBlock {
                ssrc: be32(b, 0),
                fraction_lost: (lost >> 24) as u8,
                cumulative_lost: cumulative,
                highest_seq: be32(b, 8),
                jitter: be32(b, 12),
                last_sr: be32(b, 16),
                delay_since_last_sr: be32(b, 20),
            }
        })
        .collect())
}

fn parse_sdes(body: &[u8], count: u8) -> Result<Vec<SdesChunk>, RtcpError> {
    let mut chunks = Vec::with_capacity(usize::from(count));
    let mut at = 0;
    for _ in 0..count {
        if body.len() < at + 4 {
            return Err(RtcpError::Malformed("SDES chunk cut short"));
        }
        let ssrc = be32(body, at);
        at += 4;
        let mut items = Vec::new();
        loop {
            let Some(&kind) = body.get(at) else {
                return Err(RtcpError::Malformed("SDES chunk without end item"));
            };
            if kind == 0 {
                // End item, then null octets up to the next 32-bit boundary (§6.5).
                at += 1;
                at = at.div_ceil(4) * 4;
                break;
            }
            let Some(&len) = body.get(at + 1) else {
                return Err(RtcpError::Malformed("SDES item cut short"));
            };
            let end = at + 2 + usize::from(len);
            if end > body.len() {
                return Err(RtcpError::Malformed("SDES item longer than the packet"));
            }
            items.push(SdesItem {
                kind,
                value: body[at + 2..end].to_vec(),
            });
            at = end;
        }
        if at > body.len() {
            return Err(RtcpError::Malformed("SDES chunk not padded to 32 bits"));
        }
        chunks.push(SdesChunk { ssrc, items });
    }
    Ok(chunks)
}

fn parse_bye(body: &[u8], count: u8) -> Result<Bye, RtcpError> {
    let n = 4 * usize::from(count);
    if body.len() < n {
        return Err(RtcpError::Malformed("BYE sources longer than the packet"));
    }
    let ssrcs = (0..usize::from(count)).map(|i| be32(body, 4 * i)).collect();
    let reason = match body.get(n) {
        None => None,
        Some(&len) => {
            let end = n + 1 + usize::from(len);
            if end > body.len() {
                return Err(RtcpError::Malformed("BYE reason longer than the packet"));
            }
            Some(body[n + 1..end].to_vec())
        }
    };
    Ok(Bye { ssrcs, reason })
}

/// Parses a compound RTCP packet (RFC 3550 §6.1) into its packets.
///
/// Checks each header (version 2, length within the datagram, lengths summing exactly to the
/// datagram, padding only in the last packet; §A.2). The first packet is not required to be an
/// SR or RR, so reduced-size RTCP (RFC 5506) parses too.
pub fn parse_compound(buf: &[u8]) -> Result<Vec<RtcpPacket>, RtcpError> {
    if buf.len() < 4 {
        return Err(RtcpError::TooShort);
    }
    let mut out = Vec::new();
    let mut at = 0;
    while at < buf.len() {
        if buf.len() - at < 4 {
            return Err(RtcpError::BadLength);
        }
        let h = &buf[at..];
        let version = h[0] >> 6;
        if version != 2 {
            return Err(RtcpError::BadVersion(version));
        }
        let padded = h[0] & 0x20 != 0;
        let count = h[0] & 0x1F;
        let packet_type = h[1];
        let len = 4 * (usize::from(u16::from_be_bytes([h[2], h[3]])) + 1);
        if len > h.len() {
            return Err(RtcpError::BadLength);
        }
        let mut body = &h[4..len];
        if padded {
            // §6.4.1: only the last packet of a compound packet may be padded.
            if at + len != buf.len() {
                return Err(RtcpError::BadPadding);
            }
            let pad = usize::from(*body.last().ok_or(RtcpError::BadPadding)?);
            if pad == 0 || pad > body.len() {
                return Err(RtcpError::BadPadding);
            }
            body = &body[..body.len() - pad];
        }
        let packet = match packet_type {
            PT_SR => {
                if body.len() < 24 {
                    return Err(RtcpError::Malformed("SR shorter than its sender info"));
                }
                RtcpPacket::SenderReport(SenderReport {
                    ssrc: be32(body, 0),
                    info: SenderInfo {
                        ntp_timestamp: u64::from(be32(body, 4)) << 32 | u64::from(be32(body, 8)),
                        rtp_timestamp: be32(body, 12),
                        packet_count: be32(body, 16),
                        octet_count: be32(body, 20),
                    },
                    reports: parse_blocks(&body[24..], count)?,
                })
            }
            PT_RR => {
                if body.len() < 4 {
                    return Err(RtcpError::Malformed("RR without SSRC"));
                }
                RtcpPacket::ReceiverReport(ReceiverReport {
                    ssrc: be32(body, 0),
                    reports: parse_blocks(&body[4..], count)?,
                })
            }
            PT_SDES => RtcpPacket::Sdes(parse_sdes(body, count)?),
            PT_BYE => RtcpPacket::Bye(parse_bye(body, count)?),
            _ => RtcpPacket::Other {
                packet_type,
                count,
                body: body.to_vec(),
            },
        };
        out.push(packet);
        at += len;
    }
    Ok(out)
}

fn header(out: &mut Vec<u8>, count: usize, packet_type: u8) -> usize {
    let start = out.len();
    out.push(0x80 | count as u8);
    out.push(packet_type);
    out.extend_from_slice(&[0, 0]); // length, filled by `finish`
    start
}

/// Pads the packet begun at `start` to 32 bits with zeros and writes its length field.
fn finish(out: &mut Vec<u8>, start: usize) {
    while !(out.len() - start).is_multiple_of(4) {
        out.push(0);
    }
    let words = ((out.len() - start) / 4 - 1) as u16;
    out[start + 2..start + 4].copy_from_slice(&words.to_be_bytes());
}

fn write_blocks(out: &mut Vec<u8>, blocks: &[ReportBlock]) {
    for b in blocks {
        out.extend_from_slice(&b.ssrc.to_be_bytes());
        let lost = (b.cumulative_lost.clamp(-0x80_0000, 0x7F_FFFF) as u32) & 0x00FF_FFFF;
        out.extend_from_slice(&(u32::from(b.fraction_lost) << 24 | lost).to_be_bytes());
        out.extend_from_slice(&b.highest_seq.to_be_bytes());
        out.extend_from_slice(&b.jitter.to_be_bytes());
        out.extend_from_slice(&b.last_sr.to_be_bytes());
        out.extend_from_slice(&b.delay_since_last_sr.to_be_bytes());
    }
}

impl RtcpPacket {
    /// Appends this packet to `out` (no padding). Cumulative loss is clamped to 24 bits.
    pub fn write(&self, out: &mut Vec<u8>) -> Result<(), RtcpError> {
        match self {
            RtcpPacket::SenderReport(sr) => {
                if sr.reports.len() > 31 {
                    return Err(RtcpError::TooMany("report blocks"));
                }
                let start = header(out, sr.reports.len(), PT_SR);
                out.extend_from_slice(&sr.ssrc.to_be_bytes());
                out.extend_from_slice(&sr.info.ntp_timestamp.to_be_bytes());
                out.extend_from_slice(&sr.info.rtp_timestamp.to_be_bytes());
                out.extend_from_slice(&sr.info.packet_count.to_be_bytes());
                out.extend_from_slice(&sr.info.octet_count.to_be_bytes());
                write_blocks(out, &sr.reports);
                finish(out, start);
            }
            RtcpPacket::ReceiverReport(rr) => {
                if rr.reports.len() > 31 {
                    return Err(RtcpError::TooMany("report blocks"));
                }
                let start = header(out, rr.reports.len(), PT_RR);
                out.extend_from_slice(&rr.ssrc.to_be_bytes());
                write_blocks(out, &rr.reports);
                finish(out, start);
            }
            RtcpPacket::Sdes(chunks) => {
                if chunks.len() > 31 {
                    return Err(RtcpError::TooMany("SDES chunks"));
                }
                if chunks
                    .iter()
                    .flat_map(|c| &c.items)
                    .any(|i| i.value.len() > 255 || i.kind == 0)
                {
                    return Err(RtcpError::TooMany("SDES item over 255 octets or of type 0"));
                }
                let start = header(out, chunks.len(), PT_SDES);
                for c in chunks {
                    let chunk_start = out.len();
                    out.extend_from_slice(&c.ssrc.to_be_bytes());
                    for i in &c.items {
                        out.push(i.kind);
                        out.push(i.value.len() as u8);
                        out.extend_from_slice(&i.value);
                    }
                    // End item plus null octets to the next 32-bit boundary (§6.5).
                    out.push(0);
                    while !(out.len() - chunk_start).is_multiple_of(4) {
                        out.push(0);
                    }
                }
                finish(out, start);
            }
            RtcpPacket::Bye(bye) => {
                if bye.ssrcs.len() > 31 {
                    return Err(RtcpError::TooMany("BYE sources"));
                }
                if bye.reason.as_ref().is_some_and(|r| r.len() > 255) {
                    return Err(RtcpError::TooMany("BYE reason over 255 octets"));
                }
                let start = header(out, bye.ssrcs.len(), PT_BYE);
                for s in &bye.ssrcs {
                    out.extend_from_slice(&s.to_be_bytes());
                }
                if let Some(r) = &bye.reason {
                    out.push(r.len() as u8);
                    out.extend_from_slice(r);
                }
                finish(out, start);
            }
            RtcpPacket::Other {
                packet_type,
                count,
                body,
            } => {
                if *count > 31 {
                    return Err(RtcpError::TooMany("count field over 31"));
                }
                if !body.len().is_multiple_of(4) || body.len() / 4 > usize::from(u16::MAX) {
                    return Err(RtcpError::Malformed("raw body not a multiple of 4 octets"));
                }
                let start = header(out, usize::from(*count), *packet_type);
                out.extend_from_slice(body);
                finish(out, start);
            }
        }
        Ok(())
    }
}

/// Appends the compound packet made of `packets` to `out` (RFC 3550 §6.1).
pub fn write_compound(packets: &[RtcpPacket], out: &mut Vec<u8>) -> Result<(), RtcpError> {
    for p in packets {
        p.write(out)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<RtcpPacket> {
        vec![
            RtcpPacket::SenderReport(SenderReport {
                ssrc: 0xAABB_CCDD,
                info: SenderInfo {
                    ntp_timestamp: 0x0102_0304_0506_0708,
                    rtp_timestamp: 160,
                    packet_count: 50,
                    octet_count: 8000,
                },
                reports: vec![ReportBlock {
                    ssrc: 7,
                    fraction_lost: 12,
                    cumulative_lost: -3,
                    highest_seq: 0x1_0005,
                    jitter: 9,
                    last_sr: 0x0304_0506,
                    delay_since_last_sr: 65536,
                }],
            }),
            RtcpPacket::ReceiverReport(ReceiverReport {
                ssrc: 1,
                reports: vec![],
            }),
            RtcpPacket::Sdes(vec![SdesChunk::cname(0xAABB_CCDD, "alice@chaincall")]),
            RtcpPacket::Bye(Bye {
                ssrcs: vec![0xAABB_CCDD],
                reason: Some(b"hangup".to_vec()),
            }),
            RtcpPacket::Other {
                packet_type: 204,
                count: 0,
                body: vec![0, 0, 0, 1, b'a', b'b', b'c', b'd'],
            },
        ]
    }

    #[test]
    fn compound_round_trip() {
        let packets = sample();
        let mut buf = Vec::new();
        write_compound(&packets, &mut buf).unwrap();
        assert_eq!(buf.len() % 4, 0);
        assert!(is_rtcp(&buf));
        assert_eq!(parse_compound(&buf).unwrap(), packets);
    }

    #[test]
    fn demux_rule() {
        assert!(!is_rtcp(&[0x80, 0, 0, 1]));
        assert!(!is_rtcp(&[0x80, 0x80 | 8, 0, 1]));
        assert!(is_rtcp(&[0x80, 200, 0, 1]));
        assert!(is_rtcp(&[0x81, 223, 0, 1]));
        assert!(!is_rtcp(&[0x80, 224, 0, 1]));
        assert!(!is_rtcp(&[0x40, 200, 0, 1]));
    }

    #[test]
    fn malformed_compound_packets() {
        let mut buf = Vec::new();
        write_compound(&sample(), &mut buf).unwrap();
        assert_eq!(parse_compound(&buf[..3]), Err(RtcpError::TooShort));
        assert_eq!(
            parse_compound(&buf[..buf.len() - 4]),
            Err(RtcpError::BadLength)
        );
        let mut v = buf.clone();
        v[0] = 0x40;
        assert_eq!(parse_compound(&v), Err(RtcpError::BadVersion(1)));
        // Padding on the first of several packets.
        let mut p = buf.clone();
        p[0] |= 0x20;
        assert_eq!(parse_compound(&p), Err(RtcpError::BadPadding));
        // SR claiming 2 report blocks with room for 1.
        let mut sr = buf.clone();
        sr[0] = 0x82;
        assert!(matches!(parse_compound(&sr), Err(RtcpError::Malformed(_))));
    }
}
