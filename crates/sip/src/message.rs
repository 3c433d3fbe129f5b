//! Zero-copy SIP message parsing (RFC 3261 §7, §18.3, §25) and serialization.
//!
//! [`Message::parse`] borrows the datagram: the start line, every header name and value, and the
//! body are slices of the input. Typed accessors parse on demand, also without copying.
//! [`MessageBuf`] is the owned form for building and editing; [`Rewriter`] re-emits a received
//! message with a proxy's edits (new top Via, one Route fewer, Max-Forwards minus one) without
//! building an intermediate owned message.

use crate::error::ParseError;
use crate::header::{
    self, AuthHeader, CSeq, Contact, HeaderName, Method, NameAddr, Via, is_lws,
    parse_content_length, split_list, trim_lws,
};

/// Limits applied while parsing untrusted input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParseLimits {
    /// Largest message accepted, header section and body together. Default 65,535: the largest UDP
    /// payload (RFC 3261 §18.1.1 leaves stream sizes open; a bound keeps memory bounded).
    pub max_message_size: usize,
    /// Most header fields accepted. Default 256.
    pub max_headers: usize,
}

impl Default for ParseLimits {
    fn default() -> Self {
        ParseLimits {
            max_message_size: 65_535,
            max_headers: 256,
        }
    }
}

/// Where a message came from: datagrams may lack Content-Length, streams may not (RFC 3261 §18.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// A UDP datagram: octets after Content-Length are ignored; without it the body is the rest.
    Datagram,
    /// A frame cut from a stream by [`crate::framing::StreamFramer`]: Content-Length is mandatory.
    Stream,
}

/// The first line of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartLine<'a> {
    /// `Method SP Request-URI SP SIP-Version` (§7.1).
    Request {
        /// The method.
        method: Method<'a>,
        /// The Request-URI as written.
        uri: &'a str,
    },
    /// `SIP-Version SP Status-Code SP Reason-Phrase` (§7.2).
    Response {
        /// Status code, 100..=699.
        code: u16,
        /// Reason phrase (may be empty, RFC 4475 §3.1.1.13).
        reason: &'a str,
    },
}

/// One header field line, borrowed. The value is raw: folded lines keep their CRLF (see
/// [`Header::unfolded`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header<'a> {
    /// The recognized name.
    pub name: HeaderName<'a>,
    /// The name as written (compact forms, case kept).
    pub raw_name: &'a str,
    /// The value with leading and trailing white space removed.
    pub value: &'a str,
}

impl<'a> Header<'a> {
    /// The value with each run of linear white space containing a line fold replaced by one SP
    /// (RFC 3261 §7.3.1). Borrows when the value was not folded.
    pub fn unfolded(&self) -> std::borrow::Cow<'a, str> {
        if !self.value.contains(['\r', '\n']) {
            return std::borrow::Cow::Borrowed(self.value);
        }
        let mut out = String::with_capacity(self.value.len());
        let mut in_ws = false;
        for c in self.value.chars() {
            if c.is_ascii() && is_lws(c as u8) {
                if !in_ws {
                    out.push(' ');
                }
                in_ws = true;
            } else {
                in_ws = false;
                out.push(c);
            }
        }
        std::borrow::Cow::Owned(out)
    }
}

/// A parsed SIP message borrowing its input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message<'a> {
    start: StartLine<'a>,
    headers: Vec<Header<'a>>,
    body: &'a [u8],
    len: usize,
}

fn find_line_end(buf: &[u8], from: usize) -> Option<(usize, usize)> {
    // Returns (end of line content, start of next line). CRLF per §7; a bare LF is tolerated.
    let rel = buf[from..].iter().position(|&b| b == b'\n')?;
    let nl = from + rel;
    let end = if nl > from && buf[nl - 1] == b'\r' {
        nl - 1
    } else {
        nl
    };
    Some((end, nl + 1))
}

