//! Opening and placing files *beneath* the served folder, by file descriptor: the path checks of
//! `paths.rs` happen before the open, so a symlink swapped in between could still lead out of
//! the folder. Here the kernel resolves the path relative to the folder's descriptor and refuses
//! any step out of it (`openat2` with `RESOLVE_BENEATH`; on kernels without it, a walk that
//! follows no symlink at all).

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path};

/// The served folder, held open.
#[derive(Debug)]
pub struct Root {
    dir: OwnedFd,
}

impl Root {
    pub fn open(path: &Path) -> io::Result<Root> {
        let dir = File::open(path)?;
        if !dir.metadata()?.is_dir() {
            return Err(io::Error::other(format!(
                "{} is not a folder",
                path.display()
            )));
        }
        Ok(Root { dir: dir.into() })
    }

    /// Opens `relative` (a path inside the folder) for reading, without blocking on a FIFO and
    /// without following any link out of the folder.
    pub fn open_read(&self, relative: &Path) -> io::Result<File> {
        let fd = open_beneath(
            self.dir.as_raw_fd(),
            relative,
            libc::O_RDONLY | libc::O_NONBLOCK,
            0,
        )?;
        Ok(File::from(fd))
    }

    /// The folder that holds `relative`, opened beneath the root, and the file's name in it.
    fn parent_of(&self, relative: &Path) -> io::Result<(OwnedFd, CString)> {
        let name = relative
            .file_name()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no file name"))?;
        let name = CString::new(name.as_bytes())?;
        let parent = relative.parent().unwrap_or(Path::new(""));
        let dir = if parent.as_os_str().is_empty() {
            // SAFETY: F_DUPFD_CLOEXEC on a valid descriptor returns a new descriptor we own.
            let fd = unsafe { libc::fcntl(self.dir.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 0) };
            if fd < 0 {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: fd is a fresh descriptor owned by nobody else.
            unsafe { OwnedFd::from_raw_fd(fd) }
        } else {
            open_beneath(
                self.dir.as_raw_fd(),
                parent,
                libc::O_RDONLY | libc::O_DIRECTORY,
                0,
            )?
        };
        Ok((dir, name))
    }

    /// Moves the file at `from` (outside the served tree's paths: Ferry's own session folder) to
    /// `relative` inside the folder, without replacing unless `replace`.
    pub fn rename_into(&self, from: &Path, relative: &Path, replace: bool) -> io::Result<()> {
        let (dir, name) = self.parent_of(relative)?;
        let from = CString::new(from.as_os_str().as_bytes())?;
        crate::platform::rename_at(libc::AT_FDCWD, &from, dir.as_raw_fd(), &name, replace)
    }

    /// Copies the file at `from` to `relative` inside the folder through a hidden temp file
    /// beside it (flushed, then renamed), so the destination never holds half a copy.
    pub fn copy_into(&self, from: &Path, relative: &Path, replace: bool) -> io::Result<u64> {
        let (dir, name) = self.parent_of(relative)?;
        crate::platform::copy_into_dir(dir.as_raw_fd(), &name, from, replace)
    }
}

/// `openat2(dir, path, RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS)`, or the no-symlink walk.
fn open_beneath(dir: RawFd, relative: &Path, flags: libc::c_int, mode: u32) -> io::Result<OwnedFd> {
    if relative
        .components()
        .any(|c| !matches!(c, Component::Normal(_)))
    {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            "the path leads outside the served folder",
        ));
    }
    let c_path = CString::new(relative.as_os_str().as_bytes())?;
    // SAFETY: open_how is plain data; zeroed is its documented initial value.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (flags | libc::O_CLOEXEC) as u64;
    how.mode = u64::from(mode);
    how.resolve = libc::RESOLVE_BENEATH | libc::RESOLVE_NO_MAGICLINKS;
    // SAFETY: valid descriptor, NUL-terminated path, and a correctly sized open_how.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            dir,
            c_path.as_ptr(),
            &how as *const libc::open_how,
            std::mem::size_of::<libc::open_how>(),
        )
    };
    if fd >= 0 {
        // SAFETY: a fresh descriptor owned by nobody else.
        return Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) });
    }
    let error = io::Error::last_os_error();
    match error.raw_os_error() {
        Some(libc::ENOSYS) | Some(libc::EPERM) => walk_without_links(dir, relative, flags, mode),
        Some(libc::EXDEV) | Some(libc::ELOOP) => Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            "the path leads outside the served folder",
        )),
        _ => Err(error),
    }
}

