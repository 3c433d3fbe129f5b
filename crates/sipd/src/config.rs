//! sipd configuration: a TOML file (see `crates/sipd/sipd.example.toml`), overridable by flags.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// A listening address with its transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listen {
    /// UDP (RFC 3261 §18.1.1 / §18.2.1).
    Udp(SocketAddr),
    /// TCP (framed by Content-Length, §18.3).
    Tcp(SocketAddr),
    /// TLS with an external PSK from chaincall's handshake (RFC 3261 §26.2 with RFC 4279 / RFC 8446
    /// PSK in place of certificates); needs the `[tls_psk]` section.
    Tls(SocketAddr),
}

impl Listen {
    /// The socket address.
    pub fn addr(&self) -> SocketAddr {
        match self {
            Listen::Udp(a) | Listen::Tcp(a) | Listen::Tls(a) => *a,
        }
    }
}

impl std::fmt::Display for Listen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Listen::Udp(a) => write!(f, "udp:{a}"),
            Listen::Tcp(a) => write!(f, "tcp:{a}"),
            Listen::Tls(a) => write!(f, "tls:{a}"),
        }
    }
}

impl std::str::FromStr for Listen {
    type Err = ConfigError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || {
            ConfigError::Invalid(format!(
                "listen address {s:?} is not udp:IP:PORT, tcp:IP:PORT or tls:IP:PORT"
            ))
        };
        let (proto, addr) = s.split_once(':').ok_or_else(bad)?;
        let addr: SocketAddr = addr.parse().map_err(|_| bad())?;
        match proto.to_ascii_lowercase().as_str() {
            "udp" => Ok(Listen::Udp(addr)),
            "tcp" => Ok(Listen::Tcp(addr)),
            "tls" => Ok(Listen::Tls(addr)),
            _ => Err(bad()),
        }
    }
}

