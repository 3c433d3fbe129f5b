//! Onboarding (the paper's Fig. 2) and device recovery, the phone's side, over
//! [`chaincall_wallet::client`] (docs/onboarding.md).
//!
//! **Onboarding**: the wallet server checks the store receipt, decides the number (the config's
//! `number`, proven by a one-time SMS code when the server verifies numbers, or the next free one)
//! and funds the wallet; the phone puts its key on chain with `addClient`, the server approves it
//! and provisions SIP credentials; the SIP password is then stored in the key file.
//!
//! **Recovery** after the key file is lost: with the number's ORIGINAL receipt and a fresh proof
//! that the number is ours (an SMS code, or the operator's authorisation for assigned numbers),
//! the server revokes the old key and moves the number to this phone's new wallet and key. The SIP
//! password then comes from `/v1/credentials`, signed by the new on-chain key: the server derives
//! it at a generation of its own, made after the old key was revoked, so the lost device (which
//! holds the same receipt) can neither derive nor fetch it.
//!
//! Both are one flow (`onboard` and `recover` share it) and safe to rerun. What needs a person
//! (the SMS code, progress notes) goes through [`OnboardingUi`], so the prompts stay with the
//! program that owns the terminal.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chaincall_chain::{ChainError, ClientId, KeystoreChain, RpcChain};
use chaincall_identity::{IdentityName, KeyStatus, PhoneNumber, PublicIdentityKey};
use chaincall_wallet::client::{
    ClientError, NumberRequest, WalletClient, onboard_phone, recover_phone, request_number_code,
    request_recovery_code, server_identity_key,
};
use chaincall_wallet::receipt::Receipt;
use zeroize::Zeroizing;

use crate::chain_access::ChainAccessError;
use crate::config_file::{ConfigError, PhoneFileConfig};
use crate::error::PhoneError;
use crate::key_file::KeyFileError;
use crate::store::PhoneSecrets;

/// How long the wallet server may take from the receipt to provisioned SIP credentials.
const JOIN_TIMEOUT: Duration = Duration::from_secs(120);

/// How often a wait on a peer that does not answer is reported ([`Note::Waiting`]).
const PROGRESS_EVERY: Duration = Duration::from_secs(3);

/// Shortest passphrase a new key file is sealed under.
const MIN_PASSPHRASE: usize = 8;

