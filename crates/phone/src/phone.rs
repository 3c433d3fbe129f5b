//! The phone's I/O shell: the signalling connection (TLS-PSK to sipd, or TCP to a standard
//! proxy such as Kamailio), the user agent, key lookups on chain, and one SRTP media task per call.
//!
//! [`Phone::connect`] returns a cheap [`Phone`] handle; an actor task owns the connection and
//! executes a [`PhoneCore`], which holds all call control (user agent, MIKEY, caller checks,
//! negotiation): frames read go to the core, commands go to the core, its key look-ups run beside
//! the loop, its media needs start and stop one SRTP media task per call, and its events become
//! [`PhoneEvent`]s.
//!
//! When the connection drops (end of stream, a read or write error, sipd restarting) the actor
//! tells the core ([`TransportState::Lost`]), says so ([`PhoneEvent::SignallingLost`]) and
//! reconnects beside its loop: waits as [`Backoff`] says (0.5 s doubling to 30 s, jittered), runs
//! the whole connect again (the TLS-PSK handshake with the server's on-chain key, or TCP), logs
//! each attempt with its number and error chain, and on success feeds
//! [`TransportState::Connected`]; the core registers again when a registration was wanted. Calls
//! in progress keep their media throughout (it never went through the signalling link).
//!
//! Over UDP nothing drops: the keep-alive is a STUN Binding request ([`StunKeepAlive`]), and one
//! left unanswered is the loss (the same [`PhoneEvent::SignallingLost`] and
//! [`TransportState::Lost`]); the socket stays, the keep-alive probes with back-off, and its
//! first answer is the way back ([`PhoneEvent::Reconnected`], `Connected`, the registration
//! again at once: a restarted server forgot it).
//!
//! A server with several addresses (the nodes of a sipd cluster, [`PhoneConfig::failover`]) is
//! reached at the first that answers; when the connection drops, the reconnect tries the next
//! address first and goes round them, one attempt per wait, so a dead node costs one back-off
//! step.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use chaincall_chain::KeystoreChain;
use chaincall_handshake::{
    AlertCode, HandshakeConfig, HandshakeError, Initiator, LocalIdentity, Protocol,
};
use chaincall_identity::{
    IdentityKey, IdentityName, PhoneNumber, Randomness, SafetyNumber, StaticDirectory,
};
use chaincall_io::Output;
use chaincall_media::g711::Codec;
use chaincall_media::jitter::JitterStats;
use chaincall_media::opus::OpusConfig;
use chaincall_media::{
    AudioCodec, AudioGate, MediaChannel, MediaConfig, MediaEvent, MediaOptions, MediaSession,
    MediaStats, Playout,
};
use chaincall_sip::framing::{Frame, StreamFramer};
use chaincall_sip::message::ParseLimits;
use chaincall_tls_psk::{OpensslCrypto, TlsPskClient, TlsPskConfig, TlsPskError};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinSet;
use tracing::{debug, info, warn};
use zeroize::Zeroizing;

use crate::caller::{AcceptUnverified, CallerId};
use crate::contacts::KeyChange;
use crate::core::{
    CallControl, CallSummary, EndReason, Event as CoreEvent, KeyedCall, Need, PhoneCore,
    TransportState,
};
use crate::device_audio::{CallAudio, DeviceAudio};
use crate::error::PhoneError;
use crate::keys::{KeyLookup, LookedUp};
use crate::link::{
    Backoff, KeepAlive, KeepAliveAction, StunAction, StunAnswer, StunHeard, StunKeepAlive,
};
use crate::negotiation::{KeyMode, MediaKeys, NegotiatedMedia, StreamKey};
use crate::zrtp_media::{PendingSession, ZrtpRun, ZrtpStatus};

/// How the phone reaches its SIP server.
#[derive(Debug, Clone)]
pub enum Signalling {
    /// chaincall's way: the handshake with the server's on-chain identity, then TLS with the PSK.
    TlsPsk {
        /// The server's address.
        addr: SocketAddr,
        /// The server's identity name in the keystore (its domain).
        server: IdentityName,
    },
    /// Plain TCP to a standard proxy (Kamailio): signalling unprotected, media still end-to-end.
    Tcp {
        /// The proxy's address.
        addr: SocketAddr,
    },
    /// UDP to a standard proxy or sipd's `udp:` listener: digest authentication, no TLS-PSK,
    /// signalling unprotected; RFC 3261 retransmissions, `;rport` in Via (RFC 3581), CRLF
    /// keep-alives for NAT bindings.
    Udp {
        /// The proxy's address.
        addr: SocketAddr,
    },
}

impl Signalling {
    /// The server's address.
    pub fn addr(&self) -> SocketAddr {
        match self {
            Signalling::TlsPsk { addr, .. }
            | Signalling::Tcp { addr }
            | Signalling::Udp { addr } => *addr,
        }
    }

    /// The same path to another address of the server (another node of its domain).
    pub fn with_addr(&self, to: SocketAddr) -> Signalling {
        let mut s = self.clone();
        match &mut s {
            Signalling::TlsPsk { addr, .. }
            | Signalling::Tcp { addr }
            | Signalling::Udp { addr } => *addr = to,
        }
        s
    }
}

/// The codecs a phone offers and takes unless configured otherwise, preferred first: Opus
/// between chaincall phones, G.711 for phones without it.
pub const DEFAULT_CODECS: [AudioCodec; 3] = [
    AudioCodec::OPUS,
    AudioCodec::G711(Codec::Pcmu),
    AudioCodec::G711(Codec::Pcma),
];

/// MIKEY offers one caller may have in a phone's replay cache unless configured otherwise
/// ([`PhoneConfig::mikey_replay_quota`]).
pub const DEFAULT_MIKEY_REPLAY_QUOTA: usize = chaincall_mikey::replay::DEFAULT_PER_INITIATOR;

/// The most of a call's playout [`PhoneConfig::keep_playout`] keeps: ten minutes (55 MB at
/// 48 kHz), far beyond a bench call.
pub const KEPT_PLAYOUT: Duration = Duration::from_secs(600);

/// What a phone needs to run.
#[derive(Clone)]
pub struct PhoneConfig {
    /// Our number.
    pub number: PhoneNumber,
    /// Our identity key (its public half is approved on chain).
    pub identity: Arc<IdentityKey>,
    /// SIP digest password.
    pub sip_password: Zeroizing<String>,
    /// SIP domain (realm and registrar).
    pub sip_domain: String,
    /// The signalling path.
    pub signalling: Signalling,
    /// More addresses of the same server (the other nodes of its domain), tried in this order
    /// after `signalling`'s when a connect fails or the connection drops; empty for one.
    pub failover: Vec<SocketAddr>,
    /// Address to bind media sockets to.
    pub media_ip: IpAddr,
    /// Codecs, preferred first ([`DEFAULT_CODECS`]: Opus, then G.711 PCMU and PCMA).
    pub codecs: Vec<AudioCodec>,
    /// Key mode for outgoing calls.
    pub key_mode: KeyMode,
    /// ZRTP's ZID and retained secrets (`zrtp_cache` in the phone file); `None`: a fresh ZID
    /// and a cache in memory for this run.
    pub zrtp: Option<Arc<crate::zrtp_store::ZrtpStore>>,
    /// Where to append SRTP master keys for debugging (`--keylog`); `None` (the default) writes none.
    pub keylog: Option<PathBuf>,
    /// Where to append TLS secrets of the TLS-PSK connection (NSS key log, for Wireshark); `None`
    /// (the default) writes none.
    pub tls_keylog: Option<PathBuf>,
    /// Answer incoming calls at once (verified callers; unverified ones only under
    /// [`AcceptUnverified::Always`]).
    pub auto_answer: bool,
    /// What to do with callers that are not verified on chain. `None`: ask for unverified
    /// callers, refuse likely spoofs ([`crate::caller::decide`]).
    pub accept_unverified: Option<AcceptUnverified>,
    /// What we send in calls (8 kHz PCM; 48 kHz with `wideband`), unless `devices` is set.
    pub audio: Arc<Vec<i16>>,
    /// The PCM interface at the codec's rate: `audio` is 48 kHz PCM (converted down only for a
    /// G.711 call) and [`CallReport::recorded`] is at the call's codec rate (48 kHz for Opus),
    /// so nothing above 4 kHz is lost on the way. `false` (the phone file's phones, the demo,
    /// the tests): both 8 kHz, as the WAV files `audio_in` and `record_dir` hold.
    pub wideband: bool,
    /// Keep what each call plays, with its timing, in [`CallReport::playout`] (up to
    /// [`KEPT_PLAYOUT`]): for `chaincall bench audio`, which scores it and measures mouth-to-ear
    /// delay. `false` elsewhere.
    pub keep_playout: bool,
    /// The Opus loss hint follows the peer's RTCP loss reports (`MediaOptions::adaptive_loss_hint`;
    /// the phone file's phones: on). Off only where a call's encoding must not depend on
    /// timing: the demo compares its recording with an offline encoding of the same audio.
    pub adaptive_loss_hint: bool,
    /// Calls on the sound card: the microphone is sent and the speaker plays what is received
    /// (`audio = "device"`). `None`: `audio` is sent and what is received only recorded.
    pub devices: Option<DeviceAudio>,
    /// Registration lifetime asked for, seconds.
    pub register_expires: u32,
    /// How often to send a keep-alive to the SIP server: a CRLF ping on the signalling stream
    /// (RFC 5626 §4.4.1), a STUN Binding request over UDP (§4.4.2, at most every 25 s). A ping
    /// unanswered for 10 s counts as a lost connection, or over UDP as a failed flow: the phone
    /// probes the server with back-off and registers again as soon as it answers
    /// ([`crate::link::StunKeepAlive`]). `None`: no keep-alives.
    pub keepalive: Option<Duration>,
    /// MIKEY offers one caller may have in our replay cache at once (RFC 3830 §5.4: each is kept
    /// until its timestamp leaves the ±60 s window); more are refused with 488 until some expire.
    /// [`DEFAULT_MIKEY_REPLAY_QUOTA`] (32) is far above what a person dials;
    /// a load test calling one phone from one number needs more.
    pub mikey_replay_quota: usize,
    /// Where SIP tags, branches and Call-IDs and the media offers' keys and salts come from: the
    /// OS CSPRNG in production, seeded in tests.
    pub randomness: Randomness,
}

