//! sipd configuration: a TOML file (see `crates/sipd/sipd.example.toml`), overridable by flags, or a
//! [`Config`] built in code (`Config { listen: …, ..Config::default() }`).
//!
//! The file is parsed once into validated types ([`Listen`], `SocketAddr`, `Duration`, alloy's
//! `Address`, enums): a bad value is refused while reading, with the file, line and key in the error
//! ([`ConfigError::Parse`], from `chaincall-config`). The TOML keys are the documented ones (`t1_ms`, `nonce_lifetime_secs`,
//! …); only the Rust fields carry units in their types instead of their names.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use alloy::primitives::{Address, B256};
use chaincall_identity::DomainName;
use chaincall_sip::digest::Algorithm;
use chaincall_tls_psk::TlsVersion;
use serde::{Deserialize, Deserializer, de::Error as _};

/// A listener's transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ListenTransport {
    /// UDP (RFC 3261 §18.1.1 / §18.2.1).
    Udp,
    /// TCP (framed by Content-Length, §18.3).
    Tcp,
    /// TLS with an external PSK from chaincall's handshake (RFC 3261 §26.2 with RFC 4279 / RFC 8446
    /// PSK in place of certificates); needs the `[tls_psk]` section.
    Tls,
}

/// A listening address with its transport; in the file `udp:IP:PORT`, `tcp:IP:PORT` or
/// `tls:IP:PORT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listen {
    /// The transport.
    pub transport: ListenTransport,
    /// The socket address (port 0: the OS picks one).
    pub addr: SocketAddr,
}

impl Listen {
    /// A UDP listener.
    pub fn udp(addr: SocketAddr) -> Listen {
        Listen {
            transport: ListenTransport::Udp,
            addr,
        }
    }

    /// A TCP listener.
    pub fn tcp(addr: SocketAddr) -> Listen {
        Listen {
            transport: ListenTransport::Tcp,
            addr,
        }
    }

    /// A TLS-PSK listener.
    pub fn tls(addr: SocketAddr) -> Listen {
        Listen {
            transport: ListenTransport::Tls,
            addr,
        }
    }

    /// The socket address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl std::fmt::Display for Listen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let proto = match self.transport {
            ListenTransport::Udp => "udp",
            ListenTransport::Tcp => "tcp",
            ListenTransport::Tls => "tls",
        };
        write!(f, "{proto}:{}", self.addr)
    }
}

impl FromStr for Listen {
    type Err = ConfigError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || {
            ConfigError::Invalid(format!(
                "listen address {s:?} is not udp:IP:PORT, tcp:IP:PORT or tls:IP:PORT"
            ))
        };
        let (proto, addr) = s.split_once(':').ok_or_else(bad)?;
        let addr: SocketAddr = addr.parse().map_err(|_| bad())?;
        let transport = match proto.to_ascii_lowercase().as_str() {
            "udp" => ListenTransport::Udp,
            "tcp" => ListenTransport::Tcp,
            "tls" => ListenTransport::Tls,
            _ => return Err(bad()),
        };
        Ok(Listen { transport, addr })
    }
}

impl<'de> Deserialize<'de> for Listen {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        parsed(d)
    }
}

/// A block of the keystore's chain the operator checked out of band: `NUMBER:0xHASH` in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checkpoint {
    /// The block number.
    pub number: u64,
    /// The block's hash.
    pub hash: B256,
}

impl FromStr for Checkpoint {
    type Err = ConfigError;
    fn from_str(c: &str) -> Result<Self, Self::Err> {
        let bad = || {
            ConfigError::Invalid(format!(
                "checkpoint {c:?} is not NUMBER:0xHASH (a block number and its 32-byte hash)"
            ))
        };
        let (n, h) = c.split_once(':').ok_or_else(bad)?;
        Ok(Checkpoint {
            number: n.trim().parse().map_err(|_| bad())?,
            hash: h.trim().parse().map_err(|_| bad())?,
        })
    }
}

impl<'de> Deserialize<'de> for Checkpoint {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        parsed(d)
    }
}

/// Configuration problems.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}")]
    Read {
        /// The path.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML, or a value in it is refused: the file, line and key.
    #[error(transparent)]
    Parse(#[from] chaincall_config::TomlError),
    /// A value is out of range or inconsistent (a [`Config`] built in code).
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// Deserializes a string through `T`'s `FromStr`; the parse error becomes a serde error (toml puts
/// the span on it).
fn parsed<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: FromStr,
    T::Err: std::fmt::Display,
{
    let s = String::deserialize(d)?;
    s.parse().map_err(D::Error::custom)
}

/// An optional string value where `""` means none (how sipd's files have always said "none").
fn optional<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: FromStr,
    T::Err: std::fmt::Display,
{
    match Option::<String>::deserialize(d)? {
        None => Ok(None),
        Some(s) if s.trim().is_empty() => Ok(None),
        Some(s) => s.trim().parse().map(Some).map_err(D::Error::custom),
    }
}

fn socket_addr<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SocketAddr>, D::Error> {
    optional::<D, SocketAddr>(d).map_err(|_| D::Error::custom("expected IP:PORT"))
}

fn secs<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    u64::deserialize(d).map(Duration::from_secs)
}

fn millis<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    u64::deserialize(d).map(Duration::from_millis)
}

fn tls_version<'de, D: Deserializer<'de>>(d: D) -> Result<TlsVersion, D::Error> {
    parse_tls_version(&String::deserialize(d)?).map_err(D::Error::custom)
}

fn algorithms<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Algorithm>, D::Error> {
    Vec::<String>::deserialize(d)?
        .iter()
        .map(|a| match Algorithm::parse(a) {
            // `-sess` names the same hash; sipd offers the plain variant.
            Ok((alg, _)) => Ok(alg),
            Err(_) => Err(D::Error::custom(format!(
                "unknown digest algorithm {a:?} (SHA-256, SHA-512-256 or MD5)"
            ))),
        })
        .collect()
}

fn listens<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Listen>, D::Error> {
    let l = Vec::<Listen>::deserialize(d)?;
    if l.is_empty() {
        return Err(D::Error::custom("no listen address"));
    }
    Ok(l)
}

/// A section whose values are checked together once read.
trait Section: Sized {
    /// What is inconsistent, if anything.
    fn check(&self) -> Result<(), ConfigError>;
}

/// Reads a section and checks it, so that its error carries the section's place in the file.
fn checked<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Section + Deserialize<'de>,
{
    let v = T::deserialize(d)?;
    v.check()
        .map_err(|e| D::Error::custom(invalid_message(e)))?;
    Ok(v)
}

