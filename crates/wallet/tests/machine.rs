//! Crash safety of the onboarding machine as a property, without processes: seeded random
//! histories (mining order, node outages, refused broadcasts, evicted transactions, slow fees)
//! drive several receipts through funding and approval with [`TxMachine`], executed the way the
//! service's shell executes it, against an in-memory store that keeps exactly what the database
//! persists and a model chain with one nonce sequence for the server wallet. Each history is
//! cut at every index of its action log: the process "dies" before that action, everything
//! in memory is lost, and the run restarts from the store. Whatever the cut, every receipt ends
//! approved with exactly one funding transfer and exactly one `approveClient` mined, and no
//! transaction is ever broadcast before it is recorded.

use std::collections::{BTreeMap, HashMap, HashSet};

use alloy::primitives::{B256, Bytes};
use chaincall_wallet::chain::TxState;
use chaincall_wallet::db::{State, TxPurpose};
use chaincall_wallet::machine::{Stage, Tx, TxAction, TxMachine, stage};

/// Receipts per history.
const RECEIPTS: usize = 3;
/// A recorded transaction unmined this many ticks after signing is replaced.
const REPLACE_AFTER: i64 = 6;
/// Polls of one confirm wait before the pass gives the signer back.
const CONFIRM_POLLS: u32 = 3;

/// Deterministic xorshift: the history is a function of the seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// True with probability `percent` %.
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

/// One row as the database persists it.
#[derive(Debug, Clone)]
struct Row {
    state: State,
    fund: Option<Tx>,
    approve: Option<Tx>,
    /// Every recorded version: (purpose, hash, nonce).
    versions: Vec<(TxPurpose, B256, u64)>,
}

/// What a transaction on the model chain does.
#[derive(Debug, Clone, Copy)]
struct ChainTx {
    receipt: usize,
    purpose: TxPurpose,
    nonce: u64,
}

/// The model chain: one sender (the server wallet), one slot per nonce in the mempool.
#[derive(Default)]
struct Chain {
    /// Transactions mined: the next nonce.
    nonce: u64,
    block: u64,
    /// Every transaction ever broadcast, by hash.
    known: HashMap<B256, ChainTx>,
    mempool: BTreeMap<u64, B256>,
    mined: HashMap<B256, (u64, bool)>,
    /// Per receipt: the phone's `addClient` is on chain (pending entry).
    entry_added: HashSet<usize>,
    /// Per receipt: the entry is approved.
    approved: HashSet<usize>,
    /// Per receipt: funding transfers mined.
    transfers: HashMap<usize, u32>,
    /// Per receipt: `approveClient` calls mined (reverted ones included).
    approvals: HashMap<usize, u32>,
}

impl Chain {
    fn pending_nonce(&self) -> u64 {
        let mut n = self.nonce;
        while self.mempool.contains_key(&n) {
            n += 1;
        }
        n
    }

    /// Mines the transaction in the next nonce's slot, if any.
    fn mine(&mut self) {
        let Some(hash) = self.mempool.remove(&self.nonce) else {
            return;
        };
        let tx = self.known[&hash];
        self.block += 1;
        let success = match tx.purpose {
            TxPurpose::Funding => {
                *self.transfers.entry(tx.receipt).or_default() += 1;
                true
            }
            TxPurpose::Approval => {
                *self.approvals.entry(tx.receipt).or_default() += 1;
                self.entry_added.contains(&tx.receipt) && self.approved.insert(tx.receipt)
            }
        };
        self.mined.insert(hash, (self.block, success));
        self.nonce += 1;
    }

    fn tx_state(&self, hash: B256, nonce: u64) -> TxState {
        match self.mined.get(&hash) {
            Some(&(block, success)) => TxState::Mined { block, success },
            None if self.nonce > nonce => TxState::Superseded,
            None => TxState::NotMined,
        }
    }

