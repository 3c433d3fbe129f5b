//! The operator's side of the wallet server's admin API (`/v1/admin/…`, bearer token): an HTTP
//! client, [`AdminClient`], whose answers keep the server's JSON as sent (for `--json`) beside the
//! typed value, and the text views `chaincall wallet admin` prints ([`OnboardingTable`] and the
//! `Display` of each answer). It builds without the `server` feature.
//!
//! ```no_run
//! # async fn demo(token: zeroize::Zeroizing<String>) -> Result<(), chaincall_wallet::admin_client::AdminError> {
//! use chaincall_wallet::admin_client::{AdminClient, OnboardingTable};
//! let admin = AdminClient::new("http://127.0.0.1:8547", token)?;
//! let failed = admin.list(Some("failed")).await?;
//! print!("{}", OnboardingTable(&failed.value));
//! # Ok(()) }
//! ```
//!
//! The token travels only in the `Authorization` header, marked sensitive; [`AdminClient`]'s
//! `Debug` leaves it out and it is zeroized on drop. Text the server sends is printed with its
//! control characters replaced, so a hostile answer cannot drive the operator's terminal.

use std::fmt;
use std::time::Duration;

use alloy::transports::http::reqwest::{self, Method, Url};
use serde::de::DeserializeOwned;
use zeroize::Zeroizing;

use crate::credentials::RotateOutcome;
use crate::error::ErrorBody;
use crate::wire::{AdminOnboarding, RecoveryGrant, RevokeOutcome};

/// How long one admin request may take. A retry waits for the server's chain work (its
/// `request_wait_secs`, 30 s by default), so this leaves room beyond that.
pub const ADMIN_REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

/// An admin request that did not succeed. Each message names what to check.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AdminError {
    /// The URL given for the server is not an `http(s)://` URL.
    #[error("invalid wallet server URL {url:?}: {reason}")]
    BadUrl {
        /// The URL given.
        url: String,
        /// Why.
        reason: String,
    },
    /// Nothing answered at the URL (refused, unreachable, timed out).
    #[error(
        "the wallet server at {url} is unreachable ({reason}); is `chaincall wallet serve` running there?"
    )]
    Unreachable {
        /// The server's base URL.
        url: String,
        /// The innermost cause, e.g. `Connection refused (os error 111)`.
        reason: String,
    },
    /// 401: the token does not match the server's (or the server has none: admin API off).
    #[error(
        "the wallet server at {url} refused the admin token (401): the token read from the configuration's [admin] token_file or token_env does not match the server's (a server without a token has its admin API off)"
    )]
    Unauthorized {
        /// The server's base URL.
        url: String,
    },
    /// 404: no such onboarding or subscriber.
    #[error("{message} (404 {code})")]
    NotFound {
        /// The server's code, e.g. `onboarding_not_found`.
        code: String,
        /// The server's message.
        message: String,
    },
    /// 409: the request conflicts with where the row stands; the message says why.
    #[error("refused (409 {code}): {message}")]
    Conflict {
        /// The server's code, e.g. `not_retryable`.
        code: String,
        /// The server's message.
        message: String,
    },
    /// Any other refusal.
    #[error("the wallet server refused ({status} {code}): {message}")]
    Api {
        /// HTTP status.
        status: u16,
        /// The server's code (`http_error` when the body was not the API's JSON).
        code: String,
        /// The server's message.
        message: String,
    },
    /// A success answer that is not the expected JSON.
    #[error("unexpected answer from the wallet server at {url}: {reason}")]
    Decode {
        /// The server's base URL.
        url: String,
        /// What did not parse.
        reason: String,
    },
}

/// A successful answer: the server's JSON text exactly as received, and its typed value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer<T> {
    /// The body as the server sent it (what `--json` prints).
    pub json: String,
    /// The body parsed.
    pub value: T,
}

/// A client for one wallet server's admin API.
#[derive(Clone)]
pub struct AdminClient {
    base: Url,
    token: Zeroizing<String>,
    http: reqwest::Client,
}

