//! The phone's call control as a sans-IO core, shaped like str0m's `Rtc`: [`PhoneCore`].
//!
//! One object owns the SIP user agent ([`crate::ua`]), the MIKEY responder, the calls' offer and
//! answer ([`crate::negotiation`]) and the caller checks ([`crate::caller`]). It is fed
//!
//! - received signalling: one complete SIP message at a time ([`PhoneCore::handle_signalling`];
//!   a stream shell frames on Content-Length first, a datagram is one message),
//! - the signalling transport's state ([`PhoneCore::handle_transport`]),
//! - the user's commands ([`PhoneCore::register`], [`PhoneCore::call`], [`PhoneCore::answer`],
//!   [`PhoneCore::hangup`], [`PhoneCore::send_dtmf`]),
//! - answers to what it asked for: key look-ups ([`PhoneCore::provide_key`]) and media addresses
//!   ([`PhoneCore::provide_media`]),
//! - time ([`PhoneCore::handle_timeout`]),
//!
//! and yields everything from one [`PhoneCore::poll_output`]: signalling to write
//! (`Transmit<()>`: the one connection to the proxy), [`Event`]s (among them the [`Need`]s the
//! shell must act on) and the next deadline (the user agent's Timer B/F, the registration refresh).
//! It opens no socket, spawns nothing, reads no clock and asks no chain: look-ups leave as
//! [`Need::LookupKey`], media sockets as [`Need::BindMedia`], and keyed media as
//! [`Need::StartMedia`] / [`Need::StopMedia`] for a per-call media task in the shell.
//!
//! Call order: after each input (a command, `handle_*`, `provide_*`), drain `poll_output` until
//! [`Output::Timeout`]; call `handle_timeout` when that deadline passes (early or repeated calls
//! are harmless).
//!
//! Wall-clock time (MIKEY timestamps) is derived from the `SystemTime` given to
//! [`PhoneCore::new`] plus the `Instant`s fed since, so a test in simulated time replays exactly;
//! randomness comes from [`PhoneConfig::randomness`].
//!
//! ```no_run
//! # use std::time::{Instant, SystemTime};
//! # use chaincall_phone::core::{Event, Need, PhoneCore};
//! # fn demo(cfg: chaincall_phone::PhoneConfig, local: std::net::SocketAddr) {
//! let keystore = chaincall_passport::VerifierConfig::new(31337, chaincall_passport::KeystoreAddress([0x5f; 20]));
//! let mut core = PhoneCore::new(&cfg, local, "TCP", keystore, Instant::now(), SystemTime::now());
//! core.register(3600, Instant::now());
//! loop {
//!     match core.poll_output() {
//!         chaincall_io::Output::Transmit(t) => { /* write t.contents to the connection */ }
//!         chaincall_io::Output::Event(Event::Need(Need::LookupKey { name })) => {
//!             /* look `name` up on chain, then core.provide_key(&name, result, now) */
//!         }
//!         chaincall_io::Output::Event(_other) => { /* tell the user */ }
//!         chaincall_io::Output::Timeout(_at) => break, // wait for input or `_at`
//!     }
//! }
//! # }
//! ```

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use chaincall_identity::safety::FingerprintCache;
use chaincall_identity::{IdentityName, PhoneNumber, SafetyNumber, StaticDirectory};
use chaincall_io::Output;
use chaincall_media::g711::Codec;
use chaincall_media::sdp::TelephoneEvent;
use chaincall_media::{AudioCodec, AudioGate};
use chaincall_mikey::{NtpTime, Responder, ResponderConfig};
use chaincall_passport::{
    Claims, Dest, Expected, IdentityHeader, KeyLocator, MediaBinding, Party, PassportError,
    SipStatus, Verifier, VerifierConfig, new_origid,
};
use tracing::{debug, info, warn};

use crate::caller::{
    CallerId, ClaimLookup, Decision, FromClaim, PassportCheck, Verification, decide,
};
use crate::error::PhoneError;
use crate::keys::LookedUp;
use crate::negotiation::{
    Direction, IncomingOffer, KeyMode, LocalMedia, NegotiatedMedia, Offer, SecurityLines,
    ZrtpSetup, direction, redescribe,
};
use crate::phone::{PhoneConfig, SetupTimings};
use crate::ua::{UaConfig, UaEvent, UserAgent};
use crate::zrtp_store::ZrtpStore;

/// What [`PhoneCore::poll_output`] yields: signalling for the one connection, an [`Event`], or
/// the next deadline.
pub type CoreOutput = Output<Event, ()>;

/// The signalling transport's state, as the shell sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportState {
    /// The connection to the proxy is (again) up: signalling flows.
    Connected,
    /// The connection is gone: nothing can be sent. Calls that are up keep their media (it never
    /// went through the signalling link) and can still be hung up, locally.
    Lost,
}

/// Something the shell must do for the core; answers come back through the `provide_*`
/// methods.
#[derive(Debug)]
#[non_exhaustive]
pub enum Need {
    /// Look `name`'s key up on chain (verified, pinned), then call [`PhoneCore::provide_key`].
    /// Asked once per name while a look-up is in flight, whatever the number of calls waiting.
    LookupKey {
        /// Whose key.
        name: IdentityName,
    },
    /// Bind a media socket for the call, then call [`PhoneCore::provide_media`] with its address.
    BindMedia {
        /// The call.
        call_id: String,
    },
    /// The call is keyed: run its media on the socket bound for it.
    StartMedia {
        /// The call.
        call_id: String,
        /// Where to send, the codec and both SRTP sessions (with their keys, for `--keylog`).
        media: Box<NegotiatedMedia>,
    },
    /// The call is over (or never got going): stop its media and release its socket.
    StopMedia {
        /// The call.
        call_id: String,
    },
    /// Send DTMF digits in the call's media as RFC 4733 telephone-events (checked by
    /// [`PhoneCore::send_dtmf`]: the call is up, telephone-event negotiated, every digit valid).
    SendDtmf {
        /// The call.
        call_id: String,
        /// The digits (0–9, *, #, A–D).
        digits: String,
    },
    /// The user compared the ZRTP SAS with the peer and it matched: record RFC 6189 §4.6.1.1's
    /// "SAS verified" flag for the peer's ZID in the cache (the next call shows it).
    ConfirmSas {
        /// The call.
        call_id: String,
    },
    /// Let this much of the call's audio out from now on: all, silence (muted) or none (on
    /// hold either way). Told when it changes.
    GateAudio {
        /// The call.
        call_id: String,
        /// What goes out.
        gate: AudioGate,
    },
}

/// Why a call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum EndReason {
    /// We hung up (BYE answered or timed out, or CANCEL sent).
    HungUp,
    /// The peer hung up (BYE).
    HungUpByPeer,
    /// The caller gave up before the call was answered (CANCEL).
    CancelledByPeer,
    /// We hung up while the signalling connection was down: the call ended here only, no BYE
    /// could be sent.
    SignallingLost,
    /// An incoming call rang for [`crate::ua::RING_TIMEOUT`] unanswered, with neither a CANCEL
    /// nor an answer: we ended it with 408 Request Timeout.
    NotAnswered,
    /// The user said the ZRTP SAS did not match the peer's ([`PhoneCore::reject_sas`]): a man
    /// in the middle may sit in the media path. We hung up (BYE with a Reason header).
    SasRejected,
    /// The call's media could not be secured (a ZRTP Error, timeout, or failed chain binding:
    /// [`PhoneCore::media_failed`]). We hung up by ourselves (BYE with a Reason header); the
    /// summary's `failure` says why.
    MediaFailed,
    /// We answered over UDP and re-sent our 200 OK for 64·T1 (32 s), but the caller's ACK never
    /// came (RFC 3261 §13.3.1.4): we hung up (BYE with a Reason header); the summary's `failure`
    /// says why.
    NoAck,
}

impl EndReason {
    /// How the call ended, in words (the call report's `ended`).
    pub fn describe(self) -> &'static str {
        match self {
            EndReason::HungUp => "hung up",
            EndReason::HungUpByPeer => "hung up by the peer",
            EndReason::CancelledByPeer => "cancelled by caller",
            EndReason::SignallingLost => "hung up while the signalling connection was down",
            EndReason::NotAnswered => "not answered in time (408 Request Timeout)",
            EndReason::SasRejected => {
                "the SAS did not match the peer's: possible man in the middle (hung up)"
            }
            EndReason::MediaFailed => "the media could not be secured (hung up)",
            EndReason::NoAck => "our answer was never acknowledged (no ACK): hung up",
        }
    }
}

