//! The actor: one task that owns every job. It takes commands from [`super::EngineHandle`],
//! applies them and the workers' reports through [`job::apply`], carries out the effects
//! (stopping workers, deleting temp files, notifications, Complete's renames) and saves the jobs.
//! Workers are in `workers.rs`, timers and checkpoints in `timers.rs`.

use super::api::{CancelOutcome, CompleteOutcome, EngineEvent, JobSpec};
use super::bandwidth::Bucket;
use super::handle::Command;
use super::http::ClientKey;
use super::saver::Saver;
use super::workers::RunningWorker;
use super::{Clock, files, scheduler, transfer};
use crate::config::Config;
use crate::job::{
    self, BitsError, Effect, ErrorCode, Event, Job, JobId, JobState, JobType, Notification,
    NotifyFlags, PropertyChange, Timestamp, later,
};
use crate::platform::User;
use std::collections::{HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;
use transfer::WorkerMessage;

/// Jobs that reached ACKNOWLEDGED or CANCELLED stay visible (read-only) this many at a time, so
/// that a client that looks just after the end still sees how the job ended.
pub(super) const FINISHED_KEPT: usize = 100;

pub(super) fn reply_unreadable(path: &std::path::Path, e: &std::io::Error) -> BitsError {
    let (code, _) = files::classify_io(e);
    BitsError::new(
        code,
        format!("cannot read the reply {}: {e}", path.display()),
    )
}

/// How often changed progress is written to the store.
pub(super) const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(1);

#[derive(Default)]
pub(super) struct ModificationPacing {
    pub(super) last: Option<Instant>,
    pub(super) pending: bool,
}

/// A notify command line finished (spec §7.6).
pub(super) struct NotifyExited {
    pub(super) job: JobId,
    pub(super) state: JobState,
    pub(super) success: bool,
}

pub(super) struct Actor {
    pub(super) jobs: HashMap<JobId, Job>,
    /// The last jobs that reached a final state, oldest first (see [`FINISHED_KEPT`]).
    pub(super) finished: VecDeque<Job>,
    /// TakeOwnership moves begun and not yet finished (root's engine), by job.
    pub(super) moves: HashMap<JobId, crate::store::ownership::MoveRecord>,
    /// Jobs that became TRANSFERRED with "complete when transferred": completed next round.
    pub(super) to_complete: Vec<JobId>,
    /// Finished jobs, oldest first, at most `store::HISTORY_KEPT`; kept on disk too.
    pub(super) history: VecDeque<crate::store::HistoryEntry>,
    pub(super) store: Saver,
    pub(super) user: User,
    pub(super) config: Config,
    pub(super) clock: Arc<dyn Clock>,
    pub(super) events: super::events::EventBus,
    /// The machine registry and this engine's record in it (`None`: not shared).
    pub(super) machine: Option<(
        crate::store::machine::MachineRegistry,
        crate::store::machine::Recorder,
    )>,
    pub(super) reports_tx: mpsc::UnboundedSender<WorkerMessage>,
    pub(super) notify_tx: mpsc::UnboundedSender<NotifyExited>,
    pub(super) workers: HashMap<JobId, RunningWorker>,
    /// Every worker's task, supervised: its end (and a panic) comes back to the actor.
    pub(super) tasks: super::workers::Workers,
    pub(super) fault_injection: Option<super::workers::FaultInjection>,
    pub(super) next_run: u64,
    pub(super) clients: HashMap<ClientKey, reqwest::Client>,
    /// Permits for the connections beyond each file's first, per server (`host:port`): the
    /// config's `connections_per_host`.
    pub(super) host_slots: HashMap<String, std::sync::Arc<tokio::sync::Semaphore>>,
    /// A call is being answered: its changes are durable before the answer. Otherwise (worker
    /// reports, timers, the scheduler) nobody waits for a save, so the actor does not either;
    /// the store's queue keeps the order.
    pub(super) answering: bool,
    /// Jobs whose progress changed since they were last saved.
    pub(super) dirty: HashSet<JobId>,
    pub(super) last_flush: Instant,
    pub(super) modifications: HashMap<JobId, ModificationPacing>,
    /// When each background job last got a time slice (round robin, spec §6).
    pub(super) slice_started: HashMap<JobId, Timestamp>,
    /// Notify command lines that failed and run again after the retry delay (spec §7.6).
    pub(super) notify_retry: HashMap<JobId, (Timestamp, JobState)>,
    pub(super) network_up: bool,
    /// The config's global speed limits, shared by every transfer in their direction.
    pub(super) download_limit: Arc<Bucket>,
    pub(super) upload_limit: Arc<Bucket>,
    /// Each job's own pace (`JobPace`), while the job is in the queue.
    pub(super) job_paces: HashMap<JobId, super::bandwidth::JobPace>,
    /// The background jobs' shared buckets that give way to other traffic (`idle.rs`), and the
    /// config's switch for it.
    pub(super) idle_download: Arc<Bucket>,
    pub(super) idle_upload: Arc<Bucket>,
    pub(super) idle_enabled: Arc<std::sync::atomic::AtomicBool>,
    /// What the bandwidth policy says now, and when to look at it again (`policy.rs`).
    pub(super) policy_now: crate::job::PolicyNow,
    pub(super) policy_deadline: Option<Timestamp>,
}

/// QUEUED, CONNECTING and TRANSFERRING all come back as QUEUED after a restart, so moves between
/// them can wait for the next checkpoint.
pub(super) fn in_queue(state: JobState) -> bool {
    matches!(
        state,
        JobState::Queued | JobState::Connecting | JobState::Transferring
    )
}

/// Whether a change is saved at once or with the next checkpoint.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Persist {
    Now,
    Checkpoint,
}

