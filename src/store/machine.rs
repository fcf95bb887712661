//! The machine-wide job count (MaxJobsPerMachine, spec §5), shared by the per-user services.
//!
//! Each user has a service and a store of their own, so no service sees the others' jobs. They
//! meet in a registry directory that root owns (default `/var/lib/ferry/machine`, mode 1777 like
//! `/tmp`: everyone may add a file, no one may remove or replace another's). Each service keeps
//! one record there, a file named `UID.DATA` (its uid, and a hash of its data directory: a user
//! may run services for several), holding how many jobs it has in the queue.
//! A create takes the registry's lock, adds up the other users' records, checks the quota, and
//! writes its own record before the lock is let go, so two users creating at once cannot both
//! take the last slot.
//!
//! What a record cannot do: count for a uid other than its file's owner (a user cannot charge
//! jobs to someone else), or claim, with all of that uid's records, more than the per-user limit
//! (a forged record blocks no more than that user's own jobs would). A record is rewritten from the store each time a service
//! starts, so one left stale by a crash between a job's save and the record's (a job off, at
//! most) heals then; a record of a uid that no longer exists is ignored. No registry (none
//! created yet, or one not owned by root with the sticky bit) means no sharing: the service
//! counts only its own jobs against the machine limit, and says so in its log once.

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Where the registry is unless `FERRY_MACHINE_DIR` says otherwise.
pub const DEFAULT_DIR: &str = "/var/lib/ferry/machine";
const LOCK: &str = "lock";
/// How long a create waits for another service's lock before it counts without it (a user who
/// holds the lock forever must not stop everyone's creates).
const LOCK_PATIENCE: Duration = Duration::from_secs(2);
/// A record is a number, a data directory and a socket path, a line each; anything longer is not
/// one.
const RECORD_MAX: u64 = 16 * 1024;

/// The registry of this machine, as one user's service sees it.
#[derive(Clone, Debug)]
pub struct MachineRegistry {
    dir: PathBuf,
    uid: u32,
    /// This service's record: `UID.DATA`.
    record: String,
    /// Written in the record after the count, so that root can find the service and the store
    /// of a user (TakeOwnership).
    data_dir: PathBuf,
    socket: PathBuf,
}

/// A service a user's record names: where its store and its socket are. Only what the user said;
/// whoever uses it checks that they are the user's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceRecord {
    pub data_dir: PathBuf,
    pub socket: PathBuf,
}

/// The jobs of the other services, counted under the registry's lock, which is held until this
/// is dropped or handed to [`Recorder::publish`].
pub struct Counted {
    /// Jobs of the other users (and of this user's other data directories), each uid capped at
    /// the per-user limit.
    pub elsewhere: u32,
    /// The lock, or `None` when it could not be had in time.
    lock: Option<File>,
}

impl MachineRegistry {
    /// The registry at `FERRY_MACHINE_DIR`, or [`DEFAULT_DIR`].
    pub fn dir_from_env() -> PathBuf {
        std::env::var_os("FERRY_MACHINE_DIR")
            .filter(|d| !d.is_empty())
            .map_or_else(|| PathBuf::from(DEFAULT_DIR), PathBuf::from)
    }

