//! The generic handshake over a byte stream (TCP): frames in and out, a size limit, a deadline.
//!
//! Each frame is read as a 4-byte header, checked with [`wire::check_header`] (unknown type, version
//! or an oversized length is refused before any body byte is read), then exactly its body: never a
//! byte more, so after the handshake the same stream can carry TLS.

use std::time::Duration;

use chaincall_handshake::wire::{self, HEADER_LEN, MAX_BODY};
use chaincall_handshake::{Established, HandshakeError, Initiator, ReplayCache, Responder};
use chaincall_identity::KeyDirectory;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

use crate::TlsPskError;

/// Reads one handshake frame into `buf` (cleared first): header, limit check, body.
pub async fn read_frame<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut Vec<u8>,
) -> Result<(), TlsPskError> {
    buf.clear();
    buf.resize(HEADER_LEN, 0);
    read_exact(stream, &mut buf[..HEADER_LEN]).await?;
    let (_, len) = wire::check_header(&buf[..HEADER_LEN])?;
    debug_assert!(len <= MAX_BODY);
    buf.resize(HEADER_LEN + len, 0);
    read_exact(stream, &mut buf[HEADER_LEN..]).await
}

async fn read_exact<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut [u8],
) -> Result<(), TlsPskError> {
    match stream.read_exact(buf).await {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            Err(TlsPskError::Closed("handshake"))
        }
        Err(e) => Err(e.into()),
    }
}

/// Runs an initiator to completion over `stream` within `timeout`.
///
/// On failure the alert (if any) is sent before the error is returned.
pub async fn initiate<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    mut initiator: Initiator,
    timeout: Duration,
) -> Result<Established, TlsPskError> {
    let deadline = Instant::now() + timeout;
    let run = async {
        let mut buf = Vec::with_capacity(HEADER_LEN + MAX_BODY);
        loop {
            flush_initiator(stream, &mut initiator).await?;
            if let Some(done) = initiator.poll_established() {
                // Message 3 went out with the flush above.
                return Ok(done);
            }
            read_frame(stream, &mut buf).await?;
            let now = std::time::Instant::now();
            if let Err(err) = initiator.handle_input(&buf, now) {
                // Best effort: tell the peer why; the error stands either way.
                let _ = flush_initiator(stream, &mut initiator).await;
                return Err(err.into());
            }
        }
    };
    match tokio::time::timeout_at(deadline, run).await {
        Ok(result) => result,
        Err(_) => {
            initiator.handle_timeout(std::time::Instant::now() + timeout);
            Err(TlsPskError::Timeout("handshake"))
        }
    }
}

async fn flush_initiator<S: AsyncWrite + Unpin>(
    stream: &mut S,
    initiator: &mut Initiator,
) -> Result<(), TlsPskError> {
    while let Some(frame) = initiator.poll_transmit() {
        stream.write_all(&frame).await?;
    }
    stream.flush().await?;
    Ok(())
}

/// Runs a responder to completion over `stream` within `timeout`. The replay cache locks itself
/// around its own check-and-insert only: a message 1 whose initiator's key is still being looked up
/// (a chain read) holds up no other handshake.
pub async fn respond<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    mut responder: Responder,
    directory: &(dyn KeyDirectory + Sync),
    replay: &ReplayCache,
    timeout: Duration,
) -> Result<Established, TlsPskError> {
    let run = async {
        let mut buf = Vec::with_capacity(HEADER_LEN + MAX_BODY);
        loop {
            read_frame(stream, &mut buf).await?;
            let result = responder.handle_input(&buf, directory, replay, std::time::Instant::now());
            while let Some(frame) = responder.poll_transmit() {
                stream.write_all(&frame).await?;
            }
            stream.flush().await?;
            result?;
            if let Some(done) = responder.poll_established() {
                return Ok(done);
            }
        }
    };
    match tokio::time::timeout(timeout, run).await {
        Ok(result) => result,
        Err(_) => Err(TlsPskError::Timeout("handshake")),
    }
}

/// Maps a handshake error for callers that only want to know whether to retry.
pub fn is_retryable(err: &TlsPskError) -> bool {
    matches!(
        err,
        TlsPskError::Timeout(_)
            | TlsPskError::Io(_)
            | TlsPskError::Closed(_)
            | TlsPskError::Handshake(HandshakeError::Replay)
            | TlsPskError::Handshake(HandshakeError::Directory(
                chaincall_identity::DirectoryError::Unavailable(_)
            ))
    )
}
