//! Naming a job on the command line: its id, a unique prefix of the id, or a display name that
//! no other job of the caller has.

use crate::job::{BitsError, ErrorCode, Job};

/// Finds the one job `token` names. Jobs still in the queue come first: a name matches a job
/// that has ended only when no queued job matches it, so that yesterday's completed "nightly"
/// does not make today's "nightly" ambiguous.
pub fn resolve<'a>(jobs: &'a [Job], token: &str) -> Result<&'a Job, BitsError> {
    let (queued, ended): (Vec<&Job>, Vec<&Job>) = jobs.iter().partition(|j| !j.state.is_final());
    let mut candidates = matches(&queued, token);
    if candidates.is_empty() {
        candidates = matches(&ended, token);
    }
    match candidates.as_slice() {
        [one] => Ok(*one),
        [] => Err(BitsError::new(
            ErrorCode::NotFound,
            format!(
                "no job is named {token:?} or has an id starting with it; `ferry list \
                 --all-states` shows your jobs"
            ),
        )),
        several => {
            let list: Vec<String> = several
                .iter()
                .map(|j| format!("  {}  {}  {}", j.id.0, j.state, j.display_name))
                .collect();
            Err(BitsError::new(
                ErrorCode::NotFound,
                format!(
                    "{token:?} matches {} jobs; name one by its id:\n{}",
                    several.len(),
                    list.join("\n")
                ),
            ))
        }
    }
}

/// The jobs `token` may name: the one with exactly that id, else those with that display name
/// or an id that starts with it.
fn matches<'a>(jobs: &[&'a Job], token: &str) -> Vec<&'a Job> {
    let id_text = token
        .trim()
        .trim_start_matches('{')
        .trim_end_matches('}')
        .to_ascii_lowercase();
    let id_of = |job: &Job| job.id.0.hyphenated().to_string();
    if let Some(job) = jobs.iter().find(|j| id_of(j) == id_text) {
        return vec![*job];
    }
    let is_prefix =
        !id_text.is_empty() && id_text.chars().all(|c| c.is_ascii_hexdigit() || c == '-');
    jobs.iter()
        .copied()
        .filter(|j| j.display_name == token || (is_prefix && id_of(j).starts_with(&id_text)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::{JobDefaults, JobId, JobType};

    fn job(id: &str, name: &str) -> Job {
        Job::new(
            JobId::parse(id).expect("id"),
            JobType::Download,
            name,
            "me",
            &JobDefaults::default(),
            chrono::DateTime::UNIX_EPOCH,
        )
        .expect("job")
    }

    #[test]
    fn names_ids_and_prefixes() {
        let jobs = [
            job("aaaaaaaa-0000-4000-8000-000000000001", "iso"),
            job("aaaabbbb-0000-4000-8000-000000000002", "photos"),
            job("cccccccc-0000-4000-8000-000000000003", "photos"),
        ];
        let id_of = |token: &str| resolve(&jobs, token).map(|j| j.id);
        assert_eq!(id_of("iso"), Ok(jobs[0].id));
        assert_eq!(
            id_of("{AAAAAAAA-0000-4000-8000-000000000001}"),
            Ok(jobs[0].id)
        );
        assert_eq!(id_of("aaaab"), Ok(jobs[1].id));
        assert_eq!(id_of("c"), Ok(jobs[2].id));
        let ambiguous = id_of("photos").expect_err("two jobs are named photos");
        assert!(ambiguous.message.contains("matches 2 jobs"), "{ambiguous}");
        assert!(ambiguous.message.contains("cccccccc-"), "{ambiguous}");
        let prefix = id_of("aaaa").expect_err("two ids start with aaaa");
        assert!(prefix.message.contains("matches 2 jobs"), "{prefix}");
        assert_eq!(
            id_of("nothing").map_err(|e| e.code),
            Err(ErrorCode::NotFound)
        );
    }

    #[test]
    fn a_job_in_the_queue_wins_over_one_that_ended() {
        let mut old = job("aaaaaaaa-0000-4000-8000-000000000001", "nightly");
        old.state = crate::job::JobState::Acknowledged;
        let new = job("bbbbbbbb-0000-4000-8000-000000000002", "nightly");
        let jobs = [old, new];
        assert_eq!(resolve(&jobs, "nightly").map(|j| j.id), Ok(jobs[1].id));
        // Ended jobs are still found when nothing in the queue matches.
        assert_eq!(resolve(&jobs, "aaaa").map(|j| j.id), Ok(jobs[0].id));
    }
}
