//! One module per subcommand.

pub(crate) mod mikey;
pub(crate) mod sipd;
pub(crate) mod version;
