//! A client connection that fails its writes once the client has accepted nothing for
//! the write-stall timeout, so that a client which never reads its stream cannot keep a
//! model busy (and a llama-server slot generating) forever.
//!
//! The timer lives in the socket, not in the response body: a client that stops
//! reading fills the socket buffer and then hyper's write buffer, after which hyper no
//! longer polls the body at all, but it keeps retrying the pending write. The timer is
//! armed only when a write cannot proceed, so a client that keeps up costs no timer.

use std::{
    future::Future as _,
    io,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    time::Sleep,
};

/// An accepted connection with the write-stall timeout applied.
pub(crate) struct StallGuard<I> {
    io: I,
    timeout: Duration,
    /// Armed by the first write that could not proceed; cleared by any progress.
    stalled: Option<Pin<Box<Sleep>>>,
}

impl<I> StallGuard<I> {
    pub(crate) fn new(io: I, timeout: Duration) -> Self {
        Self {
            io,
            timeout,
            stalled: None,
        }
    }

    /// Turns a pending write into the stall error once the timer has run out. A write
    /// that went through clears the timer; a flush does not, since a flush with nothing
    /// buffered below is no sign that the client reads.
    fn check<T>(
        &mut self,
        cx: &mut Context<'_>,
        result: Poll<io::Result<T>>,
        progress: bool,
    ) -> Poll<io::Result<T>> {
        if result.is_ready() {
            if progress {
                self.stalled = None;
            }
            return result;
        }
        let timeout = self.timeout;
        let sleep = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        match sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("the client accepted no data for {timeout:?}"),
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for StallGuard<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for StallGuard<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.io).poll_write(cx, buf);
        this.check(cx, result, true)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.check(cx, result, true)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.io).poll_flush(cx);
        this.check(cx, result, false)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.io).poll_shutdown(cx);
        this.check(cx, result, false)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[tokio::test]
    async fn a_slow_reader_keeps_its_connection_and_one_that_stopped_loses_it() {
        let (ours, mut theirs) = tokio::io::duplex(64);
        let mut guard = StallGuard::new(ours, Duration::from_secs(1));
        // A reader that takes 64 bytes every 100 ms: slower than the writer, but never
        // silent for the timeout.
        let reader = tokio::spawn(async move {
            let mut buf = [0u8; 64];
            let mut total = 0;
            while total < 640 {
                tokio::time::sleep(Duration::from_millis(100)).await;
                total += theirs.read(&mut buf).await.unwrap();
            }
            theirs
        });
        guard.write_all(&[1u8; 640]).await.unwrap();
        let theirs = reader.await.unwrap();
        // Now nobody reads: the write fails once the pipe is full for the timeout.
        let started = tokio::time::Instant::now();
        let e = guard.write_all(&[1u8; 640]).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut, "{e}");
        assert!(started.elapsed() >= Duration::from_secs(1));
        drop(theirs);
    }
}
