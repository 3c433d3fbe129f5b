//! The phone's I/O shell: the signalling connection (TLS-PSK to sipd, or TCP to a standard
//! proxy such as Kamailio), the user agent, key lookups on chain, and one SRTP media task per call.
//!
//! [`Phone::connect`] returns a cheap [`Phone`] handle; an actor task owns the connection and the
//! [`UserAgent`]. Commands go in over a channel, [`PhoneEvent`]s come out of another. The protocol
//! work stays in the sans-IO cores ([`crate::ua`], [`crate::negotiation`], MIKEY, SRTP, media).

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
use chaincall_media::{MediaChannel, MediaConfig, MediaSession, MediaStats};
use chaincall_mikey::{NtpTime, Responder, ResponderConfig};
use chaincall_sip::framing::{Frame, StreamFramer};
use chaincall_sip::message::ParseLimits;
use chaincall_tls_psk::{OpensslCrypto, TlsPskClient, TlsPskConfig, TlsPskError};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};
use zeroize::Zeroizing;

use crate::caller::{
    AcceptUnverified, CallerId, ClaimLookup, Decision, FromClaim, Verification, decide,
};
use crate::contacts::KeyChange;
use crate::error::PhoneError;
use crate::keys::{KeyLookup, LookedUp};
use crate::negotiation::{IncomingOffer, KeyMode, LocalMedia, NegotiatedMedia, Offer, StreamKey};
use crate::ua::{UaConfig, UaEvent, UserAgent};

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
}

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
    /// Address to bind media sockets to.
    pub media_ip: IpAddr,
    /// Codecs, preferred first.
    pub codecs: Vec<Codec>,
    /// Key mode for outgoing calls.
    pub key_mode: KeyMode,
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
    /// What we send in calls (8 kHz PCM).
    pub audio: Arc<Vec<i16>>,
    /// Registration lifetime asked for, seconds.
    pub register_expires: u32,
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
    /// Packet counts.
    pub stats: MediaStats,
    /// G.711 payload we sent, in order.
    pub sent_payload: Vec<u8>,
    /// G.711 payload we received, in sequence order.
    pub received_payload: Vec<u8>,
    /// The received audio, decoded.
    pub recorded: Vec<i16>,
    /// The codec.
    pub codec: Codec,
}

