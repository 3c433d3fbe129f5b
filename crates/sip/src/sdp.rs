//! SDP (RFC 8866) parse and build, with SDES `a=crypto` (RFC 4568) and `a=key-mgmt` (RFC 4567).
//!
//! [`Sdp`] is owned: descriptions are small and get built as often as parsed. Parsing is strict on
//! structure (RFC 8866 §5: `v=` first, then `o=`, `s=`, the order of session lines, `m=` sections)
//! and accepts LF as well as CRLF line ends (§5: "parsers SHOULD be tolerant").

use std::fmt::Write as _;

use crate::error::SdpError;

/// `o=` (RFC 8866 §5.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// Username (`-` when none).
    pub username: String,
    /// Session id (numeric string).
    pub session_id: String,
    /// Session version (numeric string).
    pub session_version: String,
    /// Network type, `IN`.
    pub net_type: String,
    /// Address type, `IP4` or `IP6`.
    pub addr_type: String,
    /// Unicast address.
    pub address: String,
}

/// `c=` (RFC 8866 §5.7).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    /// Network type, `IN`.
    pub net_type: String,
    /// `IP4` or `IP6`.
    pub addr_type: String,
    /// Connection address (multicast TTL/count suffixes kept).
    pub address: String,
}

/// `a=` (RFC 8866 §5.13): property (`a=recvonly`) or value (`a=rtpmap:0 PCMU/8000`) attribute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attribute {
    /// Attribute name.
    pub name: String,
    /// Value after `:`, if any.
    pub value: Option<String>,
}

/// `m=` section (RFC 8866 §5.14).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Media {
    /// Media type (`audio`, `video`, ...).
    pub media: String,
    /// Transport port (0 disables the stream).
    pub port: u16,
    /// Number of ports (`m=audio 49170/2 ...`).
    pub num_ports: Option<u16>,
    /// Protocol (`RTP/AVP`, `RTP/SAVP`, ...).
    pub proto: String,
    /// Formats (payload types for RTP).
    pub formats: Vec<String>,
    /// `i=` of this media.
    pub title: Option<String>,
    /// `c=` lines of this media.
    pub connections: Vec<Connection>,
    /// `b=` lines, raw.
    pub bandwidths: Vec<String>,
    /// `k=` (obsolete, kept for round trips).
    pub key: Option<String>,
    /// `a=` lines in order.
    pub attributes: Vec<Attribute>,
}

/// A session description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sdp {
    /// `o=`.
    pub origin: Origin,
    /// `s=` (a single space or `-` when there is nothing to say).
    pub session_name: String,
    /// `i=`.
    pub info: Option<String>,
    /// `u=`.
    pub uri: Option<String>,
    /// `e=` lines.
    pub emails: Vec<String>,
    /// `p=` lines.
    pub phones: Vec<String>,
    /// Session-level `c=`.
    pub connection: Option<Connection>,
    /// `b=` lines, raw.
    pub bandwidths: Vec<String>,
    /// `t=` lines with their `r=` lines, raw (`"0 0"` for unbounded).
    pub times: Vec<(String, Vec<String>)>,
    /// `z=`, raw.
    pub zone: Option<String>,
    /// `k=`, raw.
    pub key: Option<String>,
    /// Session-level `a=` lines.
    pub attributes: Vec<Attribute>,
    /// `m=` sections.
    pub media: Vec<Media>,
}

/// An `a=rtpmap` value (RFC 8866 §6.6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtpMap<'a> {
    /// Payload type.
    pub payload_type: u8,
    /// Encoding name.
    pub encoding: &'a str,
    /// Clock rate.
    pub clock_rate: u32,
    /// Encoding parameters (channels for audio).
    pub params: Option<&'a str>,
}

