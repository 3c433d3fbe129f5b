//! The called side: checks offers against the directory, the clock window and the replay
//! cache, keys SRTP, and builds the answer or an RFC 3830 error message.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use chaincall_identity::provider::IdentitySecret;
use chaincall_identity::{
    CryptoProvider, IdentityKey, IdentityName, KeyDirectory, PublicIdentityKey, Randomness,
    RustCrypto, ecies,
};
use zeroize::Zeroizing;

use crate::error::MikeyError;
use crate::message::{
    DataType, Dh, DhGroup, EncrAlg, Header, Id, IdType, Kemac, KeyKind, KeyValidity, MacAlg,
    Message, Payload, Sign, Spans, Timestamp, Verification, decode_key_data, decode_pke_key_data,
};
use crate::policy::SrtpPolicy;
use crate::prf::TransportKeys;
use crate::replay::{
    DEFAULT_CAPACITY, DEFAULT_PER_INITIATOR, DEFAULT_WINDOW_SECS, ExchangeId, ReplayCache,
};
use crate::time::NtpTime;
use crate::uri::{identity_uri, resolve_identity};

use super::dh::{dh_tgk, encode_point, parse_point};
use super::keys::{derive_all, v_mac};
use super::parts::{Parts, check_header, named, ntp, parts, policies};
use super::pke::pke_context;
use super::sign::{approved, sign_in_place, sign_placeholder, verify_sign};
use super::{MIN_PSK_LEN, Mode, RAND_LEN, SrtpKeys};

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

impl Screened<'_> {
    /// Checks the offer's SIGN payload, as received in `bytes`, under the initiator's approved key.
    fn verify_sign(
        &self,
        crypto: &dyn CryptoProvider,
        bytes: &[u8],
        sign: &Sign<'_>,
    ) -> Result<(), MikeyError> {
        verify_sign(crypto, bytes, sign, &self.initiator_key, &self.initiator)
    }
}

/// A screened offer on its way through [`Responder::handle_offer`]: what each mode's
/// `accept_*` reads.
struct Offer<'a> {
    /// The offer as received: signatures and MACs cover these bytes.
    bytes: &'a [u8],
    msg: &'a Message<'a>,
    spans: &'a Spans,
    s: Screened<'a>,
    policies: Vec<(u8, SrtpPolicy)>,
    own_uri: String,
    now: NtpTime,
}

