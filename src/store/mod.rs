//! Crash-safe persistence of jobs: one RON file per job, so that the cost of a save grows with what
//! changed, not with the number of jobs.
//!
//! Every save writes a temp file, fsyncs it, renames it over the old file and fsyncs the directory:
//! after a crash a job file is either the old or the new version, never a mix. A file that cannot
//! be read is moved to `quarantine/` and reported; the other jobs load. One engine per data
//! directory: [`Store::open`] takes an exclusive lock on `lock`.

pub mod machine;
pub mod ownership;

use crate::job::{Job, JobId, JobState, JobType, Timestamp};
use serde::{Deserialize, Serialize};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Version of the on-disk record, for later migrations.
const FORMAT: u32 = 1;
/// The largest job file read. The largest legal job (200 files with 2,200-character URLs, 4 KB
/// paths and 500 ranges each, 16 KB of headers) is about 8 MB; anything bigger is not ours.
pub const MAX_JOB_FILE: u64 = 32 << 20;

#[derive(Serialize, Deserialize)]
struct JobRecord {
    format: u32,
    job: Job,
}

/// What the history keeps of a finished job (ACKNOWLEDGED or CANCELLED): enough to find its
/// files and to download them again, nothing secret (URLs carry no credentials).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HistoryEntry {
    pub id: JobId,
    pub name: String,
    pub job_type: JobType,
    pub state: JobState,
    pub created: Timestamp,
    pub finished: Timestamp,
    pub bytes: u64,
    pub files: Vec<HistoryFile>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HistoryFile {
    pub remote_url: String,
    pub local_path: PathBuf,
}

impl HistoryEntry {
    pub fn of(job: &Job, finished: Timestamp) -> HistoryEntry {
        HistoryEntry {
            id: job.id,
            name: job.display_name.clone(),
            job_type: job.job_type,
            state: job.state,
            created: job.times.created,
            finished,
            bytes: job.progress().bytes_transferred,
            files: job
                .files
                .iter()
                .map(|f| HistoryFile {
                    remote_url: crate::job::redact_url(&f.remote_url),
                    local_path: f.local_path.clone(),
                })
                .collect(),
        }
    }
}

/// Writes serialized RON to `path` crash-safely; a serialization error is reported as the path's.
fn write_ron(path: &Path, text: Result<String, ron::Error>) -> Result<(), StoreError> {
    let text = text.map_err(|e| StoreError::Io {
        path: path.to_path_buf(),
        source: io::Error::other(e.to_string()),
    })?;
    write_atomically(path, text.as_bytes()).map_err(io_err(path))
}

/// The history keeps this many finished jobs; older entries are deleted.
pub const HISTORY_KEPT: usize = 1000;
/// The largest history file read (an entry of a 200-file job is well under this).
const MAX_HISTORY_FILE: u64 = 4 << 20;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "another Ferry engine is already using {dir}{holder}. Stop it first, or use another data \
         directory (FERRY_HOME)."
    )]
    Locked { dir: PathBuf, holder: String },
    #[error("cannot use the data directory {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A job file that could not be loaded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Quarantined {
    pub original: PathBuf,
    pub moved_to: PathBuf,
    pub reason: String,
}

#[derive(Debug)]
pub struct Store {
    jobs_dir: PathBuf,
    quarantine_dir: PathBuf,
    history_dir: PathBuf,
    /// The journal of TakeOwnership moves into this store (`ownership.rs`).
    moves_dir: PathBuf,
    /// Held for the life of the store: the lock is released when the file is closed.
    _lock: File,
}

impl Store {
    /// Opens (creating if needed) the store under `data_dir` and locks it for this process.
    pub fn open(data_dir: &Path) -> Result<Store, StoreError> {
        let jobs_dir = data_dir.join("jobs");
        let quarantine_dir = data_dir.join("quarantine");
        let history_dir = data_dir.join("history");
        let moves_dir = data_dir.join("moves");
        // Private whatever the umask or an earlier mode: job files hold URLs and custom headers.
        for dir in [
            data_dir,
            &jobs_dir,
            &quarantine_dir,
            &history_dir,
            &moves_dir,
        ] {
            crate::platform::private_dir(dir).map_err(io_err(dir))?;
        }
        let lock_path = data_dir.join("lock");
        let mut lock = crate::platform::open_private(
            &lock_path,
            OpenOptions::new()
                .create(true)
                .truncate(false)
                .read(true)
                .write(true),
        )
        .map_err(io_err(&lock_path))?;
        if let Err(e) = lock.try_lock() {
            if let fs::TryLockError::Error(source) = e {
                return Err(StoreError::Io {
                    path: lock_path,
                    source,
                });
            }
            let holder = fs::read_to_string(&lock_path)
                .ok()
                .map(|pid| pid.trim().to_string())
                .filter(|pid| !pid.is_empty())
                .map(|pid| format!(" (process {pid})"))
                .unwrap_or_default();
            return Err(StoreError::Locked {
                dir: data_dir.to_path_buf(),
                holder,
            });
        }
        lock.set_len(0).map_err(io_err(&lock_path))?;
        write!(lock, "{}", std::process::id()).map_err(io_err(&lock_path))?;
        Ok(Store {
            jobs_dir,
            quarantine_dir,
            history_dir,
            moves_dir,
            _lock: lock,
        })
    }

