//! The three key-transport methods, each as an initiator and a responder (RFC 3830 §3, §5):
//!
//! | mode | I_MESSAGE (offer, in the INVITE) | R_MESSAGE (answer, in the 200 OK) |
//! | --- | --- | --- |
//! | PKE (§3.2) | HDR, T, RAND, IDi, IDr, SP, KEMAC, PKE, SIGNi | only if V: HDR, T, IDr, V |
//! | DH-SIGN (§3.3) | HDR, T, RAND, IDi, IDr, SP, DHi, SIGNi | HDR, T, IDr, IDi, DHr, DHi, SIGNr |
//! | PSK (§3.1) | HDR, T, RAND, IDi, IDr, SP, KEMAC | only if V: HDR, T, IDr, V |
//!
//! Identities are URIs of chaincall names; their keys come from a [`KeyDirectory`], and only
//! approved keys are used. Each accepted exchange yields one [`SrtpKeys`] per crypto session.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use chaincall_identity::provider::{EphemeralSecret, IdentitySecret, Point};
use chaincall_identity::{
    CryptoProvider, IdentityKey, IdentityName, IdentitySignature, KeyDirectory, PublicIdentityKey,
    Randomness, RustCrypto, Secret, ecies,
};
use p256::elliptic_curve::sec1::ToEncodedPoint;
use zeroize::Zeroizing;

use crate::error::MikeyError;
use crate::message::{
    CsIdMap, DataType, Dh, DhGroup, EncrAlg, ErrorCode, Header, Id, IdRole, IdType, Kemac, KeyData,
    KeyKind, KeyValidity, MacAlg, Message, Payload, Pke, PkeCache, PolicyParam, PrfFunc, ProtType,
    SecurityPolicy, Sign, SignType, SrtpIdEntry, Timestamp, Verification, decode_key_data,
    decode_pke_key_data, encode_key_data, encode_pke_key_data,
};
use crate::policy::SrtpPolicy;
use crate::prf::{TransportKeys, derive_srtp};
use crate::replay::{
    DEFAULT_CAPACITY, DEFAULT_PER_INITIATOR, DEFAULT_WINDOW_SECS, ExchangeId, ReplayCache,
};
use crate::time::NtpTime;
use crate::uri::{identity_uri, resolve_identity};

/// ECIES context label for the PKE envelope: a ciphertext made for MIKEY opens nowhere else. The
/// exchange's identities, CSB ID and RAND follow it ([`pke_context`]).
const PKE_CONTEXT_LABEL: &[u8] = b"chaincall mikey pke env_key v2";
/// RAND length: RFC 3830 §6.11 asks for at least 128 bits.
const RAND_LEN: usize = 16;
/// TGK length (PKE, PSK). The TGK only feeds the PRF; 256 bits is one PRF chunk.
const TGK_LEN: usize = 32;
/// Envelope key length (PKE).
const ENV_KEY_LEN: usize = 32;
/// Shortest PSK accepted (RFC 3830 §9.1 warns about guessable keys).
const MIN_PSK_LEN: usize = 16;
/// ECDSA P-256 `r || s`.
const SIG_LEN: usize = 64;

/// The key-transport method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    /// Pre-shared key (§3.1).
    Psk,
    /// Public-key envelope to the responder's on-chain key, signed by the initiator (§3.2).
    Pke,
    /// Signed ephemeral ECDH, Station-to-Station (§3.3): forward secrecy.
    DhSign,
}

impl Mode {
    /// The mode's name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Psk => "PSK",
            Self::Pke => "PKE",
            Self::DhSign => "DH-SIGN",
        }
    }
}

/// One SRTP stream the offer keys: its SSRC (0 when not yet known) and rollover counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stream {
    /// The sender's SSRC.
    pub ssrc: u32,
    /// The current rollover counter (0 for a new stream).
    pub roc: u32,
}

/// The ECIES context of a PKE envelope: `label || len(IDi) || IDi || len(IDr) || IDr || CSB ID ||
/// len(RAND) || RAND`, with IDi and IDr the ID payloads' data exactly as sent (lengths 2 bytes, as in
/// §6.7; RAND's 1 byte, as in §6.11). The envelope key then opens only for the exchange it was
/// made for: an offer whose IDi, IDr, CSB ID or RAND was changed (and re-signed by whoever changed
/// it) does not open at the responder. This closes the unknown key share of plain PKE, where an
/// approved subscriber could swap in her own IDi and signature and pass the initiator's TGK off as
/// hers (issue 13, item 2); the KEMAC also carries IDi under the envelope key (§3.2).
fn pke_context(idi: &[u8], idr: &[u8], csb_id: u32, rand: &[u8]) -> Result<Vec<u8>, MikeyError> {
    let too_long = |field, len, max| {
        MikeyError::Encode(crate::error::EncodeError::TooLong { field, len, max })
    };
    let idi_len = u16::try_from(idi.len()).map_err(|_| too_long("IDi", idi.len(), 0xffff))?;
    let idr_len = u16::try_from(idr.len()).map_err(|_| too_long("IDr", idr.len(), 0xffff))?;
    let rand_len = u8::try_from(rand.len()).map_err(|_| too_long("RAND", rand.len(), 0xff))?;
    let mut ctx =
        Vec::with_capacity(PKE_CONTEXT_LABEL.len() + 9 + idi.len() + idr.len() + rand.len());
    ctx.extend_from_slice(PKE_CONTEXT_LABEL);
    ctx.extend_from_slice(&idi_len.to_be_bytes());
    ctx.extend_from_slice(idi);
    ctx.extend_from_slice(&idr_len.to_be_bytes());
    ctx.extend_from_slice(idr);
    ctx.extend_from_slice(&csb_id.to_be_bytes());
    ctx.push(rand_len);
    ctx.extend_from_slice(rand);
    Ok(ctx)
}

/// What an initiator offers.
#[derive(Debug, Clone)]
pub struct OfferConfig {
    /// Our identity (IDi).
    pub initiator: IdentityName,
    /// The callee (IDr); its key is looked up in the directory.
    pub responder: IdentityName,
    /// SIP domain for `sip:+NUMBER@domain` IDs; `None` writes `tel:` URIs.
    pub sip_domain: Option<String>,
    /// One crypto session per stream (CS ID = position + 1), at most 255.
    pub streams: Vec<Stream>,
    /// The SRTP policy for every stream.
    pub policy: SrtpPolicy,
    /// PSK/PKE: ask for a verification message (V flag, RFC 3830 §3.1-3.2). On by default: the
    /// V MAC proves the responder derived this exchange's transport keys (it holds the PSK, or
    /// opened the envelope sealed to its on-chain key), which is the only key confirmation and
    /// responder authentication these modes have. DH always has a signed answer.
    pub request_verification: bool,
    /// The P-256 backend for signing, ECIES and ECDH ([`RustCrypto`] by default).
    pub crypto: Arc<dyn CryptoProvider>,
    /// Where CSB IDs, RANDs, keys and ephemeral keys come from (the OS CSPRNG by default; seeded
    /// in tests, so an offer can be replayed byte for byte).
    pub randomness: Randomness,
}

