//! `chaincall phone …`: the command-line softphone over [`chaincall_phone`].
//!
//! `init` makes the keys, `onboard` runs the paper's Fig. 2 flow against the wallet server,
//! `register` checks the SIP account, `call` places one end-to-end encrypted call, `listen`
//! answers calls and `hangup` ends the calls of a running `call` or `listen`; `rotate`, `export`
//! and `import` manage the phone's own keys (`phone_keys.rs`). Settings come from a
//! TOML file (`crates/phone/phone.example.toml`); the key file's passphrase from
//! `--passphrase-file` or `CHAINCALL_PASSPHRASE`, and it is never logged or echoed. Reports go to
//! stdout (text, or JSON with `--json` / one JSON line per call for `listen`); logs and prompts to
//! stderr.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail, ensure};
use chaincall_chain::verified::HeaderTrust;
use chaincall_chain::{KeystoreChain, RpcChain, RpcConfig};
use chaincall_identity::PhoneNumber;
use chaincall_phone::{
    CallReport, CallerId, KeyLookup, Phone, PhoneError, PhoneEvent, PhoneEvents, PhoneFileConfig,
    PhoneSecrets, Verification,
};
use clap::{Args, Subcommand};
use serde_json::json;
use zeroize::Zeroizing;

use super::phone_control::{self, ControlSocket};

#[path = "contact.rs"]
mod contact;
#[path = "phone_keys.rs"]
mod phone_keys;
#[path = "recover.rs"]
mod recover;

/// Environment variable holding the key file's passphrase (when `--passphrase-file` is absent).
const PASSPHRASE_ENV: &str = "CHAINCALL_PASSPHRASE";

/// The `--help` epilogue: what every command shares.
const PHONE_HELP: &str = "\
Configuration: --config FILE (default phone.toml); every key is explained in
crates/phone/phone.example.toml. Relative paths resolve against the file's folder.

Passphrase: every command needs the key file's passphrase, from --passphrase-file FILE or the
CHAINCALL_PASSPHRASE environment variable, and refuses to run without one. It is never logged.

Trust: key lookups are proven with eth_getProof against the config's `trust` block (NUMBER:HASH).
Without one, `init` pins the node's block 0 and writes it into the config: trust on first use,
so whoever controls the node at that moment decides what the phone trusts. Copy the value from a
source you trust when you can.

Contacts: `contact show NUMBER` proves the contact's key on chain and prints its fingerprint and the
safety number of the pair; read it aloud with the contact (or compare screens): equal numbers mean
neither side's key was swapped (docs/safety-numbers.md); `contact verify NUMBER` then marks the
contact verified in person. Every lookup pins the key it sees in the config's `contacts_file`
(`phone contacts` lists them): a later key must come from a rotation recorded on chain (reported
with its date and block); any other change is refused.