/// An `a=crypto` value (RFC 4568 §9.1): `tag crypto-suite key-params [session-params]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Crypto<'a> {
    /// The tag, 1*9DIGIT.
    pub tag: u32,
    /// The crypto suite (`AES_CM_128_HMAC_SHA1_80`, ...).
    pub suite: &'a str,
    /// Key parameters, `inline:` form split out.
    pub keys: Vec<InlineKey<'a>>,
    /// Session parameters, raw.
    pub session_params: Vec<&'a str>,
}

/// `inline:<key||salt base64>[|lifetime][|MKI:length]` (RFC 4568 §6.1, §9.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InlineKey<'a> {
    /// Base64 of master key || master salt.
    pub key_salt: &'a str,
    /// Lifetime as written (`2^20` or decimal).
    pub lifetime: Option<&'a str>,
    /// MKI value and length.
    pub mki: Option<(u32, u8)>,
}

/// An `a=key-mgmt` value (RFC 4567 §3.1): `prtcl-id SP keymgmt-data` (base64 MIKEY for "mikey").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyMgmt<'a> {
    /// Protocol identifier (`mikey`).
    pub protocol: &'a str,
    /// Base64 data, opaque here.
    pub data: &'a str,
}

fn field(line: usize, what: &'static str) -> SdpError {
    SdpError::Field { line, what }
}

fn parse_connection(v: &str, line: usize) -> Result<Connection, SdpError> {
    let mut it = v.split(' ');
    match (it.next(), it.next(), it.next(), it.next()) {
        (Some(n), Some(a), Some(addr), None)
            if !n.is_empty() && !a.is_empty() && !addr.is_empty() =>
        {
            Ok(Connection {
                net_type: n.to_owned(),
                addr_type: a.to_owned(),
                address: addr.to_owned(),
            })
        }
        _ => Err(field(line, "c=")),
    }
}

fn parse_attribute(v: &str) -> Attribute {
    match v.split_once(':') {
        Some((n, val)) => Attribute {
            name: n.to_owned(),
            value: Some(val.to_owned()),
        },
        None => Attribute {
            name: v.to_owned(),
            value: None,
        },
    }
}

