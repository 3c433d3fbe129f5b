//! `chaincall keystore …`: deploy the keystore contract and add, approve, read, rotate, revoke and
//! audit entries, on any Ethereum node over JSON-RPC (`--rpc URL`); `gas` measures every function on
//! the embedded chain.
//!
//! Results go to stdout; every failure is one line on stderr and a non-zero exit (see `main`).
//! Private keys are read from `--key-file` and never printed.

use std::path::{Path, PathBuf};

use alloy::primitives::Address;
use anyhow::{Context, Result, anyhow, bail};
use chaincall_chain::admin::{self, EntryView, GAS_BUDGET, HistoryView};
use chaincall_chain::verified::{HeaderTrust, get_client_verified};
use chaincall_chain::{
    ChainError, ClientId, KeystoreChain, PrivateKeySigner, RpcChain, RpcConfig, TxOutcome,
    receipt_commitment, receipt_hash,
};
use chaincall_identity::{IdentityKey, IdentityName, PhoneNumber, PublicIdentityKey};
use clap::{Args, Subcommand};

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
        let checkpoint = self.checkpoint.as_deref();
        Ok(admin::header_trust(chain, checkpoint, &self.quorum, self.k).await?)
    }
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
fn explain(name: &IdentityName) -> impl FnOnce(ChainError) -> admin::AdminError + '_ {
    move |err| admin::explain(err, name)
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
            let address = admin::deployed_address(&out)?;
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
                .map_err(explain(&name))?;
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
                .map_err(explain(&name))?;
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
                return print(
                    &EntryView {
                        name: &name,
                        contract,
                        entry: &entry,
                        verified: None,
                    },
                    json,
                    |v| v.to_json(),
                );
            }
            let (header_trust, how) = trust.header_trust(&chain).await?;
            let found = get_client_verified(&chain, contract, id, &header_trust, block)
                .await
                .map_err(|e| anyhow!("verification failed, no key is shown: {e}"))?;
            let verified = Some((&found, how.as_str()));
            let view = EntryView {
                name: &name,
                contract,
                entry: &found.entry,
                verified,
            };
            print(&view, json, EntryView::to_json)?;
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
                .map_err(explain(&name))?;
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
                .map_err(explain(&name))?;
            println!("{}", tx_line("revoked", &out));
        }
        KeystoreCommand::History { target, json } => {
            let name = target.identity()?;
            let contract = target.contract()?;
            let chain = target.node.connect().await?;
            let events = chain.history(contract, ClientId::of(&name)).await?;
            let view = HistoryView {
                name: &name,
                events: &events,
            };
            print(&view, json, HistoryView::to_json)?;
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
            .map_err(explain(&IdentityName::Domain(name.clone())))?;
            println!(
                "published {}: approved, key {}",
                name.as_str(),
                key.public().fingerprint()
            );
        }
        KeystoreCommand::Gas { json } => {
            let report = admin::measure_gas().await?;
            let total = report.add_and_approve();
            if json {
                let mut out = serde_json::Map::new();
                for (_, key, gas) in report.rows() {
                    out.insert(key.into(), gas.into());
                }
                out.insert("budget_addClient+approveClient".into(), GAS_BUDGET.into());
                println!("{}", serde_json::Value::Object(out));
            } else {
                println!("gas measured on the embedded chain (revm, Osaka rules):");
                for (what, _, gas) in report.rows() {
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

/// Prints a view as text, or with `json` as one JSON line.
fn print<V: std::fmt::Display>(
    view: &V,
    json: bool,
    to_json: impl Fn(&V) -> serde_json::Value,
) -> Result<()> {
    if json {
        println!("{}", to_json(view));
    } else {
        print!("{view}");
    }
    Ok(())
}
