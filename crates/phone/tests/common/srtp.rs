//! One RTP packet through two phones' SRTP sessions: the check that their keys match.

use chaincall_media::rtp::RtpPacket;
use chaincall_phone::negotiation::{MediaKeys, NegotiatedMedia};

/// Sends one RTP packet from `from` to `to` through their SRTP sessions.
pub(crate) fn carries(from: &mut NegotiatedMedia, to: &mut NegotiatedMedia) -> bool {
    let payload = [0x55u8; 160];
    let mut pkt = Vec::new();
    RtpPacket::new(0, 7, 160, from.local_ssrc, &payload)
        .write(&mut pkt)
        .unwrap();
    let (MediaKeys::Srtp { outbound, .. }, MediaKeys::Srtp { inbound, .. }) =
        (&mut from.srtp, &mut to.srtp)
    else {
        panic!("keyed in the media path: no SRTP sessions yet");
    };
    outbound.protect_rtp(&mut pkt).unwrap();
    assert!(
        !pkt.windows(16).any(|w| w == [0x55; 16]),
        "payload in clear"
    );
    inbound.unprotect_rtp(&mut pkt).is_ok() && pkt.ends_with(&payload)
}