impl std::fmt::Debug for PhoneConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PhoneConfig")
            .field("number", &self.number)
            .field("sip_domain", &self.sip_domain)
            .field("signalling", &self.signalling)
            .field("key_mode", &self.key_mode)
            .finish_non_exhaustive()
    }
}

/// Where the milliseconds of a call set-up went.
#[derive(Debug, Clone, Default)]
pub struct SetupTimings {
    /// Verified lookup of the peer's key (caller: before the INVITE; callee: the caller's key).
    pub key_retrieval: Duration,
    /// Building the MIKEY offer or processing it (signatures, ECIES).
    pub mikey: Duration,
    /// INVITE sent to the 200 OK received (network, proxy, the callee's work).
    pub signalling: Duration,
    /// INVITE sent to both SRTP contexts keyed: the paper's call set-up time.
    pub call_setup: Duration,
}

/// A finished call, as the user (or the demo's checks) sees it.
#[derive(Debug, Clone)]
pub struct CallReport {
    /// The Call-ID.
    pub call_id: String,
    /// The other party.
    pub peer: String,
    /// The caller as shown before answering (incoming calls; `None` for ours).
    pub caller: Option<CallerId>,
    /// We placed the call.
    pub outgoing: bool,
    /// How keys were agreed.
    pub mode: KeyMode,
    /// The identity proven by MIKEY against the chain (`None` with SDES: "key not verified").
    pub verified_peer: Option<IdentityName>,
    /// Whether the key lookup was proven against a block header.
    pub lookup_verified: bool,
    /// The safety number between us and the chain-verified peer (None without one).
    pub safety_number: Option<SafetyNumber>,
    /// Whether the user compared that safety number with the peer in person, for this key.
    pub verified_in_person: bool,
    /// The peer's key changes recorded on chain since our previous lookup (shown to the user).
    pub key_changes: Vec<KeyChange>,
    /// Bytes of proof that lookup checked (0 when unproven).
    pub proof_bytes: usize,
    /// Where the set-up time went.
    pub timings: SetupTimings,
    /// The signalling connection dropped during the call: its media went on, and the hang-up
    /// was local (no BYE) unless the phone had reconnected by then.
    pub signalling_lost: bool,
    /// Packet counts.
    pub stats: MediaStats,
    /// Audio payload we sent, in order (G.711 octets; Opus packets back to back).
    pub sent_payload: Vec<u8>,
    /// Audio payload we received, in sequence order.
    pub received_payload: Vec<u8>,
    /// The received audio, decoded, at `recorded_rate`.
    pub recorded: Vec<i16>,
    /// The rate of `recorded`, Hz: 8,000, or the codec's (48,000 for Opus) with
    /// [`PhoneConfig::wideband`].
    pub recorded_rate: u32,
    /// What the phone played out of its jitter buffer, with its timing, when
    /// [`PhoneConfig::keep_playout`] asked: what a listener heard (FEC and concealment
    /// included), unlike `recorded`.
    pub playout: Playout,
    /// When the first frame of what we sent was due ([`MediaSession::source_started`]); `None`
    /// when the media never ran.
    pub source_started: Option<Instant>,
    /// The codec.
    pub codec: AudioCodec,
    /// The receive jitter buffer's counters (played out every 20 ms during the call).
    pub jitter: JitterStats,
    /// What ZRTP agreed (ZRTP calls).
    pub zrtp: Option<ZrtpStatus>,
    /// What went wrong with the microphone or speaker (not found, unplugged): the call went on
    /// with silence. Empty for WAV audio.
    pub audio_warnings: Vec<String>,
    /// Why we ended the call ourselves: the media could not be secured
    /// ([`EndReason::MediaFailed`]), or the caller never acknowledged our answer
    /// ([`EndReason::NoAck`]).
    pub failure: Option<String>,
    /// How the call ended ([`EndReason::describe`] says it in words). An incoming call that
    /// ended before its media ran (cancelled by the caller, not answered in time) has a report
    /// too, with no packets and no audio.
    pub ended: EndReason,
}

/// What the phone tells its user. New kinds of event may be added: match with a wildcard arm.
#[derive(Debug)]
#[non_exhaustive]
pub enum PhoneEvent {
    /// Registered at the server (again, after a reconnect).
    Registered {
        /// Granted lifetime.
        expires: u32,
    },
    /// The signalling connection dropped, or over UDP the server stopped answering keep-alives;
    /// the phone reconnects (over UDP: probes) by itself (calls in progress keep their media,
    /// new calls fail at once until it is back).
    SignallingLost {
        /// Why, as the user reads it.
        reason: String,
    },
    /// The signalling connection is back, or over UDP the server answers again (a wanted
    /// registration is renewed: a [`PhoneEvent::Registered`] follows).
    Reconnected {
        /// The attempt that succeeded (1: the first).
        attempt: u32,
    },
    /// A call arrives, its caller already checked against the chain. When `awaiting_answer`,
    /// the phone rings and waits for [`Phone::answer`]; otherwise it is answering by itself or
    /// refusing (a [`PhoneEvent::Refused`] follows).
    Incoming {
        /// The call.
        call_id: String,
        /// Who calls, and what the call proves about it.
        caller: CallerId,
        /// The phone waits for the user's decision.
        awaiting_answer: bool,
    },
    /// A call is up: both SRTP contexts are keyed (with ZRTP: its exchange went secure).
    CallUp {
        /// The call as the core keyed it: who, how, and what is proven of the peer.
        call: KeyedCall,
        /// What ZRTP agreed: the SAS, whether the chain binding held, the cache (ZRTP calls).
        zrtp: Option<ZrtpStatus>,
    },
    /// A call ended; the report has its numbers.
    CallEnded(Box<CallReport>),
    /// An incoming call was refused (bad keys, unknown caller…).
    Refused {
        /// The call.
        call_id: String,
        /// Why.
        reason: String,
    },
    /// Hold and resume (by us: [`Phone::hold`], [`Phone::resume`]; or by the peer), a
    /// re-INVITE refused because it would have downgraded the call's media security (488; the
    /// call keeps its keys), or our re-INVITE failing.
    Control(CallControl),
    /// The peer sent a DTMF digit (an RFC 4733 telephone-event), once per key press.
    Dtmf {
        /// The call.
        call_id: String,
        /// The digit: 0–9, *, #, A–D.
        digit: char,
    },
}

impl PhoneEvent {
    /// [`PhoneEvent::CallUp`] for the core's view of the call and ZRTP's outcome.
    pub(crate) fn call_up(call: KeyedCall, zrtp: Option<ZrtpStatus>) -> Self {
        PhoneEvent::CallUp { call, zrtp }
    }
}

/// What [`Command::Control`] does to a call that is up.
enum Action {
    Hold,
    Resume,
    Mute(bool),
    ConfirmSas,
    RejectSas,
}

enum Command {
    Register {
        expires: u32,
        reply: oneshot::Sender<Result<u32, PhoneError>>,
    },
    Call {
        target: PhoneNumber,
        reply: oneshot::Sender<Result<String, PhoneError>>,
    },
    Answer {
        call_id: String,
        accept: bool,
    },
    Hangup {
        call_id: String,
    },
    Dtmf {
        call_id: String,
        digits: String,
        reply: oneshot::Sender<Result<(), PhoneError>>,
    },
    Control {
        call_id: String,
        action: Action,
        reply: oneshot::Sender<Result<(), PhoneError>>,
    },
    Shutdown,
}