impl OfferConfig {
    /// One stream with unknown SSRC, the default policy, verification requested.
    pub fn new(initiator: IdentityName, responder: IdentityName) -> Self {
        Self {
            initiator,
            responder,
            sip_domain: None,
            streams: vec![Stream::default()],
            policy: SrtpPolicy::default(),
            request_verification: true,
            crypto: Arc::new(RustCrypto),
            randomness: Randomness::os(),
        }
    }
}

/// The SRTP master key and salt of one crypto session (RFC 3830 §4.1.3), with the stream it keys.
#[derive(Clone, Debug)]
pub struct SrtpKeys {
    /// The crypto session ID (1-based position in the CS ID map).
    pub cs_id: u8,
    /// The SSRC from the CS ID map.
    pub ssrc: u32,
    /// The ROC from the CS ID map.
    pub roc: u32,
    /// The policy for this session.
    pub policy: SrtpPolicy,
    master_key: Secret<Vec<u8>>,
    master_salt: Secret<Vec<u8>>,
}

impl SrtpKeys {
    /// The SRTP master key (TEK). Secret: hand it to SRTP, never log it.
    pub fn dangerous_master_key(&self) -> &[u8] {
        &self.master_key
    }

    /// The SRTP master salt. Secret.
    pub fn dangerous_master_salt(&self) -> &[u8] {
        &self.master_salt
    }
}

fn ntp(t: &Timestamp) -> Result<NtpTime, MikeyError> {
    match t {
        Timestamp::NtpUtc(v) | Timestamp::Ntp(v) => Ok(NtpTime(*v)),
        // A counter needs per-peer state the phone does not keep (§5.4); calls use NTP-UTC.
        Timestamp::Counter(_) => Err(MikeyError::Unsupported("COUNTER timestamps")),
    }
}

/// The SP payload values for `policy`, kept alive while the message borrows them.
fn sp_storage(policy: &SrtpPolicy) -> Vec<(u8, [u8; 1])> {
    policy.to_params()
}

fn sp_payload(storage: &[(u8, [u8; 1])]) -> Payload<'_> {
    Payload::Sp(SecurityPolicy {
        policy_no: 0,
        prot_type: ProtType::Srtp,
        params: storage
            .iter()
            .map(|(t, v)| PolicyParam {
                param_type: *t,
                value: v,
            })
            .collect(),
    })
}

fn srtp_map(streams: &[Stream]) -> CsIdMap {
    CsIdMap::SrtpId(
        streams
            .iter()
            .map(|s| SrtpIdEntry {
                policy_no: 0,
                ssrc: s.ssrc,
                roc: s.roc,
            })
            .collect(),
    )
}

fn derive_all(
    tgk: &[u8],
    header: &Header,
    rand: &[u8],
    policies: &[(u8, SrtpPolicy)],
) -> Result<Vec<SrtpKeys>, MikeyError> {
    let CsIdMap::SrtpId(entries) = &header.cs_map;
    let mut out = Vec::with_capacity(entries.len());
    for (i, e) in entries.iter().enumerate() {
        let policy = policies
            .iter()
            .find(|(no, _)| *no == e.policy_no)
            .map(|(_, p)| *p)
            .or_else(|| policies.is_empty().then(SrtpPolicy::default))
            .ok_or(MikeyError::Unexpected(
                "CS ID map names a policy no SP payload defines",
            ))?;
        // Invariant: the map has at most 255 entries (its count is one byte), so i + 1 <= 255.
        let cs_id = u8::try_from(i + 1).expect("at most 255 crypto sessions");
        let (master_key, master_salt) = derive_srtp(
            tgk,
            cs_id,
            header.csb_id,
            rand,
            usize::from(policy.encr_key_len),
            usize::from(policy.salt_len),
        );
        out.push(SrtpKeys {
            cs_id,
            ssrc: e.ssrc,
            roc: e.roc,
            policy,
            master_key: Secret::new(master_key.to_vec()),
            master_salt: Secret::new(master_salt.to_vec()),
        });
    }
    Ok(out)
}

/// Signs `bytes[..len - 64]` and writes the signature into the last 64 bytes (the SIGN payload,
/// encoded last with a zero placeholder). RFC 3830 §5.2: the signature covers the whole message
/// except the signature field itself.
fn sign_in_place(bytes: &mut [u8], key: &dyn IdentitySecret) {
    let split = bytes.len() - SIG_LEN;
    let sig = key.sign(&bytes[..split]);
    bytes[split..].copy_from_slice(sig.as_bytes());
}

fn verify_sign(
    crypto: &dyn CryptoProvider,
    bytes: &[u8],
    sign: &Sign<'_>,
    key: &PublicIdentityKey,
    who: &IdentityName,
) -> Result<(), MikeyError> {
    if sign.s_type != SignType::EcdsaP256Sha256 {
        return Err(MikeyError::Unsupported(
            "signature type (only ECDSA P-256 SHA-256)",
        ));
    }
    let sig = IdentitySignature::from_slice(sign.signature)
        .map_err(|_| MikeyError::BadSignature(who.clone()))?;
    // The SIGN payload is last (the codec enforces it): the signed part is all but the signature.
    let covered = &bytes[..bytes.len() - sign.signature.len()];
    if crypto.verify(key, covered, &sig) {
        Ok(())
    } else {
        Err(MikeyError::BadSignature(who.clone()))
    }
}

fn approved(dir: &dyn KeyDirectory, name: &IdentityName) -> Result<PublicIdentityKey, MikeyError> {
    dir.approved_key(name).map_err(MikeyError::from_directory)
}

/// MIKEY's DH payload carries the uncompressed point (65 bytes); the provider speaks compressed.
fn encode_point(public: &Point) -> Vec<u8> {
    // Invariant: a provider's public point is on the curve.
    let point = p256::PublicKey::from_sec1_bytes(public).expect("provider point on P-256");
    point.to_encoded_point(false).as_bytes().to_vec()
}

fn parse_point(value: &[u8]) -> Result<Point, MikeyError> {
    if value.first() != Some(&0x04) {
        return Err(MikeyError::InvalidDhValue("not an uncompressed SEC1 point"));
    }
    p256::PublicKey::from_sec1_bytes(value)
        .map(|point| chaincall_identity::provider::compress(&point))
        .map_err(|_| MikeyError::InvalidDhValue("not a point on P-256"))
}

/// ECDH with a point [`parse_point`] accepted: the shared x-coordinate, MIKEY's TGK (§3.3).
fn dh_tgk(secret: &dyn EphemeralSecret, peer: &Point) -> Result<Zeroizing<Vec<u8>>, MikeyError> {
    let shared = secret
        .diffie_hellman(peer)
        .map_err(|_| MikeyError::InvalidDhValue("not a point on P-256"))?;
    Ok(Zeroizing::new(shared.to_vec()))
}

/// The parts of a decoded message the modes use, checked for count and order.
struct Parts<'a> {
    t: Timestamp,
    rand: Option<&'a [u8]>,
    idi: Option<Id<'a>>,
    idr: Option<Id<'a>>,
    sps: Vec<&'a SecurityPolicy<'a>>,
    kemac: Option<&'a Kemac<'a>>,
    pke: Option<&'a Pke<'a>>,
    dhs: Vec<&'a Dh<'a>>,
    sign: Option<&'a Sign<'a>>,
    v: Option<&'a Verification<'a>>,
    err: Vec<ErrorCode>,
}

