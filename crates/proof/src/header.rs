//! Which block header — hence which state root — a verified lookup trusts.
//!
//! A storage proof only moves trust from the RPC provider to the block header it is checked against.
//! Two modes are offered here, both pure functions; a shell fetches the data and calls them.
//!
//! **Checkpoint** ([`verify_checkpoint_chain`]): the operator pins one block hash (in the phone's
//! config, shipped with the app). Headers from that block up to the lookup's block are fetched and
//! checked to hash-link: each names its predecessor's hash. The links are only as strong as the
//! trusted end they hang from. *Backwards* from a trusted hash ([`verify_ancestors`]) they protect
//! against a provider inventing state or headers: it would need a keccak-256 second preimage.
//! *Forwards* from the checkpoint they prove only that a header claims to descend from it: without
//! proof of work or checked consensus signatures, anyone can write a new header naming the right
//! parent, so the newest header — the one nothing links to yet — can be forged with any state root.
//! What forward links do give is consistency: once a phone has verified and cached a header, every
//! later one must descend from it, so a provider is held to one history and a forgery shows as soon
//! as the phone sees an honest descendant. *Does not protect against* a forged newest header, a
//! provider that withholds newer blocks (it can serve an old but genuine state, e.g. from before a
//! revocation), nor a chain that forked after the checkpoint — the header chain proves ancestry, not
//! consensus. Cost grows with the distance from the checkpoint: move it forward.
//!
//! **Quorum** ([`quorum_hash`]): k of n independently operated RPC endpoints must report the same
//! hash for the chosen block number, with k a strict majority; the header fetched from any of them must
//! hash to that value ([`verify_header_hash`]). *Protects against* a minority of lying or compromised
//! providers. *Does not protect against* k colluding providers, or a majority that all follow the
//! same wrong fork; it also trusts that the endpoints are in fact independent.
//!
//! Trust extends along the hash links in both directions from any trusted header:
//! [`verify_descendants`] forwards (what a phone does at every lookup: only the headers since the
//! last verified one are fetched) and [`verify_ancestors`] backwards.
//!
//! **Consensus light client** (future): a Helios-style client verifying the beacon chain's
//! sync-committee signatures yields a trusted execution header by consensus rules, not by
//! agreement. It plugs in by producing the same [`TrustedHeader`] that the two modes above produce;
//! nothing downstream changes.

use alloy::consensus::Header;
use alloy::primitives::B256;

use crate::HeaderError;

/// A header a lookup may check proofs against, and how it came to be trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrustedHeader {
    /// Block number.
    pub number: u64,
    /// Block hash (keccak-256 of the RLP header).
    pub hash: B256,
    /// The state root proofs are checked against.
    pub state_root: B256,
    /// The parent's hash: trusting this header means trusting its parent's hash too, so headers can
    /// be verified backwards from it ([`verify_ancestors`]).
    pub parent_hash: B256,
}

impl TrustedHeader {
    /// Takes a header's number, hash and state root. Only call on a header that has been verified.
    pub fn from_verified(header: &Header) -> Self {
        Self {
            number: header.number,
            hash: header.hash_slow(),
            state_root: header.state_root,
            parent_hash: header.parent_hash,
        }
    }
}

/// Checks that `headers` start at the pinned `checkpoint` hash and hash-link to the end, and returns
/// the last one as trusted.
///
/// `headers[0]` must hash to `checkpoint`; each next header must have the previous one's hash as
/// `parent_hash` and the next number.
pub fn verify_checkpoint_chain(
    checkpoint: B256,
    headers: &[Header],
) -> Result<TrustedHeader, HeaderError> {
    let first = headers.first().ok_or(HeaderError::Empty)?;
    let mut previous_hash = first.hash_slow();
    if previous_hash != checkpoint {
        return Err(HeaderError::CheckpointMismatch {
            number: first.number,
            got: previous_hash,
            expected: checkpoint,
        });
    }
    let mut previous = first;
    for header in &headers[1..] {
        if header.parent_hash != previous_hash
            || Some(header.number) != previous.number.checked_add(1)
        {
            return Err(HeaderError::BrokenChain {
                number: header.number,
                previous: previous.number,
            });
        }
        previous_hash = header.hash_slow();
        previous = header;
    }
    Ok(TrustedHeader {
        number: previous.number,
        hash: previous_hash,
        state_root: previous.state_root,
        parent_hash: previous.parent_hash,
    })
}

