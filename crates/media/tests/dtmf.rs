//! RFC 4733 DTMF end to end in simulated time: the sender's packets cross a lossy, duplicating,
//! reordering network to the receiver, which must report "123#" once each.

use std::time::{Duration, Instant};

use chaincall_media::dtmf::{DtmfConfig, DtmfPacket, DtmfReceiver, DtmfSender, EventPayload};
use chaincall_media::signal::SplitMix64;

/// Every packet the sender emits for `digits`, at 8 kHz with the RTP clock starting at `ts0`.
fn send(digits: &str, ts0: u32) -> Vec<DtmfPacket> {
    let t0 = Instant::now();
    let mut s = DtmfSender::new(DtmfConfig::new(8000));
    s.queue_digits(digits).unwrap();
    let mut now = t0;
    let mut out = Vec::new();
    while !s.is_idle() {
        let rtp = ts0.wrapping_add(8 * (now - t0).as_millis() as u32);
        while let Some(p) = s.poll(now, rtp) {
            out.push(p);
        }
        now = s.next_due(now).unwrap_or(now + Duration::from_millis(5));
    }
    out
}

fn receive(receiver: &mut DtmfReceiver, packets: &[DtmfPacket]) -> String {
    packets
        .iter()
        .filter_map(|p| {
            receiver
                .handle(p.timestamp, &p.payload.to_bytes())
                .unwrap()
                .and_then(|e| e.digit)
        })
        .collect()
}

#[test]
fn digits_survive_ten_percent_loss_duplicates_and_reordering() {
    let sent = send("123#", u32::MAX - 1000);
    // Four packets per digit: one update, three ends (100 ms tones, 50 ms updates).
    assert_eq!(sent.len(), 16);
    assert_eq!(sent.iter().filter(|p| p.marker).count(), 4);
    assert_eq!(sent.iter().filter(|p| p.payload.end).count(), 12);
    let (mut lost_total, mut markers_lost, mut runs) = (0, 0, 0);
    for seed in 0..200u64 {
        let mut rng = SplitMix64(seed);
        let mut delivered = Vec::new();
        for p in &sent {
            if rng.range(0.0, 1.0) < 0.10 {
                lost_total += 1;
                markers_lost += usize::from(p.marker);
                continue;
            }
            delivered.push(*p);
            if rng.range(0.0, 1.0) < 0.05 {
                delivered.push(*p); // a network duplicate
            }
        }
        // Neighbours swap now and then (reordering within an event or across two).
        for i in 1..delivered.len() {
            if rng.range(0.0, 1.0) < 0.1 {
                delivered.swap(i - 1, i);
            }
        }
        // The model's condition: each event keeps at least one of its packets.
        let survives = sent
            .chunks(4)
            .all(|ev| delivered.iter().any(|d| d.timestamp == ev[0].timestamp));
        if !survives {
            continue;
        }
        runs += 1;
        let got = receive(&mut DtmfReceiver::new(), &delivered);
        assert_eq!(got, "123#", "seed {seed}");
    }
    println!("{runs} runs, {lost_total} packets lost, {markers_lost} of them first packets");
    assert!(runs >= 190, "{runs} runs kept every digit");
    assert!(markers_lost > 10, "the model lost first packets too");
}

#[test]
fn a_repeated_digit_is_two_events_and_garbage_is_an_error() {
    let sent = send("55", 0);
    let mut r = DtmfReceiver::new();
    assert_eq!(receive(&mut r, &sent), "55");
    // The same packets again (a replayed burst) report nothing new.
    assert_eq!(receive(&mut r, &sent), "");
    assert!(r.handle(1, &[1, 2]).is_err());
    // Event 16 (flash) is reported, without a digit.
    let flash = EventPayload {
        event: 16,
        end: true,
        volume: 0,
        duration: 800,
    };
    let e = r.handle(9999, &flash.to_bytes()).unwrap().unwrap();
    assert_eq!((e.event, e.digit), (16, None));
}
