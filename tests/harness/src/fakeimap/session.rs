//! One connection of the fake IMAP server: TLS as configured, the greeting, pre-login commands,
//! `AUTHENTICATE` answered from the script, then a minimal logged-in session.

use std::io::{self, Read, Write};
use std::net::TcpStream;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use rustls::{ServerConnection, StreamOwned};

use super::{AuthAnswer, AuthRecord, Event, FakeTls, POST_LOGIN_CAPABILITIES, Setup};

/// The longest line the fake reads.
const MAX_LINE: usize = 1 << 20;
/// The largest literal the fake accepts (APPEND).
const MAX_LITERAL: usize = 16 << 20;

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
    /// Logged in, but every later command except LOGOUT gets `TAG <text>`.
    LoggedInRefusing(String),
    Close,
}

fn serve(conn: &mut Conn<'_>) -> io::Result<()> {
    let setup = conn.setup;
    let options = &setup.options;
    if options.tls == FakeTls::Implicit {
        conn.start_tls()?;
    }
    let greeting = match &options.greeting {
        Some(g) => g.clone(),
        None => format!(
            "* OK [CAPABILITY {}] Gimap ready for requests (fake)",
            conn.capabilities()
        ),
    };
    conn.send(&greeting)?;
    let upper = greeting.to_ascii_uppercase();
    if upper.starts_with("* BYE") {
        return Ok(());
    }
    let mut logged_in = upper.starts_with("* PREAUTH");
    let mut refusing: Option<String> = None;
    loop {
        let Some(command) = conn.read_command()? else {
            return Ok(());
        };
        let text = String::from_utf8_lossy(&command).into_owned();
        conn.record(&text);
        let (tag, rest) = text.split_once(' ').unwrap_or((text.as_str(), ""));
        let (verb, args) = rest.split_once(' ').unwrap_or((rest, ""));
        let verb = verb.to_ascii_uppercase();
        let next = if let Some(answer) = refusing.as_ref().filter(|_| verb != "LOGOUT") {
            conn.send(&format!("{tag} {answer}"))?;
            Next::Continue
        } else if logged_in {
            logged_in_command(conn, tag, &verb, args)?
        } else {
            pre_login_command(conn, tag, &verb, args)?
        };
        match next {
            Next::Continue => {}
            Next::LoggedIn => logged_in = true,
            Next::LoggedInRefusing(text) => {
                logged_in = true;
                refusing = Some(text);
            }
            Next::Close => return Ok(()),
        }
    }
}

fn pre_login_command(conn: &mut Conn<'_>, tag: &str, verb: &str, args: &str) -> io::Result<Next> {
    match verb {
        "CAPABILITY" => {
            conn.send(&format!("* CAPABILITY {}", conn.capabilities()))?;
            conn.send(&format!("{tag} OK Thats all she wrote! (fake)"))?;
        }
        "NOOP" => conn.send(&format!("{tag} OK Success"))?,
        "ID" => {
            conn.send("* ID (\"name\" \"fakeimap\")")?;
            conn.send(&format!("{tag} OK Success"))?;
        }
        "LOGOUT" => return logout(conn, tag),
        "STARTTLS" if conn.setup.options.tls == FakeTls::StartTls && !conn.is_tls() => {
            conn.send(&format!("{tag} OK Begin TLS negotiation now."))?;
            conn.start_tls()?;
        }
        "STARTTLS" => conn.send(&format!("{tag} BAD STARTTLS not available"))?,
        "LOGIN" => conn.send(&format!(
            "{tag} NO [AUTHENTICATIONFAILED] Only OAuth here (fake)"
        ))?,
        "AUTHENTICATE" => return authenticate(conn, tag, args),
        _ => conn.send(&format!("{tag} BAD Command not valid in this state"))?,
    }
    Ok(Next::Continue)
}

fn logged_in_command(conn: &mut Conn<'_>, tag: &str, verb: &str, args: &str) -> io::Result<Next> {
    match verb {
        "CAPABILITY" => {
            conn.send(&format!("* CAPABILITY {POST_LOGIN_CAPABILITIES}"))?;
            conn.send(&format!("{tag} OK Success"))?;
        }
        "LOGOUT" => return logout(conn, tag),
        "SELECT" | "EXAMINE" => {
            conn.send("* FLAGS (\\Answered \\Flagged \\Draft \\Deleted \\Seen)")?;
            conn.send("* 0 EXISTS")?;
            conn.send(&format!("{tag} OK [READ-WRITE] {verb} completed"))?;
        }
        "ECHO" => {
            conn.send(&format!("* ECHO {args}"))?;
            conn.send(&format!("{tag} OK ECHO completed"))?;
        }
        "APPEND" => conn.send(&format!("{tag} OK [APPENDUID 1 1] APPEND completed"))?,
        "IDLE" => {
            conn.send("+ idling")?;
            loop {
                let Some(line) = conn.read_line()? else {
                    return Ok(Next::Close);
                };
                let line = String::from_utf8_lossy(&line).into_owned();
                conn.record(&line);
                if line.eq_ignore_ascii_case("DONE") {
                    break;
                }
            }
            conn.send(&format!("{tag} OK IDLE terminated"))?;
        }
        "AUTHENTICATE" | "LOGIN" | "STARTTLS" => {
            conn.send(&format!("{tag} BAD Already authenticated"))?;
        }
        _ => conn.send(&format!("{tag} OK {verb} completed"))?,
    }
    Ok(Next::Continue)
}

fn logout(conn: &mut Conn<'_>, tag: &str) -> io::Result<Next> {
    conn.send("* BYE Logging out")?;
    conn.send(&format!("{tag} OK LOGOUT completed"))?;
    Ok(Next::Close)
}

