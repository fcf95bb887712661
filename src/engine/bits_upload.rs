//! The BITS upload protocol, client side (spec §8.4): Create-Session, Fragments in order with
//! `Content-Range`, progress from the server's `BITS-Received-Content-Range` (200 and 416 alike),
//! fragment size adapting between 5 KB and a cap (grow on success, halve on 413), a new session
//! when the server lost the old one, and Close-/Cancel-Session re-sent on 5xx for a bounded
//! time. The engine's upload worker drives it; it never touches the job.

use super::bandwidth::Throttle;
use crate::job::{
    AuthScheme, Credentials, ErrorClass, ErrorCode, ErrorContext, Failure, JobError, UploadHost,
    Validators, classify_http_status, later, pinned_url,
};
use reqwest::header::HeaderMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// The one upload protocol (MC-BUP).
pub const PROTOCOL: &str = "{7df0354d-249b-430f-820d-3d2a9bef4931}";
/// The smallest fragment (Windows' floor).
pub const MIN_FRAGMENT: u64 = 5 * 1024;
/// The largest fragment: 28 MiB, just under IIS's default request limit (30,000,000 bytes, spec
/// §0), so a default IIS never refuses one. Windows ≥ 2.5 stops at 13 MB; past it, each
/// fragment's round trip and the server's fsync cost Ferry 9% of a loopback upload (512 MiB:
/// 13 MiB fragments 0.548 s, 64 MiB 0.475 s). A smaller server limit is learnt from its 413.
pub const MAX_FRAGMENT: u64 = 28 * 1024 * 1024;
/// The first fragment: small enough to learn a server's limit cheaply (§12 D20).
pub const FIRST_FRAGMENT: u64 = 256 * 1024;
/// Under a speed limit, a fragment takes at most this long to send (its answer may take the
/// read timeout on top).
pub const FRAGMENT_TIME_AT_LIMIT: Duration = Duration::from_secs(8);
/// New sessions in a row without progress before the upload gives up for now.
const RESTARTS: u32 = 3;
/// Answers in a row that acknowledge no new byte before the upload gives up for now (a transient
/// error, retried after the job's delay): a server whose offset stops moving must not be sent
/// the same fragment at once, forever.
const STALLED_ANSWERS: u32 = 3;
/// How long Close-/Cancel-Session is re-sent on 5xx (spec §8.4).
const ENDING_PATIENCE: Duration = Duration::from_secs(60);

/// What one upload needs.
pub struct Upload {
    pub client: reqwest::Client,
    pub url: String,
    pub local: PathBuf,
    /// Extra request headers (the job's custom headers).
    pub headers: Vec<(String, String)>,
    /// The job's server credentials: Basic is sent with every packet (Digest is for downloads
    /// only).
    pub credentials: Credentials,
    /// Time for the BITS-Host-Id fallback timer (the engine's clock, so tests can cross it).
    pub clock: Arc<dyn super::Clock>,
    /// The speed limits the fragments' bodies pace on.
    pub throttle: Throttle,
}

/// What survives between runs of an upload (the engine keeps it with the job).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    pub session: Option<String>,
    /// Bytes the server acknowledged.
    pub acknowledged: u64,
    /// The fragment size to send next.
    pub fragment: u64,
    /// The most a fragment may grow to: set by a 413 (half the size refused), so that growth
    /// does not run into the server's limit again and again.
    pub ceiling: Option<u64>,
    /// The local file's size and modification time when the upload began: if they change, the
    /// upload fails with BG_E_LOCAL_FILE_CHANGED instead of sending a mix of two versions.
    pub source: Option<Validators>,
    /// The server the session is pinned to (BITS-Host-Id).
    pub host: Option<UploadHost>,
}

/// What identifies a version of the local file: its size and modification time (nanoseconds).
pub fn local_stamp(meta: &std::fs::Metadata) -> Validators {
    use std::os::unix::fs::MetadataExt;
    let nanos = i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec());
    Validators {
        size: Some(meta.len()),
        last_modified: Some(nanos.to_string()),
        etag: None,
    }
}

