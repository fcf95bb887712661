//! Table-driven tests of the job model: every (state, event) pair, and every legality rule.

use super::*;
use chrono::TimeZone;
use std::path::PathBuf;
use std::time::Duration;

fn t0() -> Timestamp {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
        .single()
        .expect("valid date")
}

fn at(secs: u64) -> Timestamp {
    later(t0(), Duration::from_secs(secs))
}

fn new_file(name: &str) -> NewFile {
    NewFile {
        remote_url: format!("http://127.0.0.1/{name}"),
        local_path: format!("/tmp/ferry-model/{name}").into(),
        ranges: None,
        checksum: None,
    }
}

fn add(name: &str) -> Event {
    add_file(new_file(name))
}

/// AddFiles of one file, with the default quotas.
fn add_file(file: NewFile) -> Event {
    Event::AddFiles {
        files: vec![file],
        limits: Limits::default(),
    }
}

fn transient() -> Failure {
    Failure {
        error: JobError::new(ErrorContext::RemoteFile, ErrorCode::Http(503), Some(0)),
        class: ErrorClass::Transient,
        retry_after: None,
    }
}

fn fatal() -> Failure {
    Failure {
        error: JobError::new(ErrorContext::RemoteFile, ErrorCode::Http(404), Some(0)),
        class: ErrorClass::Fatal,
        retry_after: None,
    }
}

fn ok(job: &mut Job, event: Event) -> Vec<Effect> {
    let state = job.state;
    apply(job, event.clone(), t0()).unwrap_or_else(|e| panic!("{event:?} in {state}: {e}"))
}

/// The code of a call that must be refused.
fn refused(job: &mut Job, event: Event) -> ErrorCode {
    let state = job.state;
    match apply(job, event.clone(), t0()) {
        Ok(_) => panic!("{event:?} in {state} was accepted"),
        Err(e) => e.code,
    }
}

fn empty_job(job_type: JobType) -> Job {
    Job::new(
        JobId::new_random(),
        job_type,
        "test",
        "alice",
        &JobDefaults::default(),
        t0(),
    )
    .expect("valid job")
}

/// A one-file job brought into `state` through legal events only.
/// A QUEUED download with this no-progress timeout and minimum retry delay, in seconds.
fn queued_with_timers(no_progress_timeout: u64, retry_delay: u64) -> Job {
    let mut job = job_in(JobState::Queued, JobType::Download);
    let timeout = Duration::from_secs(no_progress_timeout);
    ok(
        &mut job,
        Event::Set(PropertyChange::NoProgressTimeout(timeout)),
    );
    let delay = Duration::from_secs(retry_delay);
    ok(
        &mut job,
        Event::Set(PropertyChange::MinimumRetryDelay(delay)),
    );
    job
}

