//! The phone's side of onboarding (seeds/000 Fig. 2): an HTTP client for the wallet server and
//! [`onboard_phone`], the whole flow in one call.
//!
//! ```no_run
//! # async fn demo(chain: chaincall_chain::EmbeddedChain, contract: alloy::primitives::Address,
//! #               receipt: chaincall_wallet::receipt::Receipt) -> Result<(), chaincall_wallet::client::ClientError> {
//! use chaincall_wallet::client::{NumberRequest, WalletClient, onboard_phone, server_identity_key};
//! let client = WalletClient::new("http://127.0.0.1:8547");
//! let server_key = server_identity_key(&chain, contract, "wallet.example.org").await?;
//! let wallet = chaincall_chain::PrivateKeySigner::random();
//! let identity = chaincall_identity::IdentityKey::generate();
//! // Operator-assigned numbers: take the next free one (or `NumberRequest::named` to ask for one).
//! let done = onboard_phone(&client, &chain, contract, &server_key, &wallet, &identity,
//!                          &NumberRequest::next_free(), receipt,
//!                          std::time::Duration::from_secs(60)).await?;
//! assert_eq!(done.state, "provisioned");
//! println!("assigned {}", done.phone.unwrap_or_default());
//! # Ok(()) }
//! ```

use std::time::Duration;

use alloy::primitives::Address;
use alloy::transports::http::reqwest;
use chaincall_chain::{ChainError, ClientId, KeystoreChain, PrivateKeySigner};
use chaincall_identity::Randomness;
use chaincall_identity::{
    IdentityKey, IdentityName, KeyStatus, PhoneNumber, PublicIdentityKey, Secret,
};
use serde::de::DeserializeOwned;
use zeroize::Zeroizing;

use crate::credentials::{CredentialsAnswer, CredentialsRequest};

use crate::error::ErrorBody;
use crate::payload::{
    APPROVE_CONTEXT, CODE_CONTEXT, ONBOARD_CONTEXT, OnboardPayload, RECOVER_CONTEXT,
};
use crate::receipt::{Purchase, Receipt};
use crate::wire::{OnboardingStatus, State};

/// What went wrong on the phone's side.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The server could not be reached.
    #[error("wallet server unreachable: {0}")]
    Http(String),
    /// The server answered with an error.
    #[error("wallet server refused ({status} {code}): {message}")]
    Api {
        /// HTTP status.
        status: u16,
        /// Machine-readable code.
        code: String,
        /// Message.
        message: String,
    },
    /// The answer was not the expected JSON.
    #[error("unexpected answer from the wallet server: {0}")]
    Decode(String),
    /// The chain refused or failed.
    #[error(transparent)]
    Chain(#[from] ChainError),
    /// The server's identity is not approved on chain.
    #[error("the wallet server's identity {0} is not approved on chain")]
    ServerNotApproved(String),
    /// Input the phone gave is invalid.
    #[error("invalid input: {0}")]
    Invalid(String),
    /// The onboarding did not reach the wanted state in time.
    #[error("timed out waiting for state {wanted}; last state {last}")]
    Timeout {
        /// State waited for.
        wanted: &'static str,
        /// State seen last.
        last: String,
    },
}

impl ClientError {
    /// The server's error code, if the server answered with one.
    pub fn code(&self) -> Option<&str> {
        match self {
            Self::Api { code, .. } => Some(code),
            _ => None,
        }
    }
}

/// An HTTP client for one wallet server.
#[derive(Debug, Clone)]
pub struct WalletClient {
    base: String,
    http: reqwest::Client,
    randomness: Randomness,
}

impl WalletClient {
    /// A client for `base_url` (e.g. `http://127.0.0.1:8547`).
    pub fn new(base_url: impl Into<String>) -> Self {
        Self {
            base: base_url.into().trim_end_matches('/').to_owned(),
            http: reqwest::Client::new(),
            randomness: Randomness::os(),
        }
    }

    /// Draws the requests' nonces from `randomness` instead of the OS CSPRNG (seeded in tests).
    pub fn with_randomness(mut self, randomness: Randomness) -> Self {
        self.randomness = randomness;
        self
    }

