//! The softphone's view model, sans-IO: fed with the phone's events ([`PhoneEvent`]), the answers
//! to its commands, key presses and `now`; it yields [`Command`]s for the phone and draws the
//! screen into a ratatui [`Frame`]. No terminal, no tokio, no clock inside: the shell
//! ([`crate::run`]) and the tests in simulated time drive it alike.
//!
//! Call order: [`App::handle`] (or [`App::handle_timeout`] at [`App::poll_timeout`]), then drain
//! [`App::poll_command`] until `None`, then [`App::render`].
//!
//! Everything a peer wrote (URI, display name, refusal reasons) is escaped with
//! [`for_terminal`] before it reaches the screen, and whether the peer is verified on chain is
//! spelled out in words on every screen that shows a peer: no colour is needed to read it.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use chaincall_identity::PhoneNumber;
use chaincall_phone::calls::CallUp;
use chaincall_phone::core::{CallControl, KeyedCall};
use chaincall_phone::report::{TextReport, describe_caller, for_terminal};
use chaincall_phone::{CallReport, CallerId, PhoneEvent};
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout};
use ratatui::text::Line;
use ratatui::widgets::{Block, Borders, Paragraph, Wrap};

/// How long an outgoing call may ring before it is given up (as `phone call` does).
pub const RING_WITHIN: Duration = Duration::from_secs(60);
/// How long an incoming call waits for `a` or `d` before it is declined (a caller's `phone
/// call` gives up after as long; a caller's CANCEL ends the ringing earlier).
pub const ANSWER_WITHIN: Duration = Duration::from_secs(60);
/// How long after hanging up the call's report may take.
pub const REPORT_WITHIN: Duration = Duration::from_secs(10);
/// The longest number entry: `+` and the 15 digits of E.164.
const MAX_ENTRY: usize = 16;

/// A key the user pressed, as the view model understands it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Key {
    /// A printable character.
    Char(char),
    /// Backspace.
    Backspace,
    /// Enter.
    Enter,
    /// Escape.
    Esc,
    /// Ctrl-C (or SIGINT, SIGTERM, SIGHUP): hang up and quit.
    Interrupt,
}

/// What the view model asks of the phone.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Command {
    /// Call this number; answer with [`Input::Dialed`].
    Dial(PhoneNumber),
    /// Answer the incoming call.
    Answer(String),
    /// Decline the incoming call (603).
    Decline(String),
    /// Hang up (BYE), or cancel a call still ringing.
    Hangup(String),
    /// Put the call on hold (a re-INVITE with `a=sendonly`).
    Hold(String),
    /// Take the call off hold.
    Resume(String),
    /// Mute (`true`) or unmute our audio; nothing is signalled.
    Mute(String, bool),
    /// The user compared the ZRTP SAS with the peer and it matched (`v`).
    ConfirmSas(String),
    /// Stop: unregister and close the phone, restore the terminal.
    Quit,
}

/// Where a call's received audio was written: `Ok(None)` when the phone records nothing, an
/// error's words when it could not be written.
pub type Recording = Result<Option<PathBuf>, String>;

/// What the shell feeds the view model.
// Each input is made and consumed at once, never stored: boxing the large event would cost an
// allocation per event for nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
#[non_exhaustive]
pub enum Input {
    /// A key press.
    Key(Key),
    /// An event of the phone. A [`PhoneEvent::CallEnded`] given here has no recording; the
    /// shell writes it and gives [`Input::Ended`] instead.
    Event(PhoneEvent),
    /// A call ended; its received audio was written to the recording (or could not be, and why).
    Ended {
        /// The call's report.
        report: Box<CallReport>,
        /// Where the received audio went.
        recording: Recording,
    },
    /// The first REGISTER failed, and why (a granted one arrives as [`PhoneEvent::Registered`]).
    RegisterFailed(String),
    /// The answer to [`Command::Dial`]: the call's id once its INVITE left, or why it could not.
    Dialed {
        /// The number called.
        target: PhoneNumber,
        /// The Call-ID, or why the call could not be placed.
        result: Result<String, String>,
    },
    /// The phone's event stream ended: the signalling connection is gone.
    Disconnected,
}

