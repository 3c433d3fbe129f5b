//! The handshake's binary wire format, version 1.
//!
//! Every message is one frame:
//!
//! ```text
//! +--------+---------+----------------+------------------+
//! | type   | version | body length    | body             |
//! | 1 byte | 1 byte  | 2 bytes, BE    | `length` bytes   |
//! +--------+---------+----------------+------------------+
//! ```
//!
//! `version` is [`VERSION`] (1). A receiver checks the header before reading the body: an unknown type,
//! an unknown version, or a length above the type's limit ([`MessageType::max_body`], never above
//! [`MAX_BODY`]) is refused at once, so a stream transport never buffers more than
//! `HEADER_LEN + MAX_BODY` bytes for one message.
//!
//! | type | name | body |
//! | --- | --- | --- |
//! | `0x01` | NSL message 1 | ECIES to B of `Na (32) ‖ name(A)` |
//! | `0x02` | NSL message 2 | ECIES to A of `Na (32) ‖ Nb (32) ‖ lifetime (u32 BE, seconds) ‖ name(B)` |
//! | `0x03` | NSL message 3 | ECIES to B of `Nb (32)` |
//! | `0x11` | STS message 1 | `gx (33, SEC1 compressed) ‖ name(A) ‖ name(B)` |
//! | `0x12` | STS message 2 | `gy (33) ‖ lifetime (u32 BE) ‖ sig_B (64) ‖ mac_B (32)` |
//! | `0x13` | STS message 3 | `sig_A (64) ‖ mac_A (32)` |
//! | `0x7f` | alert | `code (1)` — unauthenticated, a hint only |
//!
//! `name(X)` is `kind (1: 1 = E.164 number, 2 = domain) ‖ length (1) ‖ UTF-8 bytes`, and must be the
//! canonical spelling (what [`IdentityName::as_str`] returns), so one identity has one encoding.
//! ECIES is [`chaincall_identity::ecies`] (50 bytes of overhead), with a distinct context string per
//! message (`"chaincall-hs v1 nsl msg1"`, ...), so a ciphertext made for one step never opens in another.
//! See `docs/handshake.md` for the protocols.

use std::fmt;

use chaincall_identity::{DomainName, IdentityName, PhoneNumber};

use crate::HandshakeError;

/// The wire-format version this build speaks.
pub const VERSION: u8 = 1;
/// Bytes of the frame header: type, version, body length.
pub const HEADER_LEN: usize = 4;
/// The largest body any message type may have.
pub const MAX_BODY: usize = 1024;
/// Bytes of a nonce.
pub const NONCE_LEN: usize = 32;
/// Bytes of an encoded name at most: kind, length, 255 bytes.
pub const MAX_NAME_LEN: usize = 2 + 255;
/// Bytes of a SEC1-compressed P-256 point.
pub const POINT_LEN: usize = 33;
/// Bytes of a signature.
pub const SIG_LEN: usize = 64;
/// Bytes of a MAC.
pub const MAC_LEN: usize = 32;
const ECIES: usize = chaincall_identity::ecies::OVERHEAD;

/// The type of a handshake message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
#[repr(u8)]
pub enum MessageType {
    /// NSL message 1: `{Na, A}pkB`.
    NslMsg1 = 0x01,
    /// NSL message 2: `{Na, Nb, B}pkA` (Lowe's fix: B's name inside).
    NslMsg2 = 0x02,
    /// NSL message 3: `{Nb}pkB`.
    NslMsg3 = 0x03,
    /// STS message 1: `gx, A, B`.
    StsMsg1 = 0x11,
    /// STS message 2: `gy, lifetime, sig_B, mac_B`.
    StsMsg2 = 0x12,
    /// STS message 3: `sig_A, mac_A`.
    StsMsg3 = 0x13,
    /// Alert: the sender aborts.
    Alert = 0x7f,
}

impl MessageType {
    /// The type for a wire byte.
    pub fn from_byte(b: u8) -> Result<Self, HandshakeError> {
        Ok(match b {
            0x01 => Self::NslMsg1,
            0x02 => Self::NslMsg2,
            0x03 => Self::NslMsg3,
            0x11 => Self::StsMsg1,
            0x12 => Self::StsMsg2,
            0x13 => Self::StsMsg3,
            0x7f => Self::Alert,
            other => return Err(HandshakeError::UnknownType(other)),
        })
    }

    /// The wire byte.
    pub fn byte(self) -> u8 {
        self as u8
    }

