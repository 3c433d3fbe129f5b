//! Caller identity in the phone core (issue 20 items 1, 2 and 4): every INVITE carries a PASSporT
//! signed by the caller's on-chain key, and the callee checks it before ringing. Simulated time,
//! two cores and the in-test relay of `common/core_net.rs`; the attacks rewrite Alice's INVITE on
//! its way to Bob, as a hostile proxy or a replaying eavesdropper would.

use std::time::Duration;

use chaincall_identity::{IdentityKey, IdentityName};
use chaincall_passport::{
    Claims, Dest, IdentityHeader, KeyLocator, KeystoreAddress, MediaBinding, Party, new_origid,
};
use chaincall_phone::caller::{Proof, Verification};
use chaincall_phone::core::Event;
use chaincall_phone::{KeyMode, PhoneConfig};
use chaincall_sip::message::Message;
use chaincall_sip::{HeaderName, Method};
use rand_chacha::rand_core::SeedableRng as _;

#[path = "common/core_net.rs"]
mod core_net;

use core_net::*;

const CAROL: &str = "+15551230003";

/// Alice and Bob in `mode`; Carol has a key on chain too (a third subscriber whose number an
/// attacker may claim). Bob rings (no auto-answer) so that each test sees his decision.
fn net(mode: KeyMode) -> Net {
    let mut net = Net::new(|cfg: &mut PhoneConfig| {
        cfg.key_mode = mode;
        cfg.auto_answer = false;
    });
    let carol = IdentityKey::generate_from(&mut rand_chacha::ChaCha20Rng::seed_from_u64(3));
    net.keys.insert(name(CAROL), carol);
    net
}

fn name(number: &str) -> IdentityName {
    IdentityName::Phone(number.parse().unwrap())
}

/// Alice's INVITE to Bob as she wrote it, not delivered.
fn alice_invite(net: &mut Net) -> String {
    let bob = net.bob.number.clone();
    let now = net.now;
    net.alice.core.call(&bob, now);
    net.drain(true);
    let invite = std::mem::take(&mut net.alice.wire)
        .into_iter()
        .find(|b| Message::parse(b).unwrap().method() == Some(Method::Invite))
        .expect("Alice sends an INVITE");
    String::from_utf8(invite).unwrap()
}

/// What Bob does with `invite`: the last status he answers it with (180 when he rings) and
/// what he tells his user.
fn bob_receives(net: &mut Net, invite: &str) -> (u16, Option<Verification>) {
    let now = net.now;
    net.bob.core.handle_signalling(invite.as_bytes(), now);
    net.drain(false);
    let status = std::mem::take(&mut net.bob.wire)
        .iter()
        .filter_map(|b| Message::parse(b).ok()?.status())
        .rfind(|s| *s >= 180)
        .expect("Bob answers the INVITE");
    let shown = std::mem::take(&mut net.bob.events)
        .into_iter()
        .find_map(|e| match e {
            Event::Incoming { caller, .. } => Some(caller.verification),
            _ => None,
        });
    (status, shown)
}

fn header_value(invite: &str) -> String {
    let m = Message::parse(invite.as_bytes()).unwrap();
    m.header_value(HeaderName::Identity)
        .expect("an Identity header")
        .to_owned()
}

/// `invite` with its Identity header's value replaced (`None`: removed).
fn with_identity(invite: &str, value: Option<&str>) -> String {
    invite
        .split("\r\n")
        .filter_map(|line| match line.strip_prefix("Identity: ") {
            Some(_) => value.map(|v| format!("Identity: {v}")),
            None => Some(line.to_owned()),
        })
        .collect::<Vec<_>>()
        .join("\r\n")
}

/// A PASSporT made with `key` for `orig` calling Bob about `sdp`, as `signer`'s keystore entry
/// on `keystore`, issued at `iat`: how an attacker with some key (or a stolen token's claims)
/// would forge one.
fn forged(
    key: &IdentityKey,
    signer: &str,
    keystore: KeystoreAddress,
    orig: &str,
    dest: &str,
    sdp: &str,
    iat: u64,
) -> String {
    let locator = KeyLocator::new(CHAIN_ID, keystore, name(signer));
    let claims = Claims {
        orig: Party::Tn(orig.parse().unwrap()),
        dest: Dest::single(Party::Tn(dest.parse().unwrap())),
        iat,
        origid: new_origid(&mut rand_chacha::ChaCha20Rng::seed_from_u64(9)),
        media: MediaBinding::from_sdp(sdp),
    };
    IdentityHeader::sign(key, &locator, &claims)
        .unwrap()
        .to_string()
}

