//! chaincall's SIP server: registrar with location service, transaction-stateful proxy, and digest
//! authentication against a Kamailio-compatible `subscriber` table, over UDP, TCP and TLS with an
//! external PSK from chaincall's handshake.
//!
//! The protocol work happens in [`core::Core`] on top of the sans-IO `chaincall-sip` crate; the
//! [`server`] module is the tokio shell. Stream transports take any `AsyncRead + AsyncWrite`
//! ([`server::StreamSink::attach`], [`server::StreamSink::attach_tls`]). [`tls::serve_tls_psk`] is
//! the TLS-PSK accept loop: the chaincall handshake (STS or NSL) against phones' keys read from the
//! keystore contract through [`keys::ChainKeyDirectory`], then TLS 1.3/1.2 with the PSK it yields.
//! A client on a TLS connection registers its connection's address as Contact (`;transport=tls`);
//! requests for it go back over that connection, with Via `SIP/2.0/TLS` and a Record-Route with
//! `transport=tls`. Each stream connection is a flow ([`flow`], RFC 5626): bindings belong to the
//! connection that made them, and the Record-Route facing a stream leg carries an HMAC'd flow
//! token, so in-dialog requests reach that connection (403 for a forged token, 430 once it closed)
//! whatever address a Contact names. Phones' keys are proven against trusted block headers
//! (`[tls_psk] trust`, see [`keys`]) unless the operator chooses to believe the RPC provider.
//!
//! Subscriber look-ups never block the server loop: requests that need one are rate-limited first,
//! then parked (bounded) while the look-up runs in its own task ([`core`] docs). Every cache keyed
//! by client input is bounded with LRU eviction. sipd is no open relay: a target the request names
//! itself is used only if it is a registered contact, a flow or the static route, or the sender is
//! a local user (403 and `sipd_relay_refused_total` otherwise). See `docs/sipd.md`.
//!
//! Runtime: with TLS-PSK on, run inside tokio's **multi-thread** runtime (the keystore lookups block
//! a worker with `block_in_place`, see [`keys`]).
//!
//! Logs (tracing) name sources, AORs and reasons; they never contain passwords, HA1 values, nonce
//! secrets or PSKs.
//!
//! Known limits (documented, not silent): no forking (the best binding — highest `q`, then most
//! recent — is tried), no DNS (RFC 3263; next hops must be IP literals, a static route, or a
//! registered contact).
//!
//! A forwarded INVITE that keeps ringing past proxy Timer C (`[timers] c_secs`, RFC 3261 §16.8)
//! is CANCELled downstream and answered 408 upstream. Where a dialog's two legs use different
//! transports or listeners (a UDP phone calling a TLS-PSK phone), sipd record-routes twice
//! (RFC 5658), so each side's route set starts with an address it can reach.
//!
//! Over TLS-PSK, a REGISTER is bound to the handshake: a connection whose handshake proved a phone
//! number may register that number only (403 otherwise), on top of digest authentication.

pub mod cluster;
pub mod config;
pub mod core;
pub mod db;
pub mod flow;
pub mod keys;
pub mod link;
pub mod location;
pub mod metrics;
pub mod overrides;
pub mod server;
pub mod tls;

pub use config::{
    AuthMode, Checkpoint, Config, IdentityConfig, KeyTrustMode, Listen, ListenTransport,
    TlsPskSettings, VerifyMode,
};
pub use keys::ChainKeyDirectory;
pub use server::{ServeError, Server, StreamSink};
pub use tls::serve_tls_psk;
