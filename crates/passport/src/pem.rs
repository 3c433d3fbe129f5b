//! An identity key's public half as a PEM `PUBLIC KEY`, the form STIR tools take a key in
//! (`secsipidx -fpubkey`, Kamailio's `secsipid_check_identity_pubkey`).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chaincall_identity::PublicIdentityKey;

/// The DER SubjectPublicKeyInfo prefix for a P-256 key (RFC 5480 §2): id-ecPublicKey, prime256v1,
/// and the BIT STRING header of a 65-byte uncompressed point, which follows.
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

/// The key as PEM SubjectPublicKeyInfo with the uncompressed point (secsipidx refuses the
/// compressed one the keystore stores).
pub fn public_key_pem(key: &PublicIdentityKey) -> String {
    let mut der = P256_SPKI_PREFIX.to_vec();
    der.extend_from_slice(&key.to_uncompressed_bytes());
    let body = STANDARD.encode(der);
    let mut pem = String::from("-----BEGIN PUBLIC KEY-----\n");
    // RFC 7468 §2: 64 characters a line.
    for line in body.as_bytes().chunks(64) {
        pem.push_str(&String::from_utf8_lossy(line));
        pem.push('\n');
    }
    pem.push_str("-----END PUBLIC KEY-----\n");
    pem
}
