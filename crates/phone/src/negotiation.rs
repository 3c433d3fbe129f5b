//! SDP offer/answer for a call's audio and its keys: MIKEY (RFC 3830 in `a=key-mgmt`, RFC 4567)
//! between chaincall phones, SDES (`a=crypto`, RFC 4568) for standard phones, or ZRTP (RFC 6189:
//! `RTP/AVP` and `a=zrtp-hash`, the keys agreed in the media path after the call is up).
//!
//! Sans-IO: SDP bytes, keys, the key directory and `now` in; SDP text and keyed SRTP sessions out.
//!
//! Keys per direction: a MIKEY offer carries two crypto sessions, CS 1 for the caller's stream
//! (its SSRC in the CS ID map) and CS 2 for the callee's (SSRC 0: the callee picks it). Each
//! direction therefore has its own master key; nothing is keyed twice. SDES likewise has each side
//! announce the key it sends with (RFC 4568 §6.1).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use chaincall_identity::{
    IdentityKey, IdentityName, KeyDirectory, PublicIdentityKey, Randomness, Secret,
};
use chaincall_media::AudioCodec;
use chaincall_media::sdp::{self as media_sdp, Format, OpusParams, TelephoneEvent};
use chaincall_mikey::{
    Initiator, Mode, NtpTime, OfferConfig, Responder, SrtpKeys, SrtpPolicy, Stream,
};
use chaincall_sip::sdp::{Crypto, Media, Sdp};
use chaincall_srtp::{Profile, SrtpConfig, SrtpSession};
use chaincall_zrtp::{AuxPolicy, ChainBinding, KeyAgreement, Role, Zrtp, ZrtpConfig};

use crate::error::CallError;
use crate::zrtp_store::ZrtpStore;

/// How a call's media keys are agreed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyMode {
    /// MIKEY public-key envelope to the callee's on-chain key, signed by the caller (the paper's).
    MikeyPke,
    /// MIKEY DH-SIGN: signed ephemeral ECDH (forward secrecy).
    MikeyDhSign,
    /// SDES (RFC 4568): keys in the clear inside the (TLS-protected) signalling; for standard
    /// phones. Encrypted, but the key is not verified on chain.
    Sdes,
    /// ZRTP (RFC 6189): a Diffie–Hellman exchange in the media path once the call is up, its
    /// Hello hash in the SDP (`a=zrtp-hash`); between chaincall phones bound to both on-chain
    /// keys (`docs/zrtp.md`, "The chain binding"), with standard phones only by the SAS.
    Zrtp,
}

impl KeyMode {
    /// A short name for logs and reports.
    pub fn name(self) -> &'static str {
        match self {
            KeyMode::MikeyPke => "mikey-pke",
            KeyMode::MikeyDhSign => "mikey-dh-sign",
            KeyMode::Sdes => "sdes",
            KeyMode::Zrtp => "zrtp",
        }
    }

    /// Whether the peer's identity is checked against the chain by the offer itself (MIKEY's
    /// signature). ZRTP is bound to the chain later, in the media path, when the peer has a key.
    pub fn verified_on_chain(self) -> bool {
        !matches!(self, KeyMode::Sdes | KeyMode::Zrtp)
    }
}

impl std::str::FromStr for KeyMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "pke" | "mikey-pke" => Ok(KeyMode::MikeyPke),
            "dh-sign" | "dhsign" | "mikey-dh-sign" => Ok(KeyMode::MikeyDhSign),
            "sdes" => Ok(KeyMode::Sdes),
            "zrtp" => Ok(KeyMode::Zrtp),
            other => Err(format!(
                "unknown key mode {other:?} (pke, dh-sign, sdes or zrtp)"
            )),
        }
    }
}

/// Where our audio is received and which codecs we take, in order of preference.
#[derive(Debug, Clone)]
pub struct LocalMedia {
    /// Our RTP (and, with rtcp-mux, RTCP) address.
    pub addr: SocketAddr,
    /// Codecs we accept, preferred first (offered in this order, with telephone-event).
    pub codecs: Vec<AudioCodec>,
    /// Where SSRCs, SDP session IDs, SDES keys and MIKEY's randomness come from (the OS CSPRNG in
    /// production; seeded in tests, so an offer can be replayed byte for byte).
    pub randomness: Randomness,
}

/// One SRTP stream's master key, for the `--keylog` debugging file.
#[derive(Clone, Debug)]
pub struct StreamKey {
    /// The stream's SSRC.
    pub ssrc: u32,
    /// The SRTP profile.
    pub profile: Profile,
    /// Master key followed by master salt (the RFC 4568 `inline:` layout). Secret.
    pub key_and_salt: Secret<Vec<u8>>,
}

impl StreamKey {
    /// The key log line: `ssrc=<8 hex> profile=<RFC name> inline=<base64 key||salt>`.
    pub fn keylog_line(&self) -> String {
        format!(
            "ssrc={:08x} profile={} inline={}",
            self.ssrc,
            self.profile.rfc_name(),
            B64.encode(&self.key_and_salt[..])
        )
    }
}

