//! The fault-injection matrix: one table of server misbehaviours, each run as a real download
//! through the engine against a raw-socket server on 127.0.0.1 that writes exactly the bytes the
//! row says. Every row must end byte-exact, or in ERROR / TRANSIENT_ERROR with the code that names
//! the cause — never TRANSFERRED with wrong bytes.

use super::{Harness, content, test_config};
use ferry::engine::Clock;
use ferry::job::{ErrorCode, FileRange, Job, JobId, JobState, JobType, NewFile, Priority};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// One request as the raw server read it.
#[derive(Clone, Debug)]
pub struct Request {
    /// 0 for the first request this server received, and so on.
    pub n: usize,
    pub path: String,
    pub range: Option<String>,
}

impl Request {
    /// `bytes=S-` or `bytes=S-E` as (S, E).
    fn span(&self) -> Option<(u64, Option<u64>)> {
        let spec = self.range.as_deref()?.strip_prefix("bytes=")?;
        let (start, end) = spec.split_once('-')?;
        let end = if end.is_empty() {
            None
        } else {
            Some(end.parse().ok()?)
        };
        Some((start.parse().ok()?, end))
    }
}

/// What the server does, in order; the connection is closed after the last.
pub enum Act {
    Send(Vec<u8>),
    /// Sends the bytes a few at a time with a pause between: a slow server.
    Trickle(Vec<u8>, usize, Duration),
    /// Waits until the test says go on.
    Wait(Arc<tokio::sync::Notify>),
    /// Closes with a TCP reset instead of a FIN.
    Reset,
}

type Script = Arc<dyn Fn(&Request) -> Vec<Act> + Send + Sync>;

