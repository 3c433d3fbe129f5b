//! Number ownership: who may put a key on chain under a phone number. Before this, the number was
//! whatever the sealed payload said, so one receipt let anyone claim any unclaimed number.
//!
//! A [`NumberVerifier`] decides the number of an onboarding, or refuses; the server consults it
//! before a receipt is bound, so a refusal consumes nothing. Two come with the server, chosen by
//! `[numbers] verifier` in the configuration ([`NumbersConfig`]):
//!
//! | verifier | proves | module |
//! | --- | --- | --- |
//! | `assigned` | nothing about the subscriber: the operator hands out numbers from its own ranges, durably, once each | [`assigned`] |
//! | `sms_code` | whoever onboards received an SMS at the number within the code's lifetime | [`sms_code`] over [`smpp`] / [`smpp_client`] |
//!
//! An operator plugs in another (a store backend that sets the number, a carrier API) by
//! implementing the trait and building the service with it (`ServiceParts::numbers`).
//! `docs/onboarding.md` says what each proves and what it does not.

pub mod assigned;
pub mod smpp;
pub mod smpp_client;
pub mod sms_code;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chaincall_identity::{IdentityKey, PhoneNumber, Randomness, Secret};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::config::ConfigError;
use crate::db::Db;
use crate::error::ApiError;
pub use sms_code::BoxFuture;

/// What an onboarding asks for.
#[derive(Debug, Clone, Copy)]
pub struct NumberClaim<'a> {
    /// The receipt's order id: a verifier that allocates answers the same for the same receipt.
    pub receipt_id: &'a str,
    /// The number the payload names, as given; empty when the phone takes what it is assigned.
    pub requested: &'a str,
    /// What the onboarding binds ([`binding`]): key, wallet and receipt.
    pub binding: [u8; 32],
    /// The one-time code the payload carries, if any. Never logged.
    pub code: Option<&'a str>,
    /// The client's address as the server observed it (never one the client asserts).
    pub client_ip: IpAddr,
    /// Milliseconds since the epoch.
    pub now_ms: i64,
}

/// A request for a one-time code.
#[derive(Debug, Clone, Copy)]
pub struct CodeRequest<'a> {
    /// The number to send the code to.
    pub phone: &'a PhoneNumber,
    /// The onboarding the code will be good for ([`binding`]).
    pub binding: [u8; 32],
    /// The client's address as the server observed it.
    pub client_ip: IpAddr,
    /// Milliseconds since the epoch.
    pub now_ms: i64,
}

/// Decides which number an onboarding gets. Implementations must be idempotent for a receipt
/// (a retried request after a lost answer or a crash gets the same number, or a clear refusal)
/// and must never give one number to two receipts.
pub trait NumberVerifier: Send + Sync + std::fmt::Debug {
    /// A short name shown at `/v1/server` (`assigned`, `sms_code`, …) so phones know what to do.
    fn kind(&self) -> &'static str;

    /// Sends a one-time code to a number (`/v1/number/code`). Verifiers without codes refuse.
    fn send_code<'a>(&'a self, request: CodeRequest<'a>) -> BoxFuture<'a, Result<(), ApiError>> {
        let _ = request;
        Box::pin(async { Err(ApiError::CodesNotUsed) })
    }

    /// The number this onboarding gets, or why not. Called before the receipt is bound.
    fn claim<'a>(&'a self, claim: NumberClaim<'a>) -> BoxFuture<'a, Result<PhoneNumber, ApiError>>;

    /// A fresh proof that whoever recovers `claim.requested` (device recovery) owns it: a
    /// one-time code sent to it now, or the operator's authorisation. Consumes the proof; called
    /// before anything is funded. The default refuses (an operator's verifier must opt in).
    fn prove_recovery<'a>(&'a self, claim: NumberClaim<'a>) -> BoxFuture<'a, Result<(), ApiError>> {
        let _ = claim;
        Box::pin(async { Err(ApiError::RecoveryNotAuthorized) })
    }
}

