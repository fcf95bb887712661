//! The job verbs: create, add, resume/suspend/complete/cancel, reset, list, info, set, wait,
//! monitor. Each one resolves its JOB arguments, sends requests and prints.

use super::say;
use super::show::{self, Details, Summary};
use super::{
    AddArgs, CreateArgs, InfoArgs, JobsArgs, LimitArgs, ListArgs, MonitorArgs, ReplyArgs, SetArgs,
    WaitArgs, exit, fail, report, report_bits,
};
use crate::engine::{CancelOutcome, CompleteOutcome, EngineEvent, JobSpec};
use crate::job::{
    BitsError, Credentials, ErrorCode, FileRange, Job, JobId, JobState, JobType, NewFile,
    NotifyCommand, PropertyChange, ProxySettings, RedirectPolicy,
};
use crate::service::client::{Client, ClientError, ServiceEvent};
use crate::service::resolve::resolve;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The one job `token` names, among the caller's jobs (including those that recently ended).
async fn find(client: &Client, token: &str) -> Result<Job, ClientError> {
    let jobs = client.jobs(true).await?;
    Ok(resolve(&jobs, token)?.clone())
}

pub(super) async fn create(client: &Client, args: CreateArgs) -> u8 {
    let job_type = if args.upload {
        JobType::Upload
    } else if args.upload_reply {
        JobType::UploadReply
    } else {
        JobType::Download
    };
    let spec = JobSpec {
        priority: args.priority,
        ..JobSpec::new(&args.name, job_type)
    };
    match client.create(&spec).await {
        Ok(id) => {
            say!("{}", id.0);
            exit::OK
        }
        Err(e) => report(&e),
    }
}

/// `ferry reply`: prints the reply's bytes as they are, or saves them.
pub(super) async fn reply(client: &Client, args: ReplyArgs) -> u8 {
    let out = match args.out.as_deref().map(absolute).transpose() {
        Ok(out) => out,
        Err(message) => return fail(message),
    };
    let result = async {
        let job = find(client, &args.job).await?;
        match &out {
            Some(out) => {
                let bytes = client.save_reply(job.id, out).await?;
                eprintln!(
                    "ferry: saved the reply ({bytes} bytes) to {}",
                    out.display()
                );
                Ok(())
            }
            None => {
                use std::io::Write;
                let data = client.reply_data(job.id).await?;
                let mut stdout = std::io::stdout().lock();
                super::reader_gone(stdout.write_all(&data).and_then(|()| stdout.flush()));
                Ok(())
            }
        }
    };
    match result.await {
        Ok(()) => exit::OK,
        Err(e) => report(&e),
    }
}

pub(super) fn absolute(path: &Path) -> Result<PathBuf, String> {
    std::path::absolute(path).map_err(|e| format!("{}: {e}", path.display()))
}

/// The local path for a URL when none is given: its file name in the current folder.
fn default_local(url: &str) -> Result<PathBuf, String> {
    absolute(Path::new(&crate::job::file_name_for_url(url)?))
}

/// Reads an `add --set` file: `URL LOCAL` per line, `#` comments and blank lines ignored.
fn read_file_set(path: &Path) -> Result<Vec<NewFile>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read the file list {}: {e}", path.display()))?;
    let mut files = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (url, local) = line
            .split_once(char::is_whitespace)
            .map(|(url, local)| (url, local.trim()))
            .filter(|(_, local)| !local.is_empty())
            .ok_or_else(|| {
                format!(
                    "{}:{}: expected `URL LOCAL [ALGORITHM=HEX]` (a URL, spaces, the local \
                     file, and its checksum if it has one); nothing was added",
                    path.display(),
                    number + 1
                )
            })?;
        // A last column that is a checksum is one (a file name that reads as a whole digest
        // is not worth the doubt).
        let (local, checksum) = match local.rsplit_once(char::is_whitespace) {
            Some((name, last)) if last.contains('=') => {
                let checksum = crate::job::checksum::Checksum::parse(last)
                    .map_err(|e| format!("{}:{}: {}", path.display(), number + 1, e.message))?;
                (name.trim_end(), Some(checksum))
            }
            _ => (local, None),
        };
        files.push(NewFile {
            remote_url: url.to_string(),
            local_path: absolute(Path::new(local))?,
            ranges: None,
            checksum,
        });
    }
    if files.is_empty() {
        return Err(format!(
            "{} lists no files (lines are `URL LOCAL`)",
            path.display()
        ));
    }
    Ok(files)
}

