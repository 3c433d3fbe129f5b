//! `chaincall phone` as a user runs it, every part a real process on anvil: `keystore deploy`,
//! `store keygen`, `keystore publish-server` (sipd's identity), `wallet serve`, `sipd serve` with a
//! TLS-PSK listener and digest auth against the wallet's SIP database, then two phones that
//! `init`, `onboard` with store receipts, and call each other (bob `listen --count 1`, alice
//! `call --seconds 1 --json`), and `phone hangup` from another terminal ends a running call from
//! either side. Also: an unknown callee and a wrong passphrase fail with a clear message and a
//! non-zero exit.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;

fn json_line(lines: &[String]) -> serde_json::Value {
    let line = lines
        .iter()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
        .unwrap_or_else(|| panic!("no JSON line in {lines:?}"));
    serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"))
}

impl Net {
    /// `chaincall keystore get --json` for `number`.
    fn entry(&self, number: &str) -> serde_json::Value {
        let out = ok(chaincall()
            .args(["keystore", "get", "--rpc", &self.rpc])
            .args(["--contract", &self.contract, "--phone", number, "--json"]));
        serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"))
    }

    /// The on-chain public key of `number`, hex.
    fn chain_key(&self, number: &str) -> String {
        self.entry(number)["public_key"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// The chain as the tests' own client (to stage what a crash leaves behind), with the runtime
    /// that drives it.
    fn chain(&self) -> (tokio::runtime::Runtime, chaincall_chain::RpcChain) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let chain = rt
            .block_on(chaincall_chain::RpcChain::connect(
                &self.rpc,
                chaincall_chain::RpcConfig::default(),
            ))
            .unwrap();
        (rt, chain)
    }
}

/// Stores a pending rotation in the key file at `home`, as `phone rotate` does before it sends
/// rotateKey (what a crash right after leaves): the keys and the next public key.
fn stage_pending_rotation(
    home: &Path,
) -> (
    chaincall_phone::PhoneSecrets,
    chaincall_identity::PublicIdentityKey,
) {
    let mut secrets = keys_of(home);
    let next = secrets.begin_rotation().public();
    secrets
        .save(&home.join("phone.key"), PASSPHRASE, true)
        .unwrap();
    (secrets, next)
}

/// `phone register` succeeds after saying `note` on stderr (how it settled a pending rotation).
fn register_settling(home: &Path, note: &str) {
    let out = phone(home).arg("register").output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains(note), "{stderr}");
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("registered {ALICE}")));
}

fn hex_key(key: &chaincall_identity::IdentityKey) -> String {
    hex::encode(key.public().to_bytes())
}

