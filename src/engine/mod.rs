//! The engine: one tokio task (an actor) owns every job. Commands come in on a channel, each with
//! a reply; events go out on a broadcast channel. Transfer workers run beside it and report back.
//! Every change of a job goes through [`crate::job::apply`].

pub mod bits_upload;
mod clock;
pub(crate) mod files;
mod http;
mod network;
mod scheduler;
mod transfer;
mod upload;
mod writer;

pub use clock::{Clock, ManualClock, SystemClock};

use crate::config::Config;
use crate::job::{
    self, BitsError, Effect, ErrorClass, ErrorCode, ErrorContext, Event, Failure, Job, JobError,
    JobId, JobState, JobType, NewFile, Notification, NotifyFlags, Priority, PropertyChange,
    REPLY_FILE, Timestamp, later,
};
use crate::platform::User;
use crate::store::{Quarantined, Store, StoreError};
use http::{ClientKey, build_client};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::time::Instant;
use transfer::{End, Final, Report, WorkerMessage};

/// Jobs that reached ACKNOWLEDGED or CANCELLED stay visible (read-only) this many at a time, so
/// that a client that looks just after the end still sees how the job ended.
const FINISHED_KEPT: usize = 100;

/// The most GetReplyData returns in memory (spec §0.1: 1 MB).
pub const REPLY_DATA_LIMIT: u64 = 1 << 20;

fn reply_unreadable(path: &std::path::Path, e: &std::io::Error) -> BitsError {
    let (code, _) = files::classify_io(e);
    BitsError::new(
        code,
        format!("cannot read the reply {}: {e}", path.display()),
    )
}

/// How often changed progress is written to the store.
const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(1);

pub struct EngineOptions {
    pub data_dir: PathBuf,
    pub config: Config,
    pub clock: Arc<dyn Clock>,
    pub user: User,
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
        }
    }
}

enum Op {
    Create(JobSpec),
    AddFiles {
        job: JobId,
        files: Vec<NewFile>,
    },
    Resume(JobId),
    Suspend(JobId),
    Cancel(JobId),
    Complete(JobId),
    Set {
        job: JobId,
        change: PropertyChange,
    },
    Get(JobId),
    List {
        finished: bool,
    },
    Count,
    Network {
        up: bool,
    },
    Validate {
        job: JobId,
        file: usize,
        valid: bool,
    },
    Configure(Box<Config>),
    /// Where the reply of an upload-reply job is now, and its size.
    ReplyFile(JobId),
    Shutdown,
}

enum Reply {
    Id(JobId),
    Done,
    Completed(CompleteOutcome),
    Cancelled(CancelOutcome),
    Job(Box<Job>),
    Jobs(Vec<Job>),
    Count(usize),
    FileAt(PathBuf, u64),
}

struct Command {
    op: Op,
    reply: oneshot::Sender<Result<Reply, BitsError>>,
}

/// The way in to a running engine. Cheap to clone.
#[derive(Clone)]
pub struct EngineHandle {
    commands: mpsc::Sender<Command>,
    events: broadcast::Sender<EngineEvent>,
}

fn stopped() -> BitsError {
    BitsError::new(ErrorCode::LocalIo, "the Ferry engine has stopped")
}

fn unexpected() -> BitsError {
    BitsError::new(ErrorCode::LocalIo, "the engine gave an unexpected reply")
}

/// Sends a command to the actor and waits for its reply.
async fn call(commands: &mpsc::Sender<Command>, op: Op) -> Result<Reply, BitsError> {
    let (reply, answer) = oneshot::channel();
    commands
        .send(Command { op, reply })
        .await
        .map_err(|_| stopped())?;
    answer.await.map_err(|_| stopped())?
}

impl EngineHandle {
    async fn call(&self, op: Op) -> Result<Reply, BitsError> {
        call(&self.commands, op).await
    }

    async fn call_done(&self, op: Op) -> Result<(), BitsError> {
        match self.call(op).await? {
            Reply::Done => Ok(()),
            _ => Err(unexpected()),
        }
    }

