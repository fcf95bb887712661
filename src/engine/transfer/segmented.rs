//! One file over several connections (aria2-like), into its one temp file with positioned writes.
//!
//! The file is a list of pieces that cover it. Each connection owns one piece and fetches it
//! with a ranged GET tied to the file's version by `If-Range`; a connection whose piece is done
//! takes a piece nobody owns, or steals the far half of the piece with the most bytes left. A
//! piece is never split below [`MIN_SEGMENT`]. Connections are added in steps (1, 4, 16) while the
//! newest ones bring bytes of their own (see [`Ramp`]), up to the job's setting and the host cap.
//!
//! One writer thread owns the file: it writes each chunk where it belongs, flushes once a second,
//! and only then moves each piece's `flushed` mark, which is what the checkpoint records: a crash
//! at any moment resumes every piece where its flushed bytes end.
//!
//! Every answer is judged before a byte of it is written: a piece's 206 must be the range asked
//! for ([`http::check_partial`]) of the same version of the file ([`http::same_version`]). An
//! answer of another version restarts the whole file on one connection (never a spliced file:
//! a changed file, or servers behind one name that disagree); a server that ignores ranges on a
//! later connection keeps the connections it has, its pieces go back to the connection they
//! were taken from, and none is added.

use super::{Report, Stopped, Worker};
use crate::engine::http;
use crate::job::{ErrorClass, Failure, Segment, Validators};
use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use reqwest::StatusCode;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, mpsc, watch};

/// The smallest piece a split leaves (aria2's `-k`): smaller ones cost a request for little.
/// Small, so that at the end idle connections still take over the last bytes of a slow one
/// (a fresh request often comes faster than a throttled connection's next burst).
pub(crate) const MIN_SEGMENT: u64 = 256 << 10;
/// A file is split when this much of it is left: below, one connection is as quick.
const SPLIT_FILE_MIN: u64 = 2 << 20;
/// How often the pieces are reported.
const TICK: Duration = Duration::from_millis(50);
/// How often the ramp decides, while it may still add connections.
const RAMP_TICK: Duration = Duration::from_millis(5);
/// How long after its first byte a connection is measured (the ramp's yardstick): this many
/// round trips (the time to the first answer's headers), within the bounds below. Short on a
/// near server, so that connections come at once; long enough far away to see past bursts.
const RAMP_ROUND_TRIPS: u32 = 8;
const RAMP_WINDOW_MIN: Duration = Duration::from_millis(20);
const RAMP_WINDOW_MAX: Duration = Duration::from_secs(1);

/// The ramp's window for a server that answered after `latency`.
fn ramp_window(latency: Duration) -> Duration {
    (latency * RAMP_ROUND_TRIPS).clamp(RAMP_WINDOW_MIN, RAMP_WINDOW_MAX)
}
/// A step counts as growth when its connections bring at least this share of what the first
/// connection brought alone.
const GROWTH: f64 = 0.75;
/// Chunks in flight between the connections and the disk. Each queued chunk pins the read buffer
/// it was split from (up to ~400 KB a connection), so the queue is what a download's memory
/// grows with: 16 made a 16-connection download from a 4 MiB/s server peak at 35 MiB, 4 at
/// 26 MiB. At full speed a deeper queue smooths the writer's bursts: 1 GiB took 6% longer with
/// 4 than with 16 (8: 3%, but 32 MiB), still under curl's time.
const QUEUE_DEPTH: usize = 4;
/// How often written pieces are flushed to disk (as for one connection).
const SYNC_INTERVAL: Duration = Duration::from_secs(1);

/// A file can be split when it is this large from where it stands.
pub(crate) fn worth_splitting(remaining: u64) -> bool {
    remaining >= SPLIT_FILE_MIN
}

#[derive(Clone, Debug)]
struct Piece {
    start: u64,
    end: u64,
    /// Handed to the writer (by the owning connection).
    claimed: u64,
    /// Written to the file (by the writer thread).
    written: u64,
    /// Flushed to disk (by the writer thread, after a sync).
    flushed: u64,
    owner: Option<usize>,
}

/// Work for a connection: piece `piece`, from `from` to `to`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Work {
    pub piece: usize,
    pub from: u64,
    pub to: u64,
}

/// The pieces of a file, shared by its connections and its writer thread. Pieces are only
/// appended (their index is their name); their order in the file is by `start`.
#[derive(Debug, Default)]
pub(crate) struct Plan {
    pieces: Vec<Piece>,
    /// What each connection (its index) brought first, for the ramp, and in what window
    /// (known at the first answer).
    early: Vec<Early>,
    window: Option<Duration>,
}

impl Plan {
    /// A file of `size` bytes whose first `at` bytes are on disk, the rest owned by connection 0.
    pub fn fresh(size: u64, at: u64) -> Plan {
        let mut plan = Plan::default();
        if at > 0 {
            plan.pieces.push(Piece {
                start: 0,
                end: at,
                claimed: at,
                written: at,
                flushed: at,
                owner: None,
            });
        }
        if at < size {
            plan.pieces.push(Piece {
                start: at,
                end: size,
                claimed: at,
                written: at,
                flushed: at,
                owner: Some(0),
            });
        }
        plan
    }

    /// The pieces of a checkpoint: each resumes where its flushed bytes end.
    pub fn resume(segments: &[Segment]) -> Plan {
        let pieces = segments
            .iter()
            .map(|s| Piece {
                start: s.start,
                end: s.end,
                claimed: s.flushed,
                written: s.flushed,
                flushed: s.flushed,
                owner: None,
            })
            .collect();
        Plan {
            pieces,
            early: Vec::new(),
            window: None,
        }
    }

