//! TakeOwnership (spec §9) in the stores: a job moves from a user's store into root's, never in
//! both and never in neither, even across a crash.
//!
//! The stores may be on different file systems, so no single rename can move a job. The move
//! has one commit point instead, a rename inside the user's store: `jobs/ID.ron` becomes
//! `jobs/ID.handed-over`, which the user's service never loads. Before it, root's store holds a
//! journal entry (`moves/ID.ron`: whose store, which job); after it, root's service copies the
//! job into its own store, deletes the handed-over file, and the journal entry last. A start of
//! root's service finishes every move its journal names: the job is root's if root's store or
//! the handed-over file has it, else the user's (the commit never happened).
//!
//! The user's store is read and changed by root, so nothing in it is trusted: every folder and
//! file must be the user's (a link the user planted cannot lead root elsewhere), files are read
//! through folder descriptors opened without following links, and sizes are capped.

use super::{MAX_JOB_FILE, Store, StoreError, io_err, parse_job, sync_dir, write_ron};
use crate::job::{Job, JobId};
use serde::{Deserialize, Serialize};
use std::ffi::CString;
use std::fs::{self, File};
use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// The name a job file has once handed over: not `*.ron`, so the user's service does not load it.
pub const HANDED_OVER: &str = "handed-over";

/// A move in progress, in the taker's journal.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MoveRecord {
    pub id: JobId,
    pub from_uid: u32,
    pub from_user: String,
    /// The data directory of the user's store.
    pub from_data_dir: PathBuf,
}

/// The largest journal entry read.
const MAX_MOVE_RECORD: u64 = 64 * 1024;

impl Store {
    fn move_path(&self, id: JobId) -> PathBuf {
        self.moves_dir.join(format!("{}.ron", id.0))
    }

    /// Writes the journal entry of a move, durably, before the job is handed over.
    pub fn begin_move(&self, record: &MoveRecord) -> Result<(), StoreError> {
        write_ron(&self.move_path(record.id), ron::to_string(record))
    }

    /// Deletes the journal entry of a finished (or abandoned) move.
    pub fn end_move(&self, id: JobId) -> Result<(), StoreError> {
        let path = self.move_path(id);
        match fs::remove_file(&path) {
            Ok(()) => sync_dir(&self.moves_dir).map_err(io_err(&self.moves_dir)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StoreError::Io { path, source: e }),
        }
    }

    /// The moves the journal names. An entry that cannot be read is quarantined (it names no
    /// job that could be found again) and left out.
    pub fn moves(&self) -> Result<Vec<MoveRecord>, StoreError> {
        let mut moves = Vec::new();
        for entry in fs::read_dir(&self.moves_dir).map_err(io_err(&self.moves_dir))? {
            let path = entry.map_err(io_err(&self.moves_dir))?.path();
            if path.extension().is_none_or(|e| e != "ron") {
                let _ = fs::remove_file(&path); // a temp file of a cut write
                continue;
            }
            let read = crate::platform::read_small_file(&path, MAX_MOVE_RECORD, false)
                .map_err(|e| format!("{e:?}"))
                .and_then(|text| ron::from_str::<MoveRecord>(&text).map_err(|e| e.to_string()));
            match read {
                Ok(record) => moves.push(record),
                Err(reason) => {
                    self.quarantine(&path, format!("not a move record: {reason}"))?;
                }
            }
        }
        Ok(moves)
    }

    /// Whether job `id` was handed over from this store.
    pub fn is_handed_over(&self, id: JobId) -> bool {
        fs::symlink_metadata(self.jobs_dir.join(format!("{}.{HANDED_OVER}", id.0))).is_ok()
    }

    /// The commit point of a move, in the giving store: the job's file is renamed out of the
    /// jobs this store loads. Done again after a crash, it finds the job already handed over.
    pub fn hand_over(&self, id: JobId) -> Result<(), StoreError> {
        let from = self.path_of(id);
        let to = self.jobs_dir.join(format!("{}.{HANDED_OVER}", id.0));
        match crate::platform::rename_into_place(&from, &to, false) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound && to.exists() => return Ok(()),
            Err(e) => {
                return Err(StoreError::Io {
                    path: from,
                    source: e,
                });
            }
        }
        sync_dir(&self.jobs_dir).map_err(io_err(&self.jobs_dir))
    }
}

