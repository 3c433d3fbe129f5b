//! `chaincall phone …`: the command-line softphone over [`chaincall_phone`], which holds the
//! flows (onboarding and recovery, registration, the call and listen loops, the control socket,
//! the reports); this module parses arguments, asks at the terminal and prints.
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

use anyhow::{Result, anyhow, bail};
use chaincall_chain::verified::HeaderTrust;
use chaincall_chain::{KeystoreChain, RpcChain};
use chaincall_identity::PhoneNumber;
use chaincall_phone::calls::{
    self, CallUp, ChainView, ListenEvent, ListenPolicy, RegisterNote, Running,
};
use chaincall_phone::control::{self, ControlSocket};
use chaincall_phone::key_file::KeyFileError;
use chaincall_phone::onboarding::{self, Note, Onboarding, OnboardingError, OnboardingUi};
use chaincall_phone::report::{
    self, CallText, KeysDone, KeysReport, describe_caller, for_terminal,
};
use chaincall_phone::{CallerId, Phone, PhoneFileConfig, PhoneSecrets, trust};
use clap::{Args, Subcommand};
use zeroize::Zeroizing;

#[path = "contact.rs"]
mod contact;
#[path = "phone_keys.rs"]
mod phone_keys;

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
source you trust when you can; `phone trust` shows it against what the node says now.

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
    /// Says on stderr what it waits for; gives up after the config's `onboard_timeout_secs`.
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
    Ui(chaincall_softphone::UiArgs),
    /// List the microphones and speakers (ALSA PCMs on Linux) that the config's `input_device`
    /// and `output_device` can name, `default` first, with the rates, channels and sample
    /// formats each offers. Calls use them with `audio = "device"`; one that is missing or fails
    /// is replaced by silence, with a warning (docs/audio-devices.md). Needs no passphrase.
    Devices {
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
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
    /// The trusted block (`trust`) and what the node says for it now; `trust repin` pins the node's
    /// block 0 (or --block N). No passphrase needed; see docs/verified-lookups.md.
    Trust {
        #[arg(value_name = "repin", value_parser = ["repin"])]
        verb: Option<String>,
        /// The block to pin (default 0).
        #[arg(long, value_name = "N", requires = "verb")]
        block: Option<u64>,
        /// Re-pin although the node's history for the pinned block changed.
        #[arg(long, requires = "verb")]
        force: bool,
    },
}

/// The phone's configuration file, checked ([`chaincall_phone::config_file`]).
type Config = PhoneFileConfig;

/// What the CLI adds to the configuration's chain access ([`Config::chain`]): the trusted header,
/// pinned on first use with a note on stderr.
trait ChainAccess {
    /// The trusted header: the config's `trust`, or block 0 pinned now and written into the
    /// config (trust on first use).
    async fn header_trust<C: KeystoreChain>(&mut self, chain: &C) -> Result<Arc<HeaderTrust>>;
}

impl ChainAccess for Config {
    async fn header_trust<C: KeystoreChain>(&mut self, chain: &C) -> Result<Arc<HeaderTrust>> {
        let header = self.trusted_header(chain).await?;
        if let Some(genesis) = header.pinned_now {
            eprintln!(
                "pinned block 0:{genesis} of {} as `trust` in {} (trust on first use)",
                self.rpc_url,
                self.path.display()
            );
        }
        Ok(header.trust)
    }
}

/// The passphrase, from the file or the environment; refuses to go on without one.
fn passphrase(file: Option<&Path>) -> Result<Zeroizing<String>> {
    crate::secret_line("passphrase", file, || match std::env::var(PASSPHRASE_ENV) {
        Ok(p) => Ok(Zeroizing::new(p)),
        Err(_) => bail!(
            "no passphrase: give --passphrase-file FILE or set {PASSPHRASE_ENV} (it encrypts the \
             phone's keys)"
        ),
    })
}

/// Runs `chaincall phone …`.
pub(crate) fn run(args: PhoneArgs) -> Result<()> {
    crate::block_on(run_async(args))?
}

