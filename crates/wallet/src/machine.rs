//! The onboarding's decisions as a sans-IO state machine: what is persisted and what the chain
//! answered go in, the next action comes out. The tokio shell ([`crate::service`]) executes the
//! actions (signing, SQL, RPC) and feeds their results back; nothing here does I/O or reads a
//! clock, so every ordering rule can be checked by a property test (see the tests below) instead
//! of by killing processes.
//!
//! - [`stage`] maps a row's [`State`] to the step that moves it on.
//! - [`TxMachine`] is the one lifecycle of a server transaction, shared by the funding transfer
//!   and the `approveClient` call: sign → record → broadcast → confirm, with fee-bumping
//!   replacements and, when a version can never be mined, a look for an earlier mined version
//!   before the recorded one is dropped and a new one signed.
//!
//! "Recorded before broadcast" is an ordering the machine guarantees: [`TxAction::Broadcast`] only
//! ever names the transaction the machine was built with (read back from the database) or one the
//! shell has confirmed recording with [`TxMachine::recorded`].

use alloy::primitives::{B256, Bytes};

use crate::chain::TxState;
use crate::db::State;

/// The step that moves a row on from its state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Fund the wallet (the funding [`TxMachine`]).
    Fund,
    /// Re-check the pending entry of an approval request queued while the chain was unreadable.
    QueuedApproval,
    /// Approve the pending entry (the approval [`TxMachine`]).
    Approve,
    /// Write the SIP credentials.
    Provision,
    /// The chain side of a device recovery (revoke the old entry, reserve the number).
    Reassign,
    /// Nothing to do without the phone or an administrator.
    Idle,
}

/// What the worker does with a row in `state` (`approval_queued`: an approval request is recorded).
pub fn stage(state: State, approval_queued: bool) -> Stage {
    match state {
        State::Received | State::Funding => Stage::Fund,
        State::Funded if approval_queued => Stage::QueuedApproval,
        State::PendingSeen => Stage::Approve,
        State::Approved => Stage::Provision,
        State::Recovering => Stage::Reassign,
        State::Funded | State::Provisioned | State::Failed | State::Revoked => Stage::Idle,
    }
}

pub use crate::wire::is_funded;

/// One signed version of a server transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tx {
    /// Transaction hash.
    pub hash: B256,
    /// The server wallet's nonce it uses (all versions of one transaction share it).
    pub nonce: u64,
    /// Signed EIP-2718 bytes.
    pub raw: Bytes,
    /// When it was recorded, ms since the epoch (unknown for rows older than the version table).
    pub signed_at_ms: Option<i64>,
}

impl Tx {
    /// A version just signed (its recording time is the database's to set).
    pub fn signed(hash: B256, nonce: u64, raw: Bytes) -> Self {
        Self {
            hash,
            nonce,
            raw,
            signed_at_ms: None,
        }
    }
}

/// The next thing the shell must do for one transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxAction {
    /// Nothing is in flight: check the preconditions, sign a new transaction and pass it to
    /// [`TxMachine::signed`].
    Sign,
    /// Persist `tx` (as a replacement of `replaces`, if set) before anything else; then call
    /// [`TxMachine::recorded`]. If the row moved meanwhile, start over from the database.
    Record {
        /// The signed transaction.
        tx: Tx,
        /// The version it replaces (same nonce).
        replaces: Option<B256>,
    },
    /// Send the recorded bytes. `fresh`: recorded in this pass and never sent before, so a
    /// refusal means it is in no mempool and can be dropped.
    Broadcast {
        /// The recorded transaction.
        tx: Tx,
        /// First broadcast of a version signed in this pass.
        fresh: bool,
    },
    /// Ask the chain about the recorded transaction ([`TxMachine::observed`]).
    Query(Tx),
    /// Sign a replacement of the recorded transaction with raised fees (same nonce) and pass it
    /// to [`TxMachine::signed`].
    Replace(Tx),
    /// Wait for the broadcast transaction to be mined; pass what the chain then shows to
    /// [`TxMachine::observed`].
    Confirm(Tx),
    /// The transaction can never be mined: look for an earlier version with its nonce that was,
    /// and pass the answer to [`TxMachine::earlier`].
    FindEarlier(Tx),
    /// No version with this nonce was mined: forget the recorded one
    /// ([`TxMachine::dropped`] once done).
    Drop(Tx),
    /// A version is mined successfully: settle the row.
    Settle {
        /// The mined version.
        hash: B256,
        /// Its block.
        block: u64,
    },
}

/// Where the transaction stands within one pass.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
    /// Nothing recorded.
    Empty,
    /// Signed, not yet recorded (`replaces` the recorded version, if any).
    Signed { tx: Tx, replaces: Option<B256> },
    /// Recorded; nothing known about it in this pass.
    Recorded { tx: Tx, fresh: bool },
    /// Recorded and the chain says it is not mined and its nonce is free.
    Unmined(Tx),
    /// Recorded and sent in this pass.
    Sent(Tx),
    /// Recorded, and it can never be mined.
    Dead(Tx),
    /// No version of the dead transaction was mined.
    Droppable(Tx),
    /// Mined.
    Mined { hash: B256, block: u64 },
}

