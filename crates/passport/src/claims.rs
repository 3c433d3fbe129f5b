//! The PASSporT claims chaincall signs (RFC 8225 §5), their canonical JSON (RFC 8225 §9), and the
//! media-key binding.

use std::fmt::Write as _;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chaincall_identity::PhoneNumber;
use rand_core::CryptoRngCore;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::PassportError;

/// The private claim carrying the [`MediaBinding`].
pub const MEDIA_CLAIM: &str = "ccmk";

/// The most `dest` entries accepted (tn and uri together).
const MAX_DEST: usize = 16;

/// A calling or called party: a telephone number or a URI (RFC 8225 §5.2.1).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Party {
    /// `{"tn": "15551234567"}`: an E.164 number, written as its digits without `+` (RFC 8224 §8.3).
    Tn(PhoneNumber),
    /// `{"uri": "sip:alice@example.org"}`: a URI, compared byte for byte.
    Uri(String),
}

impl Party {
    /// The claim value as it appears in JSON: digits for a number, the URI otherwise.
    pub fn claim_value(&self) -> &str {
        match self {
            Self::Tn(number) => tn_digits(number),
            Self::Uri(uri) => uri,
        }
    }

    fn key(&self) -> &'static str {
        match self {
            Self::Tn(_) => "tn",
            Self::Uri(_) => "uri",
        }
    }
}

impl std::fmt::Display for Party {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.key(), self.claim_value())
    }
}

/// The `tn` form of a number: its digits, without the `+` (RFC 8224 §8.3 canonicalisation).
fn tn_digits(number: &PhoneNumber) -> &str {
    // PhoneNumber's invariant: '+' then digits only.
    &number.as_str()[1..]
}

/// The called parties (`dest`): numbers and URIs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Dest {
    /// `dest.tn`.
    pub tn: Vec<PhoneNumber>,
    /// `dest.uri`.
    pub uri: Vec<String>,
}

impl Dest {
    /// A `dest` naming one party.
    pub fn single(party: Party) -> Self {
        let mut dest = Self::default();
        match party {
            Party::Tn(number) => dest.tn.push(number),
            Party::Uri(uri) => dest.uri.push(uri),
        }
        dest
    }

    /// Whether `party` is one of the called parties.
    pub fn contains(&self, party: &Party) -> bool {
        match party {
            Party::Tn(number) => self.tn.contains(number),
            Party::Uri(uri) => self.uri.contains(uri),
        }
    }
}

/// The SHA-256 that binds a PASSporT to the media keys of the SDP it travels with (claim `ccmk`).
///
/// The hashed bytes: every SDP line that starts with `a=key-mgmt:`, `a=crypto:` or `a=zrtp-hash:`,
/// session or media level, in the order they appear, each as it appears (from `a=` to the end of
/// the line, without the line ending) followed by CRLF. An SDP without such lines hashes the empty
/// string, so a token for an unencrypted call cannot be moved onto an encrypted one, nor back.
/// For MIKEY the line holds the whole base64 message (keys, timestamp, signature), for SDES the
/// keys themselves, for ZRTP the hash that commits to the Hello.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct MediaBinding([u8; 32]);

/// The attribute prefixes whose lines [`MediaBinding`] covers.
const KEY_ATTRIBUTES: [&str; 3] = ["a=key-mgmt:", "a=crypto:", "a=zrtp-hash:"];

impl MediaBinding {
    /// The binding of an SDP body (CRLF or LF line endings).
    pub fn from_sdp(sdp: &str) -> Self {
        let mut hash = Sha256::new();
        for line in sdp.split('\n') {
            let line = line.strip_suffix('\r').unwrap_or(line);
            if KEY_ATTRIBUTES.iter().any(|p| line.starts_with(p)) {
                hash.update(line.as_bytes());
                hash.update(b"\r\n");
            }
        }
        Self(hash.finalize().into())
    }

    /// A binding from its digest.
    pub fn from_digest(digest: [u8; 32]) -> Self {
        Self(digest)
    }

    /// The digest.
    pub fn digest(&self) -> &[u8; 32] {
        &self.0
    }
}

impl std::fmt::Debug for MediaBinding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MediaBinding({})", hex::encode(self.0))
    }
}

/// The claims of a chaincall PASSporT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    /// `orig`: the caller, whose identity key must sign.
    pub orig: Party,
    /// `dest`: the called parties.
    pub dest: Dest,
    /// `iat`: issued at, seconds since the Unix epoch.
    pub iat: u64,
    /// `origid`: a UUID naming this origination ([`new_origid`]).
    pub origid: String,
    /// `ccmk`: the binding to the SDP's media keys.
    pub media: MediaBinding,
}

