//! End-to-end onboarding on anvil (a real JSON-RPC node), and a node that goes down mid-onboarding.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use alloy::primitives::Address;
use alloy::providers::Provider;
use chaincall_chain::{AnvilProcess, KeystoreChain, RpcChain, RpcConfig};
use chaincall_identity::KeyStatus;
use chaincall_wallet::testing::deploy_test_keystore;
use common::*;

fn anvil() -> Option<AnvilProcess> {
    let path = chaincall_testkit::peer("anvil")?;
    Some(AnvilProcess::spawn(&path, chaincall_testkit::free_tcp_port(), &[]).expect("anvil starts"))
}

async fn deploy(url: &str) -> (Arc<RpcChain>, Address) {
    let chain = Arc::new(RpcChain::connect(url, RpcConfig::default()).await.unwrap());
    let contract = deploy_test_keystore(&*chain).await.unwrap();
    (chain, contract)
}

/// Ether transfers from `from` to `to` in blocks `first..=latest`, counted on chain.
async fn transfers(chain: &RpcChain, first: u64, from: Address, to: Address) -> usize {
    chaincall_wallet::testing::count_transfers(chain, first, from, to)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn onboarding_end_to_end_on_anvil() {
    let Some(node) = anvil() else { return };
    let (chain, contract) = deploy(&node.url()).await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "", "rpc", Some((&node.url(), contract)));
    let s = Server::start(chain.clone(), contract, config).await;
    let first_block = chain.block_number().await.unwrap();

    let mut latencies = Vec::new();
    for _ in 0..3 {
        let phone = Phone::new();
        let (_, receipt) = receipt();
        let started = Instant::now();
        let done = s.onboard(&phone, receipt).await;
        latencies.push(started.elapsed());
        assert_eq!(done.state, "provisioned");
        let entry = chain.get_client(contract, phone.id()).await.unwrap();
        assert_eq!(entry.status, KeyStatus::Approved);
        assert_eq!(entry.approved_key(), Some(phone.identity.public()));
        assert_eq!(entry.wallet, Some(phone.wallet.address()));
        assert_eq!(approvals(&*chain, contract, phone.id()).await, 1);
        assert_eq!(
            transfers(
                &chain,
                first_block,
                s.service.server_address(),
                phone.wallet.address()
            )
            .await,
            1
        );
        assert!(
            s.sip
                .get(&phone.number, "sip.example.org")
                .await
                .unwrap()
                .is_some()
        );
    }
    eprintln!("onboarding latency (anvil, receipt to provisioned): {latencies:?}");
    s.stop().await;
}

/// A TCP proxy in front of the node that can be switched off (connections refused and cut).
struct Proxy {
    addr: SocketAddr,
    down: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl Proxy {
    async fn start(upstream: SocketAddr) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let down = Arc::new(AtomicBool::new(false));
        let conns = Arc::new(Mutex::new(Vec::new()));
        let (d, c) = (down.clone(), conns.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    return;
                };
                if d.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let h = tokio::spawn(async move {
                    if let Ok(mut out) = tokio::net::TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                    }
                });
                c.lock().unwrap().push(h);
            }
        });
        Self { addr, down, conns }
    }

    fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
        if down {
            for h in self.conns.lock().unwrap().drain(..) {
                h.abort();
            }
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// What [`behind_proxy`] sets up: the node reached directly, the keystore, the proxy, the server's
/// folder, the server and the first block of the test.
type Proxied = (
    Arc<RpcChain>,
    Address,
    Proxy,
    tempfile::TempDir,
    Server<RpcChain>,
    u64,
);

/// A keystore deployed on anvil, and a server that reaches the node through a [`Proxy`] the test
/// can cut (`direct` bypasses it).
async fn behind_proxy(node: &AnvilProcess) -> Proxied {
    let (direct, contract) = deploy(&node.url()).await;
    let upstream: SocketAddr = format!("127.0.0.1:{}", node.port()).parse().unwrap();
    let proxy = Proxy::start(upstream).await;
    let chain = Arc::new(
        RpcChain::connect(&proxy.url(), RpcConfig::default())
            .await
            .unwrap(),
    );
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "", "rpc", Some((&proxy.url(), contract)));
    let s = Server::start(chain, contract, config).await;
    let first_block = direct.block_number().await.unwrap();
    (direct, contract, proxy, dir, s, first_block)
}

