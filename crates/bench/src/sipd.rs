//! `chaincall bench sipd`: sipd against Kamailio as a SIP proxy, side by side in one run.
//!
//! Calls: sipp uac → proxy → sipp uas over UDP on 127.0.0.1 (sipp's built-in INVITE / 100 / 180 /
//! 200 / ACK / BYE / 200 scenarios, `-d 0`), the proxy being sipd (`sipd serve --auth none
//! --static-route UAS`, stateful, Record-Route) or Kamailio 5.6 (`-m 512 -M 16`, foreground, `tm` +
//! `rr`, the same stateless-target routing to the uas). The call rate steps up; a step passes when
//! ≥ 99.9 % of its calls succeed and sipp kept the rate (elapsed ≤ 1.1 × the step's length + 2 s).
//! The two servers alternate step by step, so load from other processes on a shared machine hits
//! both alike; a server stops stepping after `--max-failures` (2) failed steps in a row, and its
//! result is the highest rate that passed. Failed calls are broken down by sipp's failure counters
//! (e.g. `FailedUnexpectedMessage`: a response that overtook another, such as a 180 after the 200).
//!
//! Registrations: sipp sends REGISTER, answers the 401 digest challenge (MD5, `qop=auth`: sipp
//! 3.6 speaks no SHA-256) and expects 200, against a Kamailio-schema `subscriber` table in SQLite:
//! sipd with `auth.mode = "digest"`, Kamailio with `auth_db` over `db_sqlite` and `usrloc` in
//! memory. Same stepping.
//!
//! `--location postgres`: the bench starts a throwaway PostgreSQL (`crate::pg`), loads
//! Kamailio's own schema into it and runs Kamailio with `auth_db` and `usrloc db_mode=3` (DB-only:
//! every REGISTER writes the `location` table, every INVITE's `lookup("location")` reads it) on
//! that database; sipd runs with `[location] backend = "postgres"` and `cache_secs = 0` (every
//! REGISTER written, every INVITE's bindings read, as Kamailio's db_mode=3), one database per sipd
//! process, its subscribers still in SQLite. The callee, sipp's uas, is provisioned as a
//! `location` row on both sides (no static route for sipd), so each call costs each server one
//! location read, as a call to a registered phone does.
//!
//! `--nodes N` (with `--location postgres`): N processes of each server share that database, as a
//! cluster's nodes do (sipd: N `sipd serve` processes with their own `node_id` on one `location`
//! table; Kamailio: N instances with usrloc `db_mode=3` on one database, the shared-database
//! deployment Kamailio operators scale with). Each step's rate is split evenly over N sipp
//! clients, one per node, run at once; a step's figures are their sums (elapsed: the longest),
//! and its CPU is every node's plus PostgreSQL's. The callee is reached from every node through
//! the shared table (sipp's uas over UDP: no node owns a flow to it).
//!
//! Each step records the proxy's CPU seconds (all its processes, plus PostgreSQL's server processes
//! when it has one) from `/proc`, and the CPU milliseconds per successful call or registration.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use serde_json::{Value, json};

/// Arguments of `chaincall bench sipd`.
#[derive(Debug, Args)]
pub struct SipdBenchArgs {
    /// Print one JSON object (per-step results and a summary).
    #[arg(long)]
    json: bool,
    /// Call rates to step through, calls/s, ascending.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "500,750,1000,1250,1500,1750,2000,2500,3000,3500,4000"
    )]
    rates: Vec<u32>,
    /// REGISTER rates to step through, registrations/s (each is REGISTER, 401, REGISTER, 200).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "500,1000,1500,2000,2500,3000,4000,5000"
    )]
    register_rates: Vec<u32>,
    /// Seconds per step.
    #[arg(long, default_value_t = 10)]
    secs: u32,
    /// Servers to measure.
    #[arg(long, value_delimiter = ',', default_value = "sipd,kamailio")]
    servers: Vec<String>,
    /// Skip the REGISTER measurement.
    #[arg(long)]
    no_register: bool,
    /// First of the UDP ports used (proxies, uas, uac: base .. base+7, and 4 more per node
    /// beyond the first with --nodes).
    #[arg(long, default_value_t = 25060)]
    base_port: u16,
    /// The sipp binary.
    #[arg(long, default_value = "sipp")]
    sipp: PathBuf,
    /// The kamailio binary.
    #[arg(long, default_value = "kamailio")]
    kamailio: PathBuf,
    /// Kamailio UDP worker processes (`children`).
    #[arg(long, default_value_t = 2)]
    kamailio_children: u32,
    /// A server stops stepping after this many failed steps in a row (one noisy step on a shared
    /// machine does not end its run); its result is the highest passing rate.
    #[arg(long, default_value_t = 2)]
    max_failures: u32,
    /// Keep the working directory (configs, logs, sipp stats) instead of deleting it.
    #[arg(long)]
    keep: bool,
    /// Where the servers keep registrations: `memory` (Kamailio's usrloc in memory with subscribers
    /// in SQLite; sipd's default) or `postgres` (a throwaway PostgreSQL the bench starts: Kamailio's
    /// usrloc `db_mode=3` and `auth_db`, sipd's `[location] backend = "postgres"`, both read on
    /// every call).
    #[arg(long, value_enum, default_value = "memory")]
    location: Location,
    /// Processes of each server sharing the PostgreSQL location (needs `--location postgres`
    /// beyond 1): the load is split evenly over them.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=8))]
    nodes: u32,
}

