//! Dialogs (RFC 3261 §12): identifiers, route set, remote target and CSeq, for UAC and UAS.

use crate::header::{HeaderName, Method, NameAddr};
use crate::message::{Message, MessageBuf, OwnedStart};
use crate::uri::SipUri;

/// Why a dialog could not be created or used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DialogError {
    /// The message lacks something a dialog needs (tags, Contact, ...).
    #[error("cannot form a dialog: {0}")]
    Missing(&'static str),
    /// A request's CSeq is not above the last one seen (§12.2.2: answer 500).
    #[error("CSeq {got} is not above {last}")]
    CSeqOrder {
        /// The last remote CSeq.
        last: u32,
        /// The CSeq received.
        got: u32,
    },
}

/// The dialog ID: Call-ID, local tag, remote tag (§12).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DialogId {
    /// Call-ID.
    pub call_id: String,
    /// Our tag.
    pub local_tag: String,
    /// The peer's tag.
    pub remote_tag: String,
}

/// Dialog states (§12: early after a tagged 1xx, confirmed after 2xx).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DialogState {
    /// Created by a provisional response.
    Early,
    /// Created or confirmed by a 2xx.
    Confirmed,
    /// Ended (BYE).
    Terminated,
}

/// One dialog's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dialog {
    /// The dialog ID.
    pub id: DialogId,
    /// State.
    pub state: DialogState,
    /// Local CSeq, incremented per new request (§12.2.1.1).
    pub local_seq: u32,
    /// Last remote CSeq (§12.2.2).
    pub remote_seq: Option<u32>,
    /// Local URI (From of our requests), as a header value without tag.
    pub local_uri: String,
    /// Remote URI (To of our requests), as a header value without tag.
    pub remote_uri: String,
    /// The remote target: the peer's Contact URI (§12.1.1, §12.1.2).
    pub remote_target: String,
    /// Route set, in the order our requests carry it.
    pub route_set: Vec<String>,
}

fn uri_only(h: &NameAddr<'_>) -> String {
    format!("<{}>", h.uri)
}

fn contact_uri(msg: &Message<'_>) -> Option<String> {
    match msg.contacts().next()? {
        crate::header::Contact::Addr(a) => Some(a.uri.to_owned()),
        crate::header::Contact::Star => None,
    }
}

impl Dialog {
    /// UAC side (§12.1.2): from our request and a tagged 1xx/2xx response. The route set is the
    /// response's Record-Route in reverse; the remote target its Contact.
    pub fn uac(request: &MessageBuf, resp: &Message<'_>) -> Result<Dialog, DialogError> {
        let code = resp.status().ok_or(DialogError::Missing("a response"))?;
        let to = resp.to().map_err(|_| DialogError::Missing("To"))?;
        let from = resp.from().map_err(|_| DialogError::Missing("From"))?;
        let remote_tag = to.tag().ok_or(DialogError::Missing("To tag"))?;
        let local_tag = from.tag().ok_or(DialogError::Missing("From tag"))?;
        let seq = resp.cseq().map_err(|_| DialogError::Missing("CSeq"))?.seq;
        let mut route_set: Vec<String> = resp
            .record_routes()
            .map(|r| format!("<{}>", r.uri))
            .collect();
        route_set.reverse();
        let remote_target = contact_uri(resp)
            .or_else(|| match &request.start {
                OwnedStart::Request { uri, .. } => Some(uri.clone()),
                OwnedStart::Response { .. } => None,
            })
            .ok_or(DialogError::Missing("Contact"))?;
        Ok(Dialog {
            id: DialogId {
                call_id: resp
                    .call_id()
                    .map_err(|_| DialogError::Missing("Call-ID"))?
                    .to_owned(),
                local_tag: local_tag.to_owned(),
                remote_tag: remote_tag.to_owned(),
            },
            state: if (200..300).contains(&code) {
                DialogState::Confirmed
            } else {
                DialogState::Early
            },
            local_seq: seq,
            remote_seq: None,
            local_uri: uri_only(&from),
            remote_uri: uri_only(&to),
            remote_target,
            route_set,
        })
    }

