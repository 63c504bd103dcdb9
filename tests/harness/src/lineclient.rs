//! A tiny blocking line-oriented client (plain TCP, implicit TLS or STARTTLS) for speaking
//! IMAP/POP3/SMTP by hand in tests, plus the two OAuth SASL encodings.
//!
//! Blocking on purpose: it works from plain `#[test]`s. From a `#[tokio::test]` whose runtime
//! also drives the server under test, call it inside `tokio::task::spawn_blocking`.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

use crate::error::{HarnessError, IoContext};

/// Reads give up after this long by default.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

enum Conn {
    Plain(TcpStream),
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
}

impl Conn {
    fn tcp(&self) -> &TcpStream {
        match self {
            Conn::Plain(s) => s,
            Conn::Tls(s) => s.get_ref(),
        }
    }
}

/// A connection that reads and writes lines.
pub struct LineClient {
    conn: Conn,
    /// Bytes read but not yet returned as lines.
    buf: Vec<u8>,
}

impl std::fmt::Debug for LineClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LineClient")
            .field("peer", &self.conn.tcp().peer_addr().ok())
            .field("tls", &matches!(self.conn, Conn::Tls(_)))
            .finish()
    }
}

/// A rustls client config trusting only the CA in `ca_pem_path`.
pub fn tls_config(ca_pem_path: &Path) -> Result<Arc<ClientConfig>, HarnessError> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca_pem_path)
        .map_err(|e| HarnessError::Other(format!("reading {}: {e}", ca_pem_path.display())))?
    {
        let cert = cert.map_err(|e| HarnessError::Other(format!("bad PEM: {e}")))?;
        roots
            .add(cert)
            .map_err(|e| HarnessError::Other(format!("bad CA certificate: {e}")))?;
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| HarnessError::Other(format!("TLS setup: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

fn tls_wrap(
    tcp: TcpStream,
    ca_pem_path: &Path,
    server_name: &str,
) -> Result<StreamOwned<ClientConnection, TcpStream>, HarnessError> {
    let name = ServerName::try_from(server_name.to_string())
        .map_err(|e| HarnessError::Other(format!("bad server name {server_name}: {e}")))?;
    let conn = ClientConnection::new(tls_config(ca_pem_path)?, name)
        .map_err(|e| HarnessError::Other(format!("TLS setup: {e}")))?;
    let mut stream = StreamOwned::new(conn, tcp);
    // Handshake now, so certificate errors surface here rather than at the first read.
    while stream.conn.is_handshaking() {
        stream
            .conn
            .complete_io(&mut stream.sock)
            .ctx(|| "TLS handshake")?;
    }
    Ok(stream)
}

fn connect_tcp(port: u16) -> Result<TcpStream, HarnessError> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let tcp = TcpStream::connect_timeout(&addr, DEFAULT_TIMEOUT)
        .ctx(|| format!("connecting to {addr}"))?;
    tcp.set_read_timeout(Some(DEFAULT_TIMEOUT))
        .ctx(|| "setting a read timeout")?;
    tcp.set_nodelay(true).ctx(|| "setting TCP_NODELAY")?;
    Ok(tcp)
}

impl LineClient {
    /// Plain TCP to `127.0.0.1:port`.
    pub fn connect_plain(port: u16) -> Result<LineClient, HarnessError> {
        Ok(LineClient {
            conn: Conn::Plain(connect_tcp(port)?),
            buf: Vec::new(),
        })
    }

    /// Implicit TLS to `127.0.0.1:port`, verifying the server as `127.0.0.1` against the CA.
    pub fn connect_tls(port: u16, ca_pem_path: &Path) -> Result<LineClient, HarnessError> {
        Self::connect_tls_as(port, ca_pem_path, "127.0.0.1")
    }

    /// Implicit TLS, verifying the server under `server_name` (e.g. `localhost`).
    pub fn connect_tls_as(
        port: u16,
        ca_pem_path: &Path,
        server_name: &str,
    ) -> Result<LineClient, HarnessError> {
        let tls = tls_wrap(connect_tcp(port)?, ca_pem_path, server_name)?;
        Ok(LineClient {
            conn: Conn::Tls(Box::new(tls)),
            buf: Vec::new(),
        })
    }

    /// Upgrades a plain connection after the protocol's STARTTLS/STLS exchange. Fails if the
    /// server sent bytes after its "go ahead" (they would be plaintext injected before TLS).
    pub fn starttls(self, ca_pem_path: &Path) -> Result<LineClient, HarnessError> {
        if !self.buf.is_empty() {
            return Err(HarnessError::Other(
                "server sent data after the STARTTLS go-ahead".into(),
            ));
        }
        match self.conn {
            Conn::Plain(tcp) => Ok(LineClient {
                conn: Conn::Tls(Box::new(tls_wrap(tcp, ca_pem_path, "127.0.0.1")?)),
                buf: Vec::new(),
            }),
            Conn::Tls(_) => Err(HarnessError::Other("already using TLS".into())),
        }
    }

    /// Whether the connection is TLS.
    pub fn is_tls(&self) -> bool {
        matches!(self.conn, Conn::Tls(_))
    }

    /// Changes the read timeout.
    pub fn set_timeout(&mut self, timeout: Duration) -> Result<(), HarnessError> {
        self.conn
            .tcp()
            .set_read_timeout(Some(timeout))
            .ctx(|| "setting a read timeout")
    }

    /// Sends raw bytes.
    pub fn send(&mut self, bytes: &[u8]) -> Result<(), HarnessError> {
        let result = match &mut self.conn {
            Conn::Plain(s) => s.write_all(bytes).and_then(|_| s.flush()),
            Conn::Tls(s) => s.write_all(bytes).and_then(|_| s.flush()),
        };
        result.ctx(|| "sending")
    }

    /// Sends `line` followed by CRLF.
    pub fn send_line(&mut self, line: &str) -> Result<(), HarnessError> {
        let mut bytes = Vec::with_capacity(line.len() + 2);
        bytes.extend_from_slice(line.as_bytes());
        bytes.extend_from_slice(b"\r\n");
        self.send(&bytes)
    }

    fn fill(&mut self) -> io::Result<usize> {
        let mut chunk = [0u8; 8192];
        let n = match &mut self.conn {
            Conn::Plain(s) => s.read(&mut chunk)?,
            Conn::Tls(s) => s.read(&mut chunk)?,
        };
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n)
    }

    /// Reads one line and returns it without its line ending. End of stream is an error
    /// (`UnexpectedEof`), so is the read timeout.
    pub fn read_line(&mut self) -> Result<String, HarnessError> {
        loop {
            if let Some(pos) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=pos).collect();
                let text = String::from_utf8_lossy(&line);
                return Ok(text.trim_end_matches(['\r', '\n']).to_string());
            }
            let n = self.fill().ctx(|| "reading")?;
            if n == 0 {
                return Err(HarnessError::io(
                    "reading",
                    io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed"),
                ));
            }
        }
    }

    /// Reads exactly `n` bytes (e.g. an IMAP literal).
    pub fn read_exact(&mut self, n: usize) -> Result<Vec<u8>, HarnessError> {
        while self.buf.len() < n {
            if self.fill().ctx(|| "reading")? == 0 {
                return Err(HarnessError::io(
                    "reading",
                    io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed"),
                ));
            }
        }
        Ok(self.buf.drain(..n).collect())
    }

    /// True if the server closed the connection (reads until EOF, error or timeout; lines
    /// still arriving are discarded).
    pub fn is_closed_by_peer(&mut self) -> bool {
        loop {
            self.buf.clear();
            match self.fill() {
                Ok(0) => return true,
                Ok(_) => continue,
                Err(e) => {
                    return !matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    );
                }
            }
        }
    }

    /// IMAP: reads lines until the tagged completion of `tag`; returns all of them.
    pub fn read_tagged(&mut self, tag: &str) -> Result<Vec<String>, HarnessError> {
        let prefix = format!("{tag} ");
        let mut lines = Vec::new();
        loop {
            let line = self.read_line()?;
            let done = line.starts_with(&prefix);
            lines.push(line);
            if done {
                return Ok(lines);
            }
        }
    }

    /// SMTP: reads one (possibly multi-line) reply; returns its lines.
    pub fn read_smtp_reply(&mut self) -> Result<Vec<String>, HarnessError> {
        let mut lines = Vec::new();
        loop {
            let line = self.read_line()?;
            let last = line.as_bytes().get(3) != Some(&b'-');
            lines.push(line);
            if last {
                return Ok(lines);
            }
        }
    }
}

/// XOAUTH2 initial response, base64: `user=U^Aauth=Bearer T^A^A`.
pub fn xoauth2(user: &str, token: &str) -> String {
    STANDARD.encode(format!("user={user}\x01auth=Bearer {token}\x01\x01"))
}

/// OAUTHBEARER (RFC 7628) initial response, base64:
/// `n,a=U,^Ahost=H^Aport=P^Aauth=Bearer T^A^A` (`,` and `=` in the user escaped per RFC 5801).
pub fn oauthbearer(user: &str, token: &str, host: &str, port: u16) -> String {
    let user = user.replace('=', "=3D").replace(',', "=2C");
    STANDARD.encode(format!(
        "n,a={user},\x01host={host}\x01port={port}\x01auth=Bearer {token}\x01\x01"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sasl_encodings() {
        let x = STANDARD.decode(xoauth2("a@b", "T")).unwrap();
        assert_eq!(x, b"user=a@b\x01auth=Bearer T\x01\x01");
        let o = STANDARD.decode(oauthbearer("a,=b", "T", "h", 993)).unwrap();
        assert_eq!(
            o,
            b"n,a=a=2C=3Db,\x01host=h\x01port=993\x01auth=Bearer T\x01\x01"
        );
    }
}
