//! Who is calling: the caller as the INVITE's From claims it, and what the call's offer proves
//! about that claim, decided before the phone rings (issue 14, "truthful caller display").
//!
//! Sans-IO: the From header's parts, the offer, the result of looking the claimed number up on
//! chain and the clock in; a [`Verification`] and what to do with the call ([`Decision`]) out.
//!
//! | state | when |
//! | --- | --- |
//! | [`Verification::Verified`] | a PASSporT in the INVITE's Identity header (RFC 8224/8225) and/or a MIKEY offer (PKE or DH-SIGN) whose signature verifies under the on-chain key of exactly the number the From claims, and no proof the call carries fails ([`Proof`] says which) |
//! | [`Verification::Unverified`] | no proof (SDES without an Identity header) or a proof that cannot be checked, and the claimed number has no approved key on chain (or the From is not an E.164 number) |
//! | [`Verification::LikelySpoof`] | the claimed number has an approved key on chain but the call proves nothing (SDES, no Identity header), or one of its proofs fails (a PASSporT that is tampered, stale, replayed, for another callee or other media keys; a MIKEY signature by another key); or the SIP server marked the From `verstat=TN-Validation-Failed` |
//!
//! What is *not* proven, even for a verified caller: the From's domain and display name (any
//! proxy or caller can write them).

use chaincall_identity::{IdentityName, PhoneNumber, StaticDirectory};
use chaincall_mikey::{NtpTime, Responder};
use chaincall_passport::{PassportError, SipStatus};

use crate::negotiation::{IncomingOffer, KeyMode};

/// The `verstat` value a SIP server puts in the From user part of a call it could not validate
/// (3GPP TS 24.229 §7.2A.20; ATIS-1000074): sipd's `mark` policy for a foreign domain claiming a
/// local number.
pub const TN_VALIDATION_FAILED: &str = "TN-Validation-Failed";

/// The caller of an incoming call, as shown to the user before answering.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallerId {
    /// The From URI exactly as received (domain included: `sip:+15550100001@evil.example`).
    /// Peer-supplied: escape it before printing it on a terminal.
    pub uri: String,
    /// The From display name, if any. Peer-supplied and never verified.
    pub display_name: Option<String>,
    /// The identity the From claims: its user part as an E.164 number (`None` otherwise).
    pub claimed: Option<IdentityName>,
    /// What the call proves about the claim.
    pub verification: Verification,
}

impl CallerId {
    /// Whether the caller is verified on chain.
    pub fn is_verified(&self) -> bool {
        matches!(self.verification, Verification::Verified { .. })
    }
}

/// What an incoming call proves about who makes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verification {
    /// A signature by the claimed identity's approved on-chain key covers the call.
    Verified {
        /// The identity proven (the one the From claims).
        identity: IdentityName,
        /// Which signatures prove it.
        proof: Proof,
        /// Whether the key lookup was proven against a trusted block header.
        lookup_verified: bool,
        /// The identity's 30-digit key fingerprint, grouped (as `keystore get` and `phone
        /// contact show` print it), for comparing out of band.
        fingerprint: String,
    },
    /// Nothing proves who calls, and nothing says it is someone else.
    Unverified {
        /// Why (for the user).
        reason: String,
    },
    /// The caller claims a number with an on-chain key but does not prove it.
    LikelySpoof {
        /// Why (for the user).
        reason: String,
    },
}

/// What proved a verified caller: both are signatures by the caller's on-chain key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Proof {
    /// The MIKEY offer's signature (PKE or DH-SIGN).
    Mikey,
    /// The PASSporT in the Identity header, bound to the SDP's key lines (SDES calls).
    Passport,
    /// Both.
    PassportAndMikey,
}

impl Proof {
    /// Its name in reports and `--json` output: `mikey`, `passport`, `passport+mikey`.
    pub fn name(self) -> &'static str {
        match self {
            Proof::Mikey => "mikey",
            Proof::Passport => "passport",
            Proof::PassportAndMikey => "passport+mikey",
        }
    }
}

/// What the INVITE's Identity header proves, checked against the claimed identity's on-chain
/// key before [`verify`] combines it with the offer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PassportCheck {
    /// No Identity header.
    Absent,
    /// A PASSporT signed by the claimed identity's approved key, for this callee, these media
    /// keys, fresh and not seen before.
    Valid,
    /// An Identity header that does not hold (or cannot be checked).
    Invalid(PassportError),
}

