//! TLS with an external PSK through OpenSSL: TLS 1.3 (psk_dhe_ke) and TLS 1.2 PSK suites (RFC 4279).
//!
//! OpenSSL 3 offers two ways to use an external PSK in TLS 1.3: the native session callbacks
//! (`SSL_CTX_set_psk_use_session_callback` / `_find_session_callback`), which the `openssl` crate does
//! not expose, and the TLS 1.2 PSK callbacks, which OpenSSL also applies to TLS 1.3 by building a
//! session with the SHA-256 suite `TLS_AES_128_GCM_SHA256` (the compatibility path OpenSSL documents in
//! `SSL_CTX_set_psk_client_callback(3)`). We use the latter — no unsafe code — and so keep SHA-256
//! suites in the TLS 1.3 list. It is also what `openssl s_client/s_server -psk` speak.
//!
//! Both ends offer and accept `psk_dhe_ke` (OpenSSL's default; `psk_ke` without (EC)DHE is not
//! enabled), so every TLS 1.3 connection adds an ephemeral key exchange on top of the PSK. Session
//! tickets are off: a resumption ticket would outlive the PSK's expiry in the store.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use chaincall_handshake::Established;
use chaincall_identity::{
    DirectoryError, IdentityName, KeyDirectory, KeyStatus, PublicIdentityKey,
};
use openssl::ex_data::Index;
use openssl::ssl::{
    Ssl, SslContext, SslContextBuilder, SslMethod, SslOptions, SslRef, SslSessionCacheMode,
    SslVersion,
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_openssl::SslStream;
use zeroize::Zeroizing;

use crate::TlsPskError;
use crate::store::{Lookup, PskStore};

/// TLS protocol versions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TlsVersion {
    /// TLS 1.2 (RFC 5246) with RFC 4279 / RFC 5489 PSK suites.
    Tls12,
    /// TLS 1.3 (RFC 8446) with an external PSK.
    Tls13,
}

impl TlsVersion {
    fn openssl(self) -> SslVersion {
        match self {
            Self::Tls12 => SslVersion::TLS1_2,
            Self::Tls13 => SslVersion::TLS1_3,
        }
    }
}

/// TLS settings for both ends.
#[derive(Debug, Clone)]
pub struct TlsPskConfig {
    /// Lowest version accepted. Default: TLS 1.2.
    pub min_version: TlsVersion,
    /// Highest version offered. Default: TLS 1.3.
    pub max_version: TlsVersion,
    /// TLS 1.3 suites; SHA-256 ones are required by the PSK callbacks (module docs).
    pub tls13_ciphersuites: String,
    /// TLS 1.2 PSK suites, most preferred first: ECDHE-PSK (forward secret) before plain PSK.
    pub tls12_cipher_list: String,
    /// Where to append the NSS key log (TLS secrets, for Wireshark); `None` (the default) writes
    /// none. As in rustls, a library never turns it on by itself: a binary that honours
    /// `SSLKEYLOGFILE` reads it and sets this.
    pub keylog_file: Option<PathBuf>,
    /// Time allowed for the TLS handshake. Default: 10 s.
    pub handshake_timeout: Duration,
}

impl Default for TlsPskConfig {
    fn default() -> Self {
        Self {
            min_version: TlsVersion::Tls12,
            max_version: TlsVersion::Tls13,
            tls13_ciphersuites: "TLS_AES_128_GCM_SHA256:TLS_CHACHA20_POLY1305_SHA256".into(),
            tls12_cipher_list: "ECDHE-PSK-CHACHA20-POLY1305:ECDHE-PSK-AES256-CBC-SHA384:\
                                ECDHE-PSK-AES128-CBC-SHA256:PSK-AES256-GCM-SHA384:\
                                PSK-AES128-GCM-SHA256:PSK-CHACHA20-POLY1305"
                .into(),
            keylog_file: None,
            handshake_timeout: Duration::from_secs(10),
        }
    }
}

