//! `chaincall bench …`: measurements that compare chaincall with the reference implementations.

use clap::Subcommand;

mod srtp;

/// What to measure.
#[derive(Debug, Subcommand)]
pub(crate) enum Bench {
    /// SRTP protect/unprotect packets/s per profile, ours and native libsrtp, same run.
    Srtp(srtp::SrtpBenchArgs),
}

/// Runs one bench.
pub(crate) fn run(bench: Bench) -> anyhow::Result<()> {
    match bench {
        Bench::Srtp(args) => srtp::run(args),
    }
}
