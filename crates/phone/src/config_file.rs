//! The phone's configuration file (`phone.example.toml`): parsed once into validated types, with
//! relative paths resolved against the file's folder, and the two edits the phone makes to it
//! itself — pinning the trusted block on first use ([`PhoneFileConfig::pin_trust`]) and storing
//! the number the wallet server assigns ([`PhoneFileConfig::store_number`]). Both rewrite the file
//! with `toml_edit`, so the user's comments and layout survive.
//!
//! Errors name the file, the line and the key ([`ConfigError`]). Nothing here holds a secret: the
//! passphrase and keys live in the key file ([`crate::store`]), never in this one.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use alloy::primitives::{Address, B256};
use chaincall_identity::{IdentityKey, IdentityName, PhoneNumber, Randomness};
use chaincall_media::AudioCodec;
use chaincall_media::g711::Codec;
use serde::Deserialize;
use zeroize::Zeroizing;

use crate::caller::AcceptUnverified;
use crate::device_audio::{AudioMode, DeviceAudio};
use crate::negotiation::KeyMode;
use crate::phone::{PhoneConfig, Signalling};
use chaincall_audio_device::VoiceProcessing;

/// The comment written above a `trust` key pinned on first use.
const TRUST_COMMENT: &str =
    "# Pinned by `chaincall phone` from the node's block 0: trust on first use.\n";

/// The comment that replaces [`TRUST_COMMENT`] when the pin moves.
const REPIN_COMMENT: &str = "# Re-pinned by `chaincall phone trust repin`.\n";

/// Why the configuration file could not be read, understood or updated.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read the phone config {} (see crates/phone/phone.example.toml)", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not TOML, or has an unknown or missing key.
    #[error("{}:{line}: {message}", path.display())]
    Syntax {
        /// The file.
        path: PathBuf,
        /// 1-based line of the fault.
        line: usize,
        /// The parser's message.
        message: String,
    },
    /// A key's value is not acceptable.
    #[error("{}{}: `{key}` {reason}", path.display(), line.map_or(String::new(), |l| format!(":{l}")))]
    Invalid {
        /// The file.
        path: PathBuf,
        /// 1-based line of the key, when the file has it.
        line: Option<usize>,
        /// The key, dotted (`sip.addr`).
        key: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A key the command needs is not set.
    #[error("{}: `{key}` is needed to {what}", path.display())]
    Missing {
        /// The file.
        path: PathBuf,
        /// The key.
        key: &'static str,
        /// What it is needed for.
        what: &'static str,
    },
    /// The phone has no number yet.
    #[error(
        "{}: no `number` yet: run `chaincall phone onboard`, which stores the number the wallet \
         server assigns", path.display()
    )]
    NoNumber {
        /// The file.
        path: PathBuf,
    },
    /// The file could not be rewritten.
    #[error("cannot update {}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// How the phone reaches its SIP server (`sip.transport`).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SipTransport {
    /// The handshake with the server's on-chain key, then TLS-PSK (the default).
    #[default]
    TlsPsk,
    /// Plain TCP to a standard proxy: signalling in the clear, media still end-to-end encrypted.
    Tcp,
    /// UDP (sipd's `udp:` listener, standard proxies): digest auth, signalling in the clear,
    /// RFC 3261 retransmissions; media still end-to-end encrypted.
    Udp,
}

impl SipTransport {
    /// The name reports print.
    pub fn name(self) -> &'static str {
        match self {
            SipTransport::TlsPsk => "TLS-PSK",
            SipTransport::Tcp => "TCP",
            SipTransport::Udp => "UDP",
        }
    }
}

/// `sip.addr` as written: one `host:port`, or several (the nodes of one server's domain, tried
/// in this order).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum SipAddrs {
    One(String),
    Several(Vec<String>),
}

/// The `[sip]` table as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SipSection {
    addr: SipAddrs,
    domain: String,
    identity: Option<String>,
    #[serde(default)]
    transport: SipTransport,
    #[serde(default = "default_keepalive")]
    keepalive_secs: u64,
    #[serde(default = "default_expires")]
    register_expires: u32,
}

/// The longest keep-alive interval accepted: a day (NATs forget flows within minutes).
const MAX_KEEPALIVE_SECS: u64 = 86_400;

fn default_keepalive() -> u64 {
    crate::link::DEFAULT_KEEPALIVE.as_secs()
}

fn default_expires() -> u32 {
    600
}

/// The file as written; [`PhoneFileConfig::parse`] checks and converts it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    number: Option<String>,
    #[serde(default = "default_key_file")]
    key_file: PathBuf,
    rpc_url: String,
    contract: String,
    chain_id: Option<u64>,
    trust: Option<String>,
    wallet_url: Option<String>,
    wallet_domain: Option<String>,
    #[serde(default = "default_media_ip")]
    media_ip: String,
    #[serde(default = "default_codecs")]
    codecs: Vec<String>,
    #[serde(default = "default_key_mode")]
    key_mode: String,
    #[serde(default = "default_true")]
    auto_answer: bool,
    accept_unverified: Option<String>,
    audio: Option<String>,
    input_device: Option<String>,
    output_device: Option<String>,
    device_buffer_ms: Option<u32>,
    device_prebuffer_ms: Option<u32>,
    echo_cancellation: Option<bool>,
    noise_suppression: Option<bool>,
    audio_in: Option<PathBuf>,
    record_dir: Option<PathBuf>,
    keylog: Option<PathBuf>,
    #[serde(default = "default_control_socket")]
    control_socket: PathBuf,
    #[serde(default = "default_contacts_file")]
    contacts_file: PathBuf,
    zrtp_cache: Option<PathBuf>,
    #[serde(default = "default_onboard_timeout")]
    onboard_timeout_secs: u64,
    sip: SipSection,
}