fn checked_tls<'de, D: Deserializer<'de>>(d: D) -> Result<Option<TlsPskSettings>, D::Error> {
    checked::<D, TlsPskSettings>(d).map(Some)
}

/// The message of an [`ConfigError::Invalid`] without its prefix (the place says it is invalid).
fn invalid_message(e: ConfigError) -> String {
    match e {
        ConfigError::Invalid(m) => m,
        other => other.to_string(),
    }
}

/// Authentication mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// Digest auth against the `subscriber` table (REGISTER: 401, INVITE from our domain: 407).
    Digest,
    /// Trusted network: no authentication (for benchmarks and closed networks).
    None,
}

/// The whole configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Listening sockets, `udp:IP:PORT` / `tcp:IP:PORT` / `tls:IP:PORT` (TLS-PSK, see `tls_psk`);
    /// at least one.
    #[serde(deserialize_with = "listens")]
    pub listen: Vec<Listen>,
    /// The SIP domain served (registrar domain, digest realm). None (or `""` in the file): the
    /// advertised IP.
    #[serde(deserialize_with = "optional")]
    pub domain: Option<String>,
    /// The address put in Via and Record-Route. None (or `""`): the first listen address.
    #[serde(deserialize_with = "socket_addr")]
    pub advertise: Option<SocketAddr>,
    /// Requests for targets that are not registered go here (`IP:PORT`), e.g. a PSTN gateway.
    #[serde(deserialize_with = "socket_addr")]
    pub static_route: Option<SocketAddr>,
    /// The media relay (rtpengine) for calls with a party behind NAT, or every call.
    #[serde(deserialize_with = "checked")]
    pub relay: RelayConfig,
    /// Authentication settings.
    #[serde(deserialize_with = "checked")]
    pub auth: AuthConfig,
    /// Registrar settings.
    #[serde(deserialize_with = "checked")]
    pub registrar: RegistrarConfig,
    /// Where registrations live: in memory, or a PostgreSQL `location` table.
    #[serde(deserialize_with = "checked")]
    pub location: LocationConfig,
    /// Protection limits.
    #[serde(deserialize_with = "checked")]
    pub limits: LimitsConfig,
    /// `IP:PORT` for the Prometheus metrics endpoint (`GET /metrics`); none when absent or `""`.
    #[serde(deserialize_with = "socket_addr")]
    pub metrics_listen: Option<SocketAddr>,
    /// Transaction timer base values (RFC 3261 §17.1.1.1).
    #[serde(deserialize_with = "checked")]
    pub timers: TimersConfig,
    /// TLS-PSK settings, required when a `tls:` listener is configured.
    #[serde(deserialize_with = "checked_tls")]
    pub tls_psk: Option<TlsPskSettings>,
    /// Caller-identity policy.
    pub policy: PolicyConfig,
    /// Verifying callers' PASSporTs on ingress (RFC 8224).
    pub identity: IdentityConfig,
    /// Other chaincall domains calls are exchanged with, by domain name (docs/trapezoid.md).
    #[serde(deserialize_with = "checked_peers")]
    pub peers: BTreeMap<String, PeerConfig>,
    /// The other nodes serving this domain and the links to them (docs/sipd.md "Cluster").
    pub cluster: crate::cluster::ClusterConfig,
}

/// One `[peers."DOMAIN"]` entry: another chaincall domain, reached over a sipd-to-sipd TLS-PSK
/// link whose handshake proves that domain's on-chain key (docs/trapezoid.md).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerConfig {
    /// The peer's TLS-PSK listener, `HOST:PORT` (a host name is resolved at each connect).
    /// Empty with `srv = true`.
    #[serde(default)]
    pub addr: String,
    /// Find the peer's listener by DNS SRV (RFC 3263 §4.2) instead of `addr`: `_sips._tcp.DOMAIN`,
    /// else `_sip._tcp.DOMAIN`, ordered by priority and weight (RFC 2782), then the targets' A
    /// and AAAA records, each answer reused for its TTL.
    #[serde(default)]
    pub srv: bool,
    /// The DNS server the SRV and address look-ups ask (`dns_server = "IP:PORT"`, with `srv`);
    /// default: the system's (`/etc/resolv.conf`).
    #[serde(default)]
    pub dns_server: Option<SocketAddr>,
    /// E.164 prefixes (`+` and digits) of the numbers the peer serves: a call to one of them at
    /// our domain goes to the peer.
    #[serde(default)]
    pub numbers: Vec<String>,
    /// How often a link that is up re-reads the peer's key on chain (`recheck_secs`, at least
    /// 1; also when the link's PSK expires): a key revoked or changed since the handshake closes
    /// the link. Default 60 s.
    #[serde(
        rename = "recheck_secs",
        default = "peer_recheck",
        deserialize_with = "secs"
    )]
    pub recheck: Duration,
}

impl PeerConfig {
    /// A peer at `addr` (`HOST:PORT`) with no number prefixes, its key re-checked every 60 s.
    pub fn new(addr: impl Into<String>) -> Self {
        PeerConfig {
            addr: addr.into(),
            srv: false,
            dns_server: None,
            numbers: Vec::new(),
            recheck: peer_recheck(),
        }
    }
}

fn peer_recheck() -> Duration {
    Duration::from_secs(60)
}

fn checked_peers<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, PeerConfig>, D::Error> {
    let peers = BTreeMap::<String, PeerConfig>::deserialize(d)?;
    check_peers(&peers).map_err(|e| D::Error::custom(invalid_message(e)))?;
    Ok(peers)
}

/// Each key a domain name, each `addr` `HOST:PORT`, each prefix `+` and digits.
fn check_peers(peers: &BTreeMap<String, PeerConfig>) -> Result<(), ConfigError> {
    for (domain, peer) in peers {
        let bad = |what: String| ConfigError::Invalid(format!("peers.\"{domain}\": {what}"));
        DomainName::parse(domain).map_err(|e| bad(e.to_string()))?;
        if domain.to_ascii_lowercase() != *domain {
            return Err(bad("write the domain in lower case".into()));
        }
        let port = peer
            .addr
            .rsplit_once(':')
            .map(|(h, p)| (h, p.parse::<u16>()));
        match (peer.srv, peer.addr.is_empty()) {
            (true, false) => return Err(bad("addr and srv = true: give one".into())),
            (false, true) => return Err(bad("addr HOST:PORT (or srv = true) is needed".into())),
            (false, false) if !matches!(port, Some((h, Ok(p))) if !h.is_empty() && p != 0) => {
                return Err(bad(format!("addr {:?} is not HOST:PORT", peer.addr)));
            }
            _ => {}
        }
        if peer.dns_server.is_some() && !peer.srv {
            return Err(bad("dns_server is for srv = true".into()));
        }
        if peer.recheck < Duration::from_secs(1) {
            return Err(bad("recheck_secs must be at least 1".into()));
        }
        for n in &peer.numbers {
            let digits = n.strip_prefix('+').unwrap_or("");
            if digits.is_empty() || digits.len() > 15 || !digits.bytes().all(|b| b.is_ascii_digit())
            {
                return Err(bad(format!(
                    "number prefix {n:?} is not + and 1 to 15 digits"
                )));
            }
        }
    }
    Ok(())
}