impl fmt::Debug for AdminClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The token is a credential: never in a log line or a panic message.
        f.debug_struct("AdminClient")
            .field("base", &self.base.as_str())
            .finish_non_exhaustive()
    }
}

impl AdminClient {
    /// A client for the server at `base_url` (e.g. `http://127.0.0.1:8547`) with the admin
    /// `token` the server was configured with.
    pub fn new(base_url: &str, token: Zeroizing<String>) -> Result<Self, AdminError> {
        let bad = |reason: String| AdminError::BadUrl {
            url: base_url.to_owned(),
            reason,
        };
        let base = Url::parse(base_url).map_err(|e| bad(e.to_string()))?;
        if !matches!(base.scheme(), "http" | "https") || base.cannot_be_a_base() {
            return Err(bad("use http://HOST:PORT or https://HOST:PORT".into()));
        }
        let http = reqwest::Client::builder()
            .timeout(ADMIN_REQUEST_TIMEOUT)
            .build()
            .map_err(|e| bad(e.to_string()))?;
        Ok(Self { base, token, http })
    }

    /// The server's base URL, as errors name it.
    pub fn url(&self) -> &str {
        self.base.as_str().trim_end_matches('/')
    }

    /// `GET /v1/admin/onboardings[?state=S]`: up to 1000 onboardings, oldest first; `state` is
    /// `all` (the server's default), `pending` or a state's name.
    pub async fn list(
        &self,
        state: Option<&str>,
    ) -> Result<Answer<Vec<AdminOnboarding>>, AdminError> {
        let query = state.map(|s| ("state", s));
        self.call(Method::GET, &["onboardings"], query).await
    }

    /// `GET /v1/admin/onboardings/{receipt_id}`: one onboarding in full.
    pub async fn show(&self, receipt_id: &str) -> Result<Answer<AdminOnboarding>, AdminError> {
        self.call(Method::GET, &["onboardings", receipt_id], None)
            .await
    }

    /// `POST /v1/admin/onboardings/{receipt_id}/retry`: makes the onboarding due now and answers
    /// where it got; 409 for a provisioned or revoked one.
    pub async fn retry(&self, receipt_id: &str) -> Result<Answer<AdminOnboarding>, AdminError> {
        self.call(Method::POST, &["onboardings", receipt_id, "retry"], None)
            .await
    }

    /// `POST /v1/admin/subscribers/{phone}/revoke`: `revokeClient` on chain, the SIP account
    /// deleted, the onboarding marked revoked.
    pub async fn revoke(&self, phone: &str) -> Result<Answer<RevokeOutcome>, AdminError> {
        self.call(Method::POST, &["subscribers", phone, "revoke"], None)
            .await
    }

    /// `POST /v1/admin/subscribers/{phone}/credentials/rotate`: a new SIP password generation;
    /// the old password is refused from now on.
    pub async fn rotate_credentials(
        &self,
        phone: &str,
    ) -> Result<Answer<RotateOutcome>, AdminError> {
        let path = ["subscribers", phone, "credentials", "rotate"];
        self.call(Method::POST, &path, None).await
    }

    /// `POST /v1/admin/subscribers/{phone}/recovery[?ttl_secs=N]`: authorises one device
    /// recovery of `phone` (operator-assigned numbers), for `ttl` or the server's default.
    pub async fn authorize_recovery(
        &self,
        phone: &str,
        ttl: Option<Duration>,
    ) -> Result<Answer<RecoveryGrant>, AdminError> {
        let secs = ttl.map(|t| t.as_secs().to_string());
        let query = secs.as_deref().map(|s| ("ttl_secs", s));
        self.call(Method::POST, &["subscribers", phone, "recovery"], query)
            .await
    }

