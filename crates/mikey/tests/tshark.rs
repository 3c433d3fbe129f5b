//! Independent check: Wireshark's MIKEY dissector (tshark) reads the messages we produce, carried
//! the way a call carries them: `a=key-mgmt:mikey` in the SDP of a SIP INVITE (offers) and of its
//! 200 OK (answers), over UDP, in a pcap this test writes by hand.
//!
//! Finding recorded here (tshark 4.0, `epan/dissectors/packet-mikey.c`): the DH payload's value has
//! no length field (RFC 3830 §6.4), so the dissector takes the length from the DH-Group and knows only
//! the three registered MODP groups (0, 1, 2). For our P-256 group (3, unregistered, see the crate
//! docs) it stops at the DH payload without a Malformed mark: every payload before it is decoded and
//! checked here, the DH payload's group field too, and nothing after it is claimed.
//!
//! Second finding (`packet-sdp.c`): Wireshark hands `a=key-mgmt` to the MIKEY dissector only at
//! session level; at media level (also valid, RFC 4567 §3.1) it shows the attribute as text. The
//! SDP here therefore carries the attribute at session level.

mod common;

use std::path::Path;
use std::process::Command;

use chaincall_mikey::sdp;
use common::World;

/// Ethernet/IPv4/UDP around a payload, as one pcap record.
fn frame(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16, payload: &[u8], ts: u32) -> Vec<u8> {
    let udp_len = 8 + payload.len();
    let ip_len = 20 + udp_len;
    let mut f = Vec::with_capacity(14 + ip_len);
    f.extend_from_slice(&[0x02, 0, 0, 0, 0, 2]); // dst MAC
    f.extend_from_slice(&[0x02, 0, 0, 0, 0, 1]); // src MAC
    f.extend_from_slice(&0x0800u16.to_be_bytes());
    let mut ip = vec![0x45, 0];
    ip.extend_from_slice(&u16::try_from(ip_len).unwrap().to_be_bytes());
    ip.extend_from_slice(&[0, 1, 0x40, 0, 64, 17, 0, 0]); // id, DF, TTL, UDP, checksum 0 for now
    ip.extend_from_slice(&src);
    ip.extend_from_slice(&dst);
    let mut sum: u32 = ip
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    let csum = !(sum as u16);
    ip[10..12].copy_from_slice(&csum.to_be_bytes());
    f.extend_from_slice(&ip);
    f.extend_from_slice(&sport.to_be_bytes());
    f.extend_from_slice(&dport.to_be_bytes());
    f.extend_from_slice(&u16::try_from(udp_len).unwrap().to_be_bytes());
    f.extend_from_slice(&[0, 0]); // UDP checksum optional over IPv4 (RFC 768)
    f.extend_from_slice(payload);

    let mut rec = Vec::new();
    rec.extend_from_slice(&ts.to_le_bytes()); // seconds
    rec.extend_from_slice(&0u32.to_le_bytes()); // microseconds
    rec.extend_from_slice(&u32::try_from(f.len()).unwrap().to_le_bytes());
    rec.extend_from_slice(&u32::try_from(f.len()).unwrap().to_le_bytes());
    rec.extend_from_slice(&f);
    rec
}

fn pcap(records: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes()); // magic, microsecond timestamps
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&4u16.to_le_bytes());
    out.extend_from_slice(&0i32.to_le_bytes()); // thiszone
    out.extend_from_slice(&0u32.to_le_bytes()); // sigfigs
    out.extend_from_slice(&65535u32.to_le_bytes()); // snaplen
    out.extend_from_slice(&1u32.to_le_bytes()); // LINKTYPE_ETHERNET
    for r in records {
        out.extend_from_slice(r);
    }
    out
}

