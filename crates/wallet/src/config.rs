//! The server's TOML configuration (`chaincall wallet serve --config FILE`); see
//! `crates/wallet/wallet.example.toml` for a documented example. Relative paths are resolved
//! against the configuration file's folder. Values arrive typed (alloy's `Address` and `U256`,
//! `DomainName`); a refused value is reported with the file, line and key. A server can equally be
//! built from a [`WalletConfig`] made in code (see [`WalletConfig::resolve_paths`]).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use alloy::primitives::{Address, U256};
use chaincall_identity::DomainName;
use chaincall_identity::Randomness;
use serde::{Deserialize, Deserializer, de::Error as _};

use crate::number::NumbersConfig;

/// The configuration could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The TOML is invalid, or a value in it is refused: the file, line and key.
    #[error(transparent)]
    Parse(#[from] chaincall_config::TomlError),
    /// A value is out of range or inconsistent.
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// Which chain the server talks to.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// An in-process EVM: the contract is deployed at start (demo and tests only: phones must share
    /// the process to reach it).
    Embedded,
    /// Any Ethereum node over JSON-RPC.
    Rpc,
}

/// `[chain]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChainConfig {
    /// `embedded` or `rpc`.
    pub backend: Backend,
    /// JSON-RPC URL (rpc backend).
    #[serde(default)]
    pub rpc_url: Option<String>,
    /// Chain id the node must report (rpc backend; optional).
    #[serde(default)]
    pub chain_id: Option<u64>,
    /// The keystore contract's address (rpc backend; the embedded backend deploys one).
    #[serde(default)]
    pub contract: Option<Address>,
    /// File holding the server wallet's hex secp256k1 key (the keystore's owner).
    pub wallet_key_file: PathBuf,
    /// Confirmations a transaction needs (default 1).
    #[serde(default = "default_confirmations")]
    pub confirmations: u64,
}

fn default_confirmations() -> u64 {
    1
}

/// `[identity]`: the server's own on-chain identity, to which phones seal their payloads.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityConfig {
    /// The server's domain name, its keystore identity (e.g. `wallet.example.org`).
    #[serde(deserialize_with = "domain_name")]
    pub domain: DomainName,
    /// File holding the hex 32-byte P-256 secret; created (mode 0600) if missing.
    pub key_file: PathBuf,
    /// Add and approve the identity key on chain at start if it is not approved yet (the server
    /// wallet is the keystore owner). Default true.
    #[serde(default = "yes")]
    pub publish_on_start: bool,
}

fn yes() -> bool {
    true
}

fn domain_name<'de, D: Deserializer<'de>>(d: D) -> Result<DomainName, D::Error> {
    DomainName::parse(&String::deserialize(d)?)
        .map_err(|e| D::Error::custom(format!("not a DNS name: {e}")))
}

/// A wei amount: a decimal string (as in the example file, beyond TOML's 64-bit integers) or an
/// integer.
fn wei<'de, D: Deserializer<'de>>(d: D) -> Result<U256, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Wei {
        Text(String),
        Number(u64),
    }
    match Wei::deserialize(d)? {
        Wei::Number(n) => Ok(U256::from(n)),
        Wei::Text(t) => U256::from_str_radix(t.trim(), 10)
            .map_err(|_| D::Error::custom("must be a decimal number of wei")),
    }
}

/// `[store]`: which receipts buy onboarding.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// The app's package name.
    pub package_name: String,
    /// The product id.
    pub product_id: String,
    /// Base64 X.509 SubjectPublicKeyInfo of the app's license key (as the console shows it).
    #[serde(default)]
    pub public_key: Option<String>,
    /// Or a file holding it.
    #[serde(default)]
    pub public_key_file: Option<PathBuf>,
}

/// `[database]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    /// sqlx URL of the server's state: `sqlite://wallet.db?mode=rwc` or `postgres://…`.
    pub url: String,
}