async fn run_async(args: PhoneArgs) -> Result<()> {
    use PhoneCommand as C;
    if let C::Devices { json } = args.command {
        let list = chaincall_phone::device_audio::list_devices()?;
        return crate::print_view(&list, json, |l| serde_json::json!(l));
    }
    let cfg = &mut Config::load(&args.config)?;
    // `hangup` only ends calls, so it needs no passphrase; every other command does.
    if let C::Hangup { call_id } = &args.command {
        println!(
            "{}",
            control::request_hangup(&cfg.control_socket, call_id.as_deref()).await?
        );
        return Ok(());
    }
    if let C::Trust { verb, block, force } = args.command {
        let (report, warning) = trust::run(cfg, verb.map(|_| (block, force))).await?;
        warning.iter().for_each(|w| eprintln!("warning: {w}"));
        println!("{report}");
        return Ok(());
    }
    let pass = &passphrase(args.passphrase_file.as_deref())?;
    // A key rotation an earlier run left half done is settled before the keys are used. The key
    // file is opened (Argon2id) once per command: the keys settling opened serve the command.
    let opened = match args.command {
        C::Init { .. } | C::Rotate | C::Import(_) | C::Hangup { .. } => None,
        _ => phone_keys::settle_pending(cfg, pass).await?,
    };
    // The keys settling opened, or the key file opened now.
    let keys = |cfg: &Config| opened.map_or_else(|| cfg.load_secrets(pass), Ok);
    match args.command {
        C::Init { number } => init(cfg, number.as_deref(), pass).await,
        C::Onboard { receipt } => onboard(keys(cfg)?, cfg, &receipt, pass).await,
        C::Recover { receipt } => recover(keys, cfg, &receipt, pass).await,
        C::Register => register(&mut keys(cfg)?, cfg, pass).await,
        C::Call {
            number,
            seconds,
            json,
        } => call(&keys(cfg)?, cfg, &number, seconds, json).await,
        C::Listen { count, reject } => listen(&keys(cfg)?, cfg, count, reject).await,
        C::Ui(ui) => {
            let (keys, view) = (keys(cfg)?, chain_view(cfg).await?);
            Ok(ui.run(cfg, &keys, view, crate::ssl_keylog_file()).await?)
        }
        C::Rotate => phone_keys::rotate(cfg, pass).await,
        C::Export(a) => phone_keys::export(&keys(cfg)?, cfg, pass, &a),
        C::Import(a) => phone_keys::import(cfg, pass, &a),
        C::Contact { command } => contact::run(cfg, &keys(cfg)?, command).await,
        C::Contacts { json } => {
            let list = contact::ContactCommand::List { json };
            contact::run(cfg, &keys(cfg)?, list).await
        }
        // Answered above, before any passphrase was asked for.
        C::Hangup { .. } | C::Trust { .. } | C::Devices { .. } => Ok(()),
    }
}

async fn init(cfg: &mut Config, number: Option<&str>, pass: &str) -> Result<()> {
    if let Some(n) = number {
        let n = PhoneNumber::parse(n).map_err(|e| anyhow!("--number {n:?} is not E.164: {e}"))?;
        onboarding::adopt_number(cfg, n)?;
    }
    cfg.ensure_no_key_file()?;
    let secrets = &make_key_file(cfg, pass).await?;
    let done = KeysDone::Made;
    println!("{}", KeysReport { done, cfg, secrets });
    Ok(())
}

/// Makes the phone's keys (`init`, and `recover` on a device without keys). The trusted block is
/// pinned first, so a node that cannot be reached leaves no half-made phone.
async fn make_key_file(cfg: &mut Config, pass: &str) -> Result<PhoneSecrets> {
    onboarding::check_passphrase(pass)?;
    let chain = cfg.chain().await?;
    cfg.header_trust(&*chain).await?;
    Ok(onboarding::make_key_file(cfg, pass)?)
}

/// The terminal's side of onboarding and recovery: the SMS code prompt and progress notes.
struct Terminal;

impl OnboardingUi for Terminal {
    /// Asks on stderr and reads one line from stdin; never from the command line, so the code
    /// stays out of shell history and process listings.
    fn sms_code(&mut self, number: &PhoneNumber) -> std::io::Result<Zeroizing<String>> {
        use std::io::Write as _;
        eprint!("code sent to {number} by SMS: ");
        std::io::stderr().flush().ok();
        let mut line = Zeroizing::new(String::new());
        std::io::stdin().read_line(&mut line)?;
        Ok(line)
    }

    fn note(&mut self, note: Note<'_>) {
        eprintln!("{note}");
    }
}

async fn onboard(
    mut secrets: PhoneSecrets,
    cfg: &mut Config,
    receipt_path: &Path,
    pass: &str,
) -> Result<()> {
    let receipt = onboarding::read_receipt(receipt_path)?;
    let (secrets, ui) = (&mut secrets, &mut Terminal);
    let chain = onboarding::connect(cfg, "onboard", ui).await?;
    Onboarding::new(cfg, &*chain, secrets, pass, ui)
        .onboard(receipt)
        .await?;
    println!("{}", onboarding::onboarded(cfg, secrets));
    Ok(())
}

/// `phone recover` (docs/onboarding.md, "Device recovery"): new keys unless a key file is there
/// already (a rerun), then [`Onboarding::recover`].
async fn recover(
    keys: impl FnOnce(&Config) -> Result<PhoneSecrets, KeyFileError>,
    cfg: &mut Config,
    receipt_path: &Path,
    pass: &str,
) -> Result<()> {
    let number = cfg.number().map_err(OnboardingError::NoNumber)?.clone();
    let receipt = onboarding::read_receipt(receipt_path)?;
    let (mut secrets, keys) = if cfg.key_file.exists() {
        (keys(cfg)?, "using the keys".to_owned())
    } else {
        let made = make_key_file(cfg, pass).await?;
        (made, format!("made new keys for {number}"))
    };
    eprintln!(
        "{keys} in {} (identity key {}, wallet {})",
        cfg.key_file.display(),
        secrets.own_fingerprint(cfg.number.as_ref()),
        secrets.wallet.address()
    );
    let (secrets, ui) = (&mut secrets, &mut Terminal);
    let chain = onboarding::connect(cfg, "recover", ui).await?;
    let outcome = Onboarding::new(cfg, &*chain, secrets, pass, ui)
        .recover(receipt)
        .await?;
    if let Some(report) = outcome.report(cfg, secrets) {
        println!("{report}");
    }
    Ok(())
}