impl TlsPskConfig {
    /// Only TLS 1.3.
    pub fn tls13_only() -> Self {
        Self {
            min_version: TlsVersion::Tls13,
            ..Self::default()
        }
    }

    /// Only TLS 1.2 (for older peers).
    pub fn tls12_only() -> Self {
        Self {
            max_version: TlsVersion::Tls12,
            ..Self::default()
        }
    }

    fn builder(&self) -> Result<SslContextBuilder, TlsPskError> {
        let mut b = SslContextBuilder::new(SslMethod::tls())?;
        b.set_min_proto_version(Some(self.min_version.openssl()))?;
        b.set_max_proto_version(Some(self.max_version.openssl()))?;
        b.set_ciphersuites(&self.tls13_ciphersuites)?;
        b.set_cipher_list(&self.tls12_cipher_list)?;
        b.set_options(SslOptions::NO_TICKET | SslOptions::CIPHER_SERVER_PREFERENCE);
        b.set_session_cache_mode(SslSessionCacheMode::OFF);
        if let Some(path) = &self.keylog_file {
            let file = open_keylog(path)?;
            b.set_keylog_callback(move |_, line| {
                let mut f = file.lock().unwrap_or_else(|e| e.into_inner());
                // Key logging is a debugging aid: a failed write must not break the connection.
                let _ = writeln!(f, "{line}");
            });
        }
        Ok(b)
    }
}

