// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.37;

/// @title chaincall keystore: public identity keys of subscribers and servers, without a PKI
/// @notice Every identity (a phone number or a server's domain name) maps to one entry: the wallet that
/// submitted it, a status, and a typed public key. Entries enter as Pending through `addClient`, become
/// Approved only through the owner's `approveClient`, can be rotated and revoked by the wallet they are
/// bound to, and can be revoked by the owner. Every change emits an event, so an identity's whole key
/// history can be audited from the logs alone.
///
/// @dev Identities. `id = keccak256(canonicalName)` where the canonical name is `tel:+<E.164 digits>` for
/// phone numbers (`tel:+15551234567`) and `dns:<lower-case domain>` for servers (`dns:sip.example.org`).
/// The prefixes are distinct, so a number and a name can never hash to the same preimage. Names are
/// validated and normalised off chain (crate chaincall-identity); the chain only sees the hash.
///
/// Keys. A key is a type tag plus bytes. Tag 1 is P-256, SEC1 compressed (33 bytes, first byte 0x02 or
/// 0x03): what phones' hardware keystores hold. Other tags are refused until a version of this contract
/// defines them; the storage layout already has room for any key of up to 33 bytes.
///
/// Receipts, and why a copy of a pending entry is worthless. The wallet server sells credit and hands the
/// phone a receipt privately (encrypted, off chain). The phone submits
/// `addClient(id, keyType, key, commitment)` with
/// `commitment = bytes8(keccak256(abi.encode(id, wallet, keccak256(receipt))))`, computed with its own
/// wallet address. The owner (the wallet server) then calls `approveClient(id, keccak256(receipt))`, and
/// the contract recomputes the commitment from the id, the *stored submitting wallet* and the receipt
/// hash. Approval therefore binds {id, key, receipt, submitting wallet} together:
///  - Someone who copies a pending `addClient` from the mempool and submits it from another wallet gets an
///    entry whose stored wallet differs from the one inside the commitment; the owner's approval of that
///    entry reverts with `ReceiptMismatch`, and the copier cannot compute a commitment for their own
///    wallet because they never saw the receipt (only a truncated hash that includes the phone's wallet).
///  - A pending entry can only be replaced by the wallet that submitted it, so an observer who learns the
///    receipt hash from the owner's approval transaction cannot swap in their own entry before it lands.
///  - A copier who front-runs a phone's `addClient` can at worst block the number until the owner acts
///    (its pending entry never becomes approvable); it can never obtain the number. Revoking the bogus
///    entry alone would let the squatter submit again at once, so the owner *reserves* the id for the
///    wallet whose claim it has verified (`reserveClient`): that replaces any pending entry, and until
///    the reserved wallet submits, no other wallet may `addClient` the id.
/// The receipt itself never appears on chain (only `keccak256(receipt)` at approval): the receipt token
/// also seeds the subscriber's SIP credentials. The commitment is truncated to 64 bits to keep an entry
/// in two storage slots; it only has to resist online guessing by someone who lacks the receipt (each
/// guess needs an owner approval), not offline search, so 64 bits is ample.
///
/// Storage layout (the Rust crate chaincall-chain reads these slots directly for proofs; keep in sync
/// with its `layout` module): `_entries` is at slot 0, so an entry lives at
/// `base = keccak256(abi.encode(id, uint256(0)))`:
///  - `base`     : wallet (bytes 0..20, low order) | status (20) | keyType (21) | keyLen (22) |
///                 commitment (23..31) | key[0] (31, high-order byte)
///  - `base + 1` : key[1..33], left aligned
/// A reservation is an entry with status Reserved (4) whose wallet is the reserved wallet and whose key
/// fields are zero: it costs no extra slot, and `addClient` reads it with the status it reads anyway.
/// Two fresh slots per registration: the fewest that can hold a 20-byte wallet plus a 33-byte key.
/// `owner` is slot 1, `pendingOwner` slot 2.
contract Keystore {
    /// @notice Lifecycle of an entry. Unknown entries have never been submitted. Reserved entries hold
    /// no key: only the reserved wallet may submit one (`getClient` reports them as Unknown).
    enum Status {
        Unknown,
        Pending,
        Approved,
        Revoked,
        Reserved
    }

    /// @dev Packed into two slots; see the storage layout in the contract's doc comment.
    struct Entry {
        address wallet;
        Status status;
        uint8 keyType;
        uint8 keyLen;
        bytes8 commitment;
        bytes1 keyHead;
        bytes32 keyTail;
    }

    /// @notice Key type tag of P-256 SEC1 compressed public keys (33 bytes).
    uint8 public constant KEY_TYPE_P256 = 1;

    /// @dev Domain separation of the proof of possession: the message the wallet server checks too.
    bytes private constant POSSESSION_CONTEXT = "chaincall wallet v1 proof of possession\x00";

    /// @dev The P-256 signature verification precompile (EIP-7951, Osaka; RIP-7212 on L2s).
    address private constant P256_VERIFY = address(0x100);

    mapping(bytes32 id => Entry) private _entries;

    /// @notice The account allowed to approve entries and revoke any entry.
    address public owner;

    /// @notice The account that may accept ownership (step two of a transfer); zero when none.
    address public pendingOwner;

    /// @notice An entry was submitted (or re-submitted by its own wallet) and awaits approval.
    event ClientAdded(bytes32 indexed id, address indexed wallet, uint8 keyType, bytes key, bytes8 commitment);
    /// @notice The owner approved the pending entry of `wallet` for `receiptHash`.
    event ClientApproved(bytes32 indexed id, address indexed wallet, bytes32 receiptHash);
    /// @notice The bound wallet replaced the key of its approved entry.
    event KeyRotated(bytes32 indexed id, address indexed wallet, uint8 keyType, bytes key);
    /// @notice The entry of `wallet` was revoked by `by` (the wallet itself or the owner).
    event ClientRevoked(bytes32 indexed id, address indexed wallet, address indexed by);
    /// @notice The owner reserved the id: only `wallet` may submit an entry for it.
    event ClientReserved(bytes32 indexed id, address indexed wallet);
    /// @notice Step one of an ownership transfer.
    event OwnershipTransferStarted(address indexed previousOwner, address indexed newOwner);
    /// @notice Ownership changed (also emitted at deployment, from the zero address).
    event OwnershipTransferred(address indexed previousOwner, address indexed newOwner);

    /// @notice The caller is not the owner.
    error NotOwner(address caller);
    /// @notice The caller is not the pending owner.
    error NotPendingOwner(address caller);
    /// @notice The caller is neither the entry's bound wallet (nor, where allowed, the owner).
    error NotEntryWallet(bytes32 id, address caller);
    /// @notice No entry exists for the id.
    error UnknownId(bytes32 id);
    /// @notice The entry is not in the status the call needs.
    error WrongStatus(bytes32 id, Status status);
    /// @notice Another wallet (or the caller itself, then use `rotateKey`) holds the approved entry.
    error AlreadyTaken(bytes32 id, address wallet);
    /// @notice Another wallet's entry for the id awaits approval.
    error AlreadyPending(bytes32 id, address wallet);
    /// @notice The key type is unsupported or the key bytes do not fit it.
    error MalformedKey(uint8 keyType, uint256 length);
    /// @notice The receipt does not match the pending entry's commitment (wrong receipt or wallet).
    error ReceiptMismatch(bytes32 id);
    /// @notice The id is reserved for another wallet.
    error Reserved(bytes32 id, address wallet);
    /// @notice A reservation must name a wallet.
    error ZeroWallet();
    /// @notice The proof of possession does not verify (or the chain lacks the P-256 precompile).
    error BadProof(bytes32 id);

    modifier onlyOwner() {
        if (msg.sender != owner) revert NotOwner(msg.sender);
        _;
    }

    constructor() {
        owner = msg.sender;
        emit OwnershipTransferred(address(0), msg.sender);
    }

    /// @notice The commitment a phone puts in `addClient`: binds id, submitting wallet and receipt.
    function receiptCommitment(bytes32 id, address wallet, bytes32 receiptHash) public pure returns (bytes8) {
        return bytes8(keccak256(abi.encode(id, wallet, receiptHash)));
    }

    /// @notice Submit (or, from the same wallet, re-submit) an entry; it stays Pending until approved.
    /// @dev Allowed when the id is Unknown or Revoked, or Pending or Reserved under the caller's own
    /// wallet.
    function addClient(bytes32 id, uint8 keyType, bytes calldata key, bytes8 commitment) external {
        _addClient(id, keyType, key, commitment);
    }

    /// @notice `addClient` plus an on-chain proof that the caller holds the key: an ECDSA P-256
    /// signature (`r`, `s`) by the key over
    /// `sha256("chaincall wallet v1 proof of possession\0" ‖ id ‖ msg.sender ‖ commitment)` — the
    /// message the wallet server checks off chain — verified with the P-256 precompile at 0x100.
    /// `keyY` is the key's y coordinate (the key is stored compressed, and the precompile takes
    /// both coordinates); its parity must match the key's prefix byte, and the precompile refuses
    /// a point that is not on the curve. On a chain without the precompile every call reverts with
    /// `BadProof`.
    function addClientWithProof(
        bytes32 id,
        uint8 keyType,
        bytes calldata key,
        bytes8 commitment,
        bytes32 keyY,
        bytes32 r,
        bytes32 s
    ) external {
        _checkKey(keyType, key);
        if (uint256(keyY) & 1 != uint8(key[0]) - 2) revert BadProof(id);
        bytes32 digest = sha256(abi.encodePacked(POSSESSION_CONTEXT, id, msg.sender, commitment));
        (bool ok, bytes memory out) =
            P256_VERIFY.staticcall(abi.encodePacked(digest, r, s, bytes32(key[1:]), keyY));
        if (!ok || out.length != 32 || uint256(bytes32(out)) != 1) revert BadProof(id);
        _addClient(id, keyType, key, commitment);
    }

    function _addClient(bytes32 id, uint8 keyType, bytes calldata key, bytes8 commitment) private {
        Entry storage e = _entries[id];
        Status status = e.status;
        address holder = e.wallet;
        if (status == Status.Approved) revert AlreadyTaken(id, holder);
        if (status == Status.Pending && holder != msg.sender) revert AlreadyPending(id, holder);
        if (status == Status.Reserved && holder != msg.sender) revert Reserved(id, holder);
        _checkKey(keyType, key);
        _entries[id] = Entry({
            wallet: msg.sender,
            status: Status.Pending,
            keyType: keyType,
            keyLen: uint8(key.length),
            commitment: commitment,
            keyHead: key[0],
            keyTail: bytes32(key[1:])
        });
        emit ClientAdded(id, msg.sender, keyType, key, commitment);
    }

    /// @notice Owner only: approve the pending entry if `receiptHash` matches its commitment.
    /// @param receiptHash `keccak256(receipt)`; the receipt itself never goes on chain.
    function approveClient(bytes32 id, bytes32 receiptHash) external onlyOwner {
        Entry storage e = _entries[id];
        Status status = e.status;
        if (status == Status.Unknown) revert UnknownId(id);
        if (status != Status.Pending) revert WrongStatus(id, status);
        address wallet = e.wallet;
        if (receiptCommitment(id, wallet, receiptHash) != e.commitment) revert ReceiptMismatch(id);
        e.status = Status.Approved;
        emit ClientApproved(id, wallet, receiptHash);
    }

    /// @notice The entry for `id`: status, bound wallet, key type and key bytes (empty when Unknown).
    /// @dev Pending and Revoked entries return their key too; only an Approved key may be trusted.
    function getClient(bytes32 id)
        external
        view
        returns (Status status, address wallet, uint8 keyType, bytes memory key)
    {
        Entry storage e = _entries[id];
        status = e.status;
        if (status == Status.Unknown || status == Status.Reserved) return (Status.Unknown, address(0), 0, key);
        wallet = e.wallet;
        keyType = e.keyType;
        uint256 len = e.keyLen;
        key = abi.encodePacked(e.keyHead, e.keyTail);
        // Trim the 33-byte buffer to the stored length (never longer, see _checkKey).
        assembly {
            mstore(key, len)
        }
    }

    /// @notice The bound wallet replaces the key of its approved entry.
    function rotateKey(bytes32 id, uint8 keyType, bytes calldata key) external {
        Entry storage e = _entries[id];
        Status status = e.status;
        if (status == Status.Unknown) revert UnknownId(id);
        if (e.wallet != msg.sender) revert NotEntryWallet(id, msg.sender);
        if (status != Status.Approved) revert WrongStatus(id, status);
        _checkKey(keyType, key);
        e.keyType = keyType;
        e.keyLen = uint8(key.length);
        e.keyHead = key[0];
        e.keyTail = bytes32(key[1:]);
        emit KeyRotated(id, msg.sender, keyType, key);
    }

    /// @notice The bound wallet or the owner revokes a pending or approved entry, or a reservation.
    /// @dev A revoked id may be submitted again (by any wallet) and needs a fresh approval.
    function revokeClient(bytes32 id) external {
        Entry storage e = _entries[id];
        Status status = e.status;
        if (status == Status.Unknown) revert UnknownId(id);
        address wallet = e.wallet;
        if (msg.sender != wallet && msg.sender != owner) revert NotEntryWallet(id, msg.sender);
        if (status == Status.Revoked) revert WrongStatus(id, status);
        e.status = Status.Revoked;
        emit ClientRevoked(id, wallet, msg.sender);
    }

    /// @notice Owner only: reserve `id` for `wallet` (whose claim to the identity the owner has
    /// verified off chain), replacing any pending entry, which is revoked. Until `wallet` submits its
    /// entry, `addClient` from any other wallet reverts with `Reserved`; `wallet`'s own submission
    /// replaces the reservation and needs approval as usual. The owner may release a reservation with
    /// `revokeClient` or move it with another `reserveClient`.
    /// @dev Refused for an approved id: revoke it first (a deliberate, separately visible step).
    function reserveClient(bytes32 id, address wallet) external onlyOwner {
        if (wallet == address(0)) revert ZeroWallet();
        Entry storage e = _entries[id];
        Status status = e.status;
        address holder = e.wallet;
        if (status == Status.Approved) revert AlreadyTaken(id, holder);
        if (status == Status.Pending) emit ClientRevoked(id, holder, msg.sender);
        _entries[id] = Entry({
            wallet: wallet,
            status: Status.Reserved,
            keyType: 0,
            keyLen: 0,
            commitment: bytes8(0),
            keyHead: bytes1(0),
            keyTail: bytes32(0)
        });
        emit ClientReserved(id, wallet);
    }

    /// @notice The wallet `id` is reserved for, or zero when it is not reserved.
    function reservedFor(bytes32 id) external view returns (address) {
        Entry storage e = _entries[id];
        return e.status == Status.Reserved ? e.wallet : address(0);
    }

    /// @notice Step one of an ownership transfer; the zero address cancels a pending transfer.
    function transferOwnership(address newOwner) external onlyOwner {
        pendingOwner = newOwner;
        emit OwnershipTransferStarted(msg.sender, newOwner);
    }

    /// @notice Step two: the pending owner accepts.
    function acceptOwnership() external {
        if (msg.sender != pendingOwner) revert NotPendingOwner(msg.sender);
        address previous = owner;
        owner = msg.sender;
        delete pendingOwner;
        emit OwnershipTransferred(previous, msg.sender);
    }

    function _checkKey(uint8 keyType, bytes calldata key) private pure {
        if (keyType != KEY_TYPE_P256 || key.length != 33 || (key[0] != 0x02 && key[0] != 0x03)) {
            revert MalformedKey(keyType, key.length);
        }
    }
}
