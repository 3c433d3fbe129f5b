//! The loops of a running phone: one outgoing call (`call`) and answering calls (`listen`).
//!
//! Each loop waits on the phone's events, on the program's interrupt (Ctrl-C in the CLI), on
//! `phone hangup` requests through the [`control`](crate::control) socket and on its own
//! deadlines, and tells the program what to show ([`CallUp`], [`ListenEvent`]); printing stays
//! with the program.

use std::collections::HashMap;
use std::path::Path;
use std::pin::pin;
use std::time::Duration;

use std::path::PathBuf;
use std::sync::Arc;

use chaincall_chain::KeystoreChain;
use chaincall_chain::verified::HeaderTrust;
use chaincall_identity::PhoneNumber;
use tokio::time::Instant;

use crate::audio_files::AudioFileError;
use crate::caller::CallerId;
use crate::config_file::{ConfigError, PhoneFileConfig};
use crate::contacts::ContactsStore;
use crate::control::{ControlSocket, next_request};
use crate::core::KeyedCall;
use crate::error::PhoneError;
use crate::keys::KeyLookup;
use crate::onboarding::{OnboardingError, refresh_sip_password};
use crate::phone::{CallReport, Phone, PhoneEvent, PhoneEvents};
use crate::store::PhoneSecrets;

/// How long a callee may ring before the call is given up.
const ANSWER_WITHIN: Duration = Duration::from_secs(60);
/// How long after hanging up the BYE's answer (and so the report) may take.
const REPORT_WITHIN: Duration = Duration::from_secs(10);
/// The audio is paced at 20 ms a packet: the last ones get this long to arrive before hanging up.
const LAST_PACKETS: Duration = Duration::from_millis(300);
/// Longest call `phone call` places, seconds of audio.
const MAX_SECONDS: f64 = 3600.0;
/// Audio `phone listen` sends when the config names no `audio_in` (a speech-like signal).
pub const LISTEN_SIGNAL_MS: u32 = 60_000;

/// Why a call or the listening stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// The registrar refused or did not answer.
    #[error("REGISTER of {number} at {domain}")]
    Register {
        /// This phone's number.
        number: String,
        /// The SIP domain.
        domain: String,
        /// Why.
        #[source]
        source: PhoneError,
    },
    /// The INVITE could not be sent (unknown, pending or revoked callee, …).
    #[error("cannot call {0}")]
    Dial(PhoneNumber, #[source] PhoneError),
    /// The call to `target` ended without a report.
    #[error("call to {target}: {end}")]
    Call {
        /// The callee.
        target: PhoneNumber,
        /// How it ended.
        end: CallEnd,
    },
    /// The signalling connection closed while listening.
    #[error("the signalling connection to {0} closed")]
    Closed(String),
    /// Calls hung up at Ctrl-C did not end in time.
    #[error("calls did not end 10 s after hanging up")]
    NotEnded,
    /// A phone command (answer, hang up) failed.
    #[error(transparent)]
    Phone(#[from] PhoneError),
    /// A recording could not be written.
    #[error(transparent)]
    Recording(#[from] AudioFileError),
    /// The key file holds no SIP password: the phone was never onboarded.
    #[error("{0} has no SIP password yet: run `chaincall phone onboard --receipt FILE` first")]
    NoSipPassword(String),
    /// The configuration (number, SIP address).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The SIP server could not be reached or its handshake failed.
    #[error("cannot connect to the SIP server {addr} ({transport} {server})")]
    Connect {
        /// The configured `sip_addr`.
        addr: String,
        /// TLS-PSK or TCP.
        transport: &'static str,
        /// The server's identity.
        server: String,
        /// Why.
        #[source]
        source: PhoneError,
    },
    /// A new SIP password could not be fetched after the registrar refused the stored one.
    #[error(transparent)]
    Refresh(#[from] OnboardingError),
}

/// Why `phone call` refuses its arguments before connecting.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DialError {
    /// `--seconds` out of range.
    #[error("--seconds must be more than 0 and at most 3600")]
    Seconds,
    /// The callee is not an E.164 number.
    #[error("{given:?} is not an E.164 number")]
    NotE164 {
        /// What was given.
        given: String,
        /// Why it is not one.
        source: chaincall_identity::NameError,
    },
    /// The callee is this phone itself.
    #[error("{0} is this phone's own number")]
    OwnNumber(PhoneNumber),
}

/// How an outgoing call ended without a report.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CallEnd {
    /// The signalling connection closed.
    #[error("the signalling connection closed")]
    Closed,
    /// The callee (or the callee's phone) refused, and why.
    #[error("{0}")]
    Refused(String),
    /// Nobody answered in time.
    #[error("no answer within 60 s")]
    NoAnswer,
    /// The program's interrupt (Ctrl-C) before the callee answered.
    #[error("cancelled")]
    Cancelled,
    /// `phone hangup` before the callee answered.
    #[error("cancelled by `chaincall phone hangup`")]
    CancelledByHangup,
    /// No report came after hanging up.
    #[error("no call report 10 s after hanging up")]
    NoReport,
}

/// A call that is up ([`PhoneEvent::CallUp`], borrowed): both SRTP contexts are keyed.
#[derive(Debug, Clone, Copy)]
pub struct CallUp<'a> {
    /// The call as the core keyed it.
    pub call: &'a KeyedCall,
    /// ZRTP's outcome (ZRTP calls).
    pub zrtp: Option<&'a crate::zrtp_media::ZrtpStatus>,
}

