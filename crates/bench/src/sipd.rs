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
//! Each step records the proxy's CPU seconds (all its processes) from `/proc`.

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
    /// First of the UDP ports used (proxies, uas, uac: base .. base+7).
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
}

const THRESHOLD: f64 = 0.999;
const USER: &str = "bench";
const PASSWORD: &str = "b3nch-secret";
const REGISTER_XML: &str = include_str!("../../sipd/tests/scenarios/register_auth.xml");

/// A child process killed (and reaped) on drop.
struct Proc {
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
    fn spawn(name: &'static str, cmd: &mut Command, log: &Path) -> anyhow::Result<Proc> {
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
        let pid = self.child.id();
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
                if p == pid || ppid == Some(pid) {
                    let t = |i: usize| f.get(i).and_then(|s| s.parse::<u64>().ok()).unwrap_or(0);
                    ticks += t(11) + t(12);
                }
            }
        }
        // USER_HZ is 100 on Linux.
        ticks as f64 / 100.0
    }
}

struct Ports {
    sipd: u16,
    sipd_reg: u16,
    kamailio: u16,
    uas_sipd: u16,
    uas_kamailio: u16,
    uac: u16,
}

impl Ports {
    fn new(base: u16) -> Ports {
        Ports {
            sipd: base,
            sipd_reg: base + 1,
            kamailio: base + 2,
            uas_sipd: base + 3,
            uas_kamailio: base + 4,
            uac: base + 5,
        }
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
    server_cpu_s: f64,
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
            "failures": self.failures,
            "passed": self.passed(secs),
        })
    }
}

