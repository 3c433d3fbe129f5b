//! `chaincall keystore …`: deploy the keystore contract and add, approve, read, rotate, revoke and
//! audit entries, on any Ethereum node over JSON-RPC (`--rpc URL`); `gas` measures every function on
//! the embedded chain.
//!
//! Results go to stdout; every failure is one line on stderr and a non-zero exit (see `main`).
//! Private keys are read from `--key-file` and never printed.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use chaincall_chain::{
    ChainError, Change, ClientEntry, ClientId, EmbeddedChain, KeystoreChain, PrivateKeySigner,
    RpcChain, RpcConfig, TxOutcome, dev_signer, receipt_commitment, receipt_hash,
};
use chaincall_identity::{Fingerprint, IdentityKey, IdentityName, PhoneNumber, PublicIdentityKey};
use clap::{Args, Subcommand};
use serde_json::json;

use alloy::primitives::{Address, B256};
use chaincall_chain::verified::{HeaderTrust, VerifiedEntry, get_client_verified};

/// Keystore contract: deploy, add, approve, get, rotate, revoke, history, gas.
#[derive(Debug, Args)]
pub(crate) struct KeystoreArgs {
    #[command(subcommand)]
    command: KeystoreCommand,
}

#[derive(Debug, Subcommand)]
enum KeystoreCommand {
    /// Deploy the keystore; the key file's wallet becomes the owner. Last stdout line: the address.
    Deploy {
        #[command(flatten)]
        node: NodeOpts,
        #[command(flatten)]
        wallet: WalletOpts,
    },
    /// Submit an entry (pending until the owner approves it), bound to the key file's wallet.
    Add {
        #[command(flatten)]
        target: TargetOpts,
        #[command(flatten)]
        wallet: WalletOpts,
        /// The identity public key: P-256 SEC1 hex, compressed (33 bytes) or uncompressed (65).
        #[arg(long, value_name = "HEX")]
        public_key: String,
        /// The purchase receipt the wallet server issued (only its hash ever reaches the chain).
        #[arg(long, value_name = "TEXT")]
        receipt: String,
    },
    /// Owner only: approve a pending entry whose commitment matches the receipt.
    Approve {
        #[command(flatten)]
        target: TargetOpts,
        #[command(flatten)]
        wallet: WalletOpts,
        /// The receipt the entry was submitted with.
        #[arg(long, value_name = "TEXT")]
        receipt: String,
    },
    /// Read an entry: status (unknown, pending, approved, revoked), wallet and key.
    ///
    /// With --verify the entry is read with eth_getProof and checked against a trusted block header
    /// (Merkle-Patricia proofs), so the node is not trusted for it; see docs/verified-lookups.md.
    Get {
        #[command(flatten)]
        target: TargetOpts,
        /// Print JSON (`status`, `public_key`, ...; with --verify also `verified`, `block`,
        /// `block_hash`, `proof_bytes`, `trust`).
        #[arg(long)]
        json: bool,
        /// Prove the entry against a trusted block header instead of taking the node's word. A
        /// failed proof exits non-zero and prints no key.
        #[arg(long)]
        verify: bool,
        /// Block to read at (default: the latest). With --verify, the proof is for this block.
        #[arg(long, value_name = "N")]
        block: Option<u64>,
        #[command(flatten)]
        trust: TrustOpts,
    },
    /// The bound wallet replaces the key of its approved entry.
    Rotate {
        #[command(flatten)]
        target: TargetOpts,
        #[command(flatten)]
        wallet: WalletOpts,
        /// The new identity public key (P-256 SEC1 hex).
        #[arg(long, value_name = "HEX")]
        public_key: String,
    },
    /// The bound wallet or the owner revokes an entry.
    Revoke {
        #[command(flatten)]
        target: TargetOpts,
        #[command(flatten)]
        wallet: WalletOpts,
    },
    /// Every change to an entry, from the contract's events, oldest first.
    History {
        #[command(flatten)]
        target: TargetOpts,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Owner only: publish a server's identity (e.g. sipd's TLS-PSK key) under its domain name,
    /// added and approved in one go (rotated if another key is approved). Phones look the server
    /// up there before they trust it. Idempotent.
    PublishServer {
        #[command(flatten)]
        node: NodeOpts,
        /// Keystore contract address.
        #[arg(long, value_name = "ADDR", env = "CHAINCALL_CONTRACT")]
        contract: String,
        /// The server's domain name (sipd's `tls_psk.identity`).
        #[arg(long, value_name = "DOMAIN")]
        domain: String,
        /// The server's P-256 identity secret, hex (sipd's `tls_psk.key_file`). Created with mode
        /// 0600 when missing.
        #[arg(long, value_name = "FILE")]
        identity_key_file: PathBuf,
        #[command(flatten)]
        wallet: WalletOpts,
    },
    /// Gas of every contract function, measured on the embedded chain.
    Gas {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Where the chain is.
#[derive(Debug, Args)]
struct NodeOpts {
    /// JSON-RPC endpoint of an Ethereum node (e.g. anvil's http://127.0.0.1:8545).
    #[arg(long, value_name = "URL", env = "CHAINCALL_RPC")]
    rpc: Option<String>,
    /// Refuse a node whose chain id differs.
    #[arg(long, value_name = "ID")]
    chain_id: Option<u64>,
    /// Blocks a transaction needs before it counts as done (1 = mined).
    #[arg(long, default_value_t = 1, value_name = "N")]
    confirmations: u64,
}

/// Which entry, on which contract.
#[derive(Debug, Args)]
struct TargetOpts {
    #[command(flatten)]
    node: NodeOpts,
    /// Keystore contract address.
    #[arg(long, value_name = "ADDR", env = "CHAINCALL_CONTRACT")]
    contract: String,
    /// Subscriber phone number in E.164 form (+15551234567; spaces and dashes are fine).
    #[arg(long, value_name = "+E164", conflicts_with = "name")]
    phone: Option<String>,
    /// Server domain name (sip.example.org), or a number.
    #[arg(long, value_name = "NAME")]
    name: Option<String>,
}

/// Which block headers a verified lookup trusts (see docs/verified-lookups.md).
#[derive(Debug, Args)]
pub(crate) struct TrustOpts {
    /// Pinned block `NUMBER:HASH` (e.g. from the app's config). Blocks up to it are proven by hash
    /// links; newer blocks are only checked to descend from it, so a lying node can still forge the
    /// newest header (see docs/verified-lookups.md). Default: block 0 fetched from the --rpc
    /// endpoint itself, which is trust on first use.
    #[arg(long, value_name = "NUMBER:HASH", conflicts_with = "quorum")]
    pub(crate) checkpoint: Option<String>,
    /// Trust a block hash only when --k of these JSON-RPC endpoints (independently operated)
    /// return the same header for it.
    #[arg(
        long,
        value_name = "URL,URL,...",
        value_delimiter = ',',
        requires = "k"
    )]
    pub(crate) quorum: Vec<String>,
    /// How many --quorum endpoints must agree (a strict majority).
    #[arg(long, value_name = "N")]
    pub(crate) k: Option<usize>,
}

