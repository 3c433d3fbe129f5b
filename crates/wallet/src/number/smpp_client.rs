//! The tokio shell around [`super::smpp`]: an ESME session to an SMS centre over TCP, and
//! [`SmppGateway`], which sends each message in a session of its own (connect,
//! `bind_transmitter`, `submit_sm`, `unbind`). One-time codes are rare, so a session per message
//! is simpler than a kept-alive bind and leaves nothing to reconnect; [`SmppSession::enquire_link`]
//! is there for callers that keep a session open (SMPP 3.4 §4.11).

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::smpp::{self, BindTransmitter, ESME_ROK, Header, Pdu, SubmitSm};
use super::sms_code::{BoxFuture, SmsGateway};
use crate::error::SmppError;
use chaincall_identity::{PhoneNumber, Secret};

/// Where and how to bind.
#[derive(Debug, Clone)]
pub struct SmppConfig {
    /// The SMSC's `host:port`.
    pub address: String,
    /// system_id (≤ 15 characters).
    pub system_id: String,
    /// password (≤ 8 characters, SMPP 3.4 §4.1.1).
    pub password: Secret<String>,
    /// system_type (≤ 12 characters; often empty).
    pub system_type: String,
    /// source_addr of the messages (alphanumeric, ≤ 11 characters, or a number).
    pub source_addr: String,
    /// Each connect, bind, submit and unbind waits at most this long.
    pub timeout: Duration,
}

/// A bound (or binding) transmitter session.
#[derive(Debug)]
pub struct SmppSession {
    stream: TcpStream,
    buf: Vec<u8>,
    sequence: u32,
    timeout: Duration,
}

impl SmppSession {
    /// Connects to `config.address` and binds as a transmitter (§4.1.1).
    pub async fn bind(config: &SmppConfig) -> Result<Self, SmppError> {
        let stream = tokio::time::timeout(config.timeout, TcpStream::connect(&config.address))
            .await
            .map_err(|_| SmppError::Timeout)?
            .map_err(|e| SmppError::Io(e.to_string()))?;
        let mut session = Self {
            stream,
            buf: Vec::with_capacity(512),
            sequence: 0,
            timeout: config.timeout,
        };
        let bind = Pdu::BindTransmitter(BindTransmitter {
            system_id: config.system_id.clone(),
            password: config.password.clone(),
            system_type: config.system_type.clone(),
            interface_version: smpp::INTERFACE_VERSION_34,
            addr_ton: 0,
            addr_npi: 0,
            address_range: String::new(),
        });
        session.request(&bind).await?;
        Ok(session)
    }

    /// Submits one short message to `to` (international E.164, §5.2.5 TON 1, NPI 1); returns
    /// the SMSC's message id.
    pub async fn submit(
        &mut self,
        source_addr: &str,
        to: &PhoneNumber,
        text: &[u8],
    ) -> Result<String, SmppError> {
        // An alphanumeric sender uses TON 5 / NPI 0; a numeric one is international.
        let numeric = source_addr.bytes().all(|b| b.is_ascii_digit());
        let sm = SubmitSm {
            service_type: String::new(),
            source_addr_ton: if numeric {
                smpp::TON_INTERNATIONAL
            } else {
                smpp::TON_ALPHANUMERIC
            },
            source_addr_npi: if numeric {
                smpp::NPI_ISDN
            } else {
                smpp::NPI_UNKNOWN
            },
            source_addr: source_addr.to_owned(),
            dest_addr_ton: smpp::TON_INTERNATIONAL,
            dest_addr_npi: smpp::NPI_ISDN,
            destination_addr: to.as_str().trim_start_matches('+').to_owned(),
            registered_delivery: 0,
            data_coding: 0,
            short_message: text.to_vec().into(),
        };
        match self.request(&Pdu::SubmitSm(Box::new(sm))).await? {
            Pdu::SubmitSmResp { message_id } => Ok(message_id),
            _ => Err(SmppError::UnexpectedPdu),
        }
    }

    /// `enquire_link` (§4.11.1): checks the session is alive.
    pub async fn enquire_link(&mut self) -> Result<(), SmppError> {
        self.request(&Pdu::EnquireLink).await.map(|_| ())
    }