/// Exactly one funding transfer from the server to `phone` since `first_block`, and one
/// approval of its number.
async fn funded_and_approved_once(
    chain: &Arc<RpcChain>,
    contract: Address,
    s: &Server<RpcChain>,
    phone: &Phone,
    first_block: u64,
) {
    let server = s.service.server_address();
    let to = phone.wallet.address();
    assert_eq!(transfers(chain, first_block, server, to).await, 1);
    assert_eq!(approvals(&**chain, contract, phone.id()).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_down_keeps_the_request_queued_and_retries() {
    let Some(node) = anvil() else { return };
    let (direct, contract, proxy, _dir, s, first_block) = behind_proxy(&node).await;

    let phone = Phone::new();
    let (_, receipt) = receipt();
    proxy.set_down(true);
    // The paid request is accepted and queued, not lost: 202 with the transient error.
    let queued = s.post_onboard(&phone, &receipt).await.unwrap();
    assert_eq!(queued.state, "received", "{queued:?}");
    assert!(queued.last_error.is_some());
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let still = s.client.status(&queued.receipt_id).await.unwrap();
    assert_eq!(still.state, "received");
    // The node returns: the worker's back-off retry funds it, without the phone asking again.
    proxy.set_down(false);
    let funded = s
        .wait_funded(&queued.receipt_id, Duration::from_secs(90))
        .await;
    assert_eq!(funded.state, "funded");
    // The rest of the flow (through the proxy-free node for the phone).
    let done = s.onboard_via(&*direct, &phone, receipt).await;
    assert_eq!(done.state, "provisioned");
    funded_and_approved_once(&direct, contract, &s, &phone, first_block).await;
    s.stop().await;
}

/// `/v1/approve` while the node is unreachable: the request is recorded and queued (202, state
/// `funded`, `approval_queued`, code `chain_unavailable`), the worker retries it with back-off
/// while the node stays away, and finishes it when the node returns, without the phone asking
/// again: exactly one funding and one approval.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approve_while_node_down_is_queued_and_completes_when_it_returns() {
    let Some(node) = anvil() else { return };
    let (direct, contract, proxy, _dir, s, first_block) = behind_proxy(&node).await;

    // Onboard and fund while the node is up; the phone sends addClient itself.
    let phone = Phone::new();
    let (purchase, receipt) = receipt();
    let first = s.post_onboard(&phone, &receipt).await.unwrap();
    s.wait_funded(&first.receipt_id, Duration::from_secs(60))
        .await;
    add_client(
        &*direct,
        contract,
        &phone.wallet,
        &phone,
        &phone.identity.public(),
        &purchase,
    )
    .await
    .unwrap();

    // The node goes away; the approval request is accepted and queued, not refused.
    proxy.set_down(true);
    let sealed = phone
        .payload(&receipt)
        .seal(&s.server_key, chaincall_wallet::payload::APPROVE_CONTEXT);
    let (status, body) = s
        .post_raw("/v1/approve", serde_json::to_value(&sealed).unwrap())
        .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["state"], "funded", "{body}");
    assert_eq!(body["approval_queued"], true, "{body}");
    assert_eq!(body["last_error_code"], "chain_unavailable", "{body}");
    assert_eq!(body["next"], "wait", "{body}");

    // While the node stays down the worker keeps retrying (attempts grow), and nothing moves.
    let receipt_id = first.receipt_id.clone();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, list) = s
            .admin(
                "GET",
                "/v1/admin/onboardings?state=funded",
                Some(ADMIN_TOKEN),
            )
            .await;
        assert_eq!(status, 200, "{list}");
        let row = list
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["receipt_id"] == receipt_id.as_str())
            .cloned()
            .unwrap_or_else(|| panic!("queued row listed as funded: {list}"));
        assert_eq!(row["last_error_code"], "chain_unavailable", "{row}");
        if row["attempts"].as_i64().unwrap() >= 3 {
            break;
        }
        assert!(Instant::now() < deadline, "the worker did not retry: {row}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        direct
            .get_client(contract, phone.id())
            .await
            .unwrap()
            .status,
        KeyStatus::Pending
    );

    // The node returns: the worker approves and provisions on its own.
    proxy.set_down(false);
    let done = s
        .wait_provisioned(&receipt_id, Duration::from_secs(120))
        .await;
    assert!(!done.approval_queued);
    assert!(done.last_error_code.is_none(), "{done:?}");
    assert_eq!(
        direct
            .get_client(contract, phone.id())
            .await
            .unwrap()
            .status,
        KeyStatus::Approved
    );
    funded_and_approved_once(&direct, contract, &s, &phone, first_block).await;
    assert!(
        s.sip
            .get(&phone.number, "sip.example.org")
            .await
            .unwrap()
            .is_some()
    );
    s.stop().await;
}