fn files_to_add(args: &AddArgs) -> Result<Vec<NewFile>, BitsError> {
    let invalid = |message: String| BitsError::new(ErrorCode::InvalidArg, message);
    if let Some(set) = &args.set {
        return read_file_set(set).map_err(invalid);
    }
    let url = args.url.clone().unwrap_or_default();
    let local_path = match &args.local {
        Some(local) => absolute(local),
        None => default_local(&url),
    }
    .map_err(invalid)?;
    let ranges = args
        .ranges
        .as_deref()
        .map(FileRange::parse_list)
        .transpose()?;
    Ok(vec![NewFile {
        remote_url: url,
        local_path,
        ranges,
        checksum: args.checksum.clone(),
    }])
}

pub(super) async fn add(client: &Client, args: AddArgs) -> u8 {
    let files = match files_to_add(&args) {
        Ok(files) => files,
        Err(e) => return report_bits(&e),
    };
    let result = async {
        let job = find(client, &args.job).await?;
        client.add_files(job.id, files).await
    }
    .await;
    match result {
        Ok(job) => {
            let progress = job.progress();
            eprintln!(
                "ferry: job {} has {} file(s)",
                job.id.0, progress.files_total
            );
            exit::OK
        }
        Err(e) => report(&e),
    }
}

#[derive(Clone, Copy)]
pub(super) enum Verb {
    Resume,
    Suspend,
    Complete,
    Cancel,
}

/// Runs the verb on every job named; goes on after a failure and returns the first failure's
/// exit code.
pub(super) async fn each(client: &Client, args: JobsArgs, verb: Verb) -> u8 {
    let mut code = exit::OK;
    for token in &args.jobs {
        let result = async {
            let job = find(client, token).await?;
            let id = job.id;
            let done = match verb {
                Verb::Resume => client.resume(id).await.map(|j| format!("is {}", j.state))?,
                Verb::Suspend => client
                    .suspend(id)
                    .await
                    .map(|j| format!("is {}", j.state))?,
                Verb::Complete => match client.complete(id).await? {
                    CompleteOutcome::Complete => "was completed".to_string(),
                    CompleteOutcome::PartialComplete => {
                        "was completed; files not transferred were deleted \
                         (BG_S_PARTIAL_COMPLETE 0x00200017)"
                            .into()
                    }
                    CompleteOutcome::UnableToDeleteFiles => {
                        "was completed, but some temporary files could not be deleted \
                         (BG_S_UNABLE_TO_DELETE_FILES 0x0020001A)"
                            .into()
                    }
                },
                Verb::Cancel => match client.cancel(id).await? {
                    CancelOutcome::Cancelled => "was cancelled".to_string(),
                    CancelOutcome::UnableToDeleteFiles => {
                        "was cancelled, but some temporary files could not be deleted \
                         (BG_S_UNABLE_TO_DELETE_FILES 0x0020001A)"
                            .into()
                    }
                },
            };
            Ok::<_, ClientError>(format!("{} {done}", id.0))
        }
        .await;
        match result {
            Ok(line) => say!("{line}"),
            Err(e) => {
                let failed = report(&e);
                if code == exit::OK {
                    code = failed;
                }
            }
        }
    }
    code
}

pub(super) async fn reset(client: &Client) -> u8 {
    let jobs = match client.jobs(false).await {
        Ok(jobs) => jobs,
        Err(e) => return report(&e),
    };
    let mut cancelled = 0;
    let mut code = exit::OK;
    for job in &jobs {
        match client.cancel(job.id).await {
            Ok(_) => {
                cancelled += 1;
                say!("{} cancelled.", job.id.0);
            }
            Err(e) => {
                let failed = report(&e);
                if code == exit::OK {
                    code = failed;
                }
            }
        }
    }
    say!("{cancelled} out of {} jobs cancelled.", jobs.len());
    code
}

fn print_json(value: &impl serde::Serialize) -> u8 {
    match serde_json::to_string_pretty(value) {
        Ok(text) => {
            say!("{text}");
            exit::OK
        }
        Err(e) => fail(e),
    }
}