    /// Listens to the engine's events from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<EngineEvent> {
        self.events.subscribe()
    }

    /// CreateJob (T1): a new SUSPENDED job, after the quota checks of spec §5.
    pub async fn create_job(
        &self,
        name: &str,
        job_type: JobType,
        priority: Option<Priority>,
    ) -> Result<JobId, BitsError> {
        self.create(JobSpec {
            priority,
            ..JobSpec::new(name, job_type)
        })
        .await
    }

    /// Creates a job with its properties and files at once (see [`JobSpec`]).
    pub async fn create(&self, spec: JobSpec) -> Result<JobId, BitsError> {
        match self.call(Op::Create(spec)).await? {
            Reply::Id(id) => Ok(id),
            _ => Err(unexpected()),
        }
    }

    pub async fn add_files(&self, job: JobId, files: Vec<NewFile>) -> Result<(), BitsError> {
        self.call_done(Op::AddFiles { job, files }).await
    }

    pub async fn resume(&self, job: JobId) -> Result<(), BitsError> {
        self.call_done(Op::Resume(job)).await
    }

    pub async fn suspend(&self, job: JobId) -> Result<(), BitsError> {
        self.call_done(Op::Suspend(job)).await
    }

    pub async fn cancel(&self, job: JobId) -> Result<CancelOutcome, BitsError> {
        match self.call(Op::Cancel(job)).await? {
            Reply::Cancelled(outcome) => Ok(outcome),
            _ => Err(unexpected()),
        }
    }

    pub async fn complete(&self, job: JobId) -> Result<CompleteOutcome, BitsError> {
        match self.call(Op::Complete(job)).await? {
            Reply::Completed(outcome) => Ok(outcome),
            _ => Err(unexpected()),
        }
    }

    pub async fn set(&self, job: JobId, change: PropertyChange) -> Result<(), BitsError> {
        self.call_done(Op::Set { job, change }).await
    }

    pub async fn job(&self, job: JobId) -> Result<Job, BitsError> {
        match self.call(Op::Get(job)).await? {
            Reply::Job(job) => Ok(*job),
            _ => Err(unexpected()),
        }
    }

    /// Every job still in the queue (final jobs leave it), oldest first.
    pub async fn jobs(&self) -> Result<Vec<Job>, BitsError> {
        self.list(false).await
    }

    /// How many jobs are in the queue (without copying them).
    pub async fn queue_len(&self) -> Result<usize, BitsError> {
        match self.call(Op::Count).await? {
            Reply::Count(count) => Ok(count),
            _ => Err(unexpected()),
        }
    }

    /// The queue, plus with `finished` the last jobs that ended (ACKNOWLEDGED or CANCELLED)
    /// while this engine ran.
    pub async fn list(&self, finished: bool) -> Result<Vec<Job>, BitsError> {
        match self.call(Op::List { finished }).await? {
            Reply::Jobs(jobs) => Ok(jobs),
            _ => Err(unexpected()),
        }
    }

    /// SetValidationState (spec §7.13): the owner checked file `file` of the job in its temp file
    /// (`JobFile::temp_path`) after FileTransferred. Rejecting it puts the job in ERROR
    /// (BG_E_VALIDATION_FAILED); the next Resume downloads that file again.
    pub async fn set_validation(
        &self,
        job: JobId,
        file: usize,
        valid: bool,
    ) -> Result<(), BitsError> {
        self.call_done(Op::Validate { job, file, valid }).await
    }

    /// Applies a new configuration at once: quotas, defaults of new jobs, timers (a shorter
    /// inactivity timeout cancels the jobs already past it), the time slice, and the HTTP timeouts
    /// and certificates of transfers that start from now on. `watch_network` is read only at start.
    pub async fn configure(&self, config: Config) -> Result<(), BitsError> {
        self.call_done(Op::Configure(Box::new(config))).await
    }

    /// Network connectivity changed (T14/T15).
    pub async fn network_changed(&self, up: bool) -> Result<(), BitsError> {
        self.call_done(Op::Network { up }).await
    }

    /// GetReplyData (spec §2.3, §12 D11): the reply of an upload-reply job, read in memory —
    /// in TRANSFERRED from its temp file, after Complete from the reply file. At most
    /// [`REPLY_DATA_LIMIT`] bytes; a larger reply is BG_E_TOO_LARGE (save it with
    /// [`Self::save_reply`]).
    pub async fn reply_data(&self, job: JobId) -> Result<Vec<u8>, BitsError> {
        let (path, size) = self.reply_file(job).await?;
        if size > REPLY_DATA_LIMIT {
            return Err(BitsError::new(
                ErrorCode::TooLarge,
                format!(
                    "the reply has {size} bytes; at most {REPLY_DATA_LIMIT} are returned in \
                     memory: save it to a file instead (ferry reply JOB --out FILE)"
                ),
            ));
        }
        tokio::fs::read(&path)
            .await
            .map_err(|e| reply_unreadable(&path, &e))
    }

    /// Copies the reply of an upload-reply job to `to` (which must not exist yet), whatever
    /// its size. Same states as [`Self::reply_data`]. Returns the bytes copied.
    pub async fn save_reply(&self, job: JobId, to: PathBuf) -> Result<u64, BitsError> {
        let (path, _) = self.reply_file(job).await?;
        tokio::task::spawn_blocking(move || files::copy_new(&path, &to))
            .await
            .map_err(|e| BitsError::new(ErrorCode::LocalIo, format!("the copy stopped: {e}")))?
    }

    async fn reply_file(&self, job: JobId) -> Result<(PathBuf, u64), BitsError> {
        match self.call(Op::ReplyFile(job)).await? {
            Reply::FileAt(path, size) => Ok((path, size)),
            _ => Err(unexpected()),
        }
    }

    /// Stops every transfer at a checkpoint, saves everything and releases the store.
    pub async fn shutdown(&self) -> Result<(), BitsError> {
        self.call_done(Op::Shutdown).await
    }
}

/// Opens the store, loads the jobs and starts the engine on the current tokio runtime.
pub fn start(options: EngineOptions) -> Result<(EngineHandle, StartReport), EngineError> {
    let store = Store::open(&options.data_dir)?;
    let (loaded, quarantined) = store.load()?;
    let (commands_tx, commands) = mpsc::channel(64);
    let (events, _) = broadcast::channel(4096);
    let (reports_tx, reports) = mpsc::unbounded_channel();
    let (notify_tx, notify_exits) = mpsc::unbounded_channel();
    let now = options.clock.now();
    let mut jobs = HashMap::new();
    let mut dirty = HashSet::new();
    for mut job in loaded {
        if job.state.is_final() {
            let _ = store.remove(job.id);
            continue;
        }
        let before = job.clone();
        // Transfers cut by the stop resume from their checkpoint.
        if job::apply(&mut job, Event::Recovered, now).is_ok() && job != before {
            dirty.insert(job.id);
        }
        jobs.insert(job.id, job);
    }
    let report = StartReport {
        jobs_loaded: jobs.len(),
        quarantined,
    };
    let actor = Actor {
        jobs,
        store,
        user: options.user,
        config: options.config,
        clock: options.clock,
        events: events.clone(),
        reports_tx,
        notify_tx,
        workers: HashMap::new(),
        next_run: 0,
        clients: HashMap::new(),
        dirty,
        last_flush: Instant::now(),
        modifications: HashMap::new(),
        slice_started: HashMap::new(),
        notify_retry: HashMap::new(),
        network_up: true,
        finished: VecDeque::new(),
    };
    let watch_network = actor.config.watch_network;
    let weak = commands_tx.downgrade();
    tokio::spawn(actor.run(commands, reports, notify_exits));
    if watch_network {
        tokio::spawn(network::watch(weak));
    }
    Ok((
        EngineHandle {
            commands: commands_tx,
            events,
        },
        report,
    ))
}

struct RunningWorker {
    run: u64,
    /// The last file the worker was given; files added later need a new worker.
    last_file: usize,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<Final>,
}

#[derive(Default)]
struct ModificationPacing {
    last: Option<Instant>,
    pending: bool,
}

/// A notify command line finished (spec §7.6).
struct NotifyExited {
    job: JobId,
    state: JobState,
    success: bool,
}

struct Actor {
    jobs: HashMap<JobId, Job>,
    /// The last jobs that reached a final state, oldest first (see [`FINISHED_KEPT`]).
    finished: VecDeque<Job>,
    store: Store,
    user: User,
    config: Config,
    clock: Arc<dyn Clock>,
    events: broadcast::Sender<EngineEvent>,
    reports_tx: mpsc::UnboundedSender<WorkerMessage>,
    notify_tx: mpsc::UnboundedSender<NotifyExited>,
    workers: HashMap<JobId, RunningWorker>,
    next_run: u64,
    clients: HashMap<ClientKey, reqwest::Client>,
    /// Jobs whose progress changed since they were last saved.
    dirty: HashSet<JobId>,
    last_flush: Instant,
    modifications: HashMap<JobId, ModificationPacing>,
    /// When each background job last got a time slice (round robin, spec §6).
    slice_started: HashMap<JobId, Timestamp>,
    /// Notify command lines that failed and run again after the retry delay (spec §7.6).
    notify_retry: HashMap<JobId, (Timestamp, JobState)>,
    network_up: bool,
}