/// Configuration problems.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The path.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The TOML is malformed.
    #[error("invalid TOML: {0}")]
    Toml(#[from] toml::de::Error),
    /// A value is out of range or inconsistent.
    #[error("invalid configuration: {0}")]
    Invalid(String),
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
    /// Listening sockets, `udp:IP:PORT` / `tcp:IP:PORT` / `tls:IP:PORT` (TLS-PSK, see `tls_psk`).
    pub listen: Vec<String>,
    /// The SIP domain served (registrar domain, digest realm). Empty: the first listen IP.
    pub domain: String,
    /// The address put in Via and Record-Route. Empty: the first listen address.
    pub advertise: String,
    /// Requests for targets that are not registered go here (`IP:PORT`), e.g. a PSTN gateway.
    pub static_route: Option<String>,
    /// Authentication settings.
    pub auth: AuthConfig,
    /// Registrar settings.
    pub registrar: RegistrarConfig,
    /// Protection limits.
    pub limits: LimitsConfig,
    /// `IP:PORT` for the Prometheus metrics endpoint (`GET /metrics`); none when empty.
    pub metrics_listen: String,
    /// Transaction timer base values (RFC 3261 §17.1.1.1).
    pub timers: TimersConfig,
    /// TLS-PSK settings, required when a `tls:` listener is configured.
    pub tls_psk: Option<TlsPskSettings>,
    /// Caller-identity policy.
    pub policy: PolicyConfig,
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
    pub identity: String,
    /// File holding the server's hex 32-byte P-256 identity secret (its public half approved on
    /// chain under `identity`).
    pub key_file: PathBuf,
    /// Ethereum JSON-RPC URL of a node holding the keystore contract.
    pub rpc_url: String,
    /// The keystore contract's address (`0x…`).
    pub contract: String,
    /// Chain id the node must report; any when absent.
    #[serde(default)]
    pub chain_id: Option<u64>,
    /// Lowest TLS version accepted: `"1.2"` or `"1.3"`. Default `"1.2"`.
    #[serde(default = "tls12")]
    pub min_version: String,
    /// Highest TLS version offered: `"1.2"` or `"1.3"`. Default `"1.3"`.
    #[serde(default = "tls13")]
    pub max_version: String,
    /// How long a handshake's PSK opens new connections, in seconds. Default 3600.
    #[serde(default = "psk_lifetime")]
    pub psk_lifetime_secs: u64,
    /// Time allowed for the handshake and for the TLS set-up, each, in seconds. Default 10.
    #[serde(default = "handshake_timeout")]
    pub handshake_timeout_secs: u64,
    /// Accept NSL (public-key handshake without forward secrecy) besides STS. Default true.
    #[serde(default = "yes")]
    pub accept_nsl: bool,
    /// How long a keystore answer is reused, in seconds (a revocation takes effect within it).
    /// Default 5.
    #[serde(default = "key_cache")]
    pub key_cache_secs: u64,
    /// How phones' keys read from `rpc_url` are trusted (docs/verified-lookups.md). Default
    /// `checkpoint`: every key is proven against headers linked to `checkpoint`.
    #[serde(default)]
    pub trust: KeyTrustMode,
    /// `NUMBER:0xHASH`, a block of the keystore's chain the operator checked out of band (trust
    /// `checkpoint`). Keep it within 100,000 blocks of the head.
    #[serde(default)]
    pub checkpoint: Option<String>,
    /// Independently operated JSON-RPC URLs that must agree on each header (trust `quorum`).
    #[serde(default)]
    pub quorum_urls: Vec<String>,
    /// How many of `quorum_urls` must agree, a strict majority (trust `quorum`).
    #[serde(default)]
    pub quorum_k: usize,
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
    /// The pinned checkpoint as (block number, block hash), when `checkpoint` is set.
    pub fn checkpoint(&self) -> Result<Option<(u64, alloy::primitives::B256)>, ConfigError> {
        let Some(c) = &self.checkpoint else {
            return Ok(None);
        };
        let bad = || {
            ConfigError::Invalid(format!(
                "tls_psk.checkpoint {c:?} is not NUMBER:0xHASH (a block number and its 32-byte hash)"
            ))
        };
        let (n, h) = c.split_once(':').ok_or_else(bad)?;
        Ok(Some((
            n.trim().parse().map_err(|_| bad())?,
            h.trim().parse().map_err(|_| bad())?,
        )))
    }

    /// Checks that the trust mode has what it needs.
    fn validate_trust(&self) -> Result<(), ConfigError> {
        match self.trust {
            KeyTrustMode::Checkpoint => {
                if self.checkpoint()?.is_none() {
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
        Ok(())
    }
}

fn tls12() -> String {
    "1.2".into()
}
fn tls13() -> String {
    "1.3".into()
}
fn psk_lifetime() -> u64 {
    3600
}
fn handshake_timeout() -> u64 {
    10
}
fn yes() -> bool {
    true
}
fn key_cache() -> u64 {
    5
}

/// Parses `"1.2"` / `"1.3"` (also `TLSv1.2`, `tls1.3`).
pub fn parse_tls_version(s: &str) -> Result<chaincall_tls_psk::TlsVersion, ConfigError> {
    let v = s.trim().to_ascii_lowercase();
    match v.trim_start_matches("tlsv").trim_start_matches("tls") {
        "1.2" => Ok(chaincall_tls_psk::TlsVersion::Tls12),
        "1.3" => Ok(chaincall_tls_psk::TlsVersion::Tls13),
        _ => Err(ConfigError::Invalid(format!(
            "tls_psk: TLS version {s:?} is not \"1.2\" or \"1.3\""
        ))),
    }
}

/// RFC 3261 timer bases; the defaults are the RFC's (T1 500 ms, T2 4 s, T4 5 s).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TimersConfig {
    /// T1, RTT estimate, in ms. Timers B, F, H, J are 64·T1.
    pub t1_ms: u64,
    /// T2, maximum retransmission interval, in ms.
    pub t2_ms: u64,
    /// T4, maximum message lifetime in the network, in ms.
    pub t4_ms: u64,
    /// Proxy Timer C (RFC 3261 §16.6 step 11, §16.8), in seconds: how long a forwarded INVITE may
    /// ring (each provisional response restarts it). When it fires sipd CANCELs the branch and
    /// answers 408 upstream, so a callee that rings forever cannot hold a transaction forever.
    /// The RFC asks for more than 3 minutes.
    pub c_secs: u64,
}

impl Default for TimersConfig {
    fn default() -> Self {
        TimersConfig {
            t1_ms: 500,
            t2_ms: 4000,
            t4_ms: 5000,
            c_secs: 181,
        }
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
    pub algorithms: Vec<String>,
    /// Nonce lifetime in seconds (an expired nonce gets `stale=true`).
    pub nonce_lifetime_secs: u64,
    /// Authenticate INVITEs whose From is in our domain (407 Proxy-Authenticate).
    pub invite: bool,
    /// How long a subscriber row read from the database is reused, in seconds. A removed or
    /// changed row (the wallet server's revoke) takes effect after at most this long; 0 reads
    /// the database for every authenticated request.
    pub credentials_cache_secs: u64,
    /// Most subscriber rows (and "no such user" answers) kept in the credentials cache; the least
    /// recently used is dropped first. Bounds the memory a flood of invented usernames can take.
    pub credentials_cache_entries: usize,
    /// How long a request waits for its subscriber look-up, in milliseconds, before it is
    /// answered 503 (the look-up runs beside the server loop; other traffic is not held up).
    pub lookup_timeout_ms: u64,
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

/// Protection limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Largest message accepted, in bytes.
    pub max_message_size: usize,
    /// Most header fields per message.
    pub max_headers: usize,
    /// TCP connections idle this long are closed.
    pub tcp_idle_secs: u64,
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

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: vec!["udp:127.0.0.1:5060".into()],
            domain: String::new(),
            advertise: String::new(),
            static_route: None,
            auth: AuthConfig::default(),
            registrar: RegistrarConfig::default(),
            limits: LimitsConfig::default(),
            metrics_listen: String::new(),
            timers: TimersConfig::default(),
            tls_psk: None,
            policy: PolicyConfig::default(),
        }
    }
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            mode: AuthMode::Digest,
            database: "sqlite://sipd.db".into(),
            create_schema: true,
            algorithms: vec!["SHA-256".into(), "MD5".into()],
            nonce_lifetime_secs: 300,
            invite: true,
            credentials_cache_secs: 30,
            credentials_cache_entries: 50_000,
            lookup_timeout_ms: 2_000,
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
            tcp_idle_secs: 300,
            max_tcp_connections: 4096,
            register_rate: 20.0,
            invite_rate: 0.0,
            burst: 40.0,
            max_transactions: 200_000,
        }
    }
}

