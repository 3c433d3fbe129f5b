//! Fixtures shared by the passport tests: Alice calling Bob with MIKEY in the SDP.
#![allow(dead_code, unreachable_pub)]

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chaincall_identity::{IdentityKey, PhoneNumber};
use chaincall_passport::*;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

pub const CHAIN_ID: u64 = 31337;
pub const KEYSTORE: KeystoreAddress = KeystoreAddress([0x5f; 20]);
/// 2027-01-15T08:00:00Z, a fixed "now" for tests that do not involve another program's clock.
pub const NOW: u64 = 1_800_000_000;

pub const SDP: &str = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
    a=key-mgmt:mikey AQAFgAAAAAAAAAAAAAAAAAA=\r\nm=audio 40000 RTP/SAVP 0\r\na=rtpmap:0 PCMU/8000\r\n";

pub fn key(seed: u8) -> IdentityKey {
    IdentityKey::generate_from(&mut ChaCha20Rng::from_seed([seed; 32]))
}

pub fn alice() -> IdentityKey {
    key(1)
}

pub fn alice_number() -> PhoneNumber {
    "+15551230001".parse().unwrap()
}

pub fn bob() -> Party {
    Party::Tn("+15551230002".parse().unwrap())
}

pub fn locator() -> KeyLocator {
    KeyLocator::new(CHAIN_ID, KEYSTORE, alice_number().into())
}

pub fn claims(iat: u64) -> Claims {
    Claims {
        orig: Party::Tn(alice_number()),
        dest: Dest::single(bob()),
        iat,
        origid: new_origid(&mut ChaCha20Rng::from_seed([9; 32])),
        media: MediaBinding::from_sdp(SDP),
    }
}

/// Alice's Identity header value for a call to Bob issued at `iat`.
pub fn signed(iat: u64) -> String {
    IdentityHeader::sign(&alice(), &locator(), &claims(iat))
        .unwrap()
        .to_string()
}

pub fn verifier() -> Verifier {
    Verifier::new(
        VerifierConfig::new(CHAIN_ID, KEYSTORE),
        MemoryReplayCache::default(),
    )
}

/// Parses and verifies `value` as Bob's phone would, with Alice's key, at `now`.
pub fn check(
    verifier: &mut Verifier,
    value: &str,
    key: &IdentityKey,
    now: u64,
) -> Result<Verified, PassportError> {
    let header = IdentityHeader::parse(value)?;
    let media = MediaBinding::from_sdp(SDP);
    verifier.verify(
        &header,
        &key.public(),
        &Expected {
            orig: &Party::Tn(alice_number()),
            dest: &bob(),
            media: &media,
        },
        now,
    )
}

/// A JWS over arbitrary header and payload JSON, signed by `key`: for tokens our signer refuses
/// to make.
pub fn sign_raw(key: &IdentityKey, header: &str, payload: &str) -> String {
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(payload)
    );
    let sig = key.sign(input.as_bytes());
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.to_bytes()))
}

/// The JWS header chaincall writes for Alice.
pub fn our_header() -> String {
    format!(
        r#"{{"alg":"ES256","kid":"{}","typ":"passport"}}"#,
        locator()
    )
}

/// `jws` carried in an Identity header with Alice's info.
pub fn with_info(jws: &str) -> String {
    format!("{jws};info=<{}>;alg=ES256", locator())
}

/// Splits an Identity header value into its JWS parts and the parameters after them.
pub fn parts(value: &str) -> (String, String, String, String) {
    let (jws, params) = value.split_once(';').unwrap();
    let mut it = jws.split('.');
    (
        it.next().unwrap().to_owned(),
        it.next().unwrap().to_owned(),
        it.next().unwrap().to_owned(),
        format!(";{params}"),
    )
}

/// The high-S twin `(r, n - s)` of a base64url ES256 signature (or its low-S twin).
pub fn twin(signature_b64: &str) -> String {
    let bytes = URL_SAFE_NO_PAD.decode(signature_b64).unwrap();
    let sig = p256::ecdsa::Signature::from_slice(&bytes).unwrap();
    let (r, s) = sig.split_scalars();
    let twin = p256::ecdsa::Signature::from_scalars(r, -*s).unwrap();
    URL_SAFE_NO_PAD.encode(twin.to_bytes())
}

/// Whether a base64url ES256 signature has a high S (s > n/2).
pub fn is_high_s(signature_b64: &str) -> bool {
    let bytes = URL_SAFE_NO_PAD.decode(signature_b64).unwrap();
    p256::ecdsa::Signature::from_slice(&bytes)
        .unwrap()
        .normalize_s()
        .is_some()
}
