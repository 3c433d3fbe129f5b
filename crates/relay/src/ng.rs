//! rtpengine's NG control protocol without I/O: framing, typed requests and typed replies.
//!
//! A message is `COOKIE SPACE BENCODED-DICT` in one UDP datagram; the reply carries the request's
//! cookie, which matches it to the request and lets rtpengine recognise a retransmission (it then
//! resends its cached reply instead of acting twice). Every reply has `result` (`ok`, `pong` or
//! `error` with `error-reason`) and may have a `warning`.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use zeroize::{Zeroize, Zeroizing};

use crate::bencode::{self, BencodeError, Limits, Value};
use crate::sdp::{self, SdpError};

/// Longest cookie accepted in a reply (ours are 16 hex digits).
const MAX_COOKIE: usize = 64;

/// The cookie that pairs a request with its reply: 16 random hex digits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cookie(String);

impl Cookie {
    /// A fresh random cookie.
    pub fn random() -> Self {
        use rand_core::{OsRng, RngCore};
        Self(format!("{:016x}", OsRng.next_u64()))
    }

    /// The cookie as sent.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// One request datagram: `cookie`, a space, and the bencoded `message`.
pub fn frame(cookie: &Cookie, message: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    out.extend_from_slice(cookie.0.as_bytes());
    out.push(b' ');
    message.encode_into(&mut out);
    out
}

/// Splits a datagram into its cookie and body, or `None` when it has no cookie-and-space prefix.
pub fn split_cookie(datagram: &[u8]) -> Option<(&[u8], &[u8])> {
    let space = datagram
        .iter()
        .take(MAX_COOKIE + 1)
        .position(|&b| b == b' ')?;
    (space > 0).then(|| (&datagram[..space], &datagram[space + 1..]))
}

/// Options on every `offer` and `answer`, which keep rtpengine out of the media's encryption as a
/// second line of defence behind [`sdp::mask`] (which already hides every key and secure profile):
/// no SDES keys of its own (`SDES: [off]`), no DTLS-SRTP (`DTLS: off`), no ICE candidates of its
/// own (`ICE: remove`), and its own address in the session `c=` and `o=` lines it returns.
fn passthrough_options(dict: &mut BTreeMap<Vec<u8>, Value>) {
    dict.insert(b"SDES".to_vec(), Value::strs(["off"]));
    dict.insert(b"DTLS".to_vec(), Value::str("off"));
    dict.insert(b"ICE".to_vec(), Value::str("remove"));
    dict.insert(
        b"replace".to_vec(),
        Value::strs(["origin", "session-connection"]),
    );
}

/// An `offer`: the caller's SDP on its way to the callee.
///
/// Its SDP may hold SDES keys: `Debug` shows it masked, and it is zeroized on drop.
#[derive(Clone, PartialEq, Eq)]
pub struct Offer {
    /// The dialog's Call-ID.
    pub call_id: String,
    /// The caller's From tag.
    pub from_tag: String,
    /// The caller's SDP, as the callee must receive it but for addresses and ports.
    pub sdp: String,
    /// Where the signalling came from, when the SDP's address is not reachable (NAT): rtpengine
    /// then sends media to this address and the SDP's port (`received from` with the
    /// `SIP-source-address` flag) until the party's first packet shows its real source.
    pub received_from: Option<IpAddr>,
}

/// An `answer`: the callee's SDP on its way back (`Debug` masked, zeroized on drop, as [`Offer`]).
#[derive(Clone, PartialEq, Eq)]
pub struct Answer {
    /// The dialog's Call-ID.
    pub call_id: String,
    /// The caller's From tag.
    pub from_tag: String,
    /// The callee's To tag.
    pub to_tag: String,
    /// The callee's SDP.
    pub sdp: String,
    /// As [`Offer::received_from`], for the callee.
    pub received_from: Option<IpAddr>,
}

/// An SDP for `Debug` output: as rtpengine sees it, without key lines.
struct MaskedSdp<'a>(&'a str);

impl std::fmt::Debug for MaskedSdp<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match sdp::mask(self.0) {
            Ok(masked) => write!(f, "{masked:?} (key lines hidden)"),
            Err(_) => write!(f, "<{} bytes, not SDP>", self.0.len()),
        }
    }
}

impl std::fmt::Debug for Offer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Offer")
            .field("call_id", &self.call_id)
            .field("from_tag", &self.from_tag)
            .field("sdp", &MaskedSdp(&self.sdp))
            .field("received_from", &self.received_from)
            .finish()
    }
}