impl<'a> Message<'a> {
    /// Parses a UDP datagram with default limits.
    pub fn parse(buf: &'a [u8]) -> Result<Message<'a>, ParseError> {
        Self::parse_with(buf, Framing::Datagram, &ParseLimits::default())
    }

    /// Parses with explicit framing and limits. Validates the start line, the grammar of the headers
    /// the core uses (Via, From, To, Contact, Route, Record-Route, Call-ID, CSeq, Max-Forwards,
    /// Content-Length, Expires), the mandatory headers (§8.1.1), single-valued headers appearing once,
    /// and that the CSeq method matches a request's method (§8.1.1.5).
    pub fn parse_with(
        buf: &'a [u8],
        framing: Framing,
        limits: &ParseLimits,
    ) -> Result<Message<'a>, ParseError> {
        // RFC 3261 §7.5: implementations should ignore CRLFs before the start line.
        let mut pos = 0;
        while pos < buf.len() && (buf[pos] == b'\r' || buf[pos] == b'\n') {
            pos += 1;
        }
        if pos == buf.len() {
            return Err(ParseError::Empty);
        }
        let (sl_end, mut next) = find_line_end(buf, pos).ok_or(ParseError::Incomplete)?;
        let start_line = std::str::from_utf8(&buf[pos..sl_end])
            .map_err(|_| ParseError::StartLine("not UTF-8"))?;
        let start = parse_start_line(start_line)?;

        let mut headers: Vec<Header<'a>> = Vec::with_capacity(16);
        let mut line_no = 1;
        let body_start;
        loop {
            if next > limits.max_message_size {
                return Err(ParseError::TooLarge {
                    size: buf.len(),
                    limit: limits.max_message_size,
                });
            }
            let (mut end, mut after) = find_line_end(buf, next).ok_or(ParseError::Incomplete)?;
            line_no += 1;
            if end == next {
                body_start = after;
                break;
            }
            let line_start = next;
            // Line folding: continuation lines start with SP or HT (§7.3.1).
            while after < buf.len() && (buf[after] == b' ' || buf[after] == b'\t') {
                let (e, a) = find_line_end(buf, after).ok_or(ParseError::Incomplete)?;
                line_no += 1;
                end = e;
                after = a;
            }
            let line = std::str::from_utf8(&buf[line_start..end])
                .map_err(|_| ParseError::HeaderLine { line: line_no })?;
            let colon = line
                .find(':')
                .ok_or(ParseError::HeaderLine { line: line_no })?;
            let raw_name = line[..colon].trim_end_matches([' ', '\t']);
            if raw_name.is_empty() || !raw_name.bytes().all(header::is_token_char) {
                return Err(ParseError::HeaderLine { line: line_no });
            }
            if headers.len() == limits.max_headers {
                return Err(ParseError::TooManyHeaders {
                    limit: limits.max_headers,
                });
            }
            headers.push(Header {
                name: HeaderName::parse(raw_name),
                raw_name,
                value: trim_lws(&line[colon + 1..]),
            });
            next = after;
        }

        // Content-Length (§18.3, §20.14): one value; bounds the body.
        let mut content_length = None;
        for h in headers
            .iter()
            .filter(|h| h.name == HeaderName::ContentLength)
        {
            let v = parse_content_length(h.value).map_err(|reason| ParseError::Header {
                name: "Content-Length",
                reason,
            })?;
            if content_length.is_some_and(|c| c != v) || content_length.is_some() {
                return Err(ParseError::DuplicateHeader("Content-Length"));
            }
            content_length = Some(v);
        }
        let available = buf.len() - body_start;
        let body_len = match (content_length, framing) {
            (Some(n), _) if n > available => {
                return Err(ParseError::Truncated {
                    declared: n,
                    available,
                });
            }
            (Some(n), _) => n,
            (None, Framing::Datagram) => available,
            (None, Framing::Stream) => return Err(ParseError::NoContentLength),
        };
        let len = body_start + body_len;
        if len > limits.max_message_size {
            return Err(ParseError::TooLarge {
                size: len,
                limit: limits.max_message_size,
            });
        }
        let msg = Message {
            start,
            headers,
            body: &buf[body_start..len],
            len,
        };
        msg.validate()?;
        Ok(msg)
    }

