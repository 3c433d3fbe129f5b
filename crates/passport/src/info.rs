//! The `info` parameter's URI: where the signing key is, on chain, instead of a certificate URL.
//!
//! ```text
//! chaincall:keystore:<chain id>:<keystore address>:<identity>
//! chaincall:keystore:31337:0x5fbdb2315678afecb367f032d93f642f64180aa3:tel:+15551234567
//! ```
//!
//! The chain id is decimal (EIP-155), the keystore contract address `0x` and 40 lower-case hex
//! digits, the identity its canonical on-chain form (`tel:+E164` or `dns:name`,
//! [`IdentityName::canonical`]). The scheme is not `http`/`https` on purpose: RFC 8224 verifiers
//! (and `secsipidx`, Kamailio's `secsipid`) dereference such `info` URLs to fetch an X.509
//! certificate; a key that lives on chain is looked up (with a Merkle proof) by the verifier
//! itself, never fetched from a server the caller chose.

use std::fmt;

use chaincall_identity::{DomainName, IdentityName, PhoneNumber};

use crate::PassportError;

/// The URI scheme of [`KeyLocator`]s.
pub const INFO_SCHEME: &str = "chaincall";

/// The longest `info` URI accepted: a 253-byte domain name plus the fixed parts, with room.
const MAX_INFO_LEN: usize = 400;

/// A keystore contract's address: 20 bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeystoreAddress(pub [u8; 20]);

impl KeystoreAddress {
    /// Parses `0x` and 40 hex digits (either case).
    pub fn parse(text: &str) -> Option<Self> {
        let hex_digits = text
            .strip_prefix("0x")
            .or_else(|| text.strip_prefix("0X"))?;
        if hex_digits.len() != 40 {
            return None;
        }
        let mut out = [0u8; 20];
        hex::decode_to_slice(hex_digits, &mut out).ok()?;
        Some(Self(out))
    }
}

impl fmt::Display for KeystoreAddress {
    /// `0x` and 40 lower-case hex digits: the canonical form in `info` URIs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0x{}", hex::encode(self.0))
    }
}

impl fmt::Debug for KeystoreAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeystoreAddress({self})")
    }
}

/// Where a PASSporT's signing key is: an identity in a keystore contract on a chain.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct KeyLocator {
    chain_id: u64,
    keystore: KeystoreAddress,
    name: IdentityName,
}

impl KeyLocator {
    /// The key of `name` in the keystore at `keystore` on chain `chain_id`.
    pub fn new(chain_id: u64, keystore: KeystoreAddress, name: IdentityName) -> Self {
        Self {
            chain_id,
            keystore,
            name,
        }
    }

    /// The EIP-155 chain id.
    pub fn chain_id(&self) -> u64 {
        self.chain_id
    }

    /// The keystore contract.
    pub fn keystore(&self) -> KeystoreAddress {
        self.keystore
    }

    /// The identity whose approved key signs.
    pub fn name(&self) -> &IdentityName {
        &self.name
    }

    /// The URI, without the angle brackets the header puts around it.
    pub fn to_uri(&self) -> String {
        self.to_string()
    }

