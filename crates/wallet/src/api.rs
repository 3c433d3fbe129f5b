//! The HTTP API (axum): routes, per-source rate limits, the admin bearer token, JSON errors.
//!
//! | method | path | body | answer |
//! | --- | --- | --- | --- |
//! | POST | `/v1/onboard` | `{"sealed": base64}` | 200/202 `OnboardingStatus` |
//! | POST | `/v1/approve` | `{"sealed": base64}` | 200/202 `OnboardingStatus` |
//! | POST | `/v1/number/code` | `{"sealed": base64}` | 202 `{"sent": true}`: a one-time code to the number (`sms_code` verifier) |
//! | POST | `/v1/recover` | `{"sealed": base64}` | 200/202 `OnboardingStatus`: device recovery (docs/onboarding.md) |
//! | GET | `/v1/status/{receipt_id}` | — | `OnboardingStatus`: state, next step, error codes (no wallet, tx) |
//! | GET | `/v1/server` | — | server wallet, contract, identity |
//! | GET | `/v1/openapi.json` | — | OpenAPI 3.0 description |
//! | GET | `/healthz`, `/readyz`, `/metrics` | — | liveness, readiness, Prometheus text ([`crate::health`]) |
//! | GET | `/v1/admin/onboardings?state=all\|pending\|<state>` | — | list (default `all`, up to 1000, oldest first) |
//! | GET | `/v1/admin/onboardings/{receipt_id}` | — | the row in full; 404 `onboarding_not_found` |
//! | POST | `/v1/admin/onboardings/{receipt_id}/retry` | — | the row; 409 `not_retryable` when provisioned or revoked |
//! | POST | `/v1/credentials` | [`CredentialsRequest`] signed by the number's on-chain key | [`CredentialsAnswer`](crate::credentials::CredentialsAnswer): the SIP password, sealed to that key |
//! | POST | `/v1/admin/subscribers/{phone}/revoke` | — | [`RevokeOutcome`](crate::service::RevokeOutcome) |
//! | POST | `/v1/admin/subscribers/{phone}/credentials/rotate` | — | [`RotateOutcome`](crate::credentials::RotateOutcome) |
//! | POST | `/v1/admin/subscribers/{phone}/recovery?ttl_secs=N` | — | [`RecoveryGrant`](crate::service::RecoveryGrant): the operator authorises one recovery |
//!
//! Errors are `{"error": {"code": "...", "message": "..."}}` with the status of
//! [`ApiError::status`]. Logs name receipts by order id and wallets by address; they never contain
//! payloads, receipts, tokens, passwords or keys.

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::Json;
use axum::Router;
use axum::extract::{ConnectInfo, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use lru::LruCache;
use serde::Deserialize;
use subtle::ConstantTimeEq;

use crate::chain::ServerChain;
use crate::credentials::CredentialsRequest;
use crate::error::ApiError;
use crate::payload::SealedRequest;
use crate::service::Service;

/// The OpenAPI description served at `/v1/openapi.json`.
pub const OPENAPI_JSON: &str = include_str!("../openapi.json");

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (status, Json(self.body())).into_response();
        if matches!(self, ApiError::RateLimited | ApiError::ChainUnavailable) {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

/// Token buckets per source address, at most `capacity` of them: a flood from many addresses
/// evicts the least recently seen bucket in O(1) (an evicted source merely starts again with a
/// full bucket, which it would have after `burst / rate` seconds anyway).
#[derive(Debug)]
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    buckets: Mutex<LruCache<IpAddr, (f64, Instant)>>,
}

/// How many source addresses [`RateLimiter::new`] remembers.
pub const RATE_LIMITER_CAPACITY: usize = 100_000;

impl RateLimiter {
    /// `rate` tokens per second, up to `burst`, for up to [`RATE_LIMITER_CAPACITY`] sources.
    pub fn new(rate: f64, burst: f64) -> Self {
        Self::with_capacity(rate, burst, RATE_LIMITER_CAPACITY)
    }

    /// As [`RateLimiter::new`], remembering at most `capacity` sources (at least one).
    pub fn with_capacity(rate: f64, burst: f64, capacity: usize) -> Self {
        let capacity = NonZeroUsize::new(capacity).unwrap_or(NonZeroUsize::MIN);
        Self {
            rate,
            burst,
            buckets: Mutex::new(LruCache::new(capacity)),
        }
    }

    /// Takes a token for `ip`; false when its bucket is empty.
    pub fn allow(&self, ip: IpAddr, now: Instant) -> bool {
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        // `get_or_insert_mut` evicts the least recently used bucket when full: O(1).
        let (tokens, at) = buckets.get_or_insert_mut(ip, || (self.burst, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * self.rate).min(self.burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// How many sources have a bucket now (never more than the capacity).
    pub fn tracked(&self) -> usize {
        self.buckets.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

/// Router state.
pub struct AppState<C: ServerChain> {
    /// The engine.
    pub service: Arc<Service<C>>,
    /// Per-source limits.
    pub limiter: RateLimiter,
}

impl<C: ServerChain> std::fmt::Debug for AppState<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState").finish_non_exhaustive()
    }
}

type Shared<C> = Arc<AppState<C>>;

async fn rate_limit<C: ServerChain>(
    State(state): State<Shared<C>>,
    request: Request,
    next: Next,
) -> Response {
    let ip = observed_ip(&request);
    if !state.limiter.allow(ip, Instant::now()) {
        tracing::warn!(%ip, "rate limited");
        return ApiError::RateLimited.into_response();
    }
    next.run(request).await
}

fn check_admin<C: ServerChain>(state: &AppState<C>, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(expected) = state.service.settings().admin_token.as_deref() else {
        return Err(ApiError::Unauthorized);
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if given.len() == expected.len() && bool::from(given.as_bytes().ct_eq(expected.as_bytes())) {
        Ok(())
    } else {
        Err(ApiError::Unauthorized)
    }
}

fn sealed_body(
    body: Result<Json<SealedRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<SealedRequest, ApiError> {
    body.map(|Json(b)| b)
        .map_err(|e| ApiError::BadRequest(e.body_text()))
}

fn with_status<T: serde::Serialize>(status: u16, body: T) -> Response {
    (
        StatusCode::from_u16(status).unwrap_or(StatusCode::OK),
        Json(body),
    )
        .into_response()
}

/// The client's address as the server observed it (the TCP peer), never a header.
fn observed_ip(request: &Request) -> IpAddr {
    request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
        .unwrap_or(IpAddr::from([127, 0, 0, 1]))
}

async fn onboard<C: ServerChain>(
    State(state): State<Shared<C>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    body: Result<Json<SealedRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let sealed = sealed_body(body)?;
    let (status, view) = state.service.onboard(&sealed, peer.ip()).await?;
    Ok(with_status(status, view))
}

async fn number_code<C: ServerChain>(
    State(state): State<Shared<C>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    body: Result<Json<SealedRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let sealed = sealed_body(body)?;
    state.service.request_code(&sealed, peer.ip()).await?;
    Ok(with_status(202, serde_json::json!({ "sent": true })))
}

async fn approve<C: ServerChain>(
    State(state): State<Shared<C>>,
    body: Result<Json<SealedRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let sealed = sealed_body(body)?;
    let (status, view) = state.service.approve(&sealed).await?;
    Ok(with_status(status, view))
}

async fn recover<C: ServerChain>(
    State(state): State<Shared<C>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    body: Result<Json<SealedRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let sealed = sealed_body(body)?;
    let (status, view) = state.service.recover(&sealed, peer.ip()).await?;
    Ok(with_status(status, view))
}

async fn status<C: ServerChain>(
    State(state): State<Shared<C>>,
    Path(receipt_id): Path<String>,
) -> Result<Response, ApiError> {
    Ok(with_status(200, state.service.status(&receipt_id).await?))
}

async fn server_info<C: ServerChain>(State(state): State<Shared<C>>) -> Response {
    let s = &state.service;
    with_status(
        200,
        serde_json::json!({
            "server_wallet": s.server_address().to_checksum(None),
            "contract": s.settings().contract.to_checksum(None),
            "chain_id": s.chain().chain_id(),
            "identity_key_type": s.identity_public().tag(),
            "identity_key": hex::encode(s.identity_public().to_bytes()),
            "sip_domain": s.settings().sip_domain,
            "add_client_gas": s.settings().add_client_gas,
            "number_verifier": s.numbers().kind(),
        }),
    )
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI_JSON).into_response()
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    state: Option<String>,
}

async fn admin_list<C: ServerChain>(
    State(state): State<Shared<C>>,
    headers: HeaderMap,
    Query(q): Query<ListQuery>,
) -> Result<Response, ApiError> {
    check_admin(&state, &headers)?;
    // Without `state` the operator sees every onboarding (as `state=all`): an empty list must
    // mean there are none, not that all of them are past `pending`.
    let which = q.state.as_deref().unwrap_or("all");
    Ok(with_status(200, state.service.admin_list(which).await?))
}

async fn admin_show<C: ServerChain>(
    State(state): State<Shared<C>>,
    headers: HeaderMap,
    Path(receipt_id): Path<String>,
) -> Result<Response, ApiError> {
    check_admin(&state, &headers)?;
    Ok(with_status(
        200,
        state.service.admin_show(&receipt_id).await?,
    ))
}

async fn admin_retry<C: ServerChain>(
    State(state): State<Shared<C>>,
    headers: HeaderMap,
    Path(receipt_id): Path<String>,
) -> Result<Response, ApiError> {
    check_admin(&state, &headers)?;
    Ok(with_status(
        200,
        state.service.admin_retry(&receipt_id).await?,
    ))
}

async fn admin_revoke<C: ServerChain>(
    State(state): State<Shared<C>>,
    headers: HeaderMap,
    Path(phone): Path<String>,
) -> Result<Response, ApiError> {
    check_admin(&state, &headers)?;
    Ok(with_status(200, state.service.admin_revoke(&phone).await?))
}

async fn credentials<C: ServerChain>(
    State(state): State<Shared<C>>,
    body: Result<Json<CredentialsRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(request) = body.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    Ok(with_status(
        200,
        state.service.sip_credentials(&request).await?,
    ))
}

async fn admin_rotate<C: ServerChain>(
    State(state): State<Shared<C>>,
    headers: HeaderMap,
    Path(phone): Path<String>,
) -> Result<Response, ApiError> {
    check_admin(&state, &headers)?;
    Ok(with_status(
        200,
        state.service.admin_rotate_sip_password(&phone).await?,
    ))
}

/// The optional body of `POST /v1/admin/subscribers/{phone}/recovery`.
#[derive(Debug, Default, Deserialize)]
struct RecoveryQuery {
    /// How long the authorisation holds, seconds.
    ttl_secs: Option<u64>,
}

async fn admin_recovery<C: ServerChain>(
    State(state): State<Shared<C>>,
    headers: HeaderMap,
    Path(phone): Path<String>,
    Query(q): Query<RecoveryQuery>,
) -> Result<Response, ApiError> {
    check_admin(&state, &headers)?;
    let ttl = q.ttl_secs.map(std::time::Duration::from_secs);
    Ok(with_status(
        200,
        state.service.admin_authorize_recovery(&phone, ttl).await?,
    ))
}

async fn not_found() -> ApiError {
    ApiError::NotFound
}

/// The router. Serve it with `into_make_service_with_connect_info::<SocketAddr>()` so rate limits
/// see source addresses.
pub fn router<C: ServerChain>(state: Arc<AppState<C>>, max_body_bytes: usize) -> Router {
    Router::new()
        .route("/healthz", get(crate::health::healthz))
        .route("/readyz", get(crate::health::readyz::<C>))
        .route("/metrics", get(crate::health::metrics::<C>))
        .route("/v1/onboard", post(onboard::<C>))
        .route("/v1/approve", post(approve::<C>))
        .route("/v1/number/code", post(number_code::<C>))
        .route("/v1/recover", post(recover::<C>))
        .route("/v1/status/{receipt_id}", get(status::<C>))
        .route("/v1/server", get(server_info::<C>))
        .route("/v1/credentials", post(credentials::<C>))
        .route("/v1/openapi.json", get(openapi))
        .route("/v1/admin/onboardings", get(admin_list::<C>))
        .route("/v1/admin/onboardings/{receipt_id}", get(admin_show::<C>))
        .route(
            "/v1/admin/onboardings/{receipt_id}/retry",
            post(admin_retry::<C>),
        )
        .route(
            "/v1/admin/subscribers/{phone}/revoke",
            post(admin_revoke::<C>),
        )
        .route(
            "/v1/admin/subscribers/{phone}/credentials/rotate",
            post(admin_rotate::<C>),
        )
        .route(
            "/v1/admin/subscribers/{phone}/recovery",
            post(admin_recovery::<C>),
        )
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            rate_limit::<C>,
        ))
        .layer(axum::extract::DefaultBodyLimit::max(max_body_bytes))
        .with_state(state)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn bucket_refills_at_rate() {
        let l = RateLimiter::new(2.0, 3.0);
        let ip = IpAddr::from([127, 0, 0, 1]);
        let t0 = Instant::now();
        assert!(l.allow(ip, t0));
        assert!(l.allow(ip, t0));
        assert!(l.allow(ip, t0));
        assert!(!l.allow(ip, t0));
        assert!(l.allow(ip, t0 + Duration::from_millis(500)));
        assert!(!l.allow(ip, t0 + Duration::from_millis(500)));
        // Another source has its own bucket.
        assert!(l.allow(IpAddr::from([127, 0, 0, 2]), t0));
    }

    #[test]
    fn limiter_memory_is_bounded_and_keeps_recent_sources() {
        let l = RateLimiter::with_capacity(1.0, 2.0, 1000);
        let t0 = Instant::now();
        let victim = IpAddr::from([10, 0, 0, 1]);
        assert!(l.allow(victim, t0));
        assert!(l.allow(victim, t0));
        assert!(!l.allow(victim, t0), "the victim's bucket is empty");
        // A flood from 50,000 addresses: memory stays at the capacity.
        for i in 0..50_000u32 {
            let ip = IpAddr::from((0x0b00_0000 + i).to_be_bytes());
            assert!(l.allow(ip, t0));
        }
        assert_eq!(l.tracked(), 1000);
        // A source seen within the last `capacity` addresses keeps its (empty) bucket.
        let recent = IpAddr::from((0x0b00_0000u32 + 49_999).to_be_bytes());
        assert!(l.allow(recent, t0));
        assert!(!l.allow(recent, t0));
    }

    #[test]
    fn openapi_is_json_and_lists_the_routes() {
        let v: serde_json::Value = serde_json::from_str(OPENAPI_JSON).unwrap();
        for p in [
            "/v1/onboard",
            "/v1/approve",
            "/v1/number/code",
            "/v1/status/{receipt_id}",
            "/v1/admin/onboardings",
            "/v1/admin/onboardings/{receipt_id}",
            "/v1/admin/onboardings/{receipt_id}/retry",
            "/v1/admin/subscribers/{phone}/revoke",
            "/v1/credentials",
            "/v1/admin/subscribers/{phone}/credentials/rotate",
            "/v1/recover",
            "/v1/admin/subscribers/{phone}/recovery",
        ] {
            assert!(v["paths"][p].is_object(), "{p} missing");
        }
    }
}