/// Sorts payloads. IDs are ordered: the first ID is the sender's in I_MESSAGEs (IDi) and the
/// responder's in R_MESSAGEs (IDr) per §3; IDR payloads (RFC 6043) say their role explicitly.
fn parts<'a>(msg: &'a Message<'a>, sender_is_initiator: bool) -> Result<Parts<'a>, MikeyError> {
    let mut t = None;
    let mut p = Parts {
        t: Timestamp::Counter(0),
        rand: None,
        idi: None,
        idr: None,
        sps: Vec::new(),
        kemac: None,
        pke: None,
        dhs: Vec::new(),
        sign: None,
        v: None,
        err: Vec::new(),
    };
    let mut plain_ids = Vec::new();
    let dup = |what| MikeyError::Unexpected(what);
    for payload in &msg.payloads {
        match payload {
            Payload::T(ts) if t.is_none() => t = Some(*ts),
            Payload::T(_) => return Err(dup("two T payloads")),
            Payload::Rand(r) if p.rand.is_none() => p.rand = Some(*r),
            Payload::Rand(_) => return Err(dup("two RAND payloads")),
            Payload::Id(id) => plain_ids.push(id.clone()),
            Payload::IdR(idr) => {
                let id = Id {
                    id_type: idr.id_type,
                    data: idr.data,
                };
                let slot = match idr.role {
                    IdRole::Initiator => &mut p.idi,
                    IdRole::Responder => &mut p.idr,
                    _ => {
                        return Err(MikeyError::Unsupported(
                            "IDR role other than initiator/responder",
                        ));
                    }
                };
                if slot.replace(id).is_some() {
                    return Err(dup("two IDs of one role"));
                }
            }
            Payload::Sp(sp) => p.sps.push(sp),
            Payload::Kemac(k) if p.kemac.is_none() => p.kemac = Some(k),
            Payload::Kemac(_) => return Err(dup("two KEMAC payloads")),
            Payload::Pke(k) if p.pke.is_none() => p.pke = Some(k),
            Payload::Pke(_) => return Err(dup("two PKE payloads")),
            Payload::Dh(d) => p.dhs.push(d),
            Payload::Sign(s) => p.sign = Some(s),
            Payload::V(v) if p.v.is_none() => p.v = Some(v),
            Payload::V(_) => return Err(dup("two V payloads")),
            Payload::Err(code) => p.err.push(*code),
            Payload::Cert(_) | Payload::Chash(_) => {
                return Err(MikeyError::Unsupported(
                    "certificates (keys come from the keystore)",
                ));
            }
            Payload::GeneralExt(_) => {}
        }
    }
    if plain_ids.len() > 2 {
        return Err(dup("more than two ID payloads"));
    }
    let mut ids = plain_ids.into_iter();
    let (first, second) = if sender_is_initiator {
        (&mut p.idi, &mut p.idr)
    } else {
        (&mut p.idr, &mut p.idi)
    };
    for (slot, id) in [first, second].into_iter().zip(&mut ids) {
        if slot.replace(id).is_some() {
            return Err(dup("an ID given both as ID and IDR"));
        }
    }
    p.t = t.ok_or(MikeyError::Unexpected("no T payload"))?;
    Ok(p)
}

fn check_header(msg: &Message<'_>, expected: DataType) -> Result<(), MikeyError> {
    if msg.header.data_type != expected {
        return Err(MikeyError::Unexpected(
            "wrong MIKEY data type for this step",
        ));
    }
    if msg.header.prf != PrfFunc::Mikey1 {
        return Err(MikeyError::Unsupported("PRF (only MIKEY-1)"));
    }
    let CsIdMap::SrtpId(entries) = &msg.header.cs_map;
    if entries.is_empty() {
        return Err(MikeyError::Unexpected("no crypto session in the CS ID map"));
    }
    Ok(())
}

fn policies(sps: &[&SecurityPolicy<'_>]) -> Result<Vec<(u8, SrtpPolicy)>, MikeyError> {
    let mut out: Vec<(u8, SrtpPolicy)> = Vec::new();
    for sp in sps {
        if out.iter().any(|(no, _)| *no == sp.policy_no) {
            return Err(MikeyError::Unexpected(
                "two SP payloads with one policy number",
            ));
        }
        out.push((sp.policy_no, SrtpPolicy::from_params(&sp.params)?));
    }
    Ok(out)
}

/// The V MAC input of §5.2 for a verification message: the R_MESSAGE up to the MAC, then the
/// initiator's ID, the responder's ID and the initiator's timestamp (`IDi || IDr || T`).
fn v_mac(
    keys: &TransportKeys,
    r_message_prefix: &[u8],
    idi: &[u8],
    idr: &[u8],
    t_i: u64,
) -> [u8; 20] {
    keys.mac(&[r_message_prefix, idi, idr, &t_i.to_be_bytes()])
}

// -------------------------------------------------------------------------------------------------
// Initiator
// -------------------------------------------------------------------------------------------------

enum Pending {
    /// PKE/PSK: keys known; V message expected (if requested) under these transport keys.
    Verify(TransportKeys),
    /// DH: our ephemeral secret and value, until the answer arrives.
    Dh(Box<dyn EphemeralSecret>, Vec<u8>),
    /// Nothing more to do.
    Done,
}

/// The calling side of a MIKEY exchange.
///
/// Call order: a constructor (`pke`, `dh_sign`, `psk`) makes the offer ([`Initiator::offer`]) to
/// put in the INVITE's SDP. PKE and PSK know the SRTP keys at once ([`Initiator::keys`]); if an
/// answer is expected ([`Initiator::expects_answer`]: DH always, PKE/PSK when verification was
/// requested), pass the answer from the 200 OK to [`Initiator::handle_answer`], which returns the
/// keys once the responder is authenticated.
pub struct Initiator {
    mode: Mode,
    cfg: OfferConfig,
    header: Header,
    rand: [u8; RAND_LEN],
    t: u64,
    idi_uri: String,
    offer: Vec<u8>,
    pending: Pending,
    keys: Option<Vec<SrtpKeys>>,
    error: Option<MikeyError>,
}

impl fmt::Debug for Initiator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Initiator")
            .field("mode", &self.mode)
            .field("csb_id", &self.header.csb_id)
            .field("responder", &self.cfg.responder)
            .field("keys", &self.keys)
            .finish_non_exhaustive()
    }
}

