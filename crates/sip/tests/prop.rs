//! Property tests: the parser never panics on arbitrary or mutated input, and building then
//! parsing a message round-trips every field.

use chaincall_sip::framing::{Frame, StreamFramer};
use chaincall_sip::header::{HeaderName, Method};
use chaincall_sip::message::{Framing, Message, MessageBuf, ParseLimits};
use chaincall_sip::sdp::{Media, Sdp};
use proptest::prelude::*;

const SEED: &[u8] = b"INVITE sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKabc;rport\r\nMax-Forwards: 70\r\nTo: \"Bob\" <sip:bob@example.com>\r\nFrom: <sip:alice@example.com>;tag=1\r\nCall-ID: abc@192.0.2.1\r\nCSeq: 1 INVITE\r\nContact: <sip:alice@[2001:db8::1]:5060>;expires=60\r\nAuthorization: Digest username=\"a\", realm=\"r\", nonce=\"n\", uri=\"sip:b\", response=\"00\"\r\nContent-Length: 4\r\n\r\nv=0\n";

fn exercise(m: &Message<'_>) {
    let _ = m.top_via().map(|v| (v.branch(), v.received(), v.rport()));
    let _ = m.vias().count();
    let _ = m.from().map(|f| f.tag());
    let _ = m.to().map(|f| f.tag());
    let _ = m.cseq();
    for c in m.contacts() {
        let _ = format!("{c:?}");
    }
    let _ = m.routes().count();
    for a in m.auth_headers(HeaderName::Authorization) {
        let _ = a.param("nonce");
    }
    let _ = m.expires();
    let _ = m.to_owned_buf().to_bytes();
    let _ = chaincall_sip::sdp::Sdp::parse(m.body());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn never_panics_on_arbitrary_bytes(data in proptest::collection::vec(any::<u8>(), 0..2048)) {
        if let Ok(m) = Message::parse(&data) { exercise(&m); }
        let _ = Message::parse_with(&data, Framing::Stream, &ParseLimits::default());
        let _ = Sdp::parse(&data);
        let mut f = StreamFramer::new(ParseLimits::default());
        f.push(&data);
        for _ in 0..8 { if !matches!(f.poll_frame(), Ok(Some(_))) { break; } }
    }

    #[test]
    fn never_panics_on_mutated_messages(
        flips in proptest::collection::vec((0usize..SEED.len(), any::<u8>()), 1..12),
        cut in 0usize..SEED.len() + 1,
    ) {
        let mut data = SEED.to_vec();
        for (i, b) in flips { data[i] = b; }
        data.truncate(cut.max(1));
        if let Ok(m) = Message::parse(&data) { exercise(&m); }
    }

    #[test]
    fn build_parse_round_trip(
        user in "[a-z][a-z0-9]{0,12}",
        host in "[a-z]{1,10}\\.example\\.(com|org)",
        port in 1u16..,
        seq in 0u32..(1u32 << 31),
        tag in "[A-Za-z0-9]{1,16}",
        display in "[A-Za-z ]{0,12}",
        branch in "[A-Za-z0-9]{1,20}",
        body in proptest::collection::vec(any::<u8>(), 0..300),
        ext in proptest::collection::vec(("X-[A-Za-z]{1,8}", "[ -~]{0,40}"), 0..5),
    ) {
        let mut b = MessageBuf::request(Method::Message, &format!("sip:{user}@{host}:{port}"))
            .with("Via", format!("SIP/2.0/UDP {host}:{port};branch=z9hG4bK{branch}"))
            .with("From", format!("\"{display}\" <sip:{user}@{host}>;tag={tag}"))
            .with("To", format!("<sip:{user}@{host}>"))
            .with("Call-ID", format!("{tag}@{host}"))
            .with("CSeq", format!("{seq} MESSAGE"))
            .with("Max-Forwards", "70");
        for (n, v) in &ext { b.push(n, v.trim()); }
        b.set_body("application/octet-stream", body.clone());
        let wire = b.to_bytes();
        let m = Message::parse(&wire).unwrap();
        prop_assert_eq!(m.request_uri().unwrap(), format!("sip:{user}@{host}:{port}"));
        prop_assert_eq!(m.cseq().unwrap().seq, seq);
        prop_assert_eq!(m.from().unwrap().tag(), Some(tag.as_str()));
        prop_assert_eq!(m.from().unwrap().display, Some(display.as_str()));
        let v = m.top_via().unwrap();
        let expect_branch = format!("z9hG4bK{branch}");
        prop_assert_eq!(v.branch(), Some(expect_branch.as_str()));
        prop_assert_eq!(v.port, Some(port));
        prop_assert_eq!(m.body(), &body[..]);
        // serialize ∘ parse is a fixed point.
        let again = m.to_owned_buf().to_bytes();
        prop_assert_eq!(&again, &wire);
        // And the stream framer cuts the same message out of a stream in any chunking.
        let mut f = StreamFramer::new(ParseLimits::default());
        for c in wire.chunks(13) { f.push(c); }
        prop_assert_eq!(f.poll_frame().unwrap(), Some(Frame::Message(wire.clone())));
    }

    #[test]
    fn sdp_round_trip(port in 1u16.., pts in proptest::collection::vec(0u8..128, 1..6), key in "[A-Za-z0-9+/]{40}") {
        let mut s = Sdp::new("-", 42, "192.0.2.1");
        let fmts: Vec<String> = pts.iter().map(u8::to_string).collect();
        let refs: Vec<&str> = fmts.iter().map(String::as_str).collect();
        let mut m = Media::new("audio", port, "RTP/SAVP", &refs);
        m.push_attr("crypto", Some(&format!("1 AES_CM_128_HMAC_SHA1_80 inline:{key}")));
        m.push_attr("sendrecv", None);
        s.media.push(m);
        let text = s.to_string_crlf();
        let p = Sdp::parse(text.as_bytes()).unwrap();
        prop_assert_eq!(&p, &s);
        prop_assert_eq!(p.media[0].cryptos().next().unwrap().keys[0].key_salt, key.as_str());
    }
}