/// What the phone tells its user.
#[derive(Debug)]
pub enum PhoneEvent {
    /// Registered at the server.
    Registered {
        /// Granted lifetime.
        expires: u32,
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
    /// A call is up: both SRTP contexts are keyed.
    CallUp {
        /// The call.
        call_id: String,
        /// The other party.
        peer: String,
        /// The caller as shown before answering (incoming calls; `None` for ours).
        caller: Option<CallerId>,
        /// Key mode.
        mode: KeyMode,
        /// The chain-verified peer (None: SDES, "encrypted, key not verified on chain").
        verified_peer: Option<IdentityName>,
        /// The safety number between us and the verified peer, to compare with theirs.
        safety_number: Option<SafetyNumber>,
        /// Whether the user compared it with the peer in person, for the peer's current key.
        verified_in_person: bool,
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
                        PhoneError::Signalling(format!(
                            "handshake: {}",
                            chaincall_io::ErrorChain(&e)
                        ))
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
                            tokio::time::sleep(Duration::from_millis(200 * u64::from(retries)))
                                .await;
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
                spawn_actor(cfg, lookup, stream, local_addr, "TLS", cmd_rx, ev_tx);
            }
            Signalling::Tcp { addr } => {
                let tcp = TcpStream::connect(addr).await?;
                let _ = tcp.set_nodelay(true);
                let local_addr = tcp.local_addr()?;
                warn!(number = %cfg.number, %addr, "signalling over plain TCP: media stays end-to-end encrypted, SIP does not");
                spawn_actor(cfg, lookup, tcp, local_addr, "TCP", cmd_rx, ev_tx);
            }
        }
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

/// A call in progress, owned by the actor.
struct ActiveCall {
    peer: String,
    caller: Option<CallerId>,
    outgoing: bool,
    lookup: Option<LookedUp>,
    offer: Option<Offer>,
    invite_sent: Instant,
    mikey_time: Duration,
    socket: Option<Arc<UdpSocket>>,
    media: Option<MediaTask>,
    timings: SetupTimings,
    mode: KeyMode,
    verified_peer: Option<IdentityName>,
    /// The safety number with the verified peer, once the call is keyed.
    safety_number: Option<SafetyNumber>,
    codec: Codec,
    /// The key of the stream we receive, logged to `--keylog` when the call ends (by then its
    /// SSRC is known).
    inbound_key: Option<StreamKey>,
}

struct MediaTask {
    stop: oneshot::Sender<()>,
    done: tokio::task::JoinHandle<MediaSession>,
}

struct Actor<C> {
    cfg: PhoneConfig,
    lookup: KeyLookup<C>,
    ua: UserAgent,
    responder: Responder,
    calls: std::collections::HashMap<String, ActiveCall>,
    events: mpsc::UnboundedSender<PhoneEvent>,
    register_reply: Option<oneshot::Sender<Result<u32, PhoneError>>>,
    pending_offers: std::collections::HashMap<String, Vec<u8>>,
    keylog_warned: bool,
    /// When to refresh the registration (halfway through the granted lifetime).
    refresh_at: Option<Instant>,
}

fn spawn_actor<C, S>(
    cfg: PhoneConfig,
    lookup: KeyLookup<C>,
    stream: S,
    local: SocketAddr,
    transport: &'static str,
    cmd_rx: mpsc::Receiver<Command>,
    events: mpsc::UnboundedSender<PhoneEvent>,
) where
    C: KeystoreChain + 'static,
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
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
    let responder = Responder::new(ResponderConfig::new(me), (*cfg.identity).clone());
    let actor = Actor {
        cfg,
        lookup,
        ua,
        responder,
        calls: Default::default(),
        events,
        register_reply: None,
        pending_offers: Default::default(),
        keylog_warned: false,
        refresh_at: None,
    };
    tokio::spawn(actor.run(stream, cmd_rx));
}

fn ntp_now() -> NtpTime {
    NtpTime::from_system_time(SystemTime::now())
}