pub(super) async fn list(client: &Client, args: ListArgs) -> u8 {
    let (jobs, status) =
        match async { Ok((client.jobs(args.all_states).await?, client.status().await?)) }.await {
            Ok(found) => found,
            Err(e) => return report(&e),
        };
    if !status.quarantined.is_empty() {
        eprintln!(
            "ferry: warning: {} damaged job file(s) were moved to {} when the service started; \
             `ferry daemon --status` lists them",
            status.quarantined.len(),
            status.data_dir.join("quarantine").display()
        );
    }
    if args.json {
        let summaries: Vec<Summary> = jobs.iter().map(Summary::of).collect();
        return print_json(&summaries);
    }
    super::print_text(&show::table(&jobs));
    exit::OK
}

pub(super) async fn info(client: &Client, args: InfoArgs) -> u8 {
    let (job, status) =
        match async { Ok((find(client, &args.job).await?, client.status().await?)) }.await {
            Ok(found) => found,
            Err(e) => return report(&e),
        };
    let timeout = Duration::from_secs(status.job_inactivity_timeout_secs);
    if args.json {
        return print_json(&Details::of(&job, timeout));
    }
    super::print_text(&show::details_text(&job, timeout));
    exit::OK
}

fn changes(args: &SetArgs) -> Result<Vec<PropertyChange>, BitsError> {
    let invalid = |message: String| BitsError::new(ErrorCode::InvalidArg, message);
    let mut changes = Vec::new();
    if let Some(name) = &args.name {
        changes.push(PropertyChange::DisplayName(name.clone()));
    }
    if let Some(description) = &args.description {
        changes.push(PropertyChange::Description(description.clone()));
    }
    if let Some(priority) = args.priority {
        changes.push(PropertyChange::Priority(priority));
    }
    if let Some(secs) = args.min_retry_delay {
        changes.push(PropertyChange::MinimumRetryDelay(Duration::from_secs(secs)));
    }
    if let Some(secs) = args.no_progress_timeout {
        changes.push(PropertyChange::NoProgressTimeout(Duration::from_secs(secs)));
    }
    if let Some(secs) = args.max_download_time {
        changes.push(PropertyChange::MaxDownloadTime(Duration::from_secs(secs)));
    }
    if let Some(flags) = args.notify_flags {
        changes.push(PropertyChange::NotifyFlags(flags));
    }
    if let Some(command) = &args.notify_cmd {
        let command = match command.as_slice() {
            [] => None,
            [program] if program.is_empty() => None,
            [program, ..] => Some(NotifyCommand {
                program: program.clone(),
                args: command.clone(),
            }),
        };
        changes.push(PropertyChange::NotifyCommand(command));
    }
    if !args.headers.is_empty() {
        let mut headers = Vec::new();
        for header in args.headers.iter().filter(|h| !h.trim().is_empty()) {
            let (name, value) = header.split_once(':').ok_or_else(|| {
                invalid(format!(
                    "header {header:?} is not `Name: value` (e.g. --header 'Accept: */*')"
                ))
            })?;
            headers.push((name.trim().to_string(), value.trim().to_string()));
        }
        changes.push(PropertyChange::CustomHeaders(headers));
    }
    if let Some(usage) = args.proxy {
        changes.push(PropertyChange::Proxy(ProxySettings {
            usage,
            list: args.proxy_list.clone(),
            bypass: args.proxy_bypass.clone(),
        }));
    }
    if let Some(mode) = args.redirect_policy {
        changes.push(PropertyChange::RedirectPolicy(RedirectPolicy {
            mode,
            allow_https_to_http: args.allow_https_to_http,
        }));
    }
    if let Some(replace) = args.replace_existing {
        changes.push(PropertyChange::ReplaceExisting(replace));
    }
    if let Some(on) = args.complete_when_transferred {
        changes.push(PropertyChange::CompleteWhenTransferred(on));
    }
    if let Some(super::ConnectionSetting(connections)) = args.connections {
        changes.push(PropertyChange::Connections(connections));
    }
    if let Some(n) = args.parallel_files {
        changes.push(PropertyChange::ParallelFiles(n));
    }
    if let Some(super::RateSetting(rate)) = args.limit_rate {
        changes.push(PropertyChange::LimitRate(rate));
    }
    if let Some((scheme, user)) = &args.credentials {
        let password = read_password(user)
            .map_err(|e| invalid(format!("cannot read the password from standard input: {e}")))?;
        changes.push(PropertyChange::Credentials(Credentials {
            server: Some((*scheme, user.clone(), password)),
        }));
    }
    if args.no_credentials {
        changes.push(PropertyChange::Credentials(Credentials::default()));
    }
    if let Some(file) = &args.reply_file {
        changes.push(PropertyChange::ReplyFileName(
            absolute(file).map_err(invalid)?,
        ));
    }
    if changes.is_empty() && args.replace_remote_prefix.is_none() {
        return Err(invalid(
            "nothing to change: give at least one option (see ferry set --help)".into(),
        ));
    }
    Ok(changes)
}

