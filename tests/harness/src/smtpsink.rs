//! A sink SMTP server (the relay behind Dovecot's submission service): accepts every message
//! and keeps its exact bytes (after un-dot-stuffing, or as sent with BDAT) for inspection.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::error::{HarnessError, IoContext};
use crate::util::Background;

/// The longest command or data line the sink reads.
const MAX_LINE: usize = 1 << 20;

/// One message the sink accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedMessage {
    /// The reverse path from `MAIL FROM:<…>` (without the angle brackets; may be empty).
    pub mail_from: String,
    /// The forward paths from `RCPT TO:<…>`, in order.
    pub rcpt_to: Vec<String>,
    /// The message exactly as transferred, dot-stuffing removed; for DATA it ends with the
    /// CRLF before the terminating `.`.
    pub data: Vec<u8>,
}

impl ReceivedMessage {
    /// `data` without the `Received:` trace fields at its top (with their continuation
    /// lines). Dovecot's submission service prepends one to every message it relays, so this
    /// is what the client sent.
    pub fn data_without_received(&self) -> &[u8] {
        let mut rest = self.data.as_slice();
        while rest.len() >= 9 && rest[..9].eq_ignore_ascii_case(b"received:") {
            // Skip the field: up to a line that does not start with whitespace.
            loop {
                match rest.iter().position(|&b| b == b'\n') {
                    Some(eol) => rest = &rest[eol + 1..],
                    None => return &[],
                }
                if !rest.starts_with(b" ") && !rest.starts_with(b"\t") {
                    break;
                }
            }
        }
        rest
    }
}

#[derive(Default)]
struct Shared {
    messages: Vec<ReceivedMessage>,
    commands: Vec<String>,
}

/// The running sink. Stops on drop.
pub struct SmtpSink {
    addr: SocketAddr,
    shared: Arc<Mutex<Shared>>,
    _background: Background,
}

