//! Rotating the phone's identity key on chain (`rotateKey` from the phone's own wallet), crash
//! safe (docs/phone-keys.md).
//!
//! The next key is written into the key file as a *pending rotation* before the transaction
//! leaves, and the old key stays in use until the chain shows the new one. [`Rotator::drive`]
//! settles such a rotation: it reads the phone's entry (proven against the trusted header) and
//! finishes when the new key is approved, waits while a transaction from the wallet is unmined,
//! sends `rotateKey` when nothing was sent, and discards the pending key when the chain refuses
//! it. The caller prints; nothing here writes to the terminal.

use std::path::Path;

use alloy::primitives::{Address, B256, U256};
use alloy::providers::Provider as _;
use alloy::rpc::types::TransactionRequest;
use alloy::sol_types::SolCall as _;
use chaincall_chain::contract::IKeystore;
use chaincall_chain::verified::{HeaderTrust, VerifyError, get_client_verified};
use chaincall_chain::{ChainError, ClientEntry, ClientId, KeystoreChain, RpcChain, TxOutcome};
use chaincall_identity::{Fingerprint, IdentityName, KeyStatus, PublicIdentityKey};

use crate::config_file::PhoneFileConfig;
use crate::error::PhoneError;
use crate::store::PhoneSecrets;

/// After a header the pin does not vouch for, where to look ([`crate::keys::TRUST_HINT`]).
fn trust_hint(e: &VerifyError) -> String {
    match e {
        VerifyError::Header(_) => format!(" ({})", crate::keys::TRUST_HINT),
        _ => String::new(),
    }
}

/// Why a rotation could not be started or settled; each message says what the user can do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RotationError {
    /// [`Rotator::drive`] was called without a pending rotation (a caller bug).
    #[error("no key rotation is pending")]
    NotPending,
    /// The phone's entry could not be read or proven.
    #[error("cannot read {name}'s entry from {rpc_url}{}", trust_hint(source))]
    Entry {
        /// The phone's name.
        name: String,
        /// The node asked.
        rpc_url: String,
        /// Why.
        #[source]
        source: Box<VerifyError>,
    },
    /// The phone has no keystore entry.
    #[error("{0} has no entry in the keystore: onboard first (`chaincall phone onboard`)")]
    NoEntry(String),
    /// The entry's key is not approved.
    #[error("{who} is {status} in the keystore, not approved: only an approved key can be rotated")]
    NotApproved {
        /// The phone's name.
        who: String,
        /// The entry's status.
        status: KeyStatus,
    },
    /// The entry belongs to another wallet.
    #[error("{who}'s entry is bound to wallet {bound}, not to this phone's wallet {wallet}")]
    OtherWallet {
        /// The phone's name.
        who: String,
        /// The entry's wallet, or `(none)`.
        bound: String,
        /// This phone's wallet.
        wallet: Address,
    },
    /// The key approved on chain is not this phone's.
    #[error(
        "the key approved for {who} on chain is not this phone's key ({fingerprint}): was it \
         rotated elsewhere? This phone cannot sign for it"
    )]
    KeyElsewhere {
        /// The phone's name.
        who: String,
        /// Short fingerprint of this phone's key.
        fingerprint: String,
    },
    /// The wallet cannot pay for `rotateKey`.
    #[error(
        "wallet {wallet} has {balance} wei, but rotateKey needs about {needed} wei of gas: send at \
         least {} wei to {wallet} and run `chaincall phone rotate` again", .needed - .balance
    )]
    Funds {
        /// The phone's wallet.
        wallet: Address,
        /// Its balance, wei.
        balance: U256,
        /// What `rotateKey` may cost, wei.
        needed: U256,
    },
    /// The contract would revert `rotateKey`.
    #[error("rotateKey would be refused: {0}")]
    WouldRevert(ChainError),
    /// The gas could not be estimated.
    #[error("cannot estimate the gas of rotateKey: {0}")]
    Estimate(String),
    /// A read from the node failed.
    #[error("cannot read {what}")]
    Rpc {
        /// What was read.
        what: &'static str,
        /// Why.
        #[source]
        source: alloy::transports::TransportError,
    },
    /// The wallet's balance could not be read.
    #[error("cannot read the balance of wallet {wallet}")]
    Balance {
        /// The wallet.
        wallet: Address,
        /// Why.
        #[source]
        source: ChainError,
    },
    /// `rotateKey` was mined but the proven state does not show the new key.
    #[error(
        "rotateKey was mined (tx {0}) but the chain does not show the new key yet; the next phone \
         command checks again"
    )]
    NotVisible(B256),
    /// The chain refused `rotateKey`.
    #[error("the chain refused rotateKey: {0}")]
    Refused(ChainError),
    /// Sending failed in a way that leaves open whether it left.
    #[error(
        "rotateKey may or may not have been sent; the new key is kept in the key file and the \
         next phone command checks the chain and finishes the rotation"
    )]
    Uncertain(#[source] ChainError),
    /// The key file could not be written.
    #[error("cannot update {path}")]
    Save {
        /// The key file.
        path: String,
        /// Why.
        #[source]
        source: PhoneError,
    },
    /// The rotation cannot happen; the pending key was dropped.
    #[error(
        "key rotation not done, pending key{key} discarded (run `chaincall phone rotate` again)"
    )]
    Discarded {
        /// ` FINGERPRINT` of the dropped key, or empty.
        key: String,
        /// Why.
        #[source]
        why: Box<RotationError>,
    },
}

