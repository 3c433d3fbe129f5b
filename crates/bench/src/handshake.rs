//! `chaincall bench handshake`: the generic handshake plus a TLS-PSK connection on loopback — TCP
//! connect, NSL or STS, TLS 1.3 (psk_dhe_ke) or TLS 1.2, one round trip — client and server on one
//! core. Prints p50/p90/p99 latency, CPU per set-up and set-ups per second per core.
//!
//! Keys come from an in-memory `StaticDirectory` (see `chaincall_tls_psk::bench`).

use std::sync::Arc;

use chaincall_handshake::{CryptoProvider, Protocol, RustCrypto};
use chaincall_tls_psk::bench::{LoopbackParams, run_loopback};
use chaincall_tls_psk::{OpensslCrypto, TlsPskConfig};
use clap::{Args, ValueEnum};

/// Arguments of `chaincall bench handshake`.
#[derive(Debug, Args)]
pub struct HandshakeBenchArgs {
    /// Measured set-ups per configuration.
    #[arg(long, default_value_t = 1000)]
    runs: usize,
    /// Protocols to measure.
    #[arg(long, value_enum, default_values_t = [ProtocolArg::Sts, ProtocolArg::Nsl])]
    protocol: Vec<ProtocolArg>,
    /// TLS versions to measure.
    #[arg(long, value_enum, default_values_t = [TlsArg::Tls13, TlsArg::Tls12])]
    tls: Vec<TlsArg>,
    /// P-256 providers for the handshake.
    #[arg(long, value_enum, default_values_t = [CryptoArg::Openssl])]
    crypto: Vec<CryptoArg>,
    /// Print one JSON object per configuration.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ProtocolArg {
    Sts,
    Nsl,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum TlsArg {
    #[value(name = "1.3")]
    Tls13,
    #[value(name = "1.2")]
    Tls12,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum CryptoArg {
    Openssl,
    Rustcrypto,
}

/// Runs the measurement for every requested combination.
pub fn run(args: HandshakeBenchArgs) -> anyhow::Result<()> {
    for crypto in &args.crypto {
        let provider: Arc<dyn CryptoProvider> = match crypto {
            CryptoArg::Openssl => Arc::new(OpensslCrypto::new()),
            CryptoArg::Rustcrypto => Arc::new(RustCrypto),
        };
        for protocol in &args.protocol {
            for tls in &args.tls {
                let protocol = match protocol {
                    ProtocolArg::Sts => Protocol::Sts,
                    ProtocolArg::Nsl => Protocol::Nsl,
                };
                let tls = match tls {
                    TlsArg::Tls13 => TlsPskConfig::tls13_only(),
                    TlsArg::Tls12 => TlsPskConfig::tls12_only(),
                };
                let r = run_loopback(&LoopbackParams {
                    protocol,
                    tls: TlsPskConfig {
                        keylog_file: None,
                        ..tls
                    },
                    runs: args.runs.max(1),
                    warmup: args.runs / 10,
                    crypto: provider.clone(),
                })?;
                let per_core = r.setups_per_core_second().unwrap_or(0.0);
                if args.json {
                    println!(
                        "{}",
                        serde_json::json!({
                            "protocol": r.protocol.name(),
                            "crypto": r.crypto,
                            "tls": r.tls_version,
                            "runs": r.runs,
                            "p50_us": r.p50.as_micros() as u64,
                            "p90_us": r.p90.as_micros() as u64,
                            "p99_us": r.p99.as_micros() as u64,
                            "cpu_per_setup_us": r.cpu_per_setup.map(|c| c.as_micros() as u64),
                            "setups_per_core_second": per_core.round(),
                        })
                    );
                } else {
                    println!(
                        "{:<4} {:<10} {:<8} p50 {:>8.3} ms  p90 {:>8.3} ms  p99 {:>8.3} ms  cpu/set-up {:>7.3} ms  {:>6.0} set-ups/s/core",
                        r.protocol.name(),
                        r.crypto,
                        r.tls_version,
                        r.p50.as_secs_f64() * 1e3,
                        r.p90.as_secs_f64() * 1e3,
                        r.p99.as_secs_f64() * 1e3,
                        r.cpu_per_setup.unwrap_or_default().as_secs_f64() * 1e3,
                        per_core
                    );
                }
            }
        }
    }
    Ok(())
}
