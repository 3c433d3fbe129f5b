//! The two state machines: [`Initiator`] and [`Responder`], each running NSL or STS.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use chaincall_identity::{IdentityName, IdentitySignature, KeyDirectory, PublicIdentityKey};
use chaincall_io::Output;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::crypto::{self, EphemeralSecret, Point};
use crate::kdf::{self, StsKeys, Transcript};
use crate::wire::{
    self, HEADER_LEN, MAC_LEN, MessageType, NONCE_LEN, POINT_LEN, Reader, SIG_LEN, VERSION,
};
use crate::{Established, HandshakeConfig, HandshakeError, LocalIdentity, Protocol, ReplayCache};

/// What both machines yield: frames for the connection they run on (`D = ()`), the
/// [`Established`] result as the event, and the handshake deadline.
pub type HandshakeOutput = Output<Established, ()>;

/// The methods both machines share, delegated to their [`Core`]; `$when` says when the result is
/// yielded, which is all that differs.
macro_rules! shared_api {
    ($when:literal) => {
        #[doc = concat!(
            "The next output: a frame to send on the connection, the [`Established`] result (once, ",
            $when,
            "), or the handshake deadline while it runs. Drain until `Timeout` after `new` and ",
            "after every `handle_input` or `handle_timeout`."
        )]
        pub fn poll_output(&mut self) -> HandshakeOutput {
            self.core.poll_output()
        }

        /// Tells the handshake the time; past the deadline it fails with
        /// [`HandshakeError::Timeout`]. Early or repeated calls are harmless.
        pub fn handle_timeout(&mut self, now: Instant) {
            self.core.handle_timeout(now);
        }

        /// The sticky error, if the handshake failed.
        pub fn error(&self) -> Option<&HandshakeError> {
            self.core.error.as_ref()
        }

        /// Whether the handshake finished successfully.
        pub fn is_finished(&self) -> bool {
            self.core.finished
        }
    };
}

/// State common to both roles: the outbox, the deadline, the sticky error and the result.
struct Core {
    config: HandshakeConfig,
    local: LocalIdentity,
    outbox: VecDeque<Vec<u8>>,
    deadline: Instant,
    error: Option<HandshakeError>,
    established: Option<Established>,
    finished: bool,
}

impl Core {
    fn new(config: HandshakeConfig, local: LocalIdentity, now: Instant) -> Self {
        let deadline = now + config.handshake_timeout;
        Self {
            config,
            local,
            // At most one handshake message and one alert are ever queued.
            outbox: VecDeque::with_capacity(2),
            deadline,
            error: None,
            established: None,
            finished: false,
        }
    }

    /// The gate every input passes: sticky error, completion, deadline.
    fn gate(&mut self, now: Instant) -> Result<(), HandshakeError> {
        if let Some(err) = &self.error {
            return Err(err.clone());
        }
        if self.finished {
            return Err(HandshakeError::ApiMisuse(
                "input after the handshake finished",
            ));
        }
        if now >= self.deadline {
            return Err(self.fail(HandshakeError::Timeout));
        }
        Ok(())
    }

    /// Makes `err` sticky, queues the matching alert, and returns it.
    fn fail(&mut self, err: HandshakeError) -> HandshakeError {
        if self.error.is_none() {
            if let Some(code) = err.alert() {
                self.outbox.push_back(wire::encode_alert(code));
            }
            self.error = Some(err.clone());
        }
        err
    }

    fn handle_timeout(&mut self, now: Instant) {
        if self.error.is_none() && !self.finished && now >= self.deadline {
            self.error = Some(HandshakeError::Timeout);
        }
    }

    /// Frames first (message 3 goes out before the result), then the result, then the deadline.
    fn poll_output(&mut self) -> HandshakeOutput {
        if let Some(frame) = self.outbox.pop_front() {
            return Output::transmit((), frame);
        }
        if let Some(established) = self.established.take() {
            return Output::Event(established);
        }
        Output::Timeout((self.error.is_none() && !self.finished).then_some(self.deadline))
    }

