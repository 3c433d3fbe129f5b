//! A tokio NG client: one UDP exchange per request, retransmitted with the same cookie.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::time::Instant;
use zeroize::Zeroizing;

use crate::bencode::Limits;
use crate::ng::{self, Answer, CallStats, Cookie, Offer, Reply, ReplyError, Request};
use crate::sdp::SdpError;

/// How the client waits for rtpengine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NgClientConfig {
    /// How long a request may take in all, retransmissions included (default 2 s: a call set-up
    /// must fail within a few seconds when the relay is gone).
    pub timeout: Duration,
    /// The first retransmission interval, doubled after each (default 250 ms, so 250, 500, 1000 ms).
    pub retransmit: Duration,
    /// Bounds on reply bodies.
    pub limits: Limits,
}

impl Default for NgClientConfig {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(2),
            retransmit: Duration::from_millis(250),
            limits: Limits::default(),
        }
    }
}

/// A client of one rtpengine NG control address.
///
/// Each request uses its own socket, so requests run concurrently from `&self` and a reply can only
/// reach the request it belongs to; within a request a reply with another cookie (a late answer to
/// someone else, a forgery) is ignored.
#[derive(Clone, Debug)]
pub struct NgClient {
    server: SocketAddr,
    config: NgClientConfig,
}

/// Why an NG request failed; every variant names rtpengine's address.
#[derive(Debug, thiserror::Error)]
pub enum NgError {
    /// No reply with our cookie before the timeout.
    #[error(
        "rtpengine at {server} did not answer {command} within {timeout:?} ({attempts} attempts{})",
        if *refused { ", nothing listening there" } else { "" }
    )]
    NoReply {
        /// rtpengine's NG address.
        server: SocketAddr,
        /// The request's command.
        command: &'static str,
        /// How long we waited.
        timeout: Duration,
        /// Datagrams sent (the first and the retransmissions).
        attempts: u32,
        /// The last attempt was refused (ICMP port unreachable): no process listens there.
        refused: bool,
    },
    /// A socket error other than a refusal.
    #[error("NG exchange with rtpengine at {server} failed")]
    Io {
        /// rtpengine's NG address.
        server: SocketAddr,
        /// The socket's error.
        #[source]
        source: std::io::Error,
    },
    /// rtpengine's reply was an error or malformed.
    #[error("rtpengine at {server} answered {command}")]
    Reply {
        /// rtpengine's NG address.
        server: SocketAddr,
        /// The request's command.
        command: &'static str,
        /// What was wrong with the answer.
        #[source]
        source: ReplyError,
    },
    /// The request's SDP is not SDP.
    #[error("cannot send {command} to rtpengine")]
    Request {
        /// The request's command.
        command: &'static str,
        /// What is wrong with the SDP.
        #[source]
        source: SdpError,
    },
    /// The reply did not have the shape the command needs (an internal mismatch).
    #[error("rtpengine at {server} answered {command} with another kind of reply")]
    Unexpected {
        /// rtpengine's NG address.
        server: SocketAddr,
        /// The request's command.
        command: &'static str,
    },
}

impl NgClient {
    /// A client of rtpengine's NG UDP address `server` (`--listen-ng`).
    pub fn new(server: SocketAddr, config: NgClientConfig) -> Self {
        Self { server, config }
    }

    /// rtpengine's NG address.
    pub fn server(&self) -> SocketAddr {
        self.server
    }

