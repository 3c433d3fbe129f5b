//! Checking a packet capture taken at the relay: it must hold SRTP only.
//!
//! [`udp_datagrams`] reads a classic pcap file (Ethernet, Linux cooked or raw IPv4 link types)
//! down to its IPv4 UDP datagrams; [`KeyLogEntry::parse_log`] reads a `--keylog` file;
//! [`check_srtp`] goes through every RTP and RTCP packet on the relay's media ports and counts
//! those that authenticate with the key of their SSRC, those that do not, those no key is known
//! for, and those carrying a piece of the plaintext audio. The SRTP implementation is the
//! caller's (a closure building a per-flow unprotect function): the demo uses chaincall's own,
//! the tests libsrtp, so the two agree on what the relay carried.
//!
//! Nothing here panics on a malformed capture or key log: a truncated record ends the capture, a
//! packet too short for its headers is skipped and counted.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::ops::RangeInclusive;

use base64::Engine as _;
use zeroize::Zeroizing;

/// Why a capture or key log could not be read.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    /// Not a classic pcap file (pcapng is not read).
    #[error("not a pcap file (no pcap magic number; pcapng is not read)")]
    NotPcap,
    /// A link type other than Ethernet (1), raw IP (101) or Linux cooked (113).
    #[error("pcap link type {0} is not read (Ethernet, raw IP and Linux cooked are)")]
    LinkType(u32),
    /// A key log line that is not `ssrc=<hex> profile=<name> inline=<base64>`.
    #[error("key log line {line}: {why}")]
    KeyLog {
        /// The line, from 1.
        line: usize,
        /// What is wrong with it.
        why: &'static str,
    },
}

/// One IPv4 UDP datagram of a capture.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Datagram {
    /// Source address and port.
    pub src: SocketAddrV4,
    /// Destination address and port.
    pub dst: SocketAddrV4,
    /// The UDP payload.
    pub payload: Vec<u8>,
}

/// The UDP datagrams of the pcap file `pcap`, in capture order (IP fragments are skipped).
///
/// # Errors
/// When it is not a classic pcap file or its link type is not read.
pub fn udp_datagrams(pcap: &[u8]) -> Result<Vec<Datagram>, CaptureError> {
    let magic = pcap.get(..4).ok_or(CaptureError::NotPcap)?;
    // Microsecond and nanosecond magic numbers, in either byte order.
    let little = match magic {
        [0xd4, 0xc3, 0xb2, 0xa1] | [0x4d, 0x3c, 0xb2, 0xa1] => true,
        [0xa1, 0xb2, 0xc3, 0xd4] | [0xa1, 0xb2, 0x3c, 0x4d] => false,
        _ => return Err(CaptureError::NotPcap),
    };
    let u32_at = |b: &[u8], at: usize| -> Option<u32> {
        let bytes: [u8; 4] = b.get(at..at + 4)?.try_into().ok()?;
        Some(if little {
            u32::from_le_bytes(bytes)
        } else {
            u32::from_be_bytes(bytes)
        })
    };
    let link = u32_at(pcap, 20).ok_or(CaptureError::NotPcap)?;
    // Bytes before the IP header, and where the EtherType sits in them.
    let (skip, ethertype_at) = match link {
        1 => (14, Some(12)),
        101 => (0, None),
        113 => (16, Some(14)),
        other => return Err(CaptureError::LinkType(other)),
    };
    let mut out = Vec::new();
    let mut at = 24;
    while let (Some(captured), Some(_)) = (u32_at(pcap, at + 8), u32_at(pcap, at + 12)) {
        let start = at + 16;
        let Some(frame) = usize::try_from(captured)
            .ok()
            .and_then(|n| pcap.get(start..start.checked_add(n)?))
        else {
            break;
        };
        at = start + frame.len();
        let ipv4 = ethertype_at.is_none_or(|e| frame.get(e..e + 2) == Some(&[0x08, 0x00]));
        if let Some(d) = frame.get(skip..).filter(|_| ipv4).and_then(udp_in_ipv4) {
            out.push(d);
        }
    }
    Ok(out)
}

