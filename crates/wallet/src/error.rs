//! What API clients are told: a machine-readable code, an HTTP status and a message that never
//! carries database errors, keys or receipt tokens. All mapping happens in [`ApiError::status`] and
//! [`ApiError::code`].

use serde::{Deserialize, Serialize};

use crate::receipt::ReceiptError;
use crate::wire::State;

/// An API failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// The body is not the expected JSON.
    #[error("malformed request: {0}")]
    BadRequest(String),
    /// The sealed payload does not open with the server's key, or is not a payload.
    #[error("payload does not decrypt with the server's identity key")]
    Undecryptable,
    /// The payload's timestamp is outside the accepted window.
    #[error("payload timestamp is outside the accepted window; seal a fresh one")]
    Expired,
    /// The payload's nonce was seen before.
    #[error("payload was already received (replay); seal a fresh one")]
    Replayed,
    /// The receipt was refused.
    #[error("{0}")]
    Receipt(ReceiptError),
    /// The receipt is already bound to another onboarding.
    #[error("this receipt was already used")]
    ReceiptReused,
    /// No onboarding for this receipt.
    #[error("no onboarding for this receipt; call /v1/onboard first")]
    UnknownReceipt,
    /// An input field is invalid.
    #[error("invalid {field}: {reason}")]
    InvalidField {
        /// Which field.
        field: &'static str,
        /// Why.
        reason: String,
    },
    /// The wallet address holds a contract.
    #[error("the wallet address holds contract code; use a fresh account")]
    WalletNotEoa,
    /// A field differs from what the onboarding recorded.
    #[error("{field} differs from the one given at onboarding")]
    Mismatch {
        /// `phone`, `wallet` or `public_key`.
        field: &'static str,
    },
    /// Approval asked before funding is mined.
    #[error("the wallet is not funded yet; wait for state `funded`")]
    NotFunded,
    /// No pending entry on chain for the number.
    #[error("no pending keystore entry for this number; send addClient first")]
    PendingMissing,
    /// The pending entry was submitted by another wallet.
    #[error("the pending keystore entry was submitted by another wallet")]
    PendingWalletMismatch,
    /// Another wallet's pending entry held the number; the server replaced it with a reservation
    /// for the verified wallet, which must now send `addClient` and ask again.
    #[error(
        "another wallet's pending entry held this number; it is now reserved for your wallet: send addClient again, then ask for approval"
    )]
    NumberReserved,
    /// The pending entry holds another key than the one declared.
    #[error("the pending keystore entry holds another key than the one declared")]
    PendingKeyMismatch,
    /// The number is approved for someone else (or for its owner's lost device: then recover it).
    #[error(
        "this number is already taken on chain; if it is yours and you lost the device, recover it with the original receipt (`chaincall phone recover`)"
    )]
    NumberTaken,
    /// A device recovery for a receipt that provisioned no number here, or not the number asked.
    #[error(
        "this receipt provisioned no such number on this server; recovery needs the original receipt of the number"
    )]
    NotRecoverable,
    /// The operator has not authorised recovering this number (verifiers without codes).
    #[error(
        "recovering this number needs the operator's authorisation; ask them to check that the number is yours"
    )]
    RecoveryNotAuthorized,
    /// The number is being recovered to another wallet or key.
    #[error("this number is being recovered to another device; finish or ask the operator")]
    RecoveryInProgress,
    /// The onboarding stopped for good.
    #[error("onboarding failed: {message}")]
    Failed {
        /// The stored failure code.
        code: String,
        /// The stored message.
        message: String,
    },
    /// The subscriber was revoked.
    #[error("this subscriber was revoked")]
    Revoked,
    /// The chain node is unreachable; retry later.
    #[error("the chain node is unreachable; retry later")]
    ChainUnavailable,
    /// Too many requests from this source.
    #[error("too many requests; slow down")]
    RateLimited,
    /// Missing or wrong admin token.
    #[error("missing or wrong bearer token")]
    Unauthorized,
    /// Not found.
    #[error("not found")]
    NotFound,
    /// No onboarding has this receipt id (admin show and retry).
    #[error("no onboarding has this receipt id")]
    OnboardingNotFound,
    /// An admin retry of an onboarding a retry cannot move: it is done, or revoked for good.
    #[error("this onboarding is {state}: {why}")]
    NotRetryable {
        /// Where it stands.
        state: State,
        /// Why a retry would do nothing.
        why: &'static str,
    },
    /// The number is not one this server hands out (outside its configured ranges).
    #[error("this number is not in a range this server assigns")]
    NumberNotInRange,
    /// The number was assigned to another onboarding.
    #[error("this number is already assigned; ask for another one or for the next free one")]
    NumberUnavailable,
    /// Every number of the configured ranges is assigned.
    #[error("no free number is left in the configured ranges")]
    NumbersExhausted,
    /// The number verifier needs a one-time code and the payload carries none.
    #[error("a one-time code sent to the number is required; request one first")]
    CodeRequired,
    /// The code is wrong, used, for another number or bound to another onboarding.
    #[error("the one-time code is not valid for this number and onboarding")]
    CodeInvalid,
    /// The code expired.
    #[error("the one-time code expired; request a new one")]
    CodeExpired,
    /// Too many wrong codes for this request; a new code must be requested.
    #[error("too many attempts; request a new code")]
    CodeAttemptsExceeded,
    /// Too many codes requested for this number or from this address.
    #[error("too many codes requested; try again later")]
    CodeRateLimited,
    /// This server's number verifier sends no codes.
    #[error("this server does not verify numbers by code")]
    CodesNotUsed,
    /// The SMS centre could not be reached or refused the message; nothing was used up.
    #[error("the SMS gateway is unavailable; nothing was used up, retry later")]
    SmsUnavailable,
    /// The proof of possession is missing or is not a signature by the declared identity key.
    #[error("the proof of possession is missing or not signed by the declared identity key")]
    BadProof,
    /// A fault on our side (details in the server log only).
    #[error("internal error")]
    Internal,
}