/// Why onboarding, recovery or a SIP password fetch failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OnboardingError {
    /// A new key file's passphrase is too short.
    #[error("the passphrase must be at least {MIN_PASSPHRASE} characters")]
    ShortPassphrase,
    /// The configuration (its number, or storing the assigned one).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// `init --number` names another number than the config's.
    #[error("--number {given} differs from the config's number {config} ({})", path.display())]
    OtherNumber {
        /// The number given.
        given: PhoneNumber,
        /// The config's number.
        config: PhoneNumber,
        /// The config file.
        path: PathBuf,
    },
    /// Recovery needs the number to recover.
    #[error("recovery needs the number to recover as the config's `number`")]
    NoNumber(#[source] ConfigError),
    /// The key file.
    #[error(transparent)]
    KeyFile(#[from] KeyFileError),
    /// The key file could not be rewritten with the SIP password.
    #[error("cannot update {}", .0.display())]
    Save(PathBuf, #[source] PhoneError),
    /// The receipt file could not be read (or is readable by group or others). The path is
    /// named by the source (every `SecretFileError` names its file), so not here again.
    #[error("cannot read the receipt")]
    Receipt(PathBuf, #[source] chaincall_identity::SecretFileError),
    /// The receipt file holds no receipt.
    #[error(
        "{} is not a receipt (expected the JSON `chaincall store issue-receipt` prints)",
        .0.display()
    )]
    NotAReceipt(PathBuf),
    /// The config lacks a key the wallet server needs (`wallet_url`, `wallet_domain`).
    #[error("{}: `{key}` is needed to {what}", config.display())]
    Missing {
        /// The config file.
        config: PathBuf,
        /// The key it lacks.
        key: &'static str,
        /// What it is needed for.
        what: &'static str,
    },
    /// The wallet server's own key could not be read from the chain.
    #[error("the wallet server's key ({domain}) on chain")]
    ServerKey {
        /// The server's domain.
        domain: String,
        /// Why.
        #[source]
        source: ClientError,
    },
    /// Our number's keystore entry could not be read.
    #[error("reading {number}'s keystore entry")]
    Entry {
        /// The number.
        number: PhoneNumber,
        /// Why.
        #[source]
        source: ChainError,
    },
    /// The wallet server refused or failed; `doing` says at which step.
    #[error("{doing}")]
    Wallet {
        /// The step, e.g. "onboarding +15551234567 at http://…".
        doing: String,
        /// The server's answer.
        #[source]
        source: ClientError,
    },
    /// The number is taken on chain: its owner gets it back with device recovery.
    #[error(
        "{doing}: {number} is taken on chain (number_taken); nothing was funded or consumed. If \
         it is your number and you lost the device's key file, run `chaincall phone recover \
         --receipt FILE` with the number's original receipt"
    )]
    NumberTaken {
        /// The step.
        doing: String,
        /// The number asked for.
        number: String,
    },
    /// The SMS code could not be read.
    #[error("reading the code from stdin")]
    Prompt(#[source] std::io::Error),
    /// The person entered no code.
    #[error("no code entered")]
    NoCode,
    /// The flow stopped in another state than provisioned.
    #[error("{what} ended in state {state}")]
    EndState {
        /// "onboarding" or "recovery".
        what: &'static str,
        /// The state it stopped in.
        state: String,
    },
    /// The server's answer named no number.
    #[error("the wallet server named no number")]
    NoNumberAssigned,
    /// The chain node could not be reached.
    #[error(transparent)]
    Chain(#[from] ChainAccessError),
    /// A peer did not answer within the config's `onboard_timeout_secs`.
    #[error(
        "gave up after {} s: {what} did not answer. Nothing was lost: rerunning `chaincall phone \
         {command}` is safe (it goes on from where this run stopped); the limit is the config's \
         `onboard_timeout_secs`",
        .after.as_secs()
    )]
    TimedOut {
        /// What was waited for.
        what: String,
        /// The command to rerun: `onboard` or `recover`.
        command: &'static str,
        /// The limit.
        after: Duration,
    },
}

/// The time a run of onboarding or recovery has left: the config's `onboard_timeout_secs`, not
/// counting the time the person takes to type an SMS code.
#[derive(Debug, Clone, Copy)]
struct Clock {
    started: Instant,
    limit: Duration,
    /// Time spent at the SMS code prompt.
    excluded: Duration,
    /// The command, for [`OnboardingError::TimedOut`].
    command: &'static str,
}

impl Clock {
    fn start(started: Instant, limit: Duration, command: &'static str) -> Self {
        Self {
            started,
            limit,
            excluded: Duration::ZERO,
            command,
        }
    }

    fn remaining(&self) -> Duration {
        (self.limit + self.excluded).saturating_sub(self.started.elapsed())
    }
}

/// Awaits `fut`, a request to `what`, telling `ui` every few seconds that it still waits, and
/// gives up when `clock` runs out.
async fn waiting_for<T>(
    ui: &mut impl OnboardingUi,
    clock: &Clock,
    what: &str,
    fut: impl Future<Output = T>,
) -> Result<T, OnboardingError> {
    let started = Instant::now();
    let mut fut = std::pin::pin!(fut);
    loop {
        let nap = clock.remaining().min(PROGRESS_EVERY);
        if let Ok(done) = tokio::time::timeout(nap, &mut fut).await {
            return Ok(done);
        }
        if clock.remaining().is_zero() {
            return Err(OnboardingError::TimedOut {
                what: what.to_owned(),
                command: clock.command,
                after: clock.limit,
            });
        }
        let seconds = started.elapsed().as_secs();
        ui.note(Note::Waiting { what, seconds });
    }
}