fn open_keylog(path: &PathBuf) -> Result<Arc<Mutex<File>>, TlsPskError> {
    let mut opts = OpenOptions::new();
    opts.create(true).append(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    Ok(Arc::new(Mutex::new(opts.open(path)?)))
}

/// What the server learned about a connection's PSK, kept on the `Ssl` object.
#[derive(Debug, Clone)]
enum ServerPsk {
    Accepted {
        identity: Vec<u8>,
        peer: Option<IdentityName>,
        peer_key: Option<PublicIdentityKey>,
    },
    Expired(Vec<u8>),
    /// The PSK's peer no longer has the on-chain key its handshake proved; the PSK was dropped.
    KeyLost {
        identity: Vec<u8>,
        peer: IdentityName,
        reason: &'static str,
    },
    Unknown(Vec<u8>),
}

/// The client's identity and key for one connection.
struct ClientPsk {
    identity: Vec<u8>,
    key: Zeroizing<Vec<u8>>,
}

fn server_index() -> Index<Ssl, ServerPsk> {
    static IDX: OnceLock<Index<Ssl, ServerPsk>> = OnceLock::new();
    // Invariant: allocating an ex_data index fails only when OpenSSL is out of memory.
    *IDX.get_or_init(|| Ssl::new_ex_index().expect("OpenSSL ex_data index"))
}

/// The PSK identity a handshake on this very connection has just stored (its key needs no
/// re-read: the handshake read it a moment ago).
struct JustProved(Vec<u8>);

fn just_proved_index() -> Index<Ssl, JustProved> {
    static IDX: OnceLock<Index<Ssl, JustProved>> = OnceLock::new();
    // Invariant: allocating an ex_data index fails only when OpenSSL is out of memory.
    *IDX.get_or_init(|| Ssl::new_ex_index().expect("OpenSSL ex_data index"))
}

fn client_index() -> Index<Ssl, ClientPsk> {
    static IDX: OnceLock<Index<Ssl, ClientPsk>> = OnceLock::new();
    *IDX.get_or_init(|| Ssl::new_ex_index().expect("OpenSSL ex_data index"))
}

/// How many bytes of a peer's PSK identity logs and errors show (handshake identities are 32).
const SHOWN_IDENTITY_BYTES: usize = 64;

/// A peer-supplied PSK identity as text safe to log or display: printable ASCII stays as it is;
/// every other byte (CR, LF, ESC and other controls, non-ASCII) and the backslash become `\xNN`, so
/// an identity can neither forge log lines nor send terminal escapes, and distinct identities stay
/// distinct. At most [`SHOWN_IDENTITY_BYTES`] bytes are shown, then the full length.
fn printable(identity: &[u8]) -> String {
    use std::fmt::Write as _;
    let shown = &identity[..identity.len().min(SHOWN_IDENTITY_BYTES)];
    let mut out = String::with_capacity(shown.len() + 16);
    for &b in shown {
        if (b' '..=b'~').contains(&b) && b != b'\\' {
            out.push(char::from(b));
        } else {
            // Writing to a String cannot fail.
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    if shown.len() < identity.len() {
        let _ = write!(out, "... ({} bytes)", identity.len());
    }
    out
}

/// A TLS-PSK connection: a tokio `AsyncRead + AsyncWrite` stream plus what was authenticated.
#[derive(Debug)]
pub struct TlsPskStream<S> {
    inner: SslStream<S>,
    identity: Vec<u8>,
    peer: Option<IdentityName>,
    peer_key: Option<PublicIdentityKey>,
}

impl<S> TlsPskStream<S> {
    /// The PSK identity the connection was keyed with.
    pub fn psk_identity(&self) -> &[u8] {
        &self.identity
    }

    /// The chain identity the PSK was agreed with (from the handshake), if known.
    pub fn peer(&self) -> Option<&IdentityName> {
        self.peer.as_ref()
    }

    /// The peer's on-chain key its handshake proved, if known (what a server re-checks later).
    pub fn peer_key(&self) -> Option<&PublicIdentityKey> {
        self.peer_key.as_ref()
    }

    /// The negotiated TLS version, e.g. `"TLSv1.3"`.
    pub fn version(&self) -> &'static str {
        self.inner.ssl().version_str()
    }

    /// The negotiated cipher suite name, e.g. `"TLS_AES_128_GCM_SHA256"`.
    pub fn cipher(&self) -> Option<&'static str> {
        self.inner.ssl().current_cipher().map(|c| c.name())
    }

    /// Whether an ephemeral (EC)DHE exchange was made on top of the PSK (TLS 1.3 psk_dhe_ke, or a
    /// TLS 1.2 ECDHE-PSK suite), as seen from the client.
    pub fn ephemeral_key_exchange(&self) -> bool {
        self.inner.ssl().peer_tmp_key().is_ok()
    }

    /// The OpenSSL connection, for inspection.
    pub fn ssl(&self) -> &SslRef {
        self.inner.ssl()
    }

    /// The underlying transport.
    pub fn get_ref(&self) -> &S {
        self.inner.get_ref()
    }

    /// The tokio-openssl stream itself.
    pub fn into_inner(self) -> SslStream<S> {
        self.inner
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for TlsPskStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for TlsPskStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Where a server re-reads a stored PSK's peer key at each resumption.
pub type KeyRecheck = Arc<dyn KeyDirectory + Send + Sync>;

/// The TLS-PSK server: resolves client PSK identities in a [`PskStore`]; expired ones are refused.
#[derive(Clone)]
pub struct TlsPskServer {
    ctx: SslContext,
    timeout: Duration,
}

impl TlsPskServer {
    /// A server context over `store`. No certificate: PSK only. Stored PSKs are used as they are
    /// until they expire; see [`TlsPskServer::with_key_recheck`] for PSKs that must die with
    /// their peer's on-chain key.
    pub fn new(config: &TlsPskConfig, store: PskStore) -> Result<Self, TlsPskError> {
        Self::build(config, store, None)
    }

    /// Like [`TlsPskServer::new`], and a PSK agreed with a peer opens a connection only while
    /// `directory` still lists the key its handshake proved as the peer's approved one: each
    /// connection offering it re-reads the peer's entry (the directory's own cache bounds how
    /// often the chain is asked). A revoked, pending, unknown or replaced key refuses the TLS
    /// handshake and drops the PSK ([`TlsPskError::PskKeyLost`]). A directory that cannot answer
    /// keeps the already-proved PSK usable, with a WARN: an outage is not a revocation.
    ///
    /// The look-up runs inside OpenSSL's PSK callback, on the task driving the TLS accept: a
    /// [`KeyDirectory`] that reads a chain must not block the event loop (sipd's
    /// `ChainKeyDirectory` moves the read off it, as during the handshake).
    pub fn with_key_recheck(
        config: &TlsPskConfig,
        store: PskStore,
        directory: KeyRecheck,
    ) -> Result<Self, TlsPskError> {
        Self::build(config, store, Some(directory))
    }

    fn build(
        config: &TlsPskConfig,
        store: PskStore,
        directory: Option<KeyRecheck>,
    ) -> Result<Self, TlsPskError> {
        let recheck = directory.map(Recheck::new);
        let mut b = config.builder()?;
        b.set_num_tickets(0)?;
        b.set_psk_server_callback(move |ssl, identity, out| {
            let identity = identity.unwrap_or_default();
            let found = match store.lookup(identity, Instant::now()) {
                Lookup::Found(entry) => {
                    let fresh = ssl
                        .ex_data(just_proved_index())
                        .is_some_and(|p| p.0 == identity);
                    // The store's lock is released: the re-check may wait for the chain.
                    if let (Some(recheck), Some(peer), false) = (&recheck, &entry.peer, fresh)
                        && let Err(reason) = recheck.still_proved(peer, entry.peer_key.as_ref())
                    {
                        store.remove(identity);
                        ssl.set_ex_data(
                            server_index(),
                            ServerPsk::KeyLost {
                                identity: identity.to_vec(),
                                peer: peer.clone(),
                                reason,
                            },
                        );
                        return Ok(0);
                    }
                    let key = entry.psk.dangerous_as_bytes();
                    if out.len() < key.len() {
                        return Ok(0);
                    }
                    out[..key.len()].copy_from_slice(key);
                    ssl.set_ex_data(
                        server_index(),
                        ServerPsk::Accepted {
                            identity: identity.to_vec(),
                            peer: entry.peer,
                            peer_key: entry.peer_key,
                        },
                    );
                    return Ok(key.len());
                }
                Lookup::Expired => ServerPsk::Expired(identity.to_vec()),
                Lookup::Unknown => ServerPsk::Unknown(identity.to_vec()),
            };
            ssl.set_ex_data(server_index(), found);
            // 0 = no PSK: OpenSSL then fails the handshake (there is no certificate to fall back on).
            Ok(0)
        });
        Ok(Self {
            ctx: b.build(),
            timeout: config.handshake_timeout,
        })
    }

    /// Runs the TLS server handshake on `stream`.
    pub async fn accept<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        stream: S,
    ) -> Result<TlsPskStream<S>, TlsPskError> {
        self.accept_with(stream, None).await
    }

    /// Like [`TlsPskServer::accept`] right after a handshake on the same connection stored the
    /// PSK `identity`: that PSK's key is not re-read (the handshake has just read it).
    pub(crate) async fn accept_after_handshake<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        stream: S,
        identity: Vec<u8>,
    ) -> Result<TlsPskStream<S>, TlsPskError> {
        self.accept_with(stream, Some(identity)).await
    }

    async fn accept_with<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        stream: S,
        just_proved: Option<Vec<u8>>,
    ) -> Result<TlsPskStream<S>, TlsPskError> {
        let mut ssl = Ssl::new(&self.ctx)?;
        if let Some(identity) = just_proved {
            ssl.set_ex_data(just_proved_index(), JustProved(identity));
        }
        let mut s = SslStream::new(ssl, stream)?;
        let result = tokio::time::timeout(self.timeout, Pin::new(&mut s).accept()).await;
        let info = s.ssl().ex_data(server_index()).cloned();
        match (result, info) {
            (
                Ok(Ok(())),
                Some(ServerPsk::Accepted {
                    identity,
                    peer,
                    peer_key,
                }),
            ) => {
                tracing::debug!(identity = %printable(&identity), version = s.ssl().version_str(), "TLS-PSK accepted");
                Ok(TlsPskStream {
                    inner: s,
                    identity,
                    peer,
                    peer_key,
                })
            }
            // Should OpenSSL ever complete without our callback accepting a PSK, refuse anyway.
            (Ok(Ok(())), _) => Err(TlsPskError::UnknownPskIdentity(String::new())),
            (_, Some(ServerPsk::Expired(id))) => Err(TlsPskError::PskExpired(printable(&id))),
            (
                _,
                Some(ServerPsk::KeyLost {
                    identity,
                    peer,
                    reason,
                }),
            ) => Err(TlsPskError::PskKeyLost {
                identity: printable(&identity),
                peer,
                reason,
            }),
            (_, Some(ServerPsk::Unknown(id))) => {
                Err(TlsPskError::UnknownPskIdentity(printable(&id)))
            }
            (Ok(Err(e)), _) => Err(e.into()),
            (Err(_), _) => Err(TlsPskError::Timeout("TLS handshake")),
        }
    }
}

