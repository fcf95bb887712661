//! What the engine's clients (the service, the CLI, the GUI, `ferry serve`) use: how to start it,
//! what it reports, what its calls return, and how a job is specified.

use super::Clock;
use crate::config::Config;
use crate::job::{
    self, ErrorCode, JobError, JobId, JobState, JobType, NewFile, Priority, Timestamp,
};
use crate::platform::User;
use crate::store::{Quarantined, StoreError};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::sync::Arc;

/// The most GetReplyData returns in memory (spec §0.1: 1 MB).
pub const REPLY_DATA_LIMIT: u64 = 1 << 20;

pub struct EngineOptions {
    pub data_dir: PathBuf,
    pub config: Config,
    pub clock: Arc<dyn Clock>,
    pub user: User,
    /// Tests only: faults injected into the workers (panics, workers that never stop), to check
    /// that the engine survives them. `None` in the product.
    pub fault_injection: Option<super::FaultInjection>,
    /// Where the services of the machine count their jobs together (MaxJobsPerMachine across
    /// users, `store/machine.rs`); `None`: only this engine's jobs count.
    pub machine_registry: Option<MachineRegistryOptions>,
}

/// The machine registry an engine takes part in.
pub struct MachineRegistryOptions {
    pub dir: PathBuf,
    /// The service's socket, written in the record so that root can find this user's service.
    pub socket: PathBuf,
}

/// What the engine found in the store when it started.
#[derive(Debug)]
pub struct StartReport {
    pub jobs_loaded: usize,
    pub quarantined: Vec<Quarantined>,
}

/// Events for listeners (spec §7.5, plus Ferry's own). In the service's JSON, each event is an
/// object whose `event` field names the variant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event")]
pub enum EngineEvent {
    StateChanged {
        job: JobId,
        from: JobState,
        to: JobState,
    },
    /// Something about the job changed; at most one per job per `modification_interval_ms`.
    /// Carries the state and progress at that moment, so that a listener showing progress needs
    /// no call back.
    JobModification {
        job: JobId,
        state: JobState,
        progress: job::Progress,
    },
    JobTransferred {
        job: JobId,
    },
    JobError {
        job: JobId,
        error: JobError,
    },
    FileTransferred {
        job: JobId,
        file: usize,
    },
    InactivityWarning {
        job: JobId,
        deadline: Timestamp,
    },
    InactivityCancelled {
        job: JobId,
    },
    QuotaExceeded {
        code: ErrorCode,
        message: String,
    },
    /// A job set to complete when transferred could not be completed (a file is in the way,
    /// the folder is gone…): it stays TRANSFERRED for the user to decide.
    CompleteFailed {
        job: JobId,
        code: ErrorCode,
        message: String,
    },
    /// The job's notify command line failed; it runs again at `retry_at` if the job is still in
    /// the same state (spec §7.6).
    NotifyCommandFailed {
        job: JobId,
        retry_at: Timestamp,
    },
    /// Progress was saved to the store: a restart resumes from `checkpointed` bytes of the job.
    ProgressSaved {
        job: JobId,
        checkpointed: u64,
    },
    /// The server answered Close-Session (`cancel` false) or Cancel-Session for an upload job,
    /// or gave up on it (`acknowledged` false, after re-sending on 5xx for a minute).
    UploadSessionEnded {
        job: JobId,
        session: String,
        cancel: bool,
        acknowledged: bool,
    },
    /// TakeOwnership (spec §9): the job left `from`'s service for `to`'s, without its
    /// credentials, custom headers and notify command line. Told on both sides.
    OwnerChanged {
        job: JobId,
        from: String,
        to: String,
    },
    /// Background jobs give way to other traffic in that direction (`idle.rs`), or no longer do.
    Yielding {
        download: bool,
        upload: bool,
    },
}