impl<C: KeystoreChain + 'static> Actor<C> {
    async fn run<S>(mut self, stream: S, mut cmd_rx: mpsc::Receiver<Command>)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (mut rd, mut wr) = tokio::io::split(stream);
        let (frame_tx, mut frame_rx) = mpsc::channel::<Option<Vec<u8>>>(64);
        let number = self.cfg.number.clone();
        let reader = tokio::spawn(async move {
            let mut framer = StreamFramer::new(ParseLimits::default());
            let mut buf = vec![0u8; 16 * 1024];
            loop {
                let n = match rd.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                framer.push(&buf[..n]);
                loop {
                    match framer.poll_frame() {
                        Ok(Some(Frame::Message(m))) => {
                            if frame_tx.send(Some(m)).await.is_err() {
                                return;
                            }
                        }
                        Ok(Some(Frame::Ping)) => {}
                        Ok(None) => break,
                        Err(e) => {
                            warn!(error = %chaincall_io::ErrorChain(&e), "unframeable signalling stream");
                            let _ = frame_tx.send(None).await;
                            return;
                        }
                    }
                }
            }
            let _ = frame_tx.send(None).await;
        });
        loop {
            // Drain the UA: write its messages, act on its events (which may queue more: answers,
            // ACKs, BYEs), until `Timeout`. After a failed write the rest of this round is
            // dropped: the connection is gone and the reader will say so.
            let mut write_failed = false;
            let ua_deadline = loop {
                match self.ua.poll_output() {
                    Output::Transmit(out) if !write_failed => {
                        if let Err(e) = wr.write_all(&out.contents).await {
                            warn!(error = %e, "signalling write failed");
                            write_failed = true;
                        }
                    }
                    Output::Transmit(_) => {}
                    Output::Event(ev) => self.ua_event(ev).await,
                    Output::Timeout(at) => break at,
                }
            };
            let deadline = ua_deadline
                .into_iter()
                .chain(self.refresh_at)
                .min()
                .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
            tokio::select! {
                frame = frame_rx.recv() => match frame.flatten() {
                    Some(bytes) => {
                        if let Err(e) = self.ua.handle_input(&bytes, Instant::now()) {
                            debug!(error = %e, "unparseable SIP message ignored");
                        }
                    }
                    None => {
                        info!(%number, "signalling connection closed");
                        break;
                    }
                },
                cmd = cmd_rx.recv() => match cmd {
                    None | Some(Command::Shutdown) => break,
                    Some(c) => self.command(c).await,
                },
                _ = tokio::time::sleep_until(tokio::time::Instant::from_std(deadline)) => {
                    let now = Instant::now();
                    if self.refresh_at.is_some_and(|t| t <= now) {
                        self.refresh_at = None;
                        debug!(number = %number, "refreshing the registration");
                        self.ua.register(self.cfg.register_expires, now);
                    }
                    self.ua.handle_timeout(now);
                }
            }
        }
        reader.abort();
        for (_, call) in self.calls.drain() {
            if let Some(m) = call.media {
                let _ = m.stop.send(());
            }
        }
        if let Some(r) = self.register_reply.take() {
            let _ = r.send(Err(PhoneError::Signalling("connection closed".into())));
        }
        let _ = wr.shutdown().await;
    }

    fn emit(&self, ev: PhoneEvent) {
        let _ = self.events.send(ev);
    }

    async fn command(&mut self, c: Command) {
        match c {
            Command::Register { expires, reply } => {
                self.register_reply = Some(reply);
                self.cfg.register_expires = expires;
                self.ua.register(expires, Instant::now());
            }
            Command::Call { target, reply } => {
                let r = self.place_call(&target).await;
                let _ = reply.send(r);
            }
            Command::Answer { call_id, accept } => {
                if accept {
                    self.accept(&call_id).await;
                } else {
                    self.ua.answer(&call_id, 603, "Decline", None);
                    self.calls.remove(&call_id);
                }
            }
            Command::Hangup { call_id } => {
                self.ua.hangup(&call_id, Instant::now());
            }
            Command::Shutdown => {}
        }
    }

    async fn bind_media(&self) -> Result<Arc<UdpSocket>, PhoneError> {
        Ok(Arc::new(
            UdpSocket::bind(SocketAddr::new(self.cfg.media_ip, 0)).await?,
        ))
    }

    async fn place_call(&mut self, target: &PhoneNumber) -> Result<String, PhoneError> {
        let callee = IdentityName::Phone(target.clone());
        let mode = self.cfg.key_mode;
        let (found, dir) = if mode.verified_on_chain() {
            let found = self.lookup.approved(&callee).await?;
            let mut dir = StaticDirectory::new();
            KeyLookup::<C>::record(&mut dir, &callee, &found);
            (Some(found), dir)
        } else {
            (None, StaticDirectory::new())
        };
        let socket = self.bind_media().await?;
        let local = LocalMedia {
            addr: socket.local_addr()?,
            codecs: self.cfg.codecs.clone(),
            randomness: self.cfg.randomness.clone(),
        };
        let t = Instant::now();
        let me = IdentityName::Phone(self.cfg.number.clone());
        let offer = match mode {
            KeyMode::Sdes => Offer::sdes(&callee, &local),
            _ => Offer::mikey(
                mode,
                &me,
                &self.cfg.identity,
                &callee,
                &dir,
                &local,
                ntp_now(),
            )?,
        };
        let mikey_time = t.elapsed();
        let invite_sent = Instant::now();
        let call_id = self.ua.invite(target.as_str(), offer.sdp(), invite_sent);
        info!(call = %call_id, to = %target, mode = mode.name(), "calling");
        let timings = SetupTimings {
            key_retrieval: found.as_ref().map(|f| f.elapsed).unwrap_or_default(),
            ..SetupTimings::default()
        };
        self.calls.insert(
            call_id.clone(),
            ActiveCall {
                peer: target.as_str().to_owned(),
                caller: None,
                outgoing: true,
                lookup: found,
                offer: Some(offer),
                invite_sent,
                mikey_time,
                socket: Some(socket),
                media: None,
                timings,
                mode,
                verified_peer: None,
                safety_number: None,
                codec: self.cfg.codecs.first().copied().unwrap_or(Codec::Pcmu),
                inbound_key: None,
            },
        );
        Ok(call_id)
    }

    async fn ua_event(&mut self, ev: UaEvent) {
        match ev {
            UaEvent::Registered { expires } => {
                info!(number = %self.cfg.number, expires, "registered");
                // RFC 3261 §10.2.4: refresh before the binding expires.
                self.refresh_at =
                    Some(Instant::now() + Duration::from_secs(u64::from(expires.max(2)) / 2));
                if let Some(r) = self.register_reply.take() {
                    let _ = r.send(Ok(expires));
                }
                self.emit(PhoneEvent::Registered { expires });
            }
            UaEvent::Unregistered => {
                self.refresh_at = None;
                if let Some(r) = self.register_reply.take() {
                    let _ = r.send(Ok(0));
                }
            }
            UaEvent::RegistrationFailed { code, reason } => {
                warn!(number = %self.cfg.number, code, %reason, "registration failed");
                let err = match code {
                    401 | 403 | 407 => PhoneError::AuthFailed(code),
                    0 => PhoneError::Timeout("the registrar's answer"),
                    _ => PhoneError::Refused { code, reason },
                };
                if let Some(r) = self.register_reply.take() {
                    let _ = r.send(Err(err));
                }
            }
            UaEvent::IncomingCall {
                call_id,
                from_uri,
                from_display,
                sdp,
            } => self.incoming(call_id, from_uri, from_display, sdp).await,
            UaEvent::Ringing { call_id, code } => debug!(call = %call_id, code, "ringing"),
            UaEvent::Answered { call_id, sdp } => self.answered(&call_id, &sdp).await,
            UaEvent::CallFailed {
                call_id,
                code,
                reason,
            } => {
                let peer = self
                    .calls
                    .remove(&call_id)
                    .map(|c| c.peer)
                    .unwrap_or_default();
                let err = match code {
                    404 | 480 => PhoneError::Offline(peer),
                    486 | 600 => PhoneError::Busy(peer),
                    0 => PhoneError::Timeout("the callee's answer"),
                    _ => PhoneError::Refused { code, reason },
                };
                warn!(call = %call_id, error = %err, "call failed");
                self.emit(PhoneEvent::Refused {
                    call_id,
                    reason: err.to_string(),
                });
            }
            UaEvent::Confirmed { call_id } => debug!(call = %call_id, "ACK received"),
            UaEvent::Ended { call_id, by_peer } => {
                info!(call = %call_id, by_peer, "call ended");
                if let Some(mut call) = self.calls.remove(&call_id) {
                    let inbound = call.inbound_key.take();
                    let report = finish_call(call_id, call).await;
                    if let Some(mut key) = inbound {
                        if let Some(ssrc) = report.as_ref().and_then(|r| r.stats.peer_ssrc) {
                            key.ssrc = ssrc;
                        }
                        self.write_keylog(std::slice::from_ref(&key));
                    }
                    if let Some(r) = report {
                        self.emit(PhoneEvent::CallEnded(Box::new(r)));
                    }
                }
            }
        }
    }

    fn write_keylog(&mut self, keys: &[StreamKey]) {
        let Some(path) = &self.cfg.keylog else {
            return;
        };
        if !self.keylog_warned {
            warn!(file = %path.display(), "writing SRTP master keys to the key log: anyone with this file can decrypt these calls");
            self.keylog_warned = true;
        }
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

    async fn answered(&mut self, call_id: &str, sdp: &[u8]) {
        let Some(call) = self.calls.get_mut(call_id) else {
            return;
        };
        let Some(offer) = call.offer.take() else {
            return;
        };
        let answered_at = Instant::now();
        let mut dir = StaticDirectory::new();
        if let Some(found) = &call.lookup
            && let Ok(key) = found.entry.public_key()
            && let Ok(number) = PhoneNumber::parse(&call.peer)
        {
            // The callee's key as looked up (and proven) before the INVITE: a DH-SIGN answer must
            // be signed with it.
            dir.insert(IdentityName::Phone(number), found.entry.status, key);
        }
        match offer.handle_answer(sdp, &dir, ntp_now()) {
            Ok(neg) => {
                let keyed = Instant::now();
                call.timings.signalling = answered_at - call.invite_sent;
                call.timings.call_setup = keyed - call.invite_sent;
                call.timings.mikey = call.mikey_time + (keyed - answered_at);
                self.keyed(call_id, neg);
            }
            Err(e) => {
                let why = chaincall_io::ErrorChain(&e).to_string();
                warn!(call = %call_id, error = %why, "answer refused; hanging up");
                self.emit(PhoneEvent::Refused {
                    call_id: call_id.to_owned(),
                    reason: why,
                });
                self.ua.hangup(call_id, Instant::now());
            }
        }
    }

    /// Starts the media and logs the key we send with; the received stream's key is logged when
    /// the call ends, with the SSRC it turned out to have.
    fn keyed(&mut self, call_id: &str, mut neg: NegotiatedMedia) {
        let inbound = (neg.keys.len() > 1).then(|| neg.keys.remove(1));
        if let Some(outbound) = neg.keys.first().cloned() {
            self.write_keylog(std::slice::from_ref(&outbound));
        }
        if let Some(call) = self.calls.get_mut(call_id) {
            call.inbound_key = inbound;
        }
        self.start_media(call_id, neg);
    }

    fn start_media(&mut self, call_id: &str, neg: NegotiatedMedia) {
        let Some(call) = self.calls.get_mut(call_id) else {
            return;
        };
        let Some(socket) = call.socket.clone() else {
            return;
        };
        call.mode = neg.mode;
        call.verified_peer = neg.verified_peer.clone();
        // Only for a peer MIKEY proved against the key we looked up: that key is the one the
        // user compares.
        call.safety_number = match (&neg.verified_peer, &call.lookup) {
            (Some(peer), Some(found)) => found.entry.approved_key().map(|key| {
                SafetyNumber::new(
                    &IdentityName::Phone(self.cfg.number.clone()),
                    &self.cfg.identity.public(),
                    peer,
                    &key,
                )
            }),
            _ => None,
        };
        let safety_number = call.safety_number.clone();
        let verified_in_person = call.lookup.as_ref().is_some_and(|l| l.verified_in_person);
        call.codec = neg.codec;
        let mut config = MediaConfig::new(
            neg.codec,
            neg.local_ssrc,
            format!("{}@chaincall", self.cfg.number),
        );
        config.rtcp_interval = Duration::from_millis(500);
        let session = MediaSession::new(
            config,
            neg.outbound,
            neg.inbound,
            (*self.cfg.audio).clone(),
            Instant::now(),
        );
        let (stop_tx, stop_rx) = oneshot::channel();
        let done = tokio::spawn(run_media(
            socket,
            neg.remote,
            neg.rtcp_remote,
            session,
            stop_rx,
        ));
        call.media = Some(MediaTask {
            stop: stop_tx,
            done,
        });
        let peer = call.peer.clone();
        let caller = call.caller.clone();
        self.emit(PhoneEvent::CallUp {
            call_id: call_id.to_owned(),
            peer,
            caller,
            mode: neg.mode,
            verified_peer: neg.verified_peer,
            safety_number,
            verified_in_person,
        });
    }

    async fn incoming(
        &mut self,
        call_id: String,
        from_uri: String,
        from_display: Option<String>,
        sdp: Vec<u8>,
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
                self.emit(PhoneEvent::Refused {
                    call_id,
                    reason: why,
                });
                return;
            }
        };
        let (verification, lookup) = self.verify_caller(&from, &offer).await;
        let caller = CallerId {
            uri: from_uri,
            display_name: from_display,
            claimed: from.number.clone().map(IdentityName::Phone),
            verification,
        };
        // A MIKEY offer keys only with the claimed identity's approved key: one that did not
        // verify cannot be answered under any policy, so it is refused before ringing.
        let decision = if offer.mode.verified_on_chain() && !caller.is_verified() {
            Decision::Refuse
        } else {
            decide(
                &caller.verification,
                self.cfg.accept_unverified,
                self.cfg.auto_answer,
            )
        };
        info!(call = %call_id, from = ?caller.uri, verification = caller.verification.name(), ?decision, "incoming call");
        self.emit(PhoneEvent::Incoming {
            call_id: call_id.clone(),
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
            self.ua
                .answer(&call_id, 403, "Forbidden (caller not verified)", None);
            self.emit(PhoneEvent::Refused { call_id, reason });
            return;
        }
        self.calls.insert(
            call_id.clone(),
            ActiveCall {
                peer: from.user,
                caller: Some(caller),
                outgoing: false,
                lookup,
                offer: None,
                invite_sent: Instant::now(),
                mikey_time: Duration::ZERO,
                socket: None,
                media: None,
                timings: SetupTimings::default(),
                mode: KeyMode::MikeyPke,
                verified_peer: None,
                safety_number: None,
                codec: Codec::Pcmu,
                inbound_key: None,
            },
        );
        // Keep the offer for `accept`.
        self.pending_offers.insert(call_id.clone(), sdp);
        match decision {
            Decision::Answer => self.accept(&call_id).await,
            _ => self.ua.answer(&call_id, 180, "Ringing", None),
        }
    }

    /// What the offer proves about the From's claim, and the claimed identity's approved key
    /// (kept for `accept`, so the chain is asked once per call).
    async fn verify_caller(
        &mut self,
        from: &FromClaim,
        offer: &IncomingOffer,
    ) -> (Verification, Option<LookedUp>) {
        let Some(number) = from.number.clone().filter(|_| !from.validation_failed) else {
            let v = crate::caller::verify(
                from,
                offer,
                ClaimLookup::NoClaim,
                &self.responder,
                ntp_now(),
            );
            return (v, None);
        };
        let name = IdentityName::Phone(number);
        let (claim, found) = match self.lookup.approved(&name).await {
            Ok(found) => (Ok(found.clone()), Some(found)),
            Err(e @ (PhoneError::UnknownCallee(_) | PhoneError::CalleeNotApproved { .. })) => {
                (Err(ClaimLookup::NoKey(e.to_string())), None)
            }
            Err(e) => (Err(ClaimLookup::Failed(e.to_string())), None),
        };
        let mut dir = StaticDirectory::new();
        let lookup = match claim {
            Ok(found) => {
                KeyLookup::<C>::record(&mut dir, &name, &found);
                ClaimLookup::Approved {
                    directory: &dir,
                    proven: found.verified,
                    // The 30-digit fingerprint `keystore get` and `phone contact show` print.
                    fingerprint: found
                        .entry
                        .public_key()
                        .map(|k| chaincall_identity::safety::Fingerprint::new(&name, &k).grouped())
                        .unwrap_or_default(),
                }
            }
            Err(other) => other,
        };
        let v = crate::caller::verify(from, offer, lookup, &self.responder, ntp_now());
        // Kept only where answering uses it: an SDES call's report shows no key retrieval.
        (v, found.filter(|_| offer.mode.verified_on_chain()))
    }

    async fn accept(&mut self, call_id: &str) {
        let Some(sdp) = self.pending_offers.remove(call_id) else {
            return;
        };
        let started = Instant::now();
        let result = self.accept_inner(call_id, &sdp).await;
        match result {
            Ok((answer, neg, lookup_time)) => {
                self.ua.answer(call_id, 200, "OK", Some(&answer));
                if let Some(call) = self.calls.get_mut(call_id) {
                    call.timings.key_retrieval = lookup_time;
                    call.timings.mikey = started.elapsed().saturating_sub(lookup_time);
                    call.timings.call_setup = started.elapsed();
                }
                self.keyed(call_id, neg);
            }
            Err((code, reason)) => {
                warn!(call = %call_id, code, %reason, "incoming call refused");
                self.ua.answer(call_id, code, short_reason(code), None);
                self.calls.remove(call_id);
                self.emit(PhoneEvent::Refused {
                    call_id: call_id.to_owned(),
                    reason,
                });
            }
        }
    }

    /// Verifies the caller on chain and keys the call; on failure, the SIP status and why.
    async fn accept_inner(
        &mut self,
        call_id: &str,
        sdp: &[u8],
    ) -> Result<(String, NegotiatedMedia, Duration), (u16, String)> {
        let offer = IncomingOffer::parse(sdp)
            .map_err(|e| (488, chaincall_io::ErrorChain(&e).to_string()))?;
        let peer = self
            .calls
            .get(call_id)
            .map(|c| c.peer.clone())
            .unwrap_or_default();
        let mut dir = StaticDirectory::new();
        let mut lookup_time = Duration::ZERO;
        let claimed = PhoneNumber::parse(&peer).ok().map(IdentityName::Phone);
        if offer.mode.verified_on_chain() {
            let name = claimed
                .clone()
                .ok_or((403, format!("caller {peer:?} is not an E.164 number")))?;
            // Looked up when the call arrived; again only if that found no approved key.
            let known = self.calls.get_mut(call_id).and_then(|c| c.lookup.take());
            let found = match known {
                Some(found) => found,
                None => self
                    .lookup
                    .approved(&name)
                    .await
                    .map_err(|e| (403, e.to_string()))?,
            };
            lookup_time = found.elapsed;
            KeyLookup::<C>::record(&mut dir, &name, &found);
            if let Some(call) = self.calls.get_mut(call_id) {
                call.lookup = Some(found);
            }
        }
        let socket = self.bind_media().await.map_err(|e| (500, e.to_string()))?;
        let local = LocalMedia {
            addr: socket.local_addr().map_err(|e| (500, e.to_string()))?,
            codecs: self.cfg.codecs.clone(),
            randomness: self.cfg.randomness.clone(),
        };
        let (answer, neg) = offer
            .accept(
                claimed.as_ref(),
                &mut self.responder,
                &dir,
                &local,
                ntp_now(),
            )
            .map_err(|e| (488, chaincall_io::ErrorChain(&e).to_string()))?;
        if let Some(call) = self.calls.get_mut(call_id) {
            call.socket = Some(socket);
        }
        Ok((answer, neg, lookup_time))
    }
}

