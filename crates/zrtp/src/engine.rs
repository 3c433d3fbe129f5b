//! The ZRTP state machine (RFC 6189 §4, DH mode), sans-IO.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use chaincall_io::Output;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::cache::{CacheEntry, RetainedSecret};
use crate::config::{
    AuxBinding, AuxPolicy, AuxSecret, CIPHER_AES1, HASH_S256, KeyAgreement, Role, ZrtpConfig,
};
use crate::crypto::{self, DhSecret, mac64, sha256};
use crate::error::{ErrorCode, ZrtpError};
use crate::event::{AuxStatus, CacheStatus, Event, Sas, SecureOn, SrtpKeys, SrtpMaster, Suite};
use crate::keys::KeySchedule;
use crate::wire::{
    self, AlgoId, Commit, Confirm, ConfirmPlain, DhPart, Hello, MAC_LEN, Message, MessageType,
    PingAck, VERSION, Zid,
};

/// What [`Zrtp::poll_output`] yields: ZRTP packets for the media socket (`D = ()`: the shell
/// sends them to the peer's media address), [`Event`]s, and the next deadline.
pub type ZrtpOutput = Output<Event, ()>;

/// T1, the Hello timer: 50 ms doubling to 200 ms, 20 retransmissions (RFC 6189 §6; the counts
/// bzrtp uses).
const T1: Timer = Timer {
    initial: Duration::from_millis(50),
    cap: Duration::from_millis(200),
    max: 20,
};
/// T2, for Commit, DHPart2, Confirm2 and Error: 150 ms doubling to 1200 ms, 10 retransmissions
/// (RFC 6189 §6; the counts bzrtp uses).
const T2: Timer = Timer {
    initial: Duration::from_millis(150),
    cap: Duration::from_millis(1200),
    max: 10,
};

#[derive(Clone, Copy)]
struct Timer {
    initial: Duration,
    cap: Duration,
    max: u32,
}

/// The one message being retransmitted, with its schedule.
struct Retransmit {
    ty: MessageType,
    message: Vec<u8>,
    timer: Timer,
    interval: Duration,
    at: Instant,
    count: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Hellos going both ways.
    Discovery,
    /// Initiator: Commit sent, waiting for DHPart1.
    CommitSent,
    /// Responder: DHPart1 sent, waiting for DHPart2.
    WaitDhPart2,
    /// Initiator: DHPart2 sent, waiting for Confirm1.
    WaitConfirm1,
    /// Responder: Confirm1 sent, waiting for Confirm2.
    WaitConfirm2,
    /// Initiator: Confirm2 sent, waiting for Conf2ACK.
    WaitConf2Ack,
    /// Done: SRTP keys handed out.
    Secure,
    /// Failed for good.
    Failed,
}

impl State {
    fn name(self) -> &'static str {
        match self {
            State::Discovery => "discovery",
            State::CommitSent => "commit-sent",
            State::WaitDhPart2 => "wait-dhpart2",
            State::WaitConfirm1 => "wait-confirm1",
            State::WaitConfirm2 => "wait-confirm2",
            State::WaitConf2Ack => "wait-conf2ack",
            State::Secure => "secure",
            State::Failed => "failed",
        }
    }
}

/// The peer's DHPart, kept until its MAC can be checked with the H0 in the Confirm.
struct PeerDhPart {
    raw: Vec<u8>,
    h1: [u8; 32],
    mac: [u8; MAC_LEN],
}

/// A ZRTP endpoint for one media stream.
///
/// Call order: [`Zrtp::new`] queues the first Hello; drain [`Zrtp::poll_output`] until it yields
/// `Timeout`, sending each transmit to the peer's media address. Feed every ZRTP datagram from
/// the media socket (see [`crate::wire::is_zrtp`]) to [`Zrtp::handle_input`] and call
/// [`Zrtp::handle_timeout`] when the deadline passes; drain after each call. The exchange ends
/// with one [`Event::SecureOn`] or one [`Event::Failed`]; a failure is sticky.
pub struct Zrtp {
    config: ZrtpConfig,
    role_hint: Role,
    role: Option<Role>,
    state: State,
    /// H0..H3 (§9): H0 is secret until our Confirm reveals it.
    h: [Zeroizing<[u8; 32]>; 4],
    hello: Vec<u8>,
    peer_hello: Option<(Hello, Vec<u8>)>,
    hello_acked: bool,
    cache_entry: CacheEntry,
    /// The aux secret of this exchange (fixed, or from the config's source).
    aux: Option<AuxSecret>,
    dh: Option<(KeyAgreement, DhSecret)>,
    suite: Option<Suite>,
    /// The Commit of this exchange (ours as initiator, the peer's as responder).
    commit: Option<(Commit, Vec<u8>)>,
    our_dh_part: Option<Vec<u8>>,
    peer_dh_part: Option<PeerDhPart>,
    keys: Option<KeySchedule>,
    cache_status: CacheStatus,
    aux_status: AuxStatus,
    /// s1 as chosen from the cache (rs1 or rs2 that matched).
    our_confirm: Option<Vec<u8>>,
    peer_confirm: Option<Vec<u8>>,
    peer_sas_verified: bool,
    pending_cache: Option<CacheEntry>,
    seq: u16,
    peer_seq: Option<u16>,
    outbox: VecDeque<Vec<u8>>,
    events: VecDeque<Event>,
    retransmit: Option<Retransmit>,
    deadline: Instant,
    error: Option<ZrtpError>,
}

impl std::fmt::Debug for Zrtp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Zrtp")
            .field("zid", &self.config.zid)
            .field("state", &self.state.name())
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

