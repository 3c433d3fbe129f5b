//! Parsing a typical INVITE (with SDP) and a proxy rewrite of it.

use chaincall_sip::message::{Message, Rewriter};
use criterion::{Criterion, black_box, criterion_main};

const INVITE: &[u8] = b"INVITE sip:bob@biloxi.example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP pc33.atlanta.example.com:5060;branch=z9hG4bK776asdhds;rport\r\n\
Max-Forwards: 70\r\n\
To: Bob <sip:bob@biloxi.example.com>\r\n\
From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n\
CSeq: 314159 INVITE\r\n\
Contact: <sip:alice@pc33.atlanta.example.com>\r\n\
Allow: INVITE, ACK, CANCEL, OPTIONS, BYE, REFER, NOTIFY, MESSAGE, SUBSCRIBE, INFO\r\n\
Supported: replaces, timer\r\n\
User-Agent: chaincall-bench/0.1\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 149\r\n\
\r\n\
v=0\r\n\
o=alice 2890844526 2890844526 IN IP4 pc33.atlanta.example.com\r\n\
s=-\r\n\
c=IN IP4 192.0.2.101\r\n\
t=0 0\r\n\
m=audio 49172 RTP/AVP 0\r\n\
a=rtpmap:0 PCMU/8000\r\n";

fn bench(c: &mut Criterion) {
    assert!(Message::parse(INVITE).is_ok());
    c.bench_function("parse_invite", |b| {
        b.iter(|| {
            let m = Message::parse(black_box(INVITE)).unwrap();
            black_box(m.top_via().unwrap().branch());
        })
    });
    let mut out = Vec::with_capacity(2048);
    c.bench_function("parse_and_proxy_rewrite_invite", |b| {
        b.iter(|| {
            let m = Message::parse(black_box(INVITE)).unwrap();
            out.clear();
            Rewriter {
                prepend: vec![
                    ("Via", "SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKproxy1"),
                    ("Record-Route", "<sip:127.0.0.1:5060;lr>"),
                ],
                max_forwards: Some(69),
                ..Default::default()
            }
            .write(&m, &mut out);
            black_box(out.len());
        })
    });
}

// criterion's macro generates an undocumented function.
#[allow(missing_docs)]
mod group {
    criterion::criterion_group!(benches, super::bench);
}
criterion_main!(group::benches);
