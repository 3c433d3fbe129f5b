//! Client and server transactions (RFC 3261 §17, with the RFC 6026 Accepted state) and an
//! [`Endpoint`] that routes messages to them by branch and method (§17.1.3, §17.2.3).
//!
//! # Shape
//! Every state-changing call takes `now`. After any call, drain `poll_output` until it yields
//! `Timeout` (the `chaincall_io::Output` every chaincall core yields), then call `handle_timeout`
//! at (or after) that deadline. Early or repeated `handle_timeout` calls are harmless: timers live
//! in a fixed table indexed by [`Timer`] and only expired entries fire. The [`Endpoint`] addresses
//! each transmit to the transaction's remote; a lone transaction's destination is `()`, the remote
//! its owner holds.
//!
//! Timer values (§17.1.1.2, §17.1.2.2, §17.2.1, §17.2.2, Table 4 of Appendix A): A starts at T1 and
//! doubles; B, F, H, J = 64·T1; D ≥ 32 s (unreliable) or 0; E and G double up to T2; I, K = T4 (0 over
//! reliable transports); L, M = 64·T1 (RFC 6026 §8.7, §8.4).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use chaincall_io::{Output, Transmit};

use crate::error::UsageError;
use crate::header::{HeaderName, MAGIC_COOKIE, Method};
use crate::message::{Message, MessageBuf, OwnedStart, response_to};

/// RFC 3261 timer base values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimerConfig {
    /// T1, the RTT estimate: 500 ms.
    pub t1: Duration,
    /// T2, the maximum retransmit interval for non-INVITE requests and INVITE responses: 4 s.
    pub t2: Duration,
    /// T4, the maximum time a message stays in the network: 5 s.
    pub t4: Duration,
    /// Timer D for unreliable transports: at least 32 s.
    pub timer_d: Duration,
}

impl Default for TimerConfig {
    fn default() -> Self {
        TimerConfig {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
            timer_d: Duration::from_secs(32),
        }
    }
}

/// The transaction timers (RFC 3261 Appendix A, RFC 6026 L and M).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timer {
    /// INVITE request retransmit (client, unreliable).
    A,
    /// INVITE transaction timeout (client).
    B,
    /// Wait time for response retransmits (INVITE client, Completed).
    D,
    /// Non-INVITE request retransmit (client, unreliable).
    E,
    /// Non-INVITE transaction timeout (client).
    F,
    /// Wait time for response retransmits (non-INVITE client, Completed).
    K,
    /// INVITE final response retransmit (server, unreliable).
    G,
    /// Wait time for ACK receipt (INVITE server, Completed).
    H,
    /// Wait time for ACK retransmits (INVITE server, Confirmed).
    I,
    /// Wait time for request retransmits (non-INVITE server, Completed).
    J,
    /// Wait time for INVITE retransmits after a 2xx (server, Accepted; RFC 6026).
    L,
    /// Wait time for 2xx retransmits (INVITE client, Accepted; RFC 6026).
    M,
}

const TIMERS: usize = 12;

/// A fixed timer table: one optional deadline per [`Timer`].
#[derive(Debug, Clone, Default)]
struct TimerTable([Option<Instant>; TIMERS]);

impl TimerTable {
    fn set(&mut self, t: Timer, at: Instant) {
        self.0[t as usize] = Some(at);
    }
    fn stop(&mut self, t: Timer) {
        self.0[t as usize] = None;
    }
    fn clear(&mut self) {
        self.0 = [None; TIMERS];
    }
    fn next(&self) -> Option<Instant> {
        self.0.iter().flatten().min().copied()
    }
    /// The earliest timer expired at `now`, removed from the table.
    fn pop_expired(&mut self, now: Instant) -> Option<Timer> {
        const ALL: [Timer; TIMERS] = [
            Timer::A,
            Timer::B,
            Timer::D,
            Timer::E,
            Timer::F,
            Timer::K,
            Timer::G,
            Timer::H,
            Timer::I,
            Timer::J,
            Timer::L,
            Timer::M,
        ];
        let (i, _) = self
            .0
            .iter()
            .enumerate()
            .filter_map(|(i, t)| t.filter(|t| *t <= now).map(|t| (i, t)))
            .min_by_key(|(_, t)| *t)?;
        self.0[i] = None;
        Some(ALL[i])
    }
}

/// What a transaction yields: bytes for its remote (which the owner, usually the [`Endpoint`],
/// holds, so the destination is `()`), a [`TxEvent`], or the next timer deadline.
pub type TxOutput = Output<TxEvent, ()>;

/// The timers and output queues both transaction kinds keep.
#[derive(Debug, Default)]
struct TxIo {
    timers: TimerTable,
    transmits: VecDeque<Vec<u8>>,
    events: VecDeque<TxEvent>,
}

impl TxIo {
    /// Bytes first, then events, then the deadline.
    fn poll_output(&mut self) -> TxOutput {
        if let Some(bytes) = self.transmits.pop_front() {
            return Output::transmit((), bytes);
        }
        if let Some(event) = self.events.pop_front() {
            return Output::Event(event);
        }
        Output::Timeout(self.timers.next())
    }
}