/// Where both servers keep their location (and Kamailio its subscriber table).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Location {
    /// In memory: Kamailio's usrloc `db_mode=0` with `auth_db` on SQLite; sipd's default
    /// location, the callee reached by a static route.
    Memory,
    /// A PostgreSQL started by the bench: Kamailio's usrloc `db_mode=3` and `auth_db` on it;
    /// sipd's `[location] backend = "postgres"` read on every call.
    Postgres,
}

impl Location {
    fn name(self) -> &'static str {
        match self {
            Location::Memory => "memory",
            Location::Postgres => "postgres",
        }
    }
}

const THRESHOLD: f64 = 0.999;
const USER: &str = "bench";
const PASSWORD: &str = "b3nch-secret";
/// The realm and subscriber domain: the proxies' address (sipp's REGISTERs are `From: …@127.0.0.1`).
const KAMAILIO_DOMAIN: &str = "127.0.0.1";
/// The user sipp's built-in uac calls (its default `-s`), provisioned as a location row with
/// `--location postgres`.
const CALLEE: &str = "service";
/// With `--location postgres`, the databases of sipd's two processes (calls, registrations).
const SIPD_CALLS_DB: &str = "sipd_calls";
const SIPD_REG_DB: &str = "sipd_register";
const REGISTER_XML: &str = include_str!("../../sipd/tests/scenarios/register_auth.xml");

/// A child process stopped on drop: SIGTERM, SIGKILL if it is still running 2 s later, then
/// reaped.
pub(crate) struct Proc {
    name: &'static str,
    child: Child,
}

impl Drop for Proc {
    fn drop(&mut self) {
        // SIGTERM first: Kamailio's main process then stops its workers (SIGKILL would orphan them).
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        for _ in 0..40 {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proc {
    /// Starts `cmd` as `name`, its stderr into `log`.
    pub(crate) fn spawn(name: &'static str, cmd: &mut Command, log: &Path) -> anyhow::Result<Proc> {
        let err = std::fs::File::create(log)?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(err)
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        Ok(Proc { name, child })
    }

    /// Fails if the process already exited (bad config, port taken).
    fn check_alive(&mut self, log: &Path) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            let tail = std::fs::read_to_string(log).unwrap_or_default();
            let tail: String = tail.lines().rev().take(15).collect::<Vec<_>>().join("\n");
            bail!(
                "{} exited at start ({status}); log tail:\n{tail}",
                self.name
            );
        }
        Ok(())
    }

    /// CPU seconds of the process and its direct children (Kamailio's workers).
    fn cpu_secs(&self) -> f64 {
        tree_cpu_secs(self.child.id())
    }
}

/// CPU seconds of process `pid`, its live direct children (Kamailio's workers, PostgreSQL's
/// backends) and the children it has reaped.
fn tree_cpu_secs(pid: u32) -> f64 {
    let mut ticks = 0u64;
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for e in dir.flatten() {
            let Some(p) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else {
                continue;
            };
            // Fields after the parenthesised command: state ppid ... utime(14) stime(15).
            let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
                continue;
            };
            let f: Vec<&str> = rest.split_whitespace().collect();
            let ppid = f.get(1).and_then(|s| s.parse::<u32>().ok());
            let t = |i: usize| f.get(i).and_then(|s| s.parse::<u64>().ok()).unwrap_or(0);
            if p == pid {
                // Its own time, and that of children it has reaped (cutime, cstime): a
                // PostgreSQL backend that exits between two readings moves its CPU there
                // instead of taking it out of the sum.
                ticks += t(11) + t(12) + t(13) + t(14);
            } else if ppid == Some(pid) {
                ticks += t(11) + t(12);
            }
        }
    }
    // USER_HZ is 100 on Linux.
    ticks as f64 / 100.0
}

/// The UDP ports of one run; the per-node ones have an entry per node.
struct Ports {
    sipd: Vec<u16>,
    sipd_reg: Vec<u16>,
    kamailio: Vec<u16>,
    uas_sipd: u16,
    uas_kamailio: u16,
    /// One sipp client per node.
    uac: Vec<u16>,
}

impl Ports {
    /// The first node keeps the single-node layout (base .. base+7); node i ≥ 1 takes the four
    /// ports from base + 8 + 4(i − 1).
    fn new(base: u16, nodes: u32) -> anyhow::Result<Ports> {
        let last = u32::from(base) + 8 + 4 * nodes.saturating_sub(1);
        if last > u32::from(u16::MAX) {
            bail!("--base-port {base} leaves no room for {nodes} nodes' ports");
        }
        let node = |i: u32, first: u16, k: u16| -> u16 {
            if i == 0 {
                base + first
            } else {
                base + 8 + 4 * (i as u16 - 1) + k
            }
        };
        Ok(Ports {
            sipd: (0..nodes).map(|i| node(i, 0, 0)).collect(),
            sipd_reg: (0..nodes).map(|i| node(i, 1, 1)).collect(),
            kamailio: (0..nodes).map(|i| node(i, 2, 2)).collect(),
            uas_sipd: base + 3,
            uas_kamailio: base + 4,
            uac: (0..nodes).map(|i| node(i, 5, 3)).collect(),
        })
    }
}

