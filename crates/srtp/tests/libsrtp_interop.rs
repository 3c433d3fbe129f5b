//! Two-way interop with libsrtp 2.7 (PyPI pylibsrtp), every profile: packets we protect are
//! unprotected by libsrtp and vice versa, across a sequence-number wrap (ROC 0 -> 1), with CSRCs
//! and header extensions, and for SRTCP. Required in CI (`CHAINCALL_REQUIRE_PEERS=1`).

use std::process::Command;

use chaincall_srtp::{Profile, Roc, SeqNo, SrtpConfig, SrtpError, SrtpSession, Ssrc};

const SSRC: u32 = 0x1122_3344;

/// RTP packets from seq 65500 through the wrap to 40, with varied payload sizes, one with CSRCs
/// and a header extension, one with padding.
fn rtp_packets() -> Vec<Vec<u8>> {
    let seqs = (65500u32..65536).chain(0..40).map(|s| s as u16);
    seqs.enumerate()
        .map(|(i, seq)| {
            let mut p = Vec::new();
            let first = match i % 7 {
                3 => 0x92, // X=1, CC=2
                5 => 0xA0, // P=1
                _ => 0x80,
            };
            p.push(first);
            p.push(0x08 | if i == 0 { 0x80 } else { 0 });
            p.extend_from_slice(&seq.to_be_bytes());
            p.extend_from_slice(&(i as u32 * 160).to_be_bytes());
            p.extend_from_slice(&SSRC.to_be_bytes());
            if first == 0x92 {
                p.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]);
                p.extend_from_slice(&[
                    0xBE, 0xDE, 0x00, 0x02, 0x12, 0xAB, 0xCD, 0xEF, 0x21, 0x01, 0x02, 0x00,
                ]);
            }
            let payload = 1 + (i * 37) % 300;
            p.extend((0..payload).map(|k| (k * 13 + i) as u8));
            if first == 0xA0 {
                p.extend_from_slice(&[0, 0, 3]);
            }
            p
        })
        .collect()
}

/// RTCP compound packets: SR + SDES (CNAME), and an RR, for the same SSRC.
fn rtcp_packets() -> Vec<Vec<u8>> {
    (0..12u8)
        .map(|i| {
            let mut p = vec![0x80, 200, 0, 6];
            p.extend_from_slice(&SSRC.to_be_bytes());
            p.extend_from_slice(&[i; 20]);
            // SDES: one chunk, CNAME "cc@x", end.
            p.extend_from_slice(&[0x81, 202, 0, 3]);
            p.extend_from_slice(&SSRC.to_be_bytes());
            p.extend_from_slice(&[1, 4, b'c', b'c', b'@', b'x', 0, 0]);
            if i % 3 == 0 {
                p.extend_from_slice(&[0x81, 201, 0, 7]);
                p.extend_from_slice(&SSRC.to_be_bytes());
                p.extend_from_slice(&[0x5A; 24]);
            }
            p
        })
        .collect()
}

fn key_for(profile: Profile) -> Vec<u8> {
    (0..profile.master_key_len() + profile.master_salt_len())
        .map(|i| {
            (i as u8)
                .wrapping_mul(29)
                .wrapping_add(profile.srtp_tag_len() as u8)
        })
        .collect()
}

enum Op {
    Rtp,
    Rtcp,
}

