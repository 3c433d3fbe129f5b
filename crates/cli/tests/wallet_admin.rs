//! `chaincall wallet admin …` against a real `chaincall wallet serve` process on the embedded
//! chain, as an operator runs it from the server's folder: an onboarding made through the API
//! shows in `list` and `show` (and as JSON with `--json`); `revoke` shows in both; and each
//! failure says what is wrong — a token that does not match the server's (401), an unknown
//! receipt id (404), a retry the row's state refuses (409), a server that is not running.

mod common;

use std::net::SocketAddr;
use std::path::Path;

use chaincall_chain::PrivateKeySigner;
use chaincall_identity::{IdentityKey, PublicIdentityKey};
use chaincall_wallet::WalletClient;
use chaincall_wallet::receipt::StoreKey;
use chaincall_wallet::testing::{TestChain, TestConfig, dev_receipt, write_test_config};
use common::*;

const ADMIN_TOKEN: &str = "admin-cli-test-token-0123456789";
const NUMBER: &str = "+15550100001";

/// `chaincall wallet admin ARGS` in `dir` (its `wallet.toml` is the default configuration).
fn admin(dir: &Path, args: &[&str]) -> std::process::Command {
    let mut cmd = chaincall();
    cmd.current_dir(dir)
        .env_remove("CHAINCALL_WALLET_ADMIN_TOKEN")
        .args(["wallet", "admin"])
        .args(args);
    cmd
}

/// A failing `admin` run's stderr; asserts the exit status is not 0.
fn refused(dir: &Path, args: &[&str]) -> String {
    let out = failing(&mut admin(dir, args));
    assert_ne!(out.status.code(), Some(0));
    String::from_utf8(out.stderr).unwrap()
}

fn config(dir: &Path, port: u16, store: &StoreKey, token: Option<&str>) {
    write_test_config(
        dir,
        &TestConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], port)),
            chain: TestChain::Embedded,
            store,
            admin_token: token,
            extra: "",
        },
    )
    .unwrap();
}

/// Onboards `NUMBER` through the API as a phone would (sealed to the key `/v1/server` names) up
/// to `funded`; returns the receipt id.
fn onboard_through_the_api(url: &str, store: &StoreKey) -> String {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let client = WalletClient::new(url);
        let info = client.server_info().await.unwrap();
        let tag = u8::try_from(info["identity_key_type"].as_u64().unwrap()).unwrap();
        let bytes = hex::decode(info["identity_key"].as_str().unwrap()).unwrap();
        let server_key = PublicIdentityKey::from_tagged(tag, &bytes).unwrap();
        let wallet = PrivateKeySigner::random();
        let identity = IdentityKey::generate();
        let payload = client.payload(
            wallet.address(),
            dev_receipt(store),
            NUMBER,
            &identity.public(),
        );
        let status = client.onboard(&server_key, &payload).await.unwrap();
        assert_eq!(status.state, "funded");
        status.receipt_id
    })
}

#[test]
fn admin_lists_shows_and_revokes_an_onboarding_and_says_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let port = chaincall_testkit::free_tcp_port();
    let store = StoreKey::generate().unwrap();
    config(d, port, &store, Some(ADMIN_TOKEN));
    let _wallet = Service::serve(d, "wallet", "listening http://");
    let url = format!("http://127.0.0.1:{port}");
    let id = onboard_through_the_api(&url, &store);

    // The table: a header, then the row with its number and state.
    let list = ok(&mut admin(d, &["list"]));
    let mut lines = list.lines();
    assert!(lines.next().unwrap().starts_with("RECEIPT ID"), "{list}");
    let row = lines.next().unwrap();
    for cell in [id.as_str(), NUMBER, "funded"] {
        assert!(row.contains(cell), "{cell} missing in {list}");
    }
    let pending = ok(&mut admin(d, &["list", "--state", "pending"]));
    assert!(pending.contains(&id), "{pending}");
    let failed = ok(&mut admin(d, &["list", "--state", "failed"]));
    assert_eq!(failed, "no onboardings\n");

    let show = ok(&mut admin(d, &["show", &id]));
    assert!(show.starts_with(&format!("receipt id   {id}\n")), "{show}");
    assert!(show.contains(&format!("phone        {NUMBER}\n")), "{show}");
    assert!(
        show.contains("state        funded (next: add_client_then_approve)"),
        "{show}"
    );

    // --json: the server's JSON, which parses, for scripts.
    let json: serde_json::Value =
        serde_json::from_str(&ok(&mut admin(d, &["list", "--json"]))).unwrap();
    assert_eq!(json[0]["receipt_id"], id.as_str());
    assert_eq!(json[0]["phone"], NUMBER);
    let json: serde_json::Value =
        serde_json::from_str(&ok(&mut admin(d, &["--json", "show", &id]))).unwrap();
    assert_eq!(
        (json["state"].as_str(), json["phone"].as_str()),
        (Some("funded"), Some(NUMBER))
    );

    // A funded row may be retried; the answer is the row.
    let retried = ok(&mut admin(d, &["retry", &id]));
    assert!(retried.contains("state        funded"), "{retried}");

    // Unknown receipt id: 404 with the server's code.
    let err = refused(d, &["show", "GPA.0000-no-such-order"]);
    assert!(
        err.contains("no onboarding has this receipt id (404 onboarding_not_found)"),
        "{err}"
    );

    // Revoke: list and show reflect it; a retry of the revoked row is refused, saying why.
    let revoked = ok(&mut admin(d, &["revoke", NUMBER]));
    assert!(
        revoked.starts_with(&format!("revoked {NUMBER}: ")),
        "{revoked}"
    );
    let list = ok(&mut admin(d, &["list"]));
    assert!(list.lines().nth(1).unwrap().contains("revoked"), "{list}");
    let show = ok(&mut admin(d, &["show", &id, "--json"]));
    let json: serde_json::Value = serde_json::from_str(&show).unwrap();
    assert_eq!(json["state"], "revoked");
    let err = refused(d, &["retry", &id]);
    assert!(
        err.contains("refused (409 not_retryable): this onboarding is revoked: a revoked subscriber is not driven again"),
        "{err}"
    );

    // A configuration whose token is not the server's: 401, said so, exit status 1.
    let other = tempfile::tempdir().unwrap();
    config(
        other.path(),
        port,
        &store,
        Some("not-the-servers-token-0123456789"),
    );
    let err = refused(other.path(), &["list"]);
    assert!(
        err.contains(&format!(
            "the wallet server at {url} refused the admin token (401)"
        )),
        "{err}"
    );
    assert!(
        !err.contains("not-the-servers-token"),
        "the token is never printed: {err}"
    );

    // No token in the configuration or the environment: says where to put one.
    let none = tempfile::tempdir().unwrap();
    config(none.path(), port, &store, None);
    let err = refused(none.path(), &["list"]);
    assert!(
        err.contains("gives no admin token: set [admin] token_file"),
        "{err}"
    );
    assert!(err.contains("CHAINCALL_WALLET_ADMIN_TOKEN"), "{err}");

    // Nothing listening at --url: named, with the cause.
    let down = format!("http://127.0.0.1:{}", chaincall_testkit::free_tcp_port());
    let err = refused(d, &["list", "--url", &down]);
    assert!(
        err.contains(&format!("the wallet server at {down} is unreachable")),
        "{err}"
    );
    assert!(err.contains("refused"), "{err}");
}
