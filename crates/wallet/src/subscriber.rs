//! SIP credentials in a Kamailio-compatible `subscriber` table (Kamailio 5.6 `auth_db`, table
//! version 7): the table sipd reads, and the one a real Kamailio authenticates against.
//!
//! Columns (`/usr/share/kamailio/db_sqlite/auth_db-create.sql`): `id`, `username`, `domain`,
//! `password`, `ha1`, `ha1b`, unique on `(username, domain)`, plus two this server adds when
//! missing ([`SubscriberTable::ensure_columns`]): `ha1_sha256` and `password_generation`. Only
//! hashes are stored, never the password (`password` stays empty; Kamailio reads the hashes with
//! `calculate_ha1 0`):
//!
//! - `ha1  = MD5(username ":" realm ":" password)` — RFC 2617 §3.2.2.2 `A1` for `algorithm=MD5`;
//! - `ha1b = MD5(username "@" domain ":" realm ":" password)` — for clients that put the domain in
//!   the digest username (`kamctl`'s `_gen_ha1b`);
//! - `ha1_sha256 = SHA-256(username ":" realm ":" password)` — RFC 7616 §3.4.2 `A1` for
//!   `algorithm=SHA-256`. The column name is OpenSIPS' `auth_db` default (`hash_column_sha256`);
//!   Kamailio's `auth_db` reads it with `modparam("auth_db", "password_column", "ha1_sha256")` and
//!   `modparam("auth", "algorithm", "SHA-256")`; sipd reads it by that name.
//! - `password_generation`: which rotation of the subscriber's password the hashes are of
//!   ([`crate::credentials`]); 0 for a row written by an older server or `kamctl`.
//!
//! The subscriber's username is the E.164 number (with its `+`); the password is the one
//! [`crate::credentials`] derives for the subscriber.

use chaincall_identity::Secret;
use md5::{Digest, Md5};
use sha2::Sha256;
use sqlx::AnyPool;
use zeroize::Zeroizing;

/// The database could not be written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SubscriberError {
    /// The SIP database failed.
    #[error("SIP subscriber database")]
    Database(#[from] sqlx::Error),
}

/// One subscriber row, as written: hashes only. A hash is as good as the password to a digest
/// client, so each is a [`Secret`] (`<redacted>` in `Debug`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriberRow {
    /// SIP username: the E.164 number.
    pub username: String,
    /// SIP domain.
    pub domain: String,
    /// `MD5(username:realm:password)`, lower-case hex.
    pub ha1: Secret<String>,
    /// `MD5(username@domain:realm:password)`, lower-case hex.
    pub ha1b: Secret<String>,
    /// `SHA-256(username:realm:password)`, lower-case hex (RFC 7616).
    pub ha1_sha256: Secret<String>,
    /// The password's rotation count (0: not written by [`crate::credentials`]).
    pub generation: i64,
}

/// The hash input holds the password: zeroized once hashed.
fn md5_hex(input: Zeroizing<String>) -> String {
    hex::encode(Md5::digest(input.as_bytes()))
}

/// `HA1 = MD5(username:realm:password)` (RFC 2617 §3.2.2.2), as Kamailio's `ha1` column holds it.
pub fn ha1(username: &str, realm: &str, password: &str) -> String {
    md5_hex(Zeroizing::new(format!("{username}:{realm}:{password}")))
}

/// `HA1B = MD5(username@domain:realm:password)`, as Kamailio's `ha1b` column holds it.
pub fn ha1b(username: &str, domain: &str, realm: &str, password: &str) -> String {
    md5_hex(Zeroizing::new(format!(
        "{username}@{domain}:{realm}:{password}"
    )))
}

/// `HA1 = SHA-256(username:realm:password)` (RFC 7616 §3.4.2), the `ha1_sha256` column.
pub fn ha1_sha256(username: &str, realm: &str, password: &str) -> String {
    hex::encode(Sha256::digest(
        format!("{username}:{realm}:{password}").as_bytes(),
    ))
}

impl SubscriberRow {
    /// The row for `username` at `domain` with digest realm `realm` (Kamailio uses the domain):
    /// the three hashes of `password`, which itself is not kept.
    pub fn new(username: &str, domain: &str, realm: &str, password: &str, generation: i64) -> Self {
        Self {
            username: username.to_owned(),
            domain: domain.to_owned(),
            ha1: ha1(username, realm, password).into(),
            ha1b: ha1b(username, domain, realm, password).into(),
            ha1_sha256: ha1_sha256(username, realm, password).into(),
            generation,
        }
    }
}

