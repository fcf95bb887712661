//! Which jobs run (spec §6): every FOREGROUND job at once, plus one background job chosen by
//! strict priority (HIGH > NORMAL > LOW) with round-robin time slices within a priority.
//! Pure: it reads the jobs and decides; the engine carries the decision out.

use crate::job::{Job, JobId, JobState, Priority, Timestamp, later};
use std::collections::HashMap;
use std::time::Duration;

#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Decision {
    /// Running jobs to send back to QUEUED (T7).
    pub yield_jobs: Vec<JobId>,
    /// QUEUED jobs to start (T4).
    pub start: Vec<JobId>,
}

/// Round-robin order within a priority: jobs that never had a slice first, then the one whose
/// slice is oldest; creation time breaks ties.
fn turn_key(
    job: &Job,
    slices: &HashMap<JobId, Timestamp>,
) -> (Priority, Option<Timestamp>, Timestamp, JobId) {
    (
        job.priority,
        slices.get(&job.id).copied(),
        job.times.created,
        job.id,
    )
}

pub(crate) fn decide(
    jobs: &HashMap<JobId, Job>,
    slices: &HashMap<JobId, Timestamp>,
    slice: Duration,
    now: Timestamp,
) -> Decision {
    let mut decision = Decision::default();
    let mut foreground: Vec<&Job> = jobs
        .values()
        .filter(|j| j.state == JobState::Queued && !j.priority.is_background())
        .collect();
    foreground.sort_by_key(|j| (j.times.created, j.id));
    decision.start.extend(foreground.iter().map(|j| j.id));

    let mut running: Vec<&Job> = jobs
        .values()
        .filter(|j| j.state.is_running() && j.priority.is_background())
        .collect();
    running.sort_by_key(|j| (j.priority, j.times.created, j.id));
    let mut queued: Vec<&Job> = jobs
        .values()
        .filter(|j| j.state == JobState::Queued && j.priority.is_background())
        .collect();
    queued.sort_by_key(|j| turn_key(j, slices));

    // Only one background job runs; a priority change can leave two for a moment.
    for extra in running.iter().skip(1) {
        decision.yield_jobs.push(extra.id);
    }
    match (running.first(), queued.first()) {
        (None, Some(next)) => decision.start.push(next.id),
        (Some(current), Some(next)) => {
            let preempt = next.priority < current.priority;
            let slice_over = next.priority == current.priority
                && slices
                    .get(&current.id)
                    .is_none_or(|started| later(*started, slice) <= now);
            if preempt || slice_over {
                decision.yield_jobs.push(current.id);
                decision.start.push(next.id);
            }
        }
        _ => {}
    }
    decision
}

/// When the running background job's slice ends, if another job of its priority is waiting.
pub(crate) fn slice_deadline(
    jobs: &HashMap<JobId, Job>,
    slices: &HashMap<JobId, Timestamp>,
    slice: Duration,
) -> Option<Timestamp> {
    let current = jobs
        .values()
        .find(|j| j.state.is_running() && j.priority.is_background())?;
    let waiting = jobs
        .values()
        .any(|j| j.state == JobState::Queued && j.priority == current.priority);
    waiting
        .then(|| slices.get(&current.id).map(|s| later(*s, slice)))
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::{JobDefaults, JobType};
    use chrono::TimeZone;

    fn t(secs: u64) -> Timestamp {
        let base = chrono::Utc
            .with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
            .single()
            .expect("date");
        later(base, Duration::from_secs(secs))
    }

    fn job(priority: Priority, state: JobState, created: u64) -> Job {
        let mut job = Job::new(
            JobId::new_random(),
            JobType::Download,
            "j",
            "u",
            &JobDefaults::default(),
            t(created),
        )
        .expect("job");
        job.priority = priority;
        job.state = state;
        job
    }

    fn map(jobs: &[&Job]) -> HashMap<JobId, Job> {
        jobs.iter().map(|j| (j.id, (*j).clone())).collect()
    }

    const SLICE: Duration = Duration::from_secs(300);

    #[test]
    fn all_foreground_jobs_run_plus_one_background() {
        let f1 = job(Priority::Foreground, JobState::Queued, 0);
        let f2 = job(Priority::Foreground, JobState::Queued, 1);
        let n1 = job(Priority::Normal, JobState::Queued, 2);
        let n2 = job(Priority::Normal, JobState::Queued, 3);
        let d = decide(&map(&[&f1, &f2, &n1, &n2]), &HashMap::new(), SLICE, t(10));
        assert_eq!(d.start, vec![f1.id, f2.id, n1.id]);
        assert!(d.yield_jobs.is_empty());
    }

    #[test]
    fn strict_priority_preempts() {
        let low = job(Priority::Low, JobState::Transferring, 0);
        let high = job(Priority::High, JobState::Queued, 5);
        let slices = HashMap::from([(low.id, t(0))]);
        let d = decide(&map(&[&low, &high]), &slices, SLICE, t(10));
        assert_eq!(
            d,
            Decision {
                yield_jobs: vec![low.id],
                start: vec![high.id]
            }
        );
        // A lower priority waits, whatever the slice.
        let normal = job(Priority::Normal, JobState::Transferring, 0);
        let low = job(Priority::Low, JobState::Queued, 5);
        let slices = HashMap::from([(normal.id, t(0))]);
        let d = decide(&map(&[&normal, &low]), &slices, SLICE, t(10_000));
        assert_eq!(d, Decision::default());
    }

    #[test]
    fn round_robin_within_a_priority() {
        let a = job(Priority::Normal, JobState::Transferring, 0);
        let b = job(Priority::Normal, JobState::Queued, 1);
        let slices = HashMap::from([(a.id, t(0))]);
        let jobs = map(&[&a, &b]);
        assert_eq!(decide(&jobs, &slices, SLICE, t(299)), Decision::default());
        assert_eq!(slice_deadline(&jobs, &slices, SLICE), Some(t(300)));
        let d = decide(&jobs, &slices, SLICE, t(300));
        assert_eq!(
            d,
            Decision {
                yield_jobs: vec![a.id],
                start: vec![b.id]
            }
        );
        // Without a competitor the slice does not end.
        let alone = map(&[&a]);
        assert_eq!(slice_deadline(&alone, &slices, SLICE), None);
        assert_eq!(
            decide(&alone, &slices, SLICE, t(10_000)),
            Decision::default()
        );
    }

    #[test]
    fn the_job_whose_turn_is_oldest_goes_next() {
        let a = job(Priority::Normal, JobState::Queued, 0);
        let b = job(Priority::Normal, JobState::Queued, 1);
        let c = job(Priority::Normal, JobState::Queued, 2);
        let slices = HashMap::from([(a.id, t(600)), (b.id, t(300))]);
        let d = decide(&map(&[&a, &b, &c]), &slices, SLICE, t(900));
        assert_eq!(d.start, vec![c.id], "never-served first");
        let d = decide(&map(&[&a, &b]), &slices, SLICE, t(900));
        assert_eq!(d.start, vec![b.id], "then the oldest turn");
    }

    #[test]
    fn errors_do_not_hold_the_background_slot() {
        let broken = job(Priority::High, JobState::TransientError, 0);
        let next = job(Priority::Low, JobState::Queued, 1);
        let d = decide(&map(&[&broken, &next]), &HashMap::new(), SLICE, t(0));
        assert_eq!(d.start, vec![next.id]);
    }
}
