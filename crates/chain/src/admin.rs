//! Keystore administration as library calls: what `chaincall keystore …` runs, so tools, benches
//! and tests share one implementation of each step.
//!
//! - [`add_and_approve`]: an entry added by its wallet and approved by the owner (the two
//!   transactions every test network and bench repeats).
//! - [`measure_gas`]: the gas of every contract function, from real receipts on a fresh embedded
//!   chain, against [`GAS_BUDGET`].
//! - [`header_trust`]: which block headers a verified lookup trusts, from an operator's options.
//! - [`explain`]: contract errors that carry only an id's hash, told with the human name.
//! - [`EntryView`], [`HistoryView`]: an entry and its history as text ([`fmt::Display`]) and JSON.

use std::fmt;

use alloy::primitives::{Address, B256};
use chaincall_identity::{Fingerprint, IdentityKey, IdentityName, PublicIdentityKey};
use serde_json::{Value, json};

use crate::verified::{HeaderTrust, QuorumConfigError, VerifiedEntry};
use crate::{
    ChainError, Change, ClientEntry, ClientId, EmbeddedChain, HistoryEvent, KeystoreChain,
    PrivateKeySigner, TxOutcome, dev_signer, receipt_commitment, receipt_hash,
};

/// addClient + approveClient must stay within this much gas (issue 2).
pub const GAS_BUDGET: u64 = 150_000;