impl Sdp {
    /// Parses a description.
    pub fn parse(input: &[u8]) -> Result<Sdp, SdpError> {
        let text = std::str::from_utf8(input).map_err(|_| SdpError::NotUtf8)?;
        let mut lines = text
            .split('\n')
            .map(|l| l.strip_suffix('\r').unwrap_or(l))
            .enumerate()
            .map(|(i, l)| (i + 1, l))
            .filter(|(_, l)| !l.is_empty())
            .peekable();
        let mut next = |expect: char| -> Result<(usize, &str), SdpError> {
            let (n, l) = lines.next().ok_or(SdpError::Missing(expect))?;
            let (k, v) = split_line(n, l)?;
            if k != expect {
                return Err(SdpError::Unexpected { line: n, kind: k });
            }
            Ok((n, v))
        };
        let (n, v) = next('v')?;
        if v != "0" {
            return Err(field(n, "v= (must be 0)"));
        }
        let (n, o) = next('o')?;
        let parts: Vec<&str> = o.split(' ').collect();
        if parts.len() != 6 || parts.iter().any(|p| p.is_empty()) {
            return Err(field(n, "o="));
        }
        let origin = Origin {
            username: parts[0].to_owned(),
            session_id: parts[1].to_owned(),
            session_version: parts[2].to_owned(),
            net_type: parts[3].to_owned(),
            addr_type: parts[4].to_owned(),
            address: parts[5].to_owned(),
        };
        let (_, s) = next('s')?;
        let mut sdp = Sdp {
            origin,
            session_name: s.to_owned(),
            info: None,
            uri: None,
            emails: vec![],
            phones: vec![],
            connection: None,
            bandwidths: vec![],
            times: vec![],
            zone: None,
            key: None,
            attributes: vec![],
            media: vec![],
        };

        // Session section in the order of RFC 8866 §5: i u e p c b (t r)+ z k a, then m sections.
        const ORDER: &str = "iuepcbtrzkam";
        let mut last = 0usize;
        for (n, l) in lines {
            let (k, v) = split_line(n, l)?;
            if let Some(m) = sdp.media.last_mut() {
                // Media section order: i c b k a (RFC 8866 §5).
                match k {
                    'm' => {}
                    'i' if m.title.is_none() => {
                        m.title = Some(v.to_owned());
                        continue;
                    }
                    'c' => {
                        m.connections.push(parse_connection(v, n)?);
                        continue;
                    }
                    'b' => {
                        m.bandwidths.push(v.to_owned());
                        continue;
                    }
                    'k' => {
                        m.key = Some(v.to_owned());
                        continue;
                    }
                    'a' => {
                        m.attributes.push(parse_attribute(v));
                        continue;
                    }
                    _ => return Err(SdpError::Unexpected { line: n, kind: k }),
                }
            }
            let pos = ORDER
                .find(k)
                .ok_or(SdpError::Unexpected { line: n, kind: k })?;
            // 't' and 'r' alternate; other letters may not go backwards.
            if pos < last && !(k == 't' && last == ORDER.find('r').unwrap_or(0)) {
                return Err(SdpError::Unexpected { line: n, kind: k });
            }
            last = pos;
            match k {
                'i' => sdp.info = Some(v.to_owned()),
                'u' => sdp.uri = Some(v.to_owned()),
                'e' => sdp.emails.push(v.to_owned()),
                'p' => sdp.phones.push(v.to_owned()),
                'c' => sdp.connection = Some(parse_connection(v, n)?),
                'b' => sdp.bandwidths.push(v.to_owned()),
                't' => {
                    let mut it = v.split(' ');
                    match (it.next(), it.next(), it.next()) {
                        (Some(a), Some(b), None)
                            if a.parse::<u64>().is_ok() && b.parse::<u64>().is_ok() => {}
                        _ => return Err(field(n, "t=")),
                    }
                    sdp.times.push((v.to_owned(), vec![]));
                }
                'r' => match sdp.times.last_mut() {
                    Some(t) => t.1.push(v.to_owned()),
                    None => return Err(SdpError::Unexpected { line: n, kind: k }),
                },
                'z' => sdp.zone = Some(v.to_owned()),
                'k' => sdp.key = Some(v.to_owned()),
                'a' => sdp.attributes.push(parse_attribute(v)),
                'm' => sdp.media.push(parse_media(v, n)?),
                _ => return Err(SdpError::Unexpected { line: n, kind: k }),
            }
        }
        if sdp.times.is_empty() {
            return Err(SdpError::Missing('t'));
        }
        // §5.7: every media needs a c= at session or media level.
        if sdp.connection.is_none() && sdp.media.iter().any(|m| m.connections.is_empty()) {
            return Err(SdpError::Missing('c'));
        }
        Ok(sdp)
    }

    /// A minimal description for one IPv4/IPv6 address: `o=`, `s=-`, `c=`, `t=0 0`, no media.
    pub fn new(username: &str, session_id: u64, address: &str) -> Sdp {
        let addr_type = if address.contains(':') { "IP6" } else { "IP4" };
        Sdp {
            origin: Origin {
                username: username.to_owned(),
                session_id: session_id.to_string(),
                session_version: session_id.to_string(),
                net_type: "IN".into(),
                addr_type: addr_type.into(),
                address: address.to_owned(),
            },
            session_name: "-".into(),
            info: None,
            uri: None,
            emails: vec![],
            phones: vec![],
            connection: Some(Connection {
                net_type: "IN".into(),
                addr_type: addr_type.into(),
                address: address.to_owned(),
            }),
            bandwidths: vec![],
            times: vec![("0 0".into(), vec![])],
            zone: None,
            key: None,
            attributes: vec![],
            media: vec![],
        }
    }

