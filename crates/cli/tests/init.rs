//! What a new operator does (issue 16): `chaincall init` and then, in order, exactly the commands
//! the README it wrote lists — keystore deploy on a real anvil, publish-server, wallet serve, sipd
//! serve, two phones initialised, onboarded with a store receipt and registered, one listening and
//! the other calling it; and the same with the README's Kamailio alternative in sipd's place.
//! Nothing is configured by hand (beyond the phone edit the README asks for with Kamailio): if a
//! file `init` writes disagrees with another, or the README misses or misorders a step, this fails.

mod common;

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

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
    /// Starts `cmd` (in its own process group, so Kamailio's workers go with it) with stdout and
    /// stderr in `log`, and waits (bounded) until the log shows `ready`, or with `listens` until
    /// that TCP address accepts connections.
    fn start(&mut self, mut cmd: Command, log: PathBuf, ready: &str, listens: Option<SocketAddr>) {
        use std::os::unix::process::CommandExt;
        let file = std::fs::File::create(&log).unwrap();
        let child = cmd
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .process_group(0)
            .spawn()
            .expect("the command starts");
        self.0.push((child, log));
        let i = self.0.len() - 1;
        match listens {
            Some(addr) => self.wait_until(i, &format!("listening on {addr}"), |_| {
                TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
            }),
            None => self.wait_for(i, ready),
        }
    }

    /// Waits (bounded) until the log of the `i`th command shows `needle`.
    fn wait_for(&mut self, i: usize, needle: &str) {
        self.wait_until(i, needle, |log| log.contains(needle));
    }

    /// Waits (bounded) until `done` holds for the `i`th command's log; fails if it exits first.
    fn wait_until(&mut self, i: usize, what: &str, done: impl Fn(&str) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let (child, log) = &mut self.0[i];
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if done(&text) {
                return;
            }
            if let Some(status) = child.try_wait().unwrap() {
                panic!(
                    "{} exited ({status}) before {what:?}:\n{text}",
                    log.display()
                );
            }
            assert!(
                Instant::now() < deadline,
                "{}: no {what:?} within 90 s:\n{text}",
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
            // The whole group this test started (Kamailio forks workers).
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", child.id())])
                .status();
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The README's "Kamailio instead of sipd" section: the shell lines creating its database,
/// Kamailio's arguments, and the address the phones are told to use.
struct KamailioSteps {
    database: Vec<String>,
    kamailio_args: Vec<String>,
    addr: SocketAddr,
}

impl KamailioSteps {
    fn from_readme(readme: &str) -> Self {
        let section = readme
            .split("## Kamailio")
            .nth(1)
            .expect("a Kamailio section");
        let lines: Vec<&str> = section
            .lines()
            .filter_map(|l| l.strip_prefix("    "))
            .collect();
        let database = lines
            .iter()
            .filter(|l| l.starts_with("sqlite3 "))
            .map(|l| l.to_string())
            .collect::<Vec<_>>();
        let kamailio = lines
            .iter()
            .find(|l| l.starts_with("kamailio "))
            .expect("a kamailio command");
        let addr = section
            .split("`addr = \"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .and_then(|a| a.parse().ok())
            .expect("the address phones use");
        KamailioSteps {
            database,
            kamailio_args: kamailio
                .split_whitespace()
                .skip(1)
                .map(str::to_owned)
                .collect(),
            addr,
        }
    }

    /// The README's shell lines that create Kamailio's database.
    fn run_before_the_wallet(&self, net: &Path) {
        assert_eq!(self.database.len(), 2, "{:?}", self.database);
        for line in &self.database {
            let out = Command::new("sh")
                .current_dir(net)
                .args(["-c", line])
                .output()
                .unwrap();
            chaincall_testkit::assert_success(&out, line);
        }
    }

    /// Each phone's `[sip]` as the README says: plain TCP to Kamailio.
    fn edit_phones(&self, net: &Path) {
        for k in 1..=2 {
            let path = net.join(format!("phone{k}/phone.toml"));
            let text = std::fs::read_to_string(&path).unwrap();
            let edited: String = text
                .lines()
                .map(|l| match l {
                    l if l.starts_with("transport = ") => "transport = \"tcp\"".to_owned(),
                    l if l.starts_with("addr = ") => format!("addr = \"{}\"", self.addr),
                    l => l.to_owned(),
                })
                .collect::<Vec<_>>()
                .join("\n");
            std::fs::write(&path, edited + "\n").unwrap();
        }
    }
}

#[test]
fn a_new_operator_runs_the_network_init_writes_with_only_its_readme() {
    day_one(None);
}

/// The same with the README's Kamailio alternative: the Kamailio database created by its
/// commands before the wallet server starts, Kamailio (with the `kamailio.cfg` init wrote)
/// started instead of sipd, and the phones' `[sip]` edited as the README says.
#[test]
fn the_same_with_kamailio_in_sipds_place() {
    if let Some(kamailio) = chaincall_testkit::peer("kamailio") {
        day_one(Some(kamailio));
    }
}

/// Without `--checkpoint` and with its node down, `init` still writes the network, says that
/// nothing was pinned and what that leaves: sipd believing its node, each phone pinning at
/// `phone init`.
#[test]
fn init_with_its_node_down_says_nothing_was_pinned() {
    let home = tempfile::tempdir().unwrap();
    let down = format!("http://127.0.0.1:{}", chaincall_testkit::free_tcp_port());
    let out = chaincall(home.path())
        .args([
            "init",
            "net",
            "--deployer-key",
            "deployer.key",
            "--rpc",
            &down,
        ])
        .output()
        .unwrap();
    chaincall_testkit::assert_success(&out, "init with the node down");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!("not pinned: cannot read block 0 from {down}")),
        "{stdout}"
    );
    assert!(stdout.contains("trust = \"provider\""), "{stdout}");
    let net = home.path().join("net");
    let sipd = std::fs::read_to_string(net.join("sipd.toml")).unwrap();
    assert!(sipd.contains("\ntrust = \"provider\"\n"), "{sipd}");
    assert!(!sipd.contains("\ncheckpoint = "), "{sipd}");
    let phone = std::fs::read_to_string(net.join("phone1/phone.toml")).unwrap();
    assert!(phone.contains("\n# trust = \"0:0x…\"\n"), "{phone}");
}

/// `init`, then the README's commands in order; with `kamailio`, its Kamailio alternative.
fn day_one(kamailio: Option<PathBuf>) {
    let Some(init) = common::init_network() else {
        return;
    };
    let home = init.home.path();
    let deployer_hex = &init.deployer_hex;
    let net = home.join("net");
    let readme = std::fs::read_to_string(net.join("README.md")).unwrap();
    for f in std::fs::read_dir(&net).unwrap() {
        let text = std::fs::read(f.unwrap().path()).unwrap_or_default();
        assert!(
            !String::from_utf8_lossy(&text).contains(deployer_hex.as_str()),
            "the deployer's key is copied"
        );
    }

    // No --checkpoint: init pinned the node's block 0 for sipd and every phone alike.
    let pin = format!("0:{}", common::genesis(&init.node.url()));
    let sipd = std::fs::read_to_string(net.join("sipd.toml")).unwrap();
    let pinned = format!("trust = \"checkpoint\"\ncheckpoint = \"{pin}\"\n");
    assert!(sipd.contains(&pinned), "{sipd}");
    for k in 1..=2 {
        let phone = std::fs::read_to_string(net.join(format!("phone{k}/phone.toml"))).unwrap();
        assert!(phone.contains(&format!("\ntrust = \"{pin}\"\n")), "{phone}");
    }

    let alternative = KamailioSteps::from_readme(&readme);
    let mut background = Background::default();
    let mut passphrase = None;
    let mut ran = Vec::new();
    for (k, line) in common::readme_commands(&readme).into_iter().enumerate() {
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
        if let (Some(_), ["wallet", "serve", ..]) = (&kamailio, args.as_slice()) {
            alternative.run_before_the_wallet(&net);
        }
        if let (Some(bin), ["sipd", "serve", ..]) = (&kamailio, args.as_slice()) {
            let mut k = Command::new(bin);
            k.current_dir(&net).args(&alternative.kamailio_args);
            background.start(k, log, "", Some(alternative.addr));
            alternative.edit_phones(&net);
            ran.push("kamailio".to_owned());
            continue;
        }
        let ready = match args.as_slice() {
            ["wallet", "serve", ..] => Some("listening http://"),
            ["sipd", "serve", ..] => Some("sipd running"),
            [.., "listen"] => Some("listening"),
            _ => None,
        };
        if let Some(ready) = ready {
            background.start(cmd, log, ready, None);
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
            if kamailio.is_some() {
                "kamailio"
            } else {
                "sipd"
            },
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
    if kamailio.is_some() {
        // Kamailio (started second, after the wallet server) authenticated the call.
        background.wait_for(1, "AUTH-OK INVITE +15550100001@");
        // Without -A LOG_MESSAGES no message is logged in full (an SDES offer's key would be).
        let log = std::fs::read_to_string(&background.0[1].1).unwrap();
        assert!(!log.contains("SIP-IN"), "{log}");
    }
}