/// What the media task needs to run ZRTP on the call's socket.
#[derive(Debug)]
pub struct ZrtpMedia {
    /// The engine, its Hello already built (its hash is in our SDP); not yet driven.
    pub engine: Zrtp,
    /// The peer's `a=zrtp-hash` from its answer, for [`Zrtp::set_peer_hello_hash`] (an offer's
    /// is in the engine's config already).
    pub peer_hello_hash: Option<[u8; 32]>,
    /// The identity whose on-chain key the exchange is bound to (the aux secret, fatal on
    /// mismatch); `None`: the standard layers only (a peer without a key, e.g. Linphone).
    pub bound_to: Option<IdentityName>,
    /// The store the engine's cache is, for the ZID ↔ identity pin.
    pub store: Arc<ZrtpStore>,
}

impl ZrtpMedia {
    /// The call's media, to be keyed by this exchange; the peer it is bound to is the verified
    /// one (a mismatch is fatal, so no audio flows with anyone else).
    fn negotiated(
        zrtp: Box<ZrtpMedia>,
        remote: SocketAddr,
        rtcp_remote: SocketAddr,
        chosen: media_sdp::Negotiated,
        local_ssrc: u32,
    ) -> NegotiatedMedia {
        NegotiatedMedia {
            remote,
            rtcp_remote,
            codec: chosen.codec,
            telephone_event: chosen.telephone_event,
            opus: chosen.opus,
            mode: KeyMode::Zrtp,
            verified_peer: zrtp.bound_to.clone(),
            local_ssrc,
            srtp: MediaKeys::Zrtp(zrtp),
            keys: Vec::new(),
        }
    }
}

/// How the call's SRTP is keyed.
#[derive(Debug)]
pub enum MediaKeys {
    /// Keyed in signalling (MIKEY, SDES): both sessions ready.
    Srtp {
        /// Protects what we send.
        outbound: Box<SrtpSession>,
        /// Unprotects what we receive.
        inbound: Box<SrtpSession>,
    },
    /// Keyed in the media path by ZRTP: nothing is sent before its `SecureOn`.
    Zrtp(Box<ZrtpMedia>),
}

/// What a ZRTP call needs from the phone: its store (ZID and cache), our identity key, and the
/// peer's on-chain key when looked up (then the exchange is chain-bound).
#[derive(Debug, Clone)]
pub struct ZrtpSetup {
    /// ZID and retained secrets.
    pub store: Arc<ZrtpStore>,
    /// Our identity key (the static half of the chain binding).
    pub identity: Arc<IdentityKey>,
    /// The peer and its approved on-chain key, if it has one.
    pub peer: Option<(IdentityName, PublicIdentityKey)>,
    /// The engine's clock at creation.
    pub now: Instant,
}

/// How long an offerer's ZRTP exchange may take from the offer: the callee may ring for minutes
/// before the exchange starts, and the engine's limit counts from its Hello.
const ZRTP_OFFER_LIMIT: Duration = Duration::from_secs(300);
/// An answerer's: the exchange starts with the answer.
const ZRTP_ANSWER_LIMIT: Duration = Duration::from_secs(30);

impl ZrtpSetup {
    /// The engine: X255, EC25 and DH3k (Debian's Linphone speaks only DH3k), bound to the
    /// peer's on-chain key when it has one.
    fn engine(
        &self,
        ssrc: u32,
        role: Role,
        peer_hello_hash: Option<[u8; 32]>,
        randomness: &Randomness,
    ) -> Result<ZrtpMedia, CallError> {
        let mut cfg = ZrtpConfig::new(self.store.zid(), ssrc, self.store.clone())
            .with_key_agreements(&[KeyAgreement::X255, KeyAgreement::Ec25, KeyAgreement::Dh3k])
            .with_randomness(randomness.clone())
            .with_handshake_timeout(match role {
                Role::Initiator => ZRTP_OFFER_LIMIT,
                Role::Responder => ZRTP_ANSWER_LIMIT,
            });
        if let Some((_, key)) = &self.peer {
            let binding = ChainBinding::new(&self.identity, key);
            cfg = cfg.with_aux_source(Arc::new(binding), AuxPolicy::Fatal);
        }
        if let Some(h) = peer_hello_hash {
            cfg = cfg.with_peer_hello_hash(h);
        }
        let engine =
            Zrtp::new(cfg, role, self.now).map_err(|e| CallError::Keys(format!("ZRTP: {e}")))?;
        Ok(ZrtpMedia {
            engine,
            peer_hello_hash: None,
            bound_to: self.peer.as_ref().map(|(name, _)| name.clone()),
            store: self.store.clone(),
        })
    }
}

/// The `a=zrtp-hash` of an audio section (RFC 6189 §8.1: `1.10 <64 hex>`); `None` without
/// one, an error when it is malformed.
fn zrtp_hash(media: &Media) -> Result<Option<[u8; 32]>, CallError> {
    let Some(value) = media.attribute("zrtp-hash").next() else {
        return Ok(None);
    };
    let value = value.unwrap_or_default();
    let bad = || {
        CallError::Sdp(format!(
            "a=zrtp-hash {value:?} is not `1.10 <64 hex digits>`"
        ))
    };
    let hex_part = value.strip_prefix("1.10 ").ok_or_else(bad)?.trim();
    let mut out = [0u8; 32];
    hex::decode_to_slice(hex_part, &mut out).map_err(|_| bad())?;
    Ok(Some(out))
}

