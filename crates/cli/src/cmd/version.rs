//! `chaincall version`.

/// Prints the binary's version.
pub(crate) fn run() -> anyhow::Result<()> {
    println!("chaincall {}", env!("CARGO_PKG_VERSION"));
    Ok(())
}
