//! Header names and typed, borrowing views of header values (RFC 3261 §7.3, §20, §25.1).
//!
//! Values arrive raw: a folded value still contains its CRLF and leading whitespace, and every
//! tokenizer here treats CR and LF as linear white space (RFC 3261 §7.3.1: "LWS ... equivalent to a
//! single SP"). Nothing is copied: views hold `&'a str` slices of the datagram.

use crate::error::ParseError;

/// A header field name, with compact forms and case folded (RFC 3261 §7.3.1, §7.3.3, §20).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum HeaderName<'a> {
    /// `Accept`.
    Accept,
    /// `Allow`.
    Allow,
    /// `Authorization` (§20.7).
    Authorization,
    /// `Call-ID` / `i` (§20.8).
    CallId,
    /// `Contact` / `m` (§20.10).
    Contact,
    /// `Content-Encoding` / `e`.
    ContentEncoding,
    /// `Content-Length` / `l` (§20.14).
    ContentLength,
    /// `Content-Type` / `c` (§20.15).
    ContentType,
    /// `CSeq` (§20.16).
    CSeq,
    /// `Date`.
    Date,
    /// `Event` / `o` (RFC 6665).
    Event,
    /// `Expires` (§20.19).
    Expires,
    /// `From` / `f` (§20.20).
    From,
    /// `Identity` / `y` (RFC 8224 §4): a PASSporT vouching for the caller.
    Identity,
    /// `Max-Forwards` (§20.22).
    MaxForwards,
    /// `Min-Expires` (§20.23).
    MinExpires,
    /// `Proxy-Authenticate` (§20.27).
    ProxyAuthenticate,
    /// `Proxy-Authorization` (§20.28).
    ProxyAuthorization,
    /// `Proxy-Require`.
    ProxyRequire,
    /// `Record-Route` (§20.30).
    RecordRoute,
    /// `Require`.
    Require,
    /// `Retry-After` (§20.33).
    RetryAfter,
    /// `Route` (§20.34).
    Route,
    /// `Server`.
    Server,
    /// `Subject` / `s`.
    Subject,
    /// `Supported` / `k`.
    Supported,
    /// `To` / `t` (§20.39).
    To,
    /// `Unsupported`.
    Unsupported,
    /// `User-Agent`.
    UserAgent,
    /// `Via` / `v` (§20.42).
    Via,
    /// `Warning`.
    Warning,
    /// `WWW-Authenticate` (§20.44).
    WwwAuthenticate,
    /// Any other header, by its name as written.
    Other(&'a str),
}

