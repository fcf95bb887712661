//! Writes the window's own small files (the layout in `gui.ron`, the notices' memory in
//! `gui-notified.ron`) on a thread of their own: a crash-safe write ends with an fsync, which can
//! take tens of milliseconds on a busy disk, and a frame must not wait for it. Writes to one
//! path that pile up are coalesced (only the newest text is written); dropping the saver waits
//! for what is queued, so quitting never loses the last layout.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::mpsc;

enum Job {
    Write(PathBuf, Vec<u8>),
    /// Answered once everything sent before it is written.
    Flush(mpsc::Sender<()>),
}

pub struct Saver {
    jobs: Option<mpsc::Sender<Job>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Saver {
    pub fn spawn() -> Saver {
        let (tx, rx) = mpsc::channel::<Job>();
        let thread = std::thread::Builder::new()
            .name("ferry-gui-saver".into())
            .spawn(move || run(rx))
            .map_err(|e| {
                tracing::warn!(
                    "no saver thread ({e}): the window's files are written in its frames"
                )
            })
            .ok();
        Saver {
            // Without a thread, `save` writes in place (see below).
            jobs: thread.as_ref().map(|_| tx),
            thread,
        }
    }

    /// Writes `text` to `path` (atomically, fsynced), soon.
    pub fn save(&self, path: PathBuf, text: Vec<u8>) {
        let job = Job::Write(path, text);
        let unsent = match &self.jobs {
            Some(jobs) => jobs.send(job).err().map(|e| e.0),
            None => Some(job),
        };
        if let Some(Job::Write(path, text)) = unsent {
            write(&path, &text);
        }
    }

    /// Waits until everything saved so far is on disk.
    pub fn flush(&self) {
        let (tx, rx) = mpsc::channel();
        if let Some(jobs) = &self.jobs
            && jobs.send(Job::Flush(tx)).is_ok()
        {
            let _ = rx.recv();
        }
    }
}

impl Drop for Saver {
    fn drop(&mut self) {
        // Closing the channel ends the thread once the queue is written.
        self.jobs = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn run(rx: mpsc::Receiver<Job>) {
    while let Ok(first) = rx.recv() {
        // Take what else is queued: several layouts for one path are one write.
        let mut pending: BTreeMap<PathBuf, Vec<u8>> = BTreeMap::new();
        let mut flushes = Vec::new();
        for job in std::iter::once(first).chain(rx.try_iter()) {
            match job {
                Job::Write(path, text) => {
                    pending.insert(path, text);
                }
                Job::Flush(done) => flushes.push(done),
            }
        }
        for (path, text) in pending {
            write(&path, &text);
        }
        for done in flushes {
            let _ = done.send(());
        }
    }
}

fn write(path: &std::path::Path, text: &[u8]) {
    if let Err(e) = crate::store::write_atomically(path, text) {
        tracing::warn!("cannot save {}: {e}", path.display());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_text_is_written_and_drop_waits_for_it() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("gui.ron");
        let saver = Saver::spawn();
        for i in 0..50 {
            saver.save(path.clone(), format!("layout {i}").into_bytes());
        }
        saver.flush();
        assert_eq!(std::fs::read_to_string(&path).expect("saved"), "layout 49");
        saver.save(path.clone(), b"last".to_vec());
        drop(saver);
        assert_eq!(std::fs::read_to_string(&path).expect("saved"), "last");
    }
}