fn default_key_file() -> PathBuf {
    "phone.key".into()
}
fn default_media_ip() -> String {
    "127.0.0.1".into()
}
fn default_codecs() -> Vec<String> {
    crate::DEFAULT_CODECS
        .iter()
        .map(|c| c.encoding_name().to_owned())
        .collect()
}
fn default_key_mode() -> String {
    "pke".into()
}
fn default_true() -> bool {
    true
}
fn default_control_socket() -> PathBuf {
    "phone.sock".into()
}
fn default_contacts_file() -> PathBuf {
    "contacts.json".into()
}
fn default_onboard_timeout() -> u64 {
    180
}

/// The phone's configuration file, checked, with paths resolved against the file's folder.
///
/// Build it with [`PhoneFileConfig::load`] (or [`PhoneFileConfig::parse`] for text in hand),
/// then [`PhoneFileConfig::phone_config`] gives the runtime [`PhoneConfig`].
#[derive(Debug, Clone)]
pub struct PhoneFileConfig {
    /// The file it came from (absolute when loaded from disk through a relative path's folder).
    pub path: PathBuf,
    /// Absent until the wallet server assigns one at onboarding.
    pub number: Option<PhoneNumber>,
    /// The encrypted key file.
    pub key_file: PathBuf,
    /// The Ethereum JSON-RPC node.
    pub rpc_url: String,
    /// The keystore contract.
    pub contract: Address,
    /// A node reporting another chain id is refused.
    pub chain_id: Option<u64>,
    /// The trusted block, `(number, hash)`: key lookups are proven against it.
    pub trust: Option<(u64, B256)>,
    /// The wallet-management server (onboarding, credentials).
    pub wallet_url: Option<String>,
    /// The domain the wallet server's key is published under on chain.
    pub wallet_domain: Option<String>,
    /// Where media sockets bind and what goes into the SDP.
    pub media_ip: IpAddr,
    /// Codecs, preferred first; never empty.
    pub codecs: Vec<AudioCodec>,
    /// Key agreement for outgoing calls.
    pub key_mode: KeyMode,
    /// `listen` answers verified callers at once.
    pub auto_answer: bool,
    /// Callers not verified on chain: `None` asks for unverified ones and refuses likely spoofs.
    pub accept_unverified: Option<AcceptUnverified>,
    /// WAV files or the sound card (`audio`, `input_device`, `output_device`).
    pub audio: AudioMode,
    /// The WAV the phone sends with `audio = "wav"`; `None`: a built-in signal.
    pub audio_in: Option<PathBuf>,
    /// Where received audio is recorded: the file's `record_dir`, else `recordings` with
    /// `audio = "wav"` (tests and demos check what arrived) and nowhere with `audio = "device"`
    /// (a person's conversations are not kept unless they ask).
    pub record_dir: Option<PathBuf>,
    /// DEBUGGING ONLY: where SRTP master keys are appended.
    pub keylog: Option<PathBuf>,
    /// The Unix socket a running `call` or `listen` opens for `hangup`.
    pub control_socket: PathBuf,
    /// The contacts store: persisted key pins.
    pub contacts_file: PathBuf,
    /// ZRTP's ZID and retained secrets (`zrtp_cache`, default `zrtp-cache.json` beside
    /// `contacts_file`).
    pub zrtp_cache: PathBuf,
    /// The SIP server's `host:port`, resolved when connecting ([`Self::resolve_sip_addr`]): the
    /// first of `sip.addr`'s.
    pub sip_addr: String,
    /// The server's other addresses (`sip.addr` as a list: the other nodes of its domain), tried
    /// in order when `sip_addr` does not answer or its connection drops.
    pub sip_failover: Vec<String>,
    /// The SIP domain (realm, registrar).
    pub sip_domain: String,
    /// The SIP server's keystore name (`sip.identity`, default `sip.domain`).
    pub sip_identity: IdentityName,
    /// How signalling travels.
    pub transport: SipTransport,
    /// Keep-alive interval (`sip.keepalive_secs`, default 30 s; `0`: none): a CRLF ping on a
    /// stream, a STUN Binding request over UDP ([`crate::PhoneConfig::keepalive`]).
    pub keepalive: Option<Duration>,
    /// Registration lifetime asked for, seconds; positive.
    pub register_expires: u32,
    /// How long `onboard` and `recover` wait for the chain node and the wallet server before
    /// giving up (`onboard_timeout_secs`, default 180 s); positive.
    pub onboard_timeout: Duration,
    /// When [`crate::onboarding::connect`] started: the flow after it counts its time from there,
    /// so `onboard_timeout` bounds the whole command. Not from the file.
    pub(crate) onboarding_since: Option<std::time::Instant>,
}

