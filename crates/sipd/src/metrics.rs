//! Counters, gauges and a histogram in Prometheus text format (exposition format 0.0.4), served at
//! `/metrics`, with `/healthz` and `/readyz` beside them (see [`crate::Server::run`]).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use chaincall_handshake::HandshakeError;
use chaincall_identity::DirectoryError;
use chaincall_tls_psk::TlsPskError;

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

/// A latency histogram with fixed buckets (seconds), as Prometheus cumulates them.
#[derive(Debug, Default)]
pub struct Histogram {
    /// Samples at or below each of [`Histogram::BOUNDS`] (not cumulated; summed at render).
    buckets: [AtomicU64; Histogram::BOUNDS.len()],
    count: AtomicU64,
    /// The samples' sum in microseconds (an integer, so it can be atomic).
    sum_micros: AtomicU64,
}

impl Histogram {
    /// Upper bounds of the buckets, seconds: a cached-nothing chain read on a LAN node takes
    /// milliseconds, a proven one over the internet up to seconds.
    pub const BOUNDS: [f64; 11] = [
        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    ];

    /// Records one sample.
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        if let Some(i) = Self::BOUNDS.iter().position(|b| secs <= *b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
    }

    /// Samples recorded.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    fn render(&self, s: &mut String, name: &str, help: &str) {
        let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulated = 0;
        for (b, n) in Self::BOUNDS.iter().zip(&self.buckets) {
            cumulated += n.load(Ordering::Relaxed);
            let _ = writeln!(s, "{name}_bucket{{le=\"{b}\"}} {cumulated}");
        }
        let count = self.count();
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(
            s,
            "{name}_bucket{{le=\"+Inf\"}} {count}\n{name}_sum {sum}\n{name}_count {count}"
        );
    }
}

/// Why a TLS-PSK connection was refused before it carried SIP: the `reason` label of
/// `sipd_tls_psk_failures_total`. A fixed set, so a hostile client cannot grow the label space.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum HandshakeFailure {
    /// Bytes that are not a handshake frame or a TLS record, or a message out of place.
    Malformed,
    /// The keystore does not list the phone's key as approved (unknown, pending or revoked).
    KeyNotApproved,
    /// The keystore could not be read or its answer not proven.
    KeystoreUnavailable,
    /// A signature, MAC or ciphertext did not verify: the peer does not hold the key it names.
    Unauthentic,
    /// A replayed handshake message.
    Replay,
    /// The handshake or TLS set-up did not finish in time.
    Timeout,
    /// The peer closed the connection or aborted the handshake.
    Closed,
    /// TLS with a PSK we do not hold, or one that has expired.
    PskRefused,
    /// TLS with a stored PSK whose peer no longer has the on-chain key its handshake proved
    /// (revoked, pending, unknown or replaced since): the PSK was dropped.
    PskKeyLost,
    /// TLS itself failed (OpenSSL).
    Tls,
    /// Anything else.
    Other,
}

/// The result of one `[identity] verify` check (the label of `sipd_identity_checks_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdentityCheck {
    /// A valid PASSporT: forwarded marked `TN-Validation-Passed`.
    Passed,
    /// The number has an approved key and the call no valid PASSporT: refused or marked Failed.
    Failed,
    /// The number has no approved key on chain: nothing to verify.
    NoKey,
    /// The key could not be looked up (error or timeout).
    Unavailable,
}

impl IdentityCheck {
    /// Every result, in the order they are rendered (and indexed).
    pub const ALL: [IdentityCheck; 4] =
        [Self::Passed, Self::Failed, Self::NoKey, Self::Unavailable];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Passed => "passed",
            Self::Failed => "failed",
            Self::NoKey => "no_key",
            Self::Unavailable => "unavailable",
        }
    }
}