/// One server under test: its processes per node (calls; registrations) and their ports.
struct Server {
    name: &'static str,
    calls: Vec<usize>,
    registers: Vec<usize>,
    calls_ports: Vec<u16>,
    register_ports: Vec<u16>,
    /// The log of each node's calls process (to show when it died at start).
    logs: Vec<PathBuf>,
}

impl Server {
    /// `name` with no process yet, reached at `calls_ports` and `register_ports` (one a node).
    fn new(name: &'static str, calls_ports: &[u16], register_ports: &[u16]) -> Self {
        Server {
            name,
            calls: Vec::new(),
            registers: Vec::new(),
            calls_ports: calls_ports.to_vec(),
            register_ports: register_ports.to_vec(),
            logs: Vec::new(),
        }
    }
}

/// What node `node`'s files and ids are suffixed with: nothing for the first (the single-node
/// names), `-2`, `-3`, … after it.
fn node_suffix(node: usize) -> String {
    if node == 0 {
        String::new()
    } else {
        format!("-{}", node + 1)
    }
}

/// One step's outcome.
struct Step {
    server: String,
    rate: u32,
    planned: u64,
    ok: u64,
    failed: u64,
    retransmissions: u64,
    elapsed_s: f64,
    /// CPU seconds of the proxy's processes plus, with a database server, the database's.
    server_cpu_s: f64,
    /// The database server's share of `server_cpu_s` (PostgreSQL only).
    db_cpu_s: Option<f64>,
    /// sipp's non-zero `Failed…(C)` counters.
    failures: serde_json::Map<String, Value>,
}

impl Step {
    fn success(&self) -> f64 {
        if self.planned == 0 {
            0.0
        } else {
            self.ok as f64 / self.planned as f64
        }
    }

    /// Server CPU milliseconds per successful call (or registration); NaN when none succeeded.
    fn cpu_ms_per_call(&self) -> f64 {
        if self.ok == 0 {
            f64::NAN
        } else {
            self.server_cpu_s * 1e3 / self.ok as f64
        }
    }

    fn passed(&self, secs: u32) -> bool {
        self.success() >= THRESHOLD && self.elapsed_s <= f64::from(secs) * 1.1 + 2.0
    }

    fn json(&self, secs: u32) -> Value {
        json!({
            "server": self.server,
            "rate": self.rate,
            "planned": self.planned,
            "ok": self.ok,
            "failed": self.failed,
            "success": (self.success() * 10_000.0).round() / 10_000.0,
            "retransmissions": self.retransmissions,
            "elapsed_s": (self.elapsed_s * 100.0).round() / 100.0,
            "achieved_per_s": if self.elapsed_s > 0.0 { (self.ok as f64 / self.elapsed_s).round() } else { 0.0 },
            "server_cpu_s": (self.server_cpu_s * 100.0).round() / 100.0,
            "db_cpu_s": self.db_cpu_s.map(|s| (s * 100.0).round() / 100.0),
            "cpu_ms_per_call": round3(self.cpu_ms_per_call()),
            "failures": self.failures,
            "passed": self.passed(secs),
        })
    }
}

/// Runs the benchmark and prints its results (JSON with `--json`, else the summary). sipd is
/// started as `<running binary> sipd serve`, so measuring sipd must be called from the `chaincall`
/// binary (`chaincall bench sipd`).
pub fn run(args: SipdBenchArgs) -> anyhow::Result<()> {
    let json = args.json;
    let results = measure(args)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&results)?);
        return Ok(());
    }
    println!(
        "highest rate with >= {:.1} % success, {} s per step, location {}:",
        THRESHOLD * 100.0,
        results["secs_per_step"],
        results["location"].as_str().unwrap_or("?"),
    );
    if let Some(summary) = results["summary"].as_object() {
        for (name, s) in summary {
            println!(
                "  {name:<9} calls/s {:>6} ({} CPU ms/call)   REGISTER/s (digest) {:>6} ({} CPU ms/REGISTER)",
                s["calls_per_s"],
                s["calls_cpu_ms_per_call"],
                s["registers_per_s"],
                s["registers_cpu_ms_per_register"],
            );
        }
    }
    Ok(())
}

