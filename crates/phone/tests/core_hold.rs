//! Call control in simulated time over the core harness (`common/core_net.rs`): hold and resume
//! both ways (RFC 3264 §8.4 re-INVITEs with the same keys), mute (local only), and re-INVITEs
//! that would downgrade the call's media security, each refused with 488 while the call goes on;
//! the ZRTP SAS confirmed or rejected by the user.

use chaincall_media::AudioGate;
use chaincall_phone::core::{CallControl, EndReason, Event};
use chaincall_phone::{KeyMode, PhoneError};
use chaincall_sip::message::Message;

#[path = "common/core_net.rs"]
mod core_net;

use core_net::*;

/// A call from Alice to Bob keyed with `mode`, both sides' media started; returns its Call-ID.
fn up(mode: KeyMode) -> (Net, String) {
    let mut net = Net::new(|cfg| cfg.key_mode = mode);
    let id = net.alice_calls_bob();
    assert!(
        net.alice.started.contains_key(&id),
        "{:?}",
        net.alice.events
    );
    assert!(net.bob.started.contains_key(&id), "{:?}", net.bob.events);
    take_events(&mut net.alice);
    take_events(&mut net.bob);
    (net, id)
}

/// The bodies of the INVITEs the relay carried (the first is the call's, the rest re-INVITEs).
fn invite_bodies(net: &Net) -> Vec<String> {
    net.seen("INVITE")
        .iter()
        .map(|b| String::from_utf8(Message::parse(b).unwrap().body().to_vec()).unwrap())
        .collect()
}

/// The bodies of the 2xx answers to INVITEs.
fn ok_bodies(net: &Net) -> Vec<String> {
    net.seen("200")
        .iter()
        .filter_map(|b| {
            let m = Message::parse(b).unwrap();
            (m.cseq().unwrap().method.as_str() == "INVITE")
                .then(|| String::from_utf8(m.body().to_vec()).unwrap())
        })
        .collect()
}

/// The SDP lines that key a call: everything but the origin and the direction must stay.
fn keying(sdp: &str) -> Vec<&str> {
    sdp.lines()
        .filter(|l| {
            !l.starts_with("o=")
                && !["a=sendrecv", "a=sendonly", "a=recvonly", "a=inactive"].contains(l)
        })
        .collect()
}

fn held(events: &[Event], id: &str) -> Vec<(bool, bool)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Control(CallControl::Held { call_id, by_peer }) if call_id == id => {
                Some((true, *by_peer))
            }
            Event::Control(CallControl::Resumed { call_id, by_peer }) if call_id == id => {
                Some((false, *by_peer))
            }
            _ => None,
        })
        .collect()
}

fn last_gate(side: &Side, id: &str) -> AudioGate {
    side.gates
        .iter()
        .rev()
        .find(|(c, _)| c == id)
        .map_or(AudioGate::Open, |(_, g)| *g)
}

#[test]
fn hold_and_resume_both_ways_keep_the_keys_and_stop_the_audio() {
    for alice_holds in [true, false] {
        let (mut net, id) = up(KeyMode::MikeyPke);
        let (holder, peer) = (alice_holds, !alice_holds);
        let now = net.now;
        net.side(holder).core.hold(&id, now).unwrap();
        net.drain(holder);
        assert_eq!(
            last_gate(net.side(holder), &id),
            AudioGate::Closed,
            "the holder's audio stops at once"
        );
        net.settle();
        let invites = invite_bodies(&net);
        assert_eq!(invites.len(), 2, "one re-INVITE");
        assert!(invites[1].contains("a=sendonly\r\n"), "{}", invites[1]);
        let answers = ok_bodies(&net);
        assert_eq!(answers.len(), 2);
        assert!(answers[1].contains("a=recvonly\r\n"), "{}", answers[1]);
        // Same keys, codecs and addresses; only the version and the direction moved.
        let (first_offer, first_answer) = if alice_holds {
            (&invites[0], &answers[0])
        } else {
            (&answers[0], &invites[0])
        };
        assert_eq!(keying(&invites[1]), keying(first_offer));
        assert_eq!(keying(&answers[1]), keying(first_answer));
        assert_eq!(held(&take_events(net.side(holder)), &id), [(true, false)]);
        assert_eq!(held(&take_events(net.side(peer)), &id), [(true, true)]);
        assert_eq!(last_gate(net.side(peer), &id), AudioGate::Closed);
        assert!(net.alice.stopped.is_empty() && net.bob.stopped.is_empty());

        net.side(holder).core.resume(&id, now).unwrap();
        net.settle();
        let invites = invite_bodies(&net);
        assert!(invites[2].contains("a=sendrecv\r\n"), "{}", invites[2]);
        assert!(ok_bodies(&net)[2].contains("a=sendrecv\r\n"));
        assert_eq!(keying(&invites[2]), keying(&invites[1]));
        assert_eq!(held(&take_events(net.side(holder)), &id), [(false, false)]);
        assert_eq!(held(&take_events(net.side(peer)), &id), [(false, true)]);
        assert_eq!(last_gate(net.side(holder), &id), AudioGate::Open);
        assert_eq!(last_gate(net.side(peer), &id), AudioGate::Open);
        assert!(net.alice.core.has_call(&id) && net.bob.core.has_call(&id));
    }
}