impl<'a> HeaderName<'a> {
    /// Recognizes a header name, case-insensitively, compact forms included (RFC 3261 §7.3.3).
    pub fn parse(name: &'a str) -> HeaderName<'a> {
        use HeaderName::*;
        if name.len() == 1 {
            return match name.as_bytes()[0].to_ascii_lowercase() {
                b'i' => CallId,
                b'm' => Contact,
                b'e' => ContentEncoding,
                b'l' => ContentLength,
                b'c' => ContentType,
                b'f' => From,
                b's' => Subject,
                b'k' => Supported,
                b't' => To,
                b'v' => Via,
                b'o' => Event,
                b'y' => Identity,
                _ => Other(name),
            };
        }
        const TABLE: &[(&str, HeaderName<'static>)] = &[
            ("via", Via),
            ("from", From),
            ("to", To),
            ("call-id", CallId),
            ("cseq", CSeq),
            ("max-forwards", MaxForwards),
            ("contact", Contact),
            ("content-length", ContentLength),
            ("content-type", ContentType),
            ("route", Route),
            ("record-route", RecordRoute),
            ("expires", Expires),
            ("identity", Identity),
            ("authorization", Authorization),
            ("www-authenticate", WwwAuthenticate),
            ("proxy-authorization", ProxyAuthorization),
            ("proxy-authenticate", ProxyAuthenticate),
            ("accept", Accept),
            ("allow", Allow),
            ("content-encoding", ContentEncoding),
            ("date", Date),
            ("event", Event),
            ("min-expires", MinExpires),
            ("proxy-require", ProxyRequire),
            ("require", Require),
            ("retry-after", RetryAfter),
            ("server", Server),
            ("subject", Subject),
            ("supported", Supported),
            ("unsupported", Unsupported),
            ("user-agent", UserAgent),
            ("warning", Warning),
        ];
        for (n, h) in TABLE {
            if n.eq_ignore_ascii_case(name) {
                return *h;
            }
        }
        Other(name)
    }

    /// The canonical spelling, used when serializing (long forms, RFC 3261 §20).
    pub fn as_str(&self) -> &'a str {
        match self {
            HeaderName::Other(s) => s,
            known => known.known_name().unwrap_or_default(),
        }
    }

    /// The canonical spelling of a header this crate knows (`None` for [`HeaderName::Other`]).
    fn known_name(&self) -> Option<&'static str> {
        use HeaderName::*;
        Some(match self {
            Accept => "Accept",
            Allow => "Allow",
            Authorization => "Authorization",
            CallId => "Call-ID",
            Contact => "Contact",
            ContentEncoding => "Content-Encoding",
            ContentLength => "Content-Length",
            ContentType => "Content-Type",
            CSeq => "CSeq",
            Date => "Date",
            Event => "Event",
            Expires => "Expires",
            From => "From",
            Identity => "Identity",
            MaxForwards => "Max-Forwards",
            MinExpires => "Min-Expires",
            ProxyAuthenticate => "Proxy-Authenticate",
            ProxyAuthorization => "Proxy-Authorization",
            ProxyRequire => "Proxy-Require",
            RecordRoute => "Record-Route",
            Require => "Require",
            RetryAfter => "Retry-After",
            Route => "Route",
            Server => "Server",
            Subject => "Subject",
            Supported => "Supported",
            To => "To",
            Unsupported => "Unsupported",
            UserAgent => "User-Agent",
            Via => "Via",
            Warning => "Warning",
            WwwAuthenticate => "WWW-Authenticate",
            Other(_) => return None,
        })
    }

    /// Headers whose grammar allows several comma-separated values in one line (RFC 3261 §7.3.1).
    /// `WWW-Authenticate` and friends are excluded: their commas separate parameters.
    pub fn is_list(&self) -> bool {
        use HeaderName::*;
        matches!(
            self,
            Via | Contact
                | Route
                | RecordRoute
                | Accept
                | Allow
                | Supported
                | Require
                | ProxyRequire
                | Unsupported
                | ContentEncoding
                | Warning
        )
    }
}

/// A SIP method (RFC 3261 §7.1, §27.4); methods are case-sensitive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Method<'a> {
    /// INVITE.
    Invite,
    /// ACK.
    Ack,
    /// BYE.
    Bye,
    /// CANCEL.
    Cancel,
    /// REGISTER.
    Register,
    /// OPTIONS.
    Options,
    /// INFO (RFC 6086).
    Info,
    /// UPDATE (RFC 3311).
    Update,
    /// PRACK (RFC 3262).
    Prack,
    /// SUBSCRIBE (RFC 6665).
    Subscribe,
    /// NOTIFY (RFC 6665).
    Notify,
    /// REFER (RFC 3515).
    Refer,
    /// MESSAGE (RFC 3428).
    Message,
    /// PUBLISH (RFC 3903).
    Publish,
    /// An extension method (a token).
    Other(&'a str),
}

