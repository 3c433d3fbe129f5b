//! The generic handshake over a byte stream (TCP): frames in and out, a size limit, a deadline.
//!
//! Each frame is read as a 4-byte header, checked with [`wire::check_header`] (unknown type, version
//! or an oversized length is refused before any body byte is read), then exactly its body: never a
//! byte more, so after the handshake the same stream can carry TLS.

use std::time::Duration;

use chaincall_handshake::wire::{self, HEADER_LEN, MAX_BODY};
use chaincall_handshake::{
    Established, HandshakeError, HandshakeOutput, Initiator, ReplayCache, Responder,
};
use chaincall_identity::KeyDirectory;
use chaincall_io::Output;
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
            if let Some(done) = flush(stream, || initiator.poll_output()).await? {
                // Message 3 went out with this flush, before the result was yielded.
                return Ok(done);
            }
            read_frame(stream, &mut buf).await?;
            let now = std::time::Instant::now();
            if let Err(err) = initiator.handle_input(&buf, now) {
                // Best effort: tell the peer why; the error stands either way.
                let _ = flush(stream, || initiator.poll_output()).await;
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

/// Drains a handshake machine until `Timeout`: writes each frame to the stream (its destination is
/// this connection, `Transmit<()>`), flushes, and returns the result if it finished.
async fn flush<S: AsyncWrite + Unpin>(
    stream: &mut S,
    mut poll_output: impl FnMut() -> HandshakeOutput,
) -> Result<Option<Established>, TlsPskError> {
    let mut done = None;
    loop {
        match poll_output() {
            Output::Transmit(frame) => stream.write_all(&frame.contents).await?,
            Output::Event(established) => done = Some(established),
            Output::Timeout(_) => break,
        }
    }
    stream.flush().await?;
    Ok(done)
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
            let done = flush(stream, || responder.poll_output()).await?;
            result?;
            if let Some(done) = done {
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
