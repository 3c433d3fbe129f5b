//! Signing and verification of chaincall PASSporTs: the round trip and every refusal, each with
//! the RFC 8224 status a verifier answers.

mod common;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chaincall_passport::*;
use common::*;

fn status_of(result: Result<Verified, PassportError>) -> (u16, PassportError) {
    let err = result.expect_err("accepted");
    (err.status().code, err)
}

#[test]
fn round_trip_verifies_and_reads_back() {
    let value = signed(NOW);
    assert!(value.contains(";info=<chaincall:keystore:31337:0x5f5f"));
    assert!(value.ends_with(":tel:+15551230001>;alg=ES256"));
    assert!(!value.contains("ppt"), "base PASSporT: no ppt");
    let header = IdentityHeader::parse(&value).unwrap();
    assert_eq!(header.to_string(), value);
    assert_eq!(header.locator(), &locator());
    assert_eq!(header.passport().claims(), &claims(NOW));
    let verified = check(&mut verifier(), &value, &alice(), NOW).unwrap();
    assert_eq!(verified.signer, alice_number().into());
    assert_eq!(verified.orig, Party::Tn(alice_number()));
    assert_eq!(verified.origid, claims(NOW).origid);
    assert_eq!(verified.iat, NOW);
    // The JWS header is canonical and names the key inside the signature.
    let (h, _, _, _) = parts(&value);
    assert_eq!(
        String::from_utf8(URL_SAFE_NO_PAD.decode(h).unwrap()).unwrap(),
        our_header()
    );
}

#[test]
fn tampered_payload_header_or_signature_is_438() {
    let value = signed(NOW);
    let (h, p, s, params) = parts(&value);
    let payload = String::from_utf8(URL_SAFE_NO_PAD.decode(&p).unwrap()).unwrap();
    let reencode = |json: String| URL_SAFE_NO_PAD.encode(json);
    let tampered_claims = [
        payload.replace("15551230001", "15551230009"), // orig
        payload.replace("15551230002", "15551230003"), // dest
        payload.replace(&NOW.to_string(), &(NOW + 1).to_string()), // iat
        payload.replace("\"origid\":\"", "\"origid\":\"0"), // origid
    ];
    for json in &tampered_claims {
        let forged = format!("{h}.{}.{s}{params}", reencode(json.clone()));
        let (code, err) = status_of(check(&mut verifier(), &forged, &alice(), NOW));
        assert_eq!((code, err), (438, PassportError::BadSignature), "{json}");
    }
    // One payload character changed in place.
    let mut bytes = p.into_bytes();
    bytes[10] = if bytes[10] == b'A' { b'B' } else { b'A' };
    let flipped = format!("{h}.{}.{s}{params}", String::from_utf8(bytes).unwrap());
    assert_eq!(
        status_of(check(&mut verifier(), &flipped, &alice(), NOW)).0,
        438
    );
    // A header with one more field, re-encoded.
    let header = our_header().replace("}", ",\"x\":1}");
    let forged = format!("{}.{}.{s}{params}", reencode(header), parts(&value).1);
    assert_eq!(
        status_of(check(&mut verifier(), &forged, &alice(), NOW)),
        (438, PassportError::BadSignature)
    );
    // One signature bit flipped.
    let mut sig = URL_SAFE_NO_PAD.decode(&s).unwrap();
    sig[5] ^= 1;
    let forged = format!(
        "{h}.{}.{}{params}",
        parts(&value).1,
        URL_SAFE_NO_PAD.encode(sig)
    );
    assert_eq!(
        status_of(check(&mut verifier(), &forged, &alice(), NOW)),
        (438, PassportError::BadSignature)
    );
}

#[test]
fn wrong_key_is_438() {
    let value = signed(NOW);
    assert_eq!(
        status_of(check(&mut verifier(), &value, &key(2), NOW)),
        (438, PassportError::BadSignature)
    );
}

