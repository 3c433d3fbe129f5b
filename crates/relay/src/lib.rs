//! Control of the media relay, rtpengine, over its NG protocol, so that it carries SRTP it can
//! never read.
//!
//! - [`bencode`]: the NG dictionary format, decoded under strict [`bencode::Limits`], never panicking.
//! - [`ng`]: framing (cookie, space, dictionary) and typed requests and replies, without I/O.
//! - [`sdp`]: what rtpengine is shown of an SDP (no keys, plain-RTP profile) and how its addresses
//!   and ports are spliced back into the original, so the far side gets the caller's own
//!   `a=key-mgmt` / `a=crypto` lines byte for byte.
//! - [`NgClient`]: a tokio client with cookies, retransmission and a timeout.
//! - [`daemon`]: starting rtpengine in the foreground (tests, `demo --nat`).
//! - [`capture`]: checking that a capture taken at the relay holds SRTP only.
//!
//! ```no_run
//! # async fn demo() -> Result<(), chaincall_relay::NgError> {
//! use chaincall_relay::{NgClient, NgClientConfig, ng::Offer};
//! let relay = NgClient::new("127.0.0.1:2223".parse().unwrap(), NgClientConfig::default());
//! let sdp_for_callee = relay
//!     .offer(Offer {
//!         call_id: "a84b4c76e66710".into(),
//!         from_tag: "1928301774".into(),
//!         sdp: "v=0\r\n…".into(),
//!         received_from: None,
//!     })
//!     .await?;
//! # let _ = sdp_for_callee;
//! relay.delete("a84b4c76e66710").await?;
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]

pub mod bencode;
pub mod capture;
mod client;
pub mod daemon;
pub mod ng;
pub mod sdp;

pub use client::{NgClient, NgClientConfig, NgError};
