//! `ferry serve DIR`, the real binary: downloads (GET/HEAD, single and multiple ranges,
//! If-Range), confinement to DIR, and Ferry's own downloads against it.

use crate::home::{Home, run, stderr};
use crate::{content, sha256};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Stdio};

/// A running `ferry serve`, stopped when dropped.
struct Served {
    child: Child,
    base: String,
    address: String,
    log_lines: std::sync::mpsc::Receiver<String>,
}

impl Served {
    fn start(dir: &Path) -> Served {
        Served::start_with(dir, &[])
    }

    fn start_with(dir: &Path, options: &[&str]) -> Served {
        let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin!("ferry"))
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(options)
            .arg(dir)
            .env("FERRY_LOG", "ferry::serve=info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn ferry serve");
        let log = child.stderr.take().expect("stderr");
        let (tx, log_lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(log).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let stdout = child.stdout.take().expect("stdout");
        // The first line names the address; it is written once the socket listens.
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("ready line");
        let base = line
            .trim()
            .rsplit(' ')
            .next()
            .expect("url")
            .trim_end_matches('/')
            .to_string();
        assert!(base.starts_with("http://127.0.0.1:"), "ready line: {line}");
        let address = base.trim_start_matches("http://").to_string();
        Served {
            child,
            base,
            address,
            log_lines,
        }
    }

