//! The ZRTP packet codec (RFC 6189 §5), laid out octet for octet as bzrtp (Linphone) does.
//!
//! ```text
//! packet  = 0x10 0x00 seq(2) | 0x5a525450 "ZRTP" | SSRC(4) | message | CRC-32C(4)
//! message = 0x50 0x5a | length in 32-bit words, header included (2) | type block (8) | body
//! ```
//!
//! [`decode`] checks the header, the magic cookie, the CRC, the preamble, the length field against
//! the datagram and each body's exact length; it borrows from the datagram and never panics.
//! The `encode_*` functions build a message (preamble to MAC); [`frame`] wraps it in a packet.
//! MACs are filled in by the caller's key (the engine's hash images), via [`set_mac`].

use std::fmt;

use crate::crc;
use crate::error::{DecodeError, ErrorCode};

/// Octets of the packet header (first word, magic cookie, SSRC).
pub const PACKET_HEADER_LEN: usize = 12;
/// Octets of the message header (preamble, length, type block).
pub const MESSAGE_HEADER_LEN: usize = 12;
/// Octets of the CRC trailer.
pub const CRC_LEN: usize = 4;
/// The smallest packet: header, a 12-octet message (the ACKs), CRC.
pub const MIN_PACKET_LEN: usize = PACKET_HEADER_LEN + MESSAGE_HEADER_LEN + CRC_LEN;
/// The largest packet accepted. Every message this build speaks fits with room to spare (a Hello
/// with seven algorithms in each list is 244 octets, an EC25 DHPart 164); so do a DH3k DHPart
/// (484) and a Confirm with a signature of up to 233 words. Post-quantum KEM parts, which bzrtp
/// fragments, do not.
pub const MAX_PACKET_LEN: usize = 1024;
/// The magic cookie "ZRTP".
pub const MAGIC_COOKIE: [u8; 4] = *b"ZRTP";
/// The protocol version this build speaks, as the Hello carries it.
pub const VERSION: [u8; 4] = *b"1.10";
/// Octets of a message MAC (HMAC-SHA-256 truncated to 64 bits).
pub const MAC_LEN: usize = 8;
/// Octets of a ZID.
pub const ZID_LEN: usize = 12;
/// Octets of a hash image H0..H3 and of hvi.
pub const HASH_LEN: usize = 32;

/// A ZID: a 96-bit endpoint identifier, stable per installation (RFC 6189 §4.9).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Zid(pub [u8; ZID_LEN]);

impl fmt::Debug for Zid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Zid({})", hex::encode(self.0))
    }
}

impl fmt::Display for Zid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

/// The message types (RFC 6189 §5.1.1), by their 8-character type block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum MessageType {
    /// `Hello   `
    Hello,
    /// `HelloACK`
    HelloAck,
    /// `Commit  `
    Commit,
    /// `DHPart1 `
    DhPart1,
    /// `DHPart2 `
    DhPart2,
    /// `Confirm1`
    Confirm1,
    /// `Confirm2`
    Confirm2,
    /// `Conf2ACK`
    Conf2Ack,
    /// `Error   `
    Error,
    /// `ErrorACK`
    ErrorAck,
    /// `GoClear `
    GoClear,
    /// `ClearACK`
    ClearAck,
    /// `SASrelay` (recognised and refused: chaincall is no trusted MiTM)
    SasRelay,
    /// `RelayACK`
    RelayAck,
    /// `Ping    `
    Ping,
    /// `PingACK `
    PingAck,
}

impl MessageType {
    const ALL: [MessageType; 16] = [
        MessageType::Hello,
        MessageType::HelloAck,
        MessageType::Commit,
        MessageType::DhPart1,
        MessageType::DhPart2,
        MessageType::Confirm1,
        MessageType::Confirm2,
        MessageType::Conf2Ack,
        MessageType::Error,
        MessageType::ErrorAck,
        MessageType::GoClear,
        MessageType::ClearAck,
        MessageType::SasRelay,
        MessageType::RelayAck,
        MessageType::Ping,
        MessageType::PingAck,
    ];