#[test]
fn phone_rotate_puts_a_new_key_on_chain_from_the_phones_wallet_and_registers_with_it() {
    let Some(net) = network() else { return };
    let alice = net.onboarded_phone("alice", ALICE);
    let before = keys_of(&alice);
    assert_eq!(net.chain_key(ALICE), hex_key(&before.identity));

    // sipd now holds alice's key in its cache.
    ok(phone(&alice).arg("register"));
    let out = ok(phone(&alice).arg("rotate"));
    let after = keys_of(&alice);
    assert_ne!(hex_key(&after.identity), hex_key(&before.identity));
    assert!(after.pending_rotation().is_none(), "rotation finished");
    assert_eq!(after.wallet.address(), before.wallet.address());
    assert_eq!(net.chain_key(ALICE), hex_key(&after.identity), "{out}");
    // Old and new fingerprints, and what the user's contacts will see.
    let name = chaincall_identity::IdentityName::parse(ALICE).unwrap();
    let fp = |k: &chaincall_identity::IdentityKey| {
        chaincall_identity::Fingerprint::new(&name, &k.public()).to_string()
    };
    assert!(
        out.contains(&format!("old key       {}", fp(&before.identity))),
        "{out}"
    );
    assert!(
        out.contains(&format!("new key       {}", fp(&after.identity))),
        "{out}"
    );
    assert!(out.contains("key changed by rotation"), "{out}");
    assert!(out.contains("safety number"), "{out}");

    // The KeyRotated event came from alice's own wallet, in the transaction `rotate` printed.
    let history = ok(chaincall()
        .args(["keystore", "history", "--rpc", &net.rpc])
        .args(["--contract", &net.contract, "--phone", ALICE, "--json"]));
    let history: serde_json::Value = serde_json::from_str(history.trim()).unwrap();
    let last = history["events"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(last["event"], "rotated", "{history}");
    assert_eq!(last["public_key"], hex_key(&after.identity).as_str());
    assert_eq!(
        last["wallet"].as_str().unwrap().to_lowercase(),
        before.wallet.address().to_string().to_lowercase()
    );
    let tx = last["tx"].as_str().unwrap();
    assert!(out.contains(&format!("tx {tx}")), "{out}");
    let (rt, chain) = net.chain();
    let sender = rt.block_on(async {
        use alloy::providers::Provider as _;
        chain
            .provider()
            .get_transaction_by_hash(tx.parse().unwrap())
            .await
            .unwrap()
            .unwrap()
            .inner
            .signer()
    });
    assert_eq!(
        sender,
        before.wallet.address(),
        "sent by the phone's wallet"
    );

    // sipd finds the new key although it had cached the old one: the TLS-PSK handshake and
    // REGISTER work with it.
    let out = ok(phone(&alice).arg("register"));
    assert!(out.contains(&format!("registered {ALICE}")), "{out}");

    // An unreachable node and an entry that is no longer approved are refused with the reason,
    // and leave the key file as it was.
    let config = alice.join("phone.toml");
    let good = std::fs::read_to_string(&config).unwrap();
    let dead = format!("http://127.0.0.1:{}", chaincall_testkit::free_tcp_port());
    std::fs::write(&config, good.replace(&net.rpc, &dead)).unwrap();
    let key_bytes = std::fs::read(alice.join("phone.key")).unwrap();
    let out = failing(phone(&alice).arg("rotate"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cannot reach the chain node"), "{stderr}");
    std::fs::write(&config, good).unwrap();
    ok(chaincall()
        .args(["keystore", "revoke", "--rpc", &net.rpc])
        .args(["--contract", &net.contract, "--phone", ALICE, "--key-file"])
        .arg(net.path("operator.key")));
    let out = failing(phone(&alice).arg("rotate"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("revoked in the keystore, not approved"),
        "{stderr}"
    );
    assert_eq!(std::fs::read(alice.join("phone.key")).unwrap(), key_bytes);
}

#[test]
fn an_interrupted_rotation_is_finished_by_the_next_phone_command() {
    let Some(net) = network() else { return };
    let alice = net.onboarded_phone("alice", ALICE);
    let key_file = alice.join("phone.key");

    // Crash after the pending key was stored, before rotateKey left: `register` sends it.
    let (secrets, next) = stage_pending_rotation(&alice);
    let (old, next) = (hex_key(&secrets.identity), hex::encode(next.to_bytes()));
    assert_eq!(net.chain_key(ALICE), old);
    register_settling(&alice, "finished the key rotation");
    assert_eq!(net.chain_key(ALICE), next);
    let secrets = keys_of(&alice);
    assert_eq!(hex_key(&secrets.identity), next);
    assert!(secrets.pending_rotation().is_none());

    // Crash after rotateKey was mined, before the key file was updated: `rotate` only finishes.
    let (secrets, next) = stage_pending_rotation(&alice);
    let (rt, chain) = net.chain();
    rt.block_on(chaincall_chain::KeystoreChain::rotate_key(
        &chain,
        net.contract.parse().unwrap(),
        &secrets.wallet,
        chaincall_chain::ClientId::of(&chaincall_identity::IdentityName::parse(ALICE).unwrap()),
        next.tag(),
        &next.to_bytes(),
    ))
    .unwrap();
    let out = ok(phone(&alice).arg("rotate"));
    assert!(out.contains("already held the new key"), "{out}");
    let secrets = keys_of(&alice);
    assert_eq!(secrets.identity.public(), next);
    assert!(secrets.pending_rotation().is_none());
    assert_eq!(net.chain_key(ALICE), hex::encode(next.to_bytes()));

    // A wallet that cannot pay: refused with its address and the amount, nothing written.
    let wallet = secrets.wallet.address();
    rt.block_on(async {
        use alloy::providers::Provider as _;
        let _: serde_json::Value = chain
            .provider()
            .raw_request("anvil_setBalance".into(), (wallet, "0x0"))
            .await
            .unwrap();
        // A block on top, so the latest header's state root covers the new balance (proofs).
        let _: serde_json::Value = chain
            .provider()
            .raw_request("evm_mine".into(), ())
            .await
            .unwrap();
    });
    let before = std::fs::read(&key_file).unwrap();
    let out = failing(phone(&alice).arg("rotate"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("wallet {wallet} has 0 wei")),
        "{stderr}"
    );
    assert!(stderr.contains("rotateKey needs about"), "{stderr}");
    assert_eq!(
        std::fs::read(&key_file).unwrap(),
        before,
        "key file untouched"
    );
    assert_eq!(net.chain_key(ALICE), hex::encode(next.to_bytes()));
}

#[test]
fn a_rotation_waiting_to_be_mined_keeps_the_old_key_in_use_until_it_is() {
    use alloy::providers::Provider as _;
    use alloy::sol_types::SolCall as _;
    let Some(net) = network() else { return };
    let alice = net.onboarded_phone("alice", ALICE);
    let (secrets, next) = stage_pending_rotation(&alice);
    let old = hex_key(&secrets.identity);

    // rotateKey sent but not mined (the node stops mining): what a crash during the wait leaves.
    let (rt, chain) = net.chain();
    let provider = chain.provider();
    rt.block_on(async {
        let _: serde_json::Value = provider
            .raw_request("evm_setAutomine".into(), (false,))
            .await
            .unwrap();
        let wallet = secrets.wallet.address();
        let fees = provider.estimate_eip1559_fees().await.unwrap();
        let name = chaincall_identity::IdentityName::parse(ALICE).unwrap();
        let input = chaincall_chain::contract::IKeystore::rotateKeyCall {
            id: *chaincall_chain::ClientId::of(&name).as_b256(),
            keyType: next.tag(),
            key: next.to_bytes().into(),
        }
        .abi_encode();
        let contract: alloy::primitives::Address = net.contract.parse().unwrap();
        // The gas RpcChain would allow (estimate + 20 %): the wallet holds little more.
        let request = alloy::rpc::types::TransactionRequest::default()
            .from(wallet)
            .to(contract)
            .input(input.clone().into());
        let gas = provider.estimate_gas(request).await.unwrap();
        let tx = alloy::consensus::TxEip1559 {
            chain_id: provider.get_chain_id().await.unwrap(),
            nonce: provider.get_transaction_count(wallet).await.unwrap(),
            gas_limit: gas + gas / 5,
            max_fee_per_gas: fees.max_fee_per_gas,
            max_priority_fee_per_gas: fees.max_priority_fee_per_gas,
            to: alloy::primitives::TxKind::Call(contract),
            value: alloy::primitives::U256::ZERO,
            access_list: Default::default(),
            input: input.into(),
        };
        let signed = chaincall_chain::sign_eip1559(&secrets.wallet, tx).unwrap();
        use alloy::eips::Encodable2718 as _;
        let _ = provider
            .send_raw_transaction(&signed.encoded_2718())
            .await
            .unwrap();
    });

    // The next command waits for it and works with the old key, which the chain still approves.
    register_settling(&alice, "waiting for its transaction");
    assert_eq!(net.chain_key(ALICE), old);
    let waiting = keys_of(&alice);
    assert_eq!(hex_key(&waiting.identity), old);
    assert_eq!(
        waiting.pending_rotation().map(|k| k.public()),
        Some(next.clone())
    );
    // `rotate` does not send a second transaction meanwhile.
    let out = failing(phone(&alice).arg("rotate"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("still waiting to be mined"), "{stderr}");

    // Once mined, the next command finishes the rotation and drops the old key.
    rt.block_on(async {
        let _: serde_json::Value = provider.raw_request("evm_mine".into(), ()).await.unwrap();
    });
    let out = phone(&alice)
        .args(["export", "--out", "after.backup"])
        .env("CHAINCALL_BACKUP_PASSPHRASE", "another long phrase")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("finished the key rotation"), "{stderr}");
    assert_eq!(net.chain_key(ALICE), hex::encode(next.to_bytes()));
    let done = keys_of(&alice);
    assert_eq!(done.identity.public(), next);
    assert!(done.pending_rotation().is_none());
}

#[test]
fn an_exported_backup_restores_the_phone_and_a_bad_one_overwrites_nothing() {
    let Some(net) = network() else { return };
    let alice = net.onboarded_phone("alice", ALICE);
    let key_file = alice.join("phone.key");
    let original = keys_of(&alice);
    write_private(&alice.join("backup-pass"), "another long phrase\n");
    let backup = alice.join("alice.backup");
    let export = |extra: &[&str]| {
        let mut cmd = phone(&alice);
        cmd.args(["export", "--out", "alice.backup"])
            .args(["--backup-passphrase-file", "backup-pass"])
            .args(extra);
        cmd
    };
    let out = ok(&mut export(&[]));
    assert!(out.contains("exported"), "{out}");
    assert_eq!(mode(&backup), 0o600);
    let text = std::fs::read_to_string(&backup).unwrap();
    assert!(text.contains("chaincall-phone-backup"), "{text}");
    assert!(!text.contains(&hex::encode(original.wallet.to_bytes())));
    // Never overwritten without --force.
    let out = failing(&mut export(&[]));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--force"));
    assert_eq!(std::fs::read_to_string(&backup).unwrap(), text);
    ok(&mut export(&["--force"]));
    let text = std::fs::read_to_string(&backup).unwrap();

    let import = |home: &Path, pass: &str| {
        let mut cmd = phone(home);
        cmd.args(["import", "--in", "alice.backup"])
            .env("CHAINCALL_BACKUP_PASSPHRASE", pass);
        cmd
    };
    // A wrong backup passphrase and a flipped byte are refused; the key file is left as it was.
    let key_bytes = std::fs::read(&key_file).unwrap();
    let out = failing(&mut import(&alice, "not the backup phrase"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("wrong backup passphrase"), "{stderr}");
    let at = text.find("\"ciphertext\": \"").unwrap() + 20;
    let mut flipped = text.clone().into_bytes();
    flipped[at] = if flipped[at] == b'a' { b'b' } else { b'a' };
    write_private(&backup, std::str::from_utf8(&flipped).unwrap());
    let out = failing(&mut import(&alice, "another long phrase"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("backup was modified"), "{stderr}");
    assert_eq!(std::fs::read(&key_file).unwrap(), key_bytes);
    write_private(&backup, &text);

    // A key file holding another identity is not replaced without --force.
    chaincall_phone::PhoneSecrets::generate(ALICE)
        .save(&key_file, PASSPHRASE, true)
        .unwrap();
    let other = std::fs::read(&key_file).unwrap();
    let out = failing(&mut import(&alice, "another long phrase"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("holds another identity"), "{stderr}");
    assert_eq!(std::fs::read(&key_file).unwrap(), other);
    ok(import(&alice, "another long phrase").arg("--force"));

    // The key file lost: import restores it, sealed under the phone's passphrase, and it works.
    std::fs::remove_file(&key_file).unwrap();
    let out = ok(&mut import(&alice, "another long phrase"));
    assert!(out.contains(&format!("imported {ALICE}")), "{out}");
    assert_eq!(mode(&key_file), 0o600);
    let restored = keys_of(&alice);
    assert_eq!(restored.identity.public(), original.identity.public());
    assert_eq!(restored.wallet.address(), original.wallet.address());
    let out = ok(phone(&alice).arg("register"));
    assert!(out.contains(&format!("registered {ALICE}")), "{out}");
}

#[test]
fn two_onboarded_phones_call_over_tls_psk_and_record_the_audio() {
    let Some(net) = network() else {
        return;
    };
    let alice = net.onboarded_phone("alice", ALICE);
    let bob = net.onboarded_phone("bob", BOB);

    let out = ok(phone(&alice).arg("register"));
    assert!(
        out.contains(&format!("registered {ALICE}")) && out.contains("expires in"),
        "{out}"
    );

    // Bob answers one call; his passphrase comes from the environment this time.
    let listener = listening(&bob, &["--count", "1"], "listening");

    let out = ok(phone(&alice).args(["call", BOB, "--seconds", "1", "--json"]));
    let a = json_line(&out.lines().map(str::to_owned).collect::<Vec<_>>());
    assert_eq!(a["direction"], "outgoing", "{a}");
    assert_eq!(a["verified_peer"], BOB, "{a}");
    assert_eq!(a["key_retrieval_verified"], true, "{a}");
    assert!(a["srtp_packets_received"].as_u64().unwrap() > 0, "{a}");
    assert_eq!(a["srtp_packets_rejected"], 0, "{a}");
    assert!(a["call_setup_ms"].as_f64().unwrap() > 0.0, "{a}");
    assert!(
        Path::new(a["recording"].as_str().unwrap()).exists(),
        "alice's recording: {a}"
    );

    let lines = listener.finish(Duration::from_secs(30));
    let b = json_line(&lines);
    assert_eq!(b["direction"], "incoming", "{b}");
    assert_eq!(b["verified_peer"], ALICE, "{b}");
    assert_eq!(b["srtp_packets_rejected"], 0, "{b}");
    // Alice sent one second of audio: 50 packets of 160 samples at 8 kHz.
    assert_eq!(b["srtp_packets_received"], 50, "{b}");
    let wav = PathBuf::from(b["recording"].as_str().unwrap());
    assert!(wav.starts_with(bob.join("recordings")), "{}", wav.display());
    let samples = chaincall_media::wav::read_file(&wav).expect("bob's recording is a WAV file");
    assert_eq!(samples.len(), 8000, "one second at 8 kHz");
    assert!(
        samples.iter().any(|&s| s != 0),
        "the recording is not silence"
    );

    // Hanging up from another terminal, first on bob's side (his `listen` goes on), then on
    // alice's. `hangup` needs no passphrase.
    let hangup = |home: &Path| {
        let mut cmd = chaincall();
        cmd.current_dir(home)
            .args(["phone", "--config", "phone.toml", "hangup"]);
        cmd
    };
    let listener = listening(&bob, &["--count", "2"], "listening");
    let out = failing(&mut hangup(&bob));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no call in progress"), "{err}");
    for side in [&bob, &alice] {
        let mut caller =
            Service::spawn(phone(&alice).args(["call", BOB, "--seconds", "60", "--json"]));
        caller.wait_for("at `chaincall phone hangup`", Duration::from_secs(60));
        let out = ok(&mut hangup(side));
        let expected = if side == &bob {
            "hung up 1 call(s)"
        } else {
            "hung up the call to"
        };
        assert!(out.contains(expected), "{out}");
        let a = json_line(&caller.finish(Duration::from_secs(30)));
        assert!(a["srtp_packets_received"].as_u64().unwrap() > 0, "{a}");
        assert!(
            a["recorded_seconds"].as_f64().unwrap() < 30.0,
            "the call ended at the hang-up, not after 60 s: {a}"
        );
    }
    let lines = listener.finish(Duration::from_secs(30));
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.contains("\"direction\":\"incoming\""))
            .count(),
        2,
        "bob reported both calls: {lines:?}"
    );
    let out = failing(&mut hangup(&alice));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no running"), "{err}");

    // Bob declines: alice's call fails with the SIP reason, and bob's line says so.
    let listener = listening(&bob, &["--count", "1", "--reject"], "declining every call");
    let out = failing(phone(&alice).args(["call", BOB, "--seconds", "1"]));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(BOB) && err.contains("603 Decline"), "{err}");
    let b = json_line(&listener.finish(Duration::from_secs(30)));
    assert_eq!(b["rejected"], true, "{b}");
    assert_eq!(b["peer"], ALICE, "{b}");

    // Bob stopped listening: his phone is offline.
    let out = failing(phone(&alice).args(["call", BOB, "--seconds", "1"]));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(BOB) && err.contains("offline"), "{err}");

    // An unknown callee: refused before any INVITE leaves, naming the number.
    let out = failing(phone(&alice).args(["call", NOBODY, "--seconds", "1"]));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(NOBODY) && err.contains("not a chaincall subscriber"),
        "{err}"
    );

    // A wrong passphrase.
    let out = failing(
        chaincall()
            .current_dir(&alice)
            .env("CHAINCALL_PASSPHRASE", "not the passphrase")
            .args(["phone", "--config", "phone.toml", "register"]),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("wrong passphrase"), "{err}");

    // No passphrase at all.
    let out = failing(chaincall().current_dir(&alice).args([
        "phone",
        "--config",
        "phone.toml",
        "register",
    ]));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no passphrase"), "{err}");

    // init never replaces keys.
    let out = failing(phone(&alice).args(["init", "--number", ALICE]));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("refusing to overwrite"), "{err}");
}

/// The documented example configuration is accepted as it stands (the command then stops at the
/// missing key file, which it names).
#[test]
fn the_example_config_is_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let example = chaincall_testkit::workspace_root().join("crates/phone/phone.example.toml");
    std::fs::copy(&example, dir.path().join("phone.toml")).unwrap();
    let out = failing(
        chaincall()
            .current_dir(dir.path())
            .env("CHAINCALL_PASSPHRASE", PASSPHRASE)
            .args(["phone", "register"]),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no key file") && err.contains("phone init"),
        "{err}"
    );
}

