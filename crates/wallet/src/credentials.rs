//! SIP passwords: derived per subscriber, stored only as hashes, rotatable, fetched by the phone
//! with a request its on-chain identity key signs.
//!
//! # The password
//!
//! `password = hex(HMAC-SHA-256(K, "chaincall sip password v1" ‖ len‖domain ‖ len‖number ‖
//! len‖receipt_id ‖ generation)[..20])`: 40 lower-case hex characters, 160 bits. `K` is a
//! 32-byte key the server derives with HKDF-SHA-256 from its identity private key (info
//! [`PASSWORD_KEY_INFO`]): no further secret to configure, and only the server can compute a
//! password. Each input matters: two subscribers — even with the same purchase token — differ in
//! number and receipt id, so their passwords are unrelated; a recycled number gets another
//! receipt id; a rotation bumps `generation`. The server never stores the password: the
//! `subscriber` row holds its three digest hashes ([`crate::subscriber`]) and the generation, and
//! the password is derived again whenever the phone asks for it.
//!
//! # Fetching it: `POST /v1/credentials`
//!
//! The phone sends a [`CredentialsRequest`]: its number, the time, a random nonce and its identity
//! key's signature over [`CredentialsRequest::message`] (context [`REQUEST_CONTEXT`], the number's
//! keystore id, the time and the nonce). The server checks the time window and the signature
//! against the key **approved on chain** for that number — the proof that the requester is the
//! subscriber — and answers a [`CredentialsAnswer`] whose password is ECIES-sealed to that same
//! key ([`ANSWER_CONTEXT`]): only the key's holder can read it, on any transport, so a replayed
//! request yields nothing usable and needs no replay cache.
//!
//! # Rotation
//!
//! `POST /v1/admin/subscribers/{phone}/credentials/rotate` (admin token) bumps the generation and
//! writes the new hashes: the old password stops working at once (at sipd after its credentials
//! cache, `[auth] credentials_cache_secs`). The phone learns the new one through
//! `/v1/credentials`; `chaincall phone register` does so by itself on a 401/403.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chaincall_chain::ClientId;
use chaincall_identity::Randomness;
use chaincall_identity::{IdentityKey, IdentityName, PhoneNumber, ecies};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

// The password key and the request's checks are the server's (feature `server`); the request and
// the answer are the phone's too.
#[cfg(feature = "server")]
use {
    crate::chain::ServerChain,
    crate::error::ApiError,
    crate::payload::verify_signature_hex,
    crate::service::Service,
    crate::subscriber::SubscriberRow,
    crate::wire::State,
    chaincall_identity::{KeyStatus, Secret},
    hmac::{Hmac, Mac},
    sha2::Sha256,
};

/// HKDF info of the password key `K` (derived from the server's identity private key).
pub const PASSWORD_KEY_INFO: &[u8] = b"chaincall wallet v1 sip password key";
/// Domain separation of the credentials request signature: no other chaincall signature starts so.
pub const REQUEST_CONTEXT: &[u8] = b"chaincall wallet v1 sip credentials request";
/// ECIES context of the sealed password in the answer.
pub const ANSWER_CONTEXT: &[u8] = b"chaincall wallet v1 sip credentials answer";
/// The first generation: what provisioning writes.
pub const FIRST_GENERATION: i64 = 1;
/// Bytes of HMAC output in a password (160 bits).
#[cfg(feature = "server")]
const PASSWORD_BYTES: usize = 20;

/// The server's password-derivation key `K`. Zeroized on drop, `<redacted>` in `Debug`.
#[cfg(feature = "server")]
#[derive(Debug)]
pub struct PasswordKey(Secret<[u8; 32]>);

#[cfg(feature = "server")]
impl PasswordKey {
    /// `K = HKDF-SHA-256(ikm = identity private key, info = PASSWORD_KEY_INFO)`.
    pub fn from_identity(identity: &IdentityKey) -> Self {
        let secret = identity.dangerous_secret_bytes();
        let mut okm = Secret::new([0u8; 32]);
        // 32 bytes is far below HKDF-SHA-256's 8160-byte limit: expand cannot fail.
        hkdf::Hkdf::<Sha256>::new(None, &secret)
            .expand(PASSWORD_KEY_INFO, &mut *okm)
            .expect("32 bytes is a valid HKDF-SHA-256 length");
        Self(okm)
    }

