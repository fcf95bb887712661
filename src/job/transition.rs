//! `apply(job, event, now)`: the one place where a job changes (spec §2.2–§2.4, §4).

use super::error::{BitsError, ErrorClass, ErrorCode, ErrorContext, JobError};
use super::properties::{self, PropertyChange, check_remote_url, validate_ranges};
use super::{
    FileRange, Job, JobFile, JobState, JobType, MINIMUM_RETRY_DELAY_FLOOR, REPLY_FILE, Segment,
    Size, Timestamp, Validators, later,
};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Quotas of spec §5. `exempt` is true for administrators (root) unless the config turns it off.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub jobs_per_user: u32,
    pub jobs_per_machine: u32,
    pub files_per_job: u32,
    pub ranges_per_file: u32,
    pub exempt: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            jobs_per_user: 60,
            jobs_per_machine: 300,
            files_per_job: 200,
            ranges_per_file: 500,
            exempt: false,
        }
    }
}

/// The machine-wide timers a [`Event::Tick`] checks (spec §4.6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimePolicy {
    pub inactivity_timeout: Duration,
    /// How long before the inactivity deadline the InactivityWarning is sent.
    pub warning_window: Duration,
}

impl Default for TimePolicy {
    fn default() -> Self {
        Self {
            inactivity_timeout: Duration::from_secs(90 * 24 * 3600),
            warning_window: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NewFile {
    pub remote_url: String,
    /// Absolute path of the final file.
    pub local_path: PathBuf,
    #[serde(default)]
    pub ranges: Option<Vec<FileRange>>,
    /// Ferry's extension: the digest the file must have (downloads only).
    #[serde(default)]
    pub checksum: Option<super::checksum::Checksum>,
}

/// A failed transfer attempt, classified by the worker (spec §4.3).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    pub error: JobError,
    pub class: ErrorClass,
    /// The server's `Retry-After`: the next attempt never starts sooner.
    pub retry_after: Option<Duration>,
}

/// What Complete does with each file: committed files are renamed from their temp name to their
/// final name, discarded files have their temp file deleted (spec §3.4).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CompletePlan {
    pub commit: Vec<usize>,
    pub discard: Vec<usize>,
    /// Files an earlier, interrupted Complete was moving: one whose temp file is gone while its
    /// destination exists was moved by that Complete.
    pub interrupted: Vec<usize>,
}

/// What the engine did with a [`CompletePlan`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CommitReport {
    pub committed: Vec<usize>,
    /// Files whose rename failed, with why: the job stays TRANSFERRED (T25).
    pub failed: Vec<(usize, JobError)>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    // Calls by the owner (spec §2.3).
    Resume,
    Suspend,
    Cancel,
    /// Asks for Complete; the effect [`Effect::Commit`] carries the plan, the state changes with
    /// [`Event::CommitFinished`] once the files are renamed.
    Complete,
    CommitFinished(CommitReport),
    AddFiles {
        files: Vec<NewFile>,
        limits: Limits,
    },
    Set(PropertyChange),
    // The scheduler and the transfer workers.
    /// The scheduler grants the job a slot (T4).
    Start,
    /// The server answered (T5).
    Connected,
    /// The server told the size and validators of a file.
    FileInfo {
        file: usize,
        bytes_total: Size,
        validators: Validators,
    },
    /// The remote file changed (or the job is dynamic content): the file restarts at byte 0 (T30).
    FileRestarted {
        file: usize,
    },
    /// Bytes written to the temp file from its start, and bytes flushed to disk.
    Progress {
        file: usize,
        transferred: u64,
        checkpointed: u64,
    },
    /// Progress of a file downloaded over several connections: its whole segment map.
    Segments {
        file: usize,
        segments: Vec<super::Segment>,
    },
    FileTransferred {
        file: usize,
    },
    /// Ferry's extension: the digest of a file's bytes on disk, all of them written and flushed,
    /// computed for its checksum (before its FileTransferred). A mismatch is BITS's
    /// SetValidationState(FALSE): ERROR, and the file starts again on the next Resume.
    FileDigest {
        file: usize,
        digest: super::checksum::Checksum,
    },
    /// Time slice over or preempted by a higher priority (T7).
    Yield,
    Failed(Failure),
    /// Time passed: retry timer, no-progress timeout, maximum download time, inactivity.
    Tick(TimePolicy),
    NetworkLost,
    NetworkRestored,
    /// The bandwidth policy gives the job's priority a limit of 0 (T28). FOREGROUND jobs are
    /// never blocked: the event leaves them as they are.
    PolicyBlocked,
    /// The policy allows the job's priority again: a job it blocked goes back to QUEUED.
    PolicyLifted,
    /// The engine starts again with a job that was CONNECTING/TRANSFERRING when it stopped.
    Recovered,
    /// SetValidationState (spec §7.13, T32): the owner checked a transferred file's temp file.
    /// Rejected content puts the job in ERROR and the file starts again on the next Resume.
    Validate {
        file: usize,
        valid: bool,
    },
    /// The upload worker opened a session with the server (or learned that it ended): later runs
    /// go on in it (spec §8.4).
    UploadSession(Option<String>),
    /// The server the session is pinned to (BITS-Host-Id), or that the pin was dropped.
    UploadHost(Option<super::UploadHost>),
    /// Upload-reply: the server acknowledged the last fragment and named the reply (`None`: no
    /// reply, the reply file will be empty). The reply download, file [`REPLY_FILE`], begins.
    ReplyLocated {
        url: Option<String>,
    },
}

/// Events for listeners (spec §7.5). JobModification is derived by the engine from any change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Notification {
    JobTransferred,
    JobError(JobError),
    FileTransferred(usize),
    InactivityWarning { deadline: Timestamp },
    InactivityCancelled,
}

