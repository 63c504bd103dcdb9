//! One connection of the fake SMTP server: TLS as configured, the greeting, EHLO/STARTTLS, `AUTH`
//! answered from the script, then a minimal mail session that stores messages.

use std::io::{self, Read, Write};
use std::net::TcpStream;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use rustls::{ServerConnection, StreamOwned};

use super::{AuthRecord, Event, FakeTls, Setup, SmtpAuthAnswer, StoredMessage};

/// The longest line the fake reads.
const MAX_LINE: usize = 1 << 20;
/// The largest message (DATA or the BDAT chunks together) the fake accepts.
const MAX_MESSAGE: usize = 64 << 20;
/// The fake's name in its replies.
const NAME: &str = "fake.smtp.test";

enum Stream {
    Plain(TcpStream),
    Tls(Box<StreamOwned<ServerConnection, TcpStream>>),
    /// Between the two, during the handshake.
    Gone,
}

struct Conn<'a> {
    stream: Stream,
    /// Bytes read but not yet consumed.
    buf: Vec<u8>,
    id: usize,
    setup: &'a Setup,
    /// An EHLO (or HELO) was answered since the last TLS start.
    greeted: bool,
}

/// The mail transaction in progress after a login.
#[derive(Default)]
struct Transaction {
    from: Option<String>,
    rcpts: Vec<String>,
    chunks: Vec<u8>,
}

/// Serves one connection until the client leaves, the script closes it, or an I/O error.
pub(super) fn run(tcp: TcpStream, id: usize, setup: &Setup) {
    let mut conn = Conn {
        stream: Stream::Plain(tcp),
        buf: Vec::new(),
        id,
        setup,
        greeted: false,
    };
    let _ = serve(&mut conn);
}

/// What to do after a command.
enum Next {
    Continue,
    LoggedIn,
    /// Logged in, but every later command except QUIT gets this reply.
    LoggedInRefusing(String),
    Close,
}

fn serve(conn: &mut Conn<'_>) -> io::Result<()> {
    let options = &conn.setup.options;
    if options.tls == FakeTls::Implicit {
        conn.start_tls()?;
    }
    let greeting = options
        .greeting
        .clone()
        .unwrap_or_else(|| format!("220 {NAME} ESMTP fakesmtp ready"));
    conn.send(&greeting)?;
    let refused = !greeting.starts_with("220");
    let mut logged_in = false;
    let mut refusing: Option<String> = None;
    let mut transaction = Transaction::default();
    loop {
        let Some(line) = conn.read_line()? else {
            return Ok(());
        };
        let text = String::from_utf8_lossy(&line).into_owned();
        conn.record(&text);
        let (verb, args) = text.split_once(' ').unwrap_or((text.as_str(), ""));
        let verb = verb.to_ascii_uppercase();
        let next = if let Some(reply) = refusing.as_ref().filter(|_| verb != "QUIT") {
            conn.send(reply)?;
            Next::Continue
        } else if refused {
            if verb == "QUIT" {
                conn.send("221 2.0.0 Bye")?;
                Next::Close
            } else {
                conn.send("503 5.5.1 No service here")?;
                Next::Continue
            }
        } else if logged_in {
            mail_command(conn, &mut transaction, &verb, args)?
        } else {
            pre_auth_command(conn, &verb, args)?
        };
        match next {
            Next::Continue => {}
            Next::LoggedIn => logged_in = true,
            Next::LoggedInRefusing(reply) => {
                logged_in = true;
                refusing = Some(reply);
            }
            Next::Close => return Ok(()),
        }
    }
}

fn pre_auth_command(conn: &mut Conn<'_>, verb: &str, args: &str) -> io::Result<Next> {
    match verb {
        "EHLO" => ehlo(conn, args)?,
        "HELO" => {
            conn.greeted = true;
            conn.send(&format!("250 {NAME}"))?;
        }
        "STARTTLS" if conn.setup.options.tls == FakeTls::StartTls && !conn.is_tls() => {
            conn.send("220 2.0.0 Ready to start TLS")?;
            conn.start_tls()?;
        }
        "STARTTLS" => conn.send("502 5.5.1 STARTTLS not available")?,
        "AUTH" if !conn.greeted => conn.send("503 5.5.1 EHLO first")?,
        "AUTH" => return auth(conn, args),
        "NOOP" | "RSET" => conn.send("250 2.0.0 OK")?,
        "QUIT" => {
            conn.send("221 2.0.0 closing connection")?;
            return Ok(Next::Close);
        }
        "MAIL" | "RCPT" | "DATA" | "BDAT" => conn.send("530 5.7.0 Authentication Required")?,
        _ => conn.send("502 5.5.1 Unrecognized command")?,
    }
    Ok(Next::Continue)
}

