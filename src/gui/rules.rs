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

const NOTHING_SELECTED: &str = "Select one or more jobs first.";

fn refusal(job: &Job, error: &BitsError) -> String {
    format!(
        "“{}” is {}: {} ({} {}).",
        job.display_name,
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

fn every(jobs: &[&Job], check: impl Fn(&Job) -> Result<(), BitsError>) -> Availability {
    if jobs.is_empty() {
        return Availability::Disabled(NOTHING_SELECTED.into());
    }
    for job in jobs {
        if let Err(error) = check(job) {
            return Availability::Disabled(refusal(job, &error));
        }
    }
    Availability::Enabled
}

/// Complete (spec §3.4): every selected job must allow it.
pub fn complete(jobs: &[&Job]) -> Availability {
    every(jobs, job::check_complete)
}

/// Cancel (spec §3.5): every selected job must allow it.
pub fn cancel(jobs: &[&Job]) -> Availability {
    every(jobs, job::check_cancel)
}

/// Resume: any non-final job with at least one file (BG_E_EMPTY otherwise).
pub fn resume(jobs: &[&Job]) -> Availability {
    every(jobs, |job| {
        if job.state.is_final() {
            job::check_cancel(job)
        } else if job.files.is_empty() {
            Err(BitsError::from_code(job::ErrorCode::Empty))
        } else {
            Ok(())
        }
    })
}

/// Suspend and the property changes: any non-final job.
pub fn suspend(jobs: &[&Job]) -> Availability {
    every(jobs, job::check_cancel)
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
pub fn complete_confirmation(jobs: &[&Job]) -> Option<String> {
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
            job.display_name,
            pending.len(),
            format::bytes(partial),
            names(&pending)
        ));
    }
    if lines.is_empty() {
        return None;
    }
    lines.push("Complete anyway? Discarded files are deleted and cannot be resumed.".into());
    Some(lines.join("\n"))
}

/// What a Cancel deletes (spec §3.5), one paragraph per job.
pub fn cancel_confirmation(jobs: &[&Job]) -> String {
    let mut lines = Vec::new();
    for job in jobs {
        let line = match job.job_type {
            JobType::Download => {
                let doomed: Vec<&JobFile> = job.files.iter().filter(|f| !f.completed).collect();
                let bytes: u64 = doomed.iter().map(|f| f.bytes_transferred).sum();
                if doomed.is_empty() {
                    format!("“{}”: no file is deleted.", job.display_name)
                } else {
                    format!(
                        "“{}”: the temporary files of {} file(s) are deleted ({} downloaded): {}.",
                        job.display_name,
                        doomed.len(),
                        format::bytes(bytes),
                        names(&doomed)
                    )
                }
            }
            JobType::Upload if job.state == JobState::Transferred => format!(
                "“{}”: the upload is finished; the file on the server stays.",
                job.display_name
            ),
            JobType::Upload => format!(
                "“{}”: the partial upload on the server is discarded.",
                job.display_name
            ),
            JobType::UploadReply if job.state == JobState::Transferred => format!(
                "“{}”: the upload is finished; only the reply is discarded.",
                job.display_name
            ),
            JobType::UploadReply => format!(
                "“{}”: the partial upload on the server and the reply are discarded.",
                job.display_name
            ),
        };
        lines.push(line);
    }
    lines.push("Cancel cannot be undone.".into());
    lines.join("\n")
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
            complete(&[&upload]),
            Availability::Disabled(
                "“report” is QUEUED: an upload job can be completed only when it is TRANSFERRED \
                 (BG_E_INVALID_STATE 0x80200002)."
                    .into()
            )
        );
        assert_eq!(resume(&[&upload]), Availability::Enabled);
        let mut empty = upload.clone();
        empty.files.clear();
        assert!(
            matches!(resume(&[&empty]), Availability::Disabled(why) if why.contains("BG_E_EMPTY"))
        );
        let done = job("old", JobState::Acknowledged, 10, 10, 0);
        assert!(
            matches!(cancel(&[&done]), Availability::Disabled(why) if why.contains("a finished job"))
        );
        assert_eq!(
            complete(&[]),
            Availability::Disabled("Select one or more jobs first.".into())
        );
        // One refusing job disables the button for the whole selection.
        let ok = job("fine", JobState::Transferred, 10, 10, 0);
        assert!(complete(&[&ok]).is_enabled());
        assert!(!complete(&[&ok, &upload]).is_enabled());
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
        let text = complete_confirmation(&[&partial]).expect("files would be lost");
        assert!(text.contains("Kept (1): f."), "{text}");
        assert!(
            text.contains("Discarded (1, 1.5 kB downloaded so far): second.bin."),
            "{text}"
        );
        let whole = job("whole", JobState::Transferred, 10, 10, 0);
        assert_eq!(complete_confirmation(&[&whole]), None);
        let text = cancel_confirmation(&[&partial]);
        assert!(
            text.contains("the temporary files of 2 file(s) are deleted"),
            "{text}"
        );
        let mut upload = job("up", JobState::Transferred, 10, 10, 0);
        upload.job_type = JobType::UploadReply;
        assert!(cancel_confirmation(&[&upload]).contains("only the reply is discarded"));
    }
}
