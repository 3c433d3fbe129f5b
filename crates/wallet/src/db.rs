//! The durable onboarding state machine's storage: one row per receipt, moved through
//! [`State`]s by conditional updates, on SQLite (default) or PostgreSQL through one code path
//! (sqlx's `Any` driver, portable SQL, `$n` placeholders, migrations in `migrations/`).

use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use alloy::primitives::{Address, B256, Bytes, U256};
use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::{AnyPool, Row};

/// The embedded migrations (`crates/wallet/migrations`).
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// A storage failure. Never shown to clients as is (the API maps it to `internal`).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DbError {
    /// The database failed.
    #[error("wallet state database")]
    Sqlx(#[from] sqlx::Error),
    /// A migration failed.
    #[error("wallet state database migration")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A row holds a value this code never writes.
    #[error("corrupt row {receipt_id}: {what}")]
    Corrupt {
        /// The row.
        receipt_id: String,
        /// What is wrong.
        what: &'static str,
    },
}

pub use crate::wire::State;

/// A point in time as the database stores it: milliseconds since the Unix epoch.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Timestamp(i64);

impl Timestamp {
    /// The Unix epoch (what the store writes for "due at once").
    pub const EPOCH: Self = Self(0);

    /// The wall clock now.
    pub fn now() -> Self {
        Self(now_ms())
    }

    /// `ms` milliseconds since the Unix epoch.
    pub const fn from_millis(ms: i64) -> Self {
        Self(ms)
    }

    /// Milliseconds since the Unix epoch.
    pub const fn as_millis(self) -> i64 {
        self.0
    }
}

/// One onboarding row, typed: the text and integer columns are parsed once, when the row is read
/// (`from_row`), and written back in the same formats. `Default` is a blank `received` row with
/// nothing decided yet: a new receipt's row sets the columns [`Db::insert`] writes and takes the
/// rest from it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Onboarding {
    /// The store's order id.
    pub receipt_id: String,
    /// SHA-256 of the purchase token (unique: a receipt binds once ever); stored as hex.
    pub token_sha256: B256,
    /// `keccak256(purchaseToken)`, passed to `approveClient`.
    pub receipt_hash: B256,
    /// The product bought.
    pub product_id: String,
    /// Purchase time.
    pub purchase_time: Timestamp,
    /// E.164 number.
    pub phone: String,
    /// The phone's wallet (stored checksummed).
    pub wallet: Address,
    /// Declared key type tag.
    pub key_type: u8,
    /// Declared key bytes (stored as hex).
    pub public_key: Bytes,
    /// Where it stands.
    pub state: State,
    /// Wei sent, once decided (stored in decimal).
    pub fund_amount: Option<U256>,
    /// Nonce of the recorded funding transaction.
    pub fund_nonce: Option<u64>,
    /// Hash of the recorded funding transaction.
    pub fund_tx_hash: Option<B256>,
    /// Signed bytes of the recorded funding transaction (stored as hex).
    pub fund_raw_tx: Option<Bytes>,
    /// Block that holds the funding transaction.
    pub fund_block: Option<u64>,
    /// Hash of the `approveClient` transaction.
    pub approve_tx_hash: Option<B256>,
    /// Machine-readable reason when failed.
    pub failure_code: Option<String>,
    /// Human-readable reason when failed.
    pub failure_message: Option<String>,
    /// The last transient error (chain down, ...), cleared on progress.
    pub last_error: Option<String>,
    /// Failed attempts since the last progress.
    pub attempts: u32,
    /// When the worker may try again.
    pub next_attempt_at: Timestamp,
    /// Created.
    pub created_at: Timestamp,
    /// Last change.
    pub updated_at: Timestamp,
    /// When provisioned.
    pub provisioned_at: Option<Timestamp>,
    /// When an approval request was queued because the chain could not be read (the worker then
    /// finishes it).
    pub approve_requested_at: Option<Timestamp>,
    /// Machine-readable code of `last_error`.
    pub last_error_code: Option<String>,
    /// Nonce of the recorded `approveClient` transaction.
    pub approve_nonce: Option<u64>,
    /// Signed bytes of the recorded `approveClient` transaction while it is in flight.
    pub approve_raw_tx: Option<Bytes>,
}

/// An accepted device recovery: the number of `receipt_id` moved from `old_wallet` (and its key)
/// to `wallet`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovery {
    /// The receipt (the number's onboarding row).
    pub receipt_id: String,
    /// The new device's wallet.
    pub wallet: Address,
    /// The wallet the number was bound to before.
    pub old_wallet: Address,
    /// The key type tag bound before.
    pub old_key_type: u8,
    /// The key bound before.
    pub old_public_key: Bytes,
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The rows the worker drives now (binds: [`bind_due`]).
const DUE_WHERE: &str = "(state IN ($1, $2, $3, $4, $5) OR (state = $6 AND approve_requested_at IS NOT NULL)) AND next_attempt_at <= $7";