/// What a download worker needs of one file (or of the reply, [`REPLY_FILE`]).
fn file_work(index: usize, file: &job::JobFile) -> transfer::FileWork {
    transfer::FileWork {
        index,
        url: file.remote_url.clone(),
        temp_path: file.temp_path.clone(),
        ranges: file.ranges.clone(),
        start_offset: file.bytes_checkpointed,
        validators: file.validators.clone(),
    }
}

/// Where an upload job stands, derived from the job alone.
enum UploadPhase<'a> {
    /// Fragments to send, or the final answer (and its reply URL) still to get.
    Send,
    /// Upload-reply: the reply to download.
    FetchReply(&'a job::JobFile),
    /// Upload-reply: the server sent no reply; the reply file is to be written empty.
    EmptyReply,
    Done,
}

fn upload_phase(job: &Job) -> UploadPhase<'_> {
    let sent = job.files.first().is_some_and(|f| f.transferred);
    let wants_reply = job.job_type == JobType::UploadReply;
    match &job.reply.download {
        _ if !sent => UploadPhase::Send,
        None if wants_reply => UploadPhase::Send,
        Some(reply) if reply.transferred || !wants_reply => UploadPhase::Done,
        Some(reply) if reply.remote_url.is_empty() => UploadPhase::EmptyReply,
        Some(reply) => UploadPhase::FetchReply(reply),
        None => UploadPhase::Done,
    }
}

/// A file finished by a worker: its final (flushed) size, then the transfer itself.
fn file_done(file: usize, transferred: u64) -> [Event; 2] {
    let progress = Event::Progress {
        file,
        transferred,
        checkpointed: transferred,
    };
    [progress, Event::FileTransferred { file }]
}

/// QUEUED, CONNECTING and TRANSFERRING all come back as QUEUED after a restart, so moves between
/// them can wait for the next checkpoint.
fn in_queue(state: JobState) -> bool {
    matches!(
        state,
        JobState::Queued | JobState::Connecting | JobState::Transferring
    )
}

/// Whether a change is saved at once or with the next checkpoint.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Persist {
    Now,
    Checkpoint,
}

impl Actor {
    async fn run(
        mut self,
        mut commands: mpsc::Receiver<Command>,
        mut reports: mpsc::UnboundedReceiver<WorkerMessage>,
        mut notify_exits: mpsc::UnboundedReceiver<NotifyExited>,
    ) {
        loop {
            self.on_time().await;
            self.schedule().await;
            self.flush(false);
            self.publish_modifications(false);
            let clock = self.clock.clone();
            let model_deadline = self.next_model_deadline();
            let io_deadline = self.next_io_deadline();
            tokio::select! {
                command = commands.recv() => {
                    let Some(command) = command else { break };
                    if matches!(command.op, Op::Shutdown) {
                        self.shutdown().await;
                        drop(self); // releases the store lock before the caller hears back
                        let _ = command.reply.send(Ok(Reply::Done));
                        return;
                    }
                    let result = self.handle(command.op).await;
                    let _ = command.reply.send(result);
                }
                Some(message) = reports.recv() => self.on_report(message).await,
                Some(exited) = notify_exits.recv() => self.on_notify_exited(exited),
                _ = clock.sleep_until(model_deadline.unwrap_or(Timestamp::MAX_UTC)), if model_deadline.is_some() => {}
                _ = tokio::time::sleep_until(io_deadline.unwrap_or_else(Instant::now)), if io_deadline.is_some() => {}
            }
        }
        self.shutdown().await;
    }

    fn now(&self) -> Timestamp {
        self.clock.now()
    }

    fn emit(&self, event: EngineEvent) {
        let _ = self.events.send(event);
    }

    fn job(&self, id: JobId) -> Result<&Job, BitsError> {
        if let Some(job) = self.jobs.get(&id) {
            return Ok(job);
        }
        match self.finished.iter().find(|j| j.id == id) {
            Some(job) => Err(BitsError::new(
                ErrorCode::InvalidState,
                format!(
                    "job {id} is {}: it has left the queue and can no longer be changed",
                    job.state
                ),
            )),
            None => Err(BitsError::new(
                ErrorCode::NotFound,
                format!("no job {id}: it may have been completed or cancelled"),
            )),
        }
    }

    async fn handle(&mut self, op: Op) -> Result<Reply, BitsError> {
        match op {
            Op::Create(spec) => self.create(spec),
            Op::AddFiles { job, files } => {
                files::check_new_files(self.job(job)?, &files)?;
                let limits = self.config.limits(self.user.is_admin());
                let result = self
                    .apply(job, Event::AddFiles { files, limits }, Persist::Now)
                    .await;
                if let Err(e) = &result {
                    self.note_quota(e);
                }
                result.map(|_| Reply::Done)
            }
            Op::Resume(job) => {
                self.name_reply_file(job).await?;
                self.apply(job, Event::Resume, Persist::Now)
                    .await
                    .map(|_| Reply::Done)
            }
            Op::Suspend(job) => self
                .apply(job, Event::Suspend, Persist::Now)
                .await
                .map(|_| Reply::Done),
            Op::Cancel(job) => {
                let clean = self.apply(job, Event::Cancel, Persist::Now).await?;
                Ok(Reply::Cancelled(if clean {
                    CancelOutcome::Cancelled
                } else {
                    CancelOutcome::UnableToDeleteFiles
                }))
            }
            Op::Complete(job) => self.complete(job).await.map(Reply::Completed),
            Op::Set { job, change } => {
                if let PropertyChange::ReplyFileName(path) = &change {
                    // The model's rules first (type, absolute path, state), then the file system.
                    let mut probe = self.job(job)?.clone();
                    job::apply(&mut probe, Event::Set(change.clone()), self.now())?;
                    files::check_destination(&probe, path)?;
                }
                self.apply(job, Event::Set(change), Persist::Now)
                    .await
                    .map(|_| Reply::Done)
            }
            Op::Get(id) => match self.finished.iter().find(|j| j.id == id) {
                Some(job) => Ok(Reply::Job(Box::new(job.clone()))),
                None => self.job(id).map(|j| Reply::Job(Box::new(j.clone()))),
            },
            Op::List { finished } => {
                let mut jobs: Vec<Job> = self.jobs.values().cloned().collect();
                if finished {
                    jobs.extend(self.finished.iter().cloned());
                }
                jobs.sort_by_key(|j| (j.times.created, j.id));
                Ok(Reply::Jobs(jobs))
            }
            Op::Count => Ok(Reply::Count(self.jobs.len())),
            Op::Network { up } => {
                self.network_up = up;
                let event = if up {
                    Event::NetworkRestored
                } else {
                    Event::NetworkLost
                };
                let ids: Vec<JobId> = self.jobs.keys().copied().collect();
                for id in ids {
                    let _ = self.apply(id, event.clone(), Persist::Now).await;
                }
                Ok(Reply::Done)
            }
            Op::Validate { job, file, valid } => self
                .apply(job, Event::Validate { file, valid }, Persist::Now)
                .await
                .map(|_| Reply::Done),
            Op::Configure(config) => {
                self.config = *config;
                // Transfers that start from now on use the new timeouts and certificates.
                self.clients.clear();
                Ok(Reply::Done)
            }
            Op::ReplyFile(id) => self.reply_location(id),
            Op::Shutdown => Ok(Reply::Done),
        }
    }