/// What the flows need from the person at the phone.
pub trait OnboardingUi {
    /// The one-time code the wallet server just sent to `number` by SMS. The CLI asks at a prompt
    /// on the terminal, never on the command line, so the code stays out of shell history.
    fn sms_code(&mut self, number: &PhoneNumber) -> std::io::Result<Zeroizing<String>>;
    /// What the flow does next, for the person to follow.
    fn note(&mut self, note: Note<'_>);
}

/// Progress worth telling the person.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub enum Note<'a> {
    /// The server assigns numbers: the operator must have authorised recovering this one.
    OperatorAuthorises(&'a PhoneNumber),
    /// Asking the server at `url` to revoke the old key and move `number` to this phone.
    Recovering {
        /// The wallet server.
        url: &'a str,
        /// The number.
        number: &'a PhoneNumber,
    },
    /// Still waiting for a peer that has not answered.
    Waiting {
        /// The peer and what it was asked.
        what: &'a str,
        /// Seconds waited so far.
        seconds: u64,
    },
}

impl std::fmt::Display for Note<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Note::OperatorAuthorises(number) => write!(
                f,
                "the wallet server assigns numbers: the operator must have authorised recovering \
                 {number} (after checking it is yours)"
            ),
            Note::Recovering { url, number } => write!(
                f,
                "asking {url} to revoke the old key and move {number} to this phone"
            ),
            Note::Waiting { what, seconds } => {
                write!(f, "waiting for {what}: no answer for {seconds} s")
            }
        }
    }
}

/// Connects to the config's chain node ([`PhoneFileConfig::chain`]) for onboarding or recovery,
/// telling `ui` while the node does not answer and giving up after `onboard_timeout_secs`. An
/// [`Onboarding`] made with `cfg` afterwards counts its time from here: the limit bounds both.
pub async fn connect(
    cfg: &mut PhoneFileConfig,
    command: &'static str,
    ui: &mut impl OnboardingUi,
) -> Result<Arc<RpcChain>, OnboardingError> {
    let started = Instant::now();
    cfg.onboarding_since = Some(started);
    let clock = Clock::start(started, cfg.onboard_timeout, command);
    let peer = format!("the chain node {}", cfg.rpc_url);
    Ok(waiting_for(ui, &clock, &peer, cfg.chain()).await??)
}

/// How `recover` ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Recovery {
    /// The number's approved key is this phone's already, and its SIP password is stored.
    AlreadyOurs,
    /// An earlier run recovered the number but stopped before storing the SIP password; it is
    /// stored now.
    PasswordStored,
    /// The old key is revoked, ours approved, the new SIP password stored.
    Recovered,
}

/// Takes `number` (`init --number`) as the phone's number: stored in the config when it names
/// none, refused when it names another.
pub fn adopt_number(cfg: &mut PhoneFileConfig, number: PhoneNumber) -> Result<(), OnboardingError> {
    match &cfg.number {
        None => Ok(cfg.store_number(number)?),
        Some(ours) if *ours == number => Ok(()),
        Some(ours) => Err(OnboardingError::OtherNumber {
            given: number,
            config: ours.clone(),
            path: cfg.path.clone(),
        }),
    }
}

impl Recovery {
    /// What `phone recover` reports for this outcome (`None`: nothing to say), for the config's
    /// number and the phone's keys after recovery.
    pub fn report(&self, cfg: &PhoneFileConfig, secrets: &PhoneSecrets) -> Option<String> {
        let (number, wallet) = (cfg.number_text(), secrets.wallet.address());
        match self {
            Recovery::AlreadyOurs => Some(format!(
                "{number} is this phone's already: its key is approved on chain for wallet \
                 {wallet}; nothing to recover"
            )),
            Recovery::PasswordStored => None,
            Recovery::Recovered => Some(format!(
                "recovered {number}: the old key is revoked and this phone's key {} is approved on \
                 chain (wallet {wallet}); the new SIP password is stored in {} and the old one no \
                 longer works. Contacts are told the key was replaced after the operator revoked \
                 the old one; compare safety numbers with them again (`chaincall phone contact \
                 show NUMBER`).",
                secrets.own_fingerprint(cfg.number.as_ref()),
                cfg.key_file.display()
            )),
        }
    }
}

/// What `phone onboard` reports once the number is the phone's: the wallet, the SIP account and
/// where the password and the number were stored.
pub fn onboarded(cfg: &PhoneFileConfig, secrets: &PhoneSecrets) -> String {
    format!(
        "onboarded {}: key approved on chain (wallet {}), SIP account provisioned at {}; \
         password stored in {}, number in {}",
        cfg.number_text(),
        secrets.wallet.address(),
        cfg.sip_domain,
        cfg.key_file.display(),
        cfg.path.display()
    )
}

