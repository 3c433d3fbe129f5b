//! RFC 3830 §5.4 replay protection keyed on the exchange, not on its bytes (issue 13 item 3), and a
//! replay cache that no single signer can fill for everyone (issue 13, "likely": verified here).

mod common;

use chaincall_mikey::{
    Initiator, MikeyError, NtpTime, OfferConfig, Responder, ResponderConfig, Stream,
};
use common::World;
use p256::ecdsa::signature::{RandomizedSigner, Verifier};
use p256::elliptic_curve::PrimeField;
use p256::elliptic_curve::ops::Reduce;
use rand_core::OsRng;

/// The signature twin `(r, n - s)`: ECDSA verifies it wherever `(r, s)` verifies, and anyone can
/// compute it from the message alone, without the key.
fn twin(offer: &[u8]) -> Vec<u8> {
    let split = offer.len() - 64;
    let s_bytes: [u8; 32] = offer[split + 32..].try_into().unwrap();
    let s = <p256::Scalar as Reduce<p256::U256>>::reduce_bytes(&s_bytes.into());
    let neg = (p256::Scalar::ZERO - s).to_repr();
    let mut out = offer.to_vec();
    out[split + 32..].copy_from_slice(&neg);
    out
}

/// A second valid signature by the initiator over the same signed bytes (ECDSA with a fresh random
/// nonce, normalised to low-S): another byte encoding of the very same exchange.
fn second_signature(offer: &[u8], key: &chaincall_identity::IdentityKey) -> Vec<u8> {
    let split = offer.len() - 64;
    let signer = p256::ecdsa::SigningKey::from(key.as_p256());
    let sig: p256::ecdsa::Signature = signer.sign_with_rng(&mut OsRng, &offer[..split]);
    let sig = sig.normalize_s().unwrap_or(sig);
    let mut out = offer.to_vec();
    out[split..].copy_from_slice(&sig.to_bytes());
    assert_ne!(out, offer, "a fresh nonce gives a different signature");
    out
}

/// The malleated twin of an accepted offer is refused, never accepted a second time. Before the
/// fix the cache hashed the whole message, signature included, and the decoder took high-S: the
/// twin was a "new" message and Bob accepted the same PKE master keys (or rang again for DH)
/// inside the window. Both defences now hold on their own: the decoder refuses high-S
/// (`BadSignature`), and the cache keys on (mode, IDi, CSB ID, T, RAND), so even a verifier that
/// took the twin would answer `Replay` (checked by disabling the low-S check in
/// `IdentitySignature::from_slice`: the test then fails on the old cache and passes on the new).
#[test]
fn the_malleated_twin_of_an_accepted_offer_is_refused() {
    let w = World::new();
    let alice_vk = p256::ecdsa::VerifyingKey::from(w.alice_key.public().as_p256());
    for offer in [w.pke(false), w.dh()] {
        let mut bob = w.responder();
        let offer = offer.offer().to_vec();
        bob.handle_offer(&offer, &w.dir, w.now).unwrap();
        let twin = twin(&offer);
        // The twin is a valid plain-ECDSA signature: the attack material is real.
        let split = twin.len() - 64;
        let sig = p256::ecdsa::Signature::from_slice(&twin[split..]).unwrap();
        assert!(alice_vk.verify(&twin[..split], &sig).is_ok());
        let later = NtpTime(w.now.0 + (5u64 << 32));
        let err = bob.handle_offer(&twin, &w.dir, later).unwrap_err();
        assert!(
            err == MikeyError::Replay || err == MikeyError::BadSignature(w.alice.clone()),
            "{err:?}"
        );
        assert_eq!(bob.replay_cache().len(), 1);
    }
}

/// Any other encoding of an accepted exchange that still verifies is a replay: here the same offer
/// signed a second time by Alice (ECDSA nonces are random, so one message has many valid
/// signatures). The old cache, keyed on the whole message, accepted it again.
#[test]
fn another_valid_signature_over_an_accepted_offer_is_a_replay() {
    let w = World::new();
    for offer in [w.pke(false), w.dh()] {
        let mut bob = w.responder();
        let offer = offer.offer().to_vec();
        bob.handle_offer(&offer, &w.dir, w.now).unwrap();
        let again = second_signature(&offer, &w.alice_key);
        assert_eq!(
            bob.handle_offer(&again, &w.dir, w.now).unwrap_err(),
            MikeyError::Replay
        );
    }
}

fn offer_from(
    w: &World,
    who: &chaincall_identity::IdentityName,
    key: &chaincall_identity::IdentityKey,
) -> Vec<u8> {
    let mut cfg = OfferConfig::new(who.clone(), w.bob.clone());
    cfg.sip_domain = Some("example.org".into());
    cfg.streams = vec![Stream::default()];
    Initiator::dh_sign(cfg, key, w.now)
        .unwrap()
        .offer()
        .to_vec()
}

/// The "likely" finding, verified: with one shared cache of 4,096 entries and no per-signer bound,
/// an approved subscriber who sends that many signed offers within the window made the phone
/// refuse every offer, from everyone, with `ReplayCacheFull` (checked on the old code with the
/// same flood). Now each initiator has a quota inside the bound: the flood fills only Mallory's
/// share, and Alice still gets through.
#[test]
fn a_flood_from_one_signer_does_not_lock_out_another() {
    let w = World::new();
    let mut cfg = ResponderConfig::new(w.bob.clone());
    cfg.sip_domain = Some("example.org".into());
    // A small cache keeps the test quick; the default bound and quota scale the same way.
    cfg.replay_capacity = 64;
    let mut bob = Responder::new(cfg, w.bob_key.clone());
    let mut refused = 0;
    for _ in 0..80 {
        match bob.handle_offer(&offer_from(&w, &w.mallory, &w.mallory_key), &w.dir, w.now) {
            Ok(acc) => assert_eq!(acc.initiator, w.mallory),
            Err(e) => {
                assert!(
                    matches!(e, MikeyError::ReplayQuotaFull { ref initiator, .. } if *initiator == w.mallory),
                    "{e:?}"
                );
                refused += 1;
            }
        }
    }
    assert!(refused > 0, "Mallory's flood must hit her bound");
    let acc = bob
        .handle_offer(&offer_from(&w, &w.alice, &w.alice_key), &w.dir, w.now)
        .expect("Alice's offer is accepted despite Mallory's flood");
    assert_eq!(acc.initiator, w.alice);
}