/// What the core knows of a call when it ends; with the media task's session it makes the
/// [`crate::CallReport`].
#[derive(Debug, Clone)]
pub struct CallSummary {
    /// The other party.
    pub peer: String,
    /// The caller as shown before answering (incoming calls; `None` for ours).
    pub caller: Option<CallerId>,
    /// We placed the call.
    pub outgoing: bool,
    /// How keys were agreed.
    pub mode: KeyMode,
    /// The identity proven by MIKEY against the chain (`None` with SDES).
    pub verified_peer: Option<IdentityName>,
    /// The peer's key look-up, when the call used one.
    pub lookup: Option<LookedUp>,
    /// The safety number with the verified peer.
    pub safety_number: Option<SafetyNumber>,
    /// Where the set-up time went.
    pub timings: SetupTimings,
    /// The codec.
    pub codec: AudioCodec,
    /// The media was started ([`Need::StartMedia`] went out).
    pub keyed: bool,
    /// The signalling connection dropped while the call was in progress (its media went on).
    pub signalling_lost: bool,
    /// Why the media could not be secured ([`EndReason::MediaFailed`]).
    pub failure: Option<String>,
}

/// A call that is up: what the user sees of it ([`crate::PhoneEvent::CallUp`] in the shell).
#[derive(Debug, Clone)]
pub struct KeyedCall {
    /// The call.
    pub call_id: String,
    /// The other party.
    pub peer: String,
    /// The caller as shown before answering (incoming calls; `None` for ours).
    pub caller: Option<CallerId>,
    /// Key mode.
    pub mode: KeyMode,
    /// The chain-verified peer (None: SDES, "encrypted, key not verified on chain").
    pub verified_peer: Option<IdentityName>,
    /// The safety number between us and the verified peer, to compare with theirs.
    pub safety_number: Option<SafetyNumber>,
    /// Whether the user compared it with the peer in person, for the peer's current key.
    pub verified_in_person: bool,
}

/// What happened to a call that is up by re-INVITE: hold and resume, a refused downgrade, or
/// our re-INVITE failing ([`Event::Control`], and the shell's `PhoneEvent::Control`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CallControl {
    /// A call was put on hold: by us ([`PhoneCore::hold`], the peer answered) or by the peer
    /// (its re-INVITE marked the stream `sendonly` or `inactive`). No audio goes either way
    /// meanwhile; RTCP goes on.
    Held {
        /// The call.
        call_id: String,
        /// The peer put it on hold.
        by_peer: bool,
    },
    /// A held call was taken off hold (by us, or by the peer's re-INVITE).
    Resumed {
        /// The call.
        call_id: String,
        /// The peer resumed it.
        by_peer: bool,
    },
    /// A re-INVITE (or the answer to ours) would have changed how the call is keyed: dropped
    /// or replaced its key lines, or weakened its profile or suite. It was refused (488 Not
    /// Acceptable Here) and the call goes on with the keys it had.
    DowngradeRefused {
        /// The call.
        call_id: String,
        /// What the new description would have changed.
        reason: String,
    },
    /// Our hold or resume re-INVITE failed (a non-2xx, or no answer): the call stays as it was.
    Failed {
        /// The call.
        call_id: String,
        /// Why.
        reason: String,
    },
}

impl CallControl {
    /// The call it is about.
    pub fn call_id(&self) -> &str {
        match self {
            CallControl::Held { call_id, .. }
            | CallControl::Resumed { call_id, .. }
            | CallControl::DowngradeRefused { call_id, .. }
            | CallControl::Failed { call_id, .. } => call_id,
        }
    }
}

/// What the core tells its shell.
#[derive(Debug)]
#[non_exhaustive]
pub enum Event {
    /// The shell must do something and answer (or, for media, just do it).
    Need(Need),
    /// Registered at the server.
    Registered {
        /// Granted lifetime, seconds.
        expires: u32,
    },
    /// Our binding was removed (REGISTER with Expires: 0).
    Unregistered,
    /// REGISTER failed (credentials refused, another status, or no answer).
    RegistrationFailed {
        /// Why, as the user reads it.
        error: PhoneError,
    },
    /// Our INVITE left (the callee's key verified, the offer made).
    Dialing {
        /// The call.
        call_id: String,
    },
    /// Our call failed: before the INVITE left (look-up, keys, media socket) or with a final
    /// non-2xx answer or a timeout.
    CallFailed {
        /// The call.
        call_id: String,
        /// Why.
        error: PhoneError,
    },
    /// A call arrives, its caller already checked against the chain. When `awaiting_answer`,
    /// the phone rings and waits for [`PhoneCore::answer`]; otherwise it answers by itself or
    /// refuses (an [`Event::Refused`] follows).
    Incoming {
        /// The call.
        call_id: String,
        /// Who calls, and what the call proves about it.
        caller: CallerId,
        /// The core waits for the user's decision.
        awaiting_answer: bool,
    },
    /// An incoming call was refused (unusable offer, unverified caller, bad keys), or an answer
    /// to our call was unusable (we hang up).
    Refused {
        /// The call.
        call_id: String,
        /// Why.
        reason: String,
    },
    /// Our INVITE got a provisional answer (180, 183…).
    Ringing {
        /// The call.
        call_id: String,
        /// The status.
        code: u16,
    },
    /// Our INVITE was answered with a 2xx (keying follows: [`Event::Keyed`] or
    /// [`Event::Refused`]).
    Answered {
        /// The call.
        call_id: String,
    },
    /// Both SRTP contexts are keyed; the media is starting.
    Keyed(KeyedCall),
    /// A call that got past its first step ended.
    Ended {
        /// The call.
        call_id: String,
        /// Why.
        reason: EndReason,
        /// What the core knew of it.
        summary: Box<CallSummary>,
    },
    /// Hold, resume, a refused downgrade, a failed re-INVITE.
    Control(CallControl),
    /// Received signalling the core could not use (it changed nothing).
    SignallingError {
        /// Why, as text (the parser's error chain).
        reason: String,
    },
}

/// Where a call stands.
enum Stage {
    /// Ours: waiting for the callee's key.
    OutKey { target: PhoneNumber },
    /// Ours: waiting for the media address.
    OutMedia { target: PhoneNumber },
    /// Ours: the INVITE is out. `offer` is taken when the answer comes.
    Inviting {
        offer: Option<Offer>,
        invite_sent: Instant,
        mikey_time: Duration,
    },
    /// Theirs: waiting for the claimed caller's key, to say who calls before ringing.
    Verifying {
        from_uri: String,
        from_display: Option<String>,
        from: FromClaim,
        offer: IncomingOffer,
        sdp: Vec<u8>,
        identity: Option<String>,
    },
    /// Theirs: ringing (or about to answer by itself), the offer kept for accepting.
    Ringing { sdp: Vec<u8> },
    /// Theirs: accepted; waiting for the caller's key (the first look-up found none approved).
    AcceptKey { sdp: Vec<u8>, started: Instant },
    /// Theirs: accepted; waiting for the media address.
    AcceptMedia {
        sdp: Vec<u8>,
        started: Instant,
        lookup_time: Duration,
    },
    /// Keyed, or on its way to an end the user agent reports (a BYE after an unusable answer).
    Up,
}

struct Call {
    stage: Stage,
    peer: String,
    caller: Option<CallerId>,
    outgoing: bool,
    lookup: Option<LookedUp>,
    timings: SetupTimings,
    mode: KeyMode,
    verified_peer: Option<IdentityName>,
    safety_number: Option<SafetyNumber>,
    codec: AudioCodec,
    /// The negotiated telephone-event format, once keyed: DTMF can be sent.
    telephone_event: Option<TelephoneEvent>,
    /// [`Need::BindMedia`] went out: the shell holds a socket (and maybe a task) for the call.
    media: bool,
    keyed: bool,
    /// The status an incoming call is refused with when its PASSporT is why (RFC 8224 §6.2.2).
    refusal: Option<SipStatus>,
    /// The signalling connection dropped while the call was in progress.
    signalling_lost: bool,
    /// The key lines and profile of the peer's description the call was keyed with: a later
    /// description must carry the same ones.
    remote_security: Option<SecurityLines>,
    /// We hold the call (our re-INVITE was answered).
    local_hold: bool,
    /// The peer holds the call.
    remote_hold: bool,
    /// Our hold (`true`) or resume re-INVITE is out.
    hold_pending: Option<bool>,
    /// The user muted the call.
    muted: bool,
    /// The gate last told to the media ([`Need::GateAudio`]).
    gate: AudioGate,
    /// Why we are ending the call, when it is not a plain hang-up.
    ending: Option<EndReason>,
    /// Why its media could not be secured.
    failure: Option<String>,
}

impl Call {
    fn new(stage: Stage, peer: String, outgoing: bool, codec: AudioCodec, mode: KeyMode) -> Call {
        Call {
            stage,
            peer,
            caller: None,
            outgoing,
            lookup: None,
            timings: SetupTimings::default(),
            mode,
            verified_peer: None,
            safety_number: None,
            codec,
            telephone_event: None,
            media: false,
            keyed: false,
            refusal: None,
            signalling_lost: false,
            remote_security: None,
            local_hold: false,
            remote_hold: false,
            hold_pending: None,
            muted: false,
            gate: AudioGate::Open,
            ending: None,
            failure: None,
        }
    }