/// A handle to a running phone.
#[derive(Debug, Clone)]
pub struct Phone {
    cmd: mpsc::Sender<Command>,
    number: PhoneNumber,
}

/// The stream of [`PhoneEvent`]s of one phone.
pub type PhoneEvents = mpsc::UnboundedReceiver<PhoneEvent>;

impl Phone {
    /// Connects to the SIP server (running the handshake for TLS-PSK) and starts the phone.
    /// Returns the handle, the event stream, and the connect time.
    pub async fn connect<C: KeystoreChain + 'static>(
        cfg: PhoneConfig,
        lookup: KeyLookup<C>,
    ) -> Result<(Phone, PhoneEvents, Duration), PhoneError> {
        let started = Instant::now();
        let (cmd_tx, cmd_rx) = mpsc::channel(32);
        let (ev_tx, ev_rx) = mpsc::unbounded_channel();
        let number = cfg.number.clone();
        let (link, local, server) = open_any(&cfg, &lookup).await?;
        spawn_actor(cfg, lookup, (link, local, server), cmd_rx, ev_tx);
        Ok((
            Phone {
                cmd: cmd_tx,
                number,
            },
            ev_rx,
            started.elapsed(),
        ))
    }

    /// Our number.
    pub fn number(&self) -> &PhoneNumber {
        &self.number
    }

    async fn send(&self, c: Command) -> Result<(), PhoneError> {
        self.cmd
            .send(c)
            .await
            .map_err(|_| PhoneError::Signalling("the phone has stopped".into()))
    }

    /// Registers (REGISTER with digest auth); returns the granted lifetime.
    pub async fn register(&self, expires: u32) -> Result<u32, PhoneError> {
        let (tx, rx) = oneshot::channel();
        self.send(Command::Register { expires, reply: tx }).await?;
        rx.await
            .map_err(|_| PhoneError::Signalling("the phone has stopped".into()))?
    }

    /// Places a call; returns its Call-ID once the callee's key is verified and the INVITE left.
    /// Follow the call with the event stream ([`PhoneEvent::CallUp`], [`PhoneEvent::CallEnded`]).
    pub async fn call(&self, target: &PhoneNumber) -> Result<String, PhoneError> {
        let (tx, rx) = oneshot::channel();
        self.send(Command::Call {
            target: target.clone(),
            reply: tx,
        })
        .await?;
        rx.await
            .map_err(|_| PhoneError::Signalling("the phone has stopped".into()))?
    }

    /// Accepts or refuses an incoming call (when auto-answer is off).
    pub async fn answer(&self, call_id: &str, accept: bool) -> Result<(), PhoneError> {
        self.send(Command::Answer {
            call_id: call_id.to_owned(),
            accept,
        })
        .await
    }

    /// Ends a call.
    pub async fn hangup(&self, call_id: &str) -> Result<(), PhoneError> {
        self.send(Command::Hangup {
            call_id: call_id.to_owned(),
        })
        .await
    }

    /// Sends DTMF `digits` (0–9, *, #, A–D) in a call that is up, as RFC 4733 telephone-events
    /// (100 ms each, 50 ms apart; the audio pauses meanwhile). An error when the call is not up,
    /// the peer agreed no telephone-event format, or a character is not a digit.
    pub async fn send_dtmf(&self, call_id: &str, digits: &str) -> Result<(), PhoneError> {
        let (tx, rx) = oneshot::channel();
        self.send(Command::Dtmf {
            call_id: call_id.to_owned(),
            digits: digits.to_owned(),
            reply: tx,
        })
        .await?;
        rx.await
            .map_err(|_| PhoneError::Signalling("the phone has stopped".into()))?
    }

    /// Puts a call that is up on hold (a re-INVITE with `a=sendonly`, the same keys): our audio
    /// stops at once, [`CallControl::Held`] follows the peer's answer.
    pub async fn hold(&self, call_id: &str) -> Result<(), PhoneError> {
        self.control(call_id, Action::Hold).await
    }

    /// Takes a call we hold off hold (a re-INVITE with `a=sendrecv`): [`CallControl::Resumed`]
    /// follows the peer's answer.
    pub async fn resume(&self, call_id: &str) -> Result<(), PhoneError> {
        self.control(call_id, Action::Resume).await
    }

    /// Mutes (or unmutes) our audio in a call that is up: silence goes out instead (nothing
    /// under Opus DTX). Nothing is signalled.
    pub async fn mute(&self, call_id: &str, muted: bool) -> Result<(), PhoneError> {
        self.control(call_id, Action::Mute(muted)).await
    }

    /// The users compared the ZRTP SAS and it matched: the peer's ZID is marked verified in the
    /// cache (RFC 6189 §4.6.1.1); the next call with it shows `sas_verified`.
    pub async fn confirm_sas(&self, call_id: &str) -> Result<(), PhoneError> {
        self.control(call_id, Action::ConfirmSas).await
    }

    /// The users compared the ZRTP SAS and it differed: the phone hangs up at once (BYE with a
    /// Reason header) and the report says why.
    pub async fn reject_sas(&self, call_id: &str) -> Result<(), PhoneError> {
        self.control(call_id, Action::RejectSas).await
    }

    async fn control(&self, call_id: &str, action: Action) -> Result<(), PhoneError> {
        let (tx, rx) = oneshot::channel();
        self.send(Command::Control {
            call_id: call_id.to_owned(),
            action,
            reply: tx,
        })
        .await?;
        rx.await
            .map_err(|_| PhoneError::Signalling("the phone has stopped".into()))?
    }

    /// Stops the phone (unregistering first is the caller's choice).
    pub async fn shutdown(&self) {
        let _ = self.cmd.send(Command::Shutdown).await;
    }

    /// Removes our binding (REGISTER with Expires: 0), then stops the phone, so calls to us fail
    /// at once as "offline" instead of timing out on a closed connection. Best effort: the
    /// unregistration gets 3 s, since a stopping phone must not hang on an unreachable server.
    pub async fn unregister_and_shutdown(&self) {
        let _ = tokio::time::timeout(Duration::from_secs(3), self.register(0)).await;
        self.shutdown().await;
    }
}

/// A call's media in the shell: the socket bound on the core's [`Need::BindMedia`], the task
/// started on [`Need::StartMedia`], and the received stream's key for `--keylog`.
struct CallMedia {
    socket: Arc<UdpSocket>,
    task: Option<MediaTask>,
    /// The key of the stream we receive, logged to `--keylog` when the call ends (by then its
    /// SSRC is known).
    inbound_key: Option<StreamKey>,
    /// A ZRTP call's way to its media task, which tells the call up once secure.
    up: Option<oneshot::Sender<KeyedCall>>,
}

/// A media task that could not secure its call: `(call, why)`.
pub(crate) type MediaFailure = (String, String);

/// What a media task leaves: its session (none if ZRTP never went secure), ZRTP's outcome and
/// the devices' warnings.
type MediaDone = (Option<MediaSession>, Option<ZrtpStatus>, Vec<String>);

/// A stopped call's media: its session, the received stream's key, ZRTP's outcome and the
/// devices' warnings.
type Finished = (
    MediaSession,
    Option<StreamKey>,
    Option<ZrtpStatus>,
    Vec<String>,
);

struct MediaTask {
    stop: oneshot::Sender<()>,
    /// Digits to send, checked by the core.
    dtmf: mpsc::UnboundedSender<String>,
    /// What of the audio goes out (mute, hold), as the core says.
    gate: watch::Sender<AudioGate>,
    /// The user confirmed the ZRTP SAS.
    sas: mpsc::UnboundedSender<()>,
    done: tokio::task::JoinHandle<MediaDone>,
}

/// A signalling connection: the TLS-PSK stream, or plain TCP.
trait Link: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Link for T {}

/// A signalling connection, whichever kind.
type BoxedLink = Box<dyn Link>;

/// The Via/Contact transport token of a signalling path.
fn transport_token(signalling: &Signalling) -> &'static str {
    match signalling {
        Signalling::TlsPsk { .. } => "TLS",
        Signalling::Tcp { .. } => "TCP",
        Signalling::Udp { .. } => "UDP",
    }
}

/// A signalling path, opened: a stream, or a UDP socket connected to the proxy.
enum Opened {
    Stream(BoxedLink),
    Datagram(UdpSocket),
}

