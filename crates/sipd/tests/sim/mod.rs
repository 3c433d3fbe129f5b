//! Drives sipd's [`Core`] in simulated time, as quinn-proto's tests drive a connection pair: the
//! core is built in code, fed SIP messages as bytes from fake peer addresses at `Instant`s the
//! test advances by hand, and read through `poll_output`. No sockets, no sleeps, no clock.

// Each core_*.rs test file uses its own part of the harness, reached through `mod sim;`.
#![allow(dead_code, unreachable_pub)]

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chaincall_io::Output;
use chaincall_sip::message::{Message, response_to};
use chaincall_sipd::config::LocationBackend;
use chaincall_sipd::core::{Core, Need, StreamKind, Transport};
use chaincall_sipd::db::Subscriber;
use chaincall_sipd::location::postgres::PgLocation;
use chaincall_sipd::location::{LocationStore, RegisterAnswer};
use chaincall_sipd::metrics::Metrics;
use chaincall_sipd::{AuthMode, Config};
use chaincall_testkit::postgres::Postgres;

/// Runs each named test on both backends, as `memory::NAME` and `postgres::NAME`.
// Only the test files that run on both backends use it.
#[allow(unused_macros)]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod memory {
            $(#[test]
            fn $name() {
                super::$name(super::Backend::Memory);
            })*
        }
        mod postgres {
            $(#[test]
            fn $name() {
                super::$name(super::Backend::Postgres);
            })*
        }
    };
}

/// The domain every simulated core serves.
pub const DOMAIN: &str = "example.test";

/// A configuration for the simulated core: `DOMAIN`, no digest auth, no rate limits.
pub fn config() -> Config {
    let mut cfg = Config {
        domain: Some(DOMAIN.into()),
        ..Config::default()
    };
    cfg.auth.mode = AuthMode::None;
    cfg.limits.register_rate = 0.0;
    cfg.limits.invite_rate = 0.0;
    cfg
}

/// A fake peer's address.
pub fn peer(n: u8) -> SocketAddr {
    SocketAddr::from(([192, 0, 2, n], 5060))
}

/// Which location backend a simulated core keeps its bindings in.
#[derive(Debug, Clone, Copy)]
pub enum Backend {
    /// The in-memory table (the default).
    Memory,
    /// A PostgreSQL `location` table on a throwaway server.
    Postgres,
}

/// A PostgreSQL location the simulated core's location needs run against, as the shell runs
/// them beside its loop; the simulated clock stands still while they run.
pub struct Store {
    /// Runs the queries.
    pub rt: tokio::runtime::Runtime,
    /// The location table.
    pub location: PgLocation,
    /// Whether `drain` answers the core's location needs at once (false: they stay in
    /// `needs` for the test to answer).
    pub auto: bool,
}

/// How long a location query may take before the simulated shell calls it failed (as
/// `[auth] lookup_timeout_ms` does in the real one).
const STORE_TIMEOUT: Duration = Duration::from_secs(10);

impl Store {
    /// Connects to `url` (migrating it).
    pub fn connect(url: &str) -> Store {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime");
        let location = rt
            .block_on(PgLocation::connect(url))
            .expect("the test database opens");
        Store {
            rt,
            location,
            auto: true,
        }
    }

    /// Runs one location need against the table and hands the answer to `core`; false when
    /// `need` is not a location need.
    pub fn answer(&self, core: &mut Core, need: &Need, now: Instant, unix: u64) -> bool {
        match need {
            Need::Bindings {
                username,
                domain,
                unix_now,
            } => {
                let read = self.location.bindings(username, domain, *unix_now);
                match self
                    .rt
                    .block_on(async { tokio::time::timeout(STORE_TIMEOUT, read).await })
                {
                    Ok(Ok(rows)) => core.insert_bindings(username, domain, rows, now, unix),
                    _ => core.bindings_failed(username, domain, now, unix),
                }
            }
            Need::Register(w) => {
                let write = self.location.register(w);
                let answer = match self
                    .rt
                    .block_on(async { tokio::time::timeout(STORE_TIMEOUT, write).await })
                {
                    Ok(Ok(outcome)) => RegisterAnswer::from(outcome),
                    _ => RegisterAnswer::Unavailable,
                };
                core.register_answered(w.ticket, answer, now, unix);
            }
            _ => return false,
        }
        true
    }
}