    /// One request to `/v1/admin/{segments…}`: each segment is percent-encoded, so a receipt id
    /// or number holding `/` or `?` stays one path segment.
    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        segments: &[&str],
        query: Option<(&str, &str)>,
    ) -> Result<Answer<T>, AdminError> {
        let mut url = self.base.clone();
        url.path_segments_mut()
            // `new` refused URLs that cannot be a base, the only case this fails.
            .map_err(|()| AdminError::BadUrl {
                url: self.url().to_owned(),
                reason: "cannot hold a path".into(),
            })?
            .pop_if_empty()
            .extend(["v1", "admin"])
            .extend(segments);
        if let Some((key, value)) = query {
            url.query_pairs_mut().append_pair(key, value);
        }
        let response = self
            .http
            .request(method, url)
            .bearer_auth(self.token.as_str())
            .send()
            .await
            .map_err(|e| self.unreachable(&e))?;
        let status = response.status().as_u16();
        let body = response.text().await.map_err(|e| self.unreachable(&e))?;
        if (200..300).contains(&status) {
            let value = serde_json::from_str(&body).map_err(|e| AdminError::Decode {
                url: self.url().to_owned(),
                reason: e.to_string(),
            })?;
            return Ok(Answer { json: body, value });
        }
        let (code, message) = match serde_json::from_str::<ErrorBody>(&body) {
            Ok(b) => (b.error.code, b.error.message),
            Err(_) => ("http_error".into(), body.chars().take(200).collect()),
        };
        Err(match status {
            401 => AdminError::Unauthorized {
                url: self.url().to_owned(),
            },
            404 => AdminError::NotFound { code, message },
            409 => AdminError::Conflict { code, message },
            _ => AdminError::Api {
                status,
                code,
                message,
            },
        })
    }

    fn unreachable(&self, e: &reqwest::Error) -> AdminError {
        // reqwest's own message repeats the URL; its innermost cause says what happened.
        let mut cause: &dyn std::error::Error = e;
        while let Some(next) = cause.source() {
            cause = next;
        }
        let reason = if e.is_timeout() {
            format!("no answer within {}s", ADMIN_REQUEST_TIMEOUT.as_secs())
        } else {
            cause.to_string()
        };
        AdminError::Unreachable {
            url: self.url().to_owned(),
            reason,
        }
    }
}

/// Text from the server, safe for a terminal: control characters (escape sequences, line
/// breaks) become `?`; absent or empty text is `-`.
fn clean(text: Option<&str>) -> String {
    match text {
        Some(t) if !t.is_empty() => t
            .chars()
            .map(|c| if c.is_control() { '?' } else { c })
            .collect(),
        _ => "-".into(),
    }
}

/// Milliseconds since the epoch as an RFC 3339 UTC time to the second; `-` for 0 and below
/// (not recorded).
fn utc(ms: i64) -> String {
    if ms <= 0 {
        return "-".into();
    }
    chaincall_mikey::inspect::rfc3339(ms / 1000, None)
}

/// The error of an onboarding as one cell: its failure code when it failed for good, else the
/// code of the last transient error.
fn error_code(row: &AdminOnboarding) -> Option<&str> {
    row.status
        .failure_code
        .as_deref()
        .or(row.status.last_error_code.as_deref())
}

/// Onboardings as a table, one a line: receipt id, number, state, attempts, last error code,
/// last change (UTC). What `chaincall wallet admin list` prints.
#[derive(Debug, Clone, Copy)]
pub struct OnboardingTable<'a>(pub &'a [AdminOnboarding]);

