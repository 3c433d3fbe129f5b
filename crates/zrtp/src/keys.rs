//! The DH-mode key schedule (RFC 6189 §4.4.1.4, §4.5): s0, then every key derived from it.

use zeroize::Zeroizing;

use crate::crypto::{kdf, sha256};
use crate::wire::Zid;

/// Everything derived from one exchange. All secret fields zeroize on drop.
// `kdf_context` and `s0` are kept for the independent KDF test, which checks each step.
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) struct KeySchedule {
    /// ZIDi || ZIDr || total_hash.
    pub kdf_context: Vec<u8>,
    pub s0: Zeroizing<[u8; 32]>,
    pub mackeyi: Zeroizing<[u8; 32]>,
    pub mackeyr: Zeroizing<[u8; 32]>,
    pub zrtpkeyi: Zeroizing<[u8; 16]>,
    pub zrtpkeyr: Zeroizing<[u8; 16]>,
    pub srtpkeyi: Zeroizing<[u8; 16]>,
    pub srtpkeyr: Zeroizing<[u8; 16]>,
    pub srtpsalti: Zeroizing<[u8; 14]>,
    pub srtpsaltr: Zeroizing<[u8; 14]>,
    pub sashash: [u8; 32],
    pub new_rs1: Zeroizing<[u8; 32]>,
}

/// Appends len(s) as 32-bit big-endian, then s; a missing secret is a zero length (§4.4.1.4).
fn push_secret(buf: &mut Vec<u8>, s: Option<&[u8]>) {
    let s = s.unwrap_or(&[]);
    // Secrets are at most a few hundred octets.
    buf.extend_from_slice(&(s.len() as u32).to_be_bytes());
    buf.extend_from_slice(s);
}

fn derive<const N: usize>(s0: &[u8; 32], label: &str, ctx: &[u8]) -> Zeroizing<[u8; N]> {
    let mut out = Zeroizing::new([0u8; N]);
    kdf(s0, label.as_bytes(), ctx, &mut out[..]);
    out
}

impl KeySchedule {
    /// total_hash = hash(responder's Hello || Commit || DHPart1 || DHPart2), then
    /// s0 = hash(counter || DHResult || "ZRTP-HMAC-KDF" || ZIDi || ZIDr || total_hash ||
    /// len(s1) || s1 || len(s2) || s2 || len(s3) || s3), then the §4.5.2/§4.5.3 keys.
    #[allow(clippy::too_many_arguments)] // one argument per term of the RFC's formula
    pub(crate) fn derive(
        dh_result: &[u8],
        zidi: &Zid,
        zidr: &Zid,
        transcript: [&[u8]; 4],
        s1: Option<&[u8]>,
        s2: Option<&[u8]>,
        s3: Option<&[u8]>,
    ) -> Self {
        let total_hash = sha256(&transcript);
        let mut kdf_context = Vec::with_capacity(56);
        kdf_context.extend_from_slice(&zidi.0);
        kdf_context.extend_from_slice(&zidr.0);
        kdf_context.extend_from_slice(&total_hash);

        let mut input = Zeroizing::new(Vec::with_capacity(200));
        input.extend_from_slice(&1u32.to_be_bytes());
        input.extend_from_slice(dh_result);
        input.extend_from_slice(b"ZRTP-HMAC-KDF");
        input.extend_from_slice(&kdf_context);
        push_secret(&mut input, s1);
        push_secret(&mut input, s2);
        push_secret(&mut input, s3);
        let s0 = Zeroizing::new(sha256(&[&input]));

        let c = &kdf_context;
        let sashash = *derive::<32>(&s0, "SAS", c);
        Self {
            mackeyi: derive(&s0, "Initiator HMAC key", c),
            mackeyr: derive(&s0, "Responder HMAC key", c),
            zrtpkeyi: derive(&s0, "Initiator ZRTP key", c),
            zrtpkeyr: derive(&s0, "Responder ZRTP key", c),
            srtpkeyi: derive(&s0, "Initiator SRTP master key", c),
            srtpkeyr: derive(&s0, "Responder SRTP master key", c),
            srtpsalti: derive(&s0, "Initiator SRTP master salt", c),
            srtpsaltr: derive(&s0, "Responder SRTP master salt", c),
            new_rs1: derive(&s0, "retained secret", c),
            sashash,
            s0,
            kdf_context,
        }
    }

    /// The leftmost 32 bits of sashash (§4.5.2), which the SAS renders.
    pub(crate) fn sas_value(&self) -> u32 {
        u32::from_be_bytes([
            self.sashash[0],
            self.sashash[1],
            self.sashash[2],
            self.sashash[3],
        ])
    }
}
