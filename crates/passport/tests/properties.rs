//! Hostile input: the parser and verifier never panic, and no mutation of a valid header that
//! changes what was signed is ever accepted.

mod common;

use chaincall_passport::*;
use common::*;
use proptest::prelude::*;

/// One edit of a header value: flip a byte, delete a range, insert bytes, or truncate.
#[derive(Debug, Clone)]
enum Edit {
    Flip(usize, u8),
    Delete(usize, usize),
    Insert(usize, Vec<u8>),
    Truncate(usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<usize>(), 1..=255u8).prop_map(|(at, x)| Edit::Flip(at, x)),
        (any::<usize>(), 1..16usize).prop_map(|(at, n)| Edit::Delete(at, n)),
        (any::<usize>(), proptest::collection::vec(any::<u8>(), 1..8))
            .prop_map(|(at, b)| Edit::Insert(at, b)),
        any::<usize>().prop_map(Edit::Truncate),
    ]
}

fn apply(value: &str, edits: &[Edit]) -> String {
    let mut bytes = value.as_bytes().to_vec();
    for e in edits {
        let len = bytes.len().max(1);
        match e {
            Edit::Flip(at, x) => {
                if let Some(b) = bytes.get_mut(at % len) {
                    *b ^= x;
                }
            }
            Edit::Delete(at, n) => {
                let start = (at % len).min(bytes.len());
                let end = (start + n).min(bytes.len());
                bytes.drain(start..end);
            }
            Edit::Insert(at, b) => {
                let at = (at % len).min(bytes.len());
                bytes.splice(at..at, b.iter().copied());
            }
            Edit::Truncate(at) => bytes.truncate(at % len),
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn random_bytes_never_panic_the_parser(bytes in proptest::collection::vec(any::<u8>(), 0..1024)) {
        let text = String::from_utf8_lossy(&bytes);
        let _ = IdentityHeader::parse(&text);
        let _ = Passport::decode(&text);
        let _ = KeyLocator::parse(&text);
    }

    #[test]
    fn random_text_never_panics_the_parser(text in "[A-Za-z0-9._;=<>:+\" -]{0,600}") {
        let _ = IdentityHeader::parse(&text);
        let _ = KeyLocator::parse(&text);
    }

    /// A mutated valid header either fails to parse or verify (with some status), or still
    /// carries exactly the JWS that was signed (an edit in whitespace or an unknown parameter).
    #[test]
    fn mutated_headers_are_refused_or_unchanged(edits in proptest::collection::vec(edit(), 1..4)) {
        let value = signed(NOW);
        let original = IdentityHeader::parse(&value).unwrap();
        let mutated = apply(&value, &edits);
        match check(&mut verifier(), &mutated, &alice(), NOW) {
            Ok(_) => {
                let header = IdentityHeader::parse(&mutated).unwrap();
                prop_assert_eq!(header.passport().as_jws(), original.passport().as_jws());
                prop_assert_eq!(header.locator(), original.locator());
            }
            Err(err) => {
                let code = err.status().code;
                prop_assert!([403, 428, 436, 437, 438].contains(&code), "{}: {}", err, code);
            }
        }
    }
}
