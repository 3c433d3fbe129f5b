//! The benchmark aids behind `chaincall bench srtp | handshake | lookup | sipd | setup`.
//!
//! They live outside the `chaincall` crate so that the binary an operator ships links none of them
//! (notably not `chaincall-libsrtp-ffi`, which dlopens the libsrtp inside a Python extension): the
//! `chaincall` crate pulls this crate in only with its `bench` feature. Each module holds one
//! bench's clap arguments (flattened into `chaincall bench …`, so names, flags and `--json` output
//! are the CLI's) and its `run`.

pub mod handshake;
pub mod lookup;
pub mod setup;
pub mod sipd;
pub mod srtp;
