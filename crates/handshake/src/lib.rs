//! chaincall's generic PSK handshake: two on-chain identities in, a fresh pre-shared key out.
//!
//! Two protocols, both binding each party's [`IdentityName`](chaincall_identity::IdentityName) to the
//! key approved for it in the keystore contract, looked up through a
//! [`KeyDirectory`](chaincall_identity::KeyDirectory) (unknown, pending and revoked keys abort):
//!
//! | protocol | messages | authentication | forward secrecy | key confirmation |
//! | --- | --- | --- | --- | --- |
//! | [`Protocol::Nsl`] Needham–Schroeder–Lowe | `{Na,A}pkB`, `{Na,Nb,B}pkA`, `{Nb}pkB` (ECIES) | mutual, by decryption | **no** | both, by returned nonces |
//! | [`Protocol::Sts`] Station-to-Station | `gx,A,B`; `gy,sig_B,mac_B`; `sig_A,mac_A` | mutual, by signature over both ephemerals, both names, the transcript | yes | both, by HMAC under derived keys |
//!
//! Both yield an [`Established`]: a 32-byte [`Psk`] (zeroized, never printed), its opaque
//! [`PskIdentity`] (16 bytes; hex on the TLS wire), the authenticated peer and a lifetime. The wire
//! format is in [`wire`]; the protocols, their guarantees and how they differ from the paper's Fig. 5
//! are in `docs/handshake.md`.
//!
//! # The loop
//!
//! The core is sans-IO: bytes and time in, bytes and results out. The caller moves the frames (the
//! `chaincall-tls-psk` crate does it over TCP) and passes `now`.
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Instant;
//! use chaincall_handshake::{HandshakeConfig, Initiator, LocalIdentity, Protocol, ReplayCache, Responder};
//! use chaincall_identity::{IdentityKey, IdentityName, StaticDirectory};
//!
//! let (a, b): (IdentityName, IdentityName) = ("+15551230001".parse()?, "sip.example.org".parse()?);
//! let (ka, kb) = (Arc::new(IdentityKey::generate()), Arc::new(IdentityKey::generate()));
//! let mut dir = StaticDirectory::new();
//! dir.approve(a.clone(), ka.public());
//! dir.approve(b.clone(), kb.public());
//!
//! let now = Instant::now();
//! let config = HandshakeConfig::default();
//! let replay = ReplayCache::default();
//! let mut alice = Initiator::new(config.clone(), LocalIdentity::new(a, ka), b.clone(), Protocol::Sts, &dir, now)?;
//! let mut bob = Responder::new(config, LocalIdentity::new(b, kb), now);
//! // Shuttle frames until both are done (a real shell sends them over the network); each drain
//! // ends at `Timeout`, and the `Event` is the finished handshake.
//! let (mut ea, mut eb) = (None, None);
//! while !(alice.is_finished() && bob.is_finished()) {
//!     let out = chaincall_io::drain(|| alice.poll_output());
//!     ea = ea.or(out.events.into_iter().next());
//!     for frame in out.transmits {
//!         bob.handle_input(&frame.contents, &dir, &replay, now)?;
//!     }
//!     let out = chaincall_io::drain(|| bob.poll_output());
//!     eb = eb.or(out.events.into_iter().next());
//!     for frame in out.transmits {
//!         alice.handle_input(&frame.contents, now)?;
//!     }
//! }
//! let (ea, eb) = (ea.unwrap(), eb.unwrap());
//! assert_eq!(ea.psk, eb.psk);
//! assert_eq!(ea.identity, eb.identity);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Contract
//!
//! - Both machines have one poller, `poll_output`, yielding a [`HandshakeOutput`]
//!   (`chaincall_io::Output`): frames for the connection (`Transmit<()>`: the destination is the
//!   connection the shell already holds), the [`Established`] result as the one `Event`, and the
//!   handshake deadline as `Timeout` (`None` once finished or failed). Drain until `Timeout`.
//! - Every error is fatal and sticky; after one, drain `poll_output` to send the alert.
//! - A responder's [`ReplayCache`] is shared by all its handshakes and refuses a replayed message 1.
//! - Randomness (nonces, ephemerals, ECIES) comes from the `LocalIdentity`'s `Randomness` (the OS
//!   CSPRNG unless a test seeds it).
//! - Nothing here logs; `Debug` of secrets prints `redacted`.
#![forbid(unsafe_code)]

mod config;
pub mod crypto;
mod error;
mod kdf;
mod machine;
mod pair;
mod replay;
mod session;
pub mod wire;

#[cfg(test)]
mod lowe_attack;

pub use config::{HandshakeConfig, LocalIdentity, Protocol};
pub use crypto::{CryptoProvider, RustCrypto};
pub use error::HandshakeError;
pub use machine::{HandshakeOutput, Initiator, Responder};
pub use pair::{InMemoryRun, run_in_memory};
pub use replay::ReplayCache;
pub use session::{Established, Psk, PskIdentity};
pub use wire::{AlertCode, MessageType};
