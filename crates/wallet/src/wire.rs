//! The JSON the wallet server and its clients exchange that is not specific to one request kind:
//! an onboarding's [`State`] and the [`OnboardingStatus`] the server answers, and what the admin
//! API answers ([`AdminOnboarding`], [`RevokeOutcome`], [`RecoveryGrant`]). It lives apart from
//! the server's modules ([`crate::db`], [`crate::service`], which re-export it) so that a client
//! built without the `server` feature (the phone, [`crate::admin_client`]) has it too.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Where an onboarding stands. The happy path is
/// `Received → Funding → Funded → PendingSeen → Approved → Provisioned`; a device recovery moves a
/// provisioned row to `Recovering` with the new wallet and key, then back along the same path.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Receipt verified and recorded; not funded yet.
    #[default]
    Received,
    /// The funding transaction is signed and recorded (hash known); it may or may not be mined.
    Funding,
    /// The funding transaction is mined; waiting for the phone's `addClient` and approval request.
    Funded,
    /// The pending entry was read from the chain and matches the receipt, wallet and key.
    PendingSeen,
    /// `approveClient` is mined.
    Approved,
    /// SIP credentials are written: done.
    Provisioned,
    /// Stopped for a reason that retrying cannot fix (see `failure_code`).
    Failed,
    /// The subscriber was revoked by an administrator.
    Revoked,
    /// Device recovery accepted: the row holds the new wallet and key; the old entry is being
    /// revoked and the number reserved for the new wallet, before funding it (`→ Received`).
    Recovering,
}

impl State {
    /// The lower-case name stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Received => "received",
            Self::Funding => "funding",
            Self::Funded => "funded",
            Self::PendingSeen => "pending_seen",
            Self::Approved => "approved",
            Self::Provisioned => "provisioned",
            Self::Failed => "failed",
            Self::Revoked => "revoked",
            Self::Recovering => "recovering",
        }
    }

    /// Every state, in the order an onboarding usually passes them.
    pub const ALL: [State; 9] = [
        Self::Recovering,
        Self::Received,
        Self::Funding,
        Self::Funded,
        Self::PendingSeen,
        Self::Approved,
        Self::Provisioned,
        Self::Failed,
        Self::Revoked,
    ];

    /// States the background worker drives without waiting for the phone.
    pub const DRIVEN: [State; 5] = [
        Self::Received,
        Self::Funding,
        Self::PendingSeen,
        Self::Approved,
        Self::Recovering,
    ];
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Compares with the stored name, so callers that read the state as text keep working.
impl PartialEq<str> for State {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

/// Compares with the stored name (see `PartialEq<str>`).
impl PartialEq<&str> for State {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl FromStr for State {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        Ok(match s {
            "received" => Self::Received,
            "funding" => Self::Funding,
            "funded" => Self::Funded,
            "pending_seen" => Self::PendingSeen,
            "approved" => Self::Approved,
            "provisioned" => Self::Provisioned,
            "failed" => Self::Failed,
            "revoked" => Self::Revoked,
            "recovering" => Self::Recovering,
            _ => return Err(()),
        })
    }
}

/// True once the phone may send `addClient` (its funding is mined).
pub fn is_funded(state: State) -> bool {
    matches!(
        state,
        State::Funded | State::PendingSeen | State::Approved | State::Provisioned
    )
}

/// An onboarding as clients see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OnboardingStatus {
    /// The store's order id.
    pub receipt_id: String,
    /// Where it stands (serialized as its lower-case name).
    pub state: State,
    /// The phone's wallet (empty in `GET /v1/status` answers, which are unauthenticated).
    #[serde(default)]
    pub wallet: String,
    /// Wei sent to the wallet.
    #[serde(default)]
    pub fund_amount_wei: Option<String>,
    /// The funding transaction (not in `GET /v1/status` answers).
    #[serde(default)]
    pub fund_tx_hash: Option<String>,
    /// The approval transaction.
    #[serde(default)]
    pub approve_tx_hash: Option<String>,
    /// What the phone should do next: `wait`, `add_client_then_approve`, `approve`, `done`,
    /// `contact_support`.
    pub next: String,
    /// The last transient problem (the request is queued and retried), if any.
    #[serde(default)]
    pub last_error: Option<String>,
    /// The machine-readable code of `last_error` (`chain_unavailable`, `pending_entry_missing`,
    /// `fees_above_cap`, ...).
    #[serde(default)]
    pub last_error_code: Option<String>,
    /// True while an approval request is recorded and queued for the worker (it arrived when the
    /// chain could not be read).
    #[serde(default)]
    pub approval_queued: bool,
    /// For failed onboardings: the failure code.
    #[serde(default)]
    pub failure_code: Option<String>,
    /// The number this onboarding holds, as the server decided it. Only in answers to the sealed
    /// requests (`/v1/onboard`, `/v1/approve`), never in `/v1/status`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
}

impl OnboardingStatus {
    /// True once the phone may send `addClient` (funding mined).
    pub fn is_funded(&self) -> bool {
        is_funded(self.state)
    }
}

/// An onboarding as administrators see it (adds the number and key): the rows of
/// `GET /v1/admin/onboardings` and the answer of `GET /v1/admin/onboardings/{receipt_id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminOnboarding {
    /// Public view.
    #[serde(flatten)]
    pub status: OnboardingStatus,
    /// E.164 number.
    pub phone: String,
    /// Declared key, hex.
    pub public_key: String,
    /// Failure message.
    pub failure_message: Option<String>,
    /// Failed attempts since the last progress.
    pub attempts: i64,
    /// Created, ms since the epoch.
    pub created_at: i64,
    /// Last change, ms since the epoch (0 from servers that predate the field).
    #[serde(default)]
    pub updated_at: i64,
    /// Provisioned, ms since the epoch.
    pub provisioned_at: Option<i64>,
}

/// The operator's authorisation to recover a number (`assigned` verifier).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecoveryGrant {
    /// The number.
    pub phone: String,
    /// Until when it may be used once, ms since the epoch.
    pub expires_at: i64,
}

/// What a revocation did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevokeOutcome {
    /// The number.
    pub phone: String,
    /// The `revokeClient` transaction, if one was needed.
    pub revoke_tx_hash: Option<String>,
    /// Whether a SIP row was deleted.
    pub sip_row_deleted: bool,
}