    /// What connection 0 fetches first in a fresh plan.
    pub fn first_work(&self) -> Option<Work> {
        self.pieces
            .iter()
            .enumerate()
            .find(|(_, p)| p.owner == Some(0))
            .map(|(piece, p)| Work {
                piece,
                from: p.claimed,
                to: p.end,
            })
    }

    /// Work for an idle connection: a piece nobody owns, else the far half of the owned piece
    /// with the most bytes left (if both halves keep [`MIN_SEGMENT`]).
    pub fn take(&mut self, connection: usize) -> Option<Work> {
        if let Some((piece, p)) = self
            .pieces
            .iter_mut()
            .enumerate()
            .filter(|(_, p)| p.owner.is_none() && p.claimed < p.end)
            .min_by_key(|(_, p)| p.start)
        {
            p.owner = Some(connection);
            return Some(Work {
                piece,
                from: p.claimed,
                to: p.end,
            });
        }
        let victim = self
            .pieces
            .iter_mut()
            .filter(|p| p.owner.is_some())
            .max_by_key(|p| p.end - p.claimed)?;
        let left = victim.end - victim.claimed;
        if left < 2 * MIN_SEGMENT {
            return None;
        }
        let middle = victim.claimed + left / 2;
        let end = std::mem::replace(&mut victim.end, middle);
        self.pieces.push(Piece {
            start: middle,
            end,
            claimed: middle,
            written: middle,
            flushed: middle,
            owner: Some(connection),
        });
        Some(Work {
            piece: self.pieces.len() - 1,
            from: middle,
            to: end,
        })
    }

    /// Work for a connection opened at the end, when nothing is left to split: all that is left
    /// of the piece whose connection has been quiet longest, at least `quiet` (as `now`). Its
    /// connection stops at its next bytes; a fresh request is often quicker than a stalled or
    /// throttled connection's next burst.
    pub fn take_stalled(
        &mut self,
        connection: usize,
        now: Duration,
        quiet: Duration,
    ) -> Option<Work> {
        let early = &self.early;
        // A connection waiting on a speed limit is not quiet, whatever its last byte.
        let since = |owner: usize| {
            early
                .get(owner)
                .filter(|e| !e.pacing)
                .and_then(|e| e.last_byte)
                .map(|last| now.saturating_sub(last))
        };
        let victim = self
            .pieces
            .iter_mut()
            .filter(|p| p.claimed < p.end)
            .filter_map(|p| Some((since(p.owner?)?, p)))
            .filter(|(quiet_for, _)| *quiet_for >= quiet)
            .max_by_key(|(quiet_for, _)| *quiet_for)
            .map(|(_, p)| p)?;
        let (from, to) = (victim.claimed, victim.end);
        victim.end = from;
        self.pieces.push(Piece {
            start: from,
            end: to,
            claimed: from,
            written: from,
            flushed: from,
            owner: Some(connection),
        });
        Some(Work {
            piece: self.pieces.len() - 1,
            from,
            to,
        })
    }

    /// Claims up to `len` bytes at the current end of `piece`'s claimed bytes:
    /// returns the offset they go to and how many fit before the piece's end (which a steal may
    /// have moved).
    pub fn claim(&mut self, piece: usize, len: u64) -> (u64, u64) {
        let Some(p) = self.pieces.get_mut(piece) else {
            return (0, 0);
        };
        let at = p.claimed;
        let fits = len.min(p.end.saturating_sub(at));
        p.claimed += fits;
        (at, fits)
    }

    /// Where `piece`'s claimed bytes end and where the piece ends.
    pub fn position(&self, piece: usize) -> (u64, u64) {
        self.pieces
            .get(piece)
            .map_or((0, 0), |p| (p.claimed, p.end))
    }

    /// The connection no longer fetches `piece`: another one may take it up.
    pub fn release(&mut self, piece: usize) {
        if let Some(p) = self.pieces.get_mut(piece) {
            p.owner = None;
        }
    }

    /// Gives `piece`, untouched, back to the owned piece that ends where it starts: it was stolen
    /// from that one, whose connection may still be streaming through it. A server that refused
    /// a range then costs no bytes that were already on their way. Returns whether it merged.
    pub fn merge_back(&mut self, piece: usize) -> bool {
        let Some(&Piece {
            start,
            end,
            claimed,
            ..
        }) = self.pieces.get(piece)
        else {
            return false;
        };
        if claimed != start || start == end {
            return false;
        }
        let Some(before) = self
            .pieces
            .iter_mut()
            .find(|q| q.end == start && q.owner.is_some())
        else {
            return false;
        };
        before.end = end;
        if let Some(p) = self.pieces.get_mut(piece) {
            p.end = start; // empty: it stays in the list, as indexes are names
            p.owner = None;
        }
        true
    }

    fn wrote(&mut self, piece: usize, upto: u64) {
        if let Some(p) = self.pieces.get_mut(piece) {
            p.written = p.written.max(upto);
        }
    }

    fn written_marks(&self) -> Vec<u64> {
        self.pieces.iter().map(|p| p.written).collect()
    }

    /// After a sync that began when the pieces were written to `marks`.
    fn flushed_to(&mut self, marks: &[u64]) {
        for (p, &mark) in self.pieces.iter_mut().zip(marks) {
            p.flushed = p.flushed.max(mark.min(p.end));
        }
    }

    /// Every piece with bytes left has a connection: idle ones would take the others.
    pub fn all_owned(&self) -> bool {
        self.pieces
            .iter()
            .all(|p| p.claimed >= p.end || p.owner.is_some())
    }

    /// Every byte of the file is claimed: nothing is left to fetch.
    pub fn all_claimed(&self) -> bool {
        self.pieces.iter().all(|p| p.claimed >= p.end)
    }