/// What the caller of [`apply`] must carry out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    /// The job left CONNECTING/TRANSFERRING: stop its worker (and wait for it) before anything else.
    StopTransfer,
    DeleteTempFiles(Vec<PathBuf>),
    Commit(CompletePlan),
    Notify(Notification),
    /// End an upload session at the server (spec §8.4): Close-Session once the upload (and for
    /// upload-reply the reply) is done, Cancel-Session when the job is cancelled before that
    /// (spec §3.5). The job forgets the session at once; the packet is re-sent on 5xx for a
    /// bounded time.
    EndSession {
        url: String,
        session: String,
        cancel: bool,
    },
}

/// CreateJob quota check (spec §5): counts the jobs still in the queue, and `elsewhere`, the
/// jobs other services of the machine have (the machine registry's count).
pub fn check_create_quota<'a>(
    jobs: impl IntoIterator<Item = &'a Job>,
    owner: &str,
    limits: &Limits,
    elsewhere: u32,
) -> Result<(), BitsError> {
    if limits.exempt {
        return Ok(());
    }
    let (mut mine, mut all) = (0u32, 0u32);
    for job in jobs.into_iter().filter(|j| !j.state.is_final()) {
        all += 1;
        if job.owner == owner {
            mine += 1;
        }
    }
    if mine >= limits.jobs_per_user {
        return Err(BitsError::new(
            ErrorCode::TooManyJobsPerUser,
            format!(
                "{owner} already has {mine} jobs (limit {}): complete or cancel stale jobs first",
                limits.jobs_per_user
            ),
        ));
    }
    let all = all.saturating_add(elsewhere);
    if all >= limits.jobs_per_machine {
        let others = match elsewhere {
            0 => String::new(),
            n => format!(", {n} of them other users'"),
        };
        return Err(BitsError::new(
            ErrorCode::TooManyJobsPerMachine,
            format!(
                "the machine already has {all} jobs{others} (limit {}): complete or cancel stale \
                 jobs first",
                limits.jobs_per_machine
            ),
        ));
    }
    Ok(())
}

/// Applies `event` to `job` at time `now`. On error the job is unchanged: every branch of the
/// transition checks everything before it changes anything (the table test holds it to that).
pub fn apply(job: &mut Job, event: Event, now: Timestamp) -> Result<Vec<Effect>, BitsError> {
    let before = job.state;
    if before.is_final() {
        return Err(invalid_state(job, "it is finished"));
    }
    let is_tick = matches!(event, Event::Tick(_));
    // Restarting the engine is housekeeping, not activity of the job.
    let is_recovery = matches!(event, Event::Recovered);
    let warned_before = job.inactivity_warned;
    let mut effects = step(job, event, now)?;
    // A tick changes the state, the warning flag, or nothing.
    if is_tick && job.state == before && job.inactivity_warned == warned_before {
        return Ok(effects);
    }
    if before.is_running() && !job.state.is_running() {
        effects.insert(0, Effect::StopTransfer);
        job.download_clock.used = job.download_clock.elapsed(now);
        job.download_clock.running_since = None;
    }
    if job.state != before && job.state.is_running() && job.download_clock.running_since.is_none() {
        job.download_clock.running_since = Some(now);
    }
    // A warning alone is not activity, nor is a restart; every other change is (§4.6, §7.2).
    let not_activity = is_recovery || (is_tick && job.state == before);
    if !not_activity {
        job.times.modified = now;
        job.inactivity_warned = false;
    }
    Ok(effects)
}

/// Whether Complete is legal for the job now (spec §2.3): a download in any non-final state, an
/// upload or upload-reply only in TRANSFERRED. [`apply`] checks the same function, so a surface
/// that enables a button by it agrees with the engine.
pub fn check_complete(job: &Job) -> Result<(), BitsError> {
    if job.state.is_final() {
        return Err(invalid_state(job, "it is finished"));
    }
    if job.job_type.is_upload() && job.state != JobState::Transferred {
        return Err(invalid_state(
            job,
            "an upload job can be completed only when it is TRANSFERRED",
        ));
    }
    Ok(())
}

/// Whether Cancel is legal for the job now (spec §2.3): in every non-final state.
pub fn check_cancel(job: &Job) -> Result<(), BitsError> {
    if job.state.is_final() {
        return Err(invalid_state(job, "it is finished"));
    }
    Ok(())
}

fn invalid_state(job: &Job, why: &str) -> BitsError {
    BitsError::new(
        ErrorCode::InvalidState,
        format!("job {} is {}: {why}", job.id, job.state),
    )
}

