//! `chaincall bench audio`: speech quality and delay of a real call under loss and jitter,
//! chaincall phone → chaincall phone beside baresip → baresip, through the same impairment in the
//! same run (issue 19, "Quality, measured side by side").
//!
//! - **Network**: a namespace of its own (a [`TestNet`] public host), whose loopback carries both
//!   calls; [`ImpairedLoopback`] drops, delays and reorders their media datagrams (this kernel has
//!   no netem). SIP and TLS are not impaired: the bench measures audio, not set-up.
//! - **Speech**: a few sentences from Debian's `espeak-ng`, resampled to 48 kHz, with silence
//!   around them, generated per run (nothing committed).
//! - **chaincall**: the demo's network ([`Network`]: keystore, wallet server, sipd over TLS-PSK,
//!   alice and bob onboarded), MIKEY-PKE, Opus; alice sends the speech, bob's call report holds
//!   what he heard: [`CallReport::playout`], what his jitter buffer played (decoded, concealed or
//!   recovered from FEC) at 48 kHz (the phone is wide-band), with the instant of its first
//!   frame, which puts it on one clock with alice's [`CallReport::source_started`].
//! - **baresip**: two baresip 1.0 processes on their own loopback addresses, SDES-SRTP, Opus only;
//!   one dials the other. Their sound card is a JACK server on its dummy driver: a tap
//!   (`scripts/jack_tap.py`) speaks into the caller's microphone port and records the callee's
//!   speaker port from the same sample on (one clock: the lag is the mouth-to-ear delay); the
//!   callee's `sndfile` module also dumps what its decoder produced.
//! - **Score**: each recording is aligned to the reference by cross-correlation, then scored by
//!   PESQ (ITU-T P.862, PyPI `pesq`, `scripts/pesq_mos.py`): wide-band at 16 kHz and
//!   narrow-band at 8 kHz. The main scores are of what the callee **played** (chaincall's
//!   jitter-buffer playout, baresip's speaker); the lag found, plus where that recording starts
//!   on the sender's clock, is the **mouth-to-ear delay**. The decoders' outputs without a clock
//!   (chaincall's [`CallReport::recorded`], baresip's `sndfile` dump) are scored beside them.
//!
//! A condition's numbers are reported whatever they are; only a broken run (a call that does not
//! come up, nothing received, PESQ failing) is an error.

mod baresip;
pub mod signal;

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail, ensure};
use chaincall_chain::EmbeddedChain;
use chaincall_devnet::{Network, NetworkOptions, operator_key};
use chaincall_media::jitter::JitterStats;
use chaincall_phone::CallReport;
use chaincall_phone::negotiation::KeyMode;
use chaincall_testkit::impair::{ImpairStats, ImpairedLoopback, Impairment};
use chaincall_testkit::netns::TestNet;
use clap::Args;
use serde_json::{Value, json};

use signal::{Pcm, aligned, lag, resample, write_wav};

/// What `espeak-ng` says: about eight seconds of ordinary English sentences.
const TEXT: &str = "The birch canoe slid on the smooth planks. Glue the sheet to the dark blue \
                    background. It is easy to tell the depth of a well. These days a chicken leg \
                    is a rare dish.";
/// The rate the reference is made at and baresip's Opus runs at.
const RATE: u32 = 48_000;
/// Silence before and after the speech, so PESQ sees where utterances start and end.
const PAD_MS: u32 = 500;
/// Recorded lags searched: a recording may start this much early (ms)…
const MAX_EARLY_MS: usize = 100;
/// …or this much late.
const MAX_LATE_MS: usize = 1500;
/// The phones' packet time, ms (Opus always runs at 20).
const PTIME_MS: u32 = 20;
/// The node whose loopback carries the calls.
const NODE: &str = "bench";
/// The loopback addresses whose UDP is impaired: the chaincall phones' media (127.0.0.1) and the
/// two baresips (127.0.0.2 calls 127.0.0.3).
const IMPAIRED: [Ipv4Addr; 3] = [
    Ipv4Addr::new(127, 0, 0, 1),
    Ipv4Addr::new(127, 0, 0, 2),
    Ipv4Addr::new(127, 0, 0, 3),
];
/// Impaired destination ports: the phones' ephemeral media ports (the namespace's ephemeral range
/// is set to 30000–39999) and baresip's RTP ports (40000–41999), not baresip's SIP port (5060).
const MEDIA_PORTS: std::ops::RangeInclusive<u16> = 30_000..=41_999;
/// Where the hop parks datagrams (50000–61999): no socket of the bench binds there.
const SHADOW_PORTS: u16 = 50_000;