/// Where the phone's registration stands (the header line).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Registration {
    Registering,
    Registered { expires: u32 },
    Failed(String),
    Disconnected,
}

/// A call that is up.
#[derive(Debug, Clone)]
struct InCall {
    /// Who, how keyed, and what is proven of the peer.
    keyed: KeyedCall,
    outgoing: bool,
    /// The ZRTP exchange's outcome (SAS, chain binding), for a ZRTP call.
    zrtp: Option<chaincall_phone::zrtp_media::ZrtpStatus>,
    since: Instant,
    /// We hung up: the report is due by then.
    report_by: Option<Instant>,
    /// We muted our audio (`m`).
    muted: bool,
    /// We hold the call (`o`; the peer answered).
    held: bool,
    /// The peer holds the call.
    held_by_peer: bool,
}

impl InCall {
    /// The phone library's view of the call, to reuse its wording ([`CallUp::keyed`]).
    fn up(&self) -> CallUp<'_> {
        CallUp {
            call: &self.keyed,
            zrtp: self.zrtp.as_ref(),
        }
    }
}

/// A finished call, as the "call ended" screen shows it.
#[derive(Debug)]
struct Ended {
    /// How it ended, in words.
    how: String,
    /// Who the peer was and what was proven, in words (already escaped).
    who: Vec<String>,
    /// How long the call was up.
    lasted: Option<Duration>,
    report: Option<(Box<CallReport>, Recording)>,
}

#[derive(Debug)]
enum Screen {
    /// Number entry (the last call's end, if any, stays on [`Screen::Ended`] until a key).
    Idle,
    /// Our call: the key lookup (no id yet), then ringing.
    Dialing {
        target: PhoneNumber,
        call_id: Option<String>,
        since: Instant,
        /// `h` before the INVITE left: cancel as soon as it has.
        cancel: bool,
    },
    /// A call for us.
    Incoming {
        call_id: String,
        caller: CallerId,
        awaiting_answer: bool,
        since: Instant,
    },
    InCall(Box<InCall>),
    Ended(Box<Ended>),
}

/// The softphone's state and screen ([module docs](self)).
#[derive(Debug)]
pub struct App {
    number: String,
    domain: String,
    registration: Registration,
    screen: Screen,
    entry: String,
    /// One line about something that happened beside the screen (a second call declined, a
    /// number that is not E.164).
    note: Option<String>,
    commands: VecDeque<Command>,
    quitting: bool,
}

impl App {
    /// A softphone for `number` at the SIP `domain`, registering.
    pub fn new(number: &PhoneNumber, domain: &str) -> Self {
        Self {
            number: number.as_str().to_owned(),
            domain: for_terminal(domain),
            registration: Registration::Registering,
            screen: Screen::Idle,
            entry: String::new(),
            note: None,
            commands: VecDeque::new(),
            quitting: false,
        }
    }

    /// Shows a line about something that happened beside the screen (the shell's notes: the
    /// control socket could not be bound, …).
    pub fn set_note(&mut self, note: impl Into<String>) {
        self.note = Some(note.into());
    }

    /// The next command for the phone, if any.
    #[must_use]
    pub fn poll_command(&mut self) -> Option<Command> {
        self.commands.pop_front()
    }

    /// When [`App::handle_timeout`] is due next, seen at `now`: the ring and answer limits, the
    /// report's deadline, and the next whole second of a call's duration (to redraw it).
    #[must_use]
    pub fn poll_timeout(&self, now: Instant) -> Option<Instant> {
        match &self.screen {
            Screen::Dialing {
                since,
                call_id: Some(_),
                ..
            } => Some(*since + RING_WITHIN),
            Screen::Incoming {
                since,
                awaiting_answer: true,
                ..
            } => Some(*since + ANSWER_WITHIN),
            Screen::InCall(call) => call.report_by.or_else(|| {
                let whole = now.saturating_duration_since(call.since).as_secs() + 1;
                Some(call.since + Duration::from_secs(whole))
            }),
            _ => None,
        }
    }