impl TrustOpts {
    /// The header trust these options describe, and a one-line account of it for the output.
    pub(crate) async fn header_trust<C: KeystoreChain>(
        &self,
        chain: &C,
    ) -> Result<(HeaderTrust, String)> {
        if !self.quorum.is_empty() {
            let k = self.k.ok_or_else(|| anyhow!("--quorum needs --k N"))?;
            let n = self.quorum.len();
            // Refuses a server listed twice and a k that is no strict majority of distinct servers.
            let trust = HeaderTrust::quorum(self.quorum.clone(), k).context("--quorum/--k")?;
            let what = format!("quorum {k} of {n}");
            return Ok((trust, what));
        }
        match &self.checkpoint {
            Some(text) => {
                let (number, hash) = parse_checkpoint(text)?;
                Ok((
                    HeaderTrust::checkpoint(number, hash),
                    format!("checkpoint {number}:{hash}"),
                ))
            }
            None => {
                let genesis = chain
                    .block_header(0)
                    .await
                    .context("cannot fetch the genesis header to pin it")?
                    .hash_slow();
                Ok((
                    HeaderTrust::checkpoint(0, genesis),
                    format!("checkpoint 0:{genesis} (the endpoint's genesis: trust on first use)"),
                ))
            }
        }
    }
}

