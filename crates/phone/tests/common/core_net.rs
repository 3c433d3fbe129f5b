//! Two phone cores in simulated time and a tiny registrar/relay between them (see
//! `tests/core.rs`): the harness the core tests share.
#![allow(dead_code, unreachable_pub)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use alloy::primitives::Bytes;
use chaincall_chain::{ClientEntry, ClientId};
use chaincall_identity::{IdentityKey, IdentityName, KeyStatus, PhoneNumber, Randomness};
use chaincall_io::Output;
use chaincall_passport::{KeystoreAddress, VerifierConfig};
use chaincall_phone::core::{EndReason, Event, Need, PhoneCore};
use chaincall_phone::negotiation::NegotiatedMedia;
use chaincall_phone::{DEFAULT_CODECS, KeyMode, LookedUp, PhoneConfig, PhoneError, Signalling};
use chaincall_sip::HeaderName;
use chaincall_sip::Method;
use chaincall_sip::digest::{Algorithm, Credentials, challenge_value, ha1};
use chaincall_sip::message::{Message, response_to};
use rand_chacha::rand_core::SeedableRng as _;
use zeroize::Zeroizing;

pub const DOMAIN: &str = "sip.chaincall.test";
pub const ALICE: &str = "+15551230001";
pub const BOB: &str = "+15551230002";
pub const PASSWORD: &str = "s3cret";
/// The chain and keystore the phones' look-ups read (the directory below stands for it).
pub const CHAIN_ID: u64 = 31337;
pub const KEYSTORE: KeystoreAddress = KeystoreAddress([0x5f; 20]);

/// What the phones' PASSporTs name and accept.
pub fn keystore() -> VerifierConfig {
    VerifierConfig::new(CHAIN_ID, KEYSTORE)
}

/// One phone core and what it yielded that the test has not looked at yet.
pub struct Side {
    pub core: PhoneCore,
    pub number: PhoneNumber,
    /// Events other than needs, in order.
    pub events: Vec<Event>,
    /// Look-ups asked for and not yet answered.
    pub lookups: Vec<IdentityName>,
    /// Answer look-ups as soon as they are asked.
    pub answer_lookups: bool,
    /// Media started, by call.
    pub started: HashMap<String, NegotiatedMedia>,
    /// Calls whose media was stopped, in order.
    pub stopped: Vec<String>,
    /// DTMF the core passed to its media, `(call, digits)`, in order.
    pub dtmf: Vec<(String, String)>,
    /// Audio gates (mute, hold) the core told its media, `(call, gate)`, in order.
    pub gates: Vec<(String, chaincall_media::AudioGate)>,
    /// Calls whose ZRTP SAS the user confirmed, in order.
    pub sas_confirmed: Vec<String>,
    /// Signalling written and not yet delivered.
    pub wire: Vec<Vec<u8>>,
    /// The signalling connection is down: nothing reaches this phone.
    pub lost: bool,
    pub deadline: Option<Instant>,
}

/// The registrar's behaviour.
#[derive(Default)]
pub struct Registrar {
    /// Challenge requests without credentials (401).
    pub challenge: bool,
    /// Never answer.
    pub silent: bool,
}

/// Two phones, the directory their look-ups read and the relay between them.
pub struct Net {
    pub now: Instant,
    pub alice: Side,
    pub bob: Side,
    pub keys: HashMap<IdentityName, IdentityKey>,
    pub registrar: Registrar,
    /// Every message the relay saw, in order (lost copies included).
    pub seen: Vec<Vec<u8>>,
    /// The relay loses the first this many copies of every distinct message (a lossy UDP path).
    pub lose_first: u32,
    /// Copies of each message the relay has carried or lost so far.
    copies: HashMap<Vec<u8>, u32>,
    /// Changes each message the relay passes between the phones (a peer that writes other SDP).
    pub rewrite: Option<fn(Vec<u8>) -> Vec<u8>>,
    /// Messages the relay always loses (every copy): a path that never carries them.
    pub drop: Option<fn(&Message<'_>) -> bool>,
}

pub fn config(number: &str, key: &IdentityKey, seed: u64) -> PhoneConfig {
    PhoneConfig {
        number: number.parse().unwrap(),
        identity: Arc::new(key.clone()),
        sip_password: Zeroizing::new(PASSWORD.into()),
        sip_domain: DOMAIN.into(),
        signalling: Signalling::Tcp {
            addr: "127.0.0.1:5060".parse().unwrap(),
        },
        failover: Vec::new(),
        media_ip: "127.0.0.1".parse().unwrap(),
        codecs: DEFAULT_CODECS.to_vec(),
        key_mode: KeyMode::MikeyPke,
        zrtp: None,
        keylog: None,
        tls_keylog: None,
        auto_answer: true,
        accept_unverified: None,
        audio: Arc::new(Vec::new()),
        wideband: false,
        keep_playout: false,
        adaptive_loss_hint: true,
        devices: None,
        register_expires: 600,
        keepalive: None,
        mikey_replay_quota: chaincall_phone::DEFAULT_MIKEY_REPLAY_QUOTA,
        randomness: Randomness::seeded(rand_chacha::ChaCha20Rng::seed_from_u64(seed)),
    }
}

impl Net {
    /// Alice and Bob, both keyed on chain, both answering by themselves, with `adjust` changing
    /// their configurations first.
    pub fn new(adjust: impl Fn(&mut PhoneConfig)) -> Net {
        Net::over("TCP", adjust)
    }

