//! The phone's SIP user agent core (RFC 3261 UAC and UAS), sans-IO.
//!
//! It speaks to its outbound proxy over one connection (TLS-PSK to sipd, or TCP to a Kamailio) or
//! over UDP: bytes in with [`UserAgent::handle_input`], and out, with events and the next
//! deadline, from [`UserAgent::poll_output`] (the `chaincall_io::Output` every core yields; the
//! destination is `()`, the proxy); time with [`UserAgent::handle_timeout`].
//!
//! Every request we send runs in one of `chaincall_sip`'s RFC 3261 client transactions, every
//! request we receive in a server transaction ([`chaincall_sip::transaction`]), so the same code
//! serves both kinds of transport. Over a reliable one nothing is retransmitted (§17.1.1.2,
//! §17.1.2.2) and the only timers are B/F (64·T1, 32 s): a request without a final answer by then
//! fails. Over UDP (transport `UDP`) an INVITE is retransmitted on Timer A (T1 = 500 ms,
//! doubling), other requests on Timer E (doubling up to T2 = 4 s); a retransmitted request we
//! received gets our last response again, and a non-2xx final answer to an INVITE is re-sent on
//! Timer G until its ACK; our 2xx to an INVITE is re-sent (T1 doubling up to T2) until the ACK
//! comes, for up to 64·T1 (§13.3.1.4); the ACK for a non-2xx is the transaction's, hop by hop.
//!
//! Call order per step: call a command or `handle_input`/`handle_timeout`, then drain
//! `poll_output` until `Timeout`.
//!
//! Digest authentication (RFC 7616/8760): a 401/407 to REGISTER or INVITE is answered once with
//! credentials (a second challenge for the same request means they are wrong); an INVITE's
//! challenge is ACKed first (§17.1.1.3).

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use chaincall_identity::Randomness;
use chaincall_io::Output;
use chaincall_sip::dialog::Dialog;
use chaincall_sip::digest::Challenge;
use chaincall_sip::message::{Message, MessageBuf, response_to};
use chaincall_sip::transaction::{
    ClientState, ClientTransaction, ServerKey, ServerState, ServerTransaction, TimerConfig,
    TxEvent, TxOutput,
};
use chaincall_sip::{HeaderName, Method};
use zeroize::Zeroizing;

/// Timer B / F on a reliable transport: 64·T1 (RFC 3261 §17.1.1.2).
pub const TRANSACTION_TIMEOUT: Duration = Duration::from_secs(32);

/// How long an incoming call may ring unanswered before we end it with 408 Request Timeout:
/// a proxy's Timer C (RFC 3261 §16.6 step 11, "greater than 3 minutes") would cancel it by then,
/// and a caller that vanished without a CANCEL must not leave the phone ringing for ever.
pub const RING_TIMEOUT: Duration = Duration::from_secs(181);

/// Who the user agent is and how it reaches its proxy.
#[derive(Clone)]
pub struct UaConfig {
    /// Our user part: the E.164 number (`+15551230001`).
    pub user: String,
    /// The SIP domain (registrar and realm), e.g. `sip.chaincall.test`.
    pub domain: String,
    /// The digest password (from the wallet server's provisioning). Secret.
    pub password: Zeroizing<String>,
    /// Our end of the signalling connection, for Via and Contact.
    pub local: SocketAddr,
    /// Transport token for Via (`TLS`, `TCP`).
    pub transport: &'static str,
    /// The User-Agent header.
    pub user_agent: String,
    /// Where tags, branches and Call-IDs come from (the OS CSPRNG in production; seeded in tests,
    /// so a run's messages replay byte for byte).
    pub randomness: Randomness,
}

impl std::fmt::Debug for UaConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UaConfig")
            .field("user", &self.user)
            .field("domain", &self.domain)
            .field("local", &self.local)
            .field("transport", &self.transport)
            .finish_non_exhaustive()
    }
}

/// What [`UserAgent::poll_output`] yields.
pub type UaOutput = Output<UaEvent, ()>;

/// What happened, for the shell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UaEvent {
    /// REGISTER succeeded; the binding lasts `expires` seconds.
    Registered {
        /// Granted lifetime.
        expires: u32,
    },
    /// The binding was removed (REGISTER with Expires: 0 succeeded).
    Unregistered,
    /// REGISTER failed.
    RegistrationFailed {
        /// Status (0: timeout).
        code: u16,
        /// Reason.
        reason: String,
    },
    /// An INVITE arrived. Answer it with [`UserAgent::answer`].
    IncomingCall {
        /// The call's Call-ID (its handle).
        call_id: String,
        /// The From URI as received, domain and parameters included (claimed; MIKEY proves
        /// the number, nothing proves the domain). Empty when the From does not parse.
        from_uri: String,
        /// The From display name, quoted-pair escapes resolved (claimed, never proven).
        from_display: Option<String>,
        /// The SDP offer.
        sdp: Vec<u8>,
        /// The first `Identity` header's value (RFC 8224), unchecked: the caller's PASSporT.
        identity: Option<String>,
    },
    /// Our INVITE got a provisional answer.
    Ringing {
        /// The call.
        call_id: String,
        /// 180, 183…
        code: u16,
    },
    /// Our INVITE was answered (the ACK is already queued).
    Answered {
        /// The call.
        call_id: String,
        /// The SDP answer.
        sdp: Vec<u8>,
    },
    /// Our INVITE was refused or timed out.
    CallFailed {
        /// The call.
        call_id: String,
        /// Status (0: timeout).
        code: u16,
        /// Reason phrase.
        reason: String,
    },
    /// The caller's ACK for our 200 arrived: the call is up on both sides.
    Confirmed {
        /// The call.
        call_id: String,
    },
    /// Our 2xx to the caller's INVITE was re-sent for 64·T1 (32 s) and no ACK came (RFC 3261
    /// §13.3.1.4): the dialog stands but the session SHOULD end, with a BYE
    /// ([`UserAgent::hangup`]).
    NoAck {
        /// The call.
        call_id: String,
    },
    /// The call ended.
    Ended {
        /// The call.
        call_id: String,
        /// The peer sent the BYE (or CANCEL).
        by_peer: bool,
    },
    /// An incoming call rang for [`RING_TIMEOUT`] without a final answer: we answered it 408.
    RingExpired {
        /// The call.
        call_id: String,
    },
    /// The peer sent a re-INVITE with a new offer (hold, resume…) in a call that is up. Answer
    /// it with [`UserAgent::answer_reinvite`].
    ReInvite {
        /// The call.
        call_id: String,
        /// The new SDP offer.
        sdp: Vec<u8>,
    },
    /// Our re-INVITE ([`UserAgent::reinvite`]) got its final answer (the ACK of a 2xx is
    /// already queued).
    ReInviteAnswered {
        /// The call.
        call_id: String,
        /// Status (0: no answer in time).
        code: u16,
        /// The SDP answer of a 2xx.
        sdp: Vec<u8>,
    },
}