    /// The subscriber's SIP password for `generation` (see the module documentation).
    pub fn password(
        &self,
        domain: &str,
        number: &str,
        receipt_id: &str,
        generation: i64,
    ) -> Zeroizing<String> {
        // HMAC accepts keys of any length: this cannot fail.
        let mut mac = Hmac::<Sha256>::new_from_slice(&*self.0).expect("HMAC takes any key length");
        mac.update(b"chaincall sip password v1");
        // Length prefixes: no two different (domain, number, receipt) share an input.
        for part in [domain, number, receipt_id] {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part.as_bytes());
        }
        mac.update(&generation.to_be_bytes());
        let tag = Zeroizing::new(mac.finalize().into_bytes());
        Zeroizing::new(hex::encode(&tag[..PASSWORD_BYTES]))
    }
}

/// The body of `POST /v1/credentials`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CredentialsRequest {
    /// The subscriber's E.164 number.
    pub phone: String,
    /// Unix time in seconds when signed.
    pub timestamp: u64,
    /// 16 random bytes, hex.
    pub nonce: String,
    /// The identity key's signature over [`CredentialsRequest::message`], hex.
    pub signature: String,
}

impl CredentialsRequest {
    /// A request for `number`, stamped now with a nonce from `randomness`, signed by `identity`.
    pub fn new(identity: &IdentityKey, number: &PhoneNumber, randomness: &Randomness) -> Self {
        let nonce: [u8; 16] = randomness.bytes();
        let mut request = Self {
            phone: number.as_str().to_owned(),
            timestamp: unix_now(),
            nonce: hex::encode(nonce),
            signature: String::new(),
        };
        if let Some(message) = request.message() {
            request.signature = hex::encode(identity.sign(&message).to_bytes());
        }
        request
    }

    /// What the identity key signs: [`REQUEST_CONTEXT`] ‖ keystore id of the number (32 bytes) ‖
    /// timestamp (8 bytes, big-endian) ‖ nonce (16 bytes). `None` when the number or the nonce
    /// is malformed.
    pub fn message(&self) -> Option<Vec<u8>> {
        let number = PhoneNumber::parse(&self.phone).ok()?;
        let nonce = hex::decode(&self.nonce).ok().filter(|n| n.len() == 16)?;
        let id = ClientId::of(&IdentityName::Phone(number));
        let mut message = REQUEST_CONTEXT.to_vec();
        message.extend_from_slice(id.as_b256().as_slice());
        message.extend_from_slice(&self.timestamp.to_be_bytes());
        message.extend_from_slice(&nonce);
        Some(message)
    }
}

/// The answer to `POST /v1/credentials`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CredentialsAnswer {
    /// The SIP (digest) username: the number.
    pub username: String,
    /// The SIP domain.
    pub domain: String,
    /// The digest realm.
    pub realm: String,
    /// The password's generation (bumped by each rotation).
    pub generation: i64,
    /// The password, ECIES-sealed to the number's on-chain identity key ([`ANSWER_CONTEXT`]),
    /// base64.
    pub sealed_password: String,
}

impl std::fmt::Debug for CredentialsAnswer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CredentialsAnswer")
            .field("username", &self.username)
            .field("domain", &self.domain)
            .field("generation", &self.generation)
            .finish_non_exhaustive()
    }
}

impl CredentialsAnswer {
    /// The password, opened with the phone's identity key; `None` when it was not sealed to it.
    pub fn open(&self, identity: &IdentityKey) -> Option<Zeroizing<String>> {
        let sealed = STANDARD.decode(self.sealed_password.trim()).ok()?;
        let plain = Zeroizing::new(ecies::open(identity, ANSWER_CONTEXT, &sealed).ok()?);
        std::str::from_utf8(&plain)
            .ok()
            .map(|p| Zeroizing::new(p.to_owned()))
    }
}

/// What an administrator's rotation did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RotateOutcome {
    /// The number.
    pub phone: String,
    /// The new generation.
    pub generation: i64,
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(feature = "server")]
fn sip_failure(e: impl std::error::Error + 'static) -> ApiError {
    tracing::error!(error = &e as &dyn std::error::Error, "SIP database failure");
    ApiError::Internal
}

// The server's side: answering the request, provisioning and rotating.
#[cfg(feature = "server")]
impl<C: ServerChain> Service<C> {
    /// The `subscriber` row of `number`'s password for onboarding `receipt_id` at `generation`.
    pub(crate) fn sip_row(&self, number: &str, receipt_id: &str, generation: i64) -> SubscriberRow {
        let settings = self.settings();
        let password = PasswordKey::from_identity(self.identity_key()).password(
            &settings.sip_domain,
            number,
            receipt_id,
            generation,
        );
        SubscriberRow::new(
            number,
            &settings.sip_domain,
            &settings.realm,
            &password,
            generation,
        )
    }

