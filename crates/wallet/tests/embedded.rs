//! End-to-end onboarding on the embedded chain: the server on 127.0.0.1 over HTTP, phones simulated
//! with real keys (a fresh secp256k1 wallet, a P-256 identity key, a store-signed receipt).

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use alloy::primitives::U256;
use chaincall_chain::{EmbeddedChain, KeystoreChain, dev_signer};
use chaincall_identity::{IdentityKey, KeyStatus, ecies};
use chaincall_wallet::payload::{APPROVE_CONTEXT, ONBOARD_CONTEXT, OnboardPayload};
use chaincall_wallet::subscriber::{ha1, ha1b};
use chaincall_wallet::testing::deploy_test_keystore;
use common::*;
use sha2::{Digest, Sha256};

async fn server_with(extra: &str) -> (tempfile::TempDir, Server<EmbeddedChain>) {
    let dir = tempfile::tempdir().unwrap();
    let chain = Arc::new(EmbeddedChain::default());
    let contract = deploy_test_keystore(&*chain).await.unwrap();
    let config = write_config(dir.path(), extra, "embedded", None);
    let server = Server::start(chain, contract, config).await;
    (dir, server)
}

async fn server() -> (tempfile::TempDir, Server<EmbeddedChain>) {
    server_with("[limits]\nrequests_per_second = 1000.0\nburst = 1000.0\n").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn onboarding_end_to_end() {
    let (_dir, s) = server().await;
    let phone = Phone::new();
    let (purchase, receipt) = receipt();
    let server_before = s.chain.balance(s.service.server_address()).await.unwrap();
    let started = Instant::now();
    let done = s.onboard(&phone, receipt).await;
    let elapsed = started.elapsed();
    eprintln!("onboarding latency (embedded, receipt to provisioned): {elapsed:?}");
    assert_eq!(done.state, "provisioned");
    assert_eq!(done.receipt_id, purchase.order_id);

    // The chain: approved, bound to the phone's wallet, with the declared key, approved once.
    let entry = s.chain.get_client(s.contract, phone.id()).await.unwrap();
    assert_eq!(entry.status, KeyStatus::Approved);
    assert_eq!(entry.wallet, Some(phone.wallet.address()));
    assert_eq!(entry.approved_key(), Some(phone.identity.public()));
    assert_eq!(approvals(&*s.chain, s.contract, phone.id()).await, 1);

    // Funding: exactly the recorded amount reached the wallet, in one recorded transaction, and
    // the phone paid its addClient out of it.
    let amount: U256 = done.fund_amount_wei.as_deref().unwrap().parse().unwrap();
    let fund_txs = s.service.db().funding_txs(&done.receipt_id).await.unwrap();
    assert_eq!(fund_txs.len(), 1, "{fund_txs:?}");
    assert_eq!(fund_txs[0].1, "mined");
    let left = s.chain.balance(phone.wallet.address()).await.unwrap();
    assert!(
        left < amount && left > U256::ZERO,
        "left {left} of {amount}"
    );
    let server_after = s.chain.balance(s.service.server_address()).await.unwrap();
    assert!(server_before - server_after >= amount);
    // Not a constant: measured gas × current max fee × 1.2 × 2 (default margin).
    let gas = U256::from(s.service.settings().add_client_gas);
    let max_fee = U256::from(3_000_000_000u64); // embedded: 2 × 1 gwei base + 1 gwei priority
    assert_eq!(
        amount,
        gas * U256::from(120) / U256::from(100) * max_fee * U256::from(2)
    );

    // SIP credentials: username = number; the password the phone fetches (signed by its
    // identity key) is stored only as Kamailio's hashes and the RFC 7616 SHA-256 one.
    let number = chaincall_identity::PhoneNumber::parse(&phone.number).unwrap();
    let password = s
        .client
        .sip_password(&phone.identity, &number)
        .await
        .unwrap();
    assert_eq!(password.len(), 40, "160 bits, hex");
    let row = s
        .sip
        .get(&phone.number, "sip.example.org")
        .await
        .unwrap()
        .expect("subscriber row");
    assert_eq!(row.generation, 1);
    assert_eq!(row.ha1, ha1(&phone.number, "sip.example.org", &password));
    assert_eq!(
        row.ha1b,
        ha1b(
            &phone.number,
            "sip.example.org",
            "sip.example.org",
            &password
        )
    );
    assert_eq!(
        row.ha1_sha256,
        hex::encode(Sha256::digest(
            format!("{}:sip.example.org:{}", phone.number, *password).as_bytes()
        ))
    );
    // Not the old scheme's password (the hash of the purchase token).
    let token_hash = hex::encode(Sha256::digest(purchase.purchase_token.as_bytes()));
    assert_ne!(*password, token_hash);
    assert_ne!(row.ha1, ha1(&phone.number, "sip.example.org", &token_hash));
    // No clear password in the table, and the password appears in no column.
    let (clear, whole): (String, String) = sqlx::query_as(
        "SELECT password, username || domain || ha1 || ha1b || ha1_sha256 FROM subscriber",
    )
    .fetch_one(s.sip.pool())
    .await
    .unwrap();
    assert_eq!(clear, "");
    assert!(!whole.contains(password.as_str()));

    // Status endpoint agrees; calling the whole flow again is harmless and changes nothing.
    let st = s.client.status(&done.receipt_id).await.unwrap();
    assert_eq!(st.state, "provisioned");
    assert_eq!(st.next, "done");
    // It is unauthenticated: an order id alone reveals no wallet, number or transaction.
    assert!(done.fund_tx_hash.is_some() && !done.wallet.is_empty());
    assert_eq!(st.wallet, "");
    assert_eq!(st.phone, None);
    assert_eq!(st.fund_tx_hash, None);
    assert_eq!(st.fund_amount_wei, None);
    assert_eq!(st.approve_tx_hash, None);
    assert_eq!(st.last_error, None);
    let (code, raw) = s
        .admin("GET", &format!("/v1/status/{}", done.receipt_id), None)
        .await;
    assert_eq!(code, 200);
    let raw = raw.to_string();
    assert!(!raw.contains(&done.wallet), "{raw}");
    assert!(
        !raw.contains(done.fund_tx_hash.as_deref().unwrap()),
        "{raw}"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_onboardings_never_collide_on_nonces() {
    let (_dir, s) = server().await;
    let s = Arc::new(s);
    let mut tasks = Vec::new();
    for _ in 0..6 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let phone = Phone::new();
            let (_, receipt) = receipt();
            let done = s.onboard(&phone, receipt).await;
            (phone, done)
        }));
    }
    let mut hashes = std::collections::HashSet::new();
    for t in tasks {
        let (phone, done) = t.await.unwrap();
        assert_eq!(done.state, "provisioned");
        assert!(hashes.insert(done.fund_tx_hash.clone().unwrap()));
        assert_eq!(approvals(&*s.chain, s.contract, phone.id()).await, 1);
    }
    assert_eq!(hashes.len(), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_receipts_and_payloads_are_refused_with_codes() {
    let (_dir, s) = server().await;
    let phone = Phone::new();

    // Forged: signed by another key.
    let forger = chaincall_wallet::receipt::StoreKey::generate().unwrap();
    let forged = forger.issue(&purchase(PRODUCT));
    let e = s.post_onboard(&phone, &forged).await.unwrap_err();
    assert_eq!(code(&e), "receipt_invalid");

    // Altered after signing (the price of a lax check).
    let (_, good) = receipt();
    let mut altered = good.clone();
    altered.original_json = altered.original_json.replace(PRODUCT, "onboardinh").into();
    let e = s.post_onboard(&phone, &altered).await.unwrap_err();
    assert_eq!(code(&e), "receipt_invalid");

    // Another product, genuinely signed.
    let other = store().issue(&purchase("coins"));
    let e = s.post_onboard(&phone, &other).await.unwrap_err();
    assert_eq!(code(&e), "receipt_wrong_product");

    // Not purchased (pending).
    let mut p = purchase(PRODUCT);
    p.purchase_state = 2;
    let e = s
        .post_onboard(&phone, &store().issue(&p))
        .await
        .unwrap_err();
    assert_eq!(code(&e), "receipt_not_purchased");

    // Sealed to another key: does not decrypt.
    let stranger = IdentityKey::generate().public();
    let e = s
        .client
        .onboard(&stranger, &phone.payload(&good))
        .await
        .unwrap_err();
    assert_eq!(code(&e), "payload_undecryptable");
    // Sealed for approval, sent to onboard: contexts differ, does not decrypt.
    let cross = phone.payload(&good).seal(&s.server_key, APPROVE_CONTEXT);
    let (st, body) = s
        .post_raw("/v1/onboard", serde_json::to_value(&cross).unwrap())
        .await;
    assert_eq!(
        (st, body["error"]["code"].as_str()),
        (400, Some("payload_undecryptable"))
    );
    // Bit flip.
    let mut bytes = ecies::seal(
        &s.server_key,
        ONBOARD_CONTEXT,
        &serde_json::to_vec(&phone.payload(&good)).unwrap(),
    );
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    use base64::Engine as _;
    let (st, body) = s
        .post_raw(
            "/v1/onboard",
            serde_json::json!({ "sealed": base64::engine::general_purpose::STANDARD.encode(bytes) }),
        )
        .await;
    assert_eq!(
        (st, body["error"]["code"].as_str()),
        (400, Some("payload_undecryptable"))
    );
    // Not even JSON of the right shape.
    let (st, body) = s.post_raw("/v1/onboard", serde_json::json!({"x": 1})).await;
    assert_eq!(
        (st, body["error"]["code"].as_str()),
        (400, Some("bad_request"))
    );

    // Stale timestamp.
    let mut stale = phone.payload(&good);
    stale.timestamp -= 3600;
    let e = s.client.onboard(&s.server_key, &stale).await.unwrap_err();
    assert_eq!(code(&e), "payload_expired");

    // Replay of the same sealed body: the second is refused (and nothing was double-recorded).
    let body =
        serde_json::to_value(phone.payload(&good).seal(&s.server_key, ONBOARD_CONTEXT)).unwrap();
    let (first, _) = s.post_raw("/v1/onboard", body.clone()).await;
    assert!(first == 200 || first == 202, "{first}");
    let (second, b) = s.post_raw("/v1/onboard", body).await;
    assert_eq!(
        (second, b["error"]["code"].as_str()),
        (409, Some("payload_replayed"))
    );

    // Reused receipt: another wallet presents the same receipt.
    let thief = Phone::new();
    let e = s.post_onboard(&thief, &good).await.unwrap_err();
    assert_eq!(code(&e), "receipt_reused");
    // The original owner retrying with a fresh payload is idempotent: same row, no new funding.
    let again = s.post_onboard(&phone, &good).await.unwrap();
    let txs = s.service.db().funding_txs(&again.receipt_id).await.unwrap();
    assert_eq!(txs.len(), 1);

    // Bad fields.
    let mut bad = phone.payload(&receipt().1);
    bad.phone = "5551234".into();
    assert_eq!(
        code(&s.client.onboard(&s.server_key, &bad).await.unwrap_err()),
        "invalid_phone"
    );
    let mut bad = phone.payload(&receipt().1);
    bad.wallet = "0x1234".into();
    assert_eq!(
        code(&s.client.onboard(&s.server_key, &bad).await.unwrap_err()),
        "invalid_wallet"
    );
    let mut bad = phone.payload(&receipt().1);
    bad.public_key = "02".repeat(10);
    assert_eq!(
        code(&s.client.onboard(&s.server_key, &bad).await.unwrap_err()),
        "invalid_public_key"
    );
    // A contract address as wallet: never funded.
    let mut bad = phone.payload(&receipt().1);
    bad.wallet = s.contract.to_checksum(None);
    assert_eq!(
        code(&s.client.onboard(&s.server_key, &bad).await.unwrap_err()),
        "wallet_not_eoa"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approval_checks_the_pending_entry_against_the_record() {
    let (_dir, s) = server().await;

    // Phone number differs between onboard and approve.
    let phone = Phone::new();
    let (purchase, r) = receipt();
    let st = s.post_onboard(&phone, &r).await.unwrap();
    assert!(st.is_funded(), "{st:?}");
    add_client(
        &*s.chain,
        s.contract,
        &phone.wallet,
        &phone,
        &phone.identity.public(),
        &purchase,
    )
    .await
    .unwrap();
    let mut other_number = phone.payload(&r);
    other_number.phone = phone_number();
    let e = s
        .client
        .approve(&s.server_key, &other_number)
        .await
        .unwrap_err();
    assert_eq!(code(&e), "phone_mismatch");
    // Declared another key at approval than at onboarding.
    let mut other_key = phone.payload(&r);
    other_key.public_key = hex::encode(IdentityKey::generate().public().to_bytes());
    assert_eq!(
        code(
            &s.client
                .approve(&s.server_key, &other_key)
                .await
                .unwrap_err()
        ),
        "key_mismatch"
    );
    // Nothing was approved by the refused requests.
    assert_eq!(approvals(&*s.chain, s.contract, phone.id()).await, 0);
    // The genuine request still goes through.
    let ok = s.post_approve(&phone, &r).await.unwrap();
    assert_eq!(ok.state, "provisioned");

    // Pending entry with another key than declared and signed: the phone put K2 on chain,
    // declared K1 and proved possession of K1.
    let phone = Phone::new();
    let (purchase, r) = receipt();
    s.post_onboard(&phone, &r).await.unwrap();
    let sneaky = IdentityKey::generate().public();
    add_client(
        &*s.chain,
        s.contract,
        &phone.wallet,
        &phone,
        &sneaky,
        &purchase,
    )
    .await
    .unwrap();
    let e = s.post_approve(&phone, &r).await.unwrap_err();
    assert_eq!(code(&e), "pending_key_mismatch");
    assert_eq!(
        s.chain
            .get_client(s.contract, phone.id())
            .await
            .unwrap()
            .status,
        KeyStatus::Pending
    );

    // Pending entry from another wallet (someone else's addClient for this number).
    let phone = Phone::new();
    let (purchase, r) = receipt();
    s.post_onboard(&phone, &r).await.unwrap();
    let squatter = dev_signer(7);
    add_client(
        &*s.chain,
        s.contract,
        &squatter,
        &phone,
        &phone.identity.public(),
        &purchase,
    )
    .await
    .unwrap();
    // The server verified the number for this phone: it replaces the squatter's entry with a
    // reservation for the phone's wallet, and the squatter cannot come back.
    let e = s.post_approve(&phone, &r).await.unwrap_err();
    assert_eq!(code(&e), "number_reserved");
    assert_eq!(
        s.chain.reserved_for(s.contract, phone.id()).await.unwrap(),
        Some(phone.wallet.address())
    );
    let again = add_client(
        &*s.chain,
        s.contract,
        &squatter,
        &phone,
        &phone.identity.public(),
        &purchase,
    )
    .await
    .unwrap_err();
    assert!(again.to_string().contains("Reserved"), "{again}");
    s.add_pending(&phone, &purchase, &phone.identity.public())
        .await;
    s.post_approve(&phone, &r).await.unwrap();

    // Approval before addClient.
    let phone = Phone::new();
    let (_, r) = receipt();
    s.post_onboard(&phone, &r).await.unwrap();
    let e = s.post_approve(&phone, &r).await.unwrap_err();
    assert_eq!(code(&e), "pending_entry_missing");

    // Approval for a receipt never onboarded.
    let phone = Phone::new();
    let (_, r) = receipt();
    let e = s.post_approve(&phone, &r).await.unwrap_err();
    assert_eq!(code(&e), "unknown_receipt");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_lists_retries_and_revokes() {
    let (_dir, s) = server().await;
    let phone = Phone::new();
    let (_, r) = receipt();
    let funded = s.post_onboard(&phone, &r).await.unwrap();
    assert_eq!(funded.state, "funded");

    let (st, _) = s.admin("GET", "/v1/admin/onboardings", None).await;
    assert_eq!(st, 401);
    let (st, _) = s
        .admin(
            "GET",
            "/v1/admin/onboardings",
            Some("wrong-token-0123456789xx"),
        )
        .await;
    assert_eq!(st, 401);
    let (st, list) = s
        .admin(
            "GET",
            "/v1/admin/onboardings?state=pending",
            Some(ADMIN_TOKEN),
        )
        .await;
    assert_eq!(st, 200);
    assert!(
        list.as_array()
            .unwrap()
            .iter()
            .any(|r| r["receipt_id"] == funded.receipt_id.as_str()
                && r["phone"] == phone.number.as_str())
    );
    let (st, list) = s
        .admin(
            "GET",
            "/v1/admin/onboardings?state=failed",
            Some(ADMIN_TOKEN),
        )
        .await;
    assert_eq!((st, list.as_array().unwrap().len()), (200, 0));
    let (st, row) = s
        .admin(
            "POST",
            &format!("/v1/admin/onboardings/{}/retry", funded.receipt_id),
            Some(ADMIN_TOKEN),
        )
        .await;
    assert_eq!((st, row["state"].as_str()), (200, Some("funded")));

    // Finish, then revoke: contract revoke + SIP row gone.
    let done = s.onboard(&phone, r).await;
    assert_eq!(done.state, "provisioned");
    assert!(
        s.sip
            .get(&phone.number, "sip.example.org")
            .await
            .unwrap()
            .is_some()
    );
    let (st, out) = s
        .admin(
            "POST",
            &format!("/v1/admin/subscribers/{}/revoke", phone.number),
            Some(ADMIN_TOKEN),
        )
        .await;
    assert_eq!(st, 200, "{out}");
    assert_eq!(out["sip_row_deleted"], true);
    assert!(out["revoke_tx_hash"].is_string());
    assert_eq!(
        s.chain
            .get_client(s.contract, phone.id())
            .await
            .unwrap()
            .status,
        KeyStatus::Revoked
    );
    assert!(
        s.sip
            .get(&phone.number, "sip.example.org")
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        s.client.status(&done.receipt_id).await.unwrap().state,
        "revoked"
    );

    // OpenAPI is served.
    let (st, doc) = s.admin("GET", "/v1/openapi.json", None).await;
    assert_eq!(st, 200);
    assert_eq!(doc["openapi"], "3.0.3");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn floods_are_rate_limited() {
    let (_dir, s) = server_with("[limits]\nrequests_per_second = 1.0\nburst = 5.0\n").await;
    let mut codes = Vec::new();
    for _ in 0..12 {
        let (st, body) = s
            .admin("GET", "/v1/status/GPA.0000-0000-0000-00000", None)
            .await;
        codes.push((st, body["error"]["code"].as_str().unwrap_or("").to_owned()));
    }
    assert!(codes[..5].iter().all(|(st, _)| *st == 404), "{codes:?}");
    assert!(
        codes[5..]
            .iter()
            .filter(|(st, c)| *st == 429 && c == "rate_limited")
            .count()
            >= 6,
        "{codes:?}"
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (st, _) = s
        .admin("GET", "/v1/status/GPA.0000-0000-0000-00000", None)
        .await;
    assert_eq!(st, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payload_round_trip_through_the_public_type() {
    let server = IdentityKey::generate();
    let phone = Phone::new();
    let (_, r) = receipt();
    let p = phone.payload(&r);
    let sealed = p.seal(&server.public(), ONBOARD_CONTEXT);
    assert_eq!(
        OnboardPayload::open(&server, ONBOARD_CONTEXT, &sealed),
        Some(p.clone())
    );
    assert_eq!(
        OnboardPayload::open(&server, APPROVE_CONTEXT, &sealed),
        None
    );
    // Debug output carries neither the receipt nor the key.
    let dbg = format!("{p:?}");
    assert!(!dbg.contains(&r.signature[..20]) && !dbg.contains("purchaseToken"));
}

/// Issue 13 (likely item): a squatter's `addClient` for a number no longer blocks its verified
/// owner. The phone's own `addClient` fails (`AlreadyPending`); it asks for approval anyway, the
/// server reserves the number for the verified wallet (replacing the squatter's entry), and the
/// phone's second `addClient` and the approval go through. (Before: `pending_wallet_mismatch` for
/// as long as the squatter kept resubmitting.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_squatted_number_is_reserved_for_its_verified_owner() {
    let (_dir, s) = server().await;
    let phone = Phone::new();
    let (purchase, r) = receipt();
    let squatter = dev_signer(8);
    add_client(
        &*s.chain,
        s.contract,
        &squatter,
        &phone,
        &IdentityKey::generate().public(),
        &purchase,
    )
    .await
    .unwrap();
    let done = s.onboard(&phone, r).await;
    assert_eq!(done.state, "provisioned");
    let entry = s.chain.get_client(s.contract, phone.id()).await.unwrap();
    assert_eq!(entry.wallet, Some(phone.wallet.address()));
    assert_eq!(entry.approved_key(), Some(phone.identity.public()));
    // The squatter's entry is on record as revoked by the server.
    let history = s.chain.history(s.contract, phone.id()).await.unwrap();
    assert!(history.iter().any(|e| e.change
        == chaincall_chain::Change::Revoked {
            wallet: squatter.address(),
            by: s.service.server_address()
        }));
    s.stop().await;
}

/// The worker picks up new rows too: an onboarding request that finds the worker driving its row
/// waits for it and answers where the row got (funded), never the half-way state it found.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_waits_for_the_worker_driving_the_same_row() {
    let (_dir, s) = server().await;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // A worker that never sleeps: it grabs every new row as soon as it is stored.
    let worker = {
        let (service, stop) = (s.service.clone(), stop.clone());
        tokio::spawn(async move {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                service.work_once().await.unwrap();
                tokio::task::yield_now().await;
            }
        })
    };
    for _ in 0..12 {
        let phone = Phone::new();
        let (_, r) = receipt();
        let st = s.post_onboard(&phone, &r).await.unwrap();
        assert_eq!(st.state, "funded", "{st:?}");
        assert!(s.chain.balance(phone.wallet.address()).await.unwrap() > U256::ZERO);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    worker.await.unwrap();
}
