//! After login: the bytes the upstream sent with its OK go to the client, the bytes the client
//! pipelined after its login command go upstream, then both directions are copied untouched
//! (COMPRESS=DEFLATE, IDLE, literals of any size just work) until both sides have closed.
//!
//! No idle timeout: IMAP clients IDLE for up to 29 minutes (RFC 9051 §5.4 wants ≥ 30 min of
//! patience); dead peers are found by TCP keepalive (see `stream.rs`).
//!
//! The copy is ours rather than `tokio::io::copy_bidirectional` for memory: tokio's keeps two
//! fixed buffers per session for its whole life, so 64 KiB each way costs 128 KiB per idle IMAP
//! session, and bulk transfers want more than that (a 64 KiB buffer measured 0.93–0.98 × direct
//! for a large SMTP send, 256 KiB 0.97–1.07 ×). Here each direction holds a buffer only while
//! bytes flow: it starts at 16 KiB, doubles up to 256 KiB while reads fill it (bulk), and is
//! freed when the peer goes quiet after a short read (an idle session holds no copy buffer).

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};

/// Bytes moved each way.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counters {
    /// Client → upstream.
    pub up: u64,
    /// Upstream → client.
    pub down: u64,
}

/// First buffer size of a direction that starts moving bytes.
const MIN_BUFFER: usize = 16 * 1024;
/// Largest buffer a direction grows to while its reads keep filling it.
const MAX_BUFFER: usize = 256 * 1024;

/// Writes `to_client` and `to_upstream` first, then copies both ways until both sides closed
/// (a side that ends its stream gets a shutdown of the other's write half, as with
/// `copy_bidirectional`).
pub async fn splice<C, U>(
    client: &mut C,
    upstream: &mut U,
    to_client: &[u8],
    to_upstream: &[u8],
) -> io::Result<Counters>
where
    C: AsyncRead + AsyncWrite + Unpin + ?Sized,
    U: AsyncRead + AsyncWrite + Unpin + ?Sized,
{
    if !to_client.is_empty() {
        client.write_all(to_client).await?;
        client.flush().await?;
    }
    if !to_upstream.is_empty() {
        upstream.write_all(to_upstream).await?;
        upstream.flush().await?;
    }
    let (mut up, mut down) = (Pump::default(), Pump::default());
    let (up, down) = poll_fn(|cx| {
        let up = up.poll(cx, Pin::new(&mut *client), Pin::new(&mut *upstream));
        let down = down.poll(cx, Pin::new(&mut *upstream), Pin::new(&mut *client));
        let up = ready!(up)?;
        let down = ready!(down)?;
        Poll::Ready(Ok::<_, io::Error>((up, down)))
    })
    .await?;
    Ok(Counters {
        up: up + to_upstream.len() as u64,
        down: down + to_client.len() as u64,
    })
}

/// One direction of the copy: read into `buf`, write it all out, repeat; flush whenever the
/// reader has nothing more for now; shut the writer down at the reader's end of stream.
#[derive(Debug)]
struct Pump {
    /// Empty while idle; `size` octets while bytes flow.
    buf: Vec<u8>,
    /// Size of the next allocation.
    size: usize,
    /// `buf[pos..end]` is read but not yet written.
    pos: usize,
    end: usize,
    /// Bytes written since the last flush.
    unflushed: bool,
    /// The last read filled the buffer: the peer is streaming.
    streaming: bool,
    /// The reader reached its end of stream.
    read_done: bool,
    /// Largest buffer held so far.
    peak: usize,
    /// The writer was shut down: this direction is finished.
    done: bool,
    amount: u64,
}

impl Default for Pump {
    fn default() -> Self {
        Pump {
            buf: Vec::new(),
            size: MIN_BUFFER,
            pos: 0,
            end: 0,
            unflushed: false,
            streaming: false,
            read_done: false,
            peak: 0,
            done: false,
            amount: 0,
        }
    }
}

