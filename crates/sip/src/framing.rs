//! Cutting a byte stream (TCP, TLS) into SIP messages by Content-Length (RFC 3261 §18.3), with
//! size limits and RFC 5626 §3.5.1 CRLF keep-alives.
//!
//! Feed bytes with [`StreamFramer::push`], then call [`StreamFramer::poll_frame`] until it returns
//! `Ok(None)`. An error is fatal for the connection (§18.3: a stream that cannot be framed must be
//! closed) and sticky: later calls return it again.

use crate::error::{FramingError, ParseError};
use crate::header::{HeaderName, parse_content_length, trim_lws};
use crate::message::ParseLimits;

/// What the framer found at the front of the buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A complete message, to parse with [`crate::message::Framing::Stream`].
    Message(Vec<u8>),
    /// A double-CRLF keep-alive ping; answer with a single CRLF pong (RFC 5626 §3.5.1).
    Ping,
}

/// Buffers a stream and yields whole messages.
#[derive(Debug)]
pub struct StreamFramer {
    buf: Vec<u8>,
    limits: ParseLimits,
    failed: Option<FramingError>,
}

impl StreamFramer {
    /// A framer enforcing `limits` (the message size bounds the buffer too).
    pub fn new(limits: ParseLimits) -> Self {
        StreamFramer {
            buf: Vec::with_capacity(4096),
            limits,
            failed: None,
        }
    }

    /// Appends received bytes.
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// Bytes buffered and not yet framed.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The next complete frame, `Ok(None)` when more bytes are needed.
    pub fn poll_frame(&mut self) -> Result<Option<Frame>, FramingError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let r = self.next_inner();
        if let Err(e) = &r {
            self.failed = Some(e.clone());
        }
        r
    }

    fn next_inner(&mut self) -> Result<Option<Frame>, FramingError> {
        // Keep-alives: "\r\n\r\n" is a ping; lone CRLFs between messages are skipped (§7.5).
        if self.buf.starts_with(b"\r\n\r\n") {
            self.buf.drain(..4);
            return Ok(Some(Frame::Ping));
        }
        let lead = self
            .buf
            .iter()
            .take_while(|&&b| b == b'\r' || b == b'\n')
            .count();
        if lead > 0 {
            if lead == self.buf.len() && lead < 4 {
                return Ok(None); // maybe the start of a ping
            }
            self.buf.drain(..lead);
        }
        let Some(head_end) = find_header_end(&self.buf) else {
            if self.buf.len() > self.limits.max_message_size {
                return Err(FramingError::HeadersTooLarge {
                    limit: self.limits.max_message_size,
                });
            }
            return Ok(None);
        };
        let head = &self.buf[..head_end];
        let mut content_length = None;
        let mut count = 0usize;
        for line in head.split(|&b| b == b'\n').skip(1) {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.is_empty() {
                continue;
            }
            if line[0] == b' ' || line[0] == b'\t' {
                continue; // a fold; Content-Length is never folded in practice, and is checked again by the parser.
            }
            count += 1;
            if count > self.limits.max_headers {
                return Err(ParseError::TooManyHeaders {
                    limit: self.limits.max_headers,
                }
                .into());
            }
            let Some(colon) = line.iter().position(|&b| b == b':') else {
                continue;
            };
            let Ok(name) = std::str::from_utf8(&line[..colon]) else {
                continue;
            };
            if HeaderName::parse(trim_lws(name)) == HeaderName::ContentLength {
                let v = std::str::from_utf8(&line[colon + 1..]).unwrap_or("x");
                let n = parse_content_length(v).map_err(|reason| ParseError::Header {
                    name: "Content-Length",
                    reason,
                })?;
                if content_length.is_some_and(|c| c != n) {
                    return Err(ParseError::DuplicateHeader("Content-Length").into());
                }
                content_length = Some(n);
            }
        }
        let body = content_length.ok_or(ParseError::NoContentLength)?;
        let total = head_end
            .checked_add(body)
            .filter(|&t| t <= self.limits.max_message_size)
            .ok_or(FramingError::TooLarge {
                size: head_end.saturating_add(body),
                limit: self.limits.max_message_size,
            })?;
        if self.buf.len() < total {
            return Ok(None);
        }
        let rest = self.buf.split_off(total);
        let frame = std::mem::replace(&mut self.buf, rest);
        Ok(Some(Frame::Message(frame)))
    }
}

/// Index just past the empty line ending the header section (CRLFCRLF, or LFLF tolerated).
fn find_header_end(buf: &[u8]) -> Option<usize> {
    let mut i = 0;
    while i + 1 < buf.len() {
        if buf[i] == b'\n' {
            if buf[i + 1] == b'\n' {
                return Some(i + 2);
            }
            if buf[i + 1] == b'\r' && buf.get(i + 2) == Some(&b'\n') {
                return Some(i + 3);
            }
        }
        i += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSG: &[u8] = b"MESSAGE sip:a@b SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\r\nFrom: <sip:c@d>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: 1\r\nCSeq: 1 MESSAGE\r\nContent-Length: 5\r\n\r\nhello";

    #[test]
    fn frames_split_and_joined_messages() {
        let mut f = StreamFramer::new(ParseLimits::default());
        let mut stream = Vec::new();
        stream.extend_from_slice(b"\r\n\r\n");
        stream.extend_from_slice(MSG);
        stream.extend_from_slice(MSG);
        let mut got = Vec::new();
        for chunk in stream.chunks(7) {
            f.push(chunk);
            while let Some(fr) = f.poll_frame().unwrap() {
                got.push(fr);
            }
        }
        assert_eq!(got.len(), 3);
        assert_eq!(got[0], Frame::Ping);
        assert_eq!(got[1], Frame::Message(MSG.to_vec()));
        assert_eq!(got[2], Frame::Message(MSG.to_vec()));
    }

    #[test]
    fn rejects_missing_length_and_oversize() {
        let mut f = StreamFramer::new(ParseLimits::default());
        f.push(b"OPTIONS sip:a@b SIP/2.0\r\nVia: x\r\n\r\n");
        assert!(matches!(
            f.poll_frame(),
            Err(FramingError::Parse(ParseError::NoContentLength))
        ));
        assert!(f.poll_frame().is_err(), "errors are sticky");
        let mut f = StreamFramer::new(ParseLimits {
            max_message_size: 100,
            max_headers: 10,
        });
        f.push(b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 1000\r\n\r\n");
        assert!(matches!(f.poll_frame(), Err(FramingError::TooLarge { .. })));
        let mut f = StreamFramer::new(ParseLimits {
            max_message_size: 100,
            max_headers: 10,
        });
        f.push(&[b'a'; 200]);
        assert!(matches!(
            f.poll_frame(),
            Err(FramingError::HeadersTooLarge { .. })
        ));
        let mut f = StreamFramer::new(ParseLimits {
            max_message_size: 10_000,
            max_headers: 3,
        });
        f.push(
            b"OPTIONS sip:a@b SIP/2.0\r\nA: 1\r\nB: 1\r\nC: 1\r\nD: 1\r\nContent-Length: 0\r\n\r\n",
        );
        assert!(matches!(
            f.poll_frame(),
            Err(FramingError::Parse(ParseError::TooManyHeaders { .. }))
        ));
    }
}
