//! A throwaway PostgreSQL for `bench sipd --location postgres`: Debian's server binaries
//! (`/usr/lib/postgresql/<version>/bin`), a cluster `initdb`-ed into a temporary folder with
//! `trust` authentication, listening on its own port on 127.0.0.1 only, stopped (fast shutdown)
//! and deleted on drop. As root it runs as the `postgres` user, which PostgreSQL requires.
//!
//! The bench is not a test, so this is its own small starter rather than the test kit's.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, bail};

/// Where Debian installs each PostgreSQL major version's server binaries.
const PG_LIB: &str = "/usr/lib/postgresql";

/// A running throwaway cluster.
pub(crate) struct Postgres {
    bin: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
    as_postgres: bool,
}

impl Postgres {
    /// initdb, then `pg_ctl start -w` (which returns once the server accepts connections).
    pub(crate) fn start() -> anyhow::Result<Postgres> {
        let bin = server_bin_dir()?;
        let dir = tempfile::Builder::new().prefix("bench-pg.").tempdir()?;
        let as_postgres = is_root();
        if as_postgres {
            run(
                Command::new("chown").arg("postgres:").arg(dir.path()),
                "chown of the cluster folder to postgres",
            )?;
        }
        let port = free_tcp_port()?;
        let mut pg = Postgres {
            bin,
            dir,
            port,
            as_postgres,
        };
        let data = pg.data();
        run(
            pg.server_tool("initdb")
                .args(["-A", "trust", "-U", "postgres", "--no-sync", "-D"])
                .arg(&data),
            "initdb",
        )?;
        // -k: the Unix socket in our folder, not /var/run/postgresql (the system cluster's).
        let options = format!("-h 127.0.0.1 -p {port} -k {}", pg.dir.path().display());
        let log = pg.dir.path().join("postgres.log");
        let started = pg
            .server_tool("pg_ctl")
            .args(["-w", "-t", "60", "-D"])
            .arg(&data)
            .arg("-l")
            .arg(&log)
            .args(["-o", &options, "start"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .context("running pg_ctl start")?;
        if !started.status.success() {
            let tail = std::fs::read_to_string(&log).unwrap_or_default();
            // Nothing to stop; keep drop from trying.
            pg.port = 0;
            bail!(
                "PostgreSQL did not start on 127.0.0.1:{port}: {}\n{tail}",
                String::from_utf8_lossy(&started.stderr).trim()
            );
        }
        Ok(pg)
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// A server tool (`initdb`, `pg_ctl`), run as `postgres` when we are root.
    fn server_tool(&self, name: &str) -> Command {
        let program = self.bin.join(name);
        if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(program);
            c
        } else {
            Command::new(program)
        }
    }

    /// The connection URL of database `db` (the superuser, no password: `trust` on loopback).
    pub(crate) fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// Runs `sql` in database `db` with psql, stopping at the first error. The SQL goes through
    /// stdin, so nothing in it (a password hash) shows on a command line.
    pub(crate) fn psql(&self, db: &str, sql: &str) -> anyhow::Result<()> {
        let mut child = Command::new(self.bin.join("psql"))
            .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1"])
            .args(["-p", &self.port.to_string(), "-U", "postgres", "-d", db])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("running psql")?;
        child
            .stdin
            .take()
            .context("psql's stdin")?
            .write_all(sql.as_bytes())?;
        let out = child.wait_with_output()?;
        if !out.status.success() {
            bail!(
                "psql on {db} failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    }

    /// Runs one query in database `db` and returns its unaligned, header-less output
    /// (`psql -tA`): a single value is its text.
    pub(crate) fn query(&self, db: &str, sql: &str) -> anyhow::Result<String> {
        let out = Command::new(self.bin.join("psql"))
            .args(["-X", "-q", "-t", "-A", "-h", "127.0.0.1"])
            .args([
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-d",
                db,
                "-c",
                sql,
            ])
            .stdin(Stdio::null())
            .output()
            .context("running psql")?;
        if !out.status.success() {
            bail!(
                "psql on {db} failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The postmaster's pid (first line of `postmaster.pid`), for CPU accounting: the server's
    /// backends are its children.
    pub(crate) fn pid(&self) -> Option<u32> {
        let text = std::fs::read_to_string(self.data().join("postmaster.pid")).ok()?;
        text.lines().next()?.trim().parse().ok()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if self.port == 0 {
            return;
        }
        // Fast shutdown: open sessions (Kamailio's) are disconnected, not waited for.
        let _ = self
            .server_tool("pg_ctl")
            .args(["-w", "-t", "30", "-m", "fast", "-D"])
            .arg(self.data())
            .arg("stop")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// The newest installed version's server binaries.
fn server_bin_dir() -> anyhow::Result<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir(PG_LIB)
        .with_context(|| format!("PostgreSQL (Debian postgresql) is required: no {PG_LIB}"))?
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((v, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin).with_context(|| {
        format!("PostgreSQL (Debian postgresql) is required: no initdb under {PG_LIB}/*/bin")
    })
}

fn run(cmd: &mut Command, what: &str) -> anyhow::Result<()> {
    let out = cmd
        .stdout(Stdio::null())
        .output()
        .with_context(|| format!("running {what}"))?;
    if !out.status.success() {
        bail!(
            "{what} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

fn is_root() -> bool {
    // No libc in this crate: ask `id -u`.
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// A TCP port free on 127.0.0.1 a moment ago.
fn free_tcp_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Kamailio's PostgreSQL schema files (Debian `kamailio-postgres-modules`).
pub(crate) const KAMAILIO_SQL: &str = "/usr/share/kamailio/postgres";

/// Creates database `kamailio` with the tables `kamdbctl create` would make for `auth_db` and
/// `usrloc` (standard, usrloc, auth_db), and `subscriber` rows for `users` in `realm`, each with
/// only the HA1 hashes Kamailio needs (`calculate_ha1 0`).
pub(crate) fn create_kamailio_db(
    pg: &Postgres,
    realm: &str,
    users: &[(&str, &str)],
) -> anyhow::Result<()> {
    pg.psql("postgres", "CREATE DATABASE kamailio;")?;
    for file in [
        "standard-create.sql",
        "usrloc-create.sql",
        "auth_db-create.sql",
    ] {
        let path = Path::new(KAMAILIO_SQL).join(file);
        let sql = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "{} (Debian kamailio-postgres-modules) is required",
                path.display()
            )
        })?;
        pg.psql("kamailio", &sql)
            .with_context(|| format!("loading {}", path.display()))?;
    }
    let mut sql = String::new();
    for (user, password) in users {
        // HA1 = MD5(user:realm:password), HA1b = MD5(user@realm:realm:password) (RFC 2617 §3.2.2.2,
        // Kamailio's auth_db columns), computed by PostgreSQL so the password stays on stdin.
        sql += &format!(
            "INSERT INTO subscriber (username, domain, password, ha1, ha1b) VALUES \
             ({u}, {r}, '', md5({u} || ':' || {r} || ':' || {p}), \
             md5({u} || '@' || {r} || ':' || {r} || ':' || {p}));\n",
            u = quote(user),
            r = quote(realm),
            p = quote(password),
        );
    }
    pg.psql("kamailio", &sql)
}

/// A `location` row (Kamailio's usrloc schema, which sipd's table extends) binding `user` to
/// `contact` until 2099, as a REGISTER would: how the bench provisions a callee that never
/// registers (sipp's uas). Kamailio (without `use_domain`) stores no `domain` and no `received`;
/// sipd stores its domain and the `host:port` the REGISTER came from, where it sends requests.
pub(crate) fn location_row(
    user: &str,
    domain: Option<&str>,
    received: Option<&str>,
    contact: &str,
) -> String {
    let or_null = |v: Option<&str>| v.map_or_else(|| "NULL".to_owned(), quote);
    format!(
        "INSERT INTO location (ruid, username, domain, received, contact, expires, callid, cseq, \
         last_modified, user_agent) VALUES ({ruid}, {u}, {d}, {r}, {c}, '2099-01-01 00:00:00', \
         {ruid}, 1, now(), 'bench');",
        ruid = quote(&format!("bench-{user}")),
        u = quote(user),
        d = or_null(domain),
        r = or_null(received),
        c = quote(contact),
    )
}

/// A SQL string literal.
pub(crate) fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}
