//! The writer thread of one transfer: it owns the temp file, so that disk writes and fsyncs never
//! block the async side, and it publishes how many bytes are written and how many are durable.

use bytes::Bytes;
use std::fs::{File, OpenOptions};
use std::io::{self, Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// How often written data is flushed to disk, which bounds what a crash can lose.
const SYNC_INTERVAL: Duration = Duration::from_secs(1);
/// Chunks in flight between the network and the disk: bounds memory, gives back-pressure.
const QUEUE_DEPTH: usize = 64;

pub(crate) struct Writer {
    queue: Option<mpsc::Sender<Bytes>>,
    thread: tokio::task::JoinHandle<io::Result<()>>,
    written: Arc<AtomicU64>,
    durable: Arc<AtomicU64>,
}

impl Writer {
    /// Opens `path` for writing at `offset`, dropping anything after it (bytes past the last
    /// checkpoint are not trusted).
    pub(crate) fn open(path: &Path, offset: u64) -> io::Result<Writer> {
        let mut file = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(false)
            .open(path)?;
        file.set_len(offset)?;
        file.seek(SeekFrom::Start(offset))?;
        let written = Arc::new(AtomicU64::new(offset));
        let durable = Arc::new(AtomicU64::new(offset));
        let (queue, chunks) = mpsc::channel(QUEUE_DEPTH);
        let runtime = tokio::runtime::Handle::current();
        let thread = {
            let (written, durable) = (written.clone(), durable.clone());
            tokio::task::spawn_blocking(move || {
                write_loop(file, chunks, &runtime, &written, &durable)
            })
        };
        Ok(Writer {
            queue: Some(queue),
            thread,
            written,
            durable,
        })
    }

    /// Queues a chunk; fails when the writer thread stopped (its error comes from [`Writer::finish`]).
    pub(crate) async fn write(&mut self, chunk: Bytes) -> Result<(), ()> {
        match &self.queue {
            Some(queue) => queue.send(chunk).await.map_err(|_| ()),
            None => Err(()),
        }
    }

    pub(crate) fn written(&self) -> u64 {
        self.written.load(Ordering::Acquire)
    }

    pub(crate) fn durable(&self) -> u64 {
        self.durable.load(Ordering::Acquire)
    }

    /// Writes what is queued, flushes it to disk and closes the file.
    pub(crate) async fn finish(mut self) -> io::Result<u64> {
        self.queue = None;
        match (&mut self.thread).await {
            Ok(result) => result?,
            Err(e) => return Err(io::Error::other(e)),
        }
        Ok(self.durable())
    }
}

fn write_loop(
    mut file: File,
    mut chunks: mpsc::Receiver<Bytes>,
    runtime: &tokio::runtime::Handle,
    written: &AtomicU64,
    durable: &AtomicU64,
) -> io::Result<()> {
    let mut position = written.load(Ordering::Acquire);
    let mut last_sync = Instant::now();
    loop {
        // Wait for data, but no longer than the next sync is due: a stalled server must not
        // keep received bytes out of the checkpoint.
        let wait = SYNC_INTERVAL.saturating_sub(last_sync.elapsed());
        let next = runtime.block_on(async { tokio::time::timeout(wait, chunks.recv()).await });
        match next {
            Ok(Some(chunk)) => {
                file.write_all(&chunk)?;
                position += chunk.len() as u64;
                written.store(position, Ordering::Release);
            }
            Ok(None) => break,
            Err(_elapsed) => {}
        }
        if last_sync.elapsed() >= SYNC_INTERVAL {
            if durable.load(Ordering::Acquire) != position {
                file.sync_data()?;
                durable.store(position, Ordering::Release);
            }
            last_sync = Instant::now();
        }
    }
    file.sync_data()?;
    durable.store(position, Ordering::Release);
    Ok(())
}
