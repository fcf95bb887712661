//! The bandwidth policy carried out (spec §5, T28): the actor reads the wall clock, asks the
//! policy what holds now ([`crate::job::BandwidthPolicy::at`]), holds or releases background
//! jobs, and sets their buckets to the limit of their priority.
//!
//! The schedule follows the wall clock's local time ([`super::clock::Clock::wall_now`]), read
//! again at least every [`POLICY_RECHECK`]: a clock set by hand, a time-zone change or a night
//! of suspend (when the monotonic timers stop) moves the windows within that. BITS only notices
//! such changes at its next start.

use super::actor::{Actor, Persist};
use crate::job::{ClassLimit, Event, Job, JobId, JobState, Rate, later};
use chrono::Timelike;
use std::time::Duration;

/// The longest the actor goes without looking at the schedule while it has windows.
pub(super) const POLICY_RECHECK: Duration = Duration::from_secs(60);

impl Actor {
    /// Holds the background jobs whose priority the policy blocks now, releases those it no
    /// longer blocks, and moves every job's bucket to its limit.
    pub(super) async fn apply_policy(&mut self) {
        let now = self.now();
        let wall = self.clock.wall_now();
        let policy = self.config.schedule_at(wall);
        self.policy_deadline = policy.minutes_left.map(|minutes| {
            // Time zones are whole minutes from UTC: the second is the local one.
            let into_minute = f64::from(wall.second()) + f64::from(wall.nanosecond()) / 1e9;
            let to_boundary = (f64::from(minutes) * 60.0 - into_minute).max(0.001);
            later(
                now,
                Duration::from_secs_f64(to_boundary).min(POLICY_RECHECK),
            )
        });
        let changed = policy.limits != self.policy_now.limits;
        self.policy_now = policy;
        // (`for_priority` gives FOREGROUND no limit: it is never held.)
        let blocked = |job: &Job| policy.limits.for_priority(job.priority) == ClassLimit::Blocked;
        let hold: Vec<JobId> = self
            .jobs
            .values()
            .filter(|j| blocked(j) && (j.state == JobState::Queued || j.state.is_running()))
            .map(|j| j.id)
            .collect();
        let release: Vec<JobId> = self
            .jobs
            .values()
            .filter(|j| j.is_blocked_by_policy() && !blocked(j))
            .map(|j| j.id)
            .collect();
        for id in hold {
            let _ = self.apply(id, Event::PolicyBlocked, Persist::Now).await;
        }
        for id in release {
            let _ = self.apply(id, Event::PolicyLifted, Persist::Now).await;
        }
        if changed {
            let ids: Vec<JobId> = self.job_paces.keys().copied().collect();
            for id in ids {
                self.sync_job_bucket(id);
            }
        }
    }

    /// The limit a job's own bucket holds: its `limit_rate`, or its priority's limit under the
    /// policy, whichever is lower.
    pub(super) fn job_rate(&self, job: &Job) -> Option<Rate> {
        let policy = self.policy_now.limits.for_priority(job.priority).rate();
        match (job.limit_rate, policy) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Sets the job's pace (if it has one) to [`Actor::job_rate`] and its priority: a running
    /// transfer feels the change at once (a job made FOREGROUND no longer gives way to other
    /// traffic).
    pub(super) fn sync_job_bucket(&self, id: JobId) {
        if let (Some(pace), Some(job)) = (self.job_paces.get(&id), self.jobs.get(&id)) {
            pace.set(self.job_rate(job), job.priority.is_background());
        }
    }
}
