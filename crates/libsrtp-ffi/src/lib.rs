//! Native libsrtp 2.x, loaded at run time, as a reference peer for chaincall's SRTP benches and
//! tests. Not a dependency of any core: the SRTP core is `chaincall-srtp`, which forbids `unsafe`.
//!
//! The library is the libsrtp 2.7 (built with OpenSSL 3.5) that PyPI `pylibsrtp` ships inside its
//! extension module `pylibsrtp/_binding.abi3.so`, which exports the libsrtp C API. That module
//! references two CPython data symbols, so the venv's `libpython3.x.so` is loaded first with
//! `RTLD_GLOBAL` (Python itself is never initialised or called).
//!
//! Where it is found: `CHAINCALL_LIBSRTP` (path of the module or any libsrtp2 shared library) and
//! optionally `CHAINCALL_LIBPYTHON`; otherwise the given venv python is asked for both paths.

use std::ffi::{CStr, CString, c_char, c_int, c_uint, c_ulong, c_void};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Why libsrtp could not be loaded or used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FfiError {
    /// `dlopen` or `dlsym` failed.
    #[error("loading {what}: {message}")]
    Load {
        /// The library or symbol.
        what: String,
        /// `dlerror()` text.
        message: String,
    },
    /// Asking the venv python for the module path failed.
    #[error("asking {python} for pylibsrtp: {message}")]
    Locate {
        /// The interpreter asked.
        python: String,
        /// What went wrong.
        message: String,
    },
    /// A libsrtp call returned an error status (see `srtp_err_status_t` in srtp.h).
    #[error("libsrtp {call} failed with status {status}")]
    Status {
        /// The C function.
        call: &'static str,
        /// Its `srtp_err_status_t`.
        status: i32,
    },
    /// A profile name libsrtp's profile table does not have.
    #[error("profile {0} unknown to libsrtp")]
    UnknownProfile(String),
    /// Key material of the wrong length for the profile.
    #[error("key material must be {0} octets")]
    KeyLength(usize),
}

/// `srtp_crypto_policy_t` (srtp.h, libsrtp 2.x).
#[repr(C)]
#[derive(Clone, Copy)]
struct CryptoPolicy {
    cipher_type: c_uint,
    cipher_key_len: c_int,
    auth_type: c_uint,
    auth_key_len: c_int,
    auth_tag_len: c_int,
    sec_serv: c_int,
}

/// `srtp_policy_t` (srtp.h, libsrtp 2.x; layout checked against pylibsrtp's cffi build: 128
/// octets, `key` at 56, `window_size` at 88, `allow_repeat_tx` at 96).
#[repr(C)]
struct Policy {
    ssrc_type: c_int,
    ssrc_value: c_uint,
    rtp: CryptoPolicy,
    rtcp: CryptoPolicy,
    key: *mut u8,
    keys: *mut c_void,
    num_master_keys: c_ulong,
    deprecated_ekt: *mut c_void,
    window_size: c_ulong,
    allow_repeat_tx: c_int,
    enc_xtn_hdr: *mut c_int,
    enc_xtn_hdr_count: c_int,
    next: *mut Policy,
}

const _: () = assert!(size_of::<Policy>() == 128);

type SrtpT = *mut c_void;
type FnInit = unsafe extern "C" fn() -> c_int;
type FnCreate = unsafe extern "C" fn(*mut SrtpT, *const Policy) -> c_int;
type FnDealloc = unsafe extern "C" fn(SrtpT) -> c_int;
type FnProtect = unsafe extern "C" fn(SrtpT, *mut c_void, *mut c_int) -> c_int;
type FnSetProfile = unsafe extern "C" fn(*mut CryptoPolicy, c_int) -> c_int;

/// libsrtp, loaded and initialised. Lives for the process (never unloaded).
pub struct LibSrtp {
    path: PathBuf,
    create: FnCreate,
    dealloc: FnDealloc,
    protect: FnProtect,
    unprotect: FnProtect,
    protect_rtcp: FnProtect,
    unprotect_rtcp: FnProtect,
    set_rtp: FnSetProfile,
    set_rtcp: FnSetProfile,
}

