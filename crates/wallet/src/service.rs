//! The onboarding engine: verifies requests, moves each receipt through its recorded states, and
//! owns the one signer task through which every transaction of the server wallet goes.
//!
//! # Durability rules
//! The decisions for funding and approval transactions are made by the sans-IO
//! [`crate::machine::TxMachine`] (one lifecycle for both); this module executes them.
//! - A state changes only by a conditional `UPDATE … WHERE state = <expected>`; a step that finds
//!   its row already moved does nothing. Every step can therefore be repeated.
//! - Funding: the transfer is signed first, its bytes and hash recorded (`received → funding`), and
//!   only then broadcast. After a crash the recorded bytes are rebroadcast (the nonce makes them
//!   mine at most once) or, if the chain shows the nonce taken by another transaction and none of
//!   the recorded versions was mined, dropped and signed anew — a second funding transaction
//!   exists only when the first can never be mined.
//! - Approval: before signing `approveClient`, the chain entry is read; an entry already approved
//!   for this wallet and key (a crash after sending) counts as done. The call is estimated (a
//!   revert is caught there, decoded, and nothing is sent), signed, recorded like the funding
//!   transfer (`approve_tx`, bytes and hash) and only then broadcast; after a crash the recorded
//!   bytes are followed, never a second approval signed beside them.
//! - Fee bumping: a funding or approval transaction still unmined `fees.replace_after_secs` after
//!   it was signed is replaced: same nonce, recipient, value, data and gas limit, both fees raised
//!   by at least `fees.bump_percent` (≥ 13 %, above geth's 10 % and the 12.5 % rule) and never below
//!   the current quote. The replacement is recorded before broadcast and the old version kept as
//!   `replaced`: whichever version the chain mines settles the row, since all share one nonce.
//! - SIP credentials are an upsert: writing them twice writes the same row.
//! - Transient faults (node down, server wallet short of funds, fees above the cap) leave the row
//!   in place with `last_error` and a back-off; the worker retries. Only faults that no retry can
//!   fix mark a row `failed`, and an administrator can still retry it.
//! - Device recovery (`/v1/recover`): every check (the original receipt's provisioned row, the
//!   number, proof of possession of the new key, a fresh number-ownership proof) comes first and
//!   refuses without changing anything. Accepting is one conditional update (`provisioned →
//!   recovering`, with the new wallet and key, and the recovery recorded); the worker then removes
//!   the old SIP row, revokes the old entry and reserves the number for the new wallet — each
//!   step decided from what the chain shows, so a rerun skips what is done — and only then moves
//!   the row to `received`, from where it is funded once like any onboarding.
//! - An approval request that arrives while the chain cannot be read is recorded
//!   (`approve_requested_at`) and answered 202 with `last_error_code = chain_unavailable`; the
//!   worker re-checks the pending entry with back-off and approves once the node answers, so the
//!   phone need not ask again. A mismatch found then drops the queued request with its code.

use std::collections::HashSet;
use std::net::IpAddr;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use alloy::primitives::{Address, B256, Bytes, U256};
use alloy::sol_types::SolCall;
use chaincall_chain::contract::IKeystore;
use chaincall_chain::{ChainError, ClientEntry, ClientId, PrivateKeySigner};
use chaincall_identity::{IdentityKey, IdentityName, KeyStatus, PhoneNumber, PublicIdentityKey};
use tokio::sync::{mpsc, oneshot};

use crate::chain::{
    FeeQuote, ServerChain, TxState, bumped_fees, decode_eip1559, resign_with_fees, sign_call,
    sign_transfer,
};
use crate::db::{Db, DbError, Inserted, Onboarding, Recovery, State, Timestamp, TxPurpose, now_ms};
use crate::error::ApiError;
use crate::machine::{Stage, Tx, TxAction, TxMachine, stage};
use crate::number::{CodeRequest, NumberClaim, NumberVerifier};
use crate::payload::{
    APPROVE_CONTEXT, CODE_CONTEXT, ONBOARD_CONTEXT, OnboardPayload, RECOVER_CONTEXT, SealedRequest,
    verify_possession,
};
use crate::receipt::{Purchase, ReceiptPolicy};
use crate::subscriber::SubscriberTable;
pub use crate::wire::{AdminOnboarding, OnboardingStatus, RecoveryGrant, RevokeOutcome};

/// How long the operator's authorisation to recover a number holds when the admin request names no
/// `ttl_secs`.
pub const RECOVERY_GRANT_TTL: Duration = Duration::from_secs(24 * 3600);

/// What a step could not do.
#[derive(Debug)]
enum StepError {
    /// Try again later (chain down, wallet short of funds, fees above the cap); `code` is the
    /// machine-readable reason stored with the row.
    Transient { code: &'static str, message: String },
    /// No retry can fix it; the row is marked failed with this code.
    Permanent { code: &'static str, message: String },
    /// The state database failed.
    Db(DbError),
}

impl From<DbError> for StepError {
    fn from(e: DbError) -> Self {
        Self::Db(e)
    }
}

fn transient(e: &ChainError) -> StepError {
    let code = match e {
        ChainError::NodeDown { .. } => "chain_unavailable",
        _ => "chain_error",
    };
    StepError::Transient {
        code,
        message: e.to_string(),
    }
}

fn retry_later(code: &'static str, message: impl Into<String>) -> StepError {
    StepError::Transient {
        code,
        message: message.into(),
    }
}

/// The fixed parts of the service.
#[derive(Debug, Clone)]
pub struct ServiceSettings {
    /// The keystore contract.
    pub contract: Address,
    /// Receipts accepted.
    pub policy: ReceiptPolicy,
    /// SIP domain written to `subscriber.domain`.
    pub sip_domain: String,
    /// Digest realm.
    pub realm: String,
    /// Measured addClient gas.
    pub add_client_gas: u64,
    /// Funding margin, percent.
    pub safety_margin_percent: u64,
    /// Funding cap, wei.
    pub max_fund_wei: U256,
    /// Accepted clock skew of payloads.
    pub max_clock_skew: Duration,
    /// How long a request waits for chain work.
    pub request_wait: Duration,
    /// The admin bearer token (admin endpoints off when `None`).
    pub admin_token: Option<String>,
    /// A funding or approval transaction unmined this long after signing is replaced.
    pub replace_after: Duration,
    /// Each replacement raises both fees by at least this percentage.
    pub bump_percent: u64,
}

impl OnboardingStatus {
    fn of(row: &Onboarding) -> Self {
        let next = match row.state {
            State::Received
            | State::Funding
            | State::PendingSeen
            | State::Approved
            | State::Recovering => "wait",
            State::Funded if row.approve_requested_at.is_some() => "wait",
            State::Funded => "add_client_then_approve",
            State::Provisioned => "done",
            State::Failed | State::Revoked => "contact_support",
        };
        Self {
            receipt_id: row.receipt_id.clone(),
            state: row.state,
            wallet: row.wallet.to_checksum(None),
            fund_amount_wei: row.fund_amount.map(|a| a.to_string()),
            fund_tx_hash: row.fund_tx_hash.map(|h| h.to_string()),
            approve_tx_hash: row.approve_tx_hash.map(|h| h.to_string()),
            next: next.to_owned(),
            last_error: row.last_error.clone(),
            last_error_code: row.last_error_code.clone(),
            approval_queued: row.state == State::Funded && row.approve_requested_at.is_some(),
            failure_code: row.failure_code.clone(),
            phone: Some(row.phone.clone()),
        }
    }

    /// What an unauthenticated `GET /v1/status` may answer: state, next step and error codes; no
    /// number, wallet, amount, transaction or error message.
    fn public(self) -> Self {
        Self {
            phone: None,
            wallet: String::new(),
            fund_amount_wei: None,
            fund_tx_hash: None,
            approve_tx_hash: None,
            last_error: None,
            ..self
        }
    }
}

/// Built from a database row here; the type lives in [`crate::wire`] for clients without the
/// `server` feature.
impl AdminOnboarding {
    fn of(row: &Onboarding) -> Self {
        Self {
            // The number is this type's own `phone`: the flattened status must not write the key a
            // second time (a JSON object with a duplicate key, which strict parsers refuse).
            status: OnboardingStatus {
                phone: None,
                ..OnboardingStatus::of(row)
            },
            phone: row.phone.clone(),
            public_key: hex::encode(&row.public_key),
            failure_message: row.failure_message.clone(),
            attempts: i64::from(row.attempts),
            created_at: row.created_at.as_millis(),
            updated_at: row.updated_at.as_millis(),
            provisioned_at: row.provisioned_at.map(Timestamp::as_millis),
        }
    }
}

enum Job {
    Fund {
        receipt_id: String,
        reply: oneshot::Sender<Result<(), StepError>>,
    },
    Approve {
        row: Box<Onboarding>,
        reply: oneshot::Sender<Result<Option<B256>, StepError>>,
    },
    Revoke {
        id: ClientId,
        reply: oneshot::Sender<Result<Option<B256>, ChainError>>,
    },
    /// `reserveClient(id, wallet)`: replaces a squatter's pending entry with a reservation.
    Reserve {
        id: ClientId,
        wallet: Address,
        reply: oneshot::Sender<Result<B256, ChainError>>,
    },
}

/// What signing a new transaction came to.
enum Signing {
    /// Signed, not recorded yet; the funding transfer's value.
    Tx(Tx, Option<U256>),
    /// Nothing to send: the chain shows the work done (approval: the entry is approved already,
    /// with the approving transaction if the audit events name it).
    Done(Option<B256>),
}

/// The signer task's state: the only holder of the server wallet's key.
struct Signer<C> {
    chain: Arc<C>,
    db: Db,
    key: PrivateKeySigner,
    settings: ServiceSettings,
}

/// The wallet server's engine, shared by the HTTP handlers and the worker.
pub struct Service<C: ServerChain> {
    chain: Arc<C>,
    db: Db,
    identity: IdentityKey,
    sip: SubscriberTable,
    numbers: Arc<dyn NumberVerifier>,
    settings: ServiceSettings,
    server_address: Address,
    jobs: mpsc::Sender<Job>,
    busy: Mutex<HashSet<String>>,
    /// Chain calls that failed and deferred a step, since start (`/metrics`).
    chain_errors: AtomicU64,
}

impl<C: ServerChain> std::fmt::Debug for Service<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service")
            .field("server_address", &self.server_address)
            .field("contract", &self.settings.contract)
            .finish_non_exhaustive()
    }
}