/// Where a pending rotation ended up.
#[derive(Debug)]
pub enum Settled {
    /// The chain holds the new key; the key file now does too, without the old one.
    Finished {
        /// The old public key.
        old: PublicIdentityKey,
        /// The `rotateKey` this run sent, if it sent one.
        tx: Option<TxOutcome>,
    },
    /// A transaction from the wallet is unmined: nothing decided yet.
    InFlight,
    /// The chain refused the rotation; the pending key was dropped and the file saved.
    /// [`RotationError::Discarded`] says why.
    Discarded(RotationError),
}

impl Settled {
    /// What settling a rotation an earlier run left pending did, as the note a command shows
    /// before it goes on (`name` the phone, `secrets` its keys after settling).
    pub fn settle_note(&self, name: &IdentityName, secrets: &PhoneSecrets) -> String {
        match self {
            Settled::Finished { old, .. } => format!(
                "finished the key rotation of {}: now using key {} (was {})",
                name.as_str(),
                Fingerprint::new(name, &secrets.identity.public()),
                Fingerprint::new(name, old)
            ),
            Settled::InFlight => format!(
                "a key rotation of {} is waiting for its transaction from wallet {}; the old key \
                 stays in use until it is mined",
                name.as_str(),
                secrets.wallet.address()
            ),
            Settled::Discarded(why) => {
                // The error and its causes, outermost first, as the CLI shows errors.
                let mut text = why.to_string();
                let mut cause = std::error::Error::source(why);
                while let Some(c) = cause {
                    text = format!("{text}: {c}");
                    cause = c.source();
                }
                format!("{text}; still using the old key")
            }
        }
    }
}

/// A finished `phone rotate` as it is reported: the transaction, the old and new keys'
/// fingerprints, and what the user does next.
#[derive(Debug, Clone, Copy)]
pub struct Rotated<'a> {
    /// The phone.
    pub name: &'a IdentityName,
    /// The replaced key.
    pub old: &'a PublicIdentityKey,
    /// The `rotateKey` this run sent (none when the chain already held the new key).
    pub tx: Option<&'a TxOutcome>,
    /// The phone's keys, now with the new identity key.
    pub secrets: &'a PhoneSecrets,
    /// The key file the old key was deleted from.
    pub key_file: &'a Path,
}

impl<'a> Rotated<'a> {
    /// The report of rotating `name` from `old` to the key in `secrets`.
    pub fn new(
        name: &'a IdentityName,
        old: &'a PublicIdentityKey,
        tx: Option<&'a TxOutcome>,
        secrets: &'a PhoneSecrets,
        key_file: &'a Path,
    ) -> Self {
        Self {
            name,
            old,
            tx,
            secrets,
            key_file,
        }
    }
}

impl std::fmt::Display for Rotated<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = self.name.as_str();
        match self.tx {
            Some(tx) => writeln!(
                f,
                "rotated {name}: tx {} in block {}, gas {}, from wallet {}",
                tx.tx_hash,
                tx.block_number,
                tx.gas_used,
                self.secrets.wallet.address()
            )?,
            None => writeln!(f, "rotated {name} (the chain already held the new key)")?,
        }
        let new = self.secrets.identity.public();
        writeln!(
            f,
            "  old key       {}",
            Fingerprint::new(self.name, self.old)
        )?;
        writeln!(f, "  new key       {}", Fingerprint::new(self.name, &new))?;
        write!(
            f,
            "Your contacts' phones will show \"key changed by rotation\" for {name}, and every \
             safety number with you changes: compare the new ones with your contacts. The old \
             key was deleted from {}; backups made before now hold it: run `chaincall phone \
             export` again.",
            self.key_file.display()
        )
    }
}