fn parse_checkpoint(text: &str) -> Result<(u64, B256)> {
    let bad = || anyhow!("--checkpoint {text:?} is not NUMBER:HASH (e.g. 0:0x1234…, 32-byte hash)");
    let (number, hash) = text.trim().split_once(':').ok_or_else(bad)?;
    let number = number.trim().parse::<u64>().map_err(|_| bad())?;
    let hash = hash.trim().parse::<B256>().map_err(|_| bad())?;
    Ok((number, hash))
}

/// Who signs.
#[derive(Debug, Args)]
struct WalletOpts {
    /// File holding the sender's secp256k1 private key in hex (as anvil prints it).
    #[arg(long, value_name = "FILE")]
    key_file: PathBuf,
}

impl NodeOpts {
    async fn connect(&self) -> Result<RpcChain> {
        let Some(url) = &self.rpc else {
            bail!(
                "--rpc URL is required: this command talks to a node (the embedded chain lives only \
                 inside one process; `chaincall demo` and `keystore gas` use it)"
            );
        };
        Ok(RpcChain::connect(
            url,
            RpcConfig {
                expected_chain_id: self.chain_id,
                confirmations: self.confirmations,
                ..RpcConfig::default()
            },
        )
        .await?)
    }
}

impl TargetOpts {
    fn contract(&self) -> Result<Address> {
        self.contract.trim().parse().map_err(|_| {
            anyhow!(
                "--contract {:?} is not a 0x-prefixed 20-byte address",
                self.contract
            )
        })
    }

    fn identity(&self) -> Result<IdentityName> {
        match (&self.phone, &self.name) {
            (Some(phone), _) => Ok(PhoneNumber::parse(phone)
                .map_err(|e| anyhow!("invalid --phone: {e}"))?
                .into()),
            (None, Some(name)) => {
                IdentityName::parse(name).map_err(|e| anyhow!("invalid --name: {e}"))
            }
            (None, None) => bail!("give --phone +E164 (a subscriber) or --name DOMAIN (a server)"),
        }
    }
}

/// Reads a hex secp256k1 private key (with or without `0x`) from a file; the key is never echoed.
///
/// Refused when the file's group or other users may read it (the error names `chmod 600 PATH`),
/// like every other secret file chaincall reads.
pub(crate) fn read_key_file(path: &Path) -> Result<PrivateKeySigner> {
    let text = chaincall_identity::read_secret_file(path)
        .with_context(|| format!("cannot read key file {}", path.display()))?;
    let hex = text.trim().trim_start_matches("0x");
    hex.parse::<PrivateKeySigner>().map_err(|_| {
        anyhow!(
            "key file {} does not hold a hex secp256k1 private key (64 hex digits, as anvil prints)",
            path.display()
        )
    })
}

fn parse_public_key(text: &str) -> Result<PublicIdentityKey> {
    let bytes = hex::decode(text.trim().trim_start_matches("0x"))
        .map_err(|_| anyhow!("malformed key: --public-key is not hex"))?;
    PublicIdentityKey::from_p256_sec1(&bytes).map_err(|e| anyhow!("malformed key: {e}"))
}