    /// The registry in `dir`, for the service of `uid` on `data_dir` listening on `socket`.
    pub fn at(dir: &Path, uid: u32, data_dir: &Path, socket: &Path) -> MachineRegistry {
        // Stable across runs and builds (FNV-1a of the path's bytes), unlike std's hasher.
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for byte in std::os::unix::ffi::OsStrExt::as_bytes(data_dir.as_os_str()) {
            hash = (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3);
        }
        MachineRegistry {
            dir: dir.to_path_buf(),
            uid,
            record: format!("{uid}.{hash:016x}"),
            data_dir: data_dir.to_path_buf(),
            socket: socket.to_path_buf(),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Checks that the registry can be trusted (root's, sticky, a directory, not a symlink);
    /// root creates it first when it is missing. `Err` says why it is not used.
    pub fn open(&self) -> Result<(), String> {
        if self.uid == 0 && !self.dir.exists() {
            std::fs::create_dir_all(&self.dir)
                .and_then(|()| {
                    std::fs::set_permissions(&self.dir, std::fs::Permissions::from_mode(0o1777))
                })
                .map_err(|e| format!("cannot create {}: {e}", self.dir.display()))?;
        }
        let meta = std::fs::symlink_metadata(&self.dir).map_err(|e| {
            format!(
                "{} cannot be used ({e}); root creates it when its service first starts",
                self.dir.display()
            )
        })?;
        if !meta.is_dir() || meta.uid() != 0 || meta.mode() & 0o1000 == 0 {
            return Err(format!(
                "{} is not a directory of root's with the sticky bit (mode 1777): not trusted; \
                 root can fix it with `chown root: DIR && chmod 1777 DIR`",
                self.dir.display()
            ));
        }
        Ok(())
    }

    /// Takes the lock and counts the other users' jobs (blocking: call off the async threads).
    pub fn count(&self, per_user_cap: u32) -> io::Result<Counted> {
        let lock = self.lock()?;
        let mut per_uid = std::collections::HashMap::<u32, u32>::new();
        for entry in std::fs::read_dir(&self.dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else {
                continue;
            };
            // `UID.DATA`; the lock, temp files (dot first) and anything else are not records.
            let Some(uid) = name
                .split_once('.')
                .and_then(|(uid, data)| (data.len() == 16).then_some(uid))
                .and_then(|uid| uid.parse::<u32>().ok())
            else {
                continue;
            };
            if name == self.record {
                continue;
            }
            if let Some(jobs) = read_record(&entry.path(), uid) {
                let sum = per_uid.entry(uid).or_default();
                *sum = sum.saturating_add(jobs);
            }
        }
        let capped = per_uid.values().map(|&jobs| jobs.min(per_user_cap));
        let elsewhere = capped.fold(0u32, u32::saturating_add);
        Ok(Counted { elsewhere, lock })
    }

    /// Writes this service's record: `jobs` in the queue (temp file and rename; no fsync, as
    /// the next start rewrites it from the store).
    pub fn publish(&self, jobs: usize) -> io::Result<()> {
        let temp = self
            .dir
            .join(format!(".{}.{}", self.record, std::process::id()));
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .custom_flags(libc::O_NOFOLLOW)
            .mode(0o644)
            .open(&temp)?;
        let mut text = format!("{jobs}\n");
        let (data_dir, socket) = (self.data_dir.to_str(), self.socket.to_str());
        if let (Some(data_dir), Some(socket)) = (data_dir, socket)
            && !data_dir.contains('\n')
            && !socket.contains('\n')
        {
            text.push_str(&format!("{data_dir}\n{socket}\n"));
        }
        io::Write::write_all(&mut file, text.as_bytes())?;
        drop(file);
        let renamed = std::fs::rename(&temp, self.dir.join(&self.record));
        if renamed.is_err() {
            let _ = std::fs::remove_file(&temp);
        }
        renamed
    }

    /// The lock file, locked; `None` if another holds it longer than [`LOCK_PATIENCE`].
    fn lock(&self) -> io::Result<Option<File>> {
        let path = self.dir.join(LOCK);
        // Read-only is enough for flock, so a lock file another user created serves too.
        let file = match OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .custom_flags(libc::O_NOFOLLOW)
            .mode(0o644)
            .open(&path)
        {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&path)?,
            Err(e) => return Err(e),
        };
        let deadline = Instant::now() + LOCK_PATIENCE;
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(Some(file)),
                Err(std::fs::TryLockError::WouldBlock) if Instant::now() < deadline => {
                    // Polling, not a blocking flock: a lock held forever must not hang creates.
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(std::fs::TryLockError::WouldBlock) => {
                    tracing::warn!(
                        "the machine registry's lock {} is held for more than {} s: counting \
                         without it",
                        path.display(),
                        LOCK_PATIENCE.as_secs()
                    );
                    return Ok(None);
                }
                Err(std::fs::TryLockError::Error(e)) => return Err(e),
            }
        }
    }
}

/// Writes this service's record on a thread of its own, in the order asked: the actor never
/// waits for the file system, and an older count never lands after a newer one.
pub struct Recorder {
    updates: std::sync::mpsc::Sender<(usize, Option<File>)>,
}

impl Recorder {
    pub fn start(registry: MachineRegistry) -> io::Result<Recorder> {
        let (updates, queue) = std::sync::mpsc::channel::<(usize, Option<File>)>();
        std::thread::Builder::new()
            .name("ferry-machine-record".into())
            .spawn(move || {
                while let Ok((mut jobs, lock)) = queue.recv() {
                    // Only the newest count matters; locks queued meanwhile wait for it.
                    let mut locks = vec![lock];
                    while let Ok((newer, lock)) = queue.try_recv() {
                        jobs = newer;
                        locks.push(lock);
                    }
                    if let Err(e) = registry.publish(jobs) {
                        tracing::warn!(
                            "cannot write the machine registry record in {}: {e}",
                            registry.dir.display()
                        );
                    }
                    drop(locks); // let go once the record is there
                }
            })?;
        Ok(Recorder { updates })
    }

