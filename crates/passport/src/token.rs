//! The PASSporT as a JWS (RFC 7515 compact serialization, RFC 8225 §6) and the SIP Identity
//! header that carries it (RFC 8224 §4).

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chaincall_identity::{IdentityKey, IdentityName, IdentitySignature, PublicIdentityKey};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::{Claims, KeyLocator, Party, PassportError};

/// The longest Identity header value accepted or produced, in bytes.
///
/// A chaincall Identity header with one `dest` is about 660 bytes; SHAKEN ones with a long `x5u` stay
/// well under 1 KiB. The limit keeps a hostile header from costing more than a few kilobytes of
/// base64 and JSON work.
pub const MAX_IDENTITY_LEN: usize = 4096;

/// Refuses a header or token longer than [`MAX_IDENTITY_LEN`].
fn check_len(len: usize) -> Result<(), PassportError> {
    if len > MAX_IDENTITY_LEN {
        return Err(PassportError::TooLarge {
            len,
            max: MAX_IDENTITY_LEN,
        });
    }
    Ok(())
}

/// What identifies one PASSporT for the replay cache: SHA-256 of its JWS signing input (the
/// base64url header and payload, as received).
///
/// The signature is left out on purpose: ECDSA signatures are malleable (`(r, s)` and
/// `(r, n - s)` both verify), so anyone can make a second valid encoding of a token without the
/// key, but nobody can change a byte of the signing input without breaking the signature.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PassportId(pub [u8; 32]);

impl fmt::Debug for PassportId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PassportId({})", hex::encode(self.0))
    }
}

/// A decoded PASSporT: its claims, the names it gives its key, and what its signature covers.
/// Decoding checks the form only; [`crate::Verifier`] checks the signature and the claims.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Passport {
    jws: String,
    /// Length of the signing input (`header.payload`) at the start of `jws`.
    signed_len: usize,
    kid: Option<String>,
    x5u: Option<String>,
    claims: Claims,
    signature: [u8; 64],
}

#[derive(Deserialize)]
struct RawJwsHeader {
    alg: Option<String>,
    typ: Option<String>,
    ppt: Option<String>,
    kid: Option<String>,
    x5u: Option<String>,
    crit: Option<serde_json::Value>,
}

