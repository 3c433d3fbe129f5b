//! The softphone's I/O shell: connects the phone as `phone listen` does
//! ([`chaincall_phone::calls::connect`], [`chaincall_phone::calls::register`]), takes over the
//! terminal (raw mode, alternate screen), and runs the [`App`] on the phone's events, the keys
//! (a blocking reader thread), the answers to its commands, `phone hangup` requests through the
//! control socket, signals and its own deadlines. The terminal and stderr are restored on every
//! way out: return, error, panic, Ctrl-C (a key in raw mode), SIGINT, SIGTERM and SIGHUP.

use std::fs::File;
use std::io::IsTerminal as _;
use std::os::fd::{AsFd as _, OwnedFd};
use std::path::{Path, PathBuf};
use std::pin::pin;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use chaincall_chain::KeystoreChain;
use chaincall_io::ErrorChain;
use chaincall_phone::audio_files::AudioFileError;
use chaincall_phone::calls::{self, ChainView, SessionError};
use chaincall_phone::control::{ControlSocket, next_request};
use chaincall_phone::{Phone, PhoneEvent, PhoneEvents, PhoneFileConfig, PhoneSecrets};
use ratatui::DefaultTerminal;
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;

use crate::app::{App, Command, Input, Key};

/// The audio calls send when the config names no `audio_in`: a minute of a speech-like signal
/// (as `phone listen` sends), then silence.
const CALL_AUDIO_MS: u32 = 60_000;
/// How often the key reader looks whether it should stop.
const KEY_POLL: Duration = Duration::from_millis(100);