/// An SMPP 3.4 failure: codec, transport or the SMSC's refusal. Logged; clients see
/// [`ApiError::SmsUnavailable`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SmppError {
    /// A field is longer than the spec allows (the maximum counts the NUL, SMPP 3.4 §3.1), or
    /// holds a NUL or non-ASCII byte.
    #[error("SMPP field {field} does not fit (max {max} octets with NUL, ASCII)")]
    FieldTooLong {
        /// The field.
        field: &'static str,
        /// Its maximum.
        max: usize,
    },
    /// command_length below the header or above the codec's bound.
    #[error("SMPP command_length {length} out of range")]
    TooLong {
        /// The length given.
        length: usize,
    },
    /// A mandatory field runs past the PDU's end.
    #[error("SMPP PDU truncated in {field}")]
    Truncated {
        /// The field.
        field: &'static str,
    },
    /// A C-Octet String is not text.
    #[error("SMPP field {field} is not ASCII")]
    NotAscii {
        /// The field.
        field: &'static str,
    },
    /// The codec cannot encode this PDU.
    #[error("SMPP PDU not supported by this codec")]
    Unsupported,
    /// The SMSC answered with another PDU than the request's response.
    #[error("unexpected SMPP PDU from the SMSC")]
    UnexpectedPdu,
    /// The SMSC refused with a non-zero command_status (SMPP 3.4 §5.1.3).
    #[error("the SMSC refused: command_status {status:#010x}")]
    Refused {
        /// The command_status.
        status: u32,
    },
    /// The connection failed.
    #[error("SMPP connection: {0}")]
    Io(String),
    /// The SMSC did not answer in time.
    #[error("SMPP: the SMSC did not answer in time")]
    Timeout,
}

/// The JSON error body: `{"error": {"code": "...", "message": "..."}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// Code and message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDetail {
    /// Machine-readable code (stable).
    pub code: String,
    /// Human-readable message.
    pub message: String,
}