    /// The type block on the wire.
    pub fn block(self) -> &'static [u8; 8] {
        match self {
            MessageType::Hello => b"Hello   ",
            MessageType::HelloAck => b"HelloACK",
            MessageType::Commit => b"Commit  ",
            MessageType::DhPart1 => b"DHPart1 ",
            MessageType::DhPart2 => b"DHPart2 ",
            MessageType::Confirm1 => b"Confirm1",
            MessageType::Confirm2 => b"Confirm2",
            MessageType::Conf2Ack => b"Conf2ACK",
            MessageType::Error => b"Error   ",
            MessageType::ErrorAck => b"ErrorACK",
            MessageType::GoClear => b"GoClear ",
            MessageType::ClearAck => b"ClearACK",
            MessageType::SasRelay => b"SASrelay",
            MessageType::RelayAck => b"RelayACK",
            MessageType::Ping => b"Ping    ",
            MessageType::PingAck => b"PingACK ",
        }
    }

    fn from_block(block: &[u8]) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.block() == block)
    }
}

impl fmt::Display for MessageType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(String::from_utf8_lossy(self.block()).trim_end())
    }
}

/// A 4-character algorithm name as Hello and Commit carry it (`S256`, `X255`, `HS80`, ...).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct AlgoId(pub [u8; 4]);

impl fmt::Debug for AlgoId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AlgoId({:?})", String::from_utf8_lossy(&self.0))
    }
}

/// A parsed Hello (RFC 6189 §5.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    /// Protocol version, `1.10`.
    pub version: [u8; 4],
    /// Client identifier, 16 octets of text.
    pub client_id: [u8; 16],
    /// Hash image H3.
    pub h3: [u8; HASH_LEN],
    /// The sender's ZID.
    pub zid: Zid,
    /// S: the sender can sign the SAS.
    pub signature_capable: bool,
    /// M: the sender is a PBX (trusted MiTM).
    pub mitm: bool,
    /// P: passive (will not send Commit).
    pub passive: bool,
    /// Hash algorithms, in preference order.
    pub hashes: Vec<AlgoId>,
    /// Ciphers.
    pub ciphers: Vec<AlgoId>,
    /// SRTP auth tags.
    pub auth_tags: Vec<AlgoId>,
    /// Key agreements.
    pub key_agreements: Vec<AlgoId>,
    /// SAS types.
    pub sas_types: Vec<AlgoId>,
    /// MAC keyed by H2.
    pub mac: [u8; MAC_LEN],
}

/// A parsed DH-mode Commit (RFC 6189 §5.4.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Commit {
    /// Hash image H2.
    pub h2: [u8; HASH_LEN],
    /// The initiator's ZID.
    pub zid: Zid,
    /// Chosen hash.
    pub hash: AlgoId,
    /// Chosen cipher.
    pub cipher: AlgoId,
    /// Chosen SRTP auth tag.
    pub auth_tag: AlgoId,
    /// Chosen key agreement.
    pub key_agreement: AlgoId,
    /// Chosen SAS type.
    pub sas: AlgoId,
    /// hvi = hash(DHPart2 || responder's Hello), 256 bits.
    pub hvi: [u8; HASH_LEN],
    /// MAC keyed by H1.
    pub mac: [u8; MAC_LEN],
}

/// A parsed DHPart1 or DHPart2 (RFC 6189 §5.5, §5.6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DhPart<'a> {
    /// Hash image H1.
    pub h1: [u8; HASH_LEN],
    /// rs1IDr (DHPart1) or rs1IDi (DHPart2).
    pub rs1_id: [u8; 8],
    /// rs2ID.
    pub rs2_id: [u8; 8],
    /// auxsecretID.
    pub aux_id: [u8; 8],
    /// pbxsecretID.
    pub pbx_id: [u8; 8],
    /// The public value pvr or pvi.
    pub pv: &'a [u8],
    /// MAC keyed by H0.
    pub mac: [u8; MAC_LEN],
}

/// A parsed Confirm1 or Confirm2 before decryption (RFC 6189 §5.7).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Confirm<'a> {
    /// HMAC of the encrypted part under mackeyi/r, 64 bits.
    pub confirm_mac: [u8; MAC_LEN],
    /// The CFB initialisation vector.
    pub iv: [u8; 16],
    /// The encrypted part (H0, flags, cache expiry, optional signature).
    pub encrypted: &'a [u8],
}

