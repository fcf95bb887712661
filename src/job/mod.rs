//! The job model: pure data and one transition function, [`apply`].
//!
//! No I/O, no clock reads, no tokio here. Everything that changes a job goes through [`apply`],
//! which either returns the effects the caller must carry out (delete temp files, commit files,
//! stop a transfer, publish a notification) or a [`BitsError`] and leaves the job untouched.

pub mod checksum;
mod error;
mod policy;
mod properties;
mod rate;
mod transition;

#[cfg(test)]
mod tests;

pub use error::{
    BitsError, ErrorClass, ErrorCode, ErrorContext, JobError, classify_http_status, classify_io,
};
pub use policy::{
    BandwidthPolicy, ClassLimit, ClassLimits, Day, MAX_WINDOWS, PolicyNow, PolicyWindow, TimeOfDay,
};
pub use properties::{
    AuthScheme, Credentials, DEFAULT_NOTIFY_FLAGS, FileRange, LENGTH_TO_EOF, NotifyCommand,
    NotifyFlags, PropertyChange, ProxySettings, ProxyUsage, RedirectMode, RedirectPolicy,
    check_local_path, check_remote_url, redact_url, url_without_credentials, validate_ranges,
};
pub use rate::Rate;
pub use transition::{
    CommitReport, CompletePlan, Effect, Event, Failure, Limits, NewFile, Notification, TimePolicy,
    apply, check_cancel, check_complete, check_create_quota, server_of,
};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;

/// Time as the job model sees it. The engine's clock derives it from a monotonic clock anchored to
/// the wall clock at start, so a wall-clock jump never shortens or stretches a timer within a run.
pub type Timestamp = DateTime<Utc>;

/// `BG_SIZE_UNKNOWN` is `None` everywhere in Ferry.
pub type Size = Option<u64>;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct JobId(pub uuid::Uuid);

impl JobId {
    pub fn new_random() -> Self {
        JobId(uuid::Uuid::new_v4())
    }

    /// Parses an id with or without braces (`{6f1c…}` or `6f1c…`).
    pub fn parse(text: &str) -> Option<JobId> {
        uuid::Uuid::parse_str(text.trim()).ok().map(JobId)
    }
}

impl std::fmt::Display for JobId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0.braced())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub enum JobType {
    #[default]
    Download,
    Upload,
    UploadReply,
}

impl JobType {
    pub fn name(self) -> &'static str {
        match self {
            JobType::Download => "DOWNLOAD",
            JobType::Upload => "UPLOAD",
            JobType::UploadReply => "UPLOAD_REPLY",
        }
    }

    pub fn is_upload(self) -> bool {
        !matches!(self, JobType::Download)
    }
}

/// The nine BITS job states (spec §2.1), in their BG_JOB_STATE order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum JobState {
    Queued,
    Connecting,
    Transferring,
    Suspended,
    Error,
    TransientError,
    Transferred,
    Acknowledged,
    Cancelled,
}

impl JobState {
    pub const ALL: [JobState; 9] = [
        JobState::Queued,
        JobState::Connecting,
        JobState::Transferring,
        JobState::Suspended,
        JobState::Error,
        JobState::TransientError,
        JobState::Transferred,
        JobState::Acknowledged,
        JobState::Cancelled,
    ];

    pub fn name(self) -> &'static str {
        match self {
            JobState::Queued => "QUEUED",
            JobState::Connecting => "CONNECTING",
            JobState::Transferring => "TRANSFERRING",
            JobState::Suspended => "SUSPENDED",
            JobState::Error => "ERROR",
            JobState::TransientError => "TRANSIENT_ERROR",
            JobState::Transferred => "TRANSFERRED",
            JobState::Acknowledged => "ACKNOWLEDGED",
            JobState::Cancelled => "CANCELLED",
        }
    }

    /// ACKNOWLEDGED and CANCELLED are never left.
    pub fn is_final(self) -> bool {
        matches!(self, JobState::Acknowledged | JobState::Cancelled)
    }

    /// CONNECTING or TRANSFERRING: a transfer worker is (or should be) running.
    pub fn is_running(self) -> bool {
        matches!(self, JobState::Connecting | JobState::Transferring)
    }
}