    /// UAS side (§12.1.1): from the dialog-creating request and the tag we put in our To.
    /// The route set is the request's Record-Route in order; the remote target its Contact.
    pub fn uas(req: &Message<'_>, local_tag: &str) -> Result<Dialog, DialogError> {
        let from = req.from().map_err(|_| DialogError::Missing("From"))?;
        let to = req.to().map_err(|_| DialogError::Missing("To"))?;
        let remote_tag = from.tag().ok_or(DialogError::Missing("From tag"))?;
        Ok(Dialog {
            id: DialogId {
                call_id: req
                    .call_id()
                    .map_err(|_| DialogError::Missing("Call-ID"))?
                    .to_owned(),
                local_tag: local_tag.to_owned(),
                remote_tag: remote_tag.to_owned(),
            },
            state: DialogState::Confirmed,
            local_seq: 0,
            remote_seq: Some(req.cseq().map_err(|_| DialogError::Missing("CSeq"))?.seq),
            local_uri: uri_only(&to),
            remote_uri: uri_only(&from),
            remote_target: contact_uri(req).ok_or(DialogError::Missing("Contact"))?,
            route_set: req
                .record_routes()
                .map(|r| format!("<{}>", r.uri))
                .collect(),
        })
    }

    /// Applies a response inside the dialog: a 2xx confirms an early dialog; Contact refreshes the
    /// target (§12.2.1.2).
    pub fn handle_response(&mut self, resp: &Message<'_>) {
        if resp.status().is_some_and(|c| (200..300).contains(&c))
            && self.state == DialogState::Early
        {
            self.state = DialogState::Confirmed;
        }
        if let Some(t) = contact_uri(resp) {
            self.remote_target = t;
        }
    }

    /// Checks a request inside the dialog (§12.2.2): CSeq must increase (ACK and CANCEL reuse theirs).
    pub fn handle_request(&mut self, req: &Message<'_>) -> Result<(), DialogError> {
        let cseq = req.cseq().map_err(|_| DialogError::Missing("CSeq"))?;
        if !matches!(cseq.method, Method::Ack | Method::Cancel) {
            if let Some(last) = self.remote_seq
                && cseq.seq <= last
            {
                return Err(DialogError::CSeqOrder {
                    last,
                    got: cseq.seq,
                });
            }
            self.remote_seq = Some(cseq.seq);
        }
        if cseq.method == Method::Bye {
            self.state = DialogState::Terminated;
        }
        if let Some(t) = contact_uri(req) {
            self.remote_target = t;
        }
        Ok(())
    }

    /// Builds a request inside the dialog (§12.2.1.1): the next CSeq (ACK takes the INVITE's
    /// `ack_of`), the remote target as Request-URI with the route set as Route; when the first route
    /// is a strict router (no `;lr`), it becomes the Request-URI and the target goes last (§12.2.1.1).
    /// `via` is the full Via value with a fresh branch.
    pub fn request(&mut self, method: Method<'_>, via: &str, ack_of: Option<u32>) -> MessageBuf {
        let seq = match (method, ack_of) {
            (Method::Ack, Some(s)) => s,
            _ => {
                self.local_seq += 1;
                self.local_seq
            }
        };
        let first_strict = self.route_set.first().is_some_and(|r| {
            let inner = r.trim_start_matches('<').trim_end_matches('>');
            SipUri::parse(inner).is_ok_and(|u| !u.is_loose_router())
        });
        let (uri, routes): (String, Vec<String>) = if first_strict {
            let first = self.route_set[0]
                .trim_start_matches('<')
                .trim_end_matches('>')
                .to_owned();
            let mut rest: Vec<String> = self.route_set[1..].to_vec();
            rest.push(format!("<{}>", self.remote_target));
            (first, rest)
        } else {
            (self.remote_target.clone(), self.route_set.clone())
        };
        let mut m = MessageBuf::request(method, &uri);
        m.push("Via", via);
        m.push("Max-Forwards", "70");
        for r in routes {
            m.push("Route", r);
        }
        m.push(
            "From",
            format!("{};tag={}", self.local_uri, self.id.local_tag),
        );
        m.push(
            "To",
            format!("{};tag={}", self.remote_uri, self.id.remote_tag),
        );
        m.push("Call-ID", self.id.call_id.clone());
        m.push("CSeq", format!("{seq} {}", method.as_str()));
        if method == Method::Bye {
            self.state = DialogState::Terminated;
        }
        m
    }