/// Moves one transaction's output into `out`. Returns whether it timed out (Timer B, F or H)
/// or ended, and its next deadline.
fn drain(
    mut poll: impl FnMut() -> TxOutput,
    out: &mut VecDeque<Vec<u8>>,
) -> (bool, bool, Option<Instant>) {
    let (mut timed_out, mut ended) = (false, false);
    loop {
        match poll() {
            Output::Transmit(t) => out.push_back(t.contents),
            Output::Event(TxEvent::Timeout) => timed_out = true,
            Output::Event(TxEvent::Terminated) => ended = true,
            Output::Timeout(at) => return (timed_out, ended, at),
        }
    }
}

/// A request of ours waiting for its final answer, in its client transaction.
#[derive(Debug)]
struct Pending {
    request: MessageBuf,
    tx: ClientTransaction,
    /// Timer B/F ran out.
    timed_out: bool,
    next: Option<Instant>,
    /// An INVITE fails 64·T1 after it left even once the callee rings (the transaction stops
    /// Timer B on a provisional answer, §17.1.1.2; a phone must not ring for ever).
    give_up: Option<Instant>,
    authed: bool,
}

impl Pending {
    /// Sends `request` in a new client transaction (its first transmission goes to `out`).
    fn start(
        request: MessageBuf,
        reliable: bool,
        now: Instant,
        out: &mut VecDeque<Vec<u8>>,
    ) -> Pending {
        // Our own requests always parse and are never an ACK, the two things `new` refuses.
        let tx = ClientTransaction::new(&request, reliable, TimerConfig::default(), now)
            .expect("a request of ours is a valid transaction request");
        let invite = matches!(
            &request.start,
            chaincall_sip::message::OwnedStart::Request { method, .. } if method == "INVITE"
        );
        let mut p = Pending {
            request,
            tx,
            timed_out: false,
            next: None,
            give_up: invite.then(|| now + TRANSACTION_TIMEOUT),
            authed: false,
        };
        p.pump(out);
        p
    }

    /// The request changed (credentials added, new branch and CSeq): a new transaction for it.
    /// Returns the old transaction's state (an INVITE's keeps ACKing the challenge).
    fn restart(&mut self, reliable: bool, now: Instant, out: &mut VecDeque<Vec<u8>>) -> Pending {
        let authed = self.authed;
        let old = std::mem::replace(
            self,
            Pending::start(self.request.clone(), reliable, now, out),
        );
        self.authed = authed;
        old
    }

    fn pump(&mut self, out: &mut VecDeque<Vec<u8>>) {
        let (timed_out, _, next) = drain(|| self.tx.poll_output(), out);
        self.timed_out |= timed_out;
        self.next = next;
    }

    /// Whether the request failed by `now`: no final answer in time.
    fn expired(&self, now: Instant) -> bool {
        self.timed_out || self.give_up.is_some_and(|at| at <= now)
    }

    /// When this request next needs [`UserAgent::handle_timeout`].
    fn deadline(&self) -> Option<Instant> {
        self.next.into_iter().chain(self.give_up).min()
    }

    /// Whether `resp` answers this transaction (its top Via branch is ours).
    fn matches(&self, resp: &Message<'_>) -> bool {
        branch_of(resp).is_some() && branch_of(resp) == self.branch()
    }

    fn branch(&self) -> Option<String> {
        Message::parse(&self.request.to_bytes())
            .ok()
            .and_then(|m| branch_of(&m))
    }
}

/// The key of a received request's server transaction.
fn server_key(req: &Message<'_>) -> Option<(ServerKey, String)> {
    Some((ServerKey::of(req)?, req.call_id().ok()?.to_owned()))
}

/// The top Via's branch of a message.
fn branch_of(m: &Message<'_>) -> Option<String> {
    m.top_via().ok()?.branch().map(str::to_owned)
}

/// A client transaction whose user is done with it (a cancelled INVITE, a CANCEL) that still
/// answers the network: it ACKs a late non-2xx final answer, retransmits until answered.
#[derive(Debug)]
struct Lingering {
    branch: String,
    method: String,
    tx: ClientTransaction,
    next: Option<Instant>,
    /// Forgotten by then whatever its state (an INVITE that got a 1xx has no timer left, and
    /// its 487 may never come).
    until: Instant,
    /// The CANCEL of this INVITE, held until a provisional response comes (RFC 3261 §9.1: a
    /// CANCEL must not be sent before one).
    cancel_on_provisional: Option<MessageBuf>,
    /// This INVITE, when we cancelled it: a 2xx that crossed the CANCEL made a dialog after
    /// all, which is ACKed and ended with a BYE (§15).
    cancelled: Option<MessageBuf>,
}

/// A request we received, in its server transaction (it re-sends our last response to a
/// retransmission).
#[derive(Debug)]
struct Served {
    tx: ServerTransaction,
    next: Option<Instant>,
}

/// Our 2xx to an INVITE over UDP, re-sent until the caller's ACK (RFC 3261 §13.3.1.4).
#[derive(Debug, Clone)]
struct OkResend {
    wire: Vec<u8>,
    interval: Duration,
    next: Instant,
    give_up: Instant,
}