    /// The least body length this type can have.
    pub fn min_body(self) -> usize {
        match self {
            Self::NslMsg1 => ECIES + NONCE_LEN + 3,
            Self::NslMsg2 => ECIES + 2 * NONCE_LEN + 4,
            Self::NslMsg3 => ECIES + NONCE_LEN,
            Self::StsMsg1 => POINT_LEN + 2 * 3,
            Self::StsMsg2 => POINT_LEN + 4 + SIG_LEN + MAC_LEN,
            Self::StsMsg3 => SIG_LEN + MAC_LEN,
            Self::Alert => 1,
        }
    }

    /// The greatest body length this type can have (the strict size limit).
    pub fn max_body(self) -> usize {
        match self {
            Self::NslMsg1 => ECIES + NONCE_LEN + MAX_NAME_LEN,
            Self::NslMsg2 => ECIES + 2 * NONCE_LEN + 4 + MAX_NAME_LEN,
            Self::StsMsg1 => POINT_LEN + 2 * MAX_NAME_LEN,
            other => other.min_body(),
        }
    }

    /// A short name for errors and logs.
    pub fn name(self) -> &'static str {
        match self {
            Self::NslMsg1 => "NSL message 1",
            Self::NslMsg2 => "NSL message 2",
            Self::NslMsg3 => "NSL message 3",
            Self::StsMsg1 => "STS message 1",
            Self::StsMsg2 => "STS message 2",
            Self::StsMsg3 => "STS message 3",
            Self::Alert => "alert",
        }
    }
}

impl fmt::Display for MessageType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a party aborted, sent in an alert frame. Unauthenticated: an attacker can forge one, so it only
/// ever ends a handshake that an attacker could end anyway by dropping packets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
#[repr(u8)]
pub enum AlertCode {
    /// A message did not parse or came out of order.
    DecodeError = 1,
    /// A version or protocol the sender does not speak.
    Unsupported = 2,
    /// An identity without an approved key, or a message addressed to someone else.
    UnknownIdentity = 3,
    /// Decryption, nonce, signature or MAC check failed.
    AuthenticationFailed = 4,
    /// A replayed message 1.
    Replay = 5,
    /// A code this build does not know.
    Other = 255,
}

impl AlertCode {
    /// The code for a wire byte (unknown codes become [`AlertCode::Other`]).
    pub fn from_byte(b: u8) -> Self {
        match b {
            1 => Self::DecodeError,
            2 => Self::Unsupported,
            3 => Self::UnknownIdentity,
            4 => Self::AuthenticationFailed,
            5 => Self::Replay,
            _ => Self::Other,
        }
    }
}

impl fmt::Display for AlertCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::DecodeError => "decode error",
            Self::Unsupported => "unsupported version or protocol",
            Self::UnknownIdentity => "unknown identity or key not approved",
            Self::AuthenticationFailed => "authentication failed",
            Self::Replay => "replay",
            Self::Other => "unknown reason",
        })
    }
}

/// A frame parsed by borrowing from the received bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    /// The message type.
    pub ty: MessageType,
    /// The body.
    pub body: &'a [u8],
}

/// Checks a frame header and returns the message type and the body length to read next.
///
/// Call this with the first [`HEADER_LEN`] bytes of a message on a stream before reading its body:
/// an unknown type or version, or a length outside the type's limits, is refused here.
pub fn check_header(header: &[u8]) -> Result<(MessageType, usize), HandshakeError> {
    if header.len() < HEADER_LEN {
        return Err(HandshakeError::Truncated {
            needed: HEADER_LEN,
            got: header.len(),
        });
    }
    let ty = MessageType::from_byte(header[0])?;
    if header[1] != VERSION {
        return Err(HandshakeError::UnsupportedVersion(header[1]));
    }
    let len = usize::from(u16::from_be_bytes([header[2], header[3]]));
    if len > ty.max_body() {
        return Err(HandshakeError::Oversized {
            len,
            max: ty.max_body(),
            ty,
        });
    }
    if len < ty.min_body() {
        return Err(HandshakeError::Malformed {
            ty,
            reason: "body shorter than the type allows",
        });
    }
    Ok((ty, len))
}

/// Parses exactly one complete frame; trailing bytes are an error.
pub fn parse_frame(bytes: &[u8]) -> Result<Frame<'_>, HandshakeError> {
    let (ty, len) = check_header(bytes)?;
    let total = HEADER_LEN + len;
    if bytes.len() < total {
        return Err(HandshakeError::Truncated {
            needed: total,
            got: bytes.len(),
        });
    }
    if bytes.len() > total {
        return Err(HandshakeError::TrailingBytes {
            extra: bytes.len() - total,
        });
    }
    Ok(Frame {
        ty,
        body: &bytes[HEADER_LEN..],
    })
}

