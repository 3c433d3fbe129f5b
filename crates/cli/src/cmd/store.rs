//! `chaincall store …`: a development app store that makes a store key pair and issues receipts in
//! Google Play's format (purchase JSON + base64 `SHA1withRSA` signature), so tests and demos go
//! through the wallet server's real verification path. The store is `chaincall_wallet::dev_store`;
//! this module parses and prints.

use std::path::PathBuf;

use anyhow::{Context, Result};
use chaincall_wallet::dev_store::{self, ReceiptRequest};
use clap::{Args, Subcommand};

/// Development store: key pair and signed test receipts.
#[derive(Debug, Args)]
pub(crate) struct StoreArgs {
    #[command(subcommand)]
    command: StoreCommand,
}

#[derive(Debug, Subcommand)]
enum StoreCommand {
    /// Make an RSA-2048 store key: the private key as PKCS#8 PEM (mode 0600) and the public key as
    /// base64 X.509 SubjectPublicKeyInfo (what the Play console shows; the wallet server's
    /// `store.public_key`).
    Keygen {
        /// Private key file to create.
        #[arg(long, value_name = "FILE", default_value = "store-private.pem")]
        private_key: PathBuf,
        /// Public key file to create.
        #[arg(long, value_name = "FILE", default_value = "store-public.b64")]
        public_key: PathBuf,
    },
    /// Print (or, with `--out`, write with mode 0600) a signed receipt as JSON:
    /// `{"original_json": ..., "signature": ...}`.
    IssueReceipt {
        /// The store's private key (PKCS#8 PEM from `store keygen`).
        #[arg(long, value_name = "FILE")]
        store_key: PathBuf,
        /// The app's package name.
        #[arg(long, value_name = "NAME")]
        package: String,
        /// The product id.
        #[arg(long, value_name = "ID")]
        product: String,
        /// A file holding the purchase token (first line; mode 0600). Secret: the SIP password
        /// derives from it, so it is never taken on the command line. Default: a random token.
        #[arg(long, value_name = "FILE")]
        token_file: Option<PathBuf>,
        /// Write the receipt to FILE (created with mode 0600; an existing file is not
        /// overwritten) instead of standard output. `phone onboard` refuses a receipt that group
        /// or others can read.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// The order id (default: a random `GPA.` id).
        #[arg(long, value_name = "ID")]
        order_id: Option<String>,
        /// Purchase state: 0 purchased, 1 cancelled, 2 pending.
        #[arg(long, default_value_t = 0)]
        state: i64,
    },
}

/// Runs `chaincall store …`.
pub(crate) fn run(args: StoreArgs) -> Result<()> {
    match args.command {
        StoreCommand::Keygen {
            private_key,
            public_key,
        } => {
            dev_store::keygen(&private_key, &public_key)?;
            println!("{}", public_key.display());
        }
        StoreCommand::IssueReceipt {
            store_key,
            package,
            product,
            token_file,
            out,
            order_id,
            state,
        } => {
            let request = ReceiptRequest {
                package,
                product,
                order_id,
                state,
            };
            let receipt = dev_store::issue_receipt(&store_key, token_file.as_deref(), request)?;
            let json = zeroize::Zeroizing::new(serde_json::to_string(&receipt)?);
            match out {
                Some(path) => {
                    chaincall_wallet::server::write_secret(&path, &json)
                        .with_context(|| format!("cannot write {}", path.display()))?;
                    println!("{}", path.display());
                }
                None => println!("{}", json.as_str()),
            }
        }
    }
    Ok(())
}
