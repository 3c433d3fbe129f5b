//! Subscriber numbers (E.164) and server names (DNS), validated and normalised off-chain.

use std::fmt;
use std::str::FromStr;

use crate::NameError;

/// A subscriber's number in E.164 form: `+`, country code, number; digits only, 7 to 15 of them.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PhoneNumber(String);

impl PhoneNumber {
    /// Parses a number, dropping the separators people type (space, `-`, `.`, `(`, `)`).
    ///
    /// `"+1 (555) 123-4567"` becomes `+15551234567`. A number without the leading `+` is refused rather
    /// than guessed at: national prefixes differ per country.
    pub fn parse(input: &str) -> Result<Self, NameError> {
        let trimmed = input.trim();
        if trimmed.is_empty() {
            return Err(NameError::Empty);
        }
        let Some(rest) = trimmed.strip_prefix('+') else {
            return Err(NameError::MissingPlus {
                input: input.to_owned(),
            });
        };
        let mut out = String::with_capacity(16);
        out.push('+');
        // `rest` borrows from `input`, so the difference of their starts is the offset in `input`.
        let base = rest.as_ptr() as usize - input.as_ptr() as usize;
        for (offset, ch) in rest.char_indices() {
            match ch {
                '0'..='9' => out.push(ch),
                ' ' | '-' | '.' | '(' | ')' => {}
                found => {
                    return Err(NameError::InvalidPhoneChar {
                        input: input.to_owned(),
                        found,
                        offset: base + offset,
                    });
                }
            }
        }
        let digits = out.len() - 1;
        if !(7..=15).contains(&digits) {
            return Err(NameError::PhoneLength {
                input: input.to_owned(),
                digits,
            });
        }
        if out.as_bytes()[1] == b'0' {
            return Err(NameError::LeadingZero {
                input: input.to_owned(),
            });
        }
        Ok(Self(out))
    }

    /// The normalised number, e.g. `+15551234567`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A server's DNS name (e.g. `sip.example.org`), lower-cased, without a trailing dot.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DomainName(String);

impl DomainName {
    /// Parses a hostname by RFC 1123 §2.1: dot-separated labels of letters, digits and inner hyphens,
    /// each 1–63 bytes, 253 bytes in all, at least two labels, and a top-level label that is not all
    /// digits (so an IPv4 address is never taken for a name).
    pub fn parse(input: &str) -> Result<Self, NameError> {
        let bad = |reason| NameError::InvalidDomain {
            input: input.to_owned(),
            reason,
        };
        let trimmed = input.trim();
        if trimmed.is_empty() {
            return Err(NameError::Empty);
        }
        let name = trimmed
            .strip_suffix('.')
            .unwrap_or(trimmed)
            .to_ascii_lowercase();
        if name.len() > 253 {
            return Err(bad("longer than 253 bytes"));
        }
        let labels: Vec<&str> = name.split('.').collect();
        if labels.len() < 2 {
            return Err(bad(
                "a server name needs at least two labels (e.g. sip.example.org)",
            ));
        }
        for label in &labels {
            if label.is_empty() {
                return Err(bad("empty label"));
            }
            if label.len() > 63 {
                return Err(bad("label longer than 63 bytes"));
            }
            if !label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            {
                return Err(bad("only letters, digits and '-' are allowed in a label"));
            }
            if label.starts_with('-') || label.ends_with('-') {
                return Err(bad("a label cannot start or end with '-'"));
            }
        }
        // Invariant: labels.len() >= 2 was checked above.
        let tld = labels.last().expect("at least two labels");
        if tld.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad(
                "the top-level label is all digits (an IP address is not a name)",
            ));
        }
        Ok(Self(name))
    }

    /// The normalised name, e.g. `sip.example.org`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Whom a keystore entry belongs to: a subscriber's number or a server's domain name.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum IdentityName {
    /// A subscriber, by E.164 number.
    Phone(PhoneNumber),
    /// A server (SIP server, wallet server), by domain name.
    Domain(DomainName),
}