impl std::fmt::Display for JobState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// BG_JOB_PRIORITY; the derived order is the scheduling order (FOREGROUND first).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default,
)]
pub enum Priority {
    Foreground,
    High,
    #[default]
    Normal,
    Low,
}

impl Priority {
    /// Every priority, highest first.
    pub const ALL: [Priority; 4] = [
        Priority::Foreground,
        Priority::High,
        Priority::Normal,
        Priority::Low,
    ];

    /// HIGH, NORMAL or LOW: one at a time, held by the bandwidth schedule, giving way to other
    /// traffic (spec §5, §6). FOREGROUND is none of that.
    pub fn is_background(self) -> bool {
        self != Priority::Foreground
    }

    pub fn name(self) -> &'static str {
        match self {
            Priority::Foreground => "FOREGROUND",
            Priority::High => "HIGH",
            Priority::Normal => "NORMAL",
            Priority::Low => "LOW",
        }
    }

    pub fn parse(text: &str) -> Option<Priority> {
        match text.to_ascii_uppercase().as_str() {
            "FOREGROUND" => Some(Priority::Foreground),
            "HIGH" => Some(Priority::High),
            "NORMAL" => Some(Priority::Normal),
            "LOW" => Some(Priority::Low),
            _ => None,
        }
    }
}

/// What identifies a version of a remote file (spec §7.12): size and Last-Modified as in BITS,
/// plus the ETag as a Ferry extension.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Validators {
    /// Size of the whole remote file, when the server told it.
    pub size: Size,
    /// The `Last-Modified` header, verbatim.
    pub last_modified: Option<String>,
    /// The `ETag` header, verbatim (strong or weak).
    pub etag: Option<String>,
}

/// One file of a job.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobFile {
    pub remote_url: String,
    pub local_path: PathBuf,
    /// Hidden file in the destination directory that receives the bytes until Complete.
    pub temp_path: PathBuf,
    /// Byte ranges to fetch, in the order they are concatenated (spec §3.2); `None` = whole file.
    pub ranges: Option<Vec<FileRange>>,
    /// Bytes this file will have locally: the remote size, or the sum of the ranges.
    pub bytes_total: Size,
    /// Bytes written to the temp file (what progress shows).
    pub bytes_transferred: u64,
    /// Bytes known to be on disk (flushed): where a restart resumes. Never above `bytes_transferred`.
    pub bytes_checkpointed: u64,
    /// All bytes transferred (the file waits in its temp file for Complete).
    pub transferred: bool,
    /// Committed by Complete: the file is at `local_path`.
    pub completed: bool,
    pub validators: Option<Validators>,
    /// Ferry's extension, a file downloaded over several connections: its pieces in file order,
    /// covering `0..bytes_total` without gaps. Each piece is on disk from its start to its
    /// `flushed` offset; the bytes checkpointed are their sum, not a prefix of the file. Empty
    /// for a file fetched from its start on one connection, whose checkpoint is a prefix.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub segments: Vec<Segment>,
    /// Ferry's extension: the digest the file must have. A file with one counts as transferred
    /// only once its bytes on disk have it (`checksum_verified`), so Complete never moves an
    /// unverified file into place.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum: Option<checksum::Checksum>,
    /// The bytes on disk have `checksum`'s digest (false while transferring, and without one).
    #[serde(default)]
    pub checksum_verified: bool,
}

/// One piece of a file downloaded over several connections, in offsets of the file:
/// `start <= flushed <= written <= end`. Bytes from `start` to `flushed` are on disk (flushed),
/// up to `written` written but perhaps not yet flushed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Segment {
    pub start: u64,
    pub end: u64,
    pub written: u64,
    pub flushed: u64,
}

impl Segment {
    /// Bytes written to this piece.
    pub fn written_len(&self) -> u64 {
        self.written.saturating_sub(self.start)
    }

    /// Bytes of this piece that are on disk.
    pub fn flushed_len(&self) -> u64 {
        self.flushed.saturating_sub(self.start)
    }

