//! Crypto sessions: the SP, KEMAC and CS ID map payloads of an offer, the SRTP keys of each crypto
//! session (RFC 3830 §4.1.3), and the verification MAC (§5.2).

use chaincall_identity::Secret;

use crate::error::MikeyError;
use crate::message::{
    CsIdMap, EncrAlg, Header, Kemac, MacAlg, Payload, PolicyParam, ProtType, SecurityPolicy,
    SrtpIdEntry,
};
use crate::policy::SrtpPolicy;
use crate::prf::{TransportKeys, derive_srtp};

use super::{SrtpKeys, Stream};

/// The SP payload values for `policy`, kept alive while the message borrows them.
pub(super) fn sp_storage(policy: &SrtpPolicy) -> Vec<(u8, [u8; 1])> {
    policy.to_params()
}

pub(super) fn sp_payload(storage: &[(u8, [u8; 1])]) -> Payload<'_> {
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

/// A KEMAC payload (§6.2, AES-CM-128 with HMAC-SHA-1-160) over `encr_data` with a zero MAC:
/// encoded first, then the MAC is computed over the bytes and written in its place.
pub(super) fn kemac_placeholder(encr_data: &[u8]) -> Payload<'_> {
    Payload::Kemac(Kemac {
        encr_alg: EncrAlg::AesCm128,
        encr_data,
        mac_alg: MacAlg::HmacSha1_160,
        mac: &[0; 20],
    })
}

pub(super) fn srtp_map(streams: &[Stream]) -> CsIdMap {
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

pub(super) fn derive_all(
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

/// The V MAC input of §5.2 for a verification message: the R_MESSAGE up to the MAC, then the
/// initiator's ID, the responder's ID and the initiator's timestamp (`IDi || IDr || T`).
pub(super) fn v_mac(
    keys: &TransportKeys,
    r_message_prefix: &[u8],
    idi: &[u8],
    idr: &[u8],
    t_i: u64,
) -> [u8; 20] {
    keys.mac(&[r_message_prefix, idi, idr, &t_i.to_be_bytes()])
}
