//! Where the cores' randomness comes from: the OS CSPRNG in production, a seeded generator in tests.
//!
//! A core that draws randomness (nonces, salts, ephemeral keys, MIKEY's RAND and CSB IDs) takes a
//! [`Randomness`] in its configuration instead of naming `OsRng`, so a test can replay a run byte for
//! byte by passing a seeded CSPRNG.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use rand_core::{CryptoRngCore, OsRng};

/// A shareable source of cryptographic randomness. [`Randomness::os`] (the default) is the OS
/// CSPRNG; [`Randomness::seeded`] wraps any CSPRNG, e.g. a `ChaCha20Rng` from a fixed seed in tests.
#[derive(Clone, Default)]
pub struct Randomness(Option<Arc<Mutex<dyn CryptoRngCore + Send>>>);

impl Randomness {
    /// The OS CSPRNG (no shared state, no lock).
    pub fn os() -> Self {
        Self(None)
    }

    /// Draws from `rng` (clones of this value share it). Meant for reproducible tests.
    pub fn seeded(rng: impl CryptoRngCore + Send + 'static) -> Self {
        Self(Some(Arc::new(Mutex::new(rng))))
    }

    /// Runs `f` with the generator.
    pub fn with<R>(&self, f: impl FnOnce(&mut dyn CryptoRngCore) -> R) -> R {
        match &self.0 {
            None => f(&mut OsRng),
            // A panic elsewhere cannot leave a generator in a state that matters here.
            Some(shared) => f(&mut *shared.lock().unwrap_or_else(PoisonError::into_inner)),
        }
    }

    /// Fills `buf` with random bytes.
    pub fn fill(&self, buf: &mut [u8]) {
        self.with(|rng| rng.fill_bytes(buf));
    }

    /// `N` random bytes.
    pub fn bytes<const N: usize>(&self) -> [u8; N] {
        let mut out = [0u8; N];
        self.fill(&mut out);
        out
    }
}

impl fmt::Debug for Randomness {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print a generator's state: it would predict every later draw.
        f.write_str(match self.0 {
            None => "Randomness(os)",
            Some(_) => "Randomness(seeded)",
        })
    }
}