/// EHLO: Gmail refuses an empty argument; the keywords depend on the TLS state.
fn ehlo(conn: &mut Conn<'_>, args: &str) -> io::Result<()> {
    if args.trim().is_empty() {
        return conn.send("501 5.5.4 Empty HELO/EHLO argument not allowed");
    }
    conn.greeted = true;
    let mut lines = vec![format!("{NAME} at your service, {}", args.trim())];
    lines.extend(conn.keywords());
    let last = lines.len() - 1;
    for (i, line) in lines.iter().enumerate() {
        let sep = if i == last { ' ' } else { '-' };
        conn.send(&format!("250{sep}{line}"))?;
    }
    Ok(())
}

/// `AUTH mech [initial-response]`: reads the response, records it, answers from the script.
fn auth(conn: &mut Conn<'_>, args: &str) -> io::Result<Next> {
    conn.setup.lock().attempts += 1;
    let mut words = args.split(' ').filter(|w| !w.is_empty());
    let mechanism = words.next().unwrap_or("").to_string();
    let initial = words.next().map(str::to_string);
    let offered = conn.mechanisms();
    if !offered.contains(&mechanism) {
        // Case-sensitive, like Microsoft (`AUTH xoauth2` is refused there).
        conn.send("504 5.7.4 Unrecognized authentication type")?;
        return Ok(Next::Continue);
    }
    let response = match &initial {
        Some(ir) => ir.clone(),
        None => {
            conn.send("334 ")?;
            let Some(line) = conn.read_line()? else {
                return Ok(Next::Close);
            };
            let line = String::from_utf8_lossy(&line).into_owned();
            conn.record(&line);
            line
        }
    };
    if response == "*" {
        conn.send("501 5.7.0 Authentication cancelled")?;
        return Ok(Next::Continue);
    }
    let decoded = if response == "=" {
        Vec::new()
    } else {
        match STANDARD.decode(&response) {
            Ok(d) => d,
            Err(_) => {
                conn.send("501 5.5.2 Cannot decode response")?;
                return Ok(Next::Continue);
            }
        }
    };
    let token = bearer_token(&decoded);
    let has_token = token.is_some();
    let answer = {
        let mut shared = conn.setup.lock();
        shared.auths.push(AuthRecord {
            connection: conn.id,
            mechanism,
            initial_response: initial.is_some(),
            tls: conn.is_tls(),
            decoded,
            token,
        });
        if has_token {
            shared.answers.pop_front().unwrap_or(SmtpAuthAnswer::Ok)
        } else {
            SmtpAuthAnswer::Reject("5.7.8 No bearer token (fake)".into())
        }
    };
    match answer {
        SmtpAuthAnswer::Ok => {
            conn.send("235 2.7.0 Accepted")?;
            return Ok(Next::LoggedIn);
        }
        SmtpAuthAnswer::Reject(text) => conn.send(&format!("535 {text}"))?,
        SmtpAuthAnswer::Temporary(text) => conn.send(&format!("454 {text}"))?,
        SmtpAuthAnswer::Challenge { json, final_reply } => {
            conn.send(&format!("334 {}", STANDARD.encode(json)))?;
            let Some(line) = conn.read_line()? else {
                return Ok(Next::Close);
            };
            let line = String::from_utf8_lossy(&line).into_owned();
            conn.record(&line);
            conn.setup.lock().challenge_answers.push(line.clone());
            if line == "*" {
                conn.send("501 5.7.0 Authentication cancelled")?;
            } else {
                conn.send(&format!("535 {final_reply}"))?;
            }
        }
        SmtpAuthAnswer::Reset => return Ok(Next::Close),
        SmtpAuthAnswer::OkThenRefuse(reply) => {
            conn.send("235 2.7.0 Accepted")?;
            return Ok(Next::LoggedInRefusing(reply));
        }
    }
    Ok(Next::Continue)
}

