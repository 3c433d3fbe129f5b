//! Configuration and the local identity.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use chaincall_identity::{
    IdentityKey, IdentityName, IdentitySignature, PublicIdentityKey, Randomness,
};

use crate::crypto::{CryptoProvider, IdentitySecret, RustCrypto};

/// Which protocol a handshake runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Protocol {
    /// Needham–Schroeder–Lowe public-key protocol: three ECIES messages, no forward secrecy.
    Nsl,
    /// Station-to-Station: signed ephemeral ECDH with key confirmation; forward secrecy.
    Sts,
}

impl Protocol {
    /// The name used in logs, errors and the CLI (`"nsl"`, `"sts"`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Nsl => "nsl",
            Self::Sts => "sts",
        }
    }

    /// The byte that identifies the protocol inside transcripts.
    pub(crate) fn id(self) -> u8 {
        match self {
            Self::Nsl => 1,
            Self::Sts => 2,
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Protocol {
    type Err = &'static str;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "nsl" => Ok(Self::Nsl),
            "sts" => Ok(Self::Sts),
            _ => Err("protocol must be `nsl` or `sts`"),
        }
    }
}

/// Settings shared by initiators and responders. Cheap to clone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandshakeConfig {
    /// How long a derived PSK may be used to open new TLS connections. Default: 1 hour (the usual SIP
    /// registration interval, RFC 3261 §10.2.1.1). The responder announces its value in message 2 and
    /// the initiator uses the smaller of the two.
    pub psk_lifetime: Duration,
    /// How long a handshake may take from its first message to its last. Default: 10 s.
    pub handshake_timeout: Duration,
    /// Whether a responder accepts NSL (no forward secrecy). Default: true.
    pub accept_nsl: bool,
    /// Whether a responder accepts STS. Default: true.
    pub accept_sts: bool,
    /// Test-only: run NSL as the original Needham–Schroeder (no responder name in message 2), to show
    /// Lowe's attack succeeding against it. Never settable outside this crate's tests.
    #[cfg(test)]
    pub(crate) insecure_unfixed_ns: bool,
}

impl HandshakeConfig {
    /// The longest PSK lifetime that can be expressed on the wire (u32 seconds).
    pub const MAX_LIFETIME: Duration = Duration::from_secs(u32::MAX as u64);

    pub(crate) fn lifetime_secs(&self) -> u32 {
        u32::try_from(self.psk_lifetime.as_secs()).unwrap_or(u32::MAX)
    }

    pub(crate) fn unfixed(&self) -> bool {
        #[cfg(test)]
        {
            self.insecure_unfixed_ns
        }
        #[cfg(not(test))]
        {
            false
        }
    }
}

impl Default for HandshakeConfig {
    fn default() -> Self {
        Self {
            psk_lifetime: Duration::from_secs(3600),
            handshake_timeout: Duration::from_secs(10),
            accept_nsl: true,
            accept_sts: true,
            #[cfg(test)]
            insecure_unfixed_ns: false,
        }
    }
}

/// Who we are: our identity name and the secret half of the key approved for it on chain.
///
/// Built once per process and cloned cheaply: it caches the public key and the provider's prepared
/// secret key, so a handshake does not redo the scalar multiplications that deriving them costs.
#[derive(Clone)]
pub struct LocalIdentity {
    name: IdentityName,
    key: Arc<IdentityKey>,
    public: PublicIdentityKey,
    crypto: Arc<dyn CryptoProvider>,
    secret: Arc<dyn IdentitySecret>,
    randomness: Randomness,
}

impl LocalIdentity {
    /// Pairs a name with its identity key (shared, not copied), with the [`RustCrypto`] provider.
    pub fn new(name: IdentityName, key: Arc<IdentityKey>) -> Self {
        Self::with_crypto(name, key, Arc::new(RustCrypto))
    }

    /// Pairs a name with its identity key and the crypto provider every handshake of ours will use.
    pub fn with_crypto(
        name: IdentityName,
        key: Arc<IdentityKey>,
        crypto: Arc<dyn CryptoProvider>,
    ) -> Self {
        let secret: Arc<dyn IdentitySecret> = Arc::from(crypto.load_identity(&key));
        Self {
            name,
            public: key.public(),
            key,
            crypto,
            secret,
            randomness: Randomness::os(),
        }
    }

    /// Draws nonces and ephemeral keys from `randomness` instead of the OS CSPRNG (seeded in tests,
    /// so a handshake can be replayed byte for byte).
    pub fn with_randomness(mut self, randomness: Randomness) -> Self {
        self.randomness = randomness;
        self
    }

    /// Where our nonces and ephemeral keys come from.
    pub fn randomness(&self) -> &Randomness {
        &self.randomness
    }

    /// Our name.
    pub fn name(&self) -> &IdentityName {
        &self.name
    }

    /// Our identity key.
    pub fn key(&self) -> &IdentityKey {
        &self.key
    }

    /// Our public key (cached).
    pub fn public(&self) -> &PublicIdentityKey {
        &self.public
    }

    /// The crypto provider.
    pub fn crypto(&self) -> &dyn CryptoProvider {
        &*self.crypto
    }

    pub(crate) fn secret(&self) -> &dyn IdentitySecret {
        &*self.secret
    }

    /// Signs like [`IdentityKey::sign`] (ECDSA P-256/SHA-256, low-S) with the prepared key.
    pub(crate) fn sign(&self, message: &[u8]) -> IdentitySignature {
        self.secret.sign(message)
    }
}

impl fmt::Debug for LocalIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalIdentity")
            .field("name", &self.name)
            .field("key", &self.key)
            .field("crypto", &self.crypto.name())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cached_signing_matches_the_identity_key() {
        let key = Arc::new(IdentityKey::generate());
        let me = LocalIdentity::new("+15551230001".parse().unwrap(), key.clone());
        assert_eq!(me.public(), &key.public());
        // RFC 6979 signatures are deterministic: the prepared signer must give the very same bytes.
        assert_eq!(me.sign(b"transcript"), key.sign(b"transcript"));
        key.public()
            .verify(b"transcript", &me.sign(b"transcript"))
            .unwrap();
        assert!(!format!("{me:?}").contains(&hex::encode(key.dangerous_secret_bytes().as_slice())));
    }
}