/// `[sip]`: where SIP credentials go.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SipConfig {
    /// sqlx URL of the Kamailio-compatible database holding `subscriber` (may be Kamailio's own
    /// SQLite file, or sipd's).
    pub database_url: String,
    /// The SIP domain (`subscriber.domain`).
    pub domain: String,
    /// The digest realm (default: the domain, as Kamailio uses).
    #[serde(default)]
    pub realm: Option<String>,
    /// Create Kamailio's tables if missing (default true).
    #[serde(default = "yes")]
    pub create_table: bool,
}

/// `[funding]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FundingConfig {
    /// Amount = measured addClient gas × gas-limit headroom (120 %) × current max fee per gas ×
    /// this percentage / 100. Default 200: room for fee rises before the phone sends.
    #[serde(default = "default_margin")]
    pub safety_margin_percent: u64,
    /// Never send more than this many wei to one phone (default 0.05 ether); above it the request
    /// waits, queued, for fees to fall.
    #[serde(default = "default_max_wei", deserialize_with = "wei")]
    pub max_wei: U256,
}

fn default_margin() -> u64 {
    200
}

fn default_max_wei() -> U256 {
    U256::from(50_000_000_000_000_000u64)
}

impl Default for FundingConfig {
    fn default() -> Self {
        Self {
            safety_margin_percent: default_margin(),
            max_wei: default_max_wei(),
        }
    }
}

/// `[fees]`: replacing the server wallet's transactions (funding and `approveClient`) that stay
/// unmined.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeesConfig {
    /// A transaction still unmined this long after it was signed is replaced: same nonce, higher
    /// fees, recorded before broadcast (`replace_after_secs`, whole seconds; default 120).
    #[serde(
        rename = "replace_after_secs",
        default = "default_replace_after",
        deserialize_with = "secs"
    )]
    pub replace_after: Duration,
    /// Each replacement raises both the priority fee and the max fee by at least this percentage
    /// (default 25; at least 13, above geth's 10 % replacement rule and the 12.5 % some pools ask).
    #[serde(default = "default_bump")]
    pub bump_percent: u64,
}

fn default_replace_after() -> Duration {
    Duration::from_secs(120)
}

/// A `*_secs` key: whole seconds.
pub(crate) fn secs<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    u64::deserialize(d).map(Duration::from_secs)
}

/// A `*_ms` key: milliseconds.
pub(crate) fn millis<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    u64::deserialize(d).map(Duration::from_millis)
}

fn default_bump() -> u64 {
    25
}

impl Default for FeesConfig {
    fn default() -> Self {
        Self {
            replace_after: default_replace_after(),
            bump_percent: default_bump(),
        }
    }
}

/// `[limits]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Sustained requests per second per source address (default 5).
    #[serde(default = "default_rps")]
    pub requests_per_second: f64,
    /// Burst per source address (default 20).
    #[serde(default = "default_burst")]
    pub burst: f64,
    /// Accepted clock difference of payload timestamps (`max_clock_skew_secs`, whole seconds;
    /// default 300).
    #[serde(
        rename = "max_clock_skew_secs",
        default = "default_skew",
        deserialize_with = "secs"
    )]
    pub max_clock_skew: Duration,
    /// How long a request waits for chain work before answering 202 with the state
    /// (`request_wait_secs`, whole seconds; default 30).
    #[serde(
        rename = "request_wait_secs",
        default = "default_wait",
        deserialize_with = "secs"
    )]
    pub request_wait: Duration,
    /// Largest request body, bytes (default 64 KiB).
    #[serde(default = "default_body")]
    pub max_body_bytes: usize,
}

fn default_rps() -> f64 {
    5.0
}
fn default_burst() -> f64 {
    20.0
}
fn default_skew() -> Duration {
    Duration::from_secs(300)
}
fn default_wait() -> Duration {
    Duration::from_secs(30)
}
fn default_body() -> usize {
    64 * 1024
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            requests_per_second: default_rps(),
            burst: default_burst(),
            max_clock_skew: default_skew(),
            request_wait: default_wait(),
            max_body_bytes: default_body(),
        }
    }
}

