//! [`EngineHandle`]: the way in to a running engine. Every call is one [`Command`] that carries
//! its own typed reply channel, so a reply can never be of the wrong kind.

use super::api::{CancelOutcome, CompleteOutcome, EngineEvent, JobSpec, REPLY_DATA_LIMIT};
use super::events::Subscription;
use super::files;
use crate::config::Config;
use crate::job::{BitsError, ErrorCode, Job, JobId, JobType, NewFile, Priority, PropertyChange};
use std::path::PathBuf;
use tokio::sync::{broadcast, mpsc, oneshot};

/// Where the actor sends the result of one command.
pub(super) type Reply<T> = oneshot::Sender<Result<T, BitsError>>;

/// One call into the actor, with its reply channel.
pub(super) enum Command {
    Create(JobSpec, Reply<JobId>),
    AddFiles(JobId, Vec<NewFile>, Reply<()>),
    Resume(JobId, Reply<()>),
    Suspend(JobId, Reply<()>),
    Cancel(JobId, Reply<CancelOutcome>),
    Complete(JobId, Reply<CompleteOutcome>),
    Set(JobId, PropertyChange, Reply<()>),
    /// ReplaceRemotePrefix: answers the files changed.
    ReplaceRemotePrefix {
        job: JobId,
        old: String,
        new: String,
        reply: Reply<Vec<usize>>,
    },
    Get(JobId, Reply<Job>),
    List {
        finished: bool,
        reply: Reply<Vec<Job>>,
    },
    Count(Reply<usize>),
    /// The finished jobs, newest first.
    History(Reply<Vec<crate::store::HistoryEntry>>),
    /// Forget history entries (`None`: all).
    ClearHistory(Option<Vec<JobId>>, Reply<()>),
    Network {
        up: bool,
        reply: Reply<()>,
    },
    Validate {
        job: JobId,
        file: usize,
        valid: bool,
        reply: Reply<()>,
    },
    Configure(Box<Config>, Reply<()>),
    /// Where the reply of an upload-reply job is now, and its size.
    ReplyFile(JobId, Reply<(PathBuf, u64)>),
    /// An HTTP client with the engine's settings, for a request made outside the actor.
    HttpClient(Reply<reqwest::Client>),
    /// TakeOwnership, the giving side: the job leaves this engine and its store's queue.
    HandOver(JobId, Reply<()>),
    /// TakeOwnership, the taking side: the journal entry first, then the job, or neither.
    BeginMove(crate::store::ownership::MoveRecord, Reply<()>),
    FinishMove(JobId, Reply<super::api::TakenOver>),
    AbortMove(JobId, Reply<()>),
    Shutdown(Reply<()>),
}

fn stopped() -> BitsError {
    BitsError::new(ErrorCode::LocalIo, "the Ferry engine has stopped")
}

/// Sends the command `make` builds around a reply channel, and waits for the reply.
pub(super) async fn call<T>(
    commands: &mpsc::Sender<Command>,
    make: impl FnOnce(Reply<T>) -> Command,
) -> Result<T, BitsError> {
    let (reply, answer) = oneshot::channel();
    commands.send(make(reply)).await.map_err(|_| stopped())?;
    answer.await.map_err(|_| stopped())?
}

/// The way in to a running engine. Cheap to clone.
#[derive(Clone)]
pub struct EngineHandle {
    pub(super) commands: mpsc::Sender<Command>,
    pub(super) events: super::events::EventBus,
}

impl EngineHandle {
    async fn call<T>(&self, make: impl FnOnce(Reply<T>) -> Command) -> Result<T, BitsError> {
        call(&self.commands, make).await
    }