    fn path_of(&self, id: JobId) -> PathBuf {
        self.jobs_dir.join(format!("{}.ron", id.0))
    }

    /// Loads every job; damaged files are quarantined and reported, leftovers of interrupted
    /// saves are removed.
    pub fn load(&self) -> Result<(Vec<Job>, Vec<Quarantined>), StoreError> {
        let mut jobs = Vec::new();
        let mut quarantined = Vec::new();
        let entries = fs::read_dir(&self.jobs_dir).map_err(io_err(&self.jobs_dir))?;
        for entry in entries {
            let path = entry.map_err(io_err(&self.jobs_dir))?.path();
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            if name.ends_with(".tmp") {
                // A save that never reached its rename: the previous version is still in place.
                let _ = fs::remove_file(&path);
                continue;
            }
            if !name.ends_with(".ron") {
                continue;
            }
            match read_job(&path) {
                Ok(job) => jobs.push(job),
                Err(reason) => quarantined.push(self.quarantine(&path, reason)?),
            }
        }
        jobs.sort_by_key(|j| (j.times.created, j.id));
        Ok((jobs, quarantined))
    }

    fn quarantine(&self, path: &Path, reason: String) -> Result<Quarantined, StoreError> {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S");
        // Never over an earlier copy: two quarantines of one file within a second get .1, .2, …
        let mut moved_to = self.quarantine_dir.join(format!("{name}.{stamp}"));
        let mut n = 0u32;
        loop {
            match crate::platform::rename_into_place(path, &moved_to, false) {
                Ok(()) => break,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && n < 10_000 => {
                    n += 1;
                    moved_to = self.quarantine_dir.join(format!("{name}.{stamp}.{n}"));
                }
                Err(e) => {
                    return Err(StoreError::Io {
                        path: path.to_path_buf(),
                        source: e,
                    });
                }
            }
        }
        sync_dir(&self.jobs_dir).map_err(io_err(&self.jobs_dir))?;
        tracing::warn!(file = %path.display(), to = %moved_to.display(), %reason, "damaged job file quarantined");
        Ok(Quarantined {
            original: path.to_path_buf(),
            moved_to,
            reason,
        })
    }

    /// Writes `job` atomically and durably.
    pub fn save(&self, job: &Job) -> Result<(), StoreError> {
        let mut stored = job.clone();
        // Credentials never reach the disk; remember that the job had some.
        if stored.credentials.server.is_some() {
            stored.credentials_dropped = true;
        }
        let record = JobRecord {
            format: FORMAT,
            job: stored,
        };
        let text = ron::ser::to_string_pretty(&record, ron::ser::PrettyConfig::default());
        write_ron(&self.path_of(job.id), text)
    }

    /// The history, oldest first, at most [`HISTORY_KEPT`] entries (older files are deleted). A
    /// damaged entry is skipped and deleted: it is a record, not a job, and nothing depends on it.
    pub fn load_history(&self) -> Result<Vec<HistoryEntry>, StoreError> {
        let mut entries = Vec::new();
        let dir = fs::read_dir(&self.history_dir).map_err(io_err(&self.history_dir))?;
        for entry in dir {
            let path = entry.map_err(io_err(&self.history_dir))?.path();
            if path.extension().is_none_or(|e| e != "ron") {
                let _ = fs::remove_file(&path); // a temp file of a cut write
                continue;
            }
            let read = crate::platform::read_small_file(&path, MAX_HISTORY_FILE, false)
                .map_err(|_| ())
                .and_then(|text| ron::from_str::<HistoryEntry>(&text).map_err(|_| ()));
            match read {
                Ok(entry) => entries.push(entry),
                Err(()) => {
                    tracing::warn!(file = %path.display(), "damaged history entry deleted");
                    let _ = fs::remove_file(&path);
                }
            }
        }
        entries.sort_by_key(|e| (e.finished, e.id));
        let excess = entries.len().saturating_sub(HISTORY_KEPT);
        for old in entries.drain(..excess) {
            let _ = fs::remove_file(self.history_path(old.id));
        }
        Ok(entries)
    }

    fn history_path(&self, id: JobId) -> PathBuf {
        self.history_dir.join(format!("{}.ron", id.0))
    }

