//! Handshake and TLS-PSK on one TCP connection.

use std::sync::Arc;
use std::time::Duration;

use chaincall_handshake::{
    Established, HandshakeConfig, HandshakeError, Initiator, LocalIdentity, MessageType,
    ReplayCache, Responder,
};
use chaincall_identity::{DirectoryEntry, DirectoryError, IdentityName, KeyDirectory};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use crate::{PskStore, TlsPskClient, TlsPskError, TlsPskServer, TlsPskStream, transport};

/// The first byte of a TLS handshake record (RFC 8446 §5.1, `ContentType.handshake`).
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// Everything a responder needs to answer handshakes: our identity, the key directory (the chain),
/// and the replay cache shared by all connections. Cheap to clone.
#[derive(Clone)]
pub struct HandshakeService {
    config: HandshakeConfig,
    local: LocalIdentity,
    directory: Arc<dyn KeyDirectory + Send + Sync>,
    replay: Arc<ReplayCache>,
}

impl HandshakeService {
    /// A service answering as `local`, looking initiators up in `directory`. The replay cache keeps
    /// message 1s for the PSK lifetime, up to [`ReplayCache::DEFAULT_CAPACITY`].
    pub fn new(
        config: HandshakeConfig,
        local: LocalIdentity,
        directory: Arc<dyn KeyDirectory + Send + Sync>,
    ) -> Self {
        let replay = ReplayCache::new(ReplayCache::DEFAULT_CAPACITY, config.psk_lifetime);
        Self {
            config,
            local,
            directory,
            replay: Arc::new(replay),
        }
    }

    /// Answers one handshake on `stream` (handshake frames only; the stream stays usable after).
    pub async fn respond<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        stream: &mut S,
    ) -> Result<Established, TlsPskError> {
        let responder = Responder::new(
            self.config.clone(),
            self.local.clone(),
            std::time::Instant::now(),
        );
        let directory = Remembering {
            inner: &*self.directory,
            asked: std::sync::Mutex::new(None),
        };
        let result = transport::respond(
            stream,
            responder,
            &directory,
            &self.replay,
            self.config.handshake_timeout,
        )
        .await;
        match &result {
            Ok(e) => {
                tracing::info!(peer = %e.peer, protocol = %e.protocol, identity = %e.identity, "handshake done")
            }
            Err(err) => {
                tracing::info!(error = %err, "handshake refused");
                // Once the directory gave a key, any failure may be a stale cached key: the
                // initiator's check of our message 2 (which binds that key) fails first, and its
                // alert can be lost when it closes at once (a reset). The next attempt reads the
                // key afresh. A refusal by the directory itself or a replay says nothing about it.
                if !matches!(
                    err,
                    TlsPskError::Handshake(HandshakeError::Directory(_) | HandshakeError::Replay)
                ) && let Some(name) = directory.asked()
                {
                    self.directory.forget(&name);
                }
            }
        }
        result
    }
}

/// A directory that remembers the last identity it was asked about (the initiator, in a
/// responder's handshake).
struct Remembering<'a> {
    inner: &'a (dyn KeyDirectory + Send + Sync),
    asked: std::sync::Mutex<Option<IdentityName>>,
}

impl Remembering<'_> {
    fn asked(&self) -> Option<IdentityName> {
        self.asked.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

impl KeyDirectory for Remembering<'_> {
    fn lookup(&self, name: &IdentityName) -> Result<DirectoryEntry, DirectoryError> {
        *self.asked.lock().unwrap_or_else(|e| e.into_inner()) = Some(name.clone());
        self.inner.lookup(name)
    }
}

/// A TLS-PSK server that also answers handshakes on the same port: a connection starting with a
/// handshake frame runs the handshake, stores the PSK, then continues with TLS; one starting with a
/// TLS record goes straight to TLS with a stored PSK.
#[derive(Clone)]
pub struct PskServer {
    tls: TlsPskServer,
    store: PskStore,
    handshake: Option<HandshakeService>,
    first_byte_timeout: Duration,
}

impl PskServer {
    /// A server over `store`; with `handshake`, it answers handshakes too, and a stored PSK from
    /// one opens a connection only while the handshake's directory still approves the key it
    /// proved ([`TlsPskServer::with_key_recheck`]).
    pub fn new(
        tls: &crate::TlsPskConfig,
        store: PskStore,
        handshake: Option<HandshakeService>,
    ) -> Result<Self, TlsPskError> {
        // PSKs from our handshakes die with the key it proved: re-read through its directory.
        let server = match &handshake {
            Some(h) => TlsPskServer::with_key_recheck(tls, store.clone(), h.directory.clone())?,
            None => TlsPskServer::new(tls, store.clone())?,
        };
        Ok(Self {
            tls: server,
            store,
            handshake,
            first_byte_timeout: tls.handshake_timeout,
        })
    }

    /// The PSK store (to add provisioned PSKs, purge, or drop a revoked peer's).
    pub fn store(&self) -> &PskStore {
        &self.store
    }

    /// The directory the handshake looks peers up in (and stored PSKs are re-checked against),
    /// when this server answers handshakes.
    pub fn directory(&self) -> Option<&Arc<dyn KeyDirectory + Send + Sync>> {
        self.handshake.as_ref().map(|h| &h.directory)
    }

    /// Serves one accepted connection up to an established TLS stream. Returns the handshake's
    /// result too when one ran on this connection.
    pub async fn accept(
        &self,
        mut stream: TcpStream,
    ) -> Result<(TlsPskStream<TcpStream>, Option<Established>), TlsPskError> {
        let mut first = [0u8; 1];
        let n = tokio::time::timeout(self.first_byte_timeout, stream.peek(&mut first))
            .await
            .map_err(|_| TlsPskError::Timeout("first byte"))??;
        if n == 0 {
            return Err(TlsPskError::Closed("first byte"));
        }
        if first[0] == TLS_HANDSHAKE_RECORD {
            return Ok((self.tls.accept(stream).await?, None));
        }
        if MessageType::from_byte(first[0]).is_err() {
            return Err(TlsPskError::UnknownFirstByte(first[0]));
        }
        let service = self
            .handshake
            .as_ref()
            .ok_or(TlsPskError::HandshakeNotOffered)?;
        let done = service.respond(&mut stream).await?;
        self.store.insert_established(&done);
        let identity = done.identity.to_hex().into_bytes();
        let tls = self.tls.accept_after_handshake(stream, identity).await?;
        Ok((tls, Some(done)))
    }
}

/// The client side of [`PskServer`]: runs `initiator` on `stream`, then TLS with the fresh PSK on
/// the same stream. Keep the returned [`Established`] to reconnect with
/// [`TlsPskClient::connect_established`] until it expires.
pub async fn connect_with_handshake<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    initiator: Initiator,
    handshake_timeout: Duration,
    tls: &TlsPskClient,
) -> Result<(TlsPskStream<S>, Established), TlsPskError> {
    let established = transport::initiate(&mut stream, initiator, handshake_timeout).await?;
    let tls = tls.connect_established(stream, &established).await?;
    Ok((tls, established))
}