Keys: `rotate` puts a new identity key on chain (rotateKey from the phone's funded wallet); the
new key is stored as a pending rotation before the transaction is sent, and any later command
finishes an interrupted rotation. Contacts then see \"key changed by rotation\" and every safety
number with you changes. `export --out FILE` writes an encrypted backup of the key file under a
separate backup passphrase (--backup-passphrase-file FILE, CHAINCALL_BACKUP_PASSPHRASE, or typed at
the terminal); `import --in FILE` restores it under the phone's passphrase (docs/phone-keys.md).

Hanging up: `call` hangs up after --seconds, at Ctrl-C, when the callee hangs up, or when
`chaincall phone hangup` asks it to from another terminal; `listen` hangs its calls up at Ctrl-C
(which also stops it) or at `phone hangup` (it then goes on listening). `hangup` reaches the
process through the config's `control_socket` and needs no passphrase.
Every command that registers removes its registration when it exits, so callers are told at once
that the phone is offline.";

/// Audio `listen` sends when the config names no `audio_in` (then silence).
const LISTEN_SIGNAL_MS: u32 = 60_000;

/// The subscriber's softphone: keys, onboarding, registration, calls.
///
/// Every command reads `--config` (default `phone.toml`; documented example:
/// crates/phone/phone.example.toml) and needs the key file's passphrase, from `--passphrase-file
/// FILE` or the CHAINCALL_PASSPHRASE environment variable; without one it refuses to run.
///
/// Key lookups are proven with eth_getProof against the config's `trust` block. When `trust` is
/// absent, `init` pins the node's block 0 and writes it into the config: trust on first use (whoever
/// controls the node at that moment decides what the phone trusts; copy the value from a source you
/// trust instead when you can).
#[derive(Debug, Args)]
#[command(after_help = PHONE_HELP)]
pub(crate) struct PhoneArgs {
    /// The phone's TOML configuration.
    #[arg(long, value_name = "FILE", default_value = "phone.toml", global = true)]
    config: PathBuf,
    /// Read the key file's passphrase from FILE (first line). Default: $CHAINCALL_PASSPHRASE.
    #[arg(long, value_name = "FILE", global = true)]
    passphrase_file: Option<PathBuf>,
    #[command(subcommand)]
    command: PhoneCommand,
}

#[derive(Debug, Subcommand)]
enum PhoneCommand {
    /// Make this phone's identity key (P-256) and wallet (secp256k1) and store them encrypted in
    /// the config's `key_file` (mode 0600). Refuses to overwrite an existing key file. Pins the
    /// trusted block (trust on first use) when the config has no `trust`.
    Init {
        /// The phone's number, E.164 (+15551234567). Default: the config's `number`; must match it.
        /// Without either, the phone has no number until `onboard` stores the one the wallet
        /// server assigns.
        #[arg(long, value_name = "+E164")]
        number: Option<String>,
    },
    /// Onboard with a store receipt (the paper's Fig. 2): the wallet server checks the receipt,
    /// decides the number and funds the wallet, the phone submits its key with addClient, the
    /// server approves it (after a proof of possession of the key) and provisions SIP
    /// credentials; the SIP password is then stored in the key file. Safe to rerun.
    ///
    /// The number: with operator-assigned numbers the config's `number` is asked for (without
    /// one the server assigns the next free number, which is then written into the config); when
    /// the server verifies numbers by SMS, it sends a one-time code to `number` and the command
    /// asks for it at a prompt on the terminal (never on the command line).
    Onboard {
        /// The receipt JSON (`{"original_json": …, "signature": …}`, as `chaincall store
        /// issue-receipt --out FILE` writes it, mode 0600). It holds the purchase token: a receipt
        /// that group or others can read is refused.
        #[arg(long, value_name = "FILE")]
        receipt: PathBuf,
    },
    /// Connect to the SIP server (TLS-PSK handshake with its on-chain key, or TCP), REGISTER with
    /// digest auth, and print the granted lifetime. A check: the binding is removed again when the
    /// command exits (`listen` keeps one for as long as it runs). When the SIP server refuses
    /// the stored password (401/403: the operator rotated it), the current one is fetched once
    /// from the wallet server (`wallet_url`, a request signed by the identity key), stored in the
    /// key file, and the REGISTER retried.
    Register,
    /// Call a number: register, look the callee's key up on chain (proven), INVITE with MIKEY,
    /// send audio over SRTP, hang up after --seconds (or at Ctrl-C, or when the callee hangs up),
    /// write the received audio as a WAV file to `record_dir` and print the call report. Exits
    /// non-zero with the reason when the callee is unknown, pending, revoked, offline or busy, or
    /// refuses the call.
    Call {
        /// The callee's number, E.164.
        #[arg(value_name = "+E164")]
        number: String,
        /// Seconds of audio to send; the phone hangs up once they are sent.
        #[arg(long, default_value_t = 5.0, value_name = "N")]
        seconds: f64,
        /// Print the report as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Register and answer incoming calls (the config's `auto_answer`, or a prompt on the
    /// terminal), sending `audio_in` (or 60 s of a speech-like signal). Each call ends when the
    /// caller hangs up; its received audio goes to `record_dir` and its report to stdout as one
    /// JSON line. Ctrl-C hangs up and stops. The registration is refreshed at half its lifetime.
    Listen {
        /// Stop after N calls (answered, refused or rejected). Default: run until Ctrl-C.
        #[arg(long, value_name = "N")]
        count: Option<u64>,
        /// Decline every call (603 Decline) instead of answering.
        #[arg(long)]
        reject: bool,
    },
    /// Hang up the calls of the `call` or `listen` running with this config (from another
    /// terminal), through its control socket. Needs no passphrase. Exits non-zero when no such
    /// process runs or it has no call in progress.
    Hangup {
        /// End only this call (the call id `listen` prints); default: every call.
        #[arg(long, value_name = "ID")]
        call_id: Option<String>,
    },
    /// Rotate the identity key: make a new one, store it in the key file as a pending rotation,
    /// send rotateKey from the phone's wallet and, once mined, delete the old key. Interrupted,
    /// it is finished by the next phone command. Contacts see "key changed by rotation"; safety
    /// numbers change.
    Rotate,
    /// Write an encrypted backup of the key file (identity and wallet keys, SIP password) under a
    /// separate backup passphrase, mode 0600. Never overwrites without --force.
    Export(phone_keys::ExportArgs),
    /// Restore a backup from `phone export` into the config's `key_file`, sealed under the
    /// phone's passphrase. Refuses a wrong backup passphrase, a modified backup, and (without
    /// --force) a key file holding another identity.
    Import(phone_keys::ImportArgs),
    /// Device recovery after the key file is lost: with the number's ORIGINAL receipt (the new
    /// device's "restore purchases") and a fresh proof that the number is yours, the wallet server
    /// revokes the old key on chain and moves the number to this phone's new wallet and key (made
    /// here, as `init` does, when there is no key file), with a new SIP password. With SMS
    /// verification a code is sent to the number and asked for at a prompt on the terminal; with
    /// operator-assigned numbers the operator authorises the recovery first. Safe to rerun.
    Recover {
        /// The number's original receipt JSON (mode 0600, as for `onboard`).
        #[arg(long, value_name = "FILE")]
        receipt: PathBuf,
    },
    /// Contacts: `contact show NUMBER` prints a contact's on-chain identity, fingerprint, the
    /// safety number to compare with theirs (docs/safety-numbers.md) and the stored key history;
    /// `contact list` every stored contact; `contact verify NUMBER` marks one verified in person.
    Contact {
        #[command(subcommand)]
        command: contact::ContactCommand,
    },
    /// Every stored contact: fingerprint, safety number, pinned since, last verified, verified in
    /// person, last key change (the same as `contact list`).
    Contacts {
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
}

/// The phone's configuration file, checked ([`chaincall_phone::config_file`]).
type Config = PhoneFileConfig;

/// What the CLI adds to the configuration: the chain it names and the trusted header, pinned on
/// first use with a note on stderr.
trait ChainAccess {
    /// Connects to the config's chain node.
    async fn chain(&self) -> Result<Arc<RpcChain>>;
    /// The trusted header: the config's `trust`, or block 0 pinned now and written into the
    /// config (trust on first use).
    async fn header_trust<C: KeystoreChain>(&mut self, chain: &C) -> Result<Arc<HeaderTrust>>;
}

impl ChainAccess for Config {
    async fn chain(&self) -> Result<Arc<RpcChain>> {
        let chain = RpcChain::connect(
            &self.rpc_url,
            RpcConfig {
                expected_chain_id: self.chain_id,
                ..RpcConfig::default()
            },
        )
        .await
        .with_context(|| format!("cannot reach the chain node {}", self.rpc_url))?;
        Ok(Arc::new(chain))
    }

    async fn header_trust<C: KeystoreChain>(&mut self, chain: &C) -> Result<Arc<HeaderTrust>> {
        if let Some((number, hash)) = self.trust {
            return Ok(Arc::new(HeaderTrust::checkpoint(number, hash)));
        }
        let genesis = chain
            .block_header(0)
            .await
            .context("cannot fetch block 0 to pin it")?
            .hash_slow();
        self.pin_trust(0, genesis)
            .context("cannot add `trust` to the config")?;
        eprintln!(
            "pinned block 0:{genesis} of {} as `trust` in {} (trust on first use)",
            self.rpc_url,
            self.path.display()
        );
        Ok(Arc::new(HeaderTrust::checkpoint(0, genesis)))
    }
}

/// The passphrase, from the file or the environment; refuses to go on without one.
fn passphrase(file: Option<&Path>) -> Result<Zeroizing<String>> {
    let pass = match file {
        Some(f) => {
            // Refused when group or world readable.
            let text = chaincall_identity::read_secret_file(f)
                .with_context(|| format!("cannot read the passphrase file {}", f.display()))?;
            Zeroizing::new(text.lines().next().unwrap_or("").to_owned())
        }
        None => match std::env::var(PASSPHRASE_ENV) {
            Ok(p) => Zeroizing::new(p),
            Err(_) => bail!(
                "no passphrase: give --passphrase-file FILE or set {PASSPHRASE_ENV} (it encrypts \
                 the phone's keys)"
            ),
        },
    };
    ensure!(!pass.is_empty(), "the passphrase is empty");
    Ok(pass)
}

/// Runs `chaincall phone …`.
pub(crate) fn run(args: PhoneArgs) -> Result<()> {
    // Multi-thread: the phone's media tasks run beside its signalling actor.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(run_async(args))
}

async fn run_async(args: PhoneArgs) -> Result<()> {
    let mut cfg = Config::load(&args.config)?;
    // `hangup` only ends calls, so it needs no passphrase; every other command does.
    let pass = || passphrase(args.passphrase_file.as_deref());
    // A key rotation an earlier run left half done is settled before the keys are used.
    if !matches!(
        args.command,
        PhoneCommand::Init { .. }
            | PhoneCommand::Hangup { .. }
            | PhoneCommand::Rotate
            | PhoneCommand::Import(_)
    ) {
        phone_keys::settle_pending(&mut cfg, &pass()?).await?;
    }
    match args.command {
        PhoneCommand::Init { number } => init(&mut cfg, number.as_deref(), &pass()?).await,
        PhoneCommand::Onboard { receipt } => onboard(&mut cfg, &receipt, &pass()?).await,
        PhoneCommand::Recover { receipt } => recover::run(&mut cfg, &receipt, &pass()?).await,
        PhoneCommand::Register => {
            let pass = pass()?;
            let mut secrets = cfg.load_secrets(&pass)?;
            register(&mut cfg, &mut secrets, &pass).await
        }
        PhoneCommand::Call {
            number,
            seconds,
            json,
        } => {
            let secrets = cfg.load_secrets(&pass()?)?;
            call(&mut cfg, &secrets, &number, seconds, json).await
        }
        PhoneCommand::Listen { count, reject } => {
            let secrets = cfg.load_secrets(&pass()?)?;
            listen(&mut cfg, &secrets, count, reject).await
        }
        PhoneCommand::Hangup { call_id } => {
            let done =
                phone_control::request_hangup(&cfg.control_socket, call_id.as_deref()).await?;
            println!("{done}");
            Ok(())
        }
        PhoneCommand::Rotate => phone_keys::rotate(&mut cfg, &pass()?).await,
        PhoneCommand::Export(a) => phone_keys::export(&cfg, &pass()?, &a),
        PhoneCommand::Import(a) => phone_keys::import(&mut cfg, &pass()?, &a),
        PhoneCommand::Contact { command } => {
            let secrets = cfg.load_secrets(&pass()?)?;
            contact::run(&mut cfg, &secrets, command).await
        }
        PhoneCommand::Contacts { json } => {
            let secrets = cfg.load_secrets(&pass()?)?;
            contact::run(&mut cfg, &secrets, contact::ContactCommand::List { json }).await
        }
    }
}

async fn init(cfg: &mut Config, number: Option<&str>, pass: &str) -> Result<()> {
    if let Some(n) = number {
        let n = PhoneNumber::parse(n).map_err(|e| anyhow!("--number {n:?} is not E.164: {e}"))?;
        ensure!(
            cfg.number.as_ref().is_none_or(|c| *c == n),
            "--number {n} differs from the config's number {} ({})",
            cfg.number_text(),
            cfg.path.display()
        );
        if cfg.number.is_none() {
            cfg.store_number(n)?;
        }
    }
    cfg.ensure_no_key_file()?;
    let secrets = make_key_file(cfg, pass).await?;
    match &cfg.number {
        Some(n) => println!("phone {n}"),
        None => {
            println!("phone without a number yet (the wallet server assigns one at onboarding)")
        }
    }
    println!(
        "  identity key  {} (P-256; goes on chain at onboarding)",
        secrets.own_fingerprint(cfg.number.as_ref())
    );
    println!("  wallet        {}", secrets.wallet.address());
    println!(
        "  key file      {} (encrypted, mode 0600)",
        cfg.key_file.display()
    );
    if let Some((n, h)) = cfg.trust {
        println!("  trusted block {n}:{h}");
    }
    println!("next: chaincall phone onboard --receipt FILE");
    Ok(())
}

/// Makes the phone's identity key and wallet and writes them encrypted to the config's `key_file`
/// (`init`, and `recover` on a device without keys). The trusted block is pinned first, so a node
/// that cannot be reached leaves no half-made phone.
async fn make_key_file(cfg: &mut Config, pass: &str) -> Result<PhoneSecrets> {
    if pass.len() < 8 {
        bail!("the passphrase must be at least 8 characters");
    }
    let chain = cfg.chain().await?;
    cfg.header_trust(&*chain).await?;
    let secrets = PhoneSecrets::generate(cfg.number_text());
    cfg.write_secrets(&secrets, pass, false)?;
    Ok(secrets)
}

/// The receipt JSON at `path`. It holds the purchase token: refused when group or world readable.
fn read_receipt(path: &Path) -> Result<chaincall_wallet::receipt::Receipt> {
    let text = chaincall_identity::read_secret_file(path)
        .with_context(|| format!("cannot read the receipt {}", path.display()))?;
    serde_json::from_str(&text).map_err(|_| {
        anyhow!(
            "{} is not a receipt (expected the JSON `chaincall store issue-receipt` prints)",
            path.display()
        )
    })
}

/// The wallet server the config names: its client, its identity key (on chain under
/// `wallet_domain`), its `/v1/server` answer and its URL. `what` names the command for errors.
async fn wallet_server<C: KeystoreChain>(
    cfg: &Config,
    chain: &C,
    what: &str,
) -> Result<(
    chaincall_wallet::WalletClient,
    chaincall_identity::PublicIdentityKey,
    serde_json::Value,
    String,
)> {
    let wallet_url = cfg
        .wallet_url
        .clone()
        .ok_or_else(|| anyhow!("{}: `wallet_url` is needed to {what}", cfg.path.display()))?;
    let wallet_domain = cfg.wallet_domain.clone().ok_or_else(|| {
        anyhow!(
            "{}: `wallet_domain` is needed to {what}",
            cfg.path.display()
        )
    })?;
    let server_key = chaincall_wallet::server_identity_key(chain, cfg.contract, &wallet_domain)
        .await
        .with_context(|| format!("the wallet server's key ({wallet_domain}) on chain"))?;
    let client = chaincall_wallet::WalletClient::new(wallet_url.clone());
    let info = client
        .server_info()
        .await
        .with_context(|| format!("the wallet server at {wallet_url}"))?;
    Ok((client, server_key, info, wallet_url))
}

/// A refusal because the number is taken says how its owner gets it back: device recovery.
fn taken_hint(e: chaincall_wallet::client::ClientError, number: &str) -> anyhow::Error {
    if e.code() == Some("number_taken") {
        anyhow!(
            "{number} is taken on chain (number_taken); nothing was funded or consumed. If it is \
             your number and you lost the device's key file, run `chaincall phone recover \
             --receipt FILE` with the number's original receipt"
        )
    } else {
        anyhow::Error::new(e)
    }
}

/// Asks the wallet server (`client`, its key, its URL) to send a one-time code to `number` —
/// for onboarding, or for recovering the number (`recover`) — and reads the code the user
/// received at a prompt on the terminal (never from the command line).
async fn sms_code(
    (client, server_key, wallet_url): (
        &chaincall_wallet::WalletClient,
        &chaincall_identity::PublicIdentityKey,
        &str,
    ),
    secrets: &PhoneSecrets,
    number: &PhoneNumber,
    receipt: &chaincall_wallet::receipt::Receipt,
    recover: bool,
) -> Result<Zeroizing<String>> {
    use chaincall_wallet::client::{request_number_code, request_recovery_code};
    let (wallet, identity) = (&secrets.wallet, secrets.identity.public());
    let (phone, receipt) = (number.as_str(), receipt.clone());
    let sent = if recover {
        request_recovery_code(client, server_key, wallet, &identity, phone, receipt).await
    } else {
        request_number_code(client, server_key, wallet, &identity, phone, receipt).await
    };
    sent.map_err(|e| taken_hint(e, number.as_str()))
        .with_context(|| format!("asking {wallet_url} for a code to {number}"))?;
    prompt_line(&format!("code sent to {number} by SMS: "))
}

async fn onboard(cfg: &mut Config, receipt_path: &Path, pass: &str) -> Result<()> {
    let mut secrets = cfg.load_secrets(pass)?;
    let receipt = read_receipt(receipt_path)?;
    let chain = cfg.chain().await?;
    let (client, server_key, info, wallet_url) = wallet_server(cfg, &*chain, "onboard").await?;
    let mut request = chaincall_wallet::NumberRequest::named(cfg.number_text());
    if info["number_verifier"].as_str() == Some("sms_code") {
        let number = cfg.number()?.clone();
        let server = (&client, &server_key, wallet_url.as_str());
        let code = sms_code(server, &secrets, &number, &receipt, false).await?;
        request = request.with_code(&code);
    }
    let status = chaincall_wallet::onboard_phone(
        &client,
        &*chain,
        cfg.contract,
        &server_key,
        &secrets.wallet,
        &secrets.identity,
        &request,
        receipt,
        Duration::from_secs(120),
    )
    .await
    .map_err(|e| taken_hint(e, cfg.number_text()))
    .with_context(|| format!("onboarding {} at {wallet_url}", cfg.number_text()))?;
    ensure!(
        status.state == "provisioned",
        "onboarding ended in state {:?}",
        status.state
    );
    let number = status
        .phone
        .as_deref()
        .and_then(|p| PhoneNumber::parse(p).ok())
        .ok_or_else(|| anyhow!("the wallet server named no number"))?;
    // The SIP password: the onboarding's last answer, sealed to our identity key.
    let password = client
        .sip_password(&secrets.identity, &number)
        .await
        .with_context(|| format!("fetching the SIP password of {number} from {wallet_url}"))?;
    // The key file is sealed to its number (associated data): re-sealed under the assigned one.
    secrets.number = number.as_str().to_owned();
    secrets.sip_password = Some(password);
    secrets
        .save(&cfg.key_file, pass, true)
        .with_context(|| format!("cannot update {}", cfg.key_file.display()))?;
    if cfg.number.as_ref() != Some(&number) {
        cfg.store_number(number.clone())?;
    }
    println!(
        "onboarded {number}: key approved on chain (wallet {}), SIP account provisioned at {}; \
         password stored in {}, number in {}",
        secrets.wallet.address(),
        cfg.sip_domain,
        cfg.key_file.display(),
        cfg.path.display()
    );
    Ok(())
}

/// Asks on the terminal (stderr) and reads one line from stdin; never from the command line, so
/// the answer stays out of shell history and process listings.
fn prompt_line(prompt: &str) -> Result<Zeroizing<String>> {
    use std::io::Write as _;
    eprint!("{prompt}");
    std::io::stderr().flush().ok();
    let mut line = Zeroizing::new(String::new());
    std::io::stdin()
        .read_line(&mut line)
        .context("reading the code from stdin")?;
    let code = Zeroizing::new(line.trim().to_owned());
    ensure!(!code.is_empty(), "no code entered");
    Ok(code)
}

/// Connects the phone to the SIP server (running the handshake for TLS-PSK).
async fn start_phone(
    cfg: &mut Config,
    secrets: &PhoneSecrets,
    audio: Vec<i16>,
    auto_answer: bool,
) -> Result<(Phone, PhoneEvents, Duration)> {
    let sip_password = secrets.sip_password.clone().ok_or_else(|| {
        anyhow!(
            "{} has no SIP password yet: run `chaincall phone onboard --receipt FILE` first",
            cfg.number_text()
        )
    })?;
    let chain = cfg.chain().await?;
    let trust = cfg.header_trust(&*chain).await?;
    let addr = cfg.resolve_sip_addr().await?;
    if let Some(k) = &cfg.keylog {
        eprintln!(
            "warning: writing SRTP master keys to {}: anyone holding it can decrypt the calls",
            k.display()
        );
    }
    let identity = Arc::new(secrets.identity.clone());
    let phone_cfg = chaincall_phone::PhoneConfig {
        // The binary, not the library, honours SSLKEYLOGFILE (TLS secrets for Wireshark).
        tls_keylog: crate::ssl_keylog_file(),
        ..cfg.phone_config(addr, identity, sip_password, Arc::new(audio), auto_answer)?
    };
    let lookup =
        KeyLookup::new(chain, cfg.contract, Some(trust)).with_contacts(contact::store(cfg));
    Phone::connect(phone_cfg, lookup).await.with_context(|| {
        format!(
            "cannot connect to the SIP server {} ({} {})",
            cfg.sip_addr,
            cfg.transport.name(),
            cfg.sip_identity.as_str()
        )
    })
}

async fn register_at(cfg: &Config, phone: &Phone) -> Result<u32> {
    phone
        .register(cfg.register_expires)
        .await
        .with_context(|| format!("REGISTER of {} at {}", cfg.number_text(), cfg.sip_domain))
}

/// One connection and REGISTER; the connection's set-up time and the binding's lifetime.
async fn register_once(cfg: &mut Config, secrets: &PhoneSecrets) -> Result<(Duration, u32)> {
    let (phone, _events, connect) = start_phone(cfg, secrets, Vec::new(), false).await?;
    let result = register_at(cfg, &phone).await;
    if result.is_ok() {
        phone.unregister_and_shutdown().await;
    } else {
        phone.shutdown().await;
    }
    Ok((connect, result?))
}

/// True when the registrar refused our credentials (401/403/407 after answering its challenge).
fn credentials_refused(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        matches!(
            c.downcast_ref::<PhoneError>(),
            Some(PhoneError::AuthFailed(_))
        )
    })
}

/// Fetches the current SIP password from the wallet server (`POST /v1/credentials`, signed by
/// our identity key: the operator may have rotated it) and stores it in the key file.
async fn refresh_sip_password(cfg: &Config, secrets: &mut PhoneSecrets, pass: &str) -> Result<()> {
    let url = cfg.wallet_url.clone().ok_or_else(|| {
        anyhow!(
            "{}: `wallet_url` is needed to fetch new SIP credentials",
            cfg.path.display()
        )
    })?;
    let number = cfg.number()?;
    let password = chaincall_wallet::WalletClient::new(url.clone())
        .sip_password(&secrets.identity, number)
        .await
        .with_context(|| format!("fetching the SIP password of {number} from {url}"))?;
    secrets.sip_password = Some(password);
    secrets
        .save(&cfg.key_file, pass, true)
        .with_context(|| format!("cannot update {}", cfg.key_file.display()))
}

async fn register(cfg: &mut Config, secrets: &mut PhoneSecrets, pass: &str) -> Result<()> {
    let (connect, expires) = match register_once(cfg, secrets).await {
        // Once: a password fetched just now that is refused too is not a rotation.
        Err(e) if credentials_refused(&e) && cfg.wallet_url.is_some() => {
            println!(
                "the SIP server refused our credentials; fetching the current ones from the wallet server"
            );
            refresh_sip_password(cfg, secrets, pass).await?;
            println!("new SIP password stored in {}", cfg.key_file.display());
            register_once(cfg, secrets).await?
        }
        other => other?,
    };
    println!(
        "registered {} at {} via {} ({}, connected in {:.1} ms): expires in {expires} s",
        cfg.number_text(),
        cfg.sip_domain,
        cfg.sip_addr,
        cfg.transport.name(),
        connect.as_secs_f64() * 1e3
    );
    Ok(())
}

async fn call(
    cfg: &mut Config,
    secrets: &PhoneSecrets,
    callee: &str,
    seconds: f64,
    as_json: bool,
) -> Result<()> {
    ensure!(
        seconds.is_finite() && seconds > 0.0 && seconds <= 3600.0,
        "--seconds must be more than 0 and at most 3600"
    );
    let target = PhoneNumber::parse(callee)
        .map_err(|e| anyhow!("{callee:?} is not an E.164 number: {e}"))?;
    ensure!(
        Some(&target) != cfg.number.as_ref(),
        "{target} is this phone's own number"
    );
    let audio = cfg.outgoing_audio((seconds * 1000.0).round() as u32, 1)?;
    let (phone, mut events, _) = start_phone(cfg, secrets, audio, false).await?;
    let mut control = phone_control::bind_or_warn(&cfg.control_socket).await;
    let result = call_inner(cfg, &phone, &mut events, &mut control, &target, seconds).await;
    drop(control);
    phone.unregister_and_shutdown().await;
    let report = result?;
    let recording = cfg.save_recording(&report)?;
    if as_json {
        println!("{}", report_json(cfg, &report, &recording));
    } else {
        print_report(&report, &recording);
    }
    Ok(())
}

async fn call_inner(
    cfg: &Config,
    phone: &Phone,
    events: &mut PhoneEvents,
    control: &mut Option<ControlSocket>,
    target: &PhoneNumber,
    seconds: f64,
) -> Result<CallReport> {
    register_at(cfg, phone).await?;
    let call_id = phone
        .call(target)
        .await
        .with_context(|| format!("cannot call {target}"))?;
    // Up, refused, or no answer.
    let answer_by = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        tokio::select! {
            ev = events.recv() => match ev {
                None => bail!("call to {target}: the signalling connection closed"),
                Some(PhoneEvent::Refused { reason, .. }) => bail!("call to {target}: {reason}"),
                Some(PhoneEvent::CallUp { mode, verified_peer, safety_number, verified_in_person, .. }) => {
                    eprintln!(
                        "call {call_id} to {target} up ({}, {}{}); hangs up in {seconds} s, at \
                         Ctrl-C or at `chaincall phone hangup`",
                        mode.name(),
                        verified_peer.map_or("encrypted, key not verified on chain".to_owned(),
                            |p| format!("callee verified on chain as {}", p.as_str())),
                        contact::up_note(safety_number.as_ref(), verified_in_person)
                    );
                    break;
                }
                Some(PhoneEvent::CallEnded(r)) => return Ok(*r),
                Some(_) => {}
            },
            _ = tokio::time::sleep_until(answer_by) => {
                let _ = phone.hangup(&call_id).await;
                bail!("call to {target}: no answer within 60 s");
            }
            _ = tokio::signal::ctrl_c() => {
                let _ = phone.hangup(&call_id).await;
                bail!("call to {target}: cancelled");
            }
            request = phone_control::next_request(control) => {
                if let Some(other) = request.call_id.clone().filter(|id| *id != call_id) {
                    request.answer(Err(format!(
                        "no call {other} in progress (this one is {call_id})"
                    )));
                    continue;
                }
                let _ = phone.hangup(&call_id).await;
                request.answer(Ok(format!(
                    "cancelled the call to {target} before it was answered"
                )));
                bail!("call to {target}: cancelled by `chaincall phone hangup`");
            }
        }
    }
    // The audio is paced at 20 ms a packet; give the last ones a moment to arrive.
    let hang_up_at =
        tokio::time::Instant::now() + Duration::from_secs_f64(seconds) + Duration::from_millis(300);
    // Once we hang up, the BYE's answer ends the call; this bounds the wait for it.
    let mut report_by = None;
    loop {
        tokio::select! {
            ev = events.recv() => match ev {
                None => bail!("call to {target}: the signalling connection closed"),
                Some(PhoneEvent::CallEnded(r)) => return Ok(*r),
                Some(_) => {}
            },
            _ = tokio::time::sleep_until(hang_up_at), if report_by.is_none() => {
                phone.hangup(&call_id).await?;
                report_by = Some(tokio::time::Instant::now() + Duration::from_secs(10));
            }
            _ = tokio::signal::ctrl_c(), if report_by.is_none() => {
                phone.hangup(&call_id).await?;
                report_by = Some(tokio::time::Instant::now() + Duration::from_secs(10));
            }
            request = phone_control::next_request(control) => {
                if let Some(other) = request.call_id.clone().filter(|id| *id != call_id) {
                    request.answer(Err(format!(
                        "no call {other} in progress (this one is {call_id})"
                    )));
                } else if report_by.is_some() {
                    request.answer(Ok(format!("the call to {target} is already ending")));
                } else {
                    phone.hangup(&call_id).await?;
                    report_by = Some(tokio::time::Instant::now() + Duration::from_secs(10));
                    request.answer(Ok(format!("hung up the call to {target}")));
                }
            }
            _ = sleep_until_some(report_by) => {
                bail!("call to {target}: no call report 10 s after hanging up");
            }
        }
    }
}

