//! Typed primitives: an SSRC is not a sequence number is not a rollover counter.

use core::fmt;

/// Synchronization source identifier (RFC 3550 §5.1), the key of a per-stream context.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ssrc(pub u32);

/// RTP sequence number (RFC 3550 §5.1): the low 16 bits of the SRTP packet index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SeqNo(pub u16);

/// Rollover counter (RFC 3711 §3.3.1): how many times the sequence number wrapped; the high 32
/// bits of the 48-bit SRTP packet index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Roc(pub u32);

impl fmt::Display for Ssrc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#010x}", self.0)
    }
}

impl From<u32> for Ssrc {
    fn from(v: u32) -> Self {
        Ssrc(v)
    }
}

impl From<u16> for SeqNo {
    fn from(v: u16) -> Self {
        SeqNo(v)
    }
}

impl From<u32> for Roc {
    fn from(v: u32) -> Self {
        Roc(v)
    }
}

/// Where a stream stands: what MIKEY needs to hand over (RFC 3830 §6.10 carries the ROC) and what
/// a debugger wants to see. Contains no secrets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamState {
    /// The stream's SSRC.
    pub ssrc: Ssrc,
    /// Rollover counter of the highest index sent (`None` before the first packet).
    pub tx_roc: Option<Roc>,
    /// Highest sequence number sent.
    pub tx_seq: Option<SeqNo>,
    /// Rollover counter of the highest index received and authenticated.
    pub rx_roc: Option<Roc>,
    /// Highest sequence number received and authenticated.
    pub rx_seq: Option<SeqNo>,
    /// Next SRTCP index this side will send.
    pub srtcp_tx_next: u32,
}