fn step(job: &mut Job, event: Event, now: Timestamp) -> Result<Vec<Effect>, BitsError> {
    use JobState::*;
    let mut effects = Vec::new();
    match event {
        Event::Resume => match job.state {
            Suspended | Error | TransientError | Transferred => {
                if job.files.is_empty() {
                    return Err(BitsError::from_code(ErrorCode::Empty));
                }
                if job.state == Transferred && job.all_files_transferred() {
                    return Ok(effects); // §2.4: nothing to do, S_OK.
                }
                job.state = Queued;
                job.resumed_once = true;
                job.retry = Default::default();
                job.download_clock = Default::default();
            }
            Queued | Connecting | Transferring => {} // T20
            Acknowledged | Cancelled => unreachable!("final states are rejected before"),
        },
        Event::Suspend => {
            job.state = Suspended; // T18, idempotent
            job.retry = Default::default();
        }
        Event::Cancel => {
            job.state = Cancelled; // T24
            cancel_effects(job, &mut effects);
        }
        Event::Complete => {
            check_complete(job)?;
            if job.state.is_running() {
                effects.push(Effect::StopTransfer);
            }
            let mut plan = CompletePlan {
                interrupted: std::mem::take(&mut job.committing),
                ..CompletePlan::default()
            };
            if job.job_type.is_upload() {
                // The upload file is the source: nothing to move. Upload-reply commits its reply.
                if job.reply.download.as_ref().is_some_and(|r| !r.completed) {
                    plan.commit.push(REPLY_FILE);
                }
            } else {
                for (index, file) in job.files.iter().enumerate().filter(|(_, f)| !f.completed) {
                    if file.transferred {
                        plan.commit.push(index);
                    } else {
                        plan.discard.push(index);
                    }
                }
            }
            job.committing = plan.commit.clone(); // saved before the first rename
            effects.push(Effect::Commit(plan));
            return Ok(effects);
        }
        Event::CommitFinished(report) => {
            job.committing.clear();
            for &index in &report.committed {
                if let Ok(file) = file_mut(job, index) {
                    file.completed = true;
                }
            }
            if report.failed.is_empty() {
                job.state = Acknowledged; // T21/T22
            } else {
                // T25: the job stays (or becomes) TRANSFERRED; unfinished files were discarded.
                for file in job.files.iter_mut().filter(|f| !f.transferred) {
                    reset_file(file);
                }
                job.state = Transferred;
                job.times.transfer_completed.get_or_insert(now);
            }
        }
        Event::AddFiles { files, limits } => add_files(job, files, &limits)?,
        Event::Set(change) => {
            let registers = registers_for_notifications(&change);
            let moves = matches!(change, PropertyChange::ReplaceRemotePrefix { .. });
            let urls_before = moves.then(|| untransferred_urls(job));
            set_property(job, change)?;
            if registers {
                late_registration(job, &mut effects);
            }
            // A running transfer moves to the new URLs at once: back to QUEUED, and the
            // scheduler starts it again (each file from its offset if the new server has the
            // same file, spec §7.12).
            if job.state.is_running() && urls_before.is_some_and(|u| u != untransferred_urls(job)) {
                job.state = Queued;
            }
        }
        Event::Start => {
            if job.state != Queued {
                return Err(invalid_state(job, "only a QUEUED job can be started"));
            }
            if job.all_files_transferred() {
                enter_transferred(job, now, &mut effects); // §2.4: no network I/O needed
            } else {
                job.state = Connecting; // T4
            }
        }
        Event::Connected => {
            expect_running(job)?;
            job.state = Transferring; // T5
            job.error = None; // GetError answers only until the job next transfers
        }
        Event::FileInfo {
            file,
            bytes_total,
            validators,
        } => {
            expect_running(job)?;
            let entry = file_mut(job, file)?;
            // A transferred file keeps the size it was checked against (found by the property
            // test: a late FileInfo of the reply made a transferred file's size unknown).
            if entry.transferred {
                return Err(transferred_already(file));
            }
            entry.bytes_total = bytes_total;
            entry.validators = Some(validators);
        }
        Event::FileRestarted { file } => {
            expect_running(job)?;
            reset_file(file_mut(job, file)?);
        }
        Event::Progress {
            file,
            transferred,
            checkpointed,
        } => {
            expect_running(job)?;
            let entry = file_mut(job, file)?;
            if entry.transferred && transferred != entry.bytes_transferred {
                return Err(transferred_already(file));
            }
            let advanced = transferred > entry.bytes_transferred;
            entry.bytes_transferred = transferred;
            entry.bytes_checkpointed = checkpointed.min(transferred);
            entry.segments.clear(); // a prefix again: the worker went back to one connection
            if advanced {
                job.retry = Default::default(); // any transferred byte resets the no-progress timer
            }
        }
        Event::Segments { file, segments } => {
            expect_running(job)?;
            let entry = file_mut(job, file)?;
            if entry.transferred {
                return Err(transferred_already(file));
            }
            check_segments(entry, &segments)?;
            let transferred: u64 = segments.iter().map(Segment::written_len).sum();
            let advanced = transferred > entry.bytes_transferred;
            entry.bytes_transferred = transferred;
            entry.bytes_checkpointed = segments.iter().map(Segment::flushed_len).sum();
            entry.segments = segments;
            if advanced {
                job.retry = Default::default();
            }
        }
        Event::FileTransferred { file } => {
            expect_running(job)?;
            let entry = file_mut(job, file)?;
            // Never a file short or long of what the server announced: the worker checks this
            // too, and the model refuses it whatever a worker says.
            if let Some(total) = entry.bytes_total
                && total != entry.bytes_transferred
            {
                return Err(BitsError::new(
                    ErrorCode::InvalidServerResponse,
                    format!(
                        "file {} has {} bytes where {total} were announced: it is not transferred",
                        entry.local_path.display(),
                        entry.bytes_transferred
                    ),
                ));
            }
            if let Some(checksum) = &entry.checksum
                && !entry.checksum_verified
            {
                return Err(BitsError::new(
                    ErrorCode::ValidationFailed,
                    format!(
                        "file {} is not transferred until its bytes have the {} digest asked for",
                        entry.local_path.display(),
                        checksum.algorithm.name()
                    ),
                ));
            }
            entry.transferred = true;
            entry.bytes_total = Some(entry.bytes_transferred);
            entry.bytes_checkpointed = entry.bytes_transferred;
            entry.segments.clear();
            if file != REPLY_FILE {
                effects.push(Effect::Notify(Notification::FileTransferred(file)));
            }
            if job.all_files_transferred() {
                enter_transferred(job, now, &mut effects); // T8
            }
        }
        Event::FileDigest { file, digest } => {
            expect_running(job)?;
            let entry = file_mut(job, file)?;
            if entry.transferred {
                return Err(transferred_already(file));
            }
            let Some(expected) = entry.checksum.clone() else {
                return Err(BitsError::new(
                    ErrorCode::InvalidArg,
                    format!("file {file} has no checksum to compare a digest with"),
                ));
            };
            if expected.algorithm != digest.algorithm {
                return Err(BitsError::new(
                    ErrorCode::InvalidArg,
                    format!(
                        "file {file} is checked with {}, not {}",
                        expected.algorithm.name(),
                        digest.algorithm.name()
                    ),
                ));
            }
            if expected.hex == digest.hex {
                entry.checksum_verified = true;
            } else {
                let name = entry.local_path.display().to_string();
                reset_file(entry);
                entry.validators = None;
                let error = JobError::new(
                    ErrorContext::LocalFile,
                    ErrorCode::ValidationFailed,
                    Some(file),
                )
                .with_description(format!(
                    "the {} of {name} is {}, not the {} expected: the download is damaged or                      not the file meant, so it was not kept. Resume downloads it again; if it                      fails again, check the checksum and the URL",
                    expected.algorithm.name(),
                    digest.hex,
                    expected.hex
                ));
                enter_error(job, error, &mut effects);
            }
        }
        Event::Yield => {
            expect_running(job)?;
            job.state = Queued; // T7
        }
        Event::Failed(failure) => {
            expect_running(job)?;
            fail(job, failure, now, &mut effects);
        }
        Event::Tick(policy) => tick(job, &policy, now, &mut effects),
        // T14: waits for the network.
        Event::NetworkLost => hold(
            job,
            ErrorContext::GeneralTransport,
            ErrorCode::NetworkDisconnected,
        ),
        Event::NetworkRestored if job.state == TransientError => release(job), // T15
        // T28: waits for the schedule; FOREGROUND jobs are never held by it.
        Event::PolicyBlocked if job.priority.is_background() => {
            hold(
                job,
                ErrorContext::GeneralQueueManager,
                ErrorCode::BlockedByPolicy,
            );
        }
        Event::PolicyLifted if job.is_blocked_by_policy() => release(job),
        Event::NetworkRestored | Event::PolicyBlocked | Event::PolicyLifted => {}
        Event::Validate { file, valid } => {
            if job.job_type != JobType::Download {
                return Err(BitsError::new(
                    ErrorCode::NotImpl,
                    "only download files are validated",
                ));
            }
            let entry = file_mut(job, file)?;
            if !entry.transferred || entry.completed {
                return Err(invalid_state(
                    job,
                    "only a transferred file that is not yet completed can be validated",
                ));
            }
            if !valid {
                let entry = file_mut(job, file)?;
                reset_file(entry);
                entry.validators = None;
                let error = JobError::new(
                    ErrorContext::LocalFile,
                    ErrorCode::ValidationFailed,
                    Some(file),
                );
                enter_error(job, error, &mut effects); // T32
            }
        }
        Event::Recovered => {
            if job.state.is_running() {
                job.state = Queued;
            }
            let reply = job.reply.download.iter_mut();
            for file in job.files.iter_mut().chain(reply).filter(|f| !f.transferred) {
                file.bytes_transferred = file.bytes_checkpointed;
                for piece in &mut file.segments {
                    piece.written = piece.flushed;
                }
            }
            // Time spent while the engine was down is not known; it is not counted.
            job.download_clock.running_since = None;
        }
        Event::UploadSession(session) => {
            expect_upload(job)?;
            if session.is_none() {
                job.upload_host = None; // a new session names its own host
            }
            job.upload_session = session;
        }
        Event::UploadHost(host) => {
            expect_upload(job)?;
            job.upload_host = host;
        }
        Event::ReplyLocated { url } => {
            expect_running(job)?;
            if job.job_type != JobType::UploadReply {
                return Err(BitsError::new(
                    ErrorCode::NotImpl,
                    "only upload-reply jobs have a reply",
                ));
            }
            let url = url.unwrap_or_default();
            if job
                .reply
                .download
                .as_ref()
                .is_some_and(|r| r.remote_url == url)
            {
                return Ok(effects); // the same answer again (the last fragment was re-sent)
            }
            let local_path = match &job.reply.file_name {
                Some(name) => name.clone(),
                None => job.default_reply_name(),
            };
            job.reply.file_name = Some(local_path.clone());
            job.reply.download = Some(JobFile {
                temp_path: reply_temp_path(job, &local_path),
                bytes_total: url.is_empty().then_some(0),
                remote_url: url,
                local_path,
                ranges: None,
                bytes_transferred: 0,
                bytes_checkpointed: 0,
                transferred: false,
                completed: false,
                validators: None,
                segments: Vec::new(),
                checksum: None,
                checksum_verified: false,
            });
        }
    }
    Ok(effects)
}