/// Removes a receipt from the busy set when a drive ends, however it ends.
struct BusyGuard<'a> {
    set: &'a Mutex<HashSet<String>>,
    id: String,
}

impl Drop for BusyGuard<'_> {
    fn drop(&mut self) {
        self.set
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.id);
    }
}

/// How many worker passes a queued approval request waits for the phone's pending entry to
/// appear (with back-off: about half an hour) before it is dropped with `pending_entry_missing`.
const MAX_PENDING_WAITS: u32 = 40;

/// How long the worker waits before it tries a row again after `attempts` failures: 0.5 s,
/// doubling, at most a minute.
fn backoff(attempts: u32) -> Duration {
    (Duration::from_millis(500) * (1 << attempts.min(7))).min(Duration::from_secs(60))
}

fn same_key(entry: &ClientEntry, row: &Onboarding) -> bool {
    entry.key_type == row.key_type && entry.key[..] == row.public_key[..]
}

fn same_wallet(entry: &ClientEntry, row: &Onboarding) -> bool {
    entry.wallet == Some(row.wallet)
}

fn client_id(phone: &str) -> Result<ClientId, StepError> {
    let number = PhoneNumber::parse(phone).map_err(|e| StepError::Permanent {
        code: "invalid_phone",
        message: e.to_string(),
    })?;
    Ok(ClientId::of(&IdentityName::Phone(number)))
}

/// An `approveClient` that the chain refuses: contract errors are final, the rest transient.
fn approval_error(e: ChainError) -> StepError {
    match e {
        ChainError::ReceiptMismatch { .. } => StepError::Permanent {
            code: "receipt_mismatch",
            message:
                "the pending entry's receipt commitment does not match this receipt and wallet"
                    .into(),
        },
        e if e.is_contract_error() => StepError::Permanent {
            code: "approval_refused",
            message: e.to_string(),
        },
        e => transient(&e),
    }
}

impl<C: ServerChain> Signer<C> {
    async fn run(self, mut jobs: mpsc::Receiver<Job>) {
        while let Some(job) = jobs.recv().await {
            match job {
                Job::Fund { receipt_id, reply } => {
                    let _ = reply.send(self.fund(&receipt_id).await);
                }
                Job::Approve { row, reply } => {
                    let _ = reply.send(self.approve(&row).await);
                }
                Job::Revoke { id, reply } => {
                    let _ = reply.send(self.revoke(id).await);
                }
                Job::Reserve { id, wallet, reply } => {
                    let _ = reply.send(
                        self.chain
                            .reserve_client(self.settings.contract, &self.key, id, wallet)
                            .await
                            .map(|out| out.tx_hash),
                    );
                }
            }
        }
    }

    fn amount(&self, fees: FeeQuote) -> U256 {
        // Gas limit the phone will set (estimate + 20 %, as chaincall-chain does), times the max fee
        // the node requires it to cover, times the safety margin.
        let gas =
            U256::from(self.settings.add_client_gas) * U256::from(120u64) / U256::from(100u64);
        gas * U256::from(fees.max_fee_per_gas) * U256::from(self.settings.safety_margin_percent)
            / U256::from(100u64)
    }

    /// Drives `received`/`funding` to `funded`. See the module docs for why this never funds twice.
    async fn fund(&self, receipt_id: &str) -> Result<(), StepError> {
        self.run_tx(TxPurpose::Funding, receipt_id)
            .await
            .map(|_| ())
    }

    /// Drives the approval of a `pending_seen` row: follows an in-flight `approveClient` (replacing
    /// it with higher fees when it stays unmined), or — unless the chain shows the entry already
    /// approved for this wallet and key — signs one, records it and only then broadcasts it.
    async fn approve(&self, snapshot: &Onboarding) -> Result<Option<B256>, StepError> {
        self.run_tx(TxPurpose::Approval, &snapshot.receipt_id).await
    }

    /// The recorded in-flight transaction of `purpose`, read back from the row, if any.
    async fn recorded_tx(
        &self,
        purpose: TxPurpose,
        row: &Onboarding,
    ) -> Result<Option<Tx>, StepError> {
        let receipt_id = row.receipt_id.as_str();
        let (hash, nonce, raw) = match purpose {
            TxPurpose::Funding => (row.fund_tx_hash, row.fund_nonce, &row.fund_raw_tx),
            TxPurpose::Approval => (row.approve_tx_hash, row.approve_nonce, &row.approve_raw_tx),
        };
        let (Some(hash), Some(nonce), Some(raw)) = (hash, nonce, raw) else {
            if purpose == TxPurpose::Funding && row.state == State::Funding {
                return Err(StepError::Db(DbError::Corrupt {
                    receipt_id: receipt_id.to_owned(),
                    what: "funding row without its transaction",
                }));
            }
            return Ok(None);
        };
        let signed_at_ms = self
            .db
            .tx_versions(purpose, receipt_id)
            .await?
            .iter()
            .find(|v| v.tx_hash == hash)
            .map(|v| v.created_at.as_millis());
        Ok(Some(Tx {
            hash,
            nonce,
            raw: raw.clone(),
            signed_at_ms,
        }))
    }

