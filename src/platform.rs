//! Where Ferry keeps its data, and who the user is.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
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

/// Whether the service socket `socket` and its runtime directory may be this user's: `Err` with a
/// plain sentence (for E_ACCESSDENIED) when they are another user's, so that a client says so
/// instead of trying to start a service there. Each user has a service of their own.
pub fn check_runtime_access(socket: &Path) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    // SAFETY: geteuid has no preconditions.
    let uid = unsafe { libc::geteuid() };
    let who = |uid: u32| match user_name(uid) {
        Some(name) => format!("{name} (uid {uid})"),
        None => format!("uid {uid}"),
    };
    let fix = "each user has a Ferry service of their own: unset FERRY_RUNTIME_DIR, or point it at \
               a directory of yours, to reach yours";
    let Some(dir) = socket.parent() else {
        return Ok(());
    };
    match std::fs::symlink_metadata(dir) {
        Ok(meta) if meta.uid() != uid => {
            return Err(format!(
                "the runtime directory {} belongs to {}, and you are {}: {fix}",
                dir.display(),
                who(meta.uid()),
                who(uid)
            ));
        }
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            // The nearest folder above it that can be looked at says whose it is.
            let closed = dir
                .ancestors()
                .skip(1)
                .find_map(|a| std::fs::symlink_metadata(a).ok().map(|m| (a, m.uid())));
            let whose = match closed {
                Some((folder, owner)) if owner != uid => {
                    format!("{} belongs to {}", folder.display(), who(owner))
                }
                _ => "a folder on the way is closed to you".to_string(),
            };
            return Err(format!(
                "you, {}, may not enter the runtime directory {}: {whose}; {fix}",
                who(uid),
                dir.display()
            ));
        }
        _ => {}
    }
    match std::fs::symlink_metadata(socket) {
        Ok(meta) if meta.uid() != uid => Err(format!(
            "the service socket {} belongs to {}, and you are {}: {fix}",
            socket.display(),
            who(meta.uid()),
            who(uid)
        )),
        _ => Ok(()),
    }
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
    let (from, to) = (c_path(from)?, c_path(to)?);
    rename_at(libc::AT_FDCWD, &from, libc::AT_FDCWD, &to, replace)
}

fn c_path(path: &Path) -> io::Result<std::ffi::CString> {
    use std::os::unix::ffi::OsStrExt;
    Ok(std::ffi::CString::new(path.as_os_str().as_bytes())?)
}

