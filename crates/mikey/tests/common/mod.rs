//! Shared test fixtures: identities, a directory, and a fixed clock.
#![allow(dead_code, unreachable_pub)]

use chaincall_identity::{IdentityKey, IdentityName, StaticDirectory};
use chaincall_mikey::{Initiator, NtpTime, OfferConfig, Responder, ResponderConfig, Stream};

pub const PSK: &[u8] = b"a pre-shared key of 32 bytes ok!";

pub struct World {
    pub alice: IdentityName,
    pub bob: IdentityName,
    /// A third approved subscriber: an insider attacker.
    pub mallory: IdentityName,
    pub alice_key: IdentityKey,
    pub bob_key: IdentityKey,
    pub mallory_key: IdentityKey,
    pub dir: StaticDirectory,
    pub now: NtpTime,
}

impl World {
    pub fn new() -> Self {
        let alice: IdentityName = "+15551230001".parse().unwrap();
        let bob: IdentityName = "+15551230002".parse().unwrap();
        let alice_key = IdentityKey::generate();
        let bob_key = IdentityKey::generate();
        let mallory: IdentityName = "+15551230666".parse().unwrap();
        let mallory_key = IdentityKey::generate();
        let mut dir = StaticDirectory::new();
        dir.approve(alice.clone(), alice_key.public());
        dir.approve(bob.clone(), bob_key.public());
        dir.approve(mallory.clone(), mallory_key.public());
        Self {
            alice,
            bob,
            mallory,
            alice_key,
            bob_key,
            mallory_key,
            dir,
            now: NtpTime::from_unix(1_790_000_000, 250_000_000),
        }
    }

    pub fn cfg(&self) -> OfferConfig {
        let mut cfg = OfferConfig::new(self.alice.clone(), self.bob.clone());
        cfg.sip_domain = Some("example.org".into());
        cfg.streams = vec![
            Stream {
                ssrc: 0x1234_5678,
                roc: 0,
            },
            Stream {
                ssrc: 0x9abc_def0,
                roc: 7,
            },
        ];
        cfg
    }

    pub fn responder(&self) -> Responder {
        let mut cfg = ResponderConfig::new(self.bob.clone());
        cfg.sip_domain = Some("example.org".into());
        let mut r = Responder::new(cfg, self.bob_key.clone());
        r.set_psk(self.alice.clone(), PSK).unwrap();
        r
    }

    /// A fresh responder's answer to `caller`'s offer, which it must accept with an answer.
    pub fn answer(&self, caller: &Initiator) -> Vec<u8> {
        self.responder()
            .handle_offer(caller.offer(), &self.dir, self.now)
            .expect("the offer is accepted")
            .answer
            .expect("the mode answers")
    }

    pub fn pke(&self, verify: bool) -> Initiator {
        let mut cfg = self.cfg();
        cfg.request_verification = verify;
        Initiator::pke(cfg, &self.alice_key, &self.dir, self.now).unwrap()
    }

    pub fn dh(&self) -> Initiator {
        Initiator::dh_sign(self.cfg(), &self.alice_key, self.now).unwrap()
    }

    pub fn psk(&self, verify: bool) -> Initiator {
        let mut cfg = self.cfg();
        cfg.request_verification = verify;
        Initiator::psk(cfg, PSK, self.now).unwrap()
    }
}
