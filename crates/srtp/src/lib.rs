//! Sans-IO SRTP and SRTCP (RFC 3711, RFC 7714) for chaincall's media, usable by anyone.
//!
//! One [`SrtpSession`] per master key (as MIKEY or SDES deliver it); per-SSRC state is created on
//! demand, bounded by [`SrtpConfig::with_max_streams`]. Packets are transformed in place in the
//! caller's buffer: no socket, no clock, no allocation per packet.
//!
//! ```
//! use chaincall_srtp::{Profile, SrtpConfig, SrtpSession};
//!
//! # fn main() -> Result<(), chaincall_srtp::SrtpError> {
//! let key = [0x11u8; 16];
//! let salt = [0x22u8; 14];
//! let config = SrtpConfig::new(Profile::AesCm128HmacSha1_80);
//! let mut sender = SrtpSession::new(config.clone(), &key, &salt)?;
//! let mut receiver = SrtpSession::new(config, &key, &salt)?;
//!
//! // A 12-byte RTP header (V=2, PT 0, seq 1, ts 160, SSRC 0xcafe) and a G.711 payload.
//! let mut packet = Vec::with_capacity(172 + sender.srtp_overhead());
//! packet.extend_from_slice(&[0x80, 0, 0, 1, 0, 0, 0, 160, 0, 0, 0xca, 0xfe]);
//! packet.extend_from_slice(&[0xd5; 160]);
//! let plain = packet.clone();
//!
//! sender.protect_rtp(&mut packet)?; // grows by the 10-byte tag, within capacity
//! assert_ne!(packet[12..172], plain[12..]);
//! let mut replayed = packet.clone();
//! receiver.unprotect_rtp(&mut packet)?;
//! assert_eq!(packet, plain);
//! // The same packet again is a replay.
//! assert_eq!(receiver.unprotect_rtp(&mut replayed), Err(chaincall_srtp::SrtpError::Replayed));
//! # Ok(())
//! # }
//! ```
//!
//! # What it implements
//!
//! | item | where |
//! | --- | --- |
//! | AES_CM_128_HMAC_SHA1_80 / _32 | RFC 3711 §4.1.1, §4.2.1; RFC 4568 §6.2 (SRTCP keeps an 80-bit tag) |
//! | AEAD_AES_128_GCM / AEAD_AES_256_GCM | RFC 7714 §8–9, §11 (KDF with the 96-bit salt × 2^16, erratum 4938), §14 |
//! | key derivation, kdr 0 | RFC 3711 §4.3 (AES-256 PRF per RFC 6188 for 32-octet master keys) |
//! | rollover counter, sequence wrap | RFC 3711 §3.3.1; initial ROC per stream via [`SrtpSession::add_stream`] |
//! | replay window, 64 to 32768 packets | RFC 3711 §3.3.2, for SRTP and SRTCP |
//! | MKI | RFC 3711 §3.1: sent when configured, required on receipt |
//! | packet limits 2^48 / 2^31 | RFC 3711 §9.2: [`SrtpSession::key_status`], [`SrtpError::KeyLimitReached`] |
//! | SRTCP with E = 0 on receipt | RFC 3711 §3.4, RFC 7714 §9.2 (we always send E = 1) |
//!
//! Tags are compared in constant time (`subtle`). Session keys, AES key schedules and HMAC states
//! are zeroized on drop; `Debug` shows no key material, and this crate logs nothing. One gap: the
//! GHASH subkey inside `aes-gcm` 0.10 is not zeroized (that crate's GHASH has no zeroize hook).
//!
//! # Why our own, and why this backend (measured on the project machine: 2-core AMD EPYC,
//! AES-NI, PCLMULQDQ and SHA-NI; one core; 172-byte RTP packet, 12-byte header + 160 payload)
//!
//! `webrtc-srtp` 0.17.2 (pure Rust, RustCrypto; release, even with `-C target-cpu=native`):
//! AES_CM_128_HMAC_SHA1_80 1.17–1.36 M protect/s, 1.05–1.33 M unprotect/s; AEAD_AES_128_GCM
//! 1.38–1.70 M protect/s, 0.98–2.05 M unprotect/s. The bar is native libsrtp 2.7 + OpenSSL 3.5,
//! about 1.9 M and 2.6 M protect/s: it misses both, and its API returns a fresh `Bytes` per packet
//! (an allocation) instead of working in place. So: our own.
//!
//! Ours against native libsrtp in the same run (`chaincall bench srtp`, machine under load ≈ 16,
//! so absolute numbers are low; the ratio is what counts): AES_CM_128_HMAC_SHA1_80 0.97 M / 0.94 M
//! protect/unprotect per s against libsrtp's 0.42 M / 0.37 M (2.3× / 2.5×); AEAD_AES_128_GCM
//! 1.17 M / 1.06 M against 0.58 M / 0.54 M (2.0× / 2.0×).
//!
//! Backend: RustCrypto on alloy's generation (`aes` 0.8 with run-time AES-NI detection, `aes-gcm`
//! 0.10 with PCLMULQDQ GHASH, `sha1` 0.10 whose block function uses SHA-NI when present). HMAC is
//! built on the raw SHA-1 block function with the keyed inner/outer states precomputed per session,
//! and AES-CM keystream is generated in one batched `encrypt_blocks` call per packet. Measured
//! against `ring` 0.17 and `aws-lc-rs` on the same primitives: their HMAC-SHA1 alone is slower than
//! our whole AES-CM+HMAC protect (they re-key per message); their AES-GCM seal is 1.3–1.7× faster
//! than `aes-gcm` 0.10, which we do not need to be ahead of libsrtp, so RustCrypto stays (one crypto
//! stack, no C build). All numbers: `crates/srtp/BENCH.md`.

#![forbid(unsafe_code)]
// generic-array 0.14 marks itself deprecated in favour of 1.x, but 0.14 is what the pinned
// RustCrypto generation (aes 0.8, aes-gcm 0.10, sha1 0.10) takes in its APIs.
#![allow(deprecated)]

mod aes_cm;
mod error;
mod hmac;
mod profile;
mod replay;
mod session;
mod transform;
mod types;

pub use error::SrtpError;
pub use profile::Profile;
pub use session::{
    KeyStatus, MAX_MKI_LEN, REKEY_MARGIN, SRTCP_PACKET_LIMIT, SRTP_PACKET_LIMIT, SrtpConfig,
    SrtpSession,
};
pub use types::{Roc, SeqNo, Ssrc, StreamState};
