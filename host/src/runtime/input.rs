//! An instance's input: one `Bytes` behind one cursor, read as stdin or
//! through `weft:chain`'s `input`, without a copy in the host.
//!
//! The bytes can be given after the instance was created (a warm chain step
//! is instantiated before the previous step has produced its input). Once
//! the guest has read everything, the source lets go of the `Bytes`, which
//! may be what keeps the previous step's instance alive (see
//! `chain::held`).

use bytes::Bytes;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use wasmtime_wasi::cli::{IsTerminal, StdinStream};
use wasmtime_wasi::p2::{InputStream, Pollable, StreamError, StreamResult};

/// A shareable, consumable input.
#[derive(Clone, Debug, Default)]
pub struct InputSource {
    rest: Arc<Mutex<Bytes>>,
}

impl InputSource {
    /// A source holding `bytes`.
    pub fn new(bytes: Bytes) -> Self {
        InputSource {
            rest: Arc::new(Mutex::new(bytes)),
        }
    }

    /// Replaces what is left to read with `bytes`.
    pub fn set(&self, bytes: Bytes) {
        *self.lock() = bytes;
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.lock().len()
    }

    /// Takes up to `max` bytes off the front, without copying. Empty at the
    /// end; the last take drops the source's hold on the buffer.
    pub fn take(&self, max: usize) -> Bytes {
        let mut rest = self.lock();
        if max >= rest.len() {
            std::mem::take(&mut *rest)
        } else {
            rest.split_to(max)
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Bytes> {
        // The guarded value is a `Bytes`: always valid, even after a panic.
        self.rest.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl IsTerminal for InputSource {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdinStream for InputSource {
    fn p2_stream(&self) -> Box<dyn InputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncRead + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for InputSource {
    async fn ready(&mut self) {}
}

impl InputStream for InputSource {
    fn read(&mut self, size: usize) -> StreamResult<Bytes> {
        let bytes = self.take(size);
        if bytes.is_empty() && size > 0 {
            return Err(StreamError::Closed);
        }
        Ok(bytes)
    }
}

impl tokio::io::AsyncRead for InputSource {
    fn poll_read(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let bytes = self.take(buf.remaining());
        buf.put_slice(&bytes);
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_share_one_cursor_and_release_the_buffer_at_the_end() {
        let source = InputSource::new(Bytes::from_static(b"abcdef"));
        let mut stream = source.clone();
        assert_eq!(&InputStream::read(&mut stream, 2).unwrap()[..], b"ab");
        assert_eq!(source.remaining(), 4);
        assert_eq!(&source.take(10)[..], b"cdef");
        assert!(matches!(
            InputStream::read(&mut stream, 1),
            Err(StreamError::Closed)
        ));
        source.set(Bytes::from_static(b"x"));
        assert_eq!(source.remaining(), 1);
    }

    #[test]
    fn the_last_take_hands_over_the_only_handle() {
        let buffer = Bytes::from(vec![7u8; 100]);
        let source = InputSource::new(buffer.clone());
        drop(buffer);
        let first = source.take(40);
        let last = source.take(60);
        drop(first);
        // The source no longer holds the buffer: `last` is its only owner.
        assert!(last.is_unique());
    }
}