/// The first of `ours` the peer lists; an empty peer list means the RFC's mandatory set.
fn choose<T: Copy>(
    ours: &[T],
    id: impl Fn(T) -> AlgoId,
    peer: &[AlgoId],
    mandatory: &[AlgoId],
    what: &'static str,
) -> Result<T, ZrtpError> {
    let peer = if peer.is_empty() { mandatory } else { peer };
    ours.iter()
        .copied()
        .find(|&a| peer.contains(&id(a)))
        .ok_or(ZrtpError::NoCommonAlgorithm(what))
}

impl Zrtp {
    /// A new endpoint; queues its first Hello. `role_hint` says whether it sends Commit (see
    /// [`Role`]).
    pub fn new(config: ZrtpConfig, role_hint: Role, now: Instant) -> Result<Self, ZrtpError> {
        config.validate()?;
        let rng = config.randomness.clone();
        let h0 = Zeroizing::new(rng.bytes::<32>());
        let h1 = Zeroizing::new(sha256(&[&h0[..]]));
        let h2 = Zeroizing::new(sha256(&[&h1[..]]));
        let h3 = Zeroizing::new(sha256(&[&h2[..]]));
        let hello = Hello {
            version: VERSION,
            client_id: config.client_id,
            h3: *h3,
            zid: config.zid,
            signature_capable: false,
            mitm: false,
            passive: false,
            hashes: vec![HASH_S256],
            ciphers: vec![CIPHER_AES1],
            auth_tags: config.auth_tags.iter().map(|a| a.id()).collect(),
            key_agreements: config.key_agreements.iter().map(|a| a.id()).collect(),
            sas_types: config.sas_types.iter().map(|a| a.id()).collect(),
            mac: [0; MAC_LEN],
        };
        let mut hello = wire::encode_hello(&hello);
        // The Hello MAC is keyed by H2 (§9).
        let mac = mac64(&h2[..], wire::mac_input(&hello));
        wire::set_mac(&mut hello, &mac);
        // Start low so that 16-bit sequence numbers do not wrap during a call (bzrtp drops
        // anything not above the last sequence number it accepted).
        let seq = 1 + u16::from_be_bytes(rng.bytes::<2>()) % 0x7FFF;
        let deadline = now + config.handshake_timeout;
        let mut z = Self {
            config,
            role_hint,
            role: None,
            state: State::Discovery,
            h: [h0, h1, h2, h3],
            hello: hello.clone(),
            peer_hello: None,
            hello_acked: false,
            cache_entry: CacheEntry::default(),
            aux: None,
            dh: None,
            suite: None,
            commit: None,
            our_dh_part: None,
            peer_dh_part: None,
            keys: None,
            cache_status: CacheStatus::NoSecrets,
            aux_status: AuxStatus::NotConfigured,
            our_confirm: None,
            peer_confirm: None,
            peer_sas_verified: false,
            pending_cache: None,
            seq,
            peer_seq: None,
            outbox: VecDeque::new(),
            events: VecDeque::new(),
            retransmit: None,
            deadline,
            error: None,
        };
        z.send_with_timer(MessageType::Hello, hello, T1, now);
        Ok(z)
    }

    /// SHA-256 of our Hello message: the value of `a=zrtp-hash` (RFC 6189 §8.1).
    pub fn hello_hash(&self) -> [u8; 32] {
        sha256(&[&self.hello])
    }

    /// The SDP attribute value `1.10 <hex of hello_hash>`.
    pub fn zrtp_hash_attribute(&self) -> String {
        format!("1.10 {}", hex::encode(self.hello_hash()))
    }

    /// The peer's `a=zrtp-hash` (§8.1) learnt after `new`: an offerer builds its Hello before
    /// the answer brings the peer's hash, and the peer's Hello may arrive before the answer. A
    /// Hello already received that does not hash to it fails the exchange (Error 0x40), as it
    /// would have on arrival; a later Hello is checked when it comes.
    pub fn set_peer_hello_hash(&mut self, hash: [u8; 32], now: Instant) {
        self.config.peer_hello_hash = Some(hash);
        if let Some((_, raw)) = &self.peer_hello
            && !ct_eq(&sha256(&[raw]), &hash)
        {
            self.fail(ZrtpError::HelloHashMismatch, now);
        }
    }

    /// The role, once decided (by our Commit winning or by receiving the peer's Commit).
    pub fn role(&self) -> Option<Role> {
        self.role
    }

    /// True once [`Event::SecureOn`] was produced.
    pub fn is_secure(&self) -> bool {
        self.state == State::Secure
    }

    /// The sticky failure, if any.
    pub fn error(&self) -> Option<&ZrtpError> {
        self.error.as_ref()
    }