impl PassportCheck {
    /// The RFC 8224 status a refusal of this call answers with, when its PASSporT is why.
    pub fn refusal(&self) -> Option<SipStatus> {
        match self {
            PassportCheck::Invalid(e) => Some(e.status()),
            _ => None,
        }
    }
}

impl Verification {
    /// The state's name in reports and `--json` output: `verified`, `unverified`, `likely_spoof`.
    pub fn name(&self) -> &'static str {
        match self {
            Verification::Verified { .. } => "verified",
            Verification::Unverified { .. } => "unverified",
            Verification::LikelySpoof { .. } => "likely_spoof",
        }
    }

    /// Why the caller is not verified (`None` when verified).
    pub fn reason(&self) -> Option<&str> {
        match self {
            Verification::Verified { .. } => None,
            Verification::Unverified { reason } | Verification::LikelySpoof { reason } => {
                Some(reason)
            }
        }
    }
}

/// What the phone does with callers that are not verified (`accept_unverified` in the config).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AcceptUnverified {
    /// Ring and wait for the user's decision, even with auto-answer on.
    Ask,
    /// Refuse with 403 before ringing.
    Never,
    /// Treat like verified callers (auto-answer answers them); reports still say unverified.
    Always,
}

impl AcceptUnverified {
    /// The config spelling.
    pub fn name(self) -> &'static str {
        match self {
            AcceptUnverified::Ask => "ask",
            AcceptUnverified::Never => "never",
            AcceptUnverified::Always => "always",
        }
    }
}

impl std::str::FromStr for AcceptUnverified {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "ask" => Ok(AcceptUnverified::Ask),
            "never" => Ok(AcceptUnverified::Never),
            "always" => Ok(AcceptUnverified::Always),
            other => Err(format!(
                "unknown accept_unverified {other:?} (ask, never or always)"
            )),
        }
    }
}

/// What the phone does with an incoming call once its caller is decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Answer at once (auto-answer).
    Answer,
    /// Ring and wait for [`crate::Phone::answer`].
    Ring,
    /// Refuse with 403 before ringing.
    Refuse,
}

/// The decision for a caller: `policy` `None` means `ask` for unverified callers and `never` for
/// likely spoofs; an explicit policy applies to both. Auto-answer answers verified callers, and
/// the others only under `always`.
pub fn decide(
    verification: &Verification,
    policy: Option<AcceptUnverified>,
    auto_answer: bool,
) -> Decision {
    let policy = match verification {
        Verification::Verified { .. } => AcceptUnverified::Always,
        Verification::Unverified { .. } => policy.unwrap_or(AcceptUnverified::Ask),
        Verification::LikelySpoof { .. } => policy.unwrap_or(AcceptUnverified::Never),
    };
    match policy {
        AcceptUnverified::Never => Decision::Refuse,
        AcceptUnverified::Ask => Decision::Ring,
        AcceptUnverified::Always if auto_answer => Decision::Answer,
        AcceptUnverified::Always => Decision::Ring,
    }
}

/// The parts of a From URI the verification reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FromClaim {
    /// The user part as an E.164 number, if it is one (parameters such as `;verstat=` dropped).
    pub number: Option<PhoneNumber>,
    /// The user part's text without parameters (the From URI itself when it has no user part).
    pub user: String,
    /// The user part carries `verstat=TN-Validation-Failed`: the SIP server says the number was
    /// not validated.
    pub validation_failed: bool,
}

impl FromClaim {
    /// Reads a From URI (`sip:+15550100001;verstat=TN-Validation-Failed@host`). Anything that
    /// does not parse claims nothing.
    pub fn parse(uri: &str) -> FromClaim {
        let user = chaincall_sip::uri::SipUri::parse(uri)
            .ok()
            .and_then(|u| u.user);
        let Some(user) = user else {
            return FromClaim {
                number: None,
                user: uri.to_owned(),
                validation_failed: false,
            };
        };
        // RFC 3261 §19.1.6 / RFC 3966: a telephone-subscriber user part may carry parameters.
        let mut pieces = user.split(';');
        let number_text = pieces.next().unwrap_or_default();
        let validation_failed = pieces.any(|p| {
            p.split_once('=').is_some_and(|(k, v)| {
                k.eq_ignore_ascii_case("verstat") && v.eq_ignore_ascii_case(TN_VALIDATION_FAILED)
            })
        });
        FromClaim {
            number: PhoneNumber::parse(number_text).ok(),
            user: number_text.to_owned(),
            validation_failed,
        }
    }
}