    /// Every byte of the piece is written.
    pub fn is_written(&self) -> bool {
        self.written >= self.end
    }
}

/// The most connections one file may use (the per-host cap of the config bounds all files of a
/// server together).
pub const MAX_CONNECTIONS: u32 = 16;

/// The most files of one job that transfer at once.
pub const MAX_PARALLEL_FILES: u32 = 32;

fn one_file_at_a_time() -> u32 {
    1
}

/// BG_JOB_TIMES (spec §7.2).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobTimes {
    pub created: Timestamp,
    /// Last activity: every change of the job updates it; it drives the inactivity timeout.
    pub modified: Timestamp,
    pub transfer_completed: Option<Timestamp>,
}

/// BG_JOB_PROGRESS (spec §7.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    pub bytes_total: Size,
    pub bytes_transferred: u64,
    pub files_total: u32,
    pub files_transferred: u32,
}

/// Retry bookkeeping (spec §4.1–4.2).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetryState {
    /// When the job in TRANSIENT_ERROR goes back to QUEUED; `None` = it waits for an event.
    pub next_retry_at: Option<Timestamp>,
    /// Start of the current run of failures without progress (the first transient error).
    pub no_progress_since: Option<Timestamp>,
    /// Consecutive transient failures without progress, for the exponential back-off.
    pub consecutive_failures: u32,
}

/// Time spent in CONNECTING + TRANSFERRING, for the maximum download time (spec §4.7).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DownloadClock {
    /// Time accumulated by earlier runs since the last Resume.
    pub used: Duration,
    /// Start of the current run, while the job is CONNECTING or TRANSFERRING.
    pub running_since: Option<Timestamp>,
}

impl DownloadClock {
    pub fn elapsed(&self, now: Timestamp) -> Duration {
        let current = self
            .running_since
            .map(|since| (now - since).to_std().unwrap_or_default())
            .unwrap_or_default();
        self.used + current
    }
}

/// A BITS job: its properties, files, state and bookkeeping. Only [`apply`] changes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    pub id: JobId,
    pub job_type: JobType,
    pub display_name: String,
    pub description: String,
    /// The OS user that created the job.
    pub owner: String,
    pub priority: Priority,
    pub state: JobState,
    #[serde(with = "properties::seconds")]
    pub minimum_retry_delay: Duration,
    #[serde(with = "properties::seconds")]
    pub no_progress_timeout: Duration,
    #[serde(with = "properties::seconds")]
    pub max_download_time: Duration,
    pub notify_flags: NotifyFlags,
    pub notify_command: Option<NotifyCommand>,
    /// Sent on every request of the job; `Name: value` pairs.
    pub custom_headers: Vec<(String, String)>,
    /// Never persisted in plaintext: the store drops them (see `credentials_dropped`).
    #[serde(skip)]
    pub credentials: Credentials,
    /// The job had credentials that were not persisted; they must be set again after a restart.
    #[serde(default)]
    pub credentials_dropped: bool,
    /// The server (`host:port`) whose URL gave the credentials, if they came from a URL: every
    /// file of the job must then be on that server, so that the password goes nowhere else.
    /// `None` for credentials set on the job (they apply to all its files, as in BITS).
    #[serde(skip)]
    pub credentials_host: Option<String>,
    pub proxy: ProxySettings,
    pub redirect_policy: RedirectPolicy,
    /// BITS_JOB_PROPERTY_DYNAMIC_CONTENT: no size or range requirements; interruptions restart files.
    pub dynamic_content: bool,
    /// Ferry rule: Complete may replace an existing destination file only when this is set.
    pub replace_existing: bool,
    /// Ferry's extension: the service completes the job as soon as it is TRANSFERRED, as other
    /// download managers do (off for jobs from the API and `ferry create`: the BITS rule, where
    /// the application calls Complete). Set by the window's New download by default.
    #[serde(default)]
    pub complete_when_transferred: bool,
    /// Ferry's extension: how many connections one file of the job may use (1 to
    /// [`MAX_CONNECTIONS`]); `None` = the config's default for the job's priority.
    #[serde(default)]
    pub connections: Option<u32>,
    /// Ferry's extension: how many of the job's files transfer at once (1 to
    /// [`MAX_PARALLEL_FILES`]; 1, the BITS rule, by default). Files are still reported
    /// transferred in their order.
    #[serde(default = "one_file_at_a_time")]
    pub parallel_files: u32,
    /// Ferry's extension: the job's speed limit (all its connections together), on top of the
    /// config's global limits; changed live, without restarting the transfer.
    #[serde(default)]
    pub limit_rate: Option<Rate>,
    pub files: Vec<JobFile>,
    pub times: JobTimes,
    pub error: Option<JobError>,
    pub error_count: u32,
    pub retry: RetryState,
    pub download_clock: DownloadClock,
    /// Resume has been called at least once (some properties are fixed after that).
    pub resumed_once: bool,
    /// The InactivityWarning for the current idle period has been sent.
    pub inactivity_warned: bool,
    /// Files of a Complete whose renames have begun: saved before the first rename, so that a
    /// Complete cut by a crash can tell a file it already moved from a lost one.
    #[serde(default)]
    pub committing: Vec<usize>,
    /// Upload and upload-reply jobs: the server's upload session (BITS-Session-Id), kept so that
    /// a later run, even after a restart, goes on where the server stands (spec §8.4). `None`
    /// before Create-Session and after Close-Session.
    #[serde(default)]
    pub upload_session: Option<String>,
    /// The server the session is pinned to (BITS-Host-Id), if the server named one.
    #[serde(default)]
    pub upload_host: Option<UploadHost>,
    /// Upload-reply jobs: the reply (spec §1). Unused by other types.
    #[serde(default)]
    pub reply: Reply,
}