/// Adds the identity's human name to contract errors that only carry its hash.
fn explain(err: ChainError, name: &IdentityName) -> anyhow::Error {
    let who = name.as_str();
    match err {
        ChainError::UnknownId { .. } => anyhow!("unknown {who}: no entry in the keystore"),
        ChainError::AlreadyTaken { wallet, .. } => {
            anyhow!("{who} is already taken: approved for wallet {wallet}")
        }
        ChainError::AlreadyPending { wallet, .. } => {
            anyhow!("{who} already has a pending entry from wallet {wallet}")
        }
        ChainError::ReceiptMismatch { .. } => anyhow!(
            "receipt does not match the pending entry for {who} (wrong receipt or submitting wallet)"
        ),
        ChainError::WrongStatus { status, .. } => {
            anyhow!("{who} is {status} in the keystore, which does not allow this")
        }
        ChainError::NotEntryWallet { caller, .. } => {
            anyhow!("wallet {caller} is not the wallet bound to {who}")
        }
        other => other.into(),
    }
}

fn tx_line(what: &str, out: &TxOutcome) -> String {
    format!(
        "{what}: tx {} in block {}, gas {}",
        out.tx_hash, out.block_number, out.gas_used
    )
}

/// Runs `chaincall keystore …`.
pub(crate) fn run(args: KeystoreArgs) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(run_async(args.command))
}