pub(super) async fn set(client: &Client, args: SetArgs) -> u8 {
    let changes = match changes(&args) {
        Ok(changes) => changes,
        Err(e) => return report_bits(&e),
    };
    let result = async {
        let job = find(client, &args.job).await?;
        if !changes.is_empty() {
            client.set(job.id, &changes).await?;
        }
        match args.replace_remote_prefix.as_deref() {
            Some([old, new]) => client
                .replace_remote_prefix(job.id, old, new)
                .await
                .map(Some),
            _ => Ok(None),
        }
    }
    .await;
    match result {
        Ok(Some(replaced)) if replaced.files.is_empty() => {
            eprintln!("ferry: {}: {}", replaced.status, replaced.message);
            exit::NO_MATCH
        }
        Ok(Some(replaced)) => {
            println!("{}", replaced.message);
            exit::OK
        }
        Ok(None) => exit::OK,
        Err(e) => report(&e),
    }
}

/// `ferry limit`: prints the global speed limits, or changes them in the service's config (and
/// so live).
pub(super) async fn limit(client: &Client, args: LimitArgs) -> u8 {
    let result = async {
        let mut config = client.config().await?;
        if args.download.is_some() || args.upload.is_some() {
            if let Some(super::RateSetting(rate)) = args.download {
                config.download_limit = rate;
            }
            if let Some(super::RateSetting(rate)) = args.upload {
                config.upload_limit = rate;
            }
            config = client.set_config(&config).await?.config;
        }
        Ok::<_, ClientError>(config)
    }
    .await;
    let config = match result {
        Ok(config) => config,
        Err(e) => return report(&e),
    };
    let shown = |rate: Option<crate::job::Rate>| rate.map(|r| r.to_string());
    let policy = &config.bandwidth_policy;
    let in_effect = config.schedule_at(chrono::Utc::now());
    if args.json {
        return print_json(&serde_json::json!({
            "download": shown(config.download_limit),
            "upload": shown(config.upload_limit),
            "idle_bandwidth_for_background": config.idle_bandwidth_for_background,
            "bandwidth_policy": policy,
            "in_effect": {
                "window": in_effect.window,
                "limits": in_effect.limits,
            },
        }));
    }
    for (what, rate) in [
        ("download", config.download_limit),
        ("upload", config.upload_limit),
    ] {
        let text = match rate {
            Some(rate) => format!("{rate} ({} bytes per second)", rate.bytes_per_second()),
            None => "none".into(),
        };
        say!("{what:<9}{text}");
    }
    say!(
        "background jobs {}",
        if config.idle_bandwidth_for_background {
            "use only idle bandwidth: they give way to other traffic (FOREGROUND jobs do not)"
        } else {
            "share the network like other programs (idle_bandwidth_for_background is off)"
        }
    );
    let classes = |limits: &crate::job::ClassLimits| {
        format!(
            "HIGH {}, NORMAL {}, LOW {}",
            describe_class(limits.high),
            describe_class(limits.normal),
            describe_class(limits.low)
        )
    };
    if policy.is_empty() {
        say!("schedule none (background jobs are limited by nothing else)");
        return exit::OK;
    }
    say!("schedule (background priorities; the first window that holds wins)");
    for (index, window) in policy.windows.iter().enumerate() {
        let mark = if in_effect.window == Some(index) {
            "  <- now"
        } else {
            ""
        };
        say!(
            "  {}: {}{mark}",
            window.describe(),
            classes(&window.limits())
        );
    }
    let mark = if in_effect.window.is_none() {
        "  <- now"
    } else {
        ""
    };
    say!("  outside the windows: {}{mark}", classes(&policy.outside));
    exit::OK
}

