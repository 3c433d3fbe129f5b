//! `chaincall phone contact …`: what this phone knows about another subscriber.
//!
//! `contact show NUMBER` looks the contact's key up on chain exactly as `phone call` does (the
//! phone crate's [`KeyLookup`], proven against the config's `trust` block) and prints the contact's
//! identity, its 30-digit fingerprint and the 60-digit safety number between this phone's own
//! identity key (from its key file) and the contact's (docs/safety-numbers.md). Two people who
//! read the same safety number on their two phones hold each other's real keys.
//!
//! A child module of `phone`, so it reuses the phone's configuration, chain connection, header
//! trust and key file handling as they are.

use anyhow::{Result, anyhow};
use chaincall_identity::{Fingerprint, IdentityName, SafetyNumber};
use chaincall_phone::KeyLookup;
use clap::Subcommand;
use serde_json::json;

use super::{Config, PhoneSecrets};

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
}

/// Runs `chaincall phone contact …` with the phone's loaded config and keys.
pub(super) async fn run(
    cfg: &mut Config,
    secrets: &PhoneSecrets,
    command: ContactCommand,
) -> Result<()> {
    match command {
        ContactCommand::Show { number, json } => show(cfg, secrets, &number, json).await,
    }
}

async fn show(cfg: &mut Config, secrets: &PhoneSecrets, number: &str, json: bool) -> Result<()> {
    let contact = match IdentityName::parse(number) {
        Ok(name @ IdentityName::Phone(_)) => name,
        Ok(_) | Err(_) => {
            return Err(anyhow!(
                "{number:?} is not a phone number in E.164 form (+15551234567)"
            ));
        }
    };
    let own_name = IdentityName::Phone(cfg.number()?.clone());
    let own_key = secrets.identity.public();

    // The same look-up `phone call` makes: the phone crate's, proven against the config's trust.
    let chain = cfg.chain().await?;
    let trust = cfg.header_trust(&*chain).await?;
    let lookup = KeyLookup::new(chain, cfg.contract, Some(trust));
    let found = lookup.approved(&contact).await?;
    let key = found
        .entry
        .approved_key()
        .ok_or_else(|| anyhow!("{} has no approved key", contact.as_str()))?;

    let fingerprint = Fingerprint::new(&contact, &key);
    let own_fingerprint = Fingerprint::new(&own_name, &own_key);
    let safety = SafetyNumber::from_fingerprints(&own_fingerprint, &fingerprint);

    if json {
        let out = json!({
            "contact": contact.as_str(),
            "canonical": contact.canonical(),
            "status": found.entry.status.as_str(),
            "key_type": found.entry.key_type,
            "public_key": hex::encode(key.to_bytes()),
            "fingerprint": fingerprint.digits(),
            "verified": found.verified,
            "block": found.block,
            "own": {
                "number": own_name.as_str(),
                "fingerprint": own_fingerprint.digits(),
            },
            "safety_number": safety.digits(),
        });
        println!("{out}");
    } else {
        println!(
            "contact       {} ({}): {}",
            contact.as_str(),
            contact.canonical(),
            found.entry.status
        );
        match found.block {
            Some(block) => println!(
                "verified      block {block}, {} proof bytes",
                found.proof_bytes
            ),
            None => println!("verified      no (the node's word)"),
        }
        println!("public key    {}", hex::encode(key.to_bytes()));
        println!("fingerprint   {fingerprint}");
        println!("you           {} {own_fingerprint}", own_name.as_str());
        println!(
            "safety number (compare with the one {} sees):",
            contact.as_str()
        );
        // Three rows of four groups, as Signal shows it.
        let grouped = safety.grouped();
        let groups: Vec<&str> = grouped.split(' ').collect();
        for row in groups.chunks(4) {
            println!("  {}", row.join(" "));
        }
    }
    Ok(())
}
