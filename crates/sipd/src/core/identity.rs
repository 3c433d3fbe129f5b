//! Caller identity on ingress (`[identity] verify`, issue 20): the PASSporT (RFC 8225) in an
//! initial INVITE's Identity header (RFC 8224), checked against the on-chain key of the E.164
//! number its From claims, with sipd's own verifier and replay cache (`chaincall-passport`).
//!
//! The key look-up never holds the loop up: the INVITE, its forwarding already decided
//! ([`Forward`]), waits while [`Core::poll_output`] yields [`Need::CallerKey`] (one per name in
//! flight); the shell answers with [`Core::insert_caller_key`]. The checks run in the order the
//! callee's phone runs them (`PhoneCore::check_passport`): the header, its keystore, the identity
//! it names, then [`Verifier::verify`] (signature, `orig`, freshness, `dest`, media binding,
//! replay). What follows:
//!
//! | the claimed number | `mark` | `enforce` |
//! | --- | --- | --- |
//! | no approved key on chain | forwarded, no `verstat` | the same |
//! | valid PASSporT | forwarded, `verstat=TN-Validation-Passed` | the same |
//! | missing or invalid PASSporT | forwarded, `verstat=TN-Validation-Failed` | RFC 8224 status |
//! | look-up failed or timed out | forwarded, no `verstat` | 503 with Retry-After |
//!
//! A `verstat` the caller wrote is never passed on.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use chaincall_identity::{
    DirectoryEntry, DirectoryError, IdentityName, KeyStatus, PhoneNumber, PublicIdentityKey,
};
use chaincall_passport::{
    Expected, KeystoreAddress, MediaBinding, MemoryReplayCache, Party, PassportError, Verifier,
    VerifierConfig, require_identity,
};
use chaincall_sip::header::{HeaderName, Method};
use chaincall_sip::message::Message;
use chaincall_sip::transaction::TxId;
use chaincall_sip::uri::SipUri;
use tracing::{info, warn};

use super::auth::take_late;
use super::proxy::{Forward, Verstat};
use super::{Core, MAX_PARKED, MAX_PARKED_PER_USER, Need};
use crate::config::{Config, ConfigError, VerifyMode};
use crate::metrics::IdentityCheck;

/// An INVITE waiting for its caller's key.
#[derive(Debug)]
struct Waiting {
    id: TxId,
    data: Vec<u8>,
    fwd: Forward,
    since: Instant,
    /// Wall-clock seconds when it arrived: the PASSporT's freshness is judged then.
    unix: u64,
}

/// The verification state.
#[derive(Debug)]
pub(super) struct CallerCheck {
    mode: VerifyMode,
    /// Present unless `mode` is `Off`.
    verifier: Option<Verifier>,
    /// INVITEs by the identity whose key they wait for; a name present means its look-up is in
    /// flight (it stays, emptied, when its INVITEs timed out, so it is not started twice).
    waiting: HashMap<IdentityName, Vec<Waiting>>,
    /// INVITEs in `waiting`, in all.
    total: usize,
    /// How long one may wait (`[auth] lookup_timeout_ms`, as every look-up).
    timeout: Duration,
}

impl CallerCheck {
    /// From `[identity]` and the keystore `[tls_psk]` names.
    pub(super) fn new(cfg: &Config) -> Result<Self, ConfigError> {
        let verifier = match cfg.identity.verify {
            VerifyMode::Off => None,
            _ => {
                let (chain_id, contract) = cfg.identity_chain()?;
                let keystore = KeystoreAddress(contract.into_array());
                Some(Verifier::new(
                    VerifierConfig::new(chain_id, keystore),
                    MemoryReplayCache::default(),
                ))
            }
        };
        Ok(CallerCheck {
            mode: cfg.identity.verify,
            verifier,
            waiting: HashMap::new(),
            total: 0,
            timeout: cfg.auth.lookup_timeout,
        })
    }

    /// When the oldest waiting INVITE times out, if any waits.
    pub(super) fn next_timeout(&self) -> Option<Instant> {
        let oldest = self.waiting.values().flatten().map(|w| w.since).min()?;
        Some(oldest + self.timeout)
    }

    fn take(&mut self, name: &IdentityName) -> Vec<Waiting> {
        let w = self.waiting.remove(name).unwrap_or_default();
        self.total -= w.len();
        w
    }
}