/// The outcome of offer/answer: where to send, which codec, and how SRTP is keyed.
///
/// `Debug` shows no key material: the SRTP sessions, stream keys and engine redact their own.
#[derive(Debug)]
pub struct NegotiatedMedia {
    /// The peer's RTP address.
    pub remote: SocketAddr,
    /// Where our RTCP goes: `remote` with rtcp-mux (RFC 5761) agreed, else the next port up
    /// (RFC 3550 §11).
    pub rtcp_remote: SocketAddr,
    /// The codec both sides use, on its negotiated payload type.
    pub codec: AudioCodec,
    /// telephone-event (RFC 4733 DTMF), when both sides have it.
    pub telephone_event: Option<TelephoneEvent>,
    /// How the peer wants to receive Opus (its `a=fmtp`, RFC 7587 §6.1), for an Opus call.
    pub opus: Option<OpusParams>,
    /// How the keys were agreed.
    pub mode: KeyMode,
    /// The identity the keys are bound to, checked against the chain (MIKEY); `None` with SDES.
    pub verified_peer: Option<IdentityName>,
    /// Our SSRC.
    pub local_ssrc: u32,
    /// The SRTP sessions, or the ZRTP exchange that will key them.
    pub srtp: MediaKeys,
    /// Both directions' master keys, for `--keylog` (ours first); empty with ZRTP (its keys
    /// exist only in the media task).
    pub keys: Vec<StreamKey>,
}

/// A caller's offer, waiting for the answer.
#[derive(Debug)]
pub struct Offer {
    mode: KeyMode,
    /// Secret: with SDES it carries our sending key inline (`a=crypto`).
    sdp: Secret<String>,
    local_ssrc: u32,
    codecs: Vec<AudioCodec>,
    callee: IdentityName,
    mikey: Option<Initiator>,
    sdes_key: Option<Secret<Vec<u8>>>,
    zrtp: Option<Box<ZrtpMedia>>,
}

const SDES_SUITE: &str = "AES_CM_128_HMAC_SHA1_80";
const MIKEY_PROFILE: Profile = Profile::AesCm128HmacSha1_80;

/// Our audio section without its formats: the caller writes them (`media_sdp::write_offer` or
/// `write_answer`), then [`finish_section`] adds rtcp-mux and the direction.
fn empty_section(local: &LocalMedia, proto: &str) -> Media {
    Media::new("audio", local.addr.port(), proto, &[])
}

fn finish_section(m: &mut Media, rtcp_mux: bool) {
    if rtcp_mux {
        m.push_attr("rtcp-mux", None);
    }
    m.push_attr("sendrecv", None);
}

/// An offer's audio section: every configured codec in preference order, telephone-event.
fn offer_section(local: &LocalMedia, proto: &str) -> Media {
    let mut m = empty_section(local, proto);
    media_sdp::write_offer(&mut m, &local.codecs, true);
    finish_section(&mut m, true);
    m
}

fn base_sdp(local: &LocalMedia) -> Sdp {
    let session_id = u32::from_be_bytes(local.randomness.bytes());
    let mut sdp = Sdp::new("-", u64::from(session_id), &local.addr.ip().to_string());
    sdp.session_name = "chaincall".into();
    sdp
}

/// The SRTP policy chaincall offers in MIKEY: RFC 3830's default, AES_CM_128_HMAC_SHA1_80.
fn mikey_policy() -> SrtpPolicy {
    SrtpPolicy::default()
}

fn session(profile: Profile, key_and_salt: &[u8]) -> Result<SrtpSession, CallError> {
    SrtpSession::from_key_and_salt(SrtpConfig::new(profile), key_and_salt)
        .map_err(|e| CallError::Keys(format!("SRTP keying: {e}")))
}

/// Where the media goes and how it is keyed, before the SRTP sessions exist.
struct Keyed {
    remote: SocketAddr,
    rtcp_remote: SocketAddr,
    chosen: media_sdp::Negotiated,
    mode: KeyMode,
    verified_peer: Option<IdentityName>,
    local_ssrc: u32,
    /// Master key || salt we send with.
    tx: Secret<Vec<u8>>,
    /// Master key || salt the peer sends with, and its SSRC if known (0: any).
    rx: Secret<Vec<u8>>,
    rx_ssrc: u32,
}

impl Keyed {
    fn into_media(self) -> Result<NegotiatedMedia, CallError> {
        Ok(NegotiatedMedia {
            remote: self.remote,
            rtcp_remote: self.rtcp_remote,
            codec: self.chosen.codec,
            telephone_event: self.chosen.telephone_event,
            opus: self.chosen.opus,
            mode: self.mode,
            verified_peer: self.verified_peer,
            local_ssrc: self.local_ssrc,
            srtp: MediaKeys::Srtp {
                outbound: Box::new(session(MIKEY_PROFILE, &self.tx)?),
                inbound: Box::new(session(MIKEY_PROFILE, &self.rx)?),
            },
            keys: vec![
                StreamKey {
                    ssrc: self.local_ssrc,
                    profile: MIKEY_PROFILE,
                    key_and_salt: Secret::new(self.tx.to_vec()),
                },
                StreamKey {
                    ssrc: self.rx_ssrc,
                    profile: MIKEY_PROFILE,
                    key_and_salt: Secret::new(self.rx.to_vec()),
                },
            ],
        })
    }
}

fn key_material(k: &SrtpKeys) -> Secret<Vec<u8>> {
    let mut v = Secret::new(Vec::with_capacity(30));
    v.extend_from_slice(k.dangerous_master_key());
    v.extend_from_slice(k.dangerous_master_salt());
    v
}