/// Call `call`'s INVITE from alice at 192.0.2.1 (`invite`) or bob's 200 OK from 192.0.2.2, with an
/// SDP body carrying `mikey`.
fn sip_message(call: usize, invite: bool, mikey: &[u8]) -> Vec<u8> {
    let (origin, port) = if invite {
        ("192.0.2.1", 40000)
    } else {
        ("192.0.2.2", 50000)
    };
    let body = format!(
        "v=0\r\no=- 1 1 IN IP4 {origin}\r\ns=-\r\nc=IN IP4 {origin}\r\nt=0 0\r\n{}\r\n\
         m=audio {port} RTP/SAVP 0\r\na=rtpmap:0 PCMU/8000\r\n",
        sdp::attribute_line(mikey)
    );
    let (start, max_forwards, to_tag, contact) = if invite {
        (
            "INVITE sip:+15551230002@example.org SIP/2.0",
            "Max-Forwards: 70\r\n",
            String::new(),
            "+15551230001@192.0.2.1",
        )
    } else {
        (
            "SIP/2.0 200 OK",
            "",
            format!(";tag=b{call}"),
            "+15551230002@192.0.2.2",
        )
    };
    format!(
        "{start}\r\n\
         Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK-{call}\r\n\
         {max_forwards}\
         From: <sip:+15551230001@example.org>;tag=a{call}\r\n\
         To: <sip:+15551230002@example.org>{to_tag}\r\n\
         Call-ID: call-{call}@192.0.2.1\r\n\
         CSeq: 1 INVITE\r\n\
         Contact: <sip:{contact}:5060>\r\n\
         Content-Type: application/sdp\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn tshark(file: &Path, args: &[&str]) -> String {
    let bin = chaincall_testkit::peer("tshark").expect("checked by the caller");
    let out = chaincall_testkit::run_ok(
        Command::new(bin)
            .arg("-r")
            .arg(file)
            .args(["-o", "sip.display_raw_text:FALSE"])
            .args(args),
        "tshark",
    );
    String::from_utf8(out).expect("tshark prints UTF-8")
}

#[test]
fn tshark_decodes_every_mode_in_sip_invite_and_200_ok() {
    let Some(_) = chaincall_testkit::peer("tshark") else {
        return;
    };
    let w = World::new();
    let pke = w.pke(true);
    let pke_answer = w.answer(&pke);
    let mut dh = w.dh();
    let dh_answer = w.answer(&dh);
    dh.handle_answer(&dh_answer, &w.dir, w.now, 60).unwrap();
    let psk = w.psk(true);
    let psk_answer = w.answer(&psk);

    let a = [192, 0, 2, 1];
    let b = [192, 0, 2, 2];
    // Frames: 1 PKE INVITE, 2 PKE 200, 3 DH INVITE, 4 DH 200, 5 PSK INVITE, 6 PSK 200.
    let messages = [
        (pke.offer().to_vec(), pke_answer),
        (dh.offer().to_vec(), dh_answer),
        (psk.offer().to_vec(), psk_answer),
    ];
    let mut records = Vec::new();
    for (i, (offer, answer)) in messages.iter().enumerate() {
        records.push(frame(
            a,
            b,
            5060,
            5060,
            &sip_message(i, true, offer),
            1_790_000_000 + 2 * i as u32,
        ));
        records.push(frame(
            b,
            a,
            5060,
            5060,
            &sip_message(i, false, answer),
            1_790_000_001 + 2 * i as u32,
        ));
    }
    let dir = std::env::temp_dir().join(format!("chaincall-mikey-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("mikey-modes.pcap");
    std::fs::write(&file, pcap(&records)).unwrap();

    // The whole decode: no malformed packet, no expert warning or error, anywhere.
    let verbose = tshark(&file, &["-V"]);
    assert!(
        !verbose.contains("Malformed"),
        "tshark marked a packet malformed:\n{verbose}"
    );
    let expert = tshark(&file, &["-q", "-z", "expert,warn"]);
    assert!(
        !expert.contains("Warning") && !expert.contains("Error"),
        "tshark expert warnings:\n{expert}"
    );

    let fields = tshark(
        &file,
        &[
            "-T",
            "fields",
            "-E",
            "separator=|",
            "-E",
            "occurrence=a",
            "-E",
            "aggregator=,",
            "-e",
            "frame.number",
            "-e",
            "sip.Method",
            "-e",
            "sip.Status-Code",
            "-e",
            "mikey.version",
            "-e",
            "mikey.type",
            "-e",
            "mikey.csb_id",
            "-e",
            "mikey.srtp_id.ssrc",
            "-e",
            "mikey.t.ts_type",
            "-e",
            "mikey.rand.len",
            "-e",
            "mikey.id.data",
            "-e",
            "mikey.sp.encr_alg",
            "-e",
            "mikey.sp.auth_tag_len",
            "-e",
            "mikey.kemac.encr_alg",
            "-e",
            "mikey.kemac.mac_alg",
            "-e",
            "mikey.pke.len",
            "-e",
            "mikey.sign.type",
            "-e",
            "mikey.sign.len",
            "-e",
            "mikey.dh.group",
            "-e",
            "mikey.v.auth_alg",
            "-e",
            "mikey.v.ver_data",
        ],
    );
    let rows: Vec<Vec<&str>> = fields.lines().map(|l| l.split('|').collect()).collect();
    assert_eq!(rows.len(), 6, "six frames:\n{fields}");
    let col = |row: usize, name: &str| -> &str {
        let names = [
            "frame",
            "method",
            "status",
            "version",
            "type",
            "csb",
            "ssrc",
            "ts_type",
            "rand_len",
            "id",
            "sp_encr",
            "tag_len",
            "kemac_encr",
            "kemac_mac",
            "pke_len",
            "sign_type",
            "sign_len",
            "dh_group",
            "v_alg",
            "v_data",
        ];
        let i = names.iter().position(|n| *n == name).unwrap();
        rows[row][i]
    };
    let ssrcs = "0x12345678,0x9abcdef0";
    for (row, (method, status, ty)) in [
        ("INVITE", "", "2"),
        ("", "200", "3"),
        ("INVITE", "", "4"),
        ("", "200", "5"),
        ("INVITE", "", "0"),
        ("", "200", "1"),
    ]
    .into_iter()
    .enumerate()
    {
        assert_eq!(col(row, "method"), method, "row {row}:\n{fields}");
        assert_eq!(col(row, "status"), status, "row {row}");
        assert_eq!(col(row, "version"), "1", "row {row}");
        assert_eq!(col(row, "type"), ty, "row {row}: data type");
        assert_eq!(col(row, "ssrc"), ssrcs, "row {row}: CS ID map");
        assert_eq!(col(row, "ts_type"), "0", "row {row}: NTP-UTC");
    }
    let csb = |i: &chaincall_mikey::Initiator| format!("0x{:08x}", i.csb_id());
    for (row, init) in [
        (0, &pke),
        (1, &pke),
        (2, &dh),
        (3, &dh),
        (4, &psk),
        (5, &psk),
    ] {
        assert_eq!(col(row, "csb"), csb(init), "row {row}: CSB ID");
    }
    // PKE offer: every payload, signature last.
    assert_eq!(col(0, "rand_len"), "16");
    assert_eq!(
        col(0, "id"),
        "sip:+15551230001@example.org,sip:+15551230002@example.org"
    );
    assert_eq!(col(0, "sp_encr"), "1");
    assert_eq!(col(0, "tag_len"), "10");
    assert_eq!((col(0, "kemac_encr"), col(0, "kemac_mac")), ("1", "1"));
    assert!(col(0, "pke_len").parse::<u32>().unwrap() > 33);
    assert_eq!((col(0, "sign_type"), col(0, "sign_len")), ("3", "64"));
    let pke_offer = tshark(&file, &["-V", "-Y", "frame.number == 1"]);
    assert!(
        pke_offer.contains("Signature type: Unknown (3)"),
        "{pke_offer}"
    );
    // Verification answers: HDR, T, IDr, V (HMAC-SHA-1, 20 bytes).
    for row in [1, 5] {
        assert_eq!(col(row, "id"), "sip:+15551230002@example.org", "row {row}");
        assert_eq!(col(row, "v_alg"), "1", "row {row}");
        assert_eq!(col(row, "v_data").len(), 40, "row {row}");
    }
    // DH offer: up to and including the DH payload's group (see the module docs for the limit).
    assert_eq!(col(2, "rand_len"), "16");
    assert_eq!(
        col(2, "id"),
        "sip:+15551230001@example.org,sip:+15551230002@example.org"
    );
    assert_eq!(col(2, "sp_encr"), "1");
    // The dissector recognises the DH payload (its next-payload field is shown) but, not knowing
    // group 3, adds no group or value field and stops there.
    assert_eq!(
        col(2, "dh_group"),
        "",
        "tshark learned DH group 3? update the module docs"
    );
    let dh_offer = tshark(&file, &["-V", "-Y", "frame.number == 3"]);
    assert!(dh_offer.contains("DH Data (DH)\n") || dh_offer.contains("DH Data (DH)\r\n"));
    assert!(
        dh_offer.contains("Next Payload: Signature (SIGN) (4)"),
        "{dh_offer}"
    );
    let dh_answer = tshark(&file, &["-V", "-Y", "frame.number == 4"]);
    assert!(dh_answer.contains("Data Type: D-H resp (5)"), "{dh_answer}");
    assert!(
        dh_answer.contains("Next Payload: DH Data (DH) (3)"),
        "{dh_answer}"
    );
    assert_eq!(
        col(3, "id"),
        "sip:+15551230002@example.org,sip:+15551230001@example.org"
    );
    // PSK offer: KEMAC last, MAC over everything.
    assert_eq!((col(4, "kemac_encr"), col(4, "kemac_mac")), ("1", "1"));
    assert_eq!(col(4, "sign_type"), "");

    let _ = std::fs::remove_dir_all(&dir);
}