/// What a transaction tells its user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxEvent {
    /// The transaction timed out: Timer B or F (client: act as if a 408 arrived, §8.1.3.1), or Timer H
    /// (server: the ACK never came, §17.2.1).
    Timeout,
    /// The transaction reached Terminated and may be forgotten.
    Terminated,
}

/// Client transaction states (§17.1.1, §17.1.2; Accepted from RFC 6026).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientState {
    /// INVITE sent, nothing heard.
    Calling,
    /// Non-INVITE sent, nothing heard.
    Trying,
    /// A provisional response arrived.
    Proceeding,
    /// A 2xx to INVITE arrived; absorbing nothing, passing retransmissions up (RFC 6026).
    Accepted,
    /// A final response arrived; absorbing retransmissions.
    Completed,
    /// Done.
    Terminated,
}

/// A client transaction. See the module docs for the call order.
#[derive(Debug)]
pub struct ClientTransaction {
    invite: bool,
    state: ClientState,
    wire: Vec<u8>,
    ack: Option<Vec<u8>>,
    reliable: bool,
    cfg: TimerConfig,
    interval: Duration,
    io: TxIo,
}

impl ClientTransaction {
    /// Starts a transaction for `request` (whose top Via carries the branch) and queues its first
    /// transmission. ACK is not a transaction (§17.1): send it directly.
    pub fn new(
        request: &MessageBuf,
        reliable: bool,
        cfg: TimerConfig,
        now: Instant,
    ) -> Result<Self, UsageError> {
        Self::from_wire(request.to_bytes(), reliable, cfg, now)
    }

    /// Like [`ClientTransaction::new`] for an already serialized request (a proxy's rewrite).
    pub fn from_wire(
        wire: Vec<u8>,
        reliable: bool,
        cfg: TimerConfig,
        now: Instant,
    ) -> Result<Self, UsageError> {
        let parsed =
            Message::parse(&wire).map_err(|_| UsageError::Missing("a parsable request"))?;
        let method = parsed
            .method()
            .ok_or(UsageError::Missing("a request line"))?;
        if method == Method::Ack {
            return Err(UsageError::State("ACK has no client transaction"));
        }
        let invite = method == Method::Invite;
        let mut t = ClientTransaction {
            invite,
            state: if invite {
                ClientState::Calling
            } else {
                ClientState::Trying
            },
            wire: wire.clone(),
            ack: None,
            reliable,
            cfg,
            interval: cfg.t1,
            io: TxIo {
                transmits: VecDeque::from([wire]),
                ..TxIo::default()
            },
        };
        let (retx, timeout) = if invite {
            (Timer::A, Timer::B)
        } else {
            (Timer::E, Timer::F)
        };
        if !reliable {
            t.io.timers.set(retx, now + cfg.t1);
        }
        t.io.timers.set(timeout, now + 64 * cfg.t1);
        Ok(t)
    }

    /// The current state.
    pub fn state(&self) -> ClientState {
        self.state
    }

    /// The request this transaction sends, serialized.
    pub fn request_wire(&self) -> &[u8] {
        &self.wire
    }

    /// Feeds a response matched to this transaction. Returns true when the transaction user must see
    /// it (§17.1.1.2, §17.1.2.2); retransmissions in Completed are absorbed (and re-ACKed).
    pub fn handle_response(&mut self, resp: &Message<'_>, now: Instant) -> bool {
        let Some(code) = resp.status() else {
            return false;
        };
        match (self.invite, self.state, code) {
            (_, ClientState::Terminated, _) => false,
            (true, ClientState::Calling | ClientState::Proceeding, 100..=199) => {
                self.state = ClientState::Proceeding;
                self.io.timers.stop(Timer::A);
                self.io.timers.stop(Timer::B);
                true
            }
            (true, ClientState::Calling | ClientState::Proceeding, 200..=299) => {
                // RFC 6026 §8.4: Accepted; 2xx retransmissions are passed up for the TU to ACK.
                self.state = ClientState::Accepted;
                self.io.timers.clear();
                self.io.timers.set(Timer::M, now + 64 * self.cfg.t1);
                true
            }
            (true, ClientState::Accepted, 200..=299) => true,
            (true, ClientState::Calling | ClientState::Proceeding, _) => {
                // §17.1.1.3: ACK the non-2xx final response, pass it up, wait in Completed.
                let ack = match Message::parse(&self.wire) {
                    Ok(req) => build_ack(&req, resp),
                    // The wire was parsed in `from_wire`; parsing is deterministic.
                    Err(_) => Vec::new(),
                };
                self.io.transmits.push_back(ack.clone());
                self.ack = Some(ack);
                self.state = ClientState::Completed;
                self.io.timers.clear();
                let d = if self.reliable {
                    Duration::ZERO
                } else {
                    self.cfg.timer_d
                };
                self.io.timers.set(Timer::D, now + d);
                true
            }
            (true, ClientState::Completed, 300..) => {
                if let Some(ack) = &self.ack {
                    self.io.transmits.push_back(ack.clone());
                }
                false
            }
            (false, ClientState::Trying | ClientState::Proceeding, 100..=199) => {
                self.state = ClientState::Proceeding;
                true
            }
            (false, ClientState::Trying | ClientState::Proceeding, 200..) => {
                self.state = ClientState::Completed;
                self.io.timers.clear();
                let k = if self.reliable {
                    Duration::ZERO
                } else {
                    self.cfg.t4
                };
                self.io.timers.set(Timer::K, now + k);
                true
            }
            _ => false,
        }
    }