    /// Where the reply is: its temp file in TRANSFERRED, its file after Complete (D11).
    fn reply_location(&self, id: JobId) -> Result<Reply, BitsError> {
        let job = match self.finished.iter().rev().find(|j| j.id == id) {
            Some(job) => job,
            None => self.job(id)?,
        };
        if job.job_type != JobType::UploadReply {
            return Err(BitsError::new(
                ErrorCode::NotImpl,
                format!(
                    "job {id} is {}: only upload-reply jobs have a reply",
                    job.job_type.name()
                ),
            ));
        }
        let reply = job.reply.download.as_ref().filter(|r| r.transferred);
        let path = match (job.state, reply) {
            (JobState::Transferred, Some(reply)) if !reply.completed => reply.temp_path.clone(),
            (JobState::Acknowledged | JobState::Transferred, Some(reply)) => {
                reply.local_path.clone()
            }
            _ => {
                return Err(BitsError::new(
                    ErrorCode::InvalidState,
                    format!(
                        "job {id} is {}: the reply can be read once the job is TRANSFERRED",
                        job.state
                    ),
                ));
            }
        };
        let size = std::fs::metadata(&path)
            .map_err(|e| reply_unreadable(&path, &e))?
            .len();
        Ok(Reply::FileAt(path, size))
    }

    fn create(&mut self, spec: JobSpec) -> Result<Reply, BitsError> {
        let limits = self.config.limits(self.user.is_admin());
        if let Err(e) = job::check_create_quota(self.jobs.values(), &self.user.name, &limits) {
            self.note_quota(&e);
            return Err(e);
        }
        let mut defaults = self.config.job_defaults();
        if let Some(priority) = spec.priority {
            defaults.priority = priority;
        }
        let now = self.now();
        let mut job = Job::new(
            JobId::new_random(),
            spec.job_type,
            &spec.name,
            &self.user.name,
            &defaults,
            now,
        )?;
        job::apply(
            &mut job,
            Event::Set(PropertyChange::Description(spec.description)),
            now,
        )?;
        job::apply(
            &mut job,
            Event::Set(PropertyChange::ReplaceExisting(spec.replace_existing)),
            now,
        )?;
        if let Some(reply) = spec.reply_file {
            job::apply(
                &mut job,
                Event::Set(PropertyChange::ReplyFileName(reply.clone())),
                now,
            )?;
            files::check_destination(&job, &reply)?;
        }
        if !spec.files.is_empty() {
            files::check_new_files(&job, &spec.files)?;
            let result = job::apply(
                &mut job,
                Event::AddFiles {
                    files: spec.files,
                    limits,
                },
                now,
            );
            if let Err(e) = &result {
                self.note_quota(e);
            }
            result?;
        }
        let id = job.id;
        self.save(&job)?;
        self.jobs.insert(id, job);
        self.modifications.entry(id).or_default().pending = true;
        Ok(Reply::Id(id))
    }

    /// Publishes QuotaExceeded when a call failed on a quota (spec §5), so the GUI can show it.
    fn note_quota(&self, error: &BitsError) {
        if error.code.is_quota() {
            self.emit(EngineEvent::QuotaExceeded {
                code: error.code,
                message: error.message.clone(),
            });
        }
    }

    fn save(&self, job: &Job) -> Result<(), BitsError> {
        self.store
            .save(job)
            .map_err(|e| BitsError::new(ErrorCode::LocalIo, e.to_string()))
    }

    /// Applies `event` to a job and carries out the effects. Returns false if some temp files
    /// could not be deleted.
    async fn apply(
        &mut self,
        id: JobId,
        event: Event,
        persist: Persist,
    ) -> Result<bool, BitsError> {
        self.job(id)?; // the precise error for an unknown or finished job
        let now = self.now();
        let from_worker = matches!(
            event,
            Event::Connected
                | Event::FileInfo { .. }
                | Event::FileRestarted { .. }
                | Event::Progress { .. }
                | Event::FileTransferred { .. }
                | Event::Failed(_)
                | Event::UploadSession(_)
                | Event::UploadHost(_)
                | Event::ReplyLocated { .. }
        );
        if !from_worker && self.workers.contains_key(&id) {
            // If the event stops the transfer, stop the worker first so that its last bytes
            // are counted before the job changes.
            let mut probe = self.job(id)?.clone();
            if job::apply(&mut probe, event.clone(), now)?.contains(&Effect::StopTransfer) {
                self.stop_worker(id).await;
            }
        }
        let job = self
            .jobs
            .get_mut(&id)
            .ok_or_else(|| BitsError::from_code(ErrorCode::NotFound))?;
        let from = job.state;
        let effects = job::apply(job, event, now)?;
        Ok(self.after_change(id, from, effects, persist).await)
    }