/// Binds [`DUE_WHERE`]'s parameters `$1`..`$7`.
fn bind_due(
    q: sqlx::query::Query<'_, sqlx::Any, sqlx::any::AnyArguments>,
    now: i64,
) -> sqlx::query::Query<'_, sqlx::Any, sqlx::any::AnyArguments> {
    State::DRIVEN
        .iter()
        .fold(q, |q, s| q.bind(s.as_str()))
        .bind(State::Funded.as_str())
        .bind(now)
}

/// What [`Db::counts`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    /// Onboardings per state name (states without rows are absent).
    pub by_state: Vec<(String, i64)>,
    /// Funding transactions signed.
    pub fundings: i64,
    /// Approval transactions signed, replacements included.
    pub approvals: i64,
}

const COLUMNS: &str = "receipt_id, token_sha256, receipt_hash, product_id, purchase_time, phone, wallet, key_type, public_key, state, fund_amount, fund_nonce, fund_tx_hash, fund_raw_tx, fund_block, approve_tx_hash, failure_code, failure_message, last_error, attempts, next_attempt_at, created_at, updated_at, provisioned_at, approve_requested_at, last_error_code, approve_nonce, approve_raw_tx";

/// Reads the columns of one row: the one place where stored text and integers become types. A
/// value this code never writes is [`DbError::Corrupt`] naming the column, never a panic.
struct Columns<'r> {
    row: &'r AnyRow,
    receipt_id: String,
}

impl Columns<'_> {
    fn corrupt(&self, what: &'static str) -> DbError {
        DbError::Corrupt {
            receipt_id: self.receipt_id.clone(),
            what,
        }
    }

    fn text(&self, i: usize) -> Result<String, DbError> {
        Ok(self.row.try_get(i)?)
    }

    fn opt_text(&self, i: usize) -> Result<Option<String>, DbError> {
        Ok(self.row.try_get(i)?)
    }

    /// A column parsed with `FromStr` (`B256`, `Address`, `U256`, [`State`]).
    fn parsed<T: FromStr>(&self, i: usize, what: &'static str) -> Result<Option<T>, DbError> {
        self.opt_text(i)?
            .map(|t| t.parse().map_err(|_| self.corrupt(what)))
            .transpose()
    }

    fn required<T: FromStr>(&self, i: usize, what: &'static str) -> Result<T, DbError> {
        self.parsed(i, what)?.ok_or_else(|| self.corrupt(what))
    }

    /// Hex bytes (with or without `0x`).
    fn bytes(&self, i: usize, what: &'static str) -> Result<Option<Bytes>, DbError> {
        self.opt_text(i)?
            .map(|t| {
                hex::decode(t.trim_start_matches("0x"))
                    .map(Bytes::from)
                    .map_err(|_| self.corrupt(what))
            })
            .transpose()
    }

    /// A non-negative integer (nonces, blocks, counts, key tags).
    fn unsigned<T: TryFrom<i64>>(
        &self,
        i: usize,
        what: &'static str,
    ) -> Result<Option<T>, DbError> {
        let v: Option<i64> = self.row.try_get(i)?;
        v.map(|v| T::try_from(v).map_err(|_| self.corrupt(what)))
            .transpose()
    }

    fn time(&self, i: usize) -> Result<Option<Timestamp>, DbError> {
        let v: Option<i64> = self.row.try_get(i)?;
        Ok(v.map(Timestamp::from_millis))
    }

    fn required_time(&self, i: usize, what: &'static str) -> Result<Timestamp, DbError> {
        self.time(i)?.ok_or_else(|| self.corrupt(what))
    }
}

fn from_row(r: &AnyRow) -> Result<Onboarding, DbError> {
    let c = Columns {
        row: r,
        receipt_id: r.try_get(0)?,
    };
    Ok(Onboarding {
        receipt_id: c.receipt_id.clone(),
        token_sha256: c.required(1, "token_sha256")?,
        receipt_hash: c.required(2, "receipt_hash")?,
        product_id: c.text(3)?,
        purchase_time: c.required_time(4, "purchase_time")?,
        phone: c.text(5)?,
        wallet: c.required(6, "wallet")?,
        key_type: c
            .unsigned(7, "key_type")?
            .ok_or_else(|| c.corrupt("key_type"))?,
        public_key: c
            .bytes(8, "public_key")?
            .ok_or_else(|| c.corrupt("public_key"))?,
        state: c.required(9, "unknown state")?,
        fund_amount: c.parsed(10, "fund_amount")?,
        fund_nonce: c.unsigned(11, "fund_nonce")?,
        fund_tx_hash: c.parsed(12, "fund_tx_hash")?,
        fund_raw_tx: c.bytes(13, "fund_raw_tx")?,
        fund_block: c.unsigned(14, "fund_block")?,
        approve_tx_hash: c.parsed(15, "approve_tx_hash")?,
        failure_code: c.opt_text(16)?,
        failure_message: c.opt_text(17)?,
        last_error: c.opt_text(18)?,
        attempts: c
            .unsigned(19, "attempts")?
            .ok_or_else(|| c.corrupt("attempts"))?,
        next_attempt_at: c.required_time(20, "next_attempt_at")?,
        created_at: c.required_time(21, "created_at")?,
        updated_at: c.required_time(22, "updated_at")?,
        provisioned_at: c.time(23)?,
        approve_requested_at: c.time(24)?,
        last_error_code: c.opt_text(25)?,
        approve_nonce: c.unsigned(26, "approve_nonce")?,
        approve_raw_tx: c.bytes(27, "approve_raw_tx")?,
    })
}

