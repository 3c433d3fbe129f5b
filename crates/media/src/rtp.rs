//! RTP packets (RFC 3550 §5.1, §5.3.1): a borrowing parser and a builder that appends to the
//! caller's buffer.

/// Length of the fixed RTP header (RFC 3550 §5.1).
pub const FIXED_HEADER_LEN: usize = 12;
/// Most CSRCs a header can list (the 4-bit CC field).
pub const MAX_CSRC: usize = 15;

/// Why an RTP packet could not be parsed or built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RtpError {
    /// Shorter than the 12-octet fixed header.
    #[error("RTP packet shorter than 12 octets")]
    TooShort,
    /// The version field is not 2.
    #[error("RTP version {0}, expected 2")]
    BadVersion(u8),
    /// The CSRC count announces more CSRC identifiers than the packet holds.
    #[error("CSRC list longer than the packet")]
    CsrcOverflow,
    /// The header extension (X bit) is cut short or longer than the packet.
    #[error("header extension longer than the packet")]
    ExtensionOverflow,
    /// The padding count is zero or larger than what follows the header.
    #[error("bad RTP padding length")]
    BadPadding,
    /// Builder misuse: more than 15 CSRCs.
    #[error("more than 15 CSRCs")]
    TooManyCsrcs,
    /// Builder misuse: a payload type above 127.
    #[error("payload type above 127")]
    BadPayloadType,
    /// Builder misuse: header extension data not a multiple of 4 octets or over 262,140.
    #[error("header extension length must be a multiple of 4 octets, at most 65535 words")]
    BadExtensionLength,
}

/// A header extension (RFC 3550 §5.3.1): 16-bit profile-defined value and the data words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderExtension<'a> {
    /// "defined by profile" (e.g. 0xBEDE for RFC 8285 one-byte elements).
    pub profile: u16,
    /// The extension data, a multiple of 4 octets.
    pub data: &'a [u8],
}

/// An RTP packet, as parsed from (borrowing) or to be built into a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpPacket<'a> {
    /// M bit.
    pub marker: bool,
    /// PT, 7 bits.
    pub payload_type: u8,
    /// Sequence number.
    pub sequence: u16,
    /// RTP timestamp, in the payload's clock rate.
    pub timestamp: u32,
    /// Synchronization source.
    pub ssrc: u32,
    csrc: [u32; MAX_CSRC],
    csrc_count: u8,
    /// Header extension, when the X bit is set.
    pub extension: Option<HeaderExtension<'a>>,
    /// The payload, without padding.
    pub payload: &'a [u8],
    /// Padding octets after the payload, the count octet included; 0 when the P bit is clear.
    pub padding: u8,
}

impl<'a> RtpPacket<'a> {
    /// A packet with no CSRC, no extension and no padding.
    pub fn new(
        payload_type: u8,
        sequence: u16,
        timestamp: u32,
        ssrc: u32,
        payload: &'a [u8],
    ) -> Self {
        RtpPacket {
            marker: false,
            payload_type,
            sequence,
            timestamp,
            ssrc,
            csrc: [0; MAX_CSRC],
            csrc_count: 0,
            extension: None,
            payload,
            padding: 0,
        }
    }