impl Actor {
    pub(super) async fn run(
        mut self,
        mut commands: mpsc::Receiver<Command>,
        mut reports: mpsc::UnboundedReceiver<WorkerMessage>,
        mut notify_exits: mpsc::UnboundedReceiver<NotifyExited>,
    ) {
        loop {
            self.on_time().await;
            self.complete_transferred().await;
            self.schedule().await;
            self.flush(false).await;
            self.publish_modifications(false);
            let clock = self.clock.clone();
            let model_deadline = self.next_model_deadline();
            let io_deadline = self.next_io_deadline();
            tokio::select! {
                command = commands.recv() => {
                    let Some(command) = command else { break };
                    if let Command::Shutdown(reply) = command {
                        self.shutdown().await;
                        // The store's lock is released before the caller hears back.
                        let Actor { store, .. } = self;
                        store.close().await;
                        let _ = reply.send(Ok(()));
                        return;
                    }
                    self.handle(command).await;
                }
                Some(message) = reports.recv() => self.on_report(message).await,
                Some(ended) = self.tasks.join_next(), if !self.tasks.is_empty() => {
                    self.on_task_end(ended);
                }
                Some(exited) = notify_exits.recv() => self.on_notify_exited(exited),
                _ = clock.sleep_until(model_deadline.unwrap_or(Timestamp::MAX_UTC)), if model_deadline.is_some() => {}
                _ = tokio::time::sleep_until(io_deadline.unwrap_or_else(Instant::now)), if io_deadline.is_some() => {}
            }
        }
        self.shutdown().await;
    }

    pub(super) fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// Publishes `event`; listeners by notify flags hear it as its job's flags say.
    pub(super) fn emit(&self, event: EngineEvent) {
        let flags = event.job().and_then(|id| self.notify_flags_of(id));
        self.events.publish(event, flags);
    }

    /// The notify flags of a job in the queue or one that just left it.
    pub(super) fn notify_flags_of(&self, id: JobId) -> Option<crate::job::NotifyFlags> {
        self.jobs
            .get(&id)
            .or_else(|| self.finished.iter().rev().find(|j| j.id == id))
            .map(|job| job.notify_flags)
    }

