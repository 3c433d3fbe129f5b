//! `chaincall init DIR`: one consistent set of files for a whole network on a real node — the
//! wallet server's and sipd's configurations, a Kamailio `kamailio.cfg` for operators who keep
//! Kamailio, N phone configurations, the servers' keys and a README listing the commands in order.
//!
//! Every file is written from one template here (`src/init/`), filled from one [`InitOptions`], so
//! the domain, the subscriber database, the contract and the addresses cannot disagree between
//! them. Each rendered configuration is read back with its own crate's parser before anything is
//! written, so `init` never writes a file its server would refuse. The repo's example files
//! (`crates/*/…example.toml`) are [`InitOptions::example`]'s output, checked by a test.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use alloy::primitives::{Address, address};
use anyhow::{Context, Result, bail, ensure};
use chaincall_identity::{DomainName, Overwrite, PhoneNumber, write_secret_file};
use rand_core::{OsRng, RngCore};

const SIPD: &str = include_str!("init/sipd.toml");
const WALLET: &str = include_str!("init/wallet.toml");
const PHONE: &str = include_str!("init/phone.toml");
const KAMAILIO: &str = include_str!("init/kamailio.cfg");
const README: &str = include_str!("init/README.md");

/// Where Debian's `kamailio` package keeps its modules.
pub const KAMAILIO_MODULES: &str = "/usr/lib/x86_64-linux-gnu/kamailio/modules";
/// The address anvil gives the first contract its first dev account deploys.
pub const ANVIL_FIRST_CONTRACT: Address = address!("5FbDB2315678afecb367f032d93F642f64180aa3");
/// The app's package name whose store receipts buy onboarding (wallet.toml and the README).
pub const PACKAGE: &str = "org.chaincall.phone";
/// The store product that is onboarding.
pub const PRODUCT: &str = "onboarding";
/// The subscriber database the wallet server writes and sipd (or Kamailio) reads, in DIR.
pub const SIP_DB: &str = "sip.db";

/// `chaincall init DIR`: where, whether to rewrite, and what the network looks like.
#[derive(Debug, Clone, clap::Args)]
pub struct InitArgs {
    /// The folder to write (created when missing; relative to the working directory).
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
    /// Write into a folder that is not empty: configurations and README are rewritten, key files
    /// already there are kept.
    #[arg(long)]
    pub force: bool,
    /// The network.
    #[command(flatten)]
    pub options: InitOptions,
}