/// Arguments of `chaincall bench audio`.
#[derive(Debug, Args)]
pub struct AudioBenchArgs {
    /// Network conditions, comma-separated: `clean`, or `loss<P>` (P % loss) and/or `jit<MS>`
    /// (delay MS ± MS, uniform), e.g. `loss3`, `loss10jit40`.
    #[arg(long, value_delimiter = ',', default_value = "clean,loss3,loss10jit40")]
    conditions: Vec<Condition>,
    /// Keep the speech, the recordings, what PESQ scored and baresip's logs in DIR (default: a
    /// temporary folder, removed afterwards).
    #[arg(long, value_name = "DIR")]
    keep: Option<PathBuf>,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

/// One network condition.
#[derive(Clone, Debug, PartialEq)]
pub struct Condition {
    /// Its name on the command line and in the report.
    pub name: String,
    /// What the hop does under it.
    pub impairment: Impairment,
}

impl std::str::FromStr for Condition {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, String> {
        let bad = || format!("condition {name:?}: use clean, loss<P>, jit<MS> or loss<P>jit<MS>");
        let mut impairment = Impairment::CLEAN;
        if name != "clean" {
            let (loss, jitter) = match name.split_once("jit") {
                Some((loss, jit)) => (loss, Some(jit)),
                None => (name, None),
            };
            if loss.is_empty() && jitter.is_none() {
                return Err(bad());
            }
            if !loss.is_empty() {
                let p: f64 = loss
                    .strip_prefix("loss")
                    .and_then(|p| p.parse().ok())
                    .filter(|p| (0.0..=100.0).contains(p))
                    .ok_or_else(bad)?;
                impairment.loss = p / 100.0;
            }
            if let Some(ms) = jitter {
                let ms: u64 = ms.parse().ok().filter(|ms| *ms <= 1000).ok_or_else(bad)?;
                impairment.delay = Duration::from_millis(ms);
                impairment.jitter = Duration::from_millis(ms);
            }
        }
        Ok(Condition {
            name: name.to_owned(),
            impairment,
        })
    }
}

/// One side's result under one condition.
#[derive(Clone, Debug, PartialEq)]
pub struct SideResult {
    /// PESQ MOS-LQO of what the callee played, wide-band (P.862.2, 16 kHz).
    pub mos_wb: f64,
    /// PESQ MOS-LQO of what the callee played, narrow-band (P.862.1 mapping, 8 kHz).
    pub mos_nb: f64,
    /// PESQ MOS-LQO (wide-band, narrow-band) of the callee's decoder output without a clock:
    /// every packet decoded in sequence order, lost ones concealed (chaincall's recording), or
    /// what arrived, in arrival order (baresip's dump).
    pub decoder_mos: (f64, f64),
    /// Mouth-to-ear delay, ms: from the moment a sample entered the caller's microphone (for
    /// chaincall's file source, the end of its frame's capture) to the moment the callee
    /// played it.
    pub mouth_to_ear_ms: f64,
    /// The share of this call's media datagrams the hop dropped (both directions).
    pub loss: f64,
    /// What the hop did during this call.
    pub hop: ImpairStats,
    /// The chaincall phone's jitter buffer over the call (what shaped the scored playout):
    /// late, concealed, FEC-recovered frames and its delay. None for baresip.
    pub jitter_buffer: Option<JitterStats>,
}

/// Both sides under one condition.
#[derive(Clone, Debug, PartialEq)]
pub struct ConditionResult {
    /// The condition.
    pub condition: Condition,
    /// chaincall phone → chaincall phone.
    pub chaincall: SideResult,
    /// baresip → baresip.
    pub baresip: SideResult,
}

/// Runs the bench.
pub fn run(args: AudioBenchArgs) -> Result<()> {
    ensure!(!args.conditions.is_empty(), "--conditions names none");
    let results = measure(&args.conditions, args.keep.as_deref())?;
    if args.json {
        println!("{}", to_json(&results));
        return Ok(());
    }
    println!(
        "{:<12} {:>22} {:>22} {:>16} {:>10}",
        "condition", "chaincall MOS wb/nb", "baresip MOS wb/nb", "m2e ms c/b", "loss c/b"
    );
    for r in &results {
        let (c, b) = (&r.chaincall, &r.baresip);
        println!(
            "{:<12} {:>14.2} / {:>5.2} {:>14.2} / {:>5.2} {:>8.1} / {:>5.1} {:>4.1}% / {:>3.1}%",
            r.condition.name,
            c.mos_wb,
            c.mos_nb,
            b.mos_wb,
            b.mos_nb,
            c.mouth_to_ear_ms,
            b.mouth_to_ear_ms,
            c.loss * 100.0,
            b.loss * 100.0
        );
    }
    Ok(())
}

/// The results as the bench's JSON object: per condition, both sides and their differences
/// (chaincall minus baresip).
pub fn to_json(results: &[ConditionResult]) -> Value {
    let side = |s: &SideResult| {
        json!({
            "mos_lqo_wb": s.mos_wb,
            "mos_lqo_nb": s.mos_nb,
            "decoder_mos_lqo_wb": s.decoder_mos.0,
            "decoder_mos_lqo_nb": s.decoder_mos.1,
            "mouth_to_ear_ms": s.mouth_to_ear_ms,
            "loss": s.loss,
            "datagrams": s.hop.seen,
            "dropped": s.hop.dropped,
            "reordered": s.hop.reordered,
            "jitter_buffer": s.jitter_buffer,
        })
    };
    let conditions: Vec<Value> = results
        .iter()
        .map(|r| {
            let (c, b) = (&r.chaincall, &r.baresip);
            json!({
                "condition": r.condition.name,
                "net_loss": r.condition.impairment.loss,
                "net_delay_ms": r.condition.impairment.delay.as_secs_f64() * 1e3,
                "net_jitter_ms": r.condition.impairment.jitter.as_secs_f64() * 1e3,
                "chaincall": side(c),
                "baresip": side(b),
                "mos_wb_difference": c.mos_wb - b.mos_wb,
                "mos_nb_difference": c.mos_nb - b.mos_nb,
                "mouth_to_ear_difference_ms": c.mouth_to_ear_ms - b.mouth_to_ear_ms,
            })
        })
        .collect();
    json!({
        "bench": "audio",
        "codec": "opus",
        "chaincall_key_mode": KeyMode::MikeyPke.name(),
        "baresip_key_mode": "sdes",
        "conditions": conditions,
    })
}

/// The tools the bench runs, found before anything starts.
struct Tools {
    espeak: PathBuf,
    baresip: PathBuf,
    jackd: PathBuf,
    python: PathBuf,
    script: PathBuf,
    tap: PathBuf,
}

impl Tools {
    fn find() -> Result<Tools> {
        let find = |name: &str| {
            chaincall_testkit::find_executable(name).ok_or_else(|| {
                anyhow!("{name} not found (Debian package; scripts/test.sh installs it)")
            })
        };
        let python = std::env::var_os("CHAINCALL_PYTHON")
            .map(PathBuf::from)
            .unwrap_or_else(|| chaincall_testkit::workspace_root().join(".venv/bin/python3"));
        let scripts = chaincall_testkit::workspace_root().join("scripts");
        let imports = Command::new(&python)
            .args(["-c", "import pesq, numpy, jack"])
            .output()
            .with_context(|| format!("running {}", python.display()))?;
        ensure!(
            imports.status.success(),
            "{} cannot import pesq, numpy and jack (tools/requirements.txt; set CHAINCALL_PYTHON)",
            python.display()
        );
        Ok(Tools {
            espeak: find("espeak-ng")?,
            baresip: find("baresip")?,
            jackd: find("jackd")?,
            python,
            script: scripts.join("pesq_mos.py"),
            tap: scripts.join("jack_tap.py"),
        })
    }
}

/// What one call left to score.
struct Heard {
    /// What the callee played.
    played: Pcm,
    /// Where `played`'s first sample was played, in ms after the speech's first sample entered
    /// the caller (one clock for both).
    starts_ms: f64,
    /// The callee's decoder output, without a clock.
    decoder: Pcm,
    hop: ImpairStats,
    jitter_buffer: Option<JitterStats>,
}

/// Runs every condition: both calls under each, then scores them. The files go to `keep` (kept)
/// or a temporary folder.
pub fn measure(conditions: &[Condition], keep: Option<&Path>) -> Result<Vec<ConditionResult>> {
    let tools = Tools::find()?;
    let temp = tempfile::tempdir()?;
    let dir = match keep {
        Some(dir) => {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            dir
        }
        None => temp.path(),
    };
    let reference = speech(&tools.espeak, dir)?;
    let net = TestNet::builder()
        .public_host(NODE)
        .build()
        .ok_or_else(|| anyhow!("bench audio needs root, ip and iptables (a network namespace)"))?;
    chaincall_testkit::run_ok(
        net.command(NODE, "sysctl")
            .args(["-q", "-w", "net.ipv4.ip_local_port_range=30000 39999"]),
        "sysctl ip_local_port_range (in the bench's namespace)",
    );
    let hop = ImpairedLoopback::start(
        &net,
        NODE,
        &IMPAIRED,
        MEDIA_PORTS,
        SHADOW_PORTS,
        Impairment::CLEAN,
    );
    let heard = net.run(NODE, || calls(&tools, dir, &reference, &hop, conditions))?;
    drop(hop);
    heard
        .into_iter()
        .zip(conditions)
        .enumerate()
        .map(|(i, ((chaincall, baresip), condition))| {
            let score = |h: &Heard, side: &str| {
                score(&tools, dir, &reference, h, &format!("{i}-{side}"))
                    .with_context(|| format!("{side} under {}", condition.name))
            };
            Ok(ConditionResult {
                condition: condition.clone(),
                chaincall: score(&chaincall, "chaincall")?,
                baresip: score(&baresip, "baresip")?,
            })
        })
        .collect()
}

/// The reference: `TEXT` spoken by espeak-ng, at 48 kHz, padded with silence.
fn speech(espeak: &Path, dir: &Path) -> Result<Pcm> {
    let wav = dir.join("espeak.wav");
    let out = Command::new(espeak)
        .args(["-v", "en-us", "-s", "150", "-w"])
        .arg(&wav)
        .arg(TEXT)
        .output()
        .context("running espeak-ng")?;
    ensure!(
        out.status.success(),
        "espeak-ng failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let spoken = signal::read_wav(&wav)?;
    let pad = vec![0i16; (RATE * PAD_MS / 1000) as usize];
    let mut samples = pad.clone();
    samples.extend(resample(&spoken.samples, spoken.rate, RATE));
    samples.extend(pad);
    Ok(Pcm {
        rate: RATE,
        samples,
    })
}

/// Inside the bench's namespace: for each condition, the chaincall call, then the baresip call.
fn calls(
    tools: &Tools,
    dir: &Path,
    reference: &Pcm,
    hop: &ImpairedLoopback,
    conditions: &[Condition],
) -> Result<Vec<(Heard, Heard)>> {
    // Both calls last as long as the speech plus a second for set-up and the tail.
    let speech_ms = (reference.samples.len() as u64 * 1000) / u64::from(RATE);
    let play = Duration::from_millis(speech_ms + 1000);
    // The phones are wide-band (`PhoneConfig::wideband`): alice sends the 48 kHz reference as
    // it is, bob records the Opus call at 48 kHz.
    let phone_audio = reference.samples.clone();
    // The runtime is built on this (namespaced) thread, so its workers start in the namespace.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let mut net = runtime.block_on(Network::start(
        Arc::new(EmbeddedChain::default()),
        operator_key(None)?,
        NetworkOptions {
            dir: dir.to_path_buf(),
            mode: KeyMode::MikeyPke,
            keylog: None,
            tls_keylog: None,
            audio_a: phone_audio,
            audio_b: Vec::new(),
            wideband: true,
            keep_playout: true,
            adaptive_loss_hint: true,
            mikey_replay_quota: chaincall_phone::DEFAULT_MIKEY_REPLAY_QUOTA,
            placement: None,
        },
    ))?;
    // The tap speaks this into baresip's microphone.
    let source = dir.join("speech-48k.wav");
    write_wav(&source, RATE, 1, &reference.samples)?;
    let jack = baresip::Jack::start(&tools.jackd, dir)?;
    let programs = baresip::Programs {
        baresip: &tools.baresip,
        python: &tools.python,
        tap: &tools.tap,
    };
    let mut heard = Vec::new();
    let result = (|| {
        for (i, condition) in conditions.iter().enumerate() {
            hop.set(condition.impairment);
            hop.take_stats();
            let (alice, bob) = runtime
                .block_on(net.call(play))
                .with_context(|| format!("chaincall call under {}", condition.name))?;
            let (played, starts_ms) = chaincall_heard(&alice, &bob)?;
            let chaincall = Heard {
                played,
                starts_ms,
                decoder: Pcm {
                    rate: bob.recorded_rate,
                    samples: bob.recorded.clone(),
                },
                hop: hop.take_stats(),
                jitter_buffer: Some(bob.jitter.clone()),
            };
            hop.set(condition.impairment);
            let baresip = baresip::call(
                &programs,
                &jack,
                &dir.join(format!("baresip-{i}")),
                &source,
                play,
            )
            .with_context(|| format!("baresip call under {}", condition.name))?;
            heard.push((
                chaincall,
                Heard {
                    played: baresip.speaker,
                    // The tap records from the sample the speech starts on.
                    starts_ms: 0.0,
                    decoder: baresip.decoder,
                    hop: hop.take_stats(),
                    jitter_buffer: None,
                },
            ));
        }
        Ok(())
    })();
    runtime.block_on(net.stop());
    result.map(|()| heard)
}

