//! The SIP security trapezoid (issue 20, docs/trapezoid.md) as operators run it: two `chaincall
//! sipd serve` processes, each with its own configuration and key file and its own domain
//! identity on one keystore on anvil, peering over a sipd-to-sipd TLS-PSK link; two `chaincall
//! phone` processes, alice at the first domain and bob at the second. Calls both ways cross three
//! TLS-PSK hops with MIKEY-PKE + SRTP end to end, the audio exact; the second sipd marks the caller
//! verified (`verstat=TN-Validation-Passed`) and the callee's phone shows the caller verified.

mod common;

use std::path::Path;
use std::time::Duration;

use chaincall_media::g711::{ulaw_decode, ulaw_encode};
use common::{ALICE, BOB, PEER_DOMAIN, SIP_DOMAIN, listening, ok, phone, two_domains};

/// Every JSON line of `lines`.
fn json_lines(lines: &[String]) -> Vec<serde_json::Value> {
    lines
        .iter()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// A second of speech-like audio, `seed`'s, as the phone in `home` sends it (`audio_in`).
fn give_audio(home: &Path, seed: u64) -> Vec<i16> {
    let audio = chaincall_media::signal::speech_like(1000, seed);
    let wav = home.join("say.wav");
    chaincall_media::wav::write_file(&wav, &audio).unwrap();
    let config = std::fs::read_to_string(home.join("phone.toml")).unwrap();
    std::fs::write(
        home.join("phone.toml"),
        format!("audio_in = \"say.wav\"\n{config}"),
    )
    .unwrap();
    audio
}

/// `audio` as it sounds after PCMU (what the other phone records, sample for sample).
fn through_pcmu(audio: &[i16]) -> Vec<i16> {
    audio.iter().map(|&s| ulaw_decode(ulaw_encode(s))).collect()
}

/// The recording a call report names.
fn recording(report: &serde_json::Value) -> Vec<i16> {
    let path = report["recording"].as_str().expect("a recording");
    chaincall_media::wav::read_file(Path::new(path)).unwrap()
}

/// `caller` (at `caller_home`, sending `caller_audio`) calls `callee` (at `callee_home`, sending
/// `callee_audio`), whose phone listens; checks the call as both phones report it.
fn call_verified(
    (caller, caller_home, caller_audio, caller_domain): (&str, &Path, &[i16], &str),
    (callee, callee_home, callee_audio): (&str, &Path, &[i16]),
) {
    let listener = listening(callee_home, &["--count", "1"], "listening");
    let out = ok(phone(caller_home).args(["call", callee, "--seconds", "1", "--json"]));
    let mine = json_lines(&out.lines().map(str::to_owned).collect::<Vec<_>>());
    let a = mine
        .iter()
        .find(|j| j["direction"] == "outgoing")
        .unwrap_or_else(|| panic!("no call report in {out}"));
    assert_eq!(a["verified_peer"], callee, "{a}");
    assert_eq!(a["key_retrieval_verified"], true, "{a}");
    assert_eq!(
        (&a["key_mode"], &a["codec"]),
        (&"mikey-pke".into(), &"PCMU".into()),
        "{a}"
    );
    assert_eq!(a["srtp_packets_rejected"], 0, "{a}");

    let theirs = json_lines(&listener.finish(Duration::from_secs(30)));
    // Before the call was answered, the callee's phone showed the caller: its whole URI, marked
    // by the second domain's sipd, verified by PASSporT and MIKEY against the chain.
    let incoming = theirs
        .iter()
        .find(|j| j["incoming"] == true)
        .unwrap_or_else(|| panic!("no incoming line in {theirs:?}"));
    let shown = &incoming["caller"];
    assert_eq!(
        shown["uri"],
        format!("sip:{caller};verstat=TN-Validation-Passed@{caller_domain}"),
        "{shown}"
    );
    assert_eq!(shown["verification"], "verified", "{shown}");
    assert_eq!(shown["proof"], "passport+mikey", "{shown}");
    let b = theirs
        .iter()
        .find(|j| j["direction"] == "incoming")
        .unwrap_or_else(|| panic!("no call report in {theirs:?}"));
    assert_eq!(b["verified_peer"], caller, "{b}");
    assert_eq!(b["key_mode"], "mikey-pke", "{b}");
    assert_eq!(b["srtp_packets_rejected"], 0, "{b}");

    // The audio, exact: the callee recorded the caller's whole second; the caller recorded what
    // the callee sent until the hang-up.
    assert_eq!(recording(b), through_pcmu(caller_audio), "caller → callee");
    let back = recording(a);
    assert!(back.len() >= 1600, "at least 200 ms back: {}", back.len());
    assert_eq!(
        back,
        through_pcmu(&callee_audio[..back.len()]),
        "callee → caller"
    );
}

#[test]
fn two_sipd_processes_with_their_own_keys_carry_verified_calls_both_ways() {
    let Some(t) = two_domains() else {
        return;
    };
    let alice = t.net.onboarded_phone("alice", ALICE);
    let bob = t.net.onboarded_phone("bob", BOB);
    t.move_to_peer(&bob, BOB);
    let (alice_audio, bob_audio) = (give_audio(&alice, 11), give_audio(&bob, 12));

    // alice dials bob's number at her own domain; her sipd routes it over its link to bob's.
    call_verified(
        (ALICE, &alice, &alice_audio, SIP_DOMAIN),
        (BOB, &bob, &bob_audio),
    );
    // And back: bob dials alice's number at his domain.
    call_verified(
        (BOB, &bob, &bob_audio, PEER_DOMAIN),
        (ALICE, &alice, &alice_audio),
    );
    drop(t.peer_sipd);
}
