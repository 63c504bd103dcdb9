//! One connection of the fake POP3 server: TLS as configured, the greeting, AUTHORIZATION-state
//! commands, `AUTH` answered from the script, then a minimal TRANSACTION state.

use std::io::{self, Read, Write};
use std::net::TcpStream;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use rustls::{ServerConnection, StreamOwned};

use super::{AuthRecord, Event, FakeTls, POST_LOGIN_CAPABILITIES, Pop3AuthAnswer, Setup};

/// The longest line the fake reads.
const MAX_LINE: usize = 1 << 20;
/// RFC 5034 §4: an AUTH command line, initial response included, fits in 255 octets.
const MAX_AUTH_LINE: usize = 255;

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
}

/// The maildrop of a logged-in session.
struct Maildrop {
    /// Marked with DELE, until RSET or QUIT.
    deleted: Vec<bool>,
}

/// Serves one connection until the client leaves, the script closes it, or an I/O error.
pub(super) fn run(tcp: TcpStream, id: usize, setup: &Setup) {
    let mut conn = Conn {
        stream: Stream::Plain(tcp),
        buf: Vec::new(),
        id,
        setup,
    };
    let _ = serve(&mut conn);
}

/// What to do after a command.
enum Next {
    Continue,
    LoggedIn,
    /// Logged in, but every later command except QUIT gets `-ERR <text>`.
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
        .unwrap_or_else(|| "+OK Fake POP3 ready.".into());
    conn.send(&greeting)?;
    if !greeting.starts_with("+OK") {
        return Ok(());
    }
    let mut maildrop: Option<Maildrop> = None;
    let mut refusing: Option<String> = None;
    loop {
        let Some(line) = conn.read_line()? else {
            return Ok(());
        };
        let text = String::from_utf8_lossy(&line).into_owned();
        conn.record(&text);
        let (verb, args) = text.split_once(' ').unwrap_or((text.as_str(), ""));
        let verb = verb.to_ascii_uppercase();
        let next = match &mut maildrop {
            Some(_) if refusing.is_some() && verb != "QUIT" => {
                conn.send(&format!("-ERR {}", refusing.as_deref().unwrap_or_default()))?;
                Next::Continue
            }
            Some(drop) => transaction_command(conn, drop, &verb, args)?,
            None => authorization_command(conn, &verb, args, line.len())?,
        };
        match next {
            Next::Continue => {}
            Next::LoggedIn | Next::LoggedInRefusing(_) => {
                if let Next::LoggedInRefusing(text) = next {
                    refusing = Some(text);
                }
                let count = conn.setup.options.messages.len();
                maildrop = Some(Maildrop {
                    deleted: vec![false; count],
                });
            }
            Next::Close => return Ok(()),
        }
    }
}

fn authorization_command(
    conn: &mut Conn<'_>,
    verb: &str,
    args: &str,
    line_len: usize,
) -> io::Result<Next> {
    match verb {
        "CAPA" => {
            let mut lines = vec!["+OK Capability list follows".to_string()];
            lines.extend(conn.capabilities());
            lines.push(".".into());
            for line in lines {
                conn.send(&line)?;
            }
        }
        "QUIT" => {
            conn.send("+OK Bye (fake)")?;
            return Ok(Next::Close);
        }
        "STLS" if conn.setup.options.tls == FakeTls::StartTls && !conn.is_tls() => {
            conn.send("+OK Begin TLS negotiation")?;
            conn.start_tls()?;
        }
        "STLS" => conn.send("-ERR STLS not available")?,
        "USER" => conn.send("+OK")?,
        "PASS" => conn.send("-ERR [AUTH] Only OAuth here (fake)")?,
        "AUTH" if args.is_empty() => {
            conn.send("+OK")?;
            for mechanism in conn.mechanisms() {
                conn.send(&mechanism)?;
            }
            conn.send(".")?;
        }
        "AUTH" => return authenticate(conn, args, line_len),
        _ => conn.send("-ERR Unknown command or not logged in")?,
    }
    Ok(Next::Continue)
}