#[test]
fn stale_and_future_iat_are_403_stale_date() {
    let value = signed(NOW);
    check(&mut verifier(), &value, &alice(), NOW + 60).unwrap();
    check(&mut verifier(), &value, &alice(), NOW - 5).unwrap();
    let (code, err) = status_of(check(&mut verifier(), &value, &alice(), NOW + 61));
    assert_eq!(code, 403);
    assert_eq!(
        err,
        PassportError::Stale {
            iat: NOW,
            now: NOW + 61
        }
    );
    assert_eq!(err.status().reason, "Stale Date");
    let (code, err) = status_of(check(&mut verifier(), &value, &alice(), NOW - 6));
    assert_eq!(
        (code, err),
        (
            403,
            PassportError::FromTheFuture {
                iat: NOW,
                now: NOW - 6
            }
        )
    );
}

#[test]
fn a_replay_is_438_until_freshness_refuses_it_anyway() {
    let mut verifier = verifier();
    let value = signed(NOW);
    check(&mut verifier, &value, &alice(), NOW).unwrap();
    assert_eq!(
        status_of(check(&mut verifier, &value, &alice(), NOW + 30)),
        (438, PassportError::Replayed)
    );
    // Once out of the window the cache has forgotten it, and freshness is what refuses it.
    assert_eq!(
        status_of(check(&mut verifier, &value, &alice(), NOW + 61)).0,
        403
    );
    // Another call (another origid) from the same caller in the same second is no replay.
    let mut other = claims(NOW);
    other.origid = "00000000-0000-4000-8000-000000000000".into();
    let second = IdentityHeader::sign(&alice(), &locator(), &other).unwrap();
    check(&mut verifier, &second.to_string(), &alice(), NOW).unwrap();
}

/// ECDSA malleability: `(r, n - s)` is a valid ES256 signature of the same token, made without
/// the key. Both forms are standard, so either is accepted once — and the twin of an accepted
/// token is a replay, in either order.
#[test]
fn the_high_s_twin_of_an_accepted_passport_is_a_replay() {
    let value = signed(NOW);
    let (h, p, s, params) = parts(&value);
    assert!(!is_high_s(&s), "we sign low-S");
    let twin_value = format!("{h}.{p}.{}{params}", twin(&s));
    assert!(is_high_s(&parts(&twin_value).2));

    let mut first = verifier();
    check(&mut first, &value, &alice(), NOW).unwrap();
    assert_eq!(
        status_of(check(&mut first, &twin_value, &alice(), NOW)),
        (438, PassportError::Replayed)
    );

    let mut second = verifier();
    check(&mut second, &twin_value, &alice(), NOW).expect("a standard high-S ES256 signature");
    assert_eq!(
        status_of(check(&mut second, &value, &alice(), NOW)),
        (438, PassportError::Replayed)
    );
    assert_eq!(
        IdentityHeader::parse(&value).unwrap().passport().id(),
        IdentityHeader::parse(&twin_value).unwrap().passport().id()
    );
}

/// Alice's valid token for Bob, checked against a request that names `orig` as its caller,
/// reached `dest` and carried an SDP whose binding is `media`: the refusal.
fn refusal(orig: &Party, dest: &Party, media: &MediaBinding) -> PassportError {
    let header = IdentityHeader::parse(&signed(NOW)).unwrap();
    verifier()
        .verify(
            &header,
            &alice().public(),
            &Expected { orig, dest, media },
            NOW,
        )
        .unwrap_err()
}

#[test]
fn wrong_dest_is_438() {
    let carol = Party::Tn("+15551230003".parse().unwrap());
    let err = refusal(
        &Party::Tn(alice_number()),
        &carol,
        &MediaBinding::from_sdp(SDP),
    );
    assert_eq!(err, PassportError::WrongDest("tn:15551230003".into()));
    assert_eq!(err.status().code, 438);
}