fn sdp_of(invite: &str) -> &str {
    &invite[invite.find("\r\n\r\n").unwrap() + 4..]
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn likely_spoof(shown: &Option<Verification>) -> bool {
    matches!(shown, Some(Verification::LikelySpoof { .. }))
}

#[test]
fn every_invite_carries_alices_passport_for_bob_and_her_keystore_entry() {
    let mut net = net(KeyMode::MikeyPke);
    let invite = alice_invite(&mut net);
    let header = IdentityHeader::parse(&header_value(&invite)).unwrap();
    let claims = header.passport().claims();
    assert_eq!(header.locator().name(), &name(ALICE));
    assert_eq!(header.locator().chain_id(), CHAIN_ID);
    assert_eq!(header.locator().keystore(), KEYSTORE);
    assert_eq!(claims.orig, Party::Tn(ALICE.parse().unwrap()));
    assert!(claims.dest.contains(&Party::Tn(BOB.parse().unwrap())));
    assert_eq!(claims.media, MediaBinding::from_sdp(sdp_of(&invite)));
    let alice_key = net.keys[&name(ALICE)].public();
    header.passport().verify_signature(&alice_key).unwrap();
}

#[test]
fn an_sdes_call_with_a_valid_passport_is_verified_before_ringing() {
    // SDES keys prove nothing about who sends them; the PASSporT does. Without it this call was a
    // likely spoof (a number with a key on chain, no proof).
    let mut net = net(KeyMode::Sdes);
    let invite = alice_invite(&mut net);
    let (status, shown) = bob_receives(&mut net, &invite);
    assert_eq!(status, 180, "Bob rings");
    match shown {
        Some(Verification::Verified {
            identity, proof, ..
        }) => {
            assert_eq!(identity, name(ALICE));
            assert_eq!(proof, Proof::Passport);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_mikey_call_is_verified_by_both_signatures() {
    let mut net = net(KeyMode::MikeyDhSign);
    let invite = alice_invite(&mut net);
    let (status, shown) = bob_receives(&mut net, &invite);
    assert_eq!(status, 180);
    assert!(
        matches!(
            shown,
            Some(Verification::Verified {
                proof: Proof::PassportAndMikey,
                ..
            })
        ),
        "{shown:?}"
    );
}

#[test]
fn an_sdes_call_without_an_identity_header_is_still_a_likely_spoof() {
    let mut net = net(KeyMode::Sdes);
    let invite = with_identity(&alice_invite(&mut net), None);
    let (status, shown) = bob_receives(&mut net, &invite);
    assert_eq!(status, 403);
    assert!(likely_spoof(&shown), "{shown:?}");
}

#[test]
fn a_tampered_signature_is_refused_with_438_even_beside_a_valid_mikey_offer() {
    // The MIKEY signature alone would verify Alice; a broken PASSporT next to it means someone
    // altered the request, so the call is refused with RFC 8224's status.
    let mut net = net(KeyMode::MikeyPke);
    let invite = alice_invite(&mut net);
    let value = header_value(&invite);
    let jws_end = value.find(';').unwrap();
    let flip = jws_end - 3;
    let replacement = if &value[flip..=flip] == "A" { "B" } else { "A" };
    let tampered = format!("{}{}{}", &value[..flip], replacement, &value[flip + 1..]);
    let (status, shown) = bob_receives(&mut net, &with_identity(&invite, Some(&tampered)));
    assert_eq!(status, 438);
    assert!(likely_spoof(&shown), "{shown:?}");
}

#[test]
fn swapped_media_keys_break_the_binding_and_are_refused() {
    // A proxy that replaces the SDES key (to listen in) keeps Alice's valid PASSporT: the
    // ccmk claim no longer matches the SDP Bob received.
    let mut net = net(KeyMode::Sdes);
    let invite = alice_invite(&mut net);
    let at = invite.find("inline:").unwrap() + "inline:".len();
    let replacement = if &invite[at..=at] == "A" { "B" } else { "A" };
    let swapped = format!("{}{}{}", &invite[..at], replacement, &invite[at + 1..]);
    let (status, shown) = bob_receives(&mut net, &swapped);
    assert_eq!(status, 438);
    assert!(
        shown
            .as_ref()
            .and_then(Verification::reason)
            .is_some_and(|r| r.contains("media-key binding")),
        "{shown:?}"
    );
}

#[test]
fn a_replayed_invite_is_refused_the_second_time() {
    let mut net = net(KeyMode::Sdes);
    let invite = alice_invite(&mut net);
    let (status, _) = bob_receives(&mut net, &invite);
    assert_eq!(status, 180);
    // Bob declines; the eavesdropper sends the same INVITE again as a new call.
    let call_id = Message::parse(invite.as_bytes())
        .unwrap()
        .call_id()
        .unwrap()
        .to_owned();
    let now = net.now;
    net.bob.core.answer(&call_id, false, now);
    net.drain(false);
    net.bob.wire.clear();
    net.bob.events.clear();
    let replay = invite.replace(&call_id, "replayed-call@198.51.100.7");
    let (status, shown) = bob_receives(&mut net, &replay);
    assert_eq!(status, 438);
    assert!(
        shown
            .as_ref()
            .and_then(Verification::reason)
            .is_some_and(|r| r.contains("replayed")),
        "{shown:?}"
    );
}

#[test]
fn a_passport_older_than_a_minute_is_refused_with_403_stale_date() {
    let mut net = net(KeyMode::Sdes);
    let invite = alice_invite(&mut net);
    // Held back by an attacker (or a very slow path) for 61 s.
    net.now += Duration::from_secs(61);
    let (status, shown) = bob_receives(&mut net, &invite);
    assert_eq!(status, 403);
    assert!(likely_spoof(&shown), "{shown:?}");
    let (_, fresh) = {
        let mut net = self::net(KeyMode::Sdes);
        let invite = alice_invite(&mut net);
        net.now += Duration::from_secs(59);
        bob_receives(&mut net, &invite)
    };
    assert!(
        matches!(fresh, Some(Verification::Verified { .. })),
        "59 s is fresh: {fresh:?}"
    );
}

#[test]
fn alices_passport_cannot_vouch_for_a_from_claiming_carol() {
    let mut net = net(KeyMode::Sdes);
    let invite = alice_invite(&mut net);
    let claims_carol = invite.replacen(
        &format!("From: <sip:{ALICE}@"),
        &format!("From: <sip:{CAROL}@"),
        1,
    );
    assert_ne!(claims_carol, invite, "the From was rewritten");
    let (status, shown) = bob_receives(&mut net, &claims_carol);
    assert_eq!(status, 438);
    assert!(likely_spoof(&shown), "{shown:?}");
}

#[test]
fn forged_passports_are_refused_with_their_rfc_8224_status() {
    let mallory = IdentityKey::generate_from(&mut rand_chacha::ChaCha20Rng::seed_from_u64(66));
    type Forge = fn(&Net, &IdentityKey, &str, u64) -> String;
    let cases: [(&str, Forge, u16); 4] = [
        (
            "Mallory's key, claiming Alice's entry",
            |_, mallory, sdp, now| forged(mallory, ALICE, KEYSTORE, ALICE, BOB, sdp, now),
            438,
        ),
        (
            "Alice's key, a PASSporT for another callee",
            |net, _, sdp, now| {
                forged(
                    &net.keys[&name(ALICE)],
                    ALICE,
                    KEYSTORE,
                    ALICE,
                    CAROL,
                    sdp,
                    now,
                )
            },
            438,
        ),
        (
            "a keystore Bob does not read",
            |net, _, sdp, now| {
                let other = KeystoreAddress([0x77; 20]);
                forged(&net.keys[&name(ALICE)], ALICE, other, ALICE, BOB, sdp, now)
            },
            436,
        ),
        (
            "Carol's real key vouching for Carol, on a From claiming Alice",
            |net, _, sdp, now| {
                forged(
                    &net.keys[&name(CAROL)],
                    CAROL,
                    KEYSTORE,
                    CAROL,
                    BOB,
                    sdp,
                    now,
                )
            },
            438,
        ),
    ];
    for (what, forge, want) in cases {
        let mut net = net(KeyMode::Sdes);
        let invite = alice_invite(&mut net);
        let value = forge(&net, &mallory, sdp_of(&invite), unix_now());
        let (status, shown) = bob_receives(&mut net, &with_identity(&invite, Some(&value)));
        assert_eq!(status, want, "{what}");
        assert!(likely_spoof(&shown), "{what}: {shown:?}");
    }
}

#[test]
fn hostile_identity_headers_are_refused_and_never_panic() {
    let huge = "a".repeat(5000);
    for value in [
        "",
        "garbage",
        "a.b.c;info=<chaincall:keystore:31337:0x5f5f:tel:+15551230001>",
        "eyJ9.eyJ9.AAAA;info=<https://cert.example/x.pem>",
        huge.as_str(),
        "..;info=<>;alg=ES256;ppt=shaken",
    ] {
        let mut net = net(KeyMode::Sdes);
        let invite = alice_invite(&mut net);
        let (status, shown) = bob_receives(&mut net, &with_identity(&invite, Some(value)));
        assert!(
            [403, 428, 436, 437, 438].contains(&status),
            "{value:.40}: {status}"
        );
        assert!(likely_spoof(&shown), "{value:.40}: {shown:?}");
    }
}

#[test]
fn a_caller_with_no_key_on_chain_is_unverified_whatever_its_identity_header_says() {
    // A number with no keystore entry: no key can check the PASSporT, so it proves nothing and
    // nothing says the caller is someone else.
    let mut net = net(KeyMode::Sdes);
    net.keys.remove(&name(ALICE));
    let invite = alice_invite(&mut net);
    let (status, shown) = bob_receives(&mut net, &invite);
    assert_eq!(
        status, 180,
        "unverified callers ring under the default policy"
    );
    assert!(
        matches!(shown, Some(Verification::Unverified { .. })),
        "{shown:?}"
    );
}
