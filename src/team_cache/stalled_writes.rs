//! Connections whose client stops reading are cut after the client time-out.
//!
//! HTTP servers time out reads, not writes: hyper polls a response's body only while the socket
//! takes bytes, so a client that stops reading a download holds its connection, its task and the
//! artifact's eviction guard for as long as it stays connected. [`StallAcceptor`] wraps every
//! accepted socket (beneath TLS, so both schemes are covered) in [`StallLimited`]: a write or
//! flush that makes no progress for `limit` fails with `TimedOut`, hyper drops the connection, and
//! the download's body (with its guard) goes with it. Any progress re-arms the clock; a client that
//! reads slowly but steadily is served.

use std::future::{Future, Ready};
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Sleep;

use super::counters::add;

/// Accepts with TCP_NODELAY (a response's head and chunks go out as written, not held by Nagle's
/// algorithm until the client's delayed ACK, 40 ms a request on Linux) and a limit on stalled
/// writes; counts the connections it cuts in `cut`.
#[derive(Clone)]
pub struct StallAcceptor {
    pub limit: Duration,
    pub cut: Arc<AtomicU64>,
}

impl<S> axum_server::accept::Accept<TcpStream, S> for StallAcceptor {
    type Stream = StallLimited<TcpStream>;
    type Service = S;
    type Future = Ready<io::Result<(Self::Stream, S)>>;

    fn accept(&self, stream: TcpStream, service: S) -> Self::Future {
        let limited = StallLimited { inner: stream, limit: self.limit, stalled: None, cut: self.cut.clone() };
        std::future::ready(limited.inner.set_nodelay(true).map(|()| (limited, service)))
    }
}

/// A stream whose writes fail once they have made no progress for `limit`.
pub struct StallLimited<S> {
    inner: S,
    limit: Duration,
    /// Armed by the first write that could not proceed; cleared by any that does.
    stalled: Option<Pin<Box<Sleep>>>,
    cut: Arc<AtomicU64>,
}

impl<S> StallLimited<S> {
    /// What a write's poll becomes: ready results pass and disarm the clock; pending ones arm it,
    /// and fail once it has run out.
    fn watch<T>(&mut self, polled: Poll<io::Result<T>>, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        if polled.is_ready() {
            self.stalled = None;
            return polled;
        }
        let limit = self.limit;
        let clock = self.stalled.get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        match clock.as_mut().poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(()) => {
                self.stalled = None;
                add(&self.cut, 1);
                tracing::warn!(target: "nxops", "cache serve: a client read nothing for {limit:?}; connection cut");
                Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("the client read nothing for {limit:?}"),
                )))
            }
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for StallLimited<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for StallLimited<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.watch(polled, cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.watch(polled, cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.inner).poll_flush(cx);
        self.watch(polled, cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.watch(polled, cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test(start_paused = true)]
    async fn a_write_that_stalls_past_the_limit_fails_and_is_counted() {
        // A pipe of 64 bytes that nobody reads: the second write cannot proceed.
        let (writer, _reader) = tokio::io::duplex(64);
        let cut = Arc::new(AtomicU64::new(0));
        let mut limited =
            StallLimited { inner: writer, limit: Duration::from_secs(5), stalled: None, cut: cut.clone() };
        limited.write_all(&[1; 64]).await.unwrap();
        let started = tokio::time::Instant::now();
        let err = limited.write_all(&[2; 64]).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed(), Duration::from_secs(5));
        assert_eq!(cut.load(std::sync::atomic::Ordering::Relaxed), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_but_steady_reader_is_served() {
        let (writer, mut reader) = tokio::io::duplex(64);
        let cut = Arc::new(AtomicU64::new(0));
        let mut limited =
            StallLimited { inner: writer, limit: Duration::from_secs(5), stalled: None, cut: cut.clone() };
        let drain = tokio::spawn(async move {
            let mut buf = [0u8; 64];
            let mut total = 0;
            while total < 640 {
                tokio::time::sleep(Duration::from_secs(4)).await;
                total += tokio::io::AsyncReadExt::read(&mut reader, &mut buf).await.unwrap();
            }
            total
        });
        // Ten times the pipe, each refill 4 s after the last: never 5 s without progress.
        limited.write_all(&[3; 640]).await.unwrap();
        assert_eq!(drain.await.unwrap(), 640);
        assert_eq!(cut.load(std::sync::atomic::Ordering::Relaxed), 0);
    }
}
