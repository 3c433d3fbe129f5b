//! `chaincall phone rotate`, `phone export` and `phone import`: the phone's own keys
//! (docs/phone-keys.md).
//!
//! **Rotation** (crash safe: a pending key in the key file first) is
//! [`chaincall_phone::rotation`]; every later phone command first settles a rotation an earlier
//! run left pending ([`settle_pending`]).
//!
//! **Backups** are the key file's secrets sealed under a separate backup passphrase (same sealing,
//! another file kind: `chaincall_phone::store`), read from `--backup-passphrase-file`,
//! `CHAINCALL_BACKUP_PASSPHRASE` or the terminal, never from the command line.
//!
//! A child module of `phone`, so it reuses the phone's configuration, chain connection, header
//! trust and key file handling as they are.

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use chaincall_identity::IdentityName;
use chaincall_phone::report::{KeysDone, KeysReport};
use chaincall_phone::rotation::{Rotated, Rotator, Settled};
use clap::Args;
use zeroize::Zeroizing;

use super::{ChainAccess as _, Config, HeaderTrust, PhoneSecrets, RpcChain, passphrase};

/// Environment variable holding the backup passphrase (when `--backup-passphrase-file` is absent).
const BACKUP_PASSPHRASE_ENV: &str = "CHAINCALL_BACKUP_PASSPHRASE";

/// `chaincall phone export`.
#[derive(Debug, Args)]
pub(super) struct ExportArgs {
    /// Write the encrypted backup to FILE (mode 0600).
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// Replace FILE if it exists.
    #[arg(long)]
    force: bool,
    #[command(flatten)]
    backup: BackupPassphrase,
}

/// `chaincall phone import`.
#[derive(Debug, Args)]
pub(super) struct ImportArgs {
    /// The backup `phone export` wrote.
    #[arg(long = "in", value_name = "FILE")]
    input: PathBuf,
    /// Replace a key file that holds another identity (or cannot be opened with the passphrase).
    #[arg(long)]
    force: bool,
    #[command(flatten)]
    backup: BackupPassphrase,
}

/// Where the backup passphrase comes from.
#[derive(Debug, Args)]
struct BackupPassphrase {
    /// Read the backup passphrase from FILE (first line). Default: $CHAINCALL_BACKUP_PASSPHRASE,
    /// else asked on the terminal.
    #[arg(long, value_name = "FILE")]
    backup_passphrase_file: Option<PathBuf>,
}

impl BackupPassphrase {
    /// The backup passphrase: file, environment, or typed at a terminal without echo (twice when
    /// `confirm`, so a typo cannot lock a backup away). Never a command-line value.
    fn read(&self, confirm: bool) -> Result<Zeroizing<String>> {
        if let Some(file) = &self.backup_passphrase_file {
            return passphrase(Some(file));
        }
        if let Ok(p) = std::env::var(BACKUP_PASSPHRASE_ENV) {
            anyhow::ensure!(!p.is_empty(), "{BACKUP_PASSPHRASE_ENV} is empty");
            return Ok(Zeroizing::new(p));
        }
        if !std::io::stdin().is_terminal() {
            bail!(
                "no backup passphrase: give --backup-passphrase-file FILE, set \
                 {BACKUP_PASSPHRASE_ENV}, or run at a terminal to type it"
            );
        }
        let first = read_hidden("backup passphrase: ")?;
        if confirm {
            let again = read_hidden("backup passphrase again: ")?;
            anyhow::ensure!(first == again, "the two backup passphrases differ");
        }
        anyhow::ensure!(!first.is_empty(), "the backup passphrase is empty");
        Ok(first)
    }
}

/// Asks at the terminal and reads one line without echoing it (rpassword: the terminal's echo
/// is restored also on an error path).
fn read_hidden(prompt: &str) -> Result<Zeroizing<String>> {
    let line = rpassword::prompt_password(prompt)
        .context("reading the backup passphrase from the terminal")?;
    Ok(Zeroizing::new(line))
}