    /// The state's name, for logs.
    pub fn state_name(&self) -> &'static str {
        self.state.name()
    }

    /// The users compared the SAS and it matched: records that in the cache and, after a
    /// [`CacheStatus::Mismatch`], stores the new retained secret held back until now (§4.3.2).
    pub fn confirm_sas(&mut self) {
        if self.state != State::Secure {
            return;
        }
        let Some((peer_hello, _)) = &self.peer_hello else {
            return;
        };
        let peer = peer_hello.zid;
        let mut entry = match self.pending_cache.take() {
            Some(e) => e,
            None => self.config.cache.load(&peer),
        };
        entry.sas_verified = true;
        self.config.cache.store(&peer, entry);
    }

    /// The next output. Drain until `Timeout` after `new` and after every `handle_*` call.
    pub fn poll_output(&mut self) -> ZrtpOutput {
        if let Some(packet) = self.outbox.pop_front() {
            return Output::transmit((), packet);
        }
        if let Some(event) = self.events.pop_front() {
            return Output::Event(event);
        }
        let handshake = match self.state {
            State::Secure | State::Failed => None,
            _ => Some(self.deadline),
        };
        let retransmit = self.retransmit.as_ref().map(|r| r.at);
        Output::Timeout(match (handshake, retransmit) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        })
    }

    /// Tells the engine the time: retransmits what is due, gives up after the RFC's counts, and
    /// fails the handshake past its limit. Early or repeated calls are harmless.
    pub fn handle_timeout(&mut self, now: Instant) {
        if !matches!(self.state, State::Secure | State::Failed) && now >= self.deadline {
            self.fail(ZrtpError::HandshakeTimeout, now);
            return;
        }
        let Some(r) = self.retransmit.as_mut() else {
            return;
        };
        if now < r.at {
            return;
        }
        if r.count >= r.timer.max {
            let (ty, count) = (r.ty, r.count);
            self.retransmit = None;
            match (self.state, ty) {
                (State::Failed, _) => {}
                (_, MessageType::Hello) if self.peer_hello.is_none() => {
                    self.fail(ZrtpError::NoPeer(count), now)
                }
                // Our Hello was never acknowledged but the peer's came: a Commit still acks it.
                (State::Discovery, MessageType::Hello) => {}
                _ => self.fail(
                    ZrtpError::Timeout {
                        message: ty,
                        retransmissions: count,
                    },
                    now,
                ),
            }
            return;
        }
        r.count += 1;
        r.interval = (r.interval * 2).min(r.timer.cap);
        r.at = now + r.interval;
        let message = r.message.clone();
        self.send(&message);
    }

    /// Feeds one datagram from the media socket that [`crate::wire::is_zrtp`] accepted. Refused
    /// packets become [`Event::Error`], fatal ones [`Event::Failed`].
    pub fn handle_input(&mut self, datagram: &[u8], now: Instant) {
        let packet = match wire::decode(datagram) {
            Ok(p) => p,
            Err(e) => {
                self.events.push_back(Event::Error(e.into()));
                return;
            }
        };
        if let Some(last) = self.peer_seq {
            // Serial-number comparison (RFC 1982) so a wrap does not stall the exchange.
            if (packet.seq.wrapping_sub(last) as i16) <= 0 {
                self.events.push_back(Event::Error(ZrtpError::Stale {
                    seq: packet.seq,
                    last,
                }));
                return;
            }
        }
        if self.state == State::Failed {
            // Only the Error handshake goes on: acknowledge theirs, stop repeating ours.
            match packet.message {
                Message::Error(_) => self.send(&wire::encode_empty(MessageType::ErrorAck)),
                Message::ErrorAck => self.retransmit = None,
                _ => {}
            }
            return;
        }
        match self.dispatch(packet.message, packet.raw, packet.ssrc, now) {
            Ok(()) => self.peer_seq = Some(packet.seq),
            Err(e) if is_fatal(&e) => self.fail(e, now),
            Err(e) => self.events.push_back(Event::Error(e)),
        }
    }

    fn dispatch(
        &mut self,
        message: Message<'_>,
        raw: &[u8],
        ssrc: u32,
        now: Instant,
    ) -> Result<(), ZrtpError> {
        match message {
            Message::Hello(h) => self.on_hello(h, raw, now),
            Message::HelloAck => {
                if self.state == State::Discovery {
                    self.hello_acked = true;
                    if self.retransmit.as_ref().map(|r| r.ty) == Some(MessageType::Hello) {
                        self.retransmit = None;
                    }
                    self.maybe_commit(now)?;
                }
                Ok(())
            }
            Message::Commit(c) => self.on_commit(c, raw, now),
            Message::DhPart1(d) => self.on_dh_part1(d, raw, now),
            Message::DhPart2(d) => self.on_dh_part2(d, raw),
            Message::Confirm1(c) => self.on_confirm1(c, raw, now),
            Message::Confirm2(c) => self.on_confirm2(c, raw),
            Message::Conf2Ack => match self.state {
                State::WaitConf2Ack => {
                    self.retransmit = None;
                    self.secure_on();
                    Ok(())
                }
                State::Secure => Ok(()),
                _ => Err(self.unexpected(MessageType::Conf2Ack)),
            },
            Message::Error(code) => {
                self.send(&wire::encode_empty(MessageType::ErrorAck));
                if self.state == State::Secure {
                    // Error messages carry no MAC: once SRTP runs, one is reported but does not
                    // tear the session down (anyone on the path could send it).
                    self.events
                        .push_back(Event::Error(ZrtpError::PeerError(code)));
                    return Ok(());
                }
                Err(ZrtpError::PeerError(code))
            }
            Message::ErrorAck => Ok(()),
            Message::GoClear(_) => {
                // §5.9: refused with Error 0x100; chaincall's media never goes clear. The
                // exchange (or the secure session) is not torn down for it.
                self.send(&wire::encode_error(ErrorCode::GOCLEAR_NOT_ALLOWED));
                Err(ZrtpError::GoClearRefused)
            }
            Message::Ping(p) => {
                let endpoint = sha256(&[&self.config.zid.0, &self.config.ssrc.to_be_bytes()]);
                let mut endpoint_hash = [0u8; 8];
                endpoint_hash.copy_from_slice(&endpoint[..8]);
                self.send(&wire::encode_ping_ack(&PingAck {
                    version: VERSION,
                    endpoint_hash,
                    received_hash: p.endpoint_hash,
                    ssrc,
                }));
                Ok(())
            }
            Message::PingAck(_) => Ok(()),
            other => Err(self.unexpected(other.message_type())),
        }
    }

    fn on_hello(&mut self, h: Hello, raw: &[u8], now: Instant) -> Result<(), ZrtpError> {
        if let Some((_, stored)) = &self.peer_hello {
            if stored.as_slice() != raw {
                return Err(ZrtpError::AlteredRepeat(MessageType::Hello));
            }
            // A repeat: the peer has not seen our HelloACK (after Discovery, our Commit or
            // DHPart1 acknowledges it).
            if self.state == State::Discovery {
                self.send(&wire::encode_empty(MessageType::HelloAck));
            }
            return Ok(());
        }
        if self.state != State::Discovery {
            return Err(self.unexpected(MessageType::Hello));
        }
        if h.version != VERSION {
            return Err(ZrtpError::UnsupportedVersion(h.version));
        }
        if h.zid == self.config.zid {
            return Err(ZrtpError::EqualZid);
        }
        if let Some(expected) = self.config.peer_hello_hash
            && !ct_eq(&sha256(&[raw]), &expected)
        {
            return Err(ZrtpError::HelloHashMismatch);
        }
        self.cache_entry = self.config.cache.load(&h.zid);
        self.aux = self.config.aux_secret.clone();
        if let Some(source) = &self.config.aux_source {
            let binding = AuxBinding {
                own_zid: self.config.zid,
                peer_zid: h.zid,
                own_h3: *self.h[3],
                peer_h3: h.h3,
            };
            if let Some(secret) = source.aux_secret(&binding) {
                self.aux = Some(secret);
            }
        }
        if self.config.aux_policy == AuxPolicy::Fatal && self.aux.is_none() {
            // A fatal policy with nothing to bind this peer to: the binding cannot hold.
            return Err(ZrtpError::AuxSecretMismatch);
        }
        self.peer_hello = Some((h, raw.to_vec()));
        self.send(&wire::encode_empty(MessageType::HelloAck));
        self.maybe_commit(now)
    }

    /// The suite our preferences and the peer's Hello give.
    fn negotiate(&self, peer: &Hello) -> Result<Suite, ZrtpError> {
        if !(peer.hashes.is_empty() || peer.hashes.contains(&HASH_S256)) {
            return Err(ZrtpError::NoCommonAlgorithm("hash"));
        }
        if !(peer.ciphers.is_empty() || peer.ciphers.contains(&CIPHER_AES1)) {
            return Err(ZrtpError::NoCommonAlgorithm("cipher"));
        }
        let c = &self.config;
        Ok(Suite {
            key_agreement: choose(
                &c.key_agreements,
                KeyAgreement::id,
                &peer.key_agreements,
                &[AlgoId(*b"DH3k")],
                "key agreement",
            )?,
            auth_tag: choose(
                &c.auth_tags,
                crate::config::AuthTag::id,
                &peer.auth_tags,
                &[AlgoId(*b"HS32"), AlgoId(*b"HS80")],
                "auth tag",
            )?,
            sas: choose(
                &c.sas_types,
                crate::config::SasType::id,
                &peer.sas_types,
                &[AlgoId(*b"B32 ")],
                "SAS type",
            )?,
        })
    }

    /// The DH key for `ka`, made once (kept when contention keeps the same key agreement).
    fn dh_for(&mut self, ka: KeyAgreement) -> Vec<u8> {
        if self.dh.as_ref().map(|(k, _)| *k) != Some(ka) {
            self.dh = Some((ka, DhSecret::generate(ka, &self.config.randomness)));
        }
        // Set just above.
        self.dh
            .as_ref()
            .map(|(_, s)| s.public_value())
            .unwrap_or_default()
    }

    /// Our DHPart for `role`: retained-secret IDs keyed by the role's name, the aux ID by our
    /// H3 (§4.3.1), random IDs where we hold no secret.
    fn build_dh_part(&mut self, role: Role, pv: &[u8]) -> Vec<u8> {
        let label: &[u8] = match role {
            Role::Initiator => b"Initiator",
            Role::Responder => b"Responder",
        };
        let rng = &self.config.randomness;
        let id = |secret: Option<&[u8]>, data: &[u8]| match secret {
            Some(s) => mac64(s, data),
            None => rng.bytes::<8>(),
        };
        let rs1 = self
            .cache_entry
            .rs1
            .as_ref()
            .map(|s| &s.dangerous_bytes()[..]);
        let rs2 = self
            .cache_entry
            .rs2
            .as_ref()
            .map(|s| &s.dangerous_bytes()[..]);
        let aux = self.aux.as_ref().map(|s| &s.0[..]);
        let pbx = self.config.pbx_secret.as_ref().map(|s| &s.0[..]);
        let part = DhPart {
            h1: *self.h[1],
            rs1_id: id(rs1, label),
            rs2_id: id(rs2, label),
            aux_id: id(aux, &self.h[3][..]),
            pbx_id: id(pbx, label),
            pv,
            mac: [0; MAC_LEN],
        };
        let ty = match role {
            Role::Initiator => MessageType::DhPart2,
            Role::Responder => MessageType::DhPart1,
        };
        let mut m = wire::encode_dh_part(ty, &part);
        let mac = mac64(&self.h[0][..], wire::mac_input(&m));
        wire::set_mac(&mut m, &mac);
        m
    }

    fn maybe_commit(&mut self, now: Instant) -> Result<(), ZrtpError> {
        if self.role_hint != Role::Initiator
            || self.state != State::Discovery
            || !self.hello_acked
            || self.peer_hello.is_none()
        {
            return Ok(());
        }
        let Some((peer, peer_raw)) = self.peer_hello.clone() else {
            return Ok(());
        };
        let suite = self.negotiate(&peer)?;
        let pv = self.dh_for(suite.key_agreement);
        let dh_part2 = self.build_dh_part(Role::Initiator, &pv);
        // hvi = hash(initiator's DHPart2 || responder's Hello) (§4.4.1.1).
        let hvi = sha256(&[&dh_part2, &peer_raw]);
        let commit = Commit {
            h2: *self.h[2],
            zid: self.config.zid,
            hash: HASH_S256,
            cipher: CIPHER_AES1,
            auth_tag: suite.auth_tag.id(),
            key_agreement: suite.key_agreement.id(),
            sas: suite.sas.id(),
            hvi,
            mac: [0; MAC_LEN],
        };
        let mut m = wire::encode_commit(&commit);
        let mac = mac64(&self.h[1][..], wire::mac_input(&m));
        wire::set_mac(&mut m, &mac);
        self.suite = Some(suite);
        self.our_dh_part = Some(dh_part2);
        self.commit = Some((commit, m.clone()));
        self.state = State::CommitSent;
        self.send_with_timer(MessageType::Commit, m, T2, now);
        Ok(())
    }

    fn on_commit(&mut self, c: Commit, raw: &[u8], _now: Instant) -> Result<(), ZrtpError> {
        match self.state {
            State::Discovery | State::CommitSent => {}
            State::WaitDhPart2 => {
                // A retransmitted Commit: our DHPart1 was lost.
                let same = self
                    .commit
                    .as_ref()
                    .is_some_and(|(_, r)| r.as_slice() == raw);
                if !same {
                    return Err(ZrtpError::AlteredRepeat(MessageType::Commit));
                }
                if let Some(m) = self.our_dh_part.clone() {
                    self.send(&m);
                }
                return Ok(());
            }
            _ => return Err(self.unexpected(MessageType::Commit)),
        }
        let Some((peer, peer_raw)) = self.peer_hello.clone() else {
            // No Hello yet: the Commit cannot be checked; the peer's retransmissions bring both.
            return Err(ZrtpError::Unexpected {
                got: MessageType::Commit,
                state: "discovery (no peer Hello yet)",
            });
        };
        if self.state == State::CommitSent
            && self
                .commit
                .as_ref()
                .is_some_and(|(_, r)| r.as_slice() == raw)
        {
            return Ok(()); // our own Commit reflected back
        }
        // §9: H2 hashes to the Hello's H3, and the Hello's MAC is keyed by H2.
        if !ct_eq(&sha256(&[&c.h2]), &peer.h3) {
            return Err(ZrtpError::HashChain(MessageType::Commit));
        }
        if !ct_eq(&mac64(&c.h2, wire::mac_input(&peer_raw)), &peer.mac) {
            return Err(ZrtpError::BadMac(MessageType::Hello));
        }
        if c.zid != peer.zid {
            return Err(ZrtpError::Unexpected {
                got: MessageType::Commit,
                state: "Commit ZID differs from the Hello's",
            });
        }
        let suite = self.check_commit_choice(&c)?;
        if self.state == State::CommitSent {
            // §4.2 contention: the Commit with the higher hvi wins; we keep ours if it is.
            let ours = self.commit.as_ref().map(|(c, _)| c.hvi).unwrap_or_default();
            if ours >= c.hvi {
                return Ok(());
            }
        }
        // We are the responder.
        self.role = Some(Role::Responder);
        self.retransmit = None;
        self.suite = Some(suite);
        let pv = self.dh_for(suite.key_agreement);
        let dh_part1 = self.build_dh_part(Role::Responder, &pv);
        self.send(&dh_part1);
        self.our_dh_part = Some(dh_part1);
        self.commit = Some((c, raw.to_vec()));
        self.state = State::WaitDhPart2;
        Ok(())
    }

    /// The responder's check that the Commit chose from what our Hello offered.
    fn check_commit_choice(&self, c: &Commit) -> Result<Suite, ZrtpError> {
        if c.hash != HASH_S256 {
            return Err(ZrtpError::UnofferedAlgorithm("hash"));
        }
        if c.cipher != CIPHER_AES1 {
            return Err(ZrtpError::UnofferedAlgorithm("cipher"));
        }
        let cfg = &self.config;
        let find = |ids: Vec<AlgoId>, id: AlgoId| ids.iter().position(|&a| a == id);
        let ka = find(
            cfg.key_agreements.iter().map(|a| a.id()).collect(),
            c.key_agreement,
        )
        .map(|i| cfg.key_agreements[i])
        .ok_or(ZrtpError::UnofferedAlgorithm("key agreement"))?;
        let tag = find(cfg.auth_tags.iter().map(|a| a.id()).collect(), c.auth_tag)
            .map(|i| cfg.auth_tags[i])
            .ok_or(ZrtpError::UnofferedAlgorithm("auth tag"))?;
        let sas = find(cfg.sas_types.iter().map(|a| a.id()).collect(), c.sas)
            .map(|i| cfg.sas_types[i])
            .ok_or(ZrtpError::UnofferedAlgorithm("SAS type"))?;
        Ok(Suite {
            key_agreement: ka,
            auth_tag: tag,
            sas,
        })
    }

    /// Matches retained secrets (§4.3.2) and the aux secret against the peer's DHPart, then
    /// derives the key schedule. `peer_role` names the peer's role, whose IDs the peer sent.
    fn agree(
        &mut self,
        d: &DhPart<'_>,
        peer_role: Role,
        transcript: [&[u8]; 4],
    ) -> Result<(), ZrtpError> {
        let suite = self.suite.ok_or(ZrtpError::InvalidConfig("no suite"))?;
        if d.pv.len() != suite.key_agreement.pv_len() {
            return Err(ZrtpError::BadDhValue("public value length"));
        }
        let (_, secret) = self
            .dh
            .as_ref()
            .ok_or(ZrtpError::InvalidConfig("no DH key"))?;
        let dh_result = secret.agree(d.pv)?;
        let label: &[u8] = match peer_role {
            Role::Initiator => b"Initiator",
            Role::Responder => b"Responder",
        };
        // s1: the first of our rs1, rs2 whose ID (as the peer computes it) the peer sent as
        // its rs1ID or rs2ID.
        let mut s1: Option<RetainedSecret> = None;
        let had_secrets = self.cache_entry.rs1.is_some() || self.cache_entry.rs2.is_some();
        for ours in [&self.cache_entry.rs1, &self.cache_entry.rs2]
            .into_iter()
            .flatten()
        {
            let id = mac64(ours.dangerous_bytes(), label);
            if ct_eq(&id, &d.rs1_id) || ct_eq(&id, &d.rs2_id) {
                s1 = Some(ours.clone());
                break;
            }
        }
        self.cache_status = match (&s1, had_secrets) {
            (Some(_), _) => CacheStatus::Matched,
            (None, true) => CacheStatus::Mismatch,
            (None, false) => CacheStatus::NoSecrets,
        };
        let peer_h3 = self
            .peer_hello
            .as_ref()
            .map(|(h, _)| h.h3)
            .unwrap_or_default();
        let mut s2 = None;
        if let Some(aux) = &self.aux {
            if ct_eq(&mac64(&aux.0, &peer_h3), &d.aux_id) {
                self.aux_status = AuxStatus::Matched;
                s2 = Some(aux.0.clone());
            } else if self.config.aux_policy == AuxPolicy::Fatal {
                return Err(ZrtpError::AuxSecretMismatch);
            } else {
                self.aux_status = AuxStatus::Mismatch;
            }
        }
        let s3 = self
            .config
            .pbx_secret
            .as_ref()
            .filter(|pbx| ct_eq(&mac64(&pbx.0, label), &d.pbx_id))
            .map(|pbx| pbx.0.clone());
        let peer_zid = self
            .peer_hello
            .as_ref()
            .map(|(h, _)| h.zid)
            .unwrap_or(Zid([0; 12]));
        let (zidi, zidr) = match peer_role {
            Role::Initiator => (peer_zid, self.config.zid),
            Role::Responder => (self.config.zid, peer_zid),
        };
        self.keys = Some(KeySchedule::derive(
            &dh_result,
            &zidi,
            &zidr,
            transcript,
            s1.as_ref().map(|s| &s.dangerous_bytes()[..]),
            s2.as_deref().map(|v| &v[..]),
            s3.as_deref().map(|v| &v[..]),
        ));
        Ok(())
    }

    fn on_dh_part1(&mut self, d: DhPart<'_>, raw: &[u8], now: Instant) -> Result<(), ZrtpError> {
        match self.state {
            State::CommitSent => {}
            State::WaitConfirm1 | State::WaitConf2Ack | State::Secure
                if self.peer_dh_part.as_ref().is_some_and(|p| p.raw == raw) =>
            {
                return Ok(()); // a repeat; our DHPart2 retransmissions answer it
            }
            _ => return Err(self.unexpected(MessageType::DhPart1)),
        }
        let (peer, peer_raw) = self
            .peer_hello
            .clone()
            .ok_or(ZrtpError::InvalidConfig("no peer Hello"))?;
        // §9: H1 hashes twice to the Hello's H3; the Hello's MAC is keyed by H2.
        let h2 = sha256(&[&d.h1]);
        if !ct_eq(&sha256(&[&h2]), &peer.h3) {
            return Err(ZrtpError::HashChain(MessageType::DhPart1));
        }
        if !ct_eq(&mac64(&h2, wire::mac_input(&peer_raw)), &peer.mac) {
            return Err(ZrtpError::BadMac(MessageType::Hello));
        }
        let commit = self
            .commit
            .as_ref()
            .map(|(_, r)| r.clone())
            .unwrap_or_default();
        let dh_part2 = self.our_dh_part.clone().unwrap_or_default();
        self.agree(&d, Role::Responder, [&peer_raw, &commit, raw, &dh_part2])?;
        self.role = Some(Role::Initiator);
        self.peer_dh_part = Some(PeerDhPart {
            raw: raw.to_vec(),
            h1: d.h1,
            mac: d.mac,
        });
        self.state = State::WaitConfirm1;
        self.send_with_timer(MessageType::DhPart2, dh_part2, T2, now);
        Ok(())
    }

    fn on_dh_part2(&mut self, d: DhPart<'_>, raw: &[u8]) -> Result<(), ZrtpError> {
        match self.state {
            State::WaitDhPart2 => {}
            State::WaitConfirm2 | State::Secure => {
                if self.peer_dh_part.as_ref().is_some_and(|p| p.raw == raw) {
                    // Our Confirm1 was lost: send it again.
                    if self.state == State::WaitConfirm2
                        && let Some(m) = self.our_confirm.clone()
                    {
                        self.send(&m);
                    }
                    return Ok(());
                }
                return Err(ZrtpError::AlteredRepeat(MessageType::DhPart2));
            }
            _ => return Err(self.unexpected(MessageType::DhPart2)),
        }
        let (commit, commit_raw) = self
            .commit
            .clone()
            .ok_or(ZrtpError::InvalidConfig("no Commit"))?;
        // §9: H1 hashes to the Commit's H2; the Commit's MAC is keyed by H1.
        if !ct_eq(&sha256(&[&d.h1]), &commit.h2) {
            return Err(ZrtpError::HashChain(MessageType::DhPart2));
        }
        if !ct_eq(&mac64(&d.h1, wire::mac_input(&commit_raw)), &commit.mac) {
            return Err(ZrtpError::BadMac(MessageType::Commit));
        }
        // §4.4.1.1: hvi commits the initiator to this DHPart2 before it saw ours.
        if !ct_eq(&sha256(&[raw, &self.hello]), &commit.hvi) {
            return Err(ZrtpError::HviMismatch);
        }
        let dh_part1 = self.our_dh_part.clone().unwrap_or_default();
        let hello = self.hello.clone();
        self.agree(&d, Role::Initiator, [&hello, &commit_raw, &dh_part1, raw])?;
        self.peer_dh_part = Some(PeerDhPart {
            raw: raw.to_vec(),
            h1: d.h1,
            mac: d.mac,
        });
        let confirm1 = self.build_confirm(Role::Responder);
        self.send(&confirm1);
        self.our_confirm = Some(confirm1);
        self.state = State::WaitConfirm2;
        Ok(())
    }

    /// Our Confirm: H0, flags, cache expiry, AES1-CFB under zrtpkey, confirm_mac under mackey
    /// of our role (§5.7).
    fn build_confirm(&self, role: Role) -> Vec<u8> {
        let Some(keys) = &self.keys else {
            return Vec::new();
        };
        let (zrtpkey, mackey, ty) = match role {
            Role::Initiator => (&keys.zrtpkeyi, &keys.mackeyi, MessageType::Confirm2),
            Role::Responder => (&keys.zrtpkeyr, &keys.mackeyr, MessageType::Confirm1),
        };
        let plain = ConfirmPlain {
            h0: *self.h[0],
            sig_len: 0,
            enrollment: false,
            sas_verified: self.cache_entry.sas_verified
                && self.cache_status == CacheStatus::Matched,
            allow_clear: false,
            disclosure: false,
            cache_expiration: u32::MAX,
        };
        let mut encrypted = plain.encode();
        let iv = self.config.randomness.bytes::<16>();
        crypto::cfb_encrypt(zrtpkey, &iv, &mut encrypted);
        let confirm = Confirm {
            confirm_mac: mac64(&mackey[..], &encrypted),
            iv,
            encrypted: &encrypted,
        };
        wire::encode_confirm(ty, &confirm)
    }

    /// Checks a peer Confirm: confirm_mac, decryption, then H0 against the peer's DHPart (its
    /// hash image and its MAC, §9).
    fn check_confirm(&mut self, c: &Confirm<'_>, ty: MessageType) -> Result<(), ZrtpError> {
        let keys = self
            .keys
            .as_ref()
            .ok_or(ZrtpError::InvalidConfig("no keys"))?;
        let (zrtpkey, mackey) = match ty {
            MessageType::Confirm1 => (&keys.zrtpkeyr, &keys.mackeyr),
            _ => (&keys.zrtpkeyi, &keys.mackeyi),
        };
        if !ct_eq(&mac64(&mackey[..], c.encrypted), &c.confirm_mac) {
            return Err(ZrtpError::BadConfirmMac(ty));
        }
        let mut plain = Zeroizing::new(c.encrypted.to_vec());
        crypto::cfb_decrypt(zrtpkey, &c.iv, &mut plain);
        let plain = ConfirmPlain::decode(&plain, ty)?;
        let peer = self
            .peer_dh_part
            .as_ref()
            .ok_or(ZrtpError::InvalidConfig("no peer DHPart"))?;
        if !ct_eq(&sha256(&[&plain.h0]), &peer.h1) {
            return Err(ZrtpError::HashChain(ty));
        }
        let dh_ty = if ty == MessageType::Confirm1 {
            MessageType::DhPart1
        } else {
            MessageType::DhPart2
        };
        if !ct_eq(&mac64(&plain.h0, wire::mac_input(&peer.raw)), &peer.mac) {
            return Err(ZrtpError::BadMac(dh_ty));
        }
        self.peer_sas_verified = plain.sas_verified;
        Ok(())
    }

    fn on_confirm1(&mut self, c: Confirm<'_>, raw: &[u8], now: Instant) -> Result<(), ZrtpError> {
        match self.state {
            State::WaitConfirm1 => {}
            State::WaitConf2Ack | State::Secure => {
                if self.peer_confirm.as_deref() == Some(raw) {
                    return Ok(()); // a repeat; our Confirm2 retransmissions answer it
                }
                return Err(ZrtpError::AlteredRepeat(MessageType::Confirm1));
            }
            _ => return Err(self.unexpected(MessageType::Confirm1)),
        }
        self.check_confirm(&c, MessageType::Confirm1)?;
        self.peer_confirm = Some(raw.to_vec());
        let confirm2 = self.build_confirm(Role::Initiator);
        self.our_confirm = Some(confirm2.clone());
        self.state = State::WaitConf2Ack;
        self.send_with_timer(MessageType::Confirm2, confirm2, T2, now);
        Ok(())
    }

    fn on_confirm2(&mut self, c: Confirm<'_>, raw: &[u8]) -> Result<(), ZrtpError> {
        match self.state {
            State::WaitConfirm2 => {}
            State::Secure => {
                // §4.6: a repeated Confirm2 (our Conf2ACK was lost) is answered again; anything
                // else — a Confirm2 replayed from another exchange — is dropped.
                if self.peer_confirm.as_deref() == Some(raw) {
                    self.send(&wire::encode_empty(MessageType::Conf2Ack));
                    return Ok(());
                }
                return Err(ZrtpError::AlteredRepeat(MessageType::Confirm2));
            }
            _ => return Err(self.unexpected(MessageType::Confirm2)),
        }
        self.check_confirm(&c, MessageType::Confirm2)?;
        self.peer_confirm = Some(raw.to_vec());
        self.send(&wire::encode_empty(MessageType::Conf2Ack));
        self.secure_on();
        Ok(())
    }

    /// Hands out the SRTP keys and SAS, and updates the cache (held back on a mismatch).
    fn secure_on(&mut self) {
        let (Some(keys), Some(suite), Some(role), Some((peer, _))) =
            (&self.keys, self.suite, self.role, &self.peer_hello)
        else {
            return;
        };
        let initiator = SrtpMaster::new(&keys.srtpkeyi, &keys.srtpsalti);
        let responder = SrtpMaster::new(&keys.srtpkeyr, &keys.srtpsaltr);
        let (local, remote) = match role {
            Role::Initiator => (initiator, responder),
            Role::Responder => (responder, initiator),
        };
        let value = keys.sas_value();
        let entry = CacheEntry {
            rs1: Some(RetainedSecret::new(*keys.new_rs1)),
            rs2: self.cache_entry.rs1.clone(),
            sas_verified: self.cache_entry.sas_verified
                && self.cache_status == CacheStatus::Matched,
        };
        if self.cache_status == CacheStatus::Mismatch {
            self.pending_cache = Some(entry);
        } else {
            self.config.cache.store(&peer.zid, entry);
        }
        let event = SecureOn {
            role,
            peer_zid: peer.zid,
            suite,
            sas: Sas {
                kind: suite.sas,
                text: crypto::render_sas(suite.sas, value),
                value,
            },
            srtp: SrtpKeys {
                profile: suite.auth_tag.srtp_profile(),
                local,
                remote,
            },
            cache: self.cache_status,
            aux: self.aux_status,
            peer_sas_verified: self.peer_sas_verified,
        };
        self.state = State::Secure;
        // The DH secret and the key schedule (s0 and all keys) have done their work.
        self.dh = None;
        self.keys = None;
        self.events.push_back(Event::SecureOn(Box::new(event)));
    }

    fn unexpected(&self, got: MessageType) -> ZrtpError {
        ZrtpError::Unexpected {
            got,
            state: self.state.name(),
        }
    }

    /// Makes `err` sticky: tells the peer with an Error message where §5.9 has a code (repeated
    /// on T2 until ErrorACK), and reports [`Event::Failed`].
    fn fail(&mut self, err: ZrtpError, now: Instant) {
        if self.error.is_some() {
            return;
        }
        self.state = State::Failed;
        self.retransmit = None;
        self.keys = None;
        self.dh = None;
        if let Some(code) = err.wire_code() {
            self.send_with_timer(MessageType::Error, wire::encode_error(code), T2, now);
        }
        self.error = Some(err.clone());
        self.events.push_back(Event::Failed(err));
    }

    /// Frames a message with the next sequence number and queues it.
    fn send(&mut self, message: &[u8]) {
        let packet = wire::frame(self.seq, self.config.ssrc, message);
        self.seq = self.seq.wrapping_add(1);
        self.outbox.push_back(packet);
    }

    fn send_with_timer(&mut self, ty: MessageType, message: Vec<u8>, timer: Timer, now: Instant) {
        self.send(&message);
        self.retransmit = Some(Retransmit {
            ty,
            message,
            timer,
            interval: timer.initial,
            at: now + timer.initial,
            count: 0,
        });
    }
}