/// Why an administration step failed, in words an operator can act on.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The chain refused or failed, with nothing to add.
    #[error(transparent)]
    Chain(#[from] ChainError),
    /// A contract error told with the identity's name (the contract only knows its hash).
    #[error("{0}")]
    Named(String),
    /// A verified read whose proof failed: no key is shown.
    #[error("verification failed, no key is shown")]
    Unverified(#[source] crate::verified::VerifyError),
    /// A deployment receipt without a contract address.
    #[error("deployment receipt names no contract address")]
    NoContractAddress,
    /// A checkpoint that is not `NUMBER:HASH`.
    #[error("--checkpoint {0:?} is not NUMBER:HASH (e.g. 0:0x1234…, 32-byte hash)")]
    Checkpoint(String),
    /// A quorum of endpoints without the number that must agree.
    #[error("--quorum needs --k N")]
    QuorumNeedsK,
    /// A quorum that is no strict majority of distinct servers.
    #[error("--quorum/--k")]
    Quorum(#[source] QuorumConfigError),
    /// A signer's key file could not be read (or may be read by others).
    #[error("cannot read key file {}", path.display())]
    KeyFile {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: chaincall_identity::SecretFileError,
    },
    /// A signer's key file that does not hold a key.
    #[error(
        "key file {} does not hold a hex secp256k1 private key (64 hex digits, as anvil prints)",
        .0.display()
    )]
    NotAKey(std::path::PathBuf),
    /// The endpoint's genesis header, pinned on first use, could not be read.
    #[error("cannot fetch the genesis header to pin it")]
    Genesis(#[source] ChainError),
}

/// The address a deployment created.
pub fn deployed_address(out: &TxOutcome) -> Result<Address, AdminError> {
    out.contract_address.ok_or(AdminError::NoContractAddress)
}

/// `wallet` adds `key` for `id` with the commitment of `receipt`, then `owner` approves it with the
/// receipt's hash. Returns both transactions' outcomes (add, approve).
pub async fn add_and_approve<C: KeystoreChain + ?Sized>(
    chain: &C,
    contract: Address,
    owner: &PrivateKeySigner,
    wallet: &PrivateKeySigner,
    id: ClientId,
    key: &PublicIdentityKey,
    receipt: &[u8],
) -> Result<(TxOutcome, TxOutcome), ChainError> {
    let hash = receipt_hash(receipt);
    let add = chain
        .add_client_key(contract, wallet, id, key, hash)
        .await?;
    let approve = chain.approve_client(contract, owner, id, hash).await?;
    Ok((add, approve))
}

/// Adds the identity's human name to contract errors that only carry its hash.
pub fn explain(err: ChainError, name: &IdentityName) -> AdminError {
    let who = name.as_str();
    let text = match err {
        ChainError::UnknownId { .. } => format!("unknown {who}: no entry in the keystore"),
        ChainError::AlreadyTaken { wallet, .. } => {
            format!("{who} is already taken: approved for wallet {wallet}")
        }
        ChainError::AlreadyPending { wallet, .. } => {
            format!("{who} already has a pending entry from wallet {wallet}")
        }
        ChainError::ReceiptMismatch { .. } => format!(
            "receipt does not match the pending entry for {who} (wrong receipt or submitting wallet)"
        ),
        ChainError::WrongStatus { status, .. } => {
            format!("{who} is {status} in the keystore, which does not allow this")
        }
        ChainError::NotEntryWallet { caller, .. } => {
            format!("wallet {caller} is not the wallet bound to {who}")
        }
        other => return AdminError::Chain(other),
    };
    AdminError::Named(text)
}

/// A change to one entry, signed by its wallet (add, rotate, revoke) or the owner (approve, revoke).
#[derive(Debug, Clone)]
pub enum EntryChange {
    /// Submit `key` with the commitment of `receipt` (pending until the owner approves it).
    Add {
        /// The identity key.
        key: PublicIdentityKey,
        /// The purchase receipt (only its hash reaches the chain).
        receipt: Vec<u8>,
    },
    /// Approve the pending entry submitted with `receipt`.
    Approve {
        /// The receipt the entry was submitted with.
        receipt: Vec<u8>,
    },
    /// Replace the approved entry's key.
    Rotate {
        /// The new identity key.
        key: PublicIdentityKey,
    },
    /// Revoke the entry.
    Revoke,
}

/// Sends `change` to `name`'s entry, signed by `signer`; contract errors are told with the name.
pub async fn change_entry<C: KeystoreChain + ?Sized>(
    chain: &C,
    contract: Address,
    signer: &PrivateKeySigner,
    name: &IdentityName,
    change: &EntryChange,
) -> Result<TxOutcome, AdminError> {
    let id = ClientId::of(name);
    let sent = match change {
        EntryChange::Add { key, receipt } => {
            let commitment = receipt_commitment(&id, signer.address(), &receipt_hash(receipt));
            let bytes = key.to_bytes();
            chain
                .add_client(contract, signer, id, key.tag(), &bytes, commitment)
                .await
        }
        EntryChange::Approve { receipt } => {
            chain
                .approve_client(contract, signer, id, receipt_hash(receipt))
                .await
        }
        EntryChange::Rotate { key } => {
            let bytes = key.to_bytes();
            chain
                .rotate_key(contract, signer, id, key.tag(), &bytes)
                .await
        }
        EntryChange::Revoke => chain.revoke_client(contract, signer, id).await,
    };
    sent.map_err(|e| explain(e, name))
}

/// Reads a hex secp256k1 private key (with or without `0x`) from a secret file; the key is never
/// echoed. Refused when the file's group or other users may read it (the error names
/// `chmod 600 PATH`), like every other secret file chaincall reads.
pub fn read_signer(path: &std::path::Path) -> Result<PrivateKeySigner, AdminError> {
    let text =
        chaincall_identity::read_secret_file(path).map_err(|source| AdminError::KeyFile {
            path: path.to_owned(),
            source,
        })?;
    let hex = text.trim().trim_start_matches("0x");
    hex.parse::<PrivateKeySigner>()
        .map_err(|_| AdminError::NotAKey(path.to_owned()))
}

/// Parses a pinned block `NUMBER:HASH`.
pub fn parse_checkpoint(text: &str) -> Result<(u64, B256), AdminError> {
    let bad = || AdminError::Checkpoint(text.to_owned());
    let (number, hash) = text.trim().split_once(':').ok_or_else(bad)?;
    let number = number.trim().parse::<u64>().map_err(|_| bad())?;
    let hash = hash.trim().parse::<B256>().map_err(|_| bad())?;
    Ok((number, hash))
}

/// The header trust an operator chose, and a one-line account of it for the output: `k` of the
/// `quorum` endpoints agreeing, else the `checkpoint`, else the endpoint's own genesis block
/// (trust on first use).
pub async fn header_trust<C: KeystoreChain + ?Sized>(
    chain: &C,
    checkpoint: Option<&str>,
    quorum: &[String],
    k: Option<usize>,
) -> Result<(HeaderTrust, String), AdminError> {
    if !quorum.is_empty() {
        let k = k.ok_or(AdminError::QuorumNeedsK)?;
        // Refuses a server listed twice and a k that is no strict majority of distinct servers.
        let trust = HeaderTrust::quorum(quorum.to_vec(), k).map_err(AdminError::Quorum)?;
        return Ok((trust, format!("quorum {k} of {}", quorum.len())));
    }
    if let Some(text) = checkpoint {
        let (number, hash) = parse_checkpoint(text)?;
        let what = format!("checkpoint {number}:{hash}");
        return Ok((HeaderTrust::checkpoint(number, hash), what));
    }
    let genesis = chain
        .block_header(0)
        .await
        .map_err(AdminError::Genesis)?
        .hash_slow();
    Ok((
        HeaderTrust::checkpoint(0, genesis),
        format!("checkpoint 0:{genesis} (the endpoint's genesis: trust on first use)"),
    ))
}

/// An entry as `keystore get` reads it: as the node answers, or proven against a trusted header.
#[derive(Debug)]
pub struct EntryRead {
    name: IdentityName,
    contract: Address,
    entry: ClientEntry,
    /// The proof and the account of how its header was trusted, for a verified read.
    verified: Option<(VerifiedEntry, String)>,
}

impl EntryRead {
    /// `name`'s entry as the node answers it (no proof).
    pub async fn unproven<C: KeystoreChain + ?Sized>(
        chain: &C,
        contract: Address,
        name: IdentityName,
    ) -> Result<Self, AdminError> {
        let entry = chain.get_client(contract, ClientId::of(&name)).await?;
        Ok(Self {
            name,
            contract,
            entry,
            verified: None,
        })
    }

    /// `name`'s entry proven at `block` (default: the latest) against `trust`; `how` is the
    /// one-line account of the trust that [`header_trust`] gives. A failed proof shows no key.
    pub async fn proven<C: KeystoreChain + ?Sized>(
        chain: &C,
        contract: Address,
        name: IdentityName,
        (trust, how): (&HeaderTrust, String),
        block: Option<u64>,
    ) -> Result<Self, AdminError> {
        let id = ClientId::of(&name);
        let found = crate::verified::get_client_verified(chain, contract, id, trust, block)
            .await
            .map_err(AdminError::Unverified)?;
        Ok(Self {
            name,
            contract,
            entry: found.entry.clone(),
            verified: Some((found, how)),
        })
    }

    /// What to print.
    pub fn view(&self) -> EntryView<'_> {
        EntryView {
            name: &self.name,
            contract: self.contract,
            entry: &self.entry,
            verified: self.verified.as_ref().map(|(v, how)| (v, how.as_str())),
        }
    }
}