    /// Done: the result is queued for `poll_output`.
    fn finish(
        &mut self,
        (psk, identity): (crate::Psk, crate::PskIdentity),
        (peer, peer_key): (IdentityName, PublicIdentityKey),
        protocol: Protocol,
        lifetime: Duration,
        now: Instant,
    ) {
        self.finished = true;
        self.established = Some(Established {
            psk,
            identity,
            peer,
            peer_key,
            protocol,
            lifetime,
            established_at: now,
        });
    }
}

fn nonce(local: &LocalIdentity) -> Zeroizing<[u8; NONCE_LEN]> {
    let mut n = Zeroizing::new([0u8; NONCE_LEN]);
    local.randomness().fill(n.as_mut());
    n
}

fn parse_point(ty: MessageType, bytes: &[u8]) -> Result<Point, HandshakeError> {
    // Only the compressed form is allowed (one encoding per key); the provider's ECDH then refuses
    // points off the curve.
    match <[u8; POINT_LEN]>::try_from(bytes) {
        Ok(p) if p[0] == 2 || p[0] == 3 => Ok(p),
        _ => Err(HandshakeError::Malformed {
            ty,
            reason: "ephemeral key is not a compressed P-256 point",
        }),
    }
}

fn dh(
    ty: MessageType,
    result: Result<Zeroizing<[u8; 32]>, crypto::InvalidInput>,
) -> Result<Zeroizing<[u8; 32]>, HandshakeError> {
    result.map_err(|_| HandshakeError::Malformed {
        ty,
        reason: "ephemeral key is not a P-256 point",
    })
}

/// The header a frame of `ty` with a `len`-byte body will carry (absorbed into the STS transcript
/// before the signed fields).
fn header(ty: MessageType, len: usize) -> [u8; HEADER_LEN] {
    let len = len as u16;
    let [hi, lo] = len.to_be_bytes();
    [ty.byte(), VERSION, hi, lo]
}

const STS_MSG2_LEN: usize = POINT_LEN + 4 + SIG_LEN + MAC_LEN;
const STS_MSG2_SIGNED: usize = HEADER_LEN + POINT_LEN + 4;

fn alert_of(frame: &wire::Frame<'_>) -> Option<HandshakeError> {
    (frame.ty == MessageType::Alert)
        .then(|| HandshakeError::PeerAborted(wire::AlertCode::from_byte(frame.body[0])))
}

// ---------------------------------------------------------------------------------------------
// Initiator
// ---------------------------------------------------------------------------------------------

enum InitState {
    NslAwaitMsg2 { na: Zeroizing<[u8; NONCE_LEN]> },
    StsAwaitMsg2 { secret: Box<dyn EphemeralSecret> },
    Done,
}

/// The party that starts a handshake (the phone, toward the SIP server or another phone).
///
/// Call order: [`Initiator::new`] looks the peer's approved key up and queues message 1; drain
/// [`Initiator::poll_output`] until `Timeout`, sending each `Transmit`; feed every received frame
/// to [`Initiator::handle_input`], then drain again; the `Event` is the [`Established`] result
/// (message 3 is yielded before it: send it). Call [`Initiator::handle_timeout`] when the deadline
/// from `Timeout` passes. Every error is fatal and sticky; after one, drain once more to send the
/// alert.
pub struct Initiator {
    core: Core,
    protocol: Protocol,
    peer: IdentityName,
    peer_key: PublicIdentityKey,
    transcript: Transcript,
    state: InitState,
}

