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
}

impl Served {
    fn start(dir: &Path) -> Served {
        let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin!("ferry"))
            .args(["serve", "--listen", "127.0.0.1:0"])
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn ferry serve");
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

    // Several ranges: multipart, in the order asked, overlaps kept.
    let many = http
        .get(&url)
        .header("Range", "bytes=500-509,0-4,505-514")
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
            ("505-514/1000000".to_string(), data[505..515].to_vec()),
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
    // Uploads are not there yet, and say so the BITS way.
    let bits = http
        .request(
            reqwest::Method::from_bytes(b"BITS_POST").expect("method"),
            &url,
        )
        .header("BITS-Packet-Type", "Ping")
        .send()
        .await
        .expect("bits");
    assert_eq!(bits.status(), 501);
    assert_eq!(header(&bits, "bits-error-code"), "0x80070005");
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