/// `[identity]`: whether sipd verifies the PASSporT (RFC 8224 Identity header) of an initial
/// INVITE whose From user is an E.164 number, against that number's key on chain
/// (docs/caller-identity.md). Reads the keystore `[tls_psk]` names, on chain `[tls_psk] chain_id`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IdentityConfig {
    /// What to do with the result.
    pub verify: VerifyMode,
}

/// See [`IdentityConfig::verify`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VerifyMode {
    /// No verification: INVITEs are forwarded as before (the callee's phone still verifies).
    #[default]
    Off,
    /// Verify and forward every call, with `;verstat=TN-Validation-Passed` or
    /// `;verstat=TN-Validation-Failed` in the From URI's user part.
    Mark,
    /// Verify; a call claiming a number with an approved key on chain and no valid PASSporT is
    /// answered with the RFC 8224 status (428, 436, 437, 438, 403 Stale Date), a valid one is
    /// forwarded marked `TN-Validation-Passed`.
    Enforce,
}

/// `[policy]`: what sipd does with calls that claim an identity it cannot vouch for.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {
    /// An initial INVITE whose From names another domain but whose user part is one of our
    /// subscribers (someone outside claiming a local number). Needs `[auth] mode = "digest"`
    /// (the subscriber table says who is local).
    pub foreign_caller_with_local_number: ForeignCallerPolicy,
}

/// See [`PolicyConfig::foreign_caller_with_local_number`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ForeignCallerPolicy {
    /// 403 "Forbidden (foreign domain claims a local number)", a WARN line and
    /// `sipd_foreign_local_number_total`.
    #[default]
    Refuse,
    /// Forward it with `;verstat=TN-Validation-Failed` in the From URI's user part (3GPP TS 24.229
    /// §7.2A.20), which chaincall phones show as a likely spoof; counted as well.
    Mark,
}

/// `[tls_psk]`: the TLS-PSK transport. Phones run chaincall's handshake (STS or NSL) against the
/// server's on-chain identity, then open TLS with the PSK it yields on the same connection.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsPskSettings {
    /// The server's identity in the keystore: its domain name (e.g. `sip.example.org`).
    #[serde(deserialize_with = "parsed")]
    pub identity: DomainName,
    /// File holding the server's hex 32-byte P-256 identity secret (its public half approved on
    /// chain under `identity`).
    pub key_file: PathBuf,
    /// Ethereum JSON-RPC URL of a node holding the keystore contract.
    pub rpc_url: String,
    /// The keystore contract's address (`0x…`).
    pub contract: Address,
    /// Chain id the node must report; any when absent.
    #[serde(default)]
    pub chain_id: Option<u64>,
    /// Lowest TLS version accepted (`min_version = "1.2"` or `"1.3"`). Default 1.2.
    #[serde(default = "tls12", deserialize_with = "tls_version")]
    pub min_version: TlsVersion,
    /// Highest TLS version offered (`max_version`). Default 1.3.
    #[serde(default = "tls13", deserialize_with = "tls_version")]
    pub max_version: TlsVersion,
    /// How long a handshake's PSK opens new connections (`psk_lifetime_secs`). Default 3600 s.
    #[serde(
        rename = "psk_lifetime_secs",
        default = "psk_lifetime",
        deserialize_with = "secs"
    )]
    pub psk_lifetime: Duration,
    /// Time allowed for the handshake and for the TLS set-up, each (`handshake_timeout_secs`).
    /// Default 10 s.
    #[serde(
        rename = "handshake_timeout_secs",
        default = "handshake_timeout",
        deserialize_with = "secs"
    )]
    pub handshake_timeout: Duration,
    /// Accept NSL (public-key handshake without forward secrecy) besides STS. Default true.
    #[serde(default = "yes")]
    pub accept_nsl: bool,
    /// How long a keystore answer is reused (`key_cache_secs`; a revocation takes effect within
    /// it). Default 5 s.
    #[serde(
        rename = "key_cache_secs",
        default = "key_cache",
        deserialize_with = "secs"
    )]
    pub key_cache: Duration,
    /// How phones' keys read from `rpc_url` are trusted (docs/verified-lookups.md). Default
    /// `checkpoint`: every key is proven against headers linked to `checkpoint`.
    #[serde(default)]
    pub trust: KeyTrustMode,
    /// `NUMBER:0xHASH`, a block of the keystore's chain the operator checked out of band (trust
    /// `checkpoint`). Keep it within 100,000 blocks of the head.
    #[serde(default)]
    pub checkpoint: Option<Checkpoint>,
    /// Independently operated JSON-RPC URLs that must agree on each header (trust `quorum`).
    #[serde(default)]
    pub quorum_urls: Vec<String>,
    /// How many of `quorum_urls` must agree, a strict majority (trust `quorum`).
    #[serde(default)]
    pub quorum_k: usize,
    /// Where to append TLS secrets in the NSS key log format, for Wireshark; none unless set
    /// (`chaincall sipd serve` fills it from `SSLKEYLOGFILE`).
    #[serde(default)]
    pub keylog_file: Option<PathBuf>,
}

/// `[tls_psk] trust`: which keystore answers sipd believes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyTrustMode {
    /// Proven against headers linked by parent hashes to the pinned `checkpoint` (the default).
    #[default]
    Checkpoint,
    /// Proven against headers on whose hash `quorum_k` of `quorum_urls` agree.
    Quorum,
    /// `getClient` from `rpc_url`, believed without proof: only for a node the operator runs.
    Provider,
}

impl TlsPskSettings {
    /// Settings for `identity` on the keystore `contract` behind `rpc_url`, with the file's
    /// defaults for the rest (trust `checkpoint`, which needs [`TlsPskSettings::checkpoint`] set).
    pub fn new(
        identity: DomainName,
        key_file: PathBuf,
        rpc_url: String,
        contract: Address,
    ) -> Self {
        TlsPskSettings {
            identity,
            key_file,
            rpc_url,
            contract,
            chain_id: None,
            min_version: tls12(),
            max_version: tls13(),
            psk_lifetime: psk_lifetime(),
            handshake_timeout: handshake_timeout(),
            accept_nsl: true,
            key_cache: key_cache(),
            trust: KeyTrustMode::default(),
            checkpoint: None,
            quorum_urls: Vec::new(),
            quorum_k: 0,
            keylog_file: None,
        }
    }
}