/// An entry as read from the keystore, with the proof it was read with if any (and how the header
/// was trusted).
#[derive(Debug)]
pub struct EntryView<'a> {
    /// Whose entry.
    pub name: &'a IdentityName,
    /// The keystore contract.
    pub contract: Address,
    /// The entry.
    pub entry: &'a ClientEntry,
    /// The proof's block and size, and the account of the header trust, for a verified read.
    pub verified: Option<(&'a VerifiedEntry, &'a str)>,
}

impl EntryView<'_> {
    /// The key in hex; none when the entry has no key.
    fn key_hex(&self) -> Option<String> {
        (!self.entry.key.is_empty()).then(|| hex::encode(&self.entry.key))
    }

    /// The 30-digit displayable fingerprint of (name, key), for comparing keys in person; none when
    /// there is no key or the chain holds bytes that are not a valid key of a known type.
    fn fingerprint(&self) -> Option<Fingerprint> {
        let entry = self.entry;
        (!entry.key.is_empty())
            .then(|| PublicIdentityKey::from_tagged(entry.key_type, &entry.key).ok())
            .flatten()
            .map(|key| Fingerprint::new(self.name, &key))
    }

    /// The JSON view (`status`, `public_key`, `fingerprint`, …; verified reads add `block`,
    /// `block_hash`, `proof_bytes` and `trust`).
    pub fn to_json(&self) -> Value {
        let (name, entry) = (self.name, self.entry);
        let mut out = json!({
            "name": name.as_str(),
            "canonical": name.canonical(),
            "id": entry.id.to_string(),
            "contract": self.contract.to_string(),
            "status": entry.status.as_str(),
            "wallet": entry.wallet.map(|w| w.to_string()),
            "key_type": entry.key_type,
            "public_key": self.key_hex(),
            "fingerprint": self.fingerprint().as_ref().map(|f| f.digits().to_owned()),
            "verified": self.verified.is_some(),
        });
        if let Some((found, how)) = self.verified {
            out["block"] = json!(found.block_number);
            out["block_hash"] = json!(found.block_hash.to_string());
            out["proof_bytes"] = json!(found.proof_bytes);
            out["trust"] = json!(how);
        }
        out
    }
}