/// The decrypted part of a Confirm.
#[derive(Clone, PartialEq, Eq)]
pub struct ConfirmPlain {
    /// Hash image H0.
    pub h0: [u8; HASH_LEN],
    /// Signature length in words (the signature itself is ignored: chaincall does not sign the
    /// SAS in ZRTP yet).
    pub sig_len: u16,
    /// E: PBX enrollment.
    pub enrollment: bool,
    /// V: SAS verified on the sender's side earlier.
    pub sas_verified: bool,
    /// A: allow clear.
    pub allow_clear: bool,
    /// D: disclosure.
    pub disclosure: bool,
    /// Cache expiration interval in seconds (0xFFFFFFFF: never).
    pub cache_expiration: u32,
}

impl fmt::Debug for ConfirmPlain {
    // H0 is the last hash-chain preimage; harmless once sent, but keep logs short.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConfirmPlain")
            .field("sig_len", &self.sig_len)
            .field("sas_verified", &self.sas_verified)
            .field("cache_expiration", &self.cache_expiration)
            .finish_non_exhaustive()
    }
}

/// The fixed part of the plaintext of a Confirm: H0, the flag word, the cache expiry.
pub const CONFIRM_PLAIN_LEN: usize = 40;

impl ConfirmPlain {
    /// The plaintext octets (no signature).
    pub fn encode(&self) -> [u8; CONFIRM_PLAIN_LEN] {
        let mut out = [0u8; CONFIRM_PLAIN_LEN];
        out[..32].copy_from_slice(&self.h0);
        // 15 unused bits, 9 bits of sig len, then 0000EVAD.
        out[33] = ((self.sig_len >> 8) & 1) as u8;
        out[34] = self.sig_len as u8;
        out[35] = (u8::from(self.enrollment) << 3)
            | (u8::from(self.sas_verified) << 2)
            | (u8::from(self.allow_clear) << 1)
            | u8::from(self.disclosure);
        out[36..40].copy_from_slice(&self.cache_expiration.to_be_bytes());
        out
    }

    /// Parses decrypted octets; the signature words, if announced, must be present.
    pub fn decode(plain: &[u8], ty: MessageType) -> Result<Self, DecodeError> {
        let bad = |reason| DecodeError::Malformed { ty, reason };
        if plain.len() < CONFIRM_PLAIN_LEN {
            return Err(bad("encrypted part shorter than 40 octets"));
        }
        let sig_len = (u16::from(plain[33] & 1) << 8) | u16::from(plain[34]);
        if CONFIRM_PLAIN_LEN + 4 * usize::from(sig_len) != plain.len() {
            return Err(bad("signature length disagrees with the message length"));
        }
        let mut h0 = [0u8; HASH_LEN];
        h0.copy_from_slice(&plain[..32]);
        let flags = plain[35];
        Ok(Self {
            h0,
            sig_len,
            enrollment: flags & 0x08 != 0,
            sas_verified: flags & 0x04 != 0,
            allow_clear: flags & 0x02 != 0,
            disclosure: flags & 0x01 != 0,
            cache_expiration: u32::from_be_bytes([plain[36], plain[37], plain[38], plain[39]]),
        })
    }
}

/// A parsed Ping (RFC 6189 §5.15).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ping {
    /// Version, `1.10`.
    pub version: [u8; 4],
    /// The sender's endpoint hash.
    pub endpoint_hash: [u8; 8],
}

/// A parsed PingACK (RFC 6189 §5.16).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PingAck {
    /// Version, `1.10`.
    pub version: [u8; 4],
    /// The responder's endpoint hash.
    pub endpoint_hash: [u8; 8],
    /// The endpoint hash the Ping carried.
    pub received_hash: [u8; 8],
    /// The SSRC of the Ping packet.
    pub ssrc: u32,
}

