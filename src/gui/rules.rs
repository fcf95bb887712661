//! Which actions the selection allows, and what a confirmation must say. The legality comes from
//! the job model ([`job::check_complete`], [`job::check_cancel`]), the same functions the engine's
//! transition uses, so a button is enabled exactly when the service would accept the call.

use super::format;
use crate::job::{self, BitsError, Job, JobFile, JobState, JobType};

/// Whether a button is enabled, and if not, the sentence its tooltip shows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Availability {
    Enabled,
    Disabled(String),
}

impl Availability {
    pub fn is_enabled(&self) -> bool {
        matches!(self, Availability::Enabled)
    }
}

fn label(job: &Job) -> String {
    super::notices::job_label(job)
}

/// What a confirmation says: one sentence that sums it up, the jobs one line each (the dialog
/// lists the first [`LISTED`] and counts the rest), and the last word.
#[derive(Clone, Debug, PartialEq)]
pub struct Confirmation {
    pub summary: String,
    pub lines: Vec<String>,
    pub footer: String,
}

/// Jobs a confirmation lists one by one; the rest are counted.
pub const LISTED: usize = 10;

const NOTHING_SELECTED: &str = "Select one or more jobs first.";

fn refusal(job: &Job, error: &BitsError) -> String {
    format!(
        "“{}” is {}: {} ({} {}).",
        label(job),
        job.state,
        why(job, error),
        error.code.name(),
        error.code.hresult_text()
    )
}

/// The rule in plain words: the model's message without its "job {id} is STATE: " prefix, which
/// the tooltip says in its own words.
fn why(job: &Job, error: &BitsError) -> String {
    if job.state.is_final() {
        return "a finished job cannot be changed".into();
    }
    let prefix = format!("job {} is {}: ", job.id, job.state);
    error
        .message
        .strip_prefix(&prefix)
        .unwrap_or(&error.message)
        .to_string()
}

/// The selected jobs an action applies to, and the ones it leaves out with the reason. A bulk
/// action on a mixed selection acts on the suitable jobs and says what it skipped.
pub struct Split<'a> {
    pub ok: Vec<&'a Job>,
    pub skipped: Vec<(&'a Job, String)>,
}

impl<'a> Split<'a> {
    /// `check` gives the sentence saying why a job is left out.
    pub fn of(jobs: &[&'a Job], check: impl Fn(&Job) -> Result<(), String>) -> Split<'a> {
        let mut split = Split {
            ok: Vec::new(),
            skipped: Vec::new(),
        };
        for job in jobs {
            match check(job) {
                Ok(()) => split.ok.push(job),
                Err(why) => split.skipped.push((job, why)),
            }
        }
        split
    }

    /// Enabled when at least one job is suitable; otherwise the first refusal, word for word.
    pub fn availability(&self) -> Availability {
        match (self.ok.is_empty(), self.skipped.first()) {
            (false, _) => Availability::Enabled,
            (true, Some((_, why))) => Availability::Disabled(why.clone()),
            (true, None) => Availability::Disabled(NOTHING_SELECTED.into()),
        }
    }

    pub fn ids(&self) -> Vec<job::JobId> {
        self.ok.iter().map(|j| j.id).collect()
    }

    /// "2 skipped: “a” is ACKNOWLEDGED…; “b” …" or nothing.
    pub fn skipped_text(&self) -> Option<String> {
        const SHOWN: usize = 3;
        if self.skipped.is_empty() {
            return None;
        }
        let mut text = format!("{} skipped: ", self.skipped.len());
        let reasons: Vec<&str> = self
            .skipped
            .iter()
            .take(SHOWN)
            .map(|(_, why)| why.as_str())
            .collect();
        text.push_str(&reasons.join(" "));
        if self.skipped.len() > SHOWN {
            text.push_str(&format!(" And {} more.", self.skipped.len() - SHOWN));
        }
        Some(text)
    }
}

/// The model's rule as a sentence: what the service would answer.
fn model(job: &Job, rule: fn(&Job) -> Result<(), BitsError>) -> Result<(), String> {
    rule(job).map_err(|error| refusal(job, &error))
}

/// Complete (spec §3.4): the selected jobs that allow it.
pub fn complete<'a>(jobs: &[&'a Job]) -> Split<'a> {
    Split::of(jobs, |j| model(j, job::check_complete))
}

/// Cancel (spec §3.5): the selected jobs that allow it (not the finished ones).
pub fn cancel<'a>(jobs: &[&'a Job]) -> Split<'a> {
    Split::of(jobs, |j| model(j, job::check_cancel))
}