impl IdentityName {
    /// Parses a number (input starting with `+`) or else a domain name.
    pub fn parse(input: &str) -> Result<Self, NameError> {
        let trimmed = input.trim();
        if trimmed.starts_with('+') {
            PhoneNumber::parse(input).map(Self::Phone)
        } else if trimmed
            .bytes()
            .all(|b| b.is_ascii_digit() || b" -.()".contains(&b))
            && trimmed.bytes().any(|b| b.is_ascii_digit())
        {
            // Looks like a number typed without '+': say so, instead of "invalid domain".
            PhoneNumber::parse(input).map(Self::Phone)
        } else {
            DomainName::parse(input).map(Self::Domain)
        }
    }

    /// The canonical form whose hash identifies the entry on chain: `tel:+15551234567` or
    /// `dns:sip.example.org`. The scheme prefixes keep the two namespaces apart.
    pub fn canonical(&self) -> String {
        match self {
            Self::Phone(p) => format!("tel:{}", p.as_str()),
            Self::Domain(d) => format!("dns:{}", d.as_str()),
        }
    }

    /// The number or name as a user writes it (no scheme).
    pub fn as_str(&self) -> &str {
        match self {
            Self::Phone(p) => p.as_str(),
            Self::Domain(d) => d.as_str(),
        }
    }
}

impl FromStr for IdentityName {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl FromStr for PhoneNumber {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl FromStr for DomainName {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl From<PhoneNumber> for IdentityName {
    fn from(p: PhoneNumber) -> Self {
        Self::Phone(p)
    }
}

impl From<DomainName> for IdentityName {
    fn from(d: DomainName) -> Self {
        Self::Domain(d)
    }
}

macro_rules! display_as_str {
    ($($t:ty),*) => {$(
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
        impl fmt::Debug for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($t), self.as_str())
            }
        }
    )*};
}
display_as_str!(PhoneNumber, DomainName, IdentityName);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_typed_numbers() {
        let p = PhoneNumber::parse(" +1 (555) 123-4567 ").unwrap();
        assert_eq!(p.as_str(), "+15551234567");
        assert_eq!(
            IdentityName::parse("+44 20.7946.0018").unwrap().canonical(),
            "tel:+442079460018"
        );
    }

    #[test]
    fn refuses_bad_numbers_with_the_reason() {
        assert!(matches!(
            PhoneNumber::parse("5551234567"),
            Err(NameError::MissingPlus { .. })
        ));
        assert!(matches!(
            IdentityName::parse("555 123 4567"),
            Err(NameError::MissingPlus { .. })
        ));
        assert!(matches!(
            PhoneNumber::parse("+1555123456789012"),
            Err(NameError::PhoneLength { digits: 16, .. })
        ));
        assert!(matches!(
            PhoneNumber::parse("+123"),
            Err(NameError::PhoneLength { digits: 3, .. })
        ));
        assert!(matches!(
            PhoneNumber::parse("+0123456789"),
            Err(NameError::LeadingZero { .. })
        ));
        match PhoneNumber::parse("+1555x234567") {
            Err(NameError::InvalidPhoneChar { found, offset, .. }) => {
                assert_eq!((found, offset), ('x', 5));
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(matches!(PhoneNumber::parse("  "), Err(NameError::Empty)));
    }

    #[test]
    fn normalises_and_checks_domains() {
        let d = DomainName::parse("SIP.Example.ORG.").unwrap();
        assert_eq!(d.as_str(), "sip.example.org");
        assert_eq!(IdentityName::from(d).canonical(), "dns:sip.example.org");
        for bad in [
            "localhost",
            "a..b",
            "-a.b",
            "a-.b",
            "10.0.0.1",
            "a_b.org",
            "sip.example.org:5060",
        ] {
            assert!(DomainName::parse(bad).is_err(), "{bad} accepted");
        }
        assert!(DomainName::parse(&format!("{}.org", "a".repeat(64))).is_err());
    }

    #[test]
    fn numbers_and_names_never_share_a_canonical_form() {
        let phone = IdentityName::parse("+15551234567").unwrap();
        let name = IdentityName::parse("sip.example.org").unwrap();
        assert!(phone.canonical().starts_with("tel:+"));
        assert!(name.canonical().starts_with("dns:"));
        // A domain can never contain '+' or ':', so no name canonicalises to a tel: form.
        assert!(DomainName::parse("tel:+15551234567").is_err());
    }
}
