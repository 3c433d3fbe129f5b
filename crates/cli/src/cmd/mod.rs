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