/// What a rotation works against: the phone's configuration (contract, key file, node), its
/// chain connection and trusted header, and the key file's passphrase.
pub struct Rotator<'a> {
    /// The configuration.
    pub cfg: &'a PhoneFileConfig,
    /// The chain node.
    pub chain: &'a RpcChain,
    /// The header entries are proven against.
    pub trust: &'a HeaderTrust,
    /// The key file's passphrase.
    pub pass: &'a str,
}

impl<'a> Rotator<'a> {
    /// A rotator for the phone `cfg` describes, on `chain`, proving against `trust`.
    pub fn new(
        cfg: &'a PhoneFileConfig,
        chain: &'a RpcChain,
        trust: &'a HeaderTrust,
        pass: &'a str,
    ) -> Self {
        Self {
            cfg,
            chain,
            trust,
            pass,
        }
    }

    /// Saves `secrets` over the key file.
    fn save(&self, secrets: &PhoneSecrets) -> Result<(), RotationError> {
        secrets
            .save(&self.cfg.key_file, self.pass, true)
            .map_err(|source| RotationError::Save {
                path: self.cfg.key_file.display().to_string(),
                source,
            })
    }

    /// The phone's own entry, proven against the trusted header.
    pub async fn own_entry(&self, name: &IdentityName) -> Result<ClientEntry, RotationError> {
        let id = ClientId::of(name);
        let found = get_client_verified(self.chain, self.cfg.contract, id, self.trust, None)
            .await
            .map_err(|source| RotationError::Entry {
                name: name.as_str().to_owned(),
                rpc_url: self.cfg.rpc_url.clone(),
                source: Box::new(source),
            })?;
        Ok(found.entry)
    }

    /// Starts a rotation: checks the entry and the wallet's funds, then writes the next key into
    /// the key file as pending — before any transaction leaves, so a crash from here on leaves a
    /// rotation [`Self::drive`] settles, never a chain key this phone does not hold.
    pub async fn begin(
        &self,
        secrets: &mut PhoneSecrets,
        name: &IdentityName,
    ) -> Result<(), RotationError> {
        let old = secrets.identity.public();
        let entry = self.own_entry(name).await?;
        check_rotatable(&entry, name, secrets, &old)?;
        let next = secrets.begin_rotation().public();
        self.check_funds(secrets, name, &next).await?;
        self.save(secrets)
    }

    /// Brings a pending rotation to an end where the chain allows it: finishes it when the new
    /// key is approved, sends `rotateKey` when the old key is still approved and nothing is in
    /// flight.
    pub async fn drive(
        &self,
        secrets: &mut PhoneSecrets,
        name: &IdentityName,
    ) -> Result<Settled, RotationError> {
        let next = secrets
            .pending_rotation()
            .map(|k| k.public())
            .ok_or(RotationError::NotPending)?;
        let old = secrets.identity.public();
        let entry = self.own_entry(name).await?;
        if entry.approved_key().as_ref() == Some(&next) {
            return self.finish(secrets, None);
        }
        // Not the new key: the old one must still be approved, for this wallet, to send rotateKey.
        if let Err(why) = check_rotatable(&entry, name, secrets, &old) {
            return self.discard(secrets, why);
        }
        let wallet = secrets.wallet.address();
        let provider = self.chain.provider();
        let rpc = |what| move |source| RotationError::Rpc { what, source };
        let mined = provider
            .get_transaction_count(wallet)
            .latest()
            .await
            .map_err(rpc("the wallet's nonce"))?;
        let sent = provider
            .get_transaction_count(wallet)
            .pending()
            .await
            .map_err(rpc("the wallet's pending nonce"))?;
        if sent > mined {
            return Ok(Settled::InFlight);
        }
        if let Err(why) = self.check_funds(secrets, name, &next).await {
            return self.discard(secrets, why);
        }
        let key = next.to_bytes();
        let id = ClientId::of(name);
        let sent = self
            .chain
            .rotate_key(self.cfg.contract, &secrets.wallet, id, next.tag(), &key)
            .await;
        match sent {
            Ok(tx) => {
                // Believe the proven state, not the receipt alone, before dropping the old key.
                let entry = self.own_entry(name).await?;
                if entry.approved_key().as_ref() != Some(&next) {
                    return Err(RotationError::NotVisible(tx.tx_hash));
                }
                self.finish(secrets, Some(tx))
            }
            // Refused before or by the chain: the key never got there, so it may go.
            Err(e)
                if e.is_contract_error() || matches!(e, ChainError::InsufficientFunds { .. }) =>
            {
                self.discard(secrets, RotationError::Refused(e))
            }
            Err(e) => Err(RotationError::Uncertain(e)),
        }
    }

