//! The transfer worker: downloads one file of a job over HTTP(S) into its temp file, resuming from
//! the checkpoint with range requests, detecting remote changes (spec §7.11–7.12) and classifying
//! failures (spec §4.3). It reports to the engine and never touches the job itself.

mod segmented;

use super::bandwidth::Throttle;
use super::http;
use super::writer::Writer;
use crate::job::{
    AuthScheme, Credentials, ErrorClass, ErrorCode, ErrorContext, Failure, FileRange, JobError,
    JobId, LENGTH_TO_EOF, RedirectMode, RedirectPolicy, Segment, Size, Validators,
    classify_http_status,
};
use reqwest::StatusCode;
use reqwest::header::{self, HeaderMap, HeaderName, HeaderValue};
use segmented::{FirstAnswer, Split};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{Semaphore, mpsc, watch};

/// How often a running transfer reports its progress.
const REPORT_INTERVAL: Duration = Duration::from_millis(100);
/// Restarts from zero (the remote file changed) within one run before the run fails for now: a
/// server whose validators change on every answer must not keep a worker in a loop.
const MAX_RESTARTS: u32 = 3;
/// Under a speed limit, one GET asks for this long of it, and at least [`LIMITED_RANGE_MIN`].
const LIMITED_RANGE_TIME: Duration = Duration::from_secs(1);
const LIMITED_RANGE_MIN: u64 = 64 * 1024;

/// What a worker needs of the job, copied out of it when the worker starts.
pub(crate) struct JobTask {
    pub job: JobId,
    pub run: u64,
    pub dynamic: bool,
    pub headers: Vec<(String, String)>,
    pub credentials: Credentials,
    pub redirect: RedirectPolicy,
    pub client: reqwest::Client,
    /// The files still to transfer, in order: the worker goes from one to the next without
    /// waiting for the engine.
    pub files: Vec<FileWork>,
    /// How many of them transfer at once.
    pub parallel: usize,
    /// The speed limits the job's connections pace on.
    pub throttle: Throttle,
    /// How long the server may stay silent while a connection waits for it. Counted here, not by
    /// the HTTP client, whose timer also runs while a connection waits on a speed limit.
    pub read_timeout: Duration,
}

pub(crate) struct FileWork {
    pub index: usize,
    pub url: String,
    pub temp_path: PathBuf,
    pub ranges: Option<Vec<FileRange>>,
    /// Where to resume: the file's checkpoint.
    pub start_offset: u64,
    pub validators: Option<Validators>,
    /// The pieces of a file split over several connections (then `start_offset` is unused).
    pub segments: Vec<Segment>,
    /// The most connections this file may use.
    pub connections: u32,
    /// Permits for connections beyond a file's first to its server (the per-host cap).
    pub host_slots: Arc<Semaphore>,
    /// The digest to compute of the file once it is all on disk, for its checksum.
    pub checksum: Option<crate::job::checksum::DigestAlgorithm>,
}

/// One file's transfer, with the job's settings.
struct FileTask {
    file: usize,
    url: String,
    temp_path: PathBuf,
    ranges: Option<Vec<FileRange>>,
    start_offset: u64,
    validators: Option<Validators>,
    segments: Vec<Segment>,
    connections: u32,
    host_slots: Arc<Semaphore>,
    dynamic: bool,
    headers: Vec<(String, String)>,
    credentials: Credentials,
    redirect: RedirectPolicy,
    client: reqwest::Client,
    throttle: Throttle,
    read_timeout: Duration,
}

#[derive(Debug)]
pub(crate) enum Report {
    Connected,
    FileInfo {
        bytes_total: Size,
        validators: Validators,
    },
    Restarted,
    Progress {
        transferred: u64,
        checkpointed: u64,
    },
    /// A file split over several connections: where its pieces stand.
    Segments(Vec<Segment>),
    /// ALLOW_REPORT redirect policy: the file's URL becomes the final one.
    Redirected {
        url: String,
    },
    /// The file is complete and flushed: `transferred` bytes, with the digest its checksum
    /// asked for.
    Done {
        transferred: u64,
        digest: Option<crate::job::checksum::Checksum>,
    },
    Failed(Failure),
    /// Uploads: the server session now in use (`None`: the server lost it).
    Session(Option<String>),
    /// Uploads: the host the session is pinned to (BITS-Host-Id) and its fallback timer.
    Host(Option<crate::job::UploadHost>),
    /// Upload-reply: the reply URL from the last acknowledgement (`None`: no reply).
    ReplyLocated {
        url: Option<String>,
    },
}

#[derive(Debug)]
pub(crate) struct WorkerMessage {
    pub job: JobId,
    pub run: u64,
    pub file: usize,
    pub report: Report,
}

/// What a stopped worker leaves behind: how far its temp file is written and flushed.
#[derive(Clone, Debug, Default)]
pub(crate) struct Stopped {
    pub transferred: u64,
    pub checkpointed: u64,
    /// A split file's pieces (then the two counts are their sums); empty for one connection.
    pub segments: Vec<Segment>,
}

impl Stopped {
    /// The model event that records where `file` stands (a stopped worker's last word).
    pub(crate) fn as_event(&self, file: usize) -> crate::job::Event {
        if self.segments.is_empty() {
            crate::job::Event::Progress {
                file,
                transferred: self.transferred,
                checkpointed: self.checkpointed,
            }
        } else {
            crate::job::Event::Segments {
                file,
                segments: self.segments.clone(),
            }
        }
    }

    /// The report that records where the file stands.
    fn as_report(&self) -> Report {
        if self.segments.is_empty() {
            Report::Progress {
                transferred: self.transferred,
                checkpointed: self.checkpointed,
            }
        } else {
            Report::Segments(self.segments.clone())
        }
    }
}

