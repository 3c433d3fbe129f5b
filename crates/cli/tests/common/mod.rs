//! The network `chaincall phone` runs on, every part a real process on anvil (`keystore deploy`,
//! `store keygen`, `keystore publish-server`, `wallet serve`, `sipd serve` with TLS-PSK and digest
//! auth), onboarded phones in it, and long-running `chaincall` processes whose output lines are
//! collected: shared by phone.rs and services.rs; and the network `chaincall init` writes, with
//! its README's commands, shared by init.rs and packaging.rs; block 0's hash, by init.rs and
//! phone_node.rs.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use chaincall_chain::{AnvilProcess, dev_signer};

pub(crate) const SIP_DOMAIN: &str = "sip.chaincall.test";
pub(crate) const WALLET_DOMAIN: &str = "wallet.chaincall.test";
pub(crate) const PACKAGE: &str = "org.chaincall.phone";
pub(crate) const PRODUCT: &str = "onboarding";
pub(crate) const ALICE: &str = "+15550100001";
pub(crate) const BOB: &str = "+15550100002";
pub(crate) const NOBODY: &str = "+15550109999";
pub(crate) const PASSPHRASE: &str = "correct horse battery";

pub(crate) fn chaincall() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_chaincall"));
    cmd.env_remove("CHAINCALL_PASSPHRASE")
        .env_remove("CHAINCALL_RPC")
        .env_remove("CHAINCALL_CONTRACT")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null());
    cmd
}

/// Runs to completion; panics with both streams unless it succeeds.
pub(crate) fn ok(cmd: &mut Command) -> String {
    let what = format!("{cmd:?}");
    String::from_utf8(chaincall_testkit::run_ok(cmd, &what)).expect("UTF-8 output")
}

pub(crate) fn failing(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("chaincall starts");
    assert!(
        !out.status.success(),
        "{cmd:?} should have failed\nstdout: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    out
}

/// A long-running `chaincall` whose output lines are collected; killed on drop.
pub(crate) struct Service {
    pub(crate) child: Child,
    pub(crate) lines: mpsc::Receiver<(bool, String)>,
}

impl Service {
    pub(crate) fn spawn(cmd: &mut Command) -> Self {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("chaincall starts");
        let (tx, rx) = mpsc::channel();
        let out = child.stdout.take().expect("piped stdout");
        let err = child.stderr.take().expect("piped stderr");
        let tx2 = tx.clone();
        // One reader per stream, each tagging its lines (true: stdout), so neither pipe fills.
        let forward = |stream: Box<dyn std::io::Read + Send>, stdout: bool, tx: mpsc::Sender<_>| {
            std::thread::spawn(move || {
                for l in BufReader::new(stream).lines().map_while(Result::ok) {
                    let _ = tx.send((stdout, l));
                }
            })
        };
        forward(Box::new(out), true, tx2);
        forward(Box::new(err), false, tx);
        Self { child, lines: rx }
    }

    /// `chaincall <server> serve --config <server>.toml` in `dir`, logging at info, once it has
    /// printed `ready`.
    pub(crate) fn serve(dir: &Path, server: &str, ready: &str) -> Self {
        let config = format!("{server}.toml");
        let mut service = Self::spawn(
            chaincall()
                .env("RUST_LOG", "info")
                .current_dir(dir)
                .args([server, "serve", "--config", &config]),
        );
        service.wait_for(ready, Duration::from_secs(60));
        service
    }

    /// Waits for a line containing `needle`; returns the stdout lines seen on the way.
    pub(crate) fn wait_for(&mut self, needle: &str, timeout: Duration) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        let mut seen = Vec::new();
        let mut stdout = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok((is_stdout, line)) => {
                    let hit = line.contains(needle);
                    if is_stdout {
                        stdout.push(line.clone());
                    }
                    seen.push(line);
                    if hit {
                        return stdout;
                    }
                }
                Err(_) => panic!(
                    "no line containing {needle:?} within {timeout:?} (exit: {:?}); output:\n{}",
                    self.child.try_wait().ok().flatten(),
                    seen.join("\n")
                ),
            }
        }
    }

    /// Waits for the process to exit on its own; returns its remaining stdout lines.
    pub(crate) fn finish(self, timeout: Duration) -> Vec<String> {
        self.exited(timeout)
            .into_iter()
            .filter(|(o, _)| *o)
            .map(|(_, l)| l)
            .collect()
    }

    /// Sends `signal` (`TERM`, `INT`: what `systemctl stop` and Ctrl-C send) and waits for the
    /// process to exit with status 0; returns its remaining lines, stdout and stderr (the logs).
    pub(crate) fn stop(self, signal: &str, timeout: Duration) -> Vec<String> {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-s", signal, &pid]).status();
        assert!(sent.is_ok_and(|s| s.success()), "kill -s {signal} {pid}");
        self.exited(timeout).into_iter().map(|(_, l)| l).collect()
    }

    /// Waits up to `timeout` for the process to exit, asserts it succeeded, and returns its
    /// remaining lines tagged as [`Service::spawn`] tags them.
    fn exited(mut self, timeout: Duration) -> Vec<(bool, String)> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                // The reader threads end with the pipes.
                std::thread::sleep(Duration::from_millis(100));
                let lines: Vec<(bool, String)> = self.lines.try_iter().collect();
                assert!(
                    status.success(),
                    "exited with {status}; output:\n{}",
                    lines
                        .iter()
                        .map(|(_, l)| l.as_str())
                        .collect::<Vec<_>>()
                        .join("\n")
                );
                return lines;
            }
            assert!(Instant::now() < deadline, "did not exit within {timeout:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) struct Net {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) rpc: String,
    pub(crate) contract: String,
    pub(crate) wallet_url: String,
    pub(crate) sipd_port: u16,
    /// sipd's plain TCP listener (standard phones; `transport = "tcp"`).
    pub(crate) sipd_tcp_port: u16,
    pub(crate) _anvil: AnvilProcess,
    pub(crate) _wallet: Service,
    pub(crate) sipd: Service,
}