/// `[admin]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Name of the environment variable holding the bearer token (default
    /// `CHAINCALL_WALLET_ADMIN_TOKEN`); admin endpoints are off when it is unset or empty.
    #[serde(default = "default_token_env")]
    pub token_env: String,
    /// Or a file holding the token.
    #[serde(default)]
    pub token_file: Option<PathBuf>,
}

fn default_token_env() -> String {
    "CHAINCALL_WALLET_ADMIN_TOKEN".into()
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            token_env: default_token_env(),
            token_file: None,
        }
    }
}

/// The whole file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WalletConfig {
    /// Address to listen on; must be loopback unless `allow_non_loopback` (default
    /// `127.0.0.1:8547`).
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Allow listening beyond loopback (behind a TLS-terminating proxy).
    #[serde(default)]
    pub allow_non_loopback: bool,
    /// Chain access.
    pub chain: ChainConfig,
    /// The server's identity.
    pub identity: IdentityConfig,
    /// Receipts.
    pub store: StoreConfig,
    /// State database.
    pub database: DatabaseConfig,
    /// SIP credentials.
    pub sip: SipConfig,
    /// Number ownership: who may claim which number (required; see [`NumbersConfig`]).
    pub numbers: NumbersConfig,
    /// Funding.
    #[serde(default)]
    pub funding: FundingConfig,
    /// Fee bumping.
    #[serde(default)]
    pub fees: FeesConfig,
    /// Limits.
    #[serde(default)]
    pub limits: LimitsConfig,
    /// Admin token.
    #[serde(default)]
    pub admin: AdminConfig,
    /// How often the worker looks for queued work (`worker_interval_ms`, milliseconds; default
    /// 500).
    #[serde(
        rename = "worker_interval_ms",
        default = "default_tick",
        deserialize_with = "millis"
    )]
    pub worker_interval: Duration,
    /// Where the server draws its randomness (one-time codes): the OS CSPRNG unless a test seeds
    /// it. Not a file setting.
    #[serde(skip)]
    pub randomness: Randomness,
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8547))
}

fn default_tick() -> Duration {
    Duration::from_millis(500)
}

fn resolve(base: &Path, p: &mut PathBuf) {
    if p.is_relative() {
        *p = base.join(&*p);
    }
}

fn resolve_sqlite(base: &Path, url: &mut String) {
    if let Some(rest) = url.strip_prefix("sqlite://")
        && !rest.starts_with('/')
        && !rest.starts_with(':')
    {
        *url = format!("sqlite://{}", base.join(rest).display());
    }
}

impl WalletConfig {
    /// Parses TOML text; relative paths resolve against `base`.
    pub fn parse(text: &str, base: &Path) -> Result<Self, ConfigError> {
        Self::parse_named("wallet.toml", text, base)
    }

    /// Like [`WalletConfig::parse`], naming the text `file` in errors.
    pub fn parse_named(file: &str, text: &str, base: &Path) -> Result<Self, ConfigError> {
        let mut config: Self = chaincall_config::from_str(file, text)?;
        config.resolve_paths(base);
        config
            .validate()
            .map_err(|e| ConfigError::Invalid(format!("{file}: {e}")))?;
        Ok(config)
    }

