//! Verification of a received Identity header against the caller's on-chain key.

use chaincall_identity::{IdentityName, PublicIdentityKey};

use crate::token::check_authority;
use crate::{
    IdentityHeader, KeystoreAddress, MediaBinding, MemoryReplayCache, Party, PassportError,
    ReplayCache, ReplayError,
};

/// What a verifier trusts and how fresh a PASSporT must be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifierConfig {
    /// The chain whose keystore this verifier reads.
    pub chain_id: u64,
    /// The keystore contract it reads.
    pub keystore: KeystoreAddress,
    /// The oldest `iat` accepted, in seconds before now (RFC 8224 §4.1 recommends 60).
    pub max_age_secs: u64,
    /// How far in the future `iat` may lie, in seconds (clock skew between the phones).
    pub max_future_secs: u64,
}

impl VerifierConfig {
    /// The RFC 8224 freshness default: 60 seconds.
    pub const DEFAULT_MAX_AGE_SECS: u64 = 60;
    /// Allowed clock skew into the future: 5 seconds.
    pub const DEFAULT_MAX_FUTURE_SECS: u64 = 5;

    /// A verifier of the keystore at `keystore` on chain `chain_id`, with the default window.
    pub fn new(chain_id: u64, keystore: KeystoreAddress) -> Self {
        Self {
            chain_id,
            keystore,
            max_age_secs: Self::DEFAULT_MAX_AGE_SECS,
            max_future_secs: Self::DEFAULT_MAX_FUTURE_SECS,
        }
    }
}

/// What the request that carried the PASSporT says, for the claims to match.
#[derive(Debug, Clone, Copy)]
pub struct Expected<'a> {
    /// The calling party the request claims (its From user, canonicalised): RFC 8224 §6.2.1
    /// requires `orig` to match it, else a valid token for one caller vouches for a From that
    /// names another.
    pub orig: &'a Party,
    /// The called party this request reached (its To / Request-URI, canonicalised).
    pub dest: &'a Party,
    /// The binding of the SDP received with the request ([`MediaBinding::from_sdp`]).
    pub media: &'a MediaBinding,
}

/// A PASSporT that passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The identity whose on-chain key signed.
    pub signer: IdentityName,
    /// The calling party it vouches for.
    pub orig: Party,
    /// Its origination id.
    pub origid: String,
    /// When it was issued.
    pub iat: u64,
}

/// Verifies Identity headers; owns the replay cache.
///
/// Call order per request: [`IdentityHeader::parse`] (or [`crate::require_identity`]), then
/// [`Self::check_locator`], then look the key of `header.locator().name()` up on chain (verified;
/// a missing or unapproved key is [`PassportError::KeyNotFound`] /
/// [`PassportError::KeyNotApproved`]), then [`Self::verify`].
#[derive(Debug, Clone)]
pub struct Verifier<R = MemoryReplayCache> {
    config: VerifierConfig,
    replay: R,
}

impl<R: ReplayCache> Verifier<R> {
    /// A verifier with `config` remembering accepted PASSporTs in `replay`.
    pub fn new(config: VerifierConfig, replay: R) -> Self {
        Self { config, replay }
    }

    /// Its configuration.
    pub fn config(&self) -> &VerifierConfig {
        &self.config
    }

    /// Whether the key `header` names is in the keystore this verifier reads: else 436 Bad
    /// Identity Info (the credential cannot be acquired here).
    pub fn check_locator(&self, header: &IdentityHeader) -> Result<(), PassportError> {
        let locator = header.locator();
        if locator.chain_id() != self.config.chain_id || locator.keystore() != self.config.keystore
        {
            return Err(PassportError::ForeignKeystore {
                chain_id: locator.chain_id(),
                keystore: locator.keystore().to_string(),
            });
        }
        Ok(())
    }

    /// Whether `header`'s key is one this verifier may use for a request whose From claims
    /// `claimed`: in its keystore ([`Self::check_locator`]) and naming that same identity. A token
    /// signed by another identity's key cannot vouch for the From, so the caller need not look
    /// that key up: [`PassportError::WrongOrig`].
    pub fn check_key_for(
        &self,
        header: &IdentityHeader,
        claimed: &IdentityName,
    ) -> Result<(), PassportError> {
        self.check_locator(header)?;
        if header.locator().name() != claimed {
            return Err(PassportError::WrongOrig {
                orig: header.passport().claims().orig.to_string(),
                claimed: claimed.canonical(),
            });
        }
        Ok(())
    }

    /// Checks, in this order: the keystore ([`Self::check_locator`]), the signature under `key`
    /// (the approved on-chain key of `header.locator().name()`), that this identity may vouch
    /// for `orig` and that `orig` is the caller the request claims, `iat` freshness at `now`
    /// (Unix seconds), `dest`, the media binding, and last
    /// the replay cache (so only valid PASSporTs take room in it).
    pub fn verify(
        &mut self,
        header: &IdentityHeader,
        key: &PublicIdentityKey,
        expected: &Expected<'_>,
        now: u64,
    ) -> Result<Verified, PassportError> {
        self.check_locator(header)?;
        let passport = header.passport();
        passport.verify_signature(key)?;
        let claims = passport.claims();
        let signer = header.locator().name();
        check_authority(signer, &claims.orig)?;
        if claims.orig != *expected.orig {
            return Err(PassportError::WrongOrig {
                orig: claims.orig.to_string(),
                claimed: expected.orig.to_string(),
            });
        }
        let iat = claims.iat;
        if iat.saturating_add(self.config.max_age_secs) < now {
            return Err(PassportError::Stale { iat, now });
        }
        if iat > now.saturating_add(self.config.max_future_secs) {
            return Err(PassportError::FromTheFuture { iat, now });
        }
        if !claims.dest.contains(expected.dest) {
            return Err(PassportError::WrongDest(expected.dest.to_string()));
        }
        if claims.media != *expected.media {
            return Err(PassportError::MediaMismatch);
        }
        // Remembered until freshness alone refuses it.
        let expires_at = iat
            .saturating_add(self.config.max_age_secs)
            .saturating_add(1);
        self.replay
            .check_and_insert(passport.id(), expires_at, now)
            .map_err(|e| match e {
                ReplayError::Replayed => PassportError::Replayed,
                ReplayError::Full { capacity } => PassportError::ReplayCacheFull(capacity),
            })?;
        Ok(Verified {
            signer: signer.clone(),
            orig: claims.orig.clone(),
            origid: claims.origid.clone(),
            iat,
        })
    }
}
