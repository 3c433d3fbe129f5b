//! What sipd and the phone log from a SIP message (the From, To and Contact URIs and their user
//! parts) can never carry a line break, however a hostile peer writes the header, folds included:
//! such a value cannot forge a log line. (An ESC can get through, as any byte a URI allows; the
//! `tracing-subscriber` fmt output escapes it.)

use chaincall_sip::header::Contact;
use chaincall_sip::message::Message;
use chaincall_sip::uri::SipUri;
use proptest::prelude::*;

fn user_part() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![
            4 => "[a-z0-9+]",
            1 => Just("\r".to_owned()),
            1 => Just("\n".to_owned()),
            1 => Just("\r\n ".to_owned()),
            1 => Just("\r\n\t".to_owned()),
            1 => Just("\x1b[2J".to_owned()),
            1 => Just(" ".to_owned()),
        ],
        1..12,
    )
    .prop_map(|parts| parts.concat())
}

fn assert_one_line(what: &str, s: &str) -> Result<(), TestCaseError> {
    prop_assert!(
        !s.contains(['\r', '\n']),
        "{} carries a line break: {:?}",
        what,
        s
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn logged_uris_never_carry_a_line_break(user in user_part(), angle in any::<bool>()) {
        let addr = if angle {
            format!("\"Eve\" <sip:{user}@example.org>;tag=1")
        } else {
            format!("sip:{user}@example.org;tag=1")
        };
        let raw = format!(
            "INVITE sip:bob@example.org SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\r\n\
             From: {addr}\r\nTo: {addr}\r\nContact: {addr}\r\nCall-ID: 1\r\nCSeq: 1 INVITE\r\n\
             Content-Length: 0\r\n\r\n"
        );
        let Ok(m) = Message::parse(raw.as_bytes()) else { return Ok(()) };
        for (what, na) in [("From", m.from()), ("To", m.to())] {
            if let Ok(na) = na {
                assert_one_line(what, na.uri)?;
                if let Ok(uri) = SipUri::parse(na.uri) {
                    assert_one_line(what, uri.user.unwrap_or_default())?;
                }
            }
        }
        for c in m.contacts() {
            if let Contact::Addr(na) = c {
                assert_one_line("Contact", na.uri)?;
            }
        }
    }
}