/// Domain separation of [`binding`].
const BINDING_CONTEXT: &[u8] = b"chaincall wallet v1 number binding\0";

/// SHA-256 over what an onboarding binds: the identity key (type and bytes), the wallet and the
/// receipt's purchase-token hash. A code bound to one of these is worthless for another.
pub fn binding(key_type: u8, public_key: &[u8], wallet: &[u8; 20], token_sha256: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(BINDING_CONTEXT);
    h.update([key_type]);
    h.update((public_key.len() as u32).to_be_bytes());
    h.update(public_key);
    h.update(wallet);
    h.update(token_sha256.as_bytes());
    h.finalize().into()
}

/// `[numbers]`: how the server decides who gets which number. Required: there is no default
/// that lets a payload name its own number.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "verifier", rename_all = "snake_case")]
pub enum NumbersConfig {
    /// Operator-assigned numbers from `ranges`.
    Assigned(AssignedConfig),
    /// A one-time code by SMS through an SMPP 3.4 SMS centre.
    SmsCode(SmsCodeConfig),
}

/// `verifier = "assigned"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssignedConfig {
    /// The ranges numbers are handed out from, in order.
    pub ranges: Vec<RangeConfig>,
}

/// One range of numbers, inclusive, both ends E.164 with the same number of digits.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RangeConfig {
    /// First number.
    pub first: String,
    /// Last number.
    pub last: String,
}

/// `verifier = "sms_code"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmsCodeConfig {
    /// The SMS centre's SMPP address, `host:port`.
    pub smsc: String,
    /// SMPP system_id (≤ 15 characters).
    pub system_id: String,
    /// File holding the SMPP password (≤ 8 characters).
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// Or the environment variable holding it (default `CHAINCALL_SMPP_PASSWORD`).
    #[serde(default = "default_password_env")]
    pub password_env: String,
    /// SMPP system_type (default empty).
    #[serde(default)]
    pub system_type: String,
    /// Sender shown on the phone (default `chaincall`).
    #[serde(default = "default_source")]
    pub source_addr: String,
    /// Digits per code, 6 to 10 (default 6).
    #[serde(default = "default_digits")]
    pub digits: u32,
    /// A code expires this long after it is sent (`ttl_secs`, whole seconds; default 300).
    #[serde(
        rename = "ttl_secs",
        default = "default_ttl",
        deserialize_with = "crate::config::secs"
    )]
    pub ttl: Duration,
    /// Wrong tries a code survives (default 5); then a new code must be requested.
    #[serde(default = "default_attempts")]
    pub max_attempts: u32,
    /// Codes sent to one number per hour (default 5).
    #[serde(default = "default_per_number")]
    pub codes_per_number_per_hour: u32,
    /// Codes requested from one client address per hour (default 20).
    #[serde(default = "default_per_address")]
    pub codes_per_address_per_hour: u32,
    /// SMPP connect and response timeout (`timeout_ms`, milliseconds; default 5000).
    #[serde(
        rename = "timeout_ms",
        default = "default_smpp_timeout",
        deserialize_with = "crate::config::millis"
    )]
    pub timeout: Duration,
}

fn default_password_env() -> String {
    "CHAINCALL_SMPP_PASSWORD".into()
}
fn default_source() -> String {
    "chaincall".into()
}
fn default_digits() -> u32 {
    6
}
fn default_ttl() -> Duration {
    Duration::from_secs(300)
}
fn default_attempts() -> u32 {
    5
}
fn default_per_number() -> u32 {
    5
}
fn default_per_address() -> u32 {
    20
}
fn default_smpp_timeout() -> Duration {
    Duration::from_secs(5)
}

