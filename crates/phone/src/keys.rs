//! Key lookups the phone makes on chain, before a call leaves and when one arrives.
//!
//! Every lookup is timed (the demo's "verified key retrieval") and, when the phone is configured
//! with a [`HeaderTrust`], proven with `eth_getProof` against a trusted block header rather than
//! taken from the RPC provider on trust, and checked for key continuity ([`PinnedLookup`]): the
//! first approved key seen for a number is pinned; a rotation or revocation recorded on chain moves
//! the pin and is logged; a key that changed with no such record is refused. Results feed a
//! [`StaticDirectory`] snapshot that the sans-IO MIKEY and handshake cores read synchronously.

use std::sync::Arc;
use std::time::{Duration, Instant};

use alloy::primitives::Address;
use chaincall_chain::verified::{HeaderTrust, PinnedLookup};
use chaincall_chain::{ClientEntry, ClientId, KeystoreChain};
use chaincall_identity::continuity::PinUpdate;
use chaincall_identity::{IdentityName, KeyStatus, StaticDirectory};

use crate::error::PhoneError;

/// One lookup's answer and what it cost.
#[derive(Debug, Clone)]
pub struct LookedUp {
    /// The entry as read (and, if `verified`, proven).
    pub entry: ClientEntry,
    /// Whether a storage proof against a trusted header backs it.
    pub verified: bool,
    /// The block the answer is proven at (verified lookups).
    pub block: Option<u64>,
    /// Bytes of proof checked.
    pub proof_bytes: usize,
    /// Wall time of the lookup.
    pub elapsed: Duration,
    /// What the lookup did to this identity's pin (verified lookups only).
    pub pin: Option<PinUpdate>,
}

/// Looks keys up in the keystore contract, verified when a header trust is configured.
pub struct KeyLookup<C> {
    chain: Arc<C>,
    contract: Address,
    trust: Option<Arc<HeaderTrust>>,
    pins: Arc<tokio::sync::Mutex<PinnedLookup>>,
}

impl<C> std::fmt::Debug for KeyLookup<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyLookup")
            .field("contract", &self.contract)
            .field("verified", &self.trust.is_some())
            .finish()
    }
}

impl<C> Clone for KeyLookup<C> {
    fn clone(&self) -> Self {
        Self {
            chain: self.chain.clone(),
            contract: self.contract,
            trust: self.trust.clone(),
            pins: self.pins.clone(),
        }
    }
}

impl<C: KeystoreChain> KeyLookup<C> {
    /// Lookups against `contract`; `trust` makes them verified (recommended; `None` trusts the
    /// node's `eth_call` answers).
    pub fn new(chain: Arc<C>, contract: Address, trust: Option<Arc<HeaderTrust>>) -> Self {
        Self {
            chain,
            contract,
            trust,
            pins: Arc::new(tokio::sync::Mutex::new(PinnedLookup::new(contract))),
        }
    }

    /// The chain.
    pub fn chain(&self) -> &Arc<C> {
        &self.chain
    }

    /// The keystore contract.
    pub fn contract(&self) -> Address {
        self.contract
    }

    /// Whether lookups are proven.
    pub fn is_verified(&self) -> bool {
        self.trust.is_some()
    }

    /// Looks `name` up.
    pub async fn lookup(&self, name: &IdentityName) -> Result<LookedUp, PhoneError> {
        let started = Instant::now();
        let id = ClientId::of(name);
        let fail = |reason: String| PhoneError::Lookup {
            name: name.clone(),
            reason,
        };
        match &self.trust {
            Some(trust) => {
                let mut pins = self.pins.lock().await;
                let found = pins
                    .lookup(&*self.chain, trust, name, None)
                    .await
                    .map_err(|e| fail(e.to_string()))?;
                match &found.update {
                    PinUpdate::Rotated { old } => tracing::warn!(
                        %name,
                        old = %old.fingerprint(),
                        block = found.verified.block_number,
                        "key rotated on chain since the last lookup: pin moved to the new key"
                    ),
                    PinUpdate::Revoked => {
                        tracing::warn!(%name, "key revoked on chain: refusing it from now on")
                    }
                    PinUpdate::Reregistered { block, .. } => {
                        let notice = self.recovery_notice(*block).await;
                        tracing::warn!(%name, "{notice}");
                    }
                    PinUpdate::Pinned => tracing::debug!(%name, "key pinned"),
                    _ => {}
                }
                let v = found.verified;
                Ok(LookedUp {
                    entry: v.entry,
                    verified: true,
                    block: Some(v.block_number),
                    proof_bytes: v.proof_bytes,
                    elapsed: started.elapsed(),
                    pin: Some(found.update),
                })
            }
            None => {
                let entry = self
                    .chain
                    .get_client(self.contract, id)
                    .await
                    .map_err(|e| fail(e.to_string()))?;
                Ok(LookedUp {
                    entry,
                    verified: false,
                    block: None,
                    proof_bytes: 0,
                    elapsed: started.elapsed(),
                    pin: None,
                })
            }
        }
    }

