//! The impairment hop on a namespace's loopback: datagrams keep their real source (what the
//! chaincall phone checks), both directions pass, a socket bound to 0.0.0.0 (as baresip's are)
//! gets each datagram once, loss drops about the share asked for, and delay with jitter holds
//! every datagram at least the minimum delay and reorders some.

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use chaincall_testkit::impair::{ImpairedLoopback, Impairment};
use chaincall_testkit::netns::TestNet;

const N: u32 = 300;

/// Sends `N` numbered datagrams from `a` to `b` and from `b` to `a`, 2 ms apart, and returns what
/// each side received: (sequence number, source, time from its sending to its arrival).
fn exchange(a: &UdpSocket, b: &UdpSocket) -> [Vec<(u32, SocketAddr, Duration)>; 2] {
    let start = Instant::now();
    std::thread::scope(|s| {
        for (from, to) in [(a, b), (b, a)] {
            s.spawn(move || {
                // b listens on 0.0.0.0: it is reached at 127.0.0.3.
                let mut dest = to.local_addr().unwrap();
                if dest.ip().is_unspecified() {
                    dest.set_ip(Ipv4Addr::new(127, 0, 0, 3).into());
                }
                for i in 0..N {
                    let sent = start.elapsed().as_micros() as u64;
                    let mut msg = i.to_be_bytes().to_vec();
                    msg.extend_from_slice(&sent.to_be_bytes());
                    from.send_to(&msg, dest).unwrap();
                    std::thread::sleep(Duration::from_millis(2));
                }
            });
        }
        let receive = move |sock: &UdpSocket| {
            sock.set_read_timeout(Some(Duration::from_millis(800)))
                .unwrap();
            let mut got = Vec::new();
            let mut buf = [0u8; 64];
            while let Ok((n, from)) = sock.recv_from(&mut buf) {
                assert_eq!(n, 12);
                let seq = u32::from_be_bytes(buf[..4].try_into().unwrap());
                let sent = u64::from_be_bytes(buf[4..12].try_into().unwrap());
                let now = start.elapsed().as_micros() as u64;
                got.push((seq, from, Duration::from_micros(now.saturating_sub(sent))));
            }
            got
        };
        let at_b = s.spawn(move || receive(b));
        let at_a = receive(a);
        [at_b.join().unwrap(), at_a]
    })
}

#[test]
fn the_hop_impairs_both_directions_and_keeps_sources() {
    let Some(net) = TestNet::builder().public_host("bench").build() else {
        return;
    };
    let bind = |ip: [u8; 4]| {
        net.run("bench", || {
            UdpSocket::bind(SocketAddr::from((Ipv4Addr::from(ip), 0))).unwrap()
        })
    };
    let (a, b) = (bind([127, 0, 0, 2]), bind([0, 0, 0, 0]));
    let hop = ImpairedLoopback::start(
        &net,
        "bench",
        &[Ipv4Addr::new(127, 0, 0, 2), Ipv4Addr::new(127, 0, 0, 3)],
        // The kernel's ephemeral ports; parked below them.
        32_768..=60_999,
        1024,
        Impairment::CLEAN,
    );

    // Clean: everything arrives once, in order, from the sender's own address (b's replies come
    // from 127.0.0.1, the source the kernel picks for a socket bound to 0.0.0.0).
    let [at_b, at_a] = exchange(&a, &b);
    let b_source = SocketAddr::from(([127, 0, 0, 1], b.local_addr().unwrap().port()));
    for (got, from) in [(&at_b, a.local_addr().unwrap()), (&at_a, b_source)] {
        let seqs: Vec<u32> = got.iter().map(|g| g.0).collect();
        assert_eq!(seqs, (0..N).collect::<Vec<_>>());
        assert!(got.iter().all(|g| g.1 == from), "{:?}", got[0]);
    }
    let stats = hop.take_stats();
    assert_eq!(stats.seen, u64::from(2 * N), "the hop saw every datagram");
    assert_eq!((stats.forwarded, stats.dropped), (u64::from(2 * N), 0));

    // 10 % loss and 30 ± 20 ms: about a tenth lost, none faster than 10 ms, some reordered.
    hop.set(Impairment {
        loss: 0.10,
        delay: Duration::from_millis(30),
        jitter: Duration::from_millis(20),
        seed: 7,
    });
    let [at_b, at_a] = exchange(&a, &b);
    let stats = hop.take_stats();
    for got in [&at_b, &at_a] {
        let lost = N as usize - got.len();
        assert!((10..=60).contains(&lost), "{lost} of {N} lost");
        assert!(
            got.iter().all(|g| g.2 >= Duration::from_millis(10)),
            "a datagram skipped the delay"
        );
        assert!(
            got.windows(2).any(|w| w[1].0 < w[0].0),
            "jitter reordered nothing"
        );
    }
    assert_eq!(
        stats.dropped,
        u64::from(2 * N) - (at_a.len() + at_b.len()) as u64
    );
    assert!(stats.reordered > 0);
    drop(hop);

    // Without the hop the rules are gone: datagrams flow directly again.
    let [at_b, _] = exchange(&a, &b);
    assert_eq!(at_b.len(), N as usize);
}