/// Kamailio 5.6's SQLite DDL for `subscriber` and `version` (verbatim apart from `IF NOT EXISTS`).
const SQLITE_DDL: [&str; 5] = [
    "CREATE TABLE IF NOT EXISTS version (id INTEGER PRIMARY KEY NOT NULL, table_name VARCHAR(32) NOT NULL, table_version INTEGER DEFAULT 0 NOT NULL, CONSTRAINT version_table_name_idx UNIQUE (table_name))",
    "CREATE TABLE IF NOT EXISTS subscriber (id INTEGER PRIMARY KEY NOT NULL, username VARCHAR(64) DEFAULT '' NOT NULL, domain VARCHAR(64) DEFAULT '' NOT NULL, password VARCHAR(64) DEFAULT '' NOT NULL, ha1 VARCHAR(128) DEFAULT '' NOT NULL, ha1b VARCHAR(128) DEFAULT '' NOT NULL, CONSTRAINT subscriber_account_idx UNIQUE (username, domain))",
    "CREATE INDEX IF NOT EXISTS subscriber_username_idx ON subscriber (username)",
    "INSERT INTO version (table_name, table_version) SELECT 'version', 1 WHERE NOT EXISTS (SELECT 1 FROM version WHERE table_name = 'version')",
    "INSERT INTO version (table_name, table_version) SELECT 'subscriber', 7 WHERE NOT EXISTS (SELECT 1 FROM version WHERE table_name = 'subscriber')",
];

/// Kamailio 5.6's PostgreSQL DDL for the same tables.
const POSTGRES_DDL: [&str; 5] = [
    "CREATE TABLE IF NOT EXISTS version (id SERIAL PRIMARY KEY NOT NULL, table_name VARCHAR(32) NOT NULL, table_version INTEGER DEFAULT 0 NOT NULL, CONSTRAINT version_table_name_idx UNIQUE (table_name))",
    "CREATE TABLE IF NOT EXISTS subscriber (id SERIAL PRIMARY KEY NOT NULL, username VARCHAR(64) DEFAULT '' NOT NULL, domain VARCHAR(64) DEFAULT '' NOT NULL, password VARCHAR(64) DEFAULT '' NOT NULL, ha1 VARCHAR(128) DEFAULT '' NOT NULL, ha1b VARCHAR(128) DEFAULT '' NOT NULL, CONSTRAINT subscriber_account_idx UNIQUE (username, domain))",
    "CREATE INDEX IF NOT EXISTS subscriber_username_idx ON subscriber (username)",
    "INSERT INTO version (table_name, table_version) SELECT 'version', 1 WHERE NOT EXISTS (SELECT 1 FROM version WHERE table_name = 'version')",
    "INSERT INTO version (table_name, table_version) SELECT 'subscriber', 7 WHERE NOT EXISTS (SELECT 1 FROM version WHERE table_name = 'subscriber')",
];

/// Columns this server adds to Kamailio's table when missing: name and type. `BIGINT` so both
/// backends hand the generation back as a 64-bit integer.
const EXTRA_COLUMNS: [(&str, &str); 2] = [
    ("ha1_sha256", "VARCHAR(128) DEFAULT '' NOT NULL"),
    ("password_generation", "BIGINT DEFAULT 0 NOT NULL"),
];

const SELECT_ROW: &str =
    "SELECT username, domain, ha1, ha1b, ha1_sha256, password_generation FROM subscriber";

/// Binds `row` as `$1` username, `$2` domain, `$3` ha1, `$4` ha1b, `$5` ha1_sha256, `$6`
/// generation: the one parameter order of every statement that writes a row.
fn bind_row<'q>(
    query: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>,
    row: &'q SubscriberRow,
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments> {
    query
        .bind(&row.username)
        .bind(&row.domain)
        .bind(row.ha1.as_str())
        .bind(row.ha1b.as_str())
        .bind(row.ha1_sha256.as_str())
        .bind(row.generation)
}

/// Writes and removes subscribers in a Kamailio-compatible database.
#[derive(Debug, Clone)]
pub struct SubscriberTable {
    pool: AnyPool,
}

impl SubscriberTable {
    /// Wraps a pool on the SIP database (a Kamailio SQLite file, sipd's database, or PostgreSQL).
    pub fn new(pool: AnyPool) -> Self {
        Self { pool }
    }

