//! chaincall's TLS-PSK shell: the generic handshake over TCP, and TLS with the PSK it yields.
//!
//! - [`transport`]: drives a [`chaincall_handshake`] [`Initiator`](chaincall_handshake::Initiator) or
//!   [`Responder`](chaincall_handshake::Responder) over any tokio stream, with the handshake's
//!   length-prefixed frames, a size limit checked from each header, and a timeout.
//! - [`PskStore`]: the server's PSK identity → key table, with expiry; an expired PSK is refused.
//!   Each PSK from a handshake remembers the peer and the on-chain key that handshake proved; a
//!   [`PskServer`] re-reads that key at each resumption and refuses (and drops) the PSK once the
//!   key is revoked, no longer approved or replaced ([`TlsPskServer::with_key_recheck`]).
//! - [`TlsPskServer`] / [`TlsPskClient`]: TLS with an external PSK through OpenSSL (rustls has none):
//!   TLS 1.3 (`psk_dhe_ke`: an ephemeral X25519/P-256 exchange on top of the PSK, so the TLS session
//!   keys stay secret even if the PSK later leaks) and TLS 1.2 PSK suites (RFC 4279, ECDHE-PSK
//!   preferred) for older peers. Streams are tokio `AsyncRead + AsyncWrite` ([`TlsPskStream`]).
//! - [`PskServer`] and [`connect_with_handshake`]: the two together on one TCP connection. A client
//!   runs the handshake and continues with TLS on the same connection; a server tells the two apart
//!   by the first byte (a TLS record starts with `0x16`, a handshake frame with its type) so a client
//!   holding a live PSK can skip the handshake and open TLS directly.
//!
//! When [`TlsPskConfig::keylog_file`] names a file, TLS secrets are appended to it in the NSS key
//! log format (for Wireshark/tshark); that is the only place key material is ever written. It is off
//! unless asked for: this library reads no environment variable (the `chaincall` binary sets it
//! from `SSLKEYLOGFILE`).
//! Logs (`tracing`) carry PSK identities and peer names, never keys; a client's PSK identity (any
//! bytes) is shown escaped and capped, in logs and errors alike, so it cannot forge log lines.
#![forbid(unsafe_code)]

pub mod bench;
mod error;
mod openssl_crypto;
mod server;
mod store;
mod tls;
pub mod transport;

pub use error::TlsPskError;
pub use openssl_crypto::OpensslCrypto;
pub use server::{HandshakeService, PskServer, connect_with_handshake};
pub use store::{PskEntry, PskStore};
pub use tls::{KeyRecheck, TlsPskClient, TlsPskConfig, TlsPskServer, TlsPskStream, TlsVersion};