    /// Acts on the time: gives up an unanswered call, declines an incoming call nobody
    /// answered, gives up waiting for a report. Early or repeated calls are harmless.
    pub fn handle_timeout(&mut self, now: Instant) {
        match &mut self.screen {
            Screen::Dialing {
                target,
                call_id: call_id @ Some(_),
                since,
                ..
            } if now >= *since + RING_WITHIN => {
                let how = format!("no answer from {target} within {} s", RING_WITHIN.as_secs());
                if let Some(id) = call_id.take() {
                    self.commands.push_back(Command::Hangup(id));
                }
                self.end_plain(how, Vec::new());
            }
            Screen::Incoming {
                call_id,
                caller,
                awaiting_answer: true,
                since,
            } if now >= *since + ANSWER_WITHIN => {
                self.commands
                    .push_back(Command::Decline(std::mem::take(call_id)));
                let who = vec![caller_line(caller)];
                let how = format!(
                    "missed call: not answered within {} s",
                    ANSWER_WITHIN.as_secs()
                );
                self.end_plain(how, who);
            }
            Screen::InCall(call) if call.report_by.is_some_and(|by| now >= by) => {
                let how = format!(
                    "hung up; no call report {} s later",
                    REPORT_WITHIN.as_secs()
                );
                self.end_call(how, now);
            }
            _ => {}
        }
    }

    /// Takes one input at `now`.
    pub fn handle(&mut self, input: Input, now: Instant) {
        match input {
            Input::Key(key) => self.key(key, now),
            Input::Event(event) => self.event(event, now),
            Input::Ended { report, recording } => self.ended(report, recording, now),
            Input::RegisterFailed(why) => {
                self.registration = Registration::Failed(for_terminal(&why));
            }
            Input::Dialed { target, result } => self.dialed(target, result, now),
            Input::Disconnected => {
                self.registration = Registration::Disconnected;
                let how = "the signalling connection closed".to_owned();
                match &self.screen {
                    Screen::InCall(_) => self.end_call(how, now),
                    Screen::Dialing { .. } | Screen::Incoming { .. } => {
                        self.end_plain(how, Vec::new())
                    }
                    Screen::Idle | Screen::Ended(_) => {}
                }
            }
        }
    }

    /// The call in progress (ringing, up or ours being placed), for `phone hangup`.
    pub fn current_call(&self) -> Option<&str> {
        match &self.screen {
            Screen::Dialing { call_id, .. } => call_id.as_deref(),
            Screen::Incoming { call_id, .. } => Some(call_id),
            Screen::InCall(call) => Some(&call.keyed.call_id),
            Screen::Idle | Screen::Ended(_) => None,
        }
    }

    /// A hang-up asked for from outside (`chaincall phone hangup`): ends the call in progress as
    /// `h` (or `d`) would, if it is the one asked for; the answer for the requester.
    pub fn hangup_request(
        &mut self,
        call_id: Option<&str>,
        now: Instant,
    ) -> Result<String, String> {
        let Some(current) = self.current_call().map(str::to_owned) else {
            return Err("no call in progress".to_owned());
        };
        if call_id.is_some_and(|id| id != current) {
            return Err(format!(
                "no call {} in progress (this one is {current})",
                for_terminal(call_id.unwrap_or_default())
            ));
        }
        let key = if matches!(self.screen, Screen::Incoming { .. }) {
            'd'
        } else {
            'h'
        };
        self.key(Key::Char(key), now);
        Ok(format!("hung up {current}"))
    }

