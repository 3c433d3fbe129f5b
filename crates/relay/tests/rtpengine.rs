//! The NG client against a real rtpengine (started here, userspace mode), and against fake servers
//! for the faults a real one does not produce on demand.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

use chaincall_relay::daemon::{Rtpengine, RtpengineConfig};
use chaincall_relay::ng::{Answer, Offer, ReplyError};
use chaincall_relay::{NgClient, NgClientConfig, NgError};
use tokio::net::UdpSocket;

/// Starts rtpengine on 127.0.0.1 with a free NG port and 60 media ports, or skips.
async fn rtpengine() -> Option<(Rtpengine, RtpengineConfig)> {
    let binary = chaincall_testkit::peer("rtpengine")?;
    let base = chaincall_testkit::free_udp_port() & !1;
    let config = RtpengineConfig {
        binary,
        interface: "127.0.0.1".parse().unwrap(),
        ng: SocketAddr::from(([127, 0, 0, 1], chaincall_testkit::free_udp_port())),
        ports: (base, base + 59),
    };
    let daemon = Rtpengine::spawn(config.command(), config.ng, Duration::from_secs(20))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    Some((daemon, config))
}

fn client(ng: SocketAddr) -> NgClient {
    NgClient::new(ng, NgClientConfig::default())
}

/// The port of the (single) `m=` line.
fn media_port(sdp: &str) -> u16 {
    let m = sdp
        .lines()
        .find(|l| l.starts_with("m="))
        .expect("an m= line");
    m.split(' ').nth(1).unwrap().parse().unwrap()
}

/// An RTP-shaped datagram with an opaque (as if encrypted) payload and a 10-byte "tag".
fn srtp_like(ssrc: u32, seq: u16) -> Vec<u8> {
    let mut packet = vec![0x80, 0x00];
    packet.extend_from_slice(&seq.to_be_bytes());
    packet.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    packet.extend_from_slice(&ssrc.to_be_bytes());
    // Bytes no codec would produce, different in every packet.
    let mut x = ssrc ^ (u32::from(seq) << 16) ^ 0x9e37_79b9;
    packet.extend((0..170).map(|_| {
        x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        x.to_be_bytes()[0]
    }));
    packet
}

/// Sends `count` packets from `from` to `to` and returns what `receiver` got, unchanged or not.
async fn send_through(
    from: &UdpSocket,
    to: SocketAddr,
    receiver: &UdpSocket,
    ssrc: u32,
    count: u16,
) -> (BTreeSet<Vec<u8>>, Vec<(Vec<u8>, SocketAddr)>) {
    let sent: BTreeSet<Vec<u8>> = (0..count).map(|seq| srtp_like(ssrc, seq)).collect();
    for seq in 0..count {
        from.send_to(&srtp_like(ssrc, seq), to).await.unwrap();
    }
    let mut got = Vec::new();
    let mut buf = [0u8; 2048];
    // Absence check: stop once nothing more arrives for a while.
    while got.len() < usize::from(count) {
        match tokio::time::timeout(Duration::from_secs(2), receiver.recv_from(&mut buf)).await {
            Ok(Ok((n, source))) => got.push((buf[..n].to_vec(), source)),
            Ok(Err(e)) => panic!("recv: {e}"),
            Err(_) => break,
        }
    }
    (sent, got)
}

/// A phone's SDP: one audio stream on RTP/SAVP with `keys` (session-level lines) in front of it.
fn phone_sdp(addr: impl std::fmt::Display, port: u16, keys: &str) -> String {
    format!(
        "v=0\r\no=- 3920 3920 IN IP4 {addr}\r\ns=chaincall\r\nc=IN IP4 {addr}\r\nt=0 0\r\n\
         {keys}m=audio {port} RTP/SAVP 0\r\na=rtpmap:0 PCMU/8000\r\na=ptime:20\r\na=sendrecv\r\n"
    )
}