impl fmt::Display for EntryView<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (name, entry) = (self.name, self.entry);
        writeln!(
            f,
            "{} ({}): {}",
            name.as_str(),
            name.canonical(),
            entry.status
        )?;
        match self.verified {
            Some((found, how)) => {
                writeln!(
                    f,
                    "verified   block {} ({}), {} proof bytes",
                    found.block_number, found.block_hash, found.proof_bytes
                )?;
                writeln!(f, "trust      {how}")?;
            }
            None => writeln!(
                f,
                "verified   no (the node's word; add --verify to prove it)"
            )?,
        }
        if let Some(wallet) = entry.wallet {
            writeln!(f, "wallet     {wallet}")?;
        }
        if let Some(key) = self.key_hex() {
            writeln!(f, "key type   {}", entry.key_type)?;
            writeln!(f, "public key {key}")?;
        }
        if let Some(fingerprint) = self.fingerprint() {
            writeln!(f, "fingerprint {fingerprint}")?;
        }
        Ok(())
    }
}

/// Every change to an entry, oldest first, as text ([`fmt::Display`]) and JSON.
#[derive(Debug)]
pub struct HistoryView<'a> {
    /// Whose entry.
    pub name: &'a IdentityName,
    /// The changes, from the contract's events.
    pub events: &'a [HistoryEvent],
}

impl HistoryView<'_> {
    /// The JSON view: the name and every event with its block, transaction and fields.
    pub fn to_json(&self) -> Value {
        let items: Vec<_> = self
            .events
            .iter()
            .map(|e| {
                let mut v = change_json(&e.change);
                v["event"] = json!(e.change.name());
                v["block"] = json!(e.block_number);
                v["tx"] = json!(e.tx_hash.to_string());
                v["log_index"] = json!(e.log_index);
                v
            })
            .collect();
        json!({"name": self.name.as_str(), "canonical": self.name.canonical(), "events": items})
    }
}

impl fmt::Display for HistoryView<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.events.is_empty() {
            return writeln!(f, "{}: no history (never submitted)", self.name.as_str());
        }
        for e in self.events {
            let details = change_json(&e.change)
                .as_object()
                .map(|o| {
                    o.iter()
                        .map(|(k, v)| {
                            format!("{k}={}", v.as_str().map_or(v.to_string(), str::to_owned))
                        })
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .unwrap_or_default();
            writeln!(
                f,
                "block {:>6}  {:<8} {details}",
                e.block_number,
                e.change.name()
            )?;
        }
        Ok(())
    }
}

/// The fields of one change, as JSON.
fn change_json(change: &Change) -> Value {
    match change {
        Change::Added {
            wallet,
            key_type,
            key,
            commitment,
        } => json!({"wallet": wallet.to_string(), "key_type": key_type,
                    "public_key": hex::encode(key), "commitment": commitment.to_string()}),
        Change::Approved {
            wallet,
            receipt_hash,
        } => json!({"wallet": wallet.to_string(), "receipt_hash": receipt_hash.to_string()}),
        Change::Rotated {
            wallet,
            key_type,
            key,
        } => json!({"wallet": wallet.to_string(), "key_type": key_type,
                    "public_key": hex::encode(key)}),
        Change::Revoked { wallet, by } => {
            json!({"wallet": wallet.to_string(), "by": by.to_string()})
        }
    }
}

