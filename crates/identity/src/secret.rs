//! [`Secret<T>`]: one wrapper for secret values — zeroized on drop, `<redacted>` in `Debug`.
//!
//! It replaces the hand-written redacting `Debug` impls the crates had, so a struct holding a key
//! can `#[derive(Debug)]` and still never print it. Byte-like secrets compare in constant time, so
//! a struct holding one can `#[derive(PartialEq)]` too; with the crate's `serde` feature a secret
//! (de)serializes as its bare value, for the wire types that must carry one.

use std::fmt;
use std::ops::{Deref, DerefMut};

use zeroize::{Zeroize, ZeroizeOnDrop};

/// A secret value: wiped from memory when dropped and shown as `<redacted>` by `Debug`.
///
/// It derefs to the value (like [`zeroize::Zeroizing`], which it replaces), so byte keys index and
/// slice as before. There is deliberately no `Display`. `PartialEq` exists only for byte-like
/// values (`AsRef<[u8]>`: byte arrays and vectors, strings) and runs in constant time in the
/// contents (only the lengths may show). `Serialize`/`Deserialize` come with the `serde` feature and
/// are transparent (the bare value): use them only in a type that must carry the secret itself.
#[derive(Clone, Default)]
pub struct Secret<T: Zeroize>(T);

impl<T: Zeroize> Secret<T> {
    /// Wraps `value`.
    pub fn new(value: T) -> Self {
        Self(value)
    }

    /// The value. Secret: hand it to the cipher, never log it.
    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl<T: Zeroize> From<T> for Secret<T> {
    fn from(value: T) -> Self {
        Self(value)
    }
}

/// So a secret string can be written as a literal: `"…".into()`.
impl From<&str> for Secret<String> {
    fn from(value: &str) -> Self {
        Self(value.to_owned())
    }
}

impl<T: Zeroize> Deref for Secret<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: Zeroize> DerefMut for Secret<T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.0
    }
}

impl<T: Zeroize> Drop for Secret<T> {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl<T: Zeroize> ZeroizeOnDrop for Secret<T> {}

impl<T: Zeroize> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Constant time in the contents: how much of two secrets agrees never shows in the time taken
/// (only whether their lengths differ does).
impl<T: Zeroize + AsRef<[u8]>> PartialEq for Secret<T> {
    fn eq(&self, other: &Self) -> bool {
        constant_time_eq(self.0.as_ref(), other.0.as_ref())
    }
}

impl<T: Zeroize + AsRef<[u8]>> Eq for Secret<T> {}

/// Against a plain string, in constant time as above (tests and checks hold the expected value).
impl<T: Zeroize + AsRef<[u8]>> PartialEq<str> for Secret<T> {
    fn eq(&self, other: &str) -> bool {
        constant_time_eq(self.0.as_ref(), other.as_bytes())
    }
}

/// Against a plain string (see `PartialEq<str>`).
impl<T: Zeroize + AsRef<[u8]>> PartialEq<&str> for Secret<T> {
    fn eq(&self, other: &&str) -> bool {
        constant_time_eq(self.0.as_ref(), other.as_bytes())
    }
}

/// Against a plain string (see `PartialEq<str>`).
impl<T: Zeroize + AsRef<[u8]>> PartialEq<String> for Secret<T> {
    fn eq(&self, other: &String) -> bool {
        constant_time_eq(self.0.as_ref(), other.as_bytes())
    }
}

/// Equal contents, in time independent of where they differ (`subtle`).
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq as _;
    bool::from(a.ct_eq(b))
}

/// The bare value, as if the wrapper were not there.
#[cfg(feature = "serde")]
impl<T: Zeroize + serde::Serialize> serde::Serialize for Secret<T> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

/// The bare value, as if the wrapper were not there.
#[cfg(feature = "serde")]
impl<'de, T: Zeroize + serde::Deserialize<'de>> serde::Deserialize<'de> for Secret<T> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        T::deserialize(deserializer).map(Self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_redacts_and_the_value_stays_usable() {
        #[derive(Debug)]
        struct Keys {
            ssrc: u32,
            key: Secret<Vec<u8>>,
        }
        let k = Keys {
            ssrc: 7,
            key: Secret::new(vec![0xab; 16]),
        };
        let shown = format!("{k:?}");
        assert_eq!(shown, "Keys { ssrc: 7, key: <redacted> }");
        assert_eq!(k.ssrc, 7);
        assert_eq!(&k.key[..4], &[0xab; 4]);
        assert_eq!(k.key.expose().len(), 16);
    }

    #[test]
    fn the_value_is_wiped_on_drop() {
        let mut s = Secret::new([0x5au8; 32]);
        // Drop's body, run in place so the wiped bytes can be read back.
        s.0.zeroize();
        assert_eq!(*s, [0u8; 32]);
    }

    #[test]
    fn byte_secrets_compare_by_content() {
        let a = Secret::new([7u8; 32]);
        let mut other = [7u8; 32];
        assert_eq!(a, Secret::new(other));
        other[31] = 8;
        assert_ne!(a, Secret::new(other));
        assert_eq!(
            Secret::new(String::from("pw")),
            Secret::new("pw".to_owned())
        );
        assert_ne!(
            Secret::new(String::from("pw")),
            Secret::new("pw2".to_owned())
        );
        assert_ne!(Secret::new(vec![1u8]), Secret::new(vec![1u8, 0]));
        let password: Secret<String> = "pw".into();
        let expected = String::from("pw");
        assert!(password == "pw" && password == *"pw" && password == expected);
        assert!(password != "pw2");
    }

    #[cfg(feature = "serde")]
    #[test]
    fn serde_is_the_bare_value() {
        #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
        struct Login {
            user: String,
            password: Secret<String>,
        }
        let json = r#"{"user":"alice","password":"hunter22"}"#;
        let login: Login = serde_json::from_str(json).unwrap();
        assert_eq!(login.password.expose(), "hunter22");
        assert_eq!(serde_json::to_string(&login).unwrap(), json);
        assert!(!format!("{login:?}").contains("hunter22"));
    }
}