fn transaction_command(
    conn: &mut Conn<'_>,
    drop: &mut Maildrop,
    verb: &str,
    args: &str,
) -> io::Result<Next> {
    let setup = conn.setup;
    let messages = &setup.options.messages;
    let live = |n: usize| n >= 1 && n <= messages.len() && !drop.deleted[n - 1];
    let number = |arg: Option<&str>| {
        arg.and_then(|a| a.parse::<usize>().ok())
            .filter(|&n| live(n))
    };
    let mut words = args.split(' ').filter(|w| !w.is_empty());
    let first = words.next();
    let mut lines: Vec<Vec<u8>> = Vec::new();
    match verb {
        "STAT" => {
            let (count, size) = (1..=messages.len())
                .filter(|&n| live(n))
                .fold((0, 0), |(c, s), n| (c + 1, s + messages[n - 1].len()));
            lines.push(format!("+OK {count} {size}").into_bytes());
        }
        "LIST" | "UIDL" => {
            let item = |n: usize| match verb {
                "LIST" => format!("{n} {}", messages[n - 1].len()),
                _ => format!("{n} fake-uid-{n}"),
            };
            match (first, number(first)) {
                (None, _) => {
                    lines.push(b"+OK".to_vec());
                    lines.extend(
                        (1..=messages.len())
                            .filter(|&n| live(n))
                            .map(|n| item(n).into_bytes()),
                    );
                    lines.push(b".".to_vec());
                }
                (Some(_), Some(n)) => lines.push(format!("+OK {}", item(n)).into_bytes()),
                (Some(_), None) => lines.push(b"-ERR No such message".to_vec()),
            }
        }
        "RETR" | "TOP" => {
            let body_lines = match verb {
                "TOP" => words.next().and_then(|l| l.parse::<usize>().ok()),
                _ => Some(usize::MAX),
            };
            match (number(first), body_lines) {
                (Some(n), Some(keep)) => {
                    let message = &messages[n - 1];
                    lines.push(format!("+OK {} octets", message.len()).into_bytes());
                    lines.extend(stuffed_lines(message, keep));
                    lines.push(b".".to_vec());
                }
                _ => lines.push(b"-ERR No such message".to_vec()),
            }
        }
        "DELE" => match number(first) {
            Some(n) => {
                drop.deleted[n - 1] = true;
                lines.push(format!("+OK message {n} deleted").into_bytes());
            }
            None => lines.push(b"-ERR No such message".to_vec()),
        },
        "RSET" => {
            drop.deleted.iter_mut().for_each(|d| *d = false);
            lines.push(b"+OK".to_vec());
        }
        "NOOP" => lines.push(b"+OK".to_vec()),
        "CAPA" => {
            lines.push(b"+OK Capability list follows".to_vec());
            lines.extend(
                POST_LOGIN_CAPABILITIES
                    .iter()
                    .map(|c| c.as_bytes().to_vec()),
            );
            lines.push(b".".to_vec());
        }
        "QUIT" => {
            let deleted: Vec<usize> = (1..=messages.len())
                .filter(|&n| drop.deleted[n - 1])
                .collect();
            let count = deleted.len();
            setup.lock().deleted.extend(deleted);
            conn.send(&format!("+OK Bye ({count} messages deleted)"))?;
            return Ok(Next::Close);
        }
        "AUTH" | "USER" | "PASS" | "STLS" | "APOP" => {
            lines.push(b"-ERR Already authenticated".to_vec())
        }
        _ => lines.push(b"-ERR Unknown command".to_vec()),
    }
    for line in lines {
        conn.send_bytes(&line)?;
    }
    Ok(Next::Continue)
}

/// The message's lines without their line ends, dot-stuffed (RFC 1939 §3): the header, and at
/// most `body_lines` lines after the blank line that ends it (all for RETR).
fn stuffed_lines(message: &[u8], body_lines: usize) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut in_body = false;
    let mut body = 0;
    let text = message.strip_suffix(b"\r\n").unwrap_or(message);
    for line in text.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if in_body {
            if body == body_lines {
                break;
            }
            body += 1;
        }
        let mut stuffed = Vec::with_capacity(line.len() + 1);
        if line.first() == Some(&b'.') {
            stuffed.push(b'.');
        }
        stuffed.extend_from_slice(line);
        out.push(stuffed);
        if line.is_empty() {
            in_body = true;
        }
    }
    out
}