    async fn after_change(
        &mut self,
        id: JobId,
        from: JobState,
        effects: Vec<Effect>,
        persist: Persist,
    ) -> bool {
        let mut clean = true;
        for effect in effects {
            match effect {
                Effect::StopTransfer => self.stop_worker(id).await,
                Effect::DeleteTempFiles(paths) => clean &= files::delete_temp_files(&paths),
                Effect::Commit(_) => {} // carried out by `complete`
                Effect::Notify(notification) => self.notify(id, notification),
                Effect::EndSession {
                    url,
                    session,
                    cancel,
                } => self.end_session(id, url, session, cancel),
            }
        }
        let Some(job) = self.jobs.get(&id) else {
            return clean;
        };
        let to = job.state;
        if to != from {
            self.emit(EngineEvent::StateChanged { job: id, from, to });
        }
        // JobModification is not raised for transitions into ERROR or TRANSFERRED (spec §7.5).
        if !(to != from && matches!(to, JobState::Error | JobState::Transferred)) {
            self.modifications.entry(id).or_default().pending = true;
        }
        if to.is_final() {
            if let Err(e) = self.store.remove(id) {
                tracing::error!(job = %id, "cannot remove the job file: {e}");
            }
            if let Some(job) = self.jobs.remove(&id) {
                if self.finished.len() == FINISHED_KEPT {
                    self.finished.pop_front();
                }
                self.finished.push_back(job);
            }
            self.dirty.remove(&id);
            self.slice_started.remove(&id);
            self.notify_retry.remove(&id);
            self.publish_modifications(true);
            self.modifications.remove(&id);
        } else if persist == Persist::Now || (to != from && !(in_queue(from) && in_queue(to))) {
            if let Err(e) = self.store.save(job) {
                tracing::error!(job = %id, "cannot save the job: {e}");
            }
            self.dirty.remove(&id);
        } else {
            self.dirty.insert(id);
        }
        clean
    }

    fn notify(&mut self, id: JobId, notification: Notification) {
        let Some(job) = self.jobs.get(&id) else {
            return;
        };
        let flags = job.notify_flags;
        let event = match &notification {
            Notification::JobTransferred => EngineEvent::JobTransferred { job: id },
            Notification::JobError(error) => EngineEvent::JobError {
                job: id,
                error: error.clone(),
            },
            Notification::FileTransferred(file) => EngineEvent::FileTransferred {
                job: id,
                file: *file,
            },
            Notification::InactivityWarning { deadline } => EngineEvent::InactivityWarning {
                job: id,
                deadline: *deadline,
            },
            Notification::InactivityCancelled => EngineEvent::InactivityCancelled { job: id },
        };
        self.emit(event);
        let wants_command = match notification {
            Notification::JobTransferred => flags.wants(NotifyFlags::JOB_TRANSFERRED),
            Notification::JobError(_) => flags.wants(NotifyFlags::JOB_ERROR),
            _ => false,
        };
        if wants_command {
            self.run_notify_command(id);
        }
    }

    /// Runs the job's notify command line (spec §7.6): full path, no shell, argv[0] from the
    /// parameters; a non-zero exit runs it again after the minimum retry delay.
    fn run_notify_command(&mut self, id: JobId) {
        let Some(job) = self.jobs.get(&id) else {
            return;
        };
        let Some(command) = job.notify_command.clone() else {
            return;
        };
        let state = job.state;
        let mut process = tokio::process::Command::new(&command.program);
        if let Some((arg0, rest)) = command.args.split_first() {
            process.arg0(arg0).args(rest);
        }
        process
            .env("FERRY_JOB_ID", id.to_string())
            .env("FERRY_JOB_STATE", state.name())
            .stdin(std::process::Stdio::null())
            .kill_on_drop(false);
        let exits = self.notify_tx.clone();
        match process.spawn() {
            Ok(mut child) => {
                tokio::spawn(async move {
                    let success = child.wait().await.is_ok_and(|s| s.success());
                    let _ = exits.send(NotifyExited {
                        job: id,
                        state,
                        success,
                    });
                });
            }
            Err(e) => {
                tracing::warn!(job = %id, program = %command.program, "cannot run the notify command: {e}");
                let _ = exits.send(NotifyExited {
                    job: id,
                    state,
                    success: false,
                });
            }
        }
    }

    fn on_notify_exited(&mut self, exited: NotifyExited) {
        let NotifyExited {
            job,
            state,
            success,
        } = exited;
        if success {
            self.notify_retry.remove(&job);
        } else if let Some(j) = self.jobs.get(&job)
            && j.state == state
        {
            let at = later(self.now(), j.minimum_retry_delay);
            self.notify_retry.insert(job, (at, state));
            self.emit(EngineEvent::NotifyCommandFailed { job, retry_at: at });
        }
    }

    async fn on_report(&mut self, message: WorkerMessage) {
        let WorkerMessage {
            job: id,
            run,
            file,
            report,
        } = message;
        if self.workers.get(&id).is_none_or(|w| w.run != run) {
            return; // a report from a worker that was stopped meanwhile
        }
        let result = match report {
            Report::Connected => self.apply(id, Event::Connected, Persist::Checkpoint).await,
            Report::FileInfo {
                bytes_total,
                validators,
            } => {
                let event = Event::FileInfo {
                    file,
                    bytes_total,
                    validators,
                };
                self.apply(id, event, Persist::Checkpoint).await
            }
            Report::Restarted => {
                self.apply(id, Event::FileRestarted { file }, Persist::Now)
                    .await
            }
            Report::Progress {
                transferred,
                checkpointed,
            } => {
                // A stalled transfer repeats its last report: nothing changed, so no
                // JobModification, no save.
                let unchanged = self
                    .jobs
                    .get(&id)
                    .and_then(|job| job.files.get(file))
                    .is_some_and(|f| {
                        f.bytes_transferred == transferred
                            && f.bytes_checkpointed == checkpointed.min(transferred)
                    });
                if unchanged {
                    return;
                }
                let event = Event::Progress {
                    file,
                    transferred,
                    checkpointed,
                };
                self.apply(id, event, Persist::Checkpoint).await
            }
            Report::Redirected { url } => {
                let event = Event::Set(PropertyChange::RemoteName { file, url });
                self.apply(id, event, Persist::Checkpoint).await
            }
            Report::Done { transferred } => {
                if self.workers.get(&id).is_some_and(|w| w.last_file == file) {
                    self.workers.remove(&id);
                }
                let [progress, done] = file_done(file, transferred);
                let mut result = self.apply(id, progress, Persist::Checkpoint).await;
                if result.is_ok() {
                    result = self.apply(id, done, Persist::Checkpoint).await;
                }
                if let Err(refused) = &result
                    && refused.code == ErrorCode::InvalidServerResponse
                {
                    // The model refused a file whose size is not the announced one: the job
                    // retries it later rather than going on as if it were there.
                    self.stop_worker(id).await;
                    let error = JobError::new(
                        ErrorContext::RemoteFile,
                        ErrorCode::InvalidServerResponse,
                        Some(file),
                    )
                    .with_description(refused.message.clone());
                    let failure = Failure {
                        error,
                        class: ErrorClass::Transient,
                        retry_after: None,
                    };
                    return self.report_failed(id, failure).await;
                }
                self.continue_job(id).await;
                result
            }
            Report::Failed(failure) => {
                self.workers.remove(&id);
                self.apply(id, Event::Failed(failure), Persist::Now).await
            }
            Report::Session(session) => {
                self.apply(id, Event::UploadSession(session), Persist::Now)
                    .await
            }
            Report::Host(host) => self.apply(id, Event::UploadHost(host), Persist::Now).await,
            Report::ReplyLocated { url } => {
                self.apply(id, Event::ReplyLocated { url }, Persist::Now)
                    .await
            }
        };
        if let Err(e) = result {
            tracing::warn!(job = %id, "worker report not applied: {e}");
        }
    }

