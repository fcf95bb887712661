//! Speed limits: token buckets that transfers pace themselves on.
//!
//! A transfer spends a bucket's tokens for every chunk it moves ([`Throttle::spend`]) and, before
//! it moves the next, waits until none of its buckets is in debt ([`Throttle::ready`]). A
//! download that waits stops reading its socket, so TCP's window closes and the server slows
//! down: nothing is dropped or buffered beyond the socket's own buffer. Buckets are shared: the
//! job's by all its connections, the global one by every transfer in that direction; a bucket's
//! rate changes live ([`Bucket::set_rate`]) and a waiting transfer sees a change within
//! [`MAX_NAP`].
//!
//! The arithmetic ([`BucketState`]) takes the time as an argument, so its tests need no clock;
//! the waiting uses tokio's clock.

use crate::job::Rate;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// The longest a waiting transfer sleeps before it looks at its buckets again: a limit changed
/// mid-transfer takes effect within this (plus one chunk).
pub const MAX_NAP: Duration = Duration::from_millis(100);

/// The tokens a full bucket holds: 50 ms of its rate, at least 16 KiB. Small, so that an idle
/// moment does not turn into a burst above the limit; not smaller than a typical read.
fn burst(rate: u64) -> f64 {
    (rate / 20).max(16 * 1024) as f64
}

/// A token bucket's arithmetic, at explicit times.
#[derive(Debug)]
pub struct BucketState {
    rate: Option<u64>,
    /// May go negative: a transfer spends a whole chunk at once, then waits out the debt.
    tokens: f64,
    at: Instant,
}

impl BucketState {
    pub fn new(rate: Option<Rate>, now: Instant) -> Self {
        let rate = rate.map(Rate::bytes_per_second);
        Self {
            rate,
            tokens: rate.map_or(0.0, burst),
            at: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.at = self.at.max(now);
        if let Some(rate) = self.rate {
            self.tokens = (self.tokens + elapsed * rate as f64).min(burst(rate));
        }
    }

    pub fn spend(&mut self, bytes: u64, now: Instant) {
        self.refill(now);
        if self.rate.is_some() {
            self.tokens -= bytes as f64;
        }
    }

    /// How long until the bucket is out of debt; `None` when it is not in debt (or unlimited).
    pub fn wait(&mut self, now: Instant) -> Option<Duration> {
        self.refill(now);
        let rate = self.rate?;
        (self.tokens < 0.0).then(|| Duration::from_secs_f64(-self.tokens / rate as f64))
    }

    /// A new rate from `now` on: time before `now` is counted at the old rate. A debt is kept
    /// (repaid at the new rate); no limit forgives it.
    pub fn set_rate(&mut self, rate: Option<Rate>, now: Instant) {
        self.refill(now);
        let rate = rate.map(Rate::bytes_per_second);
        match (self.rate, rate) {
            (_, None) => self.tokens = 0.0,
            (None, Some(rate)) => self.tokens = burst(rate),
            (Some(_), Some(rate)) => self.tokens = self.tokens.min(burst(rate)),
        }
        self.rate = rate;
    }

    pub fn rate(&self) -> Option<u64> {
        self.rate
    }
}

/// A bucket shared by the transfers it limits.
#[derive(Debug)]
pub struct Bucket {
    state: Mutex<BucketState>,
    /// Every byte spent on it, limited or not: the global buckets count all of Ferry's traffic
    /// in their direction (what the idle-bandwidth controller subtracts from an interface's).
    moved: AtomicU64,
}

impl Bucket {
    pub fn new(rate: Option<Rate>) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(BucketState::new(rate, Instant::now())),
            moved: AtomicU64::new(0),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, BucketState> {
        // The state is a few numbers, consistent after every statement: a panic elsewhere
        // cannot leave it half-changed.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn spend(&self, bytes: u64, now: Instant) {
        self.moved.fetch_add(bytes, Ordering::Relaxed);
        self.state().spend(bytes, now);
    }

    /// Bytes spent on the bucket since it was made.
    pub fn moved(&self) -> u64 {
        self.moved.load(Ordering::Relaxed)
    }

    pub fn set_rate(&self, rate: Option<Rate>) {
        self.state().set_rate(rate, Instant::now());
    }