    fn validate(&self) -> Result<(), ParseError> {
        const SINGLE: [(HeaderName<'static>, &str); 5] = [
            (HeaderName::To, "To"),
            (HeaderName::From, "From"),
            (HeaderName::CallId, "Call-ID"),
            (HeaderName::CSeq, "CSeq"),
            (HeaderName::MaxForwards, "Max-Forwards"),
        ];
        let mut counts = [0usize; 5];
        let mut has_via = false;
        for h in &self.headers {
            header::validate(h.name, h.value)?;
            if let Some(i) = SINGLE.iter().position(|(n, _)| *n == h.name) {
                counts[i] += 1;
                if counts[i] > 1 {
                    return Err(ParseError::DuplicateHeader(SINGLE[i].1));
                }
            }
            has_via |= h.name == HeaderName::Via;
        }
        // §8.1.1: To, From, CSeq, Call-ID and Via are mandatory in every message (Max-Forwards
        // is mandatory for a UAC, but a proxy receiving a request without it inserts 70, §16.6.3).
        for (i, (_, name)) in SINGLE.iter().enumerate().take(4) {
            if counts[i] == 0 {
                return Err(ParseError::MissingHeader(name));
            }
        }
        if !has_via {
            return Err(ParseError::MissingHeader("Via"));
        }
        if let StartLine::Request { method, .. } = self.start {
            let cseq = self.cseq()?;
            if cseq.method != method {
                return Err(ParseError::CSeqMismatch);
            }
        }
        Ok(())
    }

    /// The start line.
    pub fn start_line(&self) -> &StartLine<'a> {
        &self.start
    }

    /// True for requests.
    pub fn is_request(&self) -> bool {
        matches!(self.start, StartLine::Request { .. })
    }

