//! Offer/answer between two phones without a network: MIKEY-PKE, MIKEY-DH-SIGN and SDES key both
//! directions so that each side's SRTP decrypts what the other protects; every refusal a user
//! would expect (unknown, pending, revoked keys, a forged caller, tampering, no common codec).

use chaincall_identity::{IdentityKey, IdentityName, KeyStatus, Randomness, StaticDirectory};
use chaincall_media::g711::Codec;
use chaincall_mikey::{NtpTime, Responder, ResponderConfig};
use chaincall_phone::CallError;
use chaincall_phone::negotiation::{IncomingOffer, KeyMode, LocalMedia, NegotiatedMedia, Offer};

#[path = "common/srtp.rs"]
mod srtp;
use srtp::carries;

struct Party {
    name: IdentityName,
    key: IdentityKey,
    media: LocalMedia,
}

fn party(number: &str, port: u16) -> Party {
    Party {
        name: number.parse().unwrap(),
        key: IdentityKey::generate(),
        media: LocalMedia {
            addr: format!("127.0.0.1:{port}").parse().unwrap(),
            codecs: vec![Codec::Pcmu.into(), Codec::Pcma.into()],
            randomness: Randomness::os(),
        },
    }
}

fn now() -> NtpTime {
    NtpTime::from_system_time(std::time::SystemTime::now())
}

fn directory(entries: &[(&Party, KeyStatus)]) -> StaticDirectory {
    let mut d = StaticDirectory::new();
    for (p, status) in entries {
        d.insert(p.name.clone(), *status, p.key.public());
    }
    d
}

fn offer(mode: KeyMode, a: &Party, b: &Party, dir: &StaticDirectory) -> Result<Offer, CallError> {
    match mode {
        KeyMode::Sdes => Ok(Offer::sdes(&b.name, &a.media)),
        _ => Offer::mikey(mode, &a.name, &a.key, &b.name, dir, &a.media, now()),
    }
}

fn responder(b: &Party) -> Responder {
    Responder::new(ResponderConfig::new(b.name.clone()), b.key.clone())
}

fn call(mode: KeyMode) -> (NegotiatedMedia, NegotiatedMedia, String, String) {
    let (a, b) = (party("+15551230001", 4000), party("+15551230002", 5000));
    let dir = directory(&[(&a, KeyStatus::Approved), (&b, KeyStatus::Approved)]);
    let o = offer(mode, &a, &b, &dir).unwrap();
    let offer_sdp = o.sdp().to_owned();
    let incoming = IncomingOffer::parse(offer_sdp.as_bytes()).unwrap();
    assert_eq!(incoming.mode, mode, "the callee sees the mode offered");
    let (answer, callee) = incoming
        .accept(Some(&a.name), &mut responder(&b), &dir, &b.media, now())
        .unwrap();
    let caller = o.handle_answer(answer.as_bytes(), &dir, now()).unwrap();
    (caller, callee, offer_sdp, answer)
}