impl Section for TlsPskSettings {
    fn check(&self) -> Result<(), ConfigError> {
        match self.trust {
            KeyTrustMode::Checkpoint => {
                if self.checkpoint.is_none() {
                    return Err(ConfigError::Invalid(
                        "tls_psk: trust = \"checkpoint\" (the default) needs checkpoint = \"NUMBER:0xHASH\"; \
                         or set trust = \"quorum\" with quorum_urls, or trust = \"provider\" to believe rpc_url"
                            .into(),
                    ));
                }
            }
            KeyTrustMode::Quorum => {
                // The chain crate's own check: distinct servers, a strict majority of them.
                chaincall_chain::verified::HeaderTrust::quorum(
                    self.quorum_urls.clone(),
                    self.quorum_k,
                )
                .map_err(|e| {
                    ConfigError::Invalid(format!(
                        "tls_psk: trust = \"quorum\" needs quorum_k, a strict majority of \
                             distinct quorum_urls: {e}"
                    ))
                })?;
            }
            KeyTrustMode::Provider => {}
        }
        if self.min_version == TlsVersion::Tls13 && self.max_version == TlsVersion::Tls12 {
            return Err(ConfigError::Invalid(
                "tls_psk: min_version above max_version".into(),
            ));
        }
        if self.psk_lifetime.is_zero() || self.handshake_timeout.is_zero() {
            return Err(ConfigError::Invalid(
                "tls_psk: psk_lifetime_secs and handshake_timeout_secs must be > 0".into(),
            ));
        }
        Ok(())
    }
}

fn tls12() -> TlsVersion {
    TlsVersion::Tls12
}
fn tls13() -> TlsVersion {
    TlsVersion::Tls13
}
fn psk_lifetime() -> Duration {
    Duration::from_secs(3600)
}
fn handshake_timeout() -> Duration {
    Duration::from_secs(10)
}
fn yes() -> bool {
    true
}
fn key_cache() -> Duration {
    Duration::from_secs(5)
}

/// Parses `"1.2"` / `"1.3"` (also `TLSv1.2`, `tls1.3`).
pub fn parse_tls_version(s: &str) -> Result<TlsVersion, ConfigError> {
    let v = s.trim().to_ascii_lowercase();
    match v.trim_start_matches("tlsv").trim_start_matches("tls") {
        "1.2" => Ok(TlsVersion::Tls12),
        "1.3" => Ok(TlsVersion::Tls13),
        _ => Err(ConfigError::Invalid(format!(
            "TLS version {s:?} is not \"1.2\" or \"1.3\""
        ))),
    }
}

/// `[relay]`: which calls sipd sends through rtpengine, driven over its NG protocol
/// (docs/sipd.md, docs/relay.md). The relay only ever sees the SDP without key lines, so it
/// carries SRTP it cannot read.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RelayConfig {
    /// Which calls are relayed.
    pub mode: RelayMode,
    /// rtpengine's NG control address (`IP:PORT`, `--listen-ng`); required unless `mode =
    /// "never"`.
    #[serde(deserialize_with = "socket_addr")]
    pub rtpengine: Option<SocketAddr>,
    /// How long one NG command may take, retransmissions included (`timeout_ms`); a call whose
    /// offer or answer gets no reply in time fails with 503.
    #[serde(rename = "timeout_ms", deserialize_with = "millis")]
    pub timeout: Duration,
    /// How long a relayed call may last before sipd deletes its relay session (`max_call_secs`):
    /// sipd keeps no dialog state beyond this, so a call whose BYE never comes (a phone that
    /// vanished) does not hold relay ports for ever. Kamailio's dialog default, 12 hours.
    #[serde(rename = "max_call_secs", deserialize_with = "secs")]
    pub max_call: Duration,
}

/// See [`RelayConfig::mode`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RelayMode {
    /// No call is relayed (media goes directly between the phones).
    #[default]
    Never,
    /// Calls where the caller or the callee is behind NAT (docs/sipd.md, "Phones behind NAT").
    Nat,
    /// Every call with an SDP offer in its INVITE.
    Always,
}

impl Default for RelayConfig {
    fn default() -> Self {
        RelayConfig {
            mode: RelayMode::Never,
            rtpengine: None,
            timeout: Duration::from_millis(2000),
            max_call: Duration::from_secs(12 * 3600),
        }
    }
}

impl Section for RelayConfig {
    fn check(&self) -> Result<(), ConfigError> {
        if self.mode != RelayMode::Never && self.rtpengine.is_none() {
            return Err(ConfigError::Invalid(
                "relay: mode = \"nat\" or \"always\" needs rtpengine = \"IP:PORT\"".into(),
            ));
        }
        if self.timeout.is_zero() || self.max_call.is_zero() {
            return Err(ConfigError::Invalid(
                "relay: timeout_ms and max_call_secs must be > 0".into(),
            ));
        }
        Ok(())
    }
}

/// RFC 3261 timer bases; the defaults are the RFC's (T1 500 ms, T2 4 s, T4 5 s).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TimersConfig {
    /// T1, RTT estimate (`t1_ms`). Timers B, F, H, J are 64·T1.
    #[serde(rename = "t1_ms", deserialize_with = "millis")]
    pub t1: Duration,
    /// T2, maximum retransmission interval (`t2_ms`).
    #[serde(rename = "t2_ms", deserialize_with = "millis")]
    pub t2: Duration,
    /// T4, maximum message lifetime in the network (`t4_ms`).
    #[serde(rename = "t4_ms", deserialize_with = "millis")]
    pub t4: Duration,
    /// Proxy Timer C (RFC 3261 §16.6 step 11, §16.8; `c_secs`): how long a forwarded INVITE may
    /// ring (each provisional response restarts it). When it fires sipd CANCELs the branch and
    /// answers 408 upstream, so a callee that rings forever cannot hold a transaction forever.
    /// The RFC asks for more than 3 minutes.
    #[serde(rename = "c_secs", deserialize_with = "secs")]
    pub timer_c: Duration,
}

impl Default for TimersConfig {
    fn default() -> Self {
        TimersConfig {
            t1: Duration::from_millis(500),
            t2: Duration::from_millis(4000),
            t4: Duration::from_millis(5000),
            timer_c: Duration::from_secs(181),
        }
    }
}