    /// A payload for `phone` stamped now, with a nonce from this client's randomness.
    pub fn payload(
        &self,
        wallet: Address,
        receipt: Receipt,
        phone: &str,
        key: &PublicIdentityKey,
    ) -> OnboardPayload {
        OnboardPayload::new(wallet, receipt, phone, key, &self.randomness)
    }

    async fn decode<T: DeserializeOwned>(response: reqwest::Response) -> Result<T, ClientError> {
        let status = response.status().as_u16();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| ClientError::Http(e.to_string()))?;
        if (200..300).contains(&status) {
            return serde_json::from_slice(&bytes).map_err(|e| ClientError::Decode(e.to_string()));
        }
        match serde_json::from_slice::<ErrorBody>(&bytes) {
            Ok(body) => Err(ClientError::Api {
                status,
                code: body.error.code,
                message: body.error.message,
            }),
            Err(_) => Err(ClientError::Api {
                status,
                code: "http_error".into(),
                message: String::from_utf8_lossy(&bytes).chars().take(200).collect(),
            }),
        }
    }

    async fn post_sealed<T: DeserializeOwned>(
        &self,
        path: &str,
        server_key: &PublicIdentityKey,
        context: &[u8],
        payload: &OnboardPayload,
    ) -> Result<T, ClientError> {
        let body = payload.seal(server_key, context);
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .json(&body)
            .send()
            .await
            .map_err(|e| ClientError::Http(e.to_string()))?;
        Self::decode(response).await
    }

    /// `POST /v1/onboard` with `payload` sealed to `server_key`.
    pub async fn onboard(
        &self,
        server_key: &PublicIdentityKey,
        payload: &OnboardPayload,
    ) -> Result<OnboardingStatus, ClientError> {
        self.post_sealed("/v1/onboard", server_key, ONBOARD_CONTEXT, payload)
            .await
    }

    /// `POST /v1/approve` with `payload` sealed to `server_key` (after `addClient`).
    pub async fn approve(
        &self,
        server_key: &PublicIdentityKey,
        payload: &OnboardPayload,
    ) -> Result<OnboardingStatus, ClientError> {
        self.post_sealed("/v1/approve", server_key, APPROVE_CONTEXT, payload)
            .await
    }

    /// `POST /v1/recover` with `payload` sealed to `server_key` (device recovery).
    pub async fn recover(
        &self,
        server_key: &PublicIdentityKey,
        payload: &OnboardPayload,
    ) -> Result<OnboardingStatus, ClientError> {
        self.post_sealed("/v1/recover", server_key, RECOVER_CONTEXT, payload)
            .await
    }

    /// `POST /v1/number/code`: asks the server to send a one-time code to the payload's number
    /// (servers whose `number_verifier` is `sms_code`). The payload's receipt is checked, not
    /// consumed.
    pub async fn request_code(
        &self,
        server_key: &PublicIdentityKey,
        payload: &OnboardPayload,
    ) -> Result<(), ClientError> {
        self.post_sealed::<serde_json::Value>("/v1/number/code", server_key, CODE_CONTEXT, payload)
            .await
            .map(|_| ())
    }

    /// `GET /v1/status/{receipt_id}`: state, next step and error codes only (no wallet, amounts or
    /// transactions: the endpoint is unauthenticated).
    pub async fn status(&self, receipt_id: &str) -> Result<OnboardingStatus, ClientError> {
        let response = self
            .http
            .get(format!("{}/v1/status/{receipt_id}", self.base))
            .send()
            .await
            .map_err(|e| ClientError::Http(e.to_string()))?;
        Self::decode(response).await
    }

    /// `POST /v1/credentials`: the SIP password of `number`, asked for with a request `identity`
    /// signs (it must be the number's key approved on chain) and opened with it. The last step
    /// of onboarding, and how a phone learns its password after a rotation. A secret: zeroized on
    /// drop, never log it.
    pub async fn sip_password(
        &self,
        identity: &IdentityKey,
        number: &PhoneNumber,
    ) -> Result<Zeroizing<String>, ClientError> {
        let request = CredentialsRequest::new(identity, number, &self.randomness);
        let response = self
            .http
            .post(format!("{}/v1/credentials", self.base))
            .json(&request)
            .send()
            .await
            .map_err(|e| ClientError::Http(e.to_string()))?;
        let answer: CredentialsAnswer = Self::decode(response).await?;
        if answer.username != number.as_str() {
            return Err(ClientError::Decode(format!(
                "credentials for {:?}, not {number}",
                answer.username
            )));
        }
        answer.open(identity).ok_or_else(|| {
            ClientError::Decode("the password is not sealed to this phone's identity key".into())
        })
    }

    /// `GET /v1/server`: the server's wallet, contract, chain id and identity key.
    pub async fn server_info(&self) -> Result<serde_json::Value, ClientError> {
        let response = self
            .http
            .get(format!("{}/v1/server", self.base))
            .send()
            .await
            .map_err(|e| ClientError::Http(e.to_string()))?;
        Self::decode(response).await
    }

    /// Polls the status until `done` holds (or a failure, or `timeout`).
    pub async fn wait_for(
        &self,
        receipt_id: &str,
        wanted: &'static str,
        done: impl Fn(&OnboardingStatus) -> bool,
        timeout: Duration,
    ) -> Result<OnboardingStatus, ClientError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut delay = Duration::from_millis(5);
        loop {
            let s = self.status(receipt_id).await?;
            if done(&s) {
                return Ok(s);
            }
            if matches!(s.state, State::Failed | State::Revoked) {
                return Err(ClientError::Api {
                    status: 422,
                    code: s.failure_code.unwrap_or_else(|| s.state.to_string()),
                    message: format!("onboarding {}", s.state),
                });
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(ClientError::Timeout {
                    wanted,
                    last: s.state.to_string(),
                });
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_millis(250));
        }
    }
}