    async fn report_failed(&mut self, id: JobId, failure: Failure) {
        if let Err(e) = self.apply(id, Event::Failed(failure), Persist::Now).await {
            tracing::warn!(job = %id, "failure not applied: {e}");
        }
    }

    /// Starts the next file of a job that is still transferring.
    async fn continue_job(&mut self, id: JobId) {
        let running = self.jobs.get(&id).is_some_and(|j| j.state.is_running());
        if running && let Some(result) = self.write_empty_reply(id) {
            let events = match result {
                Ok(()) => file_done(REPLY_FILE, 0).to_vec(),
                Err(failure) => vec![Event::Failed(failure)],
            };
            for event in events {
                if let Err(e) = self.apply(id, event, Persist::Now).await {
                    tracing::warn!(job = %id, "empty reply not recorded: {e}");
                }
            }
            return;
        }
        if running
            && !self.workers.contains_key(&id)
            && let Err(failure) = self.spawn_worker(id)
        {
            let _ = self.apply(id, Event::Failed(failure), Persist::Now).await;
        }
    }

    /// Stops a job's worker and counts what it wrote, or what it finished just before.
    async fn stop_worker(&mut self, id: JobId) {
        let Some(worker) = self.workers.remove(&id) else {
            return;
        };
        let _ = worker.stop.send(true);
        let outcome = match worker.task.await {
            Ok(outcome) => outcome,
            Err(e) => {
                tracing::error!(job = %id, "transfer worker crashed: {e}");
                return;
            }
        };
        // The upload session and reply first: files done below may depend on them.
        let mut events = Vec::new();
        if let Some(upload) = outcome.upload
            && let Some(job) = self.jobs.get(&id)
        {
            if job.upload_session != upload.session {
                events.push(Event::UploadSession(upload.session));
            }
            if job.upload_host != upload.host {
                events.push(Event::UploadHost(upload.host));
            }
            if let Some(url) = upload.reply {
                events.push(Event::ReplyLocated { url });
            }
        }
        // Files whose Done report was not applied yet count now, with their size.
        events.extend(
            outcome
                .done
                .into_iter()
                .filter(|&(file, _)| {
                    self.jobs
                        .get(&id)
                        .is_some_and(|j| j.files.get(file).is_some_and(|f| !f.transferred))
                })
                .flat_map(|(file, transferred)| file_done(file, transferred)),
        );
        match outcome.end {
            End::AllDone => {}
            End::Stopped(file, stopped) => events.push(Event::Progress {
                file,
                transferred: stopped.transferred,
                checkpointed: stopped.checkpointed,
            }),
            End::Failed(failure) => events.push(Event::Failed(failure)),
        }
        // The worker is gone, so these applies stop nothing.
        for event in events {
            if let Err(e) = Box::pin(self.apply(id, event, Persist::Now)).await {
                tracing::warn!(job = %id, "final worker state not applied: {e}");
            }
        }
    }

    fn client(&mut self, key: ClientKey) -> Result<reqwest::Client, Failure> {
        if let Some(client) = self.clients.get(&key) {
            return Ok(client.clone());
        }
        let client = build_client(&key, &self.config).map_err(|(code, message)| Failure {
            error: JobError::new(ErrorContext::GeneralTransport, code, None)
                .with_description(message),
            class: ErrorClass::Fatal,
            retry_after: None,
        })?;
        self.clients.insert(key, client.clone());
        Ok(client)
    }

    fn spawn_worker(&mut self, id: JobId) -> Result<(), Failure> {
        let Some(job) = self.jobs.get(&id) else {
            return Ok(());
        };
        if job.job_type.is_upload() {
            return self.spawn_upload_worker(id);
        }
        let files: Vec<transfer::FileWork> = job
            .files
            .iter()
            .enumerate()
            .filter(|(_, f)| !f.transferred)
            .map(|(index, file)| file_work(index, file))
            .collect();
        self.start_download(id, files)
    }

    /// Starts a download worker for these files of the job, with the job's settings.
    fn start_download(&mut self, id: JobId, files: Vec<transfer::FileWork>) -> Result<(), Failure> {
        let Some(last_file) = files.last().map(|f| f.index) else {
            return Ok(());
        };
        let client = self.job_client(id, false)?;
        let Some(job) = self.jobs.get(&id) else {
            return Ok(());
        };
        let mut task = transfer::JobTask {
            job: id,
            run: 0, // given by start_worker
            dynamic: job.dynamic_content,
            headers: job.custom_headers.clone(),
            credentials: job.credentials.clone(),
            redirect: job.redirect_policy,
            client,
            files,
        };
        self.start_worker(id, last_file, |run, reports, stop| {
            task.run = run;
            transfer::run(task, reports, stop)
        });
        Ok(())
    }

    /// Spawns a worker as the job's next run (the number its reports carry); `last_file` is the
    /// last file it was given (a Done report for it means the worker has ended).
    fn start_worker<F>(
        &mut self,
        id: JobId,
        last_file: usize,
        worker: impl FnOnce(u64, mpsc::UnboundedSender<WorkerMessage>, watch::Receiver<bool>) -> F,
    ) where
        F: std::future::Future<Output = Final> + Send + 'static,
    {
        self.next_run += 1;
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(worker(self.next_run, self.reports_tx.clone(), stop_rx));
        self.workers.insert(
            id,
            RunningWorker {
                run: self.next_run,
                last_file,
                stop,
                task,
            },
        );
    }

