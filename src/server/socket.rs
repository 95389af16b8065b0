//! The accepted socket as both protocols' connections use it: writes pass straight through and
//! are reported to the connection's send clock; each protocol implements the reads
//! (`conn.rs`, `h2.rs`).

use std::{
    io,
    pin::Pin,
    task::{Context, Poll},
};

use tokio::{io::AsyncWrite, net::TcpStream};

/// Told what each write to the socket did: `Pending` (the client accepts no more bytes for
/// now) or a count of bytes written.
pub(super) trait SendClock {
    fn written(&self, poll: &Poll<io::Result<usize>>);
}

/// The socket and what a protocol keeps beside it: its read-side state and its send clock.
pub(super) struct Socket<S> {
    pub(super) inner: TcpStream,
    pub(super) side: S,
}

impl<S: SendClock + Unpin> AsyncWrite for Socket<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.side.written(&poll);
        poll
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.side.written(&poll);
        poll
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
