//! `ferry get`: one FOREGROUND download job for all the URLs, run to the end.

use super::{GetArgs, exit, fail, report};
use crate::engine::{EngineEvent, JobSpec};
use crate::job::{Job, JobId, JobState, JobType, NewFile, PropertyChange};
use crate::service::client::{Client, ClientError, ServiceEvent};
use indicatif::{ProgressBar, ProgressStyle};
use std::path::Path;
use std::time::Duration;

/// Marks jobs made by `ferry get`, so that running the same command again resumes its job.
const GET_DESCRIPTION: &str = "ferry get";

fn plan_files(args: &GetArgs) -> Result<Vec<NewFile>, String> {
    let dir = match &args.output_dir {
        Some(dir) => dir.clone(),
        None => {
            std::env::current_dir().map_err(|e| format!("cannot read the current folder: {e}"))?
        }
    };
    let dir = std::path::absolute(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut files: Vec<NewFile> = Vec::with_capacity(args.urls.len());
    // Where each name went: hundreds of URLs are checked in one pass, not pair by pair.
    let mut taken = std::collections::HashMap::with_capacity(args.urls.len());
    if !args.checksum.is_empty() && args.checksum.len() != args.urls.len() {
        return Err(format!(
            "{} checksums for {} URLs: give --checksum once per URL, in their order",
            args.checksum.len(),
            args.urls.len()
        ));
    }
    for (index, url) in args.urls.iter().enumerate() {
        let local_path = dir.join(crate::job::file_name_for_url(url)?);
        if let Some(&other) = taken.get(&local_path) {
            let other: &NewFile = &files[other];
            return Err(format!(
                "{} and {} would both be saved as {}: download them in separate commands or folders",
                other.remote_url,
                url,
                local_path.display()
            ));
        }
        taken.insert(local_path.clone(), files.len());
        files.push(NewFile {
            remote_url: url.clone(),
            local_path,
            ranges: None,
            checksum: args.checksum.get(index).cloned(),
        });
    }
    Ok(files)
}

/// A suspended or waiting job of an earlier `ferry get` with exactly these files.
fn earlier_job<'a>(jobs: &'a [Job], files: &[NewFile]) -> Option<&'a Job> {
    jobs.iter().find(|job| {
        job.description == GET_DESCRIPTION
            && job.job_type == JobType::Download
            && job.files.len() == files.len()
            && job.files.iter().zip(files).all(|(a, b)| {
                // The job stores URLs without their credentials.
                a.remote_url == crate::job::url_without_credentials(&b.remote_url)
                    && a.local_path == b.local_path
            })
    })
}

pub(super) async fn run(client: &Client, args: GetArgs) -> u8 {
    let files = match plan_files(&args) {
        Ok(files) => files,
        Err(message) => return fail(message),
    };
    // Watched from here on: a Ctrl+C while the job is being set up suspends it once it exists.
    let interrupt = match super::jobs::interrupt_signal() {
        Ok(signal) => signal,
        Err(e) => return fail(format!("cannot watch for Ctrl+C: {e}")),
    };
    // Listening before the job exists: none of its state changes is missed.
    let events = match client.events(crate::engine::Subscription::All).await {
        Ok(events) => events,
        Err(e) => return report(&e),
    };
    match prepare(client, &args, files).await {
        Ok(job) => {
            follow(
                client,
                job,
                events,
                args.quiet,
                interrupt,
                JobType::Download,
            )
            .await
        }
        Err(e) => report(&e),
    }
}

/// Creates the job (or finds the one an interrupted run left) and resumes it.
async fn prepare(
    client: &Client,
    args: &GetArgs,
    files: Vec<NewFile>,
) -> Result<Followed, ClientError> {
    let jobs = client.jobs(false).await?;
    if let Some(job) = earlier_job(&jobs, &files) {
        let mut settings = Vec::new();
        if let Some(n) = args.connections {
            settings.push(PropertyChange::Connections(Some(n)));
        }
        if let Some(n) = args.parallel {
            settings.push(PropertyChange::ParallelFiles(n));
        }
        if let Some(rate) = args.limit_rate {
            settings.push(PropertyChange::LimitRate(Some(rate)));
        }
        return take_up(client, job, args.priority, settings, args.quiet).await;
    }
    let name = match files.as_slice() {
        [one] => file_label(&one.local_path),
        [first, rest @ ..] => format!("{} and {} more", file_label(&first.local_path), rest.len()),
        [] => "ferry get".into(),
    };
    let spec = JobSpec {
        priority: Some(args.priority),
        description: GET_DESCRIPTION.into(),
        replace_existing: args.overwrite,
        connections: args.connections,
        parallel_files: args.parallel,
        limit_rate: args.limit_rate,
        resume: true,
        files,
        checksums_url: args.checksums.clone(),
        ..JobSpec::new(&name, JobType::Download)
    };
    // Created with its files and resumed in one step: a refused file leaves no job behind.
    let id = client.create(&spec).await?;
    Ok(Followed {
        id,
        taken_up: false,
    })
}

