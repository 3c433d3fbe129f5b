//! Key continuity: the phone's memory of the keys it has seen, so that a key cannot change silently.
//!
//! A verified lookup proves what the chain says at one block. Continuity adds what the phone saw
//! before: the first approved key seen for an identity is **pinned**; later lookups must show the same
//! key, or a change the chain itself records (a rotation or revocation event, or a freshly proven
//! entry at a later block). Anything else — a different key with no record of the change, an answer
//! from an older block than the pin (a provider replaying state from before a revocation), or a
//! revoked identity coming back without a proven re-registration — is refused and reported.
//!
//! A re-registration ([`RecordedChange::Reregistered`]) is the keystore owner's device recovery: the
//! old entry revoked, then a new key approved for the same number. It is the operator's word plus
//! the number-ownership check behind it, weaker than a rotation signed by the old wallet, so it is
//! reported as its own [`PinUpdate::Reregistered`] for the phone to tell the user.
//!
//! The type is plain data and pure logic: the phone shell persists it and feeds it observations.

use std::collections::HashMap;

use crate::{IdentityName, KeyStatus, PublicIdentityKey};

/// How trustworthy an observation is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Evidence {
    /// Checked against a trusted header with a state proof.
    Proven,
    /// Taken from a provider on trust (plain `eth_call`).
    Unproven,
}

/// One lookup result as the phone saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observation {
    /// The entry's status.
    pub status: KeyStatus,
    /// The entry's key, if any.
    pub key: Option<PublicIdentityKey>,
    /// The block the answer describes.
    pub block: u64,
    /// Whether the answer was proven.
    pub evidence: Evidence,
}

/// A key change the chain records, from the keystore's events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordedChange {
    /// The identity's wallet rotated to `new_key` at `block`.
    Rotated {
        /// Block of the rotation.
        block: u64,
        /// The key rotated to.
        new_key: PublicIdentityKey,
    },
    /// The identity was revoked at `block`.
    Revoked {
        /// Block of the revocation.
        block: u64,
    },
    /// The identity was revoked and then approved again with `new_key` (owner-assisted device
    /// recovery): the entry proven not approved at `revoked` and approved with `new_key` at `block`.
    Reregistered {
        /// Block at which the entry was proven revoked (not approved).
        revoked: u64,
        /// Block at which `new_key` was proven approved (after `revoked`).
        block: u64,
        /// The key approved again.
        new_key: PublicIdentityKey,
    },
}

/// What an accepted observation changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PinUpdate {
    /// First approved key seen for this identity: now pinned.
    Pinned,
    /// Same key as pinned; nothing changed.
    Unchanged,
    /// The key changed through a recorded rotation; the pin moved to the new key.
    Rotated {
        /// The key that was pinned before.
        old: PublicIdentityKey,
    },
    /// The identity was revoked; the pin now refuses it.
    Revoked,
    /// The identity was revoked and approved again with another key (device recovery, proven by a
    /// [`RecordedChange::Reregistered`]); the pin moved to the new key.
    Reregistered {
        /// The key pinned before, when the pin still held one (`None` when the pin had already
        /// recorded the revocation).
        old: Option<PublicIdentityKey>,
        /// Block at which the revocation was proven.
        revoked: u64,
        /// Block at which the new key was proven approved.
        block: u64,
    },
    /// Not approved and never pinned (unknown or pending): nothing to pin.
    NotPinned,
}

/// Why an observation was refused. The caller must not use the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ContinuityError {
    /// The key differs from the pinned one and the chain records no change to it.
    #[error(
        "{name}'s key changed from {pinned} to {seen} with no rotation recorded on chain; refusing the new key"
    )]
    UnrecordedKeyChange {
        /// The identity.
        name: IdentityName,
        /// Fingerprint of the pinned key.
        pinned: String,
        /// Fingerprint of the key seen.
        seen: String,
    },
    /// The answer describes an older block than the pin: stale or replayed state.
    #[error(
        "{name}: answer is from block {seen}, older than block {pinned} already seen; refusing stale state"
    )]
    Stale {
        /// The identity.
        name: IdentityName,
        /// The block of the pin.
        pinned: u64,
        /// The block of the answer.
        seen: u64,
    },
    /// The identity was revoked earlier; it stays refused.
    #[error("{name} was revoked at block {revoked_at}; refusing it")]
    Revoked {
        /// The identity.
        name: IdentityName,
        /// Where the revocation was seen.
        revoked_at: u64,
    },
    /// An approved entry without a key: the answer is malformed.
    #[error("{name}: approved entry carries no key")]
    MissingKey {
        /// The identity.
        name: IdentityName,
    },
}

