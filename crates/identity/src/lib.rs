//! Identities in chaincall, shared by every part that reads or uses the on-chain keystore.
//!
//! - [`IdentityName`]: who an entry belongs to — a subscriber's E.164 number ([`PhoneNumber`]) or a
//!   server's domain name ([`DomainName`]). Both are validated and normalised here, off-chain; the chain
//!   stores the hash of [`IdentityName::canonical`], whose `tel:` / `dns:` prefixes keep numbers and
//!   names from ever colliding.
//! - [`IdentityKey`] / [`PublicIdentityKey`]: the identity key pair whose public half lives on chain,
//!   tagged by [`KeyType`] so the algorithm can change later (P-256 first: it is what phones' hardware
//!   keystores hold). Signatures are ECDSA P-256 with SHA-256 ([`IdentitySignature`]).
//! - [`ecies`]: one-shot public-key encryption to an identity key (ECDH + HKDF-SHA-256 + AES-256-GCM),
//!   the workspace's only ECIES.
//! - [`provider`]: the [`CryptoProvider`] (sign, verify, ECDH, ephemeral keys) that the handshake,
//!   MIKEY and ECIES run on: [`RustCrypto`] by default, OpenSSL from `chaincall-tls-psk`.
//! - [`Randomness`]: the injectable randomness source (OS CSPRNG in production, seeded in tests).
//! - [`Secret`]: a value zeroized on drop and `<redacted>` in `Debug`, for every crate's keys.
//! - [`directory`]: the [`KeyDirectory`] interface through which protocol cores (MIKEY, the handshakes)
//!   ask "what is the approved key of this identity?" without depending on chain code.
//!
//! - [`continuity`]: the phone's key pins, so that a key cannot change without an on-chain record.
//! - [`safety`]: Signal-style safety numbers ([`SafetyNumber`], 60 digits per pair of identities)
//!   and single-key [`Fingerprint`]s (30 digits), for people to compare keys.
//! - [`secret_file`]: files holding secrets, written 0600 and refused when group or world readable.
//!
//! Secret keys are zeroized on drop and never appear in `Debug` output. Randomness comes from the OS
//! CSPRNG unless a caller passes another source.
#![forbid(unsafe_code)]

pub mod continuity;
pub mod directory;
pub mod ecies;
mod error;
mod key;
mod name;
pub mod provider;
mod random;
pub mod safety;
mod secret;
pub mod secret_file;

pub use continuity::{ContinuityError, KeyPins};
pub use directory::{DirectoryEntry, DirectoryError, KeyDirectory, KeyStatus, StaticDirectory};
pub use error::{KeyError, NameError};
pub use key::{IdentityKey, IdentitySignature, KeyType, PublicIdentityKey};
pub use name::{DomainName, IdentityName, PhoneNumber};
pub use provider::{CryptoProvider, RustCrypto};
pub use random::Randomness;
pub use safety::{Fingerprint, SafetyNumber};
pub use secret::Secret;
pub use secret_file::{
    Overwrite, SecretFileError, check_secret_file, read_secret_file, write_secret_file,
};