impl HandshakeFailure {
    /// Every reason, in the order they are rendered.
    pub const ALL: [HandshakeFailure; 11] = [
        Self::Malformed,
        Self::KeyNotApproved,
        Self::KeystoreUnavailable,
        Self::Unauthentic,
        Self::Replay,
        Self::Timeout,
        Self::Closed,
        Self::PskRefused,
        Self::PskKeyLost,
        Self::Tls,
        Self::Other,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::KeyNotApproved => "key_not_approved",
            Self::KeystoreUnavailable => "keystore_unavailable",
            Self::Unauthentic => "unauthentic",
            Self::Replay => "replay",
            Self::Timeout => "timeout",
            Self::Closed => "closed",
            Self::PskRefused => "psk_refused",
            Self::PskKeyLost => "psk_key_lost",
            Self::Tls => "tls",
            Self::Other => "other",
        }
    }

    /// The reason for `e`.
    pub fn of(e: &TlsPskError) -> Self {
        use HandshakeError as H;
        match e {
            TlsPskError::Handshake(h) => match h {
                H::Truncated { .. }
                | H::Oversized { .. }
                | H::TrailingBytes { .. }
                | H::UnknownType(_)
                | H::UnsupportedVersion(_)
                | H::Malformed { .. }
                | H::Unexpected { .. }
                | H::ProtocolNotAccepted(_)
                | H::NotForUs(_) => Self::Malformed,
                H::Directory(DirectoryError::Unavailable(_)) => Self::KeystoreUnavailable,
                H::Directory(_) => Self::KeyNotApproved,
                H::Decrypt { .. }
                | H::NonceMismatch { .. }
                | H::PeerMismatch { .. }
                | H::BadSignature
                | H::BadMac => Self::Unauthentic,
                H::Replay => Self::Replay,
                H::Timeout => Self::Timeout,
                H::PeerAborted(_) => Self::Closed,
                _ => Self::Other,
            },
            TlsPskError::Timeout(_) => Self::Timeout,
            TlsPskError::Closed(_) | TlsPskError::Io(_) => Self::Closed,
            TlsPskError::UnknownFirstByte(_)
            | TlsPskError::IdentityTooLong(_)
            | TlsPskError::HandshakeNotOffered => Self::Malformed,
            TlsPskError::PskExpired(_) | TlsPskError::UnknownPskIdentity(_) => Self::PskRefused,
            TlsPskError::PskKeyLost { .. } => Self::PskKeyLost,
            TlsPskError::Tls(_) => Self::Tls,
            _ => Self::Other,
        }
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
    /// Registrations (bindings) held, updated as they are added, removed or expire.
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
    /// REGISTERs from clients found behind NAT (or asking for outbound): bound to their flow.
    pub nat_registrations: Counter,
    /// Media relay (rtpengine) sessions open: offered and not yet deleted.
    pub media_relay_sessions: Gauge,
    /// `offer` commands sent to the media relay.
    pub media_relay_offers: Counter,
    /// `answer` commands sent to the media relay.
    pub media_relay_answers: Counter,
    /// `delete` commands sent to the media relay.
    pub media_relay_deletes: Counter,
    /// Media relay commands that failed (no answer, refused, unusable reply).
    pub media_relay_errors: Counter,
    /// Subscriber look-ups started (database reads).
    pub credential_lookups: Counter,
    /// Requests waiting for a subscriber look-up.
    pub lookups_pending: Gauge,
    /// Initial INVITEs from another domain claiming one of our subscribers' numbers (refused or
    /// marked, `[policy] foreign_caller_with_local_number`).
    pub foreign_local_number: Counter,
    /// Refused TLS-PSK connections, by [`HandshakeFailure`] (indexed as [`HandshakeFailure::ALL`]).
    pub tls_psk_failures: [Counter; HandshakeFailure::ALL.len()],
    /// Callers' PASSporTs checked by `[identity] verify`, by [`IdentityCheck`] (indexed as
    /// [`IdentityCheck::ALL`]).
    pub identity_checks: [Counter; IdentityCheck::ALL.len()],
    /// Chain reads of phones' keys (cache misses), successful or not.
    pub key_lookups: Histogram,
    /// Chain reads of phones' keys that failed (node down, proof not verified).
    pub key_lookup_errors: Counter,
    /// INVITEs forwarded and not yet answered finally (calls being set up; sipd keeps no
    /// dialog state, so established calls are not counted).
    pub invites_in_progress: Gauge,
    /// Sipd-to-sipd links closed because the peer domain's on-chain key was revoked or changed
    /// while they were up (`[peers."DOMAIN"] recheck_secs`).
    pub peer_links_key_lost: Counter,
    /// Peers' links accepted on our `tls:` listener whose re-check found the peer domain's
    /// on-chain key revoked or changed (kept apart from [`Metrics::peer_links_key_lost`]: when
    /// both sides link, both watchers may see the same revocation).
    pub peer_links_in_key_lost: Counter,
    /// Links to the other nodes of the cluster, by node.
    pub node_links: NodeLinks,
}

/// The node links (`[cluster]`) by the member at their other end: how many are open (a pair of
/// nodes keeps up to two, one dialled by each) and how many of our attempts to open one failed.
/// Node ids are `[A-Za-z0-9._-]` (checked with the configuration), safe as label values.
#[derive(Debug, Default)]
pub struct NodeLinks(Mutex<BTreeMap<String, NodeLinkCounts>>);

#[derive(Debug, Default, Clone, Copy)]
struct NodeLinkCounts {
    open: i64,
    failed: u64,
}

impl NodeLinks {
    /// Lists `node` (a configured member), so it shows with no link open before any was.
    pub fn expect(&self, node: &str) {
        self.update(node, |_| {});
    }

    /// A link with `node` opened.
    pub fn opened(&self, node: &str) {
        self.update(node, |c| c.open += 1);
    }

    /// A link with `node` closed.
    pub fn closed(&self, node: &str) {
        self.update(node, |c| c.open -= 1);
    }

    /// Our attempt to open a link to `node` failed.
    pub fn failed(&self, node: &str) {
        self.update(node, |c| c.failed += 1);
    }