impl Initiator {
    fn start(mode: Mode, cfg: OfferConfig, now: NtpTime) -> Result<(Self, String), MikeyError> {
        if cfg.streams.is_empty() || cfg.streams.len() > 255 {
            return Err(MikeyError::Misuse("an offer keys 1 to 255 streams"));
        }
        cfg.policy.validate()?;
        let data_type = match mode {
            Mode::Psk => DataType::PskInit,
            Mode::Pke => DataType::PkInit,
            Mode::DhSign => DataType::DhInit,
        };
        let header = Header {
            data_type,
            // §6.1: the V flag has no meaning in the DH method.
            v: cfg.request_verification && mode != Mode::DhSign,
            prf: PrfFunc::Mikey1,
            csb_id: u32::from_be_bytes(cfg.randomness.bytes()),
            cs_map: srtp_map(&cfg.streams),
        };
        let idi_uri = identity_uri(&cfg.initiator, cfg.sip_domain.as_deref());
        let idr_uri = identity_uri(&cfg.responder, cfg.sip_domain.as_deref());
        Ok((
            Self {
                mode,
                header,
                rand: cfg.randomness.bytes(),
                t: now.0,
                idi_uri,
                offer: Vec::new(),
                pending: Pending::Done,
                keys: None,
                error: None,
                cfg,
            },
            idr_uri,
        ))
    }

    /// PKE (the paper's mode): a fresh TGK in the KEMAC, encrypted and MACed under keys derived
    /// (§4.1.4) from a fresh envelope key, which is ECIES-encrypted to the responder's approved
    /// on-chain key in the PKE payload; the whole message is signed with our identity key.
    pub fn pke(
        cfg: OfferConfig,
        own_key: &IdentityKey,
        directory: &dyn KeyDirectory,
        now: NtpTime,
    ) -> Result<Self, MikeyError> {
        let responder_key = approved(directory, &cfg.responder)?;
        let (mut this, idr_uri) = Self::start(Mode::Pke, cfg, now)?;
        let env_key = Zeroizing::new(this.cfg.randomness.bytes::<ENV_KEY_LEN>());
        let tgk = Zeroizing::new(this.cfg.randomness.bytes::<TGK_LEN>());
        let transport = TransportKeys::derive(env_key.as_ref(), this.header.csb_id, &this.rand);
        let context = pke_context(
            this.idi_uri.as_bytes(),
            idr_uri.as_bytes(),
            this.header.csb_id,
            &this.rand,
        )?;
        let envelope = this.cfg.randomness.with(|rng| {
            ecies::seal_with(
                &*this.cfg.crypto,
                rng,
                &responder_key,
                &context,
                env_key.as_ref(),
            )
        });
        let encr_data = this.key_data(tgk.as_ref(), &transport, true)?;
        let sp = sp_storage(&this.cfg.policy);
        let zero_mac = [0u8; 20];
        let zero_sig = [0u8; SIG_LEN];
        let msg = Message {
            header: this.header.clone(),
            payloads: vec![
                Payload::T(Timestamp::NtpUtc(this.t)),
                Payload::Rand(&this.rand),
                Payload::Id(Id {
                    id_type: IdType::Uri,
                    data: this.idi_uri.as_bytes(),
                }),
                Payload::Id(Id {
                    id_type: IdType::Uri,
                    data: idr_uri.as_bytes(),
                }),
                sp_payload(&sp),
                Payload::Kemac(Kemac {
                    encr_alg: EncrAlg::AesCm128,
                    encr_data: &encr_data,
                    mac_alg: MacAlg::HmacSha1_160,
                    mac: &zero_mac,
                }),
                Payload::Pke(Pke {
                    cache: PkeCache::NoCache,
                    data: &envelope,
                }),
                Payload::Sign(Sign {
                    s_type: SignType::EcdsaP256Sha256,
                    signature: &zero_sig,
                }),
            ],
        };
        let mut bytes = msg.to_vec()?;
        // §3.2: in PKE the KEMAC MAC covers the KEMAC payload (up to the MAC), whose encrypted
        // part starts with IDi; the signature covers the whole message, MAC included.
        let (_, spans) = Message::decode_with_spans(&bytes)?;
        let kemac = spans.ranges[5].clone();
        let mac_at = kemac.end - 20;
        let mac = transport.mac(&[&bytes[kemac.start..mac_at]]);
        bytes[mac_at..kemac.end].copy_from_slice(&mac);
        sign_in_place(&mut bytes, &*this.cfg.crypto.load_identity(own_key));
        this.offer = bytes;
        this.keys = Some(derive_all(
            &tgk[..],
            &this.header,
            &this.rand,
            &[(0, this.cfg.policy)],
        )?);
        this.pending = if this.header.v {
            Pending::Verify(transport)
        } else {
            Pending::Done
        };
        Ok(this)
    }

    /// DH-SIGN (Station-to-Station): a signed ephemeral P-256 value; the keys follow from the
    /// responder's signed answer. Forward secret: no long-term key can recover them later.
    pub fn dh_sign(
        cfg: OfferConfig,
        own_key: &IdentityKey,
        now: NtpTime,
    ) -> Result<Self, MikeyError> {
        let (mut this, idr_uri) = Self::start(Mode::DhSign, cfg, now)?;
        let secret = this
            .cfg
            .randomness
            .with(|rng| this.cfg.crypto.generate_ephemeral(rng));
        let value = encode_point(&secret.public());
        let sp = sp_storage(&this.cfg.policy);
        let zero_sig = [0u8; SIG_LEN];
        let msg = Message {
            header: this.header.clone(),
            payloads: vec![
                Payload::T(Timestamp::NtpUtc(this.t)),
                Payload::Rand(&this.rand),
                Payload::Id(Id {
                    id_type: IdType::Uri,
                    data: this.idi_uri.as_bytes(),
                }),
                Payload::Id(Id {
                    id_type: IdType::Uri,
                    data: idr_uri.as_bytes(),
                }),
                sp_payload(&sp),
                Payload::Dh(Dh {
                    group: DhGroup::P256,
                    value: &value,
                    kv: KeyValidity::Null,
                }),
                Payload::Sign(Sign {
                    s_type: SignType::EcdsaP256Sha256,
                    signature: &zero_sig,
                }),
            ],
        };
        let mut bytes = msg.to_vec()?;
        sign_in_place(&mut bytes, &*this.cfg.crypto.load_identity(own_key));
        this.offer = bytes;
        this.pending = Pending::Dh(secret, value);
        Ok(this)
    }

    /// PSK: a fresh TGK in a KEMAC encrypted and MACed under keys derived from the pre-shared key;
    /// the MAC covers the whole message (§5.2).
    pub fn psk(cfg: OfferConfig, psk: &[u8], now: NtpTime) -> Result<Self, MikeyError> {
        if psk.len() < MIN_PSK_LEN {
            return Err(MikeyError::Misuse("pre-shared key shorter than 16 bytes"));
        }
        let (mut this, idr_uri) = Self::start(Mode::Psk, cfg, now)?;
        let tgk = Zeroizing::new(this.cfg.randomness.bytes::<TGK_LEN>());
        let transport = TransportKeys::derive(psk, this.header.csb_id, &this.rand);
        let encr_data = this.key_data(tgk.as_ref(), &transport, false)?;
        let sp = sp_storage(&this.cfg.policy);
        let zero_mac = [0u8; 20];
        let msg = Message {
            header: this.header.clone(),
            payloads: vec![
                Payload::T(Timestamp::NtpUtc(this.t)),
                Payload::Rand(&this.rand),
                Payload::Id(Id {
                    id_type: IdType::Uri,
                    data: this.idi_uri.as_bytes(),
                }),
                Payload::Id(Id {
                    id_type: IdType::Uri,
                    data: idr_uri.as_bytes(),
                }),
                sp_payload(&sp),
                Payload::Kemac(Kemac {
                    encr_alg: EncrAlg::AesCm128,
                    encr_data: &encr_data,
                    mac_alg: MacAlg::HmacSha1_160,
                    mac: &zero_mac,
                }),
            ],
        };
        let mut bytes = msg.to_vec()?;
        let mac_at = bytes.len() - 20;
        let mac = transport.mac(&[&bytes[..mac_at]]);
        bytes[mac_at..].copy_from_slice(&mac);
        this.offer = bytes;
        this.keys = Some(derive_all(
            &tgk[..],
            &this.header,
            &this.rand,
            &[(0, this.cfg.policy)],
        )?);
        this.pending = if this.header.v {
            Pending::Verify(transport)
        } else {
            Pending::Done
        };
        Ok(this)
    }