    fn early_mut(&mut self, connection: usize) -> &mut Early {
        if self.early.len() <= connection {
            self.early.resize(connection + 1, Early::default());
        }
        &mut self.early[connection]
    }

    /// `connection` waits for a speed limit (`true`) or is done waiting, at `at`.
    pub fn pacing(&mut self, connection: usize, waits: bool, at: Duration) {
        let early = self.early_mut(connection);
        early.pacing = waits;
        if !waits && early.first_byte.is_some() {
            early.last_byte = Some(at); // the quiet time starts now
        }
    }

    /// `len` bytes arrived on `connection` at `at` (since the split began).
    pub fn arrived(&mut self, connection: usize, at: Duration, len: u64) {
        let window = self.window.unwrap_or(RAMP_WINDOW_MAX);
        let early = self.early_mut(connection);
        let first = *early.first_byte.get_or_insert(at);
        early.last_byte = Some(at);
        if at.saturating_sub(first) <= window {
            early.bytes += len;
        }
    }

    /// `connection` has no more work, at `at`.
    pub fn ended(&mut self, connection: usize, at: Duration) {
        let window = self.window.unwrap_or(RAMP_WINDOW_MAX);
        let early = self.early_mut(connection);
        if early
            .first_byte
            .is_none_or(|first| at.saturating_sub(first) < window)
        {
            early.ended = true;
        }
    }

    pub fn early(&self) -> &[Early] {
        &self.early
    }

    /// The ramp's window, once a first answer came after `latency`.
    pub fn answered_after(&mut self, latency: Duration) {
        self.window.get_or_insert(ramp_window(latency));
    }

    pub fn window(&self) -> Option<Duration> {
        self.window
    }

    /// The segment map for the checkpoint: pieces in file order, a fully flushed piece merged
    /// into the one after it (their bytes on disk are then contiguous), so the map stays short.
    pub fn segments(&self) -> Vec<Segment> {
        let mut ordered: Vec<&Piece> = self.pieces.iter().filter(|p| p.start < p.end).collect();
        ordered.sort_by_key(|p| p.start);
        let mut out: Vec<Segment> = Vec::with_capacity(ordered.len());
        for p in ordered {
            let piece = Segment {
                start: p.start,
                end: p.end,
                written: p.written.min(p.end),
                flushed: p.flushed.min(p.written).min(p.end),
            };
            match out.last_mut() {
                Some(last) if last.flushed == last.end && last.end == piece.start => {
                    *last = Segment {
                        start: last.start,
                        ..piece
                    };
                }
                _ => out.push(piece),
            }
        }
        out
    }
}

/// What one connection brought in its first window (see [`ramp_window`]) after its first byte: the ramp
/// compares connections at the same age, so that the bursts and slow starts every connection
/// goes through (TCP's slow start, a server's token bucket) count alike.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Early {
    /// When its first byte arrived, since the split began.
    pub first_byte: Option<Duration>,
    /// Bytes that arrived within the window of the first.
    pub bytes: u64,
    /// It ran out of work within that window: no sign of a bottleneck.
    pub ended: bool,
    /// When its last byte arrived.
    pub last_byte: Option<Duration>,
    /// It waits for a speed limit, not for its server: quiet, but not stalled.
    pub pacing: bool,
}

impl Early {
    /// Its first `window` is over.
    fn measured(&self, now: Duration, window: Duration) -> bool {
        self.ended
            || self
                .first_byte
                .is_some_and(|first| now.saturating_sub(first) >= window)
    }
}

/// When to add connections: in steps that multiply them by [`STEP`], while the connections of
/// the last step each bring, in their first window, about what the first connection brought in
/// its own (alone). A server that limits each connection keeps rewarding new ones; a shared
/// bottleneck (the link, the disk, a server's total) splits the same bytes among more of them,
/// and the ramp holds there. Times are given, not read, so that the tests drive it.
#[derive(Debug)]
pub(crate) struct Ramp {
    max: usize,
    holding: bool,
    /// The connections opened by the last step, still to be judged.
    step: Vec<usize>,
}

/// Each step multiplies the connections by this much (1, 4, 16).
const STEP: usize = 4;

impl Ramp {
    pub fn new(max: usize) -> Ramp {
        Ramp {
            max,
            holding: max <= 1,
            step: Vec::new(),
        }
    }

    /// It adds no more connections.
    pub fn holds(&self) -> bool {
        self.holding
    }

    /// No more connections (a server refused one, or ignored ranges).
    pub fn hold(&mut self) {
        self.holding = true;
    }

    /// Connection `number` was opened by the last step.
    pub fn opened(&mut self, number: usize) {
        self.step.push(number);
    }

    /// How many connections to add now, with `open` connections running and what each
    /// connection (by number) brought in its first `window` (`None` before any answer).
    pub fn decide(
        &mut self,
        now: Duration,
        open: usize,
        early: &[Early],
        window: Option<Duration>,
    ) -> usize {
        let Some(window) = window.filter(|_| !self.holding) else {
            return 0;
        };
        let Some(first) = early.first().filter(|e| e.measured(now, window)) else {
            return 0; // the first connection's own window is the yardstick
        };
        let judged: Vec<&Early> = self.step.iter().filter_map(|&n| early.get(n)).collect();
        if judged.len() < self.step.len() || !judged.iter().all(|e| e.measured(now, window)) {
            return 0; // the last step is still in its first window
        }
        if !first.ended && !judged.is_empty() {
            let brought = |e: &&Early| if e.ended { first.bytes } else { e.bytes };
            let per_new = judged.iter().map(brought).sum::<u64>() as f64 / judged.len() as f64;
            if per_new < GROWTH * first.bytes as f64 {
                tracing::debug!(
                    open,
                    per_new,
                    alone = first.bytes,
                    "the newest connections brought less than the first alone: no more"
                );
                self.holding = true;
                return 0;
            }
        }
        let add = (open.max(1) * (STEP - 1)).min(self.max.saturating_sub(open));
        if add == 0 {
            self.holding = true;
        }
        self.step.clear();
        add
    }
}

