//! `[identity] verify` driven in simulated time (issue 20 item 2): sipd checks the PASSporT of an
//! initial INVITE from an E.164 number against that number's on-chain key, which the test hands
//! the core as the shell would (a directory entry per [`Need::CallerKey`]), then forwards it
//! marked `verstat=TN-Validation-Passed`/`-Failed` or refuses it with the RFC 8224 status.
//! PASSporTs are real: signed by `chaincall-passport` with a fresh P-256 key, at the core's
//! wall clock.

mod sim;

use std::net::SocketAddr;
use std::time::Duration;

use chaincall_identity::{
    DirectoryEntry, DirectoryError, IdentityKey, IdentityName, KeyStatus, PhoneNumber,
};
use chaincall_passport::{
    Claims, Dest, IdentityHeader, KeyLocator, KeystoreAddress, MediaBinding, Party, new_origid,
};
use chaincall_sip::digest::Challenge;
use chaincall_sip::header::HeaderName;
use chaincall_sip::message::Message;
use chaincall_sipd::config::{TlsPskSettings, VerifyMode};
use chaincall_sipd::core::Need;
use chaincall_sipd::{AuthMode, Config, KeyTrustMode};
use sim::{DOMAIN, Sim, config, headers, peer, subscriber};

const ALICE: &str = "+15551230001";
const BOB: &str = "+15551230002";
const CHAIN_ID: u64 = 31337;
const KEYSTORE: &str = "0x5fbdb2315678afecb367f032d93f642f64180aa3";
/// An SDES offer: its `a=crypto` line is what the PASSporT's `ccmk` binds.
const SDP: &str = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n\
                   m=audio 4000 RTP/SAVP 0\r\n\
                   a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz\r\n";

/// A core verifying in `mode`, sending every call to bob at `peer(2)` (the static route).
fn sim_in(mode: VerifyMode) -> Sim {
    Sim::new(&config_in(mode))
}

fn config_in(mode: VerifyMode) -> Config {
    let mut cfg = config();
    cfg.static_route = Some(peer(2));
    let mut tls = TlsPskSettings::new(
        "sip.example.test".parse().unwrap(),
        "unused.key".into(),
        "http://127.0.0.1:1".into(),
        KEYSTORE.parse().unwrap(),
    );
    tls.chain_id = Some(CHAIN_ID);
    tls.trust = KeyTrustMode::Provider;
    cfg.tls_psk = Some(tls);
    cfg.identity.verify = mode;
    cfg
}

fn number(n: &str) -> PhoneNumber {
    n.parse().unwrap()
}

fn alice_name() -> IdentityName {
    number(ALICE).into()
}

/// alice's Identity header for a call to `dest` with `SDP`, issued at `iat`, signed by `key`.
fn passport(key: &IdentityKey, dest: &str, iat: u64) -> String {
    let keystore = KeystoreAddress::parse(KEYSTORE).unwrap();
    let locator = KeyLocator::new(CHAIN_ID, keystore, alice_name());
    let claims = Claims {
        orig: Party::Tn(number(ALICE)),
        dest: Dest::single(Party::Tn(number(dest))),
        iat,
        origid: new_origid(&mut rand_core::OsRng),
        media: MediaBinding::from_sdp(SDP),
    };
    IdentityHeader::sign(key, &locator, &claims)
        .unwrap()
        .to_string()
}

/// An initial INVITE from `from_user`@DOMAIN at `src` to bob with `SDP`, `Call-ID` `call_id`,
/// CSeq `cseq` and the extra header lines `extra`.
fn invite(from_user: &str, src: SocketAddr, call_id: &str, cseq: u32, extra: &str) -> String {
    format!(
        "INVITE sip:{BOB}@{DOMAIN} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {src};branch=z9hG4bK-{call_id}-{cseq}\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:{from_user}@{DOMAIN}>;tag=f-{call_id}\r\n\
         To: <sip:{BOB}@{DOMAIN}>\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: {cseq} INVITE\r\n\
         Contact: <sip:{ALICE}@{src}>\r\n\
         Content-Type: application/sdp\r\n\
         {extra}Content-Length: {}\r\n\r\n{SDP}",
        SDP.len()
    )
}

/// alice's INVITE carrying `identity` (none: no Identity header).
fn invite_with(call_id: &str, identity: Option<&str>) -> String {
    let extra = identity.map(|v| format!("Identity: {v}\r\n"));
    invite(ALICE, peer(1), call_id, 1, extra.as_deref().unwrap_or(""))
}