    fn key(&mut self, key: Key, now: Instant) {
        if key == Key::Interrupt || (key == Key::Char('q') && self.idle()) {
            self.quit();
            return;
        }
        match (&mut self.screen, key) {
            (Screen::Idle, _) => self.edit(key, now),
            (Screen::Ended(_), _) => {
                self.screen = Screen::Idle;
                if key != Key::Enter && key != Key::Esc {
                    self.edit(key, now);
                }
            }
            (
                Screen::Dialing {
                    call_id,
                    cancel,
                    target,
                    ..
                },
                Key::Char('h') | Key::Esc,
            ) => {
                match call_id.take() {
                    Some(id) => {
                        self.commands.push_back(Command::Hangup(id));
                        let how =
                            format!("you cancelled the call to {target} before it was answered");
                        self.end_plain(how, Vec::new());
                    }
                    // The INVITE has not left yet: cancel once [`Input::Dialed`] brings its id.
                    None => *cancel = true,
                }
            }
            (
                Screen::Incoming {
                    call_id,
                    awaiting_answer: true,
                    ..
                },
                Key::Char('a'),
            ) => {
                self.commands.push_back(Command::Answer(call_id.clone()));
            }
            (
                Screen::Incoming {
                    call_id,
                    caller,
                    awaiting_answer: true,
                    ..
                },
                Key::Char('d'),
            ) => {
                self.commands
                    .push_back(Command::Decline(std::mem::take(call_id)));
                let who = vec![caller_line(caller)];
                self.end_plain("you declined the call".to_owned(), who);
            }
            (Screen::InCall(call), Key::Char('h')) if call.report_by.is_none() => {
                self.commands
                    .push_back(Command::Hangup(call.keyed.call_id.clone()));
                call.report_by = Some(now + REPORT_WITHIN);
            }
            // Mute is local: shown at once. Hold waits for the peer's answer (`Held`).
            (Screen::InCall(call), Key::Char('m')) if call.report_by.is_none() => {
                call.muted = !call.muted;
                self.commands
                    .push_back(Command::Mute(call.keyed.call_id.clone(), call.muted));
            }
            // `v`: the SAS read aloud matched; recorded for the next calls (ZRTP calls only).
            (Screen::InCall(call), Key::Char('v'))
                if call.report_by.is_none()
                    && call.zrtp.as_ref().is_some_and(|z| !z.sas_verified) =>
            {
                if let Some(z) = call.zrtp.as_mut() {
                    z.sas_verified = true;
                }
                self.commands
                    .push_back(Command::ConfirmSas(call.keyed.call_id.clone()));
            }
            (Screen::InCall(call), Key::Char('o')) if call.report_by.is_none() => {
                let id = call.keyed.call_id.clone();
                self.commands.push_back(if call.held {
                    Command::Resume(id)
                } else {
                    Command::Hold(id)
                });
            }
            _ => {}
        }
    }

    /// Whether no call is in progress (`q` quits only then; Ctrl-C always).
    fn idle(&self) -> bool {
        matches!(self.screen, Screen::Idle | Screen::Ended(_))
    }

    /// Hangs up whatever is in progress, then quits.
    fn quit(&mut self) {
        if self.quitting {
            return;
        }
        match &self.screen {
            Screen::Dialing {
                call_id: Some(id), ..
            } => self.commands.push_back(Command::Hangup(id.clone())),
            Screen::Incoming {
                call_id,
                awaiting_answer: true,
                ..
            } => self.commands.push_back(Command::Decline(call_id.clone())),
            Screen::InCall(call) if call.report_by.is_none() => self
                .commands
                .push_back(Command::Hangup(call.keyed.call_id.clone())),
            _ => {}
        }
        self.commands.push_back(Command::Quit);
        self.quitting = true;
    }