/// What the check found.
enum Verdict {
    /// The number has no approved key on chain: nothing to verify against.
    NoKey,
    /// A valid PASSporT of the number's key.
    Valid,
    /// The number has an approved key and the call no valid PASSporT.
    Invalid(PassportError),
    /// The key could not be looked up.
    Unavailable(String),
}

impl Core {
    /// The identity whose key an initial INVITE must be checked against: its From user part
    /// (parameters dropped) when that is an E.164 number and `[identity] verify` is on.
    pub(super) fn caller_claim(&self, msg: &Message<'_>) -> Option<IdentityName> {
        if self.callers.verifier.is_none()
            || msg.method()? != Method::Invite
            || msg.to().ok()?.tag().is_some()
        {
            return None;
        }
        let from = msg.from().ok()?;
        let number = user_number(SipUri::parse(from.uri).ok()?.user?)?;
        Some(IdentityName::Phone(number))
    }

    /// Parks the INVITE of server transaction `id`, its forwarding decided, until the key of
    /// `name` is known; starts the look-up unless one is in flight. 503 when too many wait.
    pub(super) fn await_caller_key(
        &mut self,
        id: TxId,
        data: &[u8],
        fwd: Forward,
        name: IdentityName,
        now: Instant,
        unix: u64,
    ) {
        let queued = self.callers.waiting.get(&name).map_or(0, Vec::len);
        let new_name = !self.callers.waiting.contains_key(&name);
        if self.callers.total >= MAX_PARKED
            || queued >= MAX_PARKED_PER_USER
            || (new_name && self.callers.waiting.len() >= MAX_PARKED)
        {
            if let Ok(msg) = Message::parse(data) {
                info!(caller = %name, "caller key look-up queue full; 503");
                self.reply(
                    id,
                    &msg,
                    503,
                    "Service Unavailable (busy)",
                    &[("Retry-After", "5".into())],
                    now,
                );
            }
            return;
        }
        self.callers
            .waiting
            .entry(name.clone())
            .or_default()
            .push(Waiting {
                id,
                data: data.to_vec(),
                fwd,
                since: now,
                unix,
            });
        self.callers.total += 1;
        if new_name {
            self.needs.push_back(Need::CallerKey { name });
        }
    }

    /// The answer to [`Need::CallerKey`]: the directory's entry for `name` (`Err`: the look-up
    /// failed). Checks and forwards (or refuses) every INVITE that waited for it.
    pub fn insert_caller_key(
        &mut self,
        name: &IdentityName,
        found: Result<DirectoryEntry, DirectoryError>,
        now: Instant,
    ) {
        for w in self.callers.take(name) {
            let key = match &found {
                Ok(DirectoryEntry {
                    status: KeyStatus::Approved,
                    key: Some(key),
                }) => Ok(Some(key)),
                // Unknown, pending or revoked: the number has no key a PASSporT could prove.
                Ok(_) | Err(DirectoryError::NotApproved { .. }) => Ok(None),
                Err(e) => Err(e.to_string()),
            };
            self.resume_caller(w, name, key, now);
        }
        self.drain(now);
    }

    /// INVITEs waiting for their caller's key.
    pub fn caller_keys_pending(&self) -> usize {
        self.callers.total
    }

    /// INVITEs that waited longer than the look-up timeout go on as if the look-up failed.
    pub(super) fn expire_callers(&mut self, now: Instant) {
        let timeout = self.callers.timeout;
        let late = take_late(&mut self.callers.waiting, now, timeout, |w| w.since);
        self.callers.total -= late.len();
        for (name, w) in late {
            self.resume_caller(w, &name, Err("look-up timed out".into()), now);
        }
    }

    /// A CANCEL for an INVITE still waiting for its caller's key: it is answered 487 and
    /// dropped (true), as nothing went downstream.
    pub(super) fn cancel_waiting_caller(&mut self, id: TxId, now: Instant) -> bool {
        let Some((name, at)) = self
            .callers
            .waiting
            .iter()
            .find_map(|(n, v)| v.iter().position(|w| w.id == id).map(|at| (n.clone(), at)))
        else {
            return false;
        };
        let Some(v) = self.callers.waiting.get_mut(&name) else {
            return false;
        };
        let w = v.remove(at);
        self.callers.total -= 1;
        if let Ok(msg) = Message::parse(&w.data) {
            self.reply(id, &msg, 487, "Request Terminated", &[], now);
        }
        true
    }