/// The chain and the trusted header a phone's lookups go to.
async fn chain_view(cfg: &mut Config) -> Result<ChainView<RpcChain>> {
    let chain = cfg.chain().await?;
    let trust = cfg.header_trust(&*chain).await?;
    if let Some(k) = &cfg.keylog {
        eprintln!(
            "warning: writing SRTP master keys to {}: anyone holding it can decrypt the calls",
            k.display()
        );
    }
    Ok(ChainView { chain, trust })
}

/// Connects the phone to the SIP server; the binary, not the library, honours SSLKEYLOGFILE.
async fn start_phone(
    cfg: &mut Config,
    secrets: &PhoneSecrets,
    audio: Vec<i16>,
    auto_answer: bool,
) -> Result<Running> {
    let view = chain_view(cfg).await?;
    let keylog = crate::ssl_keylog_file();
    let (phone, events, _) = calls::connect(cfg, secrets, view, audio, auto_answer, keylog).await?;
    let (control, warning) = ControlSocket::bind_or_warning(&cfg.control_socket).await;
    warning.iter().for_each(|w| eprintln!("warning: {w}"));
    Ok(Running {
        phone,
        events,
        control,
    })
}

async fn register(secrets: &mut PhoneSecrets, cfg: &mut Config, pass: &str) -> Result<()> {
    let (view, keylog) = (chain_view(cfg).await?, crate::ssl_keylog_file());
    let note = |note: RegisterNote<'_>| println!("{note}");
    let done = calls::check_registration(cfg, secrets, pass, view, keylog, note).await?;
    println!("{}", done.report(cfg));
    Ok(())
}

async fn call(
    secrets: &PhoneSecrets,
    cfg: &mut Config,
    callee: &str,
    seconds: f64,
    as_json: bool,
) -> Result<()> {
    let target = calls::dial_target(cfg, callee, seconds)?;
    let audio = cfg.outgoing_audio((seconds * 1000.0).round() as u32, 1)?;
    let running = start_phone(cfg, secrets, audio, false).await?;
    let up = |up: CallUp<'_>| {
        eprintln!(
            "call {} to {target} up ({}); hangs up in {seconds} s, at Ctrl-C or at \
             `chaincall phone hangup`",
            up.call.call_id,
            up.note("callee")
        )
    };
    let report = running
        .call(cfg, &target, seconds, super::shutdown_signal(), up)
        .await?;
    let recording = cfg.save_recording(&report)?;
    if as_json {
        println!(
            "{}",
            report::call_json(cfg.number_text(), &report, recording.as_deref())
        );
    } else {
        println!(
            "{}",
            CallText {
                report: &report,
                recording: recording.as_deref()
            }
        );
    }
    Ok(())
}

async fn listen(
    secrets: &PhoneSecrets,
    cfg: &mut Config,
    count: Option<u64>,
    reject: bool,
) -> Result<()> {
    let audio = cfg.outgoing_audio(calls::LISTEN_SIGNAL_MS, 2)?;
    let auto_answer = cfg.auto_answer && !reject;
    let running = start_phone(cfg, secrets, audio, auto_answer).await?;
    let (cfg, policy) = (&*cfg, ListenPolicy { count, reject });
    let registered = |expires| {
        eprintln!(
            "{} listening (registered at {} for {expires} s, {}); Ctrl-C stops",
            cfg.number_text(),
            cfg.sip_domain,
            policy.manner(auto_answer)
        )
    };
    let show = |event: ListenEvent<'_>| show_listen(cfg, event);
    Ok(running
        .listen(cfg, policy, super::shutdown_signal(), registered, show)
        .await?)
}

/// Shows what `listen` does: JSON lines on stdout, notes and prompts on stderr.
fn show_listen(cfg: &Config, event: ListenEvent<'_>) {
    if let Some(line) = report::listen_line(&event) {
        println!("{line}");
    }
    match event {
        // Answering or refusing by itself (auto-answer, accept_unverified).
        ListenEvent::Incoming {
            caller,
            awaiting_answer: false,
            ..
        } => eprintln!("incoming call from {}", describe_caller(caller)),
        ListenEvent::Ringing {
            phone,
            call_id,
            caller,
        } => ask(phone.clone(), call_id.to_owned(), caller),
        ListenEvent::Up(up) => eprintln!(
            "call {} from {} up ({})",
            up.call.call_id,
            for_terminal(up.call.caller.as_ref().map_or(&up.call.peer, |c| &c.uri)),
            up.note("caller")
        ),
        ListenEvent::Ended { report, recording } => {
            println!(
                "{}",
                report::call_json(cfg.number_text(), report, recording)
            )
        }
        _ => {}
    }
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