/// Failures that end the exchange (the rest drop one packet).
fn is_fatal(e: &ZrtpError) -> bool {
    !matches!(
        e,
        ZrtpError::Decode(_)
            | ZrtpError::Unexpected { .. }
            | ZrtpError::Stale { .. }
            | ZrtpError::AlteredRepeat(_)
            | ZrtpError::GoClearRefused
    )
}

#[cfg(test)]
#[path = "kdf_check.rs"]
mod kdf_check;

#[cfg(test)]
mod negotiation {
    use std::sync::Arc;

    use super::*;
    use crate::{AuthTag, InMemoryCache, SasType};

    fn peer_hello(kas: &[&[u8; 4]], tags: &[&[u8; 4]], sas: &[&[u8; 4]]) -> Hello {
        let ids = |l: &[&[u8; 4]]| l.iter().map(|a| AlgoId(**a)).collect();
        Hello {
            version: VERSION,
            client_id: *b"BZRTPv1.1\0\0\0\0\0\0\0",
            h3: [0; 32],
            zid: Zid([9; 12]),
            signature_capable: false,
            mitm: false,
            passive: false,
            hashes: ids(&[b"S384", b"S256"]),
            ciphers: ids(&[b"AES3", b"AES1"]),
            auth_tags: ids(tags),
            key_agreements: ids(kas),
            sas_types: ids(sas),
            mac: [0; 8],
        }
    }