    /// Number entry: digits and `+`, Backspace, Esc clears, Enter dials.
    fn edit(&mut self, key: Key, now: Instant) {
        match key {
            Key::Char(c) if (c.is_ascii_digit() || c == '+') && self.entry.len() < MAX_ENTRY => {
                self.entry.push(c);
                self.note = None;
            }
            Key::Backspace => {
                self.entry.pop();
            }
            Key::Esc => self.entry.clear(),
            Key::Enter if !self.entry.is_empty() => self.dial(now),
            _ => {}
        }
    }

    fn dial(&mut self, now: Instant) {
        match PhoneNumber::parse(&self.entry) {
            Ok(n) if n.as_str() == self.number => {
                self.note = Some(format!("{n} is this phone's own number"));
            }
            Ok(target) => {
                self.commands.push_back(Command::Dial(target.clone()));
                self.entry.clear();
                self.note = None;
                self.screen = Screen::Dialing {
                    target,
                    call_id: None,
                    // Reset when the INVITE leaves ([`Input::Dialed`]): the ringing is timed
                    // from then; the key lookup before has its own bounds in the phone library.
                    since: now,
                    cancel: false,
                };
            }
            Err(e) => {
                self.note = Some(format!("{:?} is not an E.164 number ({e})", self.entry));
            }
        }
    }

    fn dialed(&mut self, target: PhoneNumber, result: Result<String, String>, now: Instant) {
        let Screen::Dialing {
            target: dialing,
            call_id,
            cancel,
            since,
        } = &mut self.screen
        else {
            // Quit or disconnected meanwhile: a call that left is hung up.
            if let Ok(id) = result {
                self.commands.push_back(Command::Hangup(id));
            }
            return;
        };
        if *dialing != target {
            return;
        }
        match result {
            Ok(id) if *cancel => {
                self.commands.push_back(Command::Hangup(id));
                let how = format!("you cancelled the call to {target} before it was answered");
                self.end_plain(how, Vec::new());
            }
            Ok(id) => {
                *call_id = Some(id);
                *since = now;
            }
            Err(why) => {
                let how = format!("cannot call {target}: {}", for_terminal(&why));
                self.end_plain(how, Vec::new());
            }
        }
    }

    fn event(&mut self, event: PhoneEvent, now: Instant) {
        match event {
            PhoneEvent::Registered { expires } => {
                self.registration = Registration::Registered { expires };
            }
            PhoneEvent::Incoming {
                call_id,
                caller,
                awaiting_answer,
            } => {
                if !self.idle() {
                    if awaiting_answer {
                        self.commands.push_back(Command::Decline(call_id));
                        self.note = Some(format!(
                            "declined a call while busy: {}",
                            describe_caller(&caller)
                        ));
                    }
                    return;
                }
                self.screen = Screen::Incoming {
                    call_id,
                    caller,
                    awaiting_answer,
                    since: now,
                };
            }
            PhoneEvent::CallUp { call: keyed, zrtp } => {
                let outgoing = match &self.screen {
                    Screen::Dialing {
                        call_id: Some(id), ..
                    } if *id == keyed.call_id => true,
                    Screen::Incoming { call_id: id, .. } if *id == keyed.call_id => false,
                    // A call we no longer show (declined as busy, quit): not ours to show.
                    _ => return,
                };
                self.screen = Screen::InCall(Box::new(InCall {
                    keyed,
                    outgoing,
                    zrtp,
                    since: now,
                    report_by: None,
                    muted: false,
                    held: false,
                    held_by_peer: false,
                }));
            }
            PhoneEvent::CallEnded(report) => {
                self.ended(report, Err("not written".to_owned()), now);
            }
            // The phone reconnects and registers again by itself; the line says so meanwhile.
            PhoneEvent::SignallingLost { reason } => {
                self.note = Some(format!(
                    "signalling lost ({}); reconnecting",
                    for_terminal(&reason)
                ));
            }
            PhoneEvent::Reconnected { attempt } => {
                self.note = Some(format!(
                    "signalling back (attempt {attempt}); registering again"
                ));
            }
            PhoneEvent::Control(c) => self.control(c),
            PhoneEvent::Dtmf { digit, .. } => {
                // The peer pressed a key (RFC 4733 telephone-event): shown, nothing to do.
                self.note = Some(format!(
                    "the peer pressed {}",
                    for_terminal(&digit.to_string())
                ));
            }
            PhoneEvent::Refused { call_id, reason } => {
                let reason = for_terminal(&reason);
                match &self.screen {
                    Screen::Dialing {
                        call_id: Some(id),
                        target,
                        ..
                    } if *id == call_id => {
                        let how = format!("the call to {target} failed: {reason}");
                        self.end_plain(how, Vec::new());
                    }
                    Screen::Incoming {
                        call_id: id,
                        caller,
                        ..
                    } if *id == call_id => {
                        let how = format!("the phone refused the call: {reason}");
                        let who = vec![caller_line(caller)];
                        self.end_plain(how, who);
                    }
                    _ => {
                        self.note =
                            Some(format!("refused call {}: {reason}", for_terminal(&call_id)))
                    }
                }
            }
            // A kind of event this screen does not know yet (the enum is non-exhaustive).
            _ => {}
        }
    }