/// A fresh random (version 4) UUID for `origid`, from `rng` (seeded in tests).
pub fn new_origid(rng: &mut dyn CryptoRngCore) -> String {
    let mut b = [0u8; 16];
    rng.fill_bytes(&mut b);
    // RFC 9562 §5.4: version 4 in the high nibble of byte 6, variant 10 in byte 8.
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

impl Claims {
    /// The payload in RFC 8225 §9 canonical form: keys sorted, no whitespace.
    ///
    /// Refuses URIs and `origid`s that are empty or hold anything but printable ASCII, so that
    /// every string is written without escapes and reads back the same everywhere.
    pub fn to_canonical_json(&self) -> Result<String, PassportError> {
        if self.dest.tn.is_empty() && self.dest.uri.is_empty() {
            return Err(PassportError::MissingClaim("dest"));
        }
        if self.dest.tn.len() + self.dest.uri.len() > MAX_DEST {
            return Err(PassportError::Malformed("too many dest entries"));
        }
        check_plain(&self.orig, &self.dest, &self.origid)?;
        let list = |items: &mut dyn Iterator<Item = &str>| {
            let quoted: Vec<String> = items.map(|s| format!("\"{s}\"")).collect();
            format!("[{}]", quoted.join(","))
        };
        // Keys in lexicographic order: ccmk, dest, iat, orig, origid; inside dest: tn, uri.
        let mut out = String::with_capacity(256);
        let _ = write!(
            out,
            "{{\"{MEDIA_CLAIM}\":{{\"alg\":\"sha-256\",\"dig\":\"{}\"}},\"dest\":{{",
            URL_SAFE_NO_PAD.encode(self.media.0)
        );
        let mut members = Vec::new();
        if !self.dest.tn.is_empty() {
            members.push(format!(
                "\"tn\":{}",
                list(&mut self.dest.tn.iter().map(tn_digits))
            ));
        }
        if !self.dest.uri.is_empty() {
            members.push(format!(
                "\"uri\":{}",
                list(&mut self.dest.uri.iter().map(String::as_str))
            ));
        }
        let _ = write!(
            out,
            "{}}},\"iat\":{},\"orig\":{{\"{}\":\"{}\"}},\"origid\":\"{}\"}}",
            members.join(","),
            self.iat,
            self.orig.key(),
            self.orig.claim_value(),
            self.origid
        );
        Ok(out)
    }

    /// Reads the claims from a payload's JSON (any key order or spacing: the signature, not the
    /// form, is what is checked). Unknown claims (`attest`, …) are ignored; a duplicated known
    /// claim is refused.
    pub fn from_json(json: &[u8]) -> Result<Self, PassportError> {
        let raw: RawClaims =
            serde_json::from_slice(json).map_err(|_| PassportError::Malformed("payload JSON"))?;
        let orig = raw.orig.ok_or(PassportError::MissingClaim("orig"))?;
        let orig = match (orig.tn, orig.uri) {
            (Some(tn), None) => Party::Tn(parse_tn(&tn)?),
            (None, Some(uri)) => Party::Uri(uri),
            _ => return Err(PassportError::Malformed("orig must hold one of tn and uri")),
        };
        let dest = raw.dest.ok_or(PassportError::MissingClaim("dest"))?;
        if dest.tn.is_empty() && dest.uri.is_empty() {
            return Err(PassportError::MissingClaim("dest"));
        }
        if dest.tn.len() + dest.uri.len() > MAX_DEST {
            return Err(PassportError::Malformed("too many dest entries"));
        }
        let dest = Dest {
            tn: dest
                .tn
                .iter()
                .map(|tn| parse_tn(tn))
                .collect::<Result<_, _>>()?,
            uri: dest.uri,
        };
        let origid = raw.origid.ok_or(PassportError::MissingClaim("origid"))?;
        check_plain(&orig, &dest, &origid)?;
        let media = raw.ccmk.ok_or(PassportError::MissingClaim(MEDIA_CLAIM))?;
        if media.alg != "sha-256" {
            return Err(PassportError::Malformed("ccmk alg is not sha-256"));
        }
        let digest: [u8; 32] = URL_SAFE_NO_PAD
            .decode(&media.dig)
            .ok()
            .and_then(|d| d.try_into().ok())
            .ok_or(PassportError::Malformed(
                "ccmk dig is not a base64url SHA-256",
            ))?;
        Ok(Self {
            orig,
            dest,
            iat: raw.iat.ok_or(PassportError::MissingClaim("iat"))?,
            origid,
            media: MediaBinding(digest),
        })
    }
}

/// URIs and `origid` are printable ASCII without `"` or `\\` (RFC 3986 URIs are): written without
/// escapes, read back the same everywhere, and safe to print in a log line.
fn check_plain(orig: &Party, dest: &Dest, origid: &str) -> Result<(), PassportError> {
    let plain = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
    };
    let orig_uri = match orig {
        Party::Uri(uri) => Some(uri),
        Party::Tn(_) => None,
    };
    if dest.uri.iter().chain(orig_uri).all(|u| plain(u)) && plain(origid) {
        Ok(())
    } else {
        Err(PassportError::Malformed(
            "URIs and origid must be printable ASCII without quotes or backslashes",
        ))
    }
}