/// A chunk for the writer thread: bytes of `piece` at `offset`.
struct Chunk {
    piece: usize,
    offset: u64,
    bytes: Bytes,
}

fn lock(plan: &Mutex<Plan>) -> MutexGuard<'_, Plan> {
    plan.lock().unwrap_or_else(|e| e.into_inner())
}

/// The writer thread of a split file.
struct PieceWriter {
    queue: mpsc::Sender<Chunk>,
    thread: tokio::task::JoinHandle<io::Result<()>>,
}

impl PieceWriter {
    /// Opens the temp file; `keep` (fresh plans) drops what lies after the bytes on disk.
    fn open(path: &Path, keep: Option<u64>, plan: Arc<Mutex<Plan>>) -> io::Result<PieceWriter> {
        let file = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(false)
            .open(path)?;
        if let Some(keep) = keep {
            file.set_len(keep)?;
        }
        let (queue, chunks) = mpsc::channel(QUEUE_DEPTH);
        let runtime = tokio::runtime::Handle::current();
        let thread =
            tokio::task::spawn_blocking(move || piece_write_loop(file, chunks, &runtime, &plan));
        Ok(PieceWriter { queue, thread })
    }

    fn queue(&self) -> mpsc::Sender<Chunk> {
        self.queue.clone()
    }

    /// Writes what is queued, flushes it and closes the file. The connections' queues must be
    /// dropped first.
    async fn finish(self) -> io::Result<()> {
        let PieceWriter { queue, thread } = self;
        drop(queue); // with the connections' clones gone, the thread sees the end
        match thread.await {
            Ok(result) => result,
            Err(e) => Err(io::Error::other(e)),
        }
    }
}

fn piece_write_loop(
    file: File,
    mut chunks: mpsc::Receiver<Chunk>,
    runtime: &tokio::runtime::Handle,
    plan: &Mutex<Plan>,
) -> io::Result<()> {
    let mut last_sync = Instant::now();
    let mut dirty = false;
    loop {
        let wait = SYNC_INTERVAL.saturating_sub(last_sync.elapsed());
        let next = runtime.block_on(async { tokio::time::timeout(wait, chunks.recv()).await });
        match next {
            Ok(Some(chunk)) => {
                file.write_all_at(&chunk.bytes, chunk.offset)?;
                let end = chunk.offset + chunk.bytes.len() as u64;
                lock(plan).wrote(chunk.piece, end);
                dirty = true;
            }
            Ok(None) => break,
            Err(_elapsed) => {}
        }
        if last_sync.elapsed() >= SYNC_INTERVAL {
            if dirty {
                let marks = lock(plan).written_marks();
                file.sync_data()?;
                lock(plan).flushed_to(&marks);
                dirty = false;
            }
            last_sync = Instant::now();
        }
    }
    let marks = lock(plan).written_marks();
    file.sync_data()?;
    lock(plan).flushed_to(&marks);
    Ok(())
}

/// How a split transfer ended.
pub(super) enum Split {
    /// Every byte is on disk.
    Done(u64),
    /// A piece came from another version of the file: start it again from byte 0.
    Changed(Validators),
    /// The server stopped serving ranges before any connection was left: fetch the file again
    /// on one connection.
    NoRanges,
    Stopped(Stopped),
    Failed(Failure),
}

/// How one connection ended.
enum ConnectionEnd {
    /// No work is left for it.
    Idle,
    Changed(Validators),
    /// The server answered a range with the whole file.
    NoRanges,
    /// The writer thread stopped (its error comes out of `finish`).
    WriterGone,
    Failed(Failure),
}

/// What a connection starts with: an answer already received (the first connection's), or none.
pub(super) struct FirstAnswer {
    pub response: reqwest::Response,
    pub expected_body: Option<u64>,
    /// From the request to its answer: a round trip and the server's time.
    pub latency: Duration,
}

