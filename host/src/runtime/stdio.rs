//! Bounded in-memory stdout and stderr for an instance.
//!
//! An [`OutputSink`] collects what the guest writes into one `BytesMut` and
//! hands it out as `Bytes` when the instance is gone, with no further copy.
//! It is bounded: past its limit it either refuses writes (stdout: the
//! invocation then fails with "output limit exceeded") or drops them and
//! remembers it did (stderr: a chatty guest must not fail because of its log).

use bytes::{Bytes, BytesMut};
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
