//! `bench sipd --location postgres`: Kamailio with usrloc `db_mode=3` and `auth_db` on a PostgreSQL
//! the bench starts itself. A short run (20 calls, 20 REGISTERs) must complete, report numbers and
//! leave the registrations in the database.

use clap::Parser;

use chaincall_bench::sipd::{SipdBenchArgs, measure};

/// The bench's arguments as `chaincall bench sipd …` parses them.
#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    args: SipdBenchArgs,
}

/// Whether Debian's PostgreSQL server (initdb) is installed, applying the skip-or-fail rule.
fn postgres_installed() -> Option<()> {
    let found = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .any(|v| v.path().join("bin/initdb").is_file());
    if found {
        Some(())
    } else {
        chaincall_testkit::missing(
            "PostgreSQL server (Debian postgresql: /usr/lib/postgresql/*/bin/initdb)",
        )
    }
}

fn parse(extra: &[&str]) -> SipdBenchArgs {
    let mut argv = vec!["bench"];
    argv.extend_from_slice(extra);
    Cli::try_parse_from(argv).expect("bench arguments").args
}

#[test]
fn kamailio_on_postgres_completes_and_reports_calls_registers_and_cpu() {
    let (Some(sipp), Some(kamailio), Some(())) = (
        chaincall_testkit::peer("sipp"),
        chaincall_testkit::peer("kamailio"),
        postgres_installed(),
    ) else {
        return;
    };
    let base_port = chaincall_testkit::free_udp_port()
        .min(u16::MAX - 8)
        .to_string();
    // One short step each: 20 calls at 20/s, then 20 REGISTERs at 20/s.
    let short = "--location postgres --servers kamailio --secs 1 --rates 20 --register-rates 20";
    let mut argv: Vec<&str> = short.split(' ').collect();
    argv.extend(["--max-failures", "1", "--base-port", &base_port]);
    argv.extend(["--sipp", sipp.to_str().expect("UTF-8 path")]);
    argv.extend(["--kamailio", kamailio.to_str().expect("UTF-8 path")]);
    let v = measure(parse(&argv)).expect("the postgres bench runs");
    assert_eq!(v["location"], "postgres", "{v}");
    for kind in ["calls", "registers"] {
        let steps = v[kind]
            .as_array()
            .unwrap_or_else(|| panic!("{kind} in {v}"));
        let step = steps
            .iter()
            .find(|s| s["server"] == "kamailio")
            .unwrap_or_else(|| panic!("no {kind} step of kamailio in {v}"));
        assert_eq!(step["planned"], 20, "{step}");
        // Calls found their callee through the location table and REGISTERs passed digest auth
        // against the subscriber table (whether the step passed 99.9 % depends on the machine's
        // load, not on the bench).
        assert!(step["ok"].as_u64().is_some_and(|ok| ok > 0), "{step}");
        // Kamailio's CPU includes PostgreSQL's, reported on its own as well.
        let cpu = step["server_cpu_s"].as_f64().expect("server_cpu_s");
        let db = step["db_cpu_s"].as_f64().expect("db_cpu_s with postgres");
        assert!(db >= 0.0 && cpu >= db, "{step}");
        assert!(step["cpu_ms_per_call"].as_f64().is_some(), "{step}");
    }
    // The REGISTERs went through to PostgreSQL: the bench user's contact is in `location`, beside
    // the provisioned callee. (At least once: with db_mode=3, two workers saving the same new
    // contact at the same moment can both insert it; Kamailio does not lock across processes.)
    assert!(
        v["kamailio_db"]["location_rows"]["bench"]
            .as_u64()
            .is_some_and(|n| n >= 1),
        "{v}"
    );
    assert_eq!(v["kamailio_db"]["location_rows"]["service"], 1, "{v}");
    let summary = &v["summary"]["kamailio"];
    assert!(summary.is_object(), "{v}");
    assert!(v["summary"].get("sipd").is_none(), "{v}");
}

/// An unknown `--location` is a usage error naming the accepted values.
#[test]
fn unknown_location_is_a_usage_error() {
    let err = Cli::try_parse_from(["bench", "--location", "redis"])
        .err()
        .expect("redis is no location");
    let msg = err.to_string();
    assert!(msg.contains("memory") && msg.contains("postgres"), "{msg}");
}