fn transferred_already(file: usize) -> BitsError {
    BitsError::new(
        ErrorCode::InvalidState,
        format!("file {file} is transferred already: its size and bytes cannot change"),
    )
}

/// Cancel (and the inactivity timeout, which acts like it): temp files go, and an upload the
/// server still holds a session for is cancelled there — before the upload finished, or for
/// upload-reply before the reply was fetched (spec §3.5).
fn cancel_effects(job: &mut Job, effects: &mut Vec<Effect>) {
    effects.push(Effect::DeleteTempFiles(uncommitted_temp_files(job)));
    end_session(job, true, effects);
}

fn end_session(job: &mut Job, cancel: bool, effects: &mut Vec<Effect>) {
    let host = job.upload_host.take();
    if let Some(file) = job.files.first()
        && let Some(session) = job.upload_session.take()
    {
        let url = match &host {
            Some(host) => super::pinned_url(&file.remote_url, &host.host),
            None => file.remote_url.clone(),
        };
        effects.push(Effect::EndSession {
            url,
            session,
            cancel,
        });
    }
}

fn expect_running(job: &Job) -> Result<(), BitsError> {
    if job.state.is_running() {
        Ok(())
    } else {
        Err(invalid_state(job, "no transfer is running"))
    }
}

fn expect_upload(job: &Job) -> Result<(), BitsError> {
    if job.job_type.is_upload() {
        Ok(())
    } else {
        Err(BitsError::new(
            ErrorCode::NotImpl,
            "only upload jobs have upload sessions",
        ))
    }
}