    /// Parses an `info` URI (without angle brackets). Only the canonical form [`Self::to_uri`]
    /// writes is accepted, so a key has exactly one `info` (and `kid`) spelling.
    ///
    /// Anything else, above all an `http(s)` certificate URL, is [`PassportError::UnknownInfo`]
    /// (436 Bad Identity Info).
    pub fn parse(uri: &str) -> Result<Self, PassportError> {
        let unknown = PassportError::UnknownInfo;
        if uri.len() > MAX_INFO_LEN {
            return Err(unknown("info URI too long"));
        }
        let Some((scheme, rest)) = uri.split_once(':') else {
            return Err(unknown("not a URI"));
        };
        if scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https") {
            return Err(unknown(
                "an HTTP(S) certificate URL; chaincall keys are read from the chain",
            ));
        }
        if !scheme.eq_ignore_ascii_case(INFO_SCHEME) {
            return Err(unknown("not a chaincall: URI"));
        }
        let Some(rest) = rest.strip_prefix("keystore:") else {
            return Err(unknown("a chaincall: URI other than chaincall:keystore:"));
        };
        // Chain id and address hold no ':', the identity does (tel:+…, dns:…): split twice only.
        let mut parts = rest.splitn(3, ':');
        let (Some(chain), Some(address), Some(name)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(unknown(
                "chaincall:keystore: needs chain id, address and identity",
            ));
        };
        let chain_id = parse_chain_id(chain).ok_or(unknown("bad chain id"))?;
        let keystore = KeystoreAddress::parse(address)
            .filter(|a| a.to_string() == address)
            .ok_or(unknown(
                "keystore address is not 0x and 40 lower-case hex digits",
            ))?;
        let name = parse_canonical_name(name).ok_or(unknown(
            "identity is not a canonical tel:+E.164 number or dns: name",
        ))?;
        Ok(Self::new(chain_id, keystore, name))
    }
}

/// Decimal, no sign, no leading zero, not zero, fits in u64.
fn parse_chain_id(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) || text.starts_with('0') {
        return None;
    }
    text.parse().ok()
}

/// `tel:+E164` or `dns:name`, exactly as [`IdentityName::canonical`] writes it.
fn parse_canonical_name(text: &str) -> Option<IdentityName> {
    let name = if let Some(number) = text.strip_prefix("tel:") {
        IdentityName::Phone(PhoneNumber::parse(number).ok()?)
    } else if let Some(domain) = text.strip_prefix("dns:") {
        IdentityName::Domain(DomainName::parse(domain).ok()?)
    } else {
        return None;
    };
    (name.canonical() == text).then_some(name)
}

impl fmt::Display for KeyLocator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{INFO_SCHEME}:keystore:{}:{}:{}",
            self.chain_id,
            self.keystore,
            self.name.canonical()
        )
    }
}

impl fmt::Debug for KeyLocator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyLocator({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn locator() -> KeyLocator {
        KeyLocator::new(
            31337,
            KeystoreAddress([0x5f; 20]),
            "+15551234567".parse().unwrap(),
        )
    }

    #[test]
    fn round_trips_in_canonical_form() {
        let uri = locator().to_uri();
        assert_eq!(
            uri,
            "chaincall:keystore:31337:0x5f5f5f5f5f5f5f5f5f5f5f5f5f5f5f5f5f5f5f5f:tel:+15551234567"
        );
        assert_eq!(KeyLocator::parse(&uri).unwrap(), locator());
        let domain = KeyLocator::new(
            1,
            KeystoreAddress([1; 20]),
            "sip.example.org".parse().unwrap(),
        );
        assert_eq!(KeyLocator::parse(&domain.to_uri()).unwrap(), domain);
    }

    #[test]
    fn refuses_other_forms() {
        let good = locator().to_uri();
        for bad in [
            "https://cert.example.org/passport.pem".to_owned(),
            "http://127.0.0.1/cert.pem".to_owned(),
            "urn:chaincall:x".to_owned(),
            "chaincall:other:1".to_owned(),
            "chaincall:keystore:31337".to_owned(),
            good.replace("31337", "031337"),
            good.replace("31337", "0"),
            good.replace("31337", "99999999999999999999999"),
            good.replace("0x5f5f", "0x5F5F"),
            good.replace("0x5f5f", "0x5f"),
            good.replace("tel:+15551234567", "tel:+1 555 123 4567"),
            good.replace("tel:+15551234567", "tel:15551234567"),
            good.replace("tel:+15551234567", "dns:SIP.example.org"),
            good.replace("tel:", "sip:"),
            format!("{good}{}", "a".repeat(400)),
            String::new(),
        ] {
            assert!(
                matches!(KeyLocator::parse(&bad), Err(PassportError::UnknownInfo(_))),
                "{bad:?} accepted"
            );
        }
    }
}