#[derive(Debug)]
pub enum Outcome {
    /// The last fragment was acknowledged; the reply URL for upload-reply (resolved against the
    /// upload URL), `None` when the server sent none or an empty one.
    Done {
        reply_url: Option<String>,
    },
    Stopped,
    Failed(Failure),
}

fn failure(context: ErrorContext, code: ErrorCode, class: ErrorClass, why: String) -> Failure {
    Failure {
        error: JobError::new(context, code, Some(0)).with_description(why),
        class,
        retry_after: None,
    }
}

/// The server's error headers (`BITS-Error-Code`, or MC-BUP's `BITS-Error`; hex with or
/// without `0x`) and context.
pub fn server_error(headers: &HeaderMap) -> (Option<u32>, Option<u32>) {
    let hex = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.trim().trim_start_matches("0x").trim_start_matches("0X"))
            .map(|v| v.trim_start_matches(['x', 'X']))
            .and_then(|v| u32::from_str_radix(v, 16).ok())
    };
    (
        hex("BITS-Error-Code").or_else(|| hex("BITS-Error")),
        hex("BITS-Error-Context"),
    )
}

/// A refused packet as a job error: the context the server gave (REMOTE_APPLICATION for 0x7),
/// the HTTP status's class (§4.3), the server's code in the description.
fn refused(packet: &str, url: &str, status: u16, headers: &HeaderMap) -> Failure {
    let (code, context) = server_error(headers);
    let context = match context {
        Some(7) => ErrorContext::RemoteApplication,
        _ => ErrorContext::RemoteFile,
    };
    let (code_enum, class) = match code {
        Some(c) if c == ErrorCode::SessionNotFound.hresult() => {
            (ErrorCode::SessionNotFound, ErrorClass::Transient)
        }
        Some(c) if c == ErrorCode::TooLarge.hresult() => (ErrorCode::TooLarge, ErrorClass::Fatal),
        _ => (ErrorCode::Http(status), classify_http_status(status)),
    };
    let server_code = code
        .map(|c| format!(", server error 0x{c:08X}"))
        .unwrap_or_default();
    failure(
        context,
        code_enum,
        class,
        format!(
            "{} ({packet} to {url} answered HTTP {status}{server_code})",
            code_enum.advice()
        ),
    )
}

fn transport(url: &str, error: &reqwest::Error) -> Failure {
    let (code, class, chain) = super::http::classify_transport(error);
    failure(
        ErrorContext::GeneralTransport,
        code,
        class,
        format!("{} ({url}: {chain})", code.advice()),
    )
}

/// How much of the file one chunk of a fragment's body holds as it streams.
const BODY_CHUNK: u64 = 1 << 20;

/// A packet's body: none, or `length` bytes of the file from `offset`, streamed (so that reading
/// the file and sending overlap, and memory stays at a chunk or two whatever the fragment size).
enum PacketBody {
    Empty,
    File {
        file: std::sync::Arc<std::fs::File>,
        offset: u64,
        length: u64,
    },
}

/// The chunks of a file body: each read straight into the buffer that is sent (positioned
/// reads in the blocking pool; no second copy as through `tokio::fs::File`). The next chunk is
/// read while the current one is sent, so the connection never waits for the disk between two
/// chunks (two chunks in memory at most).
fn file_chunks(
    file: std::sync::Arc<std::fs::File>,
    offset: u64,
    length: u64,
) -> impl futures_util::Stream<Item = std::io::Result<bytes::Bytes>> {
    type Reading = tokio::task::JoinHandle<std::io::Result<Vec<u8>>>;
    let read_at = move |at: u64, left: u64| -> Option<(Reading, u64)> {
        let n = left.min(BODY_CHUNK);
        let file = file.clone();
        (n > 0).then(|| {
            let reading = tokio::task::spawn_blocking(move || read_chunk(&file, at, n as usize));
            (reading, n)
        })
    };
    let first = read_at(offset, length);
    futures_util::stream::try_unfold((first, offset, length), move |(reading, at, left)| {
        let read_at = read_at.clone();
        async move {
            let Some((reading, n)) = reading else {
                return Ok(None);
            };
            let chunk = reading.await.map_err(std::io::Error::other)??;
            let (at, left) = (at + n, left - n);
            let next = read_at(at, left);
            Ok(Some((bytes::Bytes::from(chunk), (next, at, left))))
        }
    })
}

