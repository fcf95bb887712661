//! One file over several connections (aria2-like), into its one temp file with positioned writes.
//!
//! The file is a list of pieces that cover it. Each connection owns one piece and fetches it
//! with a ranged GET tied to the file's version by `If-Range`; a connection whose piece is done
//! takes a piece nobody owns, or steals the far half of the piece with the most bytes left. A
//! piece is never split below [`MIN_SEGMENT`]. Connections are added in doubling steps while the
//! newest ones bring bytes of their own (see [`Ramp`]), up to the job's setting and the host cap.
//!
//! One writer thread owns the file: it writes each chunk where it belongs, flushes once a second,
//! and only then moves each piece's `flushed` mark, which is what the checkpoint records: a crash
//! at any moment resumes every piece where its flushed bytes end.
//!
//! Every answer is judged before a byte of it is written: a piece's 206 must be the range asked
//! for ([`http::check_partial`]) of the same version of the file ([`http::same_version`]). An
//! answer of another version restarts the whole file (never a spliced file); a server that
//! ignores ranges on a later connection keeps the connections it has, and none is added.

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
pub(crate) const MIN_SEGMENT: u64 = 1 << 20;
/// How often the pieces are reported and the ramp decides.
const TICK: Duration = Duration::from_millis(50);
/// How long a step of connections is measured before the next one is added.
const RAMP_WINDOW: Duration = Duration::from_millis(100);
/// A step counts as growth when its connections bring at least this share of what each
/// connection brought before it.
const GROWTH: f64 = 0.75;
/// Chunks in flight between the connections and the disk.
const QUEUE_DEPTH: usize = 64;
/// How often written pieces are flushed to disk (as for one connection).
const SYNC_INTERVAL: Duration = Duration::from_secs(1);

