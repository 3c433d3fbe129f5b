//! One-time codes to the number, by SMS: what the subscriber proves is that they received a
//! message at the number within the code's lifetime.
//!
//! - A code is `digits` decimal digits drawn uniformly from the OS CSPRNG (rejection sampling).
//! - It is stored only as HMAC-SHA-256 under a key derived from the server's identity key, over
//!   the number, the onboarding's [`binding`](super::binding) (identity key, wallet, receipt) and
//!   the code; so a code is good for one number *and* one onboarding, and the database alone does
//!   not reveal codes.
//! - It expires after `ttl_secs`, is single-use, survives `max_attempts` wrong tries (counted by a
//!   conditional update, so concurrent guesses cannot exceed it), and is compared in constant
//!   time (`subtle`).
//! - Sending is rate-limited per number and per client address as the server observed it.
//! - The code is never logged. If the SMS centre is down, nothing is recorded or counted: the
//!   request fails with `sms_unavailable` and can simply be repeated.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use chaincall_identity::Randomness;

use chaincall_identity::{IdentityKey, PhoneNumber};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use sqlx::Row;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use super::{CodeRequest, NumberClaim, NumberVerifier, SmsCodeConfig};
use crate::db::{Db, DbError};
use crate::error::{ApiError, SmppError};

/// A boxed future, as the verifier and gateway traits return (object-safe async).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Sends a text message (the SMPP client implements it; tests and operators may bring others).
pub trait SmsGateway: Send + Sync + std::fmt::Debug {
    /// Sends `text` to `to`; the SMSC's message id.
    fn send<'a>(
        &'a self,
        to: &'a PhoneNumber,
        text: &'a str,
    ) -> BoxFuture<'a, Result<String, SmppError>>;
}

/// Limits of the code verifier.
#[derive(Debug, Clone, Copy)]
pub struct CodePolicy {
    /// Digits per code.
    pub digits: u32,
    /// Lifetime of a code.
    pub ttl: Duration,
    /// Wrong tries per code.
    pub max_attempts: u32,
    /// Codes per number per hour.
    pub per_number_per_hour: u32,
    /// Codes per client address per hour.
    pub per_address_per_hour: u32,
}

impl From<&SmsCodeConfig> for CodePolicy {
    fn from(c: &SmsCodeConfig) -> Self {
        Self {
            digits: c.digits,
            ttl: c.ttl,
            max_attempts: c.max_attempts,
            per_number_per_hour: c.codes_per_number_per_hour,
            per_address_per_hour: c.codes_per_address_per_hour,
        }
    }
}

/// The MAC key for codes, derived from the server's identity key (HMAC-SHA-256 as a PRF with a
/// fixed label), so it is stable across restarts without a second secret file.
pub fn mac_key(identity: &IdentityKey) -> Zeroizing<[u8; 32]> {
    let secret = identity.dangerous_secret_bytes();
    // HMAC accepts keys of any length.
    let mut mac =
        <Hmac<Sha256> as Mac>::new_from_slice(&secret).expect("HMAC takes any key length");
    mac.update(b"chaincall wallet v1 one-time code MAC key");
    Zeroizing::new(mac.finalize().into_bytes().into())
}

/// A uniformly random code of `digits` digits from `randomness`.
fn random_code(digits: u32, randomness: &Randomness) -> Zeroizing<String> {
    let bound = 10u64.pow(digits);
    // Reject the top partial block so every code is equally likely.
    let zone = u64::MAX - u64::MAX % bound;
    let n = loop {
        let r = u64::from_be_bytes(randomness.bytes());
        if r < zone {
            break r % bound;
        }
    };
    Zeroizing::new(format!("{n:0width$}", width = digits as usize))
}

const HOUR_MS: i64 = 3_600_000;

/// The `sms_code` verifier over a gateway.
#[derive(Debug)]
pub struct SmsCodes<G> {
    db: Db,
    gateway: G,
    policy: CodePolicy,
    key: Zeroizing<[u8; 32]>,
    randomness: Randomness,
}

fn internal(e: impl Into<DbError>) -> ApiError {
    let e: DbError = e.into();
    tracing::error!(
        error = &e as &dyn std::error::Error,
        "one-time code database failure"
    );
    ApiError::Internal
}

impl<G: SmsGateway> SmsCodes<G> {
    /// Codes sent through `gateway`, stored in `db`, MACed under `key` (see [`mac_key`]).
    /// A verifier sending through `gateway`, keeping its state in `db`, MACing codes under
    /// `key` and drawing codes from `randomness` (the OS CSPRNG in production).
    pub fn new(
        db: Db,
        gateway: G,
        policy: CodePolicy,
        key: Zeroizing<[u8; 32]>,
        randomness: Randomness,
    ) -> Self {
        Self {
            db,
            gateway,
            policy,
            key,
            randomness,
        }
    }

