//! Keeping SRTP end to end through rtpengine: what it is shown of an SDP, and what is kept of its
//! answer.
//!
//! rtpengine (10.5) terminates SRTP whenever it sees it: given `RTP/SAVP` with an `a=crypto` line it
//! offers its own keys to the far side, and it would decrypt with the caller's. No flag makes it
//! forward a crypto line it has seen untouched. So it never sees one: [`mask`] turns the profile
//! into plain `RTP/AVP(F)` and drops every line that carries or negotiates keys (`a=crypto`,
//! `a=key-mgmt`, DTLS `a=fingerprint`/`a=setup`/`a=tls-id`). For plain RTP rtpengine forwards the
//! datagrams as they are, and SRTP is RTP-shaped, so the ciphertext passes byte for byte.
//!
//! [`splice`] then takes only the addresses and ports rtpengine allocated (`c=`, the `m=` ports,
//! `a=rtcp`) and writes them into the *original* SDP: every other line, keys included, reaches the
//! far side exactly as the caller wrote it.
//!
//! Both work line by line on purpose rather than through `chaincall_sip`'s `Sdp`: a parse and
//! rebuild would normalise (line ends, unknown lines, spacing) what must pass byte for byte.

use std::net::IpAddr;

/// Why an SDP could not be masked or spliced.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SdpError {
    /// The text does not start with `v=`.
    #[error("not an SDP body (it does not start with v=)")]
    NotSdp,
    /// rtpengine's SDP has another number of media sections than ours.
    #[error("the relay's SDP has {relayed} media sections, the original {original}")]
    MediaCount {
        /// Media sections in the original.
        original: usize,
        /// Media sections in rtpengine's answer.
        relayed: usize,
    },
    /// A `c=`, `m=` or `a=rtcp` line that does not parse (quoted; these lines carry no keys).
    #[error("malformed SDP line {0:?}")]
    Malformed(String),
    /// rtpengine's SDP gives no connection address for a media section.
    #[error("the relay's SDP has no connection address")]
    NoAddress,
}

/// Profiles rtpengine is shown instead of the secure ones, so it never engages its SRTP code.
const PROFILES: [(&str, &str); 4] = [
    ("RTP/SAVP", "RTP/AVP"),
    ("RTP/SAVPF", "RTP/AVPF"),
    ("UDP/TLS/RTP/SAVP", "RTP/AVP"),
    ("UDP/TLS/RTP/SAVPF", "RTP/AVPF"),
];

/// Attribute lines that carry or negotiate keys: rtpengine never sees them.
const KEY_ATTRIBUTES: [&str; 5] = [
    "a=crypto:",
    "a=key-mgmt:",
    "a=fingerprint:",
    "a=setup:",
    "a=tls-id:",
];

/// Lines without their terminators, and the terminator the body uses (kept on output).
fn lines(sdp: &str) -> Result<(Vec<&str>, &'static str), SdpError> {
    if !sdp.starts_with("v=") {
        return Err(SdpError::NotSdp);
    }
    let eol = if sdp.contains("\r\n") { "\r\n" } else { "\n" };
    let lines = sdp
        .split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .filter(|l| !l.is_empty())
        .collect();
    Ok((lines, eol))
}

/// What rtpengine is shown of `sdp`: secure profiles as plain RTP and no key lines.
///
/// # Errors
/// [`SdpError::NotSdp`] when `sdp` is not an SDP body.
pub fn mask(sdp: &str) -> Result<String, SdpError> {
    let (lines, eol) = lines(sdp)?;
    let mut out = String::with_capacity(sdp.len());
    for line in lines {
        if KEY_ATTRIBUTES.iter().any(|a| line.starts_with(a)) {
            continue;
        }
        if line.starts_with("m=") {
            let mut fields: Vec<&str> = line.split(' ').collect();
            if let Some(proto) = fields.get_mut(2)
                && let Some((_, plain)) = PROFILES.iter().find(|(secure, _)| secure == proto)
            {
                *proto = plain;
            }
            out.push_str(&fields.join(" "));
        } else {
            out.push_str(line);
        }
        out.push_str(eol);
    }
    Ok(out)
}

/// A connection address: `IP4`/`IP6` and the address.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Addr {
    family: String,
    addr: IpAddr,
}

impl Addr {
    fn parse_c(line: &str) -> Result<Self, SdpError> {
        let bad = || SdpError::Malformed(line.to_owned());
        let rest = line.strip_prefix("c=").ok_or_else(bad)?;
        Self::parse_fields(rest.split(' ')).ok_or_else(bad)
    }