/// A command after the login.
fn mail_command(
    conn: &mut Conn<'_>,
    transaction: &mut Transaction,
    verb: &str,
    args: &str,
) -> io::Result<Next> {
    match verb {
        "EHLO" => ehlo(conn, args)?,
        "MAIL" => match path_arg(args, "FROM:") {
            Some(from) => {
                *transaction = Transaction {
                    from: Some(from),
                    ..Transaction::default()
                };
                conn.send("250 2.1.0 OK")?;
            }
            None => conn.send("501 5.5.4 Syntax: MAIL FROM:<address>")?,
        },
        "RCPT" => match (&transaction.from, path_arg(args, "TO:")) {
            (None, _) => conn.send("503 5.5.1 MAIL first")?,
            (Some(_), Some(to)) => {
                transaction.rcpts.push(to);
                conn.send("250 2.1.5 OK")?;
            }
            (Some(_), None) => conn.send("501 5.5.4 Syntax: RCPT TO:<address>")?,
        },
        "DATA" if transaction.rcpts.is_empty() => conn.send("503 5.5.1 RCPT first")?,
        "DATA" => {
            conn.send("354 Go ahead")?;
            let Some(data) = conn.read_dot_data()? else {
                return Ok(Next::Close);
            };
            conn.store(std::mem::take(transaction), data, false);
            conn.send("250 2.0.0 OK message stored (fake)")?;
        }
        "BDAT" => return bdat(conn, transaction, args),
        "RSET" => {
            *transaction = Transaction::default();
            conn.send("250 2.0.0 OK")?;
        }
        "NOOP" => conn.send("250 2.0.0 OK")?,
        "QUIT" => {
            conn.send("221 2.0.0 closing connection")?;
            return Ok(Next::Close);
        }
        "AUTH" => conn.send("503 5.5.1 Already authenticated")?,
        _ => conn.send("502 5.5.1 Unrecognized command")?,
    }
    Ok(Next::Continue)
}

/// `BDAT size [LAST]` (RFC 3030): the chunk follows at once, whatever the reply will be.
fn bdat(conn: &mut Conn<'_>, transaction: &mut Transaction, args: &str) -> io::Result<Next> {
    let mut words = args.split_whitespace();
    let size: Option<usize> = words.next().and_then(|s| s.parse().ok());
    let last = words.next().is_some_and(|w| w.eq_ignore_ascii_case("LAST"));
    let Some(size) = size.filter(|s| transaction.chunks.len() + s <= MAX_MESSAGE) else {
        conn.send("501 5.5.4 Syntax: BDAT size [LAST]")?;
        return Ok(Next::Close);
    };
    let Some(chunk) = conn.read_exact(size)? else {
        return Ok(Next::Close);
    };
    if transaction.rcpts.is_empty() {
        conn.send("503 5.5.1 RCPT first")?;
        return Ok(Next::Continue);
    }
    transaction.chunks.extend_from_slice(&chunk);
    if last {
        let data = std::mem::take(&mut transaction.chunks);
        conn.store(std::mem::take(transaction), data, true);
        conn.send("250 2.0.0 OK message stored (fake)")?;
    } else {
        conn.send(&format!("250 2.0.0 {size} octets received"))?;
    }
    Ok(Next::Continue)
}

/// `FROM:<a@b> SIZE=1` → `a@b`.
fn path_arg(args: &str, keyword: &str) -> Option<String> {
    let args = args.trim_start();
    let head = args.get(..keyword.len())?;
    if !head.eq_ignore_ascii_case(keyword) {
        return None;
    }
    let inner = args[keyword.len()..].trim_start().strip_prefix('<')?;
    Some(inner[..inner.find('>')?].to_string())
}

/// The token in `auth=Bearer <token>` (XOAUTH2 and OAUTHBEARER alike), up to the next `^A`.
fn bearer_token(decoded: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(decoded);
    text.split('\x01').find_map(|field| {
        let value = field.strip_prefix("auth=")?;
        let (scheme, token) = value.split_once(' ')?;
        scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| token.to_string())
    })
}