    /// Accepts a transaction whose nonce is still free (a later version replaces the slot's).
    fn broadcast(&mut self, hash: B256, tx: ChainTx) -> bool {
        if self.mined.contains_key(&hash) {
            return true;
        }
        if tx.nonce < self.nonce {
            return false;
        }
        self.known.insert(hash, tx);
        self.mempool.insert(tx.nonce, hash);
        true
    }
}

/// Why a pass ended early.
enum Stop {
    /// The process died (the cut).
    Crash,
    /// A transient fault: the row is retried later.
    Deferred,
}

/// Everything that outlives a crash (store and chain), plus the history's randomness.
struct World {
    rows: Vec<Row>,
    chain: Chain,
    rng: Rng,
    now: i64,
    /// Actions executed so far (the action log's length).
    actions: usize,
    /// Crash before the action with this index.
    cut: Option<usize>,
    next_hash: u64,
}

impl World {
    fn new(seed: u64, cut: Option<usize>) -> Self {
        Self {
            rows: (0..RECEIPTS)
                .map(|_| Row {
                    state: State::Received,
                    fund: None,
                    approve: None,
                    versions: Vec::new(),
                })
                .collect(),
            chain: Chain::default(),
            rng: Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1),
            now: 0,
            actions: 0,
            cut,
            next_hash: 0,
        }
    }

    /// Logs one action; dies if the cut is here. Time passes and blocks may be mined meanwhile.
    fn act(&mut self) -> Result<(), Stop> {
        if self.cut == Some(self.actions) {
            self.cut = None;
            return Err(Stop::Crash);
        }
        self.actions += 1;
        self.now += 1;
        if self.rng.chance(30) {
            self.chain.mine();
        }
        if self.rng.chance(3) {
            // The node evicts a pending transaction: only a rebroadcast brings it back.
            if let Some((&n, _)) = self.chain.mempool.iter().next() {
                self.chain.mempool.remove(&n);
            }
        }
        Ok(())
    }

    /// A chain call: the node may be down.
    fn rpc(&mut self) -> Result<(), Stop> {
        self.act()?;
        if self.rng.chance(8) {
            return Err(Stop::Deferred);
        }
        Ok(())
    }

    fn sign(&mut self, nonce: u64) -> Tx {
        self.next_hash += 1;
        Tx {
            hash: B256::left_padding_from(&self.next_hash.to_be_bytes()),
            nonce,
            raw: Bytes::new(),
            signed_at_ms: None,
        }
    }

    /// The recorded in-flight transaction, as the shell reads it back (with its signing time).
    fn recorded(&self, r: usize, purpose: TxPurpose) -> Option<Tx> {
        let row = &self.rows[r];
        match purpose {
            TxPurpose::Funding => row.fund.clone(),
            TxPurpose::Approval => row.approve.clone(),
        }
    }

    /// One pass of `purpose` for receipt `r`, executing the machine's actions as
    /// `Signer::run_tx` does.
    fn pass(&mut self, r: usize, purpose: TxPurpose) -> Result<(), Stop> {
        let mut machine = TxMachine::new(self.recorded(r, purpose), REPLACE_AFTER);
        let mut polls = None;
        loop {
            match machine.next(self.now) {
                TxAction::Sign => {
                    if purpose == TxPurpose::Approval {
                        self.rpc()?;
                        if self.chain.approved.contains(&r) {
                            // Approved before a crash let the store learn it.
                            self.act()?;
                            self.rows[r].state = State::Approved;
                            return Ok(());
                        }
                    }
                    self.rpc()?;
                    let nonce = self.chain.pending_nonce();
                    let tx = self.sign(nonce);
                    machine.signed(tx);
                }
                TxAction::Replace(tx) => {
                    self.rpc()?;
                    let new = self.sign(tx.nonce);
                    machine.signed(new);
                }
                TxAction::Record { tx, replaces } => {
                    self.act()?;
                    let now = self.now;
                    let row = &mut self.rows[r];
                    let (slot, expected) = match purpose {
                        TxPurpose::Funding => (&mut row.fund, State::Received),
                        TxPurpose::Approval => (&mut row.approve, State::PendingSeen),
                    };
                    // The database's conditional updates.
                    let done = match replaces {
                        Some(old) => slot.as_ref().is_some_and(|t| t.hash == old),
                        None => slot.is_none() && row.state == expected,
                    };
                    if !done {
                        return Err(Stop::Deferred);
                    }
                    *slot = Some(Tx {
                        signed_at_ms: Some(now),
                        ..tx.clone()
                    });
                    if purpose == TxPurpose::Funding {
                        row.state = State::Funding;
                    }
                    row.versions.push((purpose, tx.hash, tx.nonce));
                    machine.recorded();
                }
                TxAction::Broadcast { tx, fresh } => {
                    self.act()?;
                    assert!(
                        self.rows[r]
                            .versions
                            .contains(&(purpose, tx.hash, tx.nonce)),
                        "receipt {r}: {purpose:?} {} broadcast before it was recorded",
                        tx.hash
                    );
                    if self.rng.chance(8) {
                        return Err(Stop::Deferred);
                    }
                    let accepted = !self.rng.chance(5)
                        && self.chain.broadcast(
                            tx.hash,
                            ChainTx {
                                receipt: r,
                                purpose,
                                nonce: tx.nonce,
                            },
                        );
                    if !accepted {
                        if fresh {
                            self.drop_tx(r, purpose, tx.hash);
                        }
                        return Err(Stop::Deferred);
                    }
                    machine.sent();
                    polls = Some(0);
                }
                TxAction::Query(tx) => {
                    self.rpc()?;
                    machine.observed(self.chain.tx_state(tx.hash, tx.nonce));
                }
                TxAction::Confirm(tx) => {
                    let n = polls.get_or_insert(0);
                    *n += 1;
                    if *n > CONFIRM_POLLS {
                        return Err(Stop::Deferred);
                    }
                    self.rpc()?;
                    machine.observed(self.chain.tx_state(tx.hash, tx.nonce));
                }
                TxAction::FindEarlier(tx) => {
                    let mut found = None;
                    let versions = self.rows[r].versions.clone();
                    for (p, hash, nonce) in versions {
                        if p != purpose || nonce != tx.nonce {
                            continue;
                        }
                        self.rpc()?;
                        if let TxState::Mined {
                            block,
                            success: true,
                        } = self.chain.tx_state(hash, nonce)
                        {
                            found = Some((hash, block));
                            break;
                        }
                    }
                    machine.earlier(found);
                }
                TxAction::Drop(tx) => {
                    self.act()?;
                    self.drop_tx(r, purpose, tx.hash);
                    if polls.is_some() {
                        return Err(Stop::Deferred);
                    }
                    machine.dropped();
                }
                TxAction::Settle { .. } => {
                    self.act()?;
                    let row = &mut self.rows[r];
                    match (purpose, row.state) {
                        (TxPurpose::Funding, State::Funding) => row.state = State::Funded,
                        (TxPurpose::Approval, State::PendingSeen) => row.state = State::Approved,
                        _ => {}
                    }
                    return Ok(());
                }
            }
        }
    }

    /// `Db::tx_dropped`: only if `hash` is still the recorded one.
    fn drop_tx(&mut self, r: usize, purpose: TxPurpose, hash: B256) {
        let row = &mut self.rows[r];
        match purpose {
            TxPurpose::Funding if row.fund.as_ref().is_some_and(|t| t.hash == hash) => {
                row.fund = None;
                row.state = State::Received;
            }
            TxPurpose::Approval if row.approve.as_ref().is_some_and(|t| t.hash == hash) => {
                row.approve = None;
            }
            _ => {}
        }
    }

    /// The phone's part after funding: `addClient`, then the approval request that moves the row
    /// to `pending_seen` once the server sees the entry.
    fn phone(&mut self, r: usize) -> Result<(), Stop> {
        self.act()?;
        self.chain.entry_added.insert(r);
        self.rows[r].state = State::PendingSeen;
        Ok(())
    }

    /// Runs the worker until every receipt is approved (or the step budget is spent); returns
    /// whether the cut was reached.
    fn run(&mut self) -> bool {
        let mut crashed = false;
        for _ in 0..4000 {
            let open: Vec<usize> = (0..RECEIPTS)
                .filter(|&r| self.rows[r].state != State::Approved)
                .collect();
            if open.is_empty() {
                break;
            }
            let r = open[usize::try_from(self.rng.next()).unwrap_or(0) % open.len()];
            let result = match stage(self.rows[r].state, false) {
                Stage::Fund => self.pass(r, TxPurpose::Funding),
                Stage::Approve => self.pass(r, TxPurpose::Approval),
                Stage::Idle => self.phone(r),
                other => panic!("unexpected stage {other:?}"),
            };
            if let Err(Stop::Crash) = result {
                crashed = true;
            }
        }
        // Let the chain settle whatever is still in flight.
        for _ in 0..64 {
            self.chain.mine();
        }
        crashed
    }

    fn check(&self, seed: u64, cut: Option<usize>) {
        for r in 0..RECEIPTS {
            let at = format!("seed {seed}, cut {cut:?}, receipt {r}");
            assert_eq!(self.rows[r].state, State::Approved, "{at}: lost");
            assert_eq!(self.chain.transfers.get(&r), Some(&1), "{at}: fundings");
            assert_eq!(self.chain.approvals.get(&r), Some(&1), "{at}: approvals");
        }
    }
}

