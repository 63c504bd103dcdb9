//! The command line's side of the control socket: a blocking client (no async runtime, so
//! `mailoauth token` through the daemon stays a few milliseconds).

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use super::{MAX_LINE, Reply, Request};

/// A connection to the running daemon.
pub struct Client {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Client {
    /// Connects to the daemon's socket at `path`; `Ok(None)` when no daemon runs there.
    pub fn connect(path: &Path) -> std::io::Result<Option<Client>> {
        match UnixStream::connect(path) {
            Ok(stream) => Ok(Some(Client {
                reader: BufReader::new(stream.try_clone()?),
                writer: stream,
            })),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
                ) =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// How long a read may wait (`None`: forever, for flows that wait on the user).
    pub fn set_timeout(&self, timeout: Option<Duration>) -> std::io::Result<()> {
        self.writer.set_read_timeout(timeout)
    }

    pub fn send(&mut self, request: &Request) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(request).expect("requests serialize");
        line.push(b'\n');
        self.writer.write_all(&line)?;
        self.writer.flush()
    }

    /// The next reply line.
    pub fn receive(&mut self) -> std::io::Result<Reply> {
        let mut line = Vec::new();
        let n = (&mut self.reader)
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut line)?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the daemon closed the control connection without an answer",
            ));
        }
        let reply = serde_json::from_slice(&line).map_err(|e| {
            std::io::Error::other(format!("the daemon's answer is not understood: {e}"))
        });
        zeroize::Zeroize::zeroize(&mut line);
        reply
    }

    /// Sends `request` and returns the first final reply, handing the others to `progress`.
    pub fn call(
        &mut self,
        request: &Request,
        mut progress: impl FnMut(&mut Client, Reply) -> std::io::Result<()>,
    ) -> std::io::Result<Reply> {
        self.send(request)?;
        loop {
            let reply = self.receive()?;
            if reply.is_final() {
                return Ok(reply);
            }
            progress(self, reply)?;
        }
    }
}