impl Conn<'_> {
    fn is_tls(&self) -> bool {
        matches!(self.stream, Stream::Tls(_))
    }

    /// The EHLO keywords as of now (see the module documentation of `fakesmtp` for STARTTLS).
    fn keywords(&self) -> Vec<String> {
        let options = &self.setup.options;
        if options.tls == FakeTls::StartTls && !self.is_tls() {
            let mut lines: Vec<String> = options
                .ehlo
                .iter()
                .filter(|l| !is_auth_line(l))
                .cloned()
                .collect();
            lines.push("STARTTLS".into());
            lines
        } else {
            options.ehlo.clone()
        }
    }

    /// The mechanisms the current keywords offer, as spelled there.
    fn mechanisms(&self) -> Vec<String> {
        let mut found = Vec::new();
        for line in self.keywords().iter().filter(|l| is_auth_line(l)) {
            let rest = &line[4..];
            found.extend(
                rest.trim_start_matches([' ', '='])
                    .split(' ')
                    .filter(|w| !w.is_empty())
                    .map(str::to_string),
            );
        }
        found
    }

    fn store(&self, transaction: Transaction, data: Vec<u8>, chunked: bool) {
        self.setup.lock().messages.push(StoredMessage {
            connection: self.id,
            mail_from: transaction.from.unwrap_or_default(),
            rcpt_to: transaction.rcpts,
            data,
            chunked,
        });
    }

    fn record(&self, line: &str) {
        let event = Event::Received {
            connection: self.id,
            tls: self.is_tls(),
            line: line.to_string(),
        };
        self.setup.lock().events.push(event);
    }

    /// Sends `line` and CRLF.
    fn send(&mut self, line: &str) -> io::Result<()> {
        self.setup.lock().events.push(Event::Sent {
            connection: self.id,
            line: line.to_string(),
        });
        let bytes = [line.as_bytes(), b"\r\n"].concat();
        match &mut self.stream {
            Stream::Plain(s) => s.write_all(&bytes).and_then(|_| s.flush()),
            Stream::Tls(s) => s.write_all(&bytes).and_then(|_| s.flush()),
            Stream::Gone => Err(io::ErrorKind::NotConnected.into()),
        }
    }

    /// TLS on the socket; plaintext the client sent after the STARTTLS line is dropped, and
    /// a new EHLO is required.
    fn start_tls(&mut self) -> io::Result<()> {
        let Stream::Plain(tcp) = std::mem::replace(&mut self.stream, Stream::Gone) else {
            return Err(io::Error::other("TLS twice"));
        };
        let server = ServerConnection::new(self.setup.tls.clone()).map_err(io::Error::other)?;
        let mut tls = StreamOwned::new(server, tcp);
        while tls.conn.is_handshaking() {
            tls.conn.complete_io(&mut tls.sock)?;
        }
        self.stream = Stream::Tls(Box::new(tls));
        self.buf.clear();
        self.greeted = false;
        self.setup.lock().events.push(Event::TlsStarted {
            connection: self.id,
        });
        Ok(())
    }

    /// Reads more bytes; 0 at the end of the stream. Plaintext is recorded.
    fn fill(&mut self) -> io::Result<usize> {
        let mut chunk = [0u8; 16 * 1024];
        let n = match &mut self.stream {
            Stream::Plain(s) => s.read(&mut chunk)?,
            Stream::Tls(s) => s.read(&mut chunk)?,
            Stream::Gone => 0,
        };
        if matches!(self.stream, Stream::Plain(_)) {
            self.setup.lock().plaintext.extend_from_slice(&chunk[..n]);
        }
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n)
    }

    /// One line with its line ending; `None` at the end of the stream.
    fn read_raw_line(&mut self) -> io::Result<Option<Vec<u8>>> {
        loop {
            if let Some(at) = self.buf.iter().position(|&b| b == b'\n') {
                return Ok(Some(self.buf.drain(..=at).collect()));
            }
            if self.buf.len() > MAX_LINE {
                return Err(io::Error::other("line too long"));
            }
            if self.fill()? == 0 {
                return Ok(None);
            }
        }
    }

    /// One line without its CRLF (or LF); `None` at the end of the stream.
    fn read_line(&mut self) -> io::Result<Option<Vec<u8>>> {
        let Some(mut line) = self.read_raw_line()? else {
            return Ok(None);
        };
        line.pop();
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        Ok(Some(line))
    }

    /// Exactly `n` bytes; `None` if the stream ends first.
    fn read_exact(&mut self, n: usize) -> io::Result<Option<Vec<u8>>> {
        while self.buf.len() < n {
            if self.fill()? == 0 {
                return Ok(None);
            }
        }
        Ok(Some(self.buf.drain(..n).collect()))
    }

    /// DATA up to the `.` line, dot-stuffing removed (RFC 5321 §4.5.2).
    fn read_dot_data(&mut self) -> io::Result<Option<Vec<u8>>> {
        let mut data = Vec::new();
        loop {
            let Some(line) = self.read_raw_line()? else {
                return Ok(None);
            };
            if line == b".\r\n" {
                return Ok(Some(data));
            }
            data.extend_from_slice(line.strip_prefix(b".").unwrap_or(&line));
            if data.len() > MAX_MESSAGE {
                return Err(io::Error::other("message too large"));
            }
        }
    }
}

/// `AUTH …` or `AUTH=…`, in any case.
fn is_auth_line(line: &str) -> bool {
    let upper = line.to_ascii_uppercase();
    upper == "AUTH" || upper.starts_with("AUTH ") || upper.starts_with("AUTH=")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_tokens() {
        assert_eq!(
            path_arg("FROM:<a@b> SIZE=1", "FROM:").as_deref(),
            Some("a@b")
        );
        assert_eq!(path_arg("from: <>", "FROM:").as_deref(), Some(""));
        assert_eq!(path_arg("TO:<x>", "FROM:"), None);
        assert_eq!(
            bearer_token(b"n,a=a@b,\x01host=h\x01port=465\x01auth=Bearer t2\x01\x01").as_deref(),
            Some("t2")
        );
        assert_eq!(bearer_token(b"\0alice\0password"), None);
        assert!(is_auth_line("AUTH=LOGIN") && is_auth_line("auth plain"));
        assert!(!is_auth_line("AUTHX"));
    }
}