impl std::fmt::Debug for LibSrtp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LibSrtp")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

fn dlerror_text() -> String {
    // SAFETY: dlerror returns NULL or a pointer to a NUL-terminated string owned by libc, valid
    // until the next dl* call on this thread; we copy it out immediately.
    unsafe {
        let e = libc::dlerror();
        if e.is_null() {
            "unknown error".into()
        } else {
            CStr::from_ptr(e).to_string_lossy().into_owned()
        }
    }
}

fn dlopen(path: &Path, flags: c_int) -> Result<*mut c_void, FfiError> {
    let c = CString::new(path.as_os_str().as_encoded_bytes()).map_err(|_| FfiError::Load {
        what: path.display().to_string(),
        message: "path contains NUL".into(),
    })?;
    // SAFETY: `c` is a valid NUL-terminated path; dlopen has no other preconditions. Loading runs
    // the library's constructors, which for libpython and the libsrtp module only set up statics.
    let h = unsafe { libc::dlopen(c.as_ptr(), flags) };
    if h.is_null() {
        return Err(FfiError::Load {
            what: path.display().to_string(),
            message: dlerror_text(),
        });
    }
    Ok(h)
}

fn sym(handle: *mut c_void, name: &str) -> Result<*mut c_void, FfiError> {
    let c = CString::new(name).expect("symbol names have no NUL");
    // SAFETY: `handle` came from a successful dlopen and is never closed; `c` is NUL-terminated.
    let p = unsafe { libc::dlsym(handle, c.as_ptr() as *const c_char) };
    if p.is_null() {
        return Err(FfiError::Load {
            what: name.into(),
            message: dlerror_text(),
        });
    }
    Ok(p)
}

/// libsrtp's `srtp_profile_t` value for an RFC profile name (srtp.h).
fn profile_id(rfc_name: &str) -> Result<c_int, FfiError> {
    Ok(match rfc_name {
        "AES_CM_128_HMAC_SHA1_80" => 1,
        "AES_CM_128_HMAC_SHA1_32" => 2,
        "AEAD_AES_128_GCM" => 7,
        "AEAD_AES_256_GCM" => 8,
        other => return Err(FfiError::UnknownProfile(other.into())),
    })
}

/// Master key + salt length libsrtp expects for a profile.
fn key_material_len(rfc_name: &str) -> usize {
    match rfc_name {
        "AEAD_AES_256_GCM" => 44,
        "AEAD_AES_128_GCM" => 28,
        _ => 30,
    }
}