/// A message body.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(clippy::large_enum_variant)] // parsed once per packet, never stored in bulk
pub enum Message<'a> {
    /// Hello.
    Hello(Hello),
    /// HelloACK.
    HelloAck,
    /// Commit (DH mode).
    Commit(Commit),
    /// DHPart1.
    DhPart1(DhPart<'a>),
    /// DHPart2.
    DhPart2(DhPart<'a>),
    /// Confirm1.
    Confirm1(Confirm<'a>),
    /// Confirm2.
    Confirm2(Confirm<'a>),
    /// Conf2ACK.
    Conf2Ack,
    /// Error with its code.
    Error(ErrorCode),
    /// ErrorACK.
    ErrorAck,
    /// GoClear with its clear_mac.
    GoClear([u8; MAC_LEN]),
    /// ClearACK.
    ClearAck,
    /// SASrelay (body not parsed: refused).
    SasRelay,
    /// RelayACK.
    RelayAck,
    /// Ping.
    Ping(Ping),
    /// PingACK.
    PingAck(PingAck),
}

impl Message<'_> {
    /// The message type.
    pub fn message_type(&self) -> MessageType {
        match self {
            Message::Hello(_) => MessageType::Hello,
            Message::HelloAck => MessageType::HelloAck,
            Message::Commit(_) => MessageType::Commit,
            Message::DhPart1(_) => MessageType::DhPart1,
            Message::DhPart2(_) => MessageType::DhPart2,
            Message::Confirm1(_) => MessageType::Confirm1,
            Message::Confirm2(_) => MessageType::Confirm2,
            Message::Conf2Ack => MessageType::Conf2Ack,
            Message::Error(_) => MessageType::Error,
            Message::ErrorAck => MessageType::ErrorAck,
            Message::GoClear(_) => MessageType::GoClear,
            Message::ClearAck => MessageType::ClearAck,
            Message::SasRelay => MessageType::SasRelay,
            Message::RelayAck => MessageType::RelayAck,
            Message::Ping(_) => MessageType::Ping,
            Message::PingAck(_) => MessageType::PingAck,
        }
    }
}

/// A decoded packet: header fields, the raw message (preamble to MAC, what hashes and MACs
/// cover) and its parsed body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet<'a> {
    /// Sequence number.
    pub seq: u16,
    /// The sender's SSRC.
    pub ssrc: u32,
    /// The message octets, from the preamble up to the CRC.
    pub raw: &'a [u8],
    /// The parsed message.
    pub message: Message<'a>,
}

/// True when `datagram` looks like ZRTP rather than RTP/RTCP/STUN/DTLS: the first octet and the
/// magic cookie (RFC 6189 §5). For demultiplexing on the media socket; [`decode`] checks the rest.
pub fn is_zrtp(datagram: &[u8]) -> bool {
    datagram.len() >= 8 && datagram[0] & 0xF0 == 0x10 && datagram[4..8] == MAGIC_COOKIE
}

fn arr<const N: usize>(b: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&b[..N]);
    out
}

/// Decodes one datagram. Every length is checked before it is used.
pub fn decode(datagram: &[u8]) -> Result<Packet<'_>, DecodeError> {
    let len = datagram.len();
    if len < MIN_PACKET_LEN {
        return Err(DecodeError::Truncated(len));
    }
    if len > MAX_PACKET_LEN {
        return Err(DecodeError::Oversized {
            len,
            max: MAX_PACKET_LEN,
        });
    }
    if datagram[4..8] != MAGIC_COOKIE || datagram[1] != 0 {
        return Err(DecodeError::NotZrtp);
    }
    match datagram[0] {
        0x10 => {}
        0x11 => return Err(DecodeError::Fragmented),
        _ => return Err(DecodeError::NotZrtp),
    }
    let (body, trailer) = datagram.split_at(len - CRC_LEN);
    if crc::trailer(body) != trailer {
        return Err(DecodeError::BadCrc);
    }
    let seq = u16::from_be_bytes([datagram[2], datagram[3]]);
    let ssrc = u32::from_be_bytes(arr(&datagram[8..12]));
    let raw = &body[PACKET_HEADER_LEN..];
    if raw[..2] != [0x50, 0x5a] {
        return Err(DecodeError::BadPreamble);
    }
    let announced = 4 * usize::from(u16::from_be_bytes([raw[2], raw[3]]));
    if announced != raw.len() {
        return Err(DecodeError::LengthMismatch {
            announced,
            actual: raw.len(),
        });
    }
    let ty = MessageType::from_block(&raw[4..12])
        .ok_or_else(|| DecodeError::UnknownType(arr(&raw[4..12])))?;
    let message = decode_body(ty, raw)?;
    Ok(Packet {
        seq,
        ssrc,
        raw,
        message,
    })
}