    /// Serializes with CRLF line ends in RFC 8866 §5 order.
    pub fn to_string_crlf(&self) -> String {
        let mut s = String::with_capacity(256);
        let o = &self.origin;
        let _ = write!(
            s,
            "v=0\r\no={} {} {} {} {} {}\r\ns={}\r\n",
            o.username,
            o.session_id,
            o.session_version,
            o.net_type,
            o.addr_type,
            o.address,
            self.session_name
        );
        let opt = |s: &mut String, k: char, v: &Option<String>| {
            if let Some(v) = v {
                let _ = write!(s, "{k}={v}\r\n");
            }
        };
        opt(&mut s, 'i', &self.info);
        opt(&mut s, 'u', &self.uri);
        for e in &self.emails {
            let _ = write!(s, "e={e}\r\n");
        }
        for p in &self.phones {
            let _ = write!(s, "p={p}\r\n");
        }
        if let Some(c) = &self.connection {
            let _ = write!(s, "c={} {} {}\r\n", c.net_type, c.addr_type, c.address);
        }
        for b in &self.bandwidths {
            let _ = write!(s, "b={b}\r\n");
        }
        for (t, rs) in &self.times {
            let _ = write!(s, "t={t}\r\n");
            for r in rs {
                let _ = write!(s, "r={r}\r\n");
            }
        }
        opt(&mut s, 'z', &self.zone);
        opt(&mut s, 'k', &self.key);
        write_attrs(&mut s, &self.attributes);
        for m in &self.media {
            let _ = write!(s, "m={} {}", m.media, m.port);
            if let Some(n) = m.num_ports {
                let _ = write!(s, "/{n}");
            }
            let _ = write!(s, " {}", m.proto);
            for f in &m.formats {
                let _ = write!(s, " {f}");
            }
            s.push_str("\r\n");
            opt(&mut s, 'i', &m.title);
            for c in &m.connections {
                let _ = write!(s, "c={} {} {}\r\n", c.net_type, c.addr_type, c.address);
            }
            for b in &m.bandwidths {
                let _ = write!(s, "b={b}\r\n");
            }
            opt(&mut s, 'k', &m.key);
            write_attrs(&mut s, &m.attributes);
        }
        s
    }

    /// Session-level attribute values by name.
    pub fn attribute<'s>(&'s self, name: &'s str) -> impl Iterator<Item = Option<&'s str>> + 's {
        self.attributes
            .iter()
            .filter(move |a| a.name == name)
            .map(|a| a.value.as_deref())
    }

    /// `a=key-mgmt` lines, media level first then session level (RFC 4567 §3.1 allows both).
    pub fn key_mgmt(&self) -> Vec<KeyMgmt<'_>> {
        self.media
            .iter()
            .flat_map(|m| m.attributes.iter())
            .chain(self.attributes.iter())
            .filter(|a| a.name == "key-mgmt")
            .filter_map(|a| KeyMgmt::parse(a.value.as_deref()?))
            .collect()
    }
}

impl Media {
    /// A media section with formats and no attributes.
    pub fn new(media: &str, port: u16, proto: &str, formats: &[&str]) -> Media {
        Media {
            media: media.to_owned(),
            port,
            num_ports: None,
            proto: proto.to_owned(),
            formats: formats.iter().map(|f| (*f).to_owned()).collect(),
            title: None,
            connections: vec![],
            bandwidths: vec![],
            key: None,
            attributes: vec![],
        }
    }

    /// Appends `a=name[:value]`.
    pub fn push_attr(&mut self, name: &str, value: Option<&str>) -> &mut Self {
        self.attributes.push(Attribute {
            name: name.to_owned(),
            value: value.map(str::to_owned),
        });
        self
    }