/// One identity's pin, as the phone persists it ([`KeyPins::pin`], [`KeyPins::restore`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pin {
    /// The approved key pinned, as of `block`.
    Key {
        /// The pinned key.
        key: PublicIdentityKey,
        /// The block the pin describes.
        block: u64,
    },
    /// The identity was revoked at `block`: refused from then on.
    Revoked {
        /// Where the revocation was seen.
        block: u64,
    },
}

/// The pins of every identity the phone has looked up.
#[derive(Debug, Clone, Default)]
pub struct KeyPins {
    pins: HashMap<IdentityName, Pin>,
}

impl KeyPins {
    /// No pins yet (trust on first approved sight).
    pub fn new() -> Self {
        Self::default()
    }

    /// The pinned key of an identity, if one is pinned and not revoked.
    pub fn pinned_key(&self, name: &IdentityName) -> Option<&PublicIdentityKey> {
        match self.pins.get(name) {
            Some(Pin::Key { key, .. }) => Some(key),
            _ => None,
        }
    }

    /// The pin of an identity (to persist it), if any.
    pub fn pin(&self, name: &IdentityName) -> Option<&Pin> {
        self.pins.get(name)
    }

    /// Restores a pin the phone persisted earlier (replacing any pin of `name`). The decision
    /// logic stays in [`KeyPins::observe`]: this only brings back what it decided before.
    pub fn restore(&mut self, name: IdentityName, pin: Pin) {
        self.pins.insert(name, pin);
    }

    /// The block at which a recorded revocation of `name` was seen, if its pin refuses it as revoked.
    pub fn revoked_at(&self, name: &IdentityName) -> Option<u64> {
        match self.pins.get(name) {
            Some(Pin::Revoked { block }) => Some(*block),
            _ => None,
        }
    }

