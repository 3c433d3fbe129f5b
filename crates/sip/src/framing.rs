//! Cutting a byte stream (TCP, TLS) into SIP messages by Content-Length (RFC 3261 §18.3), with
//! size limits and RFC 5626 §3.5.1 CRLF keep-alives.
//!
//! Feed bytes with [`StreamFramer::push`], then call [`StreamFramer::poll_frame`] until it returns
//! `Ok(None)`. An error is fatal for the connection (§18.3: a stream that cannot be framed must be
//! closed) and sticky: later calls return it again.

use crate::error::{FramingError, ParseError};
use crate::header::{HeaderName, parse_content_length, trim_lws};
use crate::message::ParseLimits;

/// An RFC 5626 §3.5.1 keep-alive ping.
const PING: &[u8] = b"\r\n\r\n";

/// What the framer found at the front of the buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A complete message, to parse with [`crate::message::Framing::Stream`].
    Message(Vec<u8>),
    /// A double-CRLF keep-alive ping; answer with a single CRLF pong (RFC 5626 §3.5.1).
    Ping,
}

/// Buffers a stream and yields whole messages.
///
/// Every byte is examined a bounded number of times however the stream is cut: the search for the
/// end of a header section resumes where the previous push left it, a header section is parsed
/// once, and consumed bytes are dropped in amortised O(1) per byte. A peer sending one byte at a
/// time costs linear work, not quadratic.
#[derive(Debug)]
pub struct StreamFramer {
    buf: Vec<u8>,
    /// Bytes at the front of `buf` already framed (dropped at a later push).
    start: usize,
    /// How many bytes of the pending message have been searched for the end of its headers.
    scanned: usize,
    /// The pending message's full size, once its header section has been read.
    message_len: Option<usize>,
    limits: ParseLimits,
    failed: Option<FramingError>,
    /// Bytes examined so far (searching, parsing headers): evidence of linear work in tests.
    examined: u64,
}

impl StreamFramer {
    /// A framer enforcing `limits` (the message size bounds the buffer too).
    pub fn new(limits: ParseLimits) -> Self {
        StreamFramer {
            buf: Vec::with_capacity(4096),
            start: 0,
            scanned: 0,
            message_len: None,
            limits,
            failed: None,
            examined: 0,
        }
    }

    /// Appends received bytes.
    pub fn push(&mut self, data: &[u8]) {
        // Drop framed bytes once they are at least half the buffer: each byte moves O(1) times.
        if self.start > 0 && self.start >= self.buf.len() - self.start {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(data);
    }

    /// Bytes buffered and not yet framed.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
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

    /// Marks `n` bytes at the front as framed; the next message starts after them.
    fn consume(&mut self, n: usize) {
        self.start += n;
        self.scanned = 0;
        self.message_len = None;
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        }
    }

    fn next_inner(&mut self) -> Result<Option<Frame>, FramingError> {
        if let Some(total) = self.message_len {
            return Ok(self.take_message(total));
        }
        if self.scanned == 0 {
            // Between messages. Keep-alives: "\r\n\r\n" is a ping; lone CRLFs are skipped (§7.5).
            // Decided one byte at a time, on at most the next four bytes, so the outcome does not
            // depend on how the stream was cut into pushes.
            loop {
                let pending = &self.buf[self.start..];
                if pending.starts_with(PING) {
                    self.examined += 4;
                    self.consume(4);
                    return Ok(Some(Frame::Ping));
                }
                if PING.starts_with(pending) {
                    return Ok(None); // nothing, or maybe the start of a ping
                }
                self.examined += 1;
                if pending[0] != b'\r' && pending[0] != b'\n' {
                    break;
                }
                self.consume(1);
            }
        }
        let pending = &self.buf[self.start..];
        // Resume the search a few bytes back: a terminator may straddle the previous end.
        let from = self.scanned.saturating_sub(3);
        let found = find_header_end(pending, from);
        let searched_to = found.unwrap_or(pending.len()).min(pending.len());
        self.examined += searched_to.saturating_sub(from) as u64;
        // The header section must end within the message limit; checked on the found end too, so
        // a stream cut into other pushes fails the same way.
        let too_large = FramingError::HeadersTooLarge {
            limit: self.limits.max_message_size,
        };
        if found.is_some_and(|end| end > self.limits.max_message_size) {
            return Err(too_large);
        }
        let Some(head_end) = found else {
            self.scanned = pending.len();
            if pending.len() > self.limits.max_message_size {
                return Err(too_large);
            }
            return Ok(None);
        };
        self.examined += head_end as u64;
        let body = content_length(&pending[..head_end], &self.limits)?;
        let total = head_end
            .checked_add(body)
            .filter(|&t| t <= self.limits.max_message_size)
            .ok_or(FramingError::TooLarge {
                size: head_end.saturating_add(body),
                limit: self.limits.max_message_size,
            })?;
        self.message_len = Some(total);
        Ok(self.take_message(total))
    }

    /// The pending message of `total` bytes, once all of it is buffered.
    fn take_message(&mut self, total: usize) -> Option<Frame> {
        if self.buffered() < total {
            return None;
        }
        let frame = self.buf[self.start..self.start + total].to_vec();
        self.consume(total);
        Some(Frame::Message(frame))
    }

