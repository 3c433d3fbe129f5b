//! One module per subcommand.

pub(crate) mod mikey;
pub(crate) mod version;
pub(crate) mod store;
pub(crate) mod wallet;