    /// KEMAC data, AES-CM encrypted (§4.2.3): one TGK sub-payload (§6.13), after the initiator's
    /// ID when `with_idi` (PKE: `E(encr_key, IDi || {TGK})`, §3.2).
    fn key_data(
        &self,
        tgk: &[u8],
        transport: &TransportKeys,
        with_idi: bool,
    ) -> Result<Zeroizing<Vec<u8>>, MikeyError> {
        let mut plain = Zeroizing::new(Vec::with_capacity(12 + self.idi_uri.len() + tgk.len()));
        let items = [KeyData {
            kind: KeyKind::Tgk,
            key: tgk,
            salt: None,
            kv: KeyValidity::Null,
        }];
        if with_idi {
            let idi = Id {
                id_type: IdType::Uri,
                data: self.idi_uri.as_bytes(),
            };
            encode_pke_key_data(&idi, &items, &mut plain)?;
        } else {
            encode_key_data(&items, &mut plain)?;
        }
        transport.aes_cm(self.header.csb_id, self.t, &mut plain);
        Ok(plain)
    }

    /// The mode.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The I_MESSAGE to send (RFC 4567: base64 in `a=key-mgmt:mikey`).
    pub fn offer(&self) -> &[u8] {
        &self.offer
    }

    /// The CSB ID naming this exchange.
    pub fn csb_id(&self) -> u32 {
        self.header.csb_id
    }

    /// True while an answer is still needed: always for DH, for PKE/PSK if verification was asked.
    pub fn expects_answer(&self) -> bool {
        !matches!(self.pending, Pending::Done)
    }

    /// The SRTP keys, once known: at once for PKE and PSK, after the answer for DH.
    pub fn keys(&self) -> Option<&[SrtpKeys]> {
        self.keys.as_deref()
    }

    /// Processes the R_MESSAGE from the 200 OK and returns the keys.
    ///
    /// Checks, in order: the message is for this offer (data type, CSB ID), its timestamp is within
    /// `window_secs` of `now`, it names the responder we called, the responder is still approved in
    /// the directory, and its V MAC (PKE/PSK) or SIGN (DH, also binding our own DH value) verifies.
    /// Errors are sticky: after one, later calls return it again.
    pub fn handle_answer(
        &mut self,
        answer: &[u8],
        directory: &dyn KeyDirectory,
        now: NtpTime,
        window_secs: u64,
    ) -> Result<&[SrtpKeys], MikeyError> {
        if let Some(err) = &self.error {
            return Err(err.clone());
        }
        match self.answer_inner(answer, directory, now, window_secs) {
            Ok(()) => {
                self.pending = Pending::Done;
                // Invariant: answer_inner sets the keys on success.
                Ok(self.keys.as_deref().expect("keys set on success"))
            }
            Err(err) => {
                self.error = Some(err.clone());
                Err(err)
            }
        }
    }

    fn answer_inner(
        &mut self,
        answer: &[u8],
        directory: &dyn KeyDirectory,
        now: NtpTime,
        window_secs: u64,
    ) -> Result<(), MikeyError> {
        if matches!(self.pending, Pending::Done) {
            return Err(MikeyError::Misuse("no answer expected"));
        }
        let (msg, spans) = Message::decode_with_spans(answer)?;
        if msg.header.data_type == DataType::Error {
            let p = parts(&msg, false)?;
            return Err(MikeyError::PeerError(
                p.err.first().copied().unwrap_or(ErrorCode::Unspecified),
            ));
        }
        let expected = match self.mode {
            Mode::Psk => DataType::PskResp,
            Mode::Pke => DataType::PkResp,
            Mode::DhSign => DataType::DhResp,
        };
        check_header(&msg, expected)?;
        if msg.header.csb_id != self.header.csb_id || msg.header.cs_map != self.header.cs_map {
            return Err(MikeyError::Unexpected(
                "answer is for another offer (CSB ID or CS map)",
            ));
        }
        let p = parts(&msg, false)?;
        let t = ntp(&p.t)?;
        let skew_secs = t.abs_diff_secs(now);
        if skew_secs > window_secs {
            return Err(MikeyError::StaleTimestamp {
                window_secs,
                skew_secs,
            });
        }
        let idr = p
            .idr
            .as_ref()
            .ok_or(MikeyError::Unexpected("answer without IDr"))?;
        let responder = resolve_identity(idr.id_type, idr.data)?;
        if responder != self.cfg.responder {
            return Err(MikeyError::WrongPeer {
                expected: self.cfg.responder.clone(),
                found: responder,
            });
        }
        let responder_key = approved(directory, &responder)?;
        match std::mem::replace(&mut self.pending, Pending::Done) {
            Pending::Verify(transport) => {
                let Some(v) = p.v else {
                    return Err(MikeyError::Unexpected("verification message without V"));
                };
                if !matches!(msg.payloads.last(), Some(Payload::V(_)))
                    || v.auth_alg != MacAlg::HmacSha1_160
                {
                    return Err(MikeyError::Unexpected("V must be last and HMAC-SHA-1"));
                }
                let v_range = spans.ranges[msg.payloads.len() - 1].clone();
                let prefix = &answer[..v_range.end - 20];
                let expected = v_mac(
                    &transport,
                    prefix,
                    self.idi_uri.as_bytes(),
                    idr.data,
                    self.t,
                );
                if !bool::from(subtle::ConstantTimeEq::ct_eq(&expected[..], v.ver_data)) {
                    return Err(MikeyError::BadMac("V"));
                }
                // The MAC proves the responder holds the PSK or opened the envelope sealed to its
                // approved key; the directory check above refuses one revoked since the offer.
                let _ = responder_key;
                Ok(())
            }
            Pending::Dh(secret, our_value) => {
                let result = (|| {
                    let sign = p
                        .sign
                        .ok_or(MikeyError::Unexpected("DH answer without SIGN"))?;
                    verify_sign(&*self.cfg.crypto, answer, sign, &responder_key, &responder)?;
                    let idi = p
                        .idi
                        .as_ref()
                        .ok_or(MikeyError::Unexpected("DH answer without IDi"))?;
                    if idi.data != self.idi_uri.as_bytes() {
                        return Err(MikeyError::Unexpected("DH answer names another initiator"));
                    }
                    // §3.3 R_MESSAGE: DHr, then DHi echoing our value (binds the answer to the offer).
                    let [dhr, dhi] = p.dhs[..] else {
                        return Err(MikeyError::Unexpected("DH answer needs DHr and DHi"));
                    };
                    if dhi.group != DhGroup::P256 || dhi.value != our_value.as_slice() {
                        return Err(MikeyError::Unexpected(
                            "DH answer does not echo our DH value",
                        ));
                    }
                    if dhr.group != DhGroup::P256 {
                        return Err(MikeyError::Unsupported("DH group (only P-256)"));
                    }
                    let peer = parse_point(dhr.value)?;
                    // §3.3: the TGK is the DH result g^(xi*xr): for ECDH, the shared x-coordinate.
                    let tgk = dh_tgk(&*secret, &peer)?;
                    derive_all(&tgk, &self.header, &self.rand, &[(0, self.cfg.policy)])
                })();
                match result {
                    Ok(keys) => {
                        self.keys = Some(keys);
                        Ok(())
                    }
                    Err(e) => Err(e),
                }
            }
            Pending::Done => Err(MikeyError::Misuse("no answer expected")),
        }
    }
}

