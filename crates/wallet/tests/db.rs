//! The state machine's storage, one suite on SQLite and on PostgreSQL (a throwaway server started
//! here when PostgreSQL is installed): the same SQL and migrations run on both.

use std::time::Duration;

use alloy::primitives::{Address, B256, U256, address, keccak256};
use chaincall_wallet::db::{
    Db, DbError, Inserted, Onboarding, State, Timestamp, TxPurpose, connect, now_ms,
};
use chaincall_wallet::subscriber::{SubscriberRow, SubscriberTable};

/// A transaction hash named by one byte (`h(0xaa)`), as a short label in the assertions.
fn h(label: u8) -> B256 {
    B256::repeat_byte(label)
}

/// Signed bytes from hex.
fn raw(hex: &str) -> Vec<u8> {
    hex::decode(hex).unwrap()
}

const WALLET: Address = address!("0x70997970C51812dc3A010C7d01b50e0d17dc79C8");

fn row(id: &str, token: &str) -> Onboarding {
    let now = Timestamp::now();
    Onboarding {
        receipt_id: id.into(),
        token_sha256: keccak256(token),
        receipt_hash: B256::repeat_byte(0x11),
        product_id: "onboarding".into(),
        purchase_time: Timestamp::from_millis(1),
        phone: "+15551230000".into(),
        wallet: WALLET,
        key_type: 1,
        public_key: vec![2u8; 33].into(),
        created_at: now,
        updated_at: now,
        ..Onboarding::default()
    }
}

/// Writes `value` into a text column of a row behind the store's back (a corrupt row).
async fn set_column(db: &Db, receipt_id: &str, column: &str, value: &str) {
    let sql = format!("UPDATE onboarding SET {column} = $1 WHERE receipt_id = $2");
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(value)
        .bind(receipt_id)
        .execute(db.pool())
        .await
        .unwrap();
}