impl fmt::Display for OnboardingTable<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return writeln!(f, "no onboardings");
        }
        let head = [
            "RECEIPT ID",
            "PHONE",
            "STATE",
            "ATTEMPTS",
            "LAST ERROR",
            "UPDATED",
        ];
        let rows: Vec<[String; 6]> = self
            .0
            .iter()
            .map(|r| {
                [
                    clean(Some(&r.status.receipt_id)),
                    clean(Some(&r.phone)),
                    r.status.state.to_string(),
                    r.attempts.to_string(),
                    clean(error_code(r)),
                    utc(r.updated_at),
                ]
            })
            .collect();
        let mut width = head.map(str::len);
        for row in &rows {
            for (w, cell) in width.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let mut line = |cells: &[&str]| {
            let mut text = String::new();
            for (i, (cell, w)) in cells.iter().zip(width).enumerate() {
                // The last column is not padded: no trailing blanks.
                if i + 1 == cells.len() {
                    text.push_str(cell);
                } else {
                    text.push_str(&format!("{cell:<w$}  "));
                }
            }
            writeln!(f, "{text}")
        };
        line(&head)?;
        for row in &rows {
            line(&row.each_ref().map(String::as_str))?;
        }
        Ok(())
    }
}

/// One onboarding in full, a field a line: what `chaincall wallet admin show` prints.
impl fmt::Display for AdminOnboarding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.status;
        let opt = |v: &Option<String>| clean(v.as_deref());
        let fields = [
            ("receipt id", clean(Some(&s.receipt_id))),
            ("phone", clean(Some(&self.phone))),
            (
                "state",
                format!("{} (next: {})", s.state, clean(Some(&s.next))),
            ),
            ("wallet", clean(Some(&s.wallet))),
            ("public key", clean(Some(&self.public_key))),
            ("funded wei", opt(&s.fund_amount_wei)),
            ("funding tx", opt(&s.fund_tx_hash)),
            ("approval tx", opt(&s.approve_tx_hash)),
            ("attempts", self.attempts.to_string()),
            ("last error", with_code(&s.last_error_code, &s.last_error)),
            ("failure", with_code(&s.failure_code, &self.failure_message)),
            ("created", utc(self.created_at)),
            ("updated", utc(self.updated_at)),
            ("provisioned", utc(self.provisioned_at.unwrap_or(0))),
        ];
        for (name, value) in fields {
            writeln!(f, "{name:<12} {value}")?;
        }
        Ok(())
    }
}

/// `code: message`, either alone, or `-`.
fn with_code(code: &Option<String>, message: &Option<String>) -> String {
    match (code.as_deref(), message.as_deref()) {
        (Some(c), Some(m)) => format!("{}: {}", clean(Some(c)), clean(Some(m))),
        (c, m) => clean(c.or(m)),
    }
}

/// What `chaincall wallet admin revoke` prints.
impl fmt::Display for RevokeOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let chain = match &self.revoke_tx_hash {
            Some(tx) => format!("revokeClient {}", clean(Some(tx))),
            None => "no approved or pending key on chain".into(),
        };
        let sip = if self.sip_row_deleted {
            "SIP account deleted"
        } else {
            "no SIP account"
        };
        writeln!(f, "revoked {}: {chain}; {sip}", clean(Some(&self.phone)))
    }
}

/// What `chaincall wallet admin rotate-credentials` prints.
impl fmt::Display for RotateOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "rotated the SIP password of {} (generation {}); the phone fetches the new one at its next `chaincall phone register`",
            clean(Some(&self.phone)),
            self.generation
        )
    }
}