impl Passport {
    /// Signs `claims` with `key` as the identity `locator` names: header
    /// `{"alg":"ES256","kid":<info URI>,"typ":"passport"}`, no `ppt`, the payload in canonical
    /// form, ES256 (`r || s`, low-S).
    ///
    /// Refuses claims whose `orig` the identity cannot vouch for (the same rule verifiers apply).
    pub fn sign(
        key: &IdentityKey,
        locator: &KeyLocator,
        claims: &Claims,
    ) -> Result<Self, PassportError> {
        check_authority(locator.name(), &claims.orig)?;
        let header = format!("{{\"alg\":\"ES256\",\"kid\":\"{locator}\",\"typ\":\"passport\"}}");
        let payload = claims.to_canonical_json()?;
        let mut jws = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(payload)
        );
        let signed_len = jws.len();
        let signature = key.sign(jws.as_bytes()).to_bytes();
        jws.push('.');
        jws.push_str(&URL_SAFE_NO_PAD.encode(signature));
        Ok(Self {
            jws,
            signed_len,
            kid: Some(locator.to_uri()),
            x5u: None,
            claims: claims.clone(),
            signature,
        })
    }

    /// Decodes a full-form JWS `header.payload.signature`.
    pub fn decode(jws: &str) -> Result<Self, PassportError> {
        check_len(jws.len())?;
        let mut parts = jws.split('.');
        let (Some(header), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(PassportError::Malformed(
                "a JWS has three dot-separated parts",
            ));
        };
        if payload.is_empty() {
            return Err(PassportError::CompactForm);
        }
        let b64 = |part: &str, what| {
            URL_SAFE_NO_PAD
                .decode(part)
                .map_err(|_| PassportError::Malformed(what))
        };
        let header: RawJwsHeader = serde_json::from_slice(&b64(header, "JWS header base64url")?)
            .map_err(|_| PassportError::Malformed("JWS header JSON"))?;
        if header.alg.as_deref() != Some("ES256") {
            return Err(PassportError::UnsupportedAlgorithm);
        }
        if header.typ.as_deref() != Some("passport") {
            return Err(PassportError::WrongType);
        }
        if let Some(ppt) = header.ppt {
            return Err(PassportError::UnsupportedPpt(ppt));
        }
        if header.crit.is_some() {
            // RFC 7515 §4.1.11: extensions named in crit must be understood; we know none.
            return Err(PassportError::Malformed(
                "JWS crit extensions are not supported",
            ));
        }
        let claims = Claims::from_json(&b64(payload, "payload base64url")?)?;
        let signature: [u8; 64] = b64(signature, "signature base64url")?
            .try_into()
            .map_err(|_| PassportError::Malformed("an ES256 signature is 64 bytes"))?;
        Ok(Self {
            jws: jws.to_owned(),
            signed_len: jws.len() - jws.rsplit('.').next().map_or(0, str::len) - 1,
            kid: header.kid,
            x5u: header.x5u,
            claims,
            signature,
        })
    }

    /// The claims (not yet verified unless this came from [`crate::Verifier::verify`]).
    pub fn claims(&self) -> &Claims {
        &self.claims
    }

    /// The JWS, as received or signed.
    pub fn as_jws(&self) -> &str {
        &self.jws
    }

    /// What identifies this PASSporT in a replay cache (see [`PassportId`]).
    pub fn id(&self) -> PassportId {
        PassportId(Sha256::digest(&self.jws.as_bytes()[..self.signed_len]).into())
    }

    /// Verifies the signature under `key`.
    ///
    /// Standard ES256 allows either `s` or `n - s`; Go's `crypto/ecdsa` (secsipidx) and OpenSSL
    /// produce both. The signature is normalised to low-S and then verified, so both twins of an
    /// honest signature pass — which is safe only because the replay cache keys on
    /// [`Self::id`], which both twins share.
    pub fn verify_signature(&self, key: &PublicIdentityKey) -> Result<(), PassportError> {
        let parsed = p256::ecdsa::Signature::from_slice(&self.signature)
            .map_err(|_| PassportError::BadSignature)?;
        let low = parsed.normalize_s().unwrap_or(parsed);
        let signature = IdentitySignature::from_slice(&low.to_bytes())
            .map_err(|_| PassportError::BadSignature)?;
        key.verify(&self.jws.as_bytes()[..self.signed_len], &signature)
            .map_err(|_| PassportError::BadSignature)
    }
}

/// Whether the key of `name` may sign for `orig`: a subscriber's key for its own number only; a
/// domain's key for SIP URIs of its own domain (the domain vouching for its users).
pub(crate) fn check_authority(name: &IdentityName, orig: &Party) -> Result<(), PassportError> {
    let ok = match (name, orig) {
        (IdentityName::Phone(number), Party::Tn(tn)) => number == tn,
        (IdentityName::Domain(domain), Party::Uri(uri)) => {
            sip_uri_host(uri).is_some_and(|host| host.eq_ignore_ascii_case(domain.as_str()))
        }
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(PassportError::NotAuthoritative {
            info: name.canonical(),
            orig: orig.to_string(),
        })
    }
}

/// The host of a `sip:`/`sips:` URI (RFC 3261 §19.1.1), without port, parameters or headers.
fn sip_uri_host(uri: &str) -> Option<&str> {
    let (scheme, rest) = uri.split_once(':')?;
    if !scheme.eq_ignore_ascii_case("sip") && !scheme.eq_ignore_ascii_case("sips") {
        return None;
    }
    // An unescaped '@' in the user part is invalid, and parsers disagree on which '@' ends it:
    // refuse rather than authorise a host another parser would not route to.
    let rest = match rest.split_once('@') {
        Some((_, host)) if host.contains('@') => return None,
        Some((_, host)) => host,
        None => rest,
    };
    let end = rest.find([':', ';', '?']).unwrap_or(rest.len());
    Some(&rest[..end]).filter(|h| !h.is_empty())
}

/// An Identity header field value (RFC 8224 §4):
/// `<jws>;info=<chaincall:keystore:…>;alg=ES256`.
///
/// No `ppt` parameter: chaincall sends the base PASSporT (see the crate docs for why).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityHeader {
    passport: Passport,
    locator: KeyLocator,
}

