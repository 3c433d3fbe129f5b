//! The phone's SIP user agent core (RFC 3261 UAC and UAS), sans-IO.
//!
//! It speaks over one reliable connection to its outbound proxy (TLS-PSK to sipd, or TCP to a
//! Kamailio): bytes in with [`UserAgent::handle_input`], and out, with events and the next
//! deadline, from [`UserAgent::poll_output`] (the `chaincall_io::Output` every core yields; the
//! destination is `()`, the one connection); time with [`UserAgent::handle_timeout`]. Over a
//! reliable transport RFC 3261
//! retransmits nothing (§17.1.1.2, §17.1.2.2), so the only timers are Timer B/F (64·T1, 32 s):
//! a request without a final answer by then fails.
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
use chaincall_sip::transaction::build_ack;
use chaincall_sip::{HeaderName, Method};
use zeroize::Zeroizing;

/// Timer B / F on a reliable transport: 64·T1 (RFC 3261 §17.1.1.2).
pub const TRANSACTION_TIMEOUT: Duration = Duration::from_secs(32);

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
    /// The call ended.
    Ended {
        /// The call.
        call_id: String,
        /// The peer sent the BYE (or CANCEL).
        by_peer: bool,
    },
}

#[derive(Debug)]
struct Pending {
    request: MessageBuf,
    deadline: Instant,
    authed: bool,
}