impl Section for TimersConfig {
    fn check(&self) -> Result<(), ConfigError> {
        if self.t1.is_zero() || self.t2 < self.t1 || self.t4.is_zero() || self.timer_c.is_zero() {
            return Err(ConfigError::Invalid(
                "timers: need 0 < t1_ms <= t2_ms, t4_ms > 0 and c_secs > 0".into(),
            ));
        }
        Ok(())
    }
}

/// Authentication settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// `digest` or `none`.
    pub mode: AuthMode,
    /// sqlx URL of the database holding the Kamailio `subscriber` table:
    /// `sqlite://path/to/file.db` or `postgres://user:pass@host/db`.
    pub database: String,
    /// Create the `subscriber` table if it does not exist.
    pub create_schema: bool,
    /// Digest algorithms offered, most preferred first (RFC 8760 §2.4): `SHA-256`, `SHA-512-256`,
    /// `MD5`.
    #[serde(deserialize_with = "algorithms")]
    pub algorithms: Vec<Algorithm>,
    /// User-Agent products challenged with MD5 only (when `algorithms` has MD5): clients that fail
    /// as soon as any challenge names an algorithm they lack (baresip 1.0 with SHA-256). Matched
    /// case-insensitively on the User-Agent header's first product token (`baresip` in
    /// `baresip v1.0.0 (x86_64/linux)`); every other client keeps the full list.
    pub md5_only_user_agents: Vec<String>,
    /// Nonce lifetime (`nonce_lifetime_secs`; an expired nonce gets `stale=true`).
    #[serde(rename = "nonce_lifetime_secs", deserialize_with = "secs")]
    pub nonce_lifetime: Duration,
    /// Authenticate INVITEs whose From is in our domain (407 Proxy-Authenticate).
    pub invite: bool,
    /// How long a subscriber row read from the database is reused (`credentials_cache_secs`). A
    /// removed or changed row (the wallet server's revoke) takes effect after at most this long;
    /// zero reads the database for every authenticated request.
    #[serde(rename = "credentials_cache_secs", deserialize_with = "secs")]
    pub credentials_cache: Duration,
    /// Most subscriber rows (and "no such user" answers) kept in the credentials cache; the least
    /// recently used is dropped first. Bounds the memory a flood of invented usernames can take.
    pub credentials_cache_entries: usize,
    /// How long a request waits for its subscriber look-up (`lookup_timeout_ms`) before it is
    /// answered 503 (the look-up runs beside the server loop; other traffic is not held up).
    #[serde(rename = "lookup_timeout_ms", deserialize_with = "millis")]
    pub lookup_timeout: Duration,
}

impl Section for AuthConfig {
    fn check(&self) -> Result<(), ConfigError> {
        if self.mode == AuthMode::Digest && self.algorithms.is_empty() {
            return Err(ConfigError::Invalid(
                "digest auth needs at least one algorithm".into(),
            ));
        }
        if let Some(bad) = self
            .md5_only_user_agents
            .iter()
            .find(|p| p.is_empty() || p.contains(|c: char| c.is_whitespace() || "/()".contains(c)))
        {
            return Err(ConfigError::Invalid(format!(
                "auth.md5_only_user_agents: {bad:?} is not a product token (a name such as \"baresip\", \
                 without spaces, a version or a comment)"
            )));
        }
        if self.credentials_cache_entries == 0 || self.lookup_timeout.is_zero() {
            return Err(ConfigError::Invalid(
                "auth: credentials_cache_entries and lookup_timeout_ms must be > 0".into(),
            ));
        }
        Ok(())
    }
}

/// Registrar settings (RFC 3261 §10.3).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegistrarConfig {
    /// Expiry when the REGISTER gives none.
    pub default_expires: u32,
    /// Shorter non-zero expiries get 423 Interval Too Brief.
    pub min_expires: u32,
    /// Longer expiries are cut to this.
    pub max_expires: u32,
    /// Contacts per address-of-record.
    pub max_contacts: usize,
}

impl Section for RegistrarConfig {
    fn check(&self) -> Result<(), ConfigError> {
        if self.min_expires > self.max_expires || self.max_contacts == 0 {
            return Err(ConfigError::Invalid(
                "registrar: min_expires > max_expires or max_contacts = 0".into(),
            ));
        }
        Ok(())
    }
}

/// The location service's backend (`[location] backend`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LocationBackend {
    /// In this process's memory: the default, no database server; a restart forgets every phone.
    #[default]
    Memory,
    /// A PostgreSQL `location` table (Kamailio usrloc's columns): registrations survive restarts.
    Postgres,
}

/// `[location]`: where registrations live. Its `Debug` shows the database URL without its
/// password.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LocationConfig {
    /// `memory` or `postgres`.
    pub backend: LocationBackend,
    /// `postgres://user:pass@host/db` for the `postgres` backend (its password is never logged).
    pub database: String,
    /// This node's name, stored with each binding it makes (`node_id` column).
    pub node_id: String,
    /// Seconds an address-of-record's bindings read from the database are reused before it is
    /// read again (`cache_secs`); while the database is unreachable they keep being used.
    #[serde(rename = "cache_secs", deserialize_with = "secs")]
    pub cache: Duration,
    /// Addresses-of-record kept in that cache at most; least recently used dropped first.
    pub cache_entries: usize,
}

impl std::fmt::Debug for LocationConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocationConfig")
            .field("backend", &self.backend)
            .field(
                "database",
                &crate::location::postgres::redact_url(&self.database),
            )
            .field("node_id", &self.node_id)
            .field("cache", &self.cache)
            .field("cache_entries", &self.cache_entries)
            .finish()
    }
}

impl Default for LocationConfig {
    fn default() -> Self {
        LocationConfig {
            backend: LocationBackend::Memory,
            database: String::new(),
            node_id: "sipd".into(),
            cache: Duration::from_secs(5),
            cache_entries: 100_000,
        }
    }
}

impl Section for LocationConfig {
    fn check(&self) -> Result<(), ConfigError> {
        if self.backend == LocationBackend::Postgres
            && !(self.database.starts_with("postgres://")
                || self.database.starts_with("postgresql://"))
        {
            return Err(ConfigError::Invalid(
                "location: backend = \"postgres\" needs database = \"postgres://…\"".into(),
            ));
        }
        if !valid_node_id(&self.node_id) || self.cache_entries == 0 {
            return Err(ConfigError::Invalid(
                "location: node_id must be 1 to 64 letters, digits, '.', '_' or '-', and \
                 cache_entries > 0"
                    .into(),
            ));
        }
        Ok(())
    }
}