// -------------------------------------------------------------------------------------------------
// Responder
// -------------------------------------------------------------------------------------------------

/// How a responder checks offers.
#[derive(Debug, Clone)]
pub struct ResponderConfig {
    /// Our identity: offers must name it as IDr (when they carry an IDr) and our answers carry it.
    pub own_name: IdentityName,
    /// SIP domain for our `sip:+NUMBER@domain` ID in answers; `None` writes `tel:`.
    pub sip_domain: Option<String>,
    /// Allowed clock skew, seconds each way (RFC 3830 §5.4).
    pub window_secs: u64,
    /// Replay cache bound.
    pub replay_capacity: usize,
    /// Replay cache entries one initiator may hold (its share of `replay_capacity`), so that one
    /// signer flooding offers cannot make the phone refuse everyone else's.
    pub replay_per_initiator: usize,
    /// The P-256 backend for verifying, opening envelopes, ECDH and signing answers.
    pub crypto: Arc<dyn CryptoProvider>,
    /// Where DH answers' ephemeral keys come from (the OS CSPRNG by default; seeded in tests).
    pub randomness: Randomness,
}

impl ResponderConfig {
    /// Defaults: 60 s window, 4096 cached offers, 32 per initiator.
    pub fn new(own_name: IdentityName) -> Self {
        Self {
            own_name,
            sip_domain: None,
            window_secs: DEFAULT_WINDOW_SECS,
            replay_capacity: DEFAULT_CAPACITY,
            replay_per_initiator: DEFAULT_PER_INITIATOR,
            crypto: Arc::new(RustCrypto),
            randomness: Randomness::os(),
        }
    }
}

/// An accepted offer: who called, the keys, and the answer to send (if the mode has one).
#[derive(Debug)]
pub struct Accepted {
    /// The mode the initiator chose.
    pub mode: Mode,
    /// The authenticated, approved initiator.
    pub initiator: IdentityName,
    /// The CSB ID of the exchange.
    pub csb_id: u32,
    /// One entry per crypto session.
    pub keys: Vec<SrtpKeys>,
    /// The R_MESSAGE for the 200 OK's SDP: DH always; PKE/PSK when the offer set V.
    pub answer: Option<Vec<u8>>,
}

/// Who signed an offer, as [`Responder::verify_offer`] found before anything was keyed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfferSigner {
    /// The mode the initiator chose (PKE or DH-SIGN).
    pub mode: Mode,
    /// The initiator whose approved key verified the signature.
    pub initiator: IdentityName,
}

/// An offer past the checks that precede its proof.
struct Screened<'a> {
    mode: Mode,
    p: Parts<'a>,
    t: NtpTime,
    rand: &'a [u8],
    idi: Id<'a>,
    idr: Id<'a>,
    initiator: IdentityName,
    initiator_key: PublicIdentityKey,
}

/// The called side: checks offers against the key directory, the clock window and the replay cache.
///
/// Call [`Responder::handle_offer`] for each INVITE's MIKEY offer; on success send
/// [`Accepted::answer`] (if any) in the 200 OK and key SRTP with [`Accepted::keys`]; on failure
/// [`Responder::error_answer`] builds a signed RFC 3830 error message, if the caller wants one.
pub struct Responder {
    cfg: ResponderConfig,
    /// Our identity key, prepared by the provider (zeroized on drop by it).
    secret: Box<dyn IdentitySecret>,
    public: PublicIdentityKey,
    /// Pre-shared keys by the one peer each is shared with.
    psks: HashMap<IdentityName, Zeroizing<Vec<u8>>>,
    replay: ReplayCache,
}

impl fmt::Debug for Responder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Responder")
            .field("own_name", &self.cfg.own_name)
            .field("psk_peers", &self.psks.keys().collect::<Vec<_>>())
            .field("replay_entries", &self.replay.len())
            .finish_non_exhaustive()
    }
}

impl Responder {
    /// A responder holding our identity key (PKE envelopes open with it; DH answers are signed).
    pub fn new(cfg: ResponderConfig, identity: IdentityKey) -> Self {
        let replay = ReplayCache::new(
            cfg.window_secs,
            cfg.replay_capacity,
            cfg.replay_per_initiator,
        );
        Self {
            secret: cfg.crypto.load_identity(&identity),
            public: identity.public(),
            cfg,
            psks: HashMap::new(),
            replay,
        }
    }

    /// Enables PSK offers from `peer` under `psk` (replacing an earlier key for that peer).
    ///
    /// A PSK authenticates whoever holds it, so it is bound to the one identity it is shared with:
    /// a PSK offer is accepted only when its IDi is that peer, and the peer must still be approved
    /// in the directory. (With one key for all initiators, any holder could name any IDi.)
    pub fn set_psk(&mut self, peer: IdentityName, psk: &[u8]) -> Result<(), MikeyError> {
        if psk.len() < MIN_PSK_LEN {
            return Err(MikeyError::Misuse("pre-shared key shorter than 16 bytes"));
        }
        self.psks.insert(peer, Zeroizing::new(psk.to_vec()));
        Ok(())
    }

    /// The replay cache (for inspection and tests).
    pub fn replay_cache(&self) -> &ReplayCache {
        &self.replay
    }

    /// Checks who signed a PKE or DH-SIGN offer, changing nothing: no envelope opened, no keys
    /// derived, no replay-cache entry made, so [`Responder::handle_offer`] still accepts the same
    /// offer afterwards (a phone shows the caller's verification before it rings, and keys the
    /// call only when answered).
    ///
    /// The checks are `handle_offer`'s up to and including the signature: data type, PRF,
    /// timestamp window, IDr is us, IDi is `claimed` (when given: a proof for another identity
    /// proves nothing about the claim), IDi is approved in `directory`, the SIGN payload verifies
    /// under that key. PSK offers are refused: a MAC under a shared key proves nothing to a third
    /// party, and chaincall phones never send them.
    pub fn verify_offer(
        &self,
        offer: &[u8],
        claimed: Option<&IdentityName>,
        directory: &dyn KeyDirectory,
        now: NtpTime,
    ) -> Result<OfferSigner, MikeyError> {
        let msg = Message::decode(offer)?;
        let screened = self.screen(&msg, claimed, directory, now)?;
        if screened.mode == Mode::Psk {
            return Err(MikeyError::Unsupported(
                "PSK offers (only signed offers can be verified before answering)",
            ));
        }
        let sign = screened
            .p
            .sign
            .ok_or(MikeyError::Unexpected("offer without SIGN"))?;
        verify_sign(
            &*self.cfg.crypto,
            offer,
            sign,
            &screened.initiator_key,
            &screened.initiator,
        )?;
        Ok(OfferSigner {
            mode: screened.mode,
            initiator: screened.initiator,
        })
    }

