//! Errors of the SIP core, one enum per subsystem.
//!
//! Peer faults (a malformed message) are kept apart from caller misuse (an API called in the wrong
//! state). [`ParseError::status_code`] maps a parse failure to the response a server sends, in one
//! place (RFC 3261 §21.4 and RFC 4475 §3.1.2).

use thiserror::Error;

/// A SIP message could not be parsed: the peer sent something RFC 3261 forbids.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ParseError {
    /// The input held no message at all.
    #[error("empty message")]
    Empty,
    /// The header section did not end with an empty line.
    #[error("header section is not terminated by an empty line")]
    Incomplete,
    /// The message is larger than the configured limit.
    #[error("message of {size} bytes exceeds the limit of {limit}")]
    TooLarge {
        /// Size seen (or at least seen so far).
        size: usize,
        /// The configured limit.
        limit: usize,
    },
    /// More header fields than the configured limit.
    #[error("more than {limit} header fields")]
    TooManyHeaders {
        /// The configured limit.
        limit: usize,
    },
    /// The request or status line is malformed (RFC 3261 §7.1, §7.2).
    #[error("malformed start line: {0}")]
    StartLine(&'static str),
    /// The SIP version is not SIP/2.0 (answered with 505, RFC 3261 §8.2.2... §21.5.7).
    #[error("unsupported SIP version")]
    Version,
    /// A header line without a colon, or with a name that is not a token.
    #[error("malformed header line {line}")]
    HeaderLine {
        /// One-based line number inside the message.
        line: usize,
    },
    /// A header field value does not match its grammar (RFC 3261 §25.1).
    #[error("malformed {name} header: {reason}")]
    Header {
        /// The header's canonical name.
        name: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A mandatory header field is absent (RFC 3261 §8.1.1, RFC 4475 §3.3.1).
    #[error("missing mandatory header {0}")]
    MissingHeader(&'static str),
    /// A header that may appear once appears several times (RFC 4475 §3.3.10, §3.3.11).
    #[error("header {0} appears more than once")]
    DuplicateHeader(&'static str),
    /// The CSeq method differs from the request method (RFC 3261 §8.1.1.5, RFC 4475 §3.1.2.17).
    #[error("CSeq method does not match the request method")]
    CSeqMismatch,
    /// Content-Length promises more bytes than arrived (RFC 3261 §18.3, RFC 4475 §3.1.2.2).
    #[error("Content-Length {declared} exceeds the {available} body bytes present")]
    Truncated {
        /// Bytes promised by Content-Length.
        declared: usize,
        /// Bytes actually present after the header section.
        available: usize,
    },
    /// A stream message lacks the Content-Length it must carry (RFC 3261 §18.3, §20.14).
    #[error("stream message without Content-Length")]
    NoContentLength,
}

impl ParseError {
    /// The status code a server answers with (RFC 3261 §21.4.1, §21.5.7, §21.4.12); `None` when the
    /// message is best dropped silently (a malformed response, or nothing to answer).
    pub fn status_code(&self) -> u16 {
        match self {
            ParseError::Version => 505,
            ParseError::TooLarge { .. } => 513,
            _ => 400,
        }
    }
}

/// A stream (TCP/TLS) could not be framed into SIP messages; the connection must be closed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum FramingError {
    /// The header section grew past the message limit before its empty line arrived.
    #[error("header section exceeds {limit} bytes without terminating")]
    HeadersTooLarge {
        /// The configured limit.
        limit: usize,
    },
    /// A complete message would exceed the limit.
    #[error("message of {size} bytes exceeds the limit of {limit}")]
    TooLarge {
        /// Declared size.
        size: usize,
        /// The configured limit.
        limit: usize,
    },
    /// The header section is unusable for framing (no or bad Content-Length).
    #[error("cannot frame message")]
    Parse(#[from] ParseError),
}

/// An SDP description could not be parsed (RFC 8866 §5, §9).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum SdpError {
    /// Not UTF-8 text.
    #[error("SDP is not UTF-8")]
    NotUtf8,
    /// A line is not `<type>=<value>`.
    #[error("line {line}: not of the form <type>=<value>")]
    Line {
        /// One-based line number.
        line: usize,
    },
    /// A line's value does not match its grammar.
    #[error("line {line}: malformed {what}")]
    Field {
        /// One-based line number.
        line: usize,
        /// Which field.
        what: &'static str,
    },
    /// A line of a type this parser does not know, or out of the order of RFC 8866 §5.
    #[error("line {line}: unexpected type {kind:?}")]
    Unexpected {
        /// One-based line number.
        line: usize,
        /// The type letter.
        kind: char,
    },
    /// A mandatory line is missing.
    #[error("missing mandatory {0}= line")]
    Missing(char),
}

/// Digest authentication failed to parse or verify (RFC 7616).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum DigestError {
    /// The header is not a Digest header or lacks a mandatory parameter.
    #[error("malformed digest credentials: {0}")]
    Malformed(&'static str),
    /// The algorithm is not one of MD5, SHA-256, SHA-512-256 (with or without -sess).
    #[error("unsupported digest algorithm")]
    Algorithm,
    /// The qop is not `auth` (auth-int is not offered).
    #[error("unsupported qop")]
    Qop,
}

/// An API was used in a way its docs forbid (caller misuse, not a peer fault).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum UsageError {
    /// The transaction is not in a state that allows this call.
    #[error("transaction state {0} does not allow this call")]
    State(&'static str),
    /// The status code is outside 100..=699.
    #[error("status code {0} is out of range")]
    StatusCode(u16),
    /// The request lacks a header the operation needs.
    #[error("request lacks {0}")]
    Missing(&'static str),
    /// No such transaction handle.
    #[error("unknown transaction")]
    UnknownTransaction,
}
