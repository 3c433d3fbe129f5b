//! The Kamailio-compatible `subscriber` table (Kamailio 5.6 `auth_db` schema: id, username, domain,
//! password, ha1, ha1b) in SQLite or PostgreSQL through one code path.
//!
//! `ha1 = MD5(username:realm:password)`, `ha1b = MD5(username@domain:realm:password)` with the
//! realm equal to the domain, as `kamctl add` writes them; the RFC 7616 / RFC 8760 hashes
//! `H(username:realm:password)` live in the `ha1_sha256` / `ha1_sha512t256` columns (OpenSIPS'
//! names; Kamailio reads one through `password_column`). sipd authenticates from the stored hash
//! of the algorithm the client answered in, so rows need no clear password: [`Db::add_subscriber`]
//! and the wallet server store hashes only. A row of an old database that holds only `password`
//! still works (the hashes are computed from it, Kamailio's `calculate_ha1`).

use std::future::Future;
use std::pin::Pin;

use chaincall_sip::digest::{self, Algorithm};
use sqlx::{PgPool, Row, SqlitePool};

/// A boxed, sendable future (what [`CredentialStore`] returns, to stay object-safe).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Where sipd reads subscribers' credentials: the [`Db`] in production; anything else (a
/// directory service, a counting or slow store in tests) through
/// [`crate::Server::set_credential_store`].
pub trait CredentialStore: Send + Sync + 'static {
    /// The subscriber `username` of `domain`, `None` when there is none.
    fn subscriber<'a>(
        &'a self,
        username: &'a str,
        domain: &'a str,
    ) -> BoxFuture<'a, Result<Option<Subscriber>, DbError>>;

    /// Whether the store answers at all (sipd's `/readyz`); a store that cannot tell says yes.
    fn ping(&self) -> BoxFuture<'_, Result<(), DbError>> {
        Box::pin(async { Ok(()) })
    }
}

impl CredentialStore for Db {
    fn subscriber<'a>(
        &'a self,
        username: &'a str,
        domain: &'a str,
    ) -> BoxFuture<'a, Result<Option<Subscriber>, DbError>> {
        Box::pin(Db::subscriber(self, username, domain))
    }

    fn ping(&self) -> BoxFuture<'_, Result<(), DbError>> {
        Box::pin(async move {
            match self {
                Db::Sqlite(p) => sqlx::query("SELECT 1").execute(p).await.map(drop)?,
                Db::Postgres(p) => sqlx::query("SELECT 1").execute(p).await.map(drop)?,
            }
            Ok(())
        })
    }
}

/// Database failures (never sent to clients; they get 500).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DbError {
    /// The URL is neither sqlite:// nor postgres://.
    #[error("unsupported database URL (use sqlite://FILE or postgres://...)")]
    Url,
    /// A driver error.
    #[error("subscriber database")]
    Sqlx(#[from] sqlx::Error),
}

/// A subscriber's stored credentials.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Subscriber {
    /// Clear-text password (may be empty when only hashes are stored).
    pub password: String,
    /// MD5(username:realm:password).
    pub ha1: String,
    /// MD5(username@domain:realm:password).
    pub ha1b: String,
    /// SHA-256 HA1, if stored.
    pub ha1_sha256: Option<String>,
    /// SHA-512/256 HA1, if stored.
    pub ha1_sha512t256: Option<String>,
}

impl Subscriber {
    /// The HA1 for an algorithm and the digest username form (`user` or `user@domain`), computing
    /// it from the password when no stored hash fits.
    pub fn ha1_for(&self, alg: Algorithm, digest_user: &str, realm: &str) -> Option<String> {
        let with_domain = digest_user.contains('@');
        let stored = match (alg, with_domain) {
            (Algorithm::Md5, false) => Some(&self.ha1),
            (Algorithm::Md5, true) => Some(&self.ha1b),
            (Algorithm::Sha256, false) => self.ha1_sha256.as_ref(),
            (Algorithm::Sha512_256, false) => self.ha1_sha512t256.as_ref(),
            _ => None,
        };
        if let Some(h) = stored.filter(|h| !h.is_empty()) {
            return Some(h.clone());
        }
        if self.password.is_empty() {
            return None;
        }
        Some(digest::ha1(alg, digest_user, realm, &self.password))
    }
}

