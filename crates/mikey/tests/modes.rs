//! The three modes end to end, and every way an offer or answer must be refused.

mod common;

use chaincall_identity::{IdentityKey, KeyStatus, StaticDirectory};
use chaincall_mikey::message::{Payload, Timestamp};
use chaincall_mikey::{Initiator, Message, MikeyError, Mode, NtpTime, OfferConfig, SrtpKeys};
use common::{PSK, World};

fn same_keys(a: &[SrtpKeys], b: &[SrtpKeys]) {
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(b) {
        assert_eq!(
            (x.cs_id, x.ssrc, x.roc, x.policy),
            (y.cs_id, y.ssrc, y.roc, y.policy)
        );
        assert_eq!(x.dangerous_master_key(), y.dangerous_master_key());
        assert_eq!(x.dangerous_master_salt(), y.dangerous_master_salt());
        assert_eq!(x.dangerous_master_key().len(), 16);
        assert_eq!(x.dangerous_master_salt().len(), 14);
    }
    // Crypto sessions get distinct keys (cs_id is in the §4.1.3 label).
    assert_ne!(a[0].dangerous_master_key(), a[1].dangerous_master_key());
    assert_eq!((a[0].cs_id, a[0].ssrc), (1, 0x1234_5678));
    assert_eq!((a[1].cs_id, a[1].ssrc, a[1].roc), (2, 0x9abc_def0, 7));
}

/// Re-signs a tampered PKE/DH message with `key`, so that a later check is what refuses it.
fn resign(bytes: &mut [u8], key: &IdentityKey) {
    let split = bytes.len() - 64;
    let sig = key.sign(&bytes[..split]);
    bytes[split..].copy_from_slice(sig.as_bytes());
}

