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
//! | [`client`] | the phone's side: HTTP client and [`client::onboard_phone`], [`WalletClient::sip_password`] |
//! | [`testing`] | helpers for tests and demos: configuration files, test purchases, on-chain counts |
//!
//! The onboarding of one receipt: `received → funding → funded → pending_seen → approved →
//! provisioned` (or `failed` with a code). Between `funded` and `pending_seen` the phone sends
//! `addClient` from its new wallet with the Ether it received.
//!
//! Logs name receipts by order id and wallets by address; payloads, receipts, purchase tokens, SIP
//! passwords and keys are never logged.
#![forbid(unsafe_code)]

pub mod api;
pub mod chain;
pub mod client;
pub mod config;
pub mod credentials;
pub mod db;
pub mod dev_store;
pub mod error;
pub mod machine;
pub mod number;
pub mod payload;
pub mod receipt;
pub mod server;
pub mod service;
pub mod subscriber;
pub mod testing;

pub use client::{NumberRequest, WalletClient, onboard_phone, server_identity_key};
pub use config::WalletConfig;
pub use error::ApiError;
pub use service::{OnboardingStatus, Service};
