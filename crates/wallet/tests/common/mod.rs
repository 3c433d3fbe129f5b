//! Shared harness: a wallet server on 127.0.0.1 over a given chain, a store key, phones.
#![allow(dead_code, unreachable_pub)]

use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use alloy::primitives::Address;
use chaincall_chain::{ClientId, KeystoreChain, PrivateKeySigner};
use chaincall_identity::{IdentityKey, IdentityName, PhoneNumber, PublicIdentityKey, Randomness};
use chaincall_wallet::chain::ServerChain;
use chaincall_wallet::config::WalletConfig;
use chaincall_wallet::payload::OnboardPayload;
use chaincall_wallet::receipt::{Purchase, Receipt, StoreKey, random_order_id};
use chaincall_wallet::subscriber::SubscriberTable;
use chaincall_wallet::testing::{
    TEST_PACKAGE, TEST_PRODUCT, TestChain, TestConfig, count_approvals, write_test_config,
};
use chaincall_wallet::{Service, WalletClient};

pub const PACKAGE: &str = TEST_PACKAGE;
pub const PRODUCT: &str = TEST_PRODUCT;
pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";

/// One store key per test binary (RSA key generation is slow in debug builds).
pub fn store() -> &'static StoreKey {
    static KEY: OnceLock<StoreKey> = OnceLock::new();
    KEY.get_or_init(|| StoreKey::generate().unwrap())
}

pub fn purchase(product: &str) -> Purchase {
    use rand_core::RngCore;
    let mut token = [0u8; 24];
    rand_core::OsRng.fill_bytes(&mut token);
    Purchase {
        product_id: product.into(),
        ..chaincall_wallet::testing::test_purchase(random_order_id(), hex::encode(token))
    }
}

pub fn receipt() -> (Purchase, Receipt) {
    let p = purchase(PRODUCT);
    let r = store().issue(&p);
    (p, r)
}

/// A unique E.164 number per call.
pub fn phone_number() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    format!("+1555{:03}{:04}", std::process::id() % 1000, n)
}

pub struct Phone {
    pub wallet: PrivateKeySigner,
    pub identity: IdentityKey,
    pub number: String,
}

impl Phone {
    pub fn new() -> Self {
        Self {
            wallet: PrivateKeySigner::random(),
            identity: IdentityKey::generate(),
            number: phone_number(),
        }
    }
    pub fn id(&self) -> ClientId {
        ClientId::of(&IdentityName::Phone(
            PhoneNumber::parse(&self.number).unwrap(),
        ))
    }
    /// The phone's payload for its own number, with its proof of possession (which
    /// `/v1/approve` requires and `/v1/onboard` ignores).
    pub fn payload(&self, receipt: &Receipt) -> OnboardPayload {
        let purchase: Purchase = serde_json::from_str(&receipt.original_json).unwrap();
        OnboardPayload::new(
            self.wallet.address(),
            receipt.clone(),
            &self.number,
            &self.identity.public(),
            &Randomness::os(),
        )
        .with_proof(&self.identity, &self.id(), &purchase.chain_receipt_hash())
    }
}

pub fn write_config(
    dir: &Path,
    extra: &str,
    backend: &str,
    rpc: Option<(&str, Address)>,
) -> WalletConfig {
    let chain = match rpc {
        Some((url, contract)) => TestChain::Rpc { url, contract },
        None => {
            assert_eq!(backend, "embedded");
            TestChain::Embedded
        }
    };
    let path = write_test_config(
        dir,
        &TestConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            chain,
            store: store(),
            admin_token: Some(ADMIN_TOKEN),
            extra,
        },
    )
    .unwrap();
    WalletConfig::load(&path).unwrap()
}