    /// The pool (for operators' tools and tests that read the table directly).
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Creates Kamailio's `version` and `subscriber` tables if they are missing (an existing
    /// Kamailio database is left as it is), then [`Self::ensure_columns`].
    pub async fn ensure_schema(&self) -> Result<(), SubscriberError> {
        let postgres = self
            .pool
            .connect_options()
            .database_url
            .scheme()
            .starts_with("postgres");
        let ddl = if postgres { &POSTGRES_DDL } else { &SQLITE_DDL };
        for statement in ddl {
            sqlx::query(*statement).execute(&self.pool).await?;
        }
        self.ensure_columns().await
    }

    /// Adds `ha1_sha256` and `password_generation` to an existing `subscriber` table that lacks
    /// them (Kamailio's own schema has neither; Kamailio ignores columns it does not read).
    pub async fn ensure_columns(&self) -> Result<(), SubscriberError> {
        for (name, ty) in EXTRA_COLUMNS {
            // A probe rather than the catalogue: one statement that both backends answer alike.
            let probe = format!("SELECT {name} FROM subscriber WHERE 1 = 0");
            if sqlx::query(sqlx::AssertSqlSafe(probe))
                .fetch_optional(&self.pool)
                .await
                .is_err()
            {
                let alter = format!("ALTER TABLE subscriber ADD COLUMN {name} {ty}");
                sqlx::query(sqlx::AssertSqlSafe(alter))
                    .execute(&self.pool)
                    .await?;
                tracing::info!(column = name, "SIP database: column added to subscriber");
            }
        }
        Ok(())
    }

    /// Replaces every clear-text `password` (rows written by an older server, or by `kamctl add`)
    /// with its three hashes and blanks it; the subscriber's password itself is unchanged, so its
    /// phone keeps registering. The realm is `realm` for rows of `domain` and, as Kamailio's
    /// convention, the row's own domain for the others. Returns how many rows were migrated.
    pub async fn migrate_clear_passwords(
        &self,
        domain: &str,
        realm: &str,
    ) -> Result<u64, SubscriberError> {
        use sqlx::Row;
        let rows =
            sqlx::query("SELECT username, domain, password FROM subscriber WHERE password <> ''")
                .fetch_all(&self.pool)
                .await?;
        let mut migrated = 0;
        for r in rows {
            let username: String = r.try_get(0)?;
            let row_domain: String = r.try_get(1)?;
            let password = Zeroizing::new(r.try_get::<String, _>(2)?);
            let row_realm = if row_domain == domain {
                realm
            } else {
                &row_domain
            };
            let hashed = SubscriberRow::new(&username, &row_domain, row_realm, &password, 0);
            // `AND password = $6`: a row rewritten meanwhile (a rotation) is left to its writer.
            let done = sqlx::query(
                "UPDATE subscriber SET password = '', ha1 = $3, ha1b = $4, ha1_sha256 = $5 \
                 WHERE username = $1 AND domain = $2 AND password = $6",
            )
            .bind(&hashed.username)
            .bind(&hashed.domain)
            .bind(hashed.ha1.as_str())
            .bind(hashed.ha1b.as_str())
            .bind(hashed.ha1_sha256.as_str())
            .bind(password.as_str())
            .execute(&self.pool)
            .await?;
            migrated += done.rows_affected();
        }
        Ok(migrated)
    }

    /// Inserts the row or, if the `(username, domain)` account exists, replaces its hashes and
    /// generation (and blanks any clear password): idempotent, so a retried provisioning step
    /// writes the same row again.
    pub async fn upsert(&self, row: &SubscriberRow) -> Result<(), SubscriberError> {
        let query = sqlx::query(
            "INSERT INTO subscriber (username, domain, password, ha1, ha1b, ha1_sha256, password_generation) \
             VALUES ($1, $2, '', $3, $4, $5, $6) \
             ON CONFLICT (username, domain) DO UPDATE SET password = '', ha1 = excluded.ha1, \
             ha1b = excluded.ha1b, ha1_sha256 = excluded.ha1_sha256, \
             password_generation = excluded.password_generation",
        );
        bind_row(query, row).execute(&self.pool).await?;
        Ok(())
    }