fn job_in(state: JobState, job_type: JobType) -> Job {
    use JobState::*;
    let mut job = empty_job(job_type);
    ok(&mut job, add("a.bin"));
    let path: &[Event] = match state {
        Suspended => &[],
        Queued => &[Event::Resume],
        Connecting => &[Event::Resume, Event::Start],
        Transferring => &[Event::Resume, Event::Start, Event::Connected],
        TransientError => &[Event::Resume, Event::Start, Event::Failed(transient())],
        Error => &[Event::Resume, Event::Start, Event::Failed(fatal())],
        Transferred | Acknowledged => &[
            Event::Resume,
            Event::Start,
            Event::Connected,
            Event::Progress {
                file: 0,
                transferred: 10,
                checkpointed: 10,
            },
            Event::FileTransferred { file: 0 },
        ],
        Cancelled => &[Event::Cancel],
    };
    let mut path = path.to_vec();
    if job_type == JobType::UploadReply && matches!(state, Transferred | Acknowledged) {
        // The reply comes after the upload: no reply here, so an empty one.
        path.insert(path.len() - 1, Event::ReplyLocated { url: None });
        path.push(Event::FileTransferred { file: REPLY_FILE });
    }
    for event in path {
        ok(&mut job, event);
    }
    if state == Acknowledged {
        ok(&mut job, Event::Complete);
        ok(
            &mut job,
            Event::CommitFinished(CommitReport {
                committed: vec![0],
                failed: vec![],
            }),
        );
    }
    assert_eq!(job.state, state);
    job
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Expect {
    To(JobState),
    Same,
    Err(ErrorCode),
}

#[test]
fn every_state_event_pair() {
    use Expect::{Err as E, Same as S, To};
    use JobState::*;
    let inv = E(ErrorCode::InvalidState);
    let nimpl = E(ErrorCode::NotImpl);
    // Columns: QUEUED, CONNECTING, TRANSFERRING, SUSPENDED, ERROR, TRANSIENT_ERROR, TRANSFERRED,
    //          ACKNOWLEDGED, CANCELLED (the order of JobState::ALL).
    let table: Vec<(&str, Event, [Expect; 9])> = vec![
        (
            "Resume",
            Event::Resume,
            [S, S, S, To(Queued), To(Queued), To(Queued), S, inv, inv],
        ),
        (
            "Suspend",
            Event::Suspend,
            [To(Suspended); 7]
                .iter()
                .copied()
                .chain([inv, inv])
                .collect::<Vec<_>>()
                .try_into()
                .expect("9"),
        ),
        (
            "Cancel",
            Event::Cancel,
            [
                To(Cancelled),
                To(Cancelled),
                To(Cancelled),
                To(Cancelled),
                To(Cancelled),
                To(Cancelled),
                To(Cancelled),
                inv,
                inv,
            ],
        ),
        ("Complete", Event::Complete, [S, S, S, S, S, S, S, inv, inv]),
        (
            "CommitFinished",
            Event::CommitFinished(CommitReport::default()),
            [
                To(Acknowledged),
                To(Acknowledged),
                To(Acknowledged),
                To(Acknowledged),
                To(Acknowledged),
                To(Acknowledged),
                To(Acknowledged),
                inv,
                inv,
            ],
        ),
        ("AddFiles", add("b.bin"), [S, S, S, S, S, S, S, inv, inv]),
        (
            "SetDisplayName",
            Event::Set(PropertyChange::DisplayName("x".into())),
            [S, S, S, S, S, S, S, inv, inv],
        ),
        (
            "Start",
            Event::Start,
            [To(Connecting), inv, inv, inv, inv, inv, inv, inv, inv],
        ),
        (
            "Connected",
            Event::Connected,
            [inv, To(Transferring), S, inv, inv, inv, inv, inv, inv],
        ),
        (
            "FileInfo",
            Event::FileInfo {
                file: 0,
                bytes_total: Some(10),
                validators: Validators::default(),
            },
            [inv, S, S, inv, inv, inv, inv, inv, inv],
        ),
        (
            "FileRestarted",
            Event::FileRestarted { file: 0 },
            [inv, S, S, inv, inv, inv, inv, inv, inv],
        ),
        (
            "Progress",
            Event::Progress {
                file: 0,
                transferred: 5,
                checkpointed: 5,
            },
            [inv, S, S, inv, inv, inv, inv, inv, inv],
        ),
        (
            "FileTransferred",
            Event::FileTransferred { file: 0 },
            [
                inv,
                To(Transferred),
                To(Transferred),
                inv,
                inv,
                inv,
                inv,
                inv,
                inv,
            ],
        ),
        (
            "Yield",
            Event::Yield,
            [inv, To(Queued), To(Queued), inv, inv, inv, inv, inv, inv],
        ),
        (
            "Failed transient",
            Event::Failed(transient()),
            [
                inv,
                To(TransientError),
                To(TransientError),
                inv,
                inv,
                inv,
                inv,
                inv,
                inv,
            ],
        ),
        (
            "Failed fatal",
            Event::Failed(fatal()),
            [inv, To(Error), To(Error), inv, inv, inv, inv, inv, inv],
        ),
        (
            "Tick",
            Event::Tick(TimePolicy::default()),
            [S, S, S, S, S, S, S, inv, inv],
        ),
        (
            "NetworkLost",
            Event::NetworkLost,
            [
                To(TransientError),
                To(TransientError),
                To(TransientError),
                S,
                S,
                S,
                S,
                inv,
                inv,
            ],
        ),
        (
            "NetworkRestored",
            Event::NetworkRestored,
            [S, S, S, S, S, To(Queued), S, inv, inv],
        ),
        (
            "PolicyBlocked",
            Event::PolicyBlocked,
            [
                To(TransientError),
                To(TransientError),
                To(TransientError),
                S,
                S,
                S,
                S,
                inv,
                inv,
            ],
        ),
        (
            // The table's TRANSIENT_ERROR job failed on its own: the policy did not hold it.
            "PolicyLifted",
            Event::PolicyLifted,
            [S, S, S, S, S, S, S, inv, inv],
        ),
        (
            "Recovered",
            Event::Recovered,
            [S, To(Queued), To(Queued), S, S, S, S, inv, inv],
        ),
        (
            "UploadSession",
            Event::UploadSession(Some("{s}".into())),
            [S, S, S, S, S, S, S, inv, inv],
        ),
        (
            "UploadHost",
            Event::UploadHost(None),
            [S, S, S, S, S, S, S, inv, inv],
        ),
        (
            // A running transfer moves to the new URL at once: back to QUEUED.
            "ReplaceRemotePrefix",
            Event::Set(PropertyChange::ReplaceRemotePrefix {
                old: "http://127.0.0.1/".into(),
                new: "http://127.0.0.2/".into(),
            }),
            [S, To(Queued), To(Queued), S, S, S, S, inv, inv],
        ),
        (
            "ReplyLocated",
            Event::ReplyLocated { url: None },
            [inv, nimpl, nimpl, inv, inv, inv, inv, inv, inv],
        ),
    ];
    let mut checked = 0;
    for job_type in [JobType::Download, JobType::Upload] {
        for (name, event, row) in &table {
            for (state, expect) in JobState::ALL.iter().zip(row) {
                let mut expect = *expect;
                // Upload rules differ only for Complete/AddFiles (checked in their own tests).
                if job_type == JobType::Upload {
                    match (*name, *state) {
                        ("Complete", s) if !s.is_final() && s != Transferred => {
                            expect = E(ErrorCode::InvalidState)
                        }
                        ("AddFiles", s) if !s.is_final() => expect = E(ErrorCode::TooManyFiles),
                        ("ReplaceRemotePrefix", s) if !s.is_final() => {
                            expect = E(ErrorCode::NotImpl)
                        }
                        _ => {}
                    }
                } else if matches!(*name, "UploadSession" | "UploadHost") && !state.is_final() {
                    expect = E(ErrorCode::NotImpl); // downloads have no upload session
                }
                let mut job = job_in(*state, job_type);
                let before = job.clone();
                let result = apply(&mut job, event.clone(), at(1));
                let what = format!("{name} on {:?} job in {state}", job_type);
                match (expect, result) {
                    (To(to), Ok(_)) => assert_eq!(job.state, to, "{what}"),
                    (S, Ok(_)) => assert_eq!(job.state, *state, "{what}"),
                    (E(code), Err(e)) => {
                        assert_eq!(e.code, code, "{what}");
                        assert_eq!(job, before, "{what}: a failed call must not change the job");
                    }
                    (expect, result) => panic!("{what}: expected {expect:?}, got {result:?}"),
                }
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 2 * 26 * 9);
}

#[test]
fn final_states_are_never_left() {
    for state in [JobState::Acknowledged, JobState::Cancelled] {
        let mut job = job_in(state, JobType::Download);
        for event in [
            Event::Resume,
            Event::Suspend,
            Event::Cancel,
            Event::Complete,
            Event::Start,
        ] {
            let err = apply(&mut job, event, at(5)).expect_err("final state");
            assert_eq!(err.code, ErrorCode::InvalidState);
            assert_eq!(job.state, state);
        }
    }
}

#[test]
fn resume_without_files_is_bg_e_empty() {
    let mut job = empty_job(JobType::Download);
    let err = apply(&mut job, Event::Resume, t0()).expect_err("empty");
    assert_eq!(err.code, ErrorCode::Empty);
    assert_eq!(err.code.hresult(), 0x8020_0003);
    assert_eq!(job.state, JobState::Suspended);
}

#[test]
fn upload_jobs_take_one_file_and_no_ranges() {
    let mut job = empty_job(JobType::UploadReply);
    let two = Event::AddFiles {
        files: vec![new_file("a"), new_file("b")],
        limits: Limits::default(),
    };
    assert_eq!(
        apply(&mut job, two, t0()).expect_err("two").code,
        ErrorCode::TooManyFiles
    );
    let mut ranged = new_file("a");
    ranged.ranges = Some(vec![FileRange {
        offset: 0,
        length: 10,
    }]);
    let event = add_file(ranged);
    assert_eq!(
        apply(&mut job, event, t0()).expect_err("ranges").code,
        ErrorCode::NotImpl
    );
    assert!(job.files.is_empty());
}

#[test]
fn upload_complete_only_when_transferred() {
    let mut job = job_in(JobState::Transferred, JobType::Upload);
    let effects = ok(&mut job, Event::Complete);
    assert!(matches!(effects.last(), Some(Effect::Commit(_))));
    ok(
        &mut job,
        Event::CommitFinished(CommitReport {
            committed: vec![0],
            failed: vec![],
        }),
    );
    assert_eq!(job.state, JobState::Acknowledged);
}

#[test]
fn partial_complete_commits_only_transferred_files() {
    let mut job = job_in(JobState::Transferring, JobType::Download);
    ok(&mut job, add("b.bin"));
    ok(&mut job, add("c.bin"));
    ok(
        &mut job,
        Event::Progress {
            file: 0,
            transferred: 4,
            checkpointed: 4,
        },
    );
    ok(&mut job, Event::FileTransferred { file: 0 });
    assert_eq!(job.state, JobState::Transferring);
    let effects = ok(&mut job, Event::Complete);
    assert_eq!(effects[0], Effect::StopTransfer);
    assert_eq!(
        effects[1],
        Effect::Commit(CompletePlan {
            commit: vec![0],
            discard: vec![1, 2],
            interrupted: vec![]
        })
    );
}

#[test]
fn failed_rename_keeps_the_job_transferred() {
    let mut job = job_in(JobState::Transferred, JobType::Download);
    ok(&mut job, Event::Complete);
    let failure = JobError::new(ErrorContext::LocalFile, ErrorCode::FileExists, Some(0));
    ok(
        &mut job,
        Event::CommitFinished(CommitReport {
            committed: vec![],
            failed: vec![(0, failure)],
        }),
    );
    assert_eq!(job.state, JobState::Transferred); // T25
    assert!(!job.files[0].completed);
    // The user fixes the cause and completes again.
    let effects = ok(&mut job, Event::Complete);
    assert_eq!(
        effects,
        vec![Effect::Commit(CompletePlan {
            commit: vec![0],
            discard: vec![],
            interrupted: vec![]
        })]
    );
}

#[test]
fn an_interrupted_complete_is_remembered() {
    let mut job = job_in(JobState::Transferred, JobType::Download);
    ok(&mut job, Event::Complete);
    assert_eq!(
        job.committing,
        vec![0],
        "the intent is recorded before the renames"
    );
    // The engine stopped before CommitFinished; the next Complete knows what was under way.
    let effects = ok(&mut job, Event::Complete);
    assert_eq!(
        effects,
        vec![Effect::Commit(CompletePlan {
            commit: vec![0],
            discard: vec![],
            interrupted: vec![0]
        })]
    );
    ok(
        &mut job,
        Event::CommitFinished(CommitReport {
            committed: vec![0],
            failed: vec![],
        }),
    );
    assert!(job.committing.is_empty());
}

#[test]
fn zero_file_download_completes_vacuously() {
    let mut job = empty_job(JobType::Download);
    let effects = ok(&mut job, Event::Complete);
    assert_eq!(effects, vec![Effect::Commit(CompletePlan::default())]);
    ok(&mut job, Event::CommitFinished(CommitReport::default()));
    assert_eq!(job.state, JobState::Acknowledged);
}

#[test]
fn cancel_deletes_every_uncommitted_temp_file() {
    let mut job = job_in(JobState::Transferring, JobType::Download);
    ok(&mut job, add("b.bin"));
    let temps: Vec<_> = job.files.iter().map(|f| f.temp_path.clone()).collect();
    let effects = ok(&mut job, Event::Cancel);
    assert_eq!(
        effects,
        vec![Effect::StopTransfer, Effect::DeleteTempFiles(temps)]
    );
}

#[test]
fn temp_files_are_hidden_and_beside_the_destination() {
    let job = job_in(JobState::Suspended, JobType::Download);
    let temp = &job.files[0].temp_path;
    assert_eq!(temp.parent(), job.files[0].local_path.parent());
    let name = temp.file_name().and_then(|n| n.to_str()).expect("name");
    assert!(
        name.starts_with(".a.bin.") && name.ends_with(".ferry-part"),
        "{name}"
    );
}

#[test]
fn suspend_then_resume_of_a_transferred_job_needs_no_network() {
    let mut job = job_in(JobState::Transferred, JobType::Download);
    ok(&mut job, Event::Suspend);
    assert!(job.current_error().is_err());
    ok(&mut job, Event::Resume);
    assert_eq!(job.state, JobState::Queued);
    let effects = ok(&mut job, Event::Start);
    assert_eq!(job.state, JobState::Transferred);
    assert_eq!(effects, vec![Effect::Notify(Notification::JobTransferred)]);
}

#[test]
fn registering_on_a_job_already_there_is_told_at_once() {
    use crate::job::NotifyCommand;
    let command = || {
        PropertyChange::NotifyCommand(Some(NotifyCommand {
            program: "/bin/true".into(),
            args: vec!["true".into()],
        }))
    };
    let mut job = job_in(JobState::Transferred, JobType::Download);
    for change in [PropertyChange::NotifyFlags(0x1), command()] {
        let effects = ok(&mut job, Event::Set(change.clone()));
        assert_eq!(
            effects,
            vec![Effect::Notify(Notification::JobTransferred)],
            "{change:?}"
        );
    }
    let mut job = job_in(JobState::Error, JobType::Download);
    let error = job.current_error().expect("error").clone();
    let effects = ok(&mut job, Event::Set(PropertyChange::NotifyFlags(0x3)));
    assert_eq!(effects, vec![Effect::Notify(Notification::JobError(error))]);
    // Elsewhere, or when nothing is registered (clearing the command line), nothing is told.
    let mut job = job_in(JobState::Transferring, JobType::Download);
    assert!(ok(&mut job, Event::Set(command())).is_empty());
    let mut job = job_in(JobState::Transferred, JobType::Download);
    assert!(ok(&mut job, Event::Set(PropertyChange::NotifyCommand(None))).is_empty());
    assert!(
        ok(
            &mut job,
            Event::Set(PropertyChange::Description("d".into()))
        )
        .is_empty()
    );
}

#[test]
fn files_added_after_transfer_wait_for_resume() {
    let mut job = job_in(JobState::Transferred, JobType::Download);
    ok(&mut job, add("b.bin"));
    assert_eq!(job.state, JobState::Transferred);
    ok(&mut job, Event::Resume);
    assert_eq!(job.state, JobState::Queued);
}

#[test]
fn retry_timer_requeues_after_minimum_delay() {
    let mut job = job_in(JobState::Connecting, JobType::Download);
    apply(&mut job, Event::Failed(transient()), at(0)).expect("fail");
    assert_eq!(job.state, JobState::TransientError);
    assert_eq!(job.retry.next_retry_at, Some(at(600)));
    apply(&mut job, Event::Tick(TimePolicy::default()), at(599)).expect("tick");
    assert_eq!(job.state, JobState::TransientError);
    apply(&mut job, Event::Tick(TimePolicy::default()), at(600)).expect("tick");
    assert_eq!(job.state, JobState::Queued); // T11
}

#[test]
fn retry_backs_off_and_honours_retry_after() {
    let mut job = job_in(JobState::Queued, JobType::Download);
    ok(
        &mut job,
        Event::Set(PropertyChange::MinimumRetryDelay(Duration::from_secs(10))),
    );
    let mut delays = Vec::new();
    let mut now = 0;
    for _ in 0..4 {
        apply(&mut job, Event::Start, at(now)).expect("start");
        apply(&mut job, Event::Failed(transient()), at(now)).expect("fail");
        let next = job.retry.next_retry_at.expect("timer");
        delays.push((next - at(now)).num_seconds());
        now = (next - t0()).num_seconds() as u64;
        apply(&mut job, Event::Tick(TimePolicy::default()), at(now)).expect("tick");
    }
    assert_eq!(delays, vec![10, 20, 40, 80]);
    apply(&mut job, Event::Start, at(now)).expect("start");
    let mut failure = transient();
    failure.retry_after = Some(Duration::from_secs(5000));
    apply(&mut job, Event::Failed(failure), at(now)).expect("fail");
    assert_eq!(job.retry.next_retry_at, Some(at(now + 5000)));
}

#[test]
fn progress_resets_back_off_and_no_progress_timer() {
    let mut job = job_in(JobState::Connecting, JobType::Download);
    apply(&mut job, Event::Failed(transient()), at(0)).expect("fail");
    assert!(job.retry.no_progress_since.is_some());
    ok(&mut job, Event::Resume);
    ok(&mut job, Event::Start);
    ok(&mut job, Event::Connected);
    ok(
        &mut job,
        Event::Progress {
            file: 0,
            transferred: 1,
            checkpointed: 0,
        },
    );
    assert_eq!(job.retry, RetryState::default());
}

#[test]
fn no_progress_timeout_turns_transient_into_error() {
    let mut job = queued_with_timers(1000, 600);
    apply(&mut job, Event::Start, at(0)).expect("start");
    apply(&mut job, Event::Failed(transient()), at(0)).expect("fail");
    apply(&mut job, Event::Tick(TimePolicy::default()), at(600)).expect("tick");
    apply(&mut job, Event::Start, at(600)).expect("start");
    // Second failure: the next retry (1200, the plain delay) would land past the deadline
    // (1000). The job still waits out the timeout: ERROR at 1000, not at this failure (§4.2).
    apply(&mut job, Event::Failed(transient()), at(600)).expect("fail");
    assert_eq!(job.state, JobState::TransientError);
    let effects = apply(&mut job, Event::Tick(TimePolicy::default()), at(999)).expect("tick");
    assert_eq!(
        job.state,
        JobState::TransientError,
        "the timeout has not elapsed"
    );
    assert!(effects.is_empty(), "{effects:?}");
    let effects = apply(&mut job, Event::Tick(TimePolicy::default()), at(1000)).expect("tick");
    assert_eq!(job.state, JobState::Error); // T12
    assert!(
        matches!(
            effects.as_slice(),
            [Effect::Notify(Notification::JobError(_))]
        ),
        "{effects:?}"
    );
}

#[test]
fn retries_go_on_at_the_delay_until_the_no_progress_timeout_has_elapsed() {
    // The default retry delay (600 s) against a timeout of 1,500 s: retries at 600 and 1200,
    // ERROR at 1500 (the third retry, at 1800, would come too late).
    let mut job = queued_with_timers(1500, 600);
    apply(&mut job, Event::Start, at(0)).expect("start");
    apply(&mut job, Event::Failed(transient()), at(0)).expect("fail");
    for retry in [600, 1200] {
        apply(&mut job, Event::Tick(TimePolicy::default()), at(retry)).expect("tick");
        assert_eq!(job.state, JobState::Queued, "a retry at {retry} s");
        apply(&mut job, Event::Start, at(retry)).expect("start");
        apply(&mut job, Event::Failed(transient()), at(retry)).expect("fail");
        assert_eq!(
            job.state,
            JobState::TransientError,
            "after the retry at {retry} s"
        );
    }
    apply(&mut job, Event::Tick(TimePolicy::default()), at(1499)).expect("tick");
    assert_eq!(job.state, JobState::TransientError);
    apply(&mut job, Event::Tick(TimePolicy::default()), at(1500)).expect("tick");
    assert_eq!(job.state, JobState::Error); // T12
}

#[test]
fn no_progress_deadline_on_tick() {
    let mut job = queued_with_timers(1000, 600);
    apply(&mut job, Event::Start, at(0)).expect("start");
    apply(&mut job, Event::Failed(transient()), at(0)).expect("fail");
    ok(
        &mut job,
        Event::Set(PropertyChange::MinimumRetryDelay(Duration::from_secs(5000))),
    );
    // The retry is due at 600 but a tick at 1000 finds the no-progress deadline first.
    apply(&mut job, Event::Tick(TimePolicy::default()), at(1000)).expect("tick");
    assert_eq!(job.state, JobState::Error); // T12
    assert_eq!(
        job.current_error().expect("error").code,
        ErrorCode::Http(503)
    );
}

#[test]
fn retry_delay_longer_than_no_progress_timeout_is_an_error() {
    let mut job = job_in(JobState::Queued, JobType::Download);
    ok(
        &mut job,
        Event::Set(PropertyChange::NoProgressTimeout(Duration::from_secs(100))),
    );
    ok(&mut job, Event::Start);
    ok(&mut job, Event::Failed(transient()));
    assert_eq!(job.state, JobState::Error); // T13
}

#[test]
fn zero_no_progress_timeout_makes_every_error_fatal() {
    let mut job = job_in(JobState::Queued, JobType::Download);
    ok(
        &mut job,
        Event::Set(PropertyChange::NoProgressTimeout(Duration::ZERO)),
    );
    ok(&mut job, Event::Start);
    ok(&mut job, Event::Failed(transient()));
    assert_eq!(job.state, JobState::Error); // T34
}

#[test]
fn error_count_rules() {
    // A first failure while CONNECTING is not counted (§4.5)…
    let mut job = job_in(JobState::Connecting, JobType::Download);
    ok(&mut job, Event::Failed(transient()));
    assert_eq!(job.error_count, 0);
    // …a failed retry is,
    ok(&mut job, Event::Resume);
    ok(&mut job, Event::Start);
    job.retry.no_progress_since = Some(t0());
    ok(&mut job, Event::Failed(transient()));
    assert_eq!(job.error_count, 1);
    // …and so is every failure while TRANSFERRING,
    let mut job = job_in(JobState::Transferring, JobType::Download);
    ok(&mut job, Event::Failed(fatal()));
    assert_eq!(job.error_count, 1);
    // …but not a network loss.
    let mut job = job_in(JobState::Transferring, JobType::Download);
    ok(&mut job, Event::NetworkLost);
    assert_eq!(job.error_count, 0);
    assert_eq!(job.retry.next_retry_at, None);
    assert_eq!(
        job.current_error().expect("error").code,
        ErrorCode::NetworkDisconnected
    );
}

#[test]
fn the_bandwidth_policy_holds_background_jobs_without_counting_an_error() {
    // T28: a running or queued background job waits for the schedule, not for a timer.
    for state in [
        JobState::Queued,
        JobState::Connecting,
        JobState::Transferring,
    ] {
        let mut job = job_in(state, JobType::Download);
        job.priority = Priority::Low;
        let effects = ok(&mut job, Event::PolicyBlocked);
        assert_eq!(job.state, JobState::TransientError);
        assert_eq!(
            effects.contains(&Effect::StopTransfer),
            state.is_running(),
            "{state}"
        );
        assert!(job.is_blocked_by_policy());
        assert_eq!(job.error_count, 0, "not counted");
        assert_eq!(job.retry.next_retry_at, None, "no retry timer");
        let error = job.current_error().expect("error");
        assert_eq!(error.code, ErrorCode::BlockedByPolicy);
        assert_eq!(error.code.hresult(), 0x8020_003E);
        // Time in the window is not time without progress, nor a retry.
        job.retry.no_progress_since = Some(t0());
        let far = later(t0(), job.no_progress_timeout + Duration::from_secs(86_400));
        apply(&mut job, Event::Tick(TimePolicy::default()), far).expect("tick");
        assert_eq!(job.state, JobState::TransientError);
        ok(&mut job, Event::PolicyLifted);
        assert_eq!(job.state, JobState::Queued);
        assert_eq!(job.error_count, 0);
    }
    // FOREGROUND is never held.
    let mut job = job_in(JobState::Transferring, JobType::Download);
    job.priority = Priority::Foreground;
    ok(&mut job, Event::PolicyBlocked);
    assert_eq!(job.state, JobState::Transferring);
    // Lifting the policy does not release a job that failed on its own: its retry timer does.
    let mut job = job_in(JobState::Transferring, JobType::Download);
    ok(&mut job, Event::Failed(transient()));
    let retry = job.retry.next_retry_at;
    ok(&mut job, Event::PolicyLifted);
    assert_eq!(job.state, JobState::TransientError);
    assert_eq!(job.retry.next_retry_at, retry);
    // A suspended job stays suspended.
    let mut job = job_in(JobState::Suspended, JobType::Download);
    ok(&mut job, Event::PolicyBlocked);
    assert_eq!(job.state, JobState::Suspended);
}

#[test]
fn error_object_is_available_only_in_error_states() {
    let mut job = job_in(JobState::Transferring, JobType::Download);
    ok(&mut job, Event::Failed(transient()));
    assert_eq!(
        job.current_error().expect("available").code,
        ErrorCode::Http(503)
    );
    ok(&mut job, Event::Resume);
    assert_eq!(
        job.current_error().expect_err("queued").code,
        ErrorCode::ErrorInformationUnavailable
    );
    ok(&mut job, Event::Start);
    ok(&mut job, Event::Connected);
    assert!(
        job.error.is_none(),
        "entering TRANSFERRING clears the error object"
    );
}

#[test]
fn max_download_time_counts_only_running_time() {
    let mut job = job_in(JobState::Suspended, JobType::Download);
    ok(
        &mut job,
        Event::Set(PropertyChange::MaxDownloadTime(Duration::from_secs(100))),
    );
    apply(&mut job, Event::Resume, at(0)).expect("resume");
    apply(&mut job, Event::Start, at(1000)).expect("start"); // queued time is not counted
    apply(&mut job, Event::Connected, at(1000)).expect("connected");
    apply(&mut job, Event::Yield, at(1060)).expect("yield");
    apply(&mut job, Event::Start, at(5000)).expect("start");
    apply(&mut job, Event::Tick(TimePolicy::default()), at(5039)).expect("tick");
    assert_eq!(job.state, JobState::Connecting);
    apply(&mut job, Event::Tick(TimePolicy::default()), at(5041)).expect("tick");
    assert_eq!(job.state, JobState::Error); // T27
    assert_eq!(
        job.error.as_ref().expect("error").code,
        ErrorCode::MaxDownloadTimeout
    );
    // Resume resets the elapsed time.
    apply(&mut job, Event::Resume, at(5042)).expect("resume");
    assert_eq!(job.download_clock.elapsed(at(5042)), Duration::ZERO);
}

#[test]
fn inactivity_warning_then_cancel() {
    let policy = TimePolicy {
        inactivity_timeout: Duration::from_secs(90 * 86_400),
        warning_window: Duration::from_secs(7 * 86_400),
    };
    let mut job = job_in(JobState::Transferred, JobType::Download);
    let quiet = apply(&mut job, Event::Tick(policy), at(82 * 86_400)).expect("tick");
    assert!(quiet.is_empty());
    let effects = apply(&mut job, Event::Tick(policy), at(83 * 86_400)).expect("tick");
    assert_eq!(
        effects,
        vec![Effect::Notify(Notification::InactivityWarning {
            deadline: at(90 * 86_400)
        })]
    );
    assert_eq!(job.times.modified, t0(), "a warning is not activity");
    let again = apply(&mut job, Event::Tick(policy), at(84 * 86_400)).expect("tick");
    assert!(again.is_empty(), "warned once per idle period");
    let effects = apply(&mut job, Event::Tick(policy), at(90 * 86_400)).expect("tick");
    assert_eq!(job.state, JobState::Cancelled); // T26
    assert!(effects.contains(&Effect::Notify(Notification::InactivityCancelled)));
    assert!(matches!(effects[0], Effect::DeleteTempFiles(_)));
}

#[test]
fn activity_resets_the_inactivity_timer() {
    let policy = TimePolicy::default();
    let mut job = job_in(JobState::Error, JobType::Download);
    apply(&mut job, Event::Tick(policy), at(85 * 86_400)).expect("tick");
    assert!(job.inactivity_warned);
    apply(&mut job, Event::Set(PropertyChange::Touch), at(86 * 86_400)).expect("touch");
    assert!(!job.inactivity_warned);
    apply(&mut job, Event::Tick(policy), at(100 * 86_400)).expect("tick");
    assert_eq!(job.state, JobState::Error);
}

#[test]
fn quotas_at_create_and_add() {
    let limits = Limits {
        jobs_per_user: 2,
        jobs_per_machine: 3,
        files_per_job: 2,
        ranges_per_file: 2,
        exempt: false,
    };
    let mine = [empty_job(JobType::Download), empty_job(JobType::Download)];
    let err = check_create_quota(mine.iter(), "alice", &limits, 0).expect_err("per user");
    assert_eq!(err.code, ErrorCode::TooManyJobsPerUser);
    assert!(check_create_quota(mine.iter(), "bob", &limits, 0).is_ok());
    // Other services' jobs (the machine registry) count toward the machine only.
    let err = check_create_quota(mine.iter(), "bob", &limits, 1).expect_err("per machine");
    assert_eq!(err.code, ErrorCode::TooManyJobsPerMachine);
    assert!(
        err.message.contains("3 jobs, 1 of them other users'"),
        "{}",
        err.message
    );
    assert!(check_create_quota([].iter(), "bob", &limits, 2).is_ok());
    let mut others = mine.to_vec();
    others.push(empty_job(JobType::Download));
    others[2].owner = "carol".into();
    let err = check_create_quota(others.iter(), "bob", &limits, 0).expect_err("per machine");
    assert_eq!(err.code, ErrorCode::TooManyJobsPerMachine);
    let mut finished = others.clone();
    finished[0].state = JobState::Cancelled;
    assert!(
        check_create_quota(finished.iter(), "bob", &limits, 0).is_ok(),
        "final jobs do not count"
    );
    let exempt = Limits {
        exempt: true,
        ..limits
    };
    assert!(check_create_quota(others.iter(), "bob", &exempt, 300).is_ok());

    let mut job = empty_job(JobType::Download);
    let three = Event::AddFiles {
        files: vec![new_file("a"), new_file("b"), new_file("c")],
        limits,
    };
    assert_eq!(
        apply(&mut job, three.clone(), t0())
            .expect_err("files")
            .code,
        ErrorCode::TooManyFilesInJob
    );
    assert!(job.files.is_empty(), "all or nothing");
    let Event::AddFiles { files, .. } = three else {
        unreachable!()
    };
    apply(
        &mut job,
        Event::AddFiles {
            files,
            limits: exempt,
        },
        t0(),
    )
    .expect("exempt");

    let mut ranged = new_file("r");
    ranged.ranges = Some(vec![
        FileRange {
            offset: 0,
            length: 1,
        },
        FileRange {
            offset: 5,
            length: 1,
        },
        FileRange {
            offset: 9,
            length: 1,
        },
    ]);
    let mut job = empty_job(JobType::Download);
    let event = Event::AddFiles {
        files: vec![ranged],
        limits,
    };
    assert_eq!(
        apply(&mut job, event, t0()).expect_err("ranges").code,
        ErrorCode::TooManyRangesInFile
    );
}

#[test]
fn range_rules() {
    let r = |offset, length| FileRange { offset, length };
    assert!(validate_ranges(&[r(100, 100), r(900, 100), r(400, 100)]).is_ok());
    assert!(validate_ranges(&[r(0, 100), r(5000, LENGTH_TO_EOF)]).is_ok());
    assert_eq!(
        validate_ranges(&[]).expect_err("none").code,
        ErrorCode::InvalidArg
    );
    assert_eq!(
        validate_ranges(&[r(0, 10), r(5, 10)])
            .expect_err("overlap")
            .code,
        ErrorCode::OverlappingRanges
    );
    assert_eq!(
        validate_ranges(&[r(5, 10), r(5, 10)])
            .expect_err("dup")
            .code,
        ErrorCode::OverlappingRanges
    );
    assert_eq!(
        validate_ranges(&[r(5, 0)]).expect_err("zero").code,
        ErrorCode::InvalidRange
    );
    assert_eq!(
        validate_ranges(&[r(LENGTH_TO_EOF, 1)])
            .expect_err("eof")
            .code,
        ErrorCode::InvalidRange
    );
    // A range whose end does not fit in 64 bits (defect: not checked before).
    let overflow = validate_ranges(&[r(u64::MAX - 10, 11)]).expect_err("overflow");
    assert_eq!(overflow.code, ErrorCode::InvalidRange);
    assert!(overflow.message.contains("eof"), "{}", overflow.message);
    assert!(validate_ranges(&[r(u64::MAX - 10, 10)]).is_ok());
    // bitsadmin: `100:0,100:5` fails (same offset), as does `100:5,100:0`, both as overlaps.
    assert_eq!(
        validate_ranges(&[r(100, 0), r(100, 5)])
            .expect_err("same offset")
            .code,
        ErrorCode::OverlappingRanges
    );
    assert_eq!(
        FileRange::parse_list("0:100,2000:100,5000:eof").expect("parse"),
        vec![r(0, 100), r(2000, 100), r(5000, LENGTH_TO_EOF)]
    );
    assert_eq!(
        FileRange::parse_list("0-100").expect_err("syntax").code,
        ErrorCode::InvalidArg
    );
    // The local size of a ranged file is the sum of its ranges.
    let mut job = empty_job(JobType::Download);
    let mut file = new_file("r");
    file.ranges = Some(vec![r(100, 100), r(900, 100), r(400, 100)]);
    ok(&mut job, add_file(file));
    assert_eq!(job.files[0].bytes_total, Some(300));
}

#[test]
fn property_rules() {
    let mut job = job_in(JobState::Suspended, JobType::Download);
    let long = "x".repeat(257);
    assert_eq!(
        refused(&mut job, Event::Set(PropertyChange::DisplayName(long))),
        ErrorCode::StringTooLong
    );
    assert_eq!(
        refused(
            &mut job,
            Event::Set(PropertyChange::Description("d".repeat(1025)))
        ),
        ErrorCode::StringTooLong
    );
    assert_eq!(
        refused(&mut job, Event::Set(PropertyChange::NotifyFlags(0x40))),
        ErrorCode::NotImpl
    );
    ok(
        &mut job,
        Event::Set(PropertyChange::MinimumRetryDelay(Duration::from_secs(1))),
    );
    assert_eq!(
        job.minimum_retry_delay,
        Duration::from_secs(5),
        "floor of 5 s"
    );
    let override_without_list = ProxySettings {
        usage: ProxyUsage::Override,
        list: None,
        bypass: None,
    };
    assert_eq!(
        refused(
            &mut job,
            Event::Set(PropertyChange::Proxy(override_without_list))
        ),
        ErrorCode::InvalidArg
    );
    let relative = NotifyCommand {
        program: "notify-send".into(),
        args: vec![],
    };
    assert_eq!(
        refused(
            &mut job,
            Event::Set(PropertyChange::NotifyCommand(Some(relative)))
        ),
        ErrorCode::InvalidArg
    );
    let bad_header = PropertyChange::CustomHeaders(vec![("X-A".into(), "1\r\nX-B: 2".into())]);
    assert_eq!(
        apply(&mut job, Event::Set(bad_header), t0())
            .expect_err("header")
            .code,
        ErrorCode::InvalidArg
    );
    ok(&mut job, Event::Set(PropertyChange::DynamicContent(true)));
    ok(&mut job, Event::Resume);
    assert_eq!(
        refused(&mut job, Event::Set(PropertyChange::DynamicContent(false))),
        ErrorCode::InvalidState
    );
    let mut upload = empty_job(JobType::Upload);
    assert_eq!(
        refused(
            &mut upload,
            Event::Set(PropertyChange::DynamicContent(true))
        ),
        ErrorCode::NotImpl
    );
}

#[test]
fn invalid_file_names_are_refused() {
    let mut job = empty_job(JobType::Download);
    for (url, local) in [
        ("ftp://127.0.0.1/a", "/tmp/a"),
        ("not a url", "/tmp/a"),
        ("http://127.0.0.1/a", "relative/a"),
    ] {
        let file = NewFile {
            remote_url: url.into(),
            local_path: local.into(),
            ranges: None,
            checksum: None,
        };
        assert_eq!(
            refused(&mut job, add_file(file)),
            ErrorCode::InvalidArg,
            "{url} {local}"
        );
    }
    let long = format!("http://127.0.0.1/{}", "a".repeat(2200));
    let file = NewFile {
        remote_url: long,
        local_path: "/tmp/a".into(),
        ranges: None,
        checksum: None,
    };
    assert_eq!(refused(&mut job, add_file(file)), ErrorCode::StringTooLong);
}

#[test]
fn recovery_rewinds_to_the_checkpoint() {
    let mut job = job_in(JobState::Transferring, JobType::Download);
    ok(
        &mut job,
        Event::Progress {
            file: 0,
            transferred: 900,
            checkpointed: 512,
        },
    );
    ok(&mut job, Event::Recovered);
    assert_eq!(job.state, JobState::Queued);
    assert_eq!(job.files[0].bytes_transferred, 512);
}

#[test]
fn file_restart_resets_progress() {
    let mut job = job_in(JobState::Transferring, JobType::Download);
    ok(
        &mut job,
        Event::Progress {
            file: 0,
            transferred: 900,
            checkpointed: 900,
        },
    );
    ok(&mut job, Event::FileRestarted { file: 0 });
    assert_eq!(job.files[0].bytes_transferred, 0);
    assert_eq!(job.state, JobState::Transferring); // T30
}

#[test]
fn progress_reports_unknown_size_until_all_sizes_known() {
    let mut job = job_in(JobState::Transferring, JobType::Download);
    ok(&mut job, add("b.bin"));
    ok(
        &mut job,
        Event::FileInfo {
            file: 0,
            bytes_total: Some(10),
            validators: Validators::default(),
        },
    );
    assert_eq!(job.progress().bytes_total, None);
    ok(
        &mut job,
        Event::FileInfo {
            file: 1,
            bytes_total: Some(5),
            validators: Validators::default(),
        },
    );
    assert_eq!(job.progress().bytes_total, Some(15));
    assert_eq!(job.progress().files_total, 2);
}

#[test]
fn modification_time_tracks_every_change() {
    let mut job = job_in(JobState::Suspended, JobType::Download);
    apply(
        &mut job,
        Event::Set(PropertyChange::Description("d".into())),
        at(50),
    )
    .expect("set");
    assert_eq!(job.times.modified, at(50));
    apply(&mut job, Event::Tick(TimePolicy::default()), at(60)).expect("tick");
    assert_eq!(
        job.times.modified,
        at(50),
        "a tick that changes nothing is not activity"
    );
    assert_eq!(job.times.created, t0());
}

#[test]
fn recovery_is_not_activity() {
    let mut job = job_in(JobState::Transferring, JobType::Download);
    apply(&mut job, Event::Recovered, at(500)).expect("recovered");
    assert_eq!(job.times.modified, t0());
}

/// Random walks through the model: whatever the order of events, the invariants hold.
#[test]
fn invariants_hold_on_random_event_sequences() {
    let mut seed: u64 = 0x5EED_F00D;
    let mut next = move |n: usize| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % n as u64) as usize
    };
    let events = |pick: usize, files: usize, t: u64| -> Event {
        let file = pick % files.max(1);
        // Cancel (2) and CommitFinished (4) end a walk: make them rarer than the rest.
        const OTHERS: [usize; 20] = [
            0, 1, 3, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21,
        ];
        let kind = match pick % 60 {
            k if k < 22 => k,
            k => OTHERS[k % 20],
        };
        match kind {
            0 => Event::Resume,
            1 => Event::Suspend,
            2 => Event::Cancel,
            3 => Event::Complete,
            4 => Event::CommitFinished(CommitReport::default()),
            5 => add(&format!("f{t}")),
            6 => Event::Start,
            7 => Event::Connected,
            8 => Event::FileInfo {
                file,
                bytes_total: Some(100),
                validators: Validators::default(),
            },
            9 => Event::FileRestarted { file },
            10 => Event::Progress {
                file,
                transferred: t % 101,
                checkpointed: t % 53,
            },
            11 => Event::FileTransferred { file },
            12 => Event::Yield,
            13 => Event::Failed(transient()),
            14 => Event::Failed(fatal()),
            15 => Event::Tick(TimePolicy::default()),
            16 => Event::NetworkLost,
            17 => Event::NetworkRestored,
            18 => Event::Recovered,
            19 => Event::PolicyBlocked,
            20 => Event::PolicyLifted,
            _ => Event::Validate {
                file,
                valid: pick.is_multiple_of(2),
            },
        }
    };
    for walk in 0..2_000 {
        let job_type = if walk % 5 == 0 {
            JobType::Upload
        } else {
            JobType::Download
        };
        let mut job = empty_job(job_type);
        let mut t = 0u64;
        for _ in 0..60 {
            t += next(3 * 86_400) as u64;
            let event = events(next(1_000), job.files.len(), t);
            let before = job.clone();
            match apply(&mut job, event.clone(), at(t)) {
                Err(_) => assert_eq!(job, before, "{event:?} failed but changed the job"),
                Ok(_) => {
                    if before.state.is_final() {
                        panic!("{event:?} succeeded on a final job");
                    }
                }
            }
            for file in &job.files {
                assert!(
                    file.bytes_checkpointed <= file.bytes_transferred,
                    "checkpoint past the data"
                );
            }
            assert_eq!(
                job.download_clock.running_since.is_some(),
                job.state.is_running(),
                "download clock runs exactly while the job does ({event:?} → {})",
                job.state
            );
            if matches!(job.state, JobState::Error) {
                assert!(job.current_error().is_ok(), "ERROR without an error object");
            }
            assert!(
                job.times.modified >= before.times.modified,
                "time goes forward"
            );
            if job.state.is_final() {
                break;
            }
        }
    }
}

#[test]
fn validation_rules() {
    let mut job = job_in(JobState::Transferred, JobType::Download);
    ok(
        &mut job,
        Event::Validate {
            file: 0,
            valid: true,
        },
    );
    assert_eq!(
        job.state,
        JobState::Transferred,
        "accepted content changes nothing"
    );
    let effects = ok(
        &mut job,
        Event::Validate {
            file: 0,
            valid: false,
        },
    );
    assert_eq!(job.state, JobState::Error); // T32
    assert!(matches!(
        effects.as_slice(),
        [Effect::Notify(Notification::JobError(_))]
    ));
    let error = job.current_error().expect("error");
    assert_eq!(
        (error.code, error.file),
        (ErrorCode::ValidationFailed, Some(0))
    );
    assert_eq!(error.code.hresult(), 0x8020_0053);
    assert!(!job.files[0].transferred && job.files[0].bytes_transferred == 0);
    // Nothing to validate any more; Resume downloads the file again.
    assert_eq!(
        refused(
            &mut job,
            Event::Validate {
                file: 0,
                valid: true,
            }
        ),
        ErrorCode::InvalidState
    );
    ok(&mut job, Event::Resume);
    assert_eq!(job.state, JobState::Queued);
    let mut upload = job_in(JobState::Transferred, JobType::Upload);
    assert_eq!(
        refused(
            &mut upload,
            Event::Validate {
                file: 0,
                valid: false,
            }
        ),
        ErrorCode::NotImpl
    );
}

#[test]
fn long_names_stay_within_file_system_limits() {
    let mut job = empty_job(JobType::Download);
    let long = "é".repeat(120); // 240 bytes: a valid name, whose temp name would not be
    let file = NewFile {
        remote_url: "http://127.0.0.1/x".into(),
        local_path: format!("/tmp/{long}").into(),
        ranges: None,
        checksum: None,
    };
    ok(&mut job, add_file(file));
    let temp = job.files[0].temp_path.file_name().expect("name").len();
    assert!(temp <= 255, "temp name of {temp} bytes");
    let too_long = NewFile {
        remote_url: "http://127.0.0.1/x".into(),
        local_path: format!("/tmp/{}", "a".repeat(256)).into(),
        ranges: None,
        checksum: None,
    };
    assert_eq!(refused(&mut job, add_file(too_long)), ErrorCode::InvalidArg);
}

#[test]
fn complete_and_cancel_checks_agree_with_apply() {
    for job_type in [JobType::Download, JobType::Upload, JobType::UploadReply] {
        for state in JobState::ALL {
            let job = job_in(state, job_type);
            for (name, check, event) in [
                ("Complete", check_complete as fn(&Job) -> _, Event::Complete),
                ("Cancel", check_cancel, Event::Cancel),
            ] {
                let allowed = check(&job).map_err(|e| e.code);
                let applied = apply(&mut job.clone(), event, at(1))
                    .map(|_| ())
                    .map_err(|e| e.code);
                assert_eq!(allowed, applied, "{name} of {job_type:?} in {state}");
                let expected = match (name, job_type) {
                    _ if state.is_final() => false,
                    ("Complete", JobType::Upload | JobType::UploadReply) => {
                        state == JobState::Transferred
                    }
                    _ => true,
                };
                assert_eq!(
                    allowed.is_ok(),
                    expected,
                    "{name} of {job_type:?} in {state}"
                );
            }
        }
    }
}

/// An upload-reply job through its two phases (spec §1, T8): the upload, then the reply; only
/// both make it TRANSFERRED, and Complete commits the reply and nothing else.
#[test]
fn upload_reply_is_transferred_only_with_its_reply() {
    let mut job = empty_job(JobType::UploadReply);
    ok(&mut job, add("a.bin"));
    let reply_name = PathBuf::from("/tmp/answers/a.reply");
    ok(
        &mut job,
        Event::Set(PropertyChange::ReplyFileName(reply_name.clone())),
    );
    for event in [Event::Resume, Event::Start, Event::Connected] {
        ok(&mut job, event);
    }
    ok(&mut job, Event::UploadSession(Some("{s1}".into())));
    ok(
        &mut job,
        Event::Progress {
            file: 0,
            transferred: 10,
            checkpointed: 10,
        },
    );
    let url = "http://127.0.0.1:1/.ferry-replies/s1".to_string();
    ok(
        &mut job,
        Event::ReplyLocated {
            url: Some(url.clone()),
        },
    );
    assert_eq!(
        refused(
            &mut job,
            Event::Set(PropertyChange::ReplyFileName("/tmp/other".into()))
        ),
        ErrorCode::InvalidState,
        "the reply file name is fixed once the reply download begins"
    );
    ok(&mut job, Event::FileTransferred { file: 0 });
    assert_eq!(
        job.state,
        JobState::Transferring,
        "the reply is still to come"
    );
    assert_eq!(
        job.progress().bytes_transferred,
        10,
        "job progress is the upload's"
    );
    ok(
        &mut job,
        Event::Progress {
            file: REPLY_FILE,
            transferred: 3,
            checkpointed: 3,
        },
    );
    let reply = job
        .reply_progress()
        .expect("upload-reply has reply progress");
    assert_eq!(reply.bytes_transferred, 3);
    let effects = ok(&mut job, Event::FileTransferred { file: REPLY_FILE });
    assert_eq!(job.state, JobState::Transferred);
    assert!(
        effects.contains(&Effect::EndSession {
            url: job.files[0].remote_url.clone(),
            session: "{s1}".into(),
            cancel: false
        }),
        "Close-Session only once the reply is in: {effects:?}"
    );
    assert_eq!(job.upload_session, None);
    let effects = ok(&mut job, Event::Complete);
    let plan = effects.iter().find_map(|e| match e {
        Effect::Commit(plan) => Some(plan.clone()),
        _ => None,
    });
    let plan = plan.expect("a commit plan");
    assert_eq!(plan.commit, vec![REPLY_FILE], "only the reply is moved");
    assert!(
        plan.discard.is_empty(),
        "the uploaded file is never deleted"
    );
    assert_eq!(
        job.reply.download.as_ref().map(|r| &r.local_path),
        Some(&reply_name)
    );
}

/// Cancel before the upload finished cancels the session at the server; the local file is the
/// source and is never deleted (spec §3.5).
#[test]
fn cancelling_an_upload_cancels_its_session_and_keeps_the_source() {
    let mut job = job_in(JobState::Transferring, JobType::Upload);
    ok(&mut job, Event::UploadSession(Some("{s2}".into())));
    let effects = ok(&mut job, Event::Cancel);
    assert!(effects.contains(&Effect::EndSession {
        url: job.files[0].remote_url.clone(),
        session: "{s2}".into(),
        cancel: true
    }));
    assert!(
        effects.contains(&Effect::DeleteTempFiles(Vec::new())),
        "no file of an upload is deleted: {effects:?}"
    );
    // A finished upload has closed its session: Cancel then has no effect on the server.
    let mut done = job_in(JobState::Transferred, JobType::Upload);
    done.upload_session = None;
    let effects = ok(&mut done, Event::Cancel);
    assert!(
        !effects
            .iter()
            .any(|e| matches!(e, Effect::EndSession { .. })),
        "{effects:?}"
    );
}

/// Upload-reply cancelled after its upload: only the reply goes (its temp file), and the
/// session is cancelled so the server drops the reply.
#[test]
fn cancelling_an_upload_reply_after_the_upload_drops_only_the_reply() {
    let mut job = empty_job(JobType::UploadReply);
    ok(&mut job, add("a.bin"));
    for event in [Event::Resume, Event::Start, Event::Connected] {
        ok(&mut job, event);
    }
    ok(&mut job, Event::UploadSession(Some("{s3}".into())));
    ok(&mut job, Event::ReplyLocated { url: None });
    ok(&mut job, Event::FileTransferred { file: 0 });
    let reply_temp = job.reply.download.as_ref().map(|r| r.temp_path.clone());
    let effects = ok(&mut job, Event::Cancel);
    assert!(effects.contains(&Effect::DeleteTempFiles(reply_temp.into_iter().collect())));
    assert!(
        effects
            .iter()
            .any(|e| matches!(e, Effect::EndSession { cancel: true, .. }))
    );
}

#[test]
fn a_host_id_replaces_host_and_port() {
    assert_eq!(
        pinned_url("http://farm.example:8080/up/a.bin?x=1", "node7"),
        "http://node7:8080/up/a.bin?x=1"
    );
    assert_eq!(
        pinned_url("http://127.0.0.1:8080/up/a.bin", "127.0.0.2:9090"),
        "http://127.0.0.2:9090/up/a.bin"
    );
    assert_eq!(pinned_url("not a url", "node7"), "not a url");
}

#[test]
fn a_file_short_or_long_of_its_announced_size_is_not_transferred() {
    let mut job = job_in(JobState::Transferring, JobType::Download);
    let info = |bytes_total| Event::FileInfo {
        file: 0,
        bytes_total,
        validators: Validators::default(),
    };
    let progress = |bytes| Event::Progress {
        file: 0,
        transferred: bytes,
        checkpointed: bytes,
    };
    ok(&mut job, info(Some(2_000_000)));
    for bytes in [1_500_000, 2_000_001] {
        ok(&mut job, progress(bytes));
        let before = job.clone();
        assert_eq!(
            refused(&mut job, Event::FileTransferred { file: 0 }),
            ErrorCode::InvalidServerResponse
        );
        assert_eq!(job, before, "a refused event leaves the job as it was");
    }
    ok(&mut job, progress(2_000_000));
    ok(&mut job, Event::FileTransferred { file: 0 });
    assert_eq!(job.state, JobState::Transferred);
    // A size never announced (dynamic content) is what arrived.
    let mut job = job_in(JobState::Transferring, JobType::Download);
    ok(&mut job, info(None));
    ok(&mut job, progress(123));
    ok(&mut job, Event::FileTransferred { file: 0 });
    assert_eq!(job.files[0].bytes_total, Some(123));
}

/// Defect: a password in a URL was written to the job file and printed by `ferry info`.
#[test]
fn credentials_in_a_url_move_into_the_jobs_credentials() {
    let mut job = empty_job(JobType::Download);
    let file = NewFile {
        remote_url: "http://alice:p%40ss%3Aword@127.0.0.1:8080/x.iso?a=1".into(),
        ..new_file("x.iso")
    };
    ok(&mut job, add_file(file));
    assert_eq!(job.files[0].remote_url, "http://127.0.0.1:8080/x.iso?a=1");
    assert_eq!(
        job.credentials.server,
        Some((AuthScheme::Basic, "alice".into(), "p@ss:word".into()))
    );
    // The same account again is fine; another one in the same job is refused, job unchanged.
    let same = NewFile {
        remote_url: "http://alice:p%40ss%3Aword@127.0.0.1:8080/y.iso".into(),
        ..new_file("y.iso")
    };
    ok(&mut job, add_file(same));
    let before = job.clone();
    let other = NewFile {
        remote_url: "http://bob:x@127.0.0.1:8080/z.iso".into(),
        ..new_file("z.iso")
    };
    assert_eq!(refused(&mut job, add_file(other)), ErrorCode::InvalidArg);
    assert_eq!(job, before);
    // SetRemoteName takes them out too, keeping the job's scheme.
    let mut job = empty_job(JobType::Download);
    ok(&mut job, add("a.bin"));
    ok(
        &mut job,
        Event::Set(PropertyChange::Credentials(Credentials {
            server: Some((AuthScheme::Digest, "carol".into(), "old".into())),
        })),
    );
    let before = job.clone();
    let change = |url: &str| {
        Event::Set(PropertyChange::RemoteName {
            file: 0,
            url: url.into(),
        })
    };
    assert_eq!(
        refused(&mut job, change("https://dave:pw@127.0.0.1/a.bin")),
        ErrorCode::InvalidArg
    );
    assert_eq!(job, before);
    ok(&mut job, change("https://carol:old@127.0.0.1/b.bin"));
    assert_eq!(job.files[0].remote_url, "https://127.0.0.1/b.bin");
    assert_eq!(
        job.credentials.server,
        Some((AuthScheme::Digest, "carol".into(), "old".into()))
    );
    // A user name alone counts (an empty password).
    let mut job = empty_job(JobType::Download);
    let file = NewFile {
        remote_url: "http://token@127.0.0.1/t".into(),
        ..new_file("t")
    };
    ok(&mut job, add_file(file));
    assert_eq!(
        job.credentials.server,
        Some((AuthScheme::Basic, "token".into(), String::new()))
    );
}

/// Defect: a NUL byte in a local name was accepted; a relative one got a confusing error.
#[test]
fn local_names_are_absolute_file_paths_without_nul() {
    for (path, why) in [
        ("/tmp/a\0b", "NUL"),
        ("relative/x.iso", "absolute"),
        ("/tmp/folder/", "folder"),
        ("/tmp/../etc/x", ".."),
        ("/tmp/./x", ". or .."),
    ] {
        let mut job = empty_job(JobType::Download);
        let file = NewFile {
            local_path: PathBuf::from(path),
            ..new_file("x")
        };
        let error = apply(&mut job, add_file(file), t0()).expect_err(path);
        assert_eq!(error.code, ErrorCode::InvalidArg, "{path:?}");
        assert!(error.message.contains(why), "{path:?}: {}", error.message);
    }
}

mod properties {
    //! Property tests: any sequence of events, downloads and uploads alike (sessions, hosts,
    //! replies included), keeps the model's invariants.
    use super::*;
    use proptest::prelude::*;

    fn event(files: usize) -> impl Strategy<Value = Event> {
        let file = 0..files.max(1);
        let any_file = prop_oneof![file.clone(), Just(REPLY_FILE)];
        prop_oneof![
            Just(Event::Resume),
            Just(Event::Suspend),
            Just(Event::Complete),
            Just(Event::Start),
            Just(Event::Connected),
            Just(Event::Yield),
            Just(Event::NetworkLost),
            Just(Event::NetworkRestored),
            Just(Event::PolicyBlocked),
            Just(Event::PolicyLifted),
            Just(Event::Recovered),
            Just(Event::Tick(TimePolicy::default())),
            Just(Event::Failed(transient())),
            Just(Event::Failed(fatal())),
            (0..4u8).prop_map(|n| add(&format!("p{n}"))),
            (any_file.clone(), proptest::option::of(0..200u64)).prop_map(|(file, total)| {
                Event::FileInfo {
                    file,
                    bytes_total: total,
                    validators: Validators::default(),
                }
            }),
            any_file
                .clone()
                .prop_map(|file| Event::FileRestarted { file }),
            (any_file.clone(), 0..200u64, 0..200u64).prop_map(
                |(file, transferred, checkpointed)| {
                    Event::Progress {
                        file,
                        transferred,
                        checkpointed,
                    }
                }
            ),
            any_file
                .clone()
                .prop_map(|file| Event::FileTransferred { file }),
            (file, any::<bool>()).prop_map(|(file, valid)| Event::Validate { file, valid }),
            proptest::option::of("[a-z{}0-9-]{1,12}").prop_map(Event::UploadSession),
            proptest::option::of(("[a-z0-9.]{1,12}", proptest::option::of(0..100u64))).prop_map(
                |host| {
                    Event::UploadHost(host.map(|(host, fallback_secs)| UploadHost {
                        host,
                        fallback_secs,
                        unreachable_since: None,
                    }))
                }
            ),
            proptest::option::of(prop_oneof![
                Just(String::new()),
                Just("http://127.0.0.1/reply".to_string())
            ])
            .prop_map(|url| Event::ReplyLocated { url }),
            Just(Event::CommitFinished(CommitReport {
                committed: vec![0],
                failed: vec![]
            })),
            Just(Event::Cancel),
        ]
    }

    fn job_type() -> impl Strategy<Value = JobType> {
        prop_oneof![
            Just(JobType::Download),
            Just(JobType::Upload),
            Just(JobType::UploadReply)
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn any_event_sequence_keeps_the_invariants(
            job_type in job_type(),
            // File numbers past the job's files test the refusals too.
            steps in proptest::collection::vec((event(4), 0..259_200u64), 1..60),
        ) {
            let mut job = empty_job(job_type);
            let mut t = 0u64;
            for (event, dt) in steps {
                t += dt;
                let before = job.clone();
                match apply(&mut job, event.clone(), at(t)) {
                    Err(_) => prop_assert_eq!(&job, &before, "{:?} failed but changed the job", event),
                    Ok(_) => prop_assert!(!before.state.is_final(), "{:?} changed a final job", event),
                }
                for file in job.files.iter().chain(job.reply.download.as_ref()) {
                    prop_assert!(file.bytes_checkpointed <= file.bytes_transferred);
                    if file.transferred {
                        // Never a transferred file of other than its announced size.
                        prop_assert_eq!(file.bytes_total, Some(file.bytes_transferred));
                    }
                }
                prop_assert_eq!(
                    job.download_clock.running_since.is_some(),
                    job.state.is_running(),
                    "the download clock runs exactly while the job does ({:?} → {})",
                    event,
                    job.state
                );
                if job.state == JobState::Error {
                    prop_assert!(job.current_error().is_ok(), "ERROR without an error object");
                }
                if job.state == JobState::Transferred && before.state != JobState::Transferred {
                    // (Files added later wait in TRANSFERRED for the next Resume, spec §2.4.)
                    prop_assert!(job.all_files_transferred(), "TRANSFERRED with a file missing");
                }
                prop_assert!(job.times.modified >= before.times.modified);
                if job.job_type == JobType::Download {
                    prop_assert!(job.upload_session.is_none(), "a download with a session");
                }
                if job.state.is_final() {
                    break;
                }
            }
        }
    }
}

/// Credentials from a URL go only to that URL's server (review finding: they became the job's
/// and were sent to every file's server).
#[test]
fn url_credentials_stay_with_their_server() {
    let file = |url: &str, name: &str| NewFile {
        remote_url: url.into(),
        ..new_file(name)
    };
    let mut job = empty_job(JobType::Download);
    ok(&mut job, add_file(file("http://u:p@127.0.0.1:8080/a", "a")));
    ok(&mut job, add_file(file("http://127.0.0.1:8080/b", "b")));
    let before = job.clone();
    let error = apply(
        &mut job,
        add_file(file("http://127.0.0.2:8080/c", "c")),
        t0(),
    )
    .expect_err("another server");
    assert_eq!(error.code, ErrorCode::InvalidArg);
    assert!(
        error.message.contains("127.0.0.1:8080"),
        "{}",
        error.message
    );
    assert_eq!(job, before);
    let moved = Event::Set(PropertyChange::RemoteName {
        file: 1,
        url: "http://127.0.0.3/b".into(),
    });
    assert_eq!(refused(&mut job, moved), ErrorCode::InvalidArg);
    // A job with files elsewhere cannot take URL credentials either.
    let mut job = empty_job(JobType::Download);
    ok(&mut job, add_file(file("http://127.0.0.2/x", "x")));
    let error = apply(
        &mut job,
        add_file(file("http://u:p@127.0.0.1/y", "y")),
        t0(),
    )
    .expect_err("another server");
    assert_eq!(error.code, ErrorCode::InvalidArg);
    assert!(job.credentials.server.is_none());
    // Credentials set on the job are for all its files (BITS).
    let mut job = empty_job(JobType::Download);
    ok(&mut job, add_file(file("http://u:p@127.0.0.1/a", "a")));
    ok(
        &mut job,
        Event::Set(PropertyChange::Credentials(Credentials {
            server: Some((AuthScheme::Basic, "u".into(), "p".into())),
        })),
    );
    ok(&mut job, add_file(file("http://127.0.0.9/b", "b")));
}

fn replace(old: &str, new: &str) -> Event {
    Event::Set(PropertyChange::ReplaceRemotePrefix {
        old: old.into(),
        new: new.into(),
    })
}

fn file_at(url: &str, name: &str) -> NewFile {
    NewFile {
        remote_url: url.into(),
        ..new_file(name)
    }
}

#[test]
fn replace_remote_prefix_moves_the_matching_files_all_or_none() {
    let mut job = empty_job(JobType::Download);
    ok(
        &mut job,
        add_file(file_at("http://127.0.0.1/pub/a.iso", "a")),
    );
    ok(
        &mut job,
        add_file(file_at("http://127.0.0.1/PUB/b.iso", "b")),
    );
    ok(
        &mut job,
        add_file(file_at("http://127.0.0.3/pub/c.iso", "c")),
    );
    assert_eq!(job.files_with_remote_prefix("http://127.0.0.1/pub/"), [0]);
    ok(
        &mut job,
        replace("http://127.0.0.1/", "https://127.0.0.2/mirror/"),
    );
    let urls: Vec<&str> = job.files.iter().map(|f| f.remote_url.as_str()).collect();
    assert_eq!(
        urls,
        [
            "https://127.0.0.2/mirror/pub/a.iso",
            "https://127.0.0.2/mirror/PUB/b.iso",
            "http://127.0.0.3/pub/c.iso"
        ]
    );
    // No match is no change (the engine answers S_FALSE), and the match is case-sensitive.
    let before = job.clone();
    ok(&mut job, replace("HTTPS://127.0.0.2/", "http://127.0.0.9/"));
    assert_eq!(job.files, before.files);
    // An empty prefix, or a result Ferry cannot use, changes nothing.
    assert_eq!(
        refused(&mut job, replace("", "http://x/")),
        ErrorCode::InvalidArg
    );
    for bad in ["ftp://127.0.0.2/", "http://[::1/", "not a url "] {
        let error = apply(&mut job, replace("https://127.0.0.2/", bad), t0()).expect_err(bad);
        assert_eq!(error.code, ErrorCode::InvalidArg, "{bad}");
        assert!(
            error.message.starts_with("file 0: replacing the prefix"),
            "{}",
            error.message
        );
        assert_eq!(job.files, before.files, "{bad}");
    }
    // Uploads cannot change their URL.
    let mut upload = job_in(JobState::Suspended, JobType::Upload);
    assert_eq!(
        refused(&mut upload, replace("http://", "https://")),
        ErrorCode::NotImpl
    );
}

#[test]
fn replace_remote_prefix_never_takes_credentials_to_another_server() {
    // Credentials that came in a URL are for that server only.
    let mut job = empty_job(JobType::Download);
    ok(&mut job, add_file(file_at("http://u:pw@127.0.0.1/a", "a")));
    ok(&mut job, add_file(file_at("http://127.0.0.1/b", "b")));
    let before = job.clone();
    let error = apply(
        &mut job,
        replace("http://127.0.0.1/", "http://127.0.0.2/"),
        t0(),
    )
    .expect_err("another server");
    assert_eq!(error.code, ErrorCode::InvalidArg);
    assert!(!error.message.contains("pw"), "{}", error.message);
    assert_eq!(job, before);
    // Within the server they are kept; with credentials in the new prefix, all files move.
    ok(
        &mut job,
        replace("http://127.0.0.1/", "http://127.0.0.1/v2/"),
    );
    assert_eq!(job.files[1].remote_url, "http://127.0.0.1/v2/b");
    ok(
        &mut job,
        replace("http://127.0.0.1/", "https://u:pw@127.0.0.2/"),
    );
    assert_eq!(job.files[0].remote_url, "https://127.0.0.2/v2/a");
    assert_eq!(job.files[1].remote_url, "https://127.0.0.2/v2/b");
    assert_eq!(job.credentials_host.as_deref(), Some("127.0.0.2:443"));
    // Other credentials than the job's are refused, as in AddFile.
    let error = apply(&mut job, replace("https://", "https://eve:x@"), t0()).expect_err("eve");
    assert_eq!(error.code, ErrorCode::InvalidArg);
}

#[test]
fn urls_are_printed_without_their_password() {
    assert_eq!(
        redact_url("http://alice:s3cret@h:99999/x"),
        "http://***@h:99999/x"
    );
    assert_eq!(redact_url("http://h/x@y"), "http://h/x@y");
    let error = apply(
        &mut job_in(JobState::Suspended, JobType::Download),
        Event::Set(PropertyChange::RemoteName {
            file: 0,
            url: "ftp://alice:s3cret@h/x".into(),
        }),
        t0(),
    )
    .expect_err("ftp");
    assert!(!error.message.contains("s3cret"), "{}", error.message);
    let error = apply(
        &mut empty_job(JobType::Download),
        add_file(NewFile {
            remote_url: "http://a:s3cret@h:99999/".into(),
            ..new_file("z")
        }),
        t0(),
    )
    .expect_err("bad port");
    assert!(!error.message.contains("s3cret"), "{}", error.message);
    assert!(
        !file_name_for_url("http://a:s3cret@h/")
            .unwrap_err()
            .contains("s3cret")
    );
}

/// Found by the property test: the empty reply of an upload-reply job, transferred, then a late
/// FileInfo for it made a transferred file's size unknown. A transferred file keeps its size.
#[test]
fn a_transferred_file_keeps_its_size_and_bytes() {
    let mut job = job_in(JobState::Connecting, JobType::UploadReply);
    ok(&mut job, Event::ReplyLocated { url: None });
    ok(&mut job, Event::FileTransferred { file: REPLY_FILE });
    let before = job.clone();
    let info = Event::FileInfo {
        file: REPLY_FILE,
        bytes_total: None,
        validators: Default::default(),
    };
    assert_eq!(refused(&mut job, info), ErrorCode::InvalidState);
    let progress = Event::Progress {
        file: REPLY_FILE,
        transferred: 5,
        checkpointed: 5,
    };
    assert_eq!(refused(&mut job, progress), ErrorCode::InvalidState);
    assert_eq!(job, before, "refused without a change");
}

/// A segment `start..end`, written to `written`, flushed to `flushed`.
fn piece(start: u64, end: u64, written: u64, flushed: u64) -> Segment {
    Segment {
        start,
        end,
        written,
        flushed,
    }
}

/// A transferring one-file job whose file is known to be `size` bytes.
fn sized_job(size: u64) -> Job {
    let mut job = job_in(JobState::Transferring, JobType::Download);
    ok(
        &mut job,
        Event::FileInfo {
            file: 0,
            bytes_total: Some(size),
            validators: Validators {
                size: Some(size),
                last_modified: None,
                etag: Some("\"v1\"".into()),
            },
        },
    );
    job
}

#[test]
fn a_segment_map_counts_its_pieces_and_checkpoints_only_flushed_bytes() {
    let mut job = sized_job(3000);
    let map = vec![
        piece(0, 1000, 800, 500),
        piece(1000, 2000, 1900, 1900),
        piece(2000, 3000, 2000, 2000),
    ];
    ok(
        &mut job,
        Event::Segments {
            file: 0,
            segments: map.clone(),
        },
    );
    let file = &job.files[0];
    assert_eq!(file.bytes_transferred, 800 + 900);
    assert_eq!(file.bytes_checkpointed, 500 + 900, "flushed bytes only");
    assert_eq!(file.segments, map);
    // A crash: every piece goes back to where its flushed bytes end, nothing more.
    ok(&mut job, Event::Recovered);
    let file = &job.files[0];
    assert_eq!(file.bytes_transferred, 1400);
    assert!(file.segments.iter().all(|s| s.written == s.flushed));
    assert_eq!(file.segments[0], piece(0, 1000, 500, 500));
}

#[test]
fn a_segment_map_with_gaps_overlaps_or_disorder_is_refused() {
    let bad: [Vec<Segment>; 6] = [
        vec![piece(0, 1000, 0, 0), piece(1500, 3000, 1500, 1500)], // a gap
        vec![piece(0, 2000, 0, 0), piece(1500, 3000, 1500, 1500)], // an overlap
        vec![piece(0, 2000, 0, 0)],                                // short of the file
        vec![piece(0, 3000, 100, 200)],                            // flushed past written
        vec![piece(0, 3000, 3100, 0)],                             // written past the end
        vec![piece(100, 3000, 100, 100)],                          // not from byte 0
    ];
    for segments in bad {
        let mut job = sized_job(3000);
        let before = job.files[0].clone();
        let code = refused(
            &mut job,
            Event::Segments {
                file: 0,
                segments: segments.clone(),
            },
        );
        assert_eq!(code, ErrorCode::InvalidArg, "{segments:?}");
        assert_eq!(job.files[0].bytes_transferred, before.bytes_transferred);
        assert!(job.files[0].segments.is_empty());
    }
    // Without a known size there is nothing to cover.
    let mut job = job_in(JobState::Transferring, JobType::Download);
    let code = refused(
        &mut job,
        Event::Segments {
            file: 0,
            segments: vec![piece(0, 10, 0, 0)],
        },
    );
    assert_eq!(code, ErrorCode::InvalidArg);
}

#[test]
fn a_segment_map_needs_a_running_job_and_ends_with_the_file() {
    let mut job = sized_job(2000);
    let map = vec![piece(0, 1000, 1000, 1000), piece(1000, 2000, 2000, 2000)];
    ok(
        &mut job,
        Event::Segments {
            file: 0,
            segments: map.clone(),
        },
    );
    ok(&mut job, Event::FileTransferred { file: 0 });
    assert_eq!(job.state, JobState::Transferred);
    assert!(
        job.files[0].segments.is_empty(),
        "a transferred file is whole"
    );
    // A late map of a transferred file, or one for a job that is not running, is refused.
    let late = Event::Segments {
        file: 0,
        segments: map,
    };
    refused(&mut job, late.clone());
    assert!(job.files[0].segments.is_empty());
    let mut suspended = job_in(JobState::Suspended, JobType::Download);
    assert_eq!(refused(&mut suspended, late), ErrorCode::InvalidState);
    // Back to one connection: a prefix again, and a restart drops the map.
    let mut job = sized_job(2000);
    ok(
        &mut job,
        Event::Segments {
            file: 0,
            segments: vec![piece(0, 1000, 600, 600), piece(1000, 2000, 1500, 1500)],
        },
    );
    ok(&mut job, Event::FileRestarted { file: 0 });
    assert!(job.files[0].segments.is_empty());
    assert_eq!(job.files[0].bytes_transferred, 0);
}

#[test]
fn connections_and_files_at_once_are_bounded_download_settings() {
    let mut job = job_in(JobState::Suspended, JobType::Download);
    assert_eq!((job.connections, job.parallel_files), (None, 1));
    ok(&mut job, Event::Set(PropertyChange::Connections(Some(16))));
    ok(&mut job, Event::Set(PropertyChange::ParallelFiles(32)));
    assert_eq!((job.connections, job.parallel_files), (Some(16), 32));
    ok(&mut job, Event::Set(PropertyChange::Connections(None)));
    assert_eq!(job.connections, None, "back to the config's default");
    for bad in [
        PropertyChange::Connections(Some(0)),
        PropertyChange::Connections(Some(17)),
        PropertyChange::ParallelFiles(0),
        PropertyChange::ParallelFiles(33),
    ] {
        assert_eq!(
            refused(&mut job, Event::Set(bad.clone())),
            ErrorCode::InvalidArg,
            "{bad:?}"
        );
    }
    assert_eq!(job.parallel_files, 32);
    let mut upload = job_in(JobState::Suspended, JobType::Upload);
    for change in [
        PropertyChange::Connections(Some(2)),
        PropertyChange::ParallelFiles(2),
    ] {
        assert_eq!(refused(&mut upload, Event::Set(change)), ErrorCode::NotImpl);
    }
}

#[test]
fn a_speed_limit_changes_in_any_live_state_without_stopping_the_transfer() {
    let rate = super::Rate::parse("2M").expect("rate");
    for job_type in [JobType::Download, JobType::Upload] {
        for state in [
            JobState::Suspended,
            JobState::Queued,
            JobState::Transferring,
            JobState::TransientError,
            JobState::Error,
            JobState::Transferred,
        ] {
            let mut job = job_in(state, job_type);
            let effects = ok(&mut job, Event::Set(PropertyChange::LimitRate(Some(rate))));
            assert!(effects.is_empty(), "{state}: {effects:?}");
            assert_eq!((job.state, job.limit_rate), (state, Some(rate)));
            ok(&mut job, Event::Set(PropertyChange::LimitRate(None)));
            assert_eq!(job.limit_rate, None);
        }
    }
    let text = ron::to_string(&{
        let mut job = job_in(JobState::Queued, JobType::Download);
        job.limit_rate = Some(rate);
        job
    })
    .expect("serializes");
    let back: Job = ron::from_str(&text).expect("reads back");
    assert_eq!(back.limit_rate, Some(rate));
}

/// A TRANSFERRING download whose one file, with `checksum`, has all its bytes on disk.
fn last_byte_written(checksum: crate::job::checksum::Checksum) -> Job {
    let mut job = empty_job(JobType::Download);
    let file = NewFile {
        checksum: Some(checksum),
        ..new_file("iso")
    };
    ok(&mut job, add_file(file));
    for event in [
        Event::Resume,
        Event::Start,
        Event::Connected,
        Event::Progress {
            file: 0,
            transferred: 10,
            checkpointed: 10,
        },
    ] {
        ok(&mut job, event);
    }
    job
}

#[test]
fn a_file_with_a_checksum_is_transferred_only_with_its_digest() {
    use crate::job::checksum::Checksum;
    let digest = |hex: &str| Checksum::parse(&format!("sha-256={hex}")).expect("checksum");
    let (wanted, other) = ("a".repeat(64), "b".repeat(64));
    let mut job = last_byte_written(digest(&wanted));
    // No FileTransferred without the digest; a digest of another kind is not one.
    assert_eq!(
        refused(&mut job, Event::FileTransferred { file: 0 }),
        ErrorCode::ValidationFailed
    );
    let md5 = Checksum::parse(&format!("md5={}", "a".repeat(32))).expect("md5");
    assert_eq!(
        refused(
            &mut job,
            Event::FileDigest {
                file: 0,
                digest: md5
            }
        ),
        ErrorCode::InvalidArg
    );
    // Another digest: ERROR naming both, and the file starts again.
    let effects = ok(
        &mut job,
        Event::FileDigest {
            file: 0,
            digest: digest(&other),
        },
    );
    assert_eq!(job.state, JobState::Error);
    assert_eq!(effects.first(), Some(&Effect::StopTransfer));
    let error = job.error.clone().expect("error");
    assert_eq!(error.code, ErrorCode::ValidationFailed);
    assert_eq!(error.file, Some(0));
    assert!(
        error.description.contains(&wanted) && error.description.contains(&other),
        "{}",
        error.description
    );
    assert_eq!(job.files[0].bytes_transferred, 0);
    assert!(!job.files[0].checksum_verified);
    // Complete in ERROR moves nothing that was not verified.
    let effects = ok(&mut job, Event::Complete);
    assert!(
        effects
            .iter()
            .all(|e| !matches!(e, Effect::Commit(plan) if plan.commit.contains(&0))),
        "{effects:?}"
    );
    // Again, with the right bytes.
    let mut job = last_byte_written(digest(&wanted));
    for event in [
        Event::FileDigest {
            file: 0,
            digest: digest(&wanted),
        },
        Event::FileTransferred { file: 0 },
    ] {
        ok(&mut job, event);
    }
    assert_eq!(job.state, JobState::Transferred);
    assert!(job.files[0].checksum_verified);
    // An upload carries no checksum.
    let mut upload = empty_job(JobType::Upload);
    let file = NewFile {
        checksum: Some(digest(&wanted)),
        ..new_file("up")
    };
    assert_eq!(refused(&mut upload, add_file(file)), ErrorCode::NotImpl);
}