fn short_reason(code: u16) -> &'static str {
    match code {
        403 => "Forbidden",
        488 => "Not Acceptable Here",
        _ => "Server Internal Error",
    }
}

async fn finish_call(call_id: String, call: ActiveCall) -> Option<CallReport> {
    let media = call.media?;
    let _ = media.stop.send(());
    let session = media.done.await.ok()?;
    Some(CallReport {
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
        stats: session.stats(),
        sent_payload: session.sent_payload().to_vec(),
        received_payload: session.received_payload(),
        recorded: session.recorded_audio(),
        codec: call.codec,
    })
}

/// Moves SRTP between the socket and the session until told to stop, then sends the final RTCP.
async fn run_media(
    socket: Arc<UdpSocket>,
    remote: SocketAddr,
    rtcp_remote: SocketAddr,
    mut session: MediaSession,
    mut stop: oneshot::Receiver<()>,
) -> MediaSession {
    let mut buf = vec![0u8; 2048];
    let mut stopping = false;
    loop {
        let now = Instant::now();
        let deadline = loop {
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
                    if let Err(e) = session.handle_input(&buf[..n], Instant::now()) {
                        debug!(error = %e, "media packet rejected");
                    }
                }
                Err(e) => debug!(error = %e, "media receive failed"),
            },
            _ = tokio::time::sleep_until(tokio::time::Instant::from_std(deadline)) => {}
            _ = &mut stop, if !stopping => {
                session.finish(Instant::now());
                stopping = true;
            }
        }
    }
    session
}