#[test]
fn mute_is_local_and_survives_a_hold() {
    let (mut net, id) = up(KeyMode::MikeyDhSign);
    let now = net.now;
    let seen = net.seen.len();
    net.alice.core.mute(&id, true, now).unwrap();
    net.settle();
    assert_eq!(net.seen.len(), seen, "mute sends nothing");
    assert_eq!(net.alice.gates, [(id.clone(), AudioGate::Silence)]);
    assert!(net.bob.gates.is_empty());

    net.bob.core.hold(&id, now).unwrap();
    net.settle();
    assert_eq!(last_gate(&net.alice, &id), AudioGate::Closed);
    net.bob.core.resume(&id, now).unwrap();
    net.settle();
    assert_eq!(
        last_gate(&net.alice, &id),
        AudioGate::Silence,
        "still muted after the hold"
    );
    net.alice.core.mute(&id, false, now).unwrap();
    net.drain(true);
    assert_eq!(last_gate(&net.alice, &id), AudioGate::Open);
}

#[test]
fn hold_resume_and_mute_need_a_call_that_is_up() {
    let mut net = Net::new(|cfg| cfg.auto_answer = false);
    let id = net.alice_calls_bob();
    let now = net.now;
    for result in [
        net.alice.core.hold(&id, now),
        net.bob.core.hold(&id, now),
        net.alice.core.mute(&id, true, now),
        net.alice.core.resume("no-such-call", now),
    ] {
        assert!(
            matches!(result, Err(PhoneError::CallControl(_))),
            "{result:?}"
        );
    }
    assert_eq!(invite_bodies(&net).len(), 1, "no re-INVITE left");
}

/// Rewrites the SDP of every re-INVITE (CSeq above 1) the relay carries with `edit`: a
/// man in the signalling path, or a peer, offering other keys mid-call.
fn rewrite_reinvite(bytes: Vec<u8>, edit: fn(&str) -> String) -> Vec<u8> {
    let m = Message::parse(&bytes).unwrap();
    let cseq = m.cseq().unwrap();
    if m.method().is_none() || cseq.method.as_str() != "INVITE" || cseq.seq < 2 {
        return bytes;
    }
    let text = String::from_utf8(bytes).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let body = edit(body);
    let head: Vec<String> = head
        .lines()
        .map(|l| {
            if l.to_ascii_lowercase().starts_with("content-length:") {
                format!("Content-Length: {}", body.len())
            } else {
                l.to_owned()
            }
        })
        .collect();
    format!("{}\r\n\r\n{body}", head.join("\r\n")).into_bytes()
}

/// Alice holds a `mode` call while `rewrite` changes her re-INVITE's SDP: Bob must refuse it
/// with 488, say why (`expected` in the reason), and keep the call and its media as they were.
fn downgrade_refused(mode: KeyMode, rewrite: fn(Vec<u8>) -> Vec<u8>, expected: &str) {
    let (mut net, id) = up(mode);
    net.rewrite = Some(rewrite);
    let now = net.now;
    net.alice.core.hold(&id, now).unwrap();
    net.settle();
    let reinvite = invite_bodies(&net).pop().unwrap();
    assert_eq!(net.seen("488").len(), 1, "Bob refuses:\n{reinvite}");
    let bob = take_events(&mut net.bob);
    let reason = bob
        .iter()
        .find_map(|e| match e {
            Event::Control(CallControl::DowngradeRefused { call_id, reason }) if *call_id == id => {
                Some(reason)
            }
            _ => None,
        })
        .unwrap_or_else(|| panic!("no DowngradeRefused: {bob:?}"));
    assert!(reason.contains(expected), "{reason:?} for\n{reinvite}");
    assert!(held(&bob, &id).is_empty(), "Bob is not held: {bob:?}");
    assert!(net.bob.gates.is_empty(), "Bob's media goes on as it was");
    assert!(net.bob.stopped.is_empty() && net.bob.core.has_call(&id));
    // Alice's hold failed: she is told, her audio flows again, the call goes on.
    let alice = take_events(&mut net.alice);
    assert!(
        alice.iter().any(
            |e| matches!(e, Event::Control(CallControl::Failed { reason, .. }) if reason.contains("488"))
        ),
        "{alice:?}"
    );
    assert_eq!(last_gate(&net.alice, &id), AudioGate::Open);
    assert!(net.alice.stopped.is_empty() && net.alice.core.has_call(&id));
    // The call still takes a re-INVITE that keeps its keys.
    net.rewrite = None;
    net.alice.core.hold(&id, now).unwrap();
    net.settle();
    assert_eq!(held(&take_events(&mut net.bob), &id), [(true, true)]);
}

