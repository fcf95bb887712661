//! The actor's workers: one per running job, spawned with a run number (reports of a stopped
//! run are ignored), stopped at a checkpoint, their reports turned into model events.

use super::actor::{Actor, Persist};
use super::api::EngineEvent;
use super::bandwidth::{Gate, Throttle};
use super::http::{ClientKey, build_client};
use super::transfer::{self, End, Final, Report, WorkerMessage};
use super::{bits_upload, files, upload};
use crate::job::{
    self, ErrorClass, ErrorCode, ErrorContext, Event, Failure, Job, JobError, JobId, JobType,
    PropertyChange, REPLY_FILE,
};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Semaphore, mpsc, oneshot, watch};
use tokio::task::{AbortHandle, JoinError, JoinSet};

/// How long a worker told to stop may take to reach its checkpoint before it is ended.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// A running worker. Its task is owned by the actor's [`JoinSet`] and supervised: a panic is
/// caught and reported as the job's failure; its outcome comes back on `outcome` when stopped.
pub(super) struct RunningWorker {
    pub(super) run: u64,
    /// The last file the worker was given; files added later need a new worker.
    pub(super) last_file: usize,
    pub(super) stop: watch::Sender<bool>,
    /// What the worker leaves behind; closed without a value if it panicked.
    pub(super) outcome: oneshot::Receiver<Final>,
    pub(super) abort: AbortHandle,
}

/// The tasks of the workers, owned by the actor (dropping it aborts them all).
pub(super) type Workers = JoinSet<()>;

/// Test seam: a fault injected into the workers the engine starts (see
/// [`super::EngineOptions::fault_injection`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WorkerFault {
    /// The worker panics as it starts.
    Panic,
    /// The worker never ends, not even when told to stop.
    IgnoreStop,
}

/// Decides which faults the workers of which jobs get (tests only).
pub type FaultInjection = std::sync::Arc<dyn Fn(JobId) -> Option<WorkerFault> + Send + Sync>;

/// The failure a worker that panicked or would not stop leaves in its job: transient, so that
/// the job is retried and its slot is free meanwhile.
fn worker_lost(why: String) -> Failure {
    let error = JobError::new(
        ErrorContext::GeneralQueueManager,
        ErrorCode::LocalIo,
        None,
    )
    .with_description(format!(
        "{why}; the job is retried after its retry delay (this is a bug in Ferry: please report it \
         with the service log)"
    ));
    Failure {
        error,
        class: ErrorClass::Transient,
        retry_after: None,
    }
}

