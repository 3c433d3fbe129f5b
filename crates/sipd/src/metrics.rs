//! Counters and gauges in Prometheus text format (exposition format 0.0.4), served at `/metrics`.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// A monotonically increasing counter.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds one.
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    /// The current value.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A gauge.
#[derive(Debug, Default)]
pub struct Gauge(AtomicI64);

impl Gauge {
    /// Sets the value.
    pub fn set(&self, v: i64) {
        self.0.store(v, Ordering::Relaxed);
    }
    /// The current value.
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// All sipd metrics.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Requests received.
    pub requests: Counter,
    /// Responses received.
    pub responses_in: Counter,
    /// Responses sent or forwarded, by class 1xx..6xx.
    pub responses: [Counter; 6],
    /// Malformed messages.
    pub parse_errors: Counter,
    /// Failed digest authentications.
    pub auth_failures: Counter,
    /// Requests refused by the rate limit.
    pub rate_limited: Counter,
    /// Live registrations (bindings), refreshed once a second.
    pub registrations: Gauge,
    /// Successful REGISTER requests (bindings added, refreshed or removed).
    pub registers_ok: Counter,
    /// Live transactions.
    pub transactions: Gauge,
    /// Transactions started: server transactions for received requests (not 2xx ACKs) and client
    /// transactions for forwarded ones.
    pub transactions_started: Counter,
    /// Open stream connections.
    pub connections: Gauge,
    /// Requests refused with 403 because they would have been relayed to a target that is not a
    /// registered contact, a configured route, or asked for by a local user.
    pub relay_refused: Counter,
    /// Subscriber look-ups started (database reads).
    pub credential_lookups: Counter,
    /// Requests waiting for a subscriber look-up.
    pub lookups_pending: Gauge,
    /// Initial INVITEs from another domain claiming one of our subscribers' numbers (refused or
    /// marked, `[policy] foreign_caller_with_local_number`).
    pub foreign_local_number: Counter,
}

impl Metrics {
    /// Counts a response by class.
    pub fn count_response(&self, code: u16) {
        if let Some(c) = self.responses.get(usize::from(code / 100).wrapping_sub(1)) {
            c.inc();
        }
    }

    /// Renders the Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut s = String::with_capacity(1024);
        let mut one = |name: &str, kind: &str, help: &str, v: String| {
            let _ = write!(
                s,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}\n"
            );
        };
        one(
            "sipd_requests_total",
            "counter",
            "SIP requests received.",
            self.requests.get().to_string(),
        );
        one(
            "sipd_responses_received_total",
            "counter",
            "SIP responses received.",
            self.responses_in.get().to_string(),
        );
        one(
            "sipd_parse_errors_total",
            "counter",
            "Malformed messages.",
            self.parse_errors.get().to_string(),
        );
        one(
            "sipd_auth_failures_total",
            "counter",
            "Failed digest authentications.",
            self.auth_failures.get().to_string(),
        );
        one(
            "sipd_rate_limited_total",
            "counter",
            "Requests refused with 503 by the per-source limit.",
            self.rate_limited.get().to_string(),
        );
        one(
            "sipd_registrations",
            "gauge",
            "Registered contact bindings.",
            self.registrations.get().to_string(),
        );
        one(
            "sipd_registers_ok_total",
            "counter",
            "REGISTER requests answered 200.",
            self.registers_ok.get().to_string(),
        );
        one(
            "sipd_transactions_started_total",
            "counter",
            "Server and client transactions started.",
            self.transactions_started.get().to_string(),
        );
        one(
            "sipd_transactions",
            "gauge",
            "Live SIP transactions.",
            self.transactions.get().to_string(),
        );
        one(
            "sipd_connections",
            "gauge",
            "Open stream connections.",
            self.connections.get().to_string(),
        );
        one(
            "sipd_relay_refused_total",
            "counter",
            "Requests refused with 403 instead of being relayed to an unvetted target.",
            self.relay_refused.get().to_string(),
        );
        one(
            "sipd_credential_lookups_total",
            "counter",
            "Subscriber look-ups started.",
            self.credential_lookups.get().to_string(),
        );
        one(
            "sipd_lookups_pending",
            "gauge",
            "Requests waiting for a subscriber look-up.",
            self.lookups_pending.get().to_string(),
        );
        one(
            "sipd_foreign_local_number_total",
            "counter",
            "INVITEs from another domain claiming a local subscriber's number (refused or marked).",
            self.foreign_local_number.get().to_string(),
        );
        s.push_str("# HELP sipd_responses_total SIP responses sent, by class.\n# TYPE sipd_responses_total counter\n");
        for (i, c) in self.responses.iter().enumerate() {
            let _ = writeln!(
                s,
                "sipd_responses_total{{class=\"{}xx\"}} {}",
                i + 1,
                c.get()
            );
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_classes() {
        let m = Metrics::default();
        m.count_response(200);
        m.count_response(503);
        m.count_response(99);
        let text = m.render();
        assert!(text.contains("sipd_responses_total{class=\"2xx\"} 1"));
        assert!(text.contains("sipd_responses_total{class=\"5xx\"} 1"));
    }
}