impl Initiator {
    /// Starts a handshake with `peer`, whose approved key comes from `directory` (an unknown, pending or
    /// revoked peer fails here), and queues message 1.
    pub fn new(
        config: HandshakeConfig,
        local: LocalIdentity,
        peer: IdentityName,
        protocol: Protocol,
        directory: &dyn KeyDirectory,
        now: Instant,
    ) -> Result<Self, HandshakeError> {
        let peer_key = directory.approved_key(&peer)?;
        let local_key = local.public().clone();
        let mut transcript = Transcript::new(protocol, local.name(), &local_key, &peer, &peer_key);
        let (frame, state) = match protocol {
            Protocol::Nsl => {
                let na = nonce(&local);
                let mut pt = Zeroizing::new(Vec::with_capacity(NONCE_LEN + wire::MAX_NAME_LEN));
                pt.extend_from_slice(na.as_ref());
                wire::put_name(&mut pt, local.name());
                let ct = crypto::seal(&local, &peer_key, kdf::CTX_NSL_MSG1, &pt);
                (
                    wire::encode_frame(MessageType::NslMsg1, &ct),
                    InitState::NslAwaitMsg2 { na },
                )
            }
            Protocol::Sts => {
                let secret = crypto::generate_ephemeral(&local);
                let mut body = Vec::with_capacity(POINT_LEN + 2 * wire::MAX_NAME_LEN);
                body.extend_from_slice(&secret.public());
                wire::put_name(&mut body, local.name());
                wire::put_name(&mut body, &peer);
                (
                    wire::encode_frame(MessageType::StsMsg1, &body),
                    InitState::StsAwaitMsg2 { secret },
                )
            }
        };
        transcript.absorb(&frame);
        let mut core = Core::new(config, local, now);
        core.outbox.push_back(frame);
        Ok(Self {
            core,
            protocol,
            peer,
            peer_key,
            transcript,
            state,
        })
    }

    /// The protocol this handshake runs.
    pub fn protocol(&self) -> Protocol {
        self.protocol
    }

    /// The peer this run was started with.
    pub fn peer(&self) -> &IdentityName {
        &self.peer
    }

    /// Feeds one complete received frame (header and body, nothing more).
    pub fn handle_input(&mut self, bytes: &[u8], now: Instant) -> Result<(), HandshakeError> {
        self.core.gate(now)?;
        match self.process(bytes, now) {
            Ok(()) => Ok(()),
            Err(err) => Err(self.core.fail(err)),
        }
    }

    fn process(&mut self, bytes: &[u8], now: Instant) -> Result<(), HandshakeError> {
        let frame = wire::parse_frame(bytes)?;
        if let Some(err) = alert_of(&frame) {
            return Err(err);
        }
        let state = std::mem::replace(&mut self.state, InitState::Done);
        match (state, frame.ty) {
            (InitState::NslAwaitMsg2 { na }, MessageType::NslMsg2) => {
                self.nsl_msg2(&na, bytes, frame.body, now)
            }
            (InitState::StsAwaitMsg2 { secret }, MessageType::StsMsg2) => {
                self.sts_msg2(&*secret, bytes, frame.body, now)
            }
            (InitState::NslAwaitMsg2 { .. }, got) => Err(HandshakeError::Unexpected {
                expected: "NSL message 2",
                got,
            }),
            (InitState::StsAwaitMsg2 { .. }, got) => Err(HandshakeError::Unexpected {
                expected: "STS message 2",
                got,
            }),
            (InitState::Done, _) => {
                Err(HandshakeError::ApiMisuse("input after the handshake ended"))
            }
        }
    }

    /// NSL message 2, `{Na, Nb, B}pkA`: check our nonce came back and, Lowe's fix, that B is the peer
    /// we started with; answer `{Nb}pkB`.
    fn nsl_msg2(
        &mut self,
        na: &[u8; NONCE_LEN],
        frame: &[u8],
        body: &[u8],
        now: Instant,
    ) -> Result<(), HandshakeError> {
        let ty = MessageType::NslMsg2;
        let local = &self.core.local;
        let pt =
            crypto::open(local, kdf::CTX_NSL_MSG2, body).ok_or(HandshakeError::Decrypt { ty })?;
        let mut r = Reader::new(ty, &pt);
        let na_back: [u8; NONCE_LEN] = r.array()?;
        let nb = Zeroizing::new(r.array::<NONCE_LEN>()?);
        let lifetime = r.u32()?;
        let responder = if self.core.config.unfixed() {
            None
        } else {
            Some(r.name()?)
        };
        r.finish()?;
        if !bool::from(na_back.ct_eq(na)) {
            return Err(HandshakeError::NonceMismatch { ty });
        }
        if let Some(responder) = responder
            && responder != self.peer
        {
            return Err(HandshakeError::PeerMismatch {
                expected: self.peer.clone(),
                got: responder,
            });
        }
        self.transcript.absorb(frame);
        let ct = crypto::seal(
            &self.core.local,
            &self.peer_key,
            kdf::CTX_NSL_MSG3,
            nb.as_ref(),
        );
        let msg3 = wire::encode_frame(MessageType::NslMsg3, &ct);
        self.transcript.absorb(&msg3);
        let mut ikm = Zeroizing::new([0u8; 2 * NONCE_LEN]);
        ikm[..NONCE_LEN].copy_from_slice(na);
        ikm[NONCE_LEN..].copy_from_slice(nb.as_ref());
        let (psk, identity) = kdf::derive_psk(ikm.as_ref(), &self.transcript.hash());
        self.core.outbox.push_back(msg3);
        let lifetime = self
            .core
            .config
            .psk_lifetime
            .min(Duration::from_secs(lifetime.into()));
        self.complete(psk, identity, lifetime, now);
        Ok(())
    }