    /// What the phone tells the user about a re-registration approved at `block`
    /// ([`PinUpdate::Reregistered`]): the operator's word, weaker than a rotation the old wallet
    /// signed, so it is spelled out rather than passed off as a rotation.
    pub async fn recovery_notice(&self, block: u64) -> String {
        // The date is for display only; the block number is what the proof covers.
        let date = self
            .chain
            .block_header(block)
            .await
            .map_or_else(|_| "an unknown date".to_owned(), |h| utc_date(h.timestamp));
        format!(
            "key replaced on {date} (block {block}) after the operator revoked the old key (device recovery)"
        )
    }

    /// Looks `name` up and insists on an approved key, with a message for each other status.
    pub async fn approved(&self, name: &IdentityName) -> Result<LookedUp, PhoneError> {
        let found = self.lookup(name).await?;
        match found.entry.status {
            KeyStatus::Approved if found.entry.approved_key().is_some() => Ok(found),
            KeyStatus::Unknown => Err(PhoneError::UnknownCallee(name.clone())),
            status => Err(PhoneError::CalleeNotApproved {
                name: name.clone(),
                status,
            }),
        }
    }

    /// Adds a looked-up entry to a directory snapshot for the sans-IO cores.
    pub fn record(directory: &mut StaticDirectory, name: &IdentityName, found: &LookedUp) {
        if let Ok(key) = found.entry.public_key() {
            directory.insert(name.clone(), found.entry.status, key);
        }
    }
}

/// A Unix time as a UTC calendar date, `YYYY-MM-DD`.
pub fn utc_date(unix_secs: u64) -> String {
    let (year, month, day) =
        civil_from_days(i64::try_from(unix_secs / 86_400).unwrap_or(i64::MAX / 2));
    format!("{year:04}-{month:02}-{day:02}")
}

/// The proleptic Gregorian (year, month, day) of a day count since 1970-01-01 (H. Hinnant's
/// civil-from-days; no date crate for a line of display).
pub fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let (era, doe) = (z.div_euclid(146_097), z.rem_euclid(146_097));
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use chaincall_chain::{EmbeddedChain, KeystoreChain};

    use super::KeyLookup;

    /// What the user reads after a contact's device recovery: the date and block of the new
    /// approval, and that the operator revoked the old key.
    #[tokio::test]
    async fn a_re_registration_is_told_with_its_date_and_block() {
        let chain = Arc::new(EmbeddedChain::default());
        let header = chain.block_header(0).await.unwrap();
        let lookup = KeyLookup::new(chain, alloy::primitives::Address::ZERO, None);
        assert_eq!(
            lookup.recovery_notice(0).await,
            format!(
                "key replaced on {} (block 0) after the operator revoked the old key (device recovery)",
                super::utc_date(header.timestamp)
            )
        );
        assert!(
            lookup
                .recovery_notice(99)
                .await
                .starts_with("key replaced on an unknown date (block 99)")
        );
    }

    #[test]
    fn utc_dates() {
        assert_eq!(super::utc_date(0), "1970-01-01");
        assert_eq!(super::utc_date(951_782_400), "2000-02-29");
        assert_eq!(super::utc_date(1_796_601_600), "2026-12-07");
    }
}
