//! One stream type for both legs of a session: plain TCP, TLS as a server (to the mail client)
//! or TLS as a client (to the upstream), switchable in place for STARTTLS.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// A connection in one of its three shapes.
pub enum Stream {
    Plain(TcpStream),
    /// TLS we terminate: the mail client's side.
    Server(Box<tokio_rustls::server::TlsStream<TcpStream>>),
    /// TLS we originate: the upstream side.
    Client(Box<tokio_rustls::client::TlsStream<TcpStream>>),
    /// A placeholder while the stream is being upgraded; every operation on it fails.
    Closed,
}

impl Stream {
    /// Configures a fresh TCP connection: no Nagle delay (the pre-auth exchange is small
    /// request/response lines) and TCP keepalive, so an idle IMAP IDLE session on a dead peer
    /// ends eventually instead of the proxy imposing an idle timeout of its own.
    pub fn tcp(stream: TcpStream) -> Stream {
        let _ = stream.set_nodelay(true);
        let sock = socket2::SockRef::from(&stream);
        let keepalive = socket2::TcpKeepalive::new()
            .with_time(Duration::from_secs(300))
            .with_interval(Duration::from_secs(60));
        let _ = sock.set_tcp_keepalive(&keepalive);
        Stream::Plain(stream)
    }

    /// True once TLS is on.
    pub fn is_tls(&self) -> bool {
        !matches!(self, Stream::Plain(_))
    }

    /// The plain TCP stream, for a STARTTLS upgrade; `Err` with the stream back if TLS is on.
    pub fn into_plain(self) -> Result<TcpStream, Stream> {
        match self {
            Stream::Plain(s) => Ok(s),
            other => Err(other),
        }
    }
}

macro_rules! delegate {
    ($self:ident, $s:ident => $e:expr) => {
        match $self.get_mut() {
            Stream::Closed => Poll::Ready(Err(io::Error::from(io::ErrorKind::NotConnected))),
            Stream::Plain($s) => {
                let $s = Pin::new($s);
                $e
            }
            Stream::Server($s) => {
                let $s = Pin::new($s.as_mut());
                $e
            }
            Stream::Client($s) => {
                let $s = Pin::new($s.as_mut());
                $e
            }
        }
    };
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        delegate!(self, s => s.poll_read(cx, buf))
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        delegate!(self, s => s.poll_write(cx, buf))
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate!(self, s => s.poll_flush(cx))
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate!(self, s => s.poll_shutdown(cx))
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        delegate!(self, s => s.poll_write_vectored(cx, bufs))
    }
    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Closed => false,
            Stream::Plain(s) => s.is_write_vectored(),
            Stream::Server(s) => s.is_write_vectored(),
            Stream::Client(s) => s.is_write_vectored(),
        }
    }
}