    /// STS message 2, `gy, lifetime, sig_B, mac_B`: verify B's signature under its approved key and its
    /// MAC under the derived key; answer `sig_A, mac_A`.
    fn sts_msg2(
        &mut self,
        secret: &dyn EphemeralSecret,
        frame: &[u8],
        body: &[u8],
        now: Instant,
    ) -> Result<(), HandshakeError> {
        let ty = MessageType::StsMsg2;
        let mut r = Reader::new(ty, body);
        let gy = parse_point(ty, r.bytes(POINT_LEN)?)?;
        let lifetime = r.u32()?;
        let sig = r.bytes(SIG_LEN)?;
        let tag = r.bytes(MAC_LEN)?;
        r.finish()?;
        // 64 bytes by construction; a high-S (malleated) or out-of-range encoding is refused.
        let sig = IdentitySignature::from_slice(sig).map_err(|_| HandshakeError::BadSignature)?;
        let shared = dh(ty, secret.diffie_hellman(&gy))?;
        let keys = kdf::sts_keys(shared.as_ref());
        self.transcript.absorb(&frame[..STS_MSG2_SIGNED]);
        let th2 = self.transcript.hash();
        let signed = kdf::signed_content(kdf::LABEL_STS_RESP_SIG, &th2);
        if !self
            .core
            .local
            .crypto()
            .verify(&self.peer_key, &signed, &sig)
        {
            return Err(HandshakeError::BadSignature);
        }
        if !kdf::mac_verify(&keys.responder_mac, &[&th2, sig.as_bytes()], tag) {
            return Err(HandshakeError::BadMac);
        }
        self.transcript.absorb(&frame[STS_MSG2_SIGNED..]);
        let th3 = self.transcript.hash();
        let my_sig = self
            .core
            .local
            .sign(&kdf::signed_content(kdf::LABEL_STS_INIT_SIG, &th3));
        let my_tag = kdf::mac(&keys.initiator_mac, &[&th3, my_sig.as_bytes()]);
        let mut body3 = Vec::with_capacity(SIG_LEN + MAC_LEN);
        body3.extend_from_slice(my_sig.as_bytes());
        body3.extend_from_slice(&my_tag);
        let msg3 = wire::encode_frame(MessageType::StsMsg3, &body3);
        self.transcript.absorb(&msg3);
        let (psk, identity) = kdf::derive_psk(shared.as_ref(), &self.transcript.hash());
        self.core.outbox.push_back(msg3);
        let lifetime = self
            .core
            .config
            .psk_lifetime
            .min(Duration::from_secs(lifetime.into()));
        self.complete(psk, identity, lifetime, now);
        Ok(())
    }

    fn complete(
        &mut self,
        psk: crate::Psk,
        identity: crate::PskIdentity,
        lifetime: Duration,
        now: Instant,
    ) {
        let peer = (self.peer.clone(), self.peer_key.clone());
        self.core
            .finish((psk, identity), peer, self.protocol, lifetime, now);
    }

    shared_api!("after message 2 was accepted and message 3 was yielded");
}

// ---------------------------------------------------------------------------------------------
// Responder
// ---------------------------------------------------------------------------------------------