    fn job_client(&mut self, id: JobId, patient: bool) -> Result<reqwest::Client, Failure> {
        let Some(job) = self.jobs.get(&id) else {
            return Err(Failure {
                error: JobError::new(ErrorContext::GeneralQueueManager, ErrorCode::NotFound, None),
                class: ErrorClass::Fatal,
                retry_after: None,
            });
        };
        let key = ClientKey {
            redirect: job.redirect_policy,
            proxy: job.proxy.clone(),
            patient,
        };
        self.client(key)
    }

    /// The protocol side of an upload job's file, as its settings say.
    fn upload_for(&mut self, id: JobId, url: String) -> Result<bits_upload::Upload, Failure> {
        let client = self.job_client(id, true)?;
        let job = self.job(id).map_err(|e| Failure {
            error: JobError::new(ErrorContext::GeneralQueueManager, e.code, None),
            class: ErrorClass::Fatal,
            retry_after: None,
        })?;
        Ok(bits_upload::Upload {
            client,
            url,
            local: job
                .files
                .first()
                .map(|f| f.local_path.clone())
                .unwrap_or_default(),
            headers: job.custom_headers.clone(),
            credentials: job.credentials.clone(),
            clock: self.clock.clone(),
        })
    }

    /// An upload job runs in two phases (see [`UploadPhase`]): the upload by an upload worker,
    /// then for upload-reply the reply, by a download worker with the reply as [`REPLY_FILE`].
    fn spawn_upload_worker(&mut self, id: JobId) -> Result<(), Failure> {
        let Some(job) = self.jobs.get(&id) else {
            return Ok(());
        };
        match upload_phase(job) {
            UploadPhase::Send => {
                let Some(file) = job.files.first() else {
                    return Ok(());
                };
                let progress = bits_upload::Progress {
                    session: job.upload_session.clone(),
                    acknowledged: file.bytes_transferred,
                    source: file.validators.clone(),
                    host: job.upload_host.clone(),
                    ..Default::default()
                };
                let reply = job.job_type == JobType::UploadReply;
                let url = file.remote_url.clone();
                let upload = self.upload_for(id, url)?;
                let mut task = upload::UploadTask {
                    job: id,
                    run: 0, // given by start_worker
                    reply,
                    upload,
                    progress,
                };
                self.start_worker(id, 0, |run, reports, stop| {
                    task.run = run;
                    upload::run(task, reports, stop)
                });
                Ok(())
            }
            UploadPhase::FetchReply(reply) => {
                let work = file_work(REPLY_FILE, reply);
                self.start_download(id, vec![work])
            }
            UploadPhase::EmptyReply | UploadPhase::Done => Ok(()),
        }
    }

    /// Upload-reply whose server sent no reply: the reply file is empty (spec §1). `None` when
    /// the job is not at that point.
    fn write_empty_reply(&self, id: JobId) -> Option<Result<(), Failure>> {
        let job = self.jobs.get(&id)?;
        if !matches!(upload_phase(job), UploadPhase::EmptyReply) {
            return None;
        }
        let reply = job.reply.download.as_ref()?;
        let written = std::fs::File::create(&reply.temp_path).and_then(|f| f.sync_all());
        Some(written.map_err(|e| {
            let (code, class) = files::classify_io(&e);
            Failure {
                error: JobError::new(ErrorContext::LocalFile, code, None).with_description(
                    format!(
                        "cannot create the reply file {}: {e}",
                        reply.temp_path.display()
                    ),
                ),
                class,
                retry_after: None,
            }
        }))
    }

    /// Sends Close-/Cancel-Session in the background (re-sent on 5xx for a bounded time): the
    /// job does not wait for it, and a server that never answers only keeps a stale session
    /// until its own timeout.
    fn end_session(&mut self, id: JobId, url: String, session: String, cancel: bool) {
        let upload = match self.upload_for(id, url) {
            Ok(upload) => upload,
            Err(failure) => {
                tracing::warn!(job = %id, "cannot end upload session {session}: {}", failure.error.description);
                return;
            }
        };
        let packet = if cancel {
            "Cancel-Session"
        } else {
            "Close-Session"
        };
        let events = self.events.clone();
        tokio::spawn(async move {
            let result = upload.end_session(&session, cancel).await;
            match &result {
                Ok(()) => tracing::debug!(job = %id, "{packet} {session} acknowledged"),
                Err(failure) => tracing::warn!(
                    job = %id,
                    "{packet} {session} failed: {}",
                    failure.error.description
                ),
            }
            let _ = events.send(EngineEvent::UploadSessionEnded {
                job: id,
                session,
                cancel,
                acknowledged: result.is_ok(),
            });
        });
    }

    /// Upload-reply: picks a free reply file name beside the local file before the first Resume
    /// when none was set (spec §1), so that Complete does not run into an existing file.
    async fn name_reply_file(&mut self, id: JobId) -> Result<(), BitsError> {
        let job = self.job(id)?;
        if job.job_type != JobType::UploadReply || job.reply.file_name.is_some() {
            return Ok(());
        }
        if job.files.is_empty() {
            return Ok(()); // Resume answers BG_E_EMPTY
        }
        let name = files::free_name(&job.default_reply_name());
        self.apply(
            id,
            Event::Set(PropertyChange::ReplyFileName(name)),
            Persist::Now,
        )
        .await
        .map(|_| ())
    }

    async fn complete(&mut self, id: JobId) -> Result<CompleteOutcome, BitsError> {
        // Check legality before anything else; then stop the transfer so its last bytes count.
        job::apply(&mut self.job(id)?.clone(), Event::Complete, self.now())?;
        self.stop_worker(id).await;
        let now = self.now();
        let job = self
            .jobs
            .get_mut(&id)
            .ok_or_else(|| BitsError::from_code(ErrorCode::NotFound))?;
        let from = job.state;
        let effects = job::apply(job, Event::Complete, now)?;
        let Some(Effect::Commit(plan)) =
            effects.into_iter().find(|e| matches!(e, Effect::Commit(_)))
        else {
            return Err(unexpected());
        };
        let job = self.job(id)?;
        // The intent is on disk before the first rename (see `Job::committing`).
        self.save(job)?;
        let (report, undeletable) = files::commit(job, &plan);
        let failed = report.failed.clone();
        let job = self
            .jobs
            .get_mut(&id)
            .ok_or_else(|| BitsError::from_code(ErrorCode::NotFound))?;
        let effects = job::apply(job, Event::CommitFinished(report), now)?;
        self.after_change(id, from, effects, Persist::Now).await;
        if let Some((_, error)) = failed.first() {
            let mut message = error.description.clone();
            if failed.len() > 1 {
                message.push_str(&format!(" (and {} more files)", failed.len() - 1));
            }
            return Err(BitsError::new(
                error.code,
                format!(
                    "{message}. The job stays TRANSFERRED: fix this and complete it again, or cancel it"
                ),
            ));
        }
        Ok(if undeletable {
            CompleteOutcome::UnableToDeleteFiles
        } else if !plan.discard.is_empty() {
            CompleteOutcome::PartialComplete
        } else {
            CompleteOutcome::Complete
        })
    }