/// Gas of each function, from real receipts on a fresh embedded chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GasReport {
    /// Deploying the keystore.
    pub deploy: u64,
    /// addClient.
    pub add: u64,
    /// approveClient.
    pub approve: u64,
    /// rotateKey.
    pub rotate: u64,
    /// revokeClient by the entry's wallet.
    pub revoke: u64,
    /// revokeClient by the owner.
    pub revoke_by_owner: u64,
    /// addClient of a revoked id.
    pub re_add: u64,
    /// reserveClient over another wallet's pending entry.
    pub reserve_over_pending: u64,
    /// addClientWithProof (proof of possession checked on chain).
    pub add_with_proof: u64,
    /// transferOwnership.
    pub transfer_ownership: u64,
    /// acceptOwnership.
    pub accept_ownership: u64,
}

impl GasReport {
    /// addClient + approveClient, the cost of storing one key (held to [`GAS_BUDGET`]).
    pub fn add_and_approve(&self) -> u64 {
        self.add + self.approve
    }

    /// Every figure as (text label, JSON key, gas), in the order they are printed.
    pub fn rows(&self) -> [(&'static str, &'static str, u64); 12] {
        [
            ("deploy", "deploy", self.deploy),
            ("addClient", "addClient", self.add),
            ("approveClient", "approveClient", self.approve),
            (
                "addClient + approveClient",
                "addClient+approveClient",
                self.add_and_approve(),
            ),
            ("rotateKey", "rotateKey", self.rotate),
            ("revokeClient (by wallet)", "revokeClient", self.revoke),
            (
                "revokeClient (by owner)",
                "revokeClient(owner)",
                self.revoke_by_owner,
            ),
            (
                "addClient (after revocation)",
                "addClient(after revocation)",
                self.re_add,
            ),
            (
                "reserveClient (over pending)",
                "reserveClient(over a pending entry)",
                self.reserve_over_pending,
            ),
            (
                "addClientWithProof",
                "addClientWithProof",
                self.add_with_proof,
            ),
            (
                "transferOwnership",
                "transferOwnership",
                self.transfer_ownership,
            ),
            ("acceptOwnership", "acceptOwnership", self.accept_ownership),
        ]
    }
}

impl GasReport {
    /// The JSON view: every figure under its function's name, and the budget.
    pub fn to_json(&self) -> Value {
        let mut out = serde_json::Map::new();
        for (_, key, gas) in self.rows() {
            out.insert(key.into(), gas.into());
        }
        out.insert("budget_addClient+approveClient".into(), GAS_BUDGET.into());
        Value::Object(out)
    }
}

impl fmt::Display for GasReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "gas measured on the embedded chain (revm, Osaka rules):")?;
        for (what, _, gas) in self.rows() {
            writeln!(f, "  {what:<30} {gas:>9}")?;
        }
        writeln!(f, "  budget for add + approve      {GAS_BUDGET:>9}")
    }
}

