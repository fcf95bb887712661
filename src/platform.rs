//! Where Ferry keeps its data, and who the user is.

use std::io;
use std::path::{Path, PathBuf};

const NO_HOME: &str = "cannot find a home directory: set FERRY_HOME to a folder Ferry may use";

/// `$FERRY_HOME`, when set: data and config both live there (tests, portable use).
fn ferry_home() -> Option<PathBuf> {
    std::env::var_os("FERRY_HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
}

fn project_dirs() -> Result<directories::ProjectDirs, String> {
    directories::ProjectDirs::from("", "", "ferry").ok_or_else(|| NO_HOME.to_string())
}

/// The data root: `$FERRY_HOME` if set, else the platform data directory
/// (`~/.local/share/ferry` on Linux).
pub fn data_dir() -> Result<PathBuf, String> {
    match ferry_home() {
        Some(home) => Ok(home),
        None => Ok(project_dirs()?.data_dir().to_path_buf()),
    }
}

/// The config file: `$FERRY_HOME/config.ron`, else `~/.config/ferry/config.ron`.
pub fn config_path() -> Result<PathBuf, String> {
    let dir = match ferry_home() {
        Some(home) => home,
        None => project_dirs()?.config_dir().to_path_buf(),
    };
    Ok(dir.join(crate::config::Config::FILE_NAME))
}

/// Where the service's socket lives: `$FERRY_RUNTIME_DIR`; else `$FERRY_HOME/run` (so that every
/// data directory has its own service); else `$XDG_RUNTIME_DIR/ferry`; else `/tmp/ferry-UID`.
pub fn runtime_dir() -> PathBuf {
    let env = |name| std::env::var_os(name).filter(|v| !v.is_empty());
    if let Some(dir) = env("FERRY_RUNTIME_DIR") {
        return PathBuf::from(dir);
    }
    if let Some(home) = ferry_home() {
        return home.join("run");
    }
    if let Some(dir) = env("XDG_RUNTIME_DIR") {
        return PathBuf::from(dir).join("ferry");
    }
    // SAFETY: geteuid has no preconditions.
    PathBuf::from(format!("/tmp/ferry-{}", unsafe { libc::geteuid() }))
}

/// The service's socket in [`runtime_dir`].
pub fn socket_path() -> PathBuf {
    runtime_dir().join("ferry.sock")
}

/// Creates the runtime directory (mode 0700) or checks that an existing one is ours and private,
/// so that no other user can reach the socket or plant one of their own.
pub fn prepare_runtime_dir(dir: &std::path::Path) -> Result<(), String> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
    let fail = |e: std::io::Error| {
        format!(
            "cannot prepare the runtime directory {}: {e}",
            dir.display()
        )
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(fail)?;
    let meta = std::fs::symlink_metadata(dir).map_err(fail)?;
    // SAFETY: geteuid has no preconditions.
    let uid = unsafe { libc::geteuid() };
    if !meta.is_dir() || meta.uid() != uid {
        return Err(format!(
            "the runtime directory {} is not a directory owned by you (uid {uid}): remove it, or set \
             FERRY_RUNTIME_DIR to a private directory",
            dir.display()
        ));
    }
    if meta.mode() & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(fail)?;
    }
    Ok(())
}

/// The OS user a job belongs to; root is the administrator of BITS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub uid: u32,
}

impl User {
    pub fn current() -> User {
        // SAFETY: geteuid has no preconditions.
        let uid = unsafe { libc::geteuid() };
        User {
            name: user_name(uid).unwrap_or_else(|| uid.to_string()),
            uid,
        }
    }

    pub fn is_admin(&self) -> bool {
        self.uid == 0
    }
}

pub fn user_name(uid: u32) -> Option<String> {
    let mut buffer = vec![0u8; 4096];
    // SAFETY: passwd is plain data; getpwuid_r writes into it and into buffer, whose size we pass.
    let mut passwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    let rc = unsafe {
        libc::getpwuid_r(
            uid,
            &mut passwd,
            buffer.as_mut_ptr().cast(),
            buffer.len(),
            &mut result,
        )
    };
    if rc != 0 || result.is_null() || passwd.pw_name.is_null() {
        return None;
    }
    // SAFETY: on success pw_name points to a NUL-terminated string inside buffer.
    let name = unsafe { std::ffi::CStr::from_ptr(passwd.pw_name) };
    Some(name.to_string_lossy().into_owned())
}

/// Renames `from` to `to`, failing if `to` exists unless `replace` (atomic either way).
pub fn rename_into_place(from: &Path, to: &Path, replace: bool) -> io::Result<()> {
    if replace {
        return std::fs::rename(from, to);
    }
    match rename_noreplace(from, to) {
        Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL) | Some(libc::ENOSYS)) => {
            // File systems without RENAME_NOREPLACE: a hard link fails atomically if `to` exists.
            std::fs::hard_link(from, to)?;
            std::fs::remove_file(from)
        }
        other => other,
    }
}

#[cfg(target_os = "linux")]
fn rename_noreplace(from: &Path, to: &Path) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let from = std::ffi::CString::new(from.as_os_str().as_bytes())?;
    let to = std::ffi::CString::new(to.as_os_str().as_bytes())?;
    // SAFETY: both paths are valid NUL-terminated strings for the duration of the call.
    let rc = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            from.as_ptr(),
            libc::AT_FDCWD,
            to.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(not(target_os = "linux"))]
fn rename_noreplace(_from: &Path, _to: &Path) -> io::Result<()> {
    Err(io::Error::from_raw_os_error(libc::ENOSYS))
}

/// Creates `dir` (and missing parents) and makes it private to its owner (0700), whatever the
/// umask and whatever mode it had: job files hold URLs and custom headers (API keys).
pub fn private_dir(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let meta = std::fs::metadata(dir)?;
    if meta.permissions().mode() & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// Makes an existing file private to its owner (0600) if others may read or write it.
pub fn private_file(file: &std::fs::File) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if file.metadata()?.permissions().mode() & 0o077 != 0 {
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(())
}

/// Opens (creating if needed) a file that only its owner may read: 0600 from the first byte.
pub fn open_private(path: &Path, options: &mut std::fs::OpenOptions) -> io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = options.mode(0o600).open(path)?;
    private_file(&file)?;
    Ok(file)
}

/// Copies `from` to `to` through a hidden temp file beside `to`, flushed, then renamed into place
/// (without replacing unless `replace`), so `to` never holds half a copy. Returns the bytes.
pub fn copy_into_place(from: &Path, to: &Path, replace: bool) -> io::Result<u64> {
    let name = to
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temp = to.with_file_name(format!(".{name}.ferry-copy"));
    let copied = std::fs::copy(from, &temp)
        .and_then(|n| std::fs::File::open(&temp)?.sync_all().map(|()| n))
        .and_then(|n| rename_into_place(&temp, to, replace).map(|()| n));
    if copied.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    copied
}
