//! A borrowing view of SIP and SIPS URIs (RFC 3261 §19.1, §25.1).

use crate::header::{Params, split_host_port};

/// `sip:` / `sips:` URI parts; escapes are kept as written (comparison rules of §19.1.4 apply them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SipUri<'a> {
    /// True for `sips:`.
    pub secure: bool,
    /// The user part (may contain `;` parameters of a telephone-subscriber, RFC 4475 §3.1.1.9).
    pub user: Option<&'a str>,
    /// The password, when present (deprecated, §19.1.1).
    pub password: Option<&'a str>,
    /// Host; IPv6 references keep their brackets.
    pub host: &'a str,
    /// Port.
    pub port: Option<u16>,
    /// URI parameters (`;transport=`, `;lr`, ...).
    pub params: Params<'a>,
    /// The headers component after `?`, raw.
    pub headers: Option<&'a str>,
}

/// Why a URI is not a usable SIP URI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UriError {
    /// The scheme is not sip or sips (a 416 for a Request-URI, §8.2.2.1).
    #[error("unsupported URI scheme")]
    Scheme,
    /// The URI does not follow §25.1.
    #[error("malformed SIP URI: {0}")]
    Malformed(&'static str),
}

impl<'a> SipUri<'a> {
    /// Parses a `sip:`/`sips:` URI.
    pub fn parse(s: &'a str) -> Result<SipUri<'a>, UriError> {
        let colon = s.find(':').ok_or(UriError::Malformed("no scheme"))?;
        let scheme = &s[..colon];
        let secure = if scheme.eq_ignore_ascii_case("sip") {
            false
        } else if scheme.eq_ignore_ascii_case("sips") {
            true
        } else {
            return Err(UriError::Scheme);
        };
        let rest = &s[colon + 1..];
        // userinfo ends at the last '@' (the user part may hold '?', ';' and escapes; header values
        // cannot hold an unescaped '@').
        let (userinfo, hostpart) = match rest.rfind('@') {
            Some(at) => (Some(&rest[..at]), &rest[at + 1..]),
            None => (None, rest),
        };
        let (hostpart, headers) = match hostpart.find('?') {
            Some(q) => (&hostpart[..q], Some(&hostpart[q + 1..])),
            None => (hostpart, None),
        };
        let (user, password) = match userinfo {
            None => (None, None),
            Some("") => return Err(UriError::Malformed("empty user")),
            Some(u) => match u.find(':') {
                Some(c) => (Some(&u[..c]), Some(&u[c + 1..])),
                None => (Some(u), None),
            },
        };
        let params_at = if hostpart.starts_with('[') {
            hostpart
                .find(']')
                .and_then(|c| hostpart[c..].find(';').map(|p| p + c))
        } else {
            hostpart.find(';')
        }
        .unwrap_or(hostpart.len());
        let (host, port) = split_host_port(&hostpart[..params_at]).map_err(UriError::Malformed)?;
        let params = Params::new(&hostpart[params_at..]);
        params.validate().map_err(UriError::Malformed)?;
        Ok(SipUri {
            secure,
            user,
            password,
            host,
            port,
            params,
            headers,
        })
    }

    /// True when the URI carries `;lr` (a loose router, §19.1.1, §16.4).
    pub fn is_loose_router(&self) -> bool {
        self.params.get("lr").is_some()
    }

    /// The `transport` parameter, if any.
    pub fn transport(&self) -> Option<&'a str> {
        self.params.value("transport")
    }

    /// The `maddr` parameter, if any.
    pub fn maddr(&self) -> Option<&'a str> {
        self.params.value("maddr")
    }

    /// The address-of-record form `user@host` used as a location-service key (§10.3 step 5:
    /// parameters, port and password dropped, host lower-cased).
    pub fn aor(&self) -> String {
        match self.user {
            Some(u) => format!("{}@{}", u, self.host.to_ascii_lowercase()),
            None => self.host.to_ascii_lowercase(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_forms() {
        let u = SipUri::parse("sip:user;par=u%40example.net@example.com").unwrap();
        assert_eq!(u.user, Some("user;par=u%40example.net"));
        assert_eq!(u.host, "example.com");
        let u = SipUri::parse("sips:[2001:db8::10]:5061;transport=tls;lr").unwrap();
        assert!(u.secure && u.is_loose_router());
        assert_eq!(u.port, Some(5061));
        assert_eq!(u.transport(), Some("tls"));
        assert_eq!(SipUri::parse("tel:+1234").unwrap_err(), UriError::Scheme);
        assert!(SipUri::parse("sip:@example.com").is_err());
        assert!(SipUri::parse("sip:a@exa mple.com").is_err());
        assert_eq!(
            SipUri::parse("sip:Alice@Example.COM:5060;x=1")
                .unwrap()
                .aor(),
            "Alice@example.com"
        );
    }
}
