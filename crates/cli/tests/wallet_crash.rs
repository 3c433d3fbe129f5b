//! The end-to-end witness of the wallet's crash safety (the property test in
//! `crates/wallet/tests/machine.rs` covers every cut point of the machine): the wallet server as a
//! real process (`chaincall wallet serve`) on anvil with automine off, SIGKILLed whenever one of
//! its transactions sits unmined in anvil's mempool — an observable point, no hook in the server —
//! then the block mined and the server restarted on the same database: every onboarding completes
//! with exactly one funding transaction and one approval, counted on chain. The same for a device
//! recovery, killed at its revoke, reserve, funding and approval transactions.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use alloy::primitives::{Address, B256};
use alloy::providers::Provider;
use chaincall_chain::{
    AnvilProcess, ClientId, KeystoreChain, PrivateKeySigner, RpcChain, RpcConfig, dev_signer,
};
use chaincall_identity::{IdentityKey, IdentityName, KeyStatus, PhoneNumber};
use chaincall_wallet::client::{ClientError, recover_phone};
use chaincall_wallet::db::{Db, Onboarding, State, connect};
use chaincall_wallet::receipt::StoreKey;
use chaincall_wallet::testing::{
    TEST_IDENTITY_DOMAIN, TestChain, TestConfig, count_approvals, count_transfers,
    deploy_test_keystore, test_purchase, write_test_config,
};
use chaincall_wallet::{
    NumberRequest, OnboardingStatus, WalletClient, onboard_phone, server_identity_key,
};

struct ServerProcess {
    child: Child,
    stderr_lines: mpsc::Receiver<String>,
}

impl ServerProcess {
    fn spawn(config: &Path) -> Self {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_chaincall"));
        cmd.args(["wallet", "serve", "--config"])
            .arg(config)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("chaincall starts");
        let (tx, rx) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take().unwrap();
        let tx2 = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx2.send(line);
            }
        });
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let mut server = Self {
            child,
            stderr_lines: rx,
        };
        server.wait_for_line("listening http://", Duration::from_secs(60));
        server
    }

    fn wait_for_line(&mut self, needle: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stderr_lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return,
                Ok(_) => {}
                Err(_) => {
                    let status = self.child.try_wait().ok().flatten();
                    panic!("no line containing {needle:?} within {timeout:?} (exit: {status:?})");
                }
            }
        }
    }

    /// SIGKILL (std's `Child::kill` sends SIGKILL on Unix) and reap.
    fn sigkill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An anvil node with a keystore, a store key, and a wallet server configuration on a free port.
struct Setup {
    _node: AnvilProcess,
    runtime: tokio::runtime::Runtime,
    chain: Arc<RpcChain>,
    contract: alloy::primitives::Address,
    store: StoreKey,
    _dir: tempfile::TempDir,
    config: std::path::PathBuf,
    base: String,
}

const ADMIN_TOKEN: &str = "crash-test-admin-token-0123456789";

fn setup() -> Option<Setup> {
    let anvil = chaincall_testkit::peer("anvil")?;
    let node = AnvilProcess::spawn(&anvil, chaincall_testkit::free_tcp_port(), &[]).unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let chain = Arc::new(
        runtime
            .block_on(RpcChain::connect(&node.url(), RpcConfig::default()))
            .unwrap(),
    );
    let contract = runtime.block_on(deploy_test_keystore(&*chain)).unwrap();
    let store = StoreKey::generate().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let port = chaincall_testkit::free_tcp_port();
    let node_url = node.url();
    let config = write_test_config(
        dir.path(),
        &TestConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], port)),
            chain: TestChain::Rpc {
                url: &node_url,
                contract,
            },
            store: &store,
            admin_token: Some(ADMIN_TOKEN),
            extra: "[limits]\nrequests_per_second = 1000.0\nburst = 1000.0\nrequest_wait_secs = 5\n",
        },
    )
    .unwrap();
    Some(Setup {
        _node: node,
        runtime,
        chain,
        contract,
        store,
        _dir: dir,
        config,
        base: format!("http://127.0.0.1:{port}"),
    })
}