/// The `tcp` transport and the answer prompt through the CLI: bob signals over plain TCP (as to a
/// standard proxy) and answers at the terminal prompt; alice calls over TLS-PSK. The media is still
/// MIKEY-keyed end to end and verified on chain both ways.
#[test]
fn a_tcp_phone_answers_at_the_prompt() {
    let Some(net) = network() else {
        return;
    };
    let alice = net.onboarded_phone("alice", ALICE);
    let bob = net.onboarded_phone("bob", BOB);
    let config = std::fs::read_to_string(bob.join("phone.toml")).unwrap();
    let config = config
        .replace("auto_answer = true", "auto_answer = false")
        .replace(
            &format!("addr = \"127.0.0.1:{}\"", net.sipd_port),
            &format!("addr = \"127.0.0.1:{}\"", net.sipd_tcp_port),
        )
        .replace("transport = \"tls-psk\"", "transport = \"tcp\"");
    assert!(config.contains("transport = \"tcp\""), "{config}");
    std::fs::write(bob.join("phone.toml"), config).unwrap();

    let out = ok(phone(&bob).arg("register"));
    assert!(out.contains("(TCP, connected"), "{out}");

    let mut listener = Service::spawn(
        phone(&bob)
            .args(["listen", "--count", "1"])
            .stdin(Stdio::piped()),
    );
    let mut answer = listener.child.stdin.take().expect("piped stdin");
    listener.wait_for("asking before answering", Duration::from_secs(60));
    // The prompt reads one line from the terminal when the call arrives; the pipe holds it.
    std::io::Write::write_all(&mut answer, b"y\n").unwrap();
    let caller = Service::spawn(phone(&alice).args(["call", BOB, "--seconds", "1", "--json"]));

    let a = json_line(&caller.finish(Duration::from_secs(60)));
    assert_eq!(a["verified_peer"], BOB, "{a}");
    assert_eq!(a["key_mode"], "mikey-pke", "{a}");
    assert!(a["srtp_packets_received"].as_u64().unwrap() > 0, "{a}");
    let b = json_line(&listener.finish(Duration::from_secs(30)));
    assert_eq!(b["verified_peer"], ALICE, "{b}");
    assert_eq!(b["srtp_packets_received"], 50, "{b}");
    assert_eq!(b["srtp_packets_rejected"], 0, "{b}");
}