fn decode_body(ty: MessageType, raw: &[u8]) -> Result<Message<'_>, DecodeError> {
    let bad = |reason| DecodeError::Malformed { ty, reason };
    let exact = |n: usize| {
        if raw.len() == n {
            Ok(())
        } else {
            Err(DecodeError::Malformed {
                ty,
                reason: "wrong length for this message type",
            })
        }
    };
    let b = &raw[MESSAGE_HEADER_LEN..];
    Ok(match ty {
        MessageType::Hello => {
            // Fixed part 88 octets including the MAC; then 4 octets per listed algorithm.
            if raw.len() < 88 {
                return Err(bad("shorter than the fixed part"));
            }
            let flags = b[64];
            let hc = usize::from(b[65] & 0x0F);
            let (cc, ac) = (usize::from(b[66] >> 4), usize::from(b[66] & 0x0F));
            let (kc, sc) = (usize::from(b[67] >> 4), usize::from(b[67] & 0x0F));
            if [hc, cc, ac, kc, sc].iter().any(|&c| c > 7) {
                return Err(bad("more than 7 algorithms in a list"));
            }
            exact(88 + 4 * (hc + cc + ac + kc + sc))?;
            let mut at = 68;
            let mut list = |n: usize| {
                let v = b[at..at + 4 * n]
                    .chunks_exact(4)
                    .map(|c| AlgoId(arr(c)))
                    .collect::<Vec<_>>();
                at += 4 * n;
                v
            };
            let hashes = list(hc);
            let ciphers = list(cc);
            let auth_tags = list(ac);
            let key_agreements = list(kc);
            let sas_types = list(sc);
            Message::Hello(Hello {
                version: arr(&b[0..4]),
                client_id: arr(&b[4..20]),
                h3: arr(&b[20..52]),
                zid: Zid(arr(&b[52..64])),
                signature_capable: flags & 0x40 != 0,
                mitm: flags & 0x20 != 0,
                passive: flags & 0x10 != 0,
                hashes,
                ciphers,
                auth_tags,
                key_agreements,
                sas_types,
                mac: arr(&b[at..at + 8]),
            })
        }
        MessageType::Commit => {
            // Only DH mode (hvi); Multistream and Preshared Commits are shorter.
            exact(116)
                .map_err(|_| bad("not a DH-mode Commit (Multistream/Preshared unsupported)"))?;
            Message::Commit(Commit {
                h2: arr(&b[0..32]),
                zid: Zid(arr(&b[32..44])),
                hash: AlgoId(arr(&b[44..48])),
                cipher: AlgoId(arr(&b[48..52])),
                auth_tag: AlgoId(arr(&b[52..56])),
                key_agreement: AlgoId(arr(&b[56..60])),
                sas: AlgoId(arr(&b[60..64])),
                hvi: arr(&b[64..96]),
                mac: arr(&b[96..104]),
            })
        }
        MessageType::DhPart1 | MessageType::DhPart2 => {
            // Fixed part 84 octets including the MAC, then the public value.
            if raw.len() <= 84 {
                return Err(bad("no public value"));
            }
            let pv_end = raw.len() - MESSAGE_HEADER_LEN - MAC_LEN;
            let part = DhPart {
                h1: arr(&b[0..32]),
                rs1_id: arr(&b[32..40]),
                rs2_id: arr(&b[40..48]),
                aux_id: arr(&b[48..56]),
                pbx_id: arr(&b[56..64]),
                pv: &b[64..pv_end],
                mac: arr(&b[pv_end..]),
            };
            if ty == MessageType::DhPart1 {
                Message::DhPart1(part)
            } else {
                Message::DhPart2(part)
            }
        }
        MessageType::Confirm1 | MessageType::Confirm2 => {
            if raw.len() < 76 {
                return Err(bad("shorter than the fixed part"));
            }
            let c = Confirm {
                confirm_mac: arr(&b[0..8]),
                iv: arr(&b[8..24]),
                encrypted: &b[24..],
            };
            if ty == MessageType::Confirm1 {
                Message::Confirm1(c)
            } else {
                Message::Confirm2(c)
            }
        }
        MessageType::HelloAck => exact(12).map(|_| Message::HelloAck)?,
        MessageType::Conf2Ack => exact(12).map(|_| Message::Conf2Ack)?,
        MessageType::ErrorAck => exact(12).map(|_| Message::ErrorAck)?,
        MessageType::ClearAck => exact(12).map(|_| Message::ClearAck)?,
        MessageType::RelayAck => exact(12).map(|_| Message::RelayAck)?,
        MessageType::SasRelay => {
            if raw.len() < 76 {
                return Err(bad("shorter than the fixed part"));
            }
            Message::SasRelay
        }
        MessageType::Error => {
            exact(16)?;
            Message::Error(ErrorCode(u32::from_be_bytes(arr(b))))
        }
        MessageType::GoClear => {
            exact(20)?;
            Message::GoClear(arr(b))
        }
        MessageType::Ping => {
            exact(24)?;
            Message::Ping(Ping {
                version: arr(&b[0..4]),
                endpoint_hash: arr(&b[4..12]),
            })
        }
        MessageType::PingAck => {
            exact(36)?;
            Message::PingAck(PingAck {
                version: arr(&b[0..4]),
                endpoint_hash: arr(&b[4..12]),
                received_hash: arr(&b[12..20]),
                ssrc: u32::from_be_bytes(arr(&b[20..24])),
            })
        }
    })
}