/// What a download worker needs of one file (or of the reply, [`REPLY_FILE`]), which may use
/// `connections` connections, the ones beyond its first with a permit of `host_slots`.
fn file_work(
    index: usize,
    file: &job::JobFile,
    connections: u32,
    host_slots: Arc<Semaphore>,
) -> transfer::FileWork {
    transfer::FileWork {
        index,
        url: file.remote_url.clone(),
        temp_path: file.temp_path.clone(),
        ranges: file.ranges.clone(),
        start_offset: file.bytes_checkpointed,
        validators: file.validators.clone(),
        segments: file.segments.clone(),
        connections,
        host_slots,
        checksum: file.checksum.as_ref().map(|c| c.algorithm),
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
/// The events of a file done: its last progress, its digest if it has a checksum (which may
/// end the job in ERROR instead), its FileTransferred.
fn file_done(
    file: usize,
    transferred: u64,
    digest: Option<crate::job::checksum::Checksum>,
) -> Vec<Event> {
    let progress = Event::Progress {
        file,
        transferred,
        checkpointed: transferred,
    };
    let digest = digest.map(|digest| Event::FileDigest { file, digest });
    std::iter::once(progress)
        .chain(digest)
        .chain(Some(Event::FileTransferred { file }))
        .collect()
}

impl Actor {
    pub(super) async fn on_report(&mut self, message: WorkerMessage) {
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
            Report::Segments(segments) => {
                let unchanged = self
                    .jobs
                    .get(&id)
                    .and_then(|job| job.files.get(file))
                    .is_some_and(|f| f.segments == segments);
                if unchanged {
                    return;
                }
                let event = Event::Segments { file, segments };
                self.apply(id, event, Persist::Checkpoint).await
            }
            Report::Redirected { url } => {
                let event = Event::Set(PropertyChange::RemoteName { file, url });
                self.apply(id, event, Persist::Checkpoint).await
            }
            Report::Done {
                transferred,
                digest,
            } => {
                if self.workers.get(&id).is_some_and(|w| w.last_file == file) {
                    self.workers.remove(&id);
                }
                let mut result = Ok(true);
                for event in file_done(file, transferred, digest) {
                    // A digest that does not match ends the job in ERROR: nothing after it.
                    let running = self.jobs.get(&id).is_some_and(|j| j.state.is_running());
                    if result.is_err() || !running {
                        break;
                    }
                    result = self.apply(id, event, Persist::Checkpoint).await;
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
    pub(super) async fn continue_job(&mut self, id: JobId) {
        let running = self.jobs.get(&id).is_some_and(|j| j.state.is_running());
        if running && let Some(result) = self.write_empty_reply(id) {
            let events = match result {
                Ok(()) => file_done(REPLY_FILE, 0, None),
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
    pub(super) async fn stop_worker(&mut self, id: JobId) {
        let Some(worker) = self.workers.remove(&id) else {
            return;
        };
        let _ = worker.stop.send(true);
        let outcome = match tokio::time::timeout(STOP_TIMEOUT, worker.outcome).await {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(_)) => {
                // Cancelled with the runtime (the engine is going away): nothing to record. A
                // panic is caught in the task and comes back as an outcome.
                tracing::warn!(job = %id, "transfer worker cancelled");
                return;
            }
            Err(_) => {
                worker.abort.abort();
                tracing::error!(job = %id, "transfer worker did not stop in time: ended");
                let failure = worker_lost(format!(
                    "the transfer did not stop within {} s and was ended",
                    STOP_TIMEOUT.as_secs()
                ));
                return self.fail_stopped(id, failure).await;
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
                .filter(|&(file, _, _)| {
                    // Not into a job that left the run (a digest that did not match).
                    self.jobs.get(&id).is_some_and(|j| {
                        j.state.is_running() && j.files.get(file).is_some_and(|f| !f.transferred)
                    })
                })
                .flat_map(|(file, transferred, digest)| file_done(file, transferred, digest)),
        );
        events.extend(
            outcome
                .stopped
                .iter()
                .map(|(file, stopped)| stopped.as_event(*file)),
        );
        match outcome.end {
            End::AllDone | End::Stopped => {}
            End::Failed(failure) => events.push(Event::Failed(failure)),
        }
        // The worker is gone, so these applies stop nothing.
        for event in events {
            if let Err(e) = Box::pin(self.apply(id, event, Persist::Now)).await {
                tracing::warn!(job = %id, "final worker state not applied: {e}");
            }
        }
    }

    pub(super) fn client(&mut self, key: ClientKey) -> Result<reqwest::Client, Failure> {
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

    /// The buckets a transfer of the job paces on: the job's own pace (one bucket for all its
    /// connections, kept across runs), the global one of its direction, and the idle-bandwidth
    /// gate, which binds while the job is a background one.
    fn throttle_for(&mut self, id: JobId, upload: bool) -> Throttle {
        let pace = self.job_paces.entry(id).or_default().clone();
        self.sync_job_bucket(id);
        let (global, idle) = if upload {
            (&self.upload_limit, &self.idle_upload)
        } else {
            (&self.download_limit, &self.idle_download)
        };
        Throttle::new(vec![pace.bucket, global.clone()]).with_gate(Gate {
            bucket: idle.clone(),
            applies: pace.background,
        })
    }

    fn spawn_worker(&mut self, id: JobId) -> Result<(), Failure> {
        let Some(job) = self.jobs.get(&id) else {
            return Ok(());
        };
        if job.job_type.is_upload() {
            return self.spawn_upload_worker(id);
        }
        let connections = self.config.connections_for(job.priority, job.connections);
        let cap = self.config.connections_per_host as usize;
        let mut files = Vec::new();
        for (index, file) in job.files.iter().enumerate().filter(|(_, f)| !f.transferred) {
            let slots = self
                .host_slots
                .entry(job::server_of(&file.remote_url).unwrap_or_else(|| file.remote_url.clone()))
                .or_insert_with(|| Arc::new(Semaphore::new(cap.saturating_sub(1))))
                .clone();
            files.push(file_work(index, file, connections, slots));
        }
        self.start_download(id, files)
    }

    /// Starts a download worker for these files of the job, with the job's settings.
    fn start_download(&mut self, id: JobId, files: Vec<transfer::FileWork>) -> Result<(), Failure> {
        let Some(last_file) = files.last().map(|f| f.index) else {
            return Ok(());
        };
        let client = self.job_client(id, false)?;
        let throttle = self.throttle_for(id, false);
        let Some(job) = self.jobs.get(&id) else {
            return Ok(());
        };
        let mut task = transfer::JobTask {
            throttle,
            job: id,
            run: 0, // given by start_worker
            dynamic: job.dynamic_content,
            headers: job.custom_headers.clone(),
            credentials: job.credentials.clone(),
            redirect: job.redirect_policy,
            client,
            files,
            parallel: job.parallel_files.clamp(1, job::MAX_PARALLEL_FILES) as usize,
            read_timeout: Duration::from_millis(self.config.read_timeout_ms),
        };
        self.start_worker(id, last_file, |run, reports, stop| {
            task.run = run;
            transfer::run(task, reports, stop)
        });
        Ok(())
    }

    /// Spawns a worker as the job's next run (the number its reports carry); `last_file` is the
    /// last file it was given (a Done report for it means the worker has ended).
    pub(super) fn start_worker<F>(
        &mut self,
        id: JobId,
        last_file: usize,
        worker: impl FnOnce(u64, mpsc::UnboundedSender<WorkerMessage>, watch::Receiver<bool>) -> F,
    ) where
        F: std::future::Future<Output = Final> + Send + 'static,
    {
        self.next_run += 1;
        let run = self.next_run;
        let (stop, stop_rx) = watch::channel(false);
        let (outcome_tx, outcome) = oneshot::channel();
        let work = worker(run, self.reports_tx.clone(), stop_rx);
        let fault = self.fault_injection.as_ref().and_then(|decide| decide(id));
        let reports = self.reports_tx.clone();
        let abort = self.tasks.spawn(async move {
            let supervised = std::panic::AssertUnwindSafe(async move {
                match fault {
                    Some(WorkerFault::Panic) => panic!("injected worker fault"),
                    Some(WorkerFault::IgnoreStop) => std::future::pending::<()>().await,
                    None => {}
                }
                work.await
            });
            let outcome = match futures_util::FutureExt::catch_unwind(supervised).await {
                Ok(outcome) => outcome,
                Err(panic) => {
                    let message = panic
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "a panic".into());
                    tracing::error!(job = %id, run, "transfer worker panicked: {message}");
                    let failure =
                        worker_lost(format!("the transfer stopped unexpectedly ({message})"));
                    // Whether or not it is being stopped, the actor hears of it.
                    let _ = reports.send(WorkerMessage {
                        job: id,
                        run,
                        file: 0,
                        report: Report::Failed(failure.clone()),
                    });
                    Final {
                        done: Vec::new(),
                        stopped: Vec::new(),
                        end: End::Failed(failure),
                        upload: None,
                    }
                }
            };
            let _ = outcome_tx.send(outcome);
        });
        self.workers.insert(
            id,
            RunningWorker {
                run,
                last_file,
                stop,
                outcome,
                abort,
            },
        );
    }

    /// A worker's task ended (its reports, or its outcome to `stop_worker`, said how): the
    /// set only forgets it. Owning the tasks in a set means none outlives the actor.
    pub(super) fn on_task_end(&mut self, ended: Result<(), JoinError>) {
        if let Err(e) = ended
            && !e.is_cancelled()
        {
            tracing::error!("transfer worker task failed: {e}");
        }
    }

    /// A stopped worker left nothing usable: the job fails (transient), unless it is no longer
    /// running anyway.
    async fn fail_stopped(&mut self, id: JobId, failure: Failure) {
        if self.jobs.get(&id).is_some_and(|j| j.state.is_running()) {
            // Boxed: applying an event may stop a worker, which may fail the job.
            Box::pin(self.report_failed(id, failure)).await;
        }
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
        let throttle = self.throttle_for(id, true);
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
            throttle,
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
                let work = file_work(REPLY_FILE, reply, 1, Arc::new(Semaphore::new(0)));
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
    pub(super) fn end_session(&mut self, id: JobId, url: String, session: String, cancel: bool) {
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
        let flags = self.notify_flags_of(id);
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
            let ended = EngineEvent::UploadSessionEnded {
                job: id,
                session,
                cancel,
                acknowledged: result.is_ok(),
            };
            events.publish(ended, flags);
        });
    }
}