/// Measures every contract function on a fresh embedded chain (revm, Osaka rules).
pub async fn measure_gas() -> Result<GasReport, AdminError> {
    let chain = EmbeddedChain::default();
    let owner = dev_signer(0);
    let phone = dev_signer(1);
    let other = dev_signer(2);
    let deployed = chain.deploy(&owner).await?;
    let contract = deployed_address(&deployed)?;
    let id = ClientId::of(&name("+15551234567"));
    let key = IdentityKey::generate().public();
    let receipt = b"gas receipt";
    let rh = receipt_hash(receipt);
    let (add, approve) =
        add_and_approve(&chain, contract, &owner, &phone, id, &key, receipt).await?;
    let key2 = IdentityKey::generate().public();
    let rotate = chain
        .rotate_key(contract, &phone, id, key2.tag(), &key2.to_bytes())
        .await?;
    let revoke = chain.revoke_client(contract, &phone, id).await?;
    let key_bytes = key.to_bytes();
    let add_by = |id: ClientId| {
        let commitment = receipt_commitment(&id, other.address(), &rh);
        chain.add_client(contract, &other, id, key.tag(), &key_bytes, commitment)
    };
    let re_add = add_by(id).await?;
    let revoke_by_owner = chain.revoke_client(contract, &owner, id).await?;
    // A squatted number: another wallet's pending entry, replaced by a reservation.
    let squatted = ClientId::of(&name("+15551234568"));
    add_by(squatted).await?;
    let reserve = chain
        .reserve_client(contract, &owner, squatted, phone.address())
        .await?;
    // addClient with the proof of possession checked on chain (P-256 precompile).
    let proven = ClientId::of(&name("+15551234569"));
    let commitment = receipt_commitment(&proven, phone.address(), &rh);
    let add_with_proof = chain
        .add_client_with_proof(
            contract,
            &phone,
            proven,
            &IdentityKey::generate(),
            commitment,
        )
        .await?;
    let transfer = chain
        .transfer_ownership(contract, &owner, other.address())
        .await?;
    let accept = chain.accept_ownership(contract, &other).await?;
    Ok(GasReport {
        deploy: deployed.gas_used,
        add: add.gas_used,
        approve: approve.gas_used,
        rotate: rotate.gas_used,
        revoke: revoke.gas_used,
        revoke_by_owner: revoke_by_owner.gas_used,
        re_add: re_add.gas_used,
        reserve_over_pending: reserve.gas_used,
        add_with_proof: add_with_proof.gas_used,
        transfer_ownership: transfer.gas_used,
        accept_ownership: accept.gas_used,
    })
}

/// A fixed, valid phone number.
fn name(number: &str) -> IdentityName {
    IdentityName::parse(number).expect("a valid E.164 constant")
}

#[cfg(test)]
mod tests {
    use super::*;
    use chaincall_identity::KeyStatus;

    #[tokio::test]
    async fn gas_of_every_function_is_measured_within_the_budget() {
        let report = measure_gas().await.unwrap();
        assert!(report.add_and_approve() <= GAS_BUDGET, "{report:?}");
        for (label, key, gas) in report.rows() {
            assert!(gas > 21_000, "{label} ({key}) costs only {gas}");
        }
    }

    #[tokio::test]
    async fn an_added_and_approved_entry_reads_back_with_its_history() {
        let chain = EmbeddedChain::default();
        let (owner, phone) = (dev_signer(0), dev_signer(1));
        let contract = deployed_address(&chain.deploy(&owner).await.unwrap()).unwrap();
        let bob = name("+15551230002");
        let id = ClientId::of(&bob);
        let key = IdentityKey::generate().public();
        add_and_approve(&chain, contract, &owner, &phone, id, &key, b"r")
            .await
            .unwrap();
        let entry = chain.get_client(contract, id).await.unwrap();
        assert_eq!(entry.status, KeyStatus::Approved);
        let view = EntryView {
            name: &bob,
            contract,
            entry: &entry,
            verified: None,
        };
        let text = view.to_string();
        assert!(text.starts_with("+15551230002 ("), "{text}");
        assert!(
            text.contains(&format!("wallet     {}", phone.address())),
            "{text}"
        );
        assert!(text.contains(&hex::encode(key.to_bytes())), "{text}");
        let json = view.to_json();
        assert_eq!(json["status"], "approved");
        assert_eq!(json["verified"], false);
        assert_eq!(json["fingerprint"].as_str().map(str::len), Some(30));
        let events = chain.history(contract, id).await.unwrap();
        let history = HistoryView {
            name: &bob,
            events: &events,
        };
        let json = history.to_json();
        assert_eq!(json["events"][0]["event"], "added");
        assert_eq!(json["events"][1]["event"], "approved");
        // A second add of the same number is explained with the number, not its hash.
        let err = add_and_approve(&chain, contract, &owner, &phone, id, &key, b"r")
            .await
            .unwrap_err();
        let text = explain(err, &bob).to_string();
        assert!(text.starts_with("+15551230002 is already taken"), "{text}");
    }

