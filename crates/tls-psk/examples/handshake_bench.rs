//! Loopback set-up latency and throughput: `cargo run --release -p chaincall-tls-psk --example
//! handshake_bench [runs]`.

use std::sync::Arc;

use chaincall_handshake::{CryptoProvider, Protocol, RustCrypto};
use chaincall_tls_psk::bench::{LoopbackParams, run_loopback};
use chaincall_tls_psk::{OpensslCrypto, TlsPskConfig};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let runs = std::env::args()
        .nth(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(2000);
    let providers: [Arc<dyn CryptoProvider>; 2] =
        [Arc::new(OpensslCrypto::new()), Arc::new(RustCrypto)];
    for crypto in providers {
        for protocol in [Protocol::Sts, Protocol::Nsl] {
            for (name, tls) in [
                ("TLS 1.3", TlsPskConfig::tls13_only()),
                ("TLS 1.2", TlsPskConfig::tls12_only()),
            ] {
                let r = run_loopback(&LoopbackParams {
                    protocol,
                    tls: TlsPskConfig {
                        keylog_file: None,
                        ..tls
                    },
                    runs,
                    warmup: runs / 10,
                    crypto: crypto.clone(),
                })?;
                println!(
                    "[{}] {protocol} + {name} ({}): p50 {:?}  p90 {:?}  p99 {:?}  cpu/set-up {:?}  set-ups/s/core {:.0}",
                    r.crypto,
                    r.tls_version,
                    r.p50,
                    r.p90,
                    r.p99,
                    r.cpu_per_setup.unwrap_or_default(),
                    r.setups_per_core_second().unwrap_or(0.0)
                );
            }
        }
    }
    Ok(())
}