impl IdentityHeader {
    /// Signs `claims` with `key` for the identity `locator` names (see [`Passport::sign`]).
    pub fn sign(
        key: &IdentityKey,
        locator: &KeyLocator,
        claims: &Claims,
    ) -> Result<Self, PassportError> {
        let header = Self {
            passport: Passport::sign(key, locator, claims)?,
            locator: locator.clone(),
        };
        check_len(header.to_string().len())?;
        Ok(header)
    }

    /// Parses a header field value: the full-form PASSporT, `info` (required, a
    /// [`KeyLocator`]), `alg` (optional, must be ES256) and `ppt` (refused: base PASSporT only).
    /// Other parameters are ignored, as RFC 8224's grammar allows. The JWS is decoded but its
    /// signature is not checked here.
    pub fn parse(value: &str) -> Result<Self, PassportError> {
        check_len(value.len())?;
        let value = value.trim_matches([' ', '\t']);
        let (token, params) = value.split_once(';').unwrap_or((value, ""));
        let token = token.trim_end_matches([' ', '\t']);
        if token.is_empty()
            || !token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        {
            return Err(PassportError::Malformed("the token is not a base64url JWS"));
        }
        let mut info = None;
        let mut have_alg = false;
        for param in params.split(';').filter(|_| !params.is_empty()) {
            let (name, value) = param.split_once('=').unwrap_or((param, ""));
            let (name, value) = (
                name.trim_matches([' ', '\t']),
                value.trim_matches([' ', '\t']),
            );
            if name.eq_ignore_ascii_case("info") {
                let uri = value
                    .strip_prefix('<')
                    .and_then(|v| v.strip_suffix('>'))
                    .ok_or(PassportError::Malformed("info must be <URI>"))?;
                if info.replace(uri).is_some() {
                    return Err(PassportError::Malformed("info given twice"));
                }
            } else if name.eq_ignore_ascii_case("alg") {
                if std::mem::replace(&mut have_alg, true) {
                    return Err(PassportError::Malformed("alg given twice"));
                }
                if unquote(value) != "ES256" {
                    return Err(PassportError::UnsupportedAlgorithm);
                }
            } else if name.eq_ignore_ascii_case("ppt") {
                return Err(PassportError::UnsupportedPpt(unquote(value).to_owned()));
            } else if name.is_empty() {
                return Err(PassportError::Malformed("empty header parameter"));
            }
        }
        let passport = Passport::decode(token)?;
        let info = info.ok_or(PassportError::MissingInfo)?;
        let locator = KeyLocator::parse(info)?;
        // The JWS header's key reference (signed) must name the same key as info (unsigned).
        if passport.kid.as_deref().is_some_and(|kid| kid != info) {
            return Err(PassportError::InfoMismatch("kid"));
        }
        if passport.x5u.as_deref().is_some_and(|x5u| x5u != info) {
            return Err(PassportError::InfoMismatch("x5u"));
        }
        Ok(Self { passport, locator })
    }

    /// The PASSporT.
    pub fn passport(&self) -> &Passport {
        &self.passport
    }

    /// Where the signing key is: the caller looks it up there (verified) before
    /// [`crate::Verifier::verify`].
    pub fn locator(&self) -> &KeyLocator {
        &self.locator
    }
}

impl fmt::Display for IdentityHeader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{};info=<{}>;alg=ES256", self.passport.jws, self.locator)
    }
}

/// A parameter value without its surrounding double quotes, if it has both.
fn unquote(value: &str) -> &str {
    value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(value)
}

/// The 428 helper: a request's Identity header value, or [`PassportError::Missing`] when there is
/// none (RFC 8224 §6.2.2, for a verifier whose policy requires one).
pub fn require_identity(value: Option<&str>) -> Result<IdentityHeader, PassportError> {
    IdentityHeader::parse(value.ok_or(PassportError::Missing)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sip_uri_hosts() {
        assert_eq!(sip_uri_host("sip:alice@example.org"), Some("example.org"));
        assert_eq!(
            sip_uri_host("sips:example.org:5061;transport=tls"),
            Some("example.org")
        );
        assert_eq!(sip_uri_host("sip:a@b@evil.example?x=y"), None);
        assert_eq!(sip_uri_host("tel:+15551234567"), None);
        assert_eq!(sip_uri_host("sip:alice@"), None);
    }
}