impl ApiError {
    /// The machine-readable code.
    pub fn code(&self) -> &str {
        match self {
            Self::BadRequest(_) => "bad_request",
            Self::Undecryptable => "payload_undecryptable",
            Self::Expired => "payload_expired",
            Self::Replayed => "payload_replayed",
            Self::Receipt(e) => match e {
                ReceiptError::WrongProduct { .. } => "receipt_wrong_product",
                ReceiptError::WrongPackage { .. } => "receipt_wrong_package",
                ReceiptError::NotPurchased { .. } => "receipt_not_purchased",
                _ => "receipt_invalid",
            },
            Self::ReceiptReused => "receipt_reused",
            Self::UnknownReceipt => "unknown_receipt",
            Self::InvalidField { field, .. } => match *field {
                "phone" => "invalid_phone",
                "wallet" => "invalid_wallet",
                "public_key" => "invalid_public_key",
                _ => "invalid_field",
            },
            Self::WalletNotEoa => "wallet_not_eoa",
            Self::Mismatch { field } => match *field {
                "phone" => "phone_mismatch",
                "wallet" => "wallet_mismatch",
                _ => "key_mismatch",
            },
            Self::NotFunded => "not_funded",
            Self::PendingMissing => "pending_entry_missing",
            Self::PendingWalletMismatch => "pending_wallet_mismatch",
            Self::NumberReserved => "number_reserved",
            Self::PendingKeyMismatch => "pending_key_mismatch",
            Self::NumberTaken => "number_taken",
            Self::NotRecoverable => "not_recoverable",
            Self::RecoveryNotAuthorized => "recovery_not_authorized",
            Self::RecoveryInProgress => "recovery_in_progress",
            Self::Failed { code, .. } => code,
            Self::Revoked => "revoked",
            Self::ChainUnavailable => "chain_unavailable",
            Self::RateLimited => "rate_limited",
            Self::Unauthorized => "unauthorized",
            Self::NotFound => "not_found",
            Self::OnboardingNotFound => "onboarding_not_found",
            Self::NotRetryable { .. } => "not_retryable",
            Self::NumberNotInRange => "number_not_in_range",
            Self::NumberUnavailable => "number_unavailable",
            Self::NumbersExhausted => "numbers_exhausted",
            Self::CodeRequired => "code_required",
            Self::CodeInvalid => "code_invalid",
            Self::CodeExpired => "code_expired",
            Self::CodeAttemptsExceeded => "code_attempts_exceeded",
            Self::CodeRateLimited => "code_rate_limited",
            Self::CodesNotUsed => "codes_not_used",
            Self::SmsUnavailable => "sms_unavailable",
            Self::BadProof => "bad_proof_of_possession",
            Self::Internal => "internal",
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> u16 {
        match self {
            Self::BadRequest(_)
            | Self::Undecryptable
            | Self::Expired
            | Self::InvalidField { .. }
            | Self::WalletNotEoa
            | Self::NumberNotInRange
            | Self::CodeRequired
            | Self::CodesNotUsed
            | Self::BadProof => 400,
            Self::Receipt(ReceiptError::NotPurchased { .. }) => 402,
            Self::Receipt(_) => 400,
            Self::Unauthorized => 401,
            Self::CodeInvalid
            | Self::CodeExpired
            | Self::CodeAttemptsExceeded
            | Self::RecoveryNotAuthorized => 403,
            Self::UnknownReceipt
            | Self::NotFound
            | Self::OnboardingNotFound
            | Self::NotRecoverable => 404,
            Self::Replayed
            | Self::ReceiptReused
            | Self::Mismatch { .. }
            | Self::NotFunded
            | Self::PendingMissing
            | Self::PendingWalletMismatch
            | Self::NumberReserved
            | Self::PendingKeyMismatch
            | Self::NumberTaken
            | Self::RecoveryInProgress
            | Self::NumberUnavailable
            | Self::NumbersExhausted
            | Self::NotRetryable { .. }
            | Self::Revoked => 409,
            Self::Failed { .. } => 422,
            Self::RateLimited | Self::CodeRateLimited => 429,
            Self::Internal => 500,
            Self::ChainUnavailable | Self::SmsUnavailable => 503,
        }
    }

    /// The JSON body.
    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            error: ErrorDetail {
                code: self.code().to_owned(),
                message: self.to_string(),
            },
        }
    }
}

impl From<ReceiptError> for ApiError {
    fn from(e: ReceiptError) -> Self {
        Self::Receipt(e)
    }
}