/// One relayed call: offer (caller's SDP with `caller_keys`), answer (`callee_keys`), media both
/// ways, query, delete, list.
async fn relayed_call(rtpe: &RtpengineConfig, call_id: &str, caller_keys: &str, callee_keys: &str) {
    let relay = client(rtpe.ng);
    // The phones sit on other loopback addresses than the relay's, so rewritten addresses show.
    let caller = UdpSocket::bind("127.0.0.2:0").await.unwrap();
    let callee = UdpSocket::bind("127.0.0.3:0").await.unwrap();
    let caller_port = caller.local_addr().unwrap().port();
    let callee_port = callee.local_addr().unwrap().port();

    let offer_sdp = phone_sdp("127.0.0.2", caller_port, caller_keys);
    let to_callee = relay
        .offer(Offer {
            call_id: call_id.into(),
            from_tag: "caller-tag".into(),
            sdp: offer_sdp.clone(),
            received_from: None,
        })
        .await
        .unwrap_or_else(|e| panic!("offer: {e}: {:?}", std::error::Error::source(&e)));
    let relay_for_callee = media_port(&to_callee);
    assert!((rtpe.ports.0..=rtpe.ports.1).contains(&relay_for_callee));
    // Byte for byte the caller's SDP, the keys included, but for the address and port.
    let expected = offer_sdp
        .replace("c=IN IP4 127.0.0.2", "c=IN IP4 127.0.0.1")
        .replace(
            &format!("m=audio {caller_port} "),
            &format!("m=audio {relay_for_callee} "),
        );
    assert_eq!(*to_callee, expected);
    for key_line in caller_keys.split_terminator("\r\n") {
        assert!(to_callee.contains(&format!("{key_line}\r\n")));
    }

    let answer_sdp = phone_sdp("127.0.0.3", callee_port, callee_keys);
    let to_caller = relay
        .answer(Answer {
            call_id: call_id.into(),
            from_tag: "caller-tag".into(),
            to_tag: "callee-tag".into(),
            sdp: answer_sdp.clone(),
            received_from: None,
        })
        .await
        .unwrap_or_else(|e| panic!("answer: {e}: {:?}", std::error::Error::source(&e)));
    let relay_for_caller = media_port(&to_caller);
    assert_eq!(
        *to_caller,
        answer_sdp
            .replace("c=IN IP4 127.0.0.3", "c=IN IP4 127.0.0.1")
            .replace(
                &format!("m=audio {callee_port} "),
                &format!("m=audio {relay_for_caller} ")
            )
    );

    // Media both ways through the relay, each party sending from the port it receives on.
    let relay_ip = [127, 0, 0, 1];
    let (sent, got) = send_through(
        &caller,
        (relay_ip, relay_for_caller).into(),
        &callee,
        0xca11e5,
        20,
    )
    .await;
    let (sent_back, got_back) = send_through(
        &callee,
        (relay_ip, relay_for_callee).into(),
        &caller,
        0xca11ee,
        20,
    )
    .await;
    for ((packet, source), (sent, relay_port)) in got
        .iter()
        .map(|g| (g, (&sent, relay_for_callee)))
        .chain(got_back.iter().map(|g| (g, (&sent_back, relay_for_caller))))
    {
        assert!(sent.contains(packet), "the relay changed a packet");
        assert_eq!(*source, SocketAddr::from((relay_ip, relay_port)));
    }
    // rtpengine may drop a stream's first packets while it learns the peer; most must pass.
    assert!(
        got.len() >= 15 && got_back.len() >= 15,
        "{} and {} of 20 arrived",
        got.len(),
        got_back.len()
    );

    let stats = relay.query(call_id).await.unwrap();
    let from_caller = stats
        .port(relay_for_caller)
        .expect("the caller's relay port");
    let from_callee = stats
        .port(relay_for_callee)
        .expect("the callee's relay port");
    assert!(!from_caller.rtcp && !from_callee.rtcp);
    assert_eq!(from_caller.endpoint, Some(caller.local_addr().unwrap()));
    assert_eq!(from_callee.endpoint, Some(callee.local_addr().unwrap()));
    assert!(
        (got.len() as u64..=20).contains(&from_caller.counters.packets),
        "{from_caller:?}"
    );
    assert!(
        (got_back.len() as u64..=20).contains(&from_callee.counters.packets),
        "{from_callee:?}"
    );
    assert!(
        stats.rtp.packets >= (got.len() + got_back.len()) as u64,
        "{stats:?}"
    );

    assert!(relay.list(100).await.unwrap().contains(&call_id.to_owned()));
    assert_eq!(relay.delete(call_id).await.unwrap(), None);
    assert!(!relay.list(100).await.unwrap().contains(&call_id.to_owned()));
    match relay.query(call_id).await {
        Err(NgError::Reply {
            source: ReplyError::Refused { reason, .. },
            ..
        }) => assert!(reason.contains("Unknown call-id"), "{reason}"),
        other => panic!("query after delete: {other:?}"),
    }
}