/// Parses `NUMBER:HASH` (`0:0x1234…`), a trusted block checkpoint.
pub fn parse_checkpoint(text: &str) -> Result<(u64, B256), String> {
    let bad = || format!("{text:?} is not NUMBER:HASH (e.g. 0:0x1234…, a 32-byte hash)");
    let (number, hash) = text.trim().split_once(':').ok_or_else(bad)?;
    let number = number.trim().parse::<u64>().map_err(|_| bad())?;
    let hash = hash.trim().parse::<B256>().map_err(|_| bad())?;
    Ok((number, hash))
}

/// The 1-based line of byte `offset` in `text`.
fn line_at(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    // Counting bytes is safe at any offset, char boundary or not.
    text.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// The 1-based line of the dotted `key` in `text`, when it is written there.
fn line_of(text: &str, key: &str) -> Option<usize> {
    let doc = toml_edit::Document::parse(text).ok()?;
    let mut item = doc.as_item();
    for part in key.split('.') {
        item = item.get(part)?;
    }
    item.span().map(|s| line_at(text, s.start))
}

/// The longest device ring or prebuffer accepted, ms: a minute (the ALSA test configuration,
/// whose `null` card has no clock, queues a whole call).
const MAX_DEVICE_BUFFER_MS: u32 = 60_000;

/// `audio` and the device keys: absent, `"wav"` (the file's `audio_in` or the built-in signal, as
/// before the key existed); `"device"` the sound card. The device keys need `"device"`.
fn audio_mode(f: &FileConfig) -> Result<AudioMode, (&'static str, String)> {
    for (key, ms) in [
        ("device_buffer_ms", f.device_buffer_ms),
        ("device_prebuffer_ms", f.device_prebuffer_ms),
    ] {
        if ms.is_some_and(|ms| ms == 0 || ms > MAX_DEVICE_BUFFER_MS) {
            return Err((key, format!("must be 1 to {MAX_DEVICE_BUFFER_MS}")));
        }
    }
    match f.audio.as_deref().map(str::trim) {
        None | Some("wav") => {
            let device_keys = [
                ("input_device", f.input_device.is_some()),
                ("output_device", f.output_device.is_some()),
                ("device_buffer_ms", f.device_buffer_ms.is_some()),
                ("device_prebuffer_ms", f.device_prebuffer_ms.is_some()),
                ("echo_cancellation", f.echo_cancellation.is_some()),
                ("noise_suppression", f.noise_suppression.is_some()),
            ];
            match device_keys.into_iter().find(|(_, set)| *set) {
                Some((key, _)) => Err((key, "needs audio = \"device\"".into())),
                None => Ok(AudioMode::Wav),
            }
        }
        Some("device") => Ok(AudioMode::Device(DeviceAudio {
            input: DeviceAudio::selector(f.input_device.clone()),
            output: DeviceAudio::selector(f.output_device.clone()),
            buffer_ms: f.device_buffer_ms,
            prebuffer_ms: f.device_prebuffer_ms,
            // On unless turned off: WAV calls never have them (their audio is no microphone).
            processing: VoiceProcessing {
                echo_cancellation: f.echo_cancellation.unwrap_or(true),
                noise_suppression: f.noise_suppression.unwrap_or(true),
            },
        })),
        Some(other) => Err((
            "audio",
            format!(
                "{other:?} is neither \"wav\" (audio_in files) nor \"device\" (the sound card)"
            ),
        )),
    }
}

/// Checks a `host:port` without resolving it: a non-empty host and a port number.
fn check_host_port(text: &str) -> Result<(), String> {
    let bad = || format!("{text:?} is not host:port");
    let (host, port) = text.trim().rsplit_once(':').ok_or_else(bad)?;
    if host.is_empty() || port.parse::<u16>().is_err() {
        return Err(bad());
    }
    Ok(())
}

impl PhoneFileConfig {
    /// Reads and checks the file at `path`; relative paths in it resolve against its folder.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let base = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        // Absolute, so reports name files a user can open from anywhere.
        let base = std::path::absolute(base).unwrap_or_else(|_| base.to_path_buf());
        Self::parse(path, &text, &base)
    }

    /// Checks `text`, the content of the file at `path` (named in errors and rewritten by the
    /// edits); relative paths resolve against `base`.
    pub fn parse(path: &Path, text: &str, base: &Path) -> Result<Self, ConfigError> {
        let f: FileConfig = toml::from_str(text).map_err(|e| ConfigError::Syntax {
            path: path.to_path_buf(),
            line: e.span().map_or(1, |s| line_at(text, s.start)),
            message: e.message().to_owned(),
        })?;
        let resolve = |p: PathBuf| if p.is_relative() { base.join(p) } else { p };
        let bad = |key: &'static str, reason: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            line: line_of(text, key),
            key,
            reason,
        };
        let number = f
            .number
            .as_deref()
            .map(|n| {
                PhoneNumber::parse(n).map_err(|e| bad("number", format!("{n:?} is not E.164: {e}")))
            })
            .transpose()?;
        let contract = f.contract.trim().parse().map_err(|_| {
            bad(
                "contract",
                format!("{:?} is not a 0x-prefixed 20-byte address", f.contract),
            )
        })?;
        let trust = f
            .trust
            .as_deref()
            .map(|t| parse_checkpoint(t).map_err(|e| bad("trust", e)))
            .transpose()?;
        let media_ip = f
            .media_ip
            .trim()
            .parse()
            .map_err(|_| bad("media_ip", format!("{:?} is not an IP address", f.media_ip)))?;
        let codecs = f
            .codecs
            .iter()
            .map(|c| match c.trim().to_ascii_uppercase().as_str() {
                "OPUS" => Ok(AudioCodec::OPUS),
                "PCMU" => Ok(Codec::Pcmu.into()),
                "PCMA" => Ok(Codec::Pcma.into()),
                _ => Err(bad(
                    "codecs",
                    format!("{c:?} is not a codec: use \"opus\", \"PCMU\" or \"PCMA\""),
                )),
            })
            .collect::<Result<Vec<_>, _>>()?;
        if codecs.is_empty() {
            return Err(bad("codecs", "is empty".into()));
        }
        let key_mode = f.key_mode.parse().map_err(|e| bad("key_mode", e))?;
        let accept_unverified = f
            .accept_unverified
            .as_deref()
            .map(|a| a.parse().map_err(|e| bad("accept_unverified", e)))
            .transpose()?;
        let (sip_addr, sip_failover) = match f.sip.addr.clone() {
            SipAddrs::One(a) => (a, Vec::new()),
            SipAddrs::Several(mut all) if !all.is_empty() => (all.remove(0), all),
            SipAddrs::Several(_) => return Err(bad("sip.addr", "names no address".into())),
        };
        for a in std::iter::once(&sip_addr).chain(&sip_failover) {
            check_host_port(a).map_err(|e| bad("sip.addr", e))?;
        }
        let identity_text = f.sip.identity.as_deref().unwrap_or(&f.sip.domain);
        let sip_identity = IdentityName::parse(identity_text).map_err(|e| {
            let key = if f.sip.identity.is_some() {
                "sip.identity"
            } else {
                "sip.domain"
            };
            bad(
                key,
                format!("{identity_text:?} is not a keystore name: {e}"),
            )
        })?;
        let audio = audio_mode(&f).map_err(|(key, reason)| bad(key, reason))?;
        let record_dir = match (f.record_dir.clone(), &audio) {
            (Some(dir), _) => Some(resolve(dir)),
            (None, AudioMode::Wav) => Some(resolve(PathBuf::from("recordings"))),
            (None, AudioMode::Device(_)) => None,
        };
        if f.onboard_timeout_secs == 0 {
            return Err(bad("onboard_timeout_secs", "must be positive".into()));
        }
        if f.sip.keepalive_secs > MAX_KEEPALIVE_SECS {
            return Err(bad(
                "sip.keepalive_secs",
                format!("must be at most {MAX_KEEPALIVE_SECS} (0 turns keep-alives off)"),
            ));
        }
        if f.sip.register_expires == 0 {
            return Err(bad("sip.register_expires", "must be positive".into()));
        }
        Ok(Self {
            path: path.to_path_buf(),
            number,
            key_file: resolve(f.key_file),
            rpc_url: f.rpc_url,
            contract,
            chain_id: f.chain_id,
            trust,
            wallet_url: f.wallet_url,
            wallet_domain: f.wallet_domain,
            media_ip,
            codecs,
            key_mode,
            auto_answer: f.auto_answer,
            accept_unverified,
            audio,
            audio_in: f.audio_in.map(resolve),
            record_dir,
            keylog: f.keylog.map(resolve),
            control_socket: resolve(f.control_socket),
            // Beside the contacts store unless placed elsewhere: both are the phone's memory
            // of its peers.
            zrtp_cache: f.zrtp_cache.map(resolve).unwrap_or_else(|| {
                let contacts = resolve(f.contacts_file.clone());
                contacts.with_file_name("zrtp-cache.json")
            }),
            contacts_file: resolve(f.contacts_file),
            sip_addr,
            sip_failover,
            sip_domain: f.sip.domain,
            sip_identity,
            transport: f.sip.transport,
            keepalive: (f.sip.keepalive_secs > 0)
                .then(|| Duration::from_secs(f.sip.keepalive_secs)),
            register_expires: f.sip.register_expires,
            onboard_timeout: Duration::from_secs(f.onboard_timeout_secs),
            onboarding_since: None,
        })
    }

    /// The phone's number; an error before onboarding has assigned one.
    pub fn number(&self) -> Result<&PhoneNumber, ConfigError> {
        self.number.as_ref().ok_or_else(|| ConfigError::NoNumber {
            path: self.path.clone(),
        })
    }

    /// The number for messages (empty before onboarding).
    pub fn number_text(&self) -> &str {
        self.number.as_ref().map_or("", |n| n.as_str())
    }

    /// The value of an optional `key` the command `what` needs (`wallet_url`, `wallet_domain`).
    pub fn needed<'a>(
        &self,
        value: &'a Option<String>,
        key: &'static str,
        what: &'static str,
    ) -> Result<&'a str, ConfigError> {
        value.as_deref().ok_or_else(|| ConfigError::Missing {
            path: self.path.clone(),
            key,
            what,
        })
    }

    /// Resolves `sip.addr` (its first address) to the first address it names.
    pub async fn resolve_sip_addr(&self) -> Result<SocketAddr, ConfigError> {
        self.resolve_one(&self.sip_addr).await
    }

    /// Resolves the server's other addresses ([`Self::sip_failover`]), in order.
    pub async fn resolve_sip_failover(&self) -> Result<Vec<SocketAddr>, ConfigError> {
        let mut all = Vec::with_capacity(self.sip_failover.len());
        for a in &self.sip_failover {
            all.push(self.resolve_one(a).await?);
        }
        Ok(all)
    }

    async fn resolve_one(&self, addr: &str) -> Result<SocketAddr, ConfigError> {
        tokio::net::lookup_host(addr)
            .await
            .ok()
            .and_then(|mut a| a.next())
            .ok_or_else(|| ConfigError::Invalid {
                path: self.path.clone(),
                line: None,
                key: "sip.addr",
                reason: format!("{addr:?} is not a reachable host:port"),
            })
    }

    /// The runtime configuration for a phone at the resolved `addr`, with the keys and audio
    /// the file does not hold.
    pub fn phone_config(
        &self,
        addr: SocketAddr,
        identity: Arc<IdentityKey>,
        sip_password: Zeroizing<String>,
        audio: Arc<Vec<i16>>,
        auto_answer: bool,
    ) -> Result<PhoneConfig, ConfigError> {
        let signalling = match self.transport {
            SipTransport::TlsPsk => Signalling::TlsPsk {
                addr,
                server: self.sip_identity.clone(),
            },
            SipTransport::Tcp => Signalling::Tcp { addr },
            SipTransport::Udp => Signalling::Udp { addr },
        };
        Ok(PhoneConfig {
            number: self.number()?.clone(),
            identity,
            sip_password,
            sip_domain: self.sip_domain.clone(),
            signalling,
            // Resolved when connecting ([`Self::resolve_sip_failover`]).
            failover: Vec::new(),
            media_ip: self.media_ip,
            codecs: self.codecs.clone(),
            key_mode: self.key_mode,
            zrtp: Some(Arc::new(
                crate::zrtp_store::ZrtpStore::open(&self.zrtp_cache, &Randomness::os()).map_err(
                    |e| ConfigError::Invalid {
                        path: self.path.clone(),
                        line: None,
                        key: "zrtp_cache",
                        reason: e.to_string(),
                    },
                )?,
            )),
            keylog: self.keylog.clone(),
            // TLS key logging is the binary's choice (SSLKEYLOGFILE), not the file's.
            tls_keylog: None,
            auto_answer,
            accept_unverified: self.accept_unverified,
            audio,
            wideband: false,
            keep_playout: false,
            adaptive_loss_hint: true,
            devices: match &self.audio {
                AudioMode::Device(devices) => Some(devices.clone()),
                AudioMode::Wav => None,
            },
            register_expires: self.register_expires,
            keepalive: self.keepalive,
            mikey_replay_quota: crate::DEFAULT_MIKEY_REPLAY_QUOTA,
            randomness: Randomness::os(),
        })
    }

    /// Pins `(number, hash)` as `trust` (trust on first use, or `chaincall phone trust repin`):
    /// written into the file and into `self`. A new key gets a comment saying where it came from;
    /// an existing one keeps its comments, since they are the user's.
    pub fn pin_trust(&mut self, number: u64, hash: B256) -> Result<(), ConfigError> {
        let value = format!("{number}:{hash}");
        self.edit(|root| {
            let Some(v) = root.get_mut("trust").and_then(|i| i.as_value_mut()) else {
                let mut key = toml_edit::Key::new("trust");
                key.leaf_decor_mut().set_prefix(TRUST_COMMENT);
                root.insert_formatted(&key, toml_edit::value(value.as_str()));
                return;
            };
            let decor = v.decor().clone();
            *v = value.as_str().into();
            *v.decor_mut() = decor;
            // Our own first-use comment would now be wrong; the user's comments stay.
            if let Some(mut key) = root.key_mut("trust")
                && key.leaf_decor().prefix().and_then(|p| p.as_str()) == Some(TRUST_COMMENT)
            {
                key.leaf_decor_mut().set_prefix(REPIN_COMMENT);
            }
        })?;
        self.trust = Some((number, hash));
        Ok(())
    }

    /// Writes the assigned number into the file (the first top-level key, replacing one that is
    /// there) and into `self`.
    pub fn store_number(&mut self, number: PhoneNumber) -> Result<(), ConfigError> {
        self.edit(|root| match root.get_mut("number") {
            Some(item) => {
                // Keeps the comments around the old value.
                let decor = item.as_value().map(|v| v.decor().clone());
                *item = toml_edit::value(number.as_str());
                if let (Some(d), Some(v)) = (decor, item.as_value_mut()) {
                    *v.decor_mut() = d;
                }
            }
            None => {
                root.insert("number", toml_edit::value(number.as_str()));
                // First, as a user looks for it; the other keys keep their order.
                root.sort_values_by(|a, _, b, _| (b.get() == "number").cmp(&(a.get() == "number")));
            }
        })?;
        self.number = Some(number);
        Ok(())
    }

    /// Applies `change` to the file's top-level table, checks the result still loads, and
    /// replaces the file atomically (write beside, then rename).
    fn edit(&self, change: impl FnOnce(&mut toml_edit::Table)) -> Result<(), ConfigError> {
        let text = std::fs::read_to_string(&self.path).map_err(|source| ConfigError::Read {
            path: self.path.clone(),
            source,
        })?;
        let mut doc: toml_edit::DocumentMut =
            text.parse()
                .map_err(|e: toml_edit::TomlError| ConfigError::Syntax {
                    path: self.path.clone(),
                    line: e.span().map_or(1, |s| line_at(&text, s.start)),
                    message: e.message().to_owned(),
                })?;
        change(doc.as_table_mut());
        let out = doc.to_string();
        Self::parse(&self.path, &out, Path::new("."))?;
        let tmp = self.path.with_extension("toml.tmp");
        let write_err = |source| ConfigError::Write {
            path: self.path.clone(),
            source,
        };
        std::fs::write(&tmp, out).map_err(write_err)?;
        std::fs::rename(&tmp, &self.path).map_err(write_err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chaincall_audio_device::DeviceSelector;

    const MINIMAL: &str = "\
# my phone
rpc_url = \"http://127.0.0.1:8545\" # the node
contract = \"0x5FbDB2315678afecb367f032d93F642f64180aa3\"

# the server
[sip]
addr = \"127.0.0.1:5061\"
domain = \"sip.example.org\"
";

    /// `sip.addr` is one `host:port` (old files unchanged) or a list: the server's nodes, the
    /// first connected to and the rest tried in order when it fails; each must be host:port.
    #[test]
    fn sip_addr_takes_one_address_or_the_nodes_of_a_cluster() {
        let dir = tempfile::tempdir().unwrap();
        let parse =
            |text: &str| PhoneFileConfig::parse(&dir.path().join("p.toml"), text, dir.path());
        let one = parse(MINIMAL).unwrap();
        assert_eq!(one.sip_addr, "127.0.0.1:5061");
        assert!(one.sip_failover.is_empty());
        let list = MINIMAL.replace(
            "addr = \"127.0.0.1:5061\"",
            "addr = [\"127.0.0.1:5061\", \"sip2.example.org:5061\", \"127.0.0.3:5061\"]",
        );
        let several = parse(&list).unwrap();
        assert_eq!(several.sip_addr, "127.0.0.1:5061");
        assert_eq!(
            several.sip_failover,
            ["sip2.example.org:5061", "127.0.0.3:5061"]
        );
        for bad in ["addr = []", "addr = [\"127.0.0.1:5061\", \"nowhere\"]"] {
            let e = parse(&MINIMAL.replace("addr = \"127.0.0.1:5061\"", bad)).unwrap_err();
            assert!(e.to_string().contains("sip.addr"), "{bad}: {e}");
        }
    }

    /// The read error names the file; the OS reason comes from `source()` only, so the chain the
    /// CLI prints (`{:#}`) tells each once. Also for the phone's other file errors.
    #[test]
    fn file_errors_tell_path_and_reason_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing.toml");
        let shown = path.display().to_string();
        let err = PhoneFileConfig::load(&path).unwrap_err();
        let os = std::error::Error::source(&err).unwrap().to_string();
        let told = chaincall_io::ErrorChain(&err).to_string();
        assert!(told.starts_with("cannot read the phone config "), "{told}");
        assert_eq!(told.matches(&shown).count(), 1, "{told}");
        assert_eq!(told.matches(&os).count(), 1, "{told}");
        let contacts = crate::contacts::ContactsError::Io {
            path: path.clone(),
            source: std::io::Error::other("disk on fire"),
        };
        let told = chaincall_io::ErrorChain(&contacts).to_string();
        assert_eq!(told, format!("contacts file {shown}: disk on fire"));
        let wav = crate::audio_files::AudioFileError::Write {
            path: path.clone(),
            source: chaincall_media::wav::WavError::Io(std::io::Error::other("disk on fire")),
        };
        let told = chaincall_io::ErrorChain(&wav).to_string();
        assert_eq!(
            told,
            format!("cannot write {shown}: WAV file I/O: disk on fire")
        );
    }

    fn write(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("phone.toml");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    fn error(text: &str) -> String {
        let (_dir, path) = write(text);
        PhoneFileConfig::load(&path).unwrap_err().to_string()
    }

    #[test]
    fn the_example_config_loads_with_paths_beside_it() {
        let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("phone.example.toml");
        let (dir, path) = write(&std::fs::read_to_string(example).unwrap());
        let cfg = PhoneFileConfig::load(&path).unwrap();
        assert_eq!(cfg.number_text(), "+15550100001");
        assert_eq!(
            cfg.key_file,
            std::path::absolute(dir.path().join("phone.key")).unwrap()
        );
        assert_eq!(cfg.codecs, crate::DEFAULT_CODECS.to_vec());
        assert_eq!(cfg.transport, SipTransport::TlsPsk);
        assert_eq!(cfg.keepalive, Some(Duration::from_secs(30)));
        assert_eq!(cfg.trust, None);
        assert_eq!(cfg.onboard_timeout, Duration::from_secs(180));
    }

    #[test]
    fn key_mode_zrtp_and_its_cache_beside_the_contacts_store() {
        let text = MINIMAL.replace(
            "[sip]",
            "key_mode = \"zrtp\"\ncontacts_file = \"state/contacts.json\"\n[sip]",
        );
        let (dir, path) = write(&text);
        let cfg = PhoneFileConfig::load(&path).unwrap();
        assert_eq!(cfg.key_mode, KeyMode::Zrtp);
        let beside = std::path::absolute(dir.path().join("state/zrtp-cache.json")).unwrap();
        assert_eq!(cfg.zrtp_cache, beside);
        let text = MINIMAL.replace("[sip]", "zrtp_cache = \"z.json\"\n[sip]");
        let (dir, path) = write(&text);
        let cfg = PhoneFileConfig::load(&path).unwrap();
        assert_eq!(
            cfg.zrtp_cache,
            std::path::absolute(dir.path().join("z.json")).unwrap()
        );
        let e = error(&MINIMAL.replace("[sip]", "key_mode = \"zrtq\"\n[sip]"));
        assert!(e.contains("(pke, dh-sign, sdes or zrtp)"), "{e}");
    }

    #[test]
    fn codecs_default_to_opus_first_and_take_either_spelling() {
        let (_dir, path) = write(MINIMAL);
        let cfg = PhoneFileConfig::load(&path).unwrap();
        assert_eq!(
            cfg.codecs,
            vec![AudioCodec::OPUS, Codec::Pcmu.into(), Codec::Pcma.into()]
        );
        // Today's G.711-only spelling keeps working; names are case-insensitive.
        let text = MINIMAL.replace("[sip]", "codecs = [\"pcma\", \"Opus\"]\n[sip]");
        let (_dir, path) = write(&text);
        let cfg = PhoneFileConfig::load(&path).unwrap();
        assert_eq!(cfg.codecs, vec![Codec::Pcma.into(), AudioCodec::OPUS]);
        let text = MINIMAL.replace("[sip]", "codecs = [\"PCMU\", \"PCMA\"]\n[sip]");
        let (_dir, path) = write(&text);
        let cfg = PhoneFileConfig::load(&path).unwrap();
        assert_eq!(cfg.codecs, vec![Codec::Pcmu.into(), Codec::Pcma.into()]);
        let e = error(&MINIMAL.replace("[sip]", "codecs = [\"opus\", \"G729\"]\n[sip]"));
        assert!(
            e.contains(
                "phone.toml:6: `codecs` \"G729\" is not a codec: use \"opus\", \"PCMU\" or \"PCMA\""
            ),
            "{e}"
        );
    }

    /// A WAV phone records what it hears (tests and demos check it); a phone on the sound card
    /// keeps a person's conversations only when its file names a `record_dir`.
    #[test]
    fn device_calls_are_recorded_only_when_the_file_asks() {
        let (dir, path) = write(MINIMAL);
        let cfg = PhoneFileConfig::load(&path).unwrap();
        assert_eq!(cfg.record_dir, Some(dir.path().join("recordings")));
        let device = MINIMAL.replace("[sip]", "audio = \"device\"\n[sip]");
        let (_dir, path) = write(&device);
        assert_eq!(PhoneFileConfig::load(&path).unwrap().record_dir, None);
        let asked = MINIMAL.replace("[sip]", "audio = \"device\"\nrecord_dir = \"calls\"\n[sip]");
        let (dir, path) = write(&asked);
        let cfg = PhoneFileConfig::load(&path).unwrap();
        assert_eq!(cfg.record_dir, Some(dir.path().join("calls")));
    }

    #[test]
    fn audio_is_wav_unless_the_file_says_device_and_device_keys_need_it() {
        let (_dir, path) = write(MINIMAL);
        let cfg = PhoneFileConfig::load(&path).unwrap();
        assert_eq!(
            cfg.audio,
            AudioMode::Wav,
            "a file without the key keeps WAV"
        );
        let text = MINIMAL.replace(
            "[sip]",
            "number = \"+15550100001\"\naudio = \"device\"\ninput_device = \"default\"\n\
             output_device = \"plughw:CARD=PCH,DEV=0\"\ndevice_buffer_ms = 300\n[sip]",
        );
        let (_dir, path) = write(&text);
        let cfg = PhoneFileConfig::load(&path).unwrap();
        let AudioMode::Device(devices) = &cfg.audio else {
            panic!("{:?}", cfg.audio);
        };
        assert_eq!(devices.input, DeviceSelector::Default);
        let card = DeviceSelector::Named("plughw:CARD=PCH,DEV=0".into());
        assert_eq!(devices.output, card);
        assert_eq!((devices.buffer_ms, devices.prebuffer_ms), (Some(300), None));
        assert_eq!(devices.processing, VoiceProcessing::default(), "both on");
        let runtime = cfg
            .phone_config(
                "127.0.0.1:5061".parse().unwrap(),
                Arc::new(IdentityKey::generate()),
                Zeroizing::new(String::new()),
                Arc::new(Vec::new()),
                false,
            )
            .unwrap();
        assert_eq!(runtime.devices.as_ref(), Some(devices));
        assert!(cfg.outgoing_audio(1000, 1).unwrap().is_empty());

        let e = error(&MINIMAL.replace("[sip]", "audio = \"alsa\"\n[sip]"));
        assert!(
            e.contains("phone.toml:6: `audio` \"alsa\" is neither \"wav\""),
            "{e}"
        );
        let e = error(&MINIMAL.replace("[sip]", "input_device = \"hw:1\"\n[sip]"));
        assert!(e.contains("`input_device` needs audio = \"device\""), "{e}");
        let e = error(&MINIMAL.replace("[sip]", "noise_suppression = false\n[sip]"));
        assert!(
            e.contains("`noise_suppression` needs audio = \"device\""),
            "{e}"
        );
        let text = "audio = \"device\"\necho_cancellation = false\n[sip]";
        let (_dir, path) = write(&MINIMAL.replace("[sip]", text));
        let cfg = PhoneFileConfig::load(&path).unwrap();
        let AudioMode::Device(devices) = &cfg.audio else {
            panic!("{:?}", cfg.audio);
        };
        assert!(!devices.processing.echo_cancellation && devices.processing.noise_suppression);
        let text = "audio = \"device\"\ndevice_prebuffer_ms = 0\n[sip]";
        let e = error(&MINIMAL.replace("[sip]", text));
        assert!(
            e.contains("`device_prebuffer_ms` must be 1 to 60000"),
            "{e}"
        );
    }

    #[test]
    fn a_bad_value_names_the_file_the_line_and_the_key() {
        let text = MINIMAL.replace("127.0.0.1:5061", "127.0.0.1");
        let e = error(&text);
        assert!(
            e.contains("phone.toml:7: `sip.addr` \"127.0.0.1\" is not host:port"),
            "{e}"
        );
        let e = error(&MINIMAL.replace("0x5FbDB", "0xZZ"));
        assert!(e.contains("phone.toml:3: `contract` "), "{e}");
        let e = error(&MINIMAL.replace("[sip]", "trust = \"7\"\n[sip]"));
        assert!(
            e.contains("phone.toml:6: `trust` \"7\" is not NUMBER:HASH"),
            "{e}"
        );
        let e = error(&MINIMAL.replace("[sip]", "codecs = []\n[sip]"));
        assert!(e.contains("phone.toml:6: `codecs` is empty"), "{e}");
        let e = error(&format!("{MINIMAL}keepalive_secs = 86401\n"));
        assert!(
            e.contains("phone.toml:9: `sip.keepalive_secs` must be at most 86400"),
            "{e}"
        );
        let (_dir, path) = write(&format!("{MINIMAL}keepalive_secs = 0\n"));
        assert_eq!(PhoneFileConfig::load(&path).unwrap().keepalive, None);
        let e = error(&format!("{MINIMAL}register_expires = 0\n"));
        assert!(
            e.contains("phone.toml:9: `sip.register_expires` must be positive"),
            "{e}"
        );
        let e = error(&MINIMAL.replace("[sip]", "onboard_timeout_secs = 0\n[sip]"));
        assert!(
            e.contains("phone.toml:6: `onboard_timeout_secs` must be positive"),
            "{e}"
        );
    }

    #[test]
    fn an_unknown_key_or_broken_toml_names_the_line() {
        let e = error(&MINIMAL.replace("[sip]", "colour = \"red\"\n[sip]"));
        assert!(e.contains("phone.toml:6: unknown field `colour`"), "{e}");
        let e = error(&MINIMAL.replace("domain = ", "domain "));
        assert!(e.contains("phone.toml:8: "), "{e}");
        let e = error("[sip\n");
        assert!(e.contains("phone.toml:1: "), "{e}");
        let e = error("\u{0}\u{ffff}=\"");
        assert!(e.contains("phone.toml:1: "), "{e}");
    }

    #[test]
    fn trust_on_first_use_pins_the_block_and_keeps_the_comments() {
        let (_dir, path) = write(MINIMAL);
        let mut cfg = PhoneFileConfig::load(&path).unwrap();
        let hash = B256::repeat_byte(0xab);
        cfg.pin_trust(0, hash).unwrap();
        assert_eq!(cfg.trust, Some((0, hash)));
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("# my phone\nrpc_url = \"http://127.0.0.1:8545\" # the node\n"));
        assert!(
            text.contains(&format!(
                "{TRUST_COMMENT}trust = \"0:{hash}\"\n\n# the server\n[sip]"
            )),
            "{text}"
        );
        // What was pinned is what the next process trusts.
        assert_eq!(PhoneFileConfig::load(&path).unwrap().trust, Some((0, hash)));
    }

    #[test]
    fn the_assigned_number_goes_first_or_replaces_the_old_one() {
        let (_dir, path) = write(MINIMAL);
        let mut cfg = PhoneFileConfig::load(&path).unwrap();
        assert!(
            cfg.number()
                .unwrap_err()
                .to_string()
                .contains("no `number` yet")
        );
        cfg.store_number("+15550100000".parse().unwrap()).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.starts_with("number = \"+15550100000\"\n# my phone\n"),
            "{text}"
        );
        cfg.store_number("+15550100007".parse().unwrap()).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.starts_with("number = \"+15550100007\"\n# my phone\n"),
            "{text}"
        );
        assert_eq!(text.matches("number =").count(), 1);
        let cfg = PhoneFileConfig::load(&path).unwrap();
        assert_eq!(cfg.number_text(), "+15550100007");
    }
}