impl<'a> CallUp<'a> {
    /// [`keyed`](Self::keyed) and the safety number (when there is one), for a "call up" line.
    pub fn note(&self, role: &str) -> String {
        let safety = crate::contact_view::up_note(
            self.call.safety_number.as_ref(),
            self.call.verified_in_person,
        );
        format!("{}{safety}", self.keyed(role))
    }

    /// How the call is keyed, for a "call up" line: `mikey-pke, callee verified on chain as
    /// +15550100002`, with `role` naming the peer.
    pub fn keyed(&self, role: &str) -> String {
        let mode = self.call.mode.name();
        let verified_peer = self.call.verified_peer.as_ref();
        let keyed = match verified_peer {
            Some(p) => format!("{mode}, {role} verified on chain as {}", p.as_str()),
            None => format!("{mode}, encrypted, key not verified on chain"),
        };
        match self.zrtp {
            Some(z) if z.chain_bound => {
                let pin = match (&z.pin, verified_peer) {
                    (Some(pin), Some(p)) => format!(", {}", pin.describe(&z.peer_zid, p.as_str())),
                    _ => String::new(),
                };
                format!("{keyed}, SAS {}, chain binding held{pin}", z.sas)
            }
            Some(z) if z.sas_verified => format!("{keyed}, SAS {} (verified by you)", z.sas),
            Some(z) => format!("{keyed}, SAS {} (compare it with the peer)", z.sas),
            None => keyed,
        }
    }

    /// The [`PhoneEvent::CallUp`] in `event`, if it is one.
    fn of(event: &'a PhoneEvent) -> Option<Self> {
        match event {
            PhoneEvent::CallUp { call, zrtp } => Some(Self {
                call,
                zrtp: zrtp.as_ref(),
            }),
            _ => None,
        }
    }
}

/// Where a phone's key lookups go: the chain, proven against the trusted header.
#[derive(Debug)]
pub struct ChainView<C> {
    /// The chain node.
    pub chain: Arc<C>,
    /// The header lookups are proven against.
    pub trust: Arc<HeaderTrust>,
}

impl<C> Clone for ChainView<C> {
    fn clone(&self) -> Self {
        Self {
            chain: self.chain.clone(),
            trust: self.trust.clone(),
        }
    }
}