    /// The request method, or `None` for responses.
    pub fn method(&self) -> Option<Method<'a>> {
        match self.start {
            StartLine::Request { method, .. } => Some(method),
            StartLine::Response { .. } => None,
        }
    }

    /// The Request-URI, or `None` for responses.
    pub fn request_uri(&self) -> Option<&'a str> {
        match self.start {
            StartLine::Request { uri, .. } => Some(uri),
            StartLine::Response { .. } => None,
        }
    }

    /// The status code, or `None` for requests.
    pub fn status(&self) -> Option<u16> {
        match self.start {
            StartLine::Response { code, .. } => Some(code),
            StartLine::Request { .. } => None,
        }
    }

    /// All header lines in order.
    pub fn headers(&self) -> &[Header<'a>] {
        &self.headers
    }

    /// The body (exactly Content-Length octets when given).
    pub fn body(&self) -> &'a [u8] {
        self.body
    }

    /// Octets of the input this message used; trailing octets of a datagram are ignored (§18.3).
    pub fn wire_len(&self) -> usize {
        self.len
    }

    /// The first header of this name.
    pub fn header(&self, name: HeaderName<'_>) -> Option<&Header<'a>> {
        self.headers.iter().find(|h| h.name == name)
    }

    /// The first value of a header by name (raw, trimmed).
    pub fn header_value(&self, name: HeaderName<'_>) -> Option<&'a str> {
        self.header(name).map(|h| h.value)
    }

    /// Every value of a header, across lines and comma-separated items (§7.3.1), in order.
    pub fn values<'s>(&'s self, name: HeaderName<'s>) -> impl Iterator<Item = &'a str> + 's {
        self.headers
            .iter()
            .filter(move |h| h.name == name)
            .flat_map(move |h| -> Box<dyn Iterator<Item = &'a str>> {
                if name.is_list() {
                    Box::new(split_list(h.value))
                } else {
                    Box::new(std::iter::once(h.value))
                }
            })
    }

    /// Via values, topmost first (validated at parse time).
    pub fn vias(&self) -> impl Iterator<Item = Via<'a>> + '_ {
        self.values(HeaderName::Via)
            .filter_map(|v| Via::parse(v).ok())
    }

    /// The topmost Via (always present in a parsed message).
    pub fn top_via(&self) -> Result<Via<'a>, ParseError> {
        self.vias().next().ok_or(ParseError::MissingHeader("Via"))
    }

    /// From (validated at parse time).
    pub fn from(&self) -> Result<NameAddr<'a>, ParseError> {
        self.name_addr(HeaderName::From, "From")
    }

    /// To (validated at parse time).
    pub fn to(&self) -> Result<NameAddr<'a>, ParseError> {
        self.name_addr(HeaderName::To, "To")
    }

    fn name_addr(
        &self,
        name: HeaderName<'static>,
        s: &'static str,
    ) -> Result<NameAddr<'a>, ParseError> {
        let v = self
            .header_value(name)
            .ok_or(ParseError::MissingHeader(s))?;
        NameAddr::parse(v).map_err(|reason| ParseError::Header { name: s, reason })
    }

    /// Call-ID.
    pub fn call_id(&self) -> Result<&'a str, ParseError> {
        self.header_value(HeaderName::CallId)
            .ok_or(ParseError::MissingHeader("Call-ID"))
    }

    /// CSeq.
    pub fn cseq(&self) -> Result<CSeq<'a>, ParseError> {
        let v = self
            .header_value(HeaderName::CSeq)
            .ok_or(ParseError::MissingHeader("CSeq"))?;
        CSeq::parse(v).map_err(|reason| ParseError::Header {
            name: "CSeq",
            reason,
        })
    }

    /// Max-Forwards, if present (0..=255, validated at parse time).
    pub fn max_forwards(&self) -> Option<u8> {
        self.header_value(HeaderName::MaxForwards)
            .and_then(|v| trim_lws(v).parse::<u64>().ok())
            .and_then(|v| u8::try_from(v).ok())
    }

    /// Expires header value (§20.19), saturating.
    pub fn expires(&self) -> Option<u32> {
        self.header_value(HeaderName::Expires)
            .and_then(header::parse_delta_seconds)
    }

    /// Contact values in order.
    pub fn contacts(&self) -> impl Iterator<Item = Contact<'a>> + '_ {
        self.values(HeaderName::Contact)
            .filter_map(|v| Contact::parse(v).ok())
    }

    /// Route values in order.
    pub fn routes(&self) -> impl Iterator<Item = NameAddr<'a>> + '_ {
        self.values(HeaderName::Route)
            .filter_map(|v| NameAddr::parse(v).ok())
    }

    /// Record-Route values in order.
    pub fn record_routes(&self) -> impl Iterator<Item = NameAddr<'a>> + '_ {
        self.values(HeaderName::RecordRoute)
            .filter_map(|v| NameAddr::parse(v).ok())
    }

    /// Content-Length, if present.
    pub fn content_length(&self) -> Option<usize> {
        self.header_value(HeaderName::ContentLength)
            .and_then(|v| parse_content_length(v).ok())
    }

    /// Content-Type, if present.
    pub fn content_type(&self) -> Option<&'a str> {
        self.header_value(HeaderName::ContentType)
    }

    /// Authentication headers of one kind (WWW-Authenticate, Authorization, Proxy-*), parsed.
    pub fn auth_headers<'s>(
        &'s self,
        name: HeaderName<'s>,
    ) -> impl Iterator<Item = AuthHeader<'a>> + 's {
        self.headers
            .iter()
            .filter(move |h| h.name == name)
            .filter_map(|h| AuthHeader::parse(h.value).ok())
    }

    /// Converts to an owned [`MessageBuf`] (values unfolded).
    pub fn to_owned_buf(&self) -> MessageBuf {
        MessageBuf {
            start: match self.start {
                StartLine::Request { method, uri } => OwnedStart::Request {
                    method: method.as_str().to_owned(),
                    uri: uri.to_owned(),
                },
                StartLine::Response { code, reason } => OwnedStart::Response {
                    code,
                    reason: reason.to_owned(),
                },
            },
            headers: self
                .headers
                .iter()
                .filter(|h| h.name != HeaderName::ContentLength)
                .map(|h| (canonical_name(h).to_owned(), h.unfolded().into_owned()))
                .collect(),
            body: self.body.to_vec(),
        }
    }
}

fn canonical_name<'a>(h: &Header<'a>) -> &'a str {
    match h.name {
        HeaderName::Other(n) => n,
        known => known.as_str_static(),
    }
}

