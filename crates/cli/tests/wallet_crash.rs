//! The wallet server as a real process (`chaincall wallet serve`) on anvil, SIGKILLed at each step
//! of an onboarding (the test hook `CHAINCALL_WALLET_TEST_PAUSE_AT` stops it there), restarted on
//! the same database: every onboarding completes with exactly one funding transaction and one
//! approval, counted on chain. The same for each step of a device recovery.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use chaincall_chain::{
    AnvilProcess, ClientId, KeystoreChain, PrivateKeySigner, RpcChain, RpcConfig, dev_signer,
};
use chaincall_identity::{IdentityKey, IdentityName, KeyStatus, PhoneNumber};
use chaincall_wallet::client::{ClientError, recover_phone};
use chaincall_wallet::receipt::StoreKey;
use chaincall_wallet::service::{PAUSE_ENV, PAUSE_STEPS, RECOVERY_PAUSE_STEPS};
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
    fn spawn(config: &Path, pause_at: Option<&str>) -> Self {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_chaincall"));
        cmd.args(["wallet", "serve", "--config"])
            .arg(config)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        match pause_at {
            Some(step) => cmd.env(PAUSE_ENV, step),
            None => cmd.env_remove(PAUSE_ENV),
        };
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

    /// Starts the server paused at `step`, waits for the pause, SIGKILLs it and starts it again
    /// on the same database; returns the restarted server once `phone` finished.
    fn kill_at(
        &self,
        step: &str,
        phone: tokio::task::JoinHandle<OnboardingStatus>,
    ) -> (ServerProcess, OnboardingStatus) {
        let mut server = ServerProcess::spawn(&self.config, Some(step));
        server.wait_for_line(&format!("paused at {step}"), Duration::from_secs(60));
        server.sigkill();
        let restarted = ServerProcess::spawn(&self.config, None);
        let done = self.runtime.block_on(phone).unwrap();
        assert_eq!(done.state, "provisioned", "step {step}");
        (restarted, done)
    }
}

/// One try of the phone's flow.
type Attempt = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<OnboardingStatus, ClientError>> + Send>,
>;

/// The phone's onboarding, as a flow [`Setup::keep_trying`] repeats.
fn onboarding(
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
            onboard_phone(
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
        })
    }
}

#[test]
fn sigkill_between_every_pair_of_steps_never_funds_or_approves_twice() {
    let Some(t) = setup() else {
        return;
    };
    let contract = t.contract;

    for (i, step) in PAUSE_STEPS.iter().enumerate() {
        // A fresh phone and a fresh purchase per step.
        let wallet = PrivateKeySigner::random();
        let identity = IdentityKey::generate();
        let number = format!("+1555700{i:04}");
        let receipt = t.store.issue(&test_purchase(
            format!("GPA.0000-0000-0000-{i:05}"),
            format!("token-{step}-{}", hex::encode(wallet.address())),
        ));
        let phone = t.keep_trying(onboarding(
            wallet.clone(),
            identity.clone(),
            NumberRequest::named(&number),
            receipt,
            contract,
        ));
        let _restarted = t.kill_at(step, phone);

        t.assert_bound(&number, &wallet, &identity, 1, step);
        eprintln!("killed at {step}: completed with one funding and one approval");
    }
}

/// Device recovery, killed at each of its own steps (accepted, old SIP row deleted, old entry
/// revoked, number reserved): the recovery completes, the new wallet is funded once and the number
/// approved once more, for the new key.
#[test]
fn sigkill_at_every_recovery_step_never_funds_twice() {
    let Some(t) = setup() else {
        return;
    };
    let contract = t.contract;
    let http = alloy::transports::http::reqwest::Client::new();
    for (i, step) in RECOVERY_PAUSE_STEPS.iter().enumerate() {
        let number = format!("+1555710{i:04}");
        let receipt = t.store.issue(&test_purchase(
            format!("GPA.0000-0000-0001-{i:05}"),
            format!("token-recovery-{step}"),
        ));
        // Onboarded on the lost device.
        let server = ServerProcess::spawn(&t.config, None);
        let phone = t.keep_trying(onboarding(
            PrivateKeySigner::random(),
            IdentityKey::generate(),
            NumberRequest::named(&number),
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
        server.sigkill();

        let (wallet, identity) = (PrivateKeySigner::random(), IdentityKey::generate());
        let phone = {
            let (wallet, identity, request, receipt) = (
                wallet.clone(),
                identity.clone(),
                NumberRequest::named(&number),
                receipt.clone(),
            );
            t.keep_trying(move |client, chain, key| {
                let (wallet, identity, request, receipt) = (
                    wallet.clone(),
                    identity.clone(),
                    request.clone(),
                    receipt.clone(),
                );
                async move {
                    recover_phone(
                        &client,
                        &*chain,
                        contract,
                        &key,
                        &wallet,
                        &identity,
                        &request,
                        receipt,
                        Duration::from_secs(20),
                    )
                    .await
                }
            })
        };
        let _restarted = t.kill_at(step, phone);

        // Approved twice: at onboarding and at the recovery.
        t.assert_bound(&number, &wallet, &identity, 2, step);
        eprintln!("killed at {step}: recovered with one funding");
    }
}