    /// The provisioned onboarding of `number` (its latest), for a credentials operation.
    async fn provisioned(&self, number: &PhoneNumber) -> Result<String, ApiError> {
        let row = self
            .db()
            .latest_for_phone(number.as_str())
            .await
            .map_err(|e| {
                tracing::error!(error = &e as &dyn std::error::Error, "database failure");
                ApiError::Internal
            })?
            .ok_or(ApiError::NotFound)?;
        match row.state {
            State::Provisioned => Ok(row.receipt_id),
            State::Revoked => Err(ApiError::Revoked),
            _ => Err(ApiError::NotFound),
        }
    }

    /// Writes `number`'s hashes for `generation(current)` with a compare-and-set on the stored
    /// generation, reading again when a concurrent writer won. Returns the generation written.
    async fn write_generation(
        &self,
        number: &PhoneNumber,
        receipt_id: &str,
        next: impl Fn(i64) -> i64,
    ) -> Result<i64, ApiError> {
        let domain = &self.settings().sip_domain;
        for _ in 0..8 {
            let current = self
                .sip()
                .get(number.as_str(), domain)
                .await
                .map_err(sip_failure)?
                .ok_or(ApiError::NotFound)?;
            let generation = next(current.generation);
            let row = self.sip_row(number.as_str(), receipt_id, generation);
            if row == current {
                return Ok(generation);
            }
            if self
                .sip()
                .replace_if_generation(&row, current.generation)
                .await
                .map_err(sip_failure)?
            {
                return Ok(generation);
            }
        }
        tracing::error!(
            phone = number.as_str(),
            "SIP credentials kept changing under us"
        );
        Err(ApiError::Internal)
    }

    /// `POST /v1/credentials`: the subscriber's current SIP password, sealed to its on-chain key,
    /// for a request that key signed. A row of an older server (generation 0, the hash of the
    /// purchase token) is moved to the derived password here, and the hashes are rewritten when
    /// they are not those of the derived password (the server's identity key changed, or the
    /// number was onboarded again), so what the phone receives always works.
    pub async fn sip_credentials(
        &self,
        request: &CredentialsRequest,
    ) -> Result<CredentialsAnswer, ApiError> {
        let number = PhoneNumber::parse(&request.phone).map_err(|e| ApiError::InvalidField {
            field: "phone",
            reason: e.to_string(),
        })?;
        let skew = self.settings().max_clock_skew.as_secs();
        if unix_now().abs_diff(request.timestamp) > skew {
            return Err(ApiError::Expired);
        }
        let message = request.message().ok_or(ApiError::InvalidField {
            field: "nonce",
            reason: "16 bytes, hex".into(),
        })?;
        let id = ClientId::of(&IdentityName::Phone(number.clone()));
        let entry = self
            .chain()
            .get_client(self.settings().contract, id)
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, "credentials: chain read failed");
                ApiError::ChainUnavailable
            })?;
        let key = match entry.public_key() {
            Ok(key) if entry.status == KeyStatus::Approved => key,
            _ => {
                tracing::warn!(
                    phone = number.as_str(),
                    "credentials refused: no approved key on chain"
                );
                return Err(ApiError::BadProof);
            }
        };
        if !verify_signature_hex(&key, &message, &request.signature) {
            tracing::warn!(
                phone = number.as_str(),
                "credentials refused: not signed by the on-chain key"
            );
            return Err(ApiError::BadProof);
        }
        let receipt_id = self.provisioned(&number).await?;
        let generation = self
            .write_generation(&number, &receipt_id, |g| g.max(FIRST_GENERATION))
            .await?;
        let settings = self.settings();
        let password = PasswordKey::from_identity(self.identity_key()).password(
            &settings.sip_domain,
            number.as_str(),
            &receipt_id,
            generation,
        );
        tracing::info!(
            phone = number.as_str(),
            generation,
            "SIP credentials sent (sealed)"
        );
        Ok(CredentialsAnswer {
            username: number.as_str().to_owned(),
            domain: settings.sip_domain.clone(),
            realm: settings.realm.clone(),
            generation,
            sealed_password: STANDARD.encode(ecies::seal(
                &key,
                ANSWER_CONTEXT,
                password.as_bytes(),
            )),
        })
    }

    /// Admin: rotates `phone`'s SIP password (generation + 1); the old one is refused from now on.
    pub async fn admin_rotate_sip_password(&self, phone: &str) -> Result<RotateOutcome, ApiError> {
        let number = PhoneNumber::parse(phone).map_err(|e| ApiError::InvalidField {
            field: "phone",
            reason: e.to_string(),
        })?;
        let receipt_id = self.provisioned(&number).await?;
        let generation = self
            .write_generation(&number, &receipt_id, |g| g.max(0) + 1)
            .await?;
        tracing::info!(phone = number.as_str(), generation, "SIP password rotated");
        Ok(RotateOutcome {
            phone: number.as_str().to_owned(),
            generation,
        })
    }
}