/// What bob's phone played, and where its first sample sits after the first sample alice sent
/// entered her phone, in ms: the playout's start minus alice's first frame slot, plus a packet
/// time (a frame is sent once its capture ends, so its first sample entered one packet time
/// before its slot).
fn chaincall_heard(alice: &CallReport, bob: &CallReport) -> Result<(Pcm, f64)> {
    ensure!(
        bob.codec.is_opus(),
        "the call did not use Opus: {:?}",
        bob.codec
    );
    ensure!(
        bob.stats.rtp_received > 0 && bob.stats.rtp_rejected == 0,
        "bob received no (or rejected) SRTP: {:?}",
        bob.stats
    );
    let (Some(played), Some(sent)) = (bob.playout.started, alice.source_started) else {
        bail!("the call's media did not run on both phones");
    };
    let starts = played.duration_since(sent).as_secs_f64() * 1e3
        - sent.duration_since(played).as_secs_f64() * 1e3
        + f64::from(PTIME_MS);
    Ok((
        Pcm {
            rate: bob.playout.rate,
            samples: bob.playout.samples.clone(),
        },
        starts,
    ))
}

/// Scores what one call's callee played and what its decoder produced.
fn score(
    tools: &Tools,
    dir: &Path,
    reference: &Pcm,
    heard: &Heard,
    name: &str,
) -> Result<SideResult> {
    let (mos_wb, mos_nb, lag_ms) = score_recording(tools, dir, reference, &heard.played, name)
        .context("what the callee played")?;
    let (dec_wb, dec_nb, _) = score_recording(
        tools,
        dir,
        reference,
        &heard.decoder,
        &format!("{name}-decoder"),
    )
    .context("the callee's decoder output")?;
    let dropped = heard.hop.dropped + heard.hop.overflow;
    Ok(SideResult {
        mos_wb,
        mos_nb,
        decoder_mos: (dec_wb, dec_nb),
        mouth_to_ear_ms: heard.starts_ms + lag_ms,
        loss: if heard.hop.seen == 0 {
            0.0
        } else {
            dropped as f64 / heard.hop.seen as f64
        },
        hop: heard.hop,
        jitter_buffer: heard.jitter_buffer.clone(),
    })
}