/// Sleeps until `at`; never wakes for `None`.
async fn sleep_until_some(at: Option<tokio::time::Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

async fn listen(
    cfg: &mut Config,
    secrets: &PhoneSecrets,
    count: Option<u64>,
    reject: bool,
) -> Result<()> {
    let audio = cfg.outgoing_audio(LISTEN_SIGNAL_MS, 2)?;
    let auto_answer = cfg.auto_answer && !reject;
    let (phone, mut events, _) = start_phone(cfg, secrets, audio, auto_answer).await?;
    let mut control = phone_control::bind_or_warn(&cfg.control_socket).await;
    let result = listen_inner(
        cfg,
        &phone,
        &mut events,
        &mut control,
        count,
        reject,
        auto_answer,
    )
    .await;
    drop(control);
    phone.unregister_and_shutdown().await;
    result
}

async fn listen_inner(
    cfg: &Config,
    phone: &Phone,
    events: &mut PhoneEvents,
    control: &mut Option<ControlSocket>,
    count: Option<u64>,
    reject: bool,
    auto_answer: bool,
) -> Result<()> {
    // The phone refreshes the registration halfway through its lifetime by itself.
    let expires = register_at(cfg, phone).await?;
    eprintln!(
        "{} listening (registered at {} for {expires} s, {}); Ctrl-C stops",
        cfg.number_text(),
        cfg.sip_domain,
        if reject {
            "declining every call"
        } else if auto_answer {
            "answering automatically"
        } else {
            "asking before answering"
        }
    );
    let mut handled = 0u64;
    let mut active: Vec<String> = Vec::new();
    // Who each ringing or refused call is from, for the JSON line that ends it.
    let mut callers: std::collections::HashMap<String, serde_json::Value> = Default::default();
    let mut stopping = false;
    let mut stop_by = None;
    while count.is_none_or(|n| handled < n) {
        tokio::select! {
            ev = events.recv() => match ev {
                None => bail!("the signalling connection to {} closed", cfg.sip_addr),
                Some(PhoneEvent::Incoming { call_id, caller, awaiting_answer }) => {
                        let shown = caller_json(&caller);
                        println!("{}", json!({"call_id": call_id, "incoming": true, "caller": shown, "awaiting_answer": awaiting_answer}));
                    if !awaiting_answer {
                        // Answering or refusing by itself (auto-answer, accept_unverified).
                        eprintln!("incoming call from {}", describe_caller(&caller));
                        callers.insert(call_id, shown);
                    } else if reject {
                        phone.answer(&call_id, false).await?;
                        // `peer` as in call reports: the claimed number (the whole From is in `caller`).
                        let peer = caller.claimed.as_ref().map_or(caller.uri.as_str(), |c| c.as_str());
                        println!("{}", json!({"call_id": call_id, "peer": peer, "caller": shown, "rejected": true}));
                        handled += 1;
                    } else {
                        ask(phone.clone(), call_id, &caller);
                    }
                }
                Some(PhoneEvent::CallUp { call_id, peer, caller, mode, verified_peer, safety_number, verified_in_person }) => {
                    callers.remove(&call_id);
                    eprintln!(
                        "call {call_id} from {} up ({}, {}{})",
                        for_terminal(caller.as_ref().map_or(&peer, |c| &c.uri)),
                        mode.name(),
                        verified_peer.map_or("encrypted, key not verified on chain".to_owned(),
                            |p| format!("caller verified on chain as {}", p.as_str())),
                        contact::up_note(safety_number.as_ref(), verified_in_person)
                    );
                    active.push(call_id);
                }
                Some(PhoneEvent::CallEnded(r)) => {
                    active.retain(|c| *c != r.call_id);
                    let recording = cfg.save_recording(&r)?;
                    println!("{}", report_json(cfg, &r, &recording));
                    handled += 1;
                    if stopping && active.is_empty() {
                        break;
                    }
                }
                Some(PhoneEvent::Refused { call_id, reason }) => {
                    let caller = callers.remove(&call_id);
                    println!("{}", json!({"call_id": call_id, "refused": reason, "caller": caller}));
                    handled += 1;
                }
                Some(PhoneEvent::Registered { .. }) => {}
            },
            _ = tokio::signal::ctrl_c(), if !stopping => {
                if active.is_empty() {
                    break;
                }
                for c in &active {
                    phone.hangup(c).await?;
                }
                stopping = true;
                stop_by = Some(tokio::time::Instant::now() + Duration::from_secs(10));
            }
            request = phone_control::next_request(control) => {
                let ending: Vec<String> = match request.call_id.clone() {
                    Some(id) if active.contains(&id) => vec![id],
                    Some(id) => {
                        request.answer(Err(format!("no call {id} in progress")));
                        continue;
                    }
                    None => active.clone(),
                };
                if ending.is_empty() {
                    request.answer(Err("no call in progress".to_owned()));
                    continue;
                }
                for c in &ending {
                    phone.hangup(c).await?;
                }
                request.answer(Ok(format!(
                    "hung up {} call(s): {}",
                    ending.len(),
                    ending.join(", ")
                )));
            }
            _ = sleep_until_some(stop_by) => bail!("calls did not end 10 s after hanging up"),
        }
    }
    Ok(())
}

/// Asks on the terminal whether to answer a call (no answer or end of input declines).
fn ask(phone: Phone, call_id: String, caller: &CallerId) {
    let prompt = format!(
        "incoming call from {}. answer? [y/N] ",
        describe_caller(caller)
    );
    tokio::spawn(async move {
        eprint!("{prompt}");
        let yes = tokio::task::spawn_blocking(|| {
            let mut line = String::new();
            std::io::stdin().read_line(&mut line).is_ok()
                && matches!(line.trim(), "y" | "Y" | "yes")
        })
        .await
        .unwrap_or(false);
        let _ = phone.answer(&call_id, yes).await;
    });
}

/// The caller as the prompt shows it: the whole From (display name and URI, escaped for the
/// terminal) and what the call proves, e.g. `<sip:+15550100001@evil.example>: NOT VERIFIED —
/// likely spoof (…)`.
fn describe_caller(caller: &CallerId) -> String {
    let who = match &caller.display_name {
        Some(name) => format!("\"{}\" <{}>", for_terminal(name), for_terminal(&caller.uri)),
        None => format!("<{}>", for_terminal(&caller.uri)),
    };
    let state = match &caller.verification {
        Verification::Verified {
            identity,
            fingerprint,
            ..
        } => format!(
            "verified on chain as {} (key fingerprint {fingerprint})",
            identity.as_str()
        ),
        Verification::Unverified { reason } => {
            format!("NOT VERIFIED ({})", for_terminal(reason))
        }
        Verification::LikelySpoof { reason } => {
            format!("NOT VERIFIED — likely spoof ({})", for_terminal(reason))
        }
    };
    format!("{who}: {state}")
}

/// The caller in `--json` lines: `{uri, display_name, claimed, verification, reason}`.
fn caller_json(caller: &CallerId) -> serde_json::Value {
    json!({
        "uri": caller.uri,
        "display_name": caller.display_name,
        "claimed": caller.claimed.as_ref().map(|c| c.as_str().to_owned()),
        "verification": caller.verification.name(),
        "reason": caller.verification.reason(),
    })
}

/// A peer-supplied name made safe to print on a terminal: control characters (ESC, CR, ...)
/// are shown escaped, so a caller cannot move the cursor or repaint the line to fake who calls.
fn for_terminal(peer: &str) -> String {
    let mut shown = String::with_capacity(peer.len());
    for c in peer.chars() {
        if c.is_control() {
            shown.extend(c.escape_default());
        } else {
            shown.push(c);
        }
    }
    shown
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

fn protection(r: &CallReport) -> String {
    match &r.verified_peer {
        Some(p) => format!(
            "end-to-end encrypted, keys bound to {}'s on-chain key",
            p.as_str()
        ),
        None => "encrypted, key not verified on chain".to_owned(),
    }
}

fn report_json(cfg: &Config, r: &CallReport, recording: &Path) -> serde_json::Value {
    let mut report = json!({
        "call_id": r.call_id,
        "number": cfg.number_text(),
        "peer": r.peer,
        "caller": r.caller.as_ref().map(caller_json),
        "direction": if r.outgoing { "outgoing" } else { "incoming" },
        "key_mode": r.mode.name(),
        "codec": r.codec.rtpmap_name(),
        "verified_peer": r.verified_peer.as_ref().map(|p| p.as_str().to_owned()),
        "protection": protection(r),
        "key_retrieval_ms": ms(r.timings.key_retrieval),
        "key_retrieval_verified": r.lookup_verified,
        "call_setup_ms": ms(r.timings.call_setup),
        "mikey_ms": ms(r.timings.mikey),
        "invite_to_200_ms": ms(r.timings.signalling),
        "srtp_packets_sent": r.stats.rtp_sent,
        "srtp_packets_received": r.stats.rtp_received,
        "srtp_packets_rejected": r.stats.rtp_rejected,
        "srtcp_packets_sent": r.stats.rtcp_sent,
        "srtcp_packets_received": r.stats.rtcp_received,
        "recording": recording.display().to_string(),
        "recorded_samples": r.recorded.len(),
        "recorded_seconds": r.recorded.len() as f64 / 8000.0,
    });
    contact::add_call_trust(&mut report, r);
    report
}

fn print_report(r: &CallReport, recording: &Path) {
    println!(
        "call {} {} ({}, {}, {})",
        if r.outgoing { "to" } else { "from" },
        r.peer,
        r.mode.name(),
        r.codec.rtpmap_name(),
        protection(r)
    );
    println!(
        "  key retrieval  {:>9.3} ms ({})",
        ms(r.timings.key_retrieval),
        if r.lookup_verified {
            "proven against the trusted block"
        } else {
            "not proven"
        }
    );
    println!(
        "  call set-up    {:>9.3} ms (INVITE → both SRTP contexts keyed; MIKEY {:.3} ms, INVITE → 200 OK {:.3} ms)",
        ms(r.timings.call_setup),
        ms(r.timings.mikey),
        ms(r.timings.signalling)
    );
    println!(
        "  SRTP packets   sent {}, received {}, rejected {}; SRTCP sent {}, received {}",
        r.stats.rtp_sent,
        r.stats.rtp_received,
        r.stats.rtp_rejected,
        r.stats.rtcp_sent,
        r.stats.rtcp_received
    );
    println!(
        "  recording      {} ({:.2} s received)",
        recording.display(),
        r.recorded.len() as f64 / 8000.0
    );
    contact::print_call_trust(r);
}

#[cfg(test)]
mod tests {
    use super::{caller_json, describe_caller, for_terminal};
    use chaincall_phone::{CallerId, Verification};

    #[test]
    fn the_prompt_shows_the_whole_from_and_what_the_call_proves() {
        let alice = "+15550100001".parse().unwrap();
        let spoof = CallerId {
            uri: "sip:+15550100001@evil.example".into(),
            display_name: Some("Bank\u{1b}[2K".into()),
            claimed: Some(alice),
            verification: Verification::LikelySpoof {
                reason: "+15550100001 has a key on chain but this call proves nothing".into(),
            },
        };
        assert_eq!(
            describe_caller(&spoof),
            "\"Bank\\u{1b}[2K\" <sip:+15550100001@evil.example>: NOT VERIFIED — likely spoof \
             (+15550100001 has a key on chain but this call proves nothing)"
        );
        let json = caller_json(&spoof);
        assert_eq!(json["verification"], "likely_spoof");
        assert_eq!(json["claimed"], "+15550100001");
        assert_eq!(json["uri"], "sip:+15550100001@evil.example");
        let verified = CallerId {
            display_name: None,
            uri: "sip:+15550100001@sip.example.org".into(),
            verification: Verification::Verified {
                identity: "+15550100001".parse().unwrap(),
                lookup_verified: true,
                fingerprint: "0011223344556677".into(),
            },
            ..spoof
        };
        assert_eq!(
            describe_caller(&verified),
            "<sip:+15550100001@sip.example.org>: verified on chain as +15550100001 (key \
             fingerprint 0011223344556677)"
        );
        assert_eq!(caller_json(&verified)["reason"], serde_json::Value::Null);
    }

    #[test]
    fn a_callers_terminal_escapes_are_shown_not_obeyed() {
        // ESC [2K erases the line and CR returns to its start: a caller named like this would
        // repaint "incoming call from" with a name of its choosing.
        let hostile = "+15550100002\u{1b}[2K\rincoming call from +15550100001";
        let shown = for_terminal(hostile);
        assert!(!shown.chars().any(char::is_control), "{shown:?}");
        assert_eq!(
            shown,
            "+15550100002\\u{1b}[2K\\rincoming call from +15550100001"
        );
        assert_eq!(for_terminal("tel:+15550100001"), "tel:+15550100001");
    }
}
