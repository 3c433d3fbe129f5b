//! chaincall's phone: the subscriber's side of chaincall, as a library (what a mobile app would
//! embed) and behind `chaincall phone …`.
//!
//! | module | what | kind |
//! | --- | --- | --- |
//! | [`audio_files`] | the audio a call sends (`audio_in` or a built-in signal) and the recordings of what it received | file |
//! | [`device_audio`] | calls on the sound card (`audio = "device"`): microphone and speaker in a call's media task, silence when a device is missing or fails | tokio |
//! | [`calls`] | a running phone: connecting, the registration check (SIP password refreshed), the call and listen loops | tokio |
//! | [`report`] | call reports and callers as JSON (`--json`, `listen`) | plain |
//! | [`chain_access`] | the config's chain node and the header lookups are proven against (pinned on first use) | async |
//! | [`onboarding`] | onboarding (Fig. 2) and device recovery against the wallet server; the SIP password fetched and stored | async |
//! | [`config_file`] | the configuration file: parsed once into checked types, trust pinned on first use, the assigned number stored (comments kept) | file |
//! | [`store`] | identity key, wallet key and SIP password at rest (Argon2id + AES-256-GCM, mode 0600) | file |
//! | [`contacts`] | key pins and what the user knows of each contact, persisted across processes (JSON, 0600, locked) | file |
//! | [`control`] | the control socket through which `phone hangup` ends a running phone's calls (Unix socket, 0600) | tokio |
//! | [`key_file`] | the config's key file: opened only for the config's number, never overwritten by another identity | file |
//! | [`keys`] | key lookups on chain, proven against a trusted header ([`chaincall_chain::verified`]) and timed | async |
//! | [`negotiation`] | SDP offer/answer: MIKEY-PKE / DH-SIGN in `a=key-mgmt` (RFC 4567), SDES (RFC 4568), G.711 | sans-IO |
//! | [`core`] | call control: registration, calls, MIKEY, caller checks; key look-ups and media as [`core::Need`]s the shell answers | sans-IO |
//! | [`ua`] | the SIP user agent: REGISTER with digest auth, INVITE/ACK/BYE/CANCEL, dialogs | sans-IO |
//! | [`caller`] | who is calling: the From's claim and what the offer proves about it, before ringing | sans-IO |
//! | [`rotation`] | rotating the identity key on chain, crash safe: a pending key in the key file, settled against the proven entry | async |
//! | [`link`] | the signalling link's timing: back-off between reconnect attempts, keep-alives | plain |
//! | [`phone`] | the shell executing [`core::PhoneCore`]: TLS-PSK (or TCP) signalling, key look-ups beside the loop, SRTP media tasks, call reports | tokio |
//!
//! A call, caller's side (DESIGN.md, flow 3): look the callee's key up on chain and verify the
//! proof; make a MIKEY-PKE offer (a fresh SRTP master key per direction, encrypted to the callee's
//! key, signed with ours); INVITE through the SIP server over TLS-PSK; on the 200 OK key SRTP and
//! send G.711 audio. The callee looks the caller's key up the same way and refuses the call unless
//! the MIKEY signature verifies against the caller's approved on-chain key and the MIKEY identity
//! is the one in `From`. The SIP server only ever sees the encrypted envelope.
//!
//! SDES calls (standard phones such as baresip) are encrypted, but their keys travel inside the
//! signalling and are not bound to any on-chain identity; they are reported as "encrypted, key not
//! verified on chain" ([`negotiation::KeyMode::verified_on_chain`]).
//!
//! Secrets (identity and wallet keys, SIP password, SRTP keys) never reach logs; `--keylog`
//! writes SRTP master keys to a file on request, with a warning.
#![forbid(unsafe_code)]

pub mod audio_files;
pub mod caller;
pub mod calls;
pub mod chain_access;
pub mod config_file;
pub mod contact_view;
pub mod contacts;
pub mod control;
pub mod core;
pub mod device_audio;
pub mod error;
pub mod key_file;
pub mod keys;
pub mod link;
pub mod negotiation;
pub mod onboarding;
pub mod phone;
pub mod report;
pub mod rotation;
pub mod store;
pub mod trust;
pub mod ua;
pub mod zrtp_media;
pub mod zrtp_store;

pub use caller::{AcceptUnverified, CallerId, Verification};
pub use chaincall_audio_device::VoiceProcessing;
pub use config_file::{ConfigError, PhoneFileConfig, SipTransport};
pub use contacts::{ContactsError, ContactsStore};
pub use device_audio::{AudioMode, DeviceAudio};
pub use error::{CallError, PhoneError};
pub use keys::{KeyLookup, LookedUp};
pub use negotiation::KeyMode;
pub use phone::{
    CallReport, DEFAULT_CODECS, DEFAULT_MIKEY_REPLAY_QUOTA, Phone, PhoneConfig, PhoneEvent,
    PhoneEvents, SetupTimings, Signalling,
};
pub use store::PhoneSecrets;
