//! `chaincall keystore get --verify` and `chaincall bench lookup`, end to end: the real binary
//! against a real anvil node (started per test on a free loopback port).

use std::process::{Command, Output};

use chaincall_chain::{
    AnvilProcess, ClientId, KeystoreChain, RpcChain, RpcConfig, dev_signer, receipt_hash,
};
use chaincall_identity::{IdentityKey, IdentityName, PublicIdentityKey};

const BOB: &str = "+15551239001";

/// anvil with a keystore holding an approved key for BOB.
struct Node {
    anvil: AnvilProcess,
    contract: String,
    key: PublicIdentityKey,
}

fn start() -> Option<Node> {
    let anvil = chaincall_testkit::peer("anvil")?;
    let anvil =
        AnvilProcess::spawn(&anvil, chaincall_testkit::free_tcp_port(), &[]).expect("anvil starts");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let key = IdentityKey::generate().public();
    let contract = runtime.block_on(async {
        let chain = RpcChain::connect(&anvil.url(), RpcConfig::default())
            .await
            .unwrap();
        let owner = dev_signer(0);
        let phone = dev_signer(1);
        let contract = chain.deploy_keystore(&owner).await.unwrap();
        let id = ClientId::of(&IdentityName::parse(BOB).unwrap());
        let rh = receipt_hash(b"cli receipt");
        chain
            .add_client_key(contract, &phone, id, &key, rh)
            .await
            .unwrap();
        chain
            .approve_client(contract, &owner, id, rh)
            .await
            .unwrap();
        contract
    });
    Some(Node {
        anvil,
        contract: contract.to_string(),
        key,
    })
}

fn chaincall(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_chaincall"))
        .args(args)
        .env("RUST_LOG", "warn")
        .env_remove("CHAINCALL_RPC")
        .env_remove("CHAINCALL_CONTRACT")
        .output()
        .expect("the chaincall binary runs")
}

fn get_verified(node: &Node, phone: &str, extra: &[&str]) -> Output {
    let url = node.anvil.url();
    let mut args = vec![
        "keystore",
        "get",
        "--verify",
        "--rpc",
        &url,
        "--contract",
        &node.contract,
        "--phone",
        phone,
        "--json",
    ];
    args.extend_from_slice(extra);
    chaincall(&args)
}

fn json_of(out: &Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "failed: stdout {} stderr {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("prints JSON")
}

#[test]
fn get_verify_prints_the_proven_entry() {
    let Some(node) = start() else { return };
    let v = json_of(&get_verified(&node, BOB, &[]));
    assert_eq!(v["verified"], true);
    assert_eq!(v["status"], "approved");
    assert_eq!(v["public_key"], hex::encode(node.key.to_bytes()));
    assert_eq!(v["block"], 3, "deploy, add, approve: block 3 is the latest");
    assert!(v["proof_bytes"].as_u64().unwrap() > 100);
    assert!(
        v["trust"].as_str().unwrap().contains("trust on first use"),
        "{v}"
    );

    // An unknown number is proven absent.
    let v = json_of(&get_verified(&node, "+15551239002", &[]));
    assert_eq!(v["verified"], true);
    assert_eq!(v["status"], "unknown");
    assert_eq!(v["public_key"], serde_json::Value::Null);

    // At block 2 (before approval) the entry was pending, proven against that block's header.
    let v = json_of(&get_verified(&node, BOB, &["--block", "2"]));
    assert_eq!(v["status"], "pending");
    assert_eq!(v["block"], 2);

    // A pinned checkpoint and a quorum both work.
    // (Not block 0: anvil's genesis header carries the empty-trie state root, not its state.)
    let first = v_block_hash(&node, 1);
    let v = json_of(&get_verified(
        &node,
        BOB,
        &["--checkpoint", &format!("1:{first}")],
    ));
    assert_eq!(v["status"], "approved");
    // Two names for the one node (the de-duplication compares host and port, so these count as
    // two servers; telling names of one machine apart is the operator's job).
    let url = node.anvil.url();
    let port = url.rsplit(':').next().unwrap().trim_end_matches('/');
    let quorum = format!("{url},http://localhost:{port}");
    let v = json_of(&get_verified(
        &node,
        BOB,
        &["--quorum", &quorum, "--k", "2"],
    ));
    assert_eq!(v["status"], "approved");
    assert!(v["trust"].as_str().unwrap().contains("quorum 2 of 2"));
    // The same endpoint listed three times is one server, not a quorum of three.
    let out = get_verified(
        &node,
        BOB,
        &["--quorum", &format!("{url},{url}/,{url}"), "--k", "2"],
    );
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("same server"), "{stderr}");
}

/// The block hash of `number` as the CLI prints it.
fn v_block_hash(node: &Node, number: u64) -> String {
    let n = number.to_string();
    let v = json_of(&get_verified(node, BOB, &["--block", &n]));
    v["block_hash"].as_str().unwrap().to_owned()
}

#[test]
fn failed_verification_exits_non_zero_and_prints_no_key() {
    let Some(node) = start() else { return };
    let wrong = format!("0:0x{}", "55".repeat(32));
    let out = get_verified(&node, BOB, &["--checkpoint", &wrong]);
    assert!(!out.status.success());
    assert!(out.stdout.is_empty(), "no key printed: {:?}", out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("verification failed") && stderr.contains("checkpoint"),
        "{stderr}"
    );
    assert!(!stderr.contains(&hex::encode(node.key.to_bytes())));

    // Two endpoints that cannot agree (one is down) with k = 2.
    let dead = format!("http://127.0.0.1:{}", chaincall_testkit::free_tcp_port());
    let quorum = format!("{},{dead}", node.anvil.url());
    let out = get_verified(&node, BOB, &["--quorum", &quorum, "--k", "2"]);
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("only 1 of 2 endpoints agree"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A malformed checkpoint is refused before anything is looked up.
    let out = get_verified(&node, BOB, &["--checkpoint", "zero:0x12"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("NUMBER:HASH"));
}

/// `chaincall bench` exists only in a build with the `bench` feature (scripts/test.sh enables it).
#[cfg(feature = "bench")]
#[test]
fn bench_lookup_reports_verified_and_plain_latency() {
    let Some(node) = start() else { return };
    let url = node.anvil.url();
    let out = chaincall(&[
        "bench",
        "lookup",
        "--rpc",
        &url,
        "--contract",
        &node.contract,
        "--phone",
        BOB,
        "--count",
        "5",
        "--json",
    ]);
    let v = json_of(&out);
    for field in [
        "verified_p50_ms",
        "verified_p99_ms",
        "plain_p50_ms",
        "plain_p99_ms",
    ] {
        let ms = v[field]
            .as_f64()
            .unwrap_or_else(|| panic!("{field} in {v}"));
        assert!(ms > 0.0, "{field} = {ms}");
    }
    assert!(v["proof_bytes"].as_u64().unwrap() > 100);
    assert_eq!(v["backend"], "rpc");

    // Without --rpc it sets up the embedded chain itself.
    let v = json_of(&chaincall(&["bench", "lookup", "--count", "5", "--json"]));
    assert_eq!(v["backend"], "embedded");
    assert!(v["proof_bytes"].as_u64().unwrap() > 100);
}