/// Starts a message: preamble, length (in words, of `body_len` plus the header), type block.
fn start(ty: MessageType, body_len: usize) -> Vec<u8> {
    let total = MESSAGE_HEADER_LEN + body_len;
    debug_assert!(total.is_multiple_of(4), "ZRTP messages are whole words");
    let mut m = Vec::with_capacity(total);
    m.extend_from_slice(&[0x50, 0x5a]);
    // Our messages are at most a few hundred octets: the word count fits 16 bits.
    m.extend_from_slice(&((total / 4) as u16).to_be_bytes());
    m.extend_from_slice(ty.block());
    m
}

/// Overwrites the last 8 octets of `message` (its MAC field) with `mac`.
pub fn set_mac(message: &mut [u8], mac: &[u8; MAC_LEN]) {
    let n = message.len();
    message[n - MAC_LEN..].copy_from_slice(mac);
}

/// The octets a message's MAC covers: all but the MAC itself (RFC 6189 §5.2 and on).
pub fn mac_input(message: &[u8]) -> &[u8] {
    &message[..message.len().saturating_sub(MAC_LEN)]
}

/// Encodes a Hello with a zero MAC (fill it with [`set_mac`]).
pub fn encode_hello(h: &Hello) -> Vec<u8> {
    let lists = [
        &h.hashes,
        &h.ciphers,
        &h.auth_tags,
        &h.key_agreements,
        &h.sas_types,
    ];
    // Lists over 7 entries cannot be announced; the config checks this, the codec clamps.
    let counts = lists.map(|l| l.len().min(7));
    let mut m = start(MessageType::Hello, 76 + 4 * counts.iter().sum::<usize>());
    m.extend_from_slice(&h.version);
    m.extend_from_slice(&h.client_id);
    m.extend_from_slice(&h.h3);
    m.extend_from_slice(&h.zid.0);
    m.push(
        (u8::from(h.signature_capable) << 6) | (u8::from(h.mitm) << 5) | (u8::from(h.passive) << 4),
    );
    m.push(counts[0] as u8);
    m.push(((counts[1] as u8) << 4) | counts[2] as u8);
    m.push(((counts[3] as u8) << 4) | counts[4] as u8);
    for (list, n) in lists.iter().zip(counts) {
        for a in &list[..n] {
            m.extend_from_slice(&a.0);
        }
    }
    m.extend_from_slice(&h.mac);
    m
}

/// Encodes a DH-mode Commit with the MAC as given.
pub fn encode_commit(c: &Commit) -> Vec<u8> {
    let mut m = start(MessageType::Commit, 104);
    m.extend_from_slice(&c.h2);
    m.extend_from_slice(&c.zid.0);
    for a in [c.hash, c.cipher, c.auth_tag, c.key_agreement, c.sas] {
        m.extend_from_slice(&a.0);
    }
    m.extend_from_slice(&c.hvi);
    m.extend_from_slice(&c.mac);
    m
}

