//! The exported keys drive chaincall-srtp: each side's outbound session is the other's inbound.

mod common;

use chaincall_zrtp::{AuthTag, KeyAgreement, Role};
use common::{Sim, config, only};

fn rtp(seq: u16, ssrc: u32, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0x80, 0x00];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(payload);
    p
}

fn talk(ka: KeyAgreement, tag: AuthTag) {
    let mut sim = Sim::pair(
        only(config(1), ka).with_auth_tags(&[tag]),
        Role::Initiator,
        only(config(2), ka),
        Role::Responder,
    );
    sim.run();
    let (a, b) = (sim.secure(0), sim.secure(1));
    let mut a_out = a.srtp.outbound_session().unwrap();
    let mut a_in = a.srtp.inbound_session().unwrap();
    let mut b_out = b.srtp.outbound_session().unwrap();
    let mut b_in = b.srtp.inbound_session().unwrap();

    for seq in 1..=3u16 {
        let voice = format!("alice says {seq}");
        let mut pkt = rtp(seq, 0x1111, voice.as_bytes());
        a_out.protect_rtp(&mut pkt).unwrap();
        assert!(
            !pkt.windows(voice.len()).any(|w| w == voice.as_bytes()),
            "encrypted"
        );
        // Alice's own inbound keys are Bob's: her packet does not authenticate there.
        assert!(a_in.unprotect_rtp(&mut pkt.clone()).is_err());
        b_in.unprotect_rtp(&mut pkt).unwrap();
        assert_eq!(pkt, rtp(seq, 0x1111, voice.as_bytes()));

        let mut back = rtp(seq, 0x2222, b"bob answers");
        b_out.protect_rtp(&mut back).unwrap();
        a_in.unprotect_rtp(&mut back).unwrap();
        assert_eq!(back, rtp(seq, 0x2222, b"bob answers"));
    }
}

#[test]
fn srtp_sessions_keyed_by_x255_protect_and_unprotect_each_other() {
    talk(KeyAgreement::X255, AuthTag::Hs80);
}

#[test]
fn srtp_sessions_keyed_by_ec25_with_hs32_protect_and_unprotect_each_other() {
    talk(KeyAgreement::Ec25, AuthTag::Hs32);
}

#[test]
fn srtp_sessions_keyed_by_dh3k_protect_and_unprotect_each_other() {
    talk(KeyAgreement::Dh3k, AuthTag::Hs80);
}