impl Offer {
    /// A MIKEY offer (PKE or DH-SIGN) to `callee`, whose approved key must be in `directory`
    /// (looked up and verified on chain by the caller's shell beforehand).
    pub fn mikey(
        mode: KeyMode,
        own: &IdentityName,
        own_key: &IdentityKey,
        callee: &IdentityName,
        directory: &dyn KeyDirectory,
        local: &LocalMedia,
        now: NtpTime,
    ) -> Result<Offer, CallError> {
        let local_ssrc = u32::from_be_bytes(local.randomness.bytes());
        let mut cfg = OfferConfig::new(own.clone(), callee.clone());
        cfg.policy = mikey_policy();
        cfg.randomness = local.randomness.clone();
        cfg.streams = vec![
            Stream {
                ssrc: local_ssrc,
                roc: 0,
            },
            Stream { ssrc: 0, roc: 0 },
        ];
        let initiator = match mode {
            KeyMode::MikeyPke => Initiator::pke(cfg, own_key, directory, now),
            KeyMode::MikeyDhSign => Initiator::dh_sign(cfg, own_key, now),
            KeyMode::Sdes | KeyMode::Zrtp => {
                return Err(CallError::Misuse("Offer::mikey without MIKEY"));
            }
        }
        .map_err(CallError::Mikey)?;
        let mut sdp = base_sdp(local);
        // Session level: where Wireshark's SDP dissector decodes MIKEY (RFC 4567 §3.1 allows both).
        sdp.attributes.push(chaincall_sip::sdp::Attribute {
            name: "key-mgmt".into(),
            value: Some(format!("mikey {}", B64.encode(initiator.offer()))),
        });
        sdp.media.push(offer_section(local, "RTP/SAVP"));
        Ok(Offer {
            mode,
            sdp: Secret::new(sdp.to_string_crlf()),
            local_ssrc,
            codecs: local.codecs.clone(),
            callee: callee.clone(),
            mikey: Some(initiator),
            sdes_key: None,
            zrtp: None,
        })
    }

    /// A ZRTP offer (RFC 6189): `RTP/AVP`, no keys, `a=zrtp-hash` of our Hello (§8.1). Our
    /// engine is the initiator (it sends Commit once the Hellos crossed).
    pub fn zrtp(
        callee: &IdentityName,
        local: &LocalMedia,
        setup: &ZrtpSetup,
    ) -> Result<Offer, CallError> {
        let local_ssrc = u32::from_be_bytes(local.randomness.bytes());
        let zrtp = setup.engine(local_ssrc, Role::Initiator, None, &local.randomness)?;
        let mut sdp = base_sdp(local);
        let mut m = offer_section(local, "RTP/AVP");
        m.push_attr("zrtp-hash", Some(&zrtp.engine.zrtp_hash_attribute()));
        sdp.media.push(m);
        Ok(Offer {
            mode: KeyMode::Zrtp,
            sdp: Secret::new(sdp.to_string_crlf()),
            local_ssrc,
            codecs: local.codecs.clone(),
            callee: callee.clone(),
            mikey: None,
            sdes_key: None,
            zrtp: Some(Box::new(zrtp)),
        })
    }

    /// An SDES offer (RFC 4568) for a standard phone: our sending key in `a=crypto`.
    pub fn sdes(callee: &IdentityName, local: &LocalMedia) -> Offer {
        let mut key = Secret::new(vec![0u8; 30]);
        local.randomness.fill(&mut key);
        let mut sdp = base_sdp(local);
        let mut m = offer_section(local, "RTP/SAVP");
        m.push_attr(
            "crypto",
            Some(&format!("1 {SDES_SUITE} inline:{}", B64.encode(&key[..]))),
        );
        sdp.media.push(m);
        Offer {
            mode: KeyMode::Sdes,
            sdp: Secret::new(sdp.to_string_crlf()),
            local_ssrc: u32::from_be_bytes(local.randomness.bytes()),
            codecs: local.codecs.clone(),
            callee: callee.clone(),
            mikey: None,
            sdes_key: Some(key),
            zrtp: None,
        }
    }

    /// The SDP to put in the INVITE.
    pub fn sdp(&self) -> &str {
        &self.sdp
    }

    /// The key mode offered.
    pub fn mode(&self) -> KeyMode {
        self.mode
    }