/// `AUTHENTICATE mech [initial-response]`: reads the response, records it, answers from the
/// script.
fn authenticate(conn: &mut Conn<'_>, tag: &str, args: &str) -> io::Result<Next> {
    conn.setup.lock().attempts += 1;
    let mut words = args.split(' ').filter(|w| !w.is_empty());
    let mechanism = words.next().unwrap_or("").to_string();
    let initial = words.next().map(str::to_string);
    let caps = conn.capabilities().to_ascii_uppercase();
    let has = |cap: &str| caps.split(' ').any(|c| c == cap);
    if mechanism.is_empty() || !has(&format!("AUTH={}", mechanism.to_ascii_uppercase())) {
        conn.send(&format!(
            "{tag} NO [CANNOT] Unsupported authentication mechanism"
        ))?;
        return Ok(Next::Continue);
    }
    let response = match &initial {
        Some(_) if !has("SASL-IR") => {
            conn.send(&format!("{tag} BAD SASL-IR not advertised"))?;
            return Ok(Next::Continue);
        }
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
        conn.send(&format!("{tag} BAD Authentication aborted by client."))?;
        return Ok(Next::Continue);
    }
    let decoded = if response == "=" {
        Vec::new()
    } else {
        match STANDARD.decode(&response) {
            Ok(d) => d,
            Err(_) => {
                conn.send(&format!("{tag} BAD Invalid base64 data"))?;
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
            shared.answers.pop_front().unwrap_or(AuthAnswer::Ok)
        } else {
            AuthAnswer::ImmediateNo("[AUTHENTICATIONFAILED] No bearer token (fake)".into())
        }
    };
    match answer {
        AuthAnswer::Ok | AuthAnswer::OkThenRefuse(_) => {
            conn.send(&format!("* CAPABILITY {POST_LOGIN_CAPABILITIES}"))?;
            conn.send(&format!(
                "{tag} OK [CAPABILITY {POST_LOGIN_CAPABILITIES}] Success"
            ))?;
            Ok(match answer {
                AuthAnswer::OkThenRefuse(text) => Next::LoggedInRefusing(text),
                _ => Next::LoggedIn,
            })
        }
        AuthAnswer::ImmediateNo(text) => {
            conn.send(&format!("{tag} NO {text}"))?;
            Ok(Next::Continue)
        }
        AuthAnswer::Challenge { json, final_no } => {
            conn.send(&format!("+ {}", STANDARD.encode(json)))?;
            let Some(line) = conn.read_line()? else {
                return Ok(Next::Close);
            };
            let line = String::from_utf8_lossy(&line).into_owned();
            conn.record(&line);
            conn.setup.lock().challenge_answers.push(line.clone());
            if line == "*" {
                conn.send(&format!("{tag} BAD Authentication aborted by client."))?;
            } else {
                conn.send(&format!("{tag} NO {final_no}"))?;
            }
            Ok(Next::Continue)
        }
        AuthAnswer::Reset => Ok(Next::Close),
        AuthAnswer::Bye(text) => {
            conn.send(&format!("* BYE {text}"))?;
            Ok(Next::Close)
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

    /// The capability list as of now (`STARTTLS` added while a STARTTLS server is plaintext).
    fn capabilities(&self) -> String {
        let caps = &self.setup.options.capabilities;
        if self.setup.options.tls == FakeTls::StartTls && !self.is_tls() {
            format!("{caps} STARTTLS")
        } else {
            caps.clone()
        }
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

    /// TLS on the socket; plaintext the client sent after the STARTTLS line is dropped.
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

    /// One command: a line, and for each `{n}`/`{n+}` at its end the literal and the rest
    /// (a `+` first for synchronizing literals). Literals stay inline, CRLFs included.
    fn read_command(&mut self) -> io::Result<Option<Vec<u8>>> {
        let mut command = Vec::new();
        loop {
            let Some(line) = self.read_line()? else {
                return Ok(None);
            };
            command.extend_from_slice(&line);
            let Some((len, sync)) = literal_at_end(&line) else {
                return Ok(Some(command));
            };
            if len > MAX_LITERAL {
                return Err(io::Error::other("literal too large"));
            }
            if sync {
                self.send("+ Ready for literal data")?;
            }
            while self.buf.len() < len {
                if self.fill()? == 0 {
                    return Ok(None);
                }
            }
            command.extend_from_slice(b"\r\n");
            command.extend(self.buf.drain(..len));
        }
    }
}

/// `(n, synchronizing)` for a line ending in `{n}` or `{n+}`.
fn literal_at_end(line: &[u8]) -> Option<(usize, bool)> {
    let inner = line.strip_suffix(b"}")?;
    let (inner, sync) = match inner.strip_suffix(b"+") {
        Some(i) => (i, false),
        None => (inner, true),
    };
    let open = inner.iter().rposition(|&b| b == b'{')?;
    let digits = std::str::from_utf8(&inner[open + 1..]).ok()?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((digits.parse().unwrap_or(usize::MAX), sync))
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
            bearer_token(b"n,a=a@b,\x01host=h\x01port=993\x01auth=bearer t2\x01\x01").as_deref(),
            Some("t2")
        );
        assert_eq!(bearer_token(b"\x00alice\x00password"), None);
    }

    #[test]
    fn literal_announcements() {
        assert_eq!(literal_at_end(b"a APPEND INBOX {5}"), Some((5, true)));
        assert_eq!(literal_at_end(b"a APPEND INBOX {5+}"), Some((5, false)));
        assert_eq!(literal_at_end(b"a ECHO {x}"), None);
        assert_eq!(literal_at_end(b"a ECHO {}"), None);
    }
}
