//! How jobs look on the command line: the `list` table, the `info` text, and the JSON of both.
//! The JSON field names are part of Ferry's interface (README, docs/api.md); states, types and
//! priorities are the BITS names.

use crate::job::{Job, JobFile, JobId, Timestamp};
use serde::Serialize;
use std::collections::HashMap;

/// One job in `ferry list --json` (and the head of `ferry info --json`).
#[derive(Serialize)]
pub struct Summary {
    pub id: String,
    pub name: String,
    #[serde(rename = "type")]
    pub job_type: &'static str,
    pub state: &'static str,
    pub files_transferred: u32,
    pub files_total: u32,
    pub bytes_transferred: u64,
    /// `null` while some file's size is unknown.
    pub bytes_total: Option<u64>,
    pub priority: &'static str,
    pub last_activity: Timestamp,
}

impl Summary {
    pub fn of(job: &Job) -> Summary {
        let progress = job.progress();
        Summary {
            id: job.id.0.to_string(),
            name: job.display_name.clone(),
            job_type: job.job_type.name(),
            state: job.state.name(),
            files_transferred: progress.files_transferred,
            files_total: progress.files_total,
            bytes_transferred: progress.bytes_transferred,
            bytes_total: progress.bytes_total,
            priority: job.priority.name(),
            last_activity: job.times.modified,
        }
    }
}

/// `ferry info --json`: every property Ferry has (spec §7.1), progress, error and files.
#[derive(Serialize)]
pub struct Details {
    #[serde(flatten)]
    pub summary: Summary,
    pub description: String,
    pub owner: String,
    pub created: Timestamp,
    pub modified: Timestamp,
    pub transfer_completed: Option<Timestamp>,
    pub minimum_retry_delay_secs: u64,
    pub no_progress_timeout_secs: u64,
    pub max_download_time_secs: u64,
    pub notify_flags: u32,
    /// Program and arguments, or `null`.
    pub notify_command: Option<Vec<String>>,
    pub custom_headers: Vec<String>,
    /// PRECONFIG, NO_PROXY, OVERRIDE or AUTODETECT.
    pub proxy_usage: &'static str,
    pub proxy_list: Option<String>,
    pub proxy_bypass: Option<String>,
    /// ALLOW_SILENT, ALLOW_REPORT or DISALLOW.
    pub redirect_policy: &'static str,
    pub allow_https_to_http: bool,
    pub dynamic_content: bool,
    pub replace_existing: bool,
    pub complete_when_transferred: bool,
    /// Connections per file; `null`: the config's default for the job's priority.
    pub connections: Option<u32>,
    /// How many of the job's files transfer at once.
    pub parallel_files: u32,
    /// The job's speed limit in curl's syntax (`"2M"`); `null`: only the global limits.
    pub limit_rate: Option<crate::job::Rate>,
    pub credentials_dropped: bool,
    pub error: Option<ErrorView>,
    pub error_count: u32,
    pub next_retry_at: Option<Timestamp>,
    /// When the inactivity timeout cancels the job unless something happens first; `null` for a
    /// job that has ended.
    pub inactivity_deadline: Option<Timestamp>,
    pub files: Vec<FileView>,
    /// Upload jobs: the server's upload session, `null` before Create-Session and after
    /// Close-Session.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upload_session: Option<String>,
    /// The host the session is pinned to (BITS-Host-Id), when the server named one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upload_host: Option<String>,
    /// Upload-reply jobs: the reply, with its own progress (BG_JOB_REPLY_PROGRESS).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reply: Option<ReplyView>,
}

#[derive(Serialize)]
pub struct ReplyView {
    /// Where Complete puts the reply; `null` until set or generated at the first Resume.
    pub file_name: Option<String>,
    /// The reply URL the server named; `null` until the upload is done, `""` for no reply.
    pub remote_url: Option<String>,
    /// Where the reply waits until Complete.
    pub temp_path: Option<String>,
    pub bytes_transferred: u64,
    /// `null` until the reply download starts (BG_SIZE_UNKNOWN).
    pub bytes_total: Option<u64>,
    pub transferred: bool,
    pub completed: bool,
}

#[derive(Serialize)]
pub struct ErrorView {
    /// BG_ERROR_CONTEXT_* name.
    pub context: &'static str,
    /// BITS name, e.g. BG_E_HTTP_ERROR_404.
    pub code: String,
    pub hresult: String,
    pub message: String,
    /// Index into `files`, or `null` (BG_E_FILE_NOT_AVAILABLE).
    pub file: Option<usize>,
}