    /// Executes the [`TxMachine`] of `purpose` for a receipt: up to four passes, each rebuilt
    /// from the database. Returns the mined transaction (approval: `None` when the entry was
    /// already approved and the approval transaction is not in the audit events).
    async fn run_tx(
        &self,
        purpose: TxPurpose,
        receipt_id: &str,
    ) -> Result<Option<B256>, StepError> {
        let me = self.key.address();
        let replace_after_ms =
            i64::try_from(self.settings.replace_after.as_millis()).unwrap_or(i64::MAX);
        'pass: for _ in 0..4 {
            let Some(row) = self.db.get(receipt_id).await? else {
                return Ok(None);
            };
            let driven = match purpose {
                TxPurpose::Funding => matches!(row.state, State::Received | State::Funding),
                TxPurpose::Approval => row.state == State::PendingSeen,
            };
            if !driven {
                return Ok(None);
            }
            let mut machine =
                TxMachine::new(self.recorded_tx(purpose, &row).await?, replace_after_ms);
            let mut amount = row.fund_amount;
            let mut confirm_deadline = None;
            let mut delay = Duration::from_millis(10);
            loop {
                match machine.next(now_ms()) {
                    TxAction::Sign => match self.sign_new(purpose, &row).await? {
                        Signing::Done(hash) => return Ok(hash),
                        Signing::Tx(tx, value) => {
                            amount = value;
                            machine.signed(tx);
                        }
                    },
                    TxAction::Replace(tx) => {
                        let quote = self.chain.fee_quote().await.map_err(|e| transient(&e))?;
                        machine.signed(self.replacement(receipt_id, &tx, quote)?);
                    }
                    TxAction::Record { tx, replaces } => {
                        let value = amount.filter(|_| purpose == TxPurpose::Funding);
                        let done = match replaces {
                            Some(old) => {
                                self.db
                                    .record_replacement(
                                        purpose, receipt_id, old, tx.hash, &tx.raw, tx.nonce, value,
                                    )
                                    .await?
                            }
                            None => {
                                let version = (tx.nonce, tx.hash, &tx.raw[..], value);
                                self.db.record_tx(purpose, receipt_id, version).await?
                            }
                        };
                        if !done {
                            if replaces.is_some() {
                                return Err(retry_later(
                                    "state_moved",
                                    "the transaction changed while it was being replaced; will look again",
                                ));
                            }
                            continue 'pass;
                        }
                        tracing::info!(receipt_id, ?purpose, tx = %tx.hash, nonce = tx.nonce, replaces = ?replaces, "transaction recorded");
                        machine.recorded();
                    }
                    TxAction::Broadcast { tx, fresh } => {
                        if let Err(e) = self.chain.broadcast(tx.raw.clone()).await {
                            if matches!(e, ChainError::NodeDown { .. }) {
                                // It may or may not have reached the node: keep it, resend later.
                                return Err(transient(&e));
                            }
                            if !fresh {
                                // Maybe mined meanwhile, maybe superseded: the next pass decides.
                                tracing::warn!(receipt_id, ?purpose, error = %e, "rebroadcast refused");
                                continue 'pass;
                            }
                            // Refused outright (or, on the embedded chain, mined and reverted):
                            // it is in no mempool and can never be mined; forget it.
                            self.db.tx_dropped(purpose, receipt_id, tx.hash).await?;
                            return Err(match purpose {
                                TxPurpose::Funding => transient(&e),
                                TxPurpose::Approval => approval_error(e),
                            });
                        }
                        machine.sent();
                        confirm_deadline = Some(tokio::time::Instant::now() + self.confirm_wait());
                    }
                    TxAction::Query(tx) => {
                        let state = self.chain.tx_state(tx.hash, me, tx.nonce).await;
                        machine.observed(state.map_err(|e| transient(&e))?);
                    }
                    TxAction::Confirm(tx) => {
                        if confirm_deadline.is_some_and(|d| tokio::time::Instant::now() >= d) {
                            let (code, what) = match purpose {
                                TxPurpose::Funding => ("funding_not_mined", "funding"),
                                TxPurpose::Approval => ("approval_not_mined", "approval"),
                            };
                            return Err(retry_later(
                                code,
                                format!("{what} transaction {} not mined yet", tx.hash),
                            ));
                        }
                        let state = self.chain.tx_state(tx.hash, me, tx.nonce).await;
                        let state = state.map_err(|e| transient(&e))?;
                        if state == TxState::NotMined {
                            tokio::time::sleep(delay).await;
                            delay = (delay * 2).min(Duration::from_millis(500));
                        }
                        machine.observed(state);
                    }
                    TxAction::FindEarlier(tx) => {
                        machine.earlier(self.mined_version(purpose, receipt_id, tx.nonce).await?);
                    }
                    TxAction::Drop(tx) => {
                        tracing::warn!(receipt_id, ?purpose, tx = %tx.hash, "recorded transaction can never be mined; signing anew");
                        self.db.tx_dropped(purpose, receipt_id, tx.hash).await?;
                        if confirm_deadline.is_some() {
                            return Err(match purpose {
                                TxPurpose::Funding => retry_later(
                                    "funding_superseded",
                                    "funding transaction was superseded; signing anew",
                                ),
                                TxPurpose::Approval => retry_later(
                                    "approval_superseded",
                                    "the approval transaction reverted or was superseded; checking again",
                                ),
                            });
                        }
                        machine.dropped();
                    }
                    TxAction::Settle { hash, block } => {
                        match purpose {
                            TxPurpose::Funding => {
                                if self.db.funding_mined(receipt_id, hash, block).await? {
                                    tracing::info!(receipt_id, tx = %hash, block, "funding mined");
                                }
                            }
                            TxPurpose::Approval => {
                                tracing::info!(receipt_id, tx = %hash, "approveClient mined");
                            }
                        }
                        return Ok(Some(hash));
                    }
                }
            }
        }
        Err(match purpose {
            TxPurpose::Funding => {
                retry_later("funding_unsettled", "funding did not settle; will retry")
            }
            TxPurpose::Approval => {
                retry_later("approval_unsettled", "approval did not settle; will retry")
            }
        })
    }

    /// Checks the preconditions of a new transaction of `purpose` and signs it (not recorded yet).
    async fn sign_new(&self, purpose: TxPurpose, row: &Onboarding) -> Result<Signing, StepError> {
        match purpose {
            TxPurpose::Funding => self.sign_funding(row).await,
            TxPurpose::Approval => self.sign_approval(row).await,
        }
    }

    /// The funding transfer: only to an account without code, and only below the cap.
    async fn sign_funding(&self, row: &Onboarding) -> Result<Signing, StepError> {
        let wallet = row.wallet;
        let code = self
            .chain
            .code_at(wallet)
            .await
            .map_err(|e| transient(&e))?;
        if !code.is_empty() {
            return Err(StepError::Permanent {
                code: "wallet_not_eoa",
                message: "the wallet address holds contract code".into(),
            });
        }
        let fees = self.chain.fee_quote().await.map_err(|e| transient(&e))?;
        let amount = self.amount(fees);
        if amount > self.settings.max_fund_wei {
            return Err(retry_later(
                "fees_above_cap",
                format!(
                    "funding would be {amount} wei, above the {} wei cap; waiting for lower fees",
                    self.settings.max_fund_wei
                ),
            ));
        }
        let nonce = self
            .chain
            .next_nonce(self.key.address())
            .await
            .map_err(|e| transient(&e))?;
        let (hash, raw) = sign_transfer(
            &self.key,
            self.chain.chain_id(),
            nonce,
            wallet,
            amount,
            fees,
        )
        .map_err(|e| transient(&e))?;
        Ok(Signing::Tx(Tx::signed(hash, nonce, raw), Some(amount)))
    }

    /// `approveClient`, unless the chain shows the entry approved for this wallet and key already
    /// (a crash after sending); estimated first, so a revert is caught and nothing is sent.
    async fn sign_approval(&self, row: &Onboarding) -> Result<Signing, StepError> {
        let me = self.key.address();
        let id = client_id(&row.phone)?;
        let contract = self.settings.contract;
        let entry = self
            .chain
            .get_client(contract, id)
            .await
            .map_err(|e| transient(&e))?;
        match entry.status {
            KeyStatus::Approved if same_wallet(&entry, row) && same_key(&entry, row) => {
                // Approved before a crash let us record it: take the hash from the audit events.
                let history = self.chain.history(contract, id).await.unwrap_or_default();
                return Ok(Signing::Done(
                    history
                        .iter()
                        .rev()
                        .find(|e| e.change.name() == "approved")
                        .map(|e| e.tx_hash),
                ));
            }
            KeyStatus::Pending if same_wallet(&entry, row) && same_key(&entry, row) => {}
            KeyStatus::Pending => {
                return Err(StepError::Permanent {
                    code: "pending_entry_changed",
                    message: "the pending entry no longer matches the recorded wallet and key"
                        .into(),
                });
            }
            KeyStatus::Approved => {
                return Err(StepError::Permanent {
                    code: "number_taken",
                    message: "the number is approved for another wallet or key".into(),
                });
            }
            _ => {
                return Err(StepError::Permanent {
                    code: "pending_entry_missing",
                    message: format!("the entry is {}", entry.status.as_str()),
                });
            }
        }
        let input: Bytes = IKeystore::approveClientCall {
            id: *id.as_b256(),
            receiptHash: row.receipt_hash,
        }
        .abi_encode()
        .into();
        let gas = self
            .chain
            .estimate_gas(me, contract, input.clone())
            .await
            .map_err(approval_error)?;
        let nonce = self.chain.next_nonce(me).await.map_err(|e| transient(&e))?;
        let fees = self.chain.fee_quote().await.map_err(|e| transient(&e))?;
        // Headroom as chaincall-chain gives its own sends: state may move before inclusion.
        let (hash, raw) = sign_call(
            &self.key,
            self.chain.chain_id(),
            nonce,
            contract,
            input,
            gas + gas / 5,
            fees,
        )
        .map_err(|e| transient(&e))?;
        Ok(Signing::Tx(Tx::signed(hash, nonce, raw), None))
    }

    /// How long one pass waits for a broadcast transaction before handing the signer back (the
    /// next pass may replace it).
    fn confirm_wait(&self) -> Duration {
        self.settings.replace_after.min(Duration::from_secs(60))
    }

    /// A replacement of the unmined `current` (same nonce, fees raised by `bump_percent`, never
    /// below the chain's current `quote`); the machine has it recorded before it is broadcast.
    fn replacement(
        &self,
        receipt_id: &str,
        current: &Tx,
        quote: FeeQuote,
    ) -> Result<Tx, StepError> {
        let old = decode_eip1559(&current.raw).ok_or_else(|| {
            StepError::Db(DbError::Corrupt {
                receipt_id: receipt_id.to_owned(),
                what: "recorded transaction is not EIP-1559",
            })
        })?;
        let fees = bumped_fees(
            FeeQuote {
                max_fee_per_gas: old.max_fee_per_gas,
                max_priority_fee_per_gas: old.max_priority_fee_per_gas,
            },
            quote,
            self.settings.bump_percent,
        );
        let (hash, raw) =
            resign_with_fees(&self.key, &current.raw, fees).map_err(|e| transient(&e))?;
        tracing::info!(
            receipt_id,
            old = %current.hash,
            new = %hash,
            nonce = current.nonce,
            max_fee_per_gas = fees.max_fee_per_gas,
            max_priority_fee_per_gas = fees.max_priority_fee_per_gas,
            "unmined transaction replaced with higher fees"
        );
        Ok(Tx::signed(hash, current.nonce, raw))
    }

    /// The version of `purpose` with `nonce` that is mined successfully, if any: `(hash, block)`.
    async fn mined_version(
        &self,
        purpose: TxPurpose,
        receipt_id: &str,
        nonce: u64,
    ) -> Result<Option<(B256, u64)>, StepError> {
        let me = self.key.address();
        for v in self.db.tx_versions(purpose, receipt_id).await? {
            if v.nonce != nonce {
                continue;
            }
            let hash = v.tx_hash;
            if let TxState::Mined {
                success: true,
                block,
            } = self
                .chain
                .tx_state(hash, me, nonce)
                .await
                .map_err(|e| transient(&e))?
            {
                return Ok(Some((hash, block)));
            }
        }
        Ok(None)
    }

    async fn revoke(&self, id: ClientId) -> Result<Option<B256>, ChainError> {
        let entry = self.chain.get_client(self.settings.contract, id).await?;
        match entry.status {
            KeyStatus::Pending | KeyStatus::Approved => {
                let out = self
                    .chain
                    .revoke_client(self.settings.contract, &self.key, id)
                    .await?;
                Ok(Some(out.tx_hash))
            }
            _ => Ok(None),
        }
    }
}