#[test]
fn two_way_interop_with_libsrtp_every_profile() {
    let Some(python) = chaincall_testkit::python() else {
        return;
    };
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/libsrtp_peer.py");

    // Everything we ask libsrtp, in order, and what we expect back.
    let mut commands = String::new();
    let mut expect: Vec<(Profile, &'static str, Vec<u8>)> = Vec::new();
    let rtp = rtp_packets();
    let rtcp = rtcp_packets();
    for profile in Profile::ALL {
        let key = key_for(profile);
        commands += &format!("session {} {}\n", profile.rfc_name(), hex::encode(&key));
        expect.push((profile, "session", Vec::new()));
        let mut ours = SrtpSession::from_key_and_salt(SrtpConfig::new(profile), &key).unwrap();
        for (plain, kind) in rtp
            .iter()
            .map(|p| (p, Op::Rtp))
            .chain(rtcp.iter().map(|p| (p, Op::Rtcp)))
        {
            let mut p = plain.clone();
            let cmd = match kind {
                Op::Rtp => {
                    ours.protect_rtp(&mut p).unwrap();
                    "rtp"
                }
                Op::Rtcp => {
                    ours.protect_rtcp(&mut p).unwrap();
                    "rtcp"
                }
            };
            // We protect, libsrtp unprotects; libsrtp protects the same plaintext.
            commands += &format!("{cmd}_unprotect {}\n", hex::encode(&p));
            expect.push((profile, "unprotect", plain.clone()));
            commands += &format!("{cmd}_protect {}\n", hex::encode(plain));
            expect.push((
                profile,
                if cmd == "rtp" {
                    "rtp_protected"
                } else {
                    "rtcp_protected"
                },
                p,
            ));
        }
        // The sender side crossed the wrap.
        assert_eq!(ours.stream_state(Ssrc(SSRC)).unwrap().tx_roc, Some(Roc(1)));
    }

    let out = chaincall_testkit::output_with_input(Command::new(&python).arg(script), commands);
    chaincall_testkit::assert_success(&out, "libsrtp peer");
    let text = String::from_utf8(out.stdout).unwrap();
    let replies: Vec<&str> = text.lines().collect();
    assert_eq!(replies.len(), expect.len(), "one reply per command");

    let mut rx: Option<SrtpSession> = None;
    let mut checked = [0usize; 3];
    for (reply, (profile, what, data)) in replies.iter().zip(&expect) {
        let (status, hex_out) = reply.split_once(' ').unwrap_or((reply, ""));
        assert_eq!(status, "OK", "{profile} {what}: libsrtp said {reply}");
        match *what {
            "session" => {
                rx = Some(
                    SrtpSession::from_key_and_salt(SrtpConfig::new(*profile), &key_for(*profile))
                        .unwrap(),
                );
            }
            "unprotect" => {
                assert_eq!(
                    hex::decode(hex_out).unwrap(),
                    *data,
                    "{profile}: libsrtp unprotected our packet"
                );
                checked[0] += 1;
            }
            "rtp_protected" => {
                let theirs = hex::decode(hex_out).unwrap();
                // Same key, same index: SRTP is deterministic, so the bytes must be identical.
                assert_eq!(
                    theirs, *data,
                    "{profile}: libsrtp and we protect RTP identically"
                );
                let mut p = theirs;
                rx.as_mut().unwrap().unprotect_rtp(&mut p).unwrap();
                checked[1] += 1;
            }
            "rtcp_protected" => {
                let mut p = hex::decode(hex_out).unwrap();
                // libsrtp numbers SRTCP from 1, we from 0 (RFC 3711 §3.4): compare after unprotect.
                let session = rx.as_mut().unwrap();
                session
                    .unprotect_rtcp(&mut p)
                    .unwrap_or_else(|e| panic!("{profile}: our unprotect of libsrtp SRTCP: {e}"));
                checked[2] += 1;
                // A replay of libsrtp's packet is refused.
                let mut again = hex::decode(hex_out).unwrap();
                assert_eq!(session.unprotect_rtcp(&mut again), Err(SrtpError::Replayed));
            }
            _ => unreachable!(),
        }
        if *what == "rtp_protected" {
            // After the last RTP packet the receiver followed the wrap.
            let st = rx.as_ref().unwrap().stream_state(Ssrc(SSRC)).unwrap();
            if st.rx_seq == Some(SeqNo(39)) {
                assert_eq!(st.rx_roc, Some(Roc(1)), "{profile}: ROC after wrap");
            }
        }
    }
    let per = rtp.len() + rtcp.len();
    assert_eq!(checked, [4 * per, 4 * rtp.len(), 4 * rtcp.len()]);
}