/// The TLS-PSK client: offers one PSK per connection.
#[derive(Clone)]
pub struct TlsPskClient {
    ctx: SslContext,
    timeout: Duration,
}

impl TlsPskClient {
    /// A client context.
    pub fn new(config: &TlsPskConfig) -> Result<Self, TlsPskError> {
        let mut b = config.builder()?;
        b.set_psk_client_callback(|ssl, _hint, identity_out, psk_out| {
            let Some(mine) = ssl.ex_data(client_index()) else {
                return Ok(0);
            };
            // The identity is a C string: it needs room for the terminating NUL.
            if mine.identity.len() + 1 > identity_out.len() || mine.key.len() > psk_out.len() {
                return Ok(0);
            }
            identity_out[..mine.identity.len()].copy_from_slice(&mine.identity);
            identity_out[mine.identity.len()] = 0;
            psk_out[..mine.key.len()].copy_from_slice(&mine.key);
            Ok(mine.key.len())
        });
        Ok(Self {
            ctx: b.build(),
            timeout: config.handshake_timeout,
        })
    }

    /// Opens TLS on `stream` with the PSK of a finished handshake (refused locally once expired).
    pub async fn connect_established<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        stream: S,
        established: &Established,
    ) -> Result<TlsPskStream<S>, TlsPskError> {
        if established.is_expired(Instant::now()) {
            return Err(TlsPskError::LocalPskExpired);
        }
        let mut s = self
            .connect(
                stream,
                established.identity.to_hex().as_bytes(),
                established.psk.dangerous_as_bytes(),
            )
            .await?;
        s.peer = Some(established.peer.clone());
        s.peer_key = Some(established.peer_key.clone());
        Ok(s)
    }

    /// Opens TLS on `stream` with any PSK identity and key (e.g. to talk to `openssl s_server -psk`).
    pub async fn connect<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        stream: S,
        identity: &[u8],
        key: &[u8],
    ) -> Result<TlsPskStream<S>, TlsPskError> {
        if identity.len() > 128 {
            return Err(TlsPskError::IdentityTooLong(identity.len()));
        }
        let mut ssl = Ssl::new(&self.ctx)?;
        ssl.set_ex_data(
            client_index(),
            ClientPsk {
                identity: identity.to_vec(),
                key: Zeroizing::new(key.to_vec()),
            },
        );
        let mut s = SslStream::new(ssl, stream)?;
        match tokio::time::timeout(self.timeout, Pin::new(&mut s).connect()).await {
            Ok(Ok(())) => Ok(TlsPskStream {
                inner: s,
                identity: identity.to_vec(),
                peer: None,
                peer_key: None,
            }),
            Ok(Err(e)) => Err(e.into()),
            Err(_) => Err(TlsPskError::Timeout("TLS handshake")),
        }
    }
}