/// Encodes a DHPart1 or DHPart2 with the MAC as given.
pub fn encode_dh_part(ty: MessageType, d: &DhPart<'_>) -> Vec<u8> {
    let mut m = start(ty, 72 + d.pv.len());
    m.extend_from_slice(&d.h1);
    m.extend_from_slice(&d.rs1_id);
    m.extend_from_slice(&d.rs2_id);
    m.extend_from_slice(&d.aux_id);
    m.extend_from_slice(&d.pbx_id);
    m.extend_from_slice(d.pv);
    m.extend_from_slice(&d.mac);
    m
}

/// Encodes a Confirm1 or Confirm2 from its already encrypted part.
pub fn encode_confirm(ty: MessageType, c: &Confirm<'_>) -> Vec<u8> {
    let mut m = start(ty, 24 + c.encrypted.len());
    m.extend_from_slice(&c.confirm_mac);
    m.extend_from_slice(&c.iv);
    m.extend_from_slice(c.encrypted);
    m
}

/// Encodes one of the body-less messages (the ACKs).
pub fn encode_empty(ty: MessageType) -> Vec<u8> {
    start(ty, 0)
}

/// Encodes an Error message.
pub fn encode_error(code: ErrorCode) -> Vec<u8> {
    let mut m = start(MessageType::Error, 4);
    m.extend_from_slice(&code.0.to_be_bytes());
    m
}

/// Encodes a GoClear (chaincall never sends one; for tests and tools).
pub fn encode_goclear(clear_mac: &[u8; MAC_LEN]) -> Vec<u8> {
    let mut m = start(MessageType::GoClear, 8);
    m.extend_from_slice(clear_mac);
    m
}

/// Encodes a Ping.
pub fn encode_ping(p: &Ping) -> Vec<u8> {
    let mut m = start(MessageType::Ping, 12);
    m.extend_from_slice(&p.version);
    m.extend_from_slice(&p.endpoint_hash);
    m
}

/// Encodes a PingACK.
pub fn encode_ping_ack(p: &PingAck) -> Vec<u8> {
    let mut m = start(MessageType::PingAck, 24);
    m.extend_from_slice(&p.version);
    m.extend_from_slice(&p.endpoint_hash);
    m.extend_from_slice(&p.received_hash);
    m.extend_from_slice(&p.ssrc.to_be_bytes());
    m
}