    /// Checks one waiting INVITE with what the look-up of `name` gave (`Ok(None)`: no approved
    /// key) and forwards it marked, or refuses it, per `[identity] verify`.
    fn resume_caller(
        &mut self,
        w: Waiting,
        name: &IdentityName,
        key: Result<Option<&PublicIdentityKey>, String>,
        now: Instant,
    ) {
        if self.ep.is_answered(w.id) != Some(false) {
            return;
        }
        let Ok(msg) = Message::parse(&w.data) else {
            return;
        };
        let verdict = match key {
            Ok(None) => Verdict::NoKey,
            Err(e) => Verdict::Unavailable(e),
            Ok(Some(key)) => match self.check_passport(&msg, name, key, w.unix) {
                Ok(()) => Verdict::Valid,
                Err(e) => Verdict::Invalid(e),
            },
        };
        self.metrics.count_identity_check(match &verdict {
            Verdict::NoKey => IdentityCheck::NoKey,
            Verdict::Valid => IdentityCheck::Passed,
            Verdict::Invalid(_) => IdentityCheck::Failed,
            Verdict::Unavailable(_) => IdentityCheck::Unavailable,
        });
        let enforce = self.callers.mode == VerifyMode::Enforce;
        let mut fwd = w.fwd;
        let call_id = msg.call_id().unwrap_or("");
        let src = fwd.src;
        let verstat = match verdict {
            Verdict::NoKey => Verstat::Strip,
            Verdict::Valid => {
                info!(%src, caller = %name, call_id, "caller's PASSporT verified: TN-Validation-Passed");
                Verstat::Passed
            }
            Verdict::Invalid(e) if enforce => {
                let status = e.status();
                warn!(%src, caller = %name, call_id, %status, error = %e, "caller's Identity header refused");
                let retry: &[(&str, String)] = if status.code == 503 {
                    &[("Retry-After", "5".into())]
                } else {
                    &[]
                };
                return self.reply(w.id, &msg, status.code, status.reason, retry, now);
            }
            Verdict::Invalid(e) => {
                info!(%src, caller = %name, call_id, status = %e.status(), error = %e, "caller's Identity header invalid: TN-Validation-Failed");
                Verstat::Failed
            }
            Verdict::Unavailable(why) if enforce => {
                warn!(%src, caller = %name, call_id, %why, "caller's key look-up failed: 503");
                return self.reply(
                    w.id,
                    &msg,
                    503,
                    "Service Unavailable (caller key look-up failed)",
                    &[("Retry-After", "5".into())],
                    now,
                );
            }
            Verdict::Unavailable(why) => {
                info!(%src, caller = %name, call_id, %why, "caller's key look-up failed: forwarded unmarked");
                Verstat::Strip
            }
        };
        fwd.verstat = fwd.verstat.and(verstat);
        self.send_forward(w.id, &msg, &w.data, fwd, now);
    }

    /// RFC 8224 §6.2 for `msg`, whose From claims `claimed` (a number with approved `key`): the
    /// header must be there, name `claimed` in our keystore, and verify with `orig` the From's
    /// number, `dest` the Request-URI's number and the media binding of the body, at `unix`.
    fn check_passport(
        &mut self,
        msg: &Message<'_>,
        claimed: &IdentityName,
        key: &PublicIdentityKey,
        unix: u64,
    ) -> Result<(), PassportError> {
        let Some(verifier) = self.callers.verifier.as_mut() else {
            return Ok(());
        };
        let IdentityName::Phone(number) = claimed else {
            return Ok(());
        };
        let header = require_identity(msg.header_value(HeaderName::Identity))?;
        verifier.check_key_for(&header, claimed)?;
        let orig = Party::Tn(number.clone());
        let ruri_user = msg
            .request_uri()
            .and_then(|u| SipUri::parse(u).ok())
            .and_then(|u| u.user);
        let dest = match ruri_user.and_then(user_number) {
            Some(n) => Party::Tn(n),
            // The PASSporT names numbers; a call to anything else is not the call it covers.
            None => return Err(PassportError::WrongDest(format!("{ruri_user:?}"))),
        };
        let media = MediaBinding::from_sdp(&String::from_utf8_lossy(msg.body()));
        let expected = Expected {
            orig: &orig,
            dest: &dest,
            media: &media,
        };
        verifier.verify(&header, key, &expected, unix).map(drop)
    }
}

/// A SIP URI user part as an E.164 number (RFC 3966 parameters such as `;verstat=` dropped).
fn user_number(user: &str) -> Option<PhoneNumber> {
    PhoneNumber::parse(user.split(';').next()?).ok()
}