    /// Completes offer/answer with the 200 OK's SDP. With DH-SIGN (or a PKE answer), the answer's
    /// MIKEY message must verify against the callee's key in `directory`.
    pub fn handle_answer(
        mut self,
        answer: &[u8],
        directory: &dyn KeyDirectory,
        now: NtpTime,
    ) -> Result<NegotiatedMedia, CallError> {
        let sdp = Sdp::parse(answer).map_err(|e| CallError::Sdp(e.to_string()))?;
        let (remote, media) = audio_section(&sdp)?;
        // The answer's choice: its first codec that we offered (the answerer sends what it lists
        // first, so that is what we must expect), on the answer's payload types (ours, RFC 3264
        // §6.1).
        let answered: Vec<AudioCodec> = media_sdp::formats(media)
            .into_iter()
            .filter_map(|f| match f {
                Format::Audio(c, _) => Some(c),
                _ => None,
            })
            .filter(|c| {
                self.codecs
                    .iter()
                    .any(|o| o.encoding_name() == c.encoding_name())
            })
            .collect();
        let chosen = media_sdp::negotiate(&answered, media, true)
            .ok_or_else(|| no_common_codec(&self.codecs))?;
        let rtcp_remote = rtcp_target(remote, media);
        match self.mode {
            KeyMode::Zrtp => {
                let mut zrtp = self.zrtp.take().ok_or(CallError::Misuse("no ZRTP offer"))?;
                zrtp.peer_hello_hash = zrtp_hash(media)?;
                Ok(ZrtpMedia::negotiated(
                    zrtp,
                    remote,
                    rtcp_remote,
                    chosen,
                    self.local_ssrc,
                ))
            }
            KeyMode::Sdes => {
                let ours = self
                    .sdes_key
                    .take()
                    .ok_or(CallError::Misuse("no SDES key"))?;
                let theirs = sdes_key(media)?;
                Ok(Keyed {
                    remote,
                    rtcp_remote,
                    chosen,
                    mode: KeyMode::Sdes,
                    verified_peer: None,
                    local_ssrc: self.local_ssrc,
                    tx: ours,
                    rx: theirs,
                    rx_ssrc: 0,
                }
                .into_media()?)
            }
            KeyMode::MikeyPke | KeyMode::MikeyDhSign => {
                let mut init = self
                    .mikey
                    .take()
                    .ok_or(CallError::Misuse("no MIKEY offer"))?;
                let keys: Vec<SrtpKeys> = if init.expects_answer() {
                    let msg = mikey_attribute(&sdp)?
                        .ok_or(CallError::Keys("the answer has no MIKEY message".into()))?;
                    init.handle_answer(&msg, directory, now, 60)
                        .map_err(CallError::Mikey)?
                        .to_vec()
                } else {
                    init.keys()
                        .ok_or(CallError::Keys("MIKEY offer without keys".into()))?
                        .to_vec()
                };
                let (tx, rx) = two_keys(&keys)?;
                let tx_mat = key_material(tx);
                let rx_mat = key_material(rx);
                Ok(Keyed {
                    remote,
                    rtcp_remote,
                    chosen,
                    mode: self.mode,
                    verified_peer: Some(self.callee.clone()),
                    local_ssrc: self.local_ssrc,
                    tx: tx_mat,
                    rx: rx_mat,
                    rx_ssrc: rx.ssrc,
                }
                .into_media()?)
            }
        }
    }
}

/// CS 1 keys the caller's stream, CS 2 the callee's.
fn two_keys(keys: &[SrtpKeys]) -> Result<(&SrtpKeys, &SrtpKeys), CallError> {
    let first = keys.iter().find(|k| k.cs_id == 1);
    let second = keys.iter().find(|k| k.cs_id == 2);
    match (first, second) {
        (Some(a), Some(b)) => Ok((a, b)),
        _ => Err(CallError::Keys(
            "MIKEY must key two crypto sessions (one per direction)".into(),
        )),
    }
}

fn mikey_attribute(sdp: &Sdp) -> Result<Option<Vec<u8>>, CallError> {
    match sdp.key_mgmt().into_iter().find(|k| k.protocol == "mikey") {
        None => Ok(None),
        Some(k) => chaincall_mikey::sdp::decode_base64(k.data)
            .map(Some)
            .map_err(|e| CallError::Sdp(format!("key-mgmt: {e}"))),
    }
}

fn sdes_key(media: &Media) -> Result<Secret<Vec<u8>>, CallError> {
    let crypto: Crypto<'_> = media
        .cryptos()
        .find(|c| c.suite == SDES_SUITE)
        .ok_or_else(|| CallError::Keys(format!("no a=crypto with {SDES_SUITE}")))?;
    let inline = crypto
        .keys
        .first()
        .ok_or_else(|| CallError::Keys("a=crypto without inline key".into()))?;
    let raw = Secret::new(
        B64.decode(inline.key_salt)
            .map_err(|_| CallError::Keys("a=crypto inline key is not base64".into()))?,
    );
    if raw.len() != 30 {
        return Err(CallError::Keys(format!(
            "a=crypto inline key is {} bytes, {SDES_SUITE} needs 30",
            raw.len()
        )));
    }
    Ok(raw)
}

/// The first active audio section and where its media goes.
fn audio_section(sdp: &Sdp) -> Result<(SocketAddr, &Media), CallError> {
    let media = sdp
        .media
        .iter()
        .find(|m| m.media == "audio" && m.port != 0)
        .ok_or_else(|| CallError::Sdp("no active audio stream".into()))?;
    let conn = media
        .connections
        .first()
        .or(sdp.connection.as_ref())
        .ok_or_else(|| CallError::Sdp("no c= line".into()))?;
    let ip: IpAddr = conn
        .address
        .split('/')
        .next()
        .unwrap_or_default()
        .parse()
        .map_err(|_| CallError::Sdp(format!("c= address {:?} is not an IP", conn.address)))?;
    Ok((SocketAddr::new(ip, media.port), media))
}

/// No codec in common: an SDP error (the answerer refuses the call with 488) naming ours.
fn no_common_codec(ours: &[AudioCodec]) -> CallError {
    let names: Vec<&str> = ours.iter().map(|c| c.encoding_name()).collect();
    CallError::Sdp(format!("no common codec (we take {})", names.join(", ")))
}