/// `POST path` with the admin bearer token to the wallet server at `base` (plain HTTP/1.1 over
/// a socket: the test needs no HTTP client); the response's status code.
fn admin_post(base: &str, path: &str, token: &str) -> u16 {
    use std::io::{Read, Write};
    let addr = base.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
         Content-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {answer}"))
}

/// The operator rotates a phone's SIP password at the wallet server (admin token required): the
/// next `phone register` is refused by sipd with the old password, fetches the new one (a request
/// signed by the phone's on-chain identity key), stores it in the key file and registers; the one
/// after needs no refresh.
#[test]
fn register_fetches_a_rotated_sip_password_once() {
    const TOKEN: &str = "admin-token-for-rotation";
    let numbers = format!("{ASSIGNED}[admin]\ntoken_file = \"admin.token\"\n");
    let Some(net) = network_with(&numbers, &[("admin.token", &format!("{TOKEN}\n"))]) else {
        return;
    };
    let number = "+15550100042";
    let home = net.onboarded_phone("dave", number);
    let rotate = format!("/v1/admin/subscribers/{number}/credentials/rotate");
    assert_eq!(admin_post(&net.wallet_url, &rotate, "wrong-token"), 401);
    assert_eq!(admin_post(&net.wallet_url, &rotate, TOKEN), 200);
    let key_before = std::fs::read(home.join("phone.key")).unwrap();
    // Nothing registered as dave yet, so sipd has no cached row (`credentials_cache_secs`): it
    // reads the rotated one and refuses the password stored at onboarding.
    let out = ok(phone(&home).arg("register"));
    assert!(
        out.contains("the SIP server refused our credentials"),
        "{out}"
    );
    assert!(out.contains("new SIP password stored"), "{out}");
    assert!(out.contains(&format!("registered {number}")), "{out}");
    assert_ne!(
        std::fs::read(home.join("phone.key")).unwrap(),
        key_before,
        "the key file holds the new password"
    );
    assert_eq!(mode(&home.join("phone.key")), 0o600);
    let out = ok(phone(&home).arg("register"));
    assert!(out.contains(&format!("registered {number}")), "{out}");
    assert!(!out.contains("new SIP password"), "{out}");
}