fn parse_start_line(line: &str) -> Result<StartLine<'_>, ParseError> {
    // §7.1/§7.2: elements are separated by exactly one SP (RFC 4475 §3.1.2.9, §3.1.2.10).
    if let Some(rest) = line.strip_prefix("SIP/") {
        let version_end = rest.find(' ').unwrap_or(rest.len());
        if &rest[..version_end] != "2.0" {
            return Err(ParseError::Version);
        }
        let rest = rest
            .get(version_end + 1..)
            .ok_or(ParseError::StartLine("no status code"))?;
        let code_str = rest
            .get(..3)
            .ok_or(ParseError::StartLine("no status code"))?;
        let after = &rest[3..];
        if !code_str.bytes().all(|b| b.is_ascii_digit())
            || !(after.is_empty() || after.starts_with(' '))
        {
            return Err(ParseError::StartLine("status code is not 3 digits"));
        }
        let code: u16 = code_str
            .parse()
            .map_err(|_| ParseError::StartLine("status code"))?;
        if !(100..=699).contains(&code) {
            return Err(ParseError::StartLine("status code out of range"));
        }
        let reason = after.strip_prefix(' ').unwrap_or(after);
        if reason.bytes().any(|b| b == b'\r' || b == b'\n') {
            return Err(ParseError::StartLine("bad reason phrase"));
        }
        return Ok(StartLine::Response { code, reason });
    }
    let mut parts = line.split(' ');
    let (Some(m), Some(uri), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(ParseError::StartLine(
            "request line is not Method SP Request-URI SP SIP-Version",
        ));
    };
    if uri.bytes().any(|b| is_lws(b) || b.is_ascii_control()) || uri.is_empty() {
        return Err(ParseError::StartLine("Request-URI contains white space"));
    }
    if !version.starts_with("SIP/") {
        return Err(ParseError::StartLine("no SIP version"));
    }
    if version != "SIP/2.0" {
        return Err(ParseError::Version);
    }
    let method = Method::parse(m).ok_or(ParseError::StartLine("method is not a token"))?;
    if uri.starts_with('<') {
        return Err(ParseError::StartLine("Request-URI enclosed in <>"));
    }
    let colon = uri
        .find(':')
        .ok_or(ParseError::StartLine("Request-URI has no scheme"))?;
    let scheme = &uri[..colon];
    if scheme.is_empty()
        || !scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
    {
        return Err(ParseError::StartLine("bad Request-URI scheme"));
    }
    // §19.1.1 table: the headers component is not allowed in a Request-URI (RFC 4475 §3.1.2.11).
    // The user part may hold '?' (RFC 4475 §3.1.1.2); headers follow the host, after the last '@'.
    let host_part = uri.rfind('@').map_or(uri, |at| &uri[at..]);
    if (scheme.eq_ignore_ascii_case("sip") || scheme.eq_ignore_ascii_case("sips"))
        && host_part.contains('?')
    {
        return Err(ParseError::StartLine("headers in a SIP Request-URI"));
    }
    Ok(StartLine::Request { method, uri })
}

/// The owned start line of a [`MessageBuf`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OwnedStart {
    /// A request line.
    Request {
        /// Method token.
        method: String,
        /// Request-URI.
        uri: String,
    },
    /// A status line.
    Response {
        /// Status code.
        code: u16,
        /// Reason phrase.
        reason: String,
    },
}

/// An owned SIP message for building and sending. Content-Length is always written from the body,
/// never from a header (headers named Content-Length are skipped when serializing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageBuf {
    /// Start line.
    pub start: OwnedStart,
    /// Header lines `(name, value)` in order.
    pub headers: Vec<(String, String)>,
    /// Body octets.
    pub body: Vec<u8>,
}

