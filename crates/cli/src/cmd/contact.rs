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
//! verified in person, key changes) are rendered here too. What is shown and recorded (the
//! lookup, the safety number, the in-person mark) is the phone crate's `contact_view`; this
//! module parses and prints.

use anyhow::{Context, Result, anyhow, bail};
use chaincall_identity::{IdentityName, PublicIdentityKey, SafetyNumber};
use chaincall_phone::contact_view::{SafetyView, find_key, mark_verified_in_person, pinned_since};
use chaincall_phone::contacts::{Contact, KeyChange, unix_now, utc_time};
use chaincall_phone::{CallReport, ContactsStore, KeyLookup};
use clap::Subcommand;
use serde_json::{Value, json};

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

/// A safety number in three rows of four groups, as Signal shows it.
fn print_safety(safety: &SafetyNumber) {
    let grouped = safety.grouped();
    let groups: Vec<&str> = grouped.split(' ').collect();
    for row in groups.chunks(4) {
        println!("  {}", row.join(" "));
    }
}

fn change_json(name: &IdentityName, change: &KeyChange) -> Value {
    json!({
        "kind": change.kind.as_str(),
        "block": change.block,
        "block_time": change.block_time,
        "seen_at": change.seen_at,
        "old_fingerprint": change.old,
        "new_fingerprint": change.new,
        "message": change.describe(name),
    })
}

fn contact_json(
    cfg: &Config,
    secrets: &PhoneSecrets,
    name: &IdentityName,
    contact: &Contact,
) -> Result<Value> {
    let key = contact.pinned_key();
    let safety = key
        .as_ref()
        .map(|k| safety_with(cfg, secrets, name, k))
        .transpose()?;
    Ok(json!({
        "contact": name.as_str(),
        "revoked": key.is_none(),
        "public_key": contact.key,
        "fingerprint": safety.as_ref().map(|s| s.fingerprint.digits().to_owned()),
        "safety_number": safety.as_ref().map(|s| s.safety.digits().to_owned()),
        "pinned_since": pinned_since(contact),
        "pin_block": contact.pin_block,
        "first_seen": {"block": contact.first_seen.block, "time": contact.first_seen.time},
        "last_verified": contact.last_verified.map(|m| json!({"block": m.block, "time": m.time})),
        "wallet": contact.wallet,
        "verified_in_person": contact.is_verified_in_person(name),
        "verified_in_person_at": contact
            .verified_in_person
            .as_ref()
            .filter(|_| contact.is_verified_in_person(name))
            .map(|v| v.at),
        "last_change": contact.history.last().map(|c| change_json(name, c)),
        "history": contact.history.iter().map(|c| change_json(name, c)).collect::<Vec<_>>(),
    }))
}

fn print_history(name: &IdentityName, contact: &Contact) {
    if contact.history.is_empty() {
        println!("history       no key change since first seen");
    } else {
        println!("history");
        for change in &contact.history {
            println!(
                "  {} ({} → {})",
                change.describe(name),
                change.old,
                change.new.as_deref().unwrap_or("revoked")
            );
        }
    }
}

fn list(cfg: &Config, secrets: &PhoneSecrets, as_json: bool) -> Result<()> {
    let contacts = store(cfg).read()?;
    if as_json {
        let all = contacts
            .iter()
            .map(|(name, c)| contact_json(cfg, secrets, &name, c))
            .collect::<Result<Vec<_>>>()?;
        println!("{}", json!({ "contacts": all }));
        return Ok(());
    }
    if contacts.iter().next().is_none() {
        println!("no contacts yet: every call and `contact show` adds the peer it looks up");
    }
    for (name, c) in contacts.iter() {
        println!("{}", name.as_str());
        match c.pinned_key() {
            Some(key) => {
                let view = safety_with(cfg, secrets, &name, &key)?;
                println!("  fingerprint        {}", view.fingerprint);
                println!("  safety number      {}", view.safety.grouped());
            }
            None => println!("  revoked            at block {}", c.pin_block),
        }
        println!("  pinned since       {}", utc_time(pinned_since(c)));
        match c.last_verified {
            Some(m) => println!(
                "  last verified      {} (block {})",
                utc_time(m.time),
                m.block
            ),
            None => println!("  last verified      never (proven)"),
        }
        println!(
            "  verified in person {}",
            if c.is_verified_in_person(&name) {
                "yes"
            } else {
                "no"
            }
        );
        if let Some(change) = c.history.last() {
            println!("  last change        {}", change.describe(&name));
        }
    }
    Ok(())
}

/// Asks on the terminal (stderr) and reads one line from stdin; only "y" or "yes" is a yes.
fn confirm(question: &str) -> Result<bool> {
    use std::io::Write as _;
    eprint!("{question} [y/N] ");
    std::io::stderr().flush().ok();
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .context("reading the answer from stdin")?;
    Ok(matches!(line.trim(), "y" | "Y" | "yes"))
}

