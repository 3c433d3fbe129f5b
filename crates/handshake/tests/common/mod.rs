//! Shared set-up for the handshake tests: three approved parties and a frame shuttle.
#![allow(dead_code, unreachable_pub, missing_docs)]

use std::sync::Arc;
use std::time::Instant;

use chaincall_handshake::{
    Established, HandshakeConfig, HandshakeError, Initiator, LocalIdentity, Protocol, ReplayCache,
    Responder, run_in_memory,
};
use chaincall_identity::{IdentityKey, IdentityName, StaticDirectory};

pub struct World {
    pub a: LocalIdentity,
    pub b: LocalIdentity,
    pub c: LocalIdentity,
    pub dir: StaticDirectory,
}

pub fn party(name: &str) -> LocalIdentity {
    LocalIdentity::new(
        IdentityName::parse(name).unwrap(),
        Arc::new(IdentityKey::generate()),
    )
}

pub fn world() -> World {
    let (a, b, c) = (
        party("+15551230001"),
        party("sip.example.org"),
        party("+15551230003"),
    );
    let mut dir = StaticDirectory::new();
    for p in [&a, &b, &c] {
        dir.approve(p.name().clone(), p.key().public());
    }
    World { a, b, c, dir }
}

/// A fresh initiator A toward B, whose key it looks up in `dir`, with the default configuration.
pub fn initiator(w: &World, protocol: Protocol, dir: &StaticDirectory, now: Instant) -> Initiator {
    Initiator::new(
        HandshakeConfig::default(),
        w.a.clone(),
        w.b.name().clone(),
        protocol,
        dir,
        now,
    )
    .unwrap()
}

/// A fresh [`initiator`] and a fresh responder B, both with the default configuration.
pub fn pair(
    w: &World,
    protocol: Protocol,
    dir: &StaticDirectory,
    now: Instant,
) -> (Initiator, Responder) {
    let alice = initiator(w, protocol, dir, now);
    (
        alice,
        Responder::new(HandshakeConfig::default(), w.b.clone(), now),
    )
}

/// Runs a whole handshake between fresh A and B, returning both results and every frame sent.
pub fn run(
    w: &World,
    protocol: Protocol,
    replay: &ReplayCache,
    now: Instant,
) -> Result<(Established, Established, Vec<Vec<u8>>), HandshakeError> {
    let (mut alice, mut bob) = pair(w, protocol, &w.dir, now);
    let run = run_in_memory(&mut alice, &mut bob, &w.dir, replay, now)?;
    Ok((run.initiator, run.responder, run.frames))
}