    /// `unbind` (§4.2.1), waits for `unbind_resp`, closes the connection.
    pub async fn unbind(mut self) -> Result<(), SmppError> {
        self.request(&Pdu::Unbind).await?;
        let _ = self.stream.shutdown().await;
        Ok(())
    }

    /// Sends `pdu` and waits for the response with its sequence number, answering the SMSC's own
    /// `enquire_link`s meanwhile and `generic_nack`ing anything else it sends (§4.3).
    async fn request(&mut self, pdu: &Pdu) -> Result<Pdu, SmppError> {
        // §3.2: sequence numbers run 1..=0x7FFFFFFF.
        self.sequence = if self.sequence >= 0x7FFF_FFFF {
            1
        } else {
            self.sequence + 1
        };
        let sequence = self.sequence;
        let want = pdu.command_id().map(|id| id | 0x8000_0000);
        let mut out = Vec::with_capacity(128);
        smpp::encode(pdu, 0, sequence, &mut out)?;
        self.write(&out).await?;
        // One deadline for the whole exchange: an SMSC that keeps sending other PDUs cannot hold
        // the request open.
        let deadline = tokio::time::Instant::now() + self.timeout;
        loop {
            let (header, reply) = self.read_pdu(deadline).await?;
            if header.command_id & 0x8000_0000 == 0 {
                // A request from the SMSC.
                let answer = if reply == Pdu::EnquireLink {
                    Pdu::EnquireLinkResp
                } else {
                    Pdu::GenericNack
                };
                let status = if answer == Pdu::GenericNack {
                    smpp::ESME_RINVCMDID
                } else {
                    ESME_ROK
                };
                let mut out = Vec::with_capacity(16);
                smpp::encode(&answer, status, header.sequence, &mut out)?;
                self.write(&out).await?;
                continue;
            }
            if header.sequence != sequence {
                continue;
            }
            if header.status != ESME_ROK {
                return Err(SmppError::Refused {
                    status: header.status,
                });
            }
            if Some(header.command_id) != want {
                return Err(SmppError::UnexpectedPdu);
            }
            return Ok(reply);
        }
    }

    async fn write(&mut self, bytes: &[u8]) -> Result<(), SmppError> {
        tokio::time::timeout(self.timeout, self.stream.write_all(bytes))
            .await
            .map_err(|_| SmppError::Timeout)?
            .map_err(|e| SmppError::Io(e.to_string()))
    }

    async fn read_pdu(
        &mut self,
        deadline: tokio::time::Instant,
    ) -> Result<(Header, Pdu), SmppError> {
        loop {
            if let Some((header, pdu, used)) = smpp::decode(&self.buf)? {
                self.buf.drain(..used);
                return Ok((header, pdu));
            }
            let mut chunk = [0u8; 1024];
            let n = tokio::time::timeout_at(deadline, self.stream.read(&mut chunk))
                .await
                .map_err(|_| SmppError::Timeout)?
                .map_err(|e| SmppError::Io(e.to_string()))?;
            if n == 0 {
                return Err(SmppError::Io("the SMSC closed the connection".into()));
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

/// An [`SmsGateway`] that submits each message over SMPP 3.4 in a session of its own.
#[derive(Debug, Clone)]
pub struct SmppGateway {
    config: SmppConfig,
}

impl SmppGateway {
    /// A gateway to the SMSC of `config`.
    pub fn new(config: SmppConfig) -> Self {
        Self { config }
    }
}

impl SmsGateway for SmppGateway {
    fn send<'a>(
        &'a self,
        to: &'a PhoneNumber,
        text: &'a str,
    ) -> BoxFuture<'a, Result<String, SmppError>> {
        Box::pin(async move {
            let mut session = SmppSession::bind(&self.config).await?;
            let id = session
                .submit(&self.config.source_addr, to, text.as_bytes())
                .await?;
            // The message is accepted; a failed unbind does not undo it.
            if let Err(e) = session.unbind().await {
                tracing::debug!(error = %e, "SMPP unbind failed after submit");
            }
            Ok(id)
        })
    }
}