/// Everything a [`Service`] is built from.
pub struct ServiceParts<C> {
    /// Chain access.
    pub chain: Arc<C>,
    /// State database.
    pub db: Db,
    /// The server's identity key (payloads are sealed to it).
    pub identity: IdentityKey,
    /// The server wallet (keystore owner).
    pub wallet: PrivateKeySigner,
    /// SIP credentials table.
    pub sip: SubscriberTable,
    /// Who may claim which number (`chaincall_wallet::number`; an operator's own verifier plugs
    /// in here).
    pub numbers: Arc<dyn NumberVerifier>,
    /// Settings.
    pub settings: ServiceSettings,
}

impl<C: ServerChain> Service<C> {
    /// Builds the service and starts its signer task (on the current tokio runtime).
    pub fn start(parts: ServiceParts<C>) -> Arc<Self> {
        let (tx, rx) = mpsc::channel(256);
        let server_address = parts.wallet.address();
        let signer = Signer {
            chain: parts.chain.clone(),
            db: parts.db.clone(),
            key: parts.wallet,
            settings: parts.settings.clone(),
        };
        tokio::spawn(signer.run(rx));
        Arc::new(Self {
            chain: parts.chain,
            db: parts.db,
            identity: parts.identity,
            sip: parts.sip,
            numbers: parts.numbers,
            settings: parts.settings,
            server_address,
            jobs: tx,
            busy: Mutex::new(HashSet::new()),
            chain_errors: AtomicU64::new(0),
        })
    }

    /// The server wallet's address.
    pub fn server_address(&self) -> Address {
        self.server_address
    }

    /// The server's public identity key.
    pub fn identity_public(&self) -> PublicIdentityKey {
        self.identity.public()
    }

    /// The settings.
    pub fn settings(&self) -> &ServiceSettings {
        &self.settings
    }

    /// The state database.
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// The chain.
    pub fn chain(&self) -> &Arc<C> {
        &self.chain
    }

    /// How many chain calls failed and deferred a step since start (unreachable node or an
    /// error answer).
    pub fn chain_errors(&self) -> u64 {
        self.chain_errors.load(Ordering::Relaxed)
    }

    /// The number verifier.
    pub fn numbers(&self) -> &dyn NumberVerifier {
        &*self.numbers
    }

    /// The server's identity key (the SIP password key derives from it: [`crate::credentials`]).
    pub(crate) fn identity_key(&self) -> &IdentityKey {
        &self.identity
    }

    /// The SIP credentials table.
    pub(crate) fn sip(&self) -> &SubscriberTable {
        &self.sip
    }

    fn open(&self, context: &[u8], sealed: &SealedRequest) -> Result<OnboardPayload, ApiError> {
        OnboardPayload::open(&self.identity, context, sealed).ok_or(ApiError::Undecryptable)
    }

    /// Opens and checks a payload: freshness, replay, receipt, fields.
    async fn admit(
        &self,
        context: &[u8],
        sealed: &SealedRequest,
    ) -> Result<(OnboardPayload, Purchase, Onboarding), ApiError> {
        let payload = self.open(context, sealed)?;
        let now = now_ms() / 1000;
        let skew = i64::try_from(self.settings.max_clock_skew.as_secs()).unwrap_or(300);
        let ts = i64::try_from(payload.timestamp).unwrap_or(i64::MAX);
        if (now - ts).abs() > skew {
            return Err(ApiError::Expired);
        }
        if payload.nonce.len() != 32 || hex::decode(&payload.nonce).is_err() {
            return Err(ApiError::InvalidField {
                field: "nonce",
                reason: "must be 16 bytes of hex".into(),
            });
        }
        let purchase = self.settings.policy.verify(&payload.receipt)?;
        let wallet =
            Address::from_str(payload.wallet.trim()).map_err(|e| ApiError::InvalidField {
                field: "wallet",
                reason: e.to_string(),
            })?;
        if wallet == Address::ZERO {
            return Err(ApiError::InvalidField {
                field: "wallet",
                reason: "the zero address".into(),
            });
        }
        let key_bytes = hex::decode(payload.public_key.trim_start_matches("0x")).map_err(|e| {
            ApiError::InvalidField {
                field: "public_key",
                reason: e.to_string(),
            }
        })?;
        let key = PublicIdentityKey::from_tagged(payload.key_type, &key_bytes).map_err(|e| {
            ApiError::InvalidField {
                field: "public_key",
                reason: e.to_string(),
            }
        })?;
        // Only now, with a genuine receipt, is the nonce worth a row.
        let expires = (now + skew + 1) * 1000;
        if !self
            .db
            .remember_nonce(&payload.nonce, expires)
            .await
            .map_err(internal)?
        {
            return Err(ApiError::Replayed);
        }
        let now = Timestamp::now();
        let row = Onboarding {
            receipt_id: purchase.order_id.clone(),
            token_sha256: purchase.token_sha256(),
            receipt_hash: purchase.chain_receipt_hash(),
            product_id: purchase.product_id.clone(),
            purchase_time: Timestamp::from_millis(purchase.purchase_time),
            // As given: the number verifier decides it (`onboard`), or it must equal the
            // recorded one (`approve`).
            phone: payload.phone.trim().to_owned(),
            wallet,
            key_type: key.tag(),
            public_key: key.to_bytes().into(),
            created_at: now,
            updated_at: now,
            ..Onboarding::default()
        };
        Ok((payload, purchase, row))
    }

    /// `POST /v1/number/code`: sends a one-time code to the payload's number, bound to its key,
    /// wallet and receipt (verifiers with codes only). The receipt must be genuine and not yet
    /// bound, but is not consumed. `client_ip` is the address the server observed.
    pub async fn request_code(
        &self,
        sealed: &SealedRequest,
        client_ip: IpAddr,
    ) -> Result<(), ApiError> {
        let (payload, _, candidate) = self.admit(CODE_CONTEXT, sealed).await?;
        if payload.recover {
            // A code to recover the number this receipt provisioned: the receipt is meant to be
            // known here.
            self.recovery_row(&candidate).await?;
        } else if self
            .db
            .get(&candidate.receipt_id)
            .await
            .map_err(internal)?
            .is_some()
        {
            return Err(ApiError::ReceiptReused);
        }
        let phone = PhoneNumber::parse(&candidate.phone).map_err(|e| ApiError::InvalidField {
            field: "phone",
            reason: e.to_string(),
        })?;
        if !payload.recover {
            self.refuse_if_taken(&candidate).await?;
        }
        self.numbers
            .send_code(CodeRequest {
                phone: &phone,
                binding: binding_of(&candidate)?,
                client_ip,
                now_ms: now_ms(),
            })
            .await
    }

