//! The committed contract artifact is exactly what the pinned compiler makes of the source, and the
//! Rust bindings agree with its ABI.

use std::collections::BTreeSet;

use alloy::primitives::keccak256;
use chaincall_chain::contract::{ARTIFACT_JSON, IKeystore, creation_bytecode, runtime_bytecode};

#[test]
fn committed_artifact_is_reproducible() {
    // solcjs is the peer; the script drives it through node.
    let Some(_solcjs) = chaincall_testkit::peer("solcjs") else {
        return;
    };
    let root = chaincall_testkit::workspace_root();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("Keystore.json");
    let status = std::process::Command::new(root.join("scripts/build-contract.sh"))
        .arg("--out")
        .arg(&out)
        .status()
        .expect("scripts/build-contract.sh runs");
    assert!(status.success(), "scripts/build-contract.sh failed");
    let fresh = std::fs::read_to_string(&out).unwrap();
    let committed = std::fs::read_to_string(root.join("contracts/Keystore.json")).unwrap();
    assert!(
        fresh == committed,
        "contracts/Keystore.json differs from a fresh compile of contracts/Keystore.sol; \
         run scripts/build-contract.sh and commit the result"
    );
    // And the binary embeds that same file.
    assert_eq!(committed, ARTIFACT_JSON);
}

fn abi_signatures(kind: &str) -> BTreeSet<String> {
    let json: serde_json::Value = serde_json::from_str(ARTIFACT_JSON).unwrap();
    json["abi"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|item| item["type"] == kind)
        .map(|item| {
            let types = chaincall_testkit::json_strings(&item["inputs"], "type");
            format!("{}({})", item["name"].as_str().unwrap(), types.join(","))
        })
        .collect()
}

fn selectors(signatures: &BTreeSet<String>, len: usize) -> BTreeSet<Vec<u8>> {
    signatures
        .iter()
        .map(|s| keccak256(s.as_bytes())[..len].to_vec())
        .collect()
}

#[test]
fn bindings_match_the_committed_abi() {
    let functions: BTreeSet<Vec<u8>> = IKeystore::IKeystoreCalls::SELECTORS
        .iter()
        .map(|s| s.to_vec())
        .collect();
    assert_eq!(functions, selectors(&abi_signatures("function"), 4));
    let errors: BTreeSet<Vec<u8>> = IKeystore::IKeystoreErrors::SELECTORS
        .iter()
        .map(|s| s.to_vec())
        .collect();
    assert_eq!(errors, selectors(&abi_signatures("error"), 4));
    let events: BTreeSet<Vec<u8>> = IKeystore::IKeystoreEvents::SELECTORS
        .iter()
        .map(|s| s.to_vec())
        .collect();
    assert_eq!(events, selectors(&abi_signatures("event"), 32));
}

#[test]
fn bytecode_is_non_trivial() {
    assert!(creation_bytecode().len() > runtime_bytecode().len());
    assert!(runtime_bytecode().len() > 1000);
}
