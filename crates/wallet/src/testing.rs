//! Helpers for tests and demos that run a real wallet server — in process
//! (`crates/wallet/tests`) or as the `chaincall wallet serve` process (`crates/cli/tests`):
//! the configuration files, purchases of the test product, and on-chain counts of what the server
//! did. The server itself never calls them.
//!
//! The counts read the chain, not the server's database: a test that asserts "one funding, one
//! approval" with them checks what a user would see on a block explorer.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use alloy::consensus::Transaction as _;
use alloy::eips::BlockNumberOrTag;
use alloy::primitives::Address;
use alloy::providers::Provider;
use chaincall_chain::{ChainError, ClientId, KeystoreChain, RpcChain, dev_signer};

use crate::receipt::{Purchase, Receipt, StoreKey, StoreKeyError, random_order_id};

/// The package name test receipts are issued for.
pub const TEST_PACKAGE: &str = "org.chaincall.phone";

/// The product test receipts are issued for.
pub const TEST_PRODUCT: &str = "onboarding";

/// The identity domain the test server publishes its key under.
pub const TEST_IDENTITY_DOMAIN: &str = "wallet.example.org";

/// The SIP domain (and digest realm) test servers provision.
pub const TEST_SIP_DOMAIN: &str = "sip.example.org";

/// The `[numbers]` section [`write_test_config`] writes unless `extra` brings its own:
/// operator-assigned numbers from `+15550000000` to `+15559999999`, which holds every number
/// the tests and the demo ask for.
pub const TEST_NUMBERS: &str = "[numbers]\nverifier = \"assigned\"\nranges = [{ first = \"+15550000000\", last = \"+15559999999\" }]\n";

/// Which chain a test configuration names.
#[derive(Debug, Clone, Copy)]
pub enum TestChain<'a> {
    /// The in-process embedded chain (the server deploys its own keystore).
    Embedded,
    /// A JSON-RPC node with a deployed keystore.
    Rpc {
        /// Node URL.
        url: &'a str,
        /// Keystore contract.
        contract: Address,
    },
}

/// What [`write_test_config`] writes.
#[derive(Debug, Clone, Copy)]
pub struct TestConfig<'a> {
    /// Listening address (`127.0.0.1:0` for in-process servers that bind their own listener).
    pub listen: SocketAddr,
    /// The chain.
    pub chain: TestChain<'a>,
    /// The store whose public key the server trusts.
    pub store: &'a StoreKey,
    /// The admin bearer token (written to `admin.token`); admin endpoints are off without one.
    pub admin_token: Option<&'a str>,
    /// TOML appended verbatim (extra sections such as `[limits]` or `[fees]`; a `[numbers]`
    /// section here replaces [`TEST_NUMBERS`]).
    pub extra: &'a str,
}

