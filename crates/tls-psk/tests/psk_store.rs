//! The server's PSK store under one busy subscriber: however many handshakes one approved peer
//! runs, it keeps only a few PSKs and never pushes other phones' PSKs out.

use std::time::{Duration, Instant};

use chaincall_handshake::Psk;
use chaincall_identity::IdentityName;
use chaincall_tls_psk::{PskEntry, PskStore};

fn phone(i: u32) -> IdentityName {
    IdentityName::parse(&format!("+1555{i:07}")).unwrap()
}

fn entry(peer: &IdentityName, expires_at: Instant) -> PskEntry {
    PskEntry {
        psk: Psk::from_bytes([7; 32]),
        peer: Some(peer.clone()),
        peer_key: None,
        expires_at,
    }
}

#[test]
fn one_peers_20000_handshakes_keep_other_peers_psks() {
    let now = Instant::now();
    let store = PskStore::new(1_000);
    let others: Vec<IdentityName> = (1..=100).map(phone).collect();
    for (i, peer) in others.iter().enumerate() {
        store.insert(
            format!("other-{i}").into_bytes(),
            entry(peer, now + Duration::from_secs(3600)),
        );
    }
    // The busy peer's PSKs all outlive the others' (the old store evicted the soonest to expire).
    let busy = phone(9_999_999);
    for i in 0..20_000 {
        store.insert(
            format!("busy-{i}").into_bytes(),
            entry(&busy, now + Duration::from_secs(7200)),
        );
        assert!(store.len() <= 1_000);
    }
    for (i, peer) in others.iter().enumerate() {
        let got = store.get(format!("other-{i}").as_bytes(), now);
        assert_eq!(
            got.and_then(|e| e.peer).as_ref(),
            Some(peer),
            "{peer} lost its PSK to the busy peer"
        );
    }
    let busy_kept = (0..20_000)
        .filter(|i| store.get(format!("busy-{i}").as_bytes(), now).is_some())
        .count();
    assert!(
        (1..=PskStore::DEFAULT_PER_PEER).contains(&busy_kept),
        "{busy_kept}"
    );
    assert!(
        store.get(b"busy-19999", now).is_some(),
        "the newest PSK stays usable"
    );
    assert_eq!(store.len(), others.len() + busy_kept);
}

#[test]
fn when_full_the_least_recently_used_psk_goes_first() {
    let now = Instant::now();
    let store = PskStore::new(3);
    let later = now + Duration::from_secs(3600);
    // "a" expires first: a store evicting by expiry would drop it; an LRU drops "b".
    store.insert(
        b"a".to_vec(),
        entry(&phone(1), now + Duration::from_secs(60)),
    );
    store.insert(b"b".to_vec(), entry(&phone(2), later));
    store.insert(b"c".to_vec(), entry(&phone(3), later));
    // A TLS connection with "a" makes it recently used; "b" is now the least recently used.
    assert!(store.get(b"a", now).is_some());
    store.insert(b"d".to_vec(), entry(&phone(4), later));
    assert_eq!(store.len(), 3);
    assert!(store.get(b"b", now).is_none());
    for id in [&b"a"[..], b"c", b"d"] {
        assert!(store.get(id, now).is_some());
    }
}