    /// Replaces the account's hashes and generation only if its generation is still `expected`
    /// (compare-and-set: of two concurrent rotations one wins, the other sees false and reads
    /// again). False also when the account does not exist.
    pub async fn replace_if_generation(
        &self,
        row: &SubscriberRow,
        expected: i64,
    ) -> Result<bool, SubscriberError> {
        let query = sqlx::query(
            "UPDATE subscriber SET password = '', ha1 = $3, ha1b = $4, ha1_sha256 = $5, \
             password_generation = $6 WHERE username = $1 AND domain = $2 AND password_generation = $7",
        );
        let done = bind_row(query, row)
            .bind(expected)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Deletes the account; true if a row was removed.
    pub async fn delete(&self, username: &str, domain: &str) -> Result<bool, SubscriberError> {
        let done = sqlx::query("DELETE FROM subscriber WHERE username = $1 AND domain = $2")
            .bind(username)
            .bind(domain)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// The account's row, if any.
    pub async fn get(
        &self,
        username: &str,
        domain: &str,
    ) -> Result<Option<SubscriberRow>, SubscriberError> {
        use sqlx::Row;
        let sql = format!("{SELECT_ROW} WHERE username = $1 AND domain = $2");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(username)
            .bind(domain)
            .fetch_optional(&self.pool)
            .await?;
        Ok(match row {
            None => None,
            Some(r) => Some(SubscriberRow {
                username: r.try_get(0)?,
                domain: r.try_get(1)?,
                ha1: Secret::new(r.try_get(2)?),
                ha1b: Secret::new(r.try_get(3)?),
                ha1_sha256: Secret::new(r.try_get(4)?),
                generation: r.try_get(5)?,
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A hash stands in for the password at any digest server: `Debug` shows none of the three.
    #[test]
    fn debug_shows_no_hash() {
        let row = SubscriberRow::new(
            "+15551234567",
            "sip.example.org",
            "sip.example.org",
            "pw",
            1,
        );
        let shown = format!("{row:?}");
        assert!(shown.contains("+15551234567"), "{shown}");
        for hash in [&row.ha1, &row.ha1b, &row.ha1_sha256] {
            assert!(!shown.contains(hash.as_str()), "{shown}");
        }
    }

    /// RFC 2617 §3.5's example: user Mufasa, realm testrealm@host.com, password "Circle Of Life".
    #[test]
    fn ha1_matches_rfc2617() {
        assert_eq!(
            ha1("Mufasa", "testrealm@host.com", "Circle Of Life"),
            "939e7578ed9e3c518a452acee763bce9"
        );
    }

    /// RFC 7616 §3.9.1's example (user Mufasa, realm http-auth@example.org, password
    /// "Circle of Life"): its SHA-256 response, recomputed from the HA1 this module stores.
    #[test]
    fn ha1_sha256_matches_rfc7616_example() {
        use sha2::Digest as _;
        let ha1 = ha1_sha256("Mufasa", "http-auth@example.org", "Circle of Life");
        let h = |s: String| hex::encode(Sha256::digest(s.as_bytes()));
        let ha2 = h("GET:/dir/index.html".into());
        let nonce = "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v";
        let cnonce = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ";
        let response = h(format!("{ha1}:{nonce}:00000001:{cnonce}:auth:{ha2}"));
        assert_eq!(
            response,
            "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"
        );
    }

    /// The same values `kamctl add` computes: `echo -n "$user:$realm:$pw" | md5sum` and
    /// `echo -n "$user@$domain:$domain:$pw" | md5sum` (kamctl.base `_gen_ha1`, `_gen_ha1b`).
    #[test]
    fn hashes_match_kamctl_formula_via_md5sum() {
        let Some(md5sum) = chaincall_testkit::find_executable("md5sum") else {
            return;
        };
        let row = SubscriberRow::new(
            "+15551234567",
            "sip.example.org",
            "sip.example.org",
            "pw",
            1,
        );
        let md5 = |s: &str| {
            use std::io::Write;
            let mut child = std::process::Command::new(&md5sum)
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            child.stdin.take().unwrap().write_all(s.as_bytes()).unwrap();
            let out = child.wait_with_output().unwrap();
            String::from_utf8(out.stdout).unwrap()[..32].to_owned()
        };
        assert_eq!(*row.ha1, md5("+15551234567:sip.example.org:pw"));
        assert_eq!(
            *row.ha1b,
            md5("+15551234567@sip.example.org:sip.example.org:pw")
        );
    }
}