/// A pool for either backend.
#[derive(Debug, Clone)]
pub enum Db {
    /// SQLite (bundled).
    Sqlite(SqlitePool),
    /// PostgreSQL.
    Postgres(PgPool),
}

/// Kamailio's `subscriber` table; only the `id` column's type differs between SQLite and
/// PostgreSQL.
macro_rules! subscriber_schema {
    ($id:literal) => {
        concat!(
            "CREATE TABLE IF NOT EXISTS subscriber (
    id ",
            $id,
            ",
    username VARCHAR(64) DEFAULT '' NOT NULL,
    domain VARCHAR(64) DEFAULT '' NOT NULL,
    password VARCHAR(64) DEFAULT '' NOT NULL,
    ha1 VARCHAR(128) DEFAULT '' NOT NULL,
    ha1b VARCHAR(128) DEFAULT '' NOT NULL,
    ha1_sha256 VARCHAR(128) DEFAULT '' NOT NULL,
    ha1_sha512t256 VARCHAR(128) DEFAULT '' NOT NULL,
    CONSTRAINT subscriber_account_idx UNIQUE (username, domain)
)"
        )
    };
}

const SQLITE_SCHEMA: &str = subscriber_schema!("INTEGER PRIMARY KEY NOT NULL");

const PG_SCHEMA: &str = subscriber_schema!("SERIAL PRIMARY KEY NOT NULL");

// Named columns, never `*`: SQLite hands a statement prepared on a connection whose schema cache
// predates an `ALTER TABLE` (the wallet server adding `ha1_sha256`) more columns at run time than
// it announced at prepare time, which sqlx-sqlite does not survive.
const SELECT: &str = "SELECT password, ha1, ha1b, ha1_sha256, ha1_sha512t256 FROM subscriber \
     WHERE username = $1 AND domain = $2";
/// For a Kamailio table without the SHA-2 columns (`create_schema = false`).
const SELECT_KAMAILIO: &str =
    "SELECT password, ha1, ha1b FROM subscriber WHERE username = $1 AND domain = $2";
const INSERT: &str = "INSERT INTO subscriber (username, domain, password, ha1, ha1b, ha1_sha256, ha1_sha512t256) \
     VALUES ($1, $2, '', $3, $4, $5, $6)";

/// The hash columns a `subscriber` table made by Kamailio or an older sipd may lack.
const HASH_COLUMNS: [&str; 2] = ["ha1_sha256", "ha1_sha512t256"];

impl Db {
    /// Connects; SQLite files are created when missing.
    pub async fn connect(url: &str) -> Result<Db, DbError> {
        if url.starts_with("sqlite:") {
            let opts: sqlx::sqlite::SqliteConnectOptions = url.parse()?;
            let pool = sqlx::sqlite::SqlitePoolOptions::new()
                .max_connections(4)
                .connect_with(opts.create_if_missing(true))
                .await?;
            Ok(Db::Sqlite(pool))
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Ok(Db::Postgres(PgPool::connect(url).await?))
        } else {
            Err(DbError::Url)
        }
    }