impl LibSrtp {
    /// Asks `python` (a venv with pylibsrtp) where the extension module and its libpython are.
    pub fn locate(python: &Path) -> Result<(PathBuf, Option<PathBuf>), FfiError> {
        let script = "import os, sysconfig, pylibsrtp._binding as b\n\
                      print(b.__file__)\n\
                      print(os.path.join(sysconfig.get_config_var('LIBDIR') or '', sysconfig.get_config_var('INSTSONAME') or ''))";
        let out = Command::new(python)
            .arg("-c")
            .arg(script)
            .output()
            .map_err(|e| FfiError::Locate {
                python: python.display().to_string(),
                message: e.to_string(),
            })?;
        if !out.status.success() {
            return Err(FfiError::Locate {
                python: python.display().to_string(),
                message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let mut lines = text.lines();
        let module = PathBuf::from(lines.next().unwrap_or_default());
        let libpython = lines.next().map(PathBuf::from).filter(|p| p.is_file());
        Ok((module, libpython))
    }

    /// Loads libsrtp from `CHAINCALL_LIBSRTP` (+ `CHAINCALL_LIBPYTHON`), else via `python`.
    pub fn from_env_or_python(python: Option<&Path>) -> Result<Self, FfiError> {
        if let Some(path) = std::env::var_os("CHAINCALL_LIBSRTP") {
            let libpython = std::env::var_os("CHAINCALL_LIBPYTHON").map(PathBuf::from);
            return Self::load(Path::new(&path), libpython.as_deref());
        }
        let python = python.ok_or_else(|| FfiError::Locate {
            python: "(none)".into(),
            message: "set CHAINCALL_LIBSRTP or give the venv python".into(),
        })?;
        let (module, libpython) = Self::locate(python)?;
        Self::load(&module, libpython.as_deref())
    }

    /// Loads libsrtp from `path`, first loading `libpython` globally when given (needed for the
    /// pylibsrtp module), and runs `srtp_init`.
    pub fn load(path: &Path, libpython: Option<&Path>) -> Result<Self, FfiError> {
        if let Some(py) = libpython {
            dlopen(py, libc::RTLD_LAZY | libc::RTLD_GLOBAL)?;
        }
        let h = dlopen(path, libc::RTLD_LAZY | libc::RTLD_LOCAL)?;
        // SAFETY (all transmutes below): each symbol is the libsrtp 2.x function of that name, whose
        // C prototype in srtp.h matches the function-pointer type it is cast to.
        let lib = unsafe {
            LibSrtp {
                path: path.to_path_buf(),
                create: std::mem::transmute::<*mut c_void, FnCreate>(sym(h, "srtp_create")?),
                dealloc: std::mem::transmute::<*mut c_void, FnDealloc>(sym(h, "srtp_dealloc")?),
                protect: std::mem::transmute::<*mut c_void, FnProtect>(sym(h, "srtp_protect")?),
                unprotect: std::mem::transmute::<*mut c_void, FnProtect>(sym(h, "srtp_unprotect")?),
                protect_rtcp: std::mem::transmute::<*mut c_void, FnProtect>(sym(
                    h,
                    "srtp_protect_rtcp",
                )?),
                unprotect_rtcp: std::mem::transmute::<*mut c_void, FnProtect>(sym(
                    h,
                    "srtp_unprotect_rtcp",
                )?),
                set_rtp: std::mem::transmute::<*mut c_void, FnSetProfile>(sym(
                    h,
                    "srtp_crypto_policy_set_from_profile_for_rtp",
                )?),
                set_rtcp: std::mem::transmute::<*mut c_void, FnSetProfile>(sym(
                    h,
                    "srtp_crypto_policy_set_from_profile_for_rtcp",
                )?),
            }
        };
        // SAFETY: srtp_init has the prototype `srtp_err_status_t srtp_init(void)`; calling it more
        // than once is allowed (it re-initialises the crypto kernel idempotently).
        let status = unsafe {
            let init = std::mem::transmute::<*mut c_void, FnInit>(sym(h, "srtp_init")?);
            init()
        };
        if status != 0 {
            return Err(FfiError::Status {
                call: "srtp_init",
                status,
            });
        }
        Ok(lib)
    }

    /// A libsrtp session for `profile` (RFC name) keyed with master key || master salt, accepting
    /// any SSRC in the given direction, with a replay window of `window` packets.
    pub fn session(
        &self,
        profile: &str,
        key_and_salt: &[u8],
        outbound: bool,
        window: u32,
    ) -> Result<Session<'_>, FfiError> {
        let id = profile_id(profile)?;
        let n = key_material_len(profile);
        if key_and_salt.len() != n {
            return Err(FfiError::KeyLength(n));
        }
        let mut key = key_and_salt.to_vec().into_boxed_slice();
        let zero = CryptoPolicy {
            cipher_type: 0,
            cipher_key_len: 0,
            auth_type: 0,
            auth_key_len: 0,
            auth_tag_len: 0,
            sec_serv: 0,
        };
        let mut policy = Policy {
            // ssrc_any_outbound = 3, ssrc_any_inbound = 2 (srtp.h).
            ssrc_type: if outbound { 3 } else { 2 },
            ssrc_value: 0,
            rtp: zero,
            rtcp: zero,
            key: key.as_mut_ptr(),
            keys: std::ptr::null_mut(),
            num_master_keys: 0,
            deprecated_ekt: std::ptr::null_mut(),
            window_size: c_ulong::from(window),
            allow_repeat_tx: 0,
            enc_xtn_hdr: std::ptr::null_mut(),
            enc_xtn_hdr_count: 0,
            next: std::ptr::null_mut(),
        };
        // SAFETY: both pointers are to live CryptoPolicy fields of `policy`; the functions only
        // write those structs.
        let (a, b) = unsafe {
            (
                (self.set_rtp)(&mut policy.rtp, id),
                (self.set_rtcp)(&mut policy.rtcp, id),
            )
        };
        if a != 0 || b != 0 {
            return Err(FfiError::Status {
                call: "srtp_crypto_policy_set_from_profile",
                status: a.max(b),
            });
        }
        let mut ctx: SrtpT = std::ptr::null_mut();
        // SAFETY: `policy` is fully initialised and `key` (referenced by it) outlives the call;
        // srtp_create copies the key material into its own context.
        let status = unsafe { (self.create)(&mut ctx, &policy) };
        if status != 0 {
            return Err(FfiError::Status {
                call: "srtp_create",
                status,
            });
        }
        key.fill(0);
        Ok(Session { lib: self, ctx })
    }
}

/// One libsrtp `srtp_t`, deallocated on drop.
pub struct Session<'a> {
    lib: &'a LibSrtp,
    ctx: SrtpT,
}

/// libsrtp needs this many spare octets after a packet it protects (SRTP_MAX_TRAILER_LEN for
/// SRTCP, which is the larger: index 4 + tag 16 + MKI 128).
pub const MAX_TRAILER: usize = 4 + 16 + 128;

impl Session<'_> {
    fn call(
        &mut self,
        f: FnProtect,
        name: &'static str,
        buf: &mut [u8],
        len: usize,
        grows: bool,
    ) -> Result<usize, FfiError> {
        // libsrtp writes up to the trailer past `len` when protecting; refuse rather than overflow.
        let room = if grows { len + MAX_TRAILER } else { len };
        assert!(buf.len() >= room, "buffer needs {room} octets");
        let mut n = c_int::try_from(len).expect("packet length fits c_int");
        // SAFETY: `ctx` is a live srtp_t from srtp_create; `buf` is valid for `room` octets, which
        // covers what libsrtp reads (len) and writes (len + trailer when protecting); `n` is a
        // live c_int.
        let status = unsafe { f(self.ctx, buf.as_mut_ptr().cast(), &mut n) };
        if status != 0 {
            return Err(FfiError::Status { call: name, status });
        }
        Ok(usize::try_from(n).expect("libsrtp returns a non-negative length"))
    }