#[test]
fn orig_other_than_the_from_is_438() {
    // Alice's valid token on a request whose From claims Carol: the signature and every claim
    // hold, but it vouches for someone else than the caller the request names.
    let carol = Party::Tn("+15551230003".parse().unwrap());
    let err = refusal(&carol, &bob(), &MediaBinding::from_sdp(SDP));
    assert!(matches!(err, PassportError::WrongOrig { .. }), "{err:?}");
    assert_eq!(err.status().code, 438);
}

#[test]
fn wrong_media_binding_is_438() {
    // The SDP arrived with another MIKEY message than the one the caller signed for.
    let swapped = MediaBinding::from_sdp(&SDP.replace("AQAFgAAA", "AQAFgBBB"));
    let err = refusal(&Party::Tn(alice_number()), &bob(), &swapped);
    assert_eq!(
        (err.status().code, err),
        (438, PassportError::MediaMismatch)
    );
}

#[test]
fn malformed_base64_json_and_signature_are_438() {
    let value = signed(NOW);
    let (h, p, s, params) = parts(&value);
    let b64 = |json: &str| URL_SAFE_NO_PAD.encode(json);
    let cases = [
        format!("{h}.{p}!.{s}{params}"),                   // not base64url
        format!("{h}.{p}=.{s}{params}"),                   // padding
        format!("{h}.{}.{s}{params}", b64("not json")),    // payload JSON
        format!("{}.{p}.{s}{params}", b64("{\"alg\":")),   // header JSON
        format!("{h}.{p}.{}{params}", &s[..s.len() - 2]),  // 63-byte signature
        format!("{h}.{p}{params}"),                        // two parts
        format!("{h}.{p}.{s}.{s}{params}"),                // four parts
        format!("{h}..{s}{params}"),                       // compact form
        format!(";info=<{}>", locator()),                  // no token
        format!("{h}.{p}.{s};;alg=ES256"),                 // empty parameter
        format!("{h}.{p}.{s};info=chaincall:x;alg=ES256"), // info without <>
        format!("{value};info=<{}>", locator()),           // info twice
    ];
    for case in &cases {
        let err = IdentityHeader::parse(case).expect_err(case);
        assert_eq!(err.status().code, 438, "{case}: {err}");
    }
    assert_eq!(
        IdentityHeader::parse(&format!("{h}..{s}{params}")),
        Err(PassportError::CompactForm)
    );
}

#[test]
fn missing_claims_are_438() {
    let payload = claims(NOW).to_canonical_json().unwrap();
    let value: serde_json::Value = serde_json::from_str(&payload).unwrap();
    for claim in ["ccmk", "dest", "iat", "orig", "origid"] {
        let mut without = value.clone();
        without.as_object_mut().unwrap().remove(claim);
        let jws = sign_raw(&alice(), &our_header(), &without.to_string());
        let err = IdentityHeader::parse(&with_info(&jws)).unwrap_err();
        assert_eq!(err, PassportError::MissingClaim(claim));
        assert_eq!(err.status().code, 438);
    }
}

#[test]
fn oversized_header_is_438() {
    let value = signed(NOW);
    let padded = format!("{value};{}", "x=y;".repeat(MAX_IDENTITY_LEN / 4));
    let err = IdentityHeader::parse(&padded).unwrap_err();
    assert!(matches!(err, PassportError::TooLarge { .. }), "{err}");
    assert_eq!(err.status().code, 438);
    // Signing refuses to make one, too.
    let mut big = claims(NOW);
    big.dest.uri = (0..15)
        .map(|i| format!("sip:{}{i}@example.org", "b".repeat(200)))
        .collect();
    assert!(matches!(
        IdentityHeader::sign(&alice(), &locator(), &big),
        Err(PassportError::TooLarge { .. })
    ));
}

