//! `chaincall bench …`: measurements that compare chaincall with the reference implementations.
//!
//! Built only with the `bench` feature (`cargo build -p chaincall --features bench`), so the
//! shipping binary links no benchmark aid. The benches live in `crates/bench`; lookup takes its
//! header trust options from `keystore get --verify`.

use std::future::Future;

use anyhow::Result;
use chaincall_bench::lookup::{self, TrustSource};
use chaincall_chain::KeystoreChain;
use chaincall_chain::verified::HeaderTrust;
use clap::{Args, Subcommand};

use crate::cmd::keystore::TrustOpts;

/// What to measure: lookup here (it takes `keystore get --verify`'s trust options), the others
/// from `chaincall_bench::Bench`.
#[derive(Debug, Subcommand)]
pub(crate) enum Bench {
    /// Key lookup latency, verified (eth_getProof) and plain (eth_call): p50/p99 and proof bytes.
    Lookup(LookupArgs),
    #[command(flatten)]
    Other(chaincall_bench::Bench),
}

/// Runs one bench.
pub(crate) fn run(bench: Bench) -> anyhow::Result<()> {
    match bench {
        Bench::Lookup(args) => lookup::run(args.bench, &args.trust),
        Bench::Other(bench) => bench.run(),
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
