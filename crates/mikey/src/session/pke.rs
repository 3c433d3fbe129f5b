//! The PKE envelope's ECIES context, which binds the envelope key to one exchange.

use crate::error::MikeyError;

use super::PKE_CONTEXT_LABEL;

/// The ECIES context of a PKE envelope: `label || len(IDi) || IDi || len(IDr) || IDr || CSB ID ||
/// len(RAND) || RAND`, with IDi and IDr the ID payloads' data exactly as sent (lengths 2 bytes, as in
/// §6.7; RAND's 1 byte, as in §6.11). The envelope key then opens only for the exchange it was
/// made for: an offer whose IDi, IDr, CSB ID or RAND was changed (and re-signed by whoever changed
/// it) does not open at the responder. This closes the unknown key share of plain PKE, where an
/// approved subscriber could swap in her own IDi and signature and pass the initiator's TGK off as
/// hers (issue 13, item 2); the KEMAC also carries IDi under the envelope key (§3.2).
pub(super) fn pke_context(
    idi: &[u8],
    idr: &[u8],
    csb_id: u32,
    rand: &[u8],
) -> Result<Vec<u8>, MikeyError> {
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