    /// Parses `buf` (RFC 3550 §5.1; validity checks of §A.1 that need no state).
    pub fn parse(buf: &'a [u8]) -> Result<Self, RtpError> {
        if buf.len() < FIXED_HEADER_LEN {
            return Err(RtpError::TooShort);
        }
        let version = buf[0] >> 6;
        if version != 2 {
            return Err(RtpError::BadVersion(version));
        }
        let has_padding = buf[0] & 0x20 != 0;
        let has_extension = buf[0] & 0x10 != 0;
        let csrc_count = buf[0] & 0x0F;
        let mut at = FIXED_HEADER_LEN;
        let csrc_end = at + 4 * usize::from(csrc_count);
        if csrc_end > buf.len() {
            return Err(RtpError::CsrcOverflow);
        }
        let mut csrc = [0u32; MAX_CSRC];
        for (i, c) in buf[at..csrc_end].chunks_exact(4).enumerate() {
            csrc[i] = u32::from_be_bytes([c[0], c[1], c[2], c[3]]);
        }
        at = csrc_end;
        let extension = if has_extension {
            if buf.len() < at + 4 {
                return Err(RtpError::ExtensionOverflow);
            }
            let profile = u16::from_be_bytes([buf[at], buf[at + 1]]);
            let words = usize::from(u16::from_be_bytes([buf[at + 2], buf[at + 3]]));
            let end = at + 4 + 4 * words;
            if end > buf.len() {
                return Err(RtpError::ExtensionOverflow);
            }
            let ext = HeaderExtension {
                profile,
                data: &buf[at + 4..end],
            };
            at = end;
            Some(ext)
        } else {
            None
        };
        let mut end = buf.len();
        let mut padding = 0;
        if has_padding {
            // §5.1: the last octet counts the padding octets, itself included.
            padding = buf[buf.len() - 1];
            if padding == 0 || usize::from(padding) > buf.len() - at {
                return Err(RtpError::BadPadding);
            }
            end -= usize::from(padding);
        }
        Ok(RtpPacket {
            marker: buf[1] & 0x80 != 0,
            payload_type: buf[1] & 0x7F,
            sequence: u16::from_be_bytes([buf[2], buf[3]]),
            timestamp: u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]),
            ssrc: u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]),
            csrc,
            csrc_count,
            extension,
            payload: &buf[at..end],
            padding,
        })
    }

    /// The contributing sources.
    pub fn csrcs(&self) -> &[u32] {
        &self.csrc[..usize::from(self.csrc_count)]
    }

    /// Sets the contributing sources (at most 15).
    pub fn set_csrcs(&mut self, csrcs: &[u32]) -> Result<(), RtpError> {
        if csrcs.len() > MAX_CSRC {
            return Err(RtpError::TooManyCsrcs);
        }
        self.csrc[..csrcs.len()].copy_from_slice(csrcs);
        self.csrc_count = csrcs.len() as u8;
        Ok(())
    }

    /// Length of the header: fixed part, CSRCs and extension.
    pub fn header_len(&self) -> usize {
        FIXED_HEADER_LEN
            + 4 * usize::from(self.csrc_count)
            + self.extension.map_or(0, |e| 4 + e.data.len())
    }

    /// Length of the whole packet as [`write`](Self::write) emits it.
    pub fn len(&self) -> usize {
        self.header_len() + self.payload.len() + usize::from(self.padding)
    }

    /// True when the packet has neither payload nor padding.
    pub fn is_empty(&self) -> bool {
        self.payload.is_empty() && self.padding == 0
    }

    /// Appends the packet to `out`; returns its length. Padding octets are zero except the last,
    /// which holds the count (§5.1).
    pub fn write(&self, out: &mut Vec<u8>) -> Result<usize, RtpError> {
        if self.payload_type > 127 {
            return Err(RtpError::BadPayloadType);
        }
        if let Some(ext) = self.extension
            && (ext.data.len() % 4 != 0 || ext.data.len() / 4 > usize::from(u16::MAX))
        {
            return Err(RtpError::BadExtensionLength);
        }
        let start = out.len();
        out.reserve(self.len());
        out.push(
            0x80 | if self.padding > 0 { 0x20 } else { 0 }
                | if self.extension.is_some() { 0x10 } else { 0 }
                | self.csrc_count,
        );
        out.push(if self.marker { 0x80 } else { 0 } | self.payload_type);
        out.extend_from_slice(&self.sequence.to_be_bytes());
        out.extend_from_slice(&self.timestamp.to_be_bytes());
        out.extend_from_slice(&self.ssrc.to_be_bytes());
        for c in self.csrcs() {
            out.extend_from_slice(&c.to_be_bytes());
        }
        if let Some(ext) = self.extension {
            out.extend_from_slice(&ext.profile.to_be_bytes());
            out.extend_from_slice(&((ext.data.len() / 4) as u16).to_be_bytes());
            out.extend_from_slice(ext.data);
        }
        out.extend_from_slice(self.payload);
        if self.padding > 0 {
            out.extend(std::iter::repeat_n(0, usize::from(self.padding) - 1));
            out.push(self.padding);
        }
        Ok(out.len() - start)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_with_csrc_extension_padding() {
        let ext = [1, 2, 3, 4, 5, 6, 7, 8];
        let mut p = RtpPacket::new(8, 65535, 0xDEAD_BEEF, 0x1234_5678, b"hello");
        p.marker = true;
        p.set_csrcs(&[1, 2, 3]).unwrap();
        p.extension = Some(HeaderExtension {
            profile: 0xBEDE,
            data: &ext,
        });
        p.padding = 3;
        let mut buf = Vec::new();
        assert_eq!(p.write(&mut buf).unwrap(), p.len());
        assert_eq!(buf.len(), 12 + 12 + 12 + 5 + 3);
        assert_eq!(RtpPacket::parse(&buf).unwrap(), p);
    }

    #[test]
    fn malformed_inputs_are_errors() {
        let mut buf = Vec::new();
        RtpPacket::new(0, 1, 2, 3, &[9; 4]).write(&mut buf).unwrap();
        assert_eq!(RtpPacket::parse(&buf[..11]), Err(RtpError::TooShort));
        let mut v1 = buf.clone();
        v1[0] = 0x40;
        assert_eq!(RtpPacket::parse(&v1), Err(RtpError::BadVersion(1)));
        let mut cc = buf.clone();
        cc[0] |= 0x02; // two CSRCs = 8 octets, only 4 follow
        assert_eq!(RtpPacket::parse(&cc), Err(RtpError::CsrcOverflow));
        let mut x = buf.clone();
        x[0] |= 0x10;
        assert_eq!(RtpPacket::parse(&x[..14]), Err(RtpError::ExtensionOverflow));
        let mut pad = buf.clone();
        pad[0] |= 0x20;
        *pad.last_mut().unwrap() = 5; // 5 > 4 octets after the header
        assert_eq!(RtpPacket::parse(&pad), Err(RtpError::BadPadding));
        *pad.last_mut().unwrap() = 0;
        assert_eq!(RtpPacket::parse(&pad), Err(RtpError::BadPadding));
        let mut p = RtpPacket::new(128, 0, 0, 0, &[]);
        assert_eq!(p.write(&mut Vec::new()), Err(RtpError::BadPayloadType));
        p.payload_type = 0;
        assert_eq!(p.set_csrcs(&[0; 16]), Err(RtpError::TooManyCsrcs));
    }
}
