//! The two-domain network (`Domains::Two`, what `chaincall bench setup --domains 2` measures):
//! alice at sip.chaincall.test, bob at peer.chaincall.test, the two sipds linked over TLS-PSK
//! between their on-chain keys. alice's calls to bob cross the link, keyed by MIKEY end to end,
//! and the audio arrives exactly both ways, call after call over the same link.

use std::sync::Arc;
use std::time::Duration;

use chaincall_chain::EmbeddedChain;
use chaincall_devnet::{ALICE, BOB, Domains, Network, NetworkOptions, PEER_DOMAIN, operator_key};
use chaincall_identity::IdentityName;
use chaincall_phone::negotiation::KeyMode;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alice_calls_bob_at_the_peer_domain_verified_with_exact_audio() {
    let dir = tempfile::tempdir().unwrap();
    let mut net = Network::start_domains(
        Arc::new(EmbeddedChain::default()),
        operator_key(None).unwrap(),
        NetworkOptions {
            dir: dir.path().to_path_buf(),
            mode: KeyMode::MikeyPke,
            keylog: None,
            tls_keylog: None,
            audio_a: chaincall_media::signal::speech_like(200, 1),
            audio_b: chaincall_media::signal::speech_like(200, 2),
            wideband: false,
            keep_playout: false,
            adaptive_loss_hint: true,
            mikey_replay_quota: chaincall_phone::DEFAULT_MIKEY_REPLAY_QUOTA,
            placement: None,
        },
        Domains::Two,
    )
    .await
    .unwrap();
    let steps: Vec<&str> = net.timeline.steps.iter().map(|s| s.0.as_str()).collect();
    assert!(steps.contains(&"sipd-to-sipd links up"), "{steps:?}");
    assert!(
        steps.contains(&format!("{BOB}: REGISTER (TLS-PSK identity) at {PEER_DOMAIN}").as_str()),
        "{steps:?}"
    );
    for _ in 0..2 {
        // A bound on a broken test, not a timing: the audio plays out within it.
        let (a, b) = net.call(Duration::from_millis(400)).await.unwrap();
        assert_eq!(a.verified_peer, Some(IdentityName::parse(BOB).unwrap()));
        assert_eq!(b.verified_peer, Some(IdentityName::parse(ALICE).unwrap()));
        assert!(!a.sent_payload.is_empty());
        assert_eq!(b.received_payload, a.sent_payload);
        assert_eq!(a.received_payload, b.sent_payload);
        assert_eq!(a.stats.rtp_rejected + b.stats.rtp_rejected, 0);
    }
    net.stop().await;
}