/// Refuses a passphrase too short to seal a new key file under.
pub fn check_passphrase(pass: &str) -> Result<(), OnboardingError> {
    if pass.len() < MIN_PASSPHRASE {
        return Err(OnboardingError::ShortPassphrase);
    }
    Ok(())
}

/// Makes the phone's identity key and wallet and writes them encrypted to the config's
/// `key_file` (`init`, and recovery on a device without keys). Never overwrites a key file.
pub fn make_key_file(cfg: &PhoneFileConfig, pass: &str) -> Result<PhoneSecrets, OnboardingError> {
    check_passphrase(pass)?;
    let secrets = PhoneSecrets::generate(cfg.number_text());
    cfg.write_secrets(&secrets, pass, false)?;
    Ok(secrets)
}

/// The receipt JSON at `path`. It holds the purchase token: refused when group or world readable.
pub fn read_receipt(path: &Path) -> Result<Receipt, OnboardingError> {
    let text = chaincall_identity::read_secret_file(path)
        .map_err(|e| OnboardingError::Receipt(path.to_path_buf(), e))?;
    serde_json::from_str(&text).map_err(|_| OnboardingError::NotAReceipt(path.to_path_buf()))
}

/// The wallet server the config names, with its identity key as the chain vouches for it.
struct WalletServer {
    client: WalletClient,
    key: PublicIdentityKey,
    url: String,
    /// The server proves numbers with a one-time SMS code (else it assigns them).
    sms_code: bool,
}

impl WalletServer {
    /// The config's `wallet_url` and `wallet_domain`; `what` names the command for errors.
    async fn of<C: KeystoreChain>(
        cfg: &PhoneFileConfig,
        chain: &C,
        what: &'static str,
        ui: &mut impl OnboardingUi,
        clock: &Clock,
    ) -> Result<Self, OnboardingError> {
        let missing = |key| OnboardingError::Missing {
            config: cfg.path.clone(),
            key,
            what,
        };
        let url = cfg
            .wallet_url
            .clone()
            .ok_or_else(|| missing("wallet_url"))?;
        let domain = cfg
            .wallet_domain
            .clone()
            .ok_or_else(|| missing("wallet_domain"))?;
        let peer = format!("the chain node {} (the wallet server's key)", cfg.rpc_url);
        let key = server_identity_key(chain, cfg.contract, &domain);
        let key = waiting_for(ui, clock, &peer, key)
            .await?
            .map_err(|source| OnboardingError::ServerKey { domain, source })?;
        let client = WalletClient::new(url.clone());
        let peer = format!("the wallet server {url}");
        let info = waiting_for(ui, clock, &peer, client.server_info())
            .await?
            .map_err(|source| OnboardingError::Wallet {
                doing: format!("the wallet server at {url}"),
                source,
            })?;
        let sms_code = info["number_verifier"].as_str() == Some("sms_code");
        Ok(Self {
            client,
            key,
            url,
            sms_code,
        })
    }
}

/// The wallet server's refusal at step `doing`; a taken number says how its owner gets it back.
fn refused(source: ClientError, number: &str, doing: String) -> OnboardingError {
    if source.code() == Some("number_taken") {
        OnboardingError::NumberTaken {
            doing,
            number: number.to_owned(),
        }
    } else {
        OnboardingError::Wallet { doing, source }
    }
}

/// One run of onboarding or recovery: the phone's configuration, chain, keys (loaded, or just
/// made with [`make_key_file`]) and key file passphrase, and the person at the phone.
pub struct Onboarding<'a, C, U> {
    /// The configuration; the decided number is stored into it.
    pub cfg: &'a mut PhoneFileConfig,
    /// The chain node.
    pub chain: &'a C,
    /// The phone's keys; the SIP password is stored into them (and the key file).
    pub secrets: &'a mut PhoneSecrets,
    /// The key file's passphrase.
    pub pass: &'a str,
    /// The SMS code prompt and progress notes.
    pub ui: &'a mut U,
    /// What the run has left of the config's `onboard_timeout_secs`.
    clock: Clock,
}

/// Which of the two flows [`Onboarding::join`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Join {
    Onboard,
    Recover,
}