async fn suite(state_url: &str, sip_url: &str) {
    let db = Db::open(connect(state_url).await.unwrap()).await.unwrap();
    // Migrations are idempotent across restarts.
    let db2 = Db::open(connect(state_url).await.unwrap()).await.unwrap();

    // A receipt is recorded once; its order id or its token again finds the same row.
    let Inserted::New(r) = db.insert(&row("A", "tokA")).await.unwrap() else {
        panic!()
    };
    assert_eq!(r.state, State::Received);
    assert!(
        matches!(db2.insert(&row("A", "tokX")).await.unwrap(), Inserted::Existing(e) if e.receipt_id == "A")
    );
    assert!(
        matches!(db.insert(&row("B", "tokA")).await.unwrap(), Inserted::Existing(e) if e.receipt_id == "A")
    );
    assert!(db.get("B").await.unwrap().is_none());

    // Funding is recorded once: a second record for the same receipt is refused.
    assert!(
        db.record_funding("A", 7, h(0xaa), &raw("deadbeef"), U256::from(100))
            .await
            .unwrap()
    );
    assert!(
        !db.record_funding("A", 8, h(0xbb), &raw("beef"), U256::from(100))
            .await
            .unwrap()
    );
    let r = db.get("A").await.unwrap().unwrap();
    assert_eq!(
        (r.state, r.fund_nonce, r.fund_tx_hash),
        (State::Funding, Some(7), Some(h(0xaa)))
    );
    // Dropped (can never be mined): back to received, audit trail kept.
    assert!(db.funding_dropped("A", h(0xaa)).await.unwrap());
    assert!(
        db.record_funding("A", 9, h(0xcc), &raw("cafe"), U256::from(100))
            .await
            .unwrap()
    );
    assert!(
        !db.funding_mined("A", h(0xaa), 3).await.unwrap(),
        "only the current transaction counts"
    );
    assert!(db.funding_mined("A", h(0xcc), 4).await.unwrap());
    assert_eq!(
        db.funding_txs("A").await.unwrap(),
        vec![
            (h(0xaa), "dropped".to_owned()),
            (h(0xcc), "mined".to_owned())
        ]
    );

    // Transitions are conditional.
    assert!(
        !db.transition("A", State::Received, State::Funded)
            .await
            .unwrap()
    );
    assert!(
        db.transition("A", State::Funded, State::PendingSeen)
            .await
            .unwrap()
    );
    assert!(db.approved("A", Some(h(0xdd))).await.unwrap());
    assert!(!db.approved("A", Some(h(0xee))).await.unwrap());
    assert!(
        db.transition("A", State::Approved, State::Provisioned)
            .await
            .unwrap()
    );
    let r = db.get("A").await.unwrap().unwrap();
    assert_eq!(
        (r.state, r.approve_tx_hash),
        (State::Provisioned, Some(h(0xdd)))
    );
    assert!(r.provisioned_at.is_some());

    // Fee bumping: a replacement is recorded (same nonce) before broadcast; whichever version is
    // mined settles the row, the others stay as `replaced`.
    let Inserted::New(_) = db.insert(&row("R", "tokR")).await.unwrap() else {
        panic!()
    };
    assert!(
        db.record_funding("R", 11, h(0xb1), &raw("aa01"), U256::from(100))
            .await
            .unwrap()
    );
    assert!(
        db.record_replacement(
            TxPurpose::Funding,
            "R",
            h(0xb1),
            h(0xb2),
            &raw("aa02"),
            11,
            Some(U256::from(100))
        )
        .await
        .unwrap()
    );
    assert!(
        !db.record_replacement(
            TxPurpose::Funding,
            "R",
            h(0xb1),
            h(0xb3),
            &raw("aa03"),
            11,
            Some(U256::from(100))
        )
        .await
        .unwrap(),
        "only the in-flight version can be replaced"
    );
    let r = db.get("R").await.unwrap().unwrap();
    assert_eq!(
        (r.fund_tx_hash, r.fund_raw_tx.as_deref().map(|b| &b[..])),
        (Some(h(0xb2)), Some(&raw("aa02")[..]))
    );
    // The first version is the one mined (the replacement lost the race).
    assert!(db.funding_mined("R", h(0xb1), 5).await.unwrap());
    let r = db.get("R").await.unwrap().unwrap();
    assert_eq!(
        (
            r.state,
            r.fund_tx_hash,
            r.fund_raw_tx.as_deref().map(|b| &b[..])
        ),
        (State::Funded, Some(h(0xb1)), Some(&raw("aa01")[..]))
    );
    let versions = db.tx_versions(TxPurpose::Funding, "R").await.unwrap();
    let statuses: Vec<_> = versions
        .iter()
        .map(|v| (v.tx_hash, v.nonce, v.status.as_str()))
        .collect();
    assert_eq!(
        statuses,
        vec![(h(0xb1), 11, "mined"), (h(0xb2), 11, "replaced")]
    );
    // Approval: recorded before broadcast, replaced, dropped, recorded anew, approved.
    assert!(
        db.transition("R", State::Funded, State::PendingSeen)
            .await
            .unwrap()
    );
    assert!(
        db.record_tx(
            TxPurpose::Approval,
            "R",
            (12, h(0xa1), &raw("bb01")[..], None)
        )
        .await
        .unwrap()
    );
    assert!(
        !db.record_tx(
            TxPurpose::Approval,
            "R",
            (13, h(0xa9), &raw("bb09")[..], None)
        )
        .await
        .unwrap()
    );
    assert!(
        db.record_replacement(
            TxPurpose::Approval,
            "R",
            h(0xa1),
            h(0xa2),
            &raw("bb02"),
            12,
            None
        )
        .await
        .unwrap()
    );
    assert!(
        db.tx_dropped(TxPurpose::Approval, "R", h(0xa2))
            .await
            .unwrap()
    );
    let r = db.get("R").await.unwrap().unwrap();
    assert_eq!(
        (r.approve_tx_hash, r.approve_raw_tx, r.approve_nonce),
        (None, None, None)
    );
    assert!(
        db.record_tx(
            TxPurpose::Approval,
            "R",
            (14, h(0xa3), &raw("bb03")[..], None)
        )
        .await
        .unwrap()
    );
    assert!(db.approved("R", Some(h(0xa3))).await.unwrap());
    let versions = db.tx_versions(TxPurpose::Approval, "R").await.unwrap();
    let statuses: Vec<_> = versions
        .iter()
        .map(|v| (v.tx_hash, v.status.as_str()))
        .collect();
    assert_eq!(
        statuses,
        vec![
            (h(0xa1), "dropped"),
            (h(0xa2), "dropped"),
            (h(0xa3), "mined")
        ]
    );

    // Back-off and the worker's view.
    db.insert(&row("C", "tokC")).await.unwrap();
    db.defer(
        "C",
        "chain_unavailable",
        "node down",
        Duration::from_secs(60),
    )
    .await
    .unwrap();
    assert!(
        db.due(now_ms(), 10)
            .await
            .unwrap()
            .iter()
            .all(|r| r.receipt_id != "C")
    );
    assert!(
        db.due(now_ms() + 61_000, 10)
            .await
            .unwrap()
            .iter()
            .any(|r| r.receipt_id == "C")
    );
    let c = db.get("C").await.unwrap().unwrap();
    assert_eq!(
        (c.attempts, c.last_error.as_deref()),
        (1, Some("node down"))
    );

    // Failure and admin retry (a failed row with mined funding resumes at funded).
    db.fail("A", "number_taken", "x").await.unwrap();
    assert_eq!(db.list(&[State::Failed], 10).await.unwrap().len(), 1);
    assert!(db.retry("A").await.unwrap());
    assert_eq!(db.get("A").await.unwrap().unwrap().state, State::Funded);

    // Replay nonces.
    assert!(db.remember_nonce("n1", now_ms() + 10_000).await.unwrap());
    assert!(!db.remember_nonce("n1", now_ms() + 10_000).await.unwrap());

    // A row holding a value this code never writes reads as an error naming the row and the
    // column, never a panic; the typed fields round-trip what was inserted.
    let Inserted::New(z) = db.insert(&row("Z", "tokZ")).await.unwrap() else {
        panic!()
    };
    assert_eq!(
        (z.wallet, z.public_key.len(), z.token_sha256),
        (WALLET, 33, keccak256("tokZ"))
    );
    for (column, bad) in [
        ("wallet", "0x1234"),
        ("receipt_hash", "nope"),
        ("public_key", "zz"),
    ] {
        set_column(&db, "Z", column, bad).await;
        let err = db.get("Z").await.unwrap_err();
        assert!(
            matches!(&err, DbError::Corrupt { receipt_id, what } if receipt_id == "Z" && *what == column),
            "{err}"
        );
        assert!(err.to_string().contains(column), "{err}");
        let good = match column {
            "wallet" => WALLET.to_checksum(None),
            "receipt_hash" => B256::repeat_byte(0x11).to_string(),
            _ => "02".repeat(33),
        };
        set_column(&db, "Z", column, &good).await;
    }
    assert_eq!(db.get("Z").await.unwrap().unwrap().wallet, WALLET);
    sqlx::query("DELETE FROM onboarding WHERE receipt_id = 'Z'")
        .execute(db.pool())
        .await
        .unwrap();

    // Kamailio's subscriber table.
    let sip = SubscriberTable::new(connect(sip_url).await.unwrap());
    sip.ensure_schema().await.unwrap();
    sip.ensure_schema().await.unwrap();
    let s = SubscriberRow::new(
        "+15551230000",
        "sip.example.org",
        "sip.example.org",
        "pw",
        1,
    );
    sip.upsert(&s).await.unwrap();
    sip.upsert(&s).await.unwrap();
    let s2 = SubscriberRow::new(
        "+15551230000",
        "sip.example.org",
        "sip.example.org",
        "pw2",
        2,
    );
    sip.upsert(&s2).await.unwrap();
    assert_eq!(
        sip.get("+15551230000", "sip.example.org").await.unwrap(),
        Some(s2)
    );
    let (clear,): (String,) = sqlx::query_as("SELECT password FROM subscriber")
        .fetch_one(sip.pool())
        .await
        .unwrap();
    assert_eq!(clear, "", "only hashes are stored");
    // Compare-and-set on the generation: a stale writer loses.
    let s3 = SubscriberRow::new(
        "+15551230000",
        "sip.example.org",
        "sip.example.org",
        "pw3",
        3,
    );
    assert!(!sip.replace_if_generation(&s3, 1).await.unwrap());
    assert!(sip.replace_if_generation(&s3, 2).await.unwrap());
    assert_eq!(
        sip.get("+15551230000", "sip.example.org").await.unwrap(),
        Some(s3)
    );
    assert!(sip.delete("+15551230000", "sip.example.org").await.unwrap());
    assert!(!sip.delete("+15551230000", "sip.example.org").await.unwrap());

    legacy_subscriber_table_migrates(&sip).await;
}