/// The job a command follows to its end.
pub(super) struct Followed {
    pub id: JobId,
    /// Made by an earlier run: it may have changed before this one listened.
    pub taken_up: bool,
}

/// Goes on with the job an interrupted run of the same command left: its priority as asked
/// now, resumed unless the service finished it meanwhile (then it only waits for Complete).
pub(super) async fn take_up(
    client: &Client,
    job: &Job,
    priority: crate::job::Priority,
    mut settings: Vec<PropertyChange>,
    quiet: bool,
) -> Result<Followed, ClientError> {
    let id = job.id;
    if !quiet {
        eprintln!("ferry: resuming job {} from an earlier run", id.0);
    }
    settings.insert(0, PropertyChange::Priority(priority));
    client.set(id, &settings).await?;
    if job.state != JobState::Transferred {
        client.resume(id).await?;
    }
    Ok(Followed { id, taken_up: true })
}

pub(super) fn file_label(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn progress_bar(quiet: bool) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template(
            "{msg:20!} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar
}

/// What an event from the service means to a command following job `id`.
#[derive(Debug, PartialEq, Eq)]
enum Seen {
    Nothing,
    /// Something changed: look at the job.
    Look,
    /// The job is TRANSFERRED (quiet: nothing to show, no need to look first).
    Transferred,
}

fn seen(event: &Option<Result<ServiceEvent, ClientError>>, id: JobId, quiet: bool) -> Seen {
    match event {
        Some(Ok(ServiceEvent::Engine(EngineEvent::StateChanged { job, to, .. }))) if *job == id => {
            // Quiet, nothing shows the states on the way.
            let on_the_way = matches!(
                to,
                JobState::Queued
                    | JobState::Connecting
                    | JobState::Transferring
                    | JobState::Suspended
            );
            match to {
                JobState::Transferred if quiet => Seen::Transferred,
                _ if quiet && on_the_way => Seen::Nothing,
                _ => Seen::Look,
            }
        }
        Some(Ok(_)) => Seen::Nothing,
        // Lagged: something may have been missed; look. An error or the end of the stream:
        // the next call says why.
        Some(Err(_)) | None => Seen::Look,
    }
}

/// Waits for the job to finish, showing progress; completes or cancels it. `get` and `put`
/// share it; `kind` only changes the words. `events` were listened to before the job was made
/// or taken up.
pub(super) async fn follow(
    client: &Client,
    followed: Followed,
    mut events: crate::service::client::EventStream,
    quiet: bool,
    mut interrupt: tokio::signal::unix::Signal,
    kind: JobType,
) -> u8 {
    let id = followed.id;
    let (done, discarded) = if kind.is_upload() {
        ("uploaded", "its upload session cancelled at the server")
    } else {
        ("saved", "its partial files deleted")
    };
    let started = std::time::Instant::now();
    // Bytes already there when this run began (a resumed job) do not count for the speed.
    let mut resumed_from: Option<u64> = None;
    let bar = progress_bar(quiet);
    // The bar refreshes five times a second; without it, only state changes matter. A job
    // taken up is looked at first: it may have ended before this listened.
    let period = Duration::from_millis(if quiet { 3_600_000 } else { 200 });
    let first = if followed.taken_up || !quiet {
        tokio::time::Instant::now()
    } else {
        tokio::time::Instant::now() + period
    };
    let mut ticker = tokio::time::interval_at(first, period);
    let mut last_transient: Option<String> = None;
    loop {
        tokio::select! {
            _ = interrupt.recv() => {
                bar.abandon();
                let _ = client.suspend(id).await;
                eprintln!("ferry: interrupted; job {} is suspended. Run the same command again to resume it.", id.0);
                return exit::INTERRUPTED;
            }
            event = events.next() => match seen(&event, id, quiet) {
                Seen::Nothing => continue,
                Seen::Look => {}
                Seen::Transferred => {
                    return match client.complete(id).await {
                        Ok(_) => exit::OK,
                        Err(e) => report(&e),
                    };
                }
            },
            _ = ticker.tick() => {}
        }
        let job = match client.job(id).await {
            Ok(job) => job,
            Err(e) => {
                bar.abandon();
                return report(&e);
            }
        };
        let progress = job.progress();
        let resumed_from = *resumed_from.get_or_insert(progress.bytes_transferred);
        if let Some(total) = progress.bytes_total {
            bar.set_length(total);
        }
        bar.set_position(progress.bytes_transferred);
        bar.set_message(format!(
            "{} {}/{}",
            job.state, progress.files_transferred, progress.files_total
        ));
        let finished = || {
            if !quiet {
                let seconds = started.elapsed().as_secs_f64().max(0.001);
                let fetched = progress.bytes_transferred.saturating_sub(resumed_from);
                let rate = fetched as f64 / seconds;
                eprintln!(
                    "ferry: {done} {} file(s), {} in {seconds:.1} s ({}/s)",
                    progress.files_total,
                    indicatif::HumanBytes(progress.bytes_transferred),
                    indicatif::HumanBytes(rate as u64)
                );
            }
            exit::OK
        };
        match job.state {
            JobState::Transferred => {
                bar.finish_and_clear();
                return match client.complete(id).await {
                    Ok(_) => finished(),
                    Err(e) => report(&e),
                };
            }
            // Completed by the service: someone set Complete When Transferred on it.
            JobState::Acknowledged if job.complete_when_transferred => {
                bar.finish_and_clear();
                return finished();
            }
            JobState::Error => {
                bar.abandon();
                eprintln!(
                    "ferry: the job failed: {}",
                    super::jobs::job_error_text(&job)
                );
                let _ = client.cancel(id).await;
                eprintln!("ferry: job {} was cancelled and {discarded}", id.0);
                return exit::JOB_ERROR;
            }
            JobState::TransientError => {
                if let Some(error) = &job.error {
                    let line = error.to_string();
                    if last_transient.as_ref() != Some(&line) {
                        let when = job
                            .retry
                            .next_retry_at
                            .map(|at| {
                                format!(
                                    "; retrying at {}",
                                    at.with_timezone(&chrono::Local).format("%H:%M:%S")
                                )
                            })
                            .unwrap_or_default();
                        bar.suspend(|| {
                            eprintln!("ferry: transient error: {line}{when} (Ctrl+C to stop)")
                        });
                        last_transient = Some(line);
                    }
                }
            }
            JobState::Acknowledged | JobState::Cancelled => {
                return fail("the job was ended by someone else");
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn file_names_come_from_the_url_path() {
        assert_eq!(
            crate::job::file_name_for_url("http://127.0.0.1/a/b/file.bin").as_deref(),
            Ok("file.bin")
        );
        assert_eq!(
            crate::job::file_name_for_url("http://127.0.0.1/a/my%20file.txt?x=1").as_deref(),
            Ok("my file.txt")
        );
        assert!(crate::job::file_name_for_url("http://127.0.0.1/").is_err());
        assert!(crate::job::file_name_for_url("http://127.0.0.1/a/%2F").is_err());
        assert!(crate::job::file_name_for_url("http://127.0.0.1/..").is_err());
    }

    #[test]
    fn same_name_twice_is_refused() {
        let args = GetArgs {
            priority: crate::job::Priority::Foreground,
            output_dir: Some(PathBuf::from("/tmp")),
            quiet: true,
            overwrite: false,
            connections: None,
            parallel: None,
            limit_rate: None,
            checksum: Vec::new(),
            checksums: None,
            urls: vec![
                "http://127.0.0.1/a/x.bin".into(),
                "http://127.0.0.1/b/x.bin".into(),
            ],
        };
        let err = plan_files(&args).expect_err("duplicate");
        assert!(err.contains("both be saved"), "{err}");
    }
}
