//! Time as MIKEY carries it: 64-bit NTP timestamps (RFC 3830 §6.6). The core never reads a clock;
//! callers pass `now` in.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Seconds from the NTP era 0 epoch (1900-01-01) to the UNIX epoch (1970-01-01).
const NTP_UNIX_OFFSET: u64 = 2_208_988_800;

/// A 64-bit NTP timestamp: seconds since 1900 in the high 32 bits, a binary fraction in the low 32.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NtpTime(pub u64);

impl NtpTime {
    /// From seconds and nanoseconds since the UNIX epoch.
    pub fn from_unix(secs: u64, nanos: u32) -> Self {
        let frac = (u64::from(nanos) << 32) / 1_000_000_000;
        Self((secs.wrapping_add(NTP_UNIX_OFFSET) << 32) | (frac & 0xffff_ffff))
    }

    /// From a `SystemTime` (for shells; the core itself never calls the clock).
    pub fn from_system_time(t: SystemTime) -> Self {
        let d = t.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
        Self::from_unix(d.as_secs(), d.subsec_nanos())
    }

    /// Seconds since the UNIX epoch (may be negative for NTP times before 1970).
    pub fn unix_secs(self) -> i64 {
        (self.0 >> 32) as i64 - NTP_UNIX_OFFSET as i64
    }

    /// The absolute distance between two times, in whole seconds.
    pub fn abs_diff_secs(self, other: Self) -> u64 {
        self.0.abs_diff(other.0) >> 32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unix_epoch_is_ntp_2208988800() {
        let t = NtpTime::from_unix(0, 500_000_000);
        assert_eq!(t.0 >> 32, 2_208_988_800);
        assert_eq!(t.0 & 0xffff_ffff, 0x8000_0000);
        assert_eq!(t.unix_secs(), 0);
        assert_eq!(
            NtpTime::from_unix(100, 0).abs_diff_secs(NtpTime::from_unix(40, 0)),
            60
        );
    }
}