fn range_of(bytes: &[u8], pred: impl Fn(&Payload<'_>) -> bool) -> std::ops::Range<usize> {
    // Re-encode prefixes to find a payload's byte range (the public API has no spans).
    let msg = Message::decode(bytes).unwrap();
    let i = msg.payloads.iter().position(pred).unwrap();
    let mut before = msg.clone();
    before.payloads.truncate(i);
    let mut upto = msg.clone();
    upto.payloads.truncate(i + 1);
    // Encoded lengths differ by the payload; the next-payload byte belongs to the payload itself.
    let a = before.to_vec().unwrap().len();
    let b = upto.to_vec().unwrap().len();
    a..b
}

#[test]
fn pke_round_trip_without_and_with_verification() {
    let w = World::new();
    let mut bob = w.responder();
    let caller = w.pke(false);
    assert_eq!(caller.mode(), Mode::Pke);
    assert!(!caller.expects_answer());
    let acc = bob.handle_offer(caller.offer(), &w.dir, w.now).unwrap();
    assert_eq!(
        (acc.mode, &acc.initiator, acc.csb_id),
        (Mode::Pke, &w.alice, caller.csb_id())
    );
    assert!(acc.answer.is_none());
    same_keys(caller.keys().unwrap(), &acc.keys);

    let mut caller = w.pke(true);
    assert!(caller.expects_answer());
    let acc = bob.handle_offer(caller.offer(), &w.dir, w.now).unwrap();
    let answer = acc.answer.unwrap();
    let keys = caller
        .handle_answer(&answer, &w.dir, w.now, 60)
        .unwrap()
        .to_vec();
    same_keys(&keys, &acc.keys);
    assert!(!caller.expects_answer());
}

#[test]
fn dh_sign_round_trip_is_fresh_each_time() {
    let w = World::new();
    let mut bob = w.responder();
    let mut caller = w.dh();
    assert!(caller.keys().is_none() && caller.expects_answer());
    let acc = bob.handle_offer(caller.offer(), &w.dir, w.now).unwrap();
    let answer = acc.answer.clone().unwrap();
    let keys = caller
        .handle_answer(&answer, &w.dir, w.now, 60)
        .unwrap()
        .to_vec();
    same_keys(&keys, &acc.keys);

    let mut again = w.dh();
    let acc2 = bob.handle_offer(again.offer(), &w.dir, w.now).unwrap();
    let keys2 = again
        .handle_answer(acc2.answer.as_ref().unwrap(), &w.dir, w.now, 60)
        .unwrap();
    assert_ne!(
        keys2[0].dangerous_master_key(),
        keys[0].dangerous_master_key()
    );
    // An answer made for another offer does not fit this one.
    let mut third = w.dh();
    assert!(matches!(
        third.handle_answer(&answer, &w.dir, w.now, 60),
        Err(MikeyError::Unexpected(_))
    ));
}

#[test]
fn psk_round_trip_with_verification() {
    let w = World::new();
    let mut bob = w.responder();
    let mut caller = w.psk(true);
    let acc = bob.handle_offer(caller.offer(), &w.dir, w.now).unwrap();
    assert_eq!(acc.mode, Mode::Psk);
    let keys = caller
        .handle_answer(acc.answer.as_ref().unwrap(), &w.dir, w.now, 60)
        .unwrap()
        .to_vec();
    same_keys(&keys, &acc.keys);
    same_keys(caller.keys().unwrap(), &acc.keys);

    // Another PSK: the MAC fails.
    let mut cfg = w.cfg();
    cfg.request_verification = true;
    let other = Initiator::psk(cfg, b"another pre-shared key, 32 bytes", w.now).unwrap();
    assert_eq!(
        bob.handle_offer(other.offer(), &w.dir, w.now).unwrap_err(),
        MikeyError::BadMac("KEMAC")
    );
    assert!(Initiator::psk(w.cfg(), b"short", w.now).is_err());
}

#[test]
fn wrong_responder_key_or_responder_is_refused() {
    let w = World::new();
    // The caller's directory maps bob to a key that is not bob's: bob cannot open the envelope.
    let mut dir = w.dir.clone();
    dir.approve(w.bob.clone(), IdentityKey::generate().public());
    let caller = Initiator::pke(w.cfg(), &w.alice_key, &dir, w.now).unwrap();
    let mut bob = w.responder();
    assert!(matches!(
        bob.handle_offer(caller.offer(), &w.dir, w.now),
        Err(MikeyError::Envelope(_))
    ));
    // An offer for carol is refused by bob: IDr names someone else.
    let carol: chaincall_identity::IdentityName = "+15551230003".parse().unwrap();
    let mut dir = w.dir.clone();
    dir.approve(carol.clone(), w.bob_key.public());
    let cfg = OfferConfig {
        responder: carol.clone(),
        ..w.cfg()
    };
    let caller = Initiator::pke(cfg, &w.alice_key, &dir, w.now).unwrap();
    assert!(matches!(
        bob.handle_offer(caller.offer(), &dir, w.now),
        Err(MikeyError::WrongPeer { found, .. }) if found == carol
    ));
    // The caller refuses to encrypt to a responder the keystore does not approve.
    let mut dir = w.dir.clone();
    dir.revoke(&w.bob);
    assert!(matches!(
        Initiator::pke(w.cfg(), &w.alice_key, &dir, w.now),
        Err(MikeyError::NotApproved {
            status: KeyStatus::Revoked,
            ..
        })
    ));
    // DH: an answer signed by someone other than the approved responder is refused.
    let mut caller = w.dh();
    let mut mallory = chaincall_mikey::Responder::new(
        chaincall_mikey::ResponderConfig {
            sip_domain: Some("example.org".into()),
            ..chaincall_mikey::ResponderConfig::new(w.bob.clone())
        },
        IdentityKey::generate(),
    );
    let forged = mallory
        .handle_offer(caller.offer(), &w.dir, w.now)
        .unwrap()
        .answer
        .unwrap();
    assert_eq!(
        caller
            .handle_answer(&forged, &w.dir, w.now, 60)
            .unwrap_err(),
        MikeyError::BadSignature(w.bob.clone())
    );
    // Errors are sticky.
    assert!(caller.handle_answer(&forged, &w.dir, w.now, 60).is_err());
}

#[test]
fn tampered_signature_and_signed_fields_are_refused() {
    let w = World::new();
    for caller in [w.pke(false), w.dh()] {
        let offer = caller.offer().to_vec();
        let sig_at = offer.len() - 64;
        for i in [
            0usize,
            5,
            9,
            12,
            20,
            40,
            sig_at - 1,
            sig_at,
            offer.len() - 1,
        ] {
            let mut t = offer.clone();
            t[i] ^= 0x01;
            let mut bob = w.responder();
            let err = bob.handle_offer(&t, &w.dir, w.now).unwrap_err();
            assert!(
                matches!(
                    err,
                    MikeyError::BadSignature(_)
                        | MikeyError::Decode(_)
                        | MikeyError::Unsupported(_)
                        | MikeyError::UnresolvableIdentity { .. }
                        | MikeyError::StaleTimestamp { .. }
                        | MikeyError::Unexpected(_)
                        | MikeyError::WrongPeer { .. }
                        | MikeyError::NotApproved { .. }
                ),
                "flip at {i}: {err:?}"
            );
            assert!(
                bob.replay_cache().is_empty(),
                "a refused offer must not enter the replay cache"
            );
        }
        // The signature itself, flipped: exactly a signature failure.
        let mut t = offer.clone();
        t[sig_at + 10] ^= 0x80;
        assert_eq!(
            w.responder().handle_offer(&t, &w.dir, w.now).unwrap_err(),
            MikeyError::BadSignature(w.alice.clone())
        );
    }
    // DH answer with a flipped byte in the responder's DH value.
    let mut caller = w.dh();
    let answer = w.answer(&caller);
    let mut t = answer.clone();
    let dh = range_of(&answer, |p| matches!(p, Payload::Dh(_)));
    t[dh.start + 10] ^= 1;
    assert_eq!(
        caller.handle_answer(&t, &w.dir, w.now, 60).unwrap_err(),
        MikeyError::BadSignature(w.bob.clone())
    );
}

#[test]
fn tampered_kemac_fails_its_mac() {
    let w = World::new();
    // PKE: tamper the KEMAC, then re-sign as alice so only the KEMAC MAC can notice.
    let caller = w.pke(false);
    let offer = caller.offer().to_vec();
    let kemac = range_of(&offer, |p| matches!(p, Payload::Kemac(_)));
    for at in [kemac.start + 5, kemac.end - 22, kemac.end - 1] {
        let mut t = offer.clone();
        t[at] ^= 0x40;
        resign(&mut t, &w.alice_key);
        let mut bob = w.responder();
        assert_eq!(
            bob.handle_offer(&t, &w.dir, w.now).unwrap_err(),
            MikeyError::BadMac("KEMAC"),
            "at {at}"
        );
    }
    // Untampered but re-signed: accepted (the re-signing itself is sound).
    let mut t = offer.clone();
    resign(&mut t, &w.alice_key);
    w.responder().handle_offer(&t, &w.dir, w.now).unwrap();
    // PSK: any byte of the message is under the MAC.
    let caller = w.psk(false);
    let offer = caller.offer().to_vec();
    for at in [20usize, 30, offer.len() - 30, offer.len() - 1] {
        let mut t = offer.clone();
        t[at] ^= 0x02;
        let err = w.responder().handle_offer(&t, &w.dir, w.now).unwrap_err();
        assert!(
            matches!(
                err,
                MikeyError::BadMac(_)
                    | MikeyError::Decode(_)
                    | MikeyError::UnresolvableIdentity { .. }
                    | MikeyError::Unsupported(_)
                    | MikeyError::StaleTimestamp { .. }
            ),
            "at {at}: {err:?}"
        );
    }
    let mut t = offer.clone();
    let n = t.len();
    t[n - 25] ^= 0x02; // inside the encrypted key data
    assert_eq!(
        w.responder().handle_offer(&t, &w.dir, w.now).unwrap_err(),
        MikeyError::BadMac("KEMAC")
    );
    // A tampered V answer fails at the initiator.
    let mut caller = w.psk(true);
    let mut answer = w.answer(&caller);
    let n = answer.len();
    answer[n - 1] ^= 1;
    assert_eq!(
        caller
            .handle_answer(&answer, &w.dir, w.now, 60)
            .unwrap_err(),
        MikeyError::BadMac("V")
    );
}

#[test]
fn replayed_and_stale_offers_are_refused() {
    let w = World::new();
    let mut bob = w.responder();
    for caller in [w.pke(false), w.dh(), w.psk(false)] {
        bob.handle_offer(caller.offer(), &w.dir, w.now).unwrap();
        let later = NtpTime(w.now.0 + (5u64 << 32));
        assert_eq!(
            bob.handle_offer(caller.offer(), &w.dir, later).unwrap_err(),
            MikeyError::Replay
        );
        // Outside the window the timestamp check refuses it before the cache is consulted.
        let much_later = NtpTime(w.now.0 + (61u64 << 32));
        assert!(matches!(
            bob.handle_offer(caller.offer(), &w.dir, much_later),
            Err(MikeyError::StaleTimestamp { skew_secs: 61, .. })
        ));
    }
    assert_eq!(bob.replay_cache().len(), 3);
    let early = NtpTime(w.now.0 - (120u64 << 32));
    assert!(matches!(
        bob.handle_offer(w.pke(false).offer(), &w.dir, early),
        Err(MikeyError::StaleTimestamp { .. })
    ));
}

#[test]
fn unknown_pending_and_revoked_initiators_are_refused_by_name() {
    let w = World::new();
    let offers = [w.pke(false), w.dh(), w.psk(false)];
    let mut unknown = StaticDirectory::new();
    unknown.approve(w.bob.clone(), w.bob_key.public());
    let mut pending = unknown.clone();
    pending.insert(w.alice.clone(), KeyStatus::Pending, w.alice_key.public());
    let mut revoked = w.dir.clone();
    revoked.revoke(&w.alice);
    for (dir, status) in [
        (&unknown, KeyStatus::Unknown),
        (&pending, KeyStatus::Pending),
        (&revoked, KeyStatus::Revoked),
    ] {
        for caller in &offers {
            let mut bob = w.responder();
            let err = bob.handle_offer(caller.offer(), dir, w.now).unwrap_err();
            assert_eq!(
                err,
                MikeyError::NotApproved {
                    name: w.alice.clone(),
                    status
                }
            );
            assert!(
                err.to_string()
                    .contains(&format!("+15551230001 is {status} in the keystore"))
            );
        }
    }
    // The initiator checks the responder the same way when the answer arrives.
    let mut caller = w.dh();
    let answer = w.answer(&caller);
    let mut dir = w.dir.clone();
    dir.revoke(&w.bob);
    assert_eq!(
        caller.handle_answer(&answer, &dir, w.now, 60).unwrap_err(),
        MikeyError::NotApproved {
            name: w.bob.clone(),
            status: KeyStatus::Revoked
        }
    );
}

#[test]
fn truncation_at_every_offset_is_an_error_naming_an_offset() {
    let w = World::new();
    let mut messages = Vec::new();
    for (caller, verify) in [(w.pke(true), true), (w.dh(), true), (w.psk(true), true)] {
        let acc = w
            .responder()
            .handle_offer(caller.offer(), &w.dir, w.now)
            .unwrap();
        assert!(verify);
        messages.push(caller.offer().to_vec());
        messages.push(acc.answer.unwrap());
    }
    for msg in &messages {
        for len in 0..msg.len() {
            let err = Message::decode(&msg[..len]).unwrap_err();
            assert!(
                err.offset <= len,
                "offset {} beyond input {len}",
                err.offset
            );
            assert!(matches!(
                w.responder().handle_offer(&msg[..len], &w.dir, w.now),
                Err(MikeyError::Decode(_))
            ));
        }
        // One byte more is an error too, at the end.
        let mut longer = msg.clone();
        longer.push(0);
        assert_eq!(Message::decode(&longer).unwrap_err().offset, msg.len());
        // And the whole message re-encodes to itself.
        assert_eq!(&Message::decode(msg).unwrap().to_vec().unwrap(), msg);
    }
}

#[test]
fn offers_carry_what_the_rfc_says() {
    let w = World::new();
    let pke = w.pke(true);
    let m = Message::decode(pke.offer()).unwrap();
    let names: Vec<_> = m.payloads.iter().map(|p| p.name()).collect();
    assert_eq!(
        names,
        ["T", "RAND", "ID", "ID", "SP", "KEMAC", "PKE", "SIGN"]
    );
    assert!(m.header.v);
    assert!(matches!(m.payloads[0], Payload::T(Timestamp::NtpUtc(t)) if t == w.now.0));
    let dh_init = w.dh();
    let dh = Message::decode(dh_init.offer()).unwrap();
    let names: Vec<_> = dh.payloads.iter().map(|p| p.name()).collect();
    assert_eq!(names, ["T", "RAND", "ID", "ID", "SP", "DH", "SIGN"]);
    let psk_init = w.psk(false);
    let psk = Message::decode(psk_init.offer()).unwrap();
    let names: Vec<_> = psk.payloads.iter().map(|p| p.name()).collect();
    assert_eq!(names, ["T", "RAND", "ID", "ID", "SP", "KEMAC"]);
    let mut dh = w.dh();
    let answer = w.answer(&dh);
    let r = Message::decode(&answer).unwrap();
    let names: Vec<_> = r.payloads.iter().map(|p| p.name()).collect();
    assert_eq!(names, ["T", "ID", "ID", "DH", "DH", "SIGN"]);
    dh.handle_answer(&answer, &w.dir, w.now, 60).unwrap();
}

#[test]
fn error_answers_are_signed_and_surface_at_the_initiator() {
    let w = World::new();
    let mut dir = w.dir.clone();
    dir.revoke(&w.alice);
    let mut caller = w.dh();
    let bob = w.responder();
    let mut bob2 = w.responder();
    let err = bob2.handle_offer(caller.offer(), &dir, w.now).unwrap_err();
    let e = bob.error_answer(caller.offer(), &err, w.now).unwrap();
    let m = Message::decode(&e).unwrap();
    assert!(matches!(
        m.payloads[1],
        Payload::Err(chaincall_mikey::message::ErrorCode::InvalidId)
    ));
    assert_eq!(
        caller.handle_answer(&e, &w.dir, w.now, 60).unwrap_err(),
        MikeyError::PeerError(chaincall_mikey::message::ErrorCode::InvalidId)
    );
}

#[test]
fn secrets_stay_out_of_debug() {
    let w = World::new();
    let caller = w.pke(false);
    let keys = caller.keys().unwrap();
    let key_hex = hex::encode(keys[0].dangerous_master_key());
    let salt_hex = hex::encode(keys[0].dangerous_master_salt());
    let shown = format!("{caller:?} {keys:?} {:?}", w.responder());
    assert!(!shown.contains(&key_hex) && !shown.contains(&salt_hex));
    assert!(!shown.contains(&hex::encode(PSK)));
    assert!(shown.contains("redacted"));
}

#[test]
fn verifying_an_offer_before_answering_leaves_it_acceptable() {
    let w = World::new();
    let mut bob = w.responder();
    for (recorded, (caller, mode)) in [(w.pke(false), Mode::Pke), (w.dh(), Mode::DhSign)]
        .into_iter()
        .enumerate()
    {
        // Shown before ringing, possibly twice (a retransmitted INVITE): nothing is recorded.
        for _ in 0..2 {
            let signer = bob
                .verify_offer(caller.offer(), Some(&w.alice), &w.dir, w.now)
                .unwrap();
            assert_eq!((signer.mode, &signer.initiator), (mode, &w.alice));
        }
        assert_eq!(bob.replay_cache().len(), recorded);
        // Answering later keys the call as before, and only then is the replay recorded.
        bob.handle_offer(caller.offer(), &w.dir, w.now).unwrap();
        assert_eq!(
            bob.verify_offer(caller.offer(), None, &w.dir, w.now)
                .map(|s| s.initiator),
            Ok(w.alice.clone())
        );
        assert_eq!(
            bob.handle_offer(caller.offer(), &w.dir, w.now).unwrap_err(),
            MikeyError::Replay
        );
    }
    assert_eq!(bob.replay_cache().len(), 2);
}

#[test]
fn a_proof_for_another_identity_or_a_bad_signature_verifies_nothing() {
    let w = World::new();
    let bob = w.responder();
    let offer = w.pke(false);
    // alice's valid offer does not prove that the call comes from mallory.
    assert_eq!(
        bob.verify_offer(offer.offer(), Some(&w.mallory), &w.dir, w.now)
            .unwrap_err(),
        MikeyError::WrongPeer {
            expected: w.mallory.clone(),
            found: w.alice.clone()
        }
    );
    // Signed by mallory's key but naming alice: her on-chain key refuses it.
    let mut forged = offer.offer().to_vec();
    resign(&mut forged, &w.mallory_key);
    assert_eq!(
        bob.verify_offer(&forged, Some(&w.alice), &w.dir, w.now)
            .unwrap_err(),
        MikeyError::BadSignature(w.alice.clone())
    );
    // PSK proves nothing to a third party, and a phone never sends it.
    assert!(matches!(
        bob.verify_offer(w.psk(false).offer(), None, &w.dir, w.now),
        Err(MikeyError::Unsupported(_))
    ));
    let mut dir = StaticDirectory::new();
    dir.insert(w.alice.clone(), KeyStatus::Revoked, w.alice_key.public());
    assert!(matches!(
        bob.verify_offer(offer.offer(), Some(&w.alice), &dir, w.now),
        Err(MikeyError::NotApproved { .. })
    ));
}

/// With seeded randomness, every mode's offer (CSB ID, RAND, keys, ECIES envelope, DH value) and the
/// DH answer replay byte for byte, and key SRTP alike; another seed gives other bytes.
#[test]
fn a_seeded_exchange_replays_byte_for_byte() {
    use chaincall_identity::Randomness;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    let w = World::new();
    let seeded = |seed: u8| Randomness::seeded(ChaCha20Rng::from_seed([seed; 32]));
    let run = |seed: u8| {
        let mut cfg = w.cfg();
        cfg.randomness = seeded(seed);
        let pke = Initiator::pke(cfg.clone(), &w.alice_key, &w.dir, w.now).unwrap();
        let psk = Initiator::psk(cfg.clone(), PSK, w.now).unwrap();
        let mut dh = Initiator::dh_sign(cfg, &w.alice_key, w.now).unwrap();
        let mut rcfg = chaincall_mikey::ResponderConfig::new(w.bob.clone());
        rcfg.sip_domain = Some("example.org".into());
        rcfg.randomness = seeded(seed.wrapping_add(100));
        let mut bob = chaincall_mikey::Responder::new(rcfg, w.bob_key.clone());
        let accepted = bob.handle_offer(dh.offer(), &w.dir, w.now).unwrap();
        let answer = accepted.answer.unwrap();
        let keys = dh
            .handle_answer(&answer, &w.dir, w.now, 60)
            .unwrap()
            .to_vec();
        assert_eq!(
            keys[0].dangerous_master_key(),
            accepted.keys[0].dangerous_master_key()
        );
        let pke_keys = pke.keys().unwrap()[0].dangerous_master_key().to_vec();
        (
            [
                pke.offer().to_vec(),
                psk.offer().to_vec(),
                dh.offer().to_vec(),
                answer,
            ],
            keys[0].dangerous_master_key().to_vec(),
            pke_keys,
        )
    };
    let (offers, dh_key, pke_key) = run(1);
    let (offers2, dh_key2, pke_key2) = run(1);
    assert_eq!(offers, offers2, "same seed, same bytes");
    assert_eq!((dh_key, pke_key), (dh_key2, pke_key2));
    let (offers3, _, _) = run(2);
    for (a, b) in offers.iter().zip(&offers3) {
        assert_ne!(a, b, "another seed, other bytes");
    }
}