/// What the network looks like: names, node, addresses and how many phones. The command line's
/// defaults are the repo's example files ([`InitOptions::example`]).
#[derive(Debug, Clone, clap::Args)]
pub struct InitOptions {
    /// The SIP domain: sipd's registrar domain, digest realm and keystore identity.
    #[arg(long, default_value = "sip.example.org")]
    pub domain: DomainName,
    /// The wallet server's keystore identity. Default: the domain with `sip.` replaced by
    /// `wallet.` (or `wallet.` put in front).
    #[arg(long, value_name = "DOMAIN")]
    pub wallet_domain: Option<DomainName>,
    /// The Ethereum JSON-RPC node every part talks to.
    #[arg(
        long = "rpc",
        value_name = "URL",
        default_value = "http://127.0.0.1:8545"
    )]
    pub rpc_url: String,
    /// Refuse a node on another chain (written into every configuration).
    #[arg(long, value_name = "ID")]
    pub chain_id: Option<u64>,
    /// The keystore contract. Default: the address anvil gives its first dev account's first
    /// deployment; `keystore deploy` prints the real one (the README says what to do if it differs).
    #[arg(long, value_name = "ADDR", default_value_t = ANVIL_FIRST_CONTRACT)]
    pub contract: Address,
    /// The address sipd listens on and the phones' media binds to.
    #[arg(long, value_name = "IP", default_value = "127.0.0.1")]
    pub host: IpAddr,
    /// sipd's udp and tcp port (Kamailio's tcp port).
    #[arg(long, value_name = "PORT", default_value_t = 5060)]
    pub sip_port: u16,
    /// sipd's tls (TLS-PSK) port, which the phones use.
    #[arg(long, value_name = "PORT", default_value_t = 5061)]
    pub tls_port: u16,
    /// The wallet server's HTTP port (on loopback).
    #[arg(long, value_name = "PORT", default_value_t = 8547)]
    pub wallet_port: u16,
    /// sipd's Prometheus metrics port.
    #[arg(long, value_name = "PORT", default_value_t = 9060)]
    pub metrics_port: u16,
    /// How many phone configurations (`phone1/`, `phone2/`, …).
    #[arg(long, value_name = "N", default_value_t = 2)]
    pub phones: u16,
    /// The first number of the wallet server's range; phone k gets first + k.
    #[arg(long, value_name = "+E164", default_value = "+15550100000")]
    pub first_number: PhoneNumber,
    /// The last number of the range.
    #[arg(long, value_name = "+E164", default_value = "+15550199999")]
    pub last_number: PhoneNumber,
    /// The key file that deploys the keystore and so owns it: the wallet server's wallet. Only
    /// its path is written; the key itself is the node operator's and is never read or copied.
    #[arg(long, value_name = "FILE")]
    pub deployer_key: PathBuf,
    /// A block checked out of band, `NUMBER:HASH`: sipd and the phones prove keys against it.
    /// Without it `init` pins the node's block 0 when the node answers (trust on first use, once
    /// for every part); when it does not, sipd believes its node (`trust = "provider"`) and each
    /// phone pins block 0 at `phone init`.
    #[arg(long, value_name = "NUMBER:HASH")]
    pub checkpoint: Option<String>,
    /// True when `checkpoint` is the node's block 0 pinned by `init` itself, not one given: the
    /// files then say so. Not an option.
    #[arg(skip)]
    pub checkpoint_pinned: bool,
    /// Kamailio's module folder, for `kamailio.cfg`.
    #[arg(long, value_name = "DIR", default_value = KAMAILIO_MODULES)]
    pub kamailio_modules: PathBuf,
}

impl InitArgs {
    /// Writes the network (see [`write()`]). Without `--checkpoint`, first pins the node's block 0
    /// ([`node_genesis`]) when the node answers; when it does not, the output says what that
    /// leaves (sipd believing its node).
    pub fn run(&self) -> Result<Written> {
        let mut options = self.options.clone();
        let mut note = None;
        if options.checkpoint.is_none() {
            match node_genesis(&options.rpc_url, options.chain_id) {
                Ok(pin) => {
                    options.checkpoint = Some(pin);
                    options.checkpoint_pinned = true;
                }
                Err(e) => {
                    note = Some(format!(
                        "not pinned: {e:#}; sipd.toml trusts its node (trust = \"provider\") and \
                         each phone pins block 0 at `phone init`. Rerun with the node up, or with \
                         --checkpoint NUMBER:HASH, to pin one block for every part"
                    ));
                }
            }
        }
        let mut written = write(&options, &self.dir, self.force)?;
        written.note = note.or_else(|| {
            let pin = options
                .checkpoint
                .as_deref()
                .filter(|_| options.checkpoint_pinned)?;
            Some(format!(
                "pinned the node's block 0, {pin}, in sipd.toml and every phone.toml (trust on \
                 first use: compare it with a source you trust)"
            ))
        });
        Ok(written)
    }
}

