//! The checks on a decoded message shared by both sides: header, payload count and order,
//! timestamp type, security policies, the peer an ID names.

use chaincall_identity::IdentityName;

use crate::error::MikeyError;
use crate::message::{
    CsIdMap, DataType, Dh, ErrorCode, Id, IdRole, Kemac, Message, Payload, Pke, PrfFunc,
    SecurityPolicy, Sign, Timestamp, Verification,
};
use crate::policy::SrtpPolicy;
use crate::time::NtpTime;
use crate::uri::resolve_identity;

pub(super) fn ntp(t: &Timestamp) -> Result<NtpTime, MikeyError> {
    match t {
        Timestamp::NtpUtc(v) | Timestamp::Ntp(v) => Ok(NtpTime(*v)),
        // A counter needs per-peer state the phone does not keep (§5.4); calls use NTP-UTC.
        Timestamp::Counter(_) => Err(MikeyError::Unsupported("COUNTER timestamps")),
    }
}

/// The parts of a decoded message the modes use, checked for count and order.
pub(super) struct Parts<'a> {
    pub(super) t: Timestamp,
    pub(super) rand: Option<&'a [u8]>,
    pub(super) idi: Option<Id<'a>>,
    pub(super) idr: Option<Id<'a>>,
    pub(super) sps: Vec<&'a SecurityPolicy<'a>>,
    pub(super) kemac: Option<&'a Kemac<'a>>,
    pub(super) pke: Option<&'a Pke<'a>>,
    pub(super) dhs: Vec<&'a Dh<'a>>,
    pub(super) sign: Option<&'a Sign<'a>>,
    pub(super) v: Option<&'a Verification<'a>>,
    pub(super) err: Vec<ErrorCode>,
}

/// Sorts payloads. IDs are ordered: the first ID is the sender's in I_MESSAGEs (IDi) and the
/// responder's in R_MESSAGEs (IDr) per §3; IDR payloads (RFC 6043) say their role explicitly.
pub(super) fn parts<'a>(
    msg: &'a Message<'a>,
    sender_is_initiator: bool,
) -> Result<Parts<'a>, MikeyError> {
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

pub(super) fn check_header(msg: &Message<'_>, expected: DataType) -> Result<(), MikeyError> {
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

/// The identity an ID payload names, which must be `expected`: an exchange is only ever with the
/// peer we meant.
pub(super) fn named(id: &Id<'_>, expected: &IdentityName) -> Result<IdentityName, MikeyError> {
    let found = resolve_identity(id.id_type, id.data)?;
    if found == *expected {
        Ok(found)
    } else {
        Err(MikeyError::WrongPeer {
            expected: expected.clone(),
            found,
        })
    }
}

pub(super) fn policies(sps: &[&SecurityPolicy<'_>]) -> Result<Vec<(u8, SrtpPolicy)>, MikeyError> {
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