/// Aligns one recording to the reference and scores it: MOS-LQO wide-band, narrow-band, and
/// the lag the alignment found, ms.
fn score_recording(
    tools: &Tools,
    dir: &Path,
    reference: &Pcm,
    recording: &Pcm,
    name: &str,
) -> Result<(f64, f64, f64)> {
    ensure!(!recording.samples.is_empty(), "nothing was recorded");
    // Alignment at 8 kHz: the lowest rate both recordings have.
    let ref8 = resample(&reference.samples, reference.rate, 8000);
    let got8 = resample(&recording.samples, recording.rate, 8000);
    let lag8 = lag(&ref8, &got8, MAX_EARLY_MS * 8, MAX_LATE_MS * 8);
    let mut mos = [0.0; 2];
    for (slot, (rate, mode)) in [(16_000u32, "wb"), (8000, "nb")].into_iter().enumerate() {
        let r = resample(&reference.samples, reference.rate, rate);
        let got = resample(&recording.samples, recording.rate, rate);
        let lag = lag8 * i64::from(rate / 8000);
        let deg = aligned(&got, lag, r.len());
        let (ref_path, deg_path) = (
            dir.join(format!("{name}-ref-{mode}.wav")),
            dir.join(format!("{name}-deg-{mode}.wav")),
        );
        write_wav(&ref_path, rate, 1, &r)?;
        write_wav(&deg_path, rate, 1, &deg)?;
        mos[slot] = pesq(tools, &ref_path, &deg_path, mode)?;
    }
    Ok((mos[0], mos[1], lag8 as f64 / 8.0))
}