/// An old database: Kamailio 5.6's own `subscriber` DDL (no SHA-256 column, no generation) with a
/// row holding its password in clear, as `kamctl add` or an older wallet server wrote it. At
/// start the server adds the columns, hashes the password and blanks it; the hashes are those
/// of the same password, so the subscriber's phone keeps working.
async fn legacy_subscriber_table_migrates(sip: &SubscriberTable) {
    use chaincall_wallet::subscriber::{ha1, ha1_sha256, ha1b};
    for statement in [
        "DROP TABLE subscriber",
        "CREATE TABLE subscriber (id INTEGER PRIMARY KEY NOT NULL, username VARCHAR(64) DEFAULT '' NOT NULL, domain VARCHAR(64) DEFAULT '' NOT NULL, password VARCHAR(64) DEFAULT '' NOT NULL, ha1 VARCHAR(128) DEFAULT '' NOT NULL, ha1b VARCHAR(128) DEFAULT '' NOT NULL, CONSTRAINT subscriber_account_idx UNIQUE (username, domain))",
        "INSERT INTO subscriber (id, username, domain, password, ha1, ha1b) VALUES (1, '+15551239999', 'sip.example.org', 'legacy-pw', '', '')",
        "INSERT INTO subscriber (id, username, domain, password, ha1, ha1b) VALUES (2, 'bob', 'other.example', 'bobs-pw', '', '')",
    ] {
        sqlx::query(statement).execute(sip.pool()).await.unwrap();
    }
    sip.ensure_columns().await.unwrap();
    sip.ensure_columns().await.unwrap();
    assert_eq!(
        sip.migrate_clear_passwords("sip.example.org", "realm.example")
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        sip.migrate_clear_passwords("sip.example.org", "realm.example")
            .await
            .unwrap(),
        0,
        "nothing left in clear"
    );
    let (clear,): (String,) = sqlx::query_as("SELECT password || '' FROM subscriber WHERE id = 1")
        .fetch_one(sip.pool())
        .await
        .unwrap();
    assert_eq!(clear, "");
    let row = sip
        .get("+15551239999", "sip.example.org")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.ha1, ha1("+15551239999", "realm.example", "legacy-pw"));
    assert_eq!(
        row.ha1b,
        ha1b(
            "+15551239999",
            "sip.example.org",
            "realm.example",
            "legacy-pw"
        )
    );
    assert_eq!(
        row.ha1_sha256,
        ha1_sha256("+15551239999", "realm.example", "legacy-pw")
    );
    assert_eq!(row.generation, 0, "not a derived password");
    // Another domain's row: its domain is its realm (Kamailio's convention).
    let bob = sip.get("bob", "other.example").await.unwrap().unwrap();
    assert_eq!(bob.ha1, ha1("bob", "other.example", "bobs-pw"));
}

#[tokio::test]
async fn sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let state = format!("sqlite://{}?mode=rwc", dir.path().join("w.db").display());
    let sip = format!("sqlite://{}?mode=rwc", dir.path().join("sip.db").display());
    suite(&state, &sip).await;
}

#[tokio::test]
async fn postgres() {
    // A throwaway server; with CHAINCALL_REQUIRE_PEERS=1 a missing PostgreSQL fails the test.
    let Some(pg) = chaincall_testkit::postgres::Postgres::start() else {
        return;
    };
    let url = pg.url("postgres");
    suite(&url, &url).await;
}