/// Why the softphone could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UiError {
    /// Standard input or output is not a terminal.
    #[error(
        "`chaincall phone ui` needs a terminal on standard input and output (scripts use \
         `phone call` and `phone listen`)"
    )]
    NotATerminal,
    /// Connecting or the configuration failed (boxed: it is large, and this is the cold path).
    #[error(transparent)]
    Session(Box<SessionError>),
    /// The audio calls send could not be read.
    #[error(transparent)]
    Audio(#[from] AudioFileError),
    /// The log file could not be opened, or stderr not pointed at it.
    #[error("cannot send the log to {path}")]
    Log {
        /// The file (`/dev/null` without `--log`).
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The terminal could not be set up or drawn on.
    #[error("the terminal")]
    Terminal(#[source] std::io::Error),
}

impl From<SessionError> for UiError {
    fn from(e: SessionError) -> Self {
        UiError::Session(Box::new(e))
    }
}

/// How the shell runs besides the configuration.
#[derive(Debug, Clone, Default)]
pub struct UiOptions {
    /// Where stderr (the log) goes while the screen is up; `None` discards it (log lines would
    /// otherwise be written over the screen).
    pub log: Option<PathBuf>,
    /// Where to append the TLS-PSK connection's secrets (NSS key log); `None` writes none.
    pub tls_keylog: Option<PathBuf>,
}

/// Runs the interactive softphone for the config's number until the user quits: connects and
/// registers as `phone listen` does, but never answers by itself (the config's `auto_answer` is
/// for `listen`: here the person at the screen decides; `accept_unverified` still applies).
/// Recordings go to the config's `record_dir`. The registration is removed when it stops.
pub async fn run<C: KeystoreChain + 'static>(
    cfg: &PhoneFileConfig,
    secrets: &PhoneSecrets,
    view: ChainView<C>,
    options: UiOptions,
) -> Result<(), UiError> {
    if !(std::io::stdin().is_terminal() && std::io::stdout().is_terminal()) {
        return Err(UiError::NotATerminal);
    }
    let number = cfg.number().map_err(SessionError::from)?.clone();
    let audio = cfg.outgoing_audio(CALL_AUDIO_MS, 2)?;
    let keylog = options.tls_keylog.clone();
    let (phone, events, _) = calls::connect(cfg, secrets, view, audio, false, keylog).await?;
    let mut app = App::new(&number, &cfg.sip_domain);
    let control = match ControlSocket::bind(&cfg.control_socket).await {
        Ok(socket) => Some(socket),
        Err(e) => {
            app.set_note(format!(
                "`chaincall phone hangup` cannot reach this process: {}",
                ErrorChain(&e)
            ));
            None
        }
    };
    let result = async {
        let _stderr = StderrRedirect::to(options.log.as_deref())?;
        let mut screen = Screen::enter()?;
        drive(cfg, &phone, events, control, app, &mut screen.terminal).await
    }
    .await;
    phone.unregister_and_shutdown().await;
    result
}

/// The loop: inputs to the app, the app's commands to the phone, the screen redrawn.
async fn drive(
    cfg: &PhoneFileConfig,
    phone: &Phone,
    mut events: PhoneEvents,
    mut control: Option<ControlSocket>,
    mut app: App,
    terminal: &mut DefaultTerminal,
) -> Result<(), UiError> {
    let stop = Arc::new(AtomicBool::new(false));
    let mut keys = read_keys(stop.clone());
    let _stop_keys = StopOnDrop(stop);
    let (done_tx, mut done) = mpsc::unbounded_channel::<Input>();
    let signal_stream = |kind| signal(kind).map_err(UiError::Terminal);
    let (mut int, mut term, mut hup) = (
        signal_stream(SignalKind::interrupt())?,
        signal_stream(SignalKind::terminate())?,
        signal_stream(SignalKind::hangup())?,
    );
    let mut register = pin!(calls::register(cfg, phone));
    let (mut registering, mut connected) = (true, true);
    loop {
        if !execute(&mut app, phone, &done_tx).await {
            return Ok(());
        }
        if let Err(e) = terminal.draw(|frame| app.render(frame, Instant::now())) {
            // The terminal is gone (an SSH connection dropped): what is in progress is hung up
            // before the phone stops, as at Ctrl-C.
            app.handle(Input::Key(Key::Interrupt), Instant::now());
            execute(&mut app, phone, &done_tx).await;
            return Err(UiError::Terminal(e));
        }
        let deadline = app.poll_timeout(Instant::now());
        tokio::select! {
            event = events.recv(), if connected => {
                let now = Instant::now();
                match event {
                    Some(PhoneEvent::CallEnded(report)) => {
                        let recording = cfg.save_recording(&report).map_err(|e| ErrorChain(&e).to_string());
                        app.handle(Input::Ended { report, recording }, now);
                    }
                    Some(event) => app.handle(Input::Event(event), now),
                    None => {
                        connected = false;
                        app.handle(Input::Disconnected, now);
                    }
                }
            }
            result = &mut register, if registering => {
                registering = false;
                // A granted one also arrives as `PhoneEvent::Registered`.
                if let Err(e) = result {
                    app.handle(Input::RegisterFailed(ErrorChain(&e).to_string()), Instant::now());
                }
            }
            key = keys.recv() => match key {
                Some(Some(key)) => app.handle(Input::Key(key), Instant::now()),
                // A resize: drawn again at the loop's top.
                Some(None) => {}
                // The reader stopped: the terminal is gone.
                None => app.handle(Input::Key(Key::Interrupt), Instant::now()),
            },
            Some(input) = done.recv() => app.handle(input, Instant::now()),
            request = next_request(&mut control) => {
                let answer = app.hangup_request(request.call_id.as_deref(), Instant::now());
                request.answer(answer);
            }
            _ = sleep_until(deadline) => app.handle_timeout(Instant::now()),
            _ = int.recv() => app.handle(Input::Key(Key::Interrupt), Instant::now()),
            _ = term.recv() => app.handle(Input::Key(Key::Interrupt), Instant::now()),
            _ = hup.recv() => app.handle(Input::Key(Key::Interrupt), Instant::now()),
        }
    }
}

/// Carries out the app's commands; `false` once it asked to quit.
async fn execute(app: &mut App, phone: &Phone, done: &mpsc::UnboundedSender<Input>) -> bool {
    while let Some(command) = app.poll_command() {
        match command {
            Command::Quit => return false,
            Command::Dial(target) => {
                let (phone, done) = (phone.clone(), done.clone());
                tokio::spawn(async move {
                    let result = phone.call(&target).await;
                    let result = result.map_err(|e| ErrorChain(&e).to_string());
                    let _ = done.send(Input::Dialed { target, result });
                });
            }
            // Each is a message to the phone's task: it fails only once the phone stopped,
            // which the event stream then reports.
            Command::Answer(id) => drop(phone.answer(&id, true).await),
            Command::Decline(id) => drop(phone.answer(&id, false).await),
            Command::Hangup(id) => drop(phone.hangup(&id).await),
            Command::Hold(id) => noted(app, phone.hold(&id).await),
            Command::Resume(id) => noted(app, phone.resume(&id).await),
            Command::Mute(id, muted) => noted(app, phone.mute(&id, muted).await),
            Command::ConfirmSas(id) => noted(app, phone.confirm_sas(&id).await),
        }
    }
    true
}

/// Shows why a hold, resume or mute was refused (the call is not up, a re-INVITE is out).
fn noted(app: &mut App, result: Result<(), chaincall_phone::PhoneError>) {
    if let Err(e) = result {
        app.set_note(ErrorChain(&e).to_string());
    }
}

/// Deadline that never comes for `None`.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t.into()).await,
        None => std::future::pending().await,
    }
}