    /// Sends `request` and returns its typed reply.
    ///
    /// # Errors
    /// See [`NgError`]: no reply in time, a socket error, an error or malformed reply.
    pub async fn request(&self, request: &Request) -> Result<Reply, NgError> {
        let command = request.command();
        let message = request
            .to_value()
            .map_err(|source| NgError::Request { command, source })?;
        let cookie = Cookie::random();
        let datagram = ng::frame(&cookie, &message);
        let io = |source| NgError::Io {
            server: self.server,
            source,
        };
        let local: SocketAddr = if self.server.is_ipv4() {
            ([0, 0, 0, 0], 0).into()
        } else {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let socket = UdpSocket::bind(local).await.map_err(io)?;
        // Connected: datagrams from anyone but the server never reach us.
        socket.connect(self.server).await.map_err(io)?;

        let deadline = Instant::now() + self.config.timeout;
        let mut interval = self.config.retransmit;
        let mut attempts = 0;
        let mut refused = false;
        let mut buf = vec![0u8; self.config.limits.max_len + MAX_COOKIE_AND_SPACE];
        loop {
            let now = Instant::now();
            if now >= deadline {
                return Err(NgError::NoReply {
                    server: self.server,
                    command,
                    timeout: self.config.timeout,
                    attempts,
                    refused,
                });
            }
            // The same datagram, same cookie: rtpengine answers a retransmission from its cache.
            match socket.send(&datagram).await {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => refused = true,
                Err(e) => return Err(io(e)),
            }
            attempts += 1;
            let resend_at = (now + interval).min(deadline);
            interval = interval.saturating_mul(2);
            while let Ok(received) = tokio::time::timeout_at(resend_at, socket.recv(&mut buf)).await
            {
                let n = match received {
                    Ok(n) => n,
                    // An earlier datagram met a closed port; rtpengine may be (re)starting.
                    Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                        refused = true;
                        continue;
                    }
                    Err(e) => return Err(io(e)),
                };
                let Some((their_cookie, body)) = ng::split_cookie(&buf[..n]) else {
                    continue;
                };
                if their_cookie != cookie.as_str().as_bytes() {
                    continue;
                }
                return request
                    .parse_reply(body, &self.config.limits)
                    .map_err(|source| NgError::Reply {
                        server: self.server,
                        command,
                        source,
                    });
            }
        }
    }

    /// `ping`: Ok when rtpengine answers `pong`.
    ///
    /// # Errors
    /// As [`Self::request`].
    pub async fn ping(&self) -> Result<(), NgError> {
        match self.request(&Request::Ping).await? {
            Reply::Pong => Ok(()),
            _ => Err(self.unexpected("ping")),
        }
    }

    /// `offer`: the SDP to send the callee (the caller's, with the relay's addresses and ports;
    /// zeroized on drop, as it may carry the caller's SDES keys).
    ///
    /// # Errors
    /// As [`Self::request`].
    pub async fn offer(&self, offer: Offer) -> Result<Zeroizing<String>, NgError> {
        self.sdp(Request::Offer(offer)).await
    }

    /// `answer`: the SDP to send the caller (the callee's, with the relay's addresses and ports).
    ///
    /// # Errors
    /// As [`Self::request`].
    pub async fn answer(&self, answer: Answer) -> Result<Zeroizing<String>, NgError> {
        self.sdp(Request::Answer(answer)).await
    }

    async fn sdp(&self, request: Request) -> Result<Zeroizing<String>, NgError> {
        match self.request(&request).await? {
            Reply::Sdp { sdp, .. } => Ok(sdp),
            _ => Err(self.unexpected(request.command())),
        }
    }

    /// `delete` of the whole call; returns rtpengine's warning (the call was not there) if any.
    ///
    /// # Errors
    /// As [`Self::request`].
    pub async fn delete(&self, call_id: &str) -> Result<Option<String>, NgError> {
        let request = Request::Delete {
            call_id: call_id.to_owned(),
            from_tag: None,
        };
        match self.request(&request).await? {
            Reply::Deleted { warning } => Ok(warning),
            _ => Err(self.unexpected("delete")),
        }
    }

    /// `query`: the call's counters.
    ///
    /// # Errors
    /// As [`Self::request`]; an unknown call is [`ReplyError::Refused`].
    pub async fn query(&self, call_id: &str) -> Result<CallStats, NgError> {
        let request = Request::Query {
            call_id: call_id.to_owned(),
        };
        match self.request(&request).await? {
            Reply::Stats(stats) => Ok(stats),
            _ => Err(self.unexpected("query")),
        }
    }

    /// `list`: the Call-IDs rtpengine holds, at most `limit`.
    ///
    /// # Errors
    /// As [`Self::request`].
    pub async fn list(&self, limit: u32) -> Result<Vec<String>, NgError> {
        let request = Request::List { limit: Some(limit) };
        match self.request(&request).await? {
            Reply::Calls(calls) => Ok(calls),
            _ => Err(self.unexpected("list")),
        }
    }

    fn unexpected(&self, command: &'static str) -> NgError {
        NgError::Unexpected {
            server: self.server,
            command,
        }
    }
}

/// Room for a reply's cookie and space in front of the largest body [`Limits`] allows.
const MAX_COOKIE_AND_SPACE: usize = 65;