/// A server that answers each request with the acts its script gives.
pub struct RawServer {
    pub addr: SocketAddr,
    log: Arc<Mutex<Vec<Request>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for RawServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl RawServer {
    pub async fn start(script: Script) -> RawServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let log = Arc::new(Mutex::new(Vec::new()));
        let counter = Arc::new(AtomicUsize::new(0));
        let task = {
            let log = log.clone();
            tokio::spawn(async move {
                while let Ok((stream, _)) = listener.accept().await {
                    let (script, log, counter) = (script.clone(), log.clone(), counter.clone());
                    tokio::spawn(async move {
                        let _ = serve(stream, &script, &log, &counter).await;
                    });
                }
            })
        };
        RawServer { addr, log, task }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn requests(&self) -> Vec<Request> {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

async fn serve(
    mut stream: TcpStream,
    script: &Script,
    log: &Mutex<Vec<Request>>,
    counter: &AtomicUsize,
) -> std::io::Result<()> {
    let mut head = Vec::new();
    let mut buffer = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let read = stream.read(&mut buffer).await?;
        if read == 0 || head.len() > 65_536 {
            return Ok(());
        }
        head.extend_from_slice(&buffer[..read]);
    }
    let text = String::from_utf8_lossy(&head).into_owned();
    let mut lines = text.split("\r\n");
    let path = lines
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .unwrap_or("/")
        .to_string();
    let range = lines
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.eq_ignore_ascii_case("range"))
        .map(|(_, value)| value.trim().to_string());
    let request = Request {
        n: counter.fetch_add(1, Ordering::SeqCst),
        path,
        range,
    };
    log.lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(request.clone());
    for act in script(&request) {
        match act {
            Act::Send(bytes) => stream.write_all(&bytes).await?,
            Act::Trickle(bytes, step, pause) => {
                for chunk in bytes.chunks(step) {
                    stream.write_all(chunk).await?;
                    stream.flush().await?;
                    tokio::time::sleep(pause).await; // the misbehaviour itself: a slow server
                }
            }
            Act::Wait(go) => {
                stream.flush().await?;
                go.notified().await;
            }
            Act::Reset => {
                reset(&stream);
                return Ok(());
            }
        }
    }
    stream.shutdown().await
}

/// SO_LINGER 0, so that closing sends a RST.
fn reset(stream: &TcpStream) {
    use std::os::fd::AsRawFd;
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid socket descriptor and a correctly sized linger struct.
    unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
}

const LM1: &str = "Wed, 21 Oct 2015 07:28:00 GMT";
const LM2: &str = "Thu, 22 Oct 2015 07:28:00 GMT";

/// A response head with `Connection: close` and these headers.
fn head(status: &str, headers: &[(&str, String)]) -> Vec<u8> {
    let mut text = format!("HTTP/1.1 {status}\r\nConnection: close\r\n");
    for (name, value) in headers {
        text.push_str(&format!("{name}: {value}\r\n"));
    }
    text.push_str("\r\n");
    text.into_bytes()
}

fn with_body(mut head: Vec<u8>, body: &[u8]) -> Vec<u8> {
    head.extend_from_slice(body);
    head
}

/// 200 with the whole file.
fn full(data: &[u8], lm: &str) -> Vec<u8> {
    let headers = [
        ("Content-Length", data.len().to_string()),
        ("Last-Modified", lm.to_string()),
        ("Accept-Ranges", "bytes".to_string()),
    ];
    with_body(head("200 OK", &headers), data)
}

/// 206 with bytes `first..=last` of `data`, as `Content-Range: bytes first-last/total`.
fn part(data: &[u8], first: usize, last: usize, total: &str, lm: &str) -> Vec<u8> {
    let body = &data[first..=last];
    let headers = [
        ("Content-Length", body.len().to_string()),
        ("Content-Range", format!("bytes {first}-{last}/{total}")),
        ("Last-Modified", lm.to_string()),
    ];
    with_body(head("206 Partial Content", &headers), body)
}

/// What a correct server answers.
fn honest(request: &Request, data: &[u8], lm: &str) -> Vec<u8> {
    let len = data.len() as u64;
    match request.span() {
        None => full(data, lm),
        Some((start, _)) if start >= len => head(
            "416 Range Not Satisfiable",
            &[
                ("Content-Range", format!("bytes */{len}")),
                ("Content-Length", "0".into()),
            ],
        ),
        Some((start, end)) => {
            let last = end.unwrap_or(len - 1).min(len - 1);
            part(data, start as usize, last as usize, &len.to_string(), lm)
        }
    }
}

/// The first `cut` bytes of an answer, then the connection closes.
fn cut(mut answer: Vec<u8>, cut: usize) -> Vec<Act> {
    answer.truncate(cut);
    vec![Act::Send(answer)]
}

fn send(bytes: Vec<u8>) -> Vec<Act> {
    vec![Act::Send(bytes)]
}

/// Length of the head of an answer (where its body starts).
fn head_len(answer: &[u8]) -> usize {
    answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(answer.len(), |p| p + 4)
}

/// A 200 for the whole file cut after `bytes` of its body.
fn full_cut(data: &[u8], bytes: usize) -> Vec<Act> {
    let answer = full(data, LM1);
    let at = head_len(&answer) + bytes;
    cut(answer, at)
}

/// Chunked transfer coding of `body` in `step`-byte chunks, with the terminating chunk.
fn chunked(body: &[u8], step: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for chunk in body.chunks(step) {
        out.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        out.extend_from_slice(chunk);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Expect {
    /// Ends byte-exact, whatever happened on the way.
    Exact,
    /// The first failure is this code in TRANSIENT_ERROR; the retry then ends byte-exact.
    Recovers(ErrorCode),
    /// Ends in this state with this code (the server keeps misbehaving).
    Fails(JobState, ErrorCode),
}

struct Row {
    name: &'static str,
    /// Byte ranges of the file (`offset:length` list), or the whole file.
    ranges: Option<&'static str>,
    /// What the remote file is at the end (what a byte-exact download holds).
    remote: Vec<u8>,
    script: Script,
    expect: Expect,
}

fn row(
    name: &'static str,
    remote: Vec<u8>,
    expect: Expect,
    script: impl Fn(&Request) -> Vec<Act> + Send + Sync + 'static,
) -> Row {
    Row {
        name,
        ranges: None,
        remote,
        script: Arc::new(script),
        expect,
    }
}

fn ranged(mut row: Row, ranges: &'static str) -> Row {
    row.ranges = Some(ranges);
    row
}

use Expect::*;
use JobState::{Error as ERROR, TransientError as TRANSIENT};

/// The first answer is `first` (given the file); every later one is an honest server's.
fn once(
    data: &[u8],
    first: impl Fn(&[u8]) -> Vec<Act> + Send + Sync + 'static,
) -> impl Fn(&Request) -> Vec<Act> + Send + Sync + 'static {
    let data = data.to_vec();
    move |r| match r.n {
        0 => first(&data),
        _ => send(honest(r, &data, LM1)),
    }
}

/// The first GET is cut halfway; every resume (a range request) is answered with `resume`.
fn resumed_with(
    data: &[u8],
    resume: impl Fn(&[u8]) -> Vec<u8> + Send + Sync + 'static,
) -> impl Fn(&Request) -> Vec<Act> + Send + Sync + 'static {
    let data = data.to_vec();
    move |r| match r.span() {
        None => full_cut(&data, 50_000),
        Some(_) => send(resume(&data)),
    }
}

/// Every answer is an honest server's, passed through `change`.
fn honest_but(
    data: &[u8],
    change: impl Fn(&Request, Vec<u8>) -> Vec<Act> + Send + Sync + 'static,
) -> impl Fn(&Request) -> Vec<Act> + Send + Sync + 'static {
    let data = data.to_vec();
    move |r| change(r, honest(r, &data, LM1))
}