#[cfg(all(test, feature = "server"))]
mod tests {
    use super::*;

    /// The secrets the wallet crate holds print as `<redacted>` through derived `Debug` impls.
    #[test]
    fn debug_never_shows_keys_codes_or_passwords() {
        let key = PasswordKey::from_identity(&IdentityKey::generate());
        assert_eq!(format!("{key:?}"), "PasswordKey(<redacted>)");
        let request = crate::NumberRequest::named("+15550100001").with_code("735120");
        let shown = format!("{request:?}");
        assert!(
            shown.contains("+15550100001") && !shown.contains("735120"),
            "{shown}"
        );
        let smpp = crate::number::smpp_client::SmppConfig {
            address: "smsc.example.net:2775".into(),
            system_id: "chaincall".into(),
            password: Secret::new("pw-83xq".into()),
            system_type: String::new(),
            source_addr: "chaincall".into(),
            timeout: std::time::Duration::from_secs(5),
        };
        let shown = format!("{smpp:?}");
        assert!(
            shown.contains("smsc.example.net") && !shown.contains("pw-83xq"),
            "{shown}"
        );
    }

    #[test]
    fn passwords_are_long_printable_and_depend_on_every_input() {
        let key = PasswordKey::from_identity(&IdentityKey::generate());
        let base = key.password("sip.example.org", "+15550100001", "GPA.1", 1);
        assert_eq!(base.len(), 40);
        assert!(base.bytes().all(|b| b.is_ascii_hexdigit()));
        for other in [
            key.password("sip.example.net", "+15550100001", "GPA.1", 1),
            key.password("sip.example.org", "+15550100002", "GPA.1", 1),
            key.password("sip.example.org", "+15550100001", "GPA.2", 1),
            key.password("sip.example.org", "+15550100001", "GPA.1", 2),
            // Length prefixes: moving a character between fields changes the input.
            key.password("sip.example.org", "+15550100001G", "PA.1", 1),
            PasswordKey::from_identity(&IdentityKey::generate()).password(
                "sip.example.org",
                "+15550100001",
                "GPA.1",
                1,
            ),
        ] {
            assert_ne!(*other, *base);
        }
        assert_eq!(
            *key.password("sip.example.org", "+15550100001", "GPA.1", 1),
            *base,
            "deterministic: the server derives it again for each request"
        );
    }

    #[test]
    fn request_signature_binds_number_time_and_nonce() {
        let identity = IdentityKey::generate();
        let number = PhoneNumber::parse("+15550100001").unwrap();
        let request = CredentialsRequest::new(&identity, &number, &Randomness::os());
        let key = identity.public();
        let ok = |r: &CredentialsRequest| {
            r.message()
                .is_some_and(|m| verify_signature_hex(&key, &m, &r.signature))
        };
        assert!(ok(&request));
        for tampered in [
            CredentialsRequest {
                phone: "+15550100002".into(),
                ..request.clone()
            },
            CredentialsRequest {
                timestamp: request.timestamp + 1,
                ..request.clone()
            },
            CredentialsRequest {
                nonce: "00".repeat(16),
                ..request.clone()
            },
        ] {
            assert!(!ok(&tampered), "{tampered:?}");
        }
        let stranger =
            CredentialsRequest::new(&IdentityKey::generate(), &number, &Randomness::os());
        assert!(!ok(&stranger));
        // Hostile fields: no panic, no message.
        assert!(
            CredentialsRequest {
                nonce: "zz".into(),
                ..request.clone()
            }
            .message()
            .is_none()
        );
    }

    #[test]
    fn answer_opens_only_with_the_subscribers_key() {
        let identity = IdentityKey::generate();
        let answer = CredentialsAnswer {
            username: "+15550100001".into(),
            domain: "d".into(),
            realm: "d".into(),
            generation: 1,
            sealed_password: STANDARD.encode(ecies::seal(
                &identity.public(),
                ANSWER_CONTEXT,
                b"pw",
            )),
        };
        assert_eq!(
            answer.open(&identity).as_deref().map(String::as_str),
            Some("pw")
        );
        assert!(answer.open(&IdentityKey::generate()).is_none());
        assert!(!format!("{answer:?}").contains(&answer.sealed_password));
    }
}
