//! The PostgreSQL location backend: Kamailio usrloc's `location` table (migrations in
//! `crates/sipd/migrations/location/`: `0001_location.sql`, then `0002_flow_token_width.sql`
//! widening `flow_token` for IPv6 UDP tokens) plus sipd's `node_id`, `flow_token` and
//! `identity` columns. Runs in the shell, beside the server loop; the core never awaits it.
//!
//! RFC 3261 §10.3 step 7 is enforced in SQL, so that two nodes registering one address-of-record
//! at the same moment end with the newest CSeq whatever order their statements run in: the
//! upsert of a Contact only updates a row whose Call-ID differs or whose CSeq is older
//! (`ON CONFLICT … DO UPDATE … WHERE`), and a removal only deletes such rows; a REGISTER that
//! would change nothing for that reason is refused as out of order, and its transaction rolled
//! back.

use std::time::Duration;

use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::{Postgres, Row, Transaction};

use super::{Change, LocationError, LocationStore, RegisterRefused, RegisterWrite, StoredBinding};
use crate::db::BoxFuture;

/// The location table in PostgreSQL.
#[derive(Debug, Clone)]
pub struct PgLocation {
    pool: PgPool,
}

/// How long a query may wait for a pooled connection: a lost database fails requests quickly
/// (503) instead of queueing them.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(2);

/// The columns a lookup reads, as [`StoredBinding`] wants them (wall-clock seconds, `q` in
/// thousandths).
const COLUMNS: &str = "contact, received, \
     CAST(EXTRACT(EPOCH FROM expires AT TIME ZONE 'UTC') AS BIGINT) AS expires_unix, \
     CAST(ROUND(q * 1000) AS INTEGER) AS q_milli, callid, cseq, node_id, flow_token";

/// `url` with any password replaced by `***` (user info and a `password=` parameter), for
/// errors and logs.
pub fn redact_url(url: &str) -> String {
    let mut out = url.to_owned();
    if let Some(scheme_end) = out.find("://") {
        let rest_start = scheme_end + 3;
        let authority_end = out[rest_start..]
            .find(['/', '?'])
            .map_or(out.len(), |i| rest_start + i);
        if let Some(at) = out[rest_start..authority_end].rfind('@') {
            let userinfo = rest_start..rest_start + at;
            if let Some(colon) = out[userinfo.clone()].find(':') {
                out.replace_range(rest_start + colon + 1..rest_start + at, "***");
            }
        }
    }
    if let Some(q) = out.find('?') {
        let (head, query) = out.split_at(q + 1);
        let redacted: Vec<String> = query
            .split('&')
            .map(|kv| match kv.split_once('=') {
                Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                _ => kv.to_owned(),
            })
            .collect();
        out = format!("{head}{}", redacted.join("&"));
    }
    out
}

impl PgLocation {
    /// Connects to `url` and brings the schema up to date. Fails at once, naming the URL (its
    /// password redacted), when the database cannot be reached.
    pub async fn connect(url: &str) -> Result<PgLocation, LocationError> {
        let shown = redact_url(url);
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect(url)
            .await
            .map_err(|source| LocationError::Open {
                url: shown.clone(),
                source,
            })?;
        let mut migrator = sqlx::migrate!("./migrations/location");
        // Its own bookkeeping table: the database may be shared with the wallet's migrations or
        // Kamailio's tables.
        migrator.dangerous_set_table_name("_sipd_location_migrations");
        migrator
            .run(&pool)
            .await
            .map_err(|source| LocationError::Migrate { url: shown, source })?;
        Ok(PgLocation { pool })
    }