#[derive(Serialize)]
pub struct FileView {
    pub remote_url: String,
    pub local_path: String,
    pub temp_path: String,
    /// `OFFSET:LENGTH,…` (`eof` as length), or `null` for the whole file.
    pub ranges: Option<String>,
    pub bytes_transferred: u64,
    pub bytes_total: Option<u64>,
    pub transferred: bool,
    pub completed: bool,
    /// `ALGORITHM=HEX` the file must have, or `null`.
    pub checksum: Option<String>,
    /// The bytes on disk were found to have it.
    pub checksum_verified: bool,
}

fn ranges_text(file: &JobFile) -> Option<String> {
    file.ranges.as_ref().map(|ranges| {
        ranges
            .iter()
            .map(|r| r.to_string())
            .collect::<Vec<_>>()
            .join(",")
    })
}

impl Details {
    /// `inactivity_timeout`: the service's (see `Status`).
    pub fn of(job: &Job, inactivity_timeout: std::time::Duration) -> Details {
        Details {
            summary: Summary::of(job),
            description: job.description.clone(),
            owner: job.owner.clone(),
            created: job.times.created,
            modified: job.times.modified,
            transfer_completed: job.times.transfer_completed,
            minimum_retry_delay_secs: job.minimum_retry_delay.as_secs(),
            no_progress_timeout_secs: job.no_progress_timeout.as_secs(),
            max_download_time_secs: job.max_download_time.as_secs(),
            notify_flags: job.notify_flags.0,
            notify_command: job.notify_command.as_ref().map(|c| {
                std::iter::once(c.program.clone())
                    .chain(c.args.iter().skip(1).cloned())
                    .collect()
            }),
            custom_headers: job
                .custom_headers
                .iter()
                .map(|(k, v)| format!("{k}: {v}"))
                .collect(),
            proxy_usage: job.proxy.usage.name(),
            proxy_list: job.proxy.list.clone(),
            proxy_bypass: job.proxy.bypass.clone(),
            redirect_policy: job.redirect_policy.mode.name(),
            allow_https_to_http: job.redirect_policy.allow_https_to_http,
            dynamic_content: job.dynamic_content,
            replace_existing: job.replace_existing,
            complete_when_transferred: job.complete_when_transferred,
            connections: job.connections,
            parallel_files: job.parallel_files,
            limit_rate: job.limit_rate,
            credentials_dropped: job.credentials_dropped,
            error: job.current_error().ok().map(|e| ErrorView {
                context: e.context.name(),
                code: e.code.name(),
                hresult: e.code.hresult_text(),
                message: e.description.clone(),
                file: e.file,
            }),
            error_count: job.error_count,
            next_retry_at: job.retry.next_retry_at,
            inactivity_deadline: (!job.state.is_final())
                .then(|| job.inactivity_deadline(inactivity_timeout)),
            files: job
                .files
                .iter()
                .map(|f| FileView {
                    remote_url: f.remote_url.clone(),
                    local_path: f.local_path.display().to_string(),
                    temp_path: f.temp_path.display().to_string(),
                    ranges: ranges_text(f),
                    bytes_transferred: f.bytes_transferred,
                    bytes_total: f.bytes_total,
                    transferred: f.transferred,
                    completed: f.completed,
                    checksum: f.checksum.as_ref().map(ToString::to_string),
                    checksum_verified: f.checksum_verified,
                })
                .collect(),
            upload_session: job.upload_session.clone(),
            upload_host: job.upload_host.as_ref().map(|h| h.host.clone()),
            reply: job.reply_progress().map(|progress| {
                let download = job.reply.download.as_ref();
                ReplyView {
                    file_name: job
                        .reply
                        .file_name
                        .as_ref()
                        .map(|p| p.display().to_string()),
                    remote_url: download.map(|r| r.remote_url.clone()),
                    temp_path: download.map(|r| r.temp_path.display().to_string()),
                    bytes_transferred: progress.bytes_transferred,
                    bytes_total: progress.bytes_total,
                    transferred: download.is_some_and(|r| r.transferred),
                    completed: download.is_some_and(|r| r.completed),
                }
            }),
        }
    }
}

pub fn local_time(at: Timestamp) -> String {
    at.with_timezone(&chrono::Local)
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}

fn bytes(done: u64, total: Option<u64>) -> String {
    match total {
        Some(total) => format!("{done} / {total}"),
        None => format!("{done} / UNKNOWN"),
    }
}

fn shorten(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        text.to_string()
    } else {
        let mut short: String = text.chars().take(width.saturating_sub(1)).collect();
        short.push('…');
        short
    }
}

/// The `list` table: a header and one line per job.
pub fn table(jobs: &[Job]) -> String {
    table_with_rates(jobs, None)
}