    /// Hold and resume (by us or by the peer) of the call on screen; a refused downgrade or a
    /// failed hold in the note line.
    fn control(&mut self, c: CallControl) {
        let (held, by_peer) = match &c {
            CallControl::Held { by_peer, .. } => (true, *by_peer),
            CallControl::Resumed { by_peer, .. } => (false, *by_peer),
            CallControl::DowngradeRefused { reason, .. } => {
                self.note = Some(format!(
                    "refused the peer's re-INVITE: {} (the call keeps its keys)",
                    for_terminal(reason)
                ));
                return;
            }
            CallControl::Failed { reason, .. } => {
                self.note = Some(format!("hold or resume failed: {}", for_terminal(reason)));
                return;
            }
            _ => return,
        };
        if let Screen::InCall(call) = &mut self.screen
            && call.keyed.call_id == c.call_id()
        {
            if by_peer {
                call.held_by_peer = held;
            } else {
                call.held = held;
            }
        }
    }

    fn ended(&mut self, report: Box<CallReport>, recording: Recording, now: Instant) {
        // An incoming call that ended before it was answered (the caller cancelled it, or it
        // rang too long): the phone stops ringing.
        if let Screen::Incoming {
            call_id, caller, ..
        } = &self.screen
            && *call_id == report.call_id
        {
            let how = format!("missed call: {}", report.ended.describe());
            let who = vec![caller_line(caller)];
            self.end_plain(how, who);
            return;
        }
        let Screen::InCall(call) = &self.screen else {
            return;
        };
        if call.keyed.call_id != report.call_id {
            return;
        }
        let how = if call.report_by.is_some() {
            "you hung up".to_owned()
        } else if call.outgoing {
            "the callee hung up".to_owned()
        } else {
            "the caller hung up".to_owned()
        };
        self.screen = Screen::Ended(Box::new(Ended {
            how,
            who: in_call_identity(call),
            lasted: Some(now - call.since),
            report: Some((report, recording)),
        }));
    }

    /// The "call ended" screen for the call that is up, without its report (none came).
    fn end_call(&mut self, how: String, now: Instant) {
        if let Screen::InCall(call) = &self.screen {
            self.screen = Screen::Ended(Box::new(Ended {
                how,
                who: in_call_identity(call),
                lasted: Some(now - call.since),
                report: None,
            }));
        }
    }

    /// The "call ended" screen without a report (the call never came up).
    fn end_plain(&mut self, how: String, who: Vec<String>) {
        self.screen = Screen::Ended(Box::new(Ended {
            how,
            who,
            lasted: None,
            report: None,
        }));
    }

