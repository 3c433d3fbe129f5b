//! `chaincall keystore …`: deploy the keystore contract and add, approve, read, rotate, revoke and
//! audit entries, on any Ethereum node over JSON-RPC (`--rpc URL`); `gas` measures every function on
//! the embedded chain.
//!
//! Results go to stdout; every failure is one line on stderr and a non-zero exit (see `main`).
//! Private keys are read from `--key-file` and never printed.

use std::path::PathBuf;

use alloy::primitives::Address;
use anyhow::{Result, anyhow, bail};
use chaincall_chain::admin::{self, EntryChange, EntryRead, EntryView, GAS_BUDGET, HistoryView};
use chaincall_chain::verified::HeaderTrust;
use chaincall_chain::{ClientId, KeystoreChain, RpcChain, RpcConfig, TxOutcome};
use chaincall_identity::{IdentityName, PhoneNumber, PublicIdentityKey};
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
    /// Sends the change `change` builds to the entry, signed by the key file's wallet, and prints
    /// its transaction. Arguments are checked (name, then key, then contract) before the key file
    /// is read and the node is asked.
    async fn change(
        &self,
        wallet: &WalletOpts,
        what: &str,
        change: impl FnOnce() -> Result<EntryChange>,
    ) -> Result<()> {
        let name = self.identity()?;
        let change = change()?;
        let contract = self.contract()?;
        let signer = admin::read_signer(&wallet.key_file)?;
        let chain = self.node.connect().await?;
        let out = admin::change_entry(&chain, contract, &signer, &name, &change).await?;
        println!("{}", tx_line(what, &out));
        Ok(())
    }

    fn contract(&self) -> Result<Address> {
        parse_contract(&self.contract)
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

fn parse_contract(text: &str) -> Result<Address> {
    let bad = || anyhow!("--contract {text:?} is not a 0x-prefixed 20-byte address");
    text.trim().parse().map_err(|_| bad())
}

fn parse_public_key(text: &str) -> Result<PublicIdentityKey> {
    let bytes = hex::decode(text.trim().trim_start_matches("0x"))
        .map_err(|_| anyhow!("malformed key: --public-key is not hex"))?;
    PublicIdentityKey::from_p256_sec1(&bytes).map_err(|e| anyhow!("malformed key: {e}"))
}

fn tx_line(what: &str, out: &TxOutcome) -> String {
    format!(
        "{what}: tx {} in block {}, gas {}",
        out.tx_hash, out.block_number, out.gas_used
    )
}

/// Runs `chaincall keystore …`.
pub(crate) fn run(args: KeystoreArgs) -> Result<()> {
    crate::block_on(run_async(args.command))?
}

async fn run_async(command: KeystoreCommand) -> Result<()> {
    match command {
        KeystoreCommand::Deploy { node, wallet } => {
            let signer = admin::read_signer(&wallet.key_file)?;
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
            let what = "added (pending approval)";
            let receipt = receipt.into_bytes();
            let key = || parse_public_key(&public_key);
            let change = || {
                Ok(EntryChange::Add {
                    key: key()?,
                    receipt,
                })
            };
            target.change(&wallet, what, change).await?;
        }
        KeystoreCommand::Approve {
            target,
            wallet,
            receipt,
        } => {
            let receipt = receipt.into_bytes();
            let change = || Ok(EntryChange::Approve { receipt });
            target.change(&wallet, "approved", change).await?;
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
            let read = if verify {
                let (header, how) = trust.header_trust(&chain).await?;
                EntryRead::proven(&chain, contract, name, (&header, how), block).await?
            } else if block.is_some() || trust.checkpoint.is_some() || !trust.quorum.is_empty() {
                bail!("--block, --checkpoint and --quorum apply to verified lookups: add --verify");
            } else {
                EntryRead::unproven(&chain, contract, name).await?
            };
            crate::print_view(&read.view(), json, EntryView::to_json)?;
        }
        KeystoreCommand::Rotate {
            target,
            wallet,
            public_key,
        } => {
            let change = || {
                Ok(EntryChange::Rotate {
                    key: parse_public_key(&public_key)?,
                })
            };
            target.change(&wallet, "rotated", change).await?;
        }
        KeystoreCommand::Revoke { target, wallet } => {
            let change = || Ok(EntryChange::Revoke);
            target.change(&wallet, "revoked", change).await?;
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
            crate::print_view(&view, json, HistoryView::to_json)?;
        }
        KeystoreCommand::PublishServer {
            node,
            contract,
            domain,
            identity_key_file,
            wallet,
        } => {
            let contract = parse_contract(&contract)?;
            let name = chaincall_identity::DomainName::parse(&domain)
                .map_err(|e| anyhow!("invalid --domain {domain:?}: {e}"))?;
            let signer = admin::read_signer(&wallet.key_file)?;
            let (key, created) =
                chaincall_sipd::tls::load_or_create_identity_key(&identity_key_file)?;
            if created {
                println!("created {}", identity_key_file.display());
            }
            let chain = node.connect().await?;
            chaincall_wallet::service::publish_identity(
                &chain,
                contract,
                &signer,
                &name,
                &key.public(),
            )
            .await
            .map_err(|e| admin::explain(e, &IdentityName::Domain(name.clone())))?;
            println!(
                "published {}: approved, key {}",
                name.as_str(),
                key.public().fingerprint()
            );
        }
        KeystoreCommand::Gas { json } => {
            let report = admin::measure_gas().await?;
            let total = report.add_and_approve();
            crate::print_view(&report, json, admin::GasReport::to_json)?;
            if total > GAS_BUDGET {
                bail!("addClient + approveClient costs {total} gas, over the {GAS_BUDGET} budget");
            }
        }
    }
    Ok(())
}
