//! The keystore contract: its committed artifact (`contracts/Keystore.json`) and typed bindings.
//!
//! The bindings are written out as a Solidity interface (alloy's `sol!`) instead of generated from the
//! JSON, which keeps alloy's `json` feature off; a test checks that every function, event and error
//! selector here matches the committed ABI, so the two cannot drift apart.

use std::sync::OnceLock;

use alloy::primitives::{Bytes, hex};

/// The committed artifact, exactly as `scripts/build-contract.sh` writes it.
pub const ARTIFACT_JSON: &str = include_str!("../../../contracts/Keystore.json");

alloy::sol! {
    /// The keystore contract's interface (see `contracts/Keystore.sol` for the semantics).
    #[derive(Debug, PartialEq, Eq)]
    interface IKeystore {
        /// Lifecycle of an entry.
        enum Status {
            /// Never submitted.
            Unknown,
            /// Submitted, awaiting the owner's approval.
            Pending,
            /// Approved: the key may be used.
            Approved,
            /// Revoked by its wallet or the owner.
            Revoked,
            /// Reserved by the owner for one wallet; holds no key (`getClient` says Unknown).
            Reserved
        }

        /// An entry was submitted and awaits approval.
        event ClientAdded(bytes32 indexed id, address indexed wallet, uint8 keyType, bytes key, bytes8 commitment);
        /// The owner approved the pending entry.
        event ClientApproved(bytes32 indexed id, address indexed wallet, bytes32 receiptHash);
        /// The bound wallet replaced its key.
        event KeyRotated(bytes32 indexed id, address indexed wallet, uint8 keyType, bytes key);
        /// The entry was revoked by its wallet or the owner.
        event ClientRevoked(bytes32 indexed id, address indexed wallet, address indexed by);
        /// The owner reserved the id for one wallet.
        event ClientReserved(bytes32 indexed id, address indexed wallet);
        /// Step one of an ownership transfer.
        event OwnershipTransferStarted(address indexed previousOwner, address indexed newOwner);
        /// Ownership changed.
        event OwnershipTransferred(address indexed previousOwner, address indexed newOwner);

        /// The caller is not the owner.
        error NotOwner(address caller);
        /// The caller is not the pending owner.
        error NotPendingOwner(address caller);
        /// The caller is not the entry's bound wallet.
        error NotEntryWallet(bytes32 id, address caller);
        /// No entry exists.
        error UnknownId(bytes32 id);
        /// The entry's status does not allow the call.
        error WrongStatus(bytes32 id, Status status);
        /// Another wallet holds the approved entry.
        error AlreadyTaken(bytes32 id, address wallet);
        /// Another wallet's entry awaits approval.
        error AlreadyPending(bytes32 id, address wallet);
        /// Unsupported key type or wrong key bytes.
        error MalformedKey(uint8 keyType, uint256 length);
        /// The receipt does not match the pending entry.
        error ReceiptMismatch(bytes32 id);
        /// The id is reserved for another wallet.
        error Reserved(bytes32 id, address wallet);
        /// A reservation must name a wallet.
        error ZeroWallet();
        /// The proof of possession does not verify.
        error BadProof(bytes32 id);

        /// Key type tag of P-256 compressed keys.
        function KEY_TYPE_P256() external view returns (uint8);
        /// The owner.
        function owner() external view returns (address);
        /// The pending owner.
        function pendingOwner() external view returns (address);
        /// The commitment a phone puts in `addClient`.
        function receiptCommitment(bytes32 id, address wallet, bytes32 receiptHash) external pure returns (bytes8);
        /// Submit an entry.
        function addClient(bytes32 id, uint8 keyType, bytes key, bytes8 commitment) external;
        /// Submit an entry with an on-chain proof of possession (P-256 precompile).
        function addClientWithProof(bytes32 id, uint8 keyType, bytes key, bytes8 commitment, bytes32 keyY, bytes32 r, bytes32 s) external;
        /// Owner only: approve a pending entry.
        function approveClient(bytes32 id, bytes32 receiptHash) external;
        /// Read an entry.
        function getClient(bytes32 id) external view returns (Status status, address wallet, uint8 keyType, bytes key);
        /// The bound wallet replaces its key.
        function rotateKey(bytes32 id, uint8 keyType, bytes key) external;
        /// The bound wallet or the owner revokes an entry.
        function revokeClient(bytes32 id) external;
        /// Owner only: reserve an id for one wallet, replacing any pending entry.
        function reserveClient(bytes32 id, address wallet) external;
        /// The wallet an id is reserved for (zero when not reserved).
        function reservedFor(bytes32 id) external view returns (address);
        /// Owner only: step one of an ownership transfer.
        function transferOwnership(address newOwner) external;
        /// The pending owner accepts.
        function acceptOwnership() external;
    }
}

struct Artifact {
    creation: Bytes,
    runtime: Bytes,
}

fn artifact() -> &'static Artifact {
    static ARTIFACT: OnceLock<Artifact> = OnceLock::new();
    ARTIFACT.get_or_init(|| {
        // The artifact is compiled into the binary and checked by tests, so a parse failure is a
        // build defect, not input: panicking names it at once.
        let json: serde_json::Value =
            serde_json::from_str(ARTIFACT_JSON).expect("contracts/Keystore.json is valid JSON");
        let field = |name: &str| -> Bytes {
            let text = json[name]
                .as_str()
                .unwrap_or_else(|| panic!("contracts/Keystore.json has a string `{name}`"));
            hex::decode(text)
                .unwrap_or_else(|_| panic!("contracts/Keystore.json `{name}` is hex"))
                .into()
        };
        Artifact {
            creation: field("bytecode"),
            runtime: field("deployedBytecode"),
        }
    })
}

/// The contract's creation bytecode (a deployment transaction's input).
pub fn creation_bytecode() -> &'static Bytes {
    &artifact().creation
}

/// The contract's runtime bytecode (what `eth_getCode` returns after deployment).
pub fn runtime_bytecode() -> &'static Bytes {
    &artifact().runtime
}
