//! `chaincall demo`: a real keystore round trip on the embedded chain, reported like a small
//! benchmark. Every step is checked; any failed check exits non-zero.
//!
//! The steps follow onboarding (DESIGN.md, flow 1): the operator deploys the keystore, funds a fresh
//! phone wallet, the phone submits its identity key with a receipt commitment, the operator approves
//! with the receipt; then a caller looks the key up (and checks the entry against the contract's raw
//! storage and a signature made with the phone's key), the phone rotates its key, revokes it, and the
//! history is read back from the events.

use std::time::{Duration, Instant};

use alloy::primitives::{U256, keccak256};
use anyhow::{Result, anyhow, ensure};
use chaincall_chain::{
    ClientId, EmbeddedChain, KeystoreChain, PrivateKeySigner, TxOutcome, dev_signer, layout,
    receipt_commitment, receipt_hash,
};
use chaincall_identity::{IdentityKey, IdentityName, KeyStatus};
use clap::Args;
use rand_core::{OsRng, RngCore};
use serde_json::json;

/// Run the keystore round trip on the in-process chain and print a report.
#[derive(Debug, Args)]
pub(crate) struct DemoArgs {
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// Lookups to time for the per-lookup figure.
    #[arg(long, default_value_t = 1000)]
    lookups: u32,
}

struct Step {
    name: &'static str,
    elapsed: Duration,
    gas: Option<u64>,
    note: String,
}

struct Report {
    steps: Vec<Step>,
}

impl Report {
    fn push(
        &mut self,
        name: &'static str,
        started: Instant,
        out: Option<&TxOutcome>,
        note: String,
    ) {
        self.steps.push(Step {
            name,
            elapsed: started.elapsed(),
            gas: out.map(|o| o.gas_used),
            note,
        });
    }
}

/// Runs `chaincall demo`.
pub(crate) fn run(args: DemoArgs) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run_async(args))
}