    fn engine() -> Zrtp {
        let cfg = ZrtpConfig::new(Zid([1; 12]), 1, Arc::new(InMemoryCache::new()));
        Zrtp::new(cfg, Role::Initiator, Instant::now()).unwrap()
    }

    #[test]
    fn our_preference_among_what_a_linphone_like_peer_offers() {
        let z = engine();
        let hello = peer_hello(
            &[b"X448", b"DH3k", b"EC25", b"X255"],
            &[b"HS32"],
            &[b"B256", b"B32 "],
        );
        let suite = z.negotiate(&hello).unwrap();
        assert_eq!(suite.key_agreement, KeyAgreement::X255);
        assert_eq!(suite.auth_tag, AuthTag::Hs32);
        assert_eq!(suite.sas, SasType::B32);
    }

    #[test]
    fn debian_bzrtp_offers_dh3k_alone_which_a_config_must_list() {
        // libbzrtp 5.1 as Debian builds it (no X25519 in its bctoolbox), seen on the wire.
        let hello = peer_hello(&[b"DH3k", b"Mult"], &[b"HS80", b"HS32"], &[b"B32 "]);
        assert_eq!(
            engine().negotiate(&hello),
            Err(ZrtpError::NoCommonAlgorithm("key agreement"))
        );
        let cfg = ZrtpConfig::new(Zid([1; 12]), 1, Arc::new(InMemoryCache::new()))
            .with_key_agreements(&[KeyAgreement::X255, KeyAgreement::Ec25, KeyAgreement::Dh3k]);
        let z = Zrtp::new(cfg, Role::Initiator, Instant::now()).unwrap();
        assert_eq!(
            z.negotiate(&hello).unwrap().key_agreement,
            KeyAgreement::Dh3k
        );
    }

    #[test]
    fn empty_lists_mean_the_mandatory_set_and_dh3k_alone_is_refused() {
        let z = engine();
        let suite = z.negotiate(&peer_hello(&[b"X255"], &[], &[])).unwrap();
        assert_eq!((suite.auth_tag, suite.sas), (AuthTag::Hs80, SasType::B32));
        assert_eq!(
            z.negotiate(&peer_hello(&[], &[], &[])),
            Err(ZrtpError::NoCommonAlgorithm("key agreement"))
        );
        let mut only_s384 = peer_hello(&[b"X255"], &[], &[]);
        only_s384.hashes = vec![AlgoId(*b"S384")];
        assert_eq!(
            z.negotiate(&only_s384),
            Err(ZrtpError::NoCommonAlgorithm("hash"))
        );
    }
}