#[test]
fn every_cut_of_every_history_funds_and_approves_each_receipt_exactly_once() {
    let mut cuts = 0;
    for seed in 1..=300u64 {
        let mut whole = World::new(seed, None);
        assert!(!whole.run());
        whole.check(seed, None);
        for cut in 0..whole.actions {
            let mut world = World::new(seed, Some(cut));
            assert!(world.run(), "seed {seed}: cut {cut} never reached");
            world.check(seed, Some(cut));
            cuts += 1;
        }
    }
    assert!(cuts > 10_000, "only {cuts} cut points");
}

#[test]
fn the_machine_never_broadcasts_a_signed_transaction_before_it_is_recorded() {
    let tx = Tx {
        hash: B256::repeat_byte(1),
        nonce: 7,
        raw: Bytes::new(),
        signed_at_ms: None,
    };
    let mut m = TxMachine::new(None, REPLACE_AFTER);
    assert_eq!(m.next(0), TxAction::Sign);
    m.signed(tx.clone());
    // Until the shell confirms the record, the answer stays "record it".
    m.sent();
    m.observed(TxState::NotMined);
    assert!(matches!(m.next(0), TxAction::Record { replaces: None, .. }));
    m.recorded();
    assert_eq!(m.next(0), TxAction::Broadcast { tx, fresh: true });
}

#[test]
fn an_unmined_transaction_is_replaced_only_after_the_delay_and_recorded_first() {
    let old = Tx {
        hash: B256::repeat_byte(1),
        nonce: 7,
        raw: Bytes::new(),
        signed_at_ms: Some(100),
    };
    let mut m = TxMachine::new(Some(old.clone()), REPLACE_AFTER);
    assert_eq!(m.next(100), TxAction::Query(old.clone()));
    m.observed(TxState::NotMined);
    assert_eq!(
        m.next(100 + REPLACE_AFTER - 1),
        TxAction::Broadcast {
            tx: old.clone(),
            fresh: false
        }
    );
    assert_eq!(m.next(100 + REPLACE_AFTER), TxAction::Replace(old.clone()));
    let new = Tx {
        hash: B256::repeat_byte(2),
        ..old.clone()
    };
    m.signed(new.clone());
    assert_eq!(
        m.next(200),
        TxAction::Record {
            tx: new.clone(),
            replaces: Some(old.hash)
        }
    );
    m.recorded();
    assert!(matches!(m.next(200), TxAction::Broadcast { fresh: false, tx } if tx.hash == new.hash));
}