/// The UDP datagram in an IPv4 packet, if it is one and is whole.
fn udp_in_ipv4(ip: &[u8]) -> Option<Datagram> {
    let (&first, _) = ip.split_first()?;
    let header = usize::from(first & 0x0f) * 4;
    if first >> 4 != 4 || header < 20 || *ip.get(9)? != 17 {
        return None;
    }
    // More fragments, or a fragment offset: not a whole datagram.
    if u16::from_be_bytes([*ip.get(6)?, *ip.get(7)?]) & 0x3fff != 0 {
        return None;
    }
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    let ip = ip.get(..total)?;
    let addr = |at: usize| {
        Some(Ipv4Addr::from(
            <[u8; 4]>::try_from(ip.get(at..at + 4)?).ok()?,
        ))
    };
    let udp = ip.get(header..)?;
    let port = |at: usize| Some(u16::from_be_bytes([*udp.get(at)?, *udp.get(at + 1)?]));
    let len = usize::from(port(4)?);
    Some(Datagram {
        src: SocketAddrV4::new(addr(12)?, port(0)?),
        dst: SocketAddrV4::new(addr(16)?, port(2)?),
        payload: udp.get(8..len.max(8))?.to_vec(),
    })
}

/// One line of a `--keylog` file: an SRTP stream's master key.
#[derive(Clone)]
pub struct KeyLogEntry {
    /// The stream's SSRC.
    pub ssrc: u32,
    /// The SRTP profile's RFC name (`AES_CM_128_HMAC_SHA1_80`, …).
    pub profile: String,
    /// Master key followed by master salt. Secret.
    pub key_and_salt: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for KeyLogEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key never reaches a log.
        f.debug_struct("KeyLogEntry")
            .field("ssrc", &format_args!("{:08x}", self.ssrc))
            .field("profile", &self.profile)
            .finish_non_exhaustive()
    }
}

impl KeyLogEntry {
    /// Every entry of a key log (`ssrc=<8 hex> profile=<name> inline=<base64>` per line; blank
    /// lines and `#` comments skipped).
    ///
    /// # Errors
    /// On the first malformed line.
    pub fn parse_log(text: &str) -> Result<Vec<Self>, CaptureError> {
        let mut out = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = |why| CaptureError::KeyLog { line: i + 1, why };
            let (mut ssrc, mut profile, mut key) = (None, None, None);
            for field in line.split_whitespace() {
                match field.split_once('=') {
                    Some(("ssrc", v)) => ssrc = u32::from_str_radix(v, 16).ok(),
                    Some(("profile", v)) => profile = Some(v.to_owned()),
                    // Base64 may end in '=': split at the first one only, as above.
                    Some(("inline", v)) => {
                        key = base64::engine::general_purpose::STANDARD
                            .decode(v)
                            .ok()
                            .map(Zeroizing::new);
                    }
                    _ => {}
                }
            }
            out.push(Self {
                ssrc: ssrc.ok_or_else(|| bad("no ssrc=<8 hex digits>"))?,
                profile: profile.ok_or_else(|| bad("no profile=<name>"))?,
                key_and_salt: key.ok_or_else(|| bad("no inline=<base64>"))?,
            });
        }
        Ok(out)
    }
}

/// Authenticates and decrypts one packet in place (`true` for SRTCP), saying whether it
/// authenticated. One is built per flow and SSRC, so each keeps its own replay window.
pub type Unprotect<'a> = Box<dyn FnMut(&mut Vec<u8>, bool) -> bool + 'a>;

/// What [`check_srtp`] found on the relay's media ports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SrtpCheck {
    /// RTP packets (to or from a media port).
    pub rtp: usize,
    /// RTCP packets.
    pub rtcp: usize,
    /// Packets that authenticated with their SSRC's key.
    pub authenticated: usize,
    /// Packets whose SSRC has a key but that did not authenticate with it.
    pub failed: usize,
    /// Packets whose SSRC no key was given for.
    pub unknown_ssrc: usize,
    /// RTP packets whose payload is a piece of the plaintext audio.
    pub plaintext: usize,
    /// Datagrams on the media ports that are neither RTP nor RTCP.
    pub other: usize,
}

impl SrtpCheck {
    /// The relay carried SRTP only: media flowed, none of it was plaintext audio, and every packet
    /// authenticated with its stream's key.
    pub fn only_srtp(&self) -> bool {
        self.rtp > 0
            && self.plaintext == 0
            && self.other == 0
            && self.authenticated == self.rtp + self.rtcp
    }
}