    /// `POST /v1/onboard`: decides the number (the [`NumberVerifier`]), records the receipt
    /// (once ever) and funds the wallet. Nothing is bound when the verifier refuses.
    pub async fn onboard(
        self: &Arc<Self>,
        sealed: &SealedRequest,
        client_ip: IpAddr,
    ) -> Result<(u16, OnboardingStatus), ApiError> {
        let (payload, _, mut candidate) = self.admit(ONBOARD_CONTEXT, sealed).await?;
        if let Some(row) = self.db.get(&candidate.receipt_id).await.map_err(internal)? {
            // A retry: the number was decided when the row was recorded.
            let asked = candidate.phone.as_str();
            let same_number = asked.is_empty()
                || PhoneNumber::parse(asked).is_ok_and(|p| p.as_str() == row.phone);
            let same = row.token_sha256 == candidate.token_sha256
                && same_number
                && row.wallet == candidate.wallet
                && row.public_key == candidate.public_key
                && row.key_type == candidate.key_type;
            if !same {
                tracing::warn!(receipt_id = %candidate.receipt_id, "receipt reuse refused");
                return Err(ApiError::ReceiptReused);
            }
            let row = self.drive_and_wait(&row.receipt_id).await?;
            return respond(&row);
        }
        self.refuse_contract_wallet(&candidate).await?;
        self.refuse_if_taken(&candidate).await?;
        let phone = self
            .numbers
            .claim(NumberClaim {
                receipt_id: &candidate.receipt_id,
                requested: &candidate.phone,
                binding: binding_of(&candidate)?,
                code: payload.code.as_deref().map(String::as_str),
                client_ip,
                now_ms: now_ms(),
            })
            .await?;
        candidate.phone = phone.as_str().to_owned();
        let row = match self.db.insert(&candidate).await.map_err(internal)? {
            Inserted::New(row) => {
                tracing::info!(receipt_id = %row.receipt_id, wallet = %row.wallet, phone = %row.phone, "receipt accepted");
                row
            }
            Inserted::Existing(row) => {
                let same = row.receipt_id == candidate.receipt_id
                    && row.token_sha256 == candidate.token_sha256
                    && row.phone == candidate.phone
                    && row.wallet == candidate.wallet
                    && row.public_key == candidate.public_key;
                if !same {
                    tracing::warn!(receipt_id = %candidate.receipt_id, "receipt reuse refused");
                    return Err(ApiError::ReceiptReused);
                }
                row
            }
        };
        let row = self.drive_and_wait(&row.receipt_id).await?;
        respond(&row)
    }

    /// `POST /v1/approve`: after the phone's `addClient`, checks the pending entry against the
    /// receipt's record and approves it, then writes the SIP credentials.
    pub async fn approve(
        self: &Arc<Self>,
        sealed: &SealedRequest,
    ) -> Result<(u16, OnboardingStatus), ApiError> {
        let (payload, _, candidate) = self.admit(APPROVE_CONTEXT, sealed).await?;
        let row = self
            .recorded_row(
                &candidate,
                ApiError::UnknownReceipt,
                ApiError::Mismatch { field: "phone" },
            )
            .await?;
        if row.wallet != candidate.wallet {
            return Err(ApiError::Mismatch { field: "wallet" });
        }
        if row.public_key != candidate.public_key || row.key_type != candidate.key_type {
            return Err(ApiError::Mismatch {
                field: "public_key",
            });
        }
        // Proof of possession: the declared key signed (id, wallet, receipt commitment). Refused
        // before anything changes, so a refusal burns nothing.
        self.check_possession(&row, payload.proof.as_deref().map(String::as_str))?;
        let row = match row.state {
            State::Received | State::Funding => {
                let row = self.drive_and_wait(&row.receipt_id).await?;
                if row.state != State::Funded {
                    return Err(ApiError::NotFunded);
                }
                row
            }
            _ => row,
        };
        match row.state {
            State::Funded => match self.see_pending(&row).await {
                Ok(()) => {}
                Err(ApiError::ChainUnavailable) => {
                    // Recorded and queued, not refused: the worker checks the pending entry and
                    // approves with back-off once the node answers again.
                    self.chain_errors.fetch_add(1, Ordering::Relaxed);
                    self.db
                        .queue_approval(
                            &row.receipt_id,
                            "chain_unavailable",
                            "the chain node is unreachable; the approval request is queued",
                            backoff(row.attempts),
                        )
                        .await
                        .map_err(internal)?;
                    tracing::warn!(receipt_id = %row.receipt_id, "chain unreachable: approval request queued");
                    let row = self
                        .db
                        .get(&row.receipt_id)
                        .await
                        .map_err(internal)?
                        .ok_or(ApiError::Internal)?;
                    return respond_approve(&row);
                }
                Err(e) => return Err(e),
            },
            State::Failed => {
                return Err(ApiError::Failed {
                    code: row.failure_code.clone().unwrap_or_default(),
                    message: row.failure_message.clone().unwrap_or_default(),
                });
            }
            State::Revoked => return Err(ApiError::Revoked),
            _ => {}
        }
        let row = self.drive_and_wait(&row.receipt_id).await?;
        respond_approve(&row)
    }

    /// `POST /v1/recover`: device recovery. A subscriber who lost the device's key file moves the
    /// number its original receipt provisioned to a new wallet and key. Refused, with nothing
    /// changed and nothing funded, unless the receipt's row is provisioned for that number, the
    /// payload proves possession of the new key, carries a SIP password, and the number verifier
    /// accepts a fresh ownership proof ([`NumberVerifier::prove_recovery`]: a new one-time code,
    /// or the operator's authorisation). Then the old SIP row is deleted, the old entry revoked,
    /// the number reserved for the new wallet and the wallet funded; the phone continues as in
    /// onboarding (`addClient`, `/v1/approve`). A repeated request for the same new wallet and key
    /// continues where the first stopped.
    pub async fn recover(
        self: &Arc<Self>,
        sealed: &SealedRequest,
        client_ip: IpAddr,
    ) -> Result<(u16, OnboardingStatus), ApiError> {
        let (payload, _, mut candidate) = self.admit(RECOVER_CONTEXT, sealed).await?;
        let row = self.recovery_row(&candidate).await?;
        if row.wallet == candidate.wallet {
            // This recovery was accepted before: carry on.
            let row = self.drive_and_wait(&row.receipt_id).await?;
            return respond(&row);
        }
        self.refuse_contract_wallet(&candidate).await?;
        candidate.phone = row.phone.clone();
        self.check_possession(&candidate, payload.proof.as_deref().map(String::as_str))?;
        self.numbers
            .prove_recovery(NumberClaim {
                receipt_id: &candidate.receipt_id,
                requested: &row.phone,
                binding: binding_of(&candidate)?,
                code: payload.code.as_deref().map(String::as_str),
                client_ip,
                now_ms: now_ms(),
            })
            .await?;
        let recovery = Recovery {
            receipt_id: row.receipt_id.clone(),
            wallet: candidate.wallet,
            old_wallet: row.wallet,
            old_key_type: row.key_type,
            old_public_key: row.public_key.clone(),
        };
        if self
            .db
            .begin_recovery(&recovery, &candidate)
            .await
            .map_err(internal)?
        {
            tracing::warn!(receipt_id = %row.receipt_id, phone = %row.phone, old_wallet = %row.wallet, wallet = %candidate.wallet, "device recovery accepted");
        }
        // Accepted now or by a concurrent request: the row says which recovery it follows.
        let row = self.recovery_row(&candidate).await?;
        if row.wallet != candidate.wallet {
            // Not accepted: this wallet recovered the number once before, so the recorded
            // recovery cannot be told from this one; a new device uses a new wallet.
            return Err(ApiError::RecoveryInProgress);
        }
        let row = self.drive_and_wait(&row.receipt_id).await?;
        respond(&row)
    }

    /// The recorded row of `candidate`'s receipt, for the number it names: `missing` when the
    /// receipt has no row, `wrong_number` when the row holds another number.
    async fn recorded_row(
        &self,
        candidate: &Onboarding,
        missing: ApiError,
        wrong_number: ApiError,
    ) -> Result<Onboarding, ApiError> {
        let row = self
            .db
            .get(&candidate.receipt_id)
            .await
            .map_err(internal)?
            .ok_or(missing)?;
        if row.token_sha256 != candidate.token_sha256 {
            return Err(ApiError::ReceiptReused);
        }
        if PhoneNumber::parse(&candidate.phone).map_or(true, |p| p.as_str() != row.phone) {
            return Err(wrong_number);
        }
        Ok(row)
    }

    /// The onboarding row a recovery request may act on: the row of its receipt, for the number it
    /// names, provisioned (a recovery may start) or already recovering to this request's wallet and
    /// key (a rerun). Everything else is refused.
    async fn recovery_row(&self, candidate: &Onboarding) -> Result<Onboarding, ApiError> {
        let row = self
            .recorded_row(
                candidate,
                ApiError::NotRecoverable,
                ApiError::NotRecoverable,
            )
            .await?;
        let same_device = row.wallet == candidate.wallet
            && row.public_key == candidate.public_key
            && row.key_type == candidate.key_type;
        let recovered_here = self
            .db
            .recovery(&row.receipt_id, row.wallet)
            .await
            .map_err(internal)?
            .is_some();
        match row.state {
            State::Revoked => Err(ApiError::Revoked),
            // A new device: the lost one's wallet rotates its key instead (`rotateKey`).
            State::Provisioned if row.wallet != candidate.wallet => Ok(row),
            // This recovery, in any state (a rerun; done; or failed, which the answer reports).
            _ if same_device && recovered_here => Ok(row),
            _ if recovered_here => Err(ApiError::RecoveryInProgress),
            // An onboarding that never finished, or the original device itself: nothing to
            // recover.
            _ => Err(ApiError::NotRecoverable),
        }
    }

