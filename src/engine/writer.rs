//! Writes a response body into its temp file and tells how many bytes are written and how many are
//! durable (flushed to disk).
//!
//! Bodies go through a writer thread that owns the file, so that disk writes and fsyncs never
//! block the async side and network and disk work in parallel: the async thread reads every
//! socket of every transfer, and copying the bytes into the page cache as well made it the
//! bottleneck (200 files of 256 KiB, 16 at once: 9% longer when written from the async thread).
//! Only tiny bodies, a read or two, are written from the transfer task itself (there a hand-off
//! costs more than the write) and flushed once at the end, off the async threads.

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
const QUEUE_DEPTH: usize = 16;
/// Bodies of known length up to this size are written directly (see the module comment).
const DIRECT_LIMIT: u64 = 64 << 10;

pub(crate) struct Writer {
    sink: Sink,
    written: Arc<AtomicU64>,
    durable: Arc<AtomicU64>,
}

/// The digest taken while writing, handed back by [`Writer::finish`].
type Digest = Option<super::digest::Streamed>;

enum Sink {
    Thread {
        queue: Option<mpsc::Sender<Bytes>>,
        thread: tokio::task::JoinHandle<io::Result<Digest>>,
    },
    Direct {
        file: Option<File>,
        error: Option<io::Error>,
        digest: Digest,
    },
}

impl Writer {
    /// Opens `path` for writing at `offset`, dropping anything after it (bytes past the last
    /// checkpoint are not trusted). `body` is the announced length of what will be written.
    /// `digest`, of the bytes before `offset`, goes on over those written (the caller gives one
    /// only when its `at` is `offset`).
    pub(crate) fn open(
        path: &Path,
        offset: u64,
        body: Option<u64>,
        digest: Digest,
    ) -> io::Result<Writer> {
        let mut file = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(false)
            .open(path)?;
        file.set_len(offset)?;
        file.seek(SeekFrom::Start(offset))?;
        let written = Arc::new(AtomicU64::new(offset));
        let durable = Arc::new(AtomicU64::new(offset));
        if body.is_some_and(|len| len <= DIRECT_LIMIT) {
            let sink = Sink::Direct {
                file: Some(file),
                error: None,
                digest,
            };
            return Ok(Writer {
                sink,
                written,
                durable,
            });
        }
        let (queue, chunks) = mpsc::channel(QUEUE_DEPTH);
        let runtime = tokio::runtime::Handle::current();
        let thread = {
            let (written, durable) = (written.clone(), durable.clone());
            tokio::task::spawn_blocking(move || {
                write_loop(file, chunks, &runtime, &written, &durable, digest)
            })
        };
        Ok(Writer {
            sink: Sink::Thread {
                queue: Some(queue),
                thread,
            },
            written,
            durable,
        })
    }

    /// Writes or queues a chunk; fails when writing failed (the error comes from [`Writer::finish`]).
    pub(crate) async fn write(&mut self, chunk: Bytes) -> Result<(), ()> {
        match &mut self.sink {
            Sink::Thread {
                queue: Some(queue), ..
            } => queue.send(chunk).await.map_err(|_| ()),
            Sink::Thread { queue: None, .. } => Err(()),
            Sink::Direct {
                file: Some(file),
                error,
                digest,
            } => match file.write_all(&chunk) {
                Ok(()) => {
                    if let Some(digest) = digest {
                        digest.update(&chunk);
                    }
                    self.written.fetch_add(chunk.len() as u64, Ordering::AcqRel);
                    Ok(())
                }
                Err(e) => {
                    *error = Some(e);
                    Err(())
                }
            },
            Sink::Direct { file: None, .. } => Err(()),
        }
    }

    pub(crate) fn written(&self) -> u64 {
        self.written.load(Ordering::Acquire)
    }

    pub(crate) fn durable(&self) -> u64 {
        self.durable.load(Ordering::Acquire)
    }

    /// Writes what is queued, flushes it to disk and closes the file; hands back the digest of
    /// the bytes written (if one was given), which covers `0..` the offset returned.
    pub(crate) async fn finish(mut self) -> io::Result<(u64, Digest)> {
        let digest = match &mut self.sink {
            Sink::Thread { queue, thread } => {
                *queue = None;
                match thread.await {
                    Ok(result) => result?,
                    Err(e) => return Err(io::Error::other(e)),
                }
            }
            Sink::Direct {
                file,
                error,
                digest,
            } => {
                if let Some(error) = error.take() {
                    return Err(error);
                }
                if let Some(file) = file.take() {
                    let synced = tokio::task::spawn_blocking(move || file.sync_data()).await;
                    synced.map_err(io::Error::other)??;
                }
                let digest = digest.take();
                self.durable.store(self.written(), Ordering::Release);
                digest
            }
        };
        Ok((self.durable(), digest))
    }
}

fn write_loop(
    mut file: File,
    mut chunks: mpsc::Receiver<Bytes>,
    runtime: &tokio::runtime::Handle,
    written: &AtomicU64,
    durable: &AtomicU64,
    mut digest: Digest,
) -> io::Result<Digest> {
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
                // On this thread, beside the disk: the async side only reads sockets.
                if let Some(digest) = &mut digest {
                    digest.update(&chunk);
                }
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
    Ok(digest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::digest::{Streamed, of_file};
    use crate::job::checksum::DigestAlgorithm;
    use std::sync::atomic::AtomicBool;

    /// The digest taken while writing is the digest of the file, on either sink, and goes on
    /// across writers that continue where the last one stopped.
    #[tokio::test]
    async fn the_digest_taken_while_writing_is_the_files() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("f");
        let first: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let second = vec![7u8; 1_000];
        let mut writer = Writer::open(&path, 0, None, Some(Streamed::new(DigestAlgorithm::Sha256)))
            .expect("open");
        for chunk in first.chunks(70_000) {
            writer
                .write(Bytes::copy_from_slice(chunk))
                .await
                .expect("write");
        }
        let (durable, digest) = writer.finish().await.expect("finish");
        assert_eq!(durable, first.len() as u64);
        // A small body goes straight to the file: the digest goes on there too.
        let mut writer = Writer::open(&path, durable, Some(1_000), digest).expect("open");
        writer.write(Bytes::from(second)).await.expect("write");
        let (durable, digest) = writer.finish().await.expect("finish");
        let digest = digest.expect("a digest");
        assert_eq!(digest.at, durable);
        let read_back = of_file(&path, DigestAlgorithm::Sha256, &AtomicBool::new(false))
            .expect("read")
            .expect("digest");
        assert_eq!(digest.finish(), read_back);
    }
}