    /// `IN IP4 ADDR` from `fields`.
    fn parse_fields<'a>(mut fields: impl Iterator<Item = &'a str>) -> Option<Self> {
        let (net, family, addr) = (fields.next()?, fields.next()?, fields.next()?);
        let addr: IpAddr = addr.parse().ok()?;
        let family_ok = matches!(
            (family, addr),
            ("IP4", IpAddr::V4(_)) | ("IP6", IpAddr::V6(_))
        );
        (net == "IN" && family_ok && fields.next().is_none()).then(|| Self {
            family: family.to_owned(),
            addr,
        })
    }

    fn c_line(&self) -> String {
        format!("c=IN {} {}", self.family, self.addr)
    }
}

/// What rtpengine allocated for one media section.
#[derive(Debug)]
struct RelayedMedia {
    port: u16,
    addr: Option<Addr>,
    rtcp: Option<u16>,
}

/// Reads the `m=` port field (`PORT` or `PORT/COUNT`).
fn m_port(line: &str) -> Result<(u16, Vec<&str>), SdpError> {
    let fields: Vec<&str> = line.split(' ').collect();
    let port = fields
        .get(1)
        .and_then(|f| f.split('/').next())
        .and_then(|p| p.parse().ok())
        .filter(|_| fields.len() >= 4)
        .ok_or_else(|| SdpError::Malformed(line.to_owned()))?;
    Ok((port, fields))
}

fn rtcp_port(line: &str) -> Result<u16, SdpError> {
    line.strip_prefix("a=rtcp:")
        .and_then(|rest| rest.split(' ').next())
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| SdpError::Malformed(line.to_owned()))
}

/// The session address and per-media allocations in rtpengine's SDP.
fn relayed(sdp: &str) -> Result<(Option<Addr>, Vec<RelayedMedia>), SdpError> {
    let (lines, _) = lines(sdp)?;
    let mut session = None;
    let mut media: Vec<RelayedMedia> = Vec::new();
    for line in lines {
        if line.starts_with("m=") {
            let (port, _) = m_port(line)?;
            media.push(RelayedMedia {
                port,
                addr: None,
                rtcp: None,
            });
        } else if line.starts_with("c=") {
            let addr = Some(Addr::parse_c(line)?);
            match media.last_mut() {
                Some(m) => m.addr = addr,
                None => session = addr,
            }
        } else if line.starts_with("a=rtcp:")
            && let Some(m) = media.last_mut()
        {
            m.rtcp = Some(rtcp_port(line)?);
        }
    }
    Ok((session, media))
}