impl Pump {
    fn poll<R, W>(
        &mut self,
        cx: &mut Context<'_>,
        mut reader: Pin<&mut R>,
        mut writer: Pin<&mut W>,
    ) -> Poll<io::Result<u64>>
    where
        R: AsyncRead + ?Sized,
        W: AsyncWrite + ?Sized,
    {
        loop {
            if self.done {
                return Poll::Ready(Ok(self.amount));
            }
            while self.pos < self.end {
                let n = ready!(
                    writer
                        .as_mut()
                        .poll_write(cx, &self.buf[self.pos..self.end])
                )?;
                if n == 0 {
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                self.pos += n;
                self.amount += n as u64;
                self.unflushed = true;
            }
            if self.read_done {
                ready!(writer.as_mut().poll_shutdown(cx))?;
                self.done = true;
                self.buf = Vec::new();
                continue;
            }
            if self.buf.is_empty() {
                self.buf = vec![0; self.size];
                self.peak = self.peak.max(self.size);
            }
            let mut read = ReadBuf::new(&mut self.buf);
            match reader.as_mut().poll_read(cx, &mut read) {
                Poll::Pending => {
                    if self.unflushed {
                        ready!(writer.as_mut().poll_flush(cx))?;
                        self.unflushed = false;
                    }
                    if !self.streaming {
                        // The last read came up short: the peer is not streaming. Give the
                        // buffer back until it sends again.
                        self.buf = Vec::new();
                        self.size = MIN_BUFFER;
                    }
                    return Poll::Pending;
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok(())) => {
                    let n = read.filled().len();
                    self.pos = 0;
                    self.end = n;
                    self.streaming = n == self.buf.len();
                    if n == 0 {
                        self.read_done = true;
                    } else if self.streaming && self.size < MAX_BUFFER {
                        // A full read: bulk data. The next allocation is bigger.
                        self.size *= 2;
                        let mut bigger = vec![0; self.size];
                        bigger[..n].copy_from_slice(&self.buf[..n]);
                        self.buf = bigger;
                        self.peak = self.peak.max(self.size);
                    }
                }
            }
        }
    }

    /// Octets held for this direction (0 when idle).
    #[cfg(test)]
    fn held(&self) -> usize {
        self.buf.len()
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncReadExt;

    use super::*;

    #[tokio::test]
    async fn pending_bytes_first_then_both_ways_untouched() {
        let (mut client, mut client_peer) = tokio::io::duplex(1 << 16);
        let (mut upstream, mut upstream_peer) = tokio::io::duplex(1 << 16);
        let big: Vec<u8> = (0..1_000_000u32).map(|i| (i * 7 + i / 255) as u8).collect();
        let big2 = big.clone();
        let task = tokio::spawn(async move {
            splice(
                &mut client_peer,
                &mut upstream_peer,
                b"a1 OK [CAPABILITY IMAP4rev1] done\r\n",
                b"a2 SELECT INBOX\r\n",
            )
            .await
        });
        let mut first = vec![0u8; 35];
        client.read_exact(&mut first).await.unwrap();
        assert_eq!(&first, b"a1 OK [CAPABILITY IMAP4rev1] done\r\n");
        let mut pipelined = vec![0u8; 17];
        upstream.read_exact(&mut pipelined).await.unwrap();
        assert_eq!(&pipelined, b"a2 SELECT INBOX\r\n");
        // A megabyte of arbitrary bytes each way, concurrently.
        let writer = tokio::spawn(async move {
            upstream.write_all(&big2).await.unwrap();
            let mut got = vec![0u8; big2.len()];
            upstream.read_exact(&mut got).await.unwrap();
            assert_eq!(got, big2);
            upstream.shutdown().await.unwrap();
            upstream
        });
        let mut got = vec![0u8; big.len()];
        client.read_exact(&mut got).await.unwrap();
        assert_eq!(got, big);
        client.write_all(&big).await.unwrap();
        let _upstream = writer.await.unwrap();
        client.shutdown().await.unwrap();
        let counters = task.await.unwrap().unwrap();
        assert_eq!(
            counters,
            Counters {
                up: 17 + 1_000_000,
                down: 35 + 1_000_000
            }
        );
    }

    /// A reader that hands out `script` in the given read sizes, with a `Pending` between
    /// the steps, like a socket whose peer sends in bursts.
    struct Bursts {
        steps: std::collections::VecDeque<Vec<u8>>,
        pending_next: bool,
    }

    impl AsyncRead for Bursts {
        fn poll_read(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            if self.pending_next {
                self.pending_next = false;
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            self.pending_next = true;
            let Some(mut step) = self.steps.pop_front() else {
                return Poll::Ready(Ok(()));
            };
            let n = step.len().min(buf.remaining());
            buf.put_slice(&step[..n]);
            if n < step.len() {
                self.steps.push_front(step.split_off(n));
                self.pending_next = false;
            }
            Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn buffers_grow_while_reads_fill_them_and_are_freed_when_idle() {
        // A bulk burst of 1 MiB delivered as fast as it can be read, then a small line.
        let bulk: Vec<u8> = (0..(1u32 << 20)).map(|i| (i % 251) as u8).collect();
        let mut reader = Bursts {
            steps: [bulk.clone(), b"* 3 EXISTS\r\n".to_vec()].into(),
            pending_next: false,
        };
        let mut sink: Vec<u8> = Vec::new();
        let mut pump = Pump::default();
        let mut idle_after_line = None;
        let result = poll_fn(|cx| {
            let poll = pump.poll(cx, Pin::new(&mut reader), Pin::new(&mut sink));
            if poll.is_pending() && sink.len() > bulk.len() && idle_after_line.is_none() {
                idle_after_line = Some(pump.held());
            }
            poll
        })
        .await
        .unwrap();
        assert_eq!(result as usize, bulk.len() + 12);
        assert_eq!(&sink[..bulk.len()], &bulk[..]);
        assert_eq!(&sink[bulk.len()..], b"* 3 EXISTS\r\n");
        assert_eq!(
            pump.peak, MAX_BUFFER,
            "a full-speed megabyte grows the buffer"
        );
        assert_eq!(idle_after_line, Some(0), "a quiet peer holds no buffer");
        assert_eq!(pump.held(), 0);
    }

    #[tokio::test]
    async fn byte_identical_through_small_pipes_in_both_directions() {
        // Tiny duplex pipes force partial reads and writes everywhere.
        let (mut client, mut client_peer) = tokio::io::duplex(7);
        let (upstream, mut upstream_peer) = tokio::io::duplex(13);
        let task =
            tokio::spawn(
                async move { splice(&mut client_peer, &mut upstream_peer, b"", b"").await },
            );
        let up: Vec<u8> = (0..200_000u32).map(|i| (i * 31 % 256) as u8).collect();
        let down: Vec<u8> = (0..300_000u32).map(|i| (i * 17 % 253) as u8).collect();
        let (up2, down2) = (up.clone(), down.clone());
        let far = tokio::spawn(async move {
            let (mut r, mut w) = tokio::io::split(upstream);
            let send = tokio::spawn(async move {
                w.write_all(&down2).await.unwrap();
                w.shutdown().await.unwrap();
            });
            let mut got = Vec::new();
            r.read_to_end(&mut got).await.unwrap();
            send.await.unwrap();
            assert_eq!(got, up2);
        });
        let (mut r, mut w) = tokio::io::split(&mut client);
        let (sent, got) = tokio::join!(
            async {
                w.write_all(&up).await.unwrap();
                w.shutdown().await.unwrap();
            },
            async {
                let mut got = Vec::new();
                r.read_to_end(&mut got).await.unwrap();
                got
            }
        );
        let () = sent;
        assert_eq!(got, down);
        far.await.unwrap();
        let counters = task.await.unwrap().unwrap();
        assert_eq!(
            counters,
            Counters {
                up: 200_000,
                down: 300_000
            }
        );
    }
}