impl MessageBuf {
    /// A new request with no headers.
    pub fn request(method: Method<'_>, uri: &str) -> MessageBuf {
        MessageBuf {
            start: OwnedStart::Request {
                method: method.as_str().to_owned(),
                uri: uri.to_owned(),
            },
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// Appends a header line.
    pub fn push(&mut self, name: &str, value: impl Into<String>) -> &mut Self {
        self.headers.push((name.to_owned(), value.into()));
        self
    }

    /// Builder form of [`MessageBuf::push`].
    pub fn with(mut self, name: &str, value: impl Into<String>) -> Self {
        self.push(name, value);
        self
    }

    /// Inserts a header line before all others (a new top Via, §16.6 step 8).
    pub fn push_front(&mut self, name: &str, value: impl Into<String>) -> &mut Self {
        self.headers.insert(0, (name.to_owned(), value.into()));
        self
    }

    /// Sets the body and its Content-Type.
    pub fn set_body(&mut self, content_type: &str, body: impl Into<Vec<u8>>) -> &mut Self {
        self.remove(HeaderName::ContentType);
        self.push("Content-Type", content_type);
        self.body = body.into();
        self
    }

    /// Removes every header of this name (compact forms included).
    pub fn remove(&mut self, name: HeaderName<'_>) {
        self.headers.retain(|(n, _)| HeaderName::parse(n) != name);
    }

    /// Replaces the first header of this name, or appends it.
    pub fn set(&mut self, name: &str, value: impl Into<String>) -> &mut Self {
        let key = HeaderName::parse(name);
        let value = value.into();
        match self
            .headers
            .iter_mut()
            .find(|(n, _)| HeaderName::parse(n) == key)
        {
            Some(slot) => slot.1 = value,
            None => self.headers.push((name.to_owned(), value)),
        }
        self
    }

    /// The first value of a header.
    pub fn get(&self, name: HeaderName<'_>) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| HeaderName::parse(n) == name)
            .map(|(_, v)| v.as_str())
    }

    /// Serializes into `out` (appending), writing Content-Length from the body (§20.14).
    pub fn write_to(&self, out: &mut Vec<u8>) {
        match &self.start {
            OwnedStart::Request { method, uri } => {
                out.extend_from_slice(method.as_bytes());
                out.push(b' ');
                out.extend_from_slice(uri.as_bytes());
                out.extend_from_slice(b" SIP/2.0\r\n");
            }
            OwnedStart::Response { code, reason } => {
                out.extend_from_slice(format!("SIP/2.0 {code} {reason}\r\n").as_bytes());
            }
        }
        for (n, v) in &self.headers {
            if HeaderName::parse(n) == HeaderName::ContentLength {
                continue;
            }
            out.extend_from_slice(n.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(v.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(format!("Content-Length: {}\r\n\r\n", self.body.len()).as_bytes());
        out.extend_from_slice(&self.body);
    }

    /// Serializes to a new buffer.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(512 + self.body.len());
        self.write_to(&mut out);
        out
    }
}

/// Builds a response to a request as RFC 3261 §8.2.6.2 requires: Via values copied in order,
/// From, Call-ID and CSeq copied, To copied with `to_tag` added when it has none (never for 100,
/// §8.2.6.2), and Record-Route copied for dialog-creating 2xx/1xx (§12.1.1).
pub fn response_to(req: &Message<'_>, code: u16, reason: &str, to_tag: Option<&str>) -> MessageBuf {
    let mut r = MessageBuf {
        start: OwnedStart::Response {
            code,
            reason: reason.to_owned(),
        },
        headers: Vec::with_capacity(8),
        body: Vec::new(),
    };
    for h in req.headers() {
        match h.name {
            HeaderName::Via => {
                for v in split_list(h.value) {
                    r.push("Via", unfold(v));
                }
            }
            HeaderName::From | HeaderName::CallId | HeaderName::CSeq => {
                r.push(canonical_name(h), h.unfolded().into_owned());
            }
            HeaderName::To => {
                let v = h.unfolded().into_owned();
                let has_tag = req.to().ok().and_then(|t| t.tag()).is_some();
                match (to_tag, has_tag, code) {
                    (Some(tag), false, 101..) => r.push("To", format!("{v};tag={tag}")),
                    _ => r.push("To", v),
                };
            }
            HeaderName::RecordRoute if (101..300).contains(&code) => {
                r.push("Record-Route", h.unfolded().into_owned());
            }
            _ => {}
        }
    }
    r
}

fn unfold(v: &str) -> String {
    Header {
        name: HeaderName::Via,
        raw_name: "Via",
        value: v,
    }
    .unfolded()
    .into_owned()
}

/// Re-emits a received message with a proxy's edits, copying untouched header lines as raw bytes
/// (RFC 3261 §16.6). Content-Length is rewritten from the body.
#[derive(Debug, Default)]
pub struct Rewriter<'r> {
    /// New Request-URI (§16.6 step 6, or strict-route handling).
    pub request_uri: Option<&'r str>,
    /// Header lines inserted first, in order (a new Via; a Record-Route).
    pub prepend: Vec<(&'r str, &'r str)>,
    /// Remove the first Via value (responses travelling back, §16.7 step 3).
    pub pop_via: bool,
    /// Remove this many leading Route values (loose routing, §16.4: one per Route naming us; two
    /// where we record-routed twice, RFC 5658).
    pub pop_routes: usize,
    /// Set Max-Forwards to this (§16.6 step 3).
    pub max_forwards: Option<u8>,
}

/// Header edits beyond routing, for [`Rewriter::write_with`]: fields a proxy removes or
/// replaces on its own authority (RFC 3325 §5: P-Asserted-Identity from untrusted sources).
#[derive(Debug, Default, Clone, Copy)]
pub struct HeaderEdits<'r> {
    /// Header fields dropped, by full name (case-insensitive; every line of each).
    pub remove: &'r [&'r str],
    /// The From field's new value, replacing the received one.
    pub from: Option<&'r str>,
}

impl Rewriter<'_> {
    /// Writes `msg` with the edits into `out`.
    pub fn write(&self, msg: &Message<'_>, out: &mut Vec<u8>) {
        self.write_with(msg, out, HeaderEdits::default());
    }