impl Net {
    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A phone's folder with its config; `init` and `onboard` as a user would run them.
    pub(crate) fn onboarded_phone(&self, name: &str, number: &str) -> PathBuf {
        let home = self.initialised_phone(name, Some(number));
        let out = ok(phone(&home).args(["onboard", "--receipt", "receipt.json"]));
        assert!(out.contains("onboarded"), "{out}");
        home
    }

    /// A phone's folder with its config (with `number`, or none for the server to assign), after
    /// `init`, with a fresh `receipt.json`.
    pub(crate) fn initialised_phone(&self, name: &str, number: Option<&str>) -> PathBuf {
        let home = self.path(name);
        std::fs::create_dir_all(&home).unwrap();
        write_private(&home.join("passphrase"), &format!("{PASSPHRASE}\n"));
        let number_line = number.map_or(String::new(), |n| format!("number = \"{n}\"\n"));
        std::fs::write(
            home.join("phone.toml"),
            format!(
                r#"{number_line}key_file = "phone.key"
rpc_url = "{rpc}"
contract = "{contract}"
wallet_url = "{wallet}"
wallet_domain = "{WALLET_DOMAIN}"
media_ip = "127.0.0.1"
codecs = ["PCMU", "PCMA"]
key_mode = "pke"
auto_answer = true
record_dir = "recordings"

[sip]
addr = "127.0.0.1:{port}"
domain = "{SIP_DOMAIN}"
identity = "{SIP_DOMAIN}"
transport = "tls-psk"
register_expires = 600
"#,
                rpc = self.rpc,
                contract = self.contract,
                wallet = self.wallet_url,
                port = self.sipd_port
            ),
        )
        .unwrap();
        let out = match number {
            Some(number) => {
                let out = ok(phone(&home).args(["init", "--number", number]));
                assert!(out.contains(number), "{out}");
                out
            }
            None => ok(phone(&home).arg("init")),
        };
        assert!(out.contains("identity key"), "{out}");
        if let Some(number) = number {
            // The 30-digit fingerprint `keystore get` and `contact show` print, to compare.
            let name = chaincall_identity::IdentityName::parse(number).unwrap();
            let key = keys_of(&home).identity.public();
            let fp = chaincall_identity::Fingerprint::new(&name, &key).to_string();
            assert!(out.contains(&format!("identity key  {fp}")), "{out}");
        }
        let config = std::fs::read_to_string(home.join("phone.toml")).unwrap();
        assert!(
            config.contains("trust = \"0:0x"),
            "init pins block 0 into the config:\n{config}"
        );
        let token = home.join("token");
        write_private(&token, &format!("token-{name}-{}\n", std::process::id()));
        let receipt = home.join("receipt.json");
        ok(chaincall()
            .args(["store", "issue-receipt", "--store-key"])
            .arg(self.path("store-private.pem"))
            .args(["--package", PACKAGE, "--product", PRODUCT, "--token-file"])
            .arg(&token)
            .arg("--out")
            .arg(&receipt));
        assert_eq!(mode(&receipt), 0o600, "the receipt is written 0600");
        home
    }
}

