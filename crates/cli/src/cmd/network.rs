//! The demo network lives in the `chaincall-devnet` library (shared by the demo, the set-up
//! benchmark and tests); re-exported under its old path so `demo` and `bench setup` keep their
//! imports.

pub(crate) use chaincall_devnet::{ALICE, BOB, Network, NetworkOptions, Timeline, operator_key};