/// Kernels without openat2 (or a seccomp filter refusing it): one component at a time, no
/// symlink followed anywhere.
fn walk_without_links(
    dir: RawFd,
    relative: &Path,
    flags: libc::c_int,
    mode: u32,
) -> io::Result<OwnedFd> {
    let parts: Vec<&std::ffi::OsStr> = relative.iter().collect();
    let mut current: Option<OwnedFd> = None;
    for (i, part) in parts.iter().enumerate() {
        let last = i + 1 == parts.len();
        let name = CString::new(part.as_bytes())?;
        let at = current.as_ref().map_or(dir, AsRawFd::as_raw_fd);
        let step_flags = if last {
            flags | libc::O_NOFOLLOW | libc::O_CLOEXEC
        } else {
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC
        };
        // SAFETY: valid descriptor and NUL-terminated name; the result is checked.
        let fd = unsafe { libc::openat(at, name.as_ptr(), step_flags, mode as libc::c_uint) };
        if fd < 0 {
            let error = io::Error::last_os_error();
            return Err(match error.raw_os_error() {
                Some(libc::ELOOP) | Some(libc::ENOTDIR) => io::Error::new(
                    io::ErrorKind::PermissionDenied,
                    "the path goes through a symbolic link",
                ),
                _ => error,
            });
        }
        // SAFETY: a fresh descriptor owned by nobody else.
        current = Some(unsafe { OwnedFd::from_raw_fd(fd) });
    }
    current.ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "an empty path"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_out_of_the_folder_are_refused_and_links_inside_work() {
        let outside = tempfile::tempdir().expect("outside");
        std::fs::write(outside.path().join("secret"), "secret").expect("secret");
        let served = tempfile::tempdir().expect("served");
        std::fs::create_dir(served.path().join("sub")).expect("sub");
        std::fs::write(served.path().join("sub").join("file"), "inside").expect("file");
        std::os::unix::fs::symlink(outside.path(), served.path().join("out")).expect("link");
        std::os::unix::fs::symlink("sub", served.path().join("alias")).expect("link");
        let root = Root::open(served.path()).expect("root");
        let read = |p: &str| {
            root.open_read(Path::new(p)).and_then(|mut f| {
                let mut text = String::new();
                io::Read::read_to_string(&mut f, &mut text).map(|_| text)
            })
        };
        assert_eq!(read("sub/file").expect("inside"), "inside");
        assert_eq!(read("alias/file").expect("link inside"), "inside");
        let refused = read("out/secret").expect_err("link out");
        assert_eq!(refused.kind(), io::ErrorKind::PermissionDenied, "{refused}");
        assert!(read("../secret").is_err());
        // The same walk without openat2 refuses every link.
        let fd = walk_without_links(
            root.dir.as_raw_fd(),
            Path::new("out/secret"),
            libc::O_RDONLY,
            0,
        );
        assert!(fd.is_err());
        // Placing a file: into a folder inside, never through a link out.
        let part = outside.path().join("part");
        std::fs::write(&part, "data").expect("part");
        let escaped = root.rename_into(&part, Path::new("out/placed"), false);
        assert!(escaped.is_err());
        assert!(!outside.path().join("placed").exists());
        root.rename_into(&part, Path::new("sub/placed"), false)
            .expect("rename inside");
        assert_eq!(
            std::fs::read_to_string(served.path().join("sub/placed")).expect("placed"),
            "data"
        );
        let copied = root
            .copy_into(
                &served.path().join("sub/placed"),
                Path::new("sub/copy"),
                false,
            )
            .expect("copy");
        assert_eq!(copied, 4);
        assert!(
            root.copy_into(
                &served.path().join("sub/placed"),
                Path::new("sub/copy"),
                false
            )
            .is_err(),
            "never over an existing file"
        );
    }
}