    /// The pool (tests read the rows directly).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    async fn apply(
        &self,
        w: &RegisterWrite,
    ) -> Result<Result<Vec<StoredBinding>, RegisterRefused>, LocationError> {
        let mut tx = self.pool.begin().await?;
        let now = w.unix_now as f64;
        // Expired rows of this AOR go first: they neither count towards max_contacts nor hold
        // back a CSeq.
        sqlx::query(
            "DELETE FROM location WHERE username = $1 AND domain = $2 \
             AND expires <= (to_timestamp($3) AT TIME ZONE 'UTC')",
        )
        .bind(&w.username)
        .bind(&w.domain)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let refused = match &w.change {
            Change::RemoveAll => remove_all(&mut tx, w).await?,
            Change::Contacts(contacts) => {
                let mut refused = false;
                for c in contacts {
                    let changed = if c.expires == 0 {
                        remove_one(&mut tx, w, &c.uri).await?
                    } else {
                        upsert(&mut tx, w, &c.uri, c.expires, c.q).await?
                    };
                    if !changed {
                        refused = true;
                        break;
                    }
                }
                refused
            }
        };
        if refused {
            tx.rollback().await?;
            return Ok(Err(RegisterRefused::OutOfOrder));
        }
        let live = select(&mut *tx, &w.username, &w.domain, w.unix_now).await?;
        if live.len() > w.max_contacts {
            tx.rollback().await?;
            return Ok(Err(RegisterRefused::TooManyContacts));
        }
        tx.commit().await?;
        Ok(Ok(live))
    }
}

/// `Contact: *`: deletes every binding unless one has this Call-ID and a CSeq not older (then
/// nothing changes and the REGISTER is out of order). Returns whether it was refused.
async fn remove_all(
    tx: &mut Transaction<'_, Postgres>,
    w: &RegisterWrite,
) -> Result<bool, LocationError> {
    // Locks the AOR's rows, so a concurrent REGISTER of the same AOR waits for this one.
    let newer: Option<i32> = sqlx::query_scalar(
        "SELECT cseq FROM location WHERE username = $1 AND domain = $2 \
         AND callid = $3 AND cseq >= $4 FOR UPDATE",
    )
    .bind(&w.username)
    .bind(&w.domain)
    .bind(&w.call_id)
    .bind(cseq(w))
    .fetch_optional(&mut **tx)
    .await?;
    if newer.is_some() {
        return Ok(true);
    }
    sqlx::query("DELETE FROM location WHERE username = $1 AND domain = $2")
        .bind(&w.username)
        .bind(&w.domain)
        .execute(&mut **tx)
        .await?;
    Ok(false)
}

/// Removes one Contact's binding if the guard lets it; returns whether the REGISTER may go on
/// (no such binding, or removed).
async fn remove_one(
    tx: &mut Transaction<'_, Postgres>,
    w: &RegisterWrite,
    contact: &str,
) -> Result<bool, LocationError> {
    let removed = sqlx::query(
        "DELETE FROM location WHERE username = $1 AND domain = $2 AND contact = $3 \
         AND (callid <> $4 OR cseq < $5)",
    )
    .bind(&w.username)
    .bind(&w.domain)
    .bind(contact)
    .bind(&w.call_id)
    .bind(cseq(w))
    .execute(&mut **tx)
    .await?
    .rows_affected();
    if removed > 0 {
        return Ok(true);
    }
    let held: Option<i32> = sqlx::query_scalar(
        "SELECT cseq FROM location WHERE username = $1 AND domain = $2 AND contact = $3",
    )
    .bind(&w.username)
    .bind(&w.domain)
    .bind(contact)
    .fetch_optional(&mut **tx)
    .await?;
    // A row that is still there survived the guard: out of order.
    Ok(held.is_none())
}

/// Inserts or refreshes one binding if the guard lets it; returns whether it did. A new row gets
/// a random `ruid` (Kamailio's unique record id), which a refresh keeps: a ruid derived from the
/// row's key would make two nodes' concurrent first inserts collide on the ruid index, which
/// `ON CONFLICT` does not arbitrate.
async fn upsert(
    tx: &mut Transaction<'_, Postgres>,
    w: &RegisterWrite,
    contact: &str,
    expires: u32,
    q: u16,
) -> Result<bool, LocationError> {
    let written = sqlx::query(
        "INSERT INTO location (ruid, username, domain, contact, received, expires, q, callid, \
         cseq, last_modified, user_agent, node_id, flow_token, identity) \
         VALUES ('sipd-' || gen_random_uuid(), $1, $2, $3, $4, \
         (to_timestamp($5) AT TIME ZONE 'UTC'), $6, $7, $8, \
         (to_timestamp($9) AT TIME ZONE 'UTC'), $10, $11, $12, $13) \
         ON CONFLICT (username, domain, contact) DO UPDATE SET \
         received = excluded.received, expires = excluded.expires, q = excluded.q, \
         callid = excluded.callid, cseq = excluded.cseq, last_modified = excluded.last_modified, \
         user_agent = excluded.user_agent, node_id = excluded.node_id, \
         flow_token = excluded.flow_token, identity = excluded.identity \
         WHERE location.callid <> excluded.callid OR location.cseq < excluded.cseq",
    )
    .bind(&w.username)
    .bind(&w.domain)
    .bind(contact)
    .bind(w.received.to_string())
    .bind((w.unix_now + u64::from(expires)) as f64)
    .bind(f32::from(q) / 1000.0)
    .bind(&w.call_id)
    .bind(cseq(w))
    .bind(w.unix_now as f64)
    .bind(&w.user_agent)
    .bind(&w.node_id)
    .bind(&w.flow_token)
    .bind(&w.identity)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    Ok(written > 0)
}

