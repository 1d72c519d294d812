//! A bound on how long a connection's writes may stall. hyper's header timeout covers reading
//! only: a client that pipelines requests and never reads the answers would leave hyper's
//! writes pending for ever, holding the connection and its buffers. Wrapped in this, the IO
//! fails a write with `TimedOut` once it has made no progress for the timeout.
use std::future::Future;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// `inner`, whose write side (write, flush, shutdown) fails once it has stayed pending for
/// `timeout` without a write completing in between. Reads pass through untouched.
pub(crate) struct WriteDeadline<T> {
    inner: T,
    timeout: Duration,
    /// Running while the write side is pending; made on the first stall and reused after.
    stall: Option<Pin<Box<Sleep>>>,
    stalled: bool,
    timed_out: bool,
}

impl<T> WriteDeadline<T> {
    pub(crate) fn new(inner: T, timeout: Duration) -> WriteDeadline<T> {
        WriteDeadline { inner, timeout, stall: None, stalled: false, timed_out: false }
    }

    /// Whether a write has failed for want of progress: the client is not reading, so there is
    /// no answer left to protect.
    pub(crate) fn timed_out(&self) -> bool {
        self.timed_out
    }

    pub(crate) fn into_inner(self) -> T {
        self.inner
    }

    /// Passes a completed operation through and disarms the deadline; arms it on the first
    /// `Pending` of a stall and fails the operation once it fires.
    fn bound<R>(&mut self, cx: &mut Context<'_>, polled: Poll<io::Result<R>>) -> Poll<io::Result<R>> {
        if polled.is_ready() {
            self.stalled = false;
            return polled;
        }
        if !self.stalled {
            self.stalled = true;
            let deadline = Instant::now() + self.timeout;
            match &mut self.stall {
                Some(stall) => stall.as_mut().reset(deadline),
                None => self.stall = Some(Box::pin(tokio::time::sleep_until(deadline))),
            }
        }
        // Polling registers this task with the timer: a peer that never reads still gets the
        // write polled again, and failed, when the deadline passes.
        if self.stall.as_mut().is_some_and(|stall| stall.as_mut().poll(cx).is_ready()) {
            self.timed_out = true;
            return Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, "the client has not read its answers")));
        }
        Poll::Pending
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for WriteDeadline<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for WriteDeadline<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.bound(cx, polled)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.bound(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.inner).poll_flush(cx);
        self.bound(cx, polled)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.bound(cx, polled)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncWriteExt;

    use super::*;

    fn block_on<F: std::future::Future>(future: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(future)
    }

    #[test]
    fn a_write_nobody_reads_fails_after_the_timeout_and_progress_resets_it() {
        block_on(async {
            let timeout = Duration::from_millis(500);
            let (near, mut far) = tokio::io::duplex(16);
            let mut bounded = WriteDeadline::new(near, timeout);
            // Each write stalls for a fifth of the timeout before the reader makes room: the
            // stalls add up to more than the timeout, and none fails, since each made progress.
            let started = Instant::now();
            for _ in 0..8 {
                let write = bounded.write_all(&[7u8; 32]);
                let read = async {
                    tokio::time::sleep(timeout / 5).await;
                    let mut sink = [0u8; 32];
                    tokio::io::AsyncReadExt::read_exact(&mut far, &mut sink).await.unwrap();
                };
                let (written, ()) = tokio::join!(write, read);
                written.unwrap();
            }
            assert!(started.elapsed() > timeout);
            assert!(!bounded.timed_out());
            // Then nobody reads: the buffer fills and the next write fails at the timeout.
            bounded.write_all(&[7u8; 16]).await.unwrap();
            let started = Instant::now();
            let error = bounded.write_all(b"more").await.unwrap_err();
            assert_eq!(error.kind(), io::ErrorKind::TimedOut);
            assert!(started.elapsed() >= timeout);
            assert!(bounded.timed_out());
        });
    }
}
