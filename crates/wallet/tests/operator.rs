//! The operator's view of a running wallet server: `/healthz`, `/readyz`, `/metrics`, the admin
//! list, and a server whose wallet does not own the keystore.

mod common;

use std::sync::Arc;

use chaincall_chain::{
    AnvilProcess, EmbeddedChain, KeystoreChain, RpcChain, RpcConfig, dev_signer,
};
use chaincall_wallet::server::{ServerError, build_service};
use chaincall_wallet::testing::deploy_test_keystore;
use common::*;

const LIMITS: &str = "[limits]\nrequests_per_second = 1000.0\nburst = 1000.0\n";

async fn embedded() -> (tempfile::TempDir, Server<EmbeddedChain>) {
    let chain = Arc::new(EmbeddedChain::default());
    let contract = deploy_test_keystore(&*chain).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), LIMITS, "embedded", None);
    let s = Server::start(chain, contract, config).await;
    (dir, s)
}

/// `GET path` without credentials: status and body text.
async fn get(base: &str, path: &str) -> (u16, String) {
    let r = alloy::transports::http::reqwest::get(format!("{base}{path}"))
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.text().await.unwrap())
}

/// The value of the sample named exactly `sample` (name and labels) in a `/metrics` scrape.
async fn metric(base: &str, sample: &str) -> i64 {
    let (status, text) = get(base, "/metrics").await;
    assert_eq!(status, 200, "{text}");
    text.lines()
        .find_map(|l| l.strip_prefix(sample)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("{sample} missing from:\n{text}"))
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_answer_and_metrics_move_with_an_onboarding() {
    let (_dir, s) = embedded().await;
    assert_eq!(get(&s.base, "/healthz").await, (200, "ok\n".into()));
    assert_eq!(get(&s.base, "/readyz").await, (200, "ready\n".into()));
    let (_, text) = get(&s.base, "/metrics").await;
    assert!(
        text.contains("# TYPE chaincall_wallet_onboardings gauge"),
        "{text}"
    );
    assert!(
        text.contains("chaincall_wallet_build_info{version=\""),
        "{text}"
    );

    let funded = r#"chaincall_wallet_onboardings{state="funded"}"#;
    let provisioned = r#"chaincall_wallet_onboardings{state="provisioned"}"#;
    let fundings = "chaincall_wallet_fundings_sent_total";
    let approvals = "chaincall_wallet_approvals_sent_total";
    assert_eq!(metric(&s.base, funded).await, 0);
    assert_eq!(metric(&s.base, fundings).await, 0);
    assert_eq!(metric(&s.base, "chaincall_wallet_queue_due").await, 0);

    let phone = Phone::new();
    let (_, r) = receipt();
    let st = s.post_onboard(&phone, &r).await.unwrap();
    assert_eq!(st.state, "funded");
    assert_eq!(metric(&s.base, funded).await, 1);
    assert_eq!(metric(&s.base, fundings).await, 1);
    assert_eq!(metric(&s.base, approvals).await, 0);

    let done = s.onboard(&phone, r).await;
    assert_eq!(done.state, "provisioned");
    assert_eq!(metric(&s.base, funded).await, 0);
    assert_eq!(metric(&s.base, provisioned).await, 1);
    assert_eq!(metric(&s.base, approvals).await, 1);
    assert_eq!(metric(&s.base, fundings).await, 1);
    s.stop().await;
}

/// Without `state` the admin list shows every onboarding, whatever its state; `state=all` too;
/// another value is a 400, as the OpenAPI document says.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_list_defaults_to_every_onboarding_and_accepts_all() {
    let (_dir, s) = embedded().await;
    let (a, b) = (Phone::new(), Phone::new());
    let (_, ra) = receipt();
    let (_, rb) = receipt();
    let done = s.onboard(&a, ra).await;
    assert_eq!(done.state, "provisioned");
    let funded = s.post_onboard(&b, &rb).await.unwrap();
    assert_eq!(funded.state, "funded");

    for path in ["/v1/admin/onboardings", "/v1/admin/onboardings?state=all"] {
        let (st, list) = s.admin("GET", path, Some(ADMIN_TOKEN)).await;
        assert_eq!(st, 200, "{path}: {list}");
        let mut ids: Vec<&str> = list
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["receipt_id"].as_str().unwrap())
            .collect();
        ids.sort_unstable();
        let mut want = vec![done.receipt_id.as_str(), funded.receipt_id.as_str()];
        want.sort_unstable();
        assert_eq!(ids, want, "{path}");
    }
    let (st, err) = s
        .admin(
            "GET",
            "/v1/admin/onboardings?state=bogus",
            Some(ADMIN_TOKEN),
        )
        .await;
    assert_eq!(st, 400, "{err}");
    assert_eq!(err["error"]["code"], "invalid_field", "{err}");

    // The OpenAPI document says so: `all` is the default, a bad value is a 400.
    let (_, doc) = s.admin("GET", "/v1/openapi.json", None).await;
    let list = &doc["paths"]["/v1/admin/onboardings"]["get"];
    assert_eq!(list["parameters"][0]["schema"]["default"], "all");
    assert!(
        list["responses"]["400"]["description"]
            .as_str()
            .is_some_and(|d| d.starts_with("invalid_field")),
        "{list}"
    );
    s.stop().await;
}