/// Whether `need` is one the location backend answers.
pub fn is_location_need(need: &Need) -> bool {
    matches!(need, Need::Bindings { .. } | Need::Register(_))
}

/// A configuration for `backend`: `cfg` with `[location]` pointing at `pg`'s database.
pub fn config_on(mut cfg: Config, pg: &Postgres) -> Config {
    cfg.location.backend = LocationBackend::Postgres;
    cfg.location.database = pg.url("postgres");
    cfg
}

/// One core, its clock, and what it sent.
pub struct Sim {
    /// The core under test.
    pub core: Core,
    /// Simulated monotonic time.
    pub now: Instant,
    start: Instant,
    /// Wall-clock seconds at `start` (nonces are dated with it).
    unix_start: u64,
    /// Transmits not yet taken by the test.
    pub sent: VecDeque<(SocketAddr, Vec<u8>)>,
    /// Look-ups the core asked for, not yet answered.
    pub needs: Vec<Need>,
    /// The deadline the last drain ended with.
    pub deadline: Option<Instant>,
    /// The core's metrics.
    pub metrics: Arc<Metrics>,
    /// The PostgreSQL location, with the PostgreSQL backend.
    pub store: Option<Store>,
    /// The throwaway server, when this sim started it.
    pub pg: Option<Postgres>,
}

impl Sim {
    /// A core built from `cfg` at a fixed start.
    pub fn new(cfg: &Config) -> Sim {
        let now = Instant::now();
        let metrics = Arc::new(Metrics::default());
        // A secret of its own per core, as each sipd process draws one: a restarted node's core
        // must not accept the flow tokens the earlier one minted.
        static SECRETS: AtomicU64 = AtomicU64::new(1);
        let secret = [SECRETS.fetch_add(1, Ordering::Relaxed) as u8; 32];
        let core = Core::new(cfg, secret, metrics.clone(), now).expect("valid config");
        let mut sim = Sim {
            core,
            now,
            start: now,
            unix_start: 1_800_000_000,
            sent: VecDeque::new(),
            needs: Vec::new(),
            deadline: None,
            metrics,
            store: None,
            pg: None,
        };
        sim.drain();
        sim
    }

    /// A core built from `cfg` on `backend`: with PostgreSQL, on a throwaway server of its own
    /// (`None` when PostgreSQL is not installed and peers are not required).
    pub fn on(backend: Backend, cfg: &Config) -> Option<Sim> {
        match backend {
            Backend::Memory => Some(Sim::new(cfg)),
            Backend::Postgres => {
                let pg = Postgres::start()?;
                let mut sim = Sim::with_store(&config_on(cfg.clone(), &pg));
                sim.pg = Some(pg);
                Some(sim)
            }
        }
    }

    /// A core built from `cfg`, whose `[location]` names a PostgreSQL database, with its store.
    pub fn with_store(cfg: &Config) -> Sim {
        let store = Store::connect(&cfg.location.database);
        let mut sim = Sim::new(cfg);
        sim.store = Some(store);
        sim
    }

    /// Answers the location needs waiting in `needs` from the store.
    pub fn answer_location(&mut self) {
        let Some(store) = self.store.take() else {
            return;
        };
        let (location, rest): (Vec<Need>, Vec<Need>) = std::mem::take(&mut self.needs)
            .into_iter()
            .partition(is_location_need);
        self.needs = rest;
        let (now, unix) = (self.now, self.unix());
        for need in &location {
            store.answer(&mut self.core, need, now, unix);
        }
        self.store = Some(store);
        self.drain();
    }

    /// Wall-clock seconds now.
    pub fn unix(&self) -> u64 {
        self.unix_start + (self.now - self.start).as_secs()
    }

    /// Polls the core until `Timeout`, keeping transmits and needs.
    pub fn drain(&mut self) {
        loop {
            match self.core.poll_output() {
                Output::Transmit(t) => self.sent.push_back((t.destination, t.contents)),
                Output::Event(need) => self.needs.push(need),
                Output::Timeout(at) => {
                    self.deadline = at;
                    break;
                }
            }
        }
        if self.store.as_ref().is_some_and(|s| s.auto) && self.needs.iter().any(is_location_need) {
            self.answer_location();
        }
    }

