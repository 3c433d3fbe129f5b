//! `chaincall bench …`: measurements that compare chaincall with the reference implementations.
//!
//! Built only with the `bench` feature (`cargo build -p chaincall --features bench`), so the
//! shipping binary links no benchmark aid. srtp, handshake and sipd live in `crates/bench`; lookup
//! and setup stay here because they reuse the CLI's own keystore options and demo network.

use chaincall_bench::{handshake, sipd, srtp};
use clap::Subcommand;

mod lookup;
mod setup;

/// What to measure.
#[derive(Debug, Subcommand)]
pub(crate) enum Bench {
    /// SRTP protect/unprotect packets/s per profile, ours and native libsrtp, same run.
    Srtp(srtp::SrtpBenchArgs),
    /// Generic handshake + TLS-PSK connection set-up on loopback: p50 latency, set-ups/s per core.
    Handshake(handshake::HandshakeBenchArgs),
    /// Key lookup latency, verified (eth_getProof) and plain (eth_call): p50/p99 and proof bytes.
    Lookup(lookup::LookupBenchArgs),
    /// SIP proxy calls/s and digest REGISTER/s with sipp: sipd and Kamailio side by side.
    Sipd(sipd::SipdBenchArgs),
    /// Call set-up between two onboarded phones (INVITE → both SRTP contexts keyed): p50/p99, and
    /// verified key retrieval.
    Setup(setup::SetupBenchArgs),
}

/// Runs one bench.
pub(crate) fn run(bench: Bench) -> anyhow::Result<()> {
    match bench {
        Bench::Srtp(args) => srtp::run(args),
        Bench::Handshake(args) => handshake::run(args),
        Bench::Sipd(args) => sipd::run(args),
        Bench::Lookup(args) => lookup::run(args),
        Bench::Setup(args) => setup::run(args),
    }
}