/// The CSeq as PostgreSQL's INTEGER (CSeq numbers are below 2³¹, RFC 3261 §8.1.1.5).
fn cseq(w: &RegisterWrite) -> i32 {
    i32::try_from(w.cseq).unwrap_or(i32::MAX)
}

/// The live bindings of an AOR, best first.
async fn select<'e, E>(
    ex: E,
    username: &str,
    domain: &str,
    unix_now: u64,
) -> Result<Vec<StoredBinding>, LocationError>
where
    E: sqlx::PgExecutor<'e>,
{
    let sql = format!(
        "SELECT {COLUMNS} FROM location WHERE username = $1 AND domain = $2 \
         AND expires > (to_timestamp($3) AT TIME ZONE 'UTC') ORDER BY q DESC, expires DESC"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(username)
        .bind(domain)
        .bind(unix_now as f64)
        .fetch_all(ex)
        .await?;
    rows.iter()
        .map(|r| {
            let contact: String = r.try_get("contact")?;
            let received: Option<String> = r.try_get("received")?;
            let received = received
                .and_then(|a| a.parse().ok())
                .ok_or_else(|| LocationError::Row(contact.clone()))?;
            let expires: i64 = r.try_get("expires_unix")?;
            let q: i32 = r.try_get("q_milli")?;
            let cseq: i32 = r.try_get("cseq")?;
            Ok(StoredBinding {
                received,
                expires_unix: u64::try_from(expires).unwrap_or(0),
                q: u16::try_from(q.clamp(0, 1000)).unwrap_or(1000),
                call_id: r.try_get("callid")?,
                cseq: u32::try_from(cseq).unwrap_or(0),
                node_id: r.try_get("node_id")?,
                flow_token: r.try_get("flow_token")?,
                contact,
            })
        })
        .collect()
}

impl LocationStore for PgLocation {
    fn register<'a>(
        &'a self,
        w: &'a RegisterWrite,
    ) -> BoxFuture<'a, Result<Result<Vec<StoredBinding>, RegisterRefused>, LocationError>> {
        Box::pin(self.apply(w))
    }

    fn bindings<'a>(
        &'a self,
        username: &'a str,
        domain: &'a str,
        unix_now: u64,
    ) -> BoxFuture<'a, Result<Vec<StoredBinding>, LocationError>> {
        Box::pin(select(&self.pool, username, domain, unix_now))
    }

    fn ping(&self) -> BoxFuture<'_, Result<(), LocationError>> {
        Box::pin(async move {
            sqlx::query("SELECT 1").execute(&self.pool).await?;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn passwords_never_show_in_a_database_url() {
        for (url, shown) in [
            (
                "postgres://sipd:s3cret@db.example:5432/sip",
                "postgres://sipd:***@db.example:5432/sip",
            ),
            (
                "postgres://sipd@127.0.0.1/sip?password=s3cret&sslmode=require",
                "postgres://sipd@127.0.0.1/sip?password=***&sslmode=require",
            ),
            ("postgres://127.0.0.1/sip", "postgres://127.0.0.1/sip"),
            ("postgresql://u:p@ss:w@h/d", "postgresql://u:***@h/d"),
        ] {
            assert_eq!(redact_url(url), shown);
            assert!(!redact_url(url).contains("s3cret"));
        }
    }
}