    /// Fires expired timers.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(t) = self.io.timers.pop_expired(now) {
            match t {
                Timer::A => {
                    // §17.1.1.2: retransmit, double the interval (no cap for INVITE).
                    self.io.transmits.push_back(self.wire.clone());
                    self.interval *= 2;
                    self.io.timers.set(Timer::A, now + self.interval);
                }
                Timer::E => {
                    // §17.1.2.2: double up to T2; in Proceeding always T2.
                    self.io.transmits.push_back(self.wire.clone());
                    self.interval = if self.state == ClientState::Proceeding {
                        self.cfg.t2
                    } else {
                        (self.interval * 2).min(self.cfg.t2)
                    };
                    self.io.timers.set(Timer::E, now + self.interval);
                }
                Timer::B | Timer::F => {
                    self.io.events.push_back(TxEvent::Timeout);
                    self.terminate();
                }
                Timer::D | Timer::K | Timer::M => self.terminate(),
                _ => {}
            }
        }
    }

    fn terminate(&mut self) {
        if self.state != ClientState::Terminated {
            self.state = ClientState::Terminated;
            self.io.timers.clear();
            self.io.events.push_back(TxEvent::Terminated);
        }
    }

    /// The next output: the request (and its retransmissions, and ACKs) for the transaction's
    /// remote, a [`TxEvent`], or the next timer deadline. Drain until `Timeout` after every call.
    pub fn poll_output(&mut self) -> TxOutput {
        self.io.poll_output()
    }
}

/// Builds the ACK for a non-2xx final response (§17.1.1.3): Request-URI, Call-ID, From, CSeq number
/// and Route of the request, To of the response, the request's top Via only.
pub fn build_ack(request: &Message<'_>, resp: &Message<'_>) -> Vec<u8> {
    let uri = request.request_uri().unwrap_or("");
    let mut ack = MessageBuf::request(Method::Ack, uri);
    if let Some(v) = request.header_value(HeaderName::Via) {
        let top = crate::header::split_list(v).next().unwrap_or(v);
        ack.push("Via", top);
    }
    for h in request.headers() {
        let v = h.value;
        match h.name {
            HeaderName::From | HeaderName::CallId | HeaderName::Route => {
                ack.push(h.name.as_str_static(), v);
            }
            HeaderName::CSeq => {
                let num = v.split_whitespace().next().unwrap_or("1");
                ack.push("CSeq", format!("{num} ACK"));
            }
            HeaderName::MaxForwards => {
                ack.push("Max-Forwards", "70");
            }
            _ => {}
        }
    }
    if let Some(to) = resp.header(HeaderName::To) {
        ack.push("To", to.unfolded().into_owned());
    }
    ack.to_bytes()
}

/// Builds a CANCEL for a pending request (§9.1): same Request-URI, Call-ID, To, From, CSeq number,
/// top Via and Route.
pub fn build_cancel(request: &Message<'_>) -> MessageBuf {
    let uri = request.request_uri().unwrap_or("");
    let mut c = MessageBuf::request(Method::Cancel, uri);
    if let Some(v) = request.header_value(HeaderName::Via) {
        c.push("Via", crate::header::split_list(v).next().unwrap_or(v));
    }
    for h in request.headers() {
        let v = h.value;
        match h.name {
            HeaderName::From | HeaderName::To | HeaderName::CallId | HeaderName::Route => {
                c.push(h.name.as_str_static(), v);
            }
            HeaderName::MaxForwards => {
                c.push("Max-Forwards", "70");
            }
            HeaderName::CSeq => {
                let num = v.split_whitespace().next().unwrap_or("1");
                c.push("CSeq", format!("{num} CANCEL"));
            }
            _ => {}
        }
    }
    c
}

/// Server transaction states (§17.2.1, §17.2.2; Accepted from RFC 6026).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerState {
    /// Non-INVITE received, nothing sent.
    Trying,
    /// A provisional response was sent (INVITE starts here).
    Proceeding,
    /// A 2xx to INVITE was sent (RFC 6026).
    Accepted,
    /// A final response was sent.
    Completed,
    /// The ACK for a non-2xx final response arrived.
    Confirmed,
    /// Done.
    Terminated,
}

/// A server transaction. An INVITE server transaction dropped without a final response logs a
/// warning: every INVITE must be answered.
#[derive(Debug)]
pub struct ServerTransaction {
    invite: bool,
    state: ServerState,
    last_response: Option<Vec<u8>>,
    reliable: bool,
    cfg: TimerConfig,
    interval: Duration,
    io: TxIo,
}

