//! Independent check of the wire format: Wireshark's ZRTP dissector (tshark 4.0) reads every
//! packet we send — the three exchanges (X255, EC25, DH3k), Error, ErrorACK, GoClear, Ping,
//! PingACK — with the CRC-32C marked good, no malformed packet and no expert warning. The pcap is
//! made by text2pcap from a hex dump of our datagrams, as UDP between two RTP ports.
//!
//! Wireshark 4.0 names `X255` "Unknown key agreement": its table predates RFC 6189's registry
//! addition of Curve25519; the type block itself is shown as sent.

mod common;

use std::process::Command;

use chaincall_zrtp::{ErrorCode, KeyAgreement, MessageType, wire};
use common::{finished_pair, type_of};

fn hexdump(packets: &[Vec<u8>]) -> String {
    let mut out = String::new();
    for p in packets {
        for (i, chunk) in p.chunks(16).enumerate() {
            out.push_str(&format!("{:06x}", i * 16));
            for b in chunk {
                out.push_str(&format!(" {b:02x}"));
            }
            out.push('\n');
        }
    }
    out
}

fn tshark(pcap: &std::path::Path, args: &[&str]) -> String {
    let bin = chaincall_testkit::peer("tshark").expect("checked by the caller");
    let mut cmd = Command::new(bin);
    // The ports are RTP's; the RTP dissector hands ZRTP (magic cookie) to the ZRTP one.
    cmd.arg("-r")
        .arg(pcap)
        .args(["-d", "udp.port==5004,rtp"])
        .args(args);
    let out = chaincall_testkit::run_ok(&mut cmd, "tshark");
    String::from_utf8(out).expect("tshark prints UTF-8")
}

#[test]
fn tshark_reads_every_packet_with_a_good_crc() {
    let Some(_) = chaincall_testkit::peer("tshark") else {
        return;
    };
    let Some(text2pcap) = chaincall_testkit::peer("text2pcap") else {
        return;
    };
    let mut packets = Vec::new();
    for ka in [KeyAgreement::X255, KeyAgreement::Ec25, KeyAgreement::Dh3k] {
        packets.extend(finished_pair(ka).sent.concat());
    }
    let ping = wire::Ping {
        version: wire::VERSION,
        endpoint_hash: [7; 8],
    };
    packets.push(wire::frame(
        9000,
        1,
        &wire::encode_error(ErrorCode::GOCLEAR_NOT_ALLOWED),
    ));
    packets.push(wire::frame(
        9001,
        2,
        &wire::encode_empty(MessageType::ErrorAck),
    ));
    packets.push(wire::frame(9002, 2, &wire::encode_goclear(&[1; 8])));
    packets.push(wire::frame(9003, 2, &wire::encode_ping(&ping)));
    packets.push(wire::frame(
        9004,
        1,
        &wire::encode_ping_ack(&wire::PingAck {
            version: wire::VERSION,
            endpoint_hash: [8; 8],
            received_hash: [7; 8],
            ssrc: 2,
        }),
    ));

    let dir = std::env::temp_dir().join(format!("chaincall-zrtp-tshark-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (txt, pcap) = (dir.join("zrtp.txt"), dir.join("zrtp.pcap"));
    std::fs::write(&txt, hexdump(&packets)).unwrap();
    chaincall_testkit::run_ok(
        Command::new(text2pcap)
            .args(["-q", "-u", "5004,5006"])
            .arg(&txt)
            .arg(&pcap),
        "text2pcap",
    );

    let fields = tshark(
        &pcap,
        &[
            "-T",
            "fields",
            "-e",
            "frame.protocols",
            "-e",
            "zrtp.type",
            "-e",
            "zrtp.checksum.status",
            "-e",
            "zrtp.hvi",
            "-e",
            "zrtp.zid",
        ],
    );
    let rows: Vec<Vec<&str>> = fields.lines().map(|l| l.split('\t').collect()).collect();
    assert_eq!(rows.len(), packets.len(), "one row per packet:\n{fields}");
    for (row, packet) in rows.iter().zip(&packets) {
        assert!(row[0].ends_with(":rtp:zrtp"), "not read as ZRTP: {row:?}");
        let ty = std::str::from_utf8(type_of(packet)).unwrap();
        assert_eq!(row[1], ty, "message type");
        assert_eq!(row[2], "1", "{ty}: CRC not marked good");
        if ty == "Commit  " {
            assert_eq!(row[3], hex::encode(&packet[24 + 64..24 + 96]), "hvi");
        }
        if ty == "Hello   " || ty == "Commit  " {
            let zid_at = if ty == "Hello   " { 24 + 52 } else { 24 + 32 };
            assert_eq!(row[4], hex::encode(&packet[zid_at..zid_at + 12]), "ZID");
        }
    }
    for ty in [
        "Hello   ", "HelloACK", "Commit  ", "DHPart1 ", "DHPart2 ", "Confirm1", "Confirm2",
        "Conf2ACK", "Error   ", "ErrorACK", "GoClear ", "Ping    ", "PingACK ",
    ] {
        assert!(rows.iter().any(|r| r[1] == ty), "{ty} not in the capture");
    }
    let verbose = tshark(&pcap, &["-V"]);
    assert!(
        !verbose.contains("Malformed"),
        "a packet marked malformed:\n{verbose}"
    );
    let expert = tshark(&pcap, &["-q", "-z", "expert,warn"]);
    assert!(
        !expert.contains("Warning") && !expert.contains("Error"),
        "expert warnings:\n{expert}"
    );
    std::fs::remove_dir_all(&dir).ok();
}