fn file_mut(job: &mut Job, index: usize) -> Result<&mut JobFile, BitsError> {
    if index == REPLY_FILE {
        return job.reply.download.as_mut().ok_or_else(|| {
            BitsError::new(
                ErrorCode::InvalidArg,
                "the job has no reply (yet): the server has not acknowledged the whole upload",
            )
        });
    }
    let count = job.files.len();
    job.files.get_mut(index).ok_or_else(|| {
        BitsError::new(
            ErrorCode::InvalidArg,
            format!(
                "the job has {count} files; there is no file number {}",
                index + 1
            ),
        )
    })
}

fn reset_file(file: &mut JobFile) {
    file.bytes_transferred = 0;
    file.bytes_checkpointed = 0;
    file.transferred = false;
    file.checksum_verified = false;
    file.segments.clear();
}

/// A segment map a worker reported for `file`: pieces in order that cover the whole file, each
/// within itself (`start <= flushed <= written <= end`).
fn check_segments(file: &JobFile, segments: &[Segment]) -> Result<(), BitsError> {
    let refuse = |why: String| {
        Err(BitsError::new(
            ErrorCode::InvalidArg,
            format!(
                "segment map of {} refused: {why}",
                file.local_path.display()
            ),
        ))
    };
    let Some(total) = file.bytes_total else {
        return refuse("the file's size is not known".into());
    };
    if file.ranges.is_some() {
        return refuse("a file with byte ranges is fetched range by range".into());
    }
    let mut at = 0u64;
    for piece in segments {
        if piece.start != at {
            return refuse(format!("a piece starts at {} instead of {at}", piece.start));
        }
        if !(piece.start <= piece.flushed
            && piece.flushed <= piece.written
            && piece.written <= piece.end)
        {
            return refuse(format!("piece {piece:?} is not in order"));
        }
        at = piece.end;
    }
    if at != total {
        return refuse(format!("the pieces end at {at}, the file at {total}"));
    }
    Ok(())
}

fn enter_transferred(job: &mut Job, now: Timestamp, effects: &mut Vec<Effect>) {
    end_session(job, false, effects); // the server has all it needs from this upload
    job.state = JobState::Transferred;
    job.times.transfer_completed = Some(now);
    job.retry = Default::default();
    effects.push(Effect::Notify(Notification::JobTransferred));
}

fn enter_error(job: &mut Job, error: JobError, effects: &mut Vec<Effect>) {
    job.state = JobState::Error;
    job.retry.next_retry_at = None;
    job.error = Some(error.clone());
    effects.push(Effect::Notify(Notification::JobError(error)));
}

fn uncommitted_temp_files(job: &Job) -> Vec<PathBuf> {
    // An upload's own file is its source, never a temp file.
    let files = job.files.iter().filter(|_| !job.job_type.is_upload());
    files
        .chain(job.reply.download.iter())
        .filter(|f| !f.completed)
        .map(|f| f.temp_path.clone())
        .collect()
}

/// Exponential back-off from the minimum retry delay, capped at an hour (or the delay itself if
/// that is longer). A Ferry extension: BITS retries at the fixed delay.
fn backoff(min_delay: Duration, failures: u32) -> Duration {
    let cap = min_delay.max(Duration::from_secs(3600));
    min_delay.saturating_mul(1u32 << failures.min(16)).min(cap)
}

fn fail(job: &mut Job, failure: Failure, now: Timestamp, effects: &mut Vec<Effect>) {
    let from_transferring = job.state == JobState::Transferring;
    let retrying = job.retry.no_progress_since.is_some();
    if failure.class != ErrorClass::Environmental && (from_transferring || retrying) {
        job.error_count += 1; // §4.5
    }
    if failure.class == ErrorClass::Fatal || job.no_progress_timeout.is_zero() {
        enter_error(job, failure.error, effects); // T10, T34
        return;
    }
    job.state = JobState::TransientError; // T6, T9, T14
    job.error = Some(failure.error.clone());
    if failure.class == ErrorClass::Environmental {
        job.retry.next_retry_at = None;
        return;
    }
    // Only a retry delay longer than the whole timeout means no retry at all (T13, §4.1).
    if job.minimum_retry_delay > job.no_progress_timeout {
        enter_error(job, failure.error, effects); // T13
        return;
    }
    let since = *job.retry.no_progress_since.get_or_insert(now);
    let deadline = later(since, job.no_progress_timeout);
    let floor = job
        .minimum_retry_delay
        .max(failure.retry_after.unwrap_or_default());
    // The back-off (a Ferry extension) never costs a retry BITS would make: past the deadline
    // it falls back to the plain delay.
    let mut delay = backoff(job.minimum_retry_delay, job.retry.consecutive_failures).max(floor);
    if later(now, delay) > deadline {
        delay = floor;
    }
    job.retry.consecutive_failures = job.retry.consecutive_failures.saturating_add(1);
    // A retry due after the deadline never comes: the job waits in TRANSIENT_ERROR until the
    // timeout has really elapsed, and the tick at the deadline turns it into ERROR (T12), not
    // this failure, a retry delay early.
    job.retry.next_retry_at = Some(later(now, delay));
}

/// A job in the queue waits in TRANSIENT_ERROR for something outside it (the network, the
/// bandwidth schedule), not for the retry timer, and the wait is not counted as an error (§4.5).
fn hold(job: &mut Job, context: ErrorContext, code: ErrorCode) {
    if matches!(
        job.state,
        JobState::Queued | JobState::Connecting | JobState::Transferring
    ) {
        job.state = JobState::TransientError;
        job.error = Some(JobError::new(context, code, None));
        job.retry.next_retry_at = None;
    }
}

