//! The reference side of `bench audio`: baresip 1.0 calls baresip, Opus over SDES-SRTP, on two
//! loopback addresses of the bench's namespace (so the impairment hop takes their media).
//!
//! Their sound card is a JACK server on its dummy driver, which runs the audio graph on the
//! system clock: the caller's microphone and the callee's speaker are JACK ports, and
//! `scripts/jack_tap.py` plays the speech into the one and records the other from the same
//! sample on, so the speech's lag in that recording is baresip's mouth-to-ear delay, measured
//! on one clock. The callee's `sndfile` module also dumps its decoder's output (no clock: what
//! arrived, in arrival order), scored beside it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail, ensure};

use super::signal::{Pcm, read_wav, write_wav};
use crate::sipd::Proc;

/// JACK's period at 48 kHz: 128 samples (2.7 ms), so the graph's cycles add little to the delay.
const JACK_PERIOD: &str = "128";

/// Seconds of silence beyond the call in the callee's source file: its `aufile` source ending
/// would end the call.
pub(super) const TAIL_SECS: u64 = 8;

/// A child process (a baresip, the tap), killed if still running when dropped (an error path).
struct Running {
    child: Child,
    /// Its folder; a baresip logs into `log.txt` there.
    dir: PathBuf,
    /// What it is, for errors.
    what: &'static str,
}