    /// Reads and parses a file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::parse_named(&path.display().to_string(), &text, base)
    }

    /// Resolves relative paths (key files, SQLite URLs) against `base`, as reading a file from
    /// that folder does.
    pub fn resolve_paths(&mut self, base: &Path) {
        resolve(base, &mut self.chain.wallet_key_file);
        resolve(base, &mut self.identity.key_file);
        if let Some(p) = self.store.public_key_file.as_mut() {
            resolve(base, p);
        }
        if let Some(p) = self.admin.token_file.as_mut() {
            resolve(base, p);
        }
        self.numbers.resolve(base);
        resolve_sqlite(base, &mut self.database.url);
        resolve_sqlite(base, &mut self.sip.database_url);
    }

    /// Checks values that must fit together (a config built in code is checked the same way when
    /// the server starts).
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |s: &str| Err(ConfigError::Invalid(s.to_owned()));
        if !self.listen.ip().is_loopback() && !self.allow_non_loopback {
            return bad("listen must be a loopback address (set allow_non_loopback to override)");
        }
        if self.chain.backend == Backend::Rpc
            && (self.chain.rpc_url.is_none() || self.chain.contract.is_none())
        {
            return bad("the rpc backend needs chain.rpc_url and chain.contract");
        }
        if self.store.public_key.is_none() == self.store.public_key_file.is_none() {
            return bad("give exactly one of store.public_key and store.public_key_file");
        }
        if self.funding.safety_margin_percent < 100 {
            return bad("funding.safety_margin_percent must be at least 100");
        }
        if self.fees.bump_percent < 13 || self.fees.bump_percent > 1000 {
            return bad("fees.bump_percent must be between 13 and 1000");
        }
        if self.fees.replace_after < Duration::from_secs(1) {
            return bad("fees.replace_after_secs must be at least 1");
        }
        if !(self.limits.requests_per_second > 0.0 && self.limits.burst >= 1.0) {
            return bad("limits.requests_per_second must be > 0 and limits.burst >= 1");
        }
        self.numbers.validate()
    }

    /// The store public key (inline or from its file).
    pub fn store_public_key(&self) -> Result<String, ConfigError> {
        match (&self.store.public_key, &self.store.public_key_file) {
            (Some(k), _) => Ok(k.clone()),
            (None, Some(p)) => std::fs::read_to_string(p)
                .map(|s| s.trim().to_owned())
                .map_err(|source| ConfigError::Read {
                    path: p.clone(),
                    source,
                }),
            (None, None) => Err(ConfigError::Invalid("no store public key".into())),
        }
    }

    /// The admin token, if configured (file first, then the environment variable).
    pub fn admin_token(&self) -> Result<Option<String>, ConfigError> {
        if let Some(p) = &self.admin.token_file {
            // Refused when group or world readable (the message says `chmod 600 PATH`).
            let t = chaincall_identity::read_secret_file(p).map_err(|e| ConfigError::Read {
                path: p.clone(),
                source: match e {
                    chaincall_identity::SecretFileError::Io { source, .. } => source,
                    other => std::io::Error::other(other.to_string()),
                },
            })?;
            let t = t.trim().to_owned();
            return Ok((!t.is_empty()).then_some(t));
        }
        Ok(std::env::var(&self.admin.token_env)
            .ok()
            .filter(|t| !t.is_empty()))
    }

    /// The digest realm.
    pub fn realm(&self) -> &str {
        self.sip.realm.as_deref().unwrap_or(&self.sip.domain)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_config_parses() {
        let text = include_str!("../wallet.example.toml");
        let c = WalletConfig::parse(text, Path::new("/etc/chaincall")).unwrap();
        assert_eq!(c.chain.backend, Backend::Rpc);
        assert_eq!(
            c.chain.wallet_key_file,
            Path::new("/etc/chaincall/server-wallet.key")
        );
        assert!(c.database.url.starts_with("sqlite:///etc/chaincall/"));
        assert_eq!(c.realm(), "sip.example.org");
    }

    #[test]
    fn refuses_non_loopback_and_bad_values() {
        let text = include_str!("../wallet.example.toml");
        let open = text.replace("127.0.0.1:8547", "0.0.0.0:8547");
        assert!(WalletConfig::parse(&open, Path::new("/")).is_err());
        let low = text.replace("safety_margin_percent = 200", "safety_margin_percent = 50");
        assert!(WalletConfig::parse(&low, Path::new("/")).is_err());
        let typo = text.replace("[funding]", "[funding]\nmargin = 3");
        assert!(WalletConfig::parse(&typo, Path::new("/")).is_err());
    }

    /// Issue 15 item 2: values arrive typed, and a refused one names the file, line and key.
    #[test]
    fn values_are_typed_and_errors_name_file_line_and_key() {
        let text = include_str!("../wallet.example.toml");
        let c = WalletConfig::parse(text, Path::new("/")).unwrap();
        assert_eq!(c.funding.max_wei, U256::from(50_000_000_000_000_000u64));
        assert!(c.chain.contract.is_some());
        assert_eq!(c.identity.domain.as_str(), "wallet.example.org");
        // The `*_secs` and `*_ms` keys arrive as durations in their unit.
        assert_eq!(
            (
                c.fees.replace_after,
                c.limits.max_clock_skew,
                c.limits.request_wait,
                c.worker_interval,
            ),
            (
                Duration::from_secs(120),
                Duration::from_secs(300),
                Duration::from_secs(30),
                Duration::from_millis(500),
            )
        );
        let line_of = |needle: &str| text.lines().position(|l| l.contains(needle)).unwrap() + 1;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wallet.toml");
        for (from, to, key) in [
            ("max_wei = \"", "max_wei = \"5e16", "funding.max_wei"),
            ("contract = \"0x", "contract = \"0xzz", "chain.contract"),
            (
                "replace_after_secs = 120",
                "replace_after_secs = \"2m\"",
                "fees.replace_after_secs",
            ),
            (
                "domain = \"wallet.example.org\"",
                "domain = \"+15550100000\"",
                "identity.domain",
            ),
        ] {
            assert!(text.contains(from), "{from}");
            std::fs::write(&path, text.replacen(from, to, 1)).unwrap();
            let err = WalletConfig::load(&path).unwrap_err();
            let ConfigError::Parse(place) = &err else {
                panic!("not placed: {err}");
            };
            assert_eq!(place.file, path.display().to_string());
            assert_eq!(place.line, line_of(from), "{err}");
            assert_eq!(place.key.as_deref(), Some(key), "{err}");
        }
    }

    /// No `[numbers]`, no server: there is no default that lets a payload name its own number.
    #[test]
    fn numbers_section_is_required_and_checked() {
        let text = include_str!("../wallet.example.toml");
        let start = text.find("[numbers]").unwrap();
        let end = start + text[start..].find("\n\n").unwrap();
        let without = format!("{}{}", &text[..start], &text[end..]);
        let e = WalletConfig::parse(&without, Path::new("/")).unwrap_err();
        assert!(e.to_string().contains("numbers"), "{e}");
        let reversed = text.replace("last = \"+15550199999\"", "last = \"+15550000000\"");
        assert!(WalletConfig::parse(&reversed, Path::new("/")).is_err());
        let sms = text.replace(
            "verifier = \"assigned\"\nranges = [{ first = \"+15550100000\", last = \"+15550199999\" }]",
            "verifier = \"sms_code\"\nsmsc = \"127.0.0.1:2775\"\nsystem_id = \"chaincall\"\npassword_file = \"smpp.password\"",
        );
        let c = WalletConfig::parse(&sms, Path::new("/etc/chaincall")).unwrap();
        match c.numbers {
            NumbersConfig::SmsCode(s) => {
                assert_eq!(
                    s.password_file.unwrap(),
                    Path::new("/etc/chaincall/smpp.password")
                );
                assert_eq!(
                    (s.digits, s.ttl, s.max_attempts),
                    (6, Duration::from_secs(300), 5)
                );
            }
            other => panic!("{other:?}"),
        }
        let short = sms.replace(
            "system_id = \"chaincall\"",
            "system_id = \"chaincall\"\ndigits = 4",
        );
        assert!(WalletConfig::parse(&short, Path::new("/")).is_err());
        let typo = sms.replace(
            "system_id = \"chaincall\"",
            "system_id = \"chaincall\"\ndigitz = 8",
        );
        assert!(WalletConfig::parse(&typo, Path::new("/")).is_err());
    }
}
