//! Operator endpoints on the API listener: `/healthz` (liveness), `/readyz` (readiness) and
//! `/metrics` (Prometheus text format). They are unauthenticated, like sipd's: the operator keeps
//! them private or behind the proxy (docs/onboarding.md). Answers never contain the RPC URL,
//! tokens or database URLs.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::api::AppState;
use crate::chain::ServerChain;
use crate::db::now_ms;

/// How long `/readyz` waits for the database or the chain before calling it unready: a probe
/// must answer even when a peer hangs.
const PROBE_WAIT: Duration = Duration::from_secs(5);

/// Why the server is not ready: the fixed sentences `/readyz` answers with 503.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotReady {
    /// The state database did not answer.
    Database,
    /// The chain did not answer.
    Chain,
    /// The keystore's owner is another wallet: approvals would fail.
    NotOwner,
}

impl NotReady {
    /// The sentence `/readyz` answers.
    pub fn sentence(self) -> &'static str {
        match self {
            Self::Database => "the state database does not answer",
            Self::Chain => "the chain does not answer",
            Self::NotOwner => "the server's wallet does not own the keystore",
        }
    }
}

/// Checks the state database, the chain, and that the server's wallet owns the keystore.
pub async fn readiness<C: ServerChain>(service: &crate::Service<C>) -> Result<(), NotReady> {
    match tokio::time::timeout(PROBE_WAIT, service.db().ping()).await {
        Ok(Ok(())) => {}
        _ => return Err(NotReady::Database),
    }
    let contract = service.settings().contract;
    match tokio::time::timeout(PROBE_WAIT, service.chain().owner(contract)).await {
        Ok(Ok(owner)) if owner == service.server_address() => Ok(()),
        Ok(Ok(_)) => Err(NotReady::NotOwner),
        _ => Err(NotReady::Chain),
    }
}

/// `GET /healthz`: the HTTP loop answers.
pub(crate) async fn healthz() -> Response {
    (StatusCode::OK, "ok\n").into_response()
}

/// `GET /readyz`: 200 `ready`, or 503 with one [`NotReady`] sentence.
pub(crate) async fn readyz<C: ServerChain>(State(state): State<Arc<AppState<C>>>) -> Response {
    match readiness(&state.service).await {
        Ok(()) => (StatusCode::OK, "ready\n").into_response(),
        Err(why) => {
            tracing::warn!(reason = why.sentence(), "not ready");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                format!("{}\n", why.sentence()),
            )
                .into_response()
        }
    }
}

/// `GET /metrics`: onboardings by state, fundings and approvals signed, the worker's queue depth
/// (read from the state database, so they survive restarts), chain errors since start and build
/// info.
pub(crate) async fn metrics<C: ServerChain>(State(state): State<Arc<AppState<C>>>) -> Response {
    let db = state.service.db();
    let (counts, due) = match (db.counts().await, db.due_count(now_ms()).await) {
        (Ok(c), Ok(d)) => (c, d),
        (Err(e), _) | (_, Err(e)) => {
            tracing::warn!(error = %e, "metrics: the state database failed");
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                "the state database does not answer\n",
            )
                .into_response();
        }
    };
    let mut out = String::new();
    family(
        &mut out,
        "chaincall_wallet_onboardings",
        "gauge",
        "Onboardings by state.",
    );
    for s in crate::wire::State::ALL {
        let n = counts
            .by_state
            .iter()
            .find(|(name, _)| name == s.as_str())
            .map_or(0, |(_, n)| *n);
        let _ = writeln!(
            out,
            "chaincall_wallet_onboardings{{state=\"{}\"}} {n}",
            s.as_str()
        );
    }
    let single = [
        (
            "chaincall_wallet_fundings_sent_total",
            "counter",
            "Funding transactions signed and sent.",
            counts.fundings,
        ),
        (
            "chaincall_wallet_approvals_sent_total",
            "counter",
            "Approval transactions signed and sent (fee replacements included).",
            counts.approvals,
        ),
        (
            "chaincall_wallet_chain_errors_total",
            "counter",
            "Chain calls that failed and deferred a step, since start.",
            i64::try_from(state.service.chain_errors()).unwrap_or(i64::MAX),
        ),
        (
            "chaincall_wallet_queue_due",
            "gauge",
            "Onboardings the background worker should drive now.",
            due,
        ),
    ];
    for (name, kind, help, value) in single {
        family(&mut out, name, kind, help);
        let _ = writeln!(out, "{name} {value}");
    }
    family(
        &mut out,
        "chaincall_wallet_build_info",
        "gauge",
        "Build information (always 1).",
    );
    let _ = writeln!(
        out,
        "chaincall_wallet_build_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    );
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}

/// A metric family's `# HELP` and `# TYPE` lines.
fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}