    pub(super) fn job(&self, id: JobId) -> Result<&Job, BitsError> {
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

    /// Carries out one command and sends its reply.
    async fn handle(&mut self, command: Command) {
        self.answering = true;
        self.carry_out(command).await;
        self.answering = false;
    }

    async fn carry_out(&mut self, command: Command) {
        match command {
            Command::Create(spec, reply) => {
                let _ = reply.send(self.create(spec).await);
            }
            Command::AddFiles(job, files, reply) => {
                let _ = reply.send(self.add_files(job, files).await);
            }
            Command::Resume(job, reply) => {
                let result = match self.name_reply_file(job).await {
                    Ok(()) => self.apply(job, Event::Resume, Persist::Now).await.map(drop),
                    Err(e) => Err(e),
                };
                let _ = reply.send(result);
            }
            Command::Suspend(job, reply) => {
                let result = self.apply(job, Event::Suspend, Persist::Now).await;
                let _ = reply.send(result.map(drop));
            }
            Command::Cancel(job, reply) => {
                let result = self.apply(job, Event::Cancel, Persist::Now).await;
                let _ = reply.send(result.map(|clean| {
                    if clean {
                        CancelOutcome::Cancelled
                    } else {
                        CancelOutcome::UnableToDeleteFiles
                    }
                }));
            }
            Command::Complete(job, reply) => {
                let _ = reply.send(self.complete(job).await);
            }
            Command::Set(job, change, reply) => {
                let _ = reply.send(self.set(job, change).await);
            }
            Command::ReplaceRemotePrefix {
                job,
                old,
                new,
                reply,
            } => {
                let _ = reply.send(self.replace_remote_prefix(job, old, new).await);
            }
            Command::Get(id, reply) => {
                let job = match self.finished.iter().find(|j| j.id == id) {
                    Some(job) => Ok(job.clone()),
                    None => self.job(id).cloned(),
                };
                let _ = reply.send(job);
            }
            Command::List { finished, reply } => {
                let mut jobs: Vec<Job> = self.jobs.values().cloned().collect();
                if finished {
                    jobs.extend(self.finished.iter().cloned());
                }
                jobs.sort_by_key(|j| (j.times.created, j.id));
                let _ = reply.send(Ok(jobs));
            }
            Command::Count(reply) => {
                let _ = reply.send(Ok(self.jobs.len()));
            }
            Command::History(reply) => {
                let _ = reply.send(Ok(self.history.iter().rev().cloned().collect()));
            }
            Command::ClearHistory(ids, reply) => {
                // Forgotten in memory only once gone from the disk: a failed clear shows.
                let done = Saver::done(self.store.forget(ids.clone()))
                    .await
                    .map_err(|e| {
                        BitsError::new(ErrorCode::LocalIo, format!("cannot clear the history: {e}"))
                    });
                if done.is_ok() {
                    match &ids {
                        Some(ids) => self.history.retain(|e| !ids.contains(&e.id)),
                        None => self.history.clear(),
                    }
                }
                let _ = reply.send(done);
            }
            Command::Network { up, reply } => {
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
                let _ = reply.send(Ok(()));
            }
            Command::Validate {
                job,
                file,
                valid,
                reply,
            } => {
                let event = Event::Validate { file, valid };
                let result = self.apply(job, event, Persist::Now).await;
                let _ = reply.send(result.map(drop));
            }
            Command::Configure(config, reply) => {
                self.config = *config; // the new schedule is read by the next `schedule`
                // Running transfers too: the buckets they pace on change under them.
                self.download_limit.set_rate(self.config.download_limit);
                self.upload_limit.set_rate(self.config.upload_limit);
                self.idle_enabled.store(
                    self.config.idle_bandwidth_for_background,
                    std::sync::atomic::Ordering::Relaxed,
                );
                // Transfers that start from now on use the new timeouts and certificates.
                self.clients.clear();
                let _ = reply.send(Ok(()));
            }
            Command::ReplyFile(id, reply) => {
                let _ = reply.send(self.reply_location(id));
            }
            Command::HttpClient(reply) => {
                let key = super::http::ClientKey {
                    redirect: crate::job::RedirectPolicy::default(),
                    proxy: crate::job::ProxySettings::default(),
                    patient: false,
                };
                let client = self.client(key).map_err(|failure| {
                    BitsError::new(failure.error.code, failure.error.description)
                });
                let _ = reply.send(client);
            }
            Command::HandOver(job, reply) => {
                let _ = reply.send(self.hand_over(job, "root".into()).await);
            }
            Command::BeginMove(record, reply) => {
                let _ = reply.send(self.begin_move(record).await);
            }
            Command::FinishMove(job, reply) => {
                let _ = reply.send(self.finish_move(job).await);
            }
            Command::AbortMove(job, reply) => {
                let _ = reply.send(self.abort_move(job).await);
            }
            Command::Shutdown(reply) => {
                let _ = reply.send(Ok(())); // handled by `run`
            }
        }
    }

    async fn add_files(&mut self, job: JobId, files: Vec<job::NewFile>) -> Result<(), BitsError> {
        files::check_new_files(self.job(job)?, &files)?;
        let limits = self.config.limits(self.user.is_admin());
        let result = self
            .apply(job, Event::AddFiles { files, limits }, Persist::Now)
            .await;
        if let Err(e) = &result {
            self.note_quota(e);
        }
        result.map(drop)
    }

    async fn set(&mut self, job: JobId, change: PropertyChange) -> Result<(), BitsError> {
        if let PropertyChange::ReplyFileName(path) = &change {
            // The model's rules first (type, absolute path, state), then the file system.
            let mut probe = self.job(job)?.clone();
            job::apply(&mut probe, Event::Set(change.clone()), self.now())?;
            files::check_destination(&probe, path)?;
        }
        let now_on = matches!(change, PropertyChange::CompleteWhenTransferred(true));
        self.apply(job, Event::Set(change), Persist::Now).await?;
        // The bucket follows the job's limit and priority: a running transfer feels it at once.
        self.sync_job_bucket(job);
        if now_on && self.job(job)?.state == JobState::Transferred {
            self.to_complete.push(job);
        }
        Ok(())
    }

    async fn replace_remote_prefix(
        &mut self,
        id: JobId,
        old: String,
        new: String,
    ) -> Result<Vec<usize>, BitsError> {
        let job = self.job(id)?;
        let files = job.files_with_remote_prefix(&old);
        let change = Event::Set(PropertyChange::ReplaceRemotePrefix { old, new });
        if files.is_empty() {
            // The model's refusals still hold (an upload, an empty prefix, a final state); a
            // change of nothing is not saved.
            job::apply(&mut job.clone(), change, self.now())?;
        } else {
            self.apply(id, change, Persist::Now).await?;
        }
        Ok(files)
    }

    /// Completes the jobs that asked for it once TRANSFERRED, and those whose Complete a stop
    /// cut short. A refusal (a file in the way, a folder gone) leaves the job TRANSFERRED and is
    /// told to the user; it is not retried.
    async fn complete_transferred(&mut self) {
        for id in std::mem::take(&mut self.to_complete) {
            if !self.jobs.get(&id).is_some_and(Job::awaits_its_complete) {
                continue;
            }
            if let Err(error) = self.complete(id).await {
                tracing::info!(job = %id, "complete when transferred: {}", error.message);
                if self.dirty.remove(&id)
                    && let Some(job) = self.jobs.get(&id)
                    && let Err(e) = self.save(job).await
                {
                    tracing::error!(job = %id, "cannot save the job: {}", e.message);
                }
                self.emit(EngineEvent::CompleteFailed {
                    job: id,
                    code: error.code,
                    message: error.message,
                });
            }
        }
    }

    /// Where the reply is: its temp file in TRANSFERRED, its file after Complete (D11).
    fn reply_location(&self, id: JobId) -> Result<(PathBuf, u64), BitsError> {
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
        Ok((path, size))
    }

    async fn create(&mut self, mut spec: JobSpec) -> Result<JobId, BitsError> {
        let limits = self.config.limits(self.user.is_admin());
        // Held (the registry's lock) until this job is in the record, or the create fails.
        let counted = self.count_machine(&limits).await;
        let elsewhere = counted.as_ref().map_or(0, |c| c.elsewhere);
        let quota =
            job::check_create_quota(self.jobs.values(), &self.user.name, &limits, elsewhere);
        if let Err(e) = quota {
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
        job::apply(
            &mut job,
            Event::Set(PropertyChange::CompleteWhenTransferred(
                spec.complete_when_transferred,
            )),
            now,
        )?;
        if spec.connections.is_some() {
            job::apply(
                &mut job,
                Event::Set(PropertyChange::Connections(spec.connections)),
                now,
            )?;
        }
        if spec.limit_rate.is_some() {
            let change = PropertyChange::LimitRate(spec.limit_rate);
            job::apply(&mut job, Event::Set(change), now)?;
        }
        if let Some(n) = spec.parallel_files {
            job::apply(&mut job, Event::Set(PropertyChange::ParallelFiles(n)), now)?;
        }
        if let Some(reply) = spec.reply_file {
            job::apply(
                &mut job,
                Event::Set(PropertyChange::ReplyFileName(reply.clone())),
                now,
            )?;
            files::check_destination(&job, &reply)?;
        }
        // Only downloads: an upload's local file is its source, which exists.
        if spec.rename_existing && spec.job_type == JobType::Download {
            files::rename_taken(&mut spec.files);
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
        let created_as = job.state;
        if spec.resume {
            if let Some(name) = reply_name_to_pick(&job) {
                job::apply(
                    &mut job,
                    Event::Set(PropertyChange::ReplyFileName(name)),
                    now,
                )?;
            }
            job::apply(&mut job, Event::Resume, now)?;
        }
        let id = job.id;
        let state = job.state;
        self.save(&job).await?;
        self.jobs.insert(id, job);
        self.publish_machine(counted);
        self.modifications.entry(id).or_default().pending = true;
        if state != created_as {
            self.emit(EngineEvent::StateChanged {
                job: id,
                from: created_as,
                to: state,
            });
        }
        Ok(id)
    }

    /// Publishes QuotaExceeded when a call failed on a quota (spec §5), so the GUI can show it.
    /// The other services' jobs, under the registry's lock (`None`: no registry, an exempt
    /// administrator, or a registry that cannot be read, which the log says).
    async fn count_machine(&self, limits: &job::Limits) -> Option<crate::store::machine::Counted> {
        let (registry, _) = self.machine.as_ref().filter(|_| !limits.exempt)?;
        let registry = registry.clone();
        let cap = limits.jobs_per_user;
        let counted = tokio::task::spawn_blocking(move || registry.count(cap)).await;
        match counted {
            Ok(Ok(counted)) => Some(counted),
            Ok(Err(e)) => {
                tracing::warn!("cannot read the machine registry: {e}");
                None
            }
            Err(e) => {
                tracing::warn!("cannot read the machine registry: {e}");
                None
            }
        }
    }

    /// Writes this engine's job count to the machine registry (in the background), letting go
    /// of `counted`'s lock once it is there.
    pub(super) fn publish_machine(&self, counted: Option<crate::store::machine::Counted>) {
        if let Some((_, recorder)) = &self.machine {
            recorder.publish(self.jobs.len(), counted);
        }
    }

    fn note_quota(&self, error: &BitsError) {
        if error.code.is_quota() {
            self.emit(EngineEvent::QuotaExceeded {
                code: error.code,
                message: error.message.clone(),
            });
        }
    }

    /// Saves the job and waits until it is durable.
    pub(super) async fn save(&self, job: &Job) -> Result<(), BitsError> {
        Saver::done(self.store.save(job))
            .await
            .map_err(|e| BitsError::new(ErrorCode::LocalIo, e.to_string()))
    }

    /// Applies `event` to a job and carries out the effects. Returns false if some temp files
    /// could not be deleted.
    pub(super) async fn apply(
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
                | Event::Segments { .. }
                | Event::FileTransferred { .. }
                | Event::FileDigest { .. }
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
                Effect::DeleteTempFiles(paths) => {
                    // Unlinks off the actor's thread (a slow or remote file system).
                    let deleted =
                        tokio::task::spawn_blocking(move || files::delete_temp_files(&paths));
                    clean &= deleted.await.unwrap_or(false);
                }
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
        // Completed before the actor waits again (Complete saves its plan first, with this
        // state): no save of its own; a refused Complete saves it (`complete_transferred`).
        let completing = to == JobState::Transferred && from != to && job.complete_when_transferred;
        if completing {
            self.to_complete.push(id);
        }
        // JobModification is not raised for transitions into ERROR or TRANSFERRED (spec §7.5).
        if !(to != from && matches!(to, JobState::Error | JobState::Transferred)) {
            self.modifications.entry(id).or_default().pending = true;
        }
        if to.is_final() {
            let entry = crate::store::HistoryEntry::of(job, self.now());
            self.store.record(entry.clone());
            if self.history.len() >= crate::store::HISTORY_KEPT
                && let Some(old) = self.history.pop_front()
            {
                // Not awaited: the deletion is queued in order; its result matters to no one.
                drop(self.store.forget(Some(vec![old.id])));
            }
            self.history.push_back(entry);
            let removed = self.store.remove(id);
            if to == JobState::Acknowledged {
                // Not awaited: the files are in place, and should the removal not reach the
                // disk, the saved plan (`committing`) finishes the Complete at the next start.
                // The caller hears back one fsync sooner.
                Saver::log_failure(removed, id, "cannot remove the job file");
            } else if let Err(e) = Saver::done(removed).await {
                // A cancelled job must not come back: its file is gone before anyone hears.
                tracing::error!(job = %id, "cannot remove the job file: {e}");
            }
            self.job_paces.remove(&id);
            if let Some(job) = self.jobs.remove(&id) {
                if self.finished.len() == FINISHED_KEPT {
                    self.finished.pop_front();
                }
                self.finished.push_back(job);
            }
            self.publish_machine(None);
            self.dirty.remove(&id);
            self.slice_started.remove(&id);
            self.notify_retry.remove(&id);
            self.publish_modifications(true);
            self.modifications.remove(&id);
        } else if !completing
            && (persist == Persist::Now || (to != from && !(in_queue(from) && in_queue(to))))
        {
            let saved = self.store.save(job);
            if self.answering {
                if let Err(e) = Saver::done(saved).await {
                    tracing::error!(job = %id, "cannot save the job: {e}");
                }
            } else {
                Saver::log_failure(saved, id, "cannot save the job");
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
        // Listeners by notify flags hear it as the job's flags say (`events.rs`); the whole
        // stream always does.
        self.emit(event);
        // Only JOB_TRANSFERRED and JOB_ERROR apply to a command line (spec §7.6).
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
    pub(super) fn run_notify_command(&mut self, id: JobId) {
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

    /// Upload-reply: picks a free reply file name beside the local file before the first Resume
    /// when none was set (spec §1), so that Complete does not run into an existing file.
    async fn name_reply_file(&mut self, id: JobId) -> Result<(), BitsError> {
        let Some(name) = reply_name_to_pick(self.job(id)?) else {
            return Ok(());
        };
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
            // The model always plans a Complete it accepts; never reached.
            return Err(BitsError::new(
                ErrorCode::LocalIo,
                "Complete was accepted without a plan of what to commit",
            ));
        };
        let job = self.job(id)?;
        // The intent is on disk before the first rename (see `Job::committing`).
        self.save(job).await?;
        // The renames (and their folder fsyncs) run off the actor's thread.
        let (snapshot, planned) = (job.clone(), plan.clone());
        let (report, undeletable) =
            tokio::task::spawn_blocking(move || files::commit(&snapshot, &planned))
                .await
                .map_err(|e| {
                    BitsError::new(ErrorCode::LocalIo, format!("Complete stopped: {e}"))
                })?;
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

    /// Starts and preempts jobs per spec §6.
    async fn schedule(&mut self) {
        self.apply_policy().await;
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
                .is_some_and(|j| j.priority.is_background())
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
        // Every worker told at once, so that they reach their checkpoints together.
        for worker in self.workers.values() {
            let _ = worker.stop.send(true);
        }
        let running: Vec<JobId> = self.workers.keys().copied().collect();
        for id in running {
            self.stop_worker(id).await;
        }
        self.flush(true).await;
    }
}

/// Upload-reply without a reply name, before its first Resume: a free name beside the local
/// file. `None` for other jobs and for a job without files (Resume answers BG_E_EMPTY).
fn reply_name_to_pick(job: &Job) -> Option<PathBuf> {
    if job.job_type != JobType::UploadReply || job.reply.file_name.is_some() || job.files.is_empty()
    {
        return None;
    }
    Some(files::free_name(&job.default_reply_name()))
}
