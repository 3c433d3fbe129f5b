//! Header trust: checkpoint chains and k-of-n quorums.

use alloy::consensus::Header;
use alloy::primitives::{B256, b256};
use chaincall_proof::HeaderError;
use chaincall_proof::header::{quorum_hash, verify_checkpoint_chain, verify_header_hash};

fn chain(len: u64) -> Vec<Header> {
    let mut headers: Vec<Header> = Vec::new();
    for number in 100..100 + len {
        let parent_hash = headers.last().map_or(B256::ZERO, Header::hash_slow);
        headers.push(Header {
            number,
            parent_hash,
            state_root: B256::with_last_byte(number as u8),
            timestamp: 1_700_000_000 + number * 12,
            gas_limit: 30_000_000,
            ..Header::default()
        });
    }
    headers
}

#[test]
fn a_linked_chain_from_the_checkpoint_is_trusted() {
    let headers = chain(5);
    let trusted = verify_checkpoint_chain(headers[0].hash_slow(), &headers).unwrap();
    assert_eq!(trusted.number, 104);
    assert_eq!(trusted.state_root, headers[4].state_root);
    assert_eq!(trusted.hash, headers[4].hash_slow());
}

#[test]
fn a_forged_state_root_breaks_the_chain() {
    let mut headers = chain(5);
    let checkpoint = headers[0].hash_slow();
    // The provider swaps in another state root in the middle: the next header no longer links.
    headers[2].state_root =
        b256!("1111111111111111111111111111111111111111111111111111111111111111");
    assert_eq!(
        verify_checkpoint_chain(checkpoint, &headers),
        Err(HeaderError::BrokenChain {
            number: 103,
            previous: 102
        })
    );
    // ... and in the last header, where nothing links after it: then the chain must end at a hash
    // agreed some other way, so forging the tip is caught by verify_header_hash.
    let mut headers = chain(3);
    let genuine_tip = headers[2].hash_slow();
    headers[2].state_root = B256::repeat_byte(0x22);
    assert!(verify_header_hash(&headers[2], genuine_tip).is_err());
}

#[test]
fn wrong_checkpoint_gaps_and_empty_input_are_refused() {
    let headers = chain(4);
    assert!(matches!(
        verify_checkpoint_chain(B256::repeat_byte(1), &headers),
        Err(HeaderError::CheckpointMismatch { .. })
    ));
    let gap = vec![headers[0].clone(), headers[2].clone()];
    assert!(matches!(
        verify_checkpoint_chain(headers[0].hash_slow(), &gap),
        Err(HeaderError::BrokenChain { .. })
    ));
    assert_eq!(
        verify_checkpoint_chain(B256::ZERO, &[]),
        Err(HeaderError::Empty)
    );
}

#[test]
fn quorum_needs_a_strict_majority() {
    let good = B256::repeat_byte(0xaa);
    let evil = B256::repeat_byte(0xee);
    assert_eq!(
        quorum_hash(7, &[Some(good), Some(good), Some(evil)], 2),
        Ok(good)
    );
    assert_eq!(quorum_hash(7, &[Some(good), None, Some(good)], 2), Ok(good));
    assert!(matches!(
        quorum_hash(7, &[Some(good), Some(evil), None], 2),
        Err(HeaderError::NoQuorum { agreeing: 1, .. })
    ));
    // A quorum that is not a strict majority would let two disjoint groups "agree".
    assert!(matches!(
        quorum_hash(7, &[Some(good), Some(good), Some(evil), Some(evil)], 2),
        Err(HeaderError::BadQuorum { .. })
    ));
    assert!(matches!(
        quorum_hash(7, &[Some(good)], 0),
        Err(HeaderError::BadQuorum { .. })
    ));
    assert!(matches!(
        quorum_hash(7, &[Some(good)], 2),
        Err(HeaderError::BadQuorum { .. })
    ));
    assert_eq!(quorum_hash(7, &[Some(good)], 1), Ok(good));
}

#[test]
fn trust_extends_forwards_and_backwards_along_hash_links() {
    use chaincall_proof::header::{TrustedHeader, verify_ancestors, verify_descendants};
    let headers = chain(6);
    let middle = TrustedHeader::from_verified(&headers[3]);
    let newer = verify_descendants(&middle, &headers[4..]).unwrap();
    assert_eq!(newer.len(), 2);
    assert_eq!(newer[1].hash, headers[5].hash_slow());
    let older: Vec<Header> = headers[..3].iter().rev().cloned().collect();
    let ancestors = verify_ancestors(&middle, &older).unwrap();
    assert_eq!(ancestors.last().unwrap().number, 100);
    assert_eq!(ancestors.last().unwrap().state_root, headers[0].state_root);

    // A forged ancestor (another state root) no longer hashes to the child's parent hash.
    let mut forged = older.clone();
    forged[1].state_root = B256::repeat_byte(0x33);
    assert!(matches!(
        verify_ancestors(&middle, &forged),
        Err(HeaderError::HashMismatch { number: 101, .. })
    ));
    // A descendant that skips a block, or does not name the anchor as parent, is refused.
    assert!(matches!(
        verify_descendants(&middle, &headers[5..]),
        Err(HeaderError::BrokenChain {
            number: 105,
            previous: 103
        })
    ));
    let mut stranger = headers[4].clone();
    stranger.parent_hash = B256::repeat_byte(0x44);
    assert!(verify_descendants(&middle, &[stranger]).is_err());
}
