//! The calling side: builds the offer for each mode and checks the answer.

use std::fmt;

use chaincall_identity::provider::EphemeralSecret;
use chaincall_identity::{IdentityKey, KeyDirectory, ecies};
use zeroize::Zeroizing;

use crate::error::MikeyError;
use crate::message::{
    DataType, Dh, DhGroup, ErrorCode, Header, Id, IdType, KeyData, KeyKind, KeyValidity, MacAlg,
    Message, Payload, Pke, PkeCache, PrfFunc, Timestamp, encode_key_data, encode_pke_key_data,
};
use crate::prf::TransportKeys;
use crate::time::NtpTime;
use crate::uri::identity_uri;

use super::dh::{dh_tgk, encode_point, parse_point};
use super::keys::{derive_all, kemac_placeholder, sp_payload, sp_storage, srtp_map, v_mac};
use super::parts::{check_header, named, ntp, parts};
use super::pke::pke_context;
use super::sign::{approved, sign_in_place, sign_placeholder, verify_sign};
use super::{ENV_KEY_LEN, MIN_PSK_LEN, Mode, OfferConfig, RAND_LEN, SrtpKeys, TGK_LEN};

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
    /// An offer, encoded: the opening every mode shares (T, RAND, IDi, IDr, SP; RFC 3830 §3.1 to
    /// §3.3 and our IDr requirement), then the mode's own `rest`, whose MAC or signature the
    /// caller fills in.
    fn encode_offer(&self, idr_uri: &str, rest: Vec<Payload<'_>>) -> Result<Vec<u8>, MikeyError> {
        let sp = sp_storage(&self.cfg.policy);
        let mut payloads = vec![
            Payload::T(Timestamp::NtpUtc(self.t)),
            Payload::Rand(&self.rand),
            Payload::Id(Id {
                id_type: IdType::Uri,
                data: self.idi_uri.as_bytes(),
            }),
            Payload::Id(Id {
                id_type: IdType::Uri,
                data: idr_uri.as_bytes(),
            }),
            sp_payload(&sp),
        ];
        payloads.extend(rest);
        let msg = Message {
            header: self.header.clone(),
            payloads,
        };
        Ok(msg.to_vec()?)
    }

    /// Ends a PKE or PSK offer: the SRTP keys follow from our TGK, and with the V flag the
    /// responder's verification message is awaited under `transport`.
    fn keyed_by_tgk(mut self, tgk: &[u8], transport: TransportKeys) -> Result<Self, MikeyError> {
        self.keys = Some(derive_all(
            tgk,
            &self.header,
            &self.rand,
            &[(0, self.cfg.policy)],
        )?);
        self.pending = if self.header.v {
            Pending::Verify(transport)
        } else {
            Pending::Done
        };
        Ok(self)
    }

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
        let mut bytes = this.encode_offer(
            &idr_uri,
            vec![
                kemac_placeholder(&encr_data),
                Payload::Pke(Pke {
                    cache: PkeCache::NoCache,
                    data: &envelope,
                }),
                sign_placeholder(),
            ],
        )?;
        // §3.2: in PKE the KEMAC MAC covers the KEMAC payload (up to the MAC), whose encrypted
        // part starts with IDi; the signature covers the whole message, MAC included.
        let (_, spans) = Message::decode_with_spans(&bytes)?;
        let kemac = spans.ranges[5].clone();
        let mac_at = kemac.end - 20;
        let mac = transport.mac(&[&bytes[kemac.start..mac_at]]);
        bytes[mac_at..kemac.end].copy_from_slice(&mac);
        sign_in_place(&mut bytes, &*this.cfg.crypto.load_identity(own_key));
        this.offer = bytes;
        this.keyed_by_tgk(&tgk[..], transport)
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
        let mut bytes = this.encode_offer(
            &idr_uri,
            vec![
                Payload::Dh(Dh {
                    group: DhGroup::P256,
                    value: &value,
                    kv: KeyValidity::Null,
                }),
                sign_placeholder(),
            ],
        )?;
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
        let mut bytes = this.encode_offer(&idr_uri, vec![kemac_placeholder(&encr_data)])?;
        let mac_at = bytes.len() - 20;
        let mac = transport.mac(&[&bytes[..mac_at]]);
        bytes[mac_at..].copy_from_slice(&mac);
        this.offer = bytes;
        this.keyed_by_tgk(&tgk[..], transport)
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
        let responder = named(idr, &self.cfg.responder)?;
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