/// Runs the benchmark. sipd is started as `<running binary> sipd serve`, so this must be called
/// from the `chaincall` binary (`chaincall bench sipd`).
pub fn run(args: SipdBenchArgs) -> anyhow::Result<()> {
    which(&args.sipp).context("sipp (Debian sip-tester) is required")?;
    let want_kamailio = args.servers.iter().any(|s| s == "kamailio");
    let want_sipd = args.servers.iter().any(|s| s == "sipd");
    if want_kamailio {
        which(&args.kamailio).context("kamailio (Debian kamailio) is required")?;
    }
    let dir = std::env::temp_dir().join(format!(
        "bench-sipd.{}.{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    ));
    std::fs::create_dir_all(&dir)?;
    let ports = Ports::new(args.base_port);
    let me = std::env::current_exe().context("locating the chaincall binary")?;
    let db_path = dir.join("subscriber.db");
    make_subscriber_db(&db_path)?;
    std::fs::write(dir.join("register_auth.xml"), REGISTER_XML)?;

    let mut procs: Vec<Proc> = Vec::new();
    let mut servers: Vec<(&'static str, usize, u16, u16)> = Vec::new(); // name, proc index, port, reg port
    if want_sipd {
        let calls_cfg = dir.join("sipd-calls.toml");
        std::fs::write(
            &calls_cfg,
            sipd_config(ports.sipd, "none", None, Some(ports.uas_sipd)),
        )?;
        let reg_cfg = dir.join("sipd-register.toml");
        std::fs::write(
            &reg_cfg,
            sipd_config(ports.sipd_reg, "digest", Some(&db_path), None),
        )?;
        for (cfg, log) in [
            (&calls_cfg, "sipd-calls.log"),
            (&reg_cfg, "sipd-register.log"),
        ] {
            procs.push(Proc::spawn(
                "sipd",
                Command::new(&me)
                    .args(["sipd", "serve", "--config"])
                    .arg(cfg)
                    .env("RUST_LOG", "warn"),
                &dir.join(log),
            )?);
        }
        servers.push(("sipd", procs.len() - 2, ports.sipd, ports.sipd_reg));
        procs.push(uas(&args.sipp, ports.uas_sipd, &dir.join("uas-sipd.log"))?);
    }
    if want_kamailio {
        let cfg = dir.join("kamailio.cfg");
        std::fs::write(
            &cfg,
            kamailio_config(
                ports.kamailio,
                ports.uas_kamailio,
                &db_path,
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
        procs.push(Proc::spawn(
            "kamailio",
            Command::new(&args.kamailio)
                .arg("-f")
                .arg(&cfg)
                .args(["-DD", "-E", "-m", "512", "-M", "16"]),
            &dir.join("kamailio.log"),
        )?);
        servers.push(("kamailio", procs.len() - 1, ports.kamailio, ports.kamailio));
        procs.push(uas(
            &args.sipp,
            ports.uas_kamailio,
            &dir.join("uas-kamailio.log"),
        )?);
    }
    std::thread::sleep(Duration::from_millis(1500));
    for (name, idx, _, _) in &servers {
        let log = dir.join(if *name == "sipd" {
            "sipd-calls.log"
        } else {
            "kamailio.log"
        });
        procs[*idx].check_alive(&log)?;
    }
    if want_sipd {
        procs[servers[0].1 + 1].check_alive(&dir.join("sipd-register.log"))?;
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
    });

    // Calls, alternating servers step by step.
    let calls = ramp(&args, &args.rates, servers.len(), "calls", |i, rate| {
        let (name, idx, port, _) = servers[i];
        let sipp_args = vec!["-sn".to_owned(), "uac".to_owned()];
        run_step(
            &args,
            &dir,
            name,
            &procs[idx],
            port,
            ports.uac,
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
                let (name, idx, _, port) = servers[i];
                // sipd registers on its digest instance (the process after the calls one).
                let pidx = if name == "sipd" { idx + 1 } else { idx };
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
                    name,
                    &procs[pidx],
                    port,
                    ports.uac,
                    rate,
                    sipp_args,
                )
            },
        )?;
        results["registers"] = regs.iter().map(|s| s.json(args.secs)).collect();
    }

    let best = |steps: &[Step], name: &str| -> Value {
        steps
            .iter()
            .filter(|s| s.server == name && s.passed(args.secs))
            .map(|s| s.rate)
            .max()
            .map_or(Value::Null, |r| json!(r))
    };
    let mut summary = serde_json::Map::new();
    for (name, _, _, _) in &servers {
        summary.insert(
            (*name).to_owned(),
            json!({
                "calls_per_s": best(&calls, name),
                "registers_per_s": if args.no_register { Value::Null } else { best(&regs, name) },
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
    if args.keep {
        results["workdir"] = json!(dir.display().to_string());
    } else {
        let _ = std::fs::remove_dir_all(&dir);
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&results)?);
    } else {
        println!(
            "highest rate with >= {:.1} % success, {} s per step:",
            THRESHOLD * 100.0,
            args.secs
        );
        for (name, _, _, _) in &servers {
            let s = &results["summary"][*name];
            println!(
                "  {name:<9} calls/s {:>6}   REGISTER/s (digest) {:>6}",
                s["calls_per_s"], s["registers_per_s"]
            );
        }
    }
    Ok(())
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
        "{what:<9} {:<9} rate {:>5}/s: {}/{} ok ({:.2} %), {:.1} s, {} retransmissions, server CPU {:.1} s -> {} {}",
        s.server,
        s.rate,
        s.ok,
        s.planned,
        s.success() * 100.0,
        s.elapsed_s,
        s.retransmissions,
        s.server_cpu_s,
        if s.passed(args.secs) { "pass" } else { "FAIL" },
        if s.failures.is_empty() {
            String::new()
        } else {
            Value::Object(s.failures.clone()).to_string()
        }
    );
    let _ = writeln!(std::io::stderr(), "{line}");
}

#[allow(clippy::too_many_arguments)]
fn run_step(
    args: &SipdBenchArgs,
    dir: &Path,
    server: &str,
    proc_: &Proc,
    port: u16,
    uac_port: u16,
    rate: u32,
    mut sipp_args: Vec<String>,
) -> anyhow::Result<Step> {
    let planned = u64::from(rate) * u64::from(args.secs);
    let stf = dir.join(format!("uac-{server}-{rate}-{}.csv", sipp_args.len()));
    let _ = std::fs::remove_file(&stf);
    sipp_args.extend([
        format!("127.0.0.1:{port}"),
        "-i".into(),
        "127.0.0.1".into(),
        "-p".into(),
        uac_port.to_string(),
        "-r".into(),
        rate.to_string(),
        "-m".into(),
        planned.to_string(),
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
    ]);
    let cpu0 = proc_.cpu_secs();
    let t0 = Instant::now();
    let out = Command::new(&args.sipp)
        .args(&sipp_args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .context("running sipp")?;
    let wall = t0.elapsed().as_secs_f64();
    let server_cpu_s = proc_.cpu_secs() - cpu0;
    let (ok, failed, retransmissions, elapsed, failures) =
        parse_stat(&stf).unwrap_or((0, planned, 0, wall, serde_json::Map::new()));
    if ok == 0 {
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
    // Let the last transactions' timers run out before the next step.
    std::thread::sleep(Duration::from_millis(500));
    Ok(Step {
        server: server.to_owned(),
        rate,
        planned,
        ok,
        failed,
        retransmissions,
        elapsed_s: elapsed,
        server_cpu_s,
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
        db.add_subscriber(USER, "127.0.0.1", PASSWORD).await?;
        db.create_kamailio_version().await?;
        Ok::<(), anyhow::Error>(())
    })
}

fn sipd_config(port: u16, auth: &str, db: Option<&Path>, static_route: Option<u16>) -> String {
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
    s
}

fn kamailio_config(port: u16, uas: u16, db: &Path, children: u32) -> anyhow::Result<String> {
    let mpath = [
        "/usr/lib/x86_64-linux-gnu/kamailio/modules",
        "/usr/lib/kamailio/modules",
    ]
    .into_iter()
    .find(|p| Path::new(p).join("tm.so").exists())
    .context("Kamailio modules (tm.so) not found")?;
    let sqlite = Path::new(mpath).join("db_sqlite.so").exists();
    let auth_modules = if sqlite {
        format!(
            "loadmodule \"db_sqlite.so\"\nloadmodule \"auth.so\"\nloadmodule \"auth_db.so\"\n\
             loadmodule \"usrloc.so\"\nloadmodule \"registrar.so\"\n\
             modparam(\"auth_db\", \"db_url\", \"sqlite://{db}\")\n\
             modparam(\"auth_db\", \"calculate_ha1\", 0)\n\
             modparam(\"auth_db\", \"password_column\", \"ha1\")\n\
             modparam(\"auth_db\", \"use_domain\", 1)\n\
             modparam(\"usrloc\", \"db_mode\", 0)\n",
            db = db.display()
        )
    } else {
        String::new()
    };
    let register_route = if sqlite {
        "  if (is_method(\"REGISTER\")) {\n\
             if (!auth_check(\"$fd\", \"subscriber\", \"1\")) { auth_challenge(\"$fd\", \"1\"); exit; }\n\
             consume_credentials();\n\
             if (!save(\"location\")) { sl_reply_error(); }\n\
             exit;\n\
           }\n"
    } else {
        ""
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
  $du = "sip:127.0.0.1:{uas}";
  if (!t_relay()) {{ sl_reply_error(); }}
}}
"#
    ))
}