/// Looks up the wallet server's identity key on chain under its domain name; only an approved key
/// is returned (the keystore owner vouches for it: no PKI involved).
pub async fn server_identity_key<C: KeystoreChain>(
    chain: &C,
    contract: Address,
    domain: &str,
) -> Result<PublicIdentityKey, ClientError> {
    let name = IdentityName::parse(domain).map_err(|e| ClientError::Invalid(e.to_string()))?;
    let entry = chain.get_client(contract, ClientId::of(&name)).await?;
    entry
        .approved_key()
        .ok_or_else(|| ClientError::ServerNotApproved(domain.to_owned()))
}

/// Which number a phone onboards and how it proves it may.
#[derive(Debug, Clone, Default)]
pub struct NumberRequest {
    /// E.164 number asked for; empty: the next free one (operator-assigned numbers).
    pub phone: String,
    /// The one-time code sent to `phone` (servers that verify by code). Never logged.
    pub code: Option<Secret<String>>,
}

impl NumberRequest {
    /// The next free number the server assigns.
    pub fn next_free() -> Self {
        Self::default()
    }

    /// A particular number (free in the operator's ranges, or proven with a code).
    pub fn named(phone: &str) -> Self {
        Self {
            phone: phone.to_owned(),
            code: None,
        }
    }

    /// Adds the one-time code received at the number.
    pub fn with_code(mut self, code: &str) -> Self {
        self.code = Some(Secret::new(code.trim().to_owned()));
        self
    }
}

/// Asks the server to send a one-time code to `phone` for this wallet, key and receipt (the
/// code is good for exactly those); the code then goes into [`NumberRequest::with_code`].
pub async fn request_number_code(
    client: &WalletClient,
    server_key: &PublicIdentityKey,
    wallet: &PrivateKeySigner,
    identity: &PublicIdentityKey,
    phone: &str,
    receipt: Receipt,
) -> Result<(), ClientError> {
    let payload = code_payload(client, wallet, identity, phone, receipt)?;
    client.request_code(server_key, &payload).await
}

/// Asks the server to send a one-time code to `phone` for recovering it to this wallet and key
/// with the number's original `receipt` (device recovery, `sms_code` servers); the code then goes
/// into [`recover_phone`].
pub async fn request_recovery_code(
    client: &WalletClient,
    server_key: &PublicIdentityKey,
    wallet: &PrivateKeySigner,
    identity: &PublicIdentityKey,
    phone: &str,
    receipt: Receipt,
) -> Result<(), ClientError> {
    let payload = code_payload(client, wallet, identity, phone, receipt)?.recovering();
    client.request_code(server_key, &payload).await
}