#[derive(Clone)]
pub(crate) struct Reporter {
    pub task_job: JobId,
    pub run: u64,
    pub file: usize,
    pub out: mpsc::UnboundedSender<WorkerMessage>,
}

impl Reporter {
    pub fn send(&self, report: Report) {
        let _ = self.out.send(WorkerMessage {
            job: self.task_job,
            run: self.run,
            file: self.file,
            report,
        });
    }
}

enum Outcome {
    /// Complete, with this many bytes.
    Done(u64),
    Stopped(Stopped),
    Failed(Failure),
}

/// How a worker ended. The engine reads it when it stops a worker, so that files that finished
/// just before the stop are not lost with their reports still in the channel.
#[derive(Debug)]
pub(crate) struct Final {
    /// Files this worker transferred completely, with their size and digest, in their order.
    pub done: Vec<(usize, u64, Option<crate::job::checksum::Checksum>)>,
    /// Files it was transferring when it stopped, and where they stand.
    pub stopped: Vec<(usize, Stopped)>,
    pub end: End,
    /// Upload workers: where the server session stands, applied before `done`.
    pub upload: Option<UploadEnd>,
}

/// The protocol state an upload worker leaves behind.
#[derive(Debug, Default)]
pub(crate) struct UploadEnd {
    pub session: Option<String>,
    pub host: Option<crate::job::UploadHost>,
    /// Upload-reply: the reply URL, when the last fragment was acknowledged.
    pub reply: Option<Option<String>>,
}

#[derive(Debug)]
pub(crate) enum End {
    AllDone,
    Failed(Failure),
    /// Told to stop: the files in `Final::stopped` stand where they say.
    Stopped,
}

/// Transfers the task's files, `parallel` at a time in their order, until all are done, one
/// fails, or `stop` turns true. Files finished out of order are reported in order: a file's
/// Done waits for the files before it (a stop or a failure leaves it fully checkpointed, not
/// transferred).
pub(crate) async fn run(
    task: JobTask,
    out: mpsc::UnboundedSender<WorkerMessage>,
    mut stop: watch::Receiver<bool>,
) -> Final {
    let JobTask {
        job,
        run,
        dynamic,
        headers,
        credentials,
        redirect,
        client,
        files,
        parallel,
        throttle,
        read_timeout,
    } = task;
    let count = files.len();
    let mut waiting = files.into_iter().enumerate().peekable();
    // The files' own stop: the job's, or a sibling's failure.
    let (halt, halted) = watch::channel(false);
    let mut running = futures_util::stream::FuturesUnordered::new();
    type Finished = (Reporter, u64, Option<crate::job::checksum::Checksum>);
    let mut finished: std::collections::BTreeMap<usize, Finished> = Default::default();
    let mut next_report = 0;
    let mut done = Vec::with_capacity(count);
    let mut stopped = Vec::new();
    let mut failed: Option<(Reporter, Failure)> = None;
    loop {
        while failed.is_none() && !*halted.borrow() && running.len() < parallel.max(1) {
            let Some((_, next)) = waiting.peek() else {
                break;
            };
            // A file beside the first opens a connection that counts against its server's cap
            // (as a file's extra connections do): none free, it waits for a file to end.
            let permit = if running.is_empty() {
                None
            } else {
                match next.host_slots.clone().try_acquire_owned() {
                    Ok(permit) => Some(permit),
                    Err(_) => break,
                }
            };
            let Some((position, work)) = waiting.next() else {
                break;
            };
            let checksum = work.checksum;
            let mut worker = Worker {
                task: FileTask {
                    file: work.index,
                    url: work.url,
                    temp_path: work.temp_path,
                    ranges: work.ranges,
                    start_offset: work.start_offset,
                    validators: work.validators,
                    segments: work.segments,
                    connections: work.connections,
                    host_slots: work.host_slots,
                    dynamic,
                    headers: headers.clone(),
                    credentials: credentials.clone(),
                    redirect,
                    client: client.clone(),
                    throttle: throttle.clone(),
                    read_timeout,
                },
                reporter: Reporter {
                    task_job: job,
                    run,
                    file: work.index,
                    out: out.clone(),
                },
                last_report: Instant::now(),
                connected: false,
                no_split: false,
                cut: false,
                no_cut: false,
                digest_algorithm: checksum,
                streamed: None,
            };
            let mut stop = halted.clone();
            running.push(async move {
                let _permit = permit;
                let outcome = worker.transfer(&mut stop).await;
                let (outcome, digest) = worker.digest(outcome, checksum, &mut stop).await;
                (position, worker.reporter, outcome, digest)
            });
        }
        if running.is_empty() {
            break;
        }
        tokio::select! {
            Some((position, reporter, outcome, digest)) = futures_util::StreamExt::next(&mut running) => {
                match outcome {
                    Outcome::Done(transferred) => {
                        if position != next_report {
                            // Held until the files before it are done; its bytes count now.
                            reporter.send(Report::Progress { transferred, checkpointed: transferred });
                        }
                        finished.insert(position, (reporter, transferred, digest));
                        while let Some((reporter, transferred, digest)) = finished.remove(&next_report) {
                            reporter.send(Report::Done { transferred, digest: digest.clone() });
                            done.push((reporter.file, transferred, digest));
                            next_report += 1;
                        }
                    }
                    Outcome::Stopped(state) => stopped.push((reporter.file, state)),
                    Outcome::Failed(failure) => {
                        // The job fails: the others stop at their checkpoints first, so that
                        // what they flushed is recorded before the failure.
                        let _ = halt.send(true);
                        failed.get_or_insert((reporter, failure));
                    }
                }
            }
            _ = stop_requested(&mut stop), if !*halted.borrow() => {
                let _ = halt.send(true);
            }
        }
    }
    // Files finished after one that did not: whole and flushed, but not reported transferred
    // out of their order. The next run finds them complete without a request.
    stopped.extend(finished.into_values().map(|(reporter, n, _)| {
        let whole = Stopped {
            transferred: n,
            checkpointed: n,
            segments: Vec::new(),
        };
        (reporter.file, whole)
    }));
    let end = match failed {
        Some((reporter, failure)) => {
            for (file, state) in &stopped {
                let reporter = Reporter {
                    file: *file,
                    ..reporter.clone()
                };
                reporter.send(state.as_report());
            }
            reporter.send(Report::Failed(failure.clone()));
            End::Failed(failure)
        }
        None if !stopped.is_empty() => End::Stopped,
        None => End::AllDone,
    };
    Final {
        done,
        stopped,
        end,
        upload: None,
    }
}

