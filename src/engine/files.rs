//! The engine's file operations on behalf of jobs: checks before files are added, Complete's
//! commit (atomic renames that never replace an existing file unless the job allows it), and the
//! deletion of temp files.

use crate::job::{
    BitsError, CommitReport, CompletePlan, ErrorCode, ErrorContext, Job, JobError, NewFile,
};
use std::collections::BTreeSet;
use std::io;
use std::path::{Path, PathBuf};

/// Refuses files whose destination cannot work, before they enter the job.
pub(crate) fn check_new_files(job: &Job, files: &[NewFile]) -> Result<(), BitsError> {
    // The shape first, so that a relative path or a NUL byte gets E_INVALIDARG, not a confusing
    // file system error about an empty folder name.
    for file in files {
        crate::job::check_local_path(&file.local_path)?;
    }
    if job.job_type.is_upload() {
        return check_upload_sources(files);
    }
    // One set of the paths taken (a job may have hundreds of files: no pairwise comparisons).
    let mut taken: std::collections::HashSet<&Path> = job
        .files
        .iter()
        .filter(|f| !f.completed)
        .map(|f| f.local_path.as_path())
        .collect();
    for file in files {
        check_destination(job, &file.local_path)?;
        if !taken.insert(&file.local_path) {
            return Err(BitsError::new(
                ErrorCode::InvalidArg,
                format!(
                    "two files of the job would both be written to {}",
                    file.local_path.display()
                ),
            ));
        }
    }
    Ok(())
}

/// A file the job will write (a download's destination, an upload-reply's reply file): its
/// folder exists and is writable, and nothing is there unless the job may replace it.
pub(crate) fn check_destination(job: &Job, path: &Path) -> Result<(), BitsError> {
    crate::job::check_local_path(path)?;
    let Some(dir) = path.parent() else {
        return Ok(());
    };
    match std::fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => {
            return Err(BitsError::new(
                ErrorCode::PathNotFound,
                format!("{} is not a directory", dir.display()),
            ));
        }
        Err(_) => {
            return Err(BitsError::new(
                ErrorCode::PathNotFound,
                format!(
                    "the destination folder {} does not exist: create it first",
                    dir.display()
                ),
            ));
        }
    }
    if !writable(dir) {
        return Err(BitsError::new(
            ErrorCode::AccessDenied,
            format!("cannot write to {}: check its permissions", dir.display()),
        ));
    }
    match std::fs::symlink_metadata(path) {
        // Even with replacing allowed: a file is never renamed over a folder.
        Ok(meta) if meta.is_dir() => Err(BitsError::new(
            ErrorCode::InvalidArg,
            format!(
                "{} is a folder: give the path of the file to create inside it",
                path.display()
            ),
        )),
        Ok(_) if !job.replace_existing => Err(destination_exists(path)),
        _ => Ok(()),
    }
}

/// An upload's local file is its source: it must be a readable regular file (spec §3.1).
fn check_upload_sources(files: &[NewFile]) -> Result<(), BitsError> {
    for file in files {
        let path = &file.local_path;
        match std::fs::metadata(path) {
            Ok(meta) if meta.is_file() => {}
            Ok(_) => {
                return Err(BitsError::new(
                    ErrorCode::InvalidArg,
                    format!("{} is not a regular file: upload a file", path.display()),
                ));
            }
            Err(e) => {
                return Err(BitsError::new(
                    ErrorCode::PathNotFound,
                    format!("cannot read the file to upload {}: {e}", path.display()),
                ));
            }
        }
        if let Err(e) = std::fs::File::open(path) {
            return Err(BitsError::new(
                ErrorCode::AccessDenied,
                format!("cannot read the file to upload {}: {e}", path.display()),
            ));
        }
    }
    Ok(())
}

fn destination_exists(path: &Path) -> BitsError {
    BitsError::new(
        ErrorCode::FileExists,
        format!(
            "{} already exists: remove or rename it, or allow the job to replace existing files",
            path.display()
        ),
    )
}

fn writable(dir: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c_path) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: c_path is a valid NUL-terminated string for the duration of the call.
    unsafe { libc::access(c_path.as_ptr(), libc::W_OK) == 0 }
}

pub(crate) use crate::platform::{copy_into_place, rename_into_place};

pub(crate) use crate::job::classify_io;