impl NumbersConfig {
    /// Resolves relative paths against `base`.
    pub fn resolve(&mut self, base: &Path) {
        if let Self::SmsCode(c) = self
            && let Some(p) = c.password_file.as_mut()
            && p.is_relative()
        {
            *p = base.join(&*p);
        }
    }

    /// Checks ranges and limits.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |s: String| Err(ConfigError::Invalid(s));
        match self {
            Self::Assigned(a) => {
                if a.ranges.is_empty() {
                    return bad("numbers.ranges is empty".into());
                }
                for r in &a.ranges {
                    if let Err(e) = assigned::NumberRange::parse(&r.first, &r.last) {
                        return bad(format!("numbers.ranges {}..{}: {e}", r.first, r.last));
                    }
                }
            }
            Self::SmsCode(c) => {
                if !(6..=10).contains(&c.digits) {
                    return bad("numbers.digits must be 6 to 10".into());
                }
                if !(Duration::from_secs(30)..=Duration::from_secs(3600)).contains(&c.ttl) {
                    return bad("numbers.ttl_secs must be 30 to 3600".into());
                }
                if !(1..=10).contains(&c.max_attempts) {
                    return bad("numbers.max_attempts must be 1 to 10".into());
                }
                if c.codes_per_number_per_hour == 0 || c.codes_per_address_per_hour == 0 {
                    return bad("numbers.codes_per_*_per_hour must be at least 1".into());
                }
                if c.system_id.len() > 15 || c.source_addr.len() > 20 || c.system_type.len() > 12 {
                    return bad(
                        "numbers.system_id, source_addr or system_type too long for SMPP 3.4"
                            .into(),
                    );
                }
            }
        }
        Ok(())
    }

    /// The SMPP password (file first, then the environment variable; empty if neither).
    fn smpp_password(c: &SmsCodeConfig) -> Result<Secret<String>, ConfigError> {
        let text = match &c.password_file {
            // Refused when group or world readable (the message says `chmod 600 PATH`).
            Some(p) => chaincall_identity::read_secret_file(p).map_err(|e| ConfigError::Read {
                path: p.clone(),
                source: match e {
                    chaincall_identity::SecretFileError::Io { source, .. } => source,
                    other => std::io::Error::other(other.to_string()),
                },
            })?,
            None => zeroize::Zeroizing::new(std::env::var(&c.password_env).unwrap_or_default()),
        };
        let pw = Secret::new(text.trim().to_owned());
        if pw.len() > 8 {
            return Err(ConfigError::Invalid(
                "the SMPP password is longer than SMPP 3.4's 8 characters".into(),
            ));
        }
        Ok(pw)
    }

    /// Builds the verifier this configuration names, storing its state in `db`. Codes are
    /// MACed under a key derived from the server's identity key, so they survive restarts and
    /// a stolen database alone does not reveal them.
    pub fn build(
        &self,
        db: &Db,
        identity: &IdentityKey,
        randomness: &Randomness,
    ) -> Result<Arc<dyn NumberVerifier>, ConfigError> {
        Ok(match self {
            Self::Assigned(a) => {
                let ranges = a
                    .ranges
                    .iter()
                    .map(|r| assigned::NumberRange::parse(&r.first, &r.last))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| ConfigError::Invalid(e.to_owned()))?;
                Arc::new(assigned::AssignedNumbers::new(db.clone(), ranges))
            }
            Self::SmsCode(c) => {
                let gateway = smpp_client::SmppGateway::new(smpp_client::SmppConfig {
                    address: c.smsc.clone(),
                    system_id: c.system_id.clone(),
                    password: Self::smpp_password(c)?,
                    system_type: c.system_type.clone(),
                    source_addr: c.source_addr.clone(),
                    timeout: c.timeout,
                });
                Arc::new(sms_code::SmsCodes::new(
                    db.clone(),
                    gateway,
                    sms_code::CodePolicy::from(c),
                    sms_code::mac_key(identity),
                    randomness.clone(),
                ))
            }
        })
    }
}