/// The slices a body is sent in while a speed limit applies: a limit changed mid-fragment takes
/// effect within one (unlimited, chunks go whole, as the benchmarks measured them).
const PACED_SLICE: usize = 64 * 1024;

/// A body's chunks, each sent only when the speed limits allow: the stream is not polled for
/// more, so hyper sends nothing more, until then.
fn paced(
    chunks: impl futures_util::Stream<Item = std::io::Result<bytes::Bytes>>,
    throttle: Throttle,
) -> impl futures_util::Stream<Item = std::io::Result<bytes::Bytes>> {
    use futures_util::TryStreamExt;
    let slicer = throttle.clone();
    chunks
        .map_ok(move |chunk| {
            let step = if slicer.is_limited() {
                PACED_SLICE
            } else {
                chunk.len().max(1)
            };
            let slices: Vec<std::io::Result<bytes::Bytes>> = (0..chunk.len())
                .step_by(step)
                .map(|at| Ok(chunk.slice(at..(at + step).min(chunk.len()))))
                .collect();
            futures_util::stream::iter(slices)
        })
        .try_flatten()
        .and_then(move |slice| {
            let throttle = throttle.clone();
            async move {
                throttle.ready().await;
                throttle.spend(slice.len());
                Ok(slice)
            }
        })
}

/// `n` bytes of `file` from `at`, read into a buffer that is not zeroed first (zeroing every
/// byte sent was 4% of an upload's CPU).
fn read_chunk(file: &std::fs::File, at: u64, n: usize) -> std::io::Result<Vec<u8>> {
    use std::os::fd::AsRawFd;
    let mut buffer: Vec<u8> = Vec::with_capacity(n);
    while buffer.len() < n {
        let filled = buffer.len();
        let Ok(position) = libc::off_t::try_from(at + filled as u64) else {
            return Err(std::io::Error::from(std::io::ErrorKind::InvalidInput));
        };
        let spare = &mut buffer.spare_capacity_mut()[..n - filled];
        // SAFETY: pread writes at most `spare.len()` bytes into `spare`, memory this Vec owns
        // and nothing reads before the length is raised below.
        let read = unsafe {
            libc::pread(
                file.as_raw_fd(),
                spare.as_mut_ptr().cast(),
                spare.len(),
                position,
            )
        };
        match usize::try_from(read) {
            Ok(0) => return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof)),
            // SAFETY: pread wrote the first `read` bytes of the spare capacity.
            Ok(read) => unsafe { buffer.set_len(filled + read) },
            Err(_) => {
                let error = std::io::Error::last_os_error();
                if error.kind() != std::io::ErrorKind::Interrupted {
                    return Err(error);
                }
            }
        }
    }
    Ok(buffer)
}

impl Upload {
    async fn post(
        &self,
        url: &str,
        packet: &str,
        session: Option<&str>,
        extra: &[(&str, String)],
        body: PacketBody,
    ) -> Result<reqwest::Response, reqwest::Error> {
        let method = reqwest::Method::from_bytes(b"BITS_POST").unwrap_or(reqwest::Method::POST);
        let (length, body) = match body {
            PacketBody::Empty => (0, reqwest::Body::from(Vec::new())),
            PacketBody::File {
                file,
                offset,
                length,
            } => (
                length,
                reqwest::Body::wrap_stream(paced(
                    file_chunks(file, offset, length),
                    self.throttle.clone(),
                )),
            ),
        };
        // Content-Length always (the protocol requires it); a streamed body is not chunked.
        let mut request = self
            .client
            .request(method, url)
            .header("BITS-Packet-Type", packet)
            .header(reqwest::header::CONTENT_LENGTH, length.to_string());
        if let Some(session) = session {
            request = request.header("BITS-Session-Id", session);
        }
        if let Some((AuthScheme::Basic, user, password)) = &self.credentials.server {
            request = request.basic_auth(user, Some(password));
        }
        for (name, value) in &self.headers {
            request = request.header(name.as_str(), value.as_str());
        }
        for (name, value) in extra {
            request = request.header(*name, value.as_str());
        }
        request.body(body).send().await
    }