async fn automine(chain: &RpcChain, on: bool) {
    let _: serde_json::Value = chain
        .provider()
        .raw_request("evm_setAutomine".into(), (on,))
        .await
        .unwrap();
}

async fn mine_block(chain: &RpcChain) {
    let _: serde_json::Value = chain
        .provider()
        .raw_request("evm_mine".into(), ())
        .await
        .unwrap();
}

/// Waits until the server has signed at least `n` versions of a receipt's transaction.
async fn versions_at_least(
    s: &Server<RpcChain>,
    purpose: chaincall_wallet::db::TxPurpose,
    receipt_id: &str,
    n: usize,
) -> Vec<chaincall_wallet::db::TxVersion> {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let v = s
            .service
            .db()
            .tx_versions(purpose, receipt_id)
            .await
            .unwrap();
        if v.len() >= n {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "no replacement of the unmined {purpose:?} transaction: {v:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every version has the same nonce, each raises both fees by at least 12.5 % over the one it
/// replaced, exactly one is mined and it is `mined_hash`; the rest are `replaced`.
fn check_versions(
    versions: &[chaincall_wallet::db::TxVersion],
    mined_hash: alloy::primitives::B256,
) {
    use chaincall_wallet::chain::decode_eip1559;
    assert!(versions.len() >= 2, "{versions:?}");
    let txs: Vec<_> = versions
        .iter()
        .map(|v| decode_eip1559(v.raw_tx.as_deref().unwrap()).unwrap())
        .collect();
    for pair in txs.windows(2) {
        let (old, new) = (&pair[0], &pair[1]);
        assert_eq!(new.nonce, old.nonce, "a replacement keeps the nonce");
        assert_eq!(
            (new.to, new.value, &new.input),
            (old.to, old.value, &old.input)
        );
        assert!(
            new.max_fee_per_gas * 1000 >= old.max_fee_per_gas * 1125,
            "max fee {} → {}",
            old.max_fee_per_gas,
            new.max_fee_per_gas
        );
        assert!(
            new.max_priority_fee_per_gas * 1000 >= old.max_priority_fee_per_gas * 1125,
            "tip {} → {}",
            old.max_priority_fee_per_gas,
            new.max_priority_fee_per_gas
        );
    }
    let mined: Vec<_> = versions.iter().filter(|v| v.status == "mined").collect();
    assert_eq!(mined.len(), 1, "{versions:?}");
    assert_eq!(mined[0].tx_hash, mined_hash);
    assert!(
        versions
            .iter()
            .all(|v| v.status == "mined" || v.status == "replaced"),
        "{versions:?}"
    );
}

/// With mining switched off, the funding transfer and then the approveClient stay unmined; after
/// `fees.replace_after_secs` each is replaced (same nonce, fees +13 %), the replacement recorded
/// before broadcast. Once blocks are mined again, the onboarding ends with one funding transfer
/// and one approval.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unmined_funding_and_approval_are_replaced_with_higher_fees() {
    use chaincall_wallet::db::TxPurpose;
    let Some(node) = anvil() else { return };
    let (chain, contract) = deploy(&node.url()).await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        "[fees]\nreplace_after_secs = 1\nbump_percent = 13\n",
        "rpc",
        Some((&node.url(), contract)),
    );
    let s = Server::start(chain.clone(), contract, config).await;
    let first_block = chain.block_number().await.unwrap();

    // Funding: mining off, the transfer waits in the pool and gets replaced.
    automine(&chain, false).await;
    let phone = Phone::new();
    let (purchase, receipt) = receipt();
    let payload = phone.payload(&receipt);
    let server_key = s.server_key.clone();
    let client = s.client.clone();
    let first = tokio::spawn(async move { client.onboard(&server_key, &payload).await });
    let receipt_id = purchase.order_id.clone();
    versions_at_least(&s, TxPurpose::Funding, &receipt_id, 3).await;
    mine_block(&chain).await;
    automine(&chain, true).await;
    let first = first.await.unwrap().unwrap();
    assert_eq!(first.receipt_id, receipt_id);
    let funded = s.wait_funded(&receipt_id, Duration::from_secs(90)).await;
    let versions = s
        .service
        .db()
        .tx_versions(TxPurpose::Funding, &receipt_id)
        .await
        .unwrap();
    // `/v1/status` is unauthenticated: it shows no transaction or amount; the server's record does.
    assert_eq!(funded.fund_tx_hash, None);
    assert_eq!(funded.wallet, "");
    let row = s.service.db().get(&receipt_id).await.unwrap().unwrap();
    check_versions(&versions, row.fund_tx_hash.unwrap());
    let amount = row.fund_amount.unwrap();
    assert_eq!(chain.balance(phone.wallet.address()).await.unwrap(), amount);

    // The phone's addClient (mined), then approval with mining off again.
    add_client(
        &*chain,
        contract,
        &phone.wallet,
        &phone,
        &phone.identity.public(),
        &purchase,
    )
    .await
    .unwrap();
    automine(&chain, false).await;
    let payload = phone.payload(&receipt);
    let server_key = s.server_key.clone();
    let client = s.client.clone();
    let asked = tokio::spawn(async move { client.approve(&server_key, &payload).await });
    versions_at_least(&s, TxPurpose::Approval, &receipt_id, 3).await;
    // Nothing mined yet (events come from mined blocks only; `getClient` may read the pending
    // block, where the approval already shows).
    assert_eq!(approvals(&*chain, contract, phone.id()).await, 0);
    assert_eq!(
        s.client.status(&receipt_id).await.unwrap().state,
        "pending_seen"
    );
    mine_block(&chain).await;
    automine(&chain, true).await;
    asked.await.unwrap().unwrap();
    let done = s
        .wait_provisioned(&receipt_id, Duration::from_secs(90))
        .await;
    let versions = s
        .service
        .db()
        .tx_versions(TxPurpose::Approval, &receipt_id)
        .await
        .unwrap();
    assert_eq!(done.approve_tx_hash, None, "not shown by /v1/status");
    let row = s.service.db().get(&receipt_id).await.unwrap().unwrap();
    check_versions(&versions, row.approve_tx_hash.unwrap());

    // Exactly one funding transfer and one approval on chain.
    assert_eq!(
        chain.get_client(contract, phone.id()).await.unwrap().status,
        KeyStatus::Approved
    );
    funded_and_approved_once(&chain, contract, &s, &phone, first_block).await;
    s.stop().await;
}
