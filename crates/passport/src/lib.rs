//! PASSporTs (RFC 8225) in SIP Identity headers (RFC 8224), signed by chaincall's on-chain
//! identity keys instead of certificates. A pure library: no I/O, no clock (`now` is an
//! argument), no chain access (the caller looks the key up, verified, and passes it in).
//!
//! The token is standard ES256 JWS, so stock STIR verifiers (`secsipidx`, Kamailio's
//! `secsipid`) verify it given the public key:
//!
//! ```text
//! Identity: eyJhbGciOiJFUzI1NiIsImtpZCI6….eyJjY21rIjp7…._Xb3…;info=<chaincall:keystore:31337:0x5fbd…:tel:+15551230001>;alg=ES256
//! ```
//!
//! - JWS header `{"alg":"ES256","kid":"<info URI>","typ":"passport"}`: no `x5u` (there is no
//!   certificate) and no `ppt`. The `kid` repeats the `info` URI inside the signature; a verifier
//!   refuses a token whose `kid` (or `x5u`) differs from `info`.
//! - Base PASSporT, no `ppt` extension: `secsipidx` and Kamailio's `secsipid` accept no `ppt`
//!   but `shaken`, and `shaken` means certificate-based attestation that this is not. The one
//!   private claim (RFC 8225 §8.3) is `ccmk`, ignored by verifiers that do not know it and
//!   required by ours.
//! - Claims, in RFC 8225 §9 canonical JSON: `ccmk` `{"alg":"sha-256","dig":…}` ([`MediaBinding`]),
//!   `dest` `{"tn":[…]}`/`{"uri":[…]}`, `iat`, `orig` `{"tn":…}`/`{"uri":…}`, `origid` (UUID).
//! - `info`: a [`KeyLocator`] URI, `chaincall:keystore:<chain id>:<keystore>:<identity>`, never
//!   an HTTPS URL.
//!
//! ```no_run
//! use chaincall_identity::IdentityKey;
//! use chaincall_passport::*;
//! # fn demo(alice: IdentityKey, keystore: KeystoreAddress, sdp: &str, now: u64) -> Result<(), PassportError> {
//! let alice_number: chaincall_identity::PhoneNumber = "+15551230001".parse().unwrap();
//! let bob = Party::Tn("+15551230002".parse().unwrap());
//! let locator = KeyLocator::new(31337, keystore, alice_number.clone().into());
//! let claims = Claims {
//!     orig: Party::Tn(alice_number.clone()),
//!     dest: Dest::single(bob.clone()),
//!     iat: now,
//!     origid: new_origid(&mut rand_core::OsRng),
//!     media: MediaBinding::from_sdp(sdp),
//! };
//! let value = IdentityHeader::sign(&alice, &locator, &claims)?.to_string();
//!
//! // The callee (or its proxy): parse, look the key up on chain (verified), verify.
//! let mut verifier = Verifier::new(VerifierConfig::new(31337, keystore), MemoryReplayCache::default());
//! let header = require_identity(Some(&value))?;
//! verifier.check_locator(&header)?;
//! let key = alice.public(); // in real life: the approved key of header.locator().name()
//! let media = MediaBinding::from_sdp(sdp);
//! let orig = Party::Tn(alice_number); // the request's From user
//! let expected = Expected { orig: &orig, dest: &bob, media: &media };
//! let verified = verifier.verify(&header, &key, &expected, now)?;
//! assert_eq!(verified.orig.claim_value(), "15551230001");
//! # Ok(()) }
//! ```
//!
//! Every refusal is a [`PassportError`]; [`PassportError::status`] is its RFC 8224 response
//! (403 Stale Date, 428, 436, 437, 438). Docs: `docs/caller-identity.md`.
#![forbid(unsafe_code)]

mod claims;
mod error;
mod info;
mod pem;
mod replay;
mod token;
mod verify;

pub use claims::{Claims, Dest, MEDIA_CLAIM, MediaBinding, Party, new_origid};
pub use error::{
    BAD_IDENTITY_INFO, INVALID_IDENTITY_HEADER, PassportError, SERVICE_UNAVAILABLE, STALE_DATE,
    SipStatus, UNSUPPORTED_CREDENTIAL, USE_IDENTITY_HEADER,
};
pub use info::{INFO_SCHEME, KeyLocator, KeystoreAddress};
pub use pem::{KAMAILIO_KEY_TABLE, kamailio_key_route, public_key_pem};
pub use replay::{MemoryReplayCache, ReplayCache, ReplayError};
pub use token::{IdentityHeader, MAX_IDENTITY_LEN, Passport, PassportId, require_identity};
pub use verify::{Expected, Verified, Verifier, VerifierConfig};
