//! `chaincall wallet serve --config FILE`: the wallet-management server (see `chaincall-wallet`
//! and its `wallet.example.toml`). Stops gracefully on SIGINT or SIGTERM.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};

/// Wallet-management server: receipts, funding, approval, SIP credentials.
#[derive(Debug, Args)]
pub(crate) struct WalletArgs {
    #[command(subcommand)]
    command: WalletCommand,
}

#[derive(Debug, Subcommand)]
enum WalletCommand {
    /// Run the HTTP API until SIGINT/SIGTERM. Prints `listening http://ADDR` on stdout when ready.
    Serve {
        /// The TOML configuration (see crates/wallet/wallet.example.toml).
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
}

pub(crate) fn run(args: WalletArgs) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        match args.command {
            WalletCommand::Serve { config } => {
                let config = chaincall_wallet::WalletConfig::load(&config)?;
                chaincall_wallet::server::run(config, shutdown_signal()).await?;
                Ok(())
            }
        }
    })
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
