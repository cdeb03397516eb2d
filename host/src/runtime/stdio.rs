//! Bounded in-memory stdout and stderr for an instance.
//!
//! An [`OutputSink`] collects what the guest writes into one `BytesMut` and
//! hands it out as `Bytes` when the instance is gone, with no further copy.
//! It is bounded: past its limit it either refuses writes (stdout: the
//! invocation then fails with "output limit exceeded") or drops them and
//! remembers it did (stderr: a chatty guest must not fail because of its log).

use bytes::{Bytes, BytesMut};
use std::fmt;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError, StreamResult};

/// What a full sink does with more bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WhenFull {
    /// Refuse the write: the guest sees a closed stream.
    Refuse,
    /// Accept and drop the bytes, marking the sink truncated.
    Truncate,
}

/// A bounded, shareable byte sink used as a guest's stdout or stderr.
#[derive(Clone, Debug)]
pub struct OutputSink {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Debug)]
struct Inner {
    buf: BytesMut,
    limit: usize,
    when_full: WhenFull,
    overflowed: bool,
}

impl OutputSink {
    /// A sink that holds at most `limit` bytes.
    pub fn new(limit: usize, when_full: WhenFull) -> Self {
        OutputSink {
            inner: Arc::new(Mutex::new(Inner {
                buf: BytesMut::new(),
                limit,
                when_full,
                overflowed: false,
            })),
        }
    }

    /// Whether the guest tried to write past the limit.
    pub fn overflowed(&self) -> bool {
        self.lock().overflowed
    }

