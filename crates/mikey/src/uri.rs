//! MIKEY ID payloads ↔ chaincall identities: `sip:+15551234567@example.org`, `tel:+15551234567` and
//! `sip:server.example.org` (RFC 3830 §6.7 ID type URI).

use chaincall_identity::{DomainName, IdentityName, PhoneNumber};

use crate::error::MikeyError;
use crate::message::IdType;

/// The URI chaincall puts in an ID payload for `name`: a number becomes `sip:+NUMBER@domain` when a
/// SIP domain is given (RFC 3261 user part in E.164 form) and `tel:+NUMBER` (RFC 3966) otherwise; a
/// server becomes `sip:its.domain`.
pub fn identity_uri(name: &IdentityName, sip_domain: Option<&str>) -> String {
    match (name, sip_domain) {
        (IdentityName::Phone(p), Some(domain)) => format!("sip:{}@{domain}", p.as_str()),
        (IdentityName::Phone(p), None) => format!("tel:{}", p.as_str()),
        (IdentityName::Domain(d), _) => format!("sip:{}", d.as_str()),
    }
}

/// Resolves an ID payload to the identity whose key the keystore holds.
///
/// Accepted: URI type, `tel:+E164` (parameters after `;` dropped), `sip:`/`sips:` with an E.164 user
/// part (`sip:+15551234567@host`, parameters dropped), or a host only (`sip:server.example.org`).
pub fn resolve_identity(id_type: IdType, data: &[u8]) -> Result<IdentityName, MikeyError> {
    let bad = |reason| MikeyError::UnresolvableIdentity {
        uri: String::from_utf8_lossy(data).into_owned(),
        reason,
    };
    if id_type != IdType::Uri {
        return Err(bad("only URI identities are used by chaincall"));
    }
    let uri = std::str::from_utf8(data).map_err(|_| bad("not UTF-8"))?;
    let lower = uri.to_ascii_lowercase();
    if let Some(rest) = lower.strip_prefix("tel:") {
        let number = &uri[4..4 + rest.split(';').next().unwrap_or("").len()];
        return PhoneNumber::parse(number)
            .map(IdentityName::Phone)
            .map_err(|_| bad("tel: URI without an E.164 number"));
    }
    let scheme_len = if lower.starts_with("sips:") {
        5
    } else if lower.starts_with("sip:") {
        4
    } else {
        return Err(bad("scheme must be sip:, sips: or tel:"));
    };
    let rest = &uri[scheme_len..];
    let rest = rest.split([';', '?']).next().unwrap_or("");
    match rest.split_once('@') {
        Some((user, _host)) => {
            if !user.starts_with('+') {
                return Err(bad("SIP user part must be an E.164 number (+...)"));
            }
            PhoneNumber::parse(user)
                .map(IdentityName::Phone)
                .map_err(|_| bad("SIP user part is not a valid E.164 number"))
        }
        None => {
            let host = rest.split(':').next().unwrap_or("");
            DomainName::parse(host)
                .map(IdentityName::Domain)
                .map_err(|_| bad("SIP host is not a valid domain name"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_map_to_identities_and_back() {
        let alice: IdentityName = "+15551234567".parse().unwrap();
        assert_eq!(
            identity_uri(&alice, Some("example.org")),
            "sip:+15551234567@example.org"
        );
        assert_eq!(identity_uri(&alice, None), "tel:+15551234567");
        for uri in [
            "sip:+15551234567@example.org",
            "SIPS:+15551234567@example.org;user=phone",
            "tel:+15551234567;phone-context=x",
        ] {
            assert_eq!(
                resolve_identity(IdType::Uri, uri.as_bytes()).unwrap(),
                alice,
                "{uri}"
            );
        }
        let server: IdentityName = "sip.example.org".parse().unwrap();
        assert_eq!(
            resolve_identity(IdType::Uri, b"sip:sip.example.org:5061").unwrap(),
            server
        );
        for bad in [
            "sip:alice@example.org",
            "mailto:a@b.c",
            "tel:5551234",
            "sip:10.0.0.1",
        ] {
            assert!(
                resolve_identity(IdType::Uri, bad.as_bytes()).is_err(),
                "{bad}"
            );
        }
        assert!(resolve_identity(IdType::Nai, b"+15551234567@example.org").is_err());
    }
}