/// A 206 head for `bytes 50000-99999/100000` with these other headers, then `body`.
fn resume_206(headers: &[(&str, String)], body: &[u8]) -> Vec<u8> {
    let mut all = vec![
        ("Content-Range", "bytes 50000-99999/100000".to_string()),
        ("Last-Modified", LM1.to_string()),
    ];
    all.extend(headers.iter().cloned());
    with_body(head("206 Partial Content", &all), body)
}

fn empty(status: &str, headers: &[(&str, &str)]) -> Vec<u8> {
    let mut all: Vec<(&str, String)> = vec![("Content-Length", "0".into())];
    all.extend(headers.iter().map(|(n, v)| (*n, v.to_string())));
    head(status, &all)
}

fn rows() -> Vec<Row> {
    let data = content(100_000, 41);
    let big = content(2_000_000, 42);
    let other = content(120_000, 43);
    let changed = content(100_000, 45);
    let shrunk = content(30_000, 46);
    let slow = content(4_000, 47);
    let mib = content(1_048_576, 44);
    let d = || data.clone();
    let invalid = Fails(ERROR, ErrorCode::InvalidServerResponse);
    let reset = Recovers(ErrorCode::ConnectionError);
    let mut rows = vec![
        row(
            "an honest server",
            d(),
            Exact,
            honest_but(&data, |_, a| send(a)),
        ),
        row(
            "an empty file",
            Vec::new(),
            Exact,
            honest_but(&[], |_, a| send(a)),
        ),
        // Defect 1: the resume is answered with less than asked, honestly.
        row(
            "a cut body, then a short 206 on resume",
            big.clone(),
            Exact,
            {
                let big = big.clone();
                move |r| match r.n {
                    0 => full_cut(&big, 1_000_000),
                    1 => send(part(&big, 1_000_000, 1_499_999, "2000000", LM1)),
                    _ => send(honest(r, &big, LM1)),
                }
            },
        ),
        row("every 206 shorter than asked", d(), Exact, {
            let data = d();
            move |r| match r.span() {
                None => full_cut(&data, 10_000),
                Some((start, _)) => {
                    let last = (start as usize + 7_000).min(data.len() - 1);
                    send(part(&data, start as usize, last, "100000", LM1))
                }
            }
        }),
        row(
            "a 206 that starts before the asked offset",
            d(),
            invalid,
            resumed_with(&data, |d| part(d, 40_000, 99_999, "100000", LM1)),
        ),
        row(
            "a 206 that starts after the asked offset",
            d(),
            invalid,
            resumed_with(&data, |d| part(d, 60_000, 99_999, "100000", LM1)),
        ),
        row(
            "a 206 whose range ends past its own total",
            d(),
            invalid,
            resumed_with(&data, |d| {
                let mut body = d[50_000..].to_vec();
                body.push(0);
                let headers = [
                    ("Content-Length", "50001".to_string()),
                    ("Content-Range", "bytes 50000-100000/100000".to_string()),
                    ("Last-Modified", LM1.to_string()),
                ];
                with_body(head("206 Partial Content", &headers), &body)
            }),
        ),
        row(
            "a 206 whose Content-Length contradicts its Content-Range",
            d(),
            invalid,
            resumed_with(&data, |d| {
                resume_206(&[("Content-Length", "1000".into())], &d[50_000..51_000])
            }),
        ),
        row(
            "a 206 without Content-Range",
            d(),
            invalid,
            resumed_with(&data, |d| {
                let headers = [
                    ("Content-Length", "50000".to_string()),
                    ("Last-Modified", LM1.to_string()),
                ];
                with_body(head("206 Partial Content", &headers), &d[50_000..])
            }),
        ),
        row(
            "a multipart 206 to a single range",
            d(),
            invalid,
            resumed_with(&data, |d| {
                let mut body = b"--x\r\nContent-Range: bytes 50000-99999/100000\r\n\r\n".to_vec();
                body.extend_from_slice(&d[50_000..]);
                body.extend_from_slice(b"\r\n--x--\r\n");
                let headers = [
                    ("Content-Length", body.len().to_string()),
                    (
                        "Content-Type",
                        "multipart/byteranges; boundary=x".to_string(),
                    ),
                ];
                resume_206(&headers, &body)
            }),
        ),
        row("a 206 to a request for the whole file", d(), invalid, {
            let data = d();
            move |_| send(part(&data, 0, 99_999, "100000", LM1))
        }),
        row(
            "a 200 to a range request (no range support)",
            d(),
            Fails(ERROR, ErrorCode::InsufficientRangeSupport),
            resumed_with(&data, |d| full(d, LM1)),
        ),
        row(
            "a 200 with a new Last-Modified to a range request (the file changed)",
            other.clone(),
            Exact,
            {
                let other = other.clone();
                resumed_with(&data, move |_| full(&other, LM2))
            },
        ),
        row(
            "the total changes between attempts",
            other.clone(),
            Exact,
            {
                let (data, other) = (d(), other.clone());
                move |r| match r.n {
                    0 => full_cut(&data, 50_000),
                    _ => send(honest(r, &other, LM1)),
                }
            },
        ),
        row(
            "Last-Modified changes between attempts",
            changed.clone(),
            Exact,
            {
                let (data, changed) = (d(), changed.clone());
                move |r| match r.n {
                    0 => full_cut(&data, 50_000),
                    _ => send(honest(r, &changed, LM2)),
                }
            },
        ),
        row(
            "the file changes on every answer",
            d(),
            Fails(TRANSIENT, ErrorCode::ConnectionError),
            {
                let data = d();
                move |r| {
                    let lm = format!("Thu, 22 Oct 2015 07:{:02}:00 GMT", r.n % 60);
                    let answer = honest(r, &data, &lm);
                    let at = head_len(&answer) + 30_000;
                    cut(answer, at)
                }
            },
        ),
        row("416 on resume (the file shrank)", shrunk.clone(), Exact, {
            let (data, shrunk) = (d(), shrunk.clone());
            move |r| match r.n {
                0 => full_cut(&data, 50_000),
                _ => send(honest(r, &shrunk, LM2)),
            }
        }),
        row(
            "a cut before any byte of the body",
            d(),
            reset,
            once(&data, |d| full_cut(d, 0)),
        ),
        row(
            "a cut after 1 byte",
            d(),
            reset,
            once(&data, |d| full_cut(d, 1)),
        ),
        row(
            "a cut after 4095 bytes",
            d(),
            reset,
            once(&data, |d| full_cut(d, 4095)),
        ),
        row(
            "a cut one byte before the end",
            d(),
            reset,
            once(&data, |d| full_cut(d, 99_999)),
        ),
        row(
            "cuts on every answer, further each time",
            d(),
            Exact,
            honest_but(&data, |_, answer| {
                let at = head_len(&answer) + 20_000;
                cut(answer, at)
            }),
        ),
        row(
            "a reset in the middle of the head",
            d(),
            reset,
            once(&data, |d| {
                vec![Act::Send(full(d, LM1)[..20].to_vec()), Act::Reset]
            }),
        ),
        row(
            "a reset in the middle of the body",
            d(),
            reset,
            once(&data, |d| {
                let mut acts = full_cut(d, 30_000);
                acts.push(Act::Reset);
                acts
            }),
        ),
        row(
            "the connection closed without an answer",
            d(),
            reset,
            once(&data, |_| Vec::new()),
        ),
        row(
            "not HTTP at all",
            d(),
            reset,
            once(&data, |_| send(b"SSH-2.0-OpenSSH_9.6\r\n\r\n".to_vec())),
        ),
        row(
            "a Content-Length that is not a number",
            d(),
            reset,
            once(&data, |d| {
                send(with_body(
                    head("200 OK", &[("Content-Length", "12x".into())]),
                    d,
                ))
            }),
        ),
        row(
            "two different Content-Lengths",
            d(),
            reset,
            once(&data, |d| {
                let headers = [
                    ("Content-Length", "100000".into()),
                    ("Content-Length", "5".into()),
                ];
                send(with_body(head("200 OK", &headers), d))
            }),
        ),
        row(
            "extra bytes after the announced length",
            d(),
            Exact,
            honest_but(&data, |_, mut answer| {
                answer.extend_from_slice(&[0xAA; 5000]);
                send(answer)
            }),
        ),
        row(
            "a chunked 206 longer than its Content-Range",
            d(),
            Fails(TRANSIENT, ErrorCode::InvalidServerResponse),
            resumed_with(&data, |d| {
                let mut body = d[50_000..].to_vec();
                body.extend_from_slice(&[0xBB; 3000]);
                resume_206(
                    &[("Transfer-Encoding", "chunked".into())],
                    &chunked(&body, 8192),
                )
            }),
        ),
        row(
            "a chunked 206 shorter than its Content-Range",
            d(),
            Fails(TRANSIENT, ErrorCode::ConnectionError),
            resumed_with(&data, |d| {
                resume_206(
                    &[("Transfer-Encoding", "chunked".into())],
                    &chunked(&d[50_000..90_000], 8192),
                )
            }),
        ),
        row("a malformed chunk size", d(), reset, {
            let data = d();
            move |r| match r.n {
                0 => full_cut(&data, 50_000),
                1 => send(resume_206(
                    &[("Transfer-Encoding", "chunked".into())],
                    b"zz\r\nhello\r\n0\r\n\r\n",
                )),
                _ => send(honest(r, &data, LM1)),
            }
        }),
        row(
            "a 200 without Content-Length",
            d(),
            Fails(ERROR, ErrorCode::MissingFileSize),
            {
                let data = d();
                move |_| {
                    send(with_body(
                        head("200 OK", &[("Last-Modified", LM1.into())]),
                        &data,
                    ))
                }
            },
        ),
        row(
            "a resume redirected to a different file",
            other.clone(),
            Exact,
            {
                let (data, other) = (d(), other.clone());
                move |r| match (r.n, r.path.as_str()) {
                    (0, _) => full_cut(&data, 50_000),
                    (_, "/f") => send(empty("302 Found", &[("Location", "/other")])),
                    _ => send(honest(r, &other, LM2)),
                }
            },
        ),
        row(
            "a redirect loop",
            d(),
            Fails(ERROR, ErrorCode::RedirectFailed),
            |_| send(empty("302 Found", &[("Location", "/f")])),
        ),
        row(
            "503 with Retry-After, then the file",
            d(),
            Recovers(ErrorCode::Http(503)),
            once(&data, |_| {
                send(empty("503 Service Unavailable", &[("Retry-After", "30")]))
            }),
        ),
        row(
            "a Retry-After of a thousand years",
            d(),
            Recovers(ErrorCode::Http(503)),
            once(&data, |_| {
                send(empty(
                    "503 Service Unavailable",
                    &[("Retry-After", "31536000000")],
                ))
            }),
        ),
        row("404", d(), Fails(ERROR, ErrorCode::Http(404)), |_| {
            send(empty("404 Not Found", &[]))
        }),
        row(
            "a slow trickle",
            slow.clone(),
            Exact,
            honest_but(&slow, |_, answer| {
                vec![Act::Trickle(answer, 400, Duration::from_millis(5))]
            }),
        ),
    ];
    // Byte ranges (spec §3.2).
    rows.extend([
        ranged(
            row(
                "ranges from an honest server",
                d(),
                Exact,
                honest_but(&data, |_, a| send(a)),
            ),
            "100:100,900:100,400:100",
        ),
        // Defect 2: a range that reaches past the end of the remote file.
        ranged(
            row(
                "a range past the end of the file",
                mib.clone(),
                Fails(ERROR, ErrorCode::InvalidRange),
                honest_but(&mib, |_, a| send(a)),
            ),
            "1048000:1000",
        ),
        ranged(
            row("a 206 longer than the range asked", d(), invalid, {
                let data = d();
                move |r| {
                    let start = r.span().map_or(0, |(start, _)| start as usize);
                    send(part(&data, start, start + 199, "100000", LM1))
                }
            }),
            "100:100",
        ),
        ranged(
            row("a short 206 for a range", d(), Exact, {
                let data = d();
                move |r| match r.span() {
                    Some((start, Some(end))) => {
                        let step = if start < 1000 { 30 } else { 5000 };
                        send(part(
                            &data,
                            start as usize,
                            (start + step - 1).min(end) as usize,
                            "100000",
                            LM1,
                        ))
                    }
                    _ => send(honest(r, &data, LM1)),
                }
            }),
            "100:100,5000:eof",
        ),
        ranged(
            row(
                "a 416 to a range",
                d(),
                Fails(ERROR, ErrorCode::InvalidRange),
                |_| {
                    send(empty(
                        "416 Range Not Satisfiable",
                        &[("Content-Range", "bytes */10")],
                    ))
                },
            ),
            "100:100",
        ),
        ranged(
            row(
                "a range answered by a file that changes on every answer",
                d(),
                Fails(TRANSIENT, ErrorCode::InvalidServerResponse),
                {
                    let data = d();
                    move |r| {
                        let lm = format!("Thu, 22 Oct 2015 08:{:02}:00 GMT", r.n % 60);
                        send(honest(r, &data, &lm))
                    }
                },
            ),
            "100:100,900:100",
        ),
    ]);
    rows
}

