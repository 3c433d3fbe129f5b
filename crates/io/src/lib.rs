//! The one output shape of chaincall's sans-IO cores (issue 15 item 5), after str0m's
//! `Rtc::poll_output`.
//!
//! Every core that emits packets (the SIP endpoint and its transactions, sipd's core, the media
//! session, the handshake machines, the phone's user agent) has one poller,
//! `poll_output(..) -> Output<Event, Destination>` (the media session's takes `now`, as its
//! packets fall due with time), so every shell drives it with the same loop:
//!
//! 1. Call `poll_output` until it yields [`Output::Timeout`]: send each [`Output::Transmit`] to its
//!    destination, act on each [`Output::Event`].
//! 2. Wait for whichever comes first: input (a datagram, a frame, a command) or the deadline.
//! 3. Feed it to the core (`handle_input`, `handle_timeout`, a command method), then go to 1.
//!
//! [`Output::Timeout`] ends a drain: nothing else is queued until the core gets input or time.
//! Early or repeated timeouts are harmless in every core.
//!
//! ```
//! use std::net::SocketAddr;
//! use std::time::Instant;
//! use chaincall_io::{Output, Transmit};
//!
//! // A toy core that answers once, then waits for ever.
//! struct Echo(Option<Transmit>);
//! impl Echo {
//!     fn poll_output(&mut self) -> Output<&'static str> {
//!         match self.0.take() {
//!             Some(t) => Output::Transmit(t),
//!             None => Output::Timeout(None),
//!         }
//!     }
//! }
//!
//! let to: SocketAddr = "192.0.2.1:5060".parse()?;
//! let mut core = Echo(Some(Transmit { destination: to, contents: b"pong".to_vec() }));
//! let deadline: Option<Instant> = loop {
//!     match core.poll_output() {
//!         Output::Transmit(t) => assert_eq!(t.contents, b"pong"), // a shell sends it here
//!         Output::Event(e) => println!("{e}"),
//!         Output::Timeout(at) => break at,
//!     }
//! };
//! assert_eq!(deadline, None); // nothing scheduled: wait for input alone
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Destinations
//!
//! Datagram cores that address each packet (the SIP endpoint, sipd's core) use `D =`
//! [`SocketAddr`], the default. Cores bound to one connection the shell already holds (the
//! handshake machines over TCP, the phone's user agent on its proxy connection, a lone SIP
//! transaction whose owner keeps the remote) have "the connection" as their only destination,
//! written `D = ()`: the shell writes the contents to the socket it holds for that core. A core
//! bound to one peer over several ports names the port: the media session's `D` is its channel
//! (RTP or RTCP), which the shell maps to the negotiated address.
//!
//! A core whose events answer the input that caused them (the media session's per-packet
//! results) returns them from its `handle_input` and uses
//! [`Infallible`](std::convert::Infallible) as `E`: its `poll_output` never yields an `Event`.
#![forbid(unsafe_code)]
mod error_chain;
pub use error_chain::ErrorChain;

use std::fmt;
use std::net::SocketAddr;
use std::time::Instant;

/// Bytes a core wants sent, and where.
///
/// `D` is the destination: a [`SocketAddr`] for datagram cores, `()` for cores bound to one
/// connection (see the crate docs).
#[derive(Clone, PartialEq, Eq)]
pub struct Transmit<D = SocketAddr> {
    /// Where to send: a socket address, or `()` for "the connection this core runs on".
    pub destination: D,
    /// The encoded packet or frame, ready for the wire.
    pub contents: Vec<u8>,
}

impl<D: fmt::Debug> fmt::Debug for Transmit<D> {
    // Contents may be key-bearing frames (handshake, MIKEY in SIP bodies): print the size only.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Transmit")
            .field("destination", &self.destination)
            .field("len", &self.contents.len())
            .finish()
    }
}

/// What a core's `poll_output` yields: bytes to send, an event for the application, or the end of
/// this drain with the next deadline.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use = "a core's output must be sent, handled or waited for"]
pub enum Output<E, D = SocketAddr> {
    /// Send these bytes; poll again.
    Transmit(Transmit<D>),
    /// Something happened the application acts on; poll again.
    Event(E),
    /// Nothing more is queued. Wait for input or this deadline (call the core's `handle_timeout`
    /// when it passes); `None` means no timer runs, so wait for input alone.
    Timeout(Option<Instant>),
}

impl<E, D> Output<E, D> {
    /// Builds the transmit variant.
    pub fn transmit(destination: D, contents: Vec<u8>) -> Self {
        Self::Transmit(Transmit {
            destination,
            contents,
        })
    }

    /// The transmit, if this is one (tests and one-shot callers that expect a packet next).
    pub fn into_transmit(self) -> Option<Transmit<D>> {
        match self {
            Self::Transmit(t) => Some(t),
            _ => None,
        }
    }

    /// The event, if this is one (tests and one-shot callers that expect an event next).
    pub fn into_event(self) -> Option<E> {
        match self {
            Self::Event(e) => Some(e),
            _ => None,
        }
    }

    /// The deadline, if this is the end of a drain: `Some(None)` when no timer runs.
    pub fn into_timeout(self) -> Option<Option<Instant>> {
        match self {
            Self::Timeout(at) => Some(at),
            _ => None,
        }
    }
}

/// Everything one drain of a core yielded, grouped by kind (each kind in the order yielded).
#[derive(Debug)]
pub struct Drained<E, D = SocketAddr> {
    /// The transmits, in order.
    pub transmits: Vec<Transmit<D>>,
    /// The events, in order.
    pub events: Vec<E>,
    /// The deadline the drain ended with (`None`: no timer runs).
    pub timeout: Option<Instant>,
}

/// Polls until `Timeout` and collects what came out. For tests and batch callers; a shell that
/// must interleave sends and events acts on each [`Output`] as it comes instead.
pub fn drain<E, D>(mut poll: impl FnMut() -> Output<E, D>) -> Drained<E, D> {
    let mut drained = Drained {
        transmits: Vec::new(),
        events: Vec::new(),
        timeout: None,
    };
    loop {
        match poll() {
            Output::Transmit(t) => drained.transmits.push(t),
            Output::Event(e) => drained.events.push(e),
            Output::Timeout(at) => {
                drained.timeout = at;
                return drained;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transmit_debug_hides_contents() {
        let t = Transmit {
            destination: (),
            contents: b"secret frame".to_vec(),
        };
        assert_eq!(format!("{t:?}"), "Transmit { destination: (), len: 12 }");
    }

    #[test]
    fn drain_stops_at_the_timeout_and_keeps_order() {
        let mut queue = vec![
            Output::<u8, ()>::Timeout(None),
            Output::Event(2),
            Output::transmit((), vec![1]),
            Output::Event(1),
        ];
        let d = drain(|| queue.pop().expect("a drain stops at the first Timeout"));
        assert_eq!(d.events, [1, 2]);
        assert_eq!(d.transmits.len(), 1);
        assert_eq!(d.timeout, None);
    }
}
