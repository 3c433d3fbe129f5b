//! `chaincall wallet serve --config FILE`: the wallet-management server (see `chaincall-wallet`
//! and its `wallet.example.toml`). Stops gracefully on SIGINT or SIGTERM. `chaincall wallet admin`
//! (`chaincall_wallet::admin_cli`) operates a running one.

use std::path::PathBuf;

use anyhow::Result;
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
    /// Operate a running server: `admin list|show|retry|revoke|rotate-credentials|…`.
    Admin(chaincall_wallet::admin_cli::AdminArgs),
}

/// Runs `chaincall wallet …`.
pub(crate) fn run(args: WalletArgs) -> Result<()> {
    let config = match args.command {
        WalletCommand::Serve { config } => config,
        WalletCommand::Admin(admin) => {
            print!("{}", crate::block_on(admin.run())??);
            return Ok(());
        }
    };
    let config = chaincall_wallet::WalletConfig::load(&config)?;
    Ok(crate::block_on(async {
        chaincall_wallet::server::run(config, super::shutdown_signal()).await
    })??)
}
