//! The benchmark aids behind `chaincall bench srtp | handshake | lookup | sipd | setup | audio`.
//!
//! They live outside the `chaincall` crate so that the binary an operator ships links none of them
//! (notably not `chaincall-libsrtp-ffi`, which dlopens the libsrtp inside a Python extension): the
//! `chaincall` crate pulls this crate in only with its `bench` feature. Each module holds one
//! bench's clap arguments (flattened into `chaincall bench …`, so names, flags and `--json` output
//! are the CLI's) and its `run`.

use std::time::Duration;

use clap::Subcommand;

pub mod audio;
pub mod handshake;
pub mod lookup;
mod pg;
pub mod setup;
pub mod sipd;
pub mod srtp;

/// The benches that need nothing from the CLI, flattened into `chaincall bench …` (lookup, which
/// takes the CLI's header trust options, is the CLI's own variant).
#[derive(Debug, Subcommand)]
pub enum Bench {
    /// SRTP protect/unprotect packets/s per profile, ours and native libsrtp, same run.
    Srtp(srtp::SrtpBenchArgs),
    /// Generic handshake + TLS-PSK connection set-up on loopback: p50 latency, set-ups/s per core.
    Handshake(handshake::HandshakeBenchArgs),
    /// SIP proxy calls/s and digest REGISTER/s with sipp: sipd and Kamailio side by side.
    Sipd(sipd::SipdBenchArgs),
    /// Call set-up between two onboarded phones (INVITE → both SRTP contexts keyed): p50/p99, and
    /// verified key retrieval.
    Setup(setup::SetupBenchArgs),
    /// Speech quality (PESQ MOS-LQO) and delay of Opus calls under loss and jitter: chaincall
    /// phone → phone beside baresip → baresip, through the same impairment (root).
    Audio(audio::AudioBenchArgs),
}

impl Bench {
    /// Runs the bench.
    pub fn run(self) -> anyhow::Result<()> {
        match self {
            Bench::Srtp(args) => srtp::run(args),
            Bench::Handshake(args) => handshake::run(args),
            Bench::Sipd(args) => sipd::run(args),
            Bench::Setup(args) => setup::run(args),
            Bench::Audio(args) => audio::run(args),
        }
    }
}

/// A duration in milliseconds, as the benches report them.
fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Sorts measurements for [`percentile`].
fn sort_ms(values: &mut [f64]) {
    values.sort_by(f64::total_cmp);
}

/// The nearest-rank `p`th percentile of `sorted` (ascending); NaN when there is none.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}