    pub fn rate(&self) -> Option<u64> {
        self.state().rate()
    }
}

/// What of a job's pace is the job's own, kept by the actor while the job is in the queue so
/// that a change reaches a running transfer at once: its bucket (its own limit, or its
/// priority's in the bandwidth schedule, the lower), shared by all its connections, and whether
/// it passes through the idle-bandwidth gate (it is a background job).
#[derive(Clone, Debug)]
pub struct JobPace {
    pub bucket: Arc<Bucket>,
    pub background: Arc<AtomicBool>,
}

impl Default for JobPace {
    fn default() -> Self {
        Self {
            bucket: Bucket::new(None),
            background: Arc::new(AtomicBool::new(false)),
        }
    }
}

impl JobPace {
    pub fn set(&self, rate: Option<Rate>, background: bool) {
        self.bucket.set_rate(rate);
        self.background.store(background, Ordering::Relaxed);
    }
}

/// A bucket that binds a transfer only while `applies` holds: the idle-bandwidth bucket of
/// background jobs, which a job leaves when it becomes FOREGROUND mid-transfer.
#[derive(Clone, Debug)]
pub struct Gate {
    pub bucket: Arc<Bucket>,
    pub applies: Arc<AtomicBool>,
}

/// The buckets one transfer paces itself on (the job's, the global one of its direction, and
/// the idle-bandwidth gate of background jobs). Empty: no limit.
#[derive(Clone, Debug, Default)]
pub struct Throttle {
    buckets: Vec<Arc<Bucket>>,
    gate: Option<Gate>,
}

impl Throttle {
    pub fn new(buckets: Vec<Arc<Bucket>>) -> Self {
        Self {
            buckets,
            gate: None,
        }
    }

    pub fn with_gate(mut self, gate: Gate) -> Self {
        self.gate = Some(gate);
        self
    }

    /// The buckets that bind now.
    fn binding(&self) -> impl Iterator<Item = &Arc<Bucket>> {
        let gate = self
            .gate
            .as_ref()
            .filter(|g| g.applies.load(Ordering::Relaxed))
            .map(|g| &g.bucket);
        self.buckets.iter().chain(gate)
    }

    /// `bytes` moved: every binding bucket pays for them.
    pub fn spend(&self, bytes: usize) {
        let now = Instant::now();
        for bucket in self.binding() {
            bucket.spend(bytes as u64, now);
        }
    }

    /// Whether a bucket is in debt now (the transfer must wait before it moves more).
    pub fn must_wait(&self) -> bool {
        let now = Instant::now();
        self.binding().any(|b| b.state().wait(now).is_some())
    }

    /// Whether any bucket limits at all (a transfer then moves in small steps, so that a change
    /// of limit takes effect soon).
    pub fn is_limited(&self) -> bool {
        self.binding().any(|b| b.rate().is_some())
    }

    /// The lowest limit of its buckets, in bytes per second.
    pub fn lowest_rate(&self) -> Option<u64> {
        self.binding().filter_map(|b| b.rate()).min()
    }

    /// What the lowest limit moves in `time`, and at least `floor` bytes: how much one request
    /// may carry under the limit. `None`: no limit.
    pub fn bytes_in(&self, time: Duration, floor: u64) -> Option<u64> {
        let rate = self.lowest_rate()?;
        Some(((rate as f64 * time.as_secs_f64()) as u64).max(floor))
    }