impl Running {
    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("log.txt")).unwrap_or_default()
    }

    /// Waits up to `limit` for the process to quit on its own (a baresip's `-t` timer hangs up
    /// first, so the callee's dump is closed properly).
    fn wait(&mut self, limit: Duration) -> Result<()> {
        let end = Instant::now() + limit;
        while Instant::now() < end {
            if self.child.try_wait()?.is_some() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!("{} did not quit in time:\n{}", self.what, self.log())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The JACK server's name. One name for every run: JACK keeps at most 8 servers in its shared
/// registry and reclaims a dead server's entry only for a server of the same name, so a run
/// that died without stopping its server does not use up the registry.
const JACK_SERVER: &str = "chaincall-bench";

/// A JACK server on the dummy driver, at 48 kHz; stopped with SIGTERM when dropped (so it
/// leaves the registry).
pub(super) struct Jack {
    _server: Proc,
    name: String,
    log: PathBuf,
}

impl Jack {
    /// Starts `jackd` and waits until clients can connect (`jack_lsp` answers).
    pub(super) fn start(jackd: &Path, dir: &Path) -> Result<Jack> {
        let log = dir.join("jackd.log");
        let server = Proc::spawn(
            "jackd",
            Command::new(jackd)
                .args([
                    "-n",
                    JACK_SERVER,
                    "--no-realtime",
                    "-d",
                    "dummy",
                    "-r",
                    "48000",
                ])
                .args(["-p", JACK_PERIOD]),
            &log,
        )?;
        let jack = Jack {
            _server: server,
            name: JACK_SERVER.to_owned(),
            log,
        };
        let lsp = jackd.with_file_name("jack_lsp");
        let end = Instant::now() + Duration::from_secs(20);
        loop {
            let up = Command::new(&lsp)
                .args(["-s", &jack.name])
                .env("JACK_NO_START_SERVER", "1")
                .output()
                .with_context(|| format!("running {}", lsp.display()))?;
            if up.status.success() {
                return Ok(jack);
            }
            if Instant::now() > end {
                bail!(
                    "the JACK server did not come up:\n{}",
                    std::fs::read_to_string(&jack.log).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Points a client process at this server, never starting one of its own.
    fn serve(&self, cmd: &mut Command) {
        cmd.env("JACK_DEFAULT_SERVER", &self.name)
            .env("JACK_NO_START_SERVER", "1");
    }
}

/// The programs a baresip call needs.
pub(super) struct Programs<'a> {
    /// baresip itself.
    pub(super) baresip: &'a Path,
    /// The Python that runs `jack_tap.py` (with the `JACK-Client` package).
    pub(super) python: &'a Path,
    /// `scripts/jack_tap.py`.
    pub(super) tap: &'a Path,
}

/// Which end of the call a baresip is: its sound devices differ.
#[derive(Clone, Copy)]
enum End {
    /// Speaks into a JACK microphone; plays nothing.
    Caller,
    /// Plays into a JACK speaker and dumps its decoder's output; says `silence` (a WAV file).
    Callee,
}

/// Starts baresip as `user` at `ip` (SIP on 5060, RTP on `rtp_ports`) as the `end` of a call,
/// JACK client `user` of `jack`, quitting after `quit_after`; `extra` goes on its command line.
fn start(
    programs: &Programs<'_>,
    jack: &Jack,
    dir: &Path,
    (user, ip, rtp_ports): (&str, &str, &str),
    end: End,
    quit_after: Duration,
    extra: &[&str],
) -> Result<Running> {
    std::fs::create_dir_all(dir)?;
    let null = dir.join("unused.wav");
    let (source, player, src_fmt, play_fmt) = match end {
        End::Caller => (
            "jack,".to_owned(),
            format!("aufile,{}", null.display()),
            "float",
            "s16",
        ),
        End::Callee => (
            format!("aufile,{}", dir.join("silence.wav").display()),
            "jack,".to_owned(),
            "s16",
            "float",
        ),
    };
    std::fs::write(
        dir.join("config"),
        format!(
            "poll_method\t\tepoll\nsip_listen\t\t{ip}:5060\nrtp_ports\t\t{rtp_ports}\n\
             audio_player\t\t{player}\naudio_source\t\t{source}\n\
             ausrc_format\t\t{src_fmt}\nauplay_format\t\t{play_fmt}\n\
             audio_alert\t\taufile,{null}\nsnd_path\t\t{dir}\n\
             jack_connect_ports\tno\njack_client_name\t{user}\n\
             module_path\t\t/usr/lib/baresip/modules\nmodule\t\t\topus.so\n\
             module\t\t\taufile.so\nmodule\t\t\tjack.so\nmodule\t\t\tsndfile.so\n\
             module\t\t\tsrtp.so\nmodule_app\t\taccount.so\nmodule_app\t\tmenu.so\n",
            null = null.display(),
            dir = dir.display(),
        ),
    )?;
    std::fs::write(
        dir.join("accounts"),
        format!(
            "<sip:{user}@{ip}>;regint=0;mediaenc=srtp-mand;answermode=auto;\
             audio_codecs=opus/48000/2\n"
        ),
    )?;
    let log = std::fs::File::create(dir.join("log.txt"))?;
    let mut cmd = Command::new(programs.baresip);
    jack.serve(&mut cmd);
    let child = cmd
        .args(["-n", ip, "-f"])
        .arg(dir)
        .args(["-t", &quit_after.as_secs().to_string()])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("starting {}", programs.baresip.display()))?;
    let running = Running {
        child,
        dir: dir.to_path_buf(),
        what: "baresip",
    };
    let end = Instant::now() + Duration::from_secs(20);
    while !running.log().contains("baresip is ready") {
        if Instant::now() > end {
            bail!("baresip did not start:\n{}", running.log());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(running)
}

/// What the callee of one call heard.
pub(super) struct Heard {
    /// What its speaker played, from the moment the speech entered the caller's microphone on:
    /// the speech's lag in it is the mouth-to-ear delay.
    pub(super) speaker: Pcm,
    /// What its decoder produced (the `sndfile` dump), without a clock.
    pub(super) decoder: Pcm,
}

/// One call: 127.0.0.2 dials 127.0.0.3 and hangs up after about `play`; the tap speaks `speech`
/// (48 kHz mono WAV) into the caller's microphone and records the callee's speaker for `play`.
pub(super) fn call(
    programs: &Programs<'_>,
    jack: &Jack,
    dir: &Path,
    speech: &Path,
    play: Duration,
) -> Result<Heard> {
    std::fs::create_dir_all(dir)?;
    let secs = play.as_secs() + 2;
    // The callee says nothing, for longer than the call lasts (the end of its file would end it).
    let callee_dir = dir.join("callee");
    std::fs::create_dir_all(&callee_dir)?;
    let len = (secs + TAIL_SECS) as usize * 48_000;
    write_wav(&callee_dir.join("silence.wav"), 48_000, 2, &vec![0; len])?;
    let mut callee = start(
        programs,
        jack,
        &callee_dir,
        ("callee", "127.0.0.3", "40000-40999"),
        End::Callee,
        Duration::from_secs(secs + 3),
        &[],
    )?;
    let heard = dir.join("speaker.wav");
    let tap_log = dir.join("tap.log");
    let mut tap = Command::new(programs.python);
    jack.serve(&mut tap);
    let mut tap = Running {
        child: tap
            .arg(programs.tap)
            .arg(&jack.name)
            .args([speech, heard.as_path()])
            .arg(format!("{:.3}", play.as_secs_f64()))
            .args(["caller:input_1,caller:input_2", "callee:output_1"])
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&tap_log)?)
            .stderr(std::fs::File::create(dir.join("tap.err"))?)
            .spawn()
            .context("starting scripts/jack_tap.py")?,
        dir: dir.to_path_buf(),
        what: "the JACK tap",
    };
    let mut caller = start(
        programs,
        jack,
        &dir.join("caller"),
        ("caller", "127.0.0.2", "41000-41999"),
        End::Caller,
        Duration::from_secs(secs),
        &["-e", "/dial sip:callee@127.0.0.3"],
    )?;
    caller.wait(Duration::from_secs(secs + 20))?;
    callee.wait(Duration::from_secs(20))?;
    let log = callee.log();
    if !log.contains("Call established") || !log.contains("opus") {
        bail!("baresip's call did not come up with Opus:\n{log}");
    }
    let tapped = tap.wait(Duration::from_secs(30));
    let status = tap.child.wait()?;
    ensure!(
        tapped.is_ok() && status.success(),
        "the JACK tap failed: {}",
        std::fs::read_to_string(dir.join("tap.err")).unwrap_or_default()
    );
    let dump = std::fs::read_dir(&callee.dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.to_string_lossy().ends_with("-dec.wav"))
        .ok_or_else(|| anyhow!("the callee's sndfile wrote no -dec.wav dump:\n{log}"))?;
    Ok(Heard {
        speaker: read_wav(&heard)?,
        decoder: read_wav(&dump)?,
    })
}