async fn run_async(args: DemoArgs) -> Result<()> {
    let total = Instant::now();
    let chain = EmbeddedChain::default();
    let mut report = Report { steps: Vec::new() };
    let operator = dev_signer(0);
    let phone_wallet = PrivateKeySigner::random();
    let name = IdentityName::parse("+1 555 123 4567")?;
    let id = ClientId::of(&name);

    let t = Instant::now();
    let deployed = chain.deploy(&operator).await?;
    let contract = deployed
        .contract_address
        .ok_or_else(|| anyhow!("deployment has no contract address"))?;
    ensure!(
        chain.owner(contract).await? == operator.address(),
        "owner is not the deployer"
    );
    report.push(
        "deploy keystore",
        t,
        Some(&deployed),
        format!("at {contract}"),
    );

    let t = Instant::now();
    let funding = U256::from(10u64).pow(U256::from(16u64)); // 0.01 ether
    let funded = chain
        .transfer(&operator, phone_wallet.address(), funding)
        .await?;
    ensure!(
        chain.balance(phone_wallet.address()).await? == funding,
        "phone wallet not funded"
    );
    report.push("fund phone wallet", t, Some(&funded), "0.01 ether".into());

    let mut receipt = [0u8; 32];
    OsRng.fill_bytes(&mut receipt);
    let receipt_text = hex::encode(receipt);
    let rh = receipt_hash(receipt_text.as_bytes());
    let identity = IdentityKey::generate();
    let t = Instant::now();
    let added = chain
        .add_client(
            contract,
            &phone_wallet,
            id,
            identity.public().tag(),
            &identity.public().to_bytes(),
            receipt_commitment(&id, phone_wallet.address(), &rh),
        )
        .await?;
    let entry = chain.get_client(contract, id).await?;
    ensure!(
        entry.status == KeyStatus::Pending,
        "entry is {} after addClient",
        entry.status
    );
    report.push(
        "addClient (phone)",
        t,
        Some(&added),
        format!("{} pending", name.as_str()),
    );

    let t = Instant::now();
    let approved = chain.approve_client(contract, &operator, id, rh).await?;
    report.push(
        "approveClient (operator)",
        t,
        Some(&approved),
        "receipt matched".into(),
    );
    let pair = added.gas_used + approved.gas_used;
    ensure!(
        pair <= crate::cmd::keystore::GAS_BUDGET,
        "addClient + approveClient cost {pair} gas, over budget"
    );

    // A caller's lookup, cross-checked three ways: getClient, the raw storage slots decoded by the
    // layout module, and a signature by the phone's identity key verified with the on-chain key.
    let t = Instant::now();
    let entry = chain.get_client(contract, id).await?;
    let key = entry
        .approved_key()
        .ok_or_else(|| anyhow!("entry is {} after approval", entry.status))?;
    ensure!(
        key == identity.public(),
        "on-chain key differs from the phone's key"
    );
    let slots = layout::entry_slots(&id);
    let words = [
        chain.storage_at(contract, slots[0]).await?,
        chain.storage_at(contract, slots[1]).await?,
    ];
    let stored = layout::decode_entry(id, words)?;
    ensure!(
        stored.entry == entry,
        "raw storage disagrees with getClient"
    );
    let challenge = keccak256(b"chaincall demo challenge");
    key.verify(challenge.as_slice(), &identity.sign(challenge.as_slice()))?;
    report.push(
        "get + checks (caller)",
        t,
        None,
        "storage and signature agree".into(),
    );

    let t = Instant::now();
    let rotated_key = IdentityKey::generate();
    let rotated = chain
        .rotate_key(
            contract,
            &phone_wallet,
            id,
            rotated_key.public().tag(),
            &rotated_key.public().to_bytes(),
        )
        .await?;
    ensure!(
        chain.get_client(contract, id).await?.approved_key() == Some(rotated_key.public()),
        "rotation did not take effect"
    );
    report.push(
        "rotateKey (phone)",
        t,
        Some(&rotated),
        "new key approved".into(),
    );

    let t = Instant::now();
    let intruder = dev_signer(5);
    let taken = chain
        .add_client(
            contract,
            &intruder,
            id,
            1,
            &IdentityKey::generate().public().to_bytes(),
            receipt_commitment(&id, intruder.address(), &rh),
        )
        .await;
    ensure!(
        matches!(taken, Err(chaincall_chain::ChainError::AlreadyTaken { .. })),
        "another wallet could submit over an approved number: {taken:?}"
    );
    report.push("takeover attempt", t, None, "refused: AlreadyTaken".into());

    let t = Instant::now();
    let revoked = chain.revoke_client(contract, &phone_wallet, id).await?;
    let entry = chain.get_client(contract, id).await?;
    ensure!(
        entry.status == KeyStatus::Revoked && entry.approved_key().is_none(),
        "not revoked"
    );
    report.push(
        "revokeClient (phone)",
        t,
        Some(&revoked),
        "key no longer usable".into(),
    );

    let t = Instant::now();
    let history = chain.history(contract, id).await?;
    let names: Vec<_> = history.iter().map(|e| e.change.name()).collect();
    ensure!(
        names == ["added", "approved", "rotated", "revoked"],
        "history reads {names:?}"
    );
    report.push("history (events)", t, None, names.join(" → "));

    // Lookup speed on an approved entry (a fresh one, since the demo's is revoked now).
    let other = IdentityName::parse("sip.example.org")?;
    let other_id = ClientId::of(&other);
    let server_key = IdentityKey::generate().public();
    let srh = receipt_hash(b"server receipt");
    chain
        .add_client(
            contract,
            &operator,
            other_id,
            1,
            &server_key.to_bytes(),
            receipt_commitment(&other_id, operator.address(), &srh),
        )
        .await?;
    chain
        .approve_client(contract, &operator, other_id, srh)
        .await?;
    let lookups = args.lookups.max(1);
    let t = Instant::now();
    for _ in 0..lookups {
        let entry = chain.get_client(contract, other_id).await?;
        ensure!(
            entry.approved_key().as_ref() == Some(&server_key),
            "lookup went wrong"
        );
    }
    let per_lookup = t.elapsed() / lookups;

    let total = total.elapsed();
    let block = chain.block_number().await?;
    if args.json {
        let steps: Vec<_> = report
            .steps
            .iter()
            .map(|s| json!({"step": s.name, "ms": s.elapsed.as_secs_f64() * 1e3, "gas": s.gas, "note": s.note}))
            .collect();
        println!(
            "{}",
            json!({
                "ok": true,
                "chain": "embedded (revm)",
                "contract": contract.to_string(),
                "identity": name.canonical(),
                "steps": steps,
                "gas_add_plus_approve": pair,
                "lookup_us": per_lookup.as_secs_f64() * 1e6,
                "lookups": lookups,
                "blocks": block,
                "total_ms": total.as_secs_f64() * 1e3,
            })
        );
    } else {
        println!("chaincall demo: keystore round trip on the embedded chain (revm)");
        println!(
            "identity {} = keccak256(\"{}\")",
            name.as_str(),
            name.canonical()
        );
        println!();
        println!("  {:<26} {:>9} {:>9}  note", "step", "ms", "gas");
        for s in &report.steps {
            let gas = s.gas.map_or("-".to_owned(), |g| g.to_string());
            println!(
                "  {:<26} {:>9.3} {:>9}  {}",
                s.name,
                s.elapsed.as_secs_f64() * 1e3,
                gas,
                s.note
            );
        }
        println!();
        println!(
            "  addClient + approveClient  {pair} gas (budget {})",
            crate::cmd::keystore::GAS_BUDGET
        );
        println!(
            "  getClient lookup           {:.1} µs each over {lookups} lookups",
            per_lookup.as_secs_f64() * 1e6
        );
        println!(
            "  {block} blocks mined, total {:.1} ms; all checks passed",
            total.as_secs_f64() * 1e3
        );
    }
    Ok(())
}