    /// Attribute values by name.
    pub fn attribute<'s>(&'s self, name: &'s str) -> impl Iterator<Item = Option<&'s str>> + 's {
        self.attributes
            .iter()
            .filter(move |a| a.name == name)
            .map(|a| a.value.as_deref())
    }

    /// `a=rtpmap` entries that parse.
    pub fn rtpmaps(&self) -> impl Iterator<Item = RtpMap<'_>> {
        self.attribute("rtpmap").flatten().filter_map(RtpMap::parse)
    }

    /// `a=crypto` entries that parse (RFC 4568).
    pub fn cryptos(&self) -> impl Iterator<Item = Crypto<'_>> {
        self.attribute("crypto")
            .flatten()
            .filter_map(|v| Crypto::parse(v).ok())
    }

    /// The direction attribute (RFC 8866 §6.7), `sendrecv` when absent.
    pub fn direction(&self) -> &str {
        self.attributes
            .iter()
            .find(|a| {
                matches!(
                    a.name.as_str(),
                    "sendrecv" | "sendonly" | "recvonly" | "inactive"
                )
            })
            .map_or("sendrecv", |a| a.name.as_str())
    }
}

fn write_attrs(s: &mut String, attrs: &[Attribute]) {
    for a in attrs {
        match &a.value {
            Some(v) => {
                let _ = write!(s, "a={}:{}\r\n", a.name, v);
            }
            None => {
                let _ = write!(s, "a={}\r\n", a.name);
            }
        }
    }
}

fn split_line(n: usize, l: &str) -> Result<(char, &str), SdpError> {
    // §5: <type>=<value>, type a single letter, no whitespace around '='.
    let b = l.as_bytes();
    if b.len() < 2 || b[1] != b'=' || !b[0].is_ascii_lowercase() {
        return Err(SdpError::Line { line: n });
    }
    Ok((b[0] as char, &l[2..]))
}

fn parse_media(v: &str, n: usize) -> Result<Media, SdpError> {
    let mut it = v.split(' ');
    let media = it
        .next()
        .filter(|s| !s.is_empty())
        .ok_or(field(n, "m= media"))?;
    let port_s = it.next().ok_or(field(n, "m= port"))?;
    let (port, num_ports) = match port_s.split_once('/') {
        Some((p, c)) => (p, Some(c.parse().map_err(|_| field(n, "m= port count"))?)),
        None => (port_s, None),
    };
    let port = port.parse().map_err(|_| field(n, "m= port"))?;
    let proto = it
        .next()
        .filter(|s| !s.is_empty())
        .ok_or(field(n, "m= proto"))?;
    let formats: Vec<String> = it.map(str::to_owned).collect();
    if formats.is_empty() || formats.iter().any(String::is_empty) {
        return Err(field(n, "m= formats"));
    }
    let mut m = Media::new(media, port, proto, &[]);
    m.num_ports = num_ports;
    m.formats = formats;
    Ok(m)
}