async fn run_async(command: KeystoreCommand) -> Result<()> {
    match command {
        KeystoreCommand::Deploy { node, wallet } => {
            let signer = read_key_file(&wallet.key_file)?;
            let chain = node.connect().await?;
            let out = chain.deploy(&signer).await?;
            let address = out
                .contract_address
                .ok_or_else(|| anyhow!("deployment receipt names no contract address"))?;
            println!("{}", tx_line("deployed", &out));
            println!("owner {}", signer.address());
            println!("{address}");
        }
        KeystoreCommand::Add {
            target,
            wallet,
            public_key,
            receipt,
        } => {
            let name = target.identity()?;
            let key = parse_public_key(&public_key)?;
            let contract = target.contract()?;
            let signer = read_key_file(&wallet.key_file)?;
            let chain = target.node.connect().await?;
            let id = ClientId::of(&name);
            let commitment =
                receipt_commitment(&id, signer.address(), &receipt_hash(receipt.as_bytes()));
            let out = chain
                .add_client(
                    contract,
                    &signer,
                    id,
                    key.tag(),
                    &key.to_bytes(),
                    commitment,
                )
                .await
                .map_err(|e| explain(e, &name))?;
            println!("{}", tx_line("added (pending approval)", &out));
        }
        KeystoreCommand::Approve {
            target,
            wallet,
            receipt,
        } => {
            let name = target.identity()?;
            let contract = target.contract()?;
            let signer = read_key_file(&wallet.key_file)?;
            let chain = target.node.connect().await?;
            let out = chain
                .approve_client(
                    contract,
                    &signer,
                    ClientId::of(&name),
                    receipt_hash(receipt.as_bytes()),
                )
                .await
                .map_err(|e| explain(e, &name))?;
            println!("{}", tx_line("approved", &out));
        }
        KeystoreCommand::Get {
            target,
            json,
            verify,
            block,
            trust,
        } => {
            let name = target.identity()?;
            let contract = target.contract()?;
            let chain = target.node.connect().await?;
            let id = ClientId::of(&name);
            if !verify {
                if block.is_some() || trust.checkpoint.is_some() || !trust.quorum.is_empty() {
                    bail!(
                        "--block, --checkpoint and --quorum apply to verified lookups: add --verify"
                    );
                }
                let entry = chain.get_client(contract, id).await?;
                print_entry(&name, contract, &entry, json, None);
                return Ok(());
            }
            let (header_trust, how) = trust.header_trust(&chain).await?;
            let found = get_client_verified(&chain, contract, id, &header_trust, block)
                .await
                .map_err(|e| anyhow!("verification failed, no key is shown: {e}"))?;
            print_entry(
                &name,
                contract,
                &found.entry,
                json,
                Some((&found, how.as_str())),
            );
        }
        KeystoreCommand::Rotate {
            target,
            wallet,
            public_key,
        } => {
            let name = target.identity()?;
            let key = parse_public_key(&public_key)?;
            let contract = target.contract()?;
            let signer = read_key_file(&wallet.key_file)?;
            let chain = target.node.connect().await?;
            let out = chain
                .rotate_key(
                    contract,
                    &signer,
                    ClientId::of(&name),
                    key.tag(),
                    &key.to_bytes(),
                )
                .await
                .map_err(|e| explain(e, &name))?;
            println!("{}", tx_line("rotated", &out));
        }
        KeystoreCommand::Revoke { target, wallet } => {
            let name = target.identity()?;
            let contract = target.contract()?;
            let signer = read_key_file(&wallet.key_file)?;
            let chain = target.node.connect().await?;
            let out = chain
                .revoke_client(contract, &signer, ClientId::of(&name))
                .await
                .map_err(|e| explain(e, &name))?;
            println!("{}", tx_line("revoked", &out));
        }
        KeystoreCommand::History { target, json } => {
            let name = target.identity()?;
            let contract = target.contract()?;
            let chain = target.node.connect().await?;
            let events = chain.history(contract, ClientId::of(&name)).await?;
            print_history(&name, &events, json);
        }
        KeystoreCommand::PublishServer {
            node,
            contract,
            domain,
            identity_key_file,
            wallet,
        } => {
            let contract: Address = contract.trim().parse().map_err(|_| {
                anyhow!("--contract {contract:?} is not a 0x-prefixed 20-byte address")
            })?;
            let name = chaincall_identity::DomainName::parse(&domain)
                .map_err(|e| anyhow!("invalid --domain {domain:?}: {e}"))?;
            let signer = read_key_file(&wallet.key_file)?;
            let key = if identity_key_file.exists() {
                chaincall_sipd::tls::load_identity_key(&identity_key_file)?
            } else {
                let key = IdentityKey::generate();
                let secret =
                    zeroize::Zeroizing::new(hex::encode(&key.dangerous_secret_bytes()[..]));
                chaincall_wallet::server::write_secret(&identity_key_file, &secret)
                    .with_context(|| format!("cannot write {}", identity_key_file.display()))?;
                println!("created {}", identity_key_file.display());
                key
            };
            let chain = node.connect().await?;
            chaincall_wallet::service::publish_identity(
                &chain,
                contract,
                &signer,
                &name,
                &key.public(),
            )
            .await
            .map_err(|e| explain(e, &IdentityName::Domain(name.clone())))?;
            println!(
                "published {}: approved, key {}",
                name.as_str(),
                key.public().fingerprint()
            );
        }
        KeystoreCommand::Gas { json } => {
            let report = measure_gas().await?;
            let total = report.add + report.approve;
            if json {
                println!(
                    "{}",
                    json!({
                        "deploy": report.deploy,
                        "addClient": report.add,
                        "approveClient": report.approve,
                        "addClient+approveClient": total,
                        "rotateKey": report.rotate,
                        "revokeClient": report.revoke,
                        "revokeClient(owner)": report.revoke_by_owner,
                        "addClient(after revocation)": report.re_add,
                        "reserveClient(over a pending entry)": report.reserve_over_pending,
                        "addClientWithProof": report.add_with_proof,
                        "transferOwnership": report.transfer_ownership,
                        "acceptOwnership": report.accept_ownership,
                        "budget_addClient+approveClient": GAS_BUDGET,
                    })
                );
            } else {
                println!("gas measured on the embedded chain (revm, Osaka rules):");
                for (what, gas) in [
                    ("deploy", report.deploy),
                    ("addClient", report.add),
                    ("approveClient", report.approve),
                    ("addClient + approveClient", total),
                    ("rotateKey", report.rotate),
                    ("revokeClient (by wallet)", report.revoke),
                    ("revokeClient (by owner)", report.revoke_by_owner),
                    ("addClient (after revocation)", report.re_add),
                    ("reserveClient (over pending)", report.reserve_over_pending),
                    ("addClientWithProof", report.add_with_proof),
                    ("transferOwnership", report.transfer_ownership),
                    ("acceptOwnership", report.accept_ownership),
                ] {
                    println!("  {what:<30} {gas:>9}");
                }
                println!("  budget for add + approve      {GAS_BUDGET:>9}");
            }
            if total > GAS_BUDGET {
                bail!("addClient + approveClient costs {total} gas, over the {GAS_BUDGET} budget");
            }
        }
    }
    Ok(())
}