/// The look-ups of callers' keys the core asked for since the last take.
fn caller_needs(s: &mut Sim) -> Vec<IdentityName> {
    let (keys, rest): (Vec<Need>, Vec<Need>) = std::mem::take(&mut s.needs)
        .into_iter()
        .partition(|n| matches!(n, Need::CallerKey { .. }));
    s.needs = rest;
    keys.into_iter()
        .map(|n| match n {
            Need::CallerKey { name } => name,
            _ => unreachable!(),
        })
        .collect()
}

/// Answers the (one) look-up of alice's key with `found`.
fn answer_key(s: &mut Sim, found: Result<DirectoryEntry, DirectoryError>) {
    assert_eq!(
        caller_needs(s),
        [alice_name()],
        "one look-up of alice's key"
    );
    let now = s.now;
    s.core.insert_caller_key(&alice_name(), found, now);
    s.drain();
}

/// alice's key, approved on chain.
fn approved(key: &IdentityKey) -> Result<DirectoryEntry, DirectoryError> {
    Ok(DirectoryEntry {
        status: KeyStatus::Approved,
        key: Some(key.public()),
    })
}

/// The From of the one INVITE forwarded to bob.
fn forwarded_from(s: &mut Sim) -> String {
    forwarded(s).0
}

/// The From and the Identity headers of the one INVITE forwarded to bob.
fn forwarded(s: &mut Sim) -> (String, Vec<String>) {
    let fwd = s.one_to(peer(2));
    let m = Message::parse(&fwd).unwrap();
    assert_eq!(m.method().map(|m| m.as_str()), Some("INVITE"));
    (m.from().unwrap().uri.to_owned(), headers(&fwd, "Identity"))
}

/// The one response to alice (after 100 Trying): status and reason.
fn refusal(s: &mut Sim) -> (u16, String) {
    let got: Vec<_> = s
        .take_to(peer(1))
        .into_iter()
        .filter(|b| sim::status(b) != 100)
        .collect();
    assert_eq!(got.len(), 1, "one final answer to alice");
    let text = String::from_utf8_lossy(&got[0]);
    let start = text.lines().next().unwrap_or("");
    let reason = start.splitn(3, ' ').nth(2).unwrap_or("").to_owned();
    (sim::status(&got[0]), reason)
}

fn passed() -> String {
    format!("sip:{ALICE};verstat=TN-Validation-Passed@{DOMAIN}")
}

fn failed() -> String {
    format!("sip:{ALICE};verstat=TN-Validation-Failed@{DOMAIN}")
}

/// A valid PASSporT goes on marked Passed (both modes), after one look-up; with `off` nothing
/// is looked up and the From goes on untouched.
#[test]
fn a_valid_passport_is_forwarded_marked_passed_and_off_leaves_the_call_alone() {
    let alice = IdentityKey::generate();
    for mode in [VerifyMode::Mark, VerifyMode::Enforce] {
        let mut s = sim_in(mode);
        let header = passport(&alice, BOB, s.unix());
        s.deliver(peer(1), &invite_with("valid", Some(&header)));
        assert!(s.take_to(peer(2)).is_empty(), "{mode:?}: waits for the key");
        answer_key(&mut s, approved(&alice));
        let (from, identity) = forwarded(&mut s);
        assert_eq!(from, passed(), "{mode:?}");
        assert_eq!(identity, [header], "the callee's phone verifies it again");
        assert_eq!(s.core.caller_keys_pending(), 0);
        assert!(
            s.metrics
                .render()
                .contains("sipd_identity_checks_total{result=\"passed\"} 1"),
            "{mode:?}"
        );
    }
    let mut s = sim_in(VerifyMode::Off);
    let header = passport(&alice, BOB, s.unix());
    let forged = format!("{ALICE};verstat=TN-Validation-Passed");
    let msg = invite(
        &forged,
        peer(1),
        "off",
        1,
        &format!("Identity: {header}\r\n"),
    );
    s.deliver(peer(1), &msg);
    assert!(caller_needs(&mut s).is_empty(), "off: no look-up");
    assert_eq!(
        forwarded_from(&mut s),
        format!("sip:{forged}@{DOMAIN}"),
        "off: untouched"
    );
}