impl<'a> Method<'a> {
    /// Parses a method token; `None` if it is not a token (RFC 3261 §25.1).
    pub fn parse(s: &'a str) -> Option<Method<'a>> {
        if s.is_empty() || !s.bytes().all(is_token_char) {
            return None;
        }
        Some(match s {
            "INVITE" => Method::Invite,
            "ACK" => Method::Ack,
            "BYE" => Method::Bye,
            "CANCEL" => Method::Cancel,
            "REGISTER" => Method::Register,
            "OPTIONS" => Method::Options,
            "INFO" => Method::Info,
            "UPDATE" => Method::Update,
            "PRACK" => Method::Prack,
            "SUBSCRIBE" => Method::Subscribe,
            "NOTIFY" => Method::Notify,
            "REFER" => Method::Refer,
            "MESSAGE" => Method::Message,
            "PUBLISH" => Method::Publish,
            other => Method::Other(other),
        })
    }

    /// The method as written on the wire.
    pub fn as_str(&self) -> &'a str {
        match self {
            Method::Invite => "INVITE",
            Method::Ack => "ACK",
            Method::Bye => "BYE",
            Method::Cancel => "CANCEL",
            Method::Register => "REGISTER",
            Method::Options => "OPTIONS",
            Method::Info => "INFO",
            Method::Update => "UPDATE",
            Method::Prack => "PRACK",
            Method::Subscribe => "SUBSCRIBE",
            Method::Notify => "NOTIFY",
            Method::Refer => "REFER",
            Method::Message => "MESSAGE",
            Method::Publish => "PUBLISH",
            Method::Other(s) => s,
        }
    }
}

impl std::fmt::Display for Method<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `token` characters (RFC 3261 §25.1): alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~".
pub fn is_token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b)
}

/// Linear white space as it appears in raw (possibly folded) values.
pub(crate) fn is_lws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

pub(crate) fn trim_lws(s: &str) -> &str {
    s.trim_matches(|c: char| c.is_ascii() && is_lws(c as u8))
}

/// Splits a raw header value at top-level commas (outside quoted strings and `<...>`), the
/// "multiple values in one line" form of RFC 3261 §7.3.1. Yields trimmed items; empty items are
/// yielded too so callers can reject them where the grammar forbids them (RFC 4475 §3.1.2.1).
pub fn split_list(value: &str) -> impl Iterator<Item = &str> {
    let bytes = value.as_bytes();
    let mut start = 0;
    let mut pos = 0;
    let mut done = trim_lws(value).is_empty();
    std::iter::from_fn(move || {
        if done {
            return None;
        }
        let mut in_quote = false;
        let mut in_angle = false;
        while pos < bytes.len() {
            let b = bytes[pos];
            if in_quote {
                if b == b'\\' {
                    pos += 1;
                } else if b == b'"' {
                    in_quote = false;
                }
            } else if b == b'"' {
                in_quote = true;
            } else if b == b'<' {
                in_angle = true;
            } else if b == b'>' {
                in_angle = false;
            } else if b == b',' && !in_angle {
                let item = trim_lws(&value[start..pos]);
                pos += 1;
                start = pos;
                return Some(item);
            }
            pos += 1;
        }
        done = true;
        Some(trim_lws(&value[start.min(value.len())..]))
    })
}

/// Generic parameters `*( SEMI generic-param )` kept as the raw text; iterated lazily (§25.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Params<'a> {
    raw: &'a str,
}

impl<'a> Params<'a> {
    /// Wraps raw text that starts at the first `;` (or is empty). Call [`Params::validate`] first
    /// when the text comes from the wire.
    pub fn new(raw: &'a str) -> Self {
        Params { raw }
    }