    /// Checks a lookup result against the pin and updates the pin if the change is recorded.
    ///
    /// `changes` are the keystore events for this identity the caller fetched since the pin's block
    /// (order does not matter; changes at or before the pin's block are ignored).
    pub fn observe(
        &mut self,
        name: &IdentityName,
        seen: &Observation,
        changes: &[RecordedChange],
    ) -> Result<PinUpdate, ContinuityError> {
        let pin = self.pins.get(name).cloned();
        let pin_block = match &pin {
            Some(Pin::Key { block, .. } | Pin::Revoked { block }) => Some(*block),
            None => None,
        };
        if let Some(pinned) = pin_block
            && seen.block < pinned
        {
            return Err(ContinuityError::Stale {
                name: name.clone(),
                pinned,
                seen: seen.block,
            });
        }
        // Only a proven answer may move the pin's block forward: an unproven one could claim a far
        // future block and make every honest answer after it look stale.
        let pin_at = match seen.evidence {
            Evidence::Proven => seen.block,
            Evidence::Unproven => pin_block.unwrap_or(0),
        };
        let after_pin = |block: u64| pin_block.is_none_or(|p| block > p) && block <= seen.block;
        // Where a revocation is on record: the proven answer's block, or the event's.
        let revocation_at = match seen.evidence {
            Evidence::Proven => Some(seen.block),
            Evidence::Unproven => changes.iter().find_map(|c| match c {
                RecordedChange::Revoked { block } if after_pin(*block) => Some(*block),
                _ => None,
            }),
        };

        // A proven re-registration of the key seen, after the pin: the revocation must follow the
        // key pin (or be the pin), and only a proven answer may carry it, so a provider's word
        // never brings a revoked identity back.
        let reregistered = |after: u64, revocation_recorded: bool| {
            if seen.evidence != Evidence::Proven || seen.status != KeyStatus::Approved {
                return None;
            }
            changes.iter().find_map(|c| match c {
                RecordedChange::Reregistered {
                    revoked,
                    block,
                    new_key,
                } if seen.key.as_ref() == Some(new_key)
                    && (revocation_recorded || *revoked > after)
                    && revoked < block
                    && *block > after
                    && *block <= seen.block =>
                {
                    Some((*revoked, *block, new_key.clone()))
                }
                _ => None,
            })
        };

        match (pin, seen.status) {
            (Some(Pin::Revoked { block: revoked_pin }), KeyStatus::Approved)
                if let Some((revoked, block, key)) = reregistered(revoked_pin, true) =>
            {
                self.pins
                    .insert(name.clone(), Pin::Key { key, block: pin_at });
                Ok(PinUpdate::Reregistered {
                    old: None,
                    revoked,
                    block,
                })
            }
            (
                Some(Pin::Key {
                    key: pinned,
                    block: key_pin,
                }),
                KeyStatus::Approved,
            ) if seen.key.as_ref() != Some(&pinned)
                && let Some((revoked, block, key)) = reregistered(key_pin, false) =>
            {
                self.pins
                    .insert(name.clone(), Pin::Key { key, block: pin_at });
                Ok(PinUpdate::Reregistered {
                    old: Some(pinned),
                    revoked,
                    block,
                })
            }
            (Some(Pin::Revoked { block }), _) => Err(ContinuityError::Revoked {
                name: name.clone(),
                revoked_at: block,
            }),
            (_, KeyStatus::Revoked) if revocation_at.is_some() => {
                let block = revocation_at.unwrap_or(pin_at);
                self.pins.insert(name.clone(), Pin::Revoked { block });
                Ok(PinUpdate::Revoked)
            }
            // An unproven "revoked" with no event is still a refusal to use the key; just don't
            // make it permanent on a provider's word.
            (_, KeyStatus::Revoked) => Err(ContinuityError::Revoked {
                name: name.clone(),
                revoked_at: seen.block,
            }),
            (None, KeyStatus::Approved) => {
                let key = seen
                    .key
                    .clone()
                    .ok_or_else(|| ContinuityError::MissingKey { name: name.clone() })?;
                self.pins
                    .insert(name.clone(), Pin::Key { key, block: pin_at });
                Ok(PinUpdate::Pinned)
            }
            (None, _) => Ok(PinUpdate::NotPinned),
            (Some(Pin::Key { key: pinned, .. }), KeyStatus::Approved) => {
                let key = seen
                    .key
                    .clone()
                    .ok_or_else(|| ContinuityError::MissingKey { name: name.clone() })?;
                if key == pinned {
                    self.pins
                        .insert(name.clone(), Pin::Key { key, block: pin_at });
                    return Ok(PinUpdate::Unchanged);
                }
                // A fresh proof of the new key is itself the on-chain record; otherwise an event must be.
                let rotation_recorded = seen.evidence == Evidence::Proven
                    || changes.iter().any(|c| {
                    matches!(c, RecordedChange::Rotated { block, new_key } if after_pin(*block) && *new_key == key)
                });
                if !rotation_recorded {
                    return Err(ContinuityError::UnrecordedKeyChange {
                        name: name.clone(),
                        pinned: pinned.fingerprint(),
                        seen: key.fingerprint(),
                    });
                }
                self.pins
                    .insert(name.clone(), Pin::Key { key, block: pin_at });
                Ok(PinUpdate::Rotated { old: pinned })
            }
            // Pinned, now unknown or pending: the entry cannot un-approve on this contract, so the
            // answer is wrong or stale. Keep the pin; refuse the answer as an unrecorded change.
            (Some(Pin::Key { key: pinned, .. }), _) => Err(ContinuityError::UnrecordedKeyChange {
                name: name.clone(),
                pinned: pinned.fingerprint(),
                seen: format!("<{}>", seen.status),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::IdentityKey;

    fn bob() -> IdentityName {
        "+15551230002".parse().unwrap()
    }

    fn approved(key: &PublicIdentityKey, block: u64, evidence: Evidence) -> Observation {
        Observation {
            status: KeyStatus::Approved,
            key: Some(key.clone()),
            block,
            evidence,
        }
    }

    /// Pins bob to a fresh key, proven at block 10; returns the pins and that key.
    fn pinned_at_10() -> (KeyPins, PublicIdentityKey) {
        let mut pins = KeyPins::new();
        let key = IdentityKey::generate().public();
        pins.observe(&bob(), &approved(&key, 10, Evidence::Proven), &[])
            .unwrap();
        (pins, key)
    }

    #[test]
    fn pins_on_first_approved_sight_and_keeps_the_same_key() {
        let mut pins = KeyPins::new();
        let k = IdentityKey::generate().public();
        let pending = Observation {
            status: KeyStatus::Pending,
            key: Some(k.clone()),
            block: 5,
            evidence: Evidence::Proven,
        };
        assert_eq!(
            pins.observe(&bob(), &pending, &[]),
            Ok(PinUpdate::NotPinned)
        );
        assert_eq!(
            pins.observe(&bob(), &approved(&k, 10, Evidence::Proven), &[]),
            Ok(PinUpdate::Pinned)
        );
        assert_eq!(
            pins.observe(&bob(), &approved(&k, 12, Evidence::Unproven), &[]),
            Ok(PinUpdate::Unchanged)
        );
        assert_eq!(pins.pinned_key(&bob()), Some(&k));
    }

    #[test]
    fn a_key_change_needs_a_recorded_rotation() {
        let (mut pins, old) = pinned_at_10();
        let new = IdentityKey::generate().public();
        // A provider shows another key, unproven and without any event: refused.
        let err = pins
            .observe(&bob(), &approved(&new, 20, Evidence::Unproven), &[])
            .unwrap_err();
        assert!(matches!(err, ContinuityError::UnrecordedKeyChange { .. }));
        assert_eq!(pins.pinned_key(&bob()), Some(&old));
        // A rotation event to a *different* key, or one before the pin, does not count.
        let other = IdentityKey::generate().public();
        let wrong = [
            RecordedChange::Rotated {
                block: 15,
                new_key: other,
            },
            RecordedChange::Rotated {
                block: 9,
                new_key: new.clone(),
            },
        ];
        assert!(
            pins.observe(&bob(), &approved(&new, 20, Evidence::Unproven), &wrong)
                .is_err()
        );
        // The recorded rotation event moves the pin.
        let rotated = [RecordedChange::Rotated {
            block: 15,
            new_key: new.clone(),
        }];
        assert_eq!(
            pins.observe(&bob(), &approved(&new, 20, Evidence::Unproven), &rotated),
            Ok(PinUpdate::Rotated { old: old.clone() })
        );
        assert_eq!(pins.pinned_key(&bob()), Some(&new));
        // And the old key is now the one refused.
        assert!(
            pins.observe(&bob(), &approved(&old, 21, Evidence::Unproven), &[])
                .is_err()
        );
        // A fresh proof of a newer key is itself an on-chain record: accepted and reported.
        let newest = IdentityKey::generate().public();
        assert_eq!(
            pins.observe(&bob(), &approved(&newest, 30, Evidence::Proven), &[]),
            Ok(PinUpdate::Rotated { old: new })
        );
    }

    #[test]
    fn unproven_answers_cannot_move_the_pin_forward() {
        let (mut pins, k) = pinned_at_10();
        // A provider claims a far-future block; honest proven answers after it must still pass.
        pins.observe(&bob(), &approved(&k, 1_000_000, Evidence::Unproven), &[])
            .unwrap();
        assert_eq!(
            pins.observe(&bob(), &approved(&k, 11, Evidence::Proven), &[]),
            Ok(PinUpdate::Unchanged)
        );
    }

    #[test]
    fn stale_state_and_revocation_are_refused() {
        let (mut pins, k) = pinned_at_10();
        assert!(matches!(
            pins.observe(&bob(), &approved(&k, 9, Evidence::Proven), &[]),
            Err(ContinuityError::Stale {
                pinned: 10,
                seen: 9,
                ..
            })
        ));
        // An unproven "revoked" with no event refuses the call but does not make it permanent.
        let unproven_revoked = Observation {
            status: KeyStatus::Revoked,
            key: Some(k.clone()),
            block: 11,
            evidence: Evidence::Unproven,
        };
        assert!(matches!(
            pins.observe(&bob(), &unproven_revoked, &[]),
            Err(ContinuityError::Revoked { .. })
        ));
        assert_eq!(pins.pinned_key(&bob()), Some(&k));
        // A recorded revocation is permanent: a later "approved" answer for the same key (a replay of
        // old state from a provider) is refused.
        let revoked = Observation {
            block: 12,
            ..unproven_revoked
        };
        assert_eq!(
            pins.observe(&bob(), &revoked, &[RecordedChange::Revoked { block: 12 }]),
            Ok(PinUpdate::Revoked)
        );
        assert!(matches!(
            pins.observe(&bob(), &approved(&k, 13, Evidence::Proven), &[]),
            Err(ContinuityError::Revoked { revoked_at: 12, .. })
        ));
        assert_eq!(pins.pinned_key(&bob()), None);
    }

    #[test]
    fn a_pinned_identity_cannot_fall_back_to_unknown() {
        let (mut pins, k) = pinned_at_10();
        let unknown = Observation {
            status: KeyStatus::Unknown,
            key: None,
            block: 11,
            evidence: Evidence::Unproven,
        };
        assert!(pins.observe(&bob(), &unknown, &[]).is_err());
        assert_eq!(pins.pinned_key(&bob()), Some(&k));
    }

    #[test]
    fn a_proven_re_registration_after_a_revocation_moves_the_pin() {
        let (mut pins, old) = pinned_at_10();
        let new = IdentityKey::generate().public();
        let rereg = |revoked, block| RecordedChange::Reregistered {
            revoked,
            block,
            new_key: new.clone(),
        };
        // An unproven answer, with or without the record: refused, the pin stays.
        for changes in [vec![], vec![rereg(12, 15)]] {
            assert!(
                pins.observe(&bob(), &approved(&new, 20, Evidence::Unproven), &changes)
                    .is_err()
            );
        }
        // A proven answer whose record is a revocation before the pin, or a re-approval of
        // another key, is not a re-registration. (A proven key change as such passes the pins:
        // the lookup proves rotations before it asks them.)
        let other = IdentityKey::generate().public();
        for (seen, change) in [
            (approved(&new, 20, Evidence::Proven), rereg(9, 15)),
            (approved(&other, 20, Evidence::Proven), rereg(12, 15)),
        ] {
            let update = pins.clone().observe(&bob(), &seen, &[change]);
            assert!(
                !matches!(update, Ok(PinUpdate::Reregistered { .. })),
                "{update:?}"
            );
        }
        assert_eq!(pins.pinned_key(&bob()), Some(&old));
        assert_eq!(
            pins.observe(
                &bob(),
                &approved(&new, 20, Evidence::Proven),
                &[rereg(12, 15)]
            ),
            Ok(PinUpdate::Reregistered {
                old: Some(old.clone()),
                revoked: 12,
                block: 15
            })
        );
        assert_eq!(pins.pinned_key(&bob()), Some(&new));
    }

    #[test]
    fn a_revoked_pin_comes_back_only_through_a_proven_re_registration() {
        let (mut pins, old) = pinned_at_10();
        let new = IdentityKey::generate().public();
        let revoked = Observation {
            status: KeyStatus::Revoked,
            key: Some(old.clone()),
            block: 12,
            evidence: Evidence::Proven,
        };
        assert_eq!(pins.observe(&bob(), &revoked, &[]), Ok(PinUpdate::Revoked));
        let rereg = RecordedChange::Reregistered {
            revoked: 12,
            block: 14,
            new_key: new.clone(),
        };
        // Approved again, but proven without the record, or the record with an unproven answer,
        // or a re-approval no later than the revocation seen: still refused.
        assert!(matches!(
            pins.observe(&bob(), &approved(&new, 15, Evidence::Proven), &[]),
            Err(ContinuityError::Revoked { revoked_at: 12, .. })
        ));
        assert!(matches!(
            pins.observe(
                &bob(),
                &approved(&new, 15, Evidence::Unproven),
                std::slice::from_ref(&rereg)
            ),
            Err(ContinuityError::Revoked { .. })
        ));
        let early = RecordedChange::Reregistered {
            revoked: 11,
            block: 12,
            new_key: new.clone(),
        };
        assert!(
            pins.observe(&bob(), &approved(&new, 15, Evidence::Proven), &[early])
                .is_err()
        );
        assert_eq!(
            pins.observe(&bob(), &approved(&new, 15, Evidence::Proven), &[rereg]),
            Ok(PinUpdate::Reregistered {
                old: None,
                revoked: 12,
                block: 14
            })
        );
        assert_eq!(pins.pinned_key(&bob()), Some(&new));
        // The old key stays refused.
        assert!(
            pins.observe(&bob(), &approved(&old, 16, Evidence::Unproven), &[])
                .is_err()
        );
    }
}
