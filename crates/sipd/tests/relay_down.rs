//! `[relay] mode = "nat"` with rtpengine down, on a running sipd: a call between phones not
//! behind NAT never asks the relay and goes through; a call from behind NAT fails within the
//! relay timeout with 503 (never a hung call), counted, and `/readyz` names the relay.

mod common;

use std::time::Duration;

use chaincall_sipd::config::RelayMode;
use common::{Ua, base_config, get, start, status_of};

const SDP: &str = "v=0\r\no=- 1 1 IN IP4 10.0.0.9\r\ns=-\r\nc=IN IP4 10.0.0.9\r\nt=0 0\r\na=key-mgmt:mikey AQAFgM0X\r\nm=audio 4000 RTP/SAVP 0\r\n";

/// An INVITE for `to`@sipd whose Via says `sent_by` (with `;rport`), offering [`SDP`].
fn invite(sipd: std::net::SocketAddr, to: &str, sent_by: &str, call: &str) -> String {
    format!(
        "INVITE sip:{to}@{sipd} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {sent_by};rport;branch=z9hG4bK{call}\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:alice@{ip}>;tag=a{call}\r\n\
         To: <sip:{to}@{ip}>\r\n\
         Call-ID: {call}\r\n\
         CSeq: 1 INVITE\r\n\
         Contact: <sip:alice@{sent_by}>\r\n\
         Content-Type: application/sdp\r\n\
         Content-Length: {len}\r\n\r\n{SDP}",
        ip = sipd.ip(),
        len = SDP.len(),
    )
}

#[tokio::test]
async fn with_the_relay_down_natd_calls_fail_with_503_and_others_go_direct() {
    // A port nothing listens on: rtpengine is down.
    let dead = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut cfg = base_config();
    cfg.relay.mode = RelayMode::Nat;
    cfg.relay.rtpengine = Some(dead);
    cfg.relay.timeout = Duration::from_millis(600);
    cfg.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
    let s = start(cfg).await;
    let bob = Ua::bind("127.0.0.1").await;
    let contact = format!("Contact: <sip:bob@{}>\n", bob.addr);
    let r = bob
        .ask_register(s.udp, "bob", "reg-bob", 1, &contact, "")
        .await;
    assert_eq!(status_of(&r), 200);

    // Neither party behind NAT: no relay needed, the INVITE reaches bob with its own SDP.
    let alice = Ua::bind("127.0.0.1").await;
    alice
        .send(
            s.udp,
            &invite(s.udp, "bob", &alice.addr.to_string(), "direct"),
        )
        .await;
    let got = bob.expect(2000, |m| m.method().is_some()).await;
    assert!(got.ends_with(SDP.as_bytes()));

    // alice behind NAT: the relay is needed and down; 503 within its timeout, bob hears nothing.
    alice
        .send(s.udp, &invite(s.udp, "bob", "10.0.0.9:5060", "natd"))
        .await;
    let r = alice
        .expect(5000, |m| {
            m.status().is_some_and(|c| c >= 200) && m.call_id().is_ok_and(|c| c == "natd")
        })
        .await;
    let text = String::from_utf8_lossy(&r);
    assert!(
        text.starts_with("SIP/2.0 503 Service Unavailable (media relay)"),
        "{text}"
    );
    while let Some(d) = bob.recv(200).await {
        assert!(
            !String::from_utf8_lossy(&d).contains("Call-ID: natd"),
            "bob must not be called"
        );
    }
    assert!(s.metrics.media_relay_errors.get() >= 1);
    assert_eq!(s.metrics.media_relay_offers.get(), 1);
    let (head, body) = get(s.metrics_addr.unwrap(), "/readyz").await;
    assert!(head.starts_with("HTTP/1.1 503"), "{head}");
    assert!(body.contains("media relay"), "{body}");
    s.stop().await;
}