    /// The raw text, starting at the first `;`.
    pub fn raw(&self) -> &'a str {
        self.raw
    }

    /// Checks the grammar: every parameter is `token [ EQUAL ( token / host / quoted-string ) ]`.
    pub fn validate(&self) -> Result<(), &'static str> {
        for p in self.iter_raw() {
            let (name, value) = p?;
            if name.is_empty() || !name.bytes().all(is_token_char) {
                return Err("parameter name is not a token");
            }
            if let Some(v) = value {
                if v.is_empty() {
                    return Err("empty parameter value");
                }
                if v.starts_with('"') {
                    if quoted_end(v) != Some(v.len()) {
                        return Err("unterminated quoted parameter");
                    }
                } else if !v.bytes().all(|b| is_token_char(b) || b"[]:".contains(&b)) {
                    return Err("parameter value is not a token");
                }
            }
        }
        Ok(())
    }

    fn iter_raw(&self) -> impl Iterator<Item = Result<(&'a str, Option<&'a str>), &'static str>> {
        let raw = self.raw;
        let mut rest = trim_lws(raw);
        std::iter::from_fn(move || {
            if rest.is_empty() {
                return None;
            }
            let Some(after) = rest.strip_prefix(';') else {
                rest = "";
                return Some(Err("parameters must start with ';'"));
            };
            // Find the end of this parameter: next ';' outside quotes.
            let bytes = after.as_bytes();
            let mut i = 0;
            let mut in_quote = false;
            while i < bytes.len() {
                match bytes[i] {
                    b'\\' if in_quote => i += 1,
                    b'"' => in_quote = !in_quote,
                    b';' if !in_quote => break,
                    _ => {}
                }
                i += 1;
            }
            let i = i.min(bytes.len());
            let item = &after[..i];
            rest = &after[i..];
            let (name, value) = match item.find('=') {
                Some(eq) => (trim_lws(&item[..eq]), Some(trim_lws(&item[eq + 1..]))),
                None => (trim_lws(item), None),
            };
            Some(Ok((name, value)))
        })
    }

    /// Iterates `(name, value)` pairs; quoted values are returned without their quotes.
    pub fn iter(&self) -> impl Iterator<Item = (&'a str, Option<&'a str>)> {
        self.iter_raw().filter_map(Result::ok).map(|(n, v)| {
            let v = v.map(|v| {
                if v.len() >= 2 && v.starts_with('"') && v.ends_with('"') {
                    &v[1..v.len() - 1]
                } else {
                    v
                }
            });
            (n, v)
        })
    }

    /// A parameter by case-insensitive name: `Some(None)` for a flag, `Some(Some(v))` for a value.
    pub fn get(&self, name: &str) -> Option<Option<&'a str>> {
        self.iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// A parameter's value (`None` for absent or valueless).
    pub fn value(&self, name: &str) -> Option<&'a str> {
        self.get(name).flatten()
    }
}

/// Index just past the closing quote of a quoted string starting at `s[0] == '"'` (§25.1,
/// quoted-pair aware).
pub(crate) fn quoted_end(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    if b.first() != Some(&b'"') {
        return None;
    }
    let mut i = 1;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            b'"' => return Some(i + 1),
            _ => i += 1,
        }
    }
    None
}

/// A Via header value (RFC 3261 §20.42): `SIP / 2.0 / transport sent-by *( ; via-params )`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Via<'a> {
    /// Transport token as written (`UDP`, `TCP`, `TLS`, or an extension).
    pub transport: &'a str,
    /// Host of sent-by; IPv6 references keep their brackets.
    pub host: &'a str,
    /// Port of sent-by, when given.
    pub port: Option<u16>,
    /// The via-params.
    pub params: Params<'a>,
}

/// The RFC 3261 magic cookie that starts every compliant branch (§8.1.1.7).
pub const MAGIC_COOKIE: &str = "z9hG4bK";

impl<'a> Via<'a> {
    /// Parses one via-parm (one comma-separated item).
    pub fn parse(s: &'a str) -> Result<Via<'a>, &'static str> {
        let s = trim_lws(s);
        let mut rest = s;
        let next_part = |rest: &mut &'a str, last: bool| -> Result<&'a str, &'static str> {
            let r = trim_lws(rest);
            if last {
                let end = r
                    .find(|c: char| c.is_ascii() && is_lws(c as u8))
                    .unwrap_or(r.len());
                let (p, tail) = r.split_at(end);
                *rest = tail;
                Ok(p)
            } else {
                let slash = r.find('/').ok_or("sent-protocol lacks '/'")?;
                let p = trim_lws(&r[..slash]);
                *rest = &r[slash + 1..];
                Ok(p)
            }
        };
        let proto = next_part(&mut rest, false)?;
        let version = next_part(&mut rest, false)?;
        let transport = next_part(&mut rest, true)?;
        if !proto.eq_ignore_ascii_case("SIP") || version != "2.0" {
            return Err("sent-protocol is not SIP/2.0");
        }
        if transport.is_empty() || !transport.bytes().all(is_token_char) {
            return Err("transport is not a token");
        }
        let rest = trim_lws(rest);
        let params_at = rest.find(';').unwrap_or(rest.len());
        let sent_by = trim_lws(&rest[..params_at]);
        let (host, port) = split_host_port(sent_by)?;
        let params = Params::new(&rest[params_at..]);
        params.validate()?;
        Ok(Via {
            transport,
            host,
            port,
            params,
        })
    }

    /// The branch parameter (§8.1.1.7).
    pub fn branch(&self) -> Option<&'a str> {
        self.params.value("branch")
    }

    /// The received parameter a server adds (§18.2.1).
    pub fn received(&self) -> Option<&'a str> {
        self.params.value("received")
    }

    /// The rport parameter (RFC 3581): `None` absent, `Some(None)` requested, `Some(Some(p))` filled.
    pub fn rport(&self) -> Option<Option<u16>> {
        self.params
            .get("rport")
            .map(|v| v.and_then(|p| p.parse().ok()))
    }
}