    fn summary(self) -> Box<CallSummary> {
        Box::new(CallSummary {
            peer: self.peer,
            caller: self.caller,
            outgoing: self.outgoing,
            mode: self.mode,
            verified_peer: self.verified_peer,
            lookup: self.lookup,
            safety_number: self.safety_number,
            timings: self.timings,
            codec: self.codec,
            keyed: self.keyed,
            signalling_lost: self.signalling_lost,
            failure: self.failure,
        })
    }
}

/// The phone's call control: one registration and its calls over one signalling connection.
/// See the module docs for the loop.
pub struct PhoneCore {
    cfg: PhoneConfig,
    ua: UserAgent,
    responder: Responder,
    /// Checks incoming PASSporTs (and names our keystore in the ones we sign); owns their replay
    /// cache.
    passport: Verifier,
    calls: HashMap<String, Call>,
    /// Calls waiting for each name's look-up, in arrival order.
    waiting: HashMap<IdentityName, Vec<String>>,
    out: VecDeque<Vec<u8>>,
    events: VecDeque<Event>,
    ua_deadline: Option<Instant>,
    /// When to refresh the registration (halfway through the granted lifetime).
    refresh_at: Option<Instant>,
    connected: bool,
    /// The user asked for a registration (and has not removed it): it is renewed after the
    /// connection comes back.
    registration_wanted: bool,
    /// `wall` is the wall-clock time at `epoch`.
    epoch: Instant,
    wall: SystemTime,
    stopwatch: Option<fn() -> Instant>,
    /// ZRTP's ZID and retained secrets, shared by the calls' engines.
    zrtp: Arc<ZrtpStore>,
    /// Our own and our peers' fingerprints: each costs 5,200 SHA-512 calls, too much to spend
    /// on every call's path (it once tripled the call set-up time).
    fingerprints: FingerprintCache,
}

impl std::fmt::Debug for PhoneCore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PhoneCore")
            .field("number", &self.cfg.number)
            .field("calls", &self.calls.len())
            .field("connected", &self.connected)
            .finish_non_exhaustive()
    }
}

/// A call's codec until offer/answer settles it (the report of a call that never got keyed
/// shows it).
const PLACEHOLDER_CODEC: AudioCodec = AudioCodec::G711(Codec::Pcmu);

/// The SIP status phrase for the codes an incoming call is refused with.
fn short_reason(code: u16) -> &'static str {
    match code {
        403 => "Forbidden",
        488 => "Not Acceptable Here",
        _ => "Server Internal Error",
    }
}

/// Why a request cannot go out while the signalling connection is down.
fn not_connected() -> PhoneError {
    PhoneError::Signalling("not connected to the SIP server (reconnecting)".into())
}

impl PhoneCore {
    /// A core for `cfg`'s number whose signalling connection has `local` as its own end
    /// (`transport`: `TLS` or `TCP`, for Via and Contact). `keystore` names the chain and
    /// keystore the phone's look-ups read: our PASSporTs point there, and incoming ones must
    /// (with its freshness window). `now` is the start; `wall` the wall-clock time at `now`
    /// (MIKEY timestamps and PASSporT `iat`s count from it). The shell's parts of `cfg`
    /// (signalling address, media IP, key logs, audio) are not read here.
    pub fn new(
        cfg: &PhoneConfig,
        local: SocketAddr,
        transport: &'static str,
        keystore: VerifierConfig,
        now: Instant,
        wall: SystemTime,
    ) -> PhoneCore {
        let ua = UserAgent::new(UaConfig {
            user: cfg.number.as_str().to_owned(),
            domain: cfg.sip_domain.clone(),
            password: cfg.sip_password.clone(),
            local,
            transport,
            user_agent: format!("chaincall/{}", env!("CARGO_PKG_VERSION")),
            randomness: cfg.randomness.clone(),
        });
        let me = IdentityName::Phone(cfg.number.clone());
        // Ours is in every safety number: computed now, not during the first call.
        let mut fingerprints = FingerprintCache::default();
        fingerprints.fingerprint(&me, &cfg.identity.public());
        let mut mikey = ResponderConfig::new(me);
        mikey.replay_per_initiator = cfg.mikey_replay_quota;
        let responder = Responder::new(mikey, (*cfg.identity).clone());
        PhoneCore {
            cfg: cfg.clone(),
            ua,
            responder,
            passport: Verifier::new(keystore, Default::default()),
            calls: HashMap::new(),
            waiting: HashMap::new(),
            out: VecDeque::new(),
            events: VecDeque::new(),
            ua_deadline: None,
            refresh_at: None,
            connected: true,
            registration_wanted: false,
            epoch: now,
            wall,
            stopwatch: None,
            zrtp: cfg
                .zrtp
                .clone()
                .unwrap_or_else(|| Arc::new(ZrtpStore::in_memory(&cfg.randomness))),
            fingerprints,
        }
    }

    /// What a ZRTP call with `peer` needs: the chain binding when its look-up found an
    /// approved key.
    fn zrtp_setup(
        &self,
        peer: Option<&IdentityName>,
        lookup: Option<&LookedUp>,
        now: Instant,
    ) -> ZrtpSetup {
        let key = lookup.and_then(|l| l.entry.approved_key());
        ZrtpSetup {
            store: self.zrtp.clone(),
            identity: self.cfg.identity.clone(),
            peer: peer.cloned().zip(key),
            now,
        }
    }

    /// Lets the core time its own MIKEY work (signatures, ECIES) for the call reports'
    /// [`SetupTimings::mikey`], with `clock` (`Instant::now` in a shell). It never changes what
    /// the core does; without it (simulated-time tests) that work counts as taking no time.
    pub fn set_stopwatch(&mut self, clock: fn() -> Instant) {
        self.stopwatch = Some(clock);
    }

    fn tick(&self) -> Option<Instant> {
        self.stopwatch.map(|clock| clock())
    }

    fn since(&self, tick: Option<Instant>) -> Duration {
        match (self.stopwatch, tick) {
            (Some(clock), Some(t)) => clock().saturating_duration_since(t),
            _ => Duration::ZERO,
        }
    }

    fn wall_clock(&self, now: Instant) -> SystemTime {
        self.wall + now.saturating_duration_since(self.epoch)
    }

    fn ntp(&self, now: Instant) -> NtpTime {
        NtpTime::from_system_time(self.wall_clock(now))
    }

    /// Unix seconds at `now`, for PASSporT `iat`s.
    fn unix_secs(&self, now: Instant) -> u64 {
        self.wall_clock(now)
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    }

    /// Whether a call is known (in any stage, from dialing to its end).
    pub fn has_call(&self, call_id: &str) -> bool {
        self.calls.contains_key(call_id)
    }

    // ---- inputs ----

    /// Feeds one complete SIP message received on the signalling connection. Unusable bytes
    /// change nothing and yield [`Event::SignallingError`].
    pub fn handle_signalling(&mut self, bytes: &[u8], now: Instant) {
        if let Err(e) = self.ua.handle_input(bytes, now) {
            self.events.push_back(Event::SignallingError {
                reason: chaincall_io::ErrorChain(&e).to_string(),
            });
        }
        self.pump(now);
    }

    /// The signalling connection went down or came back. While it is down nothing is sent, the
    /// registration is not refreshed and new calls fail at once; calls in progress keep their
    /// media. When it comes back (a new connection: call [`PhoneCore::set_local_addr`] first
    /// when its local end changed), a registration the user wanted is sent again at once: the
    /// server may have restarted and forgotten it, and the binding names the old connection.
    pub fn handle_transport(&mut self, state: TransportState, now: Instant) {
        let was = self.connected;
        self.connected = state == TransportState::Connected;
        match (was, self.connected) {
            (true, false) => {
                self.refresh_at = None;
                for call in self.calls.values_mut() {
                    call.signalling_lost = true;
                }
            }
            (false, true) if self.registration_wanted => {
                info!(number = %self.cfg.number, "signalling back: registering again");
                self.ua.register(self.cfg.register_expires, now);
            }
            _ => {}
        }
        self.pump(now);
    }

    /// Our end of a new signalling connection (its address goes in Via and Contact). The shell
    /// calls it after reconnecting, before [`PhoneCore::handle_transport`] with `Connected`.
    pub fn set_local_addr(&mut self, local: SocketAddr) {
        self.ua.set_local(local);
    }

    /// The flow to the server changed under us (the NAT gave it another public address): a
    /// registration the user wanted is sent again at once, so the server reaches the new one.
    pub fn register_again(&mut self, now: Instant) {
        if self.connected && self.registration_wanted {
            self.ua.register(self.cfg.register_expires, now);
        }
        self.pump(now);
    }