    /// Applies Tick to jobs whose timers are due and reruns failed notify commands.
    async fn on_time(&mut self) {
        let now = self.now();
        let policy = self.config.time_policy();
        let due: Vec<JobId> = self
            .jobs
            .values()
            .filter(|job| self.job_deadline(job).is_some_and(|at| at <= now))
            .map(|job| job.id)
            .collect();
        for id in due {
            let _ = self.apply(id, Event::Tick(policy), Persist::Now).await;
        }
        let reruns: Vec<JobId> = self
            .notify_retry
            .iter()
            .filter(|(_, (at, _))| *at <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in reruns {
            if let Some((_, state)) = self.notify_retry.remove(&id)
                && self.jobs.get(&id).is_some_and(|j| j.state == state)
            {
                self.run_notify_command(id);
            }
        }
    }

    /// The earliest moment a Tick could change this job.
    fn job_deadline(&self, job: &Job) -> Option<Timestamp> {
        let policy = self.config.time_policy();
        let inactivity = job.inactivity_deadline(policy.inactivity_timeout);
        let mut deadline = inactivity;
        if !job.inactivity_warned {
            let warn_at = inactivity
                .checked_sub_signed(
                    chrono::Duration::from_std(policy.warning_window).unwrap_or_default(),
                )
                .unwrap_or(inactivity);
            deadline = deadline.min(warn_at);
        }
        if job.state == JobState::TransientError {
            if let Some(at) = job.retry.next_retry_at {
                deadline = deadline.min(at);
            }
            if let Some(since) = job.retry.no_progress_since {
                deadline = deadline.min(later(since, job.no_progress_timeout));
            }
        }
        if let Some(since) = job.download_clock.running_since {
            let left = job
                .max_download_time
                .saturating_sub(job.download_clock.used);
            // Strictly past the limit: one millisecond after it.
            deadline = deadline.min(later(since, left + Duration::from_millis(1)));
        }
        Some(deadline)
    }

    fn next_model_deadline(&self) -> Option<Timestamp> {
        let jobs = self.jobs.values().filter_map(|job| self.job_deadline(job));
        let notify = self.notify_retry.values().map(|(at, _)| *at);
        let slice = scheduler::slice_deadline(&self.jobs, &self.slice_started, self.slice());
        jobs.chain(notify).chain(slice).min()
    }

    fn next_io_deadline(&self) -> Option<Instant> {
        let flush = (!self.dirty.is_empty()).then(|| self.last_flush + CHECKPOINT_INTERVAL);
        let interval = Duration::from_millis(self.config.modification_interval_ms);
        let modification = self
            .modifications
            .values()
            .filter(|m| m.pending)
            .map(|m| m.last.map_or_else(Instant::now, |last| last + interval))
            .min();
        flush.into_iter().chain(modification).min()
    }

    fn slice(&self) -> Duration {
        Duration::from_secs(self.config.time_slice_secs)
    }

    /// Saves changed progress, at most once per checkpoint interval unless `force`.
    fn flush(&mut self, force: bool) {
        if self.dirty.is_empty() || (!force && self.last_flush.elapsed() < CHECKPOINT_INTERVAL) {
            return;
        }
        for id in std::mem::take(&mut self.dirty) {
            let Some(job) = self.jobs.get(&id) else {
                continue;
            };
            match self.store.save(job) {
                Ok(()) => {
                    let checkpointed = job.files.iter().map(|f| f.bytes_checkpointed).sum();
                    tracing::debug!(job = %id, checkpointed, "progress saved");
                    self.emit(EngineEvent::ProgressSaved {
                        job: id,
                        checkpointed,
                    });
                }
                Err(e) => tracing::error!(job = %id, "cannot save a checkpoint: {e}"),
            }
        }
        self.last_flush = Instant::now();
    }

    /// Sends the JobModification events that are due (rate-limited per job).
    fn publish_modifications(&mut self, force: bool) {
        let interval = Duration::from_millis(self.config.modification_interval_ms);
        let now = Instant::now();
        let mut due = Vec::new();
        for (id, pacing) in &mut self.modifications {
            let ready = pacing.last.is_none_or(|last| now >= last + interval);
            if pacing.pending && (force || ready) {
                pacing.pending = false;
                pacing.last = Some(now);
                due.push(*id);
            }
        }
        for id in due {
            let job = self
                .jobs
                .get(&id)
                .or_else(|| self.finished.iter().rev().find(|j| j.id == id));
            if let Some(job) = job {
                self.emit(EngineEvent::JobModification {
                    job: id,
                    state: job.state,
                    progress: job.progress(),
                });
            }
        }
    }

    /// Starts and preempts jobs per spec §6.
    async fn schedule(&mut self) {
        if !self.network_up {
            // Jobs queued while the network is away wait for it (T14), not for a slot.
            let waiting: Vec<JobId> = self
                .jobs
                .values()
                .filter(|j| j.state == JobState::Queued)
                .map(|j| j.id)
                .collect();
            for id in waiting {
                let _ = self.apply(id, Event::NetworkLost, Persist::Now).await;
            }
        }
        let now = self.now();
        let decision = scheduler::decide(&self.jobs, &self.slice_started, self.slice(), now);
        for id in decision.yield_jobs {
            let _ = self.apply(id, Event::Yield, Persist::Checkpoint).await;
        }
        for id in decision.start {
            if self
                .jobs
                .get(&id)
                .is_some_and(|j| j.priority != Priority::Foreground)
            {
                self.slice_started.insert(id, now);
            }
            if self
                .apply(id, Event::Start, Persist::Checkpoint)
                .await
                .is_ok()
            {
                self.continue_job(id).await;
            }
        }
    }

    async fn shutdown(&mut self) {
        let running: Vec<JobId> = self.workers.keys().copied().collect();
        for id in running {
            self.stop_worker(id).await;
        }
        self.flush(true);
    }
}