#[test]
fn every_mode_keys_both_directions() {
    for mode in [KeyMode::MikeyPke, KeyMode::MikeyDhSign, KeyMode::Sdes] {
        let (mut caller, mut callee, offer_sdp, _) = call(mode);
        assert!(
            carries(&mut caller, &mut callee),
            "{mode:?} caller → callee"
        );
        assert!(
            carries(&mut callee, &mut caller),
            "{mode:?} callee → caller"
        );
        assert_eq!(caller.remote.port(), 5000);
        assert_eq!(callee.remote.port(), 4000);
        assert_eq!(caller.codec, Codec::Pcmu.into());
        // Both are chaincall phones: rtcp-mux offered and accepted (RFC 5761).
        assert_eq!(caller.rtcp_remote, caller.remote);
        assert_eq!(callee.rtcp_remote, callee.remote);
        // Each direction has its own master key.
        assert_ne!(
            caller.keys[0].key_and_salt[..],
            caller.keys[1].key_and_salt[..]
        );
        assert_eq!(
            caller.keys[0].key_and_salt[..],
            callee.keys[1].key_and_salt[..]
        );
        match mode {
            KeyMode::Sdes => {
                assert!(caller.verified_peer.is_none() && callee.verified_peer.is_none());
                assert!(offer_sdp.contains("a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:"));
            }
            _ => {
                assert_eq!(
                    caller.verified_peer.as_ref().unwrap().to_string(),
                    "+15551230002"
                );
                assert_eq!(
                    callee.verified_peer.as_ref().unwrap().to_string(),
                    "+15551230001"
                );
                assert!(offer_sdp.contains("a=key-mgmt:mikey "));
                assert!(!offer_sdp.contains("a=crypto"));
                // The SDP a proxy sees carries no SRTP key in any readable form.
                use base64::Engine as _;
                for k in &caller.keys {
                    let b64 = base64::engine::general_purpose::STANDARD.encode(&k.key_and_salt[..]);
                    assert!(!offer_sdp.contains(&b64[..20]));
                }
            }
        }
    }
}

#[test]
fn mikey_refuses_unknown_pending_and_revoked_callers() {
    let (a, b) = (party("+15551230001", 4000), party("+15551230002", 5000));
    let caller_dir = directory(&[(&b, KeyStatus::Approved)]);
    let o = offer(KeyMode::MikeyPke, &a, &b, &caller_dir).unwrap();
    for status in [None, Some(KeyStatus::Pending), Some(KeyStatus::Revoked)] {
        let mut callee_dir = directory(&[(&b, KeyStatus::Approved)]);
        if let Some(s) = status {
            callee_dir.insert(a.name.clone(), s, a.key.public());
        }
        let err = IncomingOffer::parse(o.sdp().as_bytes())
            .unwrap()
            .accept(
                Some(&a.name),
                &mut responder(&b),
                &callee_dir,
                &b.media,
                now(),
            )
            .unwrap_err();
        assert!(matches!(err, CallError::Mikey(_)), "{status:?}: {err}");
    }
}

#[test]
fn caller_cannot_offer_to_a_callee_without_an_approved_key() {
    let (a, b) = (party("+15551230001", 4000), party("+15551230002", 5000));
    for dir in [
        StaticDirectory::new(),
        directory(&[(&b, KeyStatus::Pending)]),
        directory(&[(&b, KeyStatus::Revoked)]),
    ] {
        assert!(offer(KeyMode::MikeyPke, &a, &b, &dir).is_err());
    }
}

#[test]
fn a_caller_claiming_another_number_is_refused() {
    let (a, b, c) = (
        party("+15551230001", 4000),
        party("+15551230002", 5000),
        party("+15551230003", 6000),
    );
    let dir = directory(&[
        (&a, KeyStatus::Approved),
        (&b, KeyStatus::Approved),
        (&c, KeyStatus::Approved),
    ]);
    // Alice signs her MIKEY as herself but the INVITE's From says carol.
    let o = offer(KeyMode::MikeyPke, &a, &b, &dir).unwrap();
    let err = IncomingOffer::parse(o.sdp().as_bytes())
        .unwrap()
        .accept(Some(&c.name), &mut responder(&b), &dir, &b.media, now())
        .unwrap_err();
    assert!(err.to_string().contains("claims to come from"), "{err}");
}

#[test]
fn a_message_signed_by_another_key_is_refused() {
    let (a, b) = (party("+15551230001", 4000), party("+15551230002", 5000));
    let dir = directory(&[(&a, KeyStatus::Approved), (&b, KeyStatus::Approved)]);
    let o = offer(KeyMode::MikeyPke, &a, &b, &dir).unwrap();
    // The chain says alice has another key: her signature no longer verifies.
    let other = directory(&[(&b, KeyStatus::Approved)]);
    let mut other = other;
    other.insert(
        a.name.clone(),
        KeyStatus::Approved,
        IdentityKey::generate().public(),
    );
    assert!(
        IncomingOffer::parse(o.sdp().as_bytes())
            .unwrap()
            .accept(Some(&a.name), &mut responder(&b), &other, &b.media, now())
            .is_err()
    );
}