    /// Time passed: fails requests whose timers ran out and refreshes the registration when due.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.refresh_at.is_some_and(|t| t <= now) {
            self.refresh_at = None;
            debug!(number = %self.cfg.number, "refreshing the registration");
            self.ua.register(self.cfg.register_expires, now);
        }
        self.ua.handle_timeout(now);
        self.pump(now);
    }

    /// Registers (0 unregisters), with digest authentication when challenged; the registration
    /// is refreshed at half its granted lifetime, and renewed after a reconnect. While the
    /// connection is down it fails at once (a wanted registration still goes out once it is
    /// back).
    pub fn register(&mut self, expires: u32, now: Instant) {
        self.cfg.register_expires = expires;
        self.registration_wanted = expires > 0;
        if self.connected {
            self.ua.register(expires, now);
        } else {
            self.events.push_back(Event::RegistrationFailed {
                error: not_connected(),
            });
        }
        self.pump(now);
    }

    /// Places a call to `target` with [`PhoneConfig::key_mode`]; returns its Call-ID at once.
    /// [`Event::Dialing`] follows when the INVITE left, or [`Event::CallFailed`].
    pub fn call(&mut self, target: &PhoneNumber, now: Instant) -> String {
        let call_id = self.ua.new_call_id();
        if !self.connected {
            self.events.push_back(Event::CallFailed {
                call_id: call_id.clone(),
                error: not_connected(),
            });
            return call_id;
        }
        let mode = self.cfg.key_mode;
        let codec = self
            .cfg
            .codecs
            .first()
            .copied()
            .unwrap_or(PLACEHOLDER_CODEC);
        let peer = target.as_str().to_owned();
        let target = target.clone();
        // ZRTP looks the callee up too: its key binds the exchange (docs/zrtp.md).
        if mode.verified_on_chain() || mode == KeyMode::Zrtp {
            let name = IdentityName::Phone(target.clone());
            self.calls.insert(
                call_id.clone(),
                Call::new(Stage::OutKey { target }, peer, true, codec, mode),
            );
            self.need_key(name, &call_id);
        } else {
            self.calls.insert(
                call_id.clone(),
                Call::new(Stage::OutMedia { target }, peer, true, codec, mode),
            );
            self.need_media(&call_id);
        }
        self.pump(now);
        call_id
    }

    /// Accepts or declines (603) an incoming call that is ringing.
    pub fn answer(&mut self, call_id: &str, accept: bool, now: Instant) {
        if accept {
            self.accept(call_id, now);
        } else if matches!(
            self.calls.get(call_id).map(|c| &c.stage),
            Some(Stage::Ringing { .. })
        ) {
            self.ua.answer(call_id, 603, "Decline", None);
            self.drop_call(call_id);
        }
        self.pump(now);
    }

    /// Ends a call in any stage: BYE when up, CANCEL while ours rings, 486 for one of theirs not
    /// yet answered, nothing on the wire before our INVITE left.
    pub fn hangup(&mut self, call_id: &str, now: Instant) {
        let Some(call) = self.calls.get(call_id) else {
            return;
        };
        match &call.stage {
            Stage::OutKey { .. } | Stage::OutMedia { .. } => {
                self.drop_call(call_id);
                self.events.push_back(Event::CallFailed {
                    call_id: call_id.to_owned(),
                    error: PhoneError::Refused {
                        code: 487,
                        reason: "hung up before the INVITE left".into(),
                    },
                });
            }
            Stage::Up if !self.connected => {
                self.ua.abandon(call_id);
                self.end(call_id, EndReason::SignallingLost);
            }
            // CANCEL or BYE: the user agent reports the end (`UaEvent::Ended`).
            Stage::Inviting { .. } | Stage::Up => self.ua.hangup(call_id, now),
            Stage::Verifying { .. }
            | Stage::Ringing { .. }
            | Stage::AcceptKey { .. }
            | Stage::AcceptMedia { .. } => {
                self.ua.hangup(call_id, now);
                self.end(call_id, EndReason::HungUp);
            }
        }
        self.pump(now);
    }

    /// Sends DTMF `digits` (0–9, *, #, A–D) in a call that is up, as RFC 4733 telephone-events:
    /// [`Need::SendDtmf`] follows for the shell's media. Refused when the call is unknown or not
    /// up yet, when offer/answer agreed no telephone-event format, or for a character that is
    /// not a digit (or an event the peer did not announce).
    pub fn send_dtmf(
        &mut self,
        call_id: &str,
        digits: &str,
        now: Instant,
    ) -> Result<(), PhoneError> {
        let call = self
            .calls
            .get(call_id)
            .ok_or_else(|| PhoneError::Dtmf(format!("no call {call_id:?}")))?;
        if !call.keyed || !matches!(call.stage, Stage::Up) {
            return Err(PhoneError::Dtmf(format!("call {call_id:?} is not up")));
        }
        let format = call.telephone_event.as_ref().ok_or_else(|| {
            PhoneError::Dtmf(format!(
                "the peer of call {call_id:?} did not agree to telephone-event (RFC 4733)"
            ))
        })?;
        if digits.is_empty() {
            return Err(PhoneError::Dtmf("no digits".into()));
        }
        for d in digits.chars() {
            let event = chaincall_media::dtmf::digit_to_event(d)
                .map_err(|e| PhoneError::Dtmf(e.to_string()))?;
            if !format.supports(event) {
                return Err(PhoneError::Dtmf(format!(
                    "the peer does not take the event for {d:?}"
                )));
            }
        }
        self.events.push_back(Event::Need(Need::SendDtmf {
            call_id: call_id.to_owned(),
            digits: digits.to_owned(),
        }));
        self.pump(now);
        Ok(())
    }

    /// Puts a call that is up on hold: a re-INVITE with the same keys and `a=sendonly` (RFC 3264
    /// §8.4). Our audio stops at once; [`CallControl::Held`] follows the peer's answer (or
    /// [`CallControl::Failed`]). Holding a held call changes nothing.
    pub fn hold(&mut self, call_id: &str, now: Instant) -> Result<(), PhoneError> {
        self.set_hold(call_id, true, now)
    }

    /// Takes a call we hold off hold: a re-INVITE with `a=sendrecv`; [`CallControl::Resumed`]
    /// follows the peer's answer, and our audio with it.
    pub fn resume(&mut self, call_id: &str, now: Instant) -> Result<(), PhoneError> {
        self.set_hold(call_id, false, now)
    }

    /// Mutes or unmutes our audio in a call that is up: silence goes out in its place (nothing
    /// at all under Opus DTX). Local only: nothing is signalled.
    pub fn mute(&mut self, call_id: &str, muted: bool, now: Instant) -> Result<(), PhoneError> {
        let call = self.up_call(call_id)?;
        call.muted = muted;
        self.gate(call_id);
        self.pump(now);
        Ok(())
    }

    /// The user compared the ZRTP SAS with the peer and it matched: [`Need::ConfirmSas`] records
    /// it in the cache (RFC 6189 §4.6.1.1), and the next call with that peer shows it.
    pub fn confirm_sas(&mut self, call_id: &str, now: Instant) -> Result<(), PhoneError> {
        self.zrtp_call(call_id)?;
        self.events.push_back(Event::Need(Need::ConfirmSas {
            call_id: call_id.to_owned(),
        }));
        self.pump(now);
        Ok(())
    }

    /// The user says the ZRTP SAS differs from the peer's: someone may sit in the media path.
    /// The call ends at once (BYE with a Reason header), [`EndReason::SasRejected`].
    pub fn reject_sas(&mut self, call_id: &str, now: Instant) -> Result<(), PhoneError> {
        self.zrtp_call(call_id)?.ending = Some(EndReason::SasRejected);
        warn!(call = %call_id, "the user reports a SAS mismatch: hanging up");
        if self.connected {
            self.ua.hangup_because(
                call_id,
                "SIP ;cause=488 ;text=\"ZRTP SAS mismatch reported by the user\"",
                now,
            );
        } else {
            self.ua.abandon(call_id);
            self.end(call_id, EndReason::SasRejected);
        }
        self.pump(now);
        Ok(())
    }

    /// The shell's media task could not secure the call (a ZRTP Error, timeout, or failed
    /// chain binding: no audio went out): the phone hangs up by itself, BYE with a Reason
    /// header, and the call ends with [`EndReason::MediaFailed`] and `failure` in its summary.
    pub fn media_failed(&mut self, call_id: &str, failure: &str, now: Instant) {
        if self.calls.contains_key(call_id) {
            warn!(call = %call_id, %failure, "the media could not be secured: hanging up");
        }
        self.end_because(call_id, EndReason::MediaFailed, failure, 488, now);
    }

    /// Ends `call_id` by ourselves for `reason`, `failure` in its summary: a BYE carrying both
    /// as a Reason header (RFC 3326, `cause`: the SIP status that says it best) when the call is
    /// up and the signalling connected, else at once, here only.
    fn end_because(
        &mut self,
        call_id: &str,
        reason: EndReason,
        failure: &str,
        cause: u16,
        now: Instant,
    ) {
        let connected = self.connected;
        let Some(call) = self.calls.get_mut(call_id) else {
            return;
        };
        call.ending = Some(reason);
        call.failure = Some(failure.to_owned());
        if connected && matches!(call.stage, Stage::Up) {
            // RFC 3326's text is a quoted string: no quotes or backslashes from the error.
            let text: String = failure
                .chars()
                .filter(|c| !matches!(c, '"' | '\\') && !c.is_control())
                .take(200)
                .collect();
            let header = format!("SIP ;cause={cause} ;text=\"{text}\"");
            self.ua.hangup_because(call_id, &header, now);
        } else {
            self.ua.abandon(call_id);
            self.end(call_id, reason);
        }
        self.pump(now);
    }

    /// The call, if it is up and keyed by ZRTP (what the SAS actions need).
    fn zrtp_call(&mut self, call_id: &str) -> Result<&mut Call, PhoneError> {
        let call = self.up_call(call_id)?;
        if call.mode != KeyMode::Zrtp {
            return Err(PhoneError::CallControl(format!(
                "call {call_id:?} is keyed by {}, not ZRTP: it has no SAS",
                call.mode.name()
            )));
        }
        Ok(call)
    }

    /// The call, if it is keyed and up (what hold, resume and mute need).
    fn up_call(&mut self, call_id: &str) -> Result<&mut Call, PhoneError> {
        let call = self
            .calls
            .get_mut(call_id)
            .ok_or_else(|| PhoneError::CallControl(format!("no call {call_id:?}")))?;
        if !call.keyed || !matches!(call.stage, Stage::Up) {
            return Err(PhoneError::CallControl(format!(
                "call {call_id:?} is not up"
            )));
        }
        Ok(call)
    }

    fn set_hold(&mut self, call_id: &str, hold: bool, now: Instant) -> Result<(), PhoneError> {
        let connected = self.connected;
        let call = self.up_call(call_id)?;
        if call.hold_pending.is_some() {
            return Err(PhoneError::CallControl(format!(
                "a re-INVITE of call {call_id:?} is in progress"
            )));
        }
        if call.local_hold == hold {
            return Ok(());
        }
        if !connected {
            return Err(not_connected());
        }
        let dir = if hold {
            Direction::SendOnly
        } else {
            Direction::SendRecv
        };
        let sdp = self
            .ua
            .local_sdp(call_id)
            .ok_or_else(|| PhoneError::CallControl("no session description to re-offer".into()))
            .and_then(|local| redescribe(local, dir).map_err(PhoneError::Call))?;
        if !self.ua.reinvite(call_id, &sdp, now) {
            return Err(PhoneError::CallControl(format!(
                "a re-INVITE of call {call_id:?} is in progress"
            )));
        }
        info!(call = %call_id, hold, "re-INVITE: {}", dir.attribute());
        if let Some(call) = self.calls.get_mut(call_id) {
            call.hold_pending = Some(hold);
        }
        self.gate(call_id);
        self.pump(now);
        Ok(())
    }

    /// Tells the media what of its audio may go out, when that changed: nothing while the call
    /// is held either way (or our hold is on its way), silence while muted.
    fn gate(&mut self, call_id: &str) {
        let Some(call) = self.calls.get_mut(call_id) else {
            return;
        };
        let holding = call.hold_pending.unwrap_or(call.local_hold);
        let gate = if holding || call.remote_hold {
            AudioGate::Closed
        } else if call.muted {
            AudioGate::Silence
        } else {
            AudioGate::Open
        };
        if gate != call.gate {
            call.gate = gate;
            self.events.push_back(Event::Need(Need::GateAudio {
                call_id: call_id.to_owned(),
                gate,
            }));
        }
    }

    /// The peer's re-INVITE with a new offer: refused (488) when it would re-key or downgrade
    /// the call; otherwise answered with our description (same keys), its direction the answer
    /// to theirs (RFC 3264 §6.1), telling hold and resume.
    fn reoffer(&mut self, call_id: &str, sdp: &[u8]) {
        let checked = self.calls.get(call_id).filter(|c| c.keyed).map(|call| {
            let new = SecurityLines::of(sdp).map_err(|e| chaincall_io::ErrorChain(&e).to_string());
            let change = match (&call.remote_security, &new) {
                (Some(before), Ok(after)) => before.change_to(after),
                (None, _) => Some("the call's keys are unknown".to_owned()),
                (_, Err(why)) => Some(format!("unusable description: {why}")),
            };
            (change, call.local_hold, call.remote_hold)
        });
        let Some((change, local_hold, was_held)) = checked else {
            self.ua
                .answer_reinvite(call_id, 488, short_reason(488), None);
            return;
        };
        if let Some(reason) = change {
            warn!(call = %call_id, %reason, "re-INVITE refused: it would change the call's media security; the call goes on with its keys");
            self.ua
                .answer_reinvite(call_id, 488, short_reason(488), None);
            self.events
                .push_back(Event::Control(CallControl::DowngradeRefused {
                    call_id: call_id.to_owned(),
                    reason,
                }));
            return;
        }
        let ours = if local_hold {
            Direction::SendOnly
        } else {
            Direction::SendRecv
        };
        let answer = direction(sdp).and_then(|theirs| {
            let local = self.ua.local_sdp(call_id).unwrap_or_default();
            redescribe(local, theirs.answer(ours)).map(|a| (theirs, a))
        });
        let (theirs, answer) = match answer {
            Ok(a) => a,
            Err(e) => {
                warn!(call = %call_id, error = %chaincall_io::ErrorChain(&e), "re-INVITE refused");
                self.ua
                    .answer_reinvite(call_id, 488, short_reason(488), None);
                return;
            }
        };
        self.ua.answer_reinvite(call_id, 200, "OK", Some(&answer));
        // RFC 3264 §8.4: a peer that no longer receives has put us on hold.
        let held = !theirs.receives();
        if held != was_held {
            if let Some(call) = self.calls.get_mut(call_id) {
                call.remote_hold = held;
            }
            info!(call = %call_id, held, "the peer {} the call", if held { "holds" } else { "resumed" });
            let call_id = call_id.to_owned();
            self.events.push_back(Event::Control(if held {
                CallControl::Held {
                    call_id,
                    by_peer: true,
                }
            } else {
                CallControl::Resumed {
                    call_id,
                    by_peer: true,
                }
            }));
        }
        self.gate(call_id);
    }

    /// The final answer to our hold or resume re-INVITE.
    fn reanswered(&mut self, call_id: &str, code: u16, sdp: &[u8]) {
        let Some(call) = self.calls.get_mut(call_id) else {
            return;
        };
        let Some(hold) = call.hold_pending.take() else {
            return;
        };
        if !(200..300).contains(&code) {
            let reason = match code {
                0 => "no answer to the re-INVITE".to_owned(),
                c => format!("the peer answered the re-INVITE with {c}"),
            };
            warn!(call = %call_id, %reason, hold, "hold or resume failed; the call stays as it was");
            self.events.push_back(Event::Control(CallControl::Failed {
                call_id: call_id.to_owned(),
                reason,
            }));
            self.gate(call_id);
            return;
        }
        // The answer must keep the keys too; the media keeps them whatever it says.
        let change = match (&call.remote_security, SecurityLines::of(sdp)) {
            (Some(before), Ok(after)) => before.change_to(&after),
            (_, Err(e)) => Some(format!("unusable answer: {}", chaincall_io::ErrorChain(&e))),
            (None, _) => None,
        };
        call.local_hold = hold;
        if let Some(reason) = change {
            warn!(call = %call_id, %reason, "the answer to our re-INVITE would change the call's media security: ignored; the call goes on with its keys");
            self.events
                .push_back(Event::Control(CallControl::DowngradeRefused {
                    call_id: call_id.to_owned(),
                    reason,
                }));
        }
        let call_id = call_id.to_owned();
        self.events.push_back(Event::Control(if hold {
            CallControl::Held {
                call_id: call_id.clone(),
                by_peer: false,
            }
        } else {
            CallControl::Resumed {
                call_id: call_id.clone(),
                by_peer: false,
            }
        }));
        self.gate(&call_id);
    }

    /// The answer to [`Need::LookupKey`] for `name`: the calls waiting for it go on. An answer
    /// nobody waits for (the call ended meanwhile) is ignored.
    pub fn provide_key(
        &mut self,
        name: &IdentityName,
        result: Result<LookedUp, PhoneError>,
        now: Instant,
    ) {
        let waiters = self.waiting.remove(name).unwrap_or_default();
        if waiters.is_empty() {
            debug!(%name, "key look-up answer nobody waits for: ignored");
        }
        // The error goes to the first call as it is; any other waiter gets its text.
        let mut pending = Some(result);
        for call_id in waiters {
            let Some(r) = pending.take() else { break };
            pending = Some(match &r {
                Ok(found) => Ok(found.clone()),
                Err(e) => Err(PhoneError::Lookup {
                    name: name.clone(),
                    reason: e.to_string(),
                }),
            });
            self.key_arrived(&call_id, name, r, now);
        }
        self.pump(now);
    }

    /// The answer to [`Need::BindMedia`]: the address our media socket for `call_id` has (or why
    /// there is none). Ignored when the call ended meanwhile.
    pub fn provide_media(
        &mut self,
        call_id: &str,
        addr: Result<SocketAddr, PhoneError>,
        now: Instant,
    ) {
        let Some(call) = self.awaiting(call_id, "media address") else {
            return;
        };
        match std::mem::replace(&mut call.stage, Stage::Up) {
            Stage::OutMedia { target } => match addr {
                Ok(addr) => self.send_invite(call_id, &target, addr, now),
                Err(error) => self.fail_call(call_id, error),
            },
            Stage::AcceptMedia {
                sdp,
                started,
                lookup_time,
            } => {
                let result = addr.map_err(|e| (500, e.to_string())).and_then(|addr| {
                    let t = self.tick();
                    let r = self.accept_offer(call_id, &sdp, addr, now);
                    r.map(|(answer, neg)| (answer, neg, self.since(t)))
                });
                match result {
                    Ok((answer, neg, work)) => {
                        self.ua.answer(call_id, 200, "OK", Some(&answer));
                        if let Some(call) = self.calls.get_mut(call_id) {
                            call.remote_security = SecurityLines::of(&sdp).ok();
                            let setup = now.saturating_duration_since(started) + work;
                            call.timings.key_retrieval = lookup_time;
                            call.timings.mikey = setup.saturating_sub(lookup_time);
                            call.timings.call_setup = setup;
                        }
                        self.keyed(call_id, neg);
                    }
                    Err((code, reason)) => self.refuse_accepted(call_id, code, reason),
                }
            }
            other => {
                call.stage = other;
                debug!(call = %call_id, "media address the call did not ask for: ignored");
            }
        }
        self.pump(now);
    }

    // ---- output ----

    /// The next output: signalling to write to the connection, an [`Event`], or the next
    /// deadline (`None`: wait for input alone). Drain until `Timeout` after every input.
    pub fn poll_output(&mut self) -> CoreOutput {
        if let Some(message) = self.out.pop_front() {
            return Output::transmit((), message);
        }
        if let Some(event) = self.events.pop_front() {
            return Output::Event(event);
        }
        Output::Timeout(self.ua_deadline.into_iter().chain(self.refresh_at).min())
    }

    // ---- internals ----

    /// Moves the user agent's output into ours, acting on its events (which may queue more).
    fn pump(&mut self, now: Instant) {
        loop {
            match self.ua.poll_output() {
                Output::Transmit(t) if self.connected => self.out.push_back(t.contents),
                Output::Transmit(_) => debug!("signalling dropped: the connection is down"),
                Output::Event(ev) => self.ua_event(ev, now),
                Output::Timeout(at) => {
                    self.ua_deadline = at;
                    break;
                }
            }
        }
    }

    fn need_key(&mut self, name: IdentityName, call_id: &str) {
        let waiters = self.waiting.entry(name.clone()).or_default();
        let first = waiters.is_empty();
        waiters.push(call_id.to_owned());
        if first {
            self.events.push_back(Event::Need(Need::LookupKey { name }));
        }
    }

    fn need_media(&mut self, call_id: &str) {
        if let Some(call) = self.calls.get_mut(call_id) {
            call.media = true;
        }
        self.events.push_back(Event::Need(Need::BindMedia {
            call_id: call_id.to_owned(),
        }));
    }

    /// Forgets a call, releasing its media socket if it had one. Returns it.
    fn drop_call(&mut self, call_id: &str) -> Option<Call> {
        let call = self.calls.remove(call_id)?;
        if call.media {
            self.events.push_back(Event::Need(Need::StopMedia {
                call_id: call_id.to_owned(),
            }));
        }
        Some(call)
    }

    fn end(&mut self, call_id: &str, reason: EndReason) {
        if let Some(call) = self.drop_call(call_id) {
            info!(call = %call_id, ?reason, "call ended");
            self.events.push_back(Event::Ended {
                call_id: call_id.to_owned(),
                reason,
                summary: call.summary(),
            });
        }
    }

    fn fail_call(&mut self, call_id: &str, error: PhoneError) {
        self.drop_call(call_id);
        warn!(call = %call_id, error = %chaincall_io::ErrorChain(&error), "call failed");
        self.events.push_back(Event::CallFailed {
            call_id: call_id.to_owned(),
            error,
        });
    }

    /// The call an answer is for; `None`, logged, when it ended before the answer came.
    fn awaiting(&mut self, call_id: &str, answer: &str) -> Option<&mut Call> {
        let call = self.calls.get_mut(call_id);
        if call.is_none() {
            debug!(call = %call_id, "{answer} for a call that ended: ignored");
        }
        call
    }

    fn key_arrived(
        &mut self,
        call_id: &str,
        name: &IdentityName,
        result: Result<LookedUp, PhoneError>,
        now: Instant,
    ) {
        let Some(call) = self.awaiting(call_id, "key look-up answer") else {
            return;
        };
        match std::mem::replace(&mut call.stage, Stage::Up) {
            Stage::OutKey { target } => match result {
                Ok(found) => {
                    call.timings.key_retrieval = found.elapsed;
                    call.lookup = Some(found);
                    call.stage = Stage::OutMedia { target };
                    self.need_media(call_id);
                }
                // A callee without a key (a standard phone) can still take a ZRTP call, with the
                // SAS and retained secrets only; a failed look-up is not that and fails the call.
                Err(PhoneError::UnknownCallee(_) | PhoneError::CalleeNotApproved { .. })
                    if call.mode == KeyMode::Zrtp =>
                {
                    info!(call = %call_id, callee = %target, "no approved key on chain: ZRTP without the chain binding");
                    call.stage = Stage::OutMedia { target };
                    self.need_media(call_id);
                }
                Err(error) => self.fail_call(call_id, error),
            },
            Stage::Verifying {
                from_uri,
                from_display,
                from,
                offer,
                sdp,
                identity,
            } => {
                let passport = match &result {
                    Ok(found) => self.check_passport(identity.as_deref(), name, &sdp, found, now),
                    // No approved key: nothing to check a PASSporT against, and the caller is
                    // unverified whatever it carries.
                    Err(_) => PassportCheck::Absent,
                };
                if let Some(call) = self.calls.get_mut(call_id) {
                    call.refusal = passport.refusal();
                }
                let (verification, lookup) =
                    self.verify_caller(&from, &offer, &passport, name, result, now);
                self.decide_incoming(
                    call_id,
                    (from_uri, from_display, from),
                    offer.mode,
                    verification,
                    lookup,
                    sdp,
                    now,
                );
            }
            Stage::AcceptKey { sdp, started } => match result {
                Ok(found) => {
                    let lookup_time = found.elapsed;
                    call.lookup = Some(found);
                    call.stage = Stage::AcceptMedia {
                        sdp,
                        started,
                        lookup_time,
                    };
                    self.need_media(call_id);
                }
                Err(e) => self.refuse_accepted(call_id, 403, e.to_string()),
            },
            other => call.stage = other,
        }
    }

    fn send_invite(&mut self, call_id: &str, target: &PhoneNumber, addr: SocketAddr, now: Instant) {
        let Some(call) = self.calls.get(call_id) else {
            return;
        };
        let callee = IdentityName::Phone(target.clone());
        let mut dir = StaticDirectory::new();
        if let Some(found) = &call.lookup {
            found.record(&mut dir, &callee);
        }
        let local = LocalMedia {
            addr,
            codecs: self.cfg.codecs.clone(),
            randomness: self.cfg.randomness.clone(),
        };
        let mode = call.mode;
        let me = IdentityName::Phone(self.cfg.number.clone());
        let t = self.tick();
        let offer = match mode {
            KeyMode::Sdes => Ok(Offer::sdes(&callee, &local)),
            KeyMode::Zrtp => Offer::zrtp(
                &callee,
                &local,
                &self.zrtp_setup(Some(&callee), call.lookup.as_ref(), now),
            ),
            _ => Offer::mikey(
                mode,
                &me,
                &self.cfg.identity,
                &callee,
                &dir,
                &local,
                self.ntp(now),
            ),
        };
        let mikey_time = self.since(t);
        let offer = match offer {
            Ok(o) => o,
            Err(e) => return self.fail_call(call_id, PhoneError::Call(e)),
        };
        let identity = match self.sign_passport(target, offer.sdp(), now) {
            Ok(header) => header,
            Err(e) => return self.fail_call(call_id, PhoneError::Identity(e)),
        };
        self.ua.invite_as(
            call_id.to_owned(),
            target.as_str(),
            offer.sdp(),
            Some(&identity),
            now,
        );
        info!(call = %call_id, to = %target, mode = mode.name(), "calling");
        if let Some(call) = self.calls.get_mut(call_id) {
            call.stage = Stage::Inviting {
                offer: Some(offer),
                invite_sent: now + mikey_time,
                mikey_time,
            };
        }
        self.events.push_back(Event::Dialing {
            call_id: call_id.to_owned(),
        });
    }

    /// Our Identity header for a call to `target` with this offer: a PASSporT (RFC 8225) signed
    /// by our on-chain key, naming our keystore entry as `info`, bound to the offer's key lines.
    /// A new one for every INVITE: its `origid` is fresh, so no verifier sees it twice.
    fn sign_passport(
        &self,
        target: &PhoneNumber,
        sdp: &str,
        now: Instant,
    ) -> Result<String, PassportError> {
        let keystore = self.passport.config();
        let me = self.cfg.number.clone();
        let locator = KeyLocator::new(keystore.chain_id, keystore.keystore, me.clone().into());
        let claims = Claims {
            orig: Party::Tn(me),
            dest: Dest::single(Party::Tn(target.clone())),
            iat: self.unix_secs(now),
            origid: self.cfg.randomness.with(|rng| new_origid(rng)),
            media: MediaBinding::from_sdp(sdp),
        };
        Ok(IdentityHeader::sign(&self.cfg.identity, &locator, &claims)?.to_string())
    }

    /// Checks an incoming call's Identity header (RFC 8224 §6.2) against `claimed`, the
    /// identity its From names, whose key look-up gave `found`: the PASSporT must name that
    /// identity in our keystore, be signed by its approved key, vouch for it as `orig`, name us
    /// as `dest`, bind the SDP received, be fresh and not seen before. Logged when it fails.
    fn check_passport(
        &mut self,
        identity: Option<&str>,
        claimed: &IdentityName,
        sdp: &[u8],
        found: &LookedUp,
        now: Instant,
    ) -> PassportCheck {
        let Some(value) = identity else {
            return PassportCheck::Absent;
        };
        let IdentityName::Phone(number) = claimed else {
            return PassportCheck::Absent;
        };
        let result = IdentityHeader::parse(value).and_then(|header| {
            self.passport.check_key_for(&header, claimed)?;
            let orig = Party::Tn(number.clone());
            let key = found
                .entry
                .approved_key()
                .ok_or_else(|| PassportError::KeyNotFound(claimed.canonical()))?;
            let me = Party::Tn(self.cfg.number.clone());
            let media = MediaBinding::from_sdp(&String::from_utf8_lossy(sdp));
            let expected = Expected {
                orig: &orig,
                dest: &me,
                media: &media,
            };
            self.passport
                .verify(&header, &key, &expected, self.unix_secs(now))
        });
        match result {
            Ok(_) => PassportCheck::Valid,
            Err(e) => {
                info!(%claimed, status = %e.status(), error = %e, "caller's Identity header refused");
                PassportCheck::Invalid(e)
            }
        }
    }

    fn ua_event(&mut self, ev: UaEvent, now: Instant) {
        match ev {
            UaEvent::Registered { expires } => {
                info!(number = %self.cfg.number, expires, "registered");
                // RFC 3261 §10.2.4: refresh before the binding expires.
                self.refresh_at = Some(now + Duration::from_secs(u64::from(expires.max(2)) / 2));
                self.events.push_back(Event::Registered { expires });
            }
            UaEvent::Unregistered => {
                self.refresh_at = None;
                self.events.push_back(Event::Unregistered);
            }
            UaEvent::RegistrationFailed { code, reason } => {
                warn!(number = %self.cfg.number, code, %reason, "registration failed");
                let error = match code {
                    401 | 403 | 407 => PhoneError::AuthFailed(code),
                    0 => PhoneError::Timeout("the registrar's answer"),
                    _ => PhoneError::Refused { code, reason },
                };
                self.events.push_back(Event::RegistrationFailed { error });
            }
            UaEvent::IncomingCall {
                call_id,
                from_uri,
                from_display,
                sdp,
                identity,
            } => self.incoming(call_id, from_uri, from_display, sdp, identity, now),
            UaEvent::Ringing { call_id, code } => {
                self.events.push_back(Event::Ringing { call_id, code })
            }
            UaEvent::Answered { call_id, sdp } => self.answered(&call_id, &sdp, now),
            UaEvent::CallFailed {
                call_id,
                code,
                reason,
            } => {
                let Some(call) = self.calls.get(&call_id) else {
                    return;
                };
                let peer = call.peer.clone();
                let error = match code {
                    404 | 480 => PhoneError::Offline(peer),
                    486 | 600 => PhoneError::Busy(peer),
                    0 => PhoneError::Timeout("the callee's answer"),
                    _ => PhoneError::Refused { code, reason },
                };
                self.fail_call(&call_id, error);
            }
            UaEvent::Confirmed { call_id } => debug!(call = %call_id, "ACK received"),
            UaEvent::NoAck { call_id } => {
                let failure = "the caller never acknowledged our answer: no ACK within 64·T1 (32 s), RFC 3261 §13.3.1.4";
                warn!(call = %call_id, "{failure}: hanging up");
                self.end_because(&call_id, EndReason::NoAck, failure, 408, now);
            }
            UaEvent::ReInvite { call_id, sdp } => self.reoffer(&call_id, &sdp),
            UaEvent::ReInviteAnswered { call_id, code, sdp } => {
                self.reanswered(&call_id, code, &sdp)
            }
            UaEvent::RingExpired { call_id } => {
                info!(call = %call_id, "incoming call not answered in time: 408");
                self.end(&call_id, EndReason::NotAnswered);
            }
            UaEvent::Ended { call_id, by_peer } => {
                let keyed = self.calls.get(&call_id).is_some_and(|c| c.keyed);
                let ending = self.calls.get(&call_id).and_then(|c| c.ending);
                let reason = match (by_peer, keyed) {
                    (false, _) => ending.unwrap_or(EndReason::HungUp),
                    (true, true) => EndReason::HungUpByPeer,
                    (true, false) => EndReason::CancelledByPeer,
                };
                self.end(&call_id, reason);
            }
        }
    }

    fn incoming(
        &mut self,
        call_id: String,
        from_uri: String,
        from_display: Option<String>,
        sdp: Vec<u8>,
        identity: Option<String>,
        now: Instant,
    ) {
        let from = FromClaim::parse(&from_uri);
        if !self.calls.is_empty() {
            info!(call = %call_id, from = ?from_uri, "busy: refusing a second call");
            self.ua.answer(&call_id, 486, "Busy Here", None);
            return;
        }
        let offer = match IncomingOffer::parse(&sdp) {
            Ok(o) => o,
            Err(e) => {
                let why = chaincall_io::ErrorChain(&e).to_string();
                info!(call = %call_id, from = ?from_uri, error = %why, "unusable offer refused");
                self.ua.answer(&call_id, 488, short_reason(488), None);
                self.events.push_back(Event::Refused {
                    call_id,
                    reason: why,
                });
                return;
            }
        };
        match from.number.clone().filter(|_| !from.validation_failed) {
            Some(number) => {
                let peer = from.user.clone();
                self.calls.insert(
                    call_id.clone(),
                    Call::new(
                        Stage::Verifying {
                            from_uri,
                            from_display,
                            from,
                            offer,
                            sdp,
                            identity,
                        },
                        peer,
                        false,
                        PLACEHOLDER_CODEC,
                        KeyMode::MikeyPke,
                    ),
                );
                self.need_key(IdentityName::Phone(number), &call_id);
            }
            None => {
                let v = crate::caller::verify(
                    &from,
                    &offer,
                    &PassportCheck::Absent,
                    ClaimLookup::NoClaim,
                    &self.responder,
                    self.ntp(now),
                );
                let peer = from.user.clone();
                self.calls.insert(
                    call_id.clone(),
                    Call::new(Stage::Up, peer, false, PLACEHOLDER_CODEC, KeyMode::MikeyPke),
                );
                self.decide_incoming(
                    &call_id,
                    (from_uri, from_display, from),
                    offer.mode,
                    v,
                    None,
                    sdp,
                    now,
                );
            }
        }
    }

    /// What the offer proves about the From's claim, given the claimed identity's look-up, and
    /// that look-up when answering will use it (MIKEY offers only).
    fn verify_caller(
        &mut self,
        from: &FromClaim,
        offer: &IncomingOffer,
        passport: &PassportCheck,
        name: &IdentityName,
        result: Result<LookedUp, PhoneError>,
        now: Instant,
    ) -> (Verification, Option<LookedUp>) {
        let (claim, found) = match result {
            Ok(found) => (Ok(found.clone()), Some(found)),
            Err(e @ (PhoneError::UnknownCallee(_) | PhoneError::CalleeNotApproved { .. })) => {
                (Err(ClaimLookup::NoKey(e.to_string())), None)
            }
            Err(e) => (Err(ClaimLookup::Failed(e.to_string())), None),
        };
        let mut dir = StaticDirectory::new();
        let lookup = match claim {
            Ok(found) => {
                found.record(&mut dir, name);
                ClaimLookup::Approved {
                    directory: &dir,
                    proven: found.verified,
                    // The 30-digit fingerprint `keystore get` and `phone contact show` print.
                    fingerprint: found
                        .entry
                        .public_key()
                        .map(|k| self.fingerprints.fingerprint(name, &k).grouped())
                        .unwrap_or_default(),
                }
            }
            Err(other) => other,
        };
        let v = crate::caller::verify(
            from,
            offer,
            passport,
            lookup,
            &self.responder,
            self.ntp(now),
        );
        // Kept only where answering uses it (MIKEY's keys, ZRTP's chain binding): an SDES
        // call's report shows no key retrieval.
        (
            v,
            found.filter(|_| offer.mode.verified_on_chain() || offer.mode == KeyMode::Zrtp),
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn decide_incoming(
        &mut self,
        call_id: &str,
        (from_uri, from_display, from): (String, Option<String>, FromClaim),
        mode: KeyMode,
        verification: Verification,
        lookup: Option<LookedUp>,
        sdp: Vec<u8>,
        now: Instant,
    ) {
        let caller = CallerId {
            uri: from_uri,
            display_name: from_display,
            claimed: from.number.clone().map(IdentityName::Phone),
            verification,
        };
        // A MIKEY offer keys only with the claimed identity's approved key: one that did not
        // verify cannot be answered under any policy, so it is refused before ringing.
        let decision = if mode.verified_on_chain() && !caller.is_verified() {
            Decision::Refuse
        } else {
            decide(
                &caller.verification,
                self.cfg.accept_unverified,
                self.cfg.auto_answer,
            )
        };
        info!(call = %call_id, from = ?caller.uri, verification = caller.verification.name(), ?decision, "incoming call");
        self.events.push_back(Event::Incoming {
            call_id: call_id.to_owned(),
            caller: caller.clone(),
            awaiting_answer: decision == Decision::Ring,
        });
        if decision == Decision::Refuse {
            let reason = format!(
                "caller not verified: {}",
                caller.verification.reason().unwrap_or_default()
            );
            // INFO, not WARN: refusing spoofed callers is the policy working.
            info!(call = %call_id, from = ?caller.uri, ?reason, "incoming call refused");
            // A PASSporT that failed says why in RFC 8224's words (438, 403 Stale Date…).
            let (code, phrase) = self
                .calls
                .get(call_id)
                .and_then(|c| c.refusal)
                .map_or((403, "Forbidden (caller not verified)"), |s| {
                    (s.code, s.reason)
                });
            self.ua.answer(call_id, code, phrase, None);
            self.calls.remove(call_id);
            self.events.push_back(Event::Refused {
                call_id: call_id.to_owned(),
                reason,
            });
            return;
        }
        let Some(call) = self.calls.get_mut(call_id) else {
            return;
        };
        call.peer = from.user;
        call.caller = Some(caller);
        call.lookup = lookup;
        call.stage = Stage::Ringing { sdp };
        match decision {
            Decision::Answer => self.accept(call_id, now),
            _ => self.ua.answer(call_id, 180, "Ringing", None),
        }
    }

    fn accept(&mut self, call_id: &str, now: Instant) {
        let Some(call) = self.calls.get_mut(call_id) else {
            return;
        };
        let Stage::Ringing { sdp } = std::mem::replace(&mut call.stage, Stage::Up) else {
            return;
        };
        let mode = match IncomingOffer::parse(&sdp) {
            Ok(offer) => offer.mode,
            Err(e) => {
                return self.refuse_accepted(
                    call_id,
                    488,
                    chaincall_io::ErrorChain(&e).to_string(),
                );
            }
        };
        if !mode.verified_on_chain() {
            // ZRTP keeps the caller's look-up (its chain binding); SDES has none.
            let lookup_time = call.lookup.as_ref().map_or(Duration::ZERO, |l| l.elapsed);
            call.stage = Stage::AcceptMedia {
                sdp,
                started: now,
                lookup_time,
            };
            return self.need_media(call_id);
        }
        let Ok(number) = PhoneNumber::parse(&call.peer) else {
            let reason = format!("caller {:?} is not an E.164 number", call.peer);
            return self.refuse_accepted(call_id, 403, reason);
        };
        // Looked up when the call arrived; again only if that found no approved key.
        match &call.lookup {
            Some(found) => {
                call.stage = Stage::AcceptMedia {
                    sdp,
                    started: now,
                    lookup_time: found.elapsed,
                };
                self.need_media(call_id);
            }
            None => {
                call.stage = Stage::AcceptKey { sdp, started: now };
                self.need_key(IdentityName::Phone(number), call_id);
            }
        }
    }

    /// Keys the accepted call against the caller's looked-up key; the answer SDP and the media.
    fn accept_offer(
        &mut self,
        call_id: &str,
        sdp: &[u8],
        addr: SocketAddr,
        now: Instant,
    ) -> Result<(String, NegotiatedMedia), (u16, String)> {
        let offer = IncomingOffer::parse(sdp)
            .map_err(|e| (488, chaincall_io::ErrorChain(&e).to_string()))?;
        let call = self
            .calls
            .get(call_id)
            .ok_or((500, "the call ended".to_owned()))?;
        let claimed = PhoneNumber::parse(&call.peer).ok().map(IdentityName::Phone);
        let mut dir = StaticDirectory::new();
        if let (Some(name), Some(found)) = (&claimed, &call.lookup) {
            found.record(&mut dir, name);
        }
        let local = LocalMedia {
            addr,
            codecs: self.cfg.codecs.clone(),
            randomness: self.cfg.randomness.clone(),
        };
        if offer.mode == KeyMode::Zrtp {
            let setup = self.zrtp_setup(claimed.as_ref(), call.lookup.as_ref(), now);
            return offer
                .accept_zrtp(&local, &setup)
                .map_err(|e| (488, chaincall_io::ErrorChain(&e).to_string()));
        }
        let ntp = self.ntp(now);
        offer
            .accept(claimed.as_ref(), &mut self.responder, &dir, &local, ntp)
            .map_err(|e| (488, chaincall_io::ErrorChain(&e).to_string()))
    }

    /// Refuses an incoming call we had accepted (its keys failed): the status, and why.
    fn refuse_accepted(&mut self, call_id: &str, code: u16, reason: String) {
        warn!(call = %call_id, code, %reason, "incoming call refused");
        self.ua.answer(call_id, code, short_reason(code), None);
        self.drop_call(call_id);
        self.events.push_back(Event::Refused {
            call_id: call_id.to_owned(),
            reason,
        });
    }

    fn answered(&mut self, call_id: &str, sdp: &[u8], now: Instant) {
        let Some(call) = self.calls.get_mut(call_id) else {
            return;
        };
        let Stage::Inviting {
            offer,
            invite_sent,
            mikey_time,
        } = &mut call.stage
        else {
            return;
        };
        let Some(offer) = offer.take() else {
            return;
        };
        let (invite_sent, mikey_time) = (*invite_sent, *mikey_time);
        self.events.push_back(Event::Answered {
            call_id: call_id.to_owned(),
        });
        let mut dir = StaticDirectory::new();
        if let Some(found) = &call.lookup
            && let Ok(number) = PhoneNumber::parse(&call.peer)
        {
            // The callee's key as looked up (and proven) before the INVITE: a DH-SIGN answer must
            // be signed with it.
            found.record(&mut dir, &IdentityName::Phone(number));
        }
        let t = self.tick();
        let result = offer.handle_answer(sdp, &dir, self.ntp(now));
        let work = self.since(t);
        match result {
            Ok(neg) => {
                if let Some(call) = self.calls.get_mut(call_id) {
                    call.remote_security = SecurityLines::of(sdp).ok();
                    call.stage = Stage::Up;
                    let signalling = now.saturating_duration_since(invite_sent);
                    call.timings.signalling = signalling;
                    call.timings.call_setup = signalling + work;
                    call.timings.mikey = mikey_time + work;
                }
                self.keyed(call_id, neg);
            }
            Err(e) => {
                let why = chaincall_io::ErrorChain(&e).to_string();
                warn!(call = %call_id, error = %why, "answer refused; hanging up");
                self.events.push_back(Event::Refused {
                    call_id: call_id.to_owned(),
                    reason: why,
                });
                self.ua.hangup(call_id, now);
            }
        }
    }

    /// The call is keyed: the shell starts its media, the user sees it up.
    fn keyed(&mut self, call_id: &str, neg: NegotiatedMedia) {
        let me = IdentityName::Phone(self.cfg.number.clone());
        let own_key = self.cfg.identity.public();
        let Some(call) = self.calls.get_mut(call_id) else {
            return;
        };
        call.stage = Stage::Up;
        call.keyed = true;
        call.mode = neg.mode;
        call.verified_peer = neg.verified_peer.clone();
        call.codec = neg.codec;
        call.telephone_event = neg.telephone_event.clone();
        // Only for a peer MIKEY proved against the key we looked up: that key is the one the
        // user compares.
        call.safety_number = match (&neg.verified_peer, &call.lookup) {
            (Some(peer), Some(found)) => found
                .entry
                .approved_key()
                .map(|key| self.fingerprints.safety_number(&me, &own_key, peer, &key)),
            _ => None,
        };
        let event = Event::Keyed(KeyedCall {
            call_id: call_id.to_owned(),
            peer: call.peer.clone(),
            caller: call.caller.clone(),
            mode: neg.mode,
            verified_peer: neg.verified_peer.clone(),
            safety_number: call.safety_number.clone(),
            verified_in_person: call.lookup.as_ref().is_some_and(|l| l.verified_in_person),
        });
        self.events.push_back(Event::Need(Need::StartMedia {
            call_id: call_id.to_owned(),
            media: Box::new(neg),
        }));
        self.events.push_back(event);
    }
}