#[test]
fn unknown_info_forms_are_436() {
    let value = signed(NOW);
    let jws = value.split(';').next().unwrap();
    for info in [
        "https://cert.example.org/shaken.pem",
        "http://127.0.0.1/cert.pem",
        "urn:chaincall:keystore:31337",
        "chaincall:wallet:31337",
        "sip:alice@example.org",
    ] {
        let err = IdentityHeader::parse(&format!("{jws};info=<{info}>;alg=ES256")).unwrap_err();
        assert!(
            matches!(err, PassportError::UnknownInfo(_)),
            "{info}: {err}"
        );
        assert_eq!(err.status(), BAD_IDENTITY_INFO);
    }
    let err = IdentityHeader::parse(jws).unwrap_err();
    assert_eq!((err.status().code, err), (436, PassportError::MissingInfo));
}

#[test]
fn a_key_in_another_keystore_or_chain_is_436() {
    let other = KeyLocator::new(1, KEYSTORE, alice_number().into());
    let value = IdentityHeader::sign(&alice(), &other, &claims(NOW))
        .unwrap()
        .to_string();
    let err = check(&mut verifier(), &value, &alice(), NOW).unwrap_err();
    assert!(
        matches!(err, PassportError::ForeignKeystore { chain_id: 1, .. }),
        "{err}"
    );
    assert_eq!(err.status().code, 436);
    let other = KeyLocator::new(CHAIN_ID, KeystoreAddress([1; 20]), alice_number().into());
    let value = IdentityHeader::sign(&alice(), &other, &claims(NOW))
        .unwrap()
        .to_string();
    assert_eq!(
        status_of(check(&mut verifier(), &value, &alice(), NOW)).0,
        436
    );
}

#[test]
fn info_and_kid_must_name_the_same_key() {
    let value = signed(NOW);
    let jws = value.split(';').next().unwrap();
    let carol = KeyLocator::new(CHAIN_ID, KEYSTORE, "+15551230003".parse().unwrap());
    let err = IdentityHeader::parse(&format!("{jws};info=<{carol}>;alg=ES256")).unwrap_err();
    assert_eq!(
        (err.status().code, err),
        (438, PassportError::InfoMismatch("kid"))
    );
}

/// A valid signature by Alice's key over a token that claims Bob's number: her key cannot vouch
/// for it (437), and our signer refuses to make such a token.
#[test]
fn a_key_signing_for_another_identity_is_437() {
    let mut claims = claims(NOW);
    claims.orig = Party::Tn("+15551230009".parse().unwrap());
    assert!(matches!(
        IdentityHeader::sign(&alice(), &locator(), &claims),
        Err(PassportError::NotAuthoritative { .. })
    ));
    let jws = sign_raw(
        &alice(),
        &our_header(),
        &claims.to_canonical_json().unwrap(),
    );
    let (code, err) = status_of(check(&mut verifier(), &with_info(&jws), &alice(), NOW));
    assert_eq!(code, 437);
    assert!(
        matches!(err, PassportError::NotAuthoritative { .. }),
        "{err}"
    );
}

#[test]
fn a_domain_key_vouches_for_its_own_sip_uris_only() {
    let domain: chaincall_identity::IdentityName = "sip.example.org".parse().unwrap();
    let server = key(3);
    let locator = KeyLocator::new(CHAIN_ID, KEYSTORE, domain.clone());
    let mut claims = claims(NOW);
    claims.orig = Party::Uri("sip:+15551230001@sip.example.org".into());
    let header = IdentityHeader::sign(&server, &locator, &claims).unwrap();
    let parsed = IdentityHeader::parse(&header.to_string()).unwrap();
    let media = MediaBinding::from_sdp(SDP);
    let verified = verifier()
        .verify(
            &parsed,
            &server.public(),
            &Expected {
                orig: &claims.orig,
                dest: &bob(),
                media: &media,
            },
            NOW,
        )
        .unwrap();
    assert_eq!(verified.signer, domain);
    claims.orig = Party::Uri("sip:+15551230001@evil.example".into());
    assert!(IdentityHeader::sign(&server, &locator, &claims).is_err());
}