    /// Extracts the tag that identifies this dialog in a message we receive.
    pub fn matches(&self, msg: &Message<'_>) -> bool {
        let Ok(call_id) = msg.call_id() else {
            return false;
        };
        let (ours, theirs) = if msg.is_request() {
            (
                msg.to().ok().and_then(|t| t.tag()),
                msg.from().ok().and_then(|f| f.tag()),
            )
        } else {
            (
                msg.from().ok().and_then(|f| f.tag()),
                msg.to().ok().and_then(|t| t.tag()),
            )
        };
        call_id == self.id.call_id
            && ours == Some(self.id.local_tag.as_str())
            && theirs == Some(self.id.remote_tag.as_str())
    }
}

/// True if a header name denotes the Record-Route of a message (helper for shells).
pub fn is_record_route(name: &str) -> bool {
    HeaderName::parse(name) == HeaderName::RecordRoute
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::response_to;

    #[test]
    fn uac_and_uas_agree() {
        let inv = MessageBuf::request(Method::Invite, "sip:bob@example.com")
            .with("Via", "SIP/2.0/UDP a.example.com;branch=z9hG4bKx")
            .with("From", "<sip:alice@example.com>;tag=A")
            .with("To", "<sip:bob@example.com>")
            .with("Call-ID", "d1")
            .with("CSeq", "7 INVITE")
            .with("Contact", "<sip:alice@192.0.2.1>")
            .with(
                "Record-Route",
                "<sip:p1.example.com;lr>, <sip:p2.example.com;lr>",
            );
        let bytes = inv.to_bytes();
        let req = Message::parse(&bytes).unwrap();
        let mut uas = Dialog::uas(&req, "B").unwrap();
        assert_eq!(
            uas.route_set,
            ["<sip:p1.example.com;lr>", "<sip:p2.example.com;lr>"]
        );
        let mut ok = response_to(&req, 200, "OK", Some("B"));
        ok.push("Contact", "<sip:bob@192.0.2.2>");
        let okb = ok.to_bytes();
        let resp = Message::parse(&okb).unwrap();
        let mut uac = Dialog::uac(&inv, &resp).unwrap();
        assert_eq!(
            uac.route_set,
            ["<sip:p2.example.com;lr>", "<sip:p1.example.com;lr>"]
        );
        assert_eq!(uac.remote_target, "sip:bob@192.0.2.2");
        assert_eq!(uac.id.remote_tag, "B");
        let ack = uac.request(Method::Ack, "SIP/2.0/UDP a;branch=z9hG4bKy", Some(7));
        assert!(ack.get(HeaderName::CSeq) == Some("7 ACK"));
        let bye = uac
            .request(Method::Bye, "SIP/2.0/UDP a;branch=z9hG4bKz", None)
            .to_bytes();
        let bye = Message::parse(&bye).unwrap();
        assert_eq!(bye.request_uri(), Some("sip:bob@192.0.2.2"));
        assert_eq!(bye.cseq().unwrap().seq, 8);
        assert!(uas.matches(&bye));
        assert!(uas.handle_request(&bye).is_ok());
        assert!(matches!(
            uas.handle_request(&bye),
            Err(DialogError::CSeqOrder { .. })
        ));
    }
}