/// `renameat2` relative to folder descriptors (or `AT_FDCWD`), without replacing unless
/// `replace`; on file systems without RENAME_NOREPLACE a hard link, which fails atomically if
/// `to` exists.
pub fn rename_at(
    from_dir: RawFd,
    from: &CStr,
    to_dir: RawFd,
    to: &CStr,
    replace: bool,
) -> io::Result<()> {
    let flags = if replace { 0 } else { libc::RENAME_NOREPLACE };
    // SAFETY: valid descriptors (or AT_FDCWD) and NUL-terminated names.
    let rc = unsafe { libc::renameat2(from_dir, from.as_ptr(), to_dir, to.as_ptr(), flags) };
    if rc == 0 {
        return Ok(());
    }
    let error = io::Error::last_os_error();
    if !replace
        && matches!(
            error.raw_os_error(),
            Some(libc::EINVAL) | Some(libc::ENOSYS)
        )
    {
        // SAFETY: as above.
        if unsafe { libc::linkat(from_dir, from.as_ptr(), to_dir, to.as_ptr(), 0) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: as above.
        unsafe { libc::unlinkat(from_dir, from.as_ptr(), 0) };
        return Ok(());
    }
    Err(error)
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
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no file name"))?;
    let parent = match to.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let dir = std::fs::File::open(parent)?;
    copy_into_dir(dir.as_raw_fd(), &c_path(Path::new(name))?, from, replace)
}

/// [`copy_into_place`] into the folder open as `dir`, under `name`: the temp file is this copy's
/// own (created exclusively, so two copies to one name never write into one file).
pub fn copy_into_dir(dir: RawFd, name: &CStr, from: &Path, replace: bool) -> io::Result<u64> {
    use std::os::fd::FromRawFd;
    static COPIES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COPIES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut temp = b".".to_vec();
    temp.extend_from_slice(name.to_bytes());
    temp.extend_from_slice(format!(".{}-{n}.ferry-copy", std::process::id()).as_bytes());
    let temp = std::ffi::CString::new(temp)?;
    // SAFETY: valid descriptor and NUL-terminated name; the result is checked.
    let fd = unsafe {
        libc::openat(
            dir,
            temp.as_ptr(),
            libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            0o644 as libc::c_uint,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh descriptor owned by nobody else.
    let mut out = unsafe { std::fs::File::from_raw_fd(fd) };
    let copied = std::fs::File::open(from)
        .and_then(|mut source| io::copy(&mut source, &mut out))
        .and_then(|n| out.sync_all().map(|()| n))
        .and_then(|n| rename_at(dir, &temp, dir, name, replace).map(|()| n));
    if copied.is_err() {
        // SAFETY: valid descriptor and NUL-terminated name.
        unsafe { libc::unlinkat(dir, temp.as_ptr(), 0) };
    }
    copied
}

/// Why [`read_small_file`] read nothing.
#[derive(Debug)]
pub enum SmallFileError {
    Io(io::Error),
    /// Not a regular file: a folder, a named pipe (which would block the reader), a device…
    NotRegular(&'static str),
    /// Larger than the caller's cap: its size.
    TooLarge(u64),
}

/// Reads a small text file that a user or a crash may have replaced with anything: only a
/// regular file (opened without blocking, so a FIFO cannot hang the reader), at most `max`
/// bytes, and without following a symlink unless `follow_links`. Makes it private (0600) if it
/// was not: what Ferry reads of its own may hold URLs, headers and paths.
pub fn read_small_file(
    path: &Path,
    max: u64,
    follow_links: bool,
) -> Result<String, SmallFileError> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let no_follow = if follow_links { 0 } else { libc::O_NOFOLLOW };
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | no_follow)
        .open(path)
        .map_err(SmallFileError::Io)?;
    let meta = file.metadata().map_err(SmallFileError::Io)?;
    if !meta.file_type().is_file() {
        return Err(SmallFileError::NotRegular(kind_of(&meta.file_type())));
    }
    if meta.len() > max {
        return Err(SmallFileError::TooLarge(meta.len()));
    }
    if let Err(e) = private_file(&file) {
        tracing::warn!(file = %path.display(), "cannot make the file private: {e}");
    }
    let mut text = String::new();
    file.take(max.saturating_add(1))
        .read_to_string(&mut text)
        .map_err(SmallFileError::Io)?;
    if text.len() as u64 > max {
        return Err(SmallFileError::TooLarge(text.len() as u64)); // it grew meanwhile
    }
    Ok(text)
}

fn kind_of(kind: &std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if kind.is_dir() {
        "folder"
    } else if kind.is_fifo() {
        "named pipe"
    } else if kind.is_socket() {
        "socket"
    } else if kind.is_block_device() || kind.is_char_device() {
        "device"
    } else if kind.is_symlink() {
        "symbolic link"
    } else {
        "special file"
    }
}

/// A user of this machine, as TakeOwnership needs them: who they are and what they may reach.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    pub name: String,
    pub uid: u32,
    pub home: PathBuf,
    /// The primary group and every supplementary group.
    pub groups: Vec<u32>,
}

impl Account {
    /// The user named `name`, from the password and group databases; `None` if there is none.
    pub fn by_name(name: &str) -> Option<Account> {
        use std::os::unix::ffi::OsStrExt;
        let c_name = std::ffi::CString::new(name).ok()?;
        let mut buffer = vec![0u8; 16 * 1024];
        // SAFETY: passwd is plain data; getpwnam_r writes into it and into buffer, whose size we
        // pass.
        let mut passwd: libc::passwd = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        let rc = unsafe {
            libc::getpwnam_r(
                c_name.as_ptr(),
                &mut passwd,
                buffer.as_mut_ptr().cast(),
                buffer.len(),
                &mut result,
            )
        };
        if rc != 0 || result.is_null() || passwd.pw_dir.is_null() {
            return None;
        }
        // SAFETY: on success pw_dir points to a NUL-terminated string inside buffer.
        let home = unsafe { CStr::from_ptr(passwd.pw_dir) };
        let home = PathBuf::from(std::ffi::OsStr::from_bytes(home.to_bytes()));
        let (uid, gid) = (passwd.pw_uid, passwd.pw_gid);
        let mut groups = vec![0 as libc::gid_t; 64];
        loop {
            let mut count = groups.len() as libc::c_int;
            // SAFETY: groups has room for `count` entries; getgrouplist says how many it needs.
            let rc = unsafe {
                libc::getgrouplist(c_name.as_ptr(), gid, groups.as_mut_ptr(), &mut count)
            };
            let count = usize::try_from(count).unwrap_or(0);
            if rc >= 0 {
                groups.truncate(count);
                break;
            }
            if count <= groups.len() || count > 65_536 {
                groups = vec![gid];
                break;
            }
            groups.resize(count, 0);
        }
        if !groups.contains(&gid) {
            groups.push(gid);
        }
        Some(Account {
            name: name.to_string(),
            uid,
            home,
            groups,
        })
    }

    /// Whether this user may `access` `path` by its mode bits and those of the folders on the
    /// way (each must let them search it), symbolic links resolved first. Root's service asks
    /// this of every file of a job it takes over: the job file was the user's to write, so a
    /// path in it may be one the user could never have used themselves.
    pub fn may(&self, access: Access, path: &Path) -> bool {
        use std::os::unix::fs::MetadataExt;
        let Ok(path) = std::fs::canonicalize(path) else {
            return false;
        };
        let allows = |meta: &std::fs::Metadata, bits: u32| {
            let mode = meta.mode();
            let granted = if meta.uid() == self.uid {
                mode >> 6
            } else if self.groups.contains(&meta.gid()) {
                mode >> 3
            } else {
                mode
            };
            granted & bits == bits
        };
        for folder in path.ancestors().skip(1) {
            match std::fs::metadata(folder) {
                Ok(meta) if allows(&meta, 0o1) => {}
                _ => return false,
            }
        }
        let bits = match access {
            Access::Read => 0o4,
            Access::WriteInFolder => 0o3,
        };
        std::fs::metadata(&path).is_ok_and(|meta| allows(&meta, bits))
    }
}

/// What [`Account::may`] checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Read the file.
    Read,
    /// Create and rename files in the folder (write and search).
    WriteInFolder,
}