    /// `msg` arrives over UDP from `from` now.
    pub fn deliver(&mut self, from: SocketAddr, msg: &str) {
        self.deliver_on(from, msg, Transport::Udp);
    }

    /// `msg` arrives from `from` over `transport` now.
    pub fn deliver_on(&mut self, from: SocketAddr, msg: &str, transport: Transport) {
        let (now, unix) = (self.now, self.unix());
        self.core.handle(msg.as_bytes(), from, transport, now, unix);
        self.drain();
    }

    /// A TCP connection from `from` comes up.
    pub fn connect(&mut self, from: SocketAddr) {
        self.core.set_stream_peer(from, Some(StreamKind::Tcp));
        self.drain();
    }

    /// The TCP connection from `from` closes.
    pub fn disconnect(&mut self, from: SocketAddr) {
        self.core.set_stream_peer(from, None);
        self.drain();
    }

    /// Answers the core's look-up of `user` with `sub` (`None`: no such subscriber).
    pub fn answer_lookup(&mut self, user: &str, sub: Option<Subscriber>) {
        let (now, unix) = (self.now, self.unix());
        self.needs
            .retain(|n| !matches!(n, Need::Credentials { username, .. } if username == user));
        self.core.insert_credentials(user, DOMAIN, sub, now, unix);
        self.drain();
    }

    /// Fails the core's look-up of `user`.
    pub fn fail_lookup(&mut self, user: &str) {
        let now = self.now;
        self.needs
            .retain(|n| !matches!(n, Need::Credentials { username, .. } if username == user));
        self.core.lookup_failed(user, DOMAIN, now);
        self.drain();
    }

    /// Moves time forward by `d`, firing every deadline on the way at its own instant (as a shell
    /// that wakes exactly on time would).
    pub fn advance(&mut self, d: Duration) {
        let until = self.now + d;
        while let Some(at) = self.deadline.filter(|at| *at <= until) {
            self.now = self.now.max(at);
            let now = self.now;
            self.core.handle_timeout(now);
            self.drain();
        }
        self.now = until;
    }

    /// Takes every message sent so far to `to`.
    pub fn take_to(&mut self, to: SocketAddr) -> Vec<Vec<u8>> {
        let (mine, rest): (VecDeque<_>, VecDeque<_>) = std::mem::take(&mut self.sent)
            .into_iter()
            .partition(|(d, _)| *d == to);
        self.sent = rest;
        mine.into_iter().map(|(_, b)| b).collect()
    }

    /// The one message sent to `to` since the last take (panics, naming them, otherwise).
    pub fn one_to(&mut self, to: SocketAddr) -> Vec<u8> {
        let mut got = self.take_to(to);
        assert_eq!(
            got.len(),
            1,
            "expected one message to {to}, got {:#?}",
            got.iter()
                .map(|b| String::from_utf8_lossy(b))
                .collect::<Vec<_>>()
        );
        got.remove(0)
    }

    /// The statuses of every response sent to `to` since the last take, in order.
    pub fn statuses_to(&mut self, to: SocketAddr) -> Vec<u16> {
        self.take_to(to).iter().map(|b| status(b)).collect()
    }

    /// The status of the one response sent to `to`.
    pub fn status_to(&mut self, to: SocketAddr) -> u16 {
        let b = self.one_to(to);
        status(&b)
    }
}

/// The status code of a response.
pub fn status(b: &[u8]) -> u16 {
    Message::parse(b)
        .ok()
        .and_then(|m| m.status())
        .unwrap_or_else(|| panic!("not a response: {}", String::from_utf8_lossy(b)))
}