/// Another user's store, as root's service reaches it: only through folders that user owns.
pub struct UsersStore {
    data_dir: PathBuf,
    uid: u32,
    jobs: OwnedFd,
    data: OwnedFd,
}

fn c_name(name: &str) -> io::Result<CString> {
    CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
}

/// Opens `name` in the folder `dir` without following a link, with `flags`.
fn open_at(dir: i32, name: &str, flags: i32) -> io::Result<OwnedFd> {
    let name = c_name(name)?;
    // SAFETY: a valid descriptor (or AT_FDCWD) and a NUL-terminated name.
    let fd = unsafe {
        libc::openat(
            dir,
            name.as_ptr(),
            flags | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn owner_of(fd: &OwnedFd) -> io::Result<fs::Metadata> {
    File::from(fd.try_clone()?).metadata()
}

impl UsersStore {
    /// The store in `data_dir`, if it and its `jobs` folder are folders of `uid`'s.
    pub fn open(data_dir: &Path, uid: u32) -> Result<UsersStore, String> {
        let not_theirs = |what: &Path, why: String| {
            format!(
                "{} is not a Ferry store of uid {uid}'s: {why}",
                what.display()
            )
        };
        let path = data_dir
            .to_str()
            .ok_or_else(|| not_theirs(data_dir, "not a UTF-8 path".into()))?;
        let directory = libc::O_RDONLY | libc::O_DIRECTORY;
        let data = open_at(libc::AT_FDCWD, path, directory)
            .map_err(|e| not_theirs(data_dir, e.to_string()))?;
        let jobs = open_at(data.as_raw_fd(), "jobs", directory)
            .map_err(|e| not_theirs(data_dir, e.to_string()))?;
        for (fd, what) in [
            (&data, data_dir.to_path_buf()),
            (&jobs, data_dir.join("jobs")),
        ] {
            let meta = owner_of(fd).map_err(|e| not_theirs(&what, e.to_string()))?;
            if meta.uid() != uid {
                return Err(not_theirs(
                    &what,
                    format!("it belongs to uid {}", meta.uid()),
                ));
            }
        }
        Ok(UsersStore {
            data_dir: data_dir.to_path_buf(),
            uid,
            jobs,
            data,
        })
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Takes the store's lock if no service holds it: `None` when one does (it must be asked to
    /// hand the job over itself). Held, it keeps a service from starting on the store.
    pub fn lock_if_idle(&self) -> io::Result<Option<File>> {
        let fd = open_at(
            self.data.as_raw_fd(),
            "lock",
            libc::O_RDONLY | libc::O_NONBLOCK,
        );
        // No lock file: no service ever opened this store, so it is not one.
        let file = File::from(fd?);
        match file.try_lock() {
            Ok(()) => Ok(Some(file)),
            Err(fs::TryLockError::WouldBlock) => Ok(None),
            Err(fs::TryLockError::Error(e)) => Err(e),
        }
    }

    fn name(id: JobId, handed_over: bool) -> String {
        if handed_over {
            format!("{}.{HANDED_OVER}", id.0)
        } else {
            format!("{}.ron", id.0)
        }
    }

    /// Whether the store has job `id` in the queue (`handed_over` false) or handed over.
    pub fn has(&self, id: JobId, handed_over: bool) -> bool {
        let name = Self::name(id, handed_over);
        c_name(&name).is_ok_and(|name| {
            // SAFETY: a valid descriptor and a NUL-terminated name; `stat` is plain data.
            let mut stat: libc::stat = unsafe { std::mem::zeroed() };
            let rc = unsafe {
                libc::fstatat(
                    self.jobs.as_raw_fd(),
                    name.as_ptr(),
                    &mut stat,
                    libc::AT_SYMLINK_NOFOLLOW,
                )
            };
            rc == 0
        })
    }

    /// Reads job `id` (in the queue, or handed over): a regular file of the user's, at most
    /// [`MAX_JOB_FILE`] bytes, a valid record of that job.
    pub fn read(&self, id: JobId, handed_over: bool) -> Result<Job, String> {
        let name = Self::name(id, handed_over);
        let file = open_at(
            self.jobs.as_raw_fd(),
            &name,
            libc::O_RDONLY | libc::O_NONBLOCK,
        )
        .map(File::from)
        .map_err(|e| format!("cannot read {name}: {e}"))?;
        let meta = file
            .metadata()
            .map_err(|e| format!("cannot read {name}: {e}"))?;
        if !meta.is_file() || meta.uid() != self.uid || meta.len() > MAX_JOB_FILE {
            return Err(format!(
                "{name} is not a job file of uid {}'s (a regular file of at most {} MiB)",
                self.uid,
                MAX_JOB_FILE >> 20
            ));
        }
        let mut text = String::new();
        file.take(MAX_JOB_FILE)
            .read_to_string(&mut text)
            .map_err(|e| format!("cannot read {name}: {e}"))?;
        parse_job(&text, &id.0.to_string())
    }

    /// Every job of the store, in the queue or handed over (to name one on the command line
    /// while the user's service is not running). Files that cannot be read are left out.
    pub fn jobs(&self) -> Vec<Job> {
        let Ok(dup) = open_at(
            self.jobs.as_raw_fd(),
            ".",
            libc::O_RDONLY | libc::O_DIRECTORY,
        ) else {
            return Vec::new();
        };
        let path = PathBuf::from(format!("/proc/self/fd/{}", dup.as_raw_fd()));
        let Ok(entries) = fs::read_dir(&path) else {
            return Vec::new();
        };
        let mut jobs = Vec::new();
        for entry in entries.filter_map(Result::ok) {
            let name = entry.file_name().to_string_lossy().into_owned();
            let (stem, handed_over) = match name.rsplit_once('.') {
                Some((stem, "ron")) => (stem.to_string(), false),
                Some((stem, HANDED_OVER)) => (stem.to_string(), true),
                _ => continue,
            };
            if let Some(id) = JobId::parse(&stem)
                && let Ok(job) = self.read(id, handed_over)
            {
                jobs.push(job);
            }
        }
        jobs.sort_by_key(|j| (j.times.created, j.id));
        jobs
    }

    /// The commit point, done by root while the user's service is not running (the caller holds
    /// the store's lock): see [`Store::hand_over`].
    pub fn hand_over(&self, id: JobId) -> io::Result<()> {
        let (from, to) = (
            c_name(&Self::name(id, false))?,
            c_name(&Self::name(id, true))?,
        );
        let dir = self.jobs.as_raw_fd();
        match crate::platform::rename_at(dir, &from, dir, &to, false) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound && self.has(id, true) => return Ok(()),
            Err(e) => return Err(e),
        }
        self.sync()
    }

    /// Undoes a hand-over whose job root refused after all: the job is the user's again (their
    /// service loads it at its next start).
    pub fn give_back(&self, id: JobId) -> io::Result<()> {
        let (from, to) = (
            c_name(&Self::name(id, true))?,
            c_name(&Self::name(id, false))?,
        );
        let dir = self.jobs.as_raw_fd();
        crate::platform::rename_at(dir, &from, dir, &to, false)?;
        self.sync()
    }

    /// Deletes the handed-over file once the job is in root's store.
    pub fn remove_handed_over(&self, id: JobId) -> io::Result<()> {
        let name = c_name(&Self::name(id, true))?;
        // SAFETY: a valid descriptor and a NUL-terminated name.
        if unsafe { libc::unlinkat(self.jobs.as_raw_fd(), name.as_ptr(), 0) } != 0 {
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::NotFound {
                return Err(e);
            }
        }
        self.sync()
    }

    fn sync(&self) -> io::Result<()> {
        // SAFETY: a valid descriptor.
        if unsafe { libc::fsync(self.jobs.as_raw_fd()) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}