/// Splits `host[:port]` with IPv6 references (RFC 3261 §25.1 `hostport`, RFC 5118).
pub fn split_host_port(s: &str) -> Result<(&str, Option<u16>), &'static str> {
    if s.is_empty() {
        return Err("empty host");
    }
    let (host, port) = if s.starts_with('[') {
        let close = s.find(']').ok_or("unterminated IPv6 reference")?;
        let host = &s[..=close];
        if host[1..close].parse::<std::net::Ipv6Addr>().is_err() {
            return Err("bad IPv6 reference");
        }
        match &s[close + 1..] {
            "" => (host, None),
            p => (
                host,
                Some(p.strip_prefix(':').ok_or("junk after IPv6 reference")?),
            ),
        }
    } else {
        match s.rfind(':') {
            Some(i) => (&s[..i], Some(&s[i + 1..])),
            None => (s, None),
        }
    };
    if host.is_empty()
        || !host.starts_with('[')
            && !host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
    {
        return Err("bad host");
    }
    let port = match port {
        None => None,
        Some(p) => {
            if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
                return Err("bad port");
            }
            Some(p.parse::<u16>().map_err(|_| "port out of range")?)
        }
    };
    Ok((host, port))
}

/// A `name-addr` or `addr-spec` value with header parameters: From, To, Contact, Route,
/// Record-Route (RFC 3261 §20.10, §20.20, §20.39, §25.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NameAddr<'a> {
    /// Display name as written: a quoted string without its quotes (escapes kept), or tokens.
    pub display: Option<&'a str>,
    /// The URI (inside `<>` when they were used).
    pub uri: &'a str,
    /// True when the URI was enclosed in `<>`.
    pub angle: bool,
    /// Header parameters after the URI.
    pub params: Params<'a>,
}

impl<'a> NameAddr<'a> {
    /// Parses one name-addr/addr-spec item, strictly: `<>` without inner whitespace, quoted display
    /// names balanced, unquoted display names made of tokens, and an addr-spec without `<>` must not
    /// contain `?`, `,` or `;` in the URI (RFC 3261 §20 final paragraph; RFC 4475 §3.1.2.6, 3.1.2.13–15).
    pub fn parse(s: &'a str) -> Result<NameAddr<'a>, &'static str> {
        let s = trim_lws(s);
        if s.is_empty() {
            return Err("empty value");
        }
        let (display, after_display) = if s.starts_with('"') {
            let end = quoted_end(s).ok_or("unterminated quoted display name")?;
            (Some(&s[1..end - 1]), trim_lws(&s[end..]))
        } else if let Some(lt) = s.find('<') {
            let dn = trim_lws(&s[..lt]);
            if !dn.is_empty()
                && !dn.bytes().all(|b| {
                    is_token_char(b) || b == b' ' || b == b'\t' || b == b'\r' || b == b'\n'
                })
            {
                return Err("display name has non-token characters and is not quoted");
            }
            (if dn.is_empty() { None } else { Some(dn) }, &s[lt..])
        } else {
            (None, s)
        };
        if let Some(inner) = after_display.strip_prefix('<') {
            let gt = inner.find('>').ok_or("unterminated '<'")?;
            let uri = &inner[..gt];
            if uri.is_empty() || uri.bytes().any(is_lws) {
                return Err("whitespace inside <addr-spec>");
            }
            check_uri_shape(uri)?;
            let params = Params::new(&inner[gt + 1..]);
            params.validate()?;
            Ok(NameAddr {
                display,
                uri,
                angle: true,
                params,
            })
        } else {
            if display.is_some() {
                return Err("display name without <addr-spec>");
            }
            let end = after_display.find(';').unwrap_or(after_display.len());
            let uri = trim_lws(&after_display[..end]);
            if uri.bytes().any(|b| is_lws(b) || b == b'?' || b == b',') {
                return Err("addr-spec with '?', ',' or whitespace must be enclosed in <>");
            }
            check_uri_shape(uri)?;
            let params = Params::new(&after_display[end..]);
            params.validate()?;
            Ok(NameAddr {
                display: None,
                uri,
                angle: false,
                params,
            })
        }
    }