impl Worker {
    /// Fetches the file over up to `max` connections. `first`: the first connection's answer
    /// (a 200 or 206 from where the file stands, `at`) when the split starts from a plain GET;
    /// `None` to resume the pieces of the checkpoint.
    pub(super) async fn split(
        &mut self,
        first: Option<(FirstAnswer, u64)>,
        stop: &mut watch::Receiver<bool>,
    ) -> Split {
        let Some(known) = self.task.validators.clone() else {
            return Split::NoRanges;
        };
        let Some(size) = known.size else {
            return Split::NoRanges;
        };
        let Some(validator) = http::piece_validator(&known) else {
            return Split::NoRanges;
        };
        let (plan, keep) = match &first {
            Some((_, at)) => (Plan::fresh(size, *at), Some(*at)),
            None => (Plan::resume(&self.task.segments), None),
        };
        let plan = Arc::new(Mutex::new(plan));
        let writer = match PieceWriter::open(&self.task.temp_path, keep, plan.clone()) {
            Ok(writer) => writer,
            Err(e) => return Split::Failed(self.local_failure(&e)),
        };
        let started = Instant::now();
        let ramp_max = self.task.connections.max(1) as usize;
        let mut ramp = Ramp::new(ramp_max);
        let mut connections = FuturesUnordered::new();
        let mut next_connection = 0usize;
        let queue = writer.queue();
        {
            let this = &*self;
            let (first_work, answer) = match first {
                Some((answer, _)) => (lock(&plan).first_work(), Some(answer)),
                None => (lock(&plan).take(0), None),
            };
            if let Some(work) = first_work {
                connections.push(this.connection(
                    next_connection,
                    work,
                    answer,
                    plan.clone(),
                    queue.clone(),
                    None,
                    &known,
                    &validator,
                    started,
                ));
                next_connection += 1;
            }
            let mut ticker = tokio::time::interval(TICK);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut ramp_ticker = tokio::time::interval(RAMP_TICK);
            ramp_ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut last_report = Vec::new();
            // Set when the split ends before every byte is fetched.
            let mut outcome: Option<Split> = None;
            // A connection that failed while others went on: the run's failure if all do.
            let mut lost: Option<Failure> = None;
            // A connection beyond the first, with its permit of the host's cap.
            let extra = |number: usize, work: Work, permit: OwnedSemaphorePermit| {
                this.connection(
                    number,
                    work,
                    None,
                    plan.clone(),
                    queue.clone(),
                    Some(permit),
                    &known,
                    &validator,
                    started,
                )
            };
            while !connections.is_empty() {
                tokio::select! {
                    Some((number, piece, end)) = connections.next() => {
                        if let Some(piece) = piece {
                            lock(&plan).release(piece); // another connection takes it up
                        }
                        match end {
                            ConnectionEnd::Idle => lock(&plan).ended(number, started.elapsed()),
                            ConnectionEnd::Changed(seen) => outcome = Some(Split::Changed(seen)),
                            ConnectionEnd::WriterGone => break,
                            ConnectionEnd::NoRanges => {
                                if let Some(piece) = piece {
                                    lock(&plan).merge_back(piece);
                                }
                                ramp.hold();
                                if connections.is_empty() {
                                    outcome = Some(Split::NoRanges);
                                }
                            }
                            // A refused answer or a fatal status fails the file at once, as on
                            // one connection.
                            ConnectionEnd::Failed(failure) if failure.class == ErrorClass::Fatal => {
                                outcome = Some(Split::Failed(failure));
                            }
                            ConnectionEnd::Failed(failure) => {
                                tracing::debug!(
                                    open = connections.len(),
                                    "a connection failed, the others go on: {}",
                                    failure.error.description
                                );
                                ramp.hold();
                                lost = Some(failure);
                            }
                        }
                        if outcome.is_some() {
                            break;
                        }
                    }
                    _ = ticker.tick() => {
                        // The end: pieces too small to split, on connections gone quiet.
                        let quiet = lock(&plan).window().map(|w| 2 * w);
                        while let Some(quiet) = quiet
                            && connections.len() < ramp_max
                            && lock(&plan).all_owned()
                        {
                            let Ok(permit) = self.task.host_slots.clone().try_acquire_owned() else {
                                break;
                            };
                            let now = started.elapsed();
                            let Some(work) = lock(&plan).take_stalled(next_connection, now, quiet) else {
                                break;
                            };
                            tracing::debug!(open = connections.len(), ?work, "a fresh connection for a quiet piece");
                            connections.push(extra(next_connection, work, permit));
                            next_connection += 1;
                        }
                        let segments = lock(&plan).segments();
                        tracing::trace!(
                            ms = started.elapsed().as_millis() as u64,
                            open = connections.len(),
                            written = segments.iter().map(Segment::written_len).sum::<u64>(),
                            left = ?segments.iter().filter(|s| !s.is_written()).map(|s| s.end - s.written).collect::<Vec<_>>(),
                            "split"
                        );
                        if segments != last_report {
                            self.reporter.send(Report::Segments(segments.clone()));
                            last_report = segments;
                        }
                    }
                    _ = ramp_ticker.tick(), if !ramp.holds() => {
                        let add = {
                            let plan = lock(&plan);
                            ramp.decide(started.elapsed(), connections.len(), plan.early(), plan.window())
                        };
                        if add > 0 {
                            tracing::debug!(open = connections.len(), add, "more connections");
                        }
                        for _ in 0..add {
                            let Ok(permit) = self.task.host_slots.clone().try_acquire_owned() else {
                                tracing::debug!(open = connections.len(), "the host's cap");
                                ramp.hold(); // the host cap
                                break;
                            };
                            let Some(work) = lock(&plan).take(next_connection) else { break };
                            connections.push(extra(next_connection, work, permit));
                            ramp.opened(next_connection);
                            next_connection += 1;
                        }
                    }
                    _ = super::stop_requested(stop) => break,
                }
            }
            let stopped = *stop.borrow();
            drop(connections);
            drop(queue);
            let written = writer.finish().await;
            let segments = lock(&plan).segments();
            if let Err(e) = written {
                return Split::Failed(self.local_failure(&e));
            }
            let done = lock(&plan).all_claimed() && segments.iter().all(|s| s.flushed == s.end);
            match outcome {
                Some(Split::Failed(failure)) => {
                    self.reporter.send(Report::Segments(segments));
                    return Split::Failed(failure);
                }
                Some(outcome) => return outcome,
                None if done => {}
                None if stopped => {
                    let flushed = segments.iter().map(Segment::flushed_len).sum();
                    return Split::Stopped(Stopped {
                        transferred: flushed,
                        checkpointed: flushed,
                        segments,
                    });
                }
                None => {
                    // Every connection failed: the run fails, the job retries from the pieces.
                    self.reporter.send(Report::Segments(segments));
                    let failure = lost.unwrap_or_else(|| {
                        self.local_failure(&io::Error::other("the writer stopped"))
                    });
                    return Split::Failed(failure);
                }
            }
        }
        Split::Done(size)
    }