    /// Listens to every event of every job from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<EngineEvent> {
        self.events.subscribe(Subscription::All)
    }

    /// Listens from now on to each job's events as its notify flags ask (spec §7.5).
    pub fn subscribe_by_notify_flags(&self) -> broadcast::Receiver<EngineEvent> {
        self.events.subscribe(Subscription::ByNotifyFlags)
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
    /// A checksums file named by the spec is fetched first, here and not in the actor, which
    /// goes on meanwhile.
    pub async fn create(&self, mut spec: JobSpec) -> Result<JobId, BitsError> {
        if let Some(url) = spec.checksums_url.take() {
            let client = self.call(Command::HttpClient).await?;
            let sums = super::checksums_file::fetch(&client, &url).await?;
            super::checksums_file::assign(&mut spec.files, &sums, &crate::job::redact_url(&url))?;
        }
        self.call(|reply| Command::Create(spec, reply)).await
    }

    pub async fn add_files(&self, job: JobId, files: Vec<NewFile>) -> Result<(), BitsError> {
        self.call(|reply| Command::AddFiles(job, files, reply))
            .await
    }

    pub async fn resume(&self, job: JobId) -> Result<(), BitsError> {
        self.call(|reply| Command::Resume(job, reply)).await
    }

    pub async fn suspend(&self, job: JobId) -> Result<(), BitsError> {
        self.call(|reply| Command::Suspend(job, reply)).await
    }

    pub async fn cancel(&self, job: JobId) -> Result<CancelOutcome, BitsError> {
        self.call(|reply| Command::Cancel(job, reply)).await
    }

    pub async fn complete(&self, job: JobId) -> Result<CompleteOutcome, BitsError> {
        self.call(|reply| Command::Complete(job, reply)).await
    }

    pub async fn set(&self, job: JobId, change: PropertyChange) -> Result<(), BitsError> {
        self.call(|reply| Command::Set(job, change, reply)).await
    }

    /// ReplaceRemotePrefix (spec §7.1): the files whose URL started with `old`, now with `new`
    /// in its place. None is BITS's S_FALSE: a success that changed nothing.
    pub async fn replace_remote_prefix(
        &self,
        job: JobId,
        old: String,
        new: String,
    ) -> Result<Vec<usize>, BitsError> {
        self.call(|reply| Command::ReplaceRemotePrefix {
            job,
            old,
            new,
            reply,
        })
        .await
    }

    /// TakeOwnership, asked of the job's owner's engine by root: stops the job, saves it and
    /// hands its file over (the commit point of the move, `store/ownership.rs`); the job is gone
    /// from this engine. Asked again for a job already handed over, it answers Ok.
    pub async fn hand_over(&self, job: JobId) -> Result<(), BitsError> {
        self.call(|reply| Command::HandOver(job, reply)).await
    }

    /// TakeOwnership, root's side, before the job is handed over: the move's journal entry.
    pub async fn begin_move(
        &self,
        record: crate::store::ownership::MoveRecord,
    ) -> Result<(), BitsError> {
        self.call(|reply| Command::BeginMove(record, reply)).await
    }

    /// TakeOwnership, root's side, once the job is handed over: the job, read from the user's
    /// store and stripped of what was theirs, joins this engine.
    pub async fn finish_move(&self, job: JobId) -> Result<super::api::TakenOver, BitsError> {
        self.call(|reply| Command::FinishMove(job, reply)).await
    }

    /// TakeOwnership, root's side, when the job was not handed over: the journal entry goes.
    pub async fn abort_move(&self, job: JobId) -> Result<(), BitsError> {
        self.call(|reply| Command::AbortMove(job, reply)).await
    }

    pub async fn job(&self, job: JobId) -> Result<Job, BitsError> {
        self.call(|reply| Command::Get(job, reply)).await
    }

    /// Every job still in the queue (final jobs leave it), oldest first.
    pub async fn jobs(&self) -> Result<Vec<Job>, BitsError> {
        self.list(false).await
    }

    /// The finished jobs (ACKNOWLEDGED, CANCELLED), newest first; kept across restarts.
    pub async fn history(&self) -> Result<Vec<crate::store::HistoryEntry>, BitsError> {
        self.call(Command::History).await
    }

    /// Forgets history entries (`None`: all of them). The jobs' files are not touched.
    pub async fn clear_history(&self, ids: Option<Vec<JobId>>) -> Result<(), BitsError> {
        self.call(|reply| Command::ClearHistory(ids, reply)).await
    }

    /// How many jobs are in the queue (without copying them).
    pub async fn queue_len(&self) -> Result<usize, BitsError> {
        self.call(Command::Count).await
    }

    /// The queue, plus with `finished` the last jobs that ended (ACKNOWLEDGED or CANCELLED)
    /// while this engine ran.
    pub async fn list(&self, finished: bool) -> Result<Vec<Job>, BitsError> {
        self.call(|reply| Command::List { finished, reply }).await
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
        self.call(|reply| Command::Validate {
            job,
            file,
            valid,
            reply,
        })
        .await
    }

    /// Applies a new configuration at once: quotas, defaults of new jobs, timers (a shorter
    /// inactivity timeout cancels the jobs already past it), the time slice, and the HTTP timeouts
    /// and certificates of transfers that start from now on. `watch_network` is read only at start.
    pub async fn configure(&self, config: Config) -> Result<(), BitsError> {
        self.call(|reply| Command::Configure(Box::new(config), reply))
            .await
    }

    /// Network connectivity changed (T14/T15).
    pub async fn network_changed(&self, up: bool) -> Result<(), BitsError> {
        self.call(|reply| Command::Network { up, reply }).await
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
            .map_err(|e| super::actor::reply_unreadable(&path, &e))
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
        self.call(|reply| Command::ReplyFile(job, reply)).await
    }

    /// Stops every transfer at a checkpoint, saves everything and releases the store.
    pub async fn shutdown(&self) -> Result<(), BitsError> {
        self.call(Command::Shutdown).await
    }
}
