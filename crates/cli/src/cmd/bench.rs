//! `chaincall bench …`: measurements that compare chaincall with the reference implementations.
//!
//! Built only with the `bench` feature (`cargo build -p chaincall --features bench`), so the
//! shipping binary links no benchmark aid. The benches live in `crates/bench`; lookup takes its
//! header trust options from `keystore get --verify`.

use std::future::Future;

use anyhow::Result;
use chaincall_bench::lookup::TrustSource;
use chaincall_bench::{handshake, lookup, setup, sipd, srtp};
use chaincall_chain::KeystoreChain;
use chaincall_chain::verified::HeaderTrust;
use clap::{Args, Subcommand};

use crate::cmd::keystore::TrustOpts;

/// What to measure.
#[derive(Debug, Subcommand)]
pub(crate) enum Bench {
    /// SRTP protect/unprotect packets/s per profile, ours and native libsrtp, same run.
    Srtp(srtp::SrtpBenchArgs),
    /// Generic handshake + TLS-PSK connection set-up on loopback: p50 latency, set-ups/s per core.
    Handshake(handshake::HandshakeBenchArgs),
    /// Key lookup latency, verified (eth_getProof) and plain (eth_call): p50/p99 and proof bytes.
    Lookup(LookupArgs),
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
        Bench::Lookup(args) => lookup::run(args.bench, &args.trust),
        Bench::Setup(args) => setup::run(args),
    }
}

/// Arguments of `chaincall bench lookup`: the bench's own, and which header to trust.
#[derive(Debug, Args)]
pub(crate) struct LookupArgs {
    #[command(flatten)]
    bench: lookup::LookupBenchArgs,
    #[command(flatten)]
    trust: TrustOpts,
}

/// The header trust of `bench lookup` is chosen exactly as for `keystore get --verify`.
impl TrustSource for TrustOpts {
    fn header_trust<C: KeystoreChain>(
        &self,
        chain: &C,
    ) -> impl Future<Output = Result<(HeaderTrust, String)>> {
        TrustOpts::header_trust(self, chain)
    }
}