/// The server an upload session is pinned to (spec §8.4): web farms without shared storage
/// name the machine that holds the session in BITS-Host-Id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadHost {
    /// Replaces the host (and the port, if it names one) of the upload URL for every packet
    /// after Create-Session.
    pub host: String,
    /// BITS-Host-Id-Fallback-Timeout: how long the host may stay unreachable before packets go
    /// to the URL's own host again (which normally answers that it has no such session, and the
    /// upload starts over). `None`: forever.
    pub fallback_secs: Option<u64>,
    /// When the host stopped answering; any answer clears it.
    pub unreachable_since: Option<Timestamp>,
}

/// `url` with its host (and port, when `host` names one) replaced by a BITS-Host-Id; `url` as
/// it is when that does not make a valid URL.
pub fn pinned_url(url: &str, host: &str) -> String {
    let Ok(mut parsed) = url::Url::parse(url) else {
        return url.to_string();
    };
    let (name, port) = match host.rsplit_once(':') {
        Some((name, port)) if !name.ends_with(':') && port.parse::<u16>().is_ok() => {
            (name, port.parse::<u16>().ok())
        }
        _ => (host, None),
    };
    if parsed.set_host(Some(name)).is_err() {
        return url.to_string();
    }
    if port.is_some() && parsed.set_port(port).is_err() {
        return url.to_string();
    }
    parsed.into()
}

/// The index that names the reply of an upload-reply job in events about files (progress,
/// transferred, commit): the reply is downloaded like a file, but it is not one of `files`.
pub const REPLY_FILE: usize = usize::MAX;

/// The reply of an upload-reply job (spec §1): the server application's answer, downloaded once
/// the upload is done, kept apart from the upload's progress.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reply {
    /// Where Complete puts the reply (SetReplyFileName). Generated next to the local file at
    /// the first Resume when unset; fixed once the reply download begins.
    pub file_name: Option<PathBuf>,
    /// The reply download, from the reply URL the server sent with its last acknowledgement;
    /// `None` until then. An empty `remote_url` means the server sent no reply: the reply file
    /// is empty.
    pub download: Option<JobFile>,
}

/// BG_JOB_REPLY_PROGRESS: the total is unknown until the reply download starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplyProgress {
    pub bytes_total: Size,
    pub bytes_transferred: u64,
}

/// Defaults for new jobs, from the config file (BITS defaults when absent).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobDefaults {
    pub priority: Priority,
    pub minimum_retry_delay: Duration,
    pub no_progress_timeout: Duration,
    pub max_download_time: Duration,
}

