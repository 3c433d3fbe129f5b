//! `chaincall`: one binary, one subcommand per part (see README.md and DESIGN.md).
//!
//! Each subcommand lives in its own module under `cmd/`, with its own argument struct and `run`.
//! Logs go to stderr (`RUST_LOG` filters them, default `info`); results go to stdout.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cmd;

/// End-to-end encrypted VoIP whose keys live in an Ethereum smart contract, not a PKI.
#[derive(Debug, Parser)]
#[command(name = "chaincall", version, about, long_about = None, after_help = LOG_HELP)]
struct Cli {
    /// Log lines on stderr as `text` (coloured only on a terminal) or `json` (one object a line).
    #[arg(long, global = true, value_name = "text|json", default_value = "text")]
    log_format: chaincall_config::LogFormat,
    #[command(subcommand)]
    command: Command,
}

const LOG_HELP: &str =
    "Logs go to stderr, results to stdout. RUST_LOG filters the logs (default info), e.g.
RUST_LOG=debug or RUST_LOG=chaincall_sipd=debug,info (tracing-subscriber EnvFilter syntax).";

/// The parts of chaincall.
#[derive(Debug, Subcommand)]
enum Command {
    /// Show the build's parts and versions.
    Version,
    /// Measure chaincall against reference implementations (`bench srtp --json`).
    #[cfg(feature = "bench")]
    #[command(subcommand)]
    Bench(cmd::bench::Bench),
    /// The keystore contract: deploy, add, approve, get, rotate, revoke, history, gas.
    Keystore(cmd::keystore::KeystoreArgs),
    /// Run a whole chaincall network on one machine and place an encrypted call through it.
    Demo(cmd::demo::DemoArgs),
    /// MIKEY (RFC 3830) tools: `mikey inspect <base64>` prints every payload of a message.
    Mikey(cmd::mikey::MikeyArgs),
    /// The SIP server: `sipd serve --config FILE`, `sipd add-user`.
    Sipd(cmd::sipd::SipdArgs),
    /// The wallet-management server: `wallet serve --config FILE`, `wallet admin list|show|…`.
    Wallet(cmd::wallet::WalletArgs),
    /// A development app store: `store keygen`, `store issue-receipt` (Google Play format).
    Store(cmd::store::StoreArgs),
    /// The subscriber's softphone: `phone init`, `onboard`, `register`, `call +E164`, `listen`, `ui`.
    Phone(cmd::phone::PhoneArgs),
    /// Write a consistent network into DIR: configurations, server keys, README of the commands.
    Init(chaincall_devnet::init::InitArgs),
}

/// The file `SSLKEYLOGFILE` names, if any: where TLS secrets are appended for Wireshark. The
/// libraries never read the environment (key logging is off unless asked for); this binary honours
/// the variable, as browsers and curl do, for sipd, the phone and the demo.
pub(crate) fn ssl_keylog_file() -> Option<std::path::PathBuf> {
    std::env::var_os("SSLKEYLOGFILE")
        .filter(|v| !v.is_empty())
        .map(Into::into)
}

/// A secret (a passphrase, a password): the first line of `file` (refused when group or
/// others can read it), or else what `otherwise` reads (the environment, stdin). Refuses an empty one;
/// `what` names the secret in errors. Secrets are never taken on the command line.
pub(crate) fn secret_line(
    what: &str,
    file: Option<&std::path::Path>,
    otherwise: impl FnOnce() -> anyhow::Result<zeroize::Zeroizing<String>>,
) -> anyhow::Result<zeroize::Zeroizing<String>> {
    use anyhow::Context as _;
    let line = match file {
        Some(f) => first_line(
            &chaincall_identity::read_secret_file(f)
                .with_context(|| format!("cannot read the {what} file {}", f.display()))?,
        ),
        None => otherwise()?,
    };
    anyhow::ensure!(!line.is_empty(), "the {what} is empty");
    Ok(line)
}

/// The first line of `text`, without its line break.
pub(crate) fn first_line(text: &str) -> zeroize::Zeroizing<String> {
    zeroize::Zeroizing::new(text.lines().next().unwrap_or("").to_owned())
}

/// Prints a command's result: its text view, or with `json` its JSON view as one line.
pub(crate) fn print_view<V: std::fmt::Display>(
    view: &V,
    json: bool,
    to_json: impl Fn(&V) -> serde_json::Value,
) -> anyhow::Result<()> {
    if json {
        println!("{}", to_json(view));
    } else {
        print!("{view}");
    }
    Ok(())
}

/// Runs a command's future to completion on a multi-thread runtime: the servers serve on every
/// core, and the phone's and the demo's media tasks run beside their signalling.
pub(crate) fn block_on<F: std::future::Future>(future: F) -> anyhow::Result<F::Output> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| anyhow::anyhow!("cannot start the async runtime: {e}"))?;
    Ok(runtime.block_on(future))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    chaincall_config::init_logging(cli.log_format);
    let result = match cli.command {
        Command::Version => cmd::version::run(),
        #[cfg(feature = "bench")]
        Command::Bench(bench) => cmd::bench::run(bench),
        Command::Keystore(args) => cmd::keystore::run(args),
        Command::Demo(args) => cmd::demo::run(args),
        Command::Mikey(args) => cmd::mikey::run(args),
        Command::Sipd(args) => cmd::sipd::run(args),
        Command::Wallet(args) => cmd::wallet::run(args),
        Command::Store(args) => cmd::store::run(args),
        Command::Phone(args) => cmd::phone::run(args),
        Command::Init(args) => args.run().map(|written| println!("{written}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // One clear line on stderr: the error and its causes, outermost first.
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
