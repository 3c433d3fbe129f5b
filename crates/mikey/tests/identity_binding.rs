//! Who a key is shared with: every mode binds the initiator's and the responder's identities into
//! what authenticates the key, so that no approved subscriber can pass someone else's key off as
//! her own (unknown key share, issue 13 item 2) or claim another's identity with a shared key.

mod common;

use chaincall_identity::IdentityKey;
use chaincall_mikey::message::{Id, IdType, Payload};
use chaincall_mikey::{Message, MikeyError, Mode, OfferConfig, Responder, ResponderConfig};
use common::{PSK, World};

/// Signs `bytes` in place as the last 64 bytes (the SIGN payload is last).
fn resign(bytes: &mut [u8], key: &IdentityKey) {
    let split = bytes.len() - 64;
    let sig = key.sign(&bytes[..split]);
    bytes[split..].copy_from_slice(sig.as_bytes());
}

/// `offer` with its first ID payload (IDi) replaced by `uri`, re-encoded (signature left stale).
fn with_idi(offer: &[u8], uri: &str) -> Vec<u8> {
    let mut msg = Message::decode(offer).unwrap();
    let at = msg
        .payloads
        .iter()
        .position(|p| matches!(p, Payload::Id(_)))
        .unwrap();
    msg.payloads[at] = Payload::Id(Id {
        id_type: IdType::Uri,
        data: uri.as_bytes(),
    });
    msg.to_vec().unwrap()
}

/// `offer` without its second ID payload (IDr), re-encoded (signature left stale).
fn without_idr(offer: &[u8]) -> Vec<u8> {
    let mut msg = Message::decode(offer).unwrap();
    let ids: Vec<usize> = (0..msg.payloads.len())
        .filter(|&i| matches!(msg.payloads[i], Payload::Id(_)))
        .collect();
    msg.payloads.remove(ids[1]);
    msg.to_vec().unwrap()
}

fn mallory_uri() -> &'static str {
    "sip:+15551230666@example.org"
}

/// The attack of issue 13 item 2. Mallory, an approved subscriber, sees Alice's PKE offer to Bob
/// (it travels in the INVITE's SDP through every proxy). She keeps HDR, T, RAND, SP, KEMAC and
/// PKE, writes her own URI as IDi and signs the result with her own on-chain key. Before the fix
/// Bob's phone accepted it, showing "verified: +15551230666" while keying SRTP with the TGK
/// Alice chose: Alice talks, Bob believes he hears Mallory. Now the envelope key is bound to IDi,
/// IDr, the CSB ID and RAND, so the envelope does not open under Mallory's IDi.
#[test]
fn mallory_cannot_pass_alices_pke_offer_off_as_her_own() {
    let w = World::new();
    for verify in [false, true] {
        let alice = w.pke(verify);
        let mut forged = with_idi(alice.offer(), mallory_uri());
        resign(&mut forged, &w.mallory_key);
        let mut bob = w.responder();
        let result = bob.handle_offer(&forged, &w.dir, w.now);
        assert!(
            result.is_err(),
            "Bob accepted Alice's keys as Mallory's: {:?}",
            result.map(|a| a.initiator)
        );
        assert!(matches!(result, Err(MikeyError::Envelope(_))));
        assert!(bob.replay_cache().is_empty());
        // The genuine offer still works, and names Alice.
        let acc = bob.handle_offer(alice.offer(), &w.dir, w.now).unwrap();
        assert_eq!(acc.initiator, w.alice);
    }
    // Mallory's own offers are of course accepted, as hers.
    let mut cfg = OfferConfig::new(w.mallory.clone(), w.bob.clone());
    cfg.sip_domain = Some("example.org".into());
    let own = chaincall_mikey::Initiator::pke(cfg, &w.mallory_key, &w.dir, w.now).unwrap();
    let acc = w
        .responder()
        .handle_offer(own.offer(), &w.dir, w.now)
        .unwrap();
    assert_eq!((acc.mode, acc.initiator), (Mode::Pke, w.mallory.clone()));
}

/// The same re-wrap in DH-SIGN: Bob answers Mallory (her signature is valid and DHi is just a
/// value), but the key needs Alice's ephemeral secret, which Mallory lacks; and Alice refuses Bob's
/// answer to the re-wrapped offer, because Bob's signature names Mallory as the initiator.
#[test]
fn a_rewrapped_dh_offer_yields_no_key_anyone_misattributes() {
    let w = World::new();
    let mut alice = w.dh();
    let mut forged = with_idi(alice.offer(), mallory_uri());
    resign(&mut forged, &w.mallory_key);
    let acc = w.responder().handle_offer(&forged, &w.dir, w.now).unwrap();
    assert_eq!(acc.initiator, w.mallory);
    let answer = acc.answer.unwrap();
    assert_eq!(
        alice.handle_answer(&answer, &w.dir, w.now, 60).unwrap_err(),
        MikeyError::Unexpected("DH answer names another initiator")
    );
}

/// An offer must name its responder (IDr), and the responder must be us. RFC 3830 lets IDr be
/// omitted; then a signed DH-SIGN or PKE offer that Alice meant for Carol could be played to Bob
/// as a "verified" call from Alice that she never placed to him.
#[test]
fn offers_without_idr_are_refused() {
    let w = World::new();
    for alice in [w.pke(true), w.dh()] {
        let mut stripped = without_idr(alice.offer());
        resign(&mut stripped, &w.alice_key);
        assert_eq!(
            w.responder()
                .handle_offer(&stripped, &w.dir, w.now)
                .unwrap_err(),
            MikeyError::Unexpected("offer without IDr"),
            "{:?}",
            alice.mode()
        );
    }
}

/// PSK mode: the pre-shared key authenticates whoever holds it, so the responder binds each PSK
/// to the one peer it shares it with. Before the fix one PSK accepted any approved IDi: Alice,
/// who shares a key with Bob, could call Bob as "verified: Mallory".
#[test]
fn a_psk_authenticates_only_the_peer_it_is_shared_with() {
    let w = World::new();
    let mut bob = w.responder();
    // Alice builds a PSK offer naming Mallory as the initiator, MACed with the Alice-Bob key.
    let mut cfg = OfferConfig::new(w.mallory.clone(), w.bob.clone());
    cfg.sip_domain = Some("example.org".into());
    let spoof = chaincall_mikey::Initiator::psk(cfg, PSK, w.now).unwrap();
    assert!(matches!(
        bob.handle_offer(spoof.offer(), &w.dir, w.now),
        Err(MikeyError::Unsupported(_))
    ));
    // The genuine Alice offer is accepted as Alice's.
    let acc = bob
        .handle_offer(w.psk(true).offer(), &w.dir, w.now)
        .unwrap();
    assert_eq!((acc.mode, acc.initiator), (Mode::Psk, w.alice.clone()));
    // A Bob who shares a key only with Mallory refuses Alice's PSK offers outright.
    let mut cfg = ResponderConfig::new(w.bob.clone());
    cfg.sip_domain = Some("example.org".into());
    let mut bob_with_mallory = Responder::new(cfg, w.bob_key.clone());
    bob_with_mallory
        .set_psk(w.mallory.clone(), b"mallory and bob share this key!!")
        .unwrap();
    assert!(matches!(
        bob_with_mallory.handle_offer(w.psk(false).offer(), &w.dir, w.now),
        Err(MikeyError::Unsupported(_))
    ));
}