enum RespState {
    AwaitMsg1,
    NslAwaitMsg3 {
        na: Zeroizing<[u8; NONCE_LEN]>,
        nb: Zeroizing<[u8; NONCE_LEN]>,
    },
    StsAwaitMsg3 {
        shared: Zeroizing<[u8; 32]>,
        keys: StsKeys,
    },
    Done,
}

/// The party that answers a handshake (the SIP server, the wallet server, a called phone).
///
/// Call order: [`Responder::new`] when a connection arrives; feed each received frame to
/// [`Responder::handle_input`] with the key directory and the responder's shared [`ReplayCache`];
/// drain [`Responder::poll_output`] until `Timeout` after each; its `Event` is the [`Established`]
/// result, once message 3 was accepted. The initiator's identity is learned from message 1 and its key looked up
/// then. Errors are fatal and sticky, as for [`Initiator`].
pub struct Responder {
    core: Core,
    peer: Option<(IdentityName, PublicIdentityKey)>,
    protocol: Option<Protocol>,
    transcript: Option<Transcript>,
    state: RespState,
}

impl Responder {
    /// A responder waiting for message 1; the handshake deadline starts now.
    pub fn new(config: HandshakeConfig, local: LocalIdentity, now: Instant) -> Self {
        Self {
            core: Core::new(config, local, now),
            peer: None,
            protocol: None,
            transcript: None,
            state: RespState::AwaitMsg1,
        }
    }

    /// The protocol, once message 1 arrived.
    pub fn protocol(&self) -> Option<Protocol> {
        self.protocol
    }

    /// The initiator's claimed identity, once message 1 arrived (authenticated only when finished).
    pub fn peer(&self) -> Option<&IdentityName> {
        self.peer.as_ref().map(|(n, _)| n)
    }

    /// Feeds one complete received frame (header and body, nothing more).
    pub fn handle_input(
        &mut self,
        bytes: &[u8],
        directory: &dyn KeyDirectory,
        replay: &ReplayCache,
        now: Instant,
    ) -> Result<(), HandshakeError> {
        self.core.gate(now)?;
        match self.process(bytes, directory, replay, now) {
            Ok(()) => Ok(()),
            Err(err) => Err(self.core.fail(err)),
        }
    }

    fn process(
        &mut self,
        bytes: &[u8],
        directory: &dyn KeyDirectory,
        replay: &ReplayCache,
        now: Instant,
    ) -> Result<(), HandshakeError> {
        let frame = wire::parse_frame(bytes)?;
        if let Some(err) = alert_of(&frame) {
            return Err(err);
        }
        let state = std::mem::replace(&mut self.state, RespState::Done);
        match (state, frame.ty) {
            (RespState::AwaitMsg1, MessageType::NslMsg1) => {
                self.nsl_msg1(bytes, frame.body, directory, replay, now)
            }
            (RespState::AwaitMsg1, MessageType::StsMsg1) => {
                self.sts_msg1(bytes, frame.body, directory, replay, now)
            }
            (RespState::NslAwaitMsg3 { na, nb }, MessageType::NslMsg3) => {
                self.nsl_msg3(&na, &nb, bytes, frame.body, now)
            }
            (RespState::StsAwaitMsg3 { shared, keys }, MessageType::StsMsg3) => {
                self.sts_msg3(&shared, &keys, bytes, frame.body, now)
            }
            (RespState::AwaitMsg1, got) => Err(HandshakeError::Unexpected {
                expected: "message 1",
                got,
            }),
            (RespState::NslAwaitMsg3 { .. }, got) => Err(HandshakeError::Unexpected {
                expected: "NSL message 3",
                got,
            }),
            (RespState::StsAwaitMsg3 { .. }, got) => Err(HandshakeError::Unexpected {
                expected: "STS message 3",
                got,
            }),
            (RespState::Done, _) => {
                Err(HandshakeError::ApiMisuse("input after the handshake ended"))
            }
        }
    }