/// Carries out a Complete plan (spec §3.4). Returns the report for the job and whether some
/// temp files could not be deleted (BG_S_UNABLE_TO_DELETE_FILES).
pub(crate) fn commit(job: &Job, plan: &CompletePlan) -> (CommitReport, bool) {
    let mut report = CommitReport::default();
    let mut dirs = BTreeSet::new();
    for &index in &plan.commit {
        let Some(file) = job.file(index) else {
            continue;
        };
        let moved_before = plan.interrupted.contains(&index)
            && !file.temp_path.exists()
            && file.local_path.exists();
        if moved_before {
            report.committed.push(index); // an interrupted Complete already moved it
            continue;
        }
        match rename_into_place(&file.temp_path, &file.local_path, job.replace_existing) {
            Ok(()) => {
                report.committed.push(index);
                if let Some(dir) = file.local_path.parent() {
                    dirs.insert(dir.to_path_buf());
                }
            }
            Err(e) => {
                let (code, _) = classify_io(&e);
                let description = if code == ErrorCode::FileExists {
                    destination_exists(&file.local_path).message
                } else {
                    format!(
                        "cannot move the download to {}: {e}",
                        file.local_path.display()
                    )
                };
                let number = Some(index).filter(|&i| i != crate::job::REPLY_FILE);
                let error = JobError::new(ErrorContext::LocalFile, code, number)
                    .with_description(description);
                report.failed.push((index, error));
            }
        }
    }
    let discard: Vec<PathBuf> = plan
        .discard
        .iter()
        .map(|&i| job.files[i].temp_path.clone())
        .collect();
    let undeletable = !delete_temp_files(&discard);
    for dir in dirs {
        if let Err(e) = crate::store::sync_dir(&dir) {
            tracing::warn!(dir = %dir.display(), "cannot flush the directory: {e}");
        }
    }
    (report, undeletable)
}

/// `base` if no file has that name, else the first free `base-2`, `base-3`, …
/// Gives each file whose name is taken (on disk, or by an earlier file of the list) the first
/// free "name (1).ext", "name (2).ext"… in the same folder.
pub(crate) fn rename_taken(files: &mut [crate::job::NewFile]) {
    let mut chosen: Vec<PathBuf> = Vec::with_capacity(files.len());
    for file in files.iter_mut() {
        let taken = |p: &Path| p.exists() || chosen.iter().any(|c| c == p);
        if taken(&file.local_path) {
            let path = &file.local_path;
            let stem = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            let ext = path
                .extension()
                .map(|e| format!(".{}", e.to_string_lossy()))
                .unwrap_or_default();
            if let Some(free) = (1..10_000)
                .map(|n| path.with_file_name(format!("{stem} ({n}){ext}")))
                .find(|candidate| !taken(candidate))
            {
                file.local_path = free;
            }
        }
        chosen.push(file.local_path.clone());
    }
}

pub(crate) fn free_name(base: &Path) -> PathBuf {
    if !base.exists() {
        return base.to_path_buf();
    }
    (2..1000)
        .map(|n| {
            let mut name = base.as_os_str().to_os_string();
            name.push(format!("-{n}"));
            PathBuf::from(name)
        })
        .find(|candidate| !candidate.exists())
        .unwrap_or_else(|| base.to_path_buf())
}

/// [`copy_into_place`] to a file that must not exist yet, with the error for the user.
pub(crate) fn copy_new(from: &Path, to: &Path) -> Result<u64, BitsError> {
    let exists = || {
        BitsError::new(
            ErrorCode::FileExists,
            format!(
                "{} already exists: choose another file, or remove it first",
                to.display()
            ),
        )
    };
    if to.exists() {
        return Err(exists());
    }
    copy_into_place(from, to, false).map_err(|e| {
        if e.kind() == io::ErrorKind::AlreadyExists {
            return exists();
        }
        let (code, _) = classify_io(&e);
        BitsError::new(
            code,
            format!("cannot copy {} to {}: {e}", from.display(), to.display()),
        )
    })
}

/// Deletes temp files; a missing file is fine. Returns false if some could not be deleted.
pub(crate) fn delete_temp_files(paths: &[PathBuf]) -> bool {
    let mut all = true;
    for path in paths {
        match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(file = %path.display(), "cannot delete the temp file: {e}");
                all = false;
            }
        }
    }
    all
}
