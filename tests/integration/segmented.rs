//! One file over several connections, against the loopback server: byte-exact files, the
//! connections counted at the server, and servers that do not serve ranges or disagree about
//! the file.

use crate::server::{Behaviour, TestServer};
use crate::{Harness, content, hidden_files, sha256};
use ferry::job::{JobState, Priority};

const MIB: usize = 1 << 20;

/// Downloads `path` of `server` with a FOREGROUND job (8 connections by default) and completes
/// it; returns the file's bytes.
async fn fetch(server: &TestServer, path: &str) -> Vec<u8> {
    let mut h = Harness::new().await;
    let id = h
        .start(Priority::Foreground, &[(&server.url(path), "f.bin")])
        .await;
    let job = h.wait_state(id, JobState::Transferred).await;
    assert!(
        job.files[0].segments.is_empty(),
        "a transferred file is whole"
    );
    h.engine.complete(id).await.expect("complete");
    assert!(hidden_files(&h.out_dir()).is_empty(), "no temp file left");
    std::fs::read(h.out("f.bin")).expect("file")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_is_split_over_several_connections_and_byte_exact() {
    let server = TestServer::start().await;
    let data = content(6 * MIB, 70);
    server.put("/big.bin", data.clone());
    // 2 MiB/s per connection: one connection would take 3 s.
    server.behave("/big.bin", Behaviour::rate(2 * MIB as u64));
    let saved = fetch(&server, "/big.bin").await;
    assert_eq!(sha256(&saved), sha256(&data));
    let requests = server.requests("/big.bin");
    let connections = server.connections("/big.bin");
    assert!(
        connections.len() >= 3,
        "several connections: {connections:?}"
    );
    assert!(server.most_sending_at_once() >= 3, "at the same time");
    assert!(requests.len() <= 8 + 8, "{} requests", requests.len());
    // The first request asks for the whole file; every piece after it is tied to its version.
    assert_eq!(requests[0].range, None);
    for request in &requests[1..] {
        assert!(request.range.is_some(), "{request:?}");
        assert_eq!(
            request.if_range.as_deref(),
            Some("\"v6291456\""),
            "{request:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_without_range_support_gets_one_connection() {
    let server = TestServer::start().await;
    let data = content(4 * MIB, 71);
    server.put("/plain.bin", data.clone());
    server.behave(
        "/plain.bin",
        Behaviour {
            ignore_range: true,
            no_accept_ranges: true,
            rate: Some(8 * MIB as u64),
            ..Default::default()
        },
    );
    let saved = fetch(&server, "/plain.bin").await;
    assert_eq!(sha256(&saved), sha256(&data));
    assert_eq!(server.requests("/plain.bin").len(), 1);
    assert_eq!(server.most_sending_at_once(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_advertises_ranges_but_ignores_them_keeps_one_connection() {
    let server = TestServer::start().await;
    let data = content(4 * MIB, 72);
    server.put("/liar.bin", data.clone());
    server.behave(
        "/liar.bin",
        Behaviour {
            ignore_range: true,
            rate: Some(8 * MIB as u64),
            ..Default::default()
        },
    );
    let saved = fetch(&server, "/liar.bin").await;
    assert_eq!(sha256(&saved), sha256(&data));
    // The first step's whole-file answers stop the ramp (1 + 3 connections), their pieces go
    // back to the first connection, which goes on with its own answer: no restart.
    let requests = server.requests("/liar.bin");
    assert!(requests.len() <= 4, "{requests:?}");
    assert_eq!(requests.iter().filter(|r| r.range.is_none()).count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_that_changes_between_connections_restarts_on_one_connection() {
    let server = TestServer::start().await;
    let old = content(4 * MIB, 73);
    let new = content(4 * MIB, 74);
    server.put("/moving.bin", old);
    server.behave(
        "/moving.bin",
        Behaviour {
            rate: Some(4 * MIB as u64),
            switch_to: Some((new.clone().into(), "\"w2\"".into())),
            ..Default::default()
        },
    );
    let saved = fetch(&server, "/moving.bin").await;
    assert_eq!(sha256(&saved), sha256(&new), "the new version, whole");
    let requests = server.requests("/moving.bin");
    // The second connection's If-Range no longer matches: the server answers the new file
    // (200); Ferry starts again from byte 0, on one connection.
    let restart = requests
        .iter()
        .rposition(|r| r.range.is_none())
        .expect("a request without Range");
    assert!(restart > 0, "the file was fetched again: {requests:?}");
    assert_eq!(
        restart,
        requests.len() - 1,
        "on one connection: {requests:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partial_answer_of_another_version_is_never_written() {
    let server = TestServer::start().await;
    let file = content(4 * MIB, 75);
    let other = vec![0xAA; 4 * MIB];
    server.put("/split-brain.bin", file.clone());
    // Whole-file answers are one version; ranges come from another, whatever If-Range says (as
    // from servers behind one name that do not agree).
    server.behave(
        "/split-brain.bin",
        Behaviour {
            rate: Some(4 * MIB as u64),
            ranges_from: Some((other.into(), "\"other\"".into())),
            ..Default::default()
        },
    );
    let saved = fetch(&server, "/split-brain.bin").await;
    assert_eq!(sha256(&saved), sha256(&file), "one version, never a splice");
    assert!(
        !saved.windows(4096).any(|w| w.iter().all(|b| *b == 0xAA)),
        "no byte of the other version"
    );
    let requests = server.requests("/split-brain.bin");
    // The first step's answers disagree; the file is fetched again whole, on one connection.
    let ranged = requests.iter().filter(|r| r.range.is_some()).count();
    assert!(
        ranged <= 3,
        "no connection after the first step: {requests:?}"
    );
    // The refetch comes after the ranges. (Not necessarily last: a first-step connection dropped
    // at the restart may have handed its request to the client already, which then still
    // arrives; its answer is thrown away, as the checks above show.)
    let restart = requests.iter().rposition(|r| r.range.is_none());
    let first_range = requests.iter().position(|r| r.range.is_some());
    assert!(
        restart.zip(first_range).is_some_and(|(r, f)| r > f),
        "{requests:?}"
    );
}