    /// The tag parameter (§19.3).
    pub fn tag(&self) -> Option<&'a str> {
        self.params.value("tag")
    }

    /// The expires parameter of a Contact (§10.2.1.1); saturates at u32::MAX.
    pub fn expires(&self) -> Option<u32> {
        self.params.value("expires").and_then(parse_delta_seconds)
    }
}

fn check_uri_shape(uri: &str) -> Result<(), &'static str> {
    let colon = uri.find(':').ok_or("URI has no scheme")?;
    let scheme = &uri[..colon];
    if scheme.is_empty()
        || !scheme.as_bytes()[0].is_ascii_alphabetic()
        || !scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
    {
        return Err("bad URI scheme");
    }
    Ok(())
}

/// A Contact value: `*` or a list item (RFC 3261 §20.10).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Contact<'a> {
    /// `Contact: *` (only with `Expires: 0` in REGISTER, §10.2.2).
    Star,
    /// A contact address.
    Addr(NameAddr<'a>),
}

impl<'a> Contact<'a> {
    /// Parses one Contact item.
    pub fn parse(s: &'a str) -> Result<Contact<'a>, &'static str> {
        if trim_lws(s) == "*" {
            Ok(Contact::Star)
        } else {
            NameAddr::parse(s).map(Contact::Addr)
        }
    }
}

/// CSeq (RFC 3261 §20.16): a sequence number below 2^31 and a method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CSeq<'a> {
    /// The sequence number (§8.1.1.5: less than 2^31).
    pub seq: u32,
    /// The method.
    pub method: Method<'a>,
}

impl<'a> CSeq<'a> {
    /// Parses `1*DIGIT LWS Method`.
    pub fn parse(s: &'a str) -> Result<CSeq<'a>, &'static str> {
        let s = trim_lws(s);
        let split = s
            .find(|c: char| c.is_ascii() && is_lws(c as u8))
            .ok_or("CSeq lacks a method")?;
        let num = &s[..split];
        let method = trim_lws(&s[split..]);
        if num.is_empty() || num.len() > 10 || !num.bytes().all(|b| b.is_ascii_digit()) {
            return Err("CSeq number is not a number below 2^31");
        }
        let seq: u64 = num.parse().map_err(|_| "CSeq number")?;
        if seq >= 1 << 31 {
            return Err("CSeq number is not below 2^31");
        }
        let method = Method::parse(method).ok_or("CSeq method is not a token")?;
        Ok(CSeq {
            seq: seq as u32,
            method,
        })
    }
}

/// Parses `delta-seconds` (§25.1); values beyond 2^32-1 saturate (RFC 3261 §20.19 treats overlarge
/// values as 2^32-1... and RFC 4475 §3.1.2.4 expects them to be handled, not to crash).
pub fn parse_delta_seconds(s: &str) -> Option<u32> {
    let s = trim_lws(s);
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(s.parse::<u32>().unwrap_or(u32::MAX))
}

