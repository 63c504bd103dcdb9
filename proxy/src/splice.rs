//! After login: the bytes the upstream sent with its OK go to the client, the bytes the client
//! pipelined after its login command go upstream, then both directions are copied untouched
//! (COMPRESS=DEFLATE, IDLE, literals of any size just work) until either side closes.
//!
//! No idle timeout: IMAP clients IDLE for up to 29 minutes (RFC 9051 §5.4 wants ≥ 30 min of
//! patience); dead peers are found by TCP keepalive (see `stream.rs`).

use std::io;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, copy_bidirectional_with_sizes};

/// Bytes moved each way.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counters {
    /// Client → upstream.
    pub up: u64,
    /// Upstream → client.
    pub down: u64,
}

/// Buffer size per direction: large enough that a bulk FETCH or APPEND moves in few syscalls.
const BUFFER: usize = 64 * 1024;

/// Writes `to_client` and `to_upstream` first, then copies both ways until one side closes.
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
    let (up, down) = copy_bidirectional_with_sizes(client, upstream, BUFFER, BUFFER).await?;
    Ok(Counters {
        up: up + to_upstream.len() as u64,
        down: down + to_client.len() as u64,
    })
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
}