impl<'a, C: KeystoreChain, U: OnboardingUi> Onboarding<'a, C, U> {
    /// A run for the phone `cfg` describes, on `chain`, with its keys and passphrase.
    pub fn new(
        cfg: &'a mut PhoneFileConfig,
        chain: &'a C,
        secrets: &'a mut PhoneSecrets,
        pass: &'a str,
        ui: &'a mut U,
    ) -> Self {
        let started = cfg.onboarding_since.unwrap_or_else(Instant::now);
        let clock = Clock::start(started, cfg.onboard_timeout, "onboard");
        Self {
            cfg,
            chain,
            secrets,
            pass,
            ui,
            clock,
        }
    }

    /// Onboards with `receipt`; returns the number the server decided, which is then in the key
    /// file (with the SIP password) and in the config.
    pub async fn onboard(&mut self, receipt: Receipt) -> Result<PhoneNumber, OnboardingError> {
        let server =
            WalletServer::of(self.cfg, self.chain, "onboard", self.ui, &self.clock).await?;
        self.join(Join::Onboard, &server, receipt).await
    }

    /// Recovers the config's number to this phone's keys with the number's original `receipt`.
    pub async fn recover(&mut self, receipt: Receipt) -> Result<Recovery, OnboardingError> {
        let number = self
            .cfg
            .number()
            .map_err(OnboardingError::NoNumber)?
            .clone();
        self.clock.command = "recover";
        let id = ClientId::of(&IdentityName::Phone(number.clone()));
        let peer = format!("the chain node {} ({number}'s entry)", self.cfg.rpc_url);
        let entry = self.chain.get_client(self.cfg.contract, id);
        let entry = waiting_for(self.ui, &self.clock, &peer, entry).await?;
        let entry = entry.map_err(|source| OnboardingError::Entry {
            number: number.clone(),
            source,
        })?;
        let secrets = &*self.secrets;
        let ours = entry.status == KeyStatus::Approved
            && entry.wallet == Some(secrets.wallet.address())
            && entry.approved_key() == Some(secrets.identity.public());
        if ours && secrets.sip_password.is_some() {
            return Ok(Recovery::AlreadyOurs);
        }
        let server =
            WalletServer::of(self.cfg, self.chain, "recover", self.ui, &self.clock).await?;
        if ours {
            // Recovered by an earlier run that stopped before storing the SIP password.
            let (client, url) = (&server.client, server.url.as_str());
            let fetch = fetch_sip_password(self.cfg, client, url, &number, self.secrets, self.pass);
            let peer = format!("the wallet server {url} (the SIP password)");
            waiting_for(self.ui, &self.clock, &peer, fetch).await??;
            return Ok(Recovery::PasswordStored);
        }
        self.join(Join::Recover, &server, receipt).await?;
        Ok(Recovery::Recovered)
    }