/// A file can be split when it is this large from where it stands.
pub(crate) fn worth_splitting(remaining: u64) -> bool {
    remaining >= 2 * MIN_SEGMENT
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
    /// Bytes claimed by each connection (its index), for the ramp.
    by_connection: Vec<u64>,
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
            by_connection: Vec::new(),
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
        if !worth_splitting(left) {
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

    /// Claims up to `len` bytes at the current end of `piece`'s claimed bytes for `connection`:
    /// returns the offset they go to and how many fit before the piece's end (which a steal may
    /// have moved).
    pub fn claim(&mut self, piece: usize, connection: usize, len: u64) -> (u64, u64) {
        let Some(p) = self.pieces.get_mut(piece) else {
            return (0, 0);
        };
        let at = p.claimed;
        let fits = len.min(p.end.saturating_sub(at));
        p.claimed += fits;
        if self.by_connection.len() <= connection {
            self.by_connection.resize(connection + 1, 0);
        }
        self.by_connection[connection] += fits;
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

    /// Every byte of the file is claimed: nothing is left to fetch.
    pub fn all_claimed(&self) -> bool {
        self.pieces.iter().all(|p| p.claimed >= p.end)
    }

    pub fn bytes_by_connection(&self) -> &[u64] {
        &self.by_connection
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

/// When to add connections: in doubling steps, while each step's connections bring about as
/// many bytes each as every connection brought in the window before the step. A server that
/// limits each connection keeps rewarding new ones; a shared bottleneck (the link, the disk, a
/// server's total) does not, and the ramp holds there. Times are given, not read, so that the
/// tests drive it.
#[derive(Debug)]
pub(crate) struct Ramp {
    max: usize,
    holding: bool,
    window_start: Duration,
    /// Bytes by connection when the window began.
    at_window_start: Vec<u64>,
    /// The connections added by the last step.
    step: std::ops::Range<usize>,
    /// Bytes per connection per second in the window before the last step.
    before: f64,
}

impl Ramp {
    pub fn new(max: usize) -> Ramp {
        Ramp {
            max,
            holding: max <= 1,
            window_start: Duration::ZERO,
            at_window_start: Vec::new(),
            step: 0..1,
            before: 0.0,
        }
    }

    /// No more connections (a server refused one, or ignored ranges).
    pub fn hold(&mut self) {
        self.holding = true;
    }

    /// How many connections to add now, with `open` connections running and the bytes each
    /// connection brought so far.
    pub fn decide(&mut self, now: Duration, open: usize, bytes: &[u64]) -> usize {
        if self.holding || now.saturating_sub(self.window_start) < RAMP_WINDOW {
            return 0;
        }
        let seconds = (now - self.window_start).as_secs_f64();
        let delta = |i: usize| {
            let now = bytes.get(i).copied().unwrap_or(0);
            let then = self.at_window_start.get(i).copied().unwrap_or(0);
            now.saturating_sub(then) as f64
        };
        let count = bytes.len().max(self.step.end);
        let all: f64 = (0..count).map(delta).sum();
        let step: f64 = self.step.clone().map(delta).sum();
        let per_connection = all / count.max(1) as f64 / seconds;
        let per_new = step / self.step.len().max(1) as f64 / seconds;
        let first = self.step.start == 0;
        if !first && per_new < GROWTH * self.before {
            self.holding = true;
            return 0;
        }
        if per_connection == 0.0 && first {
            return 0; // nothing arrived yet: wait for the first bytes
        }
        let add = open.max(1).min(self.max.saturating_sub(open));
        if add == 0 {
            self.holding = true;
            return 0;
        }
        self.before = per_connection;
        self.window_start = now;
        self.at_window_start = bytes.to_vec();
        self.step = count..count + add;
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
        let mut ramp = Ramp::new(self.task.connections.max(1) as usize);
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
                ));
                next_connection += 1;
            }
            let mut ticker = tokio::time::interval(TICK);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut last_report = Vec::new();
            // Set when the split ends before every byte is fetched.
            let mut outcome: Option<Split> = None;
            // A connection that failed while others went on: the run's failure if all do.
            let mut lost: Option<Failure> = None;
            while !connections.is_empty() {
                tokio::select! {
                    Some((_, piece, end)) = connections.next() => {
                        if let Some(piece) = piece {
                            lock(&plan).release(piece); // another connection takes it up
                        }
                        match end {
                            ConnectionEnd::Idle => {}
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
                                ramp.hold();
                                lost = Some(failure);
                            }
                        }
                        if outcome.is_some() {
                            break;
                        }
                    }
                    _ = ticker.tick() => {
                        let segments = lock(&plan).segments();
                        if segments != last_report {
                            self.reporter.send(Report::Segments(segments.clone()));
                            last_report = segments;
                        }
                        let add = {
                            let plan = lock(&plan);
                            ramp.decide(started.elapsed(), connections.len(), plan.bytes_by_connection())
                        };
                        for _ in 0..add {
                            let Ok(permit) = self.task.host_slots.clone().try_acquire_owned() else {
                                ramp.hold(); // the host cap
                                break;
                            };
                            let Some(work) = lock(&plan).take(next_connection) else { break };
                            connections.push(this.connection(
                                next_connection,
                                work,
                                None,
                                plan.clone(),
                                queue.clone(),
                                Some(permit),
                                &known,
                                &validator,
                            ));
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
            let (response, expected_body) = match answer.take() {
                Some(first) => (first.response, first.expected_body),
                None => match self.piece_answer(from, to, known, validator).await {
                    Ok(ok) => ok,
                    Err(end) => return (number, Some(work.piece), end),
                },
            };
            match self
                .piece_body(response, expected_body, &plan, &queue, work.piece, number)
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
    async fn piece_body(
        &self,
        mut response: reqwest::Response,
        expected_body: Option<u64>,
        plan: &Mutex<Plan>,
        queue: &mpsc::Sender<Chunk>,
        piece: usize,
        number: usize,
    ) -> Result<u64, ConnectionEnd> {
        let mut received: u64 = 0;
        let mut brought: u64 = 0;
        loop {
            let chunk = match response.chunk().await {
                Ok(Some(chunk)) => chunk,
                Ok(None) => {
                    if expected_body.is_some_and(|expected| received < expected) {
                        return Err(ConnectionEnd::Failed(self.short_body()));
                    }
                    return Ok(brought);
                }
                Err(e) => return Err(ConnectionEnd::Failed(self.transport_failure(&e))),
            };
            received += chunk.len() as u64;
            if expected_body.is_some_and(|expected| received > expected) {
                return Err(ConnectionEnd::Failed(self.overlong_body()));
            }
            let (offset, fits) = lock(plan).claim(piece, number, chunk.len() as u64);
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
        assert_eq!(plan.claim(0, 0, 3 * M), (0, 3 * M));
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
        plan.claim(0, 0, 10);
        plan.take(1).expect("a half");
        let (at, fits) = plan.claim(0, 0, 4 * M);
        // The split point lies halfway between the claimed bytes and the end.
        assert_eq!((at, fits), (10, 2 * M - 5));
        assert_eq!(plan.claim(0, 0, 5), (2 * M + 5, 0));
        assert!(!plan.all_claimed());
        plan.claim(1, 1, 2 * M);
        assert!(plan.all_claimed());
    }

    #[test]
    fn a_refused_steal_goes_back_to_the_piece_it_came_from() {
        let mut plan = Plan::fresh(4 * M, 0);
        plan.claim(0, 0, 10);
        let stolen = plan.take(1).expect("a half");
        plan.release(stolen.piece);
        assert!(plan.merge_back(stolen.piece));
        // Connection 0 streams on through the whole file; the map has one piece again.
        assert_eq!(plan.claim(0, 0, 4 * M), (10, 4 * M - 10));
        assert!(plan.all_claimed());
        let segments = plan.segments();
        assert_eq!(segments.len(), 1);
        assert!(covers(&segments, 4 * M));
        // A piece with bytes of its own, or with no owned piece before it, stays.
        let mut plan = Plan::fresh(4 * M, 0);
        let stolen = plan.take(1).expect("a half");
        plan.claim(stolen.piece, 1, 1);
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
        plan.claim(1, 0, 100);
        plan.wrote(1, M + 100);
        plan.claim(2, 1, 50);
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

    #[test]
    fn the_ramp_doubles_while_new_connections_bring_their_own_bytes() {
        let ms = Duration::from_millis;
        let mut ramp = Ramp::new(16);
        assert_eq!(ramp.decide(ms(50), 1, &[0]), 0, "too early");
        assert_eq!(ramp.decide(ms(100), 1, &[0]), 0, "nothing arrived yet");
        assert_eq!(ramp.decide(ms(120), 1, &[400]), 1);
        // Every connection limited to the same rate: each step brings as much per connection.
        assert_eq!(ramp.decide(ms(220), 2, &[800, 400]), 2);
        assert_eq!(ramp.decide(ms(320), 4, &[1200, 800, 400, 400]), 4);
        let bytes = [1600, 1200, 800, 800, 400, 400, 400, 400];
        assert_eq!(ramp.decide(ms(420), 8, &bytes), 8);
        let mut bytes = bytes.to_vec();
        bytes.extend([400; 8]);
        assert_eq!(ramp.decide(ms(520), 16, &bytes), 0, "at the cap");
    }

    #[test]
    fn the_ramp_holds_when_a_shared_bottleneck_splits_the_same_bytes() {
        let ms = Duration::from_millis;
        let mut ramp = Ramp::new(16);
        assert_eq!(ramp.decide(ms(100), 1, &[1000]), 1);
        // Two connections now share what one had: the newcomer brings half.
        assert_eq!(ramp.decide(ms(200), 2, &[1500, 500]), 0);
        assert_eq!(ramp.decide(ms(400), 2, &[2500, 1500]), 0, "holds for good");
    }
}