/// An authentication header: `scheme auth-param *(COMMA auth-param)` (RFC 3261 §25.1, RFC 7616
/// §3.3, §3.4): WWW-Authenticate, Proxy-Authenticate, Authorization, Proxy-Authorization.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthHeader<'a> {
    /// The scheme (`Digest`).
    pub scheme: &'a str,
    /// The raw parameter list.
    pub params_raw: &'a str,
}

impl<'a> AuthHeader<'a> {
    /// Parses the scheme and checks the parameter list's grammar.
    pub fn parse(s: &'a str) -> Result<AuthHeader<'a>, &'static str> {
        let s = trim_lws(s);
        let end = s
            .find(|c: char| c.is_ascii() && is_lws(c as u8))
            .unwrap_or(s.len());
        let scheme = &s[..end];
        if scheme.is_empty() || !scheme.bytes().all(is_token_char) {
            return Err("auth scheme is not a token");
        }
        let h = AuthHeader {
            scheme,
            params_raw: trim_lws(&s[end..]),
        };
        for item in split_list(h.params_raw) {
            if item.is_empty() {
                continue;
            }
            let eq = item.find('=').ok_or("auth-param without '='")?;
            let v = trim_lws(&item[eq + 1..]);
            if v.starts_with('"') && quoted_end(v) != Some(v.len()) {
                return Err("unterminated quoted auth-param");
            }
        }
        Ok(h)
    }

    /// An auth-param by case-insensitive name, unquoted (escapes kept).
    pub fn param(&self, name: &str) -> Option<&'a str> {
        split_list(self.params_raw).find_map(|item| {
            let eq = item.find('=')?;
            if !trim_lws(&item[..eq]).eq_ignore_ascii_case(name) {
                return None;
            }
            let v = trim_lws(&item[eq + 1..]);
            Some(if v.len() >= 2 && v.starts_with('"') && v.ends_with('"') {
                &v[1..v.len() - 1]
            } else {
                v
            })
        })
    }
}

/// Validates a header value against its grammar; used by the parser on the headers the core
/// relies on. Errors name the header.
pub(crate) fn validate(name: HeaderName<'_>, value: &str) -> Result<(), ParseError> {
    let bad = |reason| ParseError::Header {
        name: name.as_str_static(),
        reason,
    };
    match name {
        HeaderName::Via => {
            for item in split_list(value) {
                if item.is_empty() {
                    return Err(bad("empty list element"));
                }
                Via::parse(item).map_err(bad)?;
            }
        }
        HeaderName::From | HeaderName::To => {
            NameAddr::parse(value).map_err(bad)?;
        }
        HeaderName::Contact => {
            for item in split_list(value) {
                if item.is_empty() {
                    return Err(bad("empty list element"));
                }
                Contact::parse(item).map_err(bad)?;
            }
        }
        HeaderName::Route | HeaderName::RecordRoute => {
            for item in split_list(value) {
                let na = NameAddr::parse(item).map_err(bad)?;
                if !na.angle {
                    return Err(bad("route values are name-addr with <>"));
                }
            }
        }
        HeaderName::CSeq => {
            CSeq::parse(value).map_err(bad)?;
        }
        HeaderName::CallId => {
            let v = trim_lws(value);
            if v.is_empty() || v.bytes().any(|b| is_lws(b) || !b.is_ascii_graphic()) {
                return Err(bad("Call-ID must be word[@word]"));
            }
        }
        HeaderName::MaxForwards => {
            let v = trim_lws(value);
            // 1*DIGIT (§25.1): leading zeros are legal ("0068", RFC 4475 §3.1.1.1).
            if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad("not a number"));
            }
            if v.trim_start_matches('0').len() > 3 || v.parse::<u64>().unwrap_or(u64::MAX) > 255 {
                return Err(bad("above 255"));
            }
        }
        HeaderName::ContentLength => {
            parse_content_length(value).map_err(bad)?;
        }
        HeaderName::Expires => {
            parse_delta_seconds(value).ok_or(bad("not delta-seconds"))?;
        }
        _ => {}
    }
    Ok(())
}

pub(crate) fn parse_content_length(value: &str) -> Result<usize, &'static str> {
    let v = trim_lws(value);
    if v.is_empty() || v.len() > 10 || !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err("Content-Length is not a non-negative number");
    }
    v.parse::<usize>().map_err(|_| "Content-Length overflow")
}