    /// Refuses a contract address as the phone's wallet before the receipt is bound to it (the
    /// funding step checks again; if the node is down now, that later check decides).
    async fn refuse_contract_wallet(&self, candidate: &Onboarding) -> Result<(), ApiError> {
        if let Ok(code) = self.chain.code_at(candidate.wallet).await
            && !code.is_empty()
        {
            return Err(ApiError::WalletNotEoa);
        }
        Ok(())
    }

    /// Refuses a number that is approved on chain for another wallet before the verifier
    /// consumes anything for it (a recycled number whose old key was not revoked yet). When the
    /// node cannot be read, approval checks again later.
    async fn refuse_if_taken(&self, candidate: &Onboarding) -> Result<(), ApiError> {
        let Ok(id) = client_id(&candidate.phone) else {
            // Empty (the next free number) or invalid (the verifier says so).
            return Ok(());
        };
        if let Ok(entry) = self.chain.get_client(self.settings.contract, id).await
            && entry.status == KeyStatus::Approved
            && !same_wallet(&entry, candidate)
        {
            return Err(ApiError::NumberTaken);
        }
        Ok(())
    }

    /// Checks the proof of possession of the row's key over its id, wallet and receipt
    /// commitment ([`crate::payload::possession_message`]).
    fn check_possession(&self, row: &Onboarding, proof: Option<&str>) -> Result<(), ApiError> {
        let id = client_id(&row.phone).map_err(|_| ApiError::Internal)?;
        let wallet = row.wallet;
        let key = PublicIdentityKey::from_tagged(row.key_type, &row.public_key)
            .map_err(|_| ApiError::Internal)?;
        let commitment = chaincall_chain::receipt_commitment(&id, wallet, &row.receipt_hash);
        match proof {
            Some(p) if verify_possession(&key, &id, wallet, &commitment, p) => Ok(()),
            _ => {
                tracing::warn!(receipt_id = %row.receipt_id, "proof of possession refused");
                Err(ApiError::BadProof)
            }
        }
    }

    /// The pending entry of a number this server verified for `row` was submitted by another
    /// wallet (a squatter's `addClient`). The number's ownership and the key's possession are
    /// already checked for `row`, so the server reserves the number for `row`'s wallet
    /// (`reserveClient`: one transaction replaces the squatter's entry, and no other wallet may
    /// submit until the verified one has) and tells the phone to send `addClient` again
    /// ([`ApiError::NumberReserved`]). Merely revoking the entry would let the squatter resubmit in
    /// the next block.
    async fn foreign_pending_entry(
        &self,
        row: &Onboarding,
        id: ClientId,
        entry: &ClientEntry,
    ) -> Result<(), ApiError> {
        tracing::warn!(
            receipt_id = %row.receipt_id,
            phone = %row.phone,
            squatter = ?entry.wallet,
            verified_wallet = %row.wallet,
            "a foreign wallet holds the pending entry of a verified number; reserving it"
        );
        let wallet = row.wallet;
        let (reply, wait) = oneshot::channel();
        self.jobs
            .send(Job::Reserve { id, wallet, reply })
            .await
            .map_err(|_| ApiError::Internal)?;
        match wait.await.map_err(|_| ApiError::Internal)? {
            Ok(tx) => {
                tracing::info!(receipt_id = %row.receipt_id, tx = %tx, "number reserved for the verified wallet");
                Err(ApiError::NumberReserved)
            }
            // Approved in the meantime (by the squatter? it cannot be: its commitment lacks the
            // receipt; by the verified wallet through another request): the next check decides.
            Err(ChainError::AlreadyTaken { .. }) => Err(ApiError::PendingWalletMismatch),
            Err(e) if e.is_contract_error() => {
                tracing::warn!(error = %e, "reserveClient refused");
                Err(ApiError::PendingWalletMismatch)
            }
            Err(e) => {
                tracing::warn!(error = %e, "reserveClient failed");
                Err(ApiError::ChainUnavailable)
            }
        }
    }