/// Wraps a message in a packet: header with `seq` and `ssrc`, the message, the CRC.
pub fn frame(seq: u16, ssrc: u32, message: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(PACKET_HEADER_LEN + message.len() + CRC_LEN);
    p.extend_from_slice(&[0x10, 0x00]);
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&MAGIC_COOKIE);
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(message);
    let crc = crc::trailer(&p);
    p.extend_from_slice(&crc);
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello() -> Hello {
        Hello {
            version: VERSION,
            client_id: *b"chaincall       ",
            h3: [3; 32],
            zid: Zid([7; 12]),
            signature_capable: false,
            mitm: false,
            passive: true,
            hashes: vec![AlgoId(*b"S256")],
            ciphers: vec![AlgoId(*b"AES1")],
            auth_tags: vec![AlgoId(*b"HS32"), AlgoId(*b"HS80")],
            key_agreements: vec![AlgoId(*b"X255"), AlgoId(*b"EC25")],
            sas_types: vec![AlgoId(*b"B32 "), AlgoId(*b"B256")],
            mac: [9; 8],
        }
    }

    #[test]
    fn hello_round_trips_with_the_rfc_layout() {
        let h = hello();
        let m = encode_hello(&h);
        assert_eq!(m.len(), 88 + 4 * 8);
        assert_eq!(&m[..2], &[0x50, 0x5a]);
        assert_eq!(usize::from(u16::from_be_bytes([m[2], m[3]])) * 4, m.len());
        // Flags octet (0|S|M|P|0000), then hc; cc|ac; kc|sc.
        assert_eq!(&m[76..80], &[0x10, 1, 0x12, 0x22]);
        let p = frame(5, 0xdead_beef, &m);
        assert_eq!(&p[..8], &[0x10, 0, 0, 5, 0x5a, 0x52, 0x54, 0x50]);
        let d = decode(&p).unwrap();
        assert_eq!((d.seq, d.ssrc, d.raw), (5, 0xdead_beef, &m[..]));
        assert_eq!(d.message, Message::Hello(h));
    }

    #[test]
    fn every_fixed_message_round_trips() {
        let commit = Commit {
            h2: [1; 32],
            zid: Zid([2; 12]),
            hash: AlgoId(*b"S256"),
            cipher: AlgoId(*b"AES1"),
            auth_tag: AlgoId(*b"HS80"),
            key_agreement: AlgoId(*b"X255"),
            sas: AlgoId(*b"B32 "),
            hvi: [4; 32],
            mac: [5; 8],
        };
        let pv = [6u8; 64];
        let dh = DhPart {
            h1: [1; 32],
            rs1_id: [2; 8],
            rs2_id: [3; 8],
            aux_id: [4; 8],
            pbx_id: [5; 8],
            pv: &pv,
            mac: [7; 8],
        };
        let enc = [8u8; 40];
        let confirm = Confirm {
            confirm_mac: [1; 8],
            iv: [2; 16],
            encrypted: &enc,
        };
        let ping = Ping {
            version: VERSION,
            endpoint_hash: [3; 8],
        };
        let ack = PingAck {
            version: VERSION,
            endpoint_hash: [1; 8],
            received_hash: [3; 8],
            ssrc: 42,
        };
        let cases: Vec<(Vec<u8>, Message<'_>)> = vec![
            (encode_commit(&commit), Message::Commit(commit.clone())),
            (
                encode_dh_part(MessageType::DhPart1, &dh),
                Message::DhPart1(dh.clone()),
            ),
            (
                encode_dh_part(MessageType::DhPart2, &dh),
                Message::DhPart2(dh.clone()),
            ),
            (
                encode_confirm(MessageType::Confirm1, &confirm),
                Message::Confirm1(confirm.clone()),
            ),
            (
                encode_confirm(MessageType::Confirm2, &confirm),
                Message::Confirm2(confirm.clone()),
            ),
            (encode_empty(MessageType::HelloAck), Message::HelloAck),
            (encode_empty(MessageType::Conf2Ack), Message::Conf2Ack),
            (encode_empty(MessageType::ErrorAck), Message::ErrorAck),
            (
                encode_error(ErrorCode::GOCLEAR_NOT_ALLOWED),
                Message::Error(ErrorCode(0x100)),
            ),
            (encode_goclear(&[9; 8]), Message::GoClear([9; 8])),
            (encode_ping(&ping), Message::Ping(ping)),
            (encode_ping_ack(&ack), Message::PingAck(ack)),
        ];
        for (m, want) in cases {
            let p = frame(1, 2, &m);
            assert_eq!(decode(&p).unwrap().message, want);
        }
        // The bzrtp fixed lengths: Commit 116 (DH), DHPart 84 + pv, Confirm 76, Error 16.
        assert_eq!(encode_commit(&commit).len(), 116);
        assert_eq!(encode_dh_part(MessageType::DhPart1, &dh).len(), 84 + 64);
        assert_eq!(encode_confirm(MessageType::Confirm1, &confirm).len(), 76);
        assert_eq!(encode_error(ErrorCode::AUTH).len(), 16);
    }

    #[test]
    fn header_crc_and_length_are_checked() {
        let m = encode_empty(MessageType::HelloAck);
        let good = frame(1, 2, &m);
        let mut bad_crc = good.clone();
        bad_crc[27] ^= 1;
        assert_eq!(decode(&bad_crc), Err(DecodeError::BadCrc));
        let mut frag = good.clone();
        frag[0] = 0x11;
        assert_eq!(decode(&frag), Err(DecodeError::Fragmented));
        let mut cookie = good.clone();
        cookie[5] = 0;
        assert_eq!(decode(&cookie), Err(DecodeError::NotZrtp));
        assert_eq!(decode(&good[..20]), Err(DecodeError::Truncated(20)));
        let mut long = m.clone();
        long[3] = 4; // announces 16 octets, carries 12
        assert!(matches!(
            decode(&frame(1, 2, &long)),
            Err(DecodeError::LengthMismatch { .. })
        ));
        let big = vec![0u8; MAX_PACKET_LEN + 1];
        assert!(matches!(decode(&big), Err(DecodeError::Oversized { .. })));
        assert!(is_zrtp(&good));
        assert!(!is_zrtp(&[0x80, 0, 0, 1, 0, 0, 0, 0]));
    }
}
