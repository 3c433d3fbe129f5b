//! An error told with its causes, for the places that turn an error into a log field or a string.

use std::fmt;

/// Shows an error and every cause from `source()`, joined by `": "` (what `{:#}` of an
/// `anyhow::Error` prints). Errors say their own part only and return the cause from `source()`,
/// so `%e` or `e.to_string()` alone would drop the cause: log and store `ErrorChain(&e)` instead.
#[derive(Clone, Copy)]
pub struct ErrorChain<'a>(pub &'a (dyn std::error::Error + 'a));

impl fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut cause = self.0.source();
        while let Some(c) = cause {
            write!(f, ": {c}")?;
            cause = c.source();
        }
        Ok(())
    }
}

impl fmt::Debug for ErrorChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::ErrorChain;

    #[derive(Debug)]
    struct Outer(std::io::Error);
    impl std::fmt::Display for Outer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("cannot read x")
        }
    }
    impl std::error::Error for Outer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn tells_each_cause_once() {
        let e = Outer(std::io::Error::other("disk on fire"));
        assert_eq!(ErrorChain(&e).to_string(), "cannot read x: disk on fire");
    }
}