    /// Writes a history entry (atomically; the history is a record, so no directory fsync is
    /// waited for beyond `write_atomically`'s).
    pub fn record(&self, entry: &HistoryEntry) -> Result<(), StoreError> {
        write_ron(&self.history_path(entry.id), ron::to_string(entry))
    }

    /// Deletes history entries (`None`: all of them).
    pub fn forget(&self, ids: Option<&[JobId]>) -> Result<(), StoreError> {
        let paths: Vec<PathBuf> = match ids {
            Some(ids) => ids.iter().map(|id| self.history_path(*id)).collect(),
            None => fs::read_dir(&self.history_dir)
                .map_err(io_err(&self.history_dir))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .collect(),
        };
        for path in paths {
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(StoreError::Io { path, source: e }),
            }
        }
        sync_dir(&self.history_dir).map_err(io_err(&self.history_dir))
    }

    /// Removes a job that reached a final state.
    pub fn remove(&self, id: JobId) -> Result<(), StoreError> {
        let path = self.path_of(id);
        match fs::remove_file(&path) {
            Ok(()) => sync_dir(&self.jobs_dir).map_err(io_err(&self.jobs_dir)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StoreError::Io { path, source: e }),
        }
    }
}

/// Reads a job file: only a regular file (a FIFO or device named `*.ron` must not block the
/// service, which holds the store lock meanwhile), not through a link, at most
/// [`MAX_JOB_FILE`] bytes; made private if it was not.
fn read_job(path: &Path) -> Result<Job, String> {
    use crate::platform::{SmallFileError, read_small_file};
    let text = read_small_file(path, MAX_JOB_FILE, false).map_err(|e| match e {
        SmallFileError::Io(e) => format!("unreadable: {e}"),
        SmallFileError::NotRegular(kind) => {
            format!("not a regular file (a {kind}); job files are plain files")
        }
        SmallFileError::TooLarge(size) => format!(
            "{size} bytes, larger than any job file can be ({} MiB at most)",
            MAX_JOB_FILE >> 20
        ),
    })?;
    let expected = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    parse_job(&text, &expected)
}

/// A job record's text, checked: a supported format, of the job whose id is `expected`.
fn parse_job(text: &str, expected: &str) -> Result<Job, String> {
    let record: JobRecord =
        ron::from_str(text).map_err(|e| format!("not a valid job record: {e}"))?;
    if record.format != FORMAT {
        return Err(format!(
            "record format {} is not supported (expected {FORMAT})",
            record.format
        ));
    }
    if record.job.id.0.to_string() != expected {
        return Err(format!(
            "the file name does not match the job id {}",
            record.job.id
        ));
    }
    Ok(record.job)
}

/// Replaces `path` with `bytes` whole or not at all: a temp file beside it (`NAME.tmp`, 0600),
/// fsync, rename over `path`, fsync of the directory. A crash leaves the old file or the new one.
/// The folder is created if missing and made private (0700).
pub fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| io::Error::other("the path has no folder"))?;
    // Only Ferry's own folders are written this way (jobs, config): made private on the way.
    crate::platform::private_dir(dir)?;
    let mut temp_name = path.file_name().unwrap_or_default().to_os_string();
    temp_name.push(".tmp");
    let temp = dir.join(temp_name);
    let mut file = crate::platform::open_private(
        &temp,
        OpenOptions::new().write(true).create(true).truncate(true),
    )?;
    file.write_all(bytes)?;
    file.sync_all()?;
    fs::rename(&temp, path)?;
    sync_dir(dir)
}

