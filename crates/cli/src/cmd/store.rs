//! `chaincall store …`: a development app store that makes a store key pair and issues receipts in
//! Google Play's format (purchase JSON + base64 `SHA1withRSA` signature), so tests and demos go
//! through the wallet server's real verification path.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use chaincall_wallet::receipt::{Purchase, StoreKey, random_order_id};
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
    /// Print a signed receipt as JSON: `{"original_json": ..., "signature": ...}`.
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
        /// The purchase token (secret: the SIP password derives from it).
        #[arg(long, value_name = "TOKEN")]
        token: String,
        /// The order id (default: a random `GPA.` id).
        #[arg(long, value_name = "ID")]
        order_id: Option<String>,
        /// Purchase state: 0 purchased, 1 cancelled, 2 pending.
        #[arg(long, default_value_t = 0)]
        state: i64,
    },
}

pub(crate) fn run(args: StoreArgs) -> Result<()> {
    match args.command {
        StoreCommand::Keygen {
            private_key,
            public_key,
        } => {
            if private_key.exists() {
                bail!(
                    "{} exists; refusing to overwrite a key",
                    private_key.display()
                );
            }
            let key = StoreKey::generate()?;
            let pem = key.dangerous_to_pkcs8_pem()?;
            chaincall_wallet::server::write_secret(&private_key, pem.trim_end())
                .with_context(|| format!("cannot write {}", private_key.display()))?;
            std::fs::write(&public_key, format!("{}\n", key.public_key_base64()?))
                .with_context(|| format!("cannot write {}", public_key.display()))?;
            println!("{}", public_key.display());
            Ok(())
        }
        StoreCommand::IssueReceipt {
            store_key,
            package,
            product,
            token,
            order_id,
            state,
        } => {
            let pem = zeroize::Zeroizing::new(
                std::fs::read_to_string(&store_key)
                    .with_context(|| format!("cannot read {}", store_key.display()))?,
            );
            let key = StoreKey::from_pkcs8_pem(&pem)?;
            let purchase_time = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
                .unwrap_or(0);
            let receipt = key.issue(&Purchase {
                order_id: order_id.unwrap_or_else(random_order_id),
                package_name: package,
                product_id: product,
                purchase_time,
                purchase_state: state,
                purchase_token: token,
                quantity: 1,
                acknowledged: false,
            });
            println!("{}", serde_json::to_string(&receipt)?);
            Ok(())
        }
    }
}