#[derive(Debug)]
enum CallState {
    /// We sent the INVITE.
    Calling { invite: Pending },
    /// We received an INVITE and have not answered it finally; `until`: when it is given up
    /// ([`RING_TIMEOUT`]).
    Incoming {
        invite: Vec<u8>,
        local_tag: String,
        until: Instant,
    },
    /// A 2xx went out or came in. `local_sdp` is our current session description, re-sent when
    /// the peer refreshes the session with a re-INVITE. `ack`: the ACK we sent for their 2xx,
    /// sent again when the 2xx is retransmitted; `resend`: our 2xx, until their ACK. `update`:
    /// our re-INVITE waiting for its final answer; `offer`: theirs, waiting for ours.
    Up {
        dialog: Dialog,
        local_sdp: Option<String>,
        ack: Option<Vec<u8>>,
        resend: Option<OkResend>,
        update: Option<Box<Pending>>,
        offer: Option<Vec<u8>>,
    },
    /// We sent a BYE.
    Closing { bye: Pending },
}

/// The user agent: one registration and any number of calls over one connection.
#[derive(Debug)]
pub struct UserAgent {
    cfg: UaConfig,
    reg_call_id: String,
    reg_cseq: u32,
    reg_tag: String,
    register: Option<(Pending, u32)>,
    calls: HashMap<String, CallState>,
    /// Requests received, by transaction (§17.2.3) and Call-ID: a retransmission always has
    /// the same Call-ID, and a peer reusing a branch across calls still gets two transactions.
    servers: HashMap<(ServerKey, String), Served>,
    lingering: Vec<Lingering>,
    /// The transport is reliable (a stream): nothing is retransmitted.
    reliable: bool,
    /// The time of the latest input: [`UserAgent::answer`] starts its timers from it.
    clock: Instant,
    out: VecDeque<Vec<u8>>,
    events: VecDeque<UaEvent>,
    nc: u32,
}

/// `n` random bytes in hex: a tag, branch or Call-ID part (RFC 3261 §19.3: globally unique and
/// unguessable).
fn token(randomness: &Randomness, n: usize) -> String {
    let mut b = vec![0u8; n];
    randomness.fill(&mut b);
    hex::encode(b)
}

fn contact_of(cfg: &UaConfig) -> String {
    format!(
        "<sip:{}@{};transport={}>",
        cfg.user,
        cfg.local,
        cfg.transport.to_ascii_lowercase()
    )
}

fn reason_of(m: &Message<'_>) -> String {
    match m.start_line() {
        chaincall_sip::message::StartLine::Response { reason, .. } => (*reason).to_owned(),
        _ => String::new(),
    }
}

