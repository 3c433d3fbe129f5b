//! The keystore contract's storage layout: the one place that knows which slots hold an entry.
//!
//! Verified lookups (reading slots with `eth_getProof` and checking them against a state root) and
//! tests that compare raw storage with `getClient` both go through here. It mirrors the layout comment
//! in `contracts/Keystore.sol`:
//!
//! | slot | content |
//! | --- | --- |
//! | 0 | `mapping(bytes32 => Entry) _entries` (the mapping's own slot stays empty) |
//! | 1 | `owner` (address, low-order 20 bytes) |
//! | 2 | `pendingOwner` |
//! | `base = keccak256(id ‖ uint256(0))` | wallet (bytes 0..20 from the low-order end), status (byte 20), key type (21), key length (22), 8-byte commitment (23..31), key\[0\] (byte 31, highest order) |
//! | `base + 1` | key\[1..33\], left aligned |
//!
//! (Byte positions count from the low-order end of the 32-byte word, the way Solidity packs.)
//!
//! Status bytes: 0 unknown, 1 pending, 2 approved, 3 revoked, 4 reserved. A reservation
//! (`reserveClient`) is an entry with status 4, the reserved wallet in the wallet field and every key
//! field zero; it needs no slot of its own. It holds no key, so it decodes as an unknown entry, with
//! the wallet in [`StoredEntry::reserved_for`].

use alloy::primitives::{Address, B256, FixedBytes, U256, keccak256};

use crate::types::{ClientEntry, ClientId};
use chaincall_identity::KeyStatus;

/// Slot of the `_entries` mapping.
pub const ENTRIES_SLOT: U256 = U256::ZERO;
/// Slot of `owner`.
pub const OWNER_SLOT: U256 = U256::from_limbs([1, 0, 0, 0]);
/// Slot of `pendingOwner`.
pub const PENDING_OWNER_SLOT: U256 = U256::from_limbs([2, 0, 0, 0]);
/// Status byte of a reservation (`Status.Reserved`).
pub const STATUS_RESERVED: u8 = 4;
/// Number of storage slots an entry occupies.
pub const ENTRY_SLOTS: usize = 2;
/// The longest key the layout can hold: one byte in the first slot, 32 in the second.
pub const MAX_KEY_LEN: usize = 33;

/// The storage slots holding the entry for `id`, in order.
pub fn entry_slots(id: &ClientId) -> [U256; ENTRY_SLOTS] {
    // Solidity mapping rule: keccak256(key ‖ slot), both as 32-byte words.
    let mut preimage = [0u8; 64];
    preimage[..32].copy_from_slice(id.as_b256().as_slice());
    preimage[32..].copy_from_slice(&ENTRIES_SLOT.to_be_bytes::<32>());
    let base = U256::from_be_bytes(keccak256(preimage).0);
    [base, base.wrapping_add(U256::from(1))]
}

/// Why two storage words do not decode to an entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LayoutError {
    /// The status byte is not one the contract writes.
    #[error("storage holds status byte {0}, which the contract never writes")]
    BadStatus(u8),
    /// The key length byte exceeds what the layout holds.
    #[error("storage holds key length {0}, longer than the layout's {MAX_KEY_LEN}")]
    BadKeyLength(u8),
}

/// An entry as storage holds it: what `getClient` returns plus the receipt commitment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEntry {
    /// The entry, as `getClient` would return it.
    pub entry: ClientEntry,
    /// The receipt commitment (zero when unknown).
    pub commitment: FixedBytes<8>,
    /// The wallet the id is reserved for (status reserved; the entry then reads as unknown).
    pub reserved_for: Option<Address>,
}

/// Decodes an entry from the values of its [`entry_slots`] (zero for never-written slots).
pub fn decode_entry(id: ClientId, words: [U256; ENTRY_SLOTS]) -> Result<StoredEntry, LayoutError> {
    let w0 = words[0].to_be_bytes::<32>();
    let w1 = words[1].to_be_bytes::<32>();
    // Big-endian word: byte 31 from the low end is index 0 here, so low-order byte k is index 31 - k.
    let wallet = Address::from_slice(&w0[12..32]);
    let commitment = FixedBytes::<8>::from_slice(&w0[1..9]);
    let status = match w0[11] {
        0 => KeyStatus::Unknown,
        1 => KeyStatus::Pending,
        2 => KeyStatus::Approved,
        3 => KeyStatus::Revoked,
        STATUS_RESERVED => {
            return Ok(StoredEntry {
                entry: ClientEntry::unknown(id),
                commitment,
                reserved_for: Some(wallet),
            });
        }
        other => return Err(LayoutError::BadStatus(other)),
    };
    let key_type = w0[10];
    let key_len = w0[9];
    if usize::from(key_len) > MAX_KEY_LEN {
        return Err(LayoutError::BadKeyLength(key_len));
    }
    if status == KeyStatus::Unknown {
        return Ok(StoredEntry {
            entry: ClientEntry::unknown(id),
            commitment,
            reserved_for: None,
        });
    }
    let mut key = Vec::with_capacity(MAX_KEY_LEN);
    key.push(w0[0]);
    key.extend_from_slice(&w1);
    key.truncate(usize::from(key_len));
    Ok(StoredEntry {
        entry: ClientEntry {
            id,
            status,
            wallet: Some(wallet),
            key_type,
            key: key.into(),
        },
        commitment,
        reserved_for: None,
    })
}

/// The owner address from the value of [`OWNER_SLOT`].
pub fn decode_address(word: U256) -> Address {
    Address::from_word(B256::from(word.to_be_bytes::<32>()))
}
