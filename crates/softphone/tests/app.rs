//! The view model in simulated time: event sequences and keys in, the screen's text (ratatui's
//! `TestBackend`) and the phone commands out. No terminal, no phone, no sleeping.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use chaincall_identity::{Fingerprint, IdentityKey, IdentityName, PhoneNumber, SafetyNumber};
use chaincall_media::AudioCodec;
use chaincall_media::MediaStats;
use chaincall_phone::caller::Proof;
use chaincall_phone::core::{CallControl, EndReason, KeyedCall};
use chaincall_phone::{CallReport, CallerId, KeyMode, PhoneEvent, SetupTimings, Verification};
use chaincall_softphone::{App, Command, Input, Key};
use ratatui::Terminal;
use ratatui::backend::TestBackend;

const ALICE: &str = "+15550100001";
const BOB: &str = "+15550100002";

fn number(n: &str) -> PhoneNumber {
    n.parse().unwrap()
}

fn name(n: &str) -> IdentityName {
    IdentityName::parse(n).unwrap()
}

/// The screen as a terminal of `width` x `height` shows it, one string a row.
fn screen_of(app: &App, now: Instant, width: u16, height: u16) -> String {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
    terminal.draw(|f| app.render(f, now)).unwrap();
    let buffer = terminal.backend().buffer();
    buffer
        .content()
        .chunks(usize::from(width))
        .map(|row| row.iter().map(|c| c.symbol()).collect::<String>())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Wide enough that no line this test looks for wraps.
fn screen(app: &App, now: Instant) -> String {
    screen_of(app, now, 220, 30)
}

fn commands(app: &mut App) -> Vec<Command> {
    std::iter::from_fn(|| app.poll_command()).collect()
}

fn keys(app: &mut App, text: &str, now: Instant) {
    for c in text.chars() {
        app.handle(Input::Key(Key::Char(c)), now);
    }
}

fn registered(now: Instant) -> App {
    let mut app = App::new(&number(ALICE), "sip.chaincall.test");
    app.handle(Input::Event(PhoneEvent::Registered { expires: 600 }), now);
    app
}

fn incoming(call_id: &str, caller: CallerId, awaiting_answer: bool) -> PhoneEvent {
    PhoneEvent::Incoming {
        call_id: call_id.into(),
        caller,
        awaiting_answer,
    }
}

fn safety() -> SafetyNumber {
    let a = Fingerprint::new(&name(ALICE), &IdentityKey::generate().public());
    let b = Fingerprint::new(&name(BOB), &IdentityKey::generate().public());
    SafetyNumber::from_fingerprints(&a, &b)
}

fn report(call_id: &str, outgoing: bool, caller: Option<CallerId>) -> Box<CallReport> {
    Box::new(CallReport {
        call_id: call_id.into(),
        peer: BOB.into(),
        caller,
        outgoing,
        mode: KeyMode::MikeyPke,
        verified_peer: Some(name(BOB)),
        lookup_verified: true,
        safety_number: None,
        verified_in_person: false,
        key_changes: Vec::new(),
        proof_bytes: 0,
        timings: SetupTimings::default(),
        signalling_lost: false,
        zrtp: None,
        audio_warnings: Vec::new(),
        stats: MediaStats {
            rtp_sent: 250,
            rtp_received: 248,
            lost: 2,
            ..MediaStats::default()
        },
        sent_payload: Vec::new(),
        received_payload: Vec::new(),
        recorded: vec![0; 8000],
        recorded_rate: 8000,
        playout: Default::default(),
        source_started: None,
        codec: AudioCodec::Opus { payload_type: 111 },
        jitter: Default::default(),
        ended: EndReason::HungUpByPeer,
        failure: None,
    })
}

#[test]
fn registering_dialing_a_verified_callee_and_hanging_up() {
    let t0 = Instant::now();
    let mut app = App::new(&number(ALICE), "sip.chaincall.test");
    let s = screen(&app, t0);
    assert!(
        s.contains("+15550100001 at sip.chaincall.test: registering…"),
        "{s}"
    );
    app.handle(Input::Event(PhoneEvent::Registered { expires: 600 }), t0);
    assert!(screen(&app, t0).contains("registered (for 600 s; the phone renews it)"));

    keys(&mut app, "+1555010000", t0);
    app.handle(Input::Key(Key::Char('x')), t0);
    keys(&mut app, "29", t0);
    app.handle(Input::Key(Key::Backspace), t0);
    let s = screen(&app, t0);
    assert!(
        s.contains("Number: +15550100002_"),
        "letters are not typed:\n{s}"
    );
    assert!(s.contains("Enter dials"), "{s}");
    app.handle(Input::Key(Key::Enter), t0);
    assert_eq!(commands(&mut app), [Command::Dial(number(BOB))]);
    assert!(screen(&app, t0).contains("Looking up +15550100002's key on chain"));

    let t1 = t0 + Duration::from_millis(300);
    let result = Ok("call-1".to_owned());
    app.handle(
        Input::Dialed {
            target: number(BOB),
            result,
        },
        t1,
    );
    assert!(screen(&app, t1 + Duration::from_secs(3)).contains("Ringing for 0:03"));
    assert_eq!(app.poll_timeout(t1), Some(t1 + Duration::from_secs(60)));

    let safety = safety();
    let up = PhoneEvent::CallUp {
        call: KeyedCall {
            call_id: "call-1".into(),
            peer: BOB.into(),
            caller: None,
            mode: KeyMode::MikeyPke,
            verified_peer: Some(name(BOB)),
            safety_number: Some(safety.clone()),
            verified_in_person: false,
        },
        zrtp: None,
    };
    let t2 = t1 + Duration::from_secs(4);
    app.handle(Input::Event(up), t2);
    let s = screen(&app, t2 + Duration::from_secs(65));
    for line in [
        "Callee: +15550100002".to_owned(),
        "Media keys: VERIFIED (mikey-pke, callee verified on chain as +15550100002)".to_owned(),
        format!(
            "Safety number: {} (compare it with the peer's screen)",
            safety.grouped()
        ),
        "Duration: 1:05".to_owned(),
        "Key mode: mikey-pke".to_owned(),
        "SRTP profile: not reported by the phone library yet".to_owned(),
        "Microphone: on".to_owned(),
        "Hold: no".to_owned(),
        "h hangs up".to_owned(),
    ] {
        assert!(s.contains(&line), "{line:?} missing:\n{s}");
    }
    // The duration is redrawn every whole second of the call.
    assert_eq!(
        app.poll_timeout(t2 + Duration::from_millis(1500)),
        Some(t2 + Duration::from_secs(2))
    );
    // Mute is a command now (m_mutes_o_holds_and_the_in_call_screen_shows_both); unmuted again.
    app.handle(Input::Key(Key::Char('m')), t2);
    app.handle(Input::Key(Key::Char('m')), t2);
    assert_eq!(
        commands(&mut app),
        [
            Command::Mute("call-1".into(), true),
            Command::Mute("call-1".into(), false)
        ]
    );

    let t3 = t2 + Duration::from_secs(10);
    app.handle(Input::Key(Key::Char('h')), t3);
    assert_eq!(commands(&mut app), [Command::Hangup("call-1".into())]);
    assert!(screen(&app, t3).contains("Hanging up…"));
    app.handle(Input::Key(Key::Char('h')), t3);
    assert!(commands(&mut app).is_empty(), "hung up once");

    let recording = Ok(Some(PathBuf::from("recordings/call.wav")));
    let ended = Input::Ended {
        report: report("call-1", true, None),
        recording,
    };
    app.handle(ended, t3 + Duration::from_millis(200));
    let s = screen(&app, t3);
    for line in [
        "Ended: you hung up",
        "Media keys: VERIFIED (mikey-pke, callee verified on chain as +15550100002)",
        "Lasted: 0:10",
        "call to +15550100002 (mikey-pke, opus, end-to-end encrypted, keys bound to \
         +15550100002's on-chain key)",
        "SRTP packets   sent 250, received 248, rejected 0",
        "recording      recordings/call.wav (1.00 s received)",
        "loss           2 packets lost",
        "type a number to call again · q quits",
    ] {
        assert!(s.contains(line), "{line:?} missing:\n{s}");
    }
    // A digit starts the next number; q quits from here.
    keys(&mut app, "+", t3);
    assert!(screen(&app, t3).contains("Number: +_"));
    app.handle(Input::Key(Key::Backspace), t3);
    app.handle(Input::Key(Key::Char('q')), t3);
    assert_eq!(commands(&mut app), [Command::Quit]);
}

fn spoof() -> CallerId {
    CallerId {
        uri: "sip:+15550100002@evil.example".into(),
        display_name: Some("Your Bank\u{1b}[2J\u{1b}[H".into()),
        claimed: Some(name(BOB)),
        verification: Verification::LikelySpoof {
            reason: "+15550100002 has a key on chain but this call proves nothing".into(),
        },
    }
}

#[test]
fn a_likely_spoof_is_shown_escaped_and_in_words_then_refused() {
    let t0 = Instant::now();
    let mut app = registered(t0);
    let ringing = incoming("spoof-1", spoof(), false);
    app.handle(Input::Event(ringing), t0);
    let s = screen(&app, t0);
    assert!(
        !s.contains('\u{1b}'),
        "no escape reaches the terminal:\n{s}"
    );
    for line in [
        "INCOMING CALL",
        "From: sip:+15550100002@evil.example",
        "Caller: \"Your Bank\\u{1b}[2J\\u{1b}[H\" <sip:+15550100002@evil.example>: NOT VERIFIED \
         — likely spoof (+15550100002 has a key on chain but this call proves nothing)",
        "Not proven by any call: the display name and the domain.",
        "Not ringing: the phone decides by itself",
    ] {
        assert!(s.contains(line), "{line:?} missing:\n{s}");
    }
    app.handle(Input::Key(Key::Char('a')), t0);
    assert!(
        commands(&mut app).is_empty(),
        "a call not ringing is not answered"
    );

    let refused = PhoneEvent::Refused {
        call_id: "spoof-1".into(),
        reason: "likely spoof\u{7}: 403".into(),
    };
    app.handle(Input::Event(refused), t0);
    let s = screen(&app, t0);
    assert!(
        s.contains("Ended: the phone refused the call: likely spoof\\u{7}: 403"),
        "{s}"
    );
    assert!(s.contains("NOT VERIFIED — likely spoof"), "{s}");
    assert!(!s.contains('\u{7}'), "{s}");

    // On a 100x30 terminal the verdict wraps but stays on screen.
    let mut app = registered(t0);
    let ringing = incoming("spoof-2", spoof(), true);
    app.handle(Input::Event(ringing), t0);
    let small = screen_of(&app, t0, 100, 30);
    assert!(small.contains("NOT VERIFIED"), "{small}");
    assert!(small.contains("likely spoof"), "{small}");
    assert!(small.contains("a answers · d declines"), "{small}");
    app.handle(Input::Key(Key::Char('d')), t0);
    assert_eq!(commands(&mut app), [Command::Decline("spoof-2".into())]);
    assert!(screen(&app, t0).contains("Ended: you declined the call"));
}

#[test]
fn a_verified_caller_is_answered_with_a_and_shown_with_its_proof() {
    let t0 = Instant::now();
    let mut app = registered(t0);
    let caller = CallerId {
        uri: "sip:+15550100002@sip.chaincall.test".into(),
        display_name: None,
        claimed: Some(name(BOB)),
        verification: Verification::Verified {
            identity: name(BOB),
            proof: Proof::PassportAndMikey,
            lookup_verified: true,
            fingerprint: "01234 56789 01234 56789 01234 56789".into(),
        },
    };
    let ringing = incoming("in-1", caller.clone(), true);
    app.handle(Input::Event(ringing), t0);
    let s = screen(&app, t0);
    assert!(
        s.contains(
            "Caller: <sip:+15550100002@sip.chaincall.test>: verified on chain as +15550100002 \
             (passport+mikey signature; key fingerprint 01234 56789 01234 56789 01234 56789)"
        ),
        "{s}"
    );
    app.handle(Input::Key(Key::Char('a')), t0);
    assert_eq!(commands(&mut app), [Command::Answer("in-1".into())]);
    let up = PhoneEvent::CallUp {
        call: KeyedCall {
            call_id: "in-1".into(),
            peer: BOB.into(),
            caller: Some(caller.clone()),
            mode: KeyMode::MikeyPke,
            verified_peer: Some(name(BOB)),
            safety_number: Some(safety()),
            verified_in_person: true,
        },
        zrtp: None,
    };
    app.handle(Input::Event(up), t0);
    let s = screen(&app, t0);
    assert!(s.contains("Caller: <sip:+15550100002@sip.chaincall.test>: verified on chain"));
    assert!(
        s.contains("(mikey-pke, caller verified on chain as +15550100002)"),
        "{s}"
    );
    assert!(s.contains("(verified in person)"), "{s}");

    // A second call while this one is up is declined, and said so.
    let second = incoming("in-2", spoof(), true);
    app.handle(Input::Event(second), t0);
    assert_eq!(commands(&mut app), [Command::Decline("in-2".into())]);
    assert!(screen(&app, t0).contains("Note: declined a call while busy"));

    // The caller hangs up: its report ends the call.
    let t1 = t0 + Duration::from_secs(7);
    let ended = Input::Ended {
        report: report("in-1", false, Some(caller)),
        recording: Err("disk full".into()),
    };
    app.handle(ended, t1);
    let s = screen(&app, t1);
    assert!(s.contains("Ended: the caller hung up"), "{s}");
    assert!(s.contains("Lasted: 0:07"), "{s}");
    assert!(s.contains("(not written: disk full)"), "{s}");
}

#[test]
fn registration_failure_and_a_refused_call_are_spelled_out() {
    let t0 = Instant::now();
    let mut app = App::new(&number(ALICE), "sip.chaincall.test");
    let why = "REGISTER of +15550100001 at sip.chaincall.test: authentication failed (403)";
    app.handle(Input::RegisterFailed(why.into()), t0);
    let s = screen(&app, t0);
    assert!(s.contains(&format!("NOT REGISTERED: {why}")), "{s}");

    keys(&mut app, "+15550109999", t0);
    app.handle(Input::Key(Key::Enter), t0);
    assert_eq!(commands(&mut app), [Command::Dial(number("+15550109999"))]);
    let result = Err("key lookup for +15550109999: not registered on chain".into());
    let target = number("+15550109999");
    app.handle(Input::Dialed { target, result }, t0);
    let s = screen(&app, t0);
    assert!(
        s.contains("Ended: cannot call +15550109999: key lookup for +15550109999: not registered"),
        "{s}"
    );

    keys(&mut app, BOB, t0);
    app.handle(Input::Key(Key::Enter), t0);
    let _ = commands(&mut app);
    let result = Ok("call-2".into());
    app.handle(
        Input::Dialed {
            target: number(BOB),
            result,
        },
        t0,
    );
    let refused = PhoneEvent::Refused {
        call_id: "call-2".into(),
        reason: "486 Busy Here".into(),
    };
    app.handle(Input::Event(refused), t0);
    assert!(screen(&app, t0).contains("Ended: the call to +15550100002 failed: 486 Busy Here"));

    app.handle(Input::Disconnected, t0);
    assert!(screen(&app, t0).contains("DISCONNECTED: the signalling connection closed"));
}

#[test]
fn numbers_that_cannot_be_called_are_refused_before_dialing() {
    let t0 = Instant::now();
    let mut app = registered(t0);
    keys(&mut app, ALICE, t0);
    app.handle(Input::Key(Key::Enter), t0);
    assert!(commands(&mut app).is_empty());
    assert!(screen(&app, t0).contains("Note: +15550100001 is this phone's own number"));
    app.handle(Input::Key(Key::Esc), t0);
    keys(&mut app, "12+3", t0);
    app.handle(Input::Key(Key::Enter), t0);
    assert!(commands(&mut app).is_empty());
    assert!(screen(&app, t0).contains("\"12+3\" is not an E.164 number"));
    // At most + and 15 digits are taken.
    app.handle(Input::Key(Key::Esc), t0);
    keys(&mut app, "+1234567890123456789", t0);
    assert!(screen(&app, t0).contains("Number: +123456789012345_"));
}

#[test]
fn deadlines_in_simulated_time_give_up_ringing_answering_and_waiting_for_reports() {
    let t0 = Instant::now();
    let mut app = registered(t0);
    keys(&mut app, BOB, t0);
    app.handle(Input::Key(Key::Enter), t0);
    let _ = commands(&mut app);
    // The key lookup has its own bounds: no deadline until the INVITE leaves.
    assert_eq!(app.poll_timeout(t0), None);
    let t1 = t0 + Duration::from_secs(2);
    app.handle(
        Input::Dialed {
            target: number(BOB),
            result: Ok("c".into()),
        },
        t1,
    );
    app.handle_timeout(t1 + Duration::from_secs(59));
    assert!(commands(&mut app).is_empty(), "early timeouts are harmless");
    app.handle_timeout(t1 + Duration::from_secs(60));
    assert_eq!(commands(&mut app), [Command::Hangup("c".into())]);
    assert!(screen(&app, t1).contains("Ended: no answer from +15550100002 within 60 s"));

    let ringing = incoming("in", spoof(), true);
    app.handle(Input::Event(ringing), t1);
    app.handle_timeout(t1 + Duration::from_secs(60));
    assert_eq!(commands(&mut app), [Command::Decline("in".into())]);
    assert!(screen(&app, t1).contains("Ended: missed call: not answered within 60 s"));

    let ringing = incoming("in-3", spoof(), true);
    app.handle(Input::Event(ringing), t1);
    app.handle(Input::Key(Key::Char('a')), t1);
    let up = PhoneEvent::CallUp {
        call: KeyedCall {
            call_id: "in-3".into(),
            peer: BOB.into(),
            caller: Some(spoof()),
            mode: KeyMode::Sdes,
            verified_peer: None,
            safety_number: None,
            verified_in_person: false,
        },
        zrtp: None,
    };
    app.handle(Input::Event(up), t1);
    let s = screen(&app, t1);
    assert!(
        s.contains("Media keys: NOT VERIFIED (sdes, encrypted, key not verified on chain)"),
        "{s}"
    );
    assert!(
        s.contains("Safety number: none (the peer is not verified on chain)"),
        "{s}"
    );
    // `phone hangup` from another terminal names the wrong call, then the right one.
    assert!(app.hangup_request(Some("other"), t1).is_err());
    assert_eq!(app.hangup_request(None, t1), Ok("hung up in-3".into()));
    let _ = commands(&mut app);
    app.handle_timeout(t1 + Duration::from_secs(10));
    assert!(screen(&app, t1).contains("Ended: hung up; no call report 10 s later"));
    assert_eq!(
        app.hangup_request(None, t1),
        Err("no call in progress".into())
    );
}

#[test]
fn a_call_the_caller_cancels_or_that_rings_too_long_stops_ringing() {
    let t0 = Instant::now();
    let mut app = registered(t0);
    for (id, reason, shown) in [
        (
            "in-c",
            EndReason::CancelledByPeer,
            "Ended: missed call: cancelled by caller",
        ),
        (
            "in-t",
            EndReason::NotAnswered,
            "Ended: missed call: not answered in time (408 Request Timeout)",
        ),
    ] {
        app.handle(Input::Event(incoming(id, spoof(), true)), t0);
        assert!(screen(&app, t0).contains("INCOMING CALL"));
        let mut r = report(id, false, Some(spoof()));
        r.ended = reason;
        r.stats = MediaStats::default();
        app.handle(
            Input::Ended {
                report: r,
                recording: Err("no audio".into()),
            },
            t0,
        );
        let s = screen(&app, t0);
        assert!(s.contains(shown), "{s}");
        assert!(!s.contains("INCOMING CALL"), "{s}");
        assert!(!s.contains("a answers"), "{s}");
        assert_eq!(app.current_call(), None, "nothing rings any more");
        assert!(
            commands(&mut app).is_empty(),
            "nothing to decline: the call is over"
        );
        assert_eq!(app.poll_timeout(t0), None, "no answer deadline left");
    }
}

#[test]
fn m_mutes_o_holds_and_the_in_call_screen_shows_both() {
    let t0 = Instant::now();
    let mut app = registered(t0);
    app.handle(Input::Event(incoming("c", spoof(), true)), t0);
    app.handle(Input::Key(Key::Char('a')), t0);
    let _ = commands(&mut app);
    let up = PhoneEvent::CallUp {
        call: KeyedCall {
            call_id: "c".into(),
            peer: BOB.into(),
            caller: Some(spoof()),
            mode: KeyMode::MikeyPke,
            verified_peer: Some(name(BOB)),
            safety_number: None,
            verified_in_person: false,
        },
        zrtp: None,
    };
    app.handle(Input::Event(up), t0);
    let s = screen(&app, t0);
    assert!(s.contains("Microphone: on"), "{s}");
    assert!(s.contains("Hold: no"), "{s}");
    assert!(s.contains("m mutes/unmutes · o holds"), "{s}");

    app.handle(Input::Key(Key::Char('m')), t0);
    assert_eq!(commands(&mut app), [Command::Mute("c".into(), true)]);
    assert!(screen(&app, t0).contains("Microphone: MUTED (silence goes out; m unmutes)"));
    app.handle(Input::Key(Key::Char('m')), t0);
    assert_eq!(commands(&mut app), [Command::Mute("c".into(), false)]);
    assert!(screen(&app, t0).contains("Microphone: on"));

    // Hold shows once the peer answered.
    app.handle(Input::Key(Key::Char('o')), t0);
    assert_eq!(commands(&mut app), [Command::Hold("c".into())]);
    assert!(screen(&app, t0).contains("Hold: no"));
    let held = PhoneEvent::Control(CallControl::Held {
        call_id: "c".into(),
        by_peer: false,
    });
    app.handle(Input::Event(held), t0);
    let s = screen(&app, t0);
    assert!(
        s.contains("Hold: ON HOLD (you put it on hold; o resumes)"),
        "{s}"
    );
    assert!(s.contains("o resumes"), "{s}");
    app.handle(Input::Key(Key::Char('o')), t0);
    assert_eq!(commands(&mut app), [Command::Resume("c".into())]);
    let resumed = PhoneEvent::Control(CallControl::Resumed {
        call_id: "c".into(),
        by_peer: false,
    });
    app.handle(Input::Event(resumed), t0);
    assert!(screen(&app, t0).contains("Hold: no"));

    // The peer holds us; then a downgrade it tried is told.
    let held = PhoneEvent::Control(CallControl::Held {
        call_id: "c".into(),
        by_peer: true,
    });
    app.handle(Input::Event(held), t0);
    assert!(screen(&app, t0).contains("Hold: ON HOLD (the peer put you on hold)"));
    let refused = PhoneEvent::Control(CallControl::DowngradeRefused {
        call_id: "c".into(),
        reason: "the MIKEY key line (a=key-mgmt) is gone".into(),
    });
    app.handle(Input::Event(refused), t0);
    let s = screen(&app, t0);
    assert!(
        s.contains("refused the peer's re-INVITE: the MIKEY key line (a=key-mgmt) is gone"),
        "{s}"
    );
}

#[test]
fn v_confirms_the_zrtp_sas_once() {
    let t0 = Instant::now();
    let mut app = registered(t0);
    keys(&mut app, BOB, t0);
    app.handle(Input::Key(Key::Enter), t0);
    app.handle(
        Input::Dialed {
            target: number(BOB),
            result: Ok("z".into()),
        },
        t0,
    );
    let _ = commands(&mut app);
    let zrtp = chaincall_phone::zrtp_media::ZrtpStatus {
        sas: "kv3x".into(),
        chain_bound: false,
        cache: chaincall_zrtp::CacheStatus::NoSecrets,
        peer_zid: "00".repeat(12),
        sas_verified: false,
        peer_sas_verified: false,
        pin: None,
        exchange: Duration::from_millis(40),
    };
    let up = PhoneEvent::CallUp {
        call: KeyedCall {
            call_id: "z".into(),
            peer: BOB.into(),
            caller: None,
            mode: KeyMode::Zrtp,
            verified_peer: None,
            safety_number: None,
            verified_in_person: false,
        },
        zrtp: Some(zrtp),
    };
    app.handle(Input::Event(up), t0);
    let s = screen(&app, t0);
    assert!(s.contains("SAS kv3x (compare it with the peer)"), "{s}");
    assert!(s.contains("v: the SAS matched"), "{s}");
    app.handle(Input::Key(Key::Char('v')), t0);
    assert_eq!(commands(&mut app), [Command::ConfirmSas("z".into())]);
    let s = screen(&app, t0);
    assert!(s.contains("SAS kv3x (verified by you)"), "{s}");
    assert!(!s.contains("v: the SAS matched"), "{s}");
    app.handle(Input::Key(Key::Char('v')), t0);
    assert!(commands(&mut app).is_empty(), "confirmed once");
}

#[test]
fn ctrl_c_hangs_up_what_is_in_progress_then_quits() {
    let t0 = Instant::now();
    let mut app = registered(t0);
    keys(&mut app, BOB, t0);
    app.handle(Input::Key(Key::Enter), t0);
    let _ = commands(&mut app);
    app.handle(
        Input::Dialed {
            target: number(BOB),
            result: Ok("c".into()),
        },
        t0,
    );
    // q types nothing and does not quit while a call is in progress.
    app.handle(Input::Key(Key::Char('q')), t0);
    assert!(commands(&mut app).is_empty());
    app.handle(Input::Key(Key::Interrupt), t0);
    assert_eq!(
        commands(&mut app),
        [Command::Hangup("c".into()), Command::Quit]
    );
    app.handle(Input::Key(Key::Interrupt), t0);
    assert!(commands(&mut app).is_empty(), "quits once");

    // h while the key lookup runs cancels the call as soon as its INVITE has left.
    let mut app = registered(t0);
    keys(&mut app, BOB, t0);
    app.handle(Input::Key(Key::Enter), t0);
    let _ = commands(&mut app);
    app.handle(Input::Key(Key::Char('h')), t0);
    assert!(screen(&app, t0).contains("Cancelling…"));
    app.handle(
        Input::Dialed {
            target: number(BOB),
            result: Ok("c2".into()),
        },
        t0,
    );
    assert_eq!(commands(&mut app), [Command::Hangup("c2".into())]);
    assert!(screen(&app, t0).contains("you cancelled the call to +15550100002"));
}