/// Resume: the jobs that wait for it: SUSPENDED, or in ERROR / TRANSIENT_ERROR (retry now), with
/// at least one file (BG_E_EMPTY otherwise).
pub fn resume<'a>(jobs: &[&'a Job]) -> Split<'a> {
    Split::of(jobs, |j| {
        if j.state.is_final() {
            model(j, job::check_cancel)
        } else if j.files.is_empty() {
            Err(refusal(j, &BitsError::from_code(job::ErrorCode::Empty)))
        } else if !matches!(
            j.state,
            JobState::Suspended | JobState::Error | JobState::TransientError
        ) {
            Err(format!("“{}” is {}: it runs already.", label(j), j.state))
        } else {
            Ok(())
        }
    })
}

/// Suspend: the jobs not finished and not already SUSPENDED.
pub fn suspend<'a>(jobs: &[&'a Job]) -> Split<'a> {
    Split::of(jobs, |j| {
        model(j, job::check_cancel)?;
        if j.state == JobState::Suspended {
            Err(format!("“{}” is SUSPENDED already.", label(j)))
        } else {
            Ok(())
        }
    })
}

/// The property changes (priority, Keep…): any non-final job.
pub fn change<'a>(jobs: &[&'a Job]) -> Split<'a> {
    Split::of(jobs, |j| model(j, job::check_cancel))
}

fn file_name(file: &JobFile) -> String {
    file.local_path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| file.local_path.display().to_string())
}

fn names(files: &[&JobFile]) -> String {
    const SHOWN: usize = 5;
    let mut text: Vec<String> = files.iter().take(SHOWN).map(|f| file_name(f)).collect();
    if files.len() > SHOWN {
        text.push(format!("and {} more", files.len() - SHOWN));
    }
    text.join(", ")
}

/// The confirmation a Complete needs, or `None` when nothing is lost: a download whose files are
/// not all transferred keeps only the transferred ones and deletes the rest (spec §3.4).
pub fn complete_confirmation(jobs: &[&Job]) -> Option<Confirmation> {
    let mut lines = Vec::new();
    for job in jobs {
        let pending: Vec<&JobFile> = job
            .files
            .iter()
            .filter(|f| !f.transferred && !f.completed)
            .collect();
        if pending.is_empty() {
            continue;
        }
        let kept: Vec<&JobFile> = job
            .files
            .iter()
            .filter(|f| f.transferred && !f.completed)
            .collect();
        let partial: u64 = pending.iter().map(|f| f.bytes_transferred).sum();
        let kept_text = if kept.is_empty() {
            "No file is kept".to_string()
        } else {
            format!("Kept ({}): {}", kept.len(), names(&kept))
        };
        lines.push(format!(
            "“{}”: not every file is transferred.\n  {kept_text}.\n  Discarded ({}, {} downloaded so far): {}.",
            label(job),
            pending.len(),
            format::bytes(partial),
            names(&pending)
        ));
    }
    if lines.is_empty() {
        return None;
    }
    Some(Confirmation {
        summary: format!(
            "{} of the {} job(s) to complete have files that are not transferred.{}",
            lines.len(),
            jobs.len(),
            listed(lines.len())
        ),
        lines,
        footer: "Complete anyway? Discarded files are deleted and cannot be resumed.".into(),
    })
}

/// What a Cancel deletes (spec §3.5), one paragraph per job.
pub fn cancel_confirmation(jobs: &[&Job]) -> Confirmation {
    let mut lines = Vec::new();
    let mut deleted = 0u64;
    for job in jobs {
        let line = match job.job_type {
            JobType::Download => {
                let doomed: Vec<&JobFile> = job.files.iter().filter(|f| !f.completed).collect();
                let bytes: u64 = doomed.iter().map(|f| f.bytes_transferred).sum();
                deleted = deleted.saturating_add(bytes);
                if doomed.is_empty() {
                    format!("“{}”: no file is deleted.", label(job))
                } else {
                    format!(
                        "“{}”: the temporary files of {} file(s) are deleted ({} downloaded): {}.",
                        label(job),
                        doomed.len(),
                        format::bytes(bytes),
                        names(&doomed)
                    )
                }
            }
            JobType::Upload if job.state == JobState::Transferred => format!(
                "“{}”: the upload is finished; the file on the server stays.",
                label(job)
            ),
            JobType::Upload => format!(
                "“{}”: the partial upload on the server is discarded.",
                label(job)
            ),
            JobType::UploadReply if job.state == JobState::Transferred => format!(
                "“{}”: the upload is finished; only the reply is discarded.",
                label(job)
            ),
            JobType::UploadReply => format!(
                "“{}”: the partial upload on the server and the reply are discarded.",
                label(job)
            ),
        };
        lines.push(line);
    }
    let summary = match jobs {
        [_] => format!("{} downloaded so far is deleted.", format::bytes(deleted)),
        _ => format!(
            "{} jobs, {} downloaded so far is deleted.{}",
            jobs.len(),
            format::bytes(deleted),
            listed(lines.len())
        ),
    };
    Confirmation {
        summary,
        lines,
        footer: "Cancel cannot be undone.".into(),
    }
}