/// A phone without a number: `init` makes its keys, `onboard` takes the next free number the
/// server assigns, prints it and stores it in `phone.toml` (and the key file), and the phone then
/// registers under it.
#[test]
fn a_phone_without_a_number_is_assigned_one_at_onboarding() {
    let Some(net) = network() else {
        return;
    };
    let home = net.initialised_phone("carol", None);
    let out = ok(phone(&home).args(["onboard", "--receipt", "receipt.json"]));
    assert!(out.contains("onboarded +15550100000"), "{out}");
    let config = std::fs::read_to_string(home.join("phone.toml")).unwrap();
    assert!(
        config.starts_with("number = \"+15550100000\"\n"),
        "the assigned number is stored in the config:\n{config}"
    );
    let out = ok(phone(&home).arg("register"));
    assert!(out.contains("registered +15550100000"), "{out}");
}

/// A network whose wallet server verifies numbers by SMS through the test SMS centre (Debian
/// libnet-smpp-perl, crates/wallet/tests/smsc/smsc.pl), which writes each message to `outbox`.
struct SmsNet {
    net: Net,
    outbox: PathBuf,
    _smsc: Service,
    _dir: tempfile::TempDir,
}

fn sms_network() -> Option<SmsNet> {
    let perl = chaincall_testkit::peer("perl")?;
    let has_smpp = Command::new(&perl)
        .args(["-MNet::SMPP", "-e", "1"])
        .status()
        .is_ok_and(|s| s.success());
    if !has_smpp {
        return chaincall_testkit::missing("perl Net::SMPP (Debian libnet-smpp-perl)");
    }
    let dir = tempfile::tempdir().unwrap();
    let outbox = dir.path().join("sms.txt");
    let script = chaincall_testkit::workspace_root().join("crates/wallet/tests/smsc/smsc.pl");
    let mut smsc = Service::spawn(
        Command::new(perl)
            .arg(script)
            .arg(&outbox)
            .args(["chaincall", "pw"]),
    );
    let port = smsc.wait_for("listening", Duration::from_secs(10))[0]
        .trim_start_matches("listening ")
        .trim()
        .to_owned();
    let numbers = format!(
        "[numbers]\nverifier = \"sms_code\"\nsmsc = \"127.0.0.1:{port}\"\nsystem_id = \"chaincall\"\npassword_file = \"smpp.password\"\ncodes_per_number_per_hour = 10\n"
    );
    let net = network_with(&numbers, &[("smpp.password", "pw\n")])?;
    Some(SmsNet {
        net,
        outbox,
        _smsc: smsc,
        _dir: dir,
    })
}