fn code_payload(
    client: &WalletClient,
    wallet: &PrivateKeySigner,
    identity: &PublicIdentityKey,
    phone: &str,
    receipt: Receipt,
) -> Result<OnboardPayload, ClientError> {
    let number = parse_number(phone)?;
    Ok(client.payload(wallet.address(), receipt, number.as_str(), identity))
}

/// Device recovery, the phone's side: with the number's ORIGINAL receipt (a new device's "restore
/// purchases"), a fresh ownership proof (`number.code` for `sms_code` servers; the operator's
/// authorisation for `assigned` ones) and a new wallet and identity key, ask the server to move
/// the number here; then, as in [`onboard_phone`], wait for the Ether, `addClient`, ask for
/// approval, wait until provisioned. The SIP password is then fetched with
/// [`WalletClient::sip_password`]. Safe to call again after any failure with the same wallet and
/// key.
#[allow(clippy::too_many_arguments)]
pub async fn recover_phone<C: KeystoreChain>(
    client: &WalletClient,
    chain: &C,
    contract: Address,
    server_key: &PublicIdentityKey,
    wallet: &PrivateKeySigner,
    identity: &IdentityKey,
    number: &NumberRequest,
    receipt: Receipt,
    timeout: Duration,
) -> Result<OnboardingStatus, ClientError> {
    let start = Start::Recover(number);
    let phone = Phone {
        client,
        chain,
        contract,
        server_key,
        wallet,
        identity,
    };
    phone.run(start, receipt, timeout).await
}

/// The whole onboarding of a phone, Fig. 2: send the sealed receipt (with the number asked for
/// and any one-time code), learn the number the server decided, wait for the Ether, put the key
/// on chain with `addClient` from the new wallet, ask for approval with a proof of possession of
/// the identity key, wait until provisioned. The answer's `phone` is the number. Safe to call
/// again after any failure: every step is idempotent on both sides.
#[allow(clippy::too_many_arguments)]
pub async fn onboard_phone<C: KeystoreChain>(
    client: &WalletClient,
    chain: &C,
    contract: Address,
    server_key: &PublicIdentityKey,
    wallet: &PrivateKeySigner,
    identity: &IdentityKey,
    number: &NumberRequest,
    receipt: Receipt,
    timeout: Duration,
) -> Result<OnboardingStatus, ClientError> {
    let phone = Phone {
        client,
        chain,
        contract,
        server_key,
        wallet,
        identity,
    };
    phone.run(Start::Onboard(number), receipt, timeout).await
}

/// How the phone's first request to the server goes.
enum Start<'a> {
    /// `/v1/onboard` for the number asked for (or the next free one).
    Onboard(&'a NumberRequest),
    /// `/v1/recover` of `number`.
    Recover(&'a NumberRequest),
}

/// The phone's side of onboarding and recovery.
struct Phone<'a, C> {
    client: &'a WalletClient,
    chain: &'a C,
    contract: Address,
    server_key: &'a PublicIdentityKey,
    wallet: &'a PrivateKeySigner,
    identity: &'a IdentityKey,
}