/// RFC 5761 §5.1.1: multiplex only when the answer (or, for the answerer, the offer) has
/// `a=rtcp-mux`; otherwise RTCP goes to the RTP port + 1.
fn rtcp_target(remote: SocketAddr, media: &Media) -> SocketAddr {
    if media.attribute("rtcp-mux").next().is_some() {
        remote
    } else {
        SocketAddr::new(remote.ip(), remote.port().wrapping_add(1))
    }
}

/// What the callee learns from an offer before deciding to answer.
pub struct IncomingOffer {
    /// How the caller keyed the call.
    pub mode: KeyMode,
    /// With SDES it carries the caller's sending key inline (`a=crypto`); `Sdp` is no `Zeroize`
    /// type, so `Debug` below leaves it out rather than wrapping it in a `Secret`.
    sdp: Sdp,
    mikey: Option<Vec<u8>>,
}

impl std::fmt::Debug for IncomingOffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IncomingOffer")
            .field("mode", &self.mode)
            .field("mikey_len", &self.mikey.as_ref().map(Vec::len))
            .finish_non_exhaustive()
    }
}

impl IncomingOffer {
    /// Parses an INVITE's SDP offer.
    pub fn parse(body: &[u8]) -> Result<IncomingOffer, CallError> {
        let sdp = Sdp::parse(body).map_err(|e| CallError::Sdp(e.to_string()))?;
        let mikey = mikey_attribute(&sdp)?;
        let mode = match &mikey {
            Some(m) => {
                match chaincall_mikey::message::Message::decode(m).map(|msg| msg.header.data_type) {
                    Ok(chaincall_mikey::message::DataType::DhInit) => KeyMode::MikeyDhSign,
                    Ok(_) => KeyMode::MikeyPke,
                    Err(e) => return Err(CallError::Mikey(e.into())),
                }
            }
            // ZRTP only when announced (`a=zrtp-hash`): an offer with neither keys nor the
            // hash is refused as SDES without a=crypto, as before.
            None if audio_section(&sdp).is_ok_and(|(_, m)| {
                m.attribute("zrtp-hash").next().is_some() && m.cryptos().next().is_none()
            }) =>
            {
                KeyMode::Zrtp
            }
            None => KeyMode::Sdes,
        };
        Ok(IncomingOffer { mode, sdp, mikey })
    }

    /// Checks, before answering, that the offer's MIKEY signature is `claimed`'s under its
    /// approved key in `directory` ([`Responder::verify_offer`]: nothing keyed, no replay entry, so
    /// [`IncomingOffer::accept`] still works afterwards). An SDES offer proves nothing: an error.
    pub fn verify_signer(
        &self,
        claimed: &IdentityName,
        responder: &Responder,
        directory: &dyn KeyDirectory,
        now: NtpTime,
    ) -> Result<(), CallError> {
        let msg = self
            .mikey
            .as_deref()
            .ok_or_else(|| CallError::Keys("SDES offer: no signature to check".into()))?;
        responder
            .verify_offer(msg, Some(claimed), directory, now)
            .map(|_| ())
            .map_err(CallError::Mikey)
    }

    /// Accepts a ZRTP offer (see [`IncomingOffer::parse`]): the answer with `RTP/AVP` and our
    /// `a=zrtp-hash`; the engine, a responder, checks the caller's Hello against the offer's
    /// hash. The caller's identity was checked by its PASSporT before.
    pub fn accept_zrtp(
        self,
        local: &LocalMedia,
        setup: &ZrtpSetup,
    ) -> Result<(String, NegotiatedMedia), CallError> {
        if self.mode != KeyMode::Zrtp {
            return Err(CallError::Misuse("accept_zrtp for another key mode"));
        }
        let (remote, media) = audio_section(&self.sdp)?;
        let chosen = media_sdp::negotiate(&local.codecs, media, true)
            .ok_or_else(|| no_common_codec(&local.codecs))?;
        let rtcp_remote = rtcp_target(remote, media);
        let local_ssrc = u32::from_be_bytes(local.randomness.bytes());
        let zrtp = setup.engine(
            local_ssrc,
            Role::Responder,
            zrtp_hash(media)?,
            &local.randomness,
        )?;
        let mut answer = base_sdp(local);
        let mut m = empty_section(local, "RTP/AVP");
        media_sdp::write_answer(&mut m, &chosen);
        m.push_attr("zrtp-hash", Some(&zrtp.engine.zrtp_hash_attribute()));
        finish_section(&mut m, rtcp_remote == remote);
        answer.media.push(m);
        Ok((
            answer.to_string_crlf(),
            ZrtpMedia::negotiated(Box::new(zrtp), remote, rtcp_remote, chosen, local_ssrc),
        ))
    }