    /// The flow onboarding and recovery share: the ownership proof (an SMS code when the server
    /// asks for one), the wallet server's flow up to provisioned credentials, then the SIP
    /// password into the key file and the number into the config.
    async fn join(
        &mut self,
        kind: Join,
        server: &WalletServer,
        receipt: Receipt,
    ) -> Result<PhoneNumber, OnboardingError> {
        let Self {
            cfg,
            chain,
            secrets,
            pass,
            ui,
            clock,
        } = self;
        let (chain, pass) = (*chain, *pass);
        let asked = cfg.number_text().to_owned();
        let mut request = NumberRequest::named(&asked);
        let url = server.url.as_str();
        let (client, key, contract) = (&server.client, &server.key, cfg.contract);
        let (wallet, identity) = (&secrets.wallet, &secrets.identity);
        // Onboarding and recovery take the same arguments at each step; one list serves both.
        macro_rules! step {
            ($flow:ident, $recover:ident, $($arg:expr),*) => {
                match kind {
                    Join::Onboard => $flow(client, $($arg),*).await,
                    Join::Recover => $recover(client, $($arg),*).await,
                }
            };
        }
        if server.sms_code {
            let number = cfg.number()?.clone();
            let public = identity.public();
            let copy = receipt.clone();
            let doing = format!("asking {url} for a code to {number}");
            let ask = async {
                step!(
                    request_number_code,
                    request_recovery_code,
                    key,
                    wallet,
                    &public,
                    &asked,
                    copy
                )
            };
            let peer = format!("the wallet server {url} (a code to {number})");
            waiting_for(*ui, clock, &peer, ask)
                .await?
                .map_err(|e| refused(e, &asked, doing))?;
            // The person's typing does not count against the timeout.
            let prompted = Instant::now();
            let code = ui.sms_code(&number).map_err(OnboardingError::Prompt)?;
            clock.excluded += prompted.elapsed();
            if code.trim().is_empty() {
                return Err(OnboardingError::NoCode);
            }
            request = request.with_code(&code);
        } else if kind == Join::Recover {
            ui.note(Note::OperatorAuthorises(cfg.number()?));
        }
        // The step as errors name it, and the flow as its end state does.
        let (doing, what) = match kind {
            Join::Onboard => ("onboarding", "onboarding"),
            Join::Recover => {
                ui.note(Note::Recovering {
                    url,
                    number: cfg.number()?,
                });
                ("recovering", "recovery")
            }
        };
        let request = &request;
        let status = async {
            step!(
                onboard_phone,
                recover_phone,
                chain,
                contract,
                key,
                wallet,
                identity,
                request,
                receipt,
                JOIN_TIMEOUT
            )
        };
        let peer = format!(
            "the wallet server {url} and the chain node {} ({doing}: funding, addClient, approval)",
            cfg.rpc_url
        );
        let status = waiting_for(*ui, clock, &peer, status).await?;
        let status = status.map_err(|e| refused(e, &asked, format!("{doing} {asked} at {url}")))?;
        if status.state != "provisioned" {
            return Err(OnboardingError::EndState {
                what,
                state: format!("{:?}", status.state),
            });
        }
        let number = match kind {
            Join::Onboard => status
                .phone
                .as_deref()
                .and_then(|p| PhoneNumber::parse(p).ok())
                .ok_or(OnboardingError::NoNumberAssigned)?,
            Join::Recover => cfg.number()?.clone(),
        };
        // The key file is sealed to its number (associated data): re-sealed under the decided one.
        secrets.number = number.as_str().to_owned();
        let fetch = fetch_sip_password(cfg, &server.client, url, &number, secrets, pass);
        let peer = format!("the wallet server {url} (the SIP password)");
        waiting_for(*ui, clock, &peer, fetch).await??;
        if cfg.number.as_ref() != Some(&number) {
            cfg.store_number(number.clone())?;
        }
        Ok(number)
    }
}

/// Fetches the number's current SIP password from the wallet server (`POST /v1/credentials`,
/// signed by our identity key, sealed to it) and stores it in the key file. Used at the end of
/// onboarding and recovery, and when the SIP server refuses the stored one (the operator may have
/// rotated it): [`refresh_sip_password`].
async fn fetch_sip_password(
    cfg: &PhoneFileConfig,
    client: &WalletClient,
    url: &str,
    number: &PhoneNumber,
    secrets: &mut PhoneSecrets,
    pass: &str,
) -> Result<(), OnboardingError> {
    let password = client
        .sip_password(&secrets.identity, number)
        .await
        .map_err(|source| OnboardingError::Wallet {
            doing: format!("fetching the SIP password of {number} from {url}"),
            source,
        })?;
    secrets.sip_password = Some(password);
    secrets
        .save(&cfg.key_file, pass, true)
        .map_err(|e| OnboardingError::Save(cfg.key_file.clone(), e))
}

