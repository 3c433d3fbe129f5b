//! Codecs and DTMF in two phone cores in simulated time (the `tests/core.rs` harness): Opus is
//! what two chaincall phones agree on by default, G.711 when one side has only that, 488 when
//! nothing is common; telephone-event is offered and agreed, and a DTMF command reaches the media
//! only in a call that is up with telephone-event agreed.

use chaincall_media::AudioCodec;
use chaincall_media::g711::Codec;
use chaincall_phone::PhoneError;
use chaincall_phone::core::Event;
use chaincall_sip::message::Message;

#[path = "common/core_net.rs"]
mod core_net;
#[path = "common/srtp.rs"]
mod srtp;

use core_net::*;

const PCMU: AudioCodec = AudioCodec::G711(Codec::Pcmu);
const PCMA: AudioCodec = AudioCodec::G711(Codec::Pcma);

/// The SDP body of the first relayed message with this method or status that has one.
fn sdp(net: &Net, what: &str) -> String {
    net.seen(what)
        .iter()
        .find_map(|m| {
            let body = Message::parse(m).unwrap().body().to_vec();
            (!body.is_empty()).then(|| String::from_utf8(body).unwrap())
        })
        .unwrap_or_else(|| panic!("no {what} with SDP"))
}

fn m_line(sdp: &str) -> &str {
    sdp.lines().find(|l| l.starts_with("m=audio")).unwrap()
}

/// A call from alice to bob with these codec lists (`None`: the default), answered by itself;
/// returns the net and the Call-ID.
fn call(alice: Option<Vec<AudioCodec>>, bob: Option<Vec<AudioCodec>>) -> (Net, String) {
    let mut net = Net::new(|cfg| {
        let list = if cfg.number.as_str() == ALICE {
            &alice
        } else {
            &bob
        };
        if let Some(list) = list {
            cfg.codecs = list.clone();
        }
    });
    let id = net.alice_calls_bob();
    (net, id)
}

#[test]
fn two_phones_agree_on_opus_by_default_with_telephone_event() {
    let (mut net, id) = call(None, None);
    let offer = sdp(&net, "INVITE");
    // Every codec in preference order, then telephone-event at both clocks.
    assert!(
        m_line(&offer).ends_with("RTP/SAVP 111 0 8 110 101"),
        "{offer}"
    );
    assert!(offer.contains("a=rtpmap:111 opus/48000/2"), "{offer}");
    assert!(
        offer.contains("a=fmtp:111 useinbandfec=1;usedtx=1"),
        "{offer}"
    );
    let answer = sdp(&net, "200");
    assert!(m_line(&answer).ends_with("RTP/SAVP 111 110"), "{answer}");
    assert!(answer.contains("a=rtpmap:110 telephone-event/48000"));

    let mut a = net.alice.started.remove(&id).expect("alice's media");
    let mut b = net.bob.started.remove(&id).expect("bob's media");
    assert!(srtp::carries(&mut a, &mut b) && srtp::carries(&mut b, &mut a));
    for side in [&a, &b] {
        assert_eq!(side.codec, AudioCodec::OPUS);
        let event = side
            .telephone_event
            .as_ref()
            .expect("telephone-event agreed");
        assert_eq!((event.payload_type, event.clock_rate), (110, 48_000));
        assert!(event.supports(11), "# is among the events");
    }
}

#[test]
fn a_g711_only_side_makes_both_use_pcmu() {
    // The callee has only G.711: it takes the first of its own list that the offer has.
    let (mut net, id) = call(None, Some(vec![PCMU, PCMA]));
    assert!(m_line(&sdp(&net, "200")).ends_with("RTP/SAVP 0 101"));
    let (a, b) = (&net.alice.started[&id], &net.bob.started[&id]);
    assert_eq!((a.codec, b.codec), (PCMU, PCMU));
    let event = a.telephone_event.as_ref().unwrap();
    assert_eq!((event.payload_type, event.clock_rate), (101, 8_000));
    assert_eq!(b.telephone_event, a.telephone_event);
    net.alice.started.clear();

    // The caller has only G.711: nothing else is offered, the callee falls back.
    let (net, id) = call(Some(vec![PCMU]), None);
    let offer = sdp(&net, "INVITE");
    assert!(m_line(&offer).ends_with("RTP/SAVP 0 101"), "{offer}");
    assert!(!offer.contains("opus"), "{offer}");
    let (a, b) = (&net.alice.started[&id], &net.bob.started[&id]);
    assert_eq!((a.codec, b.codec), (PCMU, PCMU));
}