    /// Accepts the offer: checks the caller's MIKEY message against `directory` (the caller's
    /// approved key, looked up on chain) and that it was made by `claimed` (the From header's
    /// identity), keys SRTP both ways, and builds the answer SDP.
    pub fn accept(
        self,
        claimed: Option<&IdentityName>,
        responder: &mut Responder,
        directory: &dyn KeyDirectory,
        local: &LocalMedia,
        now: NtpTime,
    ) -> Result<(String, NegotiatedMedia), CallError> {
        let (remote, media) = audio_section(&self.sdp)?;
        // Our preference first (RFC 3264 §6.1 lets the answerer choose), on the offer's numbers.
        let chosen = media_sdp::negotiate(&local.codecs, media, true)
            .ok_or_else(|| no_common_codec(&local.codecs))?;
        let rtcp_remote = rtcp_target(remote, media);
        let mut answer = base_sdp(local);
        let mut m = empty_section(local, "RTP/SAVP");
        media_sdp::write_answer(&mut m, &chosen);
        finish_section(&mut m, rtcp_remote == remote);
        let local_ssrc = u32::from_be_bytes(local.randomness.bytes());
        let negotiated = match (&self.mikey, self.mode) {
            (None, KeyMode::Zrtp) => {
                return Err(CallError::Misuse("a ZRTP offer is accepted by accept_zrtp"));
            }
            (Some(msg), _) => {
                let accepted = responder
                    .handle_offer(msg, directory, now)
                    .map_err(CallError::Mikey)?;
                if let Some(claimed) = claimed
                    && &accepted.initiator != claimed
                {
                    return Err(CallError::Keys(format!(
                        "MIKEY was signed by {} but the call claims to come from {claimed}",
                        accepted.initiator
                    )));
                }
                if let Some(a) = &accepted.answer {
                    answer.attributes.push(chaincall_sip::sdp::Attribute {
                        name: "key-mgmt".into(),
                        value: Some(format!("mikey {}", B64.encode(a))),
                    });
                }
                let (rx, tx) = two_keys(&accepted.keys)?;
                let tx_mat = key_material(tx);
                let rx_mat = key_material(rx);
                Keyed {
                    remote,
                    rtcp_remote,
                    chosen,
                    mode: match accepted.mode {
                        Mode::DhSign => KeyMode::MikeyDhSign,
                        _ => KeyMode::MikeyPke,
                    },
                    verified_peer: Some(accepted.initiator.clone()),
                    local_ssrc,
                    tx: tx_mat,
                    rx: rx_mat,
                    rx_ssrc: rx.ssrc,
                }
                .into_media()?
            }
            (None, _) => {
                let theirs = sdes_key(media)?;
                let mut ours = Secret::new(vec![0u8; 30]);
                local.randomness.fill(&mut ours);
                let tag = media
                    .cryptos()
                    .find(|c| c.suite == SDES_SUITE)
                    .map_or(1, |c| c.tag);
                m.push_attr(
                    "crypto",
                    Some(&format!(
                        "{tag} {SDES_SUITE} inline:{}",
                        B64.encode(&ours[..])
                    )),
                );
                Keyed {
                    remote,
                    rtcp_remote,
                    chosen,
                    mode: KeyMode::Sdes,
                    verified_peer: None,
                    local_ssrc,
                    tx: ours,
                    rx: theirs,
                    rx_ssrc: 0,
                }
                .into_media()?
            }
        };
        answer.media.push(m);
        Ok((answer.to_string_crlf(), negotiated))
    }
}

/// A stream's direction (RFC 3264 §5.1, §8.4): whether each side sends and receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Both ways (the default).
    SendRecv,
    /// The describing side sends only: it holds the other (RFC 3264 §8.4).
    SendOnly,
    /// The describing side receives only: the answer to a hold.
    RecvOnly,
    /// Neither way.
    Inactive,
}

impl Direction {
    /// The attribute's name.
    pub fn attribute(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }

    fn of(send: bool, recv: bool) -> Direction {
        match (send, recv) {
            (true, true) => Direction::SendRecv,
            (true, false) => Direction::SendOnly,
            (false, true) => Direction::RecvOnly,
            (false, false) => Direction::Inactive,
        }
    }

    /// The describing side sends.
    pub fn sends(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::SendOnly)
    }

    /// The describing side receives.
    pub fn receives(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::RecvOnly)
    }

    /// The answer to an offer with this direction from a side that itself wants `ours`
    /// (RFC 3264 §6.1: we send only what the offerer receives, receive only what it sends).
    pub fn answer(self, ours: Direction) -> Direction {
        Direction::of(
            ours.sends() && self.receives(),
            ours.receives() && self.sends(),
        )
    }
}

/// The direction of an SDP's audio stream (media level, else session level, else sendrecv).
pub fn direction(sdp: &[u8]) -> Result<Direction, CallError> {
    let sdp = Sdp::parse(sdp).map_err(|e| CallError::Sdp(e.to_string()))?;
    let (_, media) = audio_section(&sdp)?;
    let names = ["sendrecv", "sendonly", "recvonly", "inactive"];
    let named = media
        .attributes
        .iter()
        .chain(sdp.attributes.iter())
        .find(|a| names.contains(&a.name.as_str()))
        .map_or("sendrecv", |a| a.name.as_str());
    Ok(match named {
        "sendonly" => Direction::SendOnly,
        "recvonly" => Direction::RecvOnly,
        "inactive" => Direction::Inactive,
        _ => Direction::SendRecv,
    })
}

