//! Both ends of a handshake in one process: tests, benches and tools that hold both machines.

use std::time::Instant;

use chaincall_identity::KeyDirectory;

use crate::{Established, HandshakeError, Initiator, ReplayCache, Responder};

/// A finished in-memory run: both results and every frame, in the order sent.
#[derive(Debug)]
pub struct InMemoryRun {
    /// The initiator's result.
    pub initiator: Established,
    /// The responder's result.
    pub responder: Established,
    /// Every frame both sides sent, in wire order (message 1, 2, 3).
    pub frames: Vec<Vec<u8>>,
}

/// Runs `initiator` and `responder` against each other at `now`, draining each one's
/// `poll_output` and feeding its frames to the other until both have finished. The responder looks
/// keys up in `directory` and checks `replay`. The first error either side returns ends the run.
pub fn run_in_memory(
    initiator: &mut Initiator,
    responder: &mut Responder,
    directory: &dyn KeyDirectory,
    replay: &ReplayCache,
    now: Instant,
) -> Result<InMemoryRun, HandshakeError> {
    let mut frames = Vec::new();
    let (mut done_i, mut done_r) = (None, None);
    // Three messages take two rounds; a round that moves no frame would repeat for ever.
    loop {
        let out = chaincall_io::drain(|| initiator.poll_output());
        done_i = done_i.or(out.events.into_iter().next());
        let mut moved = !out.transmits.is_empty();
        for frame in out.transmits {
            responder.handle_input(&frame.contents, directory, replay, now)?;
            frames.push(frame.contents);
        }
        let out = chaincall_io::drain(|| responder.poll_output());
        done_r = done_r.or(out.events.into_iter().next());
        moved |= !out.transmits.is_empty();
        for frame in out.transmits {
            initiator.handle_input(&frame.contents, now)?;
            frames.push(frame.contents);
        }
        match (done_i.take(), done_r.take()) {
            (Some(initiator), Some(responder)) => {
                return Ok(InMemoryRun {
                    initiator,
                    responder,
                    frames,
                });
            }
            (i, r) if moved => (done_i, done_r) = (i, r),
            _ => return Err(HandshakeError::ApiMisuse("in-memory run stalled")),
        }
    }
}
