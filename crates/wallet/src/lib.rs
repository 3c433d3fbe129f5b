//! chaincall's wallet-management server (seeds/000 §III.A.3): it turns a paid store purchase into
//! a funded phone wallet, an approved keystore entry and SIP credentials — and never funds twice,
//! never loses a paid request, never approves the wrong key.
//!
//! | module | what |
//! | --- | --- |
//! | [`receipt`] | Google Play receipts: `SHA1withRSA` verification exactly as Play's `Security.verifyPurchase`, and a store key for issuing test receipts |
//! | [`payload`] | the sealed (ECIES to the server's on-chain key) onboarding and approval payloads, why one-sided encryption suffices, and the proof of possession of the identity key |
//! | [`number`] | number ownership: the [`number::NumberVerifier`] trait, operator-assigned numbers, one-time codes by SMS over SMPP 3.4 |
//! | [`db`] | the durable state machine (SQLite or PostgreSQL through sqlx `Any`, migrations) |
//! | [`machine`] | the onboarding's decisions as a sans-IO state machine: one transaction lifecycle for funding and approval, recorded before broadcast |
//! | [`chain`] | what the server needs beyond `chaincall_chain::KeystoreChain`: raw transactions recorded before broadcast, nonces, fees, transaction state |
//! | [`service`] | the engine: request checks, steps, the single signer task, the retry worker |
//! | [`subscriber`] | SIP credentials in a Kamailio-compatible `subscriber` table: HA1 hashes only |
//! | [`credentials`] | SIP passwords: per-subscriber derivation, rotation, `/v1/credentials` signed by the on-chain key |
//! | [`api`] | the axum HTTP API, rate limits, admin token, OpenAPI |
//! | [`server`] | assembling and running it from a [`config::WalletConfig`] |
//! | [`admin_client`] | the operator's side: the admin API's client and the tables `chaincall wallet admin` prints |
//! | `admin_cli` | `chaincall wallet admin`'s arguments and runner (feature `cli`) |
//! | [`client`] | the phone's side: HTTP client and [`client::onboard_phone`], [`WalletClient::sip_password`] |
//! | [`testing`] | helpers for tests and demos: configuration files, test purchases, on-chain counts |
//! | [`wire`] | the onboarding [`wire::State`] and [`OnboardingStatus`] server and client exchange |
//!
//! The cargo feature `server` (on by default) builds the server: `api`, `chain`, `config`, `db`,
//! `dev_store`, `machine`, `number`, `server`, `service`, `subscriber`, `testing` and their
//! dependencies (axum, sqlx, the SMPP client). Without it (`default-features = false`) the crate is
//! the phone's side only: [`admin_client`], [`client`], [`credentials`]' request and answer, [`error`]'s wire body,
//! [`payload`], [`receipt`] and [`wire`].
//!
//! The onboarding of one receipt: `received → funding → funded → pending_seen → approved →
//! provisioned` (or `failed` with a code). Between `funded` and `pending_seen` the phone sends
//! `addClient` from its new wallet with the Ether it received.
//!
//! Logs name receipts by order id and wallets by address; payloads, receipts, purchase tokens, SIP
//! passwords and keys are never logged.
#![forbid(unsafe_code)]

// The phone's side — the client and the wire types it exchanges — builds without the `server`
// feature, so an app embedding it links neither axum nor sqlx nor the SMS gateway.
pub mod admin_client;
pub mod client;
pub mod credentials;
pub mod error;
pub mod payload;
pub mod receipt;
pub mod wire;

#[cfg(feature = "cli")]
pub mod admin_cli;
#[cfg(feature = "server")]
pub mod api;
#[cfg(feature = "server")]
pub mod chain;
#[cfg(feature = "server")]
pub mod config;
#[cfg(feature = "server")]
pub mod db;
#[cfg(feature = "server")]
pub mod dev_store;
#[cfg(feature = "server")]
pub mod health;
#[cfg(feature = "server")]
pub mod machine;
#[cfg(feature = "server")]
pub mod number;
#[cfg(feature = "server")]
pub mod server;
#[cfg(feature = "server")]
pub mod service;
#[cfg(feature = "server")]
pub mod subscriber;
#[cfg(feature = "server")]
pub mod testing;

pub use client::{NumberRequest, WalletClient, onboard_phone, server_identity_key};
#[cfg(feature = "server")]
pub use config::WalletConfig;
pub use error::ApiError;
#[cfg(feature = "server")]
pub use service::Service;
pub use wire::OnboardingStatus;