impl HeaderName<'_> {
    /// The canonical name for known headers; `"extension"` for others (for error messages).
    pub fn as_str_static(&self) -> &'static str {
        self.known_name().unwrap_or("extension")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn via_folded_and_ipv6() {
        let v = Via::parse(
            "SIP  / 2.0  / TCP     spindle.example.com   ;\r\n  branch  =   z9hG4bK9ikj8",
        )
        .unwrap();
        assert_eq!(v.transport, "TCP");
        assert_eq!(v.host, "spindle.example.com");
        assert_eq!(v.branch(), Some("z9hG4bK9ikj8"));
        let v = Via::parse("SIP/2.0/UDP [2001:db8::9:1]:5070;branch=z9hG4bKas3;rport").unwrap();
        assert_eq!(v.host, "[2001:db8::9:1]");
        assert_eq!(v.port, Some(5070));
        assert_eq!(v.rport(), Some(None));
        assert!(Via::parse("SIP/2.0/UDP [2001:db8::9:1:5070").is_err());
        assert!(Via::parse("SIP/2.0/UDP 192.0.2.15;;,;,,").is_err());
    }

    #[test]
    fn identity_names() {
        // RFC 8224 §4: `Identity`, compact form `y`, case-insensitive like every header name.
        for name in ["Identity", "IDENTITY", "identity", "y", "Y"] {
            assert_eq!(HeaderName::parse(name), HeaderName::Identity, "{name}");
        }
        assert_eq!(HeaderName::Identity.as_str(), "Identity");
        assert!(!HeaderName::Identity.is_list());
    }

    #[test]
    fn name_addr_forms() {
        let n = NameAddr::parse(
            "\"J Rosenberg \\\\\\\"\"       <sip:jdrosen@example.com>\r\n  ;\r\n  tag = 98asjd8",
        )
        .unwrap();
        assert_eq!(n.uri, "sip:jdrosen@example.com");
        assert_eq!(n.tag(), Some("98asjd8"));
        assert_eq!(
            NameAddr::parse("caller<sip:caller@example.com>;tag=323")
                .unwrap()
                .display,
            Some("caller")
        );
        assert!(NameAddr::parse("\"Mr. J. User <sip:j.user@example.com>").is_err());
        assert!(NameAddr::parse("\"Watson, Thomas\" < sip:t.watson@example.org >").is_err());
        assert!(NameAddr::parse("Bell, Alexander <sip:a.g.bell@example.com>;tag=43").is_err());
        assert!(NameAddr::parse("sip:user@example.com?Route=%3Csip:sip.example.com%3E").is_err());
        let p = NameAddr::parse("<sip:a@b>;expires=4294967296000").unwrap();
        assert_eq!(p.expires(), Some(u32::MAX));
    }

    #[test]
    fn cseq_limits() {
        assert_eq!(CSeq::parse("0009\r\n  INVITE").unwrap().seq, 9);
        assert!(CSeq::parse("2147483648 INVITE").is_err());
        assert!(CSeq::parse("36893291588282376 INVITE").is_err());
        assert!(CSeq::parse("1").is_err());
    }

    #[test]
    fn auth_params() {
        let a =
            AuthHeader::parse("Digest realm=\"example.com\", nonce=\"a,b\", qop=auth, nc=00000001")
                .unwrap();
        assert_eq!(a.scheme, "Digest");
        assert_eq!(a.param("NONCE"), Some("a,b"));
        assert_eq!(a.param("nc"), Some("00000001"));
    }

    #[test]
    fn list_split_respects_quotes() {
        let items: Vec<_> = split_list("\"a,b\" <sip:x@y>, <sip:z@w;p=1,2>,*").collect();
        assert_eq!(items, vec!["\"a,b\" <sip:x@y>", "<sip:z@w;p=1,2>", "*"]);
        assert_eq!(split_list("a,,b").collect::<Vec<_>>(), vec!["a", "", "b"]);
    }
}