fn listed(count: usize) -> String {
    if count > LISTED {
        format!(" The first {LISTED} are listed.")
    } else {
        String::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gui::tray::tests::job;

    #[test]
    fn disabled_buttons_say_why() {
        let mut upload = job("report", JobState::Queued, 0, 10, 0);
        upload.job_type = JobType::Upload;
        assert_eq!(
            complete(&[&upload]).availability(),
            Availability::Disabled(
                "“report” is QUEUED: an upload job can be completed only when it is TRANSFERRED \
                 (BG_E_INVALID_STATE 0x80200002)."
                    .into()
            )
        );
        // Resume and Suspend follow the state: a QUEUED job can only be suspended.
        assert_eq!(
            resume(&[&upload]).availability(),
            Availability::Disabled("“report” is QUEUED: it runs already.".into())
        );
        assert!(suspend(&[&upload]).availability().is_enabled());
        let mut paused = upload.clone();
        paused.state = JobState::Suspended;
        assert!(resume(&[&paused]).availability().is_enabled());
        assert!(!suspend(&[&paused]).availability().is_enabled());
        let mut empty = paused.clone();
        empty.files.clear();
        assert!(
            matches!(resume(&[&empty]).availability(), Availability::Disabled(why) if why.contains("BG_E_EMPTY"))
        );
        let done = job("old", JobState::Acknowledged, 10, 10, 0);
        assert!(
            matches!(cancel(&[&done]).availability(), Availability::Disabled(why) if why.contains("a finished job"))
        );
        assert_eq!(
            complete(&[]).availability(),
            Availability::Disabled("Select one or more jobs first.".into())
        );
    }

    #[test]
    fn bulk_actions_take_the_suitable_jobs_and_name_the_rest() {
        let ok = job("fine", JobState::Transferred, 10, 10, 0);
        let done = job("old", JobState::Acknowledged, 10, 10, 0);
        let gone = job("gone", JobState::Cancelled, 0, 10, 0);
        let split = cancel(&[&ok, &done, &gone]);
        assert!(split.availability().is_enabled());
        assert_eq!(split.ids(), [ok.id]);
        let text = split.skipped_text().expect("two skipped");
        assert!(
            text.starts_with("2 skipped: “old” is ACKNOWLEDGED"),
            "{text}"
        );
        assert!(cancel(&[&ok]).skipped_text().is_none());
        // Unnamed jobs are called by their file, never by a raw id.
        let mut unnamed = job("", JobState::Suspended, 0, 10, 0);
        unnamed.files[0].local_path = "/tmp/report.pdf".into();
        assert!(
            cancel_confirmation(&[&unnamed]).lines[0].starts_with("“report.pdf”"),
            "{:?}",
            cancel_confirmation(&[&unnamed])
        );
    }

    #[test]
    fn a_confirmation_for_hundreds_of_jobs_sums_up() {
        let jobs: Vec<Job> = (0..203)
            .map(|i| {
                job(
                    &format!("j{i}"),
                    JobState::Suspended,
                    20_000_000,
                    40_000_000,
                    i,
                )
            })
            .collect();
        let refs: Vec<&Job> = jobs.iter().collect();
        let text = cancel_confirmation(&refs);
        assert_eq!(
            text.summary,
            "203 jobs, 4.1 GB downloaded so far is deleted. The first 10 are listed."
        );
        assert_eq!(text.lines.len(), 203);
        assert_eq!(text.footer, "Cancel cannot be undone.");
    }

    #[test]
    fn confirmations_name_the_files() {
        let mut partial = job("two", JobState::Transferring, 10, 10, 0);
        let mut second = partial.files[0].clone();
        second.local_path = "/tmp/second.bin".into();
        second.transferred = false;
        second.bytes_transferred = 1500;
        second.bytes_total = Some(3000);
        partial.files.push(second);
        let text = complete_confirmation(&[&partial])
            .expect("files would be lost")
            .lines
            .join("\n");
        assert!(text.contains("Kept (1): f."), "{text}");
        assert!(
            text.contains("Discarded (1, 1.5 kB downloaded so far): second.bin."),
            "{text}"
        );
        let whole = job("whole", JobState::Transferred, 10, 10, 0);
        assert_eq!(complete_confirmation(&[&whole]), None);
        let text = cancel_confirmation(&[&partial]).lines.join("\n");
        assert!(
            text.contains("the temporary files of 2 file(s) are deleted"),
            "{text}"
        );
        let mut upload = job("up", JobState::Transferred, 10, 10, 0);
        upload.job_type = JobType::UploadReply;
        assert!(cancel_confirmation(&[&upload]).lines[0].contains("only the reply is discarded"));
    }
}