    /// The checks every offer passes before its proof (see [`Responder::handle_offer`]); with
    /// `expected`, IDi must name that identity (checked before the directory is asked).
    fn screen<'a>(
        &self,
        msg: &'a Message<'a>,
        expected: Option<&IdentityName>,
        directory: &dyn KeyDirectory,
        now: NtpTime,
    ) -> Result<Screened<'a>, MikeyError> {
        let mode = match msg.header.data_type {
            DataType::PskInit => Mode::Psk,
            DataType::PkInit => Mode::Pke,
            DataType::DhInit => Mode::DhSign,
            _ => {
                return Err(MikeyError::Unsupported(
                    "data type (offers are PSK, PKE or DH init)",
                ));
            }
        };
        check_header(msg, msg.header.data_type)?;
        let p = parts(msg, true)?;
        let t = ntp(&p.t)?;
        self.replay.check_window(t, now)?;
        let rand = p.rand.ok_or(MikeyError::Unexpected("offer without RAND"))?;
        if rand.len() < RAND_LEN {
            return Err(MikeyError::Unexpected(
                "RAND shorter than 128 bits (RFC 3830 §6.11)",
            ));
        }
        let idi = p
            .idi
            .clone()
            .ok_or(MikeyError::Unexpected("offer without IDi"))?;
        let initiator = resolve_identity(idi.id_type, idi.data)?;
        // RFC 3830 makes IDr optional; we require it, so that what the initiator signed or MACed
        // names the responder it meant (an offer meant for someone else is never ours).
        let idr = p
            .idr
            .clone()
            .ok_or(MikeyError::Unexpected("offer without IDr"))?;
        let named = resolve_identity(idr.id_type, idr.data)?;
        if named != self.cfg.own_name {
            return Err(MikeyError::WrongPeer {
                expected: self.cfg.own_name.clone(),
                found: named,
            });
        }
        if let Some(expected) = expected
            && *expected != initiator
        {
            return Err(MikeyError::WrongPeer {
                expected: expected.clone(),
                found: initiator,
            });
        }
        let initiator_key = approved(directory, &initiator)?;
        Ok(Screened {
            mode,
            p,
            t,
            rand,
            idi,
            idr,
            initiator,
            initiator_key,
        })
    }

    /// Processes an I_MESSAGE.
    ///
    /// Order of checks (cheap first, state last): decode; data type and PRF; timestamp window;
    /// IDi resolves to an identity and IDr is present and is us; the initiator is approved in the
    /// directory (unknown, pending and revoked are refused by name); the signature (PKE, DH) or the
    /// KEMAC MAC under the PSK shared with that initiator (PSK) verifies; the envelope, sealed to
    /// this exchange's IDi, IDr, CSB ID and RAND, opens, the KEMAC MAC verifies and the IDi inside
    /// the KEMAC is the message's (PKE); the policy is one we run; only then the replay cache
    /// records the exchange (mode, initiator, CSB ID, T, RAND), refusing a repeat (§5.4).
    pub fn handle_offer(
        &mut self,
        offer: &[u8],
        directory: &dyn KeyDirectory,
        now: NtpTime,
    ) -> Result<Accepted, MikeyError> {
        let (msg, spans) = Message::decode_with_spans(offer)?;
        let Screened {
            mode,
            p,
            t,
            rand,
            idi,
            idr,
            initiator,
            initiator_key,
        } = self.screen(&msg, None, directory, now)?;
        let (idi, idr) = (&idi, &idr);
        let policies = policies(&p.sps)?;
        // §5.4: what names this exchange in the replay cache, all of it authenticated below.
        let exchange = ExchangeId {
            mode,
            initiator: &initiator,
            csb_id: msg.header.csb_id,
            t,
            rand,
        };
        let own_uri = identity_uri(&self.cfg.own_name, self.cfg.sip_domain.as_deref());

        let (keys, answer) = match mode {
            Mode::Pke | Mode::Psk => {
                let kemac = p
                    .kemac
                    .ok_or(MikeyError::Unexpected("offer without KEMAC"))?;
                let kemac_index = msg
                    .payloads
                    .iter()
                    .position(|x| matches!(x, Payload::Kemac(_)))
                    .ok_or(MikeyError::Unexpected("offer without KEMAC"))?;
                let kemac_range = spans.ranges[kemac_index].clone();
                if kemac.encr_alg != EncrAlg::AesCm128 || kemac.mac_alg != MacAlg::HmacSha1_160 {
                    return Err(MikeyError::Unsupported(
                        "KEMAC algorithms (only AES-CM-128 with HMAC-SHA-1-160)",
                    ));
                }
                if !p.dhs.is_empty() || p.v.is_some() {
                    return Err(MikeyError::Unexpected(
                        "DH or V payload in a key-transport offer",
                    ));
                }
                let inkey: Zeroizing<Vec<u8>>;
                let mac_ok;
                let transport;
                if mode == Mode::Pke {
                    let sign = p
                        .sign
                        .ok_or(MikeyError::Unexpected("PKE offer without SIGN"))?;
                    let pke = p
                        .pke
                        .ok_or(MikeyError::Unexpected("PKE offer without PKE"))?;
                    let pke_index = msg
                        .payloads
                        .iter()
                        .position(|x| matches!(x, Payload::Pke(_)));
                    if pke_index < Some(kemac_index) {
                        return Err(MikeyError::Unexpected(
                            "PKE before KEMAC (RFC 3830 §3.2 order)",
                        ));
                    }
                    verify_sign(&*self.cfg.crypto, offer, sign, &initiator_key, &initiator)?;
                    let context = pke_context(idi.data, idr.data, msg.header.csb_id, rand)?;
                    inkey = ecies::open_with(&*self.secret, &self.public, &context, pke.data)
                        .map_err(|_| {
                            MikeyError::Envelope("not for our key or this exchange, or altered")
                        })?;
                    transport = TransportKeys::derive(&inkey, msg.header.csb_id, rand);
                    mac_ok = transport.verify_mac(
                        &[&offer[kemac_range.start..kemac_range.end - 20]],
                        kemac.mac,
                    );
                } else {
                    if p.sign.is_some() || p.pke.is_some() {
                        return Err(MikeyError::Unexpected("SIGN or PKE payload in a PSK offer"));
                    }
                    if kemac_index + 1 != msg.payloads.len() {
                        return Err(MikeyError::Unexpected("KEMAC must be last in a PSK offer"));
                    }
                    let psk = self.psks.get(&initiator).ok_or(MikeyError::Unsupported(
                        "PSK mode (no pre-shared key with this initiator)",
                    ))?;
                    inkey = psk.clone();
                    transport = TransportKeys::derive(&inkey, msg.header.csb_id, rand);
                    mac_ok = transport.verify_mac(&[&offer[..offer.len() - 20]], kemac.mac);
                }
                if !mac_ok {
                    return Err(MikeyError::BadMac("KEMAC"));
                }
                let mut plain = Zeroizing::new(kemac.encr_data.to_vec());
                transport.aes_cm(msg.header.csb_id, t.0, &mut plain);
                let undecodable = |_| MikeyError::Unexpected("KEMAC key data does not decode");
                let items = if mode == Mode::Pke {
                    // §3.2: KEMAC = E(encr_key, IDi || {TGK}) || MAC; the IDi under the envelope
                    // key must be the IDi the message (and its signature) carries.
                    let (inner, items) = decode_pke_key_data(&plain, 0).map_err(undecodable)?;
                    if inner.id_type != idi.id_type || inner.data != idi.data {
                        return Err(MikeyError::Envelope("KEMAC names another initiator"));
                    }
                    items
                } else {
                    decode_key_data(&plain, 0).map_err(undecodable)?
                };
                let [item] = &items[..] else {
                    return Err(MikeyError::Unsupported("KEMAC with other than one key"));
                };
                if item.kind != KeyKind::Tgk
                    || item.salt.is_some()
                    || item.kv != KeyValidity::Null
                    || item.key.is_empty()
                {
                    return Err(MikeyError::Unsupported(
                        "key data other than one TGK without salt or validity",
                    ));
                }
                let keys = derive_all(item.key, &msg.header, rand, &policies)?;
                self.replay.check_and_insert(&exchange, now)?;
                let answer = if msg.header.v {
                    Some(self.verification_answer(&msg, &transport, idi.data, &own_uri, t.0, now)?)
                } else {
                    None
                };
                (keys, answer)
            }
            Mode::DhSign => {
                let sign = p
                    .sign
                    .ok_or(MikeyError::Unexpected("DH offer without SIGN"))?;
                if p.kemac.is_some() || p.pke.is_some() || p.v.is_some() {
                    return Err(MikeyError::Unexpected(
                        "KEMAC, PKE or V payload in a DH offer",
                    ));
                }
                let [dhi] = p.dhs[..] else {
                    return Err(MikeyError::Unexpected(
                        "DH offer needs exactly one DH payload",
                    ));
                };
                verify_sign(&*self.cfg.crypto, offer, sign, &initiator_key, &initiator)?;
                if dhi.group != DhGroup::P256 {
                    return Err(MikeyError::Unsupported("DH group (only P-256)"));
                }
                if dhi.kv != KeyValidity::Null {
                    return Err(MikeyError::Unsupported("DH key validity"));
                }
                let peer = parse_point(dhi.value)?;
                self.replay.check_and_insert(&exchange, now)?;
                let secret = self
                    .cfg
                    .randomness
                    .with(|rng| self.cfg.crypto.generate_ephemeral(rng));
                let dhr_value = encode_point(&secret.public());
                let tgk = dh_tgk(&*secret, &peer)?;
                let keys = derive_all(&tgk, &msg.header, rand, &policies)?;
                let zero_sig = [0u8; SIG_LEN];
                let r = Message {
                    header: Header {
                        data_type: DataType::DhResp,
                        v: false,
                        ..msg.header.clone()
                    },
                    payloads: vec![
                        Payload::T(Timestamp::NtpUtc(now.0)),
                        Payload::Id(Id {
                            id_type: IdType::Uri,
                            data: own_uri.as_bytes(),
                        }),
                        Payload::Id(Id {
                            id_type: idi.id_type,
                            data: idi.data,
                        }),
                        Payload::Dh(Dh {
                            group: DhGroup::P256,
                            value: &dhr_value,
                            kv: KeyValidity::Null,
                        }),
                        Payload::Dh(Dh {
                            group: DhGroup::P256,
                            value: dhi.value,
                            kv: KeyValidity::Null,
                        }),
                        Payload::Sign(Sign {
                            s_type: SignType::EcdsaP256Sha256,
                            signature: &zero_sig,
                        }),
                    ],
                };
                let mut bytes = r.to_vec()?;
                sign_in_place(&mut bytes, &*self.secret);
                (keys, Some(bytes))
            }
        };
        Ok(Accepted {
            mode,
            initiator,
            csb_id: msg.header.csb_id,
            keys,
            answer,
        })
    }

    fn verification_answer(
        &self,
        offer: &Message<'_>,
        transport: &TransportKeys,
        idi: &[u8],
        own_uri: &str,
        t_i: u64,
        now: NtpTime,
    ) -> Result<Vec<u8>, MikeyError> {
        let data_type = if offer.header.data_type == DataType::PkInit {
            DataType::PkResp
        } else {
            DataType::PskResp
        };
        let zero = [0u8; 20];
        let r = Message {
            header: Header {
                data_type,
                v: false,
                ..offer.header.clone()
            },
            payloads: vec![
                Payload::T(Timestamp::NtpUtc(now.0)),
                Payload::Id(Id {
                    id_type: IdType::Uri,
                    data: own_uri.as_bytes(),
                }),
                Payload::V(Verification {
                    auth_alg: MacAlg::HmacSha1_160,
                    ver_data: &zero,
                }),
            ],
        };
        let mut bytes = r.to_vec()?;
        let at = bytes.len() - 20;
        let mac = v_mac(transport, &bytes[..at], idi, own_uri.as_bytes(), t_i);
        bytes[at..].copy_from_slice(&mac);
        Ok(bytes)
    }

    /// An RFC 3830 §5.1.2 error message (HDR, T, ERR, SIGNr) answering `offer` after `err`, signed with
    /// our identity key; `None` if the offer's header is unreadable or the error has no code.
    pub fn error_answer(&self, offer: &[u8], err: &MikeyError, now: NtpTime) -> Option<Vec<u8>> {
        let code = err.error_code()?;
        let header = Message::decode(offer)
            .map(|m| m.header)
            .ok()
            .or_else(|| header_only(offer))?;
        let zero_sig = [0u8; SIG_LEN];
        let r = Message {
            header: Header {
                data_type: DataType::Error,
                v: false,
                ..header
            },
            payloads: vec![
                Payload::T(Timestamp::NtpUtc(now.0)),
                Payload::Err(code),
                Payload::Sign(Sign {
                    s_type: SignType::EcdsaP256Sha256,
                    signature: &zero_sig,
                }),
            ],
        };
        let mut bytes = r.to_vec().ok()?;
        sign_in_place(&mut bytes, &*self.secret);
        Some(bytes)
    }
}

/// Reads just the common header of a message whose payloads are broken (for error answers).
fn header_only(bytes: &[u8]) -> Option<Header> {
    let mut copy = bytes.to_vec();
    if copy.len() < 10 {
        return None;
    }
    copy[2] = 0; // next payload: last
    let ncs = usize::from(copy[8]);
    copy.truncate(10 + ncs * 9);
    Message::decode(&copy).ok().map(|m| m.header)
}