impl Config {
    /// Reads a TOML file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Ok(toml::from_str(&text)?)
    }

    /// Parsed listen addresses.
    pub fn listens(&self) -> Result<Vec<Listen>, ConfigError> {
        if self.listen.is_empty() {
            return Err(ConfigError::Invalid("no listen address".into()));
        }
        self.listen.iter().map(|s| s.parse()).collect()
    }

    /// Checks values and fills derived ones.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.listens()?;
        if let Some(t) = &self.tls_psk {
            chaincall_identity::DomainName::parse(&t.identity).map_err(|e| {
                ConfigError::Invalid(format!(
                    "tls_psk.identity {:?} is not a domain name: {e}",
                    t.identity
                ))
            })?;
            t.contract
                .parse::<alloy::primitives::Address>()
                .map_err(|_| {
                    ConfigError::Invalid(format!(
                        "tls_psk.contract {:?} is not an address",
                        t.contract
                    ))
                })?;
            let (min, max) = (
                parse_tls_version(&t.min_version)?,
                parse_tls_version(&t.max_version)?,
            );
            if min == chaincall_tls_psk::TlsVersion::Tls13
                && max == chaincall_tls_psk::TlsVersion::Tls12
            {
                return Err(ConfigError::Invalid(
                    "tls_psk: min_version above max_version".into(),
                ));
            }
            t.validate_trust()?;
            if t.psk_lifetime_secs == 0 || t.handshake_timeout_secs == 0 {
                return Err(ConfigError::Invalid(
                    "tls_psk: psk_lifetime_secs and handshake_timeout_secs must be > 0".into(),
                ));
            }
        }
        if let Some(r) = &self.static_route {
            r.parse::<SocketAddr>()
                .map_err(|_| ConfigError::Invalid(format!("static_route {r:?} is not IP:PORT")))?;
        }
        for a in &self.auth.algorithms {
            chaincall_sip::digest::Algorithm::parse(a)
                .map_err(|_| ConfigError::Invalid(format!("unknown digest algorithm {a:?}")))?;
        }
        if self.auth.mode == AuthMode::Digest && self.auth.algorithms.is_empty() {
            return Err(ConfigError::Invalid(
                "digest auth needs at least one algorithm".into(),
            ));
        }
        if self.auth.credentials_cache_entries == 0 || self.auth.lookup_timeout_ms == 0 {
            return Err(ConfigError::Invalid(
                "auth: credentials_cache_entries and lookup_timeout_ms must be > 0".into(),
            ));
        }
        let r = &self.registrar;
        if r.min_expires > r.max_expires || r.max_contacts == 0 {
            return Err(ConfigError::Invalid(
                "registrar: min_expires > max_expires or max_contacts = 0".into(),
            ));
        }
        let t = &self.timers;
        if t.t1_ms == 0 || t.t2_ms < t.t1_ms || t.t4_ms == 0 || t.c_secs == 0 {
            return Err(ConfigError::Invalid(
                "timers: need 0 < t1_ms <= t2_ms, t4_ms > 0 and c_secs > 0".into(),
            ));
        }
        if self.limits.max_message_size < 1024 || self.limits.max_headers < 10 {
            return Err(ConfigError::Invalid(
                "limits too small to carry a SIP message".into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_config_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("sipd.example.toml");
        let c = Config::load(&path).unwrap();
        c.validate().unwrap();
        assert_eq!(c.listens().unwrap().len(), 2);
        let t = c.tls_psk.as_ref().expect("the example documents [tls_psk]");
        assert_eq!(t.identity, "sip.example.org");
        assert_eq!(
            parse_tls_version(&t.min_version).unwrap(),
            chaincall_tls_psk::TlsVersion::Tls12
        );
    }

    #[test]
    fn tls_listen_and_section_are_checked() {
        assert_eq!(
            "tls:127.0.0.1:5061".parse::<Listen>().unwrap(),
            Listen::Tls("127.0.0.1:5061".parse().unwrap())
        );
        assert_eq!(
            Listen::Tls("127.0.0.1:5061".parse().unwrap()).to_string(),
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
        let ok: Config = toml::from_str(&section(&checkpoint)).unwrap();
        ok.validate().unwrap();
        let t = ok.tls_psk.as_ref().unwrap();
        assert_eq!(
            t.trust,
            KeyTrustMode::Checkpoint,
            "verified look-ups by default"
        );
        assert_eq!(t.checkpoint().unwrap().unwrap().0, 12);
        for good in [
            "trust = \"provider\"",
            "trust = \"quorum\"\nquorum_urls = [\"http://a\", \"http://b\", \"http://c\"]\nquorum_k = 2",
        ] {
            let c: Config = toml::from_str(&section(good)).unwrap();
            c.validate().unwrap();
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
            let c: Result<Config, _> = toml::from_str(&section(bad));
            assert!(c.is_err() || c.unwrap().validate().is_err(), "{bad}");
        }
        let section = |extra: &str| section(&format!("{checkpoint}{extra}"));
        for bad in [
            "min_version = \"1.1\"",
            "min_version = \"1.3\"\nmax_version = \"1.2\"",
            "psk_lifetime_secs = 0",
        ] {
            let c: Config = toml::from_str(&section(bad)).unwrap();
            assert!(c.validate().is_err(), "{bad}");
        }
        let c: Config =
            toml::from_str(&section("").replace("sip.example.org", "+15551230001")).unwrap();
        assert!(
            c.validate().is_err(),
            "a phone number is not a server identity"
        );
        let c: Config = toml::from_str(
            &section("").replace("0x5FbDB2315678afecb367f032d93F642f64180aa3", "0x12"),
        )
        .unwrap();
        assert!(c.validate().is_err(), "bad contract address");
    }

    #[test]
    fn rejects_bad_values() {
        assert!("udp:nothere".parse::<Listen>().is_err());
        assert_eq!(
            "tcp:127.0.0.1:5060".parse::<Listen>().unwrap(),
            Listen::Tcp("127.0.0.1:5060".parse().unwrap())
        );
        let c: Config = toml::from_str("static_route = \"x\"").unwrap();
        assert!(c.validate().is_err());
        assert!(toml::from_str::<Config>("unknown_key = 1").is_err());
    }
}
