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

/// A random purchase token (32 bytes from the OS CSPRNG, hex), as a store would make one.
fn random_token() -> String {
    let mut bytes = zeroize::Zeroizing::new([0u8; 32]);
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut bytes[..]);
    hex::encode(&bytes[..])
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
            token_file,
            out,
            order_id,
            state,
        } => {
            // Refused when group or world readable.
            let pem = chaincall_identity::read_secret_file(&store_key)
                .with_context(|| format!("cannot read {}", store_key.display()))?;
            let token = match &token_file {
                Some(f) => {
                    let text = chaincall_identity::read_secret_file(f)
                        .with_context(|| format!("cannot read the token file {}", f.display()))?;
                    let token = text.lines().next().unwrap_or("").trim().to_owned();
                    if token.is_empty() {
                        bail!("the token file {} is empty", f.display());
                    }
                    token
                }
                None => random_token(),
            };
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
            let json = zeroize::Zeroizing::new(serde_json::to_string(&receipt)?);
            match out {
                Some(path) => {
                    chaincall_wallet::server::write_secret(&path, &json)
                        .with_context(|| format!("cannot write {}", path.display()))?;
                    println!("{}", path.display());
                }
                None => println!("{}", json.as_str()),
            }
            Ok(())
        }
    }
}