/// A tampered signature: 438 under `enforce`, Failed under `mark`.
#[test]
fn a_tampered_passport_is_refused_438_or_marked_failed() {
    let alice = IdentityKey::generate();
    for mode in [VerifyMode::Enforce, VerifyMode::Mark] {
        let mut s = sim_in(mode);
        let header = passport(&alice, BOB, s.unix());
        // One character in the middle of the signature changed.
        let sig_start = header.rfind('.').unwrap() + 1;
        let at = sig_start + 20;
        let c = if &header[at..=at] == "A" { "B" } else { "A" };
        let tampered = format!("{}{c}{}", &header[..at], &header[at + 1..]);
        s.deliver(peer(1), &invite_with("tampered", Some(&tampered)));
        answer_key(&mut s, approved(&alice));
        match mode {
            VerifyMode::Enforce => {
                assert_eq!(refusal(&mut s), (438, "Invalid Identity Header".into()));
                assert!(s.take_to(peer(2)).is_empty(), "not forwarded");
            }
            _ => assert_eq!(forwarded_from(&mut s), failed()),
        }
    }
}

/// A number with an approved key and no Identity header: 428 / Failed. Signed by another key
/// (the same claims): 438 / Failed.
#[test]
fn a_missing_or_foreign_signed_passport_of_a_number_with_a_key_is_refused_or_marked() {
    let alice = IdentityKey::generate();
    let mallory = IdentityKey::generate();
    for mode in [VerifyMode::Enforce, VerifyMode::Mark] {
        let mut s = sim_in(mode);
        s.deliver(peer(1), &invite_with("missing", None));
        answer_key(&mut s, approved(&alice));
        match mode {
            VerifyMode::Enforce => {
                assert_eq!(refusal(&mut s), (428, "Use Identity Header".into()))
            }
            _ => assert_eq!(forwarded_from(&mut s), failed()),
        }
        let forged = passport(&mallory, BOB, s.unix());
        s.deliver(peer(1), &invite_with("mallory", Some(&forged)));
        answer_key(&mut s, approved(&alice));
        match mode {
            VerifyMode::Enforce => assert_eq!(refusal(&mut s).0, 438),
            _ => assert_eq!(forwarded_from(&mut s), failed()),
        }
    }
}

/// A number with no approved key on chain (unknown or revoked): nothing to verify, forwarded
/// without a verstat, even the one the caller wrote itself.
#[test]
fn a_number_without_a_key_on_chain_is_forwarded_unmarked() {
    for status in [KeyStatus::Unknown, KeyStatus::Revoked] {
        let mut s = sim_in(VerifyMode::Enforce);
        s.deliver(peer(1), &invite_with("nokey", None));
        answer_key(&mut s, Ok(DirectoryEntry { status, key: None }));
        assert_eq!(
            forwarded_from(&mut s),
            format!("sip:{ALICE}@{DOMAIN}"),
            "{status:?}"
        );
        let forged = format!("{ALICE};verstat=TN-Validation-Passed");
        s.deliver(peer(1), &invite(&forged, peer(1), "self-marked", 1, ""));
        answer_key(&mut s, Ok(DirectoryEntry { status, key: None }));
        assert_eq!(
            forwarded_from(&mut s),
            format!("sip:{ALICE}@{DOMAIN}"),
            "the caller's own verstat is removed"
        );
    }
}

/// A forwarded INVITE's PASSporT replayed under a new Call-ID: 438. One 61 s old: 403 Stale
/// Date. One for another callee: 438.
#[test]
fn replayed_stale_and_misdirected_passports_are_refused() {
    let alice = IdentityKey::generate();
    let mut s = sim_in(VerifyMode::Enforce);
    let header = passport(&alice, BOB, s.unix());
    s.deliver(peer(1), &invite_with("first", Some(&header)));
    answer_key(&mut s, approved(&alice));
    assert_eq!(forwarded_from(&mut s), passed());
    s.take_to(peer(1));

    s.deliver(peer(1), &invite_with("replay", Some(&header)));
    answer_key(&mut s, approved(&alice));
    assert_eq!(refusal(&mut s), (438, "Invalid Identity Header".into()));

    let stale = passport(&alice, BOB, s.unix() - 61);
    s.deliver(peer(1), &invite_with("stale", Some(&stale)));
    answer_key(&mut s, approved(&alice));
    assert_eq!(refusal(&mut s), (403, "Stale Date".into()));

    let carol = passport(&alice, "+15551230003", s.unix());
    s.deliver(peer(1), &invite_with("carol", Some(&carol)));
    answer_key(&mut s, approved(&alice));
    assert_eq!(refusal(&mut s).0, 438);
    assert!(s.take_to(peer(2)).is_empty(), "none of them forwarded");
}

