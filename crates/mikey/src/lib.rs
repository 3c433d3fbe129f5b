//! MIKEY (RFC 3830) for chaincall: the key management that carries SRTP keys in the SDP of a call,
//! keyed by identities whose public keys live in the on-chain keystore.
//!
//! A sans-IO core: bytes and time in, bytes and keys out; no sockets, no clock, no chain code. Keys
//! of peers come through [`chaincall_identity::KeyDirectory`]; `now` is passed in as [`NtpTime`].
//!
//! - [`message`]: the RFC 3830 codec (HDR, KEMAC, PKE, DH, SIGN, T, ID/IDR, CERT, CHASH, V, SP, RAND,
//!   ERR, key data, general extensions). Decoding borrows; encode∘decode is the identity; every
//!   error names the byte offset.
//! - [`Initiator`] / [`Responder`]: the PKE (the paper's mode, Fig. 6), DH-SIGN (Station-to-Station,
//!   Fig. 7) and PSK methods; each accepted exchange yields [`SrtpKeys`] per crypto session by the
//!   RFC 3830 §4.1 PRF ([`prf`]).
//! - [`ReplayCache`]: §5.4 timestamp window and a replay cache keyed on the exchange (mode, IDi,
//!   CSB ID, T, RAND), bounded in total and per initiator.
//! - [`sdp`]: RFC 4567 `a=key-mgmt:mikey` glue.
//!
//! ```no_run
//! use chaincall_identity::{IdentityKey, StaticDirectory};
//! use chaincall_mikey::{Initiator, NtpTime, OfferConfig, Responder, ResponderConfig, sdp};
//! # fn demo(alice_key: IdentityKey, bob_key: IdentityKey, dir: StaticDirectory) -> Result<(), chaincall_mikey::MikeyError> {
//! let now = NtpTime::from_system_time(std::time::SystemTime::now());
//! let cfg = OfferConfig::new("+15551230001".parse().unwrap(), "+15551230002".parse().unwrap());
//! // Caller: PKE offer in the INVITE.
//! let mut caller = Initiator::pke(cfg, &alice_key, &dir, now)?;
//! let line = sdp::attribute_line(caller.offer());
//! // Callee: verify against the keystore, get the SRTP keys.
//! let offer = sdp::parse_attribute(&line).unwrap().unwrap();
//! let mut callee = Responder::new(ResponderConfig::new("+15551230002".parse().unwrap()), bob_key);
//! let accepted = callee.handle_offer(&offer, &dir, now)?;
//! // Caller: the V answer from the 200 OK confirms Bob derived the same keys.
//! let keys = caller.handle_answer(accepted.answer.as_deref().unwrap(), &dir, now, 60)?;
//! assert_eq!(accepted.keys[0].dangerous_master_key(), keys[0].dangerous_master_key());
//! # Ok(()) }
//! ```
//!
//! # Departures from draft-ietf-msec-mikey-ecc and the registries
//!
//! The ECC draft (expired 2007) could only be consulted by its title page and table of contents
//! here (DHSIGN with ECDSA/ECGDSA, DHSIGN with ECDH, MIKEY-ECIES); its values were never entered in
//! IANA's MIKEY registries. chaincall therefore:
//!
//! - PKE: encrypts the envelope key with chaincall's ECIES ([`chaincall_identity::ecies`]: P-256
//!   ECDH with an ephemeral key, HKDF-SHA-256, AES-256-GCM) instead of the draft's ECIES parameters
//!   (SEC1 KDF/MAC choices). The ECIES context is `chaincall mikey pke env_key v2` followed by
//!   IDi, IDr, the CSB ID and RAND, so an envelope opens only for the exchange it was sealed for
//!   (plain RFC 3830 binds none of these to the envelope; `docs/mikey.md` says why it matters);
//! - offers must carry IDr (optional in RFC 3830), and a PSK is bound to the one peer it is shared
//!   with;
//! - SIGN: uses S type 3 for ECDSA P-256 SHA-256 with a 64-byte `r || s` signature. IANA has 0 and
//!   1 (RSA, RFC 3830) and 2 (ECCSI, RFC 6509), so a draft-era value 2 would now mean ECCSI;
//! - DH: uses DH-Group 3 for P-256 with the DH value a SEC1 uncompressed point (65 bytes); the TGK is
//!   the ECDH x-coordinate, as RFC 3830 §3.3 makes the TGK the raw DH result.
//!
//! Everything else (header, payload formats, PRF, key derivations, AES-CM/HMAC-SHA-1 KEMAC) is
//! RFC 3830.
//!
//! # What Wireshark (tshark 4.0, Debian 12) makes of it
//!
//! Checked by `tests/tshark.rs` on SIP INVITE / 200 OK pcaps: PKE and PSK offers and the V answers
//! decode completely (HDR, CS ID map, T, RAND, IDs, every SP parameter, KEMAC, PKE, SIGN; S type 3
//! shows as "Unknown (3)"), with no malformed or expert warnings. DH messages decode up to the DH
//! payload: its value has no length field (§6.4), the dissector derives it from the group, knows
//! only groups 0-2, and stops there without an error. Wireshark also dissects `a=key-mgmt` only at
//! SDP session level, not media level (both are valid, RFC 4567 §3.1).
//!
//! Secrets (TGK, envelope key, PSK, SRTP keys) are zeroized on drop and never printed by `Debug`.
#![forbid(unsafe_code)]

pub mod error;
pub mod inspect;
pub mod message;
pub mod policy;
pub mod prf;
pub mod replay;
pub mod sdp;
mod session;
pub mod time;
pub mod uri;

pub use error::{DecodeError, DecodeErrorKind, EncodeError, MikeyError};
pub use message::Message;
pub use policy::SrtpPolicy;
pub use replay::ReplayCache;
pub use session::{
    Accepted, Initiator, Mode, OfferConfig, OfferSigner, Responder, ResponderConfig, SrtpKeys,
    Stream,
};
pub use time::NtpTime;