/// How long [`node_genesis`] waits for the node.
pub const PIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Block 0 of the node at `rpc_url` as a checkpoint, `0:0xHASH`: what `init` pins when no
/// `--checkpoint` is given, so sipd proves keys too and every part trusts the same chain from the
/// start. Refused when the node does not answer within [`PIN_TIMEOUT`], reports another chain
/// than `chain_id`, or is so far past block 0 that lookups could not link back to it
/// ([`chaincall_chain::verified::MAX_HEADER_FETCH`]: such a chain needs a recent `--checkpoint`).
pub fn node_genesis(rpc_url: &str, chain_id: Option<u64>) -> Result<String> {
    use chaincall_chain::{KeystoreChain as _, RpcChain, RpcConfig};
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let config = RpcConfig {
            expected_chain_id: chain_id,
            ..RpcConfig::default()
        };
        let ask = async {
            let chain = RpcChain::connect(rpc_url, config).await?;
            let head = chain.block_number().await?;
            Ok::<_, chaincall_chain::ChainError>((head, chain.block_header(0).await?))
        };
        let (head, genesis) = tokio::time::timeout(PIN_TIMEOUT, ask)
            .await
            .map_err(|_| {
                anyhow::anyhow!("the node at {rpc_url} did not answer within {PIN_TIMEOUT:?}")
            })?
            .with_context(|| format!("cannot read block 0 from {rpc_url}"))?;
        let limit = chaincall_chain::verified::MAX_HEADER_FETCH;
        ensure!(
            head <= limit,
            "the node at {rpc_url} is {head} blocks past block 0, more than lookups link back \
             ({limit}); give a recent block with --checkpoint NUMBER:HASH"
        );
        Ok(format!("0:{}", genesis.hash_slow()))
    })
}

impl InitOptions {
    /// The parameters of the repo's example files: the command line's defaults, with the
    /// deployer key `server-wallet.key`.
    pub fn example() -> Self {
        use clap::Parser as _;
        #[derive(clap::Parser)]
        struct Cmd {
            #[command(flatten)]
            options: InitOptions,
        }
        Cmd::parse_from(["init", "--deployer-key", "server-wallet.key"]).options
    }

    /// The wallet server's keystore identity: `--wallet-domain`, or else from the SIP domain.
    pub fn wallet_domain(&self) -> Result<DomainName> {
        match &self.wallet_domain {
            Some(d) => Ok(d.clone()),
            None => Self::wallet_domain_for(&self.domain),
        }
    }

    /// The wallet server's domain for a SIP domain: `sip.X` gives `wallet.X`, any other `D`
    /// gives `wallet.D`.
    pub fn wallet_domain_for(domain: &DomainName) -> Result<DomainName> {
        let d = domain.as_str();
        let name = match d.strip_prefix("sip.") {
            Some(rest) => format!("wallet.{rest}"),
            None => format!("wallet.{d}"),
        };
        DomainName::parse(&name).with_context(|| format!("wallet domain {name}"))
    }

    /// The phones' numbers: first + 1, first + 2, … (all inside the range).
    pub fn phone_numbers(&self) -> Result<Vec<PhoneNumber>> {
        let digits = |n: &PhoneNumber| -> Result<(u64, usize)> {
            let s = n.as_str().trim_start_matches('+');
            Ok((s.parse::<u64>().context("number")?, s.len()))
        };
        let (first, width) = digits(&self.first_number)?;
        let (last, last_width) = digits(&self.last_number)?;
        ensure!(
            width == last_width && first <= last,
            "the number range {}..{} must run upwards with both ends the same length",
            self.first_number.as_str(),
            self.last_number.as_str()
        );
        (1..=u64::from(self.phones))
            .map(|k| {
                let n = first + k;
                ensure!(
                    n <= last,
                    "{} phones do not fit in the number range",
                    self.phones
                );
                Ok(PhoneNumber::parse(&format!("+{n:0width$}"))?)
            })
            .collect()
    }
}

/// One file `init` writes, relative to DIR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitFile {
    /// Where, relative to DIR.
    pub path: PathBuf,
    /// The text.
    pub text: String,
}

/// The comment above a checkpoint `init` pinned itself; nothing for one the operator gave.
fn pinned_comment(o: &InitOptions) -> &'static str {
    if o.checkpoint_pinned {
        "# Pinned by `chaincall init` from rpc_url's block 0: trust on first use.\n"
    } else {
        ""
    }
}