    /// Reads the pending entry of a `funded` row and, if it matches the record (wallet, key),
    /// moves the row to `pending_seen`. `ChainUnavailable` when the node cannot be read.
    async fn see_pending(&self, row: &Onboarding) -> Result<(), ApiError> {
        let id = client_id(&row.phone).map_err(|_| ApiError::Internal)?;
        let entry = self
            .chain
            .get_client(self.settings.contract, id)
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, "chain read failed");
                ApiError::ChainUnavailable
            })?;
        match entry.status {
            KeyStatus::Pending | KeyStatus::Approved => {
                if !same_wallet(&entry, row) {
                    if entry.status == KeyStatus::Approved {
                        return Err(ApiError::NumberTaken);
                    }
                    return self.foreign_pending_entry(row, id, &entry).await;
                }
                if !same_key(&entry, row) {
                    return Err(ApiError::PendingKeyMismatch);
                }
            }
            // Unknown or revoked: no pending entry to approve.
            _ => return Err(ApiError::PendingMissing),
        }
        if self
            .db
            .transition(&row.receipt_id, State::Funded, State::PendingSeen)
            .await
            .map_err(internal)?
        {
            tracing::info!(receipt_id = %row.receipt_id, "pending entry matches");
        }
        Ok(())
    }

    /// The worker's side of a queued approval request: the same check as [`Service::approve`];
    /// while the chain is down or the phone's `addClient` is not visible yet it stays queued, and a
    /// mismatch drops the request with its code (the phone's next request gets the error).
    async fn queued_approval(&self, row: &Onboarding) -> Result<(), StepError> {
        match self.see_pending(row).await {
            Ok(()) => Ok(()),
            Err(ApiError::ChainUnavailable) => Err(retry_later(
                "chain_unavailable",
                "the chain node is unreachable; the approval request stays queued",
            )),
            Err(ApiError::PendingMissing) if row.attempts < MAX_PENDING_WAITS => Err(retry_later(
                "pending_entry_missing",
                "no pending keystore entry yet; the approval request stays queued",
            )),
            Err(ApiError::Internal) => Err(retry_later("internal", "state database failed")),
            Err(e) => {
                tracing::warn!(receipt_id = %row.receipt_id, code = e.code(), "queued approval request dropped");
                self.db
                    .drop_approval_request(&row.receipt_id, e.code(), &e.to_string())
                    .await?;
                Ok(())
            }
        }
    }

    /// `GET /v1/status/{receipt_id}`: unauthenticated, so it answers only what the holder of an
    /// order id may learn — the state, what to do next and the error codes — never the number, the
    /// wallet, amounts, transactions or error messages (an order id alone must not link a receipt
    /// to a wallet on chain). The authenticated `/v1/onboard` and `/v1/approve` answers carry those.
    pub async fn status(&self, receipt_id: &str) -> Result<OnboardingStatus, ApiError> {
        let row = self
            .db
            .get(receipt_id)
            .await
            .map_err(internal)?
            .ok_or(ApiError::NotFound)?;
        Ok(OnboardingStatus::of(&row).public())
    }

    /// Drives a row in a task of its own and waits up to the request wait for it.
    async fn drive_and_wait(self: &Arc<Self>, receipt_id: &str) -> Result<Onboarding, ApiError> {
        let this = self.clone();
        let id = receipt_id.to_owned();
        // When the worker is driving the row already (it picks up new rows too), wait for it to
        // let go and drive on, so the answer shows where the row got, not where it was.
        let task = tokio::spawn(async move {
            loop {
                if let Some(row) = this.drive_unless_busy(&id).await? {
                    return Ok::<_, DbError>(row);
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        });
        match tokio::time::timeout(self.settings.request_wait, task).await {
            Ok(Ok(Ok(row))) => Ok(row),
            Ok(Ok(Err(e))) => {
                tracing::error!(error = &e as &dyn std::error::Error, "database failure");
                Err(ApiError::Internal)
            }
            Ok(Err(join)) => {
                tracing::error!(error = %join, "drive task failed");
                Err(ApiError::Internal)
            }
            // Still working: answer with the current state; the task carries on.
            Err(_) => self
                .db
                .get(receipt_id)
                .await
                .map_err(internal)?
                .ok_or(ApiError::Internal),
        }
    }

    /// Moves a row as far as it can go without the phone; returns the row as it ends up (as it
    /// is, when another task is driving it).
    pub async fn drive(&self, receipt_id: &str) -> Result<Onboarding, DbError> {
        match self.drive_unless_busy(receipt_id).await? {
            Some(row) => Ok(row),
            None => self.current(receipt_id).await,
        }
    }

    /// The row as stored.
    async fn current(&self, receipt_id: &str) -> Result<Onboarding, DbError> {
        self.db.get(receipt_id).await?.ok_or(DbError::Corrupt {
            receipt_id: receipt_id.to_owned(),
            what: "row vanished",
        })
    }

    /// [`drive`](Self::drive), or `None` at once when another task is driving the row.
    async fn drive_unless_busy(&self, receipt_id: &str) -> Result<Option<Onboarding>, DbError> {
        let guard = {
            let mut busy = self.busy.lock().unwrap_or_else(|p| p.into_inner());
            if busy.insert(receipt_id.to_owned()) {
                Some(BusyGuard {
                    set: &self.busy,
                    id: receipt_id.to_owned(),
                })
            } else {
                None
            }
        };
        if guard.is_none() {
            // Another task is driving it.
            return Ok(None);
        }
        let current = || async { self.current(receipt_id).await.map(Some) };
        for _ in 0..8 {
            let row = self.current(receipt_id).await?;
            let result = match stage(row.state, row.approve_requested_at.is_some()) {
                Stage::Fund => self.fund(&row).await,
                Stage::QueuedApproval => self.queued_approval(&row).await,
                Stage::Approve => self.approve_step(&row).await,
                Stage::Provision => self.provision(&row).await,
                Stage::Reassign => self.reassign(&row).await,
                Stage::Idle => return Ok(Some(row)),
            };
            match result {
                Ok(()) => {}
                Err(StepError::Transient { code, message }) => {
                    tracing::warn!(receipt_id, code, error = %message, "step deferred");
                    if code.starts_with("chain_") {
                        self.chain_errors.fetch_add(1, Ordering::Relaxed);
                    }
                    if row.state == State::Funded {
                        self.db
                            .queue_approval(receipt_id, code, &message, backoff(row.attempts))
                            .await?;
                    } else {
                        self.db
                            .defer(receipt_id, code, &message, backoff(row.attempts))
                            .await?;
                    }
                    return current().await;
                }
                Err(StepError::Permanent { code, message }) => {
                    tracing::warn!(receipt_id, code, %message, "onboarding failed");
                    self.db.fail(receipt_id, code, &message).await?;
                    return current().await;
                }
                Err(StepError::Db(e)) => return Err(e),
            }
        }
        current().await
    }

    async fn fund(&self, row: &Onboarding) -> Result<(), StepError> {
        let (reply, wait) = oneshot::channel();
        self.jobs
            .send(Job::Fund {
                receipt_id: row.receipt_id.clone(),
                reply,
            })
            .await
            .map_err(|_| retry_later("signer_stopped", "signer stopped"))?;
        wait.await
            .map_err(|_| retry_later("signer_stopped", "signer stopped"))?
    }

    async fn approve_step(&self, row: &Onboarding) -> Result<(), StepError> {
        let (reply, wait) = oneshot::channel();
        self.jobs
            .send(Job::Approve {
                row: Box::new(row.clone()),
                reply,
            })
            .await
            .map_err(|_| retry_later("signer_stopped", "signer stopped"))?;
        let tx = wait
            .await
            .map_err(|_| retry_later("signer_stopped", "signer stopped"))??;
        self.db.approved(&row.receipt_id, tx).await?;
        Ok(())
    }

    async fn provision(&self, row: &Onboarding) -> Result<(), StepError> {
        // Hashes of the derived password only (never the purchase token's hash, never in clear).
        // A recovered number keeps its receipt, so the lost device could derive the password of
        // the first generation: it gets a generation of its own, the time of this provisioning
        // (after every earlier one, which were smaller times or small rotation counts), taken
        // once the old key is revoked, so the lost device cannot fetch it either.
        let recovered = self
            .db
            .recovery(&row.receipt_id, row.wallet)
            .await?
            .is_some();
        let generation = if recovered {
            now_ms() / 1000
        } else {
            crate::credentials::FIRST_GENERATION
        };
        let sip = self.sip_row(&row.phone, &row.receipt_id, generation);
        self.sip
            .upsert(&sip)
            .await
            .map_err(|e| retry_later("sip_database", format!("SIP database: {e}")))?;
        if self
            .db
            .transition(&row.receipt_id, State::Approved, State::Provisioned)
            .await?
        {
            tracing::info!(receipt_id = %row.receipt_id, "provisioned");
        }
        Ok(())
    }

    /// The chain side of a recovery (`recovering → received`): the old SIP row goes (the lost
    /// device must stop registering at once), the old wallet's entry is revoked and the number
    /// reserved for the new wallet, so that no other wallet can submit before it. Each part is
    /// decided from the current chain state, so a rerun after a crash skips what is done.
    async fn reassign(&self, row: &Onboarding) -> Result<(), StepError> {
        let id = client_id(&row.phone)?;
        let recovery = self
            .db
            .recovery(&row.receipt_id, row.wallet)
            .await?
            .ok_or_else(|| {
                StepError::Db(DbError::Corrupt {
                    receipt_id: row.receipt_id.clone(),
                    what: "recovering without a recovery record",
                })
            })?;
        let wallet = row.wallet;
        self.sip
            .delete(&row.phone, &self.settings.sip_domain)
            .await
            .map_err(|e| retry_later("sip_database", format!("SIP database: {e}")))?;
        let contract = self.settings.contract;
        let mut reserved = false;
        for _ in 0..4 {
            let entry = self
                .chain
                .get_client(contract, id)
                .await
                .map_err(|e| transient(&e))?;
            let old = entry.wallet == Some(recovery.old_wallet);
            match entry.status {
                KeyStatus::Approved if old => {
                    let (reply, wait) = oneshot::channel();
                    self.jobs
                        .send(Job::Revoke { id, reply })
                        .await
                        .map_err(|_| retry_later("signer_stopped", "signer stopped"))?;
                    let tx = wait
                        .await
                        .map_err(|_| retry_later("signer_stopped", "signer stopped"))?
                        .map_err(|e| transient(&e))?;
                    tracing::warn!(receipt_id = %row.receipt_id, tx = ?tx, "old entry revoked for recovery");
                }
                KeyStatus::Approved => {
                    return Err(StepError::Permanent {
                        code: "number_taken",
                        message: "the number is approved for a wallet other than the recovered one"
                            .into(),
                    });
                }
                // The new wallet's own submission (it funded itself): nothing left to do.
                KeyStatus::Pending if same_wallet(&entry, row) => {
                    reserved = true;
                    break;
                }
                _ => {
                    let holder = self
                        .chain
                        .reserved_for(contract, id)
                        .await
                        .map_err(|e| transient(&e))?;
                    if holder == Some(wallet) {
                        reserved = true;
                        break;
                    }
                    let (reply, wait) = oneshot::channel();
                    self.jobs
                        .send(Job::Reserve { id, wallet, reply })
                        .await
                        .map_err(|_| retry_later("signer_stopped", "signer stopped"))?;
                    let tx = wait
                        .await
                        .map_err(|_| retry_later("signer_stopped", "signer stopped"))?
                        .map_err(|e| transient(&e))?;
                    tracing::info!(receipt_id = %row.receipt_id, tx = %tx, "number reserved for the recovering wallet");
                }
            }
        }
        if !reserved {
            // The chain moved under us between reads (or transactions are not mined yet): the
            // next pass decides again from what it shows.
            return Err(retry_later(
                "recovery_pending",
                "the old entry is not yet revoked and the number reserved; retrying",
            ));
        }
        if self
            .db
            .transition(&row.receipt_id, State::Recovering, State::Received)
            .await?
        {
            tracing::info!(receipt_id = %row.receipt_id, "recovery: number reserved, funding the new wallet");
        }
        Ok(())
    }

    /// Repairs `funded` rows whose number is approved on chain for another wallet (accepted
    /// before the before-funding check existed, or a race with another receipt): the phone's
    /// `addClient` can never succeed, so the row is failed with `number_taken` instead of
    /// waiting forever with no error. Rows the chain cannot be read for are left for later.
    async fn repair_taken(&self) -> Result<(), DbError> {
        for row in self.db.list(&[State::Funded], 64).await? {
            let Ok(id) = client_id(&row.phone) else {
                continue;
            };
            if let Ok(entry) = self.chain.get_client(self.settings.contract, id).await
                && entry.status == KeyStatus::Approved
                && !same_wallet(&entry, &row)
            {
                tracing::warn!(receipt_id = %row.receipt_id, phone = %row.phone, "funded onboarding for a number taken by another wallet: failed");
                self.db
                    .fail(
                        &row.receipt_id,
                        ApiError::NumberTaken.code(),
                        "the number is approved on chain for another wallet; if it is the subscriber's own lost device, recover it",
                    )
                    .await?;
            }
        }
        Ok(())
    }

    /// One worker pass: drives every due row and repairs funded rows whose number is taken.
    /// Returns how many due rows it looked at.
    pub async fn work_once(&self) -> Result<usize, DbError> {
        let due = self.db.due(now_ms(), 64).await?;
        for row in &due {
            self.drive(&row.receipt_id).await?;
        }
        self.repair_taken().await?;
        Ok(due.len())
    }

    /// Runs the worker until `shutdown` flips to true.
    pub async fn run_worker(
        self: Arc<Self>,
        interval: Duration,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) {
        loop {
            if let Err(e) = self.work_once().await {
                tracing::error!(error = &e as &dyn std::error::Error, "worker pass failed");
            }
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = shutdown.changed() => {}
            }
            if *shutdown.borrow() {
                return;
            }
        }
    }

    /// Admin: lists onboardings by group (`all`; `pending`: not yet provisioned, not failed; or
    /// one state's name, e.g. `failed`).
    pub async fn admin_list(&self, which: &str) -> Result<Vec<AdminOnboarding>, ApiError> {
        let states: Vec<State> = match which {
            "all" => State::ALL.to_vec(),
            "pending" => vec![
                State::Recovering,
                State::Received,
                State::Funding,
                State::Funded,
                State::PendingSeen,
                State::Approved,
            ],
            other => vec![other.parse().map_err(|()| ApiError::InvalidField {
                field: "state",
                reason: "use all, pending or a state name".into(),
            })?],
        };
        let rows = self.db.list(&states, 1000).await.map_err(internal)?;
        Ok(rows.iter().map(AdminOnboarding::of).collect())
    }

    /// Admin: one onboarding in full.
    pub async fn admin_show(&self, receipt_id: &str) -> Result<AdminOnboarding, ApiError> {
        let row = self.db.get(receipt_id).await.map_err(internal)?;
        row.map(|row| AdminOnboarding::of(&row))
            .ok_or(ApiError::OnboardingNotFound)
    }

    /// Admin: makes a row due now (a failed row goes back to what its recorded facts allow).
    /// Refused with [`ApiError::NotRetryable`] for a provisioned or revoked row: a retry would
    /// change nothing, and the operator should learn that rather than see a 200.
    pub async fn admin_retry(
        self: &Arc<Self>,
        receipt_id: &str,
    ) -> Result<AdminOnboarding, ApiError> {
        let state = self
            .db
            .get(receipt_id)
            .await
            .map_err(internal)?
            .ok_or(ApiError::OnboardingNotFound)?
            .state;
        let why = match state {
            State::Provisioned => {
                "it is done; nothing to retry (`revoke` and `rotate-credentials` act on it)"
            }
            State::Revoked => "a revoked subscriber is not driven again",
            _ => "",
        };
        if !why.is_empty() {
            return Err(ApiError::NotRetryable { state, why });
        }
        if !self.db.retry(receipt_id).await.map_err(internal)? {
            return Err(ApiError::OnboardingNotFound);
        }
        let row = self.drive_and_wait(receipt_id).await?;
        Ok(AdminOnboarding::of(&row))
    }

    /// Admin: authorises one device recovery of `phone` for `ttl` (default
    /// [`RECOVERY_GRANT_TTL`]) — the `assigned` verifier's ownership proof, given after the
    /// operator checked out of band that the requester owns the number. The recovery still needs
    /// the number's original receipt. Refused for a number no onboarding here provisioned.
    pub async fn admin_authorize_recovery(
        &self,
        phone: &str,
        ttl: Option<Duration>,
    ) -> Result<RecoveryGrant, ApiError> {
        let number = PhoneNumber::parse(phone).map_err(|e| ApiError::InvalidField {
            field: "phone",
            reason: e.to_string(),
        })?;
        let provisioned = self
            .db
            .latest_for_phone(number.as_str())
            .await
            .map_err(internal)?
            .is_some_and(|row| row.provisioned_at.is_some() || row.state == State::Provisioned);
        if !provisioned {
            return Err(ApiError::NotRecoverable);
        }
        let ttl = ttl.unwrap_or(RECOVERY_GRANT_TTL);
        let expires_at =
            now_ms().saturating_add(i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX));
        self.db
            .grant_recovery(number.as_str(), expires_at)
            .await
            .map_err(internal)?;
        tracing::warn!(
            phone = number.as_str(),
            expires_at,
            "device recovery authorised by the operator"
        );
        Ok(RecoveryGrant {
            phone: number.as_str().to_owned(),
            expires_at,
        })
    }

    /// Admin: revokes a subscriber: `revokeClient` on chain, SIP row deleted, onboarding marked.
    pub async fn admin_revoke(&self, phone: &str) -> Result<RevokeOutcome, ApiError> {
        let number = PhoneNumber::parse(phone).map_err(|e| ApiError::InvalidField {
            field: "phone",
            reason: e.to_string(),
        })?;
        let id = ClientId::of(&IdentityName::Phone(number.clone()));
        let (reply, wait) = oneshot::channel();
        self.jobs
            .send(Job::Revoke { id, reply })
            .await
            .map_err(|_| ApiError::Internal)?;
        let tx = wait.await.map_err(|_| ApiError::Internal)?.map_err(|e| {
            tracing::warn!(error = %e, "revoke failed");
            if e.is_contract_error() {
                ApiError::Internal
            } else {
                ApiError::ChainUnavailable
            }
        })?;
        let deleted = self
            .sip
            .delete(number.as_str(), &self.settings.sip_domain)
            .await
            .map_err(|e| {
                tracing::error!(error = &e as &dyn std::error::Error, "SIP delete failed");
                ApiError::Internal
            })?;
        if let Some(row) = self
            .db
            .latest_for_phone(number.as_str())
            .await
            .map_err(internal)?
        {
            self.db.revoke(&row.receipt_id).await.map_err(internal)?;
        }
        tracing::info!(phone = number.as_str(), "subscriber revoked");
        Ok(RevokeOutcome {
            phone: number.as_str().to_owned(),
            revoke_tx_hash: tx.map(|h| h.to_string()),
            sip_row_deleted: deleted,
        })
    }
}