impl EngineEvent {
    /// The job the event is about, if any.
    pub fn job(&self) -> Option<JobId> {
        match self {
            EngineEvent::StateChanged { job, .. }
            | EngineEvent::JobModification { job, .. }
            | EngineEvent::JobTransferred { job }
            | EngineEvent::JobError { job, .. }
            | EngineEvent::FileTransferred { job, .. }
            | EngineEvent::InactivityWarning { job, .. }
            | EngineEvent::InactivityCancelled { job }
            | EngineEvent::NotifyCommandFailed { job, .. }
            | EngineEvent::ProgressSaved { job, .. }
            | EngineEvent::UploadSessionEnded { job, .. }
            | EngineEvent::CompleteFailed { job, .. }
            | EngineEvent::OwnerChanged { job, .. } => Some(*job),
            EngineEvent::QuotaExceeded { .. } | EngineEvent::Yielding { .. } => None,
        }
    }
}

/// What TakeOwnership did: the job as its new owner has it, and what of the old owner's it lost.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TakenOver {
    pub job: job::Job,
    pub from: String,
    /// "credentials", "custom headers", "notify command line": those the job had.
    pub removed: Vec<String>,
}

/// Result of Complete (spec §3.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CompleteOutcome {
    /// S_OK: every file was committed.
    Complete,
    /// BG_S_PARTIAL_COMPLETE 0x00200017: the files not transferred were deleted.
    PartialComplete,
    /// BG_S_UNABLE_TO_DELETE_FILES 0x0020001A: committed, but some temp files remain.
    UnableToDeleteFiles,
}

/// Result of Cancel (spec §3.5).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CancelOutcome {
    Cancelled,
    /// BG_S_UNABLE_TO_DELETE_FILES: cancelled, but some temp files could not be deleted.
    UnableToDeleteFiles,
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Everything a new job starts with: CreateJob plus setters plus AddFileSet in one step, all or
/// nothing (no half-made job is left behind when a file is refused).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct JobSpec {
    pub name: String,
    #[serde(default)]
    pub job_type: JobType,
    /// `None`: the configured default (NORMAL).
    #[serde(default)]
    pub priority: Option<Priority>,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub replace_existing: bool,
    #[serde(default)]
    pub files: Vec<NewFile>,
    /// Upload-reply jobs: where Complete puts the reply (default: beside the local file).
    #[serde(default)]
    pub reply_file: Option<PathBuf>,
    /// The service completes the job once it is TRANSFERRED (Ferry's extension; off: BITS).
    #[serde(default)]
    pub complete_when_transferred: bool,
    /// A file whose name is taken is saved under the first free "name (1).ext" instead of
    /// being refused (the GUI's Rename at a name conflict).
    #[serde(default)]
    pub rename_existing: bool,
    /// Connections per file (Ferry's extension, 1 to 16); `None`: the config's default.
    #[serde(default)]
    pub connections: Option<u32>,
    /// Files of the job that transfer at once (Ferry's extension, 1 to 32); `None`: one.
    #[serde(default)]
    pub parallel_files: Option<u32>,
    /// The job's speed limit (Ferry's extension); `None`: only the global limits.
    #[serde(default)]
    pub limit_rate: Option<crate::job::Rate>,
    /// Resumed as it is created: one call and one save instead of Create then Resume (a job
    /// without files is refused as Resume refuses it, and none is left behind).
    #[serde(default)]
    pub resume: bool,
    /// A checksums file (SHA256SUMS and the like) giving every file its digest by name, fetched
    /// when the job is created; all or nothing.
    #[serde(default)]
    pub checksums_url: Option<String>,
}

impl JobSpec {
    pub fn new(name: &str, job_type: JobType) -> JobSpec {
        JobSpec {
            name: name.into(),
            job_type,
            priority: None,
            description: String::new(),
            replace_existing: false,
            files: Vec::new(),
            reply_file: None,
            complete_when_transferred: false,
            rename_existing: false,
            connections: None,
            parallel_files: None,
            limit_rate: None,
            resume: false,
            checksums_url: None,
        }
    }
}