    /// The largest fragment the speed limit sends in [`FRAGMENT_TIME_AT_LIMIT`]: a fragment
    /// sent at a low limit must not outlast the wait for its answer.
    fn fragment_at_limit(&self) -> u64 {
        self.throttle
            .bytes_in(FRAGMENT_TIME_AT_LIMIT, MIN_FRAGMENT)
            .unwrap_or(u64::MAX)
    }

    /// Where packets of the session go: the upload URL, or its pinned host.
    fn packet_url(&self, progress: &Progress) -> String {
        match &progress.host {
            Some(host) => pinned_url(&self.url, &host.host),
            None => self.url.clone(),
        }
    }

    /// The pinned host did not answer (spec §8.4): starts or checks the fallback timer. Returns
    /// the failure to report, or `None` when the timer ran out and the pin was dropped: packets
    /// go to the URL's own host again.
    fn host_unreachable(&self, progress: &mut Progress, error: &reqwest::Error) -> Option<Failure> {
        let failure = transport(&self.packet_url(progress), error);
        let Some(host) = &mut progress.host else {
            return Some(failure);
        };
        if !(error.is_connect() || error.is_timeout()) {
            return Some(failure);
        }
        let now = self.clock.now();
        let since = *host.unreachable_since.get_or_insert(now);
        let expired = host
            .fallback_secs
            .is_some_and(|secs| now >= later(since, Duration::from_secs(secs)));
        if !expired {
            return Some(failure);
        }
        tracing::info!(
            "upload host {} unreachable past its fallback timeout; back to {}",
            host.host,
            self.url
        );
        progress.host = None;
        None
    }