/// What a code is bound to ([`crate::number::binding`]) for a candidate row.
fn binding_of(row: &Onboarding) -> Result<[u8; 32], ApiError> {
    Ok(crate::number::binding(
        row.key_type,
        &row.public_key,
        row.wallet.as_ref(),
        &hex::encode(row.token_sha256),
    ))
}

fn internal(e: DbError) -> ApiError {
    tracing::error!(error = &e as &dyn std::error::Error, "database failure");
    ApiError::Internal
}

/// The answer to `/v1/approve`: 200 once provisioned, 202 (accepted, still in progress: queued or
/// waiting for the chain) before.
fn respond_approve(row: &Onboarding) -> Result<(u16, OnboardingStatus), ApiError> {
    match row.state {
        State::Provisioned => Ok((200, OnboardingStatus::of(row))),
        _ => respond(row).map(|(_, view)| (202, view)),
    }
}

fn respond(row: &Onboarding) -> Result<(u16, OnboardingStatus), ApiError> {
    match row.state {
        State::Failed => Err(ApiError::Failed {
            code: row.failure_code.clone().unwrap_or_default(),
            message: row.failure_message.clone().unwrap_or_default(),
        }),
        State::Revoked => Err(ApiError::Revoked),
        State::Received | State::Funding | State::Recovering => {
            Ok((202, OnboardingStatus::of(row)))
        }
        _ => Ok((200, OnboardingStatus::of(row))),
    }
}

/// Makes sure the server's identity key is approved on chain under its domain name, adding and
/// approving it with the owner wallet if needed. Returns the key's status afterwards.
pub async fn publish_identity<C: ServerChain>(
    chain: &C,
    contract: Address,
    owner: &PrivateKeySigner,
    domain: &chaincall_identity::DomainName,
    key: &PublicIdentityKey,
) -> Result<KeyStatus, ChainError> {
    let id = ClientId::of(&IdentityName::Domain(domain.clone()));
    let entry = chain.get_client(contract, id).await?;
    let ours = entry.public_key().ok().as_ref() == Some(key);
    let receipt = chaincall_chain::receipt_hash(
        format!("chaincall server identity {}", domain.as_str()).as_bytes(),
    );
    match entry.status {
        KeyStatus::Approved if ours => return Ok(KeyStatus::Approved),
        KeyStatus::Approved => {
            chain
                .rotate_key(contract, owner, id, key.tag(), &key.to_bytes())
                .await?;
            return Ok(KeyStatus::Approved);
        }
        KeyStatus::Pending if ours && entry.wallet == Some(owner.address()) => {}
        _ => {
            let commitment = chaincall_chain::receipt_commitment(&id, owner.address(), &receipt);
            chain
                .add_client(contract, owner, id, key.tag(), &key.to_bytes(), commitment)
                .await?;
        }
    }
    chain.approve_client(contract, owner, id, receipt).await?;
    Ok(KeyStatus::Approved)
}