impl UserAgent {
    /// A user agent that has sent nothing yet; over UDP when `cfg.transport` is `UDP`.
    pub fn new(cfg: UaConfig) -> Self {
        Self {
            reg_call_id: format!("{}@{}", token(&cfg.randomness, 12), cfg.local.ip()),
            reg_tag: token(&cfg.randomness, 6),
            reliable: !cfg.transport.eq_ignore_ascii_case("UDP"),
            cfg,
            reg_cseq: 0,
            register: None,
            calls: HashMap::new(),
            servers: HashMap::new(),
            lingering: Vec::new(),
            clock: Instant::now(),
            out: VecDeque::new(),
            events: VecDeque::new(),
            nc: 0,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &UaConfig {
        &self.cfg
    }

    /// Our end of a new connection (after a reconnect): Via and Contact name it from now on.
    pub fn set_local(&mut self, local: SocketAddr) {
        self.cfg.local = local;
    }

    fn aor(&self) -> String {
        format!("<sip:{}@{}>", self.cfg.user, self.cfg.domain)
    }

    fn contact(&self) -> String {
        contact_of(&self.cfg)
    }

    fn via(&self) -> String {
        format!(
            "SIP/2.0/{} {};branch=z9hG4bK{};rport",
            self.cfg.transport,
            self.cfg.local,
            token(&self.cfg.randomness, 8)
        )
    }

    fn send(&mut self, m: &MessageBuf) {
        self.out.push_back(m.to_bytes());
    }

    /// Sends REGISTER for our AOR with this lifetime (0 unregisters).
    pub fn register(&mut self, expires: u32, now: Instant) {
        self.reg_cseq += 1;
        let uri = format!("sip:{}", self.cfg.domain);
        let mut m = MessageBuf::request(Method::Register, &uri);
        m.push("Via", self.via());
        m.push("Max-Forwards", "70");
        m.push("From", format!("{};tag={}", self.aor(), self.reg_tag));
        m.push("To", self.aor());
        m.push("Call-ID", self.reg_call_id.clone());
        m.push("CSeq", format!("{} REGISTER", self.reg_cseq));
        m.push("Contact", self.contact());
        m.push("Expires", expires.to_string());
        m.push("User-Agent", self.cfg.user_agent.clone());
        m.push("Content-Length", "0");
        self.clock = now;
        self.register = Some((
            Pending::start(m, self.reliable, now, &mut self.out),
            expires,
        ));
    }

    /// Calls `user` (an E.164 number) at our domain with this SDP offer; returns the Call-ID.
    pub fn invite(&mut self, user: &str, sdp: &str, now: Instant) -> String {
        let call_id = self.new_call_id();
        self.invite_as(call_id.clone(), user, sdp, None, now);
        call_id
    }

    /// A fresh Call-ID (RFC 3261 §8.1.1.4: globally unique), for a call whose INVITE leaves
    /// later ([`UserAgent::invite_as`]): the phone core names a call before its key look-up.
    pub fn new_call_id(&self) -> String {
        format!(
            "{}@{}",
            token(&self.cfg.randomness, 12),
            self.cfg.local.ip()
        )
    }

    /// [`UserAgent::invite`] under a Call-ID from [`UserAgent::new_call_id`], carrying an
    /// `Identity` header (RFC 8224) when one is given. A retry after a 401/407 challenge resends
    /// the same header: its PASSporT never reached the callee (the proxy absorbed the challenged
    /// request), so the callee's replay cache sees it once.
    pub fn invite_as(
        &mut self,
        call_id: String,
        user: &str,
        sdp: &str,
        identity: Option<&str>,
        now: Instant,
    ) {
        let uri = format!("sip:{user}@{}", self.cfg.domain);
        let mut m = MessageBuf::request(Method::Invite, &uri);
        m.push("Via", self.via());
        m.push("Max-Forwards", "70");
        m.push(
            "From",
            format!("{};tag={}", self.aor(), token(&self.cfg.randomness, 6)),
        );
        m.push("To", format!("<{uri}>"));
        m.push("Call-ID", call_id.clone());
        m.push("CSeq", "1 INVITE");
        m.push("Contact", self.contact());
        m.push("User-Agent", self.cfg.user_agent.clone());
        if let Some(identity) = identity {
            m.push("Identity", identity);
        }
        m.set_body("application/sdp", sdp.as_bytes().to_vec());
        self.clock = now;
        let invite = Pending::start(m, self.reliable, now, &mut self.out);
        self.calls
            .insert(call_id.clone(), CallState::Calling { invite });
    }

    /// Answers an incoming call: 180 Ringing, or a final status; a 2xx carries `sdp`.
    pub fn answer(&mut self, call_id: &str, code: u16, reason: &str, sdp: Option<&str>) {
        let Some(CallState::Incoming {
            invite, local_tag, ..
        }) = self.calls.get(call_id)
        else {
            return;
        };
        let (invite, local_tag) = (invite.clone(), local_tag.clone());
        let Ok(req) = Message::parse(&invite) else {
            return;
        };
        let mut r = response_to(&req, code, reason, Some(&local_tag));
        if (101..300).contains(&code) {
            r.push("Contact", self.contact());
        }
        match sdp {
            Some(s) => {
                r.set_body("application/sdp", s.as_bytes().to_vec());
            }
            None => {
                r.push("Content-Length", "0");
            }
        }
        let now = self.clock;
        self.respond(&req, &r, now);
        if (200..300).contains(&code) {
            // Over UDP the 2xx is ours to retransmit until the ACK (§13.3.1.4); the transaction
            // is done with it (RFC 6026 Accepted).
            let t1 = TimerConfig::default().t1;
            let resend = (!self.reliable).then(|| OkResend {
                wire: r.to_bytes(),
                interval: t1,
                next: now + t1,
                give_up: now + 64 * t1,
            });
            match Dialog::uas(&req, &local_tag) {
                Ok(dialog) => {
                    self.calls.insert(
                        call_id.to_owned(),
                        CallState::Up {
                            dialog,
                            local_sdp: sdp.map(str::to_owned),
                            ack: None,
                            resend,
                            update: None,
                            offer: None,
                        },
                    );
                }
                Err(_) => {
                    self.calls.remove(call_id);
                }
            }
        } else if code >= 300 {
            self.calls.remove(call_id);
        }
    }

    /// Ends a call: BYE for an established call, CANCEL for one of ours still ringing, 486 for
    /// one of theirs.
    pub fn hangup(&mut self, call_id: &str, now: Instant) {
        self.end_call(call_id, None, now);
    }

    /// [`UserAgent::hangup`] with a `Reason` header (RFC 3326) in the BYE, e.g.
    /// `SIP ;cause=488 ;text="…"`: why we end an established call.
    pub fn hangup_because(&mut self, call_id: &str, reason: &str, now: Instant) {
        self.end_call(call_id, Some(reason), now);
    }

    fn end_call(&mut self, call_id: &str, reason: Option<&str>, now: Instant) {
        self.clock = now;
        match self.calls.remove(call_id) {
            Some(CallState::Up { mut dialog, .. }) => {
                let mut bye = dialog.request(Method::Bye, &self.via(), None);
                if let Some(reason) = reason {
                    bye.push("Reason", reason);
                }
                bye.push("Content-Length", "0");
                let bye = Pending::start(bye, self.reliable, now, &mut self.out);
                self.calls
                    .insert(call_id.to_owned(), CallState::Closing { bye });
            }
            Some(CallState::Calling { invite }) => {
                self.cancel(invite, now);
                self.events.push_back(UaEvent::Ended {
                    call_id: call_id.to_owned(),
                    by_peer: false,
                });
            }
            Some(state @ CallState::Incoming { .. }) => {
                self.calls.insert(call_id.to_owned(), state);
                self.answer(call_id, 486, "Busy Here", None);
            }
            Some(state @ CallState::Closing { .. }) => {
                self.calls.insert(call_id.to_owned(), state);
            }
            None => {}
        }
    }

    /// Cancels our INVITE (RFC 3261 §9.1): the CANCEL in a transaction of its own, the INVITE's
    /// kept to ACK the 487 that ends it.
    /// Before any provisional response the CANCEL waits for one (§9.1); a final response
    /// instead ends the INVITE with nothing to cancel.
    fn cancel(&mut self, invite: Pending, now: Instant) {
        let wire = invite.request.to_bytes();
        let cancel = Message::parse(&wire).ok().map(|req| {
            let mut c = chaincall_sip::transaction::build_cancel(&req);
            c.push("Content-Length", "0");
            c
        });
        let provisional_seen = invite.tx.state() != ClientState::Calling;
        let request = invite.request.clone();
        let held = match cancel {
            Some(c) if provisional_seen => {
                let cancel = Pending::start(c, self.reliable, now, &mut self.out);
                self.linger(cancel, "CANCEL");
                None
            }
            held => held,
        };
        if let Some(l) = self.linger(invite, "INVITE") {
            l.cancel_on_provisional = held;
            l.cancelled = Some(request);
        }
    }

    /// Forgets a call without a word to the peer: for a call whose connection is gone, so no
    /// BYE or CANCEL could reach anyone.
    pub fn abandon(&mut self, call_id: &str) {
        self.calls.remove(call_id);
    }

    /// Sends a re-INVITE with `sdp` (our new description: hold, resume) in a call that is up;
    /// [`UaEvent::ReInviteAnswered`] follows. False, and nothing sent, when the call is not up
    /// or a re-INVITE is already in progress either way (RFC 3261 §14.1).
    pub fn reinvite(&mut self, call_id: &str, sdp: &str, now: Instant) -> bool {
        self.clock = now;
        let via = self.via();
        let contact = self.contact();
        let Some(CallState::Up {
            dialog,
            update: update @ None,
            offer: None,
            ..
        }) = self.calls.get_mut(call_id)
        else {
            return false;
        };
        let mut m = dialog.request(Method::Invite, &via, None);
        m.push("Contact", contact);
        m.push("User-Agent", self.cfg.user_agent.clone());
        m.set_body("application/sdp", sdp.as_bytes().to_vec());
        *update = Some(Box::new(Pending::start(
            m,
            self.reliable,
            now,
            &mut self.out,
        )));
        true
    }

    /// Answers the peer's re-INVITE ([`UaEvent::ReInvite`]): 200 with `sdp` (which becomes our
    /// current description), or a refusal (488 keeps the session as it was, RFC 3261 §14.2).
    pub fn answer_reinvite(&mut self, call_id: &str, code: u16, reason: &str, sdp: Option<&str>) {
        let contact = self.contact();
        let Some(CallState::Up {
            local_sdp, offer, ..
        }) = self.calls.get_mut(call_id)
        else {
            return;
        };
        let Some(wire) = offer.take() else {
            return;
        };
        let Ok(req) = Message::parse(&wire) else {
            return;
        };
        let mut r = response_to(&req, code, reason, None);
        match sdp.filter(|_| (200..300).contains(&code)) {
            Some(sdp) => {
                r.push("Contact", contact);
                r.set_body("application/sdp", sdp.as_bytes().to_vec());
                *local_sdp = Some(sdp.to_owned());
            }
            None => {
                r.push("Content-Length", "0");
            }
        }
        let now = self.clock;
        self.respond(&req, &r, now);
    }

    /// Our current session description in a call that is up (what a re-INVITE of ours starts
    /// from).
    pub fn local_sdp(&self, call_id: &str) -> Option<&str> {
        match self.calls.get(call_id) {
            Some(CallState::Up { local_sdp, .. }) => local_sdp.as_deref(),
            _ => None,
        }
    }

    /// Whether a call is established.
    pub fn is_up(&self, call_id: &str) -> bool {
        matches!(self.calls.get(call_id), Some(CallState::Up { .. }))
    }

    /// Feeds one complete SIP message from the connection. Malformed input is an error and changes
    /// nothing.
    pub fn handle_input(
        &mut self,
        bytes: &[u8],
        now: Instant,
    ) -> Result<(), chaincall_sip::ParseError> {
        let msg = Message::parse(bytes)?;
        self.clock = now;
        if msg.is_request() {
            self.handle_request(&msg, bytes, now);
        } else {
            self.handle_response(&msg, now);
        }
        Ok(())
    }

    /// A 2xx to an INVITE we had cancelled (the callee answered as we hung up): ACK it, so the
    /// callee's phone stops re-sending it, and end the dialog it made with a BYE.
    fn end_late_answer(&mut self, invite: &MessageBuf, resp: &Message<'_>, now: Instant) {
        let Ok(mut dialog) = Dialog::uac(invite, resp) else {
            return;
        };
        let seq = resp.cseq().map(|c| c.seq).unwrap_or(1);
        let mut ack = dialog.request(Method::Ack, &self.via(), Some(seq));
        ack.push("Content-Length", "0");
        self.out.push_back(ack.to_bytes());
        let mut bye = dialog.request(Method::Bye, &self.via(), None);
        bye.push("Content-Length", "0");
        let bye = Pending::start(bye, self.reliable, now, &mut self.out);
        self.linger(bye, "BYE");
    }

    /// Keeps a transaction its user is done with until it ends.
    /// Returns it as kept (`None`: a request without a branch, whose answers nothing could match).
    fn linger(&mut self, p: Pending, method: &str) -> Option<&mut Lingering> {
        let branch = p.branch()?;
        self.lingering.push(Lingering {
            branch,
            method: method.to_owned(),
            next: p.next,
            tx: p.tx,
            until: self.clock + TRANSACTION_TIMEOUT,
            cancel_on_provisional: None,
            cancelled: None,
        });
        self.lingering.last_mut()
    }

    /// Sends `resp` to `req` through its server transaction (which keeps it for retransmitted
    /// requests and, for a non-2xx to an INVITE over UDP, re-sends it until the ACK).
    fn respond(&mut self, req: &Message<'_>, resp: &MessageBuf, now: Instant) {
        let key = server_key(req);
        let Some((key, s)) = key.and_then(|k| self.servers.get_mut(&k).map(|s| (k, s))) else {
            // A request without a usable Via has no transaction: answer it once.
            self.send(resp);
            return;
        };
        if s.tx.send_response(resp, now).is_ok() {
            let (_, _, next) = drain(|| s.tx.poll_output(), &mut self.out);
            s.next = next;
        }
        // A stream delivers no retransmissions (§17.2.1, §17.2.2: Timers I and J are zero
        // there): once answered, the same request again is a new one (and gets its own answer).
        if self.reliable && s.tx.is_answered() {
            self.servers.remove(&key);
        }
    }

    fn handle_request(&mut self, req: &Message<'_>, wire: &[u8], now: Instant) {
        let Ok(call_id) = req.call_id().map(str::to_owned) else {
            return;
        };
        // A retransmission (or the ACK of a non-2xx) goes to its transaction, which re-sends
        // our last answer; only new requests reach the dialog layer. The ACK of a 2xx has a
        // branch of its own (§17.1.1.3) and is the dialog's.
        if let Some(key) = server_key(req) {
            if let Some(s) = self.servers.get_mut(&key) {
                s.tx.handle_request(req, now);
                let (_, _, next) = drain(|| s.tx.poll_output(), &mut self.out);
                s.next = next;
                return;
            }
            if req.method() != Some(Method::Ack) {
                let mut tx =
                    ServerTransaction::new(req, self.reliable, TimerConfig::default(), now);
                let mut trying = VecDeque::new();
                let (_, _, next) = drain(|| tx.poll_output(), &mut trying);
                // A re-INVITE is answered at once: no 100 Trying for it (§17.2.1 allows that).
                let reinvite = req.method() == Some(Method::Invite)
                    && matches!(self.calls.get(&call_id), Some(CallState::Up { .. }));
                if !reinvite {
                    self.out.extend(trying);
                }
                self.servers.insert(key, Served { tx, next });
            }
        }
        match req.method() {
            Some(Method::Invite) => {
                let contact = contact_of(&self.cfg);
                if let Some(CallState::Up {
                    dialog,
                    local_sdp,
                    update,
                    offer,
                    ..
                }) = self.calls.get_mut(&call_id)
                {
                    // A re-INVITE (RFC 3261 §14.2): an out-of-order CSeq gets 500, one crossing
                    // ours 491 (§14.2). With an offer it is the core's to answer (hold, resume,
                    // and refusing a downgrade: [`UserAgent::answer_reinvite`]); without one (a
                    // session refresh) it gets our current description at once.
                    let code = match dialog.handle_request(req) {
                        Ok(()) if update.is_some() || offer.is_some() => 491,
                        Ok(()) => 200,
                        Err(_) => 500,
                    };
                    if code == 200 && !req.body().is_empty() {
                        *offer = Some(wire.to_vec());
                        self.events.push_back(UaEvent::ReInvite {
                            call_id,
                            sdp: req.body().to_vec(),
                        });
                        return;
                    }
                    let phrase = match code {
                        200 => "OK",
                        491 => "Request Pending",
                        _ => "Server Internal Error",
                    };
                    let mut r = response_to(req, code, phrase, None);
                    if code == 200 {
                        r.push("Contact", contact);
                        if let Some(sdp) = local_sdp.clone() {
                            r.set_body("application/sdp", sdp.into_bytes());
                        }
                    }
                    self.respond(req, &r, now);
                    return;
                }
                if self.calls.contains_key(&call_id) {
                    return; // the same call again (a loop, a fork): not a new one
                }
                let (from_uri, from_display) = req
                    .from()
                    .ok()
                    .map(|f| (f.uri.to_owned(), f.display.map(unquote)))
                    .unwrap_or_default();
                let local_tag = token(&self.cfg.randomness, 6);
                self.calls.insert(
                    call_id.clone(),
                    CallState::Incoming {
                        invite: wire.to_vec(),
                        local_tag: local_tag.clone(),
                        until: now + RING_TIMEOUT,
                    },
                );
                // The INVITE's server transaction sent 100 Trying.
                self.events.push_back(UaEvent::IncomingCall {
                    call_id,
                    from_uri,
                    from_display,
                    sdp: req.body().to_vec(),
                    // Long headers may arrive folded (RFC 3261 §7.3.1).
                    identity: req
                        .header(HeaderName::Identity)
                        .map(|h| h.unfolded().into_owned()),
                });
            }
            Some(Method::Ack) => {
                if let Some(CallState::Up { resend, .. }) = self.calls.get_mut(&call_id) {
                    // Our 2xx arrived: stop re-sending it. A repeated ACK confirms nothing new.
                    let first = resend.take().is_some() || self.reliable;
                    if first {
                        self.events.push_back(UaEvent::Confirmed { call_id });
                    }
                }
            }
            Some(Method::Bye) => {
                let known = self.calls.remove(&call_id).is_some();
                let (code, reason) = if known {
                    (200, "OK")
                } else {
                    (481, "Call/Transaction Does Not Exist")
                };
                let mut r = response_to(req, code, reason, None);
                r.push("Content-Length", "0");
                self.respond(req, &r, now);
                if known {
                    self.events.push_back(UaEvent::Ended {
                        call_id,
                        by_peer: true,
                    });
                }
            }
            Some(Method::Cancel) => {
                let ringing = matches!(self.calls.get(&call_id), Some(CallState::Incoming { .. }));
                let mut ok = response_to(req, if ringing { 200 } else { 481 }, "OK", None);
                ok.push("Content-Length", "0");
                self.respond(req, &ok, now);
                if ringing {
                    self.answer(&call_id, 487, "Request Terminated", None);
                    self.events.push_back(UaEvent::Ended {
                        call_id,
                        by_peer: true,
                    });
                }
            }
            Some(Method::Options) => {
                let mut r = response_to(req, 200, "OK", None);
                r.push("Allow", "INVITE, ACK, BYE, CANCEL, OPTIONS");
                r.push("Content-Length", "0");
                self.respond(req, &r, now);
            }
            _ => {
                let mut r = response_to(req, 405, "Method Not Allowed", None);
                r.push("Allow", "INVITE, ACK, BYE, CANCEL, OPTIONS");
                r.push("Content-Length", "0");
                self.respond(req, &r, now);
            }
        }
    }

    /// Answers a 401/407 with credentials; false when it cannot (no usable challenge, or we
    /// already answered one for this request).
    fn authenticate(&mut self, pending: &mut Pending, resp: &Message<'_>) -> bool {
        if pending.authed {
            return false;
        }
        let (challenge_name, answer_name) = match resp.status() {
            Some(407) => (HeaderName::ProxyAuthenticate, "Proxy-Authorization"),
            _ => (HeaderName::WwwAuthenticate, "Authorization"),
        };
        let Some(challenge) = resp
            .auth_headers(challenge_name)
            .find_map(|h| Challenge::parse(&h).ok())
        else {
            return false;
        };
        let (method, uri) = match &pending.request.start {
            chaincall_sip::message::OwnedStart::Request { method, uri } => {
                (method.clone(), uri.clone())
            }
            _ => return false,
        };
        self.nc += 1;
        let value = challenge.answer(
            &method,
            &uri,
            &self.cfg.user,
            &self.cfg.password,
            &token(&self.cfg.randomness, 8),
            self.nc,
        );
        let req = &mut pending.request;
        req.set(answer_name, value);
        // A new transaction: fresh branch, next CSeq (§8.1.3.5, §22.2).
        req.set("Via", self.via());
        let cseq = req
            .get(HeaderName::CSeq)
            .and_then(|v| v.split_whitespace().next())
            .and_then(|n| n.parse::<u32>().ok())
            .unwrap_or(1)
            + 1;
        req.set("CSeq", format!("{cseq} {method}"));
        if method == "REGISTER" {
            self.reg_cseq = cseq;
        }
        pending.authed = true;
        true
    }

    fn handle_response(&mut self, resp: &Message<'_>, now: Instant) {
        let (Some(code), Ok(cseq), Ok(call_id)) = (resp.status(), resp.cseq(), resp.call_id())
        else {
            return;
        };
        let call_id = call_id.to_owned();
        if cseq.method == Method::Register && call_id == self.reg_call_id {
            let Some((mut pending, expires)) = self.register.take() else {
                return;
            };
            // Another transaction's answer (before a challenge), or a retransmission the
            // transaction absorbed: nothing for us.
            let fresh = pending.matches(resp) && pending.tx.handle_response(resp, now);
            pending.pump(&mut self.out);
            if !fresh || code < 200 {
                self.register = Some((pending, expires));
                return;
            }
            if (code == 401 || code == 407) && self.authenticate(&mut pending, resp) {
                pending.restart(self.reliable, now, &mut self.out);
                self.register = Some((pending, expires));
                return;
            }
            let ev = if (200..300).contains(&code) {
                if expires == 0 {
                    UaEvent::Unregistered
                } else {
                    let granted = resp
                        .contacts()
                        .find_map(|c| match c {
                            chaincall_sip::Contact::Addr(a) => a
                                .params
                                .value("expires")
                                .and_then(|e| e.parse::<u32>().ok()),
                            chaincall_sip::Contact::Star => None,
                        })
                        .or(resp.expires())
                        .unwrap_or(expires);
                    UaEvent::Registered { expires: granted }
                }
            } else {
                UaEvent::RegistrationFailed {
                    code,
                    reason: reason_of(resp),
                }
            };
            self.events.push_back(ev);
            return;
        }
        // A transaction we are done with (a cancelled or challenged INVITE, a CANCEL): it ACKs
        // and absorbs what still comes.
        let branch = branch_of(resp);
        if let Some(l) = self
            .lingering
            .iter_mut()
            .find(|l| Some(&l.branch) == branch.as_ref() && l.method == cseq.method.as_str())
        {
            l.tx.handle_response(resp, now);
            let (_, _, next) = drain(|| l.tx.poll_output(), &mut self.out);
            l.next = next;
            // A cancelled INVITE's first provisional: its CANCEL may go now. A final response
            // first leaves nothing to cancel.
            let cancel = l.cancel_on_provisional.take().filter(|_| code < 200);
            let answered = if (200..300).contains(&code) {
                l.cancelled.take()
            } else {
                None
            };
            if let Some(c) = cancel {
                let cancel = Pending::start(c, self.reliable, now, &mut self.out);
                self.linger(cancel, "CANCEL");
            }
            if let Some(invite) = answered {
                self.end_late_answer(&invite, resp, now);
            }
            self.sweep();
            return;
        }
        if cseq.method == Method::Invite
            && matches!(self.calls.get(&call_id), Some(CallState::Up { .. }))
        {
            self.up_invite_response(&call_id, resp, code, now);
            return;
        }
        let Some(state) = self.calls.remove(&call_id) else {
            return;
        };
        match (state, cseq.method) {
            (CallState::Calling { mut invite }, Method::Invite) => {
                let fresh = invite.matches(resp) && invite.tx.handle_response(resp, now);
                // The ACK of a non-2xx final answer is the transaction's (§17.1.1.3).
                invite.pump(&mut self.out);
                if !fresh || code < 200 {
                    if fresh && code > 100 {
                        self.events.push_back(UaEvent::Ringing {
                            call_id: call_id.clone(),
                            code,
                        });
                    }
                    self.calls.insert(call_id, CallState::Calling { invite });
                    return;
                }
                if (200..300).contains(&code) {
                    match Dialog::uac(&invite.request, resp) {
                        Ok(mut dialog) => {
                            let seq = resp.cseq().map(|c| c.seq).unwrap_or(1);
                            let mut ack = dialog.request(Method::Ack, &self.via(), Some(seq));
                            ack.push("Content-Length", "0");
                            let ack = ack.to_bytes();
                            self.out.push_back(ack.clone());
                            let local_sdp = String::from_utf8(invite.request.body.clone()).ok();
                            self.calls.insert(
                                call_id.clone(),
                                CallState::Up {
                                    dialog,
                                    local_sdp,
                                    ack: Some(ack),
                                    resend: None,
                                    update: None,
                                    offer: None,
                                },
                            );
                            self.events.push_back(UaEvent::Answered {
                                call_id,
                                sdp: resp.body().to_vec(),
                            });
                        }
                        Err(e) => self.events.push_back(UaEvent::CallFailed {
                            call_id,
                            code: 502,
                            reason: format!("unusable 2xx: {e}"),
                        }),
                    }
                    return;
                }
                let challenged = invite.branch();
                if (code == 401 || code == 407) && self.authenticate(&mut invite, resp) {
                    let old = invite.restart(self.reliable, now, &mut self.out);
                    if let Some(branch) = challenged {
                        self.lingering.push(Lingering {
                            branch,
                            method: "INVITE".into(),
                            next: old.next,
                            tx: old.tx,
                            until: now + TRANSACTION_TIMEOUT,
                            cancel_on_provisional: None,
                            cancelled: None,
                        });
                    }
                    self.calls.insert(call_id, CallState::Calling { invite });
                    return;
                }
                self.linger(invite, "INVITE");
                self.events.push_back(UaEvent::CallFailed {
                    call_id,
                    code,
                    reason: reason_of(resp),
                });
            }
            (CallState::Closing { mut bye }, Method::Bye) => {
                let fresh = bye.matches(resp) && bye.tx.handle_response(resp, now);
                bye.pump(&mut self.out);
                if fresh && code >= 200 {
                    self.events.push_back(UaEvent::Ended {
                        call_id,
                        by_peer: false,
                    });
                } else {
                    self.calls.insert(call_id, CallState::Closing { bye });
                }
            }
            (state, _) => {
                self.calls.insert(call_id, state);
            }
        }
    }

    /// A response to an INVITE in a call that is up: the answer to our re-INVITE, or the
    /// caller's 2xx retransmitted.
    fn up_invite_response(&mut self, call_id: &str, resp: &Message<'_>, code: u16, now: Instant) {
        let ours = matches!(
            self.calls.get(call_id),
            Some(CallState::Up { update: Some(p), .. }) if p.matches(resp)
        );
        if !ours {
            // Their 2xx again: our ACK was lost (§13.2.2.4); send it again.
            if (200..300).contains(&code)
                && let Some(CallState::Up { ack: Some(ack), .. }) = self.calls.get(call_id)
            {
                self.out.push_back(ack.clone());
            }
            return;
        }
        let via = (200..300).contains(&code).then(|| self.via());
        let Some(CallState::Up {
            dialog,
            local_sdp,
            ack,
            update,
            ..
        }) = self.calls.get_mut(call_id)
        else {
            return;
        };
        let Some(pending) = update.as_mut() else {
            return;
        };
        let fresh = pending.tx.handle_response(resp, now);
        pending.pump(&mut self.out);
        if !fresh || code < 200 {
            return;
        }
        let Some(pending) = update.take() else {
            return;
        };
        let sdp = match via {
            Some(via) => {
                let seq = resp.cseq().map(|c| c.seq).unwrap_or(1);
                let mut a = dialog.request(Method::Ack, &via, Some(seq));
                a.push("Content-Length", "0");
                let a = a.to_bytes();
                self.out.push_back(a.clone());
                *ack = Some(a);
                *local_sdp = String::from_utf8(pending.request.body.clone()).ok();
                resp.body().to_vec()
            }
            None => {
                // The transaction ACKs the non-2xx (§17.1.1.3); the session stays as it was.
                self.linger(*pending, "INVITE");
                Vec::new()
            }
        };
        self.events.push_back(UaEvent::ReInviteAnswered {
            call_id: call_id.to_owned(),
            code,
            sdp,
        });
    }

    /// Forgets the transactions that ended.
    fn sweep(&mut self) {
        let now = self.clock;
        self.lingering
            .retain(|l| l.tx.state() != ClientState::Terminated && l.until > now);
        self.servers
            .retain(|_, s| s.tx.state() != ServerState::Terminated);
    }

    /// Runs the timers: retransmissions over UDP, and fails requests whose Timer B/F ran out.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.clock = now;
        if let Some((p, _)) = &mut self.register {
            p.tx.handle_timeout(now);
            p.pump(&mut self.out);
            if p.timed_out {
                self.register = None;
                self.events.push_back(UaEvent::RegistrationFailed {
                    code: 0,
                    reason: "no answer from the registrar".into(),
                });
            }
        }
        let t2 = TimerConfig::default().t2;
        let mut expired = Vec::new();
        let mut unanswered = Vec::new();
        let mut stale = Vec::new();
        let mut unacked = Vec::new();
        for (call_id, state) in self.calls.iter_mut() {
            match state {
                CallState::Calling { invite: p } | CallState::Closing { bye: p } => {
                    p.tx.handle_timeout(now);
                    p.pump(&mut self.out);
                    if p.expired(now) {
                        expired.push(call_id.clone());
                    }
                }
                CallState::Incoming { until, .. } if *until <= now => {
                    unanswered.push(call_id.clone());
                }
                CallState::Up {
                    update: Some(p), ..
                } => {
                    p.tx.handle_timeout(now);
                    p.pump(&mut self.out);
                    if p.expired(now) {
                        stale.push(call_id.clone());
                    }
                }
                CallState::Up {
                    resend: resend @ Some(_),
                    ..
                } => {
                    let Some(r) = resend.as_mut() else { continue };
                    if r.next > now {
                        continue;
                    }
                    if now >= r.give_up {
                        tracing::warn!(call = %call_id, "no ACK for our 2xx within 64·T1; no longer re-sending it");
                        *resend = None;
                        unacked.push(call_id.clone());
                    } else {
                        self.out.push_back(r.wire.clone());
                        r.interval = (r.interval * 2).min(t2);
                        // The give-up is a deadline of its own: 64·T1, not the next re-send after.
                        r.next = (now + r.interval).min(r.give_up);
                    }
                }
                _ => {}
            }
        }
        for l in &mut self.lingering {
            l.tx.handle_timeout(now);
            let (_, _, next) = drain(|| l.tx.poll_output(), &mut self.out);
            l.next = next;
        }
        for s in self.servers.values_mut() {
            s.tx.handle_timeout(now);
            let (_, _, next) = drain(|| s.tx.poll_output(), &mut self.out);
            s.next = next;
        }
        for call_id in unacked {
            self.events.push_back(UaEvent::NoAck { call_id });
        }
        for call_id in stale {
            if let Some(CallState::Up { update, .. }) = self.calls.get_mut(&call_id) {
                *update = None;
                self.events.push_back(UaEvent::ReInviteAnswered {
                    call_id,
                    code: 0,
                    sdp: Vec::new(),
                });
            }
        }
        for call_id in unanswered {
            self.answer(&call_id, 408, "Request Timeout", None);
            self.events.push_back(UaEvent::RingExpired { call_id });
        }
        self.sweep();
        for call_id in expired {
            match self.calls.remove(&call_id) {
                Some(CallState::Calling { invite }) => {
                    // Rung for 64·T1 without an answer: the callee's phone is still ringing, so
                    // it is cancelled (§9.1). Timer B (no answer at all) leaves nothing to cancel.
                    if !invite.timed_out {
                        self.cancel(invite, now);
                    }
                    self.events.push_back(UaEvent::CallFailed {
                        call_id,
                        code: 0,
                        reason: "no answer".into(),
                    });
                }
                Some(_) => self.events.push_back(UaEvent::Ended {
                    call_id,
                    by_peer: false,
                }),
                None => {}
            }
        }
    }

    /// The next output: a message to send to the proxy (`Transmit<()>`: the destination is the
    /// one connection or the proxy's address), a [`UaEvent`], or the next deadline (`None` when
    /// no timer runs). Drain until `Timeout` after every command, `handle_input` and
    /// `handle_timeout`; acting on an event may queue more messages, so keep polling.
    pub fn poll_output(&mut self) -> UaOutput {
        if let Some(message) = self.out.pop_front() {
            return Output::transmit((), message);
        }
        if let Some(event) = self.events.pop_front() {
            return Output::Event(event);
        }
        let reg = self.register.as_ref().and_then(|(p, _)| p.deadline());
        let calls = self.calls.values().filter_map(|s| match s {
            CallState::Calling { invite } => invite.deadline(),
            CallState::Closing { bye } => bye.deadline(),
            CallState::Incoming { until, .. } => Some(*until),
            CallState::Up {
                update: Some(p), ..
            } => p.deadline(),
            CallState::Up {
                resend: Some(r), ..
            } => Some(r.next),
            _ => None,
        });
        let lingering = self
            .lingering
            .iter()
            .flat_map(|l| l.next.into_iter().chain([l.until]));
        let served = self.servers.values().filter_map(|s| s.next);
        Output::Timeout(
            reg.into_iter()
                .chain(calls)
                .chain(lingering)
                .chain(served)
                .min(),
        )
    }
}

/// A display name as the user should read it: RFC 3261 §25.1 quoted-pairs (`\"`, `\\`)
/// resolved.
fn unquote(display: &str) -> String {
    let mut out = String::with_capacity(display.len());
    let mut chars = display.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.extend(chars.next()),
            c => out.push(c),
        }
    }
    out
}