/// Fetches the current SIP password from the config's `wallet_url` and stores it in the key file
/// (`register`, after the SIP server refused the stored one).
pub async fn refresh_sip_password(
    cfg: &PhoneFileConfig,
    secrets: &mut PhoneSecrets,
    pass: &str,
) -> Result<(), OnboardingError> {
    let url = cfg
        .wallet_url
        .clone()
        .ok_or_else(|| OnboardingError::Missing {
            config: cfg.path.clone(),
            key: "wallet_url",
            what: "fetch new SIP credentials",
        })?;
    let client = WalletClient::new(url.clone());
    fetch_sip_password(cfg, &client, &url, cfg.number()?, secrets, pass).await
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    /// A config in `dir` naming `number` (or none), with its key file `phone.key` there.
    pub(crate) fn config(dir: &Path, number: Option<&str>) -> PhoneFileConfig {
        let number = number.map_or(String::new(), |n| format!("number = \"{n}\"\n"));
        let text = format!(
            "{number}rpc_url = \"http://127.0.0.1:8545\"\ncontract = \
             \"0x5FbDB2315678afecb367f032d93F642f64180aa3\"\n[sip]\naddr = \"127.0.0.1:5061\"\n\
             domain = \"sip.example.org\"\n"
        );
        let path = dir.join("phone.toml");
        std::fs::write(&path, text).unwrap();
        PhoneFileConfig::load(&path).unwrap()
    }

    #[test]
    fn init_number_is_stored_once_and_another_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = config(dir.path(), None);
        let alice: PhoneNumber = "+15550100001".parse().unwrap();
        adopt_number(&mut cfg, alice.clone()).unwrap();
        // Written into the file, so the next command sees it.
        let reloaded = PhoneFileConfig::load(&cfg.path).unwrap();
        assert_eq!(reloaded.number.as_ref(), Some(&alice));
        adopt_number(&mut cfg, alice).unwrap();
        let e = adopt_number(&mut cfg, "+15550100002".parse().unwrap()).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("--number +15550100002 differs from the config's number +15550100001"),
            "{e}"
        );
    }

    #[test]
    fn new_keys_need_a_passphrase_of_eight_characters_and_never_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(dir.path(), Some("+15550100001"));
        let e = make_key_file(&cfg, "short").unwrap_err();
        assert!(matches!(e, OnboardingError::ShortPassphrase), "{e:?}");
        assert!(
            !cfg.key_file.exists(),
            "nothing written for a refused passphrase"
        );
        let made = make_key_file(&cfg, "correct horse").unwrap();
        let opened = cfg.load_secrets("correct horse").unwrap();
        assert_eq!(opened.identity.public(), made.identity.public());
        let e = make_key_file(&cfg, "correct horse").unwrap_err();
        assert!(
            matches!(e, OnboardingError::KeyFile(KeyFileError::Write { .. })),
            "{e:?}"
        );
        assert_eq!(
            cfg.load_secrets("correct horse").unwrap().wallet.address(),
            made.wallet.address()
        );
    }

    #[test]
    fn a_receipt_readable_by_others_or_not_a_receipt_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("receipt.json");
        std::fs::write(&path, r#"{"original_json": "{}", "signature": "c2ln"}"#).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = read_receipt(&path).unwrap_err();
        assert!(matches!(e, OnboardingError::Receipt(..)), "{e:?}");
        // The printed chain names the file once, with the fix.
        let shown = chaincall_io::ErrorChain(&e).to_string();
        let name = path.display().to_string();
        assert_eq!(
            shown.matches(&format!("chmod 600 {name}")).count(),
            1,
            "{shown}"
        );
        assert_eq!(
            shown.matches(&name).count(),
            2,
            "the mode and the fix: {shown}"
        );
        assert!(
            shown.starts_with(&format!("cannot read the receipt: {name} has mode 0644")),
            "{shown}"
        );
        let missing = read_receipt(&dir.path().join("none.json")).unwrap_err();
        let shown = chaincall_io::ErrorChain(&missing).to_string();
        assert_eq!(shown.matches("none.json").count(), 1, "{shown}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        read_receipt(&path).unwrap();
        std::fs::write(&path, "not json").unwrap();
        let e = read_receipt(&path).unwrap_err().to_string();
        assert!(
            e.ends_with(
                "is not a receipt (expected the JSON `chaincall store issue-receipt` prints)"
            ),
            "{e}"
        );
    }

    #[test]
    fn a_taken_number_says_how_its_owner_gets_it_back() {
        let taken = ClientError::Api {
            status: 409,
            code: "number_taken".into(),
            message: "taken".into(),
        };
        let e = refused(
            taken,
            "+15550100001",
            "onboarding +15550100001 at http://w".into(),
        );
        let text = e.to_string();
        assert!(
            text.starts_with("onboarding +15550100001 at http://w: +15550100001 is taken"),
            "{text}"
        );
        assert!(
            text.contains("chaincall phone recover --receipt FILE"),
            "{text}"
        );
        let other = ClientError::Http("down".into());
        let e = refused(other, "+15550100001", "onboarding".into());
        assert!(matches!(e, OnboardingError::Wallet { .. }), "{e:?}");
    }
}