/// fsync a directory so that a rename or removal in it is durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::{AuthScheme, Credentials, JobDefaults, JobType};

    fn job() -> Job {
        Job::new(
            JobId::new_random(),
            JobType::Download,
            "n",
            "alice",
            &JobDefaults::default(),
            chrono::Utc::now(),
        )
        .expect("job")
    }

    #[test]
    fn save_load_round_trip_without_credentials() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let mut with_secret = job();
        with_secret.credentials = Credentials {
            server: Some((AuthScheme::Basic, "u".into(), "secret".into())),
        };
        store.save(&with_secret).expect("save");
        let text = fs::read_to_string(store.path_of(with_secret.id)).expect("read");
        assert!(!text.contains("secret"), "credentials must not be written");
        let (jobs, quarantined) = store.load().expect("load");
        assert!(quarantined.is_empty());
        assert_eq!(jobs.len(), 1);
        assert!(jobs[0].credentials_dropped);
        assert_eq!(jobs[0].credentials, Credentials::default());
        store.remove(with_secret.id).expect("remove");
        assert!(store.load().expect("load").0.is_empty());
    }

    #[test]
    fn damaged_file_is_quarantined_and_others_load() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let good = job();
        store.save(&good).expect("save");
        let bad = dir
            .path()
            .join("jobs")
            .join(format!("{}.ron", uuid::Uuid::new_v4()));
        fs::write(&bad, "(format: 1, job: (id: \"trunc").expect("write");
        fs::write(dir.path().join("jobs").join("x.ron.tmp"), "partial").expect("write");
        let (jobs, quarantined) = store.load().expect("load");
        assert_eq!(jobs.len(), 1);
        assert_eq!(jobs[0].id, good.id);
        assert_eq!(quarantined.len(), 1);
        assert!(quarantined[0].moved_to.exists());
        assert!(!bad.exists());
        assert!(!dir.path().join("jobs").join("x.ron.tmp").exists());
    }

    #[test]
    fn second_store_on_same_directory_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let _first = Store::open(dir.path()).expect("open");
        let err = Store::open(dir.path()).expect_err("locked");
        let message = err.to_string();
        assert!(message.contains("already using"), "{message}");
        assert!(
            message.contains(&std::process::id().to_string()),
            "{message}"
        );
    }

    fn mode(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        fs::metadata(path).expect("metadata").permissions().mode() & 0o777
    }

    /// Defect: job files were 0644 in 0755 folders, readable by every local user.
    #[test]
    fn folders_and_files_are_private_whatever_they_were() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        fs::create_dir_all(data.join("jobs")).expect("dirs");
        for folder in [&data, &data.join("jobs")] {
            fs::set_permissions(folder, fs::Permissions::from_mode(0o755)).expect("chmod");
        }
        let old = job();
        let old_path = data.join("jobs").join(format!("{}.ron", old.id.0));
        {
            let store = Store::open(&data).expect("open");
            store.save(&old).expect("save");
        }
        fs::set_permissions(&old_path, fs::Permissions::from_mode(0o644)).expect("chmod");
        let store = Store::open(&data).expect("open");
        for folder in ["", "jobs", "quarantine"] {
            assert_eq!(mode(&data.join(folder)), 0o700, "{folder:?}");
        }
        assert_eq!(mode(&data.join("lock")), 0o600);
        store.load().expect("load");
        assert_eq!(
            mode(&old_path),
            0o600,
            "an old 0644 job file is made private"
        );
        let new = job();
        store.save(&new).expect("save");
        assert_eq!(mode(&store.path_of(new.id)), 0o600);
    }

    /// Defect: a FIFO named `*.ron` hung the service at start; a huge file was read whole.
    #[test]
    fn only_regular_files_of_sane_size_are_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let jobs = dir.path().join("jobs");
        let fifo = jobs.join(format!("{}.ron", uuid::Uuid::new_v4()));
        let c_path = std::ffi::CString::new(fifo.to_string_lossy().as_bytes()).expect("path");
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
        let huge = jobs.join(format!("{}.ron", uuid::Uuid::new_v4()));
        fs::File::create(&huge)
            .and_then(|f| f.set_len(MAX_JOB_FILE + 1))
            .expect("huge file");
        let link = jobs.join(format!("{}.ron", uuid::Uuid::new_v4()));
        std::os::unix::fs::symlink("/etc/passwd", &link).expect("symlink");
        let good = job();
        store.save(&good).expect("save");
        let (loaded, quarantined) = store.load().expect("load");
        assert_eq!(loaded.len(), 1);
        let reason_of = |path: &Path| {
            quarantined
                .iter()
                .find(|q| q.original == path)
                .map(|q| q.reason.clone())
                .unwrap_or_else(|| panic!("{} not quarantined", path.display()))
        };
        assert!(
            reason_of(&fifo).contains("named pipe"),
            "{}",
            reason_of(&fifo)
        );
        assert!(
            reason_of(&huge).contains("MiB at most"),
            "{}",
            reason_of(&huge)
        );
        assert!(
            reason_of(&link).contains("unreadable"),
            "{}",
            reason_of(&link)
        );
    }

    /// Defect: two quarantines of one file name within a second overwrote each other.
    #[test]
    fn quarantine_never_overwrites_an_earlier_copy() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let bad = dir
            .path()
            .join("jobs")
            .join(format!("{}.ron", uuid::Uuid::new_v4()));
        let mut copies = Vec::new();
        for n in 0..3 {
            fs::write(&bad, format!("damaged {n}")).expect("write");
            let (_, quarantined) = store.load().expect("load");
            copies.push(quarantined[0].moved_to.clone());
        }
        let contents: Vec<String> = copies
            .iter()
            .map(|p| fs::read_to_string(p).expect("copy kept"))
            .collect();
        assert_eq!(contents, ["damaged 0", "damaged 1", "damaged 2"]);
    }
}