/// Which of the server wallet's transactions for a receipt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxPurpose {
    /// The Ether transfer to the phone's wallet (`funding_tx`).
    Funding,
    /// The `approveClient` call (`approve_tx`).
    Approval,
}

/// One signed version of a server transaction (versions of one nonce replace each other).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxVersion {
    /// Transaction hash.
    pub tx_hash: B256,
    /// Nonce.
    pub nonce: u64,
    /// `signed`, `replaced`, `mined` or `dropped`.
    pub status: String,
    /// Signed EIP-2718 bytes (absent for funding versions recorded before migration 0003).
    pub raw_tx: Option<Bytes>,
    /// When it was recorded.
    pub created_at: Timestamp,
}

/// What inserting a receipt did.
#[derive(Debug)]
pub enum Inserted {
    /// A new row.
    New(Onboarding),
    /// The receipt (order id or token) is already recorded: here is its row.
    Existing(Onboarding),
}

/// Opens a pool for `url` (`sqlite://path?mode=rwc`, `postgres://...`), installing sqlx's drivers.
pub async fn connect(url: &str) -> Result<AnyPool, DbError> {
    sqlx::any::install_default_drivers();
    let pool = sqlx::pool::PoolOptions::<sqlx::Any>::new()
        .max_connections(if url.starts_with("sqlite") { 1 } else { 8 })
        .connect(url)
        .await?;
    Ok(pool)
}

/// The onboarding store.
#[derive(Debug, Clone)]
pub struct Db {
    pool: AnyPool,
}

impl Db {
    /// Wraps a pool and runs the migrations.
    pub async fn open(pool: AnyPool) -> Result<Self, DbError> {
        MIGRATOR.run(&pool).await?;
        Ok(Self { pool })
    }

    /// The pool.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Records a verified receipt in state `received`, or returns the row that already holds it.
    pub async fn insert(&self, row: &Onboarding) -> Result<Inserted, DbError> {
        let done = sqlx::query(
            "INSERT INTO onboarding (receipt_id, token_sha256, receipt_hash, product_id, purchase_time, phone, wallet, key_type, public_key, state, attempts, next_attempt_at, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 0, 0, $11, $11) ON CONFLICT DO NOTHING",
        )
        .bind(&row.receipt_id)
        .bind(hex::encode(row.token_sha256))
        .bind(row.receipt_hash.to_string())
        .bind(&row.product_id)
        .bind(row.purchase_time.as_millis())
        .bind(&row.phone)
        .bind(row.wallet.to_checksum(None))
        .bind(i64::from(row.key_type))
        .bind(hex::encode(&row.public_key))
        .bind(State::Received.as_str())
        .bind(row.created_at.as_millis())
        .execute(&self.pool)
        .await?;
        let sql = format!(
            "SELECT {COLUMNS} FROM onboarding WHERE receipt_id = $1 OR token_sha256 = $2 ORDER BY created_at LIMIT 1"
        );
        let existing = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(&row.receipt_id)
            .bind(hex::encode(row.token_sha256))
            .fetch_one(&self.pool)
            .await?;
        let existing = from_row(&existing)?;
        Ok(if done.rows_affected() == 1 {
            Inserted::New(existing)
        } else {
            Inserted::Existing(existing)
        })
    }

    /// The row for an order id.
    pub async fn get(&self, receipt_id: &str) -> Result<Option<Onboarding>, DbError> {
        let sql = format!("SELECT {COLUMNS} FROM onboarding WHERE receipt_id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(receipt_id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(from_row).transpose()
    }

    /// Rows in `states`, oldest first, at most `limit`.
    pub async fn list(&self, states: &[State], limit: i64) -> Result<Vec<Onboarding>, DbError> {
        let placeholders: Vec<String> = (1..=states.len()).map(|i| format!("${i}")).collect();
        let sql = format!(
            "SELECT {COLUMNS} FROM onboarding WHERE state IN ({}) ORDER BY created_at LIMIT ${}",
            placeholders.join(", "),
            states.len() + 1
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for s in states {
            q = q.bind(s.as_str());
        }
        let rows = q.bind(limit).fetch_all(&self.pool).await?;
        rows.iter().map(from_row).collect()
    }

    /// Rows the worker should drive now: the [`State::DRIVEN`] states, and `funded` rows holding a
    /// queued approval request.
    pub async fn due(&self, now: i64, limit: i64) -> Result<Vec<Onboarding>, DbError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM onboarding WHERE {DUE_WHERE} ORDER BY next_attempt_at LIMIT $8"
        );
        let rows = bind_due(sqlx::query(sqlx::AssertSqlSafe(sql)), now)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(from_row).collect()
    }