    /// [`Rewriter::write`], also removing and replacing header fields as `edits` say.
    pub fn write_with(&self, msg: &Message<'_>, out: &mut Vec<u8>, edits: HeaderEdits<'_>) {
        out.reserve(msg.wire_len() + 256);
        match msg.start {
            StartLine::Request { method, uri } => {
                out.extend_from_slice(method.as_str().as_bytes());
                out.push(b' ');
                out.extend_from_slice(self.request_uri.unwrap_or(uri).as_bytes());
                out.extend_from_slice(b" SIP/2.0\r\n");
            }
            StartLine::Response { code, reason } => {
                out.extend_from_slice(b"SIP/2.0 ");
                push_u16(out, code);
                out.push(b' ');
                out.extend_from_slice(reason.as_bytes());
                out.extend_from_slice(b"\r\n");
            }
        }
        for (n, v) in &self.prepend {
            push_line(out, n, v);
        }
        let mut via_popped = !self.pop_via;
        let mut routes_to_pop = self.pop_routes;
        let mut mf_written = self.max_forwards.is_none();
        for h in msg.headers() {
            match h.name {
                HeaderName::ContentLength => continue,
                HeaderName::Via if !via_popped => {
                    via_popped = true;
                    let rest: Vec<&str> = split_list(h.value).skip(1).collect();
                    if !rest.is_empty() {
                        push_line(out, h.raw_name, &rest.join(", "));
                    }
                    continue;
                }
                HeaderName::Route if routes_to_pop > 0 => {
                    // One header line may hold several values; pop across lines.
                    let values: Vec<&str> = split_list(h.value).collect();
                    let popped = routes_to_pop.min(values.len());
                    routes_to_pop -= popped;
                    if popped < values.len() {
                        push_line(out, h.raw_name, &values[popped..].join(", "));
                    }
                    continue;
                }
                HeaderName::MaxForwards if !mf_written => {
                    mf_written = true;
                    let mut b = itoa_u8(self.max_forwards.unwrap_or(70));
                    push_line(out, "Max-Forwards", b.as_str());
                    b.clear();
                    continue;
                }
                HeaderName::From if edits.from.is_some() => {
                    push_line(out, h.raw_name, edits.from.unwrap_or(h.value));
                }
                _ if edits
                    .remove
                    .iter()
                    .any(|r| h.name.as_str().eq_ignore_ascii_case(r)) => {}
                _ => push_line(out, h.raw_name, h.value),
            }
        }
        if let (false, Some(mf)) = (mf_written, self.max_forwards) {
            push_line(out, "Max-Forwards", &itoa_u8(mf));
        }
        out.extend_from_slice(b"Content-Length: ");
        out.extend_from_slice(msg.body().len().to_string().as_bytes());
        out.extend_from_slice(b"\r\n\r\n");
        out.extend_from_slice(msg.body());
    }
}

fn itoa_u8(v: u8) -> String {
    v.to_string()
}

fn push_u16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(v.to_string().as_bytes());
}

