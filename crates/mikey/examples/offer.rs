//! Prints a fresh MIKEY offer (and, with an answer, the answer) as `a=key-mgmt:mikey` lines, for
//! trying `chaincall mikey inspect`: `cargo run -p chaincall-mikey --example offer -- pke|dh|psk`.

use chaincall_identity::{IdentityKey, IdentityName, StaticDirectory};
use chaincall_mikey::{Initiator, NtpTime, OfferConfig, Responder, ResponderConfig, Stream, sdp};

fn main() {
    let mode = std::env::args().nth(1).unwrap_or_else(|| "pke".into());
    let alice: IdentityName = "+15551230001".parse().expect("valid number");
    let bob: IdentityName = "+15551230002".parse().expect("valid number");
    let (alice_key, bob_key) = (IdentityKey::generate(), IdentityKey::generate());
    let mut dir = StaticDirectory::new();
    dir.approve(alice.clone(), alice_key.public());
    dir.approve(bob.clone(), bob_key.public());
    let now = NtpTime::from_system_time(std::time::SystemTime::now());
    let mut cfg = OfferConfig::new(alice.clone(), bob.clone());
    cfg.sip_domain = Some("example.org".into());
    cfg.streams = vec![Stream {
        ssrc: 0x1234_5678,
        roc: 0,
    }];
    let psk = b"example pre-shared key, 32 bytes";
    let caller = match mode.as_str() {
        "dh" => Initiator::dh_sign(cfg, &alice_key, now),
        "psk" => Initiator::psk(cfg, psk, now),
        _ => Initiator::pke(cfg, &alice_key, &dir, now),
    }
    .expect("offer");
    println!("{}", sdp::attribute_line(caller.offer()));
    let mut rcfg = ResponderConfig::new(bob);
    rcfg.sip_domain = Some("example.org".into());
    let mut callee = Responder::new(rcfg, bob_key);
    callee.set_psk(alice, psk).expect("long enough");
    let accepted = callee
        .handle_offer(caller.offer(), &dir, now)
        .expect("accepted");
    if let Some(answer) = accepted.answer {
        println!("{}", sdp::attribute_line(&answer));
    }
}
