//! RFC 4567 glue: the `a=key-mgmt:mikey <base64>` SDP attribute.
//!
//! No SDP parser is needed: these functions work on the attribute value and on SDP text line by
//! line. The rules they serve (RFC 4567 §3.1, §4):
//!
//! - The attribute may appear at session level (before the first `m=` line; it then applies to
//!   every media) or at media level (after an `m=` line; it applies to that media and overrides a
//!   session-level one). [`KeyMgmtAttributes::for_media`] applies that precedence.
//! - Offer/answer: the offerer puts its I_MESSAGE in the offer; an answerer that accepts it puts
//!   its R_MESSAGE (if the mode has one: DH always, PKE/PSK when the V flag was set) in the answer
//!   *at the same level*; an answerer that cannot accept the key management must reject the offer
//!   (SIP 606 Not Acceptable, RFC 4567 §4.1) rather than fall back to unprotected media.
//! - Several `key-mgmt` lines may offer different protocols; unknown protocol IDs are ignored, so
//!   [`parse_attribute`] returns `None` for them instead of an error.
//! - The base64 is RFC 4648 with padding and no line breaks (RFC 4567 §3.1: `base64` rule).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// The RFC 4567 protocol identifier for MIKEY.
pub const PROTOCOL_ID: &str = "mikey";

/// Why an attribute could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SdpError {
    /// Not a `key-mgmt` attribute.
    #[error("not a key-mgmt attribute")]
    NotKeyMgmt,
    /// The `key-mgmt` attribute has no data after the protocol ID.
    #[error("key-mgmt attribute without key management data")]
    MissingData,
    /// The data is not valid base64.
    #[error("key-mgmt data is not valid base64 (at character {offset})")]
    Base64 {
        /// Offset of the first bad character in the data (or its length if it ended early).
        offset: usize,
    },
}

/// The attribute line for an SDP body: `a=key-mgmt:mikey <base64>` (no line terminator).
pub fn attribute_line(message: &[u8]) -> String {
    format!("a={}", attribute_value(message))
}

/// The attribute without `a=`: `key-mgmt:mikey <base64>`.
pub fn attribute_value(message: &[u8]) -> String {
    format!("key-mgmt:{PROTOCOL_ID} {}", STANDARD.encode(message))
}

/// Reads a `key-mgmt` attribute (with or without `a=`, trailing CR/LF tolerated).
///
/// Returns `Ok(None)` for another protocol's key management, `Ok(Some(message))` for MIKEY.
pub fn parse_attribute(line: &str) -> Result<Option<Vec<u8>>, SdpError> {
    let line = line.trim_end_matches(['\r', '\n']);
    let line = line.strip_prefix("a=").unwrap_or(line);
    let rest = line.strip_prefix("key-mgmt:").ok_or(SdpError::NotKeyMgmt)?;
    let (prtcl, data) = rest.split_once(' ').unwrap_or((rest, ""));
    if !prtcl.eq_ignore_ascii_case(PROTOCOL_ID) {
        return Ok(None);
    }
    let data = data.trim();
    if data.is_empty() {
        return Err(SdpError::MissingData);
    }
    decode_base64(data).map(Some)
}

/// Decodes MIKEY base64 (standard alphabet, padding required), naming the first bad character.
pub fn decode_base64(data: &str) -> Result<Vec<u8>, SdpError> {
    STANDARD.decode(data).map_err(|e| SdpError::Base64 {
        offset: match e {
            base64::DecodeError::InvalidByte(offset, _) => offset,
            base64::DecodeError::InvalidLastSymbol(offset, _) => offset,
            _ => data.len(),
        },
    })
}

/// The MIKEY messages of an SDP body, by level.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyMgmtAttributes {
    /// The session-level message, if any.
    pub session: Option<Vec<u8>>,
    /// One entry per `m=` line, in order: that media's own message, if any.
    pub media: Vec<Option<Vec<u8>>>,
}

impl KeyMgmtAttributes {
    /// Collects `a=key-mgmt:mikey` lines from SDP text. A second MIKEY attribute at one level is
    /// refused (RFC 4567 allows one per protocol per level).
    pub fn from_sdp(sdp: &str) -> Result<Self, SdpError> {
        let mut out = Self::default();
        for line in sdp.lines() {
            let line = line.trim_end_matches('\r');
            if line.starts_with("m=") {
                out.media.push(None);
                continue;
            }
            if !line.starts_with("a=key-mgmt:") {
                continue;
            }
            let Some(msg) = parse_attribute(line)? else {
                continue;
            };
            let slot = match out.media.last_mut() {
                Some(slot) => slot,
                None => &mut out.session,
            };
            if slot.replace(msg).is_some() {
                return Err(SdpError::MissingData);
            }
        }
        Ok(out)
    }

    /// The message that applies to media `index`: its own, else the session-level one (§3.1).
    pub fn for_media(&self, index: usize) -> Option<&[u8]> {
        self.media
            .get(index)
            .and_then(|m| m.as_deref())
            .or(self.session.as_deref())
    }
}

#[cfg(test)]
mod rfc4567_tests {
    use super::*;

    #[test]
    fn attribute_round_trip_and_other_protocols() {
        let line = attribute_line(&[1, 2, 3, 250]);
        assert_eq!(line, "a=key-mgmt:mikey AQID+g==");
        assert_eq!(parse_attribute(&line).unwrap(), Some(vec![1, 2, 3, 250]));
        assert_eq!(
            parse_attribute("key-mgmt:MIKEY AQID+g==\r\n").unwrap(),
            Some(vec![1, 2, 3, 250])
        );
        assert_eq!(parse_attribute("a=key-mgmt:kerberos AAAA").unwrap(), None);
        assert_eq!(
            parse_attribute("a=key-mgmt:mikey").unwrap_err(),
            SdpError::MissingData
        );
        assert_eq!(
            parse_attribute("a=rtpmap:0 PCMU/8000").unwrap_err(),
            SdpError::NotKeyMgmt
        );
        assert!(matches!(
            parse_attribute("a=key-mgmt:mikey AQ*D"),
            Err(SdpError::Base64 { offset: 2 })
        ));
    }

    #[test]
    fn media_level_overrides_session_level() {
        let sdp = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n\
                   a=key-mgmt:mikey AQ==\r\nm=audio 4000 RTP/SAVP 0\r\nm=video 4002 RTP/SAVP 96\r\n\
                   a=key-mgmt:mikey Ag==\r\n";
        let k = KeyMgmtAttributes::from_sdp(sdp).unwrap();
        assert_eq!(k.for_media(0), Some(&[1u8][..]));
        assert_eq!(k.for_media(1), Some(&[2u8][..]));
        assert_eq!(k.media.len(), 2);
    }
}