async fn verify(cfg: &mut Config, secrets: &PhoneSecrets, number: &str, yes: bool) -> Result<()> {
    let contact = parse_contact(number)?;
    let lookup = contact_lookup(cfg).await?;
    let found = find_key(&lookup, &contact).await?;
    if let Some(change) = &found.unconfirmed {
        let view = safety_with(cfg, secrets, &contact, &found.key)?;
        println!("{change}");
        println!(
            "new fingerprint {}; safety number with the new key:",
            view.fingerprint
        );
        print_safety(&view.safety);
        if !yes
            && !confirm(&format!(
                "Accept {}'s new key? Only if you compared this safety number with {} in person and it matched.",
                contact.as_str(),
                contact.as_str()
            ))?
        {
            bail!("the key change was not accepted; the pin stays on the old key");
        }
        lookup.accept_key_change(change).await?;
        println!("accepted {}'s new key", contact.as_str());
        // The user just compared the new key's safety number: that is the in-person check.
    }
    let key = found.key;
    let view = safety_with(cfg, secrets, &contact, &key)?;
    let fingerprint = view.fingerprint;
    println!("{} fingerprint {fingerprint}", contact.as_str());
    println!(
        "safety number (compare with the one {} sees):",
        contact.as_str()
    );
    print_safety(&view.safety);
    if !yes
        && !confirm(&format!(
            "Did you compare this safety number with {} in person, and does it match?",
            contact.as_str()
        ))?
    {
        bail!("not marked verified");
    }
    mark_verified_in_person(&store(cfg), &contact, &key, unix_now())?;
    println!(
        "{} marked verified in person for fingerprint {fingerprint}",
        contact.as_str()
    );
    Ok(())
}

/// The call report's trust fields for `--json` and `listen`: the safety number with the verified
/// peer, whether it was compared in person, and the key changes the call's lookup found.
pub(super) fn add_call_trust(report: &mut Value, r: &CallReport) {
    let peer = r
        .verified_peer
        .clone()
        .or_else(|| IdentityName::parse(&r.peer).ok());
    let changes: Vec<Value> = match &peer {
        Some(name) => r.key_changes.iter().map(|c| change_json(name, c)).collect(),
        None => Vec::new(),
    };
    if let Some(object) = report.as_object_mut() {
        object.insert(
            "safety_number".into(),
            json!(r.safety_number.as_ref().map(|s| s.digits().to_owned())),
        );
        object.insert("verified_in_person".into(), json!(r.verified_in_person));
        object.insert("key_changes".into(), json!(changes));
    }
}

/// The call report's trust lines, for the text report.
pub(super) fn print_call_trust(r: &CallReport) {
    if let Some(safety) = &r.safety_number {
        println!(
            "  safety number  {} ({})",
            safety.grouped(),
            if r.verified_in_person {
                "verified in person"
            } else {
                "not verified in person: `chaincall phone contact verify`"
            }
        );
    }
    if let Some(name) = r
        .verified_peer
        .clone()
        .or_else(|| IdentityName::parse(&r.peer).ok())
    {
        for change in &r.key_changes {
            println!("  key change     {}", change.describe(&name));
        }
    }
}

/// The part of a "call up" line that names the safety number.
pub(super) fn up_note(safety: Option<&SafetyNumber>, verified_in_person: bool) -> String {
    match safety {
        Some(s) if verified_in_person => {
            format!("; safety number {} verified in person", s.grouped())
        }
        Some(s) => format!("; safety number {}", s.grouped()),
        None => String::new(),
    }
}

async fn show(cfg: &mut Config, secrets: &PhoneSecrets, number: &str, json: bool) -> Result<()> {
    let contact = parse_contact(number)?;
    let lookup = contact_lookup(cfg).await?;
    // A key change the phone cannot confirm on its own is shown (with the new key's safety number,
    // to compare) rather than refused: showing it is how the user gets to decide.
    let found_key = find_key(&lookup, &contact).await?;
    let block = found_key.block();
    let key = found_key.key;
    let (found, unconfirmed) = (found_key.found, found_key.unconfirmed);
    let SafetyView {
        own_name,
        own_fingerprint,
        fingerprint,
        safety,
    } = safety_with(cfg, secrets, &contact, &key)?;
    let stored = store(cfg).read()?;
    let stored = stored.get(&contact);

    if json {
        let out = json!({
            "contact": contact.as_str(),
            "canonical": contact.canonical(),
            "status": found.as_ref().map_or("approved", |f| f.entry.status.as_str()),
            "key_type": key.tag(),
            "public_key": hex::encode(key.to_bytes()),
            "fingerprint": fingerprint.digits(),
            "verified": found.as_ref().is_some_and(|f| f.verified),
            "block": block,
            "own": {
                "number": own_name.as_str(),
                "fingerprint": own_fingerprint.digits(),
            },
            "safety_number": safety.digits(),
            "pinned": unconfirmed.is_none(),
            "unconfirmed_key_change": unconfirmed.as_ref().map(|c| c.to_string()),
            "verified_in_person": stored.is_some_and(|c| c.is_verified_in_person(&contact)),
            "history": stored.map_or_else(Vec::new, |c| {
                c.history.iter().map(|h| change_json(&contact, h)).collect()
            }),
        });
        println!("{out}");
    } else {
        println!(
            "contact       {} ({}): {}",
            contact.as_str(),
            contact.canonical(),
            found
                .as_ref()
                .map_or("approved".to_owned(), |f| f.entry.status.to_string())
        );
        match (&found, &unconfirmed) {
            (Some(found), _) => match found.block {
                Some(block) => println!(
                    "verified      block {block}, {} proof bytes",
                    found.proof_bytes
                ),
                None => println!("verified      no (the node's word)"),
            },
            (None, Some(change)) => println!("KEY CHANGED   {change}"),
            (None, None) => {}
        }
        println!("public key    {}", hex::encode(key.to_bytes()));
        println!("fingerprint   {fingerprint}");
        println!("you           {} {own_fingerprint}", own_name.as_str());
        println!(
            "safety number (compare with the one {} sees):",
            contact.as_str()
        );
        print_safety(&safety);
        if let Some(c) = stored {
            println!(
                "in person     {}",
                if c.is_verified_in_person(&contact) {
                    "verified"
                } else {
                    "not verified (`chaincall phone contact verify NUMBER` once compared)"
                }
            );
            print_history(&contact, c);
        }
    }
    Ok(())
}