impl Setup {
    /// Runs `flow` in the background, again after every failure (a fresh sealed payload each
    /// time), until it finishes: the phone keeps trying across the kill and the restart.
    fn keep_trying<F, Fut>(&self, flow: F) -> tokio::task::JoinHandle<OnboardingStatus>
    where
        F: Fn(WalletClient, Arc<RpcChain>, chaincall_identity::PublicIdentityKey) -> Fut
            + Send
            + Sync
            + 'static,
        Fut: std::future::Future<Output = Result<OnboardingStatus, ClientError>> + Send,
    {
        let (chain, base, contract) = (self.chain.clone(), self.base.clone(), self.contract);
        self.runtime.spawn(async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
            loop {
                let attempt = async {
                    let key = server_identity_key(&*chain, contract, TEST_IDENTITY_DOMAIN).await?;
                    flow(WalletClient::new(base.clone()), chain.clone(), key).await
                };
                match attempt.await {
                    Ok(done) => return done,
                    Err(e) => {
                        assert!(
                            tokio::time::Instant::now() < deadline,
                            "phone never finished: {e}"
                        );
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
            }
        })
    }

    /// `number` is approved on chain for `wallet` and `identity`, after `approvals` approvals in
    /// all, and the server funded `wallet` exactly once.
    fn assert_bound(
        &self,
        number: &str,
        wallet: &PrivateKeySigner,
        identity: &IdentityKey,
        approvals: usize,
        step: &str,
    ) {
        let (chain, contract) = (&self.chain, self.contract);
        let id = ClientId::of(&IdentityName::Phone(PhoneNumber::parse(number).unwrap()));
        self.runtime.block_on(async {
            let entry = chain.get_client(contract, id).await.unwrap();
            assert_eq!(entry.status, KeyStatus::Approved, "step {step}");
            assert_eq!(entry.wallet, Some(wallet.address()));
            assert_eq!(entry.approved_key(), Some(identity.public()));
            let seen = count_approvals(&**chain, contract, id).await.unwrap();
            assert_eq!(seen, approvals, "approvals after a kill at {step}");
            let fundings = count_transfers(chain, 0, dev_signer(0).address(), wallet.address())
                .await
                .unwrap();
            assert_eq!(fundings, 1, "funding transactions after a kill at {step}");
        });
    }

    /// The server wallet's transactions waiting in anvil's mempool (automine is off).
    fn server_pending(&self) -> (Vec<B256>, bool) {
        let server = dev_signer(0).address();
        self.runtime.block_on(async {
            let pool: serde_json::Value = self
                .chain
                .provider()
                .raw_request("txpool_content".into(), ())
                .await
                .unwrap();
            let mut mine = Vec::new();
            let mut any = false;
            for section in ["pending", "queued"] {
                let Some(senders) = pool[section].as_object() else {
                    continue;
                };
                for (from, txs) in senders {
                    let from: Address = from.parse().unwrap();
                    for tx in txs.as_object().into_iter().flat_map(|t| t.values()) {
                        any = true;
                        if from == server {
                            mine.push(tx["hash"].as_str().unwrap().parse().unwrap());
                        }
                    }
                }
            }
            (mine, any)
        })
    }

    fn rpc(&self, method: &'static str, params: serde_json::Value) {
        self.runtime.block_on(async {
            let _: serde_json::Value = self
                .chain
                .provider()
                .raw_request(method.into(), params)
                .await
                .unwrap();
        });
    }

    /// With automine off, mines whatever the phone sends; whenever a transaction of the server
    /// wallet waits in the mempool (signed, recorded, broadcast, not mined), SIGKILLs the server
    /// (`before_kill` sees the transaction's hash), mines the block and restarts the server on the
    /// same database — `kills` times. Returns the restarted server once `phone` finished.
    fn kill_at_server_txs(
        &self,
        mut server: ServerProcess,
        kills: usize,
        phone: tokio::task::JoinHandle<OnboardingStatus>,
        mut after_kill: impl FnMut(usize, B256),
    ) -> (ServerProcess, OnboardingStatus) {
        self.rpc("evm_setAutomine", serde_json::json!([false]));
        let mut done = 0;
        let deadline = Instant::now() + Duration::from_secs(180);
        while !phone.is_finished() {
            assert!(Instant::now() < deadline, "onboarding never finished");
            let (server_txs, any) = self.server_pending();
            if let Some(&hash) = server_txs.first().filter(|_| done < kills) {
                server.sigkill();
                after_kill(done, hash);
                done += 1;
                self.rpc("evm_mine", serde_json::json!([]));
                server = ServerProcess::spawn(&self.config);
            } else if any {
                self.rpc("evm_mine", serde_json::json!([]));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.rpc("evm_setAutomine", serde_json::json!([true]));
        assert_eq!(
            done, kills,
            "the server sent fewer transactions than expected"
        );
        let status = self.runtime.block_on(phone).unwrap();
        assert_eq!(status.state, "provisioned");
        (server, status)
    }

    /// The wallet server's database (the server must be stopped).
    fn row(&self, receipt_id: &str) -> Onboarding {
        let url = format!(
            "sqlite://{}?mode=rw",
            self._dir.path().join("wallet.db").display()
        );
        self.runtime.block_on(async {
            let db = Db::open(connect(&url).await.unwrap()).await.unwrap();
            db.get(receipt_id).await.unwrap().expect("row recorded")
        })
    }
}

/// One try of the phone's flow.
type Attempt = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<OnboardingStatus, ClientError>> + Send>,
>;

/// The phone's onboarding (or, with `recover`, its device recovery), as a flow
/// [`Setup::keep_trying`] repeats.
fn onboarding(
    recover: bool,
    wallet: PrivateKeySigner,
    identity: IdentityKey,
    number: NumberRequest,
    receipt: chaincall_wallet::receipt::Receipt,
    contract: alloy::primitives::Address,
) -> impl Fn(WalletClient, Arc<RpcChain>, chaincall_identity::PublicIdentityKey) -> Attempt
+ Send
+ Sync
+ 'static {
    move |client, chain, key| {
        let (wallet, identity, number, receipt) = (
            wallet.clone(),
            identity.clone(),
            number.clone(),
            receipt.clone(),
        );
        Box::pin(async move {
            // The two flows take the same arguments; their futures differ in type.
            macro_rules! run {
                ($flow:ident) => {
                    $flow(
                        &client,
                        &*chain,
                        contract,
                        &key,
                        &wallet,
                        &identity,
                        &number,
                        receipt,
                        Duration::from_secs(20),
                    )
                    .await
                };
            }
            if recover {
                run!(recover_phone)
            } else {
                run!(onboard_phone)
            }
        })
    }
}

/// Killed with the funding transfer in the mempool, then with `approveClient` in the mempool:
/// each time the database already holds the transaction (recorded before broadcast), and the
/// restarted server follows it instead of signing another.
#[test]
fn sigkill_with_funding_then_approval_in_the_mempool_never_funds_or_approves_twice() {
    let Some(t) = setup() else {
        return;
    };
    let wallet = PrivateKeySigner::random();
    let identity = IdentityKey::generate();
    let number = "+15557000001";
    let receipt_id = "GPA.0000-0000-0000-00001";
    let receipt = t.store.issue(&test_purchase(
        receipt_id.to_owned(),
        format!("token-{}", hex::encode(wallet.address())),
    ));
    let server = ServerProcess::spawn(&t.config);
    let phone = t.keep_trying(onboarding(
        false,
        wallet.clone(),
        identity.clone(),
        NumberRequest::named(number),
        receipt,
        t.contract,
    ));
    let mut seen = Vec::new();
    let _restarted = t.kill_at_server_txs(server, 2, phone, |kill, hash| {
        let row = t.row(receipt_id);
        let (state, recorded) = match kill {
            0 => (State::Funding, row.fund_tx_hash),
            _ => (State::PendingSeen, row.approve_tx_hash),
        };
        assert_eq!(row.state, state, "kill {kill}");
        assert_eq!(
            recorded,
            Some(hash),
            "kill {kill}: recorded before broadcast"
        );
        seen.push(hash);
    });
    assert_eq!(seen.len(), 2);
    t.assert_bound(number, &wallet, &identity, 1, "mempool");
}

/// Device recovery, killed with each of its transactions in the mempool (the old entry's revoke,
/// the number's reservation for the new wallet, the new wallet's funding and the approval): the
/// recovery completes, the new wallet is funded once and the number approved once more, for the
/// new key.
#[test]
fn sigkill_at_every_recovery_transaction_never_funds_twice() {
    let Some(t) = setup() else {
        return;
    };
    let contract = t.contract;
    let http = alloy::transports::http::reqwest::Client::new();
    let number = "+15557100001";
    let receipt = t.store.issue(&test_purchase(
        "GPA.0000-0000-0001-00001".to_owned(),
        "token-recovery".to_owned(),
    ));
    // Onboarded on the lost device.
    let server = ServerProcess::spawn(&t.config);
    let phone = t.keep_trying(onboarding(
        false,
        PrivateKeySigner::random(),
        IdentityKey::generate(),
        NumberRequest::named(number),
        receipt.clone(),
        contract,
    ));
    t.runtime.block_on(phone).unwrap();
    // The operator authorises the recovery (assigned numbers).
    let url = format!("{}/v1/admin/subscribers/{number}/recovery", t.base);
    let status = t.runtime.block_on(async {
        http.post(url)
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap()
            .status()
    });
    assert!(status.is_success(), "{status}");

    let (wallet, identity) = (PrivateKeySigner::random(), IdentityKey::generate());
    let phone = t.keep_trying(onboarding(
        true,
        wallet.clone(),
        identity.clone(),
        NumberRequest::named(number),
        receipt,
        contract,
    ));
    let _restarted = t.kill_at_server_txs(server, 4, phone, |_, _| {});

    // Approved twice: at onboarding and at the recovery.
    t.assert_bound(number, &wallet, &identity, 2, "recovery");
}
