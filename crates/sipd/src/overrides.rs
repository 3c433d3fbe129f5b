//! What an operator may change on the command line over the configuration file
//! (`chaincall sipd serve --listen … --auth … --static-route … --domain …`), applied in one place
//! so the CLI only parses flags.

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::config::{AuthMode, Config, Listen};

/// Command-line values that replace the file's; `None` or empty keeps the file's value.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// Listeners that replace the file's list (when not empty).
    pub listen: Vec<Listen>,
    /// `none` (no digest auth) or `digest`.
    pub auth: Option<String>,
    /// Where requests for unregistered targets go.
    pub static_route: Option<SocketAddr>,
    /// The SIP domain (digest realm).
    pub domain: Option<String>,
    /// Where TLS secrets are appended when the file's `[tls_psk]` names no `keylog_file` (the
    /// binary's `SSLKEYLOGFILE`; the library never reads the environment).
    pub keylog_file: Option<PathBuf>,
}

/// An override that names no valid value.
#[derive(Debug, thiserror::Error)]
#[error("--auth must be none or digest, not {0:?}")]
pub struct BadAuthMode(pub String);

impl Config {
    /// This configuration with `overrides` applied.
    pub fn with_overrides(mut self, overrides: Overrides) -> Result<Self, BadAuthMode> {
        if !overrides.listen.is_empty() {
            self.listen = overrides.listen;
        }
        match overrides.auth.as_deref() {
            None => {}
            Some("none") => self.auth.mode = AuthMode::None,
            Some("digest") => self.auth.mode = AuthMode::Digest,
            Some(other) => return Err(BadAuthMode(other.to_owned())),
        }
        self.static_route = overrides.static_route.or(self.static_route);
        self.domain = overrides.domain.or(self.domain);
        if let Some(tls) = self.tls_psk.as_mut() {
            tls.keylog_file = tls.keylog_file.take().or(overrides.keylog_file);
        }
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_replace_only_what_they_name() {
        let file = Config::default();
        let same = file.clone().with_overrides(Overrides::default()).unwrap();
        assert_eq!(same.listen, file.listen);
        assert_eq!(same.auth.mode, file.auth.mode);
        let route: SocketAddr = "127.0.0.1:5070".parse().unwrap();
        let listen: Listen = "tcp:127.0.0.1:5062".parse().unwrap();
        let changed = file
            .with_overrides(Overrides {
                listen: vec![listen],
                auth: Some("none".into()),
                static_route: Some(route),
                domain: Some("sip.example.org".into()),
                keylog_file: None,
            })
            .unwrap();
        assert_eq!(changed.listen, vec![listen]);
        assert_eq!(changed.auth.mode, AuthMode::None);
        assert_eq!(changed.static_route, Some(route));
        assert_eq!(changed.domain.as_deref(), Some("sip.example.org"));
        let bad = Overrides {
            auth: Some("basic".into()),
            ..Overrides::default()
        };
        let err = Config::default().with_overrides(bad).unwrap_err();
        assert_eq!(
            err.to_string(),
            "--auth must be none or digest, not \"basic\""
        );
    }
}
