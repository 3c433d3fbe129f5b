//! One module per subcommand.

#[cfg(feature = "bench")]
pub(crate) mod bench;
pub(crate) mod demo;
pub(crate) mod keystore;
pub(crate) mod mikey;
pub(crate) mod phone;
pub(crate) mod sipd;
pub(crate) mod store;
pub(crate) mod version;
pub(crate) mod wallet;

/// Resolves on SIGINT (Ctrl-C) or SIGTERM (what `systemctl stop`, `docker stop` and `kill`
/// send), or on SIGINT alone where SIGTERM cannot be watched: every service's shutdown.
pub(crate) async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => tokio::select! { _ = tokio::signal::ctrl_c() => {}, _ = term.recv() => {} },
        Err(_) => drop(tokio::signal::ctrl_c().await),
    }
}