/// Our session description again, with the same keys and codecs, its audio stream's direction
/// set to `dir` and the origin's version one higher (RFC 3264 §8: a changed description must
/// have a greater version). For hold and resume re-INVITEs and their answers.
pub fn redescribe(sdp: &str, dir: Direction) -> Result<String, CallError> {
    let mut sdp = Sdp::parse(sdp.as_bytes()).map_err(|e| CallError::Sdp(e.to_string()))?;
    let version: u64 = sdp.origin.session_version.parse().unwrap_or(0);
    sdp.origin.session_version = version.wrapping_add(1).to_string();
    let names = ["sendrecv", "sendonly", "recvonly", "inactive"];
    sdp.attributes.retain(|a| !names.contains(&a.name.as_str()));
    let media = sdp
        .media
        .iter_mut()
        .find(|m| m.media == "audio" && m.port != 0)
        .ok_or_else(|| CallError::Sdp("no active audio stream".into()))?;
    media
        .attributes
        .retain(|a| !names.contains(&a.name.as_str()));
    media.push_attr(dir.attribute(), None);
    Ok(sdp.to_string_crlf())
}

/// What in a session description keys its media: the transport profile and the key lines
/// (`a=key-mgmt`, `a=crypto`, `a=zrtp-hash`). A re-INVITE (or its answer) must carry exactly
/// the lines the call was keyed with: anything else would re-key or downgrade it mid-call.
/// `Debug` shows no key: SDES lines carry one inline.
pub struct SecurityLines {
    proto: String,
    key_mgmt: Vec<String>,
    crypto: Vec<Secret<String>>,
    zrtp_hash: Vec<String>,
}

impl std::fmt::Debug for SecurityLines {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecurityLines")
            .field("proto", &self.proto)
            .field("key_mgmt", &self.key_mgmt.len())
            .field("crypto_suites", &self.suites())
            .field("zrtp_hash", &self.zrtp_hash)
            .finish()
    }
}

impl SecurityLines {
    /// The lines of `sdp`'s audio stream (session-level `a=key-mgmt` included).
    pub fn of(sdp: &[u8]) -> Result<SecurityLines, CallError> {
        let sdp = Sdp::parse(sdp).map_err(|e| CallError::Sdp(e.to_string()))?;
        let (_, media) = audio_section(&sdp)?;
        let values = |name: &'static str| -> Vec<String> {
            media
                .attributes
                .iter()
                .chain(sdp.attributes.iter())
                .filter(|a| a.name == name)
                .map(|a| a.value.clone().unwrap_or_default())
                .collect()
        };
        Ok(SecurityLines {
            proto: media.proto.clone(),
            key_mgmt: values("key-mgmt"),
            crypto: values("crypto").into_iter().map(Secret::new).collect(),
            zrtp_hash: values("zrtp-hash"),
        })
    }

    /// The SDES suites named (`a=crypto:<tag> <suite> …`).
    fn suites(&self) -> Vec<String> {
        self.crypto
            .iter()
            .filter_map(|c| c.split_whitespace().nth(1).map(str::to_owned))
            .collect()
    }

    /// Why `new` (a re-INVITE's description, or its answer) would change how the call is keyed,
    /// in words; `None` when it keeps every key line and the profile. Mid-call re-keying is not
    /// supported, so any change is refused, and the words name the downgrade when it is one.
    pub fn change_to(&self, new: &SecurityLines) -> Option<String> {
        let crypto_same = self.crypto.len() == new.crypto.len()
            && self
                .crypto
                .iter()
                .zip(&new.crypto)
                .all(|(a, b)| a.as_str() == b.as_str());
        if self.proto == new.proto
            && self.key_mgmt == new.key_mgmt
            && crypto_same
            && self.zrtp_hash == new.zrtp_hash
        {
            return None;
        }
        let had_mikey = !self.key_mgmt.is_empty();
        let had_zrtp = !self.zrtp_hash.is_empty();
        let reason = if had_zrtp && new.zrtp_hash.is_empty() && new.crypto.is_empty() {
            format!("ZRTP dropped: {} without a=zrtp-hash", new.proto)
        } else if new.proto == "RTP/AVP" && new.zrtp_hash.is_empty() {
            "RTP/AVP without ZRTP: unencrypted media".to_owned()
        } else if had_mikey && new.key_mgmt.is_empty() && !new.crypto.is_empty() {
            "MIKEY replaced by SDES (a=crypto): keys in the signalling, not bound to the chain"
                .to_owned()
        } else if had_mikey && new.key_mgmt.is_empty() {
            "the MIKEY key line (a=key-mgmt) is gone".to_owned()
        } else if had_mikey && self.key_mgmt != new.key_mgmt {
            "a different MIKEY message (re-keying mid-call is not supported)".to_owned()
        } else if had_zrtp && new.zrtp_hash.is_empty() {
            "ZRTP replaced by SDES (a=crypto)".to_owned()
        } else if had_zrtp && self.zrtp_hash != new.zrtp_hash {
            "a different a=zrtp-hash mid-call".to_owned()
        } else if !self.crypto.is_empty() && new.crypto.is_empty() {
            "the SDES key line (a=crypto) is gone".to_owned()
        } else if self.suites() != new.suites() {
            format!(
                "the crypto suite changed from {} to {}",
                self.suites().join(", "),
                new.suites().join(", ")
            )
        } else if !crypto_same {
            "different SDES keys (re-keying mid-call is not supported)".to_owned()
        } else if self.proto != new.proto {
            format!("the profile changed from {} to {}", self.proto, new.proto)
        } else {
            "new key lines beside the call's (re-keying mid-call is not supported)".to_owned()
        };
        Some(reason)
    }
}