    /// One connection: fetches its piece, then takes more work until none is left. Yields its
    /// number, the piece it held when it ended, and how it ended.
    #[allow(clippy::too_many_arguments)]
    async fn connection(
        &self,
        number: usize,
        mut work: Work,
        mut answer: Option<FirstAnswer>,
        plan: Arc<Mutex<Plan>>,
        queue: mpsc::Sender<Chunk>,
        permit: Option<OwnedSemaphorePermit>,
        known: &Validators,
        validator: &str,
        started: Instant,
    ) -> (usize, Option<usize>, ConnectionEnd) {
        let _permit = permit; // held while the connection is open
        loop {
            let (from, to) = lock(&plan).position(work.piece);
            if from >= to {
                match lock(&plan).take(number) {
                    Some(next) => {
                        work = next;
                        continue;
                    }
                    None => return (number, None, ConnectionEnd::Idle),
                }
            }
            let asked_at = Instant::now();
            let (response, expected_body) = match answer.take() {
                Some(first) => {
                    lock(&plan).answered_after(first.latency);
                    (first.response, first.expected_body)
                }
                None => match self.piece_answer(from, to, known, validator).await {
                    Ok(ok) => {
                        lock(&plan).answered_after(asked_at.elapsed());
                        ok
                    }
                    Err(end) => return (number, Some(work.piece), end),
                },
            };
            match self
                .piece_body(
                    response,
                    expected_body,
                    &plan,
                    &queue,
                    work.piece,
                    number,
                    started,
                )
                .await
            {
                Ok(brought) => {
                    if brought == 0 {
                        let failure = self.nothing_sent();
                        return (number, Some(work.piece), ConnectionEnd::Failed(failure));
                    }
                }
                Err(end) => return (number, Some(work.piece), end),
            }
        }
    }

    /// Asks for bytes `from..to` of the file and judges the answer.
    async fn piece_answer(
        &self,
        from: u64,
        to: u64,
        known: &Validators,
        validator: &str,
    ) -> Result<(reqwest::Response, Option<u64>), ConnectionEnd> {
        let asked = http::Asked {
            start: from,
            last: Some(to - 1),
        };
        let response = self
            .send(Some(asked.header()), Some(validator))
            .await
            .map_err(ConnectionEnd::Failed)?;
        let status = response.status();
        let mut seen = http::response_validators(status, response.headers());
        match status {
            StatusCode::PARTIAL_CONTENT => {
                if seen.size.is_none() {
                    seen.size = known.size;
                }
                if !http::same_version(known, &seen) {
                    return Err(ConnectionEnd::Changed(seen));
                }
                let part = http::check_partial(asked, response.headers())
                    .map_err(|refusal| ConnectionEnd::Failed(self.refused(refusal)))?;
                Ok((response, Some(part.length)))
            }
            StatusCode::OK if http::validators_differ(known, &seen) => {
                Err(ConnectionEnd::Changed(seen))
            }
            StatusCode::OK => Err(ConnectionEnd::NoRanges),
            StatusCode::RANGE_NOT_SATISFIABLE => {
                // The file is shorter than it was: another version.
                seen.size = http::unsatisfied_range_total(response.headers());
                Err(ConnectionEnd::Changed(seen))
            }
            _ => Err(ConnectionEnd::Failed(self.status_failure(&response))),
        }
    }

