//! What travels over the service's socket: JSON bodies shared by the server and the client.
//! `docs/api.md` documents them with examples.

use crate::engine::{CancelOutcome, CompleteOutcome};
use crate::job::{BitsError, ErrorCode, JobId, NewFile};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// The version prefix of every route.
pub const PREFIX: &str = "/v1";

/// Reply to `POST /v1/jobs`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Created {
    pub id: JobId,
}

/// Body of `POST /v1/jobs/{id}/files`: all files are added, or none.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AddFiles {
    pub files: Vec<NewFile>,
}

/// Reply to `POST /v1/jobs/{id}/complete`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Completed {
    pub outcome: CompleteOutcome,
}

/// Reply to `POST /v1/jobs/{id}/cancel`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Cancelled {
    pub outcome: CancelOutcome,
}

/// Body of `POST /v1/jobs/{id}/replace-remote-prefix`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplacePrefix {
    pub old: String,
    pub new: String,
}

/// Reply to `POST /v1/jobs/{id}/replace-remote-prefix`: both are successes, as in BITS.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PrefixReplaced {
    /// `S_OK` (some files changed) or `S_FALSE` (none started with the prefix: nothing changed).
    pub status: String,
    pub hresult: String,
    /// The files whose URL changed.
    pub files: Vec<usize>,
    pub message: String,
}

impl PrefixReplaced {
    pub fn new(files: Vec<usize>, old: &str, new: &str, files_total: usize) -> PrefixReplaced {
        let (old, new) = (crate::job::redact_url(old), crate::job::redact_url(new));
        let (status, hresult, message) = match files.len() {
            0 => (
                "S_FALSE",
                "0x00000001",
                format!(
                    "no file's URL starts with {old:?} (the match is case-sensitive): nothing changed"
                ),
            ),
            n => (
                "S_OK",
                "0x00000000",
                format!("{n} of {files_total} files now start with {new:?} instead of {old:?}"),
            ),
        };
        PrefixReplaced {
            status: status.into(),
            hresult: hresult.into(),
            files,
            message,
        }
    }
}

/// Reply to `PUT /v1/config`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ConfigSaved {
    /// The configuration now in the file and in force.
    pub config: crate::config::Config,
    /// Fields that take effect only when the service starts again.
    pub restart_needed: Vec<String>,
}

/// Reply to `GET /v1/status`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Status {
    pub version: String,
    pub pid: u32,
    /// The user whose jobs this service runs.
    pub user: String,
    pub uid: u32,
    pub data_dir: PathBuf,
    pub socket: PathBuf,
    /// Jobs in the queue.
    pub jobs: usize,
    /// The service exits after this long idle (0: never).
    pub idle_exit_secs: u64,
    /// A job with no activity (its `times.modified`) for this long is cancelled.
    pub job_inactivity_timeout_secs: u64,
    /// The InactivityWarning event comes this long before that.
    pub inactivity_warning_secs: u64,
    /// Damaged job files found when the service started, moved aside (never deleted).
    pub quarantined: Vec<QuarantinedFile>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct QuarantinedFile {
    pub moved_to: PathBuf,
    pub reason: String,
}

/// Every error reply: `{"error": {...}}` with the BITS name and code.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ErrorReply {
    pub error: ErrorBody,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The BITS (or Win32) name, e.g. `BG_E_INVALID_STATE`.
    pub name: String,
    /// The HRESULT, e.g. `0x80200002`.
    pub hresult: String,
    /// The code as Ferry names it, for clients that match on it.
    pub code: ErrorCode,
    pub message: String,
}

impl From<&BitsError> for ErrorReply {
    fn from(e: &BitsError) -> Self {
        ErrorReply {
            error: ErrorBody {
                name: e.code.name(),
                hresult: e.code.hresult_text(),
                code: e.code,
                message: e.message.clone(),
            },
        }
    }
}

impl From<ErrorReply> for BitsError {
    fn from(reply: ErrorReply) -> Self {
        BitsError::new(reply.error.code, reply.error.message)
    }
}

/// `POST /v1/jobs/{id}/reply`: where to save the reply of an upload-reply job.
#[derive(Debug, Serialize, Deserialize)]
pub struct SaveReply {
    /// An absolute path that does not exist yet.
    pub out: std::path::PathBuf,
}

/// The answer to [`SaveReply`].
#[derive(Debug, Serialize, Deserialize)]
pub struct ReplySaved {
    pub bytes: u64,
}
