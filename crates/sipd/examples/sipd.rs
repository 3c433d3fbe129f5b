//! A sipd binary without the rest of chaincall, for benchmarks (`scripts/bench-sipd.sh`):
//! `sipd [--config FILE] [--listen udp:IP:PORT]... [--auth none|digest] [--static-route IP:PORT]`.
//! The full CLI is `chaincall sipd serve`.

use chaincall_sipd::{AuthMode, Config, Server};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut cfg = Config::default();
    let mut listen = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--config" => cfg = Config::load(std::path::Path::new(&val()?))?,
            "--listen" => listen.push(val()?.parse()?),
            "--auth" => {
                cfg.auth.mode = match val()?.as_str() {
                    "none" => AuthMode::None,
                    "digest" => AuthMode::Digest,
                    other => return Err(format!("--auth none|digest, not {other}").into()),
                }
            }
            "--static-route" => cfg.static_route = Some(val()?.parse()?),
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    if !listen.is_empty() {
        cfg.listen = listen;
    }
    // Benchmarks measure the proxy, not the limiter.
    cfg.limits.register_rate = 0.0;
    let server = Server::bind(cfg).await?;
    server
        .run(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await;
    Ok(())
}
