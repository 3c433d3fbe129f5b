//! chaincall's interactive terminal softphone (`chaincall phone ui`): who you talk to and
//! whether that is proven on chain, always on screen, keyboard only, usable over SSH.
//!
//! | module | what | kind |
//! | --- | --- | --- |
//! | [`app`] | the view model: phone events, command answers, keys and `now` in; commands for the phone and the screen (ratatui) out | sans-IO |
//! | [`shell`] | connecting and registering ([`chaincall_phone::calls`]), the terminal (raw mode, alternate screen, restored on every way out), keys, signals, `phone hangup` | tokio |
//! | `cli` | `chaincall phone ui`'s arguments and runner (feature `cli`) | clap |
//!
//! The screens and keys are in docs/softphone.md. Peer-supplied text (URIs, display names,
//! reasons) is escaped with [`chaincall_phone::report::for_terminal`]; verification is spelled
//! out in words ([`chaincall_phone::report::describe_caller`]), so no colour is needed.
#![forbid(unsafe_code)]

pub mod app;
#[cfg(feature = "cli")]
mod cli;
pub mod shell;

pub use app::{App, Command, Input, Key};
#[cfg(feature = "cli")]
pub use cli::UiArgs;
pub use shell::{UiError, UiOptions, run};