impl Default for JobDefaults {
    fn default() -> Self {
        Self {
            priority: Priority::Normal,
            minimum_retry_delay: Duration::from_secs(600),
            no_progress_timeout: Duration::from_secs(14 * 24 * 3600),
            max_download_time: Duration::from_secs(90 * 24 * 3600),
        }
    }
}

/// The floor of the minimum retry delay (spec §4.1): smaller values are raised to it.
pub const MINIMUM_RETRY_DELAY_FLOOR: Duration = Duration::from_secs(5);
pub const MAX_DISPLAY_NAME: usize = 256;
pub const MAX_DESCRIPTION: usize = 1024;
pub const MAX_URL: usize = 2200;

impl Job {
    /// TakeOwnership (spec §9): the job becomes `owner`'s, without what was the old owner's to
    /// give: credentials, custom headers and the notify command line (a command of theirs must
    /// not run with the new owner's rights). Returns what was removed, for the message.
    pub fn give_to(&mut self, owner: &str, now: Timestamp) -> Vec<&'static str> {
        let mut removed = Vec::new();
        if self.credentials.server.is_some() || self.credentials_dropped {
            removed.push("credentials");
        }
        self.credentials = Credentials::default();
        self.credentials_dropped = false;
        self.credentials_host = None;
        if !self.custom_headers.is_empty() {
            removed.push("custom headers");
            self.custom_headers.clear();
        }
        if self.notify_command.take().is_some() {
            removed.push("notify command line");
        }
        self.owner = owner.to_string();
        self.times.modified = now;
        removed
    }

    /// CreateJob (T1): a new SUSPENDED job. Quotas are checked by [`check_create_quota`] beforehand.
    pub fn new(
        id: JobId,
        job_type: JobType,
        display_name: &str,
        owner: &str,
        defaults: &JobDefaults,
        now: Timestamp,
    ) -> Result<Job, BitsError> {
        properties::check_length(display_name, MAX_DISPLAY_NAME, "display name")?;
        Ok(Job {
            id,
            job_type,
            display_name: display_name.to_string(),
            description: String::new(),
            owner: owner.to_string(),
            priority: defaults.priority,
            state: JobState::Suspended,
            minimum_retry_delay: defaults.minimum_retry_delay.max(MINIMUM_RETRY_DELAY_FLOOR),
            no_progress_timeout: defaults.no_progress_timeout,
            max_download_time: defaults.max_download_time,
            notify_flags: NotifyFlags(DEFAULT_NOTIFY_FLAGS),
            notify_command: None,
            custom_headers: Vec::new(),
            credentials: Credentials::default(),
            credentials_dropped: false,
            credentials_host: None,
            proxy: ProxySettings::default(),
            redirect_policy: RedirectPolicy::default(),
            dynamic_content: false,
            replace_existing: false,
            complete_when_transferred: false,
            connections: None,
            parallel_files: 1,
            limit_rate: None,
            files: Vec::new(),
            times: JobTimes {
                created: now,
                modified: now,
                transfer_completed: None,
            },
            error: None,
            error_count: 0,
            retry: RetryState::default(),
            download_clock: DownloadClock::default(),
            resumed_once: false,
            inactivity_warned: false,
            committing: Vec::new(),
            upload_session: None,
            upload_host: None,
            reply: Reply::default(),
        })
    }

    /// BG_JOB_PROGRESS: total is unknown until every file's size is known.
    /// The files whose URL starts with `prefix` (case-sensitive, as ReplaceRemotePrefix matches).
    pub fn files_with_remote_prefix(&self, prefix: &str) -> Vec<usize> {
        let files = self.files.iter().enumerate();
        files
            .filter(|(_, f)| f.remote_url.starts_with(prefix))
            .map(|(i, _)| i)
            .collect()
    }

    pub fn progress(&self) -> Progress {
        let bytes_total = self
            .files
            .iter()
            .try_fold(0u64, |sum, f| Some(sum + f.bytes_total?));
        Progress {
            bytes_total,
            bytes_transferred: self.files.iter().map(|f| f.bytes_transferred).sum(),
            files_total: self.files.len() as u32,
            files_transferred: self.files.iter().filter(|f| f.transferred).count() as u32,
        }
    }

    /// GetError: only in ERROR or TRANSIENT_ERROR (spec §4.4).
    pub fn current_error(&self) -> Result<&JobError, BitsError> {
        match (&self.error, self.state) {
            (Some(error), JobState::Error | JobState::TransientError) => Ok(error),
            _ => Err(BitsError::from_code(ErrorCode::ErrorInformationUnavailable)),
        }
    }

    /// Index of the next file to transfer (files go one after another, in insertion order).
    pub fn next_file(&self) -> Option<usize> {
        self.files.iter().position(|f| !f.transferred)
    }

    /// TRANSFERRED with a Complete already asked for: by Complete When Transferred, or by a
    /// Complete that a stop cut short (its plan, `committing`, is saved). The engine completes it.
    pub fn awaits_its_complete(&self) -> bool {
        self.state == JobState::Transferred
            && (self.complete_when_transferred || !self.committing.is_empty())
    }

    /// Waiting in TRANSIENT_ERROR because the bandwidth policy allows its priority nothing (T28).
    pub fn is_blocked_by_policy(&self) -> bool {
        self.state == JobState::TransientError
            && self
                .error
                .as_ref()
                .is_some_and(|e| e.code == ErrorCode::BlockedByPolicy)
    }

    /// Every file is transferred, and for upload-reply the reply too (spec T8).
    pub fn all_files_transferred(&self) -> bool {
        !self.files.is_empty()
            && self.files.iter().all(|f| f.transferred)
            && (self.job_type != JobType::UploadReply
                || self.reply.download.as_ref().is_some_and(|r| r.transferred))
    }

    /// Upload-reply: the reply file's name when none was set, `<local file>.reply` beside the
    /// local file (the engine takes the first free variant of it at the first Resume).
    pub fn default_reply_name(&self) -> PathBuf {
        let local = self
            .files
            .first()
            .map(|f| f.local_path.clone())
            .unwrap_or_else(|| PathBuf::from("/tmp/ferry"));
        let mut name = local.into_os_string();
        name.push(".reply");
        PathBuf::from(name)
    }

    /// File `index` of the job, or the reply for [`REPLY_FILE`].
    pub fn file(&self, index: usize) -> Option<&JobFile> {
        if index == REPLY_FILE {
            self.reply.download.as_ref()
        } else {
            self.files.get(index)
        }
    }

    /// GetReplyProgress (upload-reply jobs only).
    pub fn reply_progress(&self) -> Option<ReplyProgress> {
        (self.job_type == JobType::UploadReply).then_some(match &self.reply.download {
            Some(reply) => ReplyProgress {
                bytes_total: reply.bytes_total,
                bytes_transferred: reply.bytes_transferred,
            },
            None => ReplyProgress {
                bytes_total: None,
                bytes_transferred: 0,
            },
        })
    }

    /// When the inactivity timeout cancels this job, unless something happens first.
    pub fn inactivity_deadline(&self, timeout: Duration) -> Timestamp {
        later(self.times.modified, timeout)
    }
}

/// The local file name for a URL: the last segment of its path, percent-decoded.
pub fn file_name_for_url(url: &str) -> Result<String, String> {
    let shown = redact_url(url);
    let parsed = url::Url::parse(url).map_err(|e| format!("{shown:?} is not a valid URL: {e}"))?;
    let segment = parsed
        .path_segments()
        .and_then(|mut s| s.next_back())
        .unwrap_or_default();
    let name = percent_encoding::percent_decode_str(segment)
        .decode_utf8_lossy()
        .into_owned();
    if name.is_empty() || name == "." || name == ".." || name.contains('/') || name.contains('\0') {
        return Err(format!(
            "cannot name a file after {shown:?}: its path does not end in a file name"
        ));
    }
    Ok(name)
}

/// `at + duration`, saturating at the end of representable time instead of panicking.
pub fn later(at: Timestamp, duration: Duration) -> Timestamp {
    chrono::Duration::from_std(duration)
        .ok()
        .and_then(|d| at.checked_add_signed(d))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}