pub struct Server<C: ServerChain> {
    pub chain: Arc<C>,
    pub contract: Address,
    pub service: Arc<Service<C>>,
    pub client: WalletClient,
    pub base: String,
    pub server_key: PublicIdentityKey,
    pub sip: SubscriberTable,
    pub config: WalletConfig,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl<C: ServerChain> Server<C> {
    pub async fn start(chain: Arc<C>, contract: Address, config: WalletConfig) -> Self {
        let service = chaincall_wallet::server::build_service(&config, chain.clone(), contract)
            .await
            .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let svc = service.clone();
        let cfg = config.clone();
        let task = tokio::spawn(async move {
            chaincall_wallet::server::serve(listener, svc, &cfg, async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
        });
        let server_key =
            chaincall_wallet::server_identity_key(&*chain, contract, "wallet.example.org")
                .await
                .unwrap();
        assert_eq!(server_key, service.identity_public());
        let sip = SubscriberTable::new(
            chaincall_wallet::db::connect(&config.sip.database_url)
                .await
                .unwrap(),
        );
        Self {
            chain,
            contract,
            service,
            client: WalletClient::new(base.clone()),
            base,
            server_key,
            sip,
            config,
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(15), t).await;
        }
    }

    /// Polls `/v1/status` until `receipt_id` is funded (at most `timeout`).
    pub async fn wait_funded(
        &self,
        receipt_id: &str,
        timeout: Duration,
    ) -> chaincall_wallet::OnboardingStatus {
        let funded = |st: &chaincall_wallet::OnboardingStatus| st.is_funded();
        self.client
            .wait_for(receipt_id, "funded", funded, timeout)
            .await
            .unwrap()
    }

    /// Polls `/v1/status` until `receipt_id` is provisioned (at most `timeout`).
    pub async fn wait_provisioned(
        &self,
        receipt_id: &str,
        timeout: Duration,
    ) -> chaincall_wallet::OnboardingStatus {
        let done = |st: &chaincall_wallet::OnboardingStatus| st.state == "provisioned";
        self.client
            .wait_for(receipt_id, "provisioned", done, timeout)
            .await
            .unwrap()
    }

    /// `POST /v1/onboard` with `phone`'s payload for `receipt` (one request, no retries).
    pub async fn post_onboard(
        &self,
        phone: &Phone,
        receipt: &Receipt,
    ) -> Result<chaincall_wallet::OnboardingStatus, chaincall_wallet::client::ClientError> {
        self.client
            .onboard(&self.server_key, &phone.payload(receipt))
            .await
    }

    /// `POST /v1/approve` with `phone`'s payload (and proof) for `receipt`.
    pub async fn post_approve(
        &self,
        phone: &Phone,
        receipt: &Receipt,
    ) -> Result<chaincall_wallet::OnboardingStatus, chaincall_wallet::client::ClientError> {
        self.client
            .approve(&self.server_key, &phone.payload(receipt))
            .await
    }

    /// The full phone flow through the public client function.
    pub async fn onboard(
        &self,
        phone: &Phone,
        receipt: Receipt,
    ) -> chaincall_wallet::OnboardingStatus {
        self.onboard_via(&*self.chain, phone, receipt).await
    }

    /// [`Server::onboard`] with the phone's chain calls sent to `chain` (e.g. around a proxy the
    /// server's own chain goes through).
    pub async fn onboard_via(
        &self,
        chain: &impl KeystoreChain,
        phone: &Phone,
        receipt: Receipt,
    ) -> chaincall_wallet::OnboardingStatus {
        chaincall_wallet::onboard_phone(
            &self.client,
            chain,
            self.contract,
            &self.server_key,
            &phone.wallet,
            &phone.identity,
            &chaincall_wallet::NumberRequest::named(&phone.number),
            receipt,
            Duration::from_secs(60),
        )
        .await
        .unwrap()
    }

    /// The phone's `addClient` for its number from its wallet, with `key` (its own, or not).
    pub async fn add_pending(&self, phone: &Phone, purchase: &Purchase, key: &PublicIdentityKey) {
        add_client(
            &*self.chain,
            self.contract,
            &phone.wallet,
            phone,
            key,
            purchase,
        )
        .await
        .unwrap();
    }

    /// Raw POST, returning status and JSON.
    pub async fn post_raw(&self, path: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
        let http = alloy::transports::http::reqwest::Client::new();
        let r = http
            .post(format!("{}{path}", self.base))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(serde_json::Value::Null))
    }

    pub async fn admin(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
    ) -> (u16, serde_json::Value) {
        let http = alloy::transports::http::reqwest::Client::new();
        let url = format!("{}{path}", self.base);
        let mut req = if method == "GET" {
            http.get(url)
        } else {
            http.post(url)
        };
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(serde_json::Value::Null))
    }
}

pub fn code(err: &chaincall_wallet::client::ClientError) -> String {
    err.code().unwrap_or("<no code>").to_owned()
}

/// `approved` events of `id` on chain.
pub async fn approvals<C: KeystoreChain>(chain: &C, contract: Address, id: ClientId) -> usize {
    count_approvals(chain, contract, id).await.unwrap()
}

/// `addClient` of `phone`'s number on `chain`, sent from `from` with `key`: the phone's own wallet
/// and key, or a squatter's.
pub async fn add_client(
    chain: &impl KeystoreChain,
    contract: Address,
    from: &PrivateKeySigner,
    phone: &Phone,
    key: &PublicIdentityKey,
    purchase: &Purchase,
) -> Result<(), chaincall_wallet::client::ClientError> {
    let number = PhoneNumber::parse(&phone.number).unwrap();
    chaincall_wallet::client::add_client_once(chain, contract, from, key, &number, purchase).await
}