#[test]
fn the_callee_s_preference_decides() {
    // alice prefers PCMA, bob PCMU: RFC 3264 lets the answerer choose, and both then use it.
    let (net, id) = call(Some(vec![PCMA, PCMU]), Some(vec![PCMU, PCMA]));
    let (a, b) = (&net.alice.started[&id], &net.bob.started[&id]);
    assert_eq!((a.codec, b.codec), (PCMU, PCMU));
}

#[test]
fn nothing_in_common_is_refused_with_488() {
    let (mut net, id) = call(Some(vec![AudioCodec::OPUS]), Some(vec![PCMA]));
    assert_eq!(net.seen("488").len(), 1, "the callee answers 488");
    assert!(net.alice.started.is_empty() && net.bob.started.is_empty());
    let alice = take_events(&mut net.alice);
    assert!(
        matches!(
            failure(&alice, &id),
            Some(PhoneError::Refused { code: 488, .. })
        ),
        "{alice:?}"
    );
    let bob = take_events(&mut net.bob);
    let why = bob
        .iter()
        .find_map(|e| match e {
            Event::Refused { reason, .. } => Some(reason.clone()),
            _ => None,
        })
        .expect("bob says why he refused");
    assert!(why.contains("no common codec"), "{why}");
}

#[test]
fn dtmf_goes_to_the_media_of_a_call_that_is_up() {
    let (mut net, id) = call(None, None);
    let now = net.now;
    net.alice.core.send_dtmf(&id, "159#*", now).unwrap();
    net.settle();
    assert_eq!(net.alice.dtmf, vec![(id.clone(), "159#*".to_owned())]);
    net.bob.core.send_dtmf(&id, "0", now).unwrap();
    net.settle();
    assert_eq!(net.bob.dtmf, vec![(id.clone(), "0".to_owned())]);

    // Not a digit, and no such call: refused, nothing reaches the media.
    let err = net.alice.core.send_dtmf(&id, "12x", now).unwrap_err();
    assert!(err.to_string().contains("'x' is not a DTMF digit"), "{err}");
    let err = net.alice.core.send_dtmf("nope", "1", now).unwrap_err();
    assert!(err.to_string().contains("no call \"nope\""), "{err}");
    net.settle();
    assert_eq!(net.alice.dtmf.len(), 1);
}

#[test]
fn dtmf_is_refused_before_the_call_is_up() {
    let mut net = Net::new(|_| {});
    // The callee's key look-up is held: the call waits before its INVITE.
    net.alice.answer_lookups = false;
    let id = net.alice_calls_bob();
    let now = net.now;
    let err = net.alice.core.send_dtmf(&id, "1", now).unwrap_err();
    assert!(err.to_string().contains("is not up"), "{err}");
    net.settle();
    assert!(net.alice.dtmf.is_empty());
}

/// The answer without its telephone-event format, as from a phone that has none (with MIKEY-PKE
/// the answer carries no key message, so nothing else notices).
fn strip_telephone_event(bytes: Vec<u8>) -> Vec<u8> {
    let text = String::from_utf8(bytes).unwrap();
    if !text.starts_with("SIP/2.0 200") || !text.contains("telephone-event") {
        return text.into_bytes();
    }
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let body: String = body
        .split_inclusive("\r\n")
        .filter(|l| !l.starts_with("a=rtpmap:110") && !l.starts_with("a=fmtp:110"))
        .map(|l| {
            if l.starts_with("m=audio") {
                l.replace(" 110", "")
            } else {
                l.to_owned()
            }
        })
        .collect();
    let head: Vec<String> = head
        .split("\r\n")
        .map(|h| {
            if h.to_ascii_lowercase().starts_with("content-length:") {
                format!("Content-Length: {}", body.len())
            } else {
                h.to_owned()
            }
        })
        .collect();
    format!("{}\r\n\r\n{body}", head.join("\r\n")).into_bytes()
}

#[test]
fn dtmf_is_refused_when_the_peer_has_no_telephone_event() {
    let mut net = Net::new(|_| {});
    net.rewrite = Some(strip_telephone_event);
    let id = net.alice_calls_bob();
    let answer = sdp(&net, "200");
    assert!(!answer.contains("telephone-event"), "{answer}");
    let media = &net.alice.started[&id];
    assert_eq!(media.codec, AudioCodec::OPUS);
    assert_eq!(media.telephone_event, None);
    let now = net.now;
    let err = net.alice.core.send_dtmf(&id, "1", now).unwrap_err();
    assert!(
        err.to_string().contains("did not agree to telephone-event"),
        "{err}"
    );
    net.settle();
    assert!(net.alice.dtmf.is_empty());
}