#[test]
fn tampered_replayed_or_malformed_offers_are_errors() {
    let (a, b) = (party("+15551230001", 4000), party("+15551230002", 5000));
    let dir = directory(&[(&a, KeyStatus::Approved), (&b, KeyStatus::Approved)]);
    let o = offer(KeyMode::MikeyPke, &a, &b, &dir).unwrap();
    let sdp = o.sdp().to_owned();
    let mut r = responder(&b);

    // Flip one base64 character of the MIKEY message.
    let at = sdp.find("a=key-mgmt:mikey ").unwrap() + "a=key-mgmt:mikey ".len() + 40;
    let mut bytes = sdp.clone().into_bytes();
    bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
    // bob answers an offer's bytes as a phone would: parse, then accept from alice.
    let mut answer = |offer: &[u8]| {
        IncomingOffer::parse(offer)
            .and_then(|i| i.accept(Some(&a.name), &mut r, &dir, &b.media, now()))
    };
    assert!(answer(&bytes).is_err());

    // The genuine offer once, then its replay.
    assert!(answer(sdp.as_bytes()).is_ok());
    let replay = answer(sdp.as_bytes());
    // "replay" is MIKEY's part of the error, told by the chain (source()), not CallError's Display.
    let replay = replay.unwrap_err();
    assert!(
        chaincall_io::ErrorChain(&replay)
            .to_string()
            .contains("replay")
    );

    for junk in [
        &b""[..],
        b"v=0\r\n",
        b"\xff\xfe",
        b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nt=0 0\r\n",
    ] {
        let r2 = IncomingOffer::parse(junk)
            .and_then(|i| i.accept(Some(&a.name), &mut responder(&b), &dir, &b.media, now()));
        assert!(r2.is_err(), "{junk:?}");
    }
}

#[test]
fn no_common_codec_is_refused() {
    let (a, mut b) = (party("+15551230001", 4000), party("+15551230002", 5000));
    let dir = directory(&[(&a, KeyStatus::Approved), (&b, KeyStatus::Approved)]);
    let mut a_only = a;
    a_only.media.codecs = vec![Codec::Pcma.into()];
    b.media.codecs = vec![Codec::Pcmu.into()];
    let o = offer(KeyMode::Sdes, &a_only, &b, &dir).unwrap();
    let err = IncomingOffer::parse(o.sdp().as_bytes())
        .unwrap()
        .accept(None, &mut responder(&b), &dir, &b.media, now())
        .unwrap_err();
    assert!(err.to_string().contains("codec"), "{err}");
}

/// What `caller::verify` says of an offer from `a` arriving at `b` under the From `from_uri`,
/// with the claimed number's on-chain entry given by `claimed` (approved in the directory).
fn caller_of(
    offer_from: &Party,
    mode: KeyMode,
    from_uri: &str,
    claimed: Option<&Party>,
    b: &Party,
) -> chaincall_phone::Verification {
    use chaincall_phone::caller::{ClaimLookup, FromClaim, verify};
    let everyone = directory(&[(offer_from, KeyStatus::Approved), (b, KeyStatus::Approved)]);
    let o = offer(mode, offer_from, b, &everyone).unwrap();
    let incoming = IncomingOffer::parse(o.sdp().as_bytes()).unwrap();
    // The phone's snapshot holds only the claimed identity's key: what the From claims.
    let claim_dir = claimed.map(|c| directory(&[(c, KeyStatus::Approved)]));
    let lookup = match &claim_dir {
        Some(d) => ClaimLookup::Approved {
            directory: d,
            proven: true,
            fingerprint: "f".into(),
        },
        None => ClaimLookup::NoKey("not a chaincall subscriber".into()),
    };
    verify(
        &FromClaim::parse(from_uri),
        &incoming,
        &chaincall_phone::caller::PassportCheck::Absent,
        lookup,
        &responder(b),
        now(),
    )
}