impl Net {
    /// Rotates `number`'s on-chain key to `new_key` with the wallet in the phone's key file at
    /// `home` (the `keystore rotate` a user runs); returns the rotation's block.
    pub(crate) fn rotate_key(
        &self,
        home: &Path,
        number: &str,
        new_key: &chaincall_identity::PublicIdentityKey,
    ) -> u64 {
        let secrets =
            chaincall_phone::PhoneSecrets::load(&home.join("phone.key"), PASSPHRASE).unwrap();
        let wallet_file = home.join("wallet.key");
        write_private(&wallet_file, &hex::encode(secrets.wallet.to_bytes()));
        let out = ok(chaincall()
            .args(["keystore", "rotate", "--rpc", &self.rpc])
            .args(["--contract", &self.contract, "--phone", number])
            .args([
                "--public-key",
                &hex::encode(new_key.to_bytes()),
                "--key-file",
            ])
            .arg(&wallet_file));
        let block = out
            .split("in block ")
            .nth(1)
            .and_then(|rest| rest.split(',').next())
            .and_then(|n| n.trim().parse().ok());
        block.unwrap_or_else(|| panic!("no block in {out:?}"))
    }

    /// Moves the `trust` checkpoint in `home`'s config to the newest block (an app update pinning
    /// a newer block, read from a source the user trusts): changes up to it can be confirmed.
    pub(crate) fn trust_latest_block(&self, home: &Path) {
        let latest = self.rpc("eth_getBlockByNumber", serde_json::json!(["latest", false]));
        let number = u64::from_str_radix(
            latest["number"].as_str().unwrap().trim_start_matches("0x"),
            16,
        )
        .unwrap();
        let hash = latest["hash"].as_str().unwrap();
        let config = std::fs::read_to_string(home.join("phone.toml")).unwrap();
        let config: String = config
            .lines()
            .map(|l| {
                if l.starts_with("trust = ") {
                    format!("trust = \"{number}:{hash}\"\n")
                } else {
                    format!("{l}\n")
                }
            })
            .collect();
        std::fs::write(home.join("phone.toml"), config).unwrap();
    }

    /// A JSON-RPC call to the test's anvil node.
    pub(crate) fn rpc(&self, method: &str, params: serde_json::Value) -> serde_json::Value {
        use alloy::providers::{Provider, RootProvider};
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let provider =
                RootProvider::<alloy::network::Ethereum>::new_http(self.rpc.parse().unwrap());
            provider
                .raw_request::<_, serde_json::Value>(method.to_owned().into(), params)
                .await
                .unwrap_or_else(|e| panic!("{method}: {e}"))
        })
    }
}

/// Block 0's hash on the node at `url`.
pub(crate) fn genesis(url: &str) -> String {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        use alloy::providers::{Provider, RootProvider};
        let provider = RootProvider::<alloy::network::Ethereum>::new_http(url.parse().unwrap());
        let block: serde_json::Value = provider
            .raw_request("eth_getBlockByNumber".into(), ("0x0", false))
            .await
            .unwrap();
        block["hash"].as_str().unwrap().to_owned()
    })
}

/// Writes a secret file as a careful user would: mode 0600.
pub(crate) fn write_private(path: &Path, text: &str) {
    chaincall_identity::write_secret_file(
        path,
        text.as_bytes(),
        chaincall_identity::Overwrite::Replace,
    )
    .unwrap();
}

