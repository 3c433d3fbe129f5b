//! An identity key's public half as a PEM `PUBLIC KEY`, the form STIR tools take a key in
//! (`secsipidx -fpubkey`, Kamailio's `secsipid_check_identity_pubkey`), and the Kamailio
//! configuration that provisions such keys.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chaincall_identity::{PhoneNumber, PublicIdentityKey};

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

/// The Kamailio `htable` that [`kamailio_key_route`] fills: declare it with
/// `modparam("htable", "htable", "chaincall_keys=>size=10")`.
pub const KAMAILIO_KEY_TABLE: &str = "chaincall_keys";

/// Kamailio configuration (for `include_file`) that provisions identity keys for the `secsipid`
/// module: `route[CHAINCALL_KEYS]` stores each number's key, as PEM, in the htable
/// [`KAMAILIO_KEY_TABLE`] under the number as a From user carries it (`+E.164`). Call it from
/// `event_route[htable:mod-init]`; then `secsipid_check_identity_pubkey("$sht(chaincall_keys=>$fU)")`
/// checks an INVITE's Identity header against its caller's key.
///
/// Kamailio does not read the chain: the keys given here must come from a verified look-up of
/// each number's approved key, and the file must be written again (and Kamailio restarted, or
/// the entry set over RPC) when a key is rotated or revoked. `docs/caller-identity.md` has the
/// whole recipe.
pub fn kamailio_key_route<'a>(
    keys: impl IntoIterator<Item = (&'a PhoneNumber, &'a PublicIdentityKey)>,
) -> String {
    let mut cfg = String::from(
        "# chaincall identity keys (PEM), by caller number: written from verified on-chain look-ups\n\
         route[CHAINCALL_KEYS] {\n",
    );
    for (number, key) in keys {
        // A number is '+' and digits and a PEM is base64, dashes, spaces and newlines: only the
        // newlines need escaping inside a Kamailio string.
        let pem = public_key_pem(key).replace('\n', "\\n");
        cfg.push_str(&format!(
            "    $sht({KAMAILIO_KEY_TABLE}=>{}) = \"{pem}\";\n",
            number.as_str()
        ));
    }
    cfg.push_str("}\n");
    cfg
}