#[test]
fn the_caller_is_verified_only_by_a_signature_of_the_number_the_from_claims() {
    use chaincall_phone::Verification;
    let (alice, bob, carol) = (
        party("+15551230001", 4000),
        party("+15551230002", 5000),
        party("+15551230003", 6000),
    );
    let alice_uri = "sip:+15551230001@sip.example.org";
    for mode in [KeyMode::MikeyPke, KeyMode::MikeyDhSign] {
        assert!(matches!(
            caller_of(&alice, mode, alice_uri, Some(&alice), &bob),
            Verification::Verified { identity, lookup_verified: true, .. } if identity == alice.name
        ));
        // carol's own valid offer, From claiming alice: a proof for another identity.
        let v = caller_of(&carol, mode, alice_uri, Some(&alice), &bob);
        let Verification::LikelySpoof { reason } = &v else {
            panic!("{v:?}")
        };
        assert!(
            reason.contains("+15551230003") && reason.contains("+15551230001"),
            "{reason}"
        );
    }
    // SDES claiming a number with an on-chain key proves nothing: a likely spoof.
    assert_eq!(
        caller_of(&carol, KeyMode::Sdes, alice_uri, Some(&alice), &bob).name(),
        "likely_spoof"
    );
    // SDES from a number with no key on chain, or a From that is no number: just unverified.
    let unknown = party("+15551239999", 7000);
    assert_eq!(
        caller_of(
            &unknown,
            KeyMode::Sdes,
            "sip:+15551239999@evil.example",
            None,
            &bob
        )
        .name(),
        "unverified"
    );
    assert_eq!(
        caller_of(
            &carol,
            KeyMode::Sdes,
            "sip:alice@evil.example",
            Some(&alice),
            &bob
        )
        .name(),
        "unverified"
    );
    // The SIP server marked the number as not validated: a likely spoof whatever the offer.
    let marked = "sip:+15551230001;verstat=TN-Validation-Failed@evil.example";
    let v = caller_of(&alice, KeyMode::MikeyPke, marked, Some(&alice), &bob);
    assert!(
        matches!(&v, Verification::LikelySpoof { reason } if reason.contains("TN-Validation-Failed")),
        "{v:?}"
    );
}

#[test]
fn the_unverified_policy_decides_before_ringing() {
    use chaincall_phone::Verification;
    use chaincall_phone::caller::{AcceptUnverified::*, Decision, decide};
    let verified = Verification::Verified {
        identity: "+15551230001".parse().unwrap(),
        proof: chaincall_phone::caller::Proof::Mikey,
        lookup_verified: true,
        fingerprint: String::new(),
    };
    let unverified = Verification::Unverified { reason: "r".into() };
    let spoof = Verification::LikelySpoof { reason: "r".into() };
    for (v, policy, auto, want) in [
        (&verified, None, true, Decision::Answer),
        (&verified, Some(Never), true, Decision::Answer),
        (&verified, None, false, Decision::Ring),
        // The default: ask for unverified callers (even with auto-answer), refuse likely spoofs.
        (&unverified, None, true, Decision::Ring),
        (&spoof, None, true, Decision::Refuse),
        (&spoof, None, false, Decision::Refuse),
        // An explicit policy applies to both.
        (&unverified, Some(Never), true, Decision::Refuse),
        (&spoof, Some(Ask), true, Decision::Ring),
        (&spoof, Some(Always), true, Decision::Answer),
        (&unverified, Some(Always), false, Decision::Ring),
    ] {
        assert_eq!(
            decide(v, policy, auto),
            want,
            "{v:?} {policy:?} auto={auto}"
        );
    }
}

