//! Sans-IO SIP core for chaincall: RFC 3261 messages, transactions and dialogs, SDP (RFC 8866) and
//! digest authentication (RFC 7616, RFC 8760).
//!
//! Nothing here opens a socket, reads a clock or spawns a task: bytes and `now: Instant` go in,
//! bytes and events come out. The `sipd` server and the phone are thin shells around it.
//!
//! | module | what | RFC |
//! | --- | --- | --- |
//! | [`message`] | zero-copy parser, owned builder, proxy rewriter | 3261 §7, §18.3, §20, §25 |
//! | [`header`] | typed borrowing views: Via, name-addr, CSeq, Contact, auth headers | 3261 §20 |
//! | [`uri`] | SIP URI view | 3261 §19.1 |
//! | [`framing`] | Content-Length framing for TCP/TLS with limits | 3261 §18.3 |
//! | [`sdp`] | SDP parse and build, `a=crypto`, `a=key-mgmt` | 8866, 4568, 4567 |
//! | [`transaction`] | client and server transactions, timers A–K, endpoint | 3261 §17 |
//! | [`dialog`] | UAC/UAS dialog state, route set, CSeq | 3261 §12 |
//! | [`digest`] | challenges, responses, verification, Kamailio HA1 | 7616, 8760, 2617 |
//!
//! Parsing a received datagram and answering it:
//!
//! ```
//! use chaincall_sip::message::{Message, response_to};
//! let raw = b"OPTIONS sip:bob@example.com SIP/2.0\r\n\
//! Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKabc\r\n\
//! From: <sip:alice@example.com>;tag=1\r\nTo: <sip:bob@example.com>\r\n\
//! Call-ID: x@192.0.2.1\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n";
//! let msg = Message::parse(raw)?;
//! let ok = response_to(&msg, 200, "OK", Some("srv1")).to_bytes();
//! assert!(ok.starts_with(b"SIP/2.0 200 OK\r\n"));
//! # Ok::<(), chaincall_sip::error::ParseError>(())
//! ```
#![forbid(unsafe_code)]

pub mod dialog;
pub mod digest;
pub mod error;
pub mod framing;
pub mod header;
pub mod message;
pub mod sdp;
pub mod transaction;
pub mod uri;

pub use error::{DigestError, FramingError, ParseError, SdpError, UsageError};
pub use header::{CSeq, Contact, HeaderName, Method, NameAddr, Via};
pub use message::{Message, MessageBuf, response_to};