/// addClient + approveClient must stay within this (issue 2).
pub(crate) const GAS_BUDGET: u64 = 150_000;

/// Prints an entry; `verified` carries the proof's block and size, and how the header was trusted.
fn print_entry(
    name: &IdentityName,
    contract: Address,
    entry: &ClientEntry,
    json: bool,
    verified: Option<(&VerifiedEntry, &str)>,
) {
    let key_hex = (!entry.key.is_empty()).then(|| hex::encode(&entry.key));
    // The 30-digit displayable fingerprint of (name, key), for comparing keys in person; none when
    // there is no key or the chain holds bytes that are not a valid key of a known type.
    let fingerprint = (!entry.key.is_empty())
        .then(|| PublicIdentityKey::from_tagged(entry.key_type, &entry.key).ok())
        .flatten()
        .map(|key| Fingerprint::new(name, &key));
    if json {
        let mut out = json!({
            "name": name.as_str(),
            "canonical": name.canonical(),
            "id": entry.id.to_string(),
            "contract": contract.to_string(),
            "status": entry.status.as_str(),
            "wallet": entry.wallet.map(|w| w.to_string()),
            "key_type": entry.key_type,
            "public_key": key_hex,
            "fingerprint": fingerprint.as_ref().map(|f| f.digits().to_owned()),
            "verified": verified.is_some(),
        });
        if let Some((found, how)) = verified {
            out["block"] = json!(found.block_number);
            out["block_hash"] = json!(found.block_hash.to_string());
            out["proof_bytes"] = json!(found.proof_bytes);
            out["trust"] = json!(how);
        }
        println!("{out}");
    } else {
        println!("{} ({}): {}", name.as_str(), name.canonical(), entry.status);
        match verified {
            Some((found, how)) => {
                println!(
                    "verified   block {} ({}), {} proof bytes",
                    found.block_number, found.block_hash, found.proof_bytes
                );
                println!("trust      {how}");
            }
            None => println!("verified   no (the node's word; add --verify to prove it)"),
        }
        if let Some(wallet) = entry.wallet {
            println!("wallet     {wallet}");
        }
        if let Some(key) = key_hex {
            println!("key type   {}", entry.key_type);
            println!("public key {key}");
        }
        if let Some(fingerprint) = &fingerprint {
            println!("fingerprint {fingerprint}");
        }
    }
}

fn change_json(change: &Change) -> serde_json::Value {
    match change {
        Change::Added {
            wallet,
            key_type,
            key,
            commitment,
        } => json!({"wallet": wallet.to_string(), "key_type": key_type,
                    "public_key": hex::encode(key), "commitment": commitment.to_string()}),
        Change::Approved {
            wallet,
            receipt_hash,
        } => json!({"wallet": wallet.to_string(), "receipt_hash": receipt_hash.to_string()}),
        Change::Rotated {
            wallet,
            key_type,
            key,
        } => json!({"wallet": wallet.to_string(), "key_type": key_type,
                    "public_key": hex::encode(key)}),
        Change::Revoked { wallet, by } => {
            json!({"wallet": wallet.to_string(), "by": by.to_string()})
        }
        // Change is non_exhaustive for other crates; a newer variant still prints its name.
        #[allow(unreachable_patterns)]
        _ => json!({}),
    }
}

