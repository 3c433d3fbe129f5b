//! The location service (RFC 3261 §10.3) and per-source rate limits.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

/// One registered contact.
#[derive(Debug, Clone, PartialEq)]
pub struct Binding {
    /// The Contact URI.
    pub uri: String,
    /// When it expires.
    pub expires_at: Instant,
    /// Call-ID of the REGISTER that set it (§10.3 step 7).
    pub call_id: String,
    /// CSeq of that REGISTER.
    pub cseq: u32,
    /// The `q` preference, 0..=1000 (thousandths).
    pub q: u16,
    /// Where the REGISTER came from (used when the Contact host is not an IP literal).
    pub source: SocketAddr,
    /// True when registered over a stream transport.
    pub reliable: bool,
}

/// Address-of-record → bindings.
#[derive(Debug, Default)]
pub struct Location {
    map: HashMap<String, Vec<Binding>>,
}

impl Location {
    /// Live bindings of an AOR, best first (highest q, then most recent).
    pub fn lookup(&self, aor: &str, now: Instant) -> Vec<&Binding> {
        let mut v: Vec<&Binding> = self
            .map
            .get(aor)
            .map(|b| b.iter().filter(|b| b.expires_at > now).collect())
            .unwrap_or_default();
        v.sort_by(|a, b| b.q.cmp(&a.q).then(b.expires_at.cmp(&a.expires_at)));
        v
    }

    /// Mutable bindings of an AOR (created on demand).
    pub fn entry(&mut self, aor: &str) -> &mut Vec<Binding> {
        self.map.entry(aor.to_owned()).or_default()
    }

    /// Removes expired bindings and empty AORs; returns how many bindings remain.
    pub fn sweep(&mut self, now: Instant) -> usize {
        self.map.retain(|_, v| {
            v.retain(|b| b.expires_at > now);
            !v.is_empty()
        });
        self.map.values().map(Vec::len).sum()
    }
}

/// Which limit a request falls under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Limited {
    /// REGISTER.
    Register,
    /// INVITE.
    Invite,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

/// Token buckets per (source IP, kind).
#[derive(Debug)]
pub struct RateLimiter {
    register_rate: f64,
    invite_rate: f64,
    burst: f64,
    buckets: HashMap<(IpAddr, Limited), Bucket>,
    max_entries: usize,
}

impl RateLimiter {
    /// Rates in requests per second (0 disables), shared burst size.
    pub fn new(register_rate: f64, invite_rate: f64, burst: f64) -> Self {
        RateLimiter {
            register_rate,
            invite_rate,
            burst: burst.max(1.0),
            buckets: HashMap::new(),
            max_entries: 100_000,
        }
    }

    /// Takes a token; `Err(retry_after_secs)` when the source is over its limit.
    pub fn check(&mut self, ip: IpAddr, kind: Limited, now: Instant) -> Result<(), u32> {
        let rate = match kind {
            Limited::Register => self.register_rate,
            Limited::Invite => self.invite_rate,
        };
        if rate <= 0.0 {
            return Ok(());
        }
        if self.buckets.len() >= self.max_entries {
            // Bounded memory: forget idle sources first, everything if that is not enough.
            self.buckets
                .retain(|_, b| now.duration_since(b.last) < Duration::from_secs(10));
            if self.buckets.len() >= self.max_entries {
                self.buckets.clear();
            }
        }
        let burst = self.burst;
        let b = self.buckets.entry((ip, kind)).or_insert(Bucket {
            tokens: burst,
            last: now,
        });
        let elapsed = now.saturating_duration_since(b.last).as_secs_f64();
        b.tokens = (b.tokens + elapsed * rate).min(burst);
        b.last = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - b.tokens) / rate).ceil().max(1.0) as u32)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_limits_one_source_only() {
        let mut r = RateLimiter::new(10.0, 0.0, 5.0);
        let t = Instant::now();
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        for _ in 0..5 {
            assert!(r.check(a, Limited::Register, t).is_ok());
        }
        assert_eq!(r.check(a, Limited::Register, t), Err(1));
        assert!(r.check(b, Limited::Register, t).is_ok());
        assert!(
            r.check(a, Limited::Invite, t).is_ok(),
            "invite limit disabled"
        );
        assert!(
            r.check(a, Limited::Register, t + Duration::from_millis(100))
                .is_ok()
        );
    }

    #[test]
    fn location_orders_and_expires() {
        let mut l = Location::default();
        let t = Instant::now();
        let src: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let mk = |uri: &str, secs, q| Binding {
            uri: uri.into(),
            expires_at: t + Duration::from_secs(secs),
            call_id: "c".into(),
            cseq: 1,
            q,
            source: src,
            reliable: false,
        };
        l.entry("a@d").push(mk("sip:1", 10, 500));
        l.entry("a@d").push(mk("sip:2", 20, 1000));
        assert_eq!(l.lookup("a@d", t)[0].uri, "sip:2");
        assert_eq!(l.lookup("a@d", t + Duration::from_secs(15)).len(), 1);
        assert_eq!(l.sweep(t + Duration::from_secs(30)), 0);
    }
}