    /// How many rows [`Db::due`] would return now without a limit: the worker's queue depth.
    pub async fn due_count(&self, now: i64) -> Result<i64, DbError> {
        let sql = format!("SELECT COUNT(*) FROM onboarding WHERE {DUE_WHERE}");
        let row = bind_due(sqlx::query(sqlx::AssertSqlSafe(sql)), now)
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get::<i64, _>(0)?)
    }

    /// Counts for the operator's metrics: onboardings per state (states without rows are left
    /// out), funding transactions signed, approval transactions signed (replacements included).
    pub async fn counts(&self) -> Result<Counts, DbError> {
        let rows = sqlx::query("SELECT state, COUNT(*) FROM onboarding GROUP BY state")
            .fetch_all(&self.pool)
            .await?;
        let by_state = rows
            .iter()
            .map(|r| Ok((r.try_get::<String, _>(0)?, r.try_get::<i64, _>(1)?)))
            .collect::<Result<Vec<_>, sqlx::Error>>()?;
        let count = |table: &'static str| {
            let sql = format!("SELECT COUNT(*) FROM {table}");
            async move {
                let row = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .fetch_one(&self.pool)
                    .await?;
                row.try_get::<i64, _>(0)
            }
        };
        Ok(Counts {
            by_state,
            fundings: count("funding_tx").await?,
            approvals: count("approve_tx").await?,
        })
    }

    /// Whether the database answers a trivial query.
    pub async fn ping(&self) -> Result<(), DbError> {
        sqlx::query("SELECT 1").fetch_one(&self.pool).await?;
        Ok(())
    }

    /// The most recent row for a phone number.
    pub async fn latest_for_phone(&self, phone: &str) -> Result<Option<Onboarding>, DbError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM onboarding WHERE phone = $1 ORDER BY created_at DESC LIMIT 1"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(phone)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(from_row).transpose()
    }

    /// Moves `receipt_id` from `from` to `to` (clearing the transient error); false if the row was
    /// not in `from` (someone else moved it).
    pub async fn transition(
        &self,
        receipt_id: &str,
        from: State,
        to: State,
    ) -> Result<bool, DbError> {
        let now = now_ms();
        let provisioned_at = (to == State::Provisioned).then_some(now);
        let done = sqlx::query(
            "UPDATE onboarding SET state = $1, updated_at = $2, last_error = NULL, last_error_code = NULL, attempts = 0, next_attempt_at = 0, \
             provisioned_at = COALESCE(provisioned_at, $3) WHERE receipt_id = $4 AND state = $5",
        )
        .bind(to.as_str())
        .bind(now)
        .bind(provisioned_at)
        .bind(receipt_id)
        .bind(from.as_str())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Records the signed funding transaction BEFORE it is broadcast, moving `received → funding`
    /// (see [`Db::record_tx`]).
    pub async fn record_funding(
        &self,
        receipt_id: &str,
        nonce: u64,
        tx_hash: B256,
        raw: &[u8],
        amount: U256,
    ) -> Result<bool, DbError> {
        let version = (nonce, tx_hash, raw, Some(amount));
        self.record_tx(TxPurpose::Funding, receipt_id, version)
            .await
    }

    /// Records a newly signed transaction of `purpose` — `(nonce, hash, signed bytes, funding
    /// amount)` — BEFORE it is broadcast, in one database transaction: the onboarding row (funding:
    /// `received → funding`; approval: stays `pending_seen`) and the audit row. False if the row is
    /// not in that state or already has a transaction of `purpose` in flight.
    pub async fn record_tx(
        &self,
        purpose: TxPurpose,
        receipt_id: &str,
        (nonce, tx_hash, raw, amount): (u64, B256, &[u8], Option<U256>),
    ) -> Result<bool, DbError> {
        let now = now_ms();
        let nonce = nonce_i64(receipt_id, nonce)?;
        let (tx_hash, raw_hex) = (tx_hash.to_string(), hex::encode(raw));
        let amount = amount.map(|a| a.to_string());
        let mut tx = self.pool.begin().await?;
        let update = match purpose {
            TxPurpose::Funding => sqlx::query(
                "UPDATE onboarding SET state = $1, fund_nonce = $2, fund_tx_hash = $3, fund_raw_tx = $4, fund_amount = $5, updated_at = $6 \
                 WHERE receipt_id = $7 AND state = $8 AND fund_tx_hash IS NULL",
            )
            .bind(State::Funding.as_str())
            .bind(nonce)
            .bind(&tx_hash)
            .bind(&raw_hex)
            .bind(amount.as_deref().unwrap_or("0"))
            .bind(now)
            .bind(receipt_id)
            .bind(State::Received.as_str()),
            TxPurpose::Approval => sqlx::query(
                "UPDATE onboarding SET approve_nonce = $1, approve_tx_hash = $2, approve_raw_tx = $3, updated_at = $4 \
                 WHERE receipt_id = $5 AND state = $6 AND approve_raw_tx IS NULL",
            )
            .bind(nonce)
            .bind(&tx_hash)
            .bind(&raw_hex)
            .bind(now)
            .bind(receipt_id)
            .bind(State::PendingSeen.as_str()),
        };
        if update.execute(&mut *tx).await?.rows_affected() != 1 {
            tx.rollback().await?;
            return Ok(false);
        }
        let version = (tx_hash.as_str(), nonce, raw_hex.as_str(), amount.as_deref());
        insert_version(&mut tx, purpose, receipt_id, version, now).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// A recorded version (the current one or one it replaced) of the funding transaction is
    /// mined: `funding → funded`, with that version as `fund_tx_hash`.
    pub async fn funding_mined(
        &self,
        receipt_id: &str,
        tx_hash: B256,
        block: u64,
    ) -> Result<bool, DbError> {
        let now = now_ms();
        let tx_hash = tx_hash.to_string();
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "UPDATE onboarding SET state = $1, fund_block = $2, updated_at = $3, last_error = NULL, last_error_code = NULL, attempts = 0, next_attempt_at = 0, \
             fund_tx_hash = $6, fund_raw_tx = COALESCE((SELECT raw_tx FROM funding_tx WHERE tx_hash = $6), fund_raw_tx) \
             WHERE receipt_id = $4 AND state = $5 AND (fund_tx_hash = $6 OR EXISTS (SELECT 1 FROM funding_tx WHERE tx_hash = $6 AND receipt_id = $4 AND status IN ('signed', 'replaced')))",
        )
        .bind(State::Funded.as_str())
        .bind(i64::try_from(block).unwrap_or(i64::MAX))
        .bind(now)
        .bind(receipt_id)
        .bind(State::Funding.as_str())
        .bind(&tx_hash)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() != 1 {
            tx.rollback().await?;
            return Ok(false);
        }
        sqlx::query("UPDATE funding_tx SET status = CASE WHEN tx_hash = $1 THEN 'mined' ELSE 'replaced' END WHERE receipt_id = $2 AND status IN ('signed', 'replaced')")
            .bind(&tx_hash)
            .bind(receipt_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// The recorded funding transaction can never be mined (refused at first broadcast, or its
    /// nonce taken by another transaction): forget it and go back to `received` so a new one is
    /// signed. Safe: the dropped transaction cannot be mined any more.
    pub async fn funding_dropped(&self, receipt_id: &str, tx_hash: B256) -> Result<bool, DbError> {
        self.tx_dropped(TxPurpose::Funding, receipt_id, tx_hash)
            .await
    }

    /// The in-flight transaction `tx_hash` of `purpose` can never be mined (refused, or its nonce
    /// taken by another transaction): forget it — funding goes back to `received`, an approval
    /// stays `pending_seen` — so a new one is checked and signed. False if `tx_hash` is no longer
    /// the row's in-flight transaction.
    pub async fn tx_dropped(
        &self,
        purpose: TxPurpose,
        receipt_id: &str,
        tx_hash: B256,
    ) -> Result<bool, DbError> {
        let (update, to, from) = match purpose {
            TxPurpose::Funding => (
                "UPDATE onboarding SET state = $1, fund_nonce = NULL, fund_tx_hash = NULL, fund_raw_tx = NULL, updated_at = $2 \
                 WHERE receipt_id = $3 AND state = $4 AND fund_tx_hash = $5",
                State::Received,
                State::Funding,
            ),
            TxPurpose::Approval => (
                "UPDATE onboarding SET state = $1, approve_nonce = NULL, approve_tx_hash = NULL, approve_raw_tx = NULL, updated_at = $2 \
                 WHERE receipt_id = $3 AND state = $4 AND approve_tx_hash = $5",
                State::PendingSeen,
                State::PendingSeen,
            ),
        };
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(update)
            .bind(to.as_str())
            .bind(now_ms())
            .bind(receipt_id)
            .bind(from.as_str())
            .bind(tx_hash.to_string())
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() != 1 {
            tx.rollback().await?;
            return Ok(false);
        }
        // Every live version shares the nonce that was taken: none of them can be mined any more.
        let mark = match purpose {
            TxPurpose::Funding => {
                "UPDATE funding_tx SET status = 'dropped' WHERE receipt_id = $1 AND status IN ('signed', 'replaced')"
            }
            TxPurpose::Approval => {
                "UPDATE approve_tx SET status = 'dropped' WHERE receipt_id = $1 AND status IN ('signed', 'replaced')"
            }
        };
        sqlx::query(mark).bind(receipt_id).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Records the approval transaction's hash and moves `pending_seen → approved`.
    pub async fn approved(&self, receipt_id: &str, tx_hash: Option<B256>) -> Result<bool, DbError> {
        let tx_hash = tx_hash.map(|h| h.to_string());
        if let Some(hash) = &tx_hash {
            sqlx::query("UPDATE approve_tx SET status = CASE WHEN tx_hash = $1 THEN 'mined' ELSE 'replaced' END WHERE receipt_id = $2 AND status IN ('signed', 'replaced')")
                .bind(hash)
                .bind(receipt_id)
                .execute(&self.pool)
                .await?;
        }
        let done = sqlx::query(
            "UPDATE onboarding SET state = $1, approve_tx_hash = COALESCE($2, approve_tx_hash), updated_at = $3, last_error = NULL, last_error_code = NULL, attempts = 0, next_attempt_at = 0 \
             WHERE receipt_id = $4 AND state = $5",
        )
        .bind(State::Approved.as_str())
        .bind(&tx_hash)
        .bind(now_ms())
        .bind(receipt_id)
        .bind(State::PendingSeen.as_str())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Records a replacement of the in-flight transaction `old_hash` for `purpose` (same nonce,
    /// higher fees) BEFORE it is broadcast: the row points at the new version, the old one is
    /// kept as `replaced` (it may still be the one that gets mined). False if `old_hash` is no
    /// longer the row's in-flight transaction.
    #[allow(clippy::too_many_arguments)]
    pub async fn record_replacement(
        &self,
        purpose: TxPurpose,
        receipt_id: &str,
        old_hash: B256,
        new_hash: B256,
        new_raw: &[u8],
        nonce: u64,
        amount: Option<U256>,
    ) -> Result<bool, DbError> {
        let now = now_ms();
        let nonce = nonce_i64(receipt_id, nonce)?;
        let (old_hash, new_hash) = (old_hash.to_string(), new_hash.to_string());
        let (new_raw_hex, amount) = (hex::encode(new_raw), amount.map(|a| a.to_string()));
        let (update, state) = match purpose {
            TxPurpose::Funding => (
                "UPDATE onboarding SET fund_tx_hash = $1, fund_raw_tx = $2, updated_at = $3 WHERE receipt_id = $4 AND state = $5 AND fund_tx_hash = $6",
                State::Funding,
            ),
            TxPurpose::Approval => (
                "UPDATE onboarding SET approve_tx_hash = $1, approve_raw_tx = $2, updated_at = $3 WHERE receipt_id = $4 AND state = $5 AND approve_tx_hash = $6",
                State::PendingSeen,
            ),
        };
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(update)
            .bind(&new_hash)
            .bind(&new_raw_hex)
            .bind(now)
            .bind(receipt_id)
            .bind(state.as_str())
            .bind(&old_hash)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() != 1 {
            tx.rollback().await?;
            return Ok(false);
        }
        let version = (
            new_hash.as_str(),
            nonce,
            new_raw_hex.as_str(),
            amount.as_deref(),
        );
        insert_version(&mut tx, purpose, receipt_id, version, now).await?;
        let mark = match purpose {
            TxPurpose::Funding => "UPDATE funding_tx SET status = 'replaced' WHERE tx_hash = $1",
            TxPurpose::Approval => "UPDATE approve_tx SET status = 'replaced' WHERE tx_hash = $1",
        };
        sqlx::query(mark).bind(&old_hash).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Every signed version of a receipt's funding or approval transaction, oldest first.
    pub async fn tx_versions(
        &self,
        purpose: TxPurpose,
        receipt_id: &str,
    ) -> Result<Vec<TxVersion>, DbError> {
        let sql = match purpose {
            TxPurpose::Funding => {
                "SELECT tx_hash, nonce, status, raw_tx, created_at FROM funding_tx WHERE receipt_id = $1 ORDER BY created_at, tx_hash"
            }
            TxPurpose::Approval => {
                "SELECT tx_hash, nonce, status, raw_tx, created_at FROM approve_tx WHERE receipt_id = $1 ORDER BY created_at, tx_hash"
            }
        };
        let rows = sqlx::query(sql)
            .bind(receipt_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                let c = Columns {
                    row: r,
                    receipt_id: receipt_id.to_owned(),
                };
                Ok(TxVersion {
                    tx_hash: c.required(0, "tx version hash")?,
                    nonce: c
                        .unsigned(1, "tx version nonce")?
                        .ok_or_else(|| c.corrupt("tx version nonce"))?,
                    status: c.text(2)?,
                    raw_tx: c.bytes(3, "tx version raw_tx")?,
                    created_at: c.required_time(4, "tx version created_at")?,
                })
            })
            .collect()
    }

    /// Notes a transient failure (`code` machine-readable, `error` for people) and schedules the
    /// next attempt `delay` from now.
    pub async fn defer(
        &self,
        receipt_id: &str,
        code: &str,
        error: &str,
        delay: Duration,
    ) -> Result<(), DbError> {
        let now = now_ms();
        sqlx::query(
            "UPDATE onboarding SET last_error_code = $5, last_error = $1, attempts = attempts + 1, next_attempt_at = $2, updated_at = $3 WHERE receipt_id = $4",
        )
        .bind(error)
        .bind(now.saturating_add(millis(delay)))
        .bind(now)
        .bind(receipt_id)
        .bind(code)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Queues the approval request of a `funded` row that could not be checked now (`code`,
    /// `error`: why), due `delay` from now. False if the row is not `funded`.
    pub async fn queue_approval(
        &self,
        receipt_id: &str,
        code: &str,
        error: &str,
        delay: Duration,
    ) -> Result<bool, DbError> {
        let now = now_ms();
        let done = sqlx::query(
            "UPDATE onboarding SET approve_requested_at = COALESCE(approve_requested_at, $1), last_error_code = $2, last_error = $3, \
             attempts = attempts + 1, next_attempt_at = $4, updated_at = $1 WHERE receipt_id = $5 AND state = $6",
        )
        .bind(now)
        .bind(code)
        .bind(error)
        .bind(now.saturating_add(millis(delay)))
        .bind(receipt_id)
        .bind(State::Funded.as_str())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Drops a queued approval request that the chain showed cannot be granted as asked (the phone
    /// learns why from `last_error_code` and asks again after fixing it).
    pub async fn drop_approval_request(
        &self,
        receipt_id: &str,
        code: &str,
        error: &str,
    ) -> Result<(), DbError> {
        sqlx::query(
            "UPDATE onboarding SET approve_requested_at = NULL, last_error_code = $1, last_error = $2, attempts = 0, next_attempt_at = 0, updated_at = $3 \
             WHERE receipt_id = $4",
        )
        .bind(code)
        .bind(error)
        .bind(now_ms())
        .bind(receipt_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Stops an onboarding for good with a machine-readable code (also shown as the last error,
    /// so a listing never shows a stopped row with `last_error: null`).
    pub async fn fail(&self, receipt_id: &str, code: &str, message: &str) -> Result<(), DbError> {
        sqlx::query(
            "UPDATE onboarding SET state = $1, failure_code = $2, failure_message = $3, last_error_code = $2, last_error = $3, updated_at = $4 WHERE receipt_id = $5",
        )
        .bind(State::Failed.as_str())
        .bind(code)
        .bind(message)
        .bind(now_ms())
        .bind(receipt_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Accepts a device recovery: in one database transaction, records it ([`Recovery`]) and
    /// moves the `provisioned` row still bound to `old_wallet` to [`State::Recovering`] with the
    /// new wallet and key, its funding and approval forgotten (they stay in `funding_tx` and
    /// `approve_tx`, the audit trail). False if the row is not `provisioned` for `old_wallet` any
    /// more (a concurrent request won) or this wallet recovered the receipt before.
    pub async fn begin_recovery(
        &self,
        recovery: &Recovery,
        new: &Onboarding,
    ) -> Result<bool, DbError> {
        let now = now_ms();
        let mut tx = self.pool.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO recovery (receipt_id, wallet, old_wallet, old_key_type, old_public_key, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
        )
        .bind(&recovery.receipt_id)
        .bind(recovery.wallet.to_checksum(None))
        .bind(recovery.old_wallet.to_checksum(None))
        .bind(i64::from(recovery.old_key_type))
        .bind(hex::encode(&recovery.old_public_key))
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let moved = sqlx::query(
            "UPDATE onboarding SET state = $1, wallet = $2, key_type = $3, public_key = $4, fund_amount = NULL, fund_nonce = NULL, \
             fund_tx_hash = NULL, fund_raw_tx = NULL, fund_block = NULL, approve_tx_hash = NULL, approve_nonce = NULL, approve_raw_tx = NULL, \
             approve_requested_at = NULL, failure_code = NULL, failure_message = NULL, last_error = NULL, last_error_code = NULL, \
             attempts = 0, next_attempt_at = 0, provisioned_at = NULL, updated_at = $5 \
             WHERE receipt_id = $6 AND state = $7 AND wallet = $8",
        )
        .bind(State::Recovering.as_str())
        .bind(new.wallet.to_checksum(None))
        .bind(i64::from(new.key_type))
        .bind(hex::encode(&new.public_key))
        .bind(now)
        .bind(&recovery.receipt_id)
        .bind(State::Provisioned.as_str())
        .bind(recovery.old_wallet.to_checksum(None))
        .execute(&mut *tx)
        .await?;
        if inserted.rows_affected() != 1 || moved.rows_affected() != 1 {
            tx.rollback().await?;
            return Ok(false);
        }
        tx.commit().await?;
        Ok(true)
    }

    /// The recovery that bound `receipt_id` to `wallet`, if one did.
    pub async fn recovery(
        &self,
        receipt_id: &str,
        wallet: Address,
    ) -> Result<Option<Recovery>, DbError> {
        let row = sqlx::query(
            "SELECT receipt_id, wallet, old_wallet, old_key_type, old_public_key FROM recovery \
             WHERE receipt_id = $1 AND wallet = $2",
        )
        .bind(receipt_id)
        .bind(wallet.to_checksum(None))
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            let c = Columns {
                row: &r,
                receipt_id: receipt_id.to_owned(),
            };
            Ok(Recovery {
                receipt_id: c.text(0)?,
                wallet: c.required(1, "recovery wallet")?,
                old_wallet: c.required(2, "recovery old_wallet")?,
                old_key_type: c
                    .unsigned(3, "recovery old_key_type")?
                    .ok_or_else(|| c.corrupt("recovery old_key_type"))?,
                old_public_key: c
                    .bytes(4, "recovery old_public_key")?
                    .ok_or_else(|| c.corrupt("recovery old_public_key"))?,
            })
        })
        .transpose()
    }

    /// The operator authorises one recovery of `phone` until `expires_at` (replacing an earlier
    /// authorisation, used or not).
    pub async fn grant_recovery(&self, phone: &str, expires_at: i64) -> Result<(), DbError> {
        sqlx::query(
            "INSERT INTO recovery_grant (phone, expires_at, used_at, created_at) VALUES ($1, $2, NULL, $3) \
             ON CONFLICT (phone) DO UPDATE SET expires_at = excluded.expires_at, used_at = NULL, created_at = excluded.created_at",
        )
        .bind(phone)
        .bind(expires_at)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Uses the operator's authorisation to recover `phone`: true once per grant, while unexpired.
    pub async fn use_recovery_grant(&self, phone: &str, now: i64) -> Result<bool, DbError> {
        let done = sqlx::query(
            "UPDATE recovery_grant SET used_at = $1 WHERE phone = $2 AND used_at IS NULL AND expires_at >= $1",
        )
        .bind(now)
        .bind(phone)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Admin retry: a failed row goes back to the state its recorded facts allow (funded if the
    /// funding was mined, else received), and any row is made due now.
    pub async fn retry(&self, receipt_id: &str) -> Result<bool, DbError> {
        let done = sqlx::query(
            "UPDATE onboarding SET state = CASE WHEN state <> $1 THEN state WHEN fund_block IS NOT NULL THEN $2 WHEN fund_tx_hash IS NOT NULL THEN $3 ELSE $4 END, \
             failure_code = NULL, failure_message = NULL, next_attempt_at = 0, attempts = 0, updated_at = $5 WHERE receipt_id = $6",
        )
        .bind(State::Failed.as_str())
        .bind(State::Funded.as_str())
        .bind(State::Funding.as_str())
        .bind(State::Received.as_str())
        .bind(now_ms())
        .bind(receipt_id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Marks a row revoked.
    pub async fn revoke(&self, receipt_id: &str) -> Result<(), DbError> {
        sqlx::query("UPDATE onboarding SET state = $1, updated_at = $2 WHERE receipt_id = $3")
            .bind(State::Revoked.as_str())
            .bind(now_ms())
            .bind(receipt_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Records a payload nonce; false if it was seen within its window (a replay).
    pub async fn remember_nonce(&self, nonce: &str, expires_at: i64) -> Result<bool, DbError> {
        let now = now_ms();
        sqlx::query("DELETE FROM seen_nonce WHERE expires_at < $1")
            .bind(now)
            .execute(&self.pool)
            .await?;
        let done = sqlx::query(
            "INSERT INTO seen_nonce (nonce, expires_at) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        )
        .bind(nonce)
        .bind(expires_at)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Funding transactions recorded for a receipt: `(hash, status)`, oldest first.
    pub async fn funding_txs(&self, receipt_id: &str) -> Result<Vec<(B256, String)>, DbError> {
        let rows = sqlx::query(
            "SELECT tx_hash, status FROM funding_tx WHERE receipt_id = $1 ORDER BY created_at, nonce",
        )
        .bind(receipt_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let c = Columns {
                    row: r,
                    receipt_id: receipt_id.to_owned(),
                };
                Ok((c.required(0, "funding tx hash")?, c.text(1)?))
            })
            .collect()
    }
}

/// A delay in the database's unit (milliseconds), saturating.
fn millis(delay: Duration) -> i64 {
    i64::try_from(delay.as_millis()).unwrap_or(i64::MAX)
}

/// A nonce as the database stores it.
fn nonce_i64(receipt_id: &str, nonce: u64) -> Result<i64, DbError> {
    i64::try_from(nonce).map_err(|_| DbError::Corrupt {
        receipt_id: receipt_id.to_owned(),
        what: "nonce out of range",
    })
}

/// Adds a signed version `(hash, nonce, raw bytes hex, funding amount)` to the audit table of
/// `purpose`, inside the caller's database transaction.
async fn insert_version(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    purpose: TxPurpose,
    receipt_id: &str,
    (tx_hash, nonce, raw_hex, amount): (&str, i64, &str, Option<&str>),
    now: i64,
) -> Result<(), DbError> {
    let insert = match purpose {
        TxPurpose::Funding => sqlx::query(
            "INSERT INTO funding_tx (tx_hash, receipt_id, nonce, status, created_at, raw_tx, amount) VALUES ($1, $2, $3, 'signed', $4, $5, $6)",
        ),
        TxPurpose::Approval => sqlx::query(
            "INSERT INTO approve_tx (tx_hash, receipt_id, nonce, status, created_at, raw_tx) VALUES ($1, $2, $3, 'signed', $4, $5)",
        ),
    }
    .bind(tx_hash)
    .bind(receipt_id)
    .bind(nonce)
    .bind(now)
    .bind(raw_hex);
    let insert = match purpose {
        TxPurpose::Funding => insert.bind(amount.unwrap_or("0")),
        TxPurpose::Approval => insert,
    };
    insert.execute(&mut **tx).await?;
    Ok(())
}