/// The re-check of stored PSKs' peer keys: the directory, and which peers it could not answer
/// for lately.
struct Recheck {
    directory: KeyRecheck,
    /// Peers whose look-up failed, and until when their PSKs are taken without asking again.
    /// Bounded (names come from the store, but many peers may fail at once in an outage).
    unanswered: Mutex<lru::LruCache<IdentityName, Instant>>,
}

impl Recheck {
    /// After a peer's look-up failed, its resumptions skip the re-read for this long: during an
    /// outage a reconnect storm neither waits on the chain once per connection nor logs a WARN
    /// each. Per peer, so one identity's failing look-up never waives another's re-check.
    const UNANSWERED_HOLD: Duration = Duration::from_secs(2);
    const UNANSWERED_CAPACITY: std::num::NonZeroUsize =
        std::num::NonZeroUsize::new(10_000).unwrap();

    fn new(directory: KeyRecheck) -> Self {
        Self {
            directory,
            unanswered: Mutex::new(lru::LruCache::new(Self::UNANSWERED_CAPACITY)),
        }
    }

    fn unanswered(&self) -> std::sync::MutexGuard<'_, lru::LruCache<IdentityName, Instant>> {
        // Each critical section is one map operation: a poisoned map is still consistent.
        self.unanswered.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether `peer`'s entry in the directory still approves `proved` (any approved key when
    /// `None`); `Err` says why not, in words safe to log (a status, never a key). A directory that
    /// cannot answer counts as yes, with one WARN per [`Recheck::UNANSWERED_HOLD`].
    fn still_proved(
        &self,
        peer: &IdentityName,
        proved: Option<&PublicIdentityKey>,
    ) -> Result<(), &'static str> {
        let now = Instant::now();
        if self
            .unanswered()
            .get(peer)
            .is_some_and(|until| now < *until)
        {
            return Ok(());
        }
        let entry = match self.directory.lookup(peer) {
            Ok(entry) => entry,
            Err(DirectoryError::NotApproved { status, .. }) => return Err(status_reason(status)),
            Err(e) => {
                tracing::warn!(%peer, reason = %chaincall_io::ErrorChain(&e), "cannot re-check the PSK's peer key: the proved PSK stays usable");
                self.unanswered()
                    .put(peer.clone(), Instant::now() + Self::UNANSWERED_HOLD);
                return Ok(());
            }
        };
        self.unanswered().pop(peer);
        key_still_proved(entry, proved)
    }
}

