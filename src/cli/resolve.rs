//! Naming a job on the command line: its id, a unique prefix of the id, or a display name that
//! no other job of the caller has.

use crate::job::{BitsError, ErrorCode, Job};

/// Finds the one job `token` names among `jobs`.
pub fn resolve<'a>(jobs: &'a [Job], token: &str) -> Result<&'a Job, BitsError> {
    let id_text = token
        .trim()
        .trim_start_matches('{')
        .trim_end_matches('}')
        .to_ascii_lowercase();
    if let Some(job) = jobs
        .iter()
        .find(|j| j.id.0.hyphenated().to_string() == id_text)
    {
        return Ok(job);
    }
    let is_prefix =
        !id_text.is_empty() && id_text.chars().all(|c| c.is_ascii_hexdigit() || c == '-');
    let candidates: Vec<&Job> = jobs
        .iter()
        .filter(|j| {
            j.display_name == token
                || (is_prefix && j.id.0.hyphenated().to_string().starts_with(&id_text))
        })
        .collect();
    match candidates.as_slice() {
        [one] => Ok(one),
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
}