/// `AUTH mechanism [initial-response]`: reads the response, records it, answers from the script.
fn authenticate(conn: &mut Conn<'_>, args: &str, line_len: usize) -> io::Result<Next> {
    conn.setup.lock().attempts += 1;
    let mut words = args.split(' ').filter(|w| !w.is_empty());
    let mechanism = words.next().unwrap_or("").to_string();
    let initial = words.next().map(str::to_string);
    if !conn
        .mechanisms()
        .iter()
        .any(|m| m.eq_ignore_ascii_case(&mechanism))
    {
        conn.send("-ERR [AUTH] Unsupported mechanism (fake)")?;
        return Ok(Next::Continue);
    }
    let response = match &initial {
        Some(ir) => ir.clone(),
        None => {
            conn.send("+ ")?;
            let Some(line) = conn.read_line()? else {
                return Ok(Next::Close);
            };
            let line = String::from_utf8_lossy(&line).into_owned();
            conn.record(&line);
            line
        }
    };
    if response == "*" {
        conn.send("-ERR Authentication aborted by client.")?;
        return Ok(Next::Continue);
    }
    let decoded = if response == "=" {
        Vec::new()
    } else {
        match STANDARD.decode(&response) {
            Ok(d) => d,
            Err(_) => {
                conn.send("-ERR Invalid base64 data")?;
                return Ok(Next::Continue);
            }
        }
    };
    let token = bearer_token(&decoded);
    let has_token = token.is_some();
    // +2: the CRLF the line came with.
    let too_long = initial.is_some() && line_len + 2 > MAX_AUTH_LINE;
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
        if too_long {
            Pop3AuthAnswer::Reject("Command line too long (RFC 5034: 255 octets; fake)".into())
        } else if has_token {
            shared.answers.pop_front().unwrap_or(Pop3AuthAnswer::Ok)
        } else {
            Pop3AuthAnswer::Reject("[AUTH] No bearer token (fake)".into())
        }
    };
    match answer {
        Pop3AuthAnswer::Ok => {
            conn.send("+OK User successfully authenticated.")?;
            Ok(Next::LoggedIn)
        }
        Pop3AuthAnswer::Reject(text) => {
            conn.send(&format!("-ERR {text}"))?;
            Ok(Next::Continue)
        }
        Pop3AuthAnswer::Temporary(text) => {
            conn.send(&format!("-ERR [SYS/TEMP] {text}"))?;
            Ok(Next::Continue)
        }
        Pop3AuthAnswer::Challenge { json, final_err } => {
            conn.send(&format!("+ {}", STANDARD.encode(json)))?;
            let Some(line) = conn.read_line()? else {
                return Ok(Next::Close);
            };
            let line = String::from_utf8_lossy(&line).into_owned();
            conn.record(&line);
            conn.setup.lock().challenge_answers.push(line.clone());
            if line == "*" {
                conn.send("-ERR Authentication aborted by client.")?;
            } else {
                conn.send(&format!("-ERR {final_err}"))?;
            }
            Ok(Next::Continue)
        }
        Pop3AuthAnswer::Reset => Ok(Next::Close),
        Pop3AuthAnswer::OkThenRefuse(text) => {
            conn.send("+OK User successfully authenticated.")?;
            Ok(Next::LoggedInRefusing(text))
        }
    }
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

    /// The CAPA lines as of now (`STLS` added while a STLS server is plaintext).
    fn capabilities(&self) -> Vec<String> {
        let mut caps = self.setup.options.capabilities.clone();
        if self.setup.options.tls == FakeTls::StartTls && !self.is_tls() {
            caps.push("STLS".into());
        }
        caps
    }

    /// The mechanisms on the `SASL` CAPA line(s).
    fn mechanisms(&self) -> Vec<String> {
        self.setup
            .options
            .capabilities
            .iter()
            .filter_map(|c| c.strip_prefix("SASL "))
            .flat_map(|m| m.split(' ').filter(|w| !w.is_empty()).map(str::to_string))
            .collect()
    }

    fn record(&self, line: &str) {
        let event = Event::Received {
            connection: self.id,
            tls: self.is_tls(),
            line: line.to_string(),
        };
        self.setup.lock().events.push(event);
    }

    fn send(&mut self, line: &str) -> io::Result<()> {
        self.send_bytes(line.as_bytes())
    }

    /// Sends `line` and CRLF.
    fn send_bytes(&mut self, line: &[u8]) -> io::Result<()> {
        self.setup.lock().events.push(Event::Sent {
            connection: self.id,
            line: String::from_utf8_lossy(line).into_owned(),
        });
        let bytes = [line, b"\r\n"].concat();
        match &mut self.stream {
            Stream::Plain(s) => s.write_all(&bytes).and_then(|_| s.flush()),
            Stream::Tls(s) => s.write_all(&bytes).and_then(|_| s.flush()),
            Stream::Gone => Err(io::ErrorKind::NotConnected.into()),
        }
    }

    /// TLS on the socket; plaintext the client sent after the STLS line is dropped.
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

    /// One line without its CRLF (or LF); `None` at the end of the stream.
    fn read_line(&mut self) -> io::Result<Option<Vec<u8>>> {
        loop {
            if let Some(at) = self.buf.iter().position(|&b| b == b'\n') {
                let mut line: Vec<u8> = self.buf.drain(..=at).collect();
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                return Ok(Some(line));
            }
            if self.buf.len() > MAX_LINE {
                return Err(io::Error::other("line too long"));
            }
            if self.fill()? == 0 {
                return Ok(None);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_bearer_tokens_in_both_mechanisms() {
        assert_eq!(
            bearer_token(b"user=a@b\x01auth=Bearer tok\x01\x01").as_deref(),
            Some("tok")
        );
        assert_eq!(
            bearer_token(b"n,a=a@b,\x01host=h\x01port=995\x01auth=bearer t2\x01\x01").as_deref(),
            Some("t2")
        );
        assert_eq!(bearer_token(b"\x00alice\x00password"), None);
    }

    #[test]
    fn dot_stuffing_and_top() {
        let message = b"Subject: x\r\n.hidden: y\r\n\r\n.\r\nline 2\r\n..two\r\n";
        let all: Vec<Vec<u8>> = stuffed_lines(message, usize::MAX);
        let expected: Vec<&[u8]> = vec![
            b"Subject: x",
            b"..hidden: y",
            b"",
            b"..",
            b"line 2",
            b"...two",
        ];
        assert_eq!(all, expected);
        assert_eq!(stuffed_lines(message, 0).len(), 3);
        assert_eq!(stuffed_lines(message, 1).last().unwrap(), b"..");
        // No final CRLF: the last line still ends.
        assert_eq!(
            stuffed_lines(b"a\r\nb", usize::MAX),
            vec![b"a".to_vec(), b"b".to_vec()]
        );
    }
}
