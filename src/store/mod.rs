//! Crash-safe persistence of jobs: one RON file per job, so that the cost of a save grows with what
//! changed, not with the number of jobs.
//!
//! Every save writes a temp file, fsyncs it, renames it over the old file and fsyncs the directory:
//! after a crash a job file is either the old or the new version, never a mix. A file that cannot
//! be read is moved to `quarantine/` and reported; the other jobs load. One engine per data
//! directory: [`Store::open`] takes an exclusive lock on `lock`.

use crate::job::{Job, JobId};
use serde::{Deserialize, Serialize};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Version of the on-disk record, for later migrations.
const FORMAT: u32 = 1;

#[derive(Serialize, Deserialize)]
struct JobRecord {
    format: u32,
    job: Job,
}

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
    /// Held for the life of the store: the lock is released when the file is closed.
    _lock: File,
}

impl Store {
    /// Opens (creating if needed) the store under `data_dir` and locks it for this process.
    pub fn open(data_dir: &Path) -> Result<Store, StoreError> {
        let jobs_dir = data_dir.join("jobs");
        let quarantine_dir = data_dir.join("quarantine");
        for dir in [data_dir, &jobs_dir, &quarantine_dir] {
            fs::create_dir_all(dir).map_err(io_err(dir))?;
        }
        let lock_path = data_dir.join("lock");
        let mut lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&lock_path)
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
        let moved_to = self.quarantine_dir.join(format!("{name}.{stamp}"));
        fs::rename(path, &moved_to).map_err(io_err(path))?;
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
        let text = ron::ser::to_string_pretty(&record, ron::ser::PrettyConfig::default()).map_err(
            |e| StoreError::Io {
                path: self.path_of(job.id),
                source: io::Error::other(e.to_string()),
            },
        )?;
        let path = self.path_of(job.id);
        write_atomically(&path, text.as_bytes()).map_err(io_err(&path))
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

fn read_job(path: &Path) -> Result<Job, String> {
    let text = fs::read_to_string(path).map_err(|e| format!("unreadable: {e}"))?;
    let record: JobRecord =
        ron::from_str(&text).map_err(|e| format!("not a valid job record: {e}"))?;
    if record.format != FORMAT {
        return Err(format!(
            "record format {} is not supported (expected {FORMAT})",
            record.format
        ));
    }
    let expected = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    if record.job.id.0.to_string() != expected {
        return Err(format!(
            "the file name does not match the job id {}",
            record.job.id
        ));
    }
    Ok(record.job)
}

/// Replaces `path` with `bytes` whole or not at all: a temp file beside it (`NAME.tmp`), fsync,
/// rename over `path`, fsync of the directory. A crash leaves the old file or the new one.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| io::Error::other("the path has no folder"))?;
    let mut temp_name = path.file_name().unwrap_or_default().to_os_string();
    temp_name.push(".tmp");
    let temp = dir.join(temp_name);
    let mut file = File::create(&temp)?;
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
}