/// A file's permission bits.
pub(crate) fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// `chaincall phone` in a phone's folder, passphrase from its file.
pub(crate) fn phone(home: &Path) -> Command {
    let mut cmd = chaincall();
    cmd.current_dir(home).args([
        "phone",
        "--config",
        "phone.toml",
        "--passphrase-file",
        "passphrase",
    ]);
    cmd
}

/// `phone listen ARGS` in a phone's folder (passphrase from the environment), once it prints
/// `ready`.
pub(crate) fn listening(home: &Path, args: &[&str], ready: &str) -> Service {
    let mut listener = Service::spawn(
        chaincall()
            .current_dir(home)
            .env("CHAINCALL_PASSPHRASE", PASSPHRASE)
            .args(["phone", "--config", "phone.toml", "listen"])
            .args(args),
    );
    listener.wait_for(ready, Duration::from_secs(60));
    listener
}

/// Operator-assigned numbers around the tests' ALICE, BOB and NOBODY.
pub(crate) const ASSIGNED: &str = r#"[numbers]
verifier = "assigned"
ranges = [{ first = "+15550100000", last = "+15550109999" }]
"#;

pub(crate) fn network() -> Option<Net> {
    network_with(ASSIGNED, &[])
}

/// The network with the wallet server's `[numbers]` section and extra files in its folder.
pub(crate) fn network_with(numbers: &str, files: &[(&str, &str)]) -> Option<Net> {
    network_inner(numbers, files, "")
}

/// [`network_with`], `sipd_extra` appended to sipd's configuration (e.g. its `[peers]`).
fn network_inner(numbers: &str, files: &[(&str, &str)], sipd_extra: &str) -> Option<Net> {
    let anvil = chaincall_testkit::peer("anvil")?;
    let node = AnvilProcess::spawn(&anvil, chaincall_testkit::free_tcp_port(), &[]).unwrap();
    let rpc = node.url();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_private(
        &d.join("operator.key"),
        &hex::encode(dev_signer(0).to_bytes()),
    );

    let out = ok(chaincall()
        .args(["keystore", "deploy", "--rpc", &rpc, "--key-file"])
        .arg(d.join("operator.key")));
    let contract = out.lines().next_back().unwrap().trim().to_owned();
    assert!(contract.starts_with("0x"), "{out}");

    ok(chaincall().current_dir(d).args(["store", "keygen"]));

    let out = ok(chaincall()
        .current_dir(d)
        .args([
            "keystore",
            "publish-server",
            "--rpc",
            &rpc,
            "--contract",
            &contract,
        ])
        .args([
            "--domain",
            SIP_DOMAIN,
            "--identity-key-file",
            "sipd-identity.key",
        ])
        .args(["--key-file", "operator.key"]));
    assert!(out.contains(&format!("published {SIP_DOMAIN}")), "{out}");

    let wallet_port = chaincall_testkit::free_tcp_port();
    for (name, text) in files {
        write_private(&d.join(name), text);
    }
    std::fs::write(
        d.join("wallet.toml"),
        format!(
            r#"listen = "127.0.0.1:{wallet_port}"
worker_interval_ms = 100
[chain]
backend = "rpc"
rpc_url = "{rpc}"
contract = "{contract}"
wallet_key_file = "operator.key"
[identity]
domain = "{WALLET_DOMAIN}"
key_file = "wallet-identity.key"
[store]
package_name = "{PACKAGE}"
product_id = "{PRODUCT}"
public_key_file = "store-public.b64"
[database]
url = "sqlite://wallet.db?mode=rwc"
[sip]
database_url = "sqlite://sip.db?mode=rwc"
domain = "{SIP_DOMAIN}"
{numbers}"#
        ),
    )
    .unwrap();
    let wallet = Service::serve(d, "wallet", "listening http://");

    let sipd_port = chaincall_testkit::free_tcp_port();
    let sipd_tcp_port = chaincall_testkit::free_tcp_port();
    std::fs::write(
        d.join("sipd.toml"),
        format!(
            r#"listen = ["tls:127.0.0.1:{sipd_port}", "tcp:127.0.0.1:{sipd_tcp_port}"]
domain = "{SIP_DOMAIN}"
metrics_listen = ""
[auth]
mode = "digest"
database = "sqlite://{sip_db}"
create_schema = true
invite = true
# Subscriber rows are re-read for every request, so a recovered number's new SIP password (and
# the lost device's refusal) takes effect at once; the default cache delays it by up to 30 s.
credentials_cache_secs = 0
[tls_psk]
identity = "{SIP_DOMAIN}"
key_file = "{key}"
rpc_url = "{rpc}"
contract = "{contract}"
# The test's own anvil node.
trust = "provider"
# Longer than any test: a phone that rotated its key must get in although sipd cached the old
# one (a handshake that fails to prove the cached key drops it; the phone tries once more).
key_cache_secs = 3600
{sipd_extra}"#,
            sip_db = d.join("sip.db").display(),
            key = d.join("sipd-identity.key").display(),
        ),
    )
    .unwrap();
    let sipd = Service::serve(d, "sipd", "sipd running");

    Some(Net {
        rpc,
        contract,
        wallet_url: format!("http://127.0.0.1:{wallet_port}"),
        sipd_port,
        sipd_tcp_port,
        dir,
        _anvil: node,
        _wallet: wallet,
        sipd,
    })
}