/// The keys, read on a thread of their own (crossterm's reading blocks); `None` asks for a
/// redraw (the terminal was resized). The thread stops within [`KEY_POLL`] of `stop`.
fn read_keys(stop: Arc<AtomicBool>) -> mpsc::UnboundedReceiver<Option<Key>> {
    let (tx, rx) = mpsc::unbounded_channel();
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            match event::poll(KEY_POLL) {
                Ok(false) => continue,
                Ok(true) => {}
                Err(_) => break,
            }
            let sent = match event::read() {
                Ok(Event::Key(key)) => match key_of(key) {
                    Some(key) => tx.send(Some(key)),
                    None => Ok(()),
                },
                Ok(Event::Resize(..)) => tx.send(None),
                Ok(_) => Ok(()),
                Err(_) => break,
            };
            if sent.is_err() {
                break;
            }
        }
    });
    rx
}

/// Stops the key reader when the loop ends, however it ends.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// A terminal key press as the view model understands it (`None`: a key it has no use for).
pub fn key_of(key: KeyEvent) -> Option<Key> {
    if key.kind != KeyEventKind::Press {
        return None;
    }
    let (ctrl, alt) = (
        key.modifiers.contains(KeyModifiers::CONTROL),
        key.modifiers.contains(KeyModifiers::ALT),
    );
    match key.code {
        KeyCode::Char('c') if ctrl => Some(Key::Interrupt),
        KeyCode::Char(c) if !ctrl && !alt => Some(Key::Char(c)),
        KeyCode::Backspace => Some(Key::Backspace),
        KeyCode::Enter => Some(Key::Enter),
        KeyCode::Esc => Some(Key::Esc),
        _ => None,
    }
}

/// The terminal in raw mode on the alternate screen; restored on drop and (through the panic
/// hook ratatui installs, wrapped by ours for stderr) on panic.
struct Screen {
    terminal: DefaultTerminal,
}

impl Screen {
    fn enter() -> Result<Self, UiError> {
        let terminal = ratatui::try_init().map_err(UiError::Terminal)?;
        let restore_terminal = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            // The panic message must reach the terminal, not the log file.
            restore_stderr();
            restore_terminal(info);
        }));
        Ok(Self { terminal })
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        ratatui::restore();
    }
}

/// The real stderr while it points at the log file (taken back on drop or panic).
static SAVED_STDERR: Mutex<Option<OwnedFd>> = Mutex::new(None);

/// stderr pointed at the log file (or `/dev/null`) while the screen is up: the log's lines
/// would otherwise be written over the screen.
struct StderrRedirect;

impl StderrRedirect {
    fn to(log: Option<&Path>) -> Result<Self, UiError> {
        let path = log.unwrap_or(Path::new("/dev/null"));
        let failed = |source| UiError::Log {
            path: path.to_path_buf(),
            source,
        };
        let mut options = File::options();
        options.append(true);
        if log.is_some() {
            use std::os::unix::fs::OpenOptionsExt as _;
            options.create(true).mode(0o600);
        }
        let target = options.open(path).map_err(failed)?;
        let saved = std::io::stderr()
            .as_fd()
            .try_clone_to_owned()
            .map_err(failed)?;
        rustix::stdio::dup2_stderr(&target).map_err(|e| failed(e.into()))?;
        if let Ok(mut slot) = SAVED_STDERR.lock() {
            *slot = Some(saved);
        }
        Ok(Self)
    }
}

impl Drop for StderrRedirect {
    fn drop(&mut self) {
        restore_stderr();
    }
}

/// Points stderr back at what it was before [`StderrRedirect::to`] (once; later calls do
/// nothing). `try_lock`: a panic while the slot is held must not hang.
fn restore_stderr() {
    if let Ok(mut slot) = SAVED_STDERR.try_lock()
        && let Some(saved) = slot.take()
    {
        let _ = rustix::stdio::dup2_stderr(&saved);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_map_to_what_the_screens_use() {
        let press = |code, modifiers| key_of(KeyEvent::new(code, modifiers));
        let none = KeyModifiers::NONE;
        assert_eq!(press(KeyCode::Char('5'), none), Some(Key::Char('5')));
        assert_eq!(
            press(KeyCode::Char('+'), KeyModifiers::SHIFT),
            Some(Key::Char('+'))
        );
        assert_eq!(
            press(KeyCode::Char('c'), KeyModifiers::CONTROL),
            Some(Key::Interrupt)
        );
        // Ctrl-A is not `a`: a stray chord must not answer a call.
        assert_eq!(press(KeyCode::Char('a'), KeyModifiers::CONTROL), None);
        assert_eq!(press(KeyCode::Enter, none), Some(Key::Enter));
        assert_eq!(press(KeyCode::Backspace, none), Some(Key::Backspace));
        assert_eq!(press(KeyCode::F(1), none), None);
        let mut release = KeyEvent::new(KeyCode::Char('a'), none);
        release.kind = KeyEventKind::Release;
        assert_eq!(key_of(release), None);
    }
}