    /// NSL message 1, `{Na, A}pkB`: refuse replays and unapproved initiators; answer `{Na, Nb, B}pkA`.
    fn nsl_msg1(
        &mut self,
        frame: &[u8],
        body: &[u8],
        directory: &dyn KeyDirectory,
        replay: &ReplayCache,
        now: Instant,
    ) -> Result<(), HandshakeError> {
        let ty = MessageType::NslMsg1;
        if !self.core.config.accept_nsl {
            return Err(HandshakeError::ProtocolNotAccepted("nsl"));
        }
        self.protocol = Some(Protocol::Nsl);
        let local = &self.core.local;
        let pt =
            crypto::open(local, kdf::CTX_NSL_MSG1, body).ok_or(HandshakeError::Decrypt { ty })?;
        let mut r = Reader::new(ty, &pt);
        let na = Zeroizing::new(r.array::<NONCE_LEN>()?);
        let initiator = r.name()?;
        r.finish()?;
        replay.check_and_insert(kdf::replay_token(Protocol::Nsl, na.as_ref()), now)?;
        let initiator_key = directory.approved_key(&initiator)?;
        let local = &self.core.local;
        let mut transcript = Transcript::new(
            Protocol::Nsl,
            &initiator,
            &initiator_key,
            local.name(),
            local.public(),
        );
        transcript.absorb(frame);
        let nb = nonce(local);
        let mut pt2 = Zeroizing::new(Vec::with_capacity(2 * NONCE_LEN + 4 + wire::MAX_NAME_LEN));
        pt2.extend_from_slice(na.as_ref());
        pt2.extend_from_slice(nb.as_ref());
        pt2.extend_from_slice(&self.core.config.lifetime_secs().to_be_bytes());
        if !self.core.config.unfixed() {
            // Lowe's fix: the responder names itself inside message 2.
            wire::put_name(&mut pt2, local.name());
        }
        let ct = crypto::seal(local, &initiator_key, kdf::CTX_NSL_MSG2, &pt2);
        let msg2 = wire::encode_frame(MessageType::NslMsg2, &ct);
        transcript.absorb(&msg2);
        self.core.outbox.push_back(msg2);
        self.transcript = Some(transcript);
        self.peer = Some((initiator, initiator_key));
        self.state = RespState::NslAwaitMsg3 { na, nb };
        Ok(())
    }

    /// NSL message 3, `{Nb}pkB`: our nonce back proves A read message 2.
    fn nsl_msg3(
        &mut self,
        na: &[u8; NONCE_LEN],
        nb: &[u8; NONCE_LEN],
        frame: &[u8],
        body: &[u8],
        now: Instant,
    ) -> Result<(), HandshakeError> {
        let ty = MessageType::NslMsg3;
        let local = &self.core.local;
        let pt =
            crypto::open(local, kdf::CTX_NSL_MSG3, body).ok_or(HandshakeError::Decrypt { ty })?;
        let mut r = Reader::new(ty, &pt);
        let nb_back: [u8; NONCE_LEN] = r.array()?;
        r.finish()?;
        if !bool::from(nb_back.ct_eq(nb)) {
            return Err(HandshakeError::NonceMismatch { ty });
        }
        // Invariant: the transcript is set together with the NslAwaitMsg3 state.
        let transcript = self.transcript.as_mut().expect("set at message 1");
        transcript.absorb(frame);
        let mut ikm = Zeroizing::new([0u8; 2 * NONCE_LEN]);
        ikm[..NONCE_LEN].copy_from_slice(na);
        ikm[NONCE_LEN..].copy_from_slice(nb);
        let (psk, identity) = kdf::derive_psk(ikm.as_ref(), &transcript.hash());
        self.complete(psk, identity, now);
        Ok(())
    }