/// bob's domain in [`two_domains`]: a second sipd process, its own identity on chain.
pub(crate) const PEER_DOMAIN: &str = "peer.chaincall.test";

/// The trapezoid (docs/trapezoid.md) as an operator runs it: [`network`]'s sipd for
/// [`SIP_DOMAIN`] and a second `chaincall sipd serve` process for [`PEER_DOMAIN`] (its own
/// folder, configuration and key file, its identity published with `keystore publish-server`),
/// each listing the other in `[peers]` (alice's number at the first, bob's at the second), both
/// sipd-to-sipd links up. The second verifies callers' PASSporTs (`[identity] verify = "mark"`)
/// and registers its phones by their TLS-PSK identity (`[auth] mode = "none"`).
pub(crate) struct TwoDomains {
    pub(crate) net: Net,
    pub(crate) peer_port: u16,
    pub(crate) peer_sipd: Service,
}

/// [`TwoDomains`] on a new anvil; `None` (skipped) without anvil.
pub(crate) fn two_domains() -> Option<TwoDomains> {
    let peer_port = chaincall_testkit::free_tcp_port();
    let peer_of = |domain: &str, port: u16, number: &str| {
        format!("[peers.\"{domain}\"]\naddr = \"127.0.0.1:{port}\"\nnumbers = [\"{number}\"]\n")
    };
    let mut net = network_inner(ASSIGNED, &[], &peer_of(PEER_DOMAIN, peer_port, BOB))?;
    let d = net.path("peer");
    std::fs::create_dir_all(&d).unwrap();
    write_private(
        &d.join("operator.key"),
        &hex::encode(dev_signer(0).to_bytes()),
    );
    let out = ok(chaincall()
        .current_dir(&d)
        .args(["keystore", "publish-server", "--rpc", &net.rpc])
        .args(["--contract", &net.contract, "--domain", PEER_DOMAIN])
        .args(["--identity-key-file", "sipd-identity.key"])
        .args(["--key-file", "operator.key"]));
    assert!(out.contains(&format!("published {PEER_DOMAIN}")), "{out}");
    std::fs::write(
        d.join("sipd.toml"),
        format!(
            r#"listen = ["tls:127.0.0.1:{peer_port}"]
domain = "{PEER_DOMAIN}"
metrics_listen = ""
[auth]
mode = "none"
[identity]
verify = "mark"
[tls_psk]
identity = "{PEER_DOMAIN}"
key_file = "sipd-identity.key"
rpc_url = "{rpc}"
contract = "{contract}"
# anvil's: the PASSporTs' `info` names it.
chain_id = 31337
trust = "provider"
{peer}"#,
            rpc = net.rpc,
            contract = net.contract,
            peer = peer_of(SIP_DOMAIN, net.sipd_port, ALICE),
        ),
    )
    .unwrap();
    let mut peer_sipd = Service::serve(&d, "sipd", "sipd running");
    // Each sipd's own link to the other (the first one's may be in its back-off: it started
    // alone).
    let up = Duration::from_secs(30);
    peer_sipd.wait_for("sipd-to-sipd link up", up);
    net.sipd.wait_for("sipd-to-sipd link up", up);
    Some(TwoDomains {
        net,
        peer_port,
        peer_sipd,
    })
}