impl SmsNet {
    /// Runs a phone command that asks for an SMS code, types the `nth` code sent to `number` at
    /// its prompt (as the user reads it off the SMS), and returns its output and the code.
    fn answering(&self, cmd: &mut Command, number: &str, nth: usize) -> (Output, String) {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        let code = loop {
            let text = std::fs::read_to_string(&self.outbox).unwrap_or_default();
            let sent: Vec<&str> = text
                .lines()
                .filter(|l| l.starts_with(&number[1..]))
                .collect();
            if let Some(line) = sent.get(nth - 1) {
                break line
                    .split('\t')
                    .nth(1)
                    .unwrap()
                    .split_whitespace()
                    .next()
                    .unwrap()
                    .to_owned();
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let out = child.wait_with_output().unwrap();
                panic!(
                    "no SMS number {nth} to {number}; the command said:\n{}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        use std::io::Write as _;
        writeln!(child.stdin.take().unwrap(), "{code}").unwrap();
        (child.wait_with_output().unwrap(), code)
    }

    /// `init` and `onboard` (typing the code) for `number`.
    fn onboarded_phone(&self, name: &str, number: &str) -> PathBuf {
        let home = self.net.initialised_phone(name, Some(number));
        let (out, _) = self.answering(
            phone(&home).args(["onboard", "--receipt", "receipt.json"]),
            number,
            1,
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        home
    }
}

/// The command asked for the code sent to `number` at its prompt and never echoed it.
fn prompted_for(stdout: &str, stderr: &str, number: &str, code: &str) {
    assert!(
        stderr.contains(&format!("code sent to {number}")),
        "{stderr}"
    );
    assert!(
        !stdout.contains(code) && !stderr.contains(code),
        "the code is not echoed"
    );
}

/// `(stdout, stderr)` of a finished command, asserting it succeeded.
fn succeeded(out: &Output) -> (String, String) {
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(out.status.success(), "stdout: {stdout}\nstderr: {stderr}");
    (stdout, stderr)
}

/// A wallet server that verifies numbers by SMS: `phone onboard` asks for a code, the SMS
/// centre receives it, the user types it at the prompt, and the phone is onboarded under its own
/// number.
#[test]
fn an_sms_verified_phone_types_its_code_at_the_prompt() {
    let Some(sms) = sms_network() else {
        return;
    };
    let home = sms.net.initialised_phone("alice", Some(ALICE));
    let (out, code) = sms.answering(
        phone(&home).args(["onboard", "--receipt", "receipt.json"]),
        ALICE,
        1,
    );
    let (stdout, stderr) = succeeded(&out);
    assert!(stdout.contains(&format!("onboarded {ALICE}")), "{stdout}");
    prompted_for(&stdout, &stderr, ALICE, &code);
    let out = ok(phone(&home).arg("register"));
    assert!(out.contains(&format!("registered {ALICE}")), "{out}");
}

/// The wallet balance of the phone in `home` (its key file), on the test's chain.
fn balance_of(net: &Net, home: &Path) -> alloy::primitives::U256 {
    use chaincall_chain::KeystoreChain as _;
    let secrets = chaincall_phone::PhoneSecrets::load(&home.join("phone.key"), PASSPHRASE).unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let chain = chaincall_chain::RpcChain::connect(&net.rpc, Default::default())
            .await
            .unwrap();
        chain.balance(secrets.wallet.address()).await.unwrap()
    })
}

/// Device recovery end to end (issue 14 item 4). Alice loses her key file; `phone recover` with
/// her original receipt and a fresh code sent to her number makes new keys, gets her number back
/// under a new key and a new SIP password, and is safe to rerun. Her lost device's password no
/// longer registers. Bob, whose pin persists, is shown the change as unconfirmed until his
/// checkpoint vouches for it, then as a device recovery, and his call reaches her. Mallory, with a
/// receipt of her own, is refused before anything is funded: `onboard` names `number_taken` and
/// the recovery command, `recover` finds nothing her receipt could recover.
#[test]
fn a_lost_key_file_is_recovered_with_the_original_receipt_and_a_fresh_code() {
    let Some(sms) = sms_network() else {
        return;
    };
    let net = &sms.net;
    let alice = sms.onboarded_phone("alice", ALICE);
    let bob = sms.onboarded_phone("bob", BOB);
    let show = |home: &Path, number: &str| -> serde_json::Value {
        let out = ok(phone(home).args(["contact", "show", number, "--json"]));
        serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"))
    };
    let old_fingerprint = show(&bob, ALICE)["fingerprint"].clone();

    // Mallory claims Alice's number with a receipt of her own.
    let mallory = net.initialised_phone("mallory", Some(ALICE));
    let bad = failing(phone(&mallory).args(["onboard", "--receipt", "receipt.json"]));
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(
        stderr.contains("number_taken") && stderr.contains("chaincall phone recover"),
        "{stderr}"
    );
    let bad = failing(phone(&mallory).args(["recover", "--receipt", "receipt.json"]));
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(stderr.contains("not_recoverable"), "{stderr}");
    assert_eq!(balance_of(net, &mallory), alloy::primitives::U256::ZERO);

    // Alice's key file is lost. (A copy plays the lost device, on sipd's plain TCP listener,
    // where only the SIP password authenticates it.)
    let lost = net.path("alice-lost");
    std::fs::create_dir_all(&lost).unwrap();
    for file in ["phone.key", "passphrase", "phone.toml"] {
        std::fs::copy(alice.join(file), lost.join(file)).unwrap();
    }
    let config = std::fs::read_to_string(lost.join("phone.toml"))
        .unwrap()
        .replace("transport = \"tls-psk\"", "transport = \"tcp\"")
        .replace(
            &format!("addr = \"127.0.0.1:{}\"", net.sipd_port),
            &format!("addr = \"127.0.0.1:{}\"", net.sipd_tcp_port),
        );
    std::fs::write(lost.join("phone.toml"), config).unwrap();
    let out = ok(phone(&lost).arg("register"));
    assert!(out.contains(&format!("registered {ALICE}")), "{out}");
    let old_password = keys_of(&lost).sip_password.unwrap();
    std::fs::remove_file(alice.join("phone.key")).unwrap();

    let (out, code) = sms.answering(
        phone(&alice).args(["recover", "--receipt", "receipt.json"]),
        ALICE,
        2,
    );
    let (stdout, stderr) = succeeded(&out);
    assert!(stdout.contains(&format!("recovered {ALICE}")), "{stdout}");
    assert!(stderr.contains("made new keys"), "{stderr}");
    prompted_for(&stdout, &stderr, ALICE, &code);
    let new_password = keys_of(&alice).sip_password.unwrap();
    assert_ne!(*new_password, *old_password);
    let out = ok(phone(&alice).arg("register"));
    assert!(out.contains(&format!("registered {ALICE}")), "{out}");
    let refused = failing(phone(&lost).arg("register"));
    assert!(
        !String::from_utf8_lossy(&refused.stdout).contains("registered"),
        "the lost device's password still registers"
    );
    // Safe to rerun.
    let out = ok(phone(&alice).args(["recover", "--receipt", "receipt.json"]));
    assert!(out.contains("nothing to recover"), "{out}");

    // Bob's pin of Alice's old key persists; his checkpoint (block 0) cannot vouch for the
    // recovery, so he is shown the new key to compare and the pin stays.
    let unconfirmed = show(&bob, ALICE);
    assert_eq!(unconfirmed["pinned"], false, "{unconfirmed}");
    // With a checkpoint after the recovery, his next lookup proves the revocation and the new
    // approval, moves the pin and tells him it was a device recovery.
    net.trust_latest_block(&bob);
    let after = show(&bob, ALICE);
    assert_eq!(after["verified"], true, "{after}");
    assert_ne!(after["fingerprint"], old_fingerprint);
    let history = after["history"].as_array().unwrap();
    let recovery = history.last().unwrap();
    assert_eq!(recovery["kind"], "recovery", "{after}");
    assert!(
        recovery["message"]
            .as_str()
            .unwrap()
            .contains("after the operator revoked the old key (device recovery)"),
        "{after}"
    );
    let listener = listening(&alice, &["--count", "1"], "listening");
    let out = ok(phone(&bob).args(["call", ALICE, "--seconds", "1", "--json"]));
    let b = json_line(&out.lines().map(str::to_owned).collect::<Vec<_>>());
    assert_eq!(b["verified_peer"], ALICE, "{b}");
    assert_eq!(b["key_retrieval_verified"], true, "{b}");
    let a = json_line(&listener.finish(Duration::from_secs(30)));
    assert_eq!(a["verified_peer"], BOB, "{a}");
}

/// `phone contact show` from each of two phones prints the same safety number (and each side's
/// fingerprint as `keystore get` prints it); after the contact rotates its key on chain, the
/// number changes.
#[test]
fn both_phones_show_the_same_safety_number_until_a_key_rotates() {
    let Some(net) = network() else { return };
    let alice = net.onboarded_phone("alice", ALICE);
    let bob = net.onboarded_phone("bob", BOB);
    let show = |home: &Path, number: &str| -> serde_json::Value {
        let out = ok(phone(home).args(["contact", "show", number, "--json"]));
        serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"))
    };
    // `chaincall keystore get --phone NUMBER` plus `extra` arguments; its standard output.
    let keystore_get = |number: &str, extra: &[&str]| -> String {
        ok(chaincall()
            .args(["keystore", "get", "--rpc", &net.rpc])
            .args(["--contract", &net.contract, "--phone", number])
            .args(extra))
    };
    let get_fingerprint = |number: &str| -> serde_json::Value {
        let out = keystore_get(number, &["--json"]);
        serde_json::from_str::<serde_json::Value>(out.trim()).unwrap()["fingerprint"].clone()
    };

    let bob_seen_by_alice = show(&alice, BOB);
    let alice_seen_by_bob = show(&bob, ALICE);
    assert_eq!(bob_seen_by_alice["contact"], BOB);
    assert_eq!(bob_seen_by_alice["verified"], true);
    let number = bob_seen_by_alice["safety_number"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(number.len(), 60, "{bob_seen_by_alice}");
    assert!(number.bytes().all(|b| b.is_ascii_digit()));
    assert_eq!(alice_seen_by_bob["safety_number"], number.as_str());
    // Each side's fingerprint is the one the other sees, and the one `keystore get` prints.
    assert_eq!(
        bob_seen_by_alice["fingerprint"],
        alice_seen_by_bob["own"]["fingerprint"]
    );
    assert_eq!(
        alice_seen_by_bob["fingerprint"],
        bob_seen_by_alice["own"]["fingerprint"]
    );
    assert_eq!(get_fingerprint(BOB), bob_seen_by_alice["fingerprint"]);
    assert_eq!(get_fingerprint(ALICE), alice_seen_by_bob["fingerprint"]);

    // The text form shows the same 60 digits, in 12 groups of five.
    let text = ok(phone(&bob).args(["contact", "show", ALICE]));
    let groups: Vec<&str> = text
        .lines()
        .skip_while(|l| !l.starts_with("safety number"))
        .skip(1)
        .take(3)
        .flat_map(|l| l.split_whitespace())
        .collect();
    assert_eq!(groups.len(), 12, "{text}");
    assert_eq!(groups.concat(), number, "{text}");
    // `keystore get` (text) shows Bob's fingerprint in groups, as `contact show` does.
    let bob_fp = bob_seen_by_alice["fingerprint"].as_str().unwrap();
    let grouped: Vec<&str> = bob_fp
        .as_bytes()
        .chunks(5)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    let got = keystore_get(BOB, &[]);
    assert!(
        got.contains(&format!("fingerprint {}", grouped.join(" "))),
        "{got}"
    );
    // A name that is not a number, and a number with no entry, are refused with a reason.
    let bad = failing(phone(&alice).args(["contact", "show", "sip.example.org"]));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("not a phone number"));
    let bad = failing(phone(&alice).args(["contact", "show", NOBODY]));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("not a chaincall subscriber"));

    // Bob rotates his key with his phone's wallet (the `keystore rotate` a user runs).
    let new_key = chaincall_identity::IdentityKey::generate().public();
    net.rotate_key(&bob, BOB, &new_key);
    // Alice's pin is from before the rotation, which her checkpoint (block 0) cannot confirm:
    // `contact show` shows the new key to compare, and says the pin stays.
    let after = show(&alice, BOB);
    assert_eq!(after["pinned"], false, "{after}");
    assert!(
        after["unconfirmed_key_change"]
            .as_str()
            .unwrap()
            .contains("not confirmed"),
        "{after}"
    );
    assert_eq!(
        after["public_key"],
        hex::encode(new_key.to_bytes()).as_str()
    );
    assert_ne!(after["fingerprint"], bob_seen_by_alice["fingerprint"]);
    assert_ne!(after["safety_number"], number.as_str());
    assert_eq!(after["own"], bob_seen_by_alice["own"]);
    assert_eq!(get_fingerprint(BOB), after["fingerprint"]);

    // Alice compares the new safety number with bob and accepts the change: the pin moves, the
    // acceptance is in the history, and the new key is the one verified in person.
    let out = ok(phone(&alice).args(["contact", "verify", BOB, "--yes"]));
    assert!(
        out.contains("accepted") && out.contains("marked verified in person"),
        "{out}"
    );
    let accepted = show(&alice, BOB);
    assert_eq!(accepted["pinned"], true, "{accepted}");
    assert_eq!(accepted["verified_in_person"], true, "{accepted}");
    assert_eq!(accepted["safety_number"], after["safety_number"]);
    assert_eq!(
        accepted["history"][0]["kind"], "accepted-by-user",
        "{accepted}"
    );
    assert_eq!(
        accepted["history"][0]["old_fingerprint"],
        bob_seen_by_alice["fingerprint"]
    );
}

/// Key continuity across `phone call` processes (issue 14, item 2): the first call pins bob's key
/// in alice's contacts file; `contact verify` marks it verified in person; bob rotates his key
/// on chain and the next call succeeds and reports the rotation with its block and date, clears
/// "verified in person" and shows the change in `phone contacts`; then a node lying about bob's
/// key (storage overwritten, no event) makes the next call fail with the pin unchanged.
#[test]
fn key_changes_between_two_calls_are_reported_or_refused_and_persist_in_contacts() {
    let Some(net) = network() else { return };
    let alice = net.onboarded_phone("alice", ALICE);
    let bob = net.onboarded_phone("bob", BOB);
    // One call from alice to bob (bob answers one call); alice's JSON report.
    let call_bob = || -> serde_json::Value {
        let listener = listening(&bob, &["--count", "1"], "listening");
        let out = ok(phone(&alice).args(["call", BOB, "--seconds", "1", "--json"]));
        let b = json_line(&listener.finish(Duration::from_secs(30)));
        let a = json_line(&out.lines().map(str::to_owned).collect::<Vec<_>>());
        assert_eq!(a["verified_peer"], BOB, "{a}");
        // Both sides show the same safety number.
        assert_eq!(a["safety_number"], b["safety_number"], "{a}\n{b}");
        a
    };
    let contacts = || -> serde_json::Value {
        let out = ok(phone(&alice).args(["contacts", "--json"]));
        let all: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
        let bob = all["contacts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["contact"] == BOB)
            .cloned();
        bob.unwrap_or_else(|| panic!("bob is not among alice's contacts: {all}"))
    };

    let first = call_bob();
    assert_eq!(first["key_changes"], serde_json::json!([]), "{first}");
    assert_eq!(first["verified_in_person"], false, "{first}");
    let safety = first["safety_number"].as_str().unwrap().to_owned();
    assert_eq!(safety.len(), 60, "{first}");
    let pinned = contacts();
    assert_eq!(pinned["safety_number"], safety.as_str(), "{pinned}");
    assert_eq!(pinned["verified_in_person"], false, "{pinned}");
    assert_eq!(pinned["history"], serde_json::json!([]), "{pinned}");
    assert!(
        pinned["last_verified"]["block"].as_u64().is_some(),
        "{pinned}"
    );
    let contacts_file = alice.join("contacts.json");
    assert_eq!(mode(&contacts_file), 0o600);

    // Alice compared the safety number with bob in person.
    let out = ok(phone(&alice).args(["contact", "verify", BOB, "--yes"]));
    assert!(out.contains("marked verified in person"), "{out}");
    assert!(
        out.contains(&pinned["fingerprint"].as_str().unwrap()[..5]),
        "{out}"
    );
    assert_eq!(contacts()["verified_in_person"], true);

    // Bob's phone gets a new identity key, and bob rotates to it on chain.
    let mut secrets =
        chaincall_phone::PhoneSecrets::load(&bob.join("phone.key"), PASSPHRASE).unwrap();
    secrets.identity = chaincall_identity::IdentityKey::generate();
    secrets
        .save(&bob.join("phone.key"), PASSPHRASE, true)
        .unwrap();
    let rotated_at = net.rotate_key(&bob, BOB, &secrets.identity.public());
    // Alice's checkpoint (block 0) cannot confirm a rotation after it: she moves it to a block
    // after the rotation, read from a source she trusts (docs/verified-lookups.md).
    net.trust_latest_block(&alice);

    let second = call_bob();
    let changes = second["key_changes"].as_array().unwrap();
    assert_eq!(changes.len(), 1, "{second}");
    let change = &changes[0];
    assert_eq!(change["kind"], "rotation", "{change}");
    assert_eq!(change["block"], rotated_at, "{change}");
    assert!(change["block_time"].as_u64().is_some(), "{change}");
    let message = change["message"].as_str().unwrap();
    assert!(
        message.starts_with(&format!("{BOB}'s key changed on 20"))
            && message.ends_with(&format!(
                "(block {rotated_at}) by a rotation recorded on chain"
            )),
        "{message}"
    );
    assert_ne!(second["safety_number"], safety.as_str(), "{second}");
    assert_eq!(second["verified_in_person"], false, "{second}");
    let after = contacts();
    assert_eq!(after["history"].as_array().unwrap().len(), 1, "{after}");
    assert_eq!(after["last_change"]["kind"], "rotation", "{after}");
    assert_eq!(
        after["last_change"]["old_fingerprint"], pinned["fingerprint"],
        "{after}"
    );
    assert_eq!(after["safety_number"], second["safety_number"], "{after}");
    assert_eq!(
        after["verified_in_person"], false,
        "the new key was not compared: {after}"
    );
    let text = ok(phone(&alice).arg("contacts"));
    assert!(
        text.contains(BOB) && text.contains("verified in person no") && text.contains(message),
        "{text}"
    );
    let shown = ok(phone(&alice).args(["contact", "show", BOB]));
    assert!(
        shown.contains("history") && shown.contains(message),
        "{shown}"
    );

    // A node lying about bob's key: his key's storage overwritten, no event, a block mined on it.
    let current = secrets.identity.public().to_bytes();
    let liar = loop {
        let k = chaincall_identity::IdentityKey::generate()
            .public()
            .to_bytes();
        // Same first byte, so the lie only touches the entry's second slot.
        if k[0] == current[0] {
            break k;
        }
    };
    let id = chaincall_chain::ClientId::of(&BOB.parse().unwrap());
    let [_, key_slot] = chaincall_chain::layout::entry_slots(&id);
    net.rpc(
        "anvil_setStorageAt",
        serde_json::json!([
            net.contract,
            format!("0x{key_slot:064x}"),
            format!("0x{}", hex::encode(&liar[1..33]))
        ]),
    );
    net.rpc("evm_mine", serde_json::json!([]));
    // Bob's stored entry, as written (the SIP server's entry beside it is refreshed by the call).
    let stored_bob = || -> serde_json::Value {
        let text = std::fs::read_to_string(&contacts_file).unwrap();
        serde_json::from_str::<serde_json::Value>(&text).unwrap()["contacts"][BOB].clone()
    };
    let before = stored_bob();
    let out = failing(phone(&alice).args(["call", BOB, "--seconds", "1"]));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("without an on-chain record"), "{err}");
    assert_eq!(stored_bob(), before, "the pin did not move");
    assert_eq!(contacts()["safety_number"], second["safety_number"]);

    // A corrupt contacts file: a clear error naming it, and the file left as it was.
    std::fs::write(&contacts_file, b"{ not json").unwrap();
    let out = failing(phone(&alice).args(["contact", "show", BOB]));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("corrupt") && err.contains(&contacts_file.display().to_string()),
        "{err}"
    );
    assert_eq!(std::fs::read(&contacts_file).unwrap(), b"{ not json");
}
