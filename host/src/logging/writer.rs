//! Stderr without waiting: log lines are handed to one writer thread
//! through a bounded queue, so a reader that is slow or stopped (a full
//! pipe, a stalled journal) never holds a worker. When the queue is full a
//! line is dropped and counted, and the writer says how many once it
//! catches up: losing lines under a flood is better than serving slower.
//!
//! The readiness lines (`listening service=...`) are never dropped: they
//! wait for room, and go through the same queue so they stay in order
//! with the lines around them. [`finish`] writes out what is queued before
//! the process exits.

use std::io::{self, Write as _};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Mutex, OnceLock};
use std::thread::JoinHandle;

/// Lines waiting at most: a guest's line is at most 4 KiB, so the queue
/// holds at most a few tens of MiB however fast lines come.
const QUEUE: usize = 8192;

struct Queue {
    tx: Mutex<Option<SyncSender<Item>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

/// What the queue carries: a line, or a request to say when every line
/// queued before it is written.
enum Item {
    Line(Vec<u8>),
    Flushed(SyncSender<()>),
}

static WRITER: OnceLock<Queue> = OnceLock::new();
/// Lines dropped since the writer last said so.
static DROPPED: AtomicU64 = AtomicU64::new(0);

/// Starts the writer thread; lines written before this go straight out.
pub fn start() {
    WRITER.get_or_init(|| {
        let (tx, rx) = sync_channel(QUEUE);
        let thread = std::thread::Builder::new()
            .name("wasinetd-log".into())
            .spawn(move || drain(rx))
            .ok();
        Queue {
            tx: Mutex::new(thread.is_some().then_some(tx)),
            thread: Mutex::new(thread),
        }
    });
}

fn drain(rx: Receiver<Item>) {
    let stderr = io::stderr();
    for item in rx {
        let line = match item {
            Item::Line(line) => line,
            Item::Flushed(done) => {
                let _ = done.send(());
                continue;
            }
        };
        let mut out = stderr.lock();
        let _ = out.write_all(&line);
        let dropped = DROPPED.swap(0, Ordering::Relaxed);
        if dropped > 0 {
            let _ = writeln!(
                out,
                "wasinetd: {dropped} log line(s) dropped: stderr was not read fast enough"
            );
        }
    }
}

fn sender() -> Option<SyncSender<Item>> {
    let queue = WRITER.get()?;
    queue.tx.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

/// Queues one line (with its newline); drops it if the queue is full.
pub fn line(bytes: Vec<u8>) {
    match sender() {
        Some(tx) => match tx.try_send(Item::Line(bytes)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                DROPPED.fetch_add(1, Ordering::Relaxed);
            }
            Err(TrySendError::Disconnected(Item::Line(bytes))) => direct(&bytes),
            Err(TrySendError::Disconnected(_)) => {}
        },
        None => direct(&bytes),
    }
}

/// Queues one line that must not be lost, waiting for room.
pub fn line_waiting(bytes: Vec<u8>) {
    match sender() {
        Some(tx) => {
            if let Err(e) = tx.send(Item::Line(bytes))
                && let Item::Line(bytes) = e.0
            {
                direct(&bytes);
            }
        }
        None => direct(&bytes),
    }
}

/// Waits until every line queued so far is written to stderr: before
/// telling systemd the daemon is ready, whose readiness lines must be out.
pub fn flush() {
    let Some(tx) = sender() else { return };
    let (done, wait) = std::sync::mpsc::sync_channel(1);
    if tx.send(Item::Flushed(done)).is_ok() {
        let _ = wait.recv();
    }
}

fn direct(bytes: &[u8]) {
    let _ = io::stderr().lock().write_all(bytes);
}

/// Writes out every queued line and stops the writer; later lines go
/// straight to stderr.
pub fn finish() {
    let Some(queue) = WRITER.get() else { return };
    drop(queue.tx.lock().unwrap_or_else(|e| e.into_inner()).take());
    if let Some(thread) = queue
        .thread
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take()
    {
        let _ = thread.join();
    }
}

/// tracing's writer: each event is formatted into one buffer, queued whole
/// when the writer is dropped.
pub struct Stderr;

/// One event's bytes.
pub struct Event(Vec<u8>);

impl io::Write for Event {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for Event {
    fn drop(&mut self) {
        if !self.0.is_empty() {
            line(std::mem::take(&mut self.0));
        }
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Stderr {
    type Writer = Event;

    fn make_writer(&'a self) -> Event {
        Event(Vec::with_capacity(256))
    }
}
