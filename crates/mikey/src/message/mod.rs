//! The RFC 3830 wire format: a common header (§6.1) followed by a chain of payloads (§6.2–§6.15),
//! each naming the type of the one after it.
//!
//! [`Message::decode`] borrows from the input: variable-length fields are `&[u8]` views into it.
//! [`Message::encode`] writes into a caller's `Vec`, [`Message::encode_to_slice`] into a caller's slice.
//! The two are exact inverses: every field is represented (next-payload fields are derived from the
//! payload order, reserved bits must be zero), so `encode(decode(b)) == b` for every accepted `b`, and
//! every length and type is checked, with the byte offset of the first offending field in the error.
//!
//! The module is split by concern: `registry` holds the payload type numbers and the IANA value
//! tables, `payload` the payload structs, `decode` and `encode` the two directions of the codec.

mod decode;
mod encode;
mod payload;
mod registry;

pub use decode::{decode_key_data, decode_pke_key_data};
pub use encode::{encode_key_data, encode_pke_key_data};
pub use payload::*;
pub use registry::*;

/// A whole MIKEY message: header and payloads in wire order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message<'a> {
    /// The common header.
    pub header: Header,
    /// The payloads, in order; a SIGN payload can only be last.
    pub payloads: Vec<Payload<'a>>,
}

/// Where each payload sits in the encoded message (byte ranges), for MAC and signature coverage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Spans {
    /// `payloads[i]` occupies `ranges[i]`.
    pub(crate) ranges: Vec<std::ops::Range<usize>>,
}