impl ServerTransaction {
    /// Creates the transaction for a new request. For INVITE it queues 100 Trying at once (§17.2.1:
    /// unless the TU answers within 200 ms, which a shell cannot promise).
    pub fn new(req: &Message<'_>, reliable: bool, cfg: TimerConfig, now: Instant) -> Self {
        let _ = now;
        let invite = req.method() == Some(Method::Invite);
        let mut t = ServerTransaction {
            invite,
            state: if invite {
                ServerState::Proceeding
            } else {
                ServerState::Trying
            },
            last_response: None,
            reliable,
            cfg,
            interval: cfg.t1,
            io: TxIo::default(),
        };
        if invite {
            let trying = response_to(req, 100, "Trying", None).to_bytes();
            t.io.transmits.push_back(trying.clone());
            t.last_response = Some(trying);
        }
        t
    }

    /// The current state.
    pub fn state(&self) -> ServerState {
        self.state
    }

    /// True once a final response was sent.
    pub fn is_answered(&self) -> bool {
        !matches!(self.state, ServerState::Trying | ServerState::Proceeding)
    }

    /// Feeds a retransmitted request (or the ACK for our non-2xx final) matched to this transaction.
    pub fn handle_request(&mut self, req: &Message<'_>, now: Instant) {
        let is_ack = req.method() == Some(Method::Ack);
        match self.state {
            ServerState::Completed if is_ack && self.invite => {
                // §17.2.1: ACK → Confirmed; stop G and H; Timer I absorbs ACK retransmits.
                self.state = ServerState::Confirmed;
                self.io.timers.clear();
                let i = if self.reliable {
                    Duration::ZERO
                } else {
                    self.cfg.t4
                };
                self.io.timers.set(Timer::I, now + i);
            }
            ServerState::Proceeding | ServerState::Completed if !is_ack => {
                if let Some(r) = &self.last_response {
                    self.io.transmits.push_back(r.clone());
                }
            }
            _ => {}
        }
    }

    /// Sends a response from the TU. Errors if a final response was already sent.
    pub fn send_response(&mut self, resp: &MessageBuf, now: Instant) -> Result<(), UsageError> {
        let OwnedStart::Response { code, .. } = resp.start else {
            return Err(UsageError::Missing("a status line"));
        };
        self.send_response_wire(resp.to_bytes(), code, now)
    }

    /// Sends an already serialized response with status `code` (a proxy forwarding a response).
    pub fn send_response_wire(
        &mut self,
        wire: Vec<u8>,
        code: u16,
        now: Instant,
    ) -> Result<(), UsageError> {
        if !(100..=699).contains(&code) {
            return Err(UsageError::StatusCode(code));
        }
        if self.is_answered() {
            return Err(UsageError::State("final response already sent"));
        }
        self.io.transmits.push_back(wire.clone());
        self.last_response = Some(wire);
        match (self.invite, code) {
            (_, 100..=199) => {
                self.state = ServerState::Proceeding;
            }
            (true, 200..=299) => {
                self.state = ServerState::Accepted;
                self.io.timers.set(Timer::L, now + 64 * self.cfg.t1);
            }
            (true, _) => {
                self.state = ServerState::Completed;
                if !self.reliable {
                    self.io.timers.set(Timer::G, now + self.cfg.t1);
                }
                self.io.timers.set(Timer::H, now + 64 * self.cfg.t1);
            }
            (false, _) => {
                self.state = ServerState::Completed;
                let j = if self.reliable {
                    Duration::ZERO
                } else {
                    64 * self.cfg.t1
                };
                self.io.timers.set(Timer::J, now + j);
            }
        }
        Ok(())
    }

    /// Fires expired timers.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(t) = self.io.timers.pop_expired(now) {
            match t {
                Timer::G => {
                    if let Some(r) = &self.last_response {
                        self.io.transmits.push_back(r.clone());
                    }
                    self.interval = (self.interval * 2).min(self.cfg.t2);
                    self.io.timers.set(Timer::G, now + self.interval);
                }
                Timer::H => {
                    self.io.events.push_back(TxEvent::Timeout);
                    self.terminate();
                }
                Timer::I | Timer::J | Timer::L => self.terminate(),
                _ => {}
            }
        }
    }

    fn terminate(&mut self) {
        if self.state != ServerState::Terminated {
            self.state = ServerState::Terminated;
            self.io.timers.clear();
            self.io.events.push_back(TxEvent::Terminated);
        }
    }

    /// The next output: a response (or its retransmission) for the transaction's remote, a
    /// [`TxEvent`], or the next timer deadline. Drain until `Timeout` after every call.
    pub fn poll_output(&mut self) -> TxOutput {
        self.io.poll_output()
    }
}

impl Drop for ServerTransaction {
    fn drop(&mut self) {
        if self.invite && !self.is_answered() && !std::thread::panicking() {
            tracing::warn!("INVITE server transaction dropped without a final response");
        }
    }
}

/// A transaction handle inside an [`Endpoint`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TxId(pub u64);

/// Key matching a request to a server transaction (§17.2.3): branch, sent-by and method, with ACK
/// and CANCEL... ACK matching the INVITE. Requests without the magic cookie (RFC 2543) use Call-ID,
/// CSeq number, From tag and sent-by instead.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ServerKey {
    branch: String,
    sent_by: String,
    method: String,
}