#[derive(Debug)]
enum CallState {
    /// We sent the INVITE.
    Calling { invite: Pending },
    /// We received an INVITE and have not answered it finally.
    Incoming { invite: Vec<u8>, local_tag: String },
    /// A 2xx went out or came in. `local_sdp` is our current session description, re-sent when
    /// the peer refreshes the session with a re-INVITE.
    Up {
        dialog: Dialog,
        local_sdp: Option<String>,
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
    /// A user agent that has sent nothing yet.
    pub fn new(cfg: UaConfig) -> Self {
        Self {
            reg_call_id: format!("{}@{}", token(&cfg.randomness, 12), cfg.local.ip()),
            reg_tag: token(&cfg.randomness, 6),
            cfg,
            reg_cseq: 0,
            register: None,
            calls: HashMap::new(),
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
        self.send(&m);
        self.register = Some((
            Pending {
                request: m,
                deadline: now + TRANSACTION_TIMEOUT,
                authed: false,
            },
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
        self.send(&m);
        self.calls.insert(
            call_id.clone(),
            CallState::Calling {
                invite: Pending {
                    request: m,
                    deadline: now + TRANSACTION_TIMEOUT,
                    authed: false,
                },
            },
        );
    }

    /// Answers an incoming call: 180 Ringing, or a final status; a 2xx carries `sdp`.
    pub fn answer(&mut self, call_id: &str, code: u16, reason: &str, sdp: Option<&str>) {
        let Some(CallState::Incoming { invite, local_tag }) = self.calls.get(call_id) else {
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
        self.send(&r);
        if (200..300).contains(&code) {
            match Dialog::uas(&req, &local_tag) {
                Ok(dialog) => {
                    self.calls.insert(
                        call_id.to_owned(),
                        CallState::Up {
                            dialog,
                            local_sdp: sdp.map(str::to_owned),
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

    /// Ends a call: BYE for an established call, CANCEL-less give-up for one still ringing.
    pub fn hangup(&mut self, call_id: &str, now: Instant) {
        match self.calls.remove(call_id) {
            Some(CallState::Up { mut dialog, .. }) => {
                let mut bye = dialog.request(Method::Bye, &self.via(), None);
                bye.push("Content-Length", "0");
                self.send(&bye);
                self.calls.insert(
                    call_id.to_owned(),
                    CallState::Closing {
                        bye: Pending {
                            request: bye,
                            deadline: now + TRANSACTION_TIMEOUT,
                            authed: false,
                        },
                    },
                );
            }
            Some(CallState::Calling { invite }) => {
                let wire = invite.request.to_bytes();
                if let Ok(req) = Message::parse(&wire) {
                    let mut c = chaincall_sip::transaction::build_cancel(&req);
                    c.push("Content-Length", "0");
                    self.send(&c);
                }
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

    /// Forgets a call without a word to the peer: for a call whose connection is gone, so no
    /// BYE or CANCEL could reach anyone.
    pub fn abandon(&mut self, call_id: &str) {
        self.calls.remove(call_id);
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
        if msg.is_request() {
            self.handle_request(&msg, bytes);
        } else {
            self.handle_response(&msg, now);
        }
        Ok(())
    }

    fn handle_request(&mut self, req: &Message<'_>, wire: &[u8]) {
        let Ok(call_id) = req.call_id().map(str::to_owned) else {
            return;
        };
        match req.method() {
            Some(Method::Invite) => {
                let contact = contact_of(&self.cfg);
                if let Some(CallState::Up { dialog, local_sdp }) = self.calls.get_mut(&call_id) {
                    // A re-INVITE (session refresh, RFC 3261 §14.2): keep the media and its keys as
                    // they are and answer with our current description. Changing codecs, holding or
                    // re-keying mid-call is not supported; an out-of-order CSeq gets 500 (§14.2).
                    let code = match dialog.handle_request(req) {
                        Ok(()) => 200,
                        Err(_) => 500,
                    };
                    let mut r = response_to(
                        req,
                        code,
                        if code == 200 {
                            "OK"
                        } else {
                            "Server Internal Error"
                        },
                        None,
                    );
                    if code == 200 {
                        r.push("Contact", contact);
                        if let Some(sdp) = local_sdp.clone() {
                            r.set_body("application/sdp", sdp.into_bytes());
                        }
                    }
                    self.out.push_back(r.to_bytes());
                    return;
                }
                if self.calls.contains_key(&call_id) {
                    return; // a retransmission
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
                    },
                );
                let mut trying = response_to(req, 100, "Trying", None);
                trying.push("Content-Length", "0");
                self.send(&trying);
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
                if matches!(self.calls.get(&call_id), Some(CallState::Up { .. })) {
                    self.events.push_back(UaEvent::Confirmed { call_id });
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
                self.send(&r);
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
                self.send(&ok);
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
                self.send(&r);
            }
            _ => {
                let mut r = response_to(req, 405, "Method Not Allowed", None);
                r.push("Allow", "INVITE, ACK, BYE, CANCEL, OPTIONS");
                r.push("Content-Length", "0");
                self.send(&r);
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
        self.out.push_back(req.to_bytes());
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
            if code < 200 {
                self.register = Some((pending, expires));
                return;
            }
            if (code == 401 || code == 407) && self.authenticate(&mut pending, resp) {
                pending.deadline = now + TRANSACTION_TIMEOUT;
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
        let Some(state) = self.calls.remove(&call_id) else {
            return;
        };
        match (state, cseq.method) {
            (CallState::Calling { mut invite }, Method::Invite) => {
                if code < 200 {
                    if code > 100 {
                        self.events.push_back(UaEvent::Ringing {
                            call_id: call_id.clone(),
                            code,
                        });
                    }
                    self.calls.insert(call_id, CallState::Calling { invite });
                    return;
                }
                let wire = invite.request.to_bytes();
                if (200..300).contains(&code) {
                    match Dialog::uac(&invite.request, resp) {
                        Ok(mut dialog) => {
                            let seq = resp.cseq().map(|c| c.seq).unwrap_or(1);
                            let mut ack = dialog.request(Method::Ack, &self.via(), Some(seq));
                            ack.push("Content-Length", "0");
                            self.send(&ack);
                            let local_sdp = String::from_utf8(invite.request.body.clone()).ok();
                            self.calls
                                .insert(call_id.clone(), CallState::Up { dialog, local_sdp });
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
                // Non-2xx final: ACK it in the INVITE's transaction (§17.1.1.3).
                if let Ok(req) = Message::parse(&wire) {
                    self.out.push_back(build_ack(&req, resp));
                }
                if (code == 401 || code == 407) && self.authenticate(&mut invite, resp) {
                    invite.deadline = now + TRANSACTION_TIMEOUT;
                    self.calls.insert(call_id, CallState::Calling { invite });
                    return;
                }
                self.events.push_back(UaEvent::CallFailed {
                    call_id,
                    code,
                    reason: reason_of(resp),
                });
            }
            (CallState::Closing { .. }, Method::Bye) if code >= 200 => {
                self.events.push_back(UaEvent::Ended {
                    call_id,
                    by_peer: false,
                });
            }
            (state, _) => {
                self.calls.insert(call_id, state);
            }
        }
    }

    /// Fails requests whose Timer B/F ran out.
    pub fn handle_timeout(&mut self, now: Instant) {
        if let Some((p, _)) = &self.register
            && p.deadline <= now
        {
            self.register = None;
            self.events.push_back(UaEvent::RegistrationFailed {
                code: 0,
                reason: "no answer from the registrar".into(),
            });
        }
        let expired: Vec<String> = self
            .calls
            .iter()
            .filter(|(_, s)| match s {
                CallState::Calling { invite } => invite.deadline <= now,
                CallState::Closing { bye } => bye.deadline <= now,
                _ => false,
            })
            .map(|(k, _)| k.clone())
            .collect();
        for call_id in expired {
            match self.calls.remove(&call_id) {
                Some(CallState::Calling { .. }) => self.events.push_back(UaEvent::CallFailed {
                    call_id,
                    code: 0,
                    reason: "no answer".into(),
                }),
                Some(_) => self.events.push_back(UaEvent::Ended {
                    call_id,
                    by_peer: false,
                }),
                None => {}
            }
        }
    }

    /// The next output: a message to write to the connection (`Transmit<()>`: the destination
    /// is the one connection to the proxy), a [`UaEvent`], or the next deadline (`None` when no
    /// request is outstanding). Drain until `Timeout` after every command, `handle_input` and
    /// `handle_timeout`; acting on an event may queue more messages, so keep polling.
    pub fn poll_output(&mut self) -> UaOutput {
        if let Some(message) = self.out.pop_front() {
            return Output::transmit((), message);
        }
        if let Some(event) = self.events.pop_front() {
            return Output::Event(event);
        }
        let reg = self.register.as_ref().map(|(p, _)| p.deadline);
        let calls = self.calls.values().filter_map(|s| match s {
            CallState::Calling { invite } => Some(invite.deadline),
            CallState::Closing { bye } => Some(bye.deadline),
            _ => None,
        });
        Output::Timeout(reg.into_iter().chain(calls).min())
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