/// A schedule's limit as the user reads it.
fn describe_class(limit: crate::job::ClassLimit) -> String {
    match limit {
        crate::job::ClassLimit::Unlimited => "none".into(),
        crate::job::ClassLimit::Blocked => "0 (held)".into(),
        crate::job::ClassLimit::Limited(rate) => rate.to_string(),
    }
}

/// The password for `--credentials`: one line of standard input; on a terminal, asked for with
/// the echo off.
fn read_password(user: &str) -> std::io::Result<String> {
    use std::io::{BufRead, IsTerminal, Write};
    let stdin = std::io::stdin();
    let echo_off = stdin.is_terminal().then(|| {
        eprint!("password for {user}: ");
        let _ = std::io::stderr().flush();
        Echo::off()
    });
    let mut line = String::new();
    let read = stdin.lock().read_line(&mut line);
    if echo_off.is_some() {
        eprintln!();
    }
    drop(echo_off);
    read?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}

/// Terminal echo, switched off while it lives.
struct Echo(Option<libc::termios>);

impl Echo {
    fn off() -> Echo {
        // SAFETY: termios is plain data; tcgetattr fills it for fd 0 or fails.
        let mut saved: libc::termios = unsafe { std::mem::zeroed() };
        if unsafe { libc::tcgetattr(0, &mut saved) } != 0 {
            return Echo(None);
        }
        let mut quiet = saved;
        quiet.c_lflag &= !libc::ECHO;
        // SAFETY: quiet is a valid termios copied from the terminal's.
        unsafe { libc::tcsetattr(0, libc::TCSANOW, &quiet) };
        Echo(Some(saved))
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        if let Some(saved) = &self.0 {
            // SAFETY: restores the settings read in `off`.
            unsafe { libc::tcsetattr(0, libc::TCSANOW, saved) };
        }
    }
}

/// Prints the error of a job in ERROR, with the file it concerns.
pub(super) fn job_error_text(job: &Job) -> String {
    job.error
        .as_ref()
        .map(|e| {
            let file = e
                .file
                .and_then(|i| job.files.get(i))
                .map(|f| format!(" [{}]", f.remote_url));
            format!("{e}{}", file.unwrap_or_default())
        })
        .unwrap_or_else(|| "unknown error".into())
}

pub(super) async fn wait(client: &Client, args: WaitArgs) -> u8 {
    let deadline = match args.timeout {
        Some(secs) if !(secs >= 0.0 && secs.is_finite()) => {
            return fail(format!("--timeout {secs} is not a number of seconds"));
        }
        Some(secs) => Some(tokio::time::Instant::now() + Duration::from_secs_f64(secs)),
        None => None,
    };
    let job = match find(client, &args.job).await {
        Ok(job) => job,
        Err(e) => return report(&e),
    };
    let id = job.id;
    // Subscribe before looking, so that no change falls between the look and the stream.
    let mut events = match client.events(crate::engine::Subscription::All).await {
        Ok(events) => events,
        Err(e) => return report(&e),
    };
    let mut said_suspended = false;
    loop {
        let job = match client.job(id).await {
            Ok(job) => job,
            Err(e) => return report(&e),
        };
        match job.state {
            JobState::Transferred | JobState::Acknowledged => {
                say!("{} {}", id.0, job.state);
                return exit::OK;
            }
            JobState::Error => {
                eprintln!("ferry: job {} is in ERROR: {}", id.0, job_error_text(&job));
                return exit::JOB_ERROR;
            }
            JobState::Cancelled => {
                eprintln!("ferry: job {} was cancelled", id.0);
                return exit::INVALID_STATE;
            }
            JobState::Suspended if !said_suspended => {
                eprintln!(
                    "ferry: job {} is SUSPENDED; waiting until it is resumed (ferry resume {})",
                    id.0, id.0
                );
                said_suspended = true;
            }
            _ => {}
        }
        let timeout = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(timeout);
        loop {
            tokio::select! {
                _ = &mut timeout => {
                    eprintln!("ferry: job {} is still {} after the timeout", id.0, job.state);
                    return exit::TIMEOUT;
                }
                event = events.next() => match event {
                    Some(Ok(ServiceEvent::Engine(EngineEvent::StateChanged { job: changed, .. })))
                        if changed != id => continue,
                    Some(Ok(ServiceEvent::Engine(EngineEvent::StateChanged { .. })))
                    | Some(Ok(ServiceEvent::Lagged { .. })) => break,
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => return report(&e),
                    None => {
                        return report(&ClientError::Unreachable {
                            socket: client.socket().to_path_buf(),
                            reason: "the service stopped".into(),
                        });
                    }
                },
            }
        }
    }
}