fn print_history(name: &IdentityName, events: &[chaincall_chain::HistoryEvent], json: bool) {
    if json {
        let items: Vec<_> = events
            .iter()
            .map(|e| {
                let mut v = change_json(&e.change);
                v["event"] = json!(e.change.name());
                v["block"] = json!(e.block_number);
                v["tx"] = json!(e.tx_hash.to_string());
                v["log_index"] = json!(e.log_index);
                v
            })
            .collect();
        println!(
            "{}",
            json!({"name": name.as_str(), "canonical": name.canonical(), "events": items})
        );
    } else if events.is_empty() {
        println!("{}: no history (never submitted)", name.as_str());
    } else {
        for e in events {
            let details = change_json(&e.change)
                .as_object()
                .map(|o| {
                    o.iter()
                        .map(|(k, v)| {
                            format!("{k}={}", v.as_str().map_or(v.to_string(), str::to_owned))
                        })
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .unwrap_or_default();
            println!(
                "block {:>6}  {:<8} {details}",
                e.block_number,
                e.change.name()
            );
        }
    }
}

/// Gas of each function, from real receipts on a fresh embedded chain.
pub(crate) struct GasReport {
    pub(crate) deploy: u64,
    pub(crate) add: u64,
    pub(crate) approve: u64,
    pub(crate) rotate: u64,
    pub(crate) revoke: u64,
    pub(crate) revoke_by_owner: u64,
    pub(crate) re_add: u64,
    pub(crate) reserve_over_pending: u64,
    pub(crate) add_with_proof: u64,
    pub(crate) transfer_ownership: u64,
    pub(crate) accept_ownership: u64,
}

pub(crate) async fn measure_gas() -> Result<GasReport> {
    let chain = EmbeddedChain::default();
    let owner = dev_signer(0);
    let phone = dev_signer(1);
    let other = dev_signer(2);
    let deployed = chain.deploy(&owner).await?;
    let contract = deployed
        .contract_address
        .ok_or_else(|| anyhow!("deployment has no address"))?;
    let name = IdentityName::parse("+15551234567")?;
    let id = ClientId::of(&name);
    let key = IdentityKey::generate().public();
    let rh = receipt_hash(b"gas receipt");
    let add = chain
        .add_client(
            contract,
            &phone,
            id,
            key.tag(),
            &key.to_bytes(),
            receipt_commitment(&id, phone.address(), &rh),
        )
        .await?;
    let approve = chain.approve_client(contract, &owner, id, rh).await?;
    let key2 = IdentityKey::generate().public();
    let rotate = chain
        .rotate_key(contract, &phone, id, key2.tag(), &key2.to_bytes())
        .await?;
    let revoke = chain.revoke_client(contract, &phone, id).await?;
    let re_add = chain
        .add_client(
            contract,
            &other,
            id,
            key.tag(),
            &key.to_bytes(),
            receipt_commitment(&id, other.address(), &rh),
        )
        .await?;
    let revoke_by_owner = chain.revoke_client(contract, &owner, id).await?;
    // A squatted number: another wallet's pending entry, replaced by a reservation.
    let squatted = ClientId::of(&IdentityName::parse("+15551234568")?);
    chain
        .add_client(
            contract,
            &other,
            squatted,
            key.tag(),
            &key.to_bytes(),
            receipt_commitment(&squatted, other.address(), &rh),
        )
        .await?;
    let reserve = chain
        .reserve_client(contract, &owner, squatted, phone.address())
        .await?;
    // addClient with the proof of possession checked on chain (P-256 precompile).
    let proven = ClientId::of(&IdentityName::parse("+15551234569")?);
    let identity = IdentityKey::generate();
    let add_with_proof = chain
        .add_client_with_proof(
            contract,
            &phone,
            proven,
            &identity,
            receipt_commitment(&proven, phone.address(), &rh),
        )
        .await?;
    let transfer = chain
        .transfer_ownership(contract, &owner, other.address())
        .await?;
    let accept = chain.accept_ownership(contract, &other).await?;
    Ok(GasReport {
        deploy: deployed.gas_used,
        add: add.gas_used,
        approve: approve.gas_used,
        rotate: rotate.gas_used,
        revoke: revoke.gas_used,
        revoke_by_owner: revoke_by_owner.gas_used,
        re_add: re_add.gas_used,
        reserve_over_pending: reserve.gas_used,
        add_with_proof: add_with_proof.gas_used,
        transfer_ownership: transfer.gas_used,
        accept_ownership: accept.gas_used,
    })
}