impl TwoDomains {
    /// Moves the phone of `number` in `home` to [`PEER_DOMAIN`]: its `[sip]` section names the
    /// second sipd, and the first forgets the SIP account the wallet server gave it there (else
    /// the first sipd takes a call from the number at the other domain for a spoof of its own
    /// subscriber's, rightly).
    pub(crate) fn move_to_peer(&self, home: &Path, number: &str) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let url = format!("sqlite://{}", self.net.path("sip.db").display());
        let deleted = runtime.block_on(async {
            let pool = chaincall_wallet::db::connect(&url).await.unwrap();
            chaincall_wallet::subscriber::SubscriberTable::new(pool)
                .delete(number, SIP_DOMAIN)
                .await
                .unwrap()
        });
        assert!(deleted, "{number} had a SIP account at {SIP_DOMAIN}");
        let config = std::fs::read_to_string(home.join("phone.toml")).unwrap();
        let config = config
            .replace(
                &format!("addr = \"127.0.0.1:{}\"", self.net.sipd_port),
                &format!("addr = \"127.0.0.1:{}\"", self.peer_port),
            )
            .replace(&format!("\"{SIP_DOMAIN}\""), &format!("\"{PEER_DOMAIN}\""));
        std::fs::write(home.join("phone.toml"), config).unwrap();
    }
}

/// A phone's keys as its key file holds them (what the command would load).
pub(crate) fn keys_of(home: &Path) -> chaincall_phone::PhoneSecrets {
    chaincall_phone::PhoneSecrets::load(&home.join("phone.key"), PASSPHRASE).unwrap()
}

/// A network `chaincall init` wrote into `home/net` for its own anvil node, every port free: what
/// a new operator starts from (init.rs runs its README, packaging.rs the services' commands).
pub(crate) struct InitNet {
    pub(crate) home: tempfile::TempDir,
    pub(crate) node: AnvilProcess,
    /// The node operator's key (anvil's first dev account) in hex, in `home/deployer.key`; `init`
    /// only refers to it.
    pub(crate) deployer_hex: String,
    /// sipd's metrics port (`/healthz`).
    pub(crate) metrics_port: u16,
}

/// `chaincall init net --deployer-key deployer.key` in a new temp folder, on a new anvil (chain
/// 31337); `None` (skipped) without anvil.
pub(crate) fn init_network() -> Option<InitNet> {
    let anvil = chaincall_testkit::peer("anvil")?;
    let node = AnvilProcess::spawn(&anvil, chaincall_testkit::free_tcp_port(), &[]).unwrap();
    let home = tempfile::tempdir().unwrap();
    let deployer_hex = hex::encode(dev_signer(0).to_bytes());
    write_private(&home.path().join("deployer.key"), &deployer_hex);
    let port = || chaincall_testkit::free_tcp_port().to_string();
    let metrics_port = chaincall_testkit::free_tcp_port();
    ok(chaincall()
        .current_dir(home.path())
        .args(["init", "net", "--deployer-key", "deployer.key"])
        .args(["--rpc", &node.url(), "--chain-id", "31337"])
        .args([
            "--sip-port",
            &chaincall_testkit::free_udp_tcp_port().to_string(),
        ])
        .args(["--tls-port", &port(), "--wallet-port", &port()])
        .args(["--metrics-port", &metrics_port.to_string()]));
    Some(InitNet {
        home,
        node,
        deployer_hex,
        metrics_port,
    })
}

/// The commands of the README `chaincall init` writes, in order, up to the Kamailio alternative:
/// its indented lines starting with `chaincall ` or `export `.
pub(crate) fn readme_commands(readme: &str) -> Vec<String> {
    let main = readme.split("## Kamailio").next().unwrap();
    main.lines()
        .filter_map(|l| l.strip_prefix("    "))
        .filter(|l| l.starts_with("chaincall ") || l.starts_with("export "))
        .map(str::to_owned)
        .collect()
}