impl ServerKey {
    /// Computes the key of a request.
    pub fn of(req: &Message<'_>) -> Option<ServerKey> {
        let via = req.top_via().ok()?;
        let method = match req.method()? {
            Method::Ack => "INVITE".to_owned(),
            m => m.as_str().to_owned(),
        };
        let sent_by = format!(
            "{}:{}",
            via.host.to_ascii_lowercase(),
            via.port.unwrap_or(0)
        );
        let branch = match via.branch() {
            Some(b) if b.starts_with(MAGIC_COOKIE) => b.to_owned(),
            _ => {
                // RFC 2543 fallback (§17.2.3 second part, simplified to the fields that identify it).
                let cseq = req.cseq().ok()?;
                let ftag = req.from().ok().and_then(|f| f.tag()).unwrap_or("");
                format!("2543|{}|{}|{}", req.call_id().ok()?, cseq.seq, ftag)
            }
        };
        Some(ServerKey {
            branch,
            sent_by,
            method,
        })
    }

    /// The key of the INVITE a CANCEL cancels (§9.2: same branch, method INVITE).
    pub fn invite_of_cancel(mut self) -> ServerKey {
        self.method = "INVITE".into();
        self
    }
}

/// Key matching a response to a client transaction (§17.1.3): top Via branch and CSeq method.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ClientKey {
    branch: String,
    method: String,
}

/// What the [`Endpoint`] yields: a datagram (or stream write) for a transaction's remote, an
/// [`EndpointEvent`], or the earliest deadline over all transactions.
pub type EndpointOutput = Output<EndpointEvent>;

/// What [`Endpoint::handle_message`] made of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Routed {
    /// A new request: a server transaction was created; the TU must answer it via
    /// [`Endpoint::respond`].
    NewRequest(TxId),
    /// An ACK matching no server transaction: the ACK for a 2xx, which belongs to the dialog (§13.2.2.4)
    /// or, in a proxy, is forwarded (§16.10... §16.7).
    Ack,
    /// A response for a client transaction that the TU must see.
    Response(TxId),
    /// A retransmission handled inside a transaction.
    Absorbed,
    /// A response matching no client transaction (a proxy forwards it statelessly, §16.7 / §18.1.2).
    StrayResponse,
    /// The message lacks what matching needs (never happens for parsed messages).
    Unmatched,
}

/// Events of the endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndpointEvent {
    /// A client transaction timed out (Timer B/F): treat as 408 (§8.1.3.1, §16.8).
    ClientTimeout(TxId),
    /// A server INVITE transaction never saw its ACK (Timer H).
    ServerTimeout(TxId),
    /// A transaction ended; its handle is now invalid.
    Terminated(TxId),
}

#[derive(Debug)]
enum Tx {
    Client(ClientTransaction, ClientKey),
    Server(ServerTransaction, ServerKey),
}

/// Routes messages to transactions and collects their output (RFC 3261 §17.1.3, §17.2.3).
#[derive(Debug)]
pub struct Endpoint {
    cfg: TimerConfig,
    next_id: u64,
    txs: HashMap<TxId, (Tx, SocketAddr)>,
    server_keys: HashMap<ServerKey, TxId>,
    client_keys: HashMap<ClientKey, TxId>,
    deadlines: BinaryHeap<Reverse<(Instant, TxId)>>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<EndpointEvent>,
    max_transactions: usize,
}

impl Endpoint {
    /// A new endpoint; `max_transactions` bounds memory (new requests beyond it are refused with
    /// [`UsageError::State`] by [`Endpoint::handle_message`] returning `Unmatched`).
    pub fn new(cfg: TimerConfig, max_transactions: usize) -> Self {
        Endpoint {
            cfg,
            next_id: 1,
            txs: HashMap::new(),
            server_keys: HashMap::new(),
            client_keys: HashMap::new(),
            deadlines: BinaryHeap::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            max_transactions,
        }
    }

    /// Live transactions.
    pub fn len(&self) -> usize {
        self.txs.len()
    }

    /// True when no transaction is live.
    pub fn is_empty(&self) -> bool {
        self.txs.is_empty()
    }

    fn alloc(&mut self) -> TxId {
        let id = TxId(self.next_id);
        self.next_id += 1;
        id
    }

