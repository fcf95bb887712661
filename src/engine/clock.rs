//! The engine's clock, injectable so that tests cross a 90-day timeout in milliseconds.
//!
//! Job timers (retry delay, no-progress timeout, maximum download time, inactivity) run on this
//! clock. The system clock is monotonic and anchored to the wall clock when the engine starts: a
//! wall-clock jump does not shorten or stretch a timer; a restart re-bases them, as in BITS §4.1.
//! I/O pacing (checkpoints, progress reports) uses tokio's own time and is not part of the model.

use crate::job::{Timestamp, later};
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::sync::watch;

pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Timestamp;
    /// The wall clock as it reads now, for what follows the calendar (the bandwidth schedule)
    /// rather than elapsed time. A manual clock's own time.
    fn wall_now(&self) -> Timestamp {
        self.now()
    }
    /// Completes when `now() >= deadline`.
    fn sleep_until(&self, deadline: Timestamp) -> Pin<Box<dyn Future<Output = ()> + Send + '_>>;
}

/// Monotonic time anchored to the wall clock at creation.
pub struct SystemClock {
    anchor_wall: Timestamp,
    anchor_mono: Instant,
}

impl Default for SystemClock {
    fn default() -> Self {
        Self {
            anchor_wall: chrono::Utc::now(),
            anchor_mono: Instant::now(),
        }
    }
}

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        later(self.anchor_wall, self.anchor_mono.elapsed())
    }

    fn wall_now(&self) -> Timestamp {
        chrono::Utc::now()
    }

    fn sleep_until(&self, deadline: Timestamp) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        let wait = (deadline - self.now()).to_std().unwrap_or(Duration::ZERO);
        // Far deadlines are re-checked daily rather than trusted to one enormous timer.
        let wait = wait.min(Duration::from_secs(24 * 3600));
        Box::pin(tokio::time::sleep(wait))
    }
}

/// A clock that moves only when told to.
pub struct ManualClock {
    now: Mutex<Timestamp>,
    changed: watch::Sender<Timestamp>,
}

impl ManualClock {
    pub fn new(start: Timestamp) -> Self {
        Self {
            now: Mutex::new(start),
            changed: watch::Sender::new(start),
        }
    }

    pub fn advance(&self, by: Duration) {
        let mut now = self.now.lock().unwrap_or_else(|e| e.into_inner());
        *now = later(*now, by);
        self.changed.send_replace(*now);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        *self.now.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn sleep_until(&self, deadline: Timestamp) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        let mut changes = self.changed.subscribe();
        Box::pin(async move {
            while *changes.borrow_and_update() < deadline {
                if changes.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
        })
    }
}
