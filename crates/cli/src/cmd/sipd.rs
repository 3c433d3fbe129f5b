//! `chaincall sipd`: the SIP server (registrar + stateful proxy + digest auth).
//!
//! `chaincall sipd serve --config FILE [--listen udp:IP:PORT|tcp:IP:PORT|tls:IP:PORT]... [--auth none] [--static-route IP:PORT]`
//!
//! A `tls:` listener serves TLS with the external PSK of chaincall's handshake; the file's
//! `[tls_psk]` section names the server's identity, key file, keystore RPC URL and contract.
//! `chaincall sipd add-user --database sqlite://sip.db --domain example.com USER (--password-file FILE | --password-stdin)`
//! (the password is never taken on the command line, where `ps` and shell history show it)

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;
use chaincall_sipd::overrides::Overrides;
use chaincall_sipd::{Config, Listen, Server};
use clap::{Args, Subcommand};

/// SIP server commands.
#[derive(Debug, Args)]
pub(crate) struct SipdArgs {
    #[command(subcommand)]
    command: SipdCommand,
}

#[derive(Debug, Subcommand)]
enum SipdCommand {
    /// Run the server until SIGINT (Ctrl-C) or SIGTERM.
    Serve(ServeArgs),
    /// Add a subscriber to the Kamailio-compatible `subscriber` table (like `kamctl add`).
    AddUser(AddUserArgs),
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// TOML configuration (see crates/sipd/sipd.example.toml); defaults apply without it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Listen on udp:IP:PORT, tcp:IP:PORT or tls:IP:PORT (TLS-PSK: needs `[tls_psk]` in the file;
    /// repeatable; replaces the file's list).
    #[arg(long)]
    listen: Vec<Listen>,
    /// `none` skips digest auth (trusted network, benchmarks); `digest` enforces it.
    #[arg(long)]
    auth: Option<String>,
    /// Send requests for unregistered targets to IP:PORT.
    #[arg(long)]
    static_route: Option<SocketAddr>,
    /// The SIP domain (digest realm).
    #[arg(long)]
    domain: Option<String>,
}

#[derive(Debug, Args)]
struct AddUserArgs {
    /// sqlx database URL.
    #[arg(long, default_value = "sqlite://sip.db")]
    database: String,
    /// Domain (and realm) of the subscriber.
    #[arg(long)]
    domain: String,
    /// Username (a phone number in chaincall's provisioning).
    username: String,
    /// Read the password from FILE (first line; the file must be mode 0600).
    #[arg(
        long,
        value_name = "FILE",
        conflicts_with = "password_stdin",
        required_unless_present = "password_stdin"
    )]
    password_file: Option<PathBuf>,
    /// Read the password from the first line of standard input.
    #[arg(long)]
    password_stdin: bool,
}

/// The password from `--password-file` or `--password-stdin` (first line, without its newline).
fn read_password(a: &AddUserArgs) -> anyhow::Result<zeroize::Zeroizing<String>> {
    crate::secret_line("password", a.password_file.as_deref(), || {
        let mut line = zeroize::Zeroizing::new(String::new());
        std::io::stdin()
            .read_line(&mut line)
            .context("reading the password from standard input")?;
        Ok(crate::first_line(&line))
    })
}

pub(crate) fn run(args: SipdArgs) -> anyhow::Result<()> {
    match args.command {
        SipdCommand::Serve(a) => crate::block_on(serve(a))?,
        SipdCommand::AddUser(a) => crate::block_on(async {
            let password = read_password(&a)?;
            let db = chaincall_sipd::db::Db::connect(&a.database).await?;
            db.create_schema().await?;
            db.add_subscriber(&a.username, &a.domain, &password).await?;
            println!("added {}@{}", a.username, a.domain);
            Ok::<(), anyhow::Error>(())
        })?,
    }
}

async fn serve(a: ServeArgs) -> anyhow::Result<()> {
    let file = match &a.config {
        Some(p) => Config::load(p)?,
        None => Config::default(),
    };
    let cfg = file.with_overrides(Overrides {
        listen: a.listen,
        auth: a.auth,
        static_route: a.static_route,
        domain: a.domain,
        keylog_file: crate::ssl_keylog_file(),
    })?;
    let server = Server::bind(cfg).await.context("starting sipd")?;
    server.run(super::shutdown_signal()).await;
    Ok(())
}
