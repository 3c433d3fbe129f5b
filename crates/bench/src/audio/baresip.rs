//! The reference side of `bench audio`: baresip 1.0 calls baresip, Opus over SDES-SRTP, on two
//! loopback addresses of the bench's namespace (so the impairment hop takes their media).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};

use super::signal::{Pcm, read_wav, write_wav};

/// Seconds of silence after what a baresip sends: its `aufile` source ending would end the call.
pub(super) const TAIL_SECS: u64 = 8;

/// A baresip process, killed if still running when dropped (an error path).
struct Running {
    child: Child,
    dir: PathBuf,
}

impl Running {
    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("log.txt")).unwrap_or_default()
    }

    /// Waits up to `limit` for baresip to quit on its own (its `-t` timer hangs up first, so the
    /// callee's dump is closed properly).
    fn wait(&mut self, limit: Duration) -> Result<()> {
        let end = Instant::now() + limit;
        while Instant::now() < end {
            if self.child.try_wait()?.is_some() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!("baresip did not quit in time:\n{}", self.log())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts baresip as `user` at `ip` (SIP on 5060, RTP on `rtp_ports`), sending `source`, dumping
/// decoded audio into its folder, quitting after `quit_after`; `extra` goes on its command line.
fn start(
    baresip: &Path,
    dir: &Path,
    (user, ip, rtp_ports): (&str, &str, &str),
    source: &Path,
    quit_after: Duration,
    extra: &[&str],
) -> Result<Running> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(
        dir.join("config"),
        format!(
            "poll_method\t\tepoll\nsip_listen\t\t{ip}:5060\nrtp_ports\t\t{rtp_ports}\n\
             audio_player\t\taufile,{null}\naudio_source\t\taufile,{source}\n\
             audio_alert\t\taufile,{null}\nsnd_path\t\t{dir}\n\
             module_path\t\t/usr/lib/baresip/modules\nmodule\t\t\topus.so\n\
             module\t\t\taufile.so\nmodule\t\t\tsndfile.so\nmodule\t\t\tsrtp.so\n\
             module_app\t\taccount.so\nmodule_app\t\tmenu.so\n",
            null = dir.join("unused.wav").display(),
            source = source.display(),
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
    let child = Command::new(baresip)
        .args(["-n", ip, "-f"])
        .arg(dir)
        .args(["-t", &quit_after.as_secs().to_string()])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("starting {}", baresip.display()))?;
    let running = Running {
        child,
        dir: dir.to_path_buf(),
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

/// One call: 127.0.0.2 dials 127.0.0.3, sends `speech` (48 kHz stereo WAV) for about `play`, and
/// hangs up; returns what the callee's decoder produced.
pub(super) fn call(baresip: &Path, dir: &Path, speech: &Path, play: Duration) -> Result<Pcm> {
    std::fs::create_dir_all(dir)?;
    let secs = play.as_secs() + 2;
    // The callee says nothing, for longer than the call lasts (the end of its file would end it).
    let silence = dir.join("silence.wav");
    let len = (secs + TAIL_SECS) as usize * 48_000;
    write_wav(&silence, 48_000, 2, &vec![0; len])?;
    let mut callee = start(
        baresip,
        &dir.join("callee"),
        ("callee", "127.0.0.3", "40000-40999"),
        &silence,
        Duration::from_secs(secs + 3),
        &[],
    )?;
    let mut caller = start(
        baresip,
        &dir.join("caller"),
        ("caller", "127.0.0.2", "41000-41999"),
        speech,
        Duration::from_secs(secs),
        &["-e", "/dial sip:callee@127.0.0.3"],
    )?;
    caller.wait(Duration::from_secs(secs + 20))?;
    callee.wait(Duration::from_secs(20))?;
    let log = callee.log();
    if !log.contains("Call established") || !log.contains("opus") {
        bail!("baresip's call did not come up with Opus:\n{log}");
    }
    let dump = std::fs::read_dir(&callee.dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.to_string_lossy().ends_with("-dec.wav"))
        .ok_or_else(|| anyhow!("the callee's sndfile wrote no -dec.wav dump:\n{log}"))?;
    read_wav(&dump)
}
