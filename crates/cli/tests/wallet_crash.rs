//! The wallet server as a real process (`chaincall wallet serve`) on anvil, SIGKILLed at each step
//! of an onboarding (the test hook `CHAINCALL_WALLET_TEST_PAUSE_AT` stops it there), restarted on
//! the same database: every onboarding completes with exactly one funding transaction and one
//! approval, counted on chain.

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
use chaincall_wallet::receipt::StoreKey;
use chaincall_wallet::service::{PAUSE_ENV, PAUSE_STEPS};
use chaincall_wallet::testing::{
    TEST_IDENTITY_DOMAIN, TestChain, TestConfig, count_approvals, count_transfers,
    deploy_test_keystore, test_purchase, write_test_config,
};
use chaincall_wallet::{NumberRequest, WalletClient, onboard_phone, server_identity_key};

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

#[test]
fn sigkill_between_every_pair_of_steps_never_funds_or_approves_twice() {
    let Some(anvil) = chaincall_testkit::peer("anvil") else {
        return;
    };
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
            admin_token: None,
            extra: "[limits]\nrequests_per_second = 1000.0\nburst = 1000.0\nrequest_wait_secs = 5\n",
        },
    )
    .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let server_wallet = dev_signer(0).address();

    for (i, step) in PAUSE_STEPS.iter().enumerate() {
        // A fresh phone and a fresh purchase per step.
        let wallet = PrivateKeySigner::random();
        let identity = IdentityKey::generate();
        let number = format!("+1555700{i:04}");
        let receipt = store.issue(&test_purchase(
            format!("GPA.0000-0000-0000-{i:05}"),
            format!("token-{step}-{}", hex::encode(wallet.address())),
        ));

        let mut server = ServerProcess::spawn(&config, Some(step));
        // The phone keeps trying (a fresh sealed payload each time) until provisioned, across the
        // kill and the restart.
        let phone = {
            let chain = chain.clone();
            let base = base.clone();
            let (wallet, identity, number, receipt) = (
                wallet.clone(),
                identity.clone(),
                NumberRequest::named(&number),
                receipt.clone(),
            );
            runtime.spawn(async move {
                let client = WalletClient::new(base);
                let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
                loop {
                    let attempt = async {
                        let key =
                            server_identity_key(&*chain, contract, TEST_IDENTITY_DOMAIN).await?;
                        onboard_phone(
                            &client,
                            &*chain,
                            contract,
                            &key,
                            &wallet,
                            &identity,
                            &number,
                            receipt.clone(),
                            Duration::from_secs(20),
                        )
                        .await
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
        };
        server.wait_for_line(&format!("paused at {step}"), Duration::from_secs(60));
        server.sigkill();
        let _restarted = ServerProcess::spawn(&config, None);
        let done = runtime.block_on(phone).unwrap();
        assert_eq!(done.state, "provisioned", "step {step}");

        let id = ClientId::of(&IdentityName::Phone(PhoneNumber::parse(&number).unwrap()));
        runtime.block_on(async {
            let entry = chain.get_client(contract, id).await.unwrap();
            assert_eq!(entry.status, KeyStatus::Approved, "step {step}");
            assert_eq!(entry.wallet, Some(wallet.address()));
            assert_eq!(entry.approved_key(), Some(identity.public()));
            let approvals = count_approvals(&*chain, contract, id).await.unwrap();
            assert_eq!(approvals, 1, "approvals after a kill at {step}");
            let fundings = count_transfers(&chain, 0, server_wallet, wallet.address())
                .await
                .unwrap();
            assert_eq!(fundings, 1, "funding transactions after a kill at {step}");
        });
        eprintln!("killed at {step}: completed with one funding and one approval");
    }
}