/// The chain cannot be asked (an error, or no answer within the look-up timeout): `enforce`
/// answers 503 with Retry-After, `mark` forwards unmarked.
#[test]
fn a_failed_key_look_up_is_503_or_forwarded_unmarked() {
    let alice = IdentityKey::generate();
    let down = || Err(DirectoryError::Unavailable("node down".into()));
    let mut s = sim_in(VerifyMode::Enforce);
    s.deliver(
        peer(1),
        &invite_with("down", Some(&passport(&alice, BOB, s.unix()))),
    );
    answer_key(&mut s, down());
    let answers = s.take_to(peer(1));
    let last = Message::parse(answers.last().unwrap()).unwrap();
    assert_eq!(last.status(), Some(503));
    assert!(last.header_value(HeaderName::RetryAfter).is_some());

    // No answer at all: the look-up timeout (`[auth] lookup_timeout_ms`) decides.
    let mut s = sim_in(VerifyMode::Enforce);
    s.deliver(
        peer(1),
        &invite_with("slow", Some(&passport(&alice, BOB, s.unix()))),
    );
    assert_eq!(caller_needs(&mut s), [alice_name()]);
    s.advance(Duration::from_secs(2));
    assert_eq!(refusal(&mut s).0, 503);
    assert_eq!(s.core.caller_keys_pending(), 0);

    let mut s = sim_in(VerifyMode::Mark);
    s.deliver(
        peer(1),
        &invite_with("down", Some(&passport(&alice, BOB, s.unix()))),
    );
    answer_key(&mut s, down());
    assert_eq!(forwarded_from(&mut s), format!("sip:{ALICE}@{DOMAIN}"));
}

/// Two calls of the same caller while its key is looked up: one look-up, both answered by it.
/// A CANCEL of one still waiting: 487, and only the other goes on.
#[test]
fn waiting_calls_share_one_look_up_and_a_cancel_ends_one() {
    let alice = IdentityKey::generate();
    let mut s = sim_in(VerifyMode::Enforce);
    let (one, two) = (
        passport(&alice, BOB, s.unix()),
        passport(&alice, BOB, s.unix()),
    );
    s.deliver(peer(1), &invite_with("one", Some(&one)));
    s.deliver(peer(1), &invite_with("two", Some(&two)));
    s.take_to(peer(1));
    let cancel = invite_with("one", Some(&one))
        .replacen("INVITE sip:", "CANCEL sip:", 1)
        .replace("CSeq: 1 INVITE", "CSeq: 1 CANCEL");
    s.deliver(peer(1), &cancel);
    let mut codes: Vec<u16> = s.take_to(peer(1)).iter().map(|b| sim::status(b)).collect();
    codes.sort();
    assert_eq!(codes, [200, 487], "the CANCEL's 200 and the INVITE's 487");
    answer_key(&mut s, approved(&alice));
    let fwd = s.one_to(peer(2));
    assert_eq!(Message::parse(&fwd).unwrap().call_id().ok(), Some("two"));
}

/// Verification runs only on the request that goes on: the INVITE challenged with 407 does not
/// spend its PASSporT, so the retry with credentials carrying the same token is verified.
#[test]
fn a_challenged_invite_does_not_spend_its_passport() {
    let alice = IdentityKey::generate();
    let mut cfg = config_in(VerifyMode::Enforce);
    cfg.auth.mode = AuthMode::Digest;
    let mut s = Sim::new(&cfg);
    let header = passport(&alice, BOB, s.unix());
    let identity = format!("Identity: {header}\r\n");
    s.deliver(peer(1), &invite(ALICE, peer(1), "auth", 1, &identity));
    assert!(caller_needs(&mut s).is_empty(), "no look-up before the 407");
    let challenge = s
        .take_to(peer(1))
        .into_iter()
        .find(|b| sim::status(b) == 407)
        .expect("a 407");
    let m = Message::parse(&challenge).unwrap();
    let ch = Challenge::parse(
        &m.auth_headers(HeaderName::ProxyAuthenticate)
            .next()
            .unwrap(),
    )
    .unwrap();
    let auth = ch.answer(
        "INVITE",
        &format!("sip:{BOB}@{DOMAIN}"),
        ALICE,
        "secret",
        "c0ffee",
        1,
    );
    let retry = invite(
        ALICE,
        peer(1),
        "auth",
        2,
        &format!("{identity}Proxy-Authorization: {auth}\r\n"),
    );
    s.deliver(peer(1), &retry);
    s.answer_lookup(ALICE, Some(subscriber("secret")));
    answer_key(&mut s, approved(&alice));
    assert_eq!(forwarded_from(&mut s), passed());
}