    fn mac(&self, phone: &PhoneNumber, binding: &[u8; 32], code: &str) -> [u8; 32] {
        // HMAC accepts keys of any length.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&*self.key).expect("any key length");
        mac.update(phone.as_str().as_bytes());
        mac.update(&[0]);
        mac.update(binding);
        mac.update(code.as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// Codes sent in the window to `phone` and from `ip`.
    async fn sent_since(&self, phone: &str, ip: &str, since: i64) -> Result<(i64, i64), ApiError> {
        let row = sqlx::query(
            "SELECT \
             (SELECT COUNT(*) FROM code_sent WHERE phone = $1 AND sent_at > $3), \
             (SELECT COUNT(*) FROM code_sent WHERE client_ip = $2 AND sent_at > $3)",
        )
        .bind(phone)
        .bind(ip)
        .bind(since)
        .fetch_one(self.db.pool())
        .await
        .map_err(internal)?;
        Ok((
            row.try_get::<i64, _>(0).map_err(internal)?,
            row.try_get::<i64, _>(1).map_err(internal)?,
        ))
    }

    async fn send(&self, req: CodeRequest<'_>) -> Result<(), ApiError> {
        let since = req.now_ms - HOUR_MS;
        let ip = req.client_ip.to_string();
        sqlx::query("DELETE FROM code_sent WHERE sent_at <= $1")
            .bind(since)
            .execute(self.db.pool())
            .await
            .map_err(internal)?;
        // Codes expired for an hour can only ever answer `code_expired`: forget them.
        sqlx::query("DELETE FROM number_code WHERE expires_at < $1")
            .bind(since)
            .execute(self.db.pool())
            .await
            .map_err(internal)?;
        // Reserve this request's row, then count it with the others: two concurrent requests
        // can both be refused at the limit, never both let through.
        let slot = hex::encode(self.randomness.bytes::<16>());
        sqlx::query(
            "INSERT INTO code_sent (id, phone, client_ip, sent_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(&slot)
        .bind(req.phone.as_str())
        .bind(&ip)
        .bind(req.now_ms)
        .execute(self.db.pool())
        .await
        .map_err(internal)?;
        let (to_number, from_address) = self.sent_since(req.phone.as_str(), &ip, since).await?;
        if to_number > i64::from(self.policy.per_number_per_hour)
            || from_address > i64::from(self.policy.per_address_per_hour)
        {
            self.release(&slot).await?;
            tracing::warn!(phone = req.phone.as_str(), %ip, "one-time code rate limited");
            return Err(ApiError::CodeRateLimited);
        }
        match self.submit(req).await {
            Err(ApiError::SmsUnavailable) => {
                // Nothing sent: the request does not count against the limits.
                self.release(&slot).await?;
                Err(ApiError::SmsUnavailable)
            }
            other => other,
        }
    }

    async fn release(&self, slot: &str) -> Result<(), ApiError> {
        sqlx::query("DELETE FROM code_sent WHERE id = $1")
            .bind(slot)
            .execute(self.db.pool())
            .await
            .map_err(internal)?;
        Ok(())
    }

    /// Sends a fresh code and records its MAC (after the SMSC accepted it: if it is down,
    /// nothing is stored).
    async fn submit(&self, req: CodeRequest<'_>) -> Result<(), ApiError> {
        let code = random_code(self.policy.digits, &self.randomness);
        let minutes = (self.policy.ttl.as_secs() / 60).max(1);
        let text = Zeroizing::new(format!(
            "{} is your chaincall code. It expires in {minutes} min. Never share it.",
            code.as_str()
        ));
        // Sent first, recorded after: if the SMSC is down nothing is stored or counted.
        let message_id = self.gateway.send(req.phone, &text).await.map_err(|e| {
            tracing::warn!(phone = req.phone.as_str(), error = %e, "SMS gateway refused the one-time code");
            ApiError::SmsUnavailable
        })?;
        let mac = hex::encode(self.mac(req.phone, &req.binding, &code));
        sqlx::query(
            "INSERT INTO number_code (phone, binding, code_mac, expires_at, attempts, used_at, created_at) \
             VALUES ($1, $2, $3, $4, 0, NULL, $5) \
             ON CONFLICT (phone, binding) DO UPDATE SET code_mac = excluded.code_mac, \
             expires_at = excluded.expires_at, attempts = 0, used_at = NULL, created_at = excluded.created_at",
        )
        .bind(req.phone.as_str())
        .bind(hex::encode(req.binding))
        .bind(mac)
        .bind(
            req.now_ms
                .saturating_add(i64::try_from(self.policy.ttl.as_millis()).unwrap_or(i64::MAX)),
        )
        .bind(req.now_ms)
        .execute(self.db.pool())
        .await
        .map_err(internal)?;
        tracing::info!(phone = req.phone.as_str(), %message_id, "one-time code sent");
        Ok(())
    }

    async fn check(&self, claim: NumberClaim<'_>) -> Result<PhoneNumber, ApiError> {
        let phone = PhoneNumber::parse(claim.requested).map_err(|e| ApiError::InvalidField {
            field: "phone",
            reason: e.to_string(),
        })?;
        let code = claim.code.ok_or(ApiError::CodeRequired)?;
        let binding = hex::encode(claim.binding);
        let row = sqlx::query(
            "SELECT code_mac, expires_at, attempts, used_at FROM number_code \
             WHERE phone = $1 AND binding = $2",
        )
        .bind(phone.as_str())
        .bind(&binding)
        .fetch_optional(self.db.pool())
        .await
        .map_err(internal)?;
        // No code was sent for this number and onboarding (wrong number, other key or wallet).
        let Some(row) = row else {
            return Err(ApiError::CodeInvalid);
        };
        let stored: String = row.try_get(0).map_err(internal)?;
        let expires_at: i64 = row.try_get(1).map_err(internal)?;
        let used_at: Option<i64> = row.try_get(3).map_err(internal)?;
        if used_at.is_some() {
            return Err(ApiError::CodeInvalid);
        }
        if claim.now_ms > expires_at {
            return Err(ApiError::CodeExpired);
        }
        // Count the try before comparing: a conditional update, so parallel guesses share the
        // budget.
        let counted = sqlx::query(
            "UPDATE number_code SET attempts = attempts + 1 \
             WHERE phone = $1 AND binding = $2 AND attempts < $3 AND used_at IS NULL",
        )
        .bind(phone.as_str())
        .bind(&binding)
        .bind(i64::from(self.policy.max_attempts))
        .execute(self.db.pool())
        .await
        .map_err(internal)?;
        if counted.rows_affected() != 1 {
            tracing::warn!(phone = phone.as_str(), "one-time code attempts exhausted");
            return Err(ApiError::CodeAttemptsExceeded);
        }
        let given = self.mac(&phone, &claim.binding, code.trim());
        let stored = hex::decode(stored).map_err(|_| ApiError::Internal)?;
        if !bool::from(given.as_slice().ct_eq(&stored)) {
            tracing::warn!(phone = phone.as_str(), "wrong one-time code");
            return Err(ApiError::CodeInvalid);
        }
        let used = sqlx::query(
            "UPDATE number_code SET used_at = $3 WHERE phone = $1 AND binding = $2 AND used_at IS NULL",
        )
        .bind(phone.as_str())
        .bind(&binding)
        .bind(claim.now_ms)
        .execute(self.db.pool())
        .await
        .map_err(internal)?;
        if used.rows_affected() != 1 {
            return Err(ApiError::CodeInvalid);
        }
        tracing::info!(
            receipt_id = claim.receipt_id,
            phone = phone.as_str(),
            "number proven by one-time code"
        );
        Ok(phone)
    }
}

impl<G: SmsGateway> NumberVerifier for SmsCodes<G> {
    fn kind(&self) -> &'static str {
        "sms_code"
    }

    fn send_code<'a>(&'a self, request: CodeRequest<'a>) -> BoxFuture<'a, Result<(), ApiError>> {
        Box::pin(self.send(request))
    }

    fn claim<'a>(&'a self, claim: NumberClaim<'a>) -> BoxFuture<'a, Result<PhoneNumber, ApiError>> {
        Box::pin(self.check(claim))
    }

    /// The same check as onboarding: a code sent to the number for this recovery's binding (new
    /// key, new wallet, receipt).
    fn prove_recovery<'a>(&'a self, claim: NumberClaim<'a>) -> BoxFuture<'a, Result<(), ApiError>> {
        Box::pin(async move { self.check(claim).await.map(|_| ()) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_have_the_digits_asked_and_vary() {
        let os = Randomness::os();
        let a = random_code(6, &os);
        let b = random_code(6, &os);
        let c = random_code(6, &os);
        assert!(a.len() == 6 && a.bytes().all(|d| d.is_ascii_digit()));
        assert_eq!(random_code(10, &os).len(), 10);
        assert!(!(a == b && b == c), "three equal 6-digit codes in a row");
    }

    #[test]
    fn a_seeded_source_replays_the_same_codes() {
        use rand_chacha::ChaCha20Rng;
        use rand_core::SeedableRng;
        let run = || {
            let seeded = Randomness::seeded(ChaCha20Rng::from_seed([7; 32]));
            [6, 8, 10].map(|digits| random_code(digits, &seeded).to_string())
        };
        let (first, again) = (run(), run());
        assert_eq!(first, again);
        assert_ne!(first[0], first[1][..6], "the draws move on");
    }
}