/// One GET: which remote bytes, and where they go in the local file.
struct Span {
    /// Remote offset of the first byte to request.
    remote_start: u64,
    /// Bytes to request, `None` = to the end of the remote file.
    length: Option<u64>,
    /// Local offset of the first byte.
    local_start: u64,
}

struct Worker {
    task: FileTask,
    reporter: Reporter,
    last_report: Instant,
    connected: bool,
    /// This run fetches the file on one connection: its server stopped serving ranges, or its
    /// connections saw two versions of the file.
    no_split: bool,
    /// Whether this run cut an answer to go on in bounded ranges (`range_cap`), and whether it
    /// must not any more: its server announced ranges and then answered one with the whole file.
    cut: bool,
    no_cut: bool,
    /// The checksum's digest, and the digest taken as the file is written in order (`None` once
    /// it cannot be: the file was split, or this run began past its first byte).
    digest_algorithm: Option<crate::job::checksum::DigestAlgorithm>,
    streamed: Option<super::digest::Streamed>,
}

impl Worker {
    fn failure(&self, context: ErrorContext, code: ErrorCode, class: ErrorClass) -> Failure {
        let error = JobError::new(context, code, Some(self.task.file)).with_description(format!(
            "{} ({})",
            code.advice(),
            self.task.url
        ));
        Failure {
            error,
            class,
            retry_after: None,
        }
    }

    /// A failure with its own description instead of the code's standard advice.
    fn failure_because(
        &self,
        context: ErrorContext,
        code: ErrorCode,
        class: ErrorClass,
        description: String,
    ) -> Failure {
        let mut failure = self.failure(context, code, class);
        failure.error.description = description;
        failure
    }

    fn local_failure(&self, error: &std::io::Error) -> Failure {
        let (code, class) = super::files::classify_io(error);
        self.failure_because(
            ErrorContext::LocalFile,
            code,
            class,
            format!(
                "{} ({}: {error})",
                code.advice(),
                self.task.temp_path.display()
            ),
        )
    }