impl std::fmt::Debug for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Answer")
            .field("call_id", &self.call_id)
            .field("from_tag", &self.from_tag)
            .field("to_tag", &self.to_tag)
            .field("sdp", &MaskedSdp(&self.sdp))
            .field("received_from", &self.received_from)
            .finish()
    }
}

impl Drop for Offer {
    fn drop(&mut self) {
        self.sdp.zeroize();
    }
}

impl Drop for Answer {
    fn drop(&mut self) {
        self.sdp.zeroize();
    }
}

/// A typed NG request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// `ping`: is rtpengine there?
    Ping,
    /// `offer`: allocate relay ports for the caller's media.
    Offer(Offer),
    /// `answer`: complete the call with the callee's media.
    Answer(Answer),
    /// `delete`: release a call (all of it when `from_tag` is `None`).
    Delete {
        /// The dialog's Call-ID.
        call_id: String,
        /// Only this party's branch.
        from_tag: Option<String>,
    },
    /// `query`: a call's packet and byte counters.
    Query {
        /// The dialog's Call-ID.
        call_id: String,
    },
    /// `list`: the Call-IDs rtpengine holds (at most `limit`, rtpengine's default 32 when `None`).
    List {
        /// Most Call-IDs to return.
        limit: Option<u32>,
    },
}

impl Request {
    /// The NG command name.
    pub fn command(&self) -> &'static str {
        match self {
            Request::Ping => "ping",
            Request::Offer(_) => "offer",
            Request::Answer(_) => "answer",
            Request::Delete { .. } => "delete",
            Request::Query { .. } => "query",
            Request::List { .. } => "list",
        }
    }

    /// The message dictionary; SDP bodies are masked (see [`sdp::mask`]).
    ///
    /// # Errors
    /// When an SDP body is not SDP.
    pub fn to_value(&self) -> Result<Value, SdpError> {
        let mut dict = BTreeMap::new();
        dict.insert(b"command".to_vec(), Value::str(self.command()));
        match self {
            Request::Ping => {}
            Request::Offer(o) => {
                session(
                    &mut dict,
                    &o.call_id,
                    &o.from_tag,
                    None,
                    &o.sdp,
                    o.received_from,
                )?;
            }
            Request::Answer(a) => {
                let to_tag = Some(a.to_tag.as_str());
                session(
                    &mut dict,
                    &a.call_id,
                    &a.from_tag,
                    to_tag,
                    &a.sdp,
                    a.received_from,
                )?;
            }
            Request::Delete { call_id, from_tag } => {
                dict.insert(b"call-id".to_vec(), Value::str(call_id));
                if let Some(tag) = from_tag {
                    dict.insert(b"from-tag".to_vec(), Value::str(tag));
                }
            }
            Request::Query { call_id } => {
                dict.insert(b"call-id".to_vec(), Value::str(call_id));
            }
            Request::List { limit } => {
                if let Some(limit) = limit {
                    dict.insert(b"limit".to_vec(), Value::Int(i64::from(*limit)));
                }
            }
        }
        Ok(Value::Dict(dict))
    }

    /// Decodes and types the reply body to this request. For `offer` and `answer` the returned SDP
    /// is this request's own with rtpengine's addresses and ports spliced in ([`sdp::splice`]).
    ///
    /// # Errors
    /// When rtpengine answered `error`, or the body is malformed for this command.
    pub fn parse_reply(&self, body: &[u8], limits: &Limits) -> Result<Reply, ReplyError> {
        let value = bencode::decode(body, limits).map_err(ReplyError::Bencode)?;
        let result = value
            .get("result")
            .and_then(Value::as_str)
            .ok_or(ReplyError::Malformed("no result string"))?;
        if result == "error" {
            let reason = value
                .get("error-reason")
                .and_then(Value::as_str)
                .unwrap_or("(no error-reason given)");
            return Err(ReplyError::Refused {
                command: self.command(),
                reason: reason.chars().take(200).collect(),
            });
        }
        let expected = if matches!(self, Request::Ping) {
            "pong"
        } else {
            "ok"
        };
        if result != expected {
            return Err(ReplyError::Malformed("unexpected result value"));
        }
        let warning = value
            .get("warning")
            .and_then(Value::as_str)
            .map(str::to_owned);
        Ok(match self {
            Request::Ping => Reply::Pong,
            Request::Offer(Offer { sdp, .. }) | Request::Answer(Answer { sdp, .. }) => {
                let relayed = value
                    .get("sdp")
                    .and_then(Value::as_str)
                    .ok_or(ReplyError::Malformed("no sdp string"))?;
                Reply::Sdp {
                    sdp: Zeroizing::new(sdp::splice(sdp, relayed).map_err(ReplyError::Sdp)?),
                    warning,
                }
            }
            Request::Delete { .. } => Reply::Deleted { warning },
            Request::Query { .. } => Reply::Stats(CallStats::from_value(&value)?),
            Request::List { .. } => Reply::Calls(
                value
                    .get("calls")
                    .and_then(Value::as_list)
                    .ok_or(ReplyError::Malformed("no calls list"))?
                    .iter()
                    .map(|c| c.as_str().map(str::to_owned))
                    .collect::<Option<_>>()
                    .ok_or(ReplyError::Malformed("a call-id that is not text"))?,
            ),
        })
    }
}