/// Protection limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Largest message accepted, in bytes.
    pub max_message_size: usize,
    /// Most header fields per message.
    pub max_headers: usize,
    /// TCP connections idle this long are closed (`tcp_idle_secs`).
    #[serde(rename = "tcp_idle_secs", deserialize_with = "secs")]
    pub tcp_idle: Duration,
    /// Most concurrent TCP connections.
    pub max_tcp_connections: usize,
    /// REGISTERs per second per source IP (token bucket refill); 0 disables.
    pub register_rate: f64,
    /// INVITEs per second per source IP; 0 disables.
    pub invite_rate: f64,
    /// Bucket size (burst) for both limits.
    pub burst: f64,
    /// Live transactions at most (memory bound).
    pub max_transactions: usize,
}

impl Section for LimitsConfig {
    fn check(&self) -> Result<(), ConfigError> {
        if self.max_message_size < 1024 || self.max_headers < 10 {
            return Err(ConfigError::Invalid(
                "limits too small to carry a SIP message".into(),
            ));
        }
        Ok(())
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: vec![Listen::udp(SocketAddr::from(([127, 0, 0, 1], 5060)))],
            domain: None,
            advertise: None,
            static_route: None,
            relay: RelayConfig::default(),
            auth: AuthConfig::default(),
            registrar: RegistrarConfig::default(),
            location: LocationConfig::default(),
            limits: LimitsConfig::default(),
            metrics_listen: None,
            timers: TimersConfig::default(),
            tls_psk: None,
            policy: PolicyConfig::default(),
            identity: IdentityConfig::default(),
            peers: BTreeMap::new(),
            cluster: crate::cluster::ClusterConfig::default(),
        }
    }
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            mode: AuthMode::Digest,
            database: "sqlite://sipd.db".into(),
            create_schema: true,
            algorithms: vec![Algorithm::Sha256, Algorithm::Md5],
            md5_only_user_agents: vec!["baresip".into()],
            nonce_lifetime: Duration::from_secs(300),
            invite: true,
            credentials_cache: Duration::from_secs(30),
            credentials_cache_entries: 50_000,
            lookup_timeout: Duration::from_millis(2_000),
        }
    }
}

impl Default for RegistrarConfig {
    fn default() -> Self {
        RegistrarConfig {
            default_expires: 3600,
            min_expires: 60,
            max_expires: 7200,
            max_contacts: 10,
        }
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_message_size: 16 * 1024,
            max_headers: 100,
            tcp_idle: Duration::from_secs(300),
            max_tcp_connections: 4096,
            register_rate: 20.0,
            invite_rate: 0.0,
            burst: 40.0,
            max_transactions: 200_000,
        }
    }
}

impl Config {
    /// Reads and validates a TOML file; errors name the file, line and key.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse_named(&path.display().to_string(), &text)
    }

    /// Parses and validates TOML text; `file` names it in errors.
    pub fn parse_named(file: &str, text: &str) -> Result<Config, ConfigError> {
        Ok(chaincall_config::from_str(file, text)?)
    }

    /// The listen addresses (at least one once validated).
    pub fn listens(&self) -> &[Listen] {
        &self.listen
    }

    /// Checks a configuration built in code the way reading a file does.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.listen.is_empty() {
            return Err(ConfigError::Invalid("no listen address".into()));
        }
        self.auth.check()?;
        self.relay.check()?;
        self.registrar.check()?;
        self.location.check()?;
        self.limits.check()?;
        self.timers.check()?;
        if let Some(t) = &self.tls_psk {
            t.check()?;
        }
        if self.identity.verify != VerifyMode::Off {
            self.identity_chain()?;
        }
        check_peers(&self.peers)?;
        self.cluster.check(
            &self.location.node_id,
            self.location.backend == LocationBackend::Postgres,
        )?;
        if !self.peers.is_empty() && self.tls_psk.is_none() {
            return Err(ConfigError::Invalid(
                "peers: a sipd-to-sipd link runs the TLS-PSK handshake with this domain's key: \
                 it needs the [tls_psk] section"
                    .into(),
            ));
        }
        Ok(())
    }

    /// The chain id and keystore `[identity] verify` reads keys from: `[tls_psk] chain_id` and
    /// `contract` (a PASSporT's `info` names both, so both must be known).
    pub fn identity_chain(&self) -> Result<(u64, Address), ConfigError> {
        match &self.tls_psk {
            Some(TlsPskSettings {
                chain_id: Some(id),
                contract,
                ..
            }) => Ok((*id, *contract)),
            _ => Err(ConfigError::Invalid(
                "identity: verify = \"mark\" or \"enforce\" reads callers' keys from the keystore: \
                 it needs the [tls_psk] section with rpc_url, contract and chain_id"
                    .into(),
            )),
        }
    }
}