/// The `list` table; with `rates` (bytes per second by job, for `monitor`), two more columns:
/// the share done and the rate.
pub fn table_with_rates(jobs: &[Job], rates: Option<&HashMap<JobId, f64>>) -> String {
    let extra = |done: &str, rate: &str| match rates {
        Some(_) => format!("  {done:>6}  {rate:>11}"),
        None => String::new(),
    };
    let mut out = format!(
        "{:<36}  {:<24}  {:<12}  {:<15}  {:>9}  {:>27}{}  {:<10}  {}\n",
        "ID",
        "NAME",
        "TYPE",
        "STATE",
        "FILES",
        "BYTES",
        extra("DONE", "RATE"),
        "PRIORITY",
        "LAST ACTIVITY"
    );
    for job in jobs {
        let s = Summary::of(job);
        let done = match s.bytes_total {
            Some(0) | None => "-".to_string(),
            Some(total) => format!("{:.1}%", s.bytes_transferred as f64 * 100.0 / total as f64),
        };
        let rate = rates
            .and_then(|r| r.get(&job.id))
            .filter(|_| job.state == crate::job::JobState::Transferring)
            .map(|rate| format!("{}/s", indicatif::HumanBytes(*rate as u64)))
            .unwrap_or_else(|| "-".into());
        out.push_str(&format!(
            "{:<36}  {:<24}  {:<12}  {:<15}  {:>9}  {:>27}{}  {:<10}  {}\n",
            s.id,
            shorten(&s.name, 24),
            s.job_type,
            s.state,
            format!("{} / {}", s.files_transferred, s.files_total),
            bytes(s.bytes_transferred, s.bytes_total),
            extra(&done, &rate),
            s.priority,
            local_time(s.last_activity),
        ));
    }
    out
}