/// The bytes a byte-exact download of `remote` holds.
fn expected_bytes(remote: &[u8], ranges: Option<&str>) -> Vec<u8> {
    let Some(ranges) = ranges else {
        return remote.to_vec();
    };
    let mut out = Vec::new();
    for range in FileRange::parse_list(ranges).expect("ranges") {
        let start = range.offset as usize;
        let end = if range.length == ferry::job::LENGTH_TO_EOF {
            remote.len()
        } else {
            start + range.length as usize
        };
        out.extend_from_slice(&remote[start..end.min(remote.len())]);
    }
    out
}

/// Attempts (runs after a transient error) before an `Exact` row counts as stuck.
const ATTEMPTS: usize = 12;

/// Runs one row; returns what went wrong, if anything.
async fn run_row(h: &mut Harness, index: usize, row: &Row) -> Result<String, String> {
    let server = RawServer::start(row.script.clone()).await;
    let id = h
        .engine
        .create_job(row.name, JobType::Download, Some(Priority::Foreground))
        .await
        .map_err(|e| format!("create: {e}"))?;
    let name = format!("row{index}");
    let ranges = row
        .ranges
        .map(|r| FileRange::parse_list(r).expect("ranges"));
    let file = NewFile {
        remote_url: server.url("/f"),
        local_path: h.out(&name),
        ranges,
        checksum: None,
    };
    h.engine
        .add_files(id, vec![file])
        .await
        .map_err(|e| format!("add: {e}"))?;
    h.engine
        .resume(id)
        .await
        .map_err(|e| format!("resume: {e}"))?;
    let mut first_failure: Option<(JobState, ErrorCode)> = None;
    let mut waiting_since: Option<ferry::job::Timestamp> = None;
    for _ in 0..ATTEMPTS {
        let job = settle(h, id, waiting_since).await;
        match job.state {
            JobState::Transferred => {
                h.engine
                    .complete(id)
                    .await
                    .map_err(|e| format!("complete: {e}"))?;
                let got = std::fs::read(h.out(&name)).map_err(|e| format!("read: {e}"))?;
                let want = expected_bytes(&row.remote, row.ranges);
                if got != want {
                    return Err(format!(
                        "TRANSFERRED with wrong bytes: {} bytes, expected {} (first failure {first_failure:?})",
                        got.len(),
                        want.len()
                    ));
                }
                return match (row.expect, first_failure) {
                    (Exact, _) => Ok("byte-exact".into()),
                    (Recovers(code), Some((JobState::TransientError, seen))) if seen == code => {
                        Ok(format!("{} then byte-exact", code.name()))
                    }
                    (expect, seen) => Err(format!(
                        "ended byte-exact, but expected {expect:?}; first failure {seen:?}"
                    )),
                };
            }
            JobState::Error | JobState::TransientError => {
                let code = job
                    .current_error()
                    .map(|e| e.code)
                    .map_err(|e| format!("a failure without an error: {e}"))?;
                first_failure.get_or_insert((job.state, code));
                let description = job
                    .current_error()
                    .map(|e| e.description.clone())
                    .unwrap_or_default();
                if let Fails(state, want) = row.expect
                    && job.state == state
                    && code == want
                {
                    h.engine
                        .cancel(id)
                        .await
                        .map_err(|e| format!("cancel: {e}"))?;
                    return Ok(format!("{} {}: {description}", state.name(), code.name()));
                }
                if job.state == JobState::Error {
                    h.engine
                        .cancel(id)
                        .await
                        .map_err(|e| format!("cancel: {e}"))?;
                    return Err(format!(
                        "ended in ERROR {} ({description}), expected {:?}",
                        code.name(),
                        row.expect
                    ));
                }
                // TRANSIENT_ERROR: let the retry timer run out.
                let retry_at = job.retry.next_retry_at.ok_or("no retry time")?;
                let now = h.clock.now();
                if retry_at > now {
                    h.clock
                        .advance((retry_at - now).to_std().unwrap_or_default());
                }
                waiting_since = Some(retry_at);
            }
            other => return Err(format!("settled in {other}?")),
        }
    }
    let _ = h.engine.cancel(id).await;
    Err(format!(
        "not done after {ATTEMPTS} attempts; {} requests; first failure {first_failure:?}",
        server.requests().len()
    ))
}

