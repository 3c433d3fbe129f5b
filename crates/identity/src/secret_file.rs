//! Files that hold secrets: written readable by their owner only, and refused on load when a group or
//! other users can read them.
//!
//! Every loader of a key file, a password file, a token or a store receipt goes through
//! [`read_secret_file`], so the rule and its message are the same everywhere: the error names the
//! path, the mode it found and the fix (`chmod 600 PATH`). The mode is checked on the opened file
//! (not the path), so a file swapped between the check and the read is still the one checked.
//! Writers use [`write_secret_file`], which creates the file with mode 0600 rather than changing the
//! mode after the secret is already on disk.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

/// Why a secret file could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SecretFileError {
    /// The file could not be opened, read or written.
    #[error("{}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The file holds a secret but its group or other users may read or write it.
    #[error(
        "{path} has mode {mode:04o}: a file holding secrets must not be readable by group or others; \
         fix it with `chmod 600 {path}`",
        path = path.display()
    )]
    TooOpen {
        /// The file.
        path: PathBuf,
        /// Its permission bits (`mode & 0o7777`).
        mode: u32,
    },
    /// The file is not UTF-8 text.
    #[error("{}: not UTF-8 text", path.display())]
    NotText {
        /// The file.
        path: PathBuf,
    },
}

/// Permission bits that make a secret file unsafe: anything for group or others.
const OPEN_BITS: u32 = 0o077;

/// Refuses `file` (opened from `path`) when its group or other users have any access.
#[cfg(unix)]
fn check_mode(path: &Path, file: &File) -> Result<(), SecretFileError> {
    use std::os::unix::fs::PermissionsExt;
    let meta = file.metadata().map_err(|source| SecretFileError::Io {
        path: path.to_owned(),
        source,
    })?;
    let mode = meta.permissions().mode() & 0o7777;
    if mode & OPEN_BITS != 0 {
        return Err(SecretFileError::TooOpen {
            path: path.to_owned(),
            mode,
        });
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_mode(_path: &Path, _file: &File) -> Result<(), SecretFileError> {
    Ok(())
}

/// Checks that the secret file at `path` is private to its owner, without reading it.
pub fn check_secret_file(path: &Path) -> Result<(), SecretFileError> {
    let file = File::open(path).map_err(|source| SecretFileError::Io {
        path: path.to_owned(),
        source,
    })?;
    check_mode(path, &file)
}

/// Reads the secret file at `path` as text, refusing it when group or others may access it.
///
/// The returned text is zeroized on drop; so are the bytes read on the way.
pub fn read_secret_file(path: &Path) -> Result<Zeroizing<String>, SecretFileError> {
    let mut file = File::open(path).map_err(|source| SecretFileError::Io {
        path: path.to_owned(),
        source,
    })?;
    check_mode(path, &file)?;
    let mut bytes = Zeroizing::new(Vec::new());
    file.read_to_end(&mut bytes)
        .map_err(|source| SecretFileError::Io {
            path: path.to_owned(),
            source,
        })?;
    match std::str::from_utf8(&bytes) {
        Ok(text) => Ok(Zeroizing::new(text.to_owned())),
        Err(_) => Err(SecretFileError::NotText {
            path: path.to_owned(),
        }),
    }
}

/// How [`write_secret_file`] treats an existing file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Overwrite {
    /// Fail if the file exists (keys: never overwrite one by accident).
    Refuse,
    /// Replace the file atomically: write a new 0600 file next to it, then rename it over.
    Replace,
}

/// Writes `contents` to `path`, creating the file with mode 0600 (owner read/write only).
///
/// The mode is set when the file is created, so the secret is never on disk with wider permissions.
/// With [`Overwrite::Replace`] the file is written as `PATH.tmp` and renamed over `path`, so a reader
/// never sees half a file and an existing file's wider mode is not inherited.
pub fn write_secret_file(
    path: &Path,
    contents: &[u8],
    overwrite: Overwrite,
) -> Result<(), SecretFileError> {
    let io = |p: &Path| {
        let p = p.to_owned();
        move |source| SecretFileError::Io { path: p, source }
    };
    match overwrite {
        Overwrite::Refuse => create_private(path, contents).map_err(io(path)),
        Overwrite::Replace => {
            let mut tmp = path.as_os_str().to_owned();
            tmp.push(".tmp");
            let tmp = PathBuf::from(tmp);
            // A stale temporary file from an interrupted write may have any mode: remove it so the
            // new one is created (with 0600) rather than reused.
            match std::fs::remove_file(&tmp) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io(&tmp)(e)),
            }
            create_private(&tmp, contents).map_err(io(&tmp))?;
            std::fs::rename(&tmp, path).map_err(io(path))
        }
    }
}