/// What [`hold`] waited for is back: the job goes to QUEUED.
fn release(job: &mut Job) {
    job.state = JobState::Queued;
    job.retry.next_retry_at = None;
}

fn tick(job: &mut Job, policy: &TimePolicy, now: Timestamp, effects: &mut Vec<Effect>) {
    let deadline = job.inactivity_deadline(policy.inactivity_timeout);
    if now >= deadline {
        job.state = JobState::Cancelled; // T26
        cancel_effects(job, effects);
        effects.push(Effect::Notify(Notification::InactivityCancelled));
        return;
    }
    if !job.inactivity_warned && later(now, policy.warning_window) >= deadline {
        job.inactivity_warned = true;
        effects.push(Effect::Notify(Notification::InactivityWarning { deadline }));
    }
    if job.state.is_running() && job.download_clock.elapsed(now) > job.max_download_time {
        if job.state == JobState::Transferring {
            job.error_count += 1;
        }
        let error = JobError::new(
            ErrorContext::GeneralQueueManager,
            ErrorCode::MaxDownloadTimeout,
            None,
        );
        enter_error(job, error, effects); // T27
        return;
    }
    // Time the schedule holds a job is not time without progress: the job is not failing.
    if job.state == JobState::TransientError && !job.is_blocked_by_policy() {
        let expired = job
            .retry
            .no_progress_since
            .is_some_and(|since| now >= later(since, job.no_progress_timeout));
        if expired {
            let error = job
                .error
                .clone()
                .unwrap_or_else(|| JobError::new(ErrorContext::Unknown, ErrorCode::Timeout, None));
            enter_error(job, error, effects); // T12
        } else if job.retry.next_retry_at.is_some_and(|at| now >= at) {
            job.state = JobState::Queued; // T11
            job.retry.next_retry_at = None;
        }
    }
}

/// The hidden temp file of file `index` of job `job`, next to its destination (spec §3.3).
pub(crate) fn temp_path_for(job: &Job, index: usize, local: &Path) -> PathBuf {
    temp_path_labelled(job, &index.to_string(), local)
}

/// The hidden temp file the reply of an upload-reply job is downloaded into, beside the reply
/// file.
fn reply_temp_path(job: &Job, reply: &Path) -> PathBuf {
    temp_path_labelled(job, "reply", reply)
}

fn temp_path_labelled(job: &Job, label: &str, local: &Path) -> PathBuf {
    let name = local
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // Keep the whole name within the 255 bytes file systems allow, cutting on a char boundary.
    let mut cut = name.len().min(200);
    while !name.is_char_boundary(cut) {
        cut -= 1;
    }
    let short = job.id.0.simple().to_string();
    let dir = local.parent().unwrap_or(Path::new("/"));
    dir.join(format!(
        ".{}.{}-{label}.ferry-part",
        &name[..cut],
        &short[..12]
    ))
}

/// Longest file name (in bytes) that common file systems accept.
const MAX_FILE_NAME: usize = 255;

fn add_files(job: &mut Job, files: Vec<NewFile>, limits: &Limits) -> Result<(), BitsError> {
    if files.is_empty() {
        return Err(BitsError::new(ErrorCode::InvalidArg, "no files were given"));
    }
    if job.job_type.is_upload() && job.files.len() + files.len() > 1 {
        return Err(BitsError::new(
            ErrorCode::TooManyFiles,
            "an upload job carries exactly one file; create one job per upload",
        ));
    }
    let total = job.files.len() + files.len();
    if !limits.exempt && total > limits.files_per_job as usize {
        return Err(BitsError::new(
            ErrorCode::TooManyFilesInJob,
            format!(
                "the job would have {total} files; the limit is {} per job: split them over several jobs",
                limits.files_per_job
            ),
        ));
    }
    let mut added = Vec::with_capacity(files.len());
    let mut url_credentials = None;
    let mut url_hosts: Vec<String> = Vec::new();
    for mut new in files {
        let (remote_url, credentials) = properties::take_url_credentials(&new.remote_url)?;
        new.remote_url = remote_url;
        check_remote_url(&new.remote_url)?;
        if let Some(credentials) = credentials {
            merge_url_credentials(job, &mut url_credentials, credentials)?;
            url_hosts.extend(server_of(&new.remote_url));
        }
        properties::check_local_path(&new.local_path)?;
        if new
            .local_path
            .file_name()
            .is_some_and(|n| n.len() > MAX_FILE_NAME)
        {
            return Err(BitsError::new(
                ErrorCode::InvalidArg,
                format!(
                    "the file name of {:?} is longer than {MAX_FILE_NAME} bytes: choose a shorter one",
                    new.local_path
                ),
            ));
        }
        if let Some(ranges) = &new.ranges {
            if job.job_type.is_upload() {
                return Err(BitsError::new(
                    ErrorCode::NotImpl,
                    "upload jobs do not take ranges",
                ));
            }
            if job.dynamic_content {
                return Err(BitsError::new(
                    ErrorCode::InvalidArg,
                    "dynamic-content jobs cannot download byte ranges",
                ));
            }
            if !limits.exempt && ranges.len() > limits.ranges_per_file as usize {
                return Err(BitsError::new(
                    ErrorCode::TooManyRangesInFile,
                    format!(
                        "{} ranges given; the limit is {} per file",
                        ranges.len(),
                        limits.ranges_per_file
                    ),
                ));
            }
            validate_ranges(ranges)?;
        }
        if new.checksum.is_some() && job.job_type.is_upload() {
            return Err(BitsError::new(
                ErrorCode::NotImpl,
                "checksums are checked on downloaded files; an upload's file is the one you have",
            ));
        }
        let index = job.files.len() + added.len();
        let bytes_total = new.ranges.as_ref().and_then(|ranges| {
            ranges.iter().try_fold(0u64, |sum, r| {
                (r.length != super::LENGTH_TO_EOF).then(|| sum.saturating_add(r.length))
            })
        });
        added.push(JobFile {
            temp_path: temp_path_for(job, index, &new.local_path),
            remote_url: new.remote_url,
            local_path: new.local_path,
            ranges: new.ranges,
            bytes_total,
            bytes_transferred: 0,
            bytes_checkpointed: 0,
            transferred: false,
            completed: false,
            validators: None,
            segments: Vec::new(),
            checksum: new.checksum,
            checksum_verified: false,
        });
    }
    // Credentials from a URL go to that URL's server only: no file of the job may be elsewhere.
    let credential_host = match &url_credentials {
        Some(_) => url_hosts.first().cloned(),
        None => job.credentials_host.clone(),
    };
    if let Some(credential_host) = &credential_host {
        let urls = job
            .files
            .iter()
            .chain(&added)
            .map(|f| f.remote_url.as_str());
        only_on_server(credential_host, urls)?;
    }
    job.files.extend(added); // all or nothing; the state is unchanged (§2.4)
    if let Some((user, password)) = url_credentials {
        set_url_credentials(job, user, password);
        job.credentials_host = credential_host;
    }
    Ok(())
}