/// Failure to write a test configuration.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TestConfigError {
    /// A file could not be written.
    #[error("writing the test configuration")]
    Io(#[from] std::io::Error),
    /// The store's public key could not be encoded.
    #[error(transparent)]
    Store(#[from] StoreKeyError),
}

/// Writes `wallet.toml` and the files it names (server wallet key = dev account 0, the keystore
/// owner; store public key; admin token) into `dir`, with SQLite state and SIP databases in `dir`
/// and a 100 ms worker interval. Returns the path of `wallet.toml`.
pub fn write_test_config(dir: &Path, config: &TestConfig<'_>) -> Result<PathBuf, TestConfigError> {
    // Secret files are created 0600: the server refuses key files others can read.
    crate::server::write_secret(
        &dir.join("server-wallet.key"),
        &hex::encode(dev_signer(0).to_bytes()),
    )?;
    std::fs::write(
        dir.join("store-public.b64"),
        config.store.public_key_base64()?,
    )?;
    let admin = match config.admin_token {
        Some(token) => {
            crate::server::write_secret(&dir.join("admin.token"), token)?;
            "[admin]\ntoken_file = \"admin.token\"\n"
        }
        None => "",
    };
    let chain = match config.chain {
        TestChain::Embedded => "backend = \"embedded\"\n".to_owned(),
        TestChain::Rpc { url, contract } => {
            format!("backend = \"rpc\"\nrpc_url = \"{url}\"\ncontract = \"{contract}\"\n")
        }
    };
    let text = format!(
        r#"listen = "{listen}"
worker_interval_ms = 100
[chain]
{chain}wallet_key_file = "server-wallet.key"
[identity]
domain = "{TEST_IDENTITY_DOMAIN}"
key_file = "wallet-identity.key"
[store]
package_name = "{TEST_PACKAGE}"
product_id = "{TEST_PRODUCT}"
public_key_file = "store-public.b64"
[database]
url = "sqlite://wallet.db?mode=rwc"
[sip]
database_url = "sqlite://sip.db?mode=rwc"
domain = "{TEST_SIP_DOMAIN}"
{admin}{numbers}{extra}
"#,
        listen = config.listen,
        numbers = if config.extra.contains("[numbers]") {
            ""
        } else {
            TEST_NUMBERS
        },
        extra = config.extra,
    );
    let path = dir.join("wallet.toml");
    std::fs::write(&path, text)?;
    Ok(path)
}

/// Deploys the keystore contract as its operator, anvil's dev account 0 (the account
/// [`write_test_config`]'s server wallet is funded from); returns the contract's address.
pub async fn deploy_test_keystore<C: KeystoreChain>(chain: &C) -> Result<Address, ChainError> {
    chain
        .deploy(&dev_signer(0))
        .await?
        .contract_address
        .ok_or_else(|| ChainError::BadResponse {
            reason: "the deployment receipt names no contract address".into(),
        })
}

/// A completed purchase of [`TEST_PRODUCT`] in [`TEST_PACKAGE`] with the given order id and
/// purchase token (the token is the receipt's secret: the SIP password derives from it).
pub fn test_purchase(order_id: impl Into<String>, purchase_token: impl Into<String>) -> Purchase {
    Purchase {
        order_id: order_id.into(),
        package_name: TEST_PACKAGE.into(),
        product_id: TEST_PRODUCT.into(),
        purchase_time: 1_700_000_000_000,
        purchase_state: 0,
        purchase_token: chaincall_identity::Secret::new(purchase_token.into()),
        quantity: 1,
        acknowledged: false,
    }
}

/// A receipt for a fresh [`test_purchase`] (random order id, random 24-byte token from the OS
/// CSPRNG) signed by a development store key: what the demo and tests onboard phones with.
pub fn dev_receipt(store: &StoreKey) -> Receipt {
    use rand_core::RngCore;
    let mut token = [0u8; 24];
    rand_core::OsRng.fill_bytes(&mut token);
    store.issue(&test_purchase(random_order_id(), hex::encode(token)))
}

/// Transactions from `from` to `to` mined in blocks `first_block..=latest`, read block by block
/// from the node: how many times the server funded a wallet.
pub async fn count_transfers(
    chain: &RpcChain,
    first_block: u64,
    from: Address,
    to: Address,
) -> Result<usize, ChainError> {
    let latest = chain.block_number().await?;
    let mut n = 0;
    for number in first_block..=latest {
        let block = chain
            .provider()
            .get_block_by_number(BlockNumberOrTag::Number(number))
            .full()
            .await
            .map_err(|e| ChainError::BadResponse {
                reason: e.to_string(),
            })?
            .ok_or_else(|| ChainError::BadResponse {
                reason: format!("block {number} missing"),
            })?;
        for tx in block.transactions.txns() {
            if tx.inner.signer() == from && tx.to() == Some(to) {
                n += 1;
            }
        }
    }
    Ok(n)
}

/// `approved` events of `id` in the keystore's audit log: how many times it was approved.
pub async fn count_approvals<C: KeystoreChain>(
    chain: &C,
    contract: Address,
    id: ClientId,
) -> Result<usize, ChainError> {
    Ok(chain
        .history(contract, id)
        .await?
        .iter()
        .filter(|e| e.change.name() == "approved")
        .count())
}