/// Whether `entry` still approves `proved` (any approved key when `None`).
fn key_still_proved(
    entry: chaincall_identity::DirectoryEntry,
    proved: Option<&PublicIdentityKey>,
) -> Result<(), &'static str> {
    match (entry.status, entry.key, proved) {
        (KeyStatus::Approved, Some(key), Some(proved)) if key != *proved => {
            Err("its on-chain key was replaced")
        }
        (KeyStatus::Approved, Some(_), _) => Ok(()),
        (KeyStatus::Approved, None, _) => Err("its approved entry has no key"),
        (status, _, _) => Err(status_reason(status)),
    }
}

fn status_reason(status: KeyStatus) -> &'static str {
    match status {
        KeyStatus::Revoked => "its on-chain key was revoked",
        KeyStatus::Pending => "its on-chain key is pending, not approved",
        KeyStatus::Unknown => "it is unknown in the keystore",
        _ => "its on-chain key is not approved",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printable_escapes_controls_non_ascii_and_backslash_and_caps_the_length() {
        assert_eq!(printable(b"0123abcdef"), "0123abcdef");
        assert_eq!(
            printable(b"a\r\nb\x1b[2J\\\xff\x00"),
            "a\\x0d\\x0ab\\x1b[2J\\x5c\\xff\\x00"
        );
        let long = [b'z'; 100];
        assert_eq!(
            printable(&long),
            format!("{}... (100 bytes)", "z".repeat(64))
        );
    }
}