fn push_line(out: &mut Vec<u8>, name: &str, value: &str) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value.as_bytes());
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    const INVITE: &str = "INVITE sip:bob@biloxi.example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds\r\n\
Max-Forwards: 70\r\n\
To: Bob <sip:bob@biloxi.example.com>\r\n\
From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n\
CSeq: 314159 INVITE\r\n\
Contact: <sip:alice@pc33.atlanta.example.com>\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 4\r\n\r\nv=0\r";

    #[test]
    fn parses_basic_invite() {
        let m = Message::parse(INVITE.as_bytes()).unwrap();
        assert_eq!(m.method(), Some(Method::Invite));
        assert_eq!(m.top_via().unwrap().branch(), Some("z9hG4bK776asdhds"));
        assert_eq!(m.from().unwrap().tag(), Some("1928301774"));
        assert_eq!(m.cseq().unwrap().seq, 314159);
        assert_eq!(m.body(), b"v=0\r");
        assert_eq!(m.max_forwards(), Some(70));
    }

    #[test]
    fn response_copies_mandatory_headers() {
        let m = Message::parse(INVITE.as_bytes()).unwrap();
        let r = response_to(&m, 180, "Ringing", Some("a6c85cf"));
        let bytes = r.to_bytes();
        let p = Message::parse(&bytes).unwrap();
        assert_eq!(p.status(), Some(180));
        assert_eq!(p.to().unwrap().tag(), Some("a6c85cf"));
        assert_eq!(p.top_via().unwrap().branch(), Some("z9hG4bK776asdhds"));
        assert_eq!(p.call_id().unwrap(), m.call_id().unwrap());
        let trying = response_to(&m, 100, "Trying", Some("x")).to_bytes();
        assert_eq!(Message::parse(&trying).unwrap().to().unwrap().tag(), None);
    }

    #[test]
    fn rewriter_pushes_via_and_decrements() {
        let m = Message::parse(INVITE.as_bytes()).unwrap();
        let mut out = Vec::new();
        Rewriter {
            prepend: vec![("Via", "SIP/2.0/UDP proxy.example.com;branch=z9hG4bKp1")],
            max_forwards: Some(69),
            ..Default::default()
        }
        .write(&m, &mut out);
        let p = Message::parse(&out).unwrap();
        let vias: Vec<_> = p.vias().map(|v| v.host).collect();
        assert_eq!(vias, ["proxy.example.com", "pc33.atlanta.example.com"]);
        assert_eq!(p.max_forwards(), Some(69));
        let mut back = Vec::new();
        Rewriter {
            pop_via: true,
            ..Default::default()
        }
        .write(&p, &mut back);
        assert_eq!(
            Message::parse(&back).unwrap().top_via().unwrap().host,
            "pc33.atlanta.example.com"
        );
    }

    #[test]
    fn rewriter_drops_asserted_identities_and_replaces_from() {
        let claimed = INVITE.replacen(
            "Max-Forwards",
            "P-Asserted-Identity: <sip:+15550100001@biloxi.example.com>\r\n\
             p-preferred-identity: <tel:+15550100001>\r\nMax-Forwards",
            1,
        );
        let m = Message::parse(claimed.as_bytes()).unwrap();
        let mut out = Vec::new();
        Rewriter::default().write_with(
            &m,
            &mut out,
            HeaderEdits {
                remove: &["P-Asserted-Identity", "P-Preferred-Identity"],
                from: Some("<sip:+1;verstat=TN-Validation-Failed@a.example>;tag=1"),
            },
        );
        let p = Message::parse(&out).unwrap();
        let text = String::from_utf8_lossy(&out).to_ascii_lowercase();
        assert!(!text.contains("identity"), "{text}");
        assert_eq!(
            p.from().unwrap().uri,
            "sip:+1;verstat=TN-Validation-Failed@a.example"
        );
        assert_eq!(p.body(), m.body());
    }

    #[test]
    fn rewriter_pops_routes_across_header_lines() {
        let with_routes = INVITE.replacen(
            "Max-Forwards",
            "Route: <sip:p1.example.com;lr>\r\nRoute: <sip:p2.example.com;lr>, \
             <sip:p3.example.com;lr>\r\nMax-Forwards",
            1,
        );
        let m = Message::parse(with_routes.as_bytes()).unwrap();
        let routes_after = |n: usize| {
            let mut out = Vec::new();
            Rewriter {
                pop_routes: n,
                ..Default::default()
            }
            .write(&m, &mut out);
            let p = Message::parse(&out).unwrap();
            p.routes().map(|r| r.uri.to_owned()).collect::<Vec<_>>()
        };
        assert_eq!(routes_after(0).len(), 3);
        assert_eq!(
            routes_after(1),
            ["sip:p2.example.com;lr", "sip:p3.example.com;lr"]
        );
        assert_eq!(routes_after(2), ["sip:p3.example.com;lr"]);
        assert!(routes_after(3).is_empty());
        assert!(routes_after(9).is_empty());
    }
}