    async fn transfer(&mut self, stop: &mut watch::Receiver<bool>) -> Outcome {
        let mut local = if self.task.dynamic {
            0
        } else {
            self.task.start_offset
        };
        if self.task.dynamic && self.task.start_offset > 0 {
            self.reporter.send(Report::Restarted); // dynamic content restarts on any interruption
        }
        if local > 0 {
            // A temp file shorter than its checkpoint (deleted, or truncated by a restart whose
            // record was not saved) cannot be trusted: start the file again.
            let on_disk = std::fs::metadata(&self.task.temp_path)
                .map(|m| m.len())
                .unwrap_or(0);
            if on_disk < local {
                self.reporter.send(Report::Restarted);
                local = 0;
            }
        }
        let mut restarts = 0;
        if !self.task.segments.is_empty() {
            // A split file resumes its pieces, unless its temp file lost flushed bytes.
            let needed = self
                .task
                .segments
                .iter()
                .map(|s| s.flushed)
                .max()
                .unwrap_or(0);
            let on_disk = std::fs::metadata(&self.task.temp_path)
                .map(|m| m.len())
                .unwrap_or(0);
            if self.task.dynamic || self.task.ranges.is_some() || on_disk < needed {
                self.reporter.send(Report::Restarted);
                self.task.segments.clear();
                local = 0;
            } else {
                local = 0;
                let split = self.split(None, stop).await;
                if let Some(outcome) = self.after_split(split, &mut restarts) {
                    return outcome;
                }
                self.task.segments.clear();
            }
        }
        'restart: loop {
            let planned_size = self.known_size();
            let segments = match self.segments() {
                Ok(segments) => segments,
                Err(failure) => return Outcome::Failed(failure),
            };
            for segment in &segments {
                // A segment may take several GETs: a server may answer a range with less than
                // asked (an honest short 206), and the rest is asked for again.
                loop {
                    let end = segment
                        .length
                        .map(|l| segment.local_start.saturating_add(l));
                    if end.is_some_and(|end| end <= local) {
                        break; // on disk
                    }
                    let within = local.saturating_sub(segment.local_start);
                    match self.fetch(segment, within, stop).await {
                        Fetch::Wrote(to) => {
                            let advanced = to > local;
                            local = to;
                            if self.known_size() != planned_size {
                                continue 'restart; // the size is known now: place the ranges
                            }
                            if segment.length.is_none() {
                                if self.task.ranges.is_some() {
                                    // Where the next range goes depends on this one's length.
                                    return Outcome::Failed(self.failure_because(
                                        ErrorContext::RemoteFile,
                                        ErrorCode::MissingFileSize,
                                        ErrorClass::Fatal,
                                        format!(
                                            "a range to the end of the file needs the file's size, \
                                             and the server did not tell it ({})",
                                            self.task.url
                                        ),
                                    ));
                                }
                                break; // no size (dynamic content): the body ended the file
                            }
                            if !advanced {
                                return Outcome::Failed(self.nothing_sent());
                            }
                        }
                        Fetch::Restart => {
                            restarts += 1;
                            if restarts > MAX_RESTARTS {
                                return Outcome::Failed(self.changed_too_often(restarts));
                            }
                            self.reporter.send(Report::Restarted);
                            local = 0;
                            continue 'restart;
                        }
                        Fetch::Split(answer, at) => {
                            let split = self.split(Some((answer, at)), stop).await;
                            if let Some(outcome) = self.after_split(split, &mut restarts) {
                                return outcome;
                            }
                            local = 0;
                            continue 'restart;
                        }
                        Fetch::Stopped(stopped) => return Outcome::Stopped(stopped),
                        Fetch::Failed(failure) => return Outcome::Failed(failure),
                    }
                }
            }
            break;
        }
        self.finished(local)
    }

    /// What the end of a split means for the file: the outcome to return, or `None` to fetch
    /// it again from byte 0 on one connection.
    fn after_split(&mut self, split: Split, restarts: &mut u32) -> Option<Outcome> {
        match split {
            Split::Done(size) => Some(self.finished(size)),
            Split::Stopped(stopped) => Some(Outcome::Stopped(stopped)),
            Split::Failed(failure) => Some(Outcome::Failed(failure)),
            Split::Changed(seen) => {
                *restarts += 1;
                if *restarts > MAX_RESTARTS {
                    return Some(Outcome::Failed(self.changed_too_often(*restarts)));
                }
                self.task.validators = Some(seen);
                // Connections that saw two versions: a changed file, or servers behind one
                // name that tag the same file differently. One connection sees one of them
                // whole.
                self.no_split = true;
                self.reporter.send(Report::Restarted);
                None
            }
            Split::NoRanges => {
                self.no_split = true;
                self.reporter.send(Report::Restarted);
                None
            }
        }
    }

    /// A body longer than its Content-Length (or the range's length).
    fn overlong_body(&self) -> Failure {
        self.failure_because(
            ErrorContext::RemoteFile,
            ErrorCode::InvalidServerResponse,
            ErrorClass::Transient,
            format!(
                "the server sent more bytes than it announced ({})",
                self.task.url
            ),
        )
    }

    /// A body that ended before its announced length: the connection was cut.
    fn short_body(&self) -> Failure {
        self.failure(
            ErrorContext::GeneralTransport,
            ErrorCode::ConnectionError,
            ErrorClass::Transient,
        )
    }

    /// An answer that brought none of the bytes asked for.
    fn nothing_sent(&self) -> Failure {
        self.failure_because(
            ErrorContext::RemoteFile,
            ErrorCode::InvalidServerResponse,
            ErrorClass::Transient,
            format!(
                "the server answered without sending any of the bytes asked for ({})",
                self.task.url
            ),
        )
    }

    fn changed_too_often(&self, restarts: u32) -> Failure {
        self.failure_because(
            ErrorContext::RemoteFile,
            ErrorCode::InvalidServerResponse,
            ErrorClass::Transient,
            format!(
                "the remote file changed {restarts} times during one transfer; trying again \
                 later ({})",
                self.task.url
            ),
        )
    }

    /// A file whose checksum asks for a digest: computed once all its bytes are on disk (off the
    /// async threads), given up at a stop, which leaves the file whole and flushed for the next
    /// run to digest again.
    async fn digest(
        &mut self,
        outcome: Outcome,
        algorithm: Option<crate::job::checksum::DigestAlgorithm>,
        stop: &mut watch::Receiver<bool>,
    ) -> (Outcome, Option<crate::job::checksum::Checksum>) {
        let (Outcome::Done(local), Some(algorithm)) = (&outcome, algorithm) else {
            return (outcome, None);
        };
        let local = *local;
        // Taken as it was written, in order, to its last byte: nothing to read again.
        if let Some(streamed) = self.streamed.take()
            && streamed.at == local
            && streamed.algorithm == algorithm
        {
            return (outcome, Some(streamed.finish()));
        }
        let cancel = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (path, flag) = (self.task.temp_path.clone(), cancel.clone());
        let mut hashing =
            tokio::task::spawn_blocking(move || super::digest::of_file(&path, algorithm, &flag));
        let result = tokio::select! {
            result = &mut hashing => result,
            () = stop_requested(stop) => {
                cancel.store(true, std::sync::atomic::Ordering::Relaxed);
                hashing.await
            }
        };
        let whole = Stopped {
            transferred: local,
            checkpointed: local,
            segments: Vec::new(),
        };
        match result {
            Ok(Ok(Some(digest))) => (Outcome::Done(local), Some(digest)),
            Ok(Ok(None)) => (Outcome::Stopped(whole), None),
            Ok(Err(e)) => (Outcome::Failed(self.local_failure(&e)), None),
            Err(e) => (
                Outcome::Failed(self.failure_because(
                    ErrorContext::LocalFile,
                    ErrorCode::LocalIo,
                    ErrorClass::Transient,
                    format!(
                        "the digest of {} could not be computed: {e}",
                        self.task.temp_path.display()
                    ),
                )),
                None,
            ),
        }
    }

    /// The file's `local` bytes are on disk: the last checks before it counts as transferred.
    fn finished(&self, local: u64) -> Outcome {
        // The last word before the file counts as transferred: exactly the bytes expected.
        let expected = self
            .task
            .validators
            .as_ref()
            .and_then(|seen| self.bytes_total(seen));
        if let Some(expected) = expected
            && expected != local
        {
            return Outcome::Failed(self.failure_because(
                ErrorContext::RemoteFile,
                ErrorCode::InvalidServerResponse,
                ErrorClass::Transient,
                format!(
                    "received {local} bytes where the server announced {expected} ({})",
                    self.task.url
                ),
            ));
        }
        // The bytes must be where Complete will look: a folder removed (or a temp file deleted)
        // during the transfer leaves them in an unlinked file that nothing can reach.
        if let Err(failure) = self.check_temp_file(local) {
            return Outcome::Failed(failure);
        }
        self.set_mtime();
        Outcome::Done(local)
    }

    /// The temp file is still at its path with all `bytes`.
    fn check_temp_file(&self, bytes: u64) -> Result<(), Failure> {
        let path = &self.task.temp_path;
        let gone = |why: String| {
            self.failure_because(
                ErrorContext::LocalFile,
                ErrorCode::PathNotFound,
                ErrorClass::Fatal,
                format!(
                    "{why} during the transfer, so the downloaded bytes are lost: re-create the \
                     folder {} if needed and Resume the job to download the file again",
                    path.parent().unwrap_or(path).display()
                ),
            )
        };
        match std::fs::metadata(path) {
            Ok(meta) if meta.len() == bytes => Ok(()),
            Ok(meta) => Err(gone(format!(
                "the temp file {} was changed ({} bytes instead of {bytes})",
                path.display(),
                meta.len()
            ))),
            Err(e) => Err(gone(format!(
                "the temp file {} disappeared ({e}; was its folder removed?)",
                path.display()
            ))),
        }
    }

    fn known_size(&self) -> Option<u64> {
        self.task.validators.as_ref().and_then(|v| v.size)
    }

    /// The GETs this file needs, with lengths resolved as far as the known size allows.
    fn segments(&self) -> Result<Vec<Span>, Failure> {
        let size = self.known_size();
        let Some(ranges) = &self.task.ranges else {
            return Ok(vec![Span {
                remote_start: 0,
                length: size,
                local_start: 0,
            }]);
        };
        let mut local_start: u64 = 0;
        let mut segments = Vec::with_capacity(ranges.len());
        for range in ranges {
            let length = match (range.length, size) {
                (LENGTH_TO_EOF, Some(size)) => Some(size.saturating_sub(range.offset)),
                (LENGTH_TO_EOF, None) => None,
                (length, _) => Some(length),
            };
            let end = length.map(|length| range.offset.checked_add(length));
            let outside = match (end, size) {
                (Some(None), _) => true, // past u64: refused at creation, checked again here
                (Some(Some(end)), Some(size)) => end > size,
                (None, Some(size)) => range.offset >= size,
                _ => false,
            };
            if outside {
                let failure = self.failure_because(
                    ErrorContext::RemoteFile,
                    ErrorCode::InvalidRange,
                    ErrorClass::Fatal,
                    format!(
                        "range {}:{} lies outside the remote file of {} bytes ({})",
                        range.offset,
                        length.map_or("eof".to_string(), |l| l.to_string()),
                        size.map_or("unknown".to_string(), |s| s.to_string()),
                        self.task.url
                    ),
                );
                return Err(failure);
            }
            segments.push(Span {
                remote_start: range.offset,
                length,
                local_start,
            });
            local_start = local_start.saturating_add(length.unwrap_or(0));
        }
        Ok(segments)
    }

    /// Builds and sends one GET, answering a Digest challenge once if the job has credentials.
    async fn send(
        &self,
        range: Option<String>,
        if_range: Option<&str>,
    ) -> Result<reqwest::Response, Failure> {
        let mut headers = HeaderMap::new();
        for (name, value) in &self.task.headers {
            if let (Ok(name), Ok(value)) = (
                HeaderName::try_from(name.as_str()),
                HeaderValue::try_from(value.as_str()),
            ) {
                headers.append(name, value);
            }
        }
        if let Some(range) = &range
            && let Ok(value) = HeaderValue::try_from(range.as_str())
        {
            headers.insert(header::RANGE, value);
        }
        if let Some(tag) = if_range
            && let Ok(value) = HeaderValue::try_from(tag)
        {
            headers.insert(header::IF_RANGE, value);
        }
        let request = |auth: Option<HeaderValue>| {
            let mut builder = self
                .task
                .client
                .get(&self.task.url)
                .headers(headers.clone());
            if let Some((AuthScheme::Basic, user, password)) = &self.task.credentials.server {
                builder = builder.basic_auth(user, Some(password));
            }
            if let Some(auth) = auth {
                builder = builder.header(header::AUTHORIZATION, auth);
            }
            builder.send()
        };
        let timeout = self.task.read_timeout;
        let response = tokio::time::timeout(timeout, request(None))
            .await
            .map_err(|_| self.silence_failure())?
            .map_err(|e| self.transport_failure(&e))?;
        if response.status() == StatusCode::UNAUTHORIZED
            && let Some((AuthScheme::Digest, user, password)) = &self.task.credentials.server
            && let Some(answer) = digest_answer(&response, user, password)
        {
            return tokio::time::timeout(timeout, request(Some(answer)))
                .await
                .map_err(|_| self.silence_failure())?
                .map_err(|e| self.transport_failure(&e));
        }
        Ok(response)
    }

    /// The next piece of the body, or the server's silence for the read timeout since `since`
    /// (when the connection began to wait for it).
    pub(super) async fn next_chunk(
        &self,
        response: &mut reqwest::Response,
        since: tokio::time::Instant,
    ) -> Result<Option<bytes::Bytes>, Failure> {
        let deadline = since + self.task.read_timeout;
        match tokio::time::timeout_at(deadline, response.chunk()).await {
            Ok(chunk) => chunk.map_err(|e| self.transport_failure(&e)),
            Err(_) => Err(self.silence_failure()),
        }
    }

    /// The server sent nothing for the read timeout (a transient error, as a WinHTTP timeout).
    fn silence_failure(&self) -> Failure {
        self.failure_because(
            ErrorContext::GeneralTransport,
            ErrorCode::Timeout,
            ErrorClass::Transient,
            format!(
                "{} ({}: nothing received for {} s)",
                ErrorCode::Timeout.advice(),
                self.task.url,
                self.task.read_timeout.as_secs_f64()
            ),
        )
    }

    fn transport_failure(&self, error: &reqwest::Error) -> Failure {
        let (code, class, chain) = http::classify_transport(error);
        self.failure_because(
            ErrorContext::GeneralTransport,
            code,
            class,
            format!("{} ({}: {chain})", code.advice(), self.task.url),
        )
    }

    fn status_failure(&self, response: &reqwest::Response) -> Failure {
        let status = response.status();
        let code = ErrorCode::Http(status.as_u16());
        if status.is_redirection() {
            let target = response
                .headers()
                .get(header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("?");
            if self.task.redirect.mode == RedirectMode::Disallow {
                let failure = self.failure_because(ErrorContext::RemoteFile, ErrorCode::RedirectFailed, ErrorClass::Fatal, format!(
                    "the server redirected {} to {target}, and the job's redirect policy forbids redirects",
                    self.task.url
                ));
                return failure;
            }
        }
        let mut failure = self.failure(
            ErrorContext::RemoteFile,
            code,
            classify_http_status(status.as_u16()),
        );
        failure.retry_after = http::retry_after(response.headers());
        failure
    }

    fn report_progress(&mut self, writer: &Writer, force: bool) {
        if force || self.last_report.elapsed() >= REPORT_INTERVAL {
            self.last_report = Instant::now();
            self.reporter.send(Report::Progress {
                transferred: writer.written(),
                checkpointed: writer.durable(),
            });
        }
    }

    /// Fetches one segment starting `within` bytes into it.
    async fn fetch(
        &mut self,
        segment: &Span,
        within: u64,
        stop: &mut watch::Receiver<bool>,
    ) -> Fetch {
        let local = segment.local_start.saturating_add(within);
        let whole_file = self.task.ranges.is_none();
        let asked = match self.asked(segment, within) {
            Ok(asked) => asked,
            Err(failure) => return Fetch::Failed(failure),
        };
        // Ferry extension: a strong ETag guards the resume with If-Range.
        let if_range = asked.and_then(|_| {
            self.task
                .validators
                .as_ref()?
                .etag
                .clone()
                .filter(|tag| !tag.starts_with("W/"))
        });
        let range = asked.map(|asked| asked.header());
        let asked_at = Instant::now();
        let response = tokio::select! {
            response = self.send(range, if_range.as_deref()) => response,
            _ = stop_requested(stop) => return Fetch::Stopped(Stopped { transferred: local, checkpointed: local, segments: Vec::new() }),
        };
        let response = match response {
            Ok(response) => response,
            Err(failure) => return Fetch::Failed(failure),
        };
        if self.task.redirect.mode == RedirectMode::AllowReport
            && response.url().as_str() != self.task.url
        {
            let url = response.url().to_string();
            self.reporter.send(Report::Redirected { url: url.clone() });
            self.task.url = url;
        }
        let status = response.status();
        let mut seen = http::response_validators(status, response.headers());
        if seen.size.is_none() && status == StatusCode::PARTIAL_CONTENT {
            // `Content-Range: …/*`: the size stays what an earlier answer said.
            seen.size = self.known_size();
        }
        let changed = self
            .task
            .validators
            .as_ref()
            .is_some_and(|old| http::validators_differ(old, &seen));
        let mut expected_body = match http::content_length(response.headers()) {
            Ok(length) => length,
            Err(refusal) => return Fetch::Failed(self.refused(refusal)),
        };
        let mut write_at = local;
        match status {
            StatusCode::PARTIAL_CONTENT if let Some(asked) = asked => {
                if changed {
                    self.task.validators = Some(seen);
                    return Fetch::Restart; // T30: the remote file changed under us
                }
                match http::check_partial(asked, response.headers()) {
                    Ok(part) => expected_body = Some(part.length),
                    Err(refusal) => return Fetch::Failed(self.refused(refusal)),
                }
            }
            StatusCode::OK => {
                if asked.is_some() {
                    // Either the file changed (If-Range said so) or the server ignores ranges.
                    if whole_file && (changed || self.task.dynamic || self.cut) {
                        // (After a cut: its server announced ranges it does not serve. The
                        // file starts again, and this answer is not cut: it was what a limited
                        // download got before bounded ranges, and it must still be enough.)
                        self.no_cut |= self.cut;
                        self.reporter.send(Report::Restarted);
                        write_at = 0;
                    } else if changed {
                        self.task.validators = Some(seen);
                        return Fetch::Restart;
                    } else {
                        let failure = self.failure_because(
                            ErrorContext::RemoteFile,
                            ErrorCode::InsufficientRangeSupport,
                            ErrorClass::Fatal,
                            format!(
                                "{} ({} answered a range request with the whole file)",
                                ErrorCode::InsufficientRangeSupport.advice(),
                                self.task.url
                            ),
                        );
                        return Fetch::Failed(failure);
                    }
                }
                if expected_body.is_none() && !self.task.dynamic {
                    return Fetch::Failed(self.failure(
                        ErrorContext::RemoteFile,
                        ErrorCode::MissingFileSize,
                        ErrorClass::Fatal,
                    ));
                }
            }
            StatusCode::RANGE_NOT_SATISFIABLE if whole_file && local > 0 => {
                // Everything may already be here (a crash after the last byte, before the report).
                let total = http::unsatisfied_range_total(response.headers());
                if total == Some(local) && !changed {
                    self.task
                        .validators
                        .get_or_insert_with(Validators::default)
                        .size = total;
                    return Fetch::Wrote(local);
                }
                self.task.validators = None;
                return Fetch::Restart;
            }
            StatusCode::RANGE_NOT_SATISFIABLE if asked.is_some() => {
                let failure = self.failure_because(
                    ErrorContext::RemoteFile,
                    ErrorCode::InvalidRange,
                    ErrorClass::Fatal,
                    format!(
                        "the requested range lies outside the remote file ({})",
                        self.task.url
                    ),
                );
                return Fetch::Failed(failure);
            }
            StatusCode::PARTIAL_CONTENT => {
                let failure = self.failure_because(
                    ErrorContext::RemoteFile,
                    ErrorCode::InvalidServerResponse,
                    ErrorClass::Fatal,
                    format!(
                        "the server answered a request for the whole file with a part of it \
                         (206) ({})",
                        self.task.url
                    ),
                );
                return Fetch::Failed(failure);
            }
            _ => return Fetch::Failed(self.status_failure(&response)),
        }
        // The response is usable: bytes are about to move (CONNECTING → TRANSFERRING).
        if !self.connected {
            self.connected = true;
            self.reporter.send(Report::Connected);
        }
        self.task.validators = Some(seen.clone());
        let bytes_total = self.bytes_total(&seen);
        let split = self.may_split(status, response.headers(), &seen, write_at);
        // Under a limit, an answer longer than a few seconds of it may be cut and the rest
        // asked for in bounded ranges: only where the server serves ranges, for a file of known
        // size that is not dynamic.
        let may_cut = http::serves_ranges(status, response.headers())
            && seen.size.is_some()
            && !self.task.dynamic
            && !self.no_cut;
        self.reporter.send(Report::FileInfo {
            bytes_total,
            validators: seen,
        });
        if split {
            let answer = FirstAnswer {
                response,
                expected_body,
                latency: asked_at.elapsed(),
            };
            return Fetch::Split(answer, write_at);
        }
        self.stream_body(response, write_at, expected_body, may_cut, stop)
            .await
    }

    /// Under a speed limit, the longest range one GET asks for: [`LIMITED_RANGE_TIME`] of the
    /// limit. What a GET asks for is what can arrive: a server cannot fill the socket's buffer
    /// (tens of MiB when TCP has tuned it up) beyond it while the transfer waits on its limit,
    /// so the limit holds on the wire too, and a slow transfer never leaves a server waiting
    /// on a full window long enough to give up. `None`: no limit.
    fn range_cap(&self) -> Option<u64> {
        self.task
            .throttle
            .bytes_in(LIMITED_RANGE_TIME, LIMITED_RANGE_MIN)
    }

    /// Whether this answer, about to be written from `at`, starts a split over several
    /// connections: a whole file (no user ranges, not dynamic) of known size with enough bytes
    /// left, a server that serves ranges, and a validator that ties the pieces together.
    fn may_split(
        &self,
        status: StatusCode,
        headers: &HeaderMap,
        seen: &Validators,
        at: u64,
    ) -> bool {
        self.task.connections > 1
            && !self.no_split
            && !self.task.dynamic
            && self.task.ranges.is_none()
            && http::serves_ranges(status, headers)
            && http::piece_validator(seen).is_some()
            && seen
                .size
                .is_some_and(|size| segmented::worth_splitting(size.saturating_sub(at)))
    }

    /// The range to ask for, `within` bytes into a segment; `None` for the first GET of a whole
    /// file, which carries no Range (spec §7.11).
    fn asked(&self, segment: &Span, within: u64) -> Result<Option<http::Asked>, Failure> {
        let overflow = || {
            self.failure_because(
                ErrorContext::RemoteFile,
                ErrorCode::InvalidRange,
                ErrorClass::Fatal,
                format!(
                    "the range at {} does not fit in 64-bit offsets ({})",
                    segment.remote_start, self.task.url
                ),
            )
        };
        let start = segment
            .remote_start
            .checked_add(within)
            .ok_or_else(overflow)?;
        if self.task.ranges.is_none() && start == 0 {
            return Ok(None);
        }
        let last = match segment.length {
            Some(length) => {
                let last = segment
                    .remote_start
                    .checked_add(length)
                    .and_then(|end| end.checked_sub(1))
                    .ok_or_else(overflow)?;
                // Under a limit, a bounded range (see `range_cap`).
                let cap = self
                    .range_cap()
                    .filter(|_| !self.task.dynamic && !self.no_cut);
                Some(cap.map_or(last, |cap| last.min(start.saturating_add(cap - 1))))
            }
            None => None,
        };
        Ok(Some(http::Asked { start, last }))
    }

    /// A server answer refused by [`http`]'s checks, as the job's error.
    fn refused(&self, refusal: http::Refusal) -> Failure {
        // Fatal, as BITS (spec §3.2): a server that answers ranges wrongly will not improve by
        // itself; Resume tries again.
        self.failure_because(
            ErrorContext::RemoteFile,
            refusal.code,
            ErrorClass::Fatal,
            format!("{} ({})", refusal.reason, self.task.url),
        )
    }

    fn bytes_total(&self, seen: &Validators) -> Size {
        match &self.task.ranges {
            None => seen.size,
            Some(ranges) => ranges.iter().try_fold(0u64, |sum, range| {
                sum.checked_add(match range.length {
                    LENGTH_TO_EOF => seen.size?.saturating_sub(range.offset),
                    length => length,
                })
            }),
        }
    }

    /// Finishes a body's writer and keeps its digest for the next answer or the file's end.
    async fn finish_writer(&mut self, writer: Writer) -> std::io::Result<u64> {
        let (durable, digest) = writer.finish().await?;
        self.streamed = digest.filter(|d| d.at == durable);
        Ok(durable)
    }

    async fn stream_body(
        &mut self,
        mut response: reqwest::Response,
        write_at: u64,
        expected_body: Option<u64>,
        may_cut: bool,
        stop: &mut watch::Receiver<bool>,
    ) -> Fetch {
        // The digest goes on where it stopped; a file that starts again starts a new one.
        let digest = match self.streamed.take() {
            Some(digest) if digest.at == write_at => Some(digest),
            _ if write_at == 0 => self.digest_algorithm.map(super::digest::Streamed::new),
            _ => None,
        };
        let mut writer = match Writer::open(&self.task.temp_path, write_at, expected_body, digest) {
            Ok(writer) => writer,
            Err(e) => return Fetch::Failed(self.local_failure(&e)),
        };
        let mut received: u64 = 0;
        let mut ticker = tokio::time::interval_at(
            tokio::time::Instant::now() + REPORT_INTERVAL,
            REPORT_INTERVAL,
        );
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let throttle = self.task.throttle.clone();
        let mut silent_since = None;
        let failure = loop {
            let chunk = tokio::select! {
                // Paced first: a limited transfer leaves its socket unread until the limit
                // allows more, so the server slows down. (Both steps are cancel-safe.)
                chunk = async {
                    throttle.ready().await;
                    // The silence is counted from here, across the ticks that interrupt it.
                    let since = *silent_since.get_or_insert_with(tokio::time::Instant::now);
                    self.next_chunk(&mut response, since).await
                } => chunk,
                _ = ticker.tick() => {
                    // Also while the server is silent: the checkpoint keeps up with the disk.
                    self.report_progress(&writer, false);
                    continue;
                }
                _ = stop_requested(stop) => {
                    drop(response);
                    return match self.finish_writer(writer).await {
                        Ok(durable) => Fetch::Stopped(Stopped { transferred: durable, checkpointed: durable, segments: Vec::new() }),
                        Err(e) => Fetch::Failed(self.local_failure(&e)),
                    };
                }
            };
            silent_since = None;
            match chunk {
                Ok(Some(bytes)) => {
                    received += bytes.len() as u64;
                    throttle.spend(bytes.len());
                    if expected_body.is_some_and(|expected| received > expected) {
                        break Some(self.overlong_body());
                    }
                    if writer.write(bytes).await.is_err() {
                        break None; // the writer's own error comes out of finish()
                    }
                    self.report_progress(&writer, false);
                    // A limit came (or fell) while a long answer streams: cut it, and go on in
                    // bounded ranges (`range_cap`); the connection goes with the answer, so the
                    // server stops sending at once.
                    let cut = may_cut
                        && self.range_cap().is_some_and(|cap| {
                            expected_body.is_some_and(|e| e.saturating_sub(received) > 2 * cap)
                        });
                    if cut {
                        self.cut = true;
                        drop(response);
                        return match self.finish_writer(writer).await {
                            Ok(durable) => Fetch::Wrote(durable),
                            Err(e) => Fetch::Failed(self.local_failure(&e)),
                        };
                    }
                }
                Ok(None) => {
                    if expected_body.is_some_and(|expected| received < expected) {
                        break Some(self.short_body());
                    }
                    match self.finish_writer(writer).await {
                        Ok(durable) => return Fetch::Wrote(durable),
                        Err(e) => return Fetch::Failed(self.local_failure(&e)),
                    }
                }
                Err(failure) => break Some(failure),
            }
        };
        // Keep what arrived: it is flushed and reported, so a retry resumes after it.
        let written = self.finish_writer(writer).await;
        match (failure, written) {
            (_, Err(e)) => Fetch::Failed(self.local_failure(&e)),
            (Some(failure), Ok(durable)) => {
                self.reporter.send(Report::Progress {
                    transferred: durable,
                    checkpointed: durable,
                });
                Fetch::Failed(failure)
            }
            (None, Ok(_)) => {
                Fetch::Failed(self.local_failure(&std::io::Error::other("writer stopped")))
            }
        }
    }

    /// HTTP downloads get the server's modification time (spec §1).
    fn set_mtime(&self) {
        let Some(modified) = self
            .task
            .validators
            .as_ref()
            .and_then(|v| v.last_modified.as_deref())
        else {
            return;
        };
        if let Ok(time) = httpdate::parse_http_date(modified) {
            let time = filetime::FileTime::from_system_time(time);
            if let Err(e) = filetime::set_file_times(&self.task.temp_path, time, time) {
                tracing::warn!(file = %self.task.temp_path.display(), "cannot set the modification time: {e}");
            }
        }
    }
}

async fn stop_requested(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

enum Fetch {
    /// The segment is on disk up to this local offset.
    Wrote(u64),
    /// The answer starts a split of the file over several connections; its body goes from
    /// this offset.
    Split(FirstAnswer, u64),
    Restart,
    Stopped(Stopped),
    Failed(Failure),
}

fn digest_answer(response: &reqwest::Response, user: &str, password: &str) -> Option<HeaderValue> {
    let challenge = response
        .headers()
        .get_all(header::WWW_AUTHENTICATE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.trim_start().to_ascii_lowercase().starts_with("digest"))?;
    let mut prompt = digest_auth::parse(challenge).ok()?;
    let url = response.url();
    let uri = match url.query() {
        Some(query) => format!("{}?{query}", url.path()),
        None => url.path().to_string(),
    };
    let context = digest_auth::AuthContext::new(user, password, uri);
    let answer = prompt.respond(&context).ok()?;
    HeaderValue::try_from(answer.to_header_string()).ok()
}