    /// The collected bytes. Free of copies when this is the last handle
    /// (the instance's store has been dropped); copies otherwise.
    pub fn into_bytes(self) -> Bytes {
        match Arc::try_unwrap(self.inner) {
            Ok(inner) => inner
                .into_inner()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .buf
                .freeze(),
            Err(shared) => {
                let inner = shared.lock().unwrap_or_else(|p| p.into_inner());
                Bytes::copy_from_slice(&inner.buf)
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A poisoned lock only means another writer panicked mid-append; the
        // buffer itself is still a valid byte string.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends as much of `bytes` as fits; returns how much was taken.
    fn append(&self, bytes: &[u8]) -> Result<usize, StreamError> {
        let mut inner = self.lock();
        let room = inner.limit - inner.buf.len();
        if bytes.len() <= room {
            inner.buf.extend_from_slice(bytes);
            return Ok(bytes.len());
        }
        inner.overflowed = true;
        match inner.when_full {
            WhenFull::Refuse => Err(StreamError::Closed),
            WhenFull::Truncate => {
                inner.buf.extend_from_slice(&bytes[..room]);
                Ok(bytes.len())
            }
        }
    }

    fn room(&self) -> Result<usize, StreamError> {
        let mut inner = self.lock();
        let room = inner.limit - inner.buf.len();
        match inner.when_full {
            // Always "ready": extra bytes are dropped in `append`.
            WhenFull::Truncate => Ok(room.max(64 * 1024)),
            WhenFull::Refuse if room == 0 => {
                inner.overflowed = true;
                Err(StreamError::Closed)
            }
            WhenFull::Refuse => Ok(room),
        }
    }
}

impl IsTerminal for OutputSink {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for OutputSink {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for OutputSink {
    async fn ready(&mut self) {}
}

impl OutputStream for OutputSink {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.append(&bytes).map(drop)
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        self.room()
    }
}

impl tokio::io::AsyncWrite for OutputSink {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Poll::Ready(
            self.append(buf)
                .map_err(|_| std::io::ErrorKind::BrokenPipe.into()),
        )
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusing_sink_keeps_what_fit_and_reports_overflow() {
        let sink = OutputSink::new(4, WhenFull::Refuse);
        let mut stream = sink.clone();
        assert_eq!(stream.check_write().unwrap(), 4);
        stream.write(Bytes::from_static(b"abc")).unwrap();
        assert!(stream.write(Bytes::from_static(b"de")).is_err());
        assert!(sink.overflowed());
        drop(stream);
        assert_eq!(sink.into_bytes(), Bytes::from_static(b"abc"));
    }

    #[test]
    fn truncating_sink_never_refuses() {
        let sink = OutputSink::new(3, WhenFull::Truncate);
        let mut stream = sink.clone();
        stream.write(Bytes::from_static(b"abcdef")).unwrap();
        assert!(stream.check_write().unwrap() > 0);
        assert!(sink.overflowed());
        drop(stream);
        assert_eq!(sink.into_bytes(), Bytes::from_static(b"abc"));
    }
}

/// Which of the guest's output streams a line came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamKind {
    /// stdout.
    Stdout,
    /// stderr.
    Stderr,
}

/// Receives a long-running guest's output line by line, as it is written.
pub trait LineSink: Send + Sync + fmt::Debug {
    /// One complete line (without its newline), or a partial one cut at
    /// [`MAX_LINE`] bytes or at the end of the stream.
    fn line(&self, stream: StreamKind, text: &str);

    /// One line the guest logged through `weft:log`.
    fn log(&self, level: weft_abi::log::Level, message: &str);
}

/// Longest line passed to a [`LineSink`]; longer ones are split.
pub const MAX_LINE: usize = 4096;

/// An output stream that splits what the guest writes into lines for a
/// [`LineSink`]. Never refuses a write: a service must not fail because of
/// its log.
#[derive(Clone, Debug)]
pub struct LineStream {
    sink: Arc<dyn LineSink>,
    kind: StreamKind,
    partial: Arc<Mutex<Vec<u8>>>,
}

impl LineStream {
    /// A stream feeding `sink` as `kind`.
    pub fn new(sink: Arc<dyn LineSink>, kind: StreamKind) -> Self {
        LineStream {
            sink,
            kind,
            partial: Arc::new(Mutex::new(Vec::new())),
        }
    }

    fn push(&self, bytes: &[u8]) {
        let mut partial = self.partial.lock().unwrap_or_else(|p| p.into_inner());
        for &byte in bytes {
            if byte == b'\n' {
                self.emit(&mut partial);
            } else {
                partial.push(byte);
                if partial.len() >= MAX_LINE {
                    self.emit(&mut partial);
                }
            }
        }
    }

    fn emit(&self, partial: &mut Vec<u8>) {
        let text = String::from_utf8_lossy(partial);
        self.sink.line(self.kind, text.trim_end_matches('\r'));
        partial.clear();
    }

    /// Passes on a last line that had no newline.
    pub fn flush_partial(&self) {
        let mut partial = self.partial.lock().unwrap_or_else(|p| p.into_inner());
        if !partial.is_empty() {
            self.emit(&mut partial);
        }
    }
}

impl IsTerminal for LineStream {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for LineStream {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for LineStream {
    async fn ready(&mut self) {}
}

impl OutputStream for LineStream {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.push(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(64 * 1024)
    }
}

impl tokio::io::AsyncWrite for LineStream {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.push(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod line_tests {
    use super::*;

    #[derive(Debug, Default)]
    struct Collect(Mutex<Vec<(StreamKind, String)>>);

    impl LineSink for Collect {
        fn line(&self, stream: StreamKind, text: &str) {
            self.0.lock().unwrap().push((stream, text.to_owned()));
        }

        fn log(&self, _: weft_abi::log::Level, _: &str) {}
    }

    #[test]
    fn splits_lines_across_writes_and_cuts_long_ones() {
        let sink = Arc::new(Collect::default());
        let mut stream = LineStream::new(sink.clone(), StreamKind::Stderr);
        stream.write(Bytes::from_static(b"one\ntw")).unwrap();
        stream.write(Bytes::from_static(b"o\r\nthree")).unwrap();
        stream.write(Bytes::from(vec![b'x'; MAX_LINE + 1])).unwrap();
        stream.flush_partial();
        let lines = sink.0.lock().unwrap();
        assert_eq!(lines[0], (StreamKind::Stderr, "one".to_owned()));
        assert_eq!(lines[1].1, "two");
        assert_eq!(lines[2].1.len(), MAX_LINE);
        assert!(lines[2].1.starts_with("three"));
        assert_eq!(lines[3].1, "xxxxxx");
    }
}