    /// Waits for a log line containing `text`.
    fn wait_log(&self, text: &str) {
        loop {
            match self.log_lines.recv_timeout(crate::PATIENCE) {
                Ok(line) if line.contains(text) => return,
                Ok(_) => {}
                Err(_) => panic!("no log line with {text:?}"),
            }
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Sends `request` as written (no client normalises its path) and returns the status code
    /// and the whole answer.
    fn raw(&self, request: &str) -> (u16, String) {
        let mut stream = TcpStream::connect(&self.address).expect("connect");
        stream.write_all(request.as_bytes()).expect("send");
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).expect("read");
        let answer = String::from_utf8_lossy(&answer).into_owned();
        let status = answer
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        (status, answer)
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn header<'a>(response: &'a reqwest::Response, name: &str) -> &'a str {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_answers_get_head_and_ranges() {
    let dir = tempfile::tempdir().expect("dir");
    let data = content(1_000_000, 70);
    std::fs::create_dir(dir.path().join("sub")).expect("sub");
    std::fs::write(dir.path().join("sub/file name.bin"), &data).expect("file");
    let served = Served::start(dir.path());
    let http = reqwest::Client::new();
    let url = served.url("/sub/file%20name.bin");

    let whole = http.get(&url).send().await.expect("get");
    assert_eq!(whole.status(), 200);
    assert_eq!(header(&whole, "content-length"), "1000000");
    assert_eq!(header(&whole, "accept-ranges"), "bytes");
    let etag = header(&whole, "etag").to_string();
    let last_modified = header(&whole, "last-modified").to_string();
    assert!(etag.starts_with('"'), "strong ETag: {etag}");
    assert!(last_modified.ends_with("GMT"), "{last_modified}");
    assert_eq!(sha256(&whole.bytes().await.expect("body")), sha256(&data));

    let head = http.head(&url).send().await.expect("head");
    assert_eq!(head.status(), 200);
    assert_eq!(header(&head, "content-length"), "1000000");
    assert_eq!(header(&head, "etag"), etag);

    let one = http
        .get(&url)
        .header("Range", "bytes=999990-")
        .send()
        .await
        .expect("range");
    assert_eq!(one.status(), 206);
    assert_eq!(header(&one, "content-range"), "bytes 999990-999999/1000000");
    assert_eq!(one.bytes().await.expect("body"), &data[999_990..]);

    // Several disjoint ranges: multipart, in the order asked (overlapping ones are coalesced:
    // see overlapping_or_countless_ranges_never_cost_more_than_the_file).
    let many = http
        .get(&url)
        .header("Range", "bytes=500-509,0-4,605-614")
        .send()
        .await
        .expect("ranges");
    assert_eq!(many.status(), 206);
    let boundary = header(&many, "content-type")
        .strip_prefix("multipart/byteranges; boundary=")
        .expect("multipart")
        .to_string();
    let length: usize = header(&many, "content-length").parse().expect("length");
    let body = many.bytes().await.expect("body");
    assert_eq!(body.len(), length);
    let mut parts = Vec::new();
    let marker = format!("--{boundary}");
    let mut rest: &[u8] = &body;
    while let Some(at) = find(rest, marker.as_bytes()) {
        rest = &rest[at + marker.len()..];
        if rest.starts_with(b"--") {
            break; // the closing boundary
        }
        let head_end = find(rest, b"\r\n\r\n").expect("part head") + 4;
        let head = String::from_utf8_lossy(&rest[..head_end]).into_owned();
        let range = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Range: bytes "))
            .expect("part range")
            .to_string();
        // The data runs up to the CRLF before the next boundary.
        let next = find(&rest[head_end..], marker.as_bytes()).expect("next part");
        parts.push((range, rest[head_end..head_end + next - 2].to_vec()));
    }
    assert_eq!(
        parts,
        vec![
            ("500-509/1000000".to_string(), data[500..510].to_vec()),
            ("0-4/1000000".to_string(), data[0..5].to_vec()),
            ("605-614/1000000".to_string(), data[605..615].to_vec()),
        ]
    );

    let past = http
        .get(&url)
        .header("Range", "bytes=1000000-")
        .send()
        .await
        .expect("past");
    assert_eq!(past.status(), 416);
    assert_eq!(header(&past, "content-range"), "bytes */1000000");

    // If-Range with another validator: the whole (changed) file.
    let stale = http
        .get(&url)
        .header("Range", "bytes=0-9")
        .header("If-Range", "\"other\"")
        .send()
        .await
        .expect("if-range");
    assert_eq!(stale.status(), 200);
    let fresh = http
        .get(&url)
        .header("Range", "bytes=0-9")
        .header("If-Range", &etag)
        .send()
        .await
        .expect("if-range");
    assert_eq!(fresh.status(), 206);

    assert_eq!(
        http.get(served.url("/missing"))
            .send()
            .await
            .expect("404")
            .status(),
        404
    );
    assert_eq!(
        http.get(served.url("/sub"))
            .send()
            .await
            .expect("dir")
            .status(),
        404
    );
    let put = http.put(&url).body("x").send().await.expect("put");
    assert_eq!(put.status(), 405);
    // Uploads in progress are never served.
    let hidden = http
        .get(served.url("/.ferry-uploads/"))
        .send()
        .await
        .expect("get");
    assert_eq!(hidden.status(), 404);
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_never_leaves_its_folder() {
    let top = tempfile::tempdir().expect("dir");
    let root = top.path().join("root");
    std::fs::create_dir(&root).expect("root");
    std::fs::write(top.path().join("secret"), b"secret").expect("secret");
    std::fs::write(root.join("public"), b"public").expect("public");
    std::os::unix::fs::symlink(top.path().join("secret"), root.join("link")).expect("symlink");
    std::os::unix::fs::symlink(top.path(), root.join("up")).expect("dir symlink");
    let served = Served::start(&root);
    let (status, answer) =
        served.raw("GET /public HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert_eq!(status, 200, "{answer}");
    for path in [
        "/../secret",
        "/%2e%2e/secret",
        "/%2E%2E%2Fsecret",
        "/x/..%2F..%2Fsecret",
        "/..%5Csecret",
        "/link",
        "/up/secret",
        "//etc/passwd/../../secret",
    ] {
        let (status, answer) = served.raw(&format!(
            "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        ));
        assert!(
            matches!(status, 400 | 403 | 404),
            "{path} got {status}: {answer}"
        );
        assert!(
            !answer.contains("secret\r\n") && !answer.ends_with("secret"),
            "{path}: {answer}"
        );
    }
    // Garbage instead of HTTP: a 400, and the server goes on.
    let (status, _) = served.raw("NONSENSE\r\n\r\n");
    assert_eq!(status, 400);
    let (status, _) = served.raw("GET /public HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ferry_get_downloads_from_ferry_serve() {
    let dir = tempfile::tempdir().expect("dir");
    let data = content(3_000_000, 71);
    std::fs::write(dir.path().join("big.bin"), &data).expect("file");
    let served = Served::start(dir.path());
    let home = Home::new();
    let out = tempfile::tempdir().expect("out");
    let mut command = home.ferry();
    command
        .args(["get", "--quiet", "-o"])
        .arg(out.path())
        .arg(served.url("/big.bin"));
    let output = run(command).await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let got = std::fs::read(out.path().join("big.bin")).expect("downloaded");
    assert_eq!(sha256(&got), sha256(&data));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_explains_a_bad_folder() {
    let missing = tempfile::tempdir().expect("dir").path().join("nope");
    let output = std::process::Command::new(assert_cmd::cargo::cargo_bin!("ferry"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .arg(&missing)
        .stdin(Stdio::null())
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(1));
    let text = String::from_utf8_lossy(&output.stderr);
    assert!(text.contains("give an existing folder"), "{text}");
}

const PROTOCOL: &str = "{7df0354d-249b-430f-820d-3d2a9bef4931}";

/// One BITS_POST with these headers and body; `Content-Length` is always sent.
async fn bits(
    http: &reqwest::Client,
    url: &str,
    packet: &str,
    session: Option<&str>,
    headers: &[(&str, &str)],
    body: &[u8],
) -> reqwest::Response {
    let mut request = http
        .request(
            reqwest::Method::from_bytes(b"BITS_POST").expect("method"),
            url,
        )
        .header("BITS-Packet-Type", packet)
        .header("Content-Length", body.len().to_string())
        .body(body.to_vec());
    if let Some(session) = session {
        request = request.header("BITS-Session-Id", session);
    }
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.expect("BITS_POST")
}

async fn create_session(http: &reqwest::Client, url: &str) -> String {
    let created = bits(
        http,
        url,
        "Create-Session",
        None,
        &[("BITS-Supported-Protocols", PROTOCOL)],
        b"",
    )
    .await;
    assert_eq!(created.status(), 200, "{:?}", created.headers());
    assert_eq!(header(&created, "bits-packet-type"), "Ack");
    assert_eq!(header(&created, "bits-protocol"), PROTOCOL);
    assert_eq!(header(&created, "content-length"), "0");
    header(&created, "bits-session-id").to_string()
}

/// Sends bytes FIRST..=LAST of `data` as a fragment; returns the status and the server's offset.
async fn send_fragment(
    http: &reqwest::Client,
    url: &str,
    session: &str,
    data: &[u8],
    first: usize,
    last: usize,
) -> (u16, String) {
    let range = format!("bytes {first}-{last}/{}", data.len());
    let answer = bits(
        http,
        url,
        "Fragment",
        Some(session),
        &[("Content-Range", &range)],
        &data[first..=last],
    )
    .await;
    (
        answer.status().as_u16(),
        header(&answer, "bits-received-content-range").to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_minimal_exchange_of_the_spec_uploads_a_file() {
    let dir = tempfile::tempdir().expect("dir");
    std::fs::create_dir(dir.path().join("upload")).expect("upload dir");
    let served = Served::start(dir.path());
    let data = content(4892, 72);
    // §8.6 word for word, on a raw socket: packet types in Windows' mixed case.
    let send = |request: Vec<u8>| {
        let mut stream = TcpStream::connect(&served.address).expect("connect");
        stream.write_all(&request).expect("send");
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).expect("read");
        String::from_utf8_lossy(&answer).into_owned()
    };
    let answer = send(
        format!(
            "BITS_POST /upload/a.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
             BITS-Packet-Type: Create-Session\r\nBITS-Supported-Protocols: {PROTOCOL}\r\n\
             Content-Length: 0\r\n\r\n"
        )
        .into_bytes(),
    );
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("bits-packet-type: Ack"), "{answer}");
    assert!(
        answer.contains(&format!("bits-protocol: {PROTOCOL}")),
        "{answer}"
    );
    assert!(answer.contains("accept-encoding: identity"), "{answer}");
    assert!(answer.contains("content-length: 0"), "{answer}");
    let session = answer
        .lines()
        .find_map(|l| l.strip_prefix("bits-session-id: "))
        .expect("session id")
        .trim()
        .to_string();
    assert!(
        session.starts_with('{') && session.ends_with('}'),
        "{session}"
    );
    let mut fragment = format!(
        "BITS_POST /upload/a.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
         BITS-Packet-Type: Fragment\r\nBITS-Session-Id: {session}\r\n\
         Content-Name: a.txt\r\nContent-Range: bytes 0-4891/4892\r\nContent-Length: 4892\r\n\r\n"
    )
    .into_bytes();
    fragment.extend_from_slice(&data);
    let answer = send(fragment);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        answer.contains("bits-received-content-range: 4892"),
        "{answer}"
    );
    assert!(
        answer.contains(&format!("bits-session-id: {session}")),
        "{answer}"
    );
    assert_eq!(
        std::fs::read(dir.path().join("upload/a.txt")).expect("uploaded"),
        data
    );
    // Upper-case packet type (MC-BUP's spelling) is the same packet.
    let answer = send(
        format!(
            "BITS_POST /upload/a.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
             BITS-Packet-Type: CLOSE-SESSION\r\nBITS-Session-Id: {session}\r\n\
             Content-Length: 0\r\n\r\n"
        )
        .into_bytes(),
    );
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("bits-packet-type: Ack"), "{answer}");
    // The session is gone with its data; the file stays.
    let leftovers = std::fs::read_dir(dir.path().join(".ferry-uploads"))
        .expect("session dir")
        .count();
    assert_eq!(leftovers, 0);
    assert!(dir.path().join("upload/a.txt").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fragments_overlap_gap_and_repeat_as_the_spec_says() {
    let dir = tempfile::tempdir().expect("dir");
    let served = Served::start(dir.path());
    let http = reqwest::Client::new();
    let url = served.url("/f.bin");
    let data = content(1000, 73);
    let session = create_session(&http, &url).await;
    assert_eq!(
        send_fragment(&http, &url, &session, &data, 0, 99).await,
        (200, "100".into())
    );
    // Not visible before the last byte.
    assert!(!dir.path().join("f.bin").exists());
    assert_eq!(http.get(&url).send().await.expect("get").status(), 404);
    // A gap: 416 and where to resume.
    assert_eq!(
        send_fragment(&http, &url, &session, &data, 200, 299).await,
        (416, "100".into())
    );
    // An overlap: only the new tail is written.
    assert_eq!(
        send_fragment(&http, &url, &session, &data, 50, 499).await,
        (200, "500".into())
    );
    // A duplicate: 200 and the offset held.
    assert_eq!(
        send_fragment(&http, &url, &session, &data, 0, 99).await,
        (200, "500".into())
    );
    // Another total length: 400.
    let wrong = bits(
        &http,
        &url,
        "Fragment",
        Some(&session),
        &[("Content-Range", "bytes 500-509/2000")],
        &data[500..510],
    )
    .await;
    assert_eq!(wrong.status(), 400);
    assert_eq!(header(&wrong, "bits-error-code"), "0x80070057");
    assert_eq!(
        send_fragment(&http, &url, &session, &data, 500, 999).await,
        (200, "1000".into())
    );
    assert_eq!(std::fs::read(dir.path().join("f.bin")).expect("file"), data);
    // The last fragment again after completion: 200, nothing changes.
    assert_eq!(
        send_fragment(&http, &url, &session, &data, 900, 999).await,
        (200, "1000".into())
    );
    // Cancel after completion keeps the file.
    let cancel = bits(&http, &url, "Cancel-Session", Some(&session), &[], b"").await;
    assert_eq!(cancel.status(), 200);
    assert_eq!(std::fs::read(dir.path().join("f.bin")).expect("file"), data);

    // Cancel before completion discards the partial upload.
    let url2 = served.url("/g.bin");
    let session = create_session(&http, &url2).await;
    assert_eq!(
        send_fragment(&http, &url2, &session, &data, 0, 99).await,
        (200, "100".into())
    );
    let cancel = bits(&http, &url2, "cancel-session", Some(&session), &[], b"").await;
    assert_eq!(cancel.status(), 200);
    assert!(!dir.path().join("g.bin").exists());
    let gone = bits(
        &http,
        &url2,
        "Fragment",
        Some(&session),
        &[("Content-Range", "bytes 100-199/1000")],
        &data[100..200],
    )
    .await;
    assert_eq!(gone.status(), 500);
    assert_eq!(header(&gone, "bits-error-code"), "0x8020001F");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_error_row_is_answered() {
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(dir.path().join("exists.bin"), b"old").expect("existing");
    std::fs::create_dir(dir.path().join("folder")).expect("folder");
    let served = Served::start(dir.path());
    let http = reqwest::Client::new();
    let error_of = |r: &reqwest::Response| {
        (
            r.status().as_u16(),
            header(r, "bits-error-code").to_string(),
            header(r, "bits-packet-type").to_string(),
            header(r, "content-length").to_string(),
        )
    };
    // (path, packet type, headers, (status, BITS-Error-Code))
    type Case<'a> = (&'a str, &'a str, Vec<(&'a str, &'a str)>, (u16, &'a str));
    let cases: Vec<Case> = vec![
        (
            "/new.bin",
            "Create-Session",
            vec![(
                "BITS-Supported-Protocols",
                "{00000000-0000-0000-0000-000000000000}",
            )],
            (400, "0x80070057"),
        ),
        (
            "/exists.bin",
            "Create-Session",
            vec![("BITS-Supported-Protocols", PROTOCOL)],
            (409, "0x80070005"),
        ),
        (
            "/folder",
            "Create-Session",
            vec![("BITS-Supported-Protocols", PROTOCOL)],
            (400, "0x80070057"),
        ),
        (
            "/no/such/dir.bin",
            "Create-Session",
            vec![("BITS-Supported-Protocols", PROTOCOL)],
            (404, "0x80070005"),
        ),
        (
            "/.ferry-uploads/x.bin",
            "Create-Session",
            vec![("BITS-Supported-Protocols", PROTOCOL)],
            (403, "0x80070005"),
        ),
        (
            "/new.bin",
            "Fragment",
            vec![
                ("BITS-Session-Id", "{NOPE}"),
                ("Content-Range", "bytes 0-0/1"),
            ],
            (500, "0x8020001F"),
        ),
        (
            "/new.bin",
            "Close-Session",
            vec![("BITS-Session-Id", "{NOPE}")],
            (500, "0x8020001F"),
        ),
        ("/new.bin", "Bogus", vec![], (400, "0x80070057")),
    ];
    for (path, packet, headers, (status, code)) in cases {
        let answer = bits(&http, &served.url(path), packet, None, &headers, b"").await;
        assert_eq!(
            error_of(&answer),
            (status, code.to_string(), "Ack".to_string(), "0".to_string()),
            "{packet} {path}"
        );
    }
    assert_eq!(
        std::fs::read(dir.path().join("exists.bin")).expect("kept"),
        b"old"
    );
    // Ping needs nothing.
    let ping = bits(&http, &served.url("/anything"), "Ping", None, &[], b"").await;
    assert_eq!(ping.status(), 200);
    // Bad Content-Range, and a body that does not match it.
    let url = served.url("/r.bin");
    let session = create_session(&http, &url).await;
    for range in ["bytes 0-9", "bytes 5-4/10", "garbage", "bytes 0-10/10"] {
        let answer = bits(
            &http,
            &url,
            "Fragment",
            Some(&session),
            &[("Content-Range", range)],
            b"0123456789",
        )
        .await;
        assert_eq!(error_of(&answer).0, 400, "{range}");
    }
    // Ways out of the folder, on a raw socket (clients normalise `..` away).
    for path in [
        "/../escape.bin",
        "/%2e%2e/escape.bin",
        "/a%2F..%2F..%2Fescape.bin",
    ] {
        let (status, answer) = served.raw(&format!(
            "BITS_POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
             BITS-Packet-Type: Create-Session\r\nBITS-Supported-Protocols: {PROTOCOL}\r\n\
             Content-Length: 0\r\n\r\n"
        ));
        assert!(matches!(status, 403 | 404), "{path}: {answer}");
    }
    assert!(
        !dir.path()
            .parent()
            .expect("parent")
            .join("escape.bin")
            .exists()
    );
    // Missing Content-Length, on a raw socket (clients always add it).
    let (status, answer) = served.raw(
        "BITS_POST /r.bin HTTP/1.1\r\nHost: x\r\nConnection: close\r\nBITS-Packet-Type: Ping\r\n\r\n",
    );
    assert_eq!(status, 400, "{answer}");
    assert!(answer.contains("bits-error-code: 0x80070057"), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_options_limit_uploads() {
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(dir.path().join("exists.bin"), b"old").expect("existing");
    let served = Served::start_with(
        dir.path(),
        &["--allow-overwrite", "--max-upload-size", "100"],
    );
    let http = reqwest::Client::new();
    let data = content(100, 74);
    let url = served.url("/exists.bin");
    let session = create_session(&http, &url).await;
    assert_eq!(
        send_fragment(&http, &url, &session, &data, 0, 99).await,
        (200, "100".into())
    );
    assert_eq!(
        std::fs::read(dir.path().join("exists.bin")).expect("replaced"),
        data
    );
    let big = content(101, 75);
    let url = served.url("/big.bin");
    let session = create_session(&http, &url).await;
    let answer = bits(
        &http,
        &url,
        "Fragment",
        Some(&session),
        &[("Content-Range", "bytes 0-100/101")],
        &big,
    )
    .await;
    assert_eq!(answer.status(), 500);
    assert_eq!(header(&answer, "bits-error-code"), "0x80200020");
    drop(served);

    // (A fresh folder: the sessions left open above are kept on disk and would count.)
    let fresh = tempfile::tempdir().expect("dir");
    let limited = Served::start_with(fresh.path(), &["--sessions-per-client", "2"]);
    let url = limited.url("/limited.bin");
    let first = create_session(&http, &url).await;
    let _second = create_session(&http, &url).await;
    let third = bits(
        &http,
        &url,
        "Create-Session",
        None,
        &[("BITS-Supported-Protocols", PROTOCOL)],
        b"",
    )
    .await;
    assert_eq!(third.status(), 503);
    let closed = bits(&http, &url, "Close-Session", Some(&first), &[], b"").await;
    assert_eq!(closed.status(), 200);
    let _again = create_session(&http, &url).await;
    drop(limited);

    let read_only = Served::start_with(dir.path(), &["--read-only"]);
    let answer = bits(&http, &read_only.url("/x.bin"), "Ping", None, &[], b"").await;
    assert_eq!(answer.status(), 501);
    assert_eq!(header(&answer, "bits-error-code"), "0x80070005");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_server_resumes_its_sessions_and_expires_idle_ones() {
    let dir = tempfile::tempdir().expect("dir");
    let data = content(300_000, 76);
    let http = reqwest::Client::new();
    let served = Served::start(dir.path());
    let url = served.url("/resumed.bin");
    let session = create_session(&http, &url).await;
    assert_eq!(
        send_fragment(&http, &url, &session, &data, 0, 99_999).await,
        (200, "100000".into())
    );
    drop(served); // killed, as by a crash
    let served = Served::start(dir.path());
    let url = served.url("/resumed.bin");
    // The session survived with what it held: a fragment from 0 is an overlap, not a restart.
    assert_eq!(
        send_fragment(&http, &url, &session, &data, 150_000, 299_999).await,
        (416, "100000".into())
    );
    assert_eq!(
        send_fragment(&http, &url, &session, &data, 100_000, 299_999).await,
        (200, "300000".into())
    );
    assert_eq!(
        std::fs::read(dir.path().join("resumed.bin")).expect("file"),
        data
    );
    drop(served);

    // An idle session is discarded after --session-timeout, with its data.
    let served = Served::start_with(dir.path(), &["--session-timeout", "1"]);
    let url = served.url("/idle.bin");
    let session = create_session(&http, &url).await;
    assert_eq!(
        send_fragment(&http, &url, &session, &data, 0, 9).await,
        (200, "10".into())
    );
    served.wait_log(&format!("upload session {session} expired"));
    let answer = bits(&http, &url, "Close-Session", Some(&session), &[], b"").await;
    assert_eq!(answer.status(), 500);
    assert_eq!(header(&answer, "bits-error-code"), "0x8020001F");
    let left = std::fs::read_dir(dir.path().join(".ferry-uploads"))
        .expect("session dir")
        .count();
    assert_eq!(left, 0, "the expired session's data is deleted");
    assert!(!dir.path().join("idle.bin").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_hangs_up_mid_body_does_not_stop_the_server() {
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(dir.path().join("big.bin"), content(16_000_000, 77)).expect("file");
    let served = Served::start(dir.path());
    // As aria2 does: open several connections for the whole file, read a little of each and
    // hang up. The server is still writing when the peers are gone (EPIPE; this killed the
    // process while SIGPIPE had its default action).
    let streams: Vec<TcpStream> = (0..4)
        .map(|_| {
            let mut stream = TcpStream::connect(&served.address).expect("connect");
            stream
                .write_all(b"GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n")
                .expect("send");
            let mut some = [0u8; 4096];
            stream.read_exact(&mut some).expect("the answer starts");
            stream
        })
        .collect();
    for stream in streams {
        let _ = stream.shutdown(std::net::Shutdown::Both);
    }
    let (status, _) = served.raw("HEAD /big.bin HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert_eq!(status, 200, "the server still answers");
}

/// A server application answering by value: the reply says how many bytes came.
async fn counting_application() -> (String, crate::Spawned) {
    let app = axum::Router::new()
        .fallback(|body: bytes::Bytes| async move { format!("received {} bytes", body.len()) });
    let spawned = crate::spawn_router(app).await;
    (format!("http://{}/app", spawned.address), spawned)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_line_uploads_and_reads_replies() {
    let dir = tempfile::tempdir().expect("dir");
    let (app, _app) = counting_application().await;
    let served = Served::start_with(dir.path(), &["--notify-url", &app, "--notify-by-value"]);
    let plain_dir = tempfile::tempdir().expect("dir");
    let plain = Served::start(plain_dir.path());
    let home = Home::new();
    let work = tempfile::tempdir().expect("work");
    let local = work.path().join("photo.bin");
    let data = content(1_500_000, 72);
    std::fs::write(&local, &data).expect("local");

    // `ferry put` to a plain server: the file lands at its URL.
    let mut command = home.ferry();
    command.arg("put").arg(&local).arg(plain.url("/photo.bin"));
    let output = run(command).await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("uploaded 1 file(s)"),
        "{}",
        stderr(&output)
    );
    let uploaded = std::fs::read(plain_dir.path().join("photo.bin")).expect("uploaded");
    assert_eq!(sha256(&uploaded), sha256(&data));

    // `ferry put --reply`: the application's reply is saved.
    let reply = work.path().join("answer.txt");
    let mut command = home.ferry();
    command
        .args(["put", "--quiet", "--reply"])
        .arg(&reply)
        .arg(&local)
        .arg(served.url("/in/photo.bin"));
    std::fs::create_dir(dir.path().join("in")).expect("in");
    let output = run(command).await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(
        std::fs::read_to_string(&reply).expect("reply"),
        "received 1500000 bytes"
    );
    // A --reply file that exists is refused before anything is sent.
    let mut command = home.ferry();
    command
        .args(["put", "--reply"])
        .arg(&reply)
        .arg(&local)
        .arg(served.url("/in/again.bin"));
    let output = run(command).await;
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("already exists"),
        "{}",
        stderr(&output)
    );

    // Step by step: create, add, name the reply, resume, wait, read, save, complete.
    let step = |args: &[&str]| {
        let mut command = home.ferry();
        command.args(args);
        command
    };
    let url = served.url("/in/step.bin");
    let local_text = local.display().to_string();
    let reply_file = work.path().join("step-reply.txt");
    let reply_text = reply_file.display().to_string();
    for args in [
        vec!["create", "--upload-reply", "steps"],
        vec!["add", "steps", url.as_str(), local_text.as_str()],
        vec!["set", "steps", "--reply-file", reply_text.as_str()],
        vec!["resume", "steps"],
        vec!["wait", "steps"],
    ] {
        let output = run(step(&args)).await;
        assert_eq!(
            output.status.code(),
            Some(0),
            "{args:?}: {}",
            stderr(&output)
        );
    }
    let output = run(step(&["info", "steps"])).await;
    let info = crate::home::stdout(&output);
    assert!(info.contains("UPLOAD_REPLY"), "{info}");
    assert!(info.contains("REPLY\n"), "{info}");
    assert!(info.contains("/.ferry-replies/"), "{info}");
    assert!(info.contains(&reply_text), "{info}");
    assert!(info.contains(&format!("{local_text} -> {url}")), "{info}");
    let output = run(step(&["info", "--json", "steps"])).await;
    let json: serde_json::Value =
        serde_json::from_str(&crate::home::stdout(&output)).expect("json");
    assert_eq!(json["reply"]["bytes_total"], 22);
    assert_eq!(json["bytes_transferred"], 1_500_000);
    let output = run(step(&["reply", "steps"])).await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(crate::home::stdout(&output), "received 1500000 bytes");
    let copy = work.path().join("copy.txt");
    let output = run(step(&[
        "reply",
        "steps",
        "--out",
        &copy.display().to_string(),
    ]))
    .await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(
        std::fs::read_to_string(&copy).expect("copy"),
        "received 1500000 bytes"
    );
    let output = run(step(&["complete", "steps"])).await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(
        std::fs::read_to_string(&reply_file).expect("reply file"),
        "received 1500000 bytes"
    );
    // A download job has no reply: E_NOTIMPL, said plainly.
    let output = run(step(&["create", "plain"])).await;
    assert_eq!(output.status.code(), Some(0));
    let output = run(step(&["reply", "plain"])).await;
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("only upload-reply jobs have a reply"),
        "{}",
        stderr(&output)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_explains_bad_accounts_and_certificates() {
    let dir = tempfile::tempdir().expect("dir");
    let serve = |args: &[&str]| {
        std::process::Command::new(assert_cmd::cargo::cargo_bin!("ferry"))
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(args)
            .arg(dir.path())
            .stdin(Stdio::null())
            .output()
            .expect("run")
    };
    let accounts = dir.path().join("accounts");
    std::fs::write(&accounts, "# who may upload\nalice\n").expect("accounts");
    let output = serve(&["--basic-auth-file", &accounts.display().to_string()]);
    assert_eq!(output.status.code(), Some(1));
    let text = String::from_utf8_lossy(&output.stderr);
    assert!(
        text.contains("accounts:2: expected `user:password`"),
        "{text}"
    );

    let missing = dir.path().join("missing.pem").display().to_string();
    let output = serve(&["--tls-cert", &missing, "--tls-key", &missing]);
    assert_eq!(output.status.code(), Some(1));
    let text = String::from_utf8_lossy(&output.stderr);
    assert!(text.contains("cannot read the certificate"), "{text}");
    assert!(text.contains("give a PEM file"), "{text}");

    // One without the other is a usage error.
    let output = serve(&["--tls-cert", &missing]);
    assert_eq!(output.status.code(), Some(2));
}

/// Defect: 2,000 overlapping ranges (`bytes=0-,0-,…`) drew 2 GB from a 1 MiB file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlapping_or_countless_ranges_never_cost_more_than_the_file() {
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(dir.path().join("mib"), content(1 << 20, 70)).expect("file");
    let served = Served::start(dir.path());
    let get = |ranges: String| {
        served.raw(&format!(
            "GET /mib HTTP/1.1\r\nHost: x\r\nRange: bytes={ranges}\r\nConnection: close\r\n\r\n"
        ))
    };
    let length = |answer: &str| -> u64 {
        answer
            .lines()
            .find_map(|l| {
                l.strip_prefix("content-length: ")
                    .or(l.strip_prefix("Content-Length: "))
            })
            .and_then(|v| v.trim().parse().ok())
            .expect("Content-Length")
    };
    let (status, answer) = get(vec!["0-"; 99].join(","));
    assert_eq!(status, 206);
    assert_eq!(length(&answer), 1 << 20, "coalesced into one range");
    let (status, answer) = get(vec!["0-"; 2000].join(","));
    assert_eq!(status, 200, "too many ranges: the whole file");
    assert_eq!(length(&answer), 1 << 20);
    // Disjoint ranges stay as asked, in order (what BITS clients check).
    let (status, answer) = get("100-199,0-9".into());
    assert_eq!(status, 206);
    let first = answer.find("bytes 100-199/").expect("first part");
    let second = answer.find("bytes 0-9/").expect("second part");
    assert!(first < second);
}

/// Defect: a client trickling its request head was never dropped, and 1,100 such clients
/// locked everyone out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_greedy_clients_cannot_lock_others_out() {
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(dir.path().join("f"), b"hello").expect("file");
    let served = Served::start_with(
        dir.path(),
        &["--header-timeout", "1", "--max-connections-per-client", "8"],
    );
    // A client that sends half a head and then nothing is dropped after the timeout.
    let mut slow = TcpStream::connect(&served.address).expect("connect");
    slow.write_all(b"GET /f HTTP/1.1\r\nHost: x\r\n")
        .expect("half a head");
    slow.set_read_timeout(Some(crate::PATIENCE))
        .expect("timeout");
    let mut rest = Vec::new();
    let _ = slow.read_to_end(&mut rest);
    let text = String::from_utf8_lossy(&rest);
    assert!(!text.contains("hello"), "{text}");
    // One address holds at most 8 connections: the 9th is told so and closed.
    let held: Vec<TcpStream> = (0..8)
        .map(|_| TcpStream::connect(&served.address).expect("connect"))
        .collect();
    let (status, answer) = served.raw("GET /f HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert_eq!(status, 503, "{answer}");
    assert!(answer.contains("too many connections"), "{answer}");
    // The held ones send nothing: after the timeout they are dropped and the server answers.
    for mut stream in held {
        let mut buffer = Vec::new();
        stream
            .set_read_timeout(Some(crate::PATIENCE))
            .expect("timeout");
        let _ = stream.read_to_end(&mut buffer);
    }
    let (status, answer) = served.raw("GET /f HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert_eq!(status, 200, "{answer}");
}