    /// Routes a parsed message received from `source`.
    pub fn handle_message(
        &mut self,
        msg: &Message<'_>,
        source: SocketAddr,
        reliable: bool,
        now: Instant,
    ) -> Routed {
        if msg.is_request() {
            let Some(key) = ServerKey::of(msg) else {
                return Routed::Unmatched;
            };
            if let Some(&id) = self.server_keys.get(&key) {
                if let Some((Tx::Server(t, _), _)) = self.txs.get_mut(&id) {
                    t.handle_request(msg, now);
                }
                self.collect(id);
                return Routed::Absorbed;
            }
            if msg.method() == Some(Method::Ack) {
                return Routed::Ack;
            }
            if self.txs.len() >= self.max_transactions {
                return Routed::Unmatched;
            }
            let id = self.alloc();
            let t = ServerTransaction::new(msg, reliable, self.cfg, now);
            self.server_keys.insert(key.clone(), id);
            self.txs.insert(id, (Tx::Server(t, key), source));
            self.collect(id);
            Routed::NewRequest(id)
        } else {
            let (Ok(via), Ok(cseq)) = (msg.top_via(), msg.cseq()) else {
                return Routed::Unmatched;
            };
            let Some(branch) = via.branch() else {
                return Routed::StrayResponse;
            };
            let key = ClientKey {
                branch: branch.to_owned(),
                method: cseq.method.as_str().to_owned(),
            };
            let Some(&id) = self.client_keys.get(&key) else {
                return Routed::StrayResponse;
            };
            let pass = match self.txs.get_mut(&id) {
                Some((Tx::Client(t, _), _)) => t.handle_response(msg, now),
                _ => false,
            };
            self.collect(id);
            if pass {
                Routed::Response(id)
            } else {
                Routed::Absorbed
            }
        }
    }

    /// Starts a client transaction sending `request` to `dest`. The request's top Via must carry a
    /// unique branch starting with `z9hG4bK` (§8.1.1.7).
    pub fn send_request(
        &mut self,
        request: &MessageBuf,
        dest: SocketAddr,
        reliable: bool,
        now: Instant,
    ) -> Result<TxId, UsageError> {
        self.send_request_wire(request.to_bytes(), dest, reliable, now)
    }

    /// Like [`Endpoint::send_request`] for a serialized request.
    pub fn send_request_wire(
        &mut self,
        wire: Vec<u8>,
        dest: SocketAddr,
        reliable: bool,
        now: Instant,
    ) -> Result<TxId, UsageError> {
        let key = {
            let m = Message::parse(&wire).map_err(|_| UsageError::Missing("a parsable request"))?;
            let branch = m
                .top_via()
                .ok()
                .and_then(|v| v.branch())
                .filter(|b| b.starts_with(MAGIC_COOKIE))
                .ok_or(UsageError::Missing("a z9hG4bK branch"))?
                .to_owned();
            let method = m.method().ok_or(UsageError::Missing("a request line"))?;
            ClientKey {
                branch,
                method: method.as_str().to_owned(),
            }
        };
        if self.client_keys.contains_key(&key) {
            return Err(UsageError::State("branch already in use"));
        }
        let t = ClientTransaction::from_wire(wire, reliable, self.cfg, now)?;
        let id = self.alloc();
        self.client_keys.insert(key.clone(), id);
        self.txs.insert(id, (Tx::Client(t, key), dest));
        self.collect(id);
        Ok(id)
    }

    /// Sends a response on a server transaction.
    pub fn respond(&mut self, id: TxId, resp: &MessageBuf, now: Instant) -> Result<(), UsageError> {
        match self.txs.get_mut(&id) {
            Some((Tx::Server(t, _), _)) => t.send_response(resp, now)?,
            _ => return Err(UsageError::UnknownTransaction),
        }
        self.collect(id);
        Ok(())
    }

    /// Sends a serialized response with status `code` on a server transaction.
    pub fn respond_wire(
        &mut self,
        id: TxId,
        wire: Vec<u8>,
        code: u16,
        now: Instant,
    ) -> Result<(), UsageError> {
        match self.txs.get_mut(&id) {
            Some((Tx::Server(t, _), _)) => t.send_response_wire(wire, code, now)?,
            _ => return Err(UsageError::UnknownTransaction),
        }
        self.collect(id);
        Ok(())
    }

    /// True when the server transaction exists and has sent a final response.
    pub fn is_answered(&self, id: TxId) -> Option<bool> {
        match self.txs.get(&id) {
            Some((Tx::Server(t, _), _)) => Some(t.is_answered()),
            _ => None,
        }
    }

    /// The server transaction for a key (used to find the INVITE a CANCEL targets, §9.2).
    pub fn find_server(&self, key: &ServerKey) -> Option<TxId> {
        self.server_keys.get(key).copied()
    }

    /// The serialized request a client transaction sends.
    pub fn client_request(&self, id: TxId) -> Option<&[u8]> {
        match self.txs.get(&id) {
            Some((Tx::Client(t, _), _)) => Some(t.request_wire()),
            _ => None,
        }
    }

    /// The remote address of a transaction.
    pub fn remote(&self, id: TxId) -> Option<SocketAddr> {
        self.txs.get(&id).map(|(_, a)| *a)
    }