/// Opens the signalling connection `cfg` names: for TLS-PSK the handshake with the server's
/// on-chain identity (looked up again each time: it may have rotated), then TLS with the PSK.
/// Returns the connection and its local address (for Via and Contact).
async fn open_link<C: KeystoreChain + 'static>(
    cfg: &PhoneConfig,
    lookup: &KeyLookup<C>,
) -> Result<(Opened, SocketAddr), PhoneError> {
    match cfg.signalling.clone() {
        Signalling::TlsPsk { addr, server } => {
            let found = lookup
                .approved(&server)
                .await
                .map_err(|e| PhoneError::Signalling(format!("SIP server {server}: {e}")))?;
            let mut dir = StaticDirectory::new();
            KeyLookup::<C>::record(&mut dir, &server, &found);
            let me = IdentityName::Phone(cfg.number.clone());
            let local = LocalIdentity::with_crypto(
                me,
                cfg.identity.clone(),
                Arc::new(OpensslCrypto::new()),
            );
            let tls = TlsPskClient::new(&TlsPskConfig {
                keylog_file: cfg.tls_keylog.clone(),
                ..TlsPskConfig::default()
            })
            .map_err(|e| PhoneError::Signalling(e.to_string()))?;
            // A server refusing our proof may hold our key from before a rotation in its
            // short cache; it drops it once it sees the failed handshake end, so a later try
            // reaches the new key. Two more tries, the server given a moment to see the end.
            const RETRIES: u32 = 2;
            let mut retries = 0;
            let (stream, established, local_addr) = loop {
                let initiator = Initiator::new(
                    HandshakeConfig::default(),
                    local.clone(),
                    server.clone(),
                    Protocol::Sts,
                    &dir,
                    Instant::now(),
                )
                .map_err(|e| {
                    PhoneError::Signalling(format!("handshake: {}", chaincall_io::ErrorChain(&e)))
                })?;
                let tcp = TcpStream::connect(addr).await?;
                let _ = tcp.set_nodelay(true);
                let local_addr = tcp.local_addr()?;
                match chaincall_tls_psk::connect_with_handshake(
                    tcp,
                    initiator,
                    Duration::from_secs(10),
                    &tls,
                )
                .await
                {
                    Ok((stream, established)) => break (stream, established, local_addr),
                    // The server's message 2 binds the key it holds for us; either side
                    // finding the proofs do not match is what a stale cached key looks like.
                    Err(TlsPskError::Handshake(
                        HandshakeError::BadSignature
                        | HandshakeError::PeerAborted(AlertCode::AuthenticationFailed),
                    )) if retries < RETRIES => {
                        retries += 1;
                        info!(server = %server, "the handshake's proofs did not match; trying again (the server may have cached our key from before a rotation)");
                        tokio::time::sleep(Duration::from_millis(200 * u64::from(retries))).await;
                    }
                    Err(e) => {
                        return Err(PhoneError::Signalling(format!(
                            "TLS-PSK to {server}: {}",
                            chaincall_io::ErrorChain(&e)
                        )));
                    }
                }
            };
            info!(number = %cfg.number, server = %server, identity = %established.identity, "signalling secured with TLS-PSK");
            Ok((Opened::Stream(Box::new(stream)), local_addr))
        }
        Signalling::Tcp { addr } => {
            let tcp = TcpStream::connect(addr).await?;
            let _ = tcp.set_nodelay(true);
            let local_addr = tcp.local_addr()?;
            warn!(number = %cfg.number, %addr, "signalling over plain TCP: media stays end-to-end encrypted, SIP does not");
            Ok((Opened::Stream(Box::new(tcp)), local_addr))
        }
        Signalling::Udp { addr } => {
            let any: SocketAddr = if addr.is_ipv4() {
                (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
            } else {
                (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
            };
            let udp = UdpSocket::bind(any).await?;
            // Connected: only the proxy's datagrams arrive, and the local address is the one
            // the route to it uses (for Via and Contact).
            udp.connect(addr).await?;
            let local_addr = udp.local_addr()?;
            warn!(number = %cfg.number, %addr, "signalling over UDP: media stays end-to-end encrypted, SIP does not");
            Ok((Opened::Datagram(udp), local_addr))
        }
    }
}

/// The server's addresses in the order they are tried: `signalling`'s, then `failover`'s.
fn servers(cfg: &PhoneConfig) -> Vec<SocketAddr> {
    let mut all = vec![cfg.signalling.addr()];
    for a in &cfg.failover {
        if !all.contains(a) {
            all.push(*a);
        }
    }
    all
}

/// `cfg` aimed at the server's `i`th address ([`servers`]).
fn at_server(cfg: &PhoneConfig, servers: &[SocketAddr], i: usize) -> PhoneConfig {
    let mut c = cfg.clone();
    if let Some(addr) = servers.get(i) {
        c.signalling = cfg.signalling.with_addr(*addr);
    }
    c
}

/// Opens the signalling connection at the first of the server's addresses that answers, each
/// failure logged; the connection, its local address and which address it is ([`servers`]).
async fn open_any<C: KeystoreChain + 'static>(
    cfg: &PhoneConfig,
    lookup: &KeyLookup<C>,
) -> Result<(Opened, SocketAddr, usize), PhoneError> {
    let all = servers(cfg);
    let mut i = 0;
    loop {
        match open_link(&at_server(cfg, &all, i), lookup).await {
            Ok((link, local)) => return Ok((link, local, i)),
            Err(e) if i + 1 < all.len() => {
                warn!(number = %cfg.number, server = %all[i], error = %chaincall_io::ErrorChain(&e), "SIP server address not reachable; trying the next");
                i += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Longest one reconnect attempt may take (connect, handshake, TLS) before it counts as failed:
/// a server that accepts and then says nothing must not stall the recovery.
const ATTEMPT_WITHIN: Duration = Duration::from_secs(20);

/// What a reconnect brings back: the connection, its local address, the attempt that
/// succeeded, and which of the server's addresses it reached ([`servers`]).
type Reconnected = (Opened, SocketAddr, u32, usize);

/// Reconnects until it succeeds, waiting as [`Backoff`] says between attempts, each attempt at
/// the server's next address starting with `from` (round the list); logs each attempt with its
/// number and address and, when it fails, the error chain. Runs beside the actor's loop (which
/// keeps serving calls and commands) and is aborted when the phone stops.
async fn reconnect<C: KeystoreChain + 'static>(
    cfg: PhoneConfig,
    lookup: KeyLookup<C>,
    from: usize,
) -> Reconnected {
    let all = servers(&cfg);
    let mut backoff = Backoff::new();
    let mut tried = 0;
    loop {
        let wait = backoff.next_wait(&cfg.randomness);
        let attempt = backoff.attempts();
        let i = (from + tried) % all.len();
        tried += 1;
        info!(number = %cfg.number, attempt, server = %all[i], wait_ms = wait.as_millis() as u64, "reconnecting to the SIP server");
        tokio::time::sleep(wait).await;
        let target = at_server(&cfg, &all, i);
        match tokio::time::timeout(ATTEMPT_WITHIN, open_link(&target, &lookup)).await {
            Ok(Ok((link, local))) => {
                info!(number = %cfg.number, attempt, server = %all[i], %local, "signalling connection back");
                return (link, local, attempt, i);
            }
            Ok(Err(e)) => {
                warn!(number = %cfg.number, attempt, error = %chaincall_io::ErrorChain(&e), "reconnect attempt failed")
            }
            Err(_) => {
                warn!(number = %cfg.number, attempt, "reconnect attempt failed: no connection within {ATTEMPT_WITHIN:?}")
            }
        }
    }
}

/// What a connection's reader tells the actor, tagged with the connection's generation (a late
/// word from a connection already replaced is ignored).
enum FromReader {
    /// One complete SIP message.
    Message(Vec<u8>),
    /// Bytes that held no message (a keep-alive pong): the connection is alive.
    Heard,
    /// A STUN Binding success response (over UDP): the answer to a keep-alive.
    Stun(StunAnswer),
    /// The connection ended, and why.
    Closed(String),
}

/// Where the actor writes signalling.
enum Writer {
    Stream(tokio::io::WriteHalf<BoxedLink>),
    /// One message a datagram.
    Datagram(Arc<UdpSocket>),
}

impl Writer {
    async fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            Writer::Stream(wr) => wr.write_all(bytes).await,
            // Fire and forget: a datagram may be lost anyway, and the transactions retransmit
            // (an ICMP unreachable while the proxy restarts is no lost connection).
            Writer::Datagram(udp) => {
                if let Err(e) = udp.send(bytes).await {
                    debug!(error = %e, "signalling datagram send failed");
                }
                Ok(())
            }
        }
    }

    async fn close(&mut self) {
        if let Writer::Stream(wr) = self {
            let _ = wr.shutdown().await;
        }
    }
}

/// A connection's keep-alive: CRLF ping and pong on a stream, STUN over UDP.
enum Keeper {
    Stream(KeepAlive),
    Datagram(StunKeepAlive),
}

impl Keeper {
    fn deadline(&self) -> Instant {
        match self {
            Keeper::Stream(k) => k.deadline(),
            Keeper::Datagram(k) => k.deadline(),
        }
    }
}

/// What the keep-alive asks for this round of the actor's loop.
enum Due {
    Nothing,
    /// A CRLF ping on the stream.
    Ping,
    /// No pong: the stream is dead.
    Dead,
    Datagram(StunAction),
}

/// The live signalling connection: its writer and the task reading it.
struct Conn {
    generation: u64,
    wr: Writer,
    reader: tokio::task::JoinHandle<()>,
    keepalive: Option<Keeper>,
}

impl Conn {
    /// Splits `link`, reading it in a task that frames messages to `frames`.
    fn start(
        opened: Opened,
        generation: u64,
        frames: mpsc::Sender<(u64, FromReader)>,
        keepalive: Option<Duration>,
    ) -> Conn {
        let link = match opened {
            Opened::Stream(link) => link,
            Opened::Datagram(udp) => {
                let udp = Arc::new(udp);
                return Conn {
                    generation,
                    wr: Writer::Datagram(udp.clone()),
                    reader: tokio::spawn(read_datagrams(udp, generation, frames)),
                    keepalive: keepalive
                        .map(|every| Keeper::Datagram(StunKeepAlive::new(every, Instant::now()))),
                };
            }
        };
        let (mut rd, wr) = tokio::io::split(link);
        let reader = tokio::spawn(async move {
            let mut framer = StreamFramer::new(ParseLimits::default());
            let mut buf = vec![0u8; 16 * 1024];
            let why = loop {
                let n = match rd.read(&mut buf).await {
                    Ok(0) => break "closed by the server".to_owned(),
                    Err(e) => break format!("read failed: {}", chaincall_io::ErrorChain(&e)),
                    Ok(n) => n,
                };
                framer.push(&buf[..n]);
                let mut messages = false;
                loop {
                    match framer.poll_frame() {
                        Ok(Some(Frame::Message(m))) => {
                            messages = true;
                            if frames
                                .send((generation, FromReader::Message(m)))
                                .await
                                .is_err()
                            {
                                return;
                            }
                        }
                        Ok(Some(Frame::Ping)) => {}
                        Ok(None) => break,
                        Err(e) => {
                            let why =
                                format!("unframeable stream: {}", chaincall_io::ErrorChain(&e));
                            let _ = frames.send((generation, FromReader::Closed(why))).await;
                            return;
                        }
                    }
                }
                if !messages && frames.send((generation, FromReader::Heard)).await.is_err() {
                    return;
                }
            };
            let _ = frames.send((generation, FromReader::Closed(why))).await;
        });
        Conn {
            generation,
            wr: Writer::Stream(wr),
            reader,
            keepalive: keepalive.map(|every| Keeper::Stream(KeepAlive::new(every, Instant::now()))),
        }
    }
}

/// Reads the proxy's datagrams, one SIP message each (the core refuses what does not parse), or
/// a STUN answer to the keep-alive. UDP has no connection to lose: a receive error (an ICMP
/// unreachable while the proxy is down) is logged and reading goes on; a dead proxy shows as
/// unanswered keep-alives ([`StunKeepAlive`]).
async fn read_datagrams(
    udp: Arc<UdpSocket>,
    generation: u64,
    frames: mpsc::Sender<(u64, FromReader)>,
) {
    let mut buf = vec![0u8; 65_536];
    loop {
        match udp.recv(&mut buf).await {
            Ok(n) if let Some(answer) = StunAnswer::parse(&buf[..n]) => {
                if frames
                    .send((generation, FromReader::Stun(answer)))
                    .await
                    .is_err()
                {
                    return;
                }
            }
            // Keep-alive CRLFs and empty datagrams carry no message (RFC 3261 §7.5).
            Ok(n) if buf[..n].iter().all(|b| matches!(b, b'\r' | b'\n')) => {}
            Ok(n) => {
                let message = FromReader::Message(buf[..n].to_vec());
                if frames.send((generation, message)).await.is_err() {
                    return;
                }
            }
            Err(e) => debug!(error = %e, "signalling datagram receive failed"),
        }
    }
}

/// Waits for the task in `task`, or for ever when there is none.
async fn join_some<T>(
    task: &mut Option<tokio::task::JoinHandle<T>>,
) -> Result<T, tokio::task::JoinError> {
    match task {
        Some(t) => t.await,
        None => std::future::pending().await,
    }
}

/// The tokio executor of a [`PhoneCore`]: the connection (and its recovery), the commands, the
/// key look-ups (run beside the loop, several at once) and the media tasks.
struct Actor<C> {
    cfg: PhoneConfig,
    lookup: KeyLookup<C>,
    core: PhoneCore,
    events: mpsc::UnboundedSender<PhoneEvent>,
    register_reply: Option<oneshot::Sender<Result<u32, PhoneError>>>,
    /// `Phone::call`s waiting for their INVITE to leave.
    call_replies: HashMap<String, oneshot::Sender<Result<String, PhoneError>>>,
    media: HashMap<String, CallMedia>,
    /// Media sessions stopped on [`Need::StopMedia`], kept for the [`CoreEvent::Ended`] that
    /// follows, with the received stream's key.
    finished: HashMap<String, Finished>,
    lookups: JoinSet<(IdentityName, Result<LookedUp, PhoneError>)>,
    /// Media tasks that could not secure their call (ZRTP failed): `(call, why)`.
    media_failed: (
        mpsc::UnboundedSender<MediaFailure>,
        mpsc::UnboundedReceiver<MediaFailure>,
    ),
    /// Which name each running look-up is for (a look-up task that panicked is answered too).
    lookup_names: HashMap<tokio::task::Id, IdentityName>,
    keylog_warned: bool,
    /// Which of the server's addresses the connection is to ([`servers`]).
    server: usize,
}

fn spawn_actor<C>(
    cfg: PhoneConfig,
    lookup: KeyLookup<C>,
    (link, local, server): (Opened, SocketAddr, usize),
    cmd_rx: mpsc::Receiver<Command>,
    events: mpsc::UnboundedSender<PhoneEvent>,
) where
    C: KeystoreChain + 'static,
{
    let mut core = PhoneCore::new(
        &cfg,
        local,
        transport_token(&cfg.signalling),
        lookup.passport_keystore(),
        Instant::now(),
        SystemTime::now(),
    );
    core.set_stopwatch(Instant::now);
    let actor = Actor {
        cfg,
        lookup,
        core,
        events,
        register_reply: None,
        call_replies: HashMap::new(),
        media: HashMap::new(),
        finished: HashMap::new(),
        lookups: JoinSet::new(),
        media_failed: mpsc::unbounded_channel(),
        lookup_names: HashMap::new(),
        keylog_warned: false,
        server,
    };
    tokio::spawn(actor.run(link, cmd_rx));
}

impl<C: KeystoreChain + 'static> Actor<C> {
    /// Serves the phone until it is shut down (or every handle dropped). A lost connection is
    /// told to the core and recovered beside the loop ([`reconnect`]); calls, commands, look-ups
    /// and media go on meanwhile.
    async fn run(mut self, link: Opened, mut cmd_rx: mpsc::Receiver<Command>) {
        let (frame_tx, mut frame_rx) = mpsc::channel::<(u64, FromReader)>(64);
        let number = self.cfg.number.clone();
        let mut generation = 0;
        let keepalive = self.cfg.keepalive;
        let mut conn = Some(Conn::start(link, generation, frame_tx.clone(), keepalive));
        let mut reconnecting = None;
        loop {
            // The keep-alive first: a dead connection is given up before anything is written.
            let now = Instant::now();
            let due = match conn.as_mut().and_then(|c| c.keepalive.as_mut()) {
                None => Due::Nothing,
                Some(Keeper::Stream(k)) => match k.poll(now) {
                    KeepAliveAction::Wait => Due::Nothing,
                    KeepAliveAction::Ping => Due::Ping,
                    KeepAliveAction::Dead => Due::Dead,
                },
                Some(Keeper::Datagram(k)) => Due::Datagram(k.poll(now, &self.cfg.randomness)),
            };
            match due {
                Due::Nothing => {}
                Due::Ping => {
                    if let Some(c) = &mut conn
                        && let Err(e) = c.wr.write(KeepAlive::PING).await
                    {
                        self.lose(&mut conn, &mut reconnecting, &format!("write failed: {e}"));
                    }
                }
                Due::Dead => {
                    let why = format!(
                        "no keep-alive pong within {} s",
                        KeepAlive::PONG_WITHIN.as_secs()
                    );
                    self.lose(&mut conn, &mut reconnecting, &why);
                }
                Due::Datagram(action) => self.udp_keepalive(&mut conn, action).await,
            }
            // Drain the core: write its messages, act on its events (which may feed it more:
            // media addresses), until `Timeout`. After a failed write the rest of this round is
            // dropped and the connection given up.
            let mut write_failed = None;
            let deadline = loop {
                match self.core.poll_output() {
                    Output::Transmit(out) => match &mut conn {
                        Some(c) if write_failed.is_none() => {
                            if let Err(e) = c.wr.write(&out.contents).await {
                                write_failed = Some(format!("write failed: {e}"));
                            }
                        }
                        _ => {}
                    },
                    Output::Event(ev) => self.core_event(ev).await,
                    Output::Timeout(at) => break at,
                }
            };
            if let Some(why) = write_failed {
                self.lose(&mut conn, &mut reconnecting, &why);
                continue;
            }
            let deadline = deadline.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
            let deadline = match conn.as_ref().and_then(|c| c.keepalive.as_ref()) {
                Some(k) => deadline.min(k.deadline()),
                None => deadline,
            };
            tokio::select! {
                Some((from, said)) = frame_rx.recv() => {
                    if conn.as_ref().map(|c| c.generation) != Some(from) {
                        continue;
                    }
                    if let Some(Keeper::Stream(k)) = conn.as_mut().and_then(|c| c.keepalive.as_mut()) {
                        k.heard();
                    }
                    match said {
                        FromReader::Heard => {}
                        FromReader::Stun(answer) => self.stun_answered(&mut conn, &answer),
                        FromReader::Message(bytes) => self.core.handle_signalling(&bytes, Instant::now()),
                        FromReader::Closed(why) => self.lose(&mut conn, &mut reconnecting, &why),
                    }
                },
                back = join_some(&mut reconnecting) => {
                    reconnecting = None;
                    match back {
                        Ok((link, local, attempt, server)) => {
                            self.server = server;
                            self.emit(PhoneEvent::Reconnected { attempt });
                            generation += 1;
                            conn = Some(Conn::start(link, generation, frame_tx.clone(), keepalive));
                            self.core.set_local_addr(local);
                            self.core.handle_transport(TransportState::Connected, Instant::now());
                        }
                        // A panic in the reconnect is a bug; try again rather than stay offline.
                        Err(e) => {
                            warn!(%number, error = %e, "the reconnect task failed; starting over");
                            reconnecting = Some(tokio::spawn(reconnect(self.cfg.clone(), self.lookup.clone(), self.server)));
                        }
                    }
                }
                cmd = cmd_rx.recv() => match cmd {
                    None | Some(Command::Shutdown) => break,
                    Some(c) => self.command(c),
                },
                Some((call_id, why)) = self.media_failed.1.recv() => {
                    self.core.media_failed(&call_id, &why, Instant::now());
                }
                Some(done) = self.lookups.join_next_with_id(), if !self.lookups.is_empty() => {
                    let (name, result) = match done {
                        Ok((id, answer)) => {
                            self.lookup_names.remove(&id);
                            answer
                        }
                        // A panic in the look-up is a bug; the calls waiting for it still get an
                        // answer rather than waiting for ever.
                        Err(e) => match self.lookup_names.remove(&e.id()) {
                            Some(name) => {
                                let reason = format!("the look-up task failed: {e}");
                                (name.clone(), Err(PhoneError::Lookup { name, reason }))
                            }
                            None => continue,
                        },
                    };
                    self.core.provide_key(&name, result, Instant::now());
                }
                _ = tokio::time::sleep_until(tokio::time::Instant::from_std(deadline)) => {
                    self.core.handle_timeout(Instant::now());
                }
            }
        }
        if let Some(task) = reconnecting {
            task.abort();
        }
        for (_, media) in self.media.drain() {
            if let Some(m) = media.task {
                let _ = m.stop.send(());
            }
        }
        if let Some(r) = self.register_reply.take() {
            let _ = r.send(Err(PhoneError::Signalling("connection closed".into())));
        }
        for (_, r) in self.call_replies.drain() {
            let _ = r.send(Err(PhoneError::Signalling("connection closed".into())));
        }
        if let Some(mut c) = conn {
            c.reader.abort();
            c.wr.close().await;
        }
    }

    /// Does what the UDP keep-alive asks: sends its request (or CRLF), or, when the server stopped
    /// answering, tells the core the signalling is lost (the keep-alive goes on probing with
    /// back-off; [`Self::stun_answered`] brings it back). Logs each step.
    async fn udp_keepalive(&mut self, conn: &mut Option<Conn>, action: StunAction) {
        let number = &self.cfg.number;
        let bytes = match action {
            StunAction::Wait => return,
            StunAction::Send(bytes) => bytes,
            StunAction::Probe {
                request,
                attempt,
                waited,
            } => {
                info!(%number, attempt, waited_ms = waited.as_millis() as u64, "probing the SIP server over UDP (STUN Binding request)");
                request
            }
            StunAction::Dead => {
                let reason = format!(
                    "no answer to the UDP keep-alive (STUN) within {} s",
                    KeepAlive::PONG_WITHIN.as_secs()
                );
                warn!(%number, %reason, "the SIP server does not answer; probing it with back-off and registering again once it does (calls in progress keep their media)");
                self.emit(PhoneEvent::SignallingLost { reason });
                self.core
                    .handle_transport(TransportState::Lost, Instant::now());
                return;
            }
            StunAction::NoStun => {
                info!(%number, "the SIP server answers no STUN Binding request: UDP keep-alives go on as CRLFs, and its loss shows only as transaction timeouts");
                return;
            }
        };
        if let Some(c) = conn {
            // A datagram write reports no error (the transactions and probes retransmit).
            let _ = c.wr.write(&bytes).await;
        }
    }

    /// The SIP server answered a UDP keep-alive: when it had stopped answering, the signalling
    /// is back and a wanted registration goes out again at once (a restarted server has lost
    /// it); when our public address changed, the registration is renewed for the new one.
    fn stun_answered(&mut self, conn: &mut Option<Conn>, answer: &StunAnswer) {
        let Some(Keeper::Datagram(k)) = conn.as_mut().and_then(|c| c.keepalive.as_mut()) else {
            return;
        };
        let now = Instant::now();
        match k.answered(answer, now) {
            StunHeard::Stale | StunHeard::Alive => {}
            StunHeard::Back { attempt } => {
                info!(number = %self.cfg.number, attempt, "the SIP server answers again over UDP");
                self.emit(PhoneEvent::Reconnected { attempt });
                self.core.handle_transport(TransportState::Connected, now);
            }
            StunHeard::MappingChanged { from, to } => {
                info!(number = %self.cfg.number, %from, %to, "our public address changed (the NAT rebound the flow); registering again");
                self.core.register_again(now);
            }
        }
    }

    /// The connection is gone (`why`): tells the core and starts reconnecting beside the loop.
    fn lose(
        &mut self,
        conn: &mut Option<Conn>,
        reconnecting: &mut Option<tokio::task::JoinHandle<Reconnected>>,
        why: &str,
    ) {
        if let Some(c) = conn.take() {
            c.reader.abort();
        }
        warn!(number = %self.cfg.number, reason = why, "signalling connection lost; reconnecting (calls in progress keep their media)");
        self.emit(PhoneEvent::SignallingLost {
            reason: why.to_owned(),
        });
        self.core
            .handle_transport(TransportState::Lost, Instant::now());
        if reconnecting.is_none() {
            // The address that failed goes last: another node is tried first.
            *reconnecting = Some(tokio::spawn(reconnect(
                self.cfg.clone(),
                self.lookup.clone(),
                self.server + 1,
            )));
        }
    }

    fn emit(&self, ev: PhoneEvent) {
        let _ = self.events.send(ev);
    }

    fn command(&mut self, c: Command) {
        let now = Instant::now();
        match c {
            Command::Register { expires, reply } => {
                self.register_reply = Some(reply);
                self.core.register(expires, now);
            }
            Command::Call { target, reply } => {
                let call_id = self.core.call(&target, now);
                self.call_replies.insert(call_id, reply);
            }
            Command::Answer { call_id, accept } => self.core.answer(&call_id, accept, now),
            Command::Hangup { call_id } => self.core.hangup(&call_id, now),
            Command::Dtmf {
                call_id,
                digits,
                reply,
            } => {
                let _ = reply.send(self.core.send_dtmf(&call_id, &digits, now));
            }
            Command::Control {
                call_id,
                action,
                reply,
            } => {
                let result = match action {
                    Action::Hold => self.core.hold(&call_id, now),
                    Action::Resume => self.core.resume(&call_id, now),
                    Action::Mute(muted) => self.core.mute(&call_id, muted, now),
                    Action::ConfirmSas => self.core.confirm_sas(&call_id, now),
                    Action::RejectSas => self.core.reject_sas(&call_id, now),
                };
                let _ = reply.send(result);
            }
            Command::Shutdown => {}
        }
    }

    async fn core_event(&mut self, ev: CoreEvent) {
        match ev {
            CoreEvent::Need(need) => self.need(need).await,
            CoreEvent::Registered { expires } => {
                if let Some(r) = self.register_reply.take() {
                    let _ = r.send(Ok(expires));
                }
                self.emit(PhoneEvent::Registered { expires });
            }
            CoreEvent::Unregistered => {
                if let Some(r) = self.register_reply.take() {
                    let _ = r.send(Ok(0));
                }
            }
            CoreEvent::RegistrationFailed { error } => {
                if let Some(r) = self.register_reply.take() {
                    let _ = r.send(Err(error));
                }
            }
            CoreEvent::Dialing { call_id } => {
                if let Some(r) = self.call_replies.remove(&call_id) {
                    let _ = r.send(Ok(call_id));
                }
            }
            CoreEvent::CallFailed { call_id, error } => match self.call_replies.remove(&call_id) {
                Some(r) => {
                    let _ = r.send(Err(error));
                }
                None => self.emit(PhoneEvent::Refused {
                    call_id,
                    reason: error.to_string(),
                }),
            },
            CoreEvent::Incoming {
                call_id,
                caller,
                awaiting_answer,
            } => self.emit(PhoneEvent::Incoming {
                call_id,
                caller,
                awaiting_answer,
            }),
            CoreEvent::Refused { call_id, reason } => {
                self.emit(PhoneEvent::Refused { call_id, reason })
            }
            CoreEvent::Ringing { call_id, code } => debug!(call = %call_id, code, "ringing"),
            CoreEvent::Answered { call_id } => debug!(call = %call_id, "answered"),
            CoreEvent::Keyed(up) => {
                // A ZRTP call is up once its exchange is secure: its media task tells it.
                let tx = self.media.get_mut(&up.call_id).and_then(|m| m.up.take());
                let up = match tx {
                    Some(tx) => match tx.send(up) {
                        Ok(()) => return,
                        Err(up) => up,
                    },
                    None => up,
                };
                self.emit(PhoneEvent::call_up(up, None))
            }
            CoreEvent::Ended {
                call_id,
                summary,
                reason,
            } => {
                let Some((session, inbound, zrtp, warnings)) = self.finished.remove(&call_id)
                else {
                    // An incoming call that never got its media (cancelled, not answered in
                    // time), or a call whose media could not be secured (ZRTP failed), still
                    // ends with a report, so whoever shows it stops; one of ours that never got
                    // going was told by `CallFailed` or the hang-up.
                    if !summary.outgoing || summary.keyed {
                        let report =
                            call_report(call_id, *summary, reason, None, self.cfg.wideband);
                        self.emit(PhoneEvent::CallEnded(Box::new(report)));
                    }
                    return;
                };
                let mut report =
                    call_report(call_id, *summary, reason, Some(&session), self.cfg.wideband);
                report.audio_warnings = warnings;
                // With ZRTP, SRTP is keyed when the exchange in the media path is secure.
                if let Some(z) = &zrtp {
                    report.timings.call_setup += z.exchange;
                }
                report.zrtp = zrtp;
                if let Some(mut key) = inbound {
                    if let Some(ssrc) = report.stats.peer_ssrc {
                        key.ssrc = ssrc;
                    }
                    self.write_keylog(std::slice::from_ref(&key));
                }
                self.emit(PhoneEvent::CallEnded(Box::new(report)));
            }
            CoreEvent::Control(c) => self.emit(PhoneEvent::Control(c)),
            CoreEvent::SignallingError { reason } => {
                debug!(error = %reason, "unparseable SIP message ignored")
            }
        }
    }

    async fn need(&mut self, need: Need) {
        match need {
            Need::LookupKey { name } => {
                let lookup = self.lookup.clone();
                let task_name = name.clone();
                let handle = self.lookups.spawn(async move {
                    let result = lookup.approved(&task_name).await;
                    (task_name, result)
                });
                self.lookup_names.insert(handle.id(), name);
            }
            Need::BindMedia { call_id } => {
                let bound = UdpSocket::bind(SocketAddr::new(self.cfg.media_ip, 0))
                    .await
                    .and_then(|s| Ok((s.local_addr()?, Arc::new(s))));
                let addr = match bound {
                    Ok((addr, socket)) => {
                        self.media.insert(
                            call_id.clone(),
                            CallMedia {
                                socket,
                                task: None,
                                inbound_key: None,
                                up: None,
                            },
                        );
                        Ok(addr)
                    }
                    Err(e) => Err(PhoneError::Io(e)),
                };
                self.core.provide_media(&call_id, addr, Instant::now());
            }
            Need::StartMedia { call_id, media } => self.start_media(&call_id, *media),
            Need::SendDtmf { call_id, digits } => {
                if let Some(task) = self.media.get(&call_id).and_then(|m| m.task.as_ref()) {
                    let _ = task.dtmf.send(digits);
                }
            }
            Need::GateAudio { call_id, gate } => {
                if let Some(task) = self.media.get(&call_id).and_then(|m| m.task.as_ref()) {
                    let _ = task.gate.send(gate);
                }
            }
            Need::ConfirmSas { call_id } => {
                if let Some(task) = self.media.get(&call_id).and_then(|m| m.task.as_ref()) {
                    let _ = task.sas.send(());
                }
            }
            Need::StopMedia { call_id } => {
                let Some(media) = self.media.remove(&call_id) else {
                    return;
                };
                let Some(task) = media.task else {
                    return;
                };
                let _ = task.stop.send(());
                if let Ok((Some(session), zrtp, warnings)) = task.done.await {
                    self.finished
                        .insert(call_id, (session, media.inbound_key, zrtp, warnings));
                }
            }
        }
    }

    /// Starts the media and logs the key we send with; the received stream's key is logged when
    /// the call ends, with the SSRC it turned out to have.
    fn start_media(&mut self, call_id: &str, mut neg: NegotiatedMedia) {
        let inbound = (neg.keys.len() > 1).then(|| neg.keys.remove(1));
        if let Some(outbound) = neg.keys.first().cloned() {
            self.write_keylog(std::slice::from_ref(&outbound));
        }
        let Some(media) = self.media.get_mut(call_id) else {
            return;
        };
        media.inbound_key = inbound;
        // `MediaConfig` names a G.711 codec; with Opus, `MediaOptions::audio_codec` overrides it.
        let g711 = match neg.codec {
            AudioCodec::G711(c) => c,
            AudioCodec::Opus { .. } => Codec::Pcmu,
        };
        let mut config = MediaConfig::new(
            g711,
            neg.local_ssrc,
            format!("{}@chaincall", self.cfg.number),
        );
        config.rtcp_interval = Duration::from_millis(500);
        let options = MediaOptions {
            audio_codec: Some(neg.codec),
            telephone_event: neg.telephone_event,
            source_rate: if self.cfg.wideband { 48_000 } else { 8_000 },
            adaptive_loss_hint: self.cfg.adaptive_loss_hint,
            opus: neg.opus.as_ref().map_or_else(OpusConfig::default, |peer| {
                OpusConfig::default().toward(peer)
            }),
            keep_playout: if self.cfg.keep_playout {
                KEPT_PLAYOUT
            } else {
                Duration::ZERO
            },
            ..MediaOptions::default()
        };
        // The session converts the source to the codec's rate when it is not at it already.
        let audio = (*self.cfg.audio).clone();
        let now = Instant::now();
        let keying = match neg.srtp {
            MediaKeys::Srtp { outbound, inbound } => Keying::Ready(Box::new(
                MediaSession::with_options(config, options, *outbound, *inbound, audio, now),
            )),
            MediaKeys::Zrtp(zrtp) => {
                let (up_tx, up_rx) = oneshot::channel();
                media.up = Some(up_tx);
                let pending = PendingSession {
                    config,
                    options,
                    audio,
                    keylog: self.cfg.keylog.clone(),
                };
                let run = ZrtpRun::new(
                    zrtp,
                    pending,
                    up_rx,
                    call_id.to_owned(),
                    (self.events.clone(), self.media_failed.0.clone()),
                    now,
                );
                Keying::Zrtp(Box::new(run))
            }
        };
        let (stop_tx, stop_rx) = oneshot::channel();
        let (dtmf_tx, dtmf_rx) = mpsc::unbounded_channel();
        let (gate_tx, gate_rx) = watch::channel(AudioGate::Open);
        let (sas_tx, sas_rx) = mpsc::unbounded_channel();
        let done = tokio::spawn(run_media(
            MediaLink {
                socket: media.socket.clone(),
                remote: neg.remote,
                rtcp_remote: neg.rtcp_remote,
                call_id: call_id.to_owned(),
                events: self.events.clone(),
                devices: self.cfg.devices.clone(),
            },
            keying,
            stop_rx,
            (dtmf_rx, gate_rx, sas_rx),
        ));
        media.task = Some(MediaTask {
            stop: stop_tx,
            dtmf: dtmf_tx,
            gate: gate_tx,
            sas: sas_tx,
            done,
        });
    }

    fn write_keylog(&mut self, keys: &[StreamKey]) {
        let Some(path) = &self.cfg.keylog else {
            return;
        };
        if !self.keylog_warned {
            warn!(file = %path.display(), "writing SRTP master keys to the key log: anyone with this file can decrypt these calls");
            self.keylog_warned = true;
        }
        append_keylog(path, keys);
    }
}

/// Appends `keys` to the `--keylog` file (created 0600), one line each
/// ([`StreamKey::keylog_line`]); a failure is logged, never fatal to the call.
pub(crate) fn append_keylog(path: &std::path::Path, keys: &[StreamKey]) {
    let mut text = String::new();
    for k in keys {
        text.push_str(&k.keylog_line());
        text.push('\n');
    }
    let text = Zeroizing::new(text);
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.create(true).append(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    if let Err(e) = opts
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
    {
        warn!(error = %e, "key log write failed");
    }
}

/// The report of a finished call: what the core knew of it and what its media session counted
/// (nothing when its media never ran); its recording at the codec's rate when `wideband`.
fn call_report(
    call_id: String,
    call: CallSummary,
    ended: EndReason,
    session: Option<&MediaSession>,
    wideband: bool,
) -> CallReport {
    let (recorded, recorded_rate) = match session {
        Some(s) if wideband => (s.recorded_audio_at_codec_rate(), s.codec().clock_rate()),
        Some(s) => (s.recorded_audio(), 8_000),
        None => (Vec::new(), 8_000),
    };
    CallReport {
        call_id,
        peer: call.peer,
        caller: call.caller,
        outgoing: call.outgoing,
        mode: call.mode,
        verified_peer: call.verified_peer,
        lookup_verified: call.lookup.as_ref().is_some_and(|l| l.verified),
        verified_in_person: call.lookup.as_ref().is_some_and(|l| l.verified_in_person),
        key_changes: call
            .lookup
            .as_ref()
            .map_or_else(Vec::new, |l| l.changes.clone()),
        safety_number: call.safety_number,
        proof_bytes: call.lookup.as_ref().map_or(0, |l| l.proof_bytes),
        timings: call.timings,
        signalling_lost: call.signalling_lost,
        stats: session.map(MediaSession::stats).unwrap_or_default(),
        sent_payload: session.map_or_else(Vec::new, |s| s.sent_payload().to_vec()),
        received_payload: session.map_or_else(Vec::new, MediaSession::received_payload),
        recorded,
        recorded_rate,
        playout: session.map(|s| s.playout().clone()).unwrap_or_default(),
        source_started: session.map(MediaSession::source_started),
        codec: call.codec,
        jitter: session.map(MediaSession::jitter_stats).unwrap_or_default(),
        zrtp: None,
        audio_warnings: Vec::new(),
        failure: call.failure,
        ended,
    }
}

/// How a media task starts: keyed already, or with a ZRTP exchange to run first.
enum Keying {
    Ready(Box<MediaSession>),
    Zrtp(Box<ZrtpRun>),
}

/// Where a call's media goes, and where its DTMF events are told.
struct MediaLink {
    socket: Arc<UdpSocket>,
    remote: SocketAddr,
    rtcp_remote: SocketAddr,
    call_id: String,
    events: mpsc::UnboundedSender<PhoneEvent>,
    /// The sound card, when the call talks on it.
    devices: Option<DeviceAudio>,
}

/// Moves SRTP between the socket and the session until told to stop, then sends the final RTCP.
/// Plays the received audio out of the jitter buffer every packet time: to the speaker when the
/// call talks on the sound card (and then the microphone's frame of that packet time is sent),
/// else only for the buffer's statistics, which the call report shows, true to a listener's call;
/// sends the digits the core passed and tells received ones as [`PhoneEvent::Dtmf`]. A ZRTP
/// call runs its exchange on the same socket first (ZRTP packets are told apart by their magic
/// cookie) and has no session, and sends no audio, until the exchange is secure.
async fn run_media(
    link: MediaLink,
    keying: Keying,
    mut stop: oneshot::Receiver<()>,
    (mut dtmf, mut gate, mut sas): (
        mpsc::UnboundedReceiver<String>,
        watch::Receiver<AudioGate>,
        mpsc::UnboundedReceiver<()>,
    ),
) -> MediaDone {
    let MediaLink {
        socket,
        remote,
        rtcp_remote,
        call_id,
        events,
        devices,
    } = link;
    let (mut session, mut zrtp) = match keying {
        Keying::Ready(s) => (Some(*s), None),
        Keying::Zrtp(z) => (None, Some(z)),
    };
    let open_devices = |session: Option<&mut MediaSession>| {
        let (session, devices) = (session?, devices.as_ref()?);
        session.use_live_input();
        let rate = session.codec().clock_rate();
        Some(CallAudio::open(
            devices,
            rate,
            session.samples_per_frame(),
            &call_id,
        ))
    };
    let mut audio = open_devices(session.as_mut());
    let mut buf = vec![0u8; 2048];
    let mut stopping = false;
    let mut next_playout = Instant::now();
    loop {
        let now = Instant::now();
        let mut zrtp_deadline = None;
        if let Some(z) = zrtp.as_mut() {
            let out = z.drain(now);
            for p in out.packets {
                if let Err(e) = socket.send_to(&p, remote).await {
                    debug!(error = %e, "ZRTP send failed");
                }
            }
            zrtp_deadline = out.deadline;
            if let Some(mut s) = out.session {
                s.set_audio_gate(*gate.borrow());
                session = Some(s);
                audio = open_devices(session.as_mut());
                next_playout = now;
            }
        }
        let mut deadline = zrtp_deadline;
        if let Some(session) = session.as_mut() {
            let ptime = Duration::from_millis(u64::from(session.config().ptime_ms));
            // One frame per packet time, each at its own slot (late wake-ups catch up).
            while next_playout <= now {
                let heard = session.pop_audio(next_playout);
                if let Some(audio) = audio.as_mut() {
                    session.push_frame(audio.exchange(heard.samples()));
                }
                next_playout += ptime;
            }
            let media_deadline = loop {
                match session.poll_output(now) {
                    Output::Transmit(pkt) => {
                        let to = match pkt.destination {
                            MediaChannel::Rtp => remote,
                            MediaChannel::Rtcp => rtcp_remote,
                        };
                        if let Err(e) = socket.send_to(&pkt.contents, to).await {
                            debug!(error = %e, "media send failed");
                        }
                    }
                    Output::Event(never) => match never {},
                    Output::Timeout(at) => break at,
                }
            };
            let media_deadline = media_deadline
                .unwrap_or_else(|| now + Duration::from_millis(200))
                .min(next_playout);
            deadline = Some(deadline.map_or(media_deadline, |d| d.min(media_deadline)));
        }
        if stopping {
            break;
        }
        let deadline = deadline.unwrap_or_else(|| now + Duration::from_millis(200));
        tokio::select! {
            r = socket.recv_from(&mut buf) => match r {
                Ok((n, from)) => {
                    if from != remote {
                        debug!(%from, "media from an unexpected address dropped");
                        continue;
                    }
                    let datagram = &buf[..n];
                    if let Some(z) = zrtp.as_mut().filter(|_| chaincall_zrtp::wire::is_zrtp(datagram)) {
                        z.handle_input(datagram, Instant::now());
                        continue;
                    }
                    let Some(session) = session.as_mut() else {
                        debug!("SRTP before the ZRTP exchange went secure dropped");
                        continue;
                    };
                    match session.handle_input(datagram, Instant::now()) {
                        Ok(MediaEvent::Dtmf(Some(event))) => {
                            if let Some(digit) = event.digit {
                                let _ = events.send(PhoneEvent::Dtmf {
                                    call_id: call_id.clone(),
                                    digit,
                                });
                            }
                        }
                        Ok(_) => {}
                        Err(e) => debug!(error = %e, "media packet rejected"),
                    }
                }
                Err(e) => debug!(error = %e, "media receive failed"),
            },
            Some(digits) = dtmf.recv() => {
                match session.as_mut() {
                    Some(session) => if let Err(e) = session.send_dtmf(&digits) {
                        warn!(error = %e, "DTMF not sent");
                    },
                    None => warn!("DTMF not sent: the call is not keyed yet"),
                }
            }
            Some(()) = sas.recv() => {
                if let Some(z) = zrtp.as_mut() {
                    z.confirm_sas();
                }
            }
            // Mute and hold: the one gate on what of the audio goes out.
            Ok(()) = gate.changed() => {
                if let Some(session) = session.as_mut() {
                    session.set_audio_gate(*gate.borrow_and_update());
                }
            }
            _ = tokio::time::sleep_until(tokio::time::Instant::from_std(deadline)) => {
                if let Some(z) = zrtp.as_mut() {
                    z.handle_timeout(Instant::now());
                }
            }
            _ = &mut stop, if !stopping => {
                if let Some(session) = session.as_mut() {
                    session.finish(Instant::now());
                }
                stopping = true;
            }
        }
    }
    let status = zrtp.and_then(|mut z| {
        z.log_inbound_key(session.as_ref());
        z.status
    });
    let warnings = match audio {
        Some(audio) => audio.close().await,
        None => Vec::new(),
    };
    (session, status, warnings)
}
