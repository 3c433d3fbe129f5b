//! SIP credentials in a Kamailio-compatible `subscriber` table (Kamailio 5.6 `auth_db`, table
//! version 7): the table sipd reads, and the one a real Kamailio authenticates against.
//!
//! Columns (`/usr/share/kamailio/db_sqlite/auth_db-create.sql`): `id`, `username`, `domain`,
//! `password`, `ha1`, `ha1b`, unique on `(username, domain)`. The hashes are Kamailio's
//! (auth_db README, `calculate_ha1`; `kamctl`'s `_gen_ha1` / `_gen_ha1b`):
//!
//! - `ha1  = MD5(username ":" realm ":" password)` — RFC 2617 §3.2.2.2 `A1` for `algorithm=MD5`;
//! - `ha1b = MD5(username "@" domain ":" realm ":" password)` — for clients that put the domain in
//!   the digest username.
//!
//! The subscriber's username is the E.164 number (with its `+`), the password the hex SHA-256 of
//! the receipt's purchase token ([`crate::receipt::Purchase::token_sha256_hex`]).

use md5::{Digest, Md5};
use sqlx::AnyPool;

/// The database could not be written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SubscriberError {
    /// The SIP database failed.
    #[error("SIP subscriber database: {0}")]
    Database(#[from] sqlx::Error),
}

/// One subscriber row, as written.
#[derive(Clone, PartialEq, Eq)]
pub struct SubscriberRow {
    /// SIP username: the E.164 number.
    pub username: String,
    /// SIP domain.
    pub domain: String,
    /// The plain password (Kamailio keeps it for `calculate_ha1 = yes`).
    pub password: String,
    /// `MD5(username:realm:password)`, lower-case hex.
    pub ha1: String,
    /// `MD5(username@domain:realm:password)`, lower-case hex.
    pub ha1b: String,
}

impl std::fmt::Debug for SubscriberRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SubscriberRow")
            .field("username", &self.username)
            .field("domain", &self.domain)
            .finish_non_exhaustive()
    }
}

fn md5_hex(input: &str) -> String {
    hex::encode(Md5::digest(input.as_bytes()))
}

/// `HA1 = MD5(username:realm:password)` (RFC 2617 §3.2.2.2), as Kamailio's `ha1` column holds it.
pub fn ha1(username: &str, realm: &str, password: &str) -> String {
    md5_hex(&format!("{username}:{realm}:{password}"))
}

/// `HA1B = MD5(username@domain:realm:password)`, as Kamailio's `ha1b` column holds it.
pub fn ha1b(username: &str, domain: &str, realm: &str, password: &str) -> String {
    md5_hex(&format!("{username}@{domain}:{realm}:{password}"))
}

impl SubscriberRow {
    /// The row for `username` at `domain` with digest realm `realm` (Kamailio uses the domain).
    pub fn new(username: &str, domain: &str, realm: &str, password: &str) -> Self {
        Self {
            username: username.to_owned(),
            domain: domain.to_owned(),
            password: password.to_owned(),
            ha1: ha1(username, realm, password),
            ha1b: ha1b(username, domain, realm, password),
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

    /// Creates Kamailio's `version` and `subscriber` tables if they are missing (an existing
    /// Kamailio database is left as it is).
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
        Ok(())
    }

    /// Inserts the row or, if the `(username, domain)` account exists, replaces its password and
    /// hashes: idempotent, so a retried provisioning step writes the same row again.
    pub async fn upsert(&self, row: &SubscriberRow) -> Result<(), SubscriberError> {
        sqlx::query(
            "INSERT INTO subscriber (username, domain, password, ha1, ha1b) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (username, domain) DO UPDATE SET password = excluded.password, ha1 = excluded.ha1, ha1b = excluded.ha1b",
        )
        .bind(&row.username)
        .bind(&row.domain)
        .bind(&row.password)
        .bind(&row.ha1)
        .bind(&row.ha1b)
        .execute(&self.pool)
        .await?;
        Ok(())
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
        let row = sqlx::query(
            "SELECT username, domain, password, ha1, ha1b FROM subscriber WHERE username = $1 AND domain = $2",
        )
        .bind(username)
        .bind(domain)
        .fetch_optional(&self.pool)
        .await?;
        Ok(match row {
            None => None,
            Some(r) => Some(SubscriberRow {
                username: r.try_get(0)?,
                domain: r.try_get(1)?,
                password: r.try_get(2)?,
                ha1: r.try_get(3)?,
                ha1b: r.try_get(4)?,
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 2617 §3.5's example: user Mufasa, realm testrealm@host.com, password "Circle Of Life".
    #[test]
    fn ha1_matches_rfc2617() {
        assert_eq!(
            ha1("Mufasa", "testrealm@host.com", "Circle Of Life"),
            "939e7578ed9e3c518a452acee763bce9"
        );
    }

    /// The same values `kamctl add` computes: `echo -n "$user:$realm:$pw" | md5sum` and
    /// `echo -n "$user@$domain:$domain:$pw" | md5sum` (kamctl.base `_gen_ha1`, `_gen_ha1b`).
    #[test]
    fn hashes_match_kamctl_formula_via_md5sum() {
        let Some(md5sum) = chaincall_testkit::find_executable("md5sum") else {
            return;
        };
        let row = SubscriberRow::new("+15551234567", "sip.example.org", "sip.example.org", "pw");
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
        assert_eq!(row.ha1, md5("+15551234567:sip.example.org:pw"));
        assert_eq!(
            row.ha1b,
            md5("+15551234567@sip.example.org:sip.example.org:pw")
        );
    }
}