    /// Draws the whole screen: the registration line, the current screen, the keys.
    pub fn render(&self, frame: &mut Frame<'_>, now: Instant) {
        let [head, body, keys] = Layout::vertical([
            Constraint::Length(3),
            Constraint::Min(5),
            Constraint::Length(3),
        ])
        .areas(frame.area());
        let header = format!(
            "{} at {}: {}",
            self.number,
            self.domain,
            self.registration_text()
        );
        frame.render_widget(
            Paragraph::new(header).block(titled(" chaincall softphone ")),
            head,
        );
        let (title, mut lines) = self.body(now);
        if let Some(note) = &self.note {
            lines.push(String::new());
            lines.push(format!("Note: {note}"));
        }
        let lines: Vec<Line<'_>> = lines.into_iter().map(Line::from).collect();
        frame.render_widget(
            Paragraph::new(lines)
                .wrap(Wrap { trim: false })
                .block(titled(title)),
            body,
        );
        frame.render_widget(
            Paragraph::new(self.keys_text()).block(titled(" keys ")),
            keys,
        );
    }

    fn registration_text(&self) -> String {
        match &self.registration {
            Registration::Registering => "registering…".to_owned(),
            Registration::Registered { expires } => {
                format!("registered (for {expires} s; the phone renews it)")
            }
            Registration::Failed(why) => format!("NOT REGISTERED: {why}"),
            Registration::Disconnected => {
                "DISCONNECTED: the signalling connection closed".to_owned()
            }
        }
    }

    fn keys_text(&self) -> &'static str {
        match &self.screen {
            Screen::Idle => "0-9 and + type a number · Backspace deletes · Enter dials · q quits",
            Screen::Ended(_) => "type a number to call again · q quits",
            Screen::Dialing { .. } => "h hangs up · Ctrl-C hangs up and quits",
            Screen::Incoming {
                awaiting_answer: true,
                ..
            } => "a answers · d declines · Ctrl-C declines and quits",
            Screen::Incoming { .. } => "Ctrl-C quits",
            Screen::InCall(call) if call.held => {
                "h hangs up · m mutes/unmutes · o resumes · Ctrl-C hangs up and quits"
            }
            Screen::InCall(call) if call.zrtp.as_ref().is_some_and(|z| !z.sas_verified) => {
                "h hangs up · m mutes · o holds · v: the SAS matched · Ctrl-C hangs up and quits"
            }
            Screen::InCall(_) => {
                "h hangs up · m mutes/unmutes · o holds · Ctrl-C hangs up and quits"
            }
        }
    }

    /// The current screen's title and lines.
    fn body(&self, now: Instant) -> (&'static str, Vec<String>) {
        match &self.screen {
            Screen::Idle => (" dial ", vec![format!("Number: {}_", self.entry)]),
            Screen::Dialing {
                target,
                call_id: None,
                cancel,
                ..
            } => {
                let mut lines = vec![
                    format!("Calling {target}"),
                    format!("Looking up {target}'s key on chain and proving it…"),
                ];
                if *cancel {
                    lines.push("Cancelling…".to_owned());
                }
                (" calling ", lines)
            }
            Screen::Dialing { target, since, .. } => (
                " calling ",
                vec![
                    format!("Calling {target}"),
                    format!(
                        "Ringing for {} (gives up after {} s)",
                        clock(now.saturating_duration_since(*since)),
                        RING_WITHIN.as_secs()
                    ),
                ],
            ),
            Screen::Incoming {
                caller,
                awaiting_answer,
                ..
            } => {
                let mut lines = vec![
                    format!("From: {}", for_terminal(&caller.uri)),
                    caller_line(caller),
                    "Not proven by any call: the display name and the domain.".to_owned(),
                ];
                if !awaiting_answer {
                    lines.push(
                        "Not ringing: the phone decides by itself (accept_unverified)".to_owned(),
                    );
                }
                (" INCOMING CALL ", lines)
            }
            Screen::InCall(call) => (" in call ", in_call_lines(call, now)),
            Screen::Ended(ended) => (" call ended ", ended_lines(ended)),
        }
    }
}