/// PESQ MOS-LQO of `deg` against `reference` (`scripts/pesq_mos.py`).
fn pesq(tools: &Tools, reference: &Path, deg: &Path, mode: &str) -> Result<f64> {
    let out = Command::new(&tools.python)
        .arg(&tools.script)
        .args([reference, deg])
        .arg(mode)
        .output()
        .context("running scripts/pesq_mos.py")?;
    if !out.status.success() {
        bail!(
            "PESQ failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    text.trim()
        .parse()
        .with_context(|| format!("PESQ printed {text:?}, not a MOS"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_parse_as_documented() {
        let c: Condition = "loss10jit40".parse().unwrap();
        assert_eq!(c.impairment.loss, 0.10);
        assert_eq!(c.impairment.delay, Duration::from_millis(40));
        assert_eq!(c.impairment.jitter, Duration::from_millis(40));
        assert_eq!(
            "clean".parse::<Condition>().unwrap().impairment,
            Impairment::CLEAN
        );
        assert_eq!("loss3".parse::<Condition>().unwrap().impairment.loss, 0.03);
        assert_eq!(
            "jit20".parse::<Condition>().unwrap().impairment.delay,
            Duration::from_millis(20)
        );
        for bad in ["", "loss", "loss101", "lossx", "jit", "jit5000", "noise"] {
            assert!(bad.parse::<Condition>().is_err(), "{bad:?}");
        }
    }
}