impl<C: KeystoreChain> Phone<'_, C> {
    /// The first request (`start`), then: wait for the Ether, `addClient`, approval with a proof
    /// of possession, wait until provisioned.
    async fn run(
        &self,
        start: Start<'_>,
        receipt: Receipt,
        timeout: Duration,
    ) -> Result<OnboardingStatus, ClientError> {
        let Self {
            client,
            chain,
            contract,
            server_key,
            wallet,
            identity,
        } = *self;
        let purchase: Purchase = serde_json::from_str(&receipt.original_json)
            .map_err(|e| ClientError::Invalid(format!("receipt JSON: {e}")))?;
        let public = identity.public();
        let (first, number) = match start {
            Start::Onboard(number) => {
                let asked = if number.phone.trim().is_empty() {
                    String::new()
                } else {
                    parse_number(&number.phone)?.as_str().to_owned()
                };
                let mut payload =
                    client.payload(wallet.address(), receipt.clone(), &asked, &public);
                if let Some(code) = &number.code {
                    payload = payload.with_code(code);
                }
                let first = client.onboard(server_key, &payload).await?;
                let phone = first
                    .phone
                    .as_deref()
                    .ok_or_else(|| ClientError::Decode("the answer names no number".into()))?;
                let decided = PhoneNumber::parse(phone).map_err(|e| {
                    ClientError::Decode(format!("the server's number {phone:?}: {e}"))
                })?;
                if !asked.is_empty() && asked != decided.as_str() {
                    return Err(ClientError::Decode(format!(
                        "asked for {asked}, the server recorded {decided} for this receipt"
                    )));
                }
                (first, decided)
            }
            Start::Recover(number) => {
                let phone = parse_number(&number.phone)?;
                let id = ClientId::of(&IdentityName::Phone(phone.clone()));
                let mut payload = client
                    .payload(wallet.address(), receipt.clone(), phone.as_str(), &public)
                    .with_proof(identity, &id, &purchase.chain_receipt_hash())
                    .recovering();
                if let Some(code) = &number.code {
                    payload = payload.with_code(code);
                }
                (client.recover(server_key, &payload).await?, phone)
            }
        };
        if !first.is_funded() {
            client
                .wait_for(&first.receipt_id, "funded", |s| s.is_funded(), timeout)
                .await?;
        }
        match add_client_once(chain, contract, wallet, &public, &number, &purchase).await {
            Ok(()) => {}
            // Another wallet's pending entry holds the number (a squatter). Ask for approval anyway:
            // the server, having verified the number for this wallet, reserves it for us and answers
            // `number_reserved`; then `addClient` goes through.
            Err(ClientError::Chain(ChainError::AlreadyPending { .. })) => {}
            Err(e) => return Err(e),
        }
        let id = ClientId::of(&IdentityName::Phone(number.clone()));
        let receipt_hash = purchase.chain_receipt_hash();
        let deadline = tokio::time::Instant::now() + timeout;
        let mut delay = Duration::from_millis(100);
        let mut resubmitted = false;
        let status = loop {
            let payload = client
                .payload(wallet.address(), receipt.clone(), number.as_str(), &public)
                .with_proof(identity, &id, &receipt_hash);
            match client.approve(server_key, &payload).await {
                Ok(s) => break s,
                // Once: a second reservation would mean another verified claim to the number.
                Err(e) if e.code() == Some("number_reserved") && !resubmitted => {
                    resubmitted = true;
                    add_client_once(chain, contract, wallet, &public, &number, &purchase).await?;
                }
                Err(e)
                    if matches!(e.code(), Some("chain_unavailable" | "rate_limited"))
                        && tokio::time::Instant::now() < deadline =>
                {
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
                Err(e) => return Err(e),
            }
        };
        if status.state == State::Provisioned {
            return Ok(status);
        }
        let done = client
            .wait_for(
                &status.receipt_id,
                "provisioned",
                |s| s.state == State::Provisioned,
                timeout,
            )
            .await?;
        // `/v1/status` answers without the wallet and transactions (it is unauthenticated); they come
        // from the authenticated approval answer.
        Ok(OnboardingStatus {
            phone: Some(number.as_str().to_owned()),
            wallet: status.wallet,
            fund_amount_wei: status.fund_amount_wei,
            fund_tx_hash: status.fund_tx_hash,
            approve_tx_hash: status.approve_tx_hash,
            ..done
        })
    }
}

fn parse_number(text: &str) -> Result<PhoneNumber, ClientError> {
    PhoneNumber::parse(text).map_err(|e| ClientError::Invalid(e.to_string()))
}

/// Sends `addClient` from the phone's wallet unless its pending entry is already on chain.
pub async fn add_client_once<C: KeystoreChain>(
    chain: &C,
    contract: Address,
    wallet: &PrivateKeySigner,
    identity: &PublicIdentityKey,
    number: &PhoneNumber,
    purchase: &Purchase,
) -> Result<(), ClientError> {
    let id = ClientId::of(&IdentityName::Phone(number.clone()));
    let entry = chain.get_client(contract, id).await?;
    let ours = entry.wallet == Some(wallet.address())
        && entry.public_key().ok().as_ref() == Some(identity);
    if ours && matches!(entry.status, KeyStatus::Pending | KeyStatus::Approved) {
        return Ok(());
    }
    let commitment =
        chaincall_chain::receipt_commitment(&id, wallet.address(), &purchase.chain_receipt_hash());
    chain
        .add_client(
            contract,
            wallet,
            id,
            identity.tag(),
            &identity.to_bytes(),
            commitment,
        )
        .await?;
    Ok(())
}
