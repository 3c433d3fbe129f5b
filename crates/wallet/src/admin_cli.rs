//! `chaincall wallet admin …`: the arguments (clap) and what each subcommand does, over
//! [`crate::admin_client`]. The binary only parses and prints what [`AdminArgs::run`] returns
//! (feature `cli`).
//!
//! The server's address and admin token come from its own configuration file, read as the server
//! reads it ([`WalletConfig::load`], [`WalletConfig::admin_token`]): the token is never taken on
//! the command line, where `ps` and shell histories would show it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};
use zeroize::Zeroizing;

use crate::admin_client::{AdminClient, AdminError, Answer, OnboardingTable};
use crate::config::{ConfigError, WalletConfig};

/// Operate a running wallet server over its admin API (bearer token from its configuration).
#[derive(Debug, Args)]
#[command(after_help = ADMIN_HELP)]
pub struct AdminArgs {
    /// The wallet server's configuration: its `listen` address and its `[admin]` token
    /// (`token_file`, or the variable `token_env` names) are used, as the server reads them.
    #[arg(
        long,
        global = true,
        value_name = "FILE",
        default_value = "wallet.toml"
    )]
    config: PathBuf,
    /// Connect to this URL instead of the configuration's `listen` address (e.g. behind a
    /// proxy: `https://wallet.example.org`).
    #[arg(long, global = true, value_name = "URL")]
    url: Option<String>,
    /// Print the server's JSON answer as it came, for scripts.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: AdminCommand,
}

const ADMIN_HELP: &str = "The admin token is read from the configuration, as the server reads \
it; it is never an argument. Errors say what failed: the server unreachable (naming the URL), the \
token not matching the server's (401), an unknown receipt id or number (404), a row a retry \
cannot move (409, with the reason). The exit status is then 1.";

#[derive(Debug, Subcommand)]
enum AdminCommand {
    /// Onboardings as a table: receipt id, phone, state, attempts, last error, last change (UTC).
    List {
        /// `all` (every onboarding), `pending` (not yet provisioned, failed or revoked) or one
        /// state: received, funding, funded, pending_seen, approved, provisioned, failed,
        /// revoked, recovering.
        #[arg(long, value_name = "STATE", default_value = "all")]
        state: String,
    },
    /// One onboarding in full: wallet, key, transactions, errors, times.
    Show {
        /// The store's order id the onboarding was made with.
        receipt_id: String,
    },
    /// Drive an onboarding now (a failed one resumes from what its recorded facts allow; nothing
    /// is funded twice). Refused for a provisioned or revoked one.
    Retry {
        /// The store's order id.
        receipt_id: String,
    },
    /// Revoke a subscriber: `revokeClient` on chain, its SIP account deleted, its onboarding
    /// marked revoked.
    Revoke {
        /// E.164 number, e.g. +15550100001.
        phone: String,
    },
    /// Rotate a subscriber's SIP password: the old one is refused from now on; the phone fetches
    /// the new one itself.
    RotateCredentials {
        /// E.164 number.
        phone: String,
    },
    /// Authorise one device recovery of a number provisioned here (operator-assigned numbers),
    /// after checking out of band that the requester owns it.
    AuthorizeRecovery {
        /// E.164 number.
        phone: String,
        /// How long the authorisation holds (default: the server's, one day).
        #[arg(long, value_name = "SECS")]
        ttl_secs: Option<u64>,
    },
}

/// Why `chaincall wallet admin` could not do its work.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AdminRunError {
    /// The configuration could not be read, or its token file not.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The configuration yields no token.
    #[error(
        "{config} gives no admin token: set [admin] token_file, or put the token in the environment variable {env} (the server reads the same place; without a token its admin API is off)"
    )]
    NoToken {
        /// The configuration file.
        config: String,
        /// The variable `token_env` names.
        env: String,
    },
    /// The request failed.
    #[error(transparent)]
    Admin(#[from] AdminError),
}

impl AdminArgs {
    /// Runs the subcommand; returns what to print on stdout (the server's JSON with `--json`).
    pub async fn run(self) -> Result<String, AdminRunError> {
        let config = WalletConfig::load(&self.config)?;
        let token =
            config
                .admin_token()?
                .map(Zeroizing::new)
                .ok_or_else(|| AdminRunError::NoToken {
                    config: self.config.display().to_string(),
                    env: config.admin.token_env.clone(),
                })?;
        let url = self.url.unwrap_or_else(|| local_url(config.listen));
        let admin = AdminClient::new(&url, token)?;
        let json = self.json;
        Ok(match self.command {
            AdminCommand::List { state } => {
                let answer = admin.list(Some(&state)).await?;
                if json {
                    answer.json
                } else {
                    OnboardingTable(&answer.value).to_string()
                }
            }
            AdminCommand::Show { receipt_id } => {
                answer_or_json(admin.show(&receipt_id).await?, json)
            }
            AdminCommand::Retry { receipt_id } => {
                answer_or_json(admin.retry(&receipt_id).await?, json)
            }
            AdminCommand::Revoke { phone } => answer_or_json(admin.revoke(&phone).await?, json),
            AdminCommand::RotateCredentials { phone } => {
                answer_or_json(admin.rotate_credentials(&phone).await?, json)
            }
            AdminCommand::AuthorizeRecovery { phone, ttl_secs } => {
                let ttl = ttl_secs.map(Duration::from_secs);
                answer_or_json(admin.authorize_recovery(&phone, ttl).await?, json)
            }
        })
    }
}

/// The server's JSON as it came with `--json`, else the answer's text view.
fn answer_or_json<T: std::fmt::Display>(answer: Answer<T>, json: bool) -> String {
    if json {
        answer.json
    } else {
        answer.value.to_string()
    }
}

/// Where a client on this machine reaches a server listening on `listen`: an unspecified
/// address (`0.0.0.0`, `[::]`) is reached over loopback.
fn local_url(listen: SocketAddr) -> String {
    let ip = match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    format!("http://{}", SocketAddr::new(ip, listen.port()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unspecified_listen_addresses_are_reached_over_loopback() {
        for (listen, url) in [
            ("127.0.0.1:8547", "http://127.0.0.1:8547"),
            ("0.0.0.0:8547", "http://127.0.0.1:8547"),
            ("[::]:9000", "http://[::1]:9000"),
            ("10.0.0.5:80", "http://10.0.0.5:80"),
        ] {
            assert_eq!(local_url(listen.parse().unwrap()), url);
        }
    }
}