/// The keys of an `offer` or `answer`: the dialog, the masked SDP, the passthrough options.
fn session(
    dict: &mut BTreeMap<Vec<u8>, Value>,
    call_id: &str,
    from_tag: &str,
    to_tag: Option<&str>,
    sdp: &str,
    received_from: Option<IpAddr>,
) -> Result<(), SdpError> {
    dict.insert(b"call-id".to_vec(), Value::str(call_id));
    dict.insert(b"from-tag".to_vec(), Value::str(from_tag));
    if let Some(tag) = to_tag {
        dict.insert(b"to-tag".to_vec(), Value::str(tag));
    }
    dict.insert(b"sdp".to_vec(), Value::str(sdp::mask(sdp)?));
    if let Some(ip) = received_from {
        dict.insert(b"received from".to_vec(), received_from_value(ip));
        // rtpengine trusts the SDP's address unless told otherwise; behind NAT that address is
        // private, so media goes to the signalling source until the first packet teaches the
        // real one (endpoint learning).
        dict.insert(b"flags".to_vec(), Value::strs(["SIP-source-address"]));
    }
    passthrough_options(dict);
    Ok(())
}

/// `received from`: `[IP4|IP6, address]`.
fn received_from_value(ip: IpAddr) -> Value {
    let family = if ip.is_ipv4() { "IP4" } else { "IP6" };
    Value::strs([family.to_owned(), ip.to_string()])
}

/// A typed NG reply (`Debug` shows SDP bodies masked).
#[derive(Clone, PartialEq, Eq)]
pub enum Reply {
    /// To `ping`.
    Pong,
    /// To `offer` and `answer`: the SDP to forward.
    Sdp {
        /// The original SDP with the relay's addresses and ports (it may hold SDES keys).
        sdp: Zeroizing<String>,
        /// rtpengine's non-fatal warning.
        warning: Option<String>,
    },
    /// To `delete` (a warning when the call was not there).
    Deleted {
        /// rtpengine's non-fatal warning.
        warning: Option<String>,
    },
    /// To `query`.
    Stats(CallStats),
    /// To `list`.
    Calls(Vec<String>),
}

impl std::fmt::Debug for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reply::Pong => f.write_str("Pong"),
            Reply::Sdp { sdp, warning } => f
                .debug_struct("Sdp")
                .field("sdp", &MaskedSdp(sdp))
                .field("warning", warning)
                .finish(),
            Reply::Deleted { warning } => {
                f.debug_struct("Deleted").field("warning", warning).finish()
            }
            Reply::Stats(stats) => f.debug_tuple("Stats").field(stats).finish(),
            Reply::Calls(calls) => f.debug_tuple("Calls").field(calls).finish(),
        }
    }
}

/// Packet, byte and error counters of a stream or a total.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Packets received.
    pub packets: u64,
    /// Bytes received.
    pub bytes: u64,
    /// Packets that could not be forwarded.
    pub errors: u64,
}

impl Counters {
    fn from_value(value: Option<&Value>) -> Result<Self, ReplyError> {
        let value = value.ok_or(ReplyError::Malformed("no stats"))?;
        let get = |key| {
            value
                .get(key)
                .and_then(Value::as_int)
                .and_then(|n| u64::try_from(n).ok())
                .ok_or(ReplyError::Malformed(
                    "a counter that is not a non-negative integer",
                ))
        };
        Ok(Self {
            packets: get("packets")?,
            bytes: get("bytes")?,
            errors: get("errors")?,
        })
    }
}

