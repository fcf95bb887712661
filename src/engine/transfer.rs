//! The transfer worker: downloads one file of a job over HTTP(S) into its temp file, resuming from
//! the checkpoint with range requests, detecting remote changes (spec §7.11–7.12) and classifying
//! failures (spec §4.3). It reports to the engine and never touches the job itself.

use super::writer::Writer;
use crate::job::{
    AuthScheme, Credentials, ErrorClass, ErrorCode, ErrorContext, Failure, FileRange, JobError,
    JobId, LENGTH_TO_EOF, RedirectMode, RedirectPolicy, Size, Validators, classify_http_status,
};
use reqwest::StatusCode;
use reqwest::header::{self, HeaderMap, HeaderName, HeaderValue};
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};

/// How often a running transfer reports its progress.
const REPORT_INTERVAL: Duration = Duration::from_millis(100);

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
}

pub(crate) struct FileWork {
    pub index: usize,
    pub url: String,
    pub temp_path: PathBuf,
    pub ranges: Option<Vec<FileRange>>,
    /// Where to resume: the file's checkpoint.
    pub start_offset: u64,
    pub validators: Option<Validators>,
}

/// One file's transfer, with the job's settings.
struct FileTask {
    file: usize,
    url: String,
    temp_path: PathBuf,
    ranges: Option<Vec<FileRange>>,
    start_offset: u64,
    validators: Option<Validators>,
    dynamic: bool,
    headers: Vec<(String, String)>,
    credentials: Credentials,
    redirect: RedirectPolicy,
    client: reqwest::Client,
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
    /// ALLOW_REPORT redirect policy: the file's URL becomes the final one.
    Redirected {
        url: String,
    },
    /// The file is complete and flushed: `transferred` bytes.
    Done {
        transferred: u64,
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
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Stopped {
    pub transferred: u64,
    pub checkpointed: u64,
}

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
    /// Files this worker transferred completely, with their size.
    pub done: Vec<(usize, u64)>,
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
    Stopped(usize, Stopped),
}

/// Transfers the task's files one after another until all are done, one fails, or `stop` turns
/// true.
pub(crate) async fn run(
    task: JobTask,
    out: mpsc::UnboundedSender<WorkerMessage>,
    mut stop: watch::Receiver<bool>,
) -> Final {
    let mut done = Vec::with_capacity(task.files.len());
    for work in task.files {
        let file = work.index;
        let reporter = Reporter {
            task_job: task.job,
            run: task.run,
            file,
            out: out.clone(),
        };
        let file_task = FileTask {
            file,
            url: work.url,
            temp_path: work.temp_path,
            ranges: work.ranges,
            start_offset: work.start_offset,
            validators: work.validators,
            dynamic: task.dynamic,
            headers: task.headers.clone(),
            credentials: task.credentials.clone(),
            redirect: task.redirect,
            client: task.client.clone(),
        };
        let mut worker = Worker {
            task: file_task,
            reporter,
            last_report: Instant::now(),
            connected: false,
        };
        match worker.transfer(&mut stop).await {
            Outcome::Done(transferred) => {
                worker.reporter.send(Report::Done { transferred });
                done.push((file, transferred));
            }
            Outcome::Stopped(stopped) => {
                return Final {
                    done,
                    end: End::Stopped(file, stopped),
                    upload: None,
                };
            }
            Outcome::Failed(failure) => {
                worker.reporter.send(Report::Failed(failure.clone()));
                return Final {
                    done,
                    end: End::Failed(failure),
                    upload: None,
                };
            }
        }
    }
    Final {
        done,
        end: End::AllDone,
        upload: None,
    }
}

/// One GET: which remote bytes, and where they go in the local file.
struct Segment {
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
        'restart: loop {
            let segments = match self.segments() {
                Ok(segments) => segments,
                Err(failure) => return Outcome::Failed(failure),
            };
            for segment in segments {
                let length = segment.length;
                if let Some(length) = length
                    && segment.local_start + length <= local
                {
                    continue; // already on disk
                }
                let within = local.saturating_sub(segment.local_start);
                match self.fetch(&segment, within, stop).await {
                    Fetch::Wrote(end) if self.task.ranges.is_none() => {
                        local = end;
                        break 'restart;
                    }
                    Fetch::Wrote(end) => {
                        local = end;
                        if length.is_none() {
                            continue 'restart; // the size is known now: place the next ranges
                        }
                    }
                    Fetch::Restart => {
                        self.reporter.send(Report::Restarted);
                        local = 0;
                        continue 'restart;
                    }
                    Fetch::Stopped(stopped) => return Outcome::Stopped(stopped),
                    Fetch::Failed(failure) => return Outcome::Failed(failure),
                }
            }
            break;
        }
        self.set_mtime();
        Outcome::Done(local)
    }

    /// The GETs this file needs, with lengths resolved as far as the known size allows.
    fn segments(&self) -> Result<Vec<Segment>, Failure> {
        let size = self.task.validators.as_ref().and_then(|v| v.size);
        let Some(ranges) = &self.task.ranges else {
            return Ok(vec![Segment {
                remote_start: 0,
                length: size,
                local_start: 0,
            }]);
        };
        let mut local_start = 0;
        let mut segments = Vec::with_capacity(ranges.len());
        for range in ranges {
            let length = match (range.length, size) {
                (LENGTH_TO_EOF, Some(size)) => Some(size.saturating_sub(range.offset)),
                (LENGTH_TO_EOF, None) => None,
                (length, _) => Some(length),
            };
            if let (Some(size), Some(length)) = (size, length)
                && range.offset.saturating_add(length) > size
            {
                let failure = self.failure_because(
                    ErrorContext::RemoteFile,
                    ErrorCode::InvalidRange,
                    ErrorClass::Fatal,
                    format!(
                        "range {}:{} lies outside the remote file of {size} bytes ({})",
                        range.offset, length, self.task.url
                    ),
                );
                return Err(failure);
            }
            segments.push(Segment {
                remote_start: range.offset,
                length,
                local_start,
            });
            local_start += length.unwrap_or(0);
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
        let response = request(None)
            .await
            .map_err(|e| self.transport_failure(&e))?;
        if response.status() == StatusCode::UNAUTHORIZED
            && let Some((AuthScheme::Digest, user, password)) = &self.task.credentials.server
            && let Some(answer) = digest_answer(&response, user, password)
        {
            return request(Some(answer))
                .await
                .map_err(|e| self.transport_failure(&e));
        }
        Ok(response)
    }

    fn transport_failure(&self, error: &reqwest::Error) -> Failure {
        let (code, class, chain) = classify_transport(error);
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
        failure.retry_after = retry_after(response.headers());
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
        segment: &Segment,
        within: u64,
        stop: &mut watch::Receiver<bool>,
    ) -> Fetch {
        let local = segment.local_start + within;
        let remote_start = segment.remote_start + within;
        let whole_file = self.task.ranges.is_none();
        let range = if whole_file && remote_start == 0 {
            None // the first GET of a whole file carries no Range (spec §7.11)
        } else {
            Some(match segment.length {
                Some(length) => {
                    format!("bytes={remote_start}-{}", segment.remote_start + length - 1)
                }
                None => format!("bytes={remote_start}-"),
            })
        };
        // Ferry extension: a strong ETag guards the resume with If-Range.
        let if_range = range.as_ref().and_then(|_| {
            self.task
                .validators
                .as_ref()?
                .etag
                .clone()
                .filter(|tag| !tag.starts_with("W/"))
        });
        let response = tokio::select! {
            response = self.send(range.clone(), if_range.as_deref()) => response,
            _ = stop_requested(stop) => return Fetch::Stopped(Stopped { transferred: local, checkpointed: local }),
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
        let seen = response_validators(&response);
        let changed = self
            .task
            .validators
            .as_ref()
            .is_some_and(|old| validators_differ(old, &seen));
        let mut expected_body = response.content_length();
        let mut write_at = local;
        match status {
            StatusCode::PARTIAL_CONTENT if range.is_some() => {
                let Some((start, end, _)) = parse_content_range(response.headers()) else {
                    let failure = self.failure_because(
                        ErrorContext::RemoteFile,
                        ErrorCode::InvalidServerResponse,
                        ErrorClass::Fatal,
                        format!(
                            "a 206 response without a valid Content-Range ({})",
                            self.task.url
                        ),
                    );
                    return Fetch::Failed(failure);
                };
                if changed {
                    self.task.validators = Some(seen);
                    return Fetch::Restart; // T30: the remote file changed under us
                }
                if start != remote_start {
                    let failure = self.failure_because(ErrorContext::RemoteFile, ErrorCode::InvalidServerResponse, ErrorClass::Fatal, format!(
                        "asked for bytes from {remote_start} but the server sent bytes from {start} ({})",
                        self.task.url
                    ));
                    return Fetch::Failed(failure);
                }
                expected_body = Some(end + 1 - start);
            }
            StatusCode::OK => {
                if range.is_some() {
                    // Either the file changed (If-Range said so) or the server ignores ranges.
                    if whole_file && (changed || self.task.dynamic) {
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
                let total = unsatisfied_range_total(response.headers());
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
            StatusCode::RANGE_NOT_SATISFIABLE if range.is_some() => {
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
            _ => return Fetch::Failed(self.status_failure(&response)),
        }
        // The response is usable: bytes are about to move (CONNECTING → TRANSFERRING).
        if !self.connected {
            self.connected = true;
            self.reporter.send(Report::Connected);
        }
        self.task.validators = Some(seen.clone());
        let bytes_total = self.bytes_total(&seen);
        self.reporter.send(Report::FileInfo {
            bytes_total,
            validators: seen,
        });
        self.stream_body(response, write_at, expected_body, stop)
            .await
    }

    fn bytes_total(&self, seen: &Validators) -> Size {
        match &self.task.ranges {
            None => seen.size,
            Some(ranges) => ranges.iter().try_fold(0u64, |sum, range| {
                Some(
                    sum + match range.length {
                        LENGTH_TO_EOF => seen.size?.saturating_sub(range.offset),
                        length => length,
                    },
                )
            }),
        }
    }

    async fn stream_body(
        &mut self,
        mut response: reqwest::Response,
        write_at: u64,
        expected_body: Option<u64>,
        stop: &mut watch::Receiver<bool>,
    ) -> Fetch {
        let mut writer = match Writer::open(&self.task.temp_path, write_at, expected_body) {
            Ok(writer) => writer,
            Err(e) => return Fetch::Failed(self.local_failure(&e)),
        };
        let mut received: u64 = 0;
        let mut ticker = tokio::time::interval_at(
            tokio::time::Instant::now() + REPORT_INTERVAL,
            REPORT_INTERVAL,
        );
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let failure = loop {
            let chunk = tokio::select! {
                chunk = response.chunk() => chunk,
                _ = ticker.tick() => {
                    // Also while the server is silent: the checkpoint keeps up with the disk.
                    self.report_progress(&writer, false);
                    continue;
                }
                _ = stop_requested(stop) => {
                    drop(response);
                    return match writer.finish().await {
                        Ok(durable) => Fetch::Stopped(Stopped { transferred: durable, checkpointed: durable }),
                        Err(e) => Fetch::Failed(self.local_failure(&e)),
                    };
                }
            };
            match chunk {
                Ok(Some(bytes)) => {
                    received += bytes.len() as u64;
                    if expected_body.is_some_and(|expected| received > expected) {
                        let failure = self.failure_because(
                            ErrorContext::RemoteFile,
                            ErrorCode::InvalidServerResponse,
                            ErrorClass::Transient,
                            format!(
                                "the server sent more bytes than it announced ({})",
                                self.task.url
                            ),
                        );
                        break Some(failure);
                    }
                    if writer.write(bytes).await.is_err() {
                        break None; // the writer's own error comes out of finish()
                    }
                    self.report_progress(&writer, false);
                }
                Ok(None) => {
                    if expected_body.is_some_and(|expected| received < expected) {
                        break Some(self.failure(
                            ErrorContext::GeneralTransport,
                            ErrorCode::ConnectionError,
                            ErrorClass::Transient,
                        ));
                    }
                    match writer.finish().await {
                        Ok(durable) => return Fetch::Wrote(durable),
                        Err(e) => return Fetch::Failed(self.local_failure(&e)),
                    }
                }
                Err(e) => break Some(self.transport_failure(&e)),
            }
        };
        // Keep what arrived: it is flushed and reported, so a retry resumes after it.
        let written = writer.finish().await;
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
    Restart,
    Stopped(Stopped),
    Failed(Failure),
}

/// A failed request (no HTTP answer) as a BITS code and class, with the error's whole chain of
/// causes for the description. Downloads and uploads share it.
pub(crate) fn classify_transport(error: &reqwest::Error) -> (ErrorCode, ErrorClass, String) {
    let chain = error_chain(error);
    let (code, class) = if error.is_redirect() {
        (ErrorCode::RedirectFailed, ErrorClass::Fatal)
    } else if error.is_timeout() {
        (ErrorCode::Timeout, ErrorClass::Transient)
    } else if chain.contains("dns error") || chain.contains("failed to lookup") {
        (ErrorCode::NameNotResolved, ErrorClass::Transient)
    } else if chain.contains("certificate") || chain.contains("tls") || chain.contains("handshake")
    {
        (ErrorCode::SecureFailure, ErrorClass::Fatal)
    } else if error.is_connect() {
        (ErrorCode::CannotConnect, ErrorClass::Transient)
    } else if error.is_builder() && chain.contains("proxy") {
        (ErrorCode::InvalidProxyInfo, ErrorClass::Fatal)
    } else {
        (ErrorCode::ConnectionError, ErrorClass::Transient)
    };
    (code, class, chain)
}

fn error_chain(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text.to_lowercase()
}

fn header_text(headers: &HeaderMap, name: header::HeaderName) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

fn response_validators(response: &reqwest::Response) -> Validators {
    let headers = response.headers();
    let size = match response.status() {
        StatusCode::PARTIAL_CONTENT => parse_content_range(headers).and_then(|(_, _, total)| total),
        _ => response.content_length(),
    };
    Validators {
        size,
        last_modified: header_text(headers, header::LAST_MODIFIED),
        etag: header_text(headers, header::ETAG),
    }
}

/// Size and Last-Modified decide, as in BITS; the ETag too when both sides have one (extension).
fn validators_differ(old: &Validators, new: &Validators) -> bool {
    fn differs<T: PartialEq>(a: &Option<T>, b: &Option<T>) -> bool {
        a.is_some() && b.is_some() && a != b
    }
    differs(&old.size, &new.size)
        || (old.last_modified.is_some() && old.last_modified != new.last_modified)
        || differs(&old.etag, &new.etag)
}

/// `Content-Range: bytes START-END/TOTAL` (TOTAL may be `*`).
fn parse_content_range(headers: &HeaderMap) -> Option<(u64, u64, Option<u64>)> {
    let value = headers.get(header::CONTENT_RANGE)?.to_str().ok()?;
    let rest = value.trim().strip_prefix("bytes ")?;
    let (span, total) = rest.split_once('/')?;
    let (start, end) = span.split_once('-')?;
    let (start, end) = (start.trim().parse().ok()?, end.trim().parse().ok()?);
    if end < start {
        return None;
    }
    Some((start, end, total.trim().parse().ok()))
}

/// `Content-Range: bytes */TOTAL` of a 416 answer.
fn unsatisfied_range_total(headers: &HeaderMap) -> Option<u64> {
    let value = headers.get(header::CONTENT_RANGE)?.to_str().ok()?;
    value.trim().strip_prefix("bytes */")?.trim().parse().ok()
}

/// `Retry-After` as seconds or an HTTP date.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(header::RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(
        at.duration_since(std::time::SystemTime::now())
            .unwrap_or_default(),
    )
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_range_parsing() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_RANGE,
            HeaderValue::from_static("bytes 100-199/1000"),
        );
        assert_eq!(parse_content_range(&headers), Some((100, 199, Some(1000))));
        headers.insert(
            header::CONTENT_RANGE,
            HeaderValue::from_static("bytes 0-9/*"),
        );
        assert_eq!(parse_content_range(&headers), Some((0, 9, None)));
        headers.insert(
            header::CONTENT_RANGE,
            HeaderValue::from_static("bytes 9-0/10"),
        );
        assert_eq!(parse_content_range(&headers), None);
        headers.insert(
            header::CONTENT_RANGE,
            HeaderValue::from_static("bytes */1000"),
        );
        assert_eq!(unsatisfied_range_total(&headers), Some(1000));
    }

    #[test]
    fn retry_after_seconds_and_dates() {
        let mut headers = HeaderMap::new();
        headers.insert(header::RETRY_AFTER, HeaderValue::from_static("120"));
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(120)));
        let future = std::time::SystemTime::now() + Duration::from_secs(3600);
        let date = httpdate::fmt_http_date(future);
        headers.insert(
            header::RETRY_AFTER,
            HeaderValue::try_from(date).expect("header"),
        );
        let wait = retry_after(&headers).expect("date");
        assert!(wait > Duration::from_secs(3500) && wait <= Duration::from_secs(3600));
    }

    #[test]
    fn change_detection_rules() {
        let old = Validators {
            size: Some(10),
            last_modified: Some("Mon, 01 Jan 2024 00:00:00 GMT".into()),
            etag: Some("\"a\"".into()),
        };
        assert!(!validators_differ(&old, &old.clone()));
        assert!(validators_differ(
            &old,
            &Validators {
                size: Some(11),
                ..old.clone()
            }
        ));
        assert!(validators_differ(
            &old,
            &Validators {
                last_modified: None,
                ..old.clone()
            }
        ));
        assert!(validators_differ(
            &old,
            &Validators {
                etag: Some("\"b\"".into()),
                ..old.clone()
            }
        ));
        assert!(!validators_differ(
            &old,
            &Validators {
                etag: None,
                ..old.clone()
            }
        ));
    }
}