    /// `srtp_protect`: `buf[..len]` is RTP, `buf` needs [`MAX_TRAILER`] spare octets.
    pub fn protect(&mut self, buf: &mut [u8], len: usize) -> Result<usize, FfiError> {
        self.call(self.lib.protect, "srtp_protect", buf, len, true)
    }

    /// `srtp_unprotect` of `buf[..len]`.
    pub fn unprotect(&mut self, buf: &mut [u8], len: usize) -> Result<usize, FfiError> {
        self.call(self.lib.unprotect, "srtp_unprotect", buf, len, false)
    }

    /// `srtp_protect_rtcp`: `buf[..len]` is RTCP, `buf` needs [`MAX_TRAILER`] spare octets.
    pub fn protect_rtcp(&mut self, buf: &mut [u8], len: usize) -> Result<usize, FfiError> {
        self.call(self.lib.protect_rtcp, "srtp_protect_rtcp", buf, len, true)
    }

    /// `srtp_unprotect_rtcp` of `buf[..len]`.
    pub fn unprotect_rtcp(&mut self, buf: &mut [u8], len: usize) -> Result<usize, FfiError> {
        self.call(
            self.lib.unprotect_rtcp,
            "srtp_unprotect_rtcp",
            buf,
            len,
            false,
        )
    }
}

impl Drop for Session<'_> {
    fn drop(&mut self) {
        // SAFETY: `ctx` came from srtp_create and is deallocated exactly once, here.
        unsafe {
            (self.lib.dealloc)(self.ctx);
        }
    }
}