    /// STS message 1, `gx, A, B`: refuse replays, misaddressed messages and unapproved initiators;
    /// answer `gy, lifetime, sig_B(transcript), mac_B`.
    fn sts_msg1(
        &mut self,
        frame: &[u8],
        body: &[u8],
        directory: &dyn KeyDirectory,
        replay: &ReplayCache,
        now: Instant,
    ) -> Result<(), HandshakeError> {
        let ty = MessageType::StsMsg1;
        if !self.core.config.accept_sts {
            return Err(HandshakeError::ProtocolNotAccepted("sts"));
        }
        self.protocol = Some(Protocol::Sts);
        let mut r = Reader::new(ty, body);
        let gx_bytes = r.bytes(POINT_LEN)?;
        let gx = parse_point(ty, gx_bytes)?;
        let initiator = r.name()?;
        let responder = r.name()?;
        r.finish()?;
        let local = &self.core.local;
        if &responder != local.name() {
            return Err(HandshakeError::NotForUs(responder));
        }
        replay.check_and_insert(kdf::replay_token(Protocol::Sts, gx_bytes), now)?;
        let initiator_key = directory.approved_key(&initiator)?;
        let mut transcript = Transcript::new(
            Protocol::Sts,
            &initiator,
            &initiator_key,
            local.name(),
            local.public(),
        );
        transcript.absorb(frame);
        let secret = crypto::generate_ephemeral(local);
        let shared = dh(ty, secret.diffie_hellman(&gx))?;
        let keys = kdf::sts_keys(shared.as_ref());
        let mut body2 = Vec::with_capacity(STS_MSG2_LEN);
        body2.extend_from_slice(&secret.public());
        body2.extend_from_slice(&self.core.config.lifetime_secs().to_be_bytes());
        transcript.absorb(&header(MessageType::StsMsg2, STS_MSG2_LEN));
        transcript.absorb(&body2);
        let th2 = transcript.hash();
        let sig = local.sign(&kdf::signed_content(kdf::LABEL_STS_RESP_SIG, &th2));
        let tag = kdf::mac(&keys.responder_mac, &[&th2, sig.as_bytes()]);
        body2.extend_from_slice(sig.as_bytes());
        body2.extend_from_slice(&tag);
        transcript.absorb(&body2[POINT_LEN + 4..]);
        let msg2 = wire::encode_frame(MessageType::StsMsg2, &body2);
        self.core.outbox.push_back(msg2);
        self.transcript = Some(transcript);
        self.peer = Some((initiator, initiator_key));
        self.state = RespState::StsAwaitMsg3 { shared, keys };
        Ok(())
    }

    /// STS message 3, `sig_A, mac_A`: A's signature under its approved key, and its MAC proving it
    /// holds the same key.
    fn sts_msg3(
        &mut self,
        shared: &[u8; 32],
        keys: &StsKeys,
        frame: &[u8],
        body: &[u8],
        now: Instant,
    ) -> Result<(), HandshakeError> {
        let ty = MessageType::StsMsg3;
        let mut r = Reader::new(ty, body);
        let sig = r.bytes(SIG_LEN)?;
        let tag = r.bytes(MAC_LEN)?;
        r.finish()?;
        // 64 bytes by construction; a high-S (malleated) or out-of-range encoding is refused.
        let sig = IdentitySignature::from_slice(sig).map_err(|_| HandshakeError::BadSignature)?;
        // Invariant: transcript and peer are set together with the StsAwaitMsg3 state.
        let transcript = self.transcript.as_mut().expect("set at message 1");
        let (_, initiator_key) = self.peer.as_ref().expect("set at message 1");
        let th3 = transcript.hash();
        let signed = kdf::signed_content(kdf::LABEL_STS_INIT_SIG, &th3);
        if !self
            .core
            .local
            .crypto()
            .verify(initiator_key, &signed, &sig)
        {
            return Err(HandshakeError::BadSignature);
        }
        if !kdf::mac_verify(&keys.initiator_mac, &[&th3, sig.as_bytes()], tag) {
            return Err(HandshakeError::BadMac);
        }
        transcript.absorb(frame);
        let (psk, identity) = kdf::derive_psk(shared, &transcript.hash());
        self.complete(psk, identity, now);
        Ok(())
    }

    fn complete(&mut self, psk: crate::Psk, identity: crate::PskIdentity, now: Instant) {
        // Invariant: complete() runs only after message 1 set peer and protocol.
        let peer = self.peer.clone().expect("set at message 1");
        let protocol = self.protocol.expect("set at message 1");
        let lifetime = self
            .core
            .config
            .psk_lifetime
            .min(HandshakeConfig::MAX_LIFETIME);
        self.core
            .finish((psk, identity), peer, protocol, lifetime, now);
    }

    shared_api!("after message 3 was accepted");
}