/// Drops every line starting with `prefix`.
fn without(body: &str, prefix: &str) -> String {
    body.split_inclusive("\r\n")
        .filter(|l| !l.starts_with(prefix))
        .collect()
}

#[test]
fn a_re_invite_dropping_the_mikey_line_is_refused() {
    downgrade_refused(
        KeyMode::MikeyPke,
        |b| rewrite_reinvite(b, |sdp| without(sdp, "a=key-mgmt:")),
        "the MIKEY key line (a=key-mgmt) is gone",
    );
}

#[test]
fn a_re_invite_switching_mikey_to_sdes_is_refused() {
    downgrade_refused(
        KeyMode::MikeyDhSign,
        |b| {
            rewrite_reinvite(b, |sdp| {
                without(sdp, "a=key-mgmt:").replace(
                    "a=sendonly\r\n",
                    "a=crypto:1 AES_CM_128_HMAC_SHA1_80 \
                     inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz\r\na=sendonly\r\n",
                )
            })
        },
        "MIKEY replaced by SDES",
    );
}

#[test]
fn a_re_invite_dropping_zrtp_is_refused() {
    downgrade_refused(
        KeyMode::Zrtp,
        |b| rewrite_reinvite(b, |sdp| without(sdp, "a=zrtp-hash:")),
        "ZRTP dropped: RTP/AVP without a=zrtp-hash",
    );
}

#[test]
fn a_re_invite_with_another_zrtp_hash_is_refused() {
    downgrade_refused(
        KeyMode::Zrtp,
        |b| {
            rewrite_reinvite(b, |sdp| {
                sdp.split_inclusive("\r\n")
                    .map(|l| match l.strip_prefix("a=zrtp-hash:1.10 ") {
                        Some(_) => format!("a=zrtp-hash:1.10 {}\r\n", "ab".repeat(32)),
                        None => l.to_owned(),
                    })
                    .collect()
            })
        },
        "a different a=zrtp-hash mid-call",
    );
}

#[test]
fn a_re_invite_to_plain_rtp_avp_is_refused() {
    downgrade_refused(
        KeyMode::Sdes,
        |b| {
            rewrite_reinvite(b, |sdp| {
                without(sdp, "a=crypto:").replace("RTP/SAVP", "RTP/AVP")
            })
        },
        "RTP/AVP without ZRTP: unencrypted media",
    );
}

#[test]
fn a_re_invite_with_a_weaker_crypto_suite_is_refused() {
    downgrade_refused(
        KeyMode::Sdes,
        |b| {
            rewrite_reinvite(b, |sdp| {
                sdp.replace("AES_CM_128_HMAC_SHA1_80", "AES_CM_128_HMAC_SHA1_32")
            })
        },
        "the crypto suite changed from AES_CM_128_HMAC_SHA1_80 to AES_CM_128_HMAC_SHA1_32",
    );
}

#[test]
fn a_confirmed_sas_goes_to_the_media_and_a_rejected_one_hangs_up_with_a_reason() {
    let (mut net, id) = up(KeyMode::Zrtp);
    let now = net.now;
    net.alice.core.confirm_sas(&id, now).unwrap();
    net.settle();
    assert_eq!(net.alice.sas_confirmed, std::slice::from_ref(&id));
    assert!(
        net.seen("BYE").is_empty(),
        "confirming changes nothing on the wire"
    );

    net.bob.core.reject_sas(&id, now).unwrap();
    net.settle();
    let bye = net.seen("BYE");
    assert_eq!(bye.len(), 1);
    let bye = Message::parse(&bye[0]).unwrap();
    let reason = bye.header_value(chaincall_sip::HeaderName::Other("Reason"));
    assert!(
        reason.is_some_and(|r| r.contains("SAS mismatch reported by the user")),
        "{reason:?}"
    );
    assert_eq!(
        ended(&take_events(&mut net.bob), &id),
        Some(EndReason::SasRejected)
    );
    assert_eq!(
        ended(&take_events(&mut net.alice), &id),
        Some(EndReason::HungUpByPeer)
    );
    assert_eq!(net.bob.stopped, std::slice::from_ref(&id));
    assert!(
        EndReason::SasRejected
            .describe()
            .contains("man in the middle")
    );
}

#[test]
fn a_call_keyed_by_mikey_has_no_sas_to_confirm() {
    let (mut net, id) = up(KeyMode::MikeyPke);
    let now = net.now;
    for result in [
        net.alice.core.confirm_sas(&id, now),
        net.alice.core.reject_sas(&id, now),
    ] {
        let e = result.unwrap_err().to_string();
        assert!(e.contains("keyed by mikey-pke, not ZRTP"), "{e}");
    }
    net.settle();
    assert!(net.seen("BYE").is_empty() && net.alice.sas_confirmed.is_empty());
}