/// Runs the benchmark and returns its results as the JSON object `--json` prints: the machine,
/// `location`, per-step `calls` and `registers`, a per-server `summary` (highest passing rates
/// and server CPU milliseconds per call at them) and, with `--location postgres`, `kamailio_db`
/// and `sipd_db` (the registrations each left in its PostgreSQL `location` table).
pub fn measure(args: SipdBenchArgs) -> anyhow::Result<Value> {
    which(&args.sipp).context("sipp (Debian sip-tester) is required")?;
    let want_kamailio = args.servers.iter().any(|s| s == "kamailio");
    let want_sipd = args.servers.iter().any(|s| s == "sipd");
    if let Some(other) = args
        .servers
        .iter()
        .find(|s| *s != "sipd" && *s != "kamailio")
    {
        bail!("unknown server {other:?} in --servers (sipd, kamailio)");
    }
    if want_kamailio {
        which(&args.kamailio).context("kamailio (Debian kamailio) is required")?;
    }
    if args.nodes > 1 && args.location != Location::Postgres {
        bail!(
            "--nodes {} needs --location postgres: the nodes share their registrations there",
            args.nodes
        );
    }
    let dir = std::env::temp_dir().join(format!(
        "bench-sipd.{}.{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    ));
    std::fs::create_dir_all(&dir)?;
    let ports = Ports::new(args.base_port, args.nodes)?;
    let me = std::env::current_exe().context("locating the chaincall binary")?;
    let db_path = dir.join("subscriber.db");
    make_subscriber_db(&db_path)?;
    std::fs::write(dir.join("register_auth.xml"), REGISTER_XML)?;

    // Declared before the processes so that it is dropped (stopped) after Kamailio, its client.
    let postgres = match args.location {
        Location::Memory => None,
        Location::Postgres => {
            let pg = crate::pg::Postgres::start()?;
            if want_kamailio {
                crate::pg::create_kamailio_db(&pg, KAMAILIO_DOMAIN, &[(USER, PASSWORD)])?;
                // The callee: sipp's built-in uac calls `service`; route it to the uas by location.
                pg.psql(
                    "kamailio",
                    &crate::pg::location_row(
                        CALLEE,
                        None,
                        None,
                        &format!("sip:{CALLEE}@127.0.0.1:{}", ports.uas_kamailio),
                    ),
                )?;
            }
            if want_sipd {
                // One database per kind of sipd process (every node of a kind shares it): each
                // creates its table at start.
                pg.psql(
                    "postgres",
                    &format!("CREATE DATABASE {SIPD_CALLS_DB}; CREATE DATABASE {SIPD_REG_DB};"),
                )?;
            }
            Some(pg)
        }
    };
    // sipd's location: in PostgreSQL read on every call (`cache_secs = 0`, as Kamailio's
    // db_mode=3), or in memory with the callee reached by a static route.
    let sipd_location = |db: &str| postgres.as_ref().map(|pg| pg.url(db));
    let db_pid = postgres.as_ref().and_then(crate::pg::Postgres::pid);
    let mut procs: Vec<Proc> = Vec::new();
    let mut servers: Vec<Server> = Vec::new();
    if want_sipd {
        let mut server = Server::new("sipd", &ports.sipd, &ports.sipd_reg);
        for node in 0..args.nodes as usize {
            let suffix = node_suffix(node);
            let node_id = format!("bench{suffix}");
            let calls_cfg = dir.join(format!("sipd-calls{suffix}.toml"));
            std::fs::write(
                &calls_cfg,
                sipd_config(
                    ports.sipd[node],
                    "none",
                    None,
                    Some(ports.uas_sipd).filter(|_| postgres.is_none()),
                    sipd_location(SIPD_CALLS_DB).as_deref(),
                    &node_id,
                ),
            )?;
            let reg_cfg = dir.join(format!("sipd-register{suffix}.toml"));
            std::fs::write(
                &reg_cfg,
                sipd_config(
                    ports.sipd_reg[node],
                    "digest",
                    Some(&db_path),
                    None,
                    sipd_location(SIPD_REG_DB).as_deref(),
                    &node_id,
                ),
            )?;
            for (cfg, log, into) in [
                (
                    &calls_cfg,
                    format!("sipd-calls{suffix}.log"),
                    &mut server.calls,
                ),
                (
                    &reg_cfg,
                    format!("sipd-register{suffix}.log"),
                    &mut server.registers,
                ),
            ] {
                procs.push(Proc::spawn(
                    "sipd",
                    Command::new(&me)
                        .args(["sipd", "serve", "--config"])
                        .arg(cfg)
                        .env("RUST_LOG", "warn"),
                    &dir.join(&log),
                )?);
                into.push(procs.len() - 1);
                server.logs.push(dir.join(log));
            }
        }
        servers.push(server);
        procs.push(uas(&args.sipp, ports.uas_sipd, &dir.join("uas-sipd.log"))?);
    }
    if want_kamailio {
        let mut server = Server::new("kamailio", &ports.kamailio, &ports.kamailio);
        for node in 0..args.nodes as usize {
            let suffix = node_suffix(node);
            let cfg = dir.join(format!("kamailio{suffix}.cfg"));
            std::fs::write(
                &cfg,
                kamailio_config(
                    ports.kamailio[node],
                    ports.uas_kamailio,
                    &match &postgres {
                        Some(pg) => KamailioDb::Postgres(pg.url("kamailio")),
                        None => KamailioDb::Sqlite(db_path.clone()),
                    },
                    args.kamailio_children,
                )?,
            )?;
            let check = Command::new(&args.kamailio)
                .arg("-c")
                .arg("-f")
                .arg(&cfg)
                .output()?;
            if !check.status.success() {
                bail!(
                    "kamailio rejects its configuration:\n{}",
                    String::from_utf8_lossy(&check.stderr)
                );
            }
            let log = dir.join(format!("kamailio{suffix}.log"));
            procs.push(Proc::spawn(
                "kamailio",
                Command::new(&args.kamailio)
                    .arg("-f")
                    .arg(&cfg)
                    .args(["-DD", "-E", "-m", "512", "-M", "16"]),
                &log,
            )?);
            // One Kamailio serves calls and registrations alike.
            server.calls.push(procs.len() - 1);
            server.registers.push(procs.len() - 1);
            server.logs.push(log);
        }
        servers.push(server);
        procs.push(uas(
            &args.sipp,
            ports.uas_kamailio,
            &dir.join("uas-kamailio.log"),
        )?);
    }
    std::thread::sleep(Duration::from_millis(1500));
    for server in &servers {
        let mut all: Vec<usize> = server.calls.clone();
        all.extend(
            server
                .registers
                .iter()
                .filter(|i| !server.calls.contains(i)),
        );
        for (idx, log) in all.into_iter().zip(&server.logs) {
            procs[idx].check_alive(log)?;
        }
    }
    if want_sipd && let Some(pg) = &postgres {
        // The callee, as a REGISTER would have left it; sipd created its table at start, in its
        // domain (the listen address: the bench sets none).
        pg.psql(
            SIPD_CALLS_DB,
            &crate::pg::location_row(
                CALLEE,
                Some("127.0.0.1"),
                Some(&format!("127.0.0.1:{}", ports.uas_sipd)),
                &format!("sip:{CALLEE}@127.0.0.1:{}", ports.uas_sipd),
            ),
        )?;
    }

    let load_before = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let started = Instant::now();
    let mut results = json!({
        "machine": {
            "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
            "loadavg_before": load_before.trim(),
        },
        "secs_per_step": args.secs,
        "threshold": THRESHOLD,
        "location": args.location.name(),
        "nodes": args.nodes,
    });
    let of = |idx: &[usize]| -> Vec<&Proc> { idx.iter().map(|&i| &procs[i]).collect() };

    // Calls, alternating servers step by step.
    let calls = ramp(&args, &args.rates, servers.len(), "calls", |i, rate| {
        let server = &servers[i];
        let sipp_args = vec!["-sn".to_owned(), "uac".to_owned()];
        run_step(
            &args,
            &dir,
            server.name,
            &of(&server.calls),
            db_pid,
            &server.calls_ports,
            &ports.uac,
            rate,
            sipp_args,
        )
    })?;
    results["calls"] = calls.iter().map(|s| s.json(args.secs)).collect();

    // Registrations with digest auth.
    let mut regs: Vec<Step> = Vec::new();
    if !args.no_register {
        regs = ramp(
            &args,
            &args.register_rates,
            servers.len(),
            "registers",
            |i, rate| {
                let server = &servers[i];
                let sipp_args: Vec<String> = [
                    "-sf",
                    &dir.join("register_auth.xml").display().to_string(),
                    "-s",
                    USER,
                    "-au",
                    USER,
                    "-ap",
                    PASSWORD,
                ]
                .iter()
                .map(|s| s.to_string())
                .collect();
                run_step(
                    &args,
                    &dir,
                    server.name,
                    &of(&server.registers),
                    db_pid,
                    &server.register_ports,
                    &ports.uac,
                    rate,
                    sipp_args,
                )
            },
        )?;
        results["registers"] = regs.iter().map(|s| s.json(args.secs)).collect();
    }

    // The highest passing step's rate and CPU per call.
    let best = |steps: &[Step], name: &str| -> (Value, Value) {
        steps
            .iter()
            .filter(|s| s.server == name && s.passed(args.secs))
            .max_by_key(|s| s.rate)
            .map_or((Value::Null, Value::Null), |s| {
                (json!(s.rate), round3(s.cpu_ms_per_call()))
            })
    };
    let mut summary = serde_json::Map::new();
    for Server { name, .. } in &servers {
        let (calls_per_s, calls_cpu) = best(&calls, name);
        let (registers_per_s, registers_cpu) = best(&regs, name);
        summary.insert(
            (*name).to_owned(),
            json!({
                "calls_per_s": calls_per_s,
                "calls_cpu_ms_per_call": calls_cpu,
                "registers_per_s": registers_per_s,
                "registers_cpu_ms_per_register": registers_cpu,
            }),
        );
    }
    results["summary"] = Value::Object(summary);
    results["loadavg_after"] = json!(
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );
    results["total_s"] = json!(started.elapsed().as_secs());
    drop(procs);
    if let Some(pg) = &postgres {
        // What each server left in PostgreSQL: the bench user's contact (saved by the REGISTER
        // steps) beside the provisioned callee, i.e. the location really went to the database.
        let count = |db: &str, user: &str| -> anyhow::Result<u64> {
            let n = pg.query(
                db,
                &format!(
                    "SELECT count(*) FROM location WHERE username = {};",
                    crate::pg::quote(user)
                ),
            )?;
            n.trim()
                .parse()
                .with_context(|| format!("a row count from psql, got {n:?}"))
        };
        if want_kamailio {
            results["kamailio_db"] = json!({
                "location_rows": { USER: count("kamailio", USER)?, CALLEE: count("kamailio", CALLEE)? },
            });
        }
        if want_sipd {
            // The nodes whose REGISTERs wrote the bench user's bindings (each stores its own
            // `node_id`): with --nodes N, every node's.
            let writers = pg.query(
                SIPD_REG_DB,
                &format!(
                    "SELECT string_agg(DISTINCT node_id, ',' ORDER BY node_id) FROM location \
                     WHERE username = {};",
                    crate::pg::quote(USER)
                ),
            )?;
            let writers: Vec<&str> = writers
                .trim()
                .split(',')
                .filter(|w| !w.is_empty())
                .collect();
            results["sipd_db"] = json!({
                "location_rows": { USER: count(SIPD_REG_DB, USER)?, CALLEE: count(SIPD_CALLS_DB, CALLEE)? },
                "registering_nodes": writers,
            });
        }
    }
    drop(postgres);
    if args.keep {
        results["workdir"] = json!(dir.display().to_string());
    } else {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(results)
}

/// `v` rounded to 3 decimals; null when it is not a number (no call succeeded).
fn round3(v: f64) -> Value {
    if v.is_finite() {
        json!((v * 1e3).round() / 1e3)
    } else {
        Value::Null
    }
}

/// Runs `step(server, rate)` for each server at each of `rates` in turn, until every server has
/// failed `max_failures` rates in a row; a server that has is not stepped again.
fn ramp(
    args: &SipdBenchArgs,
    rates: &[u32],
    servers: usize,
    what: &str,
    mut step: impl FnMut(usize, u32) -> anyhow::Result<Step>,
) -> anyhow::Result<Vec<Step>> {
    let mut steps = Vec::new();
    let mut fails = vec![0u32; servers];
    let alive = |fails: u32| fails < args.max_failures.max(1);
    for &rate in rates {
        for (i, fails) in fails.iter_mut().enumerate() {
            if !alive(*fails) {
                continue;
            }
            let s = step(i, rate)?;
            progress(args, what, &s);
            *fails = if s.passed(args.secs) { 0 } else { *fails + 1 };
            steps.push(s);
        }
        if !fails.iter().any(|f| alive(*f)) {
            break;
        }
    }
    Ok(steps)
}

fn progress(args: &SipdBenchArgs, what: &str, s: &Step) {
    let line = format!(
        "{what:<9} {:<9} rate {:>5}/s: {}/{} ok ({:.2} %), {:.1} s, {} retransmissions, server CPU {:.1} s ({:.2} ms each{}) -> {} {}",
        s.server,
        s.rate,
        s.ok,
        s.planned,
        s.success() * 100.0,
        s.elapsed_s,
        s.retransmissions,
        s.server_cpu_s,
        s.cpu_ms_per_call(),
        s.db_cpu_s
            .map_or(String::new(), |db| format!(", database {db:.1} s")),
        if s.passed(args.secs) { "pass" } else { "FAIL" },
        if s.failures.is_empty() {
            String::new()
        } else {
            Value::Object(s.failures.clone()).to_string()
        }
    );
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// One step: `rate` split evenly over one sipp client per node (`ports[i]`, from `uac_ports[i]`),
/// all at once; the step's counts are their sums, its elapsed time the longest, its CPU that of
/// every node's process (and the database's).
#[allow(clippy::too_many_arguments)]
fn run_step(
    args: &SipdBenchArgs,
    dir: &Path,
    server: &str,
    nodes: &[&Proc],
    db_pid: Option<u32>,
    ports: &[u16],
    uac_ports: &[u16],
    rate: u32,
    scenario: Vec<String>,
) -> anyhow::Result<Step> {
    let n = nodes.len() as u32;
    let share = |i: u32| rate / n + u32::from(i < rate % n);
    let planned = u64::from(rate) * u64::from(args.secs);
    let db_cpu = || db_pid.map(tree_cpu_secs);
    let cpu = || nodes.iter().map(|p| p.cpu_secs()).sum::<f64>();
    let cpu0 = cpu();
    let db0 = db_cpu();
    let t0 = Instant::now();
    let mut clients = Vec::new();
    for (i, (&port, &uac_port)) in (0..n).zip(ports.iter().zip(uac_ports)) {
        let rate = share(i);
        if rate == 0 {
            continue;
        }
        let stf = dir.join(format!("uac-{server}-{rate}-{}-{i}.csv", scenario.len()));
        let _ = std::fs::remove_file(&stf);
        let mut sipp_args = scenario.clone();
        sipp_args.extend([
            format!("127.0.0.1:{port}"),
            "-i".into(),
            "127.0.0.1".into(),
            "-p".into(),
            uac_port.to_string(),
            "-r".into(),
            rate.to_string(),
            "-m".into(),
            (u64::from(rate) * u64::from(args.secs)).to_string(),
            "-l".into(),
            (rate * 4).to_string(),
            "-d".into(),
            "0".into(),
            "-nostdin".into(),
            "-timeout".into(),
            format!("{}s", args.secs * 3 + 20),
            "-trace_stat".into(),
            "-stf".into(),
            stf.display().to_string(),
            // What failed calls received, for `--keep`: the unexpected message, whole.
            "-trace_err".into(),
            "-error_file".into(),
            stf.with_extension("errors.log").display().to_string(),
        ]);
        let child = Command::new(&args.sipp)
            .args(&sipp_args)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("running sipp")?;
        clients.push((child, stf, u64::from(rate) * u64::from(args.secs)));
    }
    let (mut ok, mut failed, mut retransmissions, mut elapsed_s) = (0, 0, 0, 0f64);
    let mut failures = serde_json::Map::new();
    for (child, stf, planned_here) in clients {
        let out = child.wait_with_output().context("running sipp")?;
        let wall = t0.elapsed().as_secs_f64();
        let (ok_here, failed_here, retrans, elapsed, fails) =
            parse_stat(&stf).unwrap_or((0, planned_here, 0, wall, serde_json::Map::new()));
        if ok_here == 0 {
            let _ = writeln!(
                std::io::stderr(),
                "sipp ({server}, {rate}/s) completed no call: {}",
                String::from_utf8_lossy(&out.stderr)
                    .lines()
                    .take(5)
                    .collect::<Vec<_>>()
                    .join(" | ")
            );
        }
        ok += ok_here;
        failed += failed_here;
        retransmissions += retrans;
        elapsed_s = elapsed_s.max(elapsed);
        for (k, v) in fails {
            let sum =
                failures.get(&k).and_then(Value::as_u64).unwrap_or(0) + v.as_u64().unwrap_or(0);
            failures.insert(k, json!(sum));
        }
    }
    let db_cpu_s = db_cpu().zip(db0).map(|(after, before)| after - before);
    let server_cpu_s = cpu() - cpu0 + db_cpu_s.unwrap_or(0.0);
    // Let the last transactions' timers run out before the next step.
    std::thread::sleep(Duration::from_millis(500));
    Ok(Step {
        server: server.to_owned(),
        rate,
        planned,
        ok,
        failed,
        retransmissions,
        elapsed_s,
        server_cpu_s,
        db_cpu_s,
        failures,
    })
}

/// (successful, failed, retransmissions, elapsed seconds, non-zero failure counters).
type SippStat = (u64, u64, u64, f64, serde_json::Map<String, Value>);

/// The last row of sipp's `-trace_stat` CSV.
fn parse_stat(path: &Path) -> Option<SippStat> {
    let text = std::fs::read_to_string(path).ok()?;
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let head: Vec<&str> = lines.next()?.split(';').collect();
    let last: Vec<&str> = lines.next_back()?.split(';').collect();
    let col = |n: &str| -> Option<&str> {
        head.iter()
            .position(|h| *h == n)
            .and_then(|i| last.get(i).copied())
    };
    let num = |n: &str| col(n).and_then(|v| v.trim().parse::<u64>().ok());
    // ElapsedTime(C) is HH:MM:SS:uuuuuu (or with a millisecond field).
    let elapsed = col("ElapsedTime(C)").and_then(|v| {
        let p: Vec<f64> = v.split(':').filter_map(|x| x.trim().parse().ok()).collect();
        match p.as_slice() {
            [h, m, s, frac] => {
                let digits = v.rsplit(':').next().map_or(6, |d| d.trim().len()) as i32;
                Some(h * 3600.0 + m * 60.0 + s + frac / 10f64.powi(digits))
            }
            [h, m, s] => Some(h * 3600.0 + m * 60.0 + s),
            _ => None,
        }
    })?;
    let failures = head
        .iter()
        .zip(&last)
        .filter(|(h, _)| h.starts_with("Failed") && h.ends_with("(C)") && **h != "FailedCall(C)")
        .filter_map(|(h, v)| {
            let n = v.trim().parse::<u64>().ok().filter(|n| *n > 0)?;
            Some((h.trim_end_matches("(C)").to_owned(), json!(n)))
        })
        .collect();
    Some((
        num("SuccessfulCall(C)")?,
        num("FailedCall(C)")?,
        num("Retransmissions(C)").unwrap_or(0),
        elapsed,
        failures,
    ))
}

fn uas(sipp: &Path, port: u16, log: &Path) -> anyhow::Result<Proc> {
    Proc::spawn(
        "sipp uas",
        Command::new(sipp).args([
            "-sn",
            "uas",
            "-i",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-nostdin",
        ]),
        log,
    )
}

fn which(bin: &Path) -> anyhow::Result<()> {
    let found = if bin.components().count() > 1 {
        bin.exists()
    } else {
        std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).any(|d| d.join(bin).is_file()))
            .unwrap_or(false)
    };
    if found {
        Ok(())
    } else {
        bail!("{} not found", bin.display())
    }
}

/// A subscriber table in Kamailio's schema (sipd's `add-user` = `kamctl add`), plus Kamailio's
/// `version` table so `auth_db` accepts it.
fn make_subscriber_db(path: &Path) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let url = format!("sqlite://{}", path.display());
    rt.block_on(async {
        let db = chaincall_sipd::db::Db::connect(&url).await?;
        db.create_schema().await?;
        db.add_subscriber(USER, KAMAILIO_DOMAIN, PASSWORD).await?;
        db.create_kamailio_version().await?;
        Ok::<(), anyhow::Error>(())
    })
}

/// sipd's configuration for the bench: `static_route` sends every INVITE to sipp's uas;
/// `location`, a PostgreSQL URL, keeps the location there instead of in memory, under the node's
/// `node_id`.
fn sipd_config(
    port: u16,
    auth: &str,
    db: Option<&Path>,
    static_route: Option<u16>,
    location: Option<&str>,
    node_id: &str,
) -> String {
    let mut s = format!("listen = [\"udp:127.0.0.1:{port}\"]\n");
    if let Some(r) = static_route {
        s += &format!("static_route = \"127.0.0.1:{r}\"\n");
    }
    s += &format!("[auth]\nmode = \"{auth}\"\n");
    if let Some(db) = db {
        s += &format!(
            "database = \"sqlite://{}\"\ncreate_schema = false\n",
            db.display()
        );
    }
    // sipp 3.6 answers MD5 only; INVITEs are not challenged (Kamailio's config does not either).
    s += "algorithms = [\"MD5\"]\ninvite = false\n";
    // Benchmarks measure the proxy, not the per-source limiter (all load comes from one address).
    s += "[limits]\nregister_rate = 0.0\ninvite_rate = 0.0\nmax_transactions = 1000000\n";
    if let Some(url) = location {
        s += &format!(
            "[location]\nbackend = \"postgres\"\ndatabase = \"{url}\"\nnode_id = \"{node_id}\"\n\
             cache_secs = 0\n"
        );
    }
    s
}

/// The database behind Kamailio's `auth_db` (and, for PostgreSQL, its location table).
enum KamailioDb {
    /// The SQLite subscriber file sipd also reads; usrloc in memory.
    Sqlite(PathBuf),
    /// A PostgreSQL database URL holding Kamailio's schema; usrloc `db_mode=3` on it.
    Postgres(String),
}

fn kamailio_config(port: u16, uas: u16, db: &KamailioDb, children: u32) -> anyhow::Result<String> {
    let mpath = [
        "/usr/lib/x86_64-linux-gnu/kamailio/modules",
        "/usr/lib/kamailio/modules",
    ]
    .into_iter()
    .find(|p| Path::new(p).join("tm.so").exists())
    .context("Kamailio modules (tm.so) not found")?;
    let has = |module: &str| Path::new(mpath).join(module).exists();
    // (database module, its URL, usrloc's db_mode and, for db_mode 3, usrloc's db_url line)
    let store = match db {
        KamailioDb::Sqlite(path) if has("db_sqlite.so") => {
            Some(("db_sqlite.so", format!("sqlite://{}", path.display()), 0))
        }
        KamailioDb::Sqlite(_) => None,
        KamailioDb::Postgres(url) => {
            if !has("db_postgres.so") {
                bail!(
                    "Kamailio's db_postgres.so (Debian kamailio-postgres-modules) is required for --location postgres"
                );
            }
            Some(("db_postgres.so", url.clone(), 3))
        }
    };
    let auth_modules = match &store {
        Some((module, url, db_mode)) => {
            let mut m = format!(
                "loadmodule \"{module}\"\nloadmodule \"auth.so\"\nloadmodule \"auth_db.so\"\n\
                 loadmodule \"usrloc.so\"\nloadmodule \"registrar.so\"\n\
                 modparam(\"auth_db\", \"db_url\", \"{url}\")\n\
                 modparam(\"auth_db\", \"calculate_ha1\", 0)\n\
                 modparam(\"auth_db\", \"password_column\", \"ha1\")\n\
                 modparam(\"auth_db\", \"use_domain\", 1)\n\
                 modparam(\"usrloc\", \"db_mode\", {db_mode})\n"
            );
            if *db_mode != 0 {
                m += &format!("modparam(\"usrloc\", \"db_url\", \"{url}\")\n");
            }
            m
        }
        None => String::new(),
    };
    let register_route = if store.is_some() {
        "  if (is_method(\"REGISTER\")) {\n\
             if (!auth_check(\"$fd\", \"subscriber\", \"1\")) { auth_challenge(\"$fd\", \"1\"); exit; }\n\
             consume_credentials();\n\
             if (!save(\"location\")) { sl_reply_error(); }\n\
             exit;\n\
           }\n"
    } else {
        ""
    };
    // With the location in the database, a new call finds its callee there (one location read per
    // INVITE, as for a registered phone); in memory it goes straight to the uas, as before.
    let target = if matches!(db, KamailioDb::Postgres(_)) {
        "  if (is_method(\"INVITE\") && !has_totag()) {\n\
             if (!lookup(\"location\")) { sl_send_reply(\"404\", \"Not Found\"); exit; }\n\
           } else {\n\
             $du = \"sip:127.0.0.1:{uas}\";\n\
           }\n"
        .replace("{uas}", &uas.to_string())
    } else {
        format!("  $du = \"sip:127.0.0.1:{uas}\";\n")
    };
    Ok(format!(
        r#"#!KAMAILIO
debug=0
log_stderror=yes
fork=yes
children={children}
auto_aliases=no
listen=udp:127.0.0.1:{port}
mpath="{mpath}/"
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "maxfwd.so"
loadmodule "siputils.so"
loadmodule "pv.so"
loadmodule "textops.so"
{auth_modules}
request_route {{
  if (!mf_process_maxfwd_header("10")) {{ sl_send_reply("483", "Too Many Hops"); exit; }}
{register_route}
  if (has_totag()) {{
    if (loose_route()) {{ t_relay(); exit; }}
    if (is_method("ACK") && t_check_trans()) {{ t_relay(); exit; }}
    # sipp's built-in uac sends ACK and BYE to the proxy's own address without a Route header:
    # like sipd, route them as requests for an unknown target (below).
  }}
  if (is_method("CANCEL")) {{ if (t_check_trans()) {{ t_relay(); }} exit; }}
  t_check_trans();
  if (is_method("INVITE") && !has_totag()) {{ record_route(); }}
{target}  if (!t_relay()) {{ sl_reply_error(); }}
}}
"#
    ))
}