/// With fixed keys and clock and a seeded source, every mode's offer SDP (session ID, SSRC, SDES key,
/// MIKEY message) and the callee's answer replay byte for byte; another seed gives other bytes.
#[test]
fn a_seeded_offer_and_answer_replay_byte_for_byte() {
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    let t = NtpTime::from_unix(1_790_000_000, 0);
    let seeded = |number: &str, port, key: u8, seed: u8| {
        let mut p = party(number, port);
        p.key = IdentityKey::from_secret_bytes(&[key; 32]).unwrap();
        p.media.randomness = Randomness::seeded(ChaCha20Rng::from_seed([seed; 32]));
        p
    };
    for mode in [KeyMode::MikeyPke, KeyMode::MikeyDhSign, KeyMode::Sdes] {
        let run = |seed: u8| {
            let a = seeded("+15551230001", 4000, 1, seed);
            let b = seeded("+15551230002", 5000, 2, seed.wrapping_add(1));
            let dir = directory(&[(&a, KeyStatus::Approved), (&b, KeyStatus::Approved)]);
            let o = match mode {
                KeyMode::Sdes => Offer::sdes(&b.name, &a.media),
                _ => Offer::mikey(mode, &a.name, &a.key, &b.name, &dir, &a.media, t).unwrap(),
            };
            let incoming = IncomingOffer::parse(o.sdp().as_bytes()).unwrap();
            // The MIKEY responder draws its DH answer's ephemeral key from its own source.
            let mut cfg = ResponderConfig::new(b.name.clone());
            cfg.randomness = b.media.randomness.clone();
            let mut bob = Responder::new(cfg, b.key.clone());
            let (answer, _) = incoming
                .accept(Some(&a.name), &mut bob, &dir, &b.media, t)
                .unwrap();
            (o.sdp().to_owned(), answer)
        };
        let first = run(3);
        assert_eq!(first, run(3), "{mode:?}: same seed, same bytes");
        let other = run(4);
        assert_ne!(first.0, other.0, "{mode:?}: another seed, another offer");
        assert_ne!(first.1, other.1, "{mode:?}: another seed, another answer");
    }
}

/// `Debug` of an offer and of the negotiated media (what a `tracing` field or a panic message
/// would print) shows neither the SDES key in the offer's SDP nor either direction's master key.
#[test]
fn debug_output_holds_no_key_material() {
    let (a, b) = (party("+15551230001", 4000), party("+15551230002", 5000));
    let dir = directory(&[(&a, KeyStatus::Approved), (&b, KeyStatus::Approved)]);
    let o = offer(KeyMode::Sdes, &a, &b, &dir).unwrap();
    let inline = o.sdp().split("inline:").nth(1).unwrap();
    let key_b64: String = inline.chars().take_while(|c| !c.is_whitespace()).collect();
    assert!(key_b64.len() >= 40, "{key_b64}");
    let shown = format!("{o:?}");
    assert!(!shown.contains(&key_b64), "{shown}");
    assert!(shown.contains("Sdes"), "{shown}");
    // The callee's view of the same offer.
    let incoming = IncomingOffer::parse(o.sdp().as_bytes()).unwrap();
    let shown = format!("{incoming:?}");
    assert!(!shown.contains(&key_b64), "{shown}");
    assert!(shown.contains("Sdes"), "{shown}");

    for mode in [KeyMode::MikeyPke, KeyMode::MikeyDhSign, KeyMode::Sdes] {
        let (caller, callee, _, _) = call(mode);
        for media in [&caller, &callee] {
            let shown = format!("{media:?}");
            for key in &media.keys {
                let hex: String = key
                    .key_and_salt
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect();
                assert!(!shown.contains(&hex), "{mode:?}: {shown}");
                assert!(
                    !shown.contains(&format!("{:?}", &key.key_and_salt[..4])),
                    "{mode:?}: {shown}"
                );
                assert!(!shown.contains(&key.keylog_line()), "{mode:?}: {shown}");
            }
            assert!(shown.contains("<redacted>"), "{mode:?}: {shown}");
        }
    }
}
