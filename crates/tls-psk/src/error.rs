//! Errors of the TLS-PSK shell.

use chaincall_handshake::HandshakeError;

/// Why a handshake or TLS-PSK connection failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsPskError {
    /// The generic handshake failed (see the inner error).
    #[error("handshake")]
    Handshake(#[from] HandshakeError),
    /// The handshake or TLS set-up did not finish in time.
    #[error("{0} timed out")]
    Timeout(&'static str),
    /// The peer closed the connection mid-handshake.
    #[error("the peer closed the connection during the {0}")]
    Closed(&'static str),
    /// A socket error.
    #[error("I/O")]
    Io(#[from] std::io::Error),
    /// The server refused the client's PSK because it has expired.
    #[error("PSK identity {0} has expired: run the handshake again")]
    PskExpired(String),
    /// The server held the client's PSK, but the peer it was agreed with no longer has the
    /// on-chain key that handshake proved (revoked, pending, unknown or replaced): the PSK was
    /// dropped.
    #[error("PSK identity {identity} of {peer} refused: {reason}; run the handshake again")]
    PskKeyLost {
        /// The PSK identity, escaped for logs.
        identity: String,
        /// Who the PSK was agreed with.
        peer: chaincall_identity::IdentityName,
        /// Why its key no longer counts (a status, never key material).
        reason: &'static str,
    },
    /// The server knows no PSK under the client's identity.
    #[error("unknown PSK identity {0}")]
    UnknownPskIdentity(String),
    /// The client's own PSK has expired; it was not offered.
    #[error("the PSK has expired locally; run the handshake again")]
    LocalPskExpired,
    /// A PSK identity longer than TLS and OpenSSL allow (at most 128 bytes here).
    #[error("PSK identity of {0} bytes is too long (at most 128)")]
    IdentityTooLong(usize),
    /// The first byte of a connection is neither a TLS record nor a handshake frame.
    #[error("connection starts with byte 0x{0:02x}: neither TLS nor a chaincall handshake")]
    UnknownFirstByte(u8),
    /// This server runs no handshake responder (it only accepts TLS with stored PSKs).
    #[error("this server does not run the handshake")]
    HandshakeNotOffered,
    /// OpenSSL failed during TLS set-up.
    #[error("TLS")]
    Tls(#[from] openssl::ssl::Error),
    /// OpenSSL refused a configuration (cipher list, versions).
    #[error("TLS configuration")]
    TlsConfig(#[from] openssl::error::ErrorStack),
}

#[cfg(test)]
mod tests {
    use super::*;
    use chaincall_identity::DirectoryError;

    /// Each layer says its own part; the causes come from `source()`, so the chain the phone
    /// and sipd report tells each once.
    #[test]
    fn wrapped_errors_tell_their_cause_once() {
        let err = TlsPskError::Handshake(HandshakeError::Directory(DirectoryError::Unavailable(
            "node down".into(),
        )));
        let told = chaincall_io::ErrorChain(&err).to_string();
        assert_eq!(
            told,
            "handshake: key directory: key directory unavailable: node down"
        );
        let io = TlsPskError::Io(std::io::Error::other("connection reset"));
        let told = chaincall_io::ErrorChain(&io).to_string();
        assert_eq!(told, "I/O: connection reset");
    }
}