impl<'a> RtpMap<'a> {
    /// Parses `<payload type> <encoding name>/<clock rate>[/<encoding parameters>]`.
    pub fn parse(v: &'a str) -> Option<RtpMap<'a>> {
        let (pt, rest) = v.split_once(' ')?;
        let mut parts = rest.trim().splitn(3, '/');
        let encoding = parts.next()?;
        let clock_rate = parts.next()?.parse().ok()?;
        Some(RtpMap {
            payload_type: pt.parse().ok().filter(|p: &u8| *p < 128)?,
            encoding,
            clock_rate,
            params: parts.next(),
        })
    }
}

impl<'a> Crypto<'a> {
    /// Parses an `a=crypto` value (RFC 4568 §9.1).
    pub fn parse(v: &'a str) -> Result<Crypto<'a>, &'static str> {
        let mut it = v.split([' ', '\t']).filter(|s| !s.is_empty());
        let tag = it.next().ok_or("no tag")?;
        if tag.is_empty() || tag.len() > 9 || !tag.bytes().all(|b| b.is_ascii_digit()) {
            return Err("tag is not 1*9DIGIT");
        }
        let suite = it.next().ok_or("no crypto-suite")?;
        let key_params = it.next().ok_or("no key-params")?;
        let mut keys = Vec::new();
        for kp in key_params.split(';') {
            let inline = kp
                .strip_prefix("inline:")
                .ok_or("key-method is not inline")?;
            let mut parts = inline.split('|');
            let key_salt = parts.next().filter(|k| !k.is_empty()).ok_or("empty key")?;
            let mut lifetime = None;
            let mut mki = None;
            for p in parts {
                if let Some((v, l)) = p.split_once(':') {
                    let v = v.parse().map_err(|_| "bad MKI value")?;
                    let l: u8 = l.parse().map_err(|_| "bad MKI length")?;
                    if !(1..=128).contains(&l) {
                        return Err("MKI length out of range");
                    }
                    mki = Some((v, l));
                } else {
                    lifetime = Some(p);
                }
            }
            keys.push(InlineKey {
                key_salt,
                lifetime,
                mki,
            });
        }
        Ok(Crypto {
            tag: tag.parse().map_err(|_| "tag")?,
            suite,
            keys,
            session_params: it.collect(),
        })
    }
}

impl<'a> KeyMgmt<'a> {
    /// Parses `prtcl-id SP keymgmt-data`.
    pub fn parse(v: &'a str) -> Option<KeyMgmt<'a>> {
        let (p, d) = v.split_once(' ')?;
        if p.is_empty() || d.trim().is_empty() {
            return None;
        }
        Some(KeyMgmt {
            protocol: p,
            data: d.trim(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OFFER: &str = "v=0\r\no=alice 2890844526 2890844526 IN IP4 198.51.100.1\r\ns=-\r\nc=IN IP4 198.51.100.1\r\nt=0 0\r\na=key-mgmt:mikey AQAFgM0XflABAAAAAAAAAAAAAAsAyO\r\nm=audio 49170 RTP/SAVP 0 8\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|2^20|1:32\r\na=sendrecv\r\n";

    #[test]
    fn parse_and_round_trip() {
        let s = Sdp::parse(OFFER.as_bytes()).unwrap();
        assert_eq!(s.media.len(), 1);
        let m = &s.media[0];
        assert_eq!(m.port, 49170);
        assert_eq!(
            m.rtpmaps().map(|r| r.encoding).collect::<Vec<_>>(),
            ["PCMU", "PCMA"]
        );
        let c = m.cryptos().next().unwrap();
        assert_eq!(c.suite, "AES_CM_128_HMAC_SHA1_80");
        assert_eq!(c.keys[0].lifetime, Some("2^20"));
        assert_eq!(c.keys[0].mki, Some((1, 32)));
        assert_eq!(s.key_mgmt()[0].protocol, "mikey");
        assert_eq!(s.to_string_crlf(), OFFER);
    }

    #[test]
    fn strictness() {
        assert!(Sdp::parse(b"o=x 1 1 IN IP4 h\r\nv=0\r\n").is_err());
        assert!(
            Sdp::parse(b"v=0\r\no=x 1 1 IN IP4 h\r\ns=-\r\nt=0 0\r\nm=audio 1 RTP/AVP 0\r\n")
                .is_err(),
            "no c="
        );
        assert!(Sdp::parse(b"v=0\r\no=x 1 1 IN IP4 h\r\ns=-\r\nc=IN IP4 h\r\nt=0 0\r\nm =video 3227 RTP/AVP 31\r\n").is_err());
        assert!(
            Sdp::parse(b"v=0\r\no=x 1 1 IN IP4 h\r\ns=-\r\nt=0 0\r\nc=IN IP4 h\r\n").is_err(),
            "c after t"
        );
        assert!(Crypto::parse("1 AES_CM_128_HMAC_SHA1_80 key:abc").is_err());
        // LF-only line ends are accepted (RFC 8866 §5).
        assert!(Sdp::parse(b"v=0\no=x 1 1 IN IP4 h\ns=-\nc=IN IP4 h\nt=0 0\n").is_ok());
    }
}