    /// [`Net::new`] with the phones' signalling over `transport` (`TCP`, or `UDP` for the
    /// user agent's retransmissions).
    pub fn over(transport: &'static str, adjust: impl Fn(&mut PhoneConfig)) -> Net {
        let now = Instant::now();
        let wall = SystemTime::now();
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(1);
        let mut keys = HashMap::new();
        let mut side = |number: &str, port: u16, seed: u64| {
            let key = IdentityKey::generate_from(&mut rng);
            let mut cfg = config(number, &key, seed);
            adjust(&mut cfg);
            keys.insert(IdentityName::Phone(number.parse().unwrap()), key);
            Side {
                core: PhoneCore::new(
                    &cfg,
                    format!("127.0.0.1:{port}").parse().unwrap(),
                    transport,
                    keystore(),
                    now,
                    wall,
                ),
                number: number.parse().unwrap(),
                events: Vec::new(),
                lookups: Vec::new(),
                answer_lookups: true,
                started: HashMap::new(),
                stopped: Vec::new(),
                dtmf: Vec::new(),
                gates: Vec::new(),
                sas_confirmed: Vec::new(),
                wire: Vec::new(),
                lost: false,
                deadline: None,
            }
        };
        let alice = side(ALICE, 40001, 11);
        let bob = side(BOB, 40002, 12);
        Net {
            now,
            alice,
            bob,
            keys,
            registrar: Registrar::default(),
            seen: Vec::new(),
            lose_first: 0,
            copies: HashMap::new(),
            rewrite: None,
            drop: None,
        }
    }

    /// What the chain says about `name`: its approved key, proven, or no entry.
    pub fn look_up(&self, name: &IdentityName) -> Result<LookedUp, PhoneError> {
        let key = self
            .keys
            .get(name)
            .ok_or_else(|| PhoneError::UnknownCallee(name.clone()))?
            .public();
        Ok(LookedUp {
            entry: ClientEntry {
                id: ClientId::of(name),
                status: KeyStatus::Approved,
                wallet: None,
                key_type: key.tag(),
                key: Bytes::from(key.to_bytes()),
            },
            verified: true,
            block: Some(7),
            proof_bytes: 1234,
            elapsed: Duration::from_millis(5),
            pin: None,
            changes: Vec::new(),
            verified_in_person: false,
        })
    }

    pub fn side(&mut self, alice: bool) -> &mut Side {
        if alice {
            &mut self.alice
        } else {
            &mut self.bob
        }
    }

    /// Drains one core, acting on its needs as a shell would (look-ups from the directory unless
    /// held, media addresses at once, media recorded). Returns whether anything came out.
    pub fn drain(&mut self, alice: bool) -> bool {
        let now = self.now;
        let mut moved = false;
        loop {
            let out = self.side(alice).core.poll_output();
            match out {
                Output::Transmit(t) => self.side(alice).wire.push(t.contents),
                Output::Event(Event::Need(need)) => match need {
                    Need::LookupKey { name } => {
                        if self.side(alice).answer_lookups {
                            let found = self.look_up(&name);
                            self.side(alice).core.provide_key(&name, found, now);
                        } else {
                            self.side(alice).lookups.push(name);
                        }
                    }
                    Need::BindMedia { call_id } => {
                        let port = if alice { 4000 } else { 5000 };
                        let addr = format!("127.0.0.1:{port}").parse().unwrap();
                        self.side(alice).core.provide_media(&call_id, Ok(addr), now);
                    }
                    Need::StartMedia { call_id, media } => {
                        self.side(alice).started.insert(call_id, *media);
                    }
                    Need::StopMedia { call_id } => self.side(alice).stopped.push(call_id),
                    Need::SendDtmf { call_id, digits } => {
                        self.side(alice).dtmf.push((call_id, digits));
                    }
                    Need::GateAudio { call_id, gate } => {
                        self.side(alice).gates.push((call_id, gate));
                    }
                    Need::ConfirmSas { call_id } => self.side(alice).sas_confirmed.push(call_id),
                    other => panic!("a need this test does not know: {other:?}"),
                },
                Output::Event(e) => self.side(alice).events.push(e),
                Output::Timeout(at) => {
                    self.side(alice).deadline = at;
                    return moved;
                }
            }
            moved = true;
        }
    }