pub(super) async fn monitor(client: &Client, args: MonitorArgs) -> u8 {
    if !(args.refresh > 0.0 && args.refresh.is_finite()) {
        return fail(format!(
            "--refresh {} is not a number of seconds",
            args.refresh
        ));
    }
    let mut events = match client.events(crate::engine::Subscription::All).await {
        Ok(events) => events,
        Err(e) => return report(&e),
    };
    let tty = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(args.refresh));
    // Registered before the first screen, so that Ctrl+C right after it is not missed.
    let mut interrupt = match interrupt_signal() {
        Ok(signal) => signal,
        Err(e) => return fail(format!("cannot watch for Ctrl+C: {e}")),
    };
    // Bytes of each job at the last measurement, for the rates.
    let mut measured: Option<(std::time::Instant, HashMap<JobId, u64>)> = None;
    let mut rates: HashMap<JobId, f64> = HashMap::new();
    loop {
        let jobs = match client.jobs(args.all_states).await {
            Ok(jobs) => jobs,
            Err(e) => return report(&e),
        };
        let bytes: HashMap<JobId, u64> = jobs
            .iter()
            .map(|j| (j.id, j.progress().bytes_transferred))
            .collect();
        match &measured {
            // Rates over less than half a second jump around; keep the last ones until then.
            Some((at, before)) if at.elapsed() >= Duration::from_millis(500) => {
                let seconds = at.elapsed().as_secs_f64();
                rates = bytes
                    .iter()
                    .filter_map(|(id, now)| {
                        let then = before.get(id)?;
                        Some((*id, now.saturating_sub(*then) as f64 / seconds))
                    })
                    .collect();
                measured = Some((std::time::Instant::now(), bytes));
            }
            Some(_) => {}
            None => measured = Some((std::time::Instant::now(), bytes)),
        }
        let now = show::local_time(chrono::Utc::now());
        let mut screen = String::new();
        if tty {
            screen.push_str("\x1b[H\x1b[2J"); // home, clear
        }
        screen.push_str(&format!(
            "MONITORING {} job(s) at {now} (Ctrl+C to stop)\n",
            jobs.len()
        ));
        screen.push_str(&show::table_with_rates(&jobs, Some(&rates)));
        if !tty {
            screen.push('\n');
        }
        let mut out = std::io::stdout().lock();
        if std::io::Write::write_all(&mut out, screen.as_bytes())
            .and_then(|()| std::io::Write::flush(&mut out))
            .is_err()
        {
            return exit::OK; // the reader went away
        }
        // Redraw on the next change (at most ten times a second) or at the refresh interval.
        tokio::select! {
            _ = interrupt.recv() => return exit::OK,
            _ = ticker.tick() => {}
            event = events.next() => {
                if event.is_none() {
                    return report(&ClientError::Unreachable {
                        socket: client.socket().to_path_buf(),
                        reason: "the service stopped".into(),
                    });
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// SIGINT (Ctrl+C), watched from the moment this returns.
pub(super) fn interrupt_signal() -> std::io::Result<tokio::signal::unix::Signal> {
    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
}

/// `ferry take-ownership JOB --user NAME`: asks root's service to take the job over.
pub async fn take_ownership(client: &Client, args: super::TakeOwnershipArgs) -> u8 {
    let taken = match client
        .take_ownership(&args.job, &args.user, args.data_dir.as_deref())
        .await
    {
        Ok(taken) => taken,
        Err(e) => return report(&e),
    };
    let job = &taken.job;
    let lives = match client.status().await {
        Ok(status) => format!(
            " It is in {}'s store now ({}).",
            status.user,
            status.data_dir.display()
        ),
        Err(_) => String::new(),
    };
    say!(
        "Job {} ({}) of {} is now {}'s, {}.{lives}",
        job.id,
        job.display_name,
        taken.from,
        job.owner,
        job.state
    );
    if taken.removed.is_empty() {
        say!(
            "It had no credentials, custom headers or notify command line of {}'s to remove.",
            taken.from
        );
    } else {
        say!(
            "Removed, as {}'s: {}.",
            taken.from,
            taken.removed.join(", ")
        );
    }
    exit::OK
}