/// What `chaincall wallet admin authorize-recovery` prints.
impl fmt::Display for RecoveryGrant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "one device recovery of {} authorised until {} (it still needs the number's original receipt)",
            clean(Some(&self.phone)),
            utc(self.expires_at)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{OnboardingStatus, State};

    fn row(id: &str, phone: &str, state: State) -> AdminOnboarding {
        AdminOnboarding {
            status: OnboardingStatus {
                receipt_id: id.into(),
                state,
                wallet: "0x70997970C51812dc3A010C7d01b50e0d17dc79C8".into(),
                fund_amount_wei: None,
                fund_tx_hash: None,
                approve_tx_hash: None,
                next: "wait".into(),
                last_error: None,
                last_error_code: None,
                approval_queued: false,
                failure_code: None,
                phone: Some(phone.into()),
            },
            phone: phone.into(),
            public_key: "02ab".into(),
            failure_message: None,
            attempts: 0,
            created_at: 1_700_000_000_000,
            updated_at: 1_700_000_000_000,
            provisioned_at: None,
        }
    }

    #[test]
    fn table_aligns_columns_and_shows_the_error_code_and_utc_time() {
        let mut failed = row("GPA.1234-5678-9012-34567", "+15550100002", State::Failed);
        failed.status.failure_code = Some("number_taken".into());
        failed.attempts = 3;
        failed.updated_at = 1_780_000_000_123;
        let mut waiting = row("GPA.1", "+15550100001", State::Funded);
        waiting.status.last_error_code = Some("chain_unavailable".into());
        let text = OnboardingTable(&[waiting, failed]).to_string();
        let want = "\
RECEIPT ID                PHONE         STATE   ATTEMPTS  LAST ERROR         UPDATED
GPA.1                     +15550100001  funded  0         chain_unavailable  2023-11-14T22:13:20Z
GPA.1234-5678-9012-34567  +15550100002  failed  3         number_taken       2026-05-28T20:26:40Z
";
        assert_eq!(text, want);
        assert_eq!(OnboardingTable(&[]).to_string(), "no onboardings\n");
    }

    #[test]
    fn hostile_server_text_cannot_drive_the_terminal_or_break_the_table() {
        let mut evil = row("id\u{1b}[2J\nfake", "+1\r555", State::Received);
        evil.status.last_error_code = Some("\u{7}bell".into());
        evil.updated_at = i64::MAX;
        let text = OnboardingTable(&[evil.clone()]).to_string();
        assert_eq!(text.lines().count(), 2, "{text}");
        assert!(
            !text.chars().any(|c| c.is_control() && c != '\n'),
            "{text:?}"
        );
        assert!(
            text.contains("id?[2J?fake") && text.contains("?bell"),
            "{text}"
        );
        evil.created_at = i64::MIN;
        let shown = evil.to_string();
        assert!(
            !shown.chars().any(|c| c.is_control() && c != '\n'),
            "{shown:?}"
        );
    }

    #[test]
    fn times_are_utc_to_the_second_and_unrecorded_ones_a_dash() {
        assert_eq!(utc(1_796_601_599_999), "2026-12-06T23:59:59Z");
        assert_eq!((utc(0), utc(-5)), ("-".to_string(), "-".to_string()));
    }

    #[test]
    fn show_prints_every_field_with_codes_and_messages() {
        let mut r = row("GPA.7", "+15550100007", State::Failed);
        r.status.failure_code = Some("pending_key_mismatch".into());
        r.failure_message = Some("the pending keystore entry holds another key".into());
        r.provisioned_at = None;
        let text = r.to_string();
        assert!(
            text.starts_with("receipt id   GPA.7\nphone        +15550100007\n"),
            "{text}"
        );
        assert!(
            text.contains("state        failed (next: wait)\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "failure      pending_key_mismatch: the pending keystore entry holds another key\n"
            ),
            "{text}"
        );
        assert!(text.contains("provisioned  -\n"), "{text}");
        assert!(
            text.contains("created      2023-11-14T22:13:20Z\n"),
            "{text}"
        );
    }

    #[test]
    fn the_token_stays_out_of_debug_and_bad_urls_are_refused() {
        let client = AdminClient::new(
            "http://127.0.0.1:8547/",
            Zeroizing::new("s3cret-token".into()),
        )
        .unwrap();
        let debug = format!("{client:?}");
        assert!(!debug.contains("s3cret"), "{debug}");
        assert_eq!(client.url(), "http://127.0.0.1:8547");
        for bad in ["127.0.0.1:8547", "ftp://host/", "mailto:a@b", ""] {
            let e = AdminClient::new(bad, Zeroizing::new("t".into())).unwrap_err();
            assert!(matches!(e, AdminError::BadUrl { .. }), "{bad}: {e}");
        }
    }
}