/// Connects a phone with the config's settings and the key file's keys to the SIP server
/// (running the handshake for TLS-PSK), sending `audio` in its calls; its lookups pin keys in
/// the config's `contacts_file`. Returns the phone, its events and the connect time.
pub async fn connect<C: KeystoreChain + 'static>(
    cfg: &PhoneFileConfig,
    secrets: &PhoneSecrets,
    view: ChainView<C>,
    audio: Vec<i16>,
    auto_answer: bool,
    tls_keylog: Option<PathBuf>,
) -> Result<(Phone, PhoneEvents, Duration), SessionError> {
    let sip_password = secrets
        .sip_password
        .clone()
        .ok_or_else(|| SessionError::NoSipPassword(cfg.number_text().to_owned()))?;
    let addr = cfg.resolve_sip_addr().await?;
    let identity = Arc::new(secrets.identity.clone());
    let audio = Arc::new(audio);
    let phone_cfg = crate::PhoneConfig {
        tls_keylog,
        failover: cfg.resolve_sip_failover().await?,
        ..cfg.phone_config(addr, identity, sip_password, audio, auto_answer)?
    };
    let contacts = ContactsStore::new(cfg.contacts_file.clone(), cfg.contract);
    let lookup = KeyLookup::new(view.chain, cfg.contract, Some(view.trust)).with_contacts(contacts);
    Phone::connect(phone_cfg, lookup)
        .await
        .map_err(|source| SessionError::Connect {
            addr: cfg.sip_addr.clone(),
            transport: cfg.transport.name(),
            server: cfg.sip_identity.as_str().to_owned(),
            source,
        })
}

/// A registration that was granted and removed again.
#[derive(Debug, Clone, Copy)]
pub struct RegisterCheck {
    /// The connection's set-up time.
    pub connect: Duration,
    /// The lifetime the registrar granted, seconds.
    pub expires: u32,
}

impl RegisterCheck {
    /// What `phone register` reports: the number, where and how it registered, how long the
    /// connection took and the granted lifetime.
    pub fn report(&self, cfg: &PhoneFileConfig) -> String {
        format!(
            "registered {} at {} via {} ({}, connected in {:.1} ms): expires in {} s",
            cfg.number_text(),
            cfg.sip_domain,
            cfg.sip_addr,
            cfg.transport.name(),
            self.connect.as_secs_f64() * 1e3,
            self.expires
        )
    }
}

/// What [`check_registration`] tells the program while it works.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RegisterNote<'a> {
    /// The registrar refused the stored password; fetching the current one.
    CredentialsRefused,
    /// The current password is stored in the key file; registering again.
    PasswordStored(&'a Path),
}

impl std::fmt::Display for RegisterNote<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RegisterNote::CredentialsRefused => f.write_str(
                "the SIP server refused our credentials; fetching the current ones from the \
                 wallet server",
            ),
            RegisterNote::PasswordStored(key_file) => {
                write!(f, "new SIP password stored in {}", key_file.display())
            }
        }
    }
}

/// Connects, registers and removes the binding again (`phone register`). When the registrar
/// refuses the stored password (the operator rotated it) and the config names a `wallet_url`,
/// the current one is fetched once (signed by the identity key), stored, and the REGISTER retried.
pub async fn check_registration<C: KeystoreChain + 'static>(
    cfg: &PhoneFileConfig,
    secrets: &mut PhoneSecrets,
    pass: &str,
    view: ChainView<C>,
    tls_keylog: Option<PathBuf>,
    mut note: impl FnMut(RegisterNote<'_>),
) -> Result<RegisterCheck, SessionError> {
    let once = async |secrets: &PhoneSecrets| {
        let keylog = tls_keylog.clone();
        let (phone, _events, connect) =
            connect(cfg, secrets, view.clone(), Vec::new(), false, keylog).await?;
        let result = register(cfg, &phone).await;
        if result.is_ok() {
            phone.unregister_and_shutdown().await;
        } else {
            phone.shutdown().await;
        }
        result.map(|expires| RegisterCheck { connect, expires })
    };
    match once(secrets).await {
        // Once: a password fetched just now that is refused too is not a rotation.
        Err(SessionError::Register {
            source: PhoneError::AuthFailed(_),
            ..
        }) if cfg.wallet_url.is_some() => {
            note(RegisterNote::CredentialsRefused);
            refresh_sip_password(cfg, secrets, pass).await?;
            note(RegisterNote::PasswordStored(&cfg.key_file));
            once(secrets).await
        }
        other => other,
    }
}

