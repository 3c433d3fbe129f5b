//! `chaincall phone contact …` and `phone contacts`: what this phone knows about other subscribers.
//!
//! `contact show NUMBER` looks the contact's key up on chain exactly as `phone call` does (the
//! phone crate's [`KeyLookup`], proven against the config's `trust` block and checked against the
//! pin in the contacts store) and prints the contact's identity, its 30-digit fingerprint, the
//! 60-digit safety number between this phone's own identity key (from its key file) and the
//! contact's (docs/safety-numbers.md), and the stored history of key changes. Two people who read
//! the same safety number on their two phones hold each other's real keys.
//!
//! `contact list` (or `phone contacts`) prints the store without going to the chain;
//! `contact verify NUMBER` records that the user compared the safety number in person (and
//! accepts a key change the phone could not confirm on its own, after explicit confirmation).
//!
//! A child module of `phone`, so it reuses the phone's configuration, chain connection, header
//! trust and key file handling as they are; the call report's trust fields (safety number,
//! verified in person, key changes) are printed here too. What is shown and recorded (the
//! lookup, the safety number, the in-person mark) and how it reads is the phone crate's
//! `contact_view`; this module parses and prints.

use anyhow::{Result, anyhow};
use chaincall_identity::{IdentityName, PublicIdentityKey};
use chaincall_phone::contact_view::{
    ContactListView, ContactShowView, SafetyView, VerifyUi, find_key, verify_in_person,
};
use chaincall_phone::{ContactsStore, KeyLookup};
use clap::Subcommand;

use super::{ChainAccess as _, Config, PhoneSecrets, RpcChain};

/// `chaincall phone contact …`.
#[derive(Debug, Subcommand)]
pub(super) enum ContactCommand {
    /// Look the contact's key up on chain (proven, as for a call) and print its identity, its
    /// fingerprint and the safety number between this phone and the contact. Compare the safety
    /// number with the one the contact's phone shows for you (in person or over a channel you
    /// trust): equal numbers mean each of you holds the other's real key.
    Show {
        /// The contact's number, E.164.
        #[arg(value_name = "+E164")]
        number: String,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Every stored contact (no chain access): fingerprint, safety number with this phone, pinned
    /// since, last verified, verified in person, last key change. Also `phone contacts`.
    List {
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Mark the contact verified in person for its current key: prints the safety number and asks
    /// whether you compared it with the contact (in person, or over a channel you trust). If the
    /// on-chain key changed by a rotation this phone could not confirm on its own, shows the new
    /// key's safety number and accepts it only after the same confirmation.
    Verify {
        /// The contact's number, E.164.
        #[arg(value_name = "+E164")]
        number: String,
        /// Confirm without asking (scripts): you compared the safety number shown and it matched;
        /// this also accepts an unconfirmed key change.
        #[arg(long)]
        yes: bool,
    },
}

/// The contacts store the config names (`contacts_file`), for the config's keystore.
pub(super) fn store(cfg: &Config) -> ContactsStore {
    ContactsStore::new(cfg.contacts_file.clone(), cfg.contract)
}

/// Runs `chaincall phone contact …` with the phone's loaded config and keys.
pub(super) async fn run(
    cfg: &mut Config,
    secrets: &PhoneSecrets,
    command: ContactCommand,
) -> Result<()> {
    match command {
        ContactCommand::Show { number, json } => show(cfg, secrets, &number, json).await,
        ContactCommand::List { json } => list(cfg, secrets, json),
        ContactCommand::Verify { number, yes } => verify(cfg, secrets, &number, yes).await,
    }
}

fn parse_contact(number: &str) -> Result<IdentityName> {
    match IdentityName::parse(number) {
        Ok(name @ IdentityName::Phone(_)) => Ok(name),
        Ok(_) | Err(_) => Err(anyhow!(
            "{number:?} is not a phone number in E.164 form (+15551234567)"
        )),
    }
}

/// The same look-up `phone call` makes: the phone crate's, proven against the config's trust and
/// checked against (and recorded in) the contacts store.
async fn contact_lookup(cfg: &mut Config) -> Result<KeyLookup<RpcChain>> {
    let chain = cfg.chain().await?;
    let trust = cfg.header_trust(&*chain).await?;
    Ok(KeyLookup::new(chain, cfg.contract, Some(trust)).with_contacts(store(cfg)))
}

/// Our identity and the safety number between us and `contact`'s `key`.
fn safety_with(
    cfg: &Config,
    secrets: &PhoneSecrets,
    contact: &IdentityName,
    key: &PublicIdentityKey,
) -> Result<SafetyView> {
    Ok(SafetyView::new(
        cfg.number()?,
        &secrets.identity.public(),
        contact,
        key,
    ))
}

fn list(cfg: &Config, secrets: &PhoneSecrets, as_json: bool) -> Result<()> {
    let own_key = secrets.identity.public();
    let view = ContactListView::new(&store(cfg).read()?, cfg.number()?, &own_key);
    crate::print_view(&view, as_json, ContactListView::to_json)
}

/// `contact verify` at the terminal: text on stdout, questions on stderr, answers from stdin
/// (only "y" or "yes" is a yes); `--yes` answers every question yes.
struct Terminal {
    yes: bool,
}

impl VerifyUi for Terminal {
    fn show(&mut self, text: &str) {
        print!("{text}");
    }

    fn confirm(&mut self, question: &str) -> std::io::Result<bool> {
        use std::io::Write as _;
        if self.yes {
            return Ok(true);
        }
        eprint!("{question} [y/N] ");
        std::io::stderr().flush().ok();
        let mut line = String::new();
        std::io::stdin().read_line(&mut line)?;
        Ok(matches!(line.trim(), "y" | "Y" | "yes"))
    }
}

async fn verify(cfg: &mut Config, secrets: &PhoneSecrets, number: &str, yes: bool) -> Result<()> {
    let contact = parse_contact(number)?;
    let lookup = contact_lookup(cfg).await?;
    let own = (cfg.number()?, &secrets.identity.public());
    let ui = &mut Terminal { yes };
    Ok(verify_in_person(&lookup, &store(cfg), own, &contact, ui).await?)
}

async fn show(cfg: &mut Config, secrets: &PhoneSecrets, number: &str, json: bool) -> Result<()> {
    let contact = parse_contact(number)?;
    let lookup = contact_lookup(cfg).await?;
    // A key change the phone cannot confirm on its own is shown (with the new key's safety number,
    // to compare) rather than refused: showing it is how the user gets to decide.
    let found = find_key(&lookup, &contact).await?;
    let safety = safety_with(cfg, secrets, &contact, &found.key)?;
    let stored = store(cfg).read()?;
    let stored = stored.get(&contact);
    let view = ContactShowView {
        contact: &contact,
        found: &found,
        safety: &safety,
        stored,
    };
    crate::print_view(&view, json, ContactShowView::to_json)
}