/// A wallet that is not the keystore's owner could fund phones but never approve them: the server
/// refuses to start, naming both wallets and the fix.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_whose_wallet_does_not_own_the_keystore_refuses_to_start() {
    let chain = Arc::new(EmbeddedChain::default());
    let contract = chain
        .deploy(&dev_signer(1))
        .await
        .unwrap()
        .contract_address
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), LIMITS, "embedded", None);
    let err = build_service(&config, chain, contract).await.unwrap_err();
    assert!(matches!(err, ServerError::NotOwner { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("does not own the keystore"), "{text}");
    assert!(
        text.contains(&dev_signer(1).address().to_string()),
        "{text}"
    );
}

/// Ownership moved away from a running server: `/readyz` says so, `/healthz` still answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_is_unready_once_the_wallet_no_longer_owns_the_keystore() {
    let (_dir, s) = embedded().await;
    assert_eq!(get(&s.base, "/readyz").await.0, 200);
    let (old, new) = (dev_signer(0), dev_signer(1));
    assert_eq!(s.service.server_address(), old.address());
    s.chain
        .transfer_ownership(s.contract, &old, new.address())
        .await
        .unwrap();
    s.chain.accept_ownership(s.contract, &new).await.unwrap();
    assert_eq!(
        get(&s.base, "/readyz").await,
        (
            503,
            "the server's wallet does not own the keystore\n".into()
        )
    );
    assert_eq!(get(&s.base, "/healthz").await.0, 200);
    s.stop().await;
}

/// The node stops: `/readyz` answers 503 naming the chain (never its URL); `/healthz` and
/// `/metrics` still answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_is_unready_when_the_chain_stops() {
    let Some(path) = chaincall_testkit::peer("anvil") else {
        return;
    };
    let node = AnvilProcess::spawn(&path, chaincall_testkit::free_tcp_port(), &[]).unwrap();
    let url = node.url();
    let chain = Arc::new(RpcChain::connect(&url, RpcConfig::default()).await.unwrap());
    let contract = deploy_test_keystore(&*chain).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), LIMITS, "rpc", Some((&url, contract)));
    let s = Server::start(chain, contract, config).await;
    assert_eq!(get(&s.base, "/readyz").await, (200, "ready\n".into()));

    let errors = "chaincall_wallet_chain_errors_total";
    assert_eq!(metric(&s.base, errors).await, 0);

    drop(node);
    let (status, body) = get(&s.base, "/readyz").await;
    assert_eq!(
        (status, body.as_str()),
        (503, "the chain does not answer\n")
    );
    assert!(!body.contains(&url));
    assert_eq!(get(&s.base, "/healthz").await.0, 200);
    // A paid request while the node is down is queued; the failed chain call is counted.
    let phone = Phone::new();
    let (_, r) = receipt();
    let queued = s.post_onboard(&phone, &r).await.unwrap();
    assert_eq!(queued.state, "received", "{queued:?}");
    assert!(metric(&s.base, errors).await >= 1);
    assert_eq!(
        metric(&s.base, r#"chaincall_wallet_onboardings{state="received"}"#).await,
        1
    );
    s.stop().await;
}