/// The `info` text.
pub fn details_text(job: &Job, inactivity_timeout: std::time::Duration) -> String {
    let d = Details::of(job, inactivity_timeout);
    let mut out = String::new();
    let mut line = |key: &str, value: String| out.push_str(&format!("{key:<22}{value}\n"));
    let s = &d.summary;
    line("ID", s.id.clone());
    line("NAME", s.name.clone());
    line("DESCRIPTION", d.description.clone());
    line("TYPE", s.job_type.into());
    line("STATE", s.state.into());
    line("OWNER", d.owner.clone());
    line("PRIORITY", s.priority.into());
    line(
        "FILES",
        format!("{} / {}", s.files_transferred, s.files_total),
    );
    line("BYTES", bytes(s.bytes_transferred, s.bytes_total));
    line("CREATION TIME", local_time(d.created));
    line("MODIFICATION TIME", local_time(d.modified));
    line(
        "COMPLETION TIME",
        d.transfer_completed
            .map(local_time)
            .unwrap_or_else(|| "UNKNOWN".into()),
    );
    line("NOTIFY FLAGS", d.notify_flags.to_string());
    line(
        "NOTIFY COMMAND",
        d.notify_command
            .as_ref()
            .map(|c| c.join(" "))
            .unwrap_or_else(|| "none".into()),
    );
    line("RETRY DELAY", format!("{} s", d.minimum_retry_delay_secs));
    line(
        "NO PROGRESS TIMEOUT",
        format!("{} s", d.no_progress_timeout_secs),
    );
    line(
        "MAX DOWNLOAD TIME",
        format!("{} s", d.max_download_time_secs),
    );
    line("ERROR COUNT", d.error_count.to_string());
    if let Some(at) = d.inactivity_deadline {
        let left = (at - chrono::Utc::now()).num_hours().max(0);
        line(
            "INACTIVITY DEADLINE",
            format!(
                "{} (in {} d {} h, unless there is activity)",
                local_time(at),
                left / 24,
                left % 24
            ),
        );
    }
    if let Some(at) = d.next_retry_at {
        line("NEXT RETRY", local_time(at));
    }
    line("PROXY USAGE", d.proxy_usage.into());
    line(
        "PROXY LIST",
        d.proxy_list.clone().unwrap_or_else(|| "NULL".into()),
    );
    line(
        "PROXY BYPASS LIST",
        d.proxy_bypass.clone().unwrap_or_else(|| "NULL".into()),
    );
    line(
        "REDIRECT POLICY",
        format!(
            "{}{}",
            d.redirect_policy,
            if d.allow_https_to_http {
                ", https to http allowed"
            } else {
                ""
            }
        ),
    );
    line("CUSTOM HEADERS", d.custom_headers.join("; "));
    line("DYNAMIC CONTENT", d.dynamic_content.to_string());
    line("REPLACE EXISTING", d.replace_existing.to_string());
    line(
        "COMPLETE WHEN TRANSFERRED",
        d.complete_when_transferred.to_string(),
    );
    line(
        "CONNECTIONS PER FILE",
        d.connections
            .map_or("default for its priority".into(), |n| n.to_string()),
    );
    line("FILES AT ONCE", d.parallel_files.to_string());
    line(
        "SPEED LIMIT",
        d.limit_rate
            .map_or("none (the global limits apply)".into(), |rate| {
                format!("{rate} ({} bytes per second)", rate.bytes_per_second())
            }),
    );
    if d.credentials_dropped {
        line(
            "CREDENTIALS",
            "dropped at a restart (never stored): set them again".into(),
        );
    }
    match &d.error {
        Some(e) => {
            line("ERROR CODE", format!("{} {}", e.code, e.hresult));
            line("ERROR CONTEXT", e.context.into());
            line("ERROR MESSAGE", e.message.clone());
            let file = e
                .file
                .and_then(|i| d.files.get(i))
                .map(|f| f.remote_url.clone())
                .unwrap_or_else(|| "BG_E_FILE_NOT_AVAILABLE".into());
            line("ERROR FILE", file);
        }
        None => line("ERROR", "none".into()),
    }
    let upload = job.job_type.is_upload();
    if upload {
        line(
            "UPLOAD SESSION",
            d.upload_session.clone().unwrap_or_else(|| "none".into()),
        );
        if let Some(host) = &d.upload_host {
            line("UPLOAD HOST", format!("{host} (BITS-Host-Id)"));
        }
    }
    out.push_str("JOB FILES\n");
    for f in &d.files {
        let state = if f.completed {
            "COMPLETED"
        } else if f.transferred {
            "TRANSFERRED"
        } else {
            "PENDING"
        };
        let (from, to) = if upload {
            (&f.local_path, &f.remote_url)
        } else {
            (&f.remote_url, &f.local_path)
        };
        out.push_str(&format!(
            "  {} {:<11} {from} -> {to}\n",
            bytes(f.bytes_transferred, f.bytes_total),
            state,
        ));
        if let Some(ranges) = &f.ranges {
            out.push_str(&format!("    ranges {ranges}\n"));
        }
        if let Some(checksum) = &f.checksum {
            let verdict = if f.checksum_verified {
                "verified"
            } else {
                "checked when downloaded"
            };
            out.push_str(&format!("    digest {checksum} ({verdict})\n"));
        }
        if !f.completed && !upload {
            out.push_str(&format!("    temp   {}\n", f.temp_path));
        }
    }
    if let Some(r) = &d.reply {
        let state = if r.completed {
            "COMPLETED"
        } else if r.transferred {
            "TRANSFERRED"
        } else if r.remote_url.is_some() {
            "PENDING"
        } else {
            "WAITING FOR THE UPLOAD"
        };
        out.push_str("REPLY\n");
        let source = match r.remote_url.as_deref() {
            Some("") => "(the server sent no reply)",
            Some(url) => url,
            None => "(named by the server after the upload)",
        };
        let file = r
            .file_name
            .as_deref()
            .unwrap_or("(named at the first Resume)");
        out.push_str(&format!(
            "  {} {state:<11} {source} -> {file}\n",
            bytes(r.bytes_transferred, r.bytes_total)
        ));
        if let Some(temp) = r.temp_path.as_deref().filter(|_| !r.completed) {
            out.push_str(&format!("    temp   {temp}\n"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::{JobDefaults, JobState, JobType};

    #[test]
    fn monitor_rows_show_share_and_rate_of_transferring_jobs() {
        let mut job = Job::new(
            JobId::new_random(),
            JobType::Download,
            "iso",
            "me",
            &JobDefaults::default(),
            chrono::DateTime::UNIX_EPOCH,
        )
        .expect("job");
        job.files.push(JobFile {
            remote_url: "http://127.0.0.1/iso".into(),
            local_path: "/tmp/iso".into(),
            temp_path: "/tmp/.iso".into(),
            ranges: None,
            bytes_total: Some(4000),
            bytes_transferred: 1000,
            bytes_checkpointed: 0,
            transferred: false,
            completed: false,
            validators: None,
            segments: Vec::new(),
            checksum: None,
            checksum_verified: false,
        });
        job.state = JobState::Transferring;
        let rates = HashMap::from([(job.id, 2048.0)]);
        let text = table_with_rates(std::slice::from_ref(&job), Some(&rates));
        let mut lines = text.lines();
        let header = lines.next().expect("header");
        assert!(
            header.contains("DONE") && header.contains("RATE"),
            "{header}"
        );
        let row = lines.next().expect("row");
        assert!(row.contains("25.0%") && row.contains("2.00 KiB/s"), "{row}");
        assert!(
            row.contains("1000 / 4000") && row.contains("TRANSFERRING"),
            "{row}"
        );
        // The list table has neither column.
        assert!(!table(&[job]).contains("RATE"));
    }
}