/// RTP's fixed header plus CSRCs and extension, or `None` when `packet` is too short for them.
fn rtp_header_len(packet: &[u8]) -> Option<usize> {
    let mut len = 12 + 4 * usize::from(packet.first()? & 0x0f);
    if packet[0] & 0x10 != 0 {
        let words = u16::from_be_bytes([*packet.get(len + 2)?, *packet.get(len + 3)?]);
        len += 4 + 4 * usize::from(words);
    }
    (len <= packet.len()).then_some(len)
}

/// Checks every RTP and RTCP packet in `datagrams` sent from or to the relay's address `relay` on
/// a port in `ports` (its media ports; its NG control traffic is on none of them): does it
/// authenticate with the key `keys` give its SSRC (through `unprotect`,
/// which builds an SRTP receiver for one key), and does its payload hold no piece of `plaintext`
/// (the encoded audio the phones sent, each a concatenation of frames) of 8 bytes or more.
///
/// # Errors
/// When `unprotect` cannot build a receiver for a key (an unknown profile, a wrong key length).
pub fn check_srtp<'a>(
    datagrams: &[Datagram],
    relay: Ipv4Addr,
    ports: RangeInclusive<u16>,
    keys: &'a [KeyLogEntry],
    plaintext: &[&[u8]],
    mut unprotect: impl FnMut(&'a KeyLogEntry) -> Result<Unprotect<'a>, String>,
) -> Result<SrtpCheck, String> {
    let mut check = SrtpCheck::default();
    let mut receivers: HashMap<(SocketAddrV4, SocketAddrV4, u32), Unprotect<'a>> = HashMap::new();
    for d in datagrams {
        let media = |a: &SocketAddrV4| *a.ip() == relay && ports.contains(&a.port());
        if !media(&d.src) && !media(&d.dst) {
            continue;
        }
        let p = &d.payload;
        let rtcp = p.get(1).is_some_and(|pt| (200..=204).contains(pt));
        let ssrc_at = if rtcp { 4 } else { 8 };
        let ssrc = p
            .get(ssrc_at..ssrc_at + 4)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map(u32::from_be_bytes);
        let (Some(ssrc), true) = (ssrc, p.first().is_some_and(|b| b >> 6 == 2)) else {
            check.other += 1;
            continue;
        };
        if rtcp {
            check.rtcp += 1;
        } else {
            check.rtp += 1;
            let body = rtp_header_len(p).map_or(&p[..0], |h| &p[h..]);
            // Any 8-byte window of the payload found in the plaintext: the audio in the clear.
            if body.len() >= 8
                && plaintext
                    .iter()
                    .any(|audio| audio.windows(8).any(|w| body.windows(8).any(|b| b == w)))
            {
                check.plaintext += 1;
            }
        }
        let Some(key) = keys.iter().find(|k| k.ssrc == ssrc) else {
            check.unknown_ssrc += 1;
            continue;
        };
        let receiver = match receivers.entry((d.src, d.dst, ssrc)) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => e.insert(unprotect(key)?),
        };
        let mut packet = p.clone();
        if receiver(&mut packet, rtcp) {
            check.authenticated += 1;
        } else {
            check.failed += 1;
        }
    }
    Ok(check)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pcap file of Ethernet frames, each an IPv4 UDP datagram.
    fn pcap(datagrams: &[(&str, &str, &[u8])]) -> Vec<u8> {
        // Magic, version 2.4, zone, sigfigs, snaplen, link type 1 (Ethernet).
        let mut out = 0xa1b2_c3d4u32.to_le_bytes().to_vec();
        out.extend_from_slice(&[2, 0, 4, 0]);
        for word in [0u32, 0, 65_535, 1] {
            out.extend_from_slice(&word.to_le_bytes());
        }
        for (src, dst, payload) in datagrams {
            let (src, dst): (SocketAddrV4, SocketAddrV4) =
                (src.parse().unwrap(), dst.parse().unwrap());
            let mut frame = vec![0u8; 12];
            frame.extend_from_slice(&[0x08, 0x00]);
            let total = 28 + payload.len();
            frame.extend_from_slice(&[
                0x45,
                0,
                (total >> 8) as u8,
                total as u8,
                0,
                0,
                0x40,
                0,
                64,
                17,
                0,
                0,
            ]);
            frame.extend_from_slice(&src.ip().octets());
            frame.extend_from_slice(&dst.ip().octets());
            let udp = 8 + payload.len();
            frame.extend_from_slice(&src.port().to_be_bytes());
            frame.extend_from_slice(&dst.port().to_be_bytes());
            frame.extend_from_slice(&[(udp >> 8) as u8, udp as u8, 0, 0]);
            frame.extend_from_slice(payload);
            for word in [0u32, 0, frame.len() as u32, frame.len() as u32] {
                out.extend_from_slice(&word.to_le_bytes());
            }
            out.extend_from_slice(&frame);
        }
        out
    }

    fn rtp(ssrc: u32, payload: &[u8]) -> Vec<u8> {
        let mut p = vec![0x80, 0, 0, 1, 0, 0, 0, 0];
        p.extend_from_slice(&ssrc.to_be_bytes());
        p.extend_from_slice(payload);
        p
    }

    #[test]
    fn datagrams_are_read_and_hostile_bytes_never_panic() {
        let file = pcap(&[("10.0.0.1:4000", "10.0.0.2:30000", b"hello")]);
        let got = udp_datagrams(&file).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].dst, "10.0.0.2:30000".parse().unwrap());
        assert_eq!(got[0].payload, b"hello");
        for cut in 0..file.len() {
            let _ = udp_datagrams(&file[..cut]);
            let mut flipped = file.clone();
            flipped[cut] ^= 0xff;
            let _ = udp_datagrams(&flipped);
        }
        assert!(matches!(
            udp_datagrams(b"\n\rpcapng"),
            Err(CaptureError::NotPcap)
        ));
    }

    #[test]
    fn key_logs_parse_and_bad_lines_are_named() {
        let keys = KeyLogEntry::parse_log(
            "# comment\nssrc=0000002a profile=AES_CM_128_HMAC_SHA1_80 inline=AAEC\n",
        )
        .unwrap();
        assert_eq!(
            (keys[0].ssrc, keys[0].key_and_salt.as_slice()),
            (42, &[0, 1, 2][..])
        );
        assert!(!format!("{keys:?}").contains("AAEC"));
        let err = KeyLogEntry::parse_log("\nssrc=zz profile=X inline=AA==").unwrap_err();
        assert_eq!(err.to_string(), "key log line 2: no ssrc=<8 hex digits>");
    }

    #[test]
    fn plaintext_unknown_and_failing_packets_are_counted() {
        let audio = [7u8; 40];
        let file = pcap(&[
            (
                "10.0.0.1:4000",
                "10.0.0.2:30000",
                &rtp(1, &[1, 2, 3, 4, 5, 6, 7, 8, 9]),
            ),
            ("10.0.0.2:30001", "10.0.0.3:4000", &rtp(1, &[0; 9])),
            ("10.0.0.1:4000", "10.0.0.2:30000", &rtp(2, &audio[..20])),
            ("10.0.0.1:4000", "10.0.0.2:2223", b"d4:ping e"),
            // Another host's traffic on a port in the range is not the relay's.
            ("10.0.0.1:30000", "10.0.0.3:30001", b"d4:ping e"),
            ("10.0.0.1:4000", "10.0.0.2:30000", b"\x10junk"),
        ]);
        let keys = KeyLogEntry::parse_log("ssrc=00000001 profile=P inline=AA==").unwrap();
        let datagrams = udp_datagrams(&file).unwrap();
        let relay = Ipv4Addr::new(10, 0, 0, 2);
        let check = check_srtp(&datagrams, relay, 30000..=30099, &keys, &[&audio], |_| {
            // Authenticates only a payload starting 1.
            Ok(Box::new(|p: &mut Vec<u8>, _| p.get(12) == Some(&1)))
        })
        .unwrap();
        let want = SrtpCheck {
            rtp: 3,
            rtcp: 0,
            authenticated: 1,
            failed: 1,
            unknown_ssrc: 1,
            plaintext: 1,
            other: 1,
        };
        assert_eq!(check, want);
        assert!(!check.only_srtp());
    }
}