/// One relay port of a call: what arrived on it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamStats {
    /// The SIP tag of the party this port receives from (empty before it is known).
    pub tag: String,
    /// The media section, from 1.
    pub media: u32,
    /// The relay's local port (`None` for an inactive stream).
    pub local_port: Option<u16>,
    /// True for an RTCP port.
    pub rtcp: bool,
    /// Where the relay sends this party's media: the SDP's address, or what it learned from the
    /// party's packets (behind NAT, the router's public address and port).
    pub endpoint: Option<SocketAddr>,
    /// What arrived on this port.
    pub counters: Counters,
}

/// `{address, port}` as a socket address, when both are there and valid.
fn endpoint(value: &Value) -> Option<SocketAddr> {
    let ip: IpAddr = value.get("address")?.as_str()?.parse().ok()?;
    let port = u16::try_from(value.get("port")?.as_int()?).ok()?;
    Some(SocketAddr::new(ip, port))
}

/// rtpengine's statistics of one call (`query`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallStats {
    /// All RTP received for the call.
    pub rtp: Counters,
    /// All RTCP received for the call.
    pub rtcp: Counters,
    /// Per relay port.
    pub streams: Vec<StreamStats>,
}

impl CallStats {
    fn from_value(value: &Value) -> Result<Self, ReplyError> {
        let totals = value
            .get("totals")
            .ok_or(ReplyError::Malformed("no totals"))?;
        let mut streams = Vec::new();
        let tags = value.get("tags").and_then(Value::as_dict);
        for party in tags.into_iter().flat_map(|t| t.values()) {
            let tag = party.get("tag").and_then(Value::as_str).unwrap_or("");
            let medias = party.get("medias").and_then(Value::as_list).unwrap_or(&[]);
            for media in medias {
                let index = media
                    .get("index")
                    .and_then(Value::as_int)
                    .and_then(|i| u32::try_from(i).ok())
                    .ok_or(ReplyError::Malformed("a media without an index"))?;
                let list = media.get("streams").and_then(Value::as_list).unwrap_or(&[]);
                for stream in list {
                    let flags = stream.get("flags").and_then(Value::as_list).unwrap_or(&[]);
                    streams.push(StreamStats {
                        tag: tag.to_owned(),
                        media: index,
                        local_port: stream
                            .get("local port")
                            .and_then(Value::as_int)
                            .and_then(|p| u16::try_from(p).ok()),
                        rtcp: flags.iter().any(|f| f.as_str() == Some("RTCP")),
                        endpoint: stream.get("endpoint").and_then(endpoint),
                        counters: Counters::from_value(stream.get("stats"))?,
                    });
                }
            }
        }
        Ok(Self {
            rtp: Counters::from_value(totals.get("RTP"))?,
            rtcp: Counters::from_value(totals.get("RTCP"))?,
            streams,
        })
    }

    /// The counters of the relay port `port`, if the call has it.
    pub fn port(&self, port: u16) -> Option<&StreamStats> {
        self.streams.iter().find(|s| s.local_port == Some(port))
    }
}