/// The values of header `name` in `b`, in order.
pub fn headers(b: &[u8], name: &str) -> Vec<String> {
    let text = String::from_utf8_lossy(b);
    text.split("\r\n")
        .take_while(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .filter(|(n, _)| n.trim().eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim().to_owned())
        .collect()
}

/// A REGISTER for `user` from `src` with Call-ID `call_id`, CSeq `cseq`, the Contact lines
/// `contacts` (each a full header value) and the extra header lines `extra` (each ending in CRLF).
pub fn register(
    user: &str,
    src: SocketAddr,
    call_id: &str,
    cseq: u32,
    contacts: &[&str],
    extra: &str,
) -> String {
    // Every REGISTER is a new transaction, even one repeating a CSeq (a retransmission would
    // reuse the branch and get the first answer again).
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let n = SEQ.fetch_add(1, Ordering::Relaxed);
    let contacts: String = contacts
        .iter()
        .map(|c| format!("Contact: {c}\r\n"))
        .collect();
    format!(
        "REGISTER sip:{DOMAIN} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {src};branch=z9hG4bK-{call_id}-{cseq}-{n}\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:{user}@{DOMAIN}>;tag=f-{call_id}\r\n\
         To: <sip:{user}@{DOMAIN}>\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: {cseq} REGISTER\r\n\
         {contacts}{extra}Content-Length: 0\r\n\r\n"
    )
}

/// `user` registers over a TCP connection from `conn` with a Contact naming `claimed` (200).
pub fn register_over_tcp(s: &mut Sim, user: &str, conn: SocketAddr, claimed: SocketAddr) {
    s.connect(conn);
    let reg = register(
        user,
        conn,
        &format!("reg-tcp-{user}"),
        1,
        &[&format!("<sip:{user}@{claimed};transport=tcp>")],
        "Expires: 600\r\n",
    )
    .replace("SIP/2.0/UDP", "SIP/2.0/TCP");
    s.deliver_on(conn, &reg, Transport::Stream);
    assert_eq!(s.status_to(conn), 200, "{user} registers over TCP");
}

/// An initial INVITE from `caller` at `src` to `callee`@DOMAIN, branch and tag from `call_id`.
pub fn invite(caller: &str, src: SocketAddr, callee: &str, call_id: &str, extra: &str) -> String {
    format!(
        "INVITE sip:{callee}@{DOMAIN} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {src};branch=z9hG4bK-{call_id}-inv\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:{caller}@{DOMAIN}>;tag=f-{call_id}\r\n\
         To: <sip:{callee}@{DOMAIN}>\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: 1 INVITE\r\n\
         Contact: <sip:{caller}@{src}>\r\n\
         {extra}Content-Length: 0\r\n\r\n"
    )
}

/// `msg` with `sdp` as its body.
pub fn with_sdp(msg: &str, sdp: &str) -> String {
    msg.replace(
        "Content-Length: 0\r\n\r\n",
        &format!(
            "Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
            sdp.len()
        ),
    )
}

/// The response `code` to request `req` (as the callee would send it), with To tag `tag`.
pub fn answer(req: &[u8], code: u16, reason: &str, tag: &str) -> String {
    let m = Message::parse(req).expect("a request the core sent");
    String::from_utf8(response_to(&m, code, reason, Some(tag)).to_bytes()).expect("UTF-8")
}

/// A subscriber row holding `password` (the core derives each HA1 from it).
pub fn subscriber(password: &str) -> Subscriber {
    Subscriber {
        password: password.into(),
        ..Default::default()
    }
}

/// An in-dialog BYE to `ruri` from `from` (at `src`) to `to`, with the Route values `routes`: the
/// dialog of the INVITE [`invite`] wrote for `call_id`, answered by `to` with tag `{to}-tag`.
pub fn bye(
    ruri: &str,
    src: SocketAddr,
    from: &str,
    to: &str,
    call_id: &str,
    routes: &[&String],
    branch: &str,
) -> String {
    let routes: String = routes.iter().map(|r| format!("Route: {r}\r\n")).collect();
    format!(
        "BYE {ruri} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {src};branch=z9hG4bK-{branch}\r\n\
         Max-Forwards: 70\r\n\
         {routes}From: <sip:{from}@{DOMAIN}>;tag=f-{call_id}\r\n\
         To: <sip:{to}@{DOMAIN}>;tag={to}-tag\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: 2 BYE\r\n\
         Content-Length: 0\r\n\r\n"
    )
}
