//! chaincall's configuration files are TOML; a value refused while reading one is reported with
//! the file, the line and the dotted key ([`TomlError`]), so an operator finds the typo at once.
//!
//! toml's own errors carry a byte span and, for values, a key path it keeps private; this crate
//! turns them into a place a person can read: `wallet.toml:12:1: funding.max_wei: …`.
//!
//! [`init_logging`] sets up the binaries' logs the same way (`--log-format`, `RUST_LOG`).
#![forbid(unsafe_code)]

/// A TOML file that could not be read into a configuration, placed in the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}:{column}: {}{message}", key.as_ref().map(|k| format!("{k}: ")).unwrap_or_default())]
pub struct TomlError {
    /// The file (or whatever name the caller gave the text).
    pub file: String,
    /// 1-based line of the offending key or value.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// The dotted key (`tls_psk.contract`), when the error is about one.
    pub key: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl TomlError {
    /// Places toml's `err` about `text` (read from `file`): line, column and key from its span.
    pub fn new(file: &str, text: &str, err: &toml::de::Error) -> TomlError {
        let start = err.span().map_or(0, |s| s.start).min(text.len());
        let before = &text.as_bytes()[..start];
        let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
        let line_start = before
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1);
        let column = text[line_start..start].chars().count() + 1;
        let key = toml_key(text, err);
        let message = err.message().trim_end();
        // A section's own check names the section already; the key in front says it once.
        let message = key
            .as_deref()
            .and_then(|k| message.strip_prefix(k)?.strip_prefix(": "))
            .unwrap_or(message)
            .to_owned();
        TomlError {
            file: file.to_owned(),
            line,
            column,
            key,
            message,
        }
    }
}

/// Reads `text` (from `file`) as a `T`, placing any error.
pub fn from_str<T: serde::de::DeserializeOwned>(file: &str, text: &str) -> Result<T, TomlError> {
    toml::from_str(text).map_err(|e| TomlError::new(file, text, &e))
}

/// The dotted key a TOML error is about. An error on a value takes toml's own path, which toml
/// keeps private but prints (`in `a.b``) when it has no input to quote. An error on a key itself
/// (unknown key) or in the syntax has no path to the key: the key written on that line, under the
/// last table header above it.
fn toml_key(text: &str, err: &toml::de::Error) -> Option<String> {
    let start = err.span()?.start.min(text.len());
    let mut bare = err.clone();
    bare.set_input(None);
    let path = bare
        .to_string()
        .lines()
        .rev()
        .find_map(|l| Some(l.strip_prefix("in `")?.strip_suffix('`')?.to_owned()));
    let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
    let line_end = text[start..].find('\n').map_or(text.len(), |i| start + i);
    let line = &text[line_start..line_end];
    let eq = line.find('=');
    let on_key = eq.is_some_and(|eq| start - line_start <= eq);
    if let Some(path) = path.filter(|_| !on_key) {
        return Some(path);
    }
    let key = line[..eq?].trim();
    if key.is_empty() {
        return None;
    }
    let table = text[..line_start].lines().rev().find_map(|l| {
        let l = l.trim();
        l.strip_prefix('[')?.strip_suffix(']').map(str::trim)
    });
    Some(match table {
        Some(t) => format!("{t}.{key}"),
        None => key.to_owned(),
    })
}

/// How the binaries write their log lines to stderr (`--log-format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Human-readable lines; coloured only when stderr is a terminal.
    #[default]
    Text,
    /// One JSON object per line (`timestamp`, `level`, `fields`, `target`), for log collectors.
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<LogFormat, String> {
        match s {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(format!("unknown log format {other:?}: use text or json")),
        }
    }
}

/// Sends the process's logs to stderr in `format`, filtered by `RUST_LOG` (default `info`).
/// Colour escapes only go to a terminal: in a file, a pipe or journald they are noise.
pub fn init_logging(format: LogFormat) {
    use std::io::IsTerminal as _;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal());
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)] // read only through Debug: the test is about the errors
    struct File {
        port: u16,
        #[serde(default)]
        section: Option<Section>,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Section {
        name: String,
    }

    #[test]
    fn places_values_unknown_keys_and_syntax() {
        for (text, line, key) in [
            ("port = \"x\"\n", 1, "port"),
            ("port = 1\n\n[section]\nname = 3\n", 4, "section.name"),
            ("port = 1\n[section]\nnam = \"a\"\n", 3, "section.nam"),
            ("port = = 1\n", 1, "port"),
        ] {
            let err = from_str::<File>("f.toml", text).unwrap_err();
            assert_eq!((err.line, err.key.as_deref()), (line, Some(key)), "{err}");
            assert!(
                err.to_string().starts_with(&format!("f.toml:{line}:")),
                "{err}"
            );
        }
    }
}