/// Why a reply was not what the request needed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReplyError {
    /// rtpengine answered `result: error`.
    #[error("rtpengine refused {command}: {reason}")]
    Refused {
        /// The request's command.
        command: &'static str,
        /// rtpengine's `error-reason` (at most 200 characters).
        reason: String,
    },
    /// The body is not bencode.
    #[error("the reply is not bencode")]
    Bencode(#[source] BencodeError),
    /// The dictionary lacks what the command needs.
    #[error("malformed reply: {0}")]
    Malformed(&'static str),
    /// The SDP in the reply cannot be spliced into ours.
    #[error("the reply's SDP does not fit the request's")]
    Sdp(#[source] SdpError),
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn hostile_reply_bodies_never_panic(body in proptest::collection::vec(any::<u8>(), 0..256), sdp in "(m=audio [0-9]{1,6} RTP/AVP 0\r\n|c=IN IP[46] [0-9.:a-f]{1,20}\r\n|a=rtcp:[0-9 ]{0,8}\r\n|[ -~]{0,30}\r?\n){0,8}") {
            let offer = Request::Offer(Offer {
                call_id: "c".into(),
                from_tag: "f".into(),
                sdp: "v=0\r\nc=IN IP4 10.0.0.1\r\nm=audio 4000 RTP/SAVP 0\r\n".into(),
                received_from: None,
            });
            let limits = Limits::default();
            let _ = offer.parse_reply(&body, &limits);
            // A well-formed reply around an arbitrary SDP text.
            let reply = Value::Dict(BTreeMap::from([
                (b"result".to_vec(), Value::str("ok")),
                (b"sdp".to_vec(), Value::str(&sdp)),
            ]));
            let _ = offer.parse_reply(&reply.encode(), &limits);
            // And as SDP-looking text, where splicing really parses lines.
            let sdp_like = format!("v=0\r\n{sdp}");
            let _ = sdp::splice(&sdp_like, &sdp_like);
            let _ = sdp::splice("v=0\r\nc=IN IP4 10.0.0.1\r\nm=audio 4000 RTP/SAVP 0\r\n", &sdp_like);
            let _ = sdp::mask(&sdp_like);
            for request in [Request::Query { call_id: "c".into() }, Request::List { limit: None }, Request::Ping] {
                let _ = request.parse_reply(&body, &limits);
            }
        }
    }

    #[test]
    fn frames_and_splits_cookies() {
        let cookie = Cookie::random();
        assert_eq!(cookie.as_str().len(), 16);
        assert_ne!(cookie, Cookie::random());
        let datagram = frame(&cookie, &Request::Ping.to_value().unwrap());
        assert_eq!(
            datagram,
            [cookie.as_str().as_bytes(), b" d7:command4:pinge"].concat()
        );
        let (c, body) = split_cookie(&datagram).unwrap();
        assert_eq!(c, cookie.as_str().as_bytes());
        assert_eq!(body, b"d7:command4:pinge");
        assert_eq!(split_cookie(b"nospace"), None);
        assert_eq!(split_cookie(b" d4:spame"), None);
        assert_eq!(split_cookie(&[b'x'; 100]), None);
    }

    #[test]
    fn an_offer_carries_the_passthrough_options_and_no_keys() {
        let offer = Request::Offer(Offer {
            call_id: "c1".into(),
            from_tag: "ft".into(),
            sdp: "v=0\r\nc=IN IP4 10.0.0.1\r\nm=audio 4000 RTP/SAVP 0\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:SECRET\r\n".into(),
            received_from: Some("203.0.113.100".parse().unwrap()),
        });
        let value = offer.to_value().unwrap();
        let debug = format!("{offer:?}");
        assert!(
            !debug.contains("SECRET") && debug.contains("c=IN IP4 10.0.0.1"),
            "{debug}"
        );
        let wire = String::from_utf8(value.encode()).unwrap();
        assert!(!wire.contains("SECRET") && !wire.contains("SAVP"), "{wire}");
        assert_eq!(value.get("DTLS"), Some(&Value::str("off")));
        assert_eq!(value.get("SDES"), Some(&Value::strs(["off"])));
        assert_eq!(value.get("ICE"), Some(&Value::str("remove")));
        assert_eq!(
            value.get("received from"),
            Some(&Value::strs(["IP4", "203.0.113.100"]))
        );
        assert_eq!(
            value.get("flags"),
            Some(&Value::strs(["SIP-source-address"]))
        );
    }

    #[test]
    fn replies_are_typed_and_hostile_ones_refused() {
        let limits = Limits::default();
        let ping = Request::Ping;
        assert_eq!(
            ping.parse_reply(b"d6:result4:ponge", &limits),
            Ok(Reply::Pong)
        );
        let query = Request::Query {
            call_id: "c".into(),
        };
        assert_eq!(
            query.parse_reply(
                b"d6:result5:error12:error-reason15:Unknown call-ide",
                &limits
            ),
            Err(ReplyError::Refused {
                command: "query",
                reason: "Unknown call-id".into()
            })
        );
        for (request, body) in [
            (&ping, &b"d6:result2:oke"[..]),
            (&ping, b"d6:resulti1ee"),
            (&ping, b"le"),
            (&query, b"d6:result2:oke"),
            (&query, b"d6:result2:ok6:totalsd3:RTPd7:packetsi-1eeee"),
            (
                &Request::List { limit: None },
                b"d6:result2:ok5:callsli1eee",
            ),
        ] {
            assert!(request.parse_reply(body, &limits).is_err(), "{body:?}");
        }
        assert!(matches!(
            ping.parse_reply(b"\xff", &limits),
            Err(ReplyError::Bencode(_))
        ));
    }
}