/// What looking the claimed identity up on chain gave.
#[derive(Debug)]
pub enum ClaimLookup<'a> {
    /// The From claims no E.164 number: nothing was looked up.
    NoClaim,
    /// The claimed identity has an approved key (in `directory`), found through a lookup that was
    /// (or was not) proven against a trusted header.
    Approved {
        /// A snapshot holding the claimed identity's approved key.
        directory: &'a StaticDirectory,
        /// Whether a storage proof backs the lookup.
        proven: bool,
        /// The key's fingerprint (shown with a verified caller).
        fingerprint: String,
    },
    /// The claimed identity has no approved key (unknown, pending or revoked): why.
    NoKey(String),
    /// The chain could not be asked: why.
    Failed(String),
}

/// Decides what the call proves about the From's claim: the Identity header's PASSporT (checked
/// by the caller of this function, `passport`) and the offer. Reads the MIKEY offer through
/// [`Responder::verify_offer`], so nothing is keyed or recorded and answering later still works.
/// Any proof that fails makes the caller a likely spoof, whatever the other proves: a valid
/// MIKEY signature beside a tampered PASSporT is someone replaying one and forging the other.
pub fn verify(
    from: &FromClaim,
    offer: &IncomingOffer,
    passport: &PassportCheck,
    lookup: ClaimLookup<'_>,
    responder: &Responder,
    now: NtpTime,
) -> Verification {
    if from.validation_failed {
        return Verification::LikelySpoof {
            reason: format!(
                "the SIP server could not validate {} (verstat={TN_VALIDATION_FAILED}): the call \
                 comes from outside its domain",
                from.user
            ),
        };
    }
    let claimed = from.number.clone().map(IdentityName::Phone);
    let Some(name) = claimed else {
        return Verification::Unverified {
            reason: format!(
                "{:?} is not an E.164 number: nothing to check on chain",
                from.user
            ),
        };
    };
    match lookup {
        ClaimLookup::NoClaim => Verification::Unverified {
            reason: format!("{name} was not looked up on chain"),
        },
        ClaimLookup::Failed(why) => Verification::Unverified {
            reason: format!("could not look {name} up on chain: {why}"),
        },
        ClaimLookup::NoKey(why) => Verification::Unverified {
            reason: format!("{name} has no approved key on chain ({why})"),
        },
        ClaimLookup::Approved {
            directory,
            proven,
            fingerprint,
        } => {
            if let PassportCheck::Invalid(e) = passport {
                return Verification::LikelySpoof {
                    reason: format!(
                        "{name} has a key on chain but this call's Identity header does not hold: \
                         {e} ({})",
                        e.status()
                    ),
                };
            }
            let by_passport = *passport == PassportCheck::Valid;
            let proof = match (offer.mode, by_passport) {
                // Neither SDES nor ZRTP signs anything in the offer: the PASSporT is the proof.
                (KeyMode::Sdes | KeyMode::Zrtp, true) => Proof::Passport,
                (mode @ (KeyMode::Sdes | KeyMode::Zrtp), false) => {
                    return Verification::LikelySpoof {
                        reason: format!(
                            "{name} has a key on chain but this call proves nothing ({} keys, no \
                             Identity header)",
                            if mode == KeyMode::Sdes {
                                "SDES"
                            } else {
                                "ZRTP"
                            }
                        ),
                    };
                }
                (_, true) => Proof::PassportAndMikey,
                (_, false) => Proof::Mikey,
            };
            if proof != Proof::Passport
                && let Err(e) = offer.verify_signer(&name, responder, directory, now)
            {
                return Verification::LikelySpoof {
                    reason: format!(
                        "{name} has a key on chain but this call's proof does not hold: {}",
                        chaincall_io::ErrorChain(&e)
                    ),
                };
            }
            Verification::Verified {
                identity: name,
                proof,
                lookup_verified: proven,
                fingerprint,
            }
        }
    }
}