    /// The registrar's answer to a REGISTER.
    pub fn registrar(&self, req: &Message<'_>) -> Option<Vec<u8>> {
        if self.registrar.silent {
            return None;
        }
        let auth = req.auth_headers(HeaderName::Authorization).next();
        let (code, reason) = match auth {
            None if self.registrar.challenge => (401, "Unauthorized"),
            None => (200, "OK"),
            Some(h) => {
                let creds = Credentials::parse(&h).unwrap();
                let user = creds.username.to_owned();
                if creds.verify(&ha1(Algorithm::Sha256, &user, DOMAIN, PASSWORD), "REGISTER") {
                    (200, "OK")
                } else {
                    (401, "Unauthorized")
                }
            }
        };
        let mut r = response_to(req, code, reason, Some("regtag"));
        if code == 401 {
            r.push(
                "WWW-Authenticate",
                challenge_value(DOMAIN, "n1", Algorithm::Sha256, false),
            );
        } else {
            r.push("Expires", req.expires().unwrap_or(600).to_string());
        }
        Some(r.to_bytes())
    }

    /// Delivers what one side wrote: REGISTER to the registrar, everything else to the other
    /// side (dropped when that side's connection is down).
    pub fn deliver(&mut self, from_alice: bool) -> bool {
        let wire = std::mem::take(&mut self.side(from_alice).wire);
        let moved = !wire.is_empty();
        let now = self.now;
        for bytes in wire {
            let bytes = match self.rewrite {
                Some(f) => f(bytes),
                None => bytes,
            };
            self.seen.push(bytes.clone());
            if self.lost_copy(&bytes) {
                continue;
            }
            let m = Message::parse(&bytes).expect("the core writes well-formed SIP");
            if self.drop.is_some_and(|drop| drop(&m)) {
                continue;
            }
            if m.method() == Some(Method::Register) {
                if let Some(answer) = self.registrar(&m)
                    && !self.lost_copy(&answer)
                {
                    self.side(from_alice).core.handle_signalling(&answer, now);
                }
                continue;
            }
            let to = self.side(!from_alice);
            if !to.lost {
                to.core.handle_signalling(&bytes, now);
            }
        }
        moved
    }

    /// Whether this copy of `bytes` is one the lossy relay loses.
    fn lost_copy(&mut self, bytes: &[u8]) -> bool {
        let n = self.copies.entry(bytes.to_vec()).or_default();
        *n += 1;
        *n <= self.lose_first
    }

    /// Runs both phones and the relay until nothing moves.
    pub fn settle(&mut self) {
        loop {
            let mut moved = self.drain(true);
            moved |= self.drain(false);
            moved |= self.deliver(true);
            moved |= self.deliver(false);
            if !moved {
                return;
            }
        }
    }

    /// Advances the clock by `by`, firing each core's timers that fall due, and settles.
    pub fn advance(&mut self, by: Duration) {
        self.now += by;
        let now = self.now;
        for alice in [true, false] {
            if self.side(alice).deadline.is_some_and(|d| d <= now) {
                self.side(alice).core.handle_timeout(now);
            }
        }
        self.settle();
    }

    /// The messages the relay saw with this method (requests) or status (responses).
    pub fn seen(&self, what: &str) -> Vec<Vec<u8>> {
        self.seen
            .iter()
            .filter(|b| {
                let m = Message::parse(b).unwrap();
                match m.method() {
                    Some(method) => method.as_str() == what,
                    None => m.status().map(|s| s.to_string()).as_deref() == Some(what),
                }
            })
            .cloned()
            .collect()
    }

    /// Alice calls Bob; returns the Call-ID.
    pub fn alice_calls_bob(&mut self) -> String {
        let bob = self.bob.number.clone();
        let now = self.now;
        let id = self.alice.core.call(&bob, now);
        self.settle();
        id
    }
}

pub fn take_events(side: &mut Side) -> Vec<Event> {
    std::mem::take(&mut side.events)
}

pub fn ended(events: &[Event], id: &str) -> Option<EndReason> {
    events.iter().find_map(|e| match e {
        Event::Ended {
            call_id, reason, ..
        } if call_id == id => Some(*reason),
        _ => None,
    })
}

pub fn failure<'a>(events: &'a [Event], id: &str) -> Option<&'a PhoneError> {
    events.iter().find_map(|e| match e {
        Event::CallFailed { call_id, error } if call_id == id => Some(error),
        _ => None,
    })
}