    /// Bytes examined so far.
    #[cfg(test)]
    fn examined(&self) -> u64 {
        self.examined
    }
}

/// The Content-Length of a header section (`head` ends with its empty line), checking the header
/// count on the way.
fn content_length(head: &[u8], limits: &ParseLimits) -> Result<usize, FramingError> {
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
        if count > limits.max_headers {
            return Err(ParseError::TooManyHeaders {
                limit: limits.max_headers,
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
    content_length.ok_or_else(|| ParseError::NoContentLength.into())
}

/// Index just past the empty line ending the header section (CRLFCRLF, or LFLF tolerated),
/// searching from `from`.
fn find_header_end(buf: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
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
    use proptest::prelude::*;

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

    /// The framing error says its own part and the parse error comes from `source()`, so the
    /// chain (what sipd and the phone log) tells the parse error once.
    #[test]
    fn framing_error_tells_its_parse_cause_once() {
        let mut f = StreamFramer::new(ParseLimits::default());
        f.push(b"OPTIONS sip:a@b SIP/2.0\r\nVia: x\r\n\r\n");
        let err = f.poll_frame().unwrap_err();
        let cause = ParseError::NoContentLength.to_string();
        let told = chaincall_io::ErrorChain(&err).to_string();
        assert_eq!(told, format!("cannot frame message: {cause}"));
        assert_eq!(told.matches(&cause).count(), 1, "{told}");
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

    /// A message with `pad` bytes of extra headers and a `body_len`-byte body.
    fn message(pad: usize, body_len: usize) -> Vec<u8> {
        let mut m =
            format!("MESSAGE sip:a@b SIP/2.0\r\nContent-Length: {body_len}\r\n").into_bytes();
        while m.len() < pad {
            m.extend_from_slice(
                b"X-Pad: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n",
            );
        }
        m.extend_from_slice(b"\r\n");
        m.extend(std::iter::repeat_n(b'x', body_len));
        m
    }

    #[test]
    fn one_byte_at_a_time_costs_linear_work() {
        let limits = ParseLimits {
            max_message_size: 65_535,
            max_headers: 1_000,
        };
        let mut stream = message(60_000, 4_000);
        let msg_len = stream.len();
        stream.extend_from_slice(b"\r\n\r\n");
        let mut f = StreamFramer::new(limits);
        let mut got = Vec::new();
        for b in &stream {
            f.push(std::slice::from_ref(b));
            while let Some(frame) = f.poll_frame().unwrap() {
                got.push(frame);
            }
        }
        assert_eq!(
            got,
            vec![Frame::Message(stream[..msg_len].to_vec()), Frame::Ping]
        );
        assert_eq!(f.buffered(), 0);
        // Rescanning from the start on every push examined about n²/2 ≈ 2·10⁹ bytes here.
        let examined = f.examined();
        assert!(
            examined <= 8 * stream.len() as u64,
            "{examined} bytes examined for a {}-byte stream",
            stream.len()
        );
    }

    /// Everything a framer yields for `stream` cut at `cuts`: the frames, then the error if any.
    fn frame_all(stream: &[u8], cuts: &[usize]) -> (Vec<Frame>, Option<FramingError>) {
        let limits = ParseLimits {
            max_message_size: 400,
            max_headers: 12,
        };
        let mut f = StreamFramer::new(limits);
        let mut frames = Vec::new();
        let mut at = 0;
        for &cut in cuts.iter().chain(std::iter::once(&stream.len())) {
            f.push(&stream[at..cut]);
            at = cut;
            loop {
                match f.poll_frame() {
                    Ok(Some(frame)) => frames.push(frame),
                    Ok(None) => break,
                    Err(e) => return (frames, Some(e)),
                }
            }
        }
        (frames, None)
    }

    fn piece() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            4 => (0usize..200, 0usize..120).prop_map(|(pad, body)| message(pad, body)),
            1 => Just(b"\r\n\r\n".to_vec()),
            1 => Just(b"\r\n".to_vec()),
            1 => Just(b"\n".to_vec()),
            1 => proptest::collection::vec(
                prop_oneof![Just(b'\r'), Just(b'\n'), Just(b':'), Just(b'a'), any::<u8>()],
                0..40,
            ),
            1 => Just(b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 999\r\n\r\n".to_vec()),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

        /// However a byte stream is cut into pushes, the framer yields the same messages, pings
        /// and error as when it arrives in one push.
        #[test]
        fn any_split_yields_the_same_frames_as_one_push(
            pieces in proptest::collection::vec(piece(), 0..8),
            cuts in proptest::collection::vec(any::<proptest::sample::Index>(), 0..24),
            bytewise in any::<bool>(),
        ) {
            let stream = pieces.concat();
            let mut cuts: Vec<usize> = if bytewise {
                (1..stream.len()).collect()
            } else {
                cuts.iter().map(|c| c.index(stream.len() + 1)).collect()
            };
            cuts.sort_unstable();
            prop_assert_eq!(frame_all(&stream, &cuts), frame_all(&stream, &[]));
        }
    }
}