    /// Returns once no bucket is in debt. Cancel-safe: it only reads the buckets, so a transfer
    /// may drop it (to stop, or to report progress) and call it again.
    pub async fn ready(&self) {
        loop {
            let now = Instant::now();
            let wait = self.binding().filter_map(|b| b.state().wait(now)).max();
            match wait {
                None => return,
                Some(wait) => tokio::time::sleep(wait.min(MAX_NAP)).await,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1024 * 1024;

    fn rate(text: &str) -> Option<Rate> {
        Some(Rate::parse(text).expect("a rate"))
    }

    /// Drives one bucket the way a transfer does (spend a chunk, wait out the debt) and returns
    /// the time it took to move `total` bytes in `chunk`-byte steps.
    fn time_to_move(bucket: &mut BucketState, start: Instant, total: u64, chunk: u64) -> Duration {
        let mut now = start;
        let mut moved = 0;
        while moved < total {
            if let Some(wait) = bucket.wait(now) {
                now += wait;
            }
            bucket.spend(chunk, now);
            moved += chunk;
        }
        now - start
    }

    #[test]
    fn a_limited_bucket_moves_bytes_at_its_rate() {
        let start = Instant::now();
        for chunk in [16 * 1024, 64 * 1024, 400 * 1024] {
            let mut bucket = BucketState::new(rate("2M"), start);
            let took = time_to_move(&mut bucket, start, 16 * MIB, chunk);
            // 8 s, less the first burst (100 KiB) and the last chunk, which is spent unpaid.
            let secs = took.as_secs_f64();
            assert!((7.6..=8.0).contains(&secs), "{chunk}-byte chunks: {secs} s");
        }
    }

    #[test]
    fn an_unlimited_bucket_never_waits() {
        let start = Instant::now();
        let mut bucket = BucketState::new(None, start);
        bucket.spend(100 * MIB, start);
        assert_eq!(bucket.wait(start), None);
    }

    #[test]
    fn idle_time_does_not_become_a_burst_above_the_limit() {
        let start = Instant::now();
        let mut bucket = BucketState::new(rate("1M"), start);
        let later = start + Duration::from_secs(60);
        // After a minute idle, the bucket holds 50 ms worth, not a minute's.
        bucket.spend(MIB, later);
        let wait = bucket.wait(later).expect("in debt");
        let expected = (MIB as f64 - burst(MIB)) / MIB as f64;
        assert!((wait.as_secs_f64() - expected).abs() < 1e-6, "{wait:?}");
    }

    #[test]
    fn a_new_rate_applies_from_the_moment_it_is_set() {
        let start = Instant::now();
        let mut bucket = BucketState::new(rate("1M"), start);
        bucket.spend(2 * MIB, start);
        // Half a second at 1 MiB/s repays half a MiB; then 4 MiB/s.
        let half = start + Duration::from_millis(500);
        bucket.set_rate(rate("4M"), half);
        let wait = bucket.wait(half).expect("still in debt");
        let debt = 2.0 * MIB as f64 - burst(MIB) - 0.5 * MIB as f64;
        assert!((wait.as_secs_f64() - debt / (4 * MIB) as f64).abs() < 1e-6);
        // No limit forgives the debt at once.
        bucket.set_rate(None, half);
        assert_eq!(bucket.wait(half), None);
        // A limit again starts with a full bucket, not a debt.
        bucket.set_rate(rate("1M"), half);
        bucket.spend(burst(MIB) as u64, half);
        assert_eq!(bucket.wait(half), None);
    }

    #[test]
    fn a_clock_that_goes_back_adds_nothing() {
        let start = Instant::now() + Duration::from_secs(10);
        let mut bucket = BucketState::new(rate("1M"), start);
        bucket.spend(MIB, start);
        let before = bucket.wait(start).expect("in debt");
        let earlier = start - Duration::from_secs(5);
        assert_eq!(bucket.wait(earlier), Some(before));
    }

    #[tokio::test(start_paused = true)]
    async fn transfers_sharing_a_bucket_share_its_rate() {
        // Two transfers of 64 KiB chunks on one 1 MiB/s bucket (paused clock: sleeps advance it).
        let bucket = Bucket::new(rate("1M"));
        let start = Instant::now();
        let mover = |throttle: Throttle| async move {
            for _ in 0..32 {
                throttle.ready().await;
                throttle.spend(64 * 1024);
            }
        };
        let a = Throttle::new(vec![bucket.clone()]);
        let b = Throttle::new(vec![bucket.clone()]);
        tokio::join!(mover(a), mover(b));
        // 4 MiB moved at 1 MiB/s: about 4 s (less the burst and the last chunks).
        let secs = start.elapsed().as_secs_f64();
        assert!((3.7..=4.05).contains(&secs), "{secs} s");
    }

    /// Seconds (of tokio's clock) that `chunks` chunks of 64 KiB take through `throttle`.
    async fn seconds_for(throttle: &Throttle, chunks: usize) -> f64 {
        let start = Instant::now();
        for _ in 0..chunks {
            throttle.ready().await;
            throttle.spend(64 * 1024);
        }
        start.elapsed().as_secs_f64()
    }

    #[tokio::test(start_paused = true)]
    async fn the_slowest_bucket_sets_the_pace() {
        let job = Bucket::new(rate("512K"));
        let global = Bucket::new(rate("4M"));
        let throttle = Throttle::new(vec![job.clone(), global]);
        let secs = seconds_for(&throttle, 16).await;
        assert!((1.7..=2.0).contains(&secs), "1 MiB at 512 KiB/s: {secs} s");
        // Lifted mid-way, the job goes at the global rate from the next nap on.
        job.set_rate(None);
        let secs = seconds_for(&throttle, 64).await;
        assert!((0.85..=1.05).contains(&secs), "4 MiB at 4 MiB/s: {secs} s");
    }
}