/// A `tn` claim: digits only, an E.164 number once `+` is put in front.
fn parse_tn(tn: &str) -> Result<PhoneNumber, PassportError> {
    let bad = PassportError::Malformed("tn is not an E.164 number in digits");
    if tn.is_empty() || !tn.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad);
    }
    PhoneNumber::parse(&format!("+{tn}")).map_err(|_| bad)
}

#[derive(Deserialize)]
struct RawClaims {
    orig: Option<RawParty>,
    dest: Option<RawDest>,
    iat: Option<u64>,
    origid: Option<String>,
    ccmk: Option<RawMedia>,
}

#[derive(Deserialize)]
struct RawParty {
    tn: Option<String>,
    uri: Option<String>,
}

#[derive(Deserialize)]
struct RawDest {
    #[serde(default)]
    tn: Vec<String>,
    #[serde(default)]
    uri: Vec<String>,
}

#[derive(Deserialize)]
struct RawMedia {
    alg: String,
    dig: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims() -> Claims {
        Claims {
            orig: Party::Tn("+15551230001".parse().unwrap()),
            dest: Dest::single(Party::Tn("+15551230002".parse().unwrap())),
            iat: 1_800_000_000,
            origid: "123e4567-e89b-42d3-a456-426614174000".into(),
            media: MediaBinding::from_sdp(""),
        }
    }

    /// RFC 8225 §9: sorted keys, no whitespace; and the JSON reads back to the same claims.
    #[test]
    fn canonical_json_is_sorted_and_round_trips() {
        let json = claims().to_canonical_json().unwrap();
        assert_eq!(
            json,
            "{\"ccmk\":{\"alg\":\"sha-256\",\"dig\":\"47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU\"},\
             \"dest\":{\"tn\":[\"15551230002\"]},\"iat\":1800000000,\"orig\":{\"tn\":\"15551230001\"},\
             \"origid\":\"123e4567-e89b-42d3-a456-426614174000\"}"
        );
        assert_eq!(Claims::from_json(json.as_bytes()).unwrap(), claims());
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(
            serde_json::to_string(&value).unwrap(),
            json,
            "not in sorted form"
        );
    }

    #[test]
    fn media_binding_covers_exactly_the_key_lines() {
        let sdp = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\nm=audio 4000 RTP/SAVP 0\r\n\
                   a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:AAAA\r\na=rtpmap:0 PCMU/8000\r\n";
        let same_keys_other_port = sdp.replace("4000", "4002").replace("\r\n", "\n");
        assert_eq!(
            MediaBinding::from_sdp(sdp),
            MediaBinding::from_sdp(&same_keys_other_port)
        );
        let expected: [u8; 32] =
            Sha256::digest(b"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:AAAA\r\n").into();
        assert_eq!(MediaBinding::from_sdp(sdp).digest(), &expected);
        assert_ne!(
            MediaBinding::from_sdp(sdp),
            MediaBinding::from_sdp(&sdp.replace("inline:AAAA", "inline:AAAB"))
        );
        assert_ne!(MediaBinding::from_sdp(sdp), MediaBinding::from_sdp(""));
    }

    #[test]
    fn origid_is_a_version_4_uuid() {
        use rand_core::SeedableRng;
        let mut rng = rand_chacha::ChaCha20Rng::from_seed([7; 32]);
        let id = new_origid(&mut rng);
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "4");
        assert!(matches!(&id[19..20], "8" | "9" | "a" | "b"));
        assert_ne!(id, new_origid(&mut rng));
    }

    /// Two `iat`s (or `orig`s) would let two parsers read two different tokens from one signature.
    #[test]
    fn a_duplicated_claim_is_refused() {
        let json = claims().to_canonical_json().unwrap();
        let twice = json.replace("\"iat\":1800000000,", "\"iat\":1800000000,\"iat\":1,");
        assert_eq!(
            Claims::from_json(twice.as_bytes()),
            Err(PassportError::Malformed("payload JSON"))
        );
        let twice = json.replace("\"orig\":", "\"orig\":{\"tn\":\"15551230009\"},\"orig\":");
        assert!(Claims::from_json(twice.as_bytes()).is_err());
    }

    /// A received URI with a line break (or any control character) never reaches a log line.
    #[test]
    fn a_received_uri_with_control_characters_is_refused() {
        let mut c = claims();
        c.dest = Dest::single(Party::Uri("sip:bob@example.org".into()));
        let json = c.to_canonical_json().unwrap();
        let injected = json.replace("sip:bob@example.org", "sip:bob@example.org\\nFAKE LOG LINE");
        assert!(matches!(
            Claims::from_json(injected.as_bytes()),
            Err(PassportError::Malformed(_))
        ));
    }

    #[test]
    fn refuses_claims_it_cannot_write_plainly() {
        let mut c = claims();
        c.origid = "a\"b".into();
        assert!(c.to_canonical_json().is_err());
        let mut c = claims();
        c.dest = Dest::default();
        assert_eq!(
            c.to_canonical_json(),
            Err(PassportError::MissingClaim("dest"))
        );
    }
}