/// A TOML string literal (quoted and escaped).
fn toml_str(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

/// `template` with every `@NAME@` replaced; a placeholder left over is a bug in this module.
fn fill(template: &str, vars: &[(&str, String)]) -> String {
    let mut out = template.to_owned();
    for (name, value) in vars {
        out = out.replace(&format!("@{name}@"), value);
    }
    out
}

/// Kamailio's configuration: tcp on `listen`, digest auth against the `subscriber` table of the
/// SQLite database `db` (absolute path), registrar for `domain`, modules from `modules`.
pub fn kamailio_cfg(domain: &str, listen: SocketAddr, db: &Path, modules: &Path) -> String {
    fill(
        KAMAILIO,
        &[
            ("DOMAIN", domain.to_owned()),
            ("LISTEN", listen.to_string()),
            ("DB", db.display().to_string()),
            ("MPATH", modules.display().to_string()),
        ],
    )
}

/// Every text file of the network, rendered and checked by each server's own parser; `dir` is
/// where they will be (Kamailio needs the database's absolute path).
pub fn render(o: &InitOptions, dir: &Path) -> Result<Vec<InitFile>> {
    ensure!(
        !o.host.is_unspecified(),
        "--host {} is no address phones can reach: name the one they use (e.g. 127.0.0.1)",
        o.host
    );
    let numbers = o.phone_numbers()?;
    let wallet_domain = o.wallet_domain()?;
    let at = |port| SocketAddr::new(o.host, port);
    let chain_id = match o.chain_id {
        Some(id) => format!("chain_id = {id}"),
        None => "# chain_id = 31337".to_owned(),
    };
    let common = [
        ("DOMAIN", toml_str(o.domain.as_str())),
        ("WALLET_DOMAIN", toml_str(wallet_domain.as_str())),
        ("RPC", toml_str(&o.rpc_url)),
        ("CONTRACT", toml_str(&o.contract.to_string())),
        ("CHAIN_ID", chain_id),
    ];
    let with = |extra: Vec<(&'static str, String)>| {
        let mut v: Vec<(&str, String)> = common.to_vec();
        v.extend(extra);
        v
    };
    let sip = at(o.sip_port);
    // The wallet server speaks plain HTTP, so it listens on loopback only; on another host the
    // phones reach it through a TLS proxy under its domain (the README says so).
    let wallet_listen = if o.host.is_loopback() {
        at(o.wallet_port)
    } else {
        SocketAddr::new(Ipv4Addr::LOCALHOST.into(), o.wallet_port)
    };
    let wallet_url = if o.host.is_loopback() {
        format!("http://{wallet_listen}")
    } else {
        format!("https://{}", wallet_domain.as_str())
    };
    let sipd = fill(
        SIPD,
        &with(vec![
            (
                "LISTEN",
                format!(r#"["udp:{sip}", "tcp:{sip}", "tls:{}"]"#, at(o.tls_port)),
            ),
            ("METRICS", toml_str(&at(o.metrics_port).to_string())),
            ("DATABASE", toml_str(&format!("sqlite://{SIP_DB}"))),
            ("IDENTITY_KEY", toml_str("sipd-identity.key")),
            (
                "TRUST",
                match &o.checkpoint {
                    Some(c) => format!(
                        "{}trust = \"checkpoint\"\ncheckpoint = {}",
                        pinned_comment(o),
                        toml_str(c)
                    ),
                    None => {
                        "# No checkpoint was given to `chaincall init`: rpc_url is your own node.\n\
                             trust = \"provider\""
                            .to_owned()
                    }
                },
            ),
        ]),
    );
    chaincall_sipd::Config::parse_named("sipd.toml", &sipd).context("rendered sipd.toml")?;
    let wallet = fill(
        WALLET,
        &with(vec![
            ("LISTEN", toml_str(&wallet_listen.to_string())),
            (
                "WALLET_KEY",
                toml_str(&o.deployer_key.display().to_string()),
            ),
            (
                "SIP_DATABASE",
                toml_str(&format!("sqlite://{SIP_DB}?mode=rwc")),
            ),
            ("PACKAGE", toml_str(PACKAGE)),
            ("PRODUCT", toml_str(PRODUCT)),
            ("FIRST", toml_str(o.first_number.as_str())),
            ("LAST", toml_str(o.last_number.as_str())),
        ]),
    );
    chaincall_wallet::WalletConfig::parse_named("wallet.toml", &wallet, dir)
        .context("rendered wallet.toml")?;
    let mut files = vec![
        InitFile {
            path: "sipd.toml".into(),
            text: sipd,
        },
        InitFile {
            path: "wallet.toml".into(),
            text: wallet,
        },
        InitFile {
            path: "kamailio.cfg".into(),
            text: kamailio_cfg(
                o.domain.as_str(),
                sip,
                &dir.join(SIP_DB),
                &o.kamailio_modules,
            ),
        },
    ];
    let (mut onboard, mut call) = (String::new(), String::new());
    for (k, number) in numbers.iter().enumerate() {
        let p = format!("phone{}", k + 1);
        let text = fill(
            PHONE,
            &with(vec![
                ("NUMBER", toml_str(number.as_str())),
                (
                    "TRUST",
                    match &o.checkpoint {
                        Some(c) => format!("{}trust = {}", pinned_comment(o), toml_str(c)),
                        None => r#"# trust = "0:0x…""#.to_owned(),
                    },
                ),
                ("WALLET_URL", toml_str(&wallet_url)),
                ("SIP_ADDR", toml_str(&at(o.tls_port).to_string())),
                ("MEDIA_IP", toml_str(&o.host.to_string())),
            ]),
        );
        let path = PathBuf::from(&p).join("phone.toml");
        chaincall_phone::PhoneFileConfig::parse(&path, &text, &dir.join(&p))
            .with_context(|| format!("rendered {}", path.display()))?;
        files.push(InitFile { path, text });
        let _ = write!(
            onboard,
            "\n    chaincall phone --config {p}/phone.toml init\n    \
             chaincall store issue-receipt --store-key store-private.pem --package {PACKAGE} --product {PRODUCT} --out {p}/receipt.json\n    \
             chaincall phone --config {p}/phone.toml onboard --receipt {p}/receipt.json\n    \
             chaincall phone --config {p}/phone.toml register\n"
        );
    }
    if let [caller, callee, ..] = numbers.as_slice() {
        let _ = write!(
            call,
            "phone2 ({}) answers; phone1 ({}) calls it:\n\n    \
             chaincall phone --config phone2/phone.toml listen\n    \
             chaincall phone --config phone1/phone.toml call {} --seconds 5\n",
            callee.as_str(),
            caller.as_str(),
            callee.as_str()
        );
    } else {
        call.push_str("With two phones or more: `phone --config phone2/phone.toml listen`, then `phone --config phone1/phone.toml call NUMBER`.\n");
    }
    let chain_id_flag = o
        .chain_id
        .map(|id| format!(" --chain-id {id}"))
        .unwrap_or_default();
    let readme = fill(
        README,
        &[
            ("DOMAIN", o.domain.as_str().to_owned()),
            ("WALLET_DOMAIN", wallet_domain.as_str().to_owned()),
            ("RPC", o.rpc_url.clone()),
            ("CHAIN_ID_FLAG", chain_id_flag),
            ("CONTRACT", o.contract.to_string()),
            ("WALLET_LISTEN", wallet_listen.to_string()),
            ("WALLET_URL", wallet_url.clone()),
            ("SIP_LISTEN", sip.to_string()),
            ("TLS_LISTEN", at(o.tls_port).to_string()),
            ("METRICS", at(o.metrics_port).to_string()),
            (
                "NUMBERS",
                numbers
                    .iter()
                    .map(|n| n.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            ),
            ("DEPLOYER", o.deployer_key.display().to_string()),
            ("ONBOARD", onboard),
            ("CALL", call),
        ],
    );
    files.push(InitFile {
        path: "README.md".into(),
        text: readme,
    });
    Ok(files)
}

/// What [`write()`] did.
#[derive(Debug)]
pub struct Written {
    /// DIR, absolute.
    pub dir: PathBuf,
    /// Every file written or kept, relative to DIR.
    pub files: Vec<PathBuf>,
    /// What the operator should know about the trust pinned (or not), printed before the README.
    pub note: Option<String>,
}

/// One written path per line, then where the commands are: what `chaincall init` prints.
impl std::fmt::Display for Written {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for file in &self.files {
            writeln!(f, "{}", self.dir.join(file).display())?;
        }
        if let Some(note) = &self.note {
            writeln!(f, "{note}")?;
        }
        write!(
            f,
            "next: the commands in {}",
            self.dir.join("README.md").display()
        )
    }
}

/// Writes the network's files into `dir` (created when missing). A non-empty `dir` is refused
/// unless `force`; with `force` the configurations and README are rewritten and key files already
/// there are kept (a published identity stays valid). Relative paths in `o` (the deployer key)
/// are made absolute against the working directory first, as the files will be read from `dir`.
pub fn write(o: &InitOptions, dir: &Path, force: bool) -> Result<Written> {
    let dir = std::path::absolute(dir).with_context(|| format!("{}", dir.display()))?;
    if let Ok(mut entries) = std::fs::read_dir(&dir)
        && entries.next().is_some()
        && !force
    {
        bail!(
            "{} is not empty: choose a new folder, or pass --force to rewrite its configurations (keys already there are kept)",
            dir.display()
        );
    }
    let mut o = o.clone();
    o.deployer_key = std::path::absolute(&o.deployer_key)
        .with_context(|| format!("{}", o.deployer_key.display()))?;
    let files = render(&o, &dir)?;
    let mut written = Vec::new();
    for f in &files {
        let path = dir.join(&f.path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::write(&path, &f.text)
            .with_context(|| format!("cannot write {}", path.display()))?;
        written.push(f.path.clone());
    }
    for key in ["sipd-identity.key", "wallet-identity.key"] {
        chaincall_sipd::tls::load_or_create_identity_key(&dir.join(key))
            .with_context(|| format!("the identity key {key}"))?;
        written.push(key.into());
    }
    let token = dir.join("admin.token");
    if !token.exists() {
        let mut bytes = zeroize::Zeroizing::new([0u8; 32]);
        OsRng.fill_bytes(bytes.as_mut());
        let text = zeroize::Zeroizing::new(hex::encode(bytes.as_ref()));
        write_secret_file(&token, text.as_bytes(), Overwrite::Refuse)
            .with_context(|| format!("{}", token.display()))?;
    }
    written.push("admin.token".into());
    let (private, public) = (dir.join("store-private.pem"), dir.join("store-public.b64"));
    if !private.exists() {
        chaincall_wallet::dev_store::keygen(&private, &public)
            .context("the development store's key pair")?;
    }
    written.extend(["store-private.pem".into(), "store-public.b64".into()]);
    Ok(Written {
        dir,
        files: written,
        note: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The repo's example files are `init`'s output for [`InitOptions::example`]: a change to a
    /// template or an example file alone fails here. `CHAINCALL_BLESS=1` rewrites the examples.
    #[test]
    fn example_files_are_what_init_writes() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let files = render(&InitOptions::example(), Path::new("/srv/chaincall")).unwrap();
        let text = |p: &str| &files.iter().find(|f| f.path == Path::new(p)).unwrap().text;
        for (generated, example) in [
            ("sipd.toml", "sipd/sipd.example.toml"),
            ("wallet.toml", "wallet/wallet.example.toml"),
            ("phone1/phone.toml", "phone/phone.example.toml"),
        ] {
            let path = root.join(example);
            if std::env::var_os("CHAINCALL_BLESS").is_some() {
                std::fs::write(&path, text(generated)).unwrap();
            }
            let on_disk = std::fs::read_to_string(&path).unwrap();
            assert!(
                on_disk == *text(generated),
                "crates/{example} differs from what `chaincall init` writes as {generated}; \
                 regenerate with CHAINCALL_BLESS=1 cargo test -p chaincall-devnet example_files"
            );
        }
    }

    /// A checkpoint `init` pinned itself is marked as trust on first use in every file that
    /// holds it; one the operator gave is not.
    #[test]
    fn a_checkpoint_pinned_by_init_is_marked_as_trust_on_first_use() {
        let dir = Path::new("/srv/net");
        let mut o = custom();
        let mark = "# Pinned by `chaincall init` from rpc_url's block 0: trust on first use.\n";
        let marked = |o: &InitOptions| {
            let files = render(o, dir).unwrap();
            ["sipd.toml", "phone1/phone.toml"].map(|p| {
                let f = files.iter().find(|f| f.path == Path::new(p)).unwrap();
                f.text.contains(&format!("{mark}trust = "))
            })
        };
        assert_eq!(marked(&o), [false, false]);
        o.checkpoint_pinned = true;
        assert_eq!(marked(&o), [true, true]);
    }

    /// Options unlike the example's in every field a file shares with another.
    fn custom() -> InitOptions {
        let domain = DomainName::parse("sip.operator.test").unwrap();
        InitOptions {
            wallet_domain: None,
            domain,
            rpc_url: "http://10.0.0.7:8600".into(),
            chain_id: Some(4242),
            contract: address!("00000000000000000000000000000000000000aa"),
            host: "10.0.0.5".parse().unwrap(),
            sip_port: 6060,
            tls_port: 6061,
            wallet_port: 9547,
            metrics_port: 9161,
            phones: 3,
            first_number: PhoneNumber::parse("+4930100").unwrap(),
            last_number: PhoneNumber::parse("+4930199").unwrap(),
            deployer_key: "/keys/deployer.key".into(),
            checkpoint: Some(format!("7:0x{}", "ab".repeat(32))),
            checkpoint_pinned: false,
            kamailio_modules: KAMAILIO_MODULES.into(),
        }
    }

    /// The files agree with each other (as each server reads them) and with the options: the
    /// contradictions issue 16 found (domain, subscriber database, wallet port, tls listener).
    #[test]
    fn the_files_agree_with_each_other() {
        let o = custom();
        let dir = Path::new("/srv/net");
        let files = render(&o, dir).unwrap();
        let text = |p: &str| &files.iter().find(|f| f.path == Path::new(p)).unwrap().text;
        let sipd = chaincall_sipd::Config::parse_named("sipd.toml", text("sipd.toml")).unwrap();
        let wallet =
            chaincall_wallet::WalletConfig::parse_named("wallet.toml", text("wallet.toml"), dir)
                .unwrap();
        assert_eq!(sipd.domain.as_deref(), Some("sip.operator.test"));
        // Plain HTTP stays on loopback; the phones on other hosts go through a TLS proxy.
        assert_eq!(wallet.listen, SocketAddr::from(([127, 0, 0, 1], 9547)));
        assert_eq!(wallet.sip.domain, "sip.operator.test");
        assert_eq!(wallet.identity.domain.as_str(), "wallet.operator.test");
        // sipd runs in DIR (README); the wallet resolves against its file's folder.
        let sipd_db = sipd.auth.database.strip_prefix("sqlite://").unwrap();
        assert_eq!(
            wallet.sip.database_url,
            format!("sqlite://{}?mode=rwc", dir.join(sipd_db).display())
        );
        let tls = SocketAddr::from(([10, 0, 0, 5], 6061));
        assert!(sipd.listens().contains(&chaincall_sipd::Listen::tls(tls)));
        let t = sipd.tls_psk.as_ref().unwrap();
        assert_eq!(t.identity.as_str(), "sip.operator.test");
        assert_eq!(
            wallet.chain.wallet_key_file,
            Path::new("/keys/deployer.key")
        );
        for (k, number) in ["+4930101", "+4930102", "+4930103"].iter().enumerate() {
            let path = PathBuf::from(format!("phone{}/phone.toml", k + 1));
            let p = chaincall_phone::PhoneFileConfig::parse(
                &path,
                text(path.to_str().unwrap()),
                &dir.join(path.parent().unwrap()),
            )
            .unwrap();
            assert_eq!(p.number_text(), *number);
            assert_eq!(p.sip_addr, tls.to_string());
            assert_eq!(p.sip_domain, "sip.operator.test");
            assert_eq!(p.sip_identity.to_string(), "sip.operator.test");
            assert_eq!(
                p.wallet_url.as_deref(),
                Some("https://wallet.operator.test")
            );
            assert_eq!(p.wallet_domain.as_deref(), Some("wallet.operator.test"));
            assert_eq!((p.contract, p.chain_id), (o.contract, Some(4242)));
            assert_eq!(p.rpc_url, o.rpc_url);
            assert_eq!(p.trust.map(|t| t.0), Some(7));
        }
        let kamailio = text("kamailio.cfg");
        assert!(
            kamailio.contains("listen=tcp:10.0.0.5:6060\n"),
            "{kamailio}"
        );
        assert!(kamailio.contains("sqlite:///srv/net/sip.db"));
        let readme = text("README.md");
        assert!(readme.contains("--chain-id 4242 --key-file /keys/deployer.key"));
        assert!(readme.contains("call +4930102"));
        for f in &files {
            let left =
                f.text.split('@').skip(1).step_by(2).find(|w| {
                    !w.is_empty() && w.chars().all(|c| c.is_ascii_uppercase() || c == '_')
                });
            assert_eq!(left, None, "{} keeps a placeholder", f.path.display());
        }
    }

    /// More phones than numbers, a range running downwards or a host phones cannot reach is
    /// refused before anything is written.
    #[test]
    fn numbers_must_fit_the_range() {
        let mut o = custom();
        o.phones = 99;
        assert!(o.phone_numbers().unwrap().len() == 99);
        o.phones = 100;
        let e = render(&o, Path::new("/x")).unwrap_err().to_string();
        assert!(e.contains("do not fit"), "{e}");
        o.last_number = PhoneNumber::parse("+4930000").unwrap();
        assert!(o.phone_numbers().is_err());
        let mut o = custom();
        o.host = "0.0.0.0".parse().unwrap();
        let e = render(&o, Path::new("/x")).unwrap_err().to_string();
        assert!(e.contains("--host 0.0.0.0"), "{e}");
    }

    /// DIR relative to the working directory; a non-empty DIR refused without force; the keys
    /// are private and kept by --force; the deployer key is referenced, never copied.
    #[test]
    fn write_refuses_a_used_folder_and_keeps_keys() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let deployer = tmp.path().join("deployer.key");
        let secret = "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";
        write_secret_file(&deployer, secret.as_bytes(), Overwrite::Refuse).unwrap();
        let mut o = InitOptions::example();
        o.deployer_key = deployer.clone();
        // A relative DIR (the demo's bug with --out was a relative path joined twice).
        let here = tempfile::tempdir_in(".").unwrap();
        let rel = &Path::new(here.path().file_name().unwrap()).join("net");
        let dir = std::env::current_dir().unwrap().join(rel);
        let w = write(&o, rel, false).unwrap();
        assert_eq!(w.dir, dir);
        for key in [
            "sipd-identity.key",
            "wallet-identity.key",
            "admin.token",
            "store-private.pem",
        ] {
            let mode = std::fs::metadata(dir.join(key))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "{key} is readable by others");
        }
        let wallet = chaincall_wallet::WalletConfig::load(&dir.join("wallet.toml")).unwrap();
        assert_eq!(wallet.chain.wallet_key_file, deployer);
        for f in &w.files {
            let bytes = std::fs::read(dir.join(f)).unwrap();
            assert!(
                !String::from_utf8_lossy(&bytes).contains(secret),
                "{}",
                f.display()
            );
        }
        let sipd_key = std::fs::read(dir.join("sipd-identity.key")).unwrap();
        let e = write(&o, rel, false).unwrap_err().to_string();
        assert!(e.contains("not empty") && e.contains("--force"), "{e}");
        write(&o, rel, true).unwrap();
        assert_eq!(
            std::fs::read(dir.join("sipd-identity.key")).unwrap(),
            sipd_key
        );
    }
}