/// URL credentials go to their server only (see `Job::credentials_host`): refuses if one of
/// `urls` is on another.
fn only_on_server<'a>(
    server: &str,
    mut urls: impl Iterator<Item = &'a str>,
) -> Result<(), BitsError> {
    match urls.find_map(|url| {
        let other = server_of(url);
        (other.as_deref() != Some(server)).then_some(other)
    }) {
        None => Ok(()),
        Some(other) => Err(BitsError::new(
            ErrorCode::InvalidArg,
            format!(
                "the job's user name and password came from a URL of {server}, and a file on {} \
                 would be sent them too: put files of other servers in another job (or set \
                 credentials for the whole job)",
                other.unwrap_or_else(|| "another server".into())
            ),
        )),
    }
}

/// `host:port` of a URL (the port its scheme implies when it names none).
/// The server of a URL as `host:port` (credentials from a URL and the per-host connection cap
/// go by it).
pub fn server_of(url: &str) -> Option<String> {
    let parsed = url::Url::parse(url).ok()?;
    Some(format!(
        "{}:{}",
        parsed.host_str()?,
        parsed.port_or_known_default()?
    ))
}

/// SetRemoteName of each `(file, url)`, all or none (the URLs are checked; the files exist). A
/// user name and password in a URL become the job's, bound to that server as in AddFile: every
/// file must then be on it; credentials already bound to a server never follow a file to
/// another.
fn set_remote_urls(job: &mut Job, urls: Vec<(usize, String)>) -> Result<(), BitsError> {
    let mut stripped = Vec::new();
    let mut seen = None;
    let mut new_host = None;
    for (file, url) in urls {
        let (url, credentials) = properties::take_url_credentials(&url)?;
        if let Some(credentials) = credentials {
            merge_url_credentials(job, &mut seen, credentials)?;
            new_host = new_host.or_else(|| server_of(&url));
        }
        stripped.push((file, url));
    }
    let required = new_host.clone().or_else(|| job.credentials_host.clone());
    if let Some(required) = &required {
        let urls = job.files.iter().enumerate().map(|(i, f)| {
            let changed = stripped.iter().find(|(file, _)| *file == i);
            changed.map_or(f.remote_url.as_str(), |(_, url)| url.as_str())
        });
        only_on_server(required, urls)?;
    }
    if let Some(credentials) = seen {
        set_url_credentials(job, credentials.0, credentials.1);
        job.credentials_host = new_host;
    }
    for (file, url) in stripped {
        file_mut(job, file)?.remote_url = url;
    }
    Ok(())
}

/// Credentials from one more URL: they must agree with the job's and with the other URLs'.
fn merge_url_credentials(
    job: &Job,
    seen: &mut Option<properties::UrlCredentials>,
    credentials: properties::UrlCredentials,
) -> Result<(), BitsError> {
    let differs_from_job = job
        .credentials
        .server
        .as_ref()
        .is_some_and(|(_, user, password)| (user, password) != (&credentials.0, &credentials.1));
    let differs_from_other = seen.as_ref().is_some_and(|other| *other != credentials);
    if differs_from_job || differs_from_other {
        return Err(BitsError::new(
            ErrorCode::InvalidArg,
            "the user name and password in a URL differ from the job's other credentials: a job \
             has one set; put files for another account in another job",
        ));
    }
    *seen = Some(credentials);
    Ok(())
}

/// The job's server credentials become the URL's (Basic unless the job already chose a scheme
/// for the same account).
fn set_url_credentials(job: &mut Job, user: String, password: String) {
    let scheme = job
        .credentials
        .server
        .as_ref()
        .map_or(properties::AuthScheme::Basic, |(scheme, _, _)| *scheme);
    job.credentials.server = Some((scheme, user, password));
}

fn untransferred_urls(job: &Job) -> Vec<String> {
    let files = job.files.iter().filter(|f| !f.transferred);
    files.map(|f| f.remote_url.clone()).collect()
}

/// Whether `change` asks to be told about the job: new notify flags, or a notify command line.
fn registers_for_notifications(change: &PropertyChange) -> bool {
    matches!(
        change,
        PropertyChange::NotifyFlags(_) | PropertyChange::NotifyCommand(Some(_))
    )
}