/// A node id (`[location] node_id`, the keys of `[cluster] nodes`): 1 to 64 letters, digits,
/// `.`, `_` or `-`. It is stored with every binding and, in a cluster, bound into the link PSKs
/// with separators it can never contain.
pub fn valid_node_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse_named("sipd.toml", text)
    }

    #[test]
    fn relay_section_parses_and_needs_rtpengine_unless_never() {
        let c = parse("[relay]\nmode = \"nat\"\nrtpengine = \"127.0.0.1:2223\"\n").unwrap();
        assert_eq!(c.relay.mode, RelayMode::Nat);
        assert_eq!(c.relay.rtpengine, Some("127.0.0.1:2223".parse().unwrap()));
        assert_eq!(c.relay.timeout, Duration::from_millis(2000));
        assert_eq!(Config::default().relay.mode, RelayMode::Never);
        let e = parse("[relay]\nmode = \"always\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("rtpengine"), "{e}");
        let e = parse("[relay]\nmode = \"sometimes\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("sometimes") || e.contains("variant"), "{e}");
    }

    #[test]
    fn example_config_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("sipd.example.toml");
        let c = Config::load(&path).unwrap();
        c.validate().unwrap();
        assert_eq!(
            c.listens().len(),
            3,
            "udp, tcp and tls (what the phones use)"
        );
        let t = c.tls_psk.as_ref().expect("the example documents [tls_psk]");
        assert_eq!(t.identity.as_str(), "sip.example.org");
        assert_eq!(t.min_version, TlsVersion::Tls12);
        assert_eq!(t.keylog_file, None, "no key logging unless asked for");
        assert_eq!(
            c.location.backend,
            LocationBackend::Memory,
            "no database needed"
        );
    }

    #[test]
    fn a_node_id_holds_only_what_a_link_psk_can_bind_unambiguously() {
        for bad in ["", "node\\u0000one", "node one", "nöde", &"n".repeat(65)] {
            let e = parse(&format!("[location]\nnode_id = \"{bad}\"\n")).unwrap_err();
            assert!(e.to_string().contains("node_id must be"), "{bad:?}: {e}");
        }
        let c = parse("[location]\nnode_id = \"eu-west.node_2\"\n").unwrap();
        assert_eq!(c.location.node_id, "eu-west.node_2");
    }

    #[test]
    fn the_postgres_location_needs_a_database_url() {
        // Refused where it is written, naming what is missing.
        let e = parse("[location]\nbackend = \"postgres\"\n").unwrap_err();
        assert!(e.to_string().contains("database"), "{e}");
        let c = parse(
            "[location]\nbackend = \"postgres\"\ndatabase = \"postgres://u:p@h/d\"\n\
             node_id = \"node-2\"\ncache_secs = 0\ncache_entries = 10\n",
        )
        .unwrap();
        c.validate().unwrap();
        assert_eq!(c.location.node_id, "node-2");
        assert_eq!(c.location.cache, Duration::ZERO);
        let shown = format!("{c:?}");
        assert!(
            shown.contains("postgres://u:***@h/d") && !shown.contains(":p@"),
            "{shown}"
        );
        assert!(parse("[location]\nbackend = \"redis\"\n").is_err());
    }

    #[test]
    fn tls_listen_and_section_are_checked() {
        assert_eq!(
            "tls:127.0.0.1:5061".parse::<Listen>().unwrap(),
            Listen::tls("127.0.0.1:5061".parse().unwrap())
        );
        assert_eq!(
            Listen::tls("127.0.0.1:5061".parse().unwrap()).to_string(),
            "tls:127.0.0.1:5061"
        );
        let section = |extra: &str| {
            format!(
                "[tls_psk]\nidentity = \"sip.example.org\"\nkey_file = \"k\"\n\
                 rpc_url = \"http://127.0.0.1:8545\"\n\
                 contract = \"0x5FbDB2315678afecb367f032d93F642f64180aa3\"\n{extra}"
            )
        };
        let checkpoint = format!("checkpoint = \"12:0x{}\"\n", "ab".repeat(32));
        let ok = parse(&section(&checkpoint)).unwrap();
        ok.validate().unwrap();
        let t = ok.tls_psk.as_ref().unwrap();
        assert_eq!(
            t.trust,
            KeyTrustMode::Checkpoint,
            "verified look-ups by default"
        );
        assert_eq!(t.checkpoint.unwrap().number, 12);
        for good in [
            "trust = \"provider\"",
            "trust = \"quorum\"\nquorum_urls = [\"http://a\", \"http://b\", \"http://c\"]\nquorum_k = 2",
        ] {
            parse(&section(good)).unwrap().validate().unwrap();
        }
        for bad in [
            "",
            "checkpoint = \"12\"",
            "checkpoint = \"x:0x00\"",
            "trust = \"quorum\"\nquorum_urls = [\"http://a\", \"http://b\"]\nquorum_k = 1",
            // One server listed twice must not count twice.
            "trust = \"quorum\"\nquorum_urls = [\"http://a\", \"http://A:80/\", \"http://b\"]\nquorum_k = 2",
            "trust = \"quorum\"",
            "trust = \"believe\"",
        ] {
            assert!(parse(&section(bad)).is_err(), "{bad}");
        }
        let section = |extra: &str| section(&format!("{checkpoint}{extra}"));
        for bad in [
            "min_version = \"1.1\"",
            "min_version = \"1.3\"\nmax_version = \"1.2\"",
            "psk_lifetime_secs = 0",
        ] {
            assert!(parse(&section(bad)).is_err(), "{bad}");
        }
        assert!(
            parse(&section("").replace("sip.example.org", "+15551230001")).is_err(),
            "a phone number is not a server identity"
        );
        assert!(
            parse(&section("").replace("0x5FbDB2315678afecb367f032d93F642f64180aa3", "0x12"))
                .is_err(),
            "bad contract address"
        );
    }

    /// `[identity] verify` is off unless asked for, and on only with the chain and keystore it
    /// reads: refused, naming what is missing, otherwise.
    #[test]
    fn identity_verification_needs_the_keystore_chain() {
        assert_eq!(parse("").unwrap().identity.verify, VerifyMode::Off);
        let tls = "[tls_psk]\nidentity = \"sip.example.org\"\nkey_file = \"k\"\n\
                   rpc_url = \"http://127.0.0.1:8545\"\n\
                   contract = \"0x5FbDB2315678afecb367f032d93F642f64180aa3\"\n\
                   trust = \"provider\"\n";
        for mode in ["mark", "enforce"] {
            let verify = format!("[identity]\nverify = \"{mode}\"\n");
            for missing in [verify.clone(), format!("{verify}{tls}")] {
                let e = parse(&missing).unwrap().validate().unwrap_err().to_string();
                assert!(
                    e.contains("[tls_psk]") && e.contains("chain_id"),
                    "{mode}: {e}"
                );
            }
            let c = parse(&format!("{verify}{tls}chain_id = 31337\n")).unwrap();
            c.validate().unwrap();
            let (chain, contract) = c.identity_chain().unwrap();
            assert_eq!(chain, 31337);
            assert_eq!(contract, c.tls_psk.as_ref().unwrap().contract);
        }
        assert!(parse("[identity]\nverify = \"strict\"\n").is_err());
        assert!(parse("[identity]\nverfy = \"off\"\n").is_err());
    }

    /// `[peers]`: domain → address and number prefixes, each checked where it is written, and
    /// only with the `[tls_psk]` key a link's handshake proves this domain with.
    #[test]
    fn peers_are_typed_and_need_tls_psk() {
        assert!(parse("").unwrap().peers.is_empty());
        let tls = "[tls_psk]\nidentity = \"a.example\"\nkey_file = \"k\"\n\
                   rpc_url = \"http://127.0.0.1:8545\"\n\
                   contract = \"0x5FbDB2315678afecb367f032d93F642f64180aa3\"\n\
                   trust = \"provider\"\n";
        let peers = "[peers.\"b.example\"]\naddr = \"sip.b.example:5061\"\n\
                     numbers = [\"+1555050\"]\n";
        let c = parse(&format!("{tls}{peers}")).unwrap();
        c.validate().unwrap();
        assert_eq!(
            c.peers["b.example"],
            PeerConfig {
                addr: "sip.b.example:5061".into(),
                srv: false,
                dns_server: None,
                numbers: vec!["+1555050".into()],
                recheck: Duration::from_secs(60),
            }
        );
        let c =
            parse("[peers.\"b.example\"]\nsrv = true\ndns_server = \"127.0.0.1:5353\"\n").unwrap();
        let b = &c.peers["b.example"];
        assert!(b.srv && b.addr.is_empty());
        assert_eq!(b.dns_server, Some("127.0.0.1:5353".parse().unwrap()));
        let c = parse(&format!("{peers}recheck_secs = 5\n")).unwrap();
        assert_eq!(c.peers["b.example"].recheck, Duration::from_secs(5));
        let e = parse(peers).unwrap().validate().unwrap_err().to_string();
        assert!(e.contains("[tls_psk]"), "{e}");
        for (bad, says) in [
            ("[peers.\"b_example\"]\naddr = \"h:1\"\n", "b_example"),
            ("[peers.\"B.example\"]\naddr = \"h:1\"\n", "lower case"),
            ("[peers.\"b.example\"]\naddr = \"h\"\n", "HOST:PORT"),
            ("[peers.\"b.example\"]\naddr = \"h:0\"\n", "HOST:PORT"),
            (
                "[peers.\"b.example\"]\naddr = \"h:1\"\nnumbers = [\"1555\"]\n",
                "number prefix",
            ),
            ("[peers.\"b.example\"]\nadr = \"h:1\"\n", "adr"),
            (
                "[peers.\"b.example\"]\naddr = \"h:1\"\nrecheck_secs = 0\n",
                "at least 1",
            ),
            ("[peers.\"b.example\"]\nnumbers = []\n", "srv = true"),
            (
                "[peers.\"b.example\"]\naddr = \"h:1\"\nsrv = true\n",
                "give one",
            ),
            (
                "[peers.\"b.example\"]\naddr = \"h:1\"\ndns_server = \"127.0.0.1:53\"\n",
                "dns_server",
            ),
        ] {
            let e = parse(bad).unwrap_err().to_string();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn rejects_bad_values() {
        assert!("udp:nothere".parse::<Listen>().is_err());
        assert_eq!(
            "tcp:127.0.0.1:5060".parse::<Listen>().unwrap(),
            Listen::tcp("127.0.0.1:5060".parse().unwrap())
        );
        assert!(parse("static_route = \"x\"").is_err());
        assert!(parse("unknown_key = 1").is_err());
        assert!(parse("listen = []").is_err());
        // A product token, not a whole User-Agent value: a version or a space would never match.
        for bad in ["baresip/1.0", "baresip v1.0.0", "(baresip)", ""] {
            let text = format!("[auth]\nmd5_only_user_agents = [{bad:?}]\n");
            assert!(parse(&text).is_err(), "{bad:?} accepted");
        }
        let mut c = Config::default();
        c.timers.t2 = Duration::ZERO;
        assert!(c.validate().is_err(), "a struct is checked like a file");
    }

    /// The documented way to say "none" keeps working, and values arrive typed.
    #[test]
    fn empty_strings_mean_none_and_values_are_typed() {
        let c = parse(
            "listen = [\"udp:127.0.0.1:5070\", \"tls:0.0.0.0:5071\"]\nadvertise = \"\"\n\
             metrics_listen = \"\"\ndomain = \"\"\n\
             [auth]\nalgorithms = [\"SHA-512-256\", \"md5\"]\nlookup_timeout_ms = 1500\n\
             [timers]\nt1_ms = 20\n",
        )
        .unwrap();
        assert_eq!(c.listen[1].transport, ListenTransport::Tls);
        assert_eq!(
            (c.advertise, c.metrics_listen, &c.domain),
            (None, None, &None)
        );
        assert_eq!(c.auth.algorithms, [Algorithm::Sha512_256, Algorithm::Md5]);
        assert_eq!(
            c.auth.md5_only_user_agents,
            ["baresip"],
            "the documented default"
        );
        assert_eq!(c.auth.lookup_timeout, Duration::from_millis(1500));
        assert_eq!(c.timers.t1, Duration::from_millis(20));
    }

    /// Issue 15 item 2: an operator's typo is reported with the file, the line and the key.
    #[test]
    fn errors_name_the_file_line_and_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sipd.toml");
        let cases = [
            // A value of the wrong shape.
            (
                "listen = [\"udp:127.0.0.1:5060\"]\nadvertise = \"10.0.0.1\"\n",
                2,
                "advertise",
            ),
            // A value inside a section.
            (
                "domain = \"example.org\"\n\n[auth]\nmode = \"digest\"\nalgorithms = [\"SHA-1\"]\n",
                5,
                "auth.algorithms",
            ),
            // A typed contract address.
            (
                "[tls_psk]\nidentity = \"sip.example.org\"\nkey_file = \"k\"\nrpc_url = \"http://x\"\n\
                 contract = \"0x12\"\ntrust = \"provider\"\n",
                5,
                "tls_psk.contract",
            ),
            // An unknown key.
            (
                "[limits]\nburst = 10.0\nmax_mesage_size = 2048\n",
                3,
                "limits.max_mesage_size",
            ),
            // Syntax.
            ("[timers]\nt1_ms = = 3\n", 2, "timers.t1_ms"),
        ];
        for (text, line, key) in cases {
            std::fs::write(&path, text).unwrap();
            let err = Config::load(&path).unwrap_err();
            let shown = err.to_string();
            match &err {
                ConfigError::Parse(chaincall_config::TomlError {
                    file,
                    line: l,
                    key: k,
                    ..
                }) => {
                    assert_eq!(file, &path.display().to_string(), "{shown}");
                    assert_eq!(*l, line, "{shown}");
                    assert_eq!(k.as_deref(), Some(key), "{shown}");
                }
                other => panic!("not a located error: {other}"),
            }
            assert!(
                shown.starts_with(&format!("{}:{line}:", path.display())),
                "{shown}"
            );
            assert!(shown.contains(key), "{shown}");
        }
        // A section's values that do not fit together: the section is named, where it is.
        std::fs::write(
            &path,
            "listen = [\"udp:127.0.0.1:0\"]\n[registrar]\nmin_expires = 600\nmax_expires = 60\n",
        )
        .unwrap();
        let shown = Config::load(&path).unwrap_err().to_string();
        assert!(
            shown.contains("registrar") && shown.contains("min_expires"),
            "{shown}"
        );
        assert!(!shown.contains("registrar: registrar"), "{shown}");
        assert!(
            shown.starts_with(&format!("{}:", path.display())),
            "{shown}"
        );
    }
}