/// Extends trust forwards: `headers` must be `anchor.number + 1, anchor.number + 2, …`, the first
/// naming `anchor.hash` as its parent and each next one naming its predecessor. Returns them all as
/// trusted, in order.
///
/// This is how a checkpoint's trust reaches newer blocks without re-checking the whole chain: the
/// anchor is the newest header already verified.
pub fn verify_descendants(
    anchor: &TrustedHeader,
    headers: &[Header],
) -> Result<Vec<TrustedHeader>, HeaderError> {
    link(anchor, headers, |previous, header| {
        if header.parent_hash != previous.hash
            || Some(header.number) != previous.number.checked_add(1)
        {
            return Err(HeaderError::BrokenChain {
                number: header.number,
                previous: previous.number,
            });
        }
        Ok(TrustedHeader::from_verified(header))
    })
}

/// Extends trust backwards: `headers` must be `anchor.number - 1, anchor.number - 2, …`, the first
/// hashing to `anchor.parent_hash` and each next one to its predecessor's parent hash. Returns them
/// as trusted, in the order given (newest first).
///
/// A trusted header commits to its parent's hash, so ancestry is as strong as descent: a provider
/// would need a keccak-256 second preimage to slip in another ancestor.
pub fn verify_ancestors(
    anchor: &TrustedHeader,
    headers: &[Header],
) -> Result<Vec<TrustedHeader>, HeaderError> {
    link(anchor, headers, |child, header| {
        if Some(header.number) != child.number.checked_sub(1) {
            return Err(HeaderError::BrokenChain {
                number: header.number,
                previous: child.number,
            });
        }
        verify_header_hash(header, child.parent_hash)
    })
}

/// Trusts `headers` one after the other, starting from `anchor`: `next` checks each header against
/// the last one trusted and returns it trusted.
fn link(
    anchor: &TrustedHeader,
    headers: &[Header],
    next: impl Fn(&TrustedHeader, &Header) -> Result<TrustedHeader, HeaderError>,
) -> Result<Vec<TrustedHeader>, HeaderError> {
    let mut last = *anchor;
    headers
        .iter()
        .map(|header| {
            last = next(&last, header)?;
            Ok(last)
        })
        .collect()
}

/// Checks that a header's contents hash to `expected` (the hash the quorum agreed on), so its state
/// root can be trusted as much as that hash.
pub fn verify_header_hash(header: &Header, expected: B256) -> Result<TrustedHeader, HeaderError> {
    let got = header.hash_slow();
    if got != expected {
        return Err(HeaderError::HashMismatch {
            number: header.number,
            got,
            expected,
        });
    }
    Ok(TrustedHeader {
        number: header.number,
        hash: got,
        state_root: header.state_root,
        parent_hash: header.parent_hash,
    })
}

/// Returns the block hash that at least `required` of the endpoints' `answers` agree on.
///
/// `answers` holds one entry per configured endpoint: `None` for an endpoint that failed to answer.
/// `required` must be a strict majority of the endpoints (so two disjoint quorums cannot exist) and at
/// most all of them.
pub fn quorum_hash(
    number: u64,
    answers: &[Option<B256>],
    required: usize,
) -> Result<B256, HeaderError> {
    let asked = answers.len();
    if required == 0 || required > asked || required * 2 <= asked {
        return Err(HeaderError::BadQuorum { required, asked });
    }
    let mut best: Option<(B256, usize)> = None;
    for hash in answers.iter().flatten() {
        let count = answers.iter().flatten().filter(|h| *h == hash).count();
        if best.is_none_or(|(_, c)| count > c) {
            best = Some((*hash, count));
        }
    }
    match best {
        Some((hash, count)) if count >= required => Ok(hash),
        other => Err(HeaderError::NoQuorum {
            number,
            agreeing: other.map_or(0, |(_, c)| c),
            asked,
            required,
        }),
    }
}
