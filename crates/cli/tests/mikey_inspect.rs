//! `chaincall mikey inspect`: readable and JSON output, stdin, and one-line errors with offsets.

use std::process::{Command, Output};

/// A PKE offer made by `cargo run -p chaincall-mikey --example offer -- pke`.
const PKE_OFFER: &[&str] = &[
    "AQIFgJCr6GoBAAASNFZ4AAAAAAsA7q2x7X8KccQGEB/uXfMnFiRgB/Ef2X3mtRoGAQAcc2lwOisxNTU1MTIzMDAwMU",
    "BleGFtcGxlLm9yZwoBABxzaXA6KzE1NTUxMjMwMDAyQGV4YW1wbGUub3JnAQAAACcAAQEBARACAQEDARQEAQ4FAQAG",
    "AQAHAQEIAQEJAQAKAQELAQoMAQACAQAk6uJaNeO0w2sr+g4QL8HGxDkpJxyFCETHETO4mnaUKg3N0FqRAS0VuVUzPm",
    "LbEtrzjdA0fvZRuHYPBABSAQN4RWslpZx/4SzVEBGZhAUmWyRJNoubnpA/lADlju3DjBkh7bbAsjjuvavqPvRyZKz7",
    "xYBPfZ8hEDa4NjOsJOe6DFmKhXklCWxAMQV4ooanLzBA3kmIyov3PCZU3uC95mvO2i9TdvlsMXQ4asFpzxvcNyVlUJ",
    "N0YUWHLO2wa6V1NZICfuJt2cb4MAeZ82D9Z1pQ9w==",
];

fn chaincall(args: &[&str], stdin: Option<&str>) -> Output {
    chaincall_testkit::output_with_input(
        Command::new(env!("CARGO_BIN_EXE_chaincall")).args(args),
        stdin.unwrap_or(""),
    )
}

#[test]
fn inspect_prints_every_payload_of_a_pke_offer() {
    let offer = PKE_OFFER.concat();
    let out = chaincall(&["mikey", "inspect", &offer], None);
    chaincall_testkit::assert_success(&out, "mikey inspect");
    let text = String::from_utf8(out.stdout).unwrap();
    for needle in [
        "MIKEY message, 367 bytes",
        "data type 2 (Public key), V 1, PRF MIKEY-1, CSB ID 0x90abe86a",
        "CS 1: policy 0, SSRC 0x12345678, ROC 0",
        "@19   T      NTP-UTC 2026-11-22T18:24:45.496Z",
        "@47   ID     URI sip:+15551230001@example.org",
        "@79   ID     URI sip:+15551230002@example.org",
        "11 Authentication tag length: 10",
        "@155  KEMAC  encr AES-CM-128, 36 bytes of key data, MAC HMAC-SHA-1-160",
        "@216  PKE    C No cache, 82 bytes",
        "@301  SIGN   S type 3 (ECDSA-P256-SHA256 (unregistered)), 64 bytes",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }
    // The same from stdin, as an SDP line, in JSON.
    let line = format!("a=key-mgmt:mikey {offer}\r\n");
    let out = chaincall(&["mikey", "inspect", "--json", "-"], Some(&line));
    assert!(out.status.success());
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["header"]["data_type_name"], "Public key");
    let names = chaincall_testkit::json_strings(&json["payloads"], "payload");
    assert_eq!(
        names,
        ["T", "RAND", "ID", "ID", "SP", "KEMAC", "PKE", "SIGN"]
    );
    assert_eq!(json["payloads"][7]["offset"], 301);
}

#[test]
fn bad_input_exits_non_zero_with_one_line_naming_the_offset() {
    let offer = PKE_OFFER.concat();
    let cases = [
        (
            offer[..60].to_owned(),
            "malformed MIKEY message at byte 31: RAND needs 16 byte(s), only 14 left",
        ),
        ("AQIF*AAA".to_owned(), "not valid base64 (at character 4)"),
        (
            format!("Ag{}", &offer[2..]),
            "at byte 0: unsupported MIKEY version 2",
        ),
    ];
    for (input, expected) in cases {
        let out = chaincall(&["mikey", "inspect", &input], None);
        assert!(!out.status.success());
        let err = String::from_utf8(out.stderr).unwrap();
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains(expected), "{err}");
    }
}