#[test]
fn unsupported_ppt_is_428_and_alg_437() {
    let value = signed(NOW);
    for ppt in [";ppt=shaken", ";ppt=\"shaken\"", ";ppt=chaincall"] {
        let err = IdentityHeader::parse(&format!("{value}{ppt}")).unwrap_err();
        assert!(matches!(err, PassportError::UnsupportedPpt(_)), "{err}");
        assert_eq!(err.status(), USE_IDENTITY_HEADER);
    }
    let shaken = our_header().replace("\"typ\"", "\"ppt\":\"shaken\",\"typ\"");
    let jws = sign_raw(&alice(), &shaken, &claims(NOW).to_canonical_json().unwrap());
    assert_eq!(
        IdentityHeader::parse(&with_info(&jws)).unwrap_err(),
        PassportError::UnsupportedPpt("shaken".into())
    );
    let err = IdentityHeader::parse(&value.replace("alg=ES256", "alg=RS256")).unwrap_err();
    assert_eq!(
        (err.status().code, err),
        (437, PassportError::UnsupportedAlgorithm)
    );
    let rs = our_header().replace("ES256", "RS256");
    let jws = sign_raw(&alice(), &rs, &claims(NOW).to_canonical_json().unwrap());
    assert_eq!(
        IdentityHeader::parse(&with_info(&jws)).unwrap_err(),
        PassportError::UnsupportedAlgorithm
    );
    let not_passport = our_header().replace("passport", "JWT");
    let jws = sign_raw(
        &alice(),
        &not_passport,
        &claims(NOW).to_canonical_json().unwrap(),
    );
    assert_eq!(
        IdentityHeader::parse(&with_info(&jws)).unwrap_err(),
        PassportError::WrongType
    );
}

#[test]
fn a_missing_header_is_428() {
    let err = require_identity(None).unwrap_err();
    assert_eq!(err.status(), USE_IDENTITY_HEADER);
    assert_eq!(err.status().to_string(), "428 Use Identity Header");
    require_identity(Some(&signed(NOW))).unwrap();
}

/// The statuses and reason phrases of RFC 8224 §6.2.2, in the one mapping function.
#[test]
fn statuses_carry_the_rfc_8224_reason_phrases() {
    let cases = [
        (PassportError::Missing, "428 Use Identity Header"),
        (PassportError::MissingInfo, "436 Bad Identity Info"),
        (
            PassportError::KeyNotFound("tel:+1555".into()),
            "436 Bad Identity Info",
        ),
        (
            PassportError::KeyNotApproved {
                name: "tel:+1555".into(),
                status: "revoked",
            },
            "437 Unsupported Credential",
        ),
        (PassportError::BadSignature, "438 Invalid Identity Header"),
        (PassportError::Stale { iat: 0, now: 61 }, "403 Stale Date"),
        (PassportError::ReplayCacheFull(1), "503 Service Unavailable"),
    ];
    for (err, status) in cases {
        assert_eq!(err.status().to_string(), status, "{err}");
    }
}

#[test]
fn whitespace_and_parameter_case_are_tolerated() {
    let value = signed(NOW);
    let (jws, params) = value.split_once(';').unwrap();
    let spaced = format!(
        " {jws} ; {} ; ALG = ES256 ; foo=bar ",
        params.replace(";alg=ES256", "").replace("info=", "Info= ")
    );
    check(&mut verifier(), &spaced, &alice(), NOW).unwrap();
}

#[test]
fn the_public_key_pem_holds_the_uncompressed_point() {
    use base64::engine::general_purpose::STANDARD;
    let pem = public_key_pem(&alice().public());
    assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----\n"));
    assert!(pem.ends_with("-----END PUBLIC KEY-----\n"));
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = STANDARD.decode(body).unwrap();
    assert_eq!(der.len(), 91);
    assert_eq!(
        &der[26..],
        alice().public().to_uncompressed_bytes().as_slice()
    );
    use p256::pkcs8::DecodePublicKey;
    let parsed = p256::PublicKey::from_public_key_der(&der).unwrap();
    assert_eq!(&parsed, alice().public().as_p256());
}