/// Registers with the config's `register_expires`; returns the granted lifetime.
pub async fn register(cfg: &PhoneFileConfig, phone: &Phone) -> Result<u32, SessionError> {
    phone
        .register(cfg.register_expires)
        .await
        .map_err(|source| SessionError::Register {
            number: cfg.number_text().to_owned(),
            domain: cfg.sip_domain.clone(),
            source,
        })
}

/// Deadline that never comes for `None`.
async fn sleep_until_some(at: Option<Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

/// A connected phone: its handle, its events and (when it could be bound) its control socket.
#[derive(Debug)]
pub struct Running {
    /// The phone.
    pub phone: Phone,
    /// Its events.
    pub events: PhoneEvents,
    /// The socket `phone hangup` reaches it through; `None` when another process holds it.
    pub control: Option<ControlSocket>,
}

impl Running {
    /// Registers and calls `target`, sending `seconds` of audio: hangs up once it is sent, at
    /// `interrupt`, at a `phone hangup` request, or when the callee hangs up; returns the report.
    /// `up` is told once the call is up. The registration is removed again, whatever happened.
    pub async fn call(
        mut self,
        cfg: &PhoneFileConfig,
        target: &PhoneNumber,
        seconds: f64,
        interrupt: impl Future<Output = ()>,
        up: impl FnOnce(CallUp<'_>),
    ) -> Result<CallReport, SessionError> {
        let (phone, events, control) = (&self.phone, &mut self.events, &mut self.control);
        let result = async {
            register(cfg, phone).await?;
            call(phone, events, control, target, seconds, interrupt, up).await
        }
        .await;
        self.close().await;
        result
    }

    /// Registers (telling `registered` the granted lifetime; the phone refreshes it halfway
    /// through by itself) and answers calls as [`ListenPolicy`] says until `interrupt`; `show`
    /// is told what happens. The registration is removed again, whatever happened.
    pub async fn listen(
        mut self,
        cfg: &PhoneFileConfig,
        policy: ListenPolicy,
        interrupt: impl Future<Output = ()>,
        registered: impl FnOnce(u32),
        show: impl FnMut(ListenEvent<'_>),
    ) -> Result<(), SessionError> {
        let (phone, events, control) = (&self.phone, &mut self.events, &mut self.control);
        let result = async {
            registered(register(cfg, phone).await?);
            listen(cfg, phone, events, control, policy, interrupt, show).await
        }
        .await;
        self.close().await;
        tracing::info!("phone stopped");
        result
    }

    /// Stops answering `phone hangup`, removes the registration (callers are told at once that
    /// the phone is offline) and stops the phone.
    async fn close(self) {
        drop(self.control);
        self.phone.unregister_and_shutdown().await;
    }
}

/// The callee of `phone call` and the seconds of audio it sends, checked: an E.164 number other
/// than our own, and more than 0 and at most 3600 seconds.
pub fn dial_target(
    cfg: &PhoneFileConfig,
    callee: &str,
    seconds: f64,
) -> Result<PhoneNumber, DialError> {
    if !(seconds.is_finite() && seconds > 0.0 && seconds <= MAX_SECONDS) {
        return Err(DialError::Seconds);
    }
    let target = PhoneNumber::parse(callee).map_err(|source| DialError::NotE164 {
        given: callee.to_owned(),
        source,
    })?;
    if Some(&target) == cfg.number.as_ref() {
        return Err(DialError::OwnNumber(target));
    }
    Ok(target)
}

/// Calls `target` and sends `seconds` of audio ([`Running::call`]).
async fn call(
    phone: &Phone,
    events: &mut PhoneEvents,
    control: &mut Option<ControlSocket>,
    target: &PhoneNumber,
    seconds: f64,
    interrupt: impl Future<Output = ()>,
    up: impl FnOnce(CallUp<'_>),
) -> Result<CallReport, SessionError> {
    let failed = |end| SessionError::Call {
        target: target.clone(),
        end,
    };
    let call_id = phone
        .call(target)
        .await
        .map_err(|e| SessionError::Dial(target.clone(), e))?;
    let mut interrupt = pin!(interrupt);
    // Up, refused, or no answer.
    let answer_by = Instant::now() + ANSWER_WITHIN;
    loop {
        tokio::select! {
            ev = events.recv() => match ev {
                None => return Err(failed(CallEnd::Closed)),
                Some(PhoneEvent::Refused { reason, .. }) => {
                    return Err(failed(CallEnd::Refused(reason)));
                }
                Some(ev @ PhoneEvent::CallUp { .. }) => {
                    if let Some(shown) = CallUp::of(&ev) {
                        up(shown);
                    }
                    break;
                }
                Some(PhoneEvent::CallEnded(r)) => return Ok(*r),
                Some(_) => {}
            },
            _ = tokio::time::sleep_until(answer_by) => {
                let _ = phone.hangup(&call_id).await;
                return Err(failed(CallEnd::NoAnswer));
            }
            _ = &mut interrupt => {
                let _ = phone.hangup(&call_id).await;
                return Err(failed(CallEnd::Cancelled));
            }
            request = next_request(control) => {
                if let Some(other) = request.call_id.clone().filter(|id| *id != call_id) {
                    request.answer(Err(format!(
                        "no call {other} in progress (this one is {call_id})"
                    )));
                    continue;
                }
                let _ = phone.hangup(&call_id).await;
                request.answer(Ok(format!(
                    "cancelled the call to {target} before it was answered"
                )));
                return Err(failed(CallEnd::CancelledByHangup));
            }
        }
    }
    let hang_up_at = Instant::now() + Duration::from_secs_f64(seconds) + LAST_PACKETS;
    // Once we hang up, the BYE's answer ends the call; this bounds the wait for it.
    let mut report_by = None;
    loop {
        tokio::select! {
            ev = events.recv() => match ev {
                None => return Err(failed(CallEnd::Closed)),
                Some(PhoneEvent::CallEnded(r)) => return Ok(*r),
                Some(_) => {}
            },
            _ = tokio::time::sleep_until(hang_up_at), if report_by.is_none() => {
                phone.hangup(&call_id).await?;
                report_by = Some(Instant::now() + REPORT_WITHIN);
            }
            _ = &mut interrupt, if report_by.is_none() => {
                phone.hangup(&call_id).await?;
                report_by = Some(Instant::now() + REPORT_WITHIN);
            }
            request = next_request(control) => {
                if let Some(other) = request.call_id.clone().filter(|id| *id != call_id) {
                    request.answer(Err(format!(
                        "no call {other} in progress (this one is {call_id})"
                    )));
                } else if report_by.is_some() {
                    request.answer(Ok(format!("the call to {target} is already ending")));
                } else {
                    phone.hangup(&call_id).await?;
                    report_by = Some(Instant::now() + REPORT_WITHIN);
                    request.answer(Ok(format!("hung up the call to {target}")));
                }
            }
            _ = sleep_until_some(report_by) => return Err(failed(CallEnd::NoReport)),
        }
    }
}

/// What `listen` tells the program to show.
#[derive(Debug)]
#[non_exhaustive]
pub enum ListenEvent<'a> {
    /// A call arrives. When `awaiting_answer`, the phone rings: [`ListenEvent::Ringing`] follows
    /// unless every call is declined; otherwise it answers or refuses by itself.
    Incoming {
        /// The call.
        call_id: &'a str,
        /// Who calls, and what the call proves about it.
        caller: &'a CallerId,
        /// The phone waits for an answer.
        awaiting_answer: bool,
    },
    /// The phone rings: the program answers with [`Phone::answer`] (a prompt in the CLI).
    Ringing {
        /// The phone, to answer with.
        phone: &'a Phone,
        /// The call.
        call_id: &'a str,
        /// Who calls.
        caller: &'a CallerId,
    },
    /// Declined (603) because every call is.
    Rejected {
        /// The call.
        call_id: &'a str,
        /// Who called.
        caller: &'a CallerId,
    },
    /// A call is up.
    Up(CallUp<'a>),
    /// A call ended; its received audio is at `recording`.
    Ended {
        /// The report.
        report: &'a CallReport,
        /// Where the received audio was written (`None`: not recorded).
        recording: Option<&'a Path>,
    },
    /// The signalling connection dropped: the phone reconnects by itself and keeps listening
    /// (calls in progress keep their media).
    SignallingLost {
        /// Why.
        reason: &'a str,
    },
    /// The signalling connection is back; the registration is renewed.
    Reconnected {
        /// The attempt that succeeded.
        attempt: u32,
    },
    /// Registered again after a reconnect (calls reach the phone again).
    Reregistered {
        /// The granted lifetime, seconds.
        expires: u32,
    },
    /// The phone refused an incoming call by itself (bad keys, unknown caller, …).
    Refused {
        /// The call.
        call_id: &'a str,
        /// Why.
        reason: &'a str,
        /// Who called, when the call was announced.
        caller: Option<&'a CallerId>,
    },
}

/// What `listen` does with calls.
#[derive(Debug, Clone, Copy)]
pub struct ListenPolicy {
    /// Stop after this many calls (answered, refused or rejected).
    pub count: Option<u64>,
    /// Decline every call that waits for an answer.
    pub reject: bool,
}

impl ListenPolicy {
    /// How calls are handled, for the "listening" line: declining, answering automatically (the
    /// config's `auto_answer`) or asking.
    pub fn manner(&self, auto_answer: bool) -> &'static str {
        if self.reject {
            "declining every call"
        } else if auto_answer {
            "answering automatically"
        } else {
            "asking before answering"
        }
    }
}

/// Answers calls ([`Running::listen`]) until `policy.count` calls were handled, or `interrupt`:
/// it hangs up the calls in progress and stops once they ended. `phone hangup` requests end calls
/// and listening goes on. Recordings go to the config's `record_dir`.
async fn listen(
    cfg: &PhoneFileConfig,
    phone: &Phone,
    events: &mut PhoneEvents,
    control: &mut Option<ControlSocket>,
    policy: ListenPolicy,
    interrupt: impl Future<Output = ()>,
    mut show: impl FnMut(ListenEvent<'_>),
) -> Result<(), SessionError> {
    let mut interrupt = pin!(interrupt);
    let mut handled = 0u64;
    let mut active: Vec<String> = Vec::new();
    // Who each call that answers or refuses by itself is from, for the line that ends it.
    let mut callers: HashMap<String, CallerId> = HashMap::new();
    let mut stopping = false;
    let mut stop_by = None;
    // A reconnect happened and its registration is not granted yet.
    let mut renewing = false;
    while policy.count.is_none_or(|n| handled < n) {
        tokio::select! {
            ev = events.recv() => match ev {
                None => return Err(SessionError::Closed(cfg.sip_addr.clone())),
                Some(PhoneEvent::Incoming { call_id, caller, awaiting_answer }) => {
                    show(ListenEvent::Incoming { call_id: &call_id, caller: &caller, awaiting_answer });
                    if !awaiting_answer {
                        callers.insert(call_id, caller);
                    } else if policy.reject {
                        phone.answer(&call_id, false).await?;
                        show(ListenEvent::Rejected { call_id: &call_id, caller: &caller });
                        handled += 1;
                    } else {
                        show(ListenEvent::Ringing { phone, call_id: &call_id, caller: &caller });
                    }
                }
                Some(ev @ PhoneEvent::CallUp { .. }) => {
                    if let Some(up) = CallUp::of(&ev) {
                        callers.remove(&up.call.call_id);
                        active.push(up.call.call_id.clone());
                        show(ListenEvent::Up(up));
                    }
                }
                Some(PhoneEvent::CallEnded(r)) => {
                    active.retain(|c| *c != r.call_id);
                    let recording = cfg.save_recording(&r)?;
                    show(ListenEvent::Ended { report: &r, recording: recording.as_deref() });
                    handled += 1;
                    if stopping && active.is_empty() {
                        break;
                    }
                }
                Some(PhoneEvent::Refused { call_id, reason }) => {
                    let caller = callers.remove(&call_id);
                    show(ListenEvent::Refused { call_id: &call_id, reason: &reason, caller: caller.as_ref() });
                    handled += 1;
                }
                Some(PhoneEvent::SignallingLost { reason }) => {
                    show(ListenEvent::SignallingLost { reason: &reason });
                }
                Some(PhoneEvent::Reconnected { attempt }) => {
                    renewing = true;
                    show(ListenEvent::Reconnected { attempt });
                }
                // Refreshes are routine; the registration after a reconnect is news.
                Some(PhoneEvent::Registered { expires }) => {
                    if std::mem::take(&mut renewing) {
                        show(ListenEvent::Reregistered { expires });
                    }
                }
                // No terminal line for a digit (the CLI's listen output is unchanged): logged.
                Some(PhoneEvent::Dtmf { call_id, digit }) => {
                    tracing::info!(call = %call_id, %digit, "DTMF received");
                }
                // Hold and refused downgrades are logged by the phone; nothing to do here.
                Some(PhoneEvent::Control(_)) => {}
            },
            _ = &mut interrupt, if !stopping => {
                if active.is_empty() {
                    break;
                }
                for c in &active {
                    phone.hangup(c).await?;
                }
                stopping = true;
                stop_by = Some(Instant::now() + REPORT_WITHIN);
            }
            request = next_request(control) => {
                let ending: Vec<String> = match request.call_id.clone() {
                    Some(id) if active.contains(&id) => vec![id],
                    Some(id) => {
                        request.answer(Err(format!("no call {id} in progress")));
                        continue;
                    }
                    None => active.clone(),
                };
                if ending.is_empty() {
                    request.answer(Err("no call in progress".to_owned()));
                    continue;
                }
                for c in &ending {
                    phone.hangup(c).await?;
                }
                request.answer(Ok(format!(
                    "hung up {} call(s): {}",
                    ending.len(),
                    ending.join(", ")
                )));
            }
            _ = sleep_until_some(stop_by) => return Err(SessionError::NotEnded),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_needs_an_e164_callee_other_than_ourselves_and_a_sane_duration() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = crate::onboarding::tests::config(dir.path(), Some("+15550100001"));
        let bob: PhoneNumber = "+15550100002".parse().unwrap();
        assert_eq!(dial_target(&cfg, "+15550100002", 5.0).unwrap(), bob);
        for seconds in [0.0, -1.0, 3600.5, f64::NAN, f64::INFINITY] {
            let e = dial_target(&cfg, "+15550100002", seconds).unwrap_err();
            assert!(matches!(e, DialError::Seconds), "{seconds}: {e:?}");
        }
        let e = dial_target(&cfg, "bob", 5.0).unwrap_err().to_string();
        assert!(e.starts_with("\"bob\" is not an E.164 number"), "{e}");
        let e = dial_target(&cfg, "+15550100001", 5.0)
            .unwrap_err()
            .to_string();
        assert_eq!(e, "+15550100001 is this phone's own number");
    }

    #[test]
    fn the_listening_line_names_how_calls_are_handled() {
        let policy = ListenPolicy {
            count: None,
            reject: true,
        };
        assert_eq!(policy.manner(true), "declining every call");
        let policy = ListenPolicy {
            reject: false,
            ..policy
        };
        assert_eq!(policy.manner(true), "answering automatically");
        assert_eq!(policy.manner(false), "asking before answering");
    }
}
