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

/// Resolves on SIGINT (Ctrl-C) or SIGTERM (what `systemctl stop`, `docker stop` and `kill` send):
/// every service's shutdown. The handlers are registered at the call (inside the runtime), not at
/// the first poll, so a signal that arrives while the service starts still stops it cleanly.
pub(crate) fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    use tokio::signal::unix::{SignalKind, signal};
    let (int, term) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    );
    async move {
        let (Ok(mut int), Ok(mut term)) = (int, term) else {
            return drop(tokio::signal::ctrl_c().await);
        };
        tokio::select! { _ = int.recv() => {}, _ = term.recv() => {} }
    }
}