/// `original` with the connection addresses, media ports and RTCP ports rtpengine put in
/// `relayed`; every other line (the keys, the origin, codecs, directions) stays byte for byte.
///
/// An `a=rtcp` line is added to a media section only when rtpengine's RTCP port is not the RTP
/// port + 1 (the default that needs no line), and a `c=` line only when rtpengine gives a media
/// section another address than the session's.
///
/// # Errors
/// When either is not SDP, their media sections do not pair up, or rtpengine's lines do not parse.
pub fn splice(original: &str, relayed_sdp: &str) -> Result<String, SdpError> {
    let (session_addr, media) = relayed(relayed_sdp)?;
    let (lines, eol) = lines(original)?;
    let original_count = lines.iter().filter(|l| l.starts_with("m=")).count();
    if original_count != media.len() {
        return Err(SdpError::MediaCount {
            original: original_count,
            relayed: media.len(),
        });
    }
    let session_addr = session_addr
        .or_else(|| media.first().and_then(|m| m.addr.clone()))
        .ok_or(SdpError::NoAddress)?;

    // Split into the session part and one part per media section.
    let mut sections: Vec<Vec<&str>> = vec![Vec::new()];
    for line in lines {
        if line.starts_with("m=") {
            sections.push(Vec::new());
        }
        // Invariant: `sections` starts non-empty and only grows.
        sections.last_mut().expect("non-empty").push(line);
    }

    let mut out = String::with_capacity(original.len());
    let mut push = |line: &str| {
        out.push_str(line);
        out.push_str(eol);
    };
    for line in &sections[0] {
        if line.starts_with("c=") {
            Addr::parse_c(line)?;
            push(&session_addr.c_line());
        } else {
            push(line);
        }
    }
    for (section, relay) in sections[1..].iter().zip(&media) {
        let addr = relay.addr.as_ref().unwrap_or(&session_addr);
        let has_c = section.iter().any(|l| l.starts_with("c="));
        let has_rtcp = section.iter().any(|l| l.starts_with("a=rtcp:"));
        let rtcp = relay.rtcp.unwrap_or(relay.port.wrapping_add(1));
        for line in section {
            if line.starts_with("m=") {
                let (_, mut fields) = m_port(line)?;
                let count = fields[1].split_once('/').map(|(_, n)| n);
                let port = match count {
                    Some(n) => format!("{}/{n}", relay.port),
                    None => relay.port.to_string(),
                };
                fields[1] = &port;
                push(&fields.join(" "));
                if !has_c && *addr != session_addr {
                    push(&addr.c_line());
                }
            } else if line.starts_with("c=") {
                Addr::parse_c(line)?;
                push(&addr.c_line());
            } else if line.starts_with("a=rtcp:") {
                rtcp_port(line)?;
                // `a=rtcp:PORT` or `a=rtcp:PORT IN IP4 ADDR`: keep the form, relay's values.
                if line.contains(' ') {
                    push(&format!("a=rtcp:{rtcp} IN {} {}", addr.family, addr.addr));
                } else {
                    push(&format!("a=rtcp:{rtcp}"));
                }
            } else {
                push(line);
            }
        }
        if !has_rtcp && relay.port != 0 && rtcp != relay.port.wrapping_add(1) {
            push(&format!("a=rtcp:{rtcp}"));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const OFFER: &str = "v=0\r\n\
        o=alice 1 1 IN IP4 192.168.1.10\r\n\
        s=-\r\n\
        c=IN IP4 192.168.1.10\r\n\
        t=0 0\r\n\
        a=key-mgmt:mikey AQAFgM0XAAAAAAAAAAAAAAA\r\n\
        m=audio 4000 RTP/SAVP 0 8\r\n\
        a=rtpmap:0 PCMU/8000\r\n\
        a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz\r\n\
        a=rtcp:4001 IN IP4 192.168.1.10\r\n\
        a=sendrecv\r\n";

    #[test]
    fn mask_hides_keys_and_the_secure_profile() {
        let masked = mask(OFFER).unwrap();
        assert!(
            !masked.contains("crypto") && !masked.contains("key-mgmt"),
            "{masked}"
        );
        assert!(!masked.contains("inline:") && !masked.contains("mikey"));
        assert!(masked.contains("m=audio 4000 RTP/AVP 0 8\r\n"), "{masked}");
        assert!(masked.contains("a=rtpmap:0 PCMU/8000\r\n"));
        assert_eq!(
            mask(
                "v=0\nm=video 5 UDP/TLS/RTP/SAVPF 96\na=fingerprint:sha-256 AB\na=setup:actpass\n"
            )
            .unwrap(),
            "v=0\nm=video 5 RTP/AVPF 96\n"
        );
        assert_eq!(mask("hello"), Err(SdpError::NotSdp));
    }

    #[test]
    fn splice_rewrites_only_addresses_and_ports() {
        let relayed = "v=0\r\no=alice 1 1 IN IP4 203.0.113.11\r\ns=-\r\nc=IN IP4 203.0.113.11\r\n\
            t=0 0\r\nm=audio 30000 RTP/AVP 0 8\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\na=rtcp:30001\r\n";
        let spliced = splice(OFFER, relayed).unwrap();
        let expected = OFFER
            .replace("c=IN IP4 192.168.1.10", "c=IN IP4 203.0.113.11")
            .replace("m=audio 4000", "m=audio 30000")
            .replace(
                "a=rtcp:4001 IN IP4 192.168.1.10",
                "a=rtcp:30001 IN IP4 203.0.113.11",
            );
        assert_eq!(spliced, expected);

        // A non-default RTCP port is stated; a per-media address is added after m=.
        let original = "v=0\nc=IN IP4 10.0.0.1\nm=audio 4000 RTP/SAVP 0\na=crypto:1 X inline:K\n";
        let relayed = "v=0\nc=IN IP4 198.51.100.1\nm=audio 30010 RTP/AVP 0\nc=IN IP4 198.51.100.2\na=rtcp:30020\n";
        assert_eq!(
            splice(original, relayed).unwrap(),
            "v=0\nc=IN IP4 198.51.100.1\nm=audio 30010 RTP/SAVP 0\nc=IN IP4 198.51.100.2\n\
             a=crypto:1 X inline:K\na=rtcp:30020\n"
        );
    }

    #[test]
    fn splice_refuses_what_does_not_pair_up_or_parse() {
        let one = "v=0\nc=IN IP4 10.0.0.1\nm=audio 4000 RTP/AVP 0\n";
        let two = "v=0\nc=IN IP4 10.0.0.1\nm=audio 4000 RTP/AVP 0\nm=video 4002 RTP/AVP 96\n";
        assert_eq!(
            splice(two, one),
            Err(SdpError::MediaCount {
                original: 2,
                relayed: 1
            })
        );
        for bad in [
            "v=0\nc=IN IP4 not-an-address\nm=audio 1 RTP/AVP 0\n",
            "v=0\nc=IN IP6 10.0.0.1\nm=audio 1 RTP/AVP 0\n",
            "v=0\nc=IN IP4 10.0.0.1\nm=audio 99999 RTP/AVP 0\n",
            "v=0\nc=IN IP4 10.0.0.1\nm=audio 1 RTP/AVP 0\na=rtcp:x\n",
        ] {
            assert!(
                matches!(splice(one, bad), Err(SdpError::Malformed(_))),
                "{bad}"
            );
        }
        assert_eq!(
            splice(one, "v=0\nm=audio 1 RTP/AVP 0\n"),
            Err(SdpError::NoAddress)
        );
    }
}