/// Creates `path` (which must not exist) with mode 0600 and writes `contents`.
fn create_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    f.write_all(contents)?;
    f.sync_all()
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    fn tempdir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "chaincall-secret-file-{}-{}",
            std::process::id(),
            rand_core::RngCore::next_u64(&mut rand_core::OsRng)
        ));
        std::fs::create_dir(&dir).unwrap();
        dir
    }

    /// The path is this error's own part, the OS reason comes from `source()` only: the chain
    /// tells each once.
    #[test]
    fn io_error_tells_path_and_reason_once() {
        let dir = tempdir();
        let path = dir.join("missing");
        let err = read_secret_file(&path).unwrap_err();
        assert_eq!(err.to_string(), path.display().to_string());
        let os = std::error::Error::source(&err).unwrap().to_string();
        let told = chaincall_io::ErrorChain(&err).to_string();
        assert_eq!(told.matches(os.as_str()).count(), 1, "{told}");
        assert_eq!(
            told.matches(&*path.display().to_string()).count(),
            1,
            "{told}"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn written_files_are_0600_and_read_back() {
        let dir = tempdir();
        let path = dir.join("key");
        write_secret_file(&path, b"secret\n", Overwrite::Refuse).unwrap();
        assert_eq!(mode(&path), 0o600);
        assert_eq!(read_secret_file(&path).unwrap().as_str(), "secret\n");
        // Refuse keeps an existing key.
        let err = write_secret_file(&path, b"other", Overwrite::Refuse).unwrap_err();
        assert!(matches!(err, SecretFileError::Io { .. }), "{err}");
        assert_eq!(read_secret_file(&path).unwrap().as_str(), "secret\n");
        // Replace over a file that had been made world readable: the new file is 0600.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        write_secret_file(&path, b"new", Overwrite::Replace).unwrap();
        assert_eq!(mode(&path), 0o600);
        assert_eq!(read_secret_file(&path).unwrap().as_str(), "new");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn group_or_world_readable_files_are_refused_with_the_fix() {
        let dir = tempdir();
        let path = dir.join("key");
        write_secret_file(&path, b"secret", Overwrite::Refuse).unwrap();
        for bad in [0o644, 0o640, 0o604, 0o660, 0o666] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(bad)).unwrap();
            let err = read_secret_file(&path).unwrap_err();
            let text = err.to_string();
            assert!(text.contains(&path.display().to_string()), "{text}");
            assert!(text.contains(&format!("{bad:04o}")), "{text}");
            assert!(
                text.contains(&format!("chmod 600 {}", path.display())),
                "{text}"
            );
            assert!(check_secret_file(&path).is_err());
        }
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o400)).unwrap();
        assert_eq!(read_secret_file(&path).unwrap().as_str(), "secret");
        check_secret_file(&path).unwrap();
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn missing_and_binary_files_are_errors_not_panics() {
        let dir = tempdir();
        assert!(matches!(
            read_secret_file(&dir.join("absent")),
            Err(SecretFileError::Io { .. })
        ));
        let path = dir.join("bin");
        write_secret_file(&path, &[0xff, 0xfe, 0x00], Overwrite::Refuse).unwrap();
        assert!(matches!(
            read_secret_file(&path),
            Err(SecretFileError::NotText { .. })
        ));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