    /// Fires timers due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(Reverse((at, id))) = self.deadlines.peek().copied() {
            if at > now {
                break;
            }
            self.deadlines.pop();
            match self.txs.get_mut(&id) {
                Some((Tx::Client(t, _), _)) => t.handle_timeout(now),
                Some((Tx::Server(t, _), _)) => t.handle_timeout(now),
                None => continue,
            }
            self.collect(id);
        }
    }

    fn collect(&mut self, id: TxId) {
        let Some((tx, destination)) = self.txs.get_mut(&id) else {
            return;
        };
        let destination = *destination;
        let mut terminated = false;
        let next = loop {
            let out = match tx {
                Tx::Client(t, _) => t.poll_output(),
                Tx::Server(t, _) => t.poll_output(),
            };
            match out {
                Output::Transmit(t) => self.transmits.push_back(Transmit {
                    destination,
                    contents: t.contents,
                }),
                Output::Event(TxEvent::Terminated) => terminated = true,
                Output::Event(TxEvent::Timeout) => self.events.push_back(match tx {
                    Tx::Client(..) => EndpointEvent::ClientTimeout(id),
                    Tx::Server(..) => EndpointEvent::ServerTimeout(id),
                }),
                Output::Timeout(at) => break at,
            }
        };
        if terminated {
            if let Some((tx, _)) = self.txs.remove(&id) {
                match tx {
                    Tx::Client(_, k) => {
                        self.client_keys.remove(&k);
                    }
                    Tx::Server(_, k) => {
                        self.server_keys.remove(&k);
                    }
                }
            }
            self.events.push_back(EndpointEvent::Terminated(id));
        } else if let Some(at) = next {
            // Stale heap entries are skipped when they fire (early timeouts are harmless).
            self.deadlines.push(Reverse((at, id)));
        }
    }

    /// The next output: a datagram or stream write for a transaction's remote, an
    /// [`EndpointEvent`], or the earliest deadline over all transactions. Drain until `Timeout`
    /// after every call.
    pub fn poll_output(&mut self) -> EndpointOutput {
        if let Some(t) = self.transmits.pop_front() {
            return Output::Transmit(t);
        }
        if let Some(e) = self.events.pop_front() {
            return Output::Event(e);
        }
        // Drop heap entries of transactions that are gone.
        while let Some(Reverse((_, id))) = self.deadlines.peek() {
            if self.txs.contains_key(id) {
                break;
            }
            self.deadlines.pop();
        }
        Output::Timeout(self.deadlines.peek().map(|Reverse((at, _))| *at))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chaincall_io::drain;

    fn invite(branch: &str) -> MessageBuf {
        MessageBuf::request(Method::Invite, "sip:bob@example.com")
            .with("Via", format!("SIP/2.0/UDP 192.0.2.1:5060;branch={branch}"))
            .with("From", "<sip:alice@example.com>;tag=a1")
            .with("To", "<sip:bob@example.com>")
            .with("Call-ID", "c1@192.0.2.1")
            .with("CSeq", "1 INVITE")
            .with("Max-Forwards", "70")
    }

    fn resp(req: &MessageBuf, code: u16) -> Vec<u8> {
        let b = req.to_bytes();
        let m = Message::parse(&b).unwrap();
        response_to(&m, code, "X", Some("b1")).to_bytes()
    }

    #[test]
    fn invite_client_retransmits_and_times_out() {
        let t0 = Instant::now();
        let mut t =
            ClientTransaction::new(&invite("z9hG4bK1"), false, TimerConfig::default(), t0).unwrap();
        let first = drain(|| t.poll_output());
        assert_eq!(first.transmits.len(), 1);
        // Timer A: 0.5, 1.5, 3.5, 7.5, 15.5, 31.5 s → 6 retransmissions before B at 32 s.
        let mut sent = 0;
        let mut now = t0;
        let mut events = Vec::new();
        let mut next = first.timeout;
        while let Some(at) = next {
            now = at;
            t.handle_timeout(now);
            let out = drain(|| t.poll_output());
            sent += out.transmits.len();
            events.extend(out.events);
            next = out.timeout;
        }
        assert_eq!(sent, 6);
        assert_eq!(now - t0, Duration::from_secs(32));
        assert_eq!(events.first(), Some(&TxEvent::Timeout));
        assert_eq!(t.state(), ClientState::Terminated);
    }

    #[test]
    fn invite_client_acks_failure_and_absorbs_retransmission() {
        let t0 = Instant::now();
        let req = invite("z9hG4bK2");
        let mut t = ClientTransaction::new(&req, false, TimerConfig::default(), t0).unwrap();
        let _ = t.poll_output();
        let r = resp(&req, 486);
        let m = Message::parse(&r).unwrap();
        assert!(t.handle_response(&m, t0));
        let ack = t.poll_output().into_transmit().unwrap().contents;
        let a = Message::parse(&ack).unwrap();
        assert_eq!(a.method(), Some(Method::Ack));
        assert_eq!(a.to().unwrap().tag(), Some("b1"));
        assert_eq!(a.top_via().unwrap().branch(), Some("z9hG4bK2"));
        assert!(!t.handle_response(&m, t0), "retransmission absorbed");
        assert!(t.poll_output().into_transmit().is_some(), "and ACKed again");
        t.handle_timeout(t0 + Duration::from_secs(31));
        assert_eq!(t.state(), ClientState::Completed);
        t.handle_timeout(t0 + Duration::from_secs(32));
        assert_eq!(t.state(), ClientState::Terminated);
    }

    #[test]
    fn non_invite_client_caps_at_t2() {
        let t0 = Instant::now();
        let req = MessageBuf::request(Method::Options, "sip:a@b")
            .with("Via", "SIP/2.0/UDP h;branch=z9hG4bK3")
            .with("From", "<sip:a@b>;tag=1")
            .with("To", "<sip:a@b>")
            .with("Call-ID", "x")
            .with("CSeq", "1 OPTIONS");
        let mut t = ClientTransaction::new(&req, false, TimerConfig::default(), t0).unwrap();
        let mut next = drain(|| t.poll_output()).timeout;
        let mut gaps = vec![];
        let mut events = vec![];
        let mut last = t0;
        while let Some(at) = next {
            t.handle_timeout(at);
            let out = drain(|| t.poll_output());
            if !out.transmits.is_empty() {
                gaps.push((at - last).as_millis());
                last = at;
            }
            events.extend(out.events);
            next = out.timeout;
        }
        assert_eq!(&gaps[..5], &[500, 1000, 2000, 4000, 4000]);
        assert_eq!(events.first(), Some(&TxEvent::Timeout));
    }

    #[test]
    fn invite_server_retransmits_final_until_ack() {
        let t0 = Instant::now();
        let req = invite("z9hG4bK4").to_bytes();
        let m = Message::parse(&req).unwrap();
        let mut s = ServerTransaction::new(&m, false, TimerConfig::default(), t0);
        let first = s.poll_output().into_transmit().unwrap();
        assert!(first.contents.starts_with(b"SIP/2.0 100"));
        s.send_response(&response_to(&m, 486, "Busy Here", Some("t")), t0)
            .unwrap();
        let second = s.poll_output().into_transmit().unwrap();
        assert!(second.contents.starts_with(b"SIP/2.0 486"));
        assert!(
            s.send_response(&response_to(&m, 200, "OK", Some("t")), t0)
                .is_err()
        );
        s.handle_timeout(t0 + Duration::from_millis(500));
        assert!(s.poll_output().into_transmit().is_some(), "Timer G");
        s.handle_request(&m, t0 + Duration::from_millis(600));
        assert!(
            s.poll_output().into_transmit().is_some(),
            "INVITE retransmission answered"
        );
        let ack = build_ack(
            &m,
            &Message::parse(&response_to(&m, 486, "Busy", Some("t")).to_bytes()).unwrap(),
        );
        s.handle_request(&Message::parse(&ack).unwrap(), t0 + Duration::from_secs(1));
        assert_eq!(s.state(), ServerState::Confirmed);
        s.handle_timeout(t0 + Duration::from_secs(6));
        assert_eq!(s.state(), ServerState::Terminated);
    }

    #[test]
    fn invite_server_timer_h() {
        let t0 = Instant::now();
        let req = invite("z9hG4bK5").to_bytes();
        let m = Message::parse(&req).unwrap();
        let mut s = ServerTransaction::new(&m, false, TimerConfig::default(), t0);
        s.send_response(&response_to(&m, 404, "Not Found", Some("t")), t0)
            .unwrap();
        s.handle_timeout(t0 + Duration::from_secs(32));
        assert!(drain(|| s.poll_output()).events.contains(&TxEvent::Timeout));
    }

    #[test]
    fn endpoint_routes_by_branch_and_method() {
        let t0 = Instant::now();
        let mut ep = Endpoint::new(TimerConfig::default(), 100);
        let src: SocketAddr = "127.0.0.1:5070".parse().unwrap();
        let req = invite("z9hG4bK6").to_bytes();
        let m = Message::parse(&req).unwrap();
        let Routed::NewRequest(id) = ep.handle_message(&m, src, false, t0) else {
            panic!()
        };
        assert_eq!(ep.poll_output().into_transmit().unwrap().destination, src);
        assert_eq!(ep.handle_message(&m, src, false, t0), Routed::Absorbed);
        // Same branch, other method: a CANCEL is a new transaction (§9.2).
        let cancel = build_cancel(&m).to_bytes();
        let c = Message::parse(&cancel).unwrap();
        let Routed::NewRequest(cid) = ep.handle_message(&c, src, false, t0) else {
            panic!()
        };
        assert_ne!(cid, id);
        assert_eq!(
            ep.find_server(&ServerKey::of(&c).unwrap().invite_of_cancel()),
            Some(id)
        );
        // Client side.
        let dst: SocketAddr = "127.0.0.1:5080".parse().unwrap();
        let out = invite("z9hG4bK7");
        let cid = ep.send_request(&out, dst, false, t0).unwrap();
        let r = resp(&out, 180);
        assert_eq!(
            ep.handle_message(&Message::parse(&r).unwrap(), dst, false, t0),
            Routed::Response(cid)
        );
        let stray = resp(&invite("z9hG4bKnope"), 200);
        assert_eq!(
            ep.handle_message(&Message::parse(&stray).unwrap(), dst, false, t0),
            Routed::StrayResponse
        );
        ep.respond(id, &response_to(&m, 200, "OK", Some("x")), t0)
            .unwrap();
        ep.respond(cid_server_dummy(), &response_to(&m, 200, "OK", None), t0)
            .unwrap_err();
    }

    fn cid_server_dummy() -> TxId {
        TxId(9999)
    }
}
