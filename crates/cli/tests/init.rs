//! What a new operator does (issue 16): `chaincall init` and then, in order, exactly the commands
//! the README it wrote lists — keystore deploy on a real anvil, publish-server, wallet serve, sipd
//! serve, two phones initialised, onboarded with a store receipt and registered, one listening and
//! the other calling it. Nothing is configured by hand: if a file `init` writes disagrees with
//! another, or the README misses or misorders a step, this fails.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chaincall_identity::{Overwrite, write_secret_file};

const PASSPHRASE: &str = "correct horse battery";

/// A `chaincall` with none of the environment a developer may have set.
fn chaincall(dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_chaincall"));
    cmd.current_dir(dir)
        .env_remove("CHAINCALL_RPC")
        .env_remove("CHAINCALL_CONTRACT")
        .env_remove("CHAINCALL_WALLET_ADMIN_TOKEN")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null());
    cmd
}

/// The long-running commands of the README, each logging into its own file; all killed (and
/// reaped) when the test ends, also when it panics.
#[derive(Default)]
struct Background(Vec<(Child, PathBuf)>);

impl Background {
    /// Starts `cmd` with stdout and stderr in `log`, and waits (bounded) until the log shows
    /// `ready`.
    fn start(&mut self, mut cmd: Command, log: PathBuf, ready: &str) {
        let file = std::fs::File::create(&log).unwrap();
        let child = cmd
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .expect("chaincall starts");
        self.0.push((child, log));
        self.wait_for(self.0.len() - 1, ready);
    }

    /// Waits (bounded) until the log of the `i`th command shows `needle`.
    fn wait_for(&mut self, i: usize, needle: &str) {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let (child, log) = &mut self.0[i];
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if text.contains(needle) {
                return;
            }
            if let Some(status) = child.try_wait().unwrap() {
                panic!(
                    "{} exited ({status}) before {needle:?}:\n{text}",
                    log.display()
                );
            }
            assert!(
                Instant::now() < deadline,
                "{}: no {needle:?} within 90 s:\n{text}",
                log.display()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Everything the background commands logged, for failure messages.
    fn logs(&self) -> String {
        self.0
            .iter()
            .map(|(_, log)| std::fs::read_to_string(log).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n----\n")
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        for (child, _) in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The README's commands, in order, up to the Kamailio alternative: indented lines starting
/// with `chaincall ` or `export `.
fn readme_commands(readme: &str) -> Vec<String> {
    let main = readme.split("## Kamailio").next().unwrap();
    main.lines()
        .filter_map(|l| l.strip_prefix("    "))
        .filter(|l| l.starts_with("chaincall ") || l.starts_with("export "))
        .map(str::to_owned)
        .collect()
}

#[test]
fn a_new_operator_runs_the_network_init_writes_with_only_its_readme() {
    let Some(anvil) = chaincall_testkit::peer("anvil") else {
        return;
    };
    let node =
        chaincall_chain::AnvilProcess::spawn(&anvil, chaincall_testkit::free_tcp_port(), &[])
            .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path();
    // The node operator's key (anvil's first dev account), which `init` only refers to.
    let deployer_hex = hex::encode(chaincall_chain::dev_signer(0).to_bytes());
    write_secret_file(
        &home.join("deployer.key"),
        deployer_hex.as_bytes(),
        Overwrite::Refuse,
    )
    .unwrap();
    let port = || chaincall_testkit::free_tcp_port().to_string();
    let sip_port = chaincall_testkit::free_udp_tcp_port().to_string();
    let out = chaincall(home)
        .args(["init", "net", "--deployer-key", "deployer.key"])
        .args(["--rpc", &node.url(), "--chain-id", "31337"])
        .args(["--sip-port", &sip_port, "--tls-port", &port()])
        .args(["--wallet-port", &port(), "--metrics-port", &port()])
        .output()
        .unwrap();
    chaincall_testkit::assert_success(&out, "chaincall init");
    let net = home.join("net");
    let readme = std::fs::read_to_string(net.join("README.md")).unwrap();
    for f in std::fs::read_dir(&net).unwrap() {
        let text = std::fs::read(f.unwrap().path()).unwrap_or_default();
        assert!(
            !String::from_utf8_lossy(&text).contains(&deployer_hex),
            "the deployer's key is copied"
        );
    }

    let mut background = Background::default();
    let mut passphrase = None;
    let mut ran = Vec::new();
    for (k, line) in readme_commands(&readme).into_iter().enumerate() {
        if let Some(assignment) = line.strip_prefix("export ") {
            assert!(assignment.starts_with("CHAINCALL_PASSPHRASE="), "{line}");
            passphrase = Some(PASSPHRASE);
            continue;
        }
        let args: Vec<&str> = line.split_whitespace().skip(1).collect();
        let mut cmd = chaincall(&net);
        cmd.args(&args);
        if let Some(p) = passphrase {
            cmd.env("CHAINCALL_PASSPHRASE", p);
        }
        let log = net.join(format!("step{k}.log"));
        let ready = match args.as_slice() {
            ["wallet", "serve", ..] => Some("listening http://"),
            ["sipd", "serve", ..] => Some("sipd running"),
            [.., "listen"] => Some("listening"),
            _ => None,
        };
        if let Some(ready) = ready {
            background.start(cmd, log, ready);
            ran.push(args[0].to_owned());
            continue;
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "README step `{line}` failed:\n{}\nservers:\n{}",
            chaincall_testkit::describe(&out),
            background.logs()
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        if args.starts_with(&["keystore", "deploy"]) {
            // The address every file was written with (anvil's first deployment).
            let contract = stdout.lines().next_back().unwrap().trim();
            assert!(
                readme.contains(&format!("must be `{contract}`")),
                "{stdout}"
            );
        }
        if args.contains(&"call") {
            assert!(stdout.contains("+15550100002"), "{stdout}");
        }
        ran.push(args[..2].join(" "));
    }
    // Every part was started or run, in the README's order.
    assert_eq!(
        ran,
        [
            "keystore deploy",
            "keystore publish-server",
            "wallet",
            "sipd",
            "phone --config",
            "store issue-receipt",
            "phone --config",
            "phone --config",
            "phone --config",
            "store issue-receipt",
            "phone --config",
            "phone --config",
            "phone",
            "phone --config",
        ]
    );
    // The callee's side (the last command started): the call came in from phone1's number.
    let listener = background.0.len() - 1;
    background.wait_for(listener, "+15550100001");
}