    /// Records `jobs`; `counted`'s lock, if any, is let go once the record is written.
    pub fn publish(&self, jobs: usize, counted: Option<Counted>) {
        let _ = self.updates.send((jobs, counted.and_then(|c| c.lock)));
    }
}

/// The services `uid`'s records name (their data directory and socket), for root to find that
/// user's jobs; records of other owners, and records without the paths, are left out.
pub fn services_of(dir: &Path, uid: u32) -> Vec<ServiceRecord> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let prefix = format!("{uid}.");
    let mut services = Vec::new();
    for entry in entries.filter_map(Result::ok) {
        let name = entry.file_name();
        if !name.to_str().is_some_and(|n| n.starts_with(&prefix)) {
            continue;
        }
        let Some(text) = read_record_text(&entry.path(), uid) else {
            continue;
        };
        let mut lines = text.lines().skip(1);
        if let (Some(data_dir), Some(socket)) = (lines.next(), lines.next())
            && !data_dir.is_empty()
            && !socket.is_empty()
        {
            services.push(ServiceRecord {
                data_dir: PathBuf::from(data_dir),
                socket: PathBuf::from(socket),
            });
        }
    }
    services.sort_by(|a, b| a.data_dir.cmp(&b.data_dir));
    services
}

/// The jobs a record claims, if it is one: a regular file owned by `uid`, whose user exists,
/// holding a number (on its first line).
fn read_record(path: &Path, uid: u32) -> Option<u32> {
    read_record_text(path, uid)?
        .lines()
        .next()?
        .trim()
        .parse()
        .ok()
}

/// The text of a record: a regular file owned by `uid`, whose user exists, not too large.
fn read_record_text(path: &Path, uid: u32) -> Option<String> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .ok()?;
    let meta = file.metadata().ok()?;
    if !meta.is_file() || meta.uid() != uid || meta.len() > RECORD_MAX {
        return None;
    }
    crate::platform::user_name(uid)?;
    let mut text = String::new();
    file.take(RECORD_MAX).read_to_string(&mut text).ok()?;
    Some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry_dir() -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("dir");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o1777))
            .expect("chmod");
        dir
    }

    #[test]
    fn records_add_up_capped_and_only_their_owners_count() {
        let dir = registry_dir();
        // SAFETY: geteuid has no preconditions.
        let me = unsafe { libc::geteuid() };
        let mine = MachineRegistry::at(
            dir.path(),
            me,
            Path::new("/home/me/.local/share/ferry"),
            Path::new("/run/user/1000/ferry/ferry.sock"),
        );
        // A file named for another uid but owned by this one is not that uid's record.
        std::fs::write(dir.path().join("12345.0123456789abcdef"), "40\n").expect("forged");
        std::fs::write(dir.path().join("junk"), "999\n").expect("junk");
        let counted = mine.count(60).expect("count");
        assert_eq!(
            counted.elsewhere, 0,
            "only records owned by their uid count"
        );
        drop(counted);
        mine.publish(3).expect("publish");
        let record = dir.path().join(&mine.record);
        assert_eq!(
            std::fs::read_to_string(&record).expect("record"),
            "3\n/home/me/.local/share/ferry\n/run/user/1000/ferry/ferry.sock\n"
        );
        // This user's other data directory counts, its own record does not.
        let other_home = MachineRegistry::at(
            dir.path(),
            me,
            Path::new("/tmp/portable"),
            Path::new("/tmp/portable/run/ferry.sock"),
        );
        other_home.publish(5).expect("publish");
        assert_eq!(mine.count(60).expect("count").elsewhere, 5);
        assert_eq!(other_home.count(60).expect("count").elsewhere, 3);
        // Root finds this user's services by their records, and no one else's.
        let found = services_of(dir.path(), me);
        assert_eq!(found.len(), 2, "{found:?}");
        assert_eq!(found[1].data_dir, Path::new("/tmp/portable"));
        assert_eq!(found[1].socket, Path::new("/tmp/portable/run/ferry.sock"));
        assert!(services_of(dir.path(), 12345).is_empty());
        // All of a uid's records together are capped at the per-user limit.
        assert_eq!(
            MachineRegistry::at(dir.path(), 4242, dir.path(), dir.path())
                .count(6)
                .expect("count")
                .elsewhere,
            6
        );
        // The recorder writes the newest count, in order.
        let recorder = Recorder::start(mine.clone()).expect("recorder");
        let counted = mine.count(60).expect("count");
        recorder.publish(9, Some(counted));
        recorder.publish(4, None);
        drop(recorder);
        // Its thread ends with the channel; the lock it held is free again when the file is.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !std::fs::read_to_string(&record).is_ok_and(|r| r.starts_with("4\n")) {
            assert!(Instant::now() < deadline, "the recorder wrote nothing");
            std::thread::yield_now();
        }
        assert!(
            mine.count(60).expect("count").lock.is_some(),
            "the lock was let go"
        );
    }

    #[test]
    fn an_untrusted_directory_is_not_used() {
        let dir = tempfile::tempdir().expect("dir");
        let registry = MachineRegistry::at(dir.path(), 1000, dir.path(), dir.path());
        let error = registry.open().expect_err("not sticky");
        assert!(error.contains("not trusted"), "{error}");
        let missing = MachineRegistry::at(&dir.path().join("none"), 1000, dir.path(), dir.path());
        assert!(
            missing
                .open()
                .expect_err("missing")
                .contains("root creates it")
        );
    }
}