/// One server transaction's lifecycle (funding or approval), rebuilt at each pass from what is
/// persisted.
#[derive(Debug, Clone)]
pub struct TxMachine {
    phase: Phase,
    replace_after_ms: i64,
}

impl TxMachine {
    /// A machine for a row whose recorded in-flight transaction is `recorded` (read from the
    /// database); unmined versions older than `replace_after_ms` are replaced.
    pub fn new(recorded: Option<Tx>, replace_after_ms: i64) -> Self {
        let phase = match recorded {
            Some(tx) => Phase::Recorded { tx, fresh: false },
            None => Phase::Empty,
        };
        Self {
            phase,
            replace_after_ms,
        }
    }

    /// What to do next, at `now_ms`.
    pub fn next(&self, now_ms: i64) -> TxAction {
        match &self.phase {
            Phase::Empty => TxAction::Sign,
            Phase::Signed { tx, replaces } => TxAction::Record {
                tx: tx.clone(),
                replaces: *replaces,
            },
            Phase::Recorded { tx, fresh: true } => TxAction::Broadcast {
                tx: tx.clone(),
                fresh: true,
            },
            Phase::Recorded { tx, fresh: false } => TxAction::Query(tx.clone()),
            Phase::Unmined(tx) => {
                let due = tx
                    .signed_at_ms
                    .is_some_and(|at| now_ms.saturating_sub(at) >= self.replace_after_ms);
                if due {
                    TxAction::Replace(tx.clone())
                } else {
                    TxAction::Broadcast {
                        tx: tx.clone(),
                        fresh: false,
                    }
                }
            }
            Phase::Sent(tx) => TxAction::Confirm(tx.clone()),
            Phase::Dead(tx) => TxAction::FindEarlier(tx.clone()),
            Phase::Droppable(tx) => TxAction::Drop(tx.clone()),
            Phase::Mined { hash, block } => TxAction::Settle {
                hash: *hash,
                block: *block,
            },
        }
    }

    /// The shell signed `tx` (after [`TxAction::Sign`] or [`TxAction::Replace`]).
    pub fn signed(&mut self, tx: Tx) {
        let replaces = match &self.phase {
            Phase::Unmined(old) => Some(old.hash),
            _ => None,
        };
        self.phase = Phase::Signed { tx, replaces };
    }

    /// The signed transaction is persisted: only now may it be broadcast.
    pub fn recorded(&mut self) {
        if let Phase::Signed { tx, replaces } = &self.phase {
            // A new transaction's first broadcast is `fresh` (a refusal drops it). A replacement
            // goes straight to being sent like a rebroadcast: its nonce is known to be free (the
            // chain just said so) and a refusal only means the next pass looks again; its age is
            // unknown here, so it is not replaced again within this pass.
            let fresh = replaces.is_none();
            let tx = tx.clone();
            self.phase = if fresh {
                Phase::Recorded { tx, fresh }
            } else {
                Phase::Unmined(Tx {
                    signed_at_ms: None,
                    ..tx
                })
            };
        }
    }

    /// The recorded transaction was sent (or is known to the node).
    pub fn sent(&mut self) {
        if let Phase::Recorded { tx, .. } | Phase::Unmined(tx) = &self.phase {
            self.phase = Phase::Sent(tx.clone());
        }
    }

    /// What the chain shows for the recorded transaction.
    pub fn observed(&mut self, state: TxState) {
        let tx = match &self.phase {
            Phase::Recorded { tx, .. } | Phase::Unmined(tx) | Phase::Sent(tx) => tx.clone(),
            _ => return,
        };
        self.phase = match state {
            TxState::Mined {
                block,
                success: true,
            } => Phase::Mined {
                hash: tx.hash,
                block,
            },
            TxState::Mined { success: false, .. } | TxState::Superseded => Phase::Dead(tx),
            // Still waiting after a broadcast: the shell's confirm wait ends the pass.
            TxState::NotMined if matches!(self.phase, Phase::Sent(_)) => Phase::Sent(tx),
            TxState::NotMined => Phase::Unmined(tx),
        };
    }

    /// The answer to [`TxAction::FindEarlier`]: the mined version with the nonce, if any.
    pub fn earlier(&mut self, mined: Option<(B256, u64)>) {
        if let Phase::Dead(tx) = &self.phase {
            self.phase = match mined {
                Some((hash, block)) => Phase::Mined { hash, block },
                None => Phase::Droppable(tx.clone()),
            };
        }
    }

    /// The recorded transaction is forgotten: the next action signs anew.
    pub fn dropped(&mut self) {
        self.phase = Phase::Empty;
    }
}