/// Waits for TRANSFERRED, ERROR, or a TRANSIENT_ERROR other than the one whose retry time is
/// `retrying` (the one just left behind).
async fn settle(h: &mut Harness, id: JobId, retrying: Option<ferry::job::Timestamp>) -> Job {
    h.wait_for(id, "a settled state", |j| match j.state {
        JobState::Transferred | JobState::Error => true,
        JobState::TransientError => j.retry.next_retry_at != retrying || retrying.is_none(),
        _ => false,
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fault_matrix_never_ends_transferred_with_wrong_bytes() {
    let rows = rows();
    assert!(rows.len() >= 30, "{} rows", rows.len());
    let mut h = Harness::with_config(test_config()).await;
    let mut failures = Vec::new();
    for (index, row) in rows.iter().enumerate() {
        match run_row(&mut h, index, row).await {
            Ok(outcome) => eprintln!("ok   {:<70} {outcome}", row.name),
            Err(problem) => {
                eprintln!("FAIL {:<70} {problem}", row.name);
                failures.push(format!("{}: {problem}", row.name));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} rows failed:\n{}",
        failures.len(),
        rows.len(),
        failures.join("\n")
    );
}

/// Defect: failures were classified by searching the error's text, which holds the URL, so a
/// refused connection to a path with "tls" or "certificate" in it became a fatal TLS error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_connection_is_cannot_connect_whatever_the_url_says() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("address").port()
    }; // closed again: connections to it are refused
    let mut h = Harness::new().await;
    let url = format!("http://127.0.0.1:{port}/tls/certificate-handshake-failed.iso");
    let id = h.start(Priority::Foreground, &[(&url, "refused")]).await;
    let job = h.wait_state(id, JobState::TransientError).await;
    let error = job.current_error().expect("error");
    assert_eq!(
        error.code,
        ErrorCode::CannotConnect,
        "{}",
        error.description
    );
}

/// Defect: with its destination folder removed mid-transfer, a job said TRANSFERRED (the bytes
/// went to an unlinked temp file) and could never complete, even after the folder came back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_destination_folder_removed_mid_transfer_is_an_error_not_transferred() {
    let data = content(3_000_000, 60);
    let go = Arc::new(tokio::sync::Notify::new());
    let script: Script = {
        let (data, go) = (data.clone(), go.clone());
        Arc::new(move |r: &Request| match r.n {
            0 => {
                let answer = full(&data, LM1);
                let at = head_len(&answer) + 1_500_000;
                vec![
                    Act::Send(answer[..at].to_vec()),
                    Act::Wait(go.clone()),
                    Act::Send(answer[at..].to_vec()),
                ]
            }
            _ => send(honest(r, &data, LM1)),
        })
    };
    let server = RawServer::start(script).await;
    let mut h = Harness::new().await;
    let folder = h.out("sub");
    std::fs::create_dir(&folder).expect("folder");
    let id = h
        .engine
        .create_job("removed", JobType::Download, Some(Priority::Foreground))
        .await
        .expect("create");
    let file = NewFile {
        remote_url: server.url("/f"),
        local_path: folder.join("file.bin"),
        ranges: None,
        checksum: None,
    };
    h.engine.add_files(id, vec![file]).await.expect("add");
    h.engine.resume(id).await.expect("resume");
    h.wait_for(id, "half the file", |j| {
        j.files[0].bytes_transferred >= 1_500_000
    })
    .await;
    std::fs::remove_dir_all(&folder).expect("remove the folder");
    go.notify_one();
    let job = h.wait_state(id, JobState::Error).await;
    let error = job.current_error().expect("error");
    assert_eq!(error.code, ErrorCode::PathNotFound, "{}", error.description);
    assert!(
        error.description.contains("disappeared"),
        "{}",
        error.description
    );
    assert!(!job.files[0].transferred);
    // With the folder back, Resume downloads the file again, byte-exact.
    std::fs::create_dir(&folder).expect("folder again");
    h.engine.resume(id).await.expect("resume");
    h.wait_state(id, JobState::Transferred).await;
    h.engine.complete(id).await.expect("complete");
    assert_eq!(std::fs::read(folder.join("file.bin")).expect("file"), data);
}