impl Offer<'_> {
    /// §5.4: what names this exchange in the replay cache, all of it authenticated by the time
    /// the cache records it.
    fn exchange(&self) -> ExchangeId<'_> {
        ExchangeId {
            mode: self.s.mode,
            initiator: &self.s.initiator,
            csb_id: self.msg.header.csb_id,
            t: self.s.t,
            rand: self.s.rand,
        }
    }

    /// Where the first payload `is` accepts stands in the offer.
    fn index_of(&self, is: impl Fn(&Payload<'_>) -> bool) -> Option<usize> {
        self.msg.payloads.iter().position(is)
    }

    /// The KEMAC of a key-transport (PKE or PSK) offer and its position, after the checks both
    /// modes share: our algorithms, and no DH or V payload.
    fn kemac(&self) -> Result<(&Kemac<'_>, usize), MikeyError> {
        let kemac = self
            .s
            .p
            .kemac
            .ok_or(MikeyError::Unexpected("offer without KEMAC"))?;
        let kemac_index = self
            .index_of(|x| matches!(x, Payload::Kemac(_)))
            .ok_or(MikeyError::Unexpected("offer without KEMAC"))?;
        if kemac.encr_alg != EncrAlg::AesCm128 || kemac.mac_alg != MacAlg::HmacSha1_160 {
            return Err(MikeyError::Unsupported(
                "KEMAC algorithms (only AES-CM-128 with HMAC-SHA-1-160)",
            ));
        }
        if !self.s.p.dhs.is_empty() || self.s.p.v.is_some() {
            return Err(MikeyError::Unexpected(
                "DH or V payload in a key-transport offer",
            ));
        }
        Ok((kemac, kemac_index))
    }
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
        screened.verify_sign(&*self.cfg.crypto, offer, sign)?;
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
        named(&idr, &self.cfg.own_name)?;
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
        let screened = self.screen(&msg, None, directory, now)?;
        let o = Offer {
            bytes: offer,
            msg: &msg,
            spans: &spans,
            policies: policies(&screened.p.sps)?,
            own_uri: identity_uri(&self.cfg.own_name, self.cfg.sip_domain.as_deref()),
            s: screened,
            now,
        };
        let (keys, answer) = match o.s.mode {
            Mode::Pke => self.accept_pke(&o)?,
            Mode::Psk => self.accept_psk(&o)?,
            Mode::DhSign => self.accept_dh(&o)?,
        };
        Ok(Accepted {
            mode: o.s.mode,
            initiator: o.s.initiator,
            csb_id: msg.header.csb_id,
            keys,
            answer,
        })
    }

    /// PKE (§3.2): the signature verifies under the initiator's approved key, the envelope
    /// (sealed to this exchange) opens with our key, and its key MACs the KEMAC payload.
    fn accept_pke(
        &mut self,
        o: &Offer<'_>,
    ) -> Result<(Vec<SrtpKeys>, Option<Vec<u8>>), MikeyError> {
        let (kemac, kemac_index) = o.kemac()?;
        let p = &o.s.p;
        let sign = p
            .sign
            .ok_or(MikeyError::Unexpected("PKE offer without SIGN"))?;
        let pke = p
            .pke
            .ok_or(MikeyError::Unexpected("PKE offer without PKE"))?;
        let pke_index = o.index_of(|x| matches!(x, Payload::Pke(_)));
        if pke_index < Some(kemac_index) {
            return Err(MikeyError::Unexpected(
                "PKE before KEMAC (RFC 3830 §3.2 order)",
            ));
        }
        let csb_id = o.msg.header.csb_id;
        o.s.verify_sign(&*self.cfg.crypto, o.bytes, sign)?;
        let context = pke_context(o.s.idi.data, o.s.idr.data, csb_id, o.s.rand)?;
        let env_key = ecies::open_with(&*self.secret, &self.public, &context, pke.data)
            .map_err(|_| MikeyError::Envelope("not for our key or this exchange, or altered"))?;
        let transport = TransportKeys::derive(&env_key, csb_id, o.s.rand);
        let kemac_range = &o.spans.ranges[kemac_index];
        let mac_ok = transport.verify_mac(
            &[&o.bytes[kemac_range.start..kemac_range.end - 20]],
            kemac.mac,
        );
        self.keyed_by_kemac(o, kemac, &transport, mac_ok)
    }

    /// PSK (§3.1): the KEMAC, last, MACs the whole message under the key we share with the
    /// initiator.
    fn accept_psk(
        &mut self,
        o: &Offer<'_>,
    ) -> Result<(Vec<SrtpKeys>, Option<Vec<u8>>), MikeyError> {
        let (kemac, kemac_index) = o.kemac()?;
        if o.s.p.sign.is_some() || o.s.p.pke.is_some() {
            return Err(MikeyError::Unexpected("SIGN or PKE payload in a PSK offer"));
        }
        if kemac_index + 1 != o.msg.payloads.len() {
            return Err(MikeyError::Unexpected("KEMAC must be last in a PSK offer"));
        }
        let psk = self
            .psks
            .get(&o.s.initiator)
            .ok_or(MikeyError::Unsupported(
                "PSK mode (no pre-shared key with this initiator)",
            ))?;
        let transport = TransportKeys::derive(psk, o.msg.header.csb_id, o.s.rand);
        let mac_ok = transport.verify_mac(&[&o.bytes[..o.bytes.len() - 20]], kemac.mac);
        self.keyed_by_kemac(o, kemac, &transport, mac_ok)
    }

    /// Ends a PKE or PSK offer whose KEMAC MAC was checked (`mac_ok`) under `transport`: opens
    /// the one TGK, derives the SRTP keys, records the exchange, and answers with V if asked.
    fn keyed_by_kemac(
        &mut self,
        o: &Offer<'_>,
        kemac: &Kemac<'_>,
        transport: &TransportKeys,
        mac_ok: bool,
    ) -> Result<(Vec<SrtpKeys>, Option<Vec<u8>>), MikeyError> {
        if !mac_ok {
            return Err(MikeyError::BadMac("KEMAC"));
        }
        let (msg, idi) = (o.msg, &o.s.idi);
        let mut plain = Zeroizing::new(kemac.encr_data.to_vec());
        transport.aes_cm(msg.header.csb_id, o.s.t.0, &mut plain);
        let undecodable = |_| MikeyError::Unexpected("KEMAC key data does not decode");
        let items = if o.s.mode == Mode::Pke {
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
        let keys = derive_all(item.key, &msg.header, o.s.rand, &o.policies)?;
        self.replay.check_and_insert(&o.exchange(), o.now)?;
        let answer = if msg.header.v {
            Some(self.verification_answer(msg, transport, idi.data, &o.own_uri, o.s.t.0, o.now)?)
        } else {
            None
        };
        Ok((keys, answer))
    }

    /// DH-SIGN (§3.3): the signed DHi is a P-256 point; we answer with our own signed DHr, and
    /// the TGK is the shared secret.
    fn accept_dh(&mut self, o: &Offer<'_>) -> Result<(Vec<SrtpKeys>, Option<Vec<u8>>), MikeyError> {
        let (p, msg) = (&o.s.p, o.msg);
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
        o.s.verify_sign(&*self.cfg.crypto, o.bytes, sign)?;
        if dhi.group != DhGroup::P256 {
            return Err(MikeyError::Unsupported("DH group (only P-256)"));
        }
        if dhi.kv != KeyValidity::Null {
            return Err(MikeyError::Unsupported("DH key validity"));
        }
        let peer = parse_point(dhi.value)?;
        self.replay.check_and_insert(&o.exchange(), o.now)?;
        let secret = self
            .cfg
            .randomness
            .with(|rng| self.cfg.crypto.generate_ephemeral(rng));
        let dhr_value = encode_point(&secret.public());
        let tgk = dh_tgk(&*secret, &peer)?;
        let keys = derive_all(&tgk, &msg.header, o.s.rand, &o.policies)?;
        let r = Message {
            header: Header {
                data_type: DataType::DhResp,
                v: false,
                ..msg.header.clone()
            },
            payloads: vec![
                Payload::T(Timestamp::NtpUtc(o.now.0)),
                Payload::Id(Id {
                    id_type: IdType::Uri,
                    data: o.own_uri.as_bytes(),
                }),
                Payload::Id(Id {
                    id_type: o.s.idi.id_type,
                    data: o.s.idi.data,
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
                sign_placeholder(),
            ],
        };
        let mut bytes = r.to_vec()?;
        sign_in_place(&mut bytes, &*self.secret);
        Ok((keys, Some(bytes)))
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
        let r = Message {
            header: Header {
                data_type: DataType::Error,
                v: false,
                ..header
            },
            payloads: vec![
                Payload::T(Timestamp::NtpUtc(now.0)),
                Payload::Err(code),
                sign_placeholder(),
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