    /// The pending key becomes the identity key; the old key is dropped (zeroized) and the file
    /// saved.
    fn finish(
        &self,
        secrets: &mut PhoneSecrets,
        tx: Option<TxOutcome>,
    ) -> Result<Settled, RotationError> {
        let old = secrets.finish_rotation().ok_or(RotationError::NotPending)?;
        self.save(secrets)?;
        Ok(Settled::Finished { old, tx })
    }

    /// Drops the pending key (it never reached the chain) and saves the file.
    fn discard(
        &self,
        secrets: &mut PhoneSecrets,
        why: RotationError,
    ) -> Result<Settled, RotationError> {
        let dropped = secrets.discard_rotation();
        self.save(secrets)?;
        let key = dropped.map_or(String::new(), |k| format!(" {}", k.fingerprint()));
        Ok(Settled::Discarded(RotationError::Discarded {
            key,
            why: Box::new(why),
        }))
    }

    /// Refuses early, naming the wallet and the amount, when the wallet cannot pay for
    /// `rotateKey`.
    async fn check_funds(
        &self,
        secrets: &PhoneSecrets,
        name: &IdentityName,
        next: &PublicIdentityKey,
    ) -> Result<(), RotationError> {
        let wallet = secrets.wallet.address();
        let needed = self.rotation_cost(wallet, name, next).await?;
        let balance = self
            .chain
            .balance(wallet)
            .await
            .map_err(|source| RotationError::Balance { wallet, source })?;
        if balance < needed {
            return Err(RotationError::Funds {
                wallet,
                balance,
                needed,
            });
        }
        Ok(())
    }

    /// What `rotateKey` costs at most: the gas `RpcChain` would allow (estimate + 20 %) at
    /// today's maximum fee per gas.
    async fn rotation_cost(
        &self,
        wallet: Address,
        name: &IdentityName,
        next: &PublicIdentityKey,
    ) -> Result<U256, RotationError> {
        let input = IKeystore::rotateKeyCall {
            id: *ClientId::of(name).as_b256(),
            keyType: next.tag(),
            key: next.to_bytes().into(),
        }
        .abi_encode();
        let request = TransactionRequest::default()
            .from(wallet)
            .to(self.cfg.contract)
            .input(input.into());
        let provider = self.chain.provider();
        let gas = provider.estimate_gas(request).await.map_err(|e| {
            match e.as_error_resp().and_then(|p| p.as_revert_data()) {
                Some(data) => RotationError::WouldRevert(ChainError::from_revert_data(&data)),
                None => RotationError::Estimate(e.to_string()),
            }
        })?;
        let fees = provider
            .estimate_eip1559_fees()
            .await
            .map_err(|source| RotationError::Rpc {
                what: "the chain's gas price",
                source,
            })?;
        Ok(U256::from(gas + gas / 5) * U256::from(fees.max_fee_per_gas))
    }
}

/// Refuses a rotation the contract would refuse, with the reason in the user's terms.
pub fn check_rotatable(
    entry: &ClientEntry,
    name: &IdentityName,
    secrets: &PhoneSecrets,
    old: &PublicIdentityKey,
) -> Result<(), RotationError> {
    let who = name.as_str().to_owned();
    match entry.status {
        KeyStatus::Approved => {}
        KeyStatus::Unknown => return Err(RotationError::NoEntry(who)),
        status => return Err(RotationError::NotApproved { who, status }),
    }
    let wallet = secrets.wallet.address();
    if entry.wallet != Some(wallet) {
        let bound = entry.wallet.map_or("(none)".to_owned(), |w| w.to_string());
        return Err(RotationError::OtherWallet { who, bound, wallet });
    }
    if entry.approved_key().as_ref() != Some(old) {
        let fingerprint = old.fingerprint();
        return Err(RotationError::KeyElsewhere { who, fingerprint });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settling_and_rotating_say_what_happened() {
        let secrets = PhoneSecrets::generate("+15550100001");
        let name = IdentityName::Phone("+15550100001".parse().unwrap());
        let note = Settled::InFlight.settle_note(&name, &secrets);
        assert!(
            note.contains(&secrets.wallet.address().to_string())
                && note.ends_with("the old key stays in use until it is mined"),
            "{note}"
        );
        let old = PhoneSecrets::generate("+15550100001").identity.public();
        let key_file = Path::new("/home/alice/phone.key");
        let text = Rotated::new(&name, &old, None, &secrets, key_file).to_string();
        let new = secrets.identity.public();
        let expected = format!(
            "rotated +15550100001 (the chain already held the new key)\n  old key       {}\n  \
             new key       {}\n",
            Fingerprint::new(&name, &old),
            Fingerprint::new(&name, &new)
        );
        assert!(text.starts_with(&expected), "{text}");
        assert!(
            text.contains("deleted from /home/alice/phone.key"),
            "{text}"
        );
    }
}