/// Someone registered for a job that already is where they want to hear of: it is told at once,
/// as BITS calls back a callback registered on a transferred job (the engine filters by the new
/// flags, and runs the command line).
fn late_registration(job: &Job, effects: &mut Vec<Effect>) {
    match (job.state, &job.error) {
        (JobState::Transferred, _) => effects.push(Effect::Notify(Notification::JobTransferred)),
        (JobState::Error, Some(error)) => {
            effects.push(Effect::Notify(Notification::JobError(error.clone())))
        }
        _ => {}
    }
}

fn set_property(job: &mut Job, change: PropertyChange) -> Result<(), BitsError> {
    properties::validate_change(&change)?;
    match change {
        PropertyChange::DisplayName(name) => job.display_name = name,
        PropertyChange::Description(text) => job.description = text,
        PropertyChange::Priority(priority) => job.priority = priority,
        PropertyChange::MinimumRetryDelay(delay) => {
            job.minimum_retry_delay = delay.max(MINIMUM_RETRY_DELAY_FLOOR)
        }
        PropertyChange::NoProgressTimeout(timeout) => job.no_progress_timeout = timeout,
        PropertyChange::MaxDownloadTime(limit) => job.max_download_time = limit,
        PropertyChange::NotifyFlags(flags) => job.notify_flags = super::NotifyFlags(flags),
        PropertyChange::NotifyCommand(command) => job.notify_command = command,
        PropertyChange::CustomHeaders(headers) => job.custom_headers = headers,
        PropertyChange::Credentials(credentials) => {
            job.credentials = credentials;
            job.credentials_dropped = false;
            job.credentials_host = None; // set on the job: for all its files
        }
        PropertyChange::Proxy(proxy) => job.proxy = proxy,
        PropertyChange::RedirectPolicy(policy) => job.redirect_policy = policy,
        PropertyChange::DynamicContent(on) => {
            if job.job_type != JobType::Download {
                return Err(BitsError::new(
                    ErrorCode::NotImpl,
                    "only download jobs can be dynamic content",
                ));
            }
            if job.resumed_once {
                return Err(invalid_state(
                    job,
                    "dynamic content can only be set before the first Resume",
                ));
            }
            if on && job.files.iter().any(|f| f.ranges.is_some()) {
                return Err(BitsError::new(
                    ErrorCode::InvalidArg,
                    "a job with byte ranges cannot be dynamic content",
                ));
            }
            job.dynamic_content = on;
        }
        PropertyChange::ReplaceExisting(on) => job.replace_existing = on,
        PropertyChange::CompleteWhenTransferred(on) => job.complete_when_transferred = on,
        PropertyChange::Connections(connections) => {
            if job.job_type != JobType::Download {
                return Err(BitsError::new(
                    ErrorCode::NotImpl,
                    "only download jobs use several connections (uploads send one fragment at a time)",
                ));
            }
            if let Some(n) = connections
                && !(1..=super::MAX_CONNECTIONS).contains(&n)
            {
                return Err(BitsError::new(
                    ErrorCode::InvalidArg,
                    format!(
                        "{n} connections per file: give 1 to {}",
                        super::MAX_CONNECTIONS
                    ),
                ));
            }
            job.connections = connections;
        }
        PropertyChange::ParallelFiles(n) => {
            if job.job_type != JobType::Download {
                return Err(BitsError::new(
                    ErrorCode::NotImpl,
                    "only download jobs have several files",
                ));
            }
            if !(1..=super::MAX_PARALLEL_FILES).contains(&n) {
                return Err(BitsError::new(
                    ErrorCode::InvalidArg,
                    format!("{n} files at once: give 1 to {}", super::MAX_PARALLEL_FILES),
                ));
            }
            job.parallel_files = n;
        }
        // Any job, any state but the final ones (checked above): a limit is no reason to refuse.
        PropertyChange::LimitRate(rate) => job.limit_rate = rate,
        PropertyChange::RemoteName { file, url } => {
            if job.job_type != JobType::Download {
                return Err(BitsError::new(
                    ErrorCode::NotImpl,
                    "only download files can change their URL",
                ));
            }
            file_mut(job, file)?; // refused before anything changes
            set_remote_urls(job, vec![(file, url)])?;
        }
        PropertyChange::ReplaceRemotePrefix { old, new } => {
            if job.job_type != JobType::Download {
                return Err(BitsError::new(
                    ErrorCode::NotImpl,
                    "only download files can change their URL: ReplaceRemotePrefix is for download jobs",
                ));
            }
            if old.is_empty() {
                return Err(BitsError::new(
                    ErrorCode::InvalidArg,
                    "the prefix to replace is empty: give the start of the URLs to change (e.g. http://old-mirror/)",
                ));
            }
            let mut urls = Vec::new();
            for file in job.files_with_remote_prefix(&old) {
                let url = format!("{new}{}", &job.files[file].remote_url[old.len()..]);
                properties::check_remote_url(&url).map_err(|e| {
                    BitsError::new(
                        e.code,
                        format!(
                            "file {file}: replacing the prefix gives a URL Ferry cannot use: {}",
                            e.message
                        ),
                    )
                })?;
                urls.push((file, url));
            }
            set_remote_urls(job, urls)?;
        }
        PropertyChange::ReplyFileName(path) => {
            if job.job_type != JobType::UploadReply {
                return Err(BitsError::new(
                    ErrorCode::NotImpl,
                    "only upload-reply jobs have a reply file",
                ));
            }
            if !path.is_absolute() || path.file_name().is_none() {
                return Err(BitsError::new(
                    ErrorCode::InvalidArg,
                    format!("reply file name {path:?} must be an absolute path to a file"),
                ));
            }
            if job.reply.download.is_some() {
                return Err(invalid_state(
                    job,
                    "the reply download has begun: its file name can no longer change",
                ));
            }
            job.reply.file_name = Some(path);
        }
        PropertyChange::Touch => {}
    }
    Ok(())
}
