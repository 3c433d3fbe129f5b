//! `chaincall bench lookup`: key retrieval latency, verified (`eth_getProof` checked against a
//! trusted header) against plain (`getClient` by `eth_call`), on a node (`--rpc`) or on the embedded
//! chain (no `--rpc`: it deploys a keystore and registers the number itself).
//!
//! Each round does one verified and one plain lookup of the latest block, alternating so both see
//! the same node load. The header trust is warmed first (the checkpoint's header chain is linked
//! once), as on a phone that looks up at every call; a lookup after a new block also links that
//! block's header.
//!
//! Which header to trust (`--checkpoint`, `--quorum`) is the CLI's own option group, shared with
//! `keystore get --verify`; the CLI hands it in as a [`TrustSource`].

use std::future::Future;
use std::time::Instant;

use alloy::primitives::Address;
use anyhow::{Context, Result, anyhow, bail};
use chaincall_chain::verified::{HeaderTrust, get_client_verified};
use chaincall_chain::{
    ClientId, EmbeddedChain, KeystoreChain, RpcChain, RpcConfig, dev_signer, receipt_hash,
};
use chaincall_identity::{IdentityKey, IdentityName, PhoneNumber};
use clap::Args;
use serde_json::json;

use crate::{ms, percentile, sort_ms};

/// Where the header trust of the verified lookups comes from (the CLI's `--checkpoint` /
/// `--quorum` options).
pub trait TrustSource {
    /// The header trust to verify against on `chain`, and a one-line account of it for the output.
    fn header_trust<C: KeystoreChain>(
        &self,
        chain: &C,
    ) -> impl Future<Output = Result<(HeaderTrust, String)>>;
}

/// Arguments of `chaincall bench lookup`.
#[derive(Debug, Args)]
pub struct LookupBenchArgs {
    /// JSON-RPC endpoint; without it, the embedded chain (set up by the bench itself).
    #[arg(long, value_name = "URL")]
    rpc: Option<String>,
    /// Keystore contract address (required with --rpc).
    #[arg(long, value_name = "ADDR", requires = "rpc")]
    contract: Option<String>,
    /// Phone number to look up (with --rpc: one already in the keystore).
    #[arg(long, value_name = "+E164", default_value = "+15551234567")]
    phone: String,
    /// Measured lookups of each kind.
    #[arg(long, default_value_t = 1000, value_name = "N")]
    count: usize,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

/// Runs the measurement, verifying against the header trust `trust` describes.
pub fn run(args: LookupBenchArgs, trust: &impl TrustSource) -> Result<()> {
    if args.count == 0 {
        bail!("--count must be at least 1");
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(run_async(args, trust))
}

async fn run_async(args: LookupBenchArgs, trust: &impl TrustSource) -> Result<()> {
    let name: IdentityName = PhoneNumber::parse(&args.phone)
        .map_err(|e| anyhow!("invalid --phone: {e}"))?
        .into();
    let id = ClientId::of(&name);
    match &args.rpc {
        Some(url) => {
            let contract: Address = args
                .contract
                .as_deref()
                .ok_or_else(|| anyhow!("--rpc needs --contract ADDR"))?
                .trim()
                .parse()
                .map_err(|_| anyhow!("--contract is not a 0x-prefixed 20-byte address"))?;
            let chain = RpcChain::connect(url, RpcConfig::default()).await?;
            let (trust, how) = trust.header_trust(&chain).await?;
            measure(&chain, contract, id, &trust, &how, "rpc", &args).await
        }
        None => {
            let chain = EmbeddedChain::default();
            let contract = register(&chain, id).await?;
            let (trust, how) = trust.header_trust(&chain).await?;
            measure(&chain, contract, id, &trust, &how, "embedded", &args).await
        }
    }
}

/// Deploys a keystore on the embedded chain and approves a fresh key for `id`.
async fn register(chain: &EmbeddedChain, id: ClientId) -> Result<Address> {
    let owner = dev_signer(0);
    let phone = dev_signer(1);
    let contract = chain.deploy_keystore(&owner).await?;
    let key = IdentityKey::generate().public();
    let rh = receipt_hash(b"bench lookup receipt");
    chain.add_client_key(contract, &phone, id, &key, rh).await?;
    chain.approve_client(contract, &owner, id, rh).await?;
    Ok(contract)
}

async fn measure<C: KeystoreChain>(
    chain: &C,
    contract: Address,
    id: ClientId,
    trust: &HeaderTrust,
    how: &str,
    backend: &str,
    args: &LookupBenchArgs,
) -> Result<()> {
    // Warm-up: links the header chain from the checkpoint once, and checks the entry exists.
    let first = get_client_verified(chain, contract, id, trust, None)
        .await
        .context("verification failed")?;
    if first.entry.status == chaincall_identity::KeyStatus::Unknown {
        bail!("{} is not in the keystore at {contract}", args.phone);
    }
    let mut verified = Vec::with_capacity(args.count);
    let mut plain = Vec::with_capacity(args.count);
    let mut proof_bytes = first.proof_bytes;
    for _ in 0..args.count {
        let start = Instant::now();
        let found = get_client_verified(chain, contract, id, trust, None)
            .await
            .context("verification failed")?;
        verified.push(ms(start.elapsed()));
        proof_bytes = found.proof_bytes;

        let start = Instant::now();
        let entry = chain.get_client(contract, id).await?;
        plain.push(ms(start.elapsed()));
        if entry != found.entry {
            bail!(
                "plain and verified lookups disagree at block {}",
                found.block_number
            );
        }
    }
    sort_ms(&mut verified);
    sort_ms(&mut plain);
    let report = json!({
        "backend": backend,
        "count": args.count,
        "trust": how,
        "verified_p50_ms": percentile(&verified, 50.0),
        "verified_p99_ms": percentile(&verified, 99.0),
        "plain_p50_ms": percentile(&plain, 50.0),
        "plain_p99_ms": percentile(&plain, 99.0),
        "proof_bytes": proof_bytes,
    });
    if args.json {
        println!("{report}");
    } else {
        println!(
            "key lookup on {backend}, {} lookups each ({how})",
            args.count
        );
        println!(
            "  verified  p50 {:.3} ms  p99 {:.3} ms  ({proof_bytes} proof bytes)",
            percentile(&verified, 50.0),
            percentile(&verified, 99.0)
        );
        println!(
            "  plain     p50 {:.3} ms  p99 {:.3} ms",
            percentile(&plain, 50.0),
            percentile(&plain, 99.0)
        );
    }
    Ok(())
}
