//! chaincall's SIP server: registrar with location service, transaction-stateful proxy, and digest
//! authentication against a Kamailio-compatible `subscriber` table, over UDP and TCP.
//!
//! The protocol work happens in [`core::Core`] on top of the sans-IO `chaincall-sip` crate; the
//! [`server`] module is the tokio shell. Stream transports take any `AsyncRead + AsyncWrite`
//! ([`server::StreamSink::attach`]), which is where TLS with an external PSK plugs in.
//!
//! Logs (tracing) name sources, AORs and reasons; they never contain passwords, HA1 values or
//! nonce secrets.
//!
//! Known limits (documented, not silent): no forking (the best binding — highest `q`, then most
//! recent — is tried), no DNS (RFC 3263; next hops must be IP literals, a static route, or a
//! registered contact), no proxy Timer C (an INVITE that got a provisional answer waits for the
//! downstream's final response), TLS-PSK attaches through [`server::StreamSink`] but is not bound
//! here.

pub mod config;
pub mod core;
pub mod db;
pub mod location;
pub mod metrics;
pub mod server;

pub use config::{AuthMode, Config, Listen};
pub use server::{ServeError, Server};