#[tokio::test]
async fn mikey_and_sdes_calls_pass_through_rtpengine_with_the_parties_own_keys() {
    let Some((daemon, config)) = rtpengine().await else {
        return;
    };
    client(config.ng).ping().await.unwrap();
    relayed_call(
        &config,
        "mikey-call",
        "a=key-mgmt:mikey AQAFgM0XAAAAAAAAAAAAAAABAAAAFgAAAAAAAAAAAAAAAAAAAAAAAAA=\r\n",
        "a=key-mgmt:mikey AQIFgM0XAAAAAAAAAAAAAAABAAAAFgAAAAAAAAAAAAAAAAAAAAAAAAB=\r\n",
    )
    .await;
    relayed_call(
        &config,
        "sdes-call",
        "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz|2^31\r\n",
        "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:d0RmdmcmVCspeEc3QGZiNWpVLFJhQX1cfHAwJSoj\r\n",
    )
    .await;
    drop(daemon);
}

#[tokio::test]
async fn rtpengine_errors_are_reported_with_its_reason_and_address() {
    let Some((_daemon, config)) = rtpengine().await else {
        return;
    };
    let relay = client(config.ng);
    let err = relay
        .answer(Answer {
            call_id: "never-offered".into(),
            from_tag: "a".into(),
            to_tag: "b".into(),
            sdp: "v=0\r\nc=IN IP4 127.0.0.1\r\nm=audio 4000 RTP/AVP 0\r\n".into(),
            received_from: None,
        })
        .await
        .unwrap_err();
    assert!(err.to_string().contains(&config.ng.to_string()), "{err}");
    match &err {
        NgError::Reply {
            source: ReplyError::Refused { command, reason },
            ..
        } => {
            assert_eq!(*command, "answer");
            assert!(reason.contains("Unknown call-id"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    // Deleting what is not there is a warning, not an error.
    assert!(relay.delete("never-offered").await.unwrap().is_some());
    // Not SDP at all: refused before anything is sent.
    let err = relay
        .offer(Offer {
            call_id: "x".into(),
            from_tag: "a".into(),
            sdp: "hello".into(),
            received_from: None,
        })
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            NgError::Request {
                command: "offer",
                ..
            }
        ),
        "{err:?}"
    );
}

fn quick(ng: SocketAddr) -> NgClient {
    NgClient::new(
        ng,
        NgClientConfig {
            timeout: Duration::from_millis(700),
            retransmit: Duration::from_millis(100),
            ..NgClientConfig::default()
        },
    )
}

#[tokio::test]
async fn a_silent_relay_times_out_naming_its_address_after_retransmitting_the_same_cookie() {
    let silent = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = silent.local_addr().unwrap();
    let err = quick(addr).ping().await.unwrap_err();
    let NgError::NoReply {
        server,
        attempts,
        refused,
        ..
    } = &err
    else {
        panic!("{err:?}")
    };
    assert_eq!(*server, addr);
    assert!(*attempts >= 3 && !refused, "{err:?}");
    assert!(err.to_string().contains(&addr.to_string()), "{err}");
    // Every attempt is the same datagram: one cookie for the request.
    let mut seen = BTreeSet::new();
    let mut buf = [0u8; 512];
    let mut count = 0;
    while let Ok(Ok(n)) =
        tokio::time::timeout(Duration::from_millis(100), silent.recv(&mut buf)).await
    {
        seen.insert(buf[..n].to_vec());
        count += 1;
    }
    assert_eq!(count, *attempts);
    assert_eq!(seen.len(), 1, "{seen:?}");

    // Nothing listening at all: the same error, saying so.
    drop(silent);
    let err = quick(addr).ping().await.unwrap_err();
    assert!(
        matches!(err, NgError::NoReply { refused: true, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("nothing listening"), "{err}");
}

#[tokio::test]
async fn replies_with_another_cookie_are_ignored_and_hostile_ones_refused() {
    let fake = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = fake.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let mut buf = [0u8; 512];
        // First request: ignore the first attempt, answer the retransmission with a stranger's
        // cookie first, then a stale duplicate, then properly.
        let (n, peer) = fake.recv_from(&mut buf).await.unwrap();
        let first = buf[..n].to_vec();
        let (n, _) = fake.recv_from(&mut buf).await.unwrap();
        assert_eq!(buf[..n], first[..], "a retransmission is the same datagram");
        let cookie = &first[..first.iter().position(|&b| b == b' ').unwrap()];
        fake.send_to(b"someoneelse d6:result5:error12:error-reason3:no!e", peer)
            .await
            .unwrap();
        fake.send_to(b"garbage-without-space", peer).await.unwrap();
        fake.send_to(&[cookie, b" d6:result4:ponge"].concat(), peer)
            .await
            .unwrap();
        // Second request: a hostile body under the right cookie.
        let (n, peer) = fake.recv_from(&mut buf).await.unwrap();
        let cookie = buf[..n].split(|&b| b == b' ').next().unwrap().to_vec();
        fake.send_to(&[&cookie[..], b" d6:result2:ok3:sdpi1e"].concat(), peer)
            .await
            .unwrap();
    });
    let relay = quick(addr);
    relay.ping().await.unwrap();
    let err = relay.query("c").await.unwrap_err();
    assert!(
        matches!(
            err,
            NgError::Reply {
                source: ReplyError::Bencode(_),
                ..
            }
        ),
        "{err:?}"
    );
    server.await.unwrap();
}

/// Runs `f` to completion on a runtime whose thread is in node `node`'s namespace (sockets it
/// binds, processes it spawns, live there).
fn in_namespace<T: Send>(
    net: &chaincall_testkit::netns::TestNet,
    node: &str,
    f: impl std::future::Future<Output = T> + Send,
) -> T {
    net.run(node, || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(f)
    })
}

/// A UDP socket bound in `node`'s namespace, for use on the test's runtime.
fn phone_socket(net: &chaincall_testkit::netns::TestNet, node: &str) -> UdpSocket {
    let socket = net.run(node, || std::net::UdpSocket::bind("0.0.0.0:0").unwrap());
    socket.set_nonblocking(true).unwrap();
    UdpSocket::from_std(socket).unwrap()
}

#[tokio::test]
async fn phones_behind_nat_exchange_srtp_through_rtpengine_on_the_public_segment() {
    use chaincall_testkit::netns::{Nat, TestNet};
    let Some(binary) = chaincall_testkit::peer("rtpengine") else {
        return;
    };
    let Some(net) = TestNet::builder()
        .public_host("relay")
        .public_host("sipd")
        .home("a", Nat::PortPreserving, &["alice"])
        .home("b", Nat::Symmetric, &["bob"])
        .build()
    else {
        return;
    };
    let relay_ip = net.addr("relay");
    // Inside the namespace nothing else runs: fixed ports are free.
    let config = RtpengineConfig {
        binary,
        interface: relay_ip.into(),
        ng: (relay_ip, 2223).into(),
        ports: (30000, 30099),
    };
    let _daemon = in_namespace(&net, "relay", async {
        Rtpengine::spawn(config.command(), config.ng, Duration::from_secs(20)).await
    })
    .unwrap_or_else(|e| panic!("{e}"));

    let alice = phone_socket(&net, "alice");
    let bob = phone_socket(&net, "bob");
    let alice_port = alice.local_addr().unwrap().port();
    let bob_port = bob.local_addr().unwrap().port();
    let alice_keys =
        "a=key-mgmt:mikey AQAFgM0XAAAAAAAAAAAAAAABAAAAFgAAAAAAAAAAAAAAAAAAAAAAAAA=\r\n";
    let bob_keys = "a=key-mgmt:mikey AQIFgM0XAAAAAAAAAAAAAAABAAAAFgAAAAAAAAAAAAAAAAAAAAAAAAB=\r\n";
    let offer_sdp = phone_sdp(net.addr("alice"), alice_port, alice_keys);
    let answer_sdp = phone_sdp(net.addr("bob"), bob_port, bob_keys);

    // sipd's part: it sees the phones' signalling come from their routers.
    let relay = client(config.ng);
    let (to_bob, to_alice) = in_namespace(&net, "sipd", async {
        let to_bob = relay
            .offer(Offer {
                call_id: "nat-call".into(),
                from_tag: "alice-tag".into(),
                sdp: offer_sdp.clone(),
                received_from: Some(net.public_addr("alice").into()),
            })
            .await
            .unwrap();
        let to_alice = relay
            .answer(Answer {
                call_id: "nat-call".into(),
                from_tag: "alice-tag".into(),
                to_tag: "bob-tag".into(),
                sdp: answer_sdp.clone(),
                received_from: Some(net.public_addr("bob").into()),
            })
            .await
            .unwrap();
        (to_bob, to_alice)
    });
    // Each phone is told the relay's public address; the other's keys arrive untouched.
    let relay_c = format!("c=IN IP4 {relay_ip}\r\n");
    assert!(
        to_bob.contains(&relay_c) && to_alice.contains(&relay_c),
        "{}{}",
        *to_bob,
        *to_alice
    );
    assert!(to_bob.contains(alice_keys) && to_alice.contains(bob_keys));
    let relay_for_bob: SocketAddr = (relay_ip, media_port(&to_bob)).into();
    let relay_for_alice: SocketAddr = (relay_ip, media_port(&to_alice)).into();

    // Both phones send first, as a symmetric-RTP phone does: their packets open the NAT and
    // show rtpengine where each phone really is. Until then packets may be lost; retry.
    let mut buf = [0u8; 2048];
    let mut opened = (false, false);
    for attempt in 0..50 {
        if opened == (true, true) {
            break;
        }
        assert!(attempt < 49, "no media got through the NATs: {opened:?}");
        alice
            .send_to(&srtp_like(1, attempt), relay_for_alice)
            .await
            .unwrap();
        bob.send_to(&srtp_like(2, attempt), relay_for_bob)
            .await
            .unwrap();
        let wait = Duration::from_millis(100);
        while let Ok(Ok(_)) = tokio::time::timeout(wait, alice.recv_from(&mut buf)).await {
            opened.0 = true;
        }
        while let Ok(Ok(_)) = tokio::time::timeout(wait, bob.recv_from(&mut buf)).await {
            opened.1 = true;
        }
    }

    let (sent, got) = send_through(&alice, relay_for_alice, &bob, 0xa11ce, 20).await;
    let (sent_back, got_back) = send_through(&bob, relay_for_bob, &alice, 0xb0b, 20).await;
    assert_eq!(got.len(), 20, "alice to bob");
    assert_eq!(got_back.len(), 20, "bob to alice");
    assert!(
        got.iter()
            .all(|(p, from)| sent.contains(p) && *from == relay_for_bob)
    );
    assert!(
        got_back
            .iter()
            .all(|(p, from)| sent_back.contains(p) && *from == relay_for_alice)
    );

    let stats = in_namespace(&net, "sipd", relay.query("nat-call")).unwrap();
    let alice_stream = stats.port(relay_for_alice.port()).unwrap();
    let bob_stream = stats.port(relay_for_bob.port()).unwrap();
    // The relay sends to the routers, at the ports their NATs chose.
    let alice_seen = alice_stream.endpoint.unwrap();
    let bob_seen = bob_stream.endpoint.unwrap();
    assert_eq!(
        alice_seen,
        (net.public_addr("alice"), alice_port).into(),
        "port-preserving"
    );
    assert_eq!(bob_seen.ip(), net.public_addr("bob"));
    assert!(alice_stream.counters.packets >= 20 && bob_stream.counters.packets >= 20);

    in_namespace(&net, "sipd", relay.delete("nat-call")).unwrap();
    assert!(
        in_namespace(&net, "sipd", relay.list(10))
            .unwrap()
            .is_empty()
    );
}