    /// The links open with `node` now.
    pub fn open(&self, node: &str) -> i64 {
        self.lock().get(node).map_or(0, |c| c.open)
    }

    fn update(&self, node: &str, f: impl FnOnce(&mut NodeLinkCounts)) {
        f(self.lock().entry(node.to_owned()).or_default());
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, NodeLinkCounts>> {
        // Only counters inside: a panic elsewhere while holding it leaves them usable.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn render(&self, s: &mut String) {
        let nodes = self.lock().clone();
        let _ = writeln!(
            s,
            "# HELP sipd_node_links Open links with each cluster member.\n\
             # TYPE sipd_node_links gauge"
        );
        for (node, c) in &nodes {
            let _ = writeln!(s, "sipd_node_links{{node=\"{node}\"}} {}", c.open);
        }
        let _ = writeln!(
            s,
            "# HELP sipd_node_link_failures_total Attempts to open a link to each cluster member \
             that failed.\n# TYPE sipd_node_link_failures_total counter"
        );
        for (node, c) in &nodes {
            let _ = writeln!(
                s,
                "sipd_node_link_failures_total{{node=\"{node}\"}} {}",
                c.failed
            );
        }
    }
}

impl Metrics {
    /// Counts a refused TLS-PSK connection under its reason.
    pub fn count_handshake_failure(&self, reason: HandshakeFailure) {
        let i = HandshakeFailure::ALL.iter().position(|r| *r == reason);
        if let Some(c) = i.and_then(|i| self.tls_psk_failures.get(i)) {
            c.inc();
        }
    }

    /// Counts one `[identity] verify` check under its result.
    pub fn count_identity_check(&self, result: IdentityCheck) {
        self.identity_checks[result as usize].inc();
    }

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
            "sipd_nat_registrations_total",
            "counter",
            "REGISTERs from clients behind NAT (or asking for outbound), bound to their flow.",
            self.nat_registrations.get().to_string(),
        );
        one(
            "sipd_media_relay_sessions",
            "gauge",
            "Media relay (rtpengine) sessions open.",
            self.media_relay_sessions.get().to_string(),
        );
        for (name, help, c) in [
            ("offers", "offer", &self.media_relay_offers),
            ("answers", "answer", &self.media_relay_answers),
            ("deletes", "delete", &self.media_relay_deletes),
        ] {
            one(
                &format!("sipd_media_relay_{name}_total"),
                "counter",
                &format!("Media relay {help} commands sent."),
                c.get().to_string(),
            );
        }
        one(
            "sipd_media_relay_errors_total",
            "counter",
            "Media relay commands that failed (no answer, refused, unusable reply).",
            self.media_relay_errors.get().to_string(),
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
        one(
            "sipd_invites_in_progress",
            "gauge",
            "INVITEs forwarded and not yet answered with a final response.",
            self.invites_in_progress.get().to_string(),
        );
        one(
            "sipd_peer_links_key_lost_total",
            "counter",
            "Sipd-to-sipd links closed: the peer domain's on-chain key was revoked or changed.",
            self.peer_links_key_lost.get().to_string(),
        );
        one(
            "sipd_peer_links_in_key_lost_total",
            "counter",
            "Peers' links accepted here closed: the peer domain's on-chain key was revoked or changed.",
            self.peer_links_in_key_lost.get().to_string(),
        );
        one(
            "sipd_key_lookup_errors_total",
            "counter",
            "Chain reads of phones' keys that failed.",
            self.key_lookup_errors.get().to_string(),
        );
        let _ = writeln!(
            s,
            "# HELP sipd_build_info The running build; the value is always 1.\n\
             # TYPE sipd_build_info gauge\nsipd_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        );
        self.key_lookups.render(
            &mut s,
            "sipd_key_lookup_seconds",
            "Chain reads of phones' keys (cache misses), seconds.",
        );
        let failures = HandshakeFailure::ALL.iter().map(|r| r.as_str());
        counters_by(
            &mut s,
            ("sipd_tls_psk_failures_total", "reason"),
            "Refused TLS-PSK connections, by reason.",
            failures.zip(&self.tls_psk_failures),
        );
        let checks = IdentityCheck::ALL.iter().map(|r| r.as_str());
        counters_by(
            &mut s,
            ("sipd_identity_checks_total", "result"),
            "Callers' PASSporTs checked ([identity] verify), by result.",
            checks.zip(&self.identity_checks),
        );
        self.node_links.render(&mut s);
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

/// Renders counter `name` with one sample per `(label value, counter)`, labelled `label`.
fn counters_by<'a>(
    s: &mut String,
    (name, label): (&str, &str),
    help: &str,
    values: impl Iterator<Item = (&'a str, &'a Counter)>,
) {
    let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} counter");
    for (value, c) in values {
        let _ = writeln!(s, "{name}{{{label}=\"{value}\"}} {}", c.get());
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