    fn name(&self) -> String {
        self.local
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    /// Sends the file from where `progress` says, reporting each acknowledged offset, until the
    /// server holds all of it, `stop` turns true, or a packet fails.
    pub async fn send(
        &self,
        progress: &mut Progress,
        reply: bool,
        mut acknowledged: impl FnMut(&Progress),
        stop: &mut watch::Receiver<bool>,
    ) -> Outcome {
        let local_failure = |e: std::io::Error| {
            let (code, class) = super::files::classify_io(&e);
            Outcome::Failed(failure(
                ErrorContext::LocalFile,
                code,
                class,
                format!("{} ({}: {e})", code.advice(), self.local.display()),
            ))
        };
        let changed = |now: &Validators| {
            Outcome::Failed(failure(
                ErrorContext::LocalFile,
                ErrorCode::LocalFileChanged,
                ErrorClass::Fatal,
                format!(
                    "{} changed while it was being uploaded (now {} bytes): cancel this job and \
                     upload the file again with a new one",
                    self.local.display(),
                    now.size.unwrap_or_default()
                ),
            ))
        };
        let file = match tokio::fs::File::open(&self.local).await {
            Ok(file) => std::sync::Arc::new(file.into_std().await),
            Err(e) => return local_failure(e),
        };
        let stamp = match file.metadata() {
            Ok(meta) => local_stamp(&meta),
            Err(e) => return local_failure(e),
        };
        match &progress.source {
            Some(source) if *source != stamp => return changed(&stamp),
            Some(_) => {}
            None => progress.source = Some(stamp.clone()),
        }
        let size = stamp.size.unwrap_or_default();
        if size == 0 {
            return Outcome::Failed(failure(
                ErrorContext::LocalFile,
                ErrorCode::InvalidArg,
                ErrorClass::Fatal,
                format!(
                    "{} is empty; the BITS upload protocol cannot send an empty file",
                    self.local.display()
                ),
            ));
        }
        if progress.fragment < MIN_FRAGMENT {
            progress.fragment = FIRST_FRAGMENT;
        }
        let mut restarts = 0;
        let mut stalled = 0;
        loop {
            if *stop.borrow() {
                return Outcome::Stopped;
            }
            let Some(session) = progress.session.clone() else {
                match self.create_session().await {
                    Ok((session, host)) => {
                        progress.session = Some(session);
                        progress.acknowledged = 0;
                        progress.host = host;
                        if progress.host.is_some() {
                            // A pinned host is tried with a Ping first (spec §8.4).
                            let url = self.packet_url(progress);
                            let ping = self.post(&url, "Ping", None, &[], PacketBody::Empty);
                            if let Err(e) = ping.await
                                && let Some(failure) = self.host_unreachable(progress, &e)
                            {
                                acknowledged(progress);
                                return Outcome::Failed(failure);
                            }
                        }
                        acknowledged(progress);
                        continue;
                    }
                    Err(failure) => return Outcome::Failed(failure),
                }
            };
            // All acknowledged but the answer lost (a stop or a crash just then): the last byte
            // again gets the final answer, with its reply URL.
            let first = progress.acknowledged.min(size - 1);
            let length = progress
                .fragment
                .min(self.fragment_at_limit())
                .min(size - first);
            // The file as it is now: a change since the last fragment fails the upload before
            // anything of the new version is sent. (A write while this fragment streams is
            // caught before the next one, or before the last is reported done.)
            match tokio::fs::metadata(&self.local).await {
                Ok(meta) if local_stamp(&meta) != stamp => return changed(&local_stamp(&meta)),
                Ok(_) => {}
                Err(e) => return local_failure(e),
            }
            let body = PacketBody::File {
                file: file.clone(),
                offset: first,
                length,
            };
            let last = first + length - 1;
            let range = format!("bytes {first}-{last}/{size}");
            let fragment_headers = [("Content-Range", range), ("Content-Name", self.name())];
            let url = self.packet_url(progress);
            let sent = tokio::select! {
                sent = self.post(&url, "Fragment", Some(&session), &fragment_headers, body) => sent,
                _ = stop.changed() => return Outcome::Stopped,
            };
            let answer = match sent {
                Ok(answer) => answer,
                Err(e) => match self.host_unreachable(progress, &e) {
                    Some(failure) => return Outcome::Failed(failure),
                    None => continue, // the URL's own host, from here on
                },
            };
            if let Some(host) = &mut progress.host {
                host.unreachable_since = None; // it answered
            }
            let status = answer.status().as_u16();
            match status {
                200 | 201 | 416 => {
                    let Some(offset) = answer
                        .headers()
                        .get("BITS-Received-Content-Range")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .filter(|offset| *offset <= size)
                    else {
                        return Outcome::Failed(failure(
                            ErrorContext::RemoteFile,
                            ErrorCode::InvalidServerResponse,
                            ErrorClass::Transient,
                            format!(
                                "the server's answer to a fragment had no usable \
                                 BITS-Received-Content-Range ({})",
                                self.url
                            ),
                        ));
                    };
                    if status != 416 && offset > progress.acknowledged {
                        let cap = progress.ceiling.unwrap_or(MAX_FRAGMENT);
                        progress.fragment = (progress.fragment * 2).min(cap).max(MIN_FRAGMENT);
                        restarts = 0;
                    }
                    if offset == progress.acknowledged && offset < size {
                        stalled += 1;
                        if stalled >= STALLED_ANSWERS {
                            return Outcome::Failed(failure(
                                ErrorContext::RemoteFile,
                                ErrorCode::InvalidServerResponse,
                                ErrorClass::Transient,
                                format!(
                                    "the server acknowledged no new byte in {stalled} answers \
                                     in a row (it stays at {offset} of {size}); trying again \
                                     later ({})",
                                    self.url
                                ),
                            ));
                        }
                    } else {
                        stalled = 0;
                    }
                    // The last check: a changed file fails the upload; one that is gone now
                    // does not (the server holds every byte of the version that was read).
                    if offset == size
                        && let Ok(meta) = tokio::fs::metadata(&self.local).await
                        && local_stamp(&meta) != stamp
                    {
                        return changed(&local_stamp(&meta));
                    }
                    progress.acknowledged = offset;
                    acknowledged(progress);
                    if offset == size && status != 416 {
                        let reply_url = if reply {
                            match answer.headers().get("BITS-Reply-URL") {
                                None => {
                                    return Outcome::Failed(failure(
                                        ErrorContext::RemoteFile,
                                        ErrorCode::InvalidServerResponse,
                                        ErrorClass::Fatal,
                                        format!(
                                            "the server sent no BITS-Reply-URL for this \
                                             upload-reply job ({})",
                                            self.url
                                        ),
                                    ));
                                }
                                Some(value) => value
                                    .to_str()
                                    .ok()
                                    .map(str::trim)
                                    .filter(|v| !v.is_empty())
                                    .and_then(|v| resolve_reply_url(&self.url, v)),
                            }
                        } else {
                            None
                        };
                        return Outcome::Done { reply_url };
                    }
                }
                413 if progress.fragment > MIN_FRAGMENT => {
                    progress.fragment = (progress.fragment / 2).max(MIN_FRAGMENT);
                    progress.ceiling = Some(progress.fragment);
                }
                _ => {
                    let refusal = refused("Fragment", &self.url, status, answer.headers());
                    if refusal.error.code == ErrorCode::SessionNotFound && restarts < RESTARTS {
                        // Start over with a new session (§8.4).
                        restarts += 1;
                        progress.session = None;
                        continue;
                    }
                    return Outcome::Failed(refusal);
                }
            }
        }
    }

    async fn create_session(&self) -> Result<(String, Option<UploadHost>), Failure> {
        let answer = self
            .post(
                &self.url,
                "Create-Session",
                None,
                &[
                    ("BITS-Supported-Protocols", PROTOCOL.to_string()),
                    ("Content-Name", self.name()),
                ],
                PacketBody::Empty,
            )
            .await
            .map_err(|e| transport(&self.url, &e))?;
        let status = answer.status().as_u16();
        if !matches!(status, 200 | 201) {
            return Err(refused(
                "Create-Session",
                &self.url,
                status,
                answer.headers(),
            ));
        }
        let text = |name: &str| {
            answer
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(|v| v.trim().to_string())
        };
        let protocol_ok = text("BITS-Protocol").is_some_and(|p| p.eq_ignore_ascii_case(PROTOCOL));
        let host = text("BITS-Host-Id")
            .filter(|h| !h.is_empty())
            .map(|host| UploadHost {
                host,
                // Absent: the original host is never tried again (spec §8.4).
                fallback_secs: text("BITS-Host-Id-Fallback-Timeout").and_then(|t| t.parse().ok()),
                unreachable_since: None,
            });
        match text("BITS-Session-Id").filter(|id| !id.is_empty() && protocol_ok) {
            Some(id) => Ok((id, host)),
            None => Err(failure(
                ErrorContext::RemoteFile,
                ErrorCode::InsufficientHttpSupport,
                ErrorClass::Fatal,
                format!(
                    "{} does not speak the BITS upload protocol (no session or protocol in its \
                     answer to Create-Session)",
                    self.url
                ),
            )),
        }
    }

    /// Close-Session (the upload is done) or Cancel-Session: re-sent on 5xx (except
    /// SESSION_NOT_FOUND, which means there is nothing left to end) for up to a minute.
    pub async fn end_session(&self, session: &str, cancel: bool) -> Result<(), Failure> {
        let url = self.url.clone(); // the engine gives the pinned URL, if there is one
        let packet = if cancel {
            "Cancel-Session"
        } else {
            "Close-Session"
        };
        let deadline = tokio::time::Instant::now() + ENDING_PATIENCE;
        let mut delay = Duration::from_millis(250);
        loop {
            let failure = match self
                .post(&url, packet, Some(session), &[], PacketBody::Empty)
                .await
            {
                Ok(answer) if answer.status().is_success() => return Ok(()),
                Ok(answer) => {
                    let status = answer.status().as_u16();
                    let refusal = refused(packet, &self.url, status, answer.headers());
                    if refusal.error.code == ErrorCode::SessionNotFound {
                        return Ok(());
                    }
                    if !(500..600).contains(&status) {
                        return Err(refusal);
                    }
                    refusal
                }
                Err(e) => transport(&self.url, &e),
            };
            if tokio::time::Instant::now() + delay > deadline {
                return Err(failure);
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(10));
        }
    }
}

/// The reply URL of §8.3: absolute as it is; otherwise relative to the upload URL, with
/// backslashes as `/` and braces percent-encoded (IIS sends `BITS-Sessions\Replies\{GUID}\…`).
pub fn resolve_reply_url(upload_url: &str, reply: &str) -> Option<String> {
    let cleaned = reply
        .replace('\\', "/")
        .replace('{', "%7B")
        .replace('}', "%7D");
    let base = url::Url::parse(upload_url).ok()?;
    base.join(&cleaned).ok().map(String::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_headers_are_read_under_both_names() {
        let mut headers = HeaderMap::new();
        headers.insert("BITS-Error-Code", "0x8020001F".parse().expect("value"));
        headers.insert("BITS-Error-Context", "0x7".parse().expect("value"));
        assert_eq!(server_error(&headers), (Some(0x8020_001F), Some(7)));
        let mut headers = HeaderMap::new();
        headers.insert("bits-error", "80070057".parse().expect("value"));
        headers.insert("BITS-Error-Context", "x5".parse().expect("value"));
        assert_eq!(server_error(&headers), (Some(0x8007_0057), Some(5)));
    }

    #[test]
    fn reply_urls_resolve_like_windows() {
        assert_eq!(
            resolve_reply_url(
                "http://h/upload/a.txt",
                "BITS-Sessions\\Replies\\{AB-CD}\\responsefile.bin"
            )
            .as_deref(),
            Some("http://h/upload/BITS-Sessions/Replies/%7BAB-CD%7D/responsefile.bin")
        );
        assert_eq!(
            resolve_reply_url("http://h/upload/a.txt", "http://other/r.bin").as_deref(),
            Some("http://other/r.bin")
        );
    }

    #[test]
    fn refusals_take_the_server_context_and_class() {
        let mut headers = HeaderMap::new();
        headers.insert("BITS-Error-Code", "0x80070005".parse().expect("value"));
        headers.insert("BITS-Error-Context", "0x7".parse().expect("value"));
        let failure = refused("Fragment", "http://h/x", 403, &headers);
        assert_eq!(failure.error.context, ErrorContext::RemoteApplication);
        assert_eq!(failure.class, ErrorClass::Fatal);
        let failure = refused("Fragment", "http://h/x", 500, &HeaderMap::new());
        assert_eq!(failure.class, ErrorClass::Transient);
        let mut headers = HeaderMap::new();
        headers.insert("BITS-Error-Code", "0x8020001F".parse().expect("value"));
        let failure = refused("Fragment", "http://h/x", 500, &headers);
        assert_eq!(failure.error.code, ErrorCode::SessionNotFound);
    }

    #[test]
    fn a_chunk_is_the_bytes_at_its_offset_and_a_short_file_is_an_error() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("source");
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &data).expect("write");
        let file = std::fs::File::open(&path).expect("open");
        assert_eq!(
            read_chunk(&file, 1000, 200_000).expect("chunk"),
            &data[1000..201_000]
        );
        assert_eq!(
            read_chunk(&file, 299_999, 1).expect("last byte"),
            &data[299_999..]
        );
        let short = read_chunk(&file, 250_000, 100_000).expect_err("past the end");
        assert_eq!(short.kind(), std::io::ErrorKind::UnexpectedEof);
    }
}