    /// Creates the `subscriber` table if missing (Kamailio's columns and the SHA-2 hash
    /// columns), and adds the hash columns to an existing table that lacks them.
    pub async fn create_schema(&self) -> Result<(), DbError> {
        match self {
            Db::Sqlite(p) => {
                sqlx::query(SQLITE_SCHEMA).execute(p).await?;
            }
            Db::Postgres(p) => {
                sqlx::query(PG_SCHEMA).execute(p).await?;
            }
        }
        for column in HASH_COLUMNS {
            // A probe rather than the catalogue: one statement both backends answer alike.
            let probe = format!("SELECT {column} FROM subscriber WHERE 1 = 0");
            let alter = format!(
                "ALTER TABLE subscriber ADD COLUMN {column} VARCHAR(128) DEFAULT '' NOT NULL"
            );
            let missing = match self {
                Db::Sqlite(p) => sqlx::query(sqlx::AssertSqlSafe(probe))
                    .fetch_optional(p)
                    .await
                    .is_err(),
                Db::Postgres(p) => sqlx::query(sqlx::AssertSqlSafe(probe))
                    .fetch_optional(p)
                    .await
                    .is_err(),
            };
            if missing {
                match self {
                    Db::Sqlite(p) => {
                        sqlx::query(sqlx::AssertSqlSafe(alter)).execute(p).await?;
                    }
                    Db::Postgres(p) => {
                        sqlx::query(sqlx::AssertSqlSafe(alter)).execute(p).await?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Creates Kamailio's `version` table (if missing) and records the `subscriber` table at
    /// version 7, the schema version Kamailio 5.x's `auth_db` checks before using the table: after
    /// this, Kamailio and sipd share one database.
    pub async fn create_kamailio_version(&self) -> Result<(), DbError> {
        const CREATE: &str = "CREATE TABLE IF NOT EXISTS version (
    table_name VARCHAR(32) NOT NULL,
    table_version INTEGER DEFAULT 0 NOT NULL,
    CONSTRAINT version_t_name_idx UNIQUE (table_name)
)";
        const DELETE: &str = "DELETE FROM version WHERE table_name = 'subscriber'";
        const INSERT_V: &str =
            "INSERT INTO version (table_name, table_version) VALUES ('subscriber', 7)";
        match self {
            Db::Sqlite(p) => {
                for q in [CREATE, DELETE, INSERT_V] {
                    sqlx::query(q).execute(p).await?;
                }
            }
            Db::Postgres(p) => {
                for q in [CREATE, DELETE, INSERT_V] {
                    sqlx::query(q).execute(p).await?;
                }
            }
        }
        Ok(())
    }

    /// Adds a subscriber with realm = domain, as `kamctl add` does, but storing only the hashes
    /// (`ha1`, `ha1b`, `ha1_sha256`, `ha1_sha512t256`; `password` stays empty). Needs the columns
    /// [`Db::create_schema`] makes.
    pub async fn add_subscriber(
        &self,
        username: &str,
        domain: &str,
        password: &str,
    ) -> Result<(), DbError> {
        let hashes = [
            digest::ha1(Algorithm::Md5, username, domain, password),
            digest::kamailio_ha1b(username, domain, domain, password),
            digest::ha1(Algorithm::Sha256, username, domain, password),
            digest::ha1(Algorithm::Sha512_256, username, domain, password),
        ];
        let [ha1, ha1b, sha256, sha512t256] = &hashes;
        match self {
            Db::Sqlite(p) => {
                sqlx::query(INSERT)
                    .bind(username)
                    .bind(domain)
                    .bind(ha1)
                    .bind(ha1b)
                    .bind(sha256)
                    .bind(sha512t256)
                    .execute(p)
                    .await?;
            }
            Db::Postgres(p) => {
                sqlx::query(INSERT)
                    .bind(username)
                    .bind(domain)
                    .bind(ha1)
                    .bind(ha1b)
                    .bind(sha256)
                    .bind(sha512t256)
                    .execute(p)
                    .await?;
            }
        }
        Ok(())
    }

    /// Looks a subscriber up.
    pub async fn subscriber(
        &self,
        username: &str,
        domain: &str,
    ) -> Result<Option<Subscriber>, DbError> {
        fn from_row<R: Row>(r: &R) -> Subscriber
        where
            for<'c> &'c str: sqlx::ColumnIndex<R>,
            String: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
        {
            let get = |c: &str| r.try_get::<String, _>(c).ok();
            Subscriber {
                password: get("password").unwrap_or_default(),
                ha1: get("ha1").unwrap_or_default(),
                ha1b: get("ha1b").unwrap_or_default(),
                ha1_sha256: get("ha1_sha256"),
                ha1_sha512t256: get("ha1_sha512t256"),
            }
        }
        let fetch = |sql: &'static str| async move {
            match self {
                Db::Sqlite(p) => sqlx::query(sql)
                    .bind(username)
                    .bind(domain)
                    .fetch_optional(p)
                    .await
                    .map(|r| r.map(|r| from_row(&r))),
                Db::Postgres(p) => sqlx::query(sql)
                    .bind(username)
                    .bind(domain)
                    .fetch_optional(p)
                    .await
                    .map(|r| r.map(|r| from_row(&r))),
            }
        };
        // The full column list first; a table without the SHA-2 columns answers a database
        // error (no such column), and the Kamailio columns are read instead.
        match fetch(SELECT).await {
            Err(sqlx::Error::Database(_)) => Ok(fetch(SELECT_KAMAILIO).await?),
            other => Ok(other?),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn sqlite(dir: &tempfile::TempDir) -> Db {
        let url = format!("sqlite://{}", dir.path().join("sip.db").display());
        Db::connect(&url).await.unwrap()
    }

    /// `add_subscriber` keeps no clear password; every algorithm's HA1 comes from a stored hash.
    #[tokio::test]
    async fn added_subscribers_are_stored_as_hashes_only() {
        let dir = tempfile::tempdir().unwrap();
        let db = sqlite(&dir).await;
        db.create_schema().await.unwrap();
        db.create_schema().await.unwrap();
        db.add_subscriber("alice", "example.org", "s3cret")
            .await
            .unwrap();
        let Db::Sqlite(pool) = &db else {
            unreachable!()
        };
        let (clear,): (String,) = sqlx::query_as("SELECT password FROM subscriber")
            .fetch_one(pool)
            .await
            .unwrap();
        assert_eq!(clear, "");
        let sub = db
            .subscriber("alice", "example.org")
            .await
            .unwrap()
            .unwrap();
        for alg in [Algorithm::Md5, Algorithm::Sha256, Algorithm::Sha512_256] {
            assert_eq!(
                sub.ha1_for(alg, "alice", "example.org"),
                Some(digest::ha1(alg, "alice", "example.org", "s3cret")),
                "{alg:?}"
            );
        }
        assert_eq!(
            sub.ha1_for(Algorithm::Md5, "alice@example.org", "example.org"),
            Some(digest::kamailio_ha1b(
                "alice",
                "example.org",
                "example.org",
                "s3cret"
            ))
        );
    }

    /// A Kamailio-made table (no SHA-2 columns) with a clear-password row, as `kamctl add`
    /// writes it: read as it is (the hashes computed from the password), and `create_schema`
    /// adds the missing columns.
    #[tokio::test]
    async fn a_kamailio_table_with_clear_passwords_still_works() {
        let dir = tempfile::tempdir().unwrap();
        let db = sqlite(&dir).await;
        let Db::Sqlite(pool) = &db else {
            unreachable!()
        };
        for statement in [
            "CREATE TABLE subscriber (id INTEGER PRIMARY KEY NOT NULL, username VARCHAR(64) DEFAULT '' NOT NULL, domain VARCHAR(64) DEFAULT '' NOT NULL, password VARCHAR(64) DEFAULT '' NOT NULL, ha1 VARCHAR(128) DEFAULT '' NOT NULL, ha1b VARCHAR(128) DEFAULT '' NOT NULL, CONSTRAINT subscriber_account_idx UNIQUE (username, domain))",
            "INSERT INTO subscriber (username, domain, password) VALUES ('bob', 'example.org', 'pw')",
        ] {
            sqlx::query(statement).execute(pool).await.unwrap();
        }
        let sub = db.subscriber("bob", "example.org").await.unwrap().unwrap();
        assert_eq!(sub.ha1_sha256, None);
        assert_eq!(
            sub.ha1_for(Algorithm::Sha256, "bob", "example.org"),
            Some(digest::ha1(Algorithm::Sha256, "bob", "example.org", "pw"))
        );
        db.create_schema().await.unwrap();
        let sub = db.subscriber("bob", "example.org").await.unwrap().unwrap();
        assert_eq!(sub.ha1_sha256.as_deref(), Some(""));
        assert_eq!(
            sub.ha1_for(Algorithm::Md5, "bob", "example.org"),
            Some(digest::ha1(Algorithm::Md5, "bob", "example.org", "pw"))
        );
    }
}