/// The caller and what the call proves, in words: `Caller: "Name" <uri>: verified on chain as
/// … (mikey signature; key fingerprint …)` / `NOT VERIFIED (…)` / `NOT VERIFIED — likely spoof`.
fn caller_line(caller: &CallerId) -> String {
    format!("Caller: {}", describe_caller(caller))
}

/// Who the peer of a call that was up is and what is proven of it (escaped).
fn in_call_identity(call: &InCall) -> Vec<String> {
    let mut lines = Vec::new();
    match &call.keyed.caller {
        Some(caller) => lines.push(caller_line(caller)),
        None => lines.push(format!("Callee: {}", for_terminal(&call.keyed.peer))),
    }
    let role = if call.outgoing { "callee" } else { "caller" };
    let keys = call.up().keyed(role);
    lines.push(match &call.keyed.verified_peer {
        Some(_) => format!("Media keys: VERIFIED ({keys})"),
        None => format!("Media keys: NOT VERIFIED ({keys})"),
    });
    lines
}

fn in_call_lines(call: &InCall, now: Instant) -> Vec<String> {
    let mut lines = in_call_identity(call);
    lines.push(match &call.keyed.safety_number {
        Some(s) if call.keyed.verified_in_person => {
            format!("Safety number: {s} (verified in person)")
        }
        Some(s) => format!("Safety number: {s} (compare it with the peer's screen)"),
        None => "Safety number: none (the peer is not verified on chain)".to_owned(),
    });
    lines.push(format!(
        "Duration: {}",
        clock(now.saturating_duration_since(call.since))
    ));
    lines.push(format!("Key mode: {}", call.keyed.mode.name()));
    // What the phone library does not report while a call runs is said so, not guessed.
    lines.push("Codec: in the report when the call ends".to_owned());
    lines.push("SRTP profile: not reported by the phone library yet".to_owned());
    lines.push(
        "Packets, loss: in the report when the call ends (no live statistics yet)".to_owned(),
    );
    lines.push(format!(
        "Microphone: {}",
        if call.muted {
            "MUTED (silence goes out; m unmutes)"
        } else {
            "on"
        }
    ));
    lines.push(match (call.held, call.held_by_peer) {
        (false, false) => "Hold: no".to_owned(),
        (true, false) => "Hold: ON HOLD (you put it on hold; o resumes)".to_owned(),
        (false, true) => "Hold: ON HOLD (the peer put you on hold)".to_owned(),
        (true, true) => "Hold: ON HOLD (both sides)".to_owned(),
    });
    if call.report_by.is_some() {
        lines.push("Hanging up…".to_owned());
    }
    lines
}

fn ended_lines(ended: &Ended) -> Vec<String> {
    let mut lines = vec![format!("Ended: {}", ended.how)];
    lines.extend(ended.who.iter().cloned());
    if let Some(lasted) = ended.lasted {
        lines.push(format!("Lasted: {}", clock(lasted)));
    }
    if let Some((report, recording)) = &ended.report {
        let path = match recording {
            Ok(p) => p.clone(),
            Err(why) => Some(PathBuf::from(format!("(not written: {why})"))),
        };
        let text = TextReport {
            report,
            recording: path.as_deref(),
        }
        .to_string();
        // The report names the peer as it sent itself: each line is escaped.
        lines.extend(text.lines().map(for_terminal));
        lines.push(format!(
            "  loss           {} packets lost (sequence gaps)",
            report.stats.lost
        ));
    }
    lines
}

fn titled(title: &str) -> Block<'_> {
    Block::default().borders(Borders::ALL).title(title)
}

/// `m:ss` (or `h:mm:ss`), as call timers show a duration.
fn clock(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 3600 {
        format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
    } else {
        format!("{}:{:02}", s / 60, s % 60)
    }
}