impl std::fmt::Debug for SmtpSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpSink")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl SmtpSink {
    /// Starts the sink on `127.0.0.1:<OS-chosen port>`.
    pub fn start() -> Result<SmtpSink, HarnessError> {
        let listener =
            std::net::TcpListener::bind("127.0.0.1:0").ctx(|| "binding the SMTP sink")?;
        listener
            .set_nonblocking(true)
            .ctx(|| "configuring the SMTP sink socket")?;
        let addr = listener
            .local_addr()
            .ctx(|| "reading the SMTP sink address")?;
        let shared = Arc::new(Mutex::new(Shared::default()));
        let for_thread = shared.clone();
        let background = Background::spawn("smtpsink", move |mut shutdown| async move {
            let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                return;
            };
            loop {
                tokio::select! {
                    _ = &mut shutdown => break,
                    accepted = listener.accept() => {
                        let Ok((stream, _)) = accepted else { continue };
                        let shared = for_thread.clone();
                        tokio::spawn(async move {
                            let _ = session(stream, shared).await;
                        });
                    }
                }
            }
        })
        .ctx(|| "starting the SMTP sink thread")?;
        Ok(SmtpSink {
            addr,
            shared,
            _background: background,
        })
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
    /// The listening port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }
    /// Every message accepted so far, oldest first.
    pub fn messages(&self) -> Vec<ReceivedMessage> {
        self.lock().messages.clone()
    }
    /// Every command line received so far (`EHLO …`, `MAIL FROM:<…> …`, …), without CRLF.
    pub fn commands(&self) -> Vec<String> {
        self.lock().commands.clone()
    }
    /// Waits until at least `n` messages arrived (or `timeout` passed) and returns them all.
    pub fn wait_for_messages(&self, n: usize, timeout: Duration) -> Vec<ReceivedMessage> {
        let deadline = Instant::now() + timeout;
        loop {
            let messages = self.messages();
            if messages.len() >= n || Instant::now() >= deadline {
                return messages;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// `FROM:<a@b> SIZE=1` → `a@b`.
fn path_arg(rest: &str, keyword: &str) -> Option<String> {
    let rest = rest.trim_start();
    if rest.len() < keyword.len() || !rest[..keyword.len()].eq_ignore_ascii_case(keyword) {
        return None;
    }
    let rest = rest[keyword.len()..].trim_start();
    let inner = rest.strip_prefix('<')?;
    let end = inner.find('>')?;
    Some(inner[..end].to_string())
}

async fn session(stream: TcpStream, shared: Arc<Mutex<Shared>>) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    write
        .write_all(b"220 sink.test ESMTP mailoauth-harness sink\r\n")
        .await?;
    let mut from: Option<String> = None;
    let mut rcpts: Vec<String> = Vec::new();
    let mut chunks: Vec<u8> = Vec::new();
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = (&mut reader)
            .take(MAX_LINE as u64)
            .read_until(b'\n', &mut line)
            .await?;
        if n == 0 {
            return Ok(());
        }
        let text = String::from_utf8_lossy(&line)
            .trim_end_matches(['\r', '\n'])
            .to_string();
        shared
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .commands
            .push(text.clone());
        let (verb, rest) = text.split_once(' ').unwrap_or((text.as_str(), ""));
        let reply: Vec<u8> = match verb.to_ascii_uppercase().as_str() {
            "EHLO" => b"250-sink.test\r\n250-PIPELINING\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n\
                250-CHUNKING\r\n250-SIZE 104857600\r\n250 ENHANCEDSTATUSCODES\r\n"
                .to_vec(),
            "HELO" => b"250 sink.test\r\n".to_vec(),
            "MAIL" => match path_arg(rest, "FROM:") {
                Some(p) => {
                    from = Some(p);
                    rcpts.clear();
                    chunks.clear();
                    b"250 2.1.0 Ok\r\n".to_vec()
                }
                None => b"501 5.5.4 Syntax: MAIL FROM:<address>\r\n".to_vec(),
            },
            "RCPT" => match (&from, path_arg(rest, "TO:")) {
                (None, _) => b"503 5.5.1 MAIL first\r\n".to_vec(),
                (Some(_), Some(p)) => {
                    rcpts.push(p);
                    b"250 2.1.5 Ok\r\n".to_vec()
                }
                (Some(_), None) => b"501 5.5.4 Syntax: RCPT TO:<address>\r\n".to_vec(),
            },
            "DATA" if rcpts.is_empty() => b"503 5.5.1 RCPT first\r\n".to_vec(),
            "DATA" => {
                write
                    .write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                    .await?;
                let data = read_dot_data(&mut reader).await?;
                store(&shared, &mut from, &mut rcpts, data);
                b"250 2.0.0 Ok: queued\r\n".to_vec()
            }
            "BDAT" => {
                let mut args = rest.split_whitespace();
                let size: Option<usize> = args.next().and_then(|s| s.parse().ok());
                let last = args.next().is_some_and(|a| a.eq_ignore_ascii_case("LAST"));
                match size {
                    Some(size) if size <= MAX_LINE * 64 => {
                        let mut buf = vec![0u8; size];
                        reader.read_exact(&mut buf).await?;
                        if rcpts.is_empty() {
                            b"503 5.5.1 RCPT first\r\n".to_vec()
                        } else {
                            chunks.extend_from_slice(&buf);
                            if last {
                                store(&shared, &mut from, &mut rcpts, std::mem::take(&mut chunks));
                                b"250 2.0.0 Ok: queued\r\n".to_vec()
                            } else {
                                format!("250 2.0.0 {size} octets received\r\n").into_bytes()
                            }
                        }
                    }
                    _ => b"501 5.5.4 Syntax: BDAT size [LAST]\r\n".to_vec(),
                }
            }
            "RSET" => {
                from = None;
                rcpts.clear();
                chunks.clear();
                b"250 2.0.0 Ok\r\n".to_vec()
            }
            "NOOP" => b"250 2.0.0 Ok\r\n".to_vec(),
            "VRFY" => b"252 2.0.0 Cannot VRFY\r\n".to_vec(),
            "QUIT" => {
                write.write_all(b"221 2.0.0 Bye\r\n").await?;
                return Ok(());
            }
            _ => b"500 5.5.2 Command not recognized\r\n".to_vec(),
        };
        write.write_all(&reply).await?;
    }
}

fn store(
    shared: &Mutex<Shared>,
    from: &mut Option<String>,
    rcpts: &mut Vec<String>,
    data: Vec<u8>,
) {
    let message = ReceivedMessage {
        mail_from: from.take().unwrap_or_default(),
        rcpt_to: std::mem::take(rcpts),
        data,
    };
    shared
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .messages
        .push(message);
}

/// Reads DATA lines up to the lone `.` line, removing dot-stuffing (RFC 5321 §4.5.2).
async fn read_dot_data<R: tokio::io::AsyncBufRead + Unpin>(
    reader: &mut R,
) -> std::io::Result<Vec<u8>> {
    let mut data = Vec::new();
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = reader.read_until(b'\n', &mut line).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        if line == b".\r\n" {
            return Ok(data);
        }
        let content = line.strip_prefix(b".").unwrap_or(&line);
        data.extend_from_slice(content);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader as StdBufReader, Write};

    fn expect(reader: &mut impl BufRead, code: &str) -> String {
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            assert!(line.starts_with(code), "expected {code}, got {line:?}");
            if line.as_bytes().get(3) != Some(&b'-') {
                return line;
            }
        }
    }

    #[test]
    fn stores_data_and_bdat_messages_exactly() {
        let sink = SmtpSink::start().unwrap();
        let stream = std::net::TcpStream::connect(sink.addr()).unwrap();
        let mut reader = StdBufReader::new(stream.try_clone().unwrap());
        let mut w = stream;
        expect(&mut reader, "220");
        w.write_all(b"EHLO me\r\n").unwrap();
        expect(&mut reader, "250");
        w.write_all(b"MAIL FROM:<a@x.test> BODY=8BITMIME\r\nRCPT TO:<b@y.test>\r\nRCPT TO:<c@y.test>\r\nDATA\r\n")
            .unwrap();
        expect(&mut reader, "250");
        expect(&mut reader, "250");
        expect(&mut reader, "250");
        expect(&mut reader, "354");
        w.write_all(b"Subject: t\r\n\r\n..dot\r\nline\r\n.\r\n")
            .unwrap();
        expect(&mut reader, "250");
        w.write_all(b"MAIL FROM:<>\r\nRCPT TO:<b@y.test>\r\nBDAT 4\r\nab\r\nBDAT 3 LAST\r\n.x\n")
            .unwrap();
        for _ in 0..4 {
            expect(&mut reader, "250");
        }
        w.write_all(b"QUIT\r\n").unwrap();
        expect(&mut reader, "221");
        let messages = sink.messages();
        assert_eq!(messages.len(), 2);
        assert_eq!(messages[0].mail_from, "a@x.test");
        assert_eq!(messages[0].rcpt_to, vec!["b@y.test", "c@y.test"]);
        assert_eq!(messages[0].data, b"Subject: t\r\n\r\n.dot\r\nline\r\n");
        assert_eq!(messages[1].mail_from, "");
        assert_eq!(messages[1].data, b"ab\r\n.x\n");
    }

    #[test]
    fn received_fields_are_stripped() {
        let m = ReceivedMessage {
            mail_from: String::new(),
            rcpt_to: Vec::new(),
            data: b"Received: from a\r\n\tby b; date\r\nReceived: x\r\nSubject: s\r\n\r\nReceived: body\r\n"
                .to_vec(),
        };
        assert_eq!(
            m.data_without_received(),
            b"Subject: s\r\n\r\nReceived: body\r\n"
        );
    }
}