/// Runs `phone export`.
pub(super) fn export(
    secrets: &PhoneSecrets,
    cfg: &Config,
    pass: &str,
    args: &ExportArgs,
) -> Result<()> {
    let backup_pass = args.backup.read(true)?;
    if backup_pass.as_str() == pass {
        eprintln!(
            "warning: the backup passphrase is the phone's passphrase: whoever learns one opens \
             both the key file and the backup"
        );
    }
    secrets
        .export_backup(&args.out, &backup_pass, args.force)
        .with_context(|| format!("cannot write the backup {}", args.out.display()))?;
    let done = KeysDone::Exported(&args.out);
    println!("{}", KeysReport { done, cfg, secrets });
    Ok(())
}

/// Runs `phone import`: the backup's secrets, re-sealed under the phone's passphrase.
pub(super) fn import(cfg: &mut Config, pass: &str, args: &ImportArgs) -> Result<()> {
    let backup_pass = args.backup.read(false)?;
    let restored = PhoneSecrets::import_backup(&args.input, &backup_pass)
        .with_context(|| format!("cannot restore the backup {}", args.input.display()))?;
    cfg.import_secrets(&args.input, &restored, pass, args.force)?;
    let (done, cfg, secrets) = (KeysDone::Imported, &*cfg, &restored);
    println!("{}", KeysReport { done, cfg, secrets });
    Ok(())
}

/// The phone's identity name, the config's chain and its `trust`, for a [`Rotator`]; `settling`
/// when a command other than `rotate` needs them for a pending rotation (the error says so).
async fn rotator_parts(
    cfg: &mut Config,
    settling: bool,
) -> Result<(IdentityName, Arc<RpcChain>, Arc<HeaderTrust>)> {
    let name = IdentityName::Phone(cfg.number()?.clone());
    let chain = match cfg.chain().await {
        Err(e) if settling => Err(anyhow::Error::from(e)
            .context("a key rotation is pending and the chain is needed to settle it")),
        other => other.map_err(Into::into),
    }?;
    let trust = cfg.header_trust(&*chain).await?;
    Ok((name, chain, trust))
}

/// Runs `phone rotate`.
pub(super) async fn rotate(cfg: &mut Config, pass: &str) -> Result<()> {
    let mut secrets = cfg.load_secrets(pass)?;
    let (name, chain, trust) = rotator_parts(cfg, false).await?;
    let rotator = Rotator::new(cfg, &chain, &trust, pass);
    if let Some(next) = secrets.pending_rotation() {
        eprintln!(
            "a rotation to key {} was started earlier: finishing it",
            next.public().fingerprint()
        );
    } else {
        // Checked before anything is written: nothing to undo when the rotation cannot be sent.
        rotator.begin(&mut secrets, &name).await?;
    }
    match rotator.drive(&mut secrets, &name).await? {
        Settled::Finished { old, tx } => {
            let rotated = Rotated::new(&name, &old, tx.as_ref(), &secrets, &cfg.key_file);
            println!("{rotated}");
            Ok(())
        }
        Settled::InFlight => bail!(
            "a transaction from wallet {} is still waiting to be mined; the old key stays in use \
             and the next phone command finishes the rotation once it is",
            secrets.wallet.address()
        ),
        Settled::Discarded(why) => Err(why.into()),
    }
}

/// Settles a rotation an earlier run left pending, before a command uses the keys; returns the
/// keys it opened (`None` without a key file), so the command opens the file only once. Reads no
/// chain when no rotation is pending. A rotation that cannot be finished now leaves the old key
/// in use and says why on stderr; the command then goes on.
pub(super) async fn settle_pending(cfg: &mut Config, pass: &str) -> Result<Option<PhoneSecrets>> {
    if !cfg.key_file.exists() {
        return Ok(None);
    }
    let mut secrets = cfg.load_secrets(pass)?;
    if secrets.pending_rotation().is_none() {
        return Ok(Some(secrets));
    }
    let (name, chain, trust) = rotator_parts(cfg, true).await?;
    let rotator = Rotator::new(cfg, &chain, &trust, pass);
    let settled = rotator.drive(&mut secrets, &name).await?;
    eprintln!("{}", settled.settle_note(&name, &secrets));
    Ok(Some(secrets))
}
