//! ZRTP (RFC 6189) for chaincall: a sans-IO key agreement in the media path, yielding SRTP keys
//! for [`chaincall_srtp`] and a Short Authentication String.
//!
//! - [`wire`]: the packet codec, octet for octet as bzrtp (Linphone) lays packets out, with the
//!   CRC-32C trailer ([`crc`]). Decoding borrows, checks every length and never panics.
//! - [`Zrtp`]: the engine, DH mode: Hello/HelloACK, Commit (with §4.2 contention), DHPart1/2,
//!   Confirm1/2, Conf2ACK, Error/ErrorACK, Ping/PingACK; GoClear refused with Error 0x100.
//!   Suite: S256, AES1, HS32/HS80, X255/EC25/DH3k, B32/B256. Hash chain H0..H3 with each
//!   message's MAC checked when the next preimage arrives (§9); retained secrets rs1/rs2 through
//!   a [`SecretCache`]; an auxiliary secret whose mismatch can be made fatal
//!   ([`AuxPolicy::Fatal`]). Tested against a real Linphone (`tests/linphone.rs`).
//!
//! # The loop
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Instant;
//! use chaincall_zrtp::{Event, InMemoryCache, Role, Zid, Zrtp, ZrtpConfig};
//!
//! let now = Instant::now();
//! let alice_cfg = ZrtpConfig::new(Zid([1; 12]), 0x1111, Arc::new(InMemoryCache::new()));
//! let bob_cfg = ZrtpConfig::new(Zid([2; 12]), 0x2222, Arc::new(InMemoryCache::new()));
//! let mut alice = Zrtp::new(alice_cfg, Role::Initiator, now)?;
//! let mut bob = Zrtp::new(bob_cfg, Role::Responder, now)?;
//! // Moves one drain of `from` to `to`; returns the SAS once `from` is secure.
//! fn pump(from: &mut Zrtp, to: &mut Zrtp, now: Instant) -> Option<String> {
//!     let out = chaincall_io::drain(|| from.poll_output());
//!     for t in out.transmits {
//!         to.handle_input(&t.contents, now); // a shell sends it on the media socket
//!     }
//!     out.events.into_iter().find_map(|e| match e {
//!         Event::SecureOn(s) => Some(s.sas.text),
//!         _ => None,
//!     })
//! }
//! let (mut sas_a, mut sas_b) = (None, None);
//! while sas_a.is_none() || sas_b.is_none() {
//!     sas_a = sas_a.or(pump(&mut alice, &mut bob, now));
//!     sas_b = sas_b.or(pump(&mut bob, &mut alice, now));
//! }
//! assert_eq!(sas_a, sas_b);
//! # Ok::<(), chaincall_zrtp::ZrtpError>(())
//! ```
//!
//! # Contract
//!
//! - `poll_output` yields [`ZrtpOutput`]: packets (`Transmit<()>`, for the peer's media address),
//!   then events, then the next deadline (retransmission or handshake limit). Drain it after
//!   `new` and after every `handle_input` / `handle_timeout`.
//! - A refused packet is an [`Event::Error`] and changes nothing; a failure is one
//!   [`Event::Failed`], sticky, with an Error message to the peer where §5.9 has a code.
//! - Randomness (H0, DH keys, IVs, unused secret IDs, the first sequence number) comes from the
//!   config's `Randomness`, seedable in tests.
//! - Nothing here logs. Secrets (DH keys, H0, s0 and every derived key, retained and auxiliary
//!   secrets) are zeroized on drop and print as `redacted`.
//!
//! `docs/zrtp.md` describes the messages, the KDF, what is refused and the chain binding
//! ([`ChainBinding`]).
#![forbid(unsafe_code)]

mod cache;
mod chain;
mod config;
pub mod crc;
mod crypto;
mod engine;
mod error;
mod event;
mod keys;
pub mod wire;

pub use cache::{CacheEntry, InMemoryCache, RetainedSecret, SecretCache};
pub use chain::ChainBinding;
pub use config::{
    AuthTag, AuxBinding, AuxPolicy, AuxSecret, AuxSecretSource, KeyAgreement, Role, SasType,
    ZrtpConfig,
};
pub use crypto::render_sas;
pub use engine::{Zrtp, ZrtpOutput};
pub use error::{DecodeError, ErrorCode, ZrtpError};
pub use event::{AuxStatus, CacheStatus, Event, Sas, SecureOn, SrtpKeys, SrtpMaster, Suite};
pub use wire::{MessageType, Zid};
