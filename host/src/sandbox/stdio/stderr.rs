//! The guest's stderr as log lines ([`GuestLog`]): one per guest line,
//! long lines split, and at most so many per connection.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

use super::MAX_CHUNK;
use crate::sandbox::report::Report;

/// Longest stderr line logged whole; longer ones are split.
const MAX_LINE: usize = 4096;

/// Stderr lines logged per connection before the rest is dropped.
const MAX_LINES: u32 = 1000;

/// A guest's stderr, cut into lines for its run's [`Report`].
#[derive(Clone)]
pub struct GuestLog(Arc<Mutex<LineBuf>>);

struct LineBuf {
    report: Arc<dyn Report>,
    pending: Vec<u8>,
    lines: u32,
}

impl GuestLog {
    /// A stderr whose lines go to `report`.
    pub fn new(report: Arc<dyn Report>) -> Self {
        Self(Arc::new(Mutex::new(LineBuf {
            report,
            pending: Vec::new(),
            lines: 0,
        })))
    }

    fn write(&self, bytes: &[u8]) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .write(bytes);
    }
}

impl LineBuf {
    fn write(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let room = MAX_LINE - self.pending.len();
            let (take, line_ends) = match bytes.iter().position(|&b| b == b'\n') {
                Some(i) if i < room => (i + 1, true),
                _ => (bytes.len().min(room), false),
            };
            self.pending.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            if line_ends || self.pending.len() == MAX_LINE {
                self.emit();
            }
        }
    }

    fn emit(&mut self) {
        if self.lines < MAX_LINES {
            let text = String::from_utf8_lossy(&self.pending);
            let text = text.trim_end_matches(['\n', '\r']);
            self.report.stderr_line(text);
        } else if self.lines == MAX_LINES {
            self.report.stderr_dropped(MAX_LINES);
        }
        self.lines = self.lines.saturating_add(1);
        self.pending.clear();
    }
}

impl Drop for LineBuf {
    fn drop(&mut self) {
        if !self.pending.is_empty() {
            self.emit();
        }
    }
}

impl OutputStream for GuestLog {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        GuestLog::write(self, &bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(MAX_CHUNK)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for GuestLog {
    async fn ready(&mut self) {}
}

impl AsyncWrite for GuestLog {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        GuestLog::write(&self, buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl IsTerminal for GuestLog {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestLog {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }

    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The lines a run reported.
    #[derive(Default)]
    struct Heard(Mutex<Vec<String>>);

    impl Report for Heard {
        fn stderr_line(&self, text: &str) {
            self.0.lock().unwrap().push(text.to_owned());
        }

        fn stderr_dropped(&self, logged: u32) {
            self.0
                .lock()
                .unwrap()
                .push(format!("dropped after {logged}"));
        }

        fn egress_denied(&self, _: &'static str, _: std::net::SocketAddr) {}
    }

    #[test]
    fn long_lines_are_split_and_partial_lines_kept() {
        let heard = Arc::new(Heard::default());
        let log = GuestLog::new(heard.clone());
        {
            let mut buf = log.0.lock().unwrap();
            buf.write(b"abc");
            assert_eq!(buf.pending, b"abc");
            buf.write(b"def\r\nxy");
            assert_eq!(buf.lines, 1);
            assert_eq!(buf.pending, b"xy");
            buf.write(&vec![b'z'; MAX_LINE * 2]);
            assert_eq!(buf.lines, 3);
            assert_eq!(buf.pending.len(), 2);
        }
        drop(log);
        let lines = heard.0.lock().unwrap();
        assert_eq!(lines.len(), 4, "the partial line at the end too");
        assert_eq!(lines[0], "abcdef");
        assert_eq!(lines[1].len(), MAX_LINE);
        assert!(lines[1].starts_with("xyzz"));
        assert_eq!(lines[3], "zz");
    }

    #[test]
    fn past_the_line_limit_the_rest_is_dropped_once() {
        let heard = Arc::new(Heard::default());
        let log = GuestLog::new(heard.clone());
        for _ in 0..MAX_LINES + 10 {
            log.write(b"x\n");
        }
        let lines = heard.0.lock().unwrap();
        assert_eq!(lines.len(), MAX_LINES as usize + 1);
        assert_eq!(lines.last().unwrap(), &format!("dropped after {MAX_LINES}"));
    }
}
