//! [`Secret<T>`]: one wrapper for secret values — zeroized on drop, `<redacted>` in `Debug`.
//!
//! It replaces the hand-written redacting `Debug` impls the crates had, so a struct holding a key
//! can `#[derive(Debug)]` and still never print it.

use std::fmt;
use std::ops::{Deref, DerefMut};

use zeroize::{Zeroize, ZeroizeOnDrop};

/// A secret value: wiped from memory when dropped and shown as `<redacted>` by `Debug`.
///
/// It derefs to the value (like [`zeroize::Zeroizing`], which it replaces), so byte keys index and
/// slice as before; there is deliberately no `Display`, `Serialize` or `PartialEq` (compare keys in
/// constant time where it matters).
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
}