    #[test]
    fn checkpoints_parse_or_say_what_is_wrong() {
        let hash = B256::repeat_byte(0xab);
        assert_eq!(parse_checkpoint(&format!(" 7:{hash} ")).unwrap(), (7, hash));
        for bad in ["7", "x:0xab", "7:0x12", ""] {
            let err = parse_checkpoint(bad).unwrap_err().to_string();
            assert!(err.contains("is not NUMBER:HASH"), "{bad}: {err}");
        }
    }

    #[tokio::test]
    async fn header_trust_follows_the_options() {
        let chain = EmbeddedChain::default();
        let (_, what) = header_trust(&chain, None, &[], None).await.unwrap();
        assert!(what.starts_with("checkpoint 0:0x"), "{what}");
        assert!(what.ends_with("(the endpoint's genesis: trust on first use)"));
        let pinned = format!("5:{}", B256::ZERO);
        let (_, what) = header_trust(&chain, Some(&pinned), &[], None)
            .await
            .unwrap();
        assert_eq!(what, format!("checkpoint {pinned}"));
        let quorum = ["http://127.0.0.1:1".to_owned()];
        let err = header_trust(&chain, None, &quorum, None).await.unwrap_err();
        assert_eq!(err.to_string(), "--quorum needs --k N");
    }

    #[tokio::test]
    async fn entry_changes_are_sent_by_the_signer_and_explained_by_name() {
        let chain = EmbeddedChain::default();
        let (owner, phone, stranger) = (dev_signer(0), dev_signer(1), dev_signer(2));
        let contract = deployed_address(&chain.deploy(&owner).await.unwrap()).unwrap();
        let bob = name("+15551230002");
        let key = IdentityKey::generate().public();
        let receipt = b"receipt".to_vec();
        let add = EntryChange::Add {
            key,
            receipt: receipt.clone(),
        };
        change_entry(&chain, contract, &phone, &bob, &add)
            .await
            .unwrap();
        let approve = EntryChange::Approve { receipt };
        change_entry(&chain, contract, &owner, &bob, &approve)
            .await
            .unwrap();
        let rotate = EntryChange::Rotate {
            key: IdentityKey::generate().public(),
        };
        let err = change_entry(&chain, contract, &stranger, &bob, &rotate)
            .await
            .unwrap_err();
        let expected = format!(
            "wallet {} is not the wallet bound to +15551230002",
            stranger.address()
        );
        assert_eq!(err.to_string(), expected);
        change_entry(&chain, contract, &phone, &bob, &rotate)
            .await
            .unwrap();
        change_entry(&chain, contract, &phone, &bob, &EntryChange::Revoke)
            .await
            .unwrap();
        let events = chain.history(contract, ClientId::of(&bob)).await.unwrap();
        let names: Vec<_> = events.iter().map(|e| e.change.name()).collect();
        assert_eq!(names, ["added", "approved", "rotated", "revoked"]);
    }

    #[test]
    fn a_signer_is_read_from_a_private_key_file_only() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        let hex_key = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";
        std::fs::write(&path, format!("{hex_key}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(
            read_signer(&path).unwrap().address(),
            dev_signer(0).address()
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = read_signer(&path).unwrap_err();
        assert!(anyhow_like(&err).contains("chmod 600"), "{err}");
        std::fs::write(&path, "not a key").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let err = read_signer(&path).unwrap_err().to_string();
        assert!(
            err.ends_with(
                "does not hold a hex secp256k1 private key (64 hex digits, as anvil prints)"
            ),
            "{err}"
        );
    }

    /// The error and its causes, outermost first, as `chaincall` prints them.
    fn anyhow_like(err: &dyn std::error::Error) -> String {
        let mut text = err.to_string();
        let mut source = err.source();
        while let Some(cause) = source {
            text.push_str(&format!(": {cause}"));
            source = cause.source();
        }
        text
    }
}