    /// Streams an answer into the piece until the body ends or the piece does (a steal may have
    /// moved its end: the rest of the answer is dropped with the connection). Returns the bytes
    /// it brought to the piece.
    #[allow(clippy::too_many_arguments)]
    async fn piece_body(
        &self,
        mut response: reqwest::Response,
        expected_body: Option<u64>,
        plan: &Mutex<Plan>,
        queue: &mpsc::Sender<Chunk>,
        piece: usize,
        number: usize,
        started: Instant,
    ) -> Result<u64, ConnectionEnd> {
        let mut received: u64 = 0;
        let mut brought: u64 = 0;
        let throttle = &self.task.throttle;
        loop {
            if throttle.must_wait() {
                // Waiting on a speed limit, not on its server: not a connection to take over.
                lock(plan).pacing(number, true, started.elapsed());
                throttle.ready().await;
                lock(plan).pacing(number, false, started.elapsed());
            }
            let waiting = tokio::time::Instant::now();
            let chunk = match self.next_chunk(&mut response, waiting).await {
                Ok(Some(chunk)) => chunk,
                Ok(None) => {
                    if expected_body.is_some_and(|expected| received < expected) {
                        return Err(ConnectionEnd::Failed(self.short_body()));
                    }
                    return Ok(brought);
                }
                Err(failure) => return Err(ConnectionEnd::Failed(failure)),
            };
            received += chunk.len() as u64;
            if expected_body.is_some_and(|expected| received > expected) {
                return Err(ConnectionEnd::Failed(self.overlong_body()));
            }
            let (offset, fits) = {
                let mut plan = lock(plan);
                plan.arrived(number, started.elapsed(), chunk.len() as u64);
                plan.claim(piece, chunk.len() as u64)
            };
            // The limit counts the file's bytes: what a connection read past the end of its
            // piece (moved by a steal) is dropped uncounted, at most the rest of one read.
            throttle.spend(fits as usize);
            if fits > 0 {
                let bytes = chunk.slice(..fits as usize);
                let sent = queue.send(Chunk {
                    piece,
                    offset,
                    bytes,
                });
                if sent.await.is_err() {
                    return Err(ConnectionEnd::WriterGone);
                }
                brought += fits;
            }
            if fits < chunk.len() as u64 {
                return Ok(brought.max(1)); // the piece is complete: the rest is another's
            }
            let (claimed, end) = lock(plan).position(piece);
            if claimed >= end {
                return Ok(brought.max(1));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: u64 = MIN_SEGMENT;

    fn covers(segments: &[Segment], size: u64) -> bool {
        let mut at = 0;
        for s in segments {
            if s.start != at
                || !(s.start <= s.flushed && s.flushed <= s.written && s.written <= s.end)
            {
                return false;
            }
            at = s.end;
        }
        at == size
    }

    #[test]
    fn idle_connections_steal_the_far_half_of_the_largest_piece() {
        let mut plan = Plan::fresh(8 * M, 0);
        assert_eq!(
            plan.first_work(),
            Some(Work {
                piece: 0,
                from: 0,
                to: 8 * M
            })
        );
        let second = plan.take(1).expect("a half");
        assert_eq!(
            second,
            Work {
                piece: 1,
                from: 4 * M,
                to: 8 * M
            }
        );
        assert_eq!(plan.position(0), (0, 4 * M));
        // Connection 0 has fetched 3 MiB of its 4: the largest piece left is connection 1's.
        assert_eq!(plan.claim(0, 3 * M), (0, 3 * M));
        let third = plan.take(2).expect("a half of piece 1");
        assert_eq!(
            third,
            Work {
                piece: 2,
                from: 6 * M,
                to: 8 * M
            }
        );
        // Pieces under twice the minimum are not split.
        assert_eq!(
            plan.take(3),
            Some(Work {
                piece: 3,
                from: 7 * M,
                to: 8 * M
            })
        );
        assert_eq!(
            plan.take(4),
            Some(Work {
                piece: 4,
                from: 5 * M,
                to: 6 * M
            })
        );
        assert_eq!(plan.take(5), None, "every piece has 1 MiB left");
        assert!(covers(&plan.segments(), 8 * M));
    }

    #[test]
    fn a_claim_never_crosses_a_piece_end_moved_by_a_steal() {
        let mut plan = Plan::fresh(4 * M, 0);
        plan.claim(0, 10);
        plan.take(1).expect("a half");
        let (at, fits) = plan.claim(0, 4 * M);
        // The split point lies halfway between the claimed bytes and the end.
        assert_eq!((at, fits), (10, 2 * M - 5));
        assert_eq!(plan.claim(0, 5), (2 * M + 5, 0));
        assert!(!plan.all_claimed());
        plan.claim(1, 2 * M);
        assert!(plan.all_claimed());
    }

    #[test]
    fn a_refused_steal_goes_back_to_the_piece_it_came_from() {
        let mut plan = Plan::fresh(4 * M, 0);
        plan.claim(0, 10);
        let stolen = plan.take(1).expect("a half");
        plan.release(stolen.piece);
        assert!(plan.merge_back(stolen.piece));
        // Connection 0 streams on through the whole file; the map has one piece again.
        assert_eq!(plan.claim(0, 4 * M), (10, 4 * M - 10));
        assert!(plan.all_claimed());
        let segments = plan.segments();
        assert_eq!(segments.len(), 1);
        assert!(covers(&segments, 4 * M));
        // A piece with bytes of its own, or with no owned piece before it, stays.
        let mut plan = Plan::fresh(4 * M, 0);
        let stolen = plan.take(1).expect("a half");
        plan.claim(stolen.piece, 1);
        plan.release(stolen.piece);
        assert!(!plan.merge_back(stolen.piece));
        let mut plan = Plan::fresh(4 * M, 0);
        let stolen = plan.take(1).expect("a half");
        plan.release(0);
        plan.release(stolen.piece);
        assert!(!plan.merge_back(stolen.piece));
    }

    #[test]
    fn the_checkpoint_claims_only_flushed_bytes_and_merges_flushed_pieces() {
        let mut plan = Plan::fresh(4 * M, M);
        plan.take(1).expect("a half");
        plan.claim(1, 100);
        plan.wrote(1, M + 100);
        plan.claim(2, 50);
        plan.wrote(2, 2 * M + M / 2 + 50);
        let segments = plan.segments();
        // The first MiB was on disk before: it is merged into the piece after it.
        assert_eq!(
            segments[0],
            Segment {
                start: 0,
                end: 2 * M + M / 2,
                written: M + 100,
                flushed: M
            }
        );
        assert_eq!(segments[1].flushed, segments[1].start, "not flushed yet");
        assert!(covers(&segments, 4 * M));
        let marks = plan.written_marks();
        plan.flushed_to(&marks);
        let segments = plan.segments();
        assert_eq!(segments[0].flushed, M + 100);
        assert_eq!(segments[1].flushed, 2 * M + M / 2 + 50);
        // Resuming gives each piece back from its flushed end.
        let mut resumed = Plan::resume(&segments);
        assert_eq!(
            resumed.take(0),
            Some(Work {
                piece: 0,
                from: M + 100,
                to: 2 * M + M / 2
            })
        );
        assert_eq!(
            resumed.take(1),
            Some(Work {
                piece: 1,
                from: 2 * M + M / 2 + 50,
                to: 4 * M
            })
        );
    }

    const W: Option<Duration> = Some(Duration::from_millis(100));

    /// A connection whose first byte came at `first` ms and that brought `bytes` in its first
    /// window.
    fn early(first: u64, bytes: u64) -> Early {
        Early {
            first_byte: Some(Duration::from_millis(first)),
            bytes,
            ended: false,
            last_byte: None,
            pacing: false,
        }
    }

    #[test]
    fn the_ramp_grows_while_new_connections_bring_what_the_first_brought_alone() {
        let ms = Duration::from_millis;
        let mut ramp = Ramp::new(16);
        assert_eq!(ramp.decide(ms(50), 1, &[], W), 0, "no byte yet");
        assert_eq!(
            ramp.decide(ms(500), 1, &[early(10, 400)], None),
            0,
            "no answer yet: no window"
        );
        assert_eq!(ramp.decide(ms(50), 1, &[early(10, 400)], W), 0, "too early");
        assert_eq!(ramp.decide(ms(110), 1, &[early(10, 400)], W), 3);
        for n in 1..=3 {
            ramp.opened(n);
        }
        // A server that sends each connection a burst and then a slow trickle: every new
        // connection, at the same age, brings what the first did.
        let mut seen = vec![early(10, 400), early(130, 390), early(140, 420)];
        assert_eq!(
            ramp.decide(ms(240), 4, &seen, W),
            0,
            "one is not measured yet"
        );
        seen.push(early(150, 380));
        assert_eq!(ramp.decide(ms(245), 4, &seen, W), 0, "still in its window");
        assert_eq!(ramp.decide(ms(250), 4, &seen, W), 12);
        for n in 4..16 {
            ramp.opened(n);
            seen.push(early(260, 400));
        }
        assert_eq!(ramp.decide(ms(400), 16, &seen, W), 0, "at the most");
        assert_eq!(ramp.decide(ms(900), 16, &seen, W), 0, "and stays there");
    }

    /// A 4 MiB file on two connections: 0 brought 100 bytes at 10 ms, 1 (the far half,
    /// returned) 200 bytes at `second_at`.
    fn two_connections_under_way(second_at: Duration) -> (Plan, Work) {
        let mut plan = Plan::fresh(4 * M, 0);
        let other = plan.take(1).expect("a half");
        plan.claim(0, 100);
        plan.arrived(0, Duration::from_millis(10), 100);
        plan.claim(other.piece, 200);
        plan.arrived(1, second_at, 200);
        (plan, other)
    }

    #[test]
    fn a_connection_waiting_for_a_speed_limit_is_not_taken_over() {
        let ms = Duration::from_millis;
        let (mut plan, _) = two_connections_under_way(ms(10));
        plan.pacing(0, true, ms(10));
        plan.pacing(1, true, ms(10));
        assert_eq!(
            plan.take_stalled(2, ms(500), ms(40)),
            None,
            "both wait on the limit"
        );
        // Done waiting, the quiet time counts from then.
        plan.pacing(0, false, ms(480));
        assert_eq!(
            plan.take_stalled(2, ms(500), ms(40)),
            None,
            "quiet for 20 ms only"
        );
        let work = plan
            .take_stalled(2, ms(530), ms(40))
            .expect("quiet for 50 ms");
        assert_eq!(work.from, 100, "connection 0's piece, not the pacing one's");
    }

    #[test]
    fn a_fresh_connection_takes_all_that_is_left_of_a_quiet_piece() {
        let ms = Duration::from_millis;
        let (mut plan, other) = two_connections_under_way(ms(90));
        assert!(plan.all_owned());
        assert_eq!(
            plan.take_stalled(2, ms(45), ms(40)),
            None,
            "nobody quiet enough"
        );
        let work = plan
            .take_stalled(2, ms(60), ms(40))
            .expect("connection 0 is quiet");
        assert_eq!((work.from, work.to), (100, other.from));
        // Connection 0's next bytes do not fit: they are the new connection's now.
        assert_eq!(plan.claim(0, 50), (100, 0));
        assert_eq!(plan.claim(work.piece, 50), (100, 50));
        assert_eq!(
            plan.take_stalled(3, ms(60), ms(40)),
            None,
            "each piece once"
        );
        assert!(covers(&plan.segments(), 4 * M));
    }

    #[test]
    fn the_ramp_window_is_some_round_trips() {
        let ms = Duration::from_millis;
        assert_eq!(ramp_window(ms(0)), RAMP_WINDOW_MIN, "loopback");
        assert_eq!(ramp_window(ms(30)), ms(240));
        assert_eq!(ramp_window(Duration::from_secs(3)), RAMP_WINDOW_MAX);
        let mut plan = Plan::fresh(4 * M, 0);
        plan.answered_after(ms(10));
        plan.answered_after(ms(50));
        assert_eq!(plan.window(), Some(ms(80)), "the first answer sets it");
        plan.arrived(0, ms(5), 100);
        plan.arrived(0, ms(85), 100);
        plan.arrived(0, ms(86), 100);
        assert_eq!(plan.early()[0].bytes, 200, "within 80 ms of the first byte");
    }

    #[test]
    fn the_ramp_holds_when_a_shared_bottleneck_splits_the_same_bytes() {
        let ms = Duration::from_millis;
        let mut ramp = Ramp::new(16);
        assert_eq!(ramp.decide(ms(100), 1, &[early(0, 1000)], W), 3);
        (1..=3).for_each(|n| ramp.opened(n));
        // Four connections share what one had alone: each newcomer brings a quarter.
        let seen = [
            early(0, 1000),
            early(110, 250),
            early(110, 260),
            early(115, 240),
        ];
        assert_eq!(ramp.decide(ms(220), 4, &seen, W), 0);
        assert_eq!(ramp.decide(ms(2000), 4, &seen, W), 0, "holds for good");
        // A connection that ran out of work within its window is no sign of a bottleneck.
        let mut ramp = Ramp::new(8);
        assert_eq!(ramp.decide(ms(100), 1, &[early(0, 1000)], W), 3);
        (1..=3).for_each(|n| ramp.opened(n));
        let mut done = early(110, 10);
        done.ended = true;
        let seen = [early(0, 1000), done, early(110, 900), early(110, 950)];
        assert_eq!(ramp.decide(ms(220), 4, &seen, W), 4, "up to the most, 8");
    }
}