/// Encodes a frame.
///
/// # Panics
/// If `body` exceeds the type's limit: the cores only build bodies within it, so that is a bug.
pub fn encode_frame(ty: MessageType, body: &[u8]) -> Vec<u8> {
    assert!(
        body.len() <= ty.max_body(),
        "bug: {ty} body of {} bytes exceeds its limit",
        body.len()
    );
    let mut out = Vec::with_capacity(HEADER_LEN + body.len());
    out.push(ty.byte());
    out.push(VERSION);
    // Invariant: max_body() <= MAX_BODY (1024) < 65536.
    out.extend_from_slice(&(body.len() as u16).to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// An alert frame.
pub fn encode_alert(code: AlertCode) -> Vec<u8> {
    encode_frame(MessageType::Alert, &[code as u8])
}

/// Appends the canonical encoding of a name: kind, length, bytes.
pub(crate) fn put_name(out: &mut Vec<u8>, name: &IdentityName) {
    let (kind, s) = match name {
        IdentityName::Phone(p) => (1u8, p.as_str()),
        IdentityName::Domain(d) => (2u8, d.as_str()),
    };
    // Invariant: E.164 numbers have at most 16 bytes and DNS names at most 253.
    let len = u8::try_from(s.len()).expect("identity names fit in 255 bytes");
    out.push(kind);
    out.push(len);
    out.extend_from_slice(s.as_bytes());
}

/// A cursor over a body that refuses to read past its end.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    ty: MessageType,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(ty: MessageType, buf: &'a [u8]) -> Self {
        Self { buf, ty }
    }

    fn malformed(&self, reason: &'static str) -> HandshakeError {
        HandshakeError::Malformed {
            ty: self.ty,
            reason,
        }
    }

    pub(crate) fn bytes(&mut self, n: usize) -> Result<&'a [u8], HandshakeError> {
        if self.buf.len() < n {
            return Err(self.malformed("body ends early"));
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N], HandshakeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.bytes(N)?);
        Ok(out)
    }

    pub(crate) fn u32(&mut self) -> Result<u32, HandshakeError> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    pub(crate) fn name(&mut self) -> Result<IdentityName, HandshakeError> {
        let [kind, len] = self.array()?;
        let raw = self.bytes(usize::from(len))?;
        let s = std::str::from_utf8(raw).map_err(|_| self.malformed("name is not UTF-8"))?;
        let name: IdentityName = match kind {
            1 => PhoneNumber::parse(s)
                .map_err(|_| self.malformed("invalid phone number"))?
                .into(),
            2 => DomainName::parse(s)
                .map_err(|_| self.malformed("invalid domain name"))?
                .into(),
            _ => return Err(self.malformed("unknown name kind")),
        };
        if name.as_str() != s {
            return Err(self.malformed("name not in canonical form"));
        }
        Ok(name)
    }

    pub(crate) fn finish(self) -> Result<(), HandshakeError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(self.malformed("bytes after the last field"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_limits() {
        assert!(matches!(
            check_header(&[0x01, 1]),
            Err(HandshakeError::Truncated { needed: 4, got: 2 })
        ));
        assert_eq!(
            check_header(&[0x55, 1, 0, 10]),
            Err(HandshakeError::UnknownType(0x55))
        );
        assert_eq!(
            check_header(&[0x01, 2, 0, 120]),
            Err(HandshakeError::UnsupportedVersion(2))
        );
        assert!(matches!(
            check_header(&[0x13, 1, 0xff, 0xff]),
            Err(HandshakeError::Oversized {
                len: 65535,
                max: 96,
                ..
            })
        ));
        assert_eq!(
            check_header(&[0x13, 1, 0, 96]),
            Ok((MessageType::StsMsg3, 96))
        );
        for ty in [0x01u8, 0x02, 0x03, 0x11, 0x12, 0x13, 0x7f] {
            let t = MessageType::from_byte(ty).unwrap();
            assert!(t.min_body() <= t.max_body() && t.max_body() <= MAX_BODY);
        }
    }

    #[test]
    fn names_round_trip_and_must_be_canonical() {
        for s in ["+15551230001", "sip.example.org"] {
            let name = IdentityName::parse(s).unwrap();
            let mut buf = Vec::new();
            put_name(&mut buf, &name);
            let mut r = Reader::new(MessageType::StsMsg1, &buf);
            assert_eq!(r.name().unwrap(), name);
            r.finish().unwrap();
        }
        // "SIP.example.org" would parse (to lower case) but is not the canonical spelling.
        let mut buf = vec![2, 15];
        buf.extend_from_slice(b"SIP.example.org");
        assert!(Reader::new(MessageType::StsMsg1, &buf).name().is_err());
    }
}
